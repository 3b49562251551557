//! `/who`: who is online, sorted case-insensitively, in lines of at most
//! [`WHO_LINE`] bytes, the whole reply within half of `max_queue`; it costs
//! its bytes against the asker's address's flood budget.

use bytes::Bytes;

use crate::config::LINE_COST;
use crate::server::conn::State;
use crate::server::{Audience, ConnId, Server, render};

/// The longest line of a `/who` reply, LF included: a long list goes on
/// over several lines (a nick is never split).
pub const WHO_LINE: usize = 512;

impl Server {
    pub(super) fn command_who(&mut self, conn: ConnId) {
        let Some(asker) = self.joined_slot(conn) else {
            return;
        };
        let budget = self.config.max_queue / 2;
        let lines = if self.cluster.is_some() {
            // Local and remote members: sorted for each `/who`.
            let mut nicks: Vec<&str> = self
                .conns
                .iter()
                .filter(|c| c.state == State::Joined)
                .map(|c| c.nick.as_str())
                .chain(self.remote_nicks())
                .collect();
            nicks.sort_by_cached_key(|nick| (nick.to_lowercase(), nick.to_string()));
            who_lines(nicks.iter().copied(), nicks.len(), budget)
        } else {
            self.local_who_lines(budget)
        };
        let cost: usize = lines.iter().map(|line| line.len() + LINE_COST).sum();
        for line in lines {
            self.deliver(Audience::One(conn), line);
        }
        // A long list weighs on the room like the lines of that size.
        let (Some(ip), Some(now)) = (self.conns[asker].policy_address, self.clock) else {
            return;
        };
        if let Some(bucket) = self.addresses.flood(ip) {
            bucket.charge(now, cost);
            // Whose turn of the address it is waits longer now.
            if let Some(first) = self.addresses.first(ip) {
                self.schedule(first);
            }
        }
    }

    /// The `/who` lines of a server of its own, its order kept for the next.
    fn local_who_lines(&mut self, budget: usize) -> Vec<Bytes> {
        let order = self.who_order.take().unwrap_or_else(|| {
            let mut order: Vec<ConnId> = self
                .conns
                .iter()
                .filter(|c| c.state == State::Joined)
                .map(|c| c.id)
                .collect();
            order.sort_by_cached_key(|&id| {
                let nick = &self.conns[id.slot()].nick;
                (nick.to_lowercase(), nick.clone())
            });
            order
        });
        let nicks = order.iter().map(|id| self.conns[id.slot()].nick.as_str());
        let lines = who_lines(nicks, order.len(), budget);
        self.who_order = Some(order);
        lines
    }
}

/// The lines of a `/who` reply listing `nicks` (`count` of them, sorted):
/// `* N users online: A, B, C`, going on over `* D, E` lines of at most
/// [`WHO_LINE`] bytes; nicks that would take the reply (each line its bytes
/// and [`LINE_COST`]) over `budget`, room for the last line kept, are left
/// out, and a last line `* and K more` says how many.
fn who_lines<'a>(nicks: impl Iterator<Item = &'a str>, count: usize, budget: usize) -> Vec<Bytes> {
    let cost = |line: &str| line.len() + 1 + LINE_COST;
    let users = if count == 1 { "user" } else { "users" };
    let mut lines = Vec::new();
    let mut last = format!("* {count} {users} online:");
    let mut spent = cost(&last);
    let reserve = cost(&format!("* and {count} more"));
    let mut listed = 0;
    for nick in nicks {
        let sep = if last.ends_with(':') { " " } else { ", " };
        let fits_on_last = last.len() + sep.len() + nick.len() < WHO_LINE;
        let more = if fits_on_last {
            sep.len() + nick.len()
        } else {
            cost(&format!("* {nick}"))
        };
        if spent + more + reserve > budget {
            break;
        }
        spent += more;
        if fits_on_last {
            last.push_str(sep);
            last.push_str(nick);
        } else {
            lines.push(std::mem::replace(&mut last, format!("* {nick}")));
        }
        listed += 1;
    }
    lines.push(last);
    if listed < count {
        lines.push(format!("* and {} more", count - listed));
    }
    lines.iter().map(|line| render(&[line])).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The nicks a reply lists, in order.
    fn listed(lines: &[Bytes]) -> Vec<String> {
        let mut nicks = Vec::new();
        for (i, line) in lines.iter().enumerate() {
            let text = std::str::from_utf8(line).unwrap().trim_end();
            let list = if i == 0 {
                text.split_once(": ").map_or("", |(_, list)| list)
            } else {
                text.strip_prefix("* ").unwrap()
            };
            if !list.starts_with("and ") {
                nicks.extend(list.split(", ").filter(|n| !n.is_empty()).map(String::from));
            }
        }
        nicks
    }

    #[test]
    fn a_long_list_goes_on_over_lines_within_the_budget() {
        let nicks: Vec<String> = (0..100).map(|i| format!("n{i:031}")).collect();
        let all = who_lines(nicks.iter().map(String::as_str), 100, 1 << 20);
        assert!(all[0].starts_with(b"* 100 users online: n000"));
        assert!(all.len() > 1 && all.iter().all(|line| line.len() <= WHO_LINE));
        assert_eq!(listed(&all), nicks, "every nick, whole, once, in order");
        let budget = 2000;
        let cut = who_lines(nicks.iter().map(String::as_str), 100, budget);
        let cost: usize = cut.iter().map(|line| line.len() + LINE_COST).sum();
        assert!(cost <= budget, "{cost} over {budget}");
        let shown = listed(&cut);
        assert!(!shown.is_empty() && nicks.starts_with(&shown));
        let last = std::str::from_utf8(cut.last().unwrap()).unwrap();
        assert_eq!(last, format!("* and {} more\n", 100 - shown.len()));
    }
}
