//! A share's HTTP/WHEP side under abuse by a code holder or a stranger, with real parts: the
//! real server on a real loopback socket, offers from real webrtc-rs peers, a real
//! `ShareClient` sending real PLIs, and real H.264 from the encoder.
//!
//! - `--max-viewers` holds under 30 concurrent offers;
//! - a viewer that never connects gives its slot back within about 5 s;
//! - a PLI flood makes at most 5 keyframes in 5 s;
//! - a foreign `Host` (DNS rebinding) is refused, a foreign `Origin` on POST too;
//! - code-less requests never lock the right code out; guesses from 1,000 addresses meet
//!   the share-wide budget.

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use net::client::{ClientEvent, ShareClient, ShareUrl};
use net::{AccessCode, HostEvents, IceConfig, Rights, ShareConfig, ShareServer, VideoFanout};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use webrtc::peer_connection::PeerConnection;

const CODE: &str = "abuse-test-code";

struct Share {
    server: ShareServer,
    /// Keyframes the encoder made.
    keyframes: Arc<AtomicU64>,
    stop: Arc<AtomicBool>,
    encoder: Option<std::thread::JoinHandle<()>>,
}

impl Share {
    async fn start(max_viewers: usize) -> Self {
        let request = Arc::new(AtomicBool::new(false));
        let fanout = {
            let r = request.clone();
            VideoFanout::new(
                Instant::now(),
                Arc::new(move || r.store(true, Ordering::Relaxed)),
            )
        };
        let keyframes = Arc::new(AtomicU64::new(0));
        let stop = Arc::new(AtomicBool::new(false));
        let encoder = encoder_thread(fanout.clone(), request, keyframes.clone(), stop.clone());
        let server = ShareServer::start(
            ShareConfig {
                listen: "127.0.0.1:0".parse().unwrap(),
                code: AccessCode::parse(CODE).unwrap(),
                ice: IceConfig {
                    servers: vec![],
                    udp_addrs: vec!["127.0.0.1:0".into()],
                },
                max_viewers,
                media_stats: Arc::new(Vec::new),
                host: Arc::new(net::session::ViewOnlyHost),
                events: HostEvents::new(),
                default_rights: Rights::default(),
                clipboard_max: 1024,
                approve: None,
                identity: Some(net::peer::ShareIdentity::generate().unwrap()),
            },
            fanout,
            None,
        )
        .await
        .unwrap();
        Self {
            server,
            keyframes,
            stop,
            encoder: Some(encoder),
        }
    }

    fn addr(&self) -> SocketAddr {
        self.server.local_addr()
    }

    async fn stop(mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(e) = self.encoder.take() {
            e.join().unwrap();
        }
        self.server.shutdown().await;
    }
}

/// Real H.264 of a still 320x240 picture at 30 fps, a keyframe only when asked: what a
/// static screen costs.
fn encoder_thread(
    fanout: Arc<VideoFanout>,
    request: Arc<AtomicBool>,
    keyframes: Arc<AtomicU64>,
    stop: Arc<AtomicBool>,
) -> std::thread::JoinHandle<()> {
    std::thread::spawn(move || {
        let mut enc = media::encoder::H264Encoder::new(Default::default()).unwrap();
        let mut conv = media::convert::Converter::new(320, 240);
        let frame: Vec<u8> = (0..320 * 240)
            .flat_map(|p| [(p % 320) as u8, 0x80, 0x20, 0])
            .collect();
        while !stop.load(Ordering::Relaxed) {
            conv.convert(&frame, 320, 240);
            let out = enc
                .encode(conv.picture(), request.swap(false, Ordering::Relaxed))
                .unwrap();
            if out.keyframe {
                keyframes.fetch_add(1, Ordering::Relaxed);
            }
            fanout.publish(net::VideoSample {
                data: out.data,
                capture_time: Instant::now(),
                keyframe: out.keyframe,
            });
            std::thread::sleep(Duration::from_millis(33));
        }
    })
}

/// One HTTP/1.1 request on a fresh connection (from `from`, if given); returns the status
/// and body.
async fn http(
    to: SocketAddr,
    from: Option<IpAddr>,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
    body: &str,
) -> (u16, String) {
    let socket = tokio::net::TcpSocket::new_v4().unwrap();
    if let Some(ip) = from {
        socket.bind(SocketAddr::new(ip, 0)).unwrap();
    }
    let mut stream = socket.connect(to).await.unwrap();
    let mut request = format!("{method} {path} HTTP/1.1\r\nConnection: close\r\n");
    if !headers.iter().any(|(k, _)| k.eq_ignore_ascii_case("host")) {
        request += &format!("Host: {to}\r\n");
    }
    for (k, v) in headers {
        request += &format!("{k}: {v}\r\n");
    }
    request += &format!("Content-Length: {}\r\n\r\n{body}", body.len());
    stream.write_all(request.as_bytes()).await.unwrap();
    let mut response = Vec::new();
    tokio::time::timeout(Duration::from_secs(20), stream.read_to_end(&mut response))
        .await
        .expect("an answer within 20 s")
        .unwrap();
    let response = String::from_utf8_lossy(&response).into_owned();
    let status = response
        .split(' ')
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| panic!("not an HTTP response: {response:?}"));
    let body = response
        .split_once("\r\n\r\n")
        .map(|(_, b)| b.to_owned())
        .unwrap_or_default();
    (status, body)
}

const AUTH: (&str, &str) = ("Authorization", "Bearer abuse-test-code");
const SDP: (&str, &str) = ("Content-Type", "application/sdp");

/// A real offer to receive video, from a webrtc-rs peer that is kept (so its candidates
/// stay valid) but never told the answer: it never connects.
async fn offer() -> (Arc<dyn PeerConnection>, String) {
    use rtc::rtp_transceiver::rtp_sender::RtpCodecKind;
    use rtc::rtp_transceiver::{RTCRtpTransceiverDirection, RTCRtpTransceiverInit};
    use webrtc::peer_connection::{
        register_default_interceptors, MediaEngine, PeerConnectionBuilder,
        PeerConnectionEventHandler, Registry, SettingEngineBuilder,
    };
    struct Quiet;
    #[async_trait::async_trait]
    impl PeerConnectionEventHandler for Quiet {}
    let mut me = MediaEngine::default();
    me.register_default_codecs().unwrap();
    let registry = register_default_interceptors(Registry::new(), &mut me).unwrap();
    let pc = PeerConnectionBuilder::new()
        .with_media_engine(me)
        .with_interceptor_registry(registry)
        .with_setting_engine(
            SettingEngineBuilder::new()
                .with_multicast_dns_mode(rtc::ice::mdns::MulticastDnsMode::Disabled)
                .build(),
        )
        .with_handler(Arc::new(Quiet))
        .with_udp_addrs(vec!["127.0.0.1:0".to_owned()])
        .build()
        .await
        .unwrap();
    let pc: Arc<dyn PeerConnection> = Arc::new(pc);
    pc.add_transceiver_from_kind(
        RtpCodecKind::Video,
        Some(RTCRtpTransceiverInit {
            direction: RTCRtpTransceiverDirection::Recvonly,
            ..Default::default()
        }),
    )
    .await
    .unwrap();
    let offer = pc.create_offer(None).await.unwrap();
    pc.set_local_description(offer.clone()).await.unwrap();
    (pc, offer.sdp)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn max_viewers_holds_under_30_concurrent_offers() {
    let share = Share::start(3).await;
    let (_pc, sdp) = offer().await;
    let addr = share.addr();
    let posts: Vec<_> = (0..30)
        .map(|_| {
            let sdp = sdp.clone();
            tokio::spawn(async move { http(addr, None, "POST", "/whep", &[AUTH, SDP], &sdp).await })
        })
        .collect();
    let mut statuses = Vec::new();
    for p in posts {
        statuses.push(p.await.unwrap().0);
    }
    let created = statuses.iter().filter(|s| **s == 201).count();
    let full = statuses.iter().filter(|s| **s == 503).count();
    eprintln!("30 concurrent offers, max 3: {created} admitted, {full} refused (503)");
    assert!(created >= 1, "{statuses:?}");
    assert!(
        created <= 3,
        "{created} viewers admitted with --max-viewers 3: {statuses:?}"
    );
    assert_eq!(created + full, 30, "{statuses:?}");
    assert!(share.server.viewers().len() <= 3);
    share.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_viewer_that_never_connects_gives_its_slot_back() {
    let share = Share::start(1).await;
    let addr = share.addr();
    let (_pc, sdp) = offer().await;
    let (status, body) = http(addr, None, "POST", "/whep", &[AUTH, SDP], &sdp).await;
    assert_eq!(status, 201, "{body}");
    let answered = Instant::now();
    let (status, _) = http(addr, None, "POST", "/whep", &[AUTH, SDP], &sdp).await;
    assert_eq!(status, 503, "the one slot is taken");
    while !share.server.viewers().is_empty() {
        assert!(
            answered.elapsed() < Duration::from_millis(6500),
            "a viewer that never connected still holds its slot after {:?}",
            answered.elapsed()
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    eprintln!("slot given back {:?} after the answer", answered.elapsed());
    let (_pc2, sdp2) = offer().await;
    let (status, body) = http(addr, None, "POST", "/whep", &[AUTH, SDP], &sdp2).await;
    assert_eq!(status, 201, "the slot is free again: {body}");
    share.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_pli_flood_makes_at_most_5_keyframes_in_5_s() {
    let share = Share::start(4).await;
    let url = ShareUrl::parse(&format!("http://{}/#code={CODE}", share.addr())).unwrap();
    let (client, mut events) = ShareClient::connect(&url, None).await.unwrap();
    // Wait for video: PLIs name the video stream, known once it flows.
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let ev = tokio::time::timeout_at(deadline.into(), events.recv())
            .await
            .expect("video within 10 s")
            .expect("events ended");
        if matches!(ev, ClientEvent::Video(_)) {
            break;
        }
    }
    let drain = tokio::spawn(async move { while events.recv().await.is_some() {} });
    tokio::time::sleep(Duration::from_secs(1)).await;
    let before = share.keyframes.load(Ordering::Relaxed);
    let start = Instant::now();
    let mut plis = 0;
    while start.elapsed() < Duration::from_secs(5) {
        client.request_keyframe().await;
        plis += 1;
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let made = share.keyframes.load(Ordering::Relaxed) - before;
    eprintln!("{plis} PLIs in 5 s made {made} keyframes");
    assert!(plis >= 300, "the flood was a flood: {plis}");
    assert!(made >= 1, "keyframe requests are still honoured");
    assert!(made <= 5, "{made} keyframes in 5 s under a PLI flood");
    client.close().await;
    drain.abort();
    share.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn foreign_hosts_and_origins_are_refused() {
    let share = Share::start(4).await;
    let addr = share.addr();
    let (status, body) = http(addr, None, "GET", "/", &[("Host", "evil.example")], "").await;
    assert_eq!(status, 421, "DNS rebinding: {body}");
    assert!(body.contains("evil.example"), "{body}");
    let (status, _) = http(addr, None, "GET", "/", &[], "").await;
    assert_eq!(status, 200, "by its address");
    let localhost = format!("localhost:{}", addr.port());
    let (status, _) = http(addr, None, "GET", "/", &[("Host", &localhost)], "").await;
    assert_eq!(status, 200, "as localhost");
    let (status, body) = http(
        addr,
        None,
        "POST",
        "/whep",
        &[AUTH, SDP, ("Origin", "http://evil.example")],
        "v=0",
    )
    .await;
    assert_eq!(status, 403, "{body}");
    share.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn code_less_requests_never_lock_the_right_code_out() {
    let share = Share::start(4).await;
    let addr = share.addr();
    for _ in 0..25 {
        // What a web page can send cross-site: a simple POST, no Authorization.
        let (status, _) = http(
            addr,
            None,
            "POST",
            "/whep",
            &[("Content-Type", "text/plain")],
            "v=0",
        )
        .await;
        assert_eq!(status, 401);
    }
    let (status, body) = http(addr, None, "GET", "/api/stats", &[AUTH], "").await;
    assert_eq!(
        status, 200,
        "the right code after 25 code-less requests: {body}"
    );
    share.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn guesses_spread_over_1000_addresses_meet_the_share_wide_budget() {
    let share = Share::start(4).await;
    let addr = share.addr();
    let mut refused_at = None;
    let mut statuses = std::collections::BTreeMap::new();
    for i in 0..1000u32 {
        let from = IpAddr::V4(Ipv4Addr::from(0x7f01_0000 + i + 1)); // 127.1.x.y
        let wrong = format!("Bearer wrong-code-{i}");
        let (status, _) = http(
            addr,
            Some(from),
            "GET",
            "/api/stats",
            &[("Authorization", &wrong)],
            "",
        )
        .await;
        *statuses.entry(status).or_insert(0) += 1;
        if status == 429 && refused_at.is_none() {
            refused_at = Some(i + 1);
        }
    }
    eprintln!(
        "1,000 guesses from 1,000 addresses: {statuses:?}, first 429 at guess {refused_at:?}"
    );
    assert!(refused_at.is_some(), "no refusal: {statuses:?}");
    share.stop().await;
}
