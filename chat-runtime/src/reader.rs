//! A connection's reader task, and its [`ReadBuffer`].

use std::io;
use std::sync::Arc;

use tracing::debug;

use crate::Runtime;
use crate::hub::{Half, Link, Task};

/// Most bytes one read takes, so one busy client's turn is bounded.
const READ_BUFFER: usize = 64 * 1024;
/// Read buffer of a client that sends little, or has paused, in bytes.
const SMALL_READ_BUFFER: usize = 64;

/// Feeds what the client sends to the core until it closes or fails,
/// pausing while the core asks it to. Over TLS, what it reads goes through
/// the session first, and while `handshaking` (a new TLS connection's first
/// reader) the reader writes the handshake (see `stream`).
///
/// A reader that ran the handshake hands the connection to a new reader
/// task once it is over: where a task is a thread (chat-std), the stack
/// pages the handshake's cryptography touched would otherwise stay resident
/// for the connection's life (about 25 KiB of stack, against the 8 KiB an
/// idle reader needs; chat-std gives them back as the thread ends,
/// docs/performance.md).
pub(crate) async fn reader<R: Runtime>(
    mut task: Task<R>,
    link: Arc<Link<R::Stream>>,
    mut handshaking: bool,
) {
    let mut buffer = ReadBuffer::new();
    loop {
        match R::read(&link.stream.socket, buffer.space()).await {
            Ok(0) => return task.eof(&link),
            Ok(len) => {
                let mut handshaken = false;
                let input = if link.stream.is_tls() {
                    // Boxed, so that the reader of a plain client, waiting
                    // in its read, does not carry what a TLS read holds.
                    let ciphertext = buffer.filled(len);
                    let was_handshaking = handshaking;
                    let input =
                        Box::pin(tls_input(&mut task, &link, ciphertext, &mut handshaking)).await;
                    handshaken = was_handshaking && !handshaking;
                    input
                } else {
                    Ok(Input {
                        paused: task.received(&link, buffer.filled(len)),
                        closed: false,
                    })
                };
                let Input { mut paused, closed } = match input {
                    Ok(input) => input,
                    Err(error) => {
                        debug!(conn = %link.id, "TLS: {error}");
                        break;
                    }
                };
                buffer.after_read(len);
                if closed {
                    return task.eof(&link);
                }
                if paused {
                    buffer.pause();
                }
                // Released by `ResumeReading`, or by the connection closing.
                while paused {
                    link.resume.wait().await;
                    paused = task.paused(&link);
                }
                if handshaken {
                    // A new reader starts with a small buffer too: the
                    // handshake's sizes (a ClientHello with a post-quantum
                    // key share is 1.5-2 KB) say nothing of what the client
                    // will send.
                    return task.restart_reader(link);
                }
            }
            Err(error) if error.kind() == io::ErrorKind::Interrupted => {}
            Err(error) => {
                debug!(conn = %link.id, "read failed: {error}");
                break;
            }
        }
    }
    task.finished(&link, Half::Reader);
}

/// What one read gave the core.
struct Input {
    /// The core wants no more read for now.
    paused: bool,
    /// The client ended its TLS session: no more input will come.
    closed: bool,
}

/// Passes `ciphertext` through the connection's TLS session and the
/// plaintext it holds to the core. While `handshaking`, writes what the
/// session has to send; once the handshake is over, tells the hub (which
/// then writes the core's output, and the session's from then on).
async fn tls_input<R: Runtime>(
    task: &mut Task<R>,
    link: &Link<R::Stream>,
    ciphertext: &[u8],
    handshaking: &mut bool,
) -> io::Result<Input> {
    let mut plaintext = Vec::new();
    let session = match link.stream.decrypt(ciphertext, &mut plaintext) {
        Some(result) => result?,
        None => return Err(io::Error::other("not a TLS connection")),
    };
    if *handshaking {
        if session.to_send {
            link.stream.flush::<R>().await?;
        }
        if !session.handshaking {
            *handshaking = false;
            task.handshaken(link);
        }
    } else if session.to_send {
        task.send_session(link);
    }
    let paused = !plaintext.is_empty() && task.received(link, &plaintext);
    Ok(Input {
        paused,
        closed: session.closed,
    })
}

/// A reader's buffer, sized to what its client sends: most clients send
/// little, so it starts at [`SMALL_READ_BUFFER`] bytes and doubles, up to
/// [`READ_BUFFER`], each time a read fills it.
///
/// A read that does not fill it drained the socket: the client paused, and
/// may stay quiet for hours, so the next read, which waits for it, gets a
/// small buffer and the large one is freed (a client that once sent a long
/// line would otherwise hold [`READ_BUFFER`] bytes for good). The size the
/// client grew it to is kept in mind: a read that fills the small buffer
/// goes straight back to that size, so a client that sends in bursts costs
/// one small read per burst, not a doubling ramp.
///
/// While the reader pauses (flood control) it holds no buffer at all, and
/// it resumes at the size the client grew it to: its input waited in the
/// socket meanwhile, and is read as it would have been without the pause,
/// so that a flood shows as many lines at once (`--flood-excess`).
#[derive(Debug)]
struct ReadBuffer {
    /// Where reads go; allocated by [`ReadBuffer::space`] just before a
    /// read, so its length is the size of the last read.
    bytes: Vec<u8>,
    /// Size of the next read: [`SMALL_READ_BUFFER`] or `needed`.
    next: usize,
    /// The size the client grew the buffer to; at least
    /// [`SMALL_READ_BUFFER`].
    needed: usize,
}

impl ReadBuffer {
    fn new() -> ReadBuffer {
        ReadBuffer {
            bytes: Vec::new(),
            next: SMALL_READ_BUFFER,
            needed: SMALL_READ_BUFFER,
        }
    }

    /// Where the next read goes, of the size it should have. A new buffer
    /// rather than a resized one: shrinking frees the memory, and growing
    /// copies nothing, the old bytes being handed over already.
    fn space(&mut self) -> &mut [u8] {
        if self.bytes.len() != self.next {
            self.bytes = vec![0; self.next];
        }
        &mut self.bytes
    }

    /// The `len` bytes the last read took.
    fn filled(&self, len: usize) -> &[u8] {
        &self.bytes[..len]
    }

    /// Sizes the next read, after one that took `len` bytes.
    fn after_read(&mut self, len: usize) {
        let size = self.bytes.len();
        if len < size {
            self.next = SMALL_READ_BUFFER;
            return;
        }
        if size == self.needed {
            self.needed = (size * 2).min(READ_BUFFER);
        }
        self.next = self.needed;
    }

    /// The reader waits without reading: frees the buffer, and reads at the
    /// size the client grew it to once it resumes.
    fn pause(&mut self) {
        self.bytes = Vec::new();
        self.next = self.needed;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Bytes the buffer holds now.
    fn held(buffer: &ReadBuffer) -> usize {
        buffer.bytes.capacity()
    }

    /// A read of `len` bytes, at most the buffer's size; returns the
    /// size of the buffer it was made with.
    fn read(buffer: &mut ReadBuffer, len: usize) -> usize {
        let size = buffer.space().len();
        buffer.after_read(len.min(size));
        size
    }

    /// Full reads until the buffer stops growing; the sizes it had.
    fn grow_fully(buffer: &mut ReadBuffer) -> Vec<usize> {
        let mut sizes = vec![read(buffer, usize::MAX)];
        loop {
            let size = read(buffer, usize::MAX);
            assert!(size <= READ_BUFFER, "grew to {size}");
            if Some(&size) == sizes.last() {
                return sizes;
            }
            sizes.push(size);
        }
    }

    #[test]
    fn full_reads_double_it_up_to_the_largest_read() {
        let mut buffer = ReadBuffer::new();
        let sizes = grow_fully(&mut buffer);
        let doubling: Vec<_> = (6..=16).map(|bits| 1 << bits).collect();
        assert_eq!(sizes, doubling);
        assert_eq!(sizes.last(), Some(&READ_BUFFER));
        assert_eq!(held(&buffer), READ_BUFFER);
    }

    #[test]
    fn a_partial_read_frees_a_large_buffer() {
        let mut buffer = ReadBuffer::new();
        grow_fully(&mut buffer);
        assert_eq!(read(&mut buffer, 100), READ_BUFFER);
        assert_eq!(buffer.space().len(), SMALL_READ_BUFFER);
        assert_eq!(held(&buffer), SMALL_READ_BUFFER);
    }

    #[test]
    fn a_full_small_read_regrows_to_the_remembered_size_at_once() {
        let mut buffer = ReadBuffer::new();
        for _ in 0..3 {
            read(&mut buffer, usize::MAX);
        }
        assert_eq!(read(&mut buffer, 1), 512);
        assert_eq!(read(&mut buffer, 1), SMALL_READ_BUFFER);
        // Quiet reads at the small size forget nothing.
        assert_eq!(read(&mut buffer, SMALL_READ_BUFFER), SMALL_READ_BUFFER);
        assert_eq!(read(&mut buffer, usize::MAX), 512);
        // From there it doubles again.
        assert_eq!(read(&mut buffer, usize::MAX), 1024);
    }

    #[test]
    fn a_pausing_reader_holds_no_buffer_and_resumes_at_the_remembered_size() {
        let mut buffer = ReadBuffer::new();
        for _ in 0..4 {
            read(&mut buffer, usize::MAX);
        }
        // Paused after a full read: it would have grown.
        buffer.pause();
        assert_eq!(held(&buffer), 0);
        assert_eq!(read(&mut buffer, 1), 1024);
        // Paused after a partial read: still the remembered size.
        buffer.pause();
        assert_eq!(held(&buffer), 0);
        assert_eq!(buffer.space().len(), 1024);
    }

    #[test]
    fn it_never_grows_past_the_largest_read() {
        let mut buffer = ReadBuffer::new();
        grow_fully(&mut buffer);
        for _ in 0..20 {
            assert_eq!(read(&mut buffer, usize::MAX), READ_BUFFER);
            buffer.pause();
            assert_eq!(read(&mut buffer, usize::MAX), READ_BUFFER);
            assert_eq!(read(&mut buffer, 1), READ_BUFFER);
            assert_eq!(read(&mut buffer, usize::MAX), SMALL_READ_BUFFER);
        }
        assert_eq!(buffer.space().len(), READ_BUFFER);
    }
}
