//! A node's link to the room: the hello that (re)joins it, what the node
//! does when the link fails and comes back, its beats, the nodes it finds
//! dead, and leaving the room on shutdown.
//!
//! The driver reports a failed link with [`Server::handle_cluster_down`];
//! every call out is void then, and the node asks for a hello, which the
//! driver runs first once it has reconnected. What clients see: nothing for
//! a blip; after `split_notice_after`, that the room is split (their lines
//! wait, up to `outbox` of them); then that it is whole again. What the
//! hello finds decides the rest: the log where the node left it (catch up),
//! trimmed past it (clients are told how many lines they missed), or lost
//! (Redis restarted empty: the node registers again, and a client whose
//! nick someone else took meanwhile is disconnected).
//!
//! A node is found dead by the others, not by Redis' clock: when its beat
//! counter stands still for `dead_after` of a node's own link-up time, that
//! node asks Redis to reap it, and the one reap that succeeds writes its
//! users' leave for everyone.

use std::time::Instant;

use rand_core::RngCore;

use super::{Entering, Pending, Roster};
use crate::cluster::{BeatReply, Call, Claimed, Gone, Hello, Room, Token};
use crate::server::conn::State;
use crate::server::{Audience, ConnId, Reason, Server, render};

/// Where a node's link to the room is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Link {
    /// Its first hello (or the first since it was reaped) is out.
    Joining,
    /// The room answers.
    Up,
    /// The link failed; a hello is out.
    Down,
}

/// The node's own deadlines, kept apart from the connections' timers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum ClusterTimer {
    /// Time to beat.
    Beat,
    /// The link has been down for `split_notice_after`.
    SplitNotice,
}

impl ClusterTimer {
    /// Every kind, in the order they are run when due together.
    pub(super) const ALL: [ClusterTimer; 2] = [ClusterTimer::Beat, ClusterTimer::SplitNotice];
}

/// Another node's beat counter as last seen.
#[derive(Debug, Clone, Copy)]
pub(super) struct Beating {
    counter: u64,
    /// Since when it has not moved (or since this node's link came up).
    since: Instant,
    /// This node asked for it to be reaped at this counter.
    reaped: bool,
}

/// The clients' side of the room's state.
const SPLIT: &str = "* room split: the other servers cannot be reached; \
                     your lines wait until the room is whole";
const WHOLE: &str = "* room whole again";
pub(super) const LOST: &str =
    "* room history was lost (Redis restarted empty); recent lines may be missing";

impl Server {
    /// Call when the link to Redis failed: a call returned an error or no
    /// answer in time, or the connection dropped, on a node of a shared
    /// room. Every call out is void (its reply, should it come, is
    /// ignored): claims waiting for one are refused, and entries not read
    /// back are published again later. The node asks for a hello at once;
    /// the driver runs it, and then what follows it, once it has
    /// reconnected (backing off, and dropping the calls it had not run).
    pub fn handle_cluster_down(&mut self, now: Instant) {
        let now = self.advance(now);
        if self.cluster.is_some() {
            self.cluster_mut().reading = false;
            self.link_lost(now);
        }
        self.disconnect_too_slow();
        self.release_room(now);
    }

    /// The link failed, or Redis lost what it knew: void every call, wait
    /// for the room, and say hello again.
    pub(super) fn link_lost(&mut self, now: Instant) {
        let void = self.void_calls();
        let cluster = self.cluster_mut();
        cluster.beat_out = false;
        cluster.publishing = false;
        if cluster.link == Link::Up {
            cluster.link = Link::Down;
            let notice = now.checked_add(cluster.config.split_notice_after);
            cluster.set_timer(ClusterTimer::SplitNotice, notice);
        }
        cluster.set_timer(ClusterTimer::Beat, None);
        for pending in void {
            self.call_void(now, pending);
        }
        self.say_hello();
    }

    /// Every call out but a read of the log, which goes on unless the link
    /// failed (then the driver dropped it: see `handle_cluster_down`, which
    /// says so before this): entries it returns before the cursor are
    /// skipped.
    fn void_calls(&mut self) -> Vec<Pending> {
        let cluster = self.cluster_mut();
        let reading = cluster.reading;
        let calls = std::mem::take(&mut cluster.calls);
        let mut void = Vec::new();
        for (id, pending) in calls {
            match pending {
                Pending::Read if reading => {
                    cluster.calls.insert(id, pending);
                }
                _ => void.push(pending),
            }
        }
        void
    }

    /// A call out when the link failed: what waited for it is answered now,
    /// as a claim Redis could not grant (the room is not whole): the joining
    /// client is refused, the `/nick` is told to wait.
    fn call_void(&mut self, now: Instant, pending: Pending) {
        match pending {
            Pending::Join { conn, nick, tries } => {
                self.join_answered(now, conn, nick, tries, Claimed::Reaped);
            }
            Pending::Nick {
                conn,
                to,
                nick_changes,
            } => self.nick_answered(now, conn, to, nick_changes, Claimed::Reaped),
            _ => {}
        }
    }

    /// Asks for the hello that (re)joins the room: a start while joining,
    /// otherwise with what the node knew and its members, to be claimed
    /// again should Redis have lost them.
    pub(super) fn say_hello(&mut self) {
        // Those whose join is published hold their nick too.
        let members: Vec<(ConnId, String)> = self
            .conns
            .iter()
            .filter(|c| c.state == State::Joined || self.entering_conn(c.id))
            .map(|c| (c.id, c.nick.clone()))
            .collect();
        let new_epoch = self.rng.next_u64();
        let cluster = self.cluster_mut();
        let start = cluster.link == Link::Joining;
        let hello = Hello {
            node: cluster.token.clone(),
            known_epoch: if start { None } else { cluster.epoch },
            cursor: cluster.cursor,
            new_epoch,
            members: if start { Vec::new() } else { members },
            ttl: cluster.config.claim_ttl,
            want_roster: !start,
        };
        self.ask(Call::Hello(hello), Pending::Hello { start });
    }

    /// The hello found the room: the link is up.
    pub(super) fn room_found(&mut self, now: Instant, start: bool, room: Room) {
        let cluster = self.cluster_mut();
        let first = room.first.unwrap_or(room.top + 1);
        let mut missed = 0;
        let mut lost = false;
        if start {
            cluster.cursor = room.top;
        } else if room.reset {
            // All of the new log was written since Redis lost the old one
            // (lines said during the outage among it): read it all; what
            // this node read before is skipped by origin.
            cluster.cursor = first - 1;
            lost = true;
            // Joins written in the lost log are published again, to new
            // seqs; their clients are told once welcomed.
            for entering in cluster.entering.values_mut() {
                *entering = Entering {
                    seq: None,
                    history_lost: true,
                };
            }
        } else if first > cluster.cursor + 1 {
            missed = first - cluster.cursor - 1;
            cluster.cursor = first - 1;
        }
        cluster.epoch = Some(room.epoch);
        cluster.hello_top = room.top;
        if let Some(roster) = room.roster {
            // The room as it is now; entries read after this replay onto it.
            let mut fresh = Roster::default();
            for (node, conn, nick) in roster.into_iter().filter(|m| m.0 != cluster.token) {
                fresh.insert(node, conn, nick);
            }
            cluster.roster = fresh;
        }
        cluster.link = Link::Up;
        cluster.set_timer(ClusterTimer::SplitNotice, None);
        // Told only while down (see `split_notice`).
        let whole = std::mem::take(&mut cluster.split_told);
        // Everyone gets `dead_after` of this node's link-up time to beat.
        cluster.beats = room
            .nodes
            .into_iter()
            .map(|(node, counter)| {
                let beating = Beating {
                    counter,
                    since: now,
                    reaped: false,
                };
                (node, beating)
            })
            .collect();
        cluster.next_extend = Some(now);
        let beat = now.checked_add(cluster.config.beat);
        cluster.set_timer(ClusterTimer::Beat, beat);
        // Published again: Redis writes each entry once.
        let again: Vec<_> = cluster.unconfirmed.drain(..).collect();
        let waiting = std::mem::take(&mut cluster.outbox);
        cluster.outbox = again.into_iter().chain(waiting).collect();
        self.who_order = None;
        if lost {
            self.tell_all(LOST);
        }
        if missed > 0 {
            self.missed(missed);
        }
        if whole {
            self.tell_all(WHOLE);
        }
        for conn in room.conflicts {
            if self.joined_slot(conn).is_some() {
                self.disconnect(conn, Reason::NickLost);
            }
        }
        self.enter_passed(now);
        self.read_log();
    }

    /// Redis does not know this node any more: the others were told its
    /// users left. They are disconnected, and the node joins the room anew
    /// as another incarnation.
    pub(super) fn room_lost(&mut self, now: Instant) {
        let joined = self.joined_ids();
        for conn in joined {
            self.disconnect(conn, Reason::RoomLost);
        }
        for pending in self.void_calls() {
            self.call_void(now, pending);
        }
        // Those whose join is published and not read back go too.
        let entering: Vec<usize> = (0..self.conns.len())
            .filter(|&slot| matches!(self.conns[slot].state, State::Claiming { .. }))
            .collect();
        for slot in entering {
            self.refuse_claiming(now, slot, Reason::RoomUnavailable);
        }
        let incarnation = self.rng.next_u64();
        let cluster = self.cluster_mut();
        cluster.token = cluster.token.next_run(incarnation);
        cluster.publishing = false;
        cluster.link = Link::Joining;
        cluster.beat_out = false;
        cluster.outbox.clear();
        cluster.unconfirmed.clear();
        cluster.seen.clear();
        cluster.releasing.clear();
        cluster.roster = Roster::default();
        cluster.beats.clear();
        cluster.timers = [None; ClusterTimer::ALL.len()];
        cluster.split_told = false;
        self.who_order = None;
        self.say_hello();
    }

    /// Tells every joined client `text`.
    fn tell_all(&mut self, text: &str) {
        let joined = self.joined_ids();
        let line = render(&[text]);
        for conn in joined {
            self.deliver(Audience::One(conn), line.clone());
        }
    }

    /// Tells every joined client that `count` lines of the room went by
    /// unread.
    pub(super) fn missed(&mut self, count: u64) {
        self.tell_all(&missed_text(count));
    }

    /// Runs the node's deadlines due by `now`.
    pub(in crate::server) fn run_cluster_timers(&mut self, now: Instant) {
        for timer in ClusterTimer::ALL {
            let Some(cluster) = self.cluster.as_mut() else {
                return;
            };
            if cluster.timers[timer as usize].is_some_and(|at| at <= now) {
                cluster.timers[timer as usize] = None;
                match timer {
                    ClusterTimer::Beat => self.beat(now),
                    ClusterTimer::SplitNotice => self.split_notice(),
                }
            }
        }
    }

    /// The node's next deadline, on a node of a shared room.
    pub(in crate::server) fn cluster_deadline(&self) -> Option<Instant> {
        let cluster = self.cluster.as_ref()?;
        cluster.timers.iter().flatten().min().copied()
    }

    fn split_notice(&mut self) {
        let cluster = self.cluster_mut();
        if cluster.link == Link::Down && !cluster.split_told {
            cluster.split_told = true;
            self.tell_all(SPLIT);
        }
    }

    /// Tells Redis this node is alive, extending its claims now and then;
    /// the reply says who else is.
    fn beat(&mut self, now: Instant) {
        let cluster = self.cluster_mut();
        if cluster.link != Link::Up {
            return;
        }
        let next = now.checked_add(cluster.config.beat);
        cluster.set_timer(ClusterTimer::Beat, next);
        if cluster.beat_out {
            return;
        }
        let ttl = cluster.config.claim_ttl;
        let extend = cluster.next_extend.is_some_and(|at| at <= now);
        if extend {
            cluster.next_extend = now.checked_add(ttl / 3);
        }
        cluster.beat_out = true;
        let call = Call::Beat {
            node: cluster.token.clone(),
            epoch: cluster.epoch.unwrap_or(0),
            cursor: cluster.cursor,
            extend: extend.then_some(ttl),
        };
        self.ask(call, Pending::Beat);
    }

    pub(super) fn beat_answered(&mut self, now: Instant, reply: BeatReply) {
        match reply {
            BeatReply::Reset => self.link_lost(now),
            BeatReply::Reaped => self.room_lost(now),
            BeatReply::Alive { nodes, lost } => {
                for conn in lost {
                    if self.joined_slot(conn).is_some() {
                        self.disconnect(conn, Reason::NickLost);
                    }
                }
                self.observe(now, nodes);
            }
        }
    }

    /// The other nodes' beat counters as Redis has them: a node whose
    /// counter stood still for `dead_after` is reaped, once per counter.
    fn observe(&mut self, now: Instant, nodes: Vec<(Token, u64)>) {
        let cluster = self.cluster_mut();
        let dead_after = cluster.config.dead_after;
        let mut reap = Vec::new();
        let mut beats = std::collections::HashMap::new();
        for (node, counter) in nodes {
            if node == cluster.token {
                continue;
            }
            let mut beating = match cluster.beats.get(&node) {
                Some(seen) if seen.counter == counter => *seen,
                _ => Beating {
                    counter,
                    since: now,
                    reaped: false,
                },
            };
            if !beating.reaped && now.saturating_duration_since(beating.since) >= dead_after {
                beating.reaped = true;
                reap.push((node.clone(), counter));
            }
            beats.insert(node, beating);
        }
        cluster.beats = beats;
        for (node, counter) in reap {
            let call = Call::Reap {
                node,
                counter: Some(counter),
                why: Gone::Lost,
            };
            self.ask(call, Pending::Reap);
        }
    }

    /// On shutdown: what waits is published, then the node reaps itself,
    /// so the others see its users leave at once.
    pub(in crate::server) fn depart(&mut self) {
        self.flush_outbox();
        let cluster = self.cluster_mut();
        cluster.timers = [None; ClusterTimer::ALL.len()];
        if cluster.link != Link::Up {
            return;
        }
        let call = Call::Reap {
            node: cluster.token.clone(),
            counter: None,
            why: Gone::Shutdown,
        };
        self.ask(call, Pending::Reap);
    }
}

/// What a client is told when `count` lines of the room went by unread.
pub(super) fn missed_text(count: u64) -> String {
    let line = if count == 1 { "line" } else { "lines" };
    format!("* missed {count} {line} (this server fell behind)")
}

/// The reply to a nick change while the room is split.
pub(super) const NEED_WHOLE: &str =
    "error: nick changes need the whole room; try again when it is whole";

impl super::Cluster {
    pub(super) fn set_timer(&mut self, timer: ClusterTimer, at: Option<Instant>) {
        self.timers[timer as usize] = at;
    }
}
