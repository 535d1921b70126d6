#!/usr/bin/env bash
# Measures Ferry's migrations of the test guest at several memory sizes,
# next to QEMU's own migration of the same guest over a plain TCP socket in
# the same run (not a test: the figures in docs/libvirt.md come from it).
#
# Usage: tests/integration/libvirt_curve.sh [BUILD_DIR] [SIZES_MIB...]
#   default: build 128 256 512 1024
# For each size: a guest that keeps dirtying FERRY_DIRTY pages/s (default
# 2000) over 32 MiB; Ferry live (the default mode of `ferryctl migrate
# --live`: stream mode) host1 -> host2, quick (RAM-direct) back, and live
# RAM-direct (--mode ram-direct, "live rd") host1 -> host2 again, through
# two ferryd with a 300 ms downtime target; then QEMU's migration between
# two fresh embedded hosts driven with virsh, as libvirt sets it up (no
# bandwidth cap; QEMU's own default caps it at 128 MiB/s) with the same
# 300 ms downtime limit, no other capabilities.  Prints one table:
#   total     the whole migration (Ferry: the workflow's time, with the
#             target QEMU's start and the source's removal; QEMU: its
#             total-time, until the source hands over)
#   resume    Ferry: from the first event to "Switchover completed" (the
#             VM runs at the target); QEMU: total-time again
#   downtime  pause to resume
#   wire      Ferry: the dataplane's bytes (RAM-direct: guest memory;
#             stream mode: QEMU's whole stream as Ferry carries it, device
#             state included); QEMU: ram.transferred (no device state)
set -uo pipefail
cd "$(dirname "$0")/../.."
SRCDIR=$(pwd)
build=${1:-build}
shift || true
sizes=("$@")
[ ${#sizes[@]} -eq 0 ] && sizes=(128 256 512 1024)
dirty=${FERRY_DIRTY:-2000}
# More kernel command line for the guests (they have pti=on already: see
# docs/libvirt.md, "Stream mode"; pti=off shows what QEMU 7.2 does without).
gargs=${FERRY_GUEST_ARGS:-}
# FERRY_ANON=1: guests without the shared memfd backend (anonymous RAM, as
# most stream-mode guests); Ferry then runs live (stream mode) only, since
# quick and RAM-direct need the shared backend.
anon=${FERRY_ANON:-0}
guest_xml() { # as lv_guest_xml, without <memoryBacking> with FERRY_ANON=1
  if [ "$anon" = 1 ]; then lv_guest_xml "$@" | grep -v '<memoryBacking>'; else lv_guest_xml "$@"; fi
}
FERRYD=$SRCDIR/$build/controlplane/ferryd
FERRYCTL=$SRCDIR/$build/controlplane/ferryctl
DRIVERS=$SRCDIR/$build/drivers
GUESTDIR=$SRCDIR/$build/tests/guest
. "$SRCDIR/tests/integration/libvirt_lib.sh"
lv_setup curve
results=()

fig() { grep -a "$1" <<<"$2" | head -n 1 | sed 's/^[^:]*: *//'; }
ROW='%-6s %-14s %8s %8s %10s %11s'

# The seconds from migration ID's first event to its switchover, from the
# agent at 127.0.0.1:PORT.
to_resume() {
  "$FERRYCTL" --host "127.0.0.1:$1" --key "$tmp/key" --json events "$2" | /usr/bin/python3 -c '
import json, sys
ev = json.load(sys.stdin)["events"]
t0 = ev[0]["ts_us"]
sw = [e["ts_us"] for e in ev if e["text"].startswith("Switchover completed")]
print("%.2f s" % ((sw[0] - t0) / 1e6) if sw else "-")'
}

# ferry_row MIB KIND PORT_OF_SOURCE_AGENT: a row from $out (ferryctl migrate).
ferry_row() {
  local id
  id=$(grep -oE '^Migration [0-9]+ succeeded' <<<"$out" | awk '{print $2}')
  printf "$ROW" "$1" "ferry $2" "$(fig 'Total time' "$out")" "$(to_resume "$3" "$id")" \
    "$(fig 'Downtime' "$out")" "$(fig 'Bytes on the wire' "$out" | cut -d'(' -f1)"
}

# alive SERIAL: the guest counts on (2 more ticks within 20 s) and has
# reported no pattern error.
alive() {
  local t0 t
  t0=$(last_tick "$1")
  for _ in $(seq 1 200); do
    t=$(last_tick "$1")
    [ "${t:-0}" -ge $((t0 + 2)) ] && break
    sleep 0.1
  done
  [ "${t:-0}" -ge $((t0 + 2)) ] && ! grep -aq 'PATTERN ERROR' "$1"
}

# ferry_one MIB KIND FROM TO PORT [OPTION...]: one migration, its row; 1
# when it failed or the guest does not run on after it (the row says so).
ferry_one() {
  local mem=$1 kind=$2 from=$3 to=$4 port=$5
  shift 5
  local how=(--live --downtime-ms 300)
  [ "$kind" = quick ] && how=(--quick)
  out=$(ctl migrate "${how[@]}" "$@" "f$mem" --from "$from" --to "$to" 2>&1) ||
    { echo "$out"; results+=("$(printf "$ROW" "$mem" "ferry $kind" FAILED - - -)"); return 1; }
  results+=("$(ferry_row "$mem" "$kind" "$port")")
  # Where the time went: the workflow's events with their times.
  "$FERRYCTL" --host "127.0.0.1:$port" --key "$tmp/key" events \
    "$(grep -oE '^Migration [0-9]+ succeeded' <<<"$out" | awk '{print $2}')" |
    sed "s/^/  [$mem $kind] /"
  if ! alive "$tmp/f$mem.serial"; then
    echo "the guest stopped counting (or reported a pattern error) after ferry $kind $from -> $to:"
    grep -a 'ferry-guest' "$tmp/f$mem.serial" | tail -n 3
    results+=("$mem    ^ the guest stopped counting or reported a PATTERN ERROR after it")
    return 1
  fi
}

ferry_run() {
  local mem=$1 xml=$tmp/f$mem.xml serial=$tmp/f$mem.serial
  guest_xml "f$mem" "$mem" "$serial" "$gargs ferry.mem=32 ferry.dirty=$dirty ferry.pattern=16" >"$xml"
  ctl define "$xml" --start >/dev/null || fail "define f$mem"
  wait_tick "$serial" 3 120
  # Done with the guest after its runs, or after one that broke it: a
  # running guest would slow the next sizes down.
  # Live (stream mode) first, on a guest as fresh as QEMU's own run's.
  ferry_one "$mem" live host1 host2 "$P1" && [ "$anon" != 1 ] &&
    sleep 2 && ferry_one "$mem" quick host2 host1 "$P2" &&
    # Live RAM-direct too, where the default is stream mode.
    { ! "$FERRYCTL" migrate --help | grep -q -- '--mode' ||
      ferry_one "$mem" "live rd" host1 host2 "$P1" --mode ram-direct; }
  local f
  for f in "$tmp"/host*/run/qemu/f$mem.pid; do
    [ -f "$f" ] && kill "$(cat "$f")" 2>/dev/null
  done
}

# QEMU's own migration: source on root qa, destination (-incoming defer) on
# root qb, both driven over QMP with virsh; no agent holds these roots.
qemu_run() {
  local mem=$1 a=$tmp/qa$mem b=$tmp/qb$mem serial=$tmp/q$mem.serial port
  for r in "$a" "$b"; do
    mkdir -p "$r/etc"
    printf 'user = "root"\ngroup = "root"\nstdio_handler = "file"\nremember_owner = 0\ndynamic_ownership = 0\nsecurity_driver = "none"\n' >"$r/etc/qemu.conf"
  done
  guest_xml "q$mem" "$mem" "$serial" "$gargs ferry.mem=32 ferry.dirty=$dirty ferry.pattern=16" >"$tmp/q$mem.xml"
  sed -e "s|<domain type='qemu'>|<domain type='qemu' xmlns:qemu='http://libvirt.org/schemas/domain/qemu/1.0'>|" \
      -e "s|</devices>|</devices><qemu:commandline><qemu:arg value='-incoming'/><qemu:arg value='defer'/></qemu:commandline>|" \
      "$tmp/q$mem.xml" >"$tmp/q$mem.in.xml"
  export LIBVIRT_LOG_OUTPUTS=4:stderr
  virsh -q -c "qemu:///embed?root=$a" create "$tmp/q$mem.xml" >/dev/null || fail "qemu baseline: create"
  wait_tick "$serial" 3 120
  port=$(/usr/bin/python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
  virsh -q -c "qemu:///embed?root=$b" "create $tmp/q$mem.in.xml --paused; qemu-monitor-command q$mem '{\"execute\":\"migrate-incoming\",\"arguments\":{\"uri\":\"tcp:127.0.0.1:$port\"}}'" >/dev/null ||
    fail "qemu baseline: incoming"
  # As libvirt's own migration does: no bandwidth cap (8 PiB/s); the same
  # downtime target as Ferry's runs.
  virsh -q -c "qemu:///embed?root=$a" "qemu-monitor-command q$mem '{\"execute\":\"migrate-set-parameters\",\"arguments\":{\"max-bandwidth\":9007199254740991,\"downtime-limit\":300}}'; qemu-monitor-command q$mem '{\"execute\":\"migrate\",\"arguments\":{\"uri\":\"tcp:127.0.0.1:$port\"}}'" >/dev/null ||
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
t = "%.2f s" % (r["total-time"] / 1000)
print("%-6s %-14s %8s %8s %10s %11s" % (sys.argv[1], "qemu tcp", t, t, "%.1f ms" % r["downtime"],
      "%.1f MiB" % (r["ram"]["transferred"] / 2**20)))
PY
)")
  virsh -q -c "qemu:///embed?root=$b" "resume q$mem" >/dev/null
  alive "$serial" ||
    results+=("$mem    ^ the guest stopped counting or reported a PATTERN ERROR after it")
  kill "$(cat "$a/run/qemu/q$mem.pid")" "$(cat "$b/run/qemu/q$mem.pid")" 2>/dev/null
}

table() {
  echo
  echo "tests/integration/libvirt_curve.sh $build ${sizes[*]} (FERRY_DIRTY=$dirty pages/s," \
    "guest args '$gargs', anonymous RAM $anon;" \
    "$(date '+%Y-%m-%d %H:%M'), $(nproc) CPUs, load $(cut -d' ' -f1-3 /proc/loadavg))"
  printf "$ROW\n" "MiB" "migration" "total" "resume" "downtime" "wire"
  printf '%s\n' "${results[@]}"
}
# The rows so far also when a step fails.
trap 'table; lv_cleanup' EXIT

lv_start host1 >/dev/null
lv_start host2 >/dev/null
for mem in "${sizes[@]}"; do
  step "guest of $mem MiB"
  ferry_run "$mem"
  qemu_run "$mem"
done
