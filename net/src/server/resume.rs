//! Sessions whose connection was lost, kept a while so that their viewer comes back as
//! itself: same number, same rights, no second question to the host, and no access code
//! needed again (it may have been a first-use code).
//!
//! A paired viewer whose connection fails (the page's ICE failed, the share gave up on
//! it) sends its next offer signed with the same pairing's keys and names its old session
//! in `Porthole-Resume: <session id>`. The MAC proves it holds those keys, which only the
//! viewer that paired with the code has. A session is kept [`RESUME_WINDOW`] after the
//! loss and serves one resumption; one the host removed, one that left and one that never
//! connected are not kept. Pure: the caller passes the time.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::control::Rights;
use crate::pairing::Keys;

/// How long after the loss a session may be resumed.
pub const RESUME_WINDOW: Duration = Duration::from_secs(60);
/// Most lost sessions kept; beyond it the one closest to expiring goes.
pub const MAX_LOST: usize = 64;

/// What a lost session leaves for its viewer's return.
#[derive(Clone)]
pub struct Lost {
    pub keys: Arc<Keys>,
    pub no: u64,
    pub rights: Rights,
}

/// The lost sessions, by session id.
#[derive(Default)]
pub struct LostSessions {
    map: HashMap<String, (Lost, Instant)>,
}

impl LostSessions {
    fn expire(&mut self, now: Instant) {
        self.map.retain(|_, (_, until)| *until > now);
    }

    /// Keeps session `id`, lost at `now`, for [`RESUME_WINDOW`].
    pub fn keep(&mut self, id: String, lost: Lost, now: Instant) {
        self.expire(now);
        while self.map.len() >= MAX_LOST {
            let Some(first) = self
                .map
                .iter()
                .min_by_key(|(_, (_, until))| *until)
                .map(|(id, _)| id.clone())
            else {
                break;
            };
            self.map.remove(&first);
        }
        self.map.insert(id, (lost, now + RESUME_WINDOW));
    }

    /// Session `id`, if it is kept (it stays kept).
    pub fn peek(&mut self, id: &str, now: Instant) -> Option<Lost> {
        self.expire(now);
        self.map.get(id).map(|(lost, _)| lost.clone())
    }

    /// Session `id`, if it is kept and `proves` holds for its keys (the request's MAC
    /// verifies). Taken: a session is resumed once. A failed proof leaves it kept.
    pub fn take(
        &mut self,
        id: &str,
        now: Instant,
        proves: impl FnOnce(&Keys) -> bool,
    ) -> Option<Lost> {
        self.expire(now);
        if !proves(&self.map.get(id)?.0.keys) {
            return None;
        }
        self.map.remove(id).map(|(lost, _)| lost)
    }

    #[cfg(test)]
    fn len(&self) -> usize {
        self.map.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn lost(no: u64) -> Lost {
        let viewer = pake::ViewerPairing::start("12345678", [1; 32]);
        let keys = pake::share_respond("12345678", viewer.message(), [2; 32])
            .unwrap()
            .keys;
        Lost {
            keys: Arc::new(keys),
            no,
            rights: Rights {
                control: true,
                ..Rights::default()
            },
        }
    }

    #[test]
    fn a_session_is_resumed_once_with_its_number_and_rights() {
        let t0 = Instant::now();
        let mut kept = LostSessions::default();
        kept.keep("s1".into(), lost(3), t0);
        let back = kept
            .take("s1", t0 + Duration::from_secs(5), |_| true)
            .unwrap();
        assert_eq!((back.no, back.rights.control), (3, true));
        assert!(kept
            .take("s1", t0 + Duration::from_secs(6), |_| true)
            .is_none());
        assert_eq!(kept.len(), 0);
    }

    #[test]
    fn a_failed_proof_leaves_the_session_for_its_viewer() {
        let t0 = Instant::now();
        let mut kept = LostSessions::default();
        kept.keep("s1".into(), lost(3), t0);
        assert!(kept.take("s1", t0, |_| false).is_none());
        assert!(kept.take("nope", t0, |_| true).is_none());
        assert_eq!(
            kept.peek("s1", t0).map(|l| l.no),
            Some(3),
            "peeked, still kept"
        );
        assert_eq!(kept.take("s1", t0, |_| true).map(|l| l.no), Some(3));
        assert!(kept.peek("s1", t0).is_none());
    }

    #[test]
    fn sessions_expire_after_the_window() {
        let t0 = Instant::now();
        let mut kept = LostSessions::default();
        kept.keep("s1".into(), lost(1), t0);
        assert!(kept.peek("s1", t0 + RESUME_WINDOW).is_none());
        assert!(kept.take("s1", t0 + RESUME_WINDOW, |_| true).is_none());
        assert_eq!(kept.len(), 0);
    }

    #[test]
    fn the_table_is_bounded_and_drops_the_oldest() {
        let t0 = Instant::now();
        let mut kept = LostSessions::default();
        let one = lost(0);
        for i in 0..MAX_LOST as u64 + 5 {
            let mut l = one.clone();
            l.no = i;
            kept.keep(format!("s{i}"), l, t0 + Duration::from_millis(i));
        }
        assert_eq!(kept.len(), MAX_LOST);
        let at = t0 + Duration::from_secs(1);
        assert!(kept.take("s0", at, |_| true).is_none(), "the oldest went");
        let newest = format!("s{}", MAX_LOST + 4);
        assert!(kept.take(&newest, at, |_| true).is_some());
    }
}
