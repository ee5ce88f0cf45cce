//! Which monitor a share captures, and switching it: viewers with control, the app and
//! the terminal pick one; every viewer is told the list and the one shared.

use media::capture::{Monitor, SharedMonitor};

/// "0: HDMI-1 (primary), 1920×1080 at 0,0; 1: …"
pub fn describe_monitors(list: &[Monitor]) -> String {
    list.iter()
        .enumerate()
        .map(|(i, m)| format!("{i}: {}", m.describe()))
        .collect::<Vec<_>>()
        .join("; ")
}

/// Why the monitor shared was not switched.
#[derive(Debug, thiserror::Error)]
pub enum SwitchError {
    #[error(transparent)]
    List(#[from] media::capture::CaptureError),
    #[error("there is no monitor {index} (this display has {count}: {listed})")]
    NoSuchMonitor {
        index: usize,
        count: usize,
        listed: String,
    },
}

/// Which monitor the share captures. Viewers with control ask for another one
/// (`SelectMonitor`), the app and the terminal pick one; the capture, input injection and
/// the cursor follow it, and every viewer is told (`Monitors`). One encoder serves every
/// viewer, so every viewer sees the monitor picked.
#[derive(Clone)]
pub struct MonitorSwitch {
    pub(super) shared: SharedMonitor,
    pub(super) events: net::HostEvents,
}

impl MonitorSwitch {
    /// The index of the monitor shared.
    pub fn current(&self) -> usize {
        self.shared.get().0
    }

    /// Shares monitor `index` of the display's monitors as they are now.
    pub fn select(&self, index: usize) -> Result<Monitor, SwitchError> {
        let list = media::capture::monitors(None)?;
        let Some(m) = list.get(index).cloned() else {
            return Err(SwitchError::NoSuchMonitor {
                index,
                count: list.len(),
                listed: describe_monitors(&list),
            });
        };
        self.shared.set(index, m.rect);
        self.announce(&list, index);
        Ok(m)
    }

    /// Tells every viewer the monitors and the one shared (the first 16 of them, names
    /// cut to 64 bytes: what the protocol carries).
    pub(super) fn announce(&self, list: &[Monitor], current: usize) {
        let Ok(current) = u8::try_from(current) else {
            return;
        };
        if usize::from(current) >= net::protocol::MAX_MONITORS {
            tracing::info!("monitor {current} is past the 16 viewers can pick from");
            return;
        }
        let entries = monitor_entries(list);
        self.events.monitors(current, entries);
    }
}

/// The monitors as the protocol carries them: the first 16, names cut to 64 bytes.
pub fn monitor_entries(list: &[Monitor]) -> Vec<net::protocol::MonitorEntry> {
    list.iter()
        .take(net::protocol::MAX_MONITORS)
        .map(|m| net::protocol::MonitorEntry {
            name: cut_name(&m.name),
            x: m.rect.x,
            y: m.rect.y,
            width: m.rect.width.clamp(1, u32::from(u16::MAX)) as u16,
            height: m.rect.height.clamp(1, u32::from(u16::MAX)) as u16,
            primary: m.primary,
        })
        .collect()
}

/// `name` cut to at most 64 bytes at a character boundary, without NULs.
fn cut_name(name: &str) -> String {
    let mut out = String::new();
    for c in name.chars().filter(|&c| c != '\0') {
        if out.len() + c.len_utf8() > net::protocol::MAX_MONITOR_NAME {
            break;
        }
        out.push(c);
    }
    out
}

/// Switches the monitor when a viewer (with control: the gate checked) asks.
pub(super) async fn follow_monitor_requests(monitors: MonitorSwitch) {
    let mut requests = monitors.events.monitor_requests();
    loop {
        match requests.recv().await {
            Ok((viewer, index)) => match monitors.select(usize::from(index)) {
                Ok(m) => tracing::info!(
                    viewer,
                    "viewer {viewer} switched the share to monitor {index}: {}",
                    m.describe()
                ),
                Err(e) => tracing::warn!(viewer, "monitor not switched: {e}"),
            },
            Err(tokio::sync::broadcast::error::RecvError::Lagged(_)) => continue,
            Err(tokio::sync::broadcast::error::RecvError::Closed) => return,
        }
    }
}
