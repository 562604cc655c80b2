//! A pod's state as workload controllers judge it: active, ready,
//! available. Pure functions over `serde_json::Value`.

use serde_json::Value;

use crate::meta;

/// The pod without what workload controllers never look at: its
/// containers and the rest of its spec but `nodeName`, and
/// `metadata.managedFields`. Several times smaller, for controllers that
/// hold thousands of pods in a plugin's memory at once; write such a pod
/// back only through a patch.
pub fn slim(mut pod: Value) -> Value {
    if let Some(spec) = pod.get_mut("spec").and_then(Value::as_object_mut) {
        spec.retain(|k, _| k == "nodeName");
    }
    if let Some(meta) = pod.get_mut("metadata").and_then(Value::as_object_mut) {
        meta.remove("managedFields");
    }
    pod
}

/// Whether the pod still counts toward its owner's replicas: not finished
/// (`Succeeded` / `Failed`) and not being deleted.
pub fn is_active(pod: &Value) -> bool {
    let phase = pod["status"]["phase"].as_str().unwrap_or_default();
    phase != "Succeeded" && phase != "Failed" && !meta::is_deleting(pod)
}

/// The pod's `Ready` condition, if it has one.
fn ready_condition(pod: &Value) -> Option<&Value> {
    pod["status"]["conditions"]
        .as_array()?
        .iter()
        .find(|c| c["type"] == "Ready")
}

/// Whether the pod's `Ready` condition is `True`.
pub fn is_ready(pod: &Value) -> bool {
    ready_condition(pod).is_some_and(|c| c["status"] == "True")
}

/// When the pod became ready (its `Ready` condition's last transition), in
/// Unix seconds; `None` if it is not ready. A ready pod without a
/// transition time counts as ready since forever, as Kubernetes has it.
pub fn ready_since(pod: &Value) -> Option<i64> {
    let c = ready_condition(pod).filter(|c| c["status"] == "True")?;
    Some(
        c["lastTransitionTime"]
            .as_str()
            .and_then(meta::parse_time)
            .unwrap_or(i64::MIN),
    )
}

/// Whether the pod has been ready for at least `min_ready_seconds` at
/// `now` (Unix seconds): Kubernetes' "available".
pub fn is_available(pod: &Value, min_ready_seconds: i64, now: i64) -> bool {
    match ready_since(pod) {
        Some(_) if min_ready_seconds <= 0 => true,
        Some(since) => since.saturating_add(min_ready_seconds) <= now,
        None => false,
    }
}

/// When a ready but not yet available pod becomes available (Unix
/// seconds), for requeueing its owner then.
pub fn available_at(pod: &Value, min_ready_seconds: i64, now: i64) -> Option<i64> {
    let since = ready_since(pod)?;
    let at = since.saturating_add(min_ready_seconds);
    (min_ready_seconds > 0 && at > now).then_some(at)
}

/// Whether the pod is bound to a node.
pub fn is_scheduled(pod: &Value) -> bool {
    pod["spec"]["nodeName"]
        .as_str()
        .is_some_and(|n| !n.is_empty())
}

/// Total container restarts the pod's status reports.
pub fn restart_count(pod: &Value) -> i64 {
    pod["status"]["containerStatuses"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|c| c["restartCount"].as_i64())
        .sum()
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn slim_keeps_what_controllers_judge_pods_by() {
        let full = json!({
            "metadata": {"name": "p", "labels": {"app": "web"}, "managedFields": [{}],
                         "ownerReferences": [{"uid": "u", "controller": true}]},
            "spec": {"nodeName": "n1", "containers": [{"name": "c", "image": "i"}]},
            "status": {"phase": "Running", "conditions": [{"type": "Ready", "status": "True"}]},
        });
        let slim = slim(full.clone());
        assert_eq!(slim["spec"], json!({"nodeName": "n1"}));
        assert!(slim["metadata"].get("managedFields").is_none());
        assert_eq!(slim["metadata"]["labels"], full["metadata"]["labels"]);
        assert_eq!(slim["status"], full["status"]);
        assert!(is_ready(&slim) && is_active(&slim));
    }

    fn pod(phase: &str, ready: Option<&str>) -> Value {
        let mut p = json!({"metadata": {"name": "p"}, "spec": {}, "status": {"phase": phase}});
        if let Some(at) = ready {
            p["status"]["conditions"] =
                json!([{"type": "Ready", "status": "True", "lastTransitionTime": at}]);
        }
        p
    }

    #[test]
    fn readiness_and_availability() {
        let t = "2026-12-02T04:35:32Z";
        let since = meta::parse_time(t).unwrap();
        let p = pod("Running", Some(t));
        assert!(is_active(&p) && is_ready(&p));
        assert_eq!(ready_since(&p), Some(since));
        assert!(is_available(&p, 0, since));
        assert!(!is_available(&p, 10, since + 9));
        assert!(is_available(&p, 10, since + 10));
        assert_eq!(available_at(&p, 10, since + 3), Some(since + 10));
        assert_eq!(available_at(&p, 10, since + 10), None);
        let pending = pod("Pending", None);
        assert!(!is_ready(&pending) && !is_available(&pending, 0, since));
        assert!(!is_active(&pod("Succeeded", None)));
        let mut deleting = pod("Running", Some(t));
        deleting["metadata"]["deletionTimestamp"] = json!(t);
        assert!(!is_active(&deleting));
    }
}
