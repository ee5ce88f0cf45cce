//! The one peer-connection event handler both ends use: the share's connection to a viewer
//! (`peer`) and the viewing side (`client`). It forwards what each end waits for (ICE
//! gathering done, connection states, the remote peer's data channels and tracks) and
//! leaves what a connection state means to its owner.

use std::sync::Arc;

use tokio::sync::{mpsc, Notify};
use webrtc::data_channel::DataChannel;
use webrtc::media_stream::track_remote::TrackRemote;
use webrtc::peer_connection::{
    PeerConnectionEventHandler, RTCIceGatheringState, RTCPeerConnectionState,
};

/// Where a [`Forwarder`]'s events go.
pub(crate) enum EventSender<E> {
    /// A bounded channel: the callback waits for room.
    Bounded(mpsc::Sender<E>),
    Unbounded(mpsc::UnboundedSender<E>),
}

/// A peer connection's event handler that hands events on to its owner.
pub(crate) struct Forwarder<E> {
    /// Notified when ICE gathering is complete.
    pub gathered: Arc<Notify>,
    /// The owner's event for a connection state (`None`: not reported). It runs in the
    /// callback itself: what it records is current when the callback returns.
    pub on_state: Box<dyn Fn(RTCPeerConnectionState) -> Option<E> + Send + Sync>,
    /// Where the events of `on_state` go.
    pub events: EventSender<E>,
    /// Data channels the remote peer opens, for an owner that takes them.
    pub data_channels: Option<mpsc::UnboundedSender<Arc<dyn DataChannel>>>,
    /// Tracks the remote peer sends, for an owner that takes them.
    pub tracks: Option<mpsc::UnboundedSender<Arc<dyn TrackRemote>>>,
}

#[async_trait::async_trait]
impl<E: Send + 'static> PeerConnectionEventHandler for Forwarder<E> {
    async fn on_ice_gathering_state_change(&self, state: RTCIceGatheringState) {
        if state == RTCIceGatheringState::Complete {
            self.gathered.notify_one();
        }
    }

    async fn on_connection_state_change(&self, state: RTCPeerConnectionState) {
        let Some(event) = (self.on_state)(state) else {
            return;
        };
        match &self.events {
            EventSender::Bounded(tx) => {
                let _ = tx.send(event).await;
            }
            EventSender::Unbounded(tx) => {
                let _ = tx.send(event);
            }
        }
    }

    async fn on_data_channel(&self, data_channel: Arc<dyn DataChannel>) {
        if let Some(tx) = &self.data_channels {
            let _ = tx.send(data_channel);
        }
    }

    async fn on_track(&self, track: Arc<dyn TrackRemote>) {
        if let Some(tx) = &self.tracks {
            let _ = tx.send(track);
        }
    }
}
