#!/usr/bin/python3
"""A minimal QMP client for the tests: one command per call.

    qmp.py SOCKET COMMAND [JSON-ARGUMENTS]

Connects to QEMU's QMP UNIX socket (retrying for up to 10 s while QEMU
starts), negotiates capabilities, runs COMMAND and prints its "return" value
as JSON.  Exits 1 with QEMU's error on stderr if the command fails."""
import json
import socket
import sys
import time


def main():
    if len(sys.argv) not in (3, 4):
        sys.stderr.write(__doc__)
        return 2
    path, name = sys.argv[1], sys.argv[2]
    args = json.loads(sys.argv[3]) if len(sys.argv) == 4 else {}
    deadline = time.monotonic() + 10
    while True:
        try:
            s = socket.socket(socket.AF_UNIX)
            s.connect(path)
            break
        except OSError as e:
            s.close()
            if time.monotonic() > deadline:
                sys.stderr.write(f"qmp.py: cannot connect to {path}: {e}\n")
                return 1
            time.sleep(0.05)
    f = s.makefile("rw")
    json.loads(f.readline())  # greeting

    def run(cmd, arguments=None):
        msg = {"execute": cmd}
        if arguments:
            msg["arguments"] = arguments
        f.write(json.dumps(msg) + "\n")
        f.flush()
        while True:
            line = f.readline()
            if not line:
                raise RuntimeError("QEMU closed the QMP connection")
            r = json.loads(line)
            if "return" in r:
                return r["return"]
            if "error" in r:
                raise RuntimeError(r["error"].get("desc", str(r["error"])))

    try:
        run("qmp_capabilities")
        print(json.dumps(run(name, args)))
    except RuntimeError as e:
        sys.stderr.write(f"qmp.py: {name}: {e}\n")
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
