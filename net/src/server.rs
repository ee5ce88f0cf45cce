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

mod conn;
pub mod origin;
pub mod resume;

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime};

use axum::body::Body;
use axum::extract::{ConnectInfo, DefaultBodyLimit, Path, Request, State};
use axum::http::{header, HeaderMap, HeaderValue, StatusCode, Uri};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use axum::routing::{delete, post};
use axum::Router;
use tokio::sync::oneshot;

use crate::access::{bearer_token, AccessCode, CodeExpiry, CodeLife, GuessThrottle, Refusal};
use crate::assets;
use crate::control::Rights;
use crate::keyframe::{KeyframeGate, KeyframePolicy, KeyframeReason};
use crate::pairing::{self, Keys, Pairings};
use crate::peer::{IceConfig, PeerError, Viewer, ViewerEvent};
use crate::session::{HostEvents, HostSide, Session};
use crate::stats::{Counter, Counters, Stat};
use crate::video::VideoFanout;

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

/// Counters a media source adds to `/api/stats` (e.g. frames encoded).
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

struct ViewerEntry {
    info: ViewerInfo,
    viewer: Arc<Viewer>,
    rights: tokio::sync::watch::Sender<Rights>,
    session: tokio::task::JoinHandle<()>,
    /// The session's last word (see `Session::bye`).
    bye: tokio::sync::mpsc::Sender<crate::session::Bye>,
    /// The pairing's keys, which sign the viewer's `DELETE` (`None`: a bearer viewer).
    keys: Option<Arc<Keys>>,
}

impl ViewerEntry {
    /// What its viewer needs to come back as itself (see [`resume`]); `None` for a bearer
    /// viewer, which has no pairing to prove it with.
    fn resumable(&self) -> Option<resume::Lost> {
        Some(resume::Lost {
            keys: self.keys.clone()?,
            no: self.info.no,
            rights: *self.rights.borrow(),
        })
    }
}

/// Why a viewer's session ends, as far as the viewer is told.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Ending {
    /// The viewer left or its connection ended: nobody to tell.
    Quietly,
    /// The host removed it: `Notice` REMOVED first.
    Removed,
    /// The host stops sharing: `Notice` HOST_STOPPED first.
    HostStopped,
}

/// The viewers admitted, and the slots reserved for viewers being set up: admission is
/// decided under one lock, before anything is awaited, so `max_viewers` holds under any
/// number of concurrent offers.
#[derive(Default)]
struct ViewerRegistry {
    entries: HashMap<String, ViewerEntry>,
    reserved: usize,
}

impl ViewerRegistry {
    /// Takes a slot if fewer than `max` are admitted or reserved.
    fn try_reserve(&mut self, max: usize) -> bool {
        if self.entries.len() + self.reserved >= max {
            return false;
        }
        self.reserved += 1;
        true
    }

    /// A reserved slot becomes a viewer.
    fn commit(&mut self, id: String, entry: ViewerEntry) {
        self.reserved = self.reserved.saturating_sub(1);
        self.entries.insert(id, entry);
    }

    fn release(&mut self) {
        self.reserved = self.reserved.saturating_sub(1);
    }

    fn len(&self) -> usize {
        self.entries.len()
    }

    fn get(&self, id: &str) -> Option<&ViewerEntry> {
        self.entries.get(id)
    }

    fn get_mut(&mut self, id: &str) -> Option<&mut ViewerEntry> {
        self.entries.get_mut(id)
    }

    fn remove(&mut self, id: &str) -> Option<ViewerEntry> {
        self.entries.remove(id)
    }

    fn values(&self) -> impl Iterator<Item = &ViewerEntry> {
        self.entries.values()
    }

    fn values_mut(&mut self) -> impl Iterator<Item = &mut ViewerEntry> {
        self.entries.values_mut()
    }

    fn keys(&self) -> impl Iterator<Item = &String> {
        self.entries.keys()
    }
}

/// A reserved viewer slot; given back when dropped uncommitted (a refusal, a failed
/// answer, or the client hanging up mid-way).
struct Reservation {
    state: Arc<AppState>,
    held: bool,
}

impl Reservation {
    fn take(state: &Arc<AppState>) -> Option<Self> {
        lock_viewers(state)
            .try_reserve(state.max_viewers)
            .then(|| Self {
                state: state.clone(),
                held: true,
            })
    }

    fn commit(mut self, id: String, entry: ViewerEntry) {
        self.held = false;
        lock_viewers(&self.state).commit(id, entry);
    }
}

impl Drop for Reservation {
    fn drop(&mut self) {
        if self.held {
            lock_viewers(&self.state).release();
        }
    }
}

fn lock_viewers(state: &AppState) -> std::sync::MutexGuard<'_, ViewerRegistry> {
    state.viewers.lock().unwrap_or_else(|e| e.into_inner())
}

struct AppState {
    code: AccessCode,
    code_life: Mutex<CodeLife>,
    allow_token: bool,
    pairings: Mutex<Pairings>,
    /// Paired sessions whose connection was lost, for their viewer's return.
    lost: Mutex<resume::LostSessions>,
    ice: IceConfig,
    max_viewers: usize,
    video: Arc<VideoFanout>,
    audio: Option<Arc<VideoFanout>>,
    keyframes: Arc<KeyframeGate>,
    hosts: origin::HostPolicy,
    viewers: Mutex<ViewerRegistry>,
    throttle: Mutex<GuessThrottle>,
    counters: Arc<Counters>,
    media_stats: MediaStats,
    host: Arc<dyn HostSide>,
    events: HostEvents,
    default_rights: Rights,
    clipboard_max: u32,
    next_viewer: AtomicU64,
    approve: Option<Approver>,
    identity: Option<crate::peer::ShareIdentity>,
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
        video: Arc<VideoFanout>,
        audio: Option<Arc<VideoFanout>>,
    ) -> std::io::Result<Self> {
        let listener = tokio::net::TcpListener::bind(config.listen).await?;
        let addr = listener.local_addr()?;
        let state = Arc::new(AppState {
            code: config.code,
            code_life: Mutex::new(CodeLife::new(config.code_expiry, Instant::now())),
            allow_token: config.allow_token,
            pairings: Mutex::new(Pairings::default()),
            lost: Mutex::new(resume::LostSessions::default()),
            ice: config.ice,
            max_viewers: config.max_viewers,
            keyframes: KeyframeGate::new(video.clone(), KeyframePolicy::default()),
            hosts: origin::HostPolicy::for_this_machine(),
            video,
            audio,
            viewers: Mutex::new(ViewerRegistry::default()),
            throttle: Mutex::new(new_throttle()),
            counters: Arc::default(),
            media_stats: config.media_stats,
            host: config.host,
            events: config.events,
            default_rights: config.default_rights,
            clipboard_max: config.clipboard_max,
            next_viewer: AtomicU64::new(1),
            approve: config.approve,
            identity: config.identity,
        });
        tokio::spawn(note_control_requests(
            state.clone(),
            state.events.control_requests(),
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
        let viewers = self.state.viewers.lock().unwrap_or_else(|e| e.into_inner());
        let mut list: Vec<ViewerInfo> = viewers.values().map(|e| e.info.clone()).collect();
        list.sort_by_key(|v| v.since);
        list
    }

    /// Changes a viewer's rights; takes effect on its next message. False if no such viewer.
    /// The viewers (by number) that ask for control from now on.
    pub fn control_requests(&self) -> tokio::sync::broadcast::Receiver<u64> {
        self.state.events.control_requests()
    }

    pub fn set_rights(&self, id: &str, rights: Rights) -> bool {
        let mut viewers = self.state.viewers.lock().unwrap_or_else(|e| e.into_inner());
        let Some(entry) = viewers.get_mut(id) else {
            return false;
        };
        let revoked = entry.info.rights.control && !rights.control;
        entry.info.rights = rights;
        entry.info.asks_control &= !rights.control;
        entry.rights.send_replace(rights);
        if revoked {
            // At once, not when the session task next runs: its queued input goes now.
            self.state.host.end_input(entry.info.no);
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
        let ids: Vec<String> = {
            let viewers = self.state.viewers.lock().unwrap_or_else(|e| e.into_inner());
            viewers.keys().cloned().collect()
        };
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
        .route("/pake", post(post_pake))
        .route("/whep", post(post_whep).options(options_whep))
        // No trickle ICE or ICE restart (yet): PATCH gets 405 with `Allow` (RFC 9110), as
        // any other method does.
        .route("/whep/{id}", delete(delete_whep).options(options_session))
        .route("/api/stats", axum::routing::get(get_stats))
        .fallback(get_asset)
        .layer(DefaultBodyLimit::max(MAX_OFFER_BYTES))
        .layer(axum::middleware::from_fn_with_state(
            state.clone(),
            check_host_and_origin,
        ))
        .with_state(state)
}

/// Refuses a foreign `Host` (421) and, on POST/DELETE/PATCH, a foreign `Origin` (403).
async fn check_host_and_origin(
    State(state): State<Arc<AppState>>,
    request: Request,
    next: Next,
) -> Response {
    match host_or_origin_refusal(&state, &request) {
        Some(refusal) => refusal,
        None => next.run(request).await,
    }
}

fn host_or_origin_refusal(state: &AppState, request: &Request) -> Option<Response> {
    let addr = request
        .extensions()
        .get::<ConnectInfo<SocketAddr>>()
        .map(|c| c.0);
    let header_text = |name: header::HeaderName| {
        request
            .headers()
            .get(name)
            .map(|v| v.to_str().unwrap_or("\u{fffd}"))
    };
    let host = header_text(header::HOST).or(request.uri().authority().map(|a| a.as_str()));
    if let Some(host) = host {
        if !state.hosts.allows_host(host) {
            let shown: String = host.chars().take(100).collect();
            state.counters.add(Counter::WhepRefused);
            tracing::warn!(?addr, host = %shown, "refused a request for a foreign host name (DNS rebinding?)");
            return Some(text(
                StatusCode::MISDIRECTED_REQUEST,
                format!(
                    "this share does not answer to the host name \"{shown}\": open it by its \
                     address, localhost or its .local name (a protection against DNS rebinding)"
                ),
            ));
        }
    }
    let changes_state = matches!(
        *request.method(),
        axum::http::Method::POST | axum::http::Method::DELETE | axum::http::Method::PATCH
    );
    let origin = header_text(header::ORIGIN).filter(|_| changes_state)?;
    if state.hosts.allows_origin(origin, host) {
        return None;
    }
    let shown: String = origin.chars().take(100).collect();
    state.counters.add(Counter::WhepRefused);
    tracing::warn!(?addr, origin = %shown, "refused a cross-origin request");
    Some(text(
        StatusCode::FORBIDDEN,
        format!("cross-origin request refused: a page from \"{shown}\" may not use this share"),
    ))
}

fn text(status: StatusCode, message: impl Into<String>) -> Response {
    (
        status,
        [(header::CONTENT_TYPE, "text/plain; charset=utf-8")],
        message.into(),
    )
        .into_response()
}

/// Refuses with a count and a log line (never the code).
fn refuse(state: &AppState, addr: SocketAddr, status: StatusCode, message: &str) -> Response {
    state.counters.add(Counter::WhepRefused);
    tracing::warn!(%addr, status = status.as_u16(), "refused a viewer: {message}");
    let mut response = text(status, message.to_owned());
    if status == StatusCode::UNAUTHORIZED {
        // How to get in: pair (POST /pake) and sign; bearer codes only where allowed.
        response.headers_mut().insert(
            header::WWW_AUTHENTICATE,
            HeaderValue::from_static("Porthole-PAKE realm=\"porthole\""),
        );
        if state.allow_token {
            response.headers_mut().append(
                header::WWW_AUTHENTICATE,
                HeaderValue::from_static("Bearer realm=\"porthole\""),
            );
        }
    }
    response
}

/// Who a request is from, as far as its credentials tell.
enum Caller {
    /// Paired with the code; its keys sign the answer and its session's `DELETE`.
    Paired(Arc<Keys>),
    /// Showed the code as a bearer token (only with `allow_token`).
    Token,
    /// A paired viewer back after its connection was lost (see [`resume`]).
    Resumed(resume::Lost),
}

/// A request's credentials, read before its body.
enum Credentials {
    Pake(pairing::PakeAuth),
    Bearer(String),
}

fn unauthorized(state: &AppState, addr: SocketAddr, message: &str) -> Box<Response> {
    state.counters.add(Counter::Unauthorized);
    Box::new(refuse(state, addr, StatusCode::UNAUTHORIZED, message))
}

/// Reads the `Authorization` header. A request without usable credentials is refused and
/// not counted as a guess: it is none (and a web page can send such requests in the user's
/// name).
fn credentials(
    state: &AppState,
    addr: SocketAddr,
    headers: &HeaderMap,
) -> Result<Credentials, Box<Response>> {
    let value = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok());
    if let Some(auth) = value.and_then(pairing::parse_authorization) {
        return Ok(Credentials::Pake(auth));
    }
    match value.and_then(bearer_token) {
        Some(token) if state.allow_token => Ok(Credentials::Bearer(token.to_owned())),
        Some(_) => Err(unauthorized(
            state,
            addr,
            "this share takes no access code in a header: viewers pair with it (POST /pake; \
             Porthole's page and app do). The host may admit WHEP players with \
             --allow-whep-token",
        )),
        None => Err(unauthorized(
            state,
            addr,
            "pair with the access code first (POST /pake), then sign the request \
             (Authorization: Porthole-PAKE)",
        )),
    }
}

/// Asks the throttle whether `addr` may make a guess now. `Err` is the 429 to send.
fn may_guess(
    state: &AppState,
    addr: SocketAddr,
    throttle: &mut GuessThrottle,
    now: Instant,
) -> Result<(), Box<Response>> {
    let Err(why) = throttle.check(addr.ip(), now) else {
        return Ok(());
    };
    let message = match why {
        Refusal::Address => "too many wrong codes from this address; wait a minute",
        Refusal::Share => "too many wrong codes on this share lately; wait a minute",
    };
    let mut response = refuse(state, addr, StatusCode::TOO_MANY_REQUESTS, message);
    response
        .headers_mut()
        .insert(header::RETRY_AFTER, HeaderValue::from_static("60"));
    Err(Box::new(response))
}

/// Checks a bearer code: the throttle is asked first, then the code is compared in constant
/// time (see [`GuessThrottle`] for why in this order).
fn check_token(state: &AppState, addr: SocketAddr, token: &str) -> Result<(), Box<Response>> {
    let now = Instant::now();
    let mut throttle = state.throttle.lock().unwrap_or_else(|e| e.into_inner());
    may_guess(state, addr, &mut throttle, now)?;
    if code_expired(state, now) {
        return Err(Box::new(expired(state, addr)));
    }
    if state.code.verify(token) {
        throttle.handle_right(addr.ip(), now);
        Ok(())
    } else {
        throttle.handle_wrong(addr.ip(), now);
        drop(throttle);
        Err(unauthorized(state, addr, "wrong access code"))
    }
}

fn code_expired(state: &AppState, now: Instant) -> bool {
    state
        .code_life
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .expired(now)
}

fn expired(state: &AppState, addr: SocketAddr) -> Response {
    refuse(
        state,
        addr,
        StatusCode::FORBIDDEN,
        "this access code has expired: ask the host for a new one",
    )
}

/// Checks the credentials of a request that starts something (an offer, a stats query)
/// against the request itself. A pairing serves one such request; its MAC must cover this
/// method, path and body, or somebody changed the request on its way (403).
fn authorize(
    state: &AppState,
    addr: SocketAddr,
    credentials: Credentials,
    method: &str,
    path: &str,
    body: &[u8],
) -> Result<Caller, Box<Response>> {
    let auth = match credentials {
        Credentials::Bearer(token) => {
            return check_token(state, addr, &token).map(|()| Caller::Token)
        }
        Credentials::Pake(auth) => auth,
    };
    let now = Instant::now();
    let keys = state
        .pairings
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .take(&auth.id, now);
    let Some(keys) = keys else {
        return Err(unauthorized(
            state,
            addr,
            "this pairing is unknown, used or expired: pair again",
        ));
    };
    if !keys.verify_request(method, path, body, &auth.mac) {
        state.counters.add(Counter::Unauthorized);
        state.counters.add(Counter::MacRefused);
        return Err(Box::new(refuse(
            state,
            addr,
            StatusCode::FORBIDDEN,
            pairing::NOT_THE_SHARE,
        )));
    }
    // The request proves the code: this address's provisional guess is forgiven.
    state
        .throttle
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .handle_right(addr.ip(), now);
    state.counters.add(Counter::PairingsConfirmed);
    Ok(Caller::Paired(keys))
}

/// `POST /pake`: the share's half of a pairing. Every pairing counts as a guess at the code
/// until a request signed with its keys arrives (a viewer with the wrong code finds out from
/// this reply and sends none).
async fn post_pake(
    State(state): State<Arc<AppState>>,
    ConnectInfo(addr): ConnectInfo<SocketAddr>,
    headers: HeaderMap,
    body: Body,
) -> Response {
    let json = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .and_then(|t| t.split(';').next())
        .is_some_and(|t| t.trim().eq_ignore_ascii_case("application/json"));
    if !json {
        return refuse(
            &state,
            addr,
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "a pairing request must be sent as Content-Type: application/json",
        );
    }
    // A pairing request is ~70 bytes; it gets what an offer gets, no more.
    let body = match tokio::time::timeout(BODY_READ_TIMEOUT, axum::body::to_bytes(body, 1024)).await
    {
        Ok(Ok(body)) => body,
        Ok(Err(_)) => {
            return refuse(
                &state,
                addr,
                StatusCode::PAYLOAD_TOO_LARGE,
                "a pairing request is larger than 1 KiB",
            )
        }
        Err(_) => {
            return refuse(
                &state,
                addr,
                StatusCode::REQUEST_TIMEOUT,
                "the pairing request did not arrive in time",
            )
        }
    };
    let message = serde_json::from_slice::<pairing::PairRequest>(&body)
        .ok()
        .and_then(|r| pairing::decode(&r.message))
        .filter(|m| m.len() == pairing::MESSAGE_LEN);
    let Some(message) = message else {
        return refuse(
            &state,
            addr,
            StatusCode::BAD_REQUEST,
            "a pairing request is JSON {\"message\": <base64 of the 33-byte SPAKE2 message>}",
        );
    };
    let now = Instant::now();
    {
        let mut throttle = state.throttle.lock().unwrap_or_else(|e| e.into_inner());
        if let Err(refusal) = may_guess(&state, addr, &mut throttle, now) {
            return *refusal;
        }
        if code_expired(&state, now) {
            return expired(&state, addr);
        }
        throttle.handle_wrong(addr.ip(), now);
    }
    let reply = match pake::share_respond(state.code.reveal(), &message, rand::random()) {
        Ok(reply) => reply,
        Err(e) => return refuse(&state, addr, StatusCode::BAD_REQUEST, &e.to_string()),
    };
    state.counters.add(Counter::Pairings);
    let id = state
        .pairings
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .insert(reply.keys, now);
    (
        [(header::CACHE_CONTROL, "no-store")],
        axum::Json(pairing::PairReply {
            id,
            message: pairing::encode(&reply.message),
            confirm: pairing::encode(&reply.confirm),
        }),
    )
        .into_response()
}

async fn options_whep() -> Response {
    (
        StatusCode::NO_CONTENT,
        [
            (header::ALLOW, "OPTIONS, POST"),
            (
                header::HeaderName::from_static("accept-post"),
                "application/sdp",
            ),
        ],
    )
        .into_response()
}

/// `OPTIONS /whep/ID`: what the resource takes — or `404` when there is no such session
/// any more, which is how a viewer whose connection went quiet finds out that the share
/// gave it up (and makes a new one at once instead of waiting for its ICE to fail).
async fn options_session(State(state): State<Arc<AppState>>, Path(id): Path<String>) -> Response {
    if lock_viewers(&state).get(&id).is_none() {
        return text(StatusCode::NOT_FOUND, "no such session");
    }
    (StatusCode::NO_CONTENT, [(header::ALLOW, "OPTIONS, DELETE")]).into_response()
}

async fn post_whep(
    State(state): State<Arc<AppState>>,
    ConnectInfo(addr): ConnectInfo<SocketAddr>,
    headers: HeaderMap,
    body: Body,
) -> Response {
    let credentials = match credentials(&state, addr, &headers) {
        Ok(c) => c,
        Err(refusal) => return *refusal,
    };
    let content_type = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("");
    if !content_type
        .split(';')
        .next()
        .is_some_and(|t| t.trim().eq_ignore_ascii_case("application/sdp"))
    {
        return refuse(
            &state,
            addr,
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "the offer must be sent as Content-Type: application/sdp",
        );
    }
    let body = match tokio::time::timeout(
        BODY_READ_TIMEOUT,
        axum::body::to_bytes(body, MAX_OFFER_BYTES),
    )
    .await
    {
        Ok(Ok(body)) => body,
        Ok(Err(_)) => {
            return refuse(
                &state,
                addr,
                StatusCode::PAYLOAD_TOO_LARGE,
                "the offer is larger than 64 KiB",
            )
        }
        Err(_) => {
            return refuse(
                &state,
                addr,
                StatusCode::REQUEST_TIMEOUT,
                "the offer did not arrive in time",
            )
        }
    };
    let resuming = headers
        .get(pairing::RESUME_HEADER)
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned);
    let caller = match resuming {
        Some(id) => resume_session(&state, addr, credentials, &id, &body).await,
        None => authorize(&state, addr, credentials, "POST", "/whep", &body),
    };
    let caller = match caller {
        Ok(caller) => caller,
        Err(refusal) => return *refusal,
    };
    let Ok(offer) = String::from_utf8(body.to_vec()) else {
        return refuse(
            &state,
            addr,
            StatusCode::BAD_REQUEST,
            "the offer is not UTF-8 text",
        );
    };
    if !offer.trim_start().starts_with("v=0") {
        return refuse(
            &state,
            addr,
            StatusCode::BAD_REQUEST,
            "the body is not an SDP offer (it must start with v=0)",
        );
    }
    // A viewer on another machine: no loopback candidates either way.
    let (offer, ice) = if addr.ip().to_canonical().is_loopback() {
        (offer, state.ice.clone())
    } else {
        (
            crate::peer::without_loopback_candidates(&offer),
            state.ice.for_peer(addr.ip()),
        )
    };
    // An offer the share cannot serve (no video, no H.264 it takes) is refused now: no
    // peer connection, and the host is not asked about it.
    let offer = match crate::peer::parse_offer(offer) {
        Ok(offer) => offer,
        Err(e) => return refuse(&state, addr, StatusCode::BAD_REQUEST, &e.to_string()),
    };
    // The slot is taken now, before any await, and given back if this viewer fails.
    let Some(reservation) = Reservation::take(&state) else {
        return refuse(
            &state,
            addr,
            StatusCode::SERVICE_UNAVAILABLE,
            "this share has as many viewers as it allows",
        );
    };

    let name = viewer_name(&headers);
    let user_agent: String = headers
        .get(header::USER_AGENT)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("")
        .chars()
        .take(200)
        .collect();
    let (no, mut rights, keys, resumed) = match caller {
        Caller::Paired(keys) => (
            state.next_viewer.fetch_add(1, Ordering::Relaxed),
            state.default_rights,
            Some(keys),
            false,
        ),
        // A player that cannot pair watches only.
        Caller::Token => (
            state.next_viewer.fetch_add(1, Ordering::Relaxed),
            Rights::default(),
            None,
            false,
        ),
        // The same viewer: its number and rights, and the host already let it in.
        Caller::Resumed(lost) => (lost.no, lost.rights, Some(lost.keys), true),
    };
    let authenticated = keys.is_some();
    if let Some(approve) = state.approve.as_ref().filter(|_| !resumed) {
        let answer = approve(PendingViewer {
            no,
            name: name.clone(),
            addr,
            user_agent: user_agent.clone(),
            rights,
            authenticated,
        });
        match tokio::time::timeout(APPROVAL_TIMEOUT, answer).await {
            Ok(Ok(Some(granted))) => {
                // A player that cannot pair watches only, whatever the answer.
                rights = if authenticated {
                    granted
                } else {
                    Rights::default()
                };
                tracing::info!(%addr, ?rights, "the host accepted a viewer");
            }
            Ok(_) => {
                return refuse(&state, addr, StatusCode::FORBIDDEN, "the host declined");
            }
            Err(_) => {
                return refuse(
                    &state,
                    addr,
                    StatusCode::FORBIDDEN,
                    "the host did not answer in time",
                );
            }
        }
    }

    state.counters.add(Counter::PeerConnectionsCreated);
    let mut viewer = match Viewer::answer(
        offer,
        &ice,
        state.identity.as_ref(),
        state.video.clone(),
        state.audio.clone(),
        &state.keyframes,
    )
    .await
    {
        Ok(v) => v,
        Err(PeerError::BadOffer(m)) => return refuse(&state, addr, StatusCode::BAD_REQUEST, &m),
        Err(PeerError::Internal(m)) => {
            tracing::error!(%addr, "cannot serve a viewer: {m}");
            return text(StatusCode::INTERNAL_SERVER_ERROR, m);
        }
    };
    let id = session_id();
    let answer = std::mem::take(&mut viewer.answer);
    let events = std::mem::replace(&mut viewer.events, tokio::sync::mpsc::unbounded_channel().1);
    let data_channels = std::mem::replace(
        &mut viewer.data_channels,
        tokio::sync::mpsc::unbounded_channel().1,
    );
    let (rights_tx, rights_rx) = tokio::sync::watch::channel(rights);
    let (bye_tx, bye_rx) = tokio::sync::mpsc::channel(1);
    let session = tokio::spawn(
        Session {
            viewer: no,
            host: state.host.clone(),
            events: state.events.clone(),
            counters: state.counters.clone(),
            clipboard_max: state.clipboard_max,
            path: viewer.path.clone(),
            rights: rights_rx,
            data_channels,
            bye: bye_rx,
        }
        .run(),
    );
    let entry = ViewerEntry {
        info: ViewerInfo {
            id: id.clone(),
            no,
            name,
            rights,
            addr,
            since: SystemTime::now(),
            connected: false,
            user_agent,
            authenticated,
            reconnecting: false,
            asks_control: false,
        },
        viewer: Arc::new(viewer),
        rights: rights_tx,
        session,
        bye: bye_tx,
        keys: keys.clone(),
    };
    reservation.commit(id.clone(), entry);
    tokio::spawn(watch_viewer(state.clone(), id.clone(), events));
    tokio::spawn(expect_connection(state.clone(), id.clone()));
    state
        .code_life
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .used();
    if resumed {
        tracing::info!(%addr, viewer = no, session = %id, "viewer back: its session resumed, with its rights, no new approval");
    } else if authenticated {
        tracing::info!(%addr, viewer = no, session = %id, "viewer admitted");
    } else {
        tracing::info!(%addr, viewer = no, session = %id, "viewer admitted (unauthenticated: bearer code, view only)");
    }

    let mut response = (
        StatusCode::CREATED,
        [
            (header::CONTENT_TYPE, "application/sdp".to_owned()),
            (header::LOCATION, format!("/whep/{id}")),
        ],
        answer.clone(),
    )
        .into_response();
    if let Some(keys) = keys {
        let mac = pairing::encode(&keys.answer_mac(answer.as_bytes()));
        if let Ok(value) = HeaderValue::from_str(&mac) {
            response
                .headers_mut()
                .insert(pairing::ANSWER_MAC_HEADER, value);
        }
    }
    response
}

/// The name a viewer gave itself (`Porthole-Viewer-Name`, percent-encoded UTF-8): decoded,
/// without control characters, trimmed, at most [`pairing::MAX_NAME_CHARS`] characters.
/// Shown to the host beside what the share knows for sure (number, address, kind); it is
/// not covered by the pairing's MAC, so it is a label, not an identity.
pub fn viewer_name(headers: &HeaderMap) -> Option<String> {
    let raw = headers.get(pairing::NAME_HEADER)?.as_bytes();
    let decoded = percent_encoding::percent_decode(raw).decode_utf8_lossy();
    let name: String = decoded
        .chars()
        .map(|c| if c.is_control() { ' ' } else { c })
        .collect::<String>()
        .split_whitespace()
        .collect::<Vec<_>>()
        .join(" ")
        .chars()
        .take(pairing::MAX_NAME_CHARS)
        .collect();
    (!name.is_empty()).then_some(name)
}

/// Marks the viewers that ask for control (the host's list shows it until it grants it).
async fn note_control_requests(
    state: Arc<AppState>,
    mut requests: tokio::sync::broadcast::Receiver<u64>,
) {
    use tokio::sync::broadcast::error::RecvError;
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
async fn expect_connection(state: Arc<AppState>, id: String) {
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

async fn watch_viewer(
    state: Arc<AppState>,
    id: String,
    mut events: tokio::sync::mpsc::UnboundedReceiver<ViewerEvent>,
) {
    while let Some(event) = events.recv().await {
        match event {
            ViewerEvent::Connected => {
                tracing::info!(session = %id, "viewer connected");
                if let Some(e) = state
                    .viewers
                    .lock()
                    .unwrap_or_else(|e| e.into_inner())
                    .get_mut(&id)
                {
                    e.info.connected = true;
                    e.info.reconnecting = false;
                }
                state.keyframes.viewer().request(KeyframeReason::Join);
            }
            ViewerEvent::Interrupted => {
                tracing::info!(session = %id, "viewer unreachable; releasing its input");
                let no = state
                    .viewers
                    .lock()
                    .unwrap_or_else(|e| e.into_inner())
                    .get_mut(&id)
                    .map(|e| {
                        e.info.reconnecting = true;
                        e.info.no
                    });
                if let Some(no) = no {
                    state.host.end_input(no);
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

/// A viewer's offer naming its old session (`Porthole-Resume`), signed with that session's
/// keys. A session still listed (the share has not given up on its connection yet) is
/// ended and replaced; one lost within [`resume::RESUME_WINDOW`] is taken from the kept ones.
async fn resume_session(
    state: &AppState,
    addr: SocketAddr,
    credentials: Credentials,
    id: &str,
    body: &[u8],
) -> Result<Caller, Box<Response>> {
    let Credentials::Pake(auth) = credentials else {
        return Err(unauthorized(
            state,
            addr,
            "only a paired viewer can resume its session",
        ));
    };
    let proves = |keys: &Keys| keys.verify_request("POST", "/whep", body, &auth.mac);
    let live = lock_viewers(state)
        .get(id)
        .and_then(ViewerEntry::resumable)
        .filter(|lost| proves(&lost.keys));
    let back =
        match live {
            Some(lost) => remove_viewer(state, id, Ending::Quietly)
                .await
                .then_some(lost),
            None => state.lost.lock().unwrap_or_else(|e| e.into_inner()).take(
                id,
                Instant::now(),
                proves,
            ),
        };
    back.map(Caller::Resumed).ok_or_else(|| {
        unauthorized(
            state,
            addr,
            "this session cannot be resumed (unknown, ended, or lost over a minute ago): \
             pair again",
        )
    })
}

async fn remove_viewer(state: &AppState, id: &str, ending: Ending) -> bool {
    let entry = state
        .viewers
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .remove(id);
    match entry {
        Some(entry) => {
            // Nothing it sent is typed from now on (not even while its bye goes out):
            // its rights go, its queued input is dropped, nothing it held stays down.
            entry.rights.send_replace(Rights::default());
            state.host.end_input(entry.info.no);
            let code = match ending {
                Ending::Quietly => None,
                Ending::Removed => Some(crate::protocol::notice::REMOVED),
                Ending::HostStopped => Some(crate::protocol::notice::HOST_STOPPED),
            };
            if let Some(code) = code {
                // Told why at once, instead of seeing a frozen picture until its
                // connection times out.
                let (sent, done) = tokio::sync::oneshot::channel();
                if entry
                    .bye
                    .try_send(crate::session::Bye { code, sent })
                    .is_ok()
                {
                    let wait = crate::session::BYE_FLUSH + Duration::from_millis(350);
                    let _ = tokio::time::timeout(wait, done).await;
                }
            }
            entry.session.abort();
            state.host.end_input(entry.info.no);
            entry.viewer.close().await;
            true
        }
        None => false,
    }
}

async fn delete_whep(
    State(state): State<Arc<AppState>>,
    ConnectInfo(addr): ConnectInfo<SocketAddr>,
    Path(id): Path<String>,
    headers: HeaderMap,
) -> Response {
    let credentials = match credentials(&state, addr, &headers) {
        Ok(c) => c,
        Err(refusal) => return *refusal,
    };
    let Some(keys) = lock_viewers(&state).get(&id).map(|e| e.keys.clone()) else {
        return text(StatusCode::NOT_FOUND, "no such session");
    };
    // Only the session's own pairing (or, for a bearer viewer, the code) may end it.
    match (credentials, keys) {
        (Credentials::Pake(auth), Some(keys))
            if keys.verify_request("DELETE", &format!("/whep/{id}"), b"", &auth.mac) => {}
        (Credentials::Bearer(token), None) => {
            if let Err(refusal) = check_token(&state, addr, &token) {
                return *refusal;
            }
        }
        _ => {
            state.counters.add(Counter::Unauthorized);
            return refuse(
                &state,
                addr,
                StatusCode::FORBIDDEN,
                "this request is not signed by the session's own pairing",
            );
        }
    }
    if remove_viewer(&state, &id, Ending::Quietly).await {
        tracing::info!(%addr, session = %id, "viewer ended its session");
        StatusCode::OK.into_response()
    } else {
        text(StatusCode::NOT_FOUND, "no such session")
    }
}

async fn get_stats(
    State(state): State<Arc<AppState>>,
    ConnectInfo(addr): ConnectInfo<SocketAddr>,
    headers: HeaderMap,
) -> Response {
    let authorized = credentials(&state, addr, &headers)
        .and_then(|c| authorize(&state, addr, c, "GET", "/api/stats", b""));
    if let Err(refusal) = authorized {
        return *refusal;
    }
    let (viewers, connected, reconnecting) = {
        let v = state.viewers.lock().unwrap_or_else(|e| e.into_inner());
        (
            v.len(),
            v.values().filter(|e| e.info.connected).count(),
            v.values().filter(|e| e.info.reconnecting).count(),
        )
    };
    let get = |counter: &AtomicU64| counter.load(Ordering::Relaxed);
    let value = |stat: Stat| match stat {
        Stat::Viewers => viewers as u64,
        Stat::ViewersConnected => connected as u64,
        Stat::ViewersReconnecting => reconnecting as u64,
        Stat::VideoUnitsPublished => get(&state.video.units_published),
        Stat::AudioPacketsPublished => state.audio.as_ref().map_or(0, |a| get(&a.units_published)),
        Stat::KeyframesRequested => get(&state.video.keyframes_requested),
        Stat::Counted(counter) => state.counters.get(counter),
    };
    let mut map = serde_json::Map::new();
    let mut put = |k: &str, v: u64| {
        map.insert(k.to_owned(), v.into());
    };
    for stat in Stat::ALL {
        put(stat.name(), value(stat));
    }
    for (k, v) in (state.media_stats)() {
        put(k, v);
    }
    (
        [(header::CACHE_CONTROL, "no-store")],
        axum::Json(serde_json::Value::Object(map)),
    )
        .into_response()
}

async fn get_asset(uri: Uri) -> Response {
    match assets::find(uri.path()) {
        Some(asset) => (
            [
                (header::CONTENT_TYPE, asset.content_type),
                (header::CACHE_CONTROL, "no-cache"),
                (header::REFERRER_POLICY, "no-referrer"),
                (header::X_CONTENT_TYPE_OPTIONS, "nosniff"),
                (
                    header::CONTENT_SECURITY_POLICY,
                    "default-src 'self'; script-src 'self' 'wasm-unsafe-eval'; img-src 'self' data:; \
                     style-src 'self' 'unsafe-inline'; media-src 'self' blob:; connect-src 'self'; frame-ancestors 'none'",
                ),
            ],
            asset.body,
        )
            .into_response(),
        None => text(StatusCode::NOT_FOUND, "not found"),
    }
}

fn session_id() -> String {
    let bytes: [u8; 12] = rand::random();
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// The URL a viewer opens: the code rides in the fragment, which browsers never send.
pub fn viewer_url(host: &str, port: u16, code: &AccessCode) -> String {
    let host = crate::host_in_url(host);
    format!("http://{host}:{port}/#code={}", code.reveal())
}

// The integration tests' offer helper: one file for them and the unit tests below.
#[cfg(test)]
#[path = "../tests/common/offer.rs"]
mod test_offer;

#[cfg(test)]
mod tests {
    use super::*;
    use axum::body::Body;
    use axum::extract::connect_info::MockConnectInfo;
    use axum::http::Request;
    use http_body_util::BodyExt;
    use tower::ServiceExt;

    const CODE: &str = "right-code-1";

    fn state() -> Arc<AppState> {
        let video = VideoFanout::new(Instant::now(), Arc::new(|| {}));
        Arc::new(AppState {
            code: AccessCode::parse(CODE).unwrap(),
            code_life: Mutex::new(CodeLife::new(None, Instant::now())),
            allow_token: false,
            pairings: Mutex::new(Pairings::default()),
            lost: Mutex::new(resume::LostSessions::default()),
            ice: IceConfig {
                servers: vec![],
                udp_addrs: vec!["127.0.0.1:0".into()],
            },
            max_viewers: 2,
            keyframes: KeyframeGate::new(video.clone(), KeyframePolicy::default()),
            hosts: origin::HostPolicy::new(Some("desk")),
            video,
            audio: None,
            viewers: Mutex::new(ViewerRegistry::default()),
            throttle: Mutex::new(new_throttle()),
            counters: Arc::default(),
            media_stats: Arc::new(|| vec![("frames_encoded", 7)]),
            host: Arc::new(crate::session::ViewOnlyHost),
            events: HostEvents::new(),
            default_rights: Rights::default(),
            clipboard_max: 1024,
            next_viewer: AtomicU64::new(1),
            approve: None,
            identity: None,
        })
    }

    fn app(state: &Arc<AppState>) -> Router {
        router(state.clone()).layer(MockConnectInfo(SocketAddr::from(([127, 0, 0, 1], 5000))))
    }

    async fn send(
        state: &Arc<AppState>,
        method: &str,
        uri: &str,
        headers: &[(&str, &str)],
        body: impl Into<Body>,
    ) -> (StatusCode, HeaderMap, String) {
        let mut req = Request::builder().method(method).uri(uri);
        for (k, v) in headers {
            req = req.header(*k, *v);
        }
        let resp = app(state)
            .oneshot(req.body(body.into()).unwrap())
            .await
            .unwrap();
        let status = resp.status();
        let headers = resp.headers().clone();
        let bytes = resp.into_body().collect().await.unwrap().to_bytes();
        (
            status,
            headers,
            String::from_utf8_lossy(&bytes).into_owned(),
        )
    }

    const SDP: (&str, &str) = ("content-type", "application/sdp");
    const JSON: (&str, &str) = ("content-type", "application/json");

    /// Round one with `code`, as a viewer: the pairing's id and keys, or the error.
    async fn pair_with(
        st: &Arc<AppState>,
        code: &str,
    ) -> Result<(String, Keys), pairing::PakeError> {
        let viewer = pairing::ViewerPairing::start(code, rand::random());
        let request = serde_json::json!({ "message": pairing::encode(viewer.message()) });
        let (status, _, body) = send(st, "POST", "/pake", &[JSON], request.to_string()).await;
        assert_eq!(status, StatusCode::OK, "{body}");
        let reply: pairing::PairReply = serde_json::from_str(&body).unwrap();
        let keys = viewer.finish(
            &pairing::decode(&reply.message).unwrap(),
            &pairing::decode(&reply.confirm).unwrap(),
        )?;
        Ok((reply.id, keys))
    }

    /// A fresh pairing's signature over one request.
    async fn signed(st: &Arc<AppState>, method: &str, path: &str, body: &[u8]) -> String {
        let (id, keys) = pair_with(st, CODE).await.unwrap();
        pairing::authorization(&id, &keys, method, path, body)
    }

    /// `send`, signed by a fresh pairing with the right code (as viewers send).
    async fn send_signed(
        st: &Arc<AppState>,
        method: &str,
        uri: &str,
        headers: &[(&str, &str)],
        body: &str,
    ) -> (StatusCode, HeaderMap, String) {
        let auth = signed(st, method, uri, body.as_bytes()).await;
        let mut all = vec![("authorization", auth.as_str())];
        all.extend_from_slice(headers);
        send(st, method, uri, &all, body.to_owned()).await
    }

    use super::test_offer::recvonly_offer;

    #[tokio::test]
    async fn serves_the_viewer_page_with_a_strict_policy() {
        let st = state();
        let (status, headers, body) = send(&st, "GET", "/", &[], Body::empty()).await;
        assert_eq!(status, StatusCode::OK);
        assert!(body.contains("viewer.js"));
        let csp = headers[header::CONTENT_SECURITY_POLICY].to_str().unwrap();
        assert!(csp.contains("default-src 'self'"));
        assert!(csp.contains("script-src 'self' 'wasm-unsafe-eval'"));
        let (status, headers, body) = send(&st, "GET", "/pake.wasm", &[], Body::empty()).await;
        assert_eq!(status, StatusCode::OK);
        assert_eq!(headers[header::CONTENT_TYPE], "application/wasm");
        assert!(body.as_bytes().starts_with(b"\0asm"));
        let (status, _, _) = send(&st, "GET", "/nope", &[], Body::empty()).await;
        assert_eq!(status, StatusCode::NOT_FOUND);
    }

    #[tokio::test]
    async fn no_credentials_or_a_bearer_code_is_401_and_makes_no_peer_connection() {
        let st = state();
        let (status, headers, body) = send(&st, "POST", "/whep", &[SDP], "v=0\r\n").await;
        assert_eq!(status, StatusCode::UNAUTHORIZED);
        assert_eq!(
            headers[header::WWW_AUTHENTICATE],
            "Porthole-PAKE realm=\"porthole\""
        );
        assert!(body.contains("pair with the access code first"), "{body}");
        // Even the right code is not taken in a header unless the host allows it.
        let bearer = format!("Bearer {CODE}");
        let (status, _, body) = send(
            &st,
            "POST",
            "/whep",
            &[SDP, ("authorization", bearer.as_str())],
            "v=0\r\n",
        )
        .await;
        assert_eq!(status, StatusCode::UNAUTHORIZED);
        assert!(body.contains("--allow-whep-token"), "{body}");
        assert_eq!(st.counters.get(Counter::PeerConnectionsCreated), 0);
        assert_eq!(st.counters.get(Counter::WhepRefused), 2);
        assert_eq!(st.throttle.lock().unwrap().tracked(), 0, "no guesses");
    }

    #[tokio::test]
    async fn a_wrong_code_fails_the_first_round_and_counts_one_guess() {
        let st = state();
        assert_eq!(
            pair_with(&st, "wrong-code-2").await.err(),
            Some(pairing::PakeError::NotConfirmed)
        );
        assert_eq!(st.counters.get(Counter::Pairings), 1);
        assert_eq!(st.throttle.lock().unwrap().tracked(), 1);
        // The right code's signed request forgives its address's provisional guess.
        let (status, _, _) = send_signed(&st, "GET", "/api/stats", &[], "").await;
        assert_eq!(status, StatusCode::OK);
        assert_eq!(st.throttle.lock().unwrap().tracked(), 0);
        assert_eq!(st.counters.get(Counter::PairingsConfirmed), 1);
    }

    #[tokio::test]
    async fn malformed_pairing_requests_are_refused_with_reasons() {
        let st = state();
        let (status, _, _) = send(&st, "POST", "/pake", &[SDP], "{}").await;
        assert_eq!(status, StatusCode::UNSUPPORTED_MEDIA_TYPE);
        for body in [
            "",
            "{}",
            "{\"message\": \"AAAA\"}",
            "{\"message\": 5}",
            "[]",
        ] {
            let (status, _, text) = send(&st, "POST", "/pake", &[JSON], body).await;
            assert_eq!(status, StatusCode::BAD_REQUEST, "{body}");
            assert!(text.contains("33-byte SPAKE2 message"), "{text}");
        }
        let (status, _, _) = send(&st, "POST", "/pake", &[JSON], vec![b' '; 2000]).await;
        assert_eq!(status, StatusCode::PAYLOAD_TOO_LARGE);
        assert_eq!(st.counters.get(Counter::Pairings), 0);
    }

    #[tokio::test]
    async fn bad_content_type_and_garbage_bodies_are_refused_with_reasons() {
        let st = state();
        let (status, _, _) = send_signed(
            &st,
            "POST",
            "/whep",
            &[("content-type", "text/plain")],
            "v=0",
        )
        .await;
        assert_eq!(status, StatusCode::UNSUPPORTED_MEDIA_TYPE);
        let (status, _, body) = send_signed(&st, "POST", "/whep", &[SDP], "hello").await;
        assert_eq!(status, StatusCode::BAD_REQUEST);
        assert!(body.contains("not an SDP offer"), "{body}");
        let bad =
            "v=0\r\no=- 1 1 IN IP4 0.0.0.0\r\ns=-\r\nt=0 0\r\nm=video 9 UDP/TLS/RTP/SAVPF 96\r\n";
        let (status, _, body) = send_signed(&st, "POST", "/whep", &[SDP], bad).await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{body}");
        assert!(!body.is_empty());
        let auth = signed(&st, "POST", "/whep", b"").await;
        let (status, _, _) = send(
            &st,
            "POST",
            "/whep",
            &[("authorization", auth.as_str()), SDP],
            vec![b'x'; MAX_OFFER_BYTES + 1],
        )
        .await;
        assert_eq!(status, StatusCode::PAYLOAD_TOO_LARGE);
        assert_eq!(st.viewers.lock().unwrap().len(), 0);
    }

    #[tokio::test]
    async fn repeated_wrong_codes_are_throttled() {
        let st = state();
        for _ in 0..MAX_FAILURES_PER_MINUTE {
            assert_eq!(
                pair_with(&st, "wrong-code-0").await.err(),
                Some(pairing::PakeError::NotConfirmed)
            );
        }
        let viewer = pairing::ViewerPairing::start(CODE, rand::random());
        let request = serde_json::json!({ "message": pairing::encode(viewer.message()) });
        let (status, headers, _) = send(&st, "POST", "/pake", &[JSON], request.to_string()).await;
        assert_eq!(
            status,
            StatusCode::TOO_MANY_REQUESTS,
            "from the guessing address even the right code waits (no oracle)"
        );
        assert_eq!(headers[header::RETRY_AFTER], "60");
    }

    #[tokio::test]
    async fn requests_without_a_code_are_refused_but_never_counted() {
        let st = state();
        for _ in 0..(MAX_FAILURES_PER_MINUTE * 3) {
            let (status, _, _) = send(&st, "POST", "/whep", &[SDP], "v=0").await;
            assert_eq!(status, StatusCode::UNAUTHORIZED);
            let (status, _, _) = send(
                &st,
                "POST",
                "/whep",
                &[
                    ("content-type", "text/plain"),
                    ("authorization", "Basic eA=="),
                ],
                "x",
            )
            .await;
            assert_eq!(status, StatusCode::UNAUTHORIZED);
        }
        let (status, _, _) = send_signed(&st, "GET", "/api/stats", &[], "").await;
        assert_eq!(status, StatusCode::OK, "the owner is not locked out");
    }

    #[tokio::test]
    async fn foreign_hosts_and_origins_are_refused() {
        let st = state();
        let (status, _, body) = send(
            &st,
            "GET",
            "/",
            &[("host", "evil.example:7380")],
            Body::empty(),
        )
        .await;
        assert_eq!(status, StatusCode::MISDIRECTED_REQUEST);
        assert!(body.contains("DNS rebinding"), "{body}");
        let (status, _, _) = send(
            &st,
            "GET",
            "/",
            &[("host", "desk.local:7380")],
            Body::empty(),
        )
        .await;
        assert_eq!(status, StatusCode::OK);
        let auth = signed(&st, "POST", "/whep", b"v=0").await;
        let (status, _, body) = send(
            &st,
            "POST",
            "/whep",
            &[
                SDP,
                ("authorization", auth.as_str()),
                ("host", "127.0.0.1:7380"),
                ("origin", "http://evil.example"),
            ],
            "v=0",
        )
        .await;
        assert_eq!(status, StatusCode::FORBIDDEN);
        assert!(body.contains("cross-origin"), "{body}");
        // The share's own page, and tools that send no Origin, get through.
        for origin in [Some("http://127.0.0.1:7380"), None] {
            let auth = signed(&st, "POST", "/whep", b"hello").await;
            let mut headers = vec![
                SDP,
                ("authorization", auth.as_str()),
                ("host", "127.0.0.1:7380"),
            ];
            headers.extend(origin.map(|o| ("origin", o)));
            let (status, _, body) = send(&st, "POST", "/whep", &headers, "hello").await;
            assert_eq!(status, StatusCode::BAD_REQUEST, "{origin:?}: {body}");
        }
        let (status, _, _) = send(
            &st,
            "DELETE",
            "/whep/x",
            &[("host", "127.0.0.1:7380"), ("origin", "null")],
            Body::empty(),
        )
        .await;
        assert_eq!(status, StatusCode::FORBIDDEN);
    }

    /// POSTs `offer` signed by `keys` (pairing `id`), resuming session `resume` if given.
    async fn post_offer(
        st: &Arc<AppState>,
        id: &str,
        keys: &Keys,
        resume: Option<&str>,
        offer: String,
    ) -> (StatusCode, HeaderMap, String) {
        let auth = pairing::authorization(id, keys, "POST", "/whep", offer.as_bytes());
        let mut headers = vec![("authorization", auth.as_str()), SDP];
        if let Some(resume) = resume {
            headers.push((pairing::RESUME_HEADER, resume));
        }
        send(st, "POST", "/whep", &headers, offer).await
    }

    #[tokio::test]
    async fn a_session_is_resumed_by_its_own_pairing_only_once_and_without_a_new_approval() {
        let mut st = state();
        let asked = Arc::new(AtomicU64::new(0));
        let count = asked.clone();
        Arc::get_mut(&mut st).unwrap().approve = Some(Arc::new(move |_| {
            count.fetch_add(1, Ordering::Relaxed);
            let (tx, rx) = oneshot::channel();
            let _ = tx.send(Some(Rights::default()));
            rx
        }));
        let (client, offer) = recvonly_offer().await;
        let (id, keys) = pair_with(&st, CODE).await.unwrap();
        let (status, headers, body) = post_offer(&st, &id, &keys, None, offer.clone()).await;
        assert_eq!(status, StatusCode::CREATED, "{body}");
        let first = headers[header::LOCATION].to_str().unwrap()["/whep/".len()..].to_owned();
        assert_eq!(asked.load(Ordering::Relaxed), 1);

        // Another pairing (the right code, but not this session's keys) cannot take it.
        let (other_id, other_keys) = pair_with(&st, CODE).await.unwrap();
        let (status, _, body) =
            post_offer(&st, &other_id, &other_keys, Some(&first), offer.clone()).await;
        assert_eq!(status, StatusCode::UNAUTHORIZED, "{body}");
        assert!(body.contains("cannot be resumed"), "{body}");
        assert!(
            lock_viewers(&st).get(&first).is_some(),
            "the session is untouched"
        );

        // Its own pairing can: the same viewer, a new session, the host not asked again.
        let (status, headers, answer) =
            post_offer(&st, &id, &keys, Some(&first), offer.clone()).await;
        assert_eq!(status, StatusCode::CREATED, "{answer}");
        let mac = pairing::decode(headers[pairing::ANSWER_MAC_HEADER].to_str().unwrap()).unwrap();
        assert!(keys.verify_answer(answer.as_bytes(), &mac));
        let second = headers[header::LOCATION].to_str().unwrap()["/whep/".len()..].to_owned();
        assert_ne!(second, first);
        assert_eq!(asked.load(Ordering::Relaxed), 1, "no second approval");
        let listed: Vec<(String, u64)> = lock_viewers(&st)
            .values()
            .map(|e| (e.info.id.clone(), e.info.no))
            .collect();
        assert_eq!(
            listed,
            vec![(second.clone(), 1)],
            "one viewer, still number 1"
        );
        let (status, _, _) = post_offer(&st, &id, &keys, Some(&first), offer.clone()).await;
        assert_eq!(
            status,
            StatusCode::UNAUTHORIZED,
            "a session is resumed once"
        );

        // A session lost a while ago comes back with its number and rights.
        let (lost_id, lost_keys) = pair_with(&st, CODE).await.unwrap();
        let lost_keys = Arc::new(lost_keys);
        st.lost.lock().unwrap().keep(
            "0123456789abcdef01234567".into(),
            resume::Lost {
                keys: lost_keys.clone(),
                no: 7,
                rights: Rights {
                    control: true,
                    clipboard: false,
                },
            },
            Instant::now(),
        );
        let (status, headers, body) = post_offer(
            &st,
            &lost_id,
            &lost_keys,
            Some("0123456789abcdef01234567"),
            offer,
        )
        .await;
        assert_eq!(status, StatusCode::CREATED, "{body}");
        let third = headers[header::LOCATION].to_str().unwrap()["/whep/".len()..].to_owned();
        let back = lock_viewers(&st)
            .get(&third)
            .map(|e| (e.info.no, e.info.rights.control));
        assert_eq!(back, Some((7, true)));
        assert_eq!(
            asked.load(Ordering::Relaxed),
            1,
            "no approval for it either"
        );
        client.close().await.unwrap();
    }

    #[tokio::test]
    async fn a_real_offer_gets_a_signed_answer_and_a_session_only_its_pairing_ends() {
        let st = state();
        let (client, offer) = recvonly_offer().await;
        let (id, keys) = pair_with(&st, CODE).await.unwrap();
        let (status, headers, answer) = post_offer(&st, &id, &keys, None, offer).await;
        assert_eq!(status, StatusCode::CREATED, "{answer}");
        assert_eq!(headers[header::CONTENT_TYPE], "application/sdp");
        assert!(answer.starts_with("v=0"));
        assert!(answer.contains("m=video"));
        assert!(answer.contains("H264/90000"), "{answer}");
        assert!(answer.contains("a=sendonly"), "{answer}");
        assert!(
            answer.contains("a=candidate:"),
            "the answer carries candidates"
        );
        let mac = pairing::decode(headers[pairing::ANSWER_MAC_HEADER].to_str().unwrap()).unwrap();
        assert!(keys.verify_answer(answer.as_bytes(), &mac));
        let swapped = answer.replacen("a=fingerprint:sha-256 ", "a=fingerprint:sha-256 0", 1);
        assert!(!keys.verify_answer(swapped.as_bytes(), &mac));
        let location = headers[header::LOCATION].to_str().unwrap().to_owned();
        assert!(location.starts_with("/whep/"));
        assert_eq!(st.counters.get(Counter::PeerConnectionsCreated), 1);
        assert_eq!(st.viewers.lock().unwrap().len(), 1);
        assert!(st
            .viewers
            .lock()
            .unwrap()
            .values()
            .all(|e| e.info.authenticated));
        let (status, headers, _) = send(&st, "OPTIONS", &location, &[], Body::empty()).await;
        assert_eq!(status, StatusCode::NO_CONTENT, "the session exists");
        assert_eq!(headers[header::ALLOW], "OPTIONS, DELETE");

        let (status, _, _) = send(&st, "DELETE", &location, &[], Body::empty()).await;
        assert_eq!(status, StatusCode::UNAUTHORIZED, "DELETE needs credentials");
        let (status, _, _) = send_signed(&st, "DELETE", &location, &[], "").await;
        assert_eq!(
            status,
            StatusCode::FORBIDDEN,
            "another viewer's pairing may not"
        );
        let own = pairing::authorization(&id, &keys, "DELETE", &location, b"");
        let (status, _, _) = send(
            &st,
            "DELETE",
            &location,
            &[("authorization", own.as_str())],
            Body::empty(),
        )
        .await;
        assert_eq!(status, StatusCode::OK);
        assert_eq!(st.viewers.lock().unwrap().len(), 0);
        let (status, _, _) = send(
            &st,
            "DELETE",
            &location,
            &[("authorization", own.as_str())],
            Body::empty(),
        )
        .await;
        assert_eq!(status, StatusCode::NOT_FOUND);
        client.close().await.unwrap();
    }

    #[tokio::test]
    async fn an_offer_changed_on_its_way_is_refused_before_any_peer_connection() {
        let st = state();
        let (_client, offer) = recvonly_offer().await;
        let (id, keys) = pair_with(&st, CODE).await.unwrap();
        let auth = pairing::authorization(&id, &keys, "POST", "/whep", offer.as_bytes());
        // A relay puts its own certificate in the viewer's offer.
        let relayed = offer.replacen("a=fingerprint:sha-256 ", "a=fingerprint:sha-256 0", 1);
        let (status, _, body) = send(
            &st,
            "POST",
            "/whep",
            &[("authorization", auth.as_str()), SDP],
            relayed,
        )
        .await;
        assert_eq!(status, StatusCode::FORBIDDEN);
        assert_eq!(body, pairing::NOT_THE_SHARE);
        assert_eq!(st.counters.get(Counter::MacRefused), 1);
        // The pairing is spent: the original cannot follow.
        let (status, _, _) = send(
            &st,
            "POST",
            "/whep",
            &[("authorization", auth.as_str()), SDP],
            offer,
        )
        .await;
        assert_eq!(status, StatusCode::UNAUTHORIZED);
        assert_eq!(st.counters.get(Counter::PeerConnectionsCreated), 0);
    }

    #[tokio::test]
    async fn a_bearer_player_is_admitted_only_when_allowed_and_watches_unauthenticated() {
        let mut st = state();
        {
            let s = Arc::get_mut(&mut st).unwrap();
            s.allow_token = true;
            s.default_rights = Rights {
                control: true,
                clipboard: true,
            };
        }
        let (client, offer) = recvonly_offer().await;
        let bearer = format!("Bearer {CODE}");
        let (status, headers, body) = send(
            &st,
            "POST",
            "/whep",
            &[("authorization", bearer.as_str()), SDP],
            offer,
        )
        .await;
        assert_eq!(status, StatusCode::CREATED, "{body}");
        assert!(!headers.contains_key(pairing::ANSWER_MAC_HEADER));
        let info = st
            .viewers
            .lock()
            .unwrap()
            .values()
            .next()
            .unwrap()
            .info
            .clone();
        assert!(!info.authenticated);
        assert_eq!(info.rights, Rights::default(), "view only");
        let (status, _, body) = send(
            &st,
            "GET",
            "/api/stats",
            &[("authorization", "Bearer wrong-code-9")],
            Body::empty(),
        )
        .await;
        assert_eq!(
            (status, body.as_str()),
            (StatusCode::UNAUTHORIZED, "wrong access code")
        );
        client.close().await.unwrap();
    }

    #[tokio::test]
    async fn an_expired_code_pairs_no_more() {
        let st = state();
        *st.code_life.lock().unwrap() = CodeLife::new(Some(CodeExpiry::FirstUse), Instant::now());
        let (_client, offer) = recvonly_offer().await;
        let (status, _, body) = send_signed(&st, "POST", "/whep", &[SDP], &offer).await;
        assert_eq!(status, StatusCode::CREATED, "{body}");
        let viewer = pairing::ViewerPairing::start(CODE, rand::random());
        let request = serde_json::json!({ "message": pairing::encode(viewer.message()) });
        let (status, _, body) = send(&st, "POST", "/pake", &[JSON], request.to_string()).await;
        assert_eq!(status, StatusCode::FORBIDDEN);
        assert!(body.contains("expired"), "{body}");
    }

    #[tokio::test]
    async fn a_declined_viewer_gets_403_and_no_peer_connection() {
        let mut st = state();
        let asked = Arc::new(AtomicU64::new(0));
        let counter = asked.clone();
        Arc::get_mut(&mut st).unwrap().approve = Some(Arc::new(move |_viewer| {
            counter.fetch_add(1, Ordering::Relaxed);
            let (tx, rx) = tokio::sync::oneshot::channel();
            let _ = tx.send(None);
            rx
        }));
        let (_client, offer) = recvonly_offer().await;
        let (status, _, body) = send_signed(&st, "POST", "/whep", &[SDP], &offer).await;
        assert_eq!(status, StatusCode::FORBIDDEN);
        assert_eq!(body, "the host declined");
        assert_eq!(asked.load(Ordering::Relaxed), 1);
        assert_eq!(st.counters.get(Counter::PeerConnectionsCreated), 0);
        // A wrong code is found in the first round: the host is never asked.
        assert_eq!(
            pair_with(&st, "nope-nope-1").await.err(),
            Some(pairing::PakeError::NotConfirmed)
        );
        assert_eq!(asked.load(Ordering::Relaxed), 1);
    }

    /// The m-section of `kind` in `sdp`, as lines.
    fn section<'a>(sdp: &'a str, kind: &str) -> Vec<&'a str> {
        let start = format!("m={kind} ");
        sdp.lines()
            .skip_while(|l| !l.starts_with(&start))
            .enumerate()
            .take_while(|(i, l)| *i == 0 || !l.starts_with("m="))
            .map(|(_, l)| l)
            .collect()
    }

    #[tokio::test]
    async fn a_share_without_sound_answers_the_audio_section_inactive_not_rejected() {
        let st = state();
        let (_client, offer) = super::test_offer::recvonly_offer_of(true).await;
        let (status, _, answer) = send_signed(&st, "POST", "/whep", &[SDP], &offer).await;
        assert_eq!(status, StatusCode::CREATED, "{answer}");
        let audio = section(&answer, "audio");
        // Strict clients (aiortc, werift) refuse a port-0 section without codecs or ICE
        // credentials: this one is a bundled, inactive section with its codec.
        assert!(
            !audio.is_empty() && !audio[0].starts_with("m=audio 0 "),
            "{answer}"
        );
        for want in ["a=inactive", "a=rtpmap:", "a=ice-ufrag:", "a=mid:"] {
            assert!(
                audio.iter().any(|l| l.starts_with(want)),
                "{want} in {audio:#?}"
            );
        }
        let mid = audio.iter().find_map(|l| l.strip_prefix("a=mid:")).unwrap();
        let bundle = answer
            .lines()
            .find(|l| l.starts_with("a=group:BUNDLE"))
            .unwrap();
        assert!(bundle.split_whitespace().any(|m| m == mid), "{bundle}");
    }

    #[tokio::test]
    async fn methods_a_resource_lacks_get_405_with_allow() {
        let st = state();
        let (status, headers, _) = send(&st, "PATCH", "/whep/abc", &[], Body::empty()).await;
        assert_eq!(status, StatusCode::METHOD_NOT_ALLOWED);
        let allow = headers[header::ALLOW].to_str().unwrap();
        assert!(
            allow.contains("DELETE") && allow.contains("OPTIONS"),
            "{allow}"
        );
        let (status, _, _) = send(&st, "OPTIONS", "/whep/abc", &[], Body::empty()).await;
        assert_eq!(status, StatusCode::NOT_FOUND, "no such session");
        let (status, headers, _) = send(&st, "GET", "/whep", &[], Body::empty()).await;
        assert_eq!(status, StatusCode::METHOD_NOT_ALLOWED);
        assert!(headers[header::ALLOW].to_str().unwrap().contains("POST"));
    }

    #[tokio::test]
    async fn stats_need_a_signed_request_and_include_media_counters() {
        let st = state();
        let (status, _, _) = send(&st, "GET", "/api/stats", &[], Body::empty()).await;
        assert_eq!(status, StatusCode::UNAUTHORIZED);
        let (status, _, body) = send_signed(&st, "GET", "/api/stats", &[], "").await;
        assert_eq!(status, StatusCode::OK);
        let json: serde_json::Value = serde_json::from_str(&body).unwrap();
        assert_eq!(json["frames_encoded"], 7);
        assert_eq!(json["viewers"], 0);
        assert_eq!(json["pairings_confirmed"], 1);
    }

    #[test]
    fn a_viewer_name_is_decoded_cleaned_and_cut() {
        let name = |v: &str| {
            let mut h = HeaderMap::new();
            h.insert(pairing::NAME_HEADER, HeaderValue::from_str(v).unwrap());
            viewer_name(&h)
        };
        assert_eq!(name("Zo%C3%AB's%20phone").as_deref(), Some("Zoë's phone"));
        assert_eq!(
            name("%0Aa%09%20b%1B[31m").as_deref(),
            Some("a b [31m"),
            "no control characters"
        );
        assert_eq!(name("%20%20"), None);
        assert_eq!(
            name(&"x".repeat(100)).map(|n| n.chars().count()),
            Some(pairing::MAX_NAME_CHARS)
        );
        assert_eq!(
            name("%FF%FEok").as_deref(),
            Some("\u{fffd}\u{fffd}ok"),
            "bad UTF-8 is replaced"
        );
        assert_eq!(viewer_name(&HeaderMap::new()), None);
    }

    #[test]
    fn viewer_urls_carry_the_code_in_the_fragment() {
        let code = AccessCode::parse("abcdefgh").unwrap();
        assert_eq!(
            viewer_url("127.0.0.1", 7380, &code),
            "http://127.0.0.1:7380/#code=abcdefgh"
        );
        assert_eq!(
            viewer_url("::1", 80, &code),
            "http://[::1]:80/#code=abcdefgh"
        );
    }
}
