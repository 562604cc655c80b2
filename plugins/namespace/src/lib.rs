//! The namespace controller, as Kubernetes' controller-manager runs it:
//! deleting a namespace deletes everything in it.
//!
//! - The API keeps a deleted namespace, `Terminating`, while its
//!   `spec.finalizers` hold `kubernetes` (every namespace gets it when
//!   created), and refuses new content in it. This controller then deletes
//!   every object of every namespaced resource in it, waits until they are
//!   gone (objects with finalizers of their own go when those are lifted),
//!   and lifts `kubernetes` through the `namespaces/finalize` subresource,
//!   as Kubernetes does; the API then removes the namespace.
//! - Meanwhile the namespace's conditions say what is left, as Kubernetes'
//!   do: `NamespaceContentRemaining`, `NamespaceFinalizersRemaining` and
//!   `NamespaceDeletionContentFailure`.
//! - The resources to sweep come from the Plugin's `spec.config`
//!   (`{"resources": [...]}`): orchd writes there every namespaced resource
//!   its API serves when it installs the plugin, so the list is the host's,
//!   not one compiled in here.
//!
//! It reconciles `namespaces` and, while content remains, looks again every
//! half second (the deletions it waits for name no namespace it watches).
//! Capabilities: `read: *`, `write: *` (it lists and deletes anything
//! namespaced, as Kubernetes' namespace controller may; `*` covers
//! `namespaces/finalize`).

mod logic;

use std::sync::OnceLock;
use std::time::Duration;

use logic::Remaining;
use orchd_sdk::controller::{BoxError, Controller, ControllerSpec, ReconcileResult};
use orchd_sdk::objects::{self, Error, ObjectRef};
use orchd_sdk::serde_json::{Value, json};
use orchd_sdk::{log, meta};

const NAMESPACES: &str = "namespaces";

/// How soon a namespace whose content is still going is looked at again.
const RECHECK: Duration = Duration::from_millis(500);

/// The resources to sweep, from `setup`'s configuration.
static RESOURCES: OnceLock<Vec<String>> = OnceLock::new();

struct Namespaces;

impl Controller for Namespaces {
    fn setup(config: &str) -> Result<ControllerSpec, BoxError> {
        let resources = logic::resources_from_config(config)?;
        log::info(&format!(
            "sweeping {} namespaced resources",
            resources.len()
        ));
        let _ = RESOURCES.set(resources);
        Ok(ControllerSpec::new(NAMESPACES))
    }

    fn reconcile(key: ObjectRef) -> Result<ReconcileResult, BoxError> {
        match sync(&key) {
            Err(e) if e.downcast_ref::<Error>().is_some_and(Error::is_conflict) => {
                Ok(ReconcileResult::requeue_after(Duration::from_millis(100)))
            }
            other => other,
        }
    }
}

fn sync(key: &ObjectRef) -> Result<ReconcileResult, BoxError> {
    let namespace: Value = match objects::get(key) {
        Ok(n) => n,
        Err(Error::NotFound(_)) => return Ok(ReconcileResult::Done),
        Err(e) => return Err(e.into()),
    };
    if !logic::needs_sweep(&namespace) {
        return Ok(ReconcileResult::Done);
    }
    let name = key.name.as_str();
    let mut left = Remaining::default();
    for resource in RESOURCES.get().map(Vec::as_slice).unwrap_or_default() {
        let items = match objects::list::<Value>(resource, Some(name), "") {
            Ok(items) => items,
            Err(e) => {
                left.failures.push(format!("{resource}: {}", message(&e)));
                continue;
            }
        };
        for object in items {
            if !meta::is_deleting(&object) {
                match ObjectRef::of(resource.as_str(), &object).map(|k| objects::delete(&k)) {
                    Some(Ok(())) | Some(Err(Error::NotFound(_))) | None => {}
                    Some(Err(e)) => left.failures.push(format!("{resource}: {}", message(&e))),
                }
            }
            // A delete without finalizers takes effect at once; one with
            // finalizers leaves the object until they are lifted. Look
            // again to count only what is really still there.
            let still =
                ObjectRef::of(resource.as_str(), &object).map(|k| objects::get::<Value>(&k));
            if let Some(Ok(object)) = still {
                left.add(resource, &object);
            }
        }
    }

    let conditions = logic::conditions(&namespace, &left, &meta::format_time(meta::now_unix()));
    let namespace = if conditions != namespace["status"]["conditions"] {
        let mut updated = namespace.clone();
        updated["status"]["conditions"] = conditions;
        objects::update_status(NAMESPACES, &updated)?
    } else {
        namespace
    };
    if !left.is_done() {
        return Ok(ReconcileResult::requeue_after(RECHECK));
    }
    let mut finalized = json!({
        "apiVersion": "v1",
        "kind": "Namespace",
        "metadata": {"name": name, "resourceVersion": namespace["metadata"]["resourceVersion"]},
        "spec": {"finalizers": logic::finalizers_without_ours(&namespace)},
    });
    if finalized["metadata"]["resourceVersion"].is_null() {
        finalized["metadata"]
            .as_object_mut()
            .map(|m| m.remove("resourceVersion"));
    }
    match objects::update::<Value>("namespaces/finalize", &finalized) {
        Ok(_) | Err(Error::NotFound(_)) => {}
        Err(e) => return Err(e.into()),
    }
    log::info(&format!("namespace {name}: content gone, finalized"));
    Ok(ReconcileResult::Done)
}

/// The text of a host call's error.
fn message(e: &Error) -> String {
    match e {
        Error::NotFound(m)
        | Error::Conflict(m)
        | Error::Invalid(m)
        | Error::Forbidden(m)
        | Error::Internal(m) => m.clone(),
    }
}

orchd_sdk::export_controller!(Namespaces);
