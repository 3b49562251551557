"""Held short lines vs the stated output limit.

usage: held_lines.py SERVER_BINARY LINES [SERVER_ARGS...]

20 clients set SO_RCVBUF to 4096 before connecting and never call recv; one
sender sends lines `abcd` (5 bytes with LF), each batch followed by `/who`
(its reply arriving means every line before it has been queued for the 20
non-readers). Each line costs a non-reader, as the server counts it
(docs/protocol.md, "Max output queue"), 6 (`XXXX: `) + 5 + 64 = 75 bytes.

The kernel takes a lot of such a backlog first: the server's send buffer
autotunes up to tcp_wmem's max (4 MiB here), about 2.8 MB of these 11-byte
lines per socket, none of it in RSS or in the server's count. So the sender
first fills the kernel (batches of 10,000 lines until the server's Send-Q
stops growing), then sends what is needed for each non-reader to be
holding LINES lines in the server itself (sent - Send-Q - the client's
Recv-Q, from `ss`, in 11-byte lines). The stated bound on what the server
holds is then 20 * held lines * 75 bytes. Prints the RSS growth (VmRSS at the
end minus before any line, and VmHWM minus that) against it, what the kernel
held, and the users a fresh client's /who sees at the end (22 if no
non-reader was dropped).
"""

import sys
import time

from common import Line, Server, connect, kib, queues, who

READERS = 20
WIRE, COST = 11, 6 + 5 + 64     # bytes of `XXXX: abcd\n`, and as counted


def send_lines(sender, n):
    sender.sock.sendall(b"abcd\n" * n + b"/who\n")
    assert sender.read_who(timeout=60)[0] is not None


def main():
    binary, target = sys.argv[1], int(sys.argv[2])
    with Server(binary, *sys.argv[3:]) as srv:
        silent = [connect(srv.port, rcvbuf=4096) for _ in range(READERS)]
        ports = [s.getsockname()[1] for s in silent]
        sender = Line(srv.port)
        assert sender.readline().startswith("* welcome")
        time.sleep(0.5)

        def kernel():   # bytes in kernel buffers, per non-reader
            q = queues(srv.port)
            return [sum(q.get(p, (0, 0))) for p in ports]

        base = kernel()
        before = srv.rss()
        t0 = time.monotonic()
        sent, last = 0, 0
        while True:     # fill the kernel buffers
            send_lines(sender, 10000)
            sent += 10000
            now = min(kernel()) - min(base)
            if now - last < 10000 * WIRE // 2:
                break
            last = now
        filled = srv.rss()
        held = min((sent * WIRE + b - k) // WIRE for b, k in zip(base, kernel()))
        send_lines(sender, target - held)
        sent += target - held
        took = time.monotonic() - t0
        time.sleep(0.2)
        st = srv.status()
        k = kernel()
        held = [(sent * WIRE + b - x) // WIRE for b, x in zip(base, k)]
        _, online, _ = who(srv.port)
        too_slow = sum("too slow" in l for l in srv.stderr_lines())
        stated = sum(held) * COST
        grow, peak = st["VmRSS"] - before, st["VmHWM"] - before
        print(f"{binary.rsplit('/', 1)[-1]} {' '.join(sys.argv[3:]) or '(defaults)'}: "
              f"{sent} lines sent in {took:.1f} s; kernel held {kib(min(k)):.0f}-{kib(max(k)):.0f} KiB "
              f"per non-reader; server held {min(held)}-{max(held)} lines each, "
              f"stated 20 x lines x 75 = {kib(stated):.0f} KiB; RSS before {kib(before):.0f} KiB, "
              f"after kernel fill +{kib(filled - before):.0f} KiB, at end +{kib(grow):.0f} KiB "
              f"({grow / stated:.2f}x stated), peak +{kib(peak):.0f} KiB ({peak / stated:.2f}x); "
              f"fresh /who: {online} online (want 22); 'too slow' log lines: {too_slow}")
        for s in silent:
            s.close()
        sender.close()


if __name__ == "__main__":
    main()
