//! Per-address state: connections open from each address and its connect
//! rate (protocol.md, "Address policies": connections per address, connect
//! rate, and which peers the policies apply to).

use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};
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

/// The address whose policies apply to `peer`: its IP, with IPv4-mapped
/// IPv6 taken as IPv4 so that one host is one address; `None` for loopback
/// peers unless `limit_loopback`.
pub(super) fn policy_address(config: &Config, peer: SocketAddr) -> Option<IpAddr> {
    let ip = peer.ip().to_canonical();
    (config.limit_loopback || !ip.is_loopback()).then_some(ip)
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
