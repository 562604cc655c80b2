//! A minimal scheduler plugin: among the nodes with room for the pod,
//! pick the one with the most free CPU; otherwise say why each node
//! was rejected.
//!
//! Build: `cargo build --release --target wasm32-wasip2`, then
//! `orchd plugin install target/wasm32-wasip2/release/my_scheduler.wasm`.
//! Pods opt in with `spec.schedulerName: my-scheduler`.

use orchd_sdk::scheduler::{Decision, NodeInfo, PodInfo, Rejection, Scheduler};

struct MyScheduler;

impl Scheduler for MyScheduler {
    const NAME: &'static str = "my-scheduler";

    fn schedule(pod: &PodInfo, nodes: &[NodeInfo]) -> Decision {
        let mut rejections = Vec::new();
        let mut best: Option<&NodeInfo> = None;
        for node in nodes {
            match rejection(pod, node) {
                Some(reason) => rejections.push(Rejection::new(&node.name, reason)),
                None if best.is_none_or(|b| node.free().milli_cpu > b.free().milli_cpu) => {
                    best = Some(node);
                }
                None => {}
            }
        }
        match best {
            Some(node) => Decision::Bind(node.name.clone()),
            None => Decision::Unschedulable(rejections),
        }
    }
}

/// Why `pod` cannot go to `node`, in Kubernetes' words, or `None`.
fn rejection(pod: &PodInfo, node: &NodeInfo) -> Option<&'static str> {
    if node.unschedulable {
        return Some("node(s) were unschedulable");
    }
    if !node.ready {
        return Some("node(s) were not ready");
    }
    if !pod.requests.fits_in(&node.free()) {
        return Some("Insufficient resources");
    }
    None
}

orchd_sdk::export_scheduler!(MyScheduler);
