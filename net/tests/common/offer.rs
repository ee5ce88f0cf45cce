//! A real offer to receive video, from a webrtc-rs peer. Shared by the integration tests
//! (through `common`) and by `server.rs`'s unit tests (through `#[path]`): it depends on
//! nothing of this crate.

use std::sync::Arc;

use webrtc::peer_connection::PeerConnection;

/// A real offer to receive video, from a webrtc-rs peer that is returned (keep it, so its
/// candidates stay valid); nothing tells it the answer, so it never connects by itself.
pub async fn recvonly_offer() -> (Arc<dyn PeerConnection>, String) {
    recvonly_offer_of(false).await
}

/// [`recvonly_offer`], with an audio section too when `audio`.
pub async fn recvonly_offer_of(audio: bool) -> (Arc<dyn PeerConnection>, String) {
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
    if audio {
        pc.add_transceiver_from_kind(
            RtpCodecKind::Audio,
            Some(RTCRtpTransceiverInit {
                direction: RTCRtpTransceiverDirection::Recvonly,
                ..Default::default()
            }),
        )
        .await
        .unwrap();
    }
    let offer = pc.create_offer(None).await.unwrap();
    pc.set_local_description(offer.clone()).await.unwrap();
    (pc, offer.sdp)
}
