//! The Home screen: this computer's share form (monitor, sound, quality, rights), another
//! computer's address and code, and the Portholes nearby.

use eframe::egui;

use super::{Gui, NearbyShare};

/// Quality presets of the share form: what the picture is for, as the share's frame rate
/// and bit rate. The encoder still adapts to each viewer's link below these.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Quality {
    /// Text and still pictures: 30 fps, 8 Mbit/s (the share's defaults).
    #[default]
    Balanced,
    /// Video and games: 60 fps, 12 Mbit/s.
    SmoothMotion,
    /// A slow or metered link: 15 fps, 1.5 Mbit/s.
    LowBandwidth,
}

impl Quality {
    pub const ALL: [Quality; 3] = [
        Quality::Balanced,
        Quality::SmoothMotion,
        Quality::LowBandwidth,
    ];

    pub fn name(self) -> &'static str {
        match self {
            Quality::Balanced => "Balanced",
            Quality::SmoothMotion => "Smooth motion",
            Quality::LowBandwidth => "Low bandwidth",
        }
    }

    /// (frames a second, kbit/s).
    pub fn limits(self) -> (u32, u32) {
        match self {
            Quality::Balanced => (
                crate::share::DEFAULT_FPS,
                crate::share::DEFAULT_BITRATE_KBPS,
            ),
            Quality::SmoothMotion => (60, 12_000),
            Quality::LowBandwidth => (15, 1500),
        }
    }

    pub(super) fn from_name(name: &str) -> Self {
        Self::ALL
            .into_iter()
            .find(|q| q.name() == name)
            .unwrap_or_default()
    }
}

/// What the host chooses before sharing.
#[derive(Clone, Debug)]
pub struct ShareForm {
    pub quality: Quality,
    pub monitor: usize,
    pub audio: String,
    pub allow_control: bool,
    pub allow_clipboard: bool,
    /// Ask before each new viewer joins.
    pub ask_approval: bool,
    pub listen: String,
}

impl Default for ShareForm {
    fn default() -> Self {
        Self {
            quality: Quality::default(),
            monitor: 0,
            audio: "default".into(),
            allow_control: false,
            allow_clipboard: false,
            ask_approval: true,
            listen: crate::share::DEFAULT_LISTEN.to_string(),
        }
    }
}

impl Gui {
    pub(super) fn home_ui(&mut self, ui: &mut egui::Ui) {
        ui.heading("Porthole");
        ui.add_space(8.0);
        let monitors = self.monitor_list().to_vec();
        ui.group(|ui| {
            ui.strong("This computer");
            ui.horizontal(|ui| {
                let label = ui.label("Monitor");
                if monitors.is_empty() {
                    ui.add(egui::DragValue::new(&mut self.form.monitor).range(0..=15))
                        .labelled_by(label.id);
                } else {
                    let shown = monitors.get(self.form.monitor).map_or_else(
                        || format!("{} (not connected)", self.form.monitor),
                        |m| m.describe(),
                    );
                    egui::ComboBox::from_id_salt("monitor")
                        .selected_text(shown)
                        .show_ui(ui, |ui| {
                            for (i, m) in monitors.iter().enumerate() {
                                ui.selectable_value(&mut self.form.monitor, i, m.describe());
                            }
                        })
                        .response
                        .labelled_by(label.id);
                }
                let label = ui.label("Sound");
                egui::ComboBox::from_id_salt("audio")
                    .selected_text(self.form.audio.clone())
                    .show_ui(ui, |ui| {
                        ui.selectable_value(&mut self.form.audio, "default".into(), "default");
                        ui.selectable_value(&mut self.form.audio, "none".into(), "none");
                    })
                    .response
                    .labelled_by(label.id);
                let label = ui.label("Quality");
                egui::ComboBox::from_id_salt("quality")
                    .selected_text(self.form.quality.name())
                    .show_ui(ui, |ui| {
                        for q in Quality::ALL {
                            let (fps, kbps) = q.limits();
                            ui.selectable_value(&mut self.form.quality, q, q.name())
                                .on_hover_text(format!(
                                    "{fps} fps, {} Mbit/s",
                                    f64::from(kbps) / 1000.0
                                ));
                        }
                    })
                    .response
                    .labelled_by(label.id);
            });
            ui.checkbox(&mut self.form.allow_control, "Allow control");
            ui.checkbox(&mut self.form.allow_clipboard, "Allow clipboard");
            ui.checkbox(&mut self.form.ask_approval, "Ask before each viewer joins");
            ui.horizontal(|ui| {
                let starting = self.is_starting();
                if ui
                    .add_enabled(!starting, egui::Button::new("Share this screen"))
                    .clicked()
                {
                    let ctx = ui.ctx().clone();
                    self.start_share(&ctx);
                }
                if starting {
                    ui.spinner();
                    ui.label("Starting…");
                }
            });
        });
        ui.add_space(8.0);
        ui.group(|ui| {
            ui.strong("Another computer");
            ui.horizontal(|ui| {
                let label = ui.label("Address or link");
                ui.text_edit_singleline(&mut self.connect_address)
                    .labelled_by(label.id);
            });
            ui.horizontal(|ui| {
                let label = ui.label("Code");
                ui.add(egui::TextEdit::singleline(&mut self.connect_code).password(true))
                    .labelled_by(label.id);
            });
            ui.horizontal(|ui| {
                let label = ui.label("Your name");
                ui.text_edit_singleline(&mut self.viewer_name)
                    .labelled_by(label.id)
                    .on_hover_text("What the host sees when you ask to watch");
            });
            if let Some(e) = self.picked_share() {
                // The fingerprint the host's screen shows: a person can compare the two.
                ui.label(format!(
                    "Picked {} at {}{} — fingerprint {}: check that the host's screen shows the same.",
                    e.share.name,
                    e.share.host_in_url(),
                    if e.gone { " (no longer announced)" } else { "" },
                    net::discovery::fingerprint_for_people(&e.share.fingerprint)
                ));
            }
            if ui.button("Connect").clicked() {
                self.connect();
            }
        });
        ui.add_space(8.0);
        ui.group(|ui| self.nearby_ui(ui));
        if let Some(e) = &self.error {
            ui.colored_label(ui.visuals().error_fg_color, e);
        }
    }

    fn nearby_ui(&mut self, ui: &mut egui::Ui) {
        ui.strong("Nearby Portholes");
        // A picked entry that was withdrawn stays picked (shown by the code field), not here.
        let shown: Vec<&net::discovery::NearbyEntry> =
            self.nearby.entries().iter().filter(|e| !e.gone).collect();
        if shown.is_empty() {
            ui.weak("None found on this network yet.");
        }
        let mut picked = None;
        for e in shown {
            let n = &e.share;
            let address = n.host_in_url();
            let ambiguous = self.nearby.is_ambiguous(&n.name);
            ui.horizontal(|ui| {
                ui.label(format!("{}  {}:{}  {}", n.name, address, n.port, n.flags()));
                if ambiguous {
                    ui.colored_label(
                        ui.visuals().warn_fg_color,
                        "another share uses this name: compare the fingerprint",
                    );
                }
                if e.pinned {
                    ui.weak("picked");
                }
                let label = if ambiguous {
                    format!("Connect to {} at {address}", n.name)
                } else {
                    format!("Connect to {}", n.name)
                };
                if ui.button(label).clicked() {
                    picked = Some(e.id);
                }
            });
        }
        if let Some(id) = picked {
            if let Some(e) = self.nearby.pin(id) {
                // Only the code is left to type; the entry stays as picked whatever is
                // announced later.
                self.connect_address = nearby_link(&e.share);
                self.connect_code.clear();
            }
        }
    }
}

/// The link the app connects to for a nearby share (no code: the user types it).
pub(super) fn nearby_link(n: &NearbyShare) -> String {
    format!("http://{}:{}/", n.host_in_url(), n.port)
}
