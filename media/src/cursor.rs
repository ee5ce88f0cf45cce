//! The host's pointer: position and image (XFixes), so viewers can draw the cursor
//! themselves — screen capture does not include it, and a locally drawn cursor moves
//! without waiting for video.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use x11rb::connection::Connection as _;
use x11rb::protocol::xfixes::{ConnectionExt as _, CursorNotifyMask};
use x11rb::protocol::xinput::{self, ConnectionExt as _};
use x11rb::protocol::xproto::ConnectionExt as _;
use x11rb::protocol::Event;

use crate::capture::SharedMonitor;

/// Why the pointer cannot be watched (the viewers then draw no host cursor).
#[derive(Debug, thiserror::Error)]
pub enum CursorError {
    #[error("cannot connect to the X display: {0}")]
    Connect(#[from] x11rb::errors::ConnectError),
    #[error("XFixes is not available: {0}")]
    NoXFixes(String),
    #[error("cannot start the cursor thread: {0}")]
    Thread(#[from] std::io::Error),
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum CursorEvent {
    /// Normalised to the monitor (0..=65535); `visible` is false when outside it.
    Position { x: u16, y: u16, visible: bool },
    /// Straight (non-premultiplied) RGBA, at most 256×256.
    Shape {
        hot_x: u16,
        hot_y: u16,
        width: u16,
        height: u16,
        rgba: Vec<u8>,
    },
}

/// Maps a root-window pixel to the normalised range of `len` pixels from `origin`.
pub fn normalise(px: i32, origin: i32, len: u32) -> (u16, bool) {
    let rel = px - origin;
    let inside = rel >= 0 && (rel as u32) < len;
    let span = f64::from(len.saturating_sub(1).max(1));
    let v = (f64::from(rel.clamp(0, len as i32 - 1)) * 65535.0 / span).round();
    (v.clamp(0.0, 65535.0) as u16, inside)
}

/// XFixes cursor pixels are premultiplied ARGB in native u32s; viewers want straight RGBA.
pub fn argb_premultiplied_to_rgba(pixels: &[u32]) -> Vec<u8> {
    let mut out = Vec::with_capacity(pixels.len() * 4);
    for &p in pixels {
        let a = (p >> 24) as u8;
        let un = |c: u32| -> u8 {
            let c = (c & 0xff) as u16;
            if a == 0 {
                0
            } else {
                ((c * 255 + u16::from(a) / 2) / u16::from(a)).min(255) as u8
            }
        };
        out.extend([un(p >> 16), un(p >> 8), un(p), a]);
    }
    out
}

/// With XInput 2 motion events, the position is still looked at this often.
const BACKSTOP: Duration = Duration::from_millis(250);

/// XInput 2's device id for all master devices (the pointer a user moves, XTest's included).
const ALL_MASTER_DEVICES: u16 = 1;

/// Watches the pointer (at most `hz` reports a second) and reports changes. Stops when
/// dropped.
pub struct CursorWatcher {
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

impl CursorWatcher {
    pub fn start(
        display: Option<String>,
        monitor: impl Into<SharedMonitor>,
        hz: u32,
        mut report: impl FnMut(CursorEvent) + Send + 'static,
    ) -> Result<Self, CursorError> {
        let monitor = monitor.into();
        let (conn, screen) = x11rb::connect(display.as_deref())?;
        let root = conn.setup().roots[screen].root;
        let no_xfixes = |e: &dyn std::fmt::Display| CursorError::NoXFixes(e.to_string());
        conn.xfixes_query_version(5, 0)
            .map_err(|e| no_xfixes(&e))?
            .reply()
            .map_err(|e| no_xfixes(&e))?;
        // The image is fetched when XFixes says it changed (and once at the start), the
        // position when XInput 2 reports the pointer moved (a 32-byte reply, at most `hz`
        // times a second): a pointer at rest costs nothing. Without XInput 2 the position
        // is polled at `hz`. (Polling image and position at 60 Hz cost ~1 % of a core.)
        conn.xfixes_select_cursor_input(root, CursorNotifyMask::DISPLAY_CURSOR)
            .map_err(|e| no_xfixes(&e))?
            .check()
            .map_err(|e| no_xfixes(&e))?;
        let motion_events = conn
            .xinput_xi_query_version(2, 2)
            .ok()
            .and_then(|c| c.reply().ok())
            .is_some_and(|v| (v.major_version, v.minor_version) >= (2, 0))
            && conn
                .xinput_xi_select_events(
                    root,
                    &[xinput::EventMask {
                        deviceid: ALL_MASTER_DEVICES,
                        mask: vec![xinput::XIEventMask::RAW_MOTION],
                    }],
                )
                .ok()
                .and_then(|c| c.check().ok())
                .is_some();
        if !motion_events {
            tracing::debug!("no XInput 2 motion events: the pointer is polled at {hz} Hz");
        }
        let stop = Arc::new(AtomicBool::new(false));
        let stopped = stop.clone();
        let period = Duration::from_secs_f64(1.0 / f64::from(hz.max(1)));
        let thread = std::thread::Builder::new()
            .name("porthole-cursor".into())
            .spawn(move || {
                let mut last_serial = None;
                let mut last_pos = None;
                let mut last_rect = None;
                let mut shape_changed = true;
                let mut moved = true;
                let mut last_query = Instant::now();
                while !stopped.load(Ordering::Relaxed) {
                    loop {
                        match conn.poll_for_event() {
                            Ok(Some(Event::XfixesCursorNotify(_))) => shape_changed = true,
                            Ok(Some(Event::XinputRawMotion(_))) => moved = true,
                            Ok(Some(_)) => {}
                            Ok(None) => break,
                            Err(e) => {
                                tracing::debug!("X connection lost ({e}); cursor watch stops");
                                return;
                            }
                        }
                    }
                    let rect = monitor.rect();
                    // (The monitor shared can change under a pointer at rest; and a server
                    // that takes the selection but sends no raw motion, as an Xwayland
                    // might for a pointer over other clients, is still looked at now and
                    // then.)
                    moved |= !motion_events
                        || last_rect != Some(rect)
                        || last_query.elapsed() >= BACKSTOP;
                    if !moved && !shape_changed {
                        // Until the X server has something to say (at most 100 ms, to
                        // notice a stop).
                        // (An error: look again.)
                        let _ = crate::x11grab::wait_readable(
                            conn.stream(),
                            Duration::from_millis(100),
                        );
                        continue;
                    }
                    if std::mem::take(&mut shape_changed) {
                        let reply = conn.xfixes_get_cursor_image().map(|c| c.reply());
                        let Ok(Ok(reply)) = reply else {
                            tracing::debug!("cursor image unavailable; cursor watch stops");
                            return;
                        };
                        if last_serial != Some(reply.cursor_serial)
                            && reply.width > 0
                            && reply.height > 0
                            && reply.width <= 256
                            && reply.height <= 256
                        {
                            last_serial = Some(reply.cursor_serial);
                            report(CursorEvent::Shape {
                                hot_x: reply.xhot.min(reply.width - 1),
                                hot_y: reply.yhot.min(reply.height - 1),
                                width: reply.width,
                                height: reply.height,
                                rgba: argb_premultiplied_to_rgba(&reply.cursor_image),
                            });
                        }
                    }
                    if std::mem::take(&mut moved) {
                        let reply = conn.query_pointer(root).map(|c| c.reply());
                        let Ok(Ok(pointer)) = reply else {
                            tracing::debug!("pointer position unavailable; cursor watch stops");
                            return;
                        };
                        last_rect = Some(rect);
                        last_query = Instant::now();
                        let (x, in_x) = normalise(i32::from(pointer.root_x), rect.x, rect.width);
                        let (y, in_y) = normalise(i32::from(pointer.root_y), rect.y, rect.height);
                        let pos = (x, y, in_x && in_y);
                        if last_pos != Some(pos) {
                            last_pos = Some(pos);
                            report(CursorEvent::Position {
                                x,
                                y,
                                visible: pos.2,
                            });
                        }
                    }
                    // At most `hz` reports a second.
                    std::thread::sleep(period);
                }
            })?;
        Ok(Self {
            stop,
            thread: Some(thread),
        })
    }
}

impl Drop for CursorWatcher {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn positions_normalise_within_the_monitor() {
        assert_eq!(normalise(0, 0, 1920), (0, true));
        assert_eq!(normalise(1919, 0, 1920), (65535, true));
        assert_eq!(normalise(2000, 0, 1920), (65535, false));
        assert_eq!(normalise(1920, 1920, 1280), (0, true));
        // Round trip with the injector's mapping.
        for px in [0, 1, 700, 1919] {
            let (v, _) = normalise(px, 0, 1920);
            assert_eq!(crate::input::to_pixel(v, 0, 1920), px);
        }
    }

    #[test]
    fn premultiplied_argb_becomes_straight_rgba() {
        // Opaque red, half-transparent white (premultiplied 0x80), fully transparent.
        let px = [0xffff0000u32, 0x80808080, 0x00000000];
        assert_eq!(
            argb_premultiplied_to_rgba(&px),
            vec![255, 0, 0, 255, 255, 255, 255, 128, 0, 0, 0, 0]
        );
    }
}
