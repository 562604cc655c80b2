//! The node lifecycle controller, as Kubernetes' controller-manager runs
//! it: it watches node heartbeats and takes nodes that stop sending them
//! out of service.
//!
//! - A node is alive while its Lease in `kube-node-lease` is renewed (or
//!   its Ready condition's heartbeat posted) within the grace period: 40 s
//!   by default, set with the Plugin's `spec.config`
//!   `{"nodeMonitorGracePeriodSeconds": 4}`. Past it, the node's Ready,
//!   MemoryPressure, DiskPressure and PIDPressure conditions become
//!   `Unknown` (reason `NodeStatusUnknown`, "Kubelet stopped posting node
//!   status."), and a `NodeNotReady` Event says so.
//! - Taints follow the Ready condition: `node.kubernetes.io/unreachable`
//!   while Unknown, `node.kubernetes.io/not-ready` while False (each
//!   NoSchedule and NoExecute), neither while True: they go when the node
//!   posts Ready again (a hollow node does when its `orchd sim nodes`
//!   process starts again).
//! - Pods bound to a node with NoExecute taints are deleted at once when
//!   they do not tolerate them, or once their `tolerationSeconds` have
//!   passed since the taint was added (the API gives every pod 300 s for
//!   these two taints unless it says otherwise); their owners replace them
//!   elsewhere.
//!
//! It reconciles `nodes` and watches Leases, mapped to the Node that owns
//! them (a kubelet's Lease names its Node as owner). Each reconcile asks to
//! be called again at the next deadline (the grace period running out, a
//! pod's eviction), so nothing polls. Capabilities: `read: nodes,
//! leases.coordination.k8s.io, pods`, `write: nodes, pods`.

mod logic;

use std::sync::OnceLock;
use std::time::Duration;

use logic::{Config, Eviction};
use orchd_sdk::controller::{BoxError, Controller, ControllerSpec, ReconcileResult};
use orchd_sdk::objects::{self, Error, ObjectRef};
use orchd_sdk::serde_json::Value;
use orchd_sdk::{events, log, meta};

const NODES: &str = "nodes";
const LEASES: &str = "leases.coordination.k8s.io";
const LEASE_NAMESPACE: &str = "kube-node-lease";

/// The configuration `setup` was given.
static CONFIG: OnceLock<Config> = OnceLock::new();

fn config() -> &'static Config {
    CONFIG.get_or_init(|| Config {
        grace_ms: logic::DEFAULT_GRACE_MS,
    })
}

/// Unix milliseconds now.
fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
        .unwrap_or(0)
}

/// A delay until the Unix millisecond `at`, a little after it so the
/// deadline has surely passed when the reconcile runs.
fn until(at: i64, now: i64) -> Duration {
    Duration::from_millis(u64::try_from(at.saturating_sub(now)).unwrap_or(0) + 20)
}

struct NodeLifecycle;

impl Controller for NodeLifecycle {
    fn setup(config: &str) -> Result<ControllerSpec, BoxError> {
        let parsed = Config::parse(config)?;
        log::info(&format!(
            "node monitor grace period: {} ms",
            parsed.grace_ms
        ));
        // One instance runs one configuration: a config change reloads
        // the plugin.
        let _ = CONFIG.set(parsed);
        Ok(ControllerSpec::new(NODES).watch_owned(LEASES, "Node"))
    }

    fn reconcile(key: ObjectRef) -> Result<ReconcileResult, BoxError> {
        match sync(&key) {
            // The node changed meanwhile (its own status post): that
            // change queues it again.
            Err(e) if e.downcast_ref::<Error>().is_some_and(Error::is_conflict) => {
                Ok(ReconcileResult::requeue_after(Duration::from_millis(100)))
            }
            other => other,
        }
    }
}

fn sync(key: &ObjectRef) -> Result<ReconcileResult, BoxError> {
    let mut node: Value = match objects::get(key) {
        Ok(n) => n,
        Err(Error::NotFound(_)) => return Ok(ReconcileResult::Done),
        Err(e) => return Err(e.into()),
    };
    let lease: Option<Value> = match objects::get(&ObjectRef::namespaced(
        LEASES,
        LEASE_NAMESPACE,
        key.name.as_str(),
    )) {
        Ok(l) => Some(l),
        Err(Error::NotFound(_)) => None,
        Err(e) => return Err(e.into()),
    };
    let now = now_ms();
    let stamp = meta::format_time(now / 1000);
    let deadline = logic::last_heartbeat(&node, lease.as_ref())
        .map(|last| last.saturating_add(config().grace_ms));
    let overdue = deadline.is_none_or(|d| now >= d);

    if overdue && let Some(conditions) = logic::unknown_conditions(&node, &stamp) {
        let was = logic::ready_status(&node).to_string();
        let mut updated = node.clone();
        updated["status"]["conditions"] = conditions;
        node = objects::update_status(NODES, &updated)?;
        log::info(&format!(
            "node {}: no heartbeat within {} ms; Ready {was} -> Unknown",
            key.name,
            config().grace_ms
        ));
        events::normal(
            key,
            "NodeNotReady",
            &format!("Node {} status is now: NodeNotReady", key.name),
        );
    }

    if let Some(taints) = logic::wanted_taints(&node, &stamp) {
        let mut updated = node.clone();
        updated["spec"]["taints"] = Value::Array(taints);
        node = objects::update(NODES, &updated)?;
    }

    let mut next: Option<i64> = None;
    if logic::ready_status(&node) != "Unknown" {
        // Alive (or posting False itself): look again when the grace
        // period would run out; a renewed Lease pushes that back.
        next = deadline;
    }
    let taints: Vec<Value> = node["spec"]["taints"]
        .as_array()
        .cloned()
        .unwrap_or_default();
    if taints.iter().any(|t| t["effect"] == "NoExecute") {
        for pod in objects::list::<Value>("pods", None, "")? {
            if pod["spec"]["nodeName"].as_str() != Some(key.name.as_str())
                || meta::is_deleting(&pod)
            {
                continue;
            }
            match logic::eviction(&pod, &taints, now) {
                Eviction::Never => {}
                Eviction::At(at) if at > now => {
                    next = Some(next.map_or(at, |n| n.min(at)));
                }
                Eviction::At(_) => evict(&pod)?,
            }
        }
    }
    Ok(match next {
        Some(at) => ReconcileResult::requeue_after(until(at, now)),
        None => ReconcileResult::Done,
    })
}

/// Deletes a pod its node's NoExecute taints no longer let stay.
fn evict(pod: &Value) -> Result<(), Error> {
    let Some(key) = ObjectRef::of("pods", pod) else {
        return Ok(());
    };
    events::normal(
        &key,
        "TaintManagerEviction",
        &format!(
            "Marking for deletion Pod {}/{}",
            key.namespace.as_deref().unwrap_or_default(),
            key.name
        ),
    );
    match objects::delete(&key) {
        Ok(()) | Err(Error::NotFound(_)) => Ok(()),
        Err(e) => Err(e),
    }
}

orchd_sdk::export_controller!(NodeLifecycle);
