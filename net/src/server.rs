//! The share's HTTP server: the viewer page and a WHEP endpoint (draft-ietf-wish-whep).
//!
//! | request | answer |
//! |---|---|
//! | `GET /`, `/viewer.js`, `/viewer.css` | the embedded viewer page |
//! | `GET /pake.js`, `/pake.wasm` | the page's pairing code (see [`crate::pairing`]) |
//! | `POST /pake` (JSON SPAKE2 message) | `200`, the share's message and key confirmation |
//! | `POST /whep` (`application/sdp`, `Authorization: Porthole-PAKE …`) | `201 Created`, `Location: /whep/<id>`, SDP answer with `Porthole-Answer-MAC` |
//! | `DELETE /whep/<id>` (paired) | `200`, the viewer is disconnected |
//! | `GET /api/stats` (paired) | counters as JSON |
//!
//! Viewers never send the code: they pair with it first and MAC their requests with the
//! pairing's key (see [`crate::pairing`]). Each pairing counts as one guess at the code.
//! With `allow_token`, a third-party WHEP player may present the code as
//! `Authorization: Bearer <code>` instead: it watches only, and the host sees it marked
//! unauthenticated.
//!
//! Refusals: no credentials, an unknown or used pairing, or a wrong code → 401 (no peer
//! connection is made); a request whose MAC does not verify → 403 (somebody in between
//! changed it); an expired code → 403; too many guesses from one address (IPv6: /64) or
//! on the whole share → 429 (see [`GuessThrottle`]); not
//! `application/sdp` → 415; an unusable offer → 400 with the reason in the body; body over
//! 64 KiB → 413, or not sent within 10 s → 408; as many viewers as `max_viewers` → 503; a
//! `Host` that is not the share's → 421, a foreign `Origin` on POST/DELETE/PATCH → 403 (see
//! [`origin`]). Every refusal is counted and logged without the code.
//!
//! Connections are limited and timed out (see [`conn`]); a viewer slot is reserved before
//! anything is awaited, and a viewer that has not connected within [`CONNECT_TIMEOUT`] of
//! its answer gives it back.
//!
//! The parts: [`auth`] (who is asking), [`admit`] (who gets in, with which rights),
//! `handlers` (each request's steps), `lifecycle` (a viewer's life once in), `stats`
//! (`/api/stats`), [`conn`] (connections), [`origin`] and [`resume`].

mod admit;
mod auth;
mod conn;
mod handlers;
mod lifecycle;
pub mod origin;
pub mod resume;
mod stats;

use std::net::SocketAddr;
use std::sync::atomic::AtomicU64;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime};

use axum::extract::DefaultBodyLimit;
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{delete, post};
use axum::Router;
use tokio::sync::oneshot;

use crate::access::{AccessCode, CodeExpiry, CodeLife, GuessThrottle};
use crate::control::Rights;
use crate::keyframe::{KeyframeGate, KeyframePolicy};
use crate::pairing::Pairings;
use crate::peer::IceConfig;
use crate::session::{HostEvents, HostSide};
use crate::stats::Counters;
use crate::video::MediaFanout;
use admit::{lock_viewers, ViewerRegistry};
use lifecycle::{remove_viewer, Ending};

pub use handlers::viewer_name;

/// Largest SDP offer accepted.
pub const MAX_OFFER_BYTES: usize = 64 * 1024;
/// Wrong codes per address (IPv6: per /64) and minute before it gets 429.
pub const MAX_FAILURES_PER_MINUTE: u32 = 20;
/// Wrong codes the whole share takes in a burst, from any number of addresses...
pub const SHARE_GUESS_BUDGET: u32 = 60;
/// ... and how fast that budget comes back (30 a minute).
pub const SHARE_GUESSES_PER_SEC: f64 = 0.5;
/// A viewer not connected this long after its answer gives its slot back.
pub const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);
/// Time allowed for an offer's body to arrive.
pub const BODY_READ_TIMEOUT: Duration = Duration::from_secs(10);

/// Counters a media source adds to `/api/stats` (e.g. frames encoded), after net's own
/// ([`crate::stats::Stat`]).
pub type MediaStats = Arc<dyn Fn() -> Vec<(&'static str, u64)> + Send + Sync>;

/// A viewer with the right code, waiting for the host to let it in.
#[derive(Clone, Debug)]
pub struct PendingViewer {
    /// The number it will have once admitted ([`ViewerInfo::no`]).
    pub no: u64,
    /// The name it gave itself, if any (see [`viewer_name`]).
    pub name: Option<String>,
    pub addr: SocketAddr,
    pub user_agent: String,
    /// The rights it would start with.
    pub rights: Rights,
    /// False for a WHEP player that showed the code as a bearer token (`allow_token`)
    /// instead of pairing: its connection is not tied to the code.
    pub authenticated: bool,
}

/// Asks the host whether a viewer may join; the answer comes on the returned channel: the
/// rights the host lets it in with (it may give fewer or more than
/// [`PendingViewer::rights`]), or `None` (dropping the sender counts as `None`).
pub type Approver =
    Arc<dyn Fn(PendingViewer) -> tokio::sync::oneshot::Receiver<Option<Rights>> + Send + Sync>;

/// How long a viewer waits for the host's answer.
pub const APPROVAL_TIMEOUT: Duration = Duration::from_secs(120);

#[derive(Clone)]
pub struct ShareConfig {
    pub listen: SocketAddr,
    pub code: AccessCode,
    pub ice: IceConfig,
    pub max_viewers: usize,
    pub media_stats: MediaStats,
    /// Where viewers' input and clipboard go.
    pub host: Arc<dyn HostSide>,
    /// The host's cursor and clipboard, for viewers.
    pub events: HostEvents,
    /// Rights every new viewer starts with.
    pub default_rights: Rights,
    /// Most clipboard bytes accepted from a viewer.
    pub clipboard_max: u32,
    /// If set, every viewer (with the right code) waits for the host's approval.
    pub approve: Option<Approver>,
    /// The share's DTLS certificate (one for all viewers); `None`: one per connection.
    pub identity: Option<crate::peer::ShareIdentity>,
    /// Also admit WHEP players that present the code as a bearer token (view only,
    /// marked unauthenticated).
    pub allow_token: bool,
    /// When the code stops admitting new viewers (`None`: never).
    pub code_expiry: Option<CodeExpiry>,
}

/// A viewer as the host sees it.
#[derive(Clone, Debug)]
pub struct ViewerInfo {
    pub id: String,
    /// A small number naming the viewer in logs and to the host side.
    pub no: u64,
    /// The name it gave itself, if any.
    pub name: Option<String>,
    pub rights: Rights,
    pub addr: SocketAddr,
    pub since: SystemTime,
    pub connected: bool,
    pub user_agent: String,
    /// See [`PendingViewer::authenticated`].
    pub authenticated: bool,
    /// Connected once, and silent now (its path may come back): its held keys and buttons
    /// were released.
    pub reconnecting: bool,
    /// It asked for control (`RequestControl`) and has none yet.
    pub asks_control: bool,
}

/// What every handler shares: the share's configuration and its running state.
struct AppState {
    config: ShareConfig,
    code_life: Mutex<CodeLife>,
    pairings: Mutex<Pairings>,
    /// Paired sessions whose connection was lost, for their viewer's return.
    lost: Mutex<resume::LostSessions>,
    video: Arc<MediaFanout>,
    audio: Option<Arc<MediaFanout>>,
    keyframes: Arc<KeyframeGate>,
    hosts: origin::HostPolicy,
    viewers: Mutex<ViewerRegistry>,
    throttle: Mutex<GuessThrottle>,
    counters: Arc<Counters>,
    next_viewer: AtomicU64,
}

impl AppState {
    fn new(
        config: ShareConfig,
        video: Arc<MediaFanout>,
        audio: Option<Arc<MediaFanout>>,
        hosts: origin::HostPolicy,
    ) -> Self {
        Self {
            code_life: Mutex::new(CodeLife::new(config.code_expiry, Instant::now())),
            config,
            pairings: Mutex::new(Pairings::default()),
            lost: Mutex::new(resume::LostSessions::default()),
            keyframes: KeyframeGate::new(video.clone(), KeyframePolicy::default()),
            video,
            audio,
            hosts,
            viewers: Mutex::new(ViewerRegistry::default()),
            throttle: Mutex::new(new_throttle()),
            counters: Arc::default(),
            next_viewer: AtomicU64::new(1),
        }
    }
}

/// A running share server. Dropping it without [`ShareServer::shutdown`] leaves it running
/// until the runtime ends.
pub struct ShareServer {
    addr: SocketAddr,
    state: Arc<AppState>,
    stop: Option<oneshot::Sender<()>>,
    task: Option<tokio::task::JoinHandle<()>>,
}

impl ShareServer {
    /// Binds `config.listen` and serves until [`ShareServer::shutdown`].
    pub async fn start(
        config: ShareConfig,
        video: Arc<MediaFanout>,
        audio: Option<Arc<MediaFanout>>,
    ) -> std::io::Result<Self> {
        let listener = conn::listen(config.listen)?;
        let addr = listener.local_addr()?;
        let state = Arc::new(AppState::new(
            config,
            video,
            audio,
            origin::HostPolicy::for_this_machine(),
        ));
        tokio::spawn(lifecycle::note_control_requests(
            state.clone(),
            state.config.events.control_requests(),
        ));
        let app = router(state.clone());
        let (stop_tx, stop_rx) = oneshot::channel::<()>();
        let task = tokio::spawn(conn::serve(listener, app, stop_rx));
        tracing::info!("serving viewers on http://{addr}/");
        Ok(Self {
            addr,
            state,
            stop: Some(stop_tx),
            task: Some(task),
        })
    }

    pub fn local_addr(&self) -> SocketAddr {
        self.addr
    }

    /// The viewers connected or connecting now.
    pub fn viewers(&self) -> Vec<ViewerInfo> {
        let viewers = lock_viewers(&self.state);
        let mut list: Vec<ViewerInfo> = viewers.values().map(|e| e.info.clone()).collect();
        list.sort_by_key(|v| v.since);
        list
    }

    /// The viewers (by number) that ask for control from now on.
    pub fn control_requests(&self) -> tokio::sync::broadcast::Receiver<u64> {
        self.state.config.events.control_requests()
    }

    /// Changes a viewer's rights; takes effect on its next message. False if no such viewer.
    pub fn set_rights(&self, id: &str, rights: Rights) -> bool {
        let mut viewers = lock_viewers(&self.state);
        let Some(entry) = viewers.get_mut(id) else {
            return false;
        };
        let revoked = entry.info.rights.control && !rights.control;
        entry.info.rights = rights;
        entry.info.asks_control &= !rights.control;
        entry.rights.send_replace(rights);
        if revoked {
            // At once, not when the session task next runs: its queued input goes now.
            self.state.config.host.end_input(entry.info.no);
        }
        tracing::info!(viewer = entry.info.no, ?rights, "rights changed");
        true
    }

    /// Disconnects one viewer in the background (call within the tokio runtime).
    pub fn disconnect_soon(&self, id: &str) {
        let (state, id) = (self.state.clone(), id.to_owned());
        tokio::spawn(async move {
            remove_viewer(&state, &id, Ending::Removed).await;
        });
    }

    /// Disconnects one viewer. Returns false if there was none with that id.
    pub async fn disconnect(&self, id: &str) -> bool {
        remove_viewer(&self.state, id, Ending::Removed).await
    }

    /// Stops serving and closes every viewer connection.
    pub async fn shutdown(mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        let ids: Vec<String> = lock_viewers(&self.state).keys().cloned().collect();
        // Every viewer told at once (not one after the other: each bye waits to leave).
        let mut byes = tokio::task::JoinSet::new();
        for id in ids {
            let state = self.state.clone();
            byes.spawn(async move { remove_viewer(&state, &id, Ending::HostStopped).await });
        }
        while byes.join_next().await.is_some() {}
        if let Some(task) = self.task.take() {
            // Open keep-alive connections must not hold the shutdown up.
            if tokio::time::timeout(Duration::from_secs(2), task)
                .await
                .is_err()
            {
                tracing::debug!("HTTP connections still open at shutdown; dropped");
            }
        }
    }
}

fn new_throttle() -> GuessThrottle {
    GuessThrottle::new(
        MAX_FAILURES_PER_MINUTE,
        Duration::from_secs(60),
        SHARE_GUESS_BUDGET,
        SHARE_GUESSES_PER_SEC,
    )
}

fn router(state: Arc<AppState>) -> Router {
    Router::new()
        .route("/pake", post(handlers::post_pake))
        .route(
            "/whep",
            post(handlers::post_whep).options(handlers::options_whep),
        )
        // No trickle ICE or ICE restart (yet): PATCH gets 405 with `Allow` (RFC 9110), as
        // any other method does.
        .route(
            "/whep/{id}",
            delete(handlers::delete_whep).options(handlers::options_session),
        )
        .route("/api/stats", axum::routing::get(stats::get_stats))
        .fallback(handlers::get_asset)
        .layer(DefaultBodyLimit::max(MAX_OFFER_BYTES))
        .layer(axum::middleware::from_fn_with_state(
            state.clone(),
            handlers::check_host_and_origin,
        ))
        .with_state(state)
}

fn text(status: StatusCode, message: impl Into<String>) -> Response {
    (
        status,
        [(header::CONTENT_TYPE, "text/plain; charset=utf-8")],
        message.into(),
    )
        .into_response()
}

/// The URL a viewer opens: the code rides in the fragment, which browsers never send.
pub fn viewer_url(host: &str, port: u16, code: &AccessCode) -> String {
    let host = crate::host_in_url(host);
    format!("http://{host}:{port}/#code={}", code.reveal())
}

// The integration tests' offer helper: one file for them and the unit tests.
#[cfg(test)]
#[path = "../tests/common/offer.rs"]
mod test_offer;

#[cfg(test)]
mod tests;
