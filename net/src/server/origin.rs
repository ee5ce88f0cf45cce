//! Which `Host` and `Origin` a share answers to: a guard against DNS rebinding and
//! cross-site requests from web pages in the host's (or a viewer's) browser.
//!
//! DNS rebinding needs a *name*: a page on `evil.example` has its name re-pointed at the
//! share's address, and the browser then treats the share as `evil.example`'s own server.
//! The `Host` header gives it away. So a request is served only if its `Host` is
//! - an IP address literal — any: a browser sends one only for a URL with that address in
//!   it, whose origin is that address, so no other site's page can read the answer; and a
//!   share reached through a proxy, a port forward or NAT is reached by an address it
//!   cannot know (the TURN test reaches the share through a TCP proxy);
//! - `localhost`, or this machine's host name, bare or as the mDNS `NAME.local` that the
//!   share's announcement points at;
//! - or absent (HTTP/1.0 tools; browsers always send it).
//!
//! Refused: 421 Misdirected Request.
//!
//! A state-changing request (POST, DELETE, PATCH) carrying an `Origin` must come from the
//! share's own origin: scheme `http` or `https`, and the same host and port as its `Host`.
//! Browsers always send `Origin` on those methods; tools (`porthole view`, curl) send none
//! and are not affected. Refused: 403.

use std::net::IpAddr;

/// The names (besides IP literals) a share answers to.
#[derive(Clone, Debug)]
pub struct HostPolicy {
    names: Vec<String>,
}

impl HostPolicy {
    /// `localhost`, and `hostname` bare and as `hostname.local`.
    pub fn new(hostname: Option<&str>) -> Self {
        let mut names = vec!["localhost".to_owned()];
        if let Some(h) = hostname.map(|h| h.trim().trim_end_matches('.').to_ascii_lowercase()) {
            if !h.is_empty() {
                let bare = h.strip_suffix(".local").unwrap_or(&h).to_owned();
                names.push(format!("{bare}.local"));
                names.push(bare);
            }
        }
        Self { names }
    }

    /// This machine's: its host name from the kernel.
    pub fn for_this_machine() -> Self {
        let hostname = std::fs::read_to_string("/proc/sys/kernel/hostname").ok();
        Self::new(hostname.as_deref())
    }

    /// Whether a request with this `Host` header value is served.
    pub fn allows_host(&self, host: &str) -> bool {
        match split_host_port(host) {
            Some((name, _)) => self.allows_name(&name),
            None => false,
        }
    }

    fn allows_name(&self, name: &str) -> bool {
        let name = name.trim_end_matches('.').to_ascii_lowercase();
        name.parse::<IpAddr>().is_ok() || self.names.contains(&name)
    }

    /// Whether a state-changing request with this `Origin` (and this `Host`) is served.
    pub fn allows_origin(&self, origin: &str, host: Option<&str>) -> bool {
        let Some((scheme, rest)) = origin.split_once("://") else {
            return false; // "null" (sandboxed frames, file: pages) and garbage
        };
        let default_port = match scheme.to_ascii_lowercase().as_str() {
            "http" => 80,
            "https" => 443,
            _ => return false,
        };
        if rest.contains('/') {
            return false;
        }
        let Some((origin_host, origin_port)) = split_host_port(rest) else {
            return false;
        };
        let origin_port = origin_port.unwrap_or(default_port);
        if !self.allows_name(&origin_host) {
            return false;
        }
        match host.and_then(split_host_port) {
            Some((host, port)) => {
                host.eq_ignore_ascii_case(&origin_host)
                    && port.unwrap_or(default_port) == origin_port
            }
            // No Host to compare with: the origin must at least be one of ours.
            None => true,
        }
    }
}

/// `name:port`, `[v6]:port`, `name`, `[v6]` → (name without brackets, port).
fn split_host_port(value: &str) -> Option<(String, Option<u16>)> {
    let value = value.trim();
    if value.is_empty() {
        return None;
    }
    if let Some(rest) = value.strip_prefix('[') {
        let (addr, after) = rest.split_once(']')?;
        let port = match after {
            "" => None,
            p => Some(p.strip_prefix(':')?.parse().ok()?),
        };
        return Some((addr.to_owned(), port));
    }
    match value.rsplit_once(':') {
        // A bare IPv6 address is not a valid Host; refuse rather than guess.
        Some((name, _)) if name.contains(':') => None,
        Some((name, port)) => Some((name.to_owned(), Some(port.parse().ok()?))),
        None => Some((value.to_owned(), None)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hosts_that_are_addresses_or_our_names_pass_and_others_do_not() {
        let p = HostPolicy::new(Some("Desk\n"));
        for ok in [
            "127.0.0.1:7380",
            "192.168.1.5",
            "[::1]:7380",
            "[fe80::1]",
            "localhost:7380",
            "LOCALHOST",
            "desk:7380",
            "desk.local:7380",
            "Desk.Local.:7380",
        ] {
            assert!(p.allows_host(ok), "{ok}");
        }
        for bad in [
            "evil.example",
            "evil.example:7380",
            "desk.evil.example",
            "127.0.0.1.nip.io:7380",
            "localhost.evil.example",
            "",
            "::1",
            "a:b:c",
            "[::1",
            "desk:port",
        ] {
            assert!(!p.allows_host(bad), "{bad}");
        }
    }

    #[test]
    fn origins_must_be_the_shares_own() {
        let p = HostPolicy::new(Some("desk"));
        let host = Some("192.168.1.5:7380");
        assert!(p.allows_origin("http://192.168.1.5:7380", host));
        assert!(p.allows_origin("HTTP://192.168.1.5:7380", host));
        assert!(
            !p.allows_origin("http://192.168.1.5:8080", host),
            "another port"
        );
        assert!(!p.allows_origin("http://evil.example", host));
        assert!(!p.allows_origin("null", host));
        assert!(!p.allows_origin("ftp://192.168.1.5:7380", host));
        assert!(!p.allows_origin("http://192.168.1.5:7380/x", host));
        assert!(p.allows_origin("http://desk.local", Some("desk.local:80")));
        assert!(p.allows_origin("https://desk.local", Some("desk.local:443")));
        assert!(p.allows_origin("http://[::1]:7380", Some("[::1]:7380")));
        assert!(!p.allows_origin("http://evil.example:7380", Some("evil.example:7380")));
        assert!(p.allows_origin("http://localhost:7380", None));
        assert!(!p.allows_origin("http://evil.example", None));
    }

    #[test]
    fn no_hostname_still_allows_localhost_and_addresses() {
        let p = HostPolicy::new(None);
        assert!(p.allows_host("localhost"));
        assert!(p.allows_host("10.0.0.1:1"));
        assert!(!p.allows_host("box.local"));
    }
}
