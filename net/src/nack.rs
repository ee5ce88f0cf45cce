//! The share's answer to NACKs: retransmissions within a budget.
//!
//! webrtc-rs's NACK responder resends every packet asked for, every time it is asked. Behind
//! a congested link that is a storm: the retransmissions are lost too, the viewer (Chromium
//! asks up to ten times) asks again, and on a 2 Mbit/s step 94 % of what the share sent was
//! lost while the encoder itself was down to 1 Mbit/s. This one (in the same slot) resends a
//! packet at most [`MAX_RESENDS`] times, only while it is younger than [`MAX_AGE`] (an older
//! one belongs to a frame the viewer has given up), and only within a token bucket of
//! [`RESEND_SHARE`] of the viewer's path estimate: what does not fit is left to a keyframe.
//! Nothing sent before the latest H.264 keyframe is resent: the viewer decodes from it,
//! and after a link stepped down, resends of the frames lost before it took the budget the
//! keyframe's own repairs needed.

use std::collections::VecDeque;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use rtc::interceptor::{
    Attribute, AttributedPacket, Interceptor, Packet, StreamInfo, TaggedPacket,
};
use rtc::rtcp::transport_feedbacks::transport_layer_nack::TransportLayerNack;
use rtc::sansio::Protocol;
use rtc::shared::error::Error;

use types::ByteBudget;

use crate::cc::PathEstimate;

/// Packets kept for resending (a power of two; ~1 s of 1080p video at 8 Mbit/s).
pub const HISTORY: usize = 1024;
/// A packet is resent at most this many times…
pub const MAX_RESENDS: u8 = 3;
/// …and not again sooner than this after its last resend: a viewer that asks again before
/// a resend could have arrived (our native client asks every 20 ms, whatever the round
/// trip) would otherwise get each lost packet three times at once.
pub const MIN_RESEND_SPACING: Duration = Duration::from_millis(30);
/// A packet older than this is not resent. (Long enough for a 1080p keyframe, 200 kB and
/// more, to be sent and repaired over a 1 Mbit/s link: at 600 ms the first one never
/// completed there, and the viewer never saw a picture.)
pub const MAX_AGE: Duration = Duration::from_millis(1500);
/// Resends may use this share of the path estimate, beside the media's own
/// [`crate::cc::TARGET_SHARE`]. (At 1.0, behind a link stepped down from 8 to 2 Mbit/s, the
/// resends of what the full queue had lost, lost in turn and asked for again, kept 40-60 %
/// loss going for 3.5 s after the encoder was down to 1.2 Mbit/s: no picture. At 0.5, a
/// 1080p keyframe of 200 kB lost in a 1 Mbit/s link's queue was never repaired in time;
/// keyframes now fit a second of the link, or the picture is halved: see
/// [`crate::cc::KEYFRAME_MAX`].)
pub const RESEND_SHARE: f64 = 0.5;
/// …with this much at once.
pub const RESEND_BURST: Duration = Duration::from_millis(250);
/// Each resend goes out this many times while the path is not congested. Chromium, which
/// only receives, cannot measure the round trip and asks again for a packet whose resend
/// was lost only ~100 ms later (its default round trip): behind 2 % random loss, a frame
/// whose resend was lost froze the picture for 150-270 ms. Two copies make that 1 in 2500
/// resends instead of 1 in 50, for twice the resends' bytes (within [`RESEND_SHARE`]).
pub const RESEND_COPIES: usize = 2;
/// Before any estimate, the budget assumes this path.
const START_BPS: u64 = 1_500_000;

/// What the responder did (shared with the share's stats).
#[derive(Debug, Default)]
pub struct ResendStats {
    pub resent: AtomicU64,
    /// Asked for but not resent: over the budget, too old, asked too often or gone.
    pub refused: AtomicU64,
}

struct Sent {
    seq: u16,
    /// Its place among the packets written (see [`BudgetedNackResponder::written`]).
    order: u64,
    at: Instant,
    packet: rtc::rtp::Packet,
    resends: u8,
    last_resend: Option<Instant>,
}

/// The responder (see the module docs).
pub struct BudgetedNackResponder {
    path: Arc<PathEstimate>,
    stats: Arc<ResendStats>,
    /// Media SSRCs that negotiated NACK.
    streams: Vec<u32>,
    /// Of those, the H.264 ones.
    h264: Vec<H264Stream>,
    /// Packets written so far.
    written: u64,
    history: Vec<Option<Sent>>,
    /// Full at the first NACK.
    budget: ByteBudget,
    read_queue: VecDeque<TaggedPacket>,
    write_queue: VecDeque<TaggedPacket>,
}

impl BudgetedNackResponder {
    pub fn new(path: Arc<PathEstimate>, stats: Arc<ResendStats>) -> Self {
        Self {
            path,
            stats,
            streams: Vec::new(),
            h264: Vec::new(),
            written: 0,
            history: (0..HISTORY).map(|_| None).collect(),
            budget: ByteBudget::full_at_first_fill(RESEND_BURST),
            read_queue: VecDeque::new(),
            write_queue: VecDeque::new(),
        }
    }

    /// Adds what the budget earned since the last call.
    fn refill(&mut self, now: Instant) {
        let estimate = match self.path.estimate_bps(now) {
            0 => START_BPS,
            e => e,
        };
        self.budget.fill(now, estimate as f64 / 8.0 * RESEND_SHARE);
    }

    fn handle_nack(&mut self, now: Instant, nack: &TransportLayerNack) {
        if !self.streams.contains(&nack.media_ssrc) {
            return;
        }
        self.refill(now);
        let seqs = nack.nacks.iter().flat_map(|pair| {
            std::iter::once(pair.packet_id).chain(
                (0..16u16)
                    .filter(move |i| pair.lost_packets & (1 << i) != 0)
                    .map(move |i| pair.packet_id.wrapping_add(i + 1)),
            )
        });
        let keyframe_start = self
            .h264
            .iter()
            .find(|s| s.ssrc == nack.media_ssrc)
            .and_then(|s| s.keyframe_start);
        for seq in seqs {
            let in_debt = self.budget.in_debt();
            let slot = &mut self.history[usize::from(seq) % HISTORY];
            let sent = match slot {
                Some(sent) if sent.seq == seq && sent.packet.header.ssrc == nack.media_ssrc => sent,
                _ => {
                    self.refuse(seq, "no longer kept");
                    continue;
                }
            };
            // Why not, if not (logged at debug level: behind a congested link these say
            // whether the viewer's losses were beyond repair or only beyond the budget).
            let refusal = if keyframe_start.is_some_and(|start| sent.order < start) {
                Some("before the latest keyframe")
            } else if sent.resends >= MAX_RESENDS {
                Some("resent too often")
            } else if now.saturating_duration_since(sent.at) > MAX_AGE {
                Some("too old")
            } else if sent
                .last_resend
                .is_some_and(|t| now.saturating_duration_since(t) < MIN_RESEND_SPACING)
            {
                Some("asked again too soon")
            } else if in_debt {
                Some("over the resend budget")
            } else {
                None
            };
            if let Some(why) = refusal {
                self.refuse(seq, why);
                continue;
            }
            sent.resends += 1;
            sent.last_resend = Some(now);
            tracing::trace!(
                seq,
                resend = sent.resends,
                age_ms = now.saturating_duration_since(sent.at).as_millis() as u64,
                "resent"
            );
            let copies = if self.path.congested() {
                1
            } else {
                RESEND_COPIES
            };
            for _ in 0..copies {
                let packet = sent.packet.clone();
                self.budget.spend(packet.payload.len() + 40);
                self.path.note_resent(now, packet.payload.len() + 40);
                // Tagged so the congestion controller's send history counts it as bytes on
                // the wire, as webrtc-rs's own responder does.
                self.write_queue.push_back(TaggedPacket {
                    now,
                    transport: Default::default(),
                    message: AttributedPacket::new(Packet::Rtp(packet))
                        .with(Attribute::Retransmission),
                });
            }
            self.stats.resent.fetch_add(1, Ordering::Relaxed);
        }
    }

    fn refuse(&self, seq: u16, why: &'static str) {
        self.stats.refused.fetch_add(1, Ordering::Relaxed);
        tracing::debug!(seq, why, "resend refused");
    }
}

impl Protocol<TaggedPacket, TaggedPacket, ()> for BudgetedNackResponder {
    type Rout = TaggedPacket;
    type Wout = TaggedPacket;
    type Eout = ();
    type Error = Error;
    type Time = Instant;

    fn handle_read(&mut self, msg: TaggedPacket) -> Result<(), Self::Error> {
        if let Packet::Rtcp(packets) = &msg.message.packet {
            for p in packets {
                if let Some(nack) = p.as_any().downcast_ref::<TransportLayerNack>() {
                    self.handle_nack(msg.now, nack);
                }
            }
        }
        self.read_queue.push_back(msg);
        Ok(())
    }

    fn poll_read(&mut self) -> Option<Self::Rout> {
        self.read_queue.pop_front()
    }

    fn handle_write(&mut self, msg: TaggedPacket) -> Result<(), Self::Error> {
        if let Packet::Rtp(packet) = &msg.message.packet {
            if self.streams.contains(&packet.header.ssrc) {
                let seq = packet.header.sequence_number;
                let order = self.written;
                self.written += 1;
                if let Some(stream) = self.h264.iter_mut().find(|s| s.ssrc == packet.header.ssrc) {
                    let keyframe = is_h264_keyframe_packet(&packet.payload);
                    if keyframe && !stream.in_keyframe {
                        stream.keyframe_start = Some(order);
                    }
                    stream.in_keyframe = keyframe;
                }
                self.history[usize::from(seq) % HISTORY] = Some(Sent {
                    seq,
                    order,
                    at: msg.now,
                    packet: packet.clone(),
                    resends: 0,
                    last_resend: None,
                });
            }
        }
        self.write_queue.push_back(msg);
        Ok(())
    }

    fn poll_write(&mut self) -> Option<Self::Wout> {
        self.write_queue.pop_front()
    }
}

impl Interceptor for BudgetedNackResponder {
    fn bind_local_stream(&mut self, info: &StreamInfo) {
        let nack = info
            .rtcp_feedback
            .iter()
            .any(|fb| fb.typ == "nack" && fb.parameter.is_empty());
        if nack && !self.streams.contains(&info.ssrc) {
            self.streams.push(info.ssrc);
            if info.mime_type.eq_ignore_ascii_case("video/H264") {
                self.h264.push(H264Stream::new(info.ssrc));
            }
        }
    }
    fn unbind_local_stream(&mut self, info: &StreamInfo) {
        self.streams.retain(|&s| s != info.ssrc);
        self.h264.retain(|s| s.ssrc != info.ssrc);
    }
    fn bind_remote_stream(&mut self, _info: &StreamInfo) {}
    fn unbind_remote_stream(&mut self, _info: &StreamInfo) {}
}

/// An H.264 stream's keyframes, as its packets are written.
struct H264Stream {
    ssrc: u32,
    /// Where (in [`BudgetedNackResponder::written`] order) its latest keyframe starts.
    keyframe_start: Option<u64>,
    /// Whether its last packet written was part of a keyframe.
    in_keyframe: bool,
}

impl H264Stream {
    fn new(ssrc: u32) -> Self {
        Self {
            ssrc,
            keyframe_start: None,
            in_keyframe: false,
        }
    }
}

/// Whether an H.264 RTP payload (RFC 6184) carries a keyframe's NAL unit: an IDR slice or
/// a parameter set, alone, first in a STAP-A, or fragmented in FU-A.
fn is_h264_keyframe_packet(payload: &[u8]) -> bool {
    let nal_type = match payload.first().map(|b| b & 0x1f) {
        Some(24) => payload.get(3).map(|b| b & 0x1f),
        Some(28) => payload.get(1).map(|b| b & 0x1f),
        other => other,
    };
    matches!(nal_type, Some(5 | 7 | 8))
}

#[cfg(test)]
mod tests {
    use super::*;
    use rtc::rtcp::transport_feedbacks::transport_layer_nack::NackPair;

    const SSRC: u32 = 7;

    fn responder(estimate_bps: u64) -> BudgetedNackResponder {
        let path = Arc::new(PathEstimate::default());
        path.set_for_test(estimate_bps);
        let mut r = BudgetedNackResponder::new(path, Arc::default());
        r.streams.push(SSRC);
        r
    }

    fn send(r: &mut BudgetedNackResponder, seq: u16, at: Instant) {
        send_payload(r, seq, at, vec![0u8; 1160]);
    }

    fn send_payload(r: &mut BudgetedNackResponder, seq: u16, at: Instant, payload: Vec<u8>) {
        let packet = rtc::rtp::Packet {
            header: rtc::rtp::Header {
                version: 2,
                ssrc: SSRC,
                sequence_number: seq,
                ..Default::default()
            },
            payload: payload.into(),
        };
        r.handle_write(TaggedPacket {
            now: at,
            transport: Default::default(),
            message: AttributedPacket::new(Packet::Rtp(packet)),
        })
        .unwrap();
        while r.poll_write().is_some() {}
    }

    /// The sequence numbers resent, each once (see [`nack_copies`] for the copies).
    fn nack(r: &mut BudgetedNackResponder, seqs: &[u16], at: Instant) -> Vec<u16> {
        let mut out = nack_copies(r, seqs, at);
        out.dedup();
        out
    }

    fn nack_copies(r: &mut BudgetedNackResponder, seqs: &[u16], at: Instant) -> Vec<u16> {
        let nack = TransportLayerNack {
            sender_ssrc: 1,
            media_ssrc: SSRC,
            nacks: seqs
                .iter()
                .map(|&s| NackPair {
                    packet_id: s,
                    lost_packets: 0,
                })
                .collect(),
        };
        r.handle_nack(at, &nack);
        let mut out = Vec::new();
        while let Some(p) = r.poll_write() {
            if let Packet::Rtp(p) = p.message.packet {
                out.push(p.header.sequence_number);
            }
        }
        out
    }

    /// A responder on an 8 Mbit/s path that sent packets 0..10 at the returned instant.
    fn ten_sent() -> (BudgetedNackResponder, Instant) {
        let t0 = Instant::now();
        let mut r = responder(8_000_000);
        for s in 0..10 {
            send(&mut r, s, t0);
        }
        (r, t0)
    }

    #[test]
    fn a_packet_is_resent_a_few_times_and_only_while_young() {
        let (mut r, t0) = ten_sent();
        let ms = |n| t0 + Duration::from_millis(n);
        assert_eq!(nack(&mut r, &[3, 4], ms(20)), vec![3, 4]);
        // Asked again too soon after a resend: not yet.
        assert_eq!(
            nack(&mut r, &[3], ms(30)),
            Vec::<u16>::new(),
            "within the spacing"
        );
        for k in 1..MAX_RESENDS {
            assert_eq!(nack(&mut r, &[3], ms(20 + 40 * u64::from(k))), vec![3]);
        }
        assert_eq!(
            nack(&mut r, &[3], ms(200)),
            Vec::<u16>::new(),
            "once too often"
        );
        assert_eq!(nack(&mut r, &[5], ms(1600)), Vec::<u16>::new(), "too old");
        assert_eq!(
            nack(&mut r, &[500], ms(70)),
            Vec::<u16>::new(),
            "never sent"
        );
        let resent = u64::from(MAX_RESENDS) + 1;
        assert_eq!(r.stats.resent.load(Ordering::Relaxed), resent);
        assert_eq!(r.stats.refused.load(Ordering::Relaxed), 4);
    }

    #[test]
    fn each_resend_goes_twice_unless_the_path_is_congested() {
        let (mut r, t0) = ten_sent();
        let ms = |n| t0 + Duration::from_millis(n);
        assert_eq!(nack_copies(&mut r, &[3, 4], ms(20)), vec![3, 3, 4, 4]);
        // A congested path gets no more than it asked for.
        r.path.set_congested_for_test(true);
        assert_eq!(nack_copies(&mut r, &[5, 6], ms(20)), vec![5, 6]);
        assert_eq!(r.stats.resent.load(Ordering::Relaxed), 4);
    }

    #[test]
    fn resends_stay_within_a_share_of_the_path() {
        // 1 Mbit/s path: resends at RESEND_SHARE of 125 kB/s, with RESEND_BURST of that at once
        // (packets of 1.2 kB).
        let t0 = Instant::now();
        let mut r = responder(1_000_000);
        for s in 0..1000 {
            send(&mut r, s, t0);
        }
        // A viewer asking for everything, 50 packets every 50 ms for 500 ms.
        let mut resent = 0;
        for round in 0..10u64 {
            let first = (round * 50) as u16;
            let seqs: Vec<u16> = (first..first + 50).collect();
            resent += nack_copies(&mut r, &seqs, t0 + Duration::from_millis(round * 50)).len();
        }
        // (0.45 s + the burst) of the budget's rate, not 500 (at 0.5: ~44 kB, ~36 packets
        // on the wire, copies included).
        let rate = 125_000.0 * RESEND_SHARE;
        let expected = (0.45 + RESEND_BURST.as_secs_f64()) * rate / 1200.0;
        let range = (expected * 0.85) as usize..=(expected * 1.15).ceil() as usize;
        assert!(range.contains(&resent), "{resent} resent, not in {range:?}");
    }

    #[test]
    fn nothing_before_the_latest_keyframe_is_resent() {
        let t0 = Instant::now();
        let mut r = responder(8_000_000);
        r.h264.push(H264Stream::new(SSRC));
        let slice = |nal_header: u8| {
            let mut p = vec![nal_header];
            p.resize(1000, 0);
            p
        };
        // P slices 0..5, then a keyframe: a STAP-A of SPS and PPS, IDR slices, an IDR
        // fragment (FU-A); then P slices again.
        for seq in 0..5 {
            send_payload(&mut r, seq, t0, slice(0x41));
        }
        send_payload(&mut r, 5, t0, vec![24, 0, 10, 0x67, 1, 2, 3]);
        send_payload(&mut r, 6, t0, slice(0x65));
        send_payload(&mut r, 7, t0, vec![0x7c, 0x85, 1, 2]);
        for seq in 8..10 {
            send_payload(&mut r, seq, t0, slice(0x41));
        }
        let at = t0 + Duration::from_millis(20);
        assert_eq!(nack(&mut r, &[2, 3, 6, 7, 9], at), vec![6, 7, 9]);
        assert_eq!(r.stats.refused.load(Ordering::Relaxed), 2);
        // The next keyframe supersedes everything before it, that one included.
        send_payload(&mut r, 10, t0, slice(0x65));
        let at = t0 + Duration::from_millis(100);
        assert_eq!(nack(&mut r, &[6, 9, 10], at), vec![10]);
        assert!(is_h264_keyframe_packet(&[0x65]) && !is_h264_keyframe_packet(&[0x41]));
        assert!(!is_h264_keyframe_packet(&[28, 0x81]) && !is_h264_keyframe_packet(&[]));
    }
}
