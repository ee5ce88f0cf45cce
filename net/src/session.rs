//! A viewer's data-channel session: reads its channels through the [`Gate`], hands what
//! passes to the host, and sends it the host's cursor, clipboard and its rights.

use std::collections::{HashMap, HashSet};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use bytes::BytesMut;
use tokio::sync::{broadcast, mpsc, watch};
use webrtc::data_channel::{DataChannel, DataChannelEvent};

use crate::control::{Action, Gate, Refusal, Rights, NOTICE_INTERVAL};
use crate::protocol::{self, Channel, Message, Mime};

/// What the sharing side does with what viewers send. Called on network tasks: hand the
/// work on (e.g. into a bounded queue), never block.
pub trait HostSide: Send + Sync + 'static {
    /// A control message from a viewer that has the right to send it.
    fn input(&self, viewer: u64, msg: Message);
    /// The viewer lost control, left or is being removed: drop its input still queued,
    /// inject nothing it sent before this call, and release everything it holds. Takes
    /// effect before it returns (later injections check for it).
    fn end_input(&self, viewer: u64) {
        self.input(viewer, Message::ReleaseAll);
    }
    /// A complete clipboard transfer from a viewer with the clipboard right.
    fn set_clipboard(&self, viewer: u64, mime: Mime, data: Vec<u8>);
}

/// A host without input or clipboard (view-only shares, tests).
pub struct ViewOnlyHost;

impl HostSide for ViewOnlyHost {
    fn input(&self, _viewer: u64, _msg: Message) {}
    fn set_clipboard(&self, _viewer: u64, _mime: Mime, _data: Vec<u8>) {}
}

#[derive(Clone, Debug)]
enum Outbound {
    CursorPosition(Message),
    CursorShape(Arc<Message>),
    Monitors(Arc<Message>),
    Clipboard { mime: Mime, data: Arc<Vec<u8>> },
}

/// Counters over all viewers, shown in `/api/stats`.
#[derive(Default, Debug)]
pub struct SessionCounters {
    pub input_forwarded: AtomicU64,
    pub input_refused: AtomicU64,
    pub clipboard_received: AtomicU64,
    pub clipboard_sent: AtomicU64,
    pub clipboard_refused: AtomicU64,
    pub malformed_messages: AtomicU64,
    pub rate_limited: AtomicU64,
}

struct Shared {
    outbound: broadcast::Sender<Outbound>,
    /// Viewers (by number) asking for control.
    control_requests: broadcast::Sender<u64>,
    /// Viewers (by number) asking for another monitor (by index).
    monitor_requests: broadcast::Sender<(u64, u8)>,
    cursor_position: Mutex<Option<Message>>,
    cursor_shape: Mutex<Option<Arc<Message>>>,
    monitors: Mutex<Option<Arc<Message>>>,
    counters: SessionCounters,
}

/// The host's events for viewers: cursor and clipboard. Cheap to clone; usable from any
/// thread; create it before the server and give the server a clone.
#[derive(Clone)]
pub struct HostEvents(Arc<Shared>);

impl Default for HostEvents {
    fn default() -> Self {
        Self::new()
    }
}

impl HostEvents {
    pub fn new() -> Self {
        let (outbound, _) = broadcast::channel(64);
        let (control_requests, _) = broadcast::channel(16);
        let (monitor_requests, _) = broadcast::channel(16);
        Self(Arc::new(Shared {
            outbound,
            control_requests,
            monitor_requests,
            cursor_position: Mutex::new(None),
            cursor_shape: Mutex::new(None),
            monitors: Mutex::new(None),
            counters: SessionCounters::default(),
        }))
    }

    pub fn cursor_position(&self, x: u16, y: u16, visible: bool) {
        let msg = Message::CursorPosition { x, y, visible };
        *self
            .0
            .cursor_position
            .lock()
            .unwrap_or_else(|e| e.into_inner()) = Some(msg.clone());
        let _ = self.0.outbound.send(Outbound::CursorPosition(msg));
    }

    pub fn cursor_shape(&self, hot_x: u16, hot_y: u16, width: u16, height: u16, rgba: Vec<u8>) {
        let msg = Arc::new(Message::CursorShape {
            hot_x,
            hot_y,
            width,
            height,
            rgba,
        });
        *self
            .0
            .cursor_shape
            .lock()
            .unwrap_or_else(|e| e.into_inner()) = Some(msg.clone());
        let _ = self.0.outbound.send(Outbound::CursorShape(msg));
    }

    /// The host's monitors and the one shared: sent to every viewer now and to each
    /// viewer that joins. A list that would not encode (empty, over 16...) is not sent.
    pub fn monitors(&self, current: u8, monitors: Vec<protocol::MonitorEntry>) {
        let msg = Message::Monitors { current, monitors };
        if let Err(e) = msg.encode() {
            tracing::warn!("not telling viewers the monitors: {e}");
            return;
        }
        let msg = Arc::new(msg);
        *self.0.monitors.lock().unwrap_or_else(|e| e.into_inner()) = Some(msg.clone());
        let _ = self.0.outbound.send(Outbound::Monitors(msg));
    }

    /// Viewer `viewer` asks to share monitor `index` instead.
    pub fn select_monitor(&self, viewer: u64, index: u8) {
        let _ = self.0.monitor_requests.send((viewer, index));
    }

    /// The monitor requests (viewer, index), from now on.
    pub fn monitor_requests(&self) -> broadcast::Receiver<(u64, u8)> {
        self.0.monitor_requests.subscribe()
    }

    /// The host clipboard changed: send it to every viewer with the clipboard right now.
    /// (A viewer is never sent what was copied before; see docs/protocol.md.)
    pub fn clipboard(&self, mime: Mime, data: Arc<Vec<u8>>) {
        let _ = self.0.outbound.send(Outbound::Clipboard { mime, data });
    }

    pub fn counters(&self) -> &SessionCounters {
        &self.0.counters
    }

    /// Viewer `viewer` asks the host for control.
    pub fn request_control(&self, viewer: u64) {
        let _ = self.0.control_requests.send(viewer);
    }

    /// The viewers (by number) that ask for control, from now on.
    pub fn control_requests(&self) -> broadcast::Receiver<u64> {
        self.0.control_requests.subscribe()
    }
}

enum Incoming {
    Open,
    Message(BytesMut),
    Closed,
}

async fn read_channel(
    dc: Arc<dyn DataChannel>,
    channel: Channel,
    tx: mpsc::Sender<(Channel, Incoming)>,
) {
    if matches!(
        dc.ready_state().await,
        Ok(webrtc::data_channel::RTCDataChannelState::Open)
    ) {
        let _ = tx.send((channel, Incoming::Open)).await;
    }
    while let Some(event) = dc.poll().await {
        let incoming = match event {
            DataChannelEvent::OnOpen => Incoming::Open,
            DataChannelEvent::OnMessage(m) => Incoming::Message(m.data),
            DataChannelEvent::OnClose => break,
            _ => continue,
        };
        if channel == Channel::Pointer {
            // The lossy channel stays lossy: drop rather than queue when the host lags.
            let _ = tx.try_send((channel, incoming));
        } else if tx.send((channel, incoming)).await.is_err() {
            return;
        }
    }
    let _ = tx.send((channel, Incoming::Closed)).await;
}

/// One viewer's session; runs until its channels close or the task is aborted.
pub(crate) struct Session {
    pub viewer: u64,
    pub host: Arc<dyn HostSide>,
    pub events: HostEvents,
    pub clipboard_max: u32,
    /// The viewer's path estimate (its `MaxBitrate` limit goes there).
    pub path: Arc<crate::cc::PathEstimate>,
    pub rights: watch::Receiver<Rights>,
    pub data_channels: mpsc::UnboundedReceiver<Arc<dyn DataChannel>>,
    /// The host's last word: a `Notice` code to send before the session ends, and who to
    /// tell once it is out.
    pub bye: mpsc::Receiver<Bye>,
}

/// Why the host ends a session (see [`Session::bye`]).
#[derive(Debug)]
pub(crate) struct Bye {
    pub code: u8,
    pub sent: tokio::sync::oneshot::Sender<()>,
}

/// How long a bye may take to leave before the connection closes under it.
pub(crate) const BYE_FLUSH: Duration = Duration::from_millis(150);

impl Session {
    pub async fn run(mut self) {
        let (in_tx, mut in_rx) = mpsc::channel::<(Channel, Incoming)>(256);
        let mut channels: HashMap<Channel, Arc<dyn DataChannel>> = HashMap::new();
        let mut open: HashSet<Channel> = HashSet::new();
        let mut outbound = self.events.0.outbound.subscribe();
        let mut gate = Gate::new(self.clipboard_max);
        let mut last_notice: HashMap<u8, Instant> = HashMap::new();
        let mut transfer_id = 0u32;
        let mut readers = Vec::new();
        // Until the server's side of `bye` is gone (then the branch would fire forever).
        let mut bye_open = true;
        loop {
            tokio::select! {
                dc = self.data_channels.recv() => {
                    let Some(dc) = dc else { break };
                    let label = dc.label().await.unwrap_or_default();
                    match Channel::from_label(&label) {
                        Some(ch) if !channels.contains_key(&ch) => {
                            channels.insert(ch, dc.clone());
                            readers.push(tokio::spawn(read_channel(dc, ch, in_tx.clone())));
                        }
                        _ => {
                            tracing::warn!(viewer = self.viewer, "closing unexpected data channel {label:?}");
                            let _ = dc.close().await;
                        }
                    }
                }
                incoming = in_rx.recv() => {
                    let Some((ch, incoming)) = incoming else { break };
                    match incoming {
                        Incoming::Open => {
                            if open.insert(ch) {
                                self.on_open(ch, &channels).await;
                            }
                        }
                        Incoming::Closed => {
                            open.remove(&ch);
                            channels.remove(&ch);
                            if ch == Channel::Input {
                                // The viewer is gone or going: nothing it sent is typed
                                // later, nothing it held stays down.
                                self.host.end_input(self.viewer);
                                gate.forget_held();
                            }
                        }
                        Incoming::Message(bytes) => {
                            let rights = *self.rights.borrow();
                            match gate.handle(ch, &bytes, rights, Instant::now()) {
                                Ok(Some(action)) => self.act(action),
                                Ok(None) => {}
                                Err(refusal) => {
                                    self.refused(&refusal, &channels, &mut last_notice).await;
                                }
                            }
                        }
                    }
                }
                out = outbound.recv() => {
                    match out {
                        Ok(out) => self.send_outbound(out, &channels, &open, &mut transfer_id).await,
                        Err(broadcast::error::RecvError::Lagged(n)) => {
                            tracing::debug!(viewer = self.viewer, "skipped {n} host events");
                        }
                        Err(broadcast::error::RecvError::Closed) => break,
                    }
                }
                bye = self.bye.recv(), if bye_open => {
                    let Some(bye) = bye else {
                        bye_open = false;
                        continue;
                    };
                    let text = match bye.code {
                        protocol::notice::HOST_STOPPED => "The host stopped sharing.",
                        _ => "The host ended your session.",
                    };
                    let notice = Message::Notice { code: bye.code, transfer: 0, text: text.into() };
                    if send(&channels, &notice).await {
                        // Queued is not sent: give it a moment before the connection closes.
                        tokio::time::sleep(BYE_FLUSH).await;
                    }
                    let _ = bye.sent.send(());
                    break;
                }
                changed = self.rights.changed() => {
                    if changed.is_err() { break; }
                    let rights = *self.rights.borrow_and_update();
                    if !rights.control {
                        // The server ended its input already when it revoked (at once);
                        // this covers any other way rights may change.
                        self.host.end_input(self.viewer);
                        gate.forget_held();
                    }
                    self.send_rights(rights, &gate, &channels).await;
                }
            }
        }
        for r in readers {
            r.abort();
        }
    }

    async fn on_open(&self, ch: Channel, channels: &HashMap<Channel, Arc<dyn DataChannel>>) {
        tracing::debug!(viewer = self.viewer, "data channel {} open", ch.label());
        match ch {
            Channel::Input => {
                let rights = *self.rights.borrow();
                let gate_max = self.clipboard_max;
                send(
                    channels,
                    &Message::Rights {
                        rights: rights.bits(),
                        clipboard_max: gate_max,
                    },
                )
                .await;
                let shape = self
                    .events
                    .0
                    .cursor_shape
                    .lock()
                    .unwrap_or_else(|e| e.into_inner())
                    .clone();
                if let Some(shape) = shape {
                    send(channels, &shape).await;
                }
                let monitors = self
                    .events
                    .0
                    .monitors
                    .lock()
                    .unwrap_or_else(|e| e.into_inner())
                    .clone();
                if let Some(monitors) = monitors {
                    send(channels, &monitors).await;
                }
            }
            Channel::Pointer => {
                let pos = self
                    .events
                    .0
                    .cursor_position
                    .lock()
                    .unwrap_or_else(|e| e.into_inner())
                    .clone();
                if let Some(pos) = pos {
                    send(channels, &pos).await;
                }
            }
            // The host clipboard is not replayed on join (nor when the right is granted):
            // a viewer gets what the host copies while it holds the right, nothing older.
            Channel::Clipboard => {}
        }
    }

    async fn send_rights(
        &self,
        rights: Rights,
        gate: &Gate,
        channels: &HashMap<Channel, Arc<dyn DataChannel>>,
    ) {
        send(
            channels,
            &Message::Rights {
                rights: rights.bits(),
                clipboard_max: gate.clipboard_max(),
            },
        )
        .await;
    }

    fn act(&self, action: Action) {
        let c = &self.events.0.counters;
        match action {
            Action::Inject(msg) => {
                c.input_forwarded.fetch_add(1, Ordering::Relaxed);
                self.host.input(self.viewer, msg);
            }
            Action::SetClipboard { mime, data } => {
                c.clipboard_received.fetch_add(1, Ordering::Relaxed);
                tracing::info!(
                    viewer = self.viewer,
                    bytes = data.len(),
                    mime = mime.as_str(),
                    "clipboard from a viewer"
                );
                self.host.set_clipboard(self.viewer, mime, data);
            }
            Action::RequestControl => {
                tracing::info!(viewer = self.viewer, "viewer asks for control");
                self.events.request_control(self.viewer);
            }
            Action::SelectMonitor(index) => {
                tracing::info!(
                    viewer = self.viewer,
                    index,
                    "viewer asks for another monitor"
                );
                self.events.select_monitor(self.viewer, index);
            }
            Action::MaxBitrate(kbps) => {
                tracing::info!(viewer = self.viewer, kbps, "viewer limits its bit rate");
                self.path.set_limit_bps(u64::from(kbps) * 1000);
            }
        }
    }

    async fn refused(
        &self,
        refusal: &Refusal,
        channels: &HashMap<Channel, Arc<dyn DataChannel>>,
        last_notice: &mut HashMap<u8, Instant>,
    ) {
        let c = &self.events.0.counters;
        let counter = match refusal {
            Refusal::NotAllowed { .. } => &c.input_refused,
            Refusal::RateLimited => &c.rate_limited,
            Refusal::ClipboardTooLarge { .. } => &c.clipboard_refused,
            Refusal::Malformed(_) | Refusal::WrongChannel(_) | Refusal::BadClipboard(_) => {
                &c.malformed_messages
            }
        };
        counter.fetch_add(1, Ordering::Relaxed);
        let Some(notice) = refusal.notice() else {
            tracing::warn!(viewer = self.viewer, "refused a message: {refusal:?}");
            return;
        };
        let Message::Notice { code, transfer, .. } = &notice else {
            return;
        };
        // One notice per kind every few seconds, except those naming a transfer.
        let now = Instant::now();
        if *transfer == 0 {
            if last_notice
                .get(code)
                .is_some_and(|t| now.duration_since(*t) < NOTICE_INTERVAL)
            {
                tracing::debug!(viewer = self.viewer, "refused a message: {refusal:?}");
                return;
            }
            last_notice.insert(*code, now);
        }
        tracing::warn!(viewer = self.viewer, "refused a message: {refusal:?}");
        // Clipboard refusals travel with the clipboard (docs/protocol.md); others on input.
        let ch = if matches!(refusal, Refusal::ClipboardTooLarge { .. }) {
            Channel::Clipboard
        } else {
            Channel::Input
        };
        send_on(channels, ch, &notice).await;
    }

    async fn send_outbound(
        &self,
        out: Outbound,
        channels: &HashMap<Channel, Arc<dyn DataChannel>>,
        open: &HashSet<Channel>,
        transfer_id: &mut u32,
    ) {
        match out {
            Outbound::CursorPosition(msg) => {
                if open.contains(&Channel::Pointer) {
                    send(channels, &msg).await;
                }
            }
            Outbound::CursorShape(msg) | Outbound::Monitors(msg) => {
                if open.contains(&Channel::Input) {
                    send(channels, &msg).await;
                }
            }
            Outbound::Clipboard { mime, data } => {
                if open.contains(&Channel::Clipboard) && self.rights.borrow().clipboard {
                    self.send_clipboard(mime, &data, channels, transfer_id)
                        .await;
                }
            }
        }
    }

    async fn send_clipboard(
        &self,
        mime: Mime,
        data: &[u8],
        channels: &HashMap<Channel, Arc<dyn DataChannel>>,
        transfer_id: &mut u32,
    ) {
        *transfer_id = transfer_id.wrapping_add(1);
        for chunk in protocol::clipboard_chunks(*transfer_id, mime, data) {
            if !send(channels, &chunk).await {
                return;
            }
        }
        self.events
            .0
            .counters
            .clipboard_sent
            .fetch_add(1, Ordering::Relaxed);
        tracing::debug!(
            viewer = self.viewer,
            bytes = data.len(),
            "clipboard sent to a viewer"
        );
    }
}

/// Sends `msg` on its channel. False when that channel is not there or failed, or `msg` is
/// not valid (`Message::encode` refuses it).
async fn send(channels: &HashMap<Channel, Arc<dyn DataChannel>>, msg: &Message) -> bool {
    send_on(channels, msg.channel(), msg).await
}

async fn send_on(
    channels: &HashMap<Channel, Arc<dyn DataChannel>>,
    ch: Channel,
    msg: &Message,
) -> bool {
    let Some(dc) = channels.get(&ch) else {
        return false;
    };
    let bytes = match msg.encode() {
        Ok(bytes) => bytes,
        Err(e) => {
            tracing::warn!("not sending a 0x{:02x} message: {e}", msg.type_byte());
            return false;
        }
    };
    match dc.send(BytesMut::from(&bytes[..])).await {
        Ok(()) => true,
        Err(e) => {
            tracing::debug!("data channel send failed: {e}");
            false
        }
    }
}
