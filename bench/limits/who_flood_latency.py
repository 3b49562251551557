"""Chat latency while 4 addresses flood /who, with many users online.

usage: who_flood_latency.py SERVER_BINARY [IDLE_USERS] [SECONDS] [--no-flood] [SERVER_ARGS...]

The server runs with --limit-loopback (flood control and the per-address
limits apply to loopback) and --max-clients 20000. IDLE_USERS clients
(default 10,000) connect from 127.1.x.y, 16 per address (within
--max-per-ip and the connect burst), in batches of 500 waiting for each
welcome; they read everything they are sent (one epoll, a pass every
200 ms) and send nothing.

Then, in two child processes so that neither waits on the other:
- flooders: 16 connections from each of 127.0.0.2..127.0.0.5, each keeping
  3 `/who` outstanding (one more sent as each reply's header arrives),
  reading every reply flat out: as many /who as flood control lets through;
- pair: clients from 127.0.0.10 and 127.0.0.11 take turns sending a chat
  line every 100 ms (each one every 200 ms, i.e. at --flood-rate 5/s);
  latency is the time from the send to the other receiving the line.
Prints latency p50/p99/max over SECONDS (default 20), /who replies per
second, and how many clients were disconnected. --no-flood: the flooders
connect but send nothing (the baseline latency).
"""

import select
from collections import Counter
import subprocess
import sys
import time

from common import Crowd, Line, Server, raise_nofile


def idle_addr(i):
    a = i // 16
    return f"127.1.{a // 250}.{a % 250 + 1}"


def flooders(port, seconds, flood=True):
    socks = [Line(port, src=f"127.0.0.{2 + i // 16}") for i in range(64)]
    for c in socks:
        c.sock.sendall(b"/who\n" * 3 if flood else b"")
        c.sock.setblocking(False)
    ep = select.epoll()
    by_fd = {c.sock.fileno(): c for c in socks}
    for fd in by_fd:
        ep.register(fd, select.EPOLLIN)
    replies, received, closed = 0, 0, 0
    end = time.monotonic() + seconds
    while time.monotonic() < end and by_fd:
        for fd, _ in ep.poll(0.1):
            c = by_fd[fd]
            try:
                data = c.sock.recv(1 << 20)
            except BlockingIOError:
                continue
            except OSError:
                data = b""
            if not data:
                ep.unregister(fd)
                del by_fd[fd]
                closed += 1
                continue
            received += len(data)
            c.buf += data
            *lines, c.buf = c.buf.split(b"\n")
            for l in lines:
                if b" users online: " in l:
                    replies += 1
                    c.sock.sendall(b"/who\n" if flood else b"")
                elif l.startswith(b"* error"):
                    print("flooder got:", l.decode(), file=sys.stderr)
    print(f"{replies} {received} {closed}")


def pair(port, seconds):
    a, b = Line(port, src="127.0.0.10"), Line(port, src="127.0.0.11")
    for c in (a, b):
        assert c.readline().startswith("* welcome")
        c.sock.setblocking(False)
    sent, lat = {}, []
    start = time.monotonic()
    k = 0
    while True:
        now = time.monotonic()
        if now - start >= seconds:
            break
        if now >= start + k * 0.1:
            (a, b)[k % 2].sock.sendall(f"ping {k}\n".encode())
            sent[k] = time.monotonic()
            k += 1
        ready, _, _ = select.select([a.sock, b.sock], [], [],
                                    max(0.0, start + k * 0.1 - time.monotonic()))
        for s in ready:
            c = a if s is a.sock else b
            data = s.recv(1 << 20)
            if not data:
                print("pair client disconnected", file=sys.stderr)
                return
            t = time.monotonic()
            c.buf += data
            *lines, c.buf = c.buf.split(b"\n")
            for l in lines:
                if b": ping " in l:
                    lat.append(t - sent.pop(int(l.rsplit(b" ", 1)[1])))
    time.sleep(1)
    print(" ".join(f"{x:.6f}" for x in lat) + f" | {len(sent)}")


def main():
    if sys.argv[1] == "--flooders":
        return flooders(int(sys.argv[2]), float(sys.argv[3]), sys.argv[4] == "1")
    if sys.argv[1] == "--pair":
        return pair(int(sys.argv[2]), float(sys.argv[3]))
    raise_nofile()
    flood = "--no-flood" not in sys.argv
    sys.argv = [a for a in sys.argv if a != "--no-flood"]
    binary = sys.argv[1]
    idle = int(sys.argv[2]) if len(sys.argv) > 2 else 10_000
    seconds = float(sys.argv[3]) if len(sys.argv) > 3 else 20.0
    with Server(binary, "--limit-loopback", "--max-clients", "20000", *sys.argv[4:]) as srv:
        crowd = Crowd()
        t0 = time.monotonic()
        for start in range(0, idle, 500):
            count = min(500, idle - start)
            assert crowd.connect_batch(
                srv.port, count, srcs=[idle_addr(start + i) for i in range(count)],
                timeout=300, pause=0.05), f"batch at {start}: welcome missing"
        crowd.pump_until(lambda: False, 2.0, pause=0.05)
        setup = time.monotonic() - t0
        rss0 = srv.rss()
        me = [sys.executable, __file__]
        fl = subprocess.Popen(me + ["--flooders", str(srv.port), str(seconds + 4), str(int(flood))],
                              stdout=subprocess.PIPE, text=True)
        crowd.pump_until(lambda: False, 2.0, pause=0.2)
        pr = subprocess.Popen(me + ["--pair", str(srv.port), str(seconds)],
                              stdout=subprocess.PIPE, text=True)
        while pr.poll() is None or fl.poll() is None:
            crowd.pump_until(lambda: False, 0.5, pause=0.2)
        st = srv.status()
        replies, received, fl_closed = map(int, fl.stdout.read().split())
        lats, lost = pr.stdout.read().split("|")
        lat = sorted(float(x) * 1000 for x in lats.split())
        pct = lambda p: lat[min(len(lat) - 1, int(p * len(lat)))]
        reasons = [l.split("reason=", 1)[1] for l in srv.stderr_lines() if "reason=" in l]
        print(f"{binary.rsplit('/', 1)[-1]}: {idle} idle users (setup {setup:.0f} s) + 64 /who "
              f"flooders{'' if flood else ' (not flooding)'} + 2; chat latency over {seconds:.0f} s: {len(lat)} lines, "
              f"p50 {pct(0.5):.1f} ms, p99 {pct(0.99):.1f} ms, max {lat[-1]:.1f} ms, "
              f"never arrived {lost.strip()}; /who replies {replies} "
              f"({replies / (seconds + 4):.1f}/s, {received / 1024 / (seconds + 4):.0f} KiB/s); "
              f"flooders disconnected {fl_closed}, idle disconnected {crowd.closed}; "
              f"RSS {rss0 // 1024} KiB before, {st['VmRSS'] // 1024} KiB after; "
              f"leave reasons logged: {dict(Counter(reasons))}")
        crowd.close_all()


if __name__ == "__main__":
    main()
