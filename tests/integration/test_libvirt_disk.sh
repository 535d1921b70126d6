#!/usr/bin/env bash
# Live migration of a real QEMU guest whose disk is on storage the target
# does not reach, between two ferryd hosts (libvirt driver, each agent an
# embedded libvirt host): a qcow2 overlay over a base image.  The base
# moves as cold data (a file, over the provisioning network) when the
# target lacks it and is not sent when it has it; the overlay's contents
# move as hot data while the guest runs and writes to it (QEMU dirty
# bitmaps read over NBD, blocks through Ferry's dataplane), the last
# written blocks with the guest paused.
#
# The test guest writes 200 random 4 KiB blocks a second to its disk and
# checks the first 24 MiB of it over and over against what it wrote and
# what it read at boot (tests/guest/workload.c, ferry.diskwrite): base
# contents, overlay contents and its own writes.  The expected hashes live
# in guest memory, which migrates too, so after a migration the guest
# checks the target's disk against the source's.  Checked: the counter and
# the disk writes go on (same boot), no pattern or disk error, the
# migration verified the disk's guest-visible contents (digests at both
# ends), the target's overlay is a delta over the target's base, the
# source's overlay is gone.  First, a failure injected at the switchover
# (after the disk moved): the migration rolls back and the guest keeps
# running, writing and checking at the source.
#
# Usage: test_libvirt_disk.sh FERRYD FERRYCTL DRIVERS_DIR SRCDIR GUESTDIR
set -uo pipefail

FERRYD=$1 FERRYCTL=$2 DRIVERS=$3 SRCDIR=$4 GUESTDIR=$5
. "$SRCDIR/tests/integration/libvirt_lib.sh"

lv_setup lvd
command -v qemu-img >/dev/null && command -v qemu-io >/dev/null ||
  { echo "SKIP: qemu-img/qemu-io missing (qemu-utils)"; exit 77; }
serial=$tmp/g3.serial
h1=$tmp/host1/images h2=$tmp/host2/images
ctl2() { "$FERRYCTL" --host "127.0.0.1:$P2" --key "$tmp/key" "$@"; }

# The guest's disk figures: "W P E" (writes, checker passes, errors) of its
# last report.
disk_figures() {
  grep -ao 'disk writes=[0-9]* passes=[0-9]* errors=[0-9]*' "$serial" | tail -n 1 |
    sed 's/[a-z]*=//g; s/disk //'
}

# wait_disk WRITES PASSES SECONDS: until the guest wrote and checked that much.
wait_disk() {
  local w p e
  for _ in $(seq 1 $(($3 * 10))); do
    read -r w p e < <(disk_figures)
    [ -n "${p:-}" ] && [ "$w" -ge "$1" ] && [ "$p" -ge "$2" ] && return 0
    sleep 0.1
  done
  fail "the guest's disk figures did not reach $1 writes and $2 passes within $3 s (last: ${w:-none} ${p:-} ${e:-})"
}

check_disk() {
  grep -aq 'DISK ERROR' "$serial" && { grep -a 'DISK ERROR' "$serial" | head; fail "the guest read back disk contents it did not write"; }
  grep -aq 'disk .* failed' "$serial" && fail "a disk request of the guest failed"
  read -r w p e < <(disk_figures)
  [ "${e:-1}" -eq 0 ] || fail "the guest counts $e disk errors"
}

step "a base image (marker in sector 0, 0x42 over 1-4 MiB) on host1 only, an overlay over it"
marker="FERRY-BASE-$RANDOM$RANDOM"
printf '%s' "$marker" >"$tmp/base.raw"
truncate -s 64M "$tmp/base.raw"
qemu-img convert -q -O qcow2 "$tmp/base.raw" "$h1/base.qcow2" || fail "qemu-img convert"
qemu-io -f qcow2 -c 'write -P 0x42 1M 3M' "$h1/base.qcow2" >/dev/null || fail "qemu-io base"
qemu-img create -q -f qcow2 -b "$h1/base.qcow2" -F qcow2 "$h1/g3-vda.qcow2" ||
  fail "qemu-img create"
qemu-io -f qcow2 -c 'write -P 0x4f 512 512' -c 'write -P 0x55 4M 1M' "$h1/g3-vda.qcow2" \
  >/dev/null || fail "qemu-io overlay"
qemu-img info --backing-chain "$h1/g3-vda.qcow2" | grep -E '^(image|backing file|disk size):'

step "start two agents (ports $P1 and $P2)"
lv_start host1
lv_start host2

step "define and start g3 (160 MiB, writing 200 disk blocks/s) on host1"
lv_guest_xml g3 160 "$serial" \
  "ferry.mem=24 ferry.dirty=500 ferry.pattern=16 ferry.disk=1 ferry.diskwrite=200" \
  "$h1/g3-vda.qcow2" >"$tmp/g3.xml"
run_ok define ctl define "$tmp/g3.xml" --start
wait_tick "$serial" 2 60
grep -aq "disk vda sector0=$marker.* sector1=OOOOOOOO" "$serial" ||
  fail "g3 on host1 does not see its base and overlay"
grep -aq 'ferry-guest: disk checks 24 MiB' "$serial" || fail "the guest's disk writer did not start"
wait_disk 200 1 60
check_disk
echo "disk: $(disk_figures) (writes, passes, errors)"

step "a failure injected at the switchover, after the disk moved: g3 stays on host1"
before=$(last_tick "$serial")
read -r w0 p0 e0 < <(disk_figures)
ctl migrate --live g3 --from host1 --to host2 --fail-at SwitchHostAndPool >"$tmp/fail.out" 2>&1
rc=$?
cat "$tmp/fail.out"
[ $rc -ne 0 ] || fail "the migration with an injected failure exited 0"
grep -q 'SwitchHostAndPool' "$tmp/fail.out" || fail "the failure should be SwitchHostAndPool's"
fail_id=$(grep -oE 'Migration [0-9]+' "$tmp/fail.out" | head -n 1 | awk '{print $2}')
if [ -n "$fail_id" ]; then
  run_ok events ctl events "$fail_id"
  grep -q 'Disks moved while the VM ran' <<<"$out" ||
    fail "the disk should have moved before the injected failure"
  grep -q 'Source VM g3 resumed' <<<"$out" || fail "the rollback should resume the source"
fi
wait_tick "$serial" $((before + 3)) 30
wait_disk $((w0 + 200)) $((p0 + 1)) 60
check_guest "$serial"
check_disk
run_ok "list host1" ctl list host1
grep -q '^g3 .*running' <<<"$out" || fail "g3 should still run on host1"
run_ok "list host2" ctl2 list host2
grep -q '^g3 ' <<<"$out" && fail "no g3 should be left on host2"
[ -e "$h2/g3-vda.qcow2" ] && fail "the rollback should remove the target's overlay"
[ -e "$h2/base.qcow2" ] && fail "the rollback should remove the base it copied"
echo "after the rollback: counter $(last_tick "$serial"), disk $(disk_figures)"

step "live migration g3 host1 -> host2: base cold, overlay hot while the guest writes"
before=$(last_tick "$serial")
read -r w0 p0 e0 < <(disk_figures)
run_ok "live migration" ctl migrate --live g3 --from host1 --to host2 --downtime-ms 500
grep -q 'succeeded' <<<"$out" || fail "live migration did not succeed"
grep -q 'Verification: *passed' <<<"$out" || fail "live migration not verified"
live_id=$(grep -oE '^Migration [0-9]+ succeeded' <<<"$out" | awk '{print $2}')
run_ok events ctl events "$live_id"
grep -q "Copying base image $h1/base.qcow2 to $h2/base.qcow2 over provisioning" <<<"$out" ||
  fail "the base should cross as cold data (provisioning network)"
grep -q "Creating disk vda at $h2/g3-vda.qcow2 over $h2/base.qcow2" <<<"$out" ||
  fail "the target's overlay should be made over the target's base"
grep -qE 'Disks moved while the VM ran, in [0-9]+ rounds over migration .* verified' <<<"$out" ||
  fail "the overlay should move hot and verify"
grep -q 'Copying disk vda' <<<"$out" && fail "the overlay must not be copied as a file"
grep -E 'Disks moved|Memory transferred|Switchover completed' <<<"$out"
# The guest goes on at host2: more ticks, more writes, and two whole checks
# of its disk there (every checked block read from the target's disk).
wait_tick "$serial" $((before + 4)) 30
read -r w1 p1 e1 < <(disk_figures)
wait_disk $((w1 + 200)) $((p1 + 2)) 90
check_guest "$serial"
check_disk
echo "counter: $before before, $(last_tick "$serial") now; disk $(disk_figures)"
run_ok "list host2" ctl2 list host2
grep -q '^g3 .*running' <<<"$out" || fail "g3 should run on host2"
run_ok "list host1" ctl list host1
grep -q '^g3 ' <<<"$out" && fail "g3 should be gone from host1"
[ -e "$h1/g3-vda.qcow2" ] && fail "the source's overlay should be removed after the move"
[ -e "$h1/base.qcow2" ] || fail "the source's base must stay"

step "the target's overlay: a delta over the target's base"
qemu-img info -U --backing-chain "$h2/g3-vda.qcow2" | grep -E '^(image|backing file|disk size):'
qemu-img info -U "$h2/g3-vda.qcow2" | grep -q '^backing file: base.qcow2' ||
  fail "the target's overlay should name base.qcow2 beside it"
# The base's 1-4 MiB are read from the base (depth 1), not copied into the
# overlay (depth 0).
qemu-img map -U --output=json "$h2/g3-vda.qcow2" | /usr/bin/python3 -c '
import json, sys
M = 1 << 20
for e in json.load(sys.stdin):
    lo, hi = e["start"], e["start"] + e["length"]
    if lo < 4 * M and hi > 1 * M and 1 * M <= lo and e["depth"] == 0 and e["data"]:
        sys.exit("base contents at %d-%d were copied into the overlay" % (lo, hi))
' || fail "the overlay should not hold the base's contents"

step "live migration back g3 host2 -> host1: the base is there already"
before=$(last_tick "$serial")
run_ok "live migration back" ctl migrate --live g3 --from host2 --to host1 --downtime-ms 500
grep -q 'succeeded' <<<"$out" || fail "live migration back did not succeed"
back_id=$(grep -oE '^Migration [0-9]+ succeeded' <<<"$out" | awk '{print $2}')
run_ok events ctl2 events "$back_id"
grep -q "Base image $h2/base.qcow2 is at the target already as $h1/base.qcow2" <<<"$out" ||
  fail "the base at host1 should be found, not sent"
grep -q 'Copying base image' <<<"$out" && fail "the base must not be sent again"
grep -qE 'Disks moved while the VM ran, in [0-9]+ rounds .* verified' <<<"$out" ||
  fail "the overlay should move hot and verify"
grep -E 'Disks moved|Memory transferred|Switchover completed' <<<"$out"
wait_tick "$serial" $((before + 4)) 30
read -r w1 p1 e1 < <(disk_figures)
wait_disk $((w1 + 200)) $((p1 + 2)) 90
check_guest "$serial"
check_disk
run_ok "list host1" ctl list host1
grep -q '^g3 .*running' <<<"$out" || fail "g3 should run on host1 again"
echo "counter $(last_tick "$serial"), disk $(disk_figures), one boot: $(boot_ids "$serial")"

echo
echo "libvirt live migration with a non-shared disk: all steps passed"
