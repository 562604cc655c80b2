//! The component glue: the rules work on the SDK's records directly; the
//! eviction thresholds come from `setup`, the pods' use from the `runtime`
//! host calls.

use std::sync::OnceLock;

use orchd_sdk::log;
use orchd_sdk::node_policy::runtime::{list_pod_sandboxes, pod_sandbox_stats};
use orchd_sdk::node_policy::{
    AfterExit, ContainerExit, NodePolicy, PodCgroup, PodResources, PodVerdict, PodView,
    PressureVerdict, RestartPolicy, Signal,
};

use crate::eviction::{self, Thresholds};

static THRESHOLDS: OnceLock<Thresholds> = OnceLock::new();

struct Kubelet;

impl NodePolicy for Kubelet {
    fn setup(config: String) -> Result<(), String> {
        let thresholds = Thresholds::from_config(&config)?;
        let _ = THRESHOLDS.set(thresholds);
        Ok(())
    }

    fn after_exit(exit: ContainerExit, policy: RestartPolicy) -> AfterExit {
        crate::after_exit(&exit, policy, &crate::PROFILE)
    }

    fn pod_status(pod: PodView) -> PodVerdict {
        crate::pod_status(&pod)
    }

    fn pod_cgroup(pod: PodResources) -> PodCgroup {
        crate::cgroups::pod_cgroup(&pod)
    }

    fn check_pressure(signals: Vec<Signal>) -> PressureVerdict {
        let thresholds = THRESHOLDS.get().copied().unwrap_or_default();
        eviction::check(&signals, &thresholds, || {
            let pods = match list_pod_sandboxes() {
                Ok(p) => p,
                Err(e) => {
                    log::warn(&format!("cannot list the node's pods: {e:?}"));
                    return Vec::new();
                }
            };
            pods.into_iter()
                .filter_map(|p| {
                    // A pod that went in between has nothing to evict.
                    let stats = pod_sandbox_stats(&p.uid).ok()?;
                    Some((p, stats.memory_working_set_bytes))
                })
                .collect()
        })
    }
}

orchd_sdk::export_node_policy!(Kubelet);
