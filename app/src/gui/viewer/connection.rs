//! One connection of the viewer to the share: connecting (in the background), the client,
//! what the host gave this session (rights, monitors), its status, messages for the host
//! (sent in order by one task), and its end. The screen starts a new one to reconnect and
//! keeps everything else.

use std::sync::{mpsc, Arc};
use std::time::{Duration, Instant};

use eframe::egui;
use net::client::{ClientEvent, ReceivedUnit, ShareClient, ShareUrl};
use net::Message;

use super::recording::SharedRecording;
use super::stats::Counters;

/// Pause before reconnecting after a drop.
const RECONNECT_AFTER: Duration = Duration::from_secs(2);

/// The host is asked for control at most every 5 s (the share's limit too).
const ASK_CONTROL_EVERY: Duration = Duration::from_secs(5);

/// Where to connect, and the name the host sees.
#[derive(Clone)]
pub struct Target {
    pub url: ShareUrl,
    pub code: Option<String>,
    pub name: Option<String>,
}

/// Where the connection's media goes: the screen's parts, fed by the connection's task.
pub struct Sinks {
    /// The decoder (full: the unit is dropped and a keyframe asked for).
    pub video: mpsc::SyncSender<ReceivedUnit>,
    pub counters: Arc<Counters>,
    pub player: Option<Arc<media::audio::AudioPlayer>>,
    pub recording: SharedRecording,
}

pub enum Status {
    Connecting,
    WaitingForPicture,
    Showing,
    Failed(String),
}

pub struct Connection {
    rt: tokio::runtime::Handle,
    target: Target,
    pub status: Status,
    client: Option<Arc<ShareClient>>,
    connected: mpsc::Receiver<Result<Arc<ShareClient>, String>>,
    /// What the task hands on: the end, and the host's messages.
    events: mpsc::Receiver<ClientEvent>,
    /// The task receiving from the share.
    task: tokio::task::JoinHandle<()>,
    /// Messages for the host, sent in order by one task.
    outbox: Option<tokio::sync::mpsc::UnboundedSender<Message>>,
    /// The rights the host gave (bits of `net::protocol::rights`; 0 until told).
    pub rights: u8,
    /// The host's monitors and the one shared (`Monitors`).
    pub monitors: Option<(u8, Vec<net::protocol::MonitorEntry>)>,
    /// When this viewer last asked the host for control.
    asked_control: Option<Instant>,
    reconnect_at: Option<Instant>,
    /// The host ended the session and said why (no reconnecting then).
    farewell: Option<String>,
}

impl Connection {
    /// Connects to `target` in the background, feeding `sinks` from then on.
    pub fn start(rt: &tokio::runtime::Handle, target: Target, sinks: Sinks) -> Self {
        let (connected_tx, connected) = mpsc::channel();
        let (events_tx, events) = mpsc::channel();
        let task = {
            let Target { url, code, name } = target.clone();
            rt.spawn(async move {
                match ShareClient::connect_as(&url, code.as_deref(), name.as_deref()).await {
                    Ok((client, mut events)) => {
                        let client = Arc::new(client);
                        sinks.recording.connected(client.has_audio());
                        let _ = connected_tx.send(Ok(client.clone()));
                        while let Some(ev) = events.recv().await {
                            match ev {
                                ClientEvent::Video(unit) => {
                                    if sinks.recording.video(&unit) {
                                        client.request_keyframe().await;
                                    }
                                    sinks.counters.video(unit.data.len());
                                    if sinks.video.try_send(unit).is_err() {
                                        // Decoder behind: it will resync on the next keyframe.
                                        client.request_keyframe().await;
                                    }
                                }
                                ClientEvent::Audio(unit) => {
                                    sinks.recording.audio(&unit);
                                    if let Some(p) = &sinks.player {
                                        p.push(&unit.data);
                                    }
                                }
                                other => {
                                    let _ = events_tx.send(other);
                                }
                            }
                        }
                    }
                    Err(e) => {
                        let _ = connected_tx.send(Err(e.to_string()));
                    }
                }
            })
        };
        Self {
            rt: rt.clone(),
            target,
            status: Status::Connecting,
            client: None,
            connected,
            events,
            task,
            outbox: None,
            rights: 0,
            monitors: None,
            asked_control: None,
            reconnect_at: None,
            farewell: None,
        }
    }

    pub fn target(&self) -> &Target {
        &self.target
    }

    pub fn runtime(&self) -> &tokio::runtime::Handle {
        &self.rt
    }

    /// The client, once connected.
    pub fn client(&self) -> Option<&Arc<ShareClient>> {
        self.client.as_ref()
    }

    /// Runs `work` with the client on the runtime, if connected.
    pub fn spawn_with_client<F, Fut>(&self, work: F)
    where
        F: FnOnce(Arc<ShareClient>) -> Fut,
        Fut: std::future::Future<Output = ()> + Send + 'static,
    {
        if let Some(client) = self.client.clone() {
            self.rt.spawn(work(client));
        }
    }

    /// Takes what the task reported: the client once connected, the connection's end (a
    /// reconnect is then due shortly, unless the host said goodbye), and the host's
    /// messages, returned in order.
    pub fn poll(&mut self) -> Vec<Message> {
        if let Ok(result) = self.connected.try_recv() {
            match result {
                Ok(client) => {
                    let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel::<Message>();
                    let sender = client.clone();
                    self.rt.spawn(async move {
                        while let Some(msg) = rx.recv().await {
                            sender.send(&msg).await;
                        }
                    });
                    self.outbox = Some(tx);
                    self.client = Some(client);
                    self.status = Status::WaitingForPicture;
                }
                Err(e) => self.status = Status::Failed(e),
            }
        }
        let mut messages = Vec::new();
        while let Ok(ev) = self.events.try_recv() {
            match ev {
                ClientEvent::Ended(why)
                    if why != "closed"
                        && self.reconnect_at.is_none()
                        && self.farewell.is_none() =>
                {
                    self.status = Status::Failed(format!("Disconnected: {why}. Reconnecting…"));
                    self.reconnect_at = Some(Instant::now() + RECONNECT_AFTER);
                }
                ClientEvent::Message(msg) => messages.push(msg),
                _ => {}
            }
        }
        messages
    }

    /// The host ended the session, saying why: shown, and no reconnecting.
    pub fn ended_by_host(&mut self, text: String) {
        tracing::info!("the host ended the session: {text}");
        self.status = Status::Failed(format!("Disconnected: {text}"));
        self.reconnect_at = None;
        self.farewell = Some(text);
    }

    /// Whether it is time to connect again.
    pub fn reconnect_due(&self) -> bool {
        self.reconnect_at.is_some_and(|t| Instant::now() >= t)
    }

    /// Whether the host gave control.
    pub fn has_control(&self) -> bool {
        self.rights & net::protocol::rights::CONTROL != 0
    }

    /// Queues a message for the host. One task sends them all, in order: a key release
    /// must never overtake its press.
    pub fn send(&self, msg: Message) {
        if let Some(tx) = &self.outbox {
            let _ = tx.send(msg);
        }
    }

    /// The toolbar's status: connecting, waiting, controlling or view only (with "Ask for
    /// control"), or why it failed (with "Reconnect").
    pub fn status_ui(&mut self, ui: &mut egui::Ui) {
        match &self.status {
            Status::Connecting => {
                ui.spinner();
                ui.label("Connecting…");
            }
            Status::WaitingForPicture => {
                ui.spinner();
                ui.label("Waiting for the first frame…");
            }
            Status::Showing => {
                if self.has_control() {
                    ui.label("Controlling");
                } else {
                    ui.label("View only");
                    let asked = self
                        .asked_control
                        .is_some_and(|t| t.elapsed() < ASK_CONTROL_EVERY);
                    if asked {
                        ui.label("Asked the host for control…");
                    } else if ui
                        .button("Ask for control")
                        .on_hover_text("The host sees your request and may give you control")
                        .clicked()
                    {
                        self.send(Message::RequestControl);
                        self.asked_control = Some(Instant::now());
                    }
                }
            }
            Status::Failed(e) => {
                ui.colored_label(ui.visuals().error_fg_color, e);
                if self.reconnect_at.is_none() && ui.button("Reconnect").clicked() {
                    self.reconnect_at = Some(Instant::now());
                    self.farewell = None;
                }
            }
        }
    }

    /// Leaves the share: the task stops feeding anything, and the client closes (in the
    /// background). Closed through the shared handle: background tasks (a keyframe
    /// request, the clipboard) may still hold it, and waiting for them to let go left the
    /// session open on the host (a ghost viewer per Connect -> Leave).
    pub fn close(mut self) {
        self.task.abort();
        // Connected, but not polled yet: that client is closed too.
        if let Ok(Ok(client)) = self.connected.try_recv() {
            self.client = Some(client);
        }
        if let Some(client) = self.client {
            self.rt.spawn(async move { client.close().await });
        }
    }
}
