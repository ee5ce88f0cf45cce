//! Where to connect: the link a share prints, and the local addresses to offer for it.

use super::*;

/// Where to connect: `http://host:port/#code=CODE` as the share prints it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ShareUrl {
    pub host: String,
    pub port: u16,
    pub code: Option<String>,
}

/// Where the client gathers host candidates for a share at `host`: loopback for this
/// machine; otherwise the interfaces of the family the share was reached by (`[::]` for
/// an IPv6 address, `0.0.0.0` else), never loopback (a remote share cannot reach it).
pub(super) fn bind_addrs(host: &str) -> Vec<String> {
    match host.parse::<std::net::IpAddr>() {
        Ok(ip) if ip.is_loopback() => vec![std::net::SocketAddr::new(ip, 0).to_string()],
        Ok(std::net::IpAddr::V6(_)) => vec!["[::]:0".to_owned()],
        _ if host == "localhost" => vec!["127.0.0.1:0".to_owned()],
        _ => vec!["0.0.0.0:0".to_owned()],
    }
}

impl ShareUrl {
    /// Parses a viewer URL (`http://host:port/...#code=CODE`) or a bare `host:port`.
    pub fn parse(text: &str) -> Result<Self, ClientError> {
        let bad = || ClientError::BadUrl(text.to_owned());
        let text = text.trim();
        if text.is_empty() {
            return Err(ClientError::BadUrl(
                "nothing was given: type the link the host shows, \
                 e.g. http://192.168.1.20:7380/#code=…"
                    .to_owned(),
            ));
        }
        let rest = text.strip_prefix("http://").unwrap_or(text);
        if rest.starts_with("https://") || text.starts_with("https://") {
            return Err(ClientError::BadUrl(format!(
                "{text}: only http:// shares exist"
            )));
        }
        let (before_fragment, fragment) = rest.split_once('#').unwrap_or((rest, ""));
        let authority = before_fragment.split(['/', '?']).next().ok_or_else(bad)?;
        let (host, port) = if let Some(v6) = authority.strip_prefix('[') {
            let (h, p) = v6.split_once(']').ok_or_else(bad)?;
            (h.to_owned(), p.strip_prefix(':').unwrap_or("7380"))
        } else {
            match authority.rsplit_once(':') {
                Some((h, p)) => (h.to_owned(), p),
                None => (authority.to_owned(), "7380"),
            }
        };
        if host.is_empty() {
            return Err(bad());
        }
        let port = port.parse().map_err(|_| bad())?;
        let code = fragment
            .split('&')
            .find_map(|kv| kv.strip_prefix("code="))
            .filter(|c| !c.is_empty())
            .map(str::to_owned);
        Ok(Self { host, port, code })
    }

    pub(super) fn authority(&self) -> String {
        format!("{}:{}", crate::host_in_url(&self.host), self.port)
    }
}
