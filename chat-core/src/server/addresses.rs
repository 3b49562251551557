//! Per-address state: connections open from each address and its connect
//! rate (protocol.md, "Address policies": connections per address, connect
//! rate, and which peers the policies apply to), and which refusals of each
//! address, and which of its joins, are logged (protocol.md, "Limits and
//! policies": logs).

use std::collections::{HashMap, VecDeque};
use std::net::{IpAddr, Ipv6Addr, SocketAddr};
use std::time::{Duration, Instant};

use super::ConnId;
use crate::config::Config;
use crate::rate::Bucket;

/// Entries in `Addresses` before the first sweep of unused ones.
const MIN_ADDRESS_SWEEP: usize = 1024;

/// Connections open and connect budgets by address, for the peers the
/// address policies apply to.
#[derive(Debug)]
pub(super) struct Addresses {
    by_ip: HashMap<IpAddr, Address>,
    /// Size of `by_ip` at which unused entries are swept next.
    sweep_at: usize,
}

/// Connections open from one address, and its connect-rate and flood
/// budgets.
#[derive(Debug)]
struct Address {
    open: usize,
    /// `None` when there is no connect rate.
    connects: Option<Bucket>,
    /// What its clients may send together, in bytes; `None` when there is
    /// no per-address flood control.
    flood: Option<Bucket>,
    /// Its clients whose next line waits for `flood` (their own budget has
    /// room), in turn: only the first is released, so that each gets its
    /// turn and no release is tried for nothing.
    waiting: VecDeque<ConnId>,
}

/// Where a client stands with its address's flood budget.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Turn {
    /// Nobody of its address waits for it.
    Free,
    /// It is the first of its address to wait.
    First,
    /// Others of its address wait before it.
    Later,
}

/// The address whose policies apply to `peer`: its [`address_of`];
/// `None` for loopback peers unless `limit_loopback`.
pub(super) fn policy_address(config: &Config, peer: SocketAddr) -> Option<IpAddr> {
    let ip = peer.ip().to_canonical();
    (config.limit_loopback || !ip.is_loopback()).then(|| address_of(config, ip))
}

/// The address `ip` counts under: an IPv4 address (IPv4-mapped IPv6 taken
/// as IPv4, so that one host is one address) as it is, an IPv6 address as
/// its network prefix of `ipv6_prefix` bits (the rest zero).
pub(super) fn address_of(config: &Config, ip: IpAddr) -> IpAddr {
    match ip.to_canonical() {
        IpAddr::V6(v6) => {
            let host_bits = 128u32.saturating_sub(config.ipv6_prefix.into());
            let mask = u128::MAX.checked_shl(host_bits).unwrap_or(0);
            IpAddr::V6(Ipv6Addr::from(u128::from(v6) & mask))
        }
        v4 => v4,
    }
}

impl Addresses {
    pub(super) fn new() -> Addresses {
        Addresses {
            by_ip: HashMap::new(),
            sweep_at: MIN_ADDRESS_SWEEP,
        }
    }

    /// Counts a new connection from `ip` against the connect rate and
    /// `max_per_ip`; false if it is over either. One the rate lets through
    /// takes from the budget even if `max_per_ip` then refuses it.
    pub(super) fn admit(&mut self, config: &Config, ip: IpAddr, now: Instant) -> bool {
        // Addresses with nothing open and full budgets carry no state.
        sweep(&mut self.by_ip, &mut self.sweep_at, |_, address| {
            let used = |bucket: Option<Bucket>| bucket.is_some_and(|b| !b.is_full(now));
            address.open > 0 || used(address.connects) || used(address.flood)
        });
        let address = self.by_ip.entry(ip).or_insert_with(|| Address {
            open: 0,
            connects: config.connect_rate.map(Bucket::new),
            flood: config.ip_flood.map(Bucket::new),
            waiting: VecDeque::new(),
        });
        if address
            .connects
            .as_mut()
            .is_some_and(|bucket| bucket.take(now).is_err())
        {
            return false;
        }
        if config.max_per_ip.is_some_and(|max| address.open >= max) {
            return false;
        }
        address.open += 1;
        true
    }

    /// The flood budget the clients of `ip` share, if any: `ip` has a
    /// connection open (its entry is kept while it has), and `ip_flood` is on.
    pub(super) fn flood(&mut self, ip: IpAddr) -> Option<&mut Bucket> {
        self.by_ip.get_mut(&ip)?.flood.as_mut()
    }

    /// Where `conn` (of `ip`) stands with its address's flood budget
    /// (always `Free` when there is none).
    pub(super) fn turn(&self, ip: IpAddr, conn: ConnId) -> Turn {
        let waiting = self.by_ip.get(&ip).map(|address| &address.waiting);
        match waiting.and_then(VecDeque::front) {
            None => Turn::Free,
            Some(&first) if first == conn => Turn::First,
            Some(_) => Turn::Later,
        }
    }

    /// `conn` (of `ip`), with a line waiting, takes its turn for its
    /// address's flood budget after those already waiting (once); nothing
    /// if the address has no flood budget.
    pub(super) fn wait(&mut self, ip: IpAddr, conn: ConnId) {
        if let Some(address) = self.by_ip.get_mut(&ip).filter(|a| a.flood.is_some()) {
            if !address.waiting.contains(&conn) {
                address.waiting.push_back(conn);
            }
        }
    }

    /// Whose turn it is for the flood budget of `ip`, if anyone waits.
    pub(super) fn first(&self, ip: IpAddr) -> Option<ConnId> {
        self.by_ip.get(&ip)?.waiting.front().copied()
    }

    /// `conn` (of `ip`) no longer waits for its address's flood budget;
    /// returns whose turn it is now, if it was `conn`'s.
    pub(super) fn stop_waiting(&mut self, ip: IpAddr, conn: ConnId) -> Option<ConnId> {
        let waiting = &mut self.by_ip.get_mut(&ip)?.waiting;
        let at = waiting.iter().position(|&c| c == conn)?;
        waiting.remove(at);
        if waiting.is_empty() {
            *waiting = VecDeque::new();
        }
        if at == 0 {
            waiting.front().copied()
        } else {
            None
        }
    }

    /// A connection admitted from `ip` is closed.
    pub(super) fn release(&mut self, ip: IpAddr) {
        if let Some(address) = self.by_ip.get_mut(&ip) {
            address.open = address.open.saturating_sub(1);
        }
    }
}

/// Once `by_ip` has `*sweep_at` entries, keeps only those `keep` says to,
/// and sets the next sweep for when what is left has doubled (at least
/// `MIN_ADDRESS_SWEEP` entries): the cost stays constant per entry added.
fn sweep<T>(
    by_ip: &mut HashMap<IpAddr, T>,
    sweep_at: &mut usize,
    keep: impl FnMut(&IpAddr, &mut T) -> bool,
) {
    if by_ip.len() >= *sweep_at {
        by_ip.retain(keep);
        *sweep_at = (by_ip.len() * 2).max(MIN_ADDRESS_SWEEP);
    }
}

/// The window over which what an address does is logged a few times at
/// most (see [`LogLimit`]).
pub(super) const LOG_WINDOW: Duration = Duration::from_secs(60);

/// Which events of one kind (refused connections, or joins and their
/// leaves) are logged, per address ([`address_of`], for every peer,
/// loopback ones included): the first `allowance` in a window of
/// [`LOG_WINDOW`] from the first one; the others in that window only
/// counted; the first after it logged again, with that count, and the next
/// window starts with it.
///
/// Bounded: one entry per address, which a sweep (whenever the table has
/// doubled since the last one, as in [`Addresses`]) drops once its window
/// is over, handing out the count it holds if any. So the table holds at
/// most twice the addresses whose window was open at the last sweep (those
/// with an event logged in the minute before it), or `MIN_ADDRESS_SWEEP`:
/// it grows with how many addresses are active in a minute, never with how
/// long the server runs.
#[derive(Debug)]
pub(super) struct LogLimit {
    /// Events logged per window.
    allowance: u32,
    by_ip: HashMap<IpAddr, Logged>,
    /// Size of `by_ip` at which entries whose window is over are swept next.
    sweep_at: usize,
}

/// One address's events in its window.
#[derive(Debug)]
struct Logged {
    /// When the window began.
    since: Instant,
    /// Events logged in it.
    logged: u32,
    /// Events since the last one logged that were not logged.
    unlogged: u64,
}

impl LogLimit {
    /// A limit of `allowance` events logged per address and window.
    pub(super) fn new(allowance: u32) -> LogLimit {
        LogLimit {
            allowance: allowance.max(1),
            by_ip: HashMap::new(),
            sweep_at: MIN_ADDRESS_SWEEP,
        }
    }

    /// An event of `address` at `now`: `Some(n)` if it is to be logged, `n`
    /// being the events of the address left out since the last one logged;
    /// `None` if it is only counted. A sweep gives `swept` each address it
    /// forgets with a count, and the count, in address order.
    pub(super) fn count(
        &mut self,
        address: IpAddr,
        now: Instant,
        mut swept: impl FnMut(IpAddr, u64),
    ) -> Option<u64> {
        let open = |entry: &Logged| now.duration_since(entry.since) < LOG_WINDOW;
        if let Some(entry) = self.by_ip.get_mut(&address) {
            if !open(entry) {
                (entry.since, entry.logged) = (now, 0);
            }
            if entry.logged == self.allowance {
                entry.unlogged += 1;
                return None;
            }
            entry.logged += 1;
            return Some(std::mem::take(&mut entry.unlogged));
        }
        let mut counts = Vec::new();
        sweep(&mut self.by_ip, &mut self.sweep_at, |&ip, entry| {
            let keep = open(entry);
            if !keep && entry.unlogged > 0 {
                counts.push((ip, entry.unlogged));
            }
            keep
        });
        counts.sort_unstable();
        counts.into_iter().for_each(|(ip, count)| swept(ip, count));
        let entry = Logged {
            since: now,
            logged: 1,
            unlogged: 0,
        };
        self.by_ip.insert(address, entry);
        Some(0)
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;
    use crate::config::Rate;

    #[test]
    fn one_host_is_one_address_and_loopback_is_exempt() {
        let config = Config::default();
        let v4: SocketAddr = "203.0.113.1:1".parse().unwrap();
        let mapped: SocketAddr = "[::ffff:203.0.113.1]:2".parse().unwrap();
        assert_eq!(policy_address(&config, v4), policy_address(&config, mapped));
        for loopback in ["127.0.0.2:1", "[::1]:1", "[::ffff:127.0.0.1]:1"] {
            let peer = loopback.parse().unwrap();
            assert_eq!(policy_address(&config, peer), None);
            let limit_loopback = Config {
                limit_loopback: true,
                ..Config::default()
            };
            assert!(policy_address(&limit_loopback, peer).is_some());
        }
    }

    #[test]
    fn ipv6_peers_count_by_their_prefix() {
        let address = |ipv6_prefix, text: &str| {
            let config = Config {
                ipv6_prefix,
                ..Config::default()
            };
            policy_address(&config, text.parse().unwrap())
        };
        let one = address(64, "[2001:db8:1:2::1]:1");
        assert_eq!(one, Some("2001:db8:1:2::".parse().unwrap()));
        // (prefix, two peers, whether they count as one address)
        for (prefix, a, b, shared) in [
            (64, "[2001:db8:1:2::1]:1", "[2001:db8:1:2:ffff::9]:2", true),
            (64, "[2001:db8:1:2::1]:1", "[2001:db8:1:3::1]:1", false),
            (128, "[2001:db8:1:2::1]:1", "[2001:db8:1:2::2]:1", false),
            (48, "[2001:db8:1:2::1]:1", "[2001:db8:1:ffff::1]:1", true),
            (48, "[2001:db8:1::1]:1", "[2001:db8:2::1]:1", false),
            // Not on a byte boundary: ::4 to ::7 are one /126.
            (126, "[2001:db8::5]:1", "[2001:db8::7]:1", true),
            (126, "[2001:db8::3]:1", "[2001:db8::4]:1", false),
        ] {
            let same = address(prefix, a) == address(prefix, b);
            assert_eq!(same, shared, "/{prefix}: {a} and {b}");
        }
        // IPv4, mapped or not, is the address itself whatever the prefix.
        for prefix in [1, 48, 64, 128] {
            let v4 = Some("203.0.113.9".parse().unwrap());
            assert_eq!(address(prefix, "203.0.113.9:1"), v4);
            assert_eq!(address(prefix, "[::ffff:203.0.113.9]:1"), v4);
        }
    }

    #[test]
    fn the_rate_is_taken_even_when_max_per_ip_refuses() {
        let config = Config {
            max_per_ip: Some(1),
            connect_rate: Some(Rate {
                burst: 2,
                interval: Duration::from_secs(10),
            }),
            ..Config::default()
        };
        let now = Instant::now();
        let ip: IpAddr = "203.0.113.1".parse().unwrap();
        let mut addresses = Addresses::new();
        assert!(addresses.admit(&config, ip, now));
        // Over max_per_ip: refused, but the second of the burst is spent.
        assert!(!addresses.admit(&config, ip, now));
        addresses.release(ip);
        assert!(!addresses.admit(&config, ip, now));
        assert!(addresses.admit(&config, ip, now + Duration::from_secs(10)));
    }

    #[test]
    fn unused_addresses_are_swept() {
        let config = Config {
            max_per_ip: None,
            ..Config::default()
        };
        let now = Instant::now();
        let mut addresses = Addresses::new();
        for n in 0..MIN_ADDRESS_SWEEP as u32 {
            let ip = IpAddr::from((0xcb00_7100 + n).to_be_bytes());
            assert!(addresses.admit(&config, ip, now));
            addresses.release(ip);
        }
        // Their budgets refill within a day: the next connect sweeps them.
        let later = now + Duration::from_secs(86_400);
        assert!(addresses.admit(&config, "198.51.100.1".parse().unwrap(), later));
        assert_eq!(addresses.by_ip.len(), 1);
    }

    #[test]
    fn refusals_are_logged_once_a_window_with_the_count() {
        let t0 = Instant::now();
        let ip: IpAddr = "203.0.113.1".parse().unwrap();
        let mut refusals = LogLimit::new(1);
        let mut refuse = |ip, at| refusals.count(ip, at, |_, _| panic!("no sweep"));
        assert_eq!(refuse(ip, t0), Some(0));
        let last = t0 + LOG_WINDOW - Duration::from_nanos(1);
        assert_eq!(refuse(ip, t0), None);
        assert_eq!(refuse(ip, last), None);
        assert_eq!(refuse("203.0.113.2".parse().unwrap(), last), Some(0));
        let t1 = t0 + LOG_WINDOW;
        assert_eq!(refuse(ip, t1), Some(2));
        assert_eq!(refuse(ip, t1 + Duration::from_secs(59)), None);
        assert_eq!(refuse(ip, t1 + LOG_WINDOW), Some(1));
    }

    #[test]
    fn joins_are_logged_twice_a_window() {
        let t0 = Instant::now();
        let ip: IpAddr = "203.0.113.1".parse().unwrap();
        let mut joins = LogLimit::new(2);
        let mut join = |at| joins.count(ip, at, |_, _| panic!("no sweep"));
        assert_eq!(join(t0), Some(0));
        assert_eq!(join(t0 + Duration::from_secs(1)), Some(0));
        assert_eq!(join(t0 + Duration::from_secs(2)), None);
        assert_eq!(join(t0 + Duration::from_secs(59)), None);
        let t1 = t0 + LOG_WINDOW;
        assert_eq!(join(t1), Some(2));
        assert_eq!(join(t1), Some(0));
        assert_eq!(join(t1), None);
    }

    #[test]
    fn refusals_whose_window_is_over_are_swept_with_their_count() {
        let t0 = Instant::now();
        let mut refusals = LogLimit::new(1);
        let ip = |n: u32| IpAddr::from((0xcb00_7100 + n).to_be_bytes());
        let swept = std::cell::RefCell::new(Vec::new());
        let refuse = |refusals: &mut LogLimit, ip, at| {
            refusals.count(ip, at, |ip, count| swept.borrow_mut().push((ip, count)))
        };
        let n = MIN_ADDRESS_SWEEP as u32 - 1;
        for k in 0..n {
            assert_eq!(refuse(&mut refusals, ip(k), t0), Some(0));
        }
        // Two with counts, one refused later: still in its window.
        assert_eq!(refuse(&mut refusals, ip(7), t0), None);
        assert_eq!(refuse(&mut refusals, ip(3), t0), None);
        assert_eq!(refuse(&mut refusals, ip(3), t0), None);
        let open = ip(n);
        let t30 = t0 + Duration::from_secs(30);
        assert_eq!(refuse(&mut refusals, open, t30), Some(0));
        assert_eq!(refusals.by_ip.len(), MIN_ADDRESS_SWEEP);
        // A new address once the first windows are over sweeps them.
        let t60 = t0 + LOG_WINDOW;
        assert_eq!(refuse(&mut refusals, ip(n + 1), t60), Some(0));
        assert_eq!(refusals.by_ip.len(), 2);
        assert_eq!(*swept.borrow(), [(ip(3), 2), (ip(7), 1)]);
        assert_eq!(refuse(&mut refusals, open, t60), None);
        // A swept address starts afresh: its count was handed out.
        assert_eq!(refuse(&mut refusals, ip(3), t60), Some(0));
    }
}
