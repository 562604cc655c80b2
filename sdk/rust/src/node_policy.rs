//! Writing a node policy (the kubelet's lifecycle decisions): implement
//! [`NodePolicy`] and export it with
//! [`export_node_policy!`](crate::export_node_policy).
//!
//! The node agent runs the containers, probes, hooks, timers and
//! measurements and keeps every container's history; it asks the policy
//! what an exit leads to ([`NodePolicy::after_exit`]), what to report of a
//! pod ([`NodePolicy::pod_status`]), how to set a starting pod's cgroup
//! ([`NodePolicy::pod_cgroup`]) and, every 10 s, what the node's
//! measured signals mean ([`NodePolicy::check_pressure`]). Keep no state
//! between calls but the configuration [`NodePolicy::setup`] receives:
//! any instance (or a new revision) may answer the next one.
//!
//! Host calls, each granted by naming it in the Plugin's
//! `spec.capabilities.hostCalls`: [`runtime`] (the pods the node runs and
//! what they use), [`cgroups`] (their cgroups), [`network`] (the pod
//! network). Without the grant a call answers [`Error::Forbidden`].

pub use crate::bindings::node_policy::orchd::plugin::node_types::{
    AfterExit, ContainerExit, ContainerResources, ContainerState, ContainerView, Eviction,
    PodCgroup, PodCondition, PodPhase, PodResources, PodVerdict, PodView, PressureVerdict,
    RestartPlan, RestartPolicy, Signal,
};
pub use crate::bindings::node_policy::orchd::plugin::types::Error;

/// The node's container runtime (capability `runtime`): the pods it runs
/// ([`runtime::list_pod_sandboxes`]) and what each uses
/// ([`runtime::pod_sandbox_stats`]). Only inside a component.
pub mod runtime {
    pub use crate::bindings::node_policy::orchd::plugin::runtime::{
        PodSandbox, PodUsage, list_pod_sandboxes, pod_sandbox_stats,
    };
}

/// The node's cgroups (capability `cgroups`): the machine's hierarchy
/// ([`cgroups::version`]) and a pod's cgroup ([`cgroups::pod_cgroup_stats`]).
/// Only inside a component.
pub mod cgroups {
    pub use crate::bindings::node_policy::orchd::plugin::cgroups::{
        CgroupStats, CgroupVersion, pod_cgroup_stats, version,
    };
}

/// The node's pod network (capability `network`): the node's side
/// ([`network::node_network`]) and a pod's ([`network::pod_network`]).
/// Only inside a component.
pub mod network {
    pub use crate::bindings::node_policy::orchd::plugin::network::{
        NodeNetworkInfo, PodNetworkInfo, node_network, pod_network,
    };
}

/// A node policy plugin.
pub trait NodePolicy {
    /// Takes the Plugin's `spec.config` (empty when unset), once per
    /// instance; an error refuses the revision.
    fn setup(config: String) -> Result<(), String> {
        let _ = config;
        Ok(())
    }
    /// What `exit` leads to under the pod's restart `policy`.
    fn after_exit(exit: ContainerExit, policy: RestartPolicy) -> AfterExit;
    /// The pod's phase and the conditions the node owns.
    fn pod_status(pod: PodView) -> PodVerdict;
    /// The cgroup of a pod about to start: its QoS parent and limits.
    fn pod_cgroup(pod: PodResources) -> PodCgroup;
    /// Which of the node's measured `signals` are past their thresholds,
    /// and which pods to evict now.
    fn check_pressure(signals: Vec<Signal>) -> PressureVerdict;
}

impl<T: NodePolicy> crate::bindings::node_policy::Guest for T {
    fn setup(config: String) -> Result<(), String> {
        <T as NodePolicy>::setup(config)
    }

    fn after_exit(exit: ContainerExit, policy: RestartPolicy) -> AfterExit {
        <T as NodePolicy>::after_exit(exit, policy)
    }

    fn pod_status(pod: PodView) -> PodVerdict {
        <T as NodePolicy>::pod_status(pod)
    }

    fn pod_cgroup(pod: PodResources) -> PodCgroup {
        <T as NodePolicy>::pod_cgroup(pod)
    }

    fn check_pressure(signals: Vec<Signal>) -> PressureVerdict {
        <T as NodePolicy>::check_pressure(signals)
    }
}

impl PodCondition {
    /// A condition that holds.
    pub fn met(kind: &str) -> Self {
        PodCondition {
            type_: kind.to_string(),
            status: true,
            reason: None,
        }
    }

    /// A condition that does not hold, and why.
    pub fn unmet(kind: &str, reason: &str) -> Self {
        PodCondition {
            type_: kind.to_string(),
            status: false,
            reason: Some(reason.to_string()),
        }
    }
}

/// Exports a type implementing [`NodePolicy`] as the component's
/// `node-policy` world. Use once per plugin, with a type name (not a path).
#[macro_export]
macro_rules! export_node_policy {
    ($ty:ident) => {
        $crate::bindings::node_policy::export!($ty with_types_in $crate::bindings::node_policy);
    };
}
