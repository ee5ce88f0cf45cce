//! Host-side desktop I/O against a real Xvfb: injection, cursor, clipboard, capture.
//! Each test starts its own Xvfb (`-noreset`) on a free display number.

use std::process::{Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use media::capture::{monitor_rect, ScreenCapturer};
use media::clipboard::{ClipContent, HostClipboard};
use media::cursor::{CursorEvent, CursorWatcher};
use media::input::{Injector, InputEvent};
use x11rb::connection::Connection;
use x11rb::protocol::xproto::{ChangeWindowAttributesAux, ConnectionExt};

use media::xvfb::Xvfb;

fn pointer(display: &str) -> (i16, i16) {
    let (conn, screen) = x11rb::connect(Some(display)).unwrap();
    let root = conn.setup().roots[screen].root;
    let r = conn.query_pointer(root).unwrap().reply().unwrap();
    (r.root_x, r.root_y)
}

fn wait_for<T>(what: &str, mut f: impl FnMut() -> Option<T>) -> T {
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        if let Some(v) = f() {
            return v;
        }
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(20));
    }
}

fn check_injector(x: &Xvfb) {
    let rect = monitor_rect(Some(x.name.as_str()), 0).unwrap();
    assert_eq!((rect.width, rect.height), (1280, 720));
    let inj = Injector::start(Some(x.name.clone()), rect).unwrap();
    // Pixel (700, 400) as a viewer would send it.
    let nx = (700.0 * 65535.0 / 1279.0_f64).round() as u16;
    let ny = (400.0 * 65535.0 / 719.0_f64).round() as u16;
    inj.send(1, InputEvent::Move { x: nx, y: ny });
    wait_for("pointer at 700,400", || {
        (pointer(&x.name) == (700, 400)).then_some(())
    });
    inj.send(
        1,
        InputEvent::Button {
            button: 0,
            pressed: true,
            x: 0,
            y: 0,
        },
    );
    inj.send(1, InputEvent::ReleaseAll);
    wait_for("pointer at 0,0", || {
        (pointer(&x.name) == (0, 0)).then_some(())
    });
    wait_for("3 events injected", || (inj.injected() == 3).then_some(()));
    // Unknown keys are refused, not injected.
    inj.send(
        1,
        InputEvent::Key {
            code: "NoSuchKey".into(),
            pressed: true,
        },
    );
    inj.send(1, InputEvent::Move { x: 65535, y: 65535 });
    wait_for("pointer at the far corner", || {
        (pointer(&x.name) == (1279, 719)).then_some(())
    });
    // The pointer can be seen there a moment before the injector counts the move.
    wait_for("the move counted", || (inj.injected() >= 4).then_some(()));
    std::thread::sleep(std::time::Duration::from_millis(100));
    assert_eq!(inj.injected(), 4, "the unknown key was not counted");
}

fn check_cursor(x: &Xvfb) {
    let rect = monitor_rect(Some(x.name.as_str()), 0).unwrap();
    let (tx, rx) = mpsc::channel();
    let _w = CursorWatcher::start(Some(x.name.clone()), rect, 100, move |e| {
        let _ = tx.send(e);
    })
    .unwrap();
    let inj = Injector::start(Some(x.name.clone()), rect).unwrap();
    inj.send(1, InputEvent::Move { x: 65535, y: 0 });
    let mut shape = None;
    let pos = wait_for("position at the right edge", || {
        while let Ok(e) = rx.try_recv() {
            match e {
                CursorEvent::Position {
                    x: 65535,
                    y: 0,
                    visible,
                } => return Some(visible),
                CursorEvent::Shape {
                    width,
                    height,
                    rgba,
                    ..
                } => {
                    assert_eq!(rgba.len(), usize::from(width) * usize::from(height) * 4);
                    shape = Some(rgba);
                }
                _ => {}
            }
        }
        None
    });
    assert!(pos);
    let first = shape.expect("the cursor image was reported");
    // A new cursor on the root window (the cursor font's crosshair, not the X the server
    // starts with) is reported as a new image: the watcher fetches it when XFixes says so.
    let (conn, screen) = x11rb::connect(Some(x.name.as_str())).unwrap();
    let root = conn.setup().roots[screen].root;
    let font = conn.generate_id().unwrap();
    conn.open_font(font, b"cursor").unwrap();
    let crosshair = conn.generate_id().unwrap();
    conn.create_glyph_cursor(
        crosshair, font, font, 34, 35, 0, 0, 0, 0xffff, 0xffff, 0xffff,
    )
    .unwrap();
    conn.change_window_attributes(root, &ChangeWindowAttributesAux::new().cursor(crosshair))
        .unwrap();
    conn.flush().unwrap();
    let second = wait_for("the new cursor image", || {
        while let Ok(e) = rx.try_recv() {
            if let CursorEvent::Shape {
                width,
                height,
                rgba,
                ..
            } = e
            {
                return Some((width, height, rgba));
            }
        }
        None
    });
    assert_eq!(
        second.2.len(),
        usize::from(second.0) * usize::from(second.1) * 4
    );
    assert!(second.2 != first, "the same image again");
}

fn xclip(display: &str, args: &[&str], input: Option<&[u8]>) -> Vec<u8> {
    use std::io::Write;
    let mut child = Command::new("xclip")
        .args(args)
        .env("DISPLAY", display)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("xclip is installed (scripts/install-deps.sh test)");
    if let Some(input) = input {
        child.stdin.take().unwrap().write_all(input).unwrap();
    } else {
        drop(child.stdin.take());
    }
    if args.contains(&"-o") {
        child.wait_with_output().unwrap().stdout
    } else {
        // xclip -i forks a child that owns the selection; the parent exits at once.
        child.wait().unwrap();
        vec![]
    }
}

fn check_clipboard(x: &Xvfb) {
    let (tx, rx) = mpsc::channel();
    let cb = HostClipboard::start(Some(x.name.clone()), move |c| {
        let _ = tx.send(c);
    })
    .expect("clipboard");
    let next = |what: &str| -> ClipContent {
        let c = rx
            .recv_timeout(Duration::from_secs(5))
            .unwrap_or_else(|_| panic!("no clipboard change: {what}"));
        (*c).clone()
    };

    // A host program copies text: reported once.
    xclip(
        &x.name,
        &["-selection", "clipboard", "-i"],
        Some("from host ✓".as_bytes()),
    );
    assert_eq!(next("host text"), ClipContent::Text("from host ✓".into()));

    // A viewer's paste lands on the host clipboard, served as long as we live.
    cb.set(ClipContent::Text("from viewer ✓".into()));
    wait_for("xclip -o to read the viewer's text", || {
        (xclip(&x.name, &["-selection", "clipboard", "-o"], None) == "from viewer ✓".as_bytes())
            .then_some(())
    });
    assert!(
        matches!(rx.try_recv(), Err(mpsc::TryRecvError::Empty)),
        "our own write is not echoed back (and the watcher still runs)"
    );

    // Images both ways, as PNG.
    let rgba: Vec<u8> = (0..8 * 4 * 4).map(|i| (i * 13 % 256) as u8).collect();
    let png = media::clipboard::rgba_to_png(8, 4, &rgba).unwrap();
    cb.set(ClipContent::Png(png));
    let got = wait_for("an image on the host clipboard", || {
        let out = xclip(
            &x.name,
            &["-selection", "clipboard", "-t", "image/png", "-o"],
            None,
        );
        media::clipboard::png_to_rgba(&out).ok()
    });
    assert_eq!(got, (8, 4, rgba.clone()));

    let other: Vec<u8> = rgba.iter().map(|v| 255 - v).collect();
    let png2 = media::clipboard::rgba_to_png(8, 4, &other).unwrap();
    xclip(
        &x.name,
        &["-selection", "clipboard", "-t", "image/png", "-i"],
        Some(&png2),
    );
    match next("host image") {
        ClipContent::Png(p) => {
            assert_eq!(media::clipboard::png_to_rgba(&p).unwrap(), (8, 4, other))
        }
        t => panic!("expected an image, got {t:?}"),
    }
    assert!(matches!(cb.current().as_deref(), Some(ClipContent::Png(_))));
}

fn check_capture(x: &Xvfb) {
    let mut painter = media::pattern::Painter::connect(Some(x.name.as_str())).unwrap();
    painter
        .set_blocks([0xff0000, 0x00ff00, 0x0000ff, 0xffffff])
        .unwrap();
    let mut cap = ScreenCapturer::open(0).unwrap();
    let (w, h) = (cap.width(), cap.height());
    assert_eq!((w, h), (1280, 720));
    let px = cap
        .grab(|f| {
            let at = |x: usize, y: usize| {
                let i = (y * w + x) * 4;
                (f[i + 2], f[i + 1], f[i])
            };
            (at(100, 100), at(1000, 100), at(100, 500), at(1000, 500))
        })
        .unwrap();
    assert_eq!(px, ((255, 0, 0), (0, 255, 0), (0, 0, 255), (255, 255, 255)));
}

/// The share's capture grabs and converts only the columns X DAMAGE names.
fn check_damage_capture(x: &Xvfb) {
    use media::x11grab::DamageCapturer;
    use x11rb::protocol::xproto::{CreateGCAux, Rectangle};
    let mut cap = DamageCapturer::open(0).unwrap();
    // The first grab is the whole screen.
    let bands = cap.take_bands().unwrap();
    assert_eq!(bands, vec![media::picture::Band::whole(1280, 720)]);
    cap.grab(&bands).unwrap();
    let luma = |cap: &DamageCapturer, x: usize, y: usize| cap.picture().y[y * 1280 + x];
    let red = luma(&cap, 300, 120);
    assert!((70..95).contains(&red), "red's luma is {red}");
    // A black square in the red quarter.
    let (conn, screen) = x11rb::connect(Some(x.name.as_str())).unwrap();
    let root = conn.setup().roots[screen].root;
    let gc = conn.generate_id().unwrap();
    conn.create_gc(gc, root, &CreateGCAux::new().foreground(0))
        .unwrap();
    let square = Rectangle {
        x: 200,
        y: 100,
        width: 40,
        height: 40,
    };
    conn.poly_fill_rectangle(root, gc, &[square]).unwrap();
    x11rb::wrapper::ConnectionExt::sync(&conn).unwrap();
    wait_for("the square's damage", || {
        cap.wait(Duration::from_millis(50)).unwrap().then_some(())
    });
    let bands = cap.take_bands().unwrap();
    assert_eq!(bands.len(), 1, "{bands:?}");
    let b = bands[0];
    assert!(
        b.x0 <= 200 && b.x1 >= 240 && b.y0 <= 100 && b.y1 >= 140,
        "{b:?}"
    );
    assert!(b.width() <= 128, "only the damaged columns: {b:?}");
    let cost = cap.grab(&bands).unwrap();
    assert_eq!(cost.rows, b.rows());
    assert!(luma(&cap, 220, 120) < 20, "the square is black");
    for (x, y) in [(195, 120), (245, 120), (220, 95), (220, 145), (300, 120)] {
        assert_eq!(luma(&cap, x, y), red, "({x}, {y}) is still red");
    }
}

/// One Xvfb for every check: scrap and arboard read `$DISPLAY`, which is process-wide.
#[test]
fn desktop_io_against_xvfb() {
    let base = 300 + (std::process::id() % 200) * 10;
    let x = Xvfb::start(1280, 720, base..base + 100)
        .expect("Xvfb is installed (scripts/install-deps.sh)");
    std::env::set_var("DISPLAY", &x.name);
    check_capture(&x);
    check_damage_capture(&x);
    check_injector(&x);
    check_cursor(&x);
    check_clipboard(&x);
}
