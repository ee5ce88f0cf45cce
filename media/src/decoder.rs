//! H.264 decoding for whoever shows a share: Annex B access units in, RGBA pictures out
//! (openh264, then its YUV → RGBA conversion). The app's native viewer decodes with it,
//! `porthole bench` times it (the two steps apart: [`H264Decoder::decode`], then
//! [`Decoded::write_rgba`]), and a recording reads a keyframe's size with it.

use openh264::decoder::{DecodedYUV, Decoder};
use openh264::formats::YUVSource;

#[derive(Debug, thiserror::Error)]
pub enum DecodeError {
    #[error("cannot start the H.264 decoder: {0}")]
    Start(#[source] openh264::Error),
    #[error("the decoder refused a frame: {0}")]
    Refused(#[source] openh264::Error),
}

/// A picture, 8-bit RGBA (alpha 255), rows top to bottom without padding.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Picture {
    pub width: usize,
    pub height: usize,
    pub rgba: Vec<u8>,
}

/// One H.264 decoder: one per stream shown (it keeps the reference pictures).
pub struct H264Decoder {
    inner: Decoder,
}

/// A picture just decoded, still in the decoder's own YUV buffer (valid until the next
/// [`H264Decoder::decode`]).
pub struct Decoded<'a> {
    yuv: DecodedYUV<'a>,
}

impl Decoded<'_> {
    /// (width, height) in pixels.
    pub fn size(&self) -> (usize, usize) {
        self.yuv.dimensions()
    }

    /// Writes the picture as RGBA into `rgba`, sized to fit (a buffer reused across
    /// pictures of the same size is not reallocated).
    pub fn write_rgba(&self, rgba: &mut Vec<u8>) {
        let (w, h) = self.size();
        rgba.resize(w * h * 4, 0);
        self.yuv.write_rgba8(rgba);
    }

    /// The picture as RGBA, in a buffer of its own.
    pub fn to_picture(&self) -> Picture {
        let (width, height) = self.size();
        let mut rgba = Vec::new();
        self.write_rgba(&mut rgba);
        Picture {
            width,
            height,
            rgba,
        }
    }
}

impl H264Decoder {
    pub fn new() -> Result<Self, DecodeError> {
        Ok(Self {
            inner: Decoder::new().map_err(DecodeError::Start)?,
        })
    }

    /// Decodes one access unit (Annex B, start codes included): the picture it completes,
    /// if any (a unit of parameter sets alone completes none).
    pub fn decode(&mut self, annexb: &[u8]) -> Result<Option<Decoded<'_>>, DecodeError> {
        let yuv = self.inner.decode(annexb).map_err(DecodeError::Refused)?;
        Ok(yuv.map(|yuv| Decoded { yuv }))
    }

    /// [`decode`](Self::decode), then the picture as RGBA.
    pub fn decode_rgba(&mut self, annexb: &[u8]) -> Result<Option<Picture>, DecodeError> {
        Ok(self.decode(annexb)?.map(|d| d.to_picture()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::convert::Converter;
    use crate::encoder::{EncoderSettings, H264Encoder};

    /// A picture of one colour, as the share would encode it.
    fn encoded(width: usize, height: usize, bgrx: [u8; 4], enc: &mut H264Encoder) -> Vec<u8> {
        let mut conv = Converter::new(width, height);
        let frame: Vec<u8> = bgrx.repeat(width * height);
        conv.convert(&frame, width, height);
        enc.encode(conv.picture(), false).unwrap().data.to_vec()
    }

    #[test]
    fn a_unit_decodes_to_an_rgba_picture_of_its_size_and_colour() {
        let mut enc = H264Encoder::new(EncoderSettings::default()).unwrap();
        let mut dec = H264Decoder::new().unwrap();
        // Blue-ish grey in BGRX: B=0x90, G=0x40, R=0x20.
        let unit = encoded(160, 96, [0x90, 0x40, 0x20, 0], &mut enc);
        let picture = dec.decode_rgba(&unit).unwrap().expect("a picture");
        assert_eq!((picture.width, picture.height), (160, 96));
        assert_eq!(picture.rgba.len(), 160 * 96 * 4);
        let centre = &picture.rgba[(48 * 160 + 80) * 4..][..4];
        let near = |a: u8, b: u8| a.abs_diff(b) <= 6;
        assert!(
            near(centre[0], 0x20) && near(centre[1], 0x40) && near(centre[2], 0x90),
            "{centre:?}"
        );
        assert_eq!(centre[3], 255);

        // The two steps apart give the same picture, in a reused buffer.
        let unit = encoded(160, 96, [0x90, 0x40, 0x20, 0], &mut enc);
        let mut rgba = vec![7; 3];
        let decoded = dec.decode(&unit).unwrap().expect("a picture");
        assert_eq!(decoded.size(), (160, 96));
        decoded.write_rgba(&mut rgba);
        assert_eq!(rgba.len(), 160 * 96 * 4);
    }

    #[test]
    fn a_broken_slice_is_refused_with_its_reason() {
        let mut dec = H264Decoder::new().unwrap();
        // An IDR slice with no parameter sets before it.
        let garbage = [0, 0, 0, 1, 0x65, 0xff, 0x00, 0x12, 0x34];
        let e = dec.decode_rgba(&garbage).unwrap_err();
        assert!(matches!(e, DecodeError::Refused(_)), "{e:?}");
        assert!(
            e.to_string().starts_with("the decoder refused a frame"),
            "{e}"
        );
    }
}
