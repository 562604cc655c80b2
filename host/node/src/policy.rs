//! The node's lifecycle decisions (what a container's exit leads to, a
//! pod's phase and conditions), asked of the node policy plugin in charge
//! (`world node-policy`; the default is the `kubelet` plugin). While no
//! plugin is in charge (before the plugin manager has loaded one, or with
//! `--no-default-plugins`), or when its call fails, the same default rules
//! linked natively (`orchd-kubelet`) decide: a node keeps restarting
//! crashed containers whatever happens to its policy plugin. The plugin
//! manager records such failures as Events on the Plugin.

use std::sync::Arc;

use orchd_kubelet::Profile;
use orchd_kubelet::eviction::Thresholds;
use orchd_plugin_host::node_policy::types as wit;
use orchd_plugin_host::node_policy::{NodePolicySlot, NodeRuntime, PodSandbox};
use orchd_sdk::node_policy as sdk;

pub use wit::{
    AfterExit, ContainerExit, ContainerResources, ContainerState, ContainerView, PodCgroup,
    PodCondition, PodPhase, PodResources, PodVerdict, PodView, PressureVerdict, RestartPolicy,
    Signal,
};

/// Where the node's lifecycle decisions come from.
#[derive(Clone, Debug)]
pub struct Policy {
    slot: Arc<NodePolicySlot>,
}

impl Policy {
    /// Decisions by the plugin in `slot`, or the built-in rules.
    pub fn new(slot: Arc<NodePolicySlot>) -> Self {
        Policy { slot }
    }

    /// What `exit` leads to under `policy`.
    pub async fn after_exit(&self, exit: &ContainerExit, policy: RestartPolicy) -> AfterExit {
        match self.slot.after_exit(exit, policy).await {
            Some(Ok(answer)) => answer,
            _ => builtin_after_exit(exit, policy),
        }
    }

    /// The pod's phase and the conditions the node owns.
    pub async fn pod_status(&self, pod: &PodView) -> PodVerdict {
        match self.slot.pod_status(pod).await {
            Some(Ok(verdict)) => verdict,
            _ => builtin_pod_status(pod),
        }
    }
}

impl Policy {
    /// What the node's measured `signals` mean: which are past their
    /// thresholds, which pods to evict. The built-in rules use the
    /// kubelet's default thresholds and `node`'s pods.
    pub async fn check_pressure(
        &self,
        signals: &[Signal],
        node: &dyn NodeRuntime,
    ) -> PressureVerdict {
        match self.slot.check_pressure(signals).await {
            Some(Ok(verdict)) => verdict,
            _ => builtin_check_pressure(signals, node),
        }
    }
}

impl Policy {
    /// The cgroup of a pod about to start.
    pub async fn pod_cgroup(&self, pod: &PodResources) -> PodCgroup {
        match self.slot.pod_cgroup(pod).await {
            Some(Ok(cgroup)) => cgroup,
            _ => builtin_pod_cgroup(pod),
        }
    }
}

/// The default cgroup rules, natively.
pub fn builtin_pod_cgroup(pod: &PodResources) -> PodCgroup {
    let pod = sdk::PodResources {
        qos_class: pod.qos_class.clone(),
        containers: pod
            .containers
            .iter()
            .map(|c| sdk::ContainerResources {
                init: c.init,
                cpu_request_millis: c.cpu_request_millis,
                cpu_limit_millis: c.cpu_limit_millis,
                memory_request_bytes: c.memory_request_bytes,
                memory_limit_bytes: c.memory_limit_bytes,
            })
            .collect(),
        overhead_cpu_millis: pod.overhead_cpu_millis,
        overhead_memory_bytes: pod.overhead_memory_bytes,
    };
    let c = orchd_kubelet::cgroups::pod_cgroup(&pod);
    PodCgroup {
        parent: c.parent,
        memory_limit_bytes: c.memory_limit_bytes,
        cpu_shares: c.cpu_shares,
        cpu_limit_millis: c.cpu_limit_millis,
    }
}

/// A pod's resources as its cgroup is set from them.
pub fn pod_resources(pod: &serde_json::Value) -> PodResources {
    let quantity = |v: &serde_json::Value, cpu: bool| -> Option<u64> {
        let text = v
            .as_str()
            .map(str::to_string)
            .or_else(|| v.as_f64().map(|n| n.to_string()))?;
        if cpu {
            orchd_plugin_host::quantity::millicpu(&text).ok()
        } else {
            orchd_plugin_host::quantity::bytes(&text).ok()
        }
    };
    let containers = [("initContainers", true), ("containers", false)]
        .into_iter()
        .flat_map(|(field, init)| {
            pod["spec"][field]
                .as_array()
                .into_iter()
                .flatten()
                .map(move |c| (c, init))
        })
        .map(|(c, init)| {
            let r = &c["resources"];
            ContainerResources {
                init,
                cpu_request_millis: quantity(&r["requests"]["cpu"], true),
                cpu_limit_millis: quantity(&r["limits"]["cpu"], true),
                memory_request_bytes: quantity(&r["requests"]["memory"], false),
                memory_limit_bytes: quantity(&r["limits"]["memory"], false),
            }
        })
        .collect();
    PodResources {
        qos_class: pod["status"]["qosClass"]
            .as_str()
            .unwrap_or("BestEffort")
            .to_string(),
        containers,
        overhead_cpu_millis: quantity(&pod["spec"]["overhead"]["cpu"], true).unwrap_or(0),
        overhead_memory_bytes: quantity(&pod["spec"]["overhead"]["memory"], false).unwrap_or(0),
    }
}

/// The default pressure rules, natively.
pub fn builtin_check_pressure(signals: &[Signal], node: &dyn NodeRuntime) -> PressureVerdict {
    let signals: Vec<sdk::Signal> = signals
        .iter()
        .map(|s| sdk::Signal {
            name: s.name.clone(),
            available_bytes: s.available_bytes,
            capacity_bytes: s.capacity_bytes,
        })
        .collect();
    let verdict = orchd_kubelet::eviction::check(&signals, &Thresholds::default(), || {
        node.pod_sandboxes()
            .into_iter()
            .filter_map(|p: PodSandbox| {
                let used = node.pod_sandbox_stats(&p.uid)?.memory_working_set_bytes;
                Some((
                    sdk::runtime::PodSandbox {
                        uid: p.uid,
                        namespace: p.namespace,
                        name: p.name,
                        qos_class: p.qos_class,
                        priority: p.priority,
                        handler: p.handler,
                        memory_request_bytes: p.memory_request_bytes,
                    },
                    used,
                ))
            })
            .collect()
    });
    PressureVerdict {
        pressed: verdict.pressed,
        evict: verdict
            .evict
            .into_iter()
            .map(|e| wit::Eviction {
                uid: e.uid,
                message: e.message,
            })
            .collect(),
    }
}

/// `spec.restartPolicy` (Kubernetes' default: Always).
pub fn restart_policy(pod: &serde_json::Value) -> RestartPolicy {
    match pod["spec"]["restartPolicy"].as_str() {
        Some("OnFailure") => RestartPolicy::OnFailure,
        Some("Never") => RestartPolicy::Never,
        _ => RestartPolicy::Always,
    }
}

/// The phase as the API writes it.
pub fn phase_name(phase: PodPhase) -> &'static str {
    match phase {
        PodPhase::Pending => "Pending",
        PodPhase::Running => "Running",
        PodPhase::Succeeded => "Succeeded",
        PodPhase::Failed => "Failed",
    }
}

fn to_sdk_policy(p: RestartPolicy) -> sdk::RestartPolicy {
    match p {
        RestartPolicy::Always => sdk::RestartPolicy::Always,
        RestartPolicy::OnFailure => sdk::RestartPolicy::OnFailure,
        RestartPolicy::Never => sdk::RestartPolicy::Never,
    }
}

/// The default rules, natively: the host's records converted to the
/// SDK's and back (the two are generated from the same WIT).
pub fn builtin_after_exit(exit: &ContainerExit, policy: RestartPolicy) -> AfterExit {
    let exit = sdk::ContainerExit {
        name: exit.name.clone(),
        pod: exit.pod.clone(),
        init: exit.init,
        exit_code: exit.exit_code,
        reason: exit.reason.clone(),
        ran_ms: exit.ran_ms,
        restart_count: exit.restart_count,
        backoff_step: exit.backoff_step,
    };
    match orchd_kubelet::after_exit(&exit, to_sdk_policy(policy), &Profile::KUBERNETES) {
        sdk::AfterExit::StayTerminated => AfterExit::StayTerminated,
        sdk::AfterExit::Restart(p) => AfterExit::Restart(wit::RestartPlan {
            delay_ms: p.delay_ms,
            next_step: p.next_step,
            waiting_reason: p.waiting_reason,
            message: p.message,
        }),
    }
}

/// The default phase and conditions, natively.
pub fn builtin_pod_status(pod: &PodView) -> PodVerdict {
    let view = sdk::PodView {
        restart_policy: to_sdk_policy(pod.restart_policy),
        containers: pod
            .containers
            .iter()
            .map(|c| sdk::ContainerView {
                name: c.name.clone(),
                init: c.init,
                state: match c.state {
                    ContainerState::Waiting(ran) => sdk::ContainerState::Waiting(ran),
                    ContainerState::Running(ready) => sdk::ContainerState::Running(ready),
                    ContainerState::Terminated(code) => sdk::ContainerState::Terminated(code),
                },
            })
            .collect(),
    };
    let verdict = orchd_kubelet::pod_status(&view);
    PodVerdict {
        phase: match verdict.phase {
            sdk::PodPhase::Pending => PodPhase::Pending,
            sdk::PodPhase::Running => PodPhase::Running,
            sdk::PodPhase::Succeeded => PodPhase::Succeeded,
            sdk::PodPhase::Failed => PodPhase::Failed,
        },
        conditions: verdict
            .conditions
            .into_iter()
            .map(|c| wit::PodCondition {
                type_: c.type_,
                status: c.status,
                reason: c.reason,
            })
            .collect(),
    }
}

/// The delay before retry `step` of a container that could not be
/// created (image or create errors: the kubelet's image pull backoff,
/// with the CrashLoopBackOff timings), at least 2 s.
pub fn retry_delay(step: u32) -> std::time::Duration {
    std::time::Duration::from_millis(Profile::KUBERNETES.backoff_ms(step).max(2_000))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn a_pods_resources_and_the_builtin_cgroup_rules() {
        let pod = json!({
            "spec": {
                "overhead": {"memory": "1Mi"},
                "initContainers": [{"name": "i", "resources": {"limits": {"cpu": "1", "memory": "128Mi"}}}],
                "containers": [
                    {"name": "a", "resources": {"requests": {"cpu": "250m", "memory": "32Mi"},
                                                "limits": {"cpu": "500m", "memory": "64Mi"}}},
                    {"name": "b", "resources": {"limits": {"cpu": 0.5, "memory": "64Mi"}}}
                ]
            },
            "status": {"qosClass": "Burstable"}
        });
        let r = pod_resources(&pod);
        assert_eq!(r.containers.len(), 3);
        assert!(r.containers[0].init && !r.containers[1].init);
        assert_eq!(r.containers[1].cpu_request_millis, Some(250));
        assert_eq!(r.containers[2].cpu_limit_millis, Some(500));
        assert_eq!(r.overhead_memory_bytes, 1 << 20);
        let c = builtin_pod_cgroup(&r);
        assert_eq!(c.parent, "burstable");
        // max(init 128Mi, 64Mi + 64Mi) + 1Mi overhead.
        assert_eq!(c.memory_limit_bytes, Some((128 << 20) + (1 << 20)));
        assert_eq!(c.cpu_limit_millis, Some(1000));
        let best_effort = pod_resources(&json!({"spec": {"containers": [{"name": "x"}]}}));
        assert_eq!(builtin_pod_cgroup(&best_effort).parent, "besteffort");
    }
}
