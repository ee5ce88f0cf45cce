//! What tells the host, outside the app's own window, that its screen is being shared: a
//! small always-on-top window with the number of viewers, who controls, and Stop. And the
//! question before the app's window closes while it shares (closing ends the share).

use eframe::egui;

/// What the indicator shows.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Sharing {
    pub viewers: usize,
    /// The viewers (by number) that have control.
    pub controlled_by: Vec<u64>,
}

/// The indicator window's size.
const SIZE: [f32; 2] = [380.0, 36.0];
const RED: egui::Color32 = egui::Color32::from_rgb(0xe0, 0x40, 0x40);
const AMBER: egui::Color32 = egui::Color32::from_rgb(0xf0, 0xa0, 0x30);

/// The indicator's content. Returns true when Stop was clicked.
pub fn indicator_ui(ui: &mut egui::Ui, sharing: &Sharing) -> bool {
    ui.horizontal(|ui| {
        // A red dot (painted: the font has no such glyph).
        let (rect, _) = ui.allocate_exact_size(egui::vec2(12.0, 12.0), egui::Sense::hover());
        ui.painter().circle_filled(rect.center(), 5.0, RED);
        ui.strong("Sharing your screen");
        ui.label(match sharing.viewers {
            0 => "no viewers".to_owned(),
            1 => "1 viewer".to_owned(),
            n => format!("{n} viewers"),
        });
        if !sharing.controlled_by.is_empty() {
            let who: Vec<String> = sharing
                .controlled_by
                .iter()
                .map(ToString::to_string)
                .collect();
            ui.colored_label(AMBER, format!("controlled by {}", who.join(", ")));
        }
        ui.button("Stop").clicked()
    })
    .inner
}

/// Shows the indicator in its own small always-on-top window (inside the app's window
/// where the platform has no second window, as in tests). Returns true when Stop was
/// clicked.
pub fn show(ctx: &egui::Context, sharing: &Sharing) -> bool {
    let mut builder = egui::ViewportBuilder::default()
        .with_title("Porthole: sharing your screen")
        .with_always_on_top()
        .with_inner_size(SIZE)
        .with_resizable(false)
        .with_minimize_button(false)
        .with_maximize_button(false);
    // The bottom-right corner of the screen, out of the way of the app's window.
    if let Some(screen) = ctx.input(|i| i.viewport().monitor_size) {
        builder = builder.with_position([
            (screen.x - SIZE[0] - 16.0).max(0.0),
            (screen.y - SIZE[1] - 48.0).max(0.0),
        ]);
    }
    ctx.show_viewport_immediate(
        egui::ViewportId::from_hash_of("porthole-sharing-indicator"),
        builder,
        |ui, _class| {
            egui::Frame::central_panel(ui.style())
                .show(ui, |ui| indicator_ui(ui, sharing))
                .inner
        },
    )
}

/// What the user answered to "stop sharing and quit?".
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum CloseAnswer {
    Quit,
    KeepSharing,
}

/// The question shown when the window is asked to close while sharing.
pub fn close_question(ctx: &egui::Context, viewers: usize) -> Option<CloseAnswer> {
    let mut answer = None;
    egui::Window::new("Stop sharing?")
        .collapsible(false)
        .resizable(false)
        .anchor(egui::Align2::CENTER_CENTER, egui::Vec2::ZERO)
        .show(ctx, |ui| {
            ui.label(match viewers {
                0 => "Closing Porthole stops sharing your screen.".to_owned(),
                1 => "Closing Porthole stops sharing your screen; 1 viewer is watching.".to_owned(),
                n => {
                    format!("Closing Porthole stops sharing your screen; {n} viewers are watching.")
                }
            });
            ui.horizontal(|ui| {
                if ui.button("Stop sharing and quit").clicked() {
                    answer = Some(CloseAnswer::Quit);
                }
                if ui.button("Keep sharing").clicked() {
                    answer = Some(CloseAnswer::KeepSharing);
                }
            });
        });
    answer
}

#[cfg(test)]
mod tests {
    use super::*;
    use egui_kittest::kittest::Queryable;
    use egui_kittest::Harness;

    #[test]
    fn the_indicator_says_who_watches_and_who_controls_and_stops() {
        struct State {
            sharing: Sharing,
            stop: bool,
        }
        let mut h = Harness::builder()
            .with_size(egui::vec2(420.0, 48.0))
            .build_ui_state(
                |ui, s: &mut State| {
                    if indicator_ui(ui, &s.sharing) {
                        s.stop = true;
                    }
                },
                State {
                    sharing: Sharing {
                        viewers: 2,
                        controlled_by: vec![1],
                    },
                    stop: false,
                },
            );
        h.run_steps(2);
        h.get_by_label("Sharing your screen");
        h.get_by_label("2 viewers");
        h.get_by_label("controlled by 1");
        // Compared with app/tests/snapshots/sharing_indicator.png (UPDATE_SNAPSHOTS=1).
        h.snapshot("sharing_indicator");
        h.get_by_label("Stop").click();
        h.run_steps(2);
        assert!(h.state().stop);

        h.state_mut().sharing = Sharing::default();
        h.run_steps(2);
        h.get_by_label("no viewers");
        assert!(h.query_by_label_contains("controlled by").is_none());
    }

    #[test]
    fn closing_while_sharing_asks_first() {
        let mut h = Harness::builder()
            .with_size(egui::vec2(520.0, 200.0))
            .build_ui_state(
                |ui, answer: &mut Option<CloseAnswer>| {
                    if let Some(a) = close_question(ui.ctx(), 1) {
                        *answer = Some(a);
                    }
                },
                None,
            );
        h.run_steps(2);
        h.get_by_label_contains("1 viewer is watching");
        h.get_by_label("Keep sharing").click();
        h.run_steps(2);
        assert_eq!(*h.state(), Some(CloseAnswer::KeepSharing));
        h.get_by_label("Stop sharing and quit").click();
        h.run_steps(2);
        assert_eq!(*h.state(), Some(CloseAnswer::Quit));
    }
}
