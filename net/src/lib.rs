//! Porthole networking: the share's HTTP server (viewer page + WHEP), one WebRTC peer
//! connection per viewer fed from one shared encoder, and access control.
//! This crate moves encoded media and messages; it knows no pixels and no widgets.

pub mod access;
mod assets;
pub mod cc;
pub mod client;
pub mod control;
pub mod discovery;
pub mod fuzz;
mod handler;
pub mod keyframe;
pub mod nack;
pub mod pairing;
pub mod peer;
pub mod protocol;
pub mod reorder;
pub mod server;
pub mod session;
pub mod stats;
pub mod video;

pub use access::AccessCode;
pub use control::Rights;
pub use peer::{IceConfig, IceServer};
pub use protocol::{Message, Mime};
pub use server::{
    viewer_url, Approver, MediaStats, PendingViewer, ShareConfig, ShareServer, ViewerInfo,
};
pub use session::{HostEvents, HostSide, ViewOnlyHost};
pub use video::{MediaFanout, MediaUnit};

/// `host` as it stands in a URL or `host:port`: an IPv6 address (anything holding a `:`)
/// in brackets, unless it has them already; a name or IPv4 address as it is.
pub fn host_in_url(host: &str) -> std::borrow::Cow<'_, str> {
    if host.contains(':') && !host.starts_with('[') {
        format!("[{host}]").into()
    } else {
        host.into()
    }
}

/// Addresses of this machine's up, non-loopback interfaces (IPv4 first), for the URL shown
/// to the host when the share listens on every interface.
pub fn lan_addresses() -> Vec<std::net::IpAddr> {
    let mut addrs: Vec<std::net::IpAddr> = if_addrs::get_if_addrs()
        .unwrap_or_default()
        .into_iter()
        .filter(|i| !i.is_loopback())
        .map(|i| i.ip())
        .filter(|ip| match ip {
            std::net::IpAddr::V6(v6) => (v6.segments()[0] & 0xffc0) != 0xfe80,
            std::net::IpAddr::V4(v4) => !v4.is_link_local(),
        })
        .collect();
    addrs.sort_by_key(|ip| ip.is_ipv6());
    addrs
}

#[cfg(test)]
mod tests {
    #[test]
    fn ipv6_hosts_are_bracketed_once() {
        assert_eq!(super::host_in_url("::1"), "[::1]");
        assert_eq!(super::host_in_url("[::1]"), "[::1]");
        assert_eq!(super::host_in_url("10.0.0.2"), "10.0.0.2");
        assert_eq!(super::host_in_url("desk.local"), "desk.local");
    }
}
