//! The garbage collector's rules as pure functions: which resources hold
//! owners and dependents, and what to do with a dependent given which of
//! its owners are still there.

use orchd_sdk::serde_json::Value;

/// The finalizer an Orphan delete leaves on the owner.
pub const ORPHAN: &str = "orphan";
/// The finalizer a Foreground delete leaves on the owner.
pub const FOREGROUND: &str = "foregroundDeletion";

/// Owners whose deletion the collector follows (their dependents are
/// looked at when they go).
pub const OWNER_RESOURCES: &[&str] = &[
    "replicasets.apps",
    "deployments.apps",
    "jobs.batch",
    "cronjobs.batch",
    "daemonsets.apps",
    "statefulsets.apps",
];

/// Where dependents live.
pub const DEPENDENT_RESOURCES: &[&str] = &["pods", "replicasets.apps", "jobs.batch"];

/// (group, kind, resource) of the kinds an ownerReference may name that
/// the collector can look up.
const KINDS: &[(&str, &str, &str)] = &[
    ("", "Pod", "pods"),
    ("apps", "ReplicaSet", "replicasets.apps"),
    ("apps", "Deployment", "deployments.apps"),
    ("apps", "StatefulSet", "statefulsets.apps"),
    ("apps", "DaemonSet", "daemonsets.apps"),
    ("batch", "Job", "jobs.batch"),
    ("batch", "CronJob", "cronjobs.batch"),
];

/// The resource an ownerReference's `apiVersion` and `kind` mean, if
/// known.
pub fn resource_of(api_version: &str, kind: &str) -> Option<&'static str> {
    let group = api_version.rsplit_once('/').map_or("", |(g, _)| g);
    KINDS
        .iter()
        .find(|(g, k, _)| *g == group && *k == kind)
        .map(|(_, _, r)| *r)
}

/// The kind of a resource's objects, if known.
pub fn kind_of(resource: &str) -> Option<&'static str> {
    KINDS
        .iter()
        .find(|(_, _, r)| *r == resource)
        .map(|(_, k, _)| *k)
}

/// Whether `object` names `kind`/`name` (with `uid`, if given) as an
/// owner.
pub fn refers_to(object: &Value, kind: &str, name: &str, uid: Option<&str>) -> bool {
    object["metadata"]["ownerReferences"]
        .as_array()
        .into_iter()
        .flatten()
        .any(|r| r["kind"] == kind && r["name"] == name && uid.is_none_or(|u| r["uid"] == u))
}

/// Whether `object`'s reference to the owner `uid` blocks that owner's
/// foreground deletion.
pub fn blocks_owner(object: &Value, uid: &str) -> bool {
    object["metadata"]["ownerReferences"]
        .as_array()
        .into_iter()
        .flatten()
        .any(|r| r["uid"] == uid && r["blockOwnerDeletion"] == true)
}

/// What becomes of a dependent.
#[derive(Debug, PartialEq)]
pub enum Verdict {
    /// Every owner is there.
    Keep,
    /// No owner is left.
    Delete,
    /// Some owners are gone: keep only these references.
    Drop(Vec<Value>),
}

/// The verdict for a dependent with owner references `refs`, of which
/// `present[i]` tells whether the i-th owner still exists.
pub fn verdict(refs: &[Value], present: &[bool]) -> Verdict {
    if refs.is_empty() || present.iter().all(|p| *p) {
        return Verdict::Keep;
    }
    if present.iter().all(|p| !*p) {
        return Verdict::Delete;
    }
    Verdict::Drop(
        refs.iter()
            .zip(present)
            .filter(|(_, p)| **p)
            .map(|(r, _)| r.clone())
            .collect(),
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use orchd_sdk::serde_json::json;

    #[test]
    fn kinds_map_to_resources_by_group() {
        assert_eq!(
            resource_of("apps/v1", "ReplicaSet"),
            Some("replicasets.apps")
        );
        assert_eq!(resource_of("v1", "Pod"), Some("pods"));
        assert_eq!(resource_of("batch/v1", "Job"), Some("jobs.batch"));
        // Same kind, other group: not ours to judge.
        assert_eq!(resource_of("example.com/v1", "ReplicaSet"), None);
        assert_eq!(resource_of("v1", "Node"), None);
        assert_eq!(kind_of("deployments.apps"), Some("Deployment"));
        assert_eq!(kind_of("widgets"), None);
    }

    #[test]
    fn dependents_are_found_by_kind_name_and_uid() {
        let pod = json!({"metadata": {"ownerReferences": [
            {"kind": "ReplicaSet", "name": "web-1", "uid": "u1", "blockOwnerDeletion": true},
            {"kind": "Job", "name": "x", "uid": "u2"}]}});
        assert!(refers_to(&pod, "ReplicaSet", "web-1", None));
        assert!(refers_to(&pod, "ReplicaSet", "web-1", Some("u1")));
        assert!(!refers_to(&pod, "ReplicaSet", "web-1", Some("other")));
        assert!(!refers_to(&pod, "Deployment", "web-1", None));
        assert!(blocks_owner(&pod, "u1"));
        assert!(!blocks_owner(&pod, "u2"));
    }

    #[test]
    fn only_objects_without_owners_left_are_deleted() {
        let refs = vec![json!({"uid": "a"}), json!({"uid": "b"})];
        assert_eq!(verdict(&refs, &[true, true]), Verdict::Keep);
        assert_eq!(verdict(&refs, &[false, false]), Verdict::Delete);
        assert_eq!(
            verdict(&refs, &[false, true]),
            Verdict::Drop(vec![json!({"uid": "b"})])
        );
        assert_eq!(verdict(&[], &[]), Verdict::Keep);
    }
}
