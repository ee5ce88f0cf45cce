//! The client against hostile shares, over real loopback TCP: a host that answers without
//! end, one that never answers, and one that sends a huge header-declared body. The client
//! must give up with a clear error in bounded time, having read a bounded amount.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use net::client::{ClientError, HttpLimits, ShareClient, ShareUrl, MAX_ANSWER_BYTES};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;

/// What a fake share does once it has read the request headers.
#[derive(Clone, Copy)]
enum Behaviour {
    /// `201`, chunked, then chunks forever.
    EndlessBody,
    /// Reads the request and says nothing.
    Silent,
    /// Headers, then the body one byte a second.
    Trickle,
}

/// A TCP server on 127.0.0.1 that behaves as told for every connection. Returns its
/// address and a count of the body bytes it managed to write.
async fn hostile_share(behaviour: Behaviour) -> (std::net::SocketAddr, Arc<AtomicU64>) {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let written = Arc::new(AtomicU64::new(0));
    let count = written.clone();
    tokio::spawn(async move {
        while let Ok((mut sock, _)) = listener.accept().await {
            let written = count.clone();
            tokio::spawn(async move {
                // Read up to the end of the request headers (the body follows; ignore it).
                let mut seen = Vec::new();
                let mut buf = [0u8; 4096];
                while !seen.windows(4).any(|w| w == b"\r\n\r\n") {
                    match sock.read(&mut buf).await {
                        Ok(0) | Err(_) => return,
                        Ok(n) => seen.extend_from_slice(&buf[..n]),
                    }
                }
                match behaviour {
                    Behaviour::Silent => {
                        // Keep the connection open, answer nothing; drain what comes.
                        while let Ok(n) = sock.read(&mut buf).await {
                            if n == 0 {
                                return;
                            }
                        }
                    }
                    Behaviour::EndlessBody => {
                        let head = "HTTP/1.1 201 Created\r\nLocation: /whep/abc\r\n\
                                    Content-Type: application/sdp\r\n\
                                    Transfer-Encoding: chunked\r\n\r\n";
                        if sock.write_all(head.as_bytes()).await.is_err() {
                            return;
                        }
                        let chunk = format!("10000\r\n{}\r\n", "a".repeat(0x10000));
                        while sock.write_all(chunk.as_bytes()).await.is_ok() {
                            written.fetch_add(0x10000, Ordering::Relaxed);
                        }
                    }
                    Behaviour::Trickle => {
                        let head = "HTTP/1.1 201 Created\r\nLocation: /whep/abc\r\n\
                                    Content-Type: application/sdp\r\n\
                                    Content-Length: 100000\r\n\r\nv=0\r\n";
                        if sock.write_all(head.as_bytes()).await.is_err() {
                            return;
                        }
                        loop {
                            tokio::time::sleep(Duration::from_secs(1)).await;
                            if sock.write_all(b"a").await.is_err() {
                                return;
                            }
                            written.fetch_add(1, Ordering::Relaxed);
                        }
                    }
                }
            });
        }
    });
    (addr, written)
}

fn url(addr: std::net::SocketAddr) -> ShareUrl {
    ShareUrl::parse(&format!("http://{addr}/#code=abcdefgh")).unwrap()
}

/// Connects with `limits`, failing the test if it takes longer than `within`.
async fn connect_expecting_error(
    addr: std::net::SocketAddr,
    limits: HttpLimits,
    within: Duration,
) -> (ClientError, Duration) {
    let started = Instant::now();
    let result = tokio::time::timeout(
        within,
        ShareClient::connect_with_limits(&url(addr), None, limits),
    )
    .await
    .unwrap_or_else(|_| panic!("the client was still waiting after {within:?}"));
    match result {
        Ok(_) => panic!("a hostile share was accepted"),
        Err(e) => (e, started.elapsed()),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_endless_answer_body_is_cut_off_at_the_limit() {
    let (addr, written) = hostile_share(Behaviour::EndlessBody).await;
    // The default limits: what `porthole view`/`record` and the app use.
    let (err, took) =
        connect_expecting_error(addr, HttpLimits::default(), Duration::from_secs(20)).await;
    let text = err.to_string();
    assert!(
        text.contains("sent a bad answer")
            && text.contains(&format!("larger than {MAX_ANSWER_BYTES}")),
        "a clear error: {text}"
    );
    // Give the server a moment to notice the closed connection, then count.
    tokio::time::sleep(Duration::from_millis(300)).await;
    let sent = written.load(Ordering::Relaxed);
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    let peak = status
        .lines()
        .find(|l| l.starts_with("VmHWM"))
        .unwrap_or("");
    eprintln!(
        "gave up after {took:?}; the share wrote {sent} body bytes before the client hung up; {peak}"
    );
    // Read at most the limit plus what the sockets buffer (a few MiB on loopback).
    assert!(
        sent < (MAX_ANSWER_BYTES as u64) + 16 * 1024 * 1024,
        "the client stopped reading: {sent} bytes"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_share_that_never_answers_is_given_up_on() {
    let (addr, _) = hostile_share(Behaviour::Silent).await;
    let limits = HttpLimits {
        response: Duration::from_secs(2),
        ..HttpLimits::default()
    };
    // ICE gathering takes up to 2 s before the request goes out.
    let (err, took) = connect_expecting_error(addr, limits, Duration::from_secs(15)).await;
    let text = err.to_string();
    assert!(
        text.contains("no answer within 2 s"),
        "a clear error: {text}"
    );
    assert!(took < Duration::from_secs(6), "bounded time: {took:?}");
    eprintln!("gave up on a silent share after {took:?}: {text}");
    // The default is bounded too: the host's two minutes to decide, and a little more.
    let d = HttpLimits::default();
    assert!(d.response <= Duration::from_secs(180) && d.body <= Duration::from_secs(30));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_body_that_trickles_in_is_given_up_on() {
    let (addr, _) = hostile_share(Behaviour::Trickle).await;
    let limits = HttpLimits {
        body: Duration::from_secs(2),
        ..HttpLimits::default()
    };
    let (err, took) = connect_expecting_error(addr, limits, Duration::from_secs(15)).await;
    let text = err.to_string();
    assert!(
        text.contains("body did not arrive within 2 s"),
        "a clear error: {text}"
    );
    assert!(took < Duration::from_secs(6), "bounded time: {took:?}");
}
