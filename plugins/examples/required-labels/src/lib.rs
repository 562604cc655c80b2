//! An example validating admission policy: pods and Deployments must carry
//! an `owner` label. A create or update without it is denied with a message
//! naming the missing label, which kubectl prints as
//! `admission webhook "required-labels" denied the request: ...`.
//!
//! Install it as a validating plugin reviewing pod and Deployment writes:
//!
//! ```text
//! orchd plugin install required-labels.wasm \
//!     --resources pods,deployments.apps --operations CREATE,UPDATE
//! ```
//!
//! Capabilities: none (an admission plugin only sees the request).

mod logic;

use orchd_sdk::admission::{Admission, AdmissionRequest, AdmissionResponse};
use orchd_sdk::serde_json::Value;

struct RequiredLabels;

impl Admission for RequiredLabels {
    fn review(request: AdmissionRequest) -> AdmissionResponse {
        if !logic::REVIEWED.contains(&request.resource.as_str()) || request.sub_resource.is_some() {
            return AdmissionResponse::allow();
        }
        let object: Value = match request.object() {
            Some(Ok(o)) => o,
            Some(Err(e)) => return AdmissionResponse::deny(format!("the object is not JSON: {e}")),
            None => return AdmissionResponse::allow(),
        };
        match logic::missing(&object, logic::REQUIRED) {
            missing if missing.is_empty() => AdmissionResponse::allow(),
            missing => {
                AdmissionResponse::deny(logic::message(&request.resource, &request.name, &missing))
            }
        }
    }
}

orchd_sdk::export_admission!(RequiredLabels);
