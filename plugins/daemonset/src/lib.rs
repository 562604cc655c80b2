//! The daemonset controller, as Kubernetes' controller-manager runs it:
//! each DaemonSet runs one pod, made from its template, on every eligible
//! node.
//!
//! - Eligible: the node's labels satisfy the template's `nodeSelector`
//!   and required node affinity, and its `NoSchedule`/`NoExecute` taints
//!   are tolerated by the template's tolerations plus the ones Kubernetes
//!   gives every daemon pod (`not-ready` and `unreachable` NoExecute;
//!   `disk-pressure`, `memory-pressure`, `pid-pressure`, `unschedulable`
//!   NoSchedule; `network-unavailable` with host networking). A node
//!   that gains an untolerated `NoExecute` taint or stops matching loses
//!   its pod; a new `NoSchedule` taint keeps the pod there.
//! - Placement as Kubernetes does it: each pod's required node affinity is
//!   replaced by `matchFields metadata.name In [node]` (the template's own
//!   was already checked), and the default scheduler binds it.
//! - Duplicates on one node (the oldest stays) and pods on nodes that are
//!   gone are deleted; missing ones are created. A failed pod is deleted
//!   and replaced after a per-node backoff (1 s, doubling to 15 min, kept
//!   in the instance's memory) so a node that keeps failing it does not
//!   make a hot loop.
//! - Updates: pods carry the template's revision hash in the
//!   `controller-revision-hash` label (no ControllerRevision objects are
//!   kept: the hash is enough to tell current pods from outdated ones).
//!   `RollingUpdate` (the default) replaces outdated pods while at most
//!   `maxUnavailable` (default 1; a count or a percentage) daemon pods are
//!   unavailable; `maxSurge` is not supported (treated as 0). `OnDelete`
//!   replaces a pod only once someone deleted it.
//! - Status: desiredNumberScheduled, currentNumberScheduled,
//!   numberMisscheduled, numberReady, numberAvailable (ready for
//!   `minReadySeconds`), numberUnavailable, updatedNumberScheduled,
//!   observedGeneration: what `kubectl rollout status` reads.
//!
//! - Orphan pods its selector matches are adopted (Kubernetes does the
//!   same); pods it controls that stop matching are not released.
//!
//! It reconciles `daemonsets.apps`, watches pods (mapped to their
//! controlling DaemonSet, and orphans to every DaemonSet selecting them)
//! and nodes (mapped to every DaemonSet,
//! `map-to: all`). Capabilities: `read: daemonsets.apps, pods, nodes`,
//! `write: daemonsets.apps, pods`.

mod logic;

use std::cell::RefCell;
use std::collections::{BTreeMap, HashMap};
use std::time::{Duration, Instant};

use logic::Backoff;

use orchd_sdk::controller::{BoxError, Controller, ControllerSpec, ReconcileResult};
use orchd_sdk::objects::{self, Error, ObjectRef};
use orchd_sdk::serde_json::Value;
use orchd_sdk::{events, meta};

/// The resource this controller reconciles.
const DAEMONSETS: &str = "daemonsets.apps";

/// How long one reconcile may spend writing before it leaves the rest to
/// the next call: well inside the default 1 s call deadline.
const WRITE_BUDGET: Duration = Duration::from_millis(400);

struct DaemonSets;

thread_local! {
    /// Per DaemonSet (uid), per node: the backoff of its failed pods.
    /// Kept in the instance, as Kubernetes keeps it in the controller's
    /// memory: a restarted instance starts over.
    static BACKOFF: RefCell<HashMap<String, BTreeMap<String, Backoff>>> = RefCell::default();
}

impl Controller for DaemonSets {
    fn setup(_config: &str) -> Result<ControllerSpec, BoxError> {
        Ok(ControllerSpec::new(DAEMONSETS)
            .watch_owned("pods", "DaemonSet")
            // Orphans it may adopt.
            .watch_selected("pods")
            // A node appearing or changing may concern any DaemonSet.
            .watch_all("nodes"))
    }

    fn reconcile(key: ObjectRef) -> Result<ReconcileResult, BoxError> {
        match sync(key) {
            // Someone wrote the DaemonSet or a pod meanwhile: that change
            // queues it again; look afresh shortly.
            Err(e) if e.downcast_ref::<Error>().is_some_and(Error::is_conflict) => {
                Ok(ReconcileResult::requeue_after(Duration::from_millis(100)))
            }
            other => other,
        }
    }
}

/// One reconcile of the DaemonSet at `key`.
fn sync(key: ObjectRef) -> Result<ReconcileResult, BoxError> {
    let started = Instant::now();
    let ds: Value = match objects::get(&key) {
        Ok(ds) => ds,
        Err(Error::NotFound(_)) => return Ok(ReconcileResult::Done),
        Err(e) => return Err(e.into()),
    };
    let Some(namespace) = key.namespace.as_deref() else {
        return Ok(ReconcileResult::Done);
    };
    // Being deleted: the garbage collector removes its pods.
    if meta::is_deleting(&ds) {
        return Ok(ReconcileResult::Done);
    }
    let uid = ds["metadata"]["uid"]
        .as_str()
        .unwrap_or_default()
        .to_string();
    let nodes: Vec<Value> = objects::list("nodes", None, "")?;
    let mut owned: Vec<Value> = Vec::new();
    for pod in objects::list::<Value>("pods", Some(namespace), "")? {
        if meta::is_controlled_by(&pod, &uid) {
            owned.push(pod);
        } else if meta::controller_ref(&pod).is_none()
            && !meta::is_deleting(&pod)
            && meta::selector_matches(&ds["spec"]["selector"], &pod["metadata"]["labels"])?
            && let Some(adopted) = objects::adopt("pods", &pod, &ds, "apps/v1", "DaemonSet")?
        {
            // An orphan it selects is its own, as in Kubernetes; the plan
            // then keeps or deletes it like any other of its pods.
            owned.push(adopted);
        }
    }
    let now = meta::now_unix();
    let backoff = BACKOFF.with(|b| {
        let mut all = b.borrow_mut();
        // Waits long over matter no more, for any DaemonSet.
        all.retain(|_, nodes| {
            nodes.retain(|_, n| !n.expired(now));
            !nodes.is_empty()
        });
        all.get(&uid).cloned().unwrap_or_default()
    });
    let mut plan = match logic::plan(&ds, &nodes, &owned, &backoff, now) {
        Ok(plan) => plan,
        Err(message) => {
            // A spec the API let through but that cannot be acted on:
            // say so, and wait for it to change.
            events::warning(&key, "InvalidSpec", &message);
            return Ok(ReconcileResult::Done);
        }
    };

    let mut out_of_time = false;
    for (name, why) in &plan.delete {
        if started.elapsed() > WRITE_BUDGET {
            out_of_time = true;
            break;
        }
        match objects::delete(&ObjectRef::namespaced("pods", namespace, name.as_str())) {
            Ok(()) | Err(Error::NotFound(_)) => {
                events::normal(
                    &key,
                    "SuccessfulDelete",
                    &format!("Deleted pod: {name} ({why})"),
                );
            }
            Err(e) => {
                events::warning(&key, "FailedDelete", &format!("Error deleting {name}: {e}"));
                return Err(e.into());
            }
        }
    }
    // Failed pods deleted: their nodes wait longer before the next one.
    if !plan.failed_on.is_empty() {
        BACKOFF.with(|b| {
            let mut all = b.borrow_mut();
            let nodes = all.entry(uid.clone()).or_default();
            for node in &plan.failed_on {
                let next = nodes
                    .get(node)
                    .copied()
                    .unwrap_or_default()
                    .after_failure(now);
                nodes.insert(node.clone(), next);
                plan.requeue_at = Some(plan.requeue_at.map_or(next.until, |t| t.min(next.until)));
            }
        });
    }
    let hash = logic::current_hash(&ds);
    for node in &plan.create_on {
        if out_of_time || started.elapsed() > WRITE_BUDGET {
            out_of_time = true;
            break;
        }
        let pod = logic::daemon_pod(&ds, node, &hash);
        let created = match objects::create::<Value>("pods", &pod) {
            // A generated name that happens to be taken: once more.
            Err(Error::Conflict(_)) => objects::create::<Value>("pods", &pod),
            other => other,
        };
        match created {
            Ok(p) => {
                let name = p["metadata"]["name"].as_str().unwrap_or_default();
                events::normal(
                    &key,
                    "SuccessfulCreate",
                    &format!("Created pod: {name} on node {node}"),
                );
            }
            Err(e) => {
                events::warning(&key, "FailedCreate", &format!("Error creating: {e}"));
                return Err(e.into());
            }
        }
    }

    if logic::status_changed(&ds["status"], &plan.status) {
        let mut updated = ds.clone();
        updated["status"] = plan.status.clone();
        match objects::update_status(DAEMONSETS, &updated) {
            // A conflict: the DaemonSet changed, and that change queues it.
            Ok(_) | Err(Error::NotFound(_)) | Err(Error::Conflict(_)) => {}
            Err(e) => return Err(e.into()),
        }
    }
    if out_of_time {
        return Ok(ReconcileResult::RequeueAfter(0));
    }
    Ok(match plan.requeue_at {
        // Whole seconds, and `now` was rounded down: by then the pod has
        // been ready for its minReadySeconds.
        Some(at) => ReconcileResult::requeue_after(
            Duration::from_secs(u64::try_from(at - now).unwrap_or(0)) + Duration::from_millis(50),
        ),
        None => ReconcileResult::Done,
    })
}

orchd_sdk::export_controller!(DaemonSets);
