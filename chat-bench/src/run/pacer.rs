//! Open-loop sending on a precise clock.
//!
//! Latency in open loop is measured from when a line was due, so that a
//! server that falls behind cannot hide it by slowing the senders down. The
//! generator's own lateness is then charged to the server too: tokio's timer
//! has millisecond granularity, and senders sleeping on it went out up to a
//! millisecond late. All paced senders therefore run on one OS thread that
//! sleeps on the OS clock (tens of microseconds late) and writes without
//! blocking; how late each line actually left is measured and reported as
//! the send lag. A sender whose socket is full (the server stopped reading
//! it) holds the others back too; their lines are then late, and counted
//! so, since latency runs from when they were due.

use std::io;
use std::sync::Arc;
use std::time::Duration;

use hdrhistogram::Histogram;
use tokio::runtime::Handle;
use tokio::sync::watch;

use super::{HIST_MAX_NS, Shared};
use crate::conn::WriteHalf;
use crate::token::LineTemplate;

/// Longest single sleep, so that a stop is noticed soon.
const MAX_SLEEP: Duration = Duration::from_millis(50);

/// One paced sender: client `idx` and its connection.
#[derive(Debug)]
pub(super) struct Paced {
    pub(super) idx: usize,
    pub(super) wr: WriteHalf,
    /// Why its writing stopped, if it failed.
    pub(super) error: Option<io::Error>,
}

/// Sends `lines` lines from each of `senders` at `rate` lines per second
/// per sender, starting at `start_ns`; the senders are phase-shifted evenly,
/// so the whole schedule is one line every `1 / (rate * senders)` seconds,
/// in turn. Runs on the calling thread (which must not be a runtime worker)
/// until done or `stop`; returns how late each line left, in ns.
pub(super) fn pace(
    senders: &mut [Paced],
    rate: f64,
    lines: u32,
    ctx: &Arc<Shared>,
    start_ns: u64,
    stop: &watch::Receiver<bool>,
    handle: &Handle,
) -> Option<Histogram<u64>> {
    let mut lag = Histogram::<u64>::new_with_bounds(1, HIST_MAX_NS, 3).ok()?;
    let mut templates = Vec::with_capacity(senders.len());
    for s in senders.iter() {
        let id = u32::try_from(s.idx).unwrap_or(u32::MAX - 1);
        templates.push(LineTemplate::new(ctx.run, id, ctx.size).ok()?);
    }
    let count = senders.len();
    let step_ns = 1e9 / rate / count.max(1) as f64;
    let total = count as u64 * u64::from(lines);
    for k in 0..total {
        let which = (k % count as u64) as usize;
        let seq = (k / count as u64) as u32;
        let sender = &mut senders[which];
        if sender.error.is_some() {
            continue;
        }
        let due = start_ns + (k as f64 * step_ns) as u64;
        if !sleep_until(ctx, due, stop) {
            break;
        }
        let line = templates[which].render(seq, due);
        match write(&sender.wr, line, stop, handle) {
            Ok(true) => {}
            Ok(false) => break,
            Err(e) => {
                sender.error = Some(e);
                continue;
            }
        }
        lag.saturating_record(ctx.now_ns().saturating_sub(due).max(1));
    }
    Some(lag)
}

/// Sleeps until `due` (ns since the run's start); `false` if stopped first.
fn sleep_until(ctx: &Shared, due: u64, stop: &watch::Receiver<bool>) -> bool {
    loop {
        if *stop.borrow() {
            return false;
        }
        let now = ctx.now_ns();
        if now >= due {
            return true;
        }
        std::thread::sleep(Duration::from_nanos(due - now).min(MAX_SLEEP));
    }
}

/// Writes all of `line`, waiting on the runtime only if the socket is full;
/// `Ok(false)` if stopped while waiting.
fn write(
    wr: &WriteHalf,
    line: &[u8],
    stop: &watch::Receiver<bool>,
    handle: &Handle,
) -> io::Result<bool> {
    let mut rest = line;
    while !wr.try_write_all(&mut rest)? {
        let mut stop = stop.clone();
        let stopped = handle.block_on(async {
            tokio::select! {
                biased;
                _ = stop.wait_for(|&s| s) => true,
                r = wr.writable() => r.map(|()| false).unwrap_or(false),
            }
        });
        if stopped {
            return Ok(false);
        }
    }
    Ok(true)
}
