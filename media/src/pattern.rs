//! A live test picture drawn straight onto an X display's root window: four solid
//! colour blocks (top 7/8 of the screen, 2 × 2) over a strip with a moving bar, so the
//! screen always changes while the blocks hold known colours. Used by `--virtual` (so a
//! screen-less machine has something to share) and by the end-to-end tests.
//!
//! [`ClockPainter`] draws the glass-to-glass benchmark's picture instead (`porthole
//! test-pattern --clock`, read by `tests/bench/g2g.mjs`): a machine-readable code of the
//! wall-clock time in ms, repainted every few ms, beside a busy picture scrolling over a
//! share of the screen.

use std::time::{Duration, Instant};
use x11rb::connection::Connection;
use x11rb::errors::{ConnectError, ConnectionError, ReplyError, ReplyOrIdError};

use x11rb::protocol::xproto::{
    ChangeGCAux, ConnectionExt, CreateGCAux, Gcontext, Pixmap, Rectangle, Window,
};
use x11rb::rust_connection::RustConnection;

/// Default block colours, 0xRRGGBB: top-left, top-right, bottom-left, bottom-right.
pub const DEFAULT_BLOCKS: [u32; 4] = [0xc82828, 0x28b43c, 0x323cc8, 0xdcc828];

/// Colour sets `--virtual` cycles through.
pub const PALETTES: [[u32; 4]; 3] = [
    DEFAULT_BLOCKS,
    [0x00c8c8, 0xc800c8, 0xf0f0f0, 0x202020],
    [0x3c78f0, 0xf0a028, 0x50c850, 0xa03cb4],
];

#[derive(Debug, thiserror::Error)]
pub enum PatternError {
    #[error("cannot connect to X display {0}: {1}")]
    Connect(String, ConnectError),
    #[error("X request failed: {0}")]
    Connection(#[from] ConnectionError),
    #[error("X request failed: {0}")]
    Reply(#[from] ReplyError),
    #[error("X request failed: {0}")]
    ReplyOrId(#[from] ReplyOrIdError),
}

/// The geometry of the test picture on a `width` × `height` screen.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Layout {
    pub width: u16,
    pub height: u16,
}

impl Layout {
    /// Rows taken by the colour blocks; the rest is the moving strip.
    pub fn blocks_height(&self) -> u16 {
        self.height / 8 * 7
    }

    /// Block `i` (0 = top-left, 1 = top-right, 2 = bottom-left, 3 = bottom-right).
    pub fn block(&self, i: usize) -> Rectangle {
        let (w, h) = (self.width / 2, self.blocks_height() / 2);
        let left = i.is_multiple_of(2);
        let x = if left { 0 } else { w };
        let y = if i < 2 { 0 } else { h };
        Rectangle {
            x: x as i16,
            y: y as i16,
            width: if left { w } else { self.width - w },
            height: if i < 2 { h } else { self.blocks_height() - h },
        }
    }

    /// The moving bar at animation step `step`.
    pub fn bar(&self, step: u32) -> Rectangle {
        let bar_w = (self.width / 8).max(1);
        let travel = u32::from(self.width - bar_w).max(1);
        let x = (step * u32::from(self.width / 60).max(1)) % travel;
        Rectangle {
            x: x as i16,
            y: self.blocks_height() as i16,
            width: bar_w,
            height: self.height - self.blocks_height(),
        }
    }
}

pub struct Painter {
    conn: RustConnection,
    root: Window,
    gc: Gcontext,
    layout: Layout,
    blocks: [u32; 4],
    step: u32,
}

impl Painter {
    /// Connects to `display` (e.g. ":99"; `None` = `$DISPLAY`).
    pub fn connect(display: Option<&str>) -> Result<Self, PatternError> {
        let (conn, screen_num) = x11rb::connect(display)
            .map_err(|e| PatternError::Connect(display.unwrap_or("$DISPLAY").to_string(), e))?;
        let screen = &conn.setup().roots[screen_num];
        let root = screen.root;
        let layout = Layout {
            width: screen.width_in_pixels,
            height: screen.height_in_pixels,
        };
        let gc = conn.generate_id()?;
        conn.create_gc(gc, root, &Default::default())?;
        Ok(Self {
            conn,
            root,
            gc,
            layout,
            blocks: DEFAULT_BLOCKS,
            step: 0,
        })
    }

    pub fn layout(&self) -> Layout {
        self.layout
    }

    /// The block colours now.
    pub fn blocks(&self) -> [u32; 4] {
        self.blocks
    }

    fn fill(&self, colour: u32, rect: Rectangle) -> Result<(), PatternError> {
        self.conn
            .change_gc(self.gc, &ChangeGCAux::new().foreground(colour))?;
        self.conn.poly_fill_rectangle(self.root, self.gc, &[rect])?;
        Ok(())
    }

    /// Paints the four blocks and waits until the X server has done it.
    pub fn set_blocks(&mut self, blocks: [u32; 4]) -> Result<(), PatternError> {
        self.blocks = blocks;
        for (i, colour) in blocks.iter().enumerate() {
            self.fill(*colour, self.layout.block(i))?;
        }
        self.sync()
    }

    /// Advances the moving bar by one step.
    pub fn tick(&mut self) -> Result<(), PatternError> {
        let strip = Rectangle {
            x: 0,
            y: self.layout.blocks_height() as i16,
            width: self.layout.width,
            height: self.layout.height - self.layout.blocks_height(),
        };
        self.fill(0x000000, strip)?;
        self.step = self.step.wrapping_add(1);
        self.fill(0xffffff, self.layout.bar(self.step))?;
        self.conn.flush()?;
        Ok(())
    }

    /// Repaints everything (blocks and strip).
    pub fn paint(&mut self) -> Result<(), PatternError> {
        self.tick()?;
        self.set_blocks(self.blocks)
    }

    /// Draws `count` glyph-sized rectangles of varied colours over the blocks, placed by
    /// `seed`: busy, detailed content (like a page of text scrolling) for benchmarks.
    pub fn scatter(&mut self, seed: u32, count: usize) -> Result<(), PatternError> {
        let mut state = seed.wrapping_mul(2_654_435_761).wrapping_add(1);
        let mut next = move || {
            // xorshift32: cheap, deterministic, good enough for placing rectangles.
            state ^= state << 13;
            state ^= state >> 17;
            state ^= state << 5;
            state
        };
        let (w, h) = (
            self.layout.width.max(8),
            self.layout.blocks_height().max(12),
        );
        for _ in 0..count {
            let rect = Rectangle {
                x: (next() % u32::from(w - 7)) as i16,
                y: (next() % u32::from(h - 11)) as i16,
                width: 3 + (next() % 5) as u16,
                height: 6 + (next() % 6) as u16,
            };
            self.fill(next() & 0xffffff, rect)?;
        }
        Ok(())
    }

    /// Waits until the X server has carried out every request sent so far.
    pub fn sync(&self) -> Result<(), PatternError> {
        // A round trip: every request before it has been processed.
        self.conn.get_input_focus()?.reply()?;
        Ok(())
    }
}

/// Cells of the clock code: 32 bits of the time, then their 32 complements.
pub const CLOCK_BITS: u16 = 32;
/// The code is a square of `CLOCK_SIDE` × `CLOCK_SIDE` cells.
pub const CLOCK_SIDE: u16 = 8;

/// Where the clock code sits on the screen. Cell `k` (0..64) is at column `k % 8`, row
/// `k / 8`: cells 0..32 hold bit `k` of the code (white = 1), cells 32..64 the complement
/// of bit `k - 32`, so a reader rejects a frame where any pair agrees (torn, half-encoded
/// or smeared by the encoder) instead of reading a wrong time.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ClockLayout {
    /// Top-left corner of the code on the screen.
    pub x: u16,
    pub y: u16,
    /// Side of one cell in pixels (≥ 24: big enough for H.264 at a low bit rate and for
    /// scaling).
    pub cell: u16,
}

impl ClockLayout {
    /// The code's place on a `screen`: one cell from the top-left corner, cells of a 24th
    /// of the shorter side (24..=48 px).
    pub fn for_screen(screen: Layout) -> Self {
        let cell = (screen.width.min(screen.height) / 24).clamp(24, 48);
        Self {
            x: cell,
            y: cell,
            cell,
        }
    }

    /// Side of the whole code in pixels.
    pub fn side(&self) -> u16 {
        self.cell * CLOCK_SIDE
    }

    /// The cell `k` relative to the code's top-left corner.
    pub fn cell_rect(&self, k: u16) -> Rectangle {
        Rectangle {
            x: ((k % CLOCK_SIDE) * self.cell) as i16,
            y: ((k / CLOCK_SIDE) * self.cell) as i16,
            width: self.cell,
            height: self.cell,
        }
    }

    /// The cells to paint for `code`, relative to the code's corner: (black, white).
    pub fn cells(&self, code: u32) -> (Vec<Rectangle>, Vec<Rectangle>) {
        let (mut black, mut white) = (Vec::new(), Vec::new());
        for k in 0..CLOCK_BITS * 2 {
            let bit = (code >> (k % CLOCK_BITS)) & 1 == 1;
            let on = if k < CLOCK_BITS { bit } else { !bit };
            let list = if on { &mut white } else { &mut black };
            list.push(self.cell_rect(k));
        }
        (black, white)
    }
}

/// The clock code for a wall-clock time: milliseconds since the Unix epoch, mod 2^32.
pub fn clock_code(since_epoch: Duration) -> u32 {
    since_epoch.as_millis() as u32
}

/// The moving part of the clock picture: the bottom `percent` % of the screen's rows, full
/// width (so it covers `percent` % of the area).
pub fn motion_rect(screen: Layout, percent: u8) -> Rectangle {
    let rows = (u32::from(screen.height) * u32::from(percent.min(100)) / 100) as u16;
    Rectangle {
        x: 0,
        y: (screen.height - rows) as i16,
        width: screen.width,
        height: rows,
    }
}

/// A fixed-rate tick with time passed in: `due(now)` says whether a tick fell due since
/// the last call. A caller that falls more than a period behind skips the missed ticks
/// (counted in `skipped`) instead of bursting to catch up.
#[derive(Clone, Debug)]
pub struct Ticker {
    period: Duration,
    next: Instant,
    pub skipped: u64,
}

impl Ticker {
    /// Ticks every `period`, the first at `start`.
    pub fn new(period: Duration, start: Instant) -> Self {
        Self {
            period,
            next: start,
            skipped: 0,
        }
    }

    pub fn due(&mut self, now: Instant) -> bool {
        if now < self.next {
            return false;
        }
        self.next += self.period;
        if self.next <= now {
            let behind = now.duration_since(self.next);
            let missed = behind.as_nanos() / self.period.as_nanos().max(1) + 1;
            self.skipped += missed as u64;
            self.next += self.period * missed as u32;
        }
        true
    }

    /// When the next tick falls due.
    pub fn next(&self) -> Instant {
        self.next
    }
}

/// Paints the clock picture: a still grey desktop, the clock code (top left) and a busy
/// picture scrolling in [`motion_rect`]. Everything is drawn by the X server from two
/// pixmaps prepared once (the code is composed off screen and copied in one request, so a
/// grab never sees half of it), so the painter costs little CPU.
pub struct ClockPainter {
    conn: RustConnection,
    root: Window,
    fill: Gcontext,
    copy: Gcontext,
    code_pix: Pixmap,
    busy_pix: Pixmap,
    screen: Layout,
    clock: ClockLayout,
    motion: Rectangle,
    step: u32,
}

/// How far the busy picture scrolls per motion step, in pixels.
const SCROLL_PX: u32 = 6;

impl ClockPainter {
    /// Connects to `display` (`None` = `$DISPLAY`) and paints the still parts; the busy
    /// picture covers `motion_percent` % of the screen (0: none).
    pub fn connect(display: Option<&str>, motion_percent: u8) -> Result<Self, PatternError> {
        let (conn, screen_num) = x11rb::connect(display)
            .map_err(|e| PatternError::Connect(display.unwrap_or("$DISPLAY").to_string(), e))?;
        let screen_info = &conn.setup().roots[screen_num];
        let (root, depth) = (screen_info.root, screen_info.root_depth);
        let screen = Layout {
            width: screen_info.width_in_pixels,
            height: screen_info.height_in_pixels,
        };
        let clock = ClockLayout::for_screen(screen);
        let motion = motion_rect(screen, motion_percent);
        let fill = conn.generate_id()?;
        conn.create_gc(fill, root, &CreateGCAux::new().graphics_exposures(0))?;
        // CopyArea with graphics exposures on queues a NoExpose event per copy, which
        // nobody reads: turn them off.
        let copy = conn.generate_id()?;
        conn.create_gc(copy, root, &CreateGCAux::new().graphics_exposures(0))?;
        let code_pix = conn.generate_id()?;
        conn.create_pixmap(depth, code_pix, root, clock.side(), clock.side())?;
        // Twice the motion area's height: the picture, then the same picture again, so
        // any window of `motion.height` rows is a seamless piece of the scroll.
        let busy_pix = conn.generate_id()?;
        let busy_h = motion.height.max(1);
        conn.create_pixmap(depth, busy_pix, root, screen.width, busy_h * 2)?;
        let painter = Self {
            conn,
            root,
            fill,
            copy,
            code_pix,
            busy_pix,
            screen,
            clock,
            motion,
            step: 0,
        };
        if motion.height > 0 {
            painter.draw_busy_picture(busy_h)?;
        }
        painter.fill_rect(
            painter.root,
            0x3c3c3c,
            Rectangle {
                x: 0,
                y: 0,
                width: screen.width,
                height: screen.height,
            },
        )?;
        // A white frame around the code, so it stands out from the grey.
        let margin = (clock.cell / 4).max(2);
        painter.fill_rect(
            painter.root,
            0xffffff,
            Rectangle {
                x: (clock.x - margin) as i16,
                y: (clock.y - margin) as i16,
                width: clock.side() + 2 * margin,
                height: clock.side() + 2 * margin,
            },
        )?;
        painter.sync()?;
        Ok(painter)
    }

    pub fn layout(&self) -> Layout {
        self.screen
    }

    pub fn clock(&self) -> ClockLayout {
        self.clock
    }

    pub fn motion(&self) -> Rectangle {
        self.motion
    }

    fn fill_rect(&self, target: u32, colour: u32, rect: Rectangle) -> Result<(), PatternError> {
        self.conn
            .change_gc(self.fill, &ChangeGCAux::new().foreground(colour))?;
        self.conn.poly_fill_rectangle(target, self.fill, &[rect])?;
        Ok(())
    }

    /// Text-like detail (glyph-sized rectangles of many colours over a few coloured
    /// bands) in the busy pixmap, drawn once.
    fn draw_busy_picture(&self, height: u16) -> Result<(), PatternError> {
        let width = self.screen.width;
        let bands = [0xf4f4f4, 0x1e2a3a, 0xe8d8b0, 0x204020];
        let band_h = (height / bands.len() as u16).max(1);
        for (i, colour) in bands.iter().enumerate() {
            let y = i as u16 * band_h;
            if y >= height {
                break; // fewer rows than bands
            }
            let h = if i + 1 == bands.len() {
                height - y
            } else {
                band_h
            };
            let rect = Rectangle {
                x: 0,
                y: y as i16,
                width,
                height: h,
            };
            self.fill_rect(self.busy_pix, *colour, rect)?;
        }
        let mut state = 0x9e37_79b9u32;
        let mut next = move || {
            state ^= state << 13;
            state ^= state >> 17;
            state ^= state << 5;
            state
        };
        // About one glyph per 60 pixels of area.
        let count = u32::from(width) * u32::from(height) / 60;
        let (w, h) = (u32::from(width.max(8)), u32::from(height.max(12)));
        for _ in 0..count {
            let rect = Rectangle {
                x: (next() % (w - 7)) as i16,
                y: (next() % (h - 11)) as i16,
                width: 2 + (next() % 6) as u16,
                height: 5 + (next() % 7) as u16,
            };
            self.fill_rect(self.busy_pix, next() & 0xffffff, rect)?;
        }
        self.conn.copy_area(
            self.busy_pix,
            self.busy_pix,
            self.copy,
            0,
            0,
            0,
            height as i16,
            width,
            height,
        )?;
        Ok(())
    }

    /// Paints the code of `code` (see [`clock_code`]) in one request. Call [`Self::sync`]
    /// afterwards to know it is on the screen.
    pub fn paint_code(&self, code: u32) -> Result<(), PatternError> {
        let (black, white) = self.clock.cells(code);
        for (colour, rects) in [(0x000000, black), (0xffffff, white)] {
            if rects.is_empty() {
                continue;
            }
            self.conn
                .change_gc(self.fill, &ChangeGCAux::new().foreground(colour))?;
            self.conn
                .poly_fill_rectangle(self.code_pix, self.fill, &rects)?;
        }
        let side = self.clock.side();
        self.conn.copy_area(
            self.code_pix,
            self.root,
            self.copy,
            0,
            0,
            self.clock.x as i16,
            self.clock.y as i16,
            side,
            side,
        )?;
        Ok(())
    }

    /// Scrolls the busy picture one step (nothing when it covers no rows).
    pub fn scroll(&mut self) -> Result<(), PatternError> {
        if self.motion.height == 0 {
            return Ok(());
        }
        self.step = self.step.wrapping_add(1);
        let src_y = (self.step.wrapping_mul(SCROLL_PX)) % u32::from(self.motion.height);
        self.conn.copy_area(
            self.busy_pix,
            self.root,
            self.copy,
            0,
            src_y as i16,
            self.motion.x,
            self.motion.y,
            self.motion.width,
            self.motion.height,
        )?;
        Ok(())
    }

    /// Waits until the X server has carried out every request sent so far.
    pub fn sync(&self) -> Result<(), PatternError> {
        self.conn.get_input_focus()?.reply()?;
        Ok(())
    }
}

/// Parses `RRGGBB` (an optional leading `#` is allowed).
pub fn parse_colour(text: &str) -> Option<u32> {
    let hex = text.strip_prefix('#').unwrap_or(text);
    (hex.len() == 6)
        .then(|| u32::from_str_radix(hex, 16).ok())
        .flatten()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn blocks_tile_the_top_seven_eighths() {
        let l = Layout {
            width: 1281,
            height: 721,
        };
        let area: u32 = (0..4)
            .map(|i| u32::from(l.block(i).width) * u32::from(l.block(i).height))
            .sum();
        assert_eq!(area, 1281 * u32::from(l.blocks_height()));
        assert_eq!(l.block(3).x as u16 + l.block(3).width, 1281);
        let bar = l.bar(1000);
        assert!(bar.x as u16 + bar.width <= l.width);
        assert_eq!(bar.y as u16 + bar.height, l.height);
    }

    #[test]
    fn clock_cells_carry_the_code_and_its_complement() {
        let clock = ClockLayout::for_screen(Layout {
            width: 1920,
            height: 1080,
        });
        assert_eq!(clock.cell, 45);
        let code = 0xdead_beef;
        let (black, white) = clock.cells(code);
        assert_eq!(black.len() + white.len(), 64);
        // Exactly one of every (bit, complement) pair is white.
        assert_eq!(white.len(), 32);
        let is_white = |k: u16| {
            let c = clock.cell_rect(k);
            white.iter().any(|r| (r.x, r.y) == (c.x, c.y))
        };
        for k in 0..CLOCK_BITS {
            assert_eq!(is_white(k), (code >> k) & 1 == 1, "bit {k}");
            assert_ne!(
                is_white(k),
                is_white(k + CLOCK_BITS),
                "bit {k} and its complement"
            );
        }
        // Cell 9 is row 1, column 1; the code fits its square.
        assert_eq!((clock.cell_rect(9).x, clock.cell_rect(9).y), (45, 45));
        let last = clock.cell_rect(63);
        assert_eq!(last.x as u16 + last.width, clock.side());
        // Small screens keep cells of 24 px at least.
        let small = ClockLayout::for_screen(Layout {
            width: 320,
            height: 240,
        });
        assert_eq!(small.cell, 24);
    }

    #[test]
    fn clock_code_is_milliseconds_mod_2_32() {
        assert_eq!(clock_code(Duration::from_millis(1234)), 1234);
        assert_eq!(clock_code(Duration::from_millis((1 << 32) + 7)), 7);
        assert_eq!(clock_code(Duration::from_micros(1_999)), 1);
    }

    #[test]
    fn motion_covers_the_bottom_share_of_the_screen() {
        let screen = Layout {
            width: 1920,
            height: 1080,
        };
        let r = motion_rect(screen, 30);
        assert_eq!((r.x, r.y, r.width, r.height), (0, 756, 1920, 324));
        assert_eq!(motion_rect(screen, 0).height, 0);
        assert_eq!(motion_rect(screen, 200).height, 1080);
    }

    #[test]
    fn ticker_ticks_on_time_and_skips_what_it_missed() {
        let t0 = Instant::now();
        let ms = Duration::from_millis;
        let mut t = Ticker::new(ms(4), t0);
        assert!(t.due(t0));
        assert!(!t.due(t0 + ms(3)));
        assert!(t.due(t0 + ms(4)));
        assert_eq!(t.next(), t0 + ms(8));
        // 21 ms late: one tick now, the four missed ones skipped, the next on the grid.
        assert!(t.due(t0 + ms(29)));
        assert_eq!(t.skipped, 5);
        assert_eq!(t.next(), t0 + ms(32));
        assert!(!t.due(t0 + ms(31)));
        assert!(t.due(t0 + ms(32)));
    }

    #[test]
    fn colours_parse() {
        assert_eq!(parse_colour("c82828"), Some(0xc82828));
        assert_eq!(parse_colour("#00FF00"), Some(0x00ff00));
        assert_eq!(parse_colour("12345"), None);
        assert_eq!(parse_colour("zzzzzz"), None);
    }
}
