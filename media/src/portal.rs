//! Screen capture on Wayland: the desktop's ScreenCast portal (its own dialog picks the
//! monitor; a restore token skips the dialog next time) and PipeWire, which delivers the
//! frames. Frames come when the screen changes (PipeWire's own damage-driven pacing); the
//! newest waits in a [`LatestSlot`], older ones are dropped.

use std::os::fd::OwnedFd;
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use ashpd::desktop::screencast::{CursorMode, Screencast, SelectSourcesOptions, SourceType};
use ashpd::desktop::{PersistMode, Session};
use pipewire as pw;
use pw::spa;

use crate::slot::LatestSlot;

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

/// One captured frame: BGRx rows of `stride` bytes.
pub struct PortalFrame {
    pub width: u32,
    pub height: u32,
    pub stride: usize,
    pub bgrx: Vec<u8>,
    pub time: Instant,
}

/// A running portal screen cast; stops when dropped.
pub struct PortalCapture {
    frames: Arc<LatestSlot<PortalFrame>>,
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
        let frames = Arc::new(LatestSlot::new());
        let (stop, stop_rx) = pw::channel::channel::<()>();
        let (ready_tx, ready_rx) = std::sync::mpsc::channel();
        let thread = {
            let frames = frames.clone();
            std::thread::Builder::new()
                .name("porthole-pipewire".into())
                .spawn(move || {
                    if let Err(e) = stream_loop(node, fd, frames, stop_rx, &ready_tx) {
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
        if !frames.wait_filled(FIRST_FRAME_WAIT) {
            match crate::input::nudge_wayland_pointer() {
                Ok(()) => tracing::debug!(
                    "no first frame from the portal in {FIRST_FRAME_WAIT:?}: nudged the pointer"
                ),
                Err(e) => tracing::debug!("no first frame yet, and the pointer: {e}"),
            }
        }
        Ok(Self {
            frames,
            stop,
            thread: Some(thread),
            restore_token,
            position,
            size,
            session: Some(session),
        })
    }

    /// The newest frame since the last call, waiting up to `timeout` for one.
    pub fn next(&self, timeout: Duration) -> Option<PortalFrame> {
        self.frames.take_timeout(timeout)
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

/// The frames' format, as negotiated.
#[derive(Default)]
struct Negotiated {
    info: spa::param::video::VideoInfoRaw,
    ok: bool,
}

fn stream_loop(
    node: u32,
    fd: OwnedFd,
    frames: Arc<LatestSlot<PortalFrame>>,
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
    let _listener = stream
        .add_local_listener_with_user_data(Negotiated::default())
        .state_changed(|_, _, old, new| tracing::debug!(?old, ?new, "PipeWire stream"))
        .param_changed(|_, format, id, param| {
            let Some(param) = param else { return };
            if id != spa::param::ParamType::Format.as_raw() {
                return;
            }
            format.ok = format.info.parse(param).is_ok()
                && format.info.format() == spa::param::video::VideoFormat::BGRx;
            if !format.ok {
                tracing::warn!(format = ?format.info.format(), "PipeWire offered a format Porthole cannot read");
            }
        })
        .process(move |stream, format| {
            let Some(mut buffer) = stream.dequeue_buffer() else {
                return;
            };
            if !format.ok {
                return;
            }
            let datas = buffer.datas_mut();
            let Some(data) = datas.first_mut() else { return };
            let (offset, size, stride) = {
                let chunk = data.chunk();
                (chunk.offset() as usize, chunk.size() as usize, chunk.stride())
            };
            let (width, height) = (format.info.size().width, format.info.size().height);
            let Some(bytes) = data.data() else { return };
            let stride = if stride > 0 { stride as usize } else { width as usize * 4 };
            let need = stride * height as usize;
            if size < need || bytes.len() < offset + need {
                return; // an empty or corrupt buffer (e.g. the cursor alone moved)
            }
            frames.put(PortalFrame {
                width,
                height,
                stride,
                bgrx: bytes[offset..offset + need].to_vec(),
                time: Instant::now(),
            });
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
            pw::stream::StreamFlags::AUTOCONNECT | pw::stream::StreamFlags::MAP_BUFFERS,
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
