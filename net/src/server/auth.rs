//! Who a request is from, checked against the request itself. A handler that needs it
//! takes [`Credentials`] (the `Authorization` header; extracting it refuses a request
//! without usable credentials) and checks them with [`Credentials::authorize`] once it has
//! what the signature covers; or it takes [`Authorized`], which does both for a request
//! without a body. Every check of a code, a pairing or a session's keys goes through
//! `authorize`, with its refusals and counters:
//!
//! | credentials | checked against | refused |
//! |---|---|---|
//! | none, or a bearer code where not allowed | — | 401, not a guess |
//! | `Porthole-PAKE` | a fresh pairing ([`Signer::NewPairing`]), spent by this request | 401 unknown/used pairing; 403 MAC (`mac_refused`) |
//! | `Porthole-PAKE` | a session's own pairing ([`Signer::Session`]) | 403 |
//! | `Porthole-PAKE` | a session being resumed ([`Signer::Resumed`]) | 401 |
//! | `Bearer` code (`allow_token`) | the code, after the guess throttle | 429, 403 expired, 401 wrong code |

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Instant;

use axum::extract::{ConnectInfo, FromRequestParts};
use axum::http::request::Parts;
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};

use super::{resume, text, AppState};
use crate::access::{bearer_token, GuessThrottle, Refusal};
use crate::pairing::{self, Keys};
use crate::stats::Counter;

/// Who a request is from, as far as its credentials tell.
pub(super) enum Caller {
    /// Paired with the code; its keys sign the answer and its session's `DELETE`.
    Paired(Arc<Keys>),
    /// Showed the code as a bearer token (only with `allow_token`).
    Token,
    /// A paired viewer back after its connection was lost (see [`resume`]).
    Resumed(resume::Lost),
}

/// What a request's signature covers.
pub(super) struct Signed<'a> {
    pub method: &'a str,
    pub path: &'a str,
    pub body: &'a [u8],
}

/// Whose keys must have signed a request.
pub(super) enum Signer {
    /// A fresh pairing (named in the header), spent by this request, or the code as a
    /// bearer token where allowed: a request that starts something (an offer, a stats
    /// query).
    NewPairing,
    /// The pairing of an existing session, or the code for a bearer viewer's (`None`): a
    /// request on that session (its `DELETE`).
    Session(Option<Arc<Keys>>),
    /// The pairing of the session a viewer resumes (`None`: there is none to resume).
    Resumed(Option<resume::Lost>),
}

/// A request's credentials (its `Authorization` header), read before its body. Extracting
/// them refuses a request without usable credentials (401); it is not counted as a guess:
/// it is none (and a web page can send such requests in the user's name).
pub(super) struct Credentials {
    addr: SocketAddr,
    kind: Kind,
}

enum Kind {
    Pake(pairing::PakeAuth),
    Bearer(String),
}

impl FromRequestParts<Arc<AppState>> for Credentials {
    type Rejection = Response;

    async fn from_request_parts(
        parts: &mut Parts,
        state: &Arc<AppState>,
    ) -> Result<Self, Response> {
        let ConnectInfo(addr) = ConnectInfo::<SocketAddr>::from_request_parts(parts, state)
            .await
            .map_err(IntoResponse::into_response)?;
        Credentials::read(state, addr, &parts.headers).map_err(|refusal| *refusal)
    }
}

/// A request without a body that starts something (`GET /api/stats`), authorized: a fresh
/// pairing signed its method and path, or the code came as a bearer token where allowed.
pub(super) struct Authorized;

impl FromRequestParts<Arc<AppState>> for Authorized {
    type Rejection = Response;

    async fn from_request_parts(
        parts: &mut Parts,
        state: &Arc<AppState>,
    ) -> Result<Self, Response> {
        let credentials = Credentials::from_request_parts(parts, state).await?;
        let request = Signed {
            method: parts.method.as_str(),
            path: parts.uri.path(),
            body: b"",
        };
        credentials
            .authorize(state, &request, Signer::NewPairing)
            .map(|_| Authorized)
            .map_err(|refusal| *refusal)
    }
}

impl Credentials {
    fn read(
        state: &AppState,
        addr: SocketAddr,
        headers: &HeaderMap,
    ) -> Result<Self, Box<Response>> {
        let value = headers
            .get(header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok());
        if let Some(auth) = value.and_then(pairing::parse_authorization) {
            return Ok(Self {
                addr,
                kind: Kind::Pake(auth),
            });
        }
        match value.and_then(bearer_token) {
            Some(token) if state.config.allow_token => Ok(Self {
                addr,
                kind: Kind::Bearer(token.to_owned()),
            }),
            Some(_) => Err(unauthorized(
                state,
                addr,
                "this share takes no access code in a header: viewers pair with it (POST \
                 /pake; Porthole's page and app do). The host may admit WHEP players with \
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

    /// The address the request came from.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// Checks the credentials against `request` and the keys `signer` names. `Err` is the
    /// refusal to send (counted and logged).
    pub fn authorize(
        self,
        state: &AppState,
        request: &Signed<'_>,
        signer: Signer,
    ) -> Result<Caller, Box<Response>> {
        let addr = self.addr;
        let signs = |auth: &pairing::PakeAuth, keys: &Keys| {
            keys.verify_request(request.method, request.path, request.body, &auth.mac)
        };
        match (self.kind, signer) {
            (Kind::Bearer(token), Signer::NewPairing | Signer::Session(None)) => {
                check_token(state, addr, &token).map(|()| Caller::Token)
            }
            (Kind::Pake(auth), Signer::NewPairing) => {
                let keys = pairing_keys(state, addr, &auth)?;
                if !signs(&auth, &keys) {
                    state.counters.add(Counter::Unauthorized);
                    state.counters.add(Counter::MacRefused);
                    return Err(Box::new(refuse(
                        state,
                        addr,
                        StatusCode::FORBIDDEN,
                        pairing::NOT_THE_SHARE,
                    )));
                }
                // The request proves the code: this address's provisional guess is
                // forgiven.
                lock_throttle(state).handle_right(addr.ip(), Instant::now());
                state.counters.add(Counter::PairingsConfirmed);
                Ok(Caller::Paired(keys))
            }
            (Kind::Pake(auth), Signer::Session(Some(keys))) if signs(&auth, &keys) => {
                Ok(Caller::Paired(keys))
            }
            (_, Signer::Session(_)) => {
                state.counters.add(Counter::Unauthorized);
                Err(Box::new(refuse(
                    state,
                    addr,
                    StatusCode::FORBIDDEN,
                    "this request is not signed by the session's own pairing",
                )))
            }
            (Kind::Bearer(_), Signer::Resumed(_)) => Err(unauthorized(
                state,
                addr,
                "only a paired viewer can resume its session",
            )),
            (Kind::Pake(auth), Signer::Resumed(Some(lost))) if signs(&auth, &lost.keys) => {
                Ok(Caller::Resumed(lost))
            }
            (Kind::Pake(_), Signer::Resumed(_)) => Err(cannot_resume(state, addr)),
        }
    }
}

/// The keys of the fresh pairing `auth` names, taken (a pairing serves one request).
fn pairing_keys(
    state: &AppState,
    addr: SocketAddr,
    auth: &pairing::PakeAuth,
) -> Result<Arc<Keys>, Box<Response>> {
    let keys = state
        .pairings
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .take(&auth.id, Instant::now());
    keys.ok_or_else(|| {
        unauthorized(
            state,
            addr,
            "this pairing is unknown, used or expired: pair again",
        )
    })
}

/// The refusal of a session that cannot be resumed.
pub(super) fn cannot_resume(state: &AppState, addr: SocketAddr) -> Box<Response> {
    unauthorized(
        state,
        addr,
        "this session cannot be resumed (unknown, ended, or lost over a minute ago): pair \
         again",
    )
}

/// Refuses with a count and a log line (never the code).
pub(super) fn refuse(
    state: &AppState,
    addr: SocketAddr,
    status: StatusCode,
    message: &str,
) -> Response {
    state.counters.add(Counter::WhepRefused);
    tracing::warn!(%addr, status = status.as_u16(), "refused a viewer: {message}");
    let mut response = text(status, message.to_owned());
    if status == StatusCode::UNAUTHORIZED {
        // How to get in: pair (POST /pake) and sign; bearer codes only where allowed.
        response.headers_mut().insert(
            header::WWW_AUTHENTICATE,
            HeaderValue::from_static("Porthole-PAKE realm=\"porthole\""),
        );
        if state.config.allow_token {
            response.headers_mut().append(
                header::WWW_AUTHENTICATE,
                HeaderValue::from_static("Bearer realm=\"porthole\""),
            );
        }
    }
    response
}

fn unauthorized(state: &AppState, addr: SocketAddr, message: &str) -> Box<Response> {
    state.counters.add(Counter::Unauthorized);
    Box::new(refuse(state, addr, StatusCode::UNAUTHORIZED, message))
}

fn lock_throttle(state: &AppState) -> std::sync::MutexGuard<'_, GuessThrottle> {
    state.throttle.lock().unwrap_or_else(|e| e.into_inner())
}

/// Asks the throttle whether `addr` may make a guess now, and whether the code still
/// admits anybody. `Err` is the 429 (or, for an expired code, the 403) to send.
pub(super) fn may_guess(
    state: &AppState,
    addr: SocketAddr,
    throttle: &mut GuessThrottle,
    now: Instant,
) -> Result<(), Box<Response>> {
    if let Err(why) = throttle.check(addr.ip(), now) {
        let message = match why {
            Refusal::Address => "too many wrong codes from this address; wait a minute",
            Refusal::Share => "too many wrong codes on this share lately; wait a minute",
        };
        let mut response = refuse(state, addr, StatusCode::TOO_MANY_REQUESTS, message);
        response
            .headers_mut()
            .insert(header::RETRY_AFTER, HeaderValue::from_static("60"));
        return Err(Box::new(response));
    }
    let expired = state
        .code_life
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .expired(now);
    if expired {
        return Err(Box::new(refuse(
            state,
            addr,
            StatusCode::FORBIDDEN,
            "this access code has expired: ask the host for a new one",
        )));
    }
    Ok(())
}

/// Checks a bearer code: the throttle is asked first, then the code is compared in constant
/// time (see [`GuessThrottle`] for why in this order).
fn check_token(state: &AppState, addr: SocketAddr, token: &str) -> Result<(), Box<Response>> {
    let now = Instant::now();
    let mut throttle = lock_throttle(state);
    may_guess(state, addr, &mut throttle, now)?;
    if state.config.code.verify(token) {
        throttle.handle_right(addr.ip(), now);
        Ok(())
    } else {
        throttle.handle_wrong(addr.ip(), now);
        drop(throttle);
        Err(unauthorized(state, addr, "wrong access code"))
    }
}
