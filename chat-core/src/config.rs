//! Limits and policies (protocol.md, "Limits and policies").

use std::fmt;
use std::time::Duration;

/// A rate limit as a token bucket: up to `burst` at once, then one more
/// every `interval`. Enforced exactly, with integer time (GCRA), so the same
/// inputs at the same times always give the same answer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Rate {
    /// How many may come at once after a quiet spell; at least 1.
    pub burst: u32,
    /// Time to earn one more; above zero.
    pub interval: Duration,
}

impl Rate {
    /// `burst` at once, then `per_second` a second (which may be a fraction).
    /// `None` if `per_second` is not a positive finite number.
    pub fn per_second(burst: u32, per_second: f64) -> Option<Rate> {
        let interval = Duration::try_from_secs_f64(1.0 / per_second).ok()?;
        (per_second > 0.0 && !interval.is_zero()).then_some(Rate { burst, interval })
    }

    /// How far ahead of its steady rate the bucket lets a client run.
    pub(crate) fn tolerance(&self) -> Duration {
        self.interval.saturating_mul(self.burst.saturating_sub(1))
    }
}

/// Every limit and policy the server enforces. `Config::default()` holds the
/// protocol's defaults, which suit a server on a public address.
///
/// The *address policies* (`flood`, `ip_flood`, `idle_timeout`,
/// `line_timeout`, `max_per_ip`, `connect_rate`, `nick_rate`) apply to
/// every peer but loopback ones unless `limit_loopback` is set; the others
/// apply to all. The per-address ones (`ip_flood`, `max_per_ip`,
/// `connect_rate`) count an IPv6 peer under its network prefix of
/// `ipv6_prefix` bits.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Config {
    /// Most connections admitted at once; one more gets `* error: server full`.
    pub max_clients: usize,
    /// Most bytes in one line, CR and LF excluded, before sanitizing.
    pub max_line: usize,
    /// Most bytes the server holds for one client (queued or being written);
    /// a client that would go over it is disconnected as `too slow`.
    pub max_queue: usize,
    /// A client holding more than this many bytes for longer than
    /// `soft_queue_grace` is disconnected as `too slow`. At most `max_queue`
    /// (equal to it: no soft limit).
    pub soft_queue: usize,
    /// How long a client may stay over `soft_queue`.
    pub soft_queue_grace: Duration,
    /// Room backpressure: a client holding more than this many bytes has
    /// fallen behind, and while one that keeps reading has, the server reads
    /// no client's input (see `min_read_rate`) until it is back to half of
    /// it. At most `max_queue`. `None`: off (a client that falls behind is
    /// only ever dropped at the output limits).
    pub room_queue: Option<usize>,
    /// The slowest reading, in bytes a second, that the room waits for: a
    /// client that has fallen behind holds the room for the time its writes
    /// would take at this rate, so one that reads slower never paces the
    /// room down to its speed. Above 0.
    pub min_read_rate: u32,
    /// Flood control: lines a client may send. Lines over it wait (the
    /// server stops reading the client) rather than being dropped. `None`: off.
    pub flood: Option<Rate>,
    /// Most lines a client may have waiting for flood control; one more and
    /// it is disconnected for `excess flood`.
    pub flood_excess: usize,
    /// Flood control per address: bytes the clients of one address may
    /// send together, each line counting its bytes and [`LINE_COST`]. A
    /// line waits while the address is over it, like one over `flood`.
    /// `None`: off.
    pub ip_flood: Option<Rate>,
    /// A client that sends nothing for this long is disconnected (`idle`).
    pub idle_timeout: Option<Duration>,
    /// A client that holds an unterminated line for this long is
    /// disconnected (`incomplete line timeout`).
    pub line_timeout: Option<Duration>,
    /// Most connections open at once from one IP address.
    pub max_per_ip: Option<usize>,
    /// New connections from one IP address.
    pub connect_rate: Option<Rate>,
    /// Length in bits of the network prefix an IPv6 peer counts under for
    /// every per-address limit: all addresses of one /64 (what one host or
    /// LAN typically has) are one address by default. 1 to 128; 128 counts
    /// each IPv6 address alone. IPv4 (and IPv4-mapped IPv6) peers count by
    /// their address.
    pub ipv6_prefix: u8,
    /// Nick changes of one client.
    pub nick_rate: Option<Rate>,
    /// Apply the address policies to loopback peers too.
    pub limit_loopback: bool,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            max_clients: 10_000,
            max_line: 4096,
            max_queue: 1024 * 1024,
            soft_queue: 512 * 1024,
            soft_queue_grace: Duration::from_secs(30),
            // A quarter of max_queue: behind long before it is dropped.
            room_queue: Some(256 * 1024),
            min_read_rate: 32 * 1024,
            // A screenful pasted at once passes; typing never reaches 5 lines/s.
            flood: Some(Rate {
                burst: 50,
                interval: Duration::from_millis(200),
            }),
            flood_excess: 100,
            // 64 KiB at once, then 16 KiB a second, for all of an
            // address's connections together.
            ip_flood: Rate::per_second(64 * 1024, 16.0 * 1024.0),
            idle_timeout: None,
            line_timeout: Some(Duration::from_secs(60)),
            max_per_ip: Some(16),
            connect_rate: Some(Rate {
                burst: 32,
                interval: Duration::from_secs(6),
            }),
            ipv6_prefix: 64,
            // 5 per 20 seconds.
            nick_rate: Some(Rate {
                burst: 5,
                interval: Duration::from_secs(4),
            }),
            limit_loopback: false,
        }
    }
}

/// The smallest `max_line` accepted: room for `/nick` and a full-length nick.
pub const MIN_MAX_LINE: usize = 16;

/// What holding one line costs beyond its bytes, in bytes: its entry in a
/// queue and the handle to its shared bytes, in the server and in the
/// driver while it is being written. Every output limit counts a line as
/// its bytes plus this, so that what the limits state is what a client can
/// make the server hold, short lines included.
pub const LINE_COST: usize = 64;

/// A [`Config`] that cannot work, with what to change.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ConfigError {
    /// `max_clients` is 0: nobody could join.
    NoClients,
    /// `max_line` is below `MIN_MAX_LINE`.
    LineTooShort,
    /// `max_queue` cannot hold one line of the longest kind (a chat line of
    /// `max_line` invalid bytes, each shown as a 3-byte U+FFFD), so every
    /// client would be dropped as too slow by the first such line.
    QueueTooSmall {
        /// The smallest `max_queue` that works with this `max_line`.
        min: usize,
    },
    /// `soft_queue` is above `max_queue`.
    SoftQueueAboveHard,
    /// `room_queue` is above `max_queue` (nobody could hold the room back:
    /// they would be dropped first), or 0 (use `None`).
    RoomQueue,
    /// `min_read_rate` is 0.
    NoReadRate,
    /// A rate (named) has a burst of 0 or an interval of 0: nothing, or
    /// everything, would pass.
    BadRate(&'static str),
    /// A timeout or grace time (named) is zero.
    ZeroTime(&'static str),
    /// `max_per_ip` is 0: nobody could connect.
    NoClientsPerIp,
    /// `ipv6_prefix` is not 1 to 128 bits.
    BadIpv6Prefix,
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ConfigError::NoClients => write!(f, "max clients must be at least 1"),
            ConfigError::LineTooShort => {
                write!(f, "max line must be at least {MIN_MAX_LINE} bytes")
            }
            ConfigError::QueueTooSmall { min } => {
                write!(
                    f,
                    "max queue must be at least {min} bytes for this max line"
                )
            }
            ConfigError::SoftQueueAboveHard => {
                write!(f, "soft queue must not be above max queue")
            }
            ConfigError::RoomQueue => {
                write!(f, "room queue must be above 0 and not above max queue")
            }
            ConfigError::NoReadRate => write!(f, "min read rate must be above 0"),
            ConfigError::BadRate(name) => {
                write!(
                    f,
                    "{name}: the burst must be at least 1 and the rate above 0"
                )
            }
            ConfigError::ZeroTime(name) => write!(f, "{name} must be above 0"),
            ConfigError::NoClientsPerIp => write!(f, "max per ip must be at least 1"),
            ConfigError::BadIpv6Prefix => {
                write!(f, "ipv6 prefix must be 1 to 128 bits")
            }
        }
    }
}

impl std::error::Error for ConfigError {}

impl Config {
    /// What the longest line this configuration can produce costs a
    /// client's output queue: a chat line of `max_line` invalid bytes (each
    /// a 3-byte U+FFFD) after the longest `NICK: `, its LF, and
    /// [`LINE_COST`].
    pub fn max_line_cost(&self) -> usize {
        // Prefix `NICK: ` with a 32-character nick of up to 4 bytes each.
        const PREFIX: usize = 4 * crate::nick::MAX_NICK_CHARS + 2;
        self.max_line
            .saturating_mul(3)
            .saturating_add(PREFIX + 1 + LINE_COST)
    }

    /// The smallest `max_queue` that holds the longest line this
    /// configuration can produce, with room for a few notices.
    pub fn min_queue(&self) -> usize {
        self.max_line_cost().saturating_add(1024)
    }

    /// Checks that the configuration can work; call it before [`crate::Server::new`].
    pub fn validate(&self) -> Result<(), ConfigError> {
        if self.max_clients == 0 {
            return Err(ConfigError::NoClients);
        }
        if self.max_line < MIN_MAX_LINE {
            return Err(ConfigError::LineTooShort);
        }
        if self.max_queue < self.min_queue() {
            return Err(ConfigError::QueueTooSmall {
                min: self.min_queue(),
            });
        }
        if self.soft_queue > self.max_queue {
            return Err(ConfigError::SoftQueueAboveHard);
        }
        if self
            .room_queue
            .is_some_and(|room| room == 0 || room > self.max_queue)
        {
            return Err(ConfigError::RoomQueue);
        }
        if self.min_read_rate == 0 {
            return Err(ConfigError::NoReadRate);
        }
        let rates = [
            ("flood", self.flood),
            ("ip flood", self.ip_flood),
            ("connect rate", self.connect_rate),
            ("nick rate", self.nick_rate),
        ];
        for (name, rate) in rates {
            if rate.is_some_and(|r| r.burst == 0 || r.interval.is_zero()) {
                return Err(ConfigError::BadRate(name));
            }
        }
        let times = [
            ("soft queue grace", Some(self.soft_queue_grace)),
            ("idle timeout", self.idle_timeout),
            ("line timeout", self.line_timeout),
        ];
        for (name, time) in times {
            if time.is_some_and(|t| t.is_zero()) {
                return Err(ConfigError::ZeroTime(name));
            }
        }
        if self.max_per_ip == Some(0) {
            return Err(ConfigError::NoClientsPerIp);
        }
        if !(1..=128).contains(&self.ipv6_prefix) {
            return Err(ConfigError::BadIpv6Prefix);
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_are_the_protocols() {
        let config = Config::default();
        assert_eq!(config.max_clients, 10_000);
        assert_eq!(config.max_line, 4096);
        assert_eq!(config.max_queue, 1 << 20);
        assert_eq!(config.soft_queue, 1 << 19);
        assert_eq!(config.soft_queue_grace, Duration::from_secs(30));
        assert_eq!(config.room_queue, Some(1 << 18));
        assert_eq!(config.min_read_rate, 1 << 15);
        assert_eq!(config.flood, Rate::per_second(50, 5.0));
        assert_eq!(config.flood_excess, 100);
        assert_eq!(config.ip_flood, Rate::per_second(65_536, 16_384.0));
        assert_eq!(config.idle_timeout, None);
        assert_eq!(config.line_timeout, Some(Duration::from_secs(60)));
        assert_eq!(config.max_per_ip, Some(16));
        assert_eq!(config.ipv6_prefix, 64);
        assert_eq!(config.nick_rate, Rate::per_second(5, 0.25));
        assert!(!config.limit_loopback);
        assert_eq!(config.validate(), Ok(()));
    }

    #[test]
    fn rates_from_lines_per_second() {
        let rate = Rate::per_second(3, 2.0).unwrap();
        assert_eq!(rate.interval, Duration::from_millis(500));
        assert_eq!(rate.tolerance(), Duration::from_secs(1));
        assert_eq!(Rate::per_second(3, 0.0), None);
        assert_eq!(Rate::per_second(3, -1.0), None);
        assert_eq!(Rate::per_second(3, f64::NAN), None);
    }

    #[test]
    fn unworkable_configs_are_refused() {
        let base = Config::default();
        let none = Config {
            max_clients: 0,
            ..base.clone()
        };
        assert_eq!(none.validate(), Err(ConfigError::NoClients));
        let short = Config {
            max_line: 15,
            ..base.clone()
        };
        assert_eq!(short.validate(), Err(ConfigError::LineTooShort));
        let min = base.min_queue();
        let small = Config {
            max_queue: min - 1,
            soft_queue: min - 1,
            room_queue: None,
            ..base.clone()
        };
        assert_eq!(small.validate(), Err(ConfigError::QueueTooSmall { min }));
        let minimal = Config {
            max_queue: min,
            soft_queue: min,
            room_queue: Some(min),
            ..base.clone()
        };
        assert_eq!(minimal.validate(), Ok(()));
        let soft = Config {
            soft_queue: base.max_queue + 1,
            ..base.clone()
        };
        assert_eq!(soft.validate(), Err(ConfigError::SoftQueueAboveHard));
        let no_burst = Config {
            flood: Some(Rate {
                burst: 0,
                interval: Duration::from_secs(1),
            }),
            ..base.clone()
        };
        assert_eq!(no_burst.validate(), Err(ConfigError::BadRate("flood")));
        let no_wait = Config {
            line_timeout: Some(Duration::ZERO),
            ..base.clone()
        };
        assert_eq!(
            no_wait.validate(),
            Err(ConfigError::ZeroTime("line timeout"))
        );
        let room = Config {
            room_queue: Some(base.max_queue + 1),
            ..base.clone()
        };
        assert_eq!(room.validate(), Err(ConfigError::RoomQueue));
        let no_rate = Config {
            min_read_rate: 0,
            ..base.clone()
        };
        assert_eq!(no_rate.validate(), Err(ConfigError::NoReadRate));
        let no_ip = Config {
            max_per_ip: Some(0),
            ..base.clone()
        };
        assert_eq!(no_ip.validate(), Err(ConfigError::NoClientsPerIp));
        for (prefix, valid) in [(0, false), (1, true), (128, true), (129, false)] {
            let config = Config {
                ipv6_prefix: prefix,
                ..base.clone()
            };
            let expected = if valid {
                Ok(())
            } else {
                Err(ConfigError::BadIpv6Prefix)
            };
            assert_eq!(config.validate(), expected, "ipv6 prefix {prefix}");
        }
    }
}
