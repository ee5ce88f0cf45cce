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
    #[error(transparent)]
    Portal(#[from] crate::portal::PortalError),
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

/// One monitor of the X screen.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Monitor {
    /// RandR's name for it (e.g. `HDMI-1`, or a name given with `xrandr --setmonitor`).
    pub name: String,
    pub rect: MonitorRect,
    pub primary: bool,
}

impl Monitor {
    /// What a person picking a monitor reads: "HDMI-1 (primary), 1920×1080 at 0,0".
    pub fn describe(&self) -> String {
        let r = self.rect;
        format!(
            "{}{}, {}×{} at {},{}",
            if self.name.is_empty() {
                "unnamed"
            } else {
                &self.name
            },
            if self.primary { " (primary)" } else { "" },
            r.width,
            r.height,
            r.x,
            r.y
        )
    }
}

/// The monitors of the X display `display` (`None` = `$DISPLAY`), in RandR's order (the
/// order `--monitor` numbers them); the whole screen, named `screen`, when RandR lists none.
pub fn monitors(display: Option<&str>) -> Result<Vec<Monitor>, CaptureError> {
    use x11rb::connection::Connection;
    use x11rb::protocol::randr::ConnectionExt as _;
    use x11rb::protocol::xproto::ConnectionExt as _;
    let name = || display.map(str::to_owned).unwrap_or_else(display_name);
    let io = |e: String| CaptureError::Connect {
        display: name(),
        source: io::Error::other(e),
    };
    let (conn, screen_num) = x11rb::connect(display).map_err(|e| io(e.to_string()))?;
    let screen = &conn.setup().roots[screen_num];
    let listed = conn
        .randr_get_monitors(screen.root, true)
        .ok()
        .and_then(|c| c.reply().ok())
        .map(|r| r.monitors)
        .unwrap_or_default();
    if listed.is_empty() {
        return Ok(vec![Monitor {
            name: "screen".into(),
            rect: MonitorRect {
                x: 0,
                y: 0,
                width: u32::from(screen.width_in_pixels),
                height: u32::from(screen.height_in_pixels),
            },
            primary: true,
        }]);
    }
    // Every name request first, then the replies: one round trip.
    let cookies: Vec<_> = listed
        .iter()
        .map(|m| conn.get_atom_name(m.name).ok())
        .collect();
    Ok(listed
        .iter()
        .zip(cookies)
        .map(|(m, cookie)| Monitor {
            name: cookie
                .and_then(|c| c.reply().ok())
                .map(|r| String::from_utf8_lossy(&r.name).into_owned())
                .unwrap_or_default(),
            rect: MonitorRect {
                x: i32::from(m.x),
                y: i32::from(m.y),
                width: u32::from(m.width),
                height: u32::from(m.height),
            },
            primary: m.primary,
        })
        .collect())
}

/// The rectangle of monitor `index` of the X display `display` (`None` = `$DISPLAY`), in
/// the order [`monitors`] lists them.
pub fn monitor_rect(display: Option<&str>, index: usize) -> Result<MonitorRect, CaptureError> {
    let all = monitors(display)?;
    let count = all.len();
    all.get(index)
        .map(|m| m.rect)
        .ok_or_else(|| CaptureError::NoSuchMonitor {
            display: display.map(str::to_owned).unwrap_or_else(display_name),
            index,
            count,
        })
}

/// The monitor being shared, which may change while sharing: capture, input injection and
/// the cursor watch read it as they go. Cheap to clone (shared).
#[derive(Clone, Debug)]
pub struct SharedMonitor(std::sync::Arc<std::sync::Mutex<(usize, MonitorRect)>>);

impl SharedMonitor {
    pub fn new(index: usize, rect: MonitorRect) -> Self {
        Self(std::sync::Arc::new(std::sync::Mutex::new((index, rect))))
    }

    /// Its index (as [`monitors`] lists them) and rectangle.
    pub fn get(&self) -> (usize, MonitorRect) {
        *self.0.lock().unwrap_or_else(|e| e.into_inner())
    }

    pub fn rect(&self) -> MonitorRect {
        self.get().1
    }

    pub fn set(&self, index: usize, rect: MonitorRect) {
        *self.0.lock().unwrap_or_else(|e| e.into_inner()) = (index, rect);
    }
}

impl From<MonitorRect> for SharedMonitor {
    /// A monitor that never changes (index 0).
    fn from(rect: MonitorRect) -> Self {
        Self::new(0, rect)
    }
}
