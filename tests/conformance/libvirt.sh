#!/usr/bin/env bash
# Runs ferry-conformance against the libvirt driver on a fresh embedded
# libvirt host (qemu:///embed?root=DIR) holding one test guest, defined off
# (tests/guest; the lifecycle and memory tests start copies of it).
#
# Usage: libvirt.sh CONFORMANCE DRIVERS_DIR SRCDIR GUESTDIR
set -uo pipefail
CONFORMANCE=$1 DRIVERS=$2 SRCDIR=$3 GUESTDIR=$4

command -v qemu-system-x86_64 >/dev/null || { echo "SKIP: no qemu-system-x86_64"; exit 77; }
command -v virsh >/dev/null || { echo "SKIP: no virsh (libvirt-clients)"; exit 77; }
if [ "$(id -u)" -eq 0 ] && ! getent passwd libvirt-qemu >/dev/null; then
  echo "SKIP: user libvirt-qemu missing (scripts/setup-deps creates it)"; exit 77
fi
tmp=$(mktemp -d /tmp/fy-cf.XXXXXX)
root=$tmp/host1
cleanup() {
  # ROOT/run/qemu/VM.pid (no newline); driver.pid is the embedding process.
  for f in "$root"/run/qemu/*.pid; do
    [ -f "$f" ] && [ "${f##*/}" != driver.pid ] && kill -9 "$(cat "$f")" 2>/dev/null
  done
  rm -rf "$tmp"
}
trap cleanup EXIT

"$SRCDIR/scripts/build-guest" "$GUESTDIR" >"$tmp/build-guest.log" 2>&1 ||
  { cat "$tmp/build-guest.log"; exit 1; }
# What the driver writes into a new embedded root (drivers/libvirt/libvirt.c),
# needed here because virsh opens the root first.
mkdir -p "$root/etc"
{
  [ "$(id -u)" -eq 0 ] && printf 'user = "root"\ngroup = "root"\n'
  printf 'stdio_handler = "file"\nremember_owner = 0\ndynamic_ownership = 0\n'
  printf 'security_driver = "none"\n'
} >"$root/etc/qemu.conf"
. "$SRCDIR/tests/integration/libvirt_lib.sh"
lv_guest_xml cf1 128 "$tmp/cf1.serial" "ferry.mem=8 ferry.dirty=100 ferry.pattern=4" >"$tmp/cf1.xml"
LIBVIRT_LOG_OUTPUTS=4:stderr virsh -q -c "qemu:///embed?root=$root" define "$tmp/cf1.xml" ||
  { echo "cannot define the test guest in $root"; exit 1; }
"$CONFORMANCE" "$DRIVERS" libvirt "uri=qemu:///embed?root=$root" cf1
