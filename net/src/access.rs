//! Access codes and the refusal throttle.
//!
//! A share has one access code: random, 10 characters from a 31-letter alphabet without
//! look-alikes (0/o, 1/l/i): log2(31^10) ≈ 49.5 bits. It travels in the URL fragment (never
//! sent to a server by browsers, never in logs) and in `Authorization: Bearer <code>`.
//! Codes are compared in constant time; repeated failures from one address are throttled.

use std::collections::HashMap;
use std::fmt;
use std::net::IpAddr;
use std::time::{Duration, Instant};

use rand::Rng;
use subtle::ConstantTimeEq;

/// Letters a person can read aloud and type without confusion.
pub const ALPHABET: &[u8] = b"23456789abcdefghjkmnpqrstuvwxyz";
pub const GENERATED_LEN: usize = 10;
/// Codes given with `--code` must be at least this long.
pub const MIN_LEN: usize = 6;
pub const MAX_LEN: usize = 128;

#[derive(Clone, PartialEq, Eq)]
pub struct AccessCode(String);

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum CodeError {
    #[error("an access code needs {MIN_LEN} to {MAX_LEN} characters")]
    Length,
    #[error("an access code may only hold letters, digits, '-' and '_'")]
    Charset,
}

impl AccessCode {
    /// A fresh random code.
    pub fn generate() -> Self {
        let mut rng = rand::rng();
        Self(
            (0..GENERATED_LEN)
                .map(|_| ALPHABET[rng.random_range(0..ALPHABET.len())] as char)
                .collect(),
        )
    }

    /// A code chosen by the user (`--code`). URL-fragment and header safe characters only.
    pub fn parse(text: &str) -> Result<Self, CodeError> {
        if !(MIN_LEN..=MAX_LEN).contains(&text.len()) {
            return Err(CodeError::Length);
        }
        if !text
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
        {
            return Err(CodeError::Charset);
        }
        Ok(Self(text.to_owned()))
    }

    /// Constant-time comparison with what a client presented.
    pub fn verify(&self, presented: &str) -> bool {
        let (a, b) = (self.0.as_bytes(), presented.as_bytes());
        // Length is not secret; contents are compared without early exit.
        a.len() == b.len() && bool::from(a.ct_eq(b))
    }

    /// The code itself, for the URL shown to the host. Never log it.
    pub fn reveal(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for AccessCode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("AccessCode(<hidden>)")
    }
}

/// Extracts the token from an `Authorization: Bearer <token>` header value.
pub fn bearer_token(header: &str) -> Option<&str> {
    let (scheme, token) = header.trim().split_once(' ')?;
    scheme
        .eq_ignore_ascii_case("bearer")
        .then_some(token.trim())
        .filter(|t| !t.is_empty())
}

/// Limits failed attempts per client address: after `max_failures` within `window`, the
/// address is refused until the window has passed. Pure: the caller passes the time.
#[derive(Debug)]
pub struct FailureThrottle {
    max_failures: u32,
    window: Duration,
    failures: HashMap<IpAddr, (Instant, u32)>,
}

impl FailureThrottle {
    pub fn new(max_failures: u32, window: Duration) -> Self {
        Self {
            max_failures,
            window,
            failures: HashMap::new(),
        }
    }

    /// Whether `addr` may try now.
    pub fn allowed(&self, addr: IpAddr, now: Instant) -> bool {
        match self.failures.get(&addr) {
            Some((since, count)) => {
                now.duration_since(*since) >= self.window || *count < self.max_failures
            }
            None => true,
        }
    }

    /// Records a failed attempt by `addr`.
    pub fn handle_failure(&mut self, addr: IpAddr, now: Instant) {
        let window = self.window;
        let entry = self.failures.entry(addr).or_insert((now, 0));
        if now.duration_since(entry.0) >= window {
            *entry = (now, 0);
        }
        entry.1 += 1;
        // Keep the table small under a spray of addresses.
        if self.failures.len() > 4096 {
            self.failures
                .retain(|_, (since, _)| now.duration_since(*since) < window);
        }
    }

    /// A success clears the address's record.
    pub fn handle_success(&mut self, addr: IpAddr) {
        self.failures.remove(&addr);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn generated_codes_are_long_random_and_readable() {
        let a = AccessCode::generate();
        let b = AccessCode::generate();
        assert_ne!(a, b);
        assert_eq!(a.reveal().len(), GENERATED_LEN);
        assert!(a.reveal().bytes().all(|c| ALPHABET.contains(&c)));
        let bits = (ALPHABET.len() as f64).log2() * GENERATED_LEN as f64;
        assert!(bits >= 40.0, "{bits} bits");
        for bad in [b'0', b'1', b'o', b'l', b'i'] {
            assert!(!ALPHABET.contains(&bad));
        }
    }

    #[test]
    fn verify_accepts_only_the_exact_code() {
        let code = AccessCode::parse("abcdef123").unwrap();
        assert!(code.verify("abcdef123"));
        assert!(!code.verify("abcdef124"));
        assert!(!code.verify("abcdef12"));
        assert!(!code.verify(""));
        assert!(!code.verify("ABCDEF123"));
    }

    #[test]
    fn parse_rejects_short_and_unsafe_codes() {
        assert_eq!(AccessCode::parse("abc"), Err(CodeError::Length));
        assert_eq!(AccessCode::parse("abc def g"), Err(CodeError::Charset));
        assert_eq!(AccessCode::parse("abc&def=g"), Err(CodeError::Charset));
        assert!(AccessCode::parse("my-secret_42").is_ok());
    }

    #[test]
    fn debug_never_shows_the_code() {
        let code = AccessCode::parse("supersecret").unwrap();
        assert!(!format!("{code:?}").contains("supersecret"));
    }

    #[test]
    fn bearer_parsing() {
        assert_eq!(bearer_token("Bearer abc"), Some("abc"));
        assert_eq!(bearer_token("bearer  abc "), Some("abc"));
        assert_eq!(bearer_token("Basic abc"), None);
        assert_eq!(bearer_token("Bearer "), None);
        assert_eq!(bearer_token("abc"), None);
    }

    #[test]
    fn throttle_refuses_after_too_many_failures_then_forgets() {
        let mut t = FailureThrottle::new(3, Duration::from_secs(60));
        let ip: IpAddr = "127.0.0.1".parse().unwrap();
        let other: IpAddr = "127.0.0.2".parse().unwrap();
        let t0 = Instant::now();
        for _ in 0..3 {
            assert!(t.allowed(ip, t0));
            t.handle_failure(ip, t0);
        }
        assert!(!t.allowed(ip, t0 + Duration::from_secs(1)));
        assert!(t.allowed(other, t0));
        assert!(t.allowed(ip, t0 + Duration::from_secs(61)));
        t.handle_failure(ip, t0 + Duration::from_secs(61));
        assert!(t.allowed(ip, t0 + Duration::from_secs(62)));
        t.handle_success(ip);
        assert!(t.allowed(ip, t0 + Duration::from_secs(62)));
    }
}
