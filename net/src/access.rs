//! Access codes, their lifetime and the refusal throttle.
//!
//! A share has one access code: by default 8 random digits, short enough to read aloud.
//! The code is never sent: viewers pair with it (SPAKE2, see the `pake` crate and
//! [`crate::pairing`]), so the only attack on it is guessing online, one guess per pairing,
//! and guesses are throttled per address (IPv6: per /64) and share-wide (see
//! [`GuessThrottle`]): at most 30 a minute on the whole share, so an 8-digit code holds
//! for years. It travels to viewers in the URL fragment (never sent to a server by
//! browsers, never in logs). Third-party WHEP players, which cannot pair, may present it as
//! `Authorization: Bearer <code>` only where the host allows it (`--allow-whep-token`);
//! such codes are compared in constant time.

use std::collections::{HashMap, VecDeque};
use std::fmt;
use std::net::IpAddr;
use std::time::{Duration, Instant};

use rand::Rng;
use subtle::ConstantTimeEq;

use crate::control::TokenBucket;

/// What generated codes are made of: digits, to read aloud or type on any keyboard.
pub const ALPHABET: &[u8] = b"0123456789";
pub const GENERATED_LEN: usize = 8;
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
    /// A fresh random code: 8 digits (26.6 bits; guessed online only, see the module docs).
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

/// When a share's code stops admitting new viewers (`--code-ttl`). Viewers already in
/// stay; a viewer that has to pair again (a reconnect) needs a new code.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum CodeExpiry {
    /// This long after the share starts.
    After(Duration),
    /// Once one viewer has been admitted with it.
    FirstUse,
}

/// A code lifetime that is neither `first-use` nor a duration (the text given, trimmed).
#[derive(Clone, Debug, thiserror::Error, PartialEq, Eq)]
#[error("\"{0}\" is not a code lifetime: give first-use, or a duration such as 90s, 10m or 2h")]
pub struct BadCodeExpiry(pub String);

impl std::str::FromStr for CodeExpiry {
    type Err = BadCodeExpiry;

    /// `first-use`, or a duration: `90s`, `10m`, `2h`, or a bare number of minutes.
    fn from_str(text: &str) -> Result<Self, Self::Err> {
        let text = text.trim();
        if text.eq_ignore_ascii_case("first-use") {
            return Ok(Self::FirstUse);
        }
        let (number, unit) = match text.find(|c: char| !c.is_ascii_digit()) {
            Some(i) => text.split_at(i),
            None => (text, "m"),
        };
        let seconds = match unit {
            "s" => 1,
            "m" => 60,
            "h" => 3600,
            _ => 0,
        };
        match number.parse::<u64>() {
            Ok(n) if n > 0 && seconds > 0 => Ok(Self::After(Duration::from_secs(n * seconds))),
            _ => Err(BadCodeExpiry(text.to_owned())),
        }
    }
}

/// Whether the code still admits new viewers (a pure state machine: the caller passes the
/// time).
#[derive(Clone, Debug)]
pub struct CodeLife {
    expires_at: Option<Instant>,
    first_use: bool,
    used: bool,
}

impl CodeLife {
    pub fn new(expiry: Option<CodeExpiry>, now: Instant) -> Self {
        Self {
            expires_at: match expiry {
                Some(CodeExpiry::After(d)) => Some(now + d),
                _ => None,
            },
            first_use: expiry == Some(CodeExpiry::FirstUse),
            used: false,
        }
    }

    pub fn expired(&self, now: Instant) -> bool {
        (self.first_use && self.used) || self.expires_at.is_some_and(|t| now >= t)
    }

    /// A viewer was admitted with the code.
    pub fn used(&mut self) {
        self.used = true;
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

/// Who a guess is counted against: an IPv4 address, or an IPv6 /64 (one LAN host can hold
/// a whole /64, so counting single IPv6 addresses would count nothing). IPv4-mapped IPv6
/// addresses count as their IPv4 address.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum AddrKey {
    V4([u8; 4]),
    V6Prefix64([u8; 8]),
}

impl AddrKey {
    pub fn of(ip: IpAddr) -> Self {
        match ip.to_canonical() {
            IpAddr::V4(v4) => Self::V4(v4.octets()),
            IpAddr::V6(v6) => {
                let mut prefix = [0u8; 8];
                prefix.copy_from_slice(&v6.octets()[..8]);
                Self::V6Prefix64(prefix)
            }
        }
    }
}

/// Why a guess is refused before its code is even looked at.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Refusal {
    /// This address (IPv6: its /64) made too many wrong guesses lately.
    Address,
    /// The whole share has had too many wrong guesses lately (from anywhere).
    Share,
}

/// Limits guesses at the access code. A pure state machine: the caller passes the time.
///
/// What it counts: only *guesses*, requests that present a code that turns out wrong.
/// Requests without any code are refused with 401 but never counted, so a web page that
/// fires code-less cross-site requests at the share cannot lock its owner out.
///
/// Order of checks (the caller's): `check` first, *then* the code, and `handle_wrong`/
/// `handle_right` after. The code is deliberately not checked first: a throttle that let a
/// right code through while refusing wrong ones would answer 201-or-429, an oracle as
/// fast as the attacker can send, and would limit nothing. The price is that a refused
/// address is refused even with the right code — but only for its own wrong guesses (its
/// /64's), and only for a minute. The share-wide budget (a token bucket), which anyone
/// could drain, never refuses an address that presented the right code within
/// `TRUSTED_FOR`: viewers already in keep working (DELETE, stats, a reconnect).
///
/// Cost: O(1) per request (amortised): per-address records live in a hash map, expired in
/// arrival order from a queue, and the map is bounded to `MAX_TRACKED` entries (the oldest
/// record goes first; the share-wide budget still holds for whoever is forgotten).
#[derive(Debug)]
pub struct GuessThrottle {
    per_addr_max: u32,
    window: Duration,
    /// key -> (start of its window, wrong guesses in it)
    addrs: HashMap<AddrKey, (Instant, u32)>,
    /// (key, window start) in the order windows started: the expiry queue.
    order: VecDeque<(AddrKey, Instant)>,
    /// Share-wide budget: one token a wrong guess.
    budget: TokenBucket,
    /// Addresses that presented the right code lately -> when.
    trusted: HashMap<AddrKey, Instant>,
    trusted_order: VecDeque<(AddrKey, Instant)>,
}

/// Most per-address records kept; beyond it the oldest are forgotten.
pub const MAX_TRACKED: usize = 8192;
/// Most "presented the right code" records kept.
pub const MAX_TRUSTED: usize = 1024;
/// How long the right code exempts an address from the share-wide budget.
pub const TRUSTED_FOR: Duration = Duration::from_secs(600);

impl GuessThrottle {
    /// `per_addr_max` wrong guesses per address (IPv6: per /64) within `window`; share-wide
    /// at most `budget` wrong guesses at once, refilled by `refill_per_sec`.
    pub fn new(per_addr_max: u32, window: Duration, budget: u32, refill_per_sec: f64) -> Self {
        Self {
            per_addr_max,
            window,
            addrs: HashMap::new(),
            order: VecDeque::new(),
            budget: TokenBucket::new(refill_per_sec, f64::from(budget)),
            trusted: HashMap::new(),
            trusted_order: VecDeque::new(),
        }
    }

    fn expire(&mut self, now: Instant) {
        while let Some(&(key, start)) = self.order.front() {
            if now.saturating_duration_since(start) < self.window && self.order.len() <= MAX_TRACKED
            {
                break;
            }
            self.order.pop_front();
            // The map may hold a newer window for this key; remove only the one queued.
            if self.addrs.get(&key).is_some_and(|(s, _)| *s == start) {
                self.addrs.remove(&key);
            }
        }
        while let Some(&(key, at)) = self.trusted_order.front() {
            if now.saturating_duration_since(at) < TRUSTED_FOR
                && self.trusted_order.len() <= MAX_TRUSTED
            {
                break;
            }
            self.trusted_order.pop_front();
            if self.trusted.get(&key) == Some(&at) {
                self.trusted.remove(&key);
            }
        }
    }

    /// Whether a guess from `ip` may be looked at now. Call before checking the code.
    pub fn check(&mut self, ip: IpAddr, now: Instant) -> Result<(), Refusal> {
        self.expire(now);
        let key = AddrKey::of(ip);
        if let Some((start, count)) = self.addrs.get(&key) {
            if now.saturating_duration_since(*start) < self.window && *count >= self.per_addr_max {
                return Err(Refusal::Address);
            }
        }
        if !self.budget.has(now, 1.0) && !self.trusted.contains_key(&key) {
            return Err(Refusal::Share);
        }
        Ok(())
    }

    /// Records a wrong code presented by `ip`.
    pub fn handle_wrong(&mut self, ip: IpAddr, now: Instant) {
        self.expire(now);
        let key = AddrKey::of(ip);
        match self.addrs.get_mut(&key) {
            Some((start, count)) if now.saturating_duration_since(*start) < self.window => {
                *count += 1;
            }
            _ => {
                self.addrs.insert(key, (now, 1));
                self.order.push_back((key, now));
            }
        }
        self.budget.drain(now, 1.0);
        self.expire(now);
    }

    /// Records the right code presented by `ip`: its wrong guesses are forgotten and the
    /// share-wide budget no longer applies to it for a while.
    pub fn handle_right(&mut self, ip: IpAddr, now: Instant) {
        let key = AddrKey::of(ip);
        self.addrs.remove(&key);
        self.trusted.insert(key, now);
        self.trusted_order.push_back((key, now));
        self.expire(now);
    }

    /// Records held (for tests and stats).
    pub fn tracked(&self) -> usize {
        self.addrs.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn generated_codes_are_random_digits() {
        let codes: Vec<AccessCode> = (0..4).map(|_| AccessCode::generate()).collect();
        assert!(codes.windows(2).any(|w| w[0] != w[1]));
        for code in &codes {
            assert_eq!(code.reveal().len(), GENERATED_LEN);
            assert!(code.reveal().bytes().all(|c| c.is_ascii_digit()));
            assert!(AccessCode::parse(code.reveal()).is_ok());
        }
    }

    #[test]
    fn code_lifetimes_parse_and_expire() {
        let parse = |t: &str| t.parse::<CodeExpiry>();
        assert_eq!(parse("first-use"), Ok(CodeExpiry::FirstUse));
        assert_eq!(parse("90s"), Ok(CodeExpiry::After(Duration::from_secs(90))));
        assert_eq!(parse("10"), Ok(CodeExpiry::After(Duration::from_secs(600))));
        assert_eq!(
            parse("2h"),
            Ok(CodeExpiry::After(Duration::from_secs(7200)))
        );
        for bad in ["", "0", "10d", "m", "-5m", "once", " 0s "] {
            assert_eq!(
                parse(bad),
                Err(BadCodeExpiry(bad.trim().to_owned())),
                "{bad}"
            );
        }
        assert_eq!(
            BadCodeExpiry("10d".into()).to_string(),
            "\"10d\" is not a code lifetime: give first-use, or a duration such as 90s, 10m or 2h"
        );
        let t0 = Instant::now();
        let mut timed = CodeLife::new(Some(CodeExpiry::After(Duration::from_secs(60))), t0);
        timed.used();
        assert!(!timed.expired(t0 + Duration::from_secs(59)));
        assert!(timed.expired(t0 + Duration::from_secs(60)));
        let mut once = CodeLife::new(Some(CodeExpiry::FirstUse), t0);
        assert!(!once.expired(t0 + Duration::from_secs(3600)));
        once.used();
        assert!(once.expired(t0));
        let mut forever = CodeLife::new(None, t0);
        forever.used();
        assert!(!forever.expired(t0 + Duration::from_secs(1 << 30)));
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

    fn throttle() -> GuessThrottle {
        GuessThrottle::new(3, Duration::from_secs(60), 10, 1.0)
    }

    #[test]
    fn throttle_refuses_an_address_after_too_many_wrong_guesses_then_forgets() {
        let t0 = Instant::now();
        let mut t = throttle();
        let ip: IpAddr = "127.0.0.1".parse().unwrap();
        let other: IpAddr = "127.0.0.2".parse().unwrap();
        for _ in 0..3 {
            assert_eq!(t.check(ip, t0), Ok(()));
            t.handle_wrong(ip, t0);
        }
        assert_eq!(
            t.check(ip, t0 + Duration::from_secs(1)),
            Err(Refusal::Address)
        );
        assert_eq!(t.check(other, t0), Ok(()));
        assert_eq!(t.check(ip, t0 + Duration::from_secs(61)), Ok(()));
        t.handle_wrong(ip, t0 + Duration::from_secs(61));
        assert_eq!(t.check(ip, t0 + Duration::from_secs(62)), Ok(()));
        t.handle_right(ip, t0 + Duration::from_secs(62));
        assert_eq!(t.tracked(), 0);
    }

    #[test]
    fn ipv6_guesses_count_per_64_and_mapped_ipv4_as_ipv4() {
        let t0 = Instant::now();
        let mut t = throttle();
        for i in 0..3u16 {
            let ip: IpAddr = format!("2001:db8:1:2::{i:x}").parse().unwrap();
            t.handle_wrong(ip, t0);
        }
        let same64: IpAddr = "2001:db8:1:2:ffff::9".parse().unwrap();
        let other64: IpAddr = "2001:db8:1:3::1".parse().unwrap();
        assert_eq!(t.check(same64, t0), Err(Refusal::Address));
        assert_eq!(t.check(other64, t0), Ok(()));
        for _ in 0..3 {
            t.handle_wrong("10.0.0.7".parse().unwrap(), t0);
        }
        assert_eq!(
            t.check("::ffff:10.0.0.7".parse().unwrap(), t0),
            Err(Refusal::Address)
        );
    }

    #[test]
    fn the_share_wide_budget_holds_across_many_addresses_and_refills() {
        let t0 = Instant::now();
        let mut t = throttle();
        let ip = |i: u32| IpAddr::from(std::net::Ipv4Addr::from(0x7f00_0000 + i));
        let mut refused = 0;
        for i in 0..1000 {
            match t.check(ip(i), t0) {
                Ok(()) => t.handle_wrong(ip(i), t0),
                Err(r) => {
                    assert_eq!(r, Refusal::Share);
                    refused += 1;
                }
            }
        }
        assert_eq!(refused, 990, "a budget of 10 guesses");
        // One token a second comes back.
        assert_eq!(
            t.check(ip(5000), t0 + Duration::from_millis(500)),
            Err(Refusal::Share)
        );
        assert_eq!(t.check(ip(5000), t0 + Duration::from_secs(1)), Ok(()));
        assert_eq!(t.check(ip(5000), t0 + Duration::from_secs(100)), Ok(()));
    }

    #[test]
    fn the_right_code_exempts_its_address_from_the_share_budget_only() {
        let t0 = Instant::now();
        let mut t = throttle();
        let owner: IpAddr = "192.168.1.20".parse().unwrap();
        t.handle_right(owner, t0);
        for i in 0..10u8 {
            t.handle_wrong(IpAddr::from([10, 0, 0, i]), t0);
        }
        assert_eq!(
            t.check("10.0.1.1".parse().unwrap(), t0),
            Err(Refusal::Share)
        );
        assert_eq!(t.check(owner, t0), Ok(()), "the owner is not locked out");
        // ... but its own wrong guesses still count.
        for _ in 0..3 {
            t.handle_wrong(owner, t0);
        }
        assert_eq!(t.check(owner, t0), Err(Refusal::Address));
        // The exemption lapses.
        let later = t0 + TRUSTED_FOR + Duration::from_secs(1);
        t.budget.drain(later, 10.0); // the whole budget
        assert_eq!(t.check(owner, later), Err(Refusal::Share));
    }

    #[test]
    fn records_are_bounded_and_expire_in_constant_time_per_request() {
        let t0 = Instant::now();
        let mut t = GuessThrottle::new(3, Duration::from_secs(60), u32::MAX, 0.0);
        for i in 0..(MAX_TRACKED as u32 * 4) {
            let ip = IpAddr::from(std::net::Ipv4Addr::from(0x0a00_0000 + i));
            t.handle_wrong(ip, t0);
            assert!(t.tracked() <= MAX_TRACKED);
            assert!(t.order.len() <= MAX_TRACKED + 1);
        }
        t.check("10.255.0.1".parse().unwrap(), t0 + Duration::from_secs(61))
            .unwrap();
        assert_eq!(t.tracked(), 0, "all windows over");
        assert!(t.order.is_empty());
    }

    #[test]
    fn a_new_window_for_a_key_survives_the_expiry_of_its_old_one() {
        let t0 = Instant::now();
        let mut t = throttle();
        let ip: IpAddr = "10.1.1.1".parse().unwrap();
        t.handle_wrong(ip, t0);
        let t1 = t0 + Duration::from_secs(61);
        for _ in 0..3 {
            t.handle_wrong(ip, t1);
        }
        assert_eq!(
            t.check(ip, t1 + Duration::from_secs(1)),
            Err(Refusal::Address)
        );
    }
}
