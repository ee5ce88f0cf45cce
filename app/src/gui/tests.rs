//! The desktop app's screens, driven through egui_kittest (widgets found by label) with a
//! real share on a private Xvfb and a real native client as the viewer.

use std::time::{Duration, Instant};

use eframe::egui;
use egui_kittest::kittest::{NodeT as _, Queryable};
use egui_kittest::Harness;

use super::{Gui, Screen};

/// Held by the tests that point `$DISPLAY` at their own Xvfb (the share captures the
/// display `$DISPLAY` names: two such tests at once would watch each other's screens).
static DISPLAY_LOCK: std::sync::Mutex<()> = std::sync::Mutex::new(());

fn own_display() -> std::sync::MutexGuard<'static, ()> {
    DISPLAY_LOCK.lock().unwrap_or_else(|e| e.into_inner())
}

fn xvfb() -> (media::xvfb::Xvfb, String) {
    let x = media::xvfb::Xvfb::start(640, 480, 700..900).expect("Xvfb (scripts/install-deps.sh)");
    let name = x.name.clone();
    (x, name)
}

/// Steps the UI in real time until `done` holds.
fn run_until(harness: &mut Harness<'_, Gui>, what: &str, done: impl Fn(&Harness<'_, Gui>) -> bool) {
    let deadline = Instant::now() + Duration::from_secs(20);
    while !done(harness) {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        harness.step();
        std::thread::sleep(Duration::from_millis(20));
    }
}

#[test]
fn share_then_a_viewer_appears_and_control_is_revoked() {
    let _display = own_display();
    let (_x, display) = xvfb();
    std::env::set_var("DISPLAY", &display);
    let mut gui = Gui::new().unwrap();
    gui.form.listen = "127.0.0.1:0".into();
    gui.form.audio = "none".into();
    let mut harness = Harness::builder()
        .with_size(egui::vec2(900.0, 640.0))
        .build_ui_state(|ui, gui: &mut Gui| panel(ui, gui), gui);

    // Home: the three parts are there.
    harness.get_by_label("Share this screen");
    harness.get_by_label("Connect");
    harness.get_by_label("Nearby Portholes");
    harness.get_by_label("None found on this network yet.");

    harness.get_by_label("Allow control").click();
    harness.run_steps(2);
    assert!(harness.state().form.allow_control);
    harness.get_by_label("Share this screen").click();
    run_until(&mut harness, "the sharing screen", |h| {
        h.state().screen == Screen::Sharing
    });
    harness.get_by_label("Stop sharing");
    harness.get_by_label("SHARING");

    // A native viewer connects with the link the screen shows.
    let url = harness.state().share.as_ref().unwrap().url.clone();
    let rt = tokio::runtime::Runtime::new().unwrap();
    let connecting = rt.spawn(async move {
        net::client::ShareClient::connect(&net::client::ShareUrl::parse(&url).unwrap(), None).await
    });
    // The host is asked first (on by default in the app).
    run_until(&mut harness, "the approval prompt", |h| {
        h.query_by_label("Let in").is_some()
    });
    harness.get_by_label_contains("has the code and wants to watch");
    harness.get_by_label("Let in").click();
    harness.run_steps(2);
    let (client, _events) = rt.block_on(connecting).unwrap().unwrap();
    run_until(&mut harness, "the viewer in the list", |h| {
        h.query_by_label("Control 1").is_some()
    });
    run_until(&mut harness, "the viewer connected", |h| {
        h.state().share.as_ref().unwrap().server.viewers()[0].connected
    });
    assert!(
        harness.state().share.as_ref().unwrap().server.viewers()[0]
            .rights
            .control
    );
    run_until(&mut harness, "the controlled indicator", |h| {
        h.query_by_label("CONTROLLED by 1").is_some()
    });

    // Snapshot of the sharing screen, with what differs from run to run masked: the link
    // (and its QR code), the fingerprint and the "since" column. The code is not on it.
    harness.run_steps(2);
    let (url, code, fp) = {
        let share = harness.state().share.as_ref().unwrap();
        (
            share.url.clone(),
            share.code.reveal().to_owned(),
            share.fingerprint[..23].to_owned(),
        )
    };
    assert!(
        harness.query_by_label_contains(&code).is_none(),
        "the code is never drawn (this window is on the shared screen)"
    );
    let page = url.split('#').next().unwrap().to_owned();
    let mut masks: Vec<egui::Rect> = [page, fp]
        .iter()
        .map(|t| harness.get_by_label(t).rect())
        .collect();
    let scan = harness.get_by_label_contains("scan the link").rect();
    masks.push(egui::Rect::from_min_max(
        egui::pos2(scan.left(), scan.bottom()),
        egui::pos2(scan.left() + 200.0, scan.bottom() + 200.0),
    ));
    let kind = harness.get_by_label("native").rect();
    let control = harness.get_by_label("Control 1").rect();
    masks.push(egui::Rect::from_min_max(
        egui::pos2(kind.right() + 1.0, kind.top()),
        egui::pos2(control.left() - 1.0, kind.bottom()),
    ));
    for m in masks {
        harness.mask(m);
    }
    harness.snapshot("sharing");

    // Revoke control: the model changes at once.
    harness.get_by_label("Control 1").click();
    harness.run_steps(2);
    let viewers = harness.state().share.as_ref().unwrap().server.viewers();
    assert!(!viewers[0].rights.control, "control was revoked");
    assert!(harness.query_by_label("CONTROLLED by 1").is_none());

    // Disconnect it, then stop sharing.
    harness.get_by_label("Disconnect 1").click();
    run_until(&mut harness, "the viewer gone", |h| {
        h.state()
            .share
            .as_ref()
            .unwrap()
            .server
            .viewers()
            .is_empty()
    });
    harness.get_by_label("Stop sharing").click();
    harness.run_steps(2);
    assert_eq!(harness.state().screen, Screen::Home);
    rt.block_on(client.close());
}

#[test]
fn nearby_list_follows_discovery_events() {
    use net::discovery::{BrowseEvent, NearbyShare};
    let gui = Gui::new().unwrap();
    let mut harness = Harness::builder()
        .with_size(egui::vec2(900.0, 640.0))
        .build_ui_state(|ui, gui: &mut Gui| panel(ui, gui), gui);
    let share = NearbyShare {
        name: "studio".into(),
        host: "studio.local".into(),
        addresses: vec!["10.213.0.1".parse().unwrap()],
        port: 7380,
        version: "1".into(),
        video: true,
        audio: true,
        control: false,
        fingerprint: "0011223344556677".into(),
    };
    harness.state_mut().on_nearby(BrowseEvent::Found(share));
    harness.run_steps(2);
    harness.get_by_label_contains("studio  10.213.0.1:7380  video,audio fp=0011223344556677");
    harness.get_by_label("Connect to studio").click();
    harness.run_steps(2);
    assert_eq!(harness.state().connect_address, "http://10.213.0.1:7380/");
    harness
        .state_mut()
        .on_nearby(BrowseEvent::Gone("studio".into()));
    harness.run_steps(2);
    assert!(harness.query_by_label("Connect to studio").is_none());
    harness.get_by_label("None found on this network yet.");
}

fn two_monitors() -> Vec<media::capture::Monitor> {
    let at = |x, primary, name: &str| media::capture::Monitor {
        name: name.into(),
        rect: media::capture::MonitorRect {
            x,
            y: 0,
            width: 1920,
            height: 1080,
        },
        primary,
    };
    vec![at(0, true, "DP-1"), at(1920, false, "HDMI-1")]
}

#[test]
fn home_screen_snapshot() {
    let mut gui = Gui::new().unwrap();
    // What depends on the machine is fixed: its monitors and its name.
    gui.pin_monitor_list(two_monitors());
    gui.viewer_name = "Ana's laptop".into();
    let mut harness = Harness::builder()
        .with_size(egui::vec2(900.0, 640.0))
        .build_ui_state(|ui, gui: &mut Gui| panel(ui, gui), gui);
    harness.run();
    // Compared with app/tests/snapshots/home.png (UPDATE_SNAPSHOTS=1 rewrites it).
    harness.snapshot("home");
}

#[test]
fn connecting_to_nothing_says_so_in_words() {
    let gui = Gui::new().unwrap();
    let mut harness = Harness::builder()
        .with_size(egui::vec2(900.0, 640.0))
        .build_ui_state(|ui, gui: &mut Gui| panel(ui, gui), gui);
    harness.state_mut().connect_address = "not a url:x".into();
    harness.get_by_label("Connect").click();
    harness.run_steps(2);
    assert!(harness
        .state()
        .error
        .as_deref()
        .unwrap_or("")
        .contains("not a Porthole address"));
    // A closed port: the viewer screen shows why.
    harness.state_mut().connect_address = "http://127.0.0.1:9/#code=abcdefgh".into();
    harness.get_by_label("Connect").click();
    run_until(&mut harness, "an error", |h| {
        h.query_by_label_contains("cannot reach the host").is_some()
    });
    harness.run_steps(2);
    harness.snapshot("viewer_error");
    // It can try again: the same error comes back, from a new attempt.
    harness.get_by_label("Reconnect").click();
    harness.run_steps(2);
    run_until(&mut harness, "the error again", |h| {
        h.query_by_label_contains("cannot reach the host").is_some()
    });
    harness.get_by_label("Leave").click();
    harness.run_steps(2);
    assert_eq!(harness.state().screen, Screen::Home);
}

/// The viewer's monitor switcher: names and sizes, the one shared checked; picking another
/// asks for it; greyed out without control.
#[test]
fn the_monitor_switcher_lists_names_and_sizes_and_picks_one() {
    struct State {
        current: u8,
        can_switch: bool,
        picked: Option<u8>,
    }
    let entries = vec![
        net::protocol::MonitorEntry {
            name: "LEFT".into(),
            x: 0,
            y: 0,
            width: 1280,
            height: 720,
            primary: true,
        },
        net::protocol::MonitorEntry {
            name: "RIGHT".into(),
            x: 1280,
            y: 0,
            width: 1920,
            height: 1080,
            primary: false,
        },
        net::protocol::MonitorEntry {
            name: String::new(),
            x: 0,
            y: 720,
            width: 800,
            height: 600,
            primary: false,
        },
    ];
    let state = State {
        current: 0,
        can_switch: true,
        picked: None,
    };
    let mut harness = Harness::builder()
        .with_size(egui::vec2(420.0, 200.0))
        .build_ui_state(
            move |ui, s: &mut State| {
                egui::CentralPanel::default().show(ui, |ui| {
                    ui.horizontal(|ui| {
                        if let Some(i) =
                            super::viewer::monitor_menu(ui, s.current, &entries, s.can_switch)
                        {
                            s.picked = Some(i);
                        }
                    });
                });
            },
            state,
        );
    harness.get_by_label("Monitor").click();
    harness.run();
    harness.get_by_label("RIGHT — 1920×1080");
    harness.get_by_label("Unnamed — 800×600");
    // Compared with app/tests/snapshots/monitor_switcher.png (UPDATE_SNAPSHOTS=1 rewrites it).
    harness.snapshot("monitor_switcher");
    harness.get_by_label("RIGHT — 1920×1080").click();
    harness.run();
    assert_eq!(harness.state().picked, Some(1));
    // Without control: shown, greyed out, and nothing can be picked.
    harness.state_mut().picked = None;
    harness.state_mut().can_switch = false;
    harness.run();
    let menu = harness.get_by_label("Monitor");
    assert!(menu.accesskit_node().is_disabled());
}

/// The share form lists the display's RandR monitors by name and size; the share captures
/// the one picked, and the sharing screen switches it.
#[test]
fn the_share_form_lists_this_displays_monitors_and_the_share_switches() {
    let _display = own_display();
    let x = media::xvfb::Xvfb::start(1280, 480, 700..900).expect("Xvfb (scripts/install-deps.sh)");
    for (name, geometry) in [
        ("LEFT", "640/170x480/130+0+0"),
        ("RIGHT", "640/170x480/130+640+0"),
    ] {
        let ok = std::process::Command::new("xrandr")
            .args(["-d", &x.name, "--setmonitor", name, geometry, "none"])
            .status()
            .expect("xrandr (scripts/install-deps.sh)")
            .success();
        assert!(ok, "xrandr --setmonitor {name}");
    }
    std::env::set_var("DISPLAY", &x.name);
    let mut gui = Gui::new().unwrap();
    gui.form.listen = "127.0.0.1:0".into();
    gui.form.audio = "none".into();
    gui.form.allow_control = true;
    gui.form.ask_approval = false;
    let names: Vec<String> = gui.monitor_list().iter().map(|m| m.name.clone()).collect();
    assert_eq!(names[..2], ["LEFT", "RIGHT"], "{names:?}");
    let mut harness = Harness::builder()
        .with_size(egui::vec2(900.0, 640.0))
        .build_ui_state(|ui, gui: &mut Gui| panel(ui, gui), gui);
    harness.get_by_label("Monitor").click();
    harness.run_steps(2);
    harness.get_by_label("LEFT, 640×480 at 0,0");
    harness.get_by_label("RIGHT, 640×480 at 640,0").click();
    harness.run_steps(2);
    assert_eq!(harness.state().form.monitor, 1);
    harness.get_by_label("Share this screen").click();
    run_until(&mut harness, "the sharing screen", |h| {
        h.state().screen == Screen::Sharing
    });
    assert_eq!(
        harness.state().share.as_ref().unwrap().monitors.current(),
        1
    );
    assert_eq!(harness.state().share.as_ref().unwrap().size(), (640, 480));
    // The sharing screen switches it back.
    harness.get_by_label("Monitor").click();
    harness.run_steps(2);
    harness.get_by_label("LEFT — 640×480").click();
    harness.run_steps(2);
    assert_eq!(
        harness.state().share.as_ref().unwrap().monitors.current(),
        0
    );

    // A viewer with control is told the monitors and switches them itself.
    let url = harness.state().share.as_ref().unwrap().url.clone();
    let rt = tokio::runtime::Runtime::new().unwrap();
    let (client, mut events) = rt
        .block_on(net::client::ShareClient::connect(
            &net::client::ShareUrl::parse(&url).unwrap(),
            None,
        ))
        .unwrap();
    let monitors = |events: &mut tokio::sync::mpsc::Receiver<net::client::ClientEvent>| {
        rt.block_on(async {
            tokio::time::timeout(Duration::from_secs(10), async {
                loop {
                    match events.recv().await {
                        Some(net::client::ClientEvent::Message(net::Message::Monitors {
                            current,
                            monitors,
                        })) => return (current, monitors),
                        Some(_) => continue,
                        None => panic!("the connection ended"),
                    }
                }
            })
            .await
            .expect("a Monitors message")
        })
    };
    let (current, listed) = monitors(&mut events);
    assert_eq!(current, 0);
    assert_eq!(
        (listed[1].name.as_str(), listed[1].x, listed[1].width),
        ("RIGHT", 640, 640)
    );
    assert!(rt.block_on(client.send(&net::Message::SelectMonitor { index: 1 })));
    let (current, _) = monitors(&mut events);
    assert_eq!(current, 1, "every viewer hears of the switch");
    assert_eq!(
        harness.state().share.as_ref().unwrap().monitors.current(),
        1
    );
    rt.block_on(client.close());
    let share = harness.state_mut().share.take().unwrap();
    harness.state().rt.block_on(share.stop());
}

/// The app's root as the window has it: a central panel around the screens.
fn panel(ui: &mut egui::Ui, gui: &mut Gui) {
    egui::CentralPanel::default().show(ui, |ui| gui.ui(ui));
}

/// The consent prompt: who knocks and what it may do, each right the host's to change
/// before letting it in.
#[test]
fn the_consent_prompt_lets_the_host_choose_each_right() {
    struct State {
        viewer: net::PendingViewer,
        answer: Option<Option<net::Rights>>,
    }
    let state = State {
        viewer: net::PendingViewer {
            no: 3,
            name: Some("Zoë's phone".into()),
            addr: "192.0.2.10:50000".parse().unwrap(),
            user_agent: "Mozilla/5.0 (X11; Linux x86_64) Chrome/130.0".into(),
            rights: net::Rights {
                control: true,
                clipboard: false,
            },
            authenticated: true,
        },
        answer: None,
    };
    let mut harness = Harness::builder()
        .with_size(egui::vec2(520.0, 260.0))
        .build_ui_state(
            |ui, s: &mut State| {
                if let Some(a) = super::sharing::consent_prompt(ui.ctx(), &mut s.viewer) {
                    s.answer = Some(a);
                }
            },
            state,
        );
    harness.run_steps(2);
    harness.get_by_label_contains("Viewer 3, “Zoë's phone”, a browser at 192.0.2.10");
    // Compared with app/tests/snapshots/consent_prompt.png (UPDATE_SNAPSHOTS=1 rewrites it).
    harness.snapshot("consent_prompt");

    // The host gives the clipboard and not control, then lets it in.
    harness
        .get_by_label("Control your mouse and keyboard")
        .click();
    harness.get_by_label("Share the clipboard").click();
    harness.run_steps(2);
    harness.get_by_label("Let in").click();
    harness.run_steps(2);
    assert_eq!(
        harness.state().answer,
        Some(Some(net::Rights {
            control: false,
            clipboard: true,
        }))
    );

    // An unauthenticated player can only watch: its rights cannot be ticked.
    let state = harness.state_mut();
    state.answer = None;
    state.viewer.authenticated = false;
    state.viewer.rights = net::Rights::default();
    harness.run_steps(2);
    harness
        .get_by_label("Control your mouse and keyboard")
        .click();
    harness.run_steps(2);
    assert!(
        !harness.state().viewer.rights.control,
        "disabled for a bearer player"
    );
    harness.get_by_label("Turn away").click();
    harness.run_steps(2);
    assert_eq!(harness.state().answer, Some(None));
}

/// The share form's quality presets become the share's frame rate and bit rate.
#[test]
fn a_quality_preset_sets_the_frame_rate_and_the_bit_rate() {
    let mut harness = Harness::builder()
        .with_size(egui::vec2(900.0, 640.0))
        .build_ui_state(|ui, gui: &mut Gui| panel(ui, gui), Gui::new().unwrap());
    harness.run_steps(2);
    let options = harness.state().share_options().unwrap();
    assert_eq!(
        (options.fps, options.bitrate_kbps),
        (30, 8000),
        "Balanced by default"
    );
    harness.get_by_label("Quality").click();
    harness.run_steps(2);
    harness.get_by_label("Smooth motion").click();
    harness.run_steps(2);
    assert_eq!(harness.state().form.quality, super::Quality::SmoothMotion);
    let options = harness.state().share_options().unwrap();
    assert_eq!((options.fps, options.bitrate_kbps), (60, 12_000));
    harness.state_mut().form.quality = super::Quality::LowBandwidth;
    let options = harness.state().share_options().unwrap();
    assert_eq!((options.fps, options.bitrate_kbps), (15, 1500));
}

/// The form's choices become the share's options; what it does not choose is
/// `porthole share`'s default.
#[test]
fn the_share_form_builds_the_share_options() {
    let mut gui = Gui::new().unwrap();
    assert_eq!(
        gui.share_options().unwrap(),
        crate::share::ShareOptions::default(),
        "the form's defaults are the command line's"
    );
    gui.form.monitor = 1;
    gui.form.listen = "127.0.0.1:7390".into();
    gui.form.audio = "none".into();
    gui.form.allow_control = true;
    gui.form.allow_clipboard = true;
    gui.form.quality = super::Quality::LowBandwidth;
    assert_eq!(
        gui.share_options().unwrap(),
        crate::share::ShareOptions {
            monitor: 1,
            listen: "127.0.0.1:7390".parse().unwrap(),
            fps: 15,
            bitrate_kbps: 1500,
            rights: net::Rights {
                control: true,
                clipboard: true,
            },
            audio: None,
            ..Default::default()
        }
    );
    // A bad `porthole --listen` is said when sharing starts.
    gui.form.listen = "bogus".into();
    assert_eq!(gui.share_options().unwrap_err(), crate::share::BadListen);
    let ctx = egui::Context::default();
    gui.start_share(&ctx);
    let error = gui.error.clone().unwrap_or_default();
    assert!(
        error.starts_with("Cannot share: --listen bogus: not an address and port"),
        "{error}"
    );
    assert!(!gui.is_starting());
}
