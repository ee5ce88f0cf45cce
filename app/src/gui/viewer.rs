//! The native viewer: the same WHEP endpoint and data channels a browser uses; H.264
//! decoded (`media::decoder`) on its own thread into a newest-frame slot shown as a texture.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{mpsc, Arc};
use std::time::{Duration, Instant};

use eframe::egui;
use media::clipboard::ClipContent;
use media::slot::LatestSlot;
use net::client::{ClientEvent, ShareClient, ShareUrl};
use net::protocol::notice;
use net::Message;

use super::consent::{consent_ui, ClipboardConsent};

/// A decoded picture, RGBA.
struct Picture {
    width: usize,
    height: usize,
    rgba: Vec<u8>,
    decode_us: u64,
    /// When its last packet arrived.
    received: Instant,
}

enum Status {
    Connecting,
    WaitingForPicture,
    Showing,
    Failed(String),
}

#[derive(Default)]
struct Stats {
    frames: AtomicU64,
    bytes: AtomicU64,
}

/// The recording in progress, shared with the network task that feeds it.
#[derive(Default)]
struct RecordingSlot {
    recording: Option<crate::recording::Recording>,
    /// Set when writing failed: shown to the user; recording stopped, viewing goes on.
    error: Option<String>,
    /// `--record FILE`: start as soon as connected.
    start_path: Option<std::path::PathBuf>,
}

type SharedRecording = Arc<std::sync::Mutex<RecordingSlot>>;

pub struct ViewerScreen {
    status: Status,
    client: Option<Arc<ShareClient>>,
    connected: mpsc::Receiver<Result<Arc<ShareClient>, String>>,
    messages: mpsc::Receiver<ClientEvent>,
    messages_tx: mpsc::Sender<ClientEvent>,
    pictures: Arc<LatestSlot<Picture>>,
    texture: Option<egui::TextureHandle>,
    size: (usize, usize),
    rights: u8,
    stats: Arc<Stats>,
    show_stats: bool,
    fps: f32,
    kbps: f32,
    decode_ms: f32,
    display_ms: f32,
    link: Arc<std::sync::Mutex<net::client::LinkStats>>,
    last_tick: (Instant, u64, u64),
    rt: tokio::runtime::Handle,
    player: Option<Arc<media::audio::AudioPlayer>>,
    /// Modifier state last sent to the host.
    modifiers: std::cell::Cell<egui::Modifiers>,
    /// Lets the decoder wake the UI when a picture is ready.
    repaint: Arc<std::sync::OnceLock<egui::Context>>,
    /// Messages for the host, sent in order by one task.
    outbox: Option<tokio::sync::mpsc::UnboundedSender<Message>>,
    /// When this viewer last asked the host for control.
    asked_control: Option<std::time::Instant>,
    /// Where to reconnect to after a drop, and the name the host sees.
    target: (ShareUrl, Option<String>, Option<String>),
    /// The host's monitors and the one shared (`Monitors`).
    monitors: Option<(u8, Vec<net::protocol::MonitorEntry>)>,
    /// The quality preset: the most kbit/s this viewer asks for (0: no limit).
    max_kbps: u32,
    reconnect_at: Option<Instant>,
    /// The host ended the session and said why (no reconnecting then).
    farewell: Option<String>,
    /// The host pointer, normalised, and whether it is on the shared monitor.
    cursor: Option<(u16, u16, bool)>,
    cursor_shape: Option<Message>,
    cursor_texture: Option<(egui::TextureHandle, egui::Vec2, egui::Vec2)>,
    /// Clipboard transfers from the host being reassembled.
    incoming_clipboard: net::protocol::ClipboardAssembler,
    /// This machine's clipboard, synced with the host's while the right allows it.
    local_clipboard: Option<media::clipboard::HostClipboard>,
    /// The latest local copy, from the clipboard thread (judged by `consent` in `poll`).
    local_copies: Arc<std::sync::Mutex<Option<Arc<ClipContent>>>>,
    /// Whether local copies may go to the host (asked; off by default, per session).
    consent: ClipboardConsent<Arc<ClipContent>>,
    next_transfer: u32,
    /// The task sending the latest local copy. Each waits for the one before: the host
    /// takes one transfer at a time, its chunks in order (docs/protocol.md), so two quick
    /// copies must not interleave (like the browser's clipboard queue).
    clipboard_sending: Option<tokio::task::JoinHandle<()>>,
    recording: SharedRecording,
    /// A file chosen in the save dialog, arriving from the dialog's task.
    chosen_path: Option<mpsc::Receiver<Option<std::path::PathBuf>>>,
}

/// Most clipboard bytes taken from the host (as the browser viewer).
const HOST_CLIPBOARD_MAX: u32 = 64 * 1024 * 1024;

/// Pause before reconnecting after a drop.
const RECONNECT_AFTER: Duration = Duration::from_secs(2);

impl ViewerScreen {
    /// Connects as `name` (what the host sees), and records to `record` from the first
    /// keyframe (`porthole view --record`).
    pub fn connect_recording(
        rt: &tokio::runtime::Handle,
        url: ShareUrl,
        code: Option<String>,
        name: Option<String>,
        record: Option<std::path::PathBuf>,
    ) -> Self {
        let remember = (url.clone(), code.clone(), name.clone());
        let recording: SharedRecording = Arc::default();
        recording
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .start_path = record;
        let (ctx_tx, connected) = mpsc::channel();
        let (messages_tx, messages) = mpsc::channel();
        let pictures = Arc::new(LatestSlot::new());
        let stats = Arc::new(Stats::default());
        let (video_tx, video_rx) = mpsc::sync_channel::<net::client::ReceivedUnit>(8);
        let repaint: Arc<std::sync::OnceLock<egui::Context>> = Arc::default();
        {
            let pictures = pictures.clone();
            let repaint = repaint.clone();
            std::thread::Builder::new()
                .name("porthole-decode".into())
                .spawn(move || decode_loop(video_rx, &pictures, &repaint))
                .expect("spawn decoder");
        }
        // Sound, if this machine has an output; the picture works either way.
        let player = match media::audio::AudioPlayer::start() {
            Ok(p) => Some(Arc::new(p)),
            Err(e) => {
                tracing::warn!("no sound: {e}");
                None
            }
        };
        {
            let messages_tx = messages_tx.clone();
            let stats = stats.clone();
            let player = player.clone();
            let recording = recording.clone();
            rt.spawn(async move {
                match ShareClient::connect_as(&url, code.as_deref(), name.as_deref()).await {
                    Ok((client, mut events)) => {
                        let client = Arc::new(client);
                        start_pending_recording(&recording, client.has_audio());
                        let _ = ctx_tx.send(Ok(client.clone()));
                        while let Some(ev) = events.recv().await {
                            match ev {
                                ClientEvent::Video(unit) => {
                                    if record_video(&recording, &unit) {
                                        client.request_keyframe().await;
                                    }
                                    stats.frames.fetch_add(1, Ordering::Relaxed);
                                    stats
                                        .bytes
                                        .fetch_add(unit.data.len() as u64, Ordering::Relaxed);
                                    if video_tx.try_send(unit).is_err() {
                                        // Decoder behind: it will resync on the next keyframe.
                                        client.request_keyframe().await;
                                    }
                                }
                                ClientEvent::Audio(unit) => {
                                    record_audio(&recording, &unit);
                                    if let Some(p) = &player {
                                        p.push(&unit.data);
                                    }
                                }
                                other => {
                                    let _ = messages_tx.send(other);
                                }
                            }
                        }
                    }
                    Err(e) => {
                        let _ = ctx_tx.send(Err(e.to_string()));
                    }
                }
            });
        }
        Self {
            status: Status::Connecting,
            client: None,
            connected,
            messages,
            messages_tx,
            pictures,
            texture: None,
            size: (0, 0),
            rights: 0,
            stats,
            show_stats: true,
            fps: 0.0,
            kbps: 0.0,
            decode_ms: 0.0,
            display_ms: 0.0,
            link: Arc::default(),
            last_tick: (Instant::now(), 0, 0),
            rt: rt.clone(),
            target: remember,
            monitors: None,
            max_kbps: 0,
            reconnect_at: None,
            farewell: None,
            cursor: None,
            cursor_shape: None,
            cursor_texture: None,
            incoming_clipboard: net::protocol::ClipboardAssembler::new(HOST_CLIPBOARD_MAX),
            local_clipboard: None,
            local_copies: Arc::default(),
            consent: ClipboardConsent::default(),
            next_transfer: 1,
            clipboard_sending: None,
            recording,
            chosen_path: None,
            player,
            modifiers: Default::default(),
            repaint,
            outbox: None,
            asked_control: None,
        }
    }

    pub fn poll(&mut self) {
        if let Ok(result) = self.connected.try_recv() {
            match result {
                Ok(client) => {
                    let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel::<Message>();
                    let sender = client.clone();
                    self.rt.spawn(async move {
                        while let Some(msg) = rx.recv().await {
                            sender.send(&msg).await;
                        }
                    });
                    self.outbox = Some(tx);
                    self.client = Some(client);
                    self.status = Status::WaitingForPicture;
                }
                Err(e) => self.status = Status::Failed(e),
            }
        }
        while let Ok(ev) = self.messages.try_recv() {
            match ev {
                ClientEvent::Ended(why)
                    if why != "closed"
                        && self.reconnect_at.is_none()
                        && self.farewell.is_none() =>
                {
                    self.status = Status::Failed(format!("Disconnected: {why}. Reconnecting…"));
                    self.reconnect_at = Some(Instant::now() + RECONNECT_AFTER);
                }
                ClientEvent::Message(msg) => self.on_message(msg),
                _ => {}
            }
        }
        if self.reconnect_at.is_some_and(|t| Instant::now() >= t) {
            tracing::info!("reconnecting to the share");
            let (url, code, name) = self.target.clone();
            let rt = self.rt.clone();
            let old = std::mem::replace(self, Self::connect_recording(&rt, url, code, name, None));
            // The user's answers hold for the session, across a reconnect.
            self.consent.set_allowed(old.consent.allowed());
            self.max_kbps = old.max_kbps;
            old.close_on(&rt);
            return;
        }
        let copied = self
            .local_copies
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .take();
        if let Some(content) = copied {
            if self.local_clipboard.is_some() {
                if let Some(content) = self.consent.local_copy(content) {
                    self.send_clipboard(&content);
                }
            }
        }
        let _ = &self.messages_tx;
        let (t, f, b) = self.last_tick;
        if t.elapsed() >= Duration::from_secs(1) {
            let frames = self.stats.frames.load(Ordering::Relaxed);
            let bytes = self.stats.bytes.load(Ordering::Relaxed);
            let secs = t.elapsed().as_secs_f32();
            self.fps = (frames - f) as f32 / secs;
            if let Some(client) = self.client.clone() {
                let link = self.link.clone();
                self.rt.spawn(async move {
                    let stats = client.link_stats().await;
                    *link.lock().unwrap_or_else(|e| e.into_inner()) = stats;
                });
            }
            self.kbps = (bytes - b) as f32 * 8.0 / 1000.0 / secs;
            self.last_tick = (Instant::now(), frames, bytes);
        }
    }

    fn on_message(&mut self, msg: Message) {
        match msg {
            Message::Rights { rights, .. } => {
                if self.rights == 0 && self.max_kbps != 0 {
                    // The first Rights: the input channel is open; the quality preset
                    // holds for the connection.
                    self.send(Message::MaxBitrate {
                        kbps: self.max_kbps,
                    });
                }
                self.rights = rights;
                self.sync_clipboard_watch();
            }
            Message::Monitors { current, monitors } => {
                self.monitors = Some((current, monitors));
            }
            Message::CursorPosition { x, y, visible } => self.cursor = Some((x, y, visible)),
            shape @ Message::CursorShape { .. } => {
                self.cursor_shape = Some(shape);
                self.cursor_texture = None;
            }
            Message::ClipboardData {
                transfer,
                mime,
                total,
                offset,
                data,
            } => match self
                .incoming_clipboard
                .push(transfer, mime, total, offset, &data)
            {
                Ok(Some((mime, data))) => {
                    let Some(content) = crate::clip::from_wire(mime, data) else {
                        return;
                    };
                    if let Some(local) = &self.local_clipboard {
                        local.set(content);
                    }
                }
                Ok(None) => {}
                Err(e) => tracing::warn!("host clipboard not taken: {e:?}"),
            },
            Message::Notice { code, text, .. }
                if code == notice::REMOVED || code == notice::HOST_STOPPED =>
            {
                // The host's last word: say why, and do not reconnect.
                tracing::info!("the host ended the session: {text}");
                self.status = Status::Failed(format!("Disconnected: {text}"));
                self.reconnect_at = None;
                self.farewell = Some(text);
            }
            Message::Notice { text, .. } => {
                tracing::warn!("the host says: {text}");
            }
            _ => {}
        }
    }

    /// Watches this machine's clipboard while the clipboard right is held. What is copied
    /// goes to `local_copies`; `poll` sends it only with the user's consent.
    fn sync_clipboard_watch(&mut self) {
        let allowed = self.rights & net::protocol::rights::CLIPBOARD != 0;
        if !allowed {
            self.local_clipboard = None;
            self.consent.right_lost();
            return;
        }
        if self.local_clipboard.is_some() {
            return;
        }
        let copies = self.local_copies.clone();
        let repaint = self.repaint.clone();
        let result = media::clipboard::HostClipboard::start(None, move |content| {
            *copies.lock().unwrap_or_else(|e| e.into_inner()) = Some(content);
            if let Some(ctx) = repaint.get() {
                ctx.request_repaint();
            }
        });
        match result {
            Ok(c) => self.local_clipboard = Some(c),
            Err(e) => tracing::warn!("no clipboard sync: {e}"),
        }
    }

    /// Sends one local copy to the host, in chunks, in order.
    fn send_clipboard(&mut self, content: &ClipContent) {
        let Some(client) = self.client.clone() else {
            return;
        };
        let (mime, bytes) = crate::clip::to_wire(content);
        let transfer = self.next_transfer;
        self.next_transfer = self.next_transfer.wrapping_add(1);
        tracing::info!(
            bytes = bytes.len(),
            "sending this machine's clipboard to the host"
        );
        let previous = self.clipboard_sending.take();
        self.clipboard_sending = Some(self.rt.spawn(async move {
            if let Some(previous) = previous {
                let _ = previous.await;
            }
            for chunk in net::protocol::clipboard_chunks(transfer, mime, &bytes) {
                if !client.send(&chunk).await {
                    break;
                }
            }
        }));
    }

    /// The clipboard toggle and question, while the host offers to take the clipboard.
    fn clipboard_ui(&mut self, ui: &mut egui::Ui) {
        if self.local_clipboard.is_none() {
            return;
        }
        let describe = |c: &Arc<ClipContent>| match &**c {
            ClipContent::Text(t) => format!("{} characters of text", t.chars().count()),
            ClipContent::Png(p) => format!("an image, {} kB", p.len().div_ceil(1000)),
        };
        if let Some(content) = consent_ui(ui, &mut self.consent, describe) {
            self.send_clipboard(&content);
        }
    }

    /// Draws the viewer; returns true when the user leaves it.
    pub fn ui(&mut self, ui: &mut egui::Ui) -> bool {
        let _ = self.repaint.set(ui.ctx().clone());
        if let Some(p) = self.pictures.take_timeout(Duration::ZERO) {
            let image = egui::ColorImage::from_rgba_unmultiplied([p.width, p.height], &p.rgba);
            self.size = (p.width, p.height);
            self.decode_ms = p.decode_us as f32 / 1000.0;
            // Arrival to screen: reassembly is done, so this is decode + queue + upload.
            self.display_ms = p.received.elapsed().as_secs_f32() * 1000.0;
            match &mut self.texture {
                Some(t) => t.set(image, egui::TextureOptions::LINEAR),
                None => {
                    self.texture = Some(ui.ctx().load_texture(
                        "share",
                        image,
                        egui::TextureOptions::LINEAR,
                    ))
                }
            }
            self.status = Status::Showing;
        }
        if ui.input(|i| i.key_pressed(egui::Key::F3)) {
            self.show_stats = !self.show_stats;
        }
        let fullscreen = ui.input(|i| i.viewport().fullscreen.unwrap_or(false));
        if ui.input(|i| i.key_pressed(egui::Key::F11)) {
            ui.ctx()
                .send_viewport_cmd(egui::ViewportCommand::Fullscreen(!fullscreen));
        }
        if self.cursor_texture.is_none() {
            if let Some(Message::CursorShape {
                hot_x,
                hot_y,
                width,
                height,
                rgba,
            }) = &self.cursor_shape
            {
                let size = [usize::from(*width), usize::from(*height)];
                let image = egui::ColorImage::from_rgba_unmultiplied(size, rgba);
                let texture =
                    ui.ctx()
                        .load_texture("host-cursor", image, egui::TextureOptions::LINEAR);
                self.cursor_texture = Some((
                    texture,
                    egui::vec2(f32::from(*hot_x), f32::from(*hot_y)),
                    egui::vec2(f32::from(*width), f32::from(*height)),
                ));
            }
        }
        let mut leave = false;
        ui.horizontal(|ui| {
            if ui.button("Leave").clicked() {
                leave = true;
            }
            if ui
                .button(if fullscreen { "Window" } else { "Fullscreen" })
                .clicked()
            {
                ui.ctx()
                    .send_viewport_cmd(egui::ViewportCommand::Fullscreen(!fullscreen));
            }
            self.record_ui(ui);
            self.clipboard_ui(ui);
            if let Some((current, monitors)) = &self.monitors {
                let can_switch = self.rights & net::protocol::rights::CONTROL != 0;
                if let Some(index) = monitor_menu(ui, *current, monitors, can_switch) {
                    self.send(Message::SelectMonitor { index });
                }
            }
            if let Some(kbps) = quality_menu(ui, self.max_kbps) {
                self.max_kbps = kbps;
                self.send(Message::MaxBitrate { kbps });
            }
            if let Some(p) = &self.player {
                let muted = p.is_muted();
                if ui.button(if muted { "Unmute" } else { "Mute" }).clicked() {
                    p.set_muted(!muted);
                }
            }
            match &self.status {
                Status::Connecting => {
                    ui.spinner();
                    ui.label("Connecting…");
                }
                Status::WaitingForPicture => {
                    ui.spinner();
                    ui.label("Waiting for the first frame…");
                }
                Status::Showing => {
                    if self.rights & net::protocol::rights::CONTROL != 0 {
                        ui.label("Controlling");
                    } else {
                        ui.label("View only");
                        // The host is asked at most every 5 s (the share's limit too).
                        let asked = self
                            .asked_control
                            .is_some_and(|t| t.elapsed() < std::time::Duration::from_secs(5));
                        if asked {
                            ui.label("Asked the host for control…");
                        } else if ui
                            .button("Ask for control")
                            .on_hover_text("The host sees your request and may give you control")
                            .clicked()
                        {
                            self.send(Message::RequestControl);
                            self.asked_control = Some(std::time::Instant::now());
                        }
                    }
                }
                Status::Failed(e) => {
                    ui.colored_label(ui.visuals().error_fg_color, e);
                    if self.reconnect_at.is_none() && ui.button("Reconnect").clicked() {
                        self.reconnect_at = Some(Instant::now());
                        self.farewell = None;
                    }
                }
            }
        });
        if let Some(texture) = &self.texture {
            let avail = ui.available_size();
            let (w, h) = (self.size.0 as f32, self.size.1 as f32);
            let scale = (avail.x / w).min(avail.y / h);
            let response = ui.add(
                egui::Image::new(texture)
                    .fit_to_exact_size(egui::vec2(w * scale, h * scale))
                    .sense(egui::Sense::click_and_drag()),
            );
            self.forward_input(ui, &response);
            // The host cursor, drawn here: it moves without waiting for video.
            if let (Some((x, y, true)), Some((tex, hot, size))) =
                (self.cursor, &self.cursor_texture)
            {
                let rect = response.rect;
                let at = rect.min
                    + egui::vec2(
                        f32::from(x) / 65535.0 * rect.width(),
                        f32::from(y) / 65535.0 * rect.height(),
                    );
                let scale = scale.clamp(0.5, 1.0);
                let top_left = at - *hot * scale;
                ui.painter().image(
                    tex.id(),
                    egui::Rect::from_min_size(top_left, *size * scale),
                    egui::Rect::from_min_max(egui::pos2(0.0, 0.0), egui::pos2(1.0, 1.0)),
                    egui::Color32::WHITE,
                );
            }
            if self.show_stats {
                let link = *self.link.lock().unwrap_or_else(|e| e.into_inner());
                let rtt_ms = link.rtt.map(|r| r.as_secs_f32() * 1000.0);
                let rtt = rtt_ms.map_or("-".to_owned(), |r| format!("{r:.1} ms"));
                // One way ≈ half the round trip; plus our decode-to-screen time.
                let e2e = rtt_ms.map_or("-".to_owned(), |r| {
                    format!("~{:.0} ms", r / 2.0 + self.display_ms)
                });
                let text = format!(
                    "{}×{}  {:.0} fps  {:.0} kbit/s  decode {:.1} ms\nRTT {rtt}  loss {:.1}%  delay {e2e}  (F3 hides)",
                    self.size.0,
                    self.size.1,
                    self.fps,
                    self.kbps,
                    self.decode_ms,
                    link.video_loss() * 100.0
                );
                ui.painter().text(
                    response.rect.left_top() + egui::vec2(8.0, 8.0),
                    egui::Align2::LEFT_TOP,
                    text,
                    egui::FontId::monospace(13.0),
                    egui::Color32::YELLOW,
                );
            }
        }
        leave
    }

    /// Queues a message for the host. One task sends them all, in order: a key release
    /// must never overtake its press.
    fn send(&self, msg: Message) {
        if let Some(tx) = &self.outbox {
            let _ = tx.send(msg);
        }
    }

    fn forward_input(&self, ui: &egui::Ui, response: &egui::Response) {
        if self.rights & net::protocol::rights::CONTROL == 0 {
            return;
        }
        let rect = response.rect;
        let norm = |p: egui::Pos2| {
            let fx = ((p.x - rect.left()) / rect.width()).clamp(0.0, 1.0);
            let fy = ((p.y - rect.top()) / rect.height()).clamp(0.0, 1.0);
            ((fx * 65535.0).round() as u16, (fy * 65535.0).round() as u16)
        };
        let (events, modifiers) = ui.input(|i| (i.events.clone(), i.modifiers));
        for ev in events {
            match ev {
                egui::Event::PointerMoved(p) if rect.contains(p) => {
                    let (x, y) = norm(p);
                    self.send(Message::PointerMove { x, y });
                }
                egui::Event::PointerButton {
                    pos,
                    button,
                    pressed,
                    ..
                } if rect.contains(pos) || !pressed => {
                    let (x, y) = norm(pos);
                    let button = match button {
                        egui::PointerButton::Primary => 0,
                        egui::PointerButton::Middle => 1,
                        egui::PointerButton::Secondary => 2,
                        egui::PointerButton::Extra1 => 3,
                        egui::PointerButton::Extra2 => 4,
                    };
                    self.send(Message::PointerButton {
                        button,
                        pressed,
                        x,
                        y,
                    });
                }
                egui::Event::MouseWheel { delta, .. } if response.hovered() => {
                    let dy = (-delta.y * 120.0).clamp(-32768.0, 32767.0) as i16;
                    let dx = (-delta.x * 120.0).clamp(-32768.0, 32767.0) as i16;
                    self.send(Message::Wheel { dx, dy });
                }
                egui::Event::Key {
                    key,
                    physical_key,
                    pressed,
                    modifiers,
                    ..
                } => {
                    // Modifiers as they were for this key, before it (fast typing can press
                    // and release Shift within one frame).
                    self.sync_modifiers(modifiers);
                    if let Some(code) = dom_code(physical_key.unwrap_or(key)) {
                        self.send(Message::Key {
                            pressed,
                            code: code.to_owned(),
                        });
                    }
                }
                egui::Event::Text(text) if !text.is_empty() && !text.is_ascii() => {
                    // Characters with no physical key on a US layout travel as text.
                    self.send(Message::Text { text });
                }
                _ => {}
            }
        }
        self.sync_modifiers(modifiers);
    }

    /// The record button, and the recording's time and size while it runs.
    fn record_ui(&mut self, ui: &mut egui::Ui) {
        if let Some(rx) = &self.chosen_path {
            if let Ok(choice) = rx.try_recv() {
                self.chosen_path = None;
                if let Some(path) = choice {
                    self.start_recording(path);
                }
            }
        }
        let mut slot = self.recording.lock().unwrap_or_else(|e| e.into_inner());
        match &slot.recording {
            Some(rec) => {
                let secs = rec.recorder().duration().as_secs();
                let bytes = rec.recorder().bytes_written() as f64;
                let size = if bytes < 1_000_000.0 {
                    format!("{:.0} kB", bytes / 1000.0)
                } else {
                    format!("{:.1} MB", bytes / 1_000_000.0)
                };
                if ui.button("Stop recording").clicked() {
                    if let Some(rec) = slot.recording.take() {
                        if let Err(e) = rec.finish() {
                            slot.error = Some(e.to_string());
                        }
                    }
                } else {
                    ui.colored_label(
                        egui::Color32::from_rgb(220, 40, 40),
                        format!("REC {:02}:{:02}  {size}", secs / 60, secs % 60),
                    );
                }
            }
            None => {
                drop(slot);
                if ui.button("Record").clicked() {
                    self.start_recording(default_recording_path());
                }
                if ui.button("Record as…").clicked() && self.chosen_path.is_none() {
                    let (tx, rx) = mpsc::channel();
                    self.rt.spawn(async move {
                        let file = rfd::AsyncFileDialog::new()
                            .set_file_name(
                                default_recording_path()
                                    .file_name()
                                    .map(|n| n.to_string_lossy().into_owned())
                                    .unwrap_or_default(),
                            )
                            .add_filter("MP4 video", &["mp4"])
                            .save_file()
                            .await;
                        let _ = tx.send(file.map(|f| f.path().to_owned()));
                    });
                    self.chosen_path = Some(rx);
                }
                let slot = self.recording.lock().unwrap_or_else(|e| e.into_inner());
                if let Some(e) = &slot.error {
                    ui.colored_label(ui.visuals().error_fg_color, e);
                }
            }
        }
    }

    fn start_recording(&mut self, path: std::path::PathBuf) {
        // The share's answer says whether sound comes (before connecting: no sound track).
        let with_audio = self.client.as_ref().is_some_and(|c| c.has_audio());
        let mut slot = self.recording.lock().unwrap_or_else(|e| e.into_inner());
        slot.error = None;
        let mut ask = false;
        match crate::recording::Recording::create(&path, with_audio) {
            Ok(mut rec) => {
                // The file must start at a keyframe: ask for one now.
                ask = rec.keyframe_due(Instant::now());
                slot.recording = Some(rec);
            }
            Err(e) => slot.error = Some(e.to_string()),
        }
        drop(slot);
        if let Some(client) = self.client.clone().filter(|_| ask) {
            self.rt
                .spawn(async move { client.request_keyframe().await });
        }
    }

    /// egui reports modifiers as state, not as key events: send the presses and releases
    /// of Shift, Ctrl, Alt and Super as physical keys when the state changes.
    fn sync_modifiers(&self, now: egui::Modifiers) {
        let before = self.modifiers.replace(now);
        for (was, is, code) in [
            (before.shift, now.shift, "ShiftLeft"),
            (before.ctrl, now.ctrl, "ControlLeft"),
            (before.alt, now.alt, "AltLeft"),
            (before.mac_cmd, now.mac_cmd, "MetaLeft"),
        ] {
            if was != is {
                self.send(Message::Key {
                    pressed: is,
                    code: code.to_owned(),
                });
            }
        }
    }

    pub fn close(self, rt: &tokio::runtime::Runtime) {
        self.close_on(rt.handle());
    }

    fn close_on(self, rt: &tokio::runtime::Handle) {
        if let Some(rec) = self
            .recording
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .recording
            .take()
        {
            let _ = rec.finish();
        }
        // Closed through the shared handle: background tasks (a keyframe request, the
        // clipboard) may still hold it, and waiting for them to let go left the session
        // open on the host (a ghost viewer per Connect -> Leave).
        if let Some(client) = self.client {
            rt.spawn(async move { client.close().await });
        }
    }
}

/// `~/Videos/porthole-<unix time>.mp4` (the XDG videos dir, else the home dir).
fn default_recording_path() -> std::path::PathBuf {
    let dir = directories::UserDirs::new()
        .and_then(|u| {
            u.video_dir()
                .map(|p| p.to_owned())
                .or_else(|| Some(u.home_dir().to_owned()))
        })
        .unwrap_or_else(std::env::temp_dir);
    let stamp = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap_or_default()
        .as_secs();
    dir.join(format!("porthole-{stamp}.mp4"))
}

/// `porthole view --record FILE`: starts the recording once connected (`with_audio`: the
/// share's answer says sound comes).
fn start_pending_recording(recording: &SharedRecording, with_audio: bool) {
    let mut slot = recording.lock().unwrap_or_else(|e| e.into_inner());
    if let Some(path) = slot.start_path.take() {
        match crate::recording::Recording::create(&path, with_audio) {
            Ok(rec) => slot.recording = Some(rec),
            Err(e) => slot.error = Some(e.to_string()),
        }
    }
}

/// Feeds a video unit to the recording, if any. Returns true when the sender should be
/// asked for a keyframe now.
fn record_video(recording: &SharedRecording, unit: &net::client::ReceivedUnit) -> bool {
    let mut slot = recording.lock().unwrap_or_else(|e| e.into_inner());
    let Some(rec) = slot.recording.as_mut() else {
        return false;
    };
    match rec.video(unit, Instant::now()) {
        Ok(ask) => ask,
        Err(e) => {
            stopped(&mut slot, &e);
            false
        }
    }
}

fn record_audio(recording: &SharedRecording, unit: &net::client::ReceivedUnit) {
    let mut slot = recording.lock().unwrap_or_else(|e| e.into_inner());
    if let Some(Err(e)) = slot.recording.as_mut().map(|rec| rec.audio(unit)) {
        stopped(&mut slot, &e);
    }
}

/// Writing failed: the recording stops (saying why), viewing goes on.
fn stopped(slot: &mut RecordingSlot, e: &media::record::RecordError) {
    tracing::error!("recording stopped: {e}");
    slot.error = Some(format!("Recording stopped: {e}"));
    slot.recording = None;
}

/// egui's logical key → DOM `KeyboardEvent.code` (the physical key on a US layout).
fn dom_code(key: egui::Key) -> Option<&'static str> {
    use egui::Key::*;
    Some(match key {
        A => "KeyA",
        B => "KeyB",
        C => "KeyC",
        D => "KeyD",
        E => "KeyE",
        F => "KeyF",
        G => "KeyG",
        H => "KeyH",
        I => "KeyI",
        J => "KeyJ",
        K => "KeyK",
        L => "KeyL",
        M => "KeyM",
        N => "KeyN",
        O => "KeyO",
        P => "KeyP",
        Q => "KeyQ",
        R => "KeyR",
        S => "KeyS",
        T => "KeyT",
        U => "KeyU",
        V => "KeyV",
        W => "KeyW",
        X => "KeyX",
        Y => "KeyY",
        Z => "KeyZ",
        Num0 => "Digit0",
        Num1 => "Digit1",
        Num2 => "Digit2",
        Num3 => "Digit3",
        Num4 => "Digit4",
        Num5 => "Digit5",
        Num6 => "Digit6",
        Num7 => "Digit7",
        Num8 => "Digit8",
        Num9 => "Digit9",
        Enter => "Enter",
        Escape => "Escape",
        Backspace => "Backspace",
        Tab => "Tab",
        Space => "Space",
        Delete => "Delete",
        Insert => "Insert",
        Home => "Home",
        End => "End",
        PageUp => "PageUp",
        PageDown => "PageDown",
        ArrowUp => "ArrowUp",
        ArrowDown => "ArrowDown",
        ArrowLeft => "ArrowLeft",
        ArrowRight => "ArrowRight",
        Minus => "Minus",
        Equals => "Equal",
        Comma => "Comma",
        Period => "Period",
        Slash => "Slash",
        Backslash => "Backslash",
        Semicolon => "Semicolon",
        Quote => "Quote",
        Backtick => "Backquote",
        OpenBracket => "BracketLeft",
        CloseBracket => "BracketRight",
        F1 => "F1",
        F2 => "F2",
        F4 => "F4",
        F5 => "F5",
        F6 => "F6",
        F7 => "F7",
        F8 => "F8",
        F9 => "F9",
        F10 => "F10",
        F11 => "F11",
        F12 => "F12",
        _ => return None,
    })
}

fn decode_loop(
    rx: mpsc::Receiver<net::client::ReceivedUnit>,
    out: &LatestSlot<Picture>,
    repaint: &std::sync::OnceLock<egui::Context>,
) {
    let mut decoder = match media::decoder::H264Decoder::new() {
        Ok(d) => d,
        Err(e) => {
            tracing::error!("{e}");
            return;
        }
    };
    for unit in rx {
        let started = Instant::now();
        match decoder.decode_rgba(&unit.data) {
            Ok(Some(picture)) => {
                out.put(Picture {
                    width: picture.width,
                    height: picture.height,
                    rgba: picture.rgba,
                    decode_us: started.elapsed().as_micros() as u64,
                    received: unit.received,
                });
                // Show it now, not at the next scheduled repaint.
                if let Some(ctx) = repaint.get() {
                    ctx.request_repaint();
                }
            }
            Ok(None) => {}
            Err(e) => tracing::debug!("undecodable unit: {e}"),
        }
    }
}

/// What a person picking a monitor reads: "LEFT (primary) — 1280×720".
pub fn monitor_label(m: &net::protocol::MonitorEntry) -> String {
    format!(
        "{}{} — {}×{}",
        if m.name.is_empty() {
            "Unnamed"
        } else {
            &m.name
        },
        if m.primary { " (primary)" } else { "" },
        m.width,
        m.height
    )
}

/// The monitor switcher (a viewer's toolbar, the host's sharing screen): the monitors
/// with names and sizes, the one shared checked. Returns the one picked. Shown only for
/// two or more; greyed out, saying why, when `can_switch` is false.
pub fn monitor_menu(
    ui: &mut egui::Ui,
    current: u8,
    monitors: &[net::protocol::MonitorEntry],
    can_switch: bool,
) -> Option<u8> {
    if monitors.len() < 2 {
        return None;
    }
    let mut picked = None;
    let shown = monitors
        .get(usize::from(current))
        .map_or_else(|| "?".to_owned(), monitor_label);
    ui.add_enabled_ui(can_switch, |ui| {
        let label = ui.label("Monitor");
        let response = egui::ComboBox::from_id_salt("monitor")
            .selected_text(shown)
            .show_ui(ui, |ui| {
                for (i, m) in monitors.iter().enumerate() {
                    let Ok(i) = u8::try_from(i) else { break };
                    if ui
                        .selectable_label(i == current, monitor_label(m))
                        .clicked()
                        && i != current
                    {
                        picked = Some(i);
                    }
                }
            })
            .response
            .labelled_by(label.id);
        response.on_disabled_hover_text("Only a viewer with control can switch monitors");
    });
    picked
}

/// The viewer's quality presets: the most the host is asked to send (kbit/s, 0: no limit).
pub const QUALITY_PRESETS: [(&str, u32); 3] =
    [("Auto", 0), ("Balanced", 4000), ("Low bandwidth", 1000)];

/// The quality menu; returns the limit picked.
fn quality_menu(ui: &mut egui::Ui, max_kbps: u32) -> Option<u32> {
    let name = QUALITY_PRESETS
        .iter()
        .find(|(_, k)| *k == max_kbps)
        .map_or("Custom", |(n, _)| n);
    let mut picked = None;
    let label = ui.label("Quality");
    egui::ComboBox::from_id_salt("quality")
        .selected_text(name)
        .show_ui(ui, |ui| {
            for (label, kbps) in QUALITY_PRESETS {
                let text = match kbps {
                    0 => format!("{label} (as the network allows)"),
                    k => format!("{label} (at most {:.1} Mbit/s)", f64::from(k) / 1000.0),
                };
                if ui.selectable_label(kbps == max_kbps, text).clicked() && kbps != max_kbps {
                    picked = Some(kbps);
                }
            }
        })
        .response
        .labelled_by(label.id)
        .on_hover_text("How much the host may send you");
    picked
}
