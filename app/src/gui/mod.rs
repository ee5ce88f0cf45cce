//! The desktop app: `porthole` with no arguments. Plain state plus small `ui` functions
//! (egui's demo-app style); slow work (starting a share, connecting) runs on the tokio
//! runtime and reports back through channels, and the UI shows progress meanwhile.

mod consent;
mod home;
mod indicator;
mod settings;
mod sharing;
mod viewer;

#[cfg(test)]
mod security_tests;
#[cfg(test)]
mod tests;

use std::sync::{mpsc, Arc, Mutex};
use std::time::{Duration, Instant};

use tokio::sync::oneshot;

use eframe::egui;

use crate::share::{RunningShare, ShareOptions};

use home::nearby_link;
pub use home::{Quality, ShareForm};
pub use net::discovery::NearbyShare;

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Screen {
    Home,
    Sharing,
    Viewing,
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
            backend: crate::share::Backend::of_this_session(),
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

struct App(Gui);

impl eframe::App for App {
    fn ui(&mut self, ui: &mut egui::Ui, _frame: &mut eframe::Frame) {
        egui::CentralPanel::default().show(ui, |ui| self.0.ui(ui));
        self.0.outside_ui(ui.ctx());
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
