//! A bounded hand-over between threads that keeps only the newest item.
//!
//! The producer never blocks: putting into a full slot replaces (drops) the stale item.
//! That is what a live video pipeline wants: an encoder that falls behind skips frames
//! instead of building a queue of old ones.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Condvar, Mutex};
use std::time::Duration;

#[derive(Default)]
pub struct LatestSlot<T> {
    item: Mutex<Option<T>>,
    ready: Condvar,
    dropped: AtomicU64,
}

impl<T> LatestSlot<T> {
    pub fn new() -> Self {
        Self {
            item: Mutex::new(None),
            ready: Condvar::new(),
            dropped: AtomicU64::new(0),
        }
    }

    /// Puts `item`, replacing any item not yet taken. Returns true when one was dropped.
    pub fn put(&self, item: T) -> bool {
        let mut guard = self.item.lock().unwrap_or_else(|e| e.into_inner());
        let replaced = guard.replace(item).is_some();
        drop(guard);
        if replaced {
            self.dropped.fetch_add(1, Ordering::Relaxed);
        }
        self.ready.notify_one();
        replaced
    }

    /// Takes the newest item, waiting at most `timeout` for one.
    pub fn take_timeout(&self, timeout: Duration) -> Option<T> {
        let guard = self.item.lock().unwrap_or_else(|e| e.into_inner());
        let (mut guard, _) = self
            .ready
            .wait_timeout_while(guard, timeout, |item| item.is_none())
            .unwrap_or_else(|e| e.into_inner());
        guard.take()
    }

    /// Waits at most `timeout` for an item to be there, without taking it; whether one is.
    pub fn wait_filled(&self, timeout: Duration) -> bool {
        let guard = self.item.lock().unwrap_or_else(|e| e.into_inner());
        let (guard, _) = self
            .ready
            .wait_timeout_while(guard, timeout, |item| item.is_none())
            .unwrap_or_else(|e| e.into_inner());
        guard.is_some()
    }

    /// How many items were replaced before anyone took them.
    pub fn dropped(&self) -> u64 {
        self.dropped.load(Ordering::Relaxed)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;

    #[test]
    fn keeps_only_the_newest_and_counts_drops() {
        let slot = LatestSlot::new();
        assert!(!slot.put(1));
        assert!(slot.put(2));
        assert!(slot.put(3));
        assert_eq!(slot.take_timeout(Duration::ZERO), Some(3));
        assert_eq!(slot.take_timeout(Duration::from_millis(5)), None);
        assert_eq!(slot.dropped(), 2);
    }

    #[test]
    fn wakes_a_waiting_consumer() {
        let slot = Arc::new(LatestSlot::new());
        let producer = Arc::clone(&slot);
        let t = std::thread::spawn(move || {
            std::thread::sleep(Duration::from_millis(20));
            producer.put(7u8);
        });
        assert_eq!(slot.take_timeout(Duration::from_secs(5)), Some(7));
        t.join().unwrap();
    }
}
