//! The server's handlers through its router, with a mock connection address: refusals
//! (status, reason, counters) and admissions, signed as viewers sign. Helpers here; the
//! tests of credentials in `auth`, of offers and sessions in `whep`.

mod auth;
mod whep;

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Instant;

use axum::body::Body;
use axum::extract::connect_info::MockConnectInfo;
use axum::http::{header, HeaderMap, HeaderValue, Request, StatusCode};
use axum::Router;
use http_body_util::BodyExt;
use tower::ServiceExt;

use super::*;
use crate::pairing::{self, Keys};

const CODE: &str = "right-code-1";

const SDP: (&str, &str) = ("content-type", "application/sdp");
const JSON: (&str, &str) = ("content-type", "application/json");

pub(super) fn state() -> Arc<AppState> {
    let video = MediaFanout::video(Instant::now(), Arc::new(|| {}));
    let config = ShareConfig {
        listen: SocketAddr::from(([127, 0, 0, 1], 0)),
        code: AccessCode::parse(CODE).unwrap(),
        ice: IceConfig {
            servers: vec![],
            udp_addrs: vec!["127.0.0.1:0".into()],
        },
        max_viewers: 2,
        media_stats: Arc::new(|| vec![("frames_encoded", 7)]),
        host: Arc::new(crate::session::ViewOnlyHost),
        events: HostEvents::new(),
        default_rights: Rights::default(),
        clipboard_max: 1024,
        approve: None,
        identity: None,
        allow_token: false,
        code_expiry: None,
    };
    Arc::new(AppState::new(
        config,
        video,
        None,
        origin::HostPolicy::new(Some("desk")),
    ))
}

pub(super) fn app(state: &Arc<AppState>) -> Router {
    router(state.clone()).layer(MockConnectInfo(SocketAddr::from(([127, 0, 0, 1], 5000))))
}

pub(super) async fn send(
    state: &Arc<AppState>,
    method: &str,
    uri: &str,
    headers: &[(&str, &str)],
    body: impl Into<Body>,
) -> (StatusCode, HeaderMap, String) {
    let mut req = Request::builder().method(method).uri(uri);
    for (k, v) in headers {
        req = req.header(*k, *v);
    }
    let resp = app(state)
        .oneshot(req.body(body.into()).unwrap())
        .await
        .unwrap();
    let status = resp.status();
    let headers = resp.headers().clone();
    let bytes = resp.into_body().collect().await.unwrap().to_bytes();
    (
        status,
        headers,
        String::from_utf8_lossy(&bytes).into_owned(),
    )
}

/// Round one with `code`, as a viewer: the pairing's id and keys, or the error.
pub(super) async fn pair_with(
    st: &Arc<AppState>,
    code: &str,
) -> Result<(String, Keys), pairing::PakeError> {
    let viewer = pairing::ViewerPairing::start(code, rand::random());
    let request = serde_json::json!({ "message": pairing::encode(viewer.message()) });
    let (status, _, body) = send(st, "POST", "/pake", &[JSON], request.to_string()).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let reply: pairing::PairReply = serde_json::from_str(&body).unwrap();
    let keys = viewer.finish(
        &pairing::decode(&reply.message).unwrap(),
        &pairing::decode(&reply.confirm).unwrap(),
    )?;
    Ok((reply.id, keys))
}

/// A fresh pairing's signature over one request.
pub(super) async fn signed(st: &Arc<AppState>, method: &str, path: &str, body: &[u8]) -> String {
    let (id, keys) = pair_with(st, CODE).await.unwrap();
    pairing::authorization(&id, &keys, method, path, body)
}

/// `send`, signed by a fresh pairing with the right code (as viewers send).
pub(super) async fn send_signed(
    st: &Arc<AppState>,
    method: &str,
    uri: &str,
    headers: &[(&str, &str)],
    body: &str,
) -> (StatusCode, HeaderMap, String) {
    let auth = signed(st, method, uri, body.as_bytes()).await;
    let mut all = vec![("authorization", auth.as_str())];
    all.extend_from_slice(headers);
    send(st, method, uri, &all, body.to_owned()).await
}

/// POSTs `offer` signed by `keys` (pairing `id`), resuming session `resume` if given.
pub(super) async fn post_offer(
    st: &Arc<AppState>,
    id: &str,
    keys: &Keys,
    resume: Option<&str>,
    offer: String,
) -> (StatusCode, HeaderMap, String) {
    let auth = pairing::authorization(id, keys, "POST", "/whep", offer.as_bytes());
    let mut headers = vec![("authorization", auth.as_str()), SDP];
    if let Some(resume) = resume {
        headers.push((pairing::RESUME_HEADER, resume));
    }
    send(st, "POST", "/whep", &headers, offer).await
}

#[tokio::test]
async fn serves_the_viewer_page_with_a_strict_policy() {
    let st = state();
    let (status, headers, body) = send(&st, "GET", "/", &[], Body::empty()).await;
    assert_eq!(status, StatusCode::OK);
    assert!(body.contains("viewer.js"));
    let csp = headers[header::CONTENT_SECURITY_POLICY].to_str().unwrap();
    assert!(csp.contains("default-src 'self'"));
    assert!(csp.contains("script-src 'self' 'wasm-unsafe-eval'"));
    let (status, headers, body) = send(&st, "GET", "/pake.wasm", &[], Body::empty()).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(headers[header::CONTENT_TYPE], "application/wasm");
    assert!(body.as_bytes().starts_with(b"\0asm"));
    let (status, _, _) = send(&st, "GET", "/nope", &[], Body::empty()).await;
    assert_eq!(status, StatusCode::NOT_FOUND);
}

#[tokio::test]
async fn methods_a_resource_lacks_get_405_with_allow() {
    let st = state();
    let (status, headers, _) = send(&st, "PATCH", "/whep/abc", &[], Body::empty()).await;
    assert_eq!(status, StatusCode::METHOD_NOT_ALLOWED);
    let allow = headers[header::ALLOW].to_str().unwrap();
    assert!(
        allow.contains("DELETE") && allow.contains("OPTIONS"),
        "{allow}"
    );
    let (status, _, _) = send(&st, "OPTIONS", "/whep/abc", &[], Body::empty()).await;
    assert_eq!(status, StatusCode::NOT_FOUND, "no such session");
    let (status, headers, _) = send(&st, "GET", "/whep", &[], Body::empty()).await;
    assert_eq!(status, StatusCode::METHOD_NOT_ALLOWED);
    assert!(headers[header::ALLOW].to_str().unwrap().contains("POST"));
}

#[test]
fn a_viewer_name_is_decoded_cleaned_and_cut() {
    let name = |v: &str| {
        let mut h = HeaderMap::new();
        h.insert(pairing::NAME_HEADER, HeaderValue::from_str(v).unwrap());
        viewer_name(&h)
    };
    assert_eq!(name("Zo%C3%AB's%20phone").as_deref(), Some("Zoë's phone"));
    assert_eq!(
        name("%0Aa%09%20b%1B[31m").as_deref(),
        Some("a b [31m"),
        "no control characters"
    );
    assert_eq!(name("%20%20"), None);
    assert_eq!(
        name(&"x".repeat(100)).map(|n| n.chars().count()),
        Some(pairing::MAX_NAME_CHARS)
    );
    assert_eq!(
        name("%FF%FEok").as_deref(),
        Some("\u{fffd}\u{fffd}ok"),
        "bad UTF-8 is replaced"
    );
    assert_eq!(viewer_name(&HeaderMap::new()), None);
}

#[test]
fn viewer_urls_carry_the_code_in_the_fragment() {
    let code = AccessCode::parse("abcdefgh").unwrap();
    assert_eq!(
        viewer_url("127.0.0.1", 7380, &code),
        "http://127.0.0.1:7380/#code=abcdefgh"
    );
    assert_eq!(
        viewer_url("::1", 80, &code),
        "http://[::1]:80/#code=abcdefgh"
    );
}
