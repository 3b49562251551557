//! [`Endpoint`] and [`ClientStream`]: where a client connects and the
//! connection it gets, plain TCP or TLS over TCP.

use std::fmt;
use std::io::{self, ErrorKind, Read, Write};
use std::net::{Shutdown, SocketAddr, TcpStream};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::{Duration, Instant};

use rustls::pki_types::ServerName;
use rustls::{ClientConfig, ClientConnection};

use crate::TIMEOUT;
use crate::tls::SERVER_NAME;

/// Most bytes one read takes from the socket.
pub(crate) const READ_CHUNK: usize = 65536;

/// Where a client connects: an address, plain or TLS (with the
/// configuration, and so the trust, the client uses).
#[derive(Clone)]
pub struct Endpoint {
    addr: SocketAddr,
    tls: Option<Arc<ClientConfig>>,
}

impl Endpoint {
    /// Plain TCP to `addr`.
    pub fn plain(addr: SocketAddr) -> Endpoint {
        Endpoint { addr, tls: None }
    }

    /// TLS to `addr` with `config`, asking for the name `localhost`.
    pub fn tls(addr: SocketAddr, config: Arc<ClientConfig>) -> Endpoint {
        Endpoint {
            addr,
            tls: Some(config),
        }
    }

    /// The socket address.
    pub fn socket_addr(&self) -> SocketAddr {
        self.addr
    }

    /// Whether clients of this endpoint speak TLS.
    pub fn is_tls(&self) -> bool {
        self.tls.is_some()
    }
}

impl fmt::Display for Endpoint {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.is_tls() {
            write!(f, "{} (tls)", self.addr)
        } else {
            write!(f, "{}", self.addr)
        }
    }
}

impl fmt::Debug for Endpoint {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Endpoint({self})")
    }
}

/// How the server ended a TLS session.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TlsEnd {
    /// It sent close_notify: nothing was cut off.
    CloseNotify,
    /// The TCP connection ended without close_notify.
    WithoutCloseNotify,
}

/// What one read of a [`ClientStream`] got.
#[derive(Debug)]
pub(crate) enum Got {
    /// `plaintext` bytes in the buffer (none when a TLS record is not whole
    /// yet), for `socket` bytes taken from the socket.
    Bytes { plaintext: usize, socket: usize },
    /// The server ended the stream.
    End,
}

/// A client's connection: a [`TcpStream`], with a TLS session over it in
/// TLS mode. Handles made by [`ClientStream::try_clone`] share it, so one
/// thread can read while another writes, as with a cloned `TcpStream`:
/// the TLS session is locked only while it encrypts or decrypts, never
/// across a socket call. Socket options (timeouts, linger) are the
/// socket's, shared by every handle.
///
/// As `Read + Write`: reads give plaintext (a read that times out fails with
/// `WouldBlock` or `TimedOut`, in TLS mode too); a write may keep encrypted
/// bytes the socket did not take in time, so a writer calls `flush` at the
/// end (a no-op for plain TCP).
pub struct ClientStream {
    tcp: TcpStream,
    tls: Option<Arc<Tls>>,
}

impl fmt::Debug for ClientStream {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ClientStream")
            .field("tcp", &self.tcp)
            .field("tls", &self.tls.is_some())
            .finish()
    }
}

/// The TLS state shared by the handles on one connection.
struct Tls {
    session: Mutex<Session>,
    /// Held for a whole read, the socket read included, so that bytes enter
    /// the session in the order they came; it holds that read's buffer.
    reading: Mutex<Vec<u8>>,
    /// Encrypted bytes the socket has not taken yet. Held for a whole
    /// write, so that records go out in the order they were made.
    unsent: Mutex<Vec<u8>>,
}

struct Session {
    conn: ClientConnection,
    /// Decrypted, not yet read.
    plaintext: Vec<u8>,
    end: Option<TlsEnd>,
}

impl ClientStream {
    /// The connection over `tcp`, connected to `endpoint`: for TLS, once
    /// the handshake is done (within [`TIMEOUT`]).
    pub(crate) fn establish(tcp: TcpStream, endpoint: &Endpoint) -> io::Result<ClientStream> {
        let Some(config) = &endpoint.tls else {
            return Ok(ClientStream { tcp, tls: None });
        };
        let name = ServerName::try_from(SERVER_NAME).expect("a valid server name");
        let mut conn = ClientConnection::new(Arc::clone(config), name).map_err(io::Error::other)?;
        let deadline = Instant::now() + TIMEOUT;
        let mut io = &tcp;
        while conn.is_handshaking() {
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return Err(io::Error::new(
                    ErrorKind::TimedOut,
                    format!("TLS handshake not done in {TIMEOUT:?}"),
                ));
            }
            tcp.set_read_timeout(Some(left))?;
            conn.complete_io(&mut io)?;
        }
        let mut session = Session {
            conn,
            plaintext: Vec::new(),
            end: None,
        };
        // The handshake's reads may have brought the first lines too.
        session.pull()?;
        let tls = Tls {
            session: Mutex::new(session),
            reading: Mutex::new(Vec::new()),
            unsent: Mutex::new(Vec::new()),
        };
        Ok(ClientStream {
            tcp,
            tls: Some(Arc::new(tls)),
        })
    }

    /// The TCP socket under the connection.
    pub fn tcp(&self) -> &TcpStream {
        &self.tcp
    }

    /// Whether this is a TLS connection.
    pub fn is_tls(&self) -> bool {
        self.tls.is_some()
    }

    /// A second handle on the connection, for another thread.
    pub fn try_clone(&self) -> io::Result<ClientStream> {
        Ok(ClientStream {
            tcp: self.tcp.try_clone()?,
            tls: self.tls.clone(),
        })
    }

    /// Sets the socket's read timeout (for every handle).
    pub fn set_read_timeout(&self, timeout: Option<Duration>) -> io::Result<()> {
        self.tcp.set_read_timeout(timeout)
    }

    /// Sets the socket's write timeout (for every handle).
    pub fn set_write_timeout(&self, timeout: Option<Duration>) -> io::Result<()> {
        self.tcp.set_write_timeout(timeout)
    }

    /// How the server ended the TLS session, once it has (`None` for plain
    /// TCP, and while the session goes on).
    pub fn tls_end(&self) -> Option<TlsEnd> {
        self.tls.as_ref().and_then(|tls| lock(&tls.session).end)
    }

    /// Ends the writing side: for TLS, sends close_notify first; then shuts
    /// down the socket's writing side, so the server sees EOF either way.
    pub fn shutdown_write(&self) -> io::Result<()> {
        if let Some(tls) = &self.tls {
            let mut unsent = lock(&tls.unsent);
            send_unsent(&self.tcp, &mut unsent)?;
            {
                let mut session = lock(&tls.session);
                session.conn.send_close_notify();
                session.conn.write_tls(&mut *unsent)?;
            }
            send_unsent(&self.tcp, &mut unsent)?;
        }
        self.tcp.shutdown(Shutdown::Write)
    }

    /// One read: at most `socket_limit` bytes from the socket, in one
    /// socket read (none if decrypted bytes are waiting), giving at most
    /// `buf.len()` bytes of plaintext. The limit is on the socket's bytes
    /// so that a client pacing its reads paces what it takes from the
    /// network, TLS or not.
    pub(crate) fn read_some(&self, buf: &mut [u8], socket_limit: usize) -> io::Result<Got> {
        let Some(tls) = &self.tls else {
            let cap = buf.len().min(socket_limit);
            let n = (&self.tcp).read(&mut buf[..cap])?;
            return Ok(if n == 0 {
                Got::End
            } else {
                Got::Bytes {
                    plaintext: n,
                    socket: n,
                }
            });
        };
        let mut raw = lock(&tls.reading);
        if let Some(got) = lock(&tls.session).take(buf, 0) {
            return Ok(got);
        }
        raw.resize(socket_limit.clamp(1, READ_CHUNK), 0);
        let socket = (&self.tcp).read(&mut raw)?;
        let mut session = lock(&tls.session);
        session.feed(&raw[..socket])?;
        Ok(session.take(buf, socket).unwrap_or(Got::Bytes {
            plaintext: 0,
            socket,
        }))
    }
}

impl Read for ClientStream {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        if buf.is_empty() {
            return Ok(0);
        }
        loop {
            match self.read_some(buf, READ_CHUNK)? {
                // A TLS record not whole yet: read on.
                Got::Bytes { plaintext: 0, .. } => {}
                Got::Bytes { plaintext, .. } => return Ok(plaintext),
                Got::End => return Ok(0),
            }
        }
    }
}

impl Write for ClientStream {
    /// Plain: one socket write. TLS: sends what earlier writes left
    /// (failing if the socket does not take it), encrypts up to 64 KiB of
    /// `buf` and sends it; what the socket does not take now waits for the
    /// next write or [`Write::flush`], and `buf` counts as written.
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let Some(tls) = &self.tls else {
            return (&self.tcp).write(buf);
        };
        let mut unsent = lock(&tls.unsent);
        send_unsent(&self.tcp, &mut unsent)?;
        let n = {
            let mut session = lock(&tls.session);
            let n = session.conn.writer().write(buf)?;
            while session.conn.wants_write() {
                session.conn.write_tls(&mut *unsent)?;
            }
            n
        };
        // An error here shows on the next write or flush: `n` bytes were
        // taken, and a writer must not send them again.
        let _ = send_unsent(&self.tcp, &mut unsent);
        Ok(n)
    }

    fn flush(&mut self) -> io::Result<()> {
        if let Some(tls) = &self.tls {
            send_unsent(&self.tcp, &mut lock(&tls.unsent))?;
        }
        Ok(())
    }
}

impl Session {
    /// Feeds bytes read from the socket to the session, an empty read
    /// being the TCP EOF, and keeps what they decrypt to. Bytes after
    /// close_notify are dropped, as rustls does.
    fn feed(&mut self, mut raw: &[u8]) -> io::Result<()> {
        loop {
            let n = self.conn.read_tls(&mut raw)?;
            self.conn
                .process_new_packets()
                .map_err(|e| io::Error::new(ErrorKind::InvalidData, e))?;
            self.pull()?;
            if raw.is_empty() || n == 0 {
                return Ok(());
            }
        }
    }

    /// Moves what rustls has decrypted into `plaintext` (so its own buffer,
    /// 16 KiB, never fills), noting the end of the session once it comes.
    fn pull(&mut self) -> io::Result<()> {
        match self.conn.reader().read_to_end(&mut self.plaintext) {
            Ok(_) => self.end = Some(TlsEnd::CloseNotify),
            Err(e) if e.kind() == ErrorKind::WouldBlock => {}
            Err(e) if e.kind() == ErrorKind::UnexpectedEof => {
                self.end = Some(TlsEnd::WithoutCloseNotify);
            }
            Err(e) => return Err(e),
        }
        Ok(())
    }

    /// Decrypted bytes into `buf`, or the end once they are all read;
    /// `None` if there is neither.
    fn take(&mut self, buf: &mut [u8], socket: usize) -> Option<Got> {
        if self.plaintext.is_empty() {
            return self.end.map(|_| Got::End);
        }
        let n = buf.len().min(self.plaintext.len());
        buf[..n].copy_from_slice(&self.plaintext[..n]);
        self.plaintext.drain(..n);
        Some(Got::Bytes {
            plaintext: n,
            socket,
        })
    }
}

/// Writes all of `unsent` to `tcp`, removing what was written (also when
/// the socket fails part way, so a retry goes on where this stopped).
fn send_unsent(mut tcp: &TcpStream, unsent: &mut Vec<u8>) -> io::Result<()> {
    while !unsent.is_empty() {
        match tcp.write(unsent) {
            Ok(0) => return Err(ErrorKind::WriteZero.into()),
            Ok(n) => {
                unsent.drain(..n);
            }
            Err(e) if e.kind() == ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(())
}

/// Locks `mutex`, also after another handle's thread panicked holding it
/// (that thread's check has failed already; this one reports its own).
fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(PoisonError::into_inner)
}
