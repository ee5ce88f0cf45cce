//! What arrives on a connection: the host's data-channel messages (on their own channels
//! only) and its tracks (video reassembled into access units, audio as it comes).

use super::*;

pub(super) async fn read_channel(
    ch: Channel,
    dc: Arc<dyn DataChannel>,
    events: mpsc::Sender<ClientEvent>,
) {
    while let Some(event) = dc.poll().await {
        if let DataChannelEvent::OnMessage(m) = event {
            match Message::decode(&m.data) {
                Ok(msg) if !msg.allowed_on(ch) => tracing::warn!(
                    "refused a 0x{:02x} message from the host on {}: not its channel",
                    msg.type_byte(),
                    ch.label()
                ),
                Ok(msg) => {
                    let _ = events.send(ClientEvent::Message(msg)).await;
                }
                Err(e) => tracing::warn!("malformed message from the host on {}: {e}", ch.label()),
            }
        }
    }
}

pub(super) async fn read_track(
    track: Arc<dyn TrackRemote>,
    kind: RtpCodecKind,
    ssrc: Ssrc,
    extensions: crate::video::ExtensionIds,
    events: mpsc::Sender<ClientEvent>,
    oversized: Arc<AtomicU64>,
) {
    let mut assembler = H264Assembler::new();
    let mut reorder = Reorder::default();
    let mut pli_sent: Option<Instant> = None;
    loop {
        // Video waits a little for the gaps to fill (see `Reorder`); audio goes as it comes.
        let deadline = reorder.deadline();
        let event = tokio::select! {
            event = track.poll() => match event {
                Some(event) => Some(event),
                None => return,
            },
            () = sleep_until_some(deadline) => None,
        };
        let now = Instant::now();
        let packets = match event {
            None => reorder.expire(now),
            Some(TrackRemoteEvent::OnRtpPacket(packet)) if kind == RtpCodecKind::Audio => {
                let h = &packet.header;
                let (capture_ntp, playout_delay) = packet_extensions(h, extensions);
                let unit = ReceivedUnit {
                    data: packet.payload.clone(),
                    rtp_time: h.timestamp,
                    keyframe: true,
                    received: now,
                    capture_ntp,
                    playout_delay,
                };
                if events.send(ClientEvent::Audio(unit)).await.is_err() {
                    return;
                }
                continue;
            }
            Some(TrackRemoteEvent::OnRtpPacket(packet)) => {
                reorder.push(packet.header.sequence_number, packet, now)
            }
            Some(_) => continue,
        };
        for packet in packets {
            let h = &packet.header;
            let (capture_ntp, playout_delay) = packet_extensions(h, extensions);
            let unit = match assembler.push(
                h.sequence_number,
                h.timestamp,
                h.marker,
                &packet.payload,
            ) {
                Assembled::Nothing => continue,
                Assembled::NeedKeyframe => {
                    let dropped = assembler.oversized_units();
                    if dropped > oversized.swap(dropped, Ordering::Relaxed) {
                        tracing::warn!(
                            dropped,
                            "dropped a video frame over {MAX_ACCESS_UNIT_BYTES} bytes; asking for a keyframe"
                        );
                    }
                    if pli_sent.is_none_or(|t| t.elapsed() > Duration::from_millis(300)) {
                        pli_sent = Some(now);
                        let _ = track
                            .write_rtcp(vec![Box::new(PictureLossIndication {
                                sender_ssrc: 0,
                                media_ssrc: ssrc.0,
                            })])
                            .await;
                    }
                    continue;
                }
                Assembled::Unit {
                    data,
                    rtp_time,
                    keyframe,
                } => ReceivedUnit {
                    data,
                    rtp_time,
                    keyframe,
                    received: now,
                    capture_ntp,
                    playout_delay,
                },
            };
            if events.send(ClientEvent::Video(unit)).await.is_err() {
                return;
            }
        }
    }
}

/// Sleeps until `deadline`, or forever without one.
pub(super) async fn sleep_until_some(deadline: Option<Instant>) {
    match deadline {
        Some(d) => tokio::time::sleep_until(d.into()).await,
        None => std::future::pending().await,
    }
}
