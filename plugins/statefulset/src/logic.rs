//! The statefulset controller's policy as pure functions: pod identity
//! (names, ordinals, labels), revisions, and the next steps (creates and
//! deletes) and status a StatefulSet and its pods amount to.

use orchd_sdk::meta;
use orchd_sdk::pods;
use orchd_sdk::revision::{self, REVISION_LABEL};
use orchd_sdk::serde_json::{Map, Value, json};

/// The label naming a StatefulSet pod (`web-0`), for Services that pick
/// one pod.
pub const POD_NAME_LABEL: &str = "statefulset.kubernetes.io/pod-name";
/// The label holding a StatefulSet pod's ordinal.
pub const POD_INDEX_LABEL: &str = "apps.kubernetes.io/pod-index";

/// `spec.replicas` (default 1).
pub fn replicas(set: &Value) -> i64 {
    set["spec"]["replicas"].as_i64().unwrap_or(1).max(0)
}

/// The first ordinal (`spec.ordinals.start`, default 0).
pub fn start_ordinal(set: &Value) -> i64 {
    set["spec"]["ordinals"]["start"]
        .as_i64()
        .unwrap_or(0)
        .max(0)
}

/// Whether pods are created and deleted one at a time, in order
/// (`OrderedReady`, the default) rather than all at once (`Parallel`).
pub fn is_ordered(set: &Value) -> bool {
    set["spec"]["podManagementPolicy"] != "Parallel"
}

/// Whether the set replaces outdated pods itself (`RollingUpdate`, the
/// default) rather than when someone deletes them (`OnDelete`).
pub fn is_rolling(set: &Value) -> bool {
    set["spec"]["updateStrategy"]["type"]
        .as_str()
        .unwrap_or("RollingUpdate")
        == "RollingUpdate"
}

/// `rollingUpdate.partition`: ordinals (counted from the start) below it
/// keep the current revision during a rolling update.
pub fn partition(set: &Value) -> i64 {
    set["spec"]["updateStrategy"]["rollingUpdate"]["partition"]
        .as_i64()
        .unwrap_or(0)
        .max(0)
}

fn name_of(object: &Value) -> &str {
    object["metadata"]["name"].as_str().unwrap_or_default()
}

/// The ordinal of a pod of `set`: its name is `<set>-<ordinal>`.
pub fn ordinal_of(set: &Value, pod: &Value) -> Option<i64> {
    let rest = name_of(pod).strip_prefix(name_of(set))?.strip_prefix('-')?;
    if rest.is_empty()
        || !rest.bytes().all(|b| b.is_ascii_digit())
        || (rest.len() > 1 && rest.starts_with('0'))
    {
        return None;
    }
    rest.parse().ok()
}

/// The revision of the set's template: `<set>-<hash>`, as Kubernetes names
/// its ControllerRevisions (none are stored here; the name is the label).
pub fn update_revision(set: &Value) -> String {
    format!(
        "{}-{}",
        name_of(set),
        revision::template_hash(&set["spec"]["template"])
    )
}

/// The revision the set's pods are being moved from: the stored
/// `status.currentRevision`, or the update revision for a new set.
pub fn current_revision(set: &Value) -> String {
    set["status"]["currentRevision"]
        .as_str()
        .filter(|r| !r.is_empty())
        .map_or_else(|| update_revision(set), str::to_string)
}

/// A pod template rebuilt from an existing pod of a revision, for
/// recreating a pod of an older revision: no ControllerRevision keeps
/// old templates, but a sibling pod carries everything a template had.
pub fn template_from_pod(pod: &Value) -> Value {
    let mut labels = pod["metadata"]["labels"]
        .as_object()
        .cloned()
        .unwrap_or_default();
    for identity in [POD_NAME_LABEL, POD_INDEX_LABEL, REVISION_LABEL] {
        labels.remove(identity);
    }
    let mut spec = pod["spec"].clone();
    if let Some(s) = spec.as_object_mut() {
        // Where and as whom the sibling runs, not what it is.
        for field in ["nodeName", "hostname", "subdomain"] {
            s.remove(field);
        }
    }
    json!({
        "metadata": {"labels": labels, "annotations": pod["metadata"]["annotations"]},
        "spec": spec,
    })
}

/// The pod of `set` at `ordinal`, made from `template` of `revision`:
/// named `<set>-<ordinal>`, with its identity labels, host name and (with
/// a `serviceName`) subdomain, controlled by the set.
pub fn new_pod(set: &Value, template: &Value, ordinal: i64, revision: &str) -> Value {
    let name = format!("{}-{ordinal}", name_of(set));
    let mut metadata = Map::new();
    metadata.insert("name".into(), json!(name));
    metadata.insert("namespace".into(), set["metadata"]["namespace"].clone());
    let mut labels = template["metadata"]["labels"]
        .as_object()
        .cloned()
        .unwrap_or_default();
    labels.insert(POD_NAME_LABEL.into(), json!(name));
    labels.insert(POD_INDEX_LABEL.into(), json!(ordinal.to_string()));
    labels.insert(REVISION_LABEL.into(), json!(revision));
    metadata.insert("labels".into(), Value::Object(labels));
    for field in ["annotations", "finalizers"] {
        let v = &template["metadata"][field];
        if !v.is_null() {
            metadata.insert(field.into(), v.clone());
        }
    }
    metadata.insert(
        "ownerReferences".into(),
        json!([meta::controller_reference(set, "apps/v1", "StatefulSet")]),
    );
    let mut spec = template["spec"].clone();
    spec["hostname"] = json!(name);
    if let Some(service) = set["spec"]["serviceName"]
        .as_str()
        .filter(|s| !s.is_empty())
    {
        spec["subdomain"] = json!(service);
    }
    json!({"apiVersion": "v1", "kind": "Pod", "metadata": metadata, "spec": spec})
}

/// One write of a reconcile.
#[derive(Debug, Clone, PartialEq)]
pub enum Action {
    /// Create this pod.
    Create(Value),
    /// Delete the pod of this name, for this reason.
    Delete(String, &'static str),
}

/// What one reconcile of a StatefulSet should do.
#[derive(Debug, Default, Clone, PartialEq)]
pub struct Plan {
    /// Writes, in order.
    pub actions: Vec<Action>,
    /// The set's status as its pods stand now.
    pub status: Value,
    /// When (Unix seconds) a ready pod becomes available, to look again.
    pub requeue_at: Option<i64>,
}

/// Whether a pod is Running, Ready, ready for `min_ready` seconds and not
/// being deleted: what an ordered set waits for before the next step.
fn is_healthy(pod: &Value, min_ready: i64, now: i64) -> bool {
    pod["status"]["phase"] == "Running"
        && !meta::is_deleting(pod)
        && pods::is_available(pod, min_ready, now)
}

fn is_finished(pod: &Value) -> bool {
    matches!(
        pod["status"]["phase"].as_str(),
        Some("Failed" | "Succeeded")
    )
}

/// The plan for `set` and `owned` (the pods it controls) at `now`, in
/// Kubernetes' order:
///
/// 1. Ordinals `start..start+replicas`, lowest first: a missing pod is
///    created (of the current revision below the partition while a
///    rolling update is under way, of the update revision otherwise); a
///    failed or finished one is deleted, to be recreated. `OrderedReady`
///    stops at the first pod it creates or deletes, and at the first that
///    is not Running and Ready (and available), or is being deleted.
/// 2. Pods past the end, highest ordinal first, are deleted: one at a
///    time, each once the one before is gone, with `OrderedReady`; all at
///    once with `Parallel`.
/// 3. `RollingUpdate`: from the highest ordinal down to the partition,
///    the first outdated pod is deleted (and recreated by step 1 at the
///    update revision), one at a time, each after the ones above it are
///    healthy again.
pub fn plan(set: &Value, owned: &[Value], now: i64) -> Plan {
    let min_ready = set["spec"]["minReadySeconds"].as_i64().unwrap_or(0).max(0);
    let (start, count) = (start_ordinal(set), replicas(set));
    let ordered = is_ordered(set);
    let update_rev = update_revision(set);
    let current_rev = current_revision(set);
    let mut plan = Plan {
        status: status(set, owned, &current_rev, &update_rev, now),
        ..Plan::default()
    };
    plan.requeue_at = owned
        .iter()
        .filter_map(|p| pods::available_at(p, min_ready, now))
        .min();
    let at = |ordinal: i64| owned.iter().find(|p| ordinal_of(set, p) == Some(ordinal));
    // The template of the current revision, from a pod that has it.
    let current_template = owned
        .iter()
        .find(|p| revision::revision_of(p) == Some(current_rev.as_str()) && !meta::is_deleting(p))
        .map(template_from_pod);
    let mut blocked = false;
    // Slots created in this plan: not healthy yet.
    let mut fresh: Vec<i64> = Vec::new();
    for ordinal in start..start + count {
        match at(ordinal) {
            None => {
                let keep_current = is_rolling(set)
                    && current_rev != update_rev
                    && ordinal - start < partition(set);
                let pod = match (&current_template, keep_current) {
                    (Some(t), true) => new_pod(set, t, ordinal, &current_rev),
                    _ => new_pod(set, &set["spec"]["template"], ordinal, &update_rev),
                };
                plan.actions.push(Action::Create(pod));
                fresh.push(ordinal);
                if ordered {
                    blocked = true;
                    break;
                }
            }
            Some(pod) if is_finished(pod) && !meta::is_deleting(pod) => {
                plan.actions.push(Action::Delete(
                    name_of(pod).to_string(),
                    "finished, to recreate it",
                ));
                fresh.push(ordinal);
                if ordered {
                    blocked = true;
                    break;
                }
            }
            Some(pod) if ordered && !is_healthy(pod, min_ready, now) => {
                blocked = true;
                break;
            }
            Some(_) => {}
        }
    }
    if blocked {
        return plan;
    }
    let mut condemned: Vec<(i64, &Value)> = owned
        .iter()
        .filter_map(|p| ordinal_of(set, p).map(|o| (o, p)))
        .filter(|(o, _)| *o < start || *o >= start + count)
        .collect();
    condemned.sort_by_key(|(o, _)| std::cmp::Reverse(*o));
    for (_, pod) in condemned {
        if meta::is_deleting(pod) {
            if ordered {
                return plan;
            }
            continue;
        }
        plan.actions
            .push(Action::Delete(name_of(pod).to_string(), "scaling down"));
        if ordered {
            return plan;
        }
    }
    if is_rolling(set) {
        let low = start + partition(set);
        for ordinal in (low..start + count).rev() {
            let Some(pod) = at(ordinal).filter(|_| !fresh.contains(&ordinal)) else {
                return plan;
            };
            if revision::revision_of(pod) != Some(update_rev.as_str()) && !meta::is_deleting(pod) {
                plan.actions
                    .push(Action::Delete(name_of(pod).to_string(), "updating it"));
                return plan;
            }
            if !is_healthy(pod, min_ready, now) {
                return plan;
            }
        }
    }
    plan
}

/// The status `owned` amounts to. Once every pod is of the update
/// revision and ready, that revision becomes the current one: what
/// `kubectl rollout status` waits for.
pub fn status(
    set: &Value,
    owned: &[Value],
    current_rev: &str,
    update_rev: &str,
    now: i64,
) -> Value {
    let min_ready = set["spec"]["minReadySeconds"].as_i64().unwrap_or(0).max(0);
    let live = |p: &&Value| !meta::is_deleting(p);
    let of_rev = |rev: &str| {
        owned
            .iter()
            .filter(live)
            .filter(|p| revision::revision_of(p) == Some(rev))
            .count()
    };
    let replicas = owned.len();
    let ready = owned
        .iter()
        .filter(|p| p["status"]["phase"] == "Running" && pods::is_ready(p))
        .count();
    let available = owned
        .iter()
        .filter(|p| p["status"]["phase"] == "Running" && pods::is_available(p, min_ready, now))
        .count();
    let updated = of_rev(update_rev);
    let (mut current_rev, mut current) = (current_rev.to_string(), of_rev(current_rev));
    if updated == replicas && ready == replicas {
        current_rev = update_rev.to_string();
        current = updated;
    }
    let mut status = json!({
        "observedGeneration": set["metadata"]["generation"].as_i64().unwrap_or(0),
        "replicas": replicas,
        "readyReplicas": ready,
        "currentReplicas": current,
        "updatedReplicas": updated,
        "availableReplicas": available,
        "currentRevision": current_rev,
        "updateRevision": update_rev,
        "collisionCount": set["status"]["collisionCount"].as_i64().unwrap_or(0),
    });
    if let Some(c) = set["status"]["conditions"].as_array() {
        status["conditions"] = json!(c);
    }
    status
}

/// Whether `new` says anything `old` (a stored status) does not: zero
/// counts may be left out of a stored status, so absent equals 0.
pub fn status_changed(old: &Value, new: &Value) -> bool {
    let int = |v: &Value, f: &str| v[f].as_i64().unwrap_or(0);
    let text = |v: &Value, f: &str| v[f].as_str().unwrap_or_default().to_string();
    [
        "observedGeneration",
        "replicas",
        "readyReplicas",
        "currentReplicas",
        "updatedReplicas",
        "availableReplicas",
    ]
    .iter()
    .any(|f| int(old, f) != int(new, f))
        || ["currentRevision", "updateRevision"]
            .iter()
            .any(|f| text(old, f) != text(new, f))
}

#[cfg(test)]
mod tests {
    use super::*;

    const T0: &str = "2026-12-02T04:00:00Z";

    fn set(replicas: i64, policy: &str) -> Value {
        json!({
            "metadata": {"name": "web", "namespace": "ns", "uid": "set-uid", "generation": 3},
            "spec": {
                "replicas": replicas,
                "serviceName": "web-svc",
                "podManagementPolicy": policy,
                "selector": {"matchLabels": {"app": "web"}},
                "template": {
                    "metadata": {"labels": {"app": "web"}},
                    "spec": {"containers": [{"name": "c", "image": "web:1"}]},
                },
                "updateStrategy": {"type": "RollingUpdate", "rollingUpdate": {"partition": 0}},
            },
        })
    }

    fn now() -> i64 {
        meta::parse_time(T0).unwrap() + 60
    }

    /// The pod the set makes at `ordinal`, as it stands in `phase`
    /// (`Running` ones are ready).
    fn pod(set: &Value, ordinal: i64, phase: &str) -> Value {
        let mut p = new_pod(
            set,
            &set["spec"]["template"],
            ordinal,
            &update_revision(set),
        );
        p["metadata"]["creationTimestamp"] = json!(T0);
        p["status"] = json!({"phase": phase});
        if phase == "Running" {
            p["status"]["conditions"] =
                json!([{"type": "Ready", "status": "True", "lastTransitionTime": T0}]);
        }
        p
    }

    fn summary(plan: &Plan) -> Vec<String> {
        plan.actions
            .iter()
            .map(|a| match a {
                Action::Create(p) => format!("create {}", name_of(p)),
                Action::Delete(n, _) => format!("delete {n}"),
            })
            .collect()
    }

    #[test]
    fn pods_have_stable_identities() {
        let s = set(3, "OrderedReady");
        let p = new_pod(&s, &s["spec"]["template"], 2, "web-abc");
        assert_eq!(name_of(&p), "web-2");
        assert_eq!(p["metadata"]["labels"][POD_NAME_LABEL], "web-2");
        assert_eq!(p["metadata"]["labels"][POD_INDEX_LABEL], "2");
        assert_eq!(p["metadata"]["labels"][REVISION_LABEL], "web-abc");
        assert_eq!(p["metadata"]["labels"]["app"], "web");
        assert_eq!(p["spec"]["hostname"], "web-2");
        assert_eq!(p["spec"]["subdomain"], "web-svc");
        assert!(meta::is_controlled_by(&p, "set-uid"));
        assert_eq!(ordinal_of(&s, &p), Some(2));
        for other in ["web", "web-", "web-x", "web-01", "webby-1", "api-1"] {
            assert_eq!(
                ordinal_of(&s, &json!({"metadata": {"name": other}})),
                None,
                "{other}"
            );
        }
        assert!(update_revision(&s).starts_with("web-"));
    }

    #[test]
    fn ordered_ready_creates_one_at_a_time_after_the_previous_is_ready() {
        let s = set(3, "OrderedReady");
        assert_eq!(summary(&plan(&s, &[], now())), ["create web-0"]);
        // web-0 exists but is not ready: nothing happens.
        let pending = [pod(&s, 0, "Pending")];
        assert!(plan(&s, &pending, now()).actions.is_empty());
        let mut running_not_ready = pod(&s, 0, "Running");
        running_not_ready["status"]["conditions"][0]["status"] = json!("False");
        assert!(plan(&s, &[running_not_ready], now()).actions.is_empty());
        let one = [pod(&s, 0, "Running")];
        assert_eq!(summary(&plan(&s, &one, now())), ["create web-1"]);
        // A gap is filled first, lowest ordinal first.
        let gap = [pod(&s, 0, "Running"), pod(&s, 2, "Running")];
        assert_eq!(summary(&plan(&s, &gap, now())), ["create web-1"]);
    }

    #[test]
    fn parallel_creates_and_deletes_all_at_once() {
        let s = set(3, "Parallel");
        assert_eq!(
            summary(&plan(&s, &[pod(&s, 1, "Pending")], now())),
            ["create web-0", "create web-2"]
        );
        let small = set(1, "Parallel");
        let all: Vec<Value> = (0..3).map(|i| pod(&s, i, "Pending")).collect();
        assert_eq!(
            summary(&plan(&small, &all, now())),
            ["delete web-2", "delete web-1"]
        );
    }

    #[test]
    fn ordered_scale_down_removes_the_highest_first_one_at_a_time() {
        let s = set(1, "OrderedReady");
        let all: Vec<Value> = (0..3).map(|i| pod(&s, i, "Running")).collect();
        assert_eq!(summary(&plan(&s, &all, now())), ["delete web-2"]);
        // While web-2 is going, web-1 waits.
        let mut going = all.clone();
        going[2]["metadata"]["deletionTimestamp"] = json!(T0);
        assert!(plan(&s, &going, now()).actions.is_empty());
        assert_eq!(summary(&plan(&s, &all[..2], now())), ["delete web-1"]);
        // An unhealthy pod that stays blocks the scale down.
        let mut sick = all.clone();
        sick[0]["status"] = json!({"phase": "Pending"});
        assert!(plan(&s, &sick, now()).actions.is_empty());
    }

    #[test]
    fn failed_pods_are_recreated() {
        let s = set(2, "OrderedReady");
        let pods = [pod(&s, 0, "Failed"), pod(&s, 1, "Running")];
        assert_eq!(summary(&plan(&s, &pods, now())), ["delete web-0"]);
    }

    /// `s` after a template change, with `status.currentRevision` the old
    /// revision.
    fn changed(s: &Value) -> Value {
        let mut new = s.clone();
        new["status"]["currentRevision"] = json!(update_revision(s));
        new["spec"]["template"]["spec"]["containers"][0]["image"] = json!("web:2");
        new
    }

    #[test]
    fn rolling_update_goes_from_the_highest_ordinal_down_to_the_partition() {
        let old = set(3, "OrderedReady");
        let new = changed(&old);
        let mut pods: Vec<Value> = (0..3).map(|i| pod(&old, i, "Running")).collect();
        assert_eq!(summary(&plan(&new, &pods, now())), ["delete web-2"]);
        // Recreated at the update revision; the next waits until it is ready.
        pods[2] = pod(&new, 2, "Pending");
        assert!(plan(&new, &pods, now()).actions.is_empty());
        pods[2] = pod(&new, 2, "Running");
        assert_eq!(summary(&plan(&new, &pods, now())), ["delete web-1"]);
        let s = plan(&new, &pods, now()).status;
        assert_eq!(s["updatedReplicas"], 1);
        assert_eq!(s["currentReplicas"], 2);
        assert_eq!(s["currentRevision"], update_revision(&old));
        assert_eq!(s["updateRevision"], update_revision(&new));
        // A partition of 2 stops after web-2.
        let mut partitioned = new.clone();
        partitioned["spec"]["updateStrategy"]["rollingUpdate"]["partition"] = json!(2);
        assert!(plan(&partitioned, &pods, now()).actions.is_empty());
        // A pod below the partition that is lost comes back at the old revision.
        let lost = [pods[1].clone(), pods[2].clone()];
        let again = plan(&partitioned, &lost, now());
        let Action::Create(p) = &again.actions[0] else {
            panic!("{again:?}");
        };
        assert_eq!(name_of(p), "web-0");
        assert_eq!(
            p["metadata"]["labels"][REVISION_LABEL],
            update_revision(&old)
        );
        assert_eq!(p["spec"]["containers"][0]["image"], "web:1");
        assert!(p["spec"]["nodeName"].is_null());
        // Every pod updated and ready: the update revision becomes current.
        let done: Vec<Value> = (0..3).map(|i| pod(&new, i, "Running")).collect();
        let s = plan(&new, &done, now()).status;
        assert_eq!(s["currentRevision"], update_revision(&new));
        assert_eq!(s["currentReplicas"], 3);
        assert_eq!(s["readyReplicas"], 3);
        assert_eq!(s["availableReplicas"], 3);
        assert_eq!(s["observedGeneration"], 3);
        assert!(status_changed(&json!({}), &s));
        assert!(!status_changed(&s, &s.clone()));
    }

    #[test]
    fn on_delete_leaves_outdated_pods_and_recreates_at_the_new_revision() {
        let old = set(2, "OrderedReady");
        let mut new = changed(&old);
        new["spec"]["updateStrategy"] = json!({"type": "OnDelete"});
        let pods: Vec<Value> = (0..2).map(|i| pod(&old, i, "Running")).collect();
        assert!(plan(&new, &pods, now()).actions.is_empty());
        let plan = plan(&new, &pods[1..], now());
        let Action::Create(p) = &plan.actions[0] else {
            panic!("{plan:?}");
        };
        assert_eq!(p["spec"]["containers"][0]["image"], "web:2");
    }
}
