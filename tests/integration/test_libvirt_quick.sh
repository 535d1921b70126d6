#!/usr/bin/env bash
# Real QEMU guests between two ferryd hosts (libvirt driver, each agent an
# embedded libvirt host): RAM-direct quick migration host1 -> host2, then
# live RAM-direct host2 -> host1.  The test guest (tests/guest) counts on
# its serial console, dirties memory and checks a pattern: after each move
# the counter goes on from where it was (same boot, no restart), the
# pattern check never fails, the VM runs only at the target, and the
# migration verified its memory digests.  A failure injected before the
# switchover (the target cannot start its placeholder) leaves the guest
# running at the source.
#
# Usage: test_libvirt_quick.sh FERRYD FERRYCTL DRIVERS_DIR SRCDIR GUESTDIR
set -uo pipefail

FERRYD=$1 FERRYCTL=$2 DRIVERS=$3 SRCDIR=$4 GUESTDIR=$5
. "$SRCDIR/tests/integration/libvirt_lib.sh"

lv_setup lvq
serial=$tmp/g1.serial

step "start two agents, each its own libvirt host (ports $P1 and $P2)"
lv_start host1
lv_start host2

step "define and start the test guest g1 (192 MiB, dirtying 1000 pages/s) on host1"
lv_guest_xml g1 192 "$serial" "ferry.mem=48 ferry.dirty=1000 ferry.pattern=32" >"$tmp/g1.xml"
run_ok define ctl define "$tmp/g1.xml" --start
wait_tick "$serial" 3 60
run_ok "list host1" ctl list host1
grep -q '^g1 .*running' <<<"$out" || fail "g1 should run on host1"

step "quick migration (RAM-direct) g1 host1 -> host2"
before=$(last_tick "$serial")
run_ok "quick migration" ctl migrate --quick g1 --from host1 --to host2
grep -q 'succeeded' <<<"$out" || fail "quick migration did not succeed"
grep -q 'Verification: *passed' <<<"$out" || fail "quick migration not verified"
quick_id=$(grep -oE '^Migration [0-9]+ succeeded' <<<"$out" | awk '{print $2}')
wait_tick "$serial" $((before + 4)) 30
check_guest "$serial"
echo "counter: $before before the migration, $(last_tick "$serial") now, one boot: $(boot_ids "$serial")"
run_ok "list host2" ctl list host2
grep -q '^g1 .*running' <<<"$out" || fail "g1 should run on host2"
run_ok "list host1" ctl list host1
grep -q '^g1 ' <<<"$out" && fail "g1 should be gone from host1"
run_ok events ctl events "$quick_id"
grep -q 'Memory transferred in 1 rounds' <<<"$out" || fail "quick: memory not moved in one round"
grep -q 'SuspendSourceVm\|Suspending source VM g1' <<<"$out" || fail "quick: no suspend event"
run_ok summary ctl summary "$quick_id"
grep -q 'quick migration of g1 from host1 to host2' <<<"$out" || fail "summary of the quick migration"
grep -qE 'Pages: +[0-9]+ sent whole, [0-9]+ zero, [0-9]+ duplicate' <<<"$out" ||
  fail "the summary should give pages sent, zero and duplicate"

step "live migration (RAM-direct, re-hash rounds) g1 host2 -> host1"
before=$(last_tick "$serial")
# Live migration of a libvirt VM is stream mode by default (test_libvirt_live.sh).
run_ok "live migration" ctl migrate --live --mode ram-direct g1 --from host2 --to host1 \
  --downtime-ms 500
grep -q 'succeeded' <<<"$out" || fail "live migration did not succeed"
grep -q 'Verification: *passed' <<<"$out" || fail "live migration not verified"
live_id=$(grep -oE '^Migration [0-9]+ succeeded' <<<"$out" | awk '{print $2}')
wait_tick "$serial" $((before + 4)) 30
check_guest "$serial"
echo "counter: $before before the migration, $(last_tick "$serial") now"
run_ok "list host1" ctl list host1
grep -q '^g1 .*running' <<<"$out" || fail "g1 should run on host1 again"
run_ok "list host2" ctl list host2
grep -q '^g1 ' <<<"$out" && fail "g1 should be gone from host2"
# Migrations are recorded by the agent of their source host.
run_ok summary "$FERRYCTL" --host "127.0.0.1:$P2" --key "$tmp/key" summary "$live_id"
grep -q 'live migration of g1 from host2 to host1' <<<"$out" || fail "summary of the live migration"

step "a failure before the switchover: g1 stays on host1 and keeps counting"
# A VM named g1 defined (off) on host2 makes its placeholder fail to start
# (PrepareDestination), after the source was paused: the rollback resumes it.
lv_guest_xml g1 192 "$tmp/blocker.serial" "" >"$tmp/blocker.xml"
"$FERRYCTL" --host "127.0.0.1:$P2" --key "$tmp/key" define "$tmp/blocker.xml" ||
  fail "cannot define the blocking VM on host2"
before=$(last_tick "$serial")
ctl migrate --quick g1 --from host1 --to host2 >"$tmp/fail.out" 2>&1
rc=$?
cat "$tmp/fail.out"
[ $rc -ne 0 ] || fail "the quick migration to a host with a VM of the same name exited 0"
grep -q 'PrepareDestination' "$tmp/fail.out" || fail "the failure should be PrepareDestination's"
wait_tick "$serial" $((before + 3)) 30
check_guest "$serial"
run_ok "list host1" ctl list host1
grep -q '^g1 .*running' <<<"$out" || fail "g1 should still run on host1 after the failure"

echo
echo "libvirt quick/live: all steps passed"
