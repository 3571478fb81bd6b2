//! Open-loop send schedule: message `i` is due at `start + i / rate`, a pure function
//! of `i`, so a stall (broker or generator) never moves later messages' intended times;
//! the delay shows up as latency instead of being hidden (no coordinated omission).

/// Intended send times at a fixed rate, in nanoseconds since the run's epoch.
#[derive(Debug, Clone, Copy)]
pub struct RateSchedule {
    start_ns: u64,
    rate_per_s: u64,
}

impl RateSchedule {
    /// A schedule starting at `start_ns` with `rate_per_s` messages per second (must be > 0).
    pub fn new(start_ns: u64, rate_per_s: u64) -> RateSchedule {
        assert!(rate_per_s > 0, "a rate schedule needs a positive rate");
        RateSchedule {
            start_ns,
            rate_per_s,
        }
    }

    /// When message `i` (0-based) is due.
    pub fn intended_ns(&self, i: u64) -> u64 {
        let offset = (u128::from(i) * 1_000_000_000u128) / u128::from(self.rate_per_s);
        self.start_ns
            .saturating_add(u64::try_from(offset).unwrap_or(u64::MAX))
    }

    /// How many messages are due at `now_ns` (messages 0..n have intended time <= now).
    pub fn due_count(&self, now_ns: u64) -> u64 {
        if now_ns < self.start_ns {
            return 0;
        }
        let elapsed = u128::from(now_ns - self.start_ns);
        // Largest i with i * 1e9 / rate <= elapsed  <=>  i <= elapsed * rate / 1e9 (floor division
        // makes intended(i) <= elapsed hold for i = floor(...), checked below).
        let n = (elapsed * u128::from(self.rate_per_s)) / 1_000_000_000u128 + 1;
        let n = u64::try_from(n).unwrap_or(u64::MAX);
        debug_assert!(n == 0 || self.intended_ns(n - 1) <= now_ns);
        n
    }

    /// Messages per second.
    pub fn rate_per_s(&self) -> u64 {
        self.rate_per_s
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]
    use super::*;

    #[test]
    fn intended_times_are_exactly_spaced() {
        let s = RateSchedule::new(1_000, 1_000);
        for i in 0..10_000u64 {
            assert_eq!(s.intended_ns(i), 1_000 + i * 1_000_000);
        }
        // A rate that does not divide 1e9 drifts by less than 1 ns and never accumulates error.
        let s = RateSchedule::new(0, 3);
        assert_eq!(s.intended_ns(3), 1_000_000_000);
        assert_eq!(s.intended_ns(3_000_000), 1_000_000_000_000_000);
        assert_eq!(s.intended_ns(1), 333_333_333);
    }

    #[test]
    fn a_stall_does_not_shrink_later_intended_times() {
        // A sender that stalls 50 ms at message 100 then catches up: whatever it did,
        // the due times after the stall are the same as without it, and everything that
        // fell due during the stall is due at once when it wakes.
        let s = RateSchedule::new(0, 10_000); // one every 100 us
        let before: Vec<u64> = (0..2_000).map(|i| s.intended_ns(i)).collect();
        let stall_end_ns = s.intended_ns(100) + 50_000_000;
        let due = s.due_count(stall_end_ns);
        assert_eq!(
            due,
            100 + 500 + 1,
            "all messages due during the stall are due now"
        );
        let after: Vec<u64> = (0..2_000).map(|i| s.intended_ns(i)).collect();
        assert_eq!(before, after);
        for i in 101..due {
            assert!(
                s.intended_ns(i) < stall_end_ns + 1,
                "message {i} was due during the stall"
            );
            // Latency of a message sent at the stall's end counts from its intended time.
            assert!(stall_end_ns - s.intended_ns(i) <= 50_000_000);
        }
    }

    #[test]
    fn due_count_matches_intended_times() {
        for rate in [1u64, 3, 7, 1_000, 123_457, 10_000_000] {
            let s = RateSchedule::new(5_000, rate);
            for now in [
                0u64,
                4_999,
                5_000,
                5_001,
                1_000_000,
                999_999_999,
                10_000_000_000,
            ] {
                let n = s.due_count(now);
                if n > 0 {
                    assert!(s.intended_ns(n - 1) <= now, "rate {rate} now {now}");
                }
                assert!(s.intended_ns(n) > now, "rate {rate} now {now}");
            }
        }
    }
}
