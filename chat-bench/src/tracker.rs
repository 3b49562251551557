//! Per (receiver, sender) sequence accounting: loss, duplicates, reordering.

/// How a received sequence number relates to what was seen before.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Observation {
    /// Exactly the next expected number.
    InOrder,
    /// Newer than expected: the numbers in between are missing (for now).
    Gap,
    /// One of the missing numbers, arriving late.
    Reordered,
    /// A number that was already received.
    Duplicate,
}

impl Observation {
    /// Whether this was the first arrival of its line (a delivery).
    pub fn is_new(self) -> bool {
        !matches!(self, Self::Duplicate)
    }
}

/// Tracks the sequence numbers one receiver got from one sender.
///
/// Costs one counter while lines arrive in order; the set of missing
/// numbers is kept as sorted half-open ranges, so it only grows on gaps.
#[derive(Debug, Clone, Default)]
pub struct SeqTracker {
    /// Highest number seen plus one.
    next: u64,
    /// Numbers below `next` not received yet, as sorted `[start, end)`.
    missing: Vec<(u64, u64)>,
}

impl SeqTracker {
    /// Records the arrival of `seq`.
    pub fn observe(&mut self, seq: u32) -> Observation {
        let seq = u64::from(seq);
        if seq == self.next {
            self.next += 1;
            return Observation::InOrder;
        }
        if seq > self.next {
            self.missing.push((self.next, seq));
            self.next = seq + 1;
            return Observation::Gap;
        }
        let i = self.missing.partition_point(|&(_, end)| end <= seq);
        match self.missing.get(i).copied() {
            Some((start, end)) if start <= seq => {
                match (start == seq, end == seq + 1) {
                    (true, true) => {
                        self.missing.remove(i);
                    }
                    (true, false) => self.missing[i].0 += 1,
                    (false, true) => self.missing[i].1 -= 1,
                    (false, false) => {
                        self.missing[i].1 = seq;
                        self.missing.insert(i + 1, (seq + 1, end));
                    }
                }
                Observation::Reordered
            }
            _ => Observation::Duplicate,
        }
    }

    /// Length of the longest fully received prefix `0..k`.
    pub fn received_prefix(&self) -> u32 {
        let k = self.missing.first().map_or(self.next, |&(start, _)| start);
        u32::try_from(k).unwrap_or(u32::MAX)
    }

    /// Whether a number below the highest received is still missing: the
    /// numbers received are not exactly `0..=highest`.
    pub fn has_gap(&self) -> bool {
        !self.missing.is_empty()
    }

    /// Lines of `0..total` never received.
    pub fn lost(&self, total: u64) -> u64 {
        let holes: u64 = self
            .missing
            .iter()
            .map(|&(s, e)| e.min(total).saturating_sub(s))
            .sum();
        holes + total.saturating_sub(self.next)
    }
}

#[cfg(test)]
mod tests {
    use super::Observation::*;
    use super::*;

    #[test]
    fn in_order_stream_loses_nothing() {
        let mut t = SeqTracker::default();
        for s in 0..100 {
            assert_eq!(t.observe(s), InOrder);
        }
        assert_eq!(t.lost(100), 0);
        assert_eq!(t.lost(150), 50, "the unsent tail counts as lost");
    }

    #[test]
    fn gaps_late_arrivals_and_duplicates() {
        let mut t = SeqTracker::default();
        assert_eq!(t.observe(0), InOrder);
        assert!(!t.has_gap());
        assert_eq!(t.observe(5), Gap); // 1..5 missing
        assert!(t.has_gap());
        assert_eq!(t.lost(6), 4);
        assert_eq!(t.received_prefix(), 1);
        assert_eq!(t.observe(3), Reordered); // splits into 1..3, 4..5
        assert_eq!(t.observe(3), Duplicate);
        assert_eq!(t.observe(1), Reordered);
        assert_eq!(t.observe(4), Reordered);
        assert_eq!(t.observe(5), Duplicate);
        assert_eq!(t.observe(0), Duplicate);
        assert_eq!(t.lost(6), 1, "only 2 is still missing");
        assert_eq!(t.observe(2), Reordered);
        assert_eq!(t.lost(6), 0);
        assert!(!t.has_gap());
        assert_eq!(t.received_prefix(), 6);
        assert_eq!(t.observe(6), InOrder);
        assert_eq!(t.observe(9), Gap);
        assert_eq!(t.observe(8), Reordered);
        assert_eq!(t.observe(7), Reordered);
        assert_eq!(t.lost(10), 0);
        assert!(t.missing.is_empty());
    }

    #[test]
    fn counts_match_a_brute_force_model() {
        // A fixed pseudo-random arrival order with drops and repeats.
        let total = 200u32;
        let mut seen = vec![false; total as usize];
        let mut t = SeqTracker::default();
        let mut x = 12345u32;
        let (mut dups, mut new) = (0, 0);
        for _ in 0..600 {
            x = x.wrapping_mul(1_103_515_245).wrapping_add(12345);
            let seq = (x >> 8) % total;
            let obs = t.observe(seq);
            if seen[seq as usize] {
                assert_eq!(obs, Duplicate, "seq {seq}");
                dups += 1;
            } else {
                assert!(obs.is_new(), "seq {seq}");
                seen[seq as usize] = true;
                new += 1;
            }
        }
        let missing = seen.iter().filter(|s| !**s).count() as u64;
        assert_eq!(t.lost(u64::from(total)), missing);
        assert_eq!(new + dups, 600);
    }
}
