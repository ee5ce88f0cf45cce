//! Pairing on the wire (the cryptography is the `pake` crate): the `POST /pake` messages,
//! the share's pending pairings, and the headers of the requests that follow.
//!
//! - `POST /pake`, JSON `{"message": b64}` → `200` JSON `{"id", "message", "confirm"}`.
//! - Later requests: `Authorization: Porthole-PAKE id=<id>, mac=<b64>`, the MAC over the
//!   request's method, path and body (`pake::Keys::request_mac`). A pairing serves one
//!   request (the WHEP offer, or one stats query); the session it starts keeps its keys for
//!   its `DELETE`.
//! - The share's SDP answer: `Porthole-Answer-MAC: <b64>`.

use std::collections::{HashMap, VecDeque};
use std::sync::Arc;
use std::time::{Duration, Instant};

use base64::engine::general_purpose::STANDARD as B64;
use base64::Engine as _;
pub use pake::{Keys, PakeError, ViewerPairing, MAC_LEN, MESSAGE_LEN};

/// The authorization scheme of paired requests.
pub const SCHEME: &str = "Porthole-PAKE";
/// The response header with the share's MAC over its SDP answer.
pub const ANSWER_MAC_HEADER: &str = "porthole-answer-mac";
/// The request header with the name a viewer gives itself (percent-encoded UTF-8; shown to
/// the host, not authenticated: see `server::viewer_name`).
pub const NAME_HEADER: &str = "porthole-viewer-name";
/// Longest viewer name kept, in characters.
pub const MAX_NAME_CHARS: usize = 32;
/// The request header naming the session a viewer resumes (see `server::resume`).
pub const RESUME_HEADER: &str = "porthole-resume";
/// What either side says when a MAC does not verify.
pub const NOT_THE_SHARE: &str = "this connection is not the share you were given the code for: \
     somebody between the viewer and the host changed it (its pairing MAC does not verify)";
/// A pairing not used within this long is forgotten.
pub const PAIRING_TTL: Duration = Duration::from_secs(30);
/// Most pairings waiting for their request; beyond it the oldest is forgotten.
pub const MAX_PENDING: usize = 256;

#[derive(serde::Serialize, serde::Deserialize)]
pub struct PairRequest {
    pub message: String,
}

#[derive(serde::Serialize, serde::Deserialize)]
pub struct PairReply {
    pub id: String,
    pub message: String,
    pub confirm: String,
}

pub fn encode(bytes: &[u8]) -> String {
    B64.encode(bytes)
}

pub fn decode(text: &str) -> Option<Vec<u8>> {
    B64.decode(text.trim()).ok()
}

/// A paired request's credentials, from its `Authorization` header.
#[derive(Debug, PartialEq, Eq)]
pub struct PakeAuth {
    pub id: String,
    pub mac: Vec<u8>,
}

/// Parses `Porthole-PAKE id=<hex>, mac=<b64>` (parameters in any order). `None`: another
/// scheme, or malformed.
pub fn parse_authorization(value: &str) -> Option<PakeAuth> {
    let (scheme, params) = value.trim().split_once(' ')?;
    if !scheme.eq_ignore_ascii_case(SCHEME) {
        return None;
    }
    let (mut id, mut mac) = (None, None);
    for param in params.split(',') {
        let (k, v) = param.trim().split_once('=')?;
        let v = v.trim().trim_matches('"');
        match k.trim() {
            "id" if is_pairing_id(v) => id = Some(v.to_owned()),
            "mac" => mac = decode(v).filter(|m| m.len() == MAC_LEN),
            _ => return None,
        }
    }
    Some(PakeAuth { id: id?, mac: mac? })
}

/// The `Authorization` value of a paired request.
pub fn authorization(id: &str, keys: &Keys, method: &str, path: &str, body: &[u8]) -> String {
    format!(
        "{SCHEME} id={id}, mac={}",
        encode(&keys.request_mac(method, path, body))
    )
}

/// 1-64 hex digits: what the share makes (and all a header or reply may carry).
pub fn is_pairing_id(id: &str) -> bool {
    (1..=64).contains(&id.len()) && id.bytes().all(|b| b.is_ascii_hexdigit())
}

/// The share's pairings waiting for their first request. O(1) per operation (amortised),
/// bounded to [`MAX_PENDING`].
#[derive(Default)]
pub struct Pairings {
    map: HashMap<String, (Arc<Keys>, Instant)>,
    order: VecDeque<(String, Instant)>,
}

impl Pairings {
    fn expire(&mut self, now: Instant) {
        while let Some((id, at)) = self.order.front() {
            if now.saturating_duration_since(*at) < PAIRING_TTL && self.order.len() <= MAX_PENDING {
                break;
            }
            if self.map.get(id).is_some_and(|(_, t)| t == at) {
                self.map.remove(id);
            }
            self.order.pop_front();
        }
    }

    /// Keeps `keys` for one request; returns the pairing's id.
    pub fn insert(&mut self, keys: Keys, now: Instant) -> String {
        let bytes: [u8; 16] = rand::random();
        let id: String = bytes.iter().map(|b| format!("{b:02x}")).collect();
        self.map.insert(id.clone(), (Arc::new(keys), now));
        self.order.push_back((id.clone(), now));
        self.expire(now);
        id
    }

    /// Takes a pairing's keys (each pairing serves one request).
    pub fn take(&mut self, id: &str, now: Instant) -> Option<Arc<Keys>> {
        self.expire(now);
        self.map.remove(id).map(|(keys, _)| keys)
    }

    pub fn len(&self) -> usize {
        self.map.len()
    }

    pub fn is_empty(&self) -> bool {
        self.map.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn keys() -> Keys {
        let viewer = ViewerPairing::start("12345678", [1; 32]);
        pake::share_respond("12345678", viewer.message(), [2; 32])
            .unwrap()
            .keys
    }

    #[test]
    fn authorization_round_trips_and_refuses_junk() {
        let keys = keys();
        let value = authorization("0a1b", &keys, "POST", "/whep", b"v=0");
        let auth = parse_authorization(&value).unwrap();
        assert_eq!(auth.id, "0a1b");
        assert!(keys.verify_request("POST", "/whep", b"v=0", &auth.mac));
        for junk in [
            "Bearer abc",
            "Porthole-PAKE id=0a1b",
            "Porthole-PAKE mac=AAAA",
            "Porthole-PAKE id=xyz!, mac=AAAA",
            "Porthole-PAKE id=0a1b, mac=AAAA",
            "Porthole-PAKE id=0a1b, mac=%%%",
            "Porthole-PAKE id=0a1b, other=1",
            "",
        ] {
            assert_eq!(parse_authorization(junk), None, "{junk}");
        }
    }

    #[test]
    fn a_pairing_serves_one_request_and_expires() {
        let mut p = Pairings::default();
        let t0 = Instant::now();
        let a = p.insert(keys(), t0);
        let b = p.insert(keys(), t0);
        assert!(p.take(&a, t0).is_some());
        assert!(p.take(&a, t0).is_none(), "used once");
        assert!(p.take(&b, t0 + PAIRING_TTL).is_none(), "expired");
        assert!(p.is_empty());
    }

    #[test]
    fn pending_pairings_are_bounded() {
        let mut p = Pairings::default();
        let t0 = Instant::now();
        let first = p.insert(keys(), t0);
        for _ in 0..MAX_PENDING {
            p.insert(keys(), t0);
        }
        assert_eq!(p.len(), MAX_PENDING);
        assert!(p.take(&first, t0).is_none(), "the oldest went first");
    }
}
