//! The native viewer: the same WHEP endpoint and data channels a browser uses. The screen
//! is made of parts: the connection (`connection`: the client, its status, reconnecting),
//! the picture (`picture`: decoding and the texture), input forwarding (`input`), the
//! host's pointer (`cursor`), the stats overlay (`stats`), recording (`recording`), the
//! clipboard (`clipboard`) and the toolbar's menus (`menus`).

mod clipboard;
mod connection;
mod cursor;
mod input;
mod menus;
mod picture;
mod recording;
mod stats;

use std::sync::{Arc, OnceLock};

use eframe::egui;
use net::client::ShareUrl;
use net::protocol::notice;
use net::Message;

use clipboard::ClipboardSync;
use connection::{Connection, Sinks, Status, Target};
use cursor::HostCursor;
use input::InputForwarder;
pub use menus::monitor_menu;
use menus::quality_menu;
use picture::PictureView;
use recording::RecordingControls;
use stats::StatsOverlay;

pub struct ViewerScreen {
    rt: tokio::runtime::Handle,
    /// The current connection; a reconnect replaces it, and only it.
    connection: Connection,
    picture: PictureView,
    input: InputForwarder,
    cursor: HostCursor,
    stats: StatsOverlay,
    recording: RecordingControls,
    clipboard: ClipboardSync,
    /// Sound, if this machine has an output.
    player: Option<Arc<media::audio::AudioPlayer>>,
    /// The quality preset: the most kbit/s this viewer asks for (0: no limit).
    max_kbps: u32,
    /// Lets the decoder and the clipboard watch wake the UI.
    repaint: Arc<OnceLock<egui::Context>>,
}

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
        let repaint: Arc<OnceLock<egui::Context>> = Arc::default();
        // Sound, if this machine has an output; the picture works either way.
        let player = match media::audio::AudioPlayer::start() {
            Ok(p) => Some(Arc::new(p)),
            Err(e) => {
                tracing::warn!("no sound: {e}");
                None
            }
        };
        let mut picture = PictureView::default();
        let stats = StatsOverlay::new();
        let recording = RecordingControls::new(record);
        let sinks = Sinks {
            video: picture.start_decoder(&repaint),
            counters: stats.counters(),
            player: player.clone(),
            recording: recording.shared(),
        };
        let connection = Connection::start(rt, Target { url, code, name }, sinks);
        Self {
            rt: rt.clone(),
            connection,
            picture,
            input: InputForwarder::default(),
            cursor: HostCursor::default(),
            stats,
            recording,
            clipboard: ClipboardSync::new(),
            player,
            max_kbps: 0,
            repaint,
        }
    }

    /// Connects again. What belonged to the last connection starts over (its recording is
    /// finished, the host's pointer, rights, monitors, clipboard transfers and figures are
    /// forgotten, nothing is shown until a new picture); the user's choices hold (the
    /// quality preset, sending clipboard copies, the stats shown, the sound muted).
    fn reconnect(&mut self) {
        tracing::info!("reconnecting to the share");
        self.recording.finish(None);
        self.input = InputForwarder::default();
        self.cursor = HostCursor::default();
        self.clipboard.new_session();
        self.stats.reset();
        let sinks = Sinks {
            video: self.picture.start_decoder(&self.repaint),
            counters: self.stats.counters(),
            player: self.player.clone(),
            recording: self.recording.shared(),
        };
        let target = self.connection.target().clone();
        let next = Connection::start(&self.rt, target, sinks);
        std::mem::replace(&mut self.connection, next).close();
    }

    /// Takes what arrived; called every frame.
    pub fn poll(&mut self) {
        for msg in self.connection.poll() {
            self.on_message(msg);
        }
        if self.connection.reconnect_due() {
            self.reconnect();
            return;
        }
        self.clipboard.poll(&self.connection);
        self.stats.tick(&self.connection);
    }

    fn on_message(&mut self, msg: Message) {
        match msg {
            Message::Rights { rights, .. } => {
                if self.connection.rights == 0 && self.max_kbps != 0 {
                    // The first Rights: the input channel is open; the quality preset
                    // holds for the connection.
                    self.connection.send(Message::MaxBitrate {
                        kbps: self.max_kbps,
                    });
                }
                self.connection.rights = rights;
                let clipboard = rights & net::protocol::rights::CLIPBOARD != 0;
                self.clipboard.follow_right(clipboard, &self.repaint);
            }
            Message::Monitors { current, monitors } => {
                self.connection.monitors = Some((current, monitors));
            }
            Message::CursorPosition { x, y, visible } => self.cursor.moved(x, y, visible),
            Message::CursorShape {
                hot_x,
                hot_y,
                width,
                height,
                rgba,
            } => self.cursor.set_shape(hot_x, hot_y, width, height, rgba),
            Message::ClipboardData {
                transfer,
                mime,
                total,
                offset,
                data,
            } => self
                .clipboard
                .host_chunk(transfer, mime, total, offset, &data),
            Message::Notice { code, text, .. }
                if code == notice::REMOVED || code == notice::HOST_STOPPED =>
            {
                // The host's last word: say why, and do not reconnect.
                self.connection.ended_by_host(text);
            }
            Message::Notice { text, .. } => {
                tracing::warn!("the host says: {text}");
            }
            _ => {}
        }
    }

    /// Draws the viewer; returns true when the user leaves it.
    pub fn ui(&mut self, ui: &mut egui::Ui) -> bool {
        let _ = self.repaint.set(ui.ctx().clone());
        if let Some(frame) = self.picture.update(ui.ctx()) {
            self.stats.picture_shown(frame.decode_us, frame.received);
            self.connection.status = Status::Showing;
        }
        if ui.input(|i| i.key_pressed(egui::Key::F3)) {
            self.stats.show = !self.stats.show;
        }
        let fullscreen = ui.input(|i| i.viewport().fullscreen.unwrap_or(false));
        if ui.input(|i| i.key_pressed(egui::Key::F11)) {
            ui.ctx()
                .send_viewport_cmd(egui::ViewportCommand::Fullscreen(!fullscreen));
        }
        self.cursor.upload(ui.ctx());
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
            self.recording.ui(ui, &self.connection);
            self.clipboard.ui(ui, &self.connection);
            if let Some((current, monitors)) = &self.connection.monitors {
                let can_switch = self.connection.has_control();
                if let Some(index) = monitor_menu(ui, *current, monitors, can_switch) {
                    self.connection.send(Message::SelectMonitor { index });
                }
            }
            if let Some(kbps) = quality_menu(ui, self.max_kbps) {
                self.max_kbps = kbps;
                self.connection.send(Message::MaxBitrate { kbps });
            }
            if let Some(p) = &self.player {
                let muted = p.is_muted();
                if ui.button(if muted { "Unmute" } else { "Mute" }).clicked() {
                    p.set_muted(!muted);
                }
            }
            self.connection.status_ui(ui);
        });
        if let Some(texture) = self.picture.texture() {
            let avail = ui.available_size();
            let size = self.picture.size();
            let (w, h) = (size.0 as f32, size.1 as f32);
            let scale = (avail.x / w).min(avail.y / h);
            let response = ui.add(
                egui::Image::new(texture)
                    .fit_to_exact_size(egui::vec2(w * scale, h * scale))
                    .sense(egui::Sense::click_and_drag()),
            );
            if self.connection.has_control() {
                let messages = ui.input(|i| {
                    self.input
                        .messages(&i.events, i.modifiers, response.rect, response.hovered())
                });
                for msg in messages {
                    self.connection.send(msg);
                }
            }
            // The host cursor, drawn here: it moves without waiting for video.
            self.cursor.paint(ui, response.rect, scale);
            self.stats.paint(ui, response.rect, size);
        }
        leave
    }

    /// Leaves the share (a recording in progress is finished first).
    pub fn close(self) {
        self.recording.finish(Some(std::time::Instant::now()));
        self.connection.close();
    }
}
