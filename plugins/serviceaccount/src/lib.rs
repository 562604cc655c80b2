//! The serviceaccount controller, as Kubernetes' controller-manager runs
//! it: every namespace that is not being deleted has a ServiceAccount
//! named `default` (pods that name no service account use it). Deleting
//! it brings it back.
//!
//! It reconciles namespaces and watches service accounts, mapped to their
//! namespace, so it needs `read: namespaces, serviceaccounts` and
//! `write: serviceaccounts` in its Plugin's capabilities.

use orchd_sdk::controller::{BoxError, Controller, ControllerSpec, ReconcileResult, Watch};
use orchd_sdk::objects::{self, Error, ObjectRef};
use orchd_sdk::serde_json::{Value, json};

/// The account every namespace gets.
const DEFAULT_ACCOUNT: &str = "default";

struct ServiceAccounts;

impl Controller for ServiceAccounts {
    fn setup(_config: &str) -> Result<ControllerSpec, BoxError> {
        let mut spec = ControllerSpec::new("namespaces");
        spec.watches.push(Watch {
            resource: "serviceaccounts".into(),
            map_to: "namespace".into(),
        });
        Ok(spec)
    }

    fn reconcile(key: ObjectRef) -> Result<ReconcileResult, BoxError> {
        let namespace: Value = match objects::get(&key) {
            Ok(ns) => ns,
            Err(Error::NotFound(_)) => return Ok(ReconcileResult::Done),
            Err(e) => return Err(e.into()),
        };
        let terminating = namespace["status"]["phase"] == "Terminating"
            || !namespace["metadata"]["deletionTimestamp"].is_null();
        if terminating {
            return Ok(ReconcileResult::Done);
        }
        let account = ObjectRef::namespaced("serviceaccounts", key.name.as_str(), DEFAULT_ACCOUNT);
        match objects::get::<Value>(&account) {
            Ok(_) => return Ok(ReconcileResult::Done),
            Err(Error::NotFound(_)) => {}
            Err(e) => return Err(e.into()),
        }
        let object = json!({
            "apiVersion": "v1",
            "kind": "ServiceAccount",
            "metadata": {"name": DEFAULT_ACCOUNT, "namespace": key.name},
        });
        match objects::create("serviceaccounts", &object) {
            // Created by someone else meanwhile: just as good.
            Ok(_) | Err(Error::Conflict(_)) => Ok(ReconcileResult::Done),
            Err(e) => Err(e.into()),
        }
    }
}

orchd_sdk::export_controller!(ServiceAccounts);
