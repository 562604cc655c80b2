//! The replicaset controller's policy as pure functions: which pods to
//! delete first, how many to create per batch, the pod a template makes,
//! and the status a set of pods amounts to.

use std::cmp::Ordering;

use orchd_sdk::meta;
use orchd_sdk::pods;
use orchd_sdk::serde_json::{Map, Value, json};

/// Most pods created or deleted in one reconcile, as Kubernetes'
/// `burstReplicas`: the rest follow in the next reconcile.
pub const BURST_REPLICAS: usize = 500;

/// The annotation with which a user says which pods to delete first
/// (lower cost goes first).
pub const DELETION_COST: &str = "controller.kubernetes.io/pod-deletion-cost";

/// Phase order for deletion: a pod not yet running goes before a running
/// one.
fn phase_rank(pod: &Value) -> u8 {
    match pod["status"]["phase"].as_str().unwrap_or("Pending") {
        "Pending" => 0,
        "Unknown" => 1,
        "Running" => 2,
        _ => 3,
    }
}

fn deletion_cost(pod: &Value) -> i64 {
    pod["metadata"]["annotations"][DELETION_COST]
        .as_str()
        .and_then(|c| c.trim().parse().ok())
        .unwrap_or(0)
}

fn created(pod: &Value) -> i64 {
    pod["metadata"]["creationTimestamp"]
        .as_str()
        .and_then(meta::parse_time)
        .unwrap_or(0)
}

/// Which of two pods to delete first (`Less`: `a` goes first), the way
/// Kubernetes ranks them: unscheduled before scheduled, pending before
/// running, not ready before ready, lower deletion cost first, ready for
/// less time first, more restarts first, newer first.
pub fn deletion_order(a: &Value, b: &Value) -> Ordering {
    pods::is_scheduled(a)
        .cmp(&pods::is_scheduled(b))
        .then_with(|| phase_rank(a).cmp(&phase_rank(b)))
        .then_with(|| pods::is_ready(a).cmp(&pods::is_ready(b)))
        .then_with(|| deletion_cost(a).cmp(&deletion_cost(b)))
        // Both ready: the one ready more recently goes first.
        .then_with(|| match (pods::ready_since(a), pods::ready_since(b)) {
            (Some(x), Some(y)) => y.cmp(&x),
            _ => Ordering::Equal,
        })
        .then_with(|| pods::restart_count(b).cmp(&pods::restart_count(a)))
        .then_with(|| created(b).cmp(&created(a)))
        // A stable last word, so the choice does not flap between calls.
        .then_with(|| {
            let name = |p: &Value| {
                p["metadata"]["name"]
                    .as_str()
                    .unwrap_or_default()
                    .to_string()
            };
            name(b).cmp(&name(a))
        })
}

/// The `count` pods of `owned` to delete, best candidates first.
pub fn pods_to_delete(owned: &[Value], count: usize) -> Vec<&Value> {
    let mut ranked: Vec<&Value> = owned.iter().collect();
    ranked.sort_by(|a, b| deletion_order(a, b));
    ranked.truncate(count);
    ranked
}

/// A new pod from `rs`'s template: its labels, annotations and spec,
/// named `<rs-name>-<5 random characters>` by the API (`generateName`),
/// controlled by the ReplicaSet.
pub fn pod_from_template(rs: &Value) -> Value {
    let template = &rs["spec"]["template"];
    let name = rs["metadata"]["name"].as_str().unwrap_or_default();
    let mut metadata = Map::new();
    metadata.insert("generateName".into(), json!(format!("{name}-")));
    metadata.insert("namespace".into(), rs["metadata"]["namespace"].clone());
    for field in ["labels", "annotations", "finalizers"] {
        let v = &template["metadata"][field];
        if !v.is_null() {
            metadata.insert(field.into(), v.clone());
        }
    }
    metadata.insert(
        "ownerReferences".into(),
        json!([meta::controller_reference(rs, "apps/v1", "ReplicaSet")]),
    );
    json!({
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": metadata,
        "spec": template["spec"],
    })
}

/// Whether `pod` carries every label of `rs`'s template.
fn fully_labeled(rs: &Value, pod: &Value) -> bool {
    rs["spec"]["template"]["metadata"]["labels"]
        .as_object()
        .into_iter()
        .flatten()
        .all(|(k, v)| &pod["metadata"]["labels"][k] == v)
}

/// The `ReplicaFailure` condition a failed create or delete leaves.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Failure {
    /// `FailedCreate` or `FailedDelete`.
    pub reason: &'static str,
    /// What the API said.
    pub message: String,
}

/// `rs.spec.minReadySeconds`.
pub fn min_ready_seconds(rs: &Value) -> i64 {
    rs["spec"]["minReadySeconds"].as_i64().unwrap_or(0).max(0)
}

/// The status `owned` (its active pods) amounts to at `now`, keeping the
/// `ReplicaFailure` condition's transition time while it stays the same.
pub fn status(rs: &Value, owned: &[Value], failure: Option<&Failure>, now: i64) -> Value {
    let min_ready = min_ready_seconds(rs);
    let count = |f: &dyn Fn(&Value) -> bool| owned.iter().filter(|p| f(p)).count();
    let mut status = json!({
        "replicas": owned.len(),
        "fullyLabeledReplicas": count(&|p| fully_labeled(rs, p)),
        "readyReplicas": count(&|p| pods::is_ready(p)),
        "availableReplicas": count(&|p| pods::is_available(p, min_ready, now)),
        "observedGeneration": rs["metadata"]["generation"].as_i64().unwrap_or(0),
    });
    // Conditions other than ReplicaFailure are not ours: keep them.
    let mut conditions: Vec<Value> = rs["status"]["conditions"]
        .as_array()
        .into_iter()
        .flatten()
        .filter(|c| c["type"] != "ReplicaFailure")
        .cloned()
        .collect();
    if let Some(f) = failure {
        let old = rs["status"]["conditions"]
            .as_array()
            .into_iter()
            .flatten()
            .find(|c| c["type"] == "ReplicaFailure" && c["reason"] == f.reason);
        let since = old
            .and_then(|c| c["lastTransitionTime"].as_str())
            .map(str::to_string)
            .unwrap_or_else(|| meta::format_time(now));
        conditions.push(json!({
            "type": "ReplicaFailure",
            "status": "True",
            "reason": f.reason,
            "message": f.message,
            "lastTransitionTime": since,
        }));
    }
    if !conditions.is_empty() {
        status["conditions"] = json!(conditions);
    }
    status
}

/// Whether `new` says anything `old` (a stored status) does not: zero
/// counts are left out of stored statuses, so absent equals 0.
pub fn status_changed(old: &Value, new: &Value) -> bool {
    let int = |v: &Value, f: &str| v[f].as_i64().unwrap_or(0);
    let conditions = |v: &Value| v["conditions"].as_array().cloned().unwrap_or_default();
    [
        "replicas",
        "fullyLabeledReplicas",
        "readyReplicas",
        "availableReplicas",
        "observedGeneration",
    ]
    .iter()
    .any(|f| int(old, f) != int(new, f))
        || conditions(old) != conditions(new)
}

/// The earliest time (Unix seconds) one of `owned` becomes available,
/// when some are ready but not for `minReadySeconds` yet.
pub fn next_available(rs: &Value, owned: &[Value], now: i64) -> Option<i64> {
    let min_ready = min_ready_seconds(rs);
    owned
        .iter()
        .filter_map(|p| pods::available_at(p, min_ready, now))
        .min()
}

#[cfg(test)]
mod tests {
    use super::*;

    const T0: &str = "2026-12-02T04:00:00Z";

    fn pod(name: &str, node: Option<&str>, phase: &str, ready_at: Option<&str>) -> Value {
        let mut p = json!({
            "metadata": {"name": name, "creationTimestamp": T0, "labels": {"app": "web"}},
            "spec": {},
            "status": {"phase": phase},
        });
        if let Some(n) = node {
            p["spec"]["nodeName"] = json!(n);
        }
        if let Some(at) = ready_at {
            p["status"]["conditions"] =
                json!([{"type": "Ready", "status": "True", "lastTransitionTime": at}]);
        }
        p
    }

    fn names(pods: &[&Value]) -> Vec<String> {
        pods.iter()
            .map(|p| p["metadata"]["name"].as_str().unwrap().to_string())
            .collect()
    }

    #[test]
    fn deletes_unscheduled_then_pending_then_not_ready_then_newest() {
        let mut newest = pod(
            "ready-new",
            Some("n1"),
            "Running",
            Some("2026-12-02T04:10:00Z"),
        );
        newest["metadata"]["creationTimestamp"] = json!("2026-12-02T04:09:00Z");
        let owned = vec![
            pod(
                "ready-old",
                Some("n1"),
                "Running",
                Some("2026-12-02T04:01:00Z"),
            ),
            newest,
            pod("running-not-ready", Some("n1"), "Running", None),
            pod("pending-on-node", Some("n2"), "Pending", None),
            pod("unscheduled", None, "Pending", None),
        ];
        let order = names(&pods_to_delete(&owned, 5));
        assert_eq!(
            order,
            [
                "unscheduled",
                "pending-on-node",
                "running-not-ready",
                "ready-new",
                "ready-old"
            ]
        );
        assert_eq!(
            names(&pods_to_delete(&owned, 2)),
            ["unscheduled", "pending-on-node"]
        );
    }

    #[test]
    fn deletion_cost_and_restarts_break_ties() {
        let mut cheap = pod("cheap", Some("n"), "Running", Some(T0));
        cheap["metadata"]["annotations"] = json!({DELETION_COST: "-5"});
        let mut crashy = pod("crashy", Some("n"), "Running", Some(T0));
        crashy["status"]["containerStatuses"] = json!([{"restartCount": 3}]);
        let plain = pod("plain", Some("n"), "Running", Some(T0));
        let owned = vec![plain, crashy, cheap];
        assert_eq!(
            names(&pods_to_delete(&owned, 3)),
            ["cheap", "crashy", "plain"]
        );
    }

    fn rs() -> Value {
        json!({
            "metadata": {"name": "web-abc", "namespace": "ns", "uid": "rs-uid", "generation": 4},
            "spec": {
                "replicas": 3,
                "minReadySeconds": 30,
                "selector": {"matchLabels": {"app": "web"}},
                "template": {
                    "metadata": {"labels": {"app": "web", "tier": "front"}, "annotations": {"a": "b"}},
                    "spec": {"containers": [{"name": "c", "image": "nginx"}]},
                },
            },
        })
    }

    #[test]
    fn pods_come_from_the_template_and_are_controlled() {
        let p = pod_from_template(&rs());
        assert_eq!(p["metadata"]["generateName"], "web-abc-");
        assert_eq!(p["metadata"]["namespace"], "ns");
        assert_eq!(p["metadata"]["labels"]["tier"], "front");
        assert_eq!(p["metadata"]["annotations"]["a"], "b");
        assert!(meta::is_controlled_by(&p, "rs-uid"));
        assert_eq!(p["spec"]["containers"][0]["image"], "nginx");
        assert!(p["metadata"]["name"].is_null());
    }

    #[test]
    fn status_counts_labeled_ready_and_available_pods() {
        let now = meta::parse_time("2026-12-02T04:01:00Z").unwrap();
        let mut labeled = pod("a", Some("n"), "Running", Some(T0)); // ready 60 s: available
        labeled["metadata"]["labels"]["tier"] = json!("front");
        let owned = vec![
            labeled,
            pod("b", Some("n"), "Running", Some("2026-12-02T04:00:50Z")), // ready 10 s
            pod("c", None, "Pending", None),
        ];
        let s = status(&rs(), &owned, None, now);
        assert_eq!(s["replicas"], 3);
        assert_eq!(s["fullyLabeledReplicas"], 1);
        assert_eq!(s["readyReplicas"], 2);
        assert_eq!(s["availableReplicas"], 1);
        assert_eq!(s["observedGeneration"], 4);
        assert!(s["conditions"].is_null());
        assert_eq!(
            next_available(&rs(), &owned, now),
            Some(meta::parse_time("2026-12-02T04:01:20Z").unwrap())
        );
        assert!(status_changed(&json!({}), &s));
        assert!(!status_changed(&s, &s.clone()));
    }

    #[test]
    fn a_failure_is_a_condition_that_keeps_its_transition_time() {
        let now = meta::parse_time(T0).unwrap();
        let failure = Failure {
            reason: "FailedCreate",
            message: "quota".into(),
        };
        let s = status(&rs(), &[], Some(&failure), now);
        assert_eq!(s["conditions"][0]["reason"], "FailedCreate");
        let mut later_rs = rs();
        later_rs["status"] = s.clone();
        let again = status(&later_rs, &[], Some(&failure), now + 100);
        assert_eq!(again["conditions"][0]["lastTransitionTime"], T0);
        assert!(!status_changed(&s, &again));
        let cleared = status(&later_rs, &[], None, now + 100);
        assert!(cleared["conditions"].is_null());
        assert!(status_changed(&s, &cleared));
    }
}
