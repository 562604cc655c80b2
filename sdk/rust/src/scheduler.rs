//! Writing a scheduler: implement [`Scheduler`] and export it with
//! [`export_scheduler!`](crate::export_scheduler).
//!
//! The host keeps the node and pod caches. For each pending pod whose
//! `spec.schedulerName` is [`Scheduler::NAME`] it calls
//! [`Scheduler::schedule`] with the pod's requirements and every node with
//! what is already placed on it (bound and assumed pods). It then binds
//! through `pods/binding` and records `Scheduled`, or for
//! [`Decision::Unschedulable`] records `FailedScheduling` with the reasons
//! grouped per class (`0/3 nodes are available: 2 Insufficient cpu, ...`)
//! and retries with backoff. Write reasons in Kubernetes' words so the
//! grouping reads as users expect.

pub use crate::bindings::scheduler::orchd::plugin::scheduling_types::{
    Decision, Label, NodeInfo, PlacedPod, PodAffinityTerm, PodInfo, Rejection, Resources,
    SelectorOperator, SelectorRequirement, SelectorTerm, Taint, TaintEffect, Toleration,
    TolerationOperator, WeightedPodAffinityTerm, WeightedTerm,
};

/// A scheduler plugin.
pub trait Scheduler {
    /// The `spec.schedulerName` this plugin serves (`default-scheduler`).
    const NAME: &'static str;

    /// Decides where `pod` goes among `nodes`, every node in the cluster.
    fn schedule(pod: PodInfo, nodes: Vec<NodeInfo>) -> Decision;
}

impl<T: Scheduler> crate::bindings::scheduler::Guest for T {
    fn scheduler_name() -> String {
        T::NAME.to_owned()
    }

    fn schedule(pod: PodInfo, nodes: Vec<NodeInfo>) -> Decision {
        <T as Scheduler>::schedule(pod, nodes)
    }
}

impl Resources {
    /// Nothing.
    pub const ZERO: Resources = Resources {
        milli_cpu: 0,
        memory_bytes: 0,
        pods: 0,
    };

    /// `self - other` per resource, stopping at zero: a node can be
    /// over-committed when pods were bound by hand past its allocatable.
    pub fn saturating_sub(&self, other: &Resources) -> Resources {
        Resources {
            milli_cpu: self.milli_cpu.saturating_sub(other.milli_cpu),
            memory_bytes: self.memory_bytes.saturating_sub(other.memory_bytes),
            pods: self.pods.saturating_sub(other.pods),
        }
    }

    /// `self + other` per resource.
    pub fn saturating_add(&self, other: &Resources) -> Resources {
        Resources {
            milli_cpu: self.milli_cpu.saturating_add(other.milli_cpu),
            memory_bytes: self.memory_bytes.saturating_add(other.memory_bytes),
            pods: self.pods.saturating_add(other.pods),
        }
    }

    /// Whether every amount of `self` fits in `free`.
    pub fn fits_in(&self, free: &Resources) -> bool {
        self.milli_cpu <= free.milli_cpu
            && self.memory_bytes <= free.memory_bytes
            && self.pods <= free.pods
    }
}

impl NodeInfo {
    /// The value of the node's label `key`.
    pub fn label(&self, key: &str) -> Option<&str> {
        find_label(&self.labels, key)
    }

    /// Allocatable minus what is already requested on the node.
    pub fn free(&self) -> Resources {
        self.allocatable.saturating_sub(&self.requested)
    }
}

impl PodInfo {
    /// The value of the pod's label `key`.
    pub fn label(&self, key: &str) -> Option<&str> {
        find_label(&self.labels, key)
    }

    /// Whether one of the pod's tolerations tolerates `taint`.
    pub fn tolerates(&self, taint: &Taint) -> bool {
        self.tolerations.iter().any(|t| t.tolerates(taint))
    }
}

impl Toleration {
    /// Whether this toleration tolerates `taint`, with Kubernetes' rules:
    /// an empty key with `Exists` matches every key, no effect matches
    /// every effect, `Exists` ignores the value.
    pub fn tolerates(&self, taint: &Taint) -> bool {
        if self.effect.is_some_and(|e| e != taint.effect) {
            return false;
        }
        if !self.key.is_empty() && self.key != taint.key {
            return false;
        }
        match self.operator {
            TolerationOperator::Exists => true,
            TolerationOperator::Equal => self.key == taint.key && self.value == taint.value,
        }
    }
}

impl Rejection {
    /// Rejects `node` for `reason` (`Insufficient cpu`).
    pub fn new(node: impl Into<String>, reason: impl Into<String>) -> Self {
        Rejection {
            node: node.into(),
            reason: reason.into(),
        }
    }
}

impl Label {
    /// A `key=value` label.
    pub fn new(key: impl Into<String>, value: impl Into<String>) -> Self {
        Label {
            key: key.into(),
            value: value.into(),
        }
    }
}

fn find_label<'a>(labels: &'a [Label], key: &str) -> Option<&'a str> {
    labels
        .iter()
        .find(|l| l.key == key)
        .map(|l| l.value.as_str())
}

/// Exports a type implementing [`Scheduler`] as the component's `scheduler`
/// world. Use once per plugin, with a type name (not a path).
#[macro_export]
macro_rules! export_scheduler {
    ($ty:ident) => {
        $crate::bindings::scheduler::export!($ty with_types_in $crate::bindings::scheduler);
    };
}

#[cfg(test)]
mod tests {
    use super::*;

    fn taint(key: &str, value: &str, effect: TaintEffect) -> Taint {
        Taint {
            key: key.into(),
            value: value.into(),
            effect,
        }
    }

    fn toleration(
        key: &str,
        op: TolerationOperator,
        value: &str,
        effect: Option<TaintEffect>,
    ) -> Toleration {
        Toleration {
            key: key.into(),
            operator: op,
            value: value.into(),
            effect,
        }
    }

    #[test]
    fn toleration_rules() {
        let t = taint("gpu", "yes", TaintEffect::NoSchedule);
        assert!(toleration("gpu", TolerationOperator::Equal, "yes", None).tolerates(&t));
        assert!(!toleration("gpu", TolerationOperator::Equal, "no", None).tolerates(&t));
        assert!(toleration("gpu", TolerationOperator::Exists, "", None).tolerates(&t));
        assert!(toleration("", TolerationOperator::Exists, "", None).tolerates(&t));
        assert!(!toleration("", TolerationOperator::Equal, "yes", None).tolerates(&t));
        assert!(
            !toleration(
                "gpu",
                TolerationOperator::Exists,
                "",
                Some(TaintEffect::NoExecute)
            )
            .tolerates(&t)
        );
    }

    #[test]
    fn resources_arithmetic() {
        let a = Resources {
            milli_cpu: 1000,
            memory_bytes: 10,
            pods: 2,
        };
        let b = Resources {
            milli_cpu: 1500,
            memory_bytes: 4,
            pods: 1,
        };
        assert_eq!(
            a.saturating_sub(&b),
            Resources {
                milli_cpu: 0,
                memory_bytes: 6,
                pods: 1
            }
        );
        assert_eq!(a.saturating_add(&b).milli_cpu, 2500);
        assert!(Resources::ZERO.fits_in(&a));
        assert!(!b.fits_in(&a));
    }
}
