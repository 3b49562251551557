//! [`Client`]: one chat connection driven by a check.

use std::fmt;
use std::io::{self, ErrorKind, Write};
use std::net::{IpAddr, SocketAddr, TcpStream};
use std::thread;
use std::time::{Duration, Instant};

use socket2::{Domain, Protocol, SockRef, Socket, Type};

use crate::TIMEOUT;
use crate::stream::{ClientStream, Endpoint, Got, READ_CHUNK, TlsEnd};

/// What reading the next line found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Received {
    /// A complete line, without its LF.
    Line(Vec<u8>),
    /// The server closed the connection (EOF or reset) with no partial line.
    Closed,
    /// The server closed the connection in the middle of a line (these
    /// bytes, without LF): only right for a client dropped without a flush.
    Cut(Vec<u8>),
    /// Nothing complete arrived in time.
    TimedOut,
}

/// A chat client, over plain TCP or TLS (as its [`Endpoint`] says), reading
/// lines with a timeout; the methods mean the same either way.
///
/// Every `expect_*` method panics with the client's name, what was expected
/// and what came, after at most [`TIMEOUT`]: timeouts only guard against a
/// hang, they never decide a check.
pub struct Client {
    stream: ClientStream,
    /// Bytes read but not yet returned as lines.
    buf: Vec<u8>,
    /// Where the unread part of `buf` starts.
    start: usize,
    /// The nick the server gave (from the welcome line), kept up to date by
    /// [`Client::rename`].
    nick: String,
    /// For messages: who this client is in the check.
    label: String,
}

impl fmt::Debug for Client {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Client")
            .field("label", &self.label)
            .field("nick", &self.nick)
            .finish_non_exhaustive()
    }
}

impl Client {
    /// Connects without reading anything: for clients that may be refused.
    /// Over TLS, the handshake is done when this returns.
    pub fn connect_raw(endpoint: &Endpoint, label: &str) -> Client {
        Client::try_connect(endpoint, label)
            .unwrap_or_else(|e| panic!("{label}: cannot connect to {endpoint}: {e}"))
    }

    /// [`Client::connect_raw`], returning a failure (to connect, or of the
    /// TLS handshake) rather than panicking.
    pub fn try_connect(endpoint: &Endpoint, label: &str) -> io::Result<Client> {
        let stream = TcpStream::connect_timeout(&endpoint.socket_addr(), TIMEOUT)?;
        Client::over(stream, endpoint, label)
    }

    /// [`Client::connect_raw`] from the source address `source` (on Linux
    /// any 127.x.y.z reaches a loopback server, so a check can be several
    /// addresses for the per-address policies), with `SO_RCVBUF` set to
    /// `recv_buffer` if given: before connecting, as the window scale is
    /// agreed in the handshake. A small receive buffer makes the server,
    /// not the kernel, hold what the client has not read.
    pub fn connect_from(
        endpoint: &Endpoint,
        source: IpAddr,
        recv_buffer: Option<usize>,
        label: &str,
    ) -> Client {
        let addr = endpoint.socket_addr();
        let socket = Socket::new(Domain::for_address(addr), Type::STREAM, Some(Protocol::TCP))
            .unwrap_or_else(|e| panic!("{label}: cannot create a socket: {e}"));
        if let Some(size) = recv_buffer {
            socket
                .set_recv_buffer_size(size)
                .unwrap_or_else(|e| panic!("{label}: cannot set SO_RCVBUF: {e}"));
        }
        socket
            .bind(&SocketAddr::new(source, 0).into())
            .unwrap_or_else(|e| panic!("{label}: cannot bind to {source}: {e}"));
        socket
            .connect_timeout(&addr.into(), TIMEOUT)
            .unwrap_or_else(|e| panic!("{label}: cannot connect to {addr} from {source}: {e}"));
        Client::over(socket.into(), endpoint, label)
            .unwrap_or_else(|e| panic!("{label}: cannot connect to {endpoint} from {source}: {e}"))
    }

    /// A client over `stream`, connected to `endpoint`.
    fn over(stream: TcpStream, endpoint: &Endpoint, label: &str) -> io::Result<Client> {
        stream.set_nodelay(true)?;
        stream.set_write_timeout(Some(TIMEOUT))?;
        Ok(Client {
            stream: ClientStream::establish(stream, endpoint)?,
            buf: Vec::with_capacity(8192),
            start: 0,
            nick: String::new(),
            label: label.to_owned(),
        })
    }

    /// Connects and reads the welcome line (see [`Client::read_welcome`]).
    /// Returns the client and the number of users online it was told.
    pub fn connect_welcomed(endpoint: &Endpoint, label: &str) -> (Client, usize) {
        let mut client = Client::connect_raw(endpoint, label);
        let line = client.read_line();
        let online = client.take_welcome(&line);
        (client, online)
    }

    /// Reads the welcome line, checking its form and remembering NICK;
    /// returns N (see [`parse_welcome`]).
    pub fn read_welcome(&mut self) -> usize {
        let line = self.read_line();
        self.take_welcome(&line)
    }

    /// Checks that `line` is a welcome line and remembers its nick.
    pub fn take_welcome(&mut self, line: &str) -> usize {
        let Some((nick, online)) = parse_welcome(line) else {
            panic!("{}: expected the welcome line, got {line:?}", self.label);
        };
        self.nick = nick;
        online
    }

    /// The client's current nick.
    pub fn nick(&self) -> &str {
        &self.nick
    }

    /// The client's label in the check (for messages).
    pub fn label(&self) -> &str {
        &self.label
    }

    /// Records a nick change made by the check.
    pub fn set_nick(&mut self, nick: &str) {
        nick.clone_into(&mut self.nick);
    }

    /// A second handle on the connection, for writing (or reading) from
    /// another thread while this client is not read.
    pub fn try_clone_stream(&self) -> ClientStream {
        self.stream
            .try_clone()
            .expect("clone the client's connection")
    }

    /// Writes all of `bytes` (with `TCP_NODELAY` set, a short write goes
    /// out as a segment of its own; over TLS, as a record of its own).
    pub fn send(&mut self, bytes: &[u8]) {
        self.try_send(bytes)
            .unwrap_or_else(|e| panic!("{}: write failed: {e}", self.label));
    }

    /// Writes all of `bytes`, returning a failure rather than panicking: for
    /// a client that the server may close at any moment.
    pub fn try_send(&mut self, bytes: &[u8]) -> io::Result<()> {
        self.stream.write_all(bytes)?;
        self.stream.flush()
    }

    /// Writes `text` and an LF.
    pub fn send_line(&mut self, text: &str) {
        let mut bytes = Vec::with_capacity(text.len() + 1);
        bytes.extend_from_slice(text.as_bytes());
        bytes.push(b'\n');
        self.send(&bytes);
    }

    /// Closes the writing side: the server sees EOF (over TLS, close_notify
    /// and then the TCP EOF).
    pub fn shutdown_write(&mut self) {
        self.stream
            .shutdown_write()
            .unwrap_or_else(|e| panic!("{}: shutdown failed: {e}", self.label));
    }

    /// Closes the connection with a reset (`SO_LINGER` 0) once every handle
    /// on it is closed: the server sees the connection fail rather than end
    /// with EOF (after which it would still handle what it holds of this
    /// client's input), and drops whatever it still holds of it.
    pub fn close_with_reset(self) {
        SockRef::from(self.stream.tcp())
            .set_linger(Some(Duration::ZERO))
            .unwrap_or_else(|e| panic!("{}: cannot set SO_LINGER: {e}", self.label));
    }

    /// How the server ended this client's TLS session, once it has (`None`
    /// for plain TCP, and while the session goes on).
    pub fn tls_end(&self) -> Option<TlsEnd> {
        self.stream.tls_end()
    }

    /// Reads the next line or EOF, waiting at most `timeout`.
    pub fn receive(&mut self, timeout: Duration) -> Received {
        self.receive_at(None, timeout)
    }

    /// [`Client::receive`] for a client that reads at a set rate: each read
    /// takes at most what `pace` allows from the socket, after sleeping
    /// until it allows a chunk. Over TLS it is the socket's bytes that are
    /// paced, records and all, so the server sees the same slow reader
    /// either way. The sleeps are the client's pace, not waits for the server:
    /// `timeout` bounds only the time spent waiting for bytes.
    pub fn receive_paced(&mut self, pace: &mut ReadPace, timeout: Duration) -> Received {
        self.receive_at(Some(pace), timeout)
    }

    fn receive_at(&mut self, mut pace: Option<&mut ReadPace>, timeout: Duration) -> Received {
        let mut deadline = Instant::now() + timeout;
        let mut scanned = self.start;
        loop {
            if let Some(pos) = self.buf[scanned..].iter().position(|&b| b == b'\n') {
                let end = scanned + pos;
                let line = self.buf[self.start..end].to_vec();
                self.start = end + 1;
                if self.start == self.buf.len() {
                    self.buf.clear();
                    self.start = 0;
                }
                return Received::Line(line);
            }
            scanned = self.buf.len();
            let mut socket_limit = READ_CHUNK;
            if let Some(pace) = pace.as_deref_mut() {
                let (slept, allowed) = pace.take();
                deadline += slept;
                socket_limit = allowed;
            }
            let now = Instant::now();
            if now >= deadline {
                return Received::TimedOut;
            }
            if self.start > 0 {
                self.buf.drain(..self.start);
                scanned -= self.start;
                self.start = 0;
            }
            self.stream
                .set_read_timeout(Some(deadline - now))
                .expect("set_read_timeout");
            let len = self.buf.len();
            self.buf.resize(len + READ_CHUNK, 0);
            let result = self.stream.read_some(&mut self.buf[len..], socket_limit);
            let (n, socket) = match result {
                Ok(Got::Bytes { plaintext, socket }) => (plaintext, socket),
                _ => (0, 0),
            };
            self.buf.truncate(len + n);
            if let Some(pace) = pace.as_deref_mut() {
                pace.spend(socket);
            }
            match result {
                Ok(Got::End) if self.buf.is_empty() => return Received::Closed,
                Ok(Got::End) => return Received::Cut(std::mem::take(&mut self.buf)),
                Ok(Got::Bytes { .. }) => {}
                Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => {}
                Err(e) if e.kind() == ErrorKind::Interrupted => {}
                Err(e) if e.kind() == ErrorKind::ConnectionReset && self.buf.is_empty() => {
                    return Received::Closed;
                }
                Err(e) if e.kind() == ErrorKind::ConnectionReset => {
                    return Received::Cut(std::mem::take(&mut self.buf));
                }
                Err(e) => panic!("{}: read failed: {e}", self.label),
            }
        }
    }

    /// The next line as raw bytes; panics on EOF or after [`TIMEOUT`].
    pub fn read_line_bytes(&mut self) -> Vec<u8> {
        self.read_line_bytes_within(TIMEOUT)
    }

    /// The next line as raw bytes; panics on EOF or after `guard`.
    fn read_line_bytes_within(&mut self, guard: Duration) -> Vec<u8> {
        match self.receive(guard) {
            Received::Line(line) => line,
            Received::Closed => panic!("{}: expected a line, the connection closed", self.label),
            Received::Cut(part) => panic!(
                "{}: the connection closed in the middle of a line: {:?}",
                self.label,
                String::from_utf8_lossy(&part)
            ),
            Received::TimedOut => {
                panic!("{}: expected a line, none came in {guard:?}", self.label)
            }
        }
    }

    /// The next line, which must be valid UTF-8 (the server only sends
    /// sanitized text); panics on EOF or after [`TIMEOUT`].
    pub fn read_line(&mut self) -> String {
        self.read_line_within(TIMEOUT)
    }

    /// [`Client::read_line`], waiting at most `guard`.
    pub fn read_line_within(&mut self, guard: Duration) -> String {
        let line = self.read_line_bytes_within(guard);
        String::from_utf8(line).unwrap_or_else(|e| {
            panic!(
                "{}: the server sent invalid UTF-8: {:?}",
                self.label,
                String::from_utf8_lossy(e.as_bytes())
            )
        })
    }

    /// The next line must be exactly `expected`.
    pub fn expect_line(&mut self, expected: &str) {
        self.expect_line_within(expected, TIMEOUT);
    }

    /// The next line must be exactly `expected`, waiting at most `guard`:
    /// for a line that comes only after a configured time, or after the
    /// server has moved an amount of data that [`TIMEOUT`] is not sized for.
    pub fn expect_line_within(&mut self, expected: &str, guard: Duration) {
        let line = self.read_line_within(guard);
        assert_eq!(
            line, expected,
            "{} ({}): unexpected line",
            self.label, self.nick
        );
    }

    /// The next lines must be exactly `expected`, in order.
    pub fn expect_lines(&mut self, expected: &[&str]) {
        for line in expected {
            self.expect_line(line);
        }
    }

    /// Reads lines until one satisfies `matches` and returns it; the lines
    /// before it (returned too) must each satisfy `skippable`, or the check
    /// fails. For waiting on a line among unrelated notices.
    pub fn expect_line_matching(
        &mut self,
        what: &str,
        mut matches: impl FnMut(&str) -> bool,
        mut skippable: impl FnMut(&str) -> bool,
    ) -> (String, Vec<String>) {
        let mut skipped = Vec::new();
        loop {
            let line = self.read_line();
            if matches(&line) {
                return (line, skipped);
            }
            assert!(
                skippable(&line),
                "{} ({}): waiting for {what}, got unexpected line {line:?} (after {skipped:?})",
                self.label,
                self.nick
            );
            skipped.push(line);
        }
    }

    /// The server must close the connection (EOF or reset) with no further
    /// line, within [`TIMEOUT`].
    pub fn assert_closed(&mut self) {
        match self.receive(TIMEOUT) {
            Received::Closed => {}
            Received::Line(line) | Received::Cut(line) => panic!(
                "{}: expected the connection to close, got {:?}",
                self.label,
                String::from_utf8_lossy(&line)
            ),
            Received::TimedOut => panic!(
                "{}: expected the connection to close, still open after {TIMEOUT:?}",
                self.label
            ),
        }
    }

    /// The next line must be exactly `error`, and then the server must close
    /// the connection: how a client is refused or disconnected. Over TLS the
    /// session must end with close_notify.
    pub fn expect_error_and_close(&mut self, error: &str) {
        self.expect_line(error);
        self.assert_closed();
        // A last line is an orderly close: over TLS it ends the session
        // with close_notify (docs/tls.md, "Closing").
        if let Some(end) = self.tls_end() {
            assert_eq!(
                end,
                TlsEnd::CloseNotify,
                "{}: an orderly close over TLS ends with close_notify after {error:?}",
                self.label()
            );
        }
    }

    /// Reads and drops whatever comes until the server closes the
    /// connection, even in the middle of a line (for clients the server
    /// drops without flushing); returns how many lines came.
    ///
    /// Fails only if nothing at all arrives for [`TIMEOUT`] while the
    /// connection is open: a guard on progress, not on the total time, so
    /// that draining megabytes the kernel still holds cannot fail on a slow
    /// machine however long it takes.
    pub fn drain_until_closed(&mut self) -> usize {
        let mut lines = 0;
        loop {
            match self.receive(TIMEOUT) {
                Received::Closed | Received::Cut(_) => return lines,
                Received::Line(_) => lines += 1,
                Received::TimedOut => panic!(
                    "{}: expected the connection to close, still open and silent for {TIMEOUT:?} \
                     (after {lines} lines)",
                    self.label
                ),
            }
        }
    }
}

/// A client's reading rate: a token bucket of bytes that fills at the rate
/// up to a tenth of a second's worth (at least one line of the protocol's
/// default longest, 4 KiB), from which each read takes what it read from
/// the socket.
#[derive(Debug, Clone)]
pub struct ReadPace {
    /// Bytes per second.
    rate: f64,
    capacity: f64,
    /// Bytes that may be read, as of `at`.
    tokens: f64,
    at: Instant,
}

impl ReadPace {
    /// A full bucket for `bytes_per_sec` (at least 1).
    pub fn new(bytes_per_sec: usize) -> ReadPace {
        let rate = bytes_per_sec.max(1) as f64;
        let capacity = (rate / 10.0).max(4096.0);
        ReadPace {
            rate,
            capacity,
            tokens: capacity,
            at: Instant::now(),
        }
    }

    /// Sleeps until the bucket is at least half full (so that reads are
    /// chunks, not a few bytes each time a few are allowed); returns how
    /// long it slept and how many bytes may be read now.
    fn take(&mut self) -> (Duration, usize) {
        self.refill();
        let missing = self.capacity / 2.0 - self.tokens;
        let slept = if missing > 0.0 {
            let nap = Duration::from_secs_f64(missing / self.rate);
            thread::sleep(nap);
            self.refill();
            nap
        } else {
            Duration::ZERO
        };
        // Truncation intended: whole bytes.
        (slept, (self.tokens as usize).max(1))
    }

    fn refill(&mut self) {
        let now = Instant::now();
        let elapsed = now.duration_since(self.at).as_secs_f64();
        self.tokens = (self.tokens + elapsed * self.rate).min(self.capacity);
        self.at = now;
    }

    /// Takes `n` bytes that were read.
    fn spend(&mut self, n: usize) {
        self.tokens -= n as f64;
    }
}

/// Whether `line` is a `* NICK joined`, `* NICK left` or
/// `* NICK left (REASON)` notice.
pub fn is_join_or_leave(line: &str) -> bool {
    let Some(rest) = line.strip_prefix("* ") else {
        return false;
    };
    let Some((nick, what)) = rest.split_once(' ') else {
        return false;
    };
    !nick.is_empty()
        && (what == "joined"
            || what == "left"
            || (what.starts_with("left (") && what.ends_with(')')))
}

/// Parses `* welcome, you are NICK; N users online; type /help for commands`
/// ("1 user" when N is 1) into NICK and N.
pub fn parse_welcome(line: &str) -> Option<(String, usize)> {
    let rest = line
        .strip_prefix("* welcome, you are ")?
        .strip_suffix(" online; type /help for commands")?;
    let (nick, count) = rest.split_once("; ")?;
    let (n, word) = count.split_once(' ')?;
    let n: usize = n.parse().ok()?;
    let expected_word = if n == 1 { "user" } else { "users" };
    (word == expected_word && !nick.is_empty()).then(|| (nick.to_owned(), n))
}
