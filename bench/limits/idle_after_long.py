"""Idle RSS per connection, silent vs after one too-long line.

usage: idle_after_long.py SERVER_BINARY [N] [LINE_BYTES] [SERVER_ARGS...]

Against one server: N clients (default 1000) connect and never send
(their RSS per connection: VmRSS after minus before, over N); then N more
each send one line of LINE_BYTES bytes (default 200,000, far over
--max-line), read the `* error: ...` reply the server gives for it, and stay
idle. Each client reads what it is sent (joins) throughout, so nothing
piles up in the server. Prints RSS per connection for both groups.
"""

import sys

from common import Crowd, Server, connect, raise_nofile


def settle(crowd, seconds=1.0):
    crowd.pump_until(lambda: False, seconds)


def main():
    raise_nofile()
    binary = sys.argv[1]
    n = int(sys.argv[2]) if len(sys.argv) > 2 else 1000
    size = int(sys.argv[3]) if len(sys.argv) > 3 else 200_000
    with Server(binary, *sys.argv[4:]) as srv:
        crowd = Crowd()
        settle(crowd)
        r0 = srv.rss()
        for _ in range(0, n, 250):
            assert crowd.connect_batch(srv.port, 250), "welcome missing"
        settle(crowd)
        r1 = srv.rss()
        long_line = b"x" * size + b"\n"
        for _ in range(n):
            s = connect(srv.port)
            s.sendall(long_line)
            crowd.add(s, (b"* welcome", b"* error"))
            crowd.pump(0)
        assert crowd.pump_until(lambda: crowd.waiting() == 0, 120), "error reply missing"
        settle(crowd, 2.0)
        r2 = srv.rss()
        st = srv.status()
        print(f"{binary.rsplit('/', 1)[-1]}: RSS {r0 // 1024} KiB empty; {n} silent: "
              f"{(r1 - r0) / n / 1024:.2f} KiB/conn; {n} after a {size}-byte line: "
              f"{(r2 - r1) / n / 1024:.2f} KiB/conn; VmHWM {st['VmHWM'] // 1024} KiB; "
              f"clients dropped: {crowd.closed}")
        crowd.close_all()


if __name__ == "__main__":
    main()
