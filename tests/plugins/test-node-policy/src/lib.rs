//! A node policy for the tests; not an example to follow.
//!
//! Its behaviour is fixed when it is built, by `ORCHD_NODE_POLICY_MODE`:
//!
//! | mode | behaviour |
//! |---|---|
//! | `trap` (default) | every call panics (a trap in the host's eyes): the node must go on with its built-in rules, and the Plugin must show the failures |
//! | `inspect` | decides as the kubelet plugin, and on every pressure check logs, per pod, what the `runtime`, `cgroups` and `network` host calls report (or how they failed) |

use orchd_kubelet::eviction::{self, Thresholds};
use orchd_sdk::log;
use orchd_sdk::node_policy::{
    AfterExit, ContainerExit, NodePolicy, PodCgroup, PodResources, PodVerdict, PodView,
    PressureVerdict, RestartPolicy, Signal, cgroups, network, runtime,
};

const MODE: &str = match option_env!("ORCHD_NODE_POLICY_MODE") {
    Some(m) => m,
    None => "trap",
};

fn trapping() -> bool {
    MODE != "inspect"
}

struct TestPolicy;

impl NodePolicy for TestPolicy {
    fn after_exit(exit: ContainerExit, policy: RestartPolicy) -> AfterExit {
        if trapping() {
            panic!("trapping on purpose after the exit of {}", exit.name)
        }
        orchd_kubelet::after_exit(&exit, policy, &orchd_kubelet::Profile::KUBERNETES)
    }

    fn pod_status(pod: PodView) -> PodVerdict {
        if trapping() {
            panic!(
                "trapping on purpose in pod-status ({} containers)",
                pod.containers.len()
            )
        }
        orchd_kubelet::pod_status(&pod)
    }

    fn pod_cgroup(pod: PodResources) -> PodCgroup {
        if trapping() {
            panic!(
                "trapping on purpose in pod-cgroup ({} containers)",
                pod.containers.len()
            )
        }
        orchd_kubelet::cgroups::pod_cgroup(&pod)
    }

    fn check_pressure(signals: Vec<Signal>) -> PressureVerdict {
        if trapping() {
            panic!(
                "trapping on purpose in check-pressure ({} signals)",
                signals.len()
            )
        }
        inspect();
        eviction::check(&signals, &Thresholds::default(), Vec::new)
    }
}

/// Logs one line per pod: `inspect: pod NS/NAME: ...`, and one for the
/// node: `inspect: node: ...`.
fn inspect() {
    log::info(&format!(
        "inspect: node: cgroups {:?}, network {:?}",
        cgroups::version(),
        network::node_network()
    ));
    let pods = match runtime::list_pod_sandboxes() {
        Ok(p) => p,
        Err(e) => {
            log::info(&format!("inspect: runtime: {e:?}"));
            return;
        }
    };
    for p in pods {
        log::info(&format!(
            "inspect: pod {}/{}: qos {} handler {}; usage {:?}; cgroup {:?}; network {:?}",
            p.namespace,
            p.name,
            p.qos_class,
            p.handler,
            runtime::pod_sandbox_stats(&p.uid),
            cgroups::pod_cgroup_stats(&p.uid),
            network::pod_network(&p.uid),
        ));
    }
}

orchd_sdk::export_node_policy!(TestPolicy);
