//! One viewer's peer connection: built from its WHEP offer, fed from the shared video (and
//! audio) fan-outs, watched for keyframe requests and for its end.

use std::sync::Arc;
use std::time::{Duration, Instant};

use rtc::media_stream::MediaStreamTrack;
use rtc::peer_connection::configuration::media_engine::{
    MediaEngine, MIME_TYPE_H264, MIME_TYPE_OPUS,
};
use rtc::rtp_transceiver::rtp_sender::{
    RTCPFeedback, RTCRtpCodec, RTCRtpCodecParameters, RTCRtpCodingParameters,
    RTCRtpEncodingParameters, RTCRtpHeaderExtensionCapability, RtpCodecKind,
};
use rtc::rtp_transceiver::RTCRtpTransceiverDirection;
use tokio::sync::{broadcast, mpsc, Notify};
use webrtc::data_channel::DataChannel;
use webrtc::media_stream::track_local::static_rtp::TrackLocalStaticRTP;
use webrtc::media_stream::track_local::{TrackLocal, TrackLocalEvent};
use webrtc::peer_connection::{
    register_default_interceptors, PeerConnection, PeerConnectionBuilder, RTCConfigurationBuilder,
    RTCIceServer, RTCPeerConnectionState, RTCSessionDescription, Registry, SettingEngineBuilder,
};

use crate::cc::{PathEstimate, SendBudget, ViewerGcc};
use crate::handler::{EventSender, Forwarder};
use crate::keyframe::{
    self, KeyframeGate, KeyframeReason, KeyframeRequestForwarder, ViewerKeyframes,
};
use crate::video::{extension, ExtensionIds, MediaFanout, RtpStamper};
use types::{ByteBudget, PayloadType, Ssrc, AUDIO_CLOCK_HZ, VIDEO_CLOCK_HZ};

mod sdp;
mod send;
pub use sdp::*;
use send::*;

/// The H.264 flavour every browser decodes: constrained baseline, non-interleaved.
pub const H264_FMTP: &str =
    "level-asymmetry-allowed=1;packetization-mode=1;profile-level-id=42e01f";
pub const H264_PAYLOAD_TYPE: PayloadType = PayloadType(102);
pub const OPUS_PAYLOAD_TYPE: PayloadType = PayloadType(111);
/// The most a viewer's path estimate may say (the encoder's own limit is set apart).
const GCC_MAX_BPS: f64 = 100_000_000.0;
/// How long to wait for ICE candidates before answering with what there is.
const GATHER_TIMEOUT: Duration = Duration::from_secs(2);
/// The share's ICE consent checks on a viewer's selected pair (see `Viewer::answer`).
const ICE_KEEPALIVE: Duration = Duration::from_millis(150);
/// How often a viewer's selected candidate pair is looked at (see [`watch_path_moves`]).
const PATH_POLL: Duration = Duration::from_millis(50);

/// The share's DTLS identity: one certificate for every viewer, so its fingerprint can be
/// announced (mDNS) and checked by viewers against the WHEP answer.
#[derive(Clone)]
pub struct ShareIdentity {
    pub certificate: rtc::peer_connection::certificate::RTCCertificate,
    /// SHA-256 fingerprint as in SDP: `AB:CD:…` (lowercase hex here).
    pub fingerprint: String,
}

impl ShareIdentity {
    pub fn generate() -> Result<Self, PeerError> {
        use rtc::crypto::SignatureScheme;
        use rtc::peer_connection::certificate::{CertificateParams, RTCCertificate};
        let err = |e: String| PeerError::Internal(format!("cannot make a certificate: {e}"));
        let provider = rtc::crypto::default_provider().map_err(|e| err(e.to_string()))?;
        let params =
            CertificateParams::new(vec!["porthole".to_owned()]).map_err(|e| err(e.to_string()))?;
        let certificate =
            RTCCertificate::generate(provider.crypto(), SignatureScheme::EcdsaP256Sha256, params)
                .map_err(|e| err(e.to_string()))?;
        let fingerprint = certificate
            .get_fingerprints(provider.crypto())
            .map_err(|e| err(e.to_string()))?
            .into_iter()
            .next()
            .map(|f| f.value.to_lowercase())
            .ok_or_else(|| err("no fingerprint".into()))?;
        Ok(Self {
            certificate,
            fingerprint,
        })
    }

    /// The first 16 hex digits of the fingerprint, as announced.
    pub fn short_fingerprint(&self) -> String {
        self.fingerprint.replace(':', "").chars().take(16).collect()
    }
}

/// Network settings shared by every viewer connection.
#[derive(Clone, Debug, Default)]
pub struct IceConfig {
    /// STUN/TURN servers offered to ICE.
    pub servers: Vec<IceServer>,
    /// Local UDP addresses to gather host candidates on, e.g. `127.0.0.1:0`, `0.0.0.0:0`.
    pub udp_addrs: Vec<String>,
}

impl IceConfig {
    /// The settings for a viewer at `peer`: a viewer on another machine gets no loopback
    /// candidates (it cannot reach them, and pairing them only makes failing checks and,
    /// with TURN, permission requests the server refuses).
    pub fn for_peer(&self, peer: std::net::IpAddr) -> IceConfig {
        if peer.to_canonical().is_loopback() {
            return self.clone();
        }
        let udp_addrs: Vec<String> = self
            .udp_addrs
            .iter()
            .filter(|a| {
                a.parse::<std::net::SocketAddr>()
                    .map_or(true, |sa| !sa.ip().is_loopback())
            })
            .cloned()
            .collect();
        IceConfig {
            servers: self.servers.clone(),
            udp_addrs: if udp_addrs.is_empty() {
                self.udp_addrs.clone()
            } else {
                udp_addrs
            },
        }
    }
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct IceServer {
    pub url: String,
    pub username: String,
    pub credential: String,
}

#[derive(Debug, thiserror::Error)]
pub enum PeerError {
    /// The offer could not be used: the client's fault (HTTP 400).
    #[error("{0}")]
    BadOffer(String),
    /// Something failed on our side (HTTP 500).
    #[error("{0}")]
    Internal(String),
}

/// What happens to a viewer connection, reported to its owner.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ViewerEvent {
    Connected,
    /// ICE lost the viewer; it may come back, but nothing it holds should stay pressed.
    Interrupted,
    Ended,
}

/// What a connection state means to the share (`None`: nothing to report).
fn viewer_event(state: RTCPeerConnectionState) -> Option<ViewerEvent> {
    Some(match state {
        RTCPeerConnectionState::Connected => ViewerEvent::Connected,
        RTCPeerConnectionState::Disconnected => ViewerEvent::Interrupted,
        RTCPeerConnectionState::Failed | RTCPeerConnectionState::Closed => ViewerEvent::Ended,
        _ => return None,
    })
}

fn h264_codec() -> RTCRtpCodec {
    let fb = |typ: &str, parameter: &str| RTCPFeedback {
        typ: typ.into(),
        parameter: parameter.into(),
    };
    RTCRtpCodec {
        mime_type: MIME_TYPE_H264.to_owned(),
        clock_rate: VIDEO_CLOCK_HZ,
        channels: 0,
        sdp_fmtp_line: H264_FMTP.to_owned(),
        rtcp_feedback: vec![
            fb("nack", ""),
            fb("nack", "pli"),
            fb("ccm", "fir"),
            fb("transport-cc", ""),
        ],
    }
}

fn opus_codec() -> RTCRtpCodec {
    RTCRtpCodec {
        mime_type: MIME_TYPE_OPUS.to_owned(),
        clock_rate: AUDIO_CLOCK_HZ,
        channels: 2,
        sdp_fmtp_line: "minptime=10;useinbandfec=1".to_owned(),
        rtcp_feedback: vec![RTCPFeedback {
            typ: "transport-cc".into(),
            parameter: String::new(),
        }],
    }
}

/// Offers the header extensions we send: playout-delay (render at once) and
/// abs-capture-time, on video and audio; they are sent where the viewer's offer has them.
pub(crate) fn register_extensions(media_engine: &mut MediaEngine) -> Result<(), PeerError> {
    for kind in [RtpCodecKind::Video, RtpCodecKind::Audio] {
        for uri in [extension::PLAYOUT_DELAY, extension::ABS_CAPTURE_TIME] {
            media_engine
                .register_header_extension(
                    RTCRtpHeaderExtensionCapability {
                        uri: uri.to_owned(),
                    },
                    kind,
                    None,
                )
                .map_err(|e| PeerError::Internal(format!("header extension setup: {e}")))?;
        }
    }
    Ok(())
}

/// The codec payload type and our header extensions' ids, as negotiated for `sender`.
async fn negotiated(
    sender: &Arc<dyn webrtc::rtp_transceiver::RtpSender>,
) -> Option<(PayloadType, ExtensionIds)> {
    let params = sender.get_parameters().await.ok()?;
    let payload_type = PayloadType(params.rtp_parameters.codecs.first()?.payload_type);
    let ids = ExtensionIds::from_negotiated(
        params
            .rtp_parameters
            .header_extensions
            .iter()
            .map(|e| (e.uri.as_str(), e.id)),
    );
    Some((payload_type, ids))
}

fn local_track(ssrc: Ssrc, kind: RtpCodecKind, codec: RTCRtpCodec) -> Arc<TrackLocalStaticRTP> {
    let id = if kind == RtpCodecKind::Audio {
        "sound"
    } else {
        "screen"
    };
    Arc::new(TrackLocalStaticRTP::new(MediaStreamTrack::new(
        "porthole".to_owned(),
        id.to_owned(),
        id.to_owned(),
        kind,
        vec![RTCRtpEncodingParameters {
            rtp_coding_parameters: RTCRtpCodingParameters {
                ssrc: Some(ssrc.0),
                ..Default::default()
            },
            codec,
            ..Default::default()
        }],
    )))
}

/// ICE settings both ends use: no mDNS candidates (peers' real addresses are learnt from
/// their checks, and nothing multicasts), checks every 50 ms, loopback candidates kept.
pub(crate) fn ice_settings() -> SettingEngineBuilder {
    SettingEngineBuilder::new()
        .with_multicast_dns_mode(rtc::ice::mdns::MulticastDnsMode::Disabled)
        .with_ice_connection_attempts(Some(Duration::from_millis(50)), Some(40))
        .with_include_loopback_candidate(true)
}

/// A viewer's live connection. Dropping it does not close it: call [`Viewer::close`].
pub struct Viewer {
    pub pc: Arc<dyn PeerConnection>,
    /// What the viewer's path can carry (congestion control).
    pub path: Arc<PathEstimate>,
    tasks: Vec<tokio::task::JoinHandle<()>>,
}

/// A viewer just answered: its connection, and what its owner hands on (each part to the
/// one task that reads it).
pub struct Answered {
    pub viewer: Viewer,
    /// The SDP answer for the viewer.
    pub answer: String,
    pub events: mpsc::UnboundedReceiver<ViewerEvent>,
    /// Data channels the viewer opened (see `docs/protocol.md`).
    pub data_channels: mpsc::UnboundedReceiver<Arc<dyn DataChannel>>,
}

impl Viewer {
    /// Answers `offer` (one that passed [`parse_offer`]) and starts sending video from
    /// `video` (and audio from `audio`, when the share has it and the viewer wants it) once
    /// connected.
    pub async fn answer(
        offer: RTCSessionDescription,
        ice: &IceConfig,
        identity: Option<&ShareIdentity>,
        video: Arc<MediaFanout>,
        audio: Option<Arc<MediaFanout>>,
        keyframes: &Arc<KeyframeGate>,
    ) -> Result<Answered, PeerError> {
        let mut media_engine = MediaEngine::default();
        media_engine
            .register_codec(
                RTCRtpCodecParameters {
                    rtp_codec: h264_codec(),
                    payload_type: H264_PAYLOAD_TYPE.0,
                },
                RtpCodecKind::Video,
            )
            .map_err(|e| PeerError::Internal(format!("codec setup: {e}")))?;
        // Opus whenever the offer has audio, also when there is none to send: that section is
        // then answered inactive, with its codec, inside the bundle (strict clients such as
        // aiortc and werift refuse a rejected `m=audio 0` without codecs or ICE credentials).
        if offer.sdp.contains("m=audio") {
            media_engine
                .register_codec(
                    RTCRtpCodecParameters {
                        rtp_codec: opus_codec(),
                        payload_type: OPUS_PAYLOAD_TYPE.0,
                    },
                    RtpCodecKind::Audio,
                )
                .map_err(|e| PeerError::Internal(format!("codec setup: {e}")))?;
        }
        register_extensions(&mut media_engine)?;
        let path = Arc::new(PathEstimate::default());
        let registry = register_default_interceptors(Registry::new(), &mut media_engine)
            .map_err(|e| PeerError::Internal(format!("interceptor setup: {e}")))?
            .with(
                rtc::interceptor::Slot::from(keyframe::SLOT),
                KeyframeRequestForwarder::default(),
            )
            // Retransmissions within a budget, in place of webrtc-rs's resend-everything.
            .with(
                rtc::interceptor::Slot::NackResponder,
                crate::nack::BudgetedNackResponder::new(path.clone(), video.resends.clone()),
            )
            // Send-side congestion control: transport-wide sequence numbers on what we send,
            // the viewer's TWCC feedback into GCC, its estimate published to `path`. (No
            // stock pacer: it would queue audio behind video; `send_media` paces per viewer.)
            .with(
                rtc::interceptor::Slot::CongestionControl,
                rtc::interceptor::CongestionControlBuilder::new(ViewerGcc::new(
                    GCC_MAX_BPS,
                    path.clone(),
                ))
                .build(),
            )
            .with(
                rtc::interceptor::Slot::TwccSender,
                rtc::interceptor::TwccSenderBuilder::new().build(),
            );
        let config = RTCConfigurationBuilder::new()
            .with_certificates(
                identity
                    .map(|i| vec![i.certificate.clone()])
                    .unwrap_or_default(),
            )
            .with_ice_servers(
                ice.servers
                    .iter()
                    .map(|s| RTCIceServer {
                        urls: vec![s.url.clone()],
                        username: s.username.clone(),
                        credential: s.credential.clone(),
                    })
                    .collect(),
            )
            .build();
        // Browsers hide their host addresses behind mDNS names; we learn their real address
        // from their connectivity checks (peer-reflexive candidates), so no mDNS here — it
        // would also multicast on every interface. Checks every 50 ms: connect fast.
        let settings = ice_settings()
            // A silent viewer counts as disconnected after 3 s (default 5) and failed after
            // 10 s (default 25): a dead peer's session and held keys do not linger.
            // Consent checks every 150 ms: a selected pair silent for three of them is taken
            // for dead and the share moves to another pair that answers (the failover in
            // third_party/rtc-ice), instead of waiting seconds for the viewer to notice.
            .with_ice_timeouts(
                Some(Duration::from_secs(3)),
                Some(Duration::from_secs(10)),
                Some(ICE_KEEPALIVE),
            )
            .build();

        let gathered = Arc::new(Notify::new());
        let (events_tx, events) = mpsc::unbounded_channel();
        let (dc_tx, data_channels) = mpsc::unbounded_channel();
        let (connected_tx, connected) = tokio::sync::watch::channel(false);
        let handler = Arc::new(Forwarder {
            gathered: gathered.clone(),
            on_state: Box::new(move |state| {
                tracing::debug!("viewer connection state: {state}");
                // Whether the connection is up (DTLS done): media written before is dropped
                // unsent. Set here, in the callback, before anything else hears of it.
                connected_tx.send_replace(state == RTCPeerConnectionState::Connected);
                viewer_event(state)
            }),
            events: EventSender::Unbounded(events_tx),
            data_channels: Some(dc_tx),
            tracks: None,
        });
        let pc = PeerConnectionBuilder::new()
            .with_configuration(config)
            .with_media_engine(media_engine)
            .with_setting_engine(settings)
            .with_interceptor_registry(registry)
            .with_handler(handler)
            .with_udp_addrs(ice.udp_addrs.clone())
            .build()
            .await
            .map_err(|e| PeerError::Internal(format!("cannot create a peer connection: {e}")))?;
        let pc: Arc<dyn PeerConnection> = Arc::new(pc);

        let keyframes = keyframes.viewer();
        match Self::negotiate(
            &pc,
            offer,
            video,
            audio,
            gathered,
            path.clone(),
            connected,
            keyframes,
        )
        .await
        {
            Ok((answer, tasks)) => Ok(Answered {
                viewer: Self { pc, path, tasks },
                answer,
                events,
                data_channels,
            }),
            Err(e) => {
                let _ = pc.close().await;
                Err(e)
            }
        }
    }

    // One viewer's whole set-up: what it watches, its path and its keyframe budget.
    #[allow(clippy::too_many_arguments)]
    async fn negotiate(
        pc: &Arc<dyn PeerConnection>,
        offer: RTCSessionDescription,
        video: Arc<MediaFanout>,
        audio: Option<Arc<MediaFanout>>,
        gathered: Arc<Notify>,
        path: Arc<PathEstimate>,
        connected: tokio::sync::watch::Receiver<bool>,
        keyframes: Arc<ViewerKeyframes>,
    ) -> Result<(String, Vec<tokio::task::JoinHandle<()>>), PeerError> {
        let ssrc = Ssrc(rand::random());
        let track = local_track(ssrc, RtpCodecKind::Video, h264_codec());
        let wants_audio = offer.sdp.contains("m=audio");
        let offered_audio = audio_mids(&offer.sdp);
        pc.set_remote_description(offer)
            .await
            .map_err(|e| PeerError::BadOffer(format!("the offer was refused: {e}")))?;
        // After the remote offer: adding the track takes over the offer's video transceiver.
        let sender = pc
            .add_track(Arc::clone(&track) as Arc<dyn TrackLocal>)
            .await
            .map_err(|e| PeerError::Internal(format!("cannot add the video track: {e}")))?;
        let audio_track = match &audio {
            Some(_) if wants_audio => {
                let assrc = Ssrc(rand::random());
                let track = local_track(assrc, RtpCodecKind::Audio, opus_codec());
                let sender = pc
                    .add_track(Arc::clone(&track) as Arc<dyn TrackLocal>)
                    .await
                    .map_err(|e| PeerError::Internal(format!("cannot add the audio track: {e}")))?;
                Some((track, sender, assrc))
            }
            _ => {
                // Nothing to send: the offer's audio sections are answered inactive.
                for t in pc.get_transceivers().await {
                    if let Ok(Some(mid)) = t.mid().await {
                        if offered_audio.contains(&mid) {
                            let _ = t.set_direction(RTCRtpTransceiverDirection::Inactive).await;
                        }
                    }
                }
                None
            }
        };
        let answer = pc
            .create_answer(None)
            .await
            .map_err(|e| PeerError::BadOffer(format!("cannot answer this offer: {e}")))?;
        pc.set_local_description(answer)
            .await
            .map_err(|e| PeerError::Internal(format!("cannot apply the answer: {e}")))?;
        let _ = tokio::time::timeout(GATHER_TIMEOUT, gathered.notified()).await;
        let answer = pc
            .local_description()
            .await
            .ok_or_else(|| PeerError::Internal("no local description".into()))?;

        let (payload_type, extensions) = negotiated(&sender).await.ok_or_else(|| {
            PeerError::BadOffer("the offer accepts no H.264 (packetization-mode=1)".into())
        })?;
        tracing::debug!(?extensions, "video header extensions");

        let frames = video.subscribe();
        // The encoder's target takes this path in now; its first keyframe is asked for once
        // connected (one asked for here was made before the viewer could take it: a wasted
        // 1080p IDR for every other viewer, and a second one for this viewer at connect).
        video.watch_path(&path);
        let send_task = tokio::spawn(send_media(
            track.clone(),
            frames,
            RtpStamper::new(ssrc, payload_type, rand::random()).with_extensions(extensions),
            video.clone(),
            Some((path, keyframes.clone())),
            connected.clone(),
        ));
        let path_task = tokio::spawn(watch_path_moves(sender.clone(), keyframes.clone()));
        let rtcp_task = tokio::spawn(watch_feedback(track, keyframes));
        let mut tasks = vec![send_task, rtcp_task, path_task];
        if let (Some((track, sender, assrc)), Some(audio)) = (audio_track, audio) {
            match negotiated(&sender).await {
                Some((pt, extensions)) => tasks.push(tokio::spawn(send_media(
                    track,
                    audio.subscribe(),
                    RtpStamper::new(assrc, pt, rand::random()).with_extensions(extensions),
                    audio,
                    None,
                    connected,
                ))),
                None => tracing::info!("the viewer accepts no Opus; sending video only"),
            }
        }
        Ok((answer.sdp, tasks))
    }

    /// Stops sending and closes the connection.
    pub async fn close(&self) {
        for t in &self.tasks {
            t.abort();
        }
        if let Err(e) = self.pc.close().await {
            tracing::debug!("closing a viewer connection: {e}");
        }
    }
}

#[cfg(test)]
mod loopback_tests {
    use super::*;

    #[test]
    fn remote_viewers_get_no_loopback_candidates() {
        let ice = IceConfig {
            servers: vec![],
            udp_addrs: vec!["0.0.0.0:0".into(), "127.0.0.1:0".into()],
        };
        assert_eq!(
            ice.for_peer("10.0.0.9".parse().unwrap()).udp_addrs,
            vec!["0.0.0.0:0"]
        );
        assert_eq!(
            ice.for_peer("127.0.0.1".parse().unwrap()).udp_addrs,
            ice.udp_addrs
        );
        assert_eq!(
            ice.for_peer("::ffff:127.0.0.1".parse().unwrap()).udp_addrs,
            ice.udp_addrs
        );
        let local_only = IceConfig {
            servers: vec![],
            udp_addrs: vec!["127.0.0.1:0".into()],
        };
        assert_eq!(
            local_only.for_peer("10.0.0.9".parse().unwrap()).udp_addrs,
            local_only.udp_addrs
        );
    }

    #[test]
    fn loopback_candidates_are_dropped_from_an_offer() {
        let sdp = "v=0\r\nm=video 9 UDP/TLS/RTP/SAVPF 96\r\n\
            a=candidate:1 1 udp 2130706431 10.214.2.2 50000 typ host\r\n\
            a=candidate:2 1 udp 2130706431 127.0.0.1 50001 typ host\r\n\
            a=candidate:3 1 udp 2130706431 ::1 50002 typ host\r\n\
            a=candidate:4 1 udp 1694498815 203.0.113.7 50003 typ srflx raddr 127.0.0.1 rport 1\r\n\
            a=end-of-candidates\r\n";
        let out = without_loopback_candidates(sdp);
        assert_eq!(
            out,
            "v=0\r\nm=video 9 UDP/TLS/RTP/SAVPF 96\r\n\
            a=candidate:1 1 udp 2130706431 10.214.2.2 50000 typ host\r\n\
            a=candidate:4 1 udp 1694498815 203.0.113.7 50003 typ srflx raddr 127.0.0.1 rport 1\r\n\
            a=end-of-candidates\r\n"
        );
    }
}

#[cfg(test)]
mod codec_tests {
    use super::*;

    fn offer(video: &str) -> String {
        format!(
            "v=0\r\no=- 1 1 IN IP4 0.0.0.0\r\ns=-\r\nt=0 0\r\nm=audio 9 UDP/TLS/RTP/SAVPF 111\r\n\
             a=rtpmap:111 opus/48000/2\r\na=fmtp:111 packetization-mode=1\r\n{video}"
        )
    }

    #[test]
    fn an_offer_takes_our_h264_only_in_mode_1_with_a_compatible_profile() {
        let fits = [
            "profile-level-id=42e01f;packetization-mode=1;level-asymmetry-allowed=1",
            "level-asymmetry-allowed=1;packetization-mode=1;profile-level-id=42001f",
            "packetization-mode=1",
            "profile-level-id=4de01f;packetization-mode=1",
        ];
        for fmtp in fits {
            let sdp = offer(&format!(
                "m=video 9 UDP/TLS/RTP/SAVPF 96\r\na=rtpmap:96 H264/90000\r\na=fmtp:96 {fmtp}\r\n"
            ));
            assert_eq!(video_codec_refusal(&sdp), None, "{fmtp}");
        }
        for fmtp in [
            "profile-level-id=640c1f;packetization-mode=1",
            "profile-level-id=42e01f;packetization-mode=0",
            "profile-level-id=42e01f",
            "profile-level-id=4d001f;packetization-mode=1",
        ] {
            let sdp = offer(&format!(
                "m=video 9 UDP/TLS/RTP/SAVPF 96 97\r\na=rtpmap:96 H264/90000\r\na=fmtp:96 {fmtp}\r\n\
                 a=rtpmap:97 rtx/90000\r\na=fmtp:97 apt=96\r\n"
            ));
            let why = video_codec_refusal(&sdp).expect(fmtp);
            assert!(
                why.contains("Constrained Baseline in packetization-mode 1"),
                "{why}"
            );
            assert!(why.contains("H264 (profile-level-id"), "{why}");
            assert!(!why.contains("rtx"), "{why}");
            assert!(!why.contains("OpenH264"), "{why}");
        }
        // A format that fits anywhere in the list will do (Chrome offers many).
        let sdp = offer(
            "m=video 9 UDP/TLS/RTP/SAVPF 96 102\r\na=rtpmap:96 H264/90000\r\n\
             a=fmtp:96 profile-level-id=640c1f;packetization-mode=1\r\na=rtpmap:102 H264/90000\r\n\
             a=fmtp:102 profile-level-id=42e01f;packetization-mode=1\r\n",
        );
        assert_eq!(video_codec_refusal(&sdp), None);
    }

    #[test]
    fn firefox_without_openh264_is_told_what_to_do() {
        let sdp = offer(
            "m=video 9 UDP/TLS/RTP/SAVPF 120 124 121 99\r\na=rtpmap:120 VP8/90000\r\n\
             a=rtpmap:124 rtx/90000\r\na=rtpmap:121 VP9/90000\r\na=rtpmap:99 AV1/90000\r\n",
        );
        let why = video_codec_refusal(&sdp).unwrap();
        assert!(why.contains("it offers VP8, VP9, AV1"), "{why}");
        assert!(why.contains("OpenH264 plugin"), "{why}");
        assert!(matches!(
            parse_offer(sdp),
            Err(PeerError::BadOffer(m)) if m.contains("OpenH264")
        ));
    }
}
