//! The host side of `world admission` and the admission chain the API
//! calls ([`orchd_api::admission::Admission`]).
//!
//! * [`AdmissionPlugin`]: one loaded revision of an admission Plugin, its
//!   settings (`spec.admission`: type, order, failure policy, timeout,
//!   rules, selectors) and a pool of supervised instances. A review takes
//!   an idle instance (or starts one, up to [`POOL_SIZE`]) and runs on a
//!   blocking thread under the plugin's deadline, so concurrent API writes
//!   do not queue behind one instance.
//! * [`AdmissionChain`]: the plugins in force, ordered (mutating before
//!   validating; by `order`, then by name). The list is one `Arc` swapped
//!   whole: a review takes the list as it is when the review starts, so
//!   every request is judged entirely by the old or entirely by the new
//!   revision of a plugin, and a swap never fails a request.
//!
//! A call that fails (trap, deadline, memory, a malformed answer) discards
//! that instance (the next call starts a fresh one), is reported to the
//! plugin manager (an Event on the Plugin says why) and is then what the
//! plugin's failure policy says: `Ignore` lets the request go on, `Fail`
//! refuses it with Kubernetes' "failed calling webhook" InternalError.

use std::sync::{Arc, Mutex, RwLock};
use std::time::Duration;

use async_trait::async_trait;
use orchd_api::admission::{
    Admission, AdmissionRequest, Admitted, Operation as ApiOperation, Phase, Refusal,
};
use orchd_resources::orchd_v1::{AdmissionRule, AdmissionSpec};
use orchd_store::{LabelSelector, ObjectKey, Store};
use serde_json::Value;
use tokio::sync::{Semaphore, mpsc};
use wasmtime::component::HasSelf;

use crate::PluginError;
use crate::engine::{Compiled, PluginEngine, one_line};
use crate::sandbox::{HostState, Limits, LogSink};
use crate::supervisor::Supervised;
use crate::world::World;

#[allow(missing_docs)]
mod bindings {
    wasmtime::component::bindgen!({
        world: "admission",
        path: "../../wit",
        with: {
            "orchd:plugin/log": crate::scheduler::log_bindings,
        },
    });
}

use bindings::orchd::plugin::admission_types::{self, Operation};
use bindings::{Admission as AdmissionWorld, AdmissionPre};

impl admission_types::Host for HostState {}
impl bindings::orchd::plugin::types::Host for HostState {}

/// Most instances of one admission plugin revision. A review holds an
/// instance only while the plugin runs, so this bounds how many reviews
/// of the plugin run at once (and how many can be stuck in a slow plugin
/// until its deadline), not how many requests may wait.
pub const POOL_SIZE: usize = 16;

/// Longest a review waits for a free instance of a busy plugin.
pub const QUEUE_LIMIT: Duration = Duration::from_secs(10);

/// Deadline of one review when `timeoutSeconds` is not set.
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(1);

/// What a failed call means for the request.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum FailurePolicy {
    /// Refuse the request (Kubernetes' default).
    Fail,
    /// Go on as if the plugin had allowed it.
    Ignore,
}

/// A Plugin's `spec.admission`, checked.
#[derive(Clone, Debug)]
pub struct AdmissionSettings {
    /// Mutating (before schema validation, may patch) or validating.
    pub phase: Phase,
    /// Position among plugins of the same phase.
    pub order: i32,
    /// What a failed call means.
    pub failure_policy: FailurePolicy,
    /// Deadline of one review.
    pub timeout: Duration,
    /// Writes reviewed (any rule); none, as in Kubernetes, means none.
    pub rules: Vec<AdmissionRule>,
    /// Namespaces reviewed.
    pub namespace_selector: Option<LabelSelector>,
    /// Objects reviewed.
    pub object_selector: Option<LabelSelector>,
}

impl AdmissionSettings {
    /// Checks `spec` (absent: a validating plugin, failing closed with a
    /// 1 s deadline, that reviews nothing until rules name some writes).
    pub fn from_spec(spec: Option<&AdmissionSpec>) -> Result<Self, PluginError> {
        let default = AdmissionSpec::default();
        let spec = spec.unwrap_or(&default);
        let phase = match spec.r#type.as_deref() {
            None | Some("" | "Validating") => Phase::Validating,
            Some("Mutating") => Phase::Mutating,
            Some(other) => {
                return Err(PluginError::Invalid(format!(
                    "spec.admission.type must be Mutating or Validating, not {other:?}"
                )));
            }
        };
        let failure_policy = match spec.failure_policy.as_deref() {
            None | Some("" | "Fail") => FailurePolicy::Fail,
            Some("Ignore") => FailurePolicy::Ignore,
            Some(other) => {
                return Err(PluginError::Invalid(format!(
                    "spec.admission.failurePolicy must be Fail or Ignore, not {other:?}"
                )));
            }
        };
        let timeout = match spec.timeout_seconds {
            None => DEFAULT_TIMEOUT,
            Some(s @ 1..=30) => Duration::from_secs(s as u64),
            Some(s) => {
                return Err(PluginError::Invalid(format!(
                    "spec.admission.timeoutSeconds must be between 1 and 30, not {s}"
                )));
            }
        };
        for rule in &spec.rules {
            for op in &rule.operations {
                if !matches!(op.as_str(), "CREATE" | "UPDATE" | "DELETE" | "*") {
                    return Err(PluginError::Invalid(format!(
                        "spec.admission.rules: unknown operation {op:?} (CREATE, UPDATE, DELETE or *)"
                    )));
                }
            }
        }
        let selector = |s: &Option<orchd_resources::orchd_v1::LabelSelector>, field: &str| {
            s.as_ref()
                .map(|s| {
                    let json = serde_json::to_value(s).unwrap_or(Value::Null);
                    LabelSelector::from_json(&json)
                        .map_err(|e| PluginError::Invalid(format!("spec.admission.{field}: {e}")))
                })
                .transpose()
        };
        Ok(AdmissionSettings {
            phase,
            order: spec.order.unwrap_or(0),
            failure_policy,
            timeout,
            rules: spec.rules.clone(),
            namespace_selector: selector(&spec.namespace_selector, "namespaceSelector")?,
            object_selector: selector(&spec.object_selector, "objectSelector")?,
        })
    }

    /// Whether a write of `operation` on `group`/`resource`(/`sub`)
    /// matches one of the rules.
    pub fn matches_rule(
        &self,
        operation: ApiOperation,
        group: &str,
        resource: &str,
        sub: Option<&str>,
    ) -> bool {
        self.rules.iter().any(|rule| {
            let op = rule
                .operations
                .iter()
                .any(|o| o == "*" || o == operation.as_str());
            let grp = rule.api_groups.iter().any(|g| g == "*" || g == group);
            let res = rule
                .resources
                .iter()
                .any(|r| resource_matches(r, resource, sub));
            op && grp && res
        })
    }
}

/// Kubernetes' resource matching: `pods`, `pods/status`, `*` (every
/// resource, no subresource), `*/*`, `pods/*`, `*/status`.
fn resource_matches(pattern: &str, resource: &str, sub: Option<&str>) -> bool {
    let (p_res, p_sub) = match pattern.split_once('/') {
        Some((r, s)) => (r, Some(s)),
        None => (pattern, None),
    };
    let res_ok = p_res == "*" || p_res == resource;
    let sub_ok = match (p_sub, sub) {
        (None, None) => true,
        (Some("*"), _) => true,
        (Some(p), Some(s)) => p == s,
        _ => false,
    };
    res_ok && sub_ok
}

/// A failed review, for the plugin manager (an Event and the status).
#[derive(Clone, Debug)]
pub struct AdmissionFailure {
    /// The Plugin's name.
    pub plugin: String,
    /// The digest of the revision that failed.
    pub digest: String,
    /// What failed.
    pub error: String,
    /// What it meant for the request, with the failure policy.
    pub message: String,
    /// Whether an instance was discarded (and will be started anew); not
    /// for a call refused while the plugin backs off, or a bad answer.
    pub restarted: bool,
    /// The reason of the Warning Event that reports it
    /// (`AdmissionFailed`; node policies use the same report).
    pub reason: &'static str,
}

type Instance = Supervised<AdmissionWorld>;

/// One loaded revision of an admission plugin, with its pool.
pub struct AdmissionPlugin {
    name: String,
    digest: String,
    revision: i64,
    settings: AdmissionSettings,
    make: Box<dyn Fn() -> Instance + Send + Sync>,
    idle: Mutex<Vec<Instance>>,
    slots: Semaphore,
}

impl AdmissionPlugin {
    /// Links `compiled` as admission plugin `name` and starts one instance
    /// (so a component that cannot start is refused before it takes over).
    /// The call deadline is `settings.timeout`; `limits` gives the memory
    /// cap.
    pub fn load(
        engine: &PluginEngine,
        compiled: &Compiled,
        name: &str,
        revision: i64,
        mut limits: Limits,
        settings: AdmissionSettings,
        log: LogSink,
    ) -> Result<Self, PluginError> {
        if compiled.world != World::Admission {
            return Err(PluginError::Invalid(format!(
                "{name} is a {} plugin, not an admission plugin",
                compiled.world
            )));
        }
        let pre = crate::engine::link(engine, compiled, name, |linker| {
            AdmissionWorld::add_to_linker::<HostState, HasSelf<HostState>>(linker, |s| s)
        })?;
        let pre = AdmissionPre::new(pre).map_err(|e| {
            PluginError::Invalid(format!(
                "{name} does not match world admission of orchd:plugin@0.1.0: {}",
                one_line(&e)
            ))
        })?;
        limits.call_deadline = settings.timeout;
        let wasm = engine.engine().clone();
        let plugin_name = name.to_string();
        let make = Box::new(move || {
            let pre = pre.clone();
            Supervised::new(
                &plugin_name,
                wasm.clone(),
                limits.clone(),
                log.clone(),
                Box::new(move |store| pre.instantiate(store)),
            )
        });
        let mut first = make();
        first.warm()?;
        Ok(AdmissionPlugin {
            name: name.to_string(),
            digest: compiled.digest.clone(),
            revision,
            settings,
            make,
            idle: Mutex::new(vec![first]),
            slots: Semaphore::new(POOL_SIZE),
        })
    }

    /// The Plugin's name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The revision loaded.
    pub fn revision(&self) -> i64 {
        self.revision
    }

    /// The digest of its component.
    pub fn digest(&self) -> &str {
        &self.digest
    }

    /// Its settings.
    pub fn settings(&self) -> &AdmissionSettings {
        &self.settings
    }

    /// Reviews one write on a pooled instance, on a blocking thread.
    async fn call(
        self: &Arc<Self>,
        request: admission_types::AdmissionRequest,
    ) -> Result<admission_types::AdmissionResponse, PluginError> {
        // The deadline bounds the plugin's work, not the wait for a free
        // instance: a burst of writes queues here (each then gets its full
        // deadline) rather than failing for being many. The wait has its
        // own bound, so a plugin that is slow for everyone does not hold
        // requests for ever.
        let permit = tokio::time::timeout(QUEUE_LIMIT, self.slots.acquire())
            .await
            .map_err(|_| PluginError::Deadline {
                plugin: self.name.clone(),
                call: "review (waiting for a free instance)".into(),
                deadline: QUEUE_LIMIT,
            })?
            .map_err(|_| PluginError::Internal("the instance pool is closed".into()))?;
        let taken = self.idle.lock().ok().and_then(|mut idle| idle.pop());
        let mut instance = taken.unwrap_or_else(|| (self.make)());
        let plugin = self.clone();
        let answer = tokio::task::spawn_blocking(move || {
            let answer = instance.call("review", |b, store| b.call_review(store, &request));
            if let Ok(mut idle) = plugin.idle.lock() {
                idle.push(instance);
            }
            answer
        })
        .await
        .map_err(|e| PluginError::Internal(format!("the review stopped: {e}")));
        drop(permit);
        answer?
    }
}

/// The admission plugins in force, as the API calls them.
pub struct AdmissionChain {
    store: Arc<dyn Store>,
    plugins: RwLock<Arc<Vec<Arc<AdmissionPlugin>>>>,
    failures: Mutex<Option<mpsc::UnboundedSender<AdmissionFailure>>>,
}

impl std::fmt::Debug for AdmissionChain {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let names: Vec<String> = self
            .snapshot()
            .iter()
            .map(|p| format!("{}@{}", p.name, p.revision))
            .collect();
        f.debug_struct("AdmissionChain")
            .field("plugins", &names)
            .finish()
    }
}

impl AdmissionChain {
    /// An empty chain; namespace labels (for namespace selectors) are read
    /// from `store`.
    pub fn new(store: Arc<dyn Store>) -> Arc<Self> {
        Arc::new(AdmissionChain {
            store,
            plugins: RwLock::new(Arc::new(Vec::new())),
            failures: Mutex::new(None),
        })
    }

    /// Failed reviews are sent to `to` from now on.
    pub fn report_failures_to(&self, to: mpsc::UnboundedSender<AdmissionFailure>) {
        if let Ok(mut f) = self.failures.lock() {
            *f = Some(to);
        }
    }

    /// The plugins in force now, in chain order.
    pub fn snapshot(&self) -> Arc<Vec<Arc<AdmissionPlugin>>> {
        match self.plugins.read() {
            Ok(p) => p.clone(),
            Err(poisoned) => poisoned.into_inner().clone(),
        }
    }

    /// Puts `plugin` in force, replacing the revision of the same name in
    /// one step. Reviews already under way finish with what they started
    /// with.
    pub fn install(&self, plugin: Arc<AdmissionPlugin>) {
        self.edit(|list| {
            list.retain(|p| p.name != plugin.name);
            list.push(plugin);
        });
    }

    /// Takes plugin `name` out of the chain.
    pub fn remove(&self, name: &str) {
        self.edit(|list| list.retain(|p| p.name != name));
    }

    fn edit(&self, change: impl FnOnce(&mut Vec<Arc<AdmissionPlugin>>)) {
        let mut guard = match self.plugins.write() {
            Ok(g) => g,
            Err(poisoned) => poisoned.into_inner(),
        };
        let mut list: Vec<Arc<AdmissionPlugin>> = guard.as_ref().clone();
        change(&mut list);
        list.sort_by(|a, b| (a.settings.order, &a.name).cmp(&(b.settings.order, &b.name)));
        *guard = Arc::new(list);
    }

    fn report(&self, failure: AdmissionFailure) {
        if let Ok(f) = self.failures.lock()
            && let Some(tx) = f.as_ref()
        {
            let _ = tx.send(failure);
        }
    }

    /// The labels of the request's namespace (a Namespace's own labels
    /// when the object is one), read once per review when a namespace
    /// selector needs them.
    async fn namespace_labels(&self, request: &AdmissionRequest) -> Option<Value> {
        if request.group.is_empty() && request.resource == "namespaces" {
            let object = request.object.as_ref().or(request.old_object.as_ref())?;
            return Some(object["metadata"]["labels"].clone());
        }
        let ns = request.namespace.as_deref()?;
        let namespace = self
            .store
            .get(&ObjectKey::cluster("namespaces", ns))
            .await
            .ok()?;
        Some(namespace["metadata"]["labels"].clone())
    }
}

/// orchd's own group is never reviewed: a policy must not be able to lock
/// out its own removal (Kubernetes exempts admissionregistration alike).
fn exempt(group: &str) -> bool {
    group == orchd_resources::orchd_v1::GROUP
}

/// Whether `selector` matches an object's labels (a `metadata.labels` value).
fn selects(selector: &LabelSelector, labels: &Value) -> bool {
    selector.matches_labels(labels.as_object())
}

/// Whether a patch changed what names the object.
fn identity_changed(before: &Value, after: &Value) -> Option<&'static str> {
    ["name", "namespace", "uid"]
        .into_iter()
        .find(|field| before["metadata"][field] != after["metadata"][field])
}

#[async_trait]
impl Admission for AdmissionChain {
    fn wants(
        &self,
        phase: Phase,
        operation: ApiOperation,
        group: &str,
        resource: &str,
        subresource: Option<&str>,
    ) -> bool {
        !exempt(group)
            && self.snapshot().iter().any(|p| {
                p.settings.phase == phase
                    && p.settings
                        .matches_rule(operation, group, resource, subresource)
            })
    }

    async fn review(&self, phase: Phase, request: AdmissionRequest) -> Result<Admitted, Refusal> {
        let mut admitted = Admitted::default();
        if exempt(&request.group) {
            return Ok(admitted);
        }
        let plugins = self.snapshot();
        let mut object = request.object.clone();
        let mut namespace_labels: Option<Option<Value>> = None;
        for plugin in plugins.iter() {
            let settings = &plugin.settings;
            if settings.phase != phase
                || !settings.matches_rule(
                    request.operation,
                    &request.group,
                    &request.resource,
                    request.subresource.as_deref(),
                )
            {
                continue;
            }
            if let Some(selector) = &settings.object_selector {
                // As in Kubernetes: the new or the old object matching is enough.
                let hit = [object.as_ref(), request.old_object.as_ref()]
                    .into_iter()
                    .flatten()
                    .any(|o| selects(selector, &o["metadata"]["labels"]));
                if !hit {
                    continue;
                }
            }
            if let Some(selector) = &settings.namespace_selector
                && (request.namespace.is_some() || request.resource == "namespaces")
            {
                if namespace_labels.is_none() {
                    namespace_labels = Some(self.namespace_labels(&request).await);
                }
                let labels = namespace_labels.clone().flatten().unwrap_or(Value::Null);
                if !selects(selector, &labels) {
                    continue;
                }
            }
            let wit_request = to_wit(&request, object.as_ref());
            let mut restarted = false;
            let outcome = match plugin.call(wit_request).await {
                Ok(answer) => judge(plugin, phase, object.as_ref(), answer),
                Err(e) => {
                    restarted = matches!(
                        e,
                        PluginError::Trap { .. }
                            | PluginError::Deadline { .. }
                            | PluginError::OutOfMemory { .. }
                    ) && !matches!(&e, PluginError::Deadline { call, .. } if call != "review");
                    Err(e.to_string())
                }
            };
            match outcome {
                Ok(Verdict::Allow { patched, warnings }) => {
                    admitted.warnings.extend(warnings);
                    if let Some(p) = patched {
                        object = Some(p);
                        admitted.object = object.clone();
                    }
                }
                Ok(Verdict::Deny { message, warnings }) => {
                    admitted.warnings.extend(warnings);
                    return Err(Refusal::Denied {
                        plugin: plugin.name.clone(),
                        message,
                    });
                }
                Err(error) => {
                    let policy = settings.failure_policy;
                    let outcome = match policy {
                        FailurePolicy::Ignore => {
                            "failurePolicy Ignore: the request was let through"
                        }
                        FailurePolicy::Fail => "failurePolicy Fail: the request was refused",
                    };
                    self.report(AdmissionFailure {
                        plugin: plugin.name.clone(),
                        digest: plugin.digest.clone(),
                        error: error.clone(),
                        message: format!("{}; {outcome}", stable(&error)),
                        restarted,
                        reason: "AdmissionFailed",
                    });
                    if policy == FailurePolicy::Fail {
                        return Err(Refusal::Failed {
                            plugin: plugin.name.clone(),
                            message: error,
                        });
                    }
                }
            }
        }
        Ok(admitted)
    }
}

/// An error message without the parts that change from call to call
/// (backoff delays), so repeated failures make one Event with a count.
fn stable(error: &str) -> String {
    match error.find(" is backing off after ") {
        Some(_) => match error.find("last error: ") {
            Some(i) => error[i + "last error: ".len()..]
                .trim_end_matches(')')
                .to_string(),
            None => error.to_string(),
        },
        None => error.to_string(),
    }
}

/// A plugin's answer, checked.
enum Verdict {
    Allow {
        patched: Option<Value>,
        warnings: Vec<String>,
    },
    Deny {
        message: String,
        warnings: Vec<String>,
    },
}

/// Checks an answer: a denial, or an allowance with (mutating plugins
/// only) a patch that applies and leaves the object's identity alone.
/// A malformed answer is the plugin's failure.
fn judge(
    plugin: &AdmissionPlugin,
    phase: Phase,
    object: Option<&Value>,
    answer: admission_types::AdmissionResponse,
) -> Result<Verdict, String> {
    let warnings = answer.warnings;
    if !answer.allowed {
        return Ok(Verdict::Deny {
            message: answer.message,
            warnings,
        });
    }
    let Some(patch_text) = answer.patch.filter(|p| !p.trim().is_empty()) else {
        return Ok(Verdict::Allow {
            patched: None,
            warnings,
        });
    };
    if phase == Phase::Validating {
        return Err(format!(
            "plugin {} is validating but answered a patch (set spec.admission.type: Mutating)",
            plugin.name
        ));
    }
    let Some(current) = object else {
        return Err(format!(
            "plugin {} answered a patch for a delete",
            plugin.name
        ));
    };
    let patch: Value = serde_json::from_str(&patch_text).map_err(|e| {
        format!(
            "plugin {} answered a patch that is not JSON: {e}",
            plugin.name
        )
    })?;
    let patched = orchd_patch::json_patch(current, &patch)
        .map_err(|e| format!("plugin {}'s JSON patch does not apply: {e}", plugin.name))?;
    if let Some(field) = identity_changed(current, &patched) {
        return Err(format!(
            "plugin {}'s patch changes metadata.{field}, which admission may not change",
            plugin.name
        ));
    }
    Ok(Verdict::Allow {
        patched: Some(patched),
        warnings,
    })
}

/// The WIT request for `request`, with `object` as the plugins before
/// this one left it.
fn to_wit(request: &AdmissionRequest, object: Option<&Value>) -> admission_types::AdmissionRequest {
    let resource = if request.group.is_empty() {
        request.resource.clone()
    } else {
        format!("{}.{}", request.resource, request.group)
    };
    admission_types::AdmissionRequest {
        uid: request.uid.clone(),
        resource,
        sub_resource: request.subresource.clone(),
        namespace: request.namespace.clone(),
        name: request.name.clone(),
        operation: match request.operation {
            ApiOperation::Create => Operation::Create,
            ApiOperation::Update => Operation::Update,
            ApiOperation::Delete => Operation::Delete,
        },
        object: object.map(Value::to_string),
        old_object: request.old_object.as_ref().map(Value::to_string),
        // orchd has no authentication yet: every request is anonymous.
        user: "system:anonymous".into(),
        dry_run: request.dry_run,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use orchd_resources::orchd_v1::LabelSelector as Selector;

    fn rule(ops: &[&str], groups: &[&str], resources: &[&str]) -> AdmissionRule {
        AdmissionRule {
            operations: ops.iter().map(|s| s.to_string()).collect(),
            api_groups: groups.iter().map(|s| s.to_string()).collect(),
            resources: resources.iter().map(|s| s.to_string()).collect(),
        }
    }

    #[test]
    fn rules_match_as_kubernetes_matches_them() {
        let spec = AdmissionSpec {
            rules: vec![
                rule(&["CREATE", "UPDATE"], &[""], &["pods"]),
                rule(&["*"], &["apps"], &["deployments", "*/scale"]),
            ],
            ..Default::default()
        };
        let s = AdmissionSettings::from_spec(Some(&spec)).unwrap();
        assert!(s.matches_rule(ApiOperation::Create, "", "pods", None));
        assert!(!s.matches_rule(ApiOperation::Delete, "", "pods", None));
        assert!(!s.matches_rule(ApiOperation::Update, "", "pods", Some("status")));
        assert!(!s.matches_rule(ApiOperation::Create, "apps", "pods", None));
        assert!(s.matches_rule(ApiOperation::Delete, "apps", "deployments", None));
        assert!(s.matches_rule(ApiOperation::Update, "apps", "statefulsets", Some("scale")));
        assert!(!s.matches_rule(ApiOperation::Update, "apps", "statefulsets", None));
        // As in Kubernetes, a plugin without rules reviews nothing.
        let none = AdmissionSettings::from_spec(None).unwrap();
        assert!(!none.matches_rule(ApiOperation::Create, "", "pods", None));
        let every = AdmissionSettings::from_spec(Some(&AdmissionSpec {
            rules: vec![rule(&["*"], &["*"], &["*"])],
            ..Default::default()
        }))
        .unwrap();
        assert!(every.matches_rule(ApiOperation::Delete, "batch", "jobs", None));
        assert!(!every.matches_rule(ApiOperation::Update, "batch", "jobs", Some("status")));
    }

    #[test]
    fn settings_default_and_refuse_nonsense() {
        let s = AdmissionSettings::from_spec(None).unwrap();
        assert_eq!(s.phase, Phase::Validating);
        assert_eq!(s.failure_policy, FailurePolicy::Fail);
        assert_eq!(s.timeout, DEFAULT_TIMEOUT);
        let bad = |spec: AdmissionSpec| AdmissionSettings::from_spec(Some(&spec)).unwrap_err();
        assert!(
            bad(AdmissionSpec {
                r#type: Some("Sometimes".into()),
                ..Default::default()
            })
            .to_string()
            .contains("Mutating or Validating")
        );
        assert!(
            bad(AdmissionSpec {
                timeout_seconds: Some(0),
                ..Default::default()
            })
            .to_string()
            .contains("between 1 and 30")
        );
        assert!(
            bad(AdmissionSpec {
                rules: vec![rule(&["CONNECT"], &["*"], &["*"])],
                ..Default::default()
            })
            .to_string()
            .contains("CONNECT")
        );
        let selected = AdmissionSettings::from_spec(Some(&AdmissionSpec {
            failure_policy: Some("Ignore".into()),
            object_selector: Some(Selector {
                match_labels: Some([("team".to_string(), "a".to_string())].into()),
                ..Default::default()
            }),
            ..Default::default()
        }))
        .unwrap();
        assert_eq!(selected.failure_policy, FailurePolicy::Ignore);
        let sel = selected.object_selector.unwrap();
        assert!(selects(&sel, &serde_json::json!({"team": "a"})));
        assert!(!selects(&sel, &serde_json::json!({"team": "b"})));
        assert!(!selects(&sel, &Value::Null));
    }

    #[test]
    fn backoff_errors_read_as_their_cause() {
        let e = "plugin slow is backing off after 3 failures in a row (next start in 171 ms; last error: plugin slow exceeded its 1000 ms deadline in review)";
        assert_eq!(
            stable(e),
            "plugin slow exceeded its 1000 ms deadline in review"
        );
        assert_eq!(stable("plugin x trapped"), "plugin x trapped");
    }

    #[test]
    fn identity_fields_are_guarded() {
        let a = serde_json::json!({"metadata": {"name": "a", "namespace": "n"}});
        let b = serde_json::json!({"metadata": {"name": "b", "namespace": "n"}});
        assert_eq!(identity_changed(&a, &b), Some("name"));
        assert_eq!(identity_changed(&a, &a), None);
    }
}
