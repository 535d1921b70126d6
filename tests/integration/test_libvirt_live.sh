#!/usr/bin/env bash
# Live migration in stream mode (the default for libvirt VMs) of a real
# QEMU guest between two ferryd hosts, each an embedded libvirt host: QEMU
# migrates with multifd to a socket of the source agent, Ferry carries the
# main channel and every multifd channel over its dataplane (pages the
# target holds as references) and the target agent rebuilds the stream
# into the destination QEMU.  Checks: the guest's counter goes on (same
# boot id, no restart), its pattern check never fails, the VM is gone
# from the source (no QEMU left there), the job reports pages sent,
# deduplicated and zero and every channel parsed.  Then two failures
# before the switchover, migrating back, each leaving the guest running
# and counting at its source: the destination QEMU killed mid-transfer
# (host2's driver paces QEMU with stream-bandwidth= so the transfer
# lasts), and a failure injected at SwitchHostAndPool, after QEMU
# completed and paused the source (the rollback resumes it).
#
# Usage: test_libvirt_live.sh FERRYD FERRYCTL DRIVERS_DIR SRCDIR GUESTDIR
# For measurements: LV_LIVE_MIB (guest RAM, 256), LV_LIVE_ARGS (the
# workload's kernel arguments), LV_LIVE_FAILURES=0 (skip the failures).
# QEMU 7.2 under TCG: keep ferry.dirty <= 1000 for 1 GiB guests (higher
# rates panic the guest's kernel after a migration with QEMU alone too,
# docs/qstream.md).
set -uo pipefail

FERRYD=$1 FERRYCTL=$2 DRIVERS=$3 SRCDIR=$4 GUESTDIR=$5
. "$SRCDIR/tests/integration/libvirt_lib.sh"

MIB=${LV_LIVE_MIB:-256}
ARGS=${LV_LIVE_ARGS:-ferry.mem=64 ferry.dirty=1000 ferry.pattern=32}
lv_setup lvl
serial=$tmp/g1.serial
# host2 as a source paces QEMU (bytes/s before Ferry's dedup), so the
# failure below lands mid-transfer.
sed -i 's/^\(driver-config = .*\)$/\1;stream-bandwidth=12M/' "$tmp/host2.conf"

ctl2() { "$FERRYCTL" --host "127.0.0.1:$P2" --key "$tmp/key" "$@"; }
# g1's QEMU on host NAME, if any.
qemu_of() { [ -f "$tmp/$1/run/qemu/g1.pid" ] && cat "$tmp/$1/run/qemu/g1.pid"; }
qemu_running() { local p; p=$(qemu_of "$1") && kill -0 "$p" 2>/dev/null; }
# A number of the JSON object on stdin: json_num KEY.
json_num() { /usr/bin/python3 -c 'import json,sys; print(int(json.load(sys.stdin)[sys.argv[1]]))' "$1"; }

step "start two agents, each its own libvirt host (ports $P1 and $P2)"
lv_start host1
lv_start host2

step "define and start the test guest g1 ($MIB MiB, $ARGS) on host1"
lv_guest_xml g1 "$MIB" "$serial" "$ARGS" >"$tmp/g1.xml"
run_ok define ctl define "$tmp/g1.xml" --start
wait_tick "$serial" 3 60

step "live migration g1 host1 -> host2 (default mode: stream)"
before=$(last_tick "$serial")
run_ok "live migration" ctl migrate --live g1 --from host1 --to host2 --downtime-ms 100
grep -q 'succeeded' <<<"$out" || fail "live migration did not succeed"
mig=$(grep -oE '^Migration [0-9]+ succeeded' <<<"$out" | awk '{print $2}')
summary=$out
run_ok events ctl events "$mig"
events=$out
ferry_line=$(grep -o 'Ferry carried it over.*' <<<"$events")
qemu_line=$(grep -o 'The hypervisor migrated VM g1.*' <<<"$events")
echo "QEMU:  $qemu_line"
echo "Ferry: $ferry_line"
wait_tick "$serial" $((before + 4)) 30
check_guest "$serial"
echo "counter: tick $before before the migration, tick $(last_tick "$serial") now, one boot: $(boot_ids "$serial")"
run_ok "list host2" ctl list host2
grep -q '^g1 .*running' <<<"$out" || fail "g1 should run on host2"
run_ok "list host1" ctl list host1
grep -q '^g1 ' <<<"$out" && fail "g1 should be gone from host1"
qemu_running host1 && fail "a QEMU of g1 still runs on host1"
grep -q 'Stream mode: the hypervisor migrates VM g1 (multifd, 2 channels' <<<"$events" ||
  fail "the migration did not run in stream mode"
grep -q 'parsed_all=yes' <<<"$events" || fail "Ferry did not parse every multifd channel"
grep -q 'Device state' <<<"$events" && fail "stream mode should not save device state apart"
run_ok jobinfo ctl --json jobinfo "$mig"
jobinfo=$out
sent=$(json_num pages_sent <<<"$jobinfo") dup=$(json_num pages_dup <<<"$jobinfo")
zero=$(json_num pages_zero <<<"$jobinfo") wire=$(json_num wire_bytes <<<"$jobinfo")
[ "$sent" -gt 1000 ] || fail "jobinfo: only $sent pages sent"
[ "$dup" -gt 0 ] || fail "jobinfo: no page deduplicated"
[ "$zero" -gt 0 ] || fail "jobinfo: no zero page"
[ "$wire" -gt 0 ] || fail "jobinfo: no bytes on the wire"
downtime=$(/usr/bin/python3 -c 'import json,sys; print("%.1f" % (json.load(sys.stdin)["downtime"] * 1000))' <<<"$jobinfo")

if [ "${LV_LIVE_FAILURES:-1}" = 1 ]; then
step "failure 1: host1's QEMU (the destination) is killed mid-transfer, migrating back"
before=$(last_tick "$serial")
ctl2 migrate --live g1 --from host2 --to host1 >"$tmp/kill.out" 2>&1 &
migpid=$!
for _ in $(seq 1 300); do qemu_running host1 && break; sleep 0.1; done
qemu_running host1 || { wait $migpid; cat "$tmp/kill.out"; fail "no placeholder QEMU on host1"; }
sleep 2.5 # the placeholder starts, then the transfer (paced) lasts several seconds
victim=$(qemu_of host1)
kill -9 "$victim" 2>/dev/null || fail "cannot kill host1's QEMU"
echo "killed host1's QEMU (pid $victim)"
wait $migpid
rc=$?
cat "$tmp/kill.out"
[ $rc -ne 0 ] || fail "the migration whose destination QEMU died exited 0"
grep -q 'InitiateSource' "$tmp/kill.out" || fail "the failure should be InitiateSource's (the transfer)"
grep -q 'rolled_back' "$tmp/kill.out" || fail "the migration should be rolled back"
grep -q "QEMU's migration failed" "$tmp/kill.out" || fail "QEMU's failure should be reported"
# Ferry's own reason comes with it when the proxy saw the failure first
# (usually "the target stopped the migration: channel N to the destination
# QEMU: ..."); which side notices first is a race.
grep -o 'Ferry: .*' "$tmp/kill.out" || true
wait_tick "$serial" $((before + 5)) 30
check_guest "$serial"
run_ok "list host2" ctl2 list host2
grep -q '^g1 .*running' <<<"$out" || fail "g1 should run on host2 after the failure"
run_ok "list host1" ctl list host1
grep -q '^g1 ' <<<"$out" && fail "host1 should not keep a g1"
echo "g1 runs on at host2: tick $(last_tick "$serial")"

step "failure 2: injected at SwitchHostAndPool, after QEMU completed (the source paused)"
before=$(last_tick "$serial")
ctl2 migrate --live g1 --from host2 --to host1 --fail-at SwitchHostAndPool >"$tmp/inject.out" 2>&1
rc=$?
cat "$tmp/inject.out"
[ $rc -ne 0 ] || fail "the migration with an injected failure exited 0"
grep -q 'injected failure in SwitchHostAndPool' "$tmp/inject.out" || fail "no injected failure"
grep -q 'rolled_back' "$tmp/inject.out" || fail "the migration should be rolled back"
inject_id=$(grep -oE 'migration [0-9]+' "$tmp/inject.out" | head -n 1 | awk '{print $2}')
wait_tick "$serial" $((before + 5)) 30
check_guest "$serial"
run_ok "list host2" ctl2 list host2
grep -q '^g1 .*running' <<<"$out" || fail "g1 should run on host2 after the rollback"
qemu_running host1 && fail "a QEMU of g1 still runs on host1 after the rollback"
if [ -n "$inject_id" ]; then
  run_ok events ctl2 events "$inject_id"
  grep -q 'Source VM g1 resumed' <<<"$out" || fail "the rollback should resume the source VM"
fi
echo "g1 runs on at host2: tick $(last_tick "$serial")"
fi

step "summary"
echo "$summary" | sed -n '/^Migration/,$p'
echo "QEMU:  $qemu_line"
echo "Ferry: $ferry_line"
echo "stream mode, $MIB MiB guest: pages sent $sent, deduplicated $dup, zero $zero;" \
     "wire $((wire >> 10)) KiB; downtime $downtime ms"
echo
echo "libvirt live (stream mode): all steps passed"
