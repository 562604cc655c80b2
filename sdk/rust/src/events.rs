//! Kubernetes Events about objects (controllers only). The host
//! deduplicates repeats into one Event with a count, as Kubernetes does, so
//! recording the same reason on every reconcile is fine.

use crate::bindings::controller::orchd::plugin::events as wit;
use crate::objects::ObjectRef;

pub use wit::EventType;

/// Records an Event about `regarding`. `reason` is a short CamelCase word
/// (`ScalingReplicaSet`), `message` a sentence for humans.
pub fn record(regarding: &ObjectRef, event_type: EventType, reason: &str, message: &str) {
    wit::record(regarding, event_type, reason, message);
}

/// Records a `Normal` Event.
pub fn normal(regarding: &ObjectRef, reason: &str, message: &str) {
    record(regarding, EventType::Normal, reason, message);
}

/// Records a `Warning` Event.
pub fn warning(regarding: &ObjectRef, reason: &str, message: &str) {
    record(regarding, EventType::Warning, reason, message);
}
