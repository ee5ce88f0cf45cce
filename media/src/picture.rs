//! Pictures built band by band: the damaged rows of a captured BGRX frame, merged into
//! even-aligned bands and converted into a persistent I420 picture (X11's DAMAGE capture
//! and the Wayland portal's damage regions both feed it).

use openh264::formats::{BGRA8Source, RGB8Source, RGBSource, YUVBuffer, YUVSource};

use crate::convert::even_size;

/// Rows `[y0, y1)` of the monitor (even-aligned, for 4:2:0).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Band {
    pub y0: usize,
    pub y1: usize,
}

impl Band {
    pub fn rows(&self) -> usize {
        self.y1 - self.y0
    }
}

/// Merges damaged row ranges `(y, height)` (already clipped to `0..height`) into sorted,
/// disjoint, even-aligned bands within `0..height` (even). Ranges closer than `gap` rows
/// are joined: one larger grab beats two round trips.
pub fn merge_bands(mut rows: Vec<(usize, usize)>, height: usize, gap: usize) -> Vec<Band> {
    rows.retain(|&(_, h)| h > 0);
    rows.sort_unstable();
    let mut out: Vec<Band> = Vec::new();
    for (y, h) in rows {
        let y0 = (y & !1).min(height);
        let y1 = ((y + h + 1) & !1).min(height);
        if y0 >= y1 {
            continue;
        }
        match out.last_mut() {
            Some(last) if y0 <= last.y1 + gap => last.y1 = last.y1.max(y1),
            _ => out.push(Band { y0, y1 }),
        }
    }
    out
}

/// A persistent I420 picture that is updated band by band from BGRX frames.
pub struct BandPicture {
    width: usize,
    height: usize,
    y: Vec<u8>,
    u: Vec<u8>,
    v: Vec<u8>,
    scratch: Option<YUVBuffer>,
}

impl BandPicture {
    /// A black `width` × `height` picture (even sizes).
    pub fn new(width: usize, height: usize) -> Self {
        Self {
            width,
            height,
            y: vec![16; width * height],
            u: vec![128; width * height / 4],
            v: vec![128; width * height / 4],
            scratch: None,
        }
    }

    /// The picture size.
    pub fn size(&self) -> (usize, usize) {
        (self.width, self.height)
    }

    /// Converts rows `b` of `frame` (BGRX, rows `stride_px` pixels apart, starting at row 0,
    /// at least as wide and tall as the picture) into their place in the picture.
    pub fn convert(&mut self, frame: &[u8], stride_px: usize, b: Band) {
        let stride = stride_px * 4;
        let (w, rows) = (self.width, b.rows());
        let src = BgrxRows {
            data: &frame[b.y0 * stride..b.y1 * stride],
            width: w,
            rows,
            stride_px,
        };
        let scratch = match &mut self.scratch {
            Some(s) if s.dimensions() == (w, rows) => s,
            other => other.insert(YUVBuffer::new(w, rows)),
        };
        scratch.read_bgra8(src);
        let (sy, su, sv) = scratch.strides();
        let (cw, cy0, crows) = (w / 2, b.y0 / 2, rows / 2);
        for r in 0..rows {
            let dst = (b.y0 + r) * w;
            self.y[dst..dst + w].copy_from_slice(&scratch.y()[r * sy..r * sy + w]);
        }
        for r in 0..crows {
            let dst = (cy0 + r) * cw;
            self.u[dst..dst + cw].copy_from_slice(&scratch.u()[r * su..r * su + cw]);
            self.v[dst..dst + cw].copy_from_slice(&scratch.v()[r * sv..r * sv + cw]);
        }
    }

    /// A copy of the picture as it is now.
    pub fn picture(&self) -> I420Picture {
        I420Picture {
            y: self.y.clone(),
            u: self.u.clone(),
            v: self.v.clone(),
            width: self.width,
            height: self.height,
        }
    }
}

/// Rows of BGRX pixels, `stride_px` pixels apart, of which the first `width` are used.
#[derive(Clone, Copy)]
struct BgrxRows<'a> {
    data: &'a [u8],
    width: usize,
    rows: usize,
    stride_px: usize,
}

impl RGBSource for BgrxRows<'_> {
    fn dimensions(&self) -> (usize, usize) {
        (self.width, self.rows)
    }
    fn pixel_f32(&self, x: usize, y: usize) -> (f32, f32, f32) {
        let i = (y * self.stride_px + x) * 4;
        let p = &self.data[i..i + 3];
        (f32::from(p[2]), f32::from(p[1]), f32::from(p[0]))
    }
}

impl RGB8Source for BgrxRows<'_> {
    fn dimensions_padded(&self) -> (usize, usize) {
        (self.stride_px, self.rows)
    }
    fn rgb8_data(&self) -> &[u8] {
        self.data
    }
    fn pixel_stride(&self) -> usize {
        4
    }
    fn rgb_channel_offsets(&self) -> (usize, usize, usize) {
        (2, 1, 0)
    }
}

impl BGRA8Source for BgrxRows<'_> {}

/// One I420 picture (planes packed, strides = width and width / 2).
#[derive(Clone, Debug)]
pub struct I420Picture {
    pub y: Vec<u8>,
    pub u: Vec<u8>,
    pub v: Vec<u8>,
    pub width: usize,
    pub height: usize,
}

impl I420Picture {
    /// The size of [`half`](Self::half)'s picture.
    pub fn half_size(&self) -> (usize, usize) {
        let (w, h) = even_size(self.width / 2, self.height / 2);
        (w.max(2), h.max(2))
    }

    /// This picture at half the width and half the height (2×2 box filter), even-sized.
    pub fn half(&self) -> I420Picture {
        let (w, h) = self.half_size();
        let shrink = |src: &[u8], sw: usize, dw: usize, dh: usize| {
            let mut out = Vec::with_capacity(dw * dh);
            for y in 0..dh {
                let (r0, r1) = (&src[2 * y * sw..], &src[(2 * y + 1) * sw..]);
                out.extend((0..dw).map(|x| {
                    let s = u16::from(r0[2 * x])
                        + u16::from(r0[2 * x + 1])
                        + u16::from(r1[2 * x])
                        + u16::from(r1[2 * x + 1]);
                    ((s + 2) / 4) as u8
                }));
            }
            out
        };
        I420Picture {
            y: shrink(&self.y, self.width, w, h),
            u: shrink(&self.u, self.width / 2, w / 2, h / 2),
            v: shrink(&self.v, self.width / 2, w / 2, h / 2),
            width: w,
            height: h,
        }
    }
}

impl YUVSource for I420Picture {
    fn dimensions(&self) -> (usize, usize) {
        (self.width, self.height)
    }
    fn strides(&self) -> (usize, usize, usize) {
        (self.width, self.width / 2, self.width / 2)
    }
    fn y(&self) -> &[u8] {
        &self.y
    }
    fn u(&self) -> &[u8] {
        &self.u
    }
    fn v(&self) -> &[u8] {
        &self.v
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn damaged_rows_merge_into_even_bands() {
        // Two clock rows near the top, a moving region further down, one overlapping.
        let bands = merge_bands(vec![(500, 300), (3, 20), (30, 10), (790, 20)], 1080, 16);
        assert_eq!(
            bands,
            vec![Band { y0: 2, y1: 40 }, Band { y0: 500, y1: 810 }]
        );
        // Clipped to the (even) picture height; empty ranges vanish.
        assert_eq!(
            merge_bands(vec![(1070, 50), (10, 0)], 1080, 16),
            vec![Band { y0: 1070, y1: 1080 }]
        );
        // Far apart: separate grabs.
        assert_eq!(merge_bands(vec![(0, 2), (100, 2)], 1080, 16).len(), 2);
    }

    #[test]
    fn a_halved_picture_averages_each_2x2_block() {
        let (w, h) = (8, 4);
        let pic = I420Picture {
            y: (0..w * h).map(|i| (i % w) as u8 * 10).collect(),
            u: vec![100; w * h / 4],
            v: vec![200; w * h / 4],
            width: w,
            height: h,
        };
        let half = pic.half();
        assert_eq!((half.width, half.height), (4, 2));
        assert_eq!(&half.y[..4], &[5, 25, 45, 65]);
        assert_eq!(half.u, vec![100; 2]);
        assert_eq!(half.v, vec![200; 2]);
    }
}
