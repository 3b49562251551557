//! `/who`: who is online, sorted case-insensitively.

use crate::server::conn::State;
use crate::server::{ConnId, Server};

impl Server {
    pub(super) fn command_who(&mut self, conn: ConnId) {
        let mut nicks: Vec<&str> = self
            .conns
            .iter()
            .filter(|c| c.state == State::Joined)
            .map(|c| c.nick.as_str())
            .collect();
        nicks.sort_unstable_by_key(|n| (n.to_lowercase(), *n));
        let users = if nicks.len() == 1 { "user" } else { "users" };
        let text = format!("{} {users} online: {}", nicks.len(), nicks.join(", "));
        self.reply(conn, &text);
    }
}
