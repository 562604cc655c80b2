//! The baseline of the scheduler benchmark: the default scheduler's
//! algorithm linked natively (`orchd_scheduler`, built with the same
//! release settings as the component), behind the runner's [`Decide`].
//!
//! Like for like: the component receives the host's records through the
//! canonical ABI (copied into its memory, every string and list allocated
//! anew there) and the SDK applies the changes to its view of the cluster
//! and runs the algorithm over it. Here the host's records are borrowed,
//! so they are cloned into the SDK's records instead (one allocation per
//! string and list, as lifting makes), applied to the same SDK view, and
//! decided by the same algorithm.

use orchd_plugin_host::PluginError;
use orchd_plugin_host::runner::Decide;
use orchd_plugin_host::scheduler::ViewChange;
use orchd_plugin_host::scheduler::types as wit;
use orchd_scheduler::algorithm as alg;
use orchd_sdk::scheduler::{self as sdk, Cluster};

/// The default scheduler as native code.
#[derive(Default)]
pub struct NativeScheduler {
    /// The view, once the runner has sent it.
    cluster: Option<Cluster>,
}

impl Decide for NativeScheduler {
    fn scheduler_name(&self) -> &str {
        orchd_scheduler::SCHEDULER_NAME
    }

    fn digest(&self) -> &str {
        "native"
    }

    fn needs_full_view(&self) -> bool {
        self.cluster.is_none()
    }

    fn schedule(
        &mut self,
        changes: &[ViewChange],
        reset: bool,
        pods: &[wit::PodInfo],
    ) -> Result<Vec<wit::Decision>, PluginError> {
        let cluster = match (&mut self.cluster, reset) {
            (slot, true) => slot.get_or_insert_default(),
            (Some(cluster), false) => cluster,
            (None, false) => {
                return Err(PluginError::Internal(
                    "changes sent before the whole view".into(),
                ));
            }
        };
        cluster.update(changes.iter().map(change_of).collect(), reset);
        let pods = pods.iter().map(pod_info).collect();
        let decisions = cluster.decide(pods, |pod, nodes| {
            alg::schedule_with(pod, nodes, &orchd_scheduler::PROFILE)
        });
        Ok(decisions.into_iter().map(decision_of).collect())
    }
}

/// The SDK's decision as the host's record.
pub fn decision_of(decision: alg::Decision) -> wit::Decision {
    match decision {
        alg::Decision::Bind(node) => wit::Decision::Bind(node),
        alg::Decision::Unschedulable(rejections) => wit::Decision::Unschedulable(
            rejections
                .into_iter()
                .map(|r| wit::Rejection {
                    node: r.node,
                    reason: r.reason,
                })
                .collect(),
        ),
    }
}

/// A change as the SDK takes it (a copy, as the component's lifting makes).
pub fn change_of(change: &ViewChange) -> sdk::ClusterChange {
    use sdk::ClusterChange as Sdk;
    match change {
        ViewChange::NodeSet(n) => Sdk::NodeSet(sdk::Node {
            name: n.name.clone(),
            labels: labels(&n.labels),
            allocatable: resources(&n.allocatable),
            taints: n.taints.iter().map(taint).collect(),
            unschedulable: n.unschedulable,
            ready: n.ready,
        }),
        ViewChange::NodeRemoved(name) => Sdk::NodeRemoved(name.clone()),
        ViewChange::PodPlaced(p) => Sdk::PodPlaced(sdk::PlacedPod {
            key: p.key.clone(),
            node: p.node.clone(),
            namespace: p.namespace.clone(),
            labels: labels(&p.labels),
            owner_uid: p.owner_uid.clone(),
            requests: resources(&p.requests),
            host_ports: p.host_ports.clone(),
        }),
        ViewChange::PodRemoved(key) => Sdk::PodRemoved(key.clone()),
    }
}

fn resources(r: &wit::Resources) -> alg::Resources {
    alg::Resources {
        milli_cpu: r.milli_cpu,
        memory_bytes: r.memory_bytes,
        pods: r.pods,
    }
}

fn labels(labels: &[wit::Label]) -> Vec<alg::Label> {
    labels
        .iter()
        .map(|l| alg::Label {
            key: l.key.clone(),
            value: l.value.clone(),
        })
        .collect()
}

fn effect(e: wit::TaintEffect) -> alg::TaintEffect {
    match e {
        wit::TaintEffect::NoSchedule => alg::TaintEffect::NoSchedule,
        wit::TaintEffect::PreferNoSchedule => alg::TaintEffect::PreferNoSchedule,
        wit::TaintEffect::NoExecute => alg::TaintEffect::NoExecute,
    }
}

fn taint(t: &wit::Taint) -> alg::Taint {
    alg::Taint {
        key: t.key.clone(),
        value: t.value.clone(),
        effect: effect(t.effect),
    }
}

fn toleration(t: &wit::Toleration) -> alg::Toleration {
    alg::Toleration {
        key: t.key.clone(),
        operator: match t.operator {
            wit::TolerationOperator::Exists => alg::TolerationOperator::Exists,
            wit::TolerationOperator::Equal => alg::TolerationOperator::Equal,
        },
        value: t.value.clone(),
        effect: t.effect.map(effect),
    }
}

fn term(t: &wit::SelectorTerm) -> alg::SelectorTerm {
    alg::SelectorTerm {
        requirements: t
            .requirements
            .iter()
            .map(|r| alg::SelectorRequirement {
                key: r.key.clone(),
                operator: match r.operator {
                    wit::SelectorOperator::In => alg::SelectorOperator::In,
                    wit::SelectorOperator::NotIn => alg::SelectorOperator::NotIn,
                    wit::SelectorOperator::Exists => alg::SelectorOperator::Exists,
                    wit::SelectorOperator::DoesNotExist => alg::SelectorOperator::DoesNotExist,
                    wit::SelectorOperator::Gt => alg::SelectorOperator::Gt,
                    wit::SelectorOperator::Lt => alg::SelectorOperator::Lt,
                },
                values: r.values.clone(),
            })
            .collect(),
    }
}

fn pod_term(t: &wit::PodAffinityTerm) -> alg::PodAffinityTerm {
    alg::PodAffinityTerm {
        selector: term(&t.selector),
        namespaces: t.namespaces.clone(),
        topology_key: t.topology_key.clone(),
    }
}

fn pod_terms(terms: &[wit::PodAffinityTerm]) -> Vec<alg::PodAffinityTerm> {
    terms.iter().map(pod_term).collect()
}

fn weighted_pod_terms(terms: &[wit::WeightedPodAffinityTerm]) -> Vec<alg::WeightedPodAffinityTerm> {
    terms
        .iter()
        .map(|w| alg::WeightedPodAffinityTerm {
            weight: w.weight,
            term: pod_term(&w.term),
        })
        .collect()
}

/// The pod as the algorithm takes it (a copy, as the component makes).
pub fn pod_info(p: &wit::PodInfo) -> alg::PodInfo {
    alg::PodInfo {
        namespace: p.namespace.clone(),
        name: p.name.clone(),
        uid: p.uid.clone(),
        labels: labels(&p.labels),
        requests: resources(&p.requests),
        node_name: p.node_name.clone(),
        node_selector: labels(&p.node_selector),
        required_node_affinity: p.required_node_affinity.iter().map(term).collect(),
        preferred_node_affinity: p
            .preferred_node_affinity
            .iter()
            .map(|w| alg::WeightedTerm {
                weight: w.weight,
                term: term(&w.term),
            })
            .collect(),
        tolerations: p.tolerations.iter().map(toleration).collect(),
        host_ports: p.host_ports.clone(),
        required_pod_affinity: pod_terms(&p.required_pod_affinity),
        required_pod_anti_affinity: pod_terms(&p.required_pod_anti_affinity),
        preferred_pod_affinity: weighted_pod_terms(&p.preferred_pod_affinity),
        preferred_pod_anti_affinity: weighted_pod_terms(&p.preferred_pod_anti_affinity),
        owner_uid: p.owner_uid.clone(),
    }
}
