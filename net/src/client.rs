//! The viewing side in Rust (native viewer, recorder): a WHEP client that offers to
//! receive video and audio, opens the protocol's data channels, and turns RTP back into
//! H.264 access units and Opus packets.

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
use webrtc::data_channel::{DataChannel, DataChannelEvent};
use webrtc::media_stream::track_remote::{TrackRemote, TrackRemoteEvent};
use webrtc::peer_connection::{
    register_default_interceptors, MediaEngine, PeerConnection, PeerConnectionBuilder,
    PeerConnectionEventHandler, RTCIceGatheringState, RTCPeerConnectionState,
    RTCSessionDescription, Registry,
};

use crate::protocol::{Channel, Message};

/// Where to connect: `http://host:port/#code=CODE` as the share prints it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ShareUrl {
    pub host: String,
    pub port: u16,
    pub code: Option<String>,
}

/// Where the client gathers host candidates for a share at `host`: loopback for this
/// machine; otherwise the interfaces of the family the share was reached by (`[::]` for
/// an IPv6 address, `0.0.0.0` else), never loopback (a remote share cannot reach it).
fn bind_addrs(host: &str) -> Vec<String> {
    match host.parse::<std::net::IpAddr>() {
        Ok(ip) if ip.is_loopback() => vec![std::net::SocketAddr::new(ip, 0).to_string()],
        Ok(std::net::IpAddr::V6(_)) => vec!["[::]:0".to_owned()],
        _ if host == "localhost" => vec!["127.0.0.1:0".to_owned()],
        _ => vec!["0.0.0.0:0".to_owned()],
    }
}

impl ShareUrl {
    /// Parses a viewer URL (`http://host:port/...#code=CODE`) or a bare `host:port`.
    pub fn parse(text: &str) -> Result<Self, ClientError> {
        let bad = || ClientError::BadUrl(text.to_owned());
        let text = text.trim();
        let rest = text.strip_prefix("http://").unwrap_or(text);
        if rest.starts_with("https://") || text.starts_with("https://") {
            return Err(ClientError::BadUrl(format!(
                "{text}: only http:// shares exist"
            )));
        }
        let (before_fragment, fragment) = rest.split_once('#').unwrap_or((rest, ""));
        let authority = before_fragment.split(['/', '?']).next().ok_or_else(bad)?;
        let (host, port) = if let Some(v6) = authority.strip_prefix('[') {
            let (h, p) = v6.split_once(']').ok_or_else(bad)?;
            (h.to_owned(), p.strip_prefix(':').unwrap_or("7380"))
        } else {
            match authority.rsplit_once(':') {
                Some((h, p)) => (h.to_owned(), p),
                None => (authority.to_owned(), "7380"),
            }
        };
        if host.is_empty() {
            return Err(bad());
        }
        let port = port.parse().map_err(|_| bad())?;
        let code = fragment
            .split('&')
            .find_map(|kv| kv.strip_prefix("code="))
            .filter(|c| !c.is_empty())
            .map(str::to_owned);
        Ok(Self { host, port, code })
    }

    fn authority(&self) -> String {
        if self.host.contains(':') {
            format!("[{}]:{}", self.host, self.port)
        } else {
            format!("{}:{}", self.host, self.port)
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    #[error("not a Porthole address: {0}")]
    BadUrl(String),
    #[error("no access code: add #code=… to the address or give --code")]
    NoCode,
    #[error("wrong access code")]
    WrongCode,
    #[error("cannot reach the host at {0}: {1}")]
    Unreachable(String, String),
    #[error("the host refused the connection (HTTP {0}): {1}")]
    Refused(u16, String),
    #[error("WebRTC failed: {0}")]
    WebRtc(String),
    #[error("no connection within {0:?}")]
    Timeout(Duration),
}

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

/// Reassembles H.264 access units from RTP packets (RFC 6184), noticing losses.
#[derive(Default)]
pub struct H264Assembler {
    depacketizer: H264Packet,
    current: Option<u32>,
    buf: BytesMut,
    last_seq: Option<u16>,
    broken: bool,
    waiting_for_keyframe: bool,
}

/// What one packet produced.
#[derive(Debug, PartialEq, Eq)]
pub enum Assembled {
    Nothing,
    Unit {
        data: Bytes,
        rtp_time: u32,
        keyframe: bool,
    },
    /// Packets were lost: ask the sender for a keyframe (PLI).
    NeedKeyframe,
}

impl H264Assembler {
    pub fn new() -> Self {
        Self {
            waiting_for_keyframe: true,
            ..Default::default()
        }
    }

    pub fn push(&mut self, seq: u16, rtp_time: u32, marker: bool, payload: &Bytes) -> Assembled {
        let mut lost = false;
        if let Some(last) = self.last_seq {
            if seq != last.wrapping_add(1) {
                lost = true;
            }
        }
        self.last_seq = Some(seq);
        if self.current != Some(rtp_time) {
            // A new unit; an unfinished previous one is incomplete.
            self.buf.clear();
            self.broken = false;
            self.depacketizer = H264Packet::default();
            self.current = Some(rtp_time);
        }
        if lost {
            self.broken = true;
            self.waiting_for_keyframe = true;
        }
        match self.depacketizer.depacketize(payload) {
            Ok(nals) => self.buf.extend_from_slice(&nals),
            Err(_) => self.broken = true,
        }
        if lost {
            return Assembled::NeedKeyframe;
        }
        if !marker {
            return Assembled::Nothing;
        }
        let data = self.buf.split().freeze();
        self.current = None;
        if self.broken || data.is_empty() {
            return Assembled::Nothing;
        }
        let keyframe = annexb_nal_types(&data).any(|t| t == 5);
        if self.waiting_for_keyframe && !keyframe {
            return Assembled::Nothing;
        }
        self.waiting_for_keyframe = false;
        Assembled::Unit {
            data,
            rtp_time,
            keyframe,
        }
    }
}

/// Whether an SDP answer has an audio section that will carry media to us.
pub fn answer_sends_audio(sdp: &str) -> bool {
    let mut in_audio = false;
    let mut port_open = false;
    for line in sdp.lines() {
        if let Some(m) = line.strip_prefix("m=") {
            if in_audio && port_open {
                return true;
            }
            let mut parts = m.split_whitespace();
            in_audio = parts.next() == Some("audio");
            port_open = parts.next().is_some_and(|p| p != "0");
            continue;
        }
        if in_audio && (line.starts_with("a=inactive") || line.starts_with("a=recvonly")) {
            port_open = false;
        }
    }
    in_audio && port_open
}

fn annexb_nal_types(data: &[u8]) -> impl Iterator<Item = u8> + '_ {
    data.windows(4)
        .filter_map(|w| (w[..3] == [0, 0, 1]).then_some(w[3] & 0x1f))
}

/// The video track and its SSRC, once it has arrived (for keyframe requests).
type VideoTrackSlot = Arc<Mutex<Option<(Arc<dyn TrackRemote>, u32)>>>;

struct Handler {
    gathered: Arc<tokio::sync::Notify>,
    events: mpsc::Sender<ClientEvent>,
    tracks: mpsc::UnboundedSender<Arc<dyn TrackRemote>>,
}

#[async_trait::async_trait]
impl PeerConnectionEventHandler for Handler {
    async fn on_ice_gathering_state_change(&self, state: RTCIceGatheringState) {
        if state == RTCIceGatheringState::Complete {
            self.gathered.notify_one();
        }
    }
    async fn on_connection_state_change(&self, state: RTCPeerConnectionState) {
        let event = match state {
            RTCPeerConnectionState::Connected => ClientEvent::Connected,
            RTCPeerConnectionState::Failed => ClientEvent::Ended("the connection failed".into()),
            RTCPeerConnectionState::Disconnected => {
                ClientEvent::Ended("the host stopped sharing or the network dropped".into())
            }
            RTCPeerConnectionState::Closed => ClientEvent::Ended("closed".into()),
            _ => return,
        };
        let _ = self.events.send(event).await;
    }
    async fn on_track(&self, track: Arc<dyn TrackRemote>) {
        let _ = self.tracks.send(track);
    }
}

/// A connected (or connecting) viewer of a share.
pub struct ShareClient {
    pc: Arc<dyn PeerConnection>,
    has_audio: bool,
    url: ShareUrl,
    code: String,
    session: String,
    channels: Vec<(Channel, Arc<dyn DataChannel>)>,
    video_track: VideoTrackSlot,
    tasks: Vec<tokio::task::JoinHandle<()>>,
}

impl ShareClient {
    /// Offers to the share at `url` with `code` (or the URL's own code) and returns the
    /// client and its event stream. Connection progress arrives as events.
    pub async fn connect(
        url: &ShareUrl,
        code: Option<&str>,
    ) -> Result<(Self, mpsc::Receiver<ClientEvent>), ClientError> {
        let code = code
            .map(str::to_owned)
            .or_else(|| url.code.clone())
            .ok_or(ClientError::NoCode)?;
        let webrtc = |e: webrtc::error::Error| ClientError::WebRtc(e.to_string());
        let mut media_engine = MediaEngine::default();
        media_engine.register_default_codecs().map_err(webrtc)?;
        crate::peer::register_extensions(&mut media_engine)
            .map_err(|e| ClientError::WebRtc(e.to_string()))?;
        let registry =
            register_default_interceptors(Registry::new(), &mut media_engine).map_err(webrtc)?;
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
            .with_handler(Arc::new(Handler {
                gathered: gathered.clone(),
                events: events_tx.clone(),
                tracks: tracks_tx,
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

        let (status, location, body) =
            match http(url, "POST", "/whep", &code, Some(offer.sdp)).await {
                Ok(r) => r,
                Err(e) => {
                    let _ = pc.close().await;
                    return Err(e);
                }
            };
        let fail = |e: ClientError| async {
            let _ = pc.close().await;
            Err(e)
        };
        match status {
            201 => {}
            401 => return fail(ClientError::WrongCode).await,
            s => return fail(ClientError::Refused(s, body.trim().to_owned())).await,
        }
        let has_audio = answer_sends_audio(&body);
        let extensions = negotiated_extensions(&body);
        let answer = RTCSessionDescription::answer(body).map_err(webrtc)?;
        pc.set_remote_description(answer).await.map_err(webrtc)?;
        let session = location.unwrap_or_default();

        let mut tasks = Vec::new();
        for (ch, dc) in &channels {
            tasks.push(tokio::spawn(read_channel(
                *ch,
                dc.clone(),
                events_tx.clone(),
            )));
        }
        let video_track: VideoTrackSlot = Arc::default();
        {
            let video_track = video_track.clone();
            let events = events_tx.clone();
            tasks.push(tokio::spawn(async move {
                while let Some(track) = tracks_rx.recv().await {
                    let kind = track.kind().await;
                    let ssrc = track.ssrcs().await.first().copied().unwrap_or(0);
                    if kind == RtpCodecKind::Video {
                        *video_track.lock().unwrap_or_else(|e| e.into_inner()) =
                            Some((track.clone(), ssrc));
                    }
                    tokio::spawn(read_track(track, kind, ssrc, extensions, events.clone()));
                }
            }));
        }
        Ok((
            Self {
                pc,
                has_audio,
                url: url.clone(),
                code,
                session,
                channels,
                video_track,
                tasks,
            },
            events,
        ))
    }

    /// Whether the share's answer says it will send audio (known before any arrives, so a
    /// recording can lay out its tracks at once).
    pub fn has_audio(&self) -> bool {
        self.has_audio
    }

    /// Sends a protocol message on its channel. False if that channel is not open.
    pub async fn send(&self, msg: &Message) -> bool {
        let ch = msg.channel();
        let Some((_, dc)) = self.channels.iter().find(|(c, _)| *c == ch) else {
            return false;
        };
        dc.send(BytesMut::from(&msg.encode()[..])).await.is_ok()
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
                    media_ssrc: ssrc,
                })])
                .await;
        }
    }

    /// Ends the session (WHEP DELETE) and closes the connection.
    pub async fn close(self) {
        if !self.session.is_empty() {
            let _ = tokio::time::timeout(
                Duration::from_secs(2),
                http(&self.url, "DELETE", &self.session, &self.code, None),
            )
            .await;
        }
        for t in &self.tasks {
            t.abort();
        }
        let _ = self.pc.close().await;
    }
}

async fn read_channel(ch: Channel, dc: Arc<dyn DataChannel>, events: mpsc::Sender<ClientEvent>) {
    while let Some(event) = dc.poll().await {
        if let DataChannelEvent::OnMessage(m) = event {
            match Message::decode(&m.data) {
                Ok(msg) => {
                    let _ = events.send(ClientEvent::Message(msg)).await;
                }
                Err(e) => tracing::warn!("malformed message from the host on {}: {e}", ch.label()),
            }
        }
    }
}

async fn read_track(
    track: Arc<dyn TrackRemote>,
    kind: RtpCodecKind,
    ssrc: u32,
    extensions: crate::video::ExtensionIds,
    events: mpsc::Sender<ClientEvent>,
) {
    let mut assembler = H264Assembler::new();
    let mut pli_sent: Option<Instant> = None;
    while let Some(event) = track.poll().await {
        let TrackRemoteEvent::OnRtpPacket(packet) = event else {
            continue;
        };
        let received = Instant::now();
        let h = &packet.header;
        let (capture_ntp, playout_delay) = packet_extensions(h, extensions);
        let event = if kind == RtpCodecKind::Audio {
            ClientEvent::Audio(ReceivedUnit {
                data: packet.payload.clone(),
                rtp_time: h.timestamp,
                keyframe: true,
                received,
                capture_ntp,
                playout_delay,
            })
        } else {
            match assembler.push(h.sequence_number, h.timestamp, h.marker, &packet.payload) {
                Assembled::Nothing => continue,
                Assembled::NeedKeyframe => {
                    if pli_sent.is_none_or(|t| t.elapsed() > Duration::from_millis(300)) {
                        pli_sent = Some(received);
                        let _ = track
                            .write_rtcp(vec![Box::new(PictureLossIndication {
                                sender_ssrc: 0,
                                media_ssrc: ssrc,
                            })])
                            .await;
                    }
                    continue;
                }
                Assembled::Unit {
                    data,
                    rtp_time,
                    keyframe,
                } => ClientEvent::Video(ReceivedUnit {
                    data,
                    rtp_time,
                    keyframe,
                    received,
                    capture_ntp,
                    playout_delay,
                }),
            }
        };
        if events.send(event).await.is_err() {
            return;
        }
    }
}

/// One HTTP/1.1 request to the share. Returns (status, Location, body).
async fn http(
    url: &ShareUrl,
    method: &str,
    path: &str,
    code: &str,
    sdp: Option<String>,
) -> Result<(u16, Option<String>, String), ClientError> {
    let authority = url.authority();
    let unreachable = |e: String| ClientError::Unreachable(authority.clone(), e);
    let stream = tokio::time::timeout(
        Duration::from_secs(5),
        tokio::net::TcpStream::connect(&authority),
    )
    .await
    .map_err(|_| unreachable("timed out".into()))?
    .map_err(|e| unreachable(e.to_string()))?;
    let (mut sender, conn) =
        hyper::client::conn::http1::handshake(hyper_util::rt::TokioIo::new(stream))
            .await
            .map_err(|e| unreachable(e.to_string()))?;
    let conn_task = tokio::spawn(conn);
    let mut req = hyper::Request::builder()
        .method(method)
        .uri(path)
        .header(header::HOST, &authority)
        .header(header::AUTHORIZATION, format!("Bearer {code}"));
    if sdp.is_some() {
        req = req.header(header::CONTENT_TYPE, "application/sdp");
    }
    let req = req
        .body(Full::new(Bytes::from(sdp.unwrap_or_default())))
        .map_err(|e| unreachable(e.to_string()))?;
    let resp = sender
        .send_request(req)
        .await
        .map_err(|e| unreachable(e.to_string()))?;
    let status = resp.status().as_u16();
    let location = resp
        .headers()
        .get(header::LOCATION)
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned);
    let body = resp
        .into_body()
        .collect()
        .await
        .map_err(|e| unreachable(e.to_string()))?
        .to_bytes();
    conn_task.abort();
    Ok((
        status,
        location,
        String::from_utf8_lossy(&body).into_owned(),
    ))
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
        assert!(ShareUrl::parse("https://x/").is_err());
        assert!(ShareUrl::parse("http://:80/").is_err());
        assert!(ShareUrl::parse("http://h:notaport/").is_err());
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
        let payloads = p.payload(1148, au).unwrap();
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
        let types: Vec<u8> = annexb_nal_types(&out[0].0).collect();
        assert_eq!(types, vec![7, 8, 5]);
        assert_eq!(out[0].0.len(), idr.len() - 3 * 4 + 3 * 4, "same bytes back");
        assert_eq!(out[1].0.as_ref(), &[0, 0, 0, 1, 0x41, 9, 9, 9]);
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
}
