# Shared by the libvirt integration tests (sourced): two ferryd agents on
# loopback, each an independent libvirt host (qemu:///embed?root=DIR, no
# daemon), the test guest (scripts/build-guest), domain XML for it, and
# checks on its serial console.
#
# The sourcing script sets FERRYD FERRYCTL DRIVERS SRCDIR GUESTDIR and
# calls lv_setup NAME; everything lives in $tmp and is removed on exit,
# guests included.

step() { echo; echo "== [${SECONDS}s] $*"; }

fail() {
  echo "FAIL: $*"
  for f in "$tmp"/host*.err "$tmp"/*.serial; do
    [ -f "$f" ] && { echo "--- $f (last lines)"; grep -av '^\[' "$f" | tail -n 25; }
  done
  for f in "$tmp"/host*/log/qemu/*.log; do
    [ -f "$f" ] && { echo "--- $f"; tail -n 15 "$f"; }
  done
  exit 1
}

# The QEMU processes of the hosts' roots (ROOT/run/qemu/VM.pid, written
# without a newline; driver.pid is the agent's own).
lv_qemu_pids() {
  local f
  for f in "$tmp"/*/run/qemu/*.pid; do
    [ -f "$f" ] && [ "${f##*/}" != driver.pid ] && { cat "$f"; echo; }
  done
}

lv_cleanup() {
  for p in "${pids[@]}"; do
    kill "$p" 2>/dev/null
  done
  for p in "${pids[@]}"; do
    wait "$p" 2>/dev/null
  done
  # Guests outlive their agent (as on a real host): stop them here.
  for q in $(lv_qemu_pids); do
    kill "$q" 2>/dev/null
  done
  sleep 0.2
  for q in $(lv_qemu_pids); do
    kill -9 "$q" 2>/dev/null
  done
  rm -rf "$tmp"
}

# lv_setup NAME: checks what the test needs (exit 77 if the machine cannot
# run it), builds the guest, makes $tmp, two free ports and the key.
lv_setup() {
  command -v qemu-system-x86_64 >/dev/null ||
    { echo "SKIP: qemu-system-x86_64 not installed (scripts/setup-deps)"; exit 77; }
  [ -e "$DRIVERS/ferry-libvirt.so" ] ||
    { echo "SKIP: the libvirt driver is not built (libvirt-dev missing?)"; exit 77; }
  ls /usr/lib/*/libvirt/connection-driver/libvirt_driver_qemu.so >/dev/null 2>&1 ||
    { echo "SKIP: libvirt's QEMU driver is not installed (libvirt-daemon-driver-qemu)"; exit 77; }
  if [ "$(id -u)" -eq 0 ] && ! getent passwd libvirt-qemu >/dev/null; then
    echo "SKIP: user libvirt-qemu missing (scripts/setup-deps creates it)"; exit 77
  fi
  # Short: QEMU's monitor sockets live under the roots (108-byte limit).
  tmp=$(mktemp -d "/tmp/fy-$1.XXXXXX")
  pids=()
  trap lv_cleanup EXIT
  "$SRCDIR/scripts/build-guest" "$GUESTDIR" >"$tmp/build-guest.log" 2>&1 ||
    { cat "$tmp/build-guest.log"; fail "scripts/build-guest failed"; }
  read -r P1 P2 < <(/usr/bin/python3 - <<'PY'
import socket
ss = [socket.socket() for _ in range(2)]
for s in ss:
    s.bind(("127.0.0.1", 0))
print(*[s.getsockname()[1] for s in ss])
PY
)
  head -c 32 /dev/urandom | od -An -tx1 | tr -d ' \n' >"$tmp/key"
  chmod 600 "$tmp/key"
  lv_config host1 "$P1" host2 "$P2"
  lv_config host2 "$P2" host1 "$P1"
}

# lv_config NAME PORT PEER PEER_PORT
lv_config() {
  mkdir -p "$tmp/$1/images"
  cat >"$tmp/$1.conf" <<EOF
host          = $1
driver        = libvirt
driver-config = uri=qemu:///embed?root=$tmp/$1;datastores=images:$tmp/$1/images;shutdown-timeout=30
drivers-dir   = $DRIVERS
key           = $tmp/key
store         = $tmp/$1.db
management    = 127.0.0.1:$2
migration     = 127.0.0.1
provisioning  = 127.0.0.1
peers         = $3=127.0.0.1:$4
EOF
}

declare -A pid_of
# lv_start NAME: runs its ferryd in the background until it serves.
lv_start() {
  : >"$tmp/$1.out"
  "$FERRYD" --config "$tmp/$1.conf" --foreground >"$tmp/$1.out" 2>>"$tmp/$1.err" &
  pid_of[$1]=$!
  pids+=($!)
  for _ in $(seq 1 150); do
    grep -q "serving on" "$tmp/$1.out" && { cat "$tmp/$1.out"; return 0; }
    kill -0 "${pid_of[$1]}" 2>/dev/null || fail "ferryd $1 exited before serving"
    sleep 0.1
  done
  fail "ferryd $1 did not serve within 15 s"
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

# lv_guest_xml NAME MEM_MIB SERIAL_FILE CMDLINE_EXTRA [DISK_IMAGE]: the test
# guest's domain XML on stdout: RAM in a shared memfd (RAM-direct reads
# it), the serial console appended to SERIAL_FILE (the same file on both
# hosts here, so one file shows the counter going on), no video, no USB;
# nokaslr, so guests share their kernel's pages (dedup across VMs); pti=on,
# so the guest switches page tables (and TCG flushes its TLB) at every
# kernel entry: QEMU < 9.0 under TCG otherwise loses dirty pages during a
# live migration of its own (docs/libvirt.md, "Stream mode").
lv_guest_xml() {
  local name=$1 mem=$2 serial=$3 extra=$4 disk=${5:-}
  cat <<EOF
<domain type='qemu'>
  <name>$name</name>
  <memory unit='MiB'>$mem</memory>
  <vcpu>1</vcpu>
  <memoryBacking><source type='memfd'/><access mode='shared'/></memoryBacking>
  <os>
    <type arch='x86_64' machine='pc'>hvm</type>
    <kernel>$GUESTDIR/vmlinuz</kernel>
    <initrd>$GUESTDIR/initrd.img</initrd>
    <cmdline>console=ttyS0 quiet panic=-1 nokaslr pti=on $extra</cmdline>
  </os>
  <features><acpi/></features>
  <on_poweroff>destroy</on_poweroff>
  <on_reboot>destroy</on_reboot>
  <on_crash>destroy</on_crash>
  <devices>
    <emulator>/usr/bin/qemu-system-x86_64</emulator>
EOF
  [ -n "$disk" ] && cat <<EOF
    <disk type='file' device='disk'>
      <driver name='qemu' type='qcow2'/>
      <source file='$disk'/>
      <target dev='vda' bus='virtio'/>
    </disk>
EOF
  cat <<EOF
    <controller type='usb' model='none'/>
    <serial type='file'><source path='$serial' append='on'/><target port='0'/></serial>
    <console type='file'><source path='$serial' append='on'/><target type='serial' port='0'/></console>
    <video><model type='none'/></video>
    <memballoon model='none'/>
  </devices>
</domain>
EOF
}

# The guest's counter lines ("ferry-guest: boot=ID tick N ...") in FILE.
last_tick() { grep -ao 'tick [0-9]*' "$1" | tail -n 1 | awk '{print $2}'; }
boot_ids() { grep -ao 'boot=[0-9a-f]*' "$1" | sort -u; }

# wait_tick FILE N SECONDS: until the counter reaches N.
wait_tick() {
  local t
  for _ in $(seq 1 $(($3 * 10))); do
    t=$(last_tick "$1")
    [ -n "$t" ] && [ "$t" -ge "$2" ] && return 0
    sleep 0.1
  done
  fail "the guest's counter in $1 did not reach $2 within $3 s (last: ${t:-none})"
}

# check_guest FILE: one boot, counting, no pattern error.
check_guest() {
  grep -aq 'PATTERN ERROR' "$1" && fail "the guest reported a PATTERN ERROR"
  [ "$(grep -ac 'ferry-guest: start' "$1")" -eq 1 ] ||
    fail "the guest started more than once (its workload restarted)"
  [ "$(boot_ids "$1" | wc -l)" -eq 1 ] || fail "more than one boot id in $1"
}

# A figure of 'ferryctl summary' / migrate output: field NAME.
field() { grep -a "$1" <<<"$out" | head -n 1; }
