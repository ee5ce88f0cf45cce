//! X11 screen capture through scrap (MIT-SHM): BGRX frames, 4 bytes a pixel, rows packed.
//!
//! scrap connects to the X server named by `$DISPLAY`; the binary sets it once at start-up
//! from `--display`. A capturer is not `Send` (it holds an X connection): create it on the
//! thread that uses it.

use std::io;

#[derive(Debug, thiserror::Error)]
pub enum CaptureError {
    #[error("cannot connect to the X display {display}: {source} (is an X server running there? try `porthole share --virtual 1920x1080`)")]
    Connect { display: String, source: io::Error },
    #[error("the X display {display} has no monitor number {index} (it has {count})")]
    NoSuchMonitor {
        display: String,
        index: usize,
        count: usize,
    },
    #[error("screen capture failed: {0}")]
    Grab(io::Error),
    #[error("captured frame has {got} bytes, expected {expected} for {width}x{height}")]
    BadFrame {
        got: usize,
        expected: usize,
        width: usize,
        height: usize,
    },
}

fn display_name() -> String {
    std::env::var("DISPLAY").unwrap_or_else(|_| "(unset $DISPLAY)".into())
}

/// Captures one monitor of the X display in `$DISPLAY`.
pub struct ScreenCapturer {
    inner: scrap::Capturer,
    width: usize,
    height: usize,
}

impl ScreenCapturer {
    pub fn open(monitor: usize) -> Result<Self, CaptureError> {
        let mut all = scrap::Display::all().map_err(|source| CaptureError::Connect {
            display: display_name(),
            source,
        })?;
        let count = all.len();
        if monitor >= count {
            return Err(CaptureError::NoSuchMonitor {
                display: display_name(),
                index: monitor,
                count,
            });
        }
        let display = all.swap_remove(monitor);
        let (width, height) = (display.width(), display.height());
        let inner = scrap::Capturer::new(display).map_err(|source| CaptureError::Connect {
            display: display_name(),
            source,
        })?;
        Ok(Self {
            inner,
            width,
            height,
        })
    }

    pub fn width(&self) -> usize {
        self.width
    }

    pub fn height(&self) -> usize {
        self.height
    }

    /// Grabs the current screen content and hands it to `use_frame` as
    /// `width * height * 4` bytes of BGRX (scrap lends its shared-memory segment).
    pub fn grab<R>(&mut self, use_frame: impl FnOnce(&[u8]) -> R) -> Result<R, CaptureError> {
        let (width, height) = (self.width, self.height);
        let frame = self.inner.frame().map_err(CaptureError::Grab)?;
        let expected = width * height * 4;
        if frame.len() < expected {
            return Err(CaptureError::BadFrame {
                got: frame.len(),
                expected,
                width,
                height,
            });
        }
        Ok(use_frame(&frame[..expected]))
    }
}

/// Where a monitor sits on the X screen (root window coordinates).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct MonitorRect {
    pub x: i32,
    pub y: i32,
    pub width: u32,
    pub height: u32,
}

/// The rectangle of monitor `index` of the X display `display` (`None` = `$DISPLAY`), in the
/// order scrap lists monitors (RandR monitors; the whole screen when RandR has none).
pub fn monitor_rect(display: Option<&str>, index: usize) -> Result<MonitorRect, CaptureError> {
    use x11rb::connection::Connection;
    use x11rb::protocol::randr::ConnectionExt as _;
    let name = || display.map(str::to_owned).unwrap_or_else(display_name);
    let io = |e: String| CaptureError::Connect {
        display: name(),
        source: io::Error::other(e),
    };
    let (conn, screen_num) = x11rb::connect(display).map_err(|e| io(e.to_string()))?;
    let screen = &conn.setup().roots[screen_num];
    let whole = MonitorRect {
        x: 0,
        y: 0,
        width: u32::from(screen.width_in_pixels),
        height: u32::from(screen.height_in_pixels),
    };
    let monitors = conn
        .randr_get_monitors(screen.root, true)
        .ok()
        .and_then(|c| c.reply().ok())
        .map(|r| r.monitors)
        .unwrap_or_default();
    if monitors.is_empty() {
        return if index == 0 {
            Ok(whole)
        } else {
            Err(CaptureError::NoSuchMonitor {
                display: name(),
                index,
                count: 1,
            })
        };
    }
    let count = monitors.len();
    let m = monitors.get(index).ok_or(CaptureError::NoSuchMonitor {
        display: name(),
        index,
        count,
    })?;
    Ok(MonitorRect {
        x: i32::from(m.x),
        y: i32::from(m.y),
        width: u32::from(m.width),
        height: u32::from(m.height),
    })
}
