//! One viewer's data-channel session as a pure state machine (sans-IO): which channels are
//! open, what each message from the viewer leads to (through the [`Gate`]), which notices
//! it is told (at most one of a kind per [`NOTICE_INTERVAL`]), the host's cursor, monitors
//! and clipboard for it (replayed when a channel opens, clipboard transfers numbered), its
//! rights and the host's last word. It takes events and the time, and queues [`Output`]s;
//! it never touches a data channel, the host or a clock. `super::Session` drives it.

use std::collections::{HashMap, HashSet, VecDeque};
use std::sync::Arc;
use std::time::Instant;

use crate::control::{Action, Gate, Refusal, Rights, NOTICE_INTERVAL};
use crate::protocol::{self, notice, Channel, Message, Mime};
use crate::stats::Counter;

/// Something the host has for its viewers.
#[derive(Clone, Debug)]
pub enum HostEvent {
    /// The pointer moved (a `CursorPosition`).
    CursorPosition(Message),
    /// The pointer's image changed (a `CursorShape`).
    CursorShape(Arc<Message>),
    /// The host's monitors, or the one shared, changed (a `Monitors`).
    Monitors(Arc<Message>),
    /// The host clipboard changed.
    Clipboard { mime: Mime, data: Arc<Vec<u8>> },
}

/// The host's latest cursor and monitors, for a viewer whose channel just opened.
#[derive(Clone, Debug, Default)]
pub struct Replay {
    pub cursor_position: Option<Message>,
    pub cursor_shape: Option<Arc<Message>>,
    pub monitors: Option<Arc<Message>>,
}

/// What the session asks its driver to do, in order.
#[derive(Debug, PartialEq, Eq)]
pub enum Output {
    /// Send this encoded message on this channel (open, as far as the session knows). If
    /// it cannot go, tell [`ViewerSession::send_failed`].
    Send(Channel, Vec<u8>),
    /// Do what the viewer asked (it passed the gate).
    Act(Action),
    /// Drop the viewer's queued input, inject nothing it sent before, release what it
    /// holds (`HostSide::end_input`).
    EndInput,
    /// Count this.
    Count(Counter),
}

/// One viewer's session state (see the module docs).
pub struct ViewerSession {
    /// The viewer's number (for logs).
    viewer: u64,
    gate: Gate,
    rights: Rights,
    open: HashSet<Channel>,
    /// When a notice of each code (transfer 0) was last sent.
    last_notice: HashMap<u8, Instant>,
    /// The last clipboard transfer sent to the viewer.
    transfer_id: u32,
    out: VecDeque<Output>,
}

impl ViewerSession {
    /// Viewer number `viewer`, taking clipboards up to `clipboard_max` bytes, with `rights`.
    pub fn new(viewer: u64, clipboard_max: u32, rights: Rights) -> Self {
        Self {
            viewer,
            gate: Gate::new(clipboard_max),
            rights,
            open: HashSet::new(),
            last_notice: HashMap::new(),
            transfer_id: 0,
            out: VecDeque::new(),
        }
    }

    pub fn rights(&self) -> Rights {
        self.rights
    }

    /// The next thing to do, if any.
    pub fn poll_output(&mut self) -> Option<Output> {
        self.out.pop_front()
    }

    /// Channel `ch` opened: the viewer is told what it joins into. On `input` its rights,
    /// the cursor's image and the monitors; on `pointer` where the cursor is. The host
    /// clipboard is not replayed (nor when the right is granted): a viewer gets what the
    /// host copies while it holds the right, nothing older.
    pub fn channel_opened(&mut self, ch: Channel, replay: &Replay) {
        if !self.open.insert(ch) {
            return;
        }
        tracing::debug!(viewer = self.viewer, "data channel {} open", ch.label());
        match ch {
            Channel::Input => {
                self.send(&self.rights_message());
                if let Some(shape) = &replay.cursor_shape {
                    self.send(shape);
                }
                if let Some(monitors) = &replay.monitors {
                    self.send(monitors);
                }
            }
            Channel::Pointer => {
                if let Some(position) = &replay.cursor_position {
                    self.send(position);
                }
            }
            Channel::Clipboard => {}
        }
    }

    /// Channel `ch` closed. The viewer is gone or going when `input` goes: nothing it sent
    /// is typed later, nothing it held stays down.
    pub fn channel_closed(&mut self, ch: Channel) {
        self.open.remove(&ch);
        if ch == Channel::Input {
            self.end_input();
        }
    }

    /// A send on `ch` failed (the channel is closing): what is queued for it is dropped,
    /// and a clipboard transfer cut short is not counted as sent.
    pub fn send_failed(&mut self, ch: Channel) {
        self.out.retain(|out| match out {
            Output::Send(c, _) => *c != ch,
            Output::Count(Counter::ClipboardSent) => ch != Channel::Clipboard,
            _ => true,
        });
    }

    /// A message from the viewer on `ch`, judged with its current rights.
    pub fn message(&mut self, ch: Channel, bytes: &[u8], now: Instant) {
        match self.gate.handle(ch, bytes, self.rights, now) {
            Ok(Some(action)) => {
                match &action {
                    Action::Inject(_) => self.count(Counter::InputForwarded),
                    Action::SetClipboard { .. } => self.count(Counter::ClipboardReceived),
                    Action::RequestControl | Action::SelectMonitor(_) | Action::MaxBitrate(_) => {}
                }
                self.out.push_back(Output::Act(action));
            }
            Ok(None) => {}
            Err(refusal) => self.refused(&refusal, now),
        }
    }

    /// The viewer's rights changed (or were set again): it is told; losing control ends
    /// its input (the server ended it already when it revoked, at once; this covers any
    /// other way rights may change).
    pub fn rights_changed(&mut self, rights: Rights) {
        self.rights = rights;
        if !rights.control {
            self.end_input();
        }
        self.send(&self.rights_message());
    }

    /// Something of the host's, for the viewer if its channel is open (and, for the
    /// clipboard, if it has the clipboard right).
    pub fn host_event(&mut self, event: &HostEvent) {
        match event {
            HostEvent::CursorPosition(msg) => {
                self.send(msg);
            }
            HostEvent::CursorShape(msg) | HostEvent::Monitors(msg) => {
                self.send(msg);
            }
            HostEvent::Clipboard { mime, data } => {
                if self.open.contains(&Channel::Clipboard) && self.rights.clipboard {
                    self.send_clipboard(*mime, data);
                }
            }
        }
    }

    /// The host ends the session: the viewer is told why (`Notice` `code`), if it can be.
    pub fn bye(&mut self, code: u8) {
        let text = match code {
            notice::HOST_STOPPED => "The host stopped sharing.",
            _ => "The host ended your session.",
        };
        self.send(&Message::Notice {
            code,
            transfer: 0,
            text: text.into(),
        });
    }

    fn rights_message(&self) -> Message {
        Message::Rights {
            rights: self.rights.bits(),
            clipboard_max: self.gate.clipboard_max(),
        }
    }

    fn end_input(&mut self) {
        self.out.push_back(Output::EndInput);
        self.gate.forget_held();
    }

    fn count(&mut self, counter: Counter) {
        self.out.push_back(Output::Count(counter));
    }

    /// Queues `msg` on its channel. False when that channel is not open or `msg` is not
    /// valid (`Message::encode` refuses it).
    fn send(&mut self, msg: &Message) -> bool {
        self.send_on(msg.channel(), msg)
    }

    fn send_on(&mut self, ch: Channel, msg: &Message) -> bool {
        if !self.open.contains(&ch) {
            return false;
        }
        match msg.encode() {
            Ok(bytes) => {
                self.out.push_back(Output::Send(ch, bytes));
                true
            }
            Err(e) => {
                tracing::warn!(
                    viewer = self.viewer,
                    "not sending a 0x{:02x} message: {e}",
                    msg.type_byte()
                );
                false
            }
        }
    }

    fn send_clipboard(&mut self, mime: Mime, data: &[u8]) {
        self.transfer_id = self.transfer_id.wrapping_add(1);
        let chunks = protocol::clipboard_chunks(self.transfer_id, mime, data);
        let encoded: Result<Vec<Vec<u8>>, _> = chunks.iter().map(Message::encode).collect();
        let encoded = match encoded {
            Ok(encoded) => encoded,
            Err(e) => {
                tracing::warn!(viewer = self.viewer, "not sending the clipboard: {e}");
                return;
            }
        };
        for bytes in encoded {
            self.out.push_back(Output::Send(Channel::Clipboard, bytes));
        }
        self.count(Counter::ClipboardSent);
        tracing::debug!(
            viewer = self.viewer,
            bytes = data.len(),
            "clipboard sent to a viewer"
        );
    }

    fn refused(&mut self, refusal: &Refusal, now: Instant) {
        self.count(match refusal {
            Refusal::NotAllowed { .. } => Counter::InputRefused,
            Refusal::RateLimited => Counter::RateLimited,
            Refusal::ClipboardTooLarge { .. } => Counter::ClipboardRefused,
            Refusal::Malformed(_) | Refusal::WrongChannel(_) | Refusal::BadClipboard(_) => {
                Counter::MalformedMessages
            }
        });
        let Some(notice) = refusal.notice() else {
            tracing::warn!(viewer = self.viewer, "refused a message: {refusal:?}");
            return;
        };
        let Message::Notice { code, transfer, .. } = &notice else {
            return;
        };
        // One notice per kind every few seconds, except those naming a transfer.
        if *transfer == 0 {
            if self
                .last_notice
                .get(code)
                .is_some_and(|t| now.duration_since(*t) < NOTICE_INTERVAL)
            {
                tracing::debug!(viewer = self.viewer, "refused a message: {refusal:?}");
                return;
            }
            self.last_notice.insert(*code, now);
        }
        tracing::warn!(viewer = self.viewer, "refused a message: {refusal:?}");
        // Clipboard refusals travel with the clipboard (docs/protocol.md); others on input.
        let ch = if matches!(refusal, Refusal::ClipboardTooLarge { .. }) {
            Channel::Clipboard
        } else {
            Channel::Input
        };
        self.send_on(ch, &notice);
    }
}

#[cfg(test)]
mod tests;
