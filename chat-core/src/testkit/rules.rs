//! Helpers the rule tests (`tests/framing.rs` … `tests/policies.rs`) share:
//! drivers set up for them, joining and renaming clients with the lines
//! that causes checked, and their configs.

use std::net::{IpAddr, Ipv4Addr};
use std::time::Duration;

use super::{Driver, Observer};
use crate::{Config, ConnId, LINE_COST};

/// `n` seconds.
pub fn secs(n: u64) -> Duration {
    Duration::from_secs(n)
}

/// `n` milliseconds.
pub fn ms(n: u64) -> Duration {
    Duration::from_millis(n)
}

impl Driver {
    /// A driver for the untimed rules: `config` and `seed`, the clock one
    /// millisecond further at every call (which those tests ignore), and
    /// every connection lingering after `Close` until the test reports it
    /// closed ([`Driver::close`]).
    pub fn untimed(config: Config, seed: u64) -> Driver {
        Driver::new(config, seed)
            .with_clock_step(ms(1))
            .with_linger(true)
    }

    /// [`Driver::untimed`] with the default config and seed 7.
    pub fn plain() -> Driver {
        Driver::untimed(Config::default(), 7)
    }

    /// A driver for the timed rules (address policies, soft output limit):
    /// `config` (which must be valid) and seed 5, a clock that moves only
    /// through [`Driver::advance_to`] so that every time checked is exact,
    /// and lingering connections as in [`Driver::untimed`].
    pub fn timed(config: Config) -> Driver {
        config.validate().unwrap();
        Driver::new(config, 5).with_linger(true)
    }
}

impl<O: Observer> Driver<O> {
    /// Connects a client from loopback that is admitted, checks its welcome
    /// and that every other joined client got exactly `* NICK joined`, and
    /// returns its id and (generated) nick.
    pub fn join(&mut self, others: &[ConnId]) -> (ConnId, String) {
        self.join_from(Ipv4Addr::LOCALHOST.into(), others)
    }

    /// [`Driver::join`] from `ip`.
    pub fn join_from(&mut self, ip: IpAddr, others: &[ConnId]) -> (ConnId, String) {
        let conn = self.connect_from(ip);
        let lines = self.lines(conn);
        assert_eq!(lines.len(), 1, "one welcome line: {lines:?}");
        let nick = welcome_nick(&lines[0]);
        for &other in others {
            assert_eq!(self.lines(other), [format!("* {nick} joined")]);
        }
        (conn, nick)
    }

    /// Renames `conn` to `nick`, taking the lines it caused everywhere.
    pub fn rename(&mut self, conn: ConnId, nick: &str, others: &[ConnId]) {
        self.send(conn, format!("/nick {nick}\n"));
        assert_eq!(self.lines(conn), [format!("* you are now known as {nick}")]);
        for &other in others {
            assert_eq!(self.lines(other).len(), 1);
        }
        self.events();
    }

    /// Two joined clients: (a, a's nick, b, b's nick).
    pub fn pair(&mut self) -> (ConnId, String, ConnId, String) {
        let (a, an) = self.join(&[]);
        let (b, bn) = self.join(&[a]);
        self.events();
        (a, an, b, bn)
    }

    /// Three joined clients with their nicks.
    pub fn trio(&mut self) -> [(ConnId, String); 3] {
        let (a, an) = self.join(&[]);
        let (b, bn) = self.join(&[a]);
        let (c, cn) = self.join(&[a, b]);
        self.events();
        [(a, an), (b, bn), (c, cn)]
    }

    /// What `b` receives when `a` sends `bytes` (a chat line, presumably),
    /// with the `NICK: ` prefix removed; checks that `a` got nothing back.
    pub fn relayed(&mut self, a: ConnId, an: &str, b: ConnId, bytes: &[u8]) -> Vec<String> {
        self.send(a, bytes);
        assert_eq!(self.lines(a), Vec::<String>::new(), "echoed to the sender");
        self.lines(b)
            .into_iter()
            .map(|l| {
                l.strip_prefix(&format!("{an}: "))
                    .unwrap_or_else(|| panic!("not a chat line from {an}: {l:?}"))
                    .to_owned()
            })
            .collect()
    }
}

/// The nick named by a welcome line.
pub fn welcome_nick(line: &str) -> String {
    let rest = line
        .strip_prefix("* welcome, you are ")
        .unwrap_or_else(|| panic!("not a welcome line: {line:?}"));
    rest.split(';').next().unwrap().to_owned()
}

/// The default config with lines of at most `max_line` bytes and the
/// smallest valid output limit for it (soft limit the same), the room never
/// waiting (so that a client over the limit is dropped whatever it reads).
pub fn line_config(max_line: usize) -> Config {
    let mut config = Config {
        max_line,
        room_queue: None,
        ..Config::default()
    };
    config.max_queue = config.min_queue();
    config.soft_queue = config.max_queue;
    config.validate().unwrap();
    config
}

/// The defaults with every address policy off, for tests that turn on one.
pub fn no_policies() -> Config {
    Config {
        flood: None,
        idle_timeout: None,
        line_timeout: None,
        max_per_ip: None,
        connect_rate: None,
        nick_rate: None,
        ..Config::default()
    }
}

/// The soft output limit of [`soft_config`].
pub const SOFT: usize = 600;
/// Its grace time.
pub const GRACE: Duration = Duration::from_secs(10);

/// Lines of up to 64 bytes, the smallest max queue for them, and a soft
/// limit of [`SOFT`] bytes for [`GRACE`]; no address policy, and the room
/// never waiting.
pub fn soft_config() -> Config {
    let mut config = Config {
        max_line: 64,
        soft_queue: SOFT,
        soft_queue_grace: GRACE,
        room_queue: None,
        ..no_policies()
    };
    config.max_queue = config.min_queue();
    assert!(config.max_queue > SOFT + 100);
    config
}

/// Sends chat lines from `a` until `slow` holds exactly `target` bytes (as
/// the limits count them: each line its bytes and [`LINE_COST`]).
pub fn fill_to(s: &mut Driver, a: ConnId, an: &str, slow: ConnId, target: usize) {
    // `NICK: `, the LF, and what a line costs beyond its bytes.
    let prefix = an.len() + 3 + LINE_COST;
    loop {
        let room = target - s.server().pending_bytes(slow).unwrap();
        if room == 0 {
            break;
        }
        assert!(room > prefix, "no line fills the last {room} bytes");
        // Leave either nothing or room for one more line.
        let len = if room - prefix <= 60 {
            room - prefix
        } else {
            (room - 2 * prefix - 1).min(60)
        };
        s.send(a, format!("{}\n", "f".repeat(len)));
    }
    assert_eq!(s.server().pending_bytes(slow), Some(target));
    assert_eq!(s.closes(), []);
}
