//! `chat-bench`: a load generator for any line-based broadcast TCP chat
//! server (every line a client sends reaches all other clients, possibly
//! with a prefix such as `NICK: `).
//!
//! It measures deliveries per second, loss, duplication, reordering and
//! latency, the server's memory per idle connection, how the server
//! treats clients that never read, and whether readers at a set rate keep
//! every line while others burst. A summary goes to stderr and one
//! `RESULT key=value ...` line to stdout.
//!
//! Latency runs from the send time (in open loop: the time the line was
//! due) to two ends: when a receiving client read the line (`p99_us`), and
//! when it arrived in that client's socket, by the kernel's receive
//! timestamp (`arrival_p99_us`). The second leaves out how long the
//! generator, which shares the machine's cores with the server, took to get
//! to reading; both count how late the generator sent (`send_lag_p99_us`).
//!
//! Given several server addresses (servers sharing one room), the clients
//! are spread over them in turn; every check stays the same, since each
//! line must still reach every client but its sender, once and in its
//! sender's order, whichever server either is on.
//!
//! With `--tls` every client connects over TLS (rustls); handshakes are done
//! while connecting, before the clock starts, so that the run measures the
//! chat. A line's arrival is then when the ciphertext completing its records
//! arrived (nothing of it could be read before).
#![forbid(unsafe_code)]

mod conn;
mod lines;
mod pace;
mod report;
mod run;
mod tls;
mod token;
mod tracker;

use std::net::IpAddr;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use clap::{Args, Parser, Subcommand};

use crate::run::{Burst, Config, Scenario};
use crate::tls::Tls;

/// Load generator for line-based broadcast TCP chat servers.
///
/// Each line sent is `<filler> cb:<run>:<sender>:<seq>:<send-ns>` padded to
/// --size bytes (LF included); received lines are matched by that token
/// anywhere in the line, other lines (prefixes, notices) are ignored.
/// Output: a summary on stderr and one `RESULT key=value ...` line on stdout.
/// Exit status: 0 clean, 1 lines lost/duplicated/reordered (burst: a reader
/// disconnected or missing a line before one it got; unless --allow-loss),
/// 2 setup failure (cannot connect, broadcast not working).
#[derive(Debug, Parser)]
#[command(name = "chat-bench", version)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// N clients connect; S of them send M lines each; everybody reads.
    /// Reports deliveries/s, loss/dup/reorder and latency percentiles.
    Fanout {
        #[command(flatten)]
        load: LoadArgs,
        #[command(flatten)]
        common: CommonArgs,
    },
    /// Open N idle connections, check one broadcast reaches all, and report
    /// the server's RSS growth per connection (needs --pid).
    Idle {
        /// Number of idle connections.
        #[arg(long, short = 'n')]
        clients: usize,
        #[command(flatten)]
        common: CommonArgs,
    },
    /// Like fanout plus K clients that never read; reports how many of those
    /// the server disconnected and (with --pid) its peak RSS.
    Slow {
        #[command(flatten)]
        load: LoadArgs,
        /// Number of never-reading clients.
        #[arg(long, default_value_t = 5)]
        slow: usize,
        /// After the run, a never-reading client silent for this long is
        /// counted as still connected (EOF or error = disconnected).
        #[arg(long, default_value_t = 3.0)]
        slow_drain_secs: f64,
        #[command(flatten)]
        common: CommonArgs,
    },
    /// R readers read at a set rate while S senders each write M lines of
    /// B bytes at once. Reports how many readers stayed connected and the
    /// lines each got (exit 1 if one was disconnected or misses a sender's
    /// line before one it got), deliveries/s and latency. Stops once every
    /// reader has every line, or --duration after the burst (--quiet-secs
    /// does not apply).
    Burst {
        #[command(flatten)]
        burst: BurstArgs,
        #[command(flatten)]
        common: CommonArgs,
    },
}

/// Shape of the burst: who sends, who reads, from where, how fast.
#[derive(Debug, Args)]
struct BurstArgs {
    /// Reading clients (R).
    #[arg(long, default_value_t = 20)]
    readers: usize,
    /// Bytes per second each reader reads (a token bucket: it reads what
    /// the bucket allows, then sleeps until more is allowed).
    #[arg(long, default_value_t = 102_400)]
    read_rate: u64,
    /// SO_RCVBUF of each reader, set before connecting, so that what it has
    /// not read waits in the server rather than the kernel; 0 = the
    /// system's autotuning.
    #[arg(long, default_value_t = 65_536)]
    reader_rcvbuf: u32,
    /// Sending clients (S).
    #[arg(long, short = 's', default_value_t = 16)]
    senders: usize,
    /// Source addresses of the senders, comma separated, used in turn (any
    /// 127.x.y.z works on Linux loopback). A server limits connections
    /// per address (16 by default): more senders need more addresses.
    #[arg(long, value_delimiter = ',', default_value = "127.0.0.1")]
    sender_ips: Vec<IpAddr>,
    /// Source addresses of the readers, comma separated, used in turn;
    /// others than the senders', so that per-address limits do not refuse
    /// them.
    #[arg(long, value_delimiter = ',', default_value = "127.0.1.1,127.0.1.2")]
    reader_ips: Vec<IpAddr>,
    /// Lines per sender (M), all written at once.
    #[arg(long, short = 'm', default_value_t = 50)]
    lines: u32,
    /// Bytes per line, LF included (B, at least 47).
    #[arg(long, short = 'b', default_value_t = 4000)]
    size: usize,
    /// Stop at the latest this many seconds after the burst.
    #[arg(long, default_value_t = 20.0)]
    duration: f64,
}

/// Shape of the load.
#[derive(Debug, Args)]
struct LoadArgs {
    /// Reading clients (N), senders included.
    #[arg(long, short = 'n')]
    clients: usize,
    /// Clients that send (S <= N).
    #[arg(long, short = 's')]
    senders: usize,
    /// Lines per sender (M).
    #[arg(long, short = 'm')]
    lines: u32,
    /// Bytes per line, LF included (B, at least 47).
    #[arg(long, short = 'b', default_value_t = 64)]
    size: usize,
    /// Open loop: lines per second per sender on a fixed schedule (the
    /// senders evenly out of phase, all on one thread with a precise clock);
    /// latency is measured from when each line was due. Default: closed
    /// loop, as fast as the server takes them.
    #[arg(long)]
    rate: Option<f64>,
    /// Lines sent during the first this many ms are excluded from latency.
    #[arg(long, default_value_t = 0)]
    warmup_ms: u64,
    /// Bytes per write call of a closed-loop sender.
    #[arg(long, default_value_t = 16 * 1024)]
    write_batch: usize,
    /// Closed loop: most lines a sender may be ahead of the slowest reading
    /// client. Bounds what the server must queue per client (about
    /// S*window*size bytes) and so the latency; 0 = unlimited (latency is
    /// then mostly time queued, and servers with a per-client queue limit
    /// may drop readers that fall behind as too slow).
    #[arg(long, default_value_t = 0)]
    window: u32,
}

/// Options shared by all scenarios.
#[derive(Debug, Args)]
struct CommonArgs {
    /// Server address. Several servers of one room (the flag repeated, or
    /// the addresses comma separated): the clients are spread over them in
    /// turn, client i to address i mod K, so that the senders (the first S
    /// clients) and the readers are spread alike.
    #[arg(
        long,
        short = 'a',
        value_delimiter = ',',
        default_value = "127.0.0.1:12345",
        value_name = "HOST:PORT"
    )]
    addr: Vec<String>,
    /// Connect with TLS (TLS 1.3 or 1.2, no session resumption: each
    /// connection a full handshake, done while connecting, before the
    /// run's clock starts).
    #[arg(long)]
    tls: bool,
    /// With --tls: trust the certificates in this PEM file (a CA, or the
    /// server's own certificate if it is fit to be one). Without it ANY
    /// certificate is accepted (the handshake signature is still checked):
    /// chat-bench measures a server it started itself, usually with a
    /// self-signed certificate made at startup; that is no way to talk to
    /// anything else.
    #[arg(long, requires = "tls", value_name = "FILE")]
    tls_ca: Option<PathBuf>,
    /// With --tls: the name to ask for (SNI) and, with --tls-ca, that the
    /// certificate must be for.
    #[arg(
        long,
        requires = "tls",
        default_value = "localhost",
        value_name = "NAME"
    )]
    tls_server_name: String,
    /// Server process id: its VmRSS is read from /proc/PID/status.
    #[arg(long)]
    pid: Option<u32>,
    /// Connections opened concurrently per batch; keep it below the
    /// server's listen backlog (128 for a listener bound with defaults) or
    /// some connections may end up half-open and never accepted.
    #[arg(long, default_value_t = 100)]
    batch: usize,
    /// Pause between connection batches, ms, so the server can accept.
    #[arg(long, default_value_t = 20)]
    batch_pause_ms: u64,
    /// Timeout of one connection attempt (with --tls, handshake included), s.
    #[arg(long, default_value_t = 10.0)]
    connect_timeout_secs: f64,
    /// Read buffer per client, bytes.
    #[arg(long, default_value_t = 16 * 1024)]
    read_buf: usize,
    /// Tokio worker threads.
    #[arg(long, default_value_t = 2)]
    threads: usize,
    /// Bound on the whole run, s; the run stops and reports after it.
    #[arg(long, default_value_t = 120.0)]
    timeout_secs: f64,
    /// Stop once no line arrived for this long, s; the rest counts as lost.
    #[arg(long, default_value_t = 5.0)]
    quiet_secs: f64,
    /// Exit 0 even if lines were lost, duplicated or reordered.
    #[arg(long)]
    allow_loss: bool,
    /// No progress lines on stderr.
    #[arg(long, short = 'q')]
    no_progress: bool,
}

/// A duration from a user-given number of seconds.
fn secs(s: f64, what: &str) -> Result<Duration, String> {
    Duration::try_from_secs_f64(s).map_err(|e| format!("--{what}: {e}"))
}

/// The load of an `idle` run: connections that never send.
fn idle_load(clients: usize) -> LoadArgs {
    LoadArgs {
        clients,
        senders: 0,
        lines: 0,
        size: 64,
        rate: None,
        warmup_ms: 0,
        write_batch: 16 * 1024,
        window: 0,
    }
}

/// The load and settings of a `burst` run: the senders first, then the
/// readers; each sender's lines in one write.
fn burst_load(b: BurstArgs) -> Result<(LoadArgs, Burst), String> {
    if b.readers == 0 || b.senders == 0 {
        return Err("--readers and --senders must be at least 1".into());
    }
    if b.sender_ips.is_empty() || b.reader_ips.is_empty() {
        return Err("--sender-ips and --reader-ips must name an address".into());
    }
    let write_batch = (b.lines as usize)
        .checked_mul(b.size)
        .ok_or("--lines times --size is too large")?;
    let load = LoadArgs {
        clients: b.senders + b.readers,
        senders: b.senders,
        lines: b.lines,
        size: b.size,
        rate: None,
        warmup_ms: 0,
        write_batch,
        window: 0,
    };
    let burst = Burst {
        readers: b.readers,
        read_rate: b.read_rate.max(1),
        reader_rcvbuf: (b.reader_rcvbuf > 0).then_some(b.reader_rcvbuf),
        sender_ips: b.sender_ips,
        reader_ips: b.reader_ips,
        duration: secs(b.duration, "duration")?,
    };
    Ok((load, burst))
}

/// Turns the command line into a run configuration.
fn config(cli: Cli) -> Result<(Config, CommonArgs), String> {
    let (scenario, load, slow, drain, burst, common) = match cli.command {
        Command::Fanout { load, common } => (Scenario::Fanout, load, 0, 3.0, None, common),
        Command::Idle { clients, common } => {
            (Scenario::Idle, idle_load(clients), 0, 3.0, None, common)
        }
        Command::Slow {
            load,
            slow,
            slow_drain_secs,
            common,
        } => (Scenario::Slow, load, slow, slow_drain_secs, None, common),
        Command::Burst { burst, common } => {
            let (load, burst) = burst_load(burst)?;
            (Scenario::Burst, load, 0, 3.0, Some(burst), common)
        }
    };
    if load.clients < 2 && scenario != Scenario::Idle {
        return Err("--clients must be at least 2".into());
    }
    if load.senders > load.clients {
        return Err("--senders must not exceed --clients".into());
    }
    if load.size < token::MIN_LINE_LEN {
        return Err(format!("--size must be at least {}", token::MIN_LINE_LEN));
    }
    if let Some(r) = load.rate {
        if !(r.is_finite() && r > 0.0) {
            return Err("--rate must be a positive number".into());
        }
    }
    if common.threads == 0 {
        return Err("--threads must be at least 1".into());
    }
    let quiet = match burst {
        Some(_) => None,
        None => Some(secs(common.quiet_secs, "quiet-secs")?),
    };
    let tls = common
        .tls
        .then(|| Tls::new(&common.tls_server_name, common.tls_ca.as_deref()))
        .transpose()?;
    let cfg = Config {
        scenario,
        addrs: common.addr.clone(),
        tls,
        clients: load.clients,
        senders: load.senders,
        lines: load.lines,
        size: load.size,
        rate: load.rate,
        warmup: Duration::from_millis(load.warmup_ms),
        slow,
        pid: common.pid,
        connect_batch: common.batch,
        batch_pause: Duration::from_millis(common.batch_pause_ms),
        connect_timeout: secs(common.connect_timeout_secs, "connect-timeout-secs")?,
        read_buf: common.read_buf,
        write_batch: load.write_batch,
        window: load.window,
        timeout: secs(common.timeout_secs, "timeout-secs")?,
        quiet,
        slow_drain: secs(drain, "slow-drain-secs")?,
        progress: !common.no_progress,
        burst,
    };
    Ok((cfg, common))
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let (cfg, common) = match config(cli) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("chat-bench: {e}");
            return ExitCode::from(2);
        }
    };
    let wanted = (cfg.clients + cfg.slow) as u64 + 64;
    match rlimit::increase_nofile_limit(u64::MAX) {
        Ok(limit) if limit < wanted => eprintln!(
            "warning: open-file limit is {limit}, {wanted} may be needed; connections may fail"
        ),
        Ok(_) => {}
        Err(e) => eprintln!("warning: cannot raise the open-file limit: {e}"),
    }
    let rt = match tokio::runtime::Builder::new_multi_thread()
        .worker_threads(common.threads)
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("chat-bench: cannot start the runtime: {e}");
            return ExitCode::from(2);
        }
    };
    // Hard bound on everything, setup included.
    let hard = cfg.timeout + Duration::from_secs(30);
    let result = rt.block_on(async { tokio::time::timeout(hard, run::run(cfg)).await });
    rt.shutdown_timeout(Duration::from_secs(1));
    let report = match result {
        Ok(Ok(r)) => r,
        Ok(Err(e)) => {
            eprintln!("chat-bench: {e}");
            return ExitCode::from(2);
        }
        Err(_) => {
            eprintln!("chat-bench: gave up after {} s", hard.as_secs());
            return ExitCode::from(2);
        }
    };
    eprint!("{}", report.summary());
    println!("{}", report.result_line());
    if report.clean() || common.allow_loss {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    }
}
