//! Fan-out of one encoded stream (video or audio) to every viewer.
//!
//! The encoder produces each access unit once; it is cut into RTP payloads once
//! (H.264 FU-A/STAP-A, RFC 6184) and shared as `Arc<VideoUnit>` through a bounded
//! broadcast channel. Each viewer's task only stamps its own SSRC, sequence numbers and
//! payload type. A viewer that falls behind loses the oldest units (never blocks the
//! encoder), then waits for the next keyframe and asks for one.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Instant;

use bytes::Bytes;
use rtc::rtp::codec::h264::H264Payloader;
use rtc::rtp::packetizer::Payloader;
use tokio::sync::broadcast;

/// RTP payload size budget: 1200-byte packets stay under any sane path MTU with SRTP,
/// header extensions and TURN overhead.
pub const RTP_PAYLOAD_MTU: usize = 1200 - 12 - 40;
/// Units kept for slow viewers before they start losing the oldest (~0.25 s at 30 fps).
pub const FANOUT_DEPTH: usize = 8;
/// The H.264 RTP clock.
pub const VIDEO_CLOCK_HZ: u64 = 90_000;
/// The Opus RTP clock.
pub const AUDIO_CLOCK_HZ: u64 = 48_000;

/// One encoded access unit (or Opus packet) as the encoder hands it over.
#[derive(Clone, Debug)]
pub struct VideoSample {
    pub data: Bytes,
    pub capture_time: Instant,
    /// Decodable on its own (always true for audio).
    pub keyframe: bool,
}

/// Audio and video samples are the same shape.
pub type MediaSample = VideoSample;

enum Payloading {
    /// RFC 6184: FU-A fragments, STAP-A for parameter sets.
    H264(Mutex<H264Payloader>),
    /// RFC 7587: one Opus packet per RTP packet.
    Opus,
}

/// One access unit, payloaded for RTP, shared by all viewers.
#[derive(Debug)]
pub struct VideoUnit {
    pub payloads: Vec<Bytes>,
    /// Capture time on the stream's RTP clock, from the fan-out's epoch.
    pub rtp_time: u32,
    pub keyframe: bool,
    pub capture_time: Instant,
}

/// Who to tell when a keyframe is needed (the encoder's request flag).
pub type KeyframeRequester = Arc<dyn Fn() + Send + Sync>;

/// One stream's fan-out. (Named for video, its first use; `Fanout::audio` makes the Opus one.)
pub struct VideoFanout {
    tx: broadcast::Sender<Arc<VideoUnit>>,
    payloading: Payloading,
    clock_hz: u64,
    epoch: Instant,
    request_keyframe: KeyframeRequester,
    pub units_published: AtomicU64,
    pub keyframes_requested: AtomicU64,
}

impl VideoFanout {
    pub fn new(epoch: Instant, request_keyframe: KeyframeRequester) -> Arc<Self> {
        let (tx, _) = broadcast::channel(FANOUT_DEPTH);
        Arc::new(Self {
            tx,
            payloading: Payloading::H264(Mutex::new(H264Payloader::default())),
            clock_hz: VIDEO_CLOCK_HZ,
            epoch,
            request_keyframe,
            units_published: AtomicU64::new(0),
            keyframes_requested: AtomicU64::new(0),
        })
    }

    /// An Opus fan-out. `epoch` must be the video's, so both RTP clocks share an origin.
    pub fn audio(epoch: Instant) -> Arc<Self> {
        // 20 packets: 200 ms of 10 ms frames.
        let (tx, _) = broadcast::channel(20);
        Arc::new(Self {
            tx,
            payloading: Payloading::Opus,
            clock_hz: AUDIO_CLOCK_HZ,
            epoch,
            request_keyframe: Arc::new(|| {}),
            units_published: AtomicU64::new(0),
            keyframes_requested: AtomicU64::new(0),
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

    /// Publishes one access unit to every viewer. Never blocks; callable from any thread.
    pub fn publish(&self, sample: VideoSample) {
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
        let unit = Arc::new(VideoUnit {
            payloads,
            rtp_time: self.rtp_time(sample.capture_time),
            keyframe: sample.keyframe,
            capture_time: sample.capture_time,
        });
        self.units_published.fetch_add(1, Ordering::Relaxed);
        // No receivers is fine: nobody is watching.
        let _ = self.tx.send(unit);
    }

    pub fn subscribe(&self) -> broadcast::Receiver<Arc<VideoUnit>> {
        self.tx.subscribe()
    }

    /// Asks the encoder for a keyframe (a viewer joined, lost packets, or sent PLI/FIR).
    pub fn request_keyframe(&self) {
        if self.is_audio() {
            return;
        }
        self.keyframes_requested.fetch_add(1, Ordering::Relaxed);
        (self.request_keyframe)();
    }

    pub fn viewers(&self) -> usize {
        self.tx.receiver_count()
    }
}

/// Per-viewer RTP state: what a viewer's task needs to turn shared units into packets.
#[derive(Debug)]
pub struct RtpStamper {
    pub ssrc: u32,
    pub payload_type: u8,
    sequence: u16,
    waiting_for_keyframe: bool,
}

impl RtpStamper {
    pub fn new(ssrc: u32, payload_type: u8, first_sequence: u16) -> Self {
        Self {
            ssrc,
            payload_type,
            sequence: first_sequence,
            waiting_for_keyframe: true,
        }
    }

    /// Whether this unit may be sent: a viewer starts (and restarts after a loss) at a
    /// keyframe, since P-frames before it cannot be decoded.
    pub fn admit(&mut self, unit: &VideoUnit) -> bool {
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

    pub fn is_waiting_for_keyframe(&self) -> bool {
        self.waiting_for_keyframe
    }

    /// The RTP packets of `unit` for this viewer.
    pub fn packets(&mut self, unit: &VideoUnit) -> Vec<rtc::rtp::Packet> {
        let last = unit.payloads.len().saturating_sub(1);
        unit.payloads
            .iter()
            .enumerate()
            .map(|(i, payload)| {
                let sequence_number = self.sequence;
                self.sequence = self.sequence.wrapping_add(1);
                rtc::rtp::Packet {
                    header: rtc::rtp::Header {
                        version: 2,
                        marker: i == last,
                        payload_type: self.payload_type,
                        sequence_number,
                        timestamp: unit.rtp_time,
                        ssrc: self.ssrc,
                        ..Default::default()
                    },
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

    #[test]
    fn one_unit_is_payloaded_once_and_shared_by_every_viewer() {
        let requested = Arc::new(AtomicU64::new(0));
        let r = requested.clone();
        let epoch = Instant::now();
        let fanout = VideoFanout::new(
            epoch,
            Arc::new(move || {
                r.fetch_add(1, Ordering::Relaxed);
            }),
        );
        let mut a = fanout.subscribe();
        let mut b = fanout.subscribe();
        let big = vec![0x41u8; 5000];
        fanout.publish(VideoSample {
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

    #[test]
    fn audio_packets_pass_whole_on_the_48_khz_clock() {
        let epoch = Instant::now();
        let fanout = VideoFanout::audio(epoch);
        let mut rx = fanout.subscribe();
        fanout.publish(VideoSample {
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
        let unit = |keyframe, n| VideoUnit {
            payloads: vec![Bytes::from_static(b"x"); n],
            rtp_time: 1234,
            keyframe,
            capture_time: Instant::now(),
        };
        let mut s = RtpStamper::new(42, 102, u16::MAX);
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
}
