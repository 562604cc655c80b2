//! What a watch with label or field selectors sees of a change, the same
//! for every backend: Kubernetes turns an object that starts to match into
//! `ADDED` and one that stops matching into `DELETED` (carrying its last
//! matching state at the revision of the change).

use std::sync::Arc;

use serde_json::{Value, json};

use crate::selector::{FieldSelector, LabelSelector};
use crate::{EventType, Revision, WatchEvent, meta};

/// A watch's selectors.
pub(crate) struct Selectors {
    pub(crate) labels: LabelSelector,
    pub(crate) fields: FieldSelector,
}

impl Selectors {
    fn matches(&self, object: &Value) -> bool {
        self.labels.matches(object) && self.fields.matches(object)
    }

    /// The event a watcher with these selectors sees for a change of type
    /// `event_type` at `revision`: `object` is the state after it (the
    /// last state for a delete), `prev` the state before a modification
    /// (for a delete, the last state if `object` is not).
    pub(crate) fn apply(
        &self,
        event_type: EventType,
        revision: Revision,
        object: &Arc<Value>,
        json: Option<&Arc<[u8]>>,
        prev: Option<&Arc<Value>>,
    ) -> Option<WatchEvent> {
        let mut object = object.clone();
        let mut json = json.cloned();
        let event_type = if self.labels.is_empty() && self.fields.is_empty() {
            event_type
        } else {
            match event_type {
                EventType::Added => {
                    if !self.matches(&object) {
                        return None;
                    }
                    EventType::Added
                }
                EventType::Modified => {
                    let was = prev.is_some_and(|p| self.matches(p));
                    match (was, self.matches(&object)) {
                        (true, true) => EventType::Modified,
                        (false, true) => EventType::Added,
                        (false, false) => return None,
                        (true, false) => {
                            let mut last = prev.map(|p| (**p).clone()).unwrap_or(Value::Null);
                            meta::set_resource_version(&mut last, Some(revision));
                            object = Arc::new(last);
                            json = None;
                            EventType::Deleted
                        }
                    }
                }
                EventType::Deleted => {
                    let last = prev.unwrap_or(&object);
                    if !self.matches(last) {
                        return None;
                    }
                    EventType::Deleted
                }
                EventType::Bookmark => EventType::Bookmark,
            }
        };
        Some(WatchEvent {
            event_type,
            revision,
            object,
            json,
        })
    }
}

/// A BOOKMARK at `revision`: only the resourceVersion, as Kubernetes sends.
pub(crate) fn bookmark(revision: Revision) -> WatchEvent {
    WatchEvent {
        event_type: EventType::Bookmark,
        revision,
        object: Arc::new(json!({"metadata": {"resourceVersion": revision.to_string()}})),
        json: None,
    }
}
