#!/usr/bin/env bash
# A failure injected at each workflow action of a real QEMU guest's live
# and quick (RAM-direct) migration between two ferryd hosts (libvirt
# driver, each agent an embedded libvirt host).  `ferryctl migrate
# --fail-at ACTION` makes that action fail instead of running (the
# workflow's test hook, docs/workflow.md).
#
# Before the switchover (every action up to and including
# SwitchHostAndPool, which fails before it starts): the migration is
# rolled back, the guest keeps running at the source and keeps counting
# (its serial counter goes on, the same boot id, no pattern error), and the
# target has no domain left and no QEMU of it running.  After the
# switchover (CompleteSource, CompleteDestination): the migration rolls
# forward, the guest runs at the target, still the same boot.
#
# One small guest (128 MiB) serves every injection: each rolled-back
# migration leaves it where it was.  The migrations that run to their end
# also check that their progress names no action missing from the lists
# below (an action added to the workflow must be added here), and last,
# the guest's persistent definition after all these hops has no
# "-incoming" left from a RAM-direct placeholder.
#
# Usage: test_libvirt_failures.sh FERRYD FERRYCTL DRIVERS_DIR SRCDIR GUESTDIR
set -uo pipefail

FERRYD=$1 FERRYCTL=$2 DRIVERS=$3 SRCDIR=$4 GUESTDIR=$5
. "$SRCDIR/tests/integration/libvirt_lib.sh"

# The actions before the switchover, in the workflow's order
# (controlplane/workflow.c: fy_workflow_plan).  The head is the same for
# every kind; the quick list is RAM-direct's tail with shared disks.
head_actions=(InvokePrechecks SelectDestination CheckPermission CheckCompatibility
  CreateInventoryVm ComputeSpec InvokeCallbacks)
live_actions=("${head_actions[@]}" PrepareSource PrepareDestination InitiateDestination
  InitiateSource SwitchHostAndPool)
quick_actions=(PrepareDestination InitiateDestination SuspendSourceVm InitiateSource
  SwitchHostAndPool)
after_actions=(CompleteSource CompleteDestination)

lv_setup lvf
injected=0
serial=$tmp/g1.serial

ctl_on() { local h=$1; shift; "$FERRYCTL" --host "127.0.0.1:${port_of[$h]}" --key "$tmp/key" "$@"; }
declare -A port_of=([host1]=$P1 [host2]=$P2)

# The QEMU of VM g1 on host H runs (its pid file names a live process).
qemu_runs() {
  local f=$tmp/$1/run/qemu/g1.pid
  [ -f "$f" ] && kill -0 "$(cat "$f")" 2>/dev/null
}

# vm_state HOST: g1's state in `ferryctl list HOST` into $st, "" when it
# is not there.
vm_state() {
  local js
  js=$(ctl_on "$1" --json list "$1" 2>&1) || { echo "$js"; fail "ferryctl list $1 failed"; }
  st=$(/usr/bin/python3 -c '
import json, sys
for v in json.loads(sys.argv[1]).get("vms", []):
    if v.get("name") == "g1":
        print(v.get("power", "?"))' "$js")
}

# The state of migration ID in the store of host H's agent.
mig_state() {
  ctl_on "$1" --json migrations | /usr/bin/python3 -c '
import json, sys
for m in json.load(sys.stdin)["migrations"]:
    if m["id"] == int(sys.argv[1]):
        print(m["state"])' "$2"
}

# inject KIND ACTION FROM TO [OPTION...]: the migration fails at ACTION;
# sets $mid.
inject() {
  local kind=$1 action=$2 from=$3 to=$4 extra=("${@:5}")
  [ "$kind" = live ] && extra+=(--downtime-ms 500)
  injected=$((injected + 1))
  ctl_on "$from" migrate --"$kind" g1 --from "$from" --to "$to" --fail-at "$action" \
    "${extra[@]}" >"$tmp/inject.out" 2>&1
  local rc=$?
  [ $rc -ne 0 ] || { cat "$tmp/inject.out"; fail "$kind fail-at $action: ferryctl exited 0"; }
  grep -q "injected failure in $action" "$tmp/inject.out" ||
    { cat "$tmp/inject.out"; fail "$kind fail-at $action: the error should name the injected failure"; }
  mid=$(grep -oE 'migration [0-9]+' "$tmp/inject.out" | head -n 1 | awk '{print $2}')
  [ -n "$mid" ] || { cat "$tmp/inject.out"; fail "$kind fail-at $action: no migration id"; }
}

# rolled_back KIND ACTION FROM TO [OPTION...]: one injection before the
# switchover.
rolled_back() {
  local kind=$1 action=$2 from=$3 to=$4 before st
  before=$(last_tick "$serial")
  inject "$@"
  st=$(mig_state "$from" "$mid")
  [ "$st" = rolled_back ] || fail "$kind fail-at $action: migration $mid is '$st', not rolled_back"
  out=$(ctl_on "$from" events "$mid" 2>&1)
  grep -q "$action failed: injected failure in $action (before the switchover: rolling back)" <<<"$out" ||
    { echo "$out"; fail "$kind fail-at $action: no rollback event"; }
  grep -q "Migration rolled back: VM g1 stays at source host $from" <<<"$out" ||
    { echo "$out"; fail "$kind fail-at $action: no 'rolled back' event"; }
  vm_state "$from"
  [ "$st" = running ] || fail "$kind fail-at $action: g1 is '$st' on $from, not running"
  vm_state "$to"
  [ -z "$st" ] || fail "$kind fail-at $action: $to still has a domain g1 ($st)"
  qemu_runs "$to" && fail "$kind fail-at $action: a QEMU of g1 still runs on $to"
  qemu_runs "$from" || fail "$kind fail-at $action: g1's QEMU on $from is gone"
  wait_tick "$serial" $((before + 2)) 30
  check_guest "$serial"
  printf '%-24s fail-at %-20s rolled back (migration %s); g1 counts on %s: tick %s -> %s\n' \
    "$kind${5:+ ${*:5}}" "$action" "$mid" "$from" "$before" "$(last_tick "$serial")"
}

# known_actions KIND: every action the progress lines of the last injected
# migration (which ran up to an action after the switchover) name is in
# this test's lists, so an action added to the workflow is not left out
# here unnoticed.  (Progress frames may skip an action, never invent one.)
known_actions() {
  local list=" ${head_actions[*]} ${live_actions[*]} ${quick_actions[*]} ${after_actions[*]} " a
  for a in $(sed -nE 's/^migration [0-9]+: ([A-Za-z]+) \(.*/\1/p' "$tmp/inject.out" | sort -u); do
    [[ $list == *" $a "* ]] ||
      fail "$1 migration ran action $a, which this test does not inject a failure at: add it"
  done
}

# rolled_forward KIND ACTION FROM TO: one injection after the switchover.
rolled_forward() {
  local kind=$1 action=$2 from=$3 to=$4 before st
  before=$(last_tick "$serial")
  inject "$@"
  known_actions "$kind"
  st=$(mig_state "$from" "$mid")
  [ "$st" = failed ] || fail "$kind fail-at $action: migration $mid is '$st', not failed"
  out=$(ctl_on "$from" events "$mid" 2>&1)
  grep -q "$action failed: injected failure in $action (after the switchover: rolling forward)" <<<"$out" ||
    { echo "$out"; fail "$kind fail-at $action: no roll-forward event"; }
  grep -q "Migration failed after the switchover: VM g1 runs at target host $to" <<<"$out" ||
    { echo "$out"; fail "$kind fail-at $action: no 'runs at target' event"; }
  vm_state "$to"
  [ "$st" = running ] || fail "$kind fail-at $action: g1 is '$st' on $to, not running"
  wait_tick "$serial" $((before + 3)) 30
  check_guest "$serial"
  printf '%-24s fail-at %-20s rolled forward (migration %s); g1 counts on %s: tick %s -> %s\n' \
    "$kind" "$action" "$mid" "$to" "$before" "$(last_tick "$serial")"
  grep -o 'Memory transferred in [a-z0-9 -]*' <<<"$out" | sed 's/^/    /' # which mode ran
}

step "start two agents, each its own libvirt host (ports $P1 and $P2)"
lv_start host1
lv_start host2

step "define and start the test guest g1 (128 MiB, dirtying 1000 pages/s) on host1"
lv_guest_xml g1 128 "$serial" "ferry.mem=16 ferry.dirty=1000 ferry.pattern=16" >"$tmp/g1.xml"
run_ok define ctl define "$tmp/g1.xml" --start
wait_tick "$serial" 3 60
vm_state host1
[ "$st" = running ] || fail "g1 should run on host1"

step "live migration host1 -> host2, a failure at each action before the switchover"
for a in "${live_actions[@]}"; do
  rolled_back live "$a" host1 host2
done
# The default is stream mode where the driver has it (QEMU migrates itself
# through Ferry); RAM-direct live runs the same actions differently.
if "$FERRYCTL" migrate --help | grep -q -- '--mode'; then
  step "live RAM-direct (--mode ram-direct) host1 -> host2, a failure at each action of its tail"
  for a in "${live_actions[@]:${#head_actions[@]}}"; do
    rolled_back live "$a" host1 host2 --mode ram-direct
  done
fi

step "quick migration (RAM-direct) host1 -> host2, a failure at each action of its tail"
for a in "${quick_actions[@]}"; do
  rolled_back quick "$a" host1 host2
done

step "after the switchover: the migrations roll forward"
rolled_forward live CompleteDestination host1 host2
vm_state host1
[ -z "$st" ] || fail "live fail-at CompleteDestination: g1 should be gone from host1"
rolled_forward quick CompleteDestination host2 host1
vm_state host2
[ -z "$st" ] || fail "quick fail-at CompleteDestination: g1 should be gone from host2"
# CompleteSource did not run: the source's copy stays, paused after handing
# over its state (QEMU's postmigrate), for the operator to remove.
rolled_forward live CompleteSource host1 host2
vm_state host1
[ "$st" = paused ] || fail "live fail-at CompleteSource: the source copy on host1 is '$st', not paused"

step "the operator removes host1's paused copy (agent stopped, virsh on its root)"
qemu_runs host1 || fail "the paused copy's QEMU on host1 does not run"
kill "${pid_of[host1]}" && wait "${pid_of[host1]}" 2>/dev/null
LIBVIRT_LOG_OUTPUTS=4:stderr virsh -q -c "qemu:///embed?root=$tmp/host1" \
  "destroy g1; undefine g1" >"$tmp/virsh.out" 2>&1
LIBVIRT_LOG_OUTPUTS=4:stderr virsh -q -c "qemu:///embed?root=$tmp/host1" list --all --name \
  >>"$tmp/virsh.out" 2>&1
grep -qx g1 "$tmp/virsh.out" && { cat "$tmp/virsh.out"; fail "virsh could not remove g1 from host1"; }
lv_start host1
vm_state host1
[ -z "$st" ] || fail "g1 should be gone from host1"
qemu_runs host1 && fail "the paused copy's QEMU on host1 still runs"
rolled_forward quick CompleteSource host2 host1
vm_state host2
[ "$st" = paused ] || fail "quick fail-at CompleteSource: the source copy on host2 is '$st', not paused"

step "g1's persistent definition at host1 has no -incoming (after $injected migrations)"
# A VM that arrived by RAM-direct runs with its placeholder's "-incoming
# defer"; no host's persistent definition may keep it (the VM would wait
# for a migration at its next start).
kill "${pid_of[host1]}" && wait "${pid_of[host1]}" 2>/dev/null
LIBVIRT_LOG_OUTPUTS=4:stderr virsh -q -c "qemu:///embed?root=$tmp/host1" dumpxml --inactive g1 \
  >"$tmp/g1.inactive.xml" 2>"$tmp/virsh.err" || { cat "$tmp/virsh.err"; fail "virsh dumpxml g1"; }
grep -q '<name>g1</name>' "$tmp/g1.inactive.xml" || fail "virsh dumpxml gave no definition of g1"
grep -q -- '-incoming' "$tmp/g1.inactive.xml" &&
  { grep -A4 commandline "$tmp/g1.inactive.xml"; fail "g1's persistent definition keeps -incoming"; }
echo "no -incoming in g1's persistent definition"

step "g1 ran through $injected failed migrations"
check_guest "$serial"
echo "one boot ($(boot_ids "$serial")), tick $(last_tick "$serial"), no pattern error"
echo
echo "libvirt failures: all steps passed"
