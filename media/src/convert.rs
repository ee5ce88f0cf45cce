//! BGRX → I420 (BT.601, limited range), the input openh264 wants.
//!
//! The arithmetic is openh264's own (SIMD where the CPU has it); this module adapts
//! captured frames to it: odd sizes are cropped to even (4:2:0 needs even sizes), and the
//! output buffer is reused from frame to frame.

use openh264::formats::{BgraSliceU8, YUVBuffer, YUVSource};

/// The even size a `width` × `height` frame is encoded at.
pub fn even_size(width: usize, height: usize) -> (usize, usize) {
    (width & !1, height & !1)
}

/// Converts BGRX frames into a reused I420 buffer.
pub struct Converter {
    yuv: YUVBuffer,
    width: usize,
    height: usize,
    /// Only used when the source must be cropped to an even size.
    scratch: Vec<u8>,
}

impl Converter {
    pub fn new(width: usize, height: usize) -> Self {
        let (w, h) = even_size(width, height);
        Self {
            yuv: YUVBuffer::new(w.max(2), h.max(2)),
            width: w.max(2),
            height: h.max(2),
            scratch: Vec::new(),
        }
    }

    /// The size of the converted pictures.
    pub fn picture_size(&self) -> (usize, usize) {
        (self.width, self.height)
    }

    /// The last converted picture.
    pub fn picture(&self) -> &YUVBuffer {
        &self.yuv
    }

    /// Converts one `src_width` × `src_height` BGRX frame (rows packed, 4 bytes a pixel).
    pub fn convert(&mut self, bgrx: &[u8], src_width: usize, src_height: usize) -> &YUVBuffer {
        let (w, h) = even_size(src_width, src_height);
        if (w, h) != (self.width, self.height) {
            *self = Self::new(src_width, src_height);
        }
        let data: &[u8] = if (w, h) == (src_width, src_height) {
            &bgrx[..w * h * 4]
        } else {
            self.scratch.clear();
            for row in bgrx.chunks_exact(src_width * 4).take(h) {
                self.scratch.extend_from_slice(&row[..w * 4]);
            }
            &self.scratch
        };
        self.yuv.read_bgra8(BgraSliceU8::new(data, (w, h)));
        &self.yuv
    }
}

/// Reads the Y, U and V samples at pixel (`x`, `y`) of an I420 picture.
pub fn yuv_at(picture: &impl YUVSource, x: usize, y: usize) -> (u8, u8, u8) {
    let (sy, su, sv) = picture.strides();
    (
        picture.y()[y * sy + x],
        picture.u()[(y / 2) * su + x / 2],
        picture.v()[(y / 2) * sv + x / 2],
    )
}

/// BT.601 limited-range YUV → RGB, the inverse a browser applies to an untagged stream.
pub fn yuv_to_rgb(y: u8, u: u8, v: u8) -> (u8, u8, u8) {
    let c = f32::from(y) - 16.0;
    let d = f32::from(u) - 128.0;
    let e = f32::from(v) - 128.0;
    let clamp = |x: f32| x.round().clamp(0.0, 255.0) as u8;
    (
        clamp(1.164 * c + 1.596 * e),
        clamp(1.164 * c - 0.392 * d - 0.813 * e),
        clamp(1.164 * c + 2.017 * d),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn solid(width: usize, height: usize, (r, g, b): (u8, u8, u8)) -> Vec<u8> {
        [b, g, r, 0].repeat(width * height)
    }

    fn close(a: (u8, u8, u8), b: (u8, u8, u8), tol: i16) -> bool {
        (i16::from(a.0) - i16::from(b.0)).abs() <= tol
            && (i16::from(a.1) - i16::from(b.1)).abs() <= tol
            && (i16::from(a.2) - i16::from(b.2)).abs() <= tol
    }

    #[test]
    fn known_colours_give_bt601_limited_range_values() {
        // (rgb, expected yuv) from ITU-R BT.601 with 16..235 / 16..240 ranges.
        let cases = [
            ((0, 0, 0), (16, 128, 128)),
            ((255, 255, 255), (235, 128, 128)),
            ((255, 0, 0), (82, 90, 240)),
            ((0, 255, 0), (145, 54, 34)),
            ((0, 0, 255), (41, 240, 110)),
        ];
        for (rgb, want) in cases {
            let mut conv = Converter::new(16, 16);
            let pic = conv.convert(&solid(16, 16, rgb), 16, 16);
            let got = yuv_at(pic, 5, 7);
            assert!(close(got, want, 2), "{rgb:?}: got {got:?}, want {want:?}");
        }
    }

    #[test]
    fn round_trip_keeps_colours_and_layout() {
        // Left half one colour, right half another: the layout must survive.
        let (w, h) = (64, 32);
        let (left, right) = ((200, 40, 40), (40, 180, 60));
        let mut frame = Vec::new();
        for _ in 0..h {
            frame.extend(solid(w / 2, 1, left));
            frame.extend(solid(w / 2, 1, right));
        }
        let mut conv = Converter::new(w, h);
        let pic = conv.convert(&frame, w, h);
        let (y, u, v) = yuv_at(pic, 8, 8);
        assert!(close(yuv_to_rgb(y, u, v), left, 4));
        let (y, u, v) = yuv_at(pic, 56, 20);
        assert!(close(yuv_to_rgb(y, u, v), right, 4));
    }

    #[test]
    fn odd_sizes_are_cropped_to_even() {
        let (w, h) = (33, 17);
        let mut conv = Converter::new(w, h);
        let pic = conv.convert(&solid(w, h, (255, 255, 255)), w, h);
        assert_eq!(pic.dimensions(), (32, 16));
        assert_eq!(yuv_at(pic, 31, 15).0, 235);
    }

    #[test]
    fn size_change_reallocates() {
        let mut conv = Converter::new(16, 16);
        conv.convert(&solid(16, 16, (0, 0, 0)), 16, 16);
        let pic = conv.convert(&solid(32, 8, (0, 0, 0)), 32, 8);
        assert_eq!(pic.dimensions(), (32, 8));
    }
}
