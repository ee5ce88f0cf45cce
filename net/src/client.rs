//! The viewing side in Rust (native viewer, recorder): a WHEP client that offers to
//! receive video and audio, opens the protocol's data channels, and turns RTP back into
//! H.264 access units and Opus packets.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use bytes::{Bytes, BytesMut};
use http_body_util::{BodyExt, Full};
use hyper::header;
use rtc::data_channel::RTCDataChannelInit;
use rtc::rtcp::payload_feedbacks::picture_loss_indication::PictureLossIndication;
use rtc::rtp::codec::h264::H264Packet;
use rtc::rtp::packetizer::Depacketizer;
use rtc::rtp_transceiver::rtp_sender::RtpCodecKind;
use rtc::rtp_transceiver::{RTCRtpTransceiverDirection, RTCRtpTransceiverInit};
use tokio::sync::mpsc;
use types::Ssrc;
use webrtc::data_channel::{DataChannel, DataChannelEvent};
use webrtc::media_stream::track_remote::{TrackRemote, TrackRemoteEvent};
use webrtc::peer_connection::{
    register_default_interceptors, MediaEngine, PeerConnection, PeerConnectionBuilder,
    RTCPeerConnectionState, RTCSessionDescription, Registry,
};

use crate::handler::{EventSender, Forwarder};
use crate::protocol::{Channel, Message};
use crate::reorder::Reorder;

mod assemble;
mod http;
mod track;
mod url;
mod whep;
pub use assemble::{Assembled, H264Assembler};
use http::*;
use track::*;
use url::bind_addrs;
pub use url::ShareUrl;
pub use whep::*;

#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    #[error("not a Porthole address: {0}")]
    BadUrl(String),
    #[error("no access code: add #code=… to the address or give --code")]
    NoCode,
    #[error("wrong access code (or this is not the share the code belongs to)")]
    WrongCode,
    /// A pairing MAC did not verify: somebody between us and the share changed the
    /// signaling (a relaying man in the middle). Nothing was shown or sent.
    #[error("{}", crate::pairing::NOT_THE_SHARE)]
    NotTheShare,
    #[error("cannot reach the host at {0}: {1}")]
    Unreachable(String, String),
    #[error("the host refused the connection (HTTP {0}): {1}")]
    Refused(u16, String),
    #[error("WebRTC failed: {0}")]
    WebRtc(String),
    #[error("no connection within {0:?}")]
    Timeout(Duration),
    /// The share's HTTP answer broke a limit or made no sense (a broken or hostile host).
    #[error("the host at {0} sent a bad answer: {1}")]
    BadAnswer(String, String),
}

/// Bounds on what the client waits for and reads from a share's HTTP server: a host that
/// never answers, or answers without end, costs a bounded time and memory.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct HttpLimits {
    /// To open the TCP connection.
    pub connect: Duration,
    /// From sending the request to the status line and headers. The share may be asking
    /// its host whether to let us in (up to two minutes, `server::APPROVAL_TIMEOUT`).
    pub response: Duration,
    /// To read the whole body once the headers came.
    pub body: Duration,
    /// Largest body read (an SDP answer is a few KiB; the share takes 64 KiB offers).
    pub max_body: usize,
}

impl Default for HttpLimits {
    fn default() -> Self {
        Self {
            connect: Duration::from_secs(5),
            response: crate::server::APPROVAL_TIMEOUT + Duration::from_secs(10),
            body: Duration::from_secs(10),
            max_body: MAX_ANSWER_BYTES,
        }
    }
}

/// Largest WHEP answer body the client reads.
pub const MAX_ANSWER_BYTES: usize = 256 * 1024;

/// Largest H.264 access unit reassembled, counted in RTP payload bytes fed to it (which
/// also bounds the depacketizer's FU-A buffer). A 1080p keyframe at the highest
/// `--bitrate-kbps` is well under 2 MiB.
pub const MAX_ACCESS_UNIT_BYTES: usize = 8 * 1024 * 1024;

/// What arrives from the share.
#[derive(Debug)]
pub enum ClientEvent {
    Connected,
    /// The connection ended (host stopped, network dropped).
    Ended(String),
    /// One H.264 access unit, Annex B.
    Video(ReceivedUnit),
    /// One Opus packet.
    Audio(ReceivedUnit),
    /// A protocol message from the host (rights, cursor, clipboard, notices).
    Message(Message),
}

#[derive(Clone, Debug)]
pub struct ReceivedUnit {
    pub data: Bytes,
    /// RTP timestamp (90 kHz video, 48 kHz audio).
    pub rtp_time: u32,
    pub keyframe: bool,
    pub received: Instant,
    /// When the host captured it, on the host's wall clock as a 64-bit NTP timestamp
    /// (abs-capture-time header extension), if the share sent it.
    pub capture_ntp: Option<u64>,
    /// The playout delay the share asked for, `(min, max)` in units of 10 ms (the
    /// playout-delay header extension), if sent.
    pub playout_delay: Option<(u16, u16)>,
}

/// The header extensions' ids, from the `a=extmap` lines of a session description.
pub fn negotiated_extensions(sdp: &str) -> crate::video::ExtensionIds {
    crate::video::ExtensionIds::from_negotiated(sdp.lines().filter_map(|line| {
        let rest = line.trim_end().strip_prefix("a=extmap:")?;
        let (id, uri) = rest.split_once(' ')?;
        let id = id.split('/').next()?.parse().ok()?;
        Some((uri.split_whitespace().next()?, id))
    }))
}

/// The abs-capture-time and playout-delay values a packet carries.
fn packet_extensions(
    h: &rtc::rtp::Header,
    ids: crate::video::ExtensionIds,
) -> (Option<u64>, Option<(u16, u16)>) {
    let capture = ids
        .abs_capture_time
        .and_then(|id| h.get_extension(id))
        .and_then(|b| Some(u64::from_be_bytes(b.get(..8)?.try_into().ok()?)));
    let playout = ids
        .playout_delay
        .and_then(|id| h.get_extension(id))
        .filter(|b| b.len() >= 3)
        .map(|b| {
            let v = u32::from(b[0]) << 16 | u32::from(b[1]) << 8 | u32::from(b[2]);
            ((v >> 12) as u16, (v & 0xfff) as u16)
        });
    (capture, playout)
}

/// What the connection's statistics say about the link.
#[derive(Clone, Copy, Debug, Default)]
pub struct LinkStats {
    pub rtt: Option<Duration>,
    pub video_packets_received: u64,
    pub video_packets_lost: u64,
    /// Access units dropped for exceeding `MAX_ACCESS_UNIT_BYTES`.
    pub video_units_oversized: u64,
}

impl LinkStats {
    /// Lost video packets as a fraction of those expected.
    pub fn video_loss(&self) -> f64 {
        let total = self.video_packets_received + self.video_packets_lost;
        if total == 0 {
            0.0
        } else {
            self.video_packets_lost as f64 / total as f64
        }
    }
}

/// How often one lost packet is asked for again (NACK) before it is given up.
pub const MAX_NACKS_PER_PACKET: u16 = 3;

/// The video track and its SSRC, once it has arrived (for keyframe requests).
type VideoTrackSlot = Arc<Mutex<Option<(Arc<dyn TrackRemote>, Ssrc)>>>;

/// What a connection state means to the viewer (`None`: nothing to report).
fn client_event(state: RTCPeerConnectionState) -> Option<ClientEvent> {
    Some(match state {
        RTCPeerConnectionState::Connected => ClientEvent::Connected,
        RTCPeerConnectionState::Failed => ClientEvent::Ended("the connection failed".into()),
        RTCPeerConnectionState::Disconnected => {
            ClientEvent::Ended("the host stopped sharing or the network dropped".into())
        }
        RTCPeerConnectionState::Closed => ClientEvent::Ended("closed".into()),
        _ => return None,
    })
}

/// A connected (or connecting) viewer of a share.
pub struct ShareClient {
    pc: Arc<dyn PeerConnection>,
    has_audio: bool,
    url: ShareUrl,
    /// The pairing that admitted us: signs our `DELETE`.
    pairing: Paired,
    session: String,
    channels: Vec<(Channel, Arc<dyn DataChannel>)>,
    video_track: VideoTrackSlot,
    tasks: Vec<tokio::task::JoinHandle<()>>,
    /// Video units dropped for exceeding `MAX_ACCESS_UNIT_BYTES`.
    oversized: Arc<AtomicU64>,
    closed: std::sync::atomic::AtomicBool,
}

impl ShareClient {
    /// Offers to the share at `url` with `code` (or the URL's own code) and returns the
    /// client and its event stream. Connection progress arrives as events.
    pub async fn connect(
        url: &ShareUrl,
        code: Option<&str>,
    ) -> Result<(Self, mpsc::Receiver<ClientEvent>), ClientError> {
        Self::connect_with_limits(url, code, HttpLimits::default()).await
    }

    /// `connect`, giving the host `name` to show (the share's prompt and viewer list).
    pub async fn connect_as(
        url: &ShareUrl,
        code: Option<&str>,
        name: Option<&str>,
    ) -> Result<(Self, mpsc::Receiver<ClientEvent>), ClientError> {
        Self::connect_inner(url, code, HttpLimits::default(), name).await
    }

    /// `connect`, with its own bounds on the share's HTTP answer.
    pub async fn connect_with_limits(
        url: &ShareUrl,
        code: Option<&str>,
        limits: HttpLimits,
    ) -> Result<(Self, mpsc::Receiver<ClientEvent>), ClientError> {
        Self::connect_inner(url, code, limits, None).await
    }

    async fn connect_inner(
        url: &ShareUrl,
        code: Option<&str>,
        limits: HttpLimits,
        name: Option<&str>,
    ) -> Result<(Self, mpsc::Receiver<ClientEvent>), ClientError> {
        let code = code
            .map(str::to_owned)
            .or_else(|| url.code.clone())
            .ok_or(ClientError::NoCode)?;
        // Pairing runs while the offer is made and candidates gathered: at most one round
        // trip is added before the offer goes out. A wrong code is found here.
        let mut pairing = {
            let url = url.clone();
            AbortOnDrop(tokio::spawn(
                async move { pair(&url, &code, &limits).await },
            ))
        };
        let webrtc = |e: webrtc::error::Error| ClientError::WebRtc(e.to_string());
        let mut media_engine = MediaEngine::default();
        media_engine.register_default_codecs().map_err(webrtc)?;
        crate::peer::register_extensions(&mut media_engine)
            .map_err(|e| ClientError::WebRtc(e.to_string()))?;
        let registry = register_default_interceptors(Registry::new(), &mut media_engine)
            .map_err(webrtc)?
            // webrtc-rs NACKs a missing packet every 100 ms for as long as it is in the
            // 512-packet log. Behind a congested link that is a retransmission storm: the
            // retransmissions are lost too and NACKed again (seen behind a 1.2 Mbit/s tbf:
            // thousands of packets a second for a 150 kbit/s stream, 97% lost, until the
            // connection stalled). A few tries, as browsers do, 20 ms apart (not 100: the
            // reorder buffer waits 80 ms for them); then the lost frame is given up and a
            // keyframe asked for (`H264Assembler`).
            .with(
                rtc::interceptor::Slot::NackGenerator,
                rtc::interceptor::NackGeneratorBuilder::new()
                    .with_interval(crate::reorder::NACK_INTERVAL)
                    .with_max_nacks_per_packet(MAX_NACKS_PER_PACKET)
                    .build(),
            );
        let (events_tx, events) = mpsc::channel(256);
        let (tracks_tx, mut tracks_rx) = mpsc::unbounded_channel();
        let gathered = Arc::new(tokio::sync::Notify::new());
        // Loopback for a share on this machine; otherwise the LAN interfaces only (a remote
        // share cannot reach our 127.0.0.1, and offering it only makes failing checks).
        let bind = bind_addrs(&url.host);
        let pc = PeerConnectionBuilder::new()
            .with_media_engine(media_engine)
            .with_interceptor_registry(registry)
            .with_setting_engine(crate::peer::ice_settings().build())
            .with_handler(Arc::new(Forwarder {
                gathered: gathered.clone(),
                on_state: Box::new(client_event),
                events: EventSender::Bounded(events_tx.clone()),
                data_channels: None,
                tracks: Some(tracks_tx),
            }))
            .with_udp_addrs(bind)
            .build()
            .await
            .map_err(webrtc)?;
        let pc: Arc<dyn PeerConnection> = Arc::new(pc);
        for kind in [RtpCodecKind::Video, RtpCodecKind::Audio] {
            pc.add_transceiver_from_kind(
                kind,
                Some(RTCRtpTransceiverInit {
                    direction: RTCRtpTransceiverDirection::Recvonly,
                    ..Default::default()
                }),
            )
            .await
            .map_err(webrtc)?;
        }
        let mut channels = Vec::new();
        for (ch, ordered, retransmits) in [
            (Channel::Pointer, false, Some(0)),
            (Channel::Input, true, None),
            (Channel::Clipboard, true, None),
        ] {
            let dc = pc
                .create_data_channel(
                    ch.label(),
                    Some(RTCDataChannelInit {
                        ordered,
                        max_packet_life_time: None,
                        max_retransmits: retransmits,
                        protocol: String::new(),
                        negotiated: None,
                    }),
                )
                .await
                .map_err(webrtc)?;
            channels.push((ch, dc));
        }
        let offer = pc.create_offer(None).await.map_err(webrtc)?;
        pc.set_local_description(offer).await.map_err(webrtc)?;
        let _ = tokio::time::timeout(Duration::from_secs(2), gathered.notified()).await;
        let offer = pc
            .local_description()
            .await
            .ok_or_else(|| ClientError::WebRtc("no offer".into()))?;

        let paired = match (&mut pairing.0).await {
            Ok(Ok(paired)) => paired,
            Ok(Err(e)) => {
                let _ = pc.close().await;
                return Err(e);
            }
            Err(e) => {
                let _ = pc.close().await;
                return Err(ClientError::WebRtc(format!("pairing task: {e}")));
            }
        };
        let body = offer.sdp.into_bytes();
        let request = Request {
            method: "POST",
            path: "/whep",
            authorization: Some(paired.authorization("POST", "/whep", &body)),
            body: Some(("application/sdp", body)),
            name: name.map(str::to_owned),
        };
        let answer = match http(url, request, &limits).await.and_then(|r| {
            let answer =
                parse_whep_response(&url.authority(), r.status, r.location.as_deref(), &r.body)?;
            // Both fingerprints are in the offer we signed and this answer: a relay with
            // its own certificate cannot make this MAC.
            let mac = r.answer_mac.as_deref().and_then(crate::pairing::decode);
            match mac {
                Some(mac) if paired.keys.verify_answer(answer.sdp.as_bytes(), &mac) => Ok(answer),
                _ => Err(ClientError::NotTheShare),
            }
        }) {
            Ok(a) => a,
            Err(e) => {
                let _ = pc.close().await;
                return Err(e);
            }
        };
        let WhepAnswer {
            sdp,
            session,
            has_audio,
        } = answer;
        let extensions = negotiated_extensions(&sdp);
        let answer = match RTCSessionDescription::answer(sdp) {
            Ok(a) => a,
            Err(e) => {
                let _ = pc.close().await;
                return Err(ClientError::BadAnswer(url.authority(), e.to_string()));
            }
        };
        pc.set_remote_description(answer).await.map_err(webrtc)?;

        let mut tasks = Vec::new();
        for (ch, dc) in &channels {
            tasks.push(tokio::spawn(read_channel(
                *ch,
                dc.clone(),
                events_tx.clone(),
            )));
        }
        let video_track: VideoTrackSlot = Arc::default();
        let oversized = Arc::new(AtomicU64::new(0));
        {
            let video_track = video_track.clone();
            let events = events_tx.clone();
            let oversized = oversized.clone();
            tasks.push(tokio::spawn(async move {
                while let Some(track) = tracks_rx.recv().await {
                    let kind = track.kind().await;
                    let ssrc = Ssrc(track.ssrcs().await.first().copied().unwrap_or(0));
                    if kind == RtpCodecKind::Video {
                        *video_track.lock().unwrap_or_else(|e| e.into_inner()) =
                            Some((track.clone(), ssrc));
                    }
                    tokio::spawn(read_track(
                        track,
                        kind,
                        ssrc,
                        extensions,
                        events.clone(),
                        oversized.clone(),
                    ));
                }
            }));
        }
        Ok((
            Self {
                pc,
                has_audio,
                url: url.clone(),
                pairing: paired,
                session,
                channels,
                video_track,
                tasks,
                oversized,
                closed: Default::default(),
            },
            events,
        ))
    }

    /// Whether the share's answer says it will send audio (known before any arrives, so a
    /// recording can lay out its tracks at once).
    pub fn has_audio(&self) -> bool {
        self.has_audio
    }

    /// Sends a protocol message on its channel. False if that channel is not open or the
    /// message is not valid (`Message::encode` refuses it).
    pub async fn send(&self, msg: &Message) -> bool {
        let ch = msg.channel();
        let Some((_, dc)) = self.channels.iter().find(|(c, _)| *c == ch) else {
            return false;
        };
        match msg.encode() {
            Ok(bytes) => dc.send(BytesMut::from(&bytes[..])).await.is_ok(),
            Err(e) => {
                tracing::warn!("not sending a 0x{:02x} message: {e}", msg.type_byte());
                false
            }
        }
    }

    /// Round-trip time and video loss, from the connection's statistics.
    pub async fn link_stats(&self) -> LinkStats {
        let report = self
            .pc
            .get_stats(Instant::now(), webrtc::peer_connection::StatsSelector::None)
            .await;
        let rtt = report
            .candidate_pairs()
            .filter(|p| p.nominated)
            .map(|p| p.current_round_trip_time)
            .find(|r| *r > 0.0);
        let (mut received, mut lost) = (0u64, 0i64);
        for s in report.inbound_rtp_streams() {
            if s.received_rtp_stream_stats.rtp_stream_stats.kind == RtpCodecKind::Video {
                received += s.received_rtp_stream_stats.packets_received;
                lost += s.received_rtp_stream_stats.packets_lost;
            }
        }
        LinkStats {
            rtt: rtt.map(Duration::from_secs_f64),
            video_packets_received: received,
            video_packets_lost: lost.max(0) as u64,
            video_units_oversized: self.oversized.load(Ordering::Relaxed),
        }
    }

    /// Asks the host for a keyframe (PLI), e.g. when recording starts.
    pub async fn request_keyframe(&self) {
        let track = self
            .video_track
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone();
        if let Some((track, ssrc)) = track {
            let _ = track
                .write_rtcp(vec![Box::new(PictureLossIndication {
                    sender_ssrc: 0,
                    media_ssrc: ssrc.0,
                })])
                .await;
        }
    }

    /// Leaves the share: DELETEs the session (so the host drops it at once), stops the
    /// tasks and closes the connection. Takes `&self` (the GUI's background tasks hold the
    /// client too) and is idempotent.
    pub async fn close(&self) {
        if self.closed.swap(true, Ordering::AcqRel) {
            return;
        }
        if !self.session.is_empty() {
            let request = Request {
                method: "DELETE",
                path: &self.session,
                authorization: Some(self.pairing.authorization("DELETE", &self.session, b"")),
                body: None,
                name: None,
            };
            let _ = tokio::time::timeout(
                Duration::from_secs(2),
                http(&self.url, request, &HttpLimits::default()),
            )
            .await;
        }
        for t in &self.tasks {
            t.abort();
        }
        let _ = self.pc.close().await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_client_gathers_candidates_of_the_family_it_reached_the_share_by() {
        assert_eq!(bind_addrs("127.0.0.1"), vec!["127.0.0.1:0"]);
        assert_eq!(bind_addrs("::1"), vec!["[::1]:0"]);
        assert_eq!(bind_addrs("localhost"), vec!["127.0.0.1:0"]);
        assert_eq!(bind_addrs("10.213.0.1"), vec!["0.0.0.0:0"]);
        assert_eq!(bind_addrs("fd00:213::1"), vec!["[::]:0"]);
        assert_eq!(bind_addrs("pt-a.local"), vec!["0.0.0.0:0"]);
    }
    use rtc::rtp::codec::h264::H264Payloader;
    use rtc::rtp::packetizer::Payloader;

    #[test]
    fn audio_in_the_answer_is_recognised() {
        let with = "v=0\r\nm=video 9 UDP/TLS/RTP/SAVPF 102\r\na=sendonly\r\nm=audio 9 UDP/TLS/RTP/SAVPF 111\r\na=sendonly\r\n";
        assert!(answer_sends_audio(with));
        let rejected = "v=0\r\nm=audio 0 UDP/TLS/RTP/SAVPF 0\r\nm=video 9 X 102\r\na=sendonly\r\n";
        assert!(!answer_sends_audio(rejected));
        let inactive = "v=0\r\nm=audio 9 X 111\r\na=inactive\r\n";
        assert!(!answer_sends_audio(inactive));
        assert!(!answer_sends_audio("v=0\r\nm=video 9 X 102\r\n"));
    }

    #[test]
    fn urls_parse() {
        assert_eq!(
            ShareUrl::parse("http://192.168.1.5:7380/#code=abc123def").unwrap(),
            ShareUrl {
                host: "192.168.1.5".into(),
                port: 7380,
                code: Some("abc123def".into())
            }
        );
        let u = ShareUrl::parse("http://[::1]:80/#code=x1y2z3").unwrap();
        assert_eq!((u.host.as_str(), u.port), ("::1", 80));
        assert_eq!(u.authority(), "[::1]:80");
        let u = ShareUrl::parse("myhost").unwrap();
        assert_eq!((u.host.as_str(), u.port, u.code), ("myhost", 7380, None));
        assert!(
            matches!(ShareUrl::parse("https://x/"), Err(ClientError::BadUrl(m)) if m == "https://x/: only http:// shares exist")
        );
        assert!(
            matches!(ShareUrl::parse("http://:80/"), Err(ClientError::BadUrl(m)) if m == "http://:80/")
        );
        // Nothing typed: the error says what to type, not "not a Porthole address: ".
        for empty in ["", "   "] {
            let e = ShareUrl::parse(empty).unwrap_err().to_string();
            assert!(e.contains("type the link the host shows"), "{e:?}");
        }
        assert!(
            matches!(ShareUrl::parse("http://h:notaport/"), Err(ClientError::BadUrl(m)) if m == "http://h:notaport/")
        );
    }

    fn annexb(nals: &[Vec<u8>]) -> Bytes {
        let mut v = Vec::new();
        for n in nals {
            v.extend_from_slice(&[0, 0, 0, 1]);
            v.extend_from_slice(n);
        }
        Bytes::from(v)
    }

    /// Packetizes like the share does; returns (seq, ts, marker, payload).
    fn packets(au: &Bytes, ts: u32, seq0: u16) -> Vec<(u16, u32, bool, Bytes)> {
        let mut p = H264Payloader::default();
        let payloads = p.payload(types::RTP_PAYLOAD_MTU, au).unwrap();
        let n = payloads.len();
        payloads
            .into_iter()
            .enumerate()
            .map(|(i, pl)| (seq0.wrapping_add(i as u16), ts, i == n - 1, pl))
            .collect()
    }

    #[test]
    fn access_units_reassemble_across_fragments() {
        let idr = annexb(&[vec![0x67, 1, 2], vec![0x68, 3], {
            let mut v = vec![0x65];
            v.extend(std::iter::repeat_n(7u8, 5000));
            v
        }]);
        let p_frame = annexb(&[vec![0x41, 9, 9, 9]]);
        let mut a = H264Assembler::new();
        let mut out = Vec::new();
        let mut seq = 65530u16;
        for (au, ts) in [(&idr, 3000), (&p_frame, 6000)] {
            for (s, t, m, pl) in packets(au, ts, seq) {
                if let Assembled::Unit { data, keyframe, .. } = a.push(s, t, m, &pl) {
                    out.push((data, keyframe));
                }
                seq = s.wrapping_add(1);
            }
        }
        assert_eq!(out.len(), 2);
        assert!(out[0].1 && !out[1].1);
        let types: Vec<u8> = annexb::nal_types(&out[0].0).collect();
        assert_eq!(types, vec![7, 8, 5]);
        assert_eq!(out[0].0.len(), idr.len() - 3 * 4 + 3 * 4, "same bytes back");
        assert_eq!(out[1].0.as_ref(), &[0, 0, 0, 1, 0x41, 9, 9, 9]);
    }

    #[test]
    fn a_stream_joined_mid_keyframe_waits_for_a_whole_one() {
        let idr = annexb(&[vec![0x67, 1, 2], vec![0x68, 3], {
            let mut v = vec![0x65];
            v.extend(std::iter::repeat_n(7u8, 5000));
            v
        }]);
        let mut a = H264Assembler::new();
        // The first packets are the tail of a keyframe (FU-A fragments without the start
        // bit): once taken for a keyframe, and recorded without SPS/PPS.
        let tail = packets(&idr, 3000, 10);
        assert!(tail.len() >= 3);
        for (s, t, m, pl) in &tail[2..] {
            assert!(!matches!(a.push(*s, *t, *m, pl), Assembled::Unit { .. }));
        }
        let seq = tail.last().unwrap().0 + 1;
        let mut units = Vec::new();
        for (s, t, m, pl) in packets(&idr, 6000, seq) {
            if let Assembled::Unit { data, keyframe, .. } = a.push(s, t, m, &pl) {
                units.push((data, keyframe));
            }
        }
        assert_eq!(units.len(), 1, "the next whole keyframe");
        assert!(units[0].1);
        assert_eq!(
            annexb::nal_types(&units[0].0).collect::<Vec<_>>(),
            vec![7, 8, 5]
        );
    }

    #[test]
    fn a_keyframe_without_parameter_sets_is_skipped_and_another_asked_for() {
        // One NAL unit per packet (RFC 6184 single NAL unit packets), as some senders do:
        // (payloads of one access unit, its RTP time).
        let mut a = H264Assembler::new();
        let mut seq = 1u16;
        let mut unit = |a: &mut H264Assembler, nals: &[&[u8]], ts: u32| {
            let mut last = Assembled::Nothing;
            for (i, nal) in nals.iter().enumerate() {
                last = a.push(seq, ts, i == nals.len() - 1, &Bytes::copy_from_slice(nal));
                seq += 1;
            }
            last
        };
        let idr: &[u8] = &[0x65, 1, 2, 3];
        let p_frame: &[u8] = &[0x41, 9, 9];
        assert_eq!(unit(&mut a, &[idr], 100), Assembled::NeedKeyframe);
        assert_eq!(unit(&mut a, &[p_frame], 200), Assembled::Nothing);
        // Parameter sets on their own (as some senders send them), then a bare keyframe.
        assert_eq!(
            unit(&mut a, &[&[0x67, 1, 2], &[0x68, 3, 4]], 300),
            Assembled::Nothing
        );
        assert!(matches!(
            unit(&mut a, &[idr], 400),
            Assembled::Unit { keyframe: true, .. }
        ));
        assert!(matches!(
            unit(&mut a, &[p_frame], 500),
            Assembled::Unit {
                keyframe: false,
                ..
            }
        ));
    }

    #[test]
    fn a_lost_packet_drops_until_the_next_keyframe() {
        let big_p = annexb(&[{
            let mut v = vec![0x41];
            v.extend(std::iter::repeat_n(1u8, 4000));
            v
        }]);
        let small_p = annexb(&[vec![0x41, 2, 2, 2]]);
        let idr = annexb(&[vec![0x67, 1, 1], vec![0x68, 2, 2], vec![0x65, 3, 3, 3]]);
        let mut a = H264Assembler::new();
        // Starts waiting for a keyframe: P-frames before it are dropped.
        for (s, t, m, pl) in packets(&small_p, 100, 1) {
            assert_eq!(a.push(s, t, m, &pl), Assembled::Nothing);
        }
        let mut seq = 2;
        for (s, t, m, pl) in packets(&idr, 200, seq) {
            a.push(s, t, m, &pl);
            seq = s + 1;
        }
        // Lose the second fragment of a P-frame.
        let pk = packets(&big_p, 300, seq);
        assert_eq!(
            a.push(pk[0].0, pk[0].1, pk[0].2, &pk[0].3),
            Assembled::Nothing
        );
        assert_eq!(
            a.push(pk[2].0, pk[2].1, pk[2].2, &pk[2].3),
            Assembled::NeedKeyframe
        );
        for (s, t, m, pl) in &pk[3..] {
            assert_eq!(
                a.push(*s, *t, *m, pl),
                Assembled::Nothing,
                "rest of a broken unit"
            );
        }
        seq = pk.last().unwrap().0 + 1;
        for (s, t, m, pl) in packets(&small_p, 400, seq) {
            assert_eq!(
                a.push(s, t, m, &pl),
                Assembled::Nothing,
                "P-frame after a loss"
            );
            seq = s + 1;
        }
        let mut got = None;
        for (s, t, m, pl) in packets(&idr, 500, seq) {
            if let Assembled::Unit { keyframe, .. } = a.push(s, t, m, &pl) {
                got = Some(keyframe);
            }
        }
        assert_eq!(got, Some(true), "the keyframe resumes the stream");
    }

    #[test]
    fn an_endless_access_unit_is_dropped_counted_and_a_keyframe_asked_for() {
        // A host that sends FU-A fragments of one unit without end (no marker, no end bit)
        // would grow the reassembly and the depacketizer's fragment buffer without bound.
        let idr = annexb(&[vec![0x67, 1, 1], vec![0x68, 2, 2], vec![0x65, 3, 3, 3]]);
        let mut a = H264Assembler::with_max_unit(64 * 1024);
        let mut seq = 1u16;
        for (s, t, m, pl) in packets(&idr, 100, seq) {
            a.push(s, t, m, &pl);
            seq = s.wrapping_add(1);
        }
        // FU-A start, then middles forever (same timestamp, no marker).
        let mut start = vec![0x7c, 0x85];
        start.extend(std::iter::repeat_n(9u8, 1000));
        let mut middle = vec![0x7c, 0x05];
        middle.extend(std::iter::repeat_n(9u8, 1000));
        let (start, middle) = (Bytes::from(start), Bytes::from(middle));
        let mut asked = 0;
        let mut most_held = 0;
        for i in 0..10_000 {
            let pl = if i == 0 { &start } else { &middle };
            if a.push(seq, 200, false, pl) == Assembled::NeedKeyframe {
                asked += 1;
            }
            seq = seq.wrapping_add(1);
            most_held = most_held.max(a.held());
        }
        assert_eq!(a.oversized_units(), 1, "one unit dropped and counted");
        assert_eq!(asked, 1, "one keyframe request for it");
        assert!(most_held <= 64 * 1024, "held at most the cap: {most_held}");
        // The next keyframe resumes the stream.
        let mut got = None;
        for (s, t, m, pl) in packets(&idr, 300, seq) {
            if let Assembled::Unit { keyframe, .. } = a.push(s, t, m, &pl) {
                got = Some(keyframe);
            }
        }
        assert_eq!(got, Some(true));
        // The default cap is what `new` uses.
        assert_eq!(H264Assembler::new().max_unit, MAX_ACCESS_UNIT_BYTES);
    }

    #[test]
    fn whep_answers_are_judged_before_use() {
        let ok = parse_whep_response(
            "h:1",
            201,
            Some(b"/whep/abc-1_2"),
            b"v=0\r\nm=video 9 X 1\r\n",
        )
        .unwrap();
        assert_eq!(ok.session, "/whep/abc-1_2");
        assert!(!ok.has_audio);
        assert!(matches!(
            parse_whep_response("h:1", 401, None, b""),
            Err(ClientError::WrongCode)
        ));
        for loc in [
            &b"http://evil.example/whep/x"[..],
            b"/whep/",
            b"/api/stats",
            b"/whep/../api",
            b"/whep/a b",
            b"\xff",
        ] {
            assert!(
                matches!(
                    parse_whep_response("h:1", 201, Some(loc), b"v=0\r\n"),
                    Err(ClientError::BadAnswer(..))
                ),
                "{loc:?}"
            );
        }
        assert!(matches!(
            parse_whep_response("h:1", 201, None, b"v=0\r\n"),
            Err(ClientError::BadAnswer(host, why)) if host == "h:1" && why.contains("no usable Location")
        ));
        assert!(matches!(
            parse_whep_response("h:1", 201, Some(b"/whep/x"), b"<html>"),
            Err(ClientError::BadAnswer(host, why)) if host == "h:1" && why.contains("not SDP")
        ));
        // A refusal's text is shown: short, and without terminal escapes.
        let long = format!("\x1b]0;owned\x07{}", "y".repeat(5000));
        match parse_whep_response("h:1", 403, None, long.as_bytes()) {
            Err(ClientError::Refused(403, text)) => {
                assert!(text.chars().count() <= MAX_REFUSAL_CHARS);
                assert!(!text.contains('\x1b') && !text.contains('\x07'));
            }
            other => panic!("{other:?}"),
        }
    }
}
