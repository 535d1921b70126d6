#!/usr/bin/env bash
# Two ferryd on one host (sim driver) whose migration data goes over the
# DPDK transport, a net_memif link between the two agents (the local
# default): a live migration there and one back (the memif roles swap)
# both verify, their memory having gone over the migration network, whose
# 10.99.0.x addresses exist only on the DPDK ports (TCP could not bind
# them).  Data on the management network goes over TCP.  DPDK runs with
# --no-huge here
# (huge=off): the agents' memory is small and the hugepage tests are in
# migrate_dpdk.
#
# Usage: test_agents_dpdk.sh FERRYD FERRYCTL DRIVERS_DIR
set -uo pipefail

FERRYD=$1 FERRYCTL=$2 DRIVERS=$3
tmp=$(mktemp -d "${TMPDIR:-/tmp}/ferry-agents-dpdk.XXXXXX")
pids=()

cleanup() {
  for p in "${pids[@]}"; do
    kill "$p" 2>/dev/null
  done
  for p in "${pids[@]}"; do
    wait "$p" 2>/dev/null
  done
  rm -rf "$tmp"
}
trap cleanup EXIT

step() { echo; echo "== $*"; }

fail() {
  echo "FAIL: $*"
  for f in "$tmp"/host*.err; do
    [ -f "$f" ] && { echo "--- $f"; tail -n 30 "$f"; }
  done
  exit 1
}

read -r P1 P2 < <(/usr/bin/python3 - <<'PY'
import socket
ss = [socket.socket() for _ in range(2)]
for s in ss:
    s.bind(("127.0.0.1", 0))
print(*[s.getsockname()[1] for s in ss])
PY
)

head -c 32 /dev/urandom | od -An -tx1 | tr -d ' \n' >"$tmp/key"
chmod 600 "$tmp/key"

# config NAME PORT PEER PEER_PORT SEED IP: both agents name the same memif
# socket; whichever receives is the memif server, the sender its client.
config() {
  cat >"$tmp/$1.conf" <<EOF
host             = $1
driver           = sim
driver-config    = state=$tmp/$1;seed-vm=$5
drivers-dir      = $DRIVERS
key              = $tmp/key
store            = $tmp/$1.db
management       = 127.0.0.1:$2
migration        = $6
peers            = $3=127.0.0.1:$4
transport        = dpdk
transport-params = dev=net_memif0,socket=$tmp/memif.sock;ip=$6;huge=off;mem=128
EOF
}
config host1 "$P1" host2 "$P2" 2 10.99.0.1
config host2 "$P2" host1 "$P1" 0 10.99.0.2

start() {
  : >"$tmp/$1.out"
  "$FERRYD" --config "$tmp/$1.conf" --foreground >"$tmp/$1.out" 2>>"$tmp/$1.err" &
  pids+=($!)
  for _ in $(seq 1 100); do
    grep -q "serving on" "$tmp/$1.out" && { cat "$tmp/$1.out"; return 0; }
    kill -0 "$!" 2>/dev/null || fail "ferryd $1 exited before serving"
    sleep 0.1
  done
  fail "ferryd $1 did not serve within 10 s"
}

ctl() { "$FERRYCTL" --host "127.0.0.1:$P1" --key "$tmp/key" "$@"; }

run_ok() {
  local what=$1; shift
  out=$("$@" 2>&1)
  local rc=$?
  echo "$out"
  [ $rc -eq 0 ] || fail "$what: exit $rc"
}

step "start two agents with transport = dpdk (net_memif, socket $tmp/memif.sock)"
start host1
start host2

step "ferryctl migrate --live vm1 --from host1 --to host2 (over DPDK memif)"
run_ok "live migration" ctl migrate --live vm1 --from host1 --to host2 --downtime-ms 300
grep -q 'Verification: *passed' <<<"$out" || fail "live migration not verified"
grep -qE '^ +memory +migration 10\.99\.0\.2$' <<<"$out" || fail "memory did not go over the DPDK port"
run_ok "list host2" ctl list host2
grep -q '^vm1 .*running' <<<"$out" || fail "vm1 should run on host2"

step "ferryctl migrate --live vm1 --from host2 --to host1 (roles swap: host1 is the memif server now)"
run_ok "live migration back" ctl migrate --live vm1 --from host2 --to host1 --downtime-ms 300
grep -q 'Verification: *passed' <<<"$out" || fail "live migration back not verified"
grep -qE '^ +memory +migration 10\.99\.0\.1$' <<<"$out" || fail "memory did not go over the DPDK port"
run_ok "list host1" ctl list host1
grep -q '^vm1 .*running' <<<"$out" || fail "vm1 should run on host1 again"

echo
echo "agents over dpdk: all steps passed"
