//! The gate every viewer message passes: decode, channel check, rights check, rate limit,
//! clipboard reassembly with its cap. Pure (sans-IO): it takes bytes and the time, and
//! returns what to do; it never touches a socket, a display or a clock.
//!
//! Rate limits cover every kind of message, releases included: each message costs a token
//! of its channel's bucket and `Text` also costs one token per character. Only two things
//! pass an empty bucket, so that nothing stays pressed on the host: `ReleaseAll`, and the
//! release of a key or button this viewer holds (pressed through this gate and not yet
//! released); a release of anything else is one more message.

use std::collections::HashSet;
use std::time::{Duration, Instant};

use crate::protocol::{
    self, notice, AssemblyError, Channel, ClipboardAssembler, DecodeError, Message, Mime,
};

/// What a viewer may do besides watching.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Rights {
    pub control: bool,
    pub clipboard: bool,
}

impl Rights {
    pub fn bits(self) -> u8 {
        protocol::rights::VIEW
            | if self.control {
                protocol::rights::CONTROL
            } else {
                0
            }
            | if self.clipboard {
                protocol::rights::CLIPBOARD
            } else {
                0
            }
    }
}

/// What the host should do with an accepted message.
#[derive(Debug, PartialEq, Eq)]
pub enum Action {
    /// Inject this control message (PointerMove, PointerButton, Wheel, Key, Text, ReleaseAll).
    Inject(Message),
    /// A complete clipboard transfer for the host clipboard.
    SetClipboard { mime: Mime, data: Vec<u8> },
    /// The viewer asks the host for control (it has none).
    RequestControl,
    /// Share another monitor (an index of the host's `Monitors` list; the viewer has
    /// control).
    SelectMonitor(u8),
    /// Take the viewer's path as carrying at most this many kbit/s (0: no limit).
    MaxBitrate(u32),
}

/// Why a message was not acted on. Each is counted; `notice` says what to tell the viewer.
#[derive(Debug, PartialEq, Eq)]
pub enum Refusal {
    Malformed(DecodeError),
    /// A message on a channel it must not use (e.g. a key on the lossy channel), or a
    /// host-to-viewer message sent by a viewer.
    WrongChannel(u8),
    NotAllowed {
        right: &'static str,
    },
    RateLimited,
    ClipboardTooLarge {
        transfer: u32,
        total: u32,
        max: u32,
    },
    /// A chunk out of sequence or of the wrong size, or text that is not UTF-8.
    BadClipboard(AssemblyError),
}

impl Refusal {
    /// The notice for the viewer, if it should get one.
    pub fn notice(&self) -> Option<Message> {
        let (code, transfer, text) = match self {
            Refusal::ClipboardTooLarge {
                transfer,
                total,
                max,
            } => (
                notice::CLIPBOARD_TOO_LARGE,
                *transfer,
                format!("Clipboard too large: {total} bytes (the host accepts at most {max})"),
            ),
            Refusal::NotAllowed { right } => (
                notice::NOT_ALLOWED,
                0,
                format!("The host has not given you the {right} right"),
            ),
            Refusal::RateLimited => (
                notice::RATE_LIMITED,
                0,
                "Too many messages; some were dropped".to_owned(),
            ),
            // Transfer 0: these notices are throttled (a confused stream is not told of
            // each of its chunks).
            Refusal::BadClipboard(why) => {
                (notice::MALFORMED, 0, format!("Clipboard refused: {why}"))
            }
            Refusal::Malformed(_) | Refusal::WrongChannel(_) => return None,
        };
        Some(Message::Notice {
            code,
            transfer,
            text,
        })
    }
}

/// A token bucket: `rate` tokens a second, at most `burst` saved up.
#[derive(Debug)]
pub struct TokenBucket {
    rate: f64,
    burst: f64,
    tokens: f64,
    last: Option<Instant>,
}

impl TokenBucket {
    pub fn new(rate: f64, burst: f64) -> Self {
        Self {
            rate,
            burst,
            tokens: burst,
            last: None,
        }
    }

    pub fn take(&mut self, now: Instant) -> bool {
        self.take_n(now, 1.0)
    }

    /// Takes `n` tokens at once, or none.
    pub fn take_n(&mut self, now: Instant, n: f64) -> bool {
        self.refill(now);
        if self.tokens >= n {
            self.tokens -= n;
            true
        } else {
            false
        }
    }

    /// Whether `n` tokens are there now (takes none).
    pub fn has(&mut self, now: Instant, n: f64) -> bool {
        self.refill(now);
        self.tokens >= n
    }

    /// Takes `n` tokens, or all there are if fewer: the bucket never goes below empty.
    pub fn drain(&mut self, now: Instant, n: f64) {
        self.refill(now);
        self.tokens = (self.tokens - n).max(0.0);
    }

    fn refill(&mut self, now: Instant) {
        if let Some(last) = self.last {
            let dt = now.saturating_duration_since(last).as_secs_f64();
            self.tokens = (self.tokens + dt * self.rate).min(self.burst);
        }
        self.last = Some(now);
    }
}

/// Messages a second (and bursts) one viewer may send on each channel.
pub const POINTER_RATE: (f64, f64) = (1000.0, 1000.0);
pub const INPUT_RATE: (f64, f64) = (300.0, 600.0);
pub const CLIPBOARD_CHUNK_RATE: (f64, f64) = (4000.0, 4000.0);
/// Characters of `Text` a second (and burst) one viewer may send: typing and IME input,
/// with room for one full-length `Text`.
pub const TEXT_CHAR_RATE: (f64, f64) = (200.0, protocol::MAX_TEXT_LEN as f64);
/// Keys one viewer may hold down at once (a press of one more is refused).
pub const MAX_HELD_KEYS: usize = 32;
/// Requests for control one viewer may make: one at once, one more every 5 s (the host is
/// asked each time).
pub const CONTROL_REQUEST_RATE: (f64, f64) = (0.2, 1.0);
/// Notices of the same kind are sent at most this often.
pub const NOTICE_INTERVAL: Duration = Duration::from_secs(5);

/// One viewer's gate.
pub struct Gate {
    pointer: TokenBucket,
    input: TokenBucket,
    text_chars: TokenBucket,
    clipboard: TokenBucket,
    control_requests: TokenBucket,
    assembler: ClipboardAssembler,
    /// Keys (DOM codes) and buttons (bit per index) this viewer pressed and has not
    /// released, as far as this gate let through.
    held_keys: HashSet<String>,
    held_buttons: u8,
}

impl Gate {
    pub fn new(clipboard_max: u32) -> Self {
        Self {
            pointer: TokenBucket::new(POINTER_RATE.0, POINTER_RATE.1),
            input: TokenBucket::new(INPUT_RATE.0, INPUT_RATE.1),
            text_chars: TokenBucket::new(TEXT_CHAR_RATE.0, TEXT_CHAR_RATE.1),
            clipboard: TokenBucket::new(CLIPBOARD_CHUNK_RATE.0, CLIPBOARD_CHUNK_RATE.1),
            control_requests: TokenBucket::new(CONTROL_REQUEST_RATE.0, CONTROL_REQUEST_RATE.1),
            assembler: ClipboardAssembler::new(clipboard_max),
            held_keys: HashSet::new(),
            held_buttons: 0,
        }
    }

    /// Whether this viewer holds something down (as far as this gate knows).
    pub fn holds_anything(&self) -> bool {
        !self.held_keys.is_empty() || self.held_buttons != 0
    }

    /// The host released everything of this viewer (control revoked, input ended).
    pub fn forget_held(&mut self) {
        self.held_keys.clear();
        self.held_buttons = 0;
    }

    /// A release of something this viewer holds.
    fn releases_held(&self, msg: &Message) -> bool {
        match msg {
            Message::Key {
                pressed: false,
                code,
            } => self.held_keys.contains(code),
            Message::PointerButton {
                pressed: false,
                button,
                ..
            } => self.held_buttons & button_bit(*button) != 0,
            _ => false,
        }
    }

    /// Notes what an injected message presses or releases.
    fn track(&mut self, msg: &Message) {
        match msg {
            Message::Key {
                pressed: true,
                code,
            } => {
                self.held_keys.insert(code.clone());
            }
            Message::Key {
                pressed: false,
                code,
            } => {
                self.held_keys.remove(code);
            }
            Message::PointerButton {
                pressed, button, ..
            } => {
                if *pressed {
                    self.held_buttons |= button_bit(*button);
                } else {
                    self.held_buttons &= !button_bit(*button);
                }
            }
            Message::ReleaseAll => self.forget_held(),
            _ => {}
        }
    }

    pub fn clipboard_max(&self) -> u32 {
        self.assembler.max()
    }

    /// Handles one message from the viewer, arriving on `channel` with the viewer's
    /// current `rights`. `Ok(None)`: accepted, nothing to do yet (a clipboard chunk).
    pub fn handle(
        &mut self,
        channel: Channel,
        bytes: &[u8],
        rights: Rights,
        now: Instant,
    ) -> Result<Option<Action>, Refusal> {
        let msg = Message::decode(bytes).map_err(Refusal::Malformed)?;
        if !msg.allowed_on(channel) || !is_from_viewer(&msg) {
            return Err(Refusal::WrongChannel(msg.type_byte()));
        }
        if let Message::ReleaseAll = msg {
            // Always accepted: it only ever lets go.
            self.forget_held();
            return Ok(Some(Action::Inject(msg)));
        }
        if let Message::RequestControl = msg {
            // Any viewer may ask; one that has control has nothing to ask for.
            if rights.control {
                return Ok(None);
            }
            if !self.control_requests.take(now) {
                return Err(Refusal::RateLimited);
            }
            return Ok(Some(Action::RequestControl));
        }
        if !rights.control {
            // The host released everything when control went (or never came).
            self.forget_held();
        }
        // Letting go of what the viewer holds is never refused: a key would stay down.
        let held_release = rights.control && self.releases_held(&msg);
        let bucket = match channel {
            Channel::Pointer => &mut self.pointer,
            Channel::Input => &mut self.input,
            Channel::Clipboard => &mut self.clipboard,
        };
        if !held_release {
            let chars = match &msg {
                Message::Text { text } => text.chars().count() as f64,
                _ => 0.0,
            };
            let now_ok = bucket.has(now, 1.0) && self.text_chars.has(now, chars);
            if !now_ok {
                return Err(Refusal::RateLimited);
            }
            bucket.take_n(now, 1.0);
            self.text_chars.take_n(now, chars);
        }
        match msg {
            Message::ClipboardData { .. } if !rights.clipboard => {
                Err(Refusal::NotAllowed { right: "clipboard" })
            }
            Message::ClipboardData {
                transfer,
                mime,
                total,
                offset,
                data,
            } => self.clipboard_chunk(transfer, mime, total, offset, data),
            // About what this viewer receives: view is enough.
            Message::MaxBitrate { kbps } => Ok(Some(Action::MaxBitrate(kbps))),
            _ if !rights.control => Err(Refusal::NotAllowed { right: "control" }),
            Message::SelectMonitor { index } => Ok(Some(Action::SelectMonitor(index))),
            Message::Key {
                pressed: true,
                ref code,
            } if self.held_keys.len() >= MAX_HELD_KEYS && !self.held_keys.contains(code) => {
                Err(Refusal::RateLimited)
            }
            other => {
                self.track(&other);
                Ok(Some(Action::Inject(other)))
            }
        }
    }

    fn clipboard_chunk(
        &mut self,
        transfer: u32,
        mime: Mime,
        total: u32,
        offset: u32,
        data: Vec<u8>,
    ) -> Result<Option<Action>, Refusal> {
        match self.assembler.push(transfer, mime, total, offset, &data) {
            Ok(Some((mime, data))) => Ok(Some(Action::SetClipboard { mime, data })),
            Ok(None) => Ok(None),
            Err(AssemblyError::TooLarge {
                transfer,
                total,
                max,
            }) => Err(Refusal::ClipboardTooLarge {
                transfer,
                total,
                max,
            }),
            Err(e) => Err(Refusal::BadClipboard(e)),
        }
    }
}

fn button_bit(button: u8) -> u8 {
    1u8.checked_shl(u32::from(button)).unwrap_or(0)
}

fn is_from_viewer(msg: &Message) -> bool {
    matches!(
        msg,
        Message::PointerMove { .. }
            | Message::PointerButton { .. }
            | Message::Wheel { .. }
            | Message::Key { .. }
            | Message::Text { .. }
            | Message::ReleaseAll
            | Message::RequestControl
            | Message::SelectMonitor { .. }
            | Message::MaxBitrate { .. }
            | Message::ClipboardData { .. }
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::protocol::clipboard_chunks;

    const ALL: Rights = Rights {
        control: true,
        clipboard: true,
    };
    const VIEW: Rights = Rights {
        control: false,
        clipboard: false,
    };

    fn key() -> Vec<u8> {
        Message::Key {
            pressed: true,
            code: "KeyA".into(),
        }
        .encode()
        .unwrap()
    }

    #[test]
    fn switching_monitors_needs_control_and_a_rate_limit_needs_only_view() {
        let mut g = Gate::new(1024);
        let now = Instant::now();
        let select = Message::SelectMonitor { index: 1 }.encode().unwrap();
        let limit = Message::MaxBitrate { kbps: 1000 }.encode().unwrap();
        assert_eq!(
            g.handle(Channel::Input, &select, VIEW, now),
            Err(Refusal::NotAllowed { right: "control" })
        );
        assert_eq!(
            g.handle(Channel::Input, &select, ALL, now),
            Ok(Some(Action::SelectMonitor(1)))
        );
        assert_eq!(
            g.handle(Channel::Input, &limit, VIEW, now),
            Ok(Some(Action::MaxBitrate(1000)))
        );
        assert_eq!(
            g.handle(Channel::Pointer, &select, ALL, now),
            Err(Refusal::WrongChannel(0x08)),
            "never on the lossy channel"
        );
        // Host-to-viewer messages are refused from a viewer.
        let list = Message::Monitors {
            current: 0,
            monitors: vec![crate::protocol::MonitorEntry {
                name: "A".into(),
                x: 0,
                y: 0,
                width: 640,
                height: 480,
                primary: true,
            }],
        }
        .encode()
        .unwrap();
        assert_eq!(
            g.handle(Channel::Input, &list, ALL, now),
            Err(Refusal::WrongChannel(0x14))
        );
    }

    #[test]
    fn any_viewer_may_ask_for_control_now_and_then() {
        let mut g = Gate::new(1024);
        let now = Instant::now();
        let ask = Message::RequestControl.encode().unwrap();
        assert_eq!(
            g.handle(Channel::Input, &ask, VIEW, now),
            Ok(Some(Action::RequestControl))
        );
        assert_eq!(
            g.handle(Channel::Input, &ask, VIEW, now + Duration::from_secs(1)),
            Err(Refusal::RateLimited),
            "the host is not asked again at once"
        );
        assert_eq!(
            g.handle(Channel::Input, &ask, VIEW, now + Duration::from_secs(6)),
            Ok(Some(Action::RequestControl))
        );
        assert_eq!(
            g.handle(Channel::Input, &ask, ALL, now + Duration::from_secs(20)),
            Ok(None),
            "nothing to ask for with control"
        );
        assert_eq!(
            g.handle(Channel::Pointer, &ask, VIEW, now + Duration::from_secs(30)),
            Err(Refusal::WrongChannel(0x07))
        );
    }

    #[test]
    fn control_needs_the_right_and_release_all_never_does() {
        let mut g = Gate::new(1024);
        let now = Instant::now();
        assert!(matches!(
            g.handle(Channel::Input, &key(), ALL, now),
            Ok(Some(Action::Inject(Message::Key { .. })))
        ));
        assert_eq!(
            g.handle(Channel::Input, &key(), VIEW, now),
            Err(Refusal::NotAllowed { right: "control" })
        );
        let mv = Message::PointerMove { x: 1, y: 2 }.encode().unwrap();
        assert_eq!(
            g.handle(Channel::Pointer, &mv, VIEW, now),
            Err(Refusal::NotAllowed { right: "control" })
        );
        assert_eq!(
            g.handle(
                Channel::Input,
                &Message::ReleaseAll.encode().unwrap(),
                VIEW,
                now
            ),
            Ok(Some(Action::Inject(Message::ReleaseAll)))
        );
    }

    #[test]
    fn messages_on_the_wrong_channel_or_from_the_host_side_are_refused() {
        let mut g = Gate::new(1024);
        let now = Instant::now();
        assert_eq!(
            g.handle(Channel::Pointer, &key(), ALL, now),
            Err(Refusal::WrongChannel(0x04)),
            "a key must never travel on the lossy channel"
        );
        let rights = Message::Rights {
            rights: 7,
            clipboard_max: 1,
        }
        .encode()
        .unwrap();
        assert_eq!(
            g.handle(Channel::Input, &rights, ALL, now),
            Err(Refusal::WrongChannel(0x12))
        );
        assert_eq!(
            g.handle(Channel::Input, &[1, 0x7f], ALL, now),
            Err(Refusal::Malformed(DecodeError::UnknownType(0x7f)))
        );
    }

    fn key_msg(code: &str, pressed: bool) -> Vec<u8> {
        Message::Key {
            pressed,
            code: code.into(),
        }
        .encode()
        .unwrap()
    }

    fn button_msg(button: u8, pressed: bool) -> Vec<u8> {
        Message::PointerButton {
            button,
            pressed,
            x: 100,
            y: 100,
        }
        .encode()
        .unwrap()
    }

    #[test]
    fn floods_are_rate_limited_then_recover() {
        let mut g = Gate::new(1024);
        let t0 = Instant::now();
        // Shift and the left button are down before the flood.
        assert!(g
            .handle(Channel::Input, &key_msg("ShiftLeft", true), ALL, t0)
            .is_ok());
        assert!(g
            .handle(Channel::Input, &button_msg(0, true), ALL, t0)
            .is_ok());
        let wheel = Message::Wheel { dx: 0, dy: 1 }.encode().unwrap();
        let accepted = (0..2000)
            .filter(|_| g.handle(Channel::Input, &wheel, ALL, t0).is_ok())
            .count();
        assert_eq!(accepted, INPUT_RATE.1 as usize - 2);
        assert_eq!(
            g.handle(Channel::Input, &key(), ALL, t0),
            Err(Refusal::RateLimited)
        );
        // What the viewer holds is still let go while the bucket is empty; once.
        let shift_up = key_msg("ShiftLeft", false);
        assert!(g.handle(Channel::Input, &shift_up, ALL, t0).is_ok());
        assert_eq!(
            g.handle(Channel::Input, &shift_up, ALL, t0),
            Err(Refusal::RateLimited),
            "a second release of Shift is no longer a held key's"
        );
        assert!(g
            .handle(Channel::Input, &button_msg(0, false), ALL, t0)
            .is_ok());
        assert!(!g.holds_anything());
        // A release of a key that is not held is input like any other: still limited.
        assert_eq!(
            g.handle(Channel::Input, &key_msg("KeyA", false), ALL, t0),
            Err(Refusal::RateLimited)
        );
        assert!(g
            .handle(
                Channel::Input,
                &Message::ReleaseAll.encode().unwrap(),
                ALL,
                t0
            )
            .is_ok());
        assert!(g
            .handle(Channel::Input, &key(), ALL, t0 + Duration::from_millis(100))
            .is_ok());
    }

    #[test]
    fn releases_of_what_is_not_held_are_rate_limited() {
        // The audit: 20,000 releases went through, and a button release moves the pointer.
        let mut g = Gate::new(1024);
        let t0 = Instant::now();
        let mut accepted = 0;
        for i in 0..20_000u32 {
            let msg = if i % 2 == 0 {
                key_msg("KeyQ", false)
            } else {
                button_msg(2, false)
            };
            accepted += usize::from(g.handle(Channel::Input, &msg, ALL, t0).is_ok());
        }
        assert_eq!(accepted, INPUT_RATE.1 as usize);
        // Over one second: one burst and one second's worth.
        let mut accepted = 0;
        for i in 0..20_000u32 {
            let t = t0 + Duration::from_micros(50 * u64::from(i));
            accepted += usize::from(
                g.handle(Channel::Input, &key_msg("KeyQ", false), ALL, t)
                    .is_ok(),
            );
        }
        assert!(accepted <= INPUT_RATE.0 as usize + 1, "{accepted}");
    }

    #[test]
    fn text_is_limited_in_characters() {
        let mut g = Gate::new(1024);
        let t0 = Instant::now();
        let text = |n: usize| {
            Message::Text {
                text: "é".repeat(n / 2),
            }
            .encode()
            .unwrap()
        };
        // One full-length Text fits the burst, the next waits for the characters.
        let long = Message::Text {
            text: "a".repeat(protocol::MAX_TEXT_LEN),
        }
        .encode()
        .unwrap();
        assert!(g.handle(Channel::Input, &long, ALL, t0).is_ok());
        assert_eq!(
            g.handle(Channel::Input, &text(2), ALL, t0),
            Err(Refusal::RateLimited)
        );
        // A second later: TEXT_CHAR_RATE characters, not more.
        let t1 = t0 + Duration::from_secs(1);
        let mut chars = 0;
        while g.handle(Channel::Input, &text(20), ALL, t1).is_ok() {
            chars += 10;
        }
        assert_eq!(chars, TEXT_CHAR_RATE.0 as usize);
        // Keys have their own budget: typing them is not held up by the text.
        assert!(g.handle(Channel::Input, &key(), ALL, t1).is_ok());
    }

    #[test]
    fn held_keys_are_bounded_and_forgotten_when_control_goes() {
        let mut g = Gate::new(1024);
        let t0 = Instant::now();
        for i in 0..MAX_HELD_KEYS {
            let code = format!("F{i}");
            assert!(g
                .handle(Channel::Input, &key_msg(&code, true), ALL, t0)
                .is_ok());
        }
        assert_eq!(
            g.handle(Channel::Input, &key_msg("KeyZ", true), ALL, t0),
            Err(Refusal::RateLimited)
        );
        // Pressing a held key again (auto-repeat) is fine.
        assert!(g
            .handle(Channel::Input, &key_msg("F3", true), ALL, t0)
            .is_ok());
        // Control revoked: the host released everything, so nothing is "held" any more and
        // a later release costs like any message (and is refused without the right).
        assert_eq!(
            g.handle(Channel::Input, &key_msg("F3", false), VIEW, t0),
            Err(Refusal::NotAllowed { right: "control" })
        );
        assert!(!g.holds_anything());
    }

    #[test]
    fn clipboard_reassembles_and_enforces_the_cap() {
        let mut g = Gate::new(40_000);
        let now = Instant::now();
        let content: Vec<u8> = (0..35_000u32).map(|i| b'a' + (i % 26) as u8).collect();
        let chunks = clipboard_chunks(5, Mime::Text, &content);
        let mut result = None;
        for c in &chunks {
            result = g
                .handle(Channel::Clipboard, &c.encode().unwrap(), ALL, now)
                .unwrap();
        }
        assert_eq!(
            result,
            Some(Action::SetClipboard {
                mime: Mime::Text,
                data: content
            })
        );

        let big = vec![b'x'; 50_000];
        let chunks = clipboard_chunks(6, Mime::Text, &big);
        let first = g.handle(Channel::Clipboard, &chunks[0].encode().unwrap(), ALL, now);
        let refusal = first.unwrap_err();
        assert_eq!(
            refusal,
            Refusal::ClipboardTooLarge {
                transfer: 6,
                total: 50_000,
                max: 40_000
            }
        );
        assert!(matches!(
            refusal.notice(),
            Some(Message::Notice {
                code: 1,
                transfer: 6,
                ..
            })
        ));
        for c in &chunks[1..] {
            assert_eq!(
                g.handle(Channel::Clipboard, &c.encode().unwrap(), ALL, now),
                Ok(None)
            );
        }
        // And the gate still works afterwards.
        let small = clipboard_chunks(7, Mime::Text, b"ok");
        assert_eq!(
            g.handle(Channel::Clipboard, &small[0].encode().unwrap(), ALL, now),
            Ok(Some(Action::SetClipboard {
                mime: Mime::Text,
                data: b"ok".to_vec()
            }))
        );
    }

    #[test]
    fn clipboard_needs_its_right_and_valid_chunks() {
        let mut g = Gate::new(1024);
        let now = Instant::now();
        let chunk = clipboard_chunks(1, Mime::Text, b"hi")[0].encode().unwrap();
        assert_eq!(
            g.handle(Channel::Clipboard, &chunk, VIEW, now),
            Err(Refusal::NotAllowed { right: "clipboard" })
        );
        let orphan = Message::ClipboardData {
            transfer: 9,
            mime: Mime::Text,
            total: 10,
            offset: 5,
            data: b"hello".to_vec(),
        }
        .encode()
        .unwrap();
        assert_eq!(
            g.handle(Channel::Clipboard, &orphan, ALL, now),
            Err(Refusal::BadClipboard(AssemblyError::BadSequence {
                transfer: 9
            }))
        );
        let bad_utf8 = clipboard_chunks(2, Mime::Text, &[0xff, 0xfe])[0]
            .encode()
            .unwrap();
        assert_eq!(
            g.handle(Channel::Clipboard, &bad_utf8, ALL, now),
            Err(Refusal::BadClipboard(AssemblyError::BadText {
                transfer: 2
            }))
        );
    }
}
