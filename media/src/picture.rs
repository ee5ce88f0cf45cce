//! Pictures built band by band: the damaged rectangles of a captured BGRX frame, merged into
//! even-aligned bands and converted into a persistent I420 picture (X11's DAMAGE capture
//! and the Wayland portal's damage regions both feed it).

use std::collections::VecDeque;
use std::sync::{Arc, Mutex};

use openh264::formats::YUVSource;

use crate::convert::even_size;

/// Rows `[y0, y1)` and columns `[x0, x1)` of the monitor: even-aligned rows (for 4:2:0),
/// columns on 16-pixel boundaries (the converter's vector width) or the picture's edge.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Band {
    pub y0: usize,
    pub y1: usize,
    pub x0: usize,
    pub x1: usize,
}

impl Band {
    /// All of a `width` × `height` picture.
    pub fn whole(width: usize, height: usize) -> Self {
        Self {
            y0: 0,
            y1: height,
            x0: 0,
            x1: width,
        }
    }

    /// Full-width rows `[y0, y1)` of a picture `width` wide.
    pub fn rows_of(y0: usize, y1: usize, width: usize) -> Self {
        Self {
            y0,
            y1,
            x0: 0,
            x1: width,
        }
    }

    pub fn rows(&self) -> usize {
        self.y1 - self.y0
    }

    pub fn width(&self) -> usize {
        self.x1 - self.x0
    }
}

/// Columns to convert at least (narrower spans are widened): the vector converter wants
/// 32, and a few more cost less than a call.
const MIN_COLUMNS: usize = 64;

/// Merges damaged rectangles (already clipped to `width` × `height`, both even) into
/// sorted, disjoint bands of rows, each as wide as the union of its rectangles' columns.
/// Rectangles whose rows are closer than `gap` are joined: one larger grab beats two round
/// trips.
pub fn merge_bands(mut rects: Vec<Band>, width: usize, height: usize, gap: usize) -> Vec<Band> {
    rects.retain(|r| r.y1 > r.y0 && r.x1 > r.x0);
    rects.sort_unstable_by_key(|r| (r.y0, r.y1));
    let mut out: Vec<Band> = Vec::new();
    for r in rects {
        let y0 = (r.y0 & !1).min(height);
        let y1 = ((r.y1 + 1) & !1).min(height);
        if y0 >= y1 {
            continue;
        }
        match out.last_mut() {
            Some(last) if y0 <= last.y1 + gap => {
                last.y1 = last.y1.max(y1);
                last.x0 = last.x0.min(r.x0);
                last.x1 = last.x1.max(r.x1);
            }
            _ => out.push(Band {
                y0,
                y1,
                x0: r.x0,
                x1: r.x1,
            }),
        }
    }
    for b in &mut out {
        let x1 = b.x1.next_multiple_of(16).max(b.x0 + MIN_COLUMNS).min(width);
        let x0 = (b.x0 & !15).min(x1.saturating_sub(MIN_COLUMNS) & !15);
        (b.x0, b.x1) = (x0, x1);
    }
    out
}

/// A persistent I420 picture that is updated band by band from BGRX frames.
///
/// It is kept as a small pool of pictures that the encoder is handed in turn. Bands are
/// converted straight into one nobody else holds (the working picture), and only where it
/// is stale and this frame did not cover is it brought up to date from the newest: with the
/// same region changing frame after frame (a scrolling window, a clock) nothing is copied.
pub struct BandPicture {
    width: usize,
    height: usize,
    /// The pool, each with the bands where it may differ from the newest (`None`: more
    /// than [`LISTED`], so anywhere). The encoder and the capture slot hold some.
    pictures: Vec<(Arc<I420Picture>, Option<Vec<Band>>)>,
    /// Which of `pictures` is the newest (handed out by the last [`snapshot`](Self::snapshot)).
    newest: usize,
    /// The picture bands have been converted into since the last snapshot, and those bands.
    working: Option<(usize, Vec<Band>)>,
    /// Every band converted, numbered, for [`ChangeMark::since`].
    log: Arc<Mutex<ChangeLog>>,
}

/// Bands a [`ChangeLog`] remembers: ~2 s of a busy screen at 30 fps and a few bands a
/// frame; a mark older than that knows only that anything may have changed.
const LOGGED: usize = 256;

/// The bands converted into a [`BandPicture`], numbered from 0 in order.
#[derive(Debug, Default)]
struct ChangeLog {
    /// How many bands were converted in all (the next one's number).
    converted: u64,
    /// The last [`LOGGED`] of them; the front one is number `converted - bands.len()`.
    bands: VecDeque<Band>,
}

/// Where a picture taken from a [`BandPicture`] stands in its change log: which bands
/// differ between it and another taken earlier is known without comparing pixels (the
/// encoder's still map wants it for each frame, and a 1080p picture is 3 MB to compare).
#[derive(Clone, Debug)]
pub struct ChangeMark {
    log: Arc<Mutex<ChangeLog>>,
    /// Bands converted before the picture was taken.
    converted: u64,
    /// 1: the picture itself; 2: its [`half`](I420Picture::half).
    div: usize,
    /// The picture's size (at `div`).
    size: (usize, usize),
}

impl ChangeMark {
    /// The mark of `picture`'s [`half`](I420Picture::half).
    pub fn halved(&self, picture: &I420Picture) -> Self {
        Self {
            div: self.div * 2,
            size: picture.half_size(),
            ..self.clone()
        }
    }

    /// The bands (in this picture's pixels) outside which this picture equals `earlier`'s;
    /// `None` if that is not known (another picture's mark, another scale, an older
    /// picture than the log remembers, or a later one).
    pub fn since(&self, earlier: &ChangeMark) -> Option<Vec<Band>> {
        if !Arc::ptr_eq(&self.log, &earlier.log)
            || (self.div, self.size) != (earlier.div, earlier.size)
            || earlier.converted > self.converted
        {
            return None;
        }
        let log = self.log.lock().unwrap_or_else(|e| e.into_inner());
        let first = log.converted - log.bands.len() as u64;
        if earlier.converted < first || self.converted > log.converted {
            return None;
        }
        let (d, (w, h)) = (self.div, self.size);
        let range = (earlier.converted - first) as usize..(self.converted - first) as usize;
        let bands = log.bands.range(range).map(|b| Band {
            y0: (b.y0 / d).min(h),
            y1: b.y1.div_ceil(d).min(h),
            x0: (b.x0 / d).min(w),
            x1: b.x1.div_ceil(d).min(w),
        });
        Some(bands.filter(|b| b.rows() > 0 && b.width() > 0).collect())
    }
}

/// Pictures kept for reuse: the encoder holds the last one, the capture slot the next,
/// and one is free.
const SNAPSHOTS: usize = 3;

/// Stale bands listed per picture before it counts as stale everywhere.
const LISTED: usize = 32;

impl BandPicture {
    /// A black `width` × `height` picture (even sizes).
    pub fn new(width: usize, height: usize) -> Self {
        let black = I420Picture {
            y: vec![16; width * height],
            u: vec![128; width * height / 4],
            v: vec![128; width * height / 4],
            width,
            height,
        };
        Self {
            width,
            height,
            pictures: vec![(Arc::new(black), Some(Vec::new()))],
            newest: 0,
            working: None,
            log: Arc::default(),
        }
    }

    /// The mark of a picture taken now ([`snapshot`](Self::snapshot) or
    /// [`picture`](Self::picture)).
    pub fn mark(&self) -> ChangeMark {
        let converted = self.log.lock().unwrap_or_else(|e| e.into_inner()).converted;
        ChangeMark {
            log: self.log.clone(),
            converted,
            div: 1,
            size: (self.width, self.height),
        }
    }

    /// The picture size.
    pub fn size(&self) -> (usize, usize) {
        (self.width, self.height)
    }

    /// The picture this frame's bands go into: the newest if nobody else holds it, else
    /// another nobody holds, else (all held) a new copy of the newest, the pool kept at
    /// [`SNAPSHOTS`] (one dropped from it lives on with its holder).
    fn working(&mut self) -> usize {
        if let Some((i, _)) = &self.working {
            return *i;
        }
        let newest = self.newest;
        let count = self.pictures.len();
        let mut unheld = |i: usize| Arc::get_mut(&mut self.pictures[i].0).is_some();
        let free = if unheld(newest) {
            Some(newest)
        } else {
            (0..count).find(|&i| unheld(i))
        };
        let i = free.unwrap_or_else(|| {
            let copy = (*self.pictures[newest].0).clone();
            if self.pictures.len() >= SNAPSHOTS {
                let drop = usize::from(newest == 0);
                self.pictures.swap_remove(drop);
                if self.newest == self.pictures.len() {
                    self.newest = drop;
                }
            }
            self.pictures.push((Arc::new(copy), Some(Vec::new())));
            self.pictures.len() - 1
        });
        self.working = Some((i, Vec::new()));
        i
    }

    /// Converts band `b` of the picture from `data`: BGRX rows `stride_px` pixels apart,
    /// whose first pixel is the band's top-left one (row `b.y0`, column `b.x0`).
    pub fn convert(&mut self, data: &[u8], stride_px: usize, b: Band) {
        if b.width() == 0 || b.rows() == 0 {
            return;
        }
        let t = self.working();
        let pic =
            Arc::get_mut(&mut self.pictures[t].0).expect("nobody else holds the working picture");
        convert_into(pic, data, stride_px, b);
        {
            let mut log = self.log.lock().unwrap_or_else(|e| e.into_inner());
            if log.bands.len() == LOGGED {
                log.bands.pop_front();
            }
            log.bands.push_back(b);
            log.converted += 1;
        }
        // Every other picture now differs from the one being made here, too.
        for (i, (_, stale)) in self.pictures.iter_mut().enumerate() {
            match stale {
                _ if i == t => {}
                Some(list) if list.len() < LISTED => list.push(b),
                _ => *stale = None,
            }
        }
        if let Some((_, fresh)) = &mut self.working {
            fresh.push(b);
        }
    }

    /// The picture as it is now, for the encoder (it never changes once handed out): the
    /// working picture, brought up to date from the newest where it is stale and this
    /// frame's bands did not cover.
    pub fn snapshot(&mut self) -> Arc<I420Picture> {
        let Some((t, fresh)) = self.working.take() else {
            return self.pictures[self.newest].0.clone();
        };
        if t != self.newest {
            let newest = self.pictures[self.newest].0.clone();
            let stale = self.pictures[t].1.replace(Vec::new());
            let pic = Arc::get_mut(&mut self.pictures[t].0)
                .expect("nobody else holds the working picture");
            let stale = stale.unwrap_or_else(|| vec![Band::whole(self.width, self.height)]);
            for b in stale.into_iter().flat_map(|b| subtract(b, &fresh)) {
                copy_band(&newest, pic, &b);
            }
            self.newest = t;
        }
        self.pictures[t].0.clone()
    }

    /// A copy of the picture as it is now.
    pub fn picture(&self) -> I420Picture {
        let mut out = (*self.pictures[self.newest].0).clone();
        if let Some((t, fresh)) = &self.working {
            for b in fresh {
                copy_band(&self.pictures[*t].0, &mut out, b);
            }
        }
        out
    }
}

/// The parts of `a` outside every band of `cuts` (rectangles; even rows and columns stay
/// so, as the bands' edges are).
fn subtract(a: Band, cuts: &[Band]) -> Vec<Band> {
    let mut pieces = vec![a];
    for c in cuts {
        let mut next = Vec::with_capacity(pieces.len() + 3);
        for p in pieces {
            let (y0, y1) = (p.y0.max(c.y0), p.y1.min(c.y1));
            let (x0, x1) = (p.x0.max(c.x0), p.x1.min(c.x1));
            if y0 >= y1 || x0 >= x1 {
                next.push(p);
                continue;
            }
            if p.y0 < y0 {
                next.push(Band { y1: y0, ..p });
            }
            if y1 < p.y1 {
                next.push(Band { y0: y1, ..p });
            }
            if p.x0 < x0 {
                next.push(Band {
                    y0,
                    y1,
                    x1: x0,
                    ..p
                });
            }
            if x1 < p.x1 {
                next.push(Band {
                    y0,
                    y1,
                    x0: x1,
                    ..p
                });
            }
        }
        pieces = next;
    }
    pieces
}

/// Copies band `b` of `from` into `to` (pictures of the same size).
fn copy_band(from: &I420Picture, to: &mut I420Picture, b: &Band) {
    let (pw, cpw) = (from.width, from.width / 2);
    for r in b.y0..b.y1 {
        let at = r * pw;
        to.y[at + b.x0..at + b.x1].copy_from_slice(&from.y[at + b.x0..at + b.x1]);
    }
    let (cx0, cx1) = (b.x0 / 2, b.x1 / 2);
    for r in b.y0 / 2..b.y1 / 2 {
        let at = r * cpw;
        to.u[at + cx0..at + cx1].copy_from_slice(&from.u[at + cx0..at + cx1]);
        to.v[at + cx0..at + cx1].copy_from_slice(&from.v[at + cx0..at + cx1]);
    }
}

/// Converts band `b` of `pic` from `data` (see [`BandPicture::convert`]).
fn convert_into(pic: &mut I420Picture, data: &[u8], stride_px: usize, b: Band) {
    let (w, rows) = (b.width(), b.rows());
    let needed = ((rows - 1) * stride_px + w) * 4;
    assert!(data.len() >= needed, "a band's pixels run past the frame");
    // The converter walks whole strides, two rows at a time (and silently leaves out a
    // shorter last pair), and a band right of column 0 in a frame's last rows ends
    // sooner: those rows are packed first.
    let packed: Vec<u8>;
    let (data, stride_px) = if data.len() >= rows * stride_px * 4 {
        (data, stride_px)
    } else {
        let row = |r: usize| &data[r * stride_px * 4..(r * stride_px + w) * 4];
        packed = (0..rows).flat_map(row).copied().collect();
        (&packed[..], w)
    };
    let (pw, cpw) = (pic.width, pic.width / 2);
    let y_at = b.y0 * pw + b.x0;
    let c_at = (b.y0 / 2) * cpw + b.x0 / 2;
    // Straight into the picture's planes, where whole strides of them follow the band's
    // corner: all its rows but the last two of a band at the bottom right of column 0,
    // which go through a scratch.
    let direct = if y_at + rows * pw <= pic.y.len() {
        rows
    } else {
        rows - 2
    };
    if direct > 0 {
        bgrx_to_i420(
            &data[..direct * stride_px * 4],
            stride_px,
            (&mut pic.y[y_at..y_at + direct * pw], pw),
            &mut pic.u[c_at..c_at + direct / 2 * cpw],
            &mut pic.v[c_at..c_at + direct / 2 * cpw],
            cpw,
            w,
        );
    }
    if direct < rows {
        let (mut y, mut u, mut v) = (vec![0; 2 * w], vec![0; w / 2], vec![0; w / 2]);
        let src = &data[direct * stride_px * 4..(direct + 2) * stride_px * 4];
        bgrx_to_i420(src, stride_px, (&mut y, w), &mut u, &mut v, w / 2, w);
        for r in 0..2 {
            let at = y_at + (direct + r) * pw;
            pic.y[at..at + w].copy_from_slice(&y[r * w..(r + 1) * w]);
        }
        let at = c_at + direct / 2 * cpw;
        pic.u[at..at + w / 2].copy_from_slice(&u);
        pic.v[at..at + w / 2].copy_from_slice(&v);
    }
}

/// BGRX rows (`src_stride_px` pixels apart) -> I420 (BT.601, limited range, as openh264's
/// own converter), `w` pixels wide, into planes whose strides are given (`y.1` for luma,
/// `c_stride` for chroma). Every slice holds whole strides: the rows are `src.len()` /
/// (4 × `src_stride_px`), an even number. One pass, SIMD (the `yuv` crate; openh264's
/// converter went through RGB into a scratch picture, copied in after: for the 686 changed
/// rows of the 1080p benchmark, see `porthole bench`'s convert figures).
fn bgrx_to_i420(
    src: &[u8],
    src_stride_px: usize,
    y: (&mut [u8], usize),
    u: &mut [u8],
    v: &mut [u8],
    c_stride: usize,
    w: usize,
) {
    let rows = src.len() / (src_stride_px * 4);
    let mut planes = yuv::YuvPlanarImageMut {
        y_plane: yuv::BufferStoreMut::Borrowed(y.0),
        y_stride: y.1 as u32,
        u_plane: yuv::BufferStoreMut::Borrowed(u),
        u_stride: c_stride as u32,
        v_plane: yuv::BufferStoreMut::Borrowed(v),
        v_stride: c_stride as u32,
        width: w as u32,
        height: rows as u32,
    };
    yuv::bgra_to_yuv420(
        &mut planes,
        src,
        (src_stride_px * 4) as u32,
        yuv::YuvRange::Limited,
        yuv::YuvStandardMatrix::Bt601,
        yuv::YuvConversionMode::Balanced,
    )
    .expect("the planes and pixels were sized for the band");
}

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

    /// A damaged rectangle at `(x, y)`, `w` × `h`.
    fn rect(x: usize, y: usize, w: usize, h: usize) -> Band {
        Band {
            y0: y,
            y1: y + h,
            x0: x,
            x1: x + w,
        }
    }

    #[test]
    fn damaged_rows_merge_into_even_bands() {
        // Two clock rows near the top, a moving region further down, one overlapping.
        let bands = merge_bands(
            vec![
                rect(0, 500, 1920, 300),
                rect(45, 3, 360, 20),
                rect(100, 30, 50, 10),
                rect(0, 790, 1920, 20),
            ],
            1920,
            1080,
            16,
        );
        assert_eq!(
            bands,
            vec![
                Band {
                    y0: 2,
                    y1: 40,
                    x0: 32,
                    x1: 416
                },
                Band::rows_of(500, 810, 1920)
            ]
        );
        // Clipped to the (even) picture height; empty ranges vanish.
        assert_eq!(
            merge_bands(
                vec![rect(0, 1070, 1920, 50), rect(0, 10, 1920, 0)],
                1920,
                1080,
                16
            ),
            vec![Band::rows_of(1070, 1080, 1920)]
        );
        // Far apart: separate grabs.
        let apart = vec![rect(0, 0, 8, 2), rect(0, 100, 8, 2)];
        assert_eq!(merge_bands(apart, 1920, 1080, 16).len(), 2);
    }

    #[test]
    fn narrow_damage_is_widened_within_the_picture() {
        // A blinking cursor (2 px wide) at the right edge of a 1366-wide picture.
        let b = merge_bands(vec![rect(1360, 100, 2, 18)], 1366, 768, 16);
        assert_eq!(
            b,
            vec![Band {
                y0: 100,
                y1: 118,
                x0: 1296,
                x1: 1366
            }]
        );
        assert!(b[0].width() >= MIN_COLUMNS);
        // A picture narrower than the minimum: all of its columns.
        let b = merge_bands(vec![rect(10, 0, 2, 2)], 32, 32, 16);
        assert_eq!((b[0].x0, b[0].x1), (0, 32));
    }

    #[test]
    fn a_band_lands_in_its_columns_only() {
        // A 64×4 picture, all black; a white 32×2 band at column 16, row 2, from packed data.
        let mut pic = BandPicture::new(64, 4);
        let band = Band {
            y0: 2,
            y1: 4,
            x0: 16,
            x1: 48,
        };
        let data = vec![255u8; band.width() * band.rows() * 4];
        pic.convert(&data, band.width(), band);
        let p = pic.picture();
        for y in 0..4 {
            for x in 0..64 {
                let inside = (16..48).contains(&x) && y >= 2;
                let luma = p.y[y * 64 + x];
                assert_eq!(luma > 200, inside, "luma {luma} at ({x}, {y})");
            }
        }
        // The chroma of white and black alike is grey.
        assert!(p.u.iter().chain(&p.v).all(|&c| (126..=130).contains(&c)));
        // The same band from a frame-wide buffer (stride 64, starting at the band's corner).
        let mut wide = BandPicture::new(64, 4);
        let mut frame = vec![0u8; 64 * 4 * 4];
        for y in 2..4 {
            for x in 16..48 {
                frame[(y * 64 + x) * 4..(y * 64 + x) * 4 + 4].fill(255);
            }
        }
        wide.convert(&frame[(2 * 64 + 16) * 4..], 64, band);
        assert_eq!(wide.picture().y, p.y);
    }

    #[test]
    fn bands_convert_as_the_whole_frame_does() {
        // A noisy 96×64 BGRX frame; bands converted one by one (from the frame-wide buffer,
        // starting at each band's corner) must give the pixels the whole frame gives,
        // including a band at the bottom, right of column 0, whose last rows end before a
        // whole stride does.
        let (w, h) = (96, 64);
        let frame = crate::noise_bytes(w * h * 4, 7);
        let mut whole = BandPicture::new(w, h);
        whole.convert(&frame, w, Band::whole(w, h));
        let full = whole.picture();
        // BT.601, limited range (openh264's own arithmetic, within rounding).
        for (i, px) in frame.chunks_exact(4).enumerate() {
            let (b, g, r) = (u32::from(px[0]), u32::from(px[1]), u32::from(px[2]));
            let want = ((66 * r + 129 * g + 25 * b) >> 8) + 16;
            let got = u32::from(full.y[i]);
            assert!(got.abs_diff(want) <= 1, "luma {got}, want {want} at {i}");
        }
        let bands = [
            Band {
                y0: 0,
                y1: 8,
                x0: 0,
                x1: 32,
            },
            Band {
                y0: 20,
                y1: 34,
                x0: 16,
                x1: 80,
            },
            Band {
                y0: 50,
                y1: 64,
                x0: 32,
                x1: 96,
            },
            Band {
                y0: 62,
                y1: 64,
                x0: 64,
                x1: 96,
            },
        ];
        let mut pic = BandPicture::new(w, h);
        for b in bands {
            pic.convert(&frame[(b.y0 * w + b.x0) * 4..], w, b);
        }
        let p = pic.picture();
        for b in bands {
            for y in b.y0..b.y1 {
                let row = y * w;
                assert_eq!(
                    p.y[row + b.x0..row + b.x1],
                    full.y[row + b.x0..row + b.x1],
                    "luma row {y} of {b:?}"
                );
            }
            for y in b.y0 / 2..b.y1 / 2 {
                let row = y * w / 2;
                let cols = row + b.x0 / 2..row + b.x1 / 2;
                assert_eq!(
                    p.u[cols.clone()],
                    full.u[cols.clone()],
                    "u row {y} of {b:?}"
                );
                assert_eq!(p.v[cols.clone()], full.v[cols], "v row {y} of {b:?}");
            }
        }
        // Nothing outside the bands was touched (black stays black).
        assert_eq!(p.y[10 * w], 16);
        assert_eq!(p.y[63 * w + 31], 16);
    }

    /// Paints band `b` of `pic` white.
    fn white(pic: &mut BandPicture, b: Band) {
        let data = vec![255u8; b.width() * b.rows() * 4];
        pic.convert(&data, b.width(), b);
    }

    #[test]
    fn a_reused_snapshot_is_brought_up_to_date() {
        let mut pic = BandPicture::new(64, 8);
        let first = pic.snapshot();
        assert!(
            Arc::ptr_eq(&first, &pic.snapshot()),
            "nothing changed: the same picture"
        );
        white(&mut pic, Band::rows_of(0, 2, 64));
        let held = pic.snapshot();
        assert!(!Arc::ptr_eq(&first, &held), "the first is still held");
        let first_ptr = Arc::as_ptr(&first);
        drop(first);
        white(&mut pic, Band::rows_of(2, 4, 64));
        white(
            &mut pic,
            Band {
                y0: 6,
                y1: 8,
                x0: 16,
                x1: 32,
            },
        );
        // The dropped one comes back, with the band it missed and both new ones in it; the
        // held one is untouched.
        let again = pic.snapshot();
        assert_eq!(Arc::as_ptr(&again), first_ptr, "reused");
        let now = pic.picture();
        assert_eq!((&again.y, &again.u, &again.v), (&now.y, &now.u, &now.v));
        assert!(held.y[..64 * 2].iter().all(|&l| l > 200));
        assert!(
            held.y[64 * 2..].iter().all(|&l| l == 16),
            "a held snapshot never changes"
        );
        // More bands than are listed: the reused snapshot is brought up to date whole.
        drop(again);
        let held_too = pic.snapshot();
        for r in 0..LISTED + 1 {
            let y0 = (r % 4) * 2;
            white(&mut pic, Band::rows_of(y0, y0 + 2, 64));
        }
        drop(held_too);
        let whole = pic.snapshot();
        assert_eq!(whole.y, pic.picture().y);
        // All held: a fresh copy, the pool not kept beyond its size.
        let mut all = vec![whole];
        for i in 0..SNAPSHOTS + 1 {
            white(&mut pic, Band::rows_of(i % 4 * 2, i % 4 * 2 + 2, 64));
            all.push(pic.snapshot());
        }
        assert!(pic.pictures.len() <= SNAPSHOTS);
        assert_eq!(all.last().unwrap().y, pic.picture().y);
        assert_eq!(held.y.len(), 64 * 8);
    }

    /// Random bands over many frames, with the encoder's and the slot's holding and dropping
    /// pictures at random: every snapshot is the whole screen converted, and stays so.
    #[test]
    fn snapshots_are_the_screen_whatever_is_held() {
        let (w, h) = (96, 48);
        let mut screen = crate::noise_bytes(w * h * 4, 1);
        let mut pic = BandPicture::new(w, h);
        pic.convert(&screen, w, Band::whole(w, h));
        let mut state = 12345u32;
        let mut next = move |n: usize| {
            state ^= state << 13;
            state ^= state >> 17;
            state ^= state << 5;
            state as usize % n
        };
        let mut held: Vec<(Arc<I420Picture>, I420Picture)> = Vec::new();
        for frame in 0..400 {
            // Some bands (sometimes none, sometimes the same as the frame before).
            let mut rects = Vec::new();
            for _ in 0..next(4) {
                let (y0, x0) = (next(h / 2) * 2, next(w / 16) * 16);
                let (rows, cols) = (2 + next(h / 4) * 2, 16 + next(3) * 16);
                rects.push(Band {
                    y0,
                    y1: (y0 + rows).min(h),
                    x0,
                    x1: (x0 + cols).min(w),
                });
            }
            if frame % 7 == 0 {
                rects = vec![Band::rows_of(10, 30, w)];
            }
            let fresh = crate::noise_bytes(w * h * 4, frame as u32 + 2);
            for b in merge_bands(rects, w, h, 0) {
                for y in b.y0..b.y1 {
                    let at = (y * w + b.x0) * 4..(y * w + b.x1) * 4;
                    screen[at.clone()].copy_from_slice(&fresh[at]);
                }
                pic.convert(&screen[(b.y0 * w + b.x0) * 4..], w, b);
            }
            let snap = pic.snapshot();
            let mut want = BandPicture::new(w, h);
            want.convert(&screen, w, Band::whole(w, h));
            let want = want.picture();
            assert_eq!(
                (&snap.y, &snap.u, &snap.v),
                (&want.y, &want.u, &want.v),
                "frame {frame}"
            );
            held.push((snap, want));
            // The encoder and the slot let go of some, in any order.
            while held.len() > 1 + next(3) {
                held.remove(next(held.len()));
            }
            for (h, copy) in &held {
                assert!(
                    h.y == copy.y && h.u == copy.u && h.v == copy.v,
                    "a held picture changed"
                );
            }
        }
    }

    #[test]
    fn a_mark_knows_the_bands_converted_since_an_earlier_one() {
        let mut pic = BandPicture::new(64, 32);
        let a = pic.mark();
        assert_eq!(pic.mark().since(&a), Some(vec![]), "nothing converted");
        let band = Band {
            y0: 2,
            y1: 6,
            x0: 16,
            x1: 48,
        };
        white(&mut pic, band);
        let b = pic.mark();
        white(&mut pic, Band::rows_of(30, 32, 64));
        let c = pic.mark();
        assert_eq!(b.since(&a), Some(vec![band]));
        assert_eq!(c.since(&a), Some(vec![band, Band::rows_of(30, 32, 64)]));
        assert_eq!(c.since(&b), Some(vec![Band::rows_of(30, 32, 64)]));
        assert_eq!(
            a.since(&c),
            None,
            "an earlier picture than the one compared with"
        );
        // Halved: the rows and columns each half pixel is made from.
        let full = pic.picture();
        let (ha, hc) = (a.halved(&full), c.halved(&full));
        let halved = Band {
            y0: 1,
            y1: 3,
            x0: 8,
            x1: 24,
        };
        assert_eq!(hc.since(&ha), Some(vec![halved, Band::rows_of(15, 16, 32)]));
        assert_eq!(hc.since(&a), None, "another scale");
        // Another picture's log, and a mark older than the log remembers.
        assert_eq!(BandPicture::new(64, 32).mark().since(&a), None);
        for _ in 0..LOGGED {
            white(&mut pic, Band::rows_of(0, 2, 64));
        }
        assert_eq!(pic.mark().since(&a), None, "forgotten");
        assert_eq!(pic.mark().since(&c).map(|b| b.len()), Some(LOGGED));
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
