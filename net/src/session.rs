//! A viewer's data-channel session: what the host side gives viewers ([`HostEvents`]) and
//! takes from them ([`HostSide`]), and the async driver of one viewer's session. What the
//! session decides (the gate, notices, replay on open, rights, the bye) is the pure
//! [`ViewerSession`]; the driver reads the data channels, feeds it, and does what it says.

mod machine;

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use bytes::BytesMut;
use tokio::sync::{broadcast, mpsc, watch};
use webrtc::data_channel::{DataChannel, DataChannelEvent};

use crate::control::{Action, Rights};
use crate::protocol::{self, Channel, Message, Mime};
use crate::stats::Counters;

pub use machine::{HostEvent, Output, Replay, ViewerSession};

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

struct Shared {
    outbound: broadcast::Sender<HostEvent>,
    /// Viewers (by number) asking for control.
    control_requests: broadcast::Sender<u64>,
    /// Viewers (by number) asking for another monitor (by index).
    monitor_requests: broadcast::Sender<(u64, u8)>,
    cursor_position: Mutex<Option<Message>>,
    cursor_shape: Mutex<Option<Arc<Message>>>,
    monitors: Mutex<Option<Arc<Message>>>,
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
        }))
    }

    pub fn cursor_position(&self, x: u16, y: u16, visible: bool) {
        let msg = Message::CursorPosition { x, y, visible };
        *self
            .0
            .cursor_position
            .lock()
            .unwrap_or_else(|e| e.into_inner()) = Some(msg.clone());
        let _ = self.0.outbound.send(HostEvent::CursorPosition(msg));
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
        let _ = self.0.outbound.send(HostEvent::CursorShape(msg));
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
        let _ = self.0.outbound.send(HostEvent::Monitors(msg));
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
        let _ = self.0.outbound.send(HostEvent::Clipboard { mime, data });
    }

    /// Viewer `viewer` asks the host for control.
    pub fn request_control(&self, viewer: u64) {
        let _ = self.0.control_requests.send(viewer);
    }

    /// The viewers (by number) that ask for control, from now on.
    pub fn control_requests(&self) -> broadcast::Receiver<u64> {
        self.0.control_requests.subscribe()
    }

    /// The latest cursor and monitors, for a viewer's channel that opens now.
    fn replay(&self) -> Replay {
        fn latest<T: Clone>(m: &Mutex<Option<T>>) -> Option<T> {
            m.lock().unwrap_or_else(|e| e.into_inner()).clone()
        }
        Replay {
            cursor_position: latest(&self.0.cursor_position),
            cursor_shape: latest(&self.0.cursor_shape),
            monitors: latest(&self.0.monitors),
        }
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
    /// The share's counters (the session counts what its viewer's messages come to).
    pub counters: Arc<Counters>,
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

/// What woke the driver.
enum Event {
    DataChannel(Arc<dyn DataChannel>),
    Incoming(Channel, Incoming),
    Host(HostEvent),
    Bye(Bye),
    RightsChanged,
}

impl Session {
    pub async fn run(mut self) {
        let (in_tx, mut in_rx) = mpsc::channel::<(Channel, Incoming)>(256);
        let mut channels: HashMap<Channel, Arc<dyn DataChannel>> = HashMap::new();
        let mut outbound = self.events.0.outbound.subscribe();
        let mut session = ViewerSession::new(
            self.viewer,
            self.clipboard_max,
            *self.rights.borrow_and_update(),
        );
        let mut readers = Vec::new();
        // Until the server's side of `bye` is gone (then the branch would fire forever).
        let mut bye_open = true;
        loop {
            let event = tokio::select! {
                dc = self.data_channels.recv() => match dc {
                    Some(dc) => Event::DataChannel(dc),
                    None => break,
                },
                incoming = in_rx.recv() => match incoming {
                    Some((ch, incoming)) => Event::Incoming(ch, incoming),
                    None => break,
                },
                out = outbound.recv() => match out {
                    Ok(event) => Event::Host(event),
                    Err(broadcast::error::RecvError::Lagged(n)) => {
                        tracing::debug!(viewer = self.viewer, "skipped {n} host events");
                        continue;
                    }
                    Err(broadcast::error::RecvError::Closed) => break,
                },
                bye = self.bye.recv(), if bye_open => match bye {
                    Some(bye) => Event::Bye(bye),
                    None => {
                        bye_open = false;
                        continue;
                    }
                },
                changed = self.rights.changed() => match changed {
                    Ok(()) => Event::RightsChanged,
                    Err(_) => break,
                },
            };
            // The viewer's rights before anything else: nothing is judged, and no
            // clipboard sent, on rights it no longer has.
            if matches!(event, Event::RightsChanged) || self.rights.has_changed().unwrap_or(false) {
                session.rights_changed(*self.rights.borrow_and_update());
                self.execute(&mut session, &channels).await;
            }
            match event {
                Event::DataChannel(dc) => {
                    let label = dc.label().await.unwrap_or_default();
                    match Channel::from_label(&label) {
                        Some(ch) if !channels.contains_key(&ch) => {
                            channels.insert(ch, dc.clone());
                            readers.push(tokio::spawn(read_channel(dc, ch, in_tx.clone())));
                        }
                        _ => {
                            tracing::warn!(
                                viewer = self.viewer,
                                "closing unexpected data channel {label:?}"
                            );
                            let _ = dc.close().await;
                        }
                    }
                }
                Event::Incoming(ch, Incoming::Open) => {
                    session.channel_opened(ch, &self.events.replay());
                }
                Event::Incoming(ch, Incoming::Closed) => {
                    channels.remove(&ch);
                    session.channel_closed(ch);
                }
                Event::Incoming(ch, Incoming::Message(bytes)) => {
                    session.message(ch, &bytes, Instant::now());
                }
                Event::Host(event) => session.host_event(&event),
                Event::Bye(bye) => {
                    session.bye(bye.code);
                    if self.execute(&mut session, &channels).await > 0 {
                        // Queued is not sent: give it a moment before the connection closes.
                        tokio::time::sleep(BYE_FLUSH).await;
                    }
                    let _ = bye.sent.send(());
                    break;
                }
                Event::RightsChanged => {}
            }
            self.execute(&mut session, &channels).await;
        }
        for r in readers {
            r.abort();
        }
    }

    /// Does what `session` asks, in order. Returns how many messages went.
    async fn execute(
        &self,
        session: &mut ViewerSession,
        channels: &HashMap<Channel, Arc<dyn DataChannel>>,
    ) -> usize {
        let mut sent = 0;
        while let Some(output) = session.poll_output() {
            match output {
                Output::Send(ch, bytes) => {
                    let Some(dc) = channels.get(&ch) else {
                        session.send_failed(ch);
                        continue;
                    };
                    match dc.send(BytesMut::from(&bytes[..])).await {
                        Ok(()) => sent += 1,
                        Err(e) => {
                            tracing::debug!(viewer = self.viewer, "data channel send failed: {e}");
                            session.send_failed(ch);
                        }
                    }
                }
                Output::Act(action) => self.act(action),
                Output::EndInput => self.host.end_input(self.viewer),
                Output::Count(counter) => self.counters.add(counter),
            }
        }
        sent
    }

    fn act(&self, action: Action) {
        match action {
            Action::Inject(msg) => self.host.input(self.viewer, msg),
            Action::SetClipboard { mime, data } => {
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
}
