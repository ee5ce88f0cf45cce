//! `porthole record URL FILE`: receive a share and write it to fragmented MP4, headless.

use std::path::PathBuf;
use std::time::{Duration, Instant};

use anyhow::Context;
use media::record::Recorder;
use net::client::{ClientEvent, ShareClient, ShareUrl};
use net::Message;

#[derive(clap::Args, Debug)]
pub struct RecordArgs {
    /// The link the sharing side shows (or host:port).
    pub url: String,
    /// Where to write the recording (fragmented MP4: H.264 + Opus).
    pub file: PathBuf,
    /// The access code, if the link does not carry it.
    #[arg(long)]
    pub code: Option<String>,
    /// Stop after this many seconds (default: until Ctrl+C or the share ends).
    #[arg(long)]
    pub duration: Option<f64>,
}

pub fn run(args: RecordArgs) -> anyhow::Result<()> {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()?;
    runtime.block_on(record(args))
}

async fn record(args: RecordArgs) -> anyhow::Result<()> {
    let url = ShareUrl::parse(&args.url)?;
    let (client, mut events) = ShareClient::connect(&url, args.code.as_deref()).await?;
    // Whether the share sends audio shows in the first seconds; the file needs to know
    // up front, so wait for the first keyframe and note whether audio came meanwhile.
    let mut recorder: Option<Recorder> = None;
    let mut audio_seen = false;
    let mut pending_video = Vec::new();
    let deadline = args
        .duration
        .map(|s| Instant::now() + Duration::from_secs_f64(s));
    let mut last_pli = Instant::now() - Duration::from_secs(1);
    let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())?;
    let started = Instant::now();
    let outcome: anyhow::Result<()> = loop {
        let until_deadline = deadline
            .map(|d| d.saturating_duration_since(Instant::now()))
            .unwrap_or(Duration::from_secs(3600));
        let event = tokio::select! {
            e = events.recv() => e,
            _ = tokio::time::sleep(until_deadline) => break Ok(()),
            _ = tokio::signal::ctrl_c() => break Ok(()),
            _ = term.recv() => break Ok(()),
        };
        let Some(event) = event else {
            break Ok(());
        };
        match event {
            ClientEvent::Video(unit) => {
                if recorder.is_none() {
                    // Give audio ~300 ms to show itself before the file's layout is fixed.
                    pending_video.push(unit);
                    if started.elapsed() < Duration::from_millis(300) && !audio_seen {
                        continue;
                    }
                    let mut rec = Recorder::create(&args.file, audio_seen)?;
                    for u in pending_video.drain(..) {
                        rec.video(&u.data, u.rtp_time, u.keyframe)?;
                    }
                    recorder = Some(rec);
                } else if let Some(rec) = recorder.as_mut() {
                    if let Err(e) = rec.video(&unit.data, unit.rtp_time, unit.keyframe) {
                        break Err(e.into());
                    }
                }
                if recorder.as_ref().is_some_and(|r| r.wants_keyframe())
                    && last_pli.elapsed() > Duration::from_millis(500)
                {
                    last_pli = Instant::now();
                    client.request_keyframe().await;
                }
            }
            ClientEvent::Audio(unit) => {
                audio_seen = true;
                if let Some(rec) = recorder.as_mut() {
                    if let Err(e) = rec.audio(&unit.data, unit.rtp_time) {
                        break Err(e.into());
                    }
                }
            }
            ClientEvent::Ended(why) => {
                tracing::warn!("the share ended: {why}");
                break Ok(());
            }
            ClientEvent::Message(Message::Notice { text, .. }) => {
                tracing::warn!("the host says: {text}")
            }
            _ => {}
        }
    };
    client.close().await;
    match recorder {
        Some(rec) => {
            let (v, a) = rec.counts();
            let secs = rec.duration().as_secs_f64();
            let bytes = rec.finish().context("finishing the recording")?;
            eprintln!(
                "recorded {secs:.1} s: {v} video frames, {a} audio packets, {bytes} bytes to {}",
                args.file.display()
            );
        }
        None => anyhow::bail!("nothing recorded: no keyframe arrived"),
    }
    outcome
}
