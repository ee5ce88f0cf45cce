//! Congestion control: what each viewer's path can carry, and what the one encoder aims at.
//!
//! ```text
//!  viewer ──TWCC feedback──▶ rtc-interceptor CongestionControl ──▶ ViewerGcc (GCC signals)
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
//! - Each viewer's path estimate comes from Google Congestion Control's delay and loss
//!   signals over transport-wide feedback, with our own rate rule (see [`ViewerGcc`]). It is
//!   capped at [`ACKED_HEADROOM`] × what the viewer actually received plus [`PROBE_BPS`]
//!   ([`MEASURED_PROBE_BPS`] once a backoff has measured the path), so a still screen cannot
//!   talk it up to a rate the path never carried. Heavy loss (over [`HEAVY_LOSS`], smoothed
//!   and over [`LOSS_WINDOW`], lost feedback not counted) backs off as queueing does.
//! - The encoder aims at the slowest viewer that is not hopeless, with [`TARGET_SHARE`] of
//!   its estimate less what retransmissions to it take lately
//!   ([`PathEstimate::media_bps`]; room for RTP/SRTP overhead and audio), within
//!   `[MIN_TARGET_KBPS, configured]`. A viewer whose estimate is under [`HOPELESS_RATIO`] of
//!   the fastest one's does not pull the encoder down: it gets what its own [`SendBudget`]
//!   lets through (whole units, resuming at keyframes).
//! - Bit rate first. When the bit rate is too low for the picture at full rate
//!   ([`MIN_BITS_PER_PIXEL`] per pixel per frame), the frame rate drops (not under
//!   [`MIN_FPS`]); when even that is not enough, the picture is halved in each dimension, and
//!   restored once the bit rate has been enough for the full size for [`UPSCALE_AFTER`].
//! - Keyframes must fit the link: the picture is also halved when a full-size keyframe (as
//!   last measured) would take over [`KEYFRAME_MAX`] at the target rate, and restored only
//!   once one would fit [`KEYFRAME_UPSCALE_SHARE`] of that.
//!
//! Everything here is pure and takes time as input, except the atomics that publish the
//! estimate across threads.

use std::collections::VecDeque;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use rtc::interceptor::{
    BandwidthEstimator, OveruseDetector, RateCalculator, SlopeEstimator, Usage,
};
use types::ByteBudget;

/// The estimate may not run further ahead of what arrived than this factor…
pub const ACKED_HEADROOM: f64 = 1.5;
/// …plus this much, so it can grow from a quiet start. This is also where a new viewer's
/// estimate starts (nothing has arrived yet); it then grows by half of what arrives every
/// [`ACKED_WINDOW`] until GCC sees queuing or loss, so a link with room is found in seconds.
pub const PROBE_BPS: f64 = 1_500_000.0;
/// Nor does the estimate fall under this share of the most that arrived since the last
/// backoff (a screen that stops moving sends little, and an estimate that followed it down
/// would halve the picture for its keyframes: see `EncoderPolicy`). Not all of it: a floor
/// at what a 3 Mbit/s link had carried kept its queue full (p95 200 ms, against 60-150).
pub const DEMONSTRATED_SHARE: f64 = 0.6;
/// Once a backoff has measured the path, the estimate runs at most this far over
/// [`ACKED_HEADROOM`] × what arrived, not [`PROBE_BPS`]. (Behind 1 Mbit/s, with 0.7 Mbit/s
/// arriving, the probe allowance let the estimate grow to 2.2 Mbit/s: the encoder, asked for
/// three times what it was making, took itself for starved and started afresh with an 80 kB
/// IDR, whose burst the link lost; the viewer froze for 3 s.)
pub const MEASURED_PROBE_BPS: f64 = 150_000.0;
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
    /// When the last one was, in ms since [`clock_epoch`].
    last_report_ms: AtomicU64,
    /// The most the viewer asked to be sent (`MaxBitrate`), bits per second (0: no limit).
    limit_bps: AtomicU64,
    /// Whether the path is congested now: a standing queue or heavy loss.
    congested: std::sync::atomic::AtomicBool,
    /// Retransmissions to this viewer: bytes, decaying with [`RESEND_RATE_WINDOW`] (an
    /// `f64`'s bits; one writer, the NACK responder)…
    resent_bytes: AtomicU64,
    /// …as of this time, in ms since [`clock_epoch`].
    resent_at_ms: AtomicU64,
}

/// Retransmissions are measured over about this long (an exponential decay).
pub const RESEND_RATE_WINDOW: Duration = Duration::from_millis(500);
/// The encoder's share of a viewer's estimate is never cut below this share of it for
/// retransmissions (see [`PathEstimate::media_bps`]).
pub const MEDIA_FLOOR_SHARE: f64 = 0.5;

/// The origin of the millisecond times kept in atomics here.
fn clock_epoch() -> Instant {
    static EPOCH: std::sync::OnceLock<Instant> = std::sync::OnceLock::new();
    *EPOCH.get_or_init(Instant::now)
}

fn millis_since_epoch(at: Instant) -> u64 {
    at.saturating_duration_since(clock_epoch()).as_millis() as u64
}

/// An estimate without feedback for this long is stale: it decays by [`STALE_DECAY`] for
/// every further [`STALE_DECAY_EVERY`], down to [`MIN_BPS`] (as libwebrtc's GCC does when
/// feedback times out). Feedback stops when the path is so congested that the viewer's
/// reports are lost too; taking the silence for room (ignoring the viewer) sent the encoder
/// back to full rate into a dead link.
pub const STALE_AFTER: Duration = Duration::from_secs(2);
/// See [`STALE_AFTER`].
pub const STALE_DECAY: f64 = 0.8;
/// See [`STALE_AFTER`].
pub const STALE_DECAY_EVERY: Duration = Duration::from_millis(500);

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
    /// Sets the estimate as if no feedback had come yet (tests of its readers).
    #[cfg(test)]
    pub fn set_for_test(&self, bps: u64) {
        self.target_bps.store(bps, Ordering::Relaxed);
    }

    /// Marks the path congested or not (tests of its readers).
    #[cfg(test)]
    pub fn set_congested_for_test(&self, congested: bool) {
        self.congested.store(congested, Ordering::Relaxed);
    }

    /// The viewer asks to be sent at most `bps` (0: no limit): its estimate is capped
    /// there, so the encoder policy takes it as a path that slow.
    pub fn set_limit_bps(&self, bps: u64) {
        self.limit_bps.store(bps, Ordering::Relaxed);
    }

    pub fn limit_bps(&self) -> u64 {
        self.limit_bps.load(Ordering::Relaxed)
    }

    /// Whether feedback has arrived (before that, the estimate is only the initial guess).
    pub fn has_feedback(&self) -> bool {
        self.reports.load(Ordering::Relaxed) > 0
    }

    /// Whether feedback arrived within [`STALE_AFTER`] of `now`.
    pub fn is_fresh(&self, now: Instant) -> bool {
        self.has_feedback() && self.silence(now) <= STALE_AFTER
    }

    fn silence(&self, now: Instant) -> Duration {
        let last = self.last_report_ms.load(Ordering::Relaxed);
        let now_ms = millis_since_epoch(now);
        Duration::from_millis(now_ms.saturating_sub(last))
    }

    /// What the path is taken to carry at `now`: the estimate, decayed while it is stale
    /// (see [`STALE_AFTER`]); before any feedback, the starting estimate.
    /// Capped at the viewer's limit (see [`set_limit_bps`](Self::set_limit_bps)).
    pub fn estimate_bps(&self, now: Instant) -> u64 {
        let estimate = self.path_bps(now);
        match self.limit_bps() {
            0 => estimate,
            limit if estimate == 0 => limit,
            limit => estimate.min(limit),
        }
    }

    /// Whether the path has a standing queue (over [`QUEUE_OVERUSE_MS`]) or heavy loss now.
    pub fn congested(&self) -> bool {
        self.congested.load(Ordering::Relaxed)
    }

    /// Counts `bytes` retransmitted to this viewer at `now`.
    pub fn note_resent(&self, now: Instant, bytes: usize) {
        let now_ms = millis_since_epoch(now);
        let kept = self.resent_bytes_at(now_ms);
        self.resent_bytes
            .store((kept + bytes as f64).to_bits(), Ordering::Relaxed);
        self.resent_at_ms.store(now_ms, Ordering::Relaxed);
    }

    fn resent_bytes_at(&self, now_ms: u64) -> f64 {
        let bytes = f64::from_bits(self.resent_bytes.load(Ordering::Relaxed));
        let age_ms = now_ms.saturating_sub(self.resent_at_ms.load(Ordering::Relaxed));
        bytes * (-(age_ms as f64) / RESEND_RATE_WINDOW.as_millis() as f64).exp()
    }

    /// What retransmissions to this viewer have taken lately, bits per second.
    pub fn resend_bps(&self, now: Instant) -> u64 {
        (self.resent_bytes_at(millis_since_epoch(now)) * 8.0 / RESEND_RATE_WINDOW.as_secs_f64())
            as u64
    }

    /// What the media may take of the path at `now`: the estimate less what retransmissions
    /// take (libwebrtc's protection overhead), never under [`MEDIA_FLOOR_SHARE`] of it. The
    /// encoder aims at this: behind a link stepped down from 8 to 2 Mbit/s, media at 0.85 and
    /// resends at 0.5 of the estimate kept the bottleneck's queue full, 20-60 % loss for 3 s,
    /// and the repairs of the keyframe after it were lost or refused: a 4-5 s freeze.
    pub fn media_bps(&self, now: Instant) -> u64 {
        let estimate = self.estimate_bps(now);
        let floor = (estimate as f64 * MEDIA_FLOOR_SHARE) as u64;
        estimate.saturating_sub(self.resend_bps(now)).max(floor)
    }

    fn path_bps(&self, now: Instant) -> u64 {
        let target = self.target_bps();
        if !self.has_feedback() || self.is_fresh(now) {
            return target;
        }
        let over = self.silence(now).saturating_sub(STALE_AFTER);
        let steps = (over.as_millis() / STALE_DECAY_EVERY.as_millis()) as i32 + 1;
        let decayed = target as f64 * STALE_DECAY.powi(steps.min(64));
        (decayed as u64).max(MIN_BPS as u64).min(target)
    }
}

/// One viewer's path estimate: Google Congestion Control's delay and loss signals (rtc's
/// trend filter, overuse detector and loss controller) driving our own rate rule:
/// - overuse (queues growing, or the path delivering under [`OVERUSE_SHARE`] of what was
///   sent, [`RAMP_OVERUSE_SHARE`] before the capacity is known): back off to
///   [`DECREASE_FACTOR`] × what arrived;
/// - normal, within [`GENTLE_AFTER_DECREASE`] of a backoff, or near the path's capacity
///   (what arrived while it was full, as libwebrtc's link capacity estimate): grow
///   [`GENTLE_GROWTH`] a second (the ceiling is near), and from the capacity up to
///   [`OVER_CAPACITY_REACH`] over it only [`OVER_CAPACITY_STEP_BPS`] each second (a queue
///   starts in there);
/// - normal otherwise (far under the capacity, more arriving than it, or none known): grow
///   [`FAST_GROWTH`] a second (rtc's GCC would grow one MTU per round trip near
///   the last backoff forever: after a step back up, 2 → 8 Mbit/s took minutes);
/// - never more than [`ACKED_HEADROOM`] × what arrived plus [`PROBE_BPS`] (or
///   [`MEASURED_PROBE_BPS`] once a backoff has measured the path): growth needs
///   evidence, so a still screen cannot talk it up (nor under [`DEMONSTRATED_SHARE`] of the
///   most that arrived since the last backoff, so one that stops moving cannot talk it down);
/// - the loss controller (backs off above 10 % loss) caps it too.
pub struct ViewerGcc {
    slope: SlopeEstimator,
    detector: OveruseDetector,
    received: RateCalculator,
    /// Smoothed fraction of packets lost.
    loss: f64,
    /// Recent feedback batches: (when, packets lost, packets reported), over [`LOSS_WINDOW`].
    losses: VecDeque<(Instant, usize, usize)>,
    out: Arc<PathEstimate>,
    arrived: VecDeque<(Instant, usize)>,
    arrived_bytes: usize,
    /// Recent arrivals: (departure, arrival on the viewer's clock, bytes).
    spans: VecDeque<(Instant, Duration, usize)>,
    /// The delay-based rate (before the evidence cap).
    rate: f64,
    max: f64,
    last_update: Option<Instant>,
    last_decrease: Option<Instant>,
    /// The most that arrived (over [`ACKED_WINDOW`]) since the last backoff: a rate the path
    /// has shown it carries.
    demonstrated: f64,
    /// What arrived while the path was full, smoothed over backoffs (see [`CAPACITY_BAND`]).
    capacity: Option<f64>,
    /// The standing queue on the path (see [`QueueDelay`]).
    queue: QueueDelay,
    /// Since when more than the capacity's band has been arriving (see [`ROOM_SHOWN_AFTER`]).
    room_since: Option<Instant>,
    target: f64,
}

/// Near the path's capacity (over this share under it, and while what arrives is not this
/// share over it) the estimate grows gently, however long ago the last backoff was. (With
/// gentle growth only for 2 s after a backoff, behind 3 Mbit/s it grew at 50 % a second past
/// the link to 5 Mbit/s before the queue showed, then backed off to 1.5: a sawtooth of 4-5 s
/// with a freeze at each tooth.)
pub const CAPACITY_BAND: f64 = 0.15;
/// A capacity sample outside this factor of the capacity replaces it (the path changed);
/// one within it is averaged in with [`CAPACITY_SMOOTHING`].
const CAPACITY_RESET_FACTOR: f64 = 1.5;
/// The weight of a new capacity sample at a backoff…
const CAPACITY_SMOOTHING: f64 = 0.5;
/// …and of a full path's pace in each feedback report (several a second).
const CAPACITY_PACE_WEIGHT: f64 = 0.25;

/// More arriving than the capacity's band shows room (fast growth again) only once it has
/// for this long; gentle growth meanwhile. (Behind 3 Mbit/s, a capacity measured at 2.56
/// and arrivals swinging 2.5-3.2 with the frames' sizes put single reports over the band:
/// each one grew the estimate at 50 %/s, from 3.3 to 4 Mbit/s in a second, and the queue
/// that followed was the run's worst second.)
pub const ROOM_SHOWN_AFTER: Duration = Duration::from_secs(1);

/// On overuse, the rate becomes this share of what arrived.
pub const DECREASE_FACTOR: f64 = 0.85;
/// A backoff without a received rate leaves at least this share of the rate.
pub const MAX_DECREASE: f64 = 0.5;
/// Growth per second near the last backoff…
pub const GENTLE_GROWTH: f64 = 0.08;
/// …for this long after it…
pub const GENTLE_AFTER_DECREASE: Duration = Duration::from_secs(2);
/// …and growth per second otherwise.
pub const FAST_GROWTH: f64 = 0.5;
/// Near the capacity, from it up to [`OVER_CAPACITY_REACH`] over it, the estimate grows by
/// this many bits per second each second instead (libwebrtc's additive increase near its
/// link capacity is about one packet per round trip). Each climb through this band ends in
/// a queue some 18 % over the capacity and a backoff: the slower the climb, the rarer those
/// seconds of late frames. (Behind 3 Mbit/s at 1080p, at 100 kbit/s a second a queue came
/// every 5-7 s and the p95 met 120 ms in 10 of 19 runs, median 117 ms; at 50, in 8 of 9,
/// median 104 ms. A freed link still leaves the band by what arrives, see
/// [`ROOM_SHOWN_AFTER`]: back over 3.5 Mbit/s in 3.5-9.3 s in `congestion.test.mjs`.)
pub const OVER_CAPACITY_STEP_BPS: f64 = 50_000.0;
/// The share over the capacity that [`OVER_CAPACITY_STEP_BPS`] covers. The encoder aims at
/// [`TARGET_SHARE`] of the estimate, so a queue starts some 18 % over the capacity; past
/// this with no queue, the path has room and gentle growth resumes.
pub const OVER_CAPACITY_REACH: f64 = 0.3;
/// Backoffs are at least this far apart (one is seen through before the next).
const DECREASE_INTERVAL: Duration = Duration::from_millis(300);
/// Overuse counts only when the path delivers less than this share of what was sent over
/// [`SPAN_WINDOW`] (a real bottleneck spaces arrivals out; a busy CPU or a jittery radio
/// only shakes them, and GCC's trend alone would back off from those too).
pub const DELIVERED_SHARE: f64 = 0.9;
/// A path that delivers less than this share of what was sent is overused whatever the
/// delay trend says. (Behind a 3 Mbit/s token bucket, rtc's trend detector said "normal"
/// while the rate grew to 5 Mbit/s and the share fell to 0.76; it saw the queue only when
/// the loss did, at 15-60 %.)
pub const OVERUSE_SHARE: f64 = 0.85;
/// …and before the path's capacity is known, this share. (Behind 3 Mbit/s the first ramp,
/// allowed 1.5 × what arrived plus 1.5 Mbit/s, grew the estimate to 5.2 Mbit/s while the
/// queue measure warmed up; the share sat at 0.85-0.87 for 300 ms of frames made at 4
/// Mbit/s before it crossed [`OVERUSE_SHARE`], and by then the link's queue overflowed: 20 %
/// loss and the resends kept it full for a second, frames 0.5-0.9 s late. With a bottleneck
/// free, the share stays over 0.98 here.)
pub const RAMP_OVERUSE_SHARE: f64 = DELIVERED_SHARE;
/// Loss above this (smoothed, and in the latest feedback) backs off like overuse; below it,
/// loss is left to retransmission and keyframes (a few per cent is normal on Wi-Fi).
pub const HEAVY_LOSS: f64 = 0.1;
/// Loss counts as heavy only when it is over [`HEAVY_LOSS`] both smoothed and over this
/// window of feedback, not in one batch of it: with 2 % of packets dropped at random, one
/// batch of 20 reports read 11 lost (a lost or late feedback packet), the smoothed loss
/// jumped over 10 % and the estimate backed off, again and again, to 400 kbit/s on a link
/// with no limit.
pub const LOSS_WINDOW: Duration = Duration::from_millis(500);
/// How much recent traffic the delivered/sent comparison looks at.
const SPAN_WINDOW: Duration = Duration::from_millis(600);
/// How much of the latest arrivals measure a full path's capacity: short, as the first
/// backoff after a step down comes 100-300 ms into the new link (over the whole
/// [`SPAN_WINDOW`], arrivals from before the step read 2.7 Mbit/s behind 1.2).
const PACE_WINDOW: Duration = Duration::from_millis(250);

impl ViewerGcc {
    pub fn new(max_bps: f64, out: Arc<PathEstimate>) -> Self {
        let max = max_bps.max(MIN_BPS);
        let initial = PROBE_BPS.min(max);
        out.target_bps.store(initial as u64, Ordering::Relaxed);
        Self {
            slope: SlopeEstimator::new(),
            detector: OveruseDetector::new(),
            received: RateCalculator::default(),
            loss: 0.0,
            losses: VecDeque::new(),
            out,
            arrived: VecDeque::new(),
            arrived_bytes: 0,
            spans: VecDeque::new(),
            rate: max,
            max,
            last_update: None,
            last_decrease: None,
            demonstrated: 0.0,
            capacity: None,
            queue: QueueDelay::default(),
            room_since: None,
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

    /// Delivered rate over sent rate for the recent arrivals (1.0 when too little is known).
    fn delivered_share(&self) -> f64 {
        let (Some(first), Some(last)) = (self.spans.front(), self.spans.back()) else {
            return 1.0;
        };
        let sent = last.0.saturating_duration_since(first.0).as_secs_f64();
        let delivered = last.1.saturating_sub(first.1).as_secs_f64();
        if self.spans.len() < 10 || sent < 0.05 || delivered <= 0.0 {
            return 1.0;
        }
        // Same bytes over both spans: the rates' ratio is the spans' inverse ratio.
        sent / delivered
    }

    /// What the arrivals of the last [`PACE_WINDOW`] delivered, at their own pace: their bytes
    /// over the time they took to arrive (a full bottleneck spaces them at its rate whatever
    /// was sent; lost packets leave no gap in a busy link). None when too little is known.
    fn delivered_bps(&self) -> Option<f64> {
        let newest = self.spans.back()?.1;
        let recent = self
            .spans
            .iter()
            .filter(|&&(_, arrival, _)| newest.saturating_sub(arrival) <= PACE_WINDOW);
        let (mut first, mut count, mut bytes) = (None, 0, 0);
        for &(_, arrival, size) in recent {
            // The first packet's bytes arrived before the span began.
            if first.is_none() {
                first = Some(arrival);
            } else {
                bytes += size;
            }
            count += 1;
        }
        let took = newest.saturating_sub(first?).as_secs_f64();
        if count < 10 || took < 0.05 {
            return None;
        }
        Some(bytes as f64 * 8.0 / took)
    }

    /// The rate rule (see the type's docs), given the detector's verdict.
    fn update_rate(&mut self, now: Instant, usage: Usage, received: Option<f64>, acked: f64) {
        let dt = self.last_update.map_or(0.0, |t| {
            now.saturating_duration_since(t).as_secs_f64().min(1.0)
        });
        self.last_update = Some(now);
        self.demonstrated = self.demonstrated.max(acked);
        let queued_ms = self.queue.standing_ms();
        // Only a full path paces its arrivals (one under its link delivers what was sent):
        // while it is full (a queue stands, and grows or is long), what arrives measures its
        // capacity. (Measured at the backoff alone, the first one after a step down from 3.5
        // to 1.2 Mbit/s read 1.7, with arrivals from before the step in it, and nothing
        // corrected it. Spread-out arrivals alone can be a receiver's stall.)
        let full = queued_ms > QUEUE_OVERUSE_MS
            || (queued_ms > QUEUE_HOLD_MS && self.delivered_share() < DELIVERED_SHARE);
        let pace = if full { self.delivered_bps() } else { None };
        if let Some(pace) = pace {
            self.note_pace(pace);
        }
        // In the first ramp (no capacity known yet) growth is fastest and the queue measure
        // is still warming up: arrivals spreading out at all is overuse already.
        let overuse_share = if self.capacity.is_some() {
            OVERUSE_SHARE
        } else {
            RAMP_OVERUSE_SHARE
        };
        let usage = if self.delivered_share() < overuse_share || queued_ms > QUEUE_OVERUSE_MS {
            Usage::Over
        } else {
            usage
        };
        match usage {
            Usage::Over => {
                let due = self
                    .last_decrease
                    .is_none_or(|t| now.saturating_duration_since(t) >= DECREASE_INTERVAL);
                let queued = queued_ms > QUEUE_OVERUSE_MS;
                if due && (self.delivered_share() < DELIVERED_SHARE || self.heavy_loss() || queued)
                {
                    // Back off to a share of what the path delivers, not of what we aimed
                    // at, and never below it: while the queue of an earlier overshoot
                    // drains, overuse (and the smoothed loss) outlive a backoff that
                    // already fits, and backing off from the rate again and again held
                    // the estimate at 40 % of a 1.2 Mbit/s link.
                    // Without a received rate (right after a gap in feedback, lost with
                    // the video behind a full queue), little has been reported in the
                    // acked window and it reads far too low: then a backoff at most halves.
                    let floor = match received {
                        Some(r) => r * DECREASE_FACTOR,
                        None => (acked * DECREASE_FACTOR).max(self.rate * MAX_DECREASE),
                    };
                    if floor < self.rate {
                        self.rate = floor.max(MIN_BPS);
                        self.last_decrease = Some(now);
                        // Without a full path's pace, the most that got through up to
                        // this backoff (what arrives in the backoff's own window reads low
                        // while a queue of lost packets drains: behind 1.2 Mbit/s, 0.3).
                        if pace.is_none() {
                            let most = self.demonstrated.max(received.unwrap_or(0.0));
                            self.note_capacity(most);
                        }
                        // What got through while the path was full.
                        self.demonstrated = acked;
                    }
                }
            }
            // Queues draining: room again (GCC would hold here; after a bottleneck goes
            // away the trend can stay below zero for long, so we grow as on normal).
            Usage::Under | Usage::Normal => {
                let after_decrease = self
                    .last_decrease
                    .is_some_and(|t| now.saturating_duration_since(t) < GENTLE_AFTER_DECREASE);
                let near = self.near_capacity(acked);
                let above = self
                    .capacity
                    .is_some_and(|c| acked > c * (1.0 + CAPACITY_BAND));
                self.room_since = above.then(|| self.room_since.unwrap_or(now));
                let room_shown = self
                    .room_since
                    .is_some_and(|t| now.saturating_duration_since(t) >= ROOM_SHOWN_AFTER);
                let gentle = after_decrease || near || (above && !room_shown);
                let over_capacity = near
                    && self.capacity.is_some_and(|c| {
                        self.rate >= c && self.rate < c * (1.0 + OVER_CAPACITY_REACH)
                    });
                // Over the capacity, arrivals spreading out are the link filling before a
                // queue stands (between a frame's burst and the next the link empties, so
                // the least delay stays near none): treated as a standing queue. (Behind 3
                // Mbit/s the share sat at 0.87-0.90 for 200 ms before the queue stood, with
                // the estimate 1.24 × the capacity; then frames came 200 ms late.)
                let filling = self.capacity.is_some_and(|c| self.rate >= c)
                    && self.delivered_share() < DELIVERED_SHARE;
                let held = queued_ms > QUEUE_HOLD_MS || filling;
                // A standing queue holds the estimate.
                if !held {
                    if over_capacity {
                        self.rate += OVER_CAPACITY_STEP_BPS * dt;
                    } else {
                        let growth = if gentle { GENTLE_GROWTH } else { FAST_GROWTH };
                        self.rate *= 1.0 + growth * dt;
                    }
                }
                self.rate = self.rate.min(self.max);
                // A standing queue while the sender fills most of the estimate: the path
                // delivers what arrives and no more; aim there, so the queue drains before it
                // is overuse (a sender far under its estimate did not make the queue).
                if held && acked >= self.rate * FILLED_SHARE {
                    self.rate = self.rate.min(acked.max(MIN_BPS));
                }
            }
        }
        // Growth needs evidence: never far beyond what arrived.
        self.rate = self.rate.min(self.evidence_cap(acked));
    }

    /// `sample` bits per second arrived from a full path, at a backoff: a sample within
    /// [`CAPACITY_RESET_FACTOR`] is averaged in with [`CAPACITY_SMOOTHING`], one outside
    /// replaces it (the path changed).
    fn note_capacity(&mut self, sample: f64) {
        self.capacity = Some(match self.capacity {
            Some(c)
                if sample * CAPACITY_RESET_FACTOR >= c && sample <= c * CAPACITY_RESET_FACTOR =>
            {
                c + (sample - c) * CAPACITY_SMOOTHING
            }
            _ => sample,
        });
    }

    /// A full path's pace, in a feedback report: averaged in with [`CAPACITY_PACE_WEIGHT`],
    /// never replacing the capacity (one report's pace can read a third of the link, when
    /// the sender paused within it).
    fn note_pace(&mut self, pace: f64) {
        self.capacity = Some(match self.capacity {
            Some(c) => c + (pace - c) * CAPACITY_PACE_WEIGHT,
            None => pace,
        });
    }

    /// Whether growth should be gentle for the path's capacity: what arrives (`acked`) is
    /// within [`CAPACITY_BAND`] of it. Only what arrives tests the path: the encoder makes
    /// less than the estimate (a halved 1080p picture, 55-60 %), so an estimate over the
    /// capacity with less arriving is untested, and one that reads the estimate held growth
    /// gentle until the estimate was twice the capacity: 8 s to leave a freed 1 Mbit/s link.
    /// (The evidence cap keeps the estimate near what arrives either way.)
    fn near_capacity(&self, acked: f64) -> bool {
        let Some(c) = self.capacity else {
            return false;
        };
        acked <= c * (1.0 + CAPACITY_BAND) && acked >= c * (1.0 - CAPACITY_BAND)
    }

    /// The most the estimate may be when `acked` bits per second arrived: a little over what
    /// arrives, or over a share of what the path has shown it carries since the last backoff
    /// ([`DEMONSTRATED_SHARE`]).
    fn evidence_cap(&self, acked: f64) -> f64 {
        (acked * ACKED_HEADROOM).max(self.demonstrated * DEMONSTRATED_SHARE) + self.probe_bps()
    }

    /// How far the estimate may run over the evidence: [`PROBE_BPS`] until a backoff has
    /// measured the path, [`MEASURED_PROBE_BPS`] after.
    fn probe_bps(&self) -> f64 {
        if self.capacity.is_some() {
            MEASURED_PROBE_BPS
        } else {
            PROBE_BPS
        }
    }

    #[cfg(test)]
    fn smoothed_loss(&self) -> f64 {
        self.loss
    }

    /// Whether loss is heavy: over [`HEAVY_LOSS`] smoothed and over [`LOSS_WINDOW`].
    fn heavy_loss(&self) -> bool {
        let (lost, total) = self
            .losses
            .iter()
            .fold((0, 0), |(l, t), &(_, lost, total)| (l + lost, t + total));
        let windowed = if total == 0 {
            0.0
        } else {
            lost as f64 / total as f64
        };
        self.loss.min(windowed) > HEAVY_LOSS
    }

    fn publish(&mut self, now: Instant) {
        let acked = self.acked_bps(now);
        self.target = self
            .rate
            .min(self.evidence_cap(acked))
            .clamp(MIN_BPS, self.max);
        self.out
            .target_bps
            .store(self.target as u64, Ordering::Relaxed);
        self.out.acked_bps.store(acked as u64, Ordering::Relaxed);
        self.out.congested.store(
            self.queue.standing_ms() > QUEUE_OVERUSE_MS || self.heavy_loss(),
            Ordering::Relaxed,
        );
        self.out
            .loss_permille
            .store((self.loss * 1000.0).round() as u64, Ordering::Relaxed);
    }
}

/// Packets reported lost at the start of a batch of reports, with none arriving between
/// them, that were sent over longer than this are taken for lost *feedback*, not lost
/// packets, and not counted. rtc reports every packet older than the newest acknowledged one
/// as lost when no feedback named it, and the packets of a lost TWCC feedback packet come
/// first in the next batch: behind 2 % random loss (of the feedback too), a batch read 60 %
/// of 187 packets lost, and batches of 20-30 half lost, which backed the estimate off again
/// and again on a link with no limit. Losses at a bottleneck come between arrivals (it
/// delivers a packet every few milliseconds) or in bursts sent at once (a keyframe's tail).
pub const LOST_FEEDBACK_SPAN: Duration = Duration::from_millis(10);

/// Packets lost and packets counted in one batch of reports (in send order), leaving out a
/// leading run of losses longer than [`LOST_FEEDBACK_SPAN`].
fn count_losses(reports: &[rtc::interceptor::PacketReport]) -> (usize, usize) {
    let leading = reports.iter().take_while(|r| !r.arrived).count();
    let skip = match (reports.first(), reports[..leading].last()) {
        (Some(first), Some(last))
            if last.departure.saturating_duration_since(first.departure) > LOST_FEEDBACK_SPAN =>
        {
            leading
        }
        _ => 0,
    };
    let counted = &reports[skip..];
    (counted.iter().filter(|r| !r.arrived).count(), counted.len())
}

impl BandwidthEstimator for ViewerGcc {
    fn on_reports(&mut self, now: Instant, reports: &[rtc::interceptor::PacketReport]) {
        if reports.is_empty() {
            return;
        }
        let mut usage = self.detector.usage();
        for r in reports {
            if r.arrived {
                self.received.add(now, r.size);
                self.arrived.push_back((now, r.size));
                self.arrived_bytes += r.size;
                if let Some(arrival) = r.arrival {
                    self.spans.push_back((r.departure, arrival, r.size));
                    self.queue.add(r.departure, arrival);
                }
            }
            if let Some(trend) = self.slope.accumulate(r) {
                usage = self.detector.update(trend.at, trend.estimate_ms);
            }
        }
        if let Some(&(newest, _, _)) = self.spans.back() {
            while self
                .spans
                .front()
                .is_some_and(|&(d, _, _)| newest.saturating_duration_since(d) > SPAN_WINDOW)
            {
                self.spans.pop_front();
            }
        }
        let (lost, counted) = count_losses(reports);
        let sample = if counted == 0 {
            0.0
        } else {
            lost as f64 / counted as f64
        };
        self.loss = 0.8 * self.loss + 0.2 * sample;
        self.losses.push_back((now, lost, counted));
        while self
            .losses
            .front()
            .is_some_and(|&(t, _, _)| now.saturating_duration_since(t) > LOSS_WINDOW)
        {
            self.losses.pop_front();
        }
        let received = self.received.rate_bits_per_second(now);
        let acked = self.acked_bps(now);
        // Heavy loss is congestion too (a policer, or a queue that overflows before it
        // delays much): treated as overuse.
        let usage = if self.heavy_loss() {
            Usage::Over
        } else {
            usage
        };
        self.update_rate(now, usage, received, acked);
        tracing::trace!(
            ?usage,
            rate = self.rate as u64,
            acked = acked as u64,
            received = received.unwrap_or(0.0) as u64,
            loss = self.loss,
            delivered_share = self.delivered_share(),
            capacity = self.capacity.unwrap_or(0.0) as u64,
            pace = self.delivered_bps().unwrap_or(0.0) as u64,
            queue_ms = self.queue.standing_ms(),
            reports = reports.len(),
            lost,
            counted,
            "path feedback"
        );
        self.out.reports.fetch_add(1, Ordering::Relaxed);
        self.out
            .last_report_ms
            .store(millis_since_epoch(now), Ordering::Relaxed);
        self.publish(now);
    }

    fn target_bitrate(&self) -> f64 {
        self.target
    }
}

/// A standing queue over this many milliseconds is overuse, whatever the trend filter says.
/// (Behind a 3 Mbit/s token bucket with a 150 ms queue, rtc's trend filter saw nothing while
/// the queue filled: each backoff came from the loss once it overflowed, after 150 ms of
/// delay on every frame.) Above what one 1080p frame of a busy screen adds at 3 Mbit/s.
pub const QUEUE_OVERUSE_MS: f64 = 40.0;
/// A standing queue over this many milliseconds holds the estimate where it is: the path is
/// full (behind 3 Mbit/s the estimate grew on, gently, for 0.8 s while the queue built to
/// 40 ms, and the encoder's lag after the backoff took it to 135 ms).
pub const QUEUE_HOLD_MS: f64 = 15.0;
/// …and while what arrives is at least this share of the estimate, brings the estimate down
/// to what arrives. (Behind 3 Mbit/s the estimate, held at 3.7 Mbit/s with 2.8 arriving,
/// kept the queue growing to 55 ms and the backoff came 600 ms after the hold, with frames
/// 150-200 ms late.)
pub const FILLED_SHARE: f64 = 0.6;
/// A queue counts as standing when every packet that arrived over this long was delayed by
/// it (a keyframe's burst, or a stalled CPU, passes within it).
const QUEUE_WINDOW: Duration = Duration::from_millis(300);
/// The path's own delay (no queue) is the least seen over this long… (Short: a queue that
/// stands longer is taken as the path's, as a delay trend would; and the first packets of a
/// stream can read far lower than any after them (85 ms, with our native client as the
/// viewer), which over 10 s held every later packet as queued and the estimate at its
/// floor.)
const BASE_WINDOW: Duration = Duration::from_secs(2);
/// …kept per bucket of this long…
const BASE_BUCKET: Duration = Duration::from_millis(250);
/// …and nothing counts as queued before the base has been measured this long.
const BASE_WARMUP: Duration = Duration::from_secs(3);

/// The queueing delay on one viewer's path: each packet's one-way delay (its arrival on the
/// viewer's clock less its departure on ours; the clocks' offset cancels out) over the least
/// one-way delay of the last [`BASE_WINDOW`], once that has been measured for
/// [`BASE_WARMUP`].
#[derive(Clone, Debug, Default)]
struct QueueDelay {
    /// The first packet's departure.
    first: Option<Instant>,
    /// (bucket start, least one-way delay in it, ms).
    base: VecDeque<(Instant, f64)>,
    /// (departure, queueing delay ms) of the last [`QUEUE_WINDOW`].
    recent: VecDeque<(Instant, f64)>,
}

impl QueueDelay {
    fn add(&mut self, departure: Instant, arrival: Duration) {
        self.first.get_or_insert(departure);
        let sent_ms = departure
            .saturating_duration_since(clock_epoch())
            .as_secs_f64()
            * 1000.0;
        let one_way = arrival.as_secs_f64() * 1000.0 - sent_ms;
        match self.base.back_mut() {
            Some((start, least)) if departure.saturating_duration_since(*start) < BASE_BUCKET => {
                *least = least.min(one_way);
            }
            _ => self.base.push_back((departure, one_way)),
        }
        while self
            .base
            .front()
            .is_some_and(|&(start, _)| departure.saturating_duration_since(start) > BASE_WINDOW)
        {
            self.base.pop_front();
        }
        let base = self
            .base
            .iter()
            .map(|&(_, least)| least)
            .fold(f64::INFINITY, f64::min);
        self.recent.push_back((departure, one_way - base));
        while self
            .recent
            .front()
            .is_some_and(|&(d, _)| departure.saturating_duration_since(d) > QUEUE_WINDOW)
        {
            self.recent.pop_front();
        }
    }

    /// The least queueing delay of the packets of the last [`QUEUE_WINDOW`] (0 with too few
    /// of them to tell).
    fn standing_ms(&self) -> f64 {
        let (Some(first), Some(last)) = (self.recent.front(), self.recent.back()) else {
            return 0.0;
        };
        let warm = self
            .first
            .is_some_and(|t| last.0.saturating_duration_since(t) >= BASE_WARMUP);
        if !warm
            || self.recent.len() < 10
            || last.0.saturating_duration_since(first.0) < QUEUE_WINDOW / 2
        {
            return 0.0;
        }
        self.recent
            .iter()
            .map(|&(_, q)| q)
            .fold(f64::INFINITY, f64::min)
            .max(0.0)
    }
}

/// What one viewer's link lets through: a token bucket at the viewer's estimate. A unit
/// that does not fit is not sent (the viewer then waits for a keyframe), so a slow viewer
/// never builds a queue of old video, and the encoder does not have to wait for it.
#[derive(Debug)]
pub struct SendBudget(ByteBudget);

/// How much a viewer may send at once: this long at its estimate (a keyframe, a sudden
/// change of the whole screen)…
pub const BUDGET_BURST: Duration = Duration::from_millis(400);
/// …and the rate the budget refills at, as a share of the estimate (TWCC sees what was
/// sent; a little more than the estimate lets it find out that more fits).
pub const BUDGET_RATE_SHARE: f64 = 1.1;

impl SendBudget {
    /// Starts empty.
    pub fn new(now: Instant) -> Self {
        Self(ByteBudget::empty(now, BUDGET_BURST))
    }

    /// Whether a unit of `bytes` may go now at `rate_bps`; if so, it is counted. Any unit
    /// may overdraw the budget (a unit larger than the burst must still go some time), and
    /// the debt is paid back before the next one goes. Keyframes obey the same rule.
    pub fn admit(&mut self, now: Instant, rate_bps: u64, bytes: usize) -> bool {
        self.0.fill(now, rate_bps as f64 / 8.0 * BUDGET_RATE_SHARE);
        if self.0.in_debt() {
            return false;
        }
        self.0.spend(bytes);
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
/// The longest a full-size keyframe may take at the target rate before the picture is
/// halved. (Behind 1 Mbit/s, 1080p keyframes of 130-220 kB took 1.5-3.5 s of the link: their
/// tails were lost in the bottleneck's queue, the viewer asked for another, and no picture
/// came for 30 s.)
pub const KEYFRAME_MAX: Duration = Duration::from_secs(1);
/// A picture halved for its keyframes returns to full size only when one would take at most
/// this share of [`KEYFRAME_MAX`] (so it does not flip back and forth: at 0.85, behind
/// 3 Mbit/s, it came back at a 2.4 Mbit/s target, and its 225 kB keyframe overflowed the
/// link's queue: halved again, two keyframes and a 1-2 s freeze every 6 s). Not much less: a
/// halved picture makes at most ~1.6 Mbit/s (1080p source, 30 % moving), and the estimate
/// grows on what arrives ([`ACKED_HEADROOM`] × that plus [`PROBE_BPS`]).
pub const KEYFRAME_UPSCALE_SHARE: f64 = 0.6;
/// A half-size keyframe's bytes, as a share of a full-size one's, to guess one size's from
/// the other's (measured on the g2g rig: ~0.3).
pub const HALF_KEYFRAME_SHARE: f64 = 0.3;
/// The keyframe rule waits this long after the first estimate: a new viewer's estimate
/// starts at [`PROBE_BPS`] and takes about this long to find a fast link.
pub const KEYFRAME_GRACE: Duration = Duration::from_secs(1);

/// The longest a halving of the picture waits for a congested path to drain. (Behind a link
/// stepped down from 8 to 2 Mbit/s, the half-size keyframe went out at once into a queue
/// 180 ms full with 60 % loss, was lost, and the viewer had no picture until Chromium asked
/// for another 3 s later.)
pub const HALVING_WAITS_MAX: Duration = Duration::from_millis(1500);

/// Whether a viewer with `estimate_bps` is one the encoder is sized for: not hopeless
/// beside the fastest of `estimates_bps` (see [`HOPELESS_RATIO`]).
pub fn is_served(estimate_bps: u64, estimates_bps: &[u64]) -> bool {
    let fastest = estimates_bps.iter().copied().max().unwrap_or(0);
    estimate_bps as f64 >= fastest as f64 * HOPELESS_RATIO
}

/// The slowest of the known (non-zero) estimates the encoder is sized for; `None` before
/// any estimate.
pub fn slowest_served(estimates_bps: &[u64]) -> Option<u64> {
    estimates_bps
        .iter()
        .copied()
        .filter(|&e| e > 0 && is_served(e, estimates_bps))
        .min()
}

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
    /// The last keyframe's bytes at full size, and at half size.
    keyframe_bytes: [Option<usize>; 2],
    /// When a viewer's estimate was first known (reset when there is none).
    estimated_since: Option<Instant>,
    /// Since when a viewer's path has been congested (see [`Self::set_congested`]).
    congested_since: Option<Instant>,
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
            keyframe_bytes: [None; 2],
            estimated_since: None,
            congested_since: None,
        }
    }

    /// The encoder made a keyframe of `bytes` at `scale_div` (1: full size, 2: half). The
    /// largest of each size is kept (until the picture changes size): keyframes made at a low
    /// target are smaller, and judging the full size by one of those brought it back behind
    /// 3 Mbit/s, where its next keyframe (225 kB, against 130 kB measured at the low
    /// target) overflowed the link's queue and halved the picture again a second later.
    pub fn note_keyframe(&mut self, bytes: usize, scale_div: u32) {
        let kept = &mut self.keyframe_bytes[usize::from(scale_div >= 2)];
        *kept = Some(kept.map_or(bytes, |k| k.max(bytes)));
    }

    /// What a full-size keyframe costs, bytes: as last measured, or guessed from a half-size
    /// one ([`HALF_KEYFRAME_SHARE`]).
    fn full_keyframe_bytes(&self) -> Option<f64> {
        match self.keyframe_bytes {
            [Some(full), _] => Some(full as f64),
            [None, Some(half)] => Some(half as f64 / HALF_KEYFRAME_SHARE),
            [None, None] => None,
        }
    }

    pub fn current(&self) -> EncoderTarget {
        self.current
    }

    /// Whether a served viewer's path is congested at `now` (a standing queue or heavy loss:
    /// [`PathEstimate::congested`]). While it is, halving the picture waits (at most
    /// [`HALVING_WAITS_MAX`]): the half-size keyframe would go into the full queue.
    pub fn set_congested(&mut self, now: Instant, congested: bool) {
        if !congested {
            self.congested_since = None;
        } else if self.congested_since.is_none() {
            self.congested_since = Some(now);
        }
    }

    /// The full picture is now `width` × `height` (another monitor is shared).
    pub fn set_size(&mut self, width: u32, height: u32) {
        let pixels = f64::from(width.max(2)) * f64::from(height.max(2));
        if pixels != self.pixels {
            // Another picture: its keyframes are yet to be seen.
            self.keyframe_bytes = [None; 2];
        }
        self.pixels = pixels;
    }

    /// The bit rate the encoder should aim at for these viewers' estimates (bits per
    /// second; 0 = no estimate yet), ignoring hopeless viewers.
    pub fn target_kbps(&self, estimates_bps: &[u64]) -> u32 {
        let Some(slowest) = slowest_served(estimates_bps) else {
            return self.configured_kbps;
        };
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
        // How long the viewers' estimates have been known (zero: none yet).
        let estimated_for = if slowest_served(estimates_bps).is_some() {
            now.saturating_duration_since(*self.estimated_since.get_or_insert(now))
        } else {
            self.estimated_since = None;
            Duration::ZERO
        };
        // How long a full-size keyframe takes at the target rate.
        let keyframe_secs = self
            .full_keyframe_bytes()
            .map_or(0.0, |bytes| bytes * 8.0 / (f64::from(kbps.max(1)) * 1000.0));
        let keyframe_too_big =
            estimated_for >= KEYFRAME_GRACE && keyframe_secs > KEYFRAME_MAX.as_secs_f64();
        let keyframe_fits = keyframe_secs <= KEYFRAME_MAX.as_secs_f64() * KEYFRAME_UPSCALE_SHARE;
        let mut scale_div = self.current.scale_div;
        // A halving waits while the path is congested (not for long).
        let halving_waits = scale_div == 1
            && self
                .congested_since
                .is_some_and(|t| now.saturating_duration_since(t) < HALVING_WAITS_MAX);
        if halving_waits {
            self.upscale_ok_since = None;
        } else if full < min_fps || keyframe_too_big {
            scale_div = 2;
            self.upscale_ok_since = None;
        } else if scale_div == 2 && !keyframe_fits {
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
    fn retransmissions_come_out_of_the_media_share_and_fade() {
        let path = PathEstimate::default();
        path.set_for_test(2 * MBIT);
        let t0 = Instant::now();
        let at = |ms: u64| t0 + Duration::from_millis(ms);
        assert_eq!(path.media_bps(at(0)), 2 * MBIT, "no resends: all of it");
        // 25 kB resent over 100 ms: ~400 kbit/s of resends over the 500 ms window.
        for i in 0..25 {
            path.note_resent(at(i * 4), 1_000);
        }
        let resends = path.resend_bps(at(100));
        assert!((300_000..400_000).contains(&resends), "{resends}");
        let media = path.media_bps(at(100));
        assert_eq!(media, 2 * MBIT - resends);
        // A storm of resends leaves the media at least MEDIA_FLOOR_SHARE.
        path.note_resent(at(100), 500_000);
        assert_eq!(path.media_bps(at(100)), MBIT);
        // They fade once they stop: after 3 s, nearly all of the estimate again.
        assert!(path.media_bps(at(3_100)) > 2 * MBIT * 95 / 100);
        assert_eq!(
            path.estimate_bps(at(3_100)),
            2 * MBIT,
            "the estimate itself is untouched"
        );
    }

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
    fn a_keyframe_the_link_cannot_carry_in_a_second_halves_the_picture() {
        let t0 = Instant::now();
        let at = |ms: u64| t0 + Duration::from_millis(ms);
        // 1080p keyframes of 200 kB: 1 Mbit/s (target 850 kbit/s) needs 1.9 s for one; the
        // bits-per-pixel rule alone would keep the full size at 20 fps.
        let mut p = EncoderPolicy::new(8000, 30, 1920, 1080);
        p.note_keyframe(200_000, 1);
        let t = p.update(at(0), &[MBIT]);
        assert_eq!(
            (t.kbps, t.fps, t.scale_div),
            (850, 20, 1),
            "within the grace"
        );
        let t = p.update(at(500), &[MBIT]);
        assert_eq!(t.scale_div, 1, "a new viewer's estimate is still growing");
        let t = p.update(at(1_000), &[MBIT]);
        assert_eq!((t.kbps, t.fps, t.scale_div), (850, 30, 2), "halved");
        // Half-size keyframes come; the full size is not back while one would not fit in
        // 0.6 s: behind 3 Mbit/s (target 2.55) it would take 0.63 s. A smaller full-size
        // keyframe (made at a low target) does not count for less than the largest.
        p.note_keyframe(60_000, 2);
        p.note_keyframe(120_000, 1);
        for ms in (1_200..10_000).step_by(200) {
            assert_eq!(p.update(at(ms), &[3 * MBIT]).scale_div, 2, "at {ms} ms");
        }
        // 4 Mbit/s: 0.47 s: back after UPSCALE_AFTER.
        assert_eq!(p.update(at(10_000), &[4 * MBIT]).scale_div, 2);
        assert_eq!(p.update(at(13_800), &[4 * MBIT]).scale_div, 2);
        assert_eq!(p.update(at(14_000), &[4 * MBIT]).scale_div, 1);

        // Behind 3 Mbit/s the same keyframes take 0.63 s: the full size stays.
        let mut p = EncoderPolicy::new(8000, 30, 1920, 1080);
        p.note_keyframe(200_000, 1);
        for ms in (0..5_000).step_by(200) {
            assert_eq!(p.update(at(ms), &[3 * MBIT]).scale_div, 1, "at {ms} ms");
        }
        // Another monitor: its keyframes are not known yet.
        let mut p = EncoderPolicy::new(8000, 30, 1920, 1080);
        p.note_keyframe(200_000, 1);
        p.set_size(1280, 720);
        p.update(at(0), &[MBIT]);
        assert_eq!(p.update(at(2_000), &[MBIT]).scale_div, 1);
        // Only a half-size keyframe known: a full one is guessed from it.
        let mut p = EncoderPolicy::new(8000, 30, 1920, 1080);
        p.note_keyframe(60_000, 2);
        p.update(at(0), &[MBIT]);
        assert_eq!(p.update(at(2_000), &[MBIT]).scale_div, 2);
    }

    #[test]
    fn halving_waits_for_a_congested_path_to_drain_but_not_for_long() {
        let t0 = Instant::now();
        let at = |ms: u64| t0 + Duration::from_millis(ms);
        let mut p = EncoderPolicy::new(8000, 30, 1920, 1080);
        p.note_keyframe(200_000, 1);
        p.update(at(0), &[8 * MBIT]);
        // The link steps down: the estimate falls, the queue stands full.
        p.set_congested(at(2_000), true);
        assert_eq!(p.update(at(2_000), &[MBIT]).scale_div, 1, "waits");
        assert_eq!(p.update(at(3_000), &[MBIT]).scale_div, 1, "still congested");
        // Drained: the half-size keyframe goes into an empty queue.
        p.set_congested(at(3_200), false);
        assert_eq!(p.update(at(3_200), &[MBIT]).scale_div, 2);
        // Congestion that does not end does not hold the halving past HALVING_WAITS_MAX.
        let mut p = EncoderPolicy::new(8000, 30, 1920, 1080);
        p.note_keyframe(200_000, 1);
        p.update(at(0), &[8 * MBIT]);
        p.set_congested(at(2_000), true);
        assert_eq!(p.update(at(2_000), &[MBIT]).scale_div, 1);
        p.set_congested(at(3_400), true);
        assert_eq!(p.update(at(3_400), &[MBIT]).scale_div, 1);
        p.set_congested(at(3_600), true);
        assert_eq!(p.update(at(3_600), &[MBIT]).scale_div, 2);
    }

    #[test]
    fn a_budget_drops_what_the_link_cannot_carry_and_lets_keyframes_resume() {
        let t0 = Instant::now();
        let at = |ms: u64| t0 + Duration::from_millis(ms);
        let mut b = SendBudget::new(t0);
        // 1 Mbit/s * 1.1 = 137.5 kB/s; frames of 20 kB at 30 fps = 600 kB/s.
        let mut sent = 0;
        for i in 0..300u64 {
            if b.admit(at(i * 1000 / 30), MBIT, 20_000) {
                sent += 20_000;
            }
        }
        let rate = sent as f64 / 10.0;
        assert!((100_000.0..=160_000.0).contains(&rate), "{rate} B/s");
        // Units larger than the whole burst still go, as often as the rate allows.
        let mut b = SendBudget::new(t0);
        let sent = (0..300u64)
            .filter(|&i| b.admit(at(i * 1000 / 30), MBIT / 4, 60_000))
            .count();
        assert!(
            (3..=6).contains(&sent),
            "{sent} units of 60 kB in 10 s at 250 kbit/s"
        );
        // A big keyframe goes even over budget, then the debt is paid before more goes.
        let mut b = SendBudget::new(t0);
        assert!(b.admit(at(0), MBIT, 200_000));
        assert!(!b.admit(at(100), MBIT, 1_000));
        assert!(b.admit(at(1_600), MBIT, 1_000));
    }

    /// A TWCC report of packet `id` of `size` bytes, sent at `departure`; arrived at
    /// `arrival` (on the viewer's clock), or lost.
    fn twcc_report(
        id: u64,
        size: usize,
        departure: Instant,
        arrival: Option<Duration>,
    ) -> rtc::interceptor::PacketReport {
        rtc::interceptor::PacketReport {
            ssrc: 1,
            id,
            rtp_sequence_number: id as u16,
            is_twcc: true,
            twcc_sequence_number: id as u16,
            size,
            arrived: arrival.is_some(),
            departure,
            arrival,
            ecn: rtc::rtcp::transport_feedbacks::cc_feedback_report::Ecn::NotEct,
        }
    }

    #[test]
    fn a_long_run_of_unreported_packets_is_lost_feedback_not_loss() {
        let t0 = Instant::now();
        let report = |i: u64, arrived: bool| {
            let arrival = arrived.then(|| Duration::from_millis(i));
            twcc_report(i, 1200, t0 + Duration::from_millis(i), arrival)
        };
        // A packet a millisecond; every 10th dropped (a bottleneck, or random loss): counted.
        let dropped: Vec<_> = (0..200).map(|i| report(i, i % 10 != 0)).collect();
        assert_eq!(count_losses(&dropped), (20, 200));
        // The first 112 of 187 packets, sent over 112 ms, went unreported (their feedback was
        // lost): not counted either way.
        let gap: Vec<_> = (0..187).map(|i| report(i, i >= 112)).collect();
        assert_eq!(count_losses(&gap), (0, 75));
        // The first 5, within 5 ms: lost packets.
        let few: Vec<_> = (0..50).map(|i| report(i, i >= 5)).collect();
        assert_eq!(count_losses(&few), (5, 50));
        // A run of 30 lost after arrivals (a keyframe's tail in a full queue): counted.
        let burst: Vec<_> = (0..100)
            .map(|i| report(i, !(40..70).contains(&i)))
            .collect();
        assert_eq!(count_losses(&burst), (30, 100));
    }

    #[test]
    fn one_bad_feedback_batch_is_not_heavy_loss_but_a_half_second_of_it_is() {
        use rtc::interceptor::PacketReport;
        let out = Arc::new(PathEstimate::default());
        let mut g = ViewerGcc::new(50_000_000.0, out.clone());
        let t0 = Instant::now();
        let mut id = 0u64;
        // 20 packets of 1000 B every 50 ms (3.2 Mbit/s), evenly spaced and arriving as sent;
        // the last `lost(step)` of each batch reported lost.
        let mut run =
            |g: &mut ViewerGcc, steps: std::ops::Range<u64>, lost: &dyn Fn(u64) -> usize| {
                for step in steps {
                    let now = t0 + Duration::from_millis(step * 50);
                    let reports: Vec<PacketReport> = (0..20u64)
                        .map(|i| {
                            id += 1;
                            let arrived = (i as usize) < 20 - lost(step);
                            let arrival = arrived.then(|| Duration::from_millis(step * 50 + i * 2));
                            twcc_report(id, 1000, now - Duration::from_millis(50 - i * 2), arrival)
                        })
                        .collect();
                    g.on_reports(now, &reports);
                }
            };
        run(&mut g, 0..60, &|_| 0);
        let before = g.rate;
        // One batch of 20 reads 11 lost (the 2 % loss run's artefact): no backoff.
        run(&mut g, 60..61, &|_| 11);
        assert!(
            g.smoothed_loss() > HEAVY_LOSS,
            "the smoothed loss alone would back off"
        );
        run(&mut g, 61..62, &|_| 0);
        assert!(g.last_decrease.is_none(), "backed off to {}", g.rate);
        // A link that drops a quarter of everything for half a second: backoff.
        run(&mut g, 62..72, &|_| 5);
        assert!(g.last_decrease.is_some(), "heavy loss backs off");
        assert!(g.rate < before, "{} after {before}", g.rate);
    }

    #[test]
    fn the_estimate_cannot_run_far_ahead_of_what_arrived() {
        use rtc::interceptor::PacketReport;
        let out = Arc::new(PathEstimate::default());
        let _ = clock_epoch();
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
                    let arrival = Some(Duration::from_millis(step * 100 + i));
                    twcc_report(id, 200, now - Duration::from_millis(30 - i), arrival)
                })
                .collect();
            g.on_reports(now, &reports);
        }
        // 10 x 200 B every 100 ms = 160 kbit/s arrived: at most 1.5x that plus the probe.
        let cap = (160_000.0 * ACKED_HEADROOM + PROBE_BPS) as u64;
        assert!(out.target_bps() <= cap + 1, "{} > {cap}", out.target_bps());
        assert!(out.has_feedback());
        assert_eq!(out.acked_bps(), 160_000);
        let last = t0 + Duration::from_millis(199 * 100);
        assert!(out.is_fresh(last + Duration::from_secs(1)));
        assert!(
            !out.is_fresh(last + Duration::from_secs(3)),
            "quiet paths go stale"
        );
        // A fresh estimate is itself; a stale one decays (0.8 a half second) to the floor.
        let fresh = out.target_bps();
        assert_eq!(out.estimate_bps(last + Duration::from_secs(1)), fresh);
        let at = |ms: u64| out.estimate_bps(last + Duration::from_millis(ms));
        assert_eq!(at(2_100), (fresh as f64 * 0.8) as u64);
        assert_eq!(at(2_600), (fresh as f64 * 0.8 * 0.8) as u64);
        assert!(at(3_000) < at(2_600) && at(2_600) < at(2_100));
        assert_eq!(at(60_000), MIN_BPS as u64, "down to the floor");
    }

    #[test]
    fn a_standing_queue_is_overuse_and_a_burst_is_not() {
        let t0 = clock_epoch() + Duration::from_secs(100);
        let mut q = QueueDelay::default();
        // Packets every 5 ms, one-way delay 1000 ms on the offset clocks (no queue).
        let send = |q: &mut QueueDelay, ms: u64, queued: u64| {
            q.add(
                t0 + Duration::from_millis(ms),
                Duration::from_millis(100_000 + ms + 1_000 + queued),
            );
        };
        // The first packets read 85 ms faster than any after them (seen with our native
        // client): nothing counts as queued while the base warms up, nor once they are old.
        for ms in (0..100).step_by(5) {
            q.add(
                t0 + Duration::from_millis(ms),
                Duration::from_millis(100_000 + ms + 1_000 - 85),
            );
        }
        for ms in (100..3_500).step_by(5) {
            send(&mut q, ms, 0);
            assert_eq!(q.standing_ms(), 0.0, "at {ms} ms");
        }
        // A keyframe's burst: 100 ms of packets delayed up to 150 ms. Not standing.
        for ms in (3_500..3_600).step_by(5) {
            send(&mut q, ms, 150 - (ms - 3_500));
        }
        for ms in (3_600..3_700).step_by(5) {
            send(&mut q, ms, 0);
        }
        assert_eq!(q.standing_ms(), 0.0);
        // A queue that stands 80 ms and more for 300 ms: overuse.
        for ms in (3_700..4_100).step_by(5) {
            send(&mut q, ms, 80 + (ms - 3_700) / 10);
        }
        assert!(q.standing_ms() > QUEUE_OVERUSE_MS, "{}", q.standing_ms());
        // One that stands longer than the base window becomes the base (as for a trend).
        let mut later = QueueDelay::default();
        for ms in (0..3_500).step_by(5) {
            send(&mut later, ms, 0);
        }
        for ms in (3_500..6_000).step_by(5) {
            send(&mut later, ms, 120);
        }
        assert_eq!(later.standing_ms(), 0.0);
        // ViewerGcc backs off on it though arrivals keep pace with departures.
        let mut g = ViewerGcc::new(100_000_000.0, Arc::default());
        g.rate = 4_000_000.0;
        g.queue = q;
        g.update_rate(
            t0 + Duration::from_millis(4_100),
            Usage::Normal,
            Some(3_000_000.0),
            3_000_000.0,
        );
        assert_eq!(g.rate, 3_000_000.0 * DECREASE_FACTOR);

        // A queue standing 20 ms (over the hold, under overuse): a sender filling its
        // estimate aims at what arrives; one far under it (it did not make the queue) keeps it.
        let held = standing_queue(20);
        assert!(held.standing_ms() > QUEUE_HOLD_MS && held.standing_ms() < QUEUE_OVERUSE_MS);
        let now = t0 + Duration::from_millis(3_900);
        let mut g = ViewerGcc::new(100_000_000.0, Arc::default());
        g.rate = 3_700_000.0;
        g.queue = held.clone();
        g.update_rate(now, Usage::Normal, Some(2_800_000.0), 2_800_000.0);
        assert_eq!(g.rate, 2_800_000.0, "filled: down to what arrives");
        let mut g = ViewerGcc::new(100_000_000.0, Arc::default());
        g.rate = 3_700_000.0;
        g.queue = held;
        g.update_rate(now, Usage::Normal, Some(2_000_000.0), 2_000_000.0);
        assert_eq!(g.rate, 3_700_000.0, "far under the estimate: held");
    }

    /// A queue that has stood `queued` ms for 400 ms (after 3.5 s without one).
    fn standing_queue(queued: u64) -> QueueDelay {
        let t0 = clock_epoch() + Duration::from_secs(100);
        let mut q = QueueDelay::default();
        for ms in (0..3_900).step_by(5) {
            let extra = if ms >= 3_500 { queued } else { 0 };
            q.add(
                t0 + Duration::from_millis(ms),
                Duration::from_millis(100_000 + ms + 1_000 + extra),
            );
        }
        q
    }

    /// Spans of 1200-byte packets sent every `sent_us` and arriving every `arrived_us`.
    fn paced_spans(g: &mut ViewerGcc, t0: Instant, sent_us: u64, arrived_us: u64) {
        g.spans.clear();
        for i in 0..40u64 {
            g.spans.push_back((
                t0 + Duration::from_micros(i * sent_us),
                Duration::from_micros(i * arrived_us),
                1200,
            ));
        }
    }

    #[test]
    fn the_capacity_is_what_a_full_path_delivers_not_the_most_before_a_step_down() {
        let t0 = Instant::now();
        let mut g = ViewerGcc::new(100_000_000.0, Arc::default());
        // 3.3 Mbit/s got through (1200 bytes every 2.9 ms) before the link stepped down to
        // 1.2 (every 8 ms): the backoff measures the new link, not the old one.
        g.demonstrated = 3_300_000.0;
        g.spans.clear();
        for i in 0..120u64 {
            let (sent, arrived) = if i < 80 {
                (i * 2_900, i * 2_900)
            } else {
                (i * 2_900, 80 * 2_900 + (i - 80) * 8_000)
            };
            g.spans.push_back((
                t0 + Duration::from_micros(sent),
                Duration::from_micros(arrived),
                1200,
            ));
        }
        g.queue = standing_queue(50);
        g.update_rate(t0, Usage::Over, Some(1_300_000.0), 1_100_000.0);
        let c = g.capacity.unwrap();
        assert!((c - 1_200_000.0).abs() < 1.0, "{c}");
        // A report whose pace reads a third of that (the sender paused within it) is
        // averaged in, not taken for the path.
        paced_spans(&mut g, t0, 10_000, 24_000);
        g.update_rate(
            t0 + Duration::from_millis(100),
            Usage::Normal,
            None,
            900_000.0,
        );
        let c = g.capacity.unwrap();
        let want = 1_200_000.0 + (400_000.0 - 1_200_000.0) * CAPACITY_PACE_WEIGHT;
        assert!((c - want).abs() < 1.0, "{c} against {want}");
        // A backoff on a path that is not full (no queue stands; the trend and loss say
        // over): what it delivers is what was sent, not the capacity.
        let mut g = ViewerGcc::new(100_000_000.0, Arc::default());
        g.demonstrated = 1_100_000.0;
        paced_spans(&mut g, t0, 10_000, 10_000);
        g.loss = 0.5;
        g.losses.push_back((t0, 5, 10));
        g.update_rate(t0, Usage::Over, Some(1_000_000.0), 900_000.0);
        assert_eq!(g.capacity, Some(1_100_000.0));
        // Too few arrivals to pace (a backoff for heavy loss): the most that got through
        // stands in.
        let mut g = ViewerGcc::new(100_000_000.0, Arc::default());
        g.demonstrated = 3_300_000.0;
        g.loss = 0.5;
        g.losses.push_back((t0, 5, 10));
        g.update_rate(t0, Usage::Over, Some(1_300_000.0), 1_100_000.0);
        assert_eq!(g.capacity, Some(3_300_000.0));
    }

    #[test]
    fn in_the_first_ramp_arrivals_spreading_out_are_overuse_sooner() {
        let t0 = Instant::now();
        // 4 Mbit/s sent (1200 bytes every 2.4 ms), arriving at 0.88 of that pace.
        let spread = |g: &mut ViewerGcc| paced_spans(g, t0, 2_400, 2_727);
        let mut g = ViewerGcc::new(100_000_000.0, Arc::default());
        g.rate = 5_000_000.0;
        g.demonstrated = 3_300_000.0;
        spread(&mut g);
        assert!(g.delivered_share() > OVERUSE_SHARE && g.delivered_share() < RAMP_OVERUSE_SHARE);
        g.update_rate(t0, Usage::Normal, Some(3_500_000.0), 3_500_000.0);
        assert_eq!(
            g.rate,
            3_500_000.0 * DECREASE_FACTOR,
            "no capacity known: backoff"
        );
        assert_eq!(g.capacity, Some(3_500_000.0));
        // Once the capacity is known, the same share under it is no backoff (over it, see
        // the next test).
        let mut g = ViewerGcc::new(100_000_000.0, Arc::default());
        g.rate = 2_800_000.0;
        g.capacity = Some(3_000_000.0);
        spread(&mut g);
        g.update_rate(t0, Usage::Normal, Some(2_700_000.0), 2_700_000.0);
        assert!(g.rate >= 2_800_000.0, "{}", g.rate);
        assert!(g.last_decrease.is_none());
    }

    #[test]
    fn over_the_capacity_arrivals_spreading_out_bring_the_estimate_to_what_arrives() {
        let t0 = Instant::now();
        let mut g = ViewerGcc::new(100_000_000.0, Arc::default());
        g.capacity = Some(2_900_000.0);
        g.rate = 3_600_000.0;
        // 1200 bytes sent every 3 ms, arriving every 3.37 (a share of 0.89).
        paced_spans(&mut g, t0, 3_000, 3_370);
        assert!(g.delivered_share() > OVERUSE_SHARE && g.delivered_share() < DELIVERED_SHARE);
        g.update_rate(t0, Usage::Normal, Some(2_850_000.0), 2_850_000.0);
        assert_eq!(g.rate, 2_850_000.0);
        assert!(g.last_decrease.is_none(), "not a backoff");
        // Arrivals keeping pace: the climb goes on.
        let mut g = ViewerGcc::new(100_000_000.0, Arc::default());
        g.capacity = Some(2_900_000.0);
        g.rate = 3_600_000.0;
        g.last_update = Some(t0);
        paced_spans(&mut g, t0, 3_000, 3_000);
        g.update_rate(
            t0 + Duration::from_millis(100),
            Usage::Normal,
            Some(2_850_000.0),
            2_850_000.0,
        );
        assert!((g.rate - 3_600_000.0 - OVER_CAPACITY_STEP_BPS * 0.1).abs() < 1e-6);
    }

    #[test]
    fn near_the_capacity_growth_stays_gentle_until_more_arrives() {
        let t0 = Instant::now();
        let at = |ms: u64| t0 + Duration::from_millis(ms);
        let mut g = ViewerGcc::new(100_000_000.0, Arc::default());
        // 3 Mbit/s arrives from a full path (1200 bytes every 3.2 ms): a backoff, capacity 3.
        paced_spans(&mut g, t0, 1_600, 3_200);
        g.queue = standing_queue(50);
        g.update_rate(at(0), Usage::Over, Some(2_800_000.0), 2_800_000.0);
        assert!((g.capacity.unwrap() - 3_000_000.0).abs() < 1.0);
        assert_eq!(g.rate, 2_800_000.0 * DECREASE_FACTOR);
        g.spans.clear();
        g.queue = QueueDelay::default();
        // Long after the backoff, about the capacity arrives: gentle growth (8 %/s), not
        // 50 %/s, however far the estimate is over what arrives.
        g.update_rate(at(2_100), Usage::Normal, Some(2_700_000.0), 2_700_000.0);
        for (ms, arriving) in [(2_200, 2_700_000.0), (2_300, 3_300_000.0)] {
            let before = g.rate;
            g.update_rate(at(ms), Usage::Normal, Some(arriving), arriving);
            assert!((g.rate / before - (1.0 + GENTLE_GROWTH * 0.1)).abs() < 1e-9);
        }
        // More arrives than the capacity's band: the path may have room, but one report
        // (a big frame) does not show it; a second of them does: fast growth.
        for (ms, growth) in [
            (2_400, GENTLE_GROWTH),
            (3_000, GENTLE_GROWTH),
            (3_400, FAST_GROWTH),
        ] {
            let before = g.rate;
            g.update_rate(at(ms), Usage::Normal, Some(3_600_000.0), 3_600_000.0);
            let dt = match ms {
                2_400 => 0.1,
                3_000 => 0.6,
                _ => 0.4,
            };
            assert!(
                (g.rate / before - (1.0 + growth * dt)).abs() < 1e-9,
                "at {ms} ms"
            );
        }
        // Back within the band, the next excursion starts its second afresh.
        g.update_rate(at(3_500), Usage::Normal, Some(3_000_000.0), 3_000_000.0);
        let before = g.rate;
        g.update_rate(at(3_600), Usage::Normal, Some(3_700_000.0), 3_700_000.0);
        assert!((g.rate / before - (1.0 + GENTLE_GROWTH * 0.1)).abs() < 1e-9);
        // Far less arrives than the capacity (the encoder makes 55 % of a halved picture's
        // estimate, or a backoff measured in a draining queue): the capacity is untested,
        // growth is fast (the evidence cap keeps the estimate near what arrives).
        g.rate = 2_000_000.0;
        g.update_rate(at(3_700), Usage::Normal, Some(1_700_000.0), 1_700_000.0);
        assert!((g.rate / 2_000_000.0 - (1.0 + FAST_GROWTH * 0.1)).abs() < 1e-9);
    }

    #[test]
    fn over_the_capacity_the_estimate_creeps_up_by_a_step_not_a_share() {
        let t0 = Instant::now();
        let at = |ms: u64| t0 + Duration::from_millis(ms);
        let mut g = ViewerGcc::new(100_000_000.0, Arc::default());
        g.capacity = Some(3_000_000.0);
        g.rate = 3_000_000.0;
        let arriving = 2_900_000.0;
        g.update_rate(at(0), Usage::Normal, Some(arriving), arriving);
        // About the capacity arrives and the estimate is over it: 50 kbit/s a second
        // (8 %/s would be 240).
        for i in 1..=10 {
            let before = g.rate;
            g.update_rate(at(i * 100), Usage::Normal, Some(arriving), arriving);
            assert!((g.rate - before - OVER_CAPACITY_STEP_BPS * 0.1).abs() < 1e-6);
        }
        assert!((g.rate - 3_050_000.0).abs() < 1e-6);
        // Past the reach with no queue: the path has room, gentle growth again.
        g.rate = 3_000_000.0 * (1.0 + OVER_CAPACITY_REACH);
        let before = g.rate;
        g.update_rate(at(1_100), Usage::Normal, Some(arriving), arriving);
        assert!((g.rate / before - (1.0 + GENTLE_GROWTH * 0.1)).abs() < 1e-9);
        // Under the capacity: gentle growth up to it.
        g.rate = 2_500_000.0;
        g.update_rate(at(1_200), Usage::Normal, Some(arriving), arriving);
        assert!((g.rate / 2_500_000.0 - (1.0 + GENTLE_GROWTH * 0.1)).abs() < 1e-9);
        // More arrives than the capacity's band for a second: fast growth, whatever the
        // estimate.
        g.update_rate(at(1_300), Usage::Normal, Some(3_600_000.0), 3_600_000.0);
        g.rate = 3_300_000.0;
        g.update_rate(at(2_300), Usage::Normal, Some(3_600_000.0), 3_600_000.0);
        assert!((g.rate / 3_300_000.0 - (1.0 + FAST_GROWTH * 1.0)).abs() < 1e-9);
    }

    #[test]
    fn backs_off_on_overuse_then_recovers_in_seconds_not_minutes() {
        let t0 = Instant::now();
        let at = |ms: u64| t0 + Duration::from_millis(ms);
        let out = Arc::new(PathEstimate::default());
        let mut g = ViewerGcc::new(100_000_000.0, out);
        // 8 Mbit/s arriving, no queueing: the rate sits at the evidence cap.
        let acked = 8_000_000.0;
        for i in 0..10 {
            g.update_rate(at(i * 100), Usage::Normal, Some(acked), acked);
        }
        assert_eq!(g.rate, acked * ACKED_HEADROOM + PROBE_BPS);
        // Overuse from a shaky clock (arrivals as far apart as departures): no backoff.
        let spaced = |g: &mut ViewerGcc, arrival_gap_ms: u64| {
            g.spans.clear();
            for i in 0..20u64 {
                g.spans.push_back((
                    t0 + Duration::from_millis(i * 10),
                    Duration::from_millis(i * arrival_gap_ms),
                    1200,
                ));
            }
        };
        spaced(&mut g, 10);
        g.update_rate(at(950), Usage::Over, Some(acked), acked);
        assert_eq!(
            g.rate,
            acked * ACKED_HEADROOM + PROBE_BPS,
            "jitter is not congestion"
        );
        // The link drops to 2 Mbit/s: arrivals spread out, the rate follows what arrives.
        spaced(&mut g, 40);
        g.update_rate(at(1_000), Usage::Over, Some(2_000_000.0), 2_000_000.0);
        assert_eq!(g.rate, 2_000_000.0 * DECREASE_FACTOR);
        // A second overuse within DECREASE_INTERVAL is the same event (the half second of
        // what arrived still holds the 2 Mbit/s).
        g.update_rate(at(1_100), Usage::Over, Some(1_000_000.0), 2_000_000.0);
        assert_eq!(g.rate, 2_000_000.0 * DECREASE_FACTOR);
        // Arrivals as far apart as departures again.
        spaced(&mut g, 10);
        // Gentle near the backoff…
        g.update_rate(at(2_000), Usage::Normal, Some(1_700_000.0), 1_700_000.0);
        assert!(g.rate < 1_900_000.0, "{}", g.rate);
        // …then the link is back: from 3 s after the backoff, +50 %/s, as far as the
        // evidence (what arrives, which follows the rate) allows.
        let mut ms = 2_000;
        while g.rate < 6_000_000.0 {
            ms += 100;
            let arriving = g.rate;
            g.update_rate(at(ms), Usage::Normal, Some(arriving), arriving);
            assert!(ms < 8_000, "still {} after {} ms", g.rate, ms - 1_000);
        }
        // A path that delivers far less than is sent is overused, whatever the trend says.
        let before = g.rate;
        spaced(&mut g, 20);
        g.update_rate(
            at(ms + 1_000),
            Usage::Normal,
            Some(3_000_000.0),
            3_000_000.0,
        );
        assert_eq!(g.rate, 3_000_000.0 * DECREASE_FACTOR, "from {before}");
        // The path now carries 1 Mbit/s: a backoff measures it…
        spaced(&mut g, 40);
        let ms = ms + 2_000;
        g.update_rate(at(ms), Usage::Over, Some(1_000_000.0), 1_000_000.0);
        assert_eq!(g.rate, 1_000_000.0 * DECREASE_FACTOR);
        // …a screen that then sends 600 kbit/s grows it only as far as the evidence (with a
        // measured path, not the probe allowance: behind 1 Mbit/s that let it reach 2.2)…
        spaced(&mut g, 10);
        for i in 1..=50 {
            g.update_rate(at(ms + i * 100), Usage::Normal, Some(600_000.0), 600_000.0);
        }
        assert_eq!(g.rate, 600_000.0 * ACKED_HEADROOM + MEASURED_PROBE_BPS);
        // …and one that stops moving does not talk it down under what the path carried.
        let high = 2_000_000.0;
        for i in 51..=55 {
            g.update_rate(at(ms + i * 100), Usage::Normal, Some(high), high);
        }
        for i in 56..=100 {
            g.update_rate(at(ms + i * 100), Usage::Normal, Some(50_000.0), 50_000.0);
        }
        assert_eq!(
            g.rate,
            high * DEMONSTRATED_SHARE + MEASURED_PROBE_BPS,
            "a still screen"
        );
    }
}
