//! Fan-out of one encoded stream (video or audio) to every viewer.
//!
//! The encoder produces each access unit once; it is cut into RTP payloads once
//! (H.264 FU-A/STAP-A, RFC 6184) and shared as `Arc<PayloadedUnit>` through a bounded
//! broadcast channel. Each viewer's task only stamps its own SSRC, sequence numbers and
//! payload type. A viewer that falls behind loses the oldest units (never blocks the
//! encoder), then waits for the next keyframe and asks for one.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use bytes::Bytes;
use rtc::rtp::codec::h264::H264Payloader;
use rtc::rtp::packetizer::Payloader;
use tokio::sync::broadcast;
use types::{PayloadType, Ssrc, AUDIO_CLOCK_HZ, VIDEO_CLOCK_HZ};

pub use types::RTP_PAYLOAD_MTU;
/// Units kept for slow viewers before they start losing the oldest (~0.25 s at 30 fps).
pub const FANOUT_DEPTH: usize = 8;
/// Opus packets kept for slow viewers: 200 ms of 10 ms frames.
pub const AUDIO_FANOUT_DEPTH: usize = 20;

/// One encoded H.264 access unit or Opus packet, as the encoder hands it over.
#[derive(Clone, Debug)]
pub struct MediaUnit {
    pub data: Bytes,
    pub capture_time: Instant,
    /// Decodable on its own (always true for audio).
    pub keyframe: bool,
}

enum Payloading {
    /// RFC 6184: FU-A fragments, STAP-A for parameter sets.
    H264(Mutex<H264Payloader>),
    /// RFC 7587: one Opus packet per RTP packet.
    Opus,
}

/// One access unit or Opus packet, payloaded for RTP, shared by all viewers.
#[derive(Debug)]
pub struct PayloadedUnit {
    pub payloads: Vec<Bytes>,
    /// Capture time on the stream's RTP clock, from the fan-out's epoch.
    pub rtp_time: u32,
    pub keyframe: bool,
    pub capture_time: Instant,
    /// Capture time on the wall clock as a 64-bit NTP timestamp (UQ32.32), for the
    /// abs-capture-time header extension.
    pub capture_ntp: u64,
}

/// Seconds from the NTP epoch (1900) to the Unix epoch (1970).
const NTP_UNIX_OFFSET_SECS: u64 = 2_208_988_800;

/// `t` (since the Unix epoch) as a 64-bit NTP timestamp: seconds in the high 32 bits, the
/// fraction of a second in the low 32.
pub fn ntp_time(t: Duration) -> u64 {
    let secs = t.as_secs() + NTP_UNIX_OFFSET_SECS;
    let frac = (u64::from(t.subsec_nanos()) << 32) / 1_000_000_000;
    (secs << 32) | frac
}

/// The RTP header extensions Porthole sends, by URI.
pub mod extension {
    /// Tells the receiver how long it may hold a frame before rendering it
    /// (min = max = 0: render at once, no jitter buffer smoothing).
    pub const PLAYOUT_DELAY: &str = "http://www.webrtc.org/experiments/rtp-hdrext/playout-delay";
    /// The true capture instant of the media in the packet (NTP time), so receivers can
    /// measure capture-to-render delay and sync sound and picture on capture time.
    pub const ABS_CAPTURE_TIME: &str =
        "http://www.webrtc.org/experiments/rtp-hdrext/abs-capture-time";
}

/// The ids a viewer negotiated for the header extensions we send (`None`: not negotiated,
/// not sent).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct ExtensionIds {
    pub playout_delay: Option<u8>,
    pub abs_capture_time: Option<u8>,
}

impl ExtensionIds {
    /// Picks our extensions out of a sender's negotiated `(uri, id)` pairs. Ids outside the
    /// one-byte range (RFC 8285: 1-14) are not used.
    pub fn from_negotiated<'a>(pairs: impl IntoIterator<Item = (&'a str, u16)>) -> Self {
        let mut ids = Self::default();
        for (uri, id) in pairs {
            let id = u8::try_from(id).ok().filter(|id| (1..=14).contains(id));
            match uri {
                extension::PLAYOUT_DELAY => ids.playout_delay = id,
                extension::ABS_CAPTURE_TIME => ids.abs_capture_time = id,
                _ => {}
            }
        }
        ids
    }
}

/// Playout delay min = max = 0 (12 bits each, units of 10 ms): render at once.
const PLAYOUT_DELAY_ZERO: [u8; 3] = [0, 0, 0];

/// Who to tell when a keyframe is needed (the encoder's request flag).
pub type KeyframeRequester = Arc<dyn Fn() + Send + Sync>;

/// How long an asked-for keyframe counts as coming (the encoder answers in one frame time,
/// or an IDR's encoding time).
pub const KEYFRAME_OUTSTANDING: Duration = Duration::from_millis(500);

/// One stream's fan-out: [`MediaFanout::video`] (H.264) or [`MediaFanout::audio`] (Opus).
pub struct MediaFanout {
    tx: broadcast::Sender<Arc<PayloadedUnit>>,
    payloading: Payloading,
    clock_hz: u64,
    epoch: Instant,
    /// `epoch` on the wall clock (since the Unix epoch), for NTP capture times.
    epoch_wall: Duration,
    request_keyframe: KeyframeRequester,
    pub units_published: AtomicU64,
    pub keyframes_requested: AtomicU64,
    /// Units a viewer's send budget (its path estimate) did not let through.
    pub units_over_budget: AtomicU64,
    /// Units a viewer's send task fell behind on (the fan-out's queue moved past them while
    /// it was still pacing earlier ones out, its link slower than the frames come): skipped,
    /// it resumes at a keyframe.
    pub units_behind: AtomicU64,
    /// The path estimates of the viewers watching (congestion control).
    paths: Mutex<Vec<std::sync::Weak<crate::cc::PathEstimate>>>,
    /// Woken when a viewer's path is added: the encoder's target should take it in before
    /// the viewer's first keyframe is made (made at the configured 8 Mbit/s for a viewer
    /// whose path starts at 1.5, the two 1080p join keyframes were 164 and 127 kB, and
    /// openh264's rate control then starved the frames after them).
    pub paths_changed: tokio::sync::Notify,
    /// When a keyframe was last asked for, if it is not published yet.
    keyframe_asked: Mutex<Option<Instant>>,
    /// Bytes of the last keyframe published (what the next one will likely cost).
    pub last_keyframe_bytes: AtomicU64,
    /// What the viewers' NACKs got (all viewers together).
    pub resends: Arc<crate::nack::ResendStats>,
}

/// `epoch` (an instant in the past or now) on the wall clock.
fn wall_time_of(epoch: Instant) -> Duration {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap_or_default()
        .saturating_sub(epoch.elapsed())
}

impl MediaFanout {
    /// An H.264 fan-out; `request_keyframe` asks the encoder for a keyframe.
    pub fn video(epoch: Instant, request_keyframe: KeyframeRequester) -> Arc<Self> {
        let payloading = Payloading::H264(Mutex::new(H264Payloader::default()));
        Self::new(
            epoch,
            payloading,
            VIDEO_CLOCK_HZ,
            FANOUT_DEPTH,
            request_keyframe,
        )
    }

    /// An Opus fan-out. `epoch` must be the video's, so both RTP clocks share an origin.
    pub fn audio(epoch: Instant) -> Arc<Self> {
        let no_keyframes = Arc::new(|| {});
        Self::new(
            epoch,
            Payloading::Opus,
            AUDIO_CLOCK_HZ,
            AUDIO_FANOUT_DEPTH,
            no_keyframes,
        )
    }

    fn new(
        epoch: Instant,
        payloading: Payloading,
        clock_hz: u32,
        depth: usize,
        request_keyframe: KeyframeRequester,
    ) -> Arc<Self> {
        let (tx, _) = broadcast::channel(depth);
        Arc::new(Self {
            tx,
            payloading,
            clock_hz: u64::from(clock_hz),
            epoch,
            epoch_wall: wall_time_of(epoch),
            request_keyframe,
            units_published: AtomicU64::new(0),
            keyframes_requested: AtomicU64::new(0),
            units_over_budget: AtomicU64::new(0),
            units_behind: AtomicU64::new(0),
            paths: Mutex::new(Vec::new()),
            paths_changed: tokio::sync::Notify::new(),
            keyframe_asked: Mutex::new(None),
            last_keyframe_bytes: AtomicU64::new(0),
            resends: Arc::default(),
        })
    }

    pub fn is_audio(&self) -> bool {
        matches!(self.payloading, Payloading::Opus)
    }

    /// The RTP time of `t` on this stream's clock (wraps, as RTP time does).
    pub fn rtp_time(&self, t: Instant) -> u32 {
        let micros = t.saturating_duration_since(self.epoch).as_micros() as u64;
        (micros * self.clock_hz / 1_000_000) as u32
    }

    /// The wall-clock time of `t` as an NTP timestamp.
    pub fn ntp_time(&self, t: Instant) -> u64 {
        ntp_time(self.epoch_wall + t.saturating_duration_since(self.epoch))
    }

    /// Publishes one access unit to every viewer. Never blocks; callable from any thread.
    pub fn publish(&self, sample: MediaUnit) {
        let payloads = match &self.payloading {
            Payloading::H264(payloader) => {
                let mut payloader = payloader.lock().unwrap_or_else(|e| e.into_inner());
                match payloader.payload(RTP_PAYLOAD_MTU, &sample.data) {
                    Ok(p) => p,
                    Err(e) => {
                        tracing::warn!("cannot payload an H.264 access unit: {e}");
                        return;
                    }
                }
            }
            Payloading::Opus => vec![sample.data.clone()],
        };
        if payloads.is_empty() {
            return;
        }
        let unit = Arc::new(PayloadedUnit {
            payloads,
            rtp_time: self.rtp_time(sample.capture_time),
            keyframe: sample.keyframe,
            capture_time: sample.capture_time,
            capture_ntp: self.ntp_time(sample.capture_time),
        });
        self.units_published.fetch_add(1, Ordering::Relaxed);
        if sample.keyframe {
            self.last_keyframe_bytes
                .store(sample.data.len() as u64, Ordering::Relaxed);
            *self
                .keyframe_asked
                .lock()
                .unwrap_or_else(|e| e.into_inner()) = None;
        }
        // No receivers is fine: nobody is watching.
        let _ = self.tx.send(unit);
    }

    pub fn subscribe(&self) -> broadcast::Receiver<Arc<PayloadedUnit>> {
        self.tx.subscribe()
    }

    /// Asks the encoder for a keyframe (a viewer joined, lost packets, or sent PLI/FIR).
    pub fn request_keyframe(&self) {
        if self.is_audio() {
            return;
        }
        self.keyframes_requested.fetch_add(1, Ordering::Relaxed);
        *self
            .keyframe_asked
            .lock()
            .unwrap_or_else(|e| e.into_inner()) = Some(Instant::now());
        (self.request_keyframe)();
    }

    /// Whether a keyframe was asked for less than [`KEYFRAME_OUTSTANDING`] ago and is not
    /// published yet: it will serve any viewer subscribed by then, so a request now needs
    /// no keyframe of its own. (A viewer connecting 100 ms after its answer asked again
    /// before the first keyframe was out, and got a second 1080p IDR 150 ms after it.)
    pub fn keyframe_outstanding(&self) -> bool {
        self.keyframe_asked
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .is_some_and(|asked| asked.elapsed() < KEYFRAME_OUTSTANDING)
    }

    pub fn viewers(&self) -> usize {
        self.tx.receiver_count()
    }

    /// Counts `path` among the viewers' estimates (for as long as it lives).
    pub fn watch_path(&self, path: &Arc<crate::cc::PathEstimate>) {
        let mut paths = self.paths.lock().unwrap_or_else(|e| e.into_inner());
        paths.retain(|p| p.strong_count() > 0);
        paths.push(Arc::downgrade(path));
        drop(paths);
        self.paths_changed.notify_one();
    }

    /// How far apart loss keyframes must be for the last keyframe's size to take at most
    /// [`crate::keyframe::KEYFRAME_BUDGET_SHARE`] of the slowest path the encoder serves
    /// (not a hopeless one: see [`crate::cc::HOPELESS_RATIO`]); zero when nothing is known.
    pub fn keyframe_spacing(&self) -> Duration {
        let bits = self.last_keyframe_bytes.load(Ordering::Relaxed) as f64 * 8.0;
        // The slowest viewer the encoder serves (a hopeless one resyncs on its own budget).
        let Some(slowest) = crate::cc::slowest_served(&self.path_estimates()) else {
            return Duration::ZERO;
        };
        let secs = bits / (slowest as f64 * crate::keyframe::KEYFRAME_BUDGET_SHARE);
        Duration::from_secs_f64(secs.min(crate::keyframe::MAX_LOSS_SPACING.as_secs_f64()))
    }

    /// Whether a viewer with this path estimate is one the encoder is sized for (not
    /// hopeless beside the fastest: see [`crate::cc::HOPELESS_RATIO`]).
    pub fn serves(&self, estimate_bps: u64) -> bool {
        crate::cc::is_served(estimate_bps, &self.path_estimates())
    }

    /// What the live viewers' paths leave for the media, bits per second: each estimate less
    /// its retransmissions (see [`crate::cc::PathEstimate::media_bps`]). The encoder aims
    /// at these.
    pub fn media_estimates(&self) -> Vec<u64> {
        let now = Instant::now();
        self.live_paths().iter().map(|p| p.media_bps(now)).collect()
    }

    /// Whether a live viewer's path is congested now (see
    /// [`crate::cc::PathEstimate::congested`]).
    pub fn congested(&self) -> bool {
        self.live_paths().iter().any(|p| p.congested())
    }

    fn live_paths(&self) -> Vec<Arc<crate::cc::PathEstimate>> {
        let mut paths = self.paths.lock().unwrap_or_else(|e| e.into_inner());
        paths.retain(|p| p.strong_count() > 0);
        paths.iter().filter_map(|p| p.upgrade()).collect()
    }

    /// The live viewers' path estimates, bits per second (a stale one decays: see
    /// [`crate::cc::STALE_AFTER`]).
    pub fn path_estimates(&self) -> Vec<u64> {
        let now = Instant::now();
        self.live_paths()
            .iter()
            .map(|p| p.estimate_bps(now))
            .collect()
    }
}

/// Per-viewer RTP state: what a viewer's task needs to turn shared units into packets.
#[derive(Debug)]
pub struct RtpStamper {
    pub ssrc: Ssrc,
    pub payload_type: PayloadType,
    sequence: u16,
    waiting_for_keyframe: bool,
    extensions: ExtensionIds,
}

impl RtpStamper {
    pub fn new(ssrc: Ssrc, payload_type: PayloadType, first_sequence: u16) -> Self {
        Self {
            ssrc,
            payload_type,
            sequence: first_sequence,
            waiting_for_keyframe: true,
            extensions: ExtensionIds::default(),
        }
    }

    /// Sends these negotiated header extensions on every packet.
    pub fn with_extensions(mut self, extensions: ExtensionIds) -> Self {
        self.extensions = extensions;
        self
    }

    /// Whether this unit may be sent: a viewer starts (and restarts after a loss) at a
    /// keyframe, since P-frames before it cannot be decoded.
    pub fn admit(&mut self, unit: &PayloadedUnit) -> bool {
        if self.waiting_for_keyframe && !unit.keyframe {
            return false;
        }
        self.waiting_for_keyframe = false;
        true
    }

    /// Units were lost before reaching this viewer: hold until the next keyframe.
    pub fn lost_units(&mut self) {
        self.waiting_for_keyframe = true;
    }

    /// The RTP packets of `unit` for this viewer.
    pub fn packets(&mut self, unit: &PayloadedUnit) -> Vec<rtc::rtp::Packet> {
        let last = unit.payloads.len().saturating_sub(1);
        unit.payloads
            .iter()
            .enumerate()
            .map(|(i, payload)| {
                let sequence_number = self.sequence;
                self.sequence = self.sequence.wrapping_add(1);
                let mut header = rtc::rtp::Header {
                    version: 2,
                    marker: i == last,
                    payload_type: self.payload_type.0,
                    sequence_number,
                    timestamp: unit.rtp_time,
                    ssrc: self.ssrc.0,
                    ..Default::default()
                };
                // Every packet carries them: a receiver may lose any one packet of a frame.
                // (Both fit the one-byte form; ids are checked in `ExtensionIds`.)
                if let Some(id) = self.extensions.playout_delay {
                    let _ = header.set_extension(id, Bytes::from_static(&PLAYOUT_DELAY_ZERO));
                }
                if let Some(id) = self.extensions.abs_capture_time {
                    let ntp = Bytes::copy_from_slice(&unit.capture_ntp.to_be_bytes());
                    let _ = header.set_extension(id, ntp);
                }
                rtc::rtp::Packet {
                    header,
                    payload: payload.clone(),
                }
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    fn annexb(nals: &[&[u8]]) -> Bytes {
        let mut v = Vec::new();
        for n in nals {
            v.extend_from_slice(&[0, 0, 0, 1]);
            v.extend_from_slice(n);
        }
        Bytes::from(v)
    }

    /// A video fan-out that counts the keyframes asked of its encoder.
    fn counting_fanout(epoch: Instant) -> (Arc<MediaFanout>, Arc<AtomicU64>) {
        let requested = Arc::new(AtomicU64::new(0));
        let r = requested.clone();
        let fanout = MediaFanout::video(
            epoch,
            Arc::new(move || {
                r.fetch_add(1, Ordering::Relaxed);
            }),
        );
        (fanout, requested)
    }

    #[test]
    fn one_unit_is_payloaded_once_and_shared_by_every_viewer() {
        let epoch = Instant::now();
        let (fanout, requested) = counting_fanout(epoch);
        let mut a = fanout.subscribe();
        let mut b = fanout.subscribe();
        let big = vec![0x41u8; 5000];
        fanout.publish(MediaUnit {
            data: annexb(&[&[0x67, 1, 2, 3], &[0x68, 4], &[0x65, 9, 9], &big]),
            capture_time: epoch + Duration::from_millis(100),
            keyframe: true,
        });
        let ua = a.try_recv().unwrap();
        let ub = b.try_recv().unwrap();
        assert!(Arc::ptr_eq(&ua, &ub), "viewers share one payloaded unit");
        assert_eq!(ua.rtp_time, 9000);
        assert!(ua.payloads.len() >= 5, "5000 bytes need FU-A fragments");
        assert!(ua.payloads.iter().all(|p| p.len() <= RTP_PAYLOAD_MTU));
        assert_eq!(fanout.viewers(), 2);
        fanout.request_keyframe();
        assert_eq!(requested.load(Ordering::Relaxed), 1);
    }

    #[tokio::test]
    async fn a_keyframe_asked_for_and_not_yet_out_serves_the_next_request() {
        use crate::keyframe::{KeyframeGate, KeyframePolicy, KeyframeReason};
        let epoch = Instant::now();
        let (fanout, requested) = counting_fanout(epoch);
        let gate = KeyframeGate::new(fanout.clone(), KeyframePolicy::default());
        let (a, b) = (gate.viewer(), gate.viewer());
        a.request(KeyframeReason::Join);
        assert!(fanout.keyframe_outstanding());
        // Another viewer connects before it is out: served by it, not by a second IDR
        // (which the policy would have deferred by its join interval).
        b.request(KeyframeReason::Join);
        // (Real time: the policy's clock is std's.)
        tokio::time::sleep(Duration::from_millis(300)).await;
        assert_eq!(requested.load(Ordering::Relaxed), 1);
        fanout.publish(MediaUnit {
            data: annexb(&[&[0x67, 1, 2, 3], &[0x68, 4], &[0x65, 9, 9]]),
            capture_time: epoch + Duration::from_millis(100),
            keyframe: true,
        });
        assert!(!fanout.keyframe_outstanding());
        // Once it is out, a new request gets its own.
        b.request(KeyframeReason::Join);
        tokio::time::sleep(Duration::from_millis(300)).await;
        assert_eq!(requested.load(Ordering::Relaxed), 2);
    }

    #[test]
    fn audio_packets_pass_whole_on_the_48_khz_clock() {
        let epoch = Instant::now();
        let fanout = MediaFanout::audio(epoch);
        let mut rx = fanout.subscribe();
        fanout.publish(MediaUnit {
            data: Bytes::from_static(&[0xfc, 1, 2, 3]),
            capture_time: epoch + Duration::from_millis(20),
            keyframe: true,
        });
        let unit = rx.try_recv().unwrap();
        assert_eq!(unit.payloads, vec![Bytes::from_static(&[0xfc, 1, 2, 3])]);
        assert_eq!(unit.rtp_time, 960);
        fanout.request_keyframe();
        assert_eq!(fanout.keyframes_requested.load(Ordering::Relaxed), 0);
    }

    #[test]
    fn stamper_starts_at_a_keyframe_and_numbers_packets() {
        let unit = |keyframe, n| PayloadedUnit {
            payloads: vec![Bytes::from_static(b"x"); n],
            rtp_time: 1234,
            keyframe,
            capture_time: Instant::now(),
            capture_ntp: 0,
        };
        let mut s = RtpStamper::new(Ssrc(42), PayloadType(102), u16::MAX);
        assert!(!s.admit(&unit(false, 1)));
        assert!(s.admit(&unit(true, 3)));
        let pkts = s.packets(&unit(true, 3));
        let seqs: Vec<u16> = pkts.iter().map(|p| p.header.sequence_number).collect();
        assert_eq!(seqs, vec![u16::MAX, 0, 1], "sequence numbers wrap");
        assert_eq!(
            pkts.iter().map(|p| p.header.marker).collect::<Vec<_>>(),
            vec![false, false, true]
        );
        assert!(pkts
            .iter()
            .all(|p| p.header.ssrc == 42 && p.header.payload_type == 102));
        assert!(s.admit(&unit(false, 1)));
        s.lost_units();
        assert!(!s.admit(&unit(false, 1)));
        assert!(s.admit(&unit(true, 1)));
    }

    #[test]
    fn ntp_times_are_seconds_since_1900_and_a_binary_fraction() {
        assert_eq!(ntp_time(Duration::ZERO), NTP_UNIX_OFFSET_SECS << 32);
        let t = ntp_time(Duration::from_millis(1_500));
        assert_eq!(t >> 32, NTP_UNIX_OFFSET_SECS + 1);
        assert_eq!(t & 0xffff_ffff, 1 << 31, "half a second");
        let epoch = Instant::now();
        let fanout = MediaFanout::audio(epoch);
        let a = fanout.ntp_time(epoch);
        let b = fanout.ntp_time(epoch + Duration::from_millis(250));
        assert_eq!(b - a, 1 << 30, "250 ms apart on the NTP clock");
    }

    #[test]
    fn negotiated_extensions_ride_on_every_packet_and_survive_marshalling() {
        use rtc::shared::marshal::{Marshal, Unmarshal};
        let ids = ExtensionIds::from_negotiated([
            ("urn:ietf:params:rtp-hdrext:sdes:mid", 4),
            (extension::PLAYOUT_DELAY, 6),
            (extension::ABS_CAPTURE_TIME, 9),
        ]);
        assert_eq!(
            ids,
            ExtensionIds {
                playout_delay: Some(6),
                abs_capture_time: Some(9)
            }
        );
        assert_eq!(
            ExtensionIds::from_negotiated([(extension::PLAYOUT_DELAY, 15)]).playout_delay,
            None,
            "two-byte ids are not used"
        );
        let unit = PayloadedUnit {
            payloads: vec![Bytes::from_static(b"abc"); 3],
            rtp_time: 77,
            keyframe: true,
            capture_time: Instant::now(),
            capture_ntp: 0x0102_0304_0506_0708,
        };
        let mut s = RtpStamper::new(Ssrc(1), PayloadType(102), 0).with_extensions(ids);
        for p in s.packets(&unit) {
            let wire = p.marshal().unwrap();
            let back = rtc::rtp::Packet::unmarshal(&mut wire.clone()).unwrap();
            assert_eq!(back.payload, Bytes::from_static(b"abc"));
            assert_eq!(
                back.header.get_extension(6).unwrap(),
                Bytes::from_static(&[0, 0, 0])
            );
            assert_eq!(
                back.header.get_extension(9).unwrap(),
                Bytes::from_static(&[1, 2, 3, 4, 5, 6, 7, 8])
            );
        }
        // Not negotiated: plain packets.
        let p = RtpStamper::new(Ssrc(1), PayloadType(102), 0)
            .packets(&unit)
            .remove(0);
        assert!(!p.header.extension);
    }
}
