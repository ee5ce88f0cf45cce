//! The gate every viewer message passes: decode, channel check, rights check, rate limit,
//! clipboard reassembly with its cap. Pure (sans-IO): it takes bytes and the time, and
//! returns what to do; it never touches a socket, a display or a clock.

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
    /// A chunk out of order, or text that is not UTF-8.
    BadClipboard(&'static str),
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
        if let Some(last) = self.last {
            let dt = now.saturating_duration_since(last).as_secs_f64();
            self.tokens = (self.tokens + dt * self.rate).min(self.burst);
        }
        self.last = Some(now);
        if self.tokens >= 1.0 {
            self.tokens -= 1.0;
            true
        } else {
            false
        }
    }
}

/// Messages a second (and bursts) one viewer may send on each channel.
pub const POINTER_RATE: (f64, f64) = (1000.0, 1000.0);
pub const INPUT_RATE: (f64, f64) = (300.0, 600.0);
pub const CLIPBOARD_CHUNK_RATE: (f64, f64) = (4000.0, 4000.0);
/// Notices of the same kind are sent at most this often.
pub const NOTICE_INTERVAL: Duration = Duration::from_secs(5);

/// One viewer's gate.
pub struct Gate {
    pointer: TokenBucket,
    input: TokenBucket,
    clipboard: TokenBucket,
    assembler: ClipboardAssembler,
}

impl Gate {
    pub fn new(clipboard_max: u32) -> Self {
        Self {
            pointer: TokenBucket::new(POINTER_RATE.0, POINTER_RATE.1),
            input: TokenBucket::new(INPUT_RATE.0, INPUT_RATE.1),
            clipboard: TokenBucket::new(CLIPBOARD_CHUNK_RATE.0, CLIPBOARD_CHUNK_RATE.1),
            assembler: ClipboardAssembler::new(clipboard_max),
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
        if msg.channel() != channel || !is_from_viewer(&msg) {
            return Err(Refusal::WrongChannel(msg.type_byte()));
        }
        let bucket = match channel {
            Channel::Pointer => &mut self.pointer,
            Channel::Input => &mut self.input,
            Channel::Clipboard => &mut self.clipboard,
        };
        // Releases are never rate-limited: dropping one would leave a key or button stuck.
        if !is_release(&msg) && !bucket.take(now) {
            return Err(Refusal::RateLimited);
        }
        match msg {
            Message::ReleaseAll => Ok(Some(Action::Inject(msg))),
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
            _ if !rights.control => Err(Refusal::NotAllowed { right: "control" }),
            other => Ok(Some(Action::Inject(other))),
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
            Err(AssemblyError::Bad(why)) => Err(Refusal::BadClipboard(why)),
        }
    }
}

fn is_release(msg: &Message) -> bool {
    matches!(
        msg,
        Message::ReleaseAll
            | Message::Key { pressed: false, .. }
            | Message::PointerButton { pressed: false, .. }
    )
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
        let mv = Message::PointerMove { x: 1, y: 2 }.encode();
        assert!(g.handle(Channel::Pointer, &mv, VIEW, now).is_err());
        assert_eq!(
            g.handle(Channel::Input, &Message::ReleaseAll.encode(), VIEW, now),
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
        .encode();
        assert_eq!(
            g.handle(Channel::Input, &rights, ALL, now),
            Err(Refusal::WrongChannel(0x12))
        );
        assert_eq!(
            g.handle(Channel::Input, &[1, 0x7f], ALL, now),
            Err(Refusal::Malformed(DecodeError::UnknownType(0x7f)))
        );
    }

    #[test]
    fn floods_are_rate_limited_then_recover() {
        let mut g = Gate::new(1024);
        let t0 = Instant::now();
        let accepted = (0..2000)
            .filter(|_| g.handle(Channel::Input, &key(), ALL, t0).is_ok())
            .count();
        assert_eq!(accepted, INPUT_RATE.1 as usize);
        assert_eq!(
            g.handle(Channel::Input, &key(), ALL, t0),
            Err(Refusal::RateLimited)
        );
        // Releases still pass while the bucket is empty.
        let release = Message::Key {
            pressed: false,
            code: "ShiftLeft".into(),
        }
        .encode();
        assert!(g.handle(Channel::Input, &release, ALL, t0).is_ok());
        assert!(g
            .handle(Channel::Input, &Message::ReleaseAll.encode(), ALL, t0)
            .is_ok());
        assert!(g
            .handle(Channel::Input, &key(), ALL, t0 + Duration::from_millis(100))
            .is_ok());
    }

    #[test]
    fn clipboard_reassembles_and_enforces_the_cap() {
        let mut g = Gate::new(40_000);
        let now = Instant::now();
        let content: Vec<u8> = (0..35_000u32).map(|i| b'a' + (i % 26) as u8).collect();
        let chunks = clipboard_chunks(5, Mime::Text, &content);
        let mut result = None;
        for c in &chunks {
            result = g.handle(Channel::Clipboard, &c.encode(), ALL, now).unwrap();
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
        let first = g.handle(Channel::Clipboard, &chunks[0].encode(), ALL, now);
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
                g.handle(Channel::Clipboard, &c.encode(), ALL, now),
                Ok(None)
            );
        }
        // And the gate still works afterwards.
        let small = clipboard_chunks(7, Mime::Text, b"ok");
        assert_eq!(
            g.handle(Channel::Clipboard, &small[0].encode(), ALL, now),
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
        let chunk = clipboard_chunks(1, Mime::Text, b"hi")[0].encode();
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
        .encode();
        assert!(matches!(
            g.handle(Channel::Clipboard, &orphan, ALL, now),
            Err(Refusal::BadClipboard(_))
        ));
        let bad_utf8 = clipboard_chunks(2, Mime::Text, &[0xff, 0xfe])[0].encode();
        assert!(matches!(
            g.handle(Channel::Clipboard, &bad_utf8, ALL, now),
            Err(Refusal::BadClipboard(_))
        ));
    }
}
