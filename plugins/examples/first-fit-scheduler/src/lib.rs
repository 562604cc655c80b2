//! An example scheduler built from the SDK template: it binds each pod to
//! the first node, by name, that passes the basic filters, which packs
//! pods onto as few nodes as possible.
//!
//! It serves `default-scheduler`, so installing it over the default
//! scheduler swaps the cluster's policy from spreading to bin-packing
//! while pods keep flowing: the hot-swap tests use it as the "other"
//! revision. Building with `ORCHD_SCHEDULER_NAME=...` in the environment
//! serves another name instead, to run it beside the default one.

use orchd_sdk::scheduler::{Decision, NodeInfo, PodInfo, Rejection, Scheduler, TaintEffect};

struct FirstFit;

impl Scheduler for FirstFit {
    const NAME: &'static str = match option_env!("ORCHD_SCHEDULER_NAME") {
        Some(name) => name,
        None => "default-scheduler",
    };

    fn schedule(pod: &PodInfo, nodes: &[NodeInfo]) -> Decision {
        let mut by_name: Vec<&NodeInfo> = nodes.iter().collect();
        by_name.sort_unstable_by(|a, b| a.name.cmp(&b.name));
        let mut rejections = Vec::new();
        for node in by_name {
            match rejection(pod, node) {
                None => return Decision::Bind(node.name.clone()),
                Some(reason) => rejections.push(Rejection::new(&node.name, reason)),
            }
        }
        Decision::Unschedulable(rejections)
    }
}

/// Why `pod` cannot go to `node`, in Kubernetes' words, or `None`.
fn rejection(pod: &PodInfo, node: &NodeInfo) -> Option<String> {
    if node.unschedulable {
        return Some("node(s) were unschedulable".into());
    }
    if !node.ready {
        return Some("node(s) were not ready".into());
    }
    if let Some(t) = node
        .taints
        .iter()
        .find(|t| t.effect != TaintEffect::PreferNoSchedule && !pod.tolerates(t))
    {
        return Some(format!(
            "node(s) had untolerated taint {{{}: {}}}",
            t.key, t.value
        ));
    }
    if pod
        .node_selector
        .iter()
        .any(|l| node.label(&l.key) != Some(l.value.as_str()))
    {
        return Some("node(s) didn't match Pod's node affinity/selector".into());
    }
    let free = node.free();
    if pod.requests.pods.max(1) > free.pods {
        return Some("Too many pods".into());
    }
    if pod.requests.milli_cpu > free.milli_cpu {
        return Some("Insufficient cpu".into());
    }
    if pod.requests.memory_bytes > free.memory_bytes {
        return Some("Insufficient memory".into());
    }
    None
}

orchd_sdk::export_scheduler!(FirstFit);
