//! The garbage collector, as Kubernetes' controller-manager runs it, for
//! the workload objects orchd's controllers make: Deployments own
//! ReplicaSets; ReplicaSets, DaemonSets, StatefulSets and Jobs own pods,
//! CronJobs own Jobs (`metadata.ownerReferences`).
//!
//! - Background (kubectl's default): an object whose owners are all gone
//!   (no object of that name, or one with another uid) is deleted, so
//!   deleting a Deployment removes its ReplicaSets and then their pods.
//!   An object that keeps some owners only loses its references to the
//!   missing ones. An owner that cannot be looked up (an unknown kind, or
//!   one this plugin may not read) counts as present: nothing is deleted
//!   on doubt.
//! - Orphan (`kubectl delete --cascade=orphan`): the API keeps the owner
//!   with the `orphan` finalizer; the collector removes the references to
//!   it from its dependents, then the finalizer, and the owner goes.
//! - Foreground (`--cascade=foreground`): the API keeps the owner with the
//!   `foregroundDeletion` finalizer; the collector deletes its dependents
//!   (in the foreground too), and removes the finalizer once the ones
//!   with `blockOwnerDeletion` are gone.
//!
//! It reconciles pods and watches ReplicaSets, Deployments, DaemonSets,
//! StatefulSets, Jobs and CronJobs under their own keys. Capabilities:
//! `read: pods, replicasets.apps, deployments.apps, daemonsets.apps,
//! statefulsets.apps, jobs.batch, cronjobs.batch` (and any other owner kind
//! it should be able to look up), `write:` the same.

mod logic;

use std::time::{Duration, Instant};

use logic::Verdict;
use orchd_sdk::controller::{BoxError, Controller, ControllerSpec, ReconcileResult};
use orchd_sdk::objects::{self, Error, ObjectRef};
use orchd_sdk::serde_json::{Value, json};
use orchd_sdk::{log, meta};

/// How often an owner held for foreground deletion looks again at its
/// dependents (their deletion maps to nothing that names the owner).
const FOREGROUND_POLL: Duration = Duration::from_millis(500);

/// How long one reconcile may spend on dependents before it leaves the
/// rest to the next call (at once): well inside the default 1 s call
/// deadline, which counts the host calls' time too. An owner of hundreds
/// of pods is collected over a few calls.
const WORK_BUDGET: Duration = Duration::from_millis(400);

/// Whether the time of this reconcile is up.
struct Budget(Instant);

impl Budget {
    fn spent(&self) -> bool {
        self.0.elapsed() > WORK_BUDGET
    }
}

/// How far work on an owner's dependents got.
#[derive(PartialEq)]
enum Progress {
    /// Nothing left to do.
    Done,
    /// Dependents that block the owner are still going.
    Waiting,
    /// The time budget ran out first.
    OutOfTime,
}

/// Reconcile again at once: the rest of the work.
fn again_now() -> ReconcileResult {
    ReconcileResult::RequeueAfter(0)
}

struct GarbageCollector;

impl Controller for GarbageCollector {
    fn setup(_config: &str) -> Result<ControllerSpec, BoxError> {
        let mut spec = ControllerSpec::new("pods");
        for owner in logic::OWNER_RESOURCES {
            spec = spec.watch(*owner);
        }
        Ok(spec)
    }

    fn reconcile(key: ObjectRef) -> Result<ReconcileResult, BoxError> {
        match sync(&key) {
            // Someone else changed the object meanwhile: that change
            // queues it again.
            Err(e) if e.downcast_ref::<Error>().is_some_and(Error::is_conflict) => {
                Ok(ReconcileResult::requeue_after(Duration::from_millis(100)))
            }
            other => other,
        }
    }
}

fn sync(key: &ObjectRef) -> Result<ReconcileResult, BoxError> {
    let budget = Budget(Instant::now());
    let object: Value = match objects::get(key) {
        Ok(o) => o,
        Err(Error::NotFound(_)) => {
            // Gone: whatever it owned may have no owner left. (A pod owns
            // nothing here: its deletion needs no search.)
            if let Some(kind) = logic::kind_of(&key.resource)
                && logic::OWNER_RESOURCES.contains(&key.resource.as_str())
            {
                for dependent in dependents(key.namespace.as_deref(), kind, &key.name, None)? {
                    if budget.spent() {
                        return Ok(again_now());
                    }
                    collect(&dependent)?;
                }
            }
            return Ok(ReconcileResult::Done);
        }
        Err(e) => return Err(e.into()),
    };
    if meta::is_deleting(&object) {
        let finalizers = meta_finalizers(&object);
        if finalizers.iter().any(|f| f == logic::ORPHAN) {
            if orphan_dependents(key, &object, &budget)? == Progress::OutOfTime {
                return Ok(again_now());
            }
            remove_finalizer(key, &object, logic::ORPHAN)?;
            return Ok(ReconcileResult::Done);
        }
        if finalizers.iter().any(|f| f == logic::FOREGROUND) {
            return match delete_dependents_first(key, &object, &budget)? {
                Progress::Done => {
                    remove_finalizer(key, &object, logic::FOREGROUND)?;
                    Ok(ReconcileResult::Done)
                }
                Progress::Waiting => Ok(ReconcileResult::requeue_after(FOREGROUND_POLL)),
                Progress::OutOfTime => Ok(again_now()),
            };
        }
        return Ok(ReconcileResult::Done);
    }
    collect(&(key.resource.clone(), object))?;
    Ok(ReconcileResult::Done)
}

fn meta_finalizers(object: &Value) -> Vec<String> {
    object["metadata"]["finalizers"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|f| f.as_str().map(str::to_string))
        .collect()
}

/// The objects in `namespace` that name `kind`/`name` (and `uid`, if
/// given) among their owners.
fn dependents(
    namespace: Option<&str>,
    kind: &str,
    name: &str,
    uid: Option<&str>,
) -> Result<Vec<(String, Value)>, Error> {
    // Owners of namespaced dependents live in the same namespace.
    let Some(namespace) = namespace else {
        return Ok(Vec::new());
    };
    let mut found = Vec::new();
    for resource in logic::DEPENDENT_RESOURCES {
        for object in objects::list::<Value>(resource, Some(namespace), "")? {
            if logic::refers_to(&object, kind, name, uid) {
                found.push(((*resource).to_string(), object));
            }
        }
    }
    Ok(found)
}

/// Whether the owner a reference names exists (with that uid). Unknown
/// or unreadable owners count as present.
fn owner_present(namespace: Option<&str>, reference: &Value) -> bool {
    let api_version = reference["apiVersion"].as_str().unwrap_or_default();
    let kind = reference["kind"].as_str().unwrap_or_default();
    let (Some(resource), Some(name)) = (
        logic::resource_of(api_version, kind),
        reference["name"].as_str(),
    ) else {
        return true;
    };
    let key = ObjectRef::new(resource, namespace, name);
    match objects::get::<Value>(&key) {
        Ok(owner) => owner["metadata"]["uid"] == reference["uid"],
        Err(Error::NotFound(_)) => false,
        Err(e) => {
            log::debug(&format!(
                "cannot look up owner {key}: {e:?}; keeping its dependents"
            ));
            true
        }
    }
}

/// Deletes a dependent whose owners are all gone, or drops its references
/// to the owners that are gone.
fn collect((resource, object): &(String, Value)) -> Result<(), Error> {
    let refs = object["metadata"]["ownerReferences"]
        .as_array()
        .cloned()
        .unwrap_or_default();
    if refs.is_empty() || meta::is_deleting(object) {
        return Ok(());
    }
    let namespace = object["metadata"]["namespace"].as_str();
    let present: Vec<bool> = refs.iter().map(|r| owner_present(namespace, r)).collect();
    let Some(key) = ObjectRef::of(resource.as_str(), object) else {
        return Ok(());
    };
    match logic::verdict(&refs, &present) {
        Verdict::Keep => Ok(()),
        Verdict::Delete => {
            log::info(&format!("deleting {key}: its owners are gone"));
            ignore_missing(objects::delete(&key))
        }
        Verdict::Drop(kept) => set_owner_refs(&key, object, kept),
    }
}

/// Removes the references to the orphaned owner from its dependents.
fn orphan_dependents(key: &ObjectRef, owner: &Value, budget: &Budget) -> Result<Progress, Error> {
    let Some(kind) = logic::kind_of(&key.resource) else {
        return Ok(Progress::Done);
    };
    let uid = owner["metadata"]["uid"].as_str();
    for (resource, dependent) in dependents(key.namespace.as_deref(), kind, &key.name, uid)? {
        if budget.spent() {
            return Ok(Progress::OutOfTime);
        }
        let kept: Vec<Value> = dependent["metadata"]["ownerReferences"]
            .as_array()
            .into_iter()
            .flatten()
            .filter(|r| r["uid"].as_str() != uid)
            .cloned()
            .collect();
        if let Some(dep_key) = ObjectRef::of(resource.as_str(), &dependent) {
            set_owner_refs(&dep_key, &dependent, kept)?;
        }
    }
    Ok(Progress::Done)
}

/// Deletes the dependents of an owner deleted in the foreground (each in
/// the foreground too); done once none that blocks it is left.
fn delete_dependents_first(
    key: &ObjectRef,
    owner: &Value,
    budget: &Budget,
) -> Result<Progress, Error> {
    let Some(kind) = logic::kind_of(&key.resource) else {
        return Ok(Progress::Done);
    };
    let uid = owner["metadata"]["uid"].as_str();
    let mut blocked = false;
    for (resource, dependent) in dependents(key.namespace.as_deref(), kind, &key.name, uid)? {
        if logic::blocks_owner(&dependent, uid.unwrap_or_default()) {
            blocked = true;
        }
        if meta::is_deleting(&dependent) {
            continue;
        }
        if budget.spent() {
            return Ok(Progress::OutOfTime);
        }
        let Some(dep_key) = ObjectRef::of(resource.as_str(), &dependent) else {
            continue;
        };
        // The finalizer first, so the dependent's own dependents go
        // before it, as a Foreground delete through the API does.
        if logic::OWNER_RESOURCES.contains(&resource.as_str()) {
            let mut finalizers = meta_finalizers(&dependent);
            finalizers.push(logic::FOREGROUND.into());
            let patch = json!({"metadata": {
                "finalizers": finalizers,
                "resourceVersion": dependent["metadata"]["resourceVersion"],
            }});
            match objects::patch::<Value>(&dep_key, &patch) {
                Ok(_) => {}
                Err(Error::NotFound(_)) => continue,
                Err(e) => return Err(e),
            }
        }
        ignore_missing(objects::delete(&dep_key))?;
    }
    Ok(if blocked {
        Progress::Waiting
    } else {
        Progress::Done
    })
}

fn remove_finalizer(key: &ObjectRef, object: &Value, finalizer: &str) -> Result<(), Error> {
    let rest: Vec<String> = meta_finalizers(object)
        .into_iter()
        .filter(|f| f != finalizer)
        .collect();
    let patch = json!({"metadata": {
        "finalizers": if rest.is_empty() { Value::Null } else { json!(rest) },
        "resourceVersion": object["metadata"]["resourceVersion"],
    }});
    ignore_missing(objects::patch::<Value>(key, &patch).map(|_| ()))
}

/// Rewrites `object`'s ownerReferences, its resourceVersion a
/// precondition.
fn set_owner_refs(key: &ObjectRef, object: &Value, refs: Vec<Value>) -> Result<(), Error> {
    let patch = json!({"metadata": {
        "ownerReferences": if refs.is_empty() { Value::Null } else { json!(refs) },
        "resourceVersion": object["metadata"]["resourceVersion"],
    }});
    ignore_missing(objects::patch::<Value>(key, &patch).map(|_| ()))
}

fn ignore_missing(result: Result<(), Error>) -> Result<(), Error> {
    match result {
        Err(Error::NotFound(_)) => Ok(()),
        other => other,
    }
}

orchd_sdk::export_controller!(GarbageCollector);
