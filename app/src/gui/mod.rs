//! The desktop app: `porthole` with no arguments. Plain state plus small `ui` functions
//! (egui's demo-app style); slow work (starting a share, connecting) runs on the tokio
//! runtime and reports back through channels, and the UI shows progress meanwhile.

mod consent;
mod indicator;
mod settings;
mod viewer;

#[cfg(test)]
mod security_tests;
#[cfg(test)]
mod tests;

use std::sync::{mpsc, Arc, Mutex};
use std::time::{Duration, Instant, SystemTime};

use tokio::sync::oneshot;

use eframe::egui;

use crate::share::{RunningShare, ShareOptions};

pub use net::discovery::NearbyShare;

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Screen {
    Home,
    Sharing,
    Viewing,
}

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

    fn from_name(name: &str) -> Self {
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

/// Viewers knocking, each with the channel that carries the host's answer.
/// The host's choice of rights is kept in `PendingViewer::rights` until it answers.
type PendingViewers = Arc<Mutex<Vec<(net::PendingViewer, oneshot::Sender<Option<net::Rights>>)>>>;

pub struct Gui {
    rt: tokio::runtime::Runtime,
    pub screen: Screen,
    pub form: ShareForm,
    pub connect_address: String,
    pub connect_code: String,
    /// The name the host sees for this viewer.
    pub viewer_name: String,
    /// Shares found on the LAN; the one the user picked is pinned (see `NearbyList`).
    pub nearby: net::discovery::NearbyList,
    pub share: Option<RunningShare>,
    starting: Option<mpsc::Receiver<anyhow::Result<RunningShare>>>,
    pub error: Option<String>,
    pub viewer: Option<viewer::ViewerScreen>,
    /// Viewers waiting for the host's yes or no.
    pending: PendingViewers,
    /// Whether choices are saved to the config dir.
    persist: bool,
    /// `porthole --share`: start sharing as soon as the window is up.
    share_on_first_frame: bool,
    /// Print `viewer: URL` on stdout when a share starts.
    print_url: bool,
    /// Live mDNS browse filling `nearby`.
    browser: Option<net::discovery::Browser>,
    /// `porthole view --record FILE`.
    record_on_connect: Option<std::path::PathBuf>,
    /// The window was asked to close while sharing: "stop sharing?" is showing.
    asking_to_close: bool,
    /// This display's monitors, and when they were listed (see `monitor_list`).
    monitors: (Option<Instant>, Vec<media::capture::Monitor>),
}

impl Gui {
    /// The app with remembered settings.
    pub fn with_settings() -> anyhow::Result<Self> {
        let mut gui = Self::new()?;
        let s = settings::load();
        gui.form.monitor = s.monitor;
        if !s.audio.is_empty() {
            gui.form.audio = s.audio;
        }
        gui.form.allow_control = s.allow_control;
        gui.form.allow_clipboard = s.allow_clipboard;
        gui.form.ask_approval = s.ask_approval.unwrap_or(true);
        gui.form.quality = Quality::from_name(&s.quality);
        gui.connect_address = s.last_address;
        if !s.viewer_name.trim().is_empty() {
            gui.viewer_name = s.viewer_name;
        }
        gui.persist = true;
        gui.browser = match net::discovery::Browser::start() {
            Ok(b) => Some(b),
            Err(e) => {
                tracing::warn!("no LAN discovery: {e}");
                None
            }
        };
        Ok(gui)
    }

    fn save_settings(&self) {
        if self.persist {
            settings::save(&settings::Settings {
                monitor: self.form.monitor,
                audio: self.form.audio.clone(),
                allow_control: self.form.allow_control,
                allow_clipboard: self.form.allow_clipboard,
                ask_approval: Some(self.form.ask_approval),
                last_address: self.connect_address.clone(),
                quality: self.form.quality.name().to_owned(),
                viewer_name: self.viewer_name.clone(),
            });
        }
    }

    /// The app with default settings, remembering nothing (tests).
    pub fn new() -> anyhow::Result<Self> {
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .thread_name("porthole-net")
            .build()?;
        Ok(Self {
            rt,
            screen: Screen::Home,
            form: ShareForm::default(),
            connect_address: String::new(),
            connect_code: String::new(),
            viewer_name: net::discovery::default_name(),
            nearby: Default::default(),
            share: None,
            starting: None,
            error: None,
            viewer: None,
            pending: Arc::default(),
            persist: false,
            share_on_first_frame: false,
            asking_to_close: false,
            print_url: false,
            monitors: (None, Vec::new()),
            browser: None,
            record_on_connect: None,
        })
    }

    /// The share the form describes (what the form does not choose: `porthole share`'s
    /// defaults).
    pub fn share_options(&self) -> Result<ShareOptions, crate::share::BadListen> {
        let (fps, bitrate_kbps) = self.form.quality.limits();
        Ok(ShareOptions {
            monitor: self.form.monitor,
            listen: crate::share::parse_listen(&self.form.listen)?,
            fps,
            bitrate_kbps,
            rights: net::Rights {
                control: self.form.allow_control,
                clipboard: self.form.allow_clipboard,
            },
            audio: crate::share::audio_choice(&self.form.audio),
            ..ShareOptions::default()
        })
    }

    /// Starts sharing with the form's choices (in the background).
    pub fn start_share(&mut self, ctx: &egui::Context) {
        let options = match self.share_options() {
            Ok(o) => o,
            Err(e) => {
                self.error = Some(format!("Cannot share: --listen {}: {e}", self.form.listen));
                return;
            }
        };
        let approve: Option<net::Approver> = self.form.ask_approval.then(|| {
            let pending = self.pending.clone();
            let ctx = ctx.clone();
            let approver: net::Approver = Arc::new(move |viewer| {
                let (tx, rx) = oneshot::channel();
                pending
                    .lock()
                    .unwrap_or_else(|e| e.into_inner())
                    .push((viewer, tx));
                ctx.request_repaint();
                rx
            });
            approver
        });
        let (tx, rx) = mpsc::channel();
        let ctx = ctx.clone();
        self.rt.spawn(async move {
            let result = RunningShare::start(&options, net::AccessCode::generate(), approve).await;
            let _ = tx.send(result);
            ctx.request_repaint();
        });
        self.starting = Some(rx);
        self.error = None;
        self.save_settings();
    }

    pub fn stop_share(&mut self) {
        // Viewers still knocking are turned away.
        self.pending
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clear();
        if let Some(share) = self.share.take() {
            self.rt.spawn(share.stop());
        }
        self.screen = Screen::Home;
    }

    /// Whether a share is being started.
    pub fn is_starting(&self) -> bool {
        self.starting.is_some()
    }

    /// Takes results of background work; called every frame.
    pub fn poll(&mut self) {
        if let Some(rx) = &self.starting {
            match rx.try_recv() {
                Ok(Ok(share)) => {
                    if self.print_url {
                        // Like `porthole share`: scripts and launchers can pick it up.
                        use std::io::Write;
                        println!("viewer: {}", share.url);
                        let _ = std::io::stdout().flush();
                    }
                    self.share = Some(share);
                    self.screen = Screen::Sharing;
                    self.starting = None;
                }
                Ok(Err(e)) => {
                    self.error = Some(format!("Cannot share: {e:#}"));
                    self.starting = None;
                }
                Err(mpsc::TryRecvError::Empty) => {}
                Err(mpsc::TryRecvError::Disconnected) => self.starting = None,
            }
        }
        if let Some(v) = &mut self.viewer {
            v.poll();
        }
        let found = self.browser.as_mut().map(|b| b.poll()).unwrap_or_default();
        for event in found {
            self.on_nearby(event);
        }
    }

    /// Keeps the nearby list current. A newer record never replaces the entry the user
    /// picked; a record with another address or fingerprint is shown as its own entry.
    pub fn on_nearby(&mut self, event: net::discovery::BrowseEvent) {
        self.nearby.apply(event);
    }

    /// The nearby entry the user picked, while the address field still holds its link.
    pub fn picked_share(&self) -> Option<&net::discovery::NearbyEntry> {
        self.nearby
            .pinned()
            .filter(|e| nearby_link(&e.share) == self.connect_address)
    }

    pub fn ui(&mut self, ui: &mut egui::Ui) {
        if std::mem::take(&mut self.share_on_first_frame) {
            let ctx = ui.ctx().clone();
            self.start_share(&ctx);
        }
        self.poll();
        match self.screen {
            Screen::Home => self.home_ui(ui),
            Screen::Sharing => self.sharing_ui(ui),
            Screen::Viewing => self.viewing_ui(ui),
        }
        if self.is_starting() || self.share.is_some() || self.viewer.is_some() {
            ui.ctx().request_repaint_after(Duration::from_millis(250));
        }
    }

    /// Uses `list` as this display's monitors from now on (tests: a fixed list).
    #[cfg(test)]
    pub fn pin_monitor_list(&mut self, list: Vec<media::capture::Monitor>) {
        self.monitors = (Some(Instant::now() + Duration::from_secs(3600)), list);
    }

    /// This display's monitors, listed again every few seconds (one may be plugged in).
    pub fn monitor_list(&mut self) -> &[media::capture::Monitor] {
        let (at, list) = &mut self.monitors;
        if at.is_none_or(|t| t.elapsed() > Duration::from_secs(3)) {
            *at = Some(Instant::now());
            *list = media::capture::monitors(None).unwrap_or_else(|e| {
                tracing::debug!("no monitor list: {e}");
                Vec::new()
            });
        }
        &self.monitors.1
    }

    fn home_ui(&mut self, ui: &mut egui::Ui) {
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

    pub fn connect(&mut self) {
        let url = match net::client::ShareUrl::parse(&self.connect_address) {
            Ok(u) => u,
            Err(e) => {
                self.error = Some(e.to_string());
                return;
            }
        };
        let code =
            (!self.connect_code.trim().is_empty()).then(|| self.connect_code.trim().to_owned());
        self.save_settings();
        let name = self.viewer_name.trim();
        self.viewer = Some(viewer::ViewerScreen::connect_recording(
            self.rt.handle(),
            url,
            code,
            (!name.is_empty()).then(|| name.to_owned()),
            self.record_on_connect.take(),
        ));
        self.screen = Screen::Viewing;
        self.error = None;
    }

    /// The prompt for viewers knocking at the share (see [`consent_prompt`]).
    fn approval_ui(&mut self, ui: &mut egui::Ui) {
        let mut pending = self.pending.lock().unwrap_or_else(|e| e.into_inner());
        let Some((viewer, _)) = pending.first_mut() else {
            return;
        };
        if let Some(answer) = consent_prompt(ui.ctx(), viewer) {
            let (_, tx) = pending.remove(0);
            let _ = tx.send(answer);
        }
    }

    fn sharing_ui(&mut self, ui: &mut egui::Ui) {
        self.approval_ui(ui);
        let Some(share) = &self.share else {
            self.screen = Screen::Home;
            return;
        };
        let viewers = share.server.viewers();
        let controlling = viewers
            .iter()
            .filter(|v| v.connected && v.rights.control)
            .count();
        ui.horizontal(|ui| {
            ui.colored_label(egui::Color32::from_rgb(220, 40, 40), "SHARING");
            if controlling > 0 {
                ui.colored_label(
                    egui::Color32::from_rgb(230, 150, 20),
                    format!("CONTROLLED by {controlling}"),
                );
            }
        });
        ui.add_space(6.0);
        // This window is on the screen viewers see: the code is never drawn, only copied.
        let page = share.url.split('#').next().unwrap_or_default().to_owned();
        ui.horizontal(|ui| {
            ui.label("Viewer link");
            ui.monospace(&page);
            if ui
                .button("Copy link")
                .on_hover_text("The link with the code in it, to send to a viewer")
                .clicked()
            {
                ui.ctx().copy_text(share.url.clone());
            }
        });
        ui.horizontal(|ui| {
            ui.label("Code");
            ui.weak("not shown: viewers see this screen");
            if ui.button("Copy code").clicked() {
                ui.ctx().copy_text(share.code.reveal().to_owned());
            }
        });
        ui.horizontal(|ui| {
            ui.label("Fingerprint");
            ui.monospace(&share.fingerprint[..share.fingerprint.len().min(23)]);
        });
        let switch = share.monitors.clone();
        let list = self.monitor_list().to_vec();
        let Some(share) = &self.share else {
            return;
        };
        ui.horizontal(|ui| {
            ui.label(format!(
                "{}×{}{}",
                share.size().0,
                share.size().1,
                if share.has_audio {
                    ", with sound"
                } else {
                    ", no sound"
                }
            ));
            let entries = crate::share::monitor_entries(&list);
            let current = u8::try_from(switch.current()).unwrap_or(u8::MAX);
            if let Some(index) = viewer::monitor_menu(ui, current, &entries, true) {
                if let Err(e) = switch.select(usize::from(index)) {
                    tracing::warn!("monitor not switched: {e}");
                }
            }
        });
        ui.separator();
        ui.strong(format!("Viewers ({})", viewers.len()));
        if viewers.is_empty() {
            ui.weak("Nobody is watching yet. Send the link and the code.");
        }
        let mut changes = Vec::new();
        let mut disconnect = Vec::new();
        egui::Grid::new("viewers").striped(true).show(ui, |ui| {
            for v in &viewers {
                let since = SystemTime::now()
                    .duration_since(v.since)
                    .unwrap_or_default()
                    .as_secs();
                ui.label(format!("Viewer {}{}", v.no, named(v.name.as_deref())));
                ui.label(v.addr.ip().to_string());
                if v.authenticated {
                    ui.label(kind_of(&v.user_agent));
                } else {
                    ui.label(format!("{} (unauthenticated)", kind_of(&v.user_agent)))
                        .on_hover_text("It showed the code in clear instead of pairing");
                }
                ui.label(if v.reconnecting {
                    "reconnecting…".into()
                } else if v.connected {
                    format!("{since} s")
                } else {
                    "connecting…".into()
                });
                let mut rights = v.rights;
                let a = ui.checkbox(&mut rights.control, format!("Control {}", v.no));
                let b = ui.checkbox(&mut rights.clipboard, format!("Clipboard {}", v.no));
                if a.changed() || b.changed() {
                    changes.push((v.id.clone(), rights));
                }
                if ui.button(format!("Disconnect {}", v.no)).clicked() {
                    disconnect.push(v.id.clone());
                }
                if v.asks_control {
                    // A view-only viewer asked (its page's or window's "Ask for control").
                    if ui
                        .button(format!("Give control to {}", v.no))
                        .on_hover_text("This viewer asks to control your screen")
                        .clicked()
                    {
                        changes.push((
                            v.id.clone(),
                            net::Rights {
                                control: true,
                                ..v.rights
                            },
                        ));
                    }
                }
                ui.end_row();
            }
        });
        for (id, rights) in changes {
            share.server.set_rights(&id, rights);
        }
        if !disconnect.is_empty() {
            let _guard = self.rt.enter();
            for id in disconnect {
                share.server.disconnect_soon(&id);
            }
        }
        ui.separator();
        if ui.button("Stop sharing").clicked() {
            self.stop_share();
        }
        ui.add_space(8.0);
        ui.weak("On a phone or a tablet: scan the link, then enter the code.");
        qr_ui(ui, &page);
    }

    fn viewing_ui(&mut self, ui: &mut egui::Ui) {
        let Some(viewer) = &mut self.viewer else {
            self.screen = Screen::Home;
            return;
        };
        if viewer.ui(ui) {
            if let Some(v) = self.viewer.take() {
                v.close();
            }
            self.screen = Screen::Home;
        }
    }
}

/// The consent prompt for a viewer that has the code and asks to join: who it is, and what
/// it may do (view always; control and the clipboard ticked as the share's defaults, the
/// host's to change now). Returns the answer once given: the rights to let it in with, or
/// `None` to turn it away. `viewer.rights` holds the choice meanwhile.
pub fn consent_prompt(
    ctx: &egui::Context,
    viewer: &mut net::PendingViewer,
) -> Option<Option<net::Rights>> {
    let mut answer = None;
    egui::Window::new("A viewer wants to join")
        .collapsible(false)
        .resizable(false)
        .anchor(egui::Align2::CENTER_CENTER, egui::Vec2::ZERO)
        .show(ctx, |ui| {
            ui.label(format!(
                "Viewer {}{}, a {} at {}, has the code and wants to watch.",
                viewer.no,
                named(viewer.name.as_deref()),
                kind_of(&viewer.user_agent),
                viewer.addr.ip()
            ));
            if !viewer.authenticated {
                ui.label("Unauthenticated: it showed the code in clear instead of pairing. It can only watch.");
            }
            ui.add_space(4.0);
            ui.label("Let it:");
            ui.add_enabled(false, egui::Checkbox::new(&mut true, "See your screen"));
            ui.add_enabled_ui(viewer.authenticated, |ui| {
                ui.checkbox(&mut viewer.rights.control, "Control your mouse and keyboard");
                ui.checkbox(&mut viewer.rights.clipboard, "Share the clipboard");
            });
            ui.add_space(4.0);
            ui.horizontal(|ui| {
                if ui.button("Let in").clicked() {
                    answer = Some(Some(viewer.rights));
                }
                if ui.button("Turn away").clicked() {
                    answer = Some(None);
                }
            });
        });
    answer
}

/// `text` as a QR code (black on white, a 4-module quiet zone, 3 px a module).
fn qr_ui(ui: &mut egui::Ui, text: &str) {
    let Ok(code) = qrcode::QrCode::new(text.as_bytes()) else {
        return;
    };
    const MODULE: f32 = 3.0;
    const QUIET: usize = 4;
    let width = code.width();
    let side = (width + 2 * QUIET) as f32 * MODULE;
    let (rect, response) = ui.allocate_exact_size(egui::vec2(side, side), egui::Sense::hover());
    response.on_hover_text(format!("QR code of {text}"));
    let painter = ui.painter_at(rect);
    painter.rect_filled(rect, 0.0, egui::Color32::WHITE);
    for (i, colour) in code.to_colors().iter().enumerate() {
        if *colour == qrcode::Color::Dark {
            let (x, y) = ((i % width + QUIET) as f32, (i / width + QUIET) as f32);
            painter.rect_filled(
                egui::Rect::from_min_size(
                    rect.min + egui::vec2(x * MODULE, y * MODULE),
                    egui::vec2(MODULE, MODULE),
                ),
                0.0,
                egui::Color32::BLACK,
            );
        }
    }
}

/// The link the app connects to for a nearby share (no code: the user types it).
fn nearby_link(n: &NearbyShare) -> String {
    format!("http://{}:{}/", n.host_in_url(), n.port)
}

/// `, “NAME”` for a viewer that gave itself a name (a label: see `net::server::viewer_name`).
fn named(name: Option<&str>) -> String {
    name.map(|n| format!(", “{n}”")).unwrap_or_default()
}

fn kind_of(user_agent: &str) -> &'static str {
    if user_agent.is_empty() {
        "native"
    } else {
        "browser"
    }
}

struct App(Gui);

impl eframe::App for App {
    fn ui(&mut self, ui: &mut egui::Ui, _frame: &mut eframe::Frame) {
        egui::CentralPanel::default().show(ui, |ui| self.0.ui(ui));
        self.0.outside_ui(ui.ctx());
    }
}

impl Gui {
    /// While sharing: the always-on-top indicator, and a question before the window closes.
    fn outside_ui(&mut self, ctx: &egui::Context) {
        let Some(share) = &self.share else {
            self.asking_to_close = false;
            return;
        };
        let viewers = share.server.viewers();
        let sharing = indicator::Sharing {
            viewers: viewers.len(),
            controlled_by: viewers
                .iter()
                .filter(|v| v.rights.control)
                .map(|v| v.no)
                .collect(),
        };
        if indicator::show(ctx, &sharing) {
            self.stop_share();
            return;
        }
        if ctx.input(|i| i.viewport().close_requested()) {
            ctx.send_viewport_cmd(egui::ViewportCommand::CancelClose);
            self.asking_to_close = true;
        }
        if self.asking_to_close {
            match indicator::close_question(ctx, sharing.viewers) {
                Some(indicator::CloseAnswer::Quit) => {
                    self.stop_share();
                    ctx.send_viewport_cmd(egui::ViewportCommand::Close);
                }
                Some(indicator::CloseAnswer::KeepSharing) => self.asking_to_close = false,
                None => {}
            }
        }
    }
}

/// How the window starts.
#[derive(Clone, Debug, Default)]
pub enum Start {
    #[default]
    Home,
    /// Share at once with the remembered settings.
    Share,
    /// View a share (`porthole view URL`).
    View {
        url: String,
        code: Option<String>,
        record: Option<std::path::PathBuf>,
        name: Option<String>,
    },
}

/// Opens the window and runs until it is closed.
pub fn run(start: Start, listen: Option<String>) -> anyhow::Result<()> {
    let mut gui = Gui::with_settings()?;
    if let Some(listen) = listen {
        gui.form.listen = listen;
    }
    match start {
        Start::Home => {}
        Start::Share => {
            gui.share_on_first_frame = true;
            gui.print_url = true;
        }
        Start::View {
            url,
            code,
            record,
            name,
        } => {
            gui.connect_address = url;
            gui.connect_code = code.unwrap_or_default();
            if let Some(name) = name {
                gui.viewer_name = name;
            }
            gui.record_on_connect = record;
            gui.connect();
            if let Some(e) = &gui.error {
                anyhow::bail!("{e}");
            }
        }
    }
    let options = eframe::NativeOptions {
        viewport: egui::ViewportBuilder::default()
            .with_title("Porthole")
            .with_inner_size([900.0, 640.0]),
        ..Default::default()
    };
    eframe::run_native("Porthole", options, Box::new(|_cc| Ok(Box::new(App(gui)))))
        .map_err(|e| anyhow::anyhow!("cannot open the window: {e}"))
}
