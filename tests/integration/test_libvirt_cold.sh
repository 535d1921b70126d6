#!/usr/bin/env bash
# Cold migration of a real QEMU guest with a qcow2 chain (base + overlay)
# between two ferryd hosts (libvirt driver, embedded libvirt hosts), where
# the base image already exists at the target.  The guest prints the start
# of its disk (the base's marker in sector 0, the overlay's in sector 1),
# so its boot at the target shows the chain is whole there.  Checked: the
# guest shuts down at the source (ACPI), the overlay crosses the dataplane
# and verifies, the base is not sent again, the target's overlay names the
# target's base, the source's overlay is removed, and the guest boots at
# the target showing both markers.
# Then (after a quick migration back) host2 gets a different file of the
# base's name and size: a cold migration must send the base under another
# name, leave that file as it was and point the overlay at the copy, and
# the guest boots there on its own base.
#
# Usage: test_libvirt_cold.sh FERRYD FERRYCTL DRIVERS_DIR SRCDIR GUESTDIR
set -uo pipefail

FERRYD=$1 FERRYCTL=$2 DRIVERS=$3 SRCDIR=$4 GUESTDIR=$5
. "$SRCDIR/tests/integration/libvirt_lib.sh"

lv_setup lvc
command -v qemu-img >/dev/null && command -v qemu-io >/dev/null ||
  { echo "SKIP: qemu-img/qemu-io missing (qemu-utils)"; exit 77; }
serial=$tmp/g2.serial
src=$tmp/host1/images dst=$tmp/host2/images

step "a base image (marker in sector 0) on both hosts, an overlay on host1"
marker="FERRY-BASE-$RANDOM$RANDOM"
printf '%s' "$marker" >"$tmp/base.raw"
truncate -s 64M "$tmp/base.raw"
qemu-img convert -q -O qcow2 "$tmp/base.raw" "$src/base.qcow2" || fail "qemu-img convert"
cp "$src/base.qcow2" "$dst/base.qcow2"
# The overlay names its base by absolute path, as images made by hand
# often do: at the target it must be made to name the target's copy.
qemu-img create -q -f qcow2 -b "$src/base.qcow2" -F qcow2 "$src/g2-vda.qcow2" ||
  fail "qemu-img create"
qemu-io -f qcow2 -c 'write -P 0x4f 512 512' "$src/g2-vda.qcow2" >/dev/null || fail "qemu-io"
qemu-img info --backing-chain "$src/g2-vda.qcow2" | grep -E '^(image|backing file):'

step "start two agents (ports $P1 and $P2)"
lv_start host1
lv_start host2

step "define and start g2 (128 MiB, disk vda = overlay) on host1"
lv_guest_xml g2 128 "$serial" "ferry.mem=16 ferry.dirty=200 ferry.pattern=8 ferry.disk=1" \
  "$src/g2-vda.qcow2" >"$tmp/g2.xml"
run_ok define ctl define "$tmp/g2.xml" --start
wait_tick "$serial" 2 60
grep -aq "disk vda sector0=$marker.* sector1=OOOOOOOO" "$serial" ||
  fail "g2 on host1 does not see its base and overlay"

step "cold migration g2 host1 -> host2"
run_ok "cold migration" ctl migrate --cold g2 --from host1 --to host2
grep -q 'succeeded' <<<"$out" || fail "cold migration did not succeed"
grep -q 'Verification: *passed' <<<"$out" || fail "cold migration not verified"
cold_id=$(grep -oE '^Migration [0-9]+ succeeded' <<<"$out" | awk '{print $2}')
run_ok events ctl events "$cold_id"
grep -q 'Guest shutdown of source VM' <<<"$out" || fail "no guest shutdown at the source"
grep -q "Copying disk vda to $dst/g2-vda.qcow2 over provisioning" <<<"$out" ||
  fail "the overlay should cross the provisioning network"
grep -q 'Copying base image' <<<"$out" && fail "the base image exists at the target: it must not be sent"
grep -q "Base image $src/base.qcow2 is at the target already as $dst/base.qcow2" <<<"$out" ||
  fail "the event log should say the base was found at the target"
grep -q 'Power On initiated on target VM' <<<"$out" || fail "g2 should be started at the target"

step "the target's chain: overlay -> the target's base"
qemu-img info -U --backing-chain "$dst/g2-vda.qcow2" | grep -E '^(image|backing file):'
qemu-img info -U "$dst/g2-vda.qcow2" | grep -q '^backing file: base.qcow2' ||
  fail "the moved overlay should name base.qcow2 beside it"
[ -e "$src/g2-vda.qcow2" ] && fail "the source's overlay should be removed after the move"
[ -e "$src/base.qcow2" ] || fail "the source's base must stay (other VMs may use it)"

step "g2 boots at host2 and sees base and overlay"
for _ in $(seq 1 600); do
  [ "$(grep -ac 'ferry-guest: start' "$serial")" -ge 2 ] && break
  sleep 0.1
done
[ "$(grep -ac 'ferry-guest: start' "$serial")" -ge 2 ] || fail "g2 did not boot again at host2"
[ "$(grep -ac "disk vda sector0=$marker.* sector1=OOOOOOOO" "$serial")" -ge 2 ] ||
  fail "g2 at host2 does not see its base and overlay"
grep -aq 'PATTERN ERROR' "$serial" && fail "the guest reported a PATTERN ERROR"
run_ok "list host2" ctl list host2
grep -q '^g2 .*running' <<<"$out" || fail "g2 should run on host2"
run_ok "list host1" ctl list host1
grep -q '^g2 ' <<<"$out" && fail "g2 should be gone from host1"
run_ok summary ctl summary "$cold_id"

step "quick migration (RAM-direct) g2 host2 -> host1 with its disk: the overlay moves while g2 is paused"
ctl2() { "$FERRYCTL" --host "127.0.0.1:$P2" --key "$tmp/key" "$@"; }
wait_tick "$serial" 2 60
boot=$(grep -ao 'boot=[0-9a-f]*' "$serial" | tail -n 1)
before=$(last_tick "$serial")
run_ok "quick migration" ctl2 migrate --quick g2 --from host2 --to host1
grep -q 'succeeded' <<<"$out" || fail "quick migration with a disk did not succeed"
grep -q 'Verification: *passed' <<<"$out" || fail "quick migration with a disk not verified"
quick_id=$(grep -oE '^Migration [0-9]+ succeeded' <<<"$out" | awk '{print $2}')
run_ok events ctl2 events "$quick_id"
grep -q "Copying disk vda to $src/g2-vda.qcow2 over migration" <<<"$out" ||
  fail "the overlay should move over the migration network"
grep -q "Base image $dst/base.qcow2 is at the target already" <<<"$out" ||
  fail "host1's base should be used, not sent"
wait_tick "$serial" $((before + 3)) 30
grep -aq 'PATTERN ERROR' "$serial" && fail "the guest reported a PATTERN ERROR"
[ "$(grep -ac 'ferry-guest: start' "$serial")" -eq 2 ] || fail "g2 restarted in the quick migration"
[ "$(grep -ao 'boot=[0-9a-f]*' "$serial" | tail -n 1)" = "$boot" ] ||
  fail "g2's boot id changed in the quick migration"
qemu-img info -U "$src/g2-vda.qcow2" | grep -q '^backing file: base.qcow2' ||
  fail "the overlay back on host1 should name base.qcow2 beside it"
[ -e "$dst/g2-vda.qcow2" ] && fail "host2's overlay should be removed after the move"
run_ok "list host1" ctl list host1
grep -q '^g2 .*running' <<<"$out" || fail "g2 should run on host1"

step "host2 gets a different base.qcow2 of the same size (another marker)"
other="FERRY-ELSE-${marker#FERRY-BASE-}"
printf '%s' "$other" >"$tmp/other.raw"
truncate -s 64M "$tmp/other.raw"
qemu-img convert -q -O qcow2 "$tmp/other.raw" "$dst/base.qcow2" || fail "qemu-img convert"
truncate -s "$(stat -c %s "$src/base.qcow2")" "$dst/base.qcow2"
[ "$(stat -c %s "$dst/base.qcow2")" = "$(stat -c %s "$src/base.qcow2")" ] ||
  fail "the two bases should have the same size"
cmp -s "$src/base.qcow2" "$dst/base.qcow2" && fail "the two bases should differ"
other_md5=$(md5sum <"$dst/base.qcow2")

step "cold migration g2 host1 -> host2: the base goes under another name"
starts=$(grep -ac 'ferry-guest: start' "$serial")
run_ok "cold migration (base name taken)" ctl migrate --cold g2 --from host1 --to host2
grep -q 'succeeded' <<<"$out" || fail "cold migration over a different base did not succeed"
grep -q 'Verification: *passed' <<<"$out" || fail "cold migration not verified"
cold2_id=$(grep -oE '^Migration [0-9]+ succeeded' <<<"$out" | awk '{print $2}')
run_ok events ctl events "$cold2_id"
grep -q "Target file $dst/base.qcow2 is not base image $src/base.qcow2 (same size" <<<"$out" ||
  fail "the event log should say the target's base.qcow2 is another file"
alt=$(grep -oE "Copying base image $src/base.qcow2 to $dst/base\.ferry-[0-9a-f]{8}\.qcow2" <<<"$out" |
  awk '{print $NF}')
[ -n "$alt" ] || fail "the base should be sent as $dst/base.ferry-XXXXXXXX.qcow2"
grep -q "Pointing disk vda at $dst/g2-vda.qcow2 at its base image $alt" <<<"$out" ||
  fail "the event log should say the overlay was pointed at $alt"
[ "$(md5sum <"$dst/base.qcow2")" = "$other_md5" ] ||
  fail "host2's own base.qcow2 must not be touched"
cmp -s "$src/base.qcow2" "$alt" || fail "$alt should be a copy of host1's base"
qemu-img info -U "$dst/g2-vda.qcow2" | grep -E '^backing file:'
qemu-img info -U "$dst/g2-vda.qcow2" | grep -q "^backing file: $(basename "$alt")\( \|$\)" ||
  fail "the moved overlay should name $(basename "$alt")"

step "g2 boots at host2 on its own base, not on host2's base.qcow2"
for _ in $(seq 1 600); do
  [ "$(grep -ac 'ferry-guest: start' "$serial")" -gt "$starts" ] && break
  sleep 0.1
done
[ "$(grep -ac 'ferry-guest: start' "$serial")" -gt "$starts" ] || fail "g2 did not boot at host2"
for _ in $(seq 1 300); do
  [ "$(grep -ac "disk vda sector0=" "$serial")" -gt "$starts" ] && break
  sleep 0.1
done
grep -aq "disk vda sector0=$other" "$serial" && fail "g2 booted on host2's other base.qcow2"
[ "$(grep -ac "disk vda sector0=$marker.* sector1=OOOOOOOO" "$serial")" -gt "$starts" ] ||
  fail "g2 at host2 does not see its base and overlay"
grep -aq 'PATTERN ERROR' "$serial" && fail "the guest reported a PATTERN ERROR"
run_ok "list host2" ctl list host2
grep -q '^g2 .*running' <<<"$out" || fail "g2 should run on host2"
[ "$(md5sum <"$dst/base.qcow2")" = "$other_md5" ] ||
  fail "host2's own base.qcow2 changed while g2 ran"

echo
echo "libvirt cold: all steps passed"
