//! Client connections, plain TCP or TLS, behind one type: the scenarios
//! read through [`ReadHalf`] and write through [`WriteHalf`] whatever the
//! transport.
//!
//! chat-bench runs on tokio: each client's read half has a task, and its
//! write half belongs to a sender task, or to the pacer's OS thread, which
//! writes without blocking and waits on the runtime only when the socket is
//! full. TLS fits that model as one rustls state machine per connection,
//! shared by the two halves under a mutex that is only held for
//! non-blocking work, never across an await. The read half receives
//! ciphertext with `recvmsg`, keeping the kernel's receive timestamp, and
//! decrypts it; the write half encrypts and writes records with
//! `try_write`, waiting for writability as a plain write does. The
//! handshake is completed when connecting, so it is never part of a run's
//! measured time.

use std::io::{self, Read, Write};
use std::net::{IpAddr, SocketAddr};
use std::os::fd::AsRawFd as _;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::{Duration, Instant, SystemTime};

use nix::sys::socket::{ControlMessageOwned, MsgFlags, recvmsg, setsockopt, sockopt};
use rustls::ClientConnection;
use tokio::io::Interest;
use tokio::net::tcp::{OwnedReadHalf, OwnedWriteHalf};
use tokio::net::{TcpSocket, TcpStream};
use tokio::time::timeout;

use crate::tls::Tls;

/// Ciphertext received per `recvmsg` at most: a TLS record's payload is at
/// most 16 KiB.
const CIPHER_BUF: usize = 16 * 1024;
/// Plaintext decrypted ahead of the reader at most: rustls refuses more
/// ciphertext once it holds more than 16 KiB of plaintext.
const PLAINTEXT_AHEAD: usize = 16 * 1024;

/// Where a client connects from, and how its socket is set up first.
#[derive(Debug, Clone, Copy, Default)]
pub struct Origin {
    /// Source address to bind to (on Linux any 127.x.y.z works over
    /// loopback), so that per-address limits of the server see several
    /// addresses; `None`: the system picks.
    pub ip: Option<IpAddr>,
    /// `SO_RCVBUF`, which must be set before connecting (the window scale
    /// is agreed in the handshake); `None`: the system's autotuning.
    pub rcvbuf: Option<u32>,
}

/// How clients reach the servers.
#[derive(Debug, Clone)]
pub struct Dialer {
    /// The servers, in the order given; never empty.
    addrs: Arc<[SocketAddr]>,
    /// Bound on a connection attempt, TLS handshake included.
    timeout: Duration,
    tls: Option<Tls>,
}

impl Dialer {
    /// Connects to `addrs` (at least one), with TLS if `tls` is given.
    pub fn new(addrs: Vec<SocketAddr>, timeout: Duration, tls: Option<Tls>) -> Self {
        debug_assert!(!addrs.is_empty());
        Self {
            addrs: addrs.into(),
            timeout,
            tls,
        }
    }

    /// The server of client `client`: the servers in turn, so that any run
    /// of consecutive clients (the senders, the readers) is spread evenly
    /// over them, to one client apart.
    pub fn server_of(&self, client: usize) -> SocketAddr {
        self.addrs[client % self.addrs.len()]
    }

    /// Connects client `client` from `origin` to its server (see
    /// [`Self::server_of`]) and, with TLS, completes the handshake.
    pub async fn connect(&self, client: usize, origin: Origin) -> io::Result<Conn> {
        let open = async {
            let tcp = connect_from(self.server_of(client), origin).await?;
            let _ = tcp.set_nodelay(true);
            // Without it latency is only measured to the read.
            let _ = setsockopt(&tcp, sockopt::ReceiveTimestampns, &true);
            let tls = match &self.tls {
                Some(tls) => Some(handshake(&tcp, tls.client()?).await?),
                None => None,
            };
            Ok(Conn { tcp, tls })
        };
        match timeout(self.timeout, open).await {
            Ok(r) => r,
            Err(_) => Err(io::Error::new(io::ErrorKind::TimedOut, "connect timed out")),
        }
    }
}

/// Connects to `addr` from `origin`.
async fn connect_from(addr: SocketAddr, origin: Origin) -> io::Result<TcpStream> {
    let socket = if addr.is_ipv4() {
        TcpSocket::new_v4()?
    } else {
        TcpSocket::new_v6()?
    };
    if let Some(size) = origin.rcvbuf {
        socket.set_recv_buffer_size(size)?;
    }
    if let Some(ip) = origin.ip {
        socket.bind(SocketAddr::new(ip, 0))?;
    }
    socket.connect(addr).await
}

/// Runs the TLS handshake on `tcp` to its end.
async fn handshake(tcp: &TcpStream, mut conn: ClientConnection) -> io::Result<ClientConnection> {
    loop {
        // Our flight first: the last one (Finished) must be out before the
        // connection counts as open.
        while conn.wants_write() {
            match conn.write_tls(&mut TryIo(tcp)) {
                Ok(_) => {}
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => tcp.writable().await?,
                Err(e) => return Err(e),
            }
        }
        if !conn.is_handshaking() {
            return Ok(conn);
        }
        match conn.read_tls(&mut TryIo(tcp)) {
            Ok(0) => {
                return Err(io::Error::new(
                    io::ErrorKind::UnexpectedEof,
                    "the server closed the connection during the TLS handshake",
                ));
            }
            Ok(_) => {
                if let Err(e) = conn.process_new_packets() {
                    // Best effort: the alert tells the server why.
                    let _ = conn.write_tls(&mut TryIo(tcp));
                    return Err(tls_error(e));
                }
            }
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => tcp.readable().await?,
            Err(e) => return Err(e),
        }
    }
}

fn tls_error(e: rustls::Error) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, format!("TLS: {e}"))
}

fn lock(conn: &Mutex<ClientConnection>) -> MutexGuard<'_, ClientConnection> {
    conn.lock().unwrap_or_else(PoisonError::into_inner)
}

/// `Read` and `Write` on a tokio socket that never block: `WouldBlock`
/// instead, after which tokio's readiness is cleared, so that the next
/// `readable`/`writable` waits for real.
struct TryIo<'a>(&'a TcpStream);

impl Read for TryIo<'_> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        self.0.try_read(buf)
    }
}

impl Write for TryIo<'_> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.0.try_write(buf)
    }

    fn write_vectored(&mut self, bufs: &[io::IoSlice<'_>]) -> io::Result<usize> {
        self.0.try_write_vectored(bufs)
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

/// An open connection, plain or with its TLS handshake done.
#[derive(Debug)]
pub struct Conn {
    tcp: TcpStream,
    tls: Option<ClientConnection>,
}

impl Conn {
    /// The server it is connected to.
    #[cfg(test)]
    pub fn peer_addr(&self) -> io::Result<SocketAddr> {
        self.tcp.peer_addr()
    }

    /// Its read and write halves, usable from different tasks or threads.
    pub fn into_split(self) -> (ReadHalf, WriteHalf) {
        let (rd, wr) = self.tcp.into_split();
        let tls = self.tls.map(|c| Arc::new(Mutex::new(c)));
        let tls_in = tls.clone().map(|conn| TlsIn {
            conn,
            // Zeroed by the allocator on demand: an idle client costs a page.
            cipher: vec![0; CIPHER_BUF],
            start: 0,
            end: 0,
            arrived: None,
        });
        let read = ReadHalf {
            tcp: rd,
            tls: tls_in,
        };
        (read, WriteHalf { tcp: wr, tls })
    }
}

/// The reading side of a [`Conn`].
#[derive(Debug)]
pub struct ReadHalf {
    tcp: OwnedReadHalf,
    tls: Option<TlsIn>,
}

/// Ciphertext received and not yet given to rustls, and when it arrived.
#[derive(Debug)]
struct TlsIn {
    conn: Arc<Mutex<ClientConnection>>,
    cipher: Vec<u8>,
    start: usize,
    end: usize,
    /// Kernel receive timestamp of the last `recvmsg`.
    arrived: Option<Instant>,
}

impl ReadHalf {
    /// Reads once into `buf`, like `read` (`Ok(0)`: the connection ended).
    /// Also returns when the bytes read arrived in the socket, by the
    /// kernel's receive timestamp (`SO_TIMESTAMPNS`) of the newest bytes
    /// received, if it gave one. With TLS, that is the receive time of the
    /// ciphertext that completed the records they were in: what was read
    /// before could not be decrypted yet, so it is still "when the bytes
    /// arrived", just not to the byte. With TLS up to 16 KiB of ciphertext
    /// leaves the socket per receive, however little `buf` takes: a paced
    /// reader holds that much beyond its pace.
    pub async fn read_stamped(&mut self, buf: &mut [u8]) -> io::Result<(usize, Option<Instant>)> {
        let Some(tls) = &mut self.tls else {
            return read_stamped(&self.tcp, buf).await;
        };
        loop {
            if let Some(n) = tls.decrypt(buf, self.tcp.as_ref())? {
                return Ok((n, tls.arrived));
            }
            // Only once the previous ciphertext is all decrypted and read,
            // so that plaintext is always stamped with its own receive.
            let (n, arrived) = read_stamped(&self.tcp, &mut tls.cipher).await?;
            if n == 0 {
                // EOF without close_notify: an end all the same here.
                return Ok((0, arrived));
            }
            (tls.start, tls.end, tls.arrived) = (0, n, arrived);
        }
    }

    /// Reads once into `buf`, like `read`.
    pub async fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        Ok(self.read_stamped(buf).await?.0)
    }
}

impl TlsIn {
    /// Decrypts the ciphertext received, up to what `buf` takes, and reads
    /// plaintext into `buf`: `Some(0)` at close_notify, `None` if more
    /// ciphertext is needed first.
    fn decrypt(&mut self, buf: &mut [u8], tcp: &TcpStream) -> io::Result<Option<usize>> {
        let mut conn = lock(&self.conn);
        let want = buf.len().min(PLAINTEXT_AHEAD);
        let mut result = Ok(());
        while self.start < self.end {
            // rustls takes a few KiB per call.
            let fed = conn.read_tls(&mut &self.cipher[self.start..self.end])?;
            self.start += fed;
            match conn.process_new_packets() {
                Ok(state) if fed > 0 && state.plaintext_bytes_to_read() < want => {}
                Ok(_) => break,
                Err(e) => {
                    result = Err(tls_error(e));
                    break;
                }
            }
        }
        // Anything rustls answers (an alert, a key update) goes out now if
        // the socket takes it, else with the next write.
        while conn.wants_write() {
            if conn.write_tls(&mut TryIo(tcp)).is_err() {
                break;
            }
        }
        result?;
        match conn.reader().read(buf) {
            Ok(n) => Ok(Some(n)),
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => Ok(None),
            Err(e) => Err(e),
        }
    }
}

/// Reads once into `buf` from the socket; also returns when the kernel
/// received the newest byte read (its `SO_TIMESTAMPNS` receive timestamp),
/// if it gave one.
async fn read_stamped(rd: &OwnedReadHalf, buf: &mut [u8]) -> io::Result<(usize, Option<Instant>)> {
    let stream: &TcpStream = rd.as_ref();
    loop {
        stream.readable().await?;
        match stream.try_io(Interest::READABLE, || recv_stamped(stream, buf)) {
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => {}
            result => return result,
        }
    }
}

fn recv_stamped(stream: &TcpStream, buf: &mut [u8]) -> io::Result<(usize, Option<Instant>)> {
    let mut control = nix::cmsg_space!(nix::sys::time::TimeSpec);
    let mut iov = [io::IoSliceMut::new(buf)];
    let msg = recvmsg::<()>(
        stream.as_raw_fd(),
        &mut iov,
        Some(&mut control),
        MsgFlags::empty(),
    )?;
    // The bytes are read whatever the control data says.
    let received = msg.cmsgs().ok().and_then(|mut cmsgs| {
        cmsgs.find_map(|cmsg| match cmsg {
            ControlMessageOwned::ScmTimestampns(ts) => Some(Duration::from(ts)),
            _ => None,
        })
    });
    // The timestamp is on the real-time clock: its age, read within
    // microseconds, so that the clock's adjustments do not matter, dates it
    // on the monotonic clock.
    let now = SystemTime::now()
        .duration_since(SystemTime::UNIX_EPOCH)
        .ok();
    let arrived = received
        .zip(now)
        .and_then(|(at, now)| Instant::now().checked_sub(now.saturating_sub(at)));
    Ok((msg.bytes, arrived))
}

/// The writing side of a [`Conn`].
#[derive(Debug)]
pub struct WriteHalf {
    tcp: OwnedWriteHalf,
    tls: Option<Arc<Mutex<ClientConnection>>>,
}

impl WriteHalf {
    /// Writes as much of `rest` as the socket takes without blocking, and
    /// advances it past what was written. `Ok(true)` once all of it is in
    /// the socket (with TLS: encrypted, and every record written),
    /// `Ok(false)` if the socket is full: wait for [`Self::writable`], then
    /// call again with what is left (possibly nothing but records).
    pub fn try_write_all(&self, rest: &mut &[u8]) -> io::Result<bool> {
        let Some(tls) = &self.tls else {
            while !rest.is_empty() {
                match self.tcp.try_write(rest) {
                    Ok(0) => return Err(io::ErrorKind::WriteZero.into()),
                    Ok(n) => *rest = &rest[n..],
                    Err(e) if e.kind() == io::ErrorKind::WouldBlock => return Ok(false),
                    Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                    Err(e) => return Err(e),
                }
            }
            return Ok(true);
        };
        let mut conn = lock(tls);
        loop {
            // Records queued earlier first: only what is in the socket
            // counts as written.
            while conn.wants_write() {
                match conn.write_tls(&mut TryIo(self.tcp.as_ref())) {
                    Ok(0) => return Err(io::ErrorKind::WriteZero.into()),
                    Ok(_) => {}
                    Err(e) if e.kind() == io::ErrorKind::WouldBlock => return Ok(false),
                    Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                    Err(e) => return Err(e),
                }
            }
            if rest.is_empty() {
                return Ok(true);
            }
            // Encrypts up to rustls' buffer limit (64 KiB), then those
            // records are written.
            match conn.writer().write(rest)? {
                0 => return Err(io::ErrorKind::WriteZero.into()),
                n => *rest = &rest[n..],
            }
        }
    }

    /// Waits until the socket may take more.
    pub async fn writable(&self) -> io::Result<()> {
        self.tcp.writable().await
    }

    /// Writes all of `buf`.
    pub async fn write_all(&self, buf: &[u8]) -> io::Result<()> {
        let mut rest = buf;
        while !self.try_write_all(&mut rest)? {
            self.writable().await?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use std::net::TcpListener;
    use std::thread;

    use rustls::pki_types::{PrivateKeyDer, PrivatePkcs8KeyDer};
    use rustls::{ServerConfig, ServerConnection, StreamOwned};

    use super::*;

    fn pattern(len: usize, seed: usize) -> Vec<u8> {
        (0..len).map(|i| ((i * 7 + seed) % 251) as u8).collect()
    }

    /// A TLS server for `localhost` on a thread: reads `expect` bytes from
    /// the first client to send them (clients that fail the handshake are
    /// let go), then writes `out` and closes with close_notify. Returns its
    /// address, its certificate (PEM) and what it read.
    fn server(out: Vec<u8>, expect: usize) -> (SocketAddr, String, thread::JoinHandle<Vec<u8>>) {
        let cert = rcgen::generate_simple_self_signed(vec!["localhost".to_owned()]).unwrap();
        let key = PrivatePkcs8KeyDer::from(cert.signing_key.serialize_der());
        let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
        let config = ServerConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .unwrap()
            .with_no_client_auth()
            .with_single_cert(vec![cert.cert.der().clone()], PrivateKeyDer::Pkcs8(key))
            .unwrap();
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        let config = Arc::new(config);
        let handle = thread::spawn(move || {
            loop {
                let (tcp, _) = listener.accept().unwrap();
                let conn = ServerConnection::new(config.clone()).unwrap();
                let mut tls = StreamOwned::new(conn, tcp);
                let mut got = vec![0; expect];
                if tls.read_exact(&mut got).is_err() {
                    continue;
                }
                tls.write_all(&out).unwrap();
                tls.conn.send_close_notify();
                tls.flush().unwrap();
                return got;
            }
        });
        (addr, cert.cert.pem(), handle)
    }

    fn dialer(addr: SocketAddr, tls: Tls) -> Dialer {
        Dialer::new(vec![addr], Duration::from_secs(10), Some(tls))
    }

    #[tokio::test]
    async fn tls_carries_both_ways_and_ends_at_close_notify() {
        // More than the sockets hold, so that writes wait for room; read in
        // pieces smaller than a record.
        let (to_server, to_client) = (pattern(4 << 20, 1), pattern(1 << 20, 2));
        let (addr, _, srv) = server(to_client.clone(), to_server.len());
        let tls = Tls::new("localhost", None).unwrap();
        let (mut rd, wr) = dialer(addr, tls)
            .connect(0, Origin::default())
            .await
            .unwrap()
            .into_split();
        let reading = tokio::spawn(async move {
            let mut got = Vec::new();
            let mut buf = [0u8; 1000];
            loop {
                let (n, arrived) = rd.read_stamped(&mut buf).await.unwrap();
                if n == 0 {
                    return got;
                }
                assert!(arrived.is_some_and(|at| at <= Instant::now()));
                got.extend_from_slice(&buf[..n]);
            }
        });
        wr.write_all(&to_server).await.unwrap();
        assert!(reading.await.unwrap() == to_client);
        assert!(srv.join().unwrap() == to_server);
    }

    #[tokio::test]
    async fn tls_ca_trusts_its_certificate_for_its_name_only() {
        let (addr, pem, srv) = server(b"hi\n".to_vec(), 3);
        let path = std::env::temp_dir().join(format!("chat-bench-ca-{}.pem", std::process::id()));
        std::fs::write(&path, pem).unwrap();
        let other = Tls::new("example.com", Some(&path)).unwrap();
        let right = Tls::new("localhost", Some(&path)).unwrap();
        std::fs::remove_file(&path).unwrap();
        let err = dialer(addr, other)
            .connect(0, Origin::default())
            .await
            .unwrap_err();
        assert!(err.to_string().contains("not valid for name"), "{err}");
        let (mut rd, wr) = dialer(addr, right)
            .connect(0, Origin::default())
            .await
            .unwrap()
            .into_split();
        wr.write_all(b"yo\n").await.unwrap();
        let mut buf = [0u8; 16];
        assert_eq!(rd.read(&mut buf).await.unwrap(), 3);
        assert_eq!(&buf[..3], b"hi\n");
        assert_eq!(srv.join().unwrap(), b"yo\n");
    }
}
