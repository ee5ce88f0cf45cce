//! The sharing desktop as `net` sees it: viewers' input goes to the XTest injector, their
//! clipboard to the host clipboard; the host's cursor and clipboard go out to viewers.

use std::sync::Arc;

use media::clipboard::{ClipContent, HostClipboard};
use media::cursor::{CursorEvent, CursorWatcher};
use media::input::{Injector, InputEvent};
use net::{HostEvents, HostSide, Message, Mime};

pub struct DesktopHost {
    pub injector: Option<Injector>,
    pub clipboard: Option<HostClipboard>,
}

/// The injector's form of a control message (the wire form is `net`'s).
fn input_event(msg: Message) -> Option<InputEvent> {
    Some(match msg {
        Message::PointerMove { x, y } => InputEvent::Move { x, y },
        Message::PointerButton {
            button,
            pressed,
            x,
            y,
        } => InputEvent::Button {
            button,
            pressed,
            x,
            y,
        },
        Message::Wheel { dx, dy } => InputEvent::Wheel { dx, dy },
        Message::Key { pressed, code } => InputEvent::Key { code, pressed },
        Message::Text { text } => InputEvent::Text(text),
        Message::ReleaseAll => InputEvent::ReleaseAll,
        _ => return None,
    })
}

impl HostSide for DesktopHost {
    fn input(&self, viewer: u64, msg: Message) {
        if let (Some(injector), Some(event)) = (&self.injector, input_event(msg)) {
            // A full queue refuses (counted as `input_dropped`); the network never waits.
            if !injector.send(viewer, event) {
                tracing::debug!(viewer, "input queue full: event dropped");
            }
        }
    }

    fn end_input(&self, viewer: u64) {
        if let Some(injector) = &self.injector {
            injector.end(viewer);
        }
    }

    fn set_clipboard(&self, viewer: u64, mime: Mime, data: Vec<u8>) {
        let Some(clipboard) = &self.clipboard else {
            return;
        };
        let Some(content) = crate::clip::from_wire(mime, data) else {
            return;
        };
        if let ClipContent::Png(png) = &content {
            // Refused by its decoded size, read from the header, before any decoding.
            if let Err(e) = media::clipboard::check_png(png) {
                tracing::warn!(viewer, "clipboard image refused: {e}");
                return;
            }
        }
        tracing::debug!(viewer, "setting the host clipboard");
        clipboard.set(content);
    }
}

impl DesktopHost {
    /// Opens input injection and the clipboard on the display in `$DISPLAY` (on Wayland:
    /// input into `$WAYLAND_DISPLAY`; the clipboard is still X11's). Either may be missing
    /// (a warning, not a failure): the share then works without it.
    pub fn open(
        monitor: media::capture::SharedMonitor,
        events: &HostEvents,
        wayland: bool,
    ) -> Self {
        let injector = if wayland {
            Injector::start_wayland(monitor)
        } else {
            Injector::start(None, monitor)
        };
        let injector = match injector {
            Ok(i) => Some(i),
            Err(e) => {
                tracing::warn!("{e}; viewers cannot control this screen");
                None
            }
        };
        let clipboard = {
            let events = events.clone();
            match HostClipboard::start(None, move |content| {
                let (mime, data) = crate::clip::to_wire(&content);
                events.clipboard(mime, Arc::new(data));
            }) {
                Ok(c) => Some(c),
                Err(e) => {
                    tracing::warn!("clipboard unavailable: {e}; clipboard sharing is off");
                    None
                }
            }
        };
        Self {
            injector,
            clipboard,
        }
    }
}

/// Sends the host pointer's position and image to viewers.
pub fn watch_cursor(
    monitor: media::capture::SharedMonitor,
    events: HostEvents,
) -> Option<CursorWatcher> {
    let result = CursorWatcher::start(None, monitor, 60, move |event| match event {
        CursorEvent::Position { x, y, visible } => events.cursor_position(x, y, visible),
        CursorEvent::Shape {
            hot_x,
            hot_y,
            width,
            height,
            rgba,
        } => events.cursor_shape(hot_x, hot_y, width, height, rgba),
    });
    match result {
        Ok(w) => Some(w),
        Err(e) => {
            tracing::warn!("cannot follow the host cursor: {e}");
            None
        }
    }
}
