//! The host side of `world controller`: linking a controller component,
//! its `log`, `events` and `objects` imports (every object call checked
//! against the plugin's capabilities, then sent through the API), and
//! supervised calls to `setup` and `reconcile`.

use std::sync::Arc;

use serde_json::Value;
use wasmtime::component::HasSelf;

use crate::PluginError;
use crate::access::{self, AccessError, ObjectAccess, Verb};
use crate::engine::{Compiled, PluginEngine, one_line};
use crate::events::EventType;
use crate::sandbox::{HostState, Limits, LogSink};
use crate::supervisor::{Supervised, SupervisorStatus};
use crate::world::World;
use orchd_resources::Subresource;

#[allow(missing_docs)]
mod bindings {
    wasmtime::component::bindgen!({
        world: "controller",
        path: "../../wit",
        additional_derives: [PartialEq],
        with: {
            "orchd:plugin/log": crate::scheduler::log_bindings,
        },
    });
}

use bindings::orchd::plugin::{events, objects, types};
use bindings::{Controller, ControllerPre};

/// The controller world's records, as generated from the WIT.
pub mod types_of {
    pub use super::bindings::orchd::plugin::controller_types::{
        ControllerSpec, ReconcileResult, Watch,
    };
    pub use super::bindings::orchd::plugin::types::ObjectRef;
}

use types_of::{ControllerSpec, ObjectRef, ReconcileResult};

impl types::Host for HostState {}
impl bindings::orchd::plugin::controller_types::Host for HostState {}

impl From<AccessError> for types::Error {
    fn from(e: AccessError) -> Self {
        match e {
            AccessError::NotFound(m) => types::Error::NotFound(m),
            AccessError::Conflict(m) => types::Error::Conflict(m),
            AccessError::Invalid(m) => types::Error::Invalid(m),
            AccessError::Forbidden(m) => types::Error::Forbidden(m),
            AccessError::Internal(m) => types::Error::Internal(m),
        }
    }
}

/// The access of an instance; a controller always has one.
fn access_of(state: &HostState) -> Result<Arc<ObjectAccess>, types::Error> {
    state
        .access
        .clone()
        .ok_or_else(|| types::Error::Forbidden("this plugin has no object access".into()))
}

/// Parses a JSON object the plugin sent.
fn parse(json: &str) -> Result<Value, types::Error> {
    match serde_json::from_str::<Value>(json) {
        Ok(v) if v.is_object() => Ok(v),
        Ok(_) => Err(types::Error::Invalid("expected a JSON object".into())),
        Err(e) => Err(types::Error::Invalid(format!("invalid JSON: {e}"))),
    }
}

/// An object as JSON text, with the apiVersion and kind lists leave out.
fn text(object: Value, r: &orchd_resources::ResourceType) -> String {
    crate::reflector::text_of(&object, r)
}

/// Writes `object` (create, update or status update) through the API.
fn write(
    state: &HostState,
    resource: &str,
    object: &str,
    method: &str,
    subresource: Option<&str>,
) -> Result<String, types::Error> {
    write_as(state, resource, resource, object, method, subresource)
}

/// An update of `resource` written as `granted/...`: a plain resource
/// (`namespaces`), or one of its subresources that replace the object
/// (`namespaces/finalize`), which needs a capability of its own, as in
/// Kubernetes' RBAC.
fn update_of(state: &HostState, resource: &str, object: &str) -> Result<String, types::Error> {
    let Some((base, sub)) = resource.split_once('/') else {
        return write(state, resource, object, "PUT", None);
    };
    let r = access::resource_type(base)?;
    let replaces = r
        .subresources
        .iter()
        .any(|s| s.as_str() == sub && matches!(s, Subresource::Status | Subresource::Finalize));
    if !replaces {
        return Err(types::Error::Invalid(format!(
            "{resource:?}: {base} has no subresource {sub:?} that an update writes"
        )));
    }
    write_as(state, resource, base, object, "PUT", Some(sub))
}

/// [`write`], checked against the capability for `granted`.
fn write_as(
    state: &HostState,
    granted: &str,
    resource: &str,
    object: &str,
    method: &str,
    subresource: Option<&str>,
) -> Result<String, types::Error> {
    let access = access_of(state)?;
    access.check(Verb::Write, granted)?;
    let r = access::resource_type(resource)?;
    let value = parse(object)?;
    let namespace = value["metadata"]["namespace"].as_str();
    let name = value["metadata"]["name"].as_str();
    let path = if method == "POST" {
        access::api_path(r, namespace, None, None)?
    } else {
        let name = name.ok_or_else(|| types::Error::Invalid("metadata.name is required".into()))?;
        access::api_path(r, namespace, Some(name), subresource)?
    };
    let stored = access.call(
        Verb::Write,
        granted,
        method,
        &path,
        Some("application/json"),
        // The plugin's own text: checked to be a JSON object above.
        object.as_bytes().to_vec(),
    )?;
    // Read your own writes: the next reconcile sees this version even if
    // the informer has not delivered it yet.
    if let Some(cache) = access.cache() {
        cache.upsert(resource, &stored);
    }
    Ok(text(stored, r))
}

impl objects::Host for HostState {
    fn get(&mut self, key: ObjectRef) -> Result<String, types::Error> {
        let access = access_of(self)?;
        access.check(Verb::Read, &key.resource)?;
        let r = access::resource_type(&key.resource)?;
        let path = access::api_path(r, key.namespace.as_deref(), Some(&key.name), None)?;
        if let Some(cached) = access
            .cache()
            .and_then(|c| c.get(&key.resource, key.namespace.as_deref(), &key.name))
        {
            return match cached {
                Some(text) => Ok(text.to_string()),
                None => Err(types::Error::NotFound(format!(
                    "{} {:?} not found",
                    r.plural, key.name
                ))),
            };
        }
        let object = access.call(Verb::Read, &key.resource, "GET", &path, None, Vec::new())?;
        Ok(text(object, r))
    }

    fn list(
        &mut self,
        resource: String,
        namespace: Option<String>,
        label_selector: String,
    ) -> Result<Vec<String>, types::Error> {
        let access = access_of(self)?;
        access.check(Verb::Read, &resource)?;
        let r = access::resource_type(&resource)?;
        let mut path = access::api_path(r, namespace.as_deref(), None, None)?;
        if let Some(cache) = access.cache() {
            let selector = orchd_store::selector::LabelSelector::parse(&label_selector)
                .map_err(|e| types::Error::Invalid(e.to_string()))?;
            if let Some(items) = cache.list(&resource, namespace.as_deref(), &selector) {
                return Ok(items);
            }
        }
        if !label_selector.is_empty() {
            path.push_str("?labelSelector=");
            path.push_str(&access::encode_query(&label_selector));
        }
        let list = access.call(Verb::Read, &resource, "GET", &path, None, Vec::new())?;
        Ok(list["items"]
            .as_array()
            .cloned()
            .unwrap_or_default()
            .into_iter()
            .map(|item| text(item, r))
            .collect())
    }

    fn create(&mut self, resource: String, object: String) -> Result<String, types::Error> {
        write(self, &resource, &object, "POST", None)
    }

    fn update(&mut self, resource: String, object: String) -> Result<String, types::Error> {
        update_of(self, &resource, &object)
    }

    fn update_status(&mut self, resource: String, object: String) -> Result<String, types::Error> {
        write(self, &resource, &object, "PUT", Some("status"))
    }

    fn patch(&mut self, key: ObjectRef, merge_patch: String) -> Result<String, types::Error> {
        let access = access_of(self)?;
        access.check(Verb::Write, &key.resource)?;
        let r = access::resource_type(&key.resource)?;
        parse(&merge_patch)?;
        let path = access::api_path(r, key.namespace.as_deref(), Some(&key.name), None)?;
        let object = access.call(
            Verb::Write,
            &key.resource,
            "PATCH",
            &path,
            Some("application/merge-patch+json"),
            merge_patch.into_bytes(),
        )?;
        if let Some(cache) = access.cache() {
            cache.upsert(&key.resource, &object);
        }
        Ok(text(object, r))
    }

    fn delete(&mut self, key: ObjectRef) -> Result<(), types::Error> {
        let access = access_of(self)?;
        access.check(Verb::Write, &key.resource)?;
        let r = access::resource_type(&key.resource)?;
        let path = access::api_path(r, key.namespace.as_deref(), Some(&key.name), None)?;
        let answer = access.call(
            Verb::Write,
            &key.resource,
            "DELETE",
            &path,
            Some("application/json"),
            br#"{"propagationPolicy":"Background"}"#.to_vec(),
        )?;
        if let Some(cache) = access.cache() {
            cache.deleted(&key.resource, key.namespace.as_deref(), &key.name, &answer);
        }
        Ok(())
    }
}

impl events::Host for HostState {
    fn record(
        &mut self,
        regarding: ObjectRef,
        event_type: events::EventType,
        reason: String,
        message: String,
    ) {
        // Events are best effort, as in Kubernetes: a plugin without
        // access, or about a resource nobody serves, records nothing.
        let Some(access) = self.access.clone() else {
            return;
        };
        if access.check(Verb::Read, &regarding.resource).is_err() {
            return;
        }
        let Ok(r) = access::resource_type(&regarding.resource) else {
            return;
        };
        // The Event names the object by uid too: `kubectl describe` finds
        // an object's Events by it. An object already gone gets none.
        let uid = access::api_path(
            r,
            regarding.namespace.as_deref(),
            Some(&regarding.name),
            None,
        )
        .ok()
        .and_then(|path| {
            access
                .call(
                    Verb::Read,
                    &regarding.resource,
                    "GET",
                    &path,
                    None,
                    Vec::new(),
                )
                .ok()
        })
        .and_then(|o| o["metadata"]["uid"].as_str().map(str::to_string));
        let object = serde_json::json!({
            "apiVersion": r.api_version(),
            "kind": r.kind,
            "metadata": {"name": regarding.name, "namespace": regarding.namespace, "uid": uid},
        });
        let kind = match event_type {
            events::EventType::Normal => EventType::Normal,
            events::EventType::Warning => EventType::Warning,
        };
        access.events.record(&object, kind, &reason, &message);
    }
}

/// A loaded controller plugin: a supervised instance of a component of
/// `world controller`, initialized with its configuration.
pub struct ControllerPlugin {
    inner: Supervised<Controller>,
    spec: ControllerSpec,
    digest: String,
    access: Arc<ObjectAccess>,
}

impl ControllerPlugin {
    /// Links `compiled` as a controller called `name`, starts an instance
    /// and calls `setup(config)` (every later instance is initialized the
    /// same way). Fails with a one-line reason if the component is not a
    /// controller, does not link, refuses its configuration, or asks to
    /// watch what its capabilities do not let it read.
    pub fn load(
        engine: &PluginEngine,
        compiled: &Compiled,
        name: &str,
        limits: Limits,
        log: LogSink,
        access: Arc<ObjectAccess>,
        config: &str,
    ) -> Result<Self, PluginError> {
        if compiled.world != World::Controller {
            return Err(PluginError::Invalid(format!(
                "{name} is a {} plugin, not a controller",
                compiled.world
            )));
        }
        let pre = crate::engine::link(engine, compiled, name, |linker| {
            Controller::add_to_linker::<HostState, HasSelf<HostState>>(linker, |s| s)
        })?;
        let pre = ControllerPre::new(pre).map_err(|e| {
            PluginError::Invalid(format!(
                "{name} does not match world controller of orchd:plugin@0.1.0: {}",
                one_line(&e)
            ))
        })?;
        // Every instance, the first and each restarted one, is initialized
        // with the configuration; the first one's spec is kept.
        let config = config.to_string();
        let first_spec: Arc<std::sync::Mutex<Option<ControllerSpec>>> = Arc::default();
        let spec_slot = first_spec.clone();
        let mut inner = Supervised::new(
            name,
            engine.engine().clone(),
            limits,
            log,
            Box::new(move |store| {
                let instance = pre.instantiate(&mut *store)?;
                match instance.call_setup(&mut *store, &config)? {
                    Ok(spec) => {
                        if let Ok(mut slot) = spec_slot.lock() {
                            slot.get_or_insert(spec);
                        }
                        Ok(instance)
                    }
                    Err(message) => Err(wasmtime::Error::msg(format!("setup refused: {message}"))),
                }
            }),
        )
        .with_access(access.clone());
        inner.warm()?;
        let spec = first_spec
            .lock()
            .ok()
            .and_then(|mut s| s.take())
            .ok_or_else(|| PluginError::Internal(format!("{name}: setup gave no spec")))?;
        for resource in
            std::iter::once(&spec.primary).chain(spec.watches.iter().map(|w| &w.resource))
        {
            access::resource_type(resource).map_err(|_| {
                PluginError::Invalid(format!("{name} watches {resource:?}, which is not served"))
            })?;
            access.check(Verb::Read, resource).map_err(|e| {
                PluginError::Invalid(format!(
                    "{name} watches {resource}: {}",
                    match e {
                        AccessError::Forbidden(m) => m,
                        other => format!("{other:?}"),
                    }
                ))
            })?;
        }
        for w in &spec.watches {
            let ok = w.map_to == "self"
                || w.map_to == "none"
                || w.map_to == "namespace"
                || w.map_to == "selector"
                || w.map_to == "all"
                || w.map_to
                    .strip_prefix("owner:")
                    .is_some_and(|k| !k.is_empty());
            if !ok {
                return Err(PluginError::Invalid(format!(
                    "{name}: watch of {} maps to {:?}; use self, namespace, selector, all, owner:KIND or none",
                    w.resource, w.map_to
                )));
            }
        }
        Ok(ControllerPlugin {
            inner,
            spec,
            digest: compiled.digest.clone(),
            access,
        })
    }

    /// What the controller asked to watch.
    pub fn spec(&self) -> &ControllerSpec {
        &self.spec
    }

    /// The digest of the component.
    pub fn digest(&self) -> &str {
        &self.digest
    }

    /// Its object access, which the runner gives the cache it fills.
    pub fn access(&self) -> &Arc<ObjectAccess> {
        &self.access
    }

    /// Reconciles `key`: the outer error is the plugin failing (trap,
    /// deadline, memory), the inner one an error the plugin returned.
    /// Synchronous and bounded by the call deadline: call it from a
    /// blocking thread.
    pub fn reconcile(
        &mut self,
        key: &ObjectRef,
    ) -> Result<Result<ReconcileResult, String>, PluginError> {
        self.inner
            .call("reconcile", |c, store| c.call_reconcile(store, key))
    }

    /// Restarts, failures and the last error.
    pub fn status(&self) -> &SupervisorStatus {
        self.inner.status()
    }
}
