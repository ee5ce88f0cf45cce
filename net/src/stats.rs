//! What the share counts and measures, and the names it has in `/api/stats`: one typed
//! list, so that a key is spelled once (here) and a counter cannot be published under two
//! names or forgotten. The media source adds its own keys (see `server::MediaStats`).

use std::sync::atomic::{AtomicU64, Ordering};

/// An event the share counts (over all viewers, since it started).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Counter {
    /// Peer connections made for viewers (each admitted offer).
    PeerConnectionsCreated,
    /// Requests refused, for any reason (each one also logged).
    WhepRefused,
    /// Requests refused for their credentials (none, a wrong code, a bad signature).
    Unauthorized,
    /// Pairings answered (each one a guess at the code until confirmed).
    Pairings,
    /// Requests whose pairing MAC verified.
    PairingsConfirmed,
    /// Requests whose pairing MAC did not verify (changed on their way).
    MacRefused,
    /// Viewers' control messages handed to the host.
    InputForwarded,
    /// Viewers' messages refused for a right they lack.
    InputRefused,
    /// Clipboard transfers from viewers given to the host.
    ClipboardReceived,
    /// Host clipboard transfers sent to viewers.
    ClipboardSent,
    /// Clipboard transfers from viewers refused for their size.
    ClipboardRefused,
    /// Viewers' messages that did not decode, came on the wrong channel or broke a
    /// clipboard transfer.
    MalformedMessages,
    /// Viewers' messages dropped by a rate limit.
    RateLimited,
}

impl Counter {
    pub const ALL: [Counter; 13] = [
        Counter::PeerConnectionsCreated,
        Counter::WhepRefused,
        Counter::Unauthorized,
        Counter::Pairings,
        Counter::PairingsConfirmed,
        Counter::MacRefused,
        Counter::InputForwarded,
        Counter::InputRefused,
        Counter::ClipboardReceived,
        Counter::ClipboardSent,
        Counter::ClipboardRefused,
        Counter::MalformedMessages,
        Counter::RateLimited,
    ];

    /// Its key in `/api/stats`.
    pub fn name(self) -> &'static str {
        match self {
            Counter::PeerConnectionsCreated => "peer_connections_created",
            Counter::WhepRefused => "whep_refused",
            Counter::Unauthorized => "unauthorized",
            Counter::Pairings => "pairings",
            Counter::PairingsConfirmed => "pairings_confirmed",
            Counter::MacRefused => "mac_refused",
            Counter::InputForwarded => "input_forwarded",
            Counter::InputRefused => "input_refused",
            Counter::ClipboardReceived => "clipboard_received",
            Counter::ClipboardSent => "clipboard_sent",
            Counter::ClipboardRefused => "clipboard_refused",
            Counter::MalformedMessages => "malformed_messages",
            Counter::RateLimited => "rate_limited",
        }
    }
}

/// The share's counters: one per [`Counter`], usable from any thread.
#[derive(Debug, Default)]
pub struct Counters([AtomicU64; Counter::ALL.len()]);

impl Counters {
    pub fn add(&self, counter: Counter) {
        self.0[counter as usize].fetch_add(1, Ordering::Relaxed);
    }

    pub fn get(&self, counter: Counter) -> u64 {
        self.0[counter as usize].load(Ordering::Relaxed)
    }
}

/// Everything net publishes in `/api/stats`: its [`Counter`]s and what it reads when asked.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Stat {
    /// Viewers admitted now (connected or not yet).
    Viewers,
    /// ... of which connected.
    ViewersConnected,
    /// ... of which silent now, their path maybe coming back.
    ViewersReconnecting,
    /// Video units the share published to its viewers.
    VideoUnitsPublished,
    /// Audio packets the share published (0 without sound).
    AudioPacketsPublished,
    /// Keyframes asked of the encoder.
    KeyframesRequested,
    Counted(Counter),
}

impl Stat {
    /// In the order they are published.
    pub const ALL: [Stat; 19] = [
        Stat::Viewers,
        Stat::ViewersConnected,
        Stat::ViewersReconnecting,
        Stat::Counted(Counter::PeerConnectionsCreated),
        Stat::Counted(Counter::WhepRefused),
        Stat::Counted(Counter::Unauthorized),
        Stat::Counted(Counter::Pairings),
        Stat::Counted(Counter::PairingsConfirmed),
        Stat::Counted(Counter::MacRefused),
        Stat::VideoUnitsPublished,
        Stat::AudioPacketsPublished,
        Stat::KeyframesRequested,
        Stat::Counted(Counter::InputForwarded),
        Stat::Counted(Counter::InputRefused),
        Stat::Counted(Counter::ClipboardReceived),
        Stat::Counted(Counter::ClipboardSent),
        Stat::Counted(Counter::ClipboardRefused),
        Stat::Counted(Counter::MalformedMessages),
        Stat::Counted(Counter::RateLimited),
    ];

    /// Its key in `/api/stats`.
    pub fn name(self) -> &'static str {
        match self {
            Stat::Viewers => "viewers",
            Stat::ViewersConnected => "viewers_connected",
            Stat::ViewersReconnecting => "viewers_reconnecting",
            Stat::VideoUnitsPublished => "video_units_published",
            Stat::AudioPacketsPublished => "audio_packets_published",
            Stat::KeyframesRequested => "keyframes_requested",
            Stat::Counted(counter) => counter.name(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_counter_is_published_once_under_its_old_name() {
        let names: Vec<&str> = Stat::ALL.iter().map(|s| s.name()).collect();
        // The keys of `/api/stats` before the typed list (the e2e tests and the page read
        // them): none renamed, none lost.
        assert_eq!(
            names,
            [
                "viewers",
                "viewers_connected",
                "viewers_reconnecting",
                "peer_connections_created",
                "whep_refused",
                "unauthorized",
                "pairings",
                "pairings_confirmed",
                "mac_refused",
                "video_units_published",
                "audio_packets_published",
                "keyframes_requested",
                "input_forwarded",
                "input_refused",
                "clipboard_received",
                "clipboard_sent",
                "clipboard_refused",
                "malformed_messages",
                "rate_limited",
            ]
        );
        for counter in Counter::ALL {
            assert_eq!(
                Stat::ALL
                    .iter()
                    .filter(|s| **s == Stat::Counted(counter))
                    .count(),
                1,
                "{counter:?}"
            );
        }
    }

    #[test]
    fn counters_count_apart() {
        let c = Counters::default();
        c.add(Counter::RateLimited);
        c.add(Counter::RateLimited);
        c.add(Counter::PeerConnectionsCreated);
        assert_eq!(c.get(Counter::RateLimited), 2);
        assert_eq!(c.get(Counter::PeerConnectionsCreated), 1);
        assert_eq!(c.get(Counter::WhepRefused), 0);
        // `Counter as usize` indexes the array: the list is in declaration order.
        for (i, counter) in Counter::ALL.iter().enumerate() {
            assert_eq!(*counter as usize, i);
        }
    }
}
