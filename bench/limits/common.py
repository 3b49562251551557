"""Shared helpers for the limit measurements in bench/limits/.

Server: starts a chat binary on 127.0.0.1:0, reads the port from its
`listening on ADDR` line, reads VmRSS/VmHWM/Threads from /proc/PID/status,
keeps its stderr in a file and stops it with SIGTERM.
Line: a blocking client that reads whole lines.
Crowd: many non-blocking clients on one epoll that wait for some lines each
(a welcome, a rename) and then have everything else they receive discarded,
so that they keep reading without costing much.
Python 3 standard library only.
"""

import resource
import select
import signal
import socket
import subprocess
import tempfile
import time


def raise_nofile():
    """Raise this process's open-file limit to the hard limit; return it."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    return hard


def kib(n_bytes):
    return n_bytes / 1024


class Server:
    """A chat server process on HOST:0: `with Server(binary, "--max-queue", "262144") as s:`."""

    def __init__(self, binary, *args, log=None, host="127.0.0.1"):
        self.log_path = log or tempfile.mktemp(prefix="chat-limits-", suffix=".log")
        self.log = open(self.log_path, "wb")
        self.proc = subprocess.Popen(
            [binary, "--listen", f"{host}:0", *args],
            stdout=subprocess.PIPE, stderr=self.log, stdin=subprocess.DEVNULL)
        line = self.proc.stdout.readline().decode()
        if not line.startswith("listening on "):
            self.stop()
            raise RuntimeError(f"{binary} did not start: {line!r}, see {self.log_path}")
        self.port = int(line.rsplit(":", 1)[1])
        self.pid = self.proc.pid

    def status(self):
        """VmRSS, VmHWM (bytes) and Threads of the server, from /proc."""
        out = {}
        with open(f"/proc/{self.pid}/status") as f:
            for l in f:
                k, _, v = l.partition(":")
                if k in ("VmRSS", "VmHWM"):
                    out[k] = int(v.split()[0]) * 1024
                elif k == "Threads":
                    out[k] = int(v)
        return out

    def rss(self):
        return self.status()["VmRSS"]

    def alive(self):
        return self.proc.poll() is None

    def stderr_lines(self):
        self.log.flush()
        with open(self.log_path, "rb") as f:
            return f.read().decode(errors="replace").splitlines()

    def stop(self):
        """SIGTERM, wait up to 10 s, then SIGKILL; returns the exit code."""
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self.log.close()
        return self.proc.returncode

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.stop()


def connect(port, src=None, rcvbuf=None, host="127.0.0.1"):
    """A blocking TCP socket to the server; SO_RCVBUF and the source address
    are set before connecting."""
    s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    if rcvbuf:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, rcvbuf)
    if src:
        s.bind((src, 0))
    s.connect((host, port))
    return s


class Line:
    """A client that reads whole lines (blocking, with a timeout)."""

    def __init__(self, port, src=None, rcvbuf=None, sock=None, host="127.0.0.1"):
        self.sock = sock or connect(port, src, rcvbuf, host)
        self.buf = b""
        self.closed = False

    def send(self, text):
        self.sock.sendall(text.encode() + b"\n")

    def readline(self, timeout=10.0):
        """Next line without its LF, or None on timeout or EOF."""
        deadline = time.monotonic() + timeout
        while b"\n" not in self.buf:
            left = deadline - time.monotonic()
            if left <= 0 or self.closed:
                return None
            self.sock.settimeout(left)
            try:
                data = self.sock.recv(65536)
            except socket.timeout:
                return None
            except OSError:
                data = b""
            if not data:
                self.closed = True
                return None
            self.buf += data
        line, _, self.buf = self.buf.partition(b"\n")
        return line.decode(errors="replace")

    def read_who(self, timeout=30.0):
        """Read a /who reply: `* N users online: A, B` then `* C, D` lines until
        N nicks (or `* and K more`). Returns (n, nicks, reply_lines,
        reply_bytes, longest line with its LF); lines before the header are
        skipped."""
        deadline = time.monotonic() + timeout
        n, nicks, lines, size, longest = None, [], 0, 0, 0
        while n is None or len(nicks) < n:
            line = self.readline(max(0.0, deadline - time.monotonic()))
            if line is None:
                break
            if n is None:
                if " online: " not in line and not line.endswith(" online:"):
                    continue
                head, _, rest = line.partition(": ")
                n = int(head.split()[1])
            else:
                if line.startswith("* and ") and line.endswith(" more"):
                    lines += 1
                    size += len(line) + 1
                    break
                rest = line[2:]
            lines += 1
            size += len(line) + 1
            longest = max(longest, len(line.encode()) + 1)
            nicks += [x for x in rest.split(", ") if x]
        return n, nicks, lines, size, longest

    def close(self):
        self.sock.close()


def who(port, src=None, timeout=30.0):
    """A fresh client's view: (welcome line, users online per /who, nicks)."""
    c = Line(port, src)
    welcome = c.readline(timeout)
    if welcome is None or not welcome.startswith("* welcome"):
        c.close()
        return welcome, None, []
    c.send("/who")
    n, nicks, *_ = c.read_who(timeout)
    c.close()
    return welcome, n, nicks


class Crowd:
    """Many clients on one epoll. Each waits for lines starting with given
    prefixes (`wants`); once it has seen them all it reads and discards. A
    client whose connection ends is counted in `closed`."""

    def __init__(self):
        self.ep = select.epoll()
        self.conns = {}     # fd -> [socket, pending line bytes, wants left]
        self.closed = 0
        self.closed_fds = []
        self.scratch = bytearray(1 << 20)
        self.received = 0

    def add(self, sock, wants=()):
        sock.setblocking(False)
        self.conns[sock.fileno()] = [sock, b"", list(wants)]
        self.ep.register(sock.fileno(), select.EPOLLIN)

    def waiting(self):
        """How many clients still wait for a line they want."""
        return sum(1 for c in self.conns.values() if c[2])

    def pump(self, timeout=0.1):
        """Read from every client that has something; return how many events."""
        events = self.ep.poll(timeout)
        for fd, _ in events:
            c = self.conns.get(fd)
            if c is None:
                continue
            sock = c[0]
            try:
                if c[2]:
                    data = sock.recv(65536)
                    n = len(data)
                else:
                    n = sock.recv_into(self.scratch)
                    data = None
            except BlockingIOError:
                continue
            except OSError:
                n, data = 0, b""
            if n == 0:
                self.ep.unregister(fd)
                del self.conns[fd]
                self.closed_fds.append(fd)
                self.closed += 1
                sock.close()
                continue
            self.received += n
            if data is not None:
                buf = c[1] + data
                *lines, c[1] = buf.split(b"\n")
                for l in lines:
                    if c[2] and l.startswith(c[2][0]):
                        c[2].pop(0)
                        if not c[2]:
                            break
                if not c[2]:
                    c[1] = b""
        return len(events)

    def pump_until(self, done, timeout, pause=0.0):
        """Pump until done() or timeout; `pause` sleeps between passes so that
        each read takes more at once."""
        deadline = time.monotonic() + timeout
        while not done() and time.monotonic() < deadline:
            self.pump(0.05)
            if pause:
                time.sleep(pause)
        return done()

    def connect_batch(self, port, count, srcs=None, rcvbuf=None, first=None,
                      wants=(b"* welcome",), timeout=60.0, pause=0.0):
        """Connect `count` clients (source address srcs[i] if given), send each
        `first(i)` if given, and pump until all have seen their wants."""
        for i in range(count):
            s = connect(port, srcs[i] if srcs else None, rcvbuf)
            if first:
                s.sendall(first(i).encode() + b"\n")
            self.add(s, wants)
            if i % 64 == 63:
                self.pump(0)
        return self.pump_until(lambda: self.waiting() == 0, timeout, pause)

    def close_all(self):
        for sock, _, _ in self.conns.values():
            sock.close()
        self.conns.clear()
        self.ep.close()


def queues(port):
    """Kernel queues of the TCP connections to `port` on loopback, per `ss`:
    {client port: (client Recv-Q, server Send-Q)} in bytes, for connections
    whose server end is still established."""
    out = subprocess.run(["ss", "-tnH", "state", "established",
                          f"( sport = :{port} or dport = :{port} )"],
                         capture_output=True, text=True, check=True).stdout
    recv, send = {}, {}
    for l in out.splitlines():
        rq, sq, local, peer = l.split()[:4]
        lport, pport = int(local.rsplit(":", 1)[1]), int(peer.rsplit(":", 1)[1])
        if lport == port:
            send[pport] = int(sq)
        else:
            recv[lport] = int(rq)
    return {p: (recv.get(p, 0), s) for p, s in send.items()}


def count_log(lines, kinds):
    """Count stderr lines per kind: kinds is [(name, substring)], first match
    wins; the rest is `other`."""
    out = {name: 0 for name, _ in kinds}
    out["other"] = 0
    for l in lines:
        for name, sub in kinds:
            if sub in l:
                out[name] += 1
                break
        else:
            out["other"] += 1
    return out

