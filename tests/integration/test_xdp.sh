#!/usr/bin/env bash
# AF_XDP transport tests, between network namespaces joined by veth pairs.
#
#   test_xdp.sh frames  XDP_FRAMES TCP_CHECK
#       frame level: the XDP program hands only Ferry's UDP port to the
#       AF_XDP socket and the kernel keeps everything else (a TCP transfer
#       and a UDP datagram to other ports on the same interface arrive
#       intact); a frame sent twice from one buffer (as a retransmission)
#       arrives twice; native and skb XDP both work
#   test_xdp.sh cleanup XDP_FRAMES FERRY_PERF
#       the program is gone after a normal exit; after kill -9 it is gone
#       at once with a BPF link, and with a netlink attachment the next
#       start detaches the stale program and says so (the backend alone,
#       then ferry-perf recv using the whole transport)
#   test_xdp.sh migrate FERRY_PERF TCP_CHECK
#       a 1 GiB region migrates over xdp with a dirtying writer and
#       verifies, while a TCP transfer to another port of the target's
#       interface carries data correctly
#   test_xdp.sh lossy FERRY_PERF LOSSY_LINK
#       the same migration through a wire that drops 1%, duplicates 1% and
#       reorders 1% of the frames completes and verifies
#
# Needs root.  Every namespace and interface is made here, named after
# this shell's pid, and removed on exit.
set -uo pipefail

mode=$1
shift

if [ "$(id -u)" -ne 0 ]; then
  echo "SKIP: the XDP tests need root (namespaces, XDP, AF_XDP)"
  exit 77
fi
command -v ip >/dev/null || { echo "SKIP: ip (iproute2) is not installed"; exit 77; }

tag="fyx$$"
nsA="${tag}a" nsB="${tag}b" nsW="${tag}w"
devA="${tag}A" devB="${tag}B"
ipA=10.78.0.1 ipB=10.78.0.2
port=47001
tmp=$(mktemp -d)
pids=()

cleanup() {
  for p in "${pids[@]}"; do kill -9 "$p" 2>/dev/null; done
  wait 2>/dev/null
  for n in "$nsA" "$nsB" "$nsW"; do ip netns del "$n" 2>/dev/null; done
  rm -rf "$tmp"
}
trap cleanup EXIT

fail() {
  echo "FAIL: $*"
  exit 1
}

# Two namespaces, a veth pair between them (direct), or each joined to a
# wire namespace whose two interfaces lossy_link forwards between (wire).
net_setup() {
  ip netns add "$nsA" && ip netns add "$nsB" || fail "cannot add namespaces"
  if [ "$1" = direct ]; then
    ip link add "$devA" netns "$nsA" type veth peer name "$devB" netns "$nsB" ||
      fail "cannot add a veth pair"
  else
    ip netns add "$nsW" || fail "cannot add the wire namespace"
    # Nothing but forwarded frames on the wire: no IPv6 chatter.
    ip netns exec "$nsW" sysctl -qw net.ipv6.conf.all.disable_ipv6=1 \
      net.ipv6.conf.default.disable_ipv6=1
    ip link add "$devA" netns "$nsA" type veth peer name wa netns "$nsW" &&
      ip link add "$devB" netns "$nsB" type veth peer name wb netns "$nsW" &&
      ip -n "$nsW" link add ha type veth peer name hap &&
      ip -n "$nsW" link add hb type veth peer name hbp ||
      fail "cannot add the wire's veth pairs"
    for d in wa wb ha hap hb hbp; do ip -n "$nsW" link set "$d" up; done
  fi
  ip -n "$nsA" addr add "$ipA/24" dev "$devA" &&
    ip -n "$nsB" addr add "$ipB/24" dev "$devB" || fail "cannot set addresses"
  for x in "$nsA $devA" "$nsB $devB"; do
    set -- $x
    ip -n "$1" link set "$2" up && ip -n "$1" link set lo up || fail "cannot bring up $2"
  done
}

# xdp_on NS DEV: the XDP program attached to DEV, by name ("" if none).
xdp_on() {
  ip -n "$1" -d link show "$2" | sed -n 's/.*prog\/xdp.* name \([^ ]*\).*/\1/p'
}

# wait_for FILE PATTERN SECONDS
wait_for() {
  local i
  for ((i = 0; i < $3 * 10; i++)); do
    grep -q "$2" "$1" 2>/dev/null && return 0
    sleep 0.1
  done
  return 1
}

mac_of() {
  ip netns exec "$1" cat "/sys/class/net/$2/address"
}

case "$mode" in
frames)
  frames=$1 tcpcheck=$2
  net_setup direct
  macB=$(mac_of "$nsB" "$devB")
  count=100000

  for xmode in native skb; do
    echo "== frames, xdp_mode=$xmode"
    ip netns exec "$nsB" "$frames" recv "dev=$devB;xdp_mode=$xmode" $port $count 60 \
      >"$tmp/recv.out" 2>&1 &
    rpid=$!
    pids+=("$rpid")
    wait_for "$tmp/recv.out" '^ready' 10 || { cat "$tmp/recv.out"; fail "receiver did not start"; }
    cat "$tmp/recv.out"
    [ "$(xdp_on "$nsB" "$devB")" = fy_xdp_redirect ] || fail "no fy_xdp_redirect on $devB"
    grep -q "$xmode XDP" "$tmp/recv.out" || fail "receiver is not in $xmode XDP mode"

    # Kernel traffic to other ports of the same interface, meanwhile.
    ip netns exec "$nsB" /usr/bin/python3 "$tcpcheck" serve $ipB 5201 "$tmp/tcp.got" &
    pids+=($!)
    ip netns exec "$nsB" /usr/bin/python3 -c '
import os, socket, sys
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
s.bind((sys.argv[1], 5202)); s.settimeout(30)
data = s.recv(2048)
open(sys.argv[2] + ".tmp", "wb").write(data)
os.rename(sys.argv[2] + ".tmp", sys.argv[2])' $ipB "$tmp/udp.got" &
    pids+=($!)
    sleep 0.3
    ip netns exec "$nsA" /usr/bin/python3 "$tcpcheck" send $ipB 5201 $((16 << 20)) \
      >"$tmp/tcp.sent" &
    tpid=$!
    # Until the receiver, which may still be starting, has it.
    ip netns exec "$nsA" /usr/bin/python3 -c '
import os, socket, sys, time
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
for _ in range(100):
    s.sendto(b"not for ferry", (sys.argv[1], 5202))
    time.sleep(0.1)
    if os.path.exists(sys.argv[2]):
        break' $ipB "$tmp/udp.got"

    # Each frame twice from one buffer, the second before the first is done.
    ip netns exec "$nsA" "$frames" send "dev=$devA;xdp_mode=$xmode" "$macB" $ipB $port $count 1 ||
      fail "sender failed"
    wait "$rpid" || { cat "$tmp/recv.out"; fail "not every frame arrived intact"; }
    cat "$tmp/recv.out"
    grep -q " 0 bad" "$tmp/recv.out" || fail "bad frames"
    grep -Eq "duplicates, " "$tmp/recv.out" && ! grep -q " 0 duplicates" "$tmp/recv.out" ||
      fail "frames sent twice did not arrive twice"
    passed=$(sed -n 's/.*passed \([0-9]*\).*/\1/p' "$tmp/recv.out")
    [ "${passed:-0}" -gt 0 ] || fail "the XDP program passed nothing to the kernel"

    wait "$tpid" || fail "TCP sender failed"
    wait_for "$tmp/tcp.got" . 30 || fail "TCP receiver got nothing"
    [ "$(cat "$tmp/tcp.got")" = "$(cat "$tmp/tcp.sent")" ] ||
      fail "TCP data differs: sent $(cat "$tmp/tcp.sent"), got $(cat "$tmp/tcp.got")"
    echo "TCP to port 5201 beside AF_XDP: $(cat "$tmp/tcp.got") (intact)"
    wait_for "$tmp/udp.got" . 10 && [ "$(cat "$tmp/udp.got")" = "not for ferry" ] ||
      fail "UDP to another port did not reach the kernel's socket"
    echo "UDP to port 5202 beside AF_XDP: delivered to the kernel"
    rm -f "$tmp/tcp.got" "$tmp/tcp.sent" "$tmp/udp.got"
    [ -z "$(xdp_on "$nsB" "$devB")" ] || fail "XDP program left on $devB after exit"
    [ -z "$(xdp_on "$nsA" "$devA")" ] || fail "XDP program left on $devA after exit"
  done
  echo "PASS"
  ;;

cleanup)
  frames=$1 perf=$2
  net_setup direct
  echo "== exit detaches"
  ip netns exec "$nsB" "$frames" recv "dev=$devB" $port 1 1 >/dev/null 2>&1
  [ -z "$(xdp_on "$nsB" "$devB")" ] || fail "program left after a normal exit"

  for attach in link netlink; do
    echo "== kill -9 with xdp_attach=$attach"
    ip netns exec "$nsB" "$frames" hold "dev=$devB;xdp_attach=$attach" $port \
      >"$tmp/hold.out" 2>&1 &
    hpid=$!
    pids+=("$hpid")
    wait_for "$tmp/hold.out" '^ready' 10 || { cat "$tmp/hold.out"; fail "holder did not start"; }
    [ "$(xdp_on "$nsB" "$devB")" = fy_xdp_redirect ] || fail "no program while running"
    # A second user of the interface is refused while the first lives.
    if ip netns exec "$nsB" "$frames" hold "dev=$devB" $port >"$tmp/second.out" 2>&1; then
      fail "a second process took a busy interface"
    fi
    grep -q "in use by another Ferry process (pid $hpid)" "$tmp/second.out" ||
      { cat "$tmp/second.out"; fail "the second process was not told who holds it"; }
    kill -9 "$hpid"
    wait "$hpid" 2>/dev/null
    left=$(xdp_on "$nsB" "$devB")
    if [ "$attach" = link ]; then
      [ -z "$left" ] || fail "a BPF link outlived its process"
      echo "gone with the process"
      continue
    fi
    [ "$left" = fy_xdp_redirect ] || fail "expected the netlink-attached program to stay"
    echo "left behind: $(ip -n "$nsB" link show "$devB" | grep prog/xdp)"
    # The next start cleans up, says so once, and works.
    ip netns exec "$nsB" "$frames" recv "dev=$devB" $port 1 1 >"$tmp/next.out" 2>&1
    cat "$tmp/next.out"
    [ "$(grep -c 'detached a stale Ferry XDP program' "$tmp/next.out")" = 1 ] ||
      fail "the next start did not report detaching the stale program"
    grep -q "left by process $hpid" "$tmp/next.out" || fail "the report does not name the dead process"
    grep -q '^ready' "$tmp/next.out" || fail "the next start did not open the port"
  done

  # The same with the whole transport: a target killed while it listens,
  # then a new target.
  echo "== ferry-perf recv killed with -9 (xdp_attach=netlink), then started again"
  ip netns exec "$nsB" "$perf" recv --transport xdp --params "dev=$devB;xdp_attach=netlink" \
    --listen $ipB:$port --size 64M --ready-file "$tmp/ready1" >"$tmp/perf1.out" 2>&1 &
  ppid=$!
  pids+=("$ppid")
  wait_for "$tmp/ready1" . 20 || { cat "$tmp/perf1.out"; fail "ferry-perf recv did not start"; }
  kill -9 "$ppid"
  wait "$ppid" 2>/dev/null
  dead=$ppid
  [ "$(xdp_on "$nsB" "$devB")" = fy_xdp_redirect ] || fail "expected the program to stay after kill -9"
  ip netns exec "$nsB" "$perf" recv --transport xdp --params "dev=$devB" \
    --listen $ipB:$port --size 64M --ready-file "$tmp/ready2" >"$tmp/perf2.out" 2>&1 &
  ppid=$!
  pids+=("$ppid")
  wait_for "$tmp/ready2" . 20 || { cat "$tmp/perf2.out"; fail "the next ferry-perf recv did not start"; }
  cat "$tmp/perf2.out"
  [ "$(grep -c "detached a stale Ferry XDP program .*left by process $dead" "$tmp/perf2.out")" = 1 ] ||
    fail "the next start did not report detaching the stale program once"
  kill "$ppid"
  wait "$ppid" 2>/dev/null
  ip -n "$nsB" link show "$devB"
  [ -z "$(xdp_on "$nsB" "$devB")" ] || fail "program left on $devB at the end"
  echo "PASS"
  ;;

migrate | lossy)
  perf=$1
  size=1G
  # Dirtying writer: 2000 pages/s (8 MB/s); rounds converge in seconds.
  rate=2000
  if [ "$mode" = migrate ]; then
    tcpcheck=$2
    net_setup direct
  else
    lossy=$2
    net_setup wire
    ip netns exec "$nsW" "$lossy" wa wb drop=0.01,dup=0.01,reorder=0.01,delay_us=1000 \
      ha hap hb hbp >"$tmp/wire.out" 2>&1 &
    wpid=$!
    pids+=("$wpid")
    wait_for "$tmp/wire.out" '^ready' 10 || { cat "$tmp/wire.out"; fail "lossy wire did not start"; }
  fi

  ip netns exec "$nsB" "$perf" recv --transport xdp --params "dev=$devB" \
    --listen $ipB:$port --size $size --timeout-ms 60000 \
    --ready-file "$tmp/ready" >"$tmp/recv.out" 2>&1 &
  rpid=$!
  pids+=("$rpid")
  wait_for "$tmp/ready" . 20 || { cat "$tmp/recv.out"; fail "receiver did not start"; }
  [ "$(xdp_on "$nsB" "$devB")" = fy_xdp_redirect ] || fail "no fy_xdp_redirect on $devB"

  if [ "$mode" = migrate ]; then
    # Ordinary TCP to another port of the target's interface, during the
    # migration.
    ip netns exec "$nsB" /usr/bin/python3 "$tcpcheck" serve $ipB 5201 "$tmp/tcp.got" &
    pids+=($!)
    # 64 MiB spread over 6 s: the source fills its region for about a
    # second, then the migration runs for a few.
    ip netns exec "$nsA" /usr/bin/python3 "$tcpcheck" send $ipB 5201 $((64 << 20)) 6 \
      >"$tmp/tcp.sent" &
    tpid=$!
  fi

  start=$(date +%s)
  ip netns exec "$nsA" "$perf" send --transport xdp --params "dev=$devA" \
    --to $ipB:$port --size $size --dirty-rate $rate --timeout-ms 60000 \
    >"$tmp/send.out" 2>&1
  src_rc=$?
  wait "$rpid"
  tgt_rc=$?
  echo "--- source (exit $src_rc, $(($(date +%s) - start)) s)"
  cat "$tmp/send.out"
  echo "--- target (exit $tgt_rc)"
  cat "$tmp/recv.out"
  [ $src_rc -eq 0 ] && [ $tgt_rc -eq 0 ] || fail "the migration failed"
  grep -q "digest .*; verified" "$tmp/send.out" || fail "the source does not report matching digests"
  grep -q "digest .*; verified" "$tmp/recv.out" || fail "the target does not report matching digests"
  dsrc=$(sed -n 's/.*digest \([0-9a-f]*\); verified.*/\1/p' "$tmp/send.out")
  [ -n "$dsrc" ] && [ "$dsrc" = "$(sed -n 's/.*digest \([0-9a-f]*\); verified.*/\1/p' "$tmp/recv.out")" ] ||
    fail "the two sides print different digests"
  # The writer dirtied pages during round 1, so a later round resent them.
  rounds=$(sed -n 's/^send: .*, \([0-9]*\) rounds,.*/\1/p' "$tmp/send.out")
  [ "${rounds:-0}" -ge 2 ] || fail "no round after the first: the writer dirtied nothing"

  if [ "$mode" = migrate ]; then
    wait "$tpid" || fail "TCP sender failed"
    wait_for "$tmp/tcp.got" . 60 || fail "TCP receiver got nothing"
    [ "$(cat "$tmp/tcp.got")" = "$(cat "$tmp/tcp.sent")" ] ||
      fail "TCP data differs: sent $(cat "$tmp/tcp.sent"), got $(cat "$tmp/tcp.got")"
    echo "TCP to port 5201 beside AF_XDP during the migration: $(cat "$tmp/tcp.got") (intact)"
  else
    kill -TERM "$wpid"
    wait "$wpid"
    cat "$tmp/wire.out"
    read -r fwd drop dup held <<<"$(sed -n \
      's/.*forwarded \([0-9]*\), dropped \([0-9]*\), duplicated \([0-9]*\), held back \([0-9]*\).*/\1 \2 \3 \4/p' \
      "$tmp/wire.out")"
    [ "${drop:-0}" -gt 0 ] && [ "${dup:-0}" -gt 0 ] && [ "${held:-0}" -gt 0 ] ||
      fail "the wire did not drop, duplicate and reorder"
  fi
  for x in "$nsA $devA" "$nsB $devB"; do
    set -- $x
    [ -z "$(xdp_on "$1" "$2")" ] || fail "XDP program left on $2 after exit"
  done
  echo "PASS"
  ;;

*)
  echo "unknown mode $mode"
  exit 2
  ;;
esac
