//! Enforcing a [`Rate`]: one GCRA bucket per thing that is rate-limited
//! (a client's lines, its nick changes, an address's connects).
//!
//! The generic cell rate algorithm keeps one instant per bucket, the
//! theoretical arrival time (TAT): when the next event would be due if
//! events came exactly at the rate. An event fits while the TAT is at most
//! the rate's tolerance ahead of now. Everything is integer time, so the
//! same events at the same times always get the same answers, and events
//! exactly at the rate always fit.

use std::time::{Duration, Instant};

use crate::config::Rate;

/// A token bucket for one [`Rate`], enforced with GCRA.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Bucket {
    rate: Rate,
    /// The theoretical arrival time; `None`: the full burst is available.
    tat: Option<Instant>,
}

impl Bucket {
    /// A bucket with its full burst available.
    pub(crate) fn new(rate: Rate) -> Bucket {
        Bucket { rate, tat: None }
    }

    /// Takes one event at `now` if it fits; otherwise changes nothing and
    /// returns when it would fit (always after `now`).
    pub(crate) fn take(&mut self, now: Instant) -> Result<(), Instant> {
        self.fits(now)?;
        self.charge(now, 1);
        Ok(())
    }

    /// Whether one event fits at `now`, taking nothing; if not, when it
    /// would (always after `now`).
    pub(crate) fn fits(&self, now: Instant) -> Result<(), Instant> {
        let tat = self.tat.map_or(now, |tat| tat.max(now));
        if tat.saturating_duration_since(now) <= self.rate.tolerance() {
            Ok(())
        } else {
            Err(self.fits_from(tat))
        }
    }

    /// Takes `units` events at `now`, whether or not they fit: a budget in
    /// bytes lets through a line when one byte fits, and the line's cost
    /// then holds back what comes after it.
    pub(crate) fn charge(&mut self, now: Instant, units: usize) {
        let tat = self.tat.map_or(now, |tat| tat.max(now));
        let cost = u32::try_from(units).map_or(Duration::MAX, |units| {
            self.rate.interval.saturating_mul(units)
        });
        self.tat = Some(tat.checked_add(cost).unwrap_or(tat));
    }

    /// When the next event fits, if the bucket has been taken from (it may
    /// already be in the past).
    pub(crate) fn next_fits(&self) -> Option<Instant> {
        self.tat.map(|tat| self.fits_from(tat))
    }

    /// Whether the full burst is available again at `now`: forgetting the
    /// bucket then changes no answer.
    pub(crate) fn is_full(&self, now: Instant) -> bool {
        self.tat.is_none_or(|tat| tat <= now)
    }

    /// The first instant at which an event fits, given the TAT.
    fn fits_from(&self, tat: Instant) -> Instant {
        tat.checked_sub(self.rate.tolerance()).unwrap_or(tat)
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    fn rate(burst: u32, interval_ms: u64) -> Rate {
        Rate {
            burst,
            interval: Duration::from_millis(interval_ms),
        }
    }

    #[test]
    fn events_exactly_at_the_rate_are_never_held() {
        let start = Instant::now();
        for burst in [1, 3] {
            let mut bucket = Bucket::new(rate(burst, 250));
            for k in 0..1000 {
                let now = start + Duration::from_millis(250 * k);
                assert_eq!(bucket.take(now), Ok(()), "burst {burst}, event {k}");
            }
        }
    }

    #[test]
    fn a_burst_fits_at_once_then_one_per_interval() {
        let start = Instant::now();
        let mut bucket = Bucket::new(rate(3, 100));
        for _ in 0..3 {
            assert_eq!(bucket.take(start), Ok(()));
        }
        let next = start + Duration::from_millis(100);
        assert_eq!(bucket.take(start), Err(next));
        // A refused event takes nothing.
        assert_eq!(bucket.take(next - Duration::from_nanos(1)), Err(next));
        assert_eq!(bucket.take(next), Ok(()));
        assert_eq!(bucket.take(next), Err(next + Duration::from_millis(100)));
    }

    #[test]
    fn a_charge_past_the_burst_holds_back_what_follows() {
        let start = Instant::now();
        let mut bucket = Bucket::new(rate(4, 10));
        assert_eq!(bucket.fits(start), Ok(()));
        // Larger than the whole burst: it fits, as one byte does, and the
        // next fits once the bucket is back within its burst.
        bucket.charge(start, 10);
        let next = start + Duration::from_millis(70);
        assert_eq!(bucket.fits(start), Err(next));
        assert_eq!(bucket.fits(next - Duration::from_nanos(1)), Err(next));
        assert_eq!(bucket.fits(next), Ok(()));
        assert_eq!(bucket.next_fits(), Some(next));
    }

    #[test]
    fn next_fits_is_when_a_take_succeeds_again() {
        let start = Instant::now();
        let mut bucket = Bucket::new(rate(2, 500));
        assert_eq!(bucket.next_fits(), None);
        assert!(bucket.is_full(start));
        bucket.take(start).unwrap();
        bucket.take(start).unwrap();
        let fits = bucket.next_fits().unwrap();
        assert_eq!(fits, start + Duration::from_millis(500));
        assert_eq!(bucket.take(start), Err(fits));
        assert!(!bucket.is_full(fits));
        assert!(bucket.is_full(start + Duration::from_secs(1)));
        assert_eq!(bucket.take(fits), Ok(()));
    }
}
