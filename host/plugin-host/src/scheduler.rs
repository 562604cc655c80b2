//! The host side of `world scheduler`: linking a scheduler component, its
//! `log` import, and typed, supervised calls to `scheduler-name` and
//! `schedule`.

use wasmtime::component::HasSelf;

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
        Decision, Label, NodeInfo, PlacedPod, PodAffinityTerm, PodInfo, Rejection, Resources,
        SelectorOperator, SelectorRequirement, SelectorTerm, Taint, TaintEffect, Toleration,
        TolerationOperator, WeightedPodAffinityTerm, WeightedTerm,
    };
}

use types::{Decision, NodeInfo, PodInfo};

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
fn warm_up_pod() -> PodInfo {
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
    inner: Supervised<Scheduler>,
    scheduler_name: String,
    digest: String,
}

impl SchedulerPlugin {
    /// Links `compiled` as a scheduler called `name` (for logs), starts an
    /// instance, asks it which schedulerName it serves and has it make one
    /// warm-up decision (a pod that asks for nothing, no nodes). Fails with a
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
            Box::new(move |store| pre.instantiate(store)),
        );
        inner.warm()?;
        let scheduler_name =
            inner.call("scheduler-name", |s, store| s.call_scheduler_name(store))?;
        if scheduler_name.is_empty() {
            return Err(PluginError::Invalid(format!(
                "{name} returned an empty scheduler-name"
            )));
        }
        // A first decision, against no nodes, so a plugin that cannot
        // decide at all fails here, before it is put in charge. Any
        // answer will do; the instance is then fresh again for real work.
        inner.call("schedule", |s, store| {
            s.call_schedule(store, &warm_up_pod(), &[])
        })?;
        Ok(SchedulerPlugin {
            inner,
            scheduler_name,
            digest: compiled.digest.clone(),
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
        self.inner
            .call("scheduler-name", |s, store| s.call_scheduler_name(store))
    }

    /// Decides where `pod` goes among `nodes`. Synchronous and bounded by
    /// the call deadline: call it from a blocking thread.
    pub fn schedule(&mut self, pod: &PodInfo, nodes: &[NodeInfo]) -> Result<Decision, PluginError> {
        self.inner
            .call("schedule", |s, store| s.call_schedule(store, pod, nodes))
    }

    /// Restarts, failures and the last error.
    pub fn status(&self) -> &SupervisorStatus {
        self.inner.status()
    }
}
