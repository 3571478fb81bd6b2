//! Latency histograms (HdrHistogram, nanoseconds) and per-interval counters.

use hdrhistogram::Histogram;
use serde::Serialize;

use crate::limits;

/// Significant figures kept by every latency histogram (0.1% precision).
const HISTOGRAM_SIGFIG: u8 = 3;

/// A new, empty latency histogram tracking 1 ns .. `BENCH_LATENCY_NS_MAX`.
pub fn new_histogram() -> Histogram<u64> {
    match Histogram::new_with_bounds(1, limits::BENCH_LATENCY_NS_MAX, HISTOGRAM_SIGFIG) {
        Ok(h) => h,
        // The bounds are constants that hdrhistogram accepts; reaching this is a bug.
        Err(e) => unreachable!("histogram bounds rejected: {e}"),
    }
}

/// Records `ns`, clamped into the histogram's range (latencies above the max are counted at max).
pub fn record(h: &mut Histogram<u64>, ns: u64) {
    let v = ns.clamp(1, limits::BENCH_LATENCY_NS_MAX);
    // In range by construction.
    let _ = h.record(v);
}

/// Merges `from` into `into`. Both come from `new_histogram`, so ranges match.
pub fn merge(into: &mut Histogram<u64>, from: &Histogram<u64>) {
    if let Err(e) = into.add(from) {
        tracing::warn!("histogram merge failed: {e}");
    }
}

/// Percentiles of one histogram, in microseconds.
#[derive(Debug, Clone, Copy, Default, Serialize, serde::Deserialize, PartialEq)]
pub struct LatencySummary {
    pub p50: f64,
    pub p90: f64,
    pub p99: f64,
    pub p999: f64,
    pub p9999: f64,
    pub max: f64,
}

impl LatencySummary {
    /// Summarises `h` (nanoseconds) in microseconds; all zero for an empty histogram.
    pub fn of(h: &Histogram<u64>) -> LatencySummary {
        if h.is_empty() {
            return LatencySummary::default();
        }
        let us = |ns: u64| ns as f64 / 1_000.0;
        LatencySummary {
            p50: us(h.value_at_quantile(0.50)),
            p90: us(h.value_at_quantile(0.90)),
            p99: us(h.value_at_quantile(0.99)),
            p999: us(h.value_at_quantile(0.999)),
            p9999: us(h.value_at_quantile(0.9999)),
            max: us(h.max()),
        }
    }
}

/// What one worker thread measured during one reporting interval.
#[derive(Debug, Clone)]
pub struct IntervalStats {
    pub publish: Histogram<u64>,
    /// Per produce request: from its bytes handed to the connection to its response (publish
    /// latency without the linger and the in-flight wait).
    pub request: Histogram<u64>,
    pub e2e: Histogram<u64>,
    pub sent_msgs: u64,
    pub sent_bytes: u64,
    pub acked_msgs: u64,
    pub acked_bytes: u64,
    pub consumed_msgs: u64,
    pub consumed_bytes: u64,
    pub errors: u64,
    /// Produce requests that were kept waiting because the in-flight window was full.
    pub backpressure_waits: u64,
    /// Messages that fell due before the end of the phase but were never sent because the
    /// producer could not keep up with the target rate (the phase ends on time regardless).
    pub unsent_msgs: u64,
    /// Produce requests sent.
    pub produce_requests: u64,
}

impl Default for IntervalStats {
    fn default() -> Self {
        IntervalStats {
            publish: new_histogram(),
            request: new_histogram(),
            e2e: new_histogram(),
            sent_msgs: 0,
            sent_bytes: 0,
            acked_msgs: 0,
            acked_bytes: 0,
            consumed_msgs: 0,
            consumed_bytes: 0,
            errors: 0,
            backpressure_waits: 0,
            unsent_msgs: 0,
            produce_requests: 0,
        }
    }
}

impl IntervalStats {
    /// Adds `other` into `self` (histograms merged, counters summed).
    pub fn merge(&mut self, other: &IntervalStats) {
        merge(&mut self.publish, &other.publish);
        merge(&mut self.request, &other.request);
        merge(&mut self.e2e, &other.e2e);
        self.sent_msgs += other.sent_msgs;
        self.sent_bytes += other.sent_bytes;
        self.acked_msgs += other.acked_msgs;
        self.acked_bytes += other.acked_bytes;
        self.consumed_msgs += other.consumed_msgs;
        self.consumed_bytes += other.consumed_bytes;
        self.errors += other.errors;
        self.backpressure_waits += other.backpressure_waits;
        self.unsent_msgs += other.unsent_msgs;
        self.produce_requests += other.produce_requests;
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]
    use super::*;

    #[test]
    fn merged_histograms_equal_one_histogram_of_all_values() {
        let mut all = new_histogram();
        let mut parts = [new_histogram(), new_histogram(), new_histogram()];
        let mut x: u64 = 12345;
        for i in 0..30_000u64 {
            // xorshift: spread values over 1 us .. ~1 s
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            let v = 1_000 + x % 1_000_000_000;
            record(&mut all, v);
            record(&mut parts[(i % 3) as usize], v);
        }
        let mut merged = new_histogram();
        for p in &parts {
            merge(&mut merged, p);
        }
        assert_eq!(merged.len(), all.len());
        assert_eq!(LatencySummary::of(&merged), LatencySummary::of(&all));
        for q in [0.1, 0.5, 0.99, 0.9999] {
            assert_eq!(merged.value_at_quantile(q), all.value_at_quantile(q));
        }
    }

    #[test]
    fn interval_merge_sums_counters_and_keeps_max() {
        let mut a = IntervalStats {
            sent_msgs: 3,
            consumed_bytes: 10,
            ..Default::default()
        };
        record(&mut a.publish, 5_000);
        let mut b = IntervalStats {
            sent_msgs: 4,
            consumed_bytes: 1,
            errors: 2,
            ..Default::default()
        };
        record(&mut b.publish, 9_000_000);
        a.merge(&b);
        assert_eq!((a.sent_msgs, a.consumed_bytes, a.errors), (7, 11, 2));
        assert_eq!(a.publish.len(), 2);
        let s = LatencySummary::of(&a.publish);
        assert!((s.max - 9_000.0).abs() / 9_000.0 < 0.001, "{s:?}");
        assert!((s.p50 - 5.0).abs() / 5.0 < 0.001, "{s:?}");
    }

    #[test]
    fn out_of_range_values_are_clamped_not_lost() {
        let mut h = new_histogram();
        record(&mut h, 0);
        record(&mut h, u64::MAX);
        assert_eq!(h.len(), 2);
        assert!(h.max() >= limits::BENCH_LATENCY_NS_MAX);
    }
}
