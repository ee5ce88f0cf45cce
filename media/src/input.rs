//! Input injection into the shared X display (XTest, through enigo's x11rb backend).
//!
//! One injector thread owns the X connection; viewers' events reach it through a channel
//! and never block the network. Positions arrive normalised to the shared monitor
//! (0..=65535 on each axis) and are mapped to its pixels here. The injector remembers what
//! each source (viewer) holds down, so `ReleaseAll` — sent when a viewer's page loses focus
//! or the viewer leaves — never leaves a key stuck.

use std::collections::{HashMap, HashSet};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{mpsc, Arc};
use std::thread::JoinHandle;

use enigo::{Axis, Button, Coordinate, Direction, Enigo, Keyboard, Mouse, Settings};

use crate::capture::MonitorRect;
use crate::keymap;

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum InputEvent {
    /// Absolute pointer position, normalised: 0 = left/top edge, 65535 = right/bottom.
    Move { x: u16, y: u16 },
    /// button 0 left, 1 middle, 2 right, 3 back, 4 forward; pressed at (x, y).
    Button {
        button: u8,
        pressed: bool,
        x: u16,
        y: u16,
    },
    /// In 1/120 notch; positive dy scrolls down, positive dx right.
    Wheel { dx: i16, dy: i16 },
    /// A physical key by DOM `KeyboardEvent.code`.
    Key { code: String, pressed: bool },
    /// Characters to type, whatever the host's keyboard layout.
    Text(String),
    /// Release everything this source holds.
    ReleaseAll,
}

#[derive(Debug, thiserror::Error)]
pub enum InputError {
    #[error("cannot inject input into the X display: {0}")]
    Open(String),
}

/// Maps a normalised coordinate onto `len` pixels starting at `origin`.
pub fn to_pixel(v: u16, origin: i32, len: u32) -> i32 {
    let span = f64::from(len.saturating_sub(1));
    origin + (f64::from(v) * span / 65535.0).round() as i32
}

#[derive(Default)]
struct Held {
    keys: HashSet<u16>,
    buttons: Vec<Button>,
    wheel: (i32, i32),
}

/// A running injector.
pub struct Injector {
    tx: Option<mpsc::Sender<(u64, InputEvent)>>,
    thread: Option<JoinHandle<()>>,
    injected: Arc<AtomicU64>,
}

impl Injector {
    /// Opens the X display (`None` = `$DISPLAY`) for injection into `monitor`.
    pub fn start(display: Option<String>, monitor: MonitorRect) -> Result<Self, InputError> {
        let (tx, rx) = mpsc::channel::<(u64, InputEvent)>();
        let (ready_tx, ready_rx) = mpsc::channel();
        let injected = Arc::new(AtomicU64::new(0));
        let counter = injected.clone();
        let thread = std::thread::Builder::new()
            .name("porthole-input".into())
            .spawn(move || {
                let settings = Settings {
                    x11_display: display,
                    release_keys_when_dropped: true,
                    ..Default::default()
                };
                let mut enigo = match Enigo::new(&settings) {
                    Ok(e) => {
                        let _ = ready_tx.send(Ok(()));
                        e
                    }
                    Err(e) => {
                        let _ = ready_tx.send(Err(InputError::Open(e.to_string())));
                        return;
                    }
                };
                let mut held: HashMap<u64, Held> = HashMap::new();
                for (source, event) in rx {
                    let release_all = event == InputEvent::ReleaseAll;
                    if release_all && !held.contains_key(&source) {
                        continue; // holds nothing: nothing to inject
                    }
                    let state = held.entry(source).or_default();
                    match apply(&mut enigo, monitor, state, event) {
                        Ok(()) => {
                            counter.fetch_add(1, Ordering::Relaxed);
                        }
                        Err(e) => tracing::warn!("input not injected: {e}"),
                    }
                    if release_all {
                        // Forget the source: a viewer that left leaves no state behind.
                        held.remove(&source);
                    }
                }
            })
            .map_err(|e| InputError::Open(e.to_string()))?;
        match ready_rx.recv() {
            Ok(Ok(())) => Ok(Self {
                tx: Some(tx),
                thread: Some(thread),
                injected,
            }),
            Ok(Err(e)) => Err(e),
            Err(_) => Err(InputError::Open("injector thread ended".into())),
        }
    }

    /// Queues an event from `source` (a viewer). Never blocks.
    pub fn send(&self, source: u64, event: InputEvent) {
        if let Some(tx) = &self.tx {
            let _ = tx.send((source, event));
        }
    }

    /// Events injected so far.
    pub fn injected(&self) -> u64 {
        self.injected.load(Ordering::Relaxed)
    }
}

impl Drop for Injector {
    fn drop(&mut self) {
        self.tx.take();
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

fn button_of(index: u8) -> Option<Button> {
    Some(match index {
        0 => Button::Left,
        1 => Button::Middle,
        2 => Button::Right,
        3 => Button::Back,
        4 => Button::Forward,
        _ => return None,
    })
}

fn direction(pressed: bool) -> Direction {
    if pressed {
        Direction::Press
    } else {
        Direction::Release
    }
}

fn apply(
    enigo: &mut Enigo,
    monitor: MonitorRect,
    held: &mut Held,
    event: InputEvent,
) -> Result<(), String> {
    let move_to = |enigo: &mut Enigo, x: u16, y: u16| {
        enigo
            .move_mouse(
                to_pixel(x, monitor.x, monitor.width),
                to_pixel(y, monitor.y, monitor.height),
                Coordinate::Abs,
            )
            .map_err(|e| e.to_string())
    };
    match event {
        InputEvent::Move { x, y } => move_to(enigo, x, y),
        InputEvent::Button {
            button,
            pressed,
            x,
            y,
        } => {
            let b = button_of(button).ok_or_else(|| format!("no button {button}"))?;
            move_to(enigo, x, y)?;
            enigo
                .button(b, direction(pressed))
                .map_err(|e| e.to_string())?;
            held.buttons.retain(|h| *h != b);
            if pressed {
                held.buttons.push(b);
            }
            Ok(())
        }
        InputEvent::Wheel { dx, dy } => {
            // Whole notches only; keep the remainder for the next event.
            held.wheel.0 += i32::from(dx);
            held.wheel.1 += i32::from(dy);
            let (nx, ny) = (held.wheel.0 / 120, held.wheel.1 / 120);
            held.wheel.0 -= nx * 120;
            held.wheel.1 -= ny * 120;
            if ny != 0 {
                enigo
                    .scroll(ny, Axis::Vertical)
                    .map_err(|e| e.to_string())?;
            }
            if nx != 0 {
                enigo
                    .scroll(nx, Axis::Horizontal)
                    .map_err(|e| e.to_string())?;
            }
            Ok(())
        }
        InputEvent::Key { code, pressed } => {
            let keycode =
                keymap::x_keycode(&code).ok_or_else(|| format!("unknown key code {code:?}"))?;
            let keycode = u16::from(keycode);
            enigo
                .raw(keycode, direction(pressed))
                .map_err(|e| e.to_string())?;
            if pressed {
                held.keys.insert(keycode);
            } else {
                held.keys.remove(&keycode);
            }
            Ok(())
        }
        InputEvent::Text(text) => enigo.text(&text).map_err(|e| e.to_string()),
        InputEvent::ReleaseAll => {
            for keycode in held.keys.drain() {
                let _ = enigo.raw(keycode, Direction::Release);
            }
            for b in held.buttons.drain(..) {
                let _ = enigo.button(b, Direction::Release);
            }
            held.wheel = (0, 0);
            Ok(())
        }
    }
}

#[cfg(test)]
mod tests {
    use super::to_pixel;

    #[test]
    fn normalised_positions_cover_every_pixel() {
        assert_eq!(to_pixel(0, 0, 1920), 0);
        assert_eq!(to_pixel(65535, 0, 1920), 1919);
        assert_eq!(to_pixel(32768, 0, 1920), 960);
        // A second monitor to the right of the first.
        assert_eq!(to_pixel(0, 1920, 1280), 1920);
        assert_eq!(to_pixel(65535, 1920, 1280), 3199);
        // Every pixel column is reachable from the viewer's rounding.
        for px in [0u32, 1, 700, 1918, 1919] {
            let v = ((f64::from(px) * 65535.0 / 1919.0).round()) as u16;
            assert_eq!(to_pixel(v, 0, 1920), px as i32);
        }
    }
}
