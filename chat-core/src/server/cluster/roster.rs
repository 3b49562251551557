//! The members of the other nodes, as this node has read them from the
//! log: by node and connection, and by nick key for lookups.

use std::collections::{BTreeMap, HashMap};

use crate::ConnId;
use crate::cluster::Token;
use crate::nick;

/// The members of the other nodes, as the log says.
#[derive(Debug, Default)]
pub(super) struct Roster {
    pub(super) members: BTreeMap<(Token, ConnId), String>,
    /// Who holds each nick key.
    keys: HashMap<String, (Token, ConnId)>,
}

impl Roster {
    pub(super) fn insert(&mut self, node: Token, conn: ConnId, nick: String) {
        self.remove(&node, conn);
        self.keys.insert(nick::key(&nick), (node.clone(), conn));
        self.members.insert((node, conn), nick);
    }

    pub(super) fn remove(&mut self, node: &Token, conn: ConnId) -> Option<String> {
        let nick = self.members.remove(&(node.clone(), conn))?;
        let key = nick::key(&nick);
        if self.keys.get(&key) == Some(&(node.clone(), conn)) {
            self.keys.remove(&key);
        }
        Some(nick)
    }

    pub(super) fn remove_node(&mut self, node: &Token) {
        let conns: Vec<ConnId> = self
            .members
            .range((node.clone(), ConnId(0))..=(node.clone(), ConnId(u64::MAX)))
            .map(|((_, conn), _)| *conn)
            .collect();
        for conn in conns {
            self.remove(node, conn);
        }
    }

    pub(super) fn holder(&self, nick: &str) -> Option<&(Token, ConnId)> {
        self.keys.get(&nick::key(nick))
    }
}
