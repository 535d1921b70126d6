#!/usr/bin/env bash
# Two ferryd on loopback (sim driver), driven by ferryctl: hosts, list, live,
# cold and quick migrations that complete and verify, events and jobinfo, a
# precheck refusal (exit 3), a wrong cluster key (exit 4, logged by the
# agent), and the event log answering after an agent restarts.
#
# Usage: test_agents.sh FERRYD FERRYCTL DRIVERS_DIR
set -uo pipefail

FERRYD=$1 FERRYCTL=$2 DRIVERS=$3
tmp=$(mktemp -d "${TMPDIR:-/tmp}/ferry-agents.XXXXXX")
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

# Two free TCP ports on loopback.
read -r P1 P2 < <(/usr/bin/env python3 - <<'PY'
import socket
ss = [socket.socket() for _ in range(2)]
for s in ss:
    s.bind(("127.0.0.1", 0))
print(*[s.getsockname()[1] for s in ss])
PY
)

head -c 32 /dev/urandom | od -An -tx1 | tr -d ' \n' >"$tmp/key"
chmod 600 "$tmp/key"
head -c 32 /dev/urandom | od -An -tx1 | tr -d ' \n' >"$tmp/wrong.key"
chmod 600 "$tmp/wrong.key"

# config NAME PORT PEER PEER_PORT SEED
config() {
  cat >"$tmp/$1.conf" <<EOF
host          = $1
driver        = sim
driver-config = state=$tmp/$1;seed-vm=$5
drivers-dir   = $DRIVERS
key           = $tmp/key
store         = $tmp/$1.db
management    = 127.0.0.1:$2
migration     = 127.0.0.1
peers         = $3=127.0.0.1:$4
EOF
}
config host1 "$P1" host2 "$P2" 2
config host2 "$P2" host1 "$P1" 0

declare -A pid_of
# start NAME: runs its ferryd in the background and waits until it serves.
start() {
  : >"$tmp/$1.out"
  "$FERRYD" --config "$tmp/$1.conf" --foreground >"$tmp/$1.out" 2>>"$tmp/$1.err" &
  pid_of[$1]=$!
  pids+=($!)
  for _ in $(seq 1 100); do
    grep -q "serving on" "$tmp/$1.out" && { cat "$tmp/$1.out"; return 0; }
    kill -0 "${pid_of[$1]}" 2>/dev/null || fail "ferryd $1 exited before serving"
    sleep 0.1
  done
  fail "ferryd $1 did not serve within 10 s"
}

ctl() { "$FERRYCTL" --host "127.0.0.1:$P1" --key "$tmp/key" "$@"; }

# run_ok DESCRIPTION CMD...: runs, prints, fails the test on a non-zero exit.
run_ok() {
  local what=$1; shift
  out=$("$@" 2>&1)
  local rc=$?
  echo "$out"
  [ $rc -eq 0 ] || fail "$what: exit $rc"
}

step "start two agents (ports $P1 and $P2)"
start host1
start host2

step "ferryctl hosts"
run_ok hosts ctl hosts
[ "$(grep -cE ' up ' <<<"$out")" -eq 2 ] || fail "hosts: both hosts should be up"
run_ok "hosts --json" ctl --json hosts
python3 -c 'import json,sys; d=json.load(sys.stdin); assert len(d["hosts"]) == 2' <<<"$out" \
  || fail "hosts --json is not one JSON document with two hosts"

step "ferryctl list"
run_ok list ctl list
grep -q '^vm1 .*running' <<<"$out" || fail "list: vm1 should run on host1"
grep -q '^vm2 .*running' <<<"$out" || fail "list: vm2 should run on host1"

step "ferryctl migrate --live vm1 --from host1 --to host2"
run_ok "live migration" ctl migrate --live vm1 --from host1 --to host2 --downtime-ms 300
grep -q 'Verification: *passed' <<<"$out" || fail "live migration not verified"
live_id=$(grep -oE '^Migration [0-9]+ succeeded' <<<"$out" | awk '{print $2}')
[ -n "$live_id" ] || fail "live migration: no 'Migration N succeeded' line"
run_ok "list host2" ctl list host2
grep -q '^vm1 .*running' <<<"$out" || fail "vm1 should run on host2 after the live migration"
run_ok "list host1" ctl list host1
grep -q '^vm1 ' <<<"$out" && fail "vm1 should be gone from host1"

step "ferryctl events $live_id"
run_ok events ctl events "$live_id"
grep -q 'Migration completed' <<<"$out" || fail "events: no 'Migration completed'"
head -n 3 <<<"$out" | grep -qE '^Category +Task +Time +Side +Text' || fail "events: no table header"

step "ferryctl jobinfo $live_id"
run_ok jobinfo ctl jobinfo "$live_id"
grep -q 'Verified: *yes' <<<"$out" || fail "jobinfo: not verified"

step "ferryctl migrate --cold vm2 --from host1 --to host2 (running: shut down first)"
run_ok "cold migration" ctl migrate --cold vm2 --from host1 --to host2
grep -q 'succeeded' <<<"$out" || fail "cold migration did not succeed"
grep -q 'Verification: *passed' <<<"$out" || fail "cold migration not verified"
run_ok "list host2" ctl list host2
grep -q '^vm2 .*running' <<<"$out" || fail "vm2 should run on host2 after the cold migration"

step "ferryctl migrate --quick vm1 --from host2 --to host1"
# The live migration moved vm1's disk image to host2 and removed host1's.
ls "$tmp"/host1/ds/local/vm1-vda.img >/dev/null 2>&1 &&
  fail "host1 still has vm1's disk image after the live migration"
run_ok "quick migration" ctl migrate --quick vm1 --from host2 --to host1
grep -q 'succeeded' <<<"$out" || fail "quick migration did not succeed"
grep -q 'Verification: *passed' <<<"$out" || fail "quick migration not verified"
run_ok "list host1" ctl list host1
grep -q '^vm1 .*running' <<<"$out" || fail "vm1 should run on host1 after the quick migration"

step "a precheck refusal exits 3 (live migration of a VM that is off)"
cat >"$tmp/off.vm" <<EOF
name off1
mem 16M
vcpus 1
EOF
run_ok define ctl define "$tmp/off.vm"
ctl migrate --live off1 --to host2
rc=$?
[ $rc -eq 3 ] || fail "precheck refusal: exit $rc, want 3"

step "ferryctl cancel stops a live migration (1 GiB, cannot converge) in flight; the VM stays at the source"
cat >"$tmp/busy.vm" <<EOF
name busy1
mem 1G
vcpus 1
workload rate=400000 pattern=random shared-seed=3
EOF
run_ok define ctl define "$tmp/busy.vm" --start
ctl migrate --live busy1 --to host2 --downtime-ms 1 >"$tmp/busy.out" 2>&1 &
mig_pid=$!
busy_id=""
for _ in $(seq 1 100); do
  busy_id=$(ctl --json migrations 2>/dev/null | python3 -c '
import json, sys
for m in json.load(sys.stdin)["migrations"]:
    if m["vm"] == "busy1" and m["state"] == "running":
        print(m["id"])' 2>/dev/null || true)
  [ -n "$busy_id" ] && break
  sleep 0.1
done
[ -n "$busy_id" ] || fail "cancel: the migration of busy1 never showed as running"
run_ok cancel ctl cancel "$busy_id"
wait "$mig_pid"
rc=$?
cat "$tmp/busy.out"
[ $rc -ne 0 ] || fail "cancel: the cancelled migration exited 0"
run_ok "migrations" ctl --json migrations
python3 -c '
import json, sys
m = [m for m in json.load(sys.stdin)["migrations"] if m["id"] == int(sys.argv[1])][0]
assert m["state"] == "cancelled", m["state"]' "$busy_id" <<<"$out" \
  || fail "cancel: migration $busy_id is not recorded as cancelled"
run_ok "list host1" ctl list host1
grep -q '^busy1 .*running' <<<"$out" || fail "cancel: busy1 should still run on host1"
run_ok "list host2" ctl list host2
grep -q '^busy1 ' <<<"$out" && fail "cancel: busy1 should not be on host2"

step "usage errors exit 2"
ctl migrate 2>/dev/null
rc=$?
[ $rc -eq 2 ] || fail "usage error: exit $rc, want 2"

step "a wrong cluster key is refused (exit 4) and logged"
"$FERRYCTL" --host "127.0.0.1:$P1" --key "$tmp/wrong.key" hosts
rc=$?
[ $rc -eq 4 ] || fail "wrong key: exit $rc, want 4"
grep -E '^[0-9]{4}-[0-9]{2}-[0-9]{2} [0-9:]{8} ferryd host1: .*refused' "$tmp/host1.err" \
  || fail "host1 did not log the refusal"

step "restart host1's ferryd: events $live_id still answer"
kill -TERM "${pid_of[host1]}"
wait "${pid_of[host1]}" || fail "ferryd host1 did not stop cleanly on SIGTERM"
start host1
run_ok "events after restart" ctl events "$live_id"
grep -q 'Migration completed' <<<"$out" || fail "events after restart: no 'Migration completed'"

echo
echo "agents: all steps passed"
