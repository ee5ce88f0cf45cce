//! The share's HTTP handlers (see the table in the [`super`] docs). Each only sequences:
//! who is asking is [`auth`]'s, whether and how a viewer gets in is [`admit`]'s, its life
//! after that is [`lifecycle`]'s.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Instant;

use axum::body::{Body, Bytes};
use axum::extract::{ConnectInfo, Path, Request, State};
use axum::http::{header, HeaderMap, HeaderValue, StatusCode, Uri};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};

use super::admit::{self, lock_viewers, Applicant, Reservation};
use super::auth::{self, refuse, Credentials, Signed, Signer};
use super::lifecycle::{self, Ending};
use super::{text, AppState, BODY_READ_TIMEOUT, MAX_OFFER_BYTES};
use crate::assets;
use crate::pairing;
use crate::peer::{IceConfig, PeerError, Viewer};
use crate::stats::Counter;
use webrtc::peer_connection::RTCSessionDescription;

/// Whether the request's `Content-Type` is `mime` (parameters aside).
fn has_content_type(headers: &HeaderMap, mime: &str) -> bool {
    headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .and_then(|t| t.split(';').next())
        .is_some_and(|t| t.trim().eq_ignore_ascii_case(mime))
}

/// Reads a request's body: at most `limit` bytes (else 413, `too_large`) within
/// [`BODY_READ_TIMEOUT`] (else 408, `too_late`).
async fn read_body(
    state: &AppState,
    addr: SocketAddr,
    body: Body,
    limit: usize,
    [too_large, too_late]: [&str; 2],
) -> Result<Bytes, Box<Response>> {
    let (status, message) =
        match tokio::time::timeout(BODY_READ_TIMEOUT, axum::body::to_bytes(body, limit)).await {
            Ok(Ok(body)) => return Ok(body),
            Ok(Err(_)) => (StatusCode::PAYLOAD_TOO_LARGE, too_large),
            Err(_) => (StatusCode::REQUEST_TIMEOUT, too_late),
        };
    Err(Box::new(refuse(state, addr, status, message)))
}

/// Refuses a foreign `Host` (421) and, on POST/DELETE/PATCH, a foreign `Origin` (403).
pub(super) async fn check_host_and_origin(
    State(state): State<Arc<AppState>>,
    request: Request,
    next: Next,
) -> Response {
    match host_or_origin_refusal(&state, &request) {
        Some(refusal) => refusal,
        None => next.run(request).await,
    }
}

fn host_or_origin_refusal(state: &AppState, request: &Request) -> Option<Response> {
    let addr = request
        .extensions()
        .get::<ConnectInfo<SocketAddr>>()
        .map(|c| c.0);
    let header_text = |name: header::HeaderName| {
        request
            .headers()
            .get(name)
            .map(|v| v.to_str().unwrap_or("\u{fffd}"))
    };
    let host = header_text(header::HOST).or(request.uri().authority().map(|a| a.as_str()));
    if let Some(host) = host {
        if !state.hosts.allows_host(host) {
            let shown: String = host.chars().take(100).collect();
            state.counters.add(Counter::WhepRefused);
            tracing::warn!(?addr, host = %shown, "refused a request for a foreign host name (DNS rebinding?)");
            return Some(text(
                StatusCode::MISDIRECTED_REQUEST,
                format!(
                    "this share does not answer to the host name \"{shown}\": open it by its \
                     address, localhost or its .local name (a protection against DNS rebinding)"
                ),
            ));
        }
    }
    let changes_state = matches!(
        *request.method(),
        axum::http::Method::POST | axum::http::Method::DELETE | axum::http::Method::PATCH
    );
    let origin = header_text(header::ORIGIN).filter(|_| changes_state)?;
    if state.hosts.allows_origin(origin, host) {
        return None;
    }
    let shown: String = origin.chars().take(100).collect();
    state.counters.add(Counter::WhepRefused);
    tracing::warn!(?addr, origin = %shown, "refused a cross-origin request");
    Some(text(
        StatusCode::FORBIDDEN,
        format!("cross-origin request refused: a page from \"{shown}\" may not use this share"),
    ))
}

/// `POST /pake`: the share's half of a pairing. Every pairing counts as a guess at the code
/// until a request signed with its keys arrives (a viewer with the wrong code finds out from
/// this reply and sends none).
pub(super) async fn post_pake(
    State(state): State<Arc<AppState>>,
    ConnectInfo(addr): ConnectInfo<SocketAddr>,
    headers: HeaderMap,
    body: Body,
) -> Response {
    if !has_content_type(&headers, "application/json") {
        return refuse(
            &state,
            addr,
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "a pairing request must be sent as Content-Type: application/json",
        );
    }
    // A pairing request is ~70 bytes; it gets what an offer gets, no more.
    let refusals = [
        "a pairing request is larger than 1 KiB",
        "the pairing request did not arrive in time",
    ];
    let body = match read_body(&state, addr, body, 1024, refusals).await {
        Ok(body) => body,
        Err(refusal) => return *refusal,
    };
    let message = serde_json::from_slice::<pairing::PairRequest>(&body)
        .ok()
        .and_then(|r| pairing::decode(&r.message))
        .filter(|m| m.len() == pairing::MESSAGE_LEN);
    let Some(message) = message else {
        return refuse(
            &state,
            addr,
            StatusCode::BAD_REQUEST,
            "a pairing request is JSON {\"message\": <base64 of the 33-byte SPAKE2 message>}",
        );
    };
    let now = Instant::now();
    {
        let mut throttle = state.throttle.lock().unwrap_or_else(|e| e.into_inner());
        if let Err(refusal) = auth::may_guess(&state, addr, &mut throttle, now) {
            return *refusal;
        }
        throttle.handle_wrong(addr.ip(), now);
    }
    let reply = match pake::share_respond(state.config.code.reveal(), &message, rand::random()) {
        Ok(reply) => reply,
        Err(e) => return refuse(&state, addr, StatusCode::BAD_REQUEST, &e.to_string()),
    };
    state.counters.add(Counter::Pairings);
    let id = state
        .pairings
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .insert(reply.keys, now);
    (
        [(header::CACHE_CONTROL, "no-store")],
        axum::Json(pairing::PairReply {
            id,
            message: pairing::encode(&reply.message),
            confirm: pairing::encode(&reply.confirm),
        }),
    )
        .into_response()
}

pub(super) async fn options_whep() -> Response {
    (
        StatusCode::NO_CONTENT,
        [
            (header::ALLOW, "OPTIONS, POST"),
            (
                header::HeaderName::from_static("accept-post"),
                "application/sdp",
            ),
        ],
    )
        .into_response()
}

/// `OPTIONS /whep/ID`: what the resource takes — or `404` when there is no such session
/// any more, which is how a viewer whose connection went quiet finds out that the share
/// gave it up (and makes a new one at once instead of waiting for its ICE to fail).
pub(super) async fn options_session(
    State(state): State<Arc<AppState>>,
    Path(id): Path<String>,
) -> Response {
    if lock_viewers(&state).get(&id).is_none() {
        return text(StatusCode::NOT_FOUND, "no such session");
    }
    (StatusCode::NO_CONTENT, [(header::ALLOW, "OPTIONS, DELETE")]).into_response()
}

/// `POST /whep`: an offer, from a viewer with credentials (checked before its body is
/// read, and against it once read), becomes a viewer: a slot, the host's approval, a peer
/// connection, and the answer signed with its pairing's keys.
pub(super) async fn post_whep(
    State(state): State<Arc<AppState>>,
    credentials: Credentials,
    headers: HeaderMap,
    body: Body,
) -> Response {
    let addr = credentials.addr();
    if !has_content_type(&headers, "application/sdp") {
        return refuse(
            &state,
            addr,
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "the offer must be sent as Content-Type: application/sdp",
        );
    }
    let refusals = [
        "the offer is larger than 64 KiB",
        "the offer did not arrive in time",
    ];
    let body = match read_body(&state, addr, body, MAX_OFFER_BYTES, refusals).await {
        Ok(body) => body,
        Err(refusal) => return *refusal,
    };
    let request = Signed {
        method: "POST",
        path: "/whep",
        body: &body,
    };
    let resuming = headers
        .get(pairing::RESUME_HEADER)
        .and_then(|v| v.to_str().ok());
    let caller = match resuming {
        Some(id) => admit::resume(&state, credentials, id, &request).await,
        None => credentials.authorize(&state, &request, Signer::NewPairing),
    };
    let caller = match caller {
        Ok(caller) => caller,
        Err(refusal) => return *refusal,
    };
    let (offer, ice) = match read_offer(&state, addr, &body) {
        Ok(offer) => offer,
        Err(refusal) => return *refusal,
    };
    // The slot is taken now, before any await, and given back if this viewer fails.
    let Some(reservation) = Reservation::take(&state) else {
        return refuse(
            &state,
            addr,
            StatusCode::SERVICE_UNAVAILABLE,
            "this share has as many viewers as it allows",
        );
    };
    let mut applicant = Applicant::new(&state, caller, addr, &headers);
    if let Err(refusal) = applicant.approve(&state).await {
        return *refusal;
    }
    state.counters.add(Counter::PeerConnectionsCreated);
    let answered = match Viewer::answer(
        offer,
        &ice,
        state.config.identity.as_ref(),
        state.video.clone(),
        state.audio.clone(),
        &state.keyframes,
    )
    .await
    {
        Ok(answered) => answered,
        Err(PeerError::BadOffer(m)) => return refuse(&state, addr, StatusCode::BAD_REQUEST, &m),
        Err(PeerError::Internal(m)) => {
            tracing::error!(%addr, "cannot serve a viewer: {m}");
            return text(StatusCode::INTERNAL_SERVER_ERROR, m);
        }
    };
    let answer = answered.answer.clone();
    let keys = applicant.keys.clone();
    let id = reservation.admit(applicant, answered);
    answer_response(&id, answer, keys.as_deref())
}

/// The offer in `body`, checked (UTF-8 SDP the share can serve), and the ICE settings for
/// it; or the 400 to send. An offer the share cannot serve (no video, no H.264 it takes)
/// is refused now: no peer connection, and the host is not asked about it.
fn read_offer(
    state: &AppState,
    addr: SocketAddr,
    body: &[u8],
) -> Result<(RTCSessionDescription, IceConfig), Box<Response>> {
    let Ok(offer) = String::from_utf8(body.to_vec()) else {
        return Err(Box::new(refuse(
            state,
            addr,
            StatusCode::BAD_REQUEST,
            "the offer is not UTF-8 text",
        )));
    };
    if !offer.trim_start().starts_with("v=0") {
        return Err(Box::new(refuse(
            state,
            addr,
            StatusCode::BAD_REQUEST,
            "the body is not an SDP offer (it must start with v=0)",
        )));
    }
    // A viewer on another machine: no loopback candidates either way.
    let (offer, ice) = if addr.ip().to_canonical().is_loopback() {
        (offer, state.config.ice.clone())
    } else {
        (
            crate::peer::without_loopback_candidates(&offer),
            state.config.ice.for_peer(addr.ip()),
        )
    };
    match crate::peer::parse_offer(offer) {
        Ok(offer) => Ok((offer, ice)),
        Err(e) => Err(Box::new(refuse(
            state,
            addr,
            StatusCode::BAD_REQUEST,
            &e.to_string(),
        ))),
    }
}

/// `201 Created` with the answer, where the session is, and (for a paired viewer) the
/// answer's MAC under its pairing's keys.
fn answer_response(id: &str, answer: String, keys: Option<&pairing::Keys>) -> Response {
    let mac = keys.map(|keys| pairing::encode(&keys.answer_mac(answer.as_bytes())));
    let mut response = (
        StatusCode::CREATED,
        [
            (header::CONTENT_TYPE, "application/sdp".to_owned()),
            (header::LOCATION, format!("/whep/{id}")),
        ],
        answer,
    )
        .into_response();
    if let Some(value) = mac.and_then(|mac| HeaderValue::from_str(&mac).ok()) {
        response
            .headers_mut()
            .insert(pairing::ANSWER_MAC_HEADER, value);
    }
    response
}

/// The name a viewer gave itself (`Porthole-Viewer-Name`, percent-encoded UTF-8): decoded,
/// without control characters, trimmed, at most [`pairing::MAX_NAME_CHARS`] characters.
/// Shown to the host beside what the share knows for sure (number, address, kind); it is
/// not covered by the pairing's MAC, so it is a label, not an identity.
pub fn viewer_name(headers: &HeaderMap) -> Option<String> {
    let raw = headers.get(pairing::NAME_HEADER)?.as_bytes();
    let decoded = percent_encoding::percent_decode(raw).decode_utf8_lossy();
    let name: String = decoded
        .chars()
        .map(|c| if c.is_control() { ' ' } else { c })
        .collect::<String>()
        .split_whitespace()
        .collect::<Vec<_>>()
        .join(" ")
        .chars()
        .take(pairing::MAX_NAME_CHARS)
        .collect();
    (!name.is_empty()).then_some(name)
}

/// `DELETE /whep/ID`: the viewer ends its session. Only the session's own pairing (or, for
/// a bearer viewer, the code) may end it.
pub(super) async fn delete_whep(
    State(state): State<Arc<AppState>>,
    credentials: Credentials,
    Path(id): Path<String>,
) -> Response {
    let addr = credentials.addr();
    let Some(keys) = lock_viewers(&state).get(&id).map(|e| e.keys.clone()) else {
        return text(StatusCode::NOT_FOUND, "no such session");
    };
    let request = Signed {
        method: "DELETE",
        path: &format!("/whep/{id}"),
        body: b"",
    };
    if let Err(refusal) = credentials.authorize(&state, &request, Signer::Session(keys)) {
        return *refusal;
    }
    if lifecycle::remove_viewer(&state, &id, Ending::Quietly).await {
        tracing::info!(%addr, session = %id, "viewer ended its session");
        StatusCode::OK.into_response()
    } else {
        text(StatusCode::NOT_FOUND, "no such session")
    }
}

pub(super) async fn get_asset(uri: Uri) -> Response {
    match assets::find(uri.path()) {
        Some(asset) => (
            [
                (header::CONTENT_TYPE, asset.content_type),
                (header::CACHE_CONTROL, "no-cache"),
                (header::REFERRER_POLICY, "no-referrer"),
                (header::X_CONTENT_TYPE_OPTIONS, "nosniff"),
                (
                    header::CONTENT_SECURITY_POLICY,
                    "default-src 'self'; script-src 'self' 'wasm-unsafe-eval'; img-src 'self' data:; \
                     style-src 'self' 'unsafe-inline'; media-src 'self' blob:; connect-src 'self'; frame-ancestors 'none'",
                ),
            ],
            asset.body,
        )
            .into_response(),
        None => text(StatusCode::NOT_FOUND, "not found"),
    }
}
