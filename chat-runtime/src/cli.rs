//! The command line all three servers share.

use std::net::{SocketAddr, ToSocketAddrs};
use std::path::PathBuf;
use std::time::Duration;

use chat_core::{Config, ConfigError, Rate};
use clap::{CommandFactory, FromArgMatches, Parser};

use crate::cluster::RedisSettings;
use crate::tls::{CertSource, TlsSettings};

const LIMITS: &str = "Limits";
const POLICIES: &str = "Policies (not applied to loopback peers unless --limit-loopback)";
const TLS: &str = "TLS";
const CLUSTER: &str = "One room across several servers (through Redis)";

/// Where the server listens for plain TCP when no listener is given.
const DEFAULT_LISTEN: SocketAddr =
    SocketAddr::new(std::net::IpAddr::V4(std::net::Ipv4Addr::LOCALHOST), 12345);

/// The flags of a chat server. Limits and policies default to
/// [`Config::default`]; times are in seconds, decimals allowed.
#[derive(Debug, Clone, PartialEq, Parser)]
#[command(
    version,
    after_help = "Join with `nc HOST PORT`; type /help once connected.\n\
                  Logs go to stderr; set RUST_LOG (e.g. RUST_LOG=debug) to change how much."
)]
pub struct Cli {
    /// Address to listen on for plain TCP; port 0 picks a free port. The
    /// bound address is printed as `listening on ADDR` once the server
    /// accepts connections. [default: 127.0.0.1:12345, unless --tls-listen
    /// is given: then the server listens for TLS only]
    #[arg(long, value_name = "ADDR", value_parser = parse_addr)]
    pub listen: Option<SocketAddr>,

    /// Address to listen on for TLS, printed as `listening on ADDR (tls)`;
    /// needs --tls-cert and --tls-key, or --tls-self-signed. TLS and plain
    /// clients share the one room.
    #[arg(long, value_name = "ADDR", value_parser = parse_addr, requires = "tls_source", help_heading = TLS)]
    pub tls_listen: Option<SocketAddr>,

    /// PEM file with the certificate chain, leaf first. It and the key are
    /// read again on SIGHUP: new connections get the new pair, open ones
    /// keep theirs, and a pair that does not load leaves the old one.
    #[arg(long, value_name = "FILE", requires_all = ["tls_key", "tls_listen"], group = "tls_source", help_heading = TLS)]
    pub tls_cert: Option<PathBuf>,

    /// PEM file with the certificate's private key (PKCS#8, PKCS#1 or SEC1).
    #[arg(long, value_name = "FILE", requires = "tls_cert", help_heading = TLS)]
    pub tls_key: Option<PathBuf>,

    /// Serve a certificate for localhost made at start, to try TLS out; its
    /// SHA-256 fingerprint is printed first, to compare with what the client sees.
    #[arg(long, requires = "tls_listen", group = "tls_source", help_heading = TLS)]
    pub tls_self_signed: bool,

    /// A TLS client that has not finished its handshake this long after
    /// connecting is disconnected; above 0.
    #[arg(long, value_name = "SECS", value_parser = parse_secs,
        allow_negative_numbers = true, default_value_t = 10.0, help_heading = TLS)]
    pub tls_handshake_timeout: f64,

    /// Share the room with every server given the same Redis (and
    /// --redis-prefix): a `redis://HOST:PORT[/DB]` URL. Every broadcast
    /// line goes through Redis, in one order for every client of every
    /// server, and nicks are unique across them (docs/cluster.md).
    #[arg(long, value_name = "URL", value_parser = parse_redis_url, help_heading = CLUSTER)]
    pub redis: Option<String>,

    /// This server's name in the room, for logs; 1-64 ASCII letters,
    /// digits, `_`, `-` or `.`. [default: HOSTNAME-PID]
    #[arg(long, value_name = "NAME", value_parser = parse_node, requires = "redis",
          help_heading = CLUSTER)]
    pub node: Option<String>,

    /// The room's keys in Redis start with `{PREFIX}:`; servers with
    /// another prefix are another room.
    #[arg(long, value_name = "PREFIX", value_parser = parse_prefix, requires = "redis",
          default_value = crate::cluster::calls::DEFAULT_PREFIX, help_heading = CLUSTER)]
    pub redis_prefix: String,

    /// Lines of the room Redis keeps, for servers that fall behind or lose
    /// their link for a moment (each about 100 bytes); at least 1.
    #[arg(long, value_name = "LINES", value_parser = parse_at_least_one, requires = "redis",
          default_value_t = 100_000, help_heading = CLUSTER)]
    pub redis_history: usize,

    /// Most clients in the chat at once; one more is refused with `server full`.
    #[arg(long, value_name = "N", default_value_t = Config::default().max_clients, help_heading = LIMITS)]
    pub max_clients: usize,

    /// Longest line a client may send, in bytes; longer lines are discarded
    /// with an error.
    #[arg(long, value_name = "BYTES", default_value_t = Config::default().max_line, help_heading = LIMITS)]
    pub max_line: usize,

    /// Most bytes held for one client that does not read; past it the client
    /// is disconnected as `too slow`.
    #[arg(long, value_name = "BYTES", default_value_t = Config::default().max_queue, help_heading = LIMITS)]
    pub max_queue: usize,

    /// A client holding more than this many bytes for longer than
    /// --soft-queue-grace is disconnected as `too slow`. At most --max-queue;
    /// equal to it turns the soft limit off. [default: half of --max-queue,
    /// 524288 with the default --max-queue]
    #[arg(long, value_name = "BYTES", help_heading = LIMITS)]
    pub soft_queue: Option<usize>,

    /// How long a client may stay over --soft-queue; above 0.
    #[arg(long, value_name = "SECS", value_parser = parse_secs,
        allow_negative_numbers = true,
          default_value_t = Config::default().soft_queue_grace.as_secs_f64(), help_heading = LIMITS)]
    pub soft_queue_grace: f64,

    /// Room backpressure: a client holding more than this many bytes has
    /// fallen behind; while a client that has fallen behind keeps reading
    /// (faster than --min-read-rate), the server reads no client's input
    /// until it is back to half of this, so that senders are slowed down
    /// instead of readers dropped. A client that does not read is never
    /// waited for. At most --max-queue; 0 turns it off. [default: a quarter of --max-queue,
    /// 262144 with the default --max-queue]
    #[arg(long, value_name = "BYTES", help_heading = LIMITS)]
    pub room_queue: Option<usize>,

    /// The slowest reading, in bytes a second, that the room waits for: a
    /// client that reads slower is not waited for, and is dropped at the
    /// output limits if it falls too far behind; above 0.
    #[arg(long, value_name = "BYTES_PER_SEC",
          default_value_t = Config::default().min_read_rate, help_heading = LIMITS)]
    pub min_read_rate: u32,

    /// Lines a client may send at once before flood control holds its lines
    /// back (and stops reading it); at least 1.
    #[arg(long, value_name = "LINES", default_value_t = burst(Config::default().flood), help_heading = POLICIES)]
    pub flood_burst: u32,

    /// Lines a second a client may send beyond the burst; 0 turns flood
    /// control off.
    #[arg(long, value_name = "LINES_PER_SEC", value_parser = parse_per_second,
        allow_negative_numbers = true,
          default_value_t = per(Config::default().flood, SECOND), help_heading = POLICIES)]
    pub flood_rate: f64,

    /// Most lines held back by flood control; one more and the client is
    /// disconnected for `excess flood` (0: as soon as a line is held back).
    #[arg(long, value_name = "LINES", default_value_t = Config::default().flood_excess, help_heading = POLICIES)]
    pub flood_excess: usize,

    /// Bytes the clients of one IP address (an IPv6 /64, see --ipv6-prefix)
    /// may send at once, all together, before their lines wait, each line
    /// counting its bytes and 64 more; at least 1.
    #[arg(long, value_name = "BYTES", default_value_t = burst(Config::default().ip_flood), help_heading = POLICIES)]
    pub ip_flood_burst: u32,

    /// Bytes a second the clients of one IP address may send together
    /// beyond the burst; 0 turns it off.
    #[arg(long, value_name = "BYTES_PER_SEC", value_parser = parse_per_second,
        allow_negative_numbers = true,
          default_value_t = per(Config::default().ip_flood, SECOND).round(), help_heading = POLICIES)]
    pub ip_flood_rate: f64,

    /// A client that sends nothing for this long is disconnected; 0: never.
    #[arg(long, value_name = "SECS", value_parser = parse_secs,
        allow_negative_numbers = true,
          default_value_t = secs(Config::default().idle_timeout), help_heading = POLICIES)]
    pub idle_timeout: f64,

    /// A client that leaves a line unfinished for this long is disconnected;
    /// 0: never.
    #[arg(long, value_name = "SECS", value_parser = parse_secs,
        allow_negative_numbers = true,
          default_value_t = secs(Config::default().line_timeout), help_heading = POLICIES)]
    pub line_timeout: f64,

    /// Most connections open at once from one IP address; 0: no limit.
    #[arg(long, value_name = "N", default_value_t = Config::default().max_per_ip.unwrap_or(0), help_heading = POLICIES)]
    pub max_per_ip: usize,

    /// New connections one IP address may open at once before
    /// --connect-rate applies; at least 1.
    #[arg(long, value_name = "N", default_value_t = burst(Config::default().connect_rate), help_heading = POLICIES)]
    pub connect_burst: u32,

    /// New connections a minute one IP address may open beyond the burst;
    /// 0: no limit.
    #[arg(long, value_name = "PER_MIN", value_parser = parse_per_minute,
        allow_negative_numbers = true,
          default_value_t = per(Config::default().connect_rate, MINUTE), help_heading = POLICIES)]
    pub connect_rate: f64,

    /// Length of the network prefix an IPv6 peer counts under for every
    /// per-address limit (--max-per-ip, the connect rate, --ip-flood-*): the
    /// default, 64, makes one /64 (a host or LAN) one address; 128 counts
    /// each IPv6 address alone. 1 to 128.
    #[arg(long, value_name = "LEN", default_value_t = Config::default().ipv6_prefix, help_heading = POLICIES)]
    pub ipv6_prefix: u8,

    /// Nick changes a client may make at once before --nick-rate applies;
    /// at least 1.
    #[arg(long, value_name = "N", default_value_t = burst(Config::default().nick_rate), help_heading = POLICIES)]
    pub nick_burst: u32,

    /// Nick changes a minute a client may make beyond the burst; 0: no limit.
    #[arg(long, value_name = "PER_MIN", value_parser = parse_per_minute,
        allow_negative_numbers = true,
          default_value_t = per(Config::default().nick_rate, MINUTE), help_heading = POLICIES)]
    pub nick_rate: f64,

    /// Apply these policies to loopback peers too. They are exempt by
    /// default, so that local use and benchmarks are never throttled.
    #[arg(long, help_heading = POLICIES)]
    pub limit_loopback: bool,
}

/// Rate units, in seconds.
const SECOND: f64 = 1.0;
const MINUTE: f64 = 60.0;

/// Why the command line was refused, or what to print instead of running.
#[derive(Debug)]
pub enum CliError {
    /// `--help`, `--version` or a bad flag: clap prints it and picks the exit code.
    Clap(clap::Error),
    /// The flags parse but the limits cannot work together.
    Config(ConfigError),
}

impl Cli {
    /// Parses `args` (the program name first) for the program `name`, whose
    /// `--help` starts with `about`.
    pub fn parse_from<I, T>(
        name: &'static str,
        about: &'static str,
        args: I,
    ) -> Result<Cli, CliError>
    where
        I: IntoIterator<Item = T>,
        T: Into<std::ffi::OsString> + Clone,
    {
        let command = Cli::command().name(name).bin_name(name).about(about);
        command
            .try_get_matches_from(args)
            .and_then(|matches| Cli::from_arg_matches(&matches))
            .map_err(CliError::Clap)
    }

    /// Where the server listens for plain TCP, if it does.
    pub fn plain_listen(&self) -> Option<SocketAddr> {
        self.listen
            .or_else(|| self.tls_listen.is_none().then_some(DEFAULT_LISTEN))
    }

    /// Where and how the server listens for TLS, if it does.
    pub fn tls(&self) -> Result<Option<(SocketAddr, TlsSettings)>, CliError> {
        let Some(addr) = self.tls_listen else {
            return Ok(None);
        };
        let bad_time = || CliError::Config(ConfigError::ZeroTime("tls handshake timeout"));
        let handshake_timeout = duration(self.tls_handshake_timeout)
            .map_err(|_| bad_time())?
            .ok_or_else(bad_time)?;
        // clap has checked that exactly one source is given.
        let source = match (&self.tls_cert, &self.tls_key) {
            (Some(cert), Some(key)) => CertSource::Files {
                cert: cert.clone(),
                key: key.clone(),
            },
            _ => CertSource::SelfSigned,
        };
        let settings = TlsSettings {
            source,
            handshake_timeout,
        };
        Ok(Some((addr, settings)))
    }

    /// Where the room is kept, on a node of a shared room (clap has checked
    /// each flag).
    pub fn redis(&self) -> Option<RedisSettings> {
        let url = self.redis.clone()?;
        Some(RedisSettings {
            url,
            node: self.node.clone().unwrap_or_else(default_node),
            prefix: self.redis_prefix.clone(),
            history: self.redis_history,
        })
    }

    /// The limits the flags ask for, if they can work together.
    pub fn config(&self) -> Result<Config, CliError> {
        let bad_rate = |name| CliError::Config(ConfigError::BadRate(name));
        let bad_time = |name| CliError::Config(ConfigError::ZeroTime(name));
        let rate = |name, burst, count, unit| {
            interval(count, unit)
                .map(|interval| interval.map(|interval| Rate { burst, interval }))
                .map_err(|_| bad_rate(name))
        };
        let config = Config {
            max_clients: self.max_clients,
            max_line: self.max_line,
            max_queue: self.max_queue,
            // Half, as in the defaults, so that a lower --max-queue alone
            // keeps a soft limit rather than failing validation.
            soft_queue: self.soft_queue.unwrap_or(self.max_queue / 2),
            soft_queue_grace: duration(self.soft_queue_grace)
                .map_err(|_| bad_time("soft queue grace"))?
                .ok_or_else(|| bad_time("soft queue grace"))?,
            // A quarter, as in the defaults, for the same reason.
            room_queue: Some(self.room_queue.unwrap_or(self.max_queue / 4)).filter(|&q| q > 0),
            min_read_rate: self.min_read_rate,
            flood: rate("flood", self.flood_burst, self.flood_rate, SECOND)?,
            flood_excess: self.flood_excess,
            ip_flood: rate("ip flood", self.ip_flood_burst, self.ip_flood_rate, SECOND)?,
            idle_timeout: duration(self.idle_timeout).map_err(|_| bad_time("idle timeout"))?,
            line_timeout: duration(self.line_timeout).map_err(|_| bad_time("line timeout"))?,
            max_per_ip: (self.max_per_ip > 0).then_some(self.max_per_ip),
            connect_rate: rate(
                "connect rate",
                self.connect_burst,
                self.connect_rate,
                MINUTE,
            )?,
            ipv6_prefix: self.ipv6_prefix,
            nick_rate: rate("nick rate", self.nick_burst, self.nick_rate, MINUTE)?,
            limit_loopback: self.limit_loopback,
        };
        config.validate().map_err(CliError::Config)?;
        Ok(config)
    }
}

/// This host's name and this process's id: a name no other server of the
/// room has by accident.
fn default_node() -> String {
    let host = std::fs::read_to_string("/proc/sys/kernel/hostname").unwrap_or_default();
    let host: String = host
        .trim()
        .chars()
        .filter(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '-' | '.'))
        .take(40)
        .collect();
    let host = if host.is_empty() {
        "node".to_string()
    } else {
        host
    };
    format!("{host}-{}", std::process::id())
}

/// A burst as a flag's default: the rate's, or 1 if it is off.
fn burst(rate: Option<Rate>) -> u32 {
    rate.map_or(1, |rate| rate.burst)
}

/// A rate as a flag's default: how many per `unit` seconds, 0 if off.
fn per(rate: Option<Rate>, unit: f64) -> f64 {
    rate.map_or(0.0, |rate| unit / rate.interval.as_secs_f64())
}

/// A time as a flag's default, in seconds, 0 if off.
fn secs(time: Option<Duration>) -> f64 {
    time.map_or(0.0, |time| time.as_secs_f64())
}

/// A number of seconds as a duration; `None` for 0 (off).
fn duration(secs: f64) -> Result<Option<Duration>, String> {
    if secs.is_nan() || secs < 0.0 {
        return Err("expected a number of seconds, 0 or more".to_owned());
    }
    if secs == 0.0 {
        return Ok(None);
    }
    Duration::try_from_secs_f64(secs)
        .map(Some)
        .map_err(|_| "too long".to_owned())
}

/// The time to earn one more at `count` per `unit` seconds; `None` for 0
/// (no limit).
fn interval(count: f64, unit: f64) -> Result<Option<Duration>, String> {
    if count.is_nan() || count < 0.0 {
        return Err("expected a rate, 0 or more".to_owned());
    }
    if count == 0.0 {
        return Ok(None);
    }
    match Duration::try_from_secs_f64(unit / count) {
        Ok(interval) if !interval.is_zero() => Ok(Some(interval)),
        Ok(_) => Err("too high a rate".to_owned()),
        Err(_) => Err("too low a rate (0 turns the limit off)".to_owned()),
    }
}

fn parse_number(text: &str) -> Result<f64, String> {
    text.parse()
        .map_err(|_| "expected a number, e.g. 5 or 0.5".to_owned())
}

/// Seconds, 0 or more, decimals allowed.
fn parse_secs(text: &str) -> Result<f64, String> {
    let secs = parse_number(text)?;
    duration(secs).map(|_| secs)
}

/// A rate per second, 0 or more, decimals allowed.
fn parse_per_second(text: &str) -> Result<f64, String> {
    let count = parse_number(text)?;
    interval(count, SECOND).map(|_| count)
}

/// A rate per minute, 0 or more, decimals allowed.
fn parse_per_minute(text: &str) -> Result<f64, String> {
    let count = parse_number(text)?;
    interval(count, MINUTE).map(|_| count)
}

/// A URL the Redis client takes (`redis://HOST:PORT[/DB]`); not
/// connected to yet.
fn parse_redis_url(text: &str) -> Result<String, String> {
    redis::Client::open(text)
        .map(|_| text.to_owned())
        .map_err(|e| e.to_string())
}

/// A node's name (see `chat_core::cluster::entry::is_node_name`).
fn parse_node(text: &str) -> Result<String, String> {
    if chat_core::cluster::entry::is_node_name(text) {
        Ok(text.to_owned())
    } else {
        Err("use 1-64 ASCII letters, digits, _, - or .".to_owned())
    }
}

/// A prefix for the room's Redis keys: printable ASCII, no braces (they
/// make the `{PREFIX}` hash tag).
fn parse_prefix(text: &str) -> Result<String, String> {
    let ok = !text.is_empty()
        && !text.contains(['{', '}'])
        && text.bytes().all(|b| b.is_ascii_graphic());
    if ok {
        Ok(text.to_owned())
    } else {
        Err("use printable ASCII without braces".to_owned())
    }
}

/// A whole number, 1 or more.
fn parse_at_least_one(text: &str) -> Result<usize, String> {
    match text.parse() {
        Ok(n) if n >= 1 => Ok(n),
        _ => Err("expected a whole number, at least 1".to_owned()),
    }
}

/// An IP address and port, or a host name and port resolved now (first address).
fn parse_addr(text: &str) -> Result<SocketAddr, String> {
    if let Ok(addr) = text.parse() {
        return Ok(addr);
    }
    match text.to_socket_addrs() {
        Ok(mut addrs) => addrs
            .next()
            .ok_or_else(|| format!("{text} resolves to no address")),
        Err(_) => Err("expected HOST:PORT, e.g. 127.0.0.1:12345 or [::1]:0".to_owned()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::error::ErrorKind;

    fn parse(args: &[&str]) -> Result<Cli, CliError> {
        Cli::parse_from(
            "chat-test",
            "test",
            std::iter::once("chat-test").chain(args.iter().copied()),
        )
    }

    #[test]
    fn defaults_are_the_cores() {
        let cli = parse(&[]).unwrap();
        assert_eq!(cli.plain_listen(), Some("127.0.0.1:12345".parse().unwrap()));
        assert_eq!(cli.tls().unwrap(), None);
        assert_eq!(cli.config().unwrap(), Config::default());
    }

    #[test]
    fn flags_set_the_config() {
        let cli = parse(&[
            "--listen",
            "127.0.0.1:0",
            "--max-clients",
            "3",
            "--max-line",
            "100",
            "--max-queue=100000",
            "--soft-queue=60000",
            "--soft-queue-grace=2.5",
            "--room-queue=30000",
            "--min-read-rate=1000",
            "--flood-burst=10",
            "--flood-rate=0.5",
            "--flood-excess=7",
            "--ip-flood-burst=5000",
            "--ip-flood-rate=1000",
            "--idle-timeout=600",
            "--line-timeout=1.25",
            "--max-per-ip=4",
            "--connect-burst=3",
            "--connect-rate=30",
            "--ipv6-prefix=48",
            "--nick-burst=2",
            "--nick-rate=6",
            "--limit-loopback",
        ])
        .unwrap();
        assert_eq!(cli.plain_listen().map(|addr| addr.port()), Some(0));
        let config = cli.config().unwrap();
        assert_eq!(
            config,
            Config {
                max_clients: 3,
                max_line: 100,
                max_queue: 100_000,
                soft_queue: 60_000,
                soft_queue_grace: Duration::from_millis(2500),
                room_queue: Some(30_000),
                min_read_rate: 1000,
                flood: Some(Rate {
                    burst: 10,
                    interval: Duration::from_secs(2)
                }),
                flood_excess: 7,
                ip_flood: Some(Rate {
                    burst: 5000,
                    interval: Duration::from_millis(1)
                }),
                idle_timeout: Some(Duration::from_secs(600)),
                line_timeout: Some(Duration::from_millis(1250)),
                max_per_ip: Some(4),
                connect_rate: Some(Rate {
                    burst: 3,
                    interval: Duration::from_secs(2)
                }),
                ipv6_prefix: 48,
                nick_rate: Some(Rate {
                    burst: 2,
                    interval: Duration::from_secs(10)
                }),
                limit_loopback: true,
            }
        );
    }

    #[test]
    fn zero_turns_policies_off() {
        let cli = parse(&[
            "--flood-rate=0",
            "--idle-timeout=0",
            "--line-timeout=0",
            "--max-per-ip=0",
            "--connect-rate=0",
            "--nick-rate=0",
            "--ip-flood-rate=0",
            // Bursts of disabled rates do not matter.
            "--flood-burst=0",
        ])
        .unwrap();
        let config = cli.config().unwrap();
        assert_eq!(
            (
                config.flood,
                config.idle_timeout,
                config.line_timeout,
                config.max_per_ip,
                config.connect_rate,
                config.nick_rate,
                config.ip_flood,
            ),
            (None, None, None, None, None, None, None)
        );
    }

    #[test]
    fn the_soft_and_room_queues_follow_the_max_queue() {
        let cli = parse(&["--max-queue", "100000"]).unwrap();
        assert_eq!(cli.config().unwrap().soft_queue, 50_000);
        assert_eq!(cli.config().unwrap().room_queue, Some(25_000));
        let cli = parse(&["--max-queue", "100000", "--soft-queue", "100000"]).unwrap();
        assert_eq!(cli.config().unwrap().soft_queue, 100_000);
        let cli = parse(&["--room-queue", "0"]).unwrap();
        assert_eq!(cli.config().unwrap().room_queue, None);
    }

    #[test]
    fn host_names_resolve() {
        let cli = parse(&["--listen", "localhost:0"]).unwrap();
        assert!(cli.plain_listen().unwrap().ip().is_loopback());
    }

    #[test]
    fn bad_values_are_refused() {
        for args in [
            &["--max-clients", "many"][..],
            &["--max-line", "-1"],
            &["--listen", "nowhere"],
            &["--bogus"],
            &["--line-timeout", "-1"],
            &["--idle-timeout", "NaN"],
            &["--soft-queue-grace", "inf"],
            &["--line-timeout", "1e30"],
            &["--flood-rate", "-0.5"],
            &["--flood-rate", "1e-30"],
            &["--nick-rate", "1e30"],
            &["--connect-rate", "ten"],
            &["--flood-burst", "-1"],
            &["--ipv6-prefix", "256"],
        ] {
            match parse(args) {
                Err(CliError::Clap(e)) => assert_ne!(e.kind(), ErrorKind::DisplayHelp, "{args:?}"),
                other => panic!("{args:?} gave {other:?}"),
            }
        }
    }

    #[test]
    fn tls_listens_beside_plain_or_alone() {
        let files = ["--tls-cert", "c.pem", "--tls-key", "k.pem"];
        let tls_only = parse(&[&["--tls-listen", "127.0.0.1:0"][..], &files].concat()).unwrap();
        assert_eq!(tls_only.plain_listen(), None, "TLS only");
        let (addr, settings) = tls_only.tls().unwrap().unwrap();
        assert_eq!(addr.port(), 0);
        let cert = CertSource::Files {
            cert: "c.pem".into(),
            key: "k.pem".into(),
        };
        assert_eq!(settings.source, cert);
        assert_eq!(settings.handshake_timeout, Duration::from_secs(10));

        let both = parse(&[
            "--listen",
            "127.0.0.1:7000",
            "--tls-listen",
            "127.0.0.1:7001",
            "--tls-self-signed",
            "--tls-handshake-timeout",
            "2.5",
        ])
        .unwrap();
        assert_eq!(both.plain_listen().map(|a| a.port()), Some(7000));
        let (addr, settings) = both.tls().unwrap().unwrap();
        assert_eq!(addr.port(), 7001);
        assert_eq!(settings.source, CertSource::SelfSigned);
        assert_eq!(settings.handshake_timeout, Duration::from_millis(2500));
    }

    #[test]
    fn tls_flags_that_cannot_work_are_refused() {
        for args in [
            // No certificate, or half of one.
            &["--tls-listen", "127.0.0.1:0"][..],
            &["--tls-listen", "127.0.0.1:0", "--tls-cert", "c.pem"],
            &["--tls-listen", "127.0.0.1:0", "--tls-key", "k.pem"],
            // A certificate and nowhere to serve it.
            &["--tls-cert", "c.pem", "--tls-key", "k.pem"],
            &["--tls-self-signed"],
            // Two certificates.
            &[
                "--tls-listen",
                "127.0.0.1:0",
                "--tls-self-signed",
                "--tls-cert",
                "c.pem",
                "--tls-key",
                "k.pem",
            ],
        ] {
            match parse(args) {
                Err(CliError::Clap(e)) => assert_ne!(e.kind(), ErrorKind::DisplayHelp, "{args:?}"),
                other => panic!("{args:?} gave {other:?}"),
            }
        }
        let no_time = [
            "--tls-listen",
            "127.0.0.1:0",
            "--tls-self-signed",
            "--tls-handshake-timeout",
            "0",
        ];
        let cli = parse(&no_time).unwrap();
        assert!(matches!(cli.tls(), Err(CliError::Config(_))));
    }

    #[test]
    fn unworkable_limits_are_refused() {
        let cli = parse(&["--max-clients", "0"]).unwrap();
        assert!(matches!(
            cli.config(),
            Err(CliError::Config(ConfigError::NoClients))
        ));
        let cli = parse(&["--max-queue", "10"]).unwrap();
        assert!(matches!(
            cli.config(),
            Err(CliError::Config(ConfigError::QueueTooSmall { .. }))
        ));
        for (args, error) in [
            (
                &["--soft-queue", "2000000"][..],
                ConfigError::SoftQueueAboveHard,
            ),
            (
                &["--soft-queue-grace", "0"],
                ConfigError::ZeroTime("soft queue grace"),
            ),
            (&["--flood-burst", "0"], ConfigError::BadRate("flood")),
            (&["--room-queue", "2000000"], ConfigError::RoomQueue),
            (&["--min-read-rate", "0"], ConfigError::NoReadRate),
            (&["--nick-burst", "0"], ConfigError::BadRate("nick rate")),
            (&["--ipv6-prefix", "0"], ConfigError::BadIpv6Prefix),
            (&["--ipv6-prefix", "129"], ConfigError::BadIpv6Prefix),
        ] {
            match parse(args).unwrap().config() {
                Err(CliError::Config(e)) => assert_eq!(e, error, "{args:?}"),
                other => panic!("{args:?} gave {other:?}"),
            }
        }
    }

    #[test]
    fn help_and_version_are_not_errors() {
        for (flag, kind) in [
            ("--help", ErrorKind::DisplayHelp),
            ("--version", ErrorKind::DisplayVersion),
        ] {
            match parse(&[flag]) {
                Err(CliError::Clap(e)) => assert_eq!(e.kind(), kind),
                other => panic!("{flag} gave {other:?}"),
            }
        }
    }
}
