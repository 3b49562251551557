"""A peer that vanishes without a FIN frees its slot (TCP keepalive).

usage: vanished_peer.py SERVER_BINARY [SERVER_ARGS...]    (as root)

Makes a network namespace `chatka` joined to this one by a veth pair
(10.231.0.1 here, 10.231.0.2 there) and starts the server on 10.231.0.1
with --max-clients 2. Client A, a process in the namespace, joins and then
just sleeps; client B joins from here and reads. `ss -tno` shows the
keepalive timer on the server's sockets. Then A vanishes: its veth end is
set down inside the namespace, so nothing more passes, no FIN, no RST (A's
process still holds its socket). A third client now gets `server full`.
Every 10 s a new client tries again, and ss shows A's connection, until
one is welcomed: the time from A's last traffic to that is printed with
the server's log of A leaving. The namespace, the veth pair and A's
process are removed at the end.
"""

import subprocess
import sys
import time

from common import Line, Server

NS, HERE, THERE = "chatka", "10.231.0.1", "10.231.0.2"


def sh(*cmd, check=True):
    return subprocess.run(cmd, capture_output=True, text=True, check=check).stdout


def ss(port):
    return sh("ss", "-tno", "state", "established", f"( sport = :{port} )").strip()


def setup():
    sh("ip", "netns", "add", NS)
    sh("ip", "link", "add", "vka0", "type", "veth", "peer", "name", "vka1")
    sh("ip", "link", "set", "vka1", "netns", NS)
    sh("ip", "addr", "add", f"{HERE}/24", "dev", "vka0")
    sh("ip", "link", "set", "vka0", "up")
    sh("ip", "netns", "exec", NS, "ip", "addr", "add", f"{THERE}/24", "dev", "vka1")
    sh("ip", "netns", "exec", NS, "ip", "link", "set", "vka1", "up")


def teardown(a):
    if a and a.poll() is None:
        a.kill()
        a.wait()
    sh("ip", "link", "del", "vka0", check=False)
    sh("ip", "netns", "del", NS, check=False)


CLIENT_A = """
import socket, sys, time
s = socket.create_connection((sys.argv[1], int(sys.argv[2])))
print(s.recv(200).decode().splitlines()[0], flush=True)
time.sleep(3600)
"""


def main():
    binary = sys.argv[1]
    a = None
    setup()
    try:
        with Server(binary, "--max-clients", "2", *sys.argv[2:], host=HERE) as srv:
            a = subprocess.Popen(["ip", "netns", "exec", NS, sys.executable, "-c", CLIENT_A,
                                  HERE, str(srv.port)], stdout=subprocess.PIPE, text=True)
            print("A (in the namespace):", a.stdout.readline().strip())
            b = Line(srv.port, host=HERE)
            print("B:", b.readline())
            last_traffic = time.monotonic()     # B's join notice to A
            time.sleep(1)
            print("ss -tno:\n" + ss(srv.port))
            sh("ip", "netns", "exec", NS, "ip", "link", "set", "vka1", "down")
            print(f"A vanished (vka1 down in {NS}); a new client gets:",
                  Line(srv.port, host=HERE).readline())
            while True:
                time.sleep(10)
                t = time.monotonic() - last_traffic
                c = Line(srv.port, host=HERE)
                first = c.readline()
                c.close()
                conns = [l for l in ss(srv.port).splitlines() if THERE in l]
                print(f"{t:5.0f} s: new client gets {first!r}; A's connection: {conns or 'gone'}")
                if first and first.startswith("* welcome"):
                    break
                if t > 300:
                    print("not freed after 300 s")
                    break
            print("B saw:", [l for l in iter(lambda: b.readline(0.5), None)])
            print("server log:", [l for l in srv.stderr_lines() if " left" in l])
    finally:
        teardown(a)


if __name__ == "__main__":
    main()
