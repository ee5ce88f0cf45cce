//! A real share and a real client over loopback: WHEP, ICE, DTLS, SRTP and SCTP, with
//! H.264 from the real encoder. The host side records what reaches it.

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use common::TestEncoder;
use net::client::{ClientEvent, ShareClient, ShareUrl};
use net::{HostEvents, HostSide, Message, Mime, Rights, ShareConfig, ShareServer};

mod common;

#[derive(Default)]
struct RecordingHost {
    input: Mutex<Vec<(u64, Message)>>,
    clipboard: Mutex<Vec<(Mime, Vec<u8>)>>,
}

impl HostSide for RecordingHost {
    fn input(&self, viewer: u64, msg: Message) {
        self.input.lock().unwrap().push((viewer, msg));
    }
    fn set_clipboard(&self, _viewer: u64, mime: Mime, data: Vec<u8>) {
        self.clipboard.lock().unwrap().push((mime, data));
    }
}

/// Events from the client, searchable out of order: what a wait passes over is kept.
struct Events {
    rx: tokio::sync::mpsc::Receiver<ClientEvent>,
    backlog: Vec<ClientEvent>,
}

impl Events {
    async fn next(&mut self, what: &str, want: impl Fn(&ClientEvent) -> bool) -> ClientEvent {
        if let Some(i) = self.backlog.iter().position(&want) {
            return self.backlog.remove(i);
        }
        let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
        loop {
            let ev = tokio::time::timeout_at(deadline, self.rx.recv())
                .await
                .unwrap_or_else(|_| panic!("timed out waiting for {what}"))
                .unwrap_or_else(|| panic!("events ended before {what}"));
            if want(&ev) {
                return ev;
            }
            self.backlog.push(ev);
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn client_and_share_exchange_media_input_and_clipboard() {
    let encoder = TestEncoder::start(3);
    let host = Arc::new(RecordingHost::default());
    let events = HostEvents::new();
    let server = ShareServer::start(
        ShareConfig {
            host: host.clone(),
            events: events.clone(),
            default_rights: Rights {
                control: true,
                clipboard: true,
            },
            clipboard_max: 1 << 20,
            ..common::share_config("loopback-code", 4)
        },
        encoder.fanout.clone(),
        None,
    )
    .await
    .unwrap();
    let port = server.local_addr().port();

    // A wrong code is refused before any WebRTC happens.
    let url = ShareUrl::parse(&format!("http://127.0.0.1:{port}/#code=wrong-code-1")).unwrap();
    assert!(matches!(
        ShareClient::connect(&url, None).await,
        Err(net::client::ClientError::WrongCode)
    ));

    let url = ShareUrl::parse(&format!("http://127.0.0.1:{port}/#code=loopback-code")).unwrap();
    let (client, rx) = ShareClient::connect(&url, None).await.unwrap();
    let mut rx = Events {
        rx,
        backlog: Vec::new(),
    };
    let mut video = Vec::new();
    rx.next("connected", |e| matches!(e, ClientEvent::Connected))
        .await;
    rx.next("rights", |e| {
        matches!(e, ClientEvent::Message(Message::Rights { rights: 7, .. }))
    })
    .await;

    // Video: the first unit is a keyframe, and it decodes to the picture's size.
    while video.len() < 10 {
        if let ClientEvent::Video(u) = rx
            .next("video", |e| matches!(e, ClientEvent::Video(_)))
            .await
        {
            video.push(u);
        }
    }
    let first = &video[0];
    let head: Vec<u8> = first.data.iter().take(40).copied().collect();
    assert!(
        first.keyframe,
        "a viewer starts at a keyframe: {} bytes {head:02x?}",
        first.data.len()
    );
    // Every unit says when it was captured (abs-capture-time, on the host's wall clock)
    // and asks to be shown at once (playout-delay 0, 0).
    let now_ntp = net::video::ntp_time(
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap(),
    );
    for u in &video {
        assert_eq!(u.playout_delay, Some((0, 0)), "playout-delay on every unit");
        let captured = u.capture_ntp.expect("abs-capture-time on every unit");
        let age_s = now_ntp.saturating_sub(captured) as f64 / 4_294_967_296.0;
        assert!(
            captured <= now_ntp && age_s < 5.0,
            "capture time {age_s:.3} s before now"
        );
    }
    let mut dec = openh264::decoder::Decoder::new().unwrap();
    let pic = dec.decode(&first.data).unwrap().expect("a picture");
    assert_eq!(openh264::formats::YUVSource::dimensions(&pic), (320, 240));
    for u in &video[1..] {
        assert!(
            dec.decode(&u.data).unwrap().is_some(),
            "every unit decodes at once"
        );
    }

    // What the host copies reaches the viewer (nothing copied before it joined is replayed).
    assert!(
        !rx.backlog
            .iter()
            .any(|e| matches!(e, ClientEvent::Message(Message::ClipboardData { .. }))),
        "no clipboard on join"
    );
    events.clipboard(Mime::Text, Arc::new(b"host text".to_vec()));
    let mut got = Vec::new();
    loop {
        if let ClientEvent::Message(Message::ClipboardData { data, total, .. }) = rx
            .next("host clipboard", |e| {
                matches!(e, ClientEvent::Message(Message::ClipboardData { .. }))
            })
            .await
        {
            got.extend(data);
            if got.len() == total as usize {
                break;
            }
        }
    }
    assert_eq!(got, b"host text");

    // Input and clipboard reach the host.
    assert!(
        client
            .send(&Message::Key {
                pressed: true,
                code: "KeyA".into()
            })
            .await
    );
    for chunk in net::protocol::clipboard_chunks(1, Mime::Text, "from the client ✓".as_bytes()) {
        assert!(client.send(&chunk).await);
    }
    let deadline = Instant::now() + Duration::from_secs(5);
    while host.clipboard.lock().unwrap().is_empty() || host.input.lock().unwrap().is_empty() {
        assert!(
            Instant::now() < deadline,
            "input and clipboard reached the host"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert_eq!(
        host.input.lock().unwrap()[0].1,
        Message::Key {
            pressed: true,
            code: "KeyA".into()
        }
    );
    assert_eq!(
        host.clipboard.lock().unwrap()[0],
        (Mime::Text, "from the client ✓".as_bytes().to_vec())
    );

    // Revoking control takes effect at once: the next key is refused, with a notice.
    let id = server.viewers()[0].id.clone();
    assert!(server.set_rights(
        &id,
        Rights {
            control: false,
            clipboard: true
        }
    ));
    rx.next("new rights", |e| {
        matches!(e, ClientEvent::Message(Message::Rights { rights: 5, .. }))
    })
    .await;
    let before = host.input.lock().unwrap().len();
    assert!(
        client
            .send(&Message::Key {
                pressed: true,
                code: "KeyB".into()
            })
            .await
    );
    rx.next("a not-allowed notice", |e| {
        matches!(e, ClientEvent::Message(Message::Notice { code: 2, .. }))
    })
    .await;
    let after: Vec<Message> = host.input.lock().unwrap()[before..]
        .iter()
        .map(|(_, m)| m.clone())
        .collect();
    assert!(
        after.iter().all(|m| *m == Message::ReleaseAll),
        "only the release-all of the revocation reached the host: {after:?}"
    );

    // Leaving ends the session on the share.
    client.close().await;
    let deadline = Instant::now() + Duration::from_secs(5);
    while !server.viewers().is_empty() {
        assert!(Instant::now() < deadline, "the session ended");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    encoder.stop();
    server.shutdown().await;
}
