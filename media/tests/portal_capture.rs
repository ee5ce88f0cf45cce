//! The Wayland capture against a real desktop: sway headless, PipeWire, the ScreenCast
//! portal. Needs that desktop, so it is ignored in a plain `cargo test`; run it with
//!   cargo test -p media --test portal_capture --no-run   # prints the test binary
//!   scripts/wayland-desktop.sh -- <that binary> --ignored

use std::process::Command;
use std::time::{Duration, Instant};

use media::portal::PortalCapture;

/// Paints the whole output with `hex` (sway's IPC; the socket is in XDG_RUNTIME_DIR).
fn paint(hex: &str) {
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
        .args(["output", "HEADLESS-1", "bg", hex, "solid_color"])
        .output()
        .expect("swaymsg");
    assert!(out.status.success(), "swaymsg: {out:?}");
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
