//! The clipboard, both ways, while the host gives the clipboard right: the host's copies
//! land on this machine's clipboard; this machine's copies go to the host only with the
//! user's consent (`super::super::consent`).

use std::sync::{Arc, Mutex, OnceLock};

use eframe::egui;
use media::clipboard::{ClipContent, HostClipboard};

use super::connection::Connection;
use crate::gui::consent::{consent_ui, ClipboardConsent};

/// Most clipboard bytes taken from the host (as the browser viewer).
const HOST_CLIPBOARD_MAX: u32 = 64 * 1024 * 1024;

pub struct ClipboardSync {
    /// Clipboard transfers from the host being reassembled.
    incoming: net::protocol::ClipboardAssembler,
    /// This machine's clipboard, watched while the right allows it.
    local: Option<HostClipboard>,
    /// The latest local copy, from the clipboard thread (judged by `consent` in `poll`).
    local_copies: Arc<Mutex<Option<Arc<ClipContent>>>>,
    /// Whether local copies may go to the host (asked; off by default, per session).
    consent: ClipboardConsent<Arc<ClipContent>>,
    next_transfer: u32,
    /// The task sending the latest local copy. Each waits for the one before: the host
    /// takes one transfer at a time, its chunks in order (docs/protocol.md), so two quick
    /// copies must not interleave (like the browser's clipboard queue).
    sending: Option<tokio::task::JoinHandle<()>>,
}

impl ClipboardSync {
    pub fn new() -> Self {
        Self {
            incoming: net::protocol::ClipboardAssembler::new(HOST_CLIPBOARD_MAX),
            local: None,
            local_copies: Arc::default(),
            consent: ClipboardConsent::default(),
            next_transfer: 1,
            sending: None,
        }
    }

    /// A new connection: transfers and the watch start over (until the host gives the
    /// right again); the user's answer about sending copies holds.
    pub fn new_session(&mut self) {
        let allowed = self.consent.allowed();
        *self = Self::new();
        self.consent.set_allowed(allowed);
    }

    /// The clipboard right given or taken: watches this machine's clipboard while it is
    /// held (what is copied goes to `local_copies`; `poll` sends it only with the user's
    /// consent). `repaint` wakes the UI on a copy.
    pub fn follow_right(&mut self, allowed: bool, repaint: &Arc<OnceLock<egui::Context>>) {
        if !allowed {
            self.local = None;
            self.consent.right_lost();
            return;
        }
        if self.local.is_some() {
            return;
        }
        let copies = self.local_copies.clone();
        let repaint = repaint.clone();
        let result = HostClipboard::start(None, move |content| {
            *copies.lock().unwrap_or_else(|e| e.into_inner()) = Some(content);
            if let Some(ctx) = repaint.get() {
                ctx.request_repaint();
            }
        });
        match result {
            Ok(c) => self.local = Some(c),
            Err(e) => tracing::warn!("no clipboard sync: {e}"),
        }
    }

    /// A chunk of the host's clipboard: once whole, it goes on this machine's clipboard.
    pub fn host_chunk(
        &mut self,
        transfer: u32,
        mime: net::Mime,
        total: u32,
        offset: u32,
        data: &[u8],
    ) {
        match self.incoming.push(transfer, mime, total, offset, data) {
            Ok(Some((mime, data))) => {
                let Some(content) = crate::clip::from_wire(mime, data) else {
                    return;
                };
                if let Some(local) = &self.local {
                    local.set(content);
                }
            }
            Ok(None) => {}
            Err(e) => tracing::warn!("host clipboard not taken: {e:?}"),
        }
    }

    /// Sends the latest local copy if the user lets it go.
    pub fn poll(&mut self, connection: &Connection) {
        let copied = self
            .local_copies
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .take();
        if let Some(content) = copied {
            if self.local.is_some() {
                if let Some(content) = self.consent.local_copy(content) {
                    self.send(&content, connection);
                }
            }
        }
    }

    /// Sends one local copy to the host, in chunks, in order.
    fn send(&mut self, content: &ClipContent, connection: &Connection) {
        let Some(client) = connection.client().cloned() else {
            return;
        };
        let (mime, bytes) = crate::clip::to_wire(content);
        let transfer = self.next_transfer;
        self.next_transfer = self.next_transfer.wrapping_add(1);
        tracing::info!(
            bytes = bytes.len(),
            "sending this machine's clipboard to the host"
        );
        let previous = self.sending.take();
        self.sending = Some(connection.runtime().spawn(async move {
            if let Some(previous) = previous {
                let _ = previous.await;
            }
            for chunk in net::protocol::clipboard_chunks(transfer, mime, &bytes) {
                if !client.send(&chunk).await {
                    break;
                }
            }
        }));
    }

    /// The clipboard toggle and question, while the host offers to take the clipboard.
    pub fn ui(&mut self, ui: &mut egui::Ui, connection: &Connection) {
        if self.local.is_none() {
            return;
        }
        let describe = |c: &Arc<ClipContent>| match &**c {
            ClipContent::Text(t) => format!("{} characters of text", t.chars().count()),
            ClipContent::Png(p) => format!("an image, {} kB", p.len().div_ceil(1000)),
        };
        if let Some(content) = consent_ui(ui, &mut self.consent, describe) {
            self.send(&content, connection);
        }
    }
}
