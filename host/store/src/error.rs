//! Store errors. Each maps to one Kubernetes `Status` reason in the API.

use crate::Revision;

/// Why a store operation failed.
#[derive(Clone, Debug, thiserror::Error, PartialEq, Eq)]
pub enum StoreError {
    /// No object at the key (404 NotFound).
    #[error("{key} not found")]
    NotFound {
        /// The key looked up.
        key: String,
    },
    /// Create of a key that holds an object (409 AlreadyExists).
    #[error("{key} already exists")]
    AlreadyExists {
        /// The key written.
        key: String,
    },
    /// A precondition (resourceVersion, uid) did not hold (409 Conflict).
    #[error("conflict on {key}: {message}")]
    Conflict {
        /// The key written.
        key: String,
        /// What did not match.
        message: String,
    },
    /// The requested revision was compacted away (410 Gone, reason Expired).
    #[error("too old resource version: {requested} (compacted to {compacted})")]
    Expired {
        /// The revision asked for.
        requested: Revision,
        /// The oldest revision still resumable.
        compacted: Revision,
    },
    /// The request itself is wrong: a bad selector, a bad continue token,
    /// an object without metadata (400 BadRequest).
    #[error("{0}")]
    BadRequest(String),
    /// The backend failed (500 InternalError). The write did not happen.
    #[error("storage error: {0}")]
    Internal(String),
}
