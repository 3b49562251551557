//! Nicks claimed in Redis before they take effect: a joining client's
//! generated nick (it is welcomed once Redis grants it) and `/nick`; the
//! client's input waits for the answer.

use std::time::Instant;

use rand_core::RngCore;

use super::{Entering, JOIN_TRIES, Pending};
use crate::cluster::{Call, Claimed, Entry};
use crate::nick::{self, NickError};
use crate::rate::Bucket;
use crate::server::conn::State;
use crate::server::{ConnId, Reason, Server};

impl Server {
    /// A generated nick that no one holds here or, as far as this node has
    /// read, on another node; Redis has the last word.
    pub(in crate::server) fn candidate_nick(&mut self) -> String {
        let mut len = nick::GENERATED_LEN;
        loop {
            for _ in 0..16 {
                let rng = &mut self.rng;
                let candidate = nick::generate(len, || rng.next_u32());
                if self.nicks.holder(&candidate).is_none() && !self.held_elsewhere(&candidate) {
                    return candidate;
                }
            }
            len += 1;
        }
    }

    /// Asks Redis to grant `nick` to `conn`, which waits for the answer.
    pub(in crate::server) fn claim_for_join(&mut self, conn: ConnId, nick: String, tries: u32) {
        let pending = Pending::Join {
            conn,
            nick: nick.clone(),
            tries,
        };
        self.claim(conn, nick, pending);
    }

    /// Asks Redis to grant `nick` to `conn`; `pending` says what for.
    fn claim(&mut self, conn: ConnId, nick: String, pending: Pending) {
        let cluster = self.cluster_mut();
        let call = Call::Claim {
            node: cluster.token.clone(),
            ttl: cluster.config.claim_ttl,
            claims: vec![(conn, nick)],
        };
        self.ask(call, pending);
    }

    /// `/nick NEW` on a node of a shared room, once the rate allows it:
    /// checked here against every nick this node knows, then claimed in
    /// Redis (unless it is a variant of the client's own nick), while the
    /// client's input waits.
    pub(in crate::server) fn cluster_nick(
        &mut self,
        conn: ConnId,
        slot: usize,
        new: &str,
        nick_changes: Option<Bucket>,
    ) {
        let old = self.conns[slot].nick.clone();
        if !self.cluster.as_ref().is_some_and(|c| c.is_up()) {
            return self.reply(conn, super::link::NEED_WHOLE);
        }
        if let Err(error) = nick::check(new) {
            return self.reply(conn, &format!("error: {}", error.message(new)));
        }
        let taken_here = self.nicks.holder(new).is_some_and(|holder| holder != conn);
        if taken_here || self.held_elsewhere(new) {
            return self.reply(conn, &format!("error: {}", NickError::Taken.message(new)));
        }
        let new_key = nick::key(new);
        let releasing = self
            .cluster
            .as_ref()
            .and_then(|c| c.releasing.get(&new_key));
        if releasing.is_some_and(|&(_, by)| by == conn) {
            // Its claim of that key goes when its rename is written.
            let text =
                format!("error: nick {new} not changed: you gave it up a moment ago, try again");
            return self.reply(conn, &text);
        }
        if new_key == nick::key(&old) {
            // A variant of its own nick: its claim covers it.
            return self.rename(conn, slot, &old, new, nick_changes);
        }
        self.conns[slot].claim = Some(new.to_string());
        let pending = Pending::Nick {
            conn,
            to: new.to_string(),
            nick_changes,
        };
        self.claim(conn, new.to_string(), pending);
    }

    /// Renames in the local registry, then everywhere; should this node hold
    /// the key for another connection after all, the claim is given back.
    fn rename(&mut self, conn: ConnId, slot: usize, old: &str, new: &str, budget: Option<Bucket>) {
        match self.nicks.rename(old, new, conn) {
            Ok(()) => self.renamed(conn, slot, new, budget),
            Err(error) => {
                if nick::key(new) != nick::key(old) {
                    self.release_claim(conn, new.to_string());
                }
                self.reply(conn, &format!("error: {}", error.message(new)));
            }
        }
    }

    /// Gives back a claim granted to a connection that no longer wants it.
    pub(super) fn release_claim(&mut self, conn: ConnId, nick: String) {
        let node = self.cluster_mut().token.clone();
        self.ask(Call::Release { node, conn, nick }, Pending::Release);
    }

    pub(super) fn join_answered(
        &mut self,
        now: Instant,
        conn: ConnId,
        nick: String,
        tries: u32,
        claimed: Claimed,
    ) {
        let Some(slot) = self.claiming_slot(conn) else {
            if claimed == Claimed::Granted {
                self.release_claim(conn, nick);
            }
            return;
        };
        let granted = claimed == Claimed::Granted && self.nicks.claim(&nick, conn).is_ok();
        if granted {
            // Welcomed when its join is read back: from its place in the
            // room's order (see `entered`).
            self.cluster_mut()
                .entering
                .insert(conn, Entering::default());
            return self.publish(Entry::Join { conn, nick });
        }
        if claimed == Claimed::Granted {
            // Granted, but taken here meanwhile: give it back, draw again.
            self.release_claim(conn, nick);
        }
        if claimed != Claimed::Reaped && tries < JOIN_TRIES {
            let nick = self.candidate_nick();
            self.conns[slot].nick.clone_from(&nick);
            return self.claim_for_join(conn, nick, tries + 1);
        }
        self.refuse_claiming(now, slot, Reason::RoomUnavailable);
    }

    /// A connection closed (or refused) after its nick was granted and its
    /// join published, before that was read back: it leaves as it came, so
    /// that no node keeps it.
    pub(in crate::server) fn entering_gone(&mut self, slot: usize) {
        let conn = self.conns[slot].id;
        let Some(cluster) = self.cluster.as_mut() else {
            return;
        };
        if cluster.entering.remove(&conn).is_some() {
            let nick = self.conns[slot].nick.clone();
            self.nicks.release(&nick, conn);
            self.publish(Entry::Leave {
                conn,
                nick,
                reason: None,
            });
        }
    }

    /// Refuses a connection that waits for its nick: a last line, and a
    /// close that flushes it.
    pub(in crate::server) fn refuse_claiming(&mut self, now: Instant, slot: usize, reason: Reason) {
        let State::Claiming { peer } = self.conns[slot].state else {
            return;
        };
        self.entering_gone(slot);
        let entry = &mut self.conns[slot];
        entry.state = State::Closing { admitted: true };
        entry.flood.clear();
        self.refuse(now, slot, peer, reason);
    }

    pub(super) fn nick_answered(
        &mut self,
        now: Instant,
        conn: ConnId,
        to: String,
        nick_changes: Option<Bucket>,
        claimed: Claimed,
    ) {
        let waiting = self
            .joined_slot(conn)
            .filter(|&slot| self.conns[slot].claim.as_deref() == Some(to.as_str()));
        let Some(slot) = waiting else {
            if claimed == Claimed::Granted {
                self.release_claim(conn, to);
            }
            return;
        };
        self.conns[slot].claim = None;
        match claimed {
            Claimed::Granted => {
                let old = self.conns[slot].nick.clone();
                self.rename(conn, slot, &old, &to, nick_changes);
            }
            Claimed::Taken => {
                self.reply(conn, &format!("error: {}", NickError::Taken.message(&to)));
            }
            Claimed::Reaped => self.reply(conn, super::link::NEED_WHOLE),
        }
        self.input_may_go_on(conn, now);
    }

    /// After a claim was answered: the input that waited for it is handled
    /// (at the end of this call), or reading resumes.
    pub(super) fn input_may_go_on(&mut self, conn: ConnId, now: Instant) {
        let Some(slot) = self.joined_slot(conn) else {
            return;
        };
        let entry = &mut self.conns[slot];
        if entry.flood.is_holding() {
            self.release_later(conn);
        } else if std::mem::take(&mut entry.flood.eof_pending) {
            self.finish_input(conn, now);
        } else {
            self.resume_reading(slot);
        }
    }
}
