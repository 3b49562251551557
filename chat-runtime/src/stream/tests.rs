//! Property tests of the TLS plumbing in `Stream`: a rustls client talks
//! to `Stream::tls` over an in-memory socket that takes, at each write,
//! what a generated script says, while the test drives the stream the way
//! the reader (`tls_input`) and the write path (`Task::write_now`, the
//! `writer` task) do, and checks the invariants after every step.

// Test code: a failed unwrap is a failed test.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::cell::Cell;
use std::fs::File;
use std::io;
use std::io::ErrorKind::WouldBlock;
use std::net::{SocketAddr, TcpListener};
use std::os::fd::{AsFd, BorrowedFd};
use std::pin::Pin;
use std::sync::{Arc, LazyLock, Mutex};
use std::task::{Context, Poll, Waker};
use std::time::Duration;

use proptest::collection::vec;
use proptest::prelude::*;
use rustls::pki_types::{PrivateKeyDer, ServerName};
use rustls::version::{TLS12, TLS13};
use rustls::{ClientConfig, ClientConnection, RootCertStore, ServerConfig};

use super::*;

/// Polls after which a future that is not done is stuck: the socket always
/// takes a byte by the second poll of a write.
const POLLS: usize = 1_000_000;

/// Most ciphertext `Session::out` may hold: one write's record, plus a
/// key update or close_notify queued beside it.
const MOST_OUT: usize = TLS_WRITE + 1024;

/// The server's end of an in-memory connection: what the client reads is
/// `to_client`; how much each write takes is the next of `takes`, cycled.
#[derive(Debug)]
struct Socket {
    /// Any fd, for `Runtime::Stream: AsFd`: only the hub uses it (shutdown).
    fd: File,
    pipe: Mutex<Pipe>,
}

#[derive(Debug)]
struct Pipe {
    to_client: Vec<u8>,
    takes: Vec<usize>,
    next: usize,
}

impl Socket {
    fn new(takes: Vec<usize>) -> Socket {
        assert!(!takes.is_empty());
        Socket {
            fd: File::open("/dev/null").unwrap(),
            pipe: Mutex::new(Pipe {
                to_client: Vec::new(),
                takes,
                next: 0,
            }),
        }
    }

    /// Takes what the script says of `buf`, but at least `least` bytes.
    fn take(&self, buf: &[u8], least: usize) -> usize {
        let mut pipe = crate::lock(&self.pipe);
        let take = pipe.takes[pipe.next % pipe.takes.len()];
        pipe.next += 1;
        let len = take.max(least).min(buf.len());
        pipe.to_client.extend_from_slice(&buf[..len]);
        len
    }
}

impl AsFd for Socket {
    fn as_fd(&self) -> BorrowedFd<'_> {
        self.fd.as_fd()
    }
}

/// A runtime whose sockets are [`Socket`]s; only writes are used here.
struct Memory;

fn unused() -> io::Error {
    io::Error::other("not in these tests")
}

impl Runtime for Memory {
    type Listener = ();
    type Stream = Socket;

    fn block_on<F: Future>(_: F) -> io::Result<F::Output> {
        Err(unused())
    }
    fn spawn<F: Future<Output = ()> + Send + 'static>(_: F) -> io::Result<()> {
        Err(unused())
    }
    fn listener(_: TcpListener) -> io::Result<()> {
        Err(unused())
    }
    async fn accept(_: &()) -> io::Result<(Socket, SocketAddr)> {
        Err(unused())
    }
    async fn read(_: &Socket, _: &mut [u8]) -> io::Result<usize> {
        Err(unused())
    }
    /// A full socket waits (one `Pending`), then has drained: the next
    /// poll takes at least a byte, as a socket does once it is writable.
    async fn write(socket: &Socket, buf: &[u8]) -> io::Result<usize> {
        let mut waited = false;
        std::future::poll_fn(|_| {
            let len = socket.take(buf, usize::from(waited));
            if len == 0 && !buf.is_empty() && !waited {
                waited = true;
                return Poll::Pending;
            }
            Poll::Ready(Ok(len))
        })
        .await
    }
    fn try_write(socket: &Socket, buf: &[u8]) -> io::Result<usize> {
        match socket.take(buf, 0) {
            0 if !buf.is_empty() => Err(WouldBlock.into()),
            len => Ok(len),
        }
    }
    async fn sleep(_: Duration) {}
}

/// The server configuration and the clients' (TLS 1.3 and TLS 1.2), for a
/// certificate made once per test run.
struct Configs {
    server: Arc<ServerConfig>,
    tls13: Arc<ClientConfig>,
    tls12: Arc<ClientConfig>,
}

static CONFIGS: LazyLock<Configs> = LazyLock::new(|| {
    let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    let made = rcgen::generate_simple_self_signed(vec!["localhost".to_string()]).unwrap();
    let cert = made.cert.der().clone();
    let key = PrivateKeyDer::Pkcs8(made.signing_key.serialize_der().into());
    let server = ServerConfig::builder_with_provider(provider.clone())
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_no_client_auth()
        .with_single_cert(vec![cert.clone()], key)
        .unwrap();
    let mut roots = RootCertStore::empty();
    roots.add(cert).unwrap();
    let client = |version| {
        let config = ClientConfig::builder_with_provider(provider.clone())
            .with_protocol_versions(&[version])
            .unwrap()
            .with_root_certificates(roots.clone())
            .with_no_client_auth();
        Arc::new(config)
    };
    Configs {
        server: Arc::new(server),
        tls13: client(&TLS13),
        tls12: client(&TLS12),
    }
});

fn server_session() -> ServerConnection {
    ServerConnection::new(CONFIGS.server.clone()).unwrap()
}

/// What each side sends, byte `at` of it: a hash of the position, so
/// bytes out of place, lost or repeated do not match.
fn content(seed: u64, at: usize) -> u8 {
    let mut x = (at as u64) ^ seed;
    x = (x ^ (x >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    x = (x ^ (x >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    (x ^ (x >> 31)) as u8
}

const SERVER_SEED: u64 = 0x5e5e;
const CLIENT_SEED: u64 = 0xc1c1;

/// What the side with `seed` sends from `start` on, `len` bytes.
fn content_at(seed: u64, start: usize, len: usize) -> Vec<u8> {
    (start..start + len).map(|at| content(seed, at)).collect()
}

/// Whether `bytes` are what the side with `seed` sends from `start` on.
fn is_content(seed: u64, start: usize, bytes: &[u8]) -> bool {
    bytes
        .iter()
        .enumerate()
        .all(|(i, &byte)| byte == content(seed, start + i))
}

/// Polls `future` with a noop waker until it is done.
fn poll_to_end<F: Future>(future: F) -> F::Output {
    let mut cx = Context::from_waker(Waker::noop());
    let mut future = std::pin::pin!(future);
    for _ in 0..POLLS {
        if let Poll::Ready(output) = future.as_mut().poll(&mut cx) {
            return output;
        }
    }
    panic!("no progress in {POLLS} polls");
}

/// What the write path reports as it goes, for the checks between steps.
#[derive(Debug, Default)]
struct Written {
    /// Plaintext the stream's writes reported taken, in order.
    taken: Cell<usize>,
    /// Most plaintext a write that has not returned yet may have taken.
    in_flight: Cell<usize>,
    /// `close_notify` was called.
    close_sent: Cell<bool>,
}

/// The writer task, as in writer.rs: writes the chunks of `batch` with
/// `Stream::write`, flushes, and with `close` ends the session
/// (`Next::Finish`).
async fn writer_task(
    stream: &Stream<Socket>,
    written: &Written,
    batch: Vec<Vec<u8>>,
    close: bool,
) -> io::Result<()> {
    for chunk in &batch {
        let mut pos = 0;
        while pos < chunk.len() {
            let rest = &chunk[pos..];
            written.in_flight.set(rest.len().min(TLS_WRITE));
            let len = stream.write::<Memory>(rest).await?;
            assert!(
                0 < len && len <= rest.len().min(TLS_WRITE),
                "write took {len} of {}",
                rest.len()
            );
            written.in_flight.set(0);
            written.taken.set(written.taken.get() + len);
            pos += len;
        }
    }
    stream.flush::<Memory>().await?;
    if close {
        stream.close_notify();
        written.close_sent.set(true);
        stream.flush::<Memory>().await?;
    }
    Ok(())
}

type Writer<'a> = Pin<Box<dyn Future<Output = io::Result<()>> + 'a>>;

/// One step of a generated run.
#[derive(Debug, Clone)]
enum Op {
    /// The client writes this much plaintext (records of up to 16 KiB).
    ClientSends(usize),
    /// The client updates its keys and asks the server to (TLS 1.3).
    ClientUpdatesKeys,
    /// The client sends close_notify.
    ClientCloses,
    /// The reader reads at most this much of the client's ciphertext and
    /// passes it to `decrypt`.
    ServerReads(usize),
    /// The core has this much more output for the client, one chunk.
    ServerWrites(usize),
    /// The writer task, if one runs, is polled this often; `None`: until
    /// it is done.
    PollWriter(Option<u8>),
    /// The core ends the connection: the write path sends close_notify
    /// after the output.
    ServerCloses,
}

/// A connection: the client, and the server's side as the reader and the
/// write path drive its stream.
struct Run<'a> {
    stream: &'a Stream<Socket>,
    written: &'a Written,
    client: ClientConnection,
    /// Client ciphertext the reader has not read yet.
    to_server: Vec<u8>,
    /// Client ciphertext the reader has read.
    delivered: usize,
    /// Where the client's close_notify ends in its ciphertext.
    client_close_at: Option<usize>,
    /// Plaintext the client's session took.
    client_sent: usize,
    key_updates: usize,
    /// Plaintext `decrypt` gave.
    server_received: usize,
    /// The reader's flag (`tls_input`).
    handshaking: bool,
    /// The reader saw the client's close_notify and stopped.
    reader_done: bool,
    /// Output the core made, and the lengths of its chunks that the write
    /// path was not given yet.
    produced: usize,
    queued: Vec<usize>,
    /// The writer task, while the socket is behind.
    writer: Option<Writer<'a>>,
    /// The reader left ciphertext in the session for the running writer.
    left_for_writer: bool,
    /// The core ended the connection: close_notify goes after its output.
    closing: bool,
    close_flushed: bool,
    /// Plaintext the client decrypted.
    client_received: usize,
    client_closed: bool,
}

impl<'a> Run<'a> {
    fn new(stream: &'a Stream<Socket>, written: &'a Written, tls12: bool) -> Run<'a> {
        let config = if tls12 {
            &CONFIGS.tls12
        } else {
            &CONFIGS.tls13
        };
        let name = ServerName::try_from("localhost").unwrap();
        Run {
            stream,
            written,
            client: ClientConnection::new(config.clone(), name).unwrap(),
            to_server: Vec::new(),
            delivered: 0,
            client_close_at: None,
            client_sent: 0,
            key_updates: 0,
            server_received: 0,
            handshaking: true,
            reader_done: false,
            produced: 0,
            queued: Vec::new(),
            writer: None,
            left_for_writer: false,
            closing: false,
            close_flushed: false,
            client_received: 0,
            client_closed: false,
        }
    }

    fn step(&mut self, op: &Op) {
        match *op {
            Op::ClientSends(len) => self.client_sends(len),
            Op::ClientUpdatesKeys => {
                // rustls refuses a 33rd request with no data in between.
                if self.client_close_at.is_none()
                    && self.key_updates < 16
                    && self.client.refresh_traffic_keys().is_ok()
                {
                    self.key_updates += 1;
                    self.client_writes_tls();
                }
            }
            Op::ClientCloses => {
                if self.client_close_at.is_none() && !self.client.is_handshaking() {
                    self.client.send_close_notify();
                    self.client_writes_tls();
                    self.client_close_at = Some(self.delivered + self.to_server.len());
                }
            }
            Op::ServerReads(len) => self.server_reads(len),
            Op::ServerWrites(len) => {
                // Nothing comes after the end.
                if !self.closing {
                    self.produced += len;
                    self.queued.push(len);
                    self.write_now();
                }
            }
            Op::PollWriter(polls) => self.poll_writer(polls.map_or(POLLS, usize::from)),
            Op::ServerCloses => {
                if !self.closing {
                    self.closing = true;
                    self.write_now();
                }
            }
        }
    }

    fn client_sends(&mut self, len: usize) {
        if self.client_close_at.is_some() {
            return;
        }
        let plaintext = content_at(CLIENT_SEED, self.client_sent, len);
        // Before the handshake ends rustls buffers a limited amount.
        self.client_sent += self.client.writer().write(&plaintext).unwrap();
        self.client_writes_tls();
    }

    fn client_writes_tls(&mut self) {
        while self.client.wants_write() {
            self.client.write_tls(&mut self.to_server).unwrap();
        }
    }

    /// The client reads whatever reached it.
    fn client_reads(&mut self) {
        let ciphertext = std::mem::take(&mut crate::lock(&self.stream.socket.pipe).to_client);
        let mut rest = &ciphertext[..];
        let mut buf = vec![0; 2 * TLS_WRITE];
        while !rest.is_empty() {
            let len = self.client.read_tls(&mut rest).unwrap();
            assert!(len > 0, "{} bytes after close_notify", rest.len());
            let state = self
                .client
                .process_new_packets()
                .expect("the client takes what the server sent");
            if state.peer_has_closed() && !self.client_closed {
                assert!(self.written.close_sent.get(), "a close_notify not sent");
                self.client_closed = true;
            }
            loop {
                match self.client.reader().read(&mut buf) {
                    Ok(0) => {
                        assert!(self.client_closed, "EOF before close_notify");
                        break;
                    }
                    Ok(len) => {
                        assert!(
                            is_content(SERVER_SEED, self.client_received, &buf[..len]),
                            "the client decrypted {len} bytes at {} that the server did not write there",
                            self.client_received
                        );
                        self.client_received += len;
                    }
                    Err(error) if error.kind() == WouldBlock => break,
                    Err(error) => panic!("client: {error}"),
                }
            }
        }
        let reported = self.written.taken.get() + self.written.in_flight.get();
        assert!(
            self.client_received <= reported,
            "the client decrypted {} bytes, the writes took at most {reported}",
            self.client_received
        );
        if self.client_closed {
            assert_eq!(
                self.client_received,
                self.written.taken.get(),
                "all that was written comes before close_notify"
            );
        }
        // Its handshake messages, and once the handshake is over the
        // plaintext it buffered.
        self.client_writes_tls();
    }

    /// The reader: one read of the socket, passed to `decrypt`, then what
    /// `tls_input` does with the result.
    fn server_reads(&mut self, len: usize) {
        if self.reader_done || self.to_server.is_empty() {
            return;
        }
        let len = len.min(self.to_server.len());
        let ciphertext: Vec<u8> = self.to_server.drain(..len).collect();
        self.delivered += len;
        let mut plaintext = Vec::new();
        let decrypted = self
            .stream
            .decrypt(&ciphertext, &mut plaintext)
            .expect("a TLS stream")
            .expect("the server takes what the client sent");
        assert!(
            is_content(CLIENT_SEED, self.server_received, &plaintext),
            "decrypt gave {} bytes at {} that the client did not send there",
            plaintext.len(),
            self.server_received
        );
        self.server_received += plaintext.len();
        assert!(self.server_received <= self.client_sent);
        let close_read = self.client_close_at.is_some_and(|at| self.delivered >= at);
        assert_eq!(
            decrypted.closed, close_read,
            "closed once the client's close_notify is read, not before"
        );
        assert!(
            self.handshaking || !decrypted.handshaking,
            "a handshake again"
        );
        if self.handshaking {
            if decrypted.to_send {
                poll_to_end(self.stream.flush::<Memory>()).unwrap();
            }
            if !decrypted.handshaking {
                // `Hub::handshaken`: the output waiting is written.
                self.handshaking = false;
                self.write_now();
            }
        } else if decrypted.to_send {
            // `send_session`: the hub writes what the session holds.
            self.left_for_writer = self.writer.is_some();
            self.write_now();
        }
        if decrypted.closed {
            self.reader_done = true;
            assert_eq!(self.server_received, self.client_sent);
        }
    }

    /// The hub's `write_now`: non-blocking writes until the output is all
    /// written or the socket takes less than offered; then a writer task.
    fn write_now(&mut self) {
        if self.handshaking || self.writer.is_some() || self.written.close_sent.get() {
            return;
        }
        loop {
            if !self.stream.try_flush::<Memory>().unwrap() {
                return self.start_writer(Vec::new(), false);
            }
            self.flushed();
            let batch = if !self.queued.is_empty() {
                self.take_batch()
            } else if self.closing {
                self.stream.close_notify();
                self.written.close_sent.set(true);
                if self.stream.try_flush::<Memory>().unwrap() {
                    self.close_flushed();
                } else {
                    self.start_writer(Vec::new(), false);
                }
                return;
            } else {
                return;
            };
            // Each chunk offered on its own (`Unwritten` may join short
            // ones; the stream must not care).
            for (i, chunk) in batch.iter().enumerate() {
                match self.stream.try_write::<Memory>(chunk) {
                    Ok(len) => {
                        assert!(len > 0, "try_write took 0 of {} bytes", chunk.len());
                        assert!(len <= chunk.len().min(TLS_WRITE));
                        self.written.taken.set(self.written.taken.get() + len);
                        if len < chunk.len() {
                            let rest = [&[chunk[len..].to_vec()][..], &batch[i + 1..]].concat();
                            return self.start_writer(rest, false);
                        }
                    }
                    Err(error) if error.kind() == WouldBlock => {
                        return self.start_writer(batch[i..].to_vec(), false);
                    }
                    Err(error) => panic!("try_write: {error}"),
                }
            }
        }
    }

    /// The output not given yet, for the write path (`Task::take`).
    fn take_batch(&mut self) -> Vec<Vec<u8>> {
        let mut at = self.produced - self.queued.iter().sum::<usize>();
        let batch = self.queued.drain(..).map(|len| {
            at += len;
            content_at(SERVER_SEED, at - len, len)
        });
        batch.collect()
    }

    fn start_writer(&mut self, batch: Vec<Vec<u8>>, close: bool) {
        assert!(self.writer.is_none());
        self.writer = Some(Box::pin(writer_task(
            self.stream,
            self.written,
            batch,
            close,
        )));
    }

    /// Polls the writer task up to `polls` times; when it is done, does
    /// what the writer does next (`Task::take`).
    fn poll_writer(&mut self, polls: usize) {
        let mut cx = Context::from_waker(Waker::noop());
        for _ in 0..polls {
            let Some(writer) = &mut self.writer else {
                return;
            };
            let Poll::Ready(result) = writer.as_mut().poll(&mut cx) else {
                self.check_session();
                continue;
            };
            self.writer = None;
            self.left_for_writer = false;
            result.expect("the writer's writes");
            self.flushed();
            if self.written.close_sent.get() {
                self.close_flushed();
            } else if !self.queued.is_empty() {
                let batch = self.take_batch();
                self.start_writer(batch, false);
            } else if self.closing {
                self.start_writer(Vec::new(), true);
            }
        }
        assert!(
            polls < POLLS || self.writer.is_none(),
            "the writer is stuck"
        );
    }

    /// The session holds no ciphertext: the client has all that was written.
    fn flushed(&mut self) {
        self.client_reads();
        assert_eq!(
            self.client_received,
            self.written.taken.get(),
            "after a flush the client has all the writes took"
        );
    }

    /// close_notify is written: the client sees a clean end after all the
    /// output.
    fn close_flushed(&mut self) {
        self.close_flushed = true;
        self.client_reads();
        assert!(self.client_closed, "close_notify flushed but not received");
        assert_eq!(self.client_received, self.produced);
        let mut buf = [0; 16];
        assert_eq!(self.client.reader().read(&mut buf).unwrap(), 0);
    }

    /// `Session::out` holds at most one write's ciphertext, and nothing
    /// once it is written; rustls holds none but what the reader left for
    /// the writer (ciphertext there would escape the bound on `out`).
    fn check_session(&self) {
        let session = crate::lock(self.stream.tls.as_ref().unwrap());
        assert!(
            !session.conn.wants_write() || self.left_for_writer,
            "ciphertext waits in rustls, not in Session::out"
        );
        assert!(
            session.out.len() <= MOST_OUT,
            "Session::out holds {} bytes",
            session.out.len()
        );
        assert!(session.pos <= session.out.len());
        if session.pos == session.out.len() {
            assert_eq!(session.out.capacity(), 0, "written ciphertext is freed");
        }
    }

    /// The invariants that hold between any two steps.
    fn check(&mut self) {
        self.client_reads();
        self.check_session();
        if !self.handshaking && !self.client.is_handshaking() && self.to_server.is_empty() {
            assert_eq!(
                self.server_received, self.client_sent,
                "all the client's ciphertext is read: decrypt gave all it sent"
            );
        }
    }

    /// Delivers what the client sent (the reader reading `reads` at a
    /// time), lets the writer finish, and ends the connection.
    fn finish(&mut self, reads: &[usize]) {
        for round in 0.. {
            assert!(round < POLLS, "the connection does not settle");
            if !self.reader_done && !self.to_server.is_empty() {
                self.server_reads(reads[round % reads.len()]);
            } else if self.writer.is_some() {
                self.poll_writer(POLLS);
            } else {
                break;
            }
            self.check();
        }
        assert!(!self.handshaking && !self.client.is_handshaking());
        assert_eq!(self.server_received, self.client_sent);
        self.step(&Op::ServerCloses);
        self.check();
        self.poll_writer(POLLS);
        self.check();
        assert!(self.close_flushed, "close_notify flushed");
    }
}

fn size() -> impl Strategy<Value = usize> {
    prop_oneof![
        4 => 1usize..64,
        3 => 64usize..4096,
        1 => (TLS_WRITE - 64)..(2 * TLS_WRITE + 64),
    ]
}

/// How much one read takes of the client's ciphertext: records split
/// across reads, or several in one.
fn read_size() -> impl Strategy<Value = usize> {
    prop_oneof![
        2 => 1usize..8,
        3 => 8usize..1500,
        2 => 1500usize..40_000,
        2 => Just(usize::MAX),
    ]
}

/// How much a write to the socket takes: nothing (full) to all.
fn socket_take() -> impl Strategy<Value = usize> {
    prop_oneof![
        3 => Just(0usize),
        3 => 1usize..64,
        3 => 64usize..20_000,
        2 => Just(usize::MAX),
    ]
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        6 => size().prop_map(Op::ClientSends),
        2 => Just(Op::ClientUpdatesKeys),
        1 => Just(Op::ClientCloses),
        12 => read_size().prop_map(Op::ServerReads),
        8 => size().prop_map(Op::ServerWrites),
        6 => (1u8..8).prop_map(|polls| Op::PollWriter(Some(polls))),
        2 => Just(Op::PollWriter(None)),
        1 => Just(Op::ServerCloses),
    ]
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    /// Handshake, data both ways, key updates and close_notify through
    /// `Stream::tls`, with reads split anywhere and a socket that takes
    /// anything from nothing to all; every invariant after every step.
    #[test]
    fn tls_stream_delivers_in_order_whatever_the_socket_takes(
        tls12 in any::<bool>(),
        takes in vec(socket_take(), 1..16),
        ops in vec(op(), 0..48),
        reads in vec(read_size(), 1..4),
    ) {
        let stream = Stream::tls(Socket::new(takes), server_session());
        let written = Written::default();
        let mut run = Run::new(&stream, &written, tls12);
        run.check();
        for op in &ops {
            run.step(op);
            run.check();
        }
        run.finish(&reads);
    }

    /// What is not TLS (here: not a TLS record type first, as a plain
    /// chat client sends) fails the connection, however it is split.
    #[test]
    fn decrypt_rejects_what_is_not_tls(
        first in any::<u8>().prop_filter("a TLS record type", |b| !(20..=24).contains(b)),
        rest in vec(any::<u8>(), 4..600),
        reads in vec(1usize..64, 1..8),
    ) {
        let garbage = [&[first][..], &rest].concat();
        prop_assert!(feed(&garbage, &reads).is_err());
    }

    /// A well-formed handshake record whose message is not a ClientHello
    /// fails the connection too.
    #[test]
    fn decrypt_rejects_a_handshake_that_is_no_client_hello(
        kind in any::<u8>().prop_filter("ClientHello", |&kind| kind != 1),
        body in vec(any::<u8>(), 0..300),
        reads in vec(1usize..64, 1..8),
    ) {
        let len = body.len().to_be_bytes();
        let message = [&[kind][..], &len[len.len() - 3..], &body].concat();
        let record_len = u16::try_from(message.len()).unwrap().to_be_bytes();
        let record = [&[22, 3, 1][..], &record_len, &message].concat();
        prop_assert!(feed(&record, &reads).is_err());
    }

    /// Any bytes at all before the handshake: an error or more to wait
    /// for, never a panic.
    #[test]
    fn decrypt_does_not_panic_on_any_bytes(
        bytes in vec(any::<u8>(), 0..2000),
        reads in vec(1usize..600, 1..8),
    ) {
        let _ = feed(&bytes, &reads);
    }
}

/// Feeds `bytes` to a new session's `decrypt`, `reads` at a time, until
/// it fails, as the reader does; the first error, or what the last read
/// gave.
fn feed(bytes: &[u8], reads: &[usize]) -> io::Result<Decrypted> {
    let stream = Stream::tls(Socket::new(vec![usize::MAX]), server_session());
    let mut rest = bytes;
    let mut plaintext = Vec::new();
    let mut last = None;
    for &len in reads.iter().cycle() {
        if rest.is_empty() {
            break;
        }
        let (read, after) = rest.split_at(len.min(rest.len()));
        rest = after;
        let decrypted = stream.decrypt(read, &mut plaintext).unwrap()?;
        assert!(plaintext.is_empty(), "plaintext before a handshake");
        last = Some(decrypted);
    }
    Ok(last.unwrap_or(Decrypted {
        handshaking: true,
        to_send: false,
        closed: false,
    }))
}

/// A plain connection carries no TLS session: 10,000 idle clients would
/// otherwise hold a kilobyte each for nothing (docs/performance.md).
#[test]
fn a_plain_stream_is_its_socket_and_a_pointer() {
    let size = std::mem::size_of::<Stream<std::net::TcpStream>>();
    assert!(
        size <= std::mem::size_of::<(std::net::TcpStream, Box<u8>)>(),
        "Stream<TcpStream> is {size} bytes"
    );
}
