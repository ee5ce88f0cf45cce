//! One byte budget: a token bucket of bytes at a rate that may change from call to call,
//! that spending may overdraw (a debt, repaid before anything else goes).
//!
//! Its users differ only in what they do with it, and in how it starts:
//! - the encoder's rate pacer (`media::pipeline::RatePacer`) starts full, waits out a debt
//!   before the next frame, and keeps a debt's time (not its bytes) when the rate changes;
//! - a viewer's send budget (`net::cc::SendBudget`) starts empty and refuses a unit while
//!   in debt;
//! - a viewer's packet pacer (`net::peer`) starts empty and waits out a debt;
//! - the NACK responder (`net::nack`) starts full at its first fill and refuses a resend
//!   while in debt.

use std::time::{Duration, Instant};

/// Bytes that may go now: fills at the rate given to [`Self::fill`], up to `burst` worth of
/// that rate; [`Self::spend`] may take it below zero.
#[derive(Clone, Debug)]
pub struct ByteBudget {
    /// Bytes that may go now (negative: in debt).
    level: f64,
    /// When it was last filled; `None`: never, and the first fill fills it up.
    last: Option<Instant>,
    /// It holds at most this long at the rate it fills at.
    burst: Duration,
}

impl ByteBudget {
    /// An empty budget at `now`.
    pub fn empty(now: Instant, burst: Duration) -> Self {
        Self {
            level: 0.0,
            last: Some(now),
            burst,
        }
    }

    /// A budget full at `now`, at `bytes_per_sec`.
    pub fn full(now: Instant, burst: Duration, bytes_per_sec: f64) -> Self {
        let mut budget = Self::full_at_first_fill(burst);
        budget.fill(now, bytes_per_sec);
        budget
    }

    /// A budget that its first [`Self::fill`] fills up, at that fill's rate (for a user
    /// that has no time nor rate when it is made).
    pub fn full_at_first_fill(burst: Duration) -> Self {
        Self {
            level: 0.0,
            last: None,
            burst,
        }
    }

    /// Adds what `bytes_per_sec` earned since the last fill, up to the burst at that rate:
    /// `level = min(level + dt * rate, burst * rate)`.
    pub fn fill(&mut self, now: Instant, bytes_per_sec: f64) {
        let burst = bytes_per_sec * self.burst.as_secs_f64();
        let dt = self.last.map_or(self.burst.as_secs_f64(), |last| {
            now.saturating_duration_since(last).as_secs_f64()
        });
        self.last = Some(now);
        self.level = (self.level + dt * bytes_per_sec).min(burst);
    }

    /// Takes `bytes`, into debt if there are not that many.
    pub fn spend(&mut self, bytes: usize) {
        self.level -= bytes as f64;
    }

    /// Forgives any debt beyond `max_debt` bytes.
    pub fn forgive_beyond(&mut self, max_debt: f64) {
        self.level = self.level.max(-max_debt);
    }

    /// Bytes that may go now (negative: in debt), as of the last fill.
    pub fn level(&self) -> f64 {
        self.level
    }

    /// Whether a debt is still to be repaid (as of the last fill).
    pub fn in_debt(&self) -> bool {
        self.level < 0.0
    }

    /// How long the debt takes to repay at `bytes_per_sec` (zero: no debt, or no rate).
    pub fn wait(&self, bytes_per_sec: f64) -> Duration {
        if self.level >= 0.0 || bytes_per_sec <= 0.0 {
            Duration::ZERO
        } else {
            Duration::from_secs_f64(-self.level / bytes_per_sec)
        }
    }

    /// The rate changes from `old` to `new` bytes a second (fill up to now at `old` first).
    /// A debt keeps the wait it stood for (time owed, not bytes: going up it is repaid
    /// sooner, going down in the same time), never more than one burst at `new`; what may
    /// go is capped at the new burst.
    pub fn change_rate(&mut self, old: f64, new: f64) {
        let burst = new * self.burst.as_secs_f64();
        if self.level < 0.0 {
            let scale = (new / old).min(1.0);
            self.level = (self.level * scale).max(-burst);
        }
        self.level = self.level.min(burst);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MS: Duration = Duration::from_millis(1);

    #[test]
    fn fills_at_the_rate_up_to_the_burst() {
        let t0 = Instant::now();
        let mut b = ByteBudget::empty(t0, 100 * MS);
        b.fill(t0 + 50 * MS, 1000.0);
        assert!((b.level() - 50.0).abs() < 1e-9);
        b.fill(t0 + 1000 * MS, 1000.0);
        assert_eq!(b.level(), 100.0, "at most 100 ms at 1000 B/s");
        // A higher rate raises the cap with it.
        b.fill(t0 + 1100 * MS, 2000.0);
        assert_eq!(b.level(), 200.0);
    }

    #[test]
    fn spending_overdraws_and_the_debt_is_waited_out() {
        let t0 = Instant::now();
        let mut b = ByteBudget::full(t0, 100 * MS, 1000.0);
        assert_eq!(b.level(), 100.0);
        b.spend(300);
        assert!(b.in_debt());
        assert_eq!(b.wait(1000.0), 200 * MS);
        assert_eq!(b.wait(0.0), Duration::ZERO, "no rate: nothing to wait for");
        b.fill(t0 + 200 * MS, 1000.0);
        assert!(!b.in_debt());
        assert_eq!(b.wait(1000.0), Duration::ZERO);
    }

    #[test]
    fn the_first_fill_of_a_lazy_budget_fills_it() {
        let t0 = Instant::now();
        let mut b = ByteBudget::full_at_first_fill(250 * MS);
        assert_eq!(b.level(), 0.0);
        b.fill(t0, 4000.0);
        assert_eq!(b.level(), 1000.0);
        b.spend(1500);
        b.fill(t0 + 100 * MS, 4000.0);
        assert!((b.level() + 100.0).abs() < 1e-9);
    }

    #[test]
    fn a_rate_change_keeps_the_time_owed_within_one_burst() {
        let t0 = Instant::now();
        let mut b = ByteBudget::empty(t0, 500 * MS);
        b.spend(1000); // 1 s at 1000 B/s
        b.change_rate(1000.0, 500.0);
        assert_eq!(b.wait(500.0), 500 * MS, "1 s owed, capped at one burst");
        let mut b = ByteBudget::empty(t0, 500 * MS);
        b.spend(400);
        b.change_rate(1000.0, 4000.0);
        assert_eq!(
            b.wait(4000.0),
            100 * MS,
            "going up, the bytes are repaid sooner"
        );
        let mut b = ByteBudget::full(t0, 500 * MS, 1000.0);
        b.change_rate(1000.0, 100.0);
        assert_eq!(b.level(), 50.0, "credit is capped at the new burst");
    }
}
