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
# completed and paused the source (the rollback resumes it).  And a
# ferryctl cancel while QEMU migrates: QEMU's migration is cancelled, the
# guest runs on at its source.
#
# Last, cross-VM dedup: two more guests evacuated from host1 to host2 one
# after the other with gang dedup (ferryctl evacuate --gang): the second
# one's pages the first already delivered go as cross-VM references.
#
# Usage: test_libvirt_live.sh FERRYD FERRYCTL DRIVERS_DIR SRCDIR GUESTDIR
# For measurements: LV_LIVE_MIB (guest RAM, 256), LV_LIVE_ARGS (the
# workload's kernel arguments), LV_LIVE_FAILURES=0 (skip the failures),
# LV_LIVE_GANG=0 (skip the cross-VM step).
# QEMU < 9.0 under TCG loses dirty pages in its own live migration, with or
# without Ferry (docs/libvirt.md, "Stream mode"); the test guest boots with
# pti=on, which keeps that from happening in practice (lv_guest_xml).
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
# Stream mode needs no shared memory backend (QEMU reads the RAM): the
# guest has none, as most guests of a stream-mode host would not.
lv_guest_xml g1 "$MIB" "$serial" "$ARGS" | grep -v '<memoryBacking>' >"$tmp/g1.xml"
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
grep -q 'verified: every channel as the source QEMU sent it' <<<"$events" ||
  fail "the target did not verify every channel against the source QEMU's sums"
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

step "cancel: ferryctl cancel while QEMU migrates (paced), migrating back"
before=$(last_tick "$serial")
ctl2 migrate --live g1 --from host2 --to host1 >"$tmp/cancel.out" 2>&1 &
migpid=$!
for _ in $(seq 1 300); do
  grep -q 'InitiateSource' "$tmp/cancel.out" && break
  sleep 0.1
done
cancel_id=$(grep -oE '^Migration [0-9]+ started' "$tmp/cancel.out" | awk '{print $2}')
[ -n "$cancel_id" ] || { wait $migpid; cat "$tmp/cancel.out"; fail "the migration did not start"; }
sleep 1
run_ok cancel ctl2 cancel "$cancel_id"
wait $migpid
rc=$?
cat "$tmp/cancel.out"
[ $rc -ne 0 ] || fail "the cancelled migration exited 0"
grep -q 'cancelled' "$tmp/cancel.out" || fail "the migration should be cancelled"
wait_tick "$serial" $((before + 5)) 30
check_guest "$serial"
run_ok "list host2" ctl2 list host2
grep -q '^g1 .*running' <<<"$out" || fail "g1 should run on host2 after the cancel"
qemu_running host1 && fail "a QEMU of g1 still runs on host1 after the cancel"
echo "g1 runs on at host2: tick $(last_tick "$serial")"
fi

if [ "${LV_LIVE_GANG:-1}" = 1 ]; then
step "cross-VM dedup: g2 and g3 (same kernel) evacuated host1 -> host2 one after the other, gang dedup on"
for v in g2 g3; do
  lv_guest_xml "$v" 128 "$tmp/$v.serial" "ferry.mem=16 ferry.dirty=200 ferry.pattern=8" |
    grep -v '<memoryBacking>' >"$tmp/$v.xml"
  run_ok "define $v" ctl define "$tmp/$v.xml" --start
done
wait_tick "$tmp/g2.serial" 3 60
wait_tick "$tmp/g3.serial" 3 60
# link-limit 1: one move at a time, so the second finds what the first
# left at host2 (stream mode references content of ended migrations).
cat >"$tmp/cluster.conf" <<EOF
[cluster]
key = $tmp/key
link-limit = 1
[host host1]
management   = 127.0.0.1:$P1
migration    = 127.0.0.1
provisioning = 127.0.0.1
[host host2]
management   = 127.0.0.1:$P2
migration    = 127.0.0.1
provisioning = 127.0.0.1
EOF
"$FERRYCTL" --key "$tmp/key" evacuate host1 --cluster "$tmp/cluster.conf" --gang --json \
  >"$tmp/evac.json" 2>"$tmp/evac.err"
rc=$?
[ $rc -eq 0 ] || { cat "$tmp/evac.json" "$tmp/evac.err"; fail "evacuate host1: exit $rc"; }
gang=$(/usr/bin/python3 - "$tmp/evac.json" <<'PY'
import json, sys
r = json.load(open(sys.argv[1]))
t = r["totals"]
assert r["result"] == "ok" and t["moved"] == 2, (r["result"], t)
assert all(v["host"] == "host2" for v in r["vms"]), [v["host"] for v in r["vms"]]
print("%d %.1f MiB across VMs, %.1f MiB within VMs, %.1f MiB zero, %.1f MiB on the wire" % (
      t["saved_dup_shared_bytes"], t["saved_dup_shared_bytes"] / 2**20,
      t["saved_dup_vm_bytes"] / 2**20, t["saved_zero_bytes"] / 2**20, t["wire_bytes"] / 2**20))
PY
) || { cat "$tmp/evac.json"; fail "the evacuation's result"; }
echo "gang dedup saved ${gang#* }"
[ "${gang%% *}" -gt 0 ] || fail "no page went as a cross-VM reference"
for v in g2 g3; do
  n=$(last_tick "$tmp/$v.serial")
  wait_tick "$tmp/$v.serial" $((n + 2)) 30
  check_guest "$tmp/$v.serial"
done
run_ok "list host2" ctl2 list host2
grep -q '^g2 .*running' <<<"$out" && grep -q '^g3 .*running' <<<"$out" ||
  fail "g2 and g3 should run on host2"
fi

step "summary"
echo "$summary" | sed -n '/^Migration/,$p'
echo "QEMU:  $qemu_line"
echo "Ferry: $ferry_line"
echo "stream mode, $MIB MiB guest: pages sent $sent, deduplicated $dup, zero $zero;" \
     "wire $((wire >> 10)) KiB; downtime $downtime ms"
[ -n "${gang:-}" ] && echo "cross-VM (gang dedup, 2 x 128 MiB evacuated): ${gang#* }"
echo
echo "libvirt live (stream mode): all steps passed"
