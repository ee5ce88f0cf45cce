//! Offers and sessions: real offers answered and signed, sessions ended by their own
//! pairing only, resumed once, the host's approval, bearer players, audio sections.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Instant;

use axum::body::Body;
use axum::http::{header, StatusCode};

use super::super::test_offer::recvonly_offer;
use super::*;
use crate::control::Rights;
use crate::pairing;
use crate::stats::Counter;
use tokio::sync::oneshot;

#[tokio::test]
async fn a_session_is_resumed_by_its_own_pairing_only_once_and_without_a_new_approval() {
    let mut st = state();
    let asked = Arc::new(AtomicU64::new(0));
    let count = asked.clone();
    Arc::get_mut(&mut st).unwrap().config.approve = Some(Arc::new(move |_| {
        count.fetch_add(1, Ordering::Relaxed);
        let (tx, rx) = oneshot::channel();
        let _ = tx.send(Some(Rights::default()));
        rx
    }));
    let (client, offer) = recvonly_offer().await;
    let (id, keys) = pair_with(&st, CODE).await.unwrap();
    let (status, headers, body) = post_offer(&st, &id, &keys, None, offer.clone()).await;
    assert_eq!(status, StatusCode::CREATED, "{body}");
    let first = headers[header::LOCATION].to_str().unwrap()["/whep/".len()..].to_owned();
    assert_eq!(asked.load(Ordering::Relaxed), 1);

    // Another pairing (the right code, but not this session's keys) cannot take it.
    let (other_id, other_keys) = pair_with(&st, CODE).await.unwrap();
    let (status, _, body) =
        post_offer(&st, &other_id, &other_keys, Some(&first), offer.clone()).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED, "{body}");
    assert!(body.contains("cannot be resumed"), "{body}");
    assert!(
        lock_viewers(&st).get(&first).is_some(),
        "the session is untouched"
    );

    // Its own pairing can: the same viewer, a new session, the host not asked again.
    let (status, headers, answer) = post_offer(&st, &id, &keys, Some(&first), offer.clone()).await;
    assert_eq!(status, StatusCode::CREATED, "{answer}");
    let mac = pairing::decode(headers[pairing::ANSWER_MAC_HEADER].to_str().unwrap()).unwrap();
    assert!(keys.verify_answer(answer.as_bytes(), &mac));
    let second = headers[header::LOCATION].to_str().unwrap()["/whep/".len()..].to_owned();
    assert_ne!(second, first);
    assert_eq!(asked.load(Ordering::Relaxed), 1, "no second approval");
    let listed: Vec<(String, u64)> = lock_viewers(&st)
        .values()
        .map(|e| (e.info.id.clone(), e.info.no))
        .collect();
    assert_eq!(
        listed,
        vec![(second.clone(), 1)],
        "one viewer, still number 1"
    );
    let (status, _, _) = post_offer(&st, &id, &keys, Some(&first), offer.clone()).await;
    assert_eq!(
        status,
        StatusCode::UNAUTHORIZED,
        "a session is resumed once"
    );

    // A session lost a while ago comes back with its number and rights.
    let (lost_id, lost_keys) = pair_with(&st, CODE).await.unwrap();
    let lost_keys = Arc::new(lost_keys);
    st.lost.lock().unwrap().keep(
        "0123456789abcdef01234567".into(),
        resume::Lost {
            keys: lost_keys.clone(),
            no: 7,
            rights: Rights {
                control: true,
                clipboard: false,
            },
        },
        Instant::now(),
    );
    let (status, headers, body) = post_offer(
        &st,
        &lost_id,
        &lost_keys,
        Some("0123456789abcdef01234567"),
        offer,
    )
    .await;
    assert_eq!(status, StatusCode::CREATED, "{body}");
    let third = headers[header::LOCATION].to_str().unwrap()["/whep/".len()..].to_owned();
    let back = lock_viewers(&st)
        .get(&third)
        .map(|e| (e.info.no, e.info.rights.control));
    assert_eq!(back, Some((7, true)));
    assert_eq!(
        asked.load(Ordering::Relaxed),
        1,
        "no approval for it either"
    );
    client.close().await.unwrap();
}

#[tokio::test]
async fn a_real_offer_gets_a_signed_answer_and_a_session_only_its_pairing_ends() {
    let st = state();
    let (client, offer) = recvonly_offer().await;
    let (id, keys) = pair_with(&st, CODE).await.unwrap();
    let (status, headers, answer) = post_offer(&st, &id, &keys, None, offer).await;
    assert_eq!(status, StatusCode::CREATED, "{answer}");
    assert_eq!(headers[header::CONTENT_TYPE], "application/sdp");
    assert!(answer.starts_with("v=0"));
    assert!(answer.contains("m=video"));
    assert!(answer.contains("H264/90000"), "{answer}");
    assert!(answer.contains("a=sendonly"), "{answer}");
    assert!(
        answer.contains("a=candidate:"),
        "the answer carries candidates"
    );
    let mac = pairing::decode(headers[pairing::ANSWER_MAC_HEADER].to_str().unwrap()).unwrap();
    assert!(keys.verify_answer(answer.as_bytes(), &mac));
    let swapped = answer.replacen("a=fingerprint:sha-256 ", "a=fingerprint:sha-256 0", 1);
    assert!(!keys.verify_answer(swapped.as_bytes(), &mac));
    let location = headers[header::LOCATION].to_str().unwrap().to_owned();
    assert!(location.starts_with("/whep/"));
    assert_eq!(st.counters.get(Counter::PeerConnectionsCreated), 1);
    assert_eq!(st.viewers.lock().unwrap().len(), 1);
    assert!(st
        .viewers
        .lock()
        .unwrap()
        .values()
        .all(|e| e.info.authenticated));
    let (status, headers, _) = send(&st, "OPTIONS", &location, &[], Body::empty()).await;
    assert_eq!(status, StatusCode::NO_CONTENT, "the session exists");
    assert_eq!(headers[header::ALLOW], "OPTIONS, DELETE");

    let (status, _, _) = send(&st, "DELETE", &location, &[], Body::empty()).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED, "DELETE needs credentials");
    let (status, _, _) = send_signed(&st, "DELETE", &location, &[], "").await;
    assert_eq!(
        status,
        StatusCode::FORBIDDEN,
        "another viewer's pairing may not"
    );
    let own = pairing::authorization(&id, &keys, "DELETE", &location, b"");
    let (status, _, _) = send(
        &st,
        "DELETE",
        &location,
        &[("authorization", own.as_str())],
        Body::empty(),
    )
    .await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(st.viewers.lock().unwrap().len(), 0);
    let (status, _, _) = send(
        &st,
        "DELETE",
        &location,
        &[("authorization", own.as_str())],
        Body::empty(),
    )
    .await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    client.close().await.unwrap();
}

#[tokio::test]
async fn a_bearer_player_is_admitted_only_when_allowed_and_watches_unauthenticated() {
    let mut st = state();
    {
        let s = Arc::get_mut(&mut st).unwrap();
        s.config.allow_token = true;
        s.config.default_rights = Rights {
            control: true,
            clipboard: true,
        };
    }
    let (client, offer) = recvonly_offer().await;
    let bearer = format!("Bearer {CODE}");
    let (status, headers, body) = send(
        &st,
        "POST",
        "/whep",
        &[("authorization", bearer.as_str()), SDP],
        offer,
    )
    .await;
    assert_eq!(status, StatusCode::CREATED, "{body}");
    assert!(!headers.contains_key(pairing::ANSWER_MAC_HEADER));
    let info = st
        .viewers
        .lock()
        .unwrap()
        .values()
        .next()
        .unwrap()
        .info
        .clone();
    assert!(!info.authenticated);
    assert_eq!(info.rights, Rights::default(), "view only");
    let (status, _, body) = send(
        &st,
        "GET",
        "/api/stats",
        &[("authorization", "Bearer wrong-code-9")],
        Body::empty(),
    )
    .await;
    assert_eq!(
        (status, body.as_str()),
        (StatusCode::UNAUTHORIZED, "wrong access code")
    );
    // A bearer player has no pairing to resume a session with.
    let location = headers[header::LOCATION].to_str().unwrap().to_owned();
    let id = &location["/whep/".len()..];
    let (_client2, offer2) = recvonly_offer().await;
    let (status, _, body) = send(
        &st,
        "POST",
        "/whep",
        &[
            ("authorization", bearer.as_str()),
            SDP,
            (pairing::RESUME_HEADER, id),
        ],
        offer2,
    )
    .await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    assert_eq!(body, "only a paired viewer can resume its session");
    // Its session is ended by the code, not by a pairing (403) nor a wrong code (401),
    // each refusal counted as before.
    let counts =
        |st: &AppState| [Counter::Unauthorized, Counter::WhepRefused].map(|c| st.counters.get(c));
    let before = counts(&st);
    let (status, _, body) = send_signed(&st, "DELETE", &location, &[], "").await;
    assert_eq!(
        (status, body.as_str()),
        (
            StatusCode::FORBIDDEN,
            "this request is not signed by the session's own pairing"
        )
    );
    assert_eq!(counts(&st), before.map(|n| n + 1));
    let wrong = [("authorization", "Bearer wrong-code-9")];
    let (status, _, _) = send(&st, "DELETE", &location, &wrong, Body::empty()).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    assert_eq!(counts(&st), before.map(|n| n + 2));
    let right = [("authorization", bearer.as_str())];
    let (status, _, _) = send(&st, "DELETE", &location, &right, Body::empty()).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(st.viewers.lock().unwrap().len(), 0);
    assert_eq!(counts(&st), before.map(|n| n + 2));
    client.close().await.unwrap();
}

#[tokio::test]
async fn a_declined_viewer_gets_403_and_no_peer_connection() {
    let mut st = state();
    let asked = Arc::new(AtomicU64::new(0));
    let counter = asked.clone();
    Arc::get_mut(&mut st).unwrap().config.approve = Some(Arc::new(move |_viewer| {
        counter.fetch_add(1, Ordering::Relaxed);
        let (tx, rx) = tokio::sync::oneshot::channel();
        let _ = tx.send(None);
        rx
    }));
    let (_client, offer) = recvonly_offer().await;
    let (status, _, body) = send_signed(&st, "POST", "/whep", &[SDP], &offer).await;
    assert_eq!(status, StatusCode::FORBIDDEN);
    assert_eq!(body, "the host declined");
    assert_eq!(asked.load(Ordering::Relaxed), 1);
    assert_eq!(st.counters.get(Counter::PeerConnectionsCreated), 0);
    // A wrong code is found in the first round: the host is never asked.
    assert_eq!(
        pair_with(&st, "nope-nope-1").await.err(),
        Some(pairing::PakeError::NotConfirmed)
    );
    assert_eq!(asked.load(Ordering::Relaxed), 1);
}

/// The m-section of `kind` in `sdp`, as lines.
fn section<'a>(sdp: &'a str, kind: &str) -> Vec<&'a str> {
    let start = format!("m={kind} ");
    sdp.lines()
        .skip_while(|l| !l.starts_with(&start))
        .enumerate()
        .take_while(|(i, l)| *i == 0 || !l.starts_with("m="))
        .map(|(_, l)| l)
        .collect()
}

#[tokio::test]
async fn a_share_without_sound_answers_the_audio_section_inactive_not_rejected() {
    let st = state();
    let (_client, offer) = super::super::test_offer::recvonly_offer_of(true).await;
    let (status, _, answer) = send_signed(&st, "POST", "/whep", &[SDP], &offer).await;
    assert_eq!(status, StatusCode::CREATED, "{answer}");
    let audio = section(&answer, "audio");
    // Strict clients (aiortc, werift) refuse a port-0 section without codecs or ICE
    // credentials: this one is a bundled, inactive section with its codec.
    assert!(
        !audio.is_empty() && !audio[0].starts_with("m=audio 0 "),
        "{answer}"
    );
    for want in ["a=inactive", "a=rtpmap:", "a=ice-ufrag:", "a=mid:"] {
        assert!(
            audio.iter().any(|l| l.starts_with(want)),
            "{want} in {audio:#?}"
        );
    }
    let mid = audio.iter().find_map(|l| l.strip_prefix("a=mid:")).unwrap();
    let bundle = answer
        .lines()
        .find(|l| l.starts_with("a=group:BUNDLE"))
        .unwrap();
    assert!(bundle.split_whitespace().any(|m| m == mid), "{bundle}");
}
