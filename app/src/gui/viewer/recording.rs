//! Recording in the viewer: the Record / Record as… / Stop recording buttons, the time and
//! size while it runs, and `porthole view --record FILE`. The file is written by
//! `crate::recording` (the driver `porthole record` uses too), fed by the connection's
//! task through [`SharedRecording`].

use std::path::PathBuf;
use std::sync::{mpsc, Arc, Mutex, MutexGuard};
use std::time::Instant;

use eframe::egui;
use net::client::ReceivedUnit;

use super::connection::Connection;
use crate::recording::Recording;

/// The recording in progress, shared with the connection's task that feeds it.
#[derive(Default)]
struct Slot {
    recording: Option<Recording>,
    /// Set when writing failed: shown to the user; recording stopped, viewing goes on.
    error: Option<String>,
    /// `--record FILE`: start as soon as connected.
    start_path: Option<PathBuf>,
}

/// The recording as the connection's task sees it.
#[derive(Clone, Default)]
pub struct SharedRecording(Arc<Mutex<Slot>>);

impl SharedRecording {
    fn lock(&self) -> MutexGuard<'_, Slot> {
        self.0.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Connected: `porthole view --record FILE` starts its file (`with_audio`: the share's
    /// answer says sound comes).
    pub fn connected(&self, with_audio: bool) {
        let mut slot = self.lock();
        if let Some(path) = slot.start_path.take() {
            match Recording::create(&path, with_audio) {
                Ok(rec) => slot.recording = Some(rec),
                Err(e) => slot.error = Some(e.to_string()),
            }
        }
    }

    /// Feeds a video unit to the recording, if any. Returns true when the sender should be
    /// asked for a keyframe now.
    pub fn video(&self, unit: &ReceivedUnit) -> bool {
        let mut slot = self.lock();
        let Some(rec) = slot.recording.as_mut() else {
            return false;
        };
        match rec.video(unit, Instant::now()) {
            Ok(ask) => ask,
            Err(e) => {
                stopped(&mut slot, &e);
                false
            }
        }
    }

    pub fn audio(&self, unit: &ReceivedUnit) {
        let mut slot = self.lock();
        if let Some(Err(e)) = slot.recording.as_mut().map(|rec| rec.audio(unit)) {
            stopped(&mut slot, &e);
        }
    }
}

/// Writing failed: the recording stops (saying why), viewing goes on.
fn stopped(slot: &mut Slot, e: &media::record::RecordError) {
    tracing::error!("recording stopped: {e}");
    slot.error = Some(format!("Recording stopped: {e}"));
    slot.recording = None;
}

pub struct RecordingControls {
    shared: SharedRecording,
    /// A file chosen in the save dialog, arriving from the dialog's task.
    chosen_path: Option<mpsc::Receiver<Option<PathBuf>>>,
}

impl RecordingControls {
    /// `start_path`: `porthole view --record FILE`, started once connected.
    pub fn new(start_path: Option<PathBuf>) -> Self {
        let shared = SharedRecording::default();
        shared.lock().start_path = start_path;
        Self {
            shared,
            chosen_path: None,
        }
    }

    /// What the connection's task feeds.
    pub fn shared(&self) -> SharedRecording {
        self.shared.clone()
    }

    /// The record button, and the recording's time and size while it runs.
    pub fn ui(&mut self, ui: &mut egui::Ui, connection: &Connection) {
        if let Some(rx) = &self.chosen_path {
            if let Ok(choice) = rx.try_recv() {
                self.chosen_path = None;
                if let Some(path) = choice {
                    self.start(path, connection);
                }
            }
        }
        let mut slot = self.shared.lock();
        match &slot.recording {
            Some(rec) => {
                let secs = rec.recorder().duration().as_secs();
                let bytes = rec.recorder().bytes_written() as f64;
                let size = if bytes < 1_000_000.0 {
                    format!("{:.0} kB", bytes / 1000.0)
                } else {
                    format!("{:.1} MB", bytes / 1_000_000.0)
                };
                if ui.button("Stop recording").clicked() {
                    if let Some(rec) = slot.recording.take() {
                        if let Err(e) = rec.finish(Some(Instant::now())) {
                            slot.error = Some(e.to_string());
                        }
                    }
                } else {
                    ui.colored_label(
                        egui::Color32::from_rgb(220, 40, 40),
                        format!("REC {:02}:{:02}  {size}", secs / 60, secs % 60),
                    );
                }
            }
            None => {
                drop(slot);
                if ui.button("Record").clicked() {
                    self.start(default_recording_path(), connection);
                }
                if ui.button("Record as…").clicked() && self.chosen_path.is_none() {
                    let (tx, rx) = mpsc::channel();
                    connection.runtime().spawn(async move {
                        let file = rfd::AsyncFileDialog::new()
                            .set_file_name(
                                default_recording_path()
                                    .file_name()
                                    .map(|n| n.to_string_lossy().into_owned())
                                    .unwrap_or_default(),
                            )
                            .add_filter("MP4 video", &["mp4"])
                            .save_file()
                            .await;
                        let _ = tx.send(file.map(|f| f.path().to_owned()));
                    });
                    self.chosen_path = Some(rx);
                }
                let slot = self.shared.lock();
                if let Some(e) = &slot.error {
                    ui.colored_label(ui.visuals().error_fg_color, e);
                }
            }
        }
    }

    fn start(&mut self, path: PathBuf, connection: &Connection) {
        // The share's answer says whether sound comes (before connecting: no sound track).
        let with_audio = connection.client().is_some_and(|c| c.has_audio());
        let mut slot = self.shared.lock();
        slot.error = None;
        let mut ask = false;
        match Recording::create(&path, with_audio) {
            Ok(mut rec) => {
                // The file must start at a keyframe: ask for one now.
                ask = rec.keyframe_due(Instant::now());
                slot.recording = Some(rec);
            }
            Err(e) => slot.error = Some(e.to_string()),
        }
        drop(slot);
        if ask {
            connection.spawn_with_client(|client| async move { client.request_keyframe().await });
        }
    }

    /// The connection ended (`stopped_at`: `None`) or its user left it (when): the file is
    /// finished. (A `--record` that has not started yet still starts on the next connection.)
    pub fn finish(&self, stopped_at: Option<Instant>) {
        if let Some(rec) = self.shared.lock().recording.take() {
            let _ = rec.finish(stopped_at);
        }
    }
}

/// `~/Videos/porthole-<unix time>.mp4` (the XDG videos dir, else the home dir).
fn default_recording_path() -> PathBuf {
    let dir = directories::UserDirs::new()
        .and_then(|u| {
            u.video_dir()
                .map(|p| p.to_owned())
                .or_else(|| Some(u.home_dir().to_owned()))
        })
        .unwrap_or_else(std::env::temp_dir);
    let stamp = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap_or_default()
        .as_secs();
    dir.join(format!("porthole-{stamp}.mp4"))
}
