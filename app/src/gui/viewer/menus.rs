//! The viewer's toolbar menus: the monitor switcher (also on the host's sharing screen)
//! and the quality presets.

use eframe::egui;

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
pub fn quality_menu(ui: &mut egui::Ui, max_kbps: u32) -> Option<u32> {
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
