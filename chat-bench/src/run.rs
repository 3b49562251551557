//! Running a scenario: connect, synchronise, send, receive, account.

mod burst;
mod pacer;

use std::io;
use std::sync::atomic::{AtomicU32, AtomicU64, AtomicUsize, Ordering::Relaxed};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use hdrhistogram::Histogram;
use tokio::sync::watch;
use tokio::task::{JoinHandle, JoinSet};
use tokio::time::{sleep, timeout};

use crate::conn::{Conn, Dialer, Origin, ReadHalf, WriteHalf};
use crate::lines::LineBuf;
use crate::pace::ReadPace;
use crate::report::{Latency, Report};
use crate::token::{LineTemplate, MIN_LINE_LEN, SYNC_SENDER, TokenParser};
use crate::tracker::SeqTracker;
pub use burst::Burst;
use pacer::Paced;

/// Number of shared latency histograms (readers pick one by index).
const HIST_SHARDS: usize = 8;
/// Latency samples a reader collects before merging them into a histogram.
const SAMPLE_BATCH: usize = 512;
/// Largest latency the histograms can hold (1 hour, in ns).
const HIST_MAX_NS: u64 = 3_600_000_000_000;
/// Pause after all deliveries arrived, to catch late duplicates.
const DUP_GRACE: Duration = Duration::from_millis(200);
/// How a server following docs/protocol.md starts the last line it sends a
/// client it disconnects for a policy.
const DISCONNECTED: &[u8] = b"* error: disconnected (";

/// Which scenario runs; decides what is reported.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Scenario {
    /// N clients, S of them send M lines each.
    Fanout,
    /// N idle clients, one broadcast, server memory per connection.
    Idle,
    /// Fanout plus never-reading clients.
    Slow,
    /// Readers at a set rate while senders write all their lines at once.
    Burst,
}

impl Scenario {
    fn name(self) -> &'static str {
        match self {
            Self::Fanout => "fanout",
            Self::Idle => "idle",
            Self::Slow => "slow",
            Self::Burst => "burst",
        }
    }
}

/// A fully resolved run configuration.
#[derive(Debug, Clone)]
pub struct Config {
    /// Scenario being run.
    pub scenario: Scenario,
    /// Server addresses (`HOST:PORT`), at least one: several servers of
    /// one room, the clients spread over them in turn.
    pub addrs: Vec<String>,
    /// Connect with TLS, with these settings.
    pub tls: Option<crate::tls::Tls>,
    /// Reading clients (N); for `burst`, senders and readers.
    pub clients: usize,
    /// Sending clients among them (S), the first S.
    pub senders: usize,
    /// Lines per sender (M).
    pub lines: u32,
    /// Line size in bytes, LF included (B).
    pub size: usize,
    /// Lines per second per sender (open loop), or `None` (closed loop).
    pub rate: Option<f64>,
    /// Lines sent during this initial period are not in the latency stats.
    pub warmup: Duration,
    /// Never-reading clients.
    pub slow: usize,
    /// Server process whose RSS is sampled.
    pub pid: Option<u32>,
    /// Connections opened concurrently per batch.
    pub connect_batch: usize,
    /// Pause between connection batches.
    pub batch_pause: Duration,
    /// Timeout of one connection attempt.
    pub connect_timeout: Duration,
    /// Read buffer per client.
    pub read_buf: usize,
    /// Bytes a closed-loop sender writes per call.
    pub write_batch: usize,
    /// Closed loop: most lines a sender may be ahead of the slowest reading
    /// client; 0 = unlimited.
    pub window: u32,
    /// Bound on the whole run.
    pub timeout: Duration,
    /// Stop when no delivery arrived for this long; `None`: never (`burst`
    /// stops at its duration).
    pub quiet: Option<Duration>,
    /// How long slow clients may stay silent before counted as connected.
    pub slow_drain: Duration,
    /// Print progress on stderr once a second.
    pub progress: bool,
    /// `burst` only: its readers and where everybody connects from.
    pub burst: Option<Burst>,
}

/// A failure that prevents a meaningful report.
#[derive(Debug)]
pub struct SetupError(pub String);

impl std::fmt::Display for SetupError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

/// State shared by all client tasks.
#[derive(Debug)]
struct Shared {
    start: Instant,
    run: u32,
    clients: usize,
    senders: usize,
    lines: u32,
    /// Bytes per line, LF included.
    size: usize,
    delivered: AtomicU64,
    synced: AtomicUsize,
    /// The client that sends the sync line (it counts as synced).
    sync_from: usize,
    /// Reading clients whose connection ended (EOF, error, or the server's
    /// disconnect line).
    gone: AtomicUsize,
    /// Lines sent before this (ns since `start`) are not sampled.
    measure_from_ns: AtomicU64,
    hists: Vec<Mutex<LatencyHists>>,
    /// Flow control for closed-loop windows: at `receiver * senders +
    /// sender`, how many of the sender's lines (a prefix) the receiver got;
    /// `u32::MAX` for a sender itself and for receivers that are gone.
    /// Empty when no window is used.
    acked: Vec<AtomicU32>,
}

impl Shared {
    fn now_ns(&self) -> u64 {
        self.ns_at(Instant::now())
    }

    /// `at` in ns since `start`.
    fn ns_at(&self, at: Instant) -> u64 {
        u64::try_from(at.saturating_duration_since(self.start).as_nanos()).unwrap_or(u64::MAX)
    }

    fn merge_samples(&self, shard: usize, samples: &mut Vec<Sample>) {
        if samples.is_empty() {
            return;
        }
        let mut h = self.hists[shard % HIST_SHARDS]
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        for s in samples.iter() {
            h.read.saturating_record(s.read_ns);
            if let Some(arrived) = s.arrived_ns {
                h.arrived.saturating_record(arrived);
            }
        }
        samples.clear();
    }
}

/// The latency of one delivery, from when the line was sent (or due).
#[derive(Debug, Clone, Copy)]
struct Sample {
    /// Until the receiving client read it.
    read_ns: u64,
    /// Until it arrived in the receiving client's socket, by the kernel's
    /// receive timestamp, which leaves out how long the generator took to
    /// get to reading it (and, with TLS, to decrypting it); `None` if the
    /// kernel gave no timestamp.
    arrived_ns: Option<u64>,
}

/// Latency histograms (ns) of one shard, see [`Sample`].
#[derive(Debug)]
struct LatencyHists {
    read: Histogram<u64>,
    arrived: Histogram<u64>,
}

impl LatencyHists {
    fn new() -> Result<Self, SetupError> {
        let new = || {
            Histogram::new_with_bounds(1, HIST_MAX_NS, 3)
                .map_err(|e| SetupError(format!("histogram: {e}")))
        };
        Ok(LatencyHists {
            read: new()?,
            arrived: new()?,
        })
    }
}

/// Percentiles of a histogram of nanoseconds; `None` if it is empty.
fn latency(h: &Histogram<u64>) -> Option<Latency> {
    let us = |ns: u64| ns as f64 / 1e3;
    (!h.is_empty()).then(|| Latency {
        p50_us: us(h.value_at_quantile(0.5)),
        p99_us: us(h.value_at_quantile(0.99)),
        p999_us: us(h.value_at_quantile(0.999)),
        max_us: us(h.max()),
        samples: h.len(),
    })
}

/// What one reading client saw.
#[derive(Debug, Default)]
struct ReaderStats {
    deliveries: u64,
    dup: u64,
    reordered: u64,
    echoed: u64,
    other: u64,
    lost: u64,
    last_delivery_ns: u64,
    disconnected: bool,
    /// A line of some sender is missing before one that arrived.
    gap: bool,
}

/// Reads and accounts everything client `me` receives until `stop`, at
/// most as fast as `pace` allows if given.
async fn reader(
    mut rd: ReadHalf,
    me: usize,
    buf_size: usize,
    ctx: Arc<Shared>,
    mut stop: watch::Receiver<bool>,
    mut pace: Option<ReadPace>,
) -> ReaderStats {
    let parser = TokenParser::new(ctx.run);
    let mut lb = LineBuf::new(buf_size);
    let mut trackers = vec![SeqTracker::default(); ctx.senders];
    let mut samples: Vec<Sample> = Vec::new();
    let mut st = ReaderStats::default();
    let mut synced = me == ctx.sync_from;
    let windowed = !ctx.acked.is_empty();
    // Senders whose prefix moved in the current read (for `acked`).
    let mut touched = Vec::new();
    let mut touched_mark = vec![false; if windowed { ctx.senders } else { 0 }];
    loop {
        let res = tokio::select! {
            biased;
            _ = stop.changed() => break,
            r = read_paced(&mut rd, lb.spare(), pace.as_mut()) => r,
        };
        let now = ctx.now_ns();
        let arrived = match res {
            Ok((0, _)) | Err(_) => {
                st.disconnected = true;
                break;
            }
            Ok((n, arrived)) => {
                lb.commit(n);
                arrived.map(|at| ctx.ns_at(at))
            }
        };
        let measure_from = ctx.measure_from_ns.load(Relaxed);
        let mut new = 0u64;
        lb.drain_lines(|line| {
            let Some(tok) = parser.parse(line) else {
                // Its last line: the server closes the connection next.
                st.disconnected |= line.starts_with(DISCONNECTED);
                st.other += 1;
                return;
            };
            if tok.sender == SYNC_SENDER {
                if !synced {
                    synced = true;
                    ctx.synced.fetch_add(1, Relaxed);
                }
                return;
            }
            let sender = tok.sender as usize;
            if sender == me {
                st.echoed += 1;
                return;
            }
            let Some(tr) = trackers.get_mut(sender) else {
                st.other += 1;
                return;
            };
            let obs = tr.observe(tok.seq);
            if !obs.is_new() {
                st.dup += 1;
                return;
            }
            if obs == crate::tracker::Observation::Reordered {
                st.reordered += 1;
            }
            new += 1;
            if windowed && !touched_mark[sender] {
                touched_mark[sender] = true;
                touched.push(sender);
            }
            if tok.sent_ns >= measure_from {
                samples.push(Sample {
                    read_ns: now.saturating_sub(tok.sent_ns).max(1),
                    arrived_ns: arrived.map(|at| at.saturating_sub(tok.sent_ns).max(1)),
                });
            }
        });
        if new > 0 {
            for s in touched.drain(..) {
                touched_mark[s] = false;
                let prefix = trackers[s].received_prefix();
                ctx.acked[me * ctx.senders + s].store(prefix, Relaxed);
            }
            st.deliveries += new;
            st.last_delivery_ns = now;
            ctx.delivered.fetch_add(new, Relaxed);
            if samples.len() >= SAMPLE_BATCH {
                ctx.merge_samples(me, &mut samples);
            }
        }
        if st.disconnected {
            break;
        }
    }
    if st.disconnected {
        ctx.gone.fetch_add(1, Relaxed);
    }
    ctx.merge_samples(me, &mut samples);
    if windowed {
        // A client that stopped reading holds no sender back any more.
        for s in 0..ctx.senders {
            ctx.acked[me * ctx.senders + s].store(u32::MAX, Relaxed);
        }
    }
    let total = u64::from(ctx.lines);
    let others = || trackers.iter().enumerate().filter(|&(s, _)| s != me);
    st.lost = others().map(|(_, t)| t.lost(total)).sum();
    st.gap = others().any(|(_, t)| t.has_gap());
    st
}

/// [`ReadHalf::read_stamped`], reading at most what `pace` allows (after
/// waiting until it allows a chunk) if given.
async fn read_paced(
    rd: &mut ReadHalf,
    buf: &mut [u8],
    pace: Option<&mut ReadPace>,
) -> io::Result<(usize, Option<Instant>)> {
    let Some(pace) = pace else {
        return rd.read_stamped(buf).await;
    };
    let wait = pace.wait(Instant::now());
    if !wait.is_zero() {
        sleep(wait).await;
    }
    let room = pace.allowance(Instant::now()).max(1).min(buf.len());
    let read = rd.read_stamped(&mut buf[..room]).await;
    if let Ok((n, _)) = read {
        pace.spend(n);
    }
    read
}

/// Sends client `idx`'s lines as fast as the server takes them (closed
/// loop), at most `cfg.window` ahead of the slowest reader if set.
async fn sender(
    wr: WriteHalf,
    idx: usize,
    cfg: Arc<Config>,
    ctx: Arc<Shared>,
    mut stop: watch::Receiver<bool>,
) -> (WriteHalf, Option<io::Error>) {
    let sender_id = u32::try_from(idx).unwrap_or(u32::MAX - 1);
    let Ok(mut tpl) = LineTemplate::new(ctx.run, sender_id, cfg.size) else {
        return (wr, None);
    };
    let per_batch = (cfg.write_batch / cfg.size).max(1);
    let mut buf = Vec::with_capacity(per_batch * cfg.size);
    let mut seq = 0u32;
    // Lines of this sender that every reader has received (window only).
    let mut all_acked = 0u32;
    while seq < cfg.lines {
        buf.clear();
        let mut room = per_batch;
        if !ctx.acked.is_empty() {
            if seq - all_acked >= cfg.window {
                all_acked = (0..ctx.clients)
                    .map(|r| ctx.acked[r * ctx.senders + idx].load(Relaxed))
                    .min()
                    .unwrap_or(u32::MAX)
                    .min(seq);
            }
            room = room.min(cfg.window.saturating_sub(seq - all_acked) as usize);
            if room == 0 {
                tokio::select! {
                    biased;
                    _ = stop.changed() => break,
                    () = sleep(Duration::from_millis(1)) => {}
                }
                continue;
            }
        }
        let now = ctx.now_ns();
        while seq < cfg.lines && buf.len() / cfg.size < room {
            buf.extend_from_slice(tpl.render(seq, now));
            seq += 1;
        }
        let res = tokio::select! {
            biased;
            _ = stop.changed() => break,
            r = wr.write_all(&buf) => r,
        };
        if let Err(e) = res {
            return (wr, Some(e));
        }
    }
    (wr, None)
}

/// Reads the resident set size (KiB) of `pid` from `/proc`.
pub fn read_rss_kib(pid: u32) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let line = status.lines().find(|l| l.starts_with("VmRSS:"))?;
    line.split_whitespace().nth(1)?.parse().ok()
}

/// Opens one connection per (client index, origin), concurrently; returns
/// them in the order given, and the failures. The order matters: a
/// client's index picks its server, and the first S clients send, so that
/// the senders are spread over the servers as the readers are.
async fn connect_batch(
    dialer: &Dialer,
    origins: impl IntoIterator<Item = (usize, Origin)>,
) -> (Vec<Conn>, usize, Option<String>) {
    let tasks: Vec<_> = origins
        .into_iter()
        .map(|(client, origin)| {
            let dialer = dialer.clone();
            tokio::spawn(async move { dialer.connect(client, origin).await })
        })
        .collect();
    let mut streams = Vec::with_capacity(tasks.len());
    let mut failures = 0;
    let mut first_err = None;
    for task in tasks {
        let err = match task.await {
            Ok(Ok(s)) => {
                streams.push(s);
                continue;
            }
            Ok(Err(e)) => e.to_string(),
            Err(e) => e.to_string(),
        };
        failures += 1;
        first_err.get_or_insert(err);
    }
    (streams, failures, first_err)
}

/// The connected clients, by index: client `i`'s write half is
/// `writers[i]` (taken while it sends); each read half has a task.
#[derive(Debug, Default)]
struct Clients {
    writers: Vec<Option<WriteHalf>>,
    /// The reading clients' accounts, in order of their index.
    readers: Vec<JoinHandle<ReaderStats>>,
    /// Clients that only drain what they receive (`burst` senders):
    /// whether each was disconnected.
    drains: Vec<JoinHandle<bool>>,
}

impl Clients {
    /// Makes `conn` the next client; `task` reads it, given its read half
    /// and index.
    fn add<T>(&mut self, conn: Conn, task: impl FnOnce(ReadHalf, usize) -> T) -> T {
        let (rd, wr) = conn.into_split();
        self.writers.push(Some(wr));
        task(rd, self.writers.len() - 1)
    }
}

/// Connects `count` clients, the first of them client `first_client` of
/// the run, client `i` of them from `origin(i)`, in paced batches, and
/// hands each connection to `accept` in order; gives up at `deadline`.
/// Returns how many failed and the first error.
///
/// Batches must stay below the server's listen backlog: a connection
/// whose final ACK is dropped by a full accept queue looks established here
/// but may never be accepted while it sends nothing.
async fn connect_group(
    cfg: &Config,
    dialer: &Dialer,
    (first_client, count, what): (usize, usize, &str),
    origin: impl Fn(usize) -> Origin,
    deadline: Instant,
    mut accept: impl FnMut(Conn),
) -> (usize, Option<String>) {
    let (mut connected, mut failures) = (0, 0);
    let mut first_err = None;
    let mut last_print = Instant::now();
    while connected + failures < count && Instant::now() < deadline {
        let first = connected + failures;
        let todo = cfg.connect_batch.max(1).min(count - first);
        let origins = (first..first + todo).map(|i| (first_client + i, origin(i)));
        let (streams, f, e) = connect_batch(dialer, origins).await;
        failures += f;
        if first_err.is_none() {
            first_err = e;
        }
        connected += streams.len();
        streams.into_iter().for_each(&mut accept);
        sleep(cfg.batch_pause).await;
        if cfg.progress && last_print.elapsed() >= Duration::from_secs(1) {
            last_print = Instant::now();
            eprintln!("connected {connected} of {count} {what} ({failures} failed)");
        }
    }
    (count - connected, first_err)
}

/// Sends sync lines from `w0`, client `ctx.sync_from` (with backoff) until
/// every other client has seen one; this proves broadcast works and that the server has
/// registered every connection. Returns whether all saw it.
async fn synchronise(
    w0: &WriteHalf,
    ctx: &Shared,
    target: usize,
    deadline: Instant,
) -> Result<bool, io::Error> {
    let Ok(mut tpl) = LineTemplate::new(ctx.run, SYNC_SENDER, MIN_LINE_LEN) else {
        return Ok(false);
    };
    let mut seq = 0u32;
    let mut wait = Duration::from_millis(50);
    while ctx.synced.load(Relaxed) < target {
        if Instant::now() >= deadline {
            return Ok(false);
        }
        let line = tpl.render(seq, ctx.now_ns());
        match timeout(Duration::from_secs(2), w0.write_all(line)).await {
            Ok(r) => r?,
            Err(_) => return Ok(false),
        }
        seq += 1;
        // Resend only once the count stopped moving for `wait`: resending
        // while the server is still broadcasting would pile up work on it.
        let mut seen = ctx.synced.load(Relaxed);
        let mut until = Instant::now() + wait;
        while seen < target && Instant::now() < until.min(deadline) {
            sleep(Duration::from_millis(2)).await;
            let now_seen = ctx.synced.load(Relaxed);
            if now_seen != seen {
                seen = now_seen;
                until = Instant::now() + wait;
            }
        }
        wait = (wait * 2).min(Duration::from_secs(1));
    }
    Ok(true)
}

/// After the run: does the server close never-reading clients? Each is
/// drained; EOF or an error means it was disconnected, silence for
/// `idle` means it is still connected.
async fn drain_slow(slow: Vec<Conn>, idle: Duration) -> usize {
    let cap = Instant::now() + idle * 3;
    let mut set = JoinSet::new();
    for conn in slow {
        set.spawn(async move {
            // The write half is kept: dropping it would half-close.
            let (mut rd, _wr) = conn.into_split();
            let mut buf = vec![0u8; 64 * 1024];
            loop {
                match timeout(idle, rd.read(&mut buf)).await {
                    Err(_) => return false,
                    Ok(Ok(0) | Err(_)) => return true,
                    Ok(Ok(_)) if Instant::now() >= cap => return false,
                    Ok(Ok(_)) => {}
                }
            }
        });
    }
    let mut disconnected = 0;
    while let Some(r) = set.join_next().await {
        if matches!(r, Ok(true)) {
            disconnected += 1;
        }
    }
    disconnected
}

/// A run id that differs between runs, so stale lines are not counted.
fn run_id() -> u32 {
    let t = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| {
            d.subsec_nanos() ^ (d.as_secs() as u32).rotate_left(16)
        });
    t ^ std::process::id().rotate_left(8)
}

/// Runs one scenario to completion (bounded by `cfg.timeout`).
pub async fn run(cfg: Config) -> Result<Report, SetupError> {
    let cfg = Arc::new(cfg);
    let start = Instant::now();
    let deadline = start + cfg.timeout;
    let mut addrs = Vec::with_capacity(cfg.addrs.len());
    for name in &cfg.addrs {
        let addr = tokio::net::lookup_host(name)
            .await
            .map_err(|e| SetupError(format!("cannot resolve {name}: {e}")))?
            .next()
            .ok_or_else(|| SetupError(format!("{name} resolves to no address")))?;
        addrs.push(addr);
    }
    if addrs.is_empty() {
        return Err(SetupError("no server address".into()));
    }
    let dialer = Dialer::new(addrs, cfg.connect_timeout, cfg.tls.clone());
    let mut hists = Vec::with_capacity(HIST_SHARDS);
    for _ in 0..HIST_SHARDS {
        hists.push(Mutex::new(LatencyHists::new()?));
    }
    let ctx = Arc::new(Shared {
        start,
        run: run_id(),
        clients: cfg.clients,
        senders: cfg.senders,
        lines: cfg.lines,
        size: cfg.size,
        delivered: AtomicU64::new(0),
        synced: AtomicUsize::new(0),
        // burst: the first reader, so that no sender has used any of a
        // server's flood budget before its burst.
        sync_from: if cfg.burst.is_some() { cfg.senders } else { 0 },
        gone: AtomicUsize::new(0),
        measure_from_ns: AtomicU64::new(u64::MAX),
        hists,
        acked: if cfg.window > 0 && cfg.rate.is_none() {
            (0..cfg.clients * cfg.senders)
                .map(|i| {
                    AtomicU32::new(if i / cfg.senders == i % cfg.senders {
                        u32::MAX
                    } else {
                        0
                    })
                })
                .collect()
        } else {
            Vec::new()
        },
    });
    let mut report = Report {
        scenario: cfg.scenario.name(),
        addr: cfg.addrs.join(", "),
        servers: cfg.addrs.len(),
        tls: cfg.tls.is_some(),
        clients: cfg.burst.as_ref().map_or(cfg.clients, |b| b.readers),
        senders: cfg.senders,
        lines: cfg.lines,
        size: cfg.size,
        rate: cfg.rate,
        slow: cfg.slow,
        ..Report::default()
    };
    let (stop_tx, stop_rx) = watch::channel(false);

    // RSS sampling for the whole run.
    report.rss_before_kib = cfg.pid.and_then(read_rss_kib);
    let sampler = cfg.pid.map(|pid| {
        let mut stop = stop_rx.clone();
        tokio::spawn(async move {
            let mut peak = 0;
            loop {
                peak = peak.max(read_rss_kib(pid).unwrap_or(0));
                tokio::select! {
                    _ = stop.changed() => return peak,
                    () = sleep(Duration::from_millis(100)) => {}
                }
            }
        })
    });

    // Connect the clients and start a task per client that reads it.
    let mut clients = Clients::default();
    if let Some(b) = &cfg.burst {
        burst::connect(&cfg, b, &dialer, &ctx, &stop_rx, deadline, &mut clients).await?;
    } else {
        let (failures, first_err) = connect_group(
            &cfg,
            &dialer,
            (0, cfg.clients, "clients"),
            |_| Origin::default(),
            deadline,
            |stream| {
                let (ctx, stop) = (ctx.clone(), stop_rx.clone());
                let task =
                    clients.add(stream, |rd, i| reader(rd, i, cfg.read_buf, ctx, stop, None));
                clients.readers.push(tokio::spawn(task));
            },
        )
        .await;
        report.connect_failures = failures;
        if failures > 0 && cfg.scenario != Scenario::Idle {
            return Err(SetupError(format!(
                "connected only {} of {} clients to {}: {}",
                clients.writers.len(),
                cfg.clients,
                report.addr,
                first_err.unwrap_or_else(|| "overall timeout".into())
            )));
        }
        if let Some(e) = &first_err {
            eprintln!("warning: {failures} connections failed, first error: {e}");
        }
    }
    let Clients {
        mut writers,
        readers,
        drains,
    } = clients;
    let connected = writers.len();
    let (slow, slow_failures, slow_err) = if cfg.slow > 0 {
        let slow = (connected..connected + cfg.slow).map(|i| (i, Origin::default()));
        connect_batch(&dialer, slow).await
    } else {
        (Vec::new(), 0, None)
    };
    if slow_failures > 0 {
        return Err(SetupError(format!(
            "connected only {} of {} never-reading clients: {}",
            slow.len(),
            cfg.slow,
            slow_err.unwrap_or_default()
        )));
    }

    // Synchronise: everybody must see a line from one client.
    let sync_target = connected.saturating_sub(1);
    if let Some(Some(w0)) = writers.get(ctx.sync_from) {
        let sync_deadline = deadline.min(Instant::now() + Duration::from_secs(60));
        match synchronise(w0, &ctx, sync_target, sync_deadline).await {
            Ok(true) => {}
            Ok(false) if cfg.scenario == Scenario::Idle => {}
            Ok(false) => {
                return Err(SetupError(format!(
                    "only {} of {sync_target} clients received the sync broadcast; \
                     is {} a broadcast chat server?",
                    ctx.synced.load(Relaxed),
                    report.addr
                )));
            }
            Err(e) => return Err(SetupError(format!("sending the sync line failed: {e}"))),
        }
    }
    let synced = ctx.synced.load(Relaxed).min(sync_target);

    if cfg.scenario == Scenario::Idle {
        sleep(Duration::from_millis(200)).await;
        report.rss_after_kib = cfg.pid.and_then(read_rss_kib);
        report.expected = sync_target as u64;
        report.deliveries = synced as u64;
        report.lost = (sync_target - synced) as u64;
    } else {
        run_load(&cfg, &ctx, &mut writers, &stop_tx, &mut report, deadline).await;
    }

    // Stop everything and collect the readers' accounts.
    let _ = stop_tx.send(true);
    let send_start = ctx.measure_from_ns.load(Relaxed);
    let mut last_delivery_ns = 0;
    let mut reader_lines = Vec::with_capacity(readers.len());
    let mut gap_readers = 0;
    for r in readers {
        let Ok(st) = r.await else { continue };
        reader_lines.push(st.deliveries);
        gap_readers += usize::from(st.gap);
        if cfg.scenario != Scenario::Idle {
            report.deliveries += st.deliveries;
            report.lost += st.lost;
        }
        report.dup += st.dup;
        report.reordered += st.reordered;
        report.echoed += st.echoed;
        report.other_lines += st.other;
        report.reader_disconnects += usize::from(st.disconnected);
        last_delivery_ns = last_delivery_ns.max(st.last_delivery_ns);
    }
    if let Some(b) = &cfg.burst {
        report.burst = Some(burst::stats(b, &report, reader_lines, gap_readers, drains).await);
    }
    drop(writers);
    if cfg.scenario != Scenario::Idle {
        let warmup_ns = u64::try_from(cfg.warmup.as_nanos()).unwrap_or(0);
        let first_send = send_start.saturating_sub(warmup_ns);
        report.secs = last_delivery_ns.saturating_sub(first_send) as f64 / 1e9;
        let mut all = LatencyHists::new()?;
        for h in &ctx.hists {
            let h = h.lock().unwrap_or_else(PoisonError::into_inner);
            let _ = all.read.add(&h.read);
            let _ = all.arrived.add(&h.arrived);
        }
        report.latency = latency(&all.read);
        report.arrival = latency(&all.arrived);
        report.rss_after_kib = cfg.pid.and_then(read_rss_kib);
    }
    if let Some(s) = sampler {
        report.rss_peak_kib = s.await.ok().filter(|&p| p > 0);
    }
    if cfg.slow > 0 {
        report.slow_disconnected = Some(drain_slow(slow, cfg.slow_drain).await);
    }
    Ok(report)
}

/// The sending phase: start the senders, watch progress, decide when to stop.
async fn run_load(
    cfg: &Arc<Config>,
    ctx: &Arc<Shared>,
    writers: &mut [Option<WriteHalf>],
    stop_tx: &watch::Sender<bool>,
    report: &mut Report,
    deadline: Instant,
) {
    let n = writers.len();
    // Every line reaches every reading client but its sender; burst
    // senders only drain.
    let (readers, per_line) = match cfg.burst {
        Some(_) => (n - cfg.senders, n - cfg.senders),
        None => (n, n.saturating_sub(1)),
    };
    let expected = cfg.senders as u64 * u64::from(cfg.lines) * per_line as u64;
    report.expected = expected;
    let limit = cfg.burst.as_ref().map(|b| Instant::now() + b.duration);
    let send_start_ns = ctx.now_ns();
    let warmup_ns = u64::try_from(cfg.warmup.as_nanos()).unwrap_or(u64::MAX);
    ctx.measure_from_ns
        .store(send_start_ns.saturating_add(warmup_ns), Relaxed);
    let mut senders = JoinSet::new();
    let mut pacer = None;
    if let Some(rate) = cfg.rate {
        let mut paced: Vec<Paced> = (writers.iter_mut().enumerate().take(cfg.senders))
            .filter_map(|(idx, slot)| {
                let wr = slot.take()?;
                Some(Paced {
                    idx,
                    wr,
                    error: None,
                })
            })
            .collect();
        let (lines, ctx, stop) = (cfg.lines, ctx.clone(), stop_tx.subscribe());
        let handle = tokio::runtime::Handle::current();
        pacer = Some(tokio::task::spawn_blocking(move || {
            let lag = pacer::pace(&mut paced, rate, lines, &ctx, send_start_ns, &stop, &handle);
            (paced, lag)
        }));
    } else {
        for (idx, slot) in writers.iter_mut().enumerate().take(cfg.senders) {
            if let Some(wr) = slot.take() {
                let fut = sender(wr, idx, cfg.clone(), ctx.clone(), stop_tx.subscribe());
                senders.spawn(async move { (idx, fut.await) });
            }
        }
    }
    let tick = Duration::from_millis(50);
    let mut last = 0u64;
    let mut last_progress = Instant::now();
    let mut last_print = Instant::now();
    let mut printed = 0u64;
    let mut send_errors = 0usize;
    loop {
        sleep(tick).await;
        let now = Instant::now();
        let d = ctx.delivered.load(Relaxed);
        if d >= expected {
            sleep(DUP_GRACE).await;
            break;
        }
        if d != last {
            last = d;
            last_progress = now;
        }
        if let Some(quiet) = cfg
            .quiet
            .filter(|&q| now.duration_since(last_progress) >= q)
        {
            report.stop_reason = Some(format!(
                "no delivery for {:.1} s ({d} of {expected} arrived)",
                quiet.as_secs_f64()
            ));
            break;
        }
        if ctx.gone.load(Relaxed) >= readers {
            report.stop_reason = Some(format!(
                "every reading client was disconnected ({d} of {expected} arrived)"
            ));
            break;
        }
        if limit.is_some_and(|at| now >= at) {
            report.stop_reason = Some(format!("--duration over ({d} of {expected} arrived)"));
            break;
        }
        if now >= deadline {
            report.stop_reason = Some(format!(
                "overall timeout of {} s reached ({d} of {expected} arrived)",
                cfg.timeout.as_secs()
            ));
            break;
        }
        if cfg.progress && now.duration_since(last_print) >= Duration::from_secs(1) {
            let secs = now.duration_since(last_print).as_secs_f64();
            eprintln!(
                "progress: {d} of {expected} deliveries ({:.1}%), {:.0}/s",
                d as f64 * 100.0 / expected.max(1) as f64,
                (d - printed) as f64 / secs
            );
            last_print = now;
            printed = d;
        }
        while let Some(r) = senders.try_join_next() {
            if let Ok((idx, (wr, err))) = r {
                if let Some(e) = err {
                    send_errors += 1;
                    eprintln!("sender {idx}: write failed: {e}");
                }
                writers[idx] = Some(wr);
            }
        }
    }
    // Stop everybody; senders hand their write halves back (dropping one
    // would half-close the connection); abort any that do not react.
    let _ = stop_tx.send(true);
    let collect = async {
        while let Some(r) = senders.join_next().await {
            if let Ok((idx, (wr, _))) = r {
                writers[idx] = Some(wr);
            }
        }
    };
    if timeout(Duration::from_secs(2), collect).await.is_err() {
        senders.abort_all();
    }
    if let Some(pacer) = pacer {
        // It sees the stop within its longest sleep or wait.
        if let Ok((paced, lag)) = pacer.await {
            report.send_lag = lag.as_ref().and_then(latency);
            for p in paced {
                if let Some(e) = p.error {
                    send_errors += 1;
                    eprintln!("sender {}: write failed: {e}", p.idx);
                }
                writers[p.idx] = Some(p.wr);
            }
        }
    }
    if send_errors > 0 && report.stop_reason.is_none() {
        report.stop_reason = Some(format!("{send_errors} senders failed to write"));
    }
}

#[cfg(test)]
mod tests {
    use std::net::{SocketAddr, TcpListener};

    use super::*;

    #[tokio::test]
    async fn clients_are_spread_over_the_servers_in_turn_in_their_order() {
        // Listeners that never accept: the kernel completes the handshakes
        // in their backlog.
        let listeners: Vec<_> = (0..3)
            .map(|_| TcpListener::bind("127.0.0.1:0").unwrap())
            .collect();
        let addrs: Vec<SocketAddr> = listeners.iter().map(|l| l.local_addr().unwrap()).collect();
        let dialer = Dialer::new(addrs.clone(), Duration::from_secs(10), None);
        // As the slow clients of a run with 4 others: indices 4.., in order
        // whichever connection completes first.
        let (conns, failures, _) =
            connect_batch(&dialer, (4..11).map(|i| (i, Origin::default()))).await;
        assert_eq!(failures, 0);
        let servers: Vec<SocketAddr> = conns.iter().map(|c| c.peer_addr().unwrap()).collect();
        let want: Vec<SocketAddr> = (4..11).map(|i| addrs[i % 3]).collect();
        assert_eq!(servers, want);
    }

    #[test]
    fn senders_and_readers_are_spread_alike() {
        let addrs: Vec<SocketAddr> = (1..=2)
            .map(|p| SocketAddr::from(([127, 0, 0, 1], p)))
            .collect();
        let dialer = Dialer::new(addrs.clone(), Duration::from_secs(1), None);
        // fanout N=100 S=10 over 2 servers: the senders are clients 0..10.
        let on = |range: std::ops::Range<usize>, server| {
            range.filter(|&c| dialer.server_of(c) == server).count()
        };
        for server in addrs {
            assert_eq!(on(0..10, server), 5);
            assert_eq!(on(0..100, server), 50);
        }
    }
}
