//! The one write path: [`Unwritten`], output taken from the core and not
//! yet written, which both the non-blocking writes of `Task` and a
//! connection's writer task write from; and the writer task.

use std::io;
use std::sync::Arc;

use chat_core::Bytes;
use tracing::debug;

use crate::Runtime;
use crate::hub::{Half, Link, Next, Task};

/// Most bytes one write takes. Output is a stream of short lines, each its
/// own chunk; copying them into one buffer and writing that is faster than
/// a vectored write of the chunks, whose per-segment cost in the kernel
/// dominates for ~100-byte segments.
pub(crate) const WRITE_BUFFER: usize = 64 * 1024;

/// Output taken from the core for one connection and not yet written:
/// `buf[pos..]`, then `chunks[next..]` less the first `offset` bytes of
/// `chunks[next]`. Chunks are copied into `buf`, at most [`WRITE_BUFFER`]
/// bytes of them, only when more than one fits: a chunk written on its own
/// is written from where it is. What a write does not take is written from
/// where it is next time, never copied again.
#[derive(Debug, Default)]
pub(crate) struct Unwritten {
    chunks: Vec<Bytes>,
    /// Chunks before it are written or copied into `buf`.
    next: usize,
    /// Bytes written of `chunks[next]`, which is written on its own.
    offset: usize,
    buf: Vec<u8>,
    /// Bytes written of `buf`.
    pos: usize,
}

impl Unwritten {
    /// Where the core moves the next output to write; drops what is left,
    /// which there is only after a failed write.
    pub(crate) fn refill(&mut self) -> &mut Vec<Bytes> {
        self.buf.clear();
        self.chunks.clear();
        (self.next, self.offset, self.pos) = (0, 0, 0);
        &mut self.chunks
    }

    /// The bytes to write next, `None` once all is written. Call
    /// [`Unwritten::advance`] with what a write took before calling it again.
    pub(crate) fn next(&mut self) -> Option<&[u8]> {
        if self.pos < self.buf.len() {
            return Some(&self.buf[self.pos..]);
        }
        self.buf.clear();
        self.pos = 0;
        let rest = &self.chunks[self.next..];
        let (first, tail) = rest.split_first()?;
        let fits = |a: usize, b: &Bytes| (a + b.len() <= WRITE_BUFFER).then_some(a + b.len());
        if self.offset > 0 || tail.first().and_then(|b| fits(first.len(), b)).is_none() {
            return Some(&first[self.offset..]);
        }
        let mut len = 0;
        let count = rest
            .iter()
            .map_while(|chunk| fits(len, chunk).inspect(|&total| len = total))
            .count();
        self.buf.reserve_exact(len);
        rest[..count]
            .iter()
            .for_each(|chunk| self.buf.extend_from_slice(chunk));
        self.next += count;
        Some(&self.buf)
    }

    /// `len` bytes of what [`Unwritten::next`] gave were written.
    pub(crate) fn advance(&mut self, len: usize) {
        if self.buf.is_empty() {
            self.offset += len;
            if self.offset == self.chunks[self.next].len() {
                (self.next, self.offset) = (self.next + 1, 0);
            }
        } else {
            self.pos += len;
        }
    }
}

/// Writes the core's output for one client until it has none left or the
/// connection closes: first `out`. Started by `Task` for what a socket did
/// not take at once (having reported it full), so each write it reports is
/// the client reading.
pub(crate) async fn writer<R: Runtime>(
    mut task: Task<R>,
    link: Arc<Link<R::Stream>>,
    mut out: Unwritten,
) {
    let mut unreported = 0;
    loop {
        while let Some(bytes) = out.next() {
            // Reported before writing again, which may block for long; what
            // reporting caused (the core's timers run first) is written
            // first, so no other client waits on this one's socket.
            if unreported > 0 {
                task.written(&link, std::mem::take(&mut unreported));
            }
            match link.stream.write::<R>(bytes).await {
                Ok(0) if !bytes.is_empty() => {
                    debug!(conn = %link.id, "write failed: the socket took nothing");
                    return task.finished(&link, Half::Writer);
                }
                Ok(len) => {
                    out.advance(len);
                    unreported = len;
                }
                Err(error) if error.kind() == io::ErrorKind::Interrupted => {}
                Err(error) => return failed(&mut task, &link, &error),
            }
        }
        // What a TLS session holds goes before the writer takes more or
        // is released.
        if let Err(error) = link.stream.flush::<R>().await {
            return failed(&mut task, &link, &error);
        }
        match task.take(&link, std::mem::take(&mut unreported), &mut out) {
            Next::Write => {}
            // Released by the hub: the next output starts a new writer.
            Next::Idle => return,
            Next::Finish => {
                link.stream.close_notify();
                if let Err(error) = link.stream.flush::<R>().await {
                    return failed(&mut task, &link, &error);
                }
                return task.finished(&link, Half::Writer);
            }
            Next::Done => return task.finished(&link, Half::Writer),
        }
    }
}

/// A write failed: the writer is done.
fn failed<R: Runtime>(task: &mut Task<R>, link: &Link<R::Stream>, error: &io::Error) {
    debug!(conn = %link.id, "write failed: {error}");
    task.finished(link, Half::Writer);
}

#[cfg(test)]
mod tests {
    use super::*;

    fn unwritten(chunks: &[Bytes]) -> Unwritten {
        let mut out = Unwritten::default();
        out.refill().extend_from_slice(chunks);
        out
    }

    /// Writes all of `out`, each write taking at most `most` bytes; returns
    /// how many bytes each write was offered.
    fn write_all(out: &mut Unwritten, most: usize) -> Vec<usize> {
        let mut writes = Vec::new();
        while let Some(bytes) = out.next() {
            let len = bytes.len().min(most);
            writes.push(bytes.len());
            out.advance(len);
        }
        writes
    }

    #[test]
    fn chunks_are_copied_up_to_the_limit() {
        let small = Bytes::from(vec![b'a'; WRITE_BUFFER / 4]);
        let mut out = unwritten(&[
            small.clone(),
            small.clone(),
            small.clone(),
            small.clone(),
            small.clone(),
            small,
        ]);
        assert_eq!(
            write_all(&mut out, usize::MAX),
            [WRITE_BUFFER, WRITE_BUFFER / 2]
        );
    }

    #[test]
    fn a_chunk_that_fits_with_no_other_is_written_from_where_it_is() {
        let large = Bytes::from(vec![0; WRITE_BUFFER + 1]);
        let mut out = unwritten(&[
            Bytes::from_static(b"ab"),
            large.clone(),
            Bytes::from_static(b"c"),
        ]);
        assert_eq!(out.next(), Some(&b"ab"[..]));
        out.advance(2);
        let next = out.next().map(<[u8]>::as_ptr);
        assert_eq!(next, Some(large.as_ptr()), "not copied");
        out.advance(WRITE_BUFFER + 1);
        assert_eq!(out.next(), Some(&b"c"[..]));
        out.advance(1);
        assert_eq!(out.next(), None);
    }

    #[test]
    fn what_a_write_did_not_take_is_written_next_uncopied() {
        let chunks = [Bytes::from_static(b"abc"), Bytes::from_static(b"def")];
        let mut out = unwritten(&chunks);
        let copied = out.next().map(<[u8]>::as_ptr);
        out.advance(2);
        assert_eq!(out.next(), Some(&b"cdef"[..]));
        assert_eq!(
            out.next().map(<[u8]>::as_ptr),
            copied.map(|at| at.wrapping_add(2))
        );
        // A chunk written on its own continues from where it is too.
        let mut out = unwritten(&[Bytes::from(vec![1; WRITE_BUFFER]), Bytes::from_static(b"x")]);
        assert_eq!(
            write_all(&mut out, 1000).len(),
            WRITE_BUFFER.div_ceil(1000) + 1
        );
    }
}
