//! A connection's reader task.

use std::io;
use std::sync::Arc;

use tracing::debug;

use crate::Runtime;
use crate::hub::{Half, Link, Task};

/// Most bytes one read takes, so one busy client's turn is bounded.
const READ_BUFFER: usize = 64 * 1024;
/// Read buffer of a client that sends little, in bytes; it doubles, up to
/// [`READ_BUFFER`], each time a read fills it.
const SMALL_READ_BUFFER: usize = 64;

/// Feeds what the client sends to the core until it closes or fails,
/// pausing while the core asks it to.
pub(crate) async fn reader<R: Runtime>(mut task: Task<R>, link: Arc<Link<R::Stream>>) {
    // Most clients send little: start small and grow for those that fill it.
    let mut buf = vec![0; SMALL_READ_BUFFER];
    loop {
        match R::read(&link.stream, &mut buf).await {
            Ok(0) => return task.eof(&link),
            Ok(len) => {
                let mut paused = task.received(&link, &buf[..len]);
                // Doubling: a client's buffer follows how much it sends.
                if len == buf.len() && len < READ_BUFFER {
                    buf.resize((len * 2).min(READ_BUFFER), 0);
                }
                // Released by `ResumeReading`, or by the connection closing.
                while paused {
                    link.resume.wait().await;
                    paused = task.paused(&link);
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
