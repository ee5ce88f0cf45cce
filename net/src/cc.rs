//! Congestion control: what each viewer's path can carry, and what the one encoder aims at.
//!
//! ```text
//!  viewer ──TWCC feedback──▶ rtc-interceptor CongestionControl ──▶ ViewerGcc (Gcc, capped)
//!                                                                     │ publishes
//!                                                                     ▼
//!   per-viewer send task ◀── SendBudget (drops units it cannot carry) ◀ PathEstimate
//!                                                                     │ every viewer's
//!                                                                     ▼
//!                     EncoderPolicy::update (bit rate, then frame rate, then size)
//!                                                                     │
//!                                                                     ▼
//!                                                media::pipeline::EncoderControl
//! ```
//!
//! The policy, in one place:
//! - Each viewer's path estimate comes from Google Congestion Control (delay and loss based)
//!   over transport-wide feedback. It is capped at [`ACKED_HEADROOM`] × what the viewer
//!   actually received plus [`PROBE_BPS`], so a still screen cannot talk it up to a rate the
//!   path never carried.
//! - The encoder aims at the slowest viewer that is not hopeless, with [`TARGET_SHARE`] of
//!   its estimate (room for RTP/SRTP overhead, audio and retransmissions), within
//!   `[MIN_TARGET_KBPS, configured]`. A viewer whose estimate is under [`HOPELESS_RATIO`] of
//!   the fastest one's does not pull the encoder down: it gets what its own [`SendBudget`]
//!   lets through (whole units, resuming at keyframes).
//! - Bit rate first. When the bit rate is too low for the picture at full rate
//!   ([`MIN_BITS_PER_PIXEL`] per pixel per frame), the frame rate drops (not under
//!   [`MIN_FPS`]); when even that is not enough, the picture is halved in each dimension, and
//!   restored once the bit rate has been enough for the full size for [`UPSCALE_AFTER`].
//!
//! Everything here is pure and takes time as input, except the atomics that publish the
//! estimate across threads.

use std::collections::VecDeque;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use rtc::interceptor::{BandwidthEstimator, EstimatorStats, Gcc};

/// The estimate may not run further ahead of what arrived than this factor…
pub const ACKED_HEADROOM: f64 = 1.5;
/// …plus this much, so it can grow from a quiet start. This is also where a new viewer's
/// estimate starts (nothing has arrived yet); it then grows by half of what arrives every
/// [`ACKED_WINDOW`] until GCC sees queuing or loss, so a link with room is found in seconds.
pub const PROBE_BPS: f64 = 1_500_000.0;
/// The lowest estimate (and encoder target).
pub const MIN_BPS: f64 = 150_000.0;
/// Over how long the received rate is measured.
const ACKED_WINDOW: Duration = Duration::from_millis(500);

/// One viewer's path, as its estimator last saw it (readable from any thread).
#[derive(Debug, Default)]
pub struct PathEstimate {
    /// What the path can carry, bits per second (0: no estimate yet).
    target_bps: AtomicU64,
    /// What the viewer reported receiving over the last half second, bits per second.
    acked_bps: AtomicU64,
    /// Fraction of packets lost, in thousandths.
    loss_permille: AtomicU64,
    /// Feedback reports handled.
    pub reports: AtomicU64,
}

impl PathEstimate {
    pub fn target_bps(&self) -> u64 {
        self.target_bps.load(Ordering::Relaxed)
    }
    pub fn acked_bps(&self) -> u64 {
        self.acked_bps.load(Ordering::Relaxed)
    }
    pub fn loss_permille(&self) -> u64 {
        self.loss_permille.load(Ordering::Relaxed)
    }
    /// Whether feedback has arrived (before that, the estimate is only the initial guess).
    pub fn has_feedback(&self) -> bool {
        self.reports.load(Ordering::Relaxed) > 0
    }
}

/// Google Congestion Control for one viewer, publishing its estimate to a [`PathEstimate`]
/// and capping it at what the path has been seen to carry (see the module docs).
pub struct ViewerGcc {
    gcc: Gcc,
    out: Arc<PathEstimate>,
    arrived: VecDeque<(Instant, usize)>,
    arrived_bytes: usize,
    target: f64,
}

impl ViewerGcc {
    pub fn new(max_bps: f64, out: Arc<PathEstimate>) -> Self {
        let max = max_bps.max(MIN_BPS);
        // GCC starts at the top and is held down by what arrived (see `publish`): it only
        // has to come down when the path says so, never to climb from a guess.
        let initial = PROBE_BPS.min(max);
        out.target_bps.store(initial as u64, Ordering::Relaxed);
        Self {
            gcc: Gcc::new(max, MIN_BPS, max),
            out,
            arrived: VecDeque::new(),
            arrived_bytes: 0,
            target: initial,
        }
    }

    fn acked_bps(&mut self, now: Instant) -> f64 {
        while let Some(&(t, size)) = self.arrived.front() {
            if now.saturating_duration_since(t) < ACKED_WINDOW {
                break;
            }
            self.arrived.pop_front();
            self.arrived_bytes -= size;
        }
        self.arrived_bytes as f64 * 8.0 / ACKED_WINDOW.as_secs_f64()
    }

    fn publish(&mut self, now: Instant) {
        let acked = self.acked_bps(now);
        self.target = self
            .gcc
            .target_bitrate()
            .min(acked * ACKED_HEADROOM + PROBE_BPS)
            .max(MIN_BPS);
        self.out
            .target_bps
            .store(self.target as u64, Ordering::Relaxed);
        self.out.acked_bps.store(acked as u64, Ordering::Relaxed);
        let loss = self.gcc.stats().packet_loss.unwrap_or(0.0);
        self.out
            .loss_permille
            .store((loss * 1000.0).round() as u64, Ordering::Relaxed);
    }
}

impl BandwidthEstimator for ViewerGcc {
    fn on_reports(&mut self, now: Instant, reports: &[rtc::interceptor::PacketReport]) {
        self.gcc.on_reports(now, reports);
        for r in reports.iter().filter(|r| r.arrived) {
            self.arrived.push_back((now, r.size));
            self.arrived_bytes += r.size;
        }
        self.out.reports.fetch_add(1, Ordering::Relaxed);
        self.publish(now);
    }

    fn target_bitrate(&self) -> f64 {
        self.target
    }

    fn handle_timeout(&mut self, now: Instant) {
        self.gcc.handle_timeout(now);
        self.publish(now);
    }

    fn poll_timeout(&self) -> Option<Instant> {
        self.gcc.poll_timeout()
    }

    fn stats(&self) -> EstimatorStats {
        self.gcc.stats()
    }
}

/// What one viewer's link lets through: a token bucket at the viewer's estimate. A unit
/// that does not fit is not sent (the viewer then waits for a keyframe), so a slow viewer
/// never builds a queue of old video, and the encoder does not have to wait for it.
#[derive(Debug)]
pub struct SendBudget {
    /// Bytes that may go now (negative: in debt).
    level: f64,
    last: Instant,
}

/// How much a viewer may send at once: this long at its estimate (a keyframe, a sudden
/// change of the whole screen)…
pub const BUDGET_BURST: Duration = Duration::from_millis(400);
/// …and the rate the budget refills at, as a share of the estimate (TWCC sees what was
/// sent; a little more than the estimate lets it find out that more fits).
pub const BUDGET_RATE_SHARE: f64 = 1.1;

impl SendBudget {
    pub fn new(now: Instant) -> Self {
        Self {
            level: 0.0,
            last: now,
        }
    }

    fn refill(&mut self, now: Instant, rate_bps: u64) {
        let rate = rate_bps as f64 / 8.0 * BUDGET_RATE_SHARE;
        let dt = now.saturating_duration_since(self.last).as_secs_f64();
        self.last = now;
        let burst = rate * BUDGET_BURST.as_secs_f64();
        self.level = (self.level + dt * rate).min(burst);
    }

    /// Whether a unit of `bytes` may go now at `rate_bps`; if so, it is counted. A keyframe
    /// may overdraw the budget (it is what lets the viewer resume), paid back before the
    /// next unit goes.
    pub fn admit(&mut self, now: Instant, rate_bps: u64, bytes: usize, keyframe: bool) -> bool {
        self.refill(now, rate_bps);
        if self.level < 0.0 || (!keyframe && self.level < bytes as f64) {
            return false;
        }
        self.level -= bytes as f64;
        true
    }
}

/// The encoder's target, as the policy sets it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct EncoderTarget {
    pub kbps: u32,
    pub fps: u32,
    /// 1: full size; 2: half the width and half the height.
    pub scale_div: u32,
}

/// The encoder gets this share of the slowest (not hopeless) viewer's estimate.
pub const TARGET_SHARE: f64 = 0.85;
/// A viewer slower than this share of the fastest one does not set the encoder's target.
pub const HOPELESS_RATIO: f64 = 0.35;
/// The lowest target the encoder is given.
pub const MIN_TARGET_KBPS: u32 = 150;
/// Bits per pixel per frame below which the picture is too starved at full rate.
pub const MIN_BITS_PER_PIXEL: f64 = 0.02;
/// The frame rate never drops below this for want of bits.
pub const MIN_FPS: u32 = 10;
/// A halved picture returns to full size after its bit rate has sufficed this long.
pub const UPSCALE_AFTER: Duration = Duration::from_secs(4);

/// Turns viewers' estimates into one encoder target (see the module docs).
#[derive(Debug)]
pub struct EncoderPolicy {
    configured_kbps: u32,
    configured_fps: u32,
    /// Full picture size, pixels.
    pixels: f64,
    current: EncoderTarget,
    /// Since when the full size would have been affordable while halved.
    upscale_ok_since: Option<Instant>,
}

impl EncoderPolicy {
    pub fn new(configured_kbps: u32, configured_fps: u32, width: u32, height: u32) -> Self {
        let fps = configured_fps.max(1);
        Self {
            configured_kbps,
            configured_fps: fps,
            pixels: f64::from(width.max(2)) * f64::from(height.max(2)),
            current: EncoderTarget {
                kbps: configured_kbps,
                fps,
                scale_div: 1,
            },
            upscale_ok_since: None,
        }
    }

    pub fn current(&self) -> EncoderTarget {
        self.current
    }

    /// The bit rate the encoder should aim at for these viewers' estimates (bits per
    /// second; 0 = no estimate yet), ignoring hopeless viewers.
    pub fn target_kbps(&self, estimates_bps: &[u64]) -> u32 {
        let known: Vec<u64> = estimates_bps.iter().copied().filter(|&e| e > 0).collect();
        let Some(&fastest) = known.iter().max() else {
            return self.configured_kbps;
        };
        let floor = fastest as f64 * HOPELESS_RATIO;
        let slowest = known
            .iter()
            .copied()
            .filter(|&e| e as f64 >= floor)
            .min()
            .unwrap_or(fastest);
        let kbps = (slowest as f64 * TARGET_SHARE / 1000.0) as u32;
        kbps.clamp(
            MIN_TARGET_KBPS.min(self.configured_kbps),
            self.configured_kbps,
        )
    }

    /// Frames a second that `kbps` affords at `pixels` per frame, within
    /// `[MIN_FPS, configured]`.
    fn affordable_fps(&self, kbps: u32, pixels: f64) -> f64 {
        f64::from(kbps) * 1000.0 / (pixels * MIN_BITS_PER_PIXEL)
    }

    /// Recomputes the target from the viewers' estimates at `now`.
    pub fn update(&mut self, now: Instant, estimates_bps: &[u64]) -> EncoderTarget {
        let kbps = self.target_kbps(estimates_bps);
        let full = self.affordable_fps(kbps, self.pixels);
        let half = self.affordable_fps(kbps, self.pixels / 4.0);
        let min_fps = f64::from(MIN_FPS.min(self.configured_fps));
        let mut scale_div = self.current.scale_div;
        if full < min_fps {
            scale_div = 2;
            self.upscale_ok_since = None;
        } else if scale_div == 2 {
            // Back to full size only once the full size has been affordable for a while.
            let since = *self.upscale_ok_since.get_or_insert(now);
            if now.saturating_duration_since(since) >= UPSCALE_AFTER {
                scale_div = 1;
                self.upscale_ok_since = None;
            }
        }
        let affordable = if scale_div == 2 { half } else { full };
        let fps = affordable
            .floor()
            .clamp(min_fps, f64::from(self.configured_fps)) as u32;
        self.current = EncoderTarget {
            kbps,
            fps,
            scale_div,
        };
        self.current
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MBIT: u64 = 1_000_000;

    #[test]
    fn the_target_follows_the_slowest_viewer_that_is_not_hopeless() {
        let p = EncoderPolicy::new(8000, 30, 1920, 1080);
        assert_eq!(p.target_kbps(&[]), 8000, "no viewer: as configured");
        assert_eq!(p.target_kbps(&[0]), 8000, "no estimate yet: as configured");
        assert_eq!(
            p.target_kbps(&[20 * MBIT]),
            8000,
            "capped at the configured rate"
        );
        assert_eq!(p.target_kbps(&[3 * MBIT]), 2550);
        assert_eq!(p.target_kbps(&[6 * MBIT, 3 * MBIT]), 2550, "the slower one");
        // 0.5 Mbit/s beside 6: hopeless, it does not pull the encoder down.
        assert_eq!(p.target_kbps(&[6 * MBIT, MBIT / 2]), 5100);
        assert_eq!(p.target_kbps(&[10_000]), MIN_TARGET_KBPS);
    }

    #[test]
    fn bit_rate_first_then_frame_rate_then_size_and_back() {
        let t0 = Instant::now();
        let at = |ms: u64| t0 + Duration::from_millis(ms);
        let mut p = EncoderPolicy::new(8000, 30, 1920, 1080);
        // 1080p at 30 fps needs 0.02 * 2 Mpx * 30 = 1.24 Mbit/s for full rate.
        let t = p.update(at(0), &[8 * MBIT]);
        assert_eq!((t.fps, t.scale_div), (30, 1));
        let t = p.update(at(100), &[2 * MBIT]);
        assert_eq!(
            (t.kbps, t.fps, t.scale_div),
            (1700, 30, 1),
            "bit rate first"
        );
        let t = p.update(at(200), &[MBIT]);
        assert_eq!(
            (t.kbps, t.fps, t.scale_div),
            (850, 20, 1),
            "then frame rate"
        );
        let t = p.update(at(300), &[MBIT / 3]);
        assert_eq!(t.scale_div, 2, "then size");
        assert!(t.fps >= MIN_FPS, "{t:?}");
        // Recovered: full size again only after UPSCALE_AFTER.
        assert_eq!(p.update(at(400), &[8 * MBIT]).scale_div, 2);
        assert_eq!(p.update(at(2_000), &[8 * MBIT]).scale_div, 2);
        let t = p.update(at(4_500), &[8 * MBIT]);
        assert_eq!((t.kbps, t.fps, t.scale_div), (6800, 30, 1));
    }

    #[test]
    fn a_budget_drops_what_the_link_cannot_carry_and_lets_keyframes_resume() {
        let t0 = Instant::now();
        let at = |ms: u64| t0 + Duration::from_millis(ms);
        let mut b = SendBudget::new(t0);
        // 1 Mbit/s * 1.1 = 137.5 kB/s; frames of 20 kB at 30 fps = 600 kB/s.
        let mut sent = 0;
        for i in 0..300u64 {
            if b.admit(at(i * 1000 / 30), MBIT, 20_000, false) {
                sent += 20_000;
            }
        }
        let rate = sent as f64 / 10.0;
        assert!((100_000.0..=160_000.0).contains(&rate), "{rate} B/s");
        // A big keyframe goes even over budget, then the debt is paid before more goes.
        let mut b = SendBudget::new(t0);
        assert!(b.admit(at(0), MBIT, 200_000, true));
        assert!(!b.admit(at(100), MBIT, 1_000, false));
        assert!(b.admit(at(1_600), MBIT, 1_000, false));
    }

    #[test]
    fn the_estimate_cannot_run_far_ahead_of_what_arrived() {
        use rtc::interceptor::PacketReport;
        let out = Arc::new(PathEstimate::default());
        let mut g = ViewerGcc::new(50_000_000.0, out.clone());
        assert_eq!(out.target_bps(), PROBE_BPS as u64);
        let t0 = Instant::now();
        // A still screen: 10 small packets every 100 ms for 20 s, all arriving.
        let mut id = 0u64;
        for step in 0..200u64 {
            let now = t0 + Duration::from_millis(step * 100);
            let reports: Vec<PacketReport> = (0..10)
                .map(|i| {
                    id += 1;
                    PacketReport {
                        ssrc: 1,
                        id,
                        rtp_sequence_number: id as u16,
                        is_twcc: true,
                        twcc_sequence_number: id as u16,
                        size: 200,
                        arrived: true,
                        departure: now - Duration::from_millis(30 - i),
                        arrival: Some(Duration::from_millis(step * 100 + i)),
                        ecn: rtc::rtcp::transport_feedbacks::cc_feedback_report::Ecn::NotEct,
                    }
                })
                .collect();
            g.on_reports(now, &reports);
        }
        // 10 x 200 B every 100 ms = 160 kbit/s arrived: at most 1.5x that plus the probe.
        let cap = (160_000.0 * ACKED_HEADROOM + PROBE_BPS) as u64;
        assert!(out.target_bps() <= cap + 1, "{} > {cap}", out.target_bps());
        assert!(out.has_feedback());
        assert_eq!(out.acked_bps(), 160_000);
    }
}
