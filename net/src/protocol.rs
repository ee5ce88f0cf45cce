//! The data-channel wire protocol, version 1: the single definition of every message.
//! The specification with byte layouts is `docs/protocol.md`; test vectors shared with the
//! browser are in `tests/protocol-vectors.json`.
//!
//! Longer than our usual ~600 lines on purpose: every message's layout, encode, decode and
//! checks are kept side by side with the clipboard reassembly they feed, as in the spec, so
//! that a change to one is seen next to the others (a third of the file is the tests that
//! replay the shared vectors).
//!
//! ```text
//! byte 0: version (1)   byte 1: type   bytes 2..: payload (little-endian, no padding)
//! ```

use serde::{Deserialize, Serialize};

pub const VERSION: u8 = 1;
pub const MAX_KEY_CODE_LEN: usize = 32;
pub const MAX_TEXT_LEN: usize = 1024;
pub const MAX_CURSOR_SIDE: u16 = 256;
/// Clipboard bytes carried by one `ClipboardData` chunk at most.
pub const CLIPBOARD_CHUNK: usize = 16 * 1024;
/// Monitors a `Monitors` message lists at most (and `SelectMonitor` indexes below).
pub const MAX_MONITORS: usize = 16;
/// Bytes of a monitor's name at most.
pub const MAX_MONITOR_NAME: usize = 64;
/// `MaxBitrate` limits (kbit/s) other than 0 (no limit) lie in this range.
pub const MAX_BITRATE_RANGE: std::ops::RangeInclusive<u32> = 100..=1_000_000;

/// One monitor of the host, as `Monitors` lists it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct MonitorEntry {
    /// The desktop's name for it (RandR's output or monitor name), 0 to 64 bytes.
    pub name: String,
    /// Where it sits on the host's desktop, pixels.
    pub x: i32,
    pub y: i32,
    pub width: u16,
    pub height: u16,
    pub primary: bool,
}

pub mod rights {
    pub const VIEW: u8 = 1;
    pub const CONTROL: u8 = 2;
    pub const CLIPBOARD: u8 = 4;
}

/// Clipboard content types.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Mime {
    /// `text/plain;charset=utf-8`
    Text,
    /// `image/png`
    Png,
}

impl Mime {
    fn to_byte(self) -> u8 {
        match self {
            Mime::Text => 1,
            Mime::Png => 2,
        }
    }
    fn from_byte(b: u8) -> Option<Self> {
        match b {
            1 => Some(Mime::Text),
            2 => Some(Mime::Png),
            _ => None,
        }
    }
    pub fn as_str(self) -> &'static str {
        match self {
            Mime::Text => "text/plain;charset=utf-8",
            Mime::Png => "image/png",
        }
    }
}

/// Notice codes (host → viewer).
pub mod notice {
    pub const CLIPBOARD_TOO_LARGE: u8 = 1;
    pub const NOT_ALLOWED: u8 = 2;
    pub const RATE_LIMITED: u8 = 3;
    pub const MALFORMED: u8 = 4;
    /// The host ended this viewer's session (its last message).
    pub const REMOVED: u8 = 5;
    /// The host stopped sharing (its last message).
    pub const HOST_STOPPED: u8 = 6;
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "type")]
pub enum Message {
    /// 0x01, viewer → host, `pointer` channel: absolute pointer position.
    PointerMove { x: u16, y: u16 },
    /// 0x02, viewer → host: button 0 left, 1 middle, 2 right, 3 back, 4 forward.
    PointerButton {
        button: u8,
        pressed: bool,
        x: u16,
        y: u16,
    },
    /// 0x03, viewer → host: deltas in 1/120 notch; positive dy scrolls down.
    Wheel { dx: i16, dy: i16 },
    /// 0x04, viewer → host: a physical key (DOM `KeyboardEvent.code`).
    Key { pressed: bool, code: String },
    /// 0x05, viewer → host: characters to type.
    Text { text: String },
    /// 0x06, viewer → host: release every held key and button.
    ReleaseAll,
    /// 0x07, viewer → host, `input` channel: a view-only viewer asks the host for control.
    RequestControl,
    /// 0x08, viewer → host: share monitor `index` of the host's `Monitors` list (needs
    /// control: every viewer sees the monitor shared).
    SelectMonitor { index: u8 },
    /// 0x09, viewer → host: take this viewer's path as carrying at most `kbps` kbit/s
    /// (0: no limit); the page's and the native viewer's quality presets.
    MaxBitrate { kbps: u32 },
    /// 0x10, host → viewer, `pointer` channel.
    CursorPosition { x: u16, y: u16, visible: bool },
    /// 0x11, host → viewer: cursor image, straight RGBA.
    CursorShape {
        hot_x: u16,
        hot_y: u16,
        width: u16,
        height: u16,
        rgba: Vec<u8>,
    },
    /// 0x12, host → viewer: the viewer's rights and the clipboard cap.
    Rights { rights: u8, clipboard_max: u32 },
    /// 0x13, host → viewer: something to show the user.
    Notice {
        code: u8,
        transfer: u32,
        text: String,
    },
    /// 0x14, host → viewer: the host's monitors and which one is shared.
    Monitors {
        current: u8,
        monitors: Vec<MonitorEntry>,
    },
    /// 0x20, both ways, `clipboard` channel: one chunk of a clipboard transfer.
    ClipboardData {
        transfer: u32,
        mime: Mime,
        total: u32,
        offset: u32,
        data: Vec<u8>,
    },
}

/// Why a message was refused.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error, Serialize, Deserialize)]
pub enum DecodeError {
    #[error("empty message")]
    Empty,
    #[error("unsupported protocol version {0}")]
    UnsupportedVersion(u8),
    #[error("unknown message type 0x{0:02x}")]
    UnknownType(u8),
    #[error("message too short")]
    Truncated,
    #[error("unexpected bytes after the message")]
    TrailingBytes,
    #[error("field {0} is out of range")]
    OutOfRange(&'static str),
    #[error("key code is not 1-32 ASCII letters and digits")]
    BadKeyCode,
    #[error("text is not 1-1024 bytes of UTF-8 without NUL")]
    BadText,
    #[error("cursor image size or pixels are wrong")]
    BadCursor,
    #[error("clipboard chunk goes past the transfer's total")]
    BadChunk,
    #[error("monitor list is empty, too long, or a name is not 0-64 bytes of UTF-8")]
    BadMonitors,
}

/// Why `encode` refused a message: one that `decode` would refuse for the same reason
/// (the variants are `DecodeError`'s, by name; `assets/protocol.js` uses the same names).
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
pub enum EncodeError {
    #[error("field {0} is out of range")]
    OutOfRange(&'static str),
    #[error("key code is not 1-32 ASCII letters and digits")]
    BadKeyCode,
    #[error("text is not 1-1024 bytes (Notice: 0-1024) without NUL")]
    BadText,
    #[error("cursor image size, hotspot or pixels are wrong")]
    BadCursor,
    #[error("clipboard chunk is over 16 KiB or goes past the transfer's total")]
    BadChunk,
    #[error("monitor list is empty, over 16, or a name is not 0-64 bytes without NUL")]
    BadMonitors,
}

/// The type byte of each message.
impl Message {
    pub fn type_byte(&self) -> u8 {
        match self {
            Message::PointerMove { .. } => 0x01,
            Message::PointerButton { .. } => 0x02,
            Message::Wheel { .. } => 0x03,
            Message::Key { .. } => 0x04,
            Message::Text { .. } => 0x05,
            Message::ReleaseAll => 0x06,
            Message::RequestControl => 0x07,
            Message::SelectMonitor { .. } => 0x08,
            Message::MaxBitrate { .. } => 0x09,
            Message::CursorPosition { .. } => 0x10,
            Message::CursorShape { .. } => 0x11,
            Message::Rights { .. } => 0x12,
            Message::Notice { .. } => 0x13,
            Message::Monitors { .. } => 0x14,
            Message::ClipboardData { .. } => 0x20,
        }
    }
}

/// The data channels, by label.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Channel {
    Pointer,
    Input,
    Clipboard,
}

impl Channel {
    pub fn from_label(label: &str) -> Option<Self> {
        match label {
            "pointer" => Some(Channel::Pointer),
            "input" => Some(Channel::Input),
            "clipboard" => Some(Channel::Clipboard),
            _ => None,
        }
    }
    pub fn label(self) -> &'static str {
        match self {
            Channel::Pointer => "pointer",
            Channel::Input => "input",
            Channel::Clipboard => "clipboard",
        }
    }
}

impl Message {
    /// The channel this message must travel on.
    pub fn channel(&self) -> Channel {
        match self {
            Message::PointerMove { .. } | Message::CursorPosition { .. } => Channel::Pointer,
            Message::ClipboardData { .. } => Channel::Clipboard,
            _ => Channel::Input,
        }
    }

    /// Whether the message may arrive on `ch`: its own channel, and also `clipboard` for a
    /// `Notice` (the host reports clipboard refusals there). Anything else is refused, so
    /// that, say, a key can never travel on the lossy channel.
    pub fn allowed_on(&self, ch: Channel) -> bool {
        self.channel() == ch || (matches!(self, Message::Notice { .. }) && ch == Channel::Clipboard)
    }

    /// Encodes the message, or refuses one that would not decode (a 2000-byte text, a
    /// key code with a space, a chunk past its total...) with the reason `decode` would
    /// give, so that whatever encodes is valid on the wire. Messages built by `decode` or
    /// by `clipboard_chunks` always encode.
    pub fn encode(&self) -> Result<Vec<u8>, EncodeError> {
        self.check()?;
        let mut b = vec![VERSION, self.type_byte()];
        match self {
            Message::PointerMove { x, y } => {
                b.extend(x.to_le_bytes());
                b.extend(y.to_le_bytes());
            }
            Message::PointerButton {
                button,
                pressed,
                x,
                y,
            } => {
                b.push(*button);
                b.push(u8::from(*pressed));
                b.extend(x.to_le_bytes());
                b.extend(y.to_le_bytes());
            }
            Message::Wheel { dx, dy } => {
                b.extend(dx.to_le_bytes());
                b.extend(dy.to_le_bytes());
            }
            Message::Key { pressed, code } => {
                b.push(u8::from(*pressed));
                b.push(narrow(code.len()));
                b.extend(code.as_bytes());
            }
            Message::Text { text } => {
                b.extend(narrow::<u16>(text.len()).to_le_bytes());
                b.extend(text.as_bytes());
            }
            Message::ReleaseAll | Message::RequestControl => {}
            Message::SelectMonitor { index } => b.push(*index),
            Message::MaxBitrate { kbps } => b.extend(kbps.to_le_bytes()),
            Message::Monitors { current, monitors } => {
                b.push(*current);
                b.push(narrow(monitors.len()));
                for m in monitors {
                    b.extend(m.x.to_le_bytes());
                    b.extend(m.y.to_le_bytes());
                    b.extend(m.width.to_le_bytes());
                    b.extend(m.height.to_le_bytes());
                    b.push(u8::from(m.primary));
                    b.push(narrow(m.name.len()));
                    b.extend(m.name.as_bytes());
                }
            }
            Message::CursorPosition { x, y, visible } => {
                b.extend(x.to_le_bytes());
                b.extend(y.to_le_bytes());
                b.push(u8::from(*visible));
            }
            Message::CursorShape {
                hot_x,
                hot_y,
                width,
                height,
                rgba,
            } => {
                for v in [hot_x, hot_y, width, height] {
                    b.extend(v.to_le_bytes());
                }
                b.extend(rgba);
            }
            Message::Rights {
                rights,
                clipboard_max,
            } => {
                b.push(*rights);
                b.extend(clipboard_max.to_le_bytes());
            }
            Message::Notice {
                code,
                transfer,
                text,
            } => {
                b.push(*code);
                b.extend(transfer.to_le_bytes());
                b.extend(narrow::<u16>(text.len()).to_le_bytes());
                b.extend(text.as_bytes());
            }
            Message::ClipboardData {
                transfer,
                mime,
                total,
                offset,
                data,
            } => {
                b.extend(transfer.to_le_bytes());
                b.push(mime.to_byte());
                b.extend(total.to_le_bytes());
                b.extend(offset.to_le_bytes());
                b.extend(data);
            }
        }
        Ok(b)
    }

    /// The checks `decode` makes on the fields, in its order, as `encode` needs them.
    fn check(&self) -> Result<(), EncodeError> {
        match self {
            Message::PointerButton { button, .. } if *button > 4 => {
                Err(EncodeError::OutOfRange("button"))
            }
            Message::Key { code, .. }
                if !(1..=MAX_KEY_CODE_LEN).contains(&code.len())
                    || !code.bytes().all(|c| c.is_ascii_alphanumeric()) =>
            {
                Err(EncodeError::BadKeyCode)
            }
            Message::Text { text } if !text_ok(text.as_bytes(), 1) => Err(EncodeError::BadText),
            Message::CursorShape {
                hot_x,
                hot_y,
                width,
                height,
                rgba,
            } if !(1..=MAX_CURSOR_SIDE).contains(width)
                || !(1..=MAX_CURSOR_SIDE).contains(height)
                || hot_x >= width
                || hot_y >= height
                || rgba.len() != usize::from(*width) * usize::from(*height) * 4 =>
            {
                Err(EncodeError::BadCursor)
            }
            Message::Rights { rights, .. }
                if rights & !(rights::VIEW | rights::CONTROL | rights::CLIPBOARD) != 0 =>
            {
                Err(EncodeError::OutOfRange("rights"))
            }
            Message::Notice { text, .. } if !text_ok(text.as_bytes(), 0) => {
                Err(EncodeError::BadText)
            }
            Message::SelectMonitor { index } if usize::from(*index) >= MAX_MONITORS => {
                Err(EncodeError::OutOfRange("index"))
            }
            Message::MaxBitrate { kbps } if *kbps != 0 && !MAX_BITRATE_RANGE.contains(kbps) => {
                Err(EncodeError::OutOfRange("kbps"))
            }
            Message::Monitors { current, monitors } => check_monitors(*current, monitors),
            Message::ClipboardData {
                total,
                offset,
                data,
                ..
            } if !chunk_fits(*total, *offset, data.len()) => Err(EncodeError::BadChunk),
            _ => Ok(()),
        }
    }

    /// Decodes one data-channel message.
    pub fn decode(bytes: &[u8]) -> Result<Message, DecodeError> {
        let mut r = Reader(bytes);
        let version = r.u8().map_err(|_| DecodeError::Empty)?;
        if version != VERSION {
            return Err(DecodeError::UnsupportedVersion(version));
        }
        let kind = r.u8()?;
        let msg = match kind {
            0x01 => Message::PointerMove {
                x: r.u16()?,
                y: r.u16()?,
            },
            0x02 => {
                let button = r.u8()?;
                let pressed = r.bool("pressed")?;
                let (x, y) = (r.u16()?, r.u16()?);
                if button > 4 {
                    return Err(DecodeError::OutOfRange("button"));
                }
                Message::PointerButton {
                    button,
                    pressed,
                    x,
                    y,
                }
            }
            0x03 => Message::Wheel {
                dx: r.i16()?,
                dy: r.i16()?,
            },
            0x04 => {
                let pressed = r.bool("pressed")?;
                let len = usize::from(r.u8()?);
                let code = r.take(len)?;
                if !(1..=MAX_KEY_CODE_LEN).contains(&len)
                    || !code.iter().all(u8::is_ascii_alphanumeric)
                {
                    return Err(DecodeError::BadKeyCode);
                }
                Message::Key {
                    pressed,
                    code: String::from_utf8(code.to_vec()).map_err(|_| DecodeError::BadKeyCode)?,
                }
            }
            0x05 => {
                let len = usize::from(r.u16()?);
                let text = r.take(len)?;
                Message::Text {
                    text: checked_text(text, 1)?,
                }
            }
            0x06 => Message::ReleaseAll,
            0x07 => Message::RequestControl,
            0x08 => {
                let index = r.u8()?;
                if usize::from(index) >= MAX_MONITORS {
                    return Err(DecodeError::OutOfRange("index"));
                }
                Message::SelectMonitor { index }
            }
            0x09 => {
                let kbps = r.u32()?;
                if kbps != 0 && !MAX_BITRATE_RANGE.contains(&kbps) {
                    return Err(DecodeError::OutOfRange("kbps"));
                }
                Message::MaxBitrate { kbps }
            }
            0x14 => {
                let current = r.u8()?;
                let count = usize::from(r.u8()?);
                if !(1..=MAX_MONITORS).contains(&count) {
                    return Err(DecodeError::BadMonitors);
                }
                let mut monitors = Vec::with_capacity(count);
                for _ in 0..count {
                    let (x, y) = (r.i32()?, r.i32()?);
                    let (width, height) = (r.u16()?, r.u16()?);
                    let primary = r.bool("primary")?;
                    let len = usize::from(r.u8()?);
                    let name = r.take(len)?;
                    if !name_ok(name) {
                        return Err(DecodeError::BadMonitors);
                    }
                    monitors.push(MonitorEntry {
                        name: String::from_utf8(name.to_vec())
                            .map_err(|_| DecodeError::BadMonitors)?,
                        x,
                        y,
                        width,
                        height,
                        primary,
                    });
                }
                if usize::from(current) >= count {
                    return Err(DecodeError::OutOfRange("current"));
                }
                if monitors.iter().any(|m| m.width == 0 || m.height == 0) {
                    return Err(DecodeError::OutOfRange("size"));
                }
                Message::Monitors { current, monitors }
            }
            0x10 => Message::CursorPosition {
                x: r.u16()?,
                y: r.u16()?,
                visible: r.bool("visible")?,
            },
            0x11 => {
                let (hot_x, hot_y, width, height) = (r.u16()?, r.u16()?, r.u16()?, r.u16()?);
                if !(1..=MAX_CURSOR_SIDE).contains(&width)
                    || !(1..=MAX_CURSOR_SIDE).contains(&height)
                    || hot_x >= width
                    || hot_y >= height
                {
                    return Err(DecodeError::BadCursor);
                }
                let n = usize::from(width) * usize::from(height) * 4;
                let rgba = r.rest();
                if rgba.len() != n {
                    return Err(DecodeError::BadCursor);
                }
                Message::CursorShape {
                    hot_x,
                    hot_y,
                    width,
                    height,
                    rgba: rgba.to_vec(),
                }
            }
            0x12 => {
                let rights = r.u8()?;
                if rights & !(rights::VIEW | rights::CONTROL | rights::CLIPBOARD) != 0 {
                    return Err(DecodeError::OutOfRange("rights"));
                }
                Message::Rights {
                    rights,
                    clipboard_max: r.u32()?,
                }
            }
            0x13 => {
                let code = r.u8()?;
                let transfer = r.u32()?;
                let len = usize::from(r.u16()?);
                let text = r.take(len)?;
                Message::Notice {
                    code,
                    transfer,
                    text: checked_text(text, 0)?,
                }
            }
            0x20 => {
                let transfer = r.u32()?;
                let mime = Mime::from_byte(r.u8()?).ok_or(DecodeError::OutOfRange("mime"))?;
                let (total, offset) = (r.u32()?, r.u32()?);
                let data = r.rest();
                if !chunk_fits(total, offset, data.len()) {
                    return Err(DecodeError::BadChunk);
                }
                Message::ClipboardData {
                    transfer,
                    mime,
                    total,
                    offset,
                    data: data.to_vec(),
                }
            }
            other => return Err(DecodeError::UnknownType(other)),
        };
        if !r.0.is_empty() {
            return Err(DecodeError::TrailingBytes);
        }
        Ok(msg)
    }
}

fn checked_text(bytes: &[u8], min: usize) -> Result<String, DecodeError> {
    if !text_ok(bytes, min) {
        return Err(DecodeError::BadText);
    }
    String::from_utf8(bytes.to_vec()).map_err(|_| DecodeError::BadText)
}

/// `min` to `MAX_TEXT_LEN` bytes without NUL (UTF-8 is checked where bytes become text).
/// A monitor name: 0 to 64 bytes of UTF-8 without NUL.
fn name_ok(bytes: &[u8]) -> bool {
    bytes.len() <= MAX_MONITOR_NAME && !bytes.contains(&0) && std::str::from_utf8(bytes).is_ok()
}

/// `decode`'s checks of a `Monitors` message, in its order.
fn check_monitors(current: u8, monitors: &[MonitorEntry]) -> Result<(), EncodeError> {
    if !(1..=MAX_MONITORS).contains(&monitors.len())
        || monitors.iter().any(|m| !name_ok(m.name.as_bytes()))
    {
        return Err(EncodeError::BadMonitors);
    }
    if usize::from(current) >= monitors.len() {
        return Err(EncodeError::OutOfRange("current"));
    }
    if monitors.iter().any(|m| m.width == 0 || m.height == 0) {
        return Err(EncodeError::OutOfRange("size"));
    }
    Ok(())
}

fn text_ok(bytes: &[u8], min: usize) -> bool {
    (min..=MAX_TEXT_LEN).contains(&bytes.len()) && !bytes.contains(&0)
}

/// A chunk of at most `CLIPBOARD_CHUNK` bytes that ends at or before `total`.
fn chunk_fits(total: u32, offset: u32, len: usize) -> bool {
    len <= CLIPBOARD_CHUNK && u64::from(offset) + len as u64 <= u64::from(total)
}

/// A length `check` has bounded, in its field's width.
fn narrow<T: TryFrom<usize>>(len: usize) -> T
where
    T::Error: std::fmt::Debug,
{
    T::try_from(len).expect("length checked by Message::check")
}

struct Reader<'a>(&'a [u8]);

impl<'a> Reader<'a> {
    fn take(&mut self, n: usize) -> Result<&'a [u8], DecodeError> {
        if self.0.len() < n {
            return Err(DecodeError::Truncated);
        }
        let (head, tail) = self.0.split_at(n);
        self.0 = tail;
        Ok(head)
    }
    fn rest(&mut self) -> &'a [u8] {
        std::mem::take(&mut self.0)
    }
    fn u8(&mut self) -> Result<u8, DecodeError> {
        Ok(self.take(1)?[0])
    }
    fn bool(&mut self, field: &'static str) -> Result<bool, DecodeError> {
        match self.u8()? {
            0 => Ok(false),
            1 => Ok(true),
            _ => Err(DecodeError::OutOfRange(field)),
        }
    }
    fn u16(&mut self) -> Result<u16, DecodeError> {
        Ok(u16::from_le_bytes(self.take(2)?.try_into().unwrap()))
    }
    fn i32(&mut self) -> Result<i32, DecodeError> {
        Ok(self.u32()? as i32)
    }
    fn i16(&mut self) -> Result<i16, DecodeError> {
        Ok(i16::from_le_bytes(self.take(2)?.try_into().unwrap()))
    }
    fn u32(&mut self) -> Result<u32, DecodeError> {
        Ok(u32::from_le_bytes(self.take(4)?.try_into().unwrap()))
    }
}

/// Splits clipboard content into `ClipboardData` chunks.
pub fn clipboard_chunks(transfer: u32, mime: Mime, content: &[u8]) -> Vec<Message> {
    let total = content.len() as u32;
    if content.is_empty() {
        return vec![Message::ClipboardData {
            transfer,
            mime,
            total: 0,
            offset: 0,
            data: vec![],
        }];
    }
    content
        .chunks(CLIPBOARD_CHUNK)
        .enumerate()
        .map(|(i, chunk)| Message::ClipboardData {
            transfer,
            mime,
            total,
            offset: (i * CLIPBOARD_CHUNK) as u32,
            data: chunk.to_vec(),
        })
        .collect()
}

/// Why `ClipboardAssembler::push` refused a chunk (and with it its transfer). The names
/// are those of `assets/protocol.js`'s ClipboardAssembler errors.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
pub enum AssemblyError {
    /// The transfer's `total` is over the receiver's cap (refused at its first chunk).
    #[error("clipboard transfer {transfer} of {total} bytes is over the cap of {max}")]
    TooLarge { transfer: u32, total: u32, max: u32 },
    /// A chunk that is neither the next chunk of the open transfer nor the first chunk of
    /// a new one: a gap, a repeat, an overlap, another transfer's chunk, a changed `mime`
    /// or `total`, a first chunk repeated.
    #[error("clipboard chunk of transfer {transfer} does not continue the open transfer")]
    BadSequence { transfer: u32 },
    /// A chunk over 16 KiB, past its total, or empty in a transfer that is not.
    #[error("clipboard chunk of transfer {transfer} is empty, over 16 KiB or past its total")]
    BadChunk { transfer: u32 },
    /// A complete `text` transfer that is not UTF-8.
    #[error("clipboard text of transfer {transfer} is not UTF-8")]
    BadText { transfer: u32 },
}

impl AssemblyError {
    /// The transfer the refused chunk belongs to.
    pub fn transfer(&self) -> u32 {
        match *self {
            AssemblyError::TooLarge { transfer, .. }
            | AssemblyError::BadSequence { transfer }
            | AssemblyError::BadChunk { transfer }
            | AssemblyError::BadText { transfer } => transfer,
        }
    }
}

/// The transfer being received.
#[derive(Debug)]
struct Open {
    transfer: u32,
    mime: Mime,
    total: u32,
    data: Vec<u8>,
}

/// Reassembles `ClipboardData` chunks into whole transfers, with a size cap. Used by both
/// ends: the host's gate and the native viewer. The rules (docs/protocol.md, "Clipboard
/// reassembly"; the same in `assets/protocol.js`): one transfer at a time, its chunks in
/// order; a first chunk (`offset` 0) of another transfer abandons the open one; any
/// other chunk that does not continue the open transfer is refused and abandons it; a
/// refused transfer's later chunks are dropped quietly.
#[derive(Debug)]
pub struct ClipboardAssembler {
    max: u32,
    open: Option<Open>,
    /// The last refused or abandoned transfer, whose later chunks are dropped quietly.
    dropping: Option<u32>,
}

impl ClipboardAssembler {
    pub fn new(max: u32) -> Self {
        Self {
            max,
            open: None,
            dropping: None,
        }
    }

    pub fn max(&self) -> u32 {
        self.max
    }

    /// Takes one chunk; `Ok(Some(..))` when its transfer is complete, `Ok(None)` when it is
    /// not yet, or when the chunk belongs to a refused transfer (dropped quietly).
    pub fn push(
        &mut self,
        transfer: u32,
        mime: Mime,
        total: u32,
        offset: u32,
        data: &[u8],
    ) -> Result<Option<(Mime, Vec<u8>)>, AssemblyError> {
        let mut open = match self.open.take() {
            Some(open) if offset == 0 && open.transfer == transfer => {
                return Err(self.refuse(AssemblyError::BadSequence { transfer }));
            }
            _ if offset == 0 => {
                self.dropping = None;
                if total > self.max {
                    return Err(self.refuse(AssemblyError::TooLarge {
                        transfer,
                        total,
                        max: self.max,
                    }));
                }
                Open {
                    transfer,
                    mime,
                    total,
                    data: Vec::with_capacity(total as usize),
                }
            }
            None if self.dropping == Some(transfer) => return Ok(None),
            None => return Err(AssemblyError::BadSequence { transfer }),
            Some(open) => {
                if open.transfer != transfer
                    || open.mime != mime
                    || open.total != total
                    || open.data.len() != offset as usize
                {
                    self.dropping = Some(open.transfer);
                    return Err(AssemblyError::BadSequence { transfer });
                }
                open
            }
        };
        if !chunk_fits(total, offset, data.len()) || (data.is_empty() && total > 0) {
            return Err(self.refuse(AssemblyError::BadChunk { transfer }));
        }
        open.data.extend_from_slice(data);
        if open.data.len() < total as usize {
            self.open = Some(open);
            return Ok(None);
        }
        if open.mime == Mime::Text && std::str::from_utf8(&open.data).is_err() {
            return Err(self.refuse(AssemblyError::BadText { transfer }));
        }
        Ok(Some((open.mime, open.data)))
    }

    /// Refuses the chunk's transfer: nothing is open, its later chunks are dropped.
    fn refuse(&mut self, e: AssemblyError) -> AssemblyError {
        self.open = None;
        self.dropping = Some(e.transfer());
        e
    }
}

/// Entry point for fuzzing: decoding must never panic, and whatever decodes must
/// re-encode to the same bytes.
pub fn fuzz_decode(data: &[u8]) {
    if let Ok(msg) = Message::decode(data) {
        assert_eq!(msg.encode(), Ok(data.to_vec()), "decode/encode round trip");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Deserialize)]
    struct Vectors {
        valid: Vec<Valid>,
        invalid: Vec<Invalid>,
        reassembly: Vec<Reassembly>,
        encode_invalid: Vec<EncodeInvalid>,
        encode_limits: Vec<EncodeLimit>,
        channels: Vec<ChannelCase>,
    }
    #[derive(Deserialize)]
    struct ChannelCase {
        #[serde(rename = "type")]
        kind: String,
        hex: String,
        on: Vec<String>,
    }
    #[derive(Deserialize)]
    struct Reassembly {
        name: String,
        max: u32,
        steps: Vec<Step>,
    }
    #[derive(Deserialize)]
    struct Step {
        chunk: Message,
        expect: Option<Expect>,
    }
    #[derive(Debug, Deserialize, PartialEq)]
    #[serde(rename_all = "snake_case")]
    enum Expect {
        Done {
            transfer: u32,
            mime: Mime,
            data: Vec<u8>,
        },
        Error(String),
    }
    #[derive(Deserialize)]
    struct EncodeInvalid {
        name: String,
        message: Message,
        error: String,
    }
    #[derive(Deserialize)]
    struct EncodeLimit {
        name: String,
        message: Message,
    }

    /// The variant's name of an error's `Debug` form (`BadSequence { transfer: 1 }`).
    fn variant(err: &impl std::fmt::Debug) -> String {
        format!("{err:?}")
            .split(|c: char| !c.is_ascii_alphanumeric())
            .next()
            .unwrap_or_default()
            .to_owned()
    }

    /// `{"repeat": string or byte array, "times": n}` in a vector stands for it repeated.
    fn expand(v: serde_json::Value) -> serde_json::Value {
        use serde_json::Value;
        match v {
            Value::Object(m) if m.len() == 2 && m.contains_key("repeat") => {
                let times = m["times"].as_u64().expect("times") as usize;
                match &m["repeat"] {
                    Value::String(s) => Value::String(s.repeat(times)),
                    Value::Array(a) => {
                        Value::Array(a.iter().cycle().take(a.len() * times).cloned().collect())
                    }
                    other => panic!("cannot repeat {other}"),
                }
            }
            Value::Object(m) => Value::Object(m.into_iter().map(|(k, v)| (k, expand(v))).collect()),
            Value::Array(a) => Value::Array(a.into_iter().map(expand).collect()),
            other => other,
        }
    }
    #[derive(Deserialize)]
    struct Valid {
        name: String,
        hex: String,
        message: Message,
    }
    #[derive(Deserialize)]
    struct Invalid {
        name: String,
        hex: String,
        error: String,
    }

    fn unhex(s: &str) -> Vec<u8> {
        let s: String = s.chars().filter(|c| !c.is_whitespace()).collect();
        (0..s.len())
            .step_by(2)
            .map(|i| u8::from_str_radix(&s[i..i + 2], 16).unwrap())
            .collect()
    }

    fn vectors() -> Vectors {
        let path = concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/../tests/protocol-vectors.json"
        );
        let raw = serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap();
        serde_json::from_value(expand(raw)).unwrap()
    }

    #[test]
    fn shared_vectors_decode_and_encode() {
        let v = vectors();
        assert!(v.valid.len() >= 12, "every message type has a vector");
        for case in &v.valid {
            let bytes = unhex(&case.hex);
            assert_eq!(
                Message::decode(&bytes).as_ref(),
                Ok(&case.message),
                "{}",
                case.name
            );
            assert_eq!(case.message.encode(), Ok(bytes), "{}", case.name);
        }
        let types: std::collections::HashSet<u8> =
            v.valid.iter().map(|c| c.message.type_byte()).collect();
        assert_eq!(types.len(), 15, "all 15 message types are covered");
    }

    #[test]
    fn shared_invalid_vectors_are_refused_for_the_stated_reason() {
        let v = vectors();
        assert!(v.invalid.len() >= 10);
        for case in &v.invalid {
            let err = Message::decode(&unhex(&case.hex)).expect_err(&case.name);
            let name = format!("{err:?}");
            assert!(
                name.starts_with(&case.error),
                "{}: got {name}, want {}",
                case.name,
                case.error
            );
        }
    }

    #[test]
    fn shared_encode_invalid_vectors_are_refused_for_the_stated_reason() {
        let v = vectors();
        assert!(v.encode_invalid.len() >= 20);
        for case in &v.encode_invalid {
            let Err(err) = case.message.encode() else {
                panic!("{}: encoded, want {}", case.name, case.error);
            };
            assert_eq!(variant(&err), case.error, "{}: got {err:?}", case.name);
        }
    }

    #[test]
    fn shared_encode_limit_vectors_encode_and_decode_back() {
        let v = vectors();
        assert!(v.encode_limits.len() >= 7);
        for case in &v.encode_limits {
            let bytes = case.message.encode().expect(&case.name);
            assert_eq!(
                Message::decode(&bytes),
                Ok(case.message.clone()),
                "{}",
                case.name
            );
        }
    }

    #[test]
    fn shared_reassembly_vectors_have_the_stated_outcome() {
        let v = vectors();
        assert!(v.reassembly.len() >= 25);
        for case in &v.reassembly {
            let mut asm = ClipboardAssembler::new(case.max);
            for (i, step) in case.steps.iter().enumerate() {
                let Message::ClipboardData {
                    transfer,
                    mime,
                    total,
                    offset,
                    data,
                } = &step.chunk
                else {
                    panic!("{}: chunk {i} is not ClipboardData", case.name);
                };
                let got = match asm.push(*transfer, *mime, *total, *offset, data) {
                    Ok(None) => None,
                    Ok(Some((mime, data))) => Some(Expect::Done {
                        transfer: *transfer,
                        mime,
                        data,
                    }),
                    Err(e) => {
                        assert_eq!(e.transfer(), *transfer, "{}, chunk {i}", case.name);
                        Some(Expect::Error(variant(&e)))
                    }
                };
                assert_eq!(got, step.expect, "{}, chunk {i}", case.name);
            }
        }
    }

    #[test]
    fn clipboard_chunks_reassemble() {
        let content: Vec<u8> = (0..40_000u32).map(|i| i as u8).collect();
        let chunks = clipboard_chunks(7, Mime::Png, &content);
        assert_eq!(chunks.len(), 3);
        let mut out = Vec::new();
        for c in &chunks {
            let bytes = c.encode().unwrap();
            match Message::decode(&bytes).unwrap() {
                Message::ClipboardData {
                    offset,
                    data,
                    total,
                    ..
                } => {
                    assert_eq!(offset as usize, out.len());
                    assert_eq!(total, 40_000);
                    out.extend(data);
                }
                other => panic!("{other:?}"),
            }
        }
        assert_eq!(out, content);
        assert_eq!(clipboard_chunks(1, Mime::Text, b"").len(), 1);
    }

    #[test]
    fn shared_channel_vectors_say_where_each_message_may_arrive() {
        let v = vectors();
        let mut kinds = std::collections::HashSet::new();
        for case in &v.channels {
            let msg = Message::decode(&unhex(&case.hex)).expect(&case.kind);
            kinds.insert(msg.type_byte());
            for ch in [Channel::Pointer, Channel::Input, Channel::Clipboard] {
                let expected = case.on.iter().any(|l| l == ch.label());
                assert_eq!(
                    msg.allowed_on(ch),
                    expected,
                    "{} on {}",
                    case.kind,
                    ch.label()
                );
            }
        }
        assert_eq!(kinds.len(), 15, "every message type has a channel case");
    }

    #[test]
    fn channels_are_assigned_by_reliability() {
        assert_eq!(
            Message::PointerMove { x: 0, y: 0 }.channel(),
            Channel::Pointer
        );
        assert_eq!(
            Message::Key {
                pressed: true,
                code: "KeyA".into()
            }
            .channel(),
            Channel::Input
        );
        assert_eq!(Message::ReleaseAll.channel(), Channel::Input);
        assert_eq!(Channel::from_label("clipboard"), Some(Channel::Clipboard));
        assert_eq!(Channel::from_label("other"), None);
    }

    #[test]
    fn corpus_replay_never_panics() {
        // The fuzz target's corpus (net/fuzz/corpus/decode) replayed through the same entry
        // point, plus every prefix and single-byte mutation of the shared vectors.
        let dir = concat!(env!("CARGO_MANIFEST_DIR"), "/fuzz/corpus/decode");
        // A missing corpus fails the test (it would otherwise pass on the vectors alone).
        let mut inputs: Vec<Vec<u8>> = std::fs::read_dir(dir)
            .unwrap_or_else(|e| panic!("the fuzz corpus {dir} is missing: {e}"))
            .map(|e| std::fs::read(e.unwrap().path()).unwrap())
            .collect();
        assert!(inputs.len() >= 10, "the fuzz corpus {dir} is nearly empty");
        let v = vectors();
        for hex in v
            .valid
            .iter()
            .map(|c| &c.hex)
            .chain(v.invalid.iter().map(|c| &c.hex))
        {
            let bytes = unhex(hex);
            for n in 0..=bytes.len() {
                inputs.push(bytes[..n].to_vec());
            }
            for i in 0..bytes.len() {
                for delta in [1u8, 0x7f, 0xff] {
                    let mut m = bytes.clone();
                    m[i] = m[i].wrapping_add(delta);
                    inputs.push(m);
                }
            }
        }
        assert!(inputs.len() > 500);
        for input in &inputs {
            fuzz_decode(input);
        }
    }
}
