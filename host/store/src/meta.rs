//! Reading and writing the `metadata` fields the store owns.
//!
//! Shared by every backend so they stamp objects the same way.

use serde_json::{Map, Value};

use crate::{Revision, StoreError};

/// `metadata` of `object`, if it is a map.
pub fn metadata(object: &Value) -> Option<&Map<String, Value>> {
    object.get("metadata")?.as_object()
}

/// Mutable `metadata` of `object`, created if missing.
pub fn metadata_mut(object: &mut Value) -> Result<&mut Map<String, Value>, StoreError> {
    let obj = object
        .as_object_mut()
        .ok_or_else(|| StoreError::BadRequest("object must be a JSON map".into()))?;
    let meta = obj
        .entry("metadata")
        .or_insert_with(|| Value::Object(Map::new()));
    meta.as_object_mut()
        .ok_or_else(|| StoreError::BadRequest("metadata must be a JSON map".into()))
}

/// `metadata.resourceVersion` as a revision; `None` if absent, empty or
/// not a number.
pub fn resource_version(object: &Value) -> Option<Revision> {
    metadata(object)?
        .get("resourceVersion")?
        .as_str()?
        .parse()
        .ok()
}

/// Sets `metadata.resourceVersion` (removes it for `None`).
pub fn set_resource_version(object: &mut Value, revision: Option<Revision>) {
    if let Ok(meta) = metadata_mut(object) {
        match revision {
            Some(rv) => {
                meta.insert("resourceVersion".into(), Value::String(rv.to_string()));
            }
            None => {
                meta.remove("resourceVersion");
            }
        }
    }
}

/// A string field of `metadata`.
pub fn meta_str<'a>(object: &'a Value, field: &str) -> Option<&'a str> {
    metadata(object)?.get(field)?.as_str()
}

/// `metadata.finalizers`, empty if absent.
pub fn finalizers(object: &Value) -> Vec<String> {
    metadata(object)
        .and_then(|m| m.get("finalizers"))
        .and_then(Value::as_array)
        .map(|a| {
            a.iter()
                .filter_map(|v| v.as_str().map(str::to_string))
                .collect()
        })
        .unwrap_or_default()
}

/// Whether deleting `object` (of `resource`) must wait: it has
/// `metadata.finalizers`, or it is a namespace whose `spec.finalizers`
/// still name the work to do on its content (`kubernetes`: the namespace
/// controller deleting everything in it), as Kubernetes' namespace
/// registry keeps a namespace until both lists are empty.
pub fn deletion_held(resource: &str, object: &Value) -> bool {
    !finalizers(object).is_empty()
        || (resource == "namespaces"
            && object["spec"]["finalizers"]
                .as_array()
                .is_some_and(|f| !f.is_empty()))
}

/// The current time as Kubernetes writes timestamps (RFC 3339, seconds,
/// UTC): `2026-11-23T21:36:30Z`.
pub fn now_rfc3339() -> String {
    jiff::Timestamp::now()
        .strftime("%Y-%m-%dT%H:%M:%SZ")
        .to_string()
}

/// Whether `a` and `b` differ outside `metadata` and `status`: the change
/// that bumps `metadata.generation`.
pub fn spec_changed(a: &Value, b: &Value) -> bool {
    let strip = |v: &Value| -> Map<String, Value> {
        v.as_object()
            .map(|m| {
                m.iter()
                    .filter(|(k, _)| !matches!(k.as_str(), "metadata" | "status"))
                    .map(|(k, v)| (k.clone(), v.clone()))
                    .collect()
            })
            .unwrap_or_default()
    };
    strip(a) != strip(b)
}
