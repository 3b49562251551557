//! [`LogBudget`]: at most one line a minute for a warning that clients can
//! cause, so that they cannot flood the log with it.

use std::fmt;
use std::time::{Duration, Instant};

/// Least time between two logged lines of one warning.
const WINDOW: Duration = Duration::from_secs(60);

/// Rate limit of one warning that clients can cause at will, such as a
/// refused spawn (a connection storm past the thread cap refuses thousands
/// in a second) or a failed accept (retried every 100 ms while out of file
/// descriptors): the first occurrence is logged at once, further ones
/// within [`WINDOW`] of the last logged line are only counted, and the
/// first one after it is logged with that count ([`LeftOut`]).
///
/// Occurrences counted after the last logged line are reported only if
/// the warning happens again: a summary on a timer would need a thread,
/// and the line already logged says the trouble began.
///
/// The time is an argument, so that tests need no clock.
#[derive(Debug, Default)]
pub(crate) struct LogBudget {
    /// When the last line was logged; `None` before the first.
    logged: Option<Instant>,
    /// Occurrences since then that were not logged.
    left_out: u64,
}

impl LogBudget {
    /// One occurrence at `now`: `Some` if it is to be logged, with what
    /// its line appends; `None` if it is only counted.
    pub(crate) fn admit(&mut self, now: Instant) -> Option<LeftOut> {
        match self.logged {
            Some(logged) if now.saturating_duration_since(logged) < WINDOW => {
                self.left_out += 1;
                None
            }
            logged => {
                let left_out = LeftOut {
                    count: std::mem::take(&mut self.left_out),
                    over: logged.map_or(Duration::ZERO, |logged| {
                        now.saturating_duration_since(logged)
                    }),
                };
                self.logged = Some(now);
                Some(left_out)
            }
        }
    }
}

/// The occurrences left out of the log since its last line: `count`, over
/// `over`. Shown at the end of the line that is logged, as
/// ` (and 1725 more in the last 63 s)`, or as nothing if there were none.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct LeftOut {
    count: u64,
    over: Duration,
}

impl fmt::Display for LeftOut {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.count == 0 {
            return Ok(());
        }
        let (count, secs) = (self.count, self.over.as_secs());
        write!(f, " (and {count} more in the last {secs} s)")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn secs(secs: u64) -> Duration {
        Duration::from_secs(secs)
    }

    /// The line suffix of an occurrence at `at`, or `None` if not logged.
    fn logged(budget: &mut LogBudget, at: Instant) -> Option<String> {
        budget.admit(at).map(|left_out| left_out.to_string())
    }

    #[test]
    fn the_first_occurrence_is_logged_alone() {
        let mut budget = LogBudget::default();
        assert_eq!(logged(&mut budget, Instant::now()), Some(String::new()));
    }

    #[test]
    fn occurrences_within_the_window_are_counted_then_summed_up() {
        let start = Instant::now();
        let mut budget = LogBudget::default();
        assert!(budget.admit(start).is_some());
        for n in 0..1725 {
            let at = start + Duration::from_millis(n * 30);
            assert_eq!(logged(&mut budget, at), None, "occurrence {n}");
        }
        assert_eq!(logged(&mut budget, start + secs(59)), None);
        assert_eq!(
            logged(&mut budget, start + secs(63)).as_deref(),
            Some(" (and 1726 more in the last 63 s)")
        );
        // The window starts again from the line just logged.
        assert_eq!(logged(&mut budget, start + secs(122)), None);
        assert_eq!(
            logged(&mut budget, start + secs(123)).as_deref(),
            Some(" (and 1 more in the last 60 s)")
        );
    }

    #[test]
    fn an_occurrence_a_window_after_the_last_line_is_logged_alone() {
        let start = Instant::now();
        let mut budget = LogBudget::default();
        assert!(budget.admit(start).is_some());
        assert_eq!(logged(&mut budget, start + WINDOW), Some(String::new()));
        assert_eq!(logged(&mut budget, start + 2 * WINDOW), Some(String::new()));
    }

    #[test]
    fn an_earlier_time_counts_as_within_the_window() {
        let start = Instant::now() + secs(10);
        let mut budget = LogBudget::default();
        assert!(budget.admit(start).is_some());
        assert_eq!(logged(&mut budget, start - secs(5)), None);
    }
}
