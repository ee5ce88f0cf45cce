//! Credentials: pairings, signatures, bearer codes, the guess throttle, foreign hosts and
//! origins; each refusal with its status, reason and counters.

use std::time::Instant;

use axum::body::Body;
use axum::http::{header, StatusCode};

use super::super::test_offer::recvonly_offer;
use super::*;
use crate::access::{CodeExpiry, CodeLife};
use crate::pairing;
use crate::stats::Counter;

#[tokio::test]
async fn no_credentials_or_a_bearer_code_is_401_and_makes_no_peer_connection() {
    let st = state();
    let (status, headers, body) = send(&st, "POST", "/whep", &[SDP], "v=0\r\n").await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    assert_eq!(
        headers[header::WWW_AUTHENTICATE],
        "Porthole-PAKE realm=\"porthole\""
    );
    assert!(body.contains("pair with the access code first"), "{body}");
    // Even the right code is not taken in a header unless the host allows it.
    let bearer = format!("Bearer {CODE}");
    let (status, _, body) = send(
        &st,
        "POST",
        "/whep",
        &[SDP, ("authorization", bearer.as_str())],
        "v=0\r\n",
    )
    .await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    assert!(body.contains("--allow-whep-token"), "{body}");
    assert_eq!(st.counters.get(Counter::PeerConnectionsCreated), 0);
    assert_eq!(st.counters.get(Counter::WhepRefused), 2);
    assert_eq!(st.throttle.lock().unwrap().tracked(), 0, "no guesses");
}

#[tokio::test]
async fn a_wrong_code_fails_the_first_round_and_counts_one_guess() {
    let st = state();
    assert_eq!(
        pair_with(&st, "wrong-code-2").await.err(),
        Some(pairing::PakeError::NotConfirmed)
    );
    assert_eq!(st.counters.get(Counter::Pairings), 1);
    assert_eq!(st.throttle.lock().unwrap().tracked(), 1);
    // The right code's signed request forgives its address's provisional guess.
    let (status, _, _) = send_signed(&st, "GET", "/api/stats", &[], "").await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(st.throttle.lock().unwrap().tracked(), 0);
    assert_eq!(st.counters.get(Counter::PairingsConfirmed), 1);
}

#[tokio::test]
async fn malformed_pairing_requests_are_refused_with_reasons() {
    let st = state();
    let (status, _, _) = send(&st, "POST", "/pake", &[SDP], "{}").await;
    assert_eq!(status, StatusCode::UNSUPPORTED_MEDIA_TYPE);
    for body in [
        "",
        "{}",
        "{\"message\": \"AAAA\"}",
        "{\"message\": 5}",
        "[]",
    ] {
        let (status, _, text) = send(&st, "POST", "/pake", &[JSON], body).await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{body}");
        assert!(text.contains("33-byte SPAKE2 message"), "{text}");
    }
    let (status, _, _) = send(&st, "POST", "/pake", &[JSON], vec![b' '; 2000]).await;
    assert_eq!(status, StatusCode::PAYLOAD_TOO_LARGE);
    assert_eq!(st.counters.get(Counter::Pairings), 0);
}

#[tokio::test]
async fn bad_content_type_and_garbage_bodies_are_refused_with_reasons() {
    let st = state();
    let (status, _, _) = send_signed(
        &st,
        "POST",
        "/whep",
        &[("content-type", "text/plain")],
        "v=0",
    )
    .await;
    assert_eq!(status, StatusCode::UNSUPPORTED_MEDIA_TYPE);
    let (status, _, body) = send_signed(&st, "POST", "/whep", &[SDP], "hello").await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert!(body.contains("not an SDP offer"), "{body}");
    let bad = "v=0\r\no=- 1 1 IN IP4 0.0.0.0\r\ns=-\r\nt=0 0\r\nm=video 9 UDP/TLS/RTP/SAVPF 96\r\n";
    let (status, _, body) = send_signed(&st, "POST", "/whep", &[SDP], bad).await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{body}");
    assert!(!body.is_empty());
    let auth = signed(&st, "POST", "/whep", b"").await;
    let (status, _, _) = send(
        &st,
        "POST",
        "/whep",
        &[("authorization", auth.as_str()), SDP],
        vec![b'x'; MAX_OFFER_BYTES + 1],
    )
    .await;
    assert_eq!(status, StatusCode::PAYLOAD_TOO_LARGE);
    assert_eq!(st.viewers.lock().unwrap().len(), 0);
}

#[tokio::test]
async fn repeated_wrong_codes_are_throttled() {
    let st = state();
    for _ in 0..MAX_FAILURES_PER_MINUTE {
        assert_eq!(
            pair_with(&st, "wrong-code-0").await.err(),
            Some(pairing::PakeError::NotConfirmed)
        );
    }
    let viewer = pairing::ViewerPairing::start(CODE, rand::random());
    let request = serde_json::json!({ "message": pairing::encode(viewer.message()) });
    let (status, headers, _) = send(&st, "POST", "/pake", &[JSON], request.to_string()).await;
    assert_eq!(
        status,
        StatusCode::TOO_MANY_REQUESTS,
        "from the guessing address even the right code waits (no oracle)"
    );
    assert_eq!(headers[header::RETRY_AFTER], "60");
}

#[tokio::test]
async fn requests_without_a_code_are_refused_but_never_counted() {
    let st = state();
    for _ in 0..(MAX_FAILURES_PER_MINUTE * 3) {
        let (status, _, _) = send(&st, "POST", "/whep", &[SDP], "v=0").await;
        assert_eq!(status, StatusCode::UNAUTHORIZED);
        let (status, _, _) = send(
            &st,
            "POST",
            "/whep",
            &[
                ("content-type", "text/plain"),
                ("authorization", "Basic eA=="),
            ],
            "x",
        )
        .await;
        assert_eq!(status, StatusCode::UNAUTHORIZED);
    }
    let (status, _, _) = send_signed(&st, "GET", "/api/stats", &[], "").await;
    assert_eq!(status, StatusCode::OK, "the owner is not locked out");
}

#[tokio::test]
async fn foreign_hosts_and_origins_are_refused() {
    let st = state();
    let (status, _, body) = send(
        &st,
        "GET",
        "/",
        &[("host", "evil.example:7380")],
        Body::empty(),
    )
    .await;
    assert_eq!(status, StatusCode::MISDIRECTED_REQUEST);
    assert!(body.contains("DNS rebinding"), "{body}");
    let (status, _, _) = send(
        &st,
        "GET",
        "/",
        &[("host", "desk.local:7380")],
        Body::empty(),
    )
    .await;
    assert_eq!(status, StatusCode::OK);
    let auth = signed(&st, "POST", "/whep", b"v=0").await;
    let (status, _, body) = send(
        &st,
        "POST",
        "/whep",
        &[
            SDP,
            ("authorization", auth.as_str()),
            ("host", "127.0.0.1:7380"),
            ("origin", "http://evil.example"),
        ],
        "v=0",
    )
    .await;
    assert_eq!(status, StatusCode::FORBIDDEN);
    assert!(body.contains("cross-origin"), "{body}");
    // The share's own page, and tools that send no Origin, get through.
    for origin in [Some("http://127.0.0.1:7380"), None] {
        let auth = signed(&st, "POST", "/whep", b"hello").await;
        let mut headers = vec![
            SDP,
            ("authorization", auth.as_str()),
            ("host", "127.0.0.1:7380"),
        ];
        headers.extend(origin.map(|o| ("origin", o)));
        let (status, _, body) = send(&st, "POST", "/whep", &headers, "hello").await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{origin:?}: {body}");
    }
    let (status, _, _) = send(
        &st,
        "DELETE",
        "/whep/x",
        &[("host", "127.0.0.1:7380"), ("origin", "null")],
        Body::empty(),
    )
    .await;
    assert_eq!(status, StatusCode::FORBIDDEN);
}

#[tokio::test]
async fn an_offer_changed_on_its_way_is_refused_before_any_peer_connection() {
    let st = state();
    let (_client, offer) = recvonly_offer().await;
    let (id, keys) = pair_with(&st, CODE).await.unwrap();
    let auth = pairing::authorization(&id, &keys, "POST", "/whep", offer.as_bytes());
    // A relay puts its own certificate in the viewer's offer.
    let relayed = offer.replacen("a=fingerprint:sha-256 ", "a=fingerprint:sha-256 0", 1);
    let (status, _, body) = send(
        &st,
        "POST",
        "/whep",
        &[("authorization", auth.as_str()), SDP],
        relayed,
    )
    .await;
    assert_eq!(status, StatusCode::FORBIDDEN);
    assert_eq!(body, pairing::NOT_THE_SHARE);
    assert_eq!(st.counters.get(Counter::MacRefused), 1);
    // The pairing is spent: the original cannot follow.
    let (status, _, _) = send(
        &st,
        "POST",
        "/whep",
        &[("authorization", auth.as_str()), SDP],
        offer,
    )
    .await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    assert_eq!(st.counters.get(Counter::PeerConnectionsCreated), 0);
}

#[tokio::test]
async fn an_expired_code_pairs_no_more() {
    let st = state();
    *st.code_life.lock().unwrap() = CodeLife::new(Some(CodeExpiry::FirstUse), Instant::now());
    let (_client, offer) = recvonly_offer().await;
    let (status, _, body) = send_signed(&st, "POST", "/whep", &[SDP], &offer).await;
    assert_eq!(status, StatusCode::CREATED, "{body}");
    let viewer = pairing::ViewerPairing::start(CODE, rand::random());
    let request = serde_json::json!({ "message": pairing::encode(viewer.message()) });
    let (status, _, body) = send(&st, "POST", "/pake", &[JSON], request.to_string()).await;
    assert_eq!(status, StatusCode::FORBIDDEN);
    assert!(body.contains("expired"), "{body}");
}

#[tokio::test]
async fn stats_need_a_signed_request_and_include_media_counters() {
    let st = state();
    let (status, _, _) = send(&st, "GET", "/api/stats", &[], Body::empty()).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    let (status, _, body) = send_signed(&st, "GET", "/api/stats", &[], "").await;
    assert_eq!(status, StatusCode::OK);
    let json: serde_json::Value = serde_json::from_str(&body).unwrap();
    assert_eq!(json["frames_encoded"], 7);
    assert_eq!(json["viewers"], 0);
    assert_eq!(json["pairings_confirmed"], 1);
}
