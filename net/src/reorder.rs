//! A small reorder buffer for received RTP: packets that arrive after a gap are held for up
//! to [`REORDER_WAIT`], so that a retransmission (asked for by NACK) or a packet that was
//! only overtaken can fill the gap before the depacketizer sees a loss. Without it every
//! lost packet cost a frame and a keyframe request, and the retransmissions the viewer's
//! NACKs brought back arrived to nobody.
//!
//! Pure: the caller passes the time and calls [`Reorder::expire`] when
//! [`Reorder::deadline`] comes.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

/// How long packets after a gap wait for it to fill: three NACK rounds of
/// [`NACK_INTERVAL`] and a LAN round trip.
pub const REORDER_WAIT: Duration = Duration::from_millis(80);
/// How often the viewer's NACK generator asks again for what is still missing (webrtc-rs
/// defaults to 100 ms, longer than a whole frame at 30 fps).
pub const NACK_INTERVAL: Duration = Duration::from_millis(20);
/// At most this many packets are held (a 1080p keyframe is ~150): beyond it the oldest gap
/// is given up at once.
pub const MAX_HELD: usize = 512;

/// Releases packets (of type `T`) in sequence order; see the module docs.
#[derive(Debug)]
pub struct Reorder<T> {
    /// The extended sequence number expected next.
    next: Option<u64>,
    /// The highest extended sequence number seen (for unwrapping).
    highest: Option<u64>,
    held: BTreeMap<u64, (Instant, T)>,
    /// Gaps given up (each makes the depacketizer see a loss).
    pub gaps_given_up: u64,
    /// Packets that filled a gap (late or retransmitted).
    pub gaps_filled: u64,
}

impl<T> Default for Reorder<T> {
    fn default() -> Self {
        Self {
            next: None,
            highest: None,
            held: BTreeMap::new(),
            gaps_given_up: 0,
            gaps_filled: 0,
        }
    }
}

impl<T> Reorder<T> {
    /// `seq` on the extended (64-bit) scale, nearest the highest seen.
    fn extend(&self, seq: u16) -> u64 {
        let Some(highest) = self.highest else {
            // Far from zero, so that earlier packets still extend below it.
            return (1 << 32) + u64::from(seq);
        };
        let base = highest & !0xFFFF;
        let candidates = [base.wrapping_sub(1 << 16), base, base + (1 << 16)];
        candidates
            .into_iter()
            .map(|b| b + u64::from(seq))
            .min_by_key(|&c| c.abs_diff(highest))
            .unwrap_or(base + u64::from(seq))
    }

    /// One packet arrived at `now`: returns the packets now in order (possibly none).
    /// A packet older than what was already released (a duplicate, or a retransmission
    /// after its gap was given up) is dropped.
    pub fn push(&mut self, seq: u16, item: T, now: Instant) -> Vec<T> {
        let ext = self.extend(seq);
        self.highest = Some(self.highest.map_or(ext, |h| h.max(ext)));
        let next = *self.next.get_or_insert(ext);
        if ext < next || self.held.contains_key(&ext) {
            return Vec::new();
        }
        if ext == next && !self.held.is_empty() {
            self.gaps_filled += 1;
        }
        self.held.insert(ext, (now, item));
        let mut out = self.release();
        if self.held.len() > MAX_HELD {
            out.extend(self.skip_gap());
        }
        out.extend(self.expire(now));
        out
    }

    /// When a held packet's wait ends (call [`Reorder::expire`] then), if any is held.
    pub fn deadline(&self) -> Option<Instant> {
        self.held
            .values()
            .map(|(t, _)| *t)
            .min()
            .map(|t| t + REORDER_WAIT)
    }

    /// Gives up gaps whose packets behind them have waited [`REORDER_WAIT`]: returns what
    /// that releases.
    pub fn expire(&mut self, now: Instant) -> Vec<T> {
        let mut out = Vec::new();
        while self.deadline().is_some_and(|d| d <= now) {
            out.extend(self.skip_gap());
        }
        out
    }

    /// Moves past the first gap and releases what follows it in order.
    fn skip_gap(&mut self) -> Vec<T> {
        if let Some(&first) = self.held.keys().next() {
            self.next = Some(first);
            self.gaps_given_up += 1;
        }
        self.release()
    }

    /// Releases the packets from `next` on that are here.
    fn release(&mut self) -> Vec<T> {
        let mut out = Vec::new();
        while let Some(next) = self.next {
            let Some((_, item)) = self.held.remove(&next) else {
                break;
            };
            out.push(item);
            self.next = Some(next + 1);
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ms(n: u64) -> Duration {
        Duration::from_millis(n)
    }

    #[test]
    fn in_order_packets_pass_at_once() {
        let t0 = Instant::now();
        let mut r = Reorder::default();
        for s in 0..5u16 {
            assert_eq!(r.push(s, s, t0), vec![s]);
        }
        assert_eq!(r.deadline(), None);
    }

    #[test]
    fn a_retransmission_fills_the_gap_in_time() {
        let t0 = Instant::now();
        let mut r = Reorder::default();
        assert_eq!(r.push(10, 10, t0), vec![10]);
        // 11 is lost: 12 and 13 wait for it.
        assert!(r.push(12, 12, t0 + ms(1)).is_empty());
        assert!(r.push(13, 13, t0 + ms(2)).is_empty());
        assert_eq!(r.deadline(), Some(t0 + ms(1) + REORDER_WAIT));
        // The retransmission arrives 25 ms later: all three, in order.
        assert_eq!(r.push(11, 11, t0 + ms(25)), vec![11, 12, 13]);
        assert_eq!((r.gaps_filled, r.gaps_given_up), (1, 0));
        // A duplicate of it later is dropped.
        assert!(r.push(11, 11, t0 + ms(30)).is_empty());
    }

    #[test]
    fn a_gap_that_does_not_fill_is_given_up_after_the_wait() {
        let t0 = Instant::now();
        let mut r = Reorder::default();
        r.push(1, 1, t0);
        assert!(r.push(3, 3, t0 + ms(1)).is_empty());
        assert!(r.expire(t0 + ms(80)).is_empty(), "not yet");
        assert_eq!(r.expire(t0 + ms(81)), vec![3]);
        assert_eq!(r.gaps_given_up, 1);
        // Too late now.
        assert!(r.push(2, 2, t0 + ms(90)).is_empty());
        assert_eq!(r.push(4, 4, t0 + ms(91)), vec![4]);
        // A later packet that arrives after the wait gives the gap up by itself.
        assert!(r.push(6, 6, t0 + ms(100)).is_empty());
        assert_eq!(r.push(7, 7, t0 + ms(200)), vec![6, 7]);
    }

    #[test]
    fn sequence_numbers_wrap() {
        let t0 = Instant::now();
        let mut r = Reorder::default();
        assert_eq!(r.push(65534, 1, t0), vec![1]);
        assert_eq!(r.push(65535, 2, t0), vec![2]);
        assert!(r.push(1, 4, t0).is_empty());
        assert_eq!(r.push(0, 3, t0), vec![3, 4]);
    }

    #[test]
    fn the_buffer_is_bounded() {
        let t0 = Instant::now();
        let mut r = Reorder::default();
        r.push(0, 0u16, t0);
        let mut released = 0;
        for s in 2..(MAX_HELD as u16 + 10) {
            released += r.push(s, s, t0).len();
        }
        assert!(r.held.len() <= MAX_HELD);
        assert_eq!(released + r.held.len(), MAX_HELD + 8);
        assert_eq!(r.gaps_given_up, 1);
    }
}
