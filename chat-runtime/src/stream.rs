//! [`Stream`]: a connection's bytes as the core sees them, plaintext,
//! over the socket itself or through a TLS session.
//!
//! rustls is a sans-IO state machine like the core: ciphertext read from
//! the socket goes in (`read_tls`, `process_new_packets`), plaintext comes
//! out (`reader`), plaintext goes in (`writer`) and ciphertext comes out
//! (`write_tls`). This module moves the bytes between the two and the
//! socket, and nothing else: the tasks call the same few methods for a
//! plain and a TLS connection, so no write can bypass the session.
//!
//! Who writes ciphertext to the socket, so that records never interleave:
//! during the handshake, the reader alone (the hub starts no write for a
//! connection still in its handshake, see `Hub::handshaken`); after it, the
//! write path alone (one writer per connection at a time, the hub's rule).
//! The reader leaves what it makes rustls send after the handshake (a
//! reply to a key update, say) in the session and asks the hub for a write.
//!
//! Memory: ciphertext is taken out of rustls as it is made and written
//! from `Session::out`, which holds at most what one write of plaintext
//! made ([`TLS_WRITE`] bytes of plaintext), and is freed once written.

use std::io::{self, Read as _, Write as _};
use std::sync::Mutex;

use rustls::ServerConnection;

use crate::Runtime;

/// Most plaintext one write encrypts: one TLS record's worth. A full
/// socket leaves at most this much ciphertext waiting in the session, on
/// top of what the core holds and counts for the client.
pub(crate) const TLS_WRITE: usize = 16 * 1024;

/// A connection's byte stream: the socket, and its TLS session if the
/// client connected to a TLS listener.
#[derive(Debug)]
pub(crate) struct Stream<S> {
    pub(crate) socket: S,
    /// Boxed: a session is over a kilobyte, which a plain connection
    /// should not carry.
    tls: Option<Box<Mutex<Session>>>,
}

/// A TLS session and the ciphertext it made that is not written yet.
#[derive(Debug)]
struct Session {
    conn: ServerConnection,
    /// Ciphertext taken out of `conn`: `out[pos..]` is unwritten.
    out: Vec<u8>,
    pos: usize,
}

/// What the reader learned from one read of a TLS connection.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Decrypted {
    /// The handshake is still under way.
    pub(crate) handshaking: bool,
    /// The session has ciphertext to send (handshake messages, tickets, a
    /// key update).
    pub(crate) to_send: bool,
    /// The client ended the session (close_notify): like EOF.
    pub(crate) closed: bool,
}

impl<S> Stream<S> {
    /// A connection without TLS.
    pub(crate) fn plain(socket: S) -> Stream<S> {
        Stream { socket, tls: None }
    }

    /// A connection whose bytes go through `conn`, a new TLS session.
    pub(crate) fn tls(socket: S, mut conn: ServerConnection) -> Stream<S> {
        // Encrypted output is taken out as it is made (see `Session::fill`):
        // the limit only bounds plaintext written before the handshake
        // ends, which the hub never writes.
        conn.set_buffer_limit(Some(TLS_WRITE));
        let session = Session {
            conn,
            out: Vec::new(),
            pos: 0,
        };
        Stream {
            socket,
            tls: Some(Box::new(Mutex::new(session))),
        }
    }

    /// Whether the connection is over TLS.
    pub(crate) fn is_tls(&self) -> bool {
        self.tls.is_some()
    }

    /// For the reader of a TLS connection: passes `ciphertext`, all of
    /// what one read took, through the session, and appends the plaintext
    /// it held to `plaintext`. `None` for a plain connection. An error
    /// (not TLS, a bad record, an alert) ends the connection.
    pub(crate) fn decrypt(
        &self,
        mut ciphertext: &[u8],
        plaintext: &mut Vec<u8>,
    ) -> Option<io::Result<Decrypted>> {
        let mut session = crate::lock(self.tls.as_ref()?);
        let conn = &mut session.conn;
        let mut closed = false;
        let result = (|| {
            while !ciphertext.is_empty() {
                // Reads from the slice, advancing it; 0 once the client's
                // close_notify was read, after which the rest is ignored.
                if conn.read_tls(&mut ciphertext)? == 0 {
                    break;
                }
                let state = conn.process_new_packets().map_err(io::Error::other)?;
                closed = state.peer_has_closed();
                let available = state.plaintext_bytes_to_read();
                let start = plaintext.len();
                plaintext.resize(start + available, 0);
                conn.reader().read_exact(&mut plaintext[start..])?;
            }
            Ok(Decrypted {
                handshaking: conn.is_handshaking(),
                to_send: conn.wants_write(),
                closed,
            })
        })();
        Some(result)
    }

    /// Queues close_notify, to be written after everything written before
    /// it: the orderly end of a TLS session. Nothing for a plain one.
    pub(crate) fn close_notify(&self) {
        if let Some(tls) = &self.tls {
            crate::lock(tls).conn.send_close_notify();
        }
    }
}

impl Session {
    /// Moves the ciphertext rustls has made into `out`, if `out` is all
    /// written; false if there is nothing left to write.
    fn fill(&mut self) -> bool {
        if self.pos == self.out.len() {
            self.out.clear();
            self.pos = 0;
            while self.conn.wants_write() {
                // Writing into a Vec does not fail.
                if self.conn.write_tls(&mut self.out).is_err() {
                    break;
                }
            }
            if self.out.is_empty() {
                // A burst's buffer is not kept by an idle client.
                self.out = Vec::new();
            }
        }
        self.pos < self.out.len()
    }
}

impl<S: Send + Sync + 'static> Stream<S> {
    /// Writes plaintext without waiting: how much of `plaintext` was
    /// taken, or `WouldBlock` when the socket takes nothing now. Over TLS,
    /// what the socket does not take of the ciphertext waits in the session
    /// for [`Stream::try_flush`] or [`Stream::flush`]: a writer that stops
    /// must flush first.
    pub(crate) fn try_write<R: Runtime<Stream = S>>(&self, plaintext: &[u8]) -> io::Result<usize> {
        let Some(tls) = &self.tls else {
            return R::try_write(&self.socket, plaintext);
        };
        let mut session = crate::lock(tls);
        if !flush_now::<R>(&self.socket, &mut session)? {
            return Err(io::ErrorKind::WouldBlock.into());
        }
        let len = encrypt(&mut session.conn, plaintext)?;
        flush_now::<R>(&self.socket, &mut session)?;
        Ok(len)
    }

    /// Writes plaintext, waiting until the socket takes some: how much
    /// of `plaintext` was taken. Over TLS, its ciphertext is written before
    /// this returns.
    pub(crate) async fn write<R: Runtime<Stream = S>>(
        &self,
        plaintext: &[u8],
    ) -> io::Result<usize> {
        let Some(tls) = &self.tls else {
            return R::write(&self.socket, plaintext).await;
        };
        self.flush::<R>().await?;
        let len = encrypt(&mut crate::lock(tls).conn, plaintext)?;
        self.flush::<R>().await?;
        Ok(len)
    }

    /// Writes the ciphertext the session holds, without waiting: true if
    /// none is left. Always true for a plain connection.
    pub(crate) fn try_flush<R: Runtime<Stream = S>>(&self) -> io::Result<bool> {
        match &self.tls {
            None => Ok(true),
            Some(tls) => flush_now::<R>(&self.socket, &mut crate::lock(tls)),
        }
    }

    /// Writes the ciphertext the session holds, waiting for the socket
    /// as needed. The lock is not held while waiting: the ciphertext is
    /// taken out of the session first (only the one task that writes to the
    /// connection writes ciphertext, see the module docs).
    pub(crate) async fn flush<R: Runtime<Stream = S>>(&self) -> io::Result<()> {
        let Some(tls) = &self.tls else {
            return Ok(());
        };
        loop {
            let (out, mut pos) = {
                let mut session = crate::lock(tls);
                if !session.fill() {
                    return Ok(());
                }
                let pos = std::mem::take(&mut session.pos);
                (std::mem::take(&mut session.out), pos)
            };
            while pos < out.len() {
                match R::write(&self.socket, &out[pos..]).await {
                    Ok(0) => return Err(io::ErrorKind::WriteZero.into()),
                    Ok(len) => pos += len,
                    Err(error) if error.kind() == io::ErrorKind::Interrupted => {}
                    Err(error) => return Err(error),
                }
            }
        }
    }
}

/// Encrypts what the session takes of `plaintext`, at most [`TLS_WRITE`]
/// bytes; at least one byte unless `plaintext` is empty.
fn encrypt(conn: &mut ServerConnection, plaintext: &[u8]) -> io::Result<usize> {
    let len = plaintext.len().min(TLS_WRITE);
    let taken = conn.writer().write(&plaintext[..len])?;
    if taken == 0 && len > 0 {
        // The hub writes only once the handshake is over, and the
        // ciphertext was taken out: rustls takes plaintext then.
        return Err(io::Error::other("the TLS session took no plaintext"));
    }
    Ok(taken)
}

/// Writes what it can of the session's ciphertext without waiting: true
/// if none is left.
fn flush_now<R: Runtime>(socket: &R::Stream, session: &mut Session) -> io::Result<bool> {
    while session.fill() {
        match R::try_write(socket, &session.out[session.pos..]) {
            Ok(0) => return Err(io::ErrorKind::WriteZero.into()),
            Ok(len) => session.pos += len,
            Err(error) if error.kind() == io::ErrorKind::WouldBlock => return Ok(false),
            Err(error) if error.kind() == io::ErrorKind::Interrupted => {}
            Err(error) => return Err(error),
        }
    }
    Ok(true)
}

#[cfg(test)]
mod tests;
