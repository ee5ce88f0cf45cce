//! The Sharing screen: the link, code and fingerprint, the monitor shared, the viewers
//! with their rights, the QR code; the consent prompt for a viewer knocking; and, over
//! every screen while sharing, the indicator and the question before the window closes.

use std::time::SystemTime;

use eframe::egui;

use super::{indicator, viewer, Gui, Screen};

impl Gui {
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

    pub(super) fn sharing_ui(&mut self, ui: &mut egui::Ui) {
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
}

impl Gui {
    /// While sharing: the always-on-top indicator, and a question before the window closes.
    pub(super) fn outside_ui(&mut self, ctx: &egui::Context) {
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
