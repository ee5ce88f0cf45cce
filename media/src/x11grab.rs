//! X11 capture driven by the DAMAGE extension, into a MIT-SHM segment that holds the whole
//! monitor, converted to I420 only where the screen changed.
//!
//! ```text
//!  X server ──DamageNotify──▶ wait() ──▶ take_bands(): damaged rectangles, merged into
//!                                        bands of rows as wide as their columns' union
//!           ◀─ShmGetImage (only those bands, packed at their rows' place in the segment)─ grab()
//!  segment (BGRX, whole monitor) ──convert those bands──▶ persistent I420 picture
//! ```
//!
//! An unchanged screen costs nothing: no event, no grab, no compare. A change is grabbed
//! as soon as it is reported (the caller keeps the frame-rate cap), and only the bands it
//! touched are copied and converted. Without DAMAGE (rare) every call is a full grab.
//! The capturer holds an X connection and a shared-memory segment: not `Send`, create it
//! on the thread that uses it.

use std::io;
use std::os::fd::AsRawFd;
use std::time::{Duration, Instant};

use x11rb::connection::{Connection, RequestConnection};
use x11rb::protocol::damage::{self, ConnectionExt as _};
use x11rb::protocol::shm::{self, ConnectionExt as _};
use x11rb::protocol::xfixes::{self, ConnectionExt as _};
use x11rb::protocol::xproto::ImageFormat;
use x11rb::protocol::Event;
use x11rb::rust_connection::RustConnection;

use crate::capture::{monitor_rect, CaptureError, MonitorRect};
use crate::convert::even_size;
pub use crate::picture::{merge_bands, Band, BandPicture, I420Picture};

/// A System V shared-memory segment attached here and to the X server.
struct Segment {
    addr: *mut u8,
    len: usize,
    seg: shm::Seg,
}

impl Segment {
    fn new(conn: &RustConnection, len: usize) -> Result<Self, String> {
        // SAFETY: plain System V calls; the result is checked before use.
        let id = unsafe { libc::shmget(libc::IPC_PRIVATE, len, libc::IPC_CREAT | 0o600) };
        if id < 0 {
            return Err(format!("shmget: {}", io::Error::last_os_error()));
        }
        // SAFETY: `id` is a segment we just made; a failed attach returns -1.
        let addr = unsafe { libc::shmat(id, std::ptr::null(), 0) };
        let attached = addr as isize != -1;
        let seg = conn.generate_id().map_err(|e| e.to_string());
        let result = match (attached, seg) {
            (true, Ok(seg)) => conn
                .shm_attach(seg, id as u32, false)
                .map_err(|e| e.to_string())
                .and_then(|c| c.check().map_err(|e| e.to_string()))
                .map(|()| Segment {
                    addr: addr.cast(),
                    len,
                    seg,
                }),
            (false, _) => Err(format!("shmat: {}", io::Error::last_os_error())),
            (true, Err(e)) => Err(e),
        };
        // Marked for removal now: it goes away when the last of us and the server detach,
        // even if this process is killed.
        // SAFETY: `id` is ours.
        unsafe { libc::shmctl(id, libc::IPC_RMID, std::ptr::null_mut()) };
        if result.is_err() && attached {
            // SAFETY: attached above, not used afterwards.
            unsafe { libc::shmdt(addr) };
        }
        result
    }

    fn bytes(&self) -> &[u8] {
        // SAFETY: `addr` maps `len` bytes for as long as `self` lives; the X server writes
        // into it only while a ShmGetImage request is answered, and we read after the reply.
        unsafe { std::slice::from_raw_parts(self.addr, self.len) }
    }
}

impl Drop for Segment {
    fn drop(&mut self) {
        // SAFETY: attached in `new`, detached once.
        unsafe { libc::shmdt(self.addr.cast()) };
    }
}

/// What one capture cost, for the per-stage timings.
#[derive(Clone, Copy, Debug, Default)]
pub struct GrabCost {
    pub grab_us: u64,
    pub convert_us: u64,
    /// Rows grabbed and converted.
    pub rows: usize,
}

/// Damage-driven capture of one monitor into an I420 picture (see the module docs).
pub struct DamageCapturer {
    conn: RustConnection,
    root: u32,
    rect: MonitorRect,
    /// The encoded (even) size.
    width: usize,
    height: usize,
    damage: Option<(damage::Damage, xfixes::Region)>,
    damage_event: u8,
    pending: bool,
    /// Everything must be grabbed (first frame, or no DAMAGE).
    full: bool,
    segment: Segment,
    picture: BandPicture,
}

/// Waits until `stream` (an X connection) has something to read, at most `timeout` (at
/// least 1 ms); an interrupted wait counts as a short one.
pub(crate) fn wait_readable(stream: &impl AsRawFd, timeout: Duration) -> io::Result<()> {
    let mut pfd = libc::pollfd {
        fd: stream.as_raw_fd(),
        events: libc::POLLIN,
        revents: 0,
    };
    let ms = timeout.as_millis().clamp(1, i32::MAX as u128) as i32;
    // SAFETY: one valid pollfd for the duration of the call.
    if unsafe { libc::poll(&mut pfd, 1, ms) } < 0 {
        let e = io::Error::last_os_error();
        if e.kind() != io::ErrorKind::Interrupted {
            return Err(e);
        }
    }
    Ok(())
}

impl DamageCapturer {
    /// Opens monitor `index` of the X display in `$DISPLAY`.
    pub fn open(index: usize) -> Result<Self, CaptureError> {
        let rect = monitor_rect(None, index)?;
        let display = std::env::var("DISPLAY").unwrap_or_default();
        let connect = |e: String| CaptureError::Connect {
            display: display.clone(),
            source: io::Error::other(e),
        };
        let (conn, screen_num) = x11rb::connect(None).map_err(|e| connect(e.to_string()))?;
        let root = conn.setup().roots[screen_num].root;
        conn.extension_information(shm::X11_EXTENSION_NAME)
            .map_err(|e| connect(e.to_string()))?
            .ok_or_else(|| connect("the X server has no MIT-SHM extension".into()))?;
        let (width, height) = even_size(rect.width as usize, rect.height as usize);
        let segment = Segment::new(&conn, rect.width as usize * rect.height as usize * 4)
            .map_err(|e| connect(format!("cannot share memory with the X server: {e}")))?;
        let (damage, damage_event) = match Self::track_damage(&conn, root) {
            Ok(d) => d,
            Err(e) => {
                tracing::warn!("no X DAMAGE ({e}): grabbing the whole screen every frame");
                (None, 0)
            }
        };
        Ok(Self {
            conn,
            root,
            rect,
            width,
            height,
            damage,
            damage_event,
            pending: true,
            full: true,
            segment,
            picture: BandPicture::new(width, height),
        })
    }

    #[allow(clippy::type_complexity)]
    fn track_damage(
        conn: &RustConnection,
        root: u32,
    ) -> Result<(Option<(damage::Damage, xfixes::Region)>, u8), String> {
        let info = conn
            .extension_information(damage::X11_EXTENSION_NAME)
            .map_err(|e| e.to_string())?
            .ok_or("the X server has no DAMAGE extension")?;
        conn.xfixes_query_version(5, 0)
            .map_err(|e| e.to_string())?
            .reply()
            .map_err(|e| e.to_string())?;
        conn.damage_query_version(1, 1)
            .map_err(|e| e.to_string())?
            .reply()
            .map_err(|e| e.to_string())?;
        let damage = conn.generate_id().map_err(|e| e.to_string())?;
        conn.damage_create(damage, root, damage::ReportLevel::NON_EMPTY)
            .map_err(|e| e.to_string())?
            .check()
            .map_err(|e| e.to_string())?;
        let region = conn.generate_id().map_err(|e| e.to_string())?;
        conn.xfixes_create_region(region, &[])
            .map_err(|e| e.to_string())?
            .check()
            .map_err(|e| e.to_string())?;
        Ok((Some((damage, region)), info.first_event))
    }

    /// The picture size (even).
    pub fn size(&self) -> (usize, usize) {
        (self.width, self.height)
    }

    /// Whether the screen changes are reported (DAMAGE), rather than grabbed blindly.
    pub fn tracks_damage(&self) -> bool {
        self.damage.is_some()
    }

    fn grab_error(e: impl std::fmt::Display) -> CaptureError {
        CaptureError::Grab(io::Error::other(e.to_string()))
    }

    fn drain_events(&mut self) -> Result<(), CaptureError> {
        while let Some(event) = self.conn.poll_for_event().map_err(Self::grab_error)? {
            match event {
                Event::DamageNotify(_) => self.pending = true,
                Event::Unknown(raw) if raw.first() == Some(&self.damage_event) => {
                    self.pending = true
                }
                _ => {}
            }
        }
        Ok(())
    }

    /// Waits at most `timeout` for the screen to change. Returns whether it changed since
    /// the last [`take_bands`](Self::take_bands). Without DAMAGE, always true (at once).
    pub fn wait(&mut self, timeout: Duration) -> Result<bool, CaptureError> {
        if self.damage.is_none() || self.full {
            return Ok(true);
        }
        self.conn.flush().map_err(Self::grab_error)?;
        self.drain_events()?;
        let deadline = Instant::now() + timeout;
        while !self.pending {
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                break;
            }
            wait_readable(self.conn.stream(), left).map_err(CaptureError::Grab)?;
            self.drain_events()?;
        }
        Ok(self.pending)
    }

    /// The rows changed since the last call (and clears them).
    pub fn take_bands(&mut self) -> Result<Vec<Band>, CaptureError> {
        self.drain_events()?;
        self.pending = false;
        let Some((damage, region)) = self.damage else {
            return Ok(vec![Band::whole(self.width, self.height)]);
        };
        self.conn
            .damage_subtract(damage, x11rb::NONE, region)
            .map_err(Self::grab_error)?;
        let reply = self
            .conn
            .xfixes_fetch_region(region)
            .map_err(Self::grab_error)?
            .reply()
            .map_err(Self::grab_error)?;
        if std::mem::take(&mut self.full) {
            return Ok(vec![Band::whole(self.width, self.height)]);
        }
        let r = self.rect;
        let (w, h) = (self.width as i32, self.height as i32);
        let rects = reply
            .rectangles
            .iter()
            .filter_map(|d| {
                let x0 = (i32::from(d.x) - r.x).max(0);
                let x1 = (i32::from(d.x) + i32::from(d.width) - r.x).min(w);
                let y0 = (i32::from(d.y) - r.y).max(0);
                let y1 = (i32::from(d.y) + i32::from(d.height) - r.y).min(h);
                (y1 > y0 && x1 > x0).then_some(Band {
                    y0: y0 as usize,
                    y1: y1 as usize,
                    x0: x0 as usize,
                    x1: x1 as usize,
                })
            })
            .collect();
        Ok(merge_bands(rects, self.width, self.height, 16))
    }

    /// Grabs `bands` into the segment and converts them into the picture.
    pub fn grab(&mut self, bands: &[Band]) -> Result<GrabCost, CaptureError> {
        let started = Instant::now();
        let stride = self.rect.width as usize * 4;
        // Send every request first, then wait for the replies: one round trip in all.
        let mut cookies = Vec::with_capacity(bands.len());
        for b in bands {
            let cookie = self
                .conn
                .shm_get_image(
                    self.root,
                    (self.rect.x + b.x0 as i32) as i16,
                    (self.rect.y + b.y0 as i32) as i16,
                    b.width() as u16,
                    b.rows() as u16,
                    !0,
                    ImageFormat::Z_PIXMAP.into(),
                    self.segment.seg,
                    (b.y0 * stride) as u32,
                )
                .map_err(Self::grab_error)?;
            cookies.push(cookie);
        }
        for cookie in cookies {
            let reply = cookie.reply().map_err(Self::grab_error)?;
            if reply.depth != 24 && reply.depth != 32 {
                return Err(Self::grab_error(format!(
                    "the screen has depth {}; only 24-bit colour is supported",
                    reply.depth
                )));
            }
        }
        let grab_us = started.elapsed().as_micros() as u64;
        let started = Instant::now();
        let mut rows = 0;
        for b in bands {
            self.convert(*b);
            rows += b.rows();
        }
        Ok(GrabCost {
            grab_us,
            convert_us: started.elapsed().as_micros() as u64,
            rows,
        })
    }

    /// Converts band `b`, which the grab left packed (rows `b.width()` pixels apart) at
    /// the start of its rows' place in the segment.
    fn convert(&mut self, b: Band) {
        let stride = self.rect.width as usize * 4;
        let data = &self.segment.bytes()[b.y0 * stride..];
        self.picture.convert(data, b.width(), b);
    }

    /// The current picture (every change grabbed so far).
    pub fn picture(&self) -> I420Picture {
        self.picture.picture()
    }

    /// Where a picture taken now stands in the capture's change log.
    pub fn mark(&self) -> crate::picture::ChangeMark {
        self.picture.mark()
    }

    /// The current picture for the encoder (see [`BandPicture::snapshot`]).
    pub fn snapshot(&mut self) -> std::sync::Arc<I420Picture> {
        self.picture.snapshot()
    }
}
