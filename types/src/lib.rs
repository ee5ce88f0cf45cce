//! What both `media` and `net` mean, in one place: the RTP clock rates, SSRC and payload
//! type ids, the size contract between the encoder's slices and the RTP payload, and the
//! byte budget (a token bucket that may go into debt) both crates pace with.
//!
//! Pure: no I/O, no clock (time is passed in), no dependencies.

mod budget;

pub use budget::ByteBudget;

use std::fmt;

/// The H.264 RTP clock (RFC 6184): 90 kHz.
pub const VIDEO_CLOCK_HZ: u32 = 90_000;
/// The Opus RTP clock (RFC 7587): 48 kHz, whatever the rate the audio was coded at.
pub const AUDIO_CLOCK_HZ: u32 = 48_000;

/// Bytes of one RTP packet on the wire, at most: 1,200-byte packets stay under any sane
/// path MTU with SRTP, header extensions and TURN overhead.
pub const RTP_PACKET_BYTES: usize = 1200;
/// RTP payload size budget: [`RTP_PACKET_BYTES`] less the RTP header (12 bytes) and 40
/// bytes for header extensions and the SRTP tag.
pub const RTP_PAYLOAD_MTU: usize = RTP_PACKET_BYTES - 12 - 40;
/// Largest slice NAL unit the encoder makes: fits one RTP payload ([`RTP_PAYLOAD_MTU`])
/// with room to spare, so each slice travels in one packet (no FU-A) and a lost packet
/// costs one slice, not the frame.
pub const MAX_SLICE_BYTES: u32 = 1100;

// The contract above: a slice fits one RTP payload, with room to spare.
const _: () = assert!((MAX_SLICE_BYTES as usize) < RTP_PAYLOAD_MTU);

/// An RTP synchronisation source: one stream of one sender (RFC 3550 §3).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Ssrc(pub u32);

/// An RTP payload type: the number the SDP maps to a codec (RFC 3550 §5.1; 7 bits).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct PayloadType(pub u8);

impl fmt::Display for Ssrc {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(&self.0, f)
    }
}

impl fmt::Display for PayloadType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(&self.0, f)
    }
}

impl From<Ssrc> for u32 {
    fn from(ssrc: Ssrc) -> u32 {
        ssrc.0
    }
}

impl From<PayloadType> for u8 {
    fn from(pt: PayloadType) -> u8 {
        pt.0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_display_as_their_number() {
        assert_eq!(Ssrc(3_000_000_000).to_string(), "3000000000");
        assert_eq!(PayloadType(102).to_string(), "102");
        assert_eq!(u32::from(Ssrc(7)), 7);
        assert_eq!(u8::from(PayloadType(111)), 111);
    }
}
