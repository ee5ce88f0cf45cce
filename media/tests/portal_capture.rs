//! The Wayland capture against a real desktop: sway headless, PipeWire, the ScreenCast
//! portal. Needs that desktop, so it is ignored in a plain `cargo test`; run it with
//!   cargo test -p media --test portal_capture --no-run   # prints the test binary
//!   scripts/wayland-desktop.sh -- <that binary> --ignored

use std::process::Command;
use std::time::{Duration, Instant};

use media::portal::PortalCapture;

/// Runs a sway command (its IPC socket is in XDG_RUNTIME_DIR).
fn sway(command: &[&str]) {
    let dir = std::env::var("XDG_RUNTIME_DIR").expect("XDG_RUNTIME_DIR");
    let socket = std::fs::read_dir(&dir)
        .expect("runtime dir")
        .filter_map(|e| e.ok())
        .map(|e| e.path())
        .find(|p| p.to_string_lossy().contains("sway-ipc."))
        .expect("sway's IPC socket");
    let out = Command::new("swaymsg")
        .arg("-s")
        .arg(&socket)
        .args(command)
        .output()
        .expect("swaymsg");
    assert!(out.status.success(), "swaymsg {command:?}: {out:?}");
}

/// The video pipeline on the portal, and its encoded frames.
fn portal_pipeline() -> (
    media::pipeline::VideoPipeline,
    std::sync::mpsc::Receiver<media::EncodedFrame>,
) {
    use media::pipeline::{CaptureSource, KeyframeRequest, PipelineConfig, VideoPipeline};
    let (tx, rx) = std::sync::mpsc::sync_channel(64);
    let config = PipelineConfig {
        source: CaptureSource::Portal {
            restore_token: None,
        },
        ..Default::default()
    };
    let pipeline = VideoPipeline::start(config, KeyframeRequest::default(), move |f| {
        let _ = tx.try_send(f);
    })
    .expect("the pipeline on the portal");
    (pipeline, rx)
}

/// Paints the whole output with `hex`.
fn paint(hex: &str) {
    sway(&["output", "HEADLESS-1", "bg", hex, "solid_color"]);
}

/// The centre pixel of the newest frame that shows `rgb`, waiting up to 5 s.
fn wait_for(capture: &PortalCapture, rgb: (u8, u8, u8)) -> (u32, u32) {
    let deadline = Instant::now() + Duration::from_secs(5);
    let mut last = None;
    while Instant::now() < deadline {
        let Some(f) = capture.next(Duration::from_millis(200)) else {
            continue;
        };
        let at = (f.height as usize / 2) * f.stride + (f.width as usize / 2) * 4;
        let px = (f.bgrx[at + 2], f.bgrx[at + 1], f.bgrx[at]);
        if px == rgb {
            return (f.width, f.height);
        }
        last = Some(px);
    }
    panic!("no frame showed {rgb:?} within 5 s; the last showed {last:?}");
}

#[test]
#[ignore = "needs a Wayland desktop: scripts/wayland-desktop.sh (see the file's docs)"]
fn the_portal_delivers_the_screen_and_its_changes() {
    paint("#c82828");
    let capture = PortalCapture::open(None).expect("the ScreenCast portal");
    assert_eq!(wait_for(&capture, (0xc8, 0x28, 0x28)), (640, 480));
    assert_eq!(capture.size, Some((640, 480)));
    // A change on screen is a new frame.
    let changed = Instant::now();
    paint("#28b43c");
    wait_for(&capture, (0x28, 0xb4, 0x3c));
    eprintln!("a change reached the capture in {:?}", changed.elapsed());
}

/// The whole video path on Wayland: portal → I420 → H.264, decoded back to the colours.
#[test]
#[ignore = "needs a Wayland desktop: scripts/wayland-desktop.sh (see the file's docs)"]
fn the_pipeline_encodes_the_portals_pictures() {
    paint("#323cc8");
    let (pipeline, rx) = portal_pipeline();
    assert_eq!(pipeline.size(), (640, 480));
    let mut decoder = media::decoder::H264Decoder::new().unwrap();
    let centre = |decoder: &mut media::decoder::H264Decoder, data: &[u8]| {
        let p = decoder.decode_rgba(data).unwrap()?;
        let at = (p.height / 2 * p.width + p.width / 2) * 4;
        Some((p.rgba[at], p.rgba[at + 1], p.rgba[at + 2]))
    };
    let near = |a: (u8, u8, u8), b: (u8, u8, u8)| {
        a.0.abs_diff(b.0) < 12 && a.1.abs_diff(b.1) < 12 && a.2.abs_diff(b.2) < 12
    };
    let first = rx.recv_timeout(Duration::from_secs(5)).expect("a frame");
    assert!(first.keyframe, "the stream starts with a keyframe");
    let px = centre(&mut decoder, &first.data).expect("a picture");
    assert!(near(px, (0x32, 0x3c, 0xc8)), "{px:?}");
    let changed = Instant::now();
    paint("#dcc828");
    loop {
        let f = rx
            .recv_timeout(Duration::from_secs(5))
            .expect("a frame after the change");
        if let Some(px) = centre(&mut decoder, &f.data) {
            if near(px, (0xdc, 0xc8, 0x28)) {
                break;
            }
        }
    }
    eprintln!("a change was encoded {:?} after swaymsg", changed.elapsed());
}

/// Input on Wayland: text typed through the injector reaches a Wayland client (foot
/// running `cat`), and a click lands where it is sent.
#[test]
#[ignore = "needs a Wayland desktop: scripts/wayland-desktop.sh (see the file's docs)"]
fn typing_reaches_a_wayland_client() {
    use media::capture::MonitorRect;
    use media::input::{Injector, InputEvent};
    let dir = std::env::var("XDG_RUNTIME_DIR").unwrap();
    let file = std::path::Path::new(&dir).join("typed.txt");
    let _ = std::fs::remove_file(&file);
    let mut foot = Command::new("foot")
        .args(["sh", "-c", &format!("cat > {}", file.display())])
        .spawn()
        .expect("foot (apt install foot)");
    std::thread::sleep(Duration::from_millis(1500)); // mapped and focused
    let rect = MonitorRect {
        x: 0,
        y: 0,
        width: 640,
        height: 480,
    };
    let injector = Injector::start_wayland(rect).expect("the Wayland injector");
    let press = |code: &str, pressed: bool| InputEvent::Key {
        code: code.into(),
        pressed,
    };
    assert!(injector.send(1, InputEvent::Text("hello wayland".into())));
    assert!(injector.send(1, press("Enter", true)));
    assert!(injector.send(1, press("Enter", false)));
    let deadline = Instant::now() + Duration::from_secs(5);
    let mut got = String::new();
    while Instant::now() < deadline {
        got = std::fs::read_to_string(&file).unwrap_or_default();
        if got.contains('\n') {
            break;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    let _ = foot.kill();
    let _ = foot.wait();
    assert_eq!(got, "hello wayland\n");
    assert!(injector.injected() >= 3, "{}", injector.injected());
}

/// A cast that is not the first of the portal's, of a screen that does not change, still
/// gets its first frame (the portal sends frames on damage only: see `FIRST_FRAME_WAIT`).
#[test]
#[ignore = "needs a Wayland desktop: scripts/wayland-desktop.sh (see the file's docs)"]
fn a_second_cast_of_a_still_screen_gets_its_first_frame() {
    paint("#3c50c8");
    {
        let first = PortalCapture::open(None).expect("the ScreenCast portal");
        wait_for(&first, (0x3c, 0x50, 0xc8));
    }
    std::thread::sleep(Duration::from_millis(200));
    let second = PortalCapture::open(None).expect("the ScreenCast portal");
    let started = Instant::now();
    wait_for(&second, (0x3c, 0x50, 0xc8));
    eprintln!(
        "the second cast's first frame came {:?} after open",
        started.elapsed()
    );
}

/// The portal's restore token: the first cast gets one, the next cast given it starts
/// from it (xdg-desktop-portal-wlr logs "restoring session from data"; where the portal
/// has a dialog, it is skipped) and gets a token again (the spec says a token is good once:
/// Porthole always keeps the newest).
#[test]
#[ignore = "needs a Wayland desktop: scripts/wayland-desktop.sh (see the file's docs)"]
fn a_restore_token_opens_the_next_cast() {
    paint("#c8c828");
    let token = {
        let first = PortalCapture::open(None).expect("the ScreenCast portal");
        wait_for(&first, (0xc8, 0xc8, 0x28));
        first
            .restore_token
            .clone()
            .expect("the portal gives a restore token")
    };
    let second = PortalCapture::open(Some(&token)).expect("a cast from the restore token");
    wait_for(&second, (0xc8, 0xc8, 0x28));
    assert!(
        second.restore_token.is_some(),
        "a token for the next cast again"
    );
}

/// Damage: a small window opening over a still screen is a change of its rows only (the
/// portal's damage regions); the picture shows the window where it opened and keeps the
/// rest as it was.
#[test]
#[ignore = "needs a Wayland desktop: scripts/wayland-desktop.sh (see the file's docs)"]
fn a_small_change_updates_its_rows_and_keeps_the_rest() {
    paint("#323cc8");
    let (_pipeline, rx) = portal_pipeline();
    let mut decoder = media::decoder::H264Decoder::new().unwrap();
    let at = |p: &media::decoder::Picture, x: usize, y: usize| {
        let i = (y * p.width + x) * 4;
        (p.rgba[i], p.rgba[i + 1], p.rgba[i + 2])
    };
    let near = |a: (u8, u8, u8), b: (u8, u8, u8)| {
        a.0.abs_diff(b.0) < 16 && a.1.abs_diff(b.1) < 16 && a.2.abs_diff(b.2) < 16
    };
    let blue = (0x32, 0x3c, 0xc8);
    let window = (0xdc, 0x28, 0xc8);
    let first = rx.recv_timeout(Duration::from_secs(5)).expect("a frame");
    let p = decoder
        .decode_rgba(&first.data)
        .unwrap()
        .expect("a picture");
    assert!(near(at(&p, 320, 240), blue));
    sway(&[
        "for_window [app_id=porthole-patch] \"floating enable, resize set 160 120, move position 40 60\"",
    ]);
    sway(&["exec foot --app-id=porthole-patch -o colors.background=dc28c8 sleep 30"]);
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        let f = rx
            .recv_timeout(deadline.saturating_duration_since(Instant::now()))
            .expect("a frame showing the window");
        let Some(p) = decoder.decode_rgba(&f.data).unwrap() else {
            continue;
        };
        if near(at(&p, 120, 140), window) {
            for (x, y) in [(320, 240), (600, 440), (20, 20), (400, 100)] {
                let px = at(&p, x, y);
                assert!(
                    near(px, blue),
                    "({x}, {y}) outside the window is {px:?}, not blue"
                );
            }
            break;
        }
    }
}
