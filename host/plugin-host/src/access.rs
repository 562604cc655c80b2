//! What a plugin may do to the cluster's objects, and how its host calls
//! reach them.
//!
//! Every object call a plugin makes is checked against its Plugin's
//! capabilities first (a refused call answers `forbidden` and never reaches
//! the API), then goes through the API server in-process, as a request of
//! its own: the same validation, defaults, optimistic concurrency and
//! status-subresource rules as for kubectl. Nothing a plugin writes goes to
//! the store behind the API's back.

use std::sync::Arc;

use async_trait::async_trait;
use orchd_resources::orchd_v1::PluginCapabilities;
use orchd_resources::{ResourceType, resources};
use serde_json::Value;

use crate::reflector::ObjectCache;

/// The API server as the plugin host calls it: one request, its status
/// code and JSON body. Implemented over the real server by the binary
/// that runs both (so this crate does not depend on the API's crate).
#[async_trait]
pub trait ObjectApi: Send + Sync + 'static {
    /// Sends `method path` with an optional JSON body of `content_type`.
    async fn send(
        &self,
        method: &str,
        path: &str,
        content_type: Option<&str>,
        body: Vec<u8>,
    ) -> (u16, Value);
}

/// Why an object call failed; mirrors the WIT `error` variant.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum AccessError {
    /// 404.
    NotFound(String),
    /// 409: exists already, or a stale resourceVersion.
    Conflict(String),
    /// 400/422.
    Invalid(String),
    /// The plugin's capabilities do not allow it.
    Forbidden(String),
    /// Anything else.
    Internal(String),
}

/// What one plugin may reach: its capabilities and the API.
pub struct ObjectAccess {
    plugin: String,
    capabilities: PluginCapabilities,
    api: Arc<dyn ObjectApi>,
    runtime: tokio::runtime::Handle,
    pub(crate) events: Arc<crate::events::EventRecorder>,
    /// The objects of the resources the controller watches, once its
    /// runner has started: reads are answered from it, writes update it.
    cache: std::sync::RwLock<Option<Arc<ObjectCache>>>,
}

/// Read or write.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Verb {
    /// get, list, watch.
    Read,
    /// create, update, patch, delete.
    Write,
}

impl ObjectAccess {
    /// Access for `plugin` with `capabilities`, through `api`; host calls
    /// block on `runtime` (they run on blocking threads, never on its
    /// workers).
    pub fn new(
        plugin: &str,
        capabilities: PluginCapabilities,
        api: Arc<dyn ObjectApi>,
        runtime: tokio::runtime::Handle,
        events: Arc<crate::events::EventRecorder>,
    ) -> Self {
        ObjectAccess {
            plugin: plugin.into(),
            capabilities,
            api,
            runtime,
            events,
            cache: std::sync::RwLock::new(None),
        }
    }

    /// Answers reads from `cache` (and keeps it up to date with this
    /// plugin's writes) from now on; `None` sends every read to the API.
    pub fn use_cache(&self, cache: Option<Arc<ObjectCache>>) {
        if let Ok(mut slot) = self.cache.write() {
            *slot = cache;
        }
    }

    /// The cache in use, if any.
    pub(crate) fn cache(&self) -> Option<Arc<ObjectCache>> {
        self.cache.read().ok().and_then(|c| c.clone())
    }

    /// Whether the plugin may `verb` objects of `resource`.
    pub fn allows(&self, verb: Verb, resource: &str) -> bool {
        let granted = match verb {
            Verb::Read => &self.capabilities.read,
            Verb::Write => &self.capabilities.write,
        };
        granted.iter().any(|g| g == "*" || g == resource)
    }

    /// Fails unless the plugin may `verb` `resource`.
    pub fn check(&self, verb: Verb, resource: &str) -> Result<(), AccessError> {
        if self.allows(verb, resource) {
            return Ok(());
        }
        let what = match verb {
            Verb::Read => "read",
            Verb::Write => "write",
        };
        Err(AccessError::Forbidden(format!(
            "plugin {} may not {what} {resource} (its Plugin's spec.capabilities.{what} does not list it)",
            self.plugin
        )))
    }

    /// One API call on behalf of the plugin, after the capability check.
    /// Blocks: call it from the plugin's (blocking) thread.
    pub fn call(
        &self,
        verb: Verb,
        resource: &str,
        method: &str,
        path: &str,
        content_type: Option<&str>,
        body: Vec<u8>,
    ) -> Result<Value, AccessError> {
        self.check(verb, resource)?;
        let (code, body) = self
            .runtime
            .block_on(self.api.send(method, path, content_type, body));
        let message = || {
            body["message"]
                .as_str()
                .map(str::to_string)
                .unwrap_or_else(|| format!("HTTP {code}"))
        };
        match code {
            200..=299 => Ok(body),
            404 => Err(AccessError::NotFound(message())),
            409 => Err(AccessError::Conflict(message())),
            400 | 422 => Err(AccessError::Invalid(message())),
            403 => Err(AccessError::Forbidden(message())),
            _ => Err(AccessError::Internal(message())),
        }
    }
}

/// The served resource a store name (`pods`, `deployments.apps`) means.
pub fn resource_type(resource: &str) -> Result<&'static ResourceType, AccessError> {
    resources()
        .iter()
        .find(|r| r.group_resource() == resource && !r.create_only)
        .ok_or_else(|| AccessError::Invalid(format!("no resource {resource:?} is served")))
}

/// The API path of a collection or one object (and a subresource).
pub fn api_path(
    r: &ResourceType,
    namespace: Option<&str>,
    name: Option<&str>,
    subresource: Option<&str>,
) -> Result<String, AccessError> {
    let mut path = if r.group.is_empty() {
        format!("/api/{}", r.version)
    } else {
        format!("/apis/{}/{}", r.group, r.version)
    };
    match (r.namespaced, namespace) {
        (true, Some(ns)) => path.push_str(&format!("/namespaces/{}", segment(ns)?)),
        (true, None) if name.is_some() => {
            return Err(AccessError::Invalid(format!(
                "{} is namespaced: give a namespace",
                r.group_resource()
            )));
        }
        (false, Some(_)) => {
            return Err(AccessError::Invalid(format!(
                "{} is cluster-scoped: give no namespace",
                r.group_resource()
            )));
        }
        _ => {}
    }
    path.push('/');
    path.push_str(r.plural);
    if let Some(name) = name {
        path.push('/');
        path.push_str(segment(name)?);
    }
    if let Some(sub) = subresource {
        path.push('/');
        path.push_str(sub);
    }
    Ok(path)
}

/// A path segment from the plugin: a name, never a path of its own.
fn segment(s: &str) -> Result<&str, AccessError> {
    let ok = !s.is_empty()
        && s.len() <= 253
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b':'));
    if ok && s != "." && s != ".." {
        Ok(s)
    } else {
        Err(AccessError::Invalid(format!(
            "{s:?} is not a valid object name"
        )))
    }
}

/// `k=v` pairs and set expressions pass through the query encoded.
pub fn encode_query(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~') {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paths_follow_the_api_layout_and_refuse_odd_names() {
        let pods = resource_type("pods").unwrap();
        assert_eq!(
            api_path(pods, Some("ns"), Some("p"), Some("status")).unwrap(),
            "/api/v1/namespaces/ns/pods/p/status"
        );
        let deployments = resource_type("deployments.apps").unwrap();
        assert_eq!(
            api_path(deployments, None, None, None).unwrap(),
            "/apis/apps/v1/deployments"
        );
        let nodes = resource_type("nodes").unwrap();
        assert!(api_path(nodes, Some("ns"), Some("n"), None).is_err());
        assert!(api_path(pods, None, Some("p"), None).is_err());
        assert!(api_path(pods, Some("ns"), Some("../x"), None).is_err());
        assert!(api_path(pods, Some(".."), Some("p"), None).is_err());
        assert!(resource_type("widgets").is_err());
        assert!(resource_type("selfsubjectaccessreviews.authorization.k8s.io").is_err());
        assert_eq!(encode_query("app in (a,b)"), "app%20in%20%28a%2Cb%29");
    }
}
