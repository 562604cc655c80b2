//! The host side of `world scheduler`: linking a scheduler component, its
//! `log` import, and typed, supervised calls to `scheduler-name` and
//! `schedule`.

use std::sync::Arc;

use wasmtime::component::{ComponentType, HasSelf, Lower, TypedFunc};

use crate::PluginError;
use crate::engine::{Compiled, PluginEngine, one_line};
use crate::sandbox::{HostState, Limits, LogLevel, LogSink};
use crate::supervisor::{Supervised, SupervisorStatus};
use crate::world::World;

#[allow(missing_docs)]
mod bindings {
    wasmtime::component::bindgen!({
        world: "scheduler",
        path: "../../wit",
        additional_derives: [PartialEq],
    });
}

use bindings::orchd::plugin::log;

/// The `log` interface's bindings, shared by every world's bindings so
/// that one implementation serves them all.
#[doc(hidden)]
pub use bindings::orchd::plugin::log as log_bindings;
use bindings::{Scheduler, SchedulerPre};

/// The typed records of the scheduling hot path, as generated from the WIT.
pub mod types {
    pub use super::bindings::orchd::plugin::scheduling_types::{
        ClusterChange, Decision, Label, Node, PlacedPod, PodAffinityTerm, PodInfo, Rejection,
        Resources, SelectorOperator, SelectorRequirement, SelectorTerm, Taint, TaintEffect,
        Toleration, TolerationOperator, WeightedPodAffinityTerm, WeightedTerm,
    };
}

use types::{Decision, Node, PlacedPod, PodInfo};

/// A change to a scheduler's view of the cluster as the host keeps it:
/// `cluster-change` of `scheduling-types` with its records shared, which
/// is how it is lowered (the component sees a `cluster-change`).
///
/// The host's cache, its log of changes and a whole view handed to a new
/// instance all point at the same records: giving a swapped-in revision
/// the view of 5,000 nodes and 20,000 pods is a reference count per
/// record, not a copy of every string in them, and the records are
/// lowered into the plugin's memory straight from the cache's.
#[derive(ComponentType, Lower, Clone, Debug, PartialEq)]
#[component(variant)]
pub enum ViewChange {
    /// A node appeared or changed.
    #[component(name = "node-set")]
    NodeSet(Arc<Node>),
    /// A node is gone (its pods stay counted under its name).
    #[component(name = "node-removed")]
    NodeRemoved(String),
    /// A pod counts on a node (bound, or assumed by the plugin).
    #[component(name = "pod-placed")]
    PodPlaced(Arc<PlacedPod>),
    /// A pod no longer counts anywhere (by `namespace/name`).
    #[component(name = "pod-removed")]
    PodRemoved(String),
}

/// The exports of one scheduler instance.
struct Exports {
    /// As generated from the world.
    bindings: Scheduler,
    /// `update`, typed over the host's shared records instead of the
    /// generated owned ones (type-checked against the component once,
    /// at instantiation).
    update: TypedFunc<(Vec<ViewChange>, bool), ()>,
}

// The scheduling types interface has only types: nothing to implement.
impl bindings::orchd::plugin::scheduling_types::Host for HostState {}

impl log::Host for HostState {
    fn log(&mut self, level: log::Level, message: String) {
        let level = match level {
            log::Level::Debug => LogLevel::Debug,
            log::Level::Info => LogLevel::Info,
            log::Level::Warn => LogLevel::Warn,
            log::Level::Error => LogLevel::Error,
        };
        HostState::log(self, level, &message);
    }
}

/// The name of the pod a new instance is asked to place during warm-up.
pub const WARM_UP_POD: &str = "orchd-warm-up";

/// The pod of the warm-up decision: asks for nothing, fits anywhere.
/// Public so native deciders (tests, the benchmark) can warm up alike.
pub fn warm_up_pod() -> PodInfo {
    PodInfo {
        namespace: "kube-system".into(),
        name: WARM_UP_POD.into(),
        uid: String::new(),
        labels: Vec::new(),
        requests: types::Resources {
            milli_cpu: 0,
            memory_bytes: 0,
            pods: 1,
        },
        node_name: None,
        node_selector: Vec::new(),
        required_node_affinity: Vec::new(),
        preferred_node_affinity: Vec::new(),
        tolerations: Vec::new(),
        host_ports: Vec::new(),
        required_pod_affinity: Vec::new(),
        required_pod_anti_affinity: Vec::new(),
        preferred_pod_affinity: Vec::new(),
        preferred_pod_anti_affinity: Vec::new(),
        owner_uid: None,
    }
}

/// A loaded scheduler plugin: a supervised instance of a component of
/// `world scheduler`.
pub struct SchedulerPlugin {
    inner: Supervised<Exports>,
    scheduler_name: String,
    digest: String,
    /// The instance whose view of the cluster the host has filled.
    synced: Option<u64>,
}

impl SchedulerPlugin {
    /// Links `compiled` as a scheduler called `name` (for logs), starts an
    /// instance, asks it which schedulerName it serves and has it make one
    /// warm-up decision (an empty cluster, a pod that asks for nothing). Fails with a
    /// one-line reason if the component is not a scheduler, imports
    /// something the host does not provide, or cannot start.
    pub fn load(
        engine: &PluginEngine,
        compiled: &Compiled,
        name: &str,
        limits: Limits,
        log: LogSink,
    ) -> Result<Self, PluginError> {
        if compiled.world != World::Scheduler {
            return Err(PluginError::Invalid(format!(
                "{name} is a {} plugin, not a scheduler",
                compiled.world
            )));
        }
        let pre = crate::engine::link(engine, compiled, name, |linker| {
            Scheduler::add_to_linker::<HostState, HasSelf<HostState>>(linker, |s| s)
        })?;
        let pre = SchedulerPre::new(pre).map_err(|e| {
            PluginError::Invalid(format!(
                "{name} does not match world scheduler of orchd:plugin@0.1.0: {}",
                one_line(&e)
            ))
        })?;
        let mut inner = Supervised::new(
            name,
            engine.engine().clone(),
            limits,
            log,
            Box::new(move |store| {
                let instance = pre.instance_pre().instantiate(&mut *store)?;
                let bindings = Scheduler::new(&mut *store, &instance)?;
                let update = instance.get_typed_func(&mut *store, "update")?;
                Ok(Exports { bindings, update })
            }),
        );
        inner.warm()?;
        let scheduler_name = inner.call("scheduler-name", |s, store| {
            s.bindings.call_scheduler_name(store)
        })?;
        if scheduler_name.is_empty() {
            return Err(PluginError::Invalid(format!(
                "{name} returned an empty scheduler-name"
            )));
        }
        // A first decision, in an empty cluster, so a plugin that cannot
        // take changes or decide at all fails here, before it is put in
        // charge. Any answer will do: the first real call resets the view.
        inner.call("update", |s, store| {
            s.update.call(store, (Vec::new(), true))
        })?;
        let decisions = inner.call("schedule", |s, store| {
            s.bindings.call_schedule(store, &[warm_up_pod()])
        })?;
        if decisions.len() != 1 {
            return Err(PluginError::Invalid(format!(
                "{name} answered {} decisions for 1 pod",
                decisions.len()
            )));
        }
        Ok(SchedulerPlugin {
            inner,
            scheduler_name,
            digest: compiled.digest.clone(),
            synced: None,
        })
    }

    /// The schedulerName the plugin serves.
    pub fn scheduler_name(&self) -> &str {
        &self.scheduler_name
    }

    /// The digest of the component.
    pub fn digest(&self) -> &str {
        &self.digest
    }

    /// Asks the plugin again for its schedulerName (a cheap call, useful
    /// to check that the plugin answers).
    pub fn call_scheduler_name(&mut self) -> Result<String, PluginError> {
        self.inner.call("scheduler-name", |s, store| {
            s.bindings.call_scheduler_name(store)
        })
    }

    /// Whether the plugin's view of the cluster must be sent whole before
    /// its next decision: nothing was sent yet, or the instance that had
    /// it is gone (a failure discards it, and a new one starts empty).
    pub fn needs_full_view(&self) -> bool {
        self.synced.is_none() || self.synced != self.inner.instance()
    }

    /// Applies `changes` to the plugin's view (with `reset`, the whole
    /// cluster after emptying it), then decides for each of `pods` in
    /// order. Each call is bounded by the call deadline; synchronous:
    /// call it from a blocking thread. Fails without calling the plugin if
    /// the view is stale and `changes` are not the whole cluster.
    pub fn schedule(
        &mut self,
        changes: &[ViewChange],
        reset: bool,
        pods: &[PodInfo],
    ) -> Result<Vec<Decision>, PluginError> {
        if !reset && self.needs_full_view() {
            return Err(PluginError::Internal(format!(
                "{}: the instance has no view of the cluster; send the whole cluster first",
                self.inner.name()
            )));
        }
        if reset || !changes.is_empty() {
            self.inner.call_preparing("update", |s, store| {
                s.update.call(store, (changes.to_vec(), reset))
            })?;
            self.synced = self.inner.instance();
        }
        if pods.is_empty() {
            return Ok(Vec::new());
        }
        let decisions = self
            .inner
            .call("schedule", |s, store| s.bindings.call_schedule(store, pods))?;
        if decisions.len() != pods.len() {
            // Whatever it assumed is unknown to the host: start it over.
            self.synced = None;
            return Err(PluginError::Invalid(format!(
                "{} answered {} decisions for {} pods",
                self.inner.name(),
                decisions.len(),
                pods.len()
            )));
        }
        Ok(decisions)
    }

    /// Restarts, failures and the last error.
    pub fn status(&self) -> &SupervisorStatus {
        self.inner.status()
    }
}
