//! The host clipboard (the X11 CLIPBOARD selection, or the Wayland clipboard through the
//! wlr data-control protocol) through arboard.
//!
//! One thread owns the `arboard::Clipboard` for the life of the share: the owner of a
//! selection must stay alive to serve it, so a viewer's paste stays readable by host
//! programs. Changes by host programs are noticed through events, never by polling the
//! content: XFixes selection events on X11, data-control `selection` events on Wayland.
//! Each is reported once; what we set ourselves is not echoed. Which one is used follows
//! arboard: Wayland when `$WAYLAND_DISPLAY` is set (a share of an X display clears it).
//! Images travel as PNG: arboard hands over RGBA, which is encoded here.

use std::sync::{mpsc, Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use x11rb::connection::Connection;
use x11rb::protocol::xfixes::{ConnectionExt as _, SelectionEventMask};
use x11rb::protocol::xproto::ConnectionExt as _;

/// Largest picture accepted from a PNG, by its decoded size (width × height × 4 bytes of
/// RGBA), against decompression bombs: a few hundred KB of PNG can claim gigabytes. A
/// 4K screenshot (3840×2160, 31.6 MiB) fits.
pub const MAX_IMAGE_BYTES: u64 = 32 * 1024 * 1024;

/// Why a clipboard picture was refused or could not be converted.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ImageError {
    #[error("not a PNG")]
    NotPng,
    #[error(
        "image too large: {width}x{height} would take {} MiB decoded (at most {} MiB)",
        (u64::from(*width) * u64::from(*height) * 4) >> 20,
        MAX_IMAGE_BYTES >> 20
    )]
    TooLarge { width: u32, height: u32 },
    #[error("broken PNG: {0}")]
    Broken(String),
    #[error("cannot encode the picture as PNG: {0}")]
    Encode(String),
}

/// Why the host clipboard could not be opened or written.
#[derive(Debug, thiserror::Error)]
pub enum ClipboardError {
    #[error("cannot open the clipboard: {0}")]
    Open(#[from] arboard::Error),
    #[error("X11 clipboard: {0}")]
    X11(String),
    #[error("Wayland clipboard: {0}")]
    Wayland(String),
    #[error(transparent)]
    Image(#[from] ImageError),
}

fn x11(e: impl std::fmt::Display) -> ClipboardError {
    ClipboardError::X11(e.to_string())
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ClipContent {
    Text(String),
    /// A PNG file's bytes.
    Png(Vec<u8>),
}

impl ClipContent {
    pub fn len(&self) -> usize {
        match self {
            ClipContent::Text(t) => t.len(),
            ClipContent::Png(p) => p.len(),
        }
    }
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// A PNG's width and height, from its header alone (signature, then the IHDR chunk).
pub fn png_size(png_bytes: &[u8]) -> Result<(u32, u32), ImageError> {
    const SIGNATURE: &[u8] = b"\x89PNG\r\n\x1a\n";
    let be = |at: usize| {
        u32::from_be_bytes([
            png_bytes[at],
            png_bytes[at + 1],
            png_bytes[at + 2],
            png_bytes[at + 3],
        ])
    };
    if png_bytes.len() < 24 || &png_bytes[..8] != SIGNATURE || &png_bytes[12..16] != b"IHDR" {
        return Err(ImageError::NotPng);
    }
    Ok((be(16), be(20)))
}

/// Checks a PNG's decoded size against [`MAX_IMAGE_BYTES`] before anything decodes it.
pub fn check_png(png_bytes: &[u8]) -> Result<(u32, u32), ImageError> {
    let (w, h) = png_size(png_bytes)?;
    if u64::from(w) * u64::from(h) * 4 > MAX_IMAGE_BYTES {
        return Err(ImageError::TooLarge {
            width: w,
            height: h,
        });
    }
    Ok((w, h))
}

/// Decodes a PNG into 8-bit RGBA; refuses one larger than [`MAX_IMAGE_BYTES`] decoded
/// before decoding it.
pub fn png_to_rgba(png_bytes: &[u8]) -> Result<(u32, u32, Vec<u8>), ImageError> {
    check_png(png_bytes)?;
    // The decoder's own allocation cap as well: 16-bit channels decode to twice the size.
    let limits = png::Limits {
        bytes: 2 * MAX_IMAGE_BYTES as usize,
    };
    let mut decoder = png::Decoder::new_with_limits(std::io::Cursor::new(png_bytes), limits);
    decoder.set_transformations(png::Transformations::normalize_to_color8());
    let mut reader = decoder
        .read_info()
        .map_err(|e| ImageError::Broken(e.to_string()))?;
    let (w, h) = {
        let info = reader.info();
        (info.width, info.height)
    };
    let too_large = ImageError::TooLarge {
        width: w,
        height: h,
    };
    if u64::from(w) * u64::from(h) * 4 > MAX_IMAGE_BYTES {
        return Err(too_large);
    }
    let mut buf = vec![0; reader.output_buffer_size().ok_or(too_large)?];
    let frame = reader
        .next_frame(&mut buf)
        .map_err(|e| ImageError::Broken(e.to_string()))?;
    let data = &buf[..frame.buffer_size()];
    let rgba = match frame.color_type {
        png::ColorType::Rgba => data.to_vec(),
        png::ColorType::Rgb => data
            .chunks_exact(3)
            .flat_map(|p| [p[0], p[1], p[2], 255])
            .collect(),
        png::ColorType::Grayscale => data.iter().flat_map(|&g| [g, g, g, 255]).collect(),
        png::ColorType::GrayscaleAlpha => data
            .chunks_exact(2)
            .flat_map(|p| [p[0], p[0], p[0], p[1]])
            .collect(),
        png::ColorType::Indexed => {
            return Err(ImageError::Broken("indexed PNG was not expanded".into()))
        }
    };
    Ok((w, h, rgba))
}

/// Encodes 8-bit RGBA as PNG.
pub fn rgba_to_png(width: u32, height: u32, rgba: &[u8]) -> Result<Vec<u8>, ImageError> {
    let encode = |e: png::EncodingError| ImageError::Encode(e.to_string());
    let mut out = Vec::new();
    let mut encoder = png::Encoder::new(&mut out, width, height);
    encoder.set_color(png::ColorType::Rgba);
    encoder.set_depth(png::BitDepth::Eight);
    let mut writer = encoder.write_header().map_err(encode)?;
    writer.write_image_data(rgba).map_err(encode)?;
    writer.finish().map_err(encode)?;
    Ok(out)
}

enum Command {
    Set(ClipContent),
}

/// The host clipboard, watched and settable from any thread.
pub struct HostClipboard {
    tx: Option<mpsc::Sender<Command>>,
    current: Arc<Mutex<Option<Arc<ClipContent>>>>,
    thread: Option<JoinHandle<()>>,
}

impl HostClipboard {
    /// Opens the clipboard of `display` (`None` = `$DISPLAY`); `on_change` gets what host
    /// programs copy (on the clipboard thread: hand it on quickly).
    pub fn start(
        display: Option<String>,
        mut on_change: impl FnMut(Arc<ClipContent>) + Send + 'static,
    ) -> Result<Self, ClipboardError> {
        let (tx, rx) = mpsc::channel::<Command>();
        let (ready_tx, ready_rx) = mpsc::channel::<Result<(), ClipboardError>>();
        let current: Arc<Mutex<Option<Arc<ClipContent>>>> = Arc::default();
        let shared = current.clone();
        let thread = std::thread::Builder::new()
            .name("porthole-clipboard".into())
            .spawn(move || {
                let setup = || -> Result<_, ClipboardError> {
                    let clipboard = arboard::Clipboard::new()?;
                    // Like arboard: Wayland first when there is one, else (or when the
                    // compositor has no data-control, like GNOME) X11 or XWayland.
                    let wayland = std::env::var_os("WAYLAND_DISPLAY")
                        .map(|_| wayland::Watch::open())
                        .and_then(|w| {
                            w.map_err(|e| tracing::info!("{e}; watching the X11 clipboard"))
                                .ok()
                        });
                    let watch = match wayland {
                        Some(w) => Watch::Wayland(w),
                        None => Watch::X11(Box::new(X11Watch::open(display.as_deref())?)),
                    };
                    Ok((clipboard, watch))
                };
                let (mut clipboard, mut watch) = match setup() {
                    Ok(v) => {
                        let _ = ready_tx.send(Ok(()));
                        v
                    }
                    Err(e) => {
                        let _ = ready_tx.send(Err(e));
                        return;
                    }
                };
                // What is on the clipboard at start counts as current (not as a change).
                let mut last = read(&mut clipboard).map(Arc::new);
                *shared.lock().unwrap_or_else(|e| e.into_inner()) = last.clone();
                loop {
                    match rx.recv_timeout(Duration::from_millis(50)) {
                        Ok(Command::Set(content)) => {
                            if let Err(e) = write(&mut clipboard, &content) {
                                tracing::warn!("cannot set the host clipboard: {e}");
                                continue;
                            }
                            // Remember it as host programs will read it (an image comes back
                            // re-encoded), so our own write is not mistaken for a change.
                            let content =
                                Arc::new(read_back(&mut clipboard, last.as_deref(), content));
                            last = Some(content.clone());
                            *shared.lock().unwrap_or_else(|e| e.into_inner()) = Some(content);
                        }
                        Err(mpsc::RecvTimeoutError::Timeout) => {}
                        Err(mpsc::RecvTimeoutError::Disconnected) => return,
                    }
                    match watch.changed() {
                        Ok(true) => {}
                        Ok(false) => continue,
                        Err(e) => {
                            tracing::warn!("stopped watching the host clipboard: {e}");
                            watch = Watch::Closed;
                            continue;
                        }
                    }
                    let Some(content) = read(&mut clipboard) else {
                        continue;
                    };
                    if last.as_deref() == Some(&content) {
                        continue; // our own write, or the same content again
                    }
                    let content = Arc::new(content);
                    last = Some(content.clone());
                    *shared.lock().unwrap_or_else(|e| e.into_inner()) = Some(content.clone());
                    on_change(content);
                }
            })
            .map_err(|e| x11(format!("cannot start the clipboard thread: {e}")))?;
        match ready_rx.recv() {
            Ok(Ok(())) => Ok(Self {
                tx: Some(tx),
                current,
                thread: Some(thread),
            }),
            Ok(Err(e)) => Err(e),
            Err(_) => Err(x11("the clipboard thread ended")),
        }
    }

    /// Puts `content` on the host clipboard (asynchronously; failures are logged).
    pub fn set(&self, content: ClipContent) {
        if let Some(tx) = &self.tx {
            let _ = tx.send(Command::Set(content));
        }
    }

    /// What the host clipboard holds now, as far as we know.
    pub fn current(&self) -> Option<Arc<ClipContent>> {
        self.current
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }
}

impl Drop for HostClipboard {
    fn drop(&mut self) {
        self.tx.take();
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// What tells the clipboard thread that a host program copied something.
enum Watch {
    X11(Box<X11Watch>),
    Wayland(wayland::Watch),
    /// The connection broke: changes are no longer noticed (setting still works).
    Closed,
}

impl Watch {
    /// Whether the clipboard's owner changed since the last call (never blocks).
    fn changed(&mut self) -> Result<bool, ClipboardError> {
        match self {
            Watch::X11(w) => w.changed(),
            Watch::Wayland(w) => w.changed(),
            Watch::Closed => Ok(false),
        }
    }
}

/// XFixes selection-owner events on the root window of `display`.
struct X11Watch {
    conn: x11rb::rust_connection::RustConnection,
}

impl X11Watch {
    fn open(display: Option<&str>) -> Result<Self, ClipboardError> {
        let (conn, screen) = x11rb::connect(display).map_err(x11)?;
        conn.xfixes_query_version(5, 0)
            .map_err(x11)?
            .reply()
            .map_err(|e| x11(format!("XFixes is not available: {e}")))?;
        let atom = conn
            .intern_atom(false, b"CLIPBOARD")
            .map_err(x11)?
            .reply()
            .map_err(x11)?
            .atom;
        let root = conn.setup().roots[screen].root;
        conn.xfixes_select_selection_input(
            root,
            atom,
            SelectionEventMask::SET_SELECTION_OWNER
                | SelectionEventMask::SELECTION_WINDOW_DESTROY
                | SelectionEventMask::SELECTION_CLIENT_CLOSE,
        )
        .map_err(x11)?;
        conn.flush().map_err(x11)?;
        Ok(Self { conn })
    }

    fn changed(&mut self) -> Result<bool, ClipboardError> {
        let mut changed = false;
        while let Some(_event) = self.conn.poll_for_event().map_err(x11)? {
            changed = true;
        }
        Ok(changed)
    }
}

/// The Wayland clipboard's `selection` events, through the wlr data-control protocol (sway
/// and other wlroots compositors, KDE; GNOME has none, and there arboard falls back to
/// XWayland's X11 clipboard, so this is not reached).
mod wayland {
    use super::ClipboardError;
    use wayland_client::globals::{registry_queue_init, GlobalListContents};
    use wayland_client::protocol::{wl_registry::WlRegistry, wl_seat::WlSeat};
    use wayland_client::{
        backend::WaylandError, event_created_child, Connection, Dispatch, EventQueue, QueueHandle,
    };
    use wayland_protocols_wlr::data_control::v1::client::{
        zwlr_data_control_device_v1::{self, ZwlrDataControlDeviceV1},
        zwlr_data_control_manager_v1::ZwlrDataControlManagerV1,
        zwlr_data_control_offer_v1::ZwlrDataControlOfferV1,
    };

    fn err(e: impl std::fmt::Display) -> ClipboardError {
        ClipboardError::Wayland(e.to_string())
    }

    #[derive(Default)]
    struct State {
        changed: bool,
        /// The offer of the current selection (destroyed when the next one comes).
        offer: Option<ZwlrDataControlOfferV1>,
    }

    pub(super) struct Watch {
        queue: EventQueue<State>,
        state: State,
        _device: ZwlrDataControlDeviceV1,
    }

    impl Watch {
        pub(super) fn open() -> Result<Self, ClipboardError> {
            let conn = Connection::connect_to_env().map_err(err)?;
            let (globals, mut queue) = registry_queue_init::<State>(&conn).map_err(err)?;
            let qh = queue.handle();
            let seat: WlSeat = globals.bind(&qh, 1..=1, ()).map_err(err)?;
            let manager: ZwlrDataControlManagerV1 =
                globals.bind(&qh, 1..=2, ()).map_err(|e| {
                    err(format!(
                        "the compositor has no data-control protocol                          (zwlr_data_control_manager_v1): {e}"
                    ))
                })?;
            let device = manager.get_data_device(&seat, &qh, ());
            let mut state = State::default();
            // The first `selection` event is what is on the clipboard now: not a change.
            queue.roundtrip(&mut state).map_err(err)?;
            state.changed = false;
            Ok(Self {
                queue,
                state,
                _device: device,
            })
        }

        pub(super) fn changed(&mut self) -> Result<bool, ClipboardError> {
            self.queue.flush().map_err(err)?;
            if let Some(guard) = self.queue.prepare_read() {
                match guard.read() {
                    Ok(_) => {}
                    Err(WaylandError::Io(e)) if e.kind() == std::io::ErrorKind::WouldBlock => {}
                    Err(e) => return Err(err(e)),
                }
            }
            self.queue.dispatch_pending(&mut self.state).map_err(err)?;
            Ok(std::mem::take(&mut self.state.changed))
        }
    }

    impl Dispatch<WlRegistry, GlobalListContents> for State {
        fn event(
            _: &mut Self,
            _: &WlRegistry,
            _: <WlRegistry as wayland_client::Proxy>::Event,
            _: &GlobalListContents,
            _: &Connection,
            _: &QueueHandle<Self>,
        ) {
        }
    }

    impl Dispatch<WlSeat, ()> for State {
        fn event(
            _: &mut Self,
            _: &WlSeat,
            _: <WlSeat as wayland_client::Proxy>::Event,
            _: &(),
            _: &Connection,
            _: &QueueHandle<Self>,
        ) {
        }
    }

    impl Dispatch<ZwlrDataControlManagerV1, ()> for State {
        fn event(
            _: &mut Self,
            _: &ZwlrDataControlManagerV1,
            _: <ZwlrDataControlManagerV1 as wayland_client::Proxy>::Event,
            _: &(),
            _: &Connection,
            _: &QueueHandle<Self>,
        ) {
        }
    }

    impl Dispatch<ZwlrDataControlOfferV1, ()> for State {
        fn event(
            _: &mut Self,
            _: &ZwlrDataControlOfferV1,
            _: <ZwlrDataControlOfferV1 as wayland_client::Proxy>::Event,
            _: &(),
            _: &Connection,
            _: &QueueHandle<Self>,
        ) {
        }
    }

    impl Dispatch<ZwlrDataControlDeviceV1, ()> for State {
        fn event(
            state: &mut Self,
            _: &ZwlrDataControlDeviceV1,
            event: zwlr_data_control_device_v1::Event,
            _: &(),
            _: &Connection,
            _: &QueueHandle<Self>,
        ) {
            use zwlr_data_control_device_v1::Event;
            match event {
                Event::Selection { id } => {
                    if let Some(old) = std::mem::replace(&mut state.offer, id) {
                        old.destroy();
                    }
                    state.changed = true;
                }
                Event::PrimarySelection { id: Some(offer) } => offer.destroy(),
                _ => {}
            }
        }

        event_created_child!(State, ZwlrDataControlDeviceV1, [
            zwlr_data_control_device_v1::EVT_DATA_OFFER_OPCODE => (ZwlrDataControlOfferV1, ()),
        ]);
    }
}

fn read(clipboard: &mut arboard::Clipboard) -> Option<ClipContent> {
    if let Ok(text) = clipboard.get_text() {
        return Some(ClipContent::Text(text));
    }
    let image = clipboard.get_image().ok()?;
    match rgba_to_png(image.width as u32, image.height as u32, &image.bytes) {
        Ok(png) => Some(ClipContent::Png(png)),
        Err(e) => {
            tracing::warn!("cannot encode the host clipboard image: {e}");
            None
        }
    }
}

/// How long [`read_back`] waits for a write to show.
const READ_BACK_WAIT: Duration = Duration::from_millis(500);

/// What host programs read after we wrote `written` over `before`. On Wayland the write
/// reaches the compositor from another thread (wl-clipboard-rs serves it there), and a read
/// right away could still see `before`: remembered as ours, it made our own write come back
/// as a host change (wayland.test, about 1 run in 10). So this reads until the clipboard no longer
/// holds `before` (or holds `written`), for up to [`READ_BACK_WAIT`]; then `written`.
fn read_back(
    clipboard: &mut arboard::Clipboard,
    before: Option<&ClipContent>,
    written: ClipContent,
) -> ClipContent {
    let start = Instant::now();
    loop {
        if let Some(now) = read(clipboard) {
            if Some(&now) != before || now == written {
                if start.elapsed() >= Duration::from_millis(10) {
                    tracing::debug!(waited = ?start.elapsed(), "the clipboard write showed late");
                }
                return now;
            }
        }
        if start.elapsed() >= READ_BACK_WAIT {
            tracing::debug!("the clipboard write did not show in {READ_BACK_WAIT:?}");
            return written;
        }
        std::thread::sleep(Duration::from_millis(10));
    }
}

fn write(clipboard: &mut arboard::Clipboard, content: &ClipContent) -> Result<(), ClipboardError> {
    match content {
        ClipContent::Text(text) => Ok(clipboard.set_text(text.clone())?),
        ClipContent::Png(bytes) => {
            let (w, h, rgba) = png_to_rgba(bytes)?;
            clipboard
                .set_image(arboard::ImageData {
                    width: w as usize,
                    height: h as usize,
                    bytes: rgba.into(),
                })
                .map_err(ClipboardError::from)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn png_round_trip_keeps_pixels() {
        let rgba: Vec<u8> = (0..16 * 8 * 4).map(|i| (i * 7 % 256) as u8).collect();
        let png = rgba_to_png(16, 8, &rgba).unwrap();
        assert_eq!(&png[1..4], b"PNG");
        assert_eq!(png_to_rgba(&png).unwrap(), (16, 8, rgba));
    }

    #[test]
    fn garbage_is_not_a_png() {
        assert_eq!(png_to_rgba(b"hello"), Err(ImageError::NotPng));
        assert_eq!(png_to_rgba(&[]), Err(ImageError::NotPng));
        assert_eq!(png_size(&[0x89, b'P', b'N', b'G']), Err(ImageError::NotPng));
        // A PNG header over a broken body.
        let mut png = rgba_to_png(4, 4, &[7; 64]).unwrap();
        let n = png.len();
        png.truncate(n - 20);
        assert!(matches!(png_to_rgba(&png), Err(ImageError::Broken(_))));
    }

    /// A grey PNG of `w`×`h` zero pixels: tiny compressed, huge decoded.
    fn bomb(w: u32, h: u32) -> Vec<u8> {
        let mut out = Vec::new();
        let mut encoder = png::Encoder::new(&mut out, w, h);
        encoder.set_color(png::ColorType::Grayscale);
        encoder.set_depth(png::BitDepth::Eight);
        encoder.set_compression(png::Compression::High);
        let mut writer = encoder.write_header().unwrap();
        let mut stream = writer.stream_writer().unwrap();
        let row = vec![0u8; w as usize];
        for _ in 0..h {
            std::io::Write::write_all(&mut stream, &row).unwrap();
        }
        stream.finish().unwrap();
        drop(writer);
        out
    }

    #[test]
    fn a_png_bomb_is_refused_by_its_header_before_decoding() {
        let png = bomb(8000, 8000);
        assert!(png.len() < 400_000, "{} bytes", png.len());
        assert_eq!(png_size(&png), Ok((8000, 8000)));
        let err = check_png(&png).unwrap_err();
        assert_eq!(
            err,
            ImageError::TooLarge {
                width: 8000,
                height: 8000
            }
        );
        let text = err.to_string();
        assert!(
            text.contains("8000x8000") && text.contains("244 MiB"),
            "{text}"
        );
        assert_eq!(png_to_rgba(&png), Err(err));
        // A 4K screenshot is fine.
        let (w, h) = (3840, 2160);
        let ok = bomb(w, h);
        assert_eq!(check_png(&ok), Ok((w, h)));
        let (dw, dh, rgba) = png_to_rgba(&ok).unwrap();
        assert_eq!((dw, dh, rgba.len()), (w, h, (w * h * 4) as usize));
        // One pixel row more than the cap allows is not.
        let over = (MAX_IMAGE_BYTES / 4 / 4096 + 1) as u32;
        assert_eq!(
            check_png(&bomb(4096, over)),
            Err(ImageError::TooLarge {
                width: 4096,
                height: over
            })
        );
    }
}
