//! Object access as typed values (controllers only).
//!
//! Objects cross the host boundary as JSON text; these helpers encode and
//! decode with serde, so a plugin can work with `serde_json::Value`, its own
//! structs, or `k8s-openapi` types. Every call is checked against the
//! plugin's capabilities; reads are served from the host's informer cache.

use serde::Serialize;
use serde::de::DeserializeOwned;
use serde_json::Value;

use crate::bindings::controller::orchd::plugin::objects as wit;

pub use crate::bindings::controller::orchd::plugin::types::{Error, ObjectRef};

impl ObjectRef {
    /// Refers to `name` of `resource` (group-qualified plural, `pods`,
    /// `deployments.apps`) in `namespace`, or cluster-scoped for `None`.
    pub fn new(
        resource: impl Into<String>,
        namespace: Option<&str>,
        name: impl Into<String>,
    ) -> Self {
        ObjectRef {
            resource: resource.into(),
            namespace: namespace.map(str::to_owned),
            name: name.into(),
        }
    }

    /// Refers to a namespaced object.
    pub fn namespaced(
        resource: impl Into<String>,
        namespace: impl Into<String>,
        name: impl Into<String>,
    ) -> Self {
        ObjectRef {
            resource: resource.into(),
            namespace: Some(namespace.into()),
            name: name.into(),
        }
    }

    /// Refers to a cluster-scoped object.
    pub fn cluster(resource: impl Into<String>, name: impl Into<String>) -> Self {
        ObjectRef {
            resource: resource.into(),
            namespace: None,
            name: name.into(),
        }
    }

    /// Refers to `object` (its `metadata.namespace` and `metadata.name`)
    /// as a `resource`; `None` when it has no name.
    pub fn of(resource: impl Into<String>, object: &Value) -> Option<Self> {
        let meta = &object["metadata"];
        Some(ObjectRef {
            resource: resource.into(),
            namespace: meta["namespace"].as_str().map(str::to_owned),
            name: meta["name"].as_str()?.to_owned(),
        })
    }
}

impl std::fmt::Display for ObjectRef {
    /// `resource/namespace/name`, or `resource/name` when cluster-scoped,
    /// for log lines and error messages.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match &self.namespace {
            Some(ns) => write!(f, "{}/{}/{}", self.resource, ns, self.name),
            None => write!(f, "{}/{}", self.resource, self.name),
        }
    }
}

impl Error {
    /// Whether the object does not exist, the usual "already gone" case of
    /// a reconcile.
    pub fn is_not_found(&self) -> bool {
        matches!(self, Error::NotFound(_))
    }

    /// Whether a write lost a race (stale resourceVersion or already
    /// exists): read again and retry.
    pub fn is_conflict(&self) -> bool {
        matches!(self, Error::Conflict(_))
    }
}

/// Reads one object.
pub fn get<T: DeserializeOwned>(object: &ObjectRef) -> Result<T, Error> {
    decode(&wit::get(object)?)
}

/// Lists the objects of `resource`, in one namespace or all (`None`), that
/// match a Kubernetes label selector (`""` for all, `app=web,tier in (a,b)`).
pub fn list<T: DeserializeOwned>(
    resource: &str,
    namespace: Option<&str>,
    label_selector: &str,
) -> Result<Vec<T>, Error> {
    list_filter_map(resource, namespace, label_selector, Some)
}

/// Lists like [`list`], handing each object to `keep` as it is decoded and
/// keeping what it returns. Each object's text is freed as soon as it is
/// decoded, so with a `keep` that drops what the controller does not need
/// (see [`crate::pods::slim`]) a list of thousands of objects fits a
/// plugin's memory limit.
pub fn list_filter_map<T: DeserializeOwned, U>(
    resource: &str,
    namespace: Option<&str>,
    label_selector: &str,
    mut keep: impl FnMut(T) -> Option<U>,
) -> Result<Vec<U>, Error> {
    let mut kept = Vec::new();
    for item in wit::list(resource, namespace, label_selector)? {
        if let Some(u) = keep(decode(&item)?) {
            kept.push(u);
        }
    }
    Ok(kept)
}

/// Creates an object; returns it as stored (with uid, resourceVersion...).
pub fn create<T: Serialize + DeserializeOwned>(resource: &str, object: &T) -> Result<T, Error> {
    decode(&wit::create(resource, &encode(object)?)?)
}

/// Replaces an object; its `metadata.resourceVersion` is a precondition,
/// so a concurrent change fails with [`Error::Conflict`].
/// `resource` may name a subresource that replaces the object, such as
/// `namespaces/finalize` (it needs a write capability of that name).
pub fn update<T: Serialize + DeserializeOwned>(resource: &str, object: &T) -> Result<T, Error> {
    decode(&wit::update(resource, &encode(object)?)?)
}

/// Replaces an object's status subresource.
pub fn update_status<T: Serialize + DeserializeOwned>(
    resource: &str,
    object: &T,
) -> Result<T, Error> {
    decode(&wit::update_status(resource, &encode(object)?)?)
}

/// Applies a JSON merge patch (RFC 7386: objects merge, `null` deletes);
/// returns the patched object.
pub fn patch<T: DeserializeOwned>(object: &ObjectRef, merge_patch: &Value) -> Result<T, Error> {
    decode(&wit::patch(object, &encode(merge_patch)?)?)
}

/// Deletes an object.
pub fn delete(object: &ObjectRef) -> Result<(), Error> {
    wit::delete(object)
}

fn encode<T: Serialize>(value: &T) -> Result<String, Error> {
    // The plugin built a value it cannot express as JSON: its own bug,
    // reported as an invalid request rather than a panic.
    serde_json::to_string(value).map_err(|e| Error::Invalid(format!("encoding object: {e}")))
}

fn decode<T: DeserializeOwned>(json: &str) -> Result<T, Error> {
    // The host sent valid JSON that does not fit the plugin's type, usually
    // a field the plugin's struct requires but the object lacks.
    serde_json::from_str(json).map_err(|e| Error::Internal(format!("decoding object: {e}")))
}

/// Makes `owner` (of `api_version` and `kind`) the controller of the
/// orphan `object` of `resource`, as Kubernetes' controllers adopt what
/// their selector matches; `None` if the object is gone. The object's
/// resourceVersion is a precondition, so one that changed meanwhile
/// (another controller adopted it) is not taken: that is a `Conflict`.
pub fn adopt(
    resource: &str,
    object: &Value,
    owner: &Value,
    api_version: &str,
    kind: &str,
) -> Result<Option<Value>, Error> {
    let mut refs: Vec<Value> = object["metadata"]["ownerReferences"]
        .as_array()
        .cloned()
        .unwrap_or_default();
    refs.push(crate::meta::controller_reference(owner, api_version, kind));
    let change = serde_json::json!({"metadata": {
        "ownerReferences": refs,
        "resourceVersion": object["metadata"]["resourceVersion"],
    }});
    let Some(key) = ObjectRef::of(resource, object) else {
        return Ok(None);
    };
    match patch::<Value>(&key, &change) {
        Ok(adopted) => Ok(Some(adopted)),
        Err(Error::NotFound(_)) => Ok(None),
        Err(e) => Err(e),
    }
}
