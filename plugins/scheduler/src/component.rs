//! The component glue: WIT records in, plain structs to the algorithm,
//! the decision back out. Conversions move every string and list rather
//! than copy: a call carries every node of the cluster.

use orchd_sdk::scheduler as wit;

use crate::algorithm as alg;

struct DefaultScheduler;

impl wit::Scheduler for DefaultScheduler {
    const NAME: &'static str = crate::SCHEDULER_NAME;

    fn schedule(pod: wit::PodInfo, nodes: Vec<wit::NodeInfo>) -> wit::Decision {
        let pod = pod_info(pod);
        let nodes: Vec<alg::NodeInfo> = nodes.into_iter().map(node_info).collect();
        match alg::schedule_with(&pod, &nodes, &crate::PROFILE) {
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
}

orchd_sdk::export_scheduler!(DefaultScheduler);

fn resources(r: wit::Resources) -> alg::Resources {
    alg::Resources {
        milli_cpu: r.milli_cpu,
        memory_bytes: r.memory_bytes,
        pods: r.pods,
    }
}

fn labels(labels: Vec<wit::Label>) -> Vec<alg::Label> {
    labels
        .into_iter()
        .map(|l| alg::Label {
            key: l.key,
            value: l.value,
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

fn taint(t: wit::Taint) -> alg::Taint {
    alg::Taint {
        key: t.key,
        value: t.value,
        effect: effect(t.effect),
    }
}

fn toleration(t: wit::Toleration) -> alg::Toleration {
    alg::Toleration {
        key: t.key,
        operator: match t.operator {
            wit::TolerationOperator::Exists => alg::TolerationOperator::Exists,
            wit::TolerationOperator::Equal => alg::TolerationOperator::Equal,
        },
        value: t.value,
        effect: t.effect.map(effect),
    }
}

fn term(t: wit::SelectorTerm) -> alg::SelectorTerm {
    alg::SelectorTerm {
        requirements: t
            .requirements
            .into_iter()
            .map(|r| alg::SelectorRequirement {
                key: r.key,
                operator: match r.operator {
                    wit::SelectorOperator::In => alg::SelectorOperator::In,
                    wit::SelectorOperator::NotIn => alg::SelectorOperator::NotIn,
                    wit::SelectorOperator::Exists => alg::SelectorOperator::Exists,
                    wit::SelectorOperator::DoesNotExist => alg::SelectorOperator::DoesNotExist,
                    wit::SelectorOperator::Gt => alg::SelectorOperator::Gt,
                    wit::SelectorOperator::Lt => alg::SelectorOperator::Lt,
                },
                values: r.values,
            })
            .collect(),
    }
}

fn pod_term(t: wit::PodAffinityTerm) -> alg::PodAffinityTerm {
    alg::PodAffinityTerm {
        selector: term(t.selector),
        namespaces: t.namespaces,
        topology_key: t.topology_key,
    }
}

fn pod_terms(terms: Vec<wit::PodAffinityTerm>) -> Vec<alg::PodAffinityTerm> {
    terms.into_iter().map(pod_term).collect()
}

fn weighted_pod_terms(
    terms: Vec<wit::WeightedPodAffinityTerm>,
) -> Vec<alg::WeightedPodAffinityTerm> {
    terms
        .into_iter()
        .map(|w| alg::WeightedPodAffinityTerm {
            weight: w.weight,
            term: pod_term(w.term),
        })
        .collect()
}

fn pod_info(p: wit::PodInfo) -> alg::PodInfo {
    alg::PodInfo {
        namespace: p.namespace,
        name: p.name,
        uid: p.uid,
        labels: labels(p.labels),
        requests: resources(p.requests),
        node_name: p.node_name,
        node_selector: labels(p.node_selector),
        required_node_affinity: p.required_node_affinity.into_iter().map(term).collect(),
        preferred_node_affinity: p
            .preferred_node_affinity
            .into_iter()
            .map(|w| alg::WeightedTerm {
                weight: w.weight,
                term: term(w.term),
            })
            .collect(),
        tolerations: p.tolerations.into_iter().map(toleration).collect(),
        host_ports: p.host_ports,
        required_pod_affinity: pod_terms(p.required_pod_affinity),
        required_pod_anti_affinity: pod_terms(p.required_pod_anti_affinity),
        preferred_pod_affinity: weighted_pod_terms(p.preferred_pod_affinity),
        preferred_pod_anti_affinity: weighted_pod_terms(p.preferred_pod_anti_affinity),
        owner_uid: p.owner_uid,
    }
}

fn node_info(n: wit::NodeInfo) -> alg::NodeInfo {
    alg::NodeInfo {
        name: n.name,
        labels: labels(n.labels),
        allocatable: resources(n.allocatable),
        requested: resources(n.requested),
        taints: n.taints.into_iter().map(taint).collect(),
        unschedulable: n.unschedulable,
        ready: n.ready,
        used_host_ports: n.used_host_ports,
        pods: n
            .pods
            .into_iter()
            .map(|p| alg::PlacedPod {
                namespace: p.namespace,
                labels: labels(p.labels),
                owner_uid: p.owner_uid,
            })
            .collect(),
    }
}
