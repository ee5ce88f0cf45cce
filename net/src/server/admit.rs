//! Admission: the viewers admitted and the slots being set up ([`ViewerRegistry`]), who a
//! viewer will be once in ([`Applicant`]: its number and rights, new or resumed), the
//! host's approval, and a viewer's start once its connection is answered
//! ([`Reservation::admit`]). `handlers::post_whep` sequences these steps.
//!
//! A slot is reserved before anything is awaited and given back if the viewer fails, so
//! `max_viewers` holds under any number of concurrent offers.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Instant, SystemTime};

use axum::http::{header, HeaderMap, StatusCode};
use axum::response::Response;
use tokio::sync::{mpsc, watch};

use super::auth::{self, Caller, Credentials, Signed, Signer};
use super::lifecycle::{self, Ending};
use super::{resume, viewer_name, AppState, PendingViewer, ViewerInfo, APPROVAL_TIMEOUT};
use crate::control::Rights;
use crate::pairing::Keys;
use crate::peer::{Answered, Viewer};
use crate::session::{Bye, Session};

pub(super) struct ViewerEntry {
    pub info: ViewerInfo,
    pub viewer: Arc<Viewer>,
    pub rights: watch::Sender<Rights>,
    pub session: tokio::task::JoinHandle<()>,
    /// The session's last word (see `Session::bye`).
    pub bye: mpsc::Sender<Bye>,
    /// The pairing's keys, which sign the viewer's `DELETE` (`None`: a bearer viewer).
    pub keys: Option<Arc<Keys>>,
}

impl ViewerEntry {
    /// What its viewer needs to come back as itself (see [`resume`]); `None` for a bearer
    /// viewer, which has no pairing to prove it with.
    pub fn resumable(&self) -> Option<resume::Lost> {
        Some(resume::Lost {
            keys: self.keys.clone()?,
            no: self.info.no,
            rights: *self.rights.borrow(),
        })
    }
}

/// The viewers admitted, and the slots reserved for viewers being set up: admission is
/// decided under one lock, before anything is awaited.
#[derive(Default)]
pub(super) struct ViewerRegistry {
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

    pub fn len(&self) -> usize {
        self.entries.len()
    }

    pub fn get(&self, id: &str) -> Option<&ViewerEntry> {
        self.entries.get(id)
    }

    pub fn get_mut(&mut self, id: &str) -> Option<&mut ViewerEntry> {
        self.entries.get_mut(id)
    }

    pub fn remove(&mut self, id: &str) -> Option<ViewerEntry> {
        self.entries.remove(id)
    }

    pub fn values(&self) -> impl Iterator<Item = &ViewerEntry> {
        self.entries.values()
    }

    pub fn values_mut(&mut self) -> impl Iterator<Item = &mut ViewerEntry> {
        self.entries.values_mut()
    }

    pub fn keys(&self) -> impl Iterator<Item = &String> {
        self.entries.keys()
    }
}

pub(super) fn lock_viewers(state: &AppState) -> std::sync::MutexGuard<'_, ViewerRegistry> {
    state.viewers.lock().unwrap_or_else(|e| e.into_inner())
}

/// A reserved viewer slot; given back when dropped without [`Reservation::admit`] (a
/// refusal, a failed answer, or the client hanging up mid-way).
pub(super) struct Reservation {
    state: Arc<AppState>,
    held: bool,
}

impl Reservation {
    /// A slot, if the share has fewer viewers than it allows.
    pub fn take(state: &Arc<AppState>) -> Option<Self> {
        lock_viewers(state)
            .try_reserve(state.config.max_viewers)
            .then(|| Self {
                state: state.clone(),
                held: true,
            })
    }

    /// The slot becomes `applicant`'s, connected by `answered`: its session starts, it is
    /// listed and watched, and the code counts as used. Returns its session id.
    pub fn admit(mut self, applicant: Applicant, answered: Answered) -> String {
        let state = self.state.clone();
        let Answered {
            viewer,
            answer: _,
            events,
            data_channels,
        } = answered;
        let id = session_id();
        let (rights_tx, rights_rx) = watch::channel(applicant.rights);
        let (bye_tx, bye_rx) = mpsc::channel(1);
        let session = tokio::spawn(
            Session {
                viewer: applicant.no,
                host: state.config.host.clone(),
                events: state.config.events.clone(),
                counters: state.counters.clone(),
                clipboard_max: state.config.clipboard_max,
                path: viewer.path.clone(),
                rights: rights_rx,
                data_channels,
                bye: bye_rx,
            }
            .run(),
        );
        let authenticated = applicant.authenticated();
        let (addr, no, resumed) = (applicant.addr, applicant.no, applicant.resumed);
        let entry = ViewerEntry {
            info: ViewerInfo {
                id: id.clone(),
                no,
                name: applicant.name,
                rights: applicant.rights,
                addr,
                since: SystemTime::now(),
                connected: false,
                user_agent: applicant.user_agent,
                authenticated,
                reconnecting: false,
                asks_control: false,
            },
            viewer: Arc::new(viewer),
            rights: rights_tx,
            session,
            bye: bye_tx,
            keys: applicant.keys,
        };
        self.held = false;
        lock_viewers(&state).commit(id.clone(), entry);
        tokio::spawn(lifecycle::watch_viewer(state.clone(), id.clone(), events));
        tokio::spawn(lifecycle::expect_connection(state.clone(), id.clone()));
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
        id
    }
}

impl Drop for Reservation {
    fn drop(&mut self) {
        if self.held {
            lock_viewers(&self.state).release();
        }
    }
}

fn session_id() -> String {
    let bytes: [u8; 12] = rand::random();
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// A viewer asking in whose credentials held: who it will be once admitted.
pub(super) struct Applicant {
    pub no: u64,
    pub rights: Rights,
    /// Its pairing's keys (`None`: a bearer player).
    pub keys: Option<Arc<Keys>>,
    /// Back as itself (see [`resume`]): the host let it in already.
    pub resumed: bool,
    pub name: Option<String>,
    pub addr: SocketAddr,
    pub user_agent: String,
}

impl Applicant {
    /// A paired viewer gets a new number and the share's default rights; a player that
    /// cannot pair a new number and watches only; a resumed one its number and rights.
    pub fn new(state: &AppState, caller: Caller, addr: SocketAddr, headers: &HeaderMap) -> Self {
        let new_number = || state.next_viewer.fetch_add(1, Ordering::Relaxed);
        let (no, rights, keys, resumed) = match caller {
            Caller::Paired(keys) => (new_number(), state.config.default_rights, Some(keys), false),
            Caller::Token => (new_number(), Rights::default(), None, false),
            Caller::Resumed(lost) => (lost.no, lost.rights, Some(lost.keys), true),
        };
        Self {
            no,
            rights,
            keys,
            resumed,
            name: viewer_name(headers),
            addr,
            user_agent: headers
                .get(header::USER_AGENT)
                .and_then(|v| v.to_str().ok())
                .unwrap_or("")
                .chars()
                .take(200)
                .collect(),
        }
    }

    /// See [`PendingViewer::authenticated`].
    pub fn authenticated(&self) -> bool {
        self.keys.is_some()
    }

    /// Asks the host, if it approves viewers and this one is new, and takes the rights it
    /// grants (a player that cannot pair watches only, whatever the answer). `Err` is the
    /// 403 to send: the host declined or did not answer within [`APPROVAL_TIMEOUT`].
    pub async fn approve(&mut self, state: &AppState) -> Result<(), Box<Response>> {
        let Some(approve) = state.config.approve.as_ref().filter(|_| !self.resumed) else {
            return Ok(());
        };
        let answer = approve(PendingViewer {
            no: self.no,
            name: self.name.clone(),
            addr: self.addr,
            user_agent: self.user_agent.clone(),
            rights: self.rights,
            authenticated: self.authenticated(),
        });
        let refusal = match tokio::time::timeout(APPROVAL_TIMEOUT, answer).await {
            Ok(Ok(Some(granted))) => {
                self.rights = if self.authenticated() {
                    granted
                } else {
                    Rights::default()
                };
                tracing::info!(addr = %self.addr, rights = ?self.rights, "the host accepted a viewer");
                return Ok(());
            }
            Ok(_) => "the host declined",
            Err(_) => "the host did not answer in time",
        };
        Err(Box::new(auth::refuse(
            state,
            self.addr,
            StatusCode::FORBIDDEN,
            refusal,
        )))
    }
}

/// A viewer's offer naming its old session (`Porthole-Resume`), signed with that session's
/// keys. A session still listed (the share has not given up on its connection yet) is
/// ended and replaced; one lost within [`resume::RESUME_WINDOW`] is taken from the kept
/// ones. Either serves one resumption.
pub(super) async fn resume(
    state: &AppState,
    credentials: Credentials,
    id: &str,
    request: &Signed<'_>,
) -> Result<Caller, Box<Response>> {
    let addr = credentials.addr();
    let now = Instant::now();
    let live = lock_viewers(state).get(id).and_then(ViewerEntry::resumable);
    let kept = match &live {
        Some(_) => None,
        None => state
            .lost
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .peek(id, now),
    };
    let caller = credentials.authorize(state, request, Signer::Resumed(live.clone().or(kept)))?;
    // Proven: the old session is ended, or taken from the kept ones (the very one the
    // proof was checked against); once.
    let claimed = match (&caller, live) {
        (_, Some(_)) => lifecycle::remove_viewer(state, id, Ending::Quietly).await,
        (Caller::Resumed(back), None) => state
            .lost
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .take(id, now, |keys| std::ptr::eq(keys, Arc::as_ptr(&back.keys)))
            .is_some(),
        _ => false,
    };
    if claimed {
        Ok(caller)
    } else {
        Err(auth::cannot_resume(state, addr))
    }
}
