//! What a share's WHEP answer says: the session, the SDP, its MAC, or why it refused.

use super::*;

/// Whether an SDP answer has an audio section that will carry media to us.
pub fn answer_sends_audio(sdp: &str) -> bool {
    let mut in_audio = false;
    let mut port_open = false;
    for line in sdp.lines() {
        if let Some(m) = line.strip_prefix("m=") {
            if in_audio && port_open {
                return true;
            }
            let mut parts = m.split_whitespace();
            in_audio = parts.next() == Some("audio");
            port_open = parts.next().is_some_and(|p| p != "0");
            continue;
        }
        if in_audio && (line.starts_with("a=inactive") || line.starts_with("a=recvonly")) {
            port_open = false;
        }
    }
    in_audio && port_open
}

/// What a share's `201 Created` WHEP answer carries.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct WhepAnswer {
    pub sdp: String,
    /// The session's resource (`/whep/ID`), for the DELETE that ends it.
    pub session: String,
    pub has_audio: bool,
}

/// At most this much of a refusal's text is shown (it comes from the host).
pub(crate) const MAX_REFUSAL_CHARS: usize = 300;

/// Judges a share's answer to the WHEP POST: `status`, its `Location` header (raw bytes)
/// and its body (already bounded by `HttpLimits::max_body`). A 201 must carry an SDP
/// answer and a `/whep/ID` location; anything else is a refusal, whose text (the host's,
/// shown to the user) is cut short and stripped of control characters. `Link` headers
/// are not read: the client takes its ICE servers from nobody but its own user.
pub fn parse_whep_response(
    authority: &str,
    status: u16,
    location: Option<&[u8]>,
    body: &[u8],
) -> Result<WhepAnswer, ClientError> {
    let bad = |why: &str| ClientError::BadAnswer(authority.to_owned(), why.to_owned());
    if status != 201 {
        return Err(refusal(status, body));
    }
    let session = location
        .and_then(|l| std::str::from_utf8(l).ok())
        .filter(|l| is_session_path(l))
        .ok_or_else(|| bad("no usable Location (/whep/ID) for the session"))?
        .to_owned();
    let sdp = std::str::from_utf8(body).map_err(|_| bad("the answer is not UTF-8 text"))?;
    if !sdp.starts_with("v=0") {
        return Err(bad("the answer is not SDP (it must start with v=0)"));
    }
    Ok(WhepAnswer {
        has_audio: answer_sends_audio(sdp),
        sdp: sdp.to_owned(),
        session,
    })
}

/// What a refusal from the share (any status but the one expected) means to the user: its
/// text (the host's) is cut short and stripped of control characters.
pub(super) fn refusal(status: u16, body: &[u8]) -> ClientError {
    let text = String::from_utf8_lossy(body);
    match status {
        401 => ClientError::WrongCode,
        403 if text.contains("not the share you were given") => ClientError::NotTheShare,
        s => ClientError::Refused(
            s,
            text.trim()
                .chars()
                .map(|c| if c.is_control() { ' ' } else { c })
                .take(MAX_REFUSAL_CHARS)
                .collect(),
        ),
    }
}

/// `/whep/` and 1-128 characters of `[A-Za-z0-9_-]`: where the DELETE may go.
pub(super) fn is_session_path(path: &str) -> bool {
    path.strip_prefix("/whep/").is_some_and(|id| {
        (1..=128).contains(&id.len())
            && id
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
    })
}

/// Entry point for fuzzing the client's handling of a share's HTTP answer: `data` is a
/// status (2 bytes), a Location header and a body separated by the first NUL. Never
/// panics; what is accepted is a `/whep/` session and an SDP answer that webrtc-rs parses
/// or refuses without panicking.
pub fn fuzz_whep_response(data: &[u8]) {
    let Some((status, rest)) = data.split_first_chunk::<2>() else {
        return;
    };
    let status = u16::from_le_bytes(*status) % 600;
    let (location, body) = match rest.iter().position(|&b| b == 0) {
        Some(i) => (Some(&rest[..i]), &rest[i + 1..]),
        None => (None, rest),
    };
    let _ = ShareUrl::parse(&String::from_utf8_lossy(rest));
    match parse_whep_response("fuzz:1", status, location, body) {
        Ok(answer) => {
            assert!(is_session_path(&answer.session));
            assert!(answer.sdp.starts_with("v=0"));
            let _ = RTCSessionDescription::answer(answer.sdp);
        }
        Err(ClientError::Refused(_, text)) => {
            assert!(text.chars().count() <= MAX_REFUSAL_CHARS);
            assert!(!text.chars().any(char::is_control));
        }
        Err(_) => {}
    }
}
