//! The daemonset controller's policy as pure functions: which nodes should
//! run a daemon pod, the pod made for a node, and the plan (pods to create
//! and delete, and the status) a DaemonSet, its nodes and its pods amount
//! to.

use std::collections::BTreeMap;

use orchd_sdk::meta;
use orchd_sdk::pods;
use orchd_sdk::revision::{self, REVISION_LABEL};
use orchd_sdk::serde_json::{Map, Value, json};

/// The field a node selector requirement names a node by (`matchFields`).
pub const NODE_NAME_FIELD: &str = "metadata.name";

/// The tolerations Kubernetes adds to every daemon pod, so that a node's
/// trouble does not evict it nor keep it from a cordoned node:
/// (key, effect).
pub const DEFAULT_TOLERATIONS: &[(&str, &str)] = &[
    ("node.kubernetes.io/not-ready", "NoExecute"),
    ("node.kubernetes.io/unreachable", "NoExecute"),
    ("node.kubernetes.io/disk-pressure", "NoSchedule"),
    ("node.kubernetes.io/memory-pressure", "NoSchedule"),
    ("node.kubernetes.io/pid-pressure", "NoSchedule"),
    ("node.kubernetes.io/unschedulable", "NoSchedule"),
];

/// Added too when the pod uses the host's network.
pub const HOST_NETWORK_TOLERATION: (&str, &str) =
    ("node.kubernetes.io/network-unavailable", "NoSchedule");

fn str_of<'a>(v: &'a Value, key: &str) -> &'a str {
    v[key].as_str().unwrap_or_default()
}

/// Whether a toleration tolerates a taint (Kubernetes' `ToleratesTaint`):
/// same effect (or none given), same key (or none with `Exists`), and
/// with `Equal` the same value.
pub fn tolerates(toleration: &Value, taint: &Value) -> bool {
    let effect = str_of(toleration, "effect");
    if !effect.is_empty() && effect != str_of(taint, "effect") {
        return false;
    }
    let key = str_of(toleration, "key");
    if !key.is_empty() && key != str_of(taint, "key") {
        return false;
    }
    match toleration["operator"].as_str().unwrap_or("Equal") {
        "Exists" => true,
        // An empty key means "every key" only with Exists.
        "Equal" => {
            key == str_of(taint, "key") && str_of(toleration, "value") == str_of(taint, "value")
        }
        _ => false,
    }
}

/// A daemon pod's tolerations: the template's plus the defaults it lacks.
pub fn daemon_tolerations(pod_spec: &Value) -> Vec<Value> {
    let mut tolerations: Vec<Value> = pod_spec["tolerations"]
        .as_array()
        .cloned()
        .unwrap_or_default();
    let mut defaults = DEFAULT_TOLERATIONS.to_vec();
    if pod_spec["hostNetwork"] == true {
        defaults.push(HOST_NETWORK_TOLERATION);
    }
    for (key, effect) in defaults {
        let present = tolerations.iter().any(|t| {
            str_of(t, "key") == key
                && str_of(t, "effect") == effect
                && t["operator"].as_str() == Some("Exists")
        });
        if !present {
            tolerations.push(json!({"key": key, "operator": "Exists", "effect": effect}));
        }
    }
    tolerations
}

/// Whether one node selector requirement holds for `value` (`None`: the
/// label is absent).
fn requirement_holds(req: &Value, value: Option<&str>) -> bool {
    let values: Vec<&str> = req["values"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(Value::as_str)
        .collect();
    match str_of(req, "operator") {
        "In" => value.is_some_and(|v| values.contains(&v)),
        "NotIn" => value.is_none_or(|v| !values.contains(&v)),
        "Exists" => value.is_some(),
        "DoesNotExist" => value.is_none(),
        op @ ("Gt" | "Lt") => {
            // One integer bound; a label that is no integer never matches.
            let (Some(v), [bound]) = (value.and_then(|v| v.parse::<i64>().ok()), values.as_slice())
            else {
                return false;
            };
            match bound.parse::<i64>() {
                Ok(b) if op == "Gt" => v > b,
                Ok(b) => v < b,
                Err(_) => false,
            }
        }
        _ => false,
    }
}

/// Whether a node selector term matches `node`: every expression on its
/// labels and every field (`metadata.name`) holds; an empty term matches
/// nothing, as in Kubernetes.
fn term_matches(term: &Value, node: &Value) -> bool {
    let exprs = term["matchExpressions"]
        .as_array()
        .map(Vec::as_slice)
        .unwrap_or_default();
    let fields = term["matchFields"]
        .as_array()
        .map(Vec::as_slice)
        .unwrap_or_default();
    if exprs.is_empty() && fields.is_empty() {
        return false;
    }
    let labels = &node["metadata"]["labels"];
    exprs
        .iter()
        .all(|r| requirement_holds(r, labels[str_of(r, "key")].as_str()))
        && fields.iter().all(|r| {
            let value = (str_of(r, "key") == NODE_NAME_FIELD)
                .then(|| node["metadata"]["name"].as_str())
                .flatten();
            requirement_holds(r, value)
        })
}

/// Whether the template's `nodeSelector` and required node affinity (any
/// term) let a daemon pod onto `node`.
pub fn node_matches(pod_spec: &Value, node: &Value) -> bool {
    let labels = &node["metadata"]["labels"];
    let selector_ok = pod_spec["nodeSelector"]
        .as_object()
        .into_iter()
        .flatten()
        .all(|(k, v)| labels[k.as_str()] == *v);
    let terms = &pod_spec["affinity"]["nodeAffinity"]["requiredDuringSchedulingIgnoredDuringExecution"]
        ["nodeSelectorTerms"];
    selector_ok
        && match terms.as_array() {
            Some(terms) => terms.iter().any(|t| term_matches(t, node)),
            None => true,
        }
}

/// Where a node stands for a DaemonSet.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Eligibility {
    /// A new daemon pod belongs there: it matches and tolerates every
    /// `NoSchedule` and `NoExecute` taint.
    pub should_run: bool,
    /// A daemon pod already there may stay: it matches and tolerates
    /// every `NoExecute` taint (a `NoSchedule` taint added later evicts
    /// nothing).
    pub should_continue: bool,
}

/// Whether `ds`'s daemon pods belong on `node` (Kubernetes'
/// `NodeShouldRunDaemonPod`), with the default daemon tolerations.
pub fn eligibility(ds: &Value, node: &Value) -> Eligibility {
    let spec = &ds["spec"]["template"]["spec"];
    if !node_matches(spec, node) {
        return Eligibility {
            should_run: false,
            should_continue: false,
        };
    }
    let tolerations = daemon_tolerations(spec);
    let untolerated = |effect: &str| {
        node["spec"]["taints"]
            .as_array()
            .into_iter()
            .flatten()
            .filter(|t| str_of(t, "effect") == effect)
            .any(|t| !tolerations.iter().any(|tol| tolerates(tol, t)))
    };
    let continues = !untolerated("NoExecute");
    Eligibility {
        should_run: continues && !untolerated("NoSchedule"),
        should_continue: continues,
    }
}

/// The node a daemon pod is for: where it is bound, or, while it waits
/// for the scheduler, the node its required affinity names.
pub fn target_node(pod: &Value) -> Option<&str> {
    if let Some(n) = pod["spec"]["nodeName"].as_str().filter(|n| !n.is_empty()) {
        return Some(n);
    }
    pod["spec"]["affinity"]["nodeAffinity"]["requiredDuringSchedulingIgnoredDuringExecution"]
        ["nodeSelectorTerms"]
        .as_array()?
        .iter()
        .flat_map(|t| t["matchFields"].as_array().into_iter().flatten())
        .find(|r| str_of(r, "key") == NODE_NAME_FIELD && str_of(r, "operator") == "In")
        .and_then(|r| match r["values"].as_array().map(Vec::as_slice) {
            Some([only]) => only.as_str(),
            _ => None,
        })
}

/// A new daemon pod of `ds` for `node`, from its template (revision
/// `hash`), named `<ds>-<5 random characters>` by the API. As Kubernetes
/// does, its required node affinity becomes "the node named `node`" and
/// the default scheduler binds it; the template's own affinity was
/// already checked against the node.
pub fn daemon_pod(ds: &Value, node: &str, hash: &str) -> Value {
    let template = &ds["spec"]["template"];
    let name = ds["metadata"]["name"].as_str().unwrap_or_default();
    let mut metadata = Map::new();
    metadata.insert("generateName".into(), json!(format!("{name}-")));
    metadata.insert("namespace".into(), ds["metadata"]["namespace"].clone());
    let mut labels = template["metadata"]["labels"]
        .as_object()
        .cloned()
        .unwrap_or_default();
    labels.insert(REVISION_LABEL.into(), json!(hash));
    metadata.insert("labels".into(), Value::Object(labels));
    for field in ["annotations", "finalizers"] {
        let v = &template["metadata"][field];
        if !v.is_null() {
            metadata.insert(field.into(), v.clone());
        }
    }
    metadata.insert(
        "ownerReferences".into(),
        json!([meta::controller_reference(ds, "apps/v1", "DaemonSet")]),
    );
    let mut spec = template["spec"].clone();
    spec["tolerations"] = json!(daemon_tolerations(&template["spec"]));
    let mut affinity = spec["affinity"].as_object().cloned().unwrap_or_default();
    let mut node_affinity = affinity
        .get("nodeAffinity")
        .and_then(Value::as_object)
        .cloned()
        .unwrap_or_default();
    node_affinity.insert(
        "requiredDuringSchedulingIgnoredDuringExecution".into(),
        json!({"nodeSelectorTerms": [{"matchFields": [
            {"key": NODE_NAME_FIELD, "operator": "In", "values": [node]}
        ]}]}),
    );
    affinity.insert("nodeAffinity".into(), Value::Object(node_affinity));
    spec["affinity"] = Value::Object(affinity);
    json!({"apiVersion": "v1", "kind": "Pod", "metadata": metadata, "spec": spec})
}

/// The current revision of `ds`'s template.
pub fn current_hash(ds: &Value) -> String {
    revision::template_hash(&ds["spec"]["template"])
}

/// `spec.minReadySeconds`.
pub fn min_ready_seconds(ds: &Value) -> i64 {
    ds["spec"]["minReadySeconds"].as_i64().unwrap_or(0).max(0)
}

/// Whether the DaemonSet replaces outdated pods itself (`RollingUpdate`,
/// the default) rather than waiting for them to be deleted (`OnDelete`).
pub fn is_rolling(ds: &Value) -> bool {
    ds["spec"]["updateStrategy"]["type"]
        .as_str()
        .unwrap_or("RollingUpdate")
        == "RollingUpdate"
}

/// `rollingUpdate.maxUnavailable` (a count or a percentage of `desired`,
/// rounded up; default 1) as a count of at least 1: without surge, the
/// only way forward is to take a pod down.
pub fn max_unavailable(ds: &Value, desired: usize) -> Result<usize, String> {
    let v = &ds["spec"]["updateStrategy"]["rollingUpdate"]["maxUnavailable"];
    let n = match v {
        Value::Null => 1,
        Value::Number(n) => usize::try_from(n.as_i64().unwrap_or(-1))
            .map_err(|_| format!("maxUnavailable {n} is not a count"))?,
        Value::String(s) => {
            let pct: usize = s
                .strip_suffix('%')
                .and_then(|p| p.trim().parse().ok())
                .ok_or_else(|| {
                    format!("maxUnavailable {s:?} is neither a count nor a percentage")
                })?;
            (desired * pct).div_ceil(100)
        }
        other => {
            return Err(format!(
                "maxUnavailable {other} is neither a count nor a percentage"
            ));
        }
    };
    Ok(n.max(1))
}

fn name(pod: &Value) -> String {
    pod["metadata"]["name"]
        .as_str()
        .unwrap_or_default()
        .to_string()
}

fn created(pod: &Value) -> i64 {
    pod["metadata"]["creationTimestamp"]
        .as_str()
        .and_then(meta::parse_time)
        .unwrap_or(0)
}

/// First wait (seconds) before a failed daemon pod is replaced on a node;
/// it doubles with each failure in a row up to [`FAILED_BACKOFF_MAX`], as
/// Kubernetes' failed-pods backoff does, so a pod the node keeps failing
/// is not recreated in a hot loop.
pub const FAILED_BACKOFF_START: i64 = 1;
/// Longest wait (seconds) before a failed daemon pod is replaced.
pub const FAILED_BACKOFF_MAX: i64 = 900;

/// Failed daemon pods on one node, for one DaemonSet.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Backoff {
    /// Failures in a row.
    pub failures: u32,
    /// No new pod goes there before this (Unix seconds).
    pub until: i64,
}

impl Backoff {
    /// The backoff after one more failure at `now`. A failure long after
    /// the last wait ended (twice the longest wait) starts over.
    pub fn after_failure(self, now: i64) -> Backoff {
        let failures = if now > self.until.saturating_add(2 * FAILED_BACKOFF_MAX) {
            1
        } else {
            self.failures.saturating_add(1)
        };
        let delay = FAILED_BACKOFF_START
            .saturating_mul(1i64 << failures.saturating_sub(1).min(20))
            .min(FAILED_BACKOFF_MAX);
        Backoff {
            failures,
            until: now.saturating_add(delay),
        }
    }

    /// Whether it no longer matters at `now`: a failure then starts over.
    pub fn expired(&self, now: i64) -> bool {
        now > self.until.saturating_add(2 * FAILED_BACKOFF_MAX)
    }
}

/// What one reconcile of a DaemonSet should do.
#[derive(Debug, Default, Clone, PartialEq)]
pub struct Plan {
    /// Nodes to create a daemon pod for.
    pub create_on: Vec<String>,
    /// Pods to delete, by name, with why (for the Event).
    pub delete: Vec<(String, &'static str)>,
    /// The DaemonSet's status as the pods stand now.
    pub status: Value,
    /// When (Unix seconds) a ready pod becomes available or a node's
    /// backoff ends, to look again.
    pub requeue_at: Option<i64>,
    /// Nodes whose failed pod this plan deletes: their backoff grows, and
    /// their new pod waits for it.
    pub failed_on: Vec<String>,
}

/// The plan for `ds` over `nodes` and `owned` (the pods it controls) at
/// `now`.
///
/// - A node that should run a daemon pod and has none gets one; one with
///   several keeps the oldest. A failed pod is deleted and replaced once
///   the node's `backoff` is over; while it lasts the failed pod stays.
/// - Pods on nodes that may not keep them, on nodes that are gone, or
///   that name no node are deleted (misscheduled).
/// - RollingUpdate: outdated pods that are not available are deleted at
///   once; available ones only while fewer than `maxUnavailable` daemon
///   pods are unavailable, counting those deleted. Each deleted pod is
///   replaced by one of the current template in a later reconcile.
pub fn plan(
    ds: &Value,
    nodes: &[Value],
    owned: &[Value],
    backoff: &BTreeMap<String, Backoff>,
    now: i64,
) -> Result<Plan, String> {
    let hash = current_hash(ds);
    let min_ready = min_ready_seconds(ds);
    let mut plan = Plan::default();
    let mut by_node: BTreeMap<&str, Vec<&Value>> = BTreeMap::new();
    for pod in owned {
        match target_node(pod) {
            Some(n) => by_node.entry(n).or_default().push(pod),
            None if !meta::is_deleting(pod) => plan.delete.push((name(pod), "names no node")),
            None => {}
        }
    }
    let mut known: Vec<&str> = Vec::new();
    let (mut desired, mut current, mut misscheduled) = (0usize, 0usize, 0usize);
    let (mut ready, mut available, mut updated) = (0usize, 0usize, 0usize);
    let mut unavailable = 0usize;
    // Outdated pods that are available: deleting one costs availability.
    let mut outdated_available: Vec<String> = Vec::new();
    for node in nodes {
        let Some(node_name) = node["metadata"]["name"].as_str() else {
            continue;
        };
        known.push(node_name);
        let on_node: Vec<&Value> = by_node.get(node_name).cloned().unwrap_or_default();
        let e = eligibility(ds, node);
        if e.should_run {
            desired += 1;
        }
        if !on_node.is_empty() {
            if e.should_run {
                current += 1;
            } else {
                misscheduled += 1;
            }
        }
        if !e.should_continue {
            for p in on_node.iter().filter(|p| !meta::is_deleting(p)) {
                plan.delete.push((name(p), "misscheduled"));
            }
            continue;
        }
        // Pods that still count: not being deleted, not failed.
        let held_until = backoff
            .get(node_name)
            .map(|b| b.until)
            .filter(|until| *until > now);
        let mut failed_here = false;
        let mut running: Vec<&Value> = Vec::new();
        for p in &on_node {
            if meta::is_deleting(p) {
                continue;
            }
            if p["status"]["phase"] == "Failed" {
                // While the node backs off, the failed pod stays (and
                // shows why); after, it goes and is replaced.
                if held_until.is_none() {
                    plan.delete.push((name(p), "failed"));
                    failed_here = true;
                }
            } else {
                running.push(p);
            }
        }
        running.sort_by_key(|p| (created(p), name(p)));
        for extra in running.iter().skip(1) {
            plan.delete.push((name(extra), "a duplicate"));
        }
        // Status counts the oldest pod of each node, as Kubernetes does.
        let mut oldest: Vec<&&Value> = on_node.iter().collect();
        oldest.sort_by_key(|p| (created(p), name(p)));
        if e.should_run
            && let Some(first) = oldest.first()
        {
            if pods::is_ready(first) {
                ready += 1;
            }
            if pods::is_available(first, min_ready, now) {
                available += 1;
            } else if let Some(at) = pods::available_at(first, min_ready, now) {
                plan.requeue_at = Some(plan.requeue_at.map_or(at, |t| t.min(at)));
            }
            if revision::revision_of(first) == Some(hash.as_str()) {
                updated += 1;
            }
        }
        match running.first() {
            None if e.should_run => {
                unavailable += 1;
                if let Some(until) = held_until {
                    plan.requeue_at = Some(plan.requeue_at.map_or(until, |t| t.min(until)));
                } else if failed_here {
                    plan.failed_on.push(node_name.to_string());
                } else {
                    plan.create_on.push(node_name.to_string());
                }
            }
            None => {}
            Some(pod) => {
                let is_available = pods::is_available(pod, min_ready, now);
                if !is_available {
                    unavailable += 1;
                }
                if is_rolling(ds) && revision::revision_of(pod) != Some(hash.as_str()) {
                    if is_available {
                        outdated_available.push(name(pod));
                    } else {
                        plan.delete.push((name(pod), "outdated"));
                    }
                }
            }
        }
    }
    for (node_name, on_node) in &by_node {
        if !known.contains(node_name) {
            for p in on_node.iter().filter(|p| !meta::is_deleting(p)) {
                plan.delete.push((name(p), "on a node that is gone"));
            }
        }
    }
    if is_rolling(ds) {
        let budget = max_unavailable(ds, desired)?.saturating_sub(unavailable);
        for pod in outdated_available.into_iter().take(budget) {
            plan.delete.push((pod, "outdated"));
        }
    }
    let mut status = json!({
        "currentNumberScheduled": current,
        "numberMisscheduled": misscheduled,
        "desiredNumberScheduled": desired,
        "numberReady": ready,
        "observedGeneration": ds["metadata"]["generation"].as_i64().unwrap_or(0),
        "updatedNumberScheduled": updated,
        "numberAvailable": available,
    });
    if desired > available {
        status["numberUnavailable"] = json!(desired - available);
    }
    // Conditions are not ours to compute here: keep what is there.
    if let Some(c) = ds["status"]["conditions"].as_array() {
        status["conditions"] = json!(c);
    }
    plan.status = status;
    Ok(plan)
}

/// Whether `new` says anything `old` (a stored status) does not: zero
/// counts may be left out of a stored status, so absent equals 0.
pub fn status_changed(old: &Value, new: &Value) -> bool {
    let int = |v: &Value, f: &str| v[f].as_i64().unwrap_or(0);
    [
        "currentNumberScheduled",
        "numberMisscheduled",
        "desiredNumberScheduled",
        "numberReady",
        "observedGeneration",
        "updatedNumberScheduled",
        "numberAvailable",
        "numberUnavailable",
    ]
    .iter()
    .any(|f| int(old, f) != int(new, f))
}

#[cfg(test)]
mod tests {
    use super::*;

    const T0: &str = "2026-12-02T04:00:00Z";

    fn ds() -> Value {
        json!({
            "metadata": {"name": "agent", "namespace": "ns", "uid": "ds-uid", "generation": 2},
            "spec": {
                "selector": {"matchLabels": {"app": "agent"}},
                "template": {
                    "metadata": {"labels": {"app": "agent"}},
                    "spec": {
                        "nodeSelector": {"role": "worker"},
                        "containers": [{"name": "c", "image": "agent:1"}],
                    },
                },
                "updateStrategy": {"type": "RollingUpdate", "rollingUpdate": {"maxUnavailable": 1}},
            },
        })
    }

    fn node(name: &str, labels: Value, taints: Value) -> Value {
        json!({"metadata": {"name": name, "labels": labels}, "spec": {"taints": taints}})
    }

    fn worker(name: &str) -> Value {
        node(name, json!({"role": "worker"}), json!([]))
    }

    /// A running, ready daemon pod of `ds` on `node`, of revision `hash`.
    fn pod(ds: &Value, name: &str, node: &str, hash: &str) -> Value {
        let mut p = daemon_pod(ds, node, hash);
        p["metadata"]["name"] = json!(name);
        p["metadata"]["creationTimestamp"] = json!(T0);
        p["spec"]["nodeName"] = json!(node);
        p["status"] = json!({"phase": "Running",
            "conditions": [{"type": "Ready", "status": "True", "lastTransitionTime": T0}]});
        p
    }

    fn now() -> i64 {
        meta::parse_time(T0).unwrap() + 60
    }

    fn no_backoff() -> BTreeMap<String, Backoff> {
        BTreeMap::new()
    }

    fn deleted(plan: &Plan) -> Vec<&str> {
        let mut d: Vec<&str> = plan.delete.iter().map(|(n, _)| n.as_str()).collect();
        d.sort();
        d
    }

    #[test]
    fn labels_affinity_and_taints_decide_eligibility() {
        let d = ds();
        assert!(eligibility(&d, &worker("a")).should_run);
        let other = node("b", json!({"role": "db"}), json!([]));
        assert_eq!(
            eligibility(&d, &other),
            Eligibility {
                should_run: false,
                should_continue: false
            }
        );
        let gpu = node(
            "c",
            json!({"role": "worker"}),
            json!([{"key": "gpu", "value": "x", "effect": "NoSchedule"}]),
        );
        assert_eq!(
            eligibility(&d, &gpu),
            Eligibility {
                should_run: false,
                should_continue: true
            }
        );
        let evict = node(
            "d",
            json!({"role": "worker"}),
            json!([{"key": "gpu", "effect": "NoExecute"}]),
        );
        assert!(!eligibility(&d, &evict).should_continue);
        // The default tolerations cover a cordoned or not-ready node.
        let cordoned = node(
            "e",
            json!({"role": "worker"}),
            json!([
                {"key": "node.kubernetes.io/unschedulable", "effect": "NoSchedule"},
                {"key": "node.kubernetes.io/not-ready", "effect": "NoExecute"},
            ]),
        );
        assert!(eligibility(&d, &cordoned).should_run);
        // A template toleration lets it onto the tainted node.
        let mut tolerant = ds();
        tolerant["spec"]["template"]["spec"]["tolerations"] =
            json!([{"key": "gpu", "operator": "Equal", "value": "x", "effect": "NoSchedule"}]);
        assert!(eligibility(&tolerant, &gpu).should_run);
        // Required node affinity: any term, labels and the node's name.
        let mut affine = ds();
        affine["spec"]["template"]["spec"]["affinity"] = json!({"nodeAffinity": {
        "requiredDuringSchedulingIgnoredDuringExecution": {"nodeSelectorTerms": [
            {"matchExpressions": [{"key": "zone", "operator": "In", "values": ["z1"]}]},
            {"matchFields": [{"key": "metadata.name", "operator": "In", "values": ["f"]}]},
        ]}}});
        assert!(!eligibility(&affine, &worker("a")).should_run);
        assert!(
            eligibility(
                &affine,
                &node("z", json!({"role": "worker", "zone": "z1"}), json!([]))
            )
            .should_run
        );
        assert!(eligibility(&affine, &worker("f")).should_run);
    }

    #[test]
    fn tolerations_match_as_kubernetes_has_it() {
        let taint = json!({"key": "k", "value": "v", "effect": "NoSchedule"});
        assert!(tolerates(&json!({"operator": "Exists"}), &taint));
        assert!(tolerates(
            &json!({"key": "k", "operator": "Exists"}),
            &taint
        ));
        assert!(tolerates(&json!({"key": "k", "value": "v"}), &taint));
        assert!(!tolerates(&json!({"key": "k", "value": "w"}), &taint));
        assert!(!tolerates(
            &json!({"key": "k", "operator": "Exists", "effect": "NoExecute"}),
            &taint
        ));
        assert!(!tolerates(&json!({"value": "v"}), &taint));
    }

    #[test]
    fn daemon_pods_are_pinned_to_their_node_and_tolerate_node_trouble() {
        let mut d = ds();
        d["spec"]["template"]["spec"]["affinity"] = json!({"nodeAffinity": {
            "requiredDuringSchedulingIgnoredDuringExecution": {"nodeSelectorTerms": [
                {"matchExpressions": [{"key": "zone", "operator": "In", "values": ["z1"]}]}]},
            "preferredDuringSchedulingIgnoredDuringExecution": [{"weight": 1, "preference": {}}]}});
        let p = daemon_pod(&d, "n1", "h1");
        assert_eq!(p["metadata"]["generateName"], "agent-");
        assert_eq!(p["metadata"]["labels"][REVISION_LABEL], "h1");
        assert_eq!(p["metadata"]["labels"]["app"], "agent");
        assert!(meta::is_controlled_by(&p, "ds-uid"));
        assert!(p["spec"]["nodeName"].is_null());
        assert_eq!(target_node(&p), Some("n1"));
        let na = &p["spec"]["affinity"]["nodeAffinity"];
        assert_eq!(
            na["requiredDuringSchedulingIgnoredDuringExecution"]["nodeSelectorTerms"]
                .as_array()
                .unwrap()
                .len(),
            1
        );
        assert!(na["preferredDuringSchedulingIgnoredDuringExecution"].is_array());
        let keys: Vec<&str> = p["spec"]["tolerations"]
            .as_array()
            .unwrap()
            .iter()
            .map(|t| str_of(t, "key"))
            .collect();
        assert!(keys.contains(&"node.kubernetes.io/not-ready"));
        assert!(keys.contains(&"node.kubernetes.io/unreachable"));
        assert!(keys.contains(&"node.kubernetes.io/unschedulable"));
        assert!(!keys.contains(&"node.kubernetes.io/network-unavailable"));
        // Not added twice.
        assert_eq!(daemon_tolerations(&p["spec"]).len(), keys.len());
    }

    #[test]
    fn every_eligible_node_gets_one_pod_and_others_none() {
        let d = ds();
        let h = current_hash(&d);
        let nodes = vec![worker("a"), worker("b"), node("c", json!({}), json!([]))];
        let owned = vec![
            pod(&d, "p-a", "a", &h),
            pod(&d, "p-c", "c", &h),
            pod(&d, "p-gone", "x", &h),
        ];
        let plan = plan(&d, &nodes, &owned, &no_backoff(), now()).unwrap();
        assert_eq!(plan.create_on, ["b"]);
        assert_eq!(deleted(&plan), ["p-c", "p-gone"]);
        let s = &plan.status;
        assert_eq!(s["desiredNumberScheduled"], 2);
        assert_eq!(s["currentNumberScheduled"], 1);
        assert_eq!(s["numberMisscheduled"], 1);
        assert_eq!(s["numberReady"], 1);
        assert_eq!(s["numberAvailable"], 1);
        assert_eq!(s["updatedNumberScheduled"], 1);
        assert_eq!(s["numberUnavailable"], 1);
        assert_eq!(s["observedGeneration"], 2);
    }

    #[test]
    fn duplicates_and_failed_pods_go() {
        let d = ds();
        let h = current_hash(&d);
        let mut newer = pod(&d, "p-2", "a", &h);
        newer["metadata"]["creationTimestamp"] = json!("2026-12-02T04:00:30Z");
        let mut failed = pod(&d, "p-b", "b", &h);
        failed["status"] = json!({"phase": "Failed"});
        let plan = plan(
            &d,
            &[worker("a"), worker("b")],
            &[newer, pod(&d, "p-1", "a", &h), failed],
            &no_backoff(),
            now(),
        )
        .unwrap();
        assert_eq!(deleted(&plan), ["p-2", "p-b"]);
        // The failed pod's node waits for its backoff before a new one.
        assert!(plan.create_on.is_empty());
        assert_eq!(plan.failed_on, ["b"]);
    }

    #[test]
    fn failed_pods_are_replaced_after_a_growing_backoff() {
        let d = ds();
        let h = current_hash(&d);
        let t = now();
        let first = Backoff::default().after_failure(t);
        assert_eq!(
            first,
            Backoff {
                failures: 1,
                until: t + 1
            }
        );
        let third = first.after_failure(t + 1).after_failure(t + 3);
        assert_eq!(
            third,
            Backoff {
                failures: 3,
                until: t + 7
            }
        );
        let mut b = third;
        for _ in 0..20 {
            b = b.after_failure(b.until);
        }
        assert_eq!(b.after_failure(b.until).until - b.until, FAILED_BACKOFF_MAX);
        // Long after, a failure starts over.
        assert_eq!(third.after_failure(t + 10_000).failures, 1);
        assert!(third.expired(t + 10_000) && !third.expired(t + 7));

        let mut failed = pod(&d, "p-b", "b", &h);
        failed["status"] = json!({"phase": "Failed"});
        let nodes = [worker("b")];
        let held: BTreeMap<String, Backoff> = [("b".to_string(), third)].into();
        // Backing off: the failed pod stays, nothing is created, and the
        // DaemonSet looks again when the wait is over.
        let waiting = plan(&d, &nodes, std::slice::from_ref(&failed), &held, t + 5).unwrap();
        assert!(waiting.delete.is_empty() && waiting.create_on.is_empty());
        assert_eq!(waiting.requeue_at, Some(t + 7));
        // Over: it goes, and the node backs off again.
        let over = plan(&d, &nodes, std::slice::from_ref(&failed), &held, t + 7).unwrap();
        assert_eq!(deleted(&over), ["p-b"]);
        assert_eq!(over.failed_on, ["b"]);
        // Gone, and the wait over: a new pod.
        assert_eq!(
            plan(&d, &nodes, &[], &held, t + 8).unwrap().create_on,
            ["b"]
        );
        assert!(
            plan(&d, &nodes, &[], &held, t + 6)
                .unwrap()
                .create_on
                .is_empty()
        );
    }

    #[test]
    fn rolling_update_keeps_within_max_unavailable() {
        let d = ds();
        let h = current_hash(&d);
        let nodes: Vec<Value> = ["a", "b", "c", "d"].into_iter().map(worker).collect();
        let old: Vec<Value> = ["a", "b", "c", "d"]
            .iter()
            .map(|n| pod(&d, &format!("p-{n}"), n, "old"))
            .collect();
        let first = plan(&d, &nodes, &old, &no_backoff(), now()).unwrap();
        assert_eq!(first.delete.len(), 1, "{first:?}");
        assert!(first.create_on.is_empty());
        assert_eq!(first.status["updatedNumberScheduled"], 0);
        // One node has its new pod, not ready yet: nothing more goes.
        let mut rolling = old[1..].to_vec();
        let mut fresh = pod(&d, "n-a", "a", &h);
        fresh["status"] = json!({"phase": "Pending"});
        rolling.push(fresh.clone());
        let waiting = plan(&d, &nodes, &rolling, &no_backoff(), now()).unwrap();
        assert!(waiting.delete.is_empty() && waiting.create_on.is_empty());
        assert_eq!(waiting.status["updatedNumberScheduled"], 1);
        assert_eq!(waiting.status["numberAvailable"], 3);
        // Once it is ready the next one goes; 50% of 4 allows two.
        rolling.pop();
        rolling.push(pod(&d, "n-a", "a", &h));
        assert_eq!(
            plan(&d, &nodes, &rolling, &no_backoff(), now())
                .unwrap()
                .delete
                .len(),
            1
        );
        let mut half = ds();
        half["spec"]["updateStrategy"]["rollingUpdate"]["maxUnavailable"] = json!("50%");
        let h2 = current_hash(&half);
        assert_eq!(h2, h, "the strategy is not part of the template");
        assert_eq!(
            plan(&half, &nodes, &rolling, &no_backoff(), now())
                .unwrap()
                .delete
                .len(),
            2
        );
        // An outdated pod that is not ready goes at once, whatever the budget.
        let mut broken = old.clone();
        broken[0]["status"] = json!({"phase": "Running"});
        broken[1]["status"] = json!({"phase": "Pending"});
        assert_eq!(
            deleted(&plan(&d, &nodes, &broken, &no_backoff(), now()).unwrap()),
            ["p-a", "p-b"]
        );
        // OnDelete leaves outdated pods alone.
        let mut on_delete = ds();
        on_delete["spec"]["updateStrategy"] = json!({"type": "OnDelete"});
        assert!(
            plan(&on_delete, &nodes, &old, &no_backoff(), now())
                .unwrap()
                .delete
                .is_empty()
        );
    }

    #[test]
    fn max_unavailable_counts_and_percentages() {
        let mut d = ds();
        assert_eq!(max_unavailable(&d, 10), Ok(1));
        d["spec"]["updateStrategy"]["rollingUpdate"]["maxUnavailable"] = json!("25%");
        assert_eq!(max_unavailable(&d, 10), Ok(3));
        d["spec"]["updateStrategy"]["rollingUpdate"]["maxUnavailable"] = json!(0);
        assert_eq!(max_unavailable(&d, 10), Ok(1));
        d["spec"]["updateStrategy"]["rollingUpdate"]["maxUnavailable"] = json!("x");
        assert!(max_unavailable(&d, 10).is_err());
    }

    #[test]
    fn min_ready_seconds_delays_availability() {
        let mut d = ds();
        d["spec"]["minReadySeconds"] = json!(100);
        let h = current_hash(&d);
        let plan = plan(
            &d,
            &[worker("a")],
            &[pod(&d, "p", "a", &h)],
            &no_backoff(),
            now(),
        )
        .unwrap();
        assert_eq!(plan.status["numberReady"], 1);
        assert_eq!(plan.status["numberAvailable"], 0);
        assert_eq!(plan.requeue_at, Some(meta::parse_time(T0).unwrap() + 100));
        assert!(status_changed(&json!({}), &plan.status));
        assert!(!status_changed(&plan.status, &plan.status.clone()));
    }
}
