//! The stats overlay (F3): picture size, frame rate, bit rate, decode time, round trip,
//! loss and an estimate of the delay, drawn in yellow over the picture.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use eframe::egui;
use net::client::LinkStats;

use super::connection::Connection;

/// What the connection's task counts as video arrives.
#[derive(Default)]
pub struct Counters {
    frames: AtomicU64,
    bytes: AtomicU64,
}

impl Counters {
    /// One video unit of `bytes` arrived.
    pub fn video(&self, bytes: usize) {
        self.frames.fetch_add(1, Ordering::Relaxed);
        self.bytes.fetch_add(bytes as u64, Ordering::Relaxed);
    }

    fn get(&self) -> (u64, u64) {
        (
            self.frames.load(Ordering::Relaxed),
            self.bytes.load(Ordering::Relaxed),
        )
    }
}

pub struct StatsOverlay {
    counters: Arc<Counters>,
    /// Shown (F3 toggles it).
    pub show: bool,
    fps: f32,
    kbps: f32,
    decode_ms: f32,
    display_ms: f32,
    /// The connection's round trip and loss, fetched every second.
    link: Arc<Mutex<LinkStats>>,
    /// When the figures were last worked out, and the counters then.
    last_tick: (Instant, u64, u64),
}

impl StatsOverlay {
    pub fn new() -> Self {
        Self {
            counters: Arc::default(),
            show: true,
            fps: 0.0,
            kbps: 0.0,
            decode_ms: 0.0,
            display_ms: 0.0,
            link: Arc::default(),
            last_tick: (Instant::now(), 0, 0),
        }
    }

    /// The counters the connection's task feeds.
    pub fn counters(&self) -> Arc<Counters> {
        self.counters.clone()
    }

    /// A new connection: the figures start over (shown or not stays as chosen).
    pub fn reset(&mut self) {
        let (frames, bytes) = self.counters.get();
        *self = Self {
            counters: self.counters.clone(),
            show: self.show,
            last_tick: (Instant::now(), frames, bytes),
            ..Self::new()
        };
    }

    /// A picture went on screen: it took `decode_us` to decode, and its last packet
    /// arrived at `received`.
    pub fn picture_shown(&mut self, decode_us: u64, received: Instant) {
        self.decode_ms = decode_us as f32 / 1000.0;
        // Arrival to screen: reassembly is done, so this is decode + queue + upload.
        self.display_ms = received.elapsed().as_secs_f32() * 1000.0;
    }

    /// Every second: the frame and bit rates since the last time, and the link's figures
    /// (fetched in the background).
    pub fn tick(&mut self, connection: &Connection) {
        let (t, f, b) = self.last_tick;
        if t.elapsed() < Duration::from_secs(1) {
            return;
        }
        let (frames, bytes) = self.counters.get();
        let secs = t.elapsed().as_secs_f32();
        self.fps = frames.saturating_sub(f) as f32 / secs;
        let link = self.link.clone();
        connection.spawn_with_client(|client| async move {
            let stats = client.link_stats().await;
            *link.lock().unwrap_or_else(|e| e.into_inner()) = stats;
        });
        self.kbps = bytes.saturating_sub(b) as f32 * 8.0 / 1000.0 / secs;
        self.last_tick = (Instant::now(), frames, bytes);
    }

    /// Draws the figures over the picture at `rect`, of `size` pixels.
    pub fn paint(&self, ui: &egui::Ui, rect: egui::Rect, size: (usize, usize)) {
        if !self.show {
            return;
        }
        let link = *self.link.lock().unwrap_or_else(|e| e.into_inner());
        let rtt_ms = link.rtt.map(|r| r.as_secs_f32() * 1000.0);
        let rtt = rtt_ms.map_or("-".to_owned(), |r| format!("{r:.1} ms"));
        // One way ≈ half the round trip; plus our decode-to-screen time.
        let e2e = rtt_ms.map_or("-".to_owned(), |r| {
            format!("~{:.0} ms", r / 2.0 + self.display_ms)
        });
        let text = format!(
            "{}×{}  {:.0} fps  {:.0} kbit/s  decode {:.1} ms\nRTT {rtt}  loss {:.1}%  delay {e2e}  (F3 hides)",
            size.0,
            size.1,
            self.fps,
            self.kbps,
            self.decode_ms,
            link.video_loss() * 100.0
        );
        ui.painter().text(
            rect.left_top() + egui::vec2(8.0, 8.0),
            egui::Align2::LEFT_TOP,
            text,
            egui::FontId::monospace(13.0),
            egui::Color32::YELLOW,
        );
    }
}
