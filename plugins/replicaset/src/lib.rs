//! The replicaset controller, as Kubernetes' controller-manager runs it:
//! each ReplicaSet keeps `spec.replicas` active pods matching its selector,
//! made from its template.
//!
//! - Pods it controls (an ownerReference with `controller: true` and its
//!   uid) count toward its replicas while they match the selector; one that
//!   stops matching is released (its reference removed). Orphan pods that
//!   match are adopted.
//! - Too few: it creates pods named `<replicaset>-<5 random characters>`
//!   (the API's `generateName`); too many: it deletes unscheduled, then
//!   pending, then not-ready, then most recently ready and newest pods
//!   first. At most 500 either way per reconcile, and the writes of one
//!   reconcile stop at a time budget (the rest follow at once in the next),
//!   so a large scale never runs into the plugin's call deadline.
//! - Status: replicas, fullyLabeledReplicas, readyReplicas,
//!   availableReplicas (ready for `minReadySeconds`), observedGeneration,
//!   and a `ReplicaFailure` condition while creating or deleting fails.
//!
//! It reconciles `replicasets.apps` and watches pods, mapped to their
//! controlling ReplicaSet and (for orphans to adopt) to every ReplicaSet
//! whose selector matches them. Capabilities: `read: replicasets.apps, pods`,
//! `write: replicasets.apps, pods`.

mod logic;

use std::time::{Duration, Instant};

use logic::Failure;
use orchd_sdk::controller::{BoxError, Controller, ControllerSpec, ReconcileResult};
use orchd_sdk::objects::{self, Error, ObjectRef};
use orchd_sdk::serde_json::{Value, json};
use orchd_sdk::{events, meta, pods};

/// The resource this controller reconciles.
const REPLICASETS: &str = "replicasets.apps";

/// How long one reconcile may spend writing before it leaves the rest to
/// the next call: well inside the default 1 s call deadline, which counts
/// the host calls' time too.
const WRITE_BUDGET: Duration = Duration::from_millis(400);

struct ReplicaSets;

impl Controller for ReplicaSets {
    fn setup(_config: &str) -> Result<ControllerSpec, BoxError> {
        // Pods it controls map to it by owner; orphans (to adopt) by selector.
        Ok(ControllerSpec::new(REPLICASETS)
            .watch_owned("pods", "ReplicaSet")
            .watch_selected("pods"))
    }

    fn reconcile(key: ObjectRef) -> Result<ReconcileResult, BoxError> {
        match sync(key) {
            // Someone else wrote the pod or ReplicaSet meanwhile: that
            // change queues the ReplicaSet again, to be looked at afresh.
            Err(e) if e.downcast_ref::<Error>().is_some_and(Error::is_conflict) => {
                Ok(ReconcileResult::requeue_after(Duration::from_millis(100)))
            }
            other => other,
        }
    }
}

/// One reconcile of the ReplicaSet at `key`.
fn sync(key: ObjectRef) -> Result<ReconcileResult, BoxError> {
    let started = Instant::now();
    let rs: Value = match objects::get(&key) {
        Ok(rs) => rs,
        Err(Error::NotFound(_)) => return Ok(ReconcileResult::Done),
        Err(e) => return Err(e.into()),
    };
    let Some(namespace) = key.namespace.as_deref() else {
        return Ok(ReconcileResult::Done);
    };
    let uid = rs["metadata"]["uid"]
        .as_str()
        .unwrap_or_default()
        .to_string();
    let deleting = meta::is_deleting(&rs);
    let now = meta::now_unix();

    // Claim: the active pods this ReplicaSet controls and that match,
    // adopting matching orphans and releasing controlled pods that no
    // longer match.
    let mut owned: Vec<Value> = Vec::new();
    // Slim pods: thousands of them must fit the plugin's memory.
    let active = objects::list_filter_map("pods", Some(namespace), "", |pod: Value| {
        pods::is_active(&pod).then(|| pods::slim(pod))
    })?;
    for pod in active {
        let matches = meta::selector_matches(&rs["spec"]["selector"], &pod["metadata"]["labels"])?;
        match meta::controller_ref(&pod) {
            Some(r) if r["uid"] == uid.as_str() => {
                if matches {
                    owned.push(pod);
                } else if !deleting {
                    release(&pod, &uid)?;
                }
            }
            Some(_) => {}
            None if matches && !deleting => {
                if let Some(adopted) = objects::adopt("pods", &pod, &rs, "apps/v1", "ReplicaSet")? {
                    owned.push(pods::slim(adopted));
                }
            }
            None => {}
        }
    }

    let replicas = usize::try_from(rs["spec"]["replicas"].as_i64().unwrap_or(1)).unwrap_or(0);
    let mut failure: Option<Failure> = None;
    let mut out_of_time = false;
    if !deleting && owned.len() < replicas {
        for _ in 0..(replicas - owned.len()).min(logic::BURST_REPLICAS) {
            if started.elapsed() > WRITE_BUDGET {
                out_of_time = true;
                break;
            }
            match create_pod(&rs) {
                Ok(pod) => {
                    let name = pod["metadata"]["name"].as_str().unwrap_or_default();
                    events::normal(&key, "SuccessfulCreate", &format!("Created pod: {name}"));
                    owned.push(pod);
                }
                Err(e) => {
                    // One failure (quota, a bad template) stops the
                    // rest rather than repeating it hundreds of times.
                    events::warning(&key, "FailedCreate", &format!("Error creating: {e}"));
                    failure = Some(Failure {
                        reason: "FailedCreate",
                        message: e.to_string(),
                    });
                    break;
                }
            }
        }
    } else if !deleting && owned.len() > replicas {
        let excess = (owned.len() - replicas).min(logic::BURST_REPLICAS);
        let doomed: Vec<String> = logic::pods_to_delete(&owned, excess)
            .into_iter()
            .filter_map(|p| p["metadata"]["name"].as_str().map(str::to_string))
            .collect();
        for name in doomed {
            if started.elapsed() > WRITE_BUDGET {
                out_of_time = true;
                break;
            }
            match objects::delete(&ObjectRef::namespaced("pods", namespace, name.as_str())) {
                Ok(()) | Err(Error::NotFound(_)) => {
                    events::normal(&key, "SuccessfulDelete", &format!("Deleted pod: {name}"));
                    owned.retain(|p| p["metadata"]["name"] != name.as_str());
                }
                Err(e) => {
                    events::warning(&key, "FailedDelete", &format!("Error deleting: {e}"));
                    failure = Some(Failure {
                        reason: "FailedDelete",
                        message: e.to_string(),
                    });
                    break;
                }
            }
        }
    }

    let status = logic::status(&rs, &owned, failure.as_ref(), now);
    if logic::status_changed(&rs["status"], &status) {
        let mut updated = rs.clone();
        updated["status"] = status;
        match objects::update_status(REPLICASETS, &updated) {
            Ok(_) | Err(Error::NotFound(_)) => {}
            // The ReplicaSet changed meanwhile: that change queues it
            // again, and the next reconcile writes a fresh status.
            Err(Error::Conflict(_)) => {}
            Err(e) => return Err(e.into()),
        }
    }

    if out_of_time {
        return Ok(ReconcileResult::RequeueAfter(0));
    }
    Ok(match logic::next_available(&rs, &owned, now) {
        // Times are whole seconds, and `now` was rounded down: by then the
        // pod has been ready for its minReadySeconds.
        Some(at) => ReconcileResult::requeue_after(
            Duration::from_secs(u64::try_from(at - now).unwrap_or(0)) + Duration::from_millis(50),
        ),
        None => ReconcileResult::Done,
    })
}

/// Creates one pod from the template; a generated name that happens to be
/// taken is tried again with another.
fn create_pod(rs: &Value) -> Result<Value, Error> {
    let pod = logic::pod_from_template(rs);
    match objects::create("pods", &pod) {
        Err(Error::Conflict(_)) => objects::create("pods", &pod),
        other => other,
    }
}

/// Removes the controller reference to `uid` from `pod`.
fn release(pod: &Value, uid: &str) -> Result<(), Error> {
    let refs: Vec<Value> = pod["metadata"]["ownerReferences"]
        .as_array()
        .into_iter()
        .flatten()
        .filter(|r| r["uid"] != uid)
        .cloned()
        .collect();
    let patch = json!({"metadata": {
        "ownerReferences": if refs.is_empty() { Value::Null } else { json!(refs) },
        "resourceVersion": pod["metadata"]["resourceVersion"],
    }});
    let Some(key) = ObjectRef::of("pods", pod) else {
        return Ok(());
    };
    match objects::patch::<Value>(&key, &patch) {
        Ok(_) | Err(Error::NotFound(_)) => Ok(()),
        Err(e) => Err(e),
    }
}

orchd_sdk::export_controller!(ReplicaSets);
