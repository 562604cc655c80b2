//! Writing a node policy (the kubelet's lifecycle decisions): implement
//! [`NodePolicy`] and export it with
//! [`export_node_policy!`](crate::export_node_policy).
//!
//! The node agent runs the containers, probes, hooks and timers and keeps
//! every container's history; it asks the policy what an exit leads to
//! ([`NodePolicy::after_exit`]) and what to report of a pod
//! ([`NodePolicy::pod_status`]). Both are pure functions of their
//! arguments: keep no state between calls, since any instance (or a new
//! revision) may answer the next one.

pub use crate::bindings::node_policy::orchd::plugin::node_types::{
    AfterExit, ContainerExit, ContainerState, ContainerView, PodCondition, PodPhase, PodVerdict,
    PodView, RestartPlan, RestartPolicy,
};

/// A node policy plugin.
pub trait NodePolicy {
    /// What `exit` leads to under the pod's restart `policy`.
    fn after_exit(exit: ContainerExit, policy: RestartPolicy) -> AfterExit;
    /// The pod's phase and the conditions the node owns.
    fn pod_status(pod: PodView) -> PodVerdict;
}

impl<T: NodePolicy> crate::bindings::node_policy::Guest for T {
    fn after_exit(exit: ContainerExit, policy: RestartPolicy) -> AfterExit {
        <T as NodePolicy>::after_exit(exit, policy)
    }

    fn pod_status(pod: PodView) -> PodVerdict {
        <T as NodePolicy>::pod_status(pod)
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
