//! Porthole media: screen capture, colour conversion, H.264 encoding (and decoding, for
//! viewers) and the
//! capture → encode pipeline. This crate knows nothing about networks: it hands
//! [`EncodedFrame`]s to whoever wires it up.

pub mod audio;
pub mod bench;
pub mod capture;
pub mod clipboard;
pub mod convert;
pub mod cursor;
pub mod decoder;
pub mod encoder;
pub mod input;
pub mod keymap;
pub mod pattern;
pub mod picture;
pub mod pipeline;
pub mod portal;
pub mod priority;
pub mod record;
pub mod slot;
pub mod still;
pub mod x11grab;
pub mod xvfb;

use std::time::Instant;

pub use bytes::Bytes;

/// One encoded H.264 access unit (Annex B, start codes included).
#[derive(Clone, Debug)]
pub struct EncodedFrame {
    /// The access unit: SPS/PPS (on keyframes) and the slice NAL units.
    pub data: Bytes,
    /// When the screen content in this frame was captured (monotonic clock).
    pub capture_time: Instant,
    /// True for an IDR frame (decodable on its own).
    pub keyframe: bool,
}

/// Deterministic noise for tests (xorshift32): hard-to-compress bytes.
#[cfg(test)]
pub(crate) fn noise_bytes(len: usize, seed: u32) -> Vec<u8> {
    let mut state = seed.wrapping_mul(2_654_435_761) | 1;
    (0..len)
        .map(|_| {
            state ^= state << 13;
            state ^= state >> 17;
            state ^= state << 5;
            state as u8
        })
        .collect()
}
