"""Held short lines vs the stated output limit.

usage: held_lines.py SERVER_BINARY LINES [--no-fill] [--step N] [SERVER_ARGS...]

20 clients set SO_RCVBUF to 4096 before connecting and never call recv; one
sender sends lines `abcd` (5 bytes with LF) in batches of 200 (--step), each followed
by `/who` (its reply arriving means every line before it has been queued for
the 20 non-readers). Each line costs a non-reader, as docs/protocol.md counts
it ("Max output queue"), 6 (`XXXX: `) + 5 + 64 = 75 bytes.

The kernel takes a lot of such a backlog first: the server's send buffer
autotunes up to tcp_wmem's max (4 MiB here), about 2.8 MB of these 11-byte
lines per socket, none of it in RSS nor in the server's count. So the sender
first fills the kernel (batches until the server's Send-Q stops growing),
then sends batches until each non-reader holds LINES lines in the server
itself (sent - the server's Send-Q - the client's Recv-Q, from `ss`, in
11-byte lines). With --no-fill it sends just LINES lines, as fast as it can
(one sendall), and the kernel may hold most of them.

The stated bound on what the server holds is 20 * held lines * 75 bytes
(with --no-fill: 20 * LINES * 75, wherever the lines are).
Prints the RSS growth (VmRSS at the end minus before any line, and VmHWM
minus that) against it, what the kernel held, and the users a fresh client's
/who sees at the end (22 if no non-reader was dropped).

Batches are small on purpose: the server hands a client's whole queue to
the socket as one batch and releases the 64 bytes of each line of a batch
only when the batch's last byte is written, so a batch half taken by the
kernel goes on counting all its lines (--step 5000 shows it: non-readers
are dropped well before they hold LINES lines).
"""

import sys
import time

from common import Line, Server, connect, kib, queues, who

READERS = 20
WIRE, COST = 11, 6 + 5 + 64     # bytes of `XXXX: abcd\n`, and as counted


def send_lines(sender, n):
    """Send n lines and /who, and wait for the reply: all n are queued."""
    sender.sock.sendall(b"abcd\n" * n + b"/who\n")
    assert sender.read_who(timeout=60)[0] is not None


def main():
    binary, target, args = sys.argv[1], int(sys.argv[2]), sys.argv[3:]
    fill = "--no-fill" not in args
    args = [a for a in args if a != "--no-fill"]
    step = 200
    if "--step" in args:
        i = args.index("--step")
        step = int(args[i + 1])
        del args[i:i + 2]
    with Server(binary, *args) as srv:
        silent = [connect(srv.port, rcvbuf=4096) for _ in range(READERS)]
        ports = [s.getsockname()[1] for s in silent]
        sender = Line(srv.port)
        assert sender.readline().startswith("* welcome")
        time.sleep(0.5)

        def kernel():   # bytes in kernel buffers, per non-reader (None: gone)
            q = queues(srv.port)
            return [sum(q[p]) if p in q else None for p in ports]

        def held():     # lines held by the server, per non-reader still there
            return [(sent * WIRE + b - k) // WIRE
                    for b, k in zip(base, kernel()) if k is not None] or [0]

        base = kernel()
        before = srv.rss()
        t0 = time.monotonic()
        sent, last, most = 0, 0, 0
        while fill:     # fill the kernel buffers
            send_lines(sender, step)
            sent += step
            now = min(k or 0 for k in kernel()) - min(base)
            if None in kernel() or now - last < step * WIRE // 2:
                break
            last = now
        filled = srv.rss()
        if not fill:
            send_lines(sender, target)
            sent = target
        while fill and None not in kernel() and max(held()) < target:
            n = min(step, target - max(held()))
            most = max(held()) + n   # what a non-reader holds at most after it
            send_lines(sender, n)
            sent += n
        took = time.monotonic() - t0
        time.sleep(0.2)
        st = srv.status()
        k, h = [x for x in kernel() if x is not None] or [0], held()
        gone = kernel().count(None)
        _, online, _ = who(srv.port)
        too_slow = sum("too slow" in l for l in srv.stderr_lines())
        name = f"{binary.rsplit('/', 1)[-1]} {' '.join(sys.argv[3:]) or '(defaults)'}"
        if gone:
            print(f"{name}: {gone} non-readers dropped after {sent} lines, when each held at "
                  f"most {most} lines in the server ({most * COST} bytes as counted); "
                  f"fresh /who: {online} online; 'too slow' log lines: {too_slow}")
            return
        # with --no-fill, the figure as if the server held every line
        stated = (sum(h) if fill else READERS * target) * COST
        grow, peak = st["VmRSS"] - before, st["VmHWM"] - before
        print(f"{name}: {sent} lines sent in {took:.1f} s; kernel held {kib(min(k)):.0f}-{kib(max(k)):.0f} KiB "
              f"per non-reader; server held {min(h)}-{max(h)} lines each, "
              f"stated 20 x lines x 75 = {kib(stated):.0f} KiB; RSS before {kib(before):.0f} KiB, "
              f"after kernel fill +{kib(filled - before):.0f} KiB, at end +{kib(grow):.0f} KiB "
              f"({grow / max(stated, 1):.2f}x stated), peak +{kib(peak):.0f} KiB "
              f"({peak / max(stated, 1):.2f}x); fresh /who: {online} online (want 22); "
              f"'too slow' log lines: {too_slow}")


if __name__ == "__main__":
    main()
