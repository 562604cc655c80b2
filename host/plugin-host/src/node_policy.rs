//! The host side of `world node-policy`: the node agent's pod lifecycle
//! decisions (what a container's exit leads to, a pod's phase and
//! conditions, a starting pod's cgroup, what the node's pressure signals
//! mean) asked of a plugin.
//!
//! * [`NodePolicyPlugin`]: one loaded revision and its supervised
//!   instance. Calls are short pure functions, so one instance serves the
//!   whole node, on a blocking thread under the call deadline.
//! * [`NodePolicySlot`]: the revision in charge, shared by the plugin
//!   manager (which puts revisions in and takes them out) and the node
//!   agent (which calls it, and attaches its [`NodeRuntime`] for the
//!   plugins' host calls). A swap replaces the `Arc` in one step: a call
//!   runs entirely on the old or entirely on the new revision, and since
//!   the node keeps all the state, no decision is lost or taken twice.
//! * The `runtime`, `cgroups` and `network` host calls (the node's pods
//!   and what they use, their cgroups, their network), capabilities: only
//!   a Plugin whose `spec.capabilities.hostCalls` names the interface may
//!   call it; others get `forbidden`.
//!
//! A failed call (trap, deadline, memory, or no plugin in charge) is the
//! caller's to handle: the node agent falls back on the built-in rules for
//! that decision. Failures are reported to the manager, which records them
//! as Events on the Plugin and counts restarts in its status.

use std::sync::{Arc, Mutex, RwLock};

use tokio::sync::mpsc;
use wasmtime::component::HasSelf;

use crate::PluginError;
use crate::admission::AdmissionFailure;
use crate::engine::{Compiled, PluginEngine, one_line};
use crate::sandbox::{HostState, Limits, LogSink};
use crate::supervisor::Supervised;
use crate::world::World;

#[allow(missing_docs)]
mod bindings {
    wasmtime::component::bindgen!({
        world: "node-policy",
        path: "../../wit",
        with: {
            "orchd:plugin/log": crate::scheduler::log_bindings,
        },
    });
}

/// The records of the `cgroups` host calls.
pub use bindings::orchd::plugin::cgroups::{CgroupStats, CgroupVersion};
/// The records of the `network` host calls.
pub use bindings::orchd::plugin::network::{NodeNetworkInfo, PodNetworkInfo};
/// The typed records of `interface node-types`.
pub use bindings::orchd::plugin::node_types as types;
/// The records of the `runtime` host calls.
pub use bindings::orchd::plugin::runtime::{PodSandbox, PodUsage};
use bindings::orchd::plugin::types::Error as WitError;
use bindings::{NodePolicy as NodePolicyWorld, NodePolicyPre};
use types::{
    AfterExit, ContainerExit, PodCgroup, PodResources, PodVerdict, PodView, PressureVerdict,
    RestartPolicy, Signal,
};

impl types::Host for HostState {}
impl bindings::orchd::plugin::types::Host for HostState {}

/// The host call grants a node policy may be given, one per interface.
pub const HOST_CALL_GRANTS: [&str; 3] = ["runtime", "cgroups", "network"];

/// What the node agent answers the `runtime`, `cgroups` and `network`
/// host calls with.
pub trait NodeRuntime: Send + Sync {
    /// The pods the node runs now.
    fn pod_sandboxes(&self) -> Vec<PodSandbox>;
    /// What pod `uid` uses now; `None` if the node does not run it.
    fn pod_sandbox_stats(&self, uid: &str) -> Option<PodUsage>;
    /// The machine's cgroup hierarchy.
    fn cgroup_version(&self) -> CgroupVersion;
    /// Pod `uid`'s cgroup; `None` if it has none.
    fn pod_cgroup_stats(&self, uid: &str) -> Option<CgroupStats>;
    /// The node's pod network.
    fn node_network(&self) -> NodeNetworkInfo;
    /// Pod `uid`'s network; `None` if the node does not run it.
    fn pod_network(&self, uid: &str) -> Option<PodNetworkInfo>;
}

/// A node policy instance's way to the node.
pub struct NodeAccess {
    plugin: String,
    /// The interfaces it was granted (of [`HOST_CALL_GRANTS`]).
    granted: Vec<String>,
    runtime: Arc<RwLock<Option<Arc<dyn NodeRuntime>>>>,
}

impl NodeAccess {
    /// The node, if `interface` was granted.
    fn node(&self, interface: &str) -> Result<Arc<dyn NodeRuntime>, WitError> {
        if !self.granted.iter().any(|g| g == interface) {
            return Err(WitError::Forbidden(format!(
                "plugin {} may not call the node's {interface}: its spec.capabilities.hostCalls does not name {interface:?}",
                self.plugin
            )));
        }
        let runtime = match self.runtime.read() {
            Ok(r) => r.clone(),
            Err(poisoned) => poisoned.into_inner().clone(),
        };
        runtime.ok_or_else(|| WitError::Internal("no node agent runs in this process".into()))
    }
}

impl HostState {
    fn node(&self, interface: &str) -> Result<Arc<dyn NodeRuntime>, WitError> {
        self.node
            .as_ref()
            .ok_or_else(|| WitError::Internal("not a node policy".into()))?
            .node(interface)
    }
}

impl bindings::orchd::plugin::runtime::Host for HostState {
    fn list_pod_sandboxes(&mut self) -> Result<Vec<PodSandbox>, WitError> {
        Ok(self.node("runtime")?.pod_sandboxes())
    }

    fn pod_sandbox_stats(&mut self, uid: String) -> Result<PodUsage, WitError> {
        self.node("runtime")?
            .pod_sandbox_stats(&uid)
            .ok_or_else(|| WitError::NotFound(format!("the node runs no pod {uid}")))
    }
}

impl bindings::orchd::plugin::cgroups::Host for HostState {
    fn version(&mut self) -> Result<CgroupVersion, WitError> {
        Ok(self.node("cgroups")?.cgroup_version())
    }

    fn pod_cgroup_stats(&mut self, uid: String) -> Result<CgroupStats, WitError> {
        self.node("cgroups")?
            .pod_cgroup_stats(&uid)
            .ok_or_else(|| WitError::NotFound(format!("pod {uid} has no cgroup on this node")))
    }
}

impl bindings::orchd::plugin::network::Host for HostState {
    fn node_network(&mut self) -> Result<NodeNetworkInfo, WitError> {
        Ok(self.node("network")?.node_network())
    }

    fn pod_network(&mut self, uid: String) -> Result<PodNetworkInfo, WitError> {
        self.node("network")?
            .pod_network(&uid)
            .ok_or_else(|| WitError::NotFound(format!("the node runs no pod {uid}")))
    }
}

/// The Event reason of a failed node policy call.
pub const FAILED_REASON: &str = "NodePolicyFailed";

/// One loaded revision of a node policy plugin.
pub struct NodePolicyPlugin {
    name: String,
    digest: String,
    revision: i64,
    instance: Arc<Mutex<Supervised<NodePolicyWorld>>>,
}

impl NodePolicyPlugin {
    /// Links `compiled` as node policy `name` and starts its instance (so
    /// a component that cannot start, or whose `setup` refuses `config`,
    /// is refused before it takes over). Its `runtime` host calls reach
    /// the node attached to `slot`, if `host_calls` grants them.
    #[allow(clippy::too_many_arguments)]
    pub fn load(
        engine: &PluginEngine,
        compiled: &Compiled,
        name: &str,
        revision: i64,
        limits: Limits,
        log: LogSink,
        config: &str,
        host_calls: &[String],
        slot: &NodePolicySlot,
    ) -> Result<Self, PluginError> {
        if compiled.world != World::NodePolicy {
            return Err(PluginError::Invalid(format!(
                "{name} is a {} plugin, not a node policy",
                compiled.world
            )));
        }
        let pre = crate::engine::link(engine, compiled, name, |linker| {
            NodePolicyWorld::add_to_linker::<HostState, HasSelf<HostState>>(linker, |s| s)
        })?;
        let pre = NodePolicyPre::new(pre).map_err(|e| {
            PluginError::Invalid(format!(
                "{name} does not match world node-policy of orchd:plugin@0.1.0: {}",
                one_line(&e)
            ))
        })?;
        let access = Arc::new(NodeAccess {
            plugin: name.to_string(),
            granted: host_calls.to_vec(),
            runtime: slot.runtime.clone(),
        });
        let config = config.to_string();
        // Every instance, the first and each restarted one, gets the
        // configuration before its first decision.
        let mut instance = Supervised::new(
            name,
            engine.engine().clone(),
            limits,
            log,
            Box::new(move |store| {
                store.data_mut().node = Some(access.clone());
                let instance = pre.instantiate(&mut *store)?;
                match instance.call_setup(&mut *store, &config)? {
                    Ok(()) => Ok(instance),
                    Err(message) => Err(wasmtime::Error::msg(format!("setup refused: {message}"))),
                }
            }),
        );
        instance.warm()?;
        Ok(NodePolicyPlugin {
            name: name.to_string(),
            digest: compiled.digest.clone(),
            revision,
            instance: Arc::new(Mutex::new(instance)),
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

    /// What `exit` leads to.
    pub async fn after_exit(
        &self,
        exit: ContainerExit,
        policy: RestartPolicy,
    ) -> Result<AfterExit, PluginError> {
        self.call("after-exit", move |b, store| {
            b.call_after_exit(store, &exit, policy)
        })
        .await
    }

    /// The pod's phase and conditions.
    pub async fn pod_status(&self, pod: PodView) -> Result<PodVerdict, PluginError> {
        self.call("pod-status", move |b, store| b.call_pod_status(store, &pod))
            .await
    }

    /// The cgroup of a pod about to start.
    pub async fn pod_cgroup(&self, pod: PodResources) -> Result<PodCgroup, PluginError> {
        self.call("pod-cgroup", move |b, store| b.call_pod_cgroup(store, &pod))
            .await
    }

    /// What the node's measured signals mean.
    pub async fn check_pressure(
        &self,
        signals: Vec<Signal>,
    ) -> Result<PressureVerdict, PluginError> {
        self.call("check-pressure", move |b, store| {
            b.call_check_pressure(store, &signals)
        })
        .await
    }

    async fn call<R: Send + 'static>(
        &self,
        call: &'static str,
        f: impl FnOnce(&NodePolicyWorld, &mut wasmtime::Store<HostState>) -> wasmtime::Result<R>
        + Send
        + 'static,
    ) -> Result<R, PluginError> {
        let instance = self.instance.clone();
        tokio::task::spawn_blocking(move || {
            let mut instance = instance.lock().map_err(|_| {
                PluginError::Internal("the node policy instance is poisoned".into())
            })?;
            instance.call(call, f)
        })
        .await
        .map_err(|e| PluginError::Internal(format!("the {call} call stopped: {e}")))?
    }
}

/// The node policy in charge, if any.
#[derive(Default)]
pub struct NodePolicySlot {
    current: RwLock<Option<Arc<NodePolicyPlugin>>>,
    failures: Mutex<Option<mpsc::UnboundedSender<AdmissionFailure>>>,
    runtime: Arc<RwLock<Option<Arc<dyn NodeRuntime>>>>,
}

impl std::fmt::Debug for NodePolicySlot {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let current = self.current().map(|p| format!("{}@{}", p.name, p.revision));
        f.debug_struct("NodePolicySlot")
            .field("current", &current)
            .finish()
    }
}

impl NodePolicySlot {
    /// An empty slot: no node policy in charge.
    pub fn new() -> Arc<Self> {
        Arc::new(NodePolicySlot::default())
    }

    /// Answers the plugins' `runtime` host calls with `node` from now on.
    pub fn attach(&self, node: Arc<dyn NodeRuntime>) {
        match self.runtime.write() {
            Ok(mut r) => *r = Some(node),
            Err(poisoned) => *poisoned.into_inner() = Some(node),
        }
    }

    /// Failed calls are sent to `to` from now on.
    pub fn report_failures_to(&self, to: mpsc::UnboundedSender<AdmissionFailure>) {
        if let Ok(mut f) = self.failures.lock() {
            *f = Some(to);
        }
    }

    /// The revision in charge now.
    pub fn current(&self) -> Option<Arc<NodePolicyPlugin>> {
        match self.current.read() {
            Ok(c) => c.clone(),
            Err(poisoned) => poisoned.into_inner().clone(),
        }
    }

    /// Puts `plugin` in charge; calls under way finish on the one before.
    pub fn install(&self, plugin: Arc<NodePolicyPlugin>) {
        match self.current.write() {
            Ok(mut c) => *c = Some(plugin),
            Err(poisoned) => *poisoned.into_inner() = Some(plugin),
        }
    }

    /// Takes plugin `name` out of charge (if it is the one in charge).
    pub fn remove(&self, name: &str) {
        let mut current = match self.current.write() {
            Ok(c) => c,
            Err(poisoned) => poisoned.into_inner(),
        };
        if current.as_ref().is_some_and(|p| p.name == name) {
            *current = None;
        }
    }

    /// What `exit` leads to, per the plugin in charge: `None` without one,
    /// an error (reported) if its call failed.
    pub async fn after_exit(
        &self,
        exit: &ContainerExit,
        policy: RestartPolicy,
    ) -> Option<Result<AfterExit, String>> {
        let plugin = self.current()?;
        let answer = plugin.after_exit(exit.clone(), policy).await;
        Some(self.checked(&plugin, "after-exit", answer))
    }

    /// The pod's phase and conditions, per the plugin in charge: `None`
    /// without one, an error (reported) if its call failed.
    pub async fn pod_status(&self, pod: &PodView) -> Option<Result<PodVerdict, String>> {
        let plugin = self.current()?;
        let answer = plugin.pod_status(pod.clone()).await;
        Some(self.checked(&plugin, "pod-status", answer))
    }

    /// The cgroup of a pod about to start, per the plugin in charge:
    /// `None` without one, an error (reported) if its call failed.
    pub async fn pod_cgroup(&self, pod: &PodResources) -> Option<Result<PodCgroup, String>> {
        let plugin = self.current()?;
        let answer = plugin.pod_cgroup(pod.clone()).await;
        Some(self.checked(&plugin, "pod-cgroup", answer))
    }

    /// What the node's signals mean, per the plugin in charge: `None`
    /// without one, an error (reported) if its call failed.
    pub async fn check_pressure(
        &self,
        signals: &[Signal],
    ) -> Option<Result<PressureVerdict, String>> {
        let plugin = self.current()?;
        let answer = plugin.check_pressure(signals.to_vec()).await;
        Some(self.checked(&plugin, "check-pressure", answer))
    }

    fn checked<R>(
        &self,
        plugin: &NodePolicyPlugin,
        call: &str,
        answer: Result<R, PluginError>,
    ) -> Result<R, String> {
        answer.map_err(|e| {
            // Calls refused while the instance backs off are not new
            // failures: only the ones that cost an instance are reported.
            let restarted = matches!(
                e,
                PluginError::Trap { .. }
                    | PluginError::Deadline { .. }
                    | PluginError::OutOfMemory { .. }
            );
            let error = e.to_string();
            if restarted
                && let Ok(f) = self.failures.lock()
                && let Some(tx) = f.as_ref()
            {
                let _ = tx.send(AdmissionFailure {
                    plugin: plugin.name.clone(),
                    digest: plugin.digest.clone(),
                    error: error.clone(),
                    message: format!(
                        "{call} failed, the node used its built-in rules for this decision: {error}"
                    ),
                    restarted,
                    reason: FAILED_REASON,
                });
            }
            error
        })
    }
}
