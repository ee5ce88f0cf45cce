//! Input injection into the shared X display (XTest, through enigo's x11rb backend).
//!
//! One injector thread owns the X connection. Viewers' events reach it through a bounded
//! queue per viewer ([`InputQueue`]): a viewer that sends faster than the display takes
//! has its new events refused (counted), never the network blocked and never a backlog
//! that outlives it. [`Injector::end`] (rights revoked, viewer gone) drops what is still
//! queued for that viewer at once, and every event carries the viewer's generation, checked
//! just before it is injected, so nothing accepted before the end is typed after it.
//! Positions arrive normalised to the shared monitor (0..=65535 on each axis) and are mapped
//! to its pixels here. The injector remembers what each source (viewer) holds down, so
//! `ReleaseAll` — sent when a viewer's page loses focus, loses control or leaves — never
//! leaves a key stuck.

use std::collections::{HashMap, HashSet};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{mpsc, Arc};
use std::thread::JoinHandle;

use enigo::{Axis, Button, Coordinate, Direction, Enigo, Keyboard, Mouse, Settings};

use crate::capture::{MonitorRect, SharedMonitor};
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
    #[error("cannot inject input into the desktop: {0}")]
    Open(String),
}

/// Which display the injector opens.
enum Target {
    /// `None`: `$DISPLAY`.
    X11(Option<String>),
    /// `$WAYLAND_DISPLAY`.
    Wayland,
}

/// A display name nothing answers to (see [`Injector::start_wayland`]).
const NO_SUCH_DISPLAY: &str = "porthole-none";

/// The Wayland pointer moved one pixel right and back (wlroots' virtual pointer): the
/// compositor repaints the cursor.
pub struct PointerNudger(Enigo);

impl PointerNudger {
    /// A virtual pointer of its own, kept while this lives: one made and dropped per nudge
    /// would add and remove the seat's pointer each time (where it has no other, clients
    /// see the capability come and go; wev died of it).
    pub fn new() -> Result<Self, InputError> {
        Enigo::new(&Settings {
            x11_display: Some(NO_SUCH_DISPLAY.to_owned()),
            wayland_display: None,
            ..Default::default()
        })
        .map(Self)
        .map_err(|e| InputError::Open(e.to_string()))
    }

    pub fn nudge(&mut self) -> Result<(), InputError> {
        for dx in [1, -1] {
            self.0
                .move_mouse(dx, 0, Coordinate::Rel)
                .map_err(|e| InputError::Open(e.to_string()))?;
        }
        Ok(())
    }
}

/// One nudge through a connection of its own that closes at once (see [`PointerNudger`]).
pub fn nudge_wayland_pointer() -> Result<(), InputError> {
    PointerNudger::new()?.nudge()
}

/// Maps a normalised coordinate onto `len` pixels starting at `origin`.
pub fn to_pixel(v: u16, origin: i32, len: u32) -> i32 {
    let span = f64::from(len.saturating_sub(1));
    origin + (f64::from(v) * span / 65535.0).round() as i32
}

/// Most events queued from one viewer; beyond it new ones are refused (and counted).
pub const QUEUE_EVENTS: usize = 256;
/// Most characters of `Text` queued from one viewer.
pub const QUEUE_CHARS: usize = 4096;
/// Room kept beyond [`QUEUE_EVENTS`] for releases of keys and buttons the viewer pressed,
/// so that a full queue never keeps a key down.
pub const RELEASE_ROOM: usize = 64;
/// `Text` is typed in pieces this long, the viewer's generation checked before each.
const TEXT_PIECE_CHARS: usize = 32;

/// Keys and buttons a source has queued presses of (and no release since): their releases
/// get the room kept for them. Bounded like the gate's (a viewer holds at most 32 keys).
#[derive(Default)]
struct Pressed {
    keys: HashSet<String>,
    buttons: u8,
}

impl Pressed {
    const MAX_KEYS: usize = 48;

    fn releases(&self, event: &InputEvent) -> bool {
        match event {
            InputEvent::Key {
                pressed: false,
                code,
            } => self.keys.contains(code),
            InputEvent::Button {
                pressed: false,
                button,
                ..
            } => self.buttons & button_bit(*button) != 0,
            _ => false,
        }
    }

    fn track(&mut self, event: &InputEvent) {
        match event {
            InputEvent::Key { pressed, code } => {
                if !*pressed {
                    self.keys.remove(code);
                } else if self.keys.len() < Self::MAX_KEYS {
                    self.keys.insert(code.clone());
                }
            }
            InputEvent::Button {
                pressed, button, ..
            } => {
                if *pressed {
                    self.buttons |= button_bit(*button);
                } else {
                    self.buttons &= !button_bit(*button);
                }
            }
            InputEvent::ReleaseAll => *self = Self::default(),
            _ => {}
        }
    }
}

fn button_bit(button: u8) -> u8 {
    1u8.checked_shl(u32::from(button)).unwrap_or(0)
}

fn chars_of(event: &InputEvent) -> usize {
    match event {
        InputEvent::Text(t) => t.chars().count(),
        _ => 0,
    }
}

struct SourceQueue {
    events: std::collections::VecDeque<InputEvent>,
    chars: usize,
    pressed: Pressed,
    /// Changes on every [`InputQueue::end`]: events taken before it are stale.
    generation: u64,
    /// Ended and not used since: forgotten once drained.
    ended: bool,
}

/// The injector's queues, one per viewer, served in turn. Pure: no X, no threads, no time.
#[derive(Default)]
pub struct InputQueue {
    sources: HashMap<u64, SourceQueue>,
    /// Sources with events queued, in serving order (each at most once).
    ready: std::collections::VecDeque<u64>,
    next_generation: u64,
    refused: u64,
}

impl InputQueue {
    fn source(&mut self, source: u64) -> &mut SourceQueue {
        let next = &mut self.next_generation;
        self.sources.entry(source).or_insert_with(|| {
            *next += 1;
            SourceQueue {
                events: Default::default(),
                chars: 0,
                pressed: Pressed::default(),
                generation: *next,
                ended: false,
            }
        })
    }

    /// Queues `event` from `source`. False: refused, that viewer's queue is full.
    /// Releases of what it pressed have extra room; a `ReleaseAll` is always taken (one
    /// suffices in a row).
    pub fn push(&mut self, source: u64, event: InputEvent) -> bool {
        let q = self.source(source);
        q.ended = false;
        let len = q.events.len();
        let chars = chars_of(&event);
        let mut dropped = 0;
        match &event {
            InputEvent::ReleaseAll => {
                if q.events.back() == Some(&InputEvent::ReleaseAll) {
                    return true;
                }
                if len >= QUEUE_EVENTS + RELEASE_ROOM {
                    // Full of presses and releases: releasing everything supersedes them.
                    dropped = len as u64;
                    q.events.clear();
                    q.chars = 0;
                }
            }
            e if q.pressed.releases(e) && len < QUEUE_EVENTS + RELEASE_ROOM => {}
            _ if len < QUEUE_EVENTS && q.chars + chars <= QUEUE_CHARS => {}
            _ => {
                self.refused += 1;
                return false;
            }
        }
        let was_empty = q.events.is_empty();
        q.chars += chars;
        q.pressed.track(&event);
        q.events.push_back(event);
        if was_empty && !self.ready.contains(&source) {
            self.ready.push_back(source);
        }
        self.refused += dropped;
        true
    }

    /// `source` lost control or left: what it still has queued is dropped, events already
    /// taken become stale, and a `ReleaseAll` is queued for it.
    pub fn end(&mut self, source: u64) {
        self.next_generation += 1;
        let generation = self.next_generation;
        let q = self.source(source);
        let was_empty = q.events.is_empty();
        let dropped = q
            .events
            .iter()
            .filter(|e| **e != InputEvent::ReleaseAll)
            .count() as u64;
        q.events.clear();
        q.chars = 0;
        q.pressed = Pressed::default();
        q.generation = generation;
        q.ended = true;
        q.events.push_back(InputEvent::ReleaseAll);
        self.refused += dropped;
        if was_empty {
            self.ready.push_back(source);
        }
    }

    /// The next event to inject, with its source and that source's generation now.
    pub fn pop(&mut self) -> Option<(u64, u64, InputEvent)> {
        let source = self.ready.pop_front()?;
        let q = self.sources.get_mut(&source)?;
        let event = q.events.pop_front()?;
        q.chars -= chars_of(&event);
        let generation = q.generation;
        if !q.events.is_empty() {
            self.ready.push_back(source);
        } else if q.ended {
            self.sources.remove(&source);
        }
        Some((source, generation, event))
    }

    /// Whether an event taken at `generation` may still be injected for `source`.
    pub fn is_current(&self, source: u64, generation: u64) -> bool {
        self.sources
            .get(&source)
            .is_some_and(|q| q.generation == generation && !q.ended)
    }

    /// Events queued now, over all sources.
    pub fn len(&self) -> usize {
        self.sources.values().map(|q| q.events.len()).sum()
    }

    pub fn is_empty(&self) -> bool {
        self.ready.is_empty()
    }

    /// Events refused or dropped so far.
    pub fn refused(&self) -> u64 {
        self.refused
    }

    #[cfg(test)]
    fn pressed_for_test(&mut self, source: u64, code: &str) {
        self.source(source).pressed.keys.insert(code.into());
    }
}

#[derive(Default)]
struct Held {
    keys: HashSet<u16>,
    buttons: Vec<Button>,
    wheel: (i32, i32),
}

struct Shared {
    queue: std::sync::Mutex<InputQueue>,
    wake: std::sync::Condvar,
    stopping: std::sync::atomic::AtomicBool,
    injected: AtomicU64,
}

impl Shared {
    fn queue(&self) -> std::sync::MutexGuard<'_, InputQueue> {
        self.queue.lock().unwrap_or_else(|e| e.into_inner())
    }
    fn is_current(&self, source: u64, generation: u64) -> bool {
        !self.stopping.load(Ordering::Relaxed) && self.queue().is_current(source, generation)
    }
}

/// A running injector.
pub struct Injector {
    shared: Arc<Shared>,
    thread: Option<JoinHandle<()>>,
}

impl Injector {
    /// Opens the X display (`None` = `$DISPLAY`) for injection into `monitor`.
    /// `monitor` may change while it runs (positions map to it as it is then).
    pub fn start(
        display: Option<String>,
        monitor: impl Into<SharedMonitor>,
    ) -> Result<Self, InputError> {
        Self::start_on(Target::X11(display), monitor.into())
    }

    /// Injects into the Wayland compositor in `$WAYLAND_DISPLAY` (wlroots' virtual-pointer
    /// and virtual-keyboard protocols, through enigo), for a share of `monitor`.
    pub fn start_wayland(monitor: impl Into<SharedMonitor>) -> Result<Self, InputError> {
        Self::start_on(Target::Wayland, monitor.into())
    }

    fn start_on(target: Target, monitor: SharedMonitor) -> Result<Self, InputError> {
        let (ready_tx, ready_rx) = mpsc::channel();
        let shared = Arc::new(Shared {
            queue: Default::default(),
            wake: Default::default(),
            stopping: Default::default(),
            injected: AtomicU64::new(0),
        });
        let sh = shared.clone();
        let thread = std::thread::Builder::new()
            .name("porthole-input".into())
            .spawn(move || {
                // enigo sends every event through each connection it opens: name the
                // other kind of display as one that does not exist, so only one opens.
                // enigo's Wayland text goes through an input method, which a client only
                // hears while it has text input enabled: there, type key by key.
                let text_as_keys = matches!(target, Target::Wayland);
                let (x11_display, wayland_display) = match target {
                    Target::X11(display) => (display, Some(NO_SUCH_DISPLAY.to_owned())),
                    Target::Wayland => (Some(NO_SUCH_DISPLAY.to_owned()), None),
                };
                let settings = Settings {
                    x11_display,
                    wayland_display,
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
                run(&sh, &mut enigo, &monitor, text_as_keys);
            })
            .map_err(|e| InputError::Open(e.to_string()))?;
        match ready_rx.recv() {
            Ok(Ok(())) => Ok(Self {
                shared,
                thread: Some(thread),
            }),
            Ok(Err(e)) => Err(e),
            Err(_) => Err(InputError::Open("injector thread ended".into())),
        }
    }

    /// Queues an event from `source` (a viewer). Never blocks. False: refused, because
    /// that viewer's queue is full (counted in [`Injector::refused`]).
    pub fn send(&self, source: u64, event: InputEvent) -> bool {
        let accepted = self.shared.queue().push(source, event);
        if accepted {
            self.shared.wake.notify_one();
        }
        accepted
    }

    /// `source` lost control or left: its queued input is dropped now, whatever was taken
    /// already is not injected, and everything it holds is released.
    pub fn end(&self, source: u64) {
        self.shared.queue().end(source);
        self.shared.wake.notify_one();
    }

    /// Events injected so far.
    pub fn injected(&self) -> u64 {
        self.shared.injected.load(Ordering::Relaxed)
    }

    /// Events refused (a full queue) or dropped (queued when their viewer's input ended).
    pub fn refused(&self) -> u64 {
        self.shared.queue().refused()
    }
}

impl Drop for Injector {
    fn drop(&mut self) {
        // Whatever is still queued is dropped: stopping must not wait for a backlog.
        self.shared.stopping.store(true, Ordering::Relaxed);
        self.shared.wake.notify_all();
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// The injector thread: takes events in turn until stopped, then releases what is held.
fn run(shared: &Shared, enigo: &mut Enigo, monitor: &SharedMonitor, text_as_keys: bool) {
    let mut held: HashMap<u64, Held> = HashMap::new();
    loop {
        let next = {
            let mut queue = shared.queue();
            loop {
                if shared.stopping.load(Ordering::Relaxed) {
                    break None;
                }
                if let Some(next) = queue.pop() {
                    break Some(next);
                }
                queue = shared.wake.wait(queue).unwrap_or_else(|e| e.into_inner());
            }
        };
        let Some((source, generation, event)) = next else {
            break;
        };
        let release_all = event == InputEvent::ReleaseAll;
        if release_all {
            let Some(mut state) = held.remove(&source) else {
                continue; // holds nothing: nothing to inject
            };
            // Forgotten: a viewer that left leaves no state behind.
            let _ = apply(enigo, monitor.rect(), &mut state, event);
            shared.injected.fetch_add(1, Ordering::Relaxed);
            continue;
        }
        // The rights generation, checked just before the injection.
        if !shared.is_current(source, generation) {
            continue;
        }
        let state = held.entry(source).or_default();
        let result = match event {
            InputEvent::Text(text) => type_text(enigo, &text, text_as_keys, || {
                shared.is_current(source, generation)
            }),
            event => apply(enigo, monitor.rect(), state, event),
        };
        match result {
            Ok(()) => {
                shared.injected.fetch_add(1, Ordering::Relaxed);
            }
            Err(e) => tracing::warn!("input not injected: {e}"),
        }
    }
    for (_, mut state) in held.drain() {
        let _ = apply(enigo, monitor.rect(), &mut state, InputEvent::ReleaseAll);
    }
}

/// Types `text` in short pieces while `go_on()` holds.
fn type_text(
    enigo: &mut Enigo,
    text: &str,
    as_keys: bool,
    go_on: impl Fn() -> bool,
) -> Result<(), String> {
    let chars: Vec<char> = text.chars().collect();
    for (i, piece) in chars.chunks(TEXT_PIECE_CHARS).enumerate() {
        if i > 0 && !go_on() {
            return Ok(());
        }
        if as_keys {
            for &c in piece {
                enigo
                    .key(enigo::Key::Unicode(c), Direction::Click)
                    .map_err(|e| e.to_string())?;
            }
        } else {
            let piece: String = piece.iter().collect();
            enigo.text(&piece).map_err(|e| e.to_string())?;
        }
    }
    Ok(())
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
    use super::*;

    fn key(code: &str, pressed: bool) -> InputEvent {
        InputEvent::Key {
            code: code.into(),
            pressed,
        }
    }

    #[test]
    fn a_viewer_queue_is_bounded_but_releases_and_release_all_get_in() {
        let mut q = InputQueue::default();
        for _ in 0..QUEUE_EVENTS {
            assert!(q.push(1, key("KeyA", true)));
        }
        assert!(!q.push(1, key("KeyA", true)), "full");
        assert!(!q.push(1, InputEvent::Move { x: 1, y: 1 }), "full");
        assert_eq!(q.refused(), 2);
        q.refused = 0;
        // Another viewer is not held up by the first one's backlog.
        assert!(q.push(2, key("KeyB", true)));
        // The release of what it pressed has room of its own; other releases do not.
        assert!(!q.push(1, key("KeyQ", false)));
        assert!(q.push(1, key("KeyA", false)));
        assert!(!q.push(1, key("KeyA", false)), "released already");
        for i in 0..RELEASE_ROOM - 1 {
            q.pressed_for_test(1, &format!("F{i}"));
            assert!(q.push(1, key(&format!("F{i}"), false)));
        }
        q.pressed_for_test(1, "KeyB");
        assert!(!q.push(1, key("KeyB", false)), "the room is bounded too");
        // ReleaseAll always gets in, superseding a queue full to the brim; once in a row.
        assert!(q.push(1, InputEvent::ReleaseAll));
        assert!(q.push(1, InputEvent::ReleaseAll));
        assert_eq!(q.len(), 2, "viewer 1: one ReleaseAll; viewer 2: its key");
        // Served in turn.
        assert_eq!(
            q.pop().map(|e| (e.0, e.2)),
            Some((1, InputEvent::ReleaseAll))
        );
        assert_eq!(q.pop().map(|e| (e.0, e.2)), Some((2, key("KeyB", true))));
        assert_eq!(q.pop(), None);
    }

    #[test]
    fn text_is_bounded_in_characters() {
        let mut q = InputQueue::default();
        let text = InputEvent::Text("é".repeat(1024));
        for _ in 0..QUEUE_CHARS / 1024 {
            assert!(q.push(1, text.clone()));
        }
        assert!(!q.push(1, InputEvent::Text("x".into())));
        assert!(q.push(1, key("KeyA", true)), "keys still fit");
        q.pop();
        assert!(q.push(1, text), "room again once typed");
    }

    #[test]
    fn sources_take_turns() {
        let mut q = InputQueue::default();
        for i in 0..3 {
            q.push(1, InputEvent::Move { x: i, y: 0 });
        }
        q.push(2, InputEvent::Move { x: 9, y: 9 });
        let order: Vec<u64> = std::iter::from_fn(|| q.pop().map(|e| e.0)).collect();
        assert_eq!(order, [1, 2, 1, 1]);
    }

    #[test]
    fn ending_drops_the_backlog_and_makes_taken_events_stale() {
        let mut q = InputQueue::default();
        for _ in 0..100 {
            q.push(7, InputEvent::Text("a".repeat(30)));
        }
        q.push(8, key("KeyZ", true));
        // The injector took one and is typing it when the viewer is removed.
        let (source, generation, _) = q.pop().unwrap();
        assert_eq!(source, 7);
        assert!(q.is_current(7, generation));
        q.end(7);
        assert!(
            !q.is_current(7, generation),
            "taken before the end: not injected"
        );
        assert_eq!(q.refused(), 99);
        // What is left for 7: only the release; 8 is untouched.
        let rest: Vec<(u64, InputEvent)> =
            std::iter::from_fn(|| q.pop().map(|e| (e.0, e.2))).collect();
        assert_eq!(rest, [(8, key("KeyZ", true)), (7, InputEvent::ReleaseAll)]);
        // An ended viewer is forgotten once released; if it comes back (control granted
        // again) it starts afresh, and the stale generation stays stale.
        assert!(q.is_empty());
        assert!(q.push(7, key("KeyA", true)));
        let (_, g2, _) = q.pop().unwrap();
        assert!(q.is_current(7, g2));
        assert_ne!(g2, generation);
        assert!(!q.is_current(7, generation));
    }

    #[test]
    fn ending_an_idle_viewer_queues_one_release() {
        let mut q = InputQueue::default();
        q.end(3);
        q.end(3);
        assert_eq!(q.len(), 1);
        assert_eq!(q.pop().map(|e| e.2), Some(InputEvent::ReleaseAll));
        assert!(q.pop().is_none());
        assert!(q.is_empty());
    }

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
