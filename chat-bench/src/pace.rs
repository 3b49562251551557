//! Reading at a set rate: a token bucket of bytes.

use std::time::{Duration, Instant};

/// Smallest bucket, so that a slow rate still reads whole lines at a time.
const MIN_CAPACITY: f64 = 1024.0;

/// A client that reads at most `rate` bytes per second: a token bucket that
/// fills at that rate up to a tenth of a second's worth, and a read takes
/// at most what it holds.
///
/// Such a reader is one a server must keep while others burst (a phone on a
/// slow link keeps up with a chat, not with a flood); with a small receive
/// buffer, what it has not read yet is held by the server, not the kernel,
/// so the server's output limits are what it meets.
#[derive(Debug, Clone)]
pub struct ReadPace {
    /// Bytes per second.
    rate: f64,
    /// Most bytes the bucket holds.
    capacity: f64,
    /// Bytes that may be read, as of `at`.
    tokens: f64,
    at: Instant,
}

impl ReadPace {
    /// A full bucket at `now` for `rate` bytes per second (at least 1).
    pub fn new(rate: u64, now: Instant) -> Self {
        let rate = rate.max(1) as f64;
        let capacity = (rate / 10.0).max(MIN_CAPACITY);
        Self {
            rate,
            capacity,
            tokens: capacity,
            at: now,
        }
    }

    fn refill(&mut self, now: Instant) {
        let elapsed = now.saturating_duration_since(self.at).as_secs_f64();
        self.tokens = (self.tokens + elapsed * self.rate).min(self.capacity);
        self.at = now;
    }

    /// How long after `now` the bucket is at least half full (zero if it
    /// already is): the reader then reads in chunks rather than a few bytes
    /// each time a few are allowed.
    pub fn wait(&mut self, now: Instant) -> Duration {
        self.refill(now);
        let missing = self.capacity / 2.0 - self.tokens;
        if missing <= 0.0 {
            Duration::ZERO
        } else {
            Duration::from_secs_f64(missing / self.rate)
        }
    }

    /// Bytes that may be read at `now` (whole bytes).
    pub fn allowance(&mut self, now: Instant) -> usize {
        self.refill(now);
        // Truncation intended: only whole bytes may be read.
        self.tokens as usize
    }

    /// Takes `n` bytes that were read from the bucket.
    pub fn spend(&mut self, n: usize) {
        self.tokens -= n as f64;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_no_more_than_the_rate_allows() {
        let t0 = Instant::now();
        let mut pace = ReadPace::new(102_400, t0);
        // Starts full: a tenth of a second's worth.
        assert_eq!(pace.allowance(t0), 10_240);
        assert_eq!(pace.wait(t0), Duration::ZERO);
        pace.spend(10_240);
        // Half full again after 50 ms.
        assert_eq!(pace.wait(t0), Duration::from_secs_f64(5_120.0 / 102_400.0));
        let t1 = t0 + Duration::from_millis(50);
        assert_eq!(pace.allowance(t1), 5_120);
        // Never more than the capacity, however long it waited.
        assert_eq!(pace.allowance(t1 + Duration::from_secs(60)), 10_240);
        // Simulated: reading whenever allowed for 10 s reads 10 s of rate,
        // plus the first bucket.
        let mut pace = ReadPace::new(102_400, t0);
        let mut now = t0;
        let mut read = 0;
        while now < t0 + Duration::from_secs(10) {
            now += pace.wait(now);
            let n = pace.allowance(now).min(4_000);
            pace.spend(n);
            read += n;
        }
        assert!(
            (1_024_000..=1_024_000 + 10_240 + 4_000).contains(&read),
            "{read}"
        );
    }

    #[test]
    fn slow_rates_still_read_whole_chunks() {
        let t0 = Instant::now();
        let mut pace = ReadPace::new(100, t0);
        assert_eq!(pace.allowance(t0), 1024);
        pace.spend(1024);
        assert_eq!(pace.wait(t0), Duration::from_secs_f64(5.12));
    }
}
