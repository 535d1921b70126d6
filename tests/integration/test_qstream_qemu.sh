#!/usr/bin/env bash
# Stream mode with real QEMU (no libvirt): two qemu-system-x86_64 -accel tcg
# processes on this host, the test guest (scripts/build-guest) running at
# the source, dirtying memory and checking a pattern.  The source QEMU
# migrates with multifd to a UNIX socket where qstream_pair listens; the
# pair carries the main channel and every multifd channel over a loopback
# TCP Ferry session into the destination QEMU's incoming socket.  Checks:
# QEMU reports the migration completed, the guest runs at the destination
# and its counter goes on (same boot, no pattern error), Ferry parsed every
# channel, and its counters show pages sent as references; the numbers
# (bytes on the wire against RAM, pages zero/referenced) are printed.
# Then the same with the return-path capability on (Ferry carries it).
#
# Usage: test_qstream_qemu.sh QSTREAM_PAIR QMP_PY SRCDIR GUESTDIR
set -uo pipefail

PAIR=$1 QMP=$2 SRCDIR=$3 GUESTDIR=$4
# Overridable for measurements (the defaults keep the test short):
CHANNELS=${QS_CHANNELS:-4}
RAM_MIB=${QS_RAM_MIB:-256}
GUEST_ARGS=${QS_GUEST_ARGS:-ferry.mem=64 ferry.dirty=2000 ferry.pattern=32}
PY=/usr/bin/python3

command -v qemu-system-x86_64 >/dev/null ||
  { echo "SKIP: qemu-system-x86_64 not installed (scripts/setup-deps)"; exit 77; }
[ -x "$PY" ] || { echo "SKIP: $PY missing"; exit 77; }

tmp=$(mktemp -d /tmp/ferry-qstream.XXXXXX)
pids=()
cleanup() {
  for p in "${pids[@]}"; do kill "$p" 2>/dev/null; done
  for p in "${pids[@]}"; do wait "$p" 2>/dev/null; done
  rm -rf "$tmp"
}
trap cleanup EXIT

step() { echo "== $*"; }
fail() {
  echo "FAIL: $*"
  for f in "$tmp"/*.serial "$tmp"/*.log "$tmp"/*.out; do
    [ -f "$f" ] && { echo "--- $f (last 15 lines)"; tail -n 15 "$f"; }
  done
  exit 1
}
qmp() { "$PY" "$QMP" "$@"; }
# Ends the QEMUs of a finished case, so the next one has the CPUs.
quit() { for n in "$@"; do qmp "$tmp/$n.qmp" quit >/dev/null 2>&1; done; }

step "build the test guest ($GUESTDIR)"
"$SRCDIR/scripts/build-guest" "$GUESTDIR" >"$tmp/build-guest.log" 2>&1 ||
  { cat "$tmp/build-guest.log"; fail "scripts/build-guest failed"; }
kernel=$GUESTDIR/vmlinuz initrd=$GUESTDIR/initrd.img

# qemu NAME [EXTRA...]: starts a QEMU with the guest, QMP at $tmp/NAME.qmp.
qemu() {
  local name=$1; shift
  qemu-system-x86_64 -accel tcg -m "$RAM_MIB" -smp 1 -display none -nodefaults \
    -no-user-config -qmp "unix:$tmp/$name.qmp,server=on,wait=off" \
    -serial "file:$tmp/$name.serial" -kernel "$kernel" -initrd "$initrd" \
    -append "console=ttyS0 quiet pti=on $GUEST_ARGS" \
    "$@" >"$tmp/$name.log" 2>&1 &
  pids+=($!)
}

# last_tick FILE: the guest's last counter value and boot id ("BOOT N").
last_tick() {
  grep -a 'ferry-guest: boot=.* tick ' "$1" 2>/dev/null | tail -n 1 |
    sed -E 's/.*boot=([0-9a-f]+) tick ([0-9]+).*/\1 \2/'
}

tick_within() { # FILE N TIMEOUT_S: 0 once the counter reached N
  local end=$((SECONDS + $3)) t
  while [ $SECONDS -lt $end ]; do
    t=$(last_tick "$1" | cut -d' ' -f2)
    [ -n "$t" ] && [ "$t" -ge "$2" ] && return 0
    sleep 0.5
  done
  return 1
}
wait_tick() { tick_within "$@" || fail "no tick $2 in $1 after $3 s"; }

caps() { # QMP_SOCK RETURN_PATH(true|false)
  qmp "$1" migrate-set-capabilities \
    "{\"capabilities\": [{\"capability\": \"multifd\", \"state\": true},
                         {\"capability\": \"return-path\", \"state\": $2}]}" >/dev/null &&
  qmp "$1" migrate-set-parameters "{\"multifd-channels\": $CHANNELS}" >/dev/null
}

# migrate_once TAG RETURN_PATH: src-TAG (running the guest) to dst-TAG
# through qstream_pair; leaves the pair's output in $tmp/TAG.out.
migrate_once() {
  local tag=$1 rp=$2 src=src-$1 dst=dst-$1 st
  step "[$tag] start the destination QEMU (-incoming defer) and set multifd x$CHANNELS, return-path $rp"
  qemu "$dst" -incoming defer
  caps "$tmp/$dst.qmp" "$rp" || fail "[$tag] destination capabilities"
  qmp "$tmp/$dst.qmp" migrate-incoming "{\"uri\": \"unix:$tmp/$dst.mig\"}" >/dev/null ||
    fail "[$tag] migrate-incoming"
  caps "$tmp/$src.qmp" "$rp" || fail "[$tag] source capabilities"

  step "[$tag] carry the migration through Ferry (qstream_pair, loopback TCP)"
  "$PAIR" "$tmp/$src.mig" "$tmp/$dst.mig" "$CHANNELS" "$RAM_MIB" \
    >"$tmp/$tag.out" 2>"$tmp/$tag.err" &
  local pair=$!
  pids+=($pair)
  for _ in $(seq 100); do grep -q listening "$tmp/$tag.out" && break; sleep 0.1; done
  grep -q listening "$tmp/$tag.out" || fail "[$tag] qstream_pair did not listen"
  before=$(last_tick "$tmp/$src.serial")
  local t0=$SECONDS
  qmp "$tmp/$src.qmp" migrate "{\"uri\": \"unix:$tmp/$src.mig\"}" >/dev/null ||
    fail "[$tag] migrate"
  for _ in $(seq 600); do
    st=$(qmp "$tmp/$src.qmp" query-migrate)
    case $st in *'"status": "completed"'*|*'"status": "failed"'*|*'"status": "cancelled"'*) break;; esac
    sleep 0.2
  done
  echo "$st" >"$tmp/$tag.migrate.json"
  [[ $st == *'"status": "completed"'* ]] || { cat "$tmp/$tag.err"; fail "[$tag] QEMU's migration did not complete: $st"; }
  wait "$pair" || { cat "$tmp/$tag.err"; fail "[$tag] qstream_pair failed"; }
  echo "[$tag] QEMU: completed in $((SECONDS - t0)) s: $("$PY" -c '
import json, sys
m = json.loads(sys.argv[1]); r = m["ram"]
print("total-time %d ms, downtime %d ms, RAM %d MiB, transferred %d bytes, "
      "multifd %d bytes, zero pages %d, normal pages %d, dirty-sync %d" % (
      m["total-time"], m["downtime"], r["total"] >> 20, r["transferred"],
      r["multifd-bytes"], r["duplicate"], r["normal"], r["dirty-sync-count"]))' "$st")"
  sed "s/^/[$tag] Ferry /" "$tmp/$tag.out" | grep -v listening

  # Ferry's own check: the target gave the destination QEMU every channel
  # exactly as the source QEMU sent it (count and XXH3-128 per channel).
  grep -q '^target .* verified=1' "$tmp/$tag.out" ||
    fail "[$tag] the target did not verify every channel: $(grep '^target ' "$tmp/$tag.out")"

  step "[$tag] the guest runs on at the destination"
  st=$(qmp "$tmp/$dst.qmp" query-status)
  [[ $st == *'"running": true'* ]] || fail "[$tag] destination not running: $st"
  local boot=${before%% *} n=${before##* }
  if ! tick_within "$tmp/$dst.serial" $((n + 3)) 60; then
    # QEMU < 9.0 under TCG loses dirty pages now and then, which kills the
    # guest (docs/libvirt.md, "Stream mode"; the guest's pti=on makes it
    # rare); Ferry verified it delivered that stream byte for byte, so the
    # case is run again with a fresh guest.
    if grep -aqE 'Kernel panic|Oops|BUG: |general protection' "$tmp/$dst.serial"; then
      echo "[$tag] the destination guest died after QEMU's migration although Ferry" \
           "delivered every channel byte-identical (verified=1): QEMU's TCG dirty-tracking bug" \
           "of docs/libvirt.md; its console:"
      grep -aE 'Kernel panic|Oops|BUG: |RIP: ' "$tmp/$dst.serial" | head -n 4 | sed "s/^/[$tag]   /"
      quit "$src" "$dst"
      return 2
    fi
    fail "no tick $((n + 3)) in $tmp/$dst.serial after 60 s"
  fi
  after=$(last_tick "$tmp/$dst.serial")
  [ "${after%% *}" = "$boot" ] || fail "[$tag] the guest restarted (boot $boot before, ${after%% *} after)"
  if grep -a "PATTERN ERROR" "$tmp/$src.serial" "$tmp/$dst.serial"; then
    fail "[$tag] the guest's pattern check failed"
  fi
  echo "[$tag] counter: tick $n at the source before, tick ${after##* } at the destination, boot $boot"
  st=$(qmp "$tmp/$src.qmp" query-status)
  [[ $st == *'"status": "postmigrate"'* ]] || fail "[$tag] source not in postmigrate: $st"

  # Ferry's view: every channel parsed, pages as references.
  local line
  line=$(grep '^source ' "$tmp/$tag.out")
  [[ $line == *"channels=$CHANNELS parsed_all=1"* ]] || fail "[$tag] not every channel parsed: $line"
  local dup pages wire
  dup=$(sed -E 's/.* pages_dup=([0-9]+).*/\1/' <<<"$line")
  pages=$(sed -E 's/.* pages=([0-9]+).*/\1/' <<<"$line")
  wire=$(sed -E 's/.* wire_bytes=([0-9]+).*/\1/' <<<"$line")
  [ "$pages" -gt 1000 ] || fail "[$tag] only $pages pages parsed"
  [ "$dup" -gt 0 ] || fail "[$tag] no page went as a reference"
  grep -q '^target ' "$tmp/$tag.out" || fail "[$tag] no target statistics"
  # QEMU 7.2 elides zero pages itself (on the main channel, counted as
  # "duplicate"); multifd packets carry none, so Ferry's pages_zero stays 0
  # there (QEMU >= 9.0 lists them in the packets: qemu_zero_pages).
  local zero
  zero=$("$PY" -c 'import json, sys; print(json.loads(sys.argv[1])["ram"]["duplicate"])' \
         "$(cat "$tmp/$tag.migrate.json")")
  [ "$zero" -gt 0 ] || fail "[$tag] no zero page elided"
  echo "[$tag] Ferry: $pages pages in multifd packets, $dup as references; $zero zero pages elided (by QEMU); $((wire >> 10)) KiB on the wire for $RAM_MIB MiB of RAM"
  quit "$src" "$dst"
}

# run_case TAG RETURN_PATH: boots a guest and migrates it; again (up to 3
# times, tags TAG2, TAG3) only when the destination guest died of QEMU's
# stream although Ferry verified it delivered it unchanged.
run_case() {
  local tag=$1 rc
  for attempt in 1 2 3; do
    [ "$attempt" -gt 1 ] && tag=$1$attempt
    qemu "src-$tag"
    wait_tick "$tmp/src-$tag.serial" 3 60
    migrate_once "$tag" "$2"
    rc=$?
    [ "$rc" -eq 0 ] && return 0
    [ "$rc" -eq 2 ] || fail "[$tag] failed"
  done
  fail "[$1] the destination guest died in 3 runs out of 3"
}

step "boot the test guest at the source ($RAM_MIB MiB, TCG) and migrate it"
run_case a false

step "boot a second guest and migrate it with the return path on"
run_case b true

step "[c] the same guest image migrated by QEMU alone over a plain UNIX socket, for comparison"
qemu src-c
wait_tick "$tmp/src-c.serial" 3 60
qemu dst-c -incoming defer
caps "$tmp/dst-c.qmp" false && caps "$tmp/src-c.qmp" false || fail "[c] capabilities"
qmp "$tmp/dst-c.qmp" migrate-incoming "{\"uri\": \"unix:$tmp/dst-c.mig\"}" >/dev/null || fail "[c] migrate-incoming"
qmp "$tmp/src-c.qmp" migrate "{\"uri\": \"unix:$tmp/dst-c.mig\"}" >/dev/null || fail "[c] migrate"
for _ in $(seq 600); do
  st=$(qmp "$tmp/src-c.qmp" query-migrate)
  case $st in *'"status": "completed"'*|*'"status": "failed"'*) break;; esac
  sleep 0.2
done
[[ $st == *'"status": "completed"'* ]] || fail "[c] plain migration: $st"
echo "[c] QEMU alone: $("$PY" -c '
import json, sys
m = json.loads(sys.argv[1]); r = m["ram"]
print("total-time %d ms, downtime %d ms, transferred %d bytes (all on the socket)" % (
      m["total-time"], m["downtime"], r["transferred"]))' "$st")"
quit src-c dst-c

step "[d] failure: the destination QEMU dies mid-migration; the source guest runs on"
qemu src-d
wait_tick "$tmp/src-d.serial" 3 60
qemu dst-d -incoming defer
caps "$tmp/dst-d.qmp" false && caps "$tmp/src-d.qmp" false || fail "[d] capabilities"
dstpid=${pids[-1]}
qmp "$tmp/dst-d.qmp" migrate-incoming "{\"uri\": \"unix:$tmp/dst-d.mig\"}" >/dev/null || fail "[d] migrate-incoming"
# Slow enough that the destination dies in the middle.
qmp "$tmp/src-d.qmp" migrate-set-parameters '{"max-bandwidth": 20000000}' >/dev/null || fail "[d] max-bandwidth"
"$PAIR" "$tmp/src-d.mig" "$tmp/dst-d.mig" "$CHANNELS" "$RAM_MIB" >"$tmp/d.out" 2>"$tmp/d.err" &
pair=$!
pids+=($pair)
for _ in $(seq 100); do grep -q listening "$tmp/d.out" && break; sleep 0.1; done
qmp "$tmp/src-d.qmp" migrate "{\"uri\": \"unix:$tmp/src-d.mig\"}" >/dev/null || fail "[d] migrate"
sleep 2
{ kill -9 "$dstpid"; wait "$dstpid"; } 2>/dev/null
for _ in $(seq 300); do
  st=$(qmp "$tmp/src-d.qmp" query-migrate)
  case $st in *'"status": "completed"'*|*'"status": "failed"'*|*'"status": "cancelled"'*) break;; esac
  sleep 0.2
done
[[ $st == *'"status": "failed"'* ]] || fail "[d] the source QEMU's migration should have failed: $st"
wait "$pair" && fail "[d] qstream_pair should have failed"
echo "[d] qstream_pair: $(tr '\n' ' ' <"$tmp/d.err")"
grep -q "source: the target stopped the migration: .*destination QEMU" "$tmp/d.err" ||
  fail "[d] the source does not report the target's reason"
st=$(qmp "$tmp/src-d.qmp" query-status)
[[ $st == *'"running": true'* ]] || fail "[d] the source guest stopped: $st"
n=$(last_tick "$tmp/src-d.serial" | cut -d' ' -f2)
wait_tick "$tmp/src-d.serial" $((n + 2)) 30
echo "[d] the source guest still counts (tick $(last_tick "$tmp/src-d.serial" | cut -d' ' -f2))"

echo "PASS"
