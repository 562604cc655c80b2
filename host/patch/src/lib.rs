//! The patch formats a Kubernetes API server accepts, as pure functions over
//! [`serde_json::Value`]:
//!
//! - [`json_patch`]: RFC 6902 JSON Patch (`application/json-patch+json`);
//! - [`merge_patch`]: RFC 7386 JSON Merge Patch (`application/merge-patch+json`);
//! - [`strategic_merge_patch`]: Kubernetes strategic merge patch
//!   (`application/strategic-merge-patch+json`), which is what `kubectl apply`
//!   (client-side) and most `kubectl patch`/`edit` calls send;
//! - [`server_side_apply`]: `application/apply-patch+yaml`, as far as
//!   `kubectl apply --server-side` needs, including `metadata.managedFields`.
//!
//! Every function takes its inputs by reference and returns a new value, so a
//! failed patch never leaves a half-applied object behind.
//!
//! Strategic merge needs to know, per field, whether a list merges and by
//! which key. Kubernetes derives that from Go struct tags; here it comes from
//! the table in [`merge_strategy`].

mod apply;
mod json_patch;
mod merge_patch;
mod schema;
mod strategic;
mod value;

pub use apply::{fields_v1, server_side_apply};
pub use json_patch::json_patch;
pub use merge_patch::merge_patch;
pub use schema::{MergeStrategy, merge_strategy};
pub use strategic::strategic_merge_patch;

/// Why a patch could not be applied. The messages follow the wording of the
/// Kubernetes API server where there is one, since clients show them verbatim.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum PatchError {
    /// The patch is malformed or does not apply to the document (bad JSON
    /// Pointer, missing path, unknown directive, missing merge key, ...).
    /// The API server answers 400 or 422.
    #[error("{0}")]
    Invalid(String),
    /// A JSON Patch `test` operation did not match; the API server answers 422.
    #[error("{0}")]
    TestFailed(String),
    /// The patch is over a size limit (too many JSON Patch operations, or
    /// `copy` operations that would grow the document without bound); the API
    /// server answers 413.
    #[error("{0}")]
    TooLarge(String),
}

impl PatchError {
    /// A fitting HTTP status for the API server to answer with (Kubernetes
    /// answers most patch failures with 422 Unprocessable Entity).
    pub fn http_status(&self) -> u16 {
        match self {
            PatchError::Invalid(_) | PatchError::TestFailed(_) => 422,
            PatchError::TooLarge(_) => 413,
        }
    }
}

pub(crate) fn invalid(msg: impl Into<String>) -> PatchError {
    PatchError::Invalid(msg.into())
}
