//! The admission chain as the API sees it: a trait the plugin host
//! implements (this crate knows nothing of wasm), the request it is given,
//! and how its verdicts become Kubernetes answers.
//!
//! Where it runs in a write (Kubernetes' order): defaults → mutating
//! plugins → defaults again (a patch may add fields that have defaults) →
//! schema validation → validating plugins → store. Deletes are reviewed
//! with the stored object as `old_object`, before the store delete.

use async_trait::async_trait;
use serde_json::Value;

use crate::status::ApiError;

/// The write being reviewed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Operation {
    /// POST of a new object (server-side apply creating one too).
    Create,
    /// PUT or PATCH, of the object or a subresource.
    Update,
    /// DELETE of one object (each object of a collection delete).
    Delete,
}

impl Operation {
    /// Kubernetes' spelling: `CREATE`, `UPDATE`, `DELETE`.
    pub fn as_str(self) -> &'static str {
        match self {
            Operation::Create => "CREATE",
            Operation::Update => "UPDATE",
            Operation::Delete => "DELETE",
        }
    }
}

/// Which chain is called: mutating plugins may patch, validating ones only
/// judge.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Phase {
    /// Before schema validation; answers may carry JSON patches.
    Mutating,
    /// After schema validation, on the final object.
    Validating,
}

/// One API write, for the plugins to review.
#[derive(Clone, Debug)]
pub struct AdmissionRequest {
    /// The request's uid (a fresh one per request).
    pub uid: String,
    /// API group of the resource (`""` for core).
    pub group: String,
    /// Plural resource name (`pods`).
    pub resource: String,
    /// Subresource written (`status`, `scale`, `binding`, `finalize`).
    pub subresource: Option<String>,
    /// Namespace of the object, if namespaced.
    pub namespace: Option<String>,
    /// Object name.
    pub name: String,
    /// What is done.
    pub operation: Operation,
    /// The object after the write (none for a delete).
    pub object: Option<Value>,
    /// The object before the write (updates and deletes).
    pub old_object: Option<Value>,
    /// `dryRun=All`.
    pub dry_run: bool,
}

/// What a chain answered.
#[derive(Clone, Debug, Default)]
pub struct Admitted {
    /// The object as the mutating plugins patched it (mutating phase
    /// only; `None` when nothing changed it).
    pub object: Option<Value>,
    /// Warnings for the `Warning` header.
    pub warnings: Vec<String>,
}

/// Why a chain refused a write.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Refusal {
    /// A plugin denied it: `admission webhook "NAME" denied the request: MSG`,
    /// 403, as Kubernetes answers a webhook's denial.
    Denied {
        /// The Plugin's name.
        plugin: String,
        /// What it said.
        message: String,
    },
    /// A plugin with `failurePolicy: Fail` could not be called (trap,
    /// deadline, a bad patch): 500 `failed calling webhook "NAME": ...`.
    Failed {
        /// The Plugin's name.
        plugin: String,
        /// What went wrong.
        message: String,
    },
}

impl Refusal {
    /// The Kubernetes `Status` for the refusal, worded as the API server
    /// words webhook errors so kubectl shows users what they know.
    pub fn into_error(self) -> ApiError {
        match self {
            Refusal::Denied { plugin, message } => ApiError {
                code: 403,
                // Kubernetes leaves the reason empty unless the webhook
                // set one; kubectl then prints "Error from server: ...".
                reason: "",
                message: if message.is_empty() {
                    format!("admission webhook \"{plugin}\" denied the request without explanation")
                } else {
                    format!("admission webhook \"{plugin}\" denied the request: {message}")
                },
                details: None,
            },
            Refusal::Failed { plugin, message } => {
                ApiError::internal(format!("failed calling webhook \"{plugin}\": {message}"))
            }
        }
    }
}

/// The admission plugins, as the API calls them. Implemented by the
/// plugin host; every call is answered (a plugin's failure is already
/// turned into allow or refuse by its failure policy).
#[async_trait]
pub trait Admission: Send + Sync + 'static {
    /// Whether any plugin of `phase` could match a write of `operation` on
    /// `group`/`resource`(/`subresource`): lets the API skip work (such as
    /// reading the object a delete removes) when none does.
    fn wants(
        &self,
        phase: Phase,
        operation: Operation,
        group: &str,
        resource: &str,
        subresource: Option<&str>,
    ) -> bool;

    /// Runs the plugins of `phase` that match `request`, in order.
    async fn review(&self, phase: Phase, request: AdmissionRequest) -> Result<Admitted, Refusal>;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn denials_read_as_kubernetes_webhook_denials() {
        let e = Refusal::Denied {
            plugin: "required-labels".into(),
            message: "missing label owner".into(),
        }
        .into_error();
        assert_eq!(e.code, 403);
        assert_eq!(
            e.message,
            "admission webhook \"required-labels\" denied the request: missing label owner"
        );
        let silent = Refusal::Denied {
            plugin: "p".into(),
            message: String::new(),
        }
        .into_error();
        assert!(
            silent
                .message
                .ends_with("denied the request without explanation")
        );
        let failed = Refusal::Failed {
            plugin: "slow".into(),
            message: "deadline".into(),
        }
        .into_error();
        assert_eq!(failed.code, 500);
        assert_eq!(failed.reason, "InternalError");
        assert!(
            failed
                .message
                .contains("failed calling webhook \"slow\": deadline")
        );
    }
}
