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
    AfterExit, ContainerExit, ContainerState, ContainerView, PodCondition, PodPhase, PodVerdict,
    PodView, PressureVerdict, RestartPolicy, Signal,
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
