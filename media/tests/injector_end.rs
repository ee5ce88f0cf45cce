//! The injector against a real Xvfb: ending a viewer's input drops its backlog at once, and
//! a flood is bounded by the viewer's queue. Keys are counted by a real X window that has
//! the keyboard focus.

use std::time::{Duration, Instant};

use media::capture::monitor_rect;
use media::input::{Injector, InputEvent, QUEUE_CHARS};
use media::xvfb::Xvfb;
use x11rb::connection::Connection;
use x11rb::protocol::xproto::{ConnectionExt, CreateWindowAux, EventMask, InputFocus, WindowClass};
use x11rb::protocol::Event;
use x11rb::wrapper::ConnectionExt as _;

/// A window on `display` holding the keyboard focus; counts the KeyPress events it gets.
struct KeyCounter {
    conn: x11rb::rust_connection::RustConnection,
    presses: usize,
}

impl KeyCounter {
    fn open(display: &str) -> Self {
        let (conn, screen) = x11rb::connect(Some(display)).unwrap();
        let root = conn.setup().roots[screen].root;
        let win = conn.generate_id().unwrap();
        conn.create_window(
            0,
            win,
            root,
            0,
            0,
            400,
            300,
            0,
            WindowClass::INPUT_OUTPUT,
            0,
            &CreateWindowAux::new().event_mask(EventMask::KEY_PRESS | EventMask::STRUCTURE_NOTIFY),
        )
        .unwrap();
        conn.map_window(win).unwrap();
        conn.flush().unwrap();
        loop {
            if let Event::MapNotify(_) = conn.wait_for_event().unwrap() {
                break;
            }
        }
        conn.set_input_focus(InputFocus::PARENT, win, x11rb::CURRENT_TIME)
            .unwrap();
        conn.sync().unwrap();
        Self { conn, presses: 0 }
    }

    /// Counts presses until none came for `quiet`.
    fn settle(&mut self, quiet: Duration) -> usize {
        let mut last = Instant::now();
        while last.elapsed() < quiet {
            while let Some(ev) = self.conn.poll_for_event().unwrap() {
                if let Event::KeyPress(_) = ev {
                    self.presses += 1;
                    last = Instant::now();
                }
            }
            std::thread::sleep(Duration::from_millis(10));
        }
        self.presses
    }
}

#[test]
fn ending_a_viewer_drops_its_queued_input_on_a_real_display() {
    let base = 520 + (std::process::id() % 200) * 10;
    let x = Xvfb::start(640, 480, base..base + 100)
        .expect("Xvfb is installed (scripts/install-deps.sh)");
    let mut keys = KeyCounter::open(&x.name);
    let rect = monitor_rect(Some(x.name.as_str()), 0).unwrap();
    let inj = Injector::start(Some(x.name.clone()), rect).unwrap();

    // A control: what fits the queue is all typed.
    let text = InputEvent::Text("a".repeat(1024));
    let mut accepted = 0;
    for _ in 0..20 {
        accepted += usize::from(inj.send(1, text.clone()));
    }
    // The injector may already have taken the first text off the queue to type it (it
    // types for far longer than the 20 sends take), so one more may fit.
    let queued = QUEUE_CHARS / 1024;
    assert!(
        (queued..=queued + 1).contains(&accepted),
        "the queue takes {QUEUE_CHARS} characters (plus the text being typed): {accepted} of 20 accepted"
    );
    assert!(inj.refused() >= 20 - accepted as u64);
    let typed = keys.settle(Duration::from_millis(1500));
    assert_eq!(typed, accepted * 1024, "everything accepted is typed");

    // The same backlog, ended at once: at most the piece being typed gets through.
    let before = typed;
    for _ in 0..4 {
        assert!(inj.send(2, text.clone()));
    }
    inj.end(2);
    let typed = keys.settle(Duration::from_millis(1500)) - before;
    assert!(
        typed <= 64,
        "{typed} characters typed after the viewer's input ended (of 4096 queued)"
    );
    // A later viewer is not affected.
    assert!(inj.send(3, InputEvent::Text("abc".into())));
    let more = keys.settle(Duration::from_millis(800)) - before - typed;
    assert_eq!(more, 3);
    drop(inj);
    drop(x);
}
