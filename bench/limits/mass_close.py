"""Server memory when every client closes at once.

usage: mass_close.py SERVER_BINARY [USERS] [SERVER_ARGS...]

USERS clients (default 10,000; --max-clients 20000) connect in batches of
500 (waiting for each welcome, reading everything they get); then all of
them close their sockets at once. Each leave is a `* NICK left` notice
for every client whose close the server has not handled yet, so up to
USERS^2/2 notices are queued. Samples the server's VmRSS, VmHWM and CPU
time every second for 15 s and prints the RSS before, the peak, and the
RSS once it is done.
"""

import sys
import time

from common import Crowd, Server, raise_nofile


def cpu_seconds(pid):
    fields = open(f"/proc/{pid}/stat").read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / 100     # utime + stime, in ticks of 10 ms


def main():
    raise_nofile()
    binary = sys.argv[1]
    users = int(sys.argv[2]) if len(sys.argv) > 2 else 10_000
    with Server(binary, "--max-clients", "20000", *sys.argv[3:]) as srv:
        crowd = Crowd()
        for start in range(0, users, 500):
            assert crowd.connect_batch(srv.port, min(500, users - start), timeout=300,
                                       pause=0.05), "welcome missing"
        crowd.pump_until(lambda: False, 2.0, pause=0.05)
        before, cpu0 = srv.rss(), cpu_seconds(srv.pid)
        crowd.close_all()
        samples = []
        for _ in range(15):
            time.sleep(1)
            st = srv.status()
            samples.append((st["VmRSS"], cpu_seconds(srv.pid)))
        busy = next(i + 1 for i, (_, c) in enumerate(samples) if c == samples[-1][1])
        left = sum(" left" in l for l in srv.stderr_lines())
        print(f"{binary.rsplit('/', 1)[-1]}: {users} clients close at once: RSS "
              f"{before // 1024} KiB before, peak (VmHWM) {st['VmHWM'] // 1024} KiB, "
              f"per second {[r // 1024 for r, _ in samples[:6]]} KiB, "
              f"{samples[-1][0] // 1024} KiB after 15 s with no client; "
              f"{samples[-1][1] - cpu0:.1f} s CPU, done within {busy} s; {left} leaves logged")


if __name__ == "__main__":
    main()
