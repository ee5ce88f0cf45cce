//! Keyframe requests: an interceptor that hands PLI/FIR to the application, and the
//! policy that decides how many of them reach the encoder.
//!
//! An IDR costs 10-30 times a P-frame, and every viewer receives it. Without a limit one
//! viewer sending PLIs as fast as it can makes the encoder send nothing but keyframes
//! (450 PLIs once made 274 IDRs in 5 s of a still screen). [`KeyframePolicy`] grants
//! a *loss* request (PLI/FIR, a viewer falling behind) at most once per
//! [`VIEWER_MIN_INTERVAL`] per viewer and once per [`SHARE_MIN_INTERVAL`] for the whole
//! share (longer when keyframes are big for the slowest path: see
//! [`KEYFRAME_BUDGET_SHARE`]), and a *join* request (a new viewer) at most once per
//! [`JOIN_MIN_INTERVAL`]. A
//! request that comes too soon is never dropped: it is deferred to the first moment
//! allowed, and any number of deferred requests become one keyframe (one IDR serves
//! every viewer).
//!
//! The PLI/FIR interceptor:
//!
//! webrtc-rs 0.21 stops inbound RTCP at the end of its interceptor chain unless an
//! interceptor marks it `DeliverToApplication`; then `TrackLocal::poll` yields it. This
//! one does so for Picture Loss Indications and Full Intra Requests only (the pattern of
//! webrtc-rs's `rtcp-processing` example).

use std::collections::VecDeque;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use rtc::interceptor::{Attribute, Interceptor, Packet, StreamInfo, TaggedPacket};
use rtc::rtcp::payload_feedbacks::full_intra_request::FullIntraRequest;
use rtc::rtcp::payload_feedbacks::picture_loss_indication::PictureLossIndication;
use rtc::sansio::Protocol;
use rtc::shared::error::Error;

use crate::video::MediaFanout;

/// A viewer's loss requests are granted at most this often.
pub const VIEWER_MIN_INTERVAL: Duration = Duration::from_millis(500);
/// Loss requests from all viewers together are granted at most this often.
pub const SHARE_MIN_INTERVAL: Duration = Duration::from_secs(1);
/// Loss keyframes may take at most this share of the slowest viewer's path: behind a
/// congested link every frame loses packets and every viewer asks for a keyframe each
/// second; at 400 kbit/s one 73 kB keyframe a second is more than the whole link, so the
/// losses (and the requests) never end. Loss keyframes are spaced by their size over this
/// share of the slowest path estimate…
pub const KEYFRAME_BUDGET_SHARE: f64 = 0.5;
/// …but never further apart than this (a viewer that lost a frame sees nothing new until
/// the next keyframe).
pub const MAX_LOSS_SPACING: Duration = Duration::from_secs(2);
/// Join requests (a viewer starting) are granted at most this often: a newcomer should
/// see a picture at once, and joining needs the code and a whole WebRTC handshake.
pub const JOIN_MIN_INTERVAL: Duration = Duration::from_millis(200);

/// Why a keyframe is wanted.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum KeyframeReason {
    /// A viewer is starting (answered, or just connected).
    Join,
    /// A viewer lost data: PLI/FIR, or it fell behind the fan-out.
    Loss,
}

/// One viewer's part of the policy.
#[derive(Debug, Default)]
pub struct ViewerKeyframeState {
    /// When this viewer's last loss request was (or will be) granted.
    last_granted: Option<Instant>,
    /// This viewer's loss requests are at least this far apart too: a hopeless viewer's
    /// own link must carry one keyframe before it asks for the next (see
    /// [`ViewerKeyframes::set_own_spacing`]).
    own_spacing: Duration,
}

/// What to do with a request.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum KeyframeDecision {
    /// Ask the encoder now.
    Now,
    /// A keyframe is due at this time (call [`KeyframePolicy::handle_timeout`] then);
    /// possibly one already deferred, which this request joins.
    At(Instant),
}

/// The share-wide keyframe policy. Pure: the caller passes the time and runs the timer.
#[derive(Debug)]
pub struct KeyframePolicy {
    viewer_min: Duration,
    share_min: Duration,
    join_min: Duration,
    /// When the encoder was last asked.
    last_granted: Option<Instant>,
    /// A deferred request: when it is due.
    pending: Option<Instant>,
    /// Loss keyframes are at least this far apart too (see [`KEYFRAME_BUDGET_SHARE`]).
    loss_spacing: Duration,
}

impl Default for KeyframePolicy {
    fn default() -> Self {
        Self::new(VIEWER_MIN_INTERVAL, SHARE_MIN_INTERVAL, JOIN_MIN_INTERVAL)
    }
}

impl KeyframePolicy {
    pub fn new(viewer_min: Duration, share_min: Duration, join_min: Duration) -> Self {
        Self {
            viewer_min,
            share_min,
            join_min,
            last_granted: None,
            pending: None,
            loss_spacing: Duration::ZERO,
        }
    }

    /// Spaces loss keyframes at least this far apart (on top of the share's minimum).
    pub fn set_loss_spacing(&mut self, spacing: Duration) {
        self.loss_spacing = spacing;
    }

    /// A request from `viewer` at `now`.
    pub fn handle_request(
        &mut self,
        viewer: &mut ViewerKeyframeState,
        reason: KeyframeReason,
        now: Instant,
    ) -> KeyframeDecision {
        let after_last = |min: Duration| self.last_granted.map_or(now, |t| (t + min).max(now));
        let loss_due = || {
            let own = viewer
                .last_granted
                .map_or(now, |t| t + self.viewer_min.max(viewer.own_spacing));
            after_last(self.share_min.max(self.loss_spacing)).max(own)
        };
        let due = match (self.pending, reason) {
            // A keyframe is already coming: it serves this viewer too (an IDR goes to all);
            // sooner if this viewer may have one sooner (the pending one may wait for a
            // slow viewer's own spacing).
            (Some(pending), KeyframeReason::Loss) => pending.min(loss_due()),
            // A newcomer need not wait for a deferred loss keyframe.
            (Some(pending), KeyframeReason::Join) => pending.min(after_last(self.join_min)),
            (None, KeyframeReason::Join) => after_last(self.join_min),
            (None, KeyframeReason::Loss) => loss_due(),
        };
        if reason == KeyframeReason::Loss {
            viewer.last_granted = Some(due);
        }
        if due <= now {
            self.pending = None;
            self.last_granted = Some(now);
            KeyframeDecision::Now
        } else {
            self.pending = Some(due);
            KeyframeDecision::At(due)
        }
    }

    /// When the deferred keyframe is due, if one is.
    pub fn poll_timeout(&self) -> Option<Instant> {
        self.pending
    }

    /// The timer fired: true if the encoder must be asked now.
    pub fn handle_timeout(&mut self, now: Instant) -> bool {
        match self.pending {
            Some(due) if due <= now => {
                self.pending = None;
                self.last_granted = Some(now);
                true
            }
            _ => false,
        }
    }
}

/// The policy's thin async driver for one share: asks `video` for keyframes as the policy
/// allows, with one timer task for a deferred request.
pub struct KeyframeGate {
    video: Arc<MediaFanout>,
    policy: Mutex<KeyframePolicy>,
    /// Requests that reached the encoder (the rest were merged into them).
    pub granted: std::sync::atomic::AtomicU64,
}

impl KeyframeGate {
    pub fn new(video: Arc<MediaFanout>, policy: KeyframePolicy) -> Arc<Self> {
        Arc::new(Self {
            video,
            policy: Mutex::new(policy),
            granted: Default::default(),
        })
    }

    /// A viewer's handle.
    pub fn viewer(self: &Arc<Self>) -> Arc<ViewerKeyframes> {
        Arc::new(ViewerKeyframes {
            gate: self.clone(),
            state: Mutex::new(ViewerKeyframeState::default()),
        })
    }

    fn request(self: &Arc<Self>, viewer: &Mutex<ViewerKeyframeState>, reason: KeyframeReason) {
        let now = Instant::now();
        let decision = {
            let mut state = viewer.lock().unwrap_or_else(|e| e.into_inner());
            let mut policy = self.policy.lock().unwrap_or_else(|e| e.into_inner());
            policy.set_loss_spacing(self.video.keyframe_spacing());
            let timer = policy.poll_timeout();
            match policy.handle_request(&mut state, reason, now) {
                KeyframeDecision::Now => Some(None),
                // A timer is already set for this time or earlier: nothing to do. (The
                // due time only moves earlier; a later timer then finds nothing due.)
                KeyframeDecision::At(due) if timer.is_some_and(|t| t <= due) => None,
                KeyframeDecision::At(due) => Some(Some(due)),
            }
        };
        match decision {
            Some(None) => self.ask(),
            Some(Some(due)) => {
                let gate = self.clone();
                tokio::spawn(async move {
                    tokio::time::sleep_until(due.into()).await;
                    let fire = gate
                        .policy
                        .lock()
                        .unwrap_or_else(|e| e.into_inner())
                        .handle_timeout(Instant::now());
                    if fire {
                        gate.ask();
                    }
                });
            }
            None => {}
        }
    }

    fn ask(&self) {
        self.granted
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        self.video.request_keyframe();
    }
}

/// One viewer's way to ask for keyframes (see [`KeyframePolicy`]).
pub struct ViewerKeyframes {
    gate: Arc<KeyframeGate>,
    state: Mutex<ViewerKeyframeState>,
}

impl ViewerKeyframes {
    /// Spaces this viewer's loss requests at least `spacing` apart (zero: the share's
    /// rules alone). A viewer too slow for the encoder (hopeless) gets a keyframe only when
    /// its budget lets one through and then nothing until its link has carried it; asking
    /// every second, as it did, made an IDR a second for every viewer.
    pub fn set_own_spacing(&self, spacing: Duration) {
        self.state
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .own_spacing = spacing;
    }

    pub fn request(&self, reason: KeyframeReason) {
        let outstanding = self.gate.video.keyframe_outstanding();
        tracing::debug!(?reason, outstanding, "keyframe wanted");
        if outstanding {
            // The keyframe already asked for serves this viewer too.
            return;
        }
        self.gate.request(&self.state, reason);
    }
}

/// Where in the chain it sits (after the default interceptors).
pub const SLOT: usize = 14_000;

#[derive(Default)]
pub struct KeyframeRequestForwarder {
    read_queue: VecDeque<TaggedPacket>,
    write_queue: VecDeque<TaggedPacket>,
}

/// Whether an RTCP packet asks for a keyframe.
pub fn is_keyframe_request(packet: &dyn rtc::rtcp::Packet) -> bool {
    let any = packet.as_any();
    any.is::<PictureLossIndication>() || any.is::<FullIntraRequest>()
}

impl Protocol<TaggedPacket, TaggedPacket, ()> for KeyframeRequestForwarder {
    type Rout = TaggedPacket;
    type Wout = TaggedPacket;
    type Eout = ();
    type Error = Error;
    type Time = Instant;

    fn handle_read(&mut self, mut msg: TaggedPacket) -> Result<(), Self::Error> {
        if let Packet::Rtcp(packets) = &msg.message.packet {
            let requests: Vec<Box<dyn rtc::rtcp::Packet>> = packets
                .iter()
                .filter(|p| is_keyframe_request(p.as_ref()))
                .cloned()
                .collect();
            if requests.is_empty() {
                return Ok(());
            }
            msg.message.packet = Packet::Rtcp(requests);
            msg.message.add(Attribute::DeliverToApplication);
        }
        self.read_queue.push_back(msg);
        Ok(())
    }

    fn poll_read(&mut self) -> Option<Self::Rout> {
        self.read_queue.pop_front()
    }

    fn handle_write(&mut self, msg: TaggedPacket) -> Result<(), Self::Error> {
        self.write_queue.push_back(msg);
        Ok(())
    }

    fn poll_write(&mut self) -> Option<Self::Wout> {
        self.write_queue.pop_front()
    }
}

impl Interceptor for KeyframeRequestForwarder {
    fn bind_local_stream(&mut self, _info: &StreamInfo) {}
    fn unbind_local_stream(&mut self, _info: &StreamInfo) {}
    fn bind_remote_stream(&mut self, _info: &StreamInfo) {}
    fn unbind_remote_stream(&mut self, _info: &StreamInfo) {}
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ms(n: u64) -> Duration {
        Duration::from_millis(n)
    }

    /// Drives the policy like the gate does and returns when the encoder was asked.
    fn simulate(
        policy: &mut KeyframePolicy,
        requests: &[(u64, usize, KeyframeReason)],
        viewers: usize,
        until_ms: u64,
    ) -> Vec<u64> {
        let t0 = Instant::now();
        let mut states: Vec<ViewerKeyframeState> =
            (0..viewers).map(|_| Default::default()).collect();
        let mut asked = Vec::new();
        let mut next = 0;
        for t in 0..=until_ms {
            let now = t0 + ms(t);
            if policy.poll_timeout().is_some_and(|due| due <= now) && policy.handle_timeout(now) {
                asked.push(t);
            }
            while next < requests.len() && requests[next].0 == t {
                let (_, v, reason) = requests[next];
                if policy.handle_request(&mut states[v], reason, now) == KeyframeDecision::Now {
                    asked.push(t);
                }
                next += 1;
            }
        }
        asked
    }

    #[test]
    fn a_pli_flood_from_one_viewer_makes_one_keyframe_a_second() {
        let mut p = KeyframePolicy::default();
        // A PLI every 10 ms for 5 s.
        let flood: Vec<_> = (0..500)
            .map(|i| (i * 10, 0, KeyframeReason::Loss))
            .collect();
        let asked = simulate(&mut p, &flood, 1, 5000);
        assert_eq!(asked, vec![0, 1000, 2000, 3000, 4000, 5000]);
    }

    #[test]
    fn many_flooding_viewers_share_the_same_budget() {
        let mut p = KeyframePolicy::default();
        let flood: Vec<_> = (0..500u64)
            .map(|i| (i * 10, (i % 8) as usize, KeyframeReason::Loss))
            .collect();
        let asked = simulate(&mut p, &flood, 8, 4999);
        assert_eq!(asked.len(), 5, "{asked:?}");
    }

    #[test]
    fn a_request_too_soon_is_deferred_never_dropped() {
        let mut p = KeyframePolicy::default();
        let asked = simulate(
            &mut p,
            &[(0, 0, KeyframeReason::Loss), (300, 1, KeyframeReason::Loss)],
            2,
            3000,
        );
        assert_eq!(
            asked,
            vec![0, 1000],
            "viewer 1's loss gets the next allowed keyframe"
        );
        let mut p = KeyframePolicy::default();
        let asked = simulate(
            &mut p,
            &[
                (0, 0, KeyframeReason::Loss),
                (1700, 0, KeyframeReason::Loss),
            ],
            1,
            3000,
        );
        assert_eq!(asked, vec![0, 1700], "spaced requests pass at once");
    }

    #[test]
    fn one_viewer_waits_its_own_interval_even_when_the_share_is_quiet() {
        let mut p = KeyframePolicy::new(ms(500), ms(100), ms(50));
        let asked = simulate(
            &mut p,
            &[(0, 0, KeyframeReason::Loss), (200, 0, KeyframeReason::Loss)],
            1,
            2000,
        );
        assert_eq!(asked, vec![0, 500]);
    }

    #[test]
    fn a_hopeless_viewer_asks_no_more_often_than_its_link_carries_a_keyframe() {
        let mut p = KeyframePolicy::default();
        let t0 = Instant::now();
        let mut slow = ViewerKeyframeState {
            own_spacing: ms(2_500),
            ..Default::default()
        };
        let mut fast = ViewerKeyframeState::default();
        assert_eq!(
            p.handle_request(&mut slow, KeyframeReason::Loss, t0),
            KeyframeDecision::Now
        );
        // Asking every second (over its budget), it gets the next one 2.5 s later, not 1 s.
        assert_eq!(
            p.handle_request(&mut slow, KeyframeReason::Loss, t0 + ms(1_000)),
            KeyframeDecision::At(t0 + ms(2_500))
        );
        assert!(!p.handle_timeout(t0 + ms(1_000)));
        // A fast viewer's loss does not wait for the slow one's spacing: the share's own.
        assert_eq!(
            p.handle_request(&mut fast, KeyframeReason::Loss, t0 + ms(1_200)),
            KeyframeDecision::Now
        );
        // The flood of a hopeless viewer: one keyframe per 2.5 s.
        let mut p = KeyframePolicy::default();
        let mut states = [ViewerKeyframeState {
            own_spacing: ms(2_500),
            ..Default::default()
        }];
        let mut asked = Vec::new();
        for t in 0..=6_000u64 {
            let now = t0 + ms(t);
            if p.poll_timeout().is_some_and(|due| due <= now) && p.handle_timeout(now) {
                asked.push(t);
            }
            if t % 1_000 == 0
                && p.handle_request(&mut states[0], KeyframeReason::Loss, now)
                    == KeyframeDecision::Now
            {
                asked.push(t);
            }
        }
        assert_eq!(asked, vec![0, 2_500, 5_000]);
    }

    #[test]
    fn joins_are_quick_and_pull_a_deferred_keyframe_forward() {
        let mut p = KeyframePolicy::default();
        let asked = simulate(
            &mut p,
            &[
                (0, 0, KeyframeReason::Loss),
                (100, 0, KeyframeReason::Loss),
                (250, 1, KeyframeReason::Join),
                (260, 1, KeyframeReason::Join),
            ],
            2,
            3000,
        );
        // The join at 250 is served at once, and that keyframe serves the loss deferred
        // at 100 too; the second join waits the join interval.
        assert_eq!(asked, vec![0, 250, 450]);
    }

    #[test]
    fn big_keyframes_on_a_slow_path_are_spaced_by_their_cost() {
        // 73 kB keyframes, 350 kbit/s slowest path: 584 kbit / (0.5 x 350 kbit/s) = 3.3 s
        // (more than MAX_LOSS_SPACING: the policy takes what it is given).
        let mut p = KeyframePolicy::default();
        p.set_loss_spacing(Duration::from_secs_f64(73_000.0 * 8.0 / (0.5 * 350_000.0)));
        let flood: Vec<_> = (0..800)
            .map(|i| (i * 10, 0, KeyframeReason::Loss))
            .collect();
        let asked = simulate(&mut p, &flood, 1, 8000);
        assert_eq!(asked, vec![0, 3338, 6676]);
        // A newcomer is not kept waiting by it.
        let mut p = KeyframePolicy::default();
        p.set_loss_spacing(Duration::from_secs(3));
        let asked = simulate(
            &mut p,
            &[(0, 0, KeyframeReason::Loss), (500, 1, KeyframeReason::Join)],
            2,
            4000,
        );
        assert_eq!(asked, vec![0, 500]);
    }

    #[test]
    fn a_join_flood_is_limited_too() {
        let mut p = KeyframePolicy::default();
        let joins: Vec<_> = (0..100)
            .map(|i| (i * 10, 0, KeyframeReason::Join))
            .collect();
        let asked = simulate(&mut p, &joins, 1, 1000);
        assert_eq!(asked, vec![0, 200, 400, 600, 800, 1000]);
    }
}
