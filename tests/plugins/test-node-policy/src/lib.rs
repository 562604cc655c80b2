//! A node policy for the tests; not an example to follow. Every call
//! panics (a trap in the host's eyes): the node must go on with its
//! built-in rules, and the Plugin must show the failures.

use orchd_sdk::node_policy::{
    AfterExit, ContainerExit, NodePolicy, PodCgroup, PodResources, PodVerdict, PodView,
    PressureVerdict, RestartPolicy, Signal,
};

struct Trapping;

impl NodePolicy for Trapping {
    fn after_exit(exit: ContainerExit, _policy: RestartPolicy) -> AfterExit {
        panic!("trapping on purpose after the exit of {}", exit.name)
    }

    fn pod_status(pod: PodView) -> PodVerdict {
        panic!(
            "trapping on purpose in pod-status ({} containers)",
            pod.containers.len()
        )
    }

    fn pod_cgroup(pod: PodResources) -> PodCgroup {
        panic!(
            "trapping on purpose in pod-cgroup ({} containers)",
            pod.containers.len()
        )
    }

    fn check_pressure(signals: Vec<Signal>) -> PressureVerdict {
        panic!(
            "trapping on purpose in check-pressure ({} signals)",
            signals.len()
        )
    }
}

orchd_sdk::export_node_policy!(Trapping);
