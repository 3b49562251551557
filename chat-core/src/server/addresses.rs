//! Per-address state: connections open from each address and its connect
//! rate (protocol.md, "Address policies": connections per address, connect
//! rate, and which peers the policies apply to).

use std::collections::HashMap;
use std::net::{IpAddr, Ipv6Addr, SocketAddr};
use std::time::Instant;

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

/// Connections open from one address, and its connect-rate budget.
#[derive(Debug)]
struct Address {
    open: usize,
    /// `None` when there is no connect rate.
    connects: Option<Bucket>,
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
        // Addresses with nothing open and a full budget carry no state:
        // sweep them whenever the map has doubled since the last sweep.
        if self.by_ip.len() >= self.sweep_at {
            self.by_ip.retain(|_, address| {
                address.open > 0 || address.connects.is_some_and(|bucket| !bucket.is_full(now))
            });
            self.sweep_at = (self.by_ip.len() * 2).max(MIN_ADDRESS_SWEEP);
        }
        let address = self.by_ip.entry(ip).or_insert_with(|| Address {
            open: 0,
            connects: config.connect_rate.map(Bucket::new),
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

    /// A connection admitted from `ip` is closed.
    pub(super) fn release(&mut self, ip: IpAddr) {
        if let Some(address) = self.by_ip.get_mut(&ip) {
            address.open = address.open.saturating_sub(1);
        }
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
}
