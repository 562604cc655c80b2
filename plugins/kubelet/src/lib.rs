//! orchd's default node policy: the kubelet's lifecycle rules.
//!
//! Built for `wasm32-wasip2` this crate is a component of
//! `world node-policy`, loaded by `orchd up` as the Plugin `kubelet`;
//! built natively it is the same rules as a library, which the node agent
//! falls back on while no node policy is in charge or when the plugin's
//! call fails (a node must keep restarting crashed containers whatever
//! happens to its policy plugin).
//!
//! The rules, as Kubernetes' kubelet has them:
//! * restart policy `Always` / `OnFailure` / `Never`; an init container
//!   under `Always` restarts only on failure;
//! * CrashLoopBackOff: the first restart at once, then 10 s doubling to
//!   5 min; a run of 10 min forgets the backoff;
//! * the phase from the containers: Pending until the init containers
//!   succeeded and every app container started once; Failed when an init
//!   container failed for good; Succeeded / Failed when every app container
//!   ended for good; Running otherwise;
//! * the conditions the node owns: `PodReadyToStartContainers`,
//!   `Initialized`, `Ready` and `ContainersReady`;
//! * QoS classes' cgroups: where a pod's cgroup goes and its limits
//!   ([`cgroups`]);
//! * node-pressure eviction ([`eviction`]).

pub mod cgroups;
#[cfg(all(target_arch = "wasm32", feature = "component"))]
mod component;
pub mod eviction;

use orchd_sdk::node_policy::{
    AfterExit, ContainerExit, ContainerState, PodCondition, PodPhase, PodVerdict, PodView,
    RestartPlan, RestartPolicy,
};

/// The timings of CrashLoopBackOff.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Profile {
    /// The delay before the second restart (the first is at once).
    pub initial_ms: u64,
    /// The longest delay.
    pub max_ms: u64,
    /// A run this long forgets the backoff.
    pub reset_ms: u64,
}

impl Profile {
    /// The kubelet's: 10 s doubling to 5 min, reset after 10 min.
    pub const KUBERNETES: Profile = Profile {
        initial_ms: 10_000,
        max_ms: 300_000,
        reset_ms: 600_000,
    };

    /// For development loops: every restart after 1 s.
    pub const QUICK: Profile = Profile {
        initial_ms: 1_000,
        max_ms: 1_000,
        reset_ms: 600_000,
    };

    /// The delay before restart number `step + 1`: none for the first,
    /// then `initial`, doubling, up to `max`.
    pub fn backoff_ms(&self, step: u32) -> u64 {
        if step == 0 {
            return 0;
        }
        let factor = 1u64 << (step - 1).min(20);
        self.initial_ms.saturating_mul(factor).min(self.max_ms)
    }
}

/// The profile the component is built with: the kubelet's, or with
/// `ORCHD_KUBELET_PROFILE=quick` set at build time, [`Profile::QUICK`]
/// (both are `world node-policy`, so either replaces the other live).
pub const PROFILE: Profile = match option_env!("ORCHD_KUBELET_PROFILE") {
    Some(p) if same(p, "quick") => Profile::QUICK,
    _ => Profile::KUBERNETES,
};

/// String equality usable in a constant.
const fn same(a: &str, b: &str) -> bool {
    let (a, b) = (a.as_bytes(), b.as_bytes());
    if a.len() != b.len() {
        return false;
    }
    let mut i = 0;
    while i < a.len() {
        if a[i] != b[i] {
            return false;
        }
        i += 1;
    }
    true
}

/// Whether a container that exited with `code` runs again.
fn restarts(policy: RestartPolicy, init: bool, code: i32) -> bool {
    match policy {
        RestartPolicy::Never => false,
        // An init container must succeed once; Always means "until it does".
        RestartPolicy::Always if !init => true,
        RestartPolicy::Always | RestartPolicy::OnFailure => code != 0,
    }
}

/// What `exit` leads to under `policy`, with `profile`'s backoff.
pub fn after_exit(exit: &ContainerExit, policy: RestartPolicy, profile: &Profile) -> AfterExit {
    if !restarts(policy, exit.init, exit.exit_code) {
        return AfterExit::StayTerminated;
    }
    let step = if exit.ran_ms >= profile.reset_ms {
        0
    } else {
        exit.backoff_step
    };
    let delay_ms = profile.backoff_ms(step);
    let (waiting_reason, message) = if delay_ms == 0 {
        ("ContainerCreating".to_string(), None)
    } else {
        (
            "CrashLoopBackOff".to_string(),
            Some(format!(
                "back-off {}s restarting failed container={} pod={}",
                delay_ms.div_ceil(1000),
                exit.name,
                exit.pod
            )),
        )
    };
    AfterExit::Restart(RestartPlan {
        delay_ms,
        next_step: step.saturating_add(1),
        waiting_reason,
        message,
    })
}

/// The pod's phase and the conditions the node owns.
pub fn pod_status(pod: &PodView) -> PodVerdict {
    let inits = pod.containers.iter().filter(|c| c.init);
    let mains: Vec<&ContainerState> = pod
        .containers
        .iter()
        .filter(|c| !c.init)
        .map(|c| &c.state)
        .collect();
    let mut initialized = true;
    let mut init_failed = false;
    for c in inits {
        match c.state {
            ContainerState::Terminated(0) => {}
            ContainerState::Terminated(_) => {
                initialized = false;
                init_failed = true;
            }
            _ => initialized = false,
        }
    }
    let phase = phase(pod.restart_policy, initialized, init_failed, &mains);
    let done = matches!(phase, PodPhase::Succeeded | PodPhase::Failed);
    let ready = !mains.is_empty()
        && mains
            .iter()
            .all(|s| matches!(s, ContainerState::Running(true)));
    let not_ready = if done {
        "PodCompleted"
    } else {
        "ContainersNotReady"
    };
    let condition = |kind: &str, ok: bool, reason: &str| {
        if ok {
            PodCondition::met(kind)
        } else {
            PodCondition::unmet(kind, reason)
        }
    };
    PodVerdict {
        phase,
        conditions: vec![
            condition("PodReadyToStartContainers", !done, "PodCompleted"),
            condition("Initialized", initialized, "ContainersNotInitialized"),
            condition("Ready", ready, not_ready),
            condition("ContainersReady", ready, not_ready),
        ],
    }
}

fn phase(
    policy: RestartPolicy,
    initialized: bool,
    init_failed: bool,
    mains: &[&ContainerState],
) -> PodPhase {
    // An init container that failed for good (no restart pending) fails
    // the pod: under Never it is not retried.
    if init_failed && policy == RestartPolicy::Never {
        return PodPhase::Failed;
    }
    if !initialized {
        return PodPhase::Pending;
    }
    let (mut running, mut waiting, mut stopped, mut succeeded) = (0, 0, 0, 0);
    for state in mains {
        match state {
            ContainerState::Running(_) => running += 1,
            ContainerState::Terminated(code) => {
                stopped += 1;
                if *code == 0 {
                    succeeded += 1;
                }
            }
            // Waiting to restart after a run: it has stopped, for the phase.
            ContainerState::Waiting(true) => stopped += 1,
            ContainerState::Waiting(false) => waiting += 1,
        }
    }
    if waiting > 0 {
        PodPhase::Pending
    } else if running > 0 {
        PodPhase::Running
    } else if stopped > 0 {
        match policy {
            RestartPolicy::Always => PodPhase::Running,
            RestartPolicy::OnFailure if stopped == succeeded => PodPhase::Succeeded,
            RestartPolicy::OnFailure => PodPhase::Running,
            RestartPolicy::Never if stopped == succeeded => PodPhase::Succeeded,
            RestartPolicy::Never => PodPhase::Failed,
        }
    } else {
        PodPhase::Pending
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use orchd_sdk::node_policy::ContainerView;

    fn exit(code: i32, init: bool, step: u32, ran_ms: u64) -> ContainerExit {
        ContainerExit {
            name: "app".into(),
            pod: "web_default(u1)".into(),
            init,
            exit_code: code,
            reason: if code == 0 { "Completed" } else { "Error" }.into(),
            ran_ms,
            restart_count: step,
            backoff_step: step,
        }
    }

    fn plan(a: AfterExit) -> RestartPlan {
        match a {
            AfterExit::Restart(p) => p,
            AfterExit::StayTerminated => panic!("expected a restart"),
        }
    }

    #[test]
    fn backoff_restarts_at_once_then_doubles_from_10s_to_5min() {
        let p = Profile::KUBERNETES;
        let delays: Vec<u64> = (0..8).map(|s| p.backoff_ms(s)).collect();
        assert_eq!(
            delays,
            [0, 10_000, 20_000, 40_000, 80_000, 160_000, 300_000, 300_000]
        );
        assert_eq!(p.backoff_ms(u32::MAX), 300_000);
        assert_eq!(Profile::QUICK.backoff_ms(5), 1_000);
    }

    #[test]
    fn restart_policies_decide_whether_a_container_runs_again() {
        let k = &Profile::KUBERNETES;
        for (policy, code, init, again) in [
            (RestartPolicy::Always, 0, false, true),
            (RestartPolicy::Always, 1, false, true),
            (RestartPolicy::OnFailure, 0, false, false),
            (RestartPolicy::OnFailure, 2, false, true),
            (RestartPolicy::Never, 1, false, false),
            (RestartPolicy::Always, 0, true, false),
            (RestartPolicy::Always, 1, true, true),
            (RestartPolicy::Never, 1, true, false),
        ] {
            let a = after_exit(&exit(code, init, 0, 5), policy, k);
            assert_eq!(
                matches!(a, AfterExit::Restart(_)),
                again,
                "{policy:?} {code} {init}"
            );
        }
    }

    #[test]
    fn crash_loops_back_off_and_a_long_run_forgets_it() {
        let k = &Profile::KUBERNETES;
        let first = plan(after_exit(&exit(1, false, 0, 5), RestartPolicy::Always, k));
        assert_eq!((first.delay_ms, first.next_step), (0, 1));
        assert_eq!(first.waiting_reason, "ContainerCreating");
        let second = plan(after_exit(&exit(1, false, 1, 5), RestartPolicy::Always, k));
        assert_eq!((second.delay_ms, second.next_step), (10_000, 2));
        assert_eq!(second.waiting_reason, "CrashLoopBackOff");
        assert_eq!(
            second.message.as_deref(),
            Some("back-off 10s restarting failed container=app pod=web_default(u1)")
        );
        let later = plan(after_exit(
            &exit(1, false, 6, 600_000),
            RestartPolicy::Always,
            k,
        ));
        assert_eq!((later.delay_ms, later.next_step), (0, 1));
    }

    fn view(policy: RestartPolicy, states: &[(bool, ContainerState)]) -> PodView {
        PodView {
            restart_policy: policy,
            containers: states
                .iter()
                .enumerate()
                .map(|(i, (init, s))| ContainerView {
                    name: format!("c{i}"),
                    init: *init,
                    state: *s,
                })
                .collect(),
        }
    }

    fn phase_of(policy: RestartPolicy, states: &[(bool, ContainerState)]) -> PodPhase {
        pod_status(&view(policy, states)).phase
    }

    #[test]
    fn phases_follow_the_containers_and_the_policy() {
        use ContainerState::*;
        use RestartPolicy::*;
        let m = |s| (false, s);
        assert_eq!(phase_of(Always, &[m(Waiting(false))]), PodPhase::Pending);
        assert_eq!(
            phase_of(Always, &[m(Running(false)), m(Waiting(false))]),
            PodPhase::Pending
        );
        assert_eq!(phase_of(Always, &[m(Running(false))]), PodPhase::Running);
        assert_eq!(phase_of(Always, &[m(Waiting(true))]), PodPhase::Running);
        assert_eq!(
            phase_of(OnFailure, &[m(Terminated(0))]),
            PodPhase::Succeeded
        );
        assert_eq!(phase_of(OnFailure, &[m(Waiting(true))]), PodPhase::Running);
        assert_eq!(
            phase_of(Never, &[m(Terminated(0)), m(Terminated(0))]),
            PodPhase::Succeeded
        );
        assert_eq!(
            phase_of(Never, &[m(Terminated(0)), m(Terminated(3))]),
            PodPhase::Failed
        );
        assert_eq!(
            phase_of(Never, &[m(Terminated(0)), m(Running(true))]),
            PodPhase::Running
        );
    }

    #[test]
    fn init_containers_gate_the_phase_and_initialized() {
        use ContainerState::*;
        use RestartPolicy::*;
        let running_init = view(Always, &[(true, Running(false)), (false, Waiting(false))]);
        let v = pod_status(&running_init);
        assert_eq!(v.phase, PodPhase::Pending);
        assert_eq!(
            v.conditions[1],
            PodCondition::unmet("Initialized", "ContainersNotInitialized")
        );
        let failed_for_good = view(Never, &[(true, Terminated(1)), (false, Waiting(false))]);
        assert_eq!(pod_status(&failed_for_good).phase, PodPhase::Failed);
        let done = view(Always, &[(true, Terminated(0)), (false, Running(true))]);
        let v = pod_status(&done);
        assert_eq!(v.phase, PodPhase::Running);
        assert!(v.conditions.iter().all(|c| c.status), "{v:?}");
    }

    #[test]
    fn readiness_needs_every_app_container_ready_and_completion_says_why_not() {
        use ContainerState::*;
        let v = pod_status(&view(
            RestartPolicy::Always,
            &[(false, Running(true)), (false, Running(false))],
        ));
        assert_eq!(
            v.conditions[2],
            PodCondition::unmet("Ready", "ContainersNotReady")
        );
        let v = pod_status(&view(RestartPolicy::Never, &[(false, Terminated(0))]));
        assert_eq!(
            v.conditions[2],
            PodCondition::unmet("Ready", "PodCompleted")
        );
        assert_eq!(
            v.conditions[0],
            PodCondition::unmet("PodReadyToStartContainers", "PodCompleted")
        );
    }
}
