//! LAN discovery with DNS-SD over mDNS (mdns-sd): a share announces
//! `_porthole._tcp.local.`; viewers browse for it.
//!
//! TXT records: `v` protocol version, `video`/`audio`/`control` flags (0/1), `fp` the first
//! 16 hex digits of the share's DTLS certificate SHA-256 fingerprint (a viewer can compare
//! it with the `a=fingerprint` of the WHEP answer). The access code is never announced.

use std::collections::{HashMap, HashSet};
use std::net::IpAddr;
use std::time::{Duration, Instant};

use mdns_sd::{HostnameResolutionEvent, IfKind, ServiceDaemon, ServiceEvent, ServiceInfo};

pub const SERVICE_TYPE: &str = "_porthole._tcp.local.";

#[derive(Debug, thiserror::Error)]
pub enum DiscoveryError {
    #[error("mDNS unavailable: {0}")]
    Mdns(String),
    #[error("no network interface can send multicast (mDNS); is the network up?")]
    NoMulticast,
}

fn mdns(e: mdns_sd::Error) -> DiscoveryError {
    DiscoveryError::Mdns(e.to_string())
}

/// Whether any interface could carry mDNS (operationally up, not loopback, not
/// point-to-point).
fn has_multicast_interface() -> bool {
    if_addrs::get_if_addrs()
        .map(|ifs| {
            ifs.iter().any(|i| {
                !i.is_loopback() && i.is_oper_up() && !i.is_p2p() && can_multicast(&i.name)
            })
        })
        .unwrap_or(false)
}

/// The interface's IFF_MULTICAST flag, asked of the kernel for this process's network
/// namespace (SIOCGIFFLAGS; sysfs may show another namespace). Unknown counts as yes.
fn can_multicast(name: &str) -> bool {
    let Ok(cname) = std::ffi::CString::new(name) else {
        return true;
    };
    let bytes = cname.as_bytes_with_nul();
    if bytes.len() > libc::IFNAMSIZ {
        return true;
    }
    // SAFETY: a plain datagram socket and an ifreq whose name is NUL-terminated within
    // IFNAMSIZ; the kernel fills ifr_flags; the socket is closed before returning.
    unsafe {
        let fd = libc::socket(libc::AF_INET, libc::SOCK_DGRAM | libc::SOCK_CLOEXEC, 0);
        if fd < 0 {
            return true;
        }
        let mut req: libc::ifreq = std::mem::zeroed();
        for (dst, src) in req.ifr_name.iter_mut().zip(bytes) {
            *dst = *src as libc::c_char;
        }
        let ok = libc::ioctl(fd, libc::SIOCGIFFLAGS as _, &mut req) == 0;
        libc::close(fd);
        !ok || (i32::from(req.ifr_ifru.ifru_flags) & libc::IFF_MULTICAST) != 0
    }
}

/// What a share announces.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ShareAnnouncement {
    pub name: String,
    pub port: u16,
    pub audio: bool,
    pub control: bool,
    /// 16 hex digits.
    pub fingerprint: String,
}

/// A share found on the network.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize)]
pub struct NearbyShare {
    pub name: String,
    pub host: String,
    pub addresses: Vec<IpAddr>,
    pub port: u16,
    pub version: String,
    pub video: bool,
    pub audio: bool,
    pub control: bool,
    pub fingerprint: String,
}

impl NearbyShare {
    /// The address to connect to: IPv4 first, then IPv6 other than link-local (whose
    /// zone mDNS does not carry), loopback last.
    pub fn best_address(&self) -> Option<IpAddr> {
        let mut a = self.addresses.clone();
        a.sort_by_key(|ip| (ip.is_loopback(), ip.is_ipv6(), is_link_local_v6(ip)));
        a.first().copied()
    }

    /// The host part of a link to this share: its best address (IPv6 in brackets), else
    /// its host name.
    pub fn host_in_url(&self) -> String {
        match self.best_address() {
            Some(ip) => crate::host_in_url(&ip.to_string()).into_owned(),
            None => self.host.clone(),
        }
    }

    /// `video,audio,control fp=…` for one-line listings.
    pub fn flags(&self) -> String {
        let mut f: Vec<&str> = Vec::new();
        if self.video {
            f.push("video");
        }
        if self.audio {
            f.push("audio");
        }
        if self.control {
            f.push("control");
        }
        format!("{} fp={}", f.join(","), self.fingerprint)
    }
}

/// The fingerprint as the sharing app shows it (`ab:cd:…`), for a person to compare.
pub fn fingerprint_for_people(fp: &str) -> String {
    let hex: Vec<char> = fp
        .chars()
        .filter(char::is_ascii_hexdigit)
        .take(16)
        .collect();
    hex.chunks(2)
        .map(|c| c.iter().collect::<String>().to_ascii_lowercase())
        .collect::<Vec<_>>()
        .join(":")
}

/// One share in a nearby list, as first announced. `id` stays for the entry's life.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct NearbyEntry {
    pub id: u64,
    pub share: NearbyShare,
    /// The user chose this entry: no record changes it.
    pub pinned: bool,
    /// Withdrawn since it was pinned (kept, so the choice does not move to another).
    pub gone: bool,
}

/// Most entries a nearby list holds (a LAN flood of records cannot grow it further).
pub const MAX_NEARBY: usize = 64;

/// The nearby list the app shows, fed by browse events. Anyone on the LAN can announce
/// any name, so a record never silently replaces an entry: a newer record for a name
/// updates its entry only when it keeps the fingerprint and port and only adds addresses
/// (mDNS often brings a host's A record after its AAAA); anything else (another address,
/// another fingerprint) is a different entry, and the name is then ambiguous. An entry the
/// user chose (`pin`) changes for no record at all.
#[derive(Clone, Debug, Default)]
pub struct NearbyList {
    entries: Vec<NearbyEntry>,
    next_id: u64,
}

impl NearbyList {
    pub fn entries(&self) -> &[NearbyEntry] {
        &self.entries
    }

    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// Whether more than one entry carries `name` (a spoof, or two machines alike).
    pub fn is_ambiguous(&self, name: &str) -> bool {
        self.entries.iter().filter(|e| e.share.name == name).count() > 1
    }

    pub fn pinned(&self) -> Option<&NearbyEntry> {
        self.entries.iter().find(|e| e.pinned)
    }

    /// Pins entry `id` (the user's choice; only one is pinned).
    pub fn pin(&mut self, id: u64) -> Option<&NearbyEntry> {
        for e in &mut self.entries {
            e.pinned = e.id == id;
        }
        self.entries.retain(|e| !e.gone || e.pinned);
        self.pinned()
    }

    pub fn unpin(&mut self) {
        for e in &mut self.entries {
            e.pinned = false;
        }
        self.entries.retain(|e| !e.gone);
    }

    pub fn apply(&mut self, event: BrowseEvent) {
        match event {
            BrowseEvent::Found(share) => self.found(share),
            BrowseEvent::Gone(name) => {
                self.entries.retain(|e| e.pinned || e.share.name != name);
                for e in &mut self.entries {
                    if e.share.name == name {
                        e.gone = true;
                    }
                }
            }
        }
    }

    fn found(&mut self, share: NearbyShare) {
        let same_share = |e: &NearbyEntry| {
            e.share.name == share.name
                && e.share.fingerprint == share.fingerprint
                && e.share.port == share.port
                && e.share
                    .addresses
                    .iter()
                    .all(|a| share.addresses.contains(a))
        };
        if let Some(e) = self.entries.iter_mut().find(|e| same_share(e)) {
            e.gone = false;
            if !e.pinned {
                e.share = share;
            }
            return;
        }
        if self.entries.len() >= MAX_NEARBY {
            // Make room by forgetting the oldest entry the user did not choose.
            match self.entries.iter().position(|e| !e.pinned) {
                Some(i) => {
                    self.entries.remove(i);
                }
                None => return,
            }
        }
        self.next_id += 1;
        self.entries.push(NearbyEntry {
            id: self.next_id,
            share,
            pinned: false,
            gone: false,
        });
        self.entries
            .sort_by(|a, b| a.share.name.cmp(&b.share.name).then(a.id.cmp(&b.id)));
    }
}

/// The running announcement; dropping it withdraws the record (goodbye packets).
pub struct Announcer {
    daemon: ServiceDaemon,
    fullname: String,
}

fn hostname() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .map(|s| s.trim().to_owned())
        .ok()
        .filter(|s| !s.is_empty())
        .unwrap_or_else(|| "porthole".into())
}

/// The instance name to announce by default: this machine's name.
pub fn default_name() -> String {
    hostname()
}

impl Announcer {
    pub fn start(a: &ShareAnnouncement) -> Result<Self, DiscoveryError> {
        if !has_multicast_interface() {
            return Err(DiscoveryError::NoMulticast);
        }
        let daemon = ServiceDaemon::new().map_err(mdns)?;
        // Not on loopback: nothing there needs it (a browse on this machine hears the LAN
        // interface's multicast loop), and mdns-sd 0.21 sends the repeat of a goodbye
        // through whichever interface its IPv4 socket multicast on last: with loopback in
        // the set, the LAN's repeat often went to loopback and was never heard.
        daemon
            .disable_interface(vec![IfKind::LoopbackV4, IfKind::LoopbackV6])
            .map_err(mdns)?;
        let host = format!("{}.local.", hostname());
        let flag = |b: bool| if b { "1" } else { "0" };
        let props = [
            ("v", "1"),
            ("video", "1"),
            ("audio", flag(a.audio)),
            ("control", flag(a.control)),
            ("fp", a.fingerprint.as_str()),
        ];
        let info = ServiceInfo::new(SERVICE_TYPE, &a.name, &host, "", a.port, &props[..])
            .map_err(mdns)?
            .enable_addr_auto();
        let fullname = info.get_fullname().to_owned();
        daemon.register(info).map_err(mdns)?;
        tracing::info!(name = %a.name, port = a.port, "announced on the LAN (mDNS)");
        Ok(Self { daemon, fullname })
    }
}

impl Drop for Announcer {
    fn drop(&mut self) {
        if let Ok(rx) = self.daemon.unregister(&self.fullname) {
            let _ = rx.recv_timeout(Duration::from_secs(1));
        }
        // mdns-sd repeats the goodbye ~120 ms later; let it go out, so an answer to a query
        // queued before the first goodbye cannot leave the share listed.
        std::thread::sleep(Duration::from_millis(200));
        if let Ok(rx) = self.daemon.shutdown() {
            let _ = rx.recv_timeout(Duration::from_secs(1));
        }
    }
}

/// What a live browse reports.
#[derive(Clone, Debug)]
pub enum BrowseEvent {
    Found(NearbyShare),
    /// The share with this instance name is gone.
    Gone(String),
}

fn is_link_local_v6(ip: &IpAddr) -> bool {
    matches!(ip, IpAddr::V6(v6) if v6.segments()[0] & 0xffc0 == 0xfe80)
}

/// How long a browse keeps asking for the addresses of a host it resolved without IPv4.
const HOST_QUERY_MS: u64 = 5000;

/// A live browse; events arrive through `poll`.
pub struct Browser {
    daemon: ServiceDaemon,
    rx: mdns_sd::Receiver<ServiceEvent>,
    /// Hosts whose addresses were asked for separately (once per browse).
    asked: HashSet<String>,
    /// The open address queries, by host name (FQDN).
    host_queries: HashMap<String, mdns_sd::Receiver<HostnameResolutionEvent>>,
}

fn instance_name(fullname: &str) -> String {
    fullname
        .strip_suffix(&format!(".{SERVICE_TYPE}"))
        .unwrap_or(fullname)
        .replace("\\ ", " ")
        .replace("\\.", ".")
}

impl Browser {
    pub fn start() -> Result<Self, DiscoveryError> {
        if !has_multicast_interface() {
            return Err(DiscoveryError::NoMulticast);
        }
        let daemon = ServiceDaemon::new().map_err(mdns)?;
        let rx = daemon.browse(SERVICE_TYPE).map_err(mdns)?;
        Ok(Self {
            daemon,
            rx,
            asked: HashSet::new(),
            host_queries: HashMap::new(),
        })
    }

    /// Events since the last call (never blocks).
    pub fn poll(&mut self) -> Vec<BrowseEvent> {
        let mut out = Vec::new();
        while let Ok(event) = self.rx.try_recv() {
            if let Some(e) = self.convert(event) {
                out.push(e);
            }
        }
        self.drain_host_queries();
        out
    }

    /// Waits up to `timeout` for events.
    pub fn wait(&mut self, timeout: Duration) -> Option<BrowseEvent> {
        let deadline = Instant::now() + timeout;
        loop {
            self.drain_host_queries();
            let left = deadline.checked_duration_since(Instant::now())?;
            match self.rx.recv_timeout(left) {
                Ok(event) => {
                    if let Some(e) = self.convert(event) {
                        return Some(e);
                    }
                }
                Err(_) => return None,
            }
        }
    }

    fn convert(&mut self, event: ServiceEvent) -> Option<BrowseEvent> {
        let e = convert(event)?;
        if let BrowseEvent::Found(s) = &e {
            if s.addresses.iter().any(IpAddr::is_ipv4) {
                self.stop_asking(&s.host);
            } else {
                self.ask_addresses(&s.host);
            }
        }
        Some(e)
    }

    /// A service can resolve with only some of its host's addresses (say the AAAA
    /// record, when the responder's once-a-second multicast limit held the A record
    /// back), and mdns-sd asks no more once resolved. Ask for the host's addresses
    /// again; when they come, the service resolves again with all of them.
    fn ask_addresses(&mut self, host: &str) {
        if host.is_empty() || !self.asked.insert(host.to_owned()) {
            return;
        }
        let fqdn = format!("{host}.");
        match self.daemon.resolve_hostname(&fqdn, Some(HOST_QUERY_MS)) {
            Ok(rx) => {
                tracing::debug!(
                    host,
                    "resolved without IPv4; asking for the host's addresses"
                );
                self.host_queries.insert(fqdn, rx);
            }
            Err(e) => tracing::debug!(host, error = %e, "cannot ask for the host's addresses"),
        }
    }

    /// The host's IPv4 address came: no need to keep asking.
    fn stop_asking(&mut self, host: &str) {
        let fqdn = format!("{host}.");
        if self.host_queries.remove(&fqdn).is_some() {
            let _ = self.daemon.stop_resolve_hostname(&fqdn);
        }
    }

    /// The answers come back as service events; these receivers are only kept open
    /// (mdns-sd stops a query whose receiver is gone) and emptied.
    fn drain_host_queries(&mut self) {
        self.host_queries.retain(|_, rx| loop {
            match rx.try_recv() {
                Ok(
                    HostnameResolutionEvent::SearchTimeout(_)
                    | HostnameResolutionEvent::SearchStopped(_),
                ) => break false,
                Ok(_) => continue,
                Err(mdns_sd::TryRecvError::Empty) => break true,
                Err(_) => break false,
            }
        });
    }
}

impl Drop for Browser {
    fn drop(&mut self) {
        let _ = self.daemon.stop_browse(SERVICE_TYPE);
        if let Ok(rx) = self.daemon.shutdown() {
            let _ = rx.recv_timeout(Duration::from_millis(500));
        }
    }
}

fn convert(event: ServiceEvent) -> Option<BrowseEvent> {
    match event {
        ServiceEvent::ServiceResolved(info) => {
            let flag = |k: &str| info.get_property_val_str(k) == Some("1");
            let mut addresses: Vec<IpAddr> = info
                .get_addresses()
                .iter()
                .map(|a| a.to_ip_addr())
                .collect();
            addresses.sort();
            Some(BrowseEvent::Found(NearbyShare {
                name: instance_name(info.get_fullname()),
                host: info.get_hostname().trim_end_matches('.').to_owned(),
                addresses,
                port: info.get_port(),
                version: info.get_property_val_str("v").unwrap_or("").to_owned(),
                video: flag("video"),
                audio: flag("audio"),
                control: flag("control"),
                fingerprint: info.get_property_val_str("fp").unwrap_or("").to_owned(),
            }))
        }
        ServiceEvent::ServiceRemoved(_, fullname) => {
            Some(BrowseEvent::Gone(instance_name(&fullname)))
        }
        _ => None,
    }
}

/// Browses for `timeout` and returns what is there at the end, by name: a second record
/// for a name with another address or fingerprint is listed too (see `NearbyList`).
pub fn list(timeout: Duration) -> Result<Vec<NearbyShare>, DiscoveryError> {
    let mut browser = Browser::start()?;
    let deadline = Instant::now() + timeout;
    let mut found = NearbyList::default();
    while let Some(left) = deadline.checked_duration_since(Instant::now()) {
        match browser.wait(left) {
            Some(event) => found.apply(event),
            None => break,
        }
    }
    Ok(found.entries.into_iter().map(|e| e.share).collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn instance_names_are_unescaped() {
        assert_eq!(instance_name("my\\ box._porthole._tcp.local."), "my box");
        assert_eq!(instance_name("a\\.b._porthole._tcp.local."), "a.b");
    }

    #[test]
    fn flags_read_well() {
        let s = NearbyShare {
            name: "x".into(),
            host: "x.local".into(),
            addresses: vec!["fe80::1".parse().unwrap(), "10.0.0.2".parse().unwrap()],
            port: 7380,
            version: "1".into(),
            video: true,
            audio: false,
            control: true,
            fingerprint: "0011223344556677".into(),
        };
        assert_eq!(s.flags(), "video,control fp=0011223344556677");
        assert_eq!(s.best_address(), Some("10.0.0.2".parse().unwrap()));
    }

    #[test]
    fn best_address_prefers_ipv4_then_routable_ipv6() {
        let with = |a: &[&str]| NearbyShare {
            name: "x".into(),
            host: "x.local".into(),
            addresses: a.iter().map(|s| s.parse().unwrap()).collect(),
            port: 7380,
            version: "1".into(),
            video: true,
            audio: false,
            control: false,
            fingerprint: String::new(),
        };
        let best = |a: &[&str]| with(a).best_address().map(|ip| ip.to_string());
        assert_eq!(
            best(&["fe80::1", "2001:db8::5"]).as_deref(),
            Some("2001:db8::5")
        );
        assert_eq!(
            best(&["fd00::7", "fe80::1", "192.168.1.4"]).as_deref(),
            Some("192.168.1.4")
        );
        assert_eq!(best(&["::1", "fe80::1"]).as_deref(), Some("fe80::1"));
        assert_eq!(best(&[]), None);
    }

    fn share(name: &str, addrs: &[&str], fp: &str) -> NearbyShare {
        NearbyShare {
            name: name.into(),
            host: format!("{name}.local"),
            addresses: addrs.iter().map(|s| s.parse().unwrap()).collect(),
            port: 7380,
            version: "1".into(),
            video: true,
            audio: false,
            control: false,
            fingerprint: fp.into(),
        }
    }

    #[test]
    fn a_spoofed_record_never_replaces_the_entry_the_user_chose() {
        let mut list = NearbyList::default();
        let real = share("studio", &["10.213.0.1"], "0011223344556677");
        list.apply(BrowseEvent::Found(real.clone()));
        let id = list.entries()[0].id;
        let pinned = list.pin(id).unwrap().clone();
        assert_eq!(pinned.share, real);
        // A newer record for the name from another machine: same fingerprint text copied,
        // another address; then one with another fingerprint at the same address.
        list.apply(BrowseEvent::Found(share(
            "studio",
            &["10.213.0.2"],
            "0011223344556677",
        )));
        list.apply(BrowseEvent::Found(share(
            "studio",
            &["10.213.0.1"],
            "ffffffffffffffff",
        )));
        assert_eq!(
            list.pinned().unwrap().share,
            real,
            "the pinned entry is unchanged"
        );
        assert_eq!(list.pinned().unwrap().id, id);
        assert_eq!(
            list.entries().len(),
            3,
            "each different record is its own entry"
        );
        assert!(list.is_ambiguous("studio"));
        // A goodbye for the name does not move the choice to another entry.
        list.apply(BrowseEvent::Gone("studio".into()));
        assert_eq!(list.entries().len(), 1);
        assert!(list.pinned().unwrap().gone);
        assert_eq!(list.pinned().unwrap().share, real);
    }

    #[test]
    fn a_record_that_only_adds_addresses_updates_an_unchosen_entry() {
        let mut list = NearbyList::default();
        list.apply(BrowseEvent::Found(share("box", &["fd00:213::1"], "aa")));
        list.apply(BrowseEvent::Found(share(
            "box",
            &["10.213.0.1", "fd00:213::1"],
            "aa",
        )));
        assert_eq!(
            list.entries().len(),
            1,
            "the late A record completes the entry"
        );
        assert_eq!(list.entries()[0].share.addresses.len(), 2);
        assert!(!list.is_ambiguous("box"));
        // Dropping an address is a change: another entry.
        list.apply(BrowseEvent::Found(share("box", &["10.213.0.9"], "aa")));
        assert_eq!(list.entries().len(), 2);
        // Gone removes every unchosen entry of the name.
        list.apply(BrowseEvent::Gone("box".into()));
        assert!(list.is_empty());
    }

    #[test]
    fn a_flood_of_records_is_bounded_and_keeps_the_choice() {
        let mut list = NearbyList::default();
        list.apply(BrowseEvent::Found(share("mine", &["10.0.0.1"], "01")));
        let id = list.entries()[0].id;
        list.pin(id);
        for i in 0..1000 {
            list.apply(BrowseEvent::Found(share(
                &format!("n{i}"),
                &["10.0.0.2"],
                "02",
            )));
        }
        assert_eq!(list.entries().len(), MAX_NEARBY);
        assert_eq!(list.pinned().unwrap().share.name, "mine");
    }

    #[test]
    fn fingerprints_read_as_the_host_shows_them() {
        assert_eq!(
            fingerprint_for_people("0011223344556677"),
            "00:11:22:33:44:55:66:77"
        );
        assert_eq!(fingerprint_for_people("AB"), "ab");
    }
}
