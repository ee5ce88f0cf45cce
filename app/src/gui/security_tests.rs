//! The app against a spoofed nearby share (issue 13, finding 6), through egui_kittest:
//! the entry the user picked stays as picked, with its fingerprint shown, and a newer
//! record for the same name is a separate, flagged entry.

use eframe::egui;
use egui_kittest::kittest::Queryable;
use egui_kittest::Harness;
use net::discovery::{BrowseEvent, NearbyShare};

use super::Gui;

fn share(addr: &str, fp: &str) -> NearbyShare {
    NearbyShare {
        name: "studio".into(),
        host: "studio.local".into(),
        addresses: vec![addr.parse().unwrap()],
        port: 7380,
        version: "1".into(),
        video: true,
        audio: false,
        control: false,
        fingerprint: fp.into(),
    }
}

#[test]
fn a_spoofed_record_does_not_replace_the_picked_share() {
    let gui = Gui::new().unwrap();
    let mut h = Harness::builder()
        .with_size(egui::vec2(900.0, 640.0))
        .build_ui_state(
            |ui, gui: &mut Gui| {
                egui::CentralPanel::default().show(ui, |ui| gui.ui(ui));
            },
            gui,
        );
    h.state_mut()
        .on_nearby(BrowseEvent::Found(share("10.213.0.1", "0011223344556677")));
    h.run_steps(2);
    h.get_by_label("Connect to studio").click();
    h.run_steps(2);
    assert_eq!(h.state().connect_address, "http://10.213.0.1:7380/");
    // The fingerprint to compare with the host's screen (which shows `ab:cd:…`).
    h.get_by_label_contains("fingerprint 00:11:22:33:44:55:66:77");

    // Another machine announces the same name, copying the fingerprint text.
    h.state_mut()
        .on_nearby(BrowseEvent::Found(share("10.213.0.2", "0011223344556677")));
    h.run_steps(2);
    assert_eq!(
        h.state().connect_address,
        "http://10.213.0.1:7380/",
        "the picked link is unchanged"
    );
    h.get_by_label_contains("Picked studio at 10.213.0.1");
    h.get_by_label_contains("studio  10.213.0.1:7380");
    h.get_by_label_contains("studio  10.213.0.2:7380");
    assert_eq!(
        h.query_all_by_label("another share uses this name: compare the fingerprint")
            .count(),
        2,
        "both entries are flagged"
    );
    h.get_by_label("Connect to studio at 10.213.0.1");
    h.get_by_label("Connect to studio at 10.213.0.2");
    let pinned = h.state().nearby.pinned().unwrap().share.clone();
    assert_eq!(pinned, share("10.213.0.1", "0011223344556677"));
}
