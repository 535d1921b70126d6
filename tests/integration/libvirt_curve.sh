#!/usr/bin/env bash
# Measures RAM-direct migrations of the test guest at several memory sizes,
# next to QEMU's own migration of the same guest over a plain TCP socket in
# the same run (not a test: the figures in docs/libvirt.md come from it).
#
# Usage: tests/integration/libvirt_curve.sh [BUILD_DIR] [SIZES_MIB...]
#   default: build 128 256 512 1024
# For each size: a guest dirtying FERRY_DIRTY pages/s (default 2000) over
# 32 MiB; Ferry quick (RAM-direct) host1 -> host2 and live (RAM-direct,
# re-hash rounds) back, through two ferryd; then QEMU's migration (its
# defaults, no capabilities) between two fresh embedded hosts driven with
# virsh.  Prints one table.
set -uo pipefail
cd "$(dirname "$0")/../.."
SRCDIR=$(pwd)
build=${1:-build}
shift || true
sizes=("$@")
[ ${#sizes[@]} -eq 0 ] && sizes=(128 256 512 1024)
dirty=${FERRY_DIRTY:-2000}
FERRYD=$SRCDIR/$build/controlplane/ferryd
FERRYCTL=$SRCDIR/$build/controlplane/ferryctl
DRIVERS=$SRCDIR/$build/drivers
GUESTDIR=$SRCDIR/$build/tests/guest
. "$SRCDIR/tests/integration/libvirt_lib.sh"
lv_setup curve
results=()

fig() { grep -a "$1" <<<"$2" | head -n 1 | sed 's/^[^:]*: *//'; }

ferry_run() {
  local mem=$1 xml=$tmp/f$mem.xml serial=$tmp/f$mem.serial
  lv_guest_xml "f$mem" "$mem" "$serial" "ferry.mem=32 ferry.dirty=$dirty ferry.pattern=16" >"$xml"
  ctl define "$xml" --start >/dev/null || fail "define f$mem"
  wait_tick "$serial" 3 120
  out=$(ctl migrate --quick "f$mem" --from host1 --to host2 2>&1) || { echo "$out"; fail "quick $mem"; }
  results+=("$(printf '%-6s %-16s %8s %10s %12s' "$mem" "ferry quick" \
    "$(fig 'Total time' "$out")" "$(fig 'Downtime' "$out")" "$(fig 'Bytes on the wire' "$out" | cut -d'(' -f1)")")
  sleep 2
  out=$(ctl migrate --live "f$mem" --from host2 --to host1 --downtime-ms 300 2>&1) ||
    { echo "$out"; fail "live $mem"; }
  results+=("$(printf '%-6s %-16s %8s %10s %12s' "$mem" "ferry live" \
    "$(fig 'Total time' "$out")" "$(fig 'Downtime' "$out")" "$(fig 'Bytes on the wire' "$out" | cut -d'(' -f1)")")
  check_guest "$serial"
  # Done with it: a running guest would slow the next sizes down.
  kill "$(cat "$tmp/host1/run/qemu/f$mem.pid")" 2>/dev/null
}

# QEMU's own migration: source on root qa, destination (-incoming defer) on
# root qb, both driven over QMP with virsh; no agent holds these roots.
qemu_run() {
  local mem=$1 a=$tmp/qa$mem b=$tmp/qb$mem serial=$tmp/q$mem.serial port
  for r in "$a" "$b"; do
    mkdir -p "$r/etc"
    printf 'user = "root"\ngroup = "root"\nstdio_handler = "file"\nremember_owner = 0\ndynamic_ownership = 0\nsecurity_driver = "none"\n' >"$r/etc/qemu.conf"
  done
  lv_guest_xml "q$mem" "$mem" "$serial" "ferry.mem=32 ferry.dirty=$dirty ferry.pattern=16" >"$tmp/q$mem.xml"
  sed -e "s|<domain type='qemu'>|<domain type='qemu' xmlns:qemu='http://libvirt.org/schemas/domain/qemu/1.0'>|" \
      -e "s|</devices>|</devices><qemu:commandline><qemu:arg value='-incoming'/><qemu:arg value='defer'/></qemu:commandline>|" \
      "$tmp/q$mem.xml" >"$tmp/q$mem.in.xml"
  export LIBVIRT_LOG_OUTPUTS=4:stderr
  virsh -q -c "qemu:///embed?root=$a" create "$tmp/q$mem.xml" >/dev/null || fail "qemu baseline: create"
  wait_tick "$serial" 3 120
  port=$(/usr/bin/python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
  virsh -q -c "qemu:///embed?root=$b" "create $tmp/q$mem.in.xml --paused; qemu-monitor-command q$mem '{\"execute\":\"migrate-incoming\",\"arguments\":{\"uri\":\"tcp:127.0.0.1:$port\"}}'" >/dev/null ||
    fail "qemu baseline: incoming"
  virsh -q -c "qemu:///embed?root=$a" "qemu-monitor-command q$mem '{\"execute\":\"migrate\",\"arguments\":{\"uri\":\"tcp:127.0.0.1:$port\"}}'" >/dev/null ||
    fail "qemu baseline: migrate"
  local st=""
  for _ in $(seq 1 600); do
    st=$(virsh -q -c "qemu:///embed?root=$a" "qemu-monitor-command q$mem '{\"execute\":\"query-migrate\"}'")
    grep -q '"status":"completed"' <<<"$st" && break
    grep -q '"status":"failed"' <<<"$st" && fail "qemu baseline: $st"
    sleep 0.2
  done
  results+=("$(/usr/bin/python3 - "$mem" "$st" <<'PY'
import json, sys
r = json.loads(sys.argv[2])["return"]
print("%-6s %-16s %8s %10s %12s" % (sys.argv[1], "qemu tcp", "%.2f s" % (r["total-time"] / 1000),
      "%.1f ms" % r["downtime"], "%.1f MiB" % (r["ram"]["transferred"] / 2**20)))
PY
)")
  virsh -q -c "qemu:///embed?root=$b" "resume q$mem" >/dev/null
  kill "$(cat "$a/run/qemu/q$mem.pid")" "$(cat "$b/run/qemu/q$mem.pid")" 2>/dev/null
}

lv_start host1 >/dev/null
lv_start host2 >/dev/null
for mem in "${sizes[@]}"; do
  step "guest of $mem MiB"
  ferry_run "$mem"
  qemu_run "$mem"
done
echo
printf '%-6s %-16s %8s %10s %12s\n' "MiB" "migration" "total" "downtime" "wire"
printf '%s\n' "${results[@]}"
