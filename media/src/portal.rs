//! Screen capture on Wayland: the desktop's ScreenCast portal (its own dialog picks the
//! monitor; a restore token skips the dialog next time) and PipeWire, which delivers the
//! frames. Frames come when the screen changes (PipeWire's own damage-driven pacing). Each
//! is copied into a mirror of the screen, only where its damage regions (PipeWire's
//! `VideoDamage` metadata) say it changed; the damage adds up until the capture takes it,
//! so a reader that falls behind skips frames but never changes.

use std::os::fd::OwnedFd;
use std::sync::{Arc, Condvar, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use ashpd::desktop::screencast::{CursorMode, Screencast, SelectSourcesOptions, SourceType};
use ashpd::desktop::{PersistMode, Session};
use pipewire as pw;
use pw::spa;

#[derive(Debug, thiserror::Error)]
pub enum PortalError {
    #[error("the ScreenCast portal is not available (is xdg-desktop-portal running?): {0}")]
    Unavailable(String),
    #[error("screen sharing was not allowed (the dialog was cancelled): {0}")]
    Refused(String),
    #[error("the portal offered no screen")]
    NoStream,
    #[error("PipeWire: {0}")]
    PipeWire(String),
}

/// How long a new cast may take to send its first frame before the pointer is nudged.
const FIRST_FRAME_WAIT: Duration = Duration::from_millis(300);

/// Quiet time after the last frame before [`SettleNudge`] nudges the pointer.
pub const SETTLE_AFTER: Duration = Duration::from_millis(100);
/// Frames starting this soon after a nudge, all of them small, are taken for its echo (the
/// cursor's repaint).
const NUDGE_ECHO: Duration = Duration::from_millis(250);
/// A frame changing at most this many rows is small enough to be the cursor's repaint.
const CURSOR_ROWS: usize = 64;
/// After a nudge, one more this much later (see [`SettleNudge`]).
const FOLLOW_UP: Duration = Duration::from_millis(400);

/// The last change before a still screen, fetched. wlroots (up to 0.16, Debian 12's 0.15)
/// sends a `copy_with_damage` frame only at the output's next commit: damage that came
/// while xdg-desktop-portal-wlr 0.7 was between frames (its frame-rate timer, the buffer
/// round trip) waits in the compositor until something else changes (upstream
/// xdg-desktop-portal-wlr #158: a typed letter shows only with the next). On a still
/// screen that is never: sway's output went green and the cast stayed red (wayland.test,
/// about 1 run in 5, grim showing green). Once frames stop for [`SETTLE_AFTER`], the pointer
/// moves one pixel and back: the cursor's repaint is a commit, and the frame it sends
/// carries all the damage held. A run of frames that starts right after a nudge and
/// changes no more than a cursor's rows is its echo and asks for none (a still screen
/// costs nothing). A change that lands between the echo's frames is held the same way,
/// and changes that come in steps (sway's background: the old one's client gone, the new
/// one's first commit some 100 ms later) land there often: so each nudge is followed by
/// one more, [`FOLLOW_UP`] later, whatever came meanwhile. Where the compositor has no
/// wlroots virtual pointer, the first failure ends the nudging.
#[derive(Default)]
pub struct SettleNudge {
    /// When the current run of frames started (none since the last quiet time).
    run_started: Option<Instant>,
    /// Whether a frame of the current run changed more than a cursor's rows.
    run_large: bool,
    last_nudge: Option<Instant>,
    /// When the nudge that follows the last one is due.
    follow_up: Option<Instant>,
    unavailable: bool,
    nudger: Option<crate::input::PointerNudger>,
}

impl SettleNudge {
    /// A frame came at `now`, changing `rows` rows.
    pub fn frame(&mut self, now: Instant, rows: usize) {
        self.run_started.get_or_insert(now);
        self.run_large |= rows > CURSOR_ROWS;
    }

    /// No frame for [`SETTLE_AFTER`] until `now`: whether to nudge (and it is counted done).
    pub fn quiet(&mut self, now: Instant) -> bool {
        if self.unavailable {
            return false;
        }
        let large = std::mem::take(&mut self.run_large);
        if let Some(started) = self.run_started.take() {
            let echo = !large
                && self
                    .last_nudge
                    .is_some_and(|n| started.saturating_duration_since(n) < NUDGE_ECHO);
            if !echo {
                self.last_nudge = Some(now);
                self.follow_up = Some(now + FOLLOW_UP);
                return true;
            }
        }
        if self.follow_up.is_some_and(|at| now >= at) {
            self.follow_up = None;
            self.last_nudge = Some(now);
            return true;
        }
        false
    }

    /// Nudges the pointer when [`Self::quiet`] says so.
    pub fn on_quiet(&mut self, now: Instant) {
        if !self.quiet(now) {
            return;
        }
        let nudged = match &mut self.nudger {
            Some(n) => n.nudge(),
            None => crate::input::PointerNudger::new().and_then(|mut n| {
                n.nudge()?;
                self.nudger = Some(n);
                Ok(())
            }),
        };
        if let Err(e) = nudged {
            tracing::debug!("no nudge after a run of frames (not asked again): {e}");
            self.unavailable = true;
        }
    }
}

/// One captured frame: BGRx rows of `stride` bytes.
pub struct PortalFrame {
    pub width: u32,
    pub height: u32,
    pub stride: usize,
    pub bgrx: Vec<u8>,
    pub time: Instant,
}

/// The screen as the portal last showed it, and what changed since it was last read.
#[derive(Default)]
pub struct Mirror {
    pub width: u32,
    pub height: u32,
    /// Bytes from one row to the next.
    pub stride: usize,
    pub bgrx: Vec<u8>,
    /// Everything changed (the first frame, a new size, or damage not told).
    pub full: bool,
    /// Changed rows `(y, height)` (clipped to the picture), when not `full`.
    pub damage: Vec<(usize, usize)>,
    /// When the newest frame came.
    pub time: Option<Instant>,
    /// A frame came since the last read.
    fresh: bool,
}

type Shared = Arc<(Mutex<Mirror>, Condvar)>;

/// A running portal screen cast; stops when dropped.
pub struct PortalCapture {
    mirror: Shared,
    stop: pw::channel::Sender<()>,
    thread: Option<JoinHandle<()>>,
    /// The token that lets the next share skip the dialog (when the portal keeps one).
    pub restore_token: Option<String>,
    /// Where the shared monitor sits on the desktop and its size (logical pixels).
    pub position: Option<(i32, i32)>,
    pub size: Option<(i32, i32)>,
    /// Closed when the capture stops: a portal session left open keeps the compositor's
    /// side of the cast alive (xdg-desktop-portal-wlr then also takes the damage the next
    /// cast waits for, and a still screen never sends that one its first frame).
    session: Option<Session<Screencast>>,
}

struct Opened {
    session: Session<Screencast>,
    node: u32,
    fd: OwnedFd,
    restore_token: Option<String>,
    position: Option<(i32, i32)>,
    size: Option<(i32, i32)>,
}

async fn open_portal(restore_token: Option<&str>) -> Result<Opened, PortalError> {
    let proxy = Screencast::new()
        .await
        .map_err(|e| PortalError::Unavailable(e.to_string()))?;
    let modes = proxy
        .available_cursor_modes()
        .await
        .map_err(|e| PortalError::Unavailable(e.to_string()))?;
    // The cursor drawn into the picture where the portal cannot send it apart (wlroots).
    let cursor = if modes.contains(CursorMode::Embedded) {
        CursorMode::Embedded
    } else {
        CursorMode::Hidden
    };
    let session = proxy
        .create_session(Default::default())
        .await
        .map_err(|e| PortalError::Unavailable(e.to_string()))?;
    proxy
        .select_sources(
            &session,
            SelectSourcesOptions::default()
                .set_cursor_mode(cursor)
                .set_sources(ashpd::enumflags2::BitFlags::from_flag(SourceType::Monitor))
                .set_multiple(false)
                .set_restore_token(restore_token)
                .set_persist_mode(PersistMode::ExplicitlyRevoked),
        )
        .await
        .map_err(|e| PortalError::Refused(e.to_string()))?;
    let response = proxy
        .start(&session, None, Default::default())
        .await
        .map_err(|e| PortalError::Refused(e.to_string()))?
        .response()
        .map_err(|e| PortalError::Refused(e.to_string()))?;
    let stream = response
        .streams()
        .first()
        .ok_or(PortalError::NoStream)?
        .to_owned();
    let fd = proxy
        .open_pipe_wire_remote(&session, Default::default())
        .await
        .map_err(|e| PortalError::PipeWire(e.to_string()))?;
    Ok(Opened {
        session,
        node: stream.pipe_wire_node_id(),
        fd,
        restore_token: response.restore_token().map(str::to_owned),
        position: stream.position(),
        size: stream.size(),
    })
}

impl PortalCapture {
    /// Asks the portal for a monitor (its dialog, unless `restore_token` still holds) and
    /// starts receiving its frames.
    pub fn open(restore_token: Option<&str>) -> Result<Self, PortalError> {
        let Opened {
            session,
            node,
            fd,
            restore_token,
            position,
            size,
        } = futures_lite::future::block_on(open_portal(restore_token))?;
        let mirror: Shared = Arc::default();
        let (stop, stop_rx) = pw::channel::channel::<()>();
        let (ready_tx, ready_rx) = std::sync::mpsc::channel();
        let thread = {
            let mirror = mirror.clone();
            std::thread::Builder::new()
                .name("porthole-pipewire".into())
                .spawn(move || {
                    if let Err(e) = stream_loop(node, fd, mirror, stop_rx, &ready_tx) {
                        let _ = ready_tx.send(Err(e));
                    }
                })
                .expect("spawn the PipeWire thread")
        };
        let failed = match ready_rx.recv() {
            Ok(Ok(())) => None,
            Ok(Err(e)) => Some(e),
            Err(_) => Some(PortalError::PipeWire("the stream thread ended".into())),
        };
        if let Some(e) = failed {
            close(session);
            return Err(e);
        }
        // wlroots' portal sends a frame only after damage, and a cast that is not the
        // first of its xdg-desktop-portal-wlr finds the damage taken by the one before: a
        // still screen would show nothing until it changes. Moving the pointer one pixel
        // and back repaints the cursor (drawn into the picture), which sends the frame.
        let first = {
            let (lock, cond) = &*mirror;
            let guard = lock.lock().unwrap_or_else(|e| e.into_inner());
            let (guard, _) = cond
                .wait_timeout_while(guard, FIRST_FRAME_WAIT, |m| !m.fresh)
                .unwrap_or_else(|e| e.into_inner());
            guard.fresh
        };
        if !first {
            match crate::input::nudge_wayland_pointer() {
                Ok(()) => tracing::debug!(
                    "no first frame from the portal in {FIRST_FRAME_WAIT:?}: nudged the pointer"
                ),
                Err(e) => tracing::debug!("no first frame yet, and the pointer: {e}"),
            }
        }
        Ok(Self {
            mirror,
            stop,
            thread: Some(thread),
            restore_token,
            position,
            size,
            session: Some(session),
        })
    }

    /// Waits up to `timeout` for a frame newer than the last read; whether one came.
    pub fn wait(&self, timeout: Duration) -> bool {
        let (lock, cond) = &*self.mirror;
        let guard = lock.lock().unwrap_or_else(|e| e.into_inner());
        let (guard, _) = cond
            .wait_timeout_while(guard, timeout, |m| !m.fresh)
            .unwrap_or_else(|e| e.into_inner());
        guard.fresh
    }

    /// Reads the screen and what changed since the last read (waiting up to `timeout`
    /// for a change), then forgets that damage. `read` runs with the mirror locked (the
    /// PipeWire thread waits meanwhile): convert what changed, not more.
    pub fn read<R>(&self, timeout: Duration, read: impl FnOnce(&Mirror) -> R) -> Option<R> {
        let (lock, cond) = &*self.mirror;
        let guard = lock.lock().unwrap_or_else(|e| e.into_inner());
        let (mut guard, _) = cond
            .wait_timeout_while(guard, timeout, |m| !m.fresh)
            .unwrap_or_else(|e| e.into_inner());
        if !guard.fresh {
            return None;
        }
        let out = read(&guard);
        guard.fresh = false;
        guard.full = false;
        guard.damage.clear();
        Some(out)
    }

    /// The newest frame since the last read, whole, waiting up to `timeout` for one.
    pub fn next(&self, timeout: Duration) -> Option<PortalFrame> {
        self.read(timeout, |m| PortalFrame {
            width: m.width,
            height: m.height,
            stride: m.stride,
            bgrx: m.bgrx.clone(),
            time: m.time.unwrap_or_else(Instant::now),
        })
    }
}

impl Drop for PortalCapture {
    fn drop(&mut self) {
        let _ = self.stop.send(());
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
        if let Some(session) = self.session.take() {
            close(session);
        }
    }
}

/// Ends a portal session (the portal stops the compositor's side of the cast).
fn close(session: Session<Screencast>) {
    if let Err(e) = futures_lite::future::block_on(session.close()) {
        tracing::debug!("closing the ScreenCast session: {e}");
    }
}

fn pw_err(e: impl std::fmt::Display) -> PortalError {
    PortalError::PipeWire(e.to_string())
}

/// The rows `(y, height)` a frame's `VideoDamage` regions cover, clipped to the picture;
/// `None` when the frame has no such metadata, or when its regions fill the metadata (the
/// producer then merged the rest into the last one, which xdg-desktop-portal-wlr 0.7 gets
/// wrong: the whole frame is safer).
fn damage_rows(
    buffer: &pw::buffer::Buffer<'_>,
    width: usize,
    height: usize,
) -> Option<Vec<(usize, usize)>> {
    use spa::buffer::meta::MetaVideoDamage;
    let meta = buffer.find_meta::<MetaVideoDamage>()?;
    let capacity = meta.as_raw().size as usize / std::mem::size_of::<spa::sys::spa_meta_region>();
    let mut rows = Vec::new();
    for (n, region) in meta.iter().enumerate() {
        if n + 1 >= capacity {
            return None;
        }
        let (p, size) = (region.position(), region.size());
        let (x0, y0) = (p.x.max(0) as usize, p.y.max(0) as usize);
        let x1 = (x0 + size.width as usize).min(width);
        let y1 = (y0 + size.height as usize).min(height);
        if x1 > x0 && y1 > y0 {
            rows.push((y0, y1 - y0));
        }
    }
    Some(rows)
}

/// The `Meta` param asking for `VideoDamage` regions (room for 4, what
/// xdg-desktop-portal-wlr offers at most).
fn damage_meta_param() -> Result<Vec<u8>, PortalError> {
    use spa::pod::{Object, Property, PropertyFlags, Value};
    let region = std::mem::size_of::<spa::sys::spa_meta_region>() as i32;
    let object = Object {
        type_: spa::utils::SpaTypes::ObjectParamMeta.as_raw(),
        id: spa::param::ParamType::Meta.as_raw(),
        properties: vec![
            Property {
                key: spa::sys::SPA_PARAM_META_type,
                flags: PropertyFlags::empty(),
                value: Value::Id(spa::utils::Id(spa::sys::SPA_META_VideoDamage)),
            },
            Property {
                key: spa::sys::SPA_PARAM_META_size,
                flags: PropertyFlags::empty(),
                value: Value::Int(region * 4),
            },
        ],
    };
    Ok(spa::pod::serialize::PodSerializer::serialize(
        std::io::Cursor::new(Vec::new()),
        &Value::Object(object),
    )
    .map_err(pw_err)?
    .0
    .into_inner())
}

/// The frames' format, as negotiated.
#[derive(Default)]
struct Negotiated {
    /// The frames' size, as negotiated.
    size: (u32, u32),
    ok: bool,
    /// Whether the first frame's damage metadata was logged.
    told_damage: bool,
}

fn stream_loop(
    node: u32,
    fd: OwnedFd,
    mirror: Shared,
    stop: pw::channel::Receiver<()>,
    ready: &std::sync::mpsc::Sender<Result<(), PortalError>>,
) -> Result<(), PortalError> {
    pw::init();
    let mainloop = pw::main_loop::MainLoopRc::new(None).map_err(pw_err)?;
    let context = pw::context::ContextRc::new(&mainloop, None).map_err(pw_err)?;
    let core = context.connect_fd(fd, None).map_err(pw_err)?;
    let stream = pw::stream::StreamBox::new(
        &core,
        "porthole-screen",
        pw::properties::properties! {
            *pw::keys::MEDIA_TYPE => "Video",
            *pw::keys::MEDIA_CATEGORY => "Capture",
            *pw::keys::MEDIA_ROLE => "Screen",
        },
    )
    .map_err(pw_err)?;
    // RT_PROCESS: `process` runs on PipeWire's data thread, at once, not deferred to this
    // loop. Deferred (the default), a frame after a quiet second sometimes never reached
    // it: xdg-desktop-portal-wlr 0.7 (which drives the graph by queueing its buffers, with
    // two of them) queued sway's green output twice and no `process` came, the loop alive
    // (wayland.test: 8 of 131 runs under PipeWire 0.3.65; none in 120 with RT_PROCESS).
    // `param_changed` still runs on this thread: the two are in separate listeners, and
    // what they share is behind a lock.
    let negotiated: Arc<Mutex<Negotiated>> = Arc::default();
    let _listener = stream
        .add_local_listener_with_user_data(())
        .state_changed(|_, _, old, new| tracing::debug!(?old, ?new, "PipeWire stream"))
        .param_changed({
            let negotiated = negotiated.clone();
            move |stream, _, id, param| {
                let Some(param) = param else { return };
                if id != spa::param::ParamType::Format.as_raw() {
                    return;
                }
                let mut info = spa::param::video::VideoInfoRaw::default();
                let ok = info.parse(param).is_ok()
                    && info.format() == spa::param::video::VideoFormat::BGRx;
                {
                    let mut n = negotiated.lock().unwrap_or_else(|e| e.into_inner());
                    n.ok = ok;
                    n.size = (info.size().width, info.size().height);
                }
                if !ok {
                    tracing::warn!(format = ?info.format(), "PipeWire offered a format Porthole cannot read");
                    return;
                }
                // Ask for the damage regions with each buffer (only the changed rows are read).
                match damage_meta_param() {
                    Ok(bytes) => {
                        if let Some(pod) = spa::pod::Pod::from_bytes(&bytes) {
                            if let Err(e) = stream.update_params(&mut [pod]) {
                                tracing::debug!("PipeWire refused the damage metadata: {e}");
                            }
                        }
                    }
                    Err(e) => tracing::debug!("{e}"),
                }
            }
        })
        .register()
        .map_err(pw_err)?;
    // A listener of its own: its callbacks are reached from the data thread only.
    let _process = stream
        .add_local_listener_with_user_data(())
        .process(move |stream, _| {
            let Some(mut buffer) = stream.dequeue_buffer() else {
                return;
            };
            let (ok, (width, height), first) = {
                let mut n = negotiated.lock().unwrap_or_else(|e| e.into_inner());
                (n.ok, n.size, !std::mem::replace(&mut n.told_damage, true))
            };
            if !ok {
                return;
            }
            let damage = damage_rows(&buffer, width as usize, height as usize);
            if first {
                tracing::debug!(damage = damage.is_some(), "the screen cast's first frame");
            }
            let datas = buffer.datas_mut();
            let Some(data) = datas.first_mut() else {
                return;
            };
            let (offset, size, stride, corrupted) = {
                let chunk = data.chunk();
                let corrupted = chunk.flags().contains(spa::buffer::ChunkFlags::CORRUPTED);
                (
                    chunk.offset() as usize,
                    chunk.size() as usize,
                    chunk.stride(),
                    corrupted,
                )
            };
            if corrupted {
                // xdg-desktop-portal-wlr queues a buffer whose copy failed this way: its
                // pixels are whatever it held before (an older frame).
                tracing::debug!("the screen cast sent a corrupted buffer: skipped");
                return;
            }
            let Some(bytes) = data.data() else { return };
            let stride = if stride > 0 {
                stride as usize
            } else {
                width as usize * 4
            };
            let need = stride * height as usize;
            if size < need || bytes.len() < offset + need {
                return; // an empty or corrupt buffer (e.g. the cursor alone moved)
            }
            let src = &bytes[offset..offset + need];
            let (lock, cond) = &*mirror;
            let mut m = lock.lock().unwrap_or_else(|e| e.into_inner());
            let resized = (m.width, m.height, m.stride) != (width, height, stride);
            tracing::trace!(?damage, resized, "a screen cast frame");
            if !resized && damage.as_ref().is_some_and(|rows| rows.is_empty()) {
                return; // nothing changed (PipeWire said so)
            }
            if resized {
                m.width = width;
                m.height = height;
                m.stride = stride;
                m.bgrx = vec![0; need];
            }
            match damage {
                Some(rows) if !resized => {
                    for &(y, h) in &rows {
                        let span = y * stride..(y + h) * stride;
                        m.bgrx[span.clone()].copy_from_slice(&src[span]);
                    }
                    if !m.full {
                        m.damage.extend(rows);
                    }
                }
                _ => {
                    m.bgrx.copy_from_slice(src);
                    m.full = true;
                    m.damage.clear();
                }
            }
            m.time = Some(Instant::now());
            m.fresh = true;
            drop(m);
            cond.notify_all();
        })
        .register()
        .map_err(pw_err)?;

    let format = spa::pod::object!(
        spa::utils::SpaTypes::ObjectParamFormat,
        spa::param::ParamType::EnumFormat,
        spa::pod::property!(
            spa::param::format::FormatProperties::MediaType,
            Id,
            spa::param::format::MediaType::Video
        ),
        spa::pod::property!(
            spa::param::format::FormatProperties::MediaSubtype,
            Id,
            spa::param::format::MediaSubtype::Raw
        ),
        spa::pod::property!(
            spa::param::format::FormatProperties::VideoFormat,
            Id,
            spa::param::video::VideoFormat::BGRx
        ),
    );
    let bytes = spa::pod::serialize::PodSerializer::serialize(
        std::io::Cursor::new(Vec::new()),
        &spa::pod::Value::Object(format),
    )
    .map_err(pw_err)?
    .0
    .into_inner();
    let mut params = [spa::pod::Pod::from_bytes(&bytes).ok_or_else(|| pw_err("bad format pod"))?];
    stream
        .connect(
            spa::utils::Direction::Input,
            Some(node),
            pw::stream::StreamFlags::AUTOCONNECT
                | pw::stream::StreamFlags::MAP_BUFFERS
                | pw::stream::StreamFlags::RT_PROCESS,
            &mut params,
        )
        .map_err(pw_err)?;
    let _stop = stop.attach(mainloop.loop_(), {
        let mainloop = mainloop.clone();
        move |()| mainloop.quit()
    });
    let _ = ready.send(Ok(()));
    mainloop.run();
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_nudge_after_a_run_of_frames_one_follow_up_and_none_for_their_echoes() {
        let t0 = Instant::now();
        let ms = |n: u64| t0 + Duration::from_millis(n);
        let mut s = SettleNudge::default();
        assert!(
            !s.quiet(ms(0)),
            "a still screen from the start: nothing to fetch"
        );
        // A run of frames (a change, an animation), then quiet: one nudge.
        for n in [10, 26, 43, 60] {
            s.frame(ms(n), 480);
        }
        assert!(s.quiet(ms(160)));
        assert!(!s.quiet(ms(260)), "once per run");
        // The nudge's own frames (the cursor repainted) ask for none.
        s.frame(ms(175), 24);
        s.frame(ms(190), 24);
        assert!(!s.quiet(ms(290)));
        assert!(!s.quiet(ms(500)));
        // One more, FOLLOW_UP after the first, whatever came meanwhile; its echo asks for
        // none, and then a still screen costs nothing.
        assert!(s.quiet(ms(560)));
        s.frame(ms(575), 24);
        assert!(!s.quiet(ms(680)));
        assert!(!s.quiet(ms(1_000)));
        assert!(!s.quiet(ms(5_000)), "a still screen costs nothing");
        // A later change does.
        s.frame(ms(6_000), 20);
        assert!(s.quiet(ms(6_100)));
        // A change right after a nudge, larger than a cursor, is no echo.
        s.frame(ms(6_150), 480);
        assert!(s.quiet(ms(6_250)));
        // Without a virtual pointer, nudging ends.
        s.unavailable = true;
        s.frame(ms(7_000), 480);
        assert!(!s.quiet(ms(7_100)));
        assert!(!s.quiet(ms(8_000)));
    }
}
