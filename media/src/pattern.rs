//! A live test picture drawn straight onto an X display's root window: four solid
//! colour blocks (top 7/8 of the screen, 2 × 2) over a strip with a moving bar, so the
//! screen always changes while the blocks hold known colours. Used by `--virtual` (so a
//! screen-less machine has something to share) and by the end-to-end tests.

use x11rb::connection::Connection;
use x11rb::errors::{ConnectError, ConnectionError, ReplyError, ReplyOrIdError};
use x11rb::protocol::xproto::{ChangeGCAux, ConnectionExt, Gcontext, Rectangle, Window};
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
    fn colours_parse() {
        assert_eq!(parse_colour("c82828"), Some(0xc82828));
        assert_eq!(parse_colour("#00FF00"), Some(0x00ff00));
        assert_eq!(parse_colour("12345"), None);
        assert_eq!(parse_colour("zzzzzz"), None);
    }
}
