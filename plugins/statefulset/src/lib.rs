//! The statefulset controller, as Kubernetes' controller-manager runs it
//! (without volumes): each StatefulSet keeps `spec.replicas` pods with
//! stable identities made from its template.
//!
//! - Identity: pods are named `<set>-<ordinal>` (ordinals from
//!   `spec.ordinals.start`, default 0), labelled
//!   `statefulset.kubernetes.io/pod-name` and `apps.kubernetes.io/pod-index`,
//!   with `hostname` their name and `subdomain` the set's `serviceName`.
//! - `OrderedReady` (the default): ordinal i is created only once 0..i-1
//!   are Running and Ready (and available for `minReadySeconds`); scaling
//!   down removes the highest ordinal first, one at a time, each after the
//!   previous is gone. `Parallel`: all at once.
//! - Updates: pods carry their revision (`<set>-<template hash>`) in the
//!   `controller-revision-hash` label; no ControllerRevision objects are
//!   kept, so a pod of the current revision lost below the partition is
//!   recreated from the template a sibling of that revision carries.
//!   `RollingUpdate` (the default) replaces pods from the highest ordinal
//!   down to `partition`, one at a time, each once the ones above are
//!   Ready again; `OnDelete` replaces a pod only once someone deleted it.
//!   Failed or finished pods are deleted and recreated.
//! - Status: replicas, readyReplicas, availableReplicas, currentReplicas,
//!   updatedReplicas, currentRevision, updateRevision,
//!   observedGeneration; the update revision becomes the current one when
//!   every pod has it and is ready: what `kubectl rollout status` reads.
//!
//! - Orphan pods named as its members that its selector matches are
//!   adopted, as in Kubernetes; a pod of a member's name that another
//!   controller owns blocks that ordinal (retried with backoff).
//!
//! It reconciles `statefulsets.apps` and watches pods, mapped to their
//! controlling StatefulSet and (orphans) to every set selecting them. Capabilities: `read: statefulsets.apps, pods`,
//! `write: statefulsets.apps, pods`.

mod logic;

use std::time::{Duration, Instant};

use logic::Action;
use orchd_sdk::controller::{BoxError, Controller, ControllerSpec, ReconcileResult};
use orchd_sdk::objects::{self, Error, ObjectRef};
use orchd_sdk::serde_json::Value;
use orchd_sdk::{events, meta};

/// The resource this controller reconciles.
const STATEFULSETS: &str = "statefulsets.apps";

/// How long one reconcile may spend writing before it leaves the rest to
/// the next call: well inside the default 1 s call deadline.
const WRITE_BUDGET: Duration = Duration::from_millis(400);

struct StatefulSets;

impl Controller for StatefulSets {
    fn setup(_config: &str) -> Result<ControllerSpec, BoxError> {
        Ok(ControllerSpec::new(STATEFULSETS)
            .watch_owned("pods", "StatefulSet")
            // Orphans it may adopt.
            .watch_selected("pods"))
    }

    fn reconcile(key: ObjectRef) -> Result<ReconcileResult, BoxError> {
        match sync(key) {
            // Someone wrote the set or a pod meanwhile: that change queues
            // it again; look afresh shortly.
            Err(e) if e.downcast_ref::<Error>().is_some_and(Error::is_conflict) => {
                Ok(ReconcileResult::requeue_after(Duration::from_millis(100)))
            }
            other => other,
        }
    }
}

/// One reconcile of the StatefulSet at `key`.
fn sync(key: ObjectRef) -> Result<ReconcileResult, BoxError> {
    let started = Instant::now();
    let set: Value = match objects::get(&key) {
        Ok(set) => set,
        Err(Error::NotFound(_)) => return Ok(ReconcileResult::Done),
        Err(e) => return Err(e.into()),
    };
    let Some(namespace) = key.namespace.as_deref() else {
        return Ok(ReconcileResult::Done);
    };
    // Being deleted: the garbage collector removes its pods.
    if meta::is_deleting(&set) {
        return Ok(ReconcileResult::Done);
    }
    let uid = set["metadata"]["uid"]
        .as_str()
        .unwrap_or_default()
        .to_string();
    let mut owned: Vec<Value> = Vec::new();
    for pod in objects::list::<Value>("pods", Some(namespace), "")? {
        if meta::is_controlled_by(&pod, &uid) {
            owned.push(pod);
        } else if meta::controller_ref(&pod).is_none()
            && !meta::is_deleting(&pod)
            && logic::ordinal_of(&set, &pod).is_some()
            && meta::selector_matches(&set["spec"]["selector"], &pod["metadata"]["labels"])?
            && let Some(adopted) = objects::adopt("pods", &pod, &set, "apps/v1", "StatefulSet")?
        {
            // An orphan named as one of its pods and selected by it is
            // its own, as in Kubernetes (a pod left by an orphaning delete
            // of an earlier set of that name).
            owned.push(adopted);
        }
    }
    let now = meta::now_unix();
    let plan = logic::plan(&set, &owned, now);

    let mut out_of_time = false;
    for action in &plan.actions {
        if started.elapsed() > WRITE_BUDGET {
            out_of_time = true;
            break;
        }
        match action {
            Action::Create(pod) => {
                let name = pod["metadata"]["name"].as_str().unwrap_or_default();
                match objects::create::<Value>("pods", pod) {
                    Ok(_) => events::normal(
                        &key,
                        "SuccessfulCreate",
                        &format!("create Pod {name} in StatefulSet {} successful", key.name),
                    ),
                    Err(e) => {
                        // A pod of that name that is not ours (or a
                        // bad template): retried with backoff, not at
                        // once as a lost race would be.
                        let message =
                            format!("create Pod {name} in StatefulSet {} failed: {e}", key.name);
                        events::warning(&key, "FailedCreate", &message);
                        return Err(message.into());
                    }
                }
            }
            Action::Delete(name, why) => {
                match objects::delete(&ObjectRef::namespaced("pods", namespace, name.as_str())) {
                    Ok(()) | Err(Error::NotFound(_)) => events::normal(
                        &key,
                        "SuccessfulDelete",
                        &format!(
                            "delete Pod {name} in StatefulSet {} successful ({why})",
                            key.name
                        ),
                    ),
                    Err(e) => {
                        events::warning(
                            &key,
                            "FailedDelete",
                            &format!("delete Pod {name} in StatefulSet {} failed: {e}", key.name),
                        );
                        return Err(e.into());
                    }
                }
            }
        }
    }

    if logic::status_changed(&set["status"], &plan.status) {
        let mut updated = set.clone();
        updated["status"] = plan.status.clone();
        match objects::update_status(STATEFULSETS, &updated) {
            // A conflict: the set changed, and that change queues it.
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

orchd_sdk::export_controller!(StatefulSets);
