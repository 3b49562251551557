"""Many clients that never read, then a burst of long lines.

usage: many_nonreaders.py SERVER_BINARY [NON_READERS] [SERVER_ARGS...]

NON_READERS clients (default 9,999; with the sender that is the default
--max-clients, 10,000) set SO_RCVBUF to 4096 before connecting and never
call recv; they connect in batches of 500, 0.5 s apart. Then a sender joins
and writes 20 lines of 4000 bytes and `/who`, and waits up to 60 s for the
/who header (a sign its lines were handled). The server's status is sampled
every 50 ms throughout. Then: is the server alive, what does a fresh client
get (a welcome, or a refusal line), what did stderr log (leaves by reason,
anything like a panic or an abort).
Prints peak VmRSS/VmHWM, peak and final Threads, drops by reason, the
fresh client's first line.
"""

import sys
import threading
import time
from collections import Counter

from common import Line, Server, connect, raise_nofile


def main():
    raise_nofile()
    binary = sys.argv[1]
    n = int(sys.argv[2]) if len(sys.argv) > 2 else 9_999
    with Server(binary, *sys.argv[3:]) as srv:
        peak = {"VmRSS": 0, "VmHWM": 0, "Threads": 0}
        stop = threading.Event()

        def sample():
            while not stop.is_set() and srv.alive():
                try:
                    for k, v in srv.status().items():
                        peak[k] = max(peak[k], v)
                except OSError:
                    break
                time.sleep(0.05)

        sampler = threading.Thread(target=sample)
        sampler.start()
        silent, refused = [], 0
        for start in range(0, n, 500):
            for _ in range(min(500, n - start)):
                try:
                    silent.append(connect(srv.port, rcvbuf=4096))
                except OSError:
                    refused += 1
            time.sleep(0.5)
        time.sleep(2)
        joined = srv.status()
        sender = Line(srv.port)
        first = sender.readline(30)
        t0 = time.monotonic()
        line = "x" * 4000
        for _ in range(20):
            sender.send(line)
        sender.send("/who")
        header = None
        while header is None and time.monotonic() - t0 < 60:
            l = sender.readline(max(0.0, 60 - (time.monotonic() - t0)))
            if l is None:
                break
            if " online:" in l:
                header = l[:40]
        took = time.monotonic() - t0
        time.sleep(3)
        alive = srv.alive()
        end = srv.status() if alive else {}
        fresh = Line(srv.port).readline(10) if alive else None
        stop.set()
        sampler.join()
        log = srv.stderr_lines()
        reasons = Counter(l.split("reason=", 1)[1] for l in log if "reason=" in l)
        bad = [l for l in log if any(w in l.lower() for w in ("panic", "abort", "fatal"))]
        print(f"{binary.rsplit('/', 1)[-1]}: {len(silent)} non-readers connected "
              f"({refused} connect errors), threads then {joined['Threads']}, RSS "
              f"{joined['VmRSS'] // 1024} KiB; sender's first line {first!r:.40}; "
              f"20 x 4000 B + /who: {header!r} after {took:.1f} s; alive: {alive}; "
              f"peak VmRSS {peak['VmRSS'] // 1024} KiB, VmHWM {end.get('VmHWM', peak['VmHWM']) // 1024} KiB, "
              f"peak Threads {peak['Threads']}, final Threads {end.get('Threads')}; "
              f"leaves by reason {dict(reasons)}; fresh client: {fresh!r}; "
              f"panic/abort lines in stderr: {len(bad)} {bad[:2]}")
        for s in silent:
            s.close()
        sender.close()


if __name__ == "__main__":
    main()
