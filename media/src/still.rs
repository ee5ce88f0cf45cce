//! Which macroblocks of a picture have not changed for a while, for openh264's
//! still-macroblock map (`ENCODER_OPTION_STATIC_MB_MAP`, our patch in
//! `third_party/openh264-sys2`): a still macroblock is coded as P_Skip without openh264's
//! motion search and mode decision, which cost ~0.7 µs each on a 1080p picture where
//! almost nothing changed (8160 of them a frame).
//!
//! A macroblock counts as still once it has been the same in [`STILL_AFTER`] pictures in a
//! row since the last keyframe: the frames before that refine it (an IDR or a changed
//! region is coded coarsely, and the next P-frames sharpen it), so skipping it does not
//! freeze it at a worse quality than the encoder would reach anyway. A macroblock whose
//! frame QP was higher when it last went through mode decision than it is now is refined
//! again (the link has room for a sharper picture than it got).
//!
//! What changed between two pictures comes from the capture: a picture taken from a
//! [`BandPicture`](crate::picture::BandPicture) carries a [`ChangeMark`], and the bands
//! converted between two marks are all that can differ. Without marks (or when the log no
//! longer reaches back) the pictures are compared, 3 MB at 1080p.

use openh264::formats::YUVSource;

use crate::picture::ChangeMark;

/// Pictures in a row a macroblock must be unchanged in (since the last keyframe) to be
/// still: ~0.3 s at 30 fps, and more than the pipeline's refine re-encodes of a picture
/// that stopped changing.
pub const STILL_AFTER: u8 = 8;

/// A frame QP this much lower than the one a still macroblock was last coded at makes it
/// go through mode decision again.
const SHARPER_QP: u8 = 3;

/// The map openh264 reads (`SStaticMbMap` in our patched `codec_app_def.h`).
#[repr(C)]
pub struct StaticMbMap {
    map: *const u8,
    mb_count: std::ffi::c_int,
    copy_always: std::ffi::c_int,
    /// One byte per macroblock, non-zero where the picture may differ from the one before;
    /// `changed_count` 0: not known (openh264 then copies and analyses all of it).
    changed: *const u8,
    changed_count: std::ffi::c_int,
}

/// Tracks each macroblock's unchanged run against the previous picture.
#[derive(Default)]
pub struct StillMap {
    /// Picture size in pixels (the map is reset when it changes).
    size: (usize, usize),
    /// The previous picture's planes (packed, strides width and width / 2), when
    /// `prev_valid`: pictures without a usable [`ChangeMark`] are compared with it.
    prev: [Vec<u8>; 3],
    prev_valid: bool,
    /// The previous picture's mark, if it had one.
    prev_mark: Option<ChangeMark>,
    /// Pictures in a row each macroblock has been unchanged in.
    unchanged: Vec<u8>,
    /// The frame QP when each macroblock last went through mode decision.
    coded_qp: Vec<u8>,
    /// One byte per macroblock, non-zero: still (what openh264 reads).
    map: Vec<u8>,
    /// One byte per macroblock, non-zero: it changed since the previous picture (what
    /// openh264 reads), when `changed_known`.
    changed: Vec<u8>,
    changed_known: bool,
    /// Macroblocks marked still in the last map.
    pub still: usize,
    /// Tell openh264 to take none of our patch's shortcuts: copy the reference into every
    /// still macroblock's reconstruction, even where it already holds it, copy and analyse
    /// all of each picture, deblock every macroblock (tests compare the streams).
    #[cfg(test)]
    pub copy_always: bool,
}

impl StillMap {
    /// Finds where `picture` differs from the previous one and returns the map for encoding
    /// it, given the QP the last frame was coded at (`None`: unknown). With `mark` (where
    /// `picture` stands in its capture's change log) and the previous picture's, the
    /// macroblocks its bands touch count as changed, without comparing pixels; otherwise
    /// the pictures are compared.
    pub fn update(
        &mut self,
        picture: &impl YUVSource,
        qp: Option<u32>,
        mark: Option<&ChangeMark>,
    ) -> StaticMbMap {
        let (w, h) = picture.dimensions();
        let (mbw, mbh) = (w.div_ceil(16), h.div_ceil(16));
        let bands = mark
            .zip(self.prev_mark.as_ref())
            .and_then(|(now, before)| now.since(before));
        self.prev_mark = mark.cloned();
        if self.size != (w, h) {
            self.size = (w, h);
            self.prev = [vec![0; w * h], vec![0; w * h / 4], vec![0; w * h / 4]];
            self.unchanged = vec![0; mbw * mbh];
            self.coded_qp = vec![u8::MAX; mbw * mbh];
            self.map = vec![0; mbw * mbh];
            self.changed = vec![1; mbw * mbh];
            self.changed_known = false;
            copy_planes(picture, &mut self.prev);
            self.prev_valid = true;
        } else {
            self.changed_known = true;
            let changed = &mut self.changed;
            changed.fill(0);
            if let Some(bands) = bands {
                for b in bands {
                    for row in changed
                        .chunks_mut(mbw)
                        .take(b.y1.div_ceil(16))
                        .skip(b.y0 / 16)
                    {
                        row[b.x0 / 16..b.x1.div_ceil(16)].fill(1);
                    }
                }
                // `prev` is not kept up to date meanwhile.
                self.prev_valid = false;
            } else if self.prev_valid {
                let (sy, su, sv) = picture.strides();
                mark_changed(picture.y(), sy, &mut self.prev[0], w, h, 16, mbw, changed);
                let (cw, ch) = (w / 2, h / 2);
                mark_changed(picture.u(), su, &mut self.prev[1], cw, ch, 8, mbw, changed);
                mark_changed(picture.v(), sv, &mut self.prev[2], cw, ch, 8, mbw, changed);
            } else {
                // What changed since the last picture is not known: all of it did.
                copy_planes(picture, &mut self.prev);
                self.prev_valid = true;
                changed.fill(1);
                self.changed_known = false;
            }
            for (n, c) in self.unchanged.iter_mut().zip(changed.iter()) {
                *n = if *c != 0 { 0 } else { n.saturating_add(1) };
            }
        }
        let qp = qp.map_or(u8::MAX, |q| q.min(51) as u8);
        self.still = 0;
        for ((m, &n), coded) in self.map.iter_mut().zip(&self.unchanged).zip(&self.coded_qp) {
            let sharper = qp.saturating_add(SHARPER_QP) <= *coded;
            *m = u8::from(n >= STILL_AFTER && !sharper);
            self.still += usize::from(*m != 0);
        }
        StaticMbMap {
            map: self.map.as_ptr(),
            mb_count: self.map.len() as std::ffi::c_int,
            #[cfg(test)]
            copy_always: self.copy_always.into(),
            #[cfg(not(test))]
            copy_always: 0,
            changed: self.changed.as_ptr(),
            changed_count: if self.changed_known {
                self.changed.len() as std::ffi::c_int
            } else {
                0
            },
        }
    }

    /// After encoding with the last map: the frame's QP (`None`: unknown) and whether it
    /// was a keyframe (which restarts every run: the frames after it refine it).
    pub fn encoded(&mut self, qp: Option<u32>, keyframe: bool) {
        if keyframe {
            self.unchanged.fill(0);
        }
        let qp = qp.map_or(u8::MAX, |q| q.min(51) as u8);
        for (coded, &m) in self.coded_qp.iter_mut().zip(&self.map) {
            if m == 0 || keyframe {
                *coded = qp;
            }
        }
    }
}

/// Copies the picture's planes, packed.
fn copy_planes(picture: &impl YUVSource, to: &mut [Vec<u8>; 3]) {
    let (w, h) = picture.dimensions();
    let (sy, su, sv) = picture.strides();
    let planes = [
        (picture.y(), sy, w, h),
        (picture.u(), su, w / 2, h / 2),
        (picture.v(), sv, w / 2, h / 2),
    ];
    for ((src, stride, pw, ph), dst) in planes.into_iter().zip(to.iter_mut()) {
        for r in 0..ph {
            dst[r * pw..(r + 1) * pw].copy_from_slice(&src[r * stride..r * stride + pw]);
        }
    }
}

/// Marks in `changed` the macroblocks (`mb` lines and columns of this plane each, `mbw` a
/// row) whose lines of `src` differ from `prev`, and copies the lines that differ.
#[allow(clippy::too_many_arguments)]
fn mark_changed(
    src: &[u8],
    stride: usize,
    prev: &mut [u8],
    w: usize,
    h: usize,
    mb: usize,
    mbw: usize,
    changed: &mut [u8],
) {
    for r in 0..h {
        let line = &src[r * stride..r * stride + w];
        let old = &mut prev[r * w..(r + 1) * w];
        if line == &old[..] {
            continue;
        }
        let row = &mut changed[(r / mb) * mbw..(r / mb + 1) * mbw];
        for (i, (a, b)) in line.chunks(mb).zip(old.chunks(mb)).enumerate() {
            if a != b {
                row[i] = 1;
            }
        }
        old.copy_from_slice(line);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::picture::I420Picture;

    fn picture(w: usize, h: usize) -> I420Picture {
        I420Picture {
            y: vec![16; w * h],
            u: vec![128; w * h / 4],
            v: vec![128; w * h / 4],
            width: w,
            height: h,
        }
    }

    fn still(map: &StillMap) -> Vec<u8> {
        map.map.clone()
    }

    /// The changed macroblocks openh264 is told of (`None`: not known).
    fn changed(map: &StaticMbMap) -> Option<Vec<u8>> {
        let n = usize::try_from(map.changed_count).unwrap();
        // SAFETY: the map points into the `StillMap` it came from, which the caller holds.
        (n > 0).then(|| unsafe { std::slice::from_raw_parts(map.changed, n) }.to_vec())
    }

    /// A keyframe of `pic`, then `frames` more pictures of it, all at `qp`.
    fn encode_unchanged(m: &mut StillMap, pic: &I420Picture, qp: u32, frames: u8) {
        m.update(pic, Some(qp), None);
        m.encoded(Some(qp), true);
        for _ in 0..frames {
            m.update(pic, Some(qp), None);
            assert_eq!(m.still, 0, "still before {STILL_AFTER} unchanged pictures");
            m.encoded(Some(qp), false);
        }
    }

    #[test]
    fn a_macroblock_is_still_after_enough_unchanged_pictures() {
        let mut m = StillMap::default();
        let mut pic = picture(64, 32); // 4 × 2 macroblocks
        encode_unchanged(&mut m, &pic, 30, STILL_AFTER - 1);
        m.update(&pic, Some(30), None);
        assert_eq!(m.still, 8);
        m.encoded(Some(30), false);
        // One luma pixel of macroblock (1, 1) and one chroma sample of (3, 0) change.
        pic.y[20 * 64 + 20] = 200;
        pic.v[3 * 32 + 25] = 50;
        let map = m.update(&pic, Some(30), None);
        assert_eq!(still(&m), vec![1, 1, 1, 0, 1, 0, 1, 1]);
        assert_eq!(changed(&map), Some(vec![0, 0, 0, 1, 0, 1, 0, 0]));
        m.encoded(Some(30), false);
        // They stay out for STILL_AFTER pictures; a keyframe restarts every run.
        m.update(&pic, Some(30), None);
        assert_eq!(m.still, 6);
        m.encoded(Some(30), true);
        m.update(&pic, Some(30), None);
        assert_eq!(m.still, 0);
    }

    #[test]
    fn a_lower_qp_refines_still_macroblocks() {
        let mut m = StillMap::default();
        let pic = picture(32, 16);
        encode_unchanged(&mut m, &pic, 40, STILL_AFTER - 1);
        m.update(&pic, Some(40), None);
        assert_eq!(m.still, 2);
        m.encoded(Some(40), false);
        // The link frees: QP 30 now, so both go through mode decision once more...
        m.update(&pic, Some(30), None);
        assert_eq!(m.still, 0);
        m.encoded(Some(30), false);
        // ...and are still again at that QP; a small drop does not refine them.
        m.update(&pic, Some(29), None);
        assert_eq!(m.still, 2);
    }

    #[test]
    fn a_new_size_starts_afresh() {
        let mut m = StillMap::default();
        m.update(&picture(32, 16), Some(30), None);
        let map = m.update(&picture(64, 32), Some(30), None);
        assert_eq!(map.mb_count, 8);
        assert_eq!(m.still, 0);
        assert_eq!(changed(&map), None, "what changed is not known");
        let map = m.update(&picture(64, 32), Some(30), None);
        assert_eq!(changed(&map), Some(vec![0; 8]), "compared: nothing changed");
    }

    #[test]
    fn a_marked_picture_is_changed_where_its_bands_are() {
        use crate::picture::{Band, BandPicture};
        let mut bands = BandPicture::new(64, 32); // 4 × 2 macroblocks
        let mut m = StillMap::default();
        let (pic, mark) = (bands.snapshot(), bands.mark());
        m.update(&*pic, Some(30), Some(&mark));
        m.encoded(Some(30), true);
        for _ in 0..STILL_AFTER {
            m.update(&*pic, Some(30), Some(&mark));
            m.encoded(Some(30), false);
        }
        assert_eq!(m.still, 8);
        // White in the second macroblock's columns of the top row: only it changed.
        let band = Band {
            y0: 2,
            y1: 6,
            x0: 16,
            x1: 32,
        };
        bands.convert(&vec![255u8; 16 * 4 * 4], 16, band);
        let (pic, mark) = (bands.snapshot(), bands.mark());
        let map = m.update(&*pic, Some(30), Some(&mark));
        assert_eq!(still(&m), [1, 0, 1, 1, 1, 1, 1, 1]);
        assert_eq!(changed(&map), Some(vec![0, 1, 0, 0, 0, 0, 0, 0]));
        m.encoded(Some(30), false);
        // A picture without a mark, after marked ones: what changed is not known.
        let map = m.update(&*pic, Some(30), None);
        assert_eq!(m.still, 0, "all of it counts as changed");
        assert_eq!(changed(&map), None);
        m.encoded(Some(30), false);
        // Then the pictures are compared: unchanged, they count towards still again.
        for _ in 0..STILL_AFTER {
            m.update(&*pic, Some(30), Some(&mark));
            m.encoded(Some(30), false);
        }
        assert_eq!(m.still, 8);
    }
}
