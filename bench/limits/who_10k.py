"""/who with many users online.

usage: who_10k.py SERVER_BINARY [USERS] [SERVER_ARGS...]

Starts the server with --max-clients 20000 (plus SERVER_ARGS). USERS - 1
clients (default USERS 10,000) connect in batches of 500; each sends
`/nick` + a distinct 32-character name right away and the batch waits for
each client's welcome and rename. All of them read everything they are
sent (one epoll, reads every 50 ms), so the join and rename notices do not
pile up in the server. Then the last client, the asker, joins, renames
itself, and sends `/who`: it must get `* USERS users online:` and every
nick, over lines of at most 512 bytes, without being disconnected.
Prints the reply's size and lines, the time from sending /who to its last
line, the server's RSS, how many clients were dropped, and the RSS once
every client has closed.
"""

import sys
import time

from common import Crowd, Line, Server, raise_nofile

PAD = "abcdefghijklmnopqrstuvwxyz"


def nick(i):
    return f"n{i:05d}{PAD}"     # 32 characters


def main():
    raise_nofile()
    binary = sys.argv[1]
    users = int(sys.argv[2]) if len(sys.argv) > 2 else 10_000
    with Server(binary, "--max-clients", "20000", *sys.argv[3:]) as srv:
        crowd = Crowd()
        t0 = time.monotonic()
        for start in range(0, users - 1, 500):
            count = min(500, users - 1 - start)
            ok = crowd.connect_batch(
                srv.port, count, first=lambda i: f"/nick {nick(start + i)}",
                wants=(b"* welcome", b"* you are now known as"), timeout=300, pause=0.05)
            assert ok, f"batch at {start}: {crowd.waiting()} without welcome or rename"
        asker = Line(srv.port)
        asker.send(f"/nick {nick(users - 1)}")
        while not (asker.readline(60) or "").startswith("* you are now known as"):
            pass
        crowd.pump_until(lambda: False, 2.0, pause=0.05)   # let notices drain
        setup = time.monotonic() - t0
        rss_before = srv.rss()
        t1 = time.monotonic()
        asker.send("/who")
        n, nicks, lines, size, longest = asker.read_who(timeout=60)
        took = time.monotonic() - t1
        st = srv.status()
        asker.send("/who")      # still connected?
        still = asker.read_who(timeout=60)[0] == n
        complete = n == users and sorted(nicks) == sorted(nick(i) for i in range(users))
        crowd.pump_until(lambda: False, 1.0, pause=0.05)
        too_slow = sum("too slow" in l for l in srv.stderr_lines())
        print(f"{binary.rsplit('/', 1)[-1]}: {users} users (setup {setup:.0f} s); /who reply: "
              f"header says {n}, {len(nicks)} nicks, complete: {complete}, {lines} lines, "
              f"{size} bytes (avg {size / max(lines, 1):.0f} B/line, longest {longest} B with LF), "
              f"answered in {took * 1000:.0f} ms; asker still connected: {still}; "
              f"RSS {rss_before // 1024} KiB before /who, {st['VmRSS'] // 1024} KiB after, "
              f"VmHWM {st['VmHWM'] // 1024} KiB; clients dropped: {crowd.closed}, "
              f"'too slow' log lines: {too_slow}")
        crowd.close_all()
        asker.close()
        time.sleep(10)
        print(f"  RSS 10 s after every client closed: {srv.rss() // 1024} KiB")


if __name__ == "__main__":
    main()
