//! Entry points for the fuzz targets in `net/fuzz` (one per parser of untrusted input),
//! also used by `net/tests/fuzz_corpora.rs` to replay each target's corpus under
//! `cargo test`. Each must never panic on any input; the asserts inside are the
//! properties each target checks.

use crate::protocol::{self, ClipboardAssembler, Message};

/// The message types of protocol version 1 (each data-channel message kind).
pub const MESSAGE_TYPES: [u8; 11] = [
    0x01, 0x02, 0x03, 0x04, 0x05, 0x06, 0x10, 0x11, 0x12, 0x13, 0x20,
];

/// Target `decode`: any bytes through the decoder; what decodes encodes back the same.
pub fn decode(data: &[u8]) {
    protocol::fuzz_decode(data);
}

/// Target `message_kinds`: the first byte picks one of the message types, the rest is its
/// payload, so every kind gets the same share of the fuzzer's effort (with `decode`,
/// most inputs die at the version or type byte).
pub fn message_kinds(data: &[u8]) {
    let Some((&pick, payload)) = data.split_first() else {
        return;
    };
    let kind = MESSAGE_TYPES[usize::from(pick) % MESSAGE_TYPES.len()];
    let mut bytes = Vec::with_capacity(payload.len() + 2);
    bytes.extend_from_slice(&[protocol::VERSION, kind]);
    bytes.extend_from_slice(payload);
    if let Ok(msg) = Message::decode(&bytes) {
        assert_eq!(msg.type_byte(), kind);
        assert_eq!(msg.encode(), Ok(bytes), "decode/encode round trip");
    }
}

/// Largest transfer the `clipboard` target's assembler takes (small, so transfers complete).
pub const FUZZ_CLIPBOARD_MAX: u32 = 4096;

/// Target `clipboard`: a sequence of data-channel messages (`[len: u16 LE][bytes]`…),
/// decoded, and every `ClipboardData` fed to one `ClipboardAssembler`, as the host's gate
/// and the native viewer do. A completed transfer has exactly its announced size, within
/// the cap, UTF-8 when it says text, and splits back into chunks that reassemble to it.
pub fn clipboard(data: &[u8]) {
    let mut assembler = ClipboardAssembler::new(FUZZ_CLIPBOARD_MAX);
    let mut rest = data;
    while let Some((len, tail)) = rest.split_first_chunk::<2>() {
        let len = usize::from(u16::from_le_bytes(*len)).min(tail.len());
        let (bytes, tail) = tail.split_at(len);
        rest = tail;
        let Ok(Message::ClipboardData {
            transfer,
            mime,
            total,
            offset,
            data,
        }) = Message::decode(bytes)
        else {
            continue;
        };
        if let Ok(Some((done_mime, content))) = assembler.push(transfer, mime, total, offset, &data)
        {
            assert_eq!(done_mime, mime);
            assert_eq!(content.len(), total as usize, "announced size");
            assert!(
                content.len() <= FUZZ_CLIPBOARD_MAX as usize,
                "within the cap"
            );
            if mime == crate::Mime::Text {
                assert!(std::str::from_utf8(&content).is_ok());
            }
            let mut again = ClipboardAssembler::new(FUZZ_CLIPBOARD_MAX);
            let mut out = None;
            for chunk in protocol::clipboard_chunks(transfer, mime, &content) {
                let Message::ClipboardData {
                    transfer,
                    mime,
                    total,
                    offset,
                    data,
                } = chunk
                else {
                    unreachable!("clipboard_chunks makes ClipboardData");
                };
                out = again.push(transfer, mime, total, offset, &data).unwrap();
            }
            assert_eq!(out, Some((mime, content)), "chunks reassemble");
        }
    }
}

/// Target `sdp`: what the share does with an offer before webrtc-rs negotiates (the
/// loopback-candidate filter for remote viewers, `peer::parse_offer`), and what the
/// client does with an answer (`parse_whep_response`'s checks, webrtc-rs's parse, the
/// audio check).
pub fn sdp(data: &[u8]) {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let filtered = crate::peer::without_loopback_candidates(text);
    assert!(filtered.len() <= text.len());
    assert!(
        filtered
            .split_inclusive('\n')
            .all(|l| text.split_inclusive('\n').any(|t| t == l)),
        "the filter only drops lines"
    );
    let _ = crate::peer::parse_offer(filtered);
    let _ = crate::peer::parse_offer(text.to_owned());
    let _ = crate::client::answer_sends_audio(text);
    crate::client::fuzz_whep_response(
        &[201, 0, b'/', b'w', b'h', b'e', b'p', b'/', b'x', 0]
            .iter()
            .copied()
            .chain(data.iter().copied())
            .collect::<Vec<u8>>(),
    );
}

/// Target `whep_response`: the client's handling of a share's HTTP answer (status,
/// Location, body) and of a pasted link (`ShareUrl::parse`).
pub fn whep_response(data: &[u8]) {
    crate::client::fuzz_whep_response(data);
}

/// A fuzz target's entry point.
pub type Target = fn(&[u8]);

/// Every target by name, for the corpus replay.
pub const TARGETS: [(&str, Target); 5] = [
    ("decode", decode),
    ("message_kinds", message_kinds),
    ("clipboard", clipboard),
    ("sdp", sdp),
    ("whep_response", whep_response),
];
