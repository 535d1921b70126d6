#!/usr/bin/python3
"""Ordinary TCP traffic for the XDP tests: proves the kernel still gets
the frames Ferry's XDP program does not take.

  xdp_tcp_check.py serve ADDR PORT OUTFILE   accept one connection, read to
                                             EOF, write "BYTES SHA256" to
                                             OUTFILE (atomically)
  xdp_tcp_check.py send ADDR PORT BYTES [SECONDS]
                                             send BYTES seeded pseudo-random
                                             bytes, spread over SECONDS (so
                                             the transfer overlaps whatever
                                             runs meanwhile), print "BYTES
                                             SHA256"
"""
import hashlib
import os
import random
import socket
import sys
import time


def serve(addr, port, out):
    s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    s.bind((addr, port))
    s.listen(1)
    s.settimeout(300)
    c, _ = s.accept()
    c.settimeout(300)
    h, n = hashlib.sha256(), 0
    while True:
        b = c.recv(1 << 20)
        if not b:
            break
        h.update(b)
        n += len(b)
    c.close()
    with open(out + ".tmp", "w") as f:
        f.write("%d %s\n" % (n, h.hexdigest()))
    os.rename(out + ".tmp", out)


def send(addr, port, nbytes, seconds):
    rng = random.Random(42)
    h, sent = hashlib.sha256(), 0
    deadline = time.time() + 30
    while True:  # the server may still be starting
        try:
            c = socket.create_connection((addr, port), timeout=60)
            break
        except OSError:
            if time.time() > deadline:
                raise
            time.sleep(0.1)
    t0 = time.time()
    while sent < nbytes:
        b = rng.randbytes(min(1 << 16, nbytes - sent))
        c.sendall(b)
        h.update(b)
        sent += len(b)
        ahead = t0 + seconds * sent / nbytes - time.time()
        if ahead > 0:
            time.sleep(ahead)
    c.shutdown(socket.SHUT_WR)
    c.recv(1)
    c.close()
    print("%d %s" % (sent, h.hexdigest()))


if __name__ == "__main__":
    if sys.argv[1] == "serve":
        serve(sys.argv[2], int(sys.argv[3]), sys.argv[4])
    else:
        send(sys.argv[2], int(sys.argv[3]), int(sys.argv[4]),
             float(sys.argv[5]) if len(sys.argv) > 5 else 0.0)
