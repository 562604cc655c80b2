//! The queue of pods waiting for a decision: a FIFO of pods ready now, and
//! pods backing off after a failed attempt (1 s doubling to 60 s), which
//! move back at once when the cluster changes in a way that may help them.

use std::collections::{HashMap, HashSet, VecDeque};
use std::sync::Arc;
use std::time::{Duration, Instant};

use serde_json::Value;

/// First delay after an unschedulable attempt.
const BACKOFF_START: Duration = Duration::from_secs(1);
/// Longest delay between attempts.
const BACKOFF_MAX: Duration = Duration::from_secs(60);

/// Delay after `attempts` failed attempts in a row (1 s, 2 s, 4 s ... 60 s).
pub(crate) fn backoff(attempts: u32) -> Duration {
    let doublings = attempts.saturating_sub(1).min(16);
    BACKOFF_START
        .saturating_mul(1u32 << doublings)
        .min(BACKOFF_MAX)
}

/// Pending pods by key (`namespace/name`).
#[derive(Default)]
pub(crate) struct Queue {
    /// The newest object of every pod waiting for a decision (the store's
    /// shared copy).
    pods: HashMap<String, Arc<Value>>,
    /// Keys ready for an attempt, oldest first (each at most once).
    active: VecDeque<String>,
    in_active: HashSet<String>,
    /// Keys backing off until the given time.
    waiting: HashMap<String, Instant>,
    /// Failed attempts in a row per key.
    attempts: HashMap<String, u32>,
    /// Keys being decided or bound right now: a newer version of the pod
    /// is stored but not queued until the attempt finishes.
    in_flight: HashSet<String>,
}

impl Queue {
    /// Adds or refreshes a pending pod. A new pod is ready at once; a known
    /// one keeps its place (or its backoff).
    pub(crate) fn upsert(&mut self, key: &str, pod: Arc<Value>) {
        let known = self.pods.insert(key.into(), pod).is_some();
        if !known && !self.in_flight.contains(key) {
            self.push_active(key);
        }
    }

    /// Drops a pod that is no longer pending (bound, deleted, not ours).
    pub(crate) fn remove(&mut self, key: &str) {
        self.pods.remove(key);
        self.waiting.remove(key);
        self.attempts.remove(key);
        if self.in_active.remove(key) {
            self.active.retain(|k| k != key);
        }
    }

    /// The next pod to decide, marked in flight until
    /// [`Queue::done`], [`Queue::retry_later`] or [`Queue::retry_now`].
    pub(crate) fn pop(&mut self) -> Option<(String, Arc<Value>)> {
        while let Some(key) = self.active.pop_front() {
            self.in_active.remove(&key);
            if let Some(pod) = self.pods.get(&key) {
                self.in_flight.insert(key.clone());
                return Some((key, pod.clone()));
            }
        }
        None
    }

    /// The attempt for `key` ended with the pod bound or gone.
    pub(crate) fn done(&mut self, key: &str) {
        self.in_flight.remove(key);
        self.remove(key);
    }

    /// The attempt for `key` failed: back off (1 s doubling to 60 s).
    /// Returns the delay chosen.
    pub(crate) fn retry_later(&mut self, key: &str) -> Duration {
        self.in_flight.remove(key);
        let attempts = self.attempts.entry(key.into()).or_insert(0);
        *attempts = attempts.saturating_add(1);
        let delay = backoff(*attempts);
        if self.pods.contains_key(key) {
            self.waiting.insert(key.into(), Instant::now() + delay);
        }
        delay
    }

    /// The attempt for `key` did not count against the pod (a binding
    /// conflict, the plugin restarting): try again soon, at the back.
    pub(crate) fn retry_now(&mut self, key: &str) {
        self.in_flight.remove(key);
        if self.pods.contains_key(key) {
            self.push_active(key);
        }
    }

    /// The attempt for `key` did not count and the pod should go first
    /// (the plugin was not available to decide).
    pub(crate) fn retry_first(&mut self, key: &str) {
        self.in_flight.remove(key);
        if self.pods.contains_key(key) && self.in_active.insert(key.into()) {
            self.active.push_front(key.into());
        }
    }

    /// Moves pods whose backoff ended to the active queue; returns when the
    /// next backoff ends.
    pub(crate) fn promote_due(&mut self, now: Instant) -> Option<Instant> {
        let due: Vec<String> = self
            .waiting
            .iter()
            .filter(|(_, at)| **at <= now)
            .map(|(k, _)| k.clone())
            .collect();
        for key in due {
            self.waiting.remove(&key);
            self.push_active(&key);
        }
        self.waiting.values().min().copied()
    }

    /// The cluster changed in a way that may let waiting pods fit: retry
    /// them all now (their attempt counts, and so later backoffs, stay).
    pub(crate) fn flush(&mut self) {
        let keys: Vec<String> = self.waiting.drain().map(|(k, _)| k).collect();
        for key in keys {
            self.push_active(&key);
        }
    }

    /// Whether a pod is ready for an attempt.
    pub(crate) fn has_active(&self) -> bool {
        !self.active.is_empty()
    }

    /// Keys of every pending pod.
    pub(crate) fn keys(&self) -> Vec<String> {
        self.pods.keys().cloned().collect()
    }

    /// Pending pods (queued, waiting or in flight).
    pub(crate) fn len(&self) -> usize {
        self.pods.len()
    }

    fn push_active(&mut self, key: &str) {
        if self.in_flight.contains(key) {
            return;
        }
        if self.in_active.insert(key.into()) {
            self.active.push_back(key.into());
        }
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    #[test]
    fn backoff_doubles_from_1s_to_60s() {
        assert_eq!(backoff(1), Duration::from_secs(1));
        assert_eq!(backoff(2), Duration::from_secs(2));
        assert_eq!(backoff(6), Duration::from_secs(32));
        assert_eq!(backoff(7), Duration::from_secs(60));
        assert_eq!(backoff(u32::MAX), Duration::from_secs(60));
    }

    #[test]
    fn fifo_with_backoff_and_flush() {
        let mut q = Queue::default();
        q.upsert("ns/a", Arc::new(json!({"n": 1})));
        q.upsert("ns/b", Arc::new(json!({})));
        q.upsert("ns/a", Arc::new(json!({"n": 2})));
        let (key, pod) = q.pop().unwrap_or_default();
        assert_eq!((key.as_str(), pod["n"].as_i64()), ("ns/a", Some(2)));
        // An update while in flight does not queue it twice.
        q.upsert("ns/a", Arc::new(json!({"n": 3})));
        assert_eq!(q.retry_later("ns/a"), Duration::from_secs(1));
        let (key, _) = q.pop().unwrap_or_default();
        assert_eq!(key, "ns/b");
        assert!(q.pop().is_none());
        let next = q.promote_due(Instant::now());
        assert!(next.is_some());
        q.flush();
        let (key, pod) = q.pop().unwrap_or_default();
        assert_eq!((key.as_str(), pod["n"].as_i64()), ("ns/a", Some(3)));
        assert_eq!(q.retry_later("ns/a"), Duration::from_secs(2));
        q.remove("ns/a");
        q.flush();
        q.done("ns/b");
        assert!(q.pop().is_none());
        assert_eq!(q.len(), 0);
    }
}
