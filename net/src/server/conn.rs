//! Connections to the share's HTTP server: the accept loop, its limits and timeouts.
//!
//! A client may hold a connection only while it is useful:
//! - the request head must arrive within [`HEADER_READ_TIMEOUT`] of the server waiting for
//!   it — on a new connection and between keep-alive requests alike (hyper's header-read
//!   timer runs whenever it waits for a head), so an idle connection is closed after that;
//! - at most [`MAX_PER_ADDR`] connections per address (IPv6: per /64) and
//!   [`max_connections`] in all. A newcomer over a limit takes the place of the connection
//!   idle the longest (no request being handled) under that limit, so a crowd of idle
//!   connections cannot keep a real viewer out; it is refused only if all are busy.
//! - `accept` failing for want of descriptors or memory (EMFILE, ENFILE, ENOBUFS, ENOMEM)
//!   makes the loop wait, 10 ms doubling up to 1 s, instead of spinning or stopping.
//!
//! [`ConnTable`] is the pure part (who is connected, who is busy, whom to evict); `serve`
//! is the thin async shell.

use std::collections::HashMap;
use std::convert::Infallible;
use std::net::{IpAddr, SocketAddr};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::extract::ConnectInfo;
use axum::Router;
use hyper::body::Incoming;
use hyper_util::rt::{TokioIo, TokioTimer};
use tokio::net::TcpListener;
use tokio::sync::{watch, Notify};
use tower::ServiceExt;

use crate::access::AddrKey;

/// Time allowed for a request head; also how long a connection may sit idle.
pub const HEADER_READ_TIMEOUT: Duration = Duration::from_secs(10);
/// Connections per address (IPv6: per /64).
pub const MAX_PER_ADDR: usize = 32;
/// Connections in all, at most (fewer when the descriptor limit is low).
pub const MAX_CONNECTIONS: usize = 256;

/// Handshaken connections the kernel queues for `accept`. Above the queue's length a
/// handshake's last ACK is dropped: the client believes it is connected while the share
/// has not got the connection, and gets it only when the kernel's SYN-ACK retries find
/// room, so a burst of idle connections would outlive [`HEADER_READ_TIMEOUT`] as the
/// client sees it. 4,096 is Linux's default `somaxconn` (it caps the value); tokio's
/// `bind` asks for 1,024, which a burst of 1,100 overflowed.
pub const LISTEN_BACKLOG: u32 = 4096;

/// Binds `addr` with a [`LISTEN_BACKLOG`] accept queue (`SO_REUSEADDR`, as tokio's `bind`).
pub fn listen(addr: SocketAddr) -> std::io::Result<TcpListener> {
    let socket = if addr.is_ipv4() {
        tokio::net::TcpSocket::new_v4()?
    } else {
        tokio::net::TcpSocket::new_v6()?
    };
    socket.set_reuseaddr(true)?;
    socket.bind(addr)?;
    socket.listen(LISTEN_BACKLOG)
}

/// The overall cap: [`MAX_CONNECTIONS`], or a quarter of the descriptor limit if that is
/// lower (peer connections, capture and audio need descriptors too).
pub fn max_connections() -> usize {
    let mut limit = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit writes into the struct we pass.
    let ok = unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut limit) } == 0;
    if !ok || limit.rlim_cur == libc::RLIM_INFINITY {
        return MAX_CONNECTIONS;
    }
    MAX_CONNECTIONS.min((limit.rlim_cur / 4) as usize).max(8)
}

#[derive(Debug)]
struct Conn<T> {
    key: AddrKey,
    /// Requests being handled now.
    busy: u32,
    /// When it last became idle (or was accepted).
    idle_since: Instant,
    handle: T,
}

/// What to do with a new connection.
#[derive(Debug, PartialEq, Eq)]
pub enum Admission<T> {
    /// Serve it as `id`; first close the connection whose handle is given, if any.
    Accept { id: u64, evict: Option<T> },
    /// Close it at once: every connection under the limit it hit is busy.
    Refuse,
}

/// Who is connected. Pure: the caller passes the time.
#[derive(Debug)]
pub struct ConnTable<T> {
    max: usize,
    per_addr_max: usize,
    conns: HashMap<u64, Conn<T>>,
    per_key: HashMap<AddrKey, usize>,
    next_id: u64,
}

impl<T> ConnTable<T> {
    pub fn new(max: usize, per_addr_max: usize) -> Self {
        Self {
            max,
            per_addr_max,
            conns: HashMap::new(),
            per_key: HashMap::new(),
            next_id: 1,
        }
    }

    /// The connection idle the longest, among those `filter` picks. O(n), and only run
    /// when a limit is reached (n ≤ the overall cap).
    fn oldest_idle(&self, filter: impl Fn(&Conn<T>) -> bool) -> Option<u64> {
        self.conns
            .iter()
            .filter(|(_, c)| c.busy == 0 && filter(c))
            .min_by_key(|(_, c)| c.idle_since)
            .map(|(id, _)| *id)
    }

    /// A connection from `ip` arrived with `handle` (what closes it).
    pub fn admit(&mut self, ip: IpAddr, handle: T, now: Instant) -> Admission<T> {
        let key = AddrKey::of(ip);
        let victim = if self.per_key.get(&key).copied().unwrap_or(0) >= self.per_addr_max {
            match self.oldest_idle(|c| c.key == key) {
                Some(id) => Some(id),
                None => return Admission::Refuse,
            }
        } else if self.conns.len() >= self.max {
            match self.oldest_idle(|_| true) {
                Some(id) => Some(id),
                None => return Admission::Refuse,
            }
        } else {
            None
        };
        let evict = victim.and_then(|id| self.remove(id));
        let id = self.next_id;
        self.next_id += 1;
        self.conns.insert(
            id,
            Conn {
                key,
                busy: 0,
                idle_since: now,
                handle,
            },
        );
        *self.per_key.entry(key).or_insert(0) += 1;
        Admission::Accept { id, evict }
    }

    /// Connection `id` closed (or was evicted). Returns its handle if it was still listed.
    pub fn remove(&mut self, id: u64) -> Option<T> {
        let conn = self.conns.remove(&id)?;
        if let Some(n) = self.per_key.get_mut(&conn.key) {
            *n -= 1;
            if *n == 0 {
                self.per_key.remove(&conn.key);
            }
        }
        Some(conn.handle)
    }

    /// A request on `id` started being handled.
    pub fn request_started(&mut self, id: u64) {
        if let Some(c) = self.conns.get_mut(&id) {
            c.busy += 1;
        }
    }

    /// A request on `id` was answered (or abandoned).
    pub fn request_ended(&mut self, id: u64, now: Instant) {
        if let Some(c) = self.conns.get_mut(&id) {
            c.busy = c.busy.saturating_sub(1);
            if c.busy == 0 {
                c.idle_since = now;
            }
        }
    }

    #[cfg(test)]
    fn len(&self) -> usize {
        self.conns.len()
    }

    #[cfg(test)]
    fn is_empty(&self) -> bool {
        self.conns.is_empty()
    }
}

type Table = Arc<Mutex<ConnTable<Arc<Notify>>>>;

fn lock(table: &Table) -> std::sync::MutexGuard<'_, ConnTable<Arc<Notify>>> {
    table.lock().unwrap_or_else(|e| e.into_inner())
}

/// Whether an accept error means "out of descriptors or memory": wait, then go on.
fn is_resource_exhaustion(e: &std::io::Error) -> bool {
    matches!(
        e.raw_os_error(),
        Some(libc::EMFILE | libc::ENFILE | libc::ENOBUFS | libc::ENOMEM)
    )
}

/// Marks a request busy while it lives.
struct Busy {
    table: Table,
    id: u64,
}

impl Drop for Busy {
    fn drop(&mut self) {
        lock(&self.table).request_ended(self.id, Instant::now());
    }
}

/// Serves `app` on `listener` until `stop` fires; then asks every connection to finish.
pub async fn serve(
    listener: TcpListener,
    app: Router,
    mut stop: tokio::sync::oneshot::Receiver<()>,
) {
    let table: Table = Arc::new(Mutex::new(ConnTable::new(max_connections(), MAX_PER_ADDR)));
    let (closing_tx, closing) = watch::channel(false);
    let mut builder = hyper::server::conn::http1::Builder::new();
    builder
        .timer(TokioTimer::new())
        .header_read_timeout(HEADER_READ_TIMEOUT)
        .max_buf_size(64 * 1024);
    let mut backoff = Duration::from_millis(10);
    let mut last_warning: Option<Instant> = None;
    loop {
        let accepted = tokio::select! {
            _ = &mut stop => break,
            accepted = listener.accept() => accepted,
        };
        let (stream, addr) = match accepted {
            Ok(accepted) => {
                backoff = Duration::from_millis(10);
                accepted
            }
            Err(e) if is_resource_exhaustion(&e) => {
                if last_warning.is_none_or(|t| t.elapsed() >= Duration::from_secs(5)) {
                    tracing::warn!(
                        "cannot accept connections ({e}); waiting {} ms",
                        backoff.as_millis()
                    );
                    last_warning = Some(Instant::now());
                }
                tokio::select! {
                    _ = &mut stop => break,
                    _ = tokio::time::sleep(backoff) => {}
                }
                backoff = (backoff * 2).min(Duration::from_secs(1));
                continue;
            }
            Err(e) => {
                // ECONNABORTED and the like: that one connection is gone.
                tracing::debug!("accept: {e}");
                continue;
            }
        };
        let evict = Arc::new(Notify::new());
        let id = match lock(&table).admit(addr.ip(), evict.clone(), Instant::now()) {
            Admission::Accept { id, evict } => {
                if let Some(victim) = evict {
                    victim.notify_one();
                }
                id
            }
            Admission::Refuse => {
                tracing::debug!(%addr, "connection refused: too many busy connections");
                drop(stream);
                continue;
            }
        };
        let _ = stream.set_nodelay(true);
        let table = table.clone();
        let app = app.clone();
        let builder = builder.clone();
        let mut closing = closing.clone();
        tokio::spawn(async move {
            let service = {
                let table = table.clone();
                hyper::service::service_fn(move |mut req: hyper::Request<Incoming>| {
                    req.extensions_mut().insert(ConnectInfo::<SocketAddr>(addr));
                    lock(&table).request_started(id);
                    let busy = Busy {
                        table: table.clone(),
                        id,
                    };
                    let app = app.clone();
                    async move {
                        let response = app.oneshot(req).await;
                        drop(busy);
                        Ok::<_, Infallible>(match response {
                            Ok(r) => r,
                            Err(never) => match never {},
                        })
                    }
                })
            };
            let conn = builder.serve_connection(TokioIo::new(stream), service);
            tokio::pin!(conn);
            let finished = tokio::select! {
                r = conn.as_mut() => Some(r),
                _ = evict.notified() => None,
                _ = async { let _ = closing.wait_for(|c| *c).await; } => None,
            };
            match finished {
                Some(Err(e)) => tracing::debug!(%addr, "connection ended: {e}"),
                Some(Ok(())) => {}
                None => {
                    // Idle (evicted) or shutting down: finish what is in flight, briefly.
                    conn.as_mut().graceful_shutdown();
                    let _ = tokio::time::timeout(Duration::from_secs(2), conn).await;
                }
            }
            lock(&table).remove(id);
        });
    }
    let _ = closing_tx.send(true);
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    fn accepted<T: std::fmt::Debug>(a: Admission<T>) -> (u64, Option<T>) {
        match a {
            Admission::Accept { id, evict } => (id, evict),
            Admission::Refuse => panic!("refused"),
        }
    }

    #[test]
    fn an_address_over_its_cap_replaces_its_own_oldest_idle_connection() {
        let t0 = Instant::now();
        let mut t = ConnTable::new(100, 2);
        let (a, _) = accepted(t.admit(ip("10.0.0.1"), "a", t0));
        let (b, _) = accepted(t.admit(ip("10.0.0.1"), "b", t0 + Duration::from_secs(1)));
        let (_, evicted) = accepted(t.admit(ip("10.0.0.2"), "other", t0));
        assert_eq!(evicted, None);
        let (_, evicted) = accepted(t.admit(ip("10.0.0.1"), "c", t0 + Duration::from_secs(2)));
        assert_eq!(evicted, Some("a"), "the oldest idle one of that address");
        assert_eq!(t.len(), 3);
        // Busy connections are never evicted: with both busy the newcomer is refused.
        t.request_started(b);
        let c = 4; // "c" got id 4
        t.request_started(c);
        assert_eq!(t.admit(ip("10.0.0.1"), "d", t0), Admission::Refuse);
        t.request_ended(c, t0 + Duration::from_secs(3));
        let (_, evicted) = accepted(t.admit(ip("10.0.0.1"), "d", t0 + Duration::from_secs(4)));
        assert_eq!(evicted, Some("c"));
        assert_eq!(t.remove(a), None, "already gone");
    }

    #[test]
    fn the_overall_cap_evicts_the_longest_idle_anywhere() {
        let t0 = Instant::now();
        let mut t = ConnTable::new(3, 16);
        let ids: Vec<u64> = (0..3)
            .map(|i| {
                let when = t0 + Duration::from_secs(i);
                accepted(t.admit(ip(&format!("127.0.0.{}", i + 1)), i, when)).0
            })
            .collect();
        t.request_started(ids[0]);
        let (_, evicted) = accepted(t.admit(ip("127.0.1.1"), 9, t0 + Duration::from_secs(5)));
        assert_eq!(
            evicted,
            Some(1),
            "the first is busy; the second idled longest"
        );
        assert_eq!(t.len(), 3);
    }

    #[test]
    fn ipv6_addresses_share_their_64s_cap() {
        let t0 = Instant::now();
        let mut t = ConnTable::new(100, 2);
        let t1 = t0 + Duration::from_secs(1);
        accepted(t.admit(ip("2001:db8::1"), 1, t0));
        accepted(t.admit(ip("2001:db8::2"), 2, t1));
        let (_, evicted) = accepted(t.admit(ip("2001:db8::3"), 3, t1));
        assert_eq!(evicted, Some(1));
        let (_, evicted) = accepted(t.admit(ip("2001:db8:0:1::1"), 4, t0));
        assert_eq!(evicted, None);
    }

    #[test]
    fn removing_every_connection_leaves_nothing_behind() {
        let t0 = Instant::now();
        let mut t = ConnTable::new(10, 2);
        let ids: Vec<u64> = (0..10)
            .map(|i| accepted(t.admit(ip(&format!("10.0.0.{i}")), i, t0)).0)
            .collect();
        for id in ids {
            t.remove(id);
        }
        assert!(t.is_empty());
        assert!(t.per_key.is_empty());
    }

    #[test]
    fn descriptor_exhaustion_is_recognised() {
        assert!(is_resource_exhaustion(&std::io::Error::from_raw_os_error(
            libc::EMFILE
        )));
        assert!(!is_resource_exhaustion(&std::io::Error::from_raw_os_error(
            libc::ECONNABORTED
        )));
    }
}
