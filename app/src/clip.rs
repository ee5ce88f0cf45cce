//! Clipboard content between `media` (the host clipboard's [`ClipContent`]) and `net` (a
//! MIME type and bytes on the wire): one mapping for the sharing and the viewing side.

use media::clipboard::ClipContent;
use net::Mime;

/// `content` as the protocol carries it.
pub fn to_wire(content: &ClipContent) -> (Mime, Vec<u8>) {
    match content {
        ClipContent::Text(t) => (Mime::Text, t.as_bytes().to_vec()),
        ClipContent::Png(p) => (Mime::Png, p.clone()),
    }
}

/// What arrived as `mime` and `data`, as clipboard content; `None` for text that is not
/// UTF-8. A PNG is taken as it is: its size is checked by whoever decodes it.
pub fn from_wire(mime: Mime, data: Vec<u8>) -> Option<ClipContent> {
    match mime {
        Mime::Text => String::from_utf8(data).ok().map(ClipContent::Text),
        Mime::Png => Some(ClipContent::Png(data)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn content_round_trips_and_broken_text_is_dropped() {
        for content in [
            ClipContent::Text("héllo".into()),
            ClipContent::Png(vec![0x89, b'P']),
        ] {
            let (mime, data) = to_wire(&content);
            assert_eq!(from_wire(mime, data), Some(content));
        }
        assert_eq!(from_wire(Mime::Text, vec![0xff, 0xfe]), None);
    }
}
