//! `porthole record URL FILE`: receive a share and write it to fragmented MP4, headless.

use std::path::PathBuf;
use std::time::{Duration, Instant};

use anyhow::Context;
use net::client::{ClientEvent, ShareClient, ShareUrl};
use net::protocol::notice;
use net::Message;

use crate::recording::Recording;

#[derive(clap::Args, Debug)]
pub struct RecordArgs {
    /// The link the sharing side shows (or host:port).
    pub url: String,
    /// Where to write the recording (fragmented MP4: H.264 + Opus).
    pub file: PathBuf,
    /// The access code, if the link does not carry it (visible in the process list:
    /// prefer $PORTHOLE_CODE or --code-file).
    #[arg(long)]
    pub code: Option<String>,
    /// Read the access code from the first line of this file (`-`: standard input).
    #[arg(long, value_name = "PATH")]
    pub code_file: Option<PathBuf>,
    /// Stop after this many seconds (default: until Ctrl+C or the share ends).
    #[arg(long)]
    pub duration: Option<f64>,
    /// Overwrite FILE if it exists (without it, an existing file is refused).
    #[arg(long)]
    pub force: bool,
}

pub fn run(mut args: RecordArgs) -> anyhow::Result<()> {
    // Before any thread starts (the environment variable is taken out).
    crate::secrets::warn_if_link_has_code(&args.url);
    args.code = crate::secrets::code(args.code.as_deref(), args.code_file.take().as_deref())?;
    // Refused before connecting: the share never sees a viewer for it.
    if !args.force && args.file.exists() {
        anyhow::bail!(
            "{} already exists; pass --force to overwrite it",
            args.file.display()
        );
    }
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()?;
    runtime.block_on(record(args))
}

async fn record(args: RecordArgs) -> anyhow::Result<()> {
    let url = ShareUrl::parse(&args.url)?;
    let (client, mut events) = ShareClient::connect(&url, args.code.as_deref()).await?;
    let outcome = receive(&args, &client, &mut events).await;
    // Whatever happened, leave the share properly (it frees our session at once).
    client.close().await;
    let (recording, stopped_at) = outcome?;
    let (v, a) = recording.recorder().counts();
    let secs = recording.recorder().media_duration().as_secs_f64();
    let bytes = recording
        .finish(stopped_at)
        .context("finishing the recording")?;
    eprintln!(
        "recorded {secs:.1} s: {v} video frames, {a} audio packets, {bytes} bytes to {}",
        args.file.display()
    );
    Ok(())
}

/// Receives into a recording until the duration is up, a signal, or the share ends; with
/// when it was stopped (`None`: the share ended it).
async fn receive(
    args: &RecordArgs,
    client: &ShareClient,
    events: &mut tokio::sync::mpsc::Receiver<ClientEvent>,
) -> anyhow::Result<(Recording, Option<Instant>)> {
    // The share's answer says whether audio comes, so the file's tracks are known now.
    let mut recording = Recording::create(&args.file, client.has_audio())?;
    let mut deadline: Option<Instant> = None;
    let mut stopped_at = None;
    let mut stop = crate::stop_signal::StopSignal::new()?;
    loop {
        // --duration counts from the first recorded frame, not from connecting.
        let wait = deadline
            .map(|d| d.saturating_duration_since(Instant::now()))
            .unwrap_or(Duration::from_secs(3600));
        let event = tokio::select! {
            e = events.recv() => e,
            _ = tokio::time::sleep(wait) => {
                stopped_at = Some(deadline.unwrap_or_else(Instant::now));
                break;
            }
            _ = stop.recv() => {
                stopped_at = Some(Instant::now());
                break;
            }
        };
        let Some(event) = event else { break };
        match event {
            ClientEvent::Video(unit) => {
                if recording.video(&unit, Instant::now())? {
                    client.request_keyframe().await;
                }
                if recording.started() && deadline.is_none() {
                    deadline = args
                        .duration
                        .map(|s| Instant::now() + Duration::from_secs_f64(s));
                }
            }
            ClientEvent::Audio(unit) => recording.audio(&unit)?,
            ClientEvent::Ended(why) => {
                tracing::warn!("the share ended: {why}");
                break;
            }
            ClientEvent::Message(Message::Notice { code, text, .. })
                if code == notice::REMOVED || code == notice::HOST_STOPPED =>
            {
                // The host's last word: the recording ends here, complete.
                tracing::warn!("the share ended: {text}");
                break;
            }
            ClientEvent::Message(Message::Notice { text, .. }) => {
                tracing::warn!("the host says: {text}")
            }
            _ => {}
        }
    }
    if !recording.started() {
        anyhow::bail!("nothing recorded: no keyframe arrived");
    }
    Ok((recording, stopped_at))
}
