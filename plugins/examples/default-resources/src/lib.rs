//! An example mutating admission policy: every container of a new or
//! changed pod that requests no CPU or no memory gets a default request
//! (100m CPU, 128Mi memory), so the scheduler counts it and its QoS class
//! is Burstable rather than BestEffort. The pod gets a warning saying what
//! was added (kubectl prints it).
//!
//! Install it as a mutating plugin reviewing pod creates and updates:
//!
//! ```text
//! orchd plugin install default-resources.wasm --type Mutating \
//!     --resources pods --operations CREATE,UPDATE
//! ```
//!
//! Capabilities: none (an admission plugin only sees the request).

mod logic;

use orchd_sdk::admission::{Admission, AdmissionRequest, AdmissionResponse};
use orchd_sdk::serde_json::Value;

struct DefaultResources;

impl Admission for DefaultResources {
    fn review(request: AdmissionRequest) -> AdmissionResponse {
        // Only pods have containers to fill; a delete has no object.
        if request.resource != "pods" || request.sub_resource.is_some() {
            return AdmissionResponse::allow();
        }
        let pod: Value = match request.object() {
            Some(Ok(pod)) => pod,
            Some(Err(e)) => return AdmissionResponse::deny(format!("the pod is not JSON: {e}")),
            None => return AdmissionResponse::allow(),
        };
        let added = logic::defaults_for(&pod);
        if added.is_empty() {
            return AdmissionResponse::allow();
        }
        let mut response = AdmissionResponse::allow().with_patch(&logic::patch(&pod, &added));
        for a in &added {
            response = response.with_warning(format!(
                "default-resources: container {:?} requests {} {} by default",
                a.container, a.resource, a.quantity
            ));
        }
        response
    }
}

orchd_sdk::export_admission!(DefaultResources);
