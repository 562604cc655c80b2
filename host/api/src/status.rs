//! API errors and their Kubernetes `Status` form.
//!
//! Every failed request is answered with a `Status` object carrying the HTTP
//! code, a machine-readable `reason` and a message worded as the Kubernetes
//! API server words it, so kubectl and client libraries show the familiar
//! errors.

use orchd_resources::FieldError;
use orchd_store::StoreError;
use serde_json::{Value, json};

/// A failed request.
#[derive(Clone, Debug)]
pub struct ApiError {
    /// HTTP status code.
    pub code: u16,
    /// Kubernetes `StatusReason`: `NotFound`, `AlreadyExists`, `Conflict`...
    pub reason: &'static str,
    /// Human-readable message.
    pub message: String,
    /// `StatusDetails` (name, group, kind, causes), when known.
    pub details: Option<Value>,
}

/// Result of API handlers.
pub type ApiResult<T> = Result<T, ApiError>;

/// What an error is about: the resource and object name, for messages like
/// `deployments.apps "web" not found`.
#[derive(Clone, Debug, Default)]
pub struct Subject {
    /// API group of the resource.
    pub group: String,
    /// Plural resource name.
    pub resource: String,
    /// Kind, for Invalid messages.
    pub kind: String,
    /// Object name.
    pub name: String,
}

impl Subject {
    fn qualified(&self) -> String {
        if self.group.is_empty() {
            self.resource.clone()
        } else {
            format!("{}.{}", self.resource, self.group)
        }
    }

    fn details(&self) -> Value {
        json!({"name": self.name, "group": self.group, "kind": self.resource})
    }
}

impl ApiError {
    fn new(code: u16, reason: &'static str, message: impl Into<String>) -> Self {
        ApiError {
            code,
            reason,
            message: message.into(),
            details: None,
        }
    }

    /// 400: the request is malformed.
    pub fn bad_request(message: impl Into<String>) -> Self {
        Self::new(400, "BadRequest", message)
    }

    /// 404 for a resource path that does not exist at all.
    pub fn no_route(path: &str) -> Self {
        Self::new(
            404,
            "NotFound",
            format!("the server could not find the requested resource ({path})"),
        )
    }

    /// 404 for a missing object.
    pub fn not_found(subject: &Subject) -> Self {
        let mut e = Self::new(
            404,
            "NotFound",
            format!("{} \"{}\" not found", subject.qualified(), subject.name),
        );
        e.details = Some(subject.details());
        e
    }

    /// 405: the resource does not support the verb.
    pub fn method_not_allowed(what: &str) -> Self {
        Self::new(
            405,
            "MethodNotAllowed",
            format!("the server does not allow this method on the requested resource ({what})"),
        )
    }

    /// 406: no acceptable response format.
    pub fn not_acceptable(message: impl Into<String>) -> Self {
        Self::new(406, "NotAcceptable", message)
    }

    /// 413: the body is over the limit.
    pub fn too_large(limit: usize) -> Self {
        Self::new(
            413,
            "RequestEntityTooLarge",
            format!("the request body is too large: limit is {limit} bytes"),
        )
    }

    /// 415: an unsupported Content-Type.
    pub fn unsupported_media_type(content_type: &str) -> Self {
        Self::new(
            415,
            "UnsupportedMediaType",
            format!(
                "the body of the request was in an unknown format - accepted media types include: application/json, application/yaml, application/vnd.kubernetes.protobuf, application/json-patch+json, application/merge-patch+json, application/strategic-merge-patch+json, application/apply-patch+yaml (got {content_type:?})"
            ),
        )
    }

    /// 422: the object is invalid.
    pub fn invalid(subject: &Subject, errors: &[FieldError]) -> Self {
        let summary: Vec<String> = errors
            .iter()
            .map(|e| {
                if e.field.is_empty() {
                    e.message.clone()
                } else {
                    format!("{}: {}", e.field, e.message)
                }
            })
            .collect();
        let kind_group = if subject.group.is_empty() {
            subject.kind.clone()
        } else {
            format!("{}.{}", subject.kind, subject.group)
        };
        let message = match summary.as_slice() {
            [one] => format!("{kind_group} \"{}\" is invalid: {one}", subject.name),
            many => format!(
                "{kind_group} \"{}\" is invalid: [{}]",
                subject.name,
                many.join(", ")
            ),
        };
        let causes: Vec<Value> = errors
            .iter()
            .map(|e| json!({"reason": e.reason, "message": e.message, "field": e.field}))
            .collect();
        let mut e = Self::new(422, "Invalid", message);
        e.details = Some(
            json!({"name": subject.name, "group": subject.group, "kind": subject.kind, "causes": causes}),
        );
        e
    }

    /// 422 for a request that is well-formed but cannot be served as asked.
    pub fn unprocessable(message: impl Into<String>) -> Self {
        Self::new(422, "Invalid", message)
    }

    /// 409 Conflict.
    pub fn conflict(subject: &Subject, message: &str) -> Self {
        let mut e = Self::new(
            409,
            "Conflict",
            format!(
                "Operation cannot be fulfilled on {} \"{}\": {message}",
                subject.qualified(),
                subject.name
            ),
        );
        e.details = Some(subject.details());
        e
    }

    /// 500: something broke inside.
    pub fn internal(message: impl Into<String>) -> Self {
        Self::new(
            500,
            "InternalError",
            format!("Internal error occurred: {}", message.into()),
        )
    }

    /// Maps a store error about `subject`.
    pub fn from_store(err: StoreError, subject: &Subject) -> Self {
        match err {
            StoreError::NotFound { .. } => Self::not_found(subject),
            StoreError::AlreadyExists { .. } => {
                let mut e = Self::new(
                    409,
                    "AlreadyExists",
                    format!(
                        "{} \"{}\" already exists",
                        subject.qualified(),
                        subject.name
                    ),
                );
                e.details = Some(subject.details());
                e
            }
            StoreError::Conflict { message, .. } => Self::conflict(subject, &message),
            StoreError::Expired {
                requested,
                compacted,
            } => Self::new(
                410,
                "Expired",
                format!("too old resource version: {requested} ({compacted})"),
            ),
            StoreError::BadRequest(m) => Self::bad_request(m),
            StoreError::Internal(m) => Self::internal(m),
        }
    }

    /// The `Status` object.
    pub fn to_status(&self) -> Value {
        let mut status = json!({
            "kind": "Status",
            "apiVersion": "v1",
            "metadata": {},
            "status": "Failure",
            "message": self.message,
            "reason": self.reason,
            "code": self.code,
        });
        if let Some(d) = &self.details {
            status["details"] = d.clone();
        }
        // An admission plugin's denial has no reason, and Kubernetes then
        // leaves the field out (kubectl prints "Error from server: ...").
        if self.reason.is_empty()
            && let Some(map) = status.as_object_mut()
        {
            map.remove("reason");
        }
        status
    }
}
