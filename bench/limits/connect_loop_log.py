"""Log lines written for one address connecting in a loop.

usage: connect_loop_log.py SERVER_BINARY [SECONDS] [SERVER_ARGS...]

The server runs with --limit-loopback, so --max-per-ip (16) and the
connect rate (32 at once, then 10 a minute) apply to 127.0.0.1. One loop
connects from 127.0.0.1, reads the first line, and closes, as fast as it
can for SECONDS (default 60). Counts the first lines the loop got
(welcome, `too many connections`, other), then the server's stderr lines
by kind (rejected, refusals not logged, joined, left, other) and prints
them with the log lines per minute.
"""

import sys
import time
from collections import Counter

from common import Line, Server, count_log

KINDS = [("rejected", " rejected"), ("refusals not logged", "refusals not logged"),
         ("joined", " joined"), ("left", " left")]


def main():
    binary = sys.argv[1]
    seconds = float(sys.argv[2]) if len(sys.argv) > 2 else 60.0
    with Server(binary, "--limit-loopback", *sys.argv[3:]) as srv:
        got = Counter()
        end = time.monotonic() + seconds
        while time.monotonic() < end:
            try:
                c = Line(srv.port, src="127.0.0.1")
            except OSError as e:
                got[f"connect error {e.errno}"] += 1
                time.sleep(0.01)
                continue
            first = c.readline(5) or ""
            c.close()
            got["welcome" if first.startswith("* welcome") else
                "too many" if "too many connections" in first else f"other: {first[:40]}"] += 1
        time.sleep(1)
        log = srv.stderr_lines()[1:]     # without `listening`
        counts = count_log(log, KINDS)
        print(f"{binary.rsplit('/', 1)[-1]} --limit-loopback: {sum(got.values())} connects in "
              f"{seconds:.0f} s, first lines {dict(got)}; stderr lines {len(log)} "
              f"({len(log) / seconds * 60:.1f}/min): {counts}")
        for l in log:
            if " rejected" in l or "not logged" in l:
                print("  ", l)


if __name__ == "__main__":
    main()
