//! `/msg NICK TEXT`: a private message, `*FROM* TEXT` to one client.

use super::split_word;
use crate::cluster::Entry;
use crate::server::{Audience, ConnId, Server, render};

impl Server {
    pub(super) fn command_msg(&mut self, conn: ConnId, args: &str) {
        let (target, text) = split_word(args);
        if target.is_empty() || text.is_empty() {
            return self.reply(conn, "error: usage: /msg NICK TEXT");
        }
        let Some(slot) = self.joined_slot(conn) else {
            return;
        };
        let line = render(&["*", &self.conns[slot].nick, "* ", text]);
        if let Some(to) = self.nicks.holder(target) {
            return self.deliver(Audience::One(to), line);
        }
        // On a node of a shared room: through the log, to the node that
        // holds it. Should its holder leave first, it is dropped.
        if let Some((node, to_conn)) = self.remote_holder(target) {
            if self.room_split_full() {
                return self.reply(conn, "error: room split, line not sent");
            }
            let text = line.strip_suffix(b"\n").unwrap_or(&line);
            return self.publish(Entry::Msg {
                conn,
                to: node,
                to_conn,
                line: String::from_utf8_lossy(text).into_owned(),
            });
        }
        self.reply(conn, &format!("error: no such nick {target}"));
    }
}
