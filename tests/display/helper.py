#!/usr/bin/env python3
"""Small clients for the display tests (standard library only).

  helper.py freeport                         print a free TCP port on 127.0.0.1
  helper.py screendump QMP_SOCKET OUT.ppm    QEMU's own picture of the screen
  helper.py qmp QMP_SOCKET COMMAND           run a QMP command without arguments (cont)
  helper.py typer QMP_SOCKET RATE SECONDS   type on the guest's keyboard at RATE keys/s
                                             (a steady screen change for benches)
  helper.py ws HOST PORT PATH                WebSocket upgrade like noVNC; exit 0 and
                                             print the RFB greeting if admitted,
                                             exit 3 if refused with an HTTP status
  helper.py ws-hold HOST PORT PATH           the same, then stay connected until the
                                             server closes (exit 0) or 60 s pass (exit 4)
"""
import base64
import json
import os
import socket
import sys


def freeport():
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    print(s.getsockname()[1])
    s.close()


def qmp(path, commands):
    s = socket.socket(socket.AF_UNIX)
    s.settimeout(20)
    s.connect(path)
    f = s.makefile("rwb")

    def reply():
        while True:
            msg = json.loads(f.readline())
            if "return" in msg or "error" in msg:
                return msg

    json.loads(f.readline())  # greeting
    f.write(b'{"execute":"qmp_capabilities"}\n')
    f.flush()
    reply()
    out = []
    for c in commands:
        f.write(json.dumps(c).encode() + b"\n")
        f.flush()
        out.append(reply())
    s.close()
    return out


def screendump(path, out):
    r = qmp(path, [{"execute": "screendump", "arguments": {"filename": os.path.abspath(out)}}])
    if "error" in r[0]:
        sys.exit("screendump failed: %s" % r[0])


def ws(host, port, path, hold=False):
    s = socket.create_connection((host, int(port)), timeout=10)
    key = base64.b64encode(os.urandom(16)).decode()
    s.sendall(("GET %s HTTP/1.1\r\nHost: %s:%s\r\nUpgrade: websocket\r\n"
               "Connection: Upgrade\r\nOrigin: http://%s\r\nSec-WebSocket-Key: %s\r\n"
               "Sec-WebSocket-Version: 13\r\nSec-WebSocket-Protocol: binary\r\n\r\n"
               % (path, host, port, host, key)).encode())
    head = b""
    while b"\r\n\r\n" not in head:
        chunk = s.recv(4096)
        if not chunk:
            break
        head += chunk
    status = head.split(b"\r\n", 1)[0].decode(errors="replace")
    if " 101 " not in status + " ":
        print(status)
        sys.exit(3)
    rest = head.split(b"\r\n\r\n", 1)[1]
    while len(rest) < 2 + 12:
        chunk = s.recv(4096)
        if not chunk:
            break
        rest += chunk
    # server frames are unmasked; the greeting fits a 7-bit length
    n = rest[1] & 0x7F
    print(rest[2:2 + n].decode(errors="replace").strip(), flush=True)
    if hold:
        s.settimeout(60)
        try:
            while s.recv(4096):
                pass
        except socket.timeout:
            sys.exit(4)
        except ConnectionResetError:
            pass
    s.close()


def typer(path, rate, seconds):
    import time
    s = socket.socket(socket.AF_UNIX)
    s.connect(path)
    f = s.makefile("rwb")
    json.loads(f.readline())
    f.write(b'{"execute":"qmp_capabilities"}\n')
    f.flush()
    f.readline()
    keys = "abcdefghijklmnopqrstuvwxyz"
    period = 1.0 / float(rate)
    t = time.monotonic()
    end = t + float(seconds)
    n = 0
    while t < end:
        # a line of 60 characters, then Return: the screen scrolls now and then
        key = "ret" if n % 61 == 60 else keys[n % 26]
        f.write(json.dumps({"execute": "send-key",
                            "arguments": {"keys": [{"type": "qcode", "data": key}]}}).encode()
                + b"\n")
        f.flush()
        while True:
            msg = json.loads(f.readline())
            if "return" in msg or "error" in msg:
                break
        n += 1
        t += period
        delay = t - time.monotonic()
        if delay > 0:
            time.sleep(delay)  # pacing a load generator, not waiting for state
    s.close()


if __name__ == "__main__":
    cmd = sys.argv[1] if len(sys.argv) > 1 else ""
    if cmd == "freeport":
        freeport()
    elif cmd == "screendump" and len(sys.argv) == 4:
        screendump(sys.argv[2], sys.argv[3])
    elif cmd == "qmp" and len(sys.argv) == 4:
        r = qmp(sys.argv[2], [{"execute": sys.argv[3]}])
        if "error" in r[0]:
            sys.exit("%s failed: %s" % (sys.argv[3], r[0]))
    elif cmd == "typer" and len(sys.argv) == 5:
        typer(*sys.argv[2:5])
    elif cmd == "ws" and len(sys.argv) == 5:
        ws(*sys.argv[2:5])
    elif cmd == "ws-hold" and len(sys.argv) == 5:
        ws(*sys.argv[2:5], hold=True)
    else:
        sys.exit(__doc__)
