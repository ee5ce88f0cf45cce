//! The picture: H.264 units from the connection decoded (`media::decoder`) on a thread of
//! their own into a newest-frame slot, shown as a texture.

use std::sync::{mpsc, Arc, OnceLock};
use std::time::{Duration, Instant};

use eframe::egui;
use media::slot::LatestSlot;
use net::client::ReceivedUnit;

/// Video units waiting for the decoder; when it is this far behind, units are dropped
/// (the connection then asks for a keyframe).
const QUEUE: usize = 8;

/// A decoded picture, with what the stats show about it.
pub struct Frame {
    pub picture: media::decoder::Picture,
    pub decode_us: u64,
    /// When its last packet arrived.
    pub received: Instant,
}

pub struct PictureView {
    /// Where the current connection's decoder puts its pictures.
    pictures: Arc<LatestSlot<Frame>>,
    texture: Option<egui::TextureHandle>,
    /// The picture's size in pixels.
    size: (usize, usize),
}

impl Default for PictureView {
    fn default() -> Self {
        Self {
            pictures: Arc::new(LatestSlot::new()),
            texture: None,
            size: (0, 0),
        }
    }
}

impl PictureView {
    /// Starts a decoder for a new connection (the last one's pictures are no longer
    /// shown; nothing is until the new one's first). Returns where its units go; the
    /// decoder ends when that sender is dropped. `repaint` wakes the UI for each picture.
    pub fn start_decoder(
        &mut self,
        repaint: &Arc<OnceLock<egui::Context>>,
    ) -> mpsc::SyncSender<ReceivedUnit> {
        let (units, rx) = mpsc::sync_channel(QUEUE);
        self.pictures = Arc::new(LatestSlot::new());
        self.texture = None;
        self.size = (0, 0);
        let pictures = self.pictures.clone();
        let repaint = repaint.clone();
        std::thread::Builder::new()
            .name("porthole-decode".into())
            .spawn(move || decode_loop(rx, &pictures, &repaint))
            .expect("spawn decoder");
        units
    }

    /// Puts the newest decoded picture on the texture; returns it when a new one came.
    pub fn update(&mut self, ctx: &egui::Context) -> Option<Frame> {
        let frame = self.pictures.take_timeout(Duration::ZERO)?;
        let p = &frame.picture;
        let image = egui::ColorImage::from_rgba_unmultiplied([p.width, p.height], &p.rgba);
        self.size = (p.width, p.height);
        match &mut self.texture {
            Some(t) => t.set(image, egui::TextureOptions::LINEAR),
            None => {
                self.texture = Some(ctx.load_texture("share", image, egui::TextureOptions::LINEAR))
            }
        }
        Some(frame)
    }

    pub fn texture(&self) -> Option<&egui::TextureHandle> {
        self.texture.as_ref()
    }

    pub fn size(&self) -> (usize, usize) {
        self.size
    }
}

fn decode_loop(
    rx: mpsc::Receiver<ReceivedUnit>,
    out: &LatestSlot<Frame>,
    repaint: &OnceLock<egui::Context>,
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
                out.put(Frame {
                    picture,
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
