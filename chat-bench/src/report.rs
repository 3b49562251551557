//! Results of a run: the human summary and the machine-readable line.

use std::fmt::Write as _;

/// Latency percentiles, in microseconds.
#[derive(Debug, Clone, Copy, Default)]
pub struct Latency {
    /// Median.
    pub p50_us: f64,
    /// 99th percentile.
    pub p99_us: f64,
    /// 99.9th percentile.
    pub p999_us: f64,
    /// Largest sample.
    pub max_us: f64,
    /// Number of samples.
    pub samples: u64,
}

/// Smallest, median and largest of a set of counts.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Spread {
    /// Smallest.
    pub min: u64,
    /// Median (the upper one of an even count).
    pub median: u64,
    /// Largest.
    pub max: u64,
}

impl Spread {
    /// The spread of `values`; `None` if there are none.
    pub fn of(mut values: Vec<u64>) -> Option<Self> {
        values.sort_unstable();
        Some(Self {
            min: *values.first()?,
            median: values[values.len() / 2],
            max: *values.last()?,
        })
    }
}

/// What the `burst` scenario adds: how the readers that read at a set rate
/// came through the senders' burst.
#[derive(Debug, Clone, Default)]
pub struct BurstStats {
    /// Bytes per second each reader reads.
    pub read_rate: u64,
    /// Readers still connected at the end (no EOF, error or
    /// `* error: disconnected (...)` line).
    pub readers_connected: usize,
    /// Lines each reader received (of S*M).
    pub reader_lines: Spread,
    /// Readers that miss a line of some sender before one they got.
    pub gap_readers: usize,
    /// Senders whose connection ended before the run did.
    pub senders_disconnected: usize,
}

/// Everything a scenario measured.
#[derive(Debug, Clone, Default)]
pub struct Report {
    /// `fanout`, `idle`, `slow` or `burst`.
    pub scenario: &'static str,
    /// Server addresses, joined by `, `.
    pub addr: String,
    /// How many servers the clients were spread over.
    pub servers: usize,
    /// Whether the clients connected with TLS.
    pub tls: bool,
    /// Reading clients (N).
    pub clients: usize,
    /// Sending clients (S).
    pub senders: usize,
    /// Lines per sender (M).
    pub lines: u32,
    /// Line size in bytes, LF included (B).
    pub size: usize,
    /// Lines per second per sender, `None` for closed loop.
    pub rate: Option<f64>,
    /// Never-reading clients.
    pub slow: usize,
    /// Connections that could not be opened.
    pub connect_failures: usize,
    /// Deliveries expected: S*M*(N-1), or N-1 for `idle`.
    pub expected: u64,
    /// Distinct lines that reached a client other than their sender.
    pub deliveries: u64,
    /// Expected deliveries that never arrived.
    pub lost: u64,
    /// Lines that arrived more than once at the same client.
    pub dup: u64,
    /// Lines that arrived after a later line of the same sender.
    pub reordered: u64,
    /// Lines that came back to their own sender.
    pub echoed: u64,
    /// Received lines without a token of this run (notices etc.).
    pub other_lines: u64,
    /// Reading clients whose connection ended early (EOF or error).
    pub reader_disconnects: usize,
    /// Seconds from the first send to the last delivery.
    pub secs: f64,
    /// Latency from (scheduled) send until a receiving client read the line.
    pub latency: Option<Latency>,
    /// Latency from (scheduled) send until the line arrived in a receiving
    /// client's socket (kernel receive timestamp): without the time the
    /// generator took to get to reading it. With TLS, until the ciphertext
    /// that completed the line's records arrived.
    pub arrival: Option<Latency>,
    /// Open loop: how late lines left the generator, after when they were
    /// due (counted in both latencies).
    pub send_lag: Option<Latency>,
    /// Slow clients the server disconnected; `None` if there were none.
    pub slow_disconnected: Option<usize>,
    /// Server RSS (KiB) before connecting, at its peak, and at the end.
    pub rss_before_kib: Option<u64>,
    /// Peak RSS sampled during the run.
    pub rss_peak_kib: Option<u64>,
    /// RSS after the run (for `idle`: with all connections open).
    pub rss_after_kib: Option<u64>,
    /// Why the run stopped before all deliveries arrived, if it did.
    pub stop_reason: Option<String>,
    /// `burst` only.
    pub burst: Option<BurstStats>,
}

impl Report {
    /// Deliveries per second over the sending phase.
    pub fn rate_per_sec(&self) -> f64 {
        if self.secs > 0.0 {
            self.deliveries as f64 / self.secs
        } else {
            0.0
        }
    }

    /// RSS growth per connection in bytes (`idle` only, needs both
    /// samples), over the connections the server holds: the clients the
    /// broadcast reached and its sender. A server that refused some
    /// (`server full`) and closed them holds only the rest; dividing by all
    /// that connected would understate what each costs.
    pub fn rss_per_conn(&self) -> Option<i64> {
        if self.scenario != "idle" {
            return None;
        }
        let conns = i64::try_from(self.deliveries + 1).ok()?;
        let before = i64::try_from(self.rss_before_kib?).ok()?;
        let after = i64::try_from(self.rss_after_kib?).ok()?;
        Some((after - before) * 1024 / conns)
    }

    /// Whether every expected line arrived exactly once and in order. For
    /// `burst`, whether every reader stayed connected and got each sender's
    /// lines from the first on, once, in order, without a gap: lines that
    /// had not arrived yet when the run stopped are not a failure (a server
    /// may hold back the senders).
    pub fn clean(&self) -> bool {
        let complete = match &self.burst {
            Some(b) => b.gap_readers == 0 && self.reader_disconnects == 0,
            None => self.lost == 0,
        };
        complete && self.dup == 0 && self.reordered == 0 && self.connect_failures == 0
    }

    /// The single `RESULT key=value ...` line; every key is always present,
    /// `-` marks a value that does not apply.
    pub fn result_line(&self) -> String {
        fn opt<T: ToString>(v: Option<T>) -> String {
            v.map_or_else(|| "-".to_owned(), |v| v.to_string())
        }
        let us = |l: &Option<Latency>, f: fn(&Latency) -> f64| {
            opt(l.as_ref().map(|l| format!("{:.1}", f(l))))
        };
        let lat = |f| us(&self.latency, f);
        let burst = |f: fn(&BurstStats) -> u64| opt(self.burst.as_ref().map(f));
        let mut s = String::from("RESULT");
        let kv: [(&str, String); 40] = [
            ("scenario", self.scenario.to_owned()),
            ("clients", self.clients.to_string()),
            ("senders", self.senders.to_string()),
            ("lines", self.lines.to_string()),
            ("size", self.size.to_string()),
            ("rate", opt(self.rate)),
            ("slow", self.slow.to_string()),
            ("tls", u8::from(self.tls).to_string()),
            ("servers", self.servers.to_string()),
            ("expected", self.expected.to_string()),
            ("deliveries", self.deliveries.to_string()),
            ("secs", format!("{:.3}", self.secs)),
            ("deliveries_per_sec", format!("{:.0}", self.rate_per_sec())),
            ("lost", self.lost.to_string()),
            ("dup", self.dup.to_string()),
            ("reordered", self.reordered.to_string()),
            ("echoed", self.echoed.to_string()),
            ("connect_failures", self.connect_failures.to_string()),
            ("reader_disconnects", self.reader_disconnects.to_string()),
            ("p50_us", lat(|l| l.p50_us)),
            ("p99_us", lat(|l| l.p99_us)),
            ("p999_us", lat(|l| l.p999_us)),
            ("max_us", lat(|l| l.max_us)),
            ("arrival_p50_us", us(&self.arrival, |l| l.p50_us)),
            ("arrival_p99_us", us(&self.arrival, |l| l.p99_us)),
            ("arrival_p999_us", us(&self.arrival, |l| l.p999_us)),
            ("send_lag_p99_us", us(&self.send_lag, |l| l.p99_us)),
            ("send_lag_max_us", us(&self.send_lag, |l| l.max_us)),
            ("slow_disconnected", opt(self.slow_disconnected)),
            ("rss_before_kib", opt(self.rss_before_kib)),
            ("rss_peak_kib", opt(self.rss_peak_kib)),
            ("rss_kib", opt(self.rss_after_kib)),
            ("rss_per_conn_bytes", opt(self.rss_per_conn())),
            ("read_rate", burst(|b| b.read_rate)),
            ("readers_connected", burst(|b| b.readers_connected as u64)),
            ("reader_lines_min", burst(|b| b.reader_lines.min)),
            ("reader_lines_median", burst(|b| b.reader_lines.median)),
            ("reader_lines_max", burst(|b| b.reader_lines.max)),
            ("gap_readers", burst(|b| b.gap_readers as u64)),
            ("ok", u8::from(self.clean()).to_string()),
        ];
        for (k, v) in kv {
            let _ = write!(s, " {k}={v}");
        }
        s
    }

    /// A multi-line human-readable summary.
    pub fn summary(&self) -> String {
        let mut s = String::new();
        let _ = writeln!(
            s,
            "== chat-bench {} against {}{} ==",
            self.scenario,
            self.addr,
            if self.tls { " over TLS" } else { "" }
        );
        if self.scenario == "idle" {
            let _ = writeln!(
                s,
                "idle connections {} (failed {}); one broadcast reached {} of {}; lost {}",
                self.clients, self.connect_failures, self.deliveries, self.expected, self.lost
            );
        } else {
            self.load_summary(&mut s);
        }
        if self.rss_before_kib.is_some() {
            let kib = |v: Option<u64>| v.map_or_else(|| "?".to_owned(), |v| format!("{v} KiB"));
            let _ = write!(
                s,
                "server RSS before {}, peak {}, after {}",
                kib(self.rss_before_kib),
                kib(self.rss_peak_kib),
                kib(self.rss_after_kib)
            );
            if let Some(per) = self.rss_per_conn() {
                let _ = write!(s, ", {per} B per connection");
            }
            s.push('\n');
        }
        if let Some(r) = &self.stop_reason {
            let _ = writeln!(s, "stopped early: {r}");
        }
        s
    }

    /// The summary lines of a run with senders.
    fn load_summary(&self, s: &mut String) {
        if self.burst.is_some() {
            let _ = writeln!(
                s,
                "readers {}, senders {} (which only drain), {} lines/sender of {} B, \
                 all at once",
                self.clients, self.senders, self.lines, self.size
            );
        } else {
            let mode = self.rate.map_or_else(
                || "closed loop".to_owned(),
                |r| format!("open loop, {r} lines/s per sender"),
            );
            let _ = writeln!(
                s,
                "clients {} (senders {}, never-reading {}), {} lines/sender of {} B, {mode}",
                self.clients, self.senders, self.slow, self.lines, self.size
            );
        }
        let _ = writeln!(
            s,
            "deliveries {} of {} in {:.3} s = {:.0} deliveries/s ({:.1} MB/s received)",
            self.deliveries,
            self.expected,
            self.secs,
            self.rate_per_sec(),
            self.rate_per_sec() * self.size as f64 / 1e6
        );
        let _ = writeln!(
            s,
            "lost {}, duplicated {}, reordered {}, echoed {}, other lines {}, \
             connect failures {}, reading clients disconnected {}",
            self.lost,
            self.dup,
            self.reordered,
            self.echoed,
            self.other_lines,
            self.connect_failures,
            self.reader_disconnects
        );
        let lines = [
            ("latency to read", &self.latency),
            ("latency to arrival", &self.arrival),
            ("send lag", &self.send_lag),
        ];
        for (what, l) in lines {
            if let Some(l) = l {
                let _ = writeln!(
                    s,
                    "{what}: p50 {:.1} us, p99 {:.1} us, p99.9 {:.1} us, max {:.1} us ({} samples)",
                    l.p50_us, l.p99_us, l.p999_us, l.max_us, l.samples
                );
            }
        }
        if let Some(b) = &self.burst {
            let l = b.reader_lines;
            let _ = writeln!(
                s,
                "readers reading at {} B/s: {} of {} still connected; lines per reader \
                 min {} / median {} / max {} of {}; {} with a gap; senders disconnected {}",
                b.read_rate,
                b.readers_connected,
                self.clients,
                l.min,
                l.median,
                l.max,
                self.senders as u64 * u64::from(self.lines),
                b.gap_readers,
                b.senders_disconnected
            );
        }
        if let Some(d) = self.slow_disconnected {
            let _ = writeln!(
                s,
                "never-reading clients disconnected by the server: {d} of {}",
                self.slow
            );
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn idle_rss_is_per_connection_the_server_holds() {
        // 10,000 connected, 6,015 held (the broadcast reached 6,014 of
        // them and its sender is one more): 6,015 KiB over 6,015.
        let r = Report {
            scenario: "idle",
            clients: 10_000,
            deliveries: 6_014,
            rss_before_kib: Some(1_000),
            rss_after_kib: Some(7_015),
            ..Report::default()
        };
        assert_eq!(r.rss_per_conn(), Some(1024));
        let fanout = Report {
            scenario: "fanout",
            ..r
        };
        assert_eq!(fanout.rss_per_conn(), None);
    }

    #[test]
    fn result_line_has_stable_keys() {
        let r = Report {
            scenario: "fanout",
            clients: 3,
            deliveries: 10,
            secs: 2.0,
            ..Report::default()
        };
        let line = r.result_line();
        assert!(line.starts_with("RESULT scenario=fanout clients=3 "));
        assert!(line.contains(" deliveries_per_sec=5 "));
        assert!(line.contains(" p99_us=- "));
        assert!(line.ends_with(" ok=1"));
        assert!(line.contains(" gap_readers=- "));
        assert!(line.contains(" tls=0 servers=0 "));
        assert!(!line.contains('\n'));
    }

    #[test]
    fn burst_is_clean_without_drops_or_gaps_even_if_lines_are_missing() {
        let mut r = Report {
            scenario: "burst",
            clients: 2,
            senders: 3,
            lines: 50,
            expected: 300,
            deliveries: 120,
            lost: 180,
            burst: Some(BurstStats {
                read_rate: 1000,
                readers_connected: 2,
                reader_lines: Spread {
                    min: 50,
                    median: 70,
                    max: 70,
                },
                ..BurstStats::default()
            }),
            ..Report::default()
        };
        assert!(r.clean());
        assert!(
            r.result_line()
                .contains(" reader_lines_median=70 reader_lines_max=70 gap_readers=0 ok=1")
        );
        r.reader_disconnects = 1;
        assert!(!r.clean());
        r.reader_disconnects = 0;
        if let Some(b) = r.burst.as_mut() {
            b.gap_readers = 1;
        }
        assert!(!r.clean());
    }

    #[test]
    fn spread_of_counts() {
        assert_eq!(Spread::of(Vec::new()), None);
        let s = Spread::of(vec![7, 1, 5, 3]).unwrap();
        assert_eq!((s.min, s.median, s.max), (1, 5, 7));
    }
}
