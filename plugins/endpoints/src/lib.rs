//! The endpoints controller, as Kubernetes' controller-manager runs it:
//! every Service with a selector gets an Endpoints object of the same name
//! listing the pods it selects.
//!
//! - An address per selected pod that has an IP (`status.podIP`), has not
//!   finished and is not being deleted: under `addresses` when the pod is
//!   Ready (or the Service sets `publishNotReadyAddresses`), under
//!   `notReadyAddresses` otherwise, each with its `targetRef` and
//!   `nodeName`.
//! - Ports: one per Service port, on the port the pod serves it at (its
//!   `targetPort`, by number or by the name of a container port of the
//!   same protocol; the Service port when none is given). Pods that serve
//!   different ports go into different subsets; a pod that resolves none
//!   of a Service's ports is left out.
//! - Services without a selector are left alone (their Endpoints are
//!   written by hand); a deleted Service's Endpoints are deleted.
//!   EndpointSlices are not written: orchd does not serve that resource.
//!
//! It reconciles `services` and watches pods, mapped to every Service in
//! their namespace whose selector matches them. Capabilities: `read:
//! services, pods, endpoints`, `write: endpoints`.

mod logic;

use std::time::Duration;

use orchd_sdk::controller::{BoxError, Controller, ControllerSpec, ReconcileResult};
use orchd_sdk::objects::{self, Error, ObjectRef};
use orchd_sdk::serde_json::{Value, json};

const SERVICES: &str = "services";
const ENDPOINTS: &str = "endpoints";

struct Endpoints;

impl Controller for Endpoints {
    fn setup(_config: &str) -> Result<ControllerSpec, BoxError> {
        Ok(ControllerSpec::new(SERVICES).watch_selected("pods"))
    }

    fn reconcile(key: ObjectRef) -> Result<ReconcileResult, BoxError> {
        match sync(&key) {
            // Someone else wrote the Endpoints meanwhile: look afresh.
            Err(e) if e.downcast_ref::<Error>().is_some_and(Error::is_conflict) => {
                Ok(ReconcileResult::requeue_after(Duration::from_millis(100)))
            }
            other => other,
        }
    }
}

fn sync(key: &ObjectRef) -> Result<ReconcileResult, BoxError> {
    let Some(namespace) = key.namespace.as_deref() else {
        return Ok(ReconcileResult::Done);
    };
    let endpoints_key = ObjectRef::namespaced(ENDPOINTS, namespace, key.name.as_str());
    let service: Value = match objects::get(key) {
        Ok(s) => s,
        Err(Error::NotFound(_)) => {
            match objects::delete(&endpoints_key) {
                Ok(()) | Err(Error::NotFound(_)) => {}
                Err(e) => return Err(e.into()),
            }
            return Ok(ReconcileResult::Done);
        }
        Err(e) => return Err(e.into()),
    };
    if !logic::has_selector(&service) {
        return Ok(ReconcileResult::Done);
    }
    let pods: Vec<Value> = objects::list("pods", Some(namespace), "")?;
    let subsets = logic::subsets(&service, &pods);
    let labels = &service["metadata"]["labels"];
    match objects::get::<Value>(&endpoints_key) {
        Ok(existing) if logic::up_to_date(&existing, &subsets, labels) => {}
        Ok(mut existing) => {
            existing["subsets"] = json!(subsets);
            existing["metadata"]["labels"] = labels.clone();
            objects::update(ENDPOINTS, &existing)?;
        }
        Err(Error::NotFound(_)) => {
            let endpoints = json!({
                "apiVersion": "v1",
                "kind": "Endpoints",
                "metadata": {"name": key.name, "namespace": namespace, "labels": labels},
                "subsets": subsets,
            });
            // Created meanwhile (a conflict): requeued, then updated.
            objects::create(ENDPOINTS, &endpoints)?;
        }
        Err(e) => return Err(e.into()),
    }
    Ok(ReconcileResult::Done)
}

orchd_sdk::export_controller!(Endpoints);
