//! Recording core/v1 Events about objects, deduplicated as Kubernetes'
//! event recorder does: a repeat of the same reason and message about the
//! same object bumps `count` and `lastTimestamp` of the existing Event
//! instead of creating another.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use orchd_store::{ObjectKey, Store, StoreError, meta};
use serde_json::{Value, json};

/// Normal or Warning.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum EventType {
    /// Something expected happened.
    Normal,
    /// Something went wrong.
    Warning,
}

impl EventType {
    fn as_str(self) -> &'static str {
        match self {
            EventType::Normal => "Normal",
            EventType::Warning => "Warning",
        }
    }
}

/// Most distinct (object, reason, message) triples remembered for
/// deduplication; past it the memory is cleared (a repeat then creates a
/// new Event, which is harmless).
const MAX_REMEMBERED: usize = 50_000;

/// Events written per object, for deduplication.
#[derive(Default)]
struct Seen {
    by_object: HashMap<String, HashMap<(String, String), String>>,
    /// Entries over every object.
    len: usize,
}

/// Records Events on behalf of one component (`source.component`).
pub struct EventRecorder {
    store: Arc<dyn Store>,
    component: String,
    /// namespace/name of the object → (reason, message) → Event name;
    /// by object first so forgetting one object is one removal.
    seen: Mutex<Seen>,
}

impl EventRecorder {
    /// A recorder writing as `component` (a scheduler's name, a plugin's).
    pub fn new(store: Arc<dyn Store>, component: &str) -> Arc<Self> {
        Arc::new(EventRecorder {
            store,
            component: component.into(),
            seen: Mutex::new(Seen::default()),
        })
    }

    /// Records an Event about `object` in its namespace, in the background:
    /// a failed event write is never the caller's failure.
    pub fn record(self: &Arc<Self>, object: &Value, kind: EventType, reason: &str, message: &str) {
        let recorder = self.clone();
        let object = reference(object);
        let reason = reason.to_string();
        let message = message.to_string();
        tokio::spawn(async move {
            if let Err(e) = recorder.write(&object, kind, &reason, &message).await {
                eprintln!(
                    "orchd: {}: cannot record event {reason}: {e}",
                    recorder.component
                );
            }
        });
    }

    /// Forgets the deduplication state of the object `namespace/name` (it
    /// was deleted, or its story is over).
    pub fn forget(&self, namespace: &str, name: &str) {
        let key = format!("{namespace}/{name}");
        if let Ok(mut seen) = self.seen.lock()
            && let Some(events) = seen.by_object.remove(&key)
        {
            seen.len -= events.len();
        }
    }

    /// Writes the Event now.
    pub async fn write(
        &self,
        object: &Value,
        kind: EventType,
        reason: &str,
        message: &str,
    ) -> Result<(), StoreError> {
        let namespace = meta::meta_str(object, "namespace").unwrap_or("default");
        let name = meta::meta_str(object, "name").unwrap_or_default();
        let object_key = format!("{namespace}/{name}");
        let dedup_key = (reason.to_string(), message.to_string());
        let existing = self.seen.lock().ok().and_then(|s| {
            s.by_object
                .get(&object_key)
                .and_then(|events| events.get(&dedup_key))
                .cloned()
        });
        let now = meta::now_rfc3339();
        if let Some(event_name) = existing {
            let key = ObjectKey::namespaced("events", namespace, &event_name);
            let stamp = now.clone();
            let bumped = self
                .store
                .guaranteed_update(&key, &move |mut event| {
                    let count = event["count"].as_i64().unwrap_or(1);
                    event["count"] = json!(count.saturating_add(1));
                    event["lastTimestamp"] = json!(stamp);
                    Ok(event)
                })
                .await;
            match bumped {
                Ok(_) => return Ok(()),
                // Deleted or expired meanwhile: start a new one.
                Err(StoreError::NotFound { .. }) => {}
                Err(e) => return Err(e),
            }
        }
        let kind_of = object["kind"].as_str().unwrap_or("Pod");
        let api_version = object["apiVersion"].as_str().unwrap_or("v1");
        let mut event_name = format!("{name}.{:x}", jiff::Timestamp::now().as_nanosecond());
        for attempt in 0..3 {
            let event = json!({
                "apiVersion": "v1",
                "kind": "Event",
                "metadata": {"name": event_name, "namespace": namespace},
                "involvedObject": {
                    "apiVersion": api_version,
                    "kind": kind_of,
                    "namespace": namespace,
                    "name": name,
                    "uid": meta::meta_str(object, "uid").unwrap_or_default(),
                    "resourceVersion": meta::meta_str(object, "resourceVersion").unwrap_or_default(),
                },
                "reason": reason,
                "message": message,
                "type": kind.as_str(),
                "source": {"component": self.component},
                "reportingComponent": self.component,
                "reportingInstance": self.component,
                "firstTimestamp": now,
                "lastTimestamp": now,
                "count": 1,
            });
            match self
                .store
                .create_shared(
                    &ObjectKey::namespaced("events", namespace, &event_name),
                    event,
                )
                .await
            {
                Ok(_) => break,
                Err(StoreError::AlreadyExists { .. }) if attempt < 2 => {
                    event_name = format!("{name}.{}", uuid::Uuid::new_v4().simple());
                }
                Err(e) => return Err(e),
            }
        }
        if let Ok(mut seen) = self.seen.lock() {
            if seen.len >= MAX_REMEMBERED {
                *seen = Seen::default();
            }
            let events = seen.by_object.entry(object_key).or_default();
            if events.insert(dedup_key, event_name).is_none() {
                seen.len += 1;
            }
        }
        Ok(())
    }
}

/// The parts of `object` an Event names it by: a scheduler records one
/// for every pod it binds, and copying the whole pod for that was a
/// visible share of the scheduling CPU.
fn reference(object: &Value) -> Value {
    let mut metadata = serde_json::Map::new();
    for field in ["namespace", "name", "uid", "resourceVersion"] {
        if let Some(v) = object["metadata"].get(field) {
            metadata.insert(field.into(), v.clone());
        }
    }
    let mut reference = json!({"metadata": metadata});
    for field in ["apiVersion", "kind"] {
        if let Some(v) = object.get(field) {
            reference[field] = v.clone();
        }
    }
    reference
}

#[cfg(test)]
mod tests {
    use orchd_store::{ListOptions, RedbStore, RedbStoreConfig, Scope};

    use super::*;

    async fn events(store: &dyn Store) -> Vec<Value> {
        let scope = Scope {
            resource: "events".into(),
            ..Scope::default()
        };
        match store.list(&scope, &ListOptions::default()).await {
            Ok(list) => list.items,
            Err(e) => panic!("{e}"),
        }
    }

    #[test]
    fn a_reference_keeps_what_an_event_names_and_nothing_else() {
        let pod = json!({"apiVersion": "v1", "kind": "Pod",
                         "metadata": {"name": "p", "namespace": "ns", "uid": "u",
                                      "resourceVersion": "7", "labels": {"a": "b"}},
                         "spec": {"containers": []}});
        assert_eq!(
            reference(&pod),
            json!({"apiVersion": "v1", "kind": "Pod",
                   "metadata": {"name": "p", "namespace": "ns", "uid": "u", "resourceVersion": "7"}})
        );
        assert_eq!(reference(&json!("x")), json!({"metadata": {}}));
    }

    #[tokio::test]
    async fn repeats_are_counted_until_the_object_is_forgotten() {
        let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
        let store: Arc<dyn Store> =
            RedbStore::open(RedbStoreConfig::new(dir.path().join("s.redb")))
                .unwrap_or_else(|e| panic!("{e}"));
        let recorder = EventRecorder::new(store.clone(), "test");
        let pod = json!({"apiVersion": "v1", "kind": "Pod",
                         "metadata": {"name": "p", "namespace": "default", "uid": "u"}});
        let other = json!({"apiVersion": "v1", "kind": "Pod",
                           "metadata": {"name": "q", "namespace": "default", "uid": "v"}});
        for object in [&pod, &pod, &other] {
            recorder
                .write(object, EventType::Warning, "FailedScheduling", "no room")
                .await
                .unwrap_or_else(|e| panic!("{e}"));
        }
        let counts = |events: &[Value]| {
            let mut c: Vec<(String, i64)> = events
                .iter()
                .map(|e| {
                    (
                        e["involvedObject"]["name"]
                            .as_str()
                            .unwrap_or_default()
                            .into(),
                        e["count"].as_i64().unwrap_or(1),
                    )
                })
                .collect();
            c.sort();
            c
        };
        assert_eq!(
            counts(&events(store.as_ref()).await),
            [("p".into(), 2), ("q".into(), 1)]
        );
        // Forgotten (the pod was deleted): a repeat starts a new Event,
        // and the other object's memory is untouched.
        recorder.forget("default", "p");
        for object in [&pod, &other] {
            recorder
                .write(object, EventType::Warning, "FailedScheduling", "no room")
                .await
                .unwrap_or_else(|e| panic!("{e}"));
        }
        assert_eq!(
            counts(&events(store.as_ref()).await),
            [("p".into(), 1), ("p".into(), 2), ("q".into(), 2)]
        );
    }
}
