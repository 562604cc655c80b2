//! An admission plugin for the tests; not an example to follow.
//!
//! Its behaviour is fixed when it is built, by `ORCHD_ADMISSION_MODE`:
//!
//! | mode | behaviour |
//! |---|---|
//! | `judge-v1`, `judge-v2` (default `judge-v1`) | ConfigMaps: denied with `judged by v1: ...` when labelled `deny`, otherwise allowed with the warning `judged by v1`, so every answer tells which build judged it (the hot-reload test installs one, then the other) |
//! | `loop` | spins forever on every review (stopped by the deadline) |
//! | `trap` | panics on every review |

use orchd_sdk::admission::{Admission, AdmissionRequest, AdmissionResponse};
use orchd_sdk::serde_json::Value;

const MODE: &str = match option_env!("ORCHD_ADMISSION_MODE") {
    Some(m) => m,
    None => "judge-v1",
};

struct TestAdmission;

impl Admission for TestAdmission {
    fn review(request: AdmissionRequest) -> AdmissionResponse {
        match MODE {
            "loop" => spin(),
            "trap" => panic!("trapping on purpose in review of {}", request.name),
            _ => {}
        }
        let judge = MODE.strip_prefix("judge-").unwrap_or(MODE);
        if request.resource != "configmaps" {
            return AdmissionResponse::allow();
        }
        let object: Option<Value> = request.object().and_then(Result::ok);
        let denied = object
            .as_ref()
            .is_some_and(|o| o["metadata"]["labels"]["deny"].is_string());
        if denied {
            AdmissionResponse::deny(format!(
                "judged by {judge}: configmap {} is labelled deny",
                request.name
            ))
        } else {
            AdmissionResponse::allow().with_warning(format!("judged by {judge}"))
        }
    }
}

/// Loops without end; the host's deadline stops it.
fn spin() -> ! {
    let mut n: u64 = 0;
    loop {
        n = std::hint::black_box(n.wrapping_add(1));
    }
}

orchd_sdk::export_admission!(TestAdmission);
