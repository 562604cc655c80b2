//! Writing an admission policy: implement [`Admission`] and export it with
//! [`export_admission!`](crate::export_admission).
//!
//! The API server calls [`Admission::review`] in its write path under a
//! deadline; the Plugin's failure policy decides what a trap or a missed
//! deadline means (fail-open or fail-closed). A mutating policy answers
//! with a JSON patch.

use serde::de::DeserializeOwned;
use serde_json::Value;

pub use crate::bindings::admission::orchd::plugin::admission_types::{
    AdmissionRequest, AdmissionResponse, Operation,
};

/// An admission plugin.
pub trait Admission {
    /// Allows, denies or patches one API write.
    fn review(request: AdmissionRequest) -> AdmissionResponse;
}

impl<T: Admission> crate::bindings::admission::Guest for T {
    fn review(request: AdmissionRequest) -> AdmissionResponse {
        <T as Admission>::review(request)
    }
}

impl AdmissionRequest {
    /// The object after the change, decoded; `None` for a delete.
    pub fn object<T: DeserializeOwned>(&self) -> Option<Result<T, serde_json::Error>> {
        self.object.as_deref().map(serde_json::from_str)
    }

    /// The object before the change, decoded; `None` for a create.
    pub fn old_object<T: DeserializeOwned>(&self) -> Option<Result<T, serde_json::Error>> {
        self.old_object.as_deref().map(serde_json::from_str)
    }
}

impl AdmissionResponse {
    /// Lets the write through unchanged.
    pub fn allow() -> Self {
        AdmissionResponse {
            allowed: true,
            message: String::new(),
            patch: None,
            warnings: Vec::new(),
        }
    }

    /// Refuses the write; `message` is shown to the user.
    pub fn deny(message: impl Into<String>) -> Self {
        AdmissionResponse {
            allowed: false,
            message: message.into(),
            patch: None,
            warnings: Vec::new(),
        }
    }

    /// Changes the object with a JSON patch (RFC 6902), an array of
    /// operations such as `[{"op": "add", "path": "/metadata/labels/x", "value": "y"}]`.
    pub fn with_patch(mut self, operations: &Value) -> Self {
        self.patch = Some(operations.to_string());
        self
    }

    /// Adds a warning shown to the client (kubectl prints it).
    pub fn with_warning(mut self, warning: impl Into<String>) -> Self {
        self.warnings.push(warning.into());
        self
    }
}

/// Exports a type implementing [`Admission`] as the component's
/// `admission` world. Use once per plugin, with a type name (not a path).
#[macro_export]
macro_rules! export_admission {
    ($ty:ident) => {
        $crate::bindings::admission::export!($ty with_types_in $crate::bindings::admission);
    };
}
