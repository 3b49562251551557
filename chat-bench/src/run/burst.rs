//! The `burst` scenario's own parts: readers that read at a set rate,
//! senders from chosen source addresses that only drain what they receive,
//! and the per-reader account.
//!
//! Clients `0..S` are the senders (a line's sender id is its client index,
//! as in the other scenarios), `S..S+R` the readers. The sync line comes
//! from the first reader, so that no sender has used any of a server's
//! flood budget before its burst. The burst itself is the closed-loop
//! [`super::sender`] with one batch of all its lines: one `write_all`.

use std::net::IpAddr;
use std::sync::Arc;
use std::sync::atomic::Ordering::Relaxed;
use std::time::{Duration, Instant};

use tokio::sync::watch;
use tokio::task::JoinHandle;

use super::{Clients, Config, SetupError, Shared, connect_group, reader};
use crate::conn::{Dialer, Origin, ReadHalf};
use crate::lines::LineBuf;
use crate::pace::ReadPace;
use crate::report::{BurstStats, Report, Spread};
use crate::token::{SYNC_SENDER, TokenParser};

/// The `burst` scenario's settings beyond [`Config`].
#[derive(Debug, Clone)]
pub struct Burst {
    /// Reading clients (R), after the S senders.
    pub readers: usize,
    /// Bytes per second each reader reads.
    pub read_rate: u64,
    /// `SO_RCVBUF` of each reader; `None`: the system's autotuning. Small,
    /// so that what a reader has not read waits in the server, not in the
    /// kernel.
    pub reader_rcvbuf: Option<u32>,
    /// Source addresses of the senders, in turn.
    pub sender_ips: Vec<IpAddr>,
    /// Source addresses of the readers, in turn: others than the senders',
    /// so that per-address limits do not refuse them.
    pub reader_ips: Vec<IpAddr>,
    /// The run stops this long after the burst at the latest.
    pub duration: Duration,
}

/// Client `i` of a group connects from address `i` of `ips`, in turn,
/// with `rcvbuf`.
fn in_turn(ips: &[IpAddr], rcvbuf: Option<u32>) -> impl Fn(usize) -> Origin + '_ {
    move |i| Origin {
        ip: ips.get(i % ips.len().max(1)).copied(),
        rcvbuf,
    }
}

/// Connects the senders, then the readers, each from its addresses in turn,
/// and starts their tasks in `clients`.
pub(super) async fn connect(
    cfg: &Config,
    b: &Burst,
    dialer: &Dialer,
    ctx: &Arc<Shared>,
    stop: &watch::Receiver<bool>,
    deadline: Instant,
    clients: &mut Clients,
) -> Result<(), SetupError> {
    let check = |(failed, err): (usize, Option<String>), count: usize, what: &str| {
        if failed == 0 {
            return Ok(());
        }
        Err(SetupError(format!(
            "connected only {} of {count} {what} to {}: {}",
            count - failed,
            cfg.addrs.join(", "),
            err.unwrap_or_else(|| "overall timeout".into())
        )))
    };
    let senders = connect_group(
        cfg,
        dialer,
        (0, cfg.senders, "senders"),
        in_turn(&b.sender_ips, None),
        deadline,
        |stream| {
            let (ctx, stop) = (ctx.clone(), stop.clone());
            let task = clients.add(stream, |rd, i| drain(rd, i, cfg.read_buf, ctx, stop));
            clients.drains.push(tokio::spawn(task));
        },
    )
    .await;
    check(senders, cfg.senders, "senders")?;
    let readers = connect_group(
        cfg,
        dialer,
        (cfg.senders, b.readers, "readers"),
        in_turn(&b.reader_ips, b.reader_rcvbuf),
        deadline,
        |stream| {
            let (ctx, stop) = (ctx.clone(), stop.clone());
            let pace = ReadPace::new(b.read_rate, Instant::now());
            let task = clients.add(stream, |rd, i| {
                reader(rd, i, cfg.read_buf, ctx, stop, Some(pace))
            });
            clients.readers.push(tokio::spawn(task));
        },
    )
    .await;
    check(readers, b.readers, "readers")
}

/// Reads and drops everything a sender receives, so that the server does
/// not drop it as too slow; until the sync line has come it looks for it,
/// as a reader does. Returns whether the connection ended (EOF or error)
/// before the stop.
async fn drain(
    mut rd: ReadHalf,
    me: usize,
    buf_size: usize,
    ctx: Arc<Shared>,
    mut stop: watch::Receiver<bool>,
) -> bool {
    let parser = TokenParser::new(ctx.run);
    let mut lb = LineBuf::new(buf_size);
    let mut synced = me == ctx.sync_from;
    loop {
        let read = tokio::select! {
            biased;
            _ = stop.changed() => return false,
            r = rd.read(lb.spare()) => r,
        };
        match read {
            Ok(0) | Err(_) => return true,
            Ok(n) => lb.commit(n),
        }
        lb.drain_lines(|line| {
            if !synced && parser.parse(line).is_some_and(|t| t.sender == SYNC_SENDER) {
                synced = true;
                ctx.synced.fetch_add(1, Relaxed);
            }
        });
    }
}

/// The readers' account: `reader_lines` and `gap_readers` from their tasks
/// (the rest is in `report`), and whether each sender was disconnected.
pub(super) async fn stats(
    b: &Burst,
    report: &Report,
    reader_lines: Vec<u64>,
    gap_readers: usize,
    drains: Vec<JoinHandle<bool>>,
) -> BurstStats {
    let mut senders_disconnected = 0;
    for d in drains {
        senders_disconnected += usize::from(matches!(d.await, Ok(true)));
    }
    BurstStats {
        read_rate: b.read_rate,
        readers_connected: b.readers.saturating_sub(report.reader_disconnects),
        reader_lines: Spread::of(reader_lines).unwrap_or_default(),
        gap_readers,
        senders_disconnected,
    }
}
