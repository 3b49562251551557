//! `/nick NAME`: change one's nick, within the nick-change rate.

use super::split_word;
use crate::cluster::Entry;
use crate::rate::Bucket;
use crate::server::{ConnId, Event, Output, Server, renamed_line};

impl Server {
    pub(super) fn command_nick(&mut self, conn: ConnId, args: &str) {
        let (new, extra) = split_word(args);
        if new.is_empty() || !extra.is_empty() {
            return self.reply(conn, "error: usage: /nick NAME");
        }
        let Some(slot) = self.joined_slot(conn) else {
            return;
        };
        let old = self.conns[slot].nick.clone();
        if old == new {
            return self.reply(conn, &format!("you are now known as {new}"));
        }
        // Taken from a copy: only a change that succeeds takes from the budget.
        let mut nick_changes = self.conns[slot].nick_changes;
        if let (Some(bucket), Some(now)) = (&mut nick_changes, self.clock) {
            if let Err(ready) = bucket.take(now) {
                let wait = ready.saturating_duration_since(now);
                let secs = wait.as_secs() + u64::from(wait.subsec_nanos() > 0);
                let text = format!("error: nick changes too fast, try again in {secs} s");
                return self.reply(conn, &text);
            }
        }
        if self.cluster.is_some() {
            return self.cluster_nick(conn, slot, new, nick_changes);
        }
        match self.nicks.rename(&old, new, conn) {
            Err(error) => self.reply(conn, &format!("error: {}", error.message(new))),
            Ok(()) => self.renamed(conn, slot, new, nick_changes),
        }
    }

    /// Renames the client in `slot` to `new`, which is checked and held for
    /// it (locally, and in Redis on a node of a shared room); takes the
    /// change from its budget, tells it and the room, and logs it.
    pub(in crate::server) fn renamed(
        &mut self,
        conn: ConnId,
        slot: usize,
        new: &str,
        nick_changes: Option<Bucket>,
    ) {
        let old = std::mem::replace(&mut self.conns[slot].nick, new.to_owned());
        self.who_order = None;
        self.conns[slot].nick_changes = nick_changes;
        self.reply(conn, &format!("you are now known as {new}"));
        let notice = renamed_line(&old, new);
        self.broadcast(conn, notice, |_| Entry::Rename {
            conn,
            from: old.clone(),
            to: new.to_owned(),
        });
        self.outputs
            .push_back(Output::Event(Box::new(Event::Renamed {
                conn,
                from: old,
                to: new.to_owned(),
            })));
    }
}
