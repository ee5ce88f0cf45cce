//! A viewer's life after admission: connected, interrupted, gone; removed by the host or
//! leaving (told why, its input ended first); given up when it never connects; marked when
//! it asks for control.

use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::sync::{broadcast, mpsc};

use super::admit::{lock_viewers, ViewerEntry};
use super::{AppState, CONNECT_TIMEOUT};
use crate::control::Rights;
use crate::keyframe::KeyframeReason;
use crate::peer::ViewerEvent;
use crate::protocol::notice;
use crate::session::{Bye, BYE_FLUSH};

/// Why a viewer's session ends, as far as the viewer is told.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum Ending {
    /// The viewer left or its connection ended: nobody to tell.
    Quietly,
    /// The host removed it: `Notice` REMOVED first.
    Removed,
    /// The host stops sharing: `Notice` HOST_STOPPED first.
    HostStopped,
}

/// Marks the viewers that ask for control (the host's list shows it until it grants it).
pub(super) async fn note_control_requests(
    state: Arc<AppState>,
    mut requests: broadcast::Receiver<u64>,
) {
    use broadcast::error::RecvError;
    loop {
        match requests.recv().await {
            Ok(no) => {
                let mut viewers = lock_viewers(&state);
                for e in viewers.values_mut().filter(|e| e.info.no == no) {
                    e.info.asks_control = !e.info.rights.control;
                }
            }
            Err(RecvError::Lagged(_)) => {}
            Err(RecvError::Closed) => return,
        }
    }
}

/// Frees the slot of a viewer that got an answer but has not connected in time.
pub(super) async fn expect_connection(state: Arc<AppState>, id: String) {
    tokio::time::sleep(CONNECT_TIMEOUT).await;
    let connected = lock_viewers(&state).get(&id).map(|e| e.info.connected);
    if connected == Some(false) && remove_viewer(&state, &id, Ending::Quietly).await {
        tracing::info!(
            session = %id,
            "viewer did not connect within {} s; its slot is free again",
            CONNECT_TIMEOUT.as_secs()
        );
    }
}

/// Follows viewer `id`'s connection until it ends, then removes it (and keeps a paired
/// one that was connected for its return).
pub(super) async fn watch_viewer(
    state: Arc<AppState>,
    id: String,
    mut events: mpsc::UnboundedReceiver<ViewerEvent>,
) {
    while let Some(event) = events.recv().await {
        match event {
            ViewerEvent::Connected => {
                tracing::info!(session = %id, "viewer connected");
                if let Some(e) = lock_viewers(&state).get_mut(&id) {
                    e.info.connected = true;
                    e.info.reconnecting = false;
                }
                state.keyframes.viewer().request(KeyframeReason::Join);
            }
            ViewerEvent::Interrupted => {
                tracing::info!(session = %id, "viewer unreachable; releasing its input");
                let no = lock_viewers(&state).get_mut(&id).map(|e| {
                    e.info.reconnecting = true;
                    e.info.no
                });
                if let Some(no) = no {
                    state.config.host.end_input(no);
                }
            }
            ViewerEvent::Ended => break,
        }
    }
    // A paired viewer that was connected may come back as itself (see `resume`).
    let lost = lock_viewers(&state)
        .get(&id)
        .filter(|e| e.info.connected)
        .and_then(ViewerEntry::resumable);
    if remove_viewer(&state, &id, Ending::Quietly).await {
        tracing::info!(session = %id, "viewer left (connection closed or failed)");
        if let Some(lost) = lost {
            state
                .lost
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .keep(id, lost, Instant::now());
        }
    }
}

/// Removes viewer `id`: its rights and input end at once, it is told why (if the host ends
/// it), its session stops and its connection closes. False if there was none.
pub(super) async fn remove_viewer(state: &AppState, id: &str, ending: Ending) -> bool {
    let entry = lock_viewers(state).remove(id);
    match entry {
        Some(entry) => {
            // Nothing it sent is typed from now on (not even while its bye goes out):
            // its rights go, its queued input is dropped, nothing it held stays down.
            entry.rights.send_replace(Rights::default());
            state.config.host.end_input(entry.info.no);
            let code = match ending {
                Ending::Quietly => None,
                Ending::Removed => Some(notice::REMOVED),
                Ending::HostStopped => Some(notice::HOST_STOPPED),
            };
            if let Some(code) = code {
                // Told why at once, instead of seeing a frozen picture until its
                // connection times out.
                let (sent, done) = tokio::sync::oneshot::channel();
                if entry.bye.try_send(Bye { code, sent }).is_ok() {
                    let wait = BYE_FLUSH + Duration::from_millis(350);
                    let _ = tokio::time::timeout(wait, done).await;
                }
            }
            entry.session.abort();
            state.config.host.end_input(entry.info.no);
            entry.viewer.close().await;
            true
        }
        None => false,
    }
}
