//! The host's pointer, drawn by the viewer over the picture from the host's own messages
//! (`CursorPosition`, `CursorShape`): it moves without waiting for video.

use eframe::egui;

/// The host pointer's image and hot spot, as the host sent them.
struct Shape {
    hot: egui::Vec2,
    size: [usize; 2],
    rgba: Vec<u8>,
}

#[derive(Default)]
pub struct HostCursor {
    /// Where the pointer is, normalised to 0..=65535, and whether it is on the shared
    /// monitor.
    position: Option<(u16, u16, bool)>,
    shape: Option<Shape>,
    /// The shape uploaded, with its hot spot and size in pixels.
    texture: Option<(egui::TextureHandle, egui::Vec2, egui::Vec2)>,
}

impl HostCursor {
    pub fn moved(&mut self, x: u16, y: u16, visible: bool) {
        self.position = Some((x, y, visible));
    }

    pub fn set_shape(&mut self, hot_x: u16, hot_y: u16, width: u16, height: u16, rgba: Vec<u8>) {
        self.shape = Some(Shape {
            hot: egui::vec2(f32::from(hot_x), f32::from(hot_y)),
            size: [usize::from(width), usize::from(height)],
            rgba,
        });
        self.texture = None;
    }

    /// Uploads a new shape (once per shape).
    pub fn upload(&mut self, ctx: &egui::Context) {
        if self.texture.is_some() {
            return;
        }
        let Some(shape) = &self.shape else {
            return;
        };
        let image = egui::ColorImage::from_rgba_unmultiplied(shape.size, &shape.rgba);
        let texture = ctx.load_texture("host-cursor", image, egui::TextureOptions::LINEAR);
        let size = egui::vec2(shape.size[0] as f32, shape.size[1] as f32);
        self.texture = Some((texture, shape.hot, size));
    }

    /// Draws the pointer over the picture at `rect`, shown at `scale` of its size (the
    /// pointer itself at least half and at most its own size).
    pub fn paint(&self, ui: &egui::Ui, rect: egui::Rect, scale: f32) {
        let (Some((x, y, true)), Some((tex, hot, size))) = (self.position, &self.texture) else {
            return;
        };
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
}
