//! Screen capture on Wayland: the desktop's ScreenCast portal (its own dialog picks the
//! monitor; a restore token skips the dialog next time) and PipeWire, which delivers the
//! frames. Frames come when the screen changes (PipeWire's own damage-driven pacing); the
//! newest waits in a [`LatestSlot`], older ones are dropped.

use std::os::fd::OwnedFd;
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use ashpd::desktop::screencast::{CursorMode, Screencast, SelectSourcesOptions, SourceType};
use ashpd::desktop::PersistMode;
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
}

struct Opened {
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
        let opened = futures_lite::future::block_on(open_portal(restore_token))?;
        let frames = Arc::new(LatestSlot::new());
        let (stop, stop_rx) = pw::channel::channel::<()>();
        let (ready_tx, ready_rx) = std::sync::mpsc::channel();
        let thread = {
            let frames = frames.clone();
            std::thread::Builder::new()
                .name("porthole-pipewire".into())
                .spawn(move || {
                    if let Err(e) = stream_loop(opened.node, opened.fd, frames, stop_rx, &ready_tx)
                    {
                        let _ = ready_tx.send(Err(e));
                    }
                })
                .expect("spawn the PipeWire thread")
        };
        match ready_rx.recv() {
            Ok(Ok(())) => {}
            Ok(Err(e)) => return Err(e),
            Err(_) => return Err(PortalError::PipeWire("the stream thread ended".into())),
        }
        Ok(Self {
            frames,
            stop,
            thread: Some(thread),
            restore_token: opened.restore_token,
            position: opened.position,
            size: opened.size,
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
