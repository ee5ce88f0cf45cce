//! What a viewer's tasks do once it is connected: send each stream from its fan-out
//! (paced, within its budget), follow its path moves and its keyframe requests.

use super::*;

/// Packets go out at this multiple of the path estimate (libwebrtc's pacing factor): a
/// keyframe is spread over a few tens of milliseconds instead of bursting into a queue…
pub(super) const PACING_FACTOR: f64 = 2.5;
/// …but this much may go at once, so on a link with room a frame is never held.
pub(super) const PACING_BURST: Duration = Duration::from_millis(40);
/// A viewer dropped for its budget asks for a keyframe at most this often…
pub(super) const RESYNC_INTERVAL: Duration = Duration::from_secs(1);
/// …and a hopeless one no more often than its link carries the last keyframe, up to this.
pub(super) const MAX_OWN_SPACING: Duration = Duration::from_secs(10);

/// How far apart a hopeless viewer's keyframes must be for its link (at `estimate_bps`)
/// to carry each before the next: the last keyframe's size at that rate.
fn own_keyframe_spacing(keyframe_bytes: u64, estimate_bps: u64) -> Duration {
    if estimate_bps == 0 {
        return MAX_OWN_SPACING;
    }
    Duration::from_secs_f64(keyframe_bytes as f64 * 8.0 / estimate_bps as f64).min(MAX_OWN_SPACING)
}

/// Spreads one viewer's packets at `PACING_FACTOR` times its estimate (a byte budget of
/// `PACING_BURST`, starting empty): returns how long to wait before the next `bytes` may go.
pub(super) struct Pacer(ByteBudget);

impl Pacer {
    pub(super) fn new(now: Instant) -> Self {
        Self(ByteBudget::empty(now, PACING_BURST))
    }

    pub(super) fn delay(&mut self, now: Instant, estimate_bps: u64, bytes: usize) -> Duration {
        let rate = estimate_bps as f64 / 8.0 * PACING_FACTOR;
        self.0.fill(now, rate);
        self.0.spend(bytes);
        self.0.wait(rate)
    }
}

/// Sends one stream (video or audio) from `fanout` to one viewer.
pub(super) async fn send_media(
    track: Arc<TrackLocalStaticRTP>,
    frames: broadcast::Receiver<Arc<crate::video::PayloadedUnit>>,
    mut stamper: RtpStamper,
    fanout: Arc<MediaFanout>,
    // Video only: the viewer's path and its keyframe requests (the share's limit).
    video_only: Option<(Arc<PathEstimate>, Arc<ViewerKeyframes>)>,
    mut connected: tokio::sync::watch::Receiver<bool>,
) {
    let (path, keyframes) = match video_only {
        Some((p, k)) => (Some(p), Some(k)),
        None => (None, None),
    };
    let request_keyframe = |reason| {
        if let Some(k) = &keyframes {
            k.request(reason);
        }
    };
    // Packets written before DTLS is done are dropped unsent (and a paced keyframe could be
    // cut in two, its tail taken for a whole one): start once connected, at a keyframe.
    if connected.wait_for(|up| *up).await.is_err() {
        return;
    }
    // Subscribed before asking, so the keyframe asked for (or one already coming) is seen.
    let mut frames = frames.resubscribe();
    request_keyframe(KeyframeReason::Join);
    let now = Instant::now();
    let mut last_resync: Option<Instant> = Some(now);
    let mut budget = SendBudget::new(now);
    let mut pacer = Pacer::new(now);
    loop {
        let unit = match frames.recv().await {
            Ok(unit) => unit,
            Err(broadcast::error::RecvError::Lagged(n)) => {
                tracing::debug!("viewer fell {n} frames behind; resuming at the next keyframe");
                fanout
                    .units_behind
                    .fetch_add(n, std::sync::atomic::Ordering::Relaxed);
                stamper.lost_units();
                request_keyframe(KeyframeReason::Loss);
                continue;
            }
            Err(broadcast::error::RecvError::Closed) => return,
        };
        let estimate = path.as_ref().map(|p| p.estimate_bps(Instant::now()));
        // A viewer the encoder is not sized for (see `cc::HOPELESS_RATIO`).
        let hopeless = estimate.filter(|&e| !fanout.serves(e));
        if let Some(k) = &keyframes {
            k.set_own_spacing(hopeless.map_or(Duration::ZERO, |e| {
                own_keyframe_spacing(
                    fanout
                        .last_keyframe_bytes
                        .load(std::sync::atomic::Ordering::Relaxed),
                    e,
                )
            }));
        }
        if !stamper.admit(&unit) {
            // Waiting for a keyframe (joined, lost units, or over budget): ask again now
            // and then, or a keyframe refused while in debt would leave it waiting forever.
            if last_resync.is_none_or(|t| t.elapsed() >= RESYNC_INTERVAL) {
                last_resync = Some(Instant::now());
                request_keyframe(KeyframeReason::Loss);
            }
            continue;
        }
        let bytes: usize = unit.payloads.iter().map(|p| p.len() + 40).sum();
        // What a hopeless viewer's link cannot carry is not sent: it resumes at a keyframe.
        // A viewer the encoder is sized for is not cut: the encoder's own pacer holds the
        // average to its estimate, and dropping the frames after a keyframe that overdrew
        // the budget made that keyframe useless (the viewer then waited for the next one:
        // behind 3 Mbit/s, a slideshow of 1080p keyframes).
        if let Some(estimate) = hopeless {
            if !budget.admit(Instant::now(), estimate, bytes) {
                tracing::debug!(
                    estimate,
                    bytes,
                    "unit over this viewer's byte budget: dropped"
                );
                fanout
                    .units_over_budget
                    .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                stamper.lost_units();
                if last_resync.is_none_or(|t| t.elapsed() >= RESYNC_INTERVAL) {
                    last_resync = Some(Instant::now());
                    request_keyframe(KeyframeReason::Loss);
                }
                continue;
            }
        }
        let started = Instant::now();
        for packet in stamper.packets(&unit) {
            if let Some(estimate) = estimate {
                let wait = pacer.delay(Instant::now(), estimate, packet.payload.len() + 40);
                if wait >= Duration::from_millis(1) {
                    tokio::time::sleep(wait).await;
                }
            }
            if let Err(e) = track.write_rtp(packet).await {
                // Not bound yet (still connecting) or gone: the next keyframe restarts it.
                tracing::trace!("media packet not sent: {e}");
                stamper.lost_units();
                break;
            }
        }
        tracing::debug!(
            send_us = started.elapsed().as_micros() as u64,
            since_capture_us = unit.capture_time.elapsed().as_micros() as u64,
            packets = unit.payloads.len(),
            "media unit sent"
        );
    }
}

/// Asks for a keyframe when the viewer's media moves to another candidate pair (the share
/// failed over, or the viewer nominated another): what went into the dead path is lost,
/// and so are the keyframe requests the viewer sent into it.
pub(super) async fn watch_path_moves(
    sender: Arc<dyn webrtc::rtp_transceiver::RtpSender>,
    keyframes: Arc<ViewerKeyframes>,
) {
    let Ok(Some(dtls)) = sender.transport().await else {
        return;
    };
    let ice = dtls.ice_transport();
    let mut tick = tokio::time::interval(PATH_POLL);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut current = None;
    loop {
        tick.tick().await;
        let Ok(pair) = ice.get_selected_candidate_pair().await else {
            return;
        };
        let Some(pair) = pair else { continue };
        if current.as_ref().is_some_and(|c| *c != pair) {
            tracing::info!("the viewer's media moved to {pair}");
            // Like a newcomer: nothing it can decode arrives until a keyframe does.
            keyframes.request(KeyframeReason::Join);
        }
        current = Some(pair);
    }
}

pub(super) async fn watch_feedback(
    track: Arc<TrackLocalStaticRTP>,
    keyframes: Arc<ViewerKeyframes>,
) {
    while let Some(event) = track.poll().await {
        #[allow(irrefutable_let_patterns)]
        if let TrackLocalEvent::OnRtcpPacket(packets) = event {
            if packets
                .iter()
                .any(|p| keyframe::is_keyframe_request(p.as_ref()))
            {
                tracing::debug!("viewer asked for a keyframe (PLI/FIR)");
                keyframes.request(KeyframeReason::Loss);
            }
        }
    }
}
