//! H.264 access units from RTP packets (RFC 6184): reassembly, loss detection, and when
//! a keyframe is needed.

use super::*;

/// Reassembles H.264 access units from RTP packets (RFC 6184), noticing losses.
pub struct H264Assembler {
    depacketizer: H264Packet,
    current: Option<u32>,
    buf: BytesMut,
    last_seq: Option<u16>,
    broken: bool,
    waiting_for_keyframe: bool,
    /// Payload bytes fed for the current unit (bounded by `max_unit`).
    fed: usize,
    /// The current unit went over the cap: its further packets are skipped.
    oversized: bool,
    pub(super) max_unit: usize,
    oversized_units: u64,
    /// A sequence parameter set and a picture parameter set have been seen (in a keyframe's
    /// unit or before it): a keyframe without them cannot be decoded.
    have_sps: bool,
    have_pps: bool,
}

/// Whether an RTP payload of H.264 begins a NAL unit (RFC 6184: a single NAL unit, an
/// aggregation packet, or the first fragment of a fragmented one). A unit whose first
/// packet does not is the tail of something whose start was missed.
fn begins_nal(payload: &[u8]) -> bool {
    match payload.first().map(|b| b & 0x1f) {
        Some(1..=27) => true,
        // FU-A/FU-B: the start bit.
        Some(28 | 29) => payload.get(1).is_some_and(|fu| fu & 0x80 != 0),
        _ => false,
    }
}

/// What one packet produced.
#[derive(Debug, PartialEq, Eq)]
pub enum Assembled {
    Nothing,
    Unit {
        data: Bytes,
        rtp_time: u32,
        keyframe: bool,
    },
    /// Packets were lost: ask the sender for a keyframe (PLI).
    NeedKeyframe,
}

impl Default for H264Assembler {
    fn default() -> Self {
        Self::new()
    }
}

impl H264Assembler {
    pub fn new() -> Self {
        Self::with_max_unit(MAX_ACCESS_UNIT_BYTES)
    }

    /// An assembler that drops access units over `max_unit` payload bytes.
    pub fn with_max_unit(max_unit: usize) -> Self {
        Self {
            depacketizer: H264Packet::default(),
            current: None,
            buf: BytesMut::new(),
            last_seq: None,
            broken: false,
            waiting_for_keyframe: true,
            fed: 0,
            oversized: false,
            max_unit,
            oversized_units: 0,
            have_sps: false,
            have_pps: false,
        }
    }

    /// Units dropped so far for being over the cap.
    pub fn oversized_units(&self) -> u64 {
        self.oversized_units
    }

    /// An upper bound on the bytes held for the unit being reassembled (its output so far
    /// and the depacketizer's fragment buffer are each at most what was fed).
    pub fn held(&self) -> usize {
        if self.oversized {
            self.buf.len()
        } else {
            self.fed.max(self.buf.len())
        }
    }

    pub fn push(&mut self, seq: u16, rtp_time: u32, marker: bool, payload: &Bytes) -> Assembled {
        let mut lost = false;
        if let Some(last) = self.last_seq {
            if seq != last.wrapping_add(1) {
                lost = true;
            }
        }
        self.last_seq = Some(seq);
        if self.current != Some(rtp_time) {
            // A new unit; an unfinished previous one is incomplete.
            self.buf.clear();
            self.broken = false;
            self.oversized = false;
            self.fed = 0;
            self.depacketizer = H264Packet::default();
            self.current = Some(rtp_time);
            if !begins_nal(payload) {
                // Joined mid-unit (the first packets of a stream, or after a loss): this
                // unit's start is gone, whatever its fragments say it is.
                self.broken = true;
            }
        }
        if lost {
            self.broken = true;
            self.waiting_for_keyframe = true;
        }
        if self.oversized {
            // The rest of a unit already dropped; its last packet ends it.
            if marker {
                self.current = None;
            }
            return if lost {
                Assembled::NeedKeyframe
            } else {
                Assembled::Nothing
            };
        }
        self.fed += payload.len();
        if self.fed > self.max_unit {
            // Too big to be a real frame: drop it (memory stays bounded), count it and
            // ask for a keyframe, as for a loss.
            self.oversized = true;
            self.oversized_units += 1;
            self.broken = true;
            self.waiting_for_keyframe = true;
            self.buf = BytesMut::new();
            self.depacketizer = H264Packet::default();
            if marker {
                self.current = None;
            }
            return Assembled::NeedKeyframe;
        }
        match self.depacketizer.depacketize(payload) {
            Ok(nals) => self.buf.extend_from_slice(&nals),
            Err(_) => self.broken = true,
        }
        if lost {
            return Assembled::NeedKeyframe;
        }
        if !marker {
            return Assembled::Nothing;
        }
        let data = self.buf.split().freeze();
        self.current = None;
        if self.broken || data.is_empty() {
            return Assembled::Nothing;
        }
        let mut keyframe = false;
        for t in annexb::nal_types(&data) {
            match t {
                annexb::IDR => keyframe = true,
                annexb::SPS => self.have_sps = true,
                annexb::PPS => self.have_pps = true,
                _ => {}
            }
        }
        if self.waiting_for_keyframe && !keyframe {
            return Assembled::Nothing;
        }
        if keyframe && self.waiting_for_keyframe && !(self.have_sps && self.have_pps) {
            // Nothing can decode it (a sender that sent its parameter sets before we
            // joined): skip it and ask for one that carries them.
            return Assembled::NeedKeyframe;
        }
        self.waiting_for_keyframe = false;
        Assembled::Unit {
            data,
            rtp_time,
            keyframe,
        }
    }
}
