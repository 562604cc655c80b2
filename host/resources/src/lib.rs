//! What orchd knows about Kubernetes kinds.
//!
//! The [`registry`] lists every served resource (group, version, kind,
//! plural, scope, short names, categories, subresources) and ties it to its
//! real Kubernetes type from `k8s-openapi`. Everything type-specific hangs
//! off that one table: [`validation`] decodes objects through the typed
//! definitions, [`defaults`] fills in what the API server defaults,
//! [`openapi`] generates the OpenAPI v3 documents kubectl reads, and
//! [`table`] renders the columns `kubectl get` prints.

pub mod defaults;
pub mod openapi;
pub mod orchd_v1;
pub mod registry;
pub mod table;
pub mod validation;

pub use registry::{
    ResourceType, Subresource, find_by_kind, find_by_plural, group_versions, resources,
};
pub use validation::{FieldError, Validated, validate};
