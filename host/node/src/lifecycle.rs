//! Pod lifecycle policy, minimal and in one place (a later `node-policy`
//! plugin replaces this module): init containers in order, then the app
//! containers; restart policy Always / OnFailure / Never with
//! CrashLoopBackOff (the first restart at once, then 10 s doubling to
//! 5 min, reset after 10 min of running fine, as the kubelet); the pod's
//! status (phase, conditions, container states) computed from what the
//! containers did.
//!
//! The pod's IP is its sandbox's (the runtime's): 127.0.0.1 for wasm pods,
//! which share the host's network view (the wasm shim grants no sockets
//! yet); an address on the node's bridge for containerd pods.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use jiff::Timestamp;
use serde_json::{Value, json};
use tokio::sync::{Notify, watch};

use crate::runtime::{ContainerConfig, ExitReason, Runtime, StartError};

/// The first backoff after a crash that follows an immediate restart.
pub const BACKOFF_INITIAL: Duration = Duration::from_secs(10);
/// The longest backoff.
pub const BACKOFF_MAX: Duration = Duration::from_secs(300);
/// A container running this long has its backoff forgotten.
pub const BACKOFF_RESET: Duration = Duration::from_secs(600);

/// The delay before restart number `step + 1` of a crashing container:
/// none for the first, then 10 s, 20 s, 40 s ... up to 5 min.
pub fn backoff(step: u32) -> Duration {
    if step == 0 {
        return Duration::ZERO;
    }
    let factor = 1u64 << (step - 1).min(16);
    (BACKOFF_INITIAL * u32::try_from(factor).unwrap_or(u32::MAX)).min(BACKOFF_MAX)
}

/// `spec.restartPolicy`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RestartPolicy {
    /// Restart whatever the exit.
    Always,
    /// Restart on a non-zero exit.
    OnFailure,
    /// Never restart.
    Never,
}

impl RestartPolicy {
    /// From the pod spec (Kubernetes' default: Always).
    pub fn of(pod: &Value) -> Self {
        match pod["spec"]["restartPolicy"].as_str() {
            Some("OnFailure") => RestartPolicy::OnFailure,
            Some("Never") => RestartPolicy::Never,
            _ => RestartPolicy::Always,
        }
    }

    /// Whether a container that exited with `code` runs again.
    pub fn restarts(self, code: i32) -> bool {
        match self {
            RestartPolicy::Always => true,
            RestartPolicy::OnFailure => code != 0,
            RestartPolicy::Never => false,
        }
    }
}

/// A terminated container run.
#[derive(Clone, Debug, PartialEq)]
pub struct Terminated {
    /// Exit code.
    pub exit_code: i32,
    /// `Completed`, `Error`, `OOMKilled`.
    pub reason: String,
    /// Explanation, if any.
    pub message: Option<String>,
    /// Start of the run.
    pub started_at: Timestamp,
    /// End of the run.
    pub finished_at: Timestamp,
}

/// A container's current state.
#[derive(Clone, Debug, PartialEq)]
pub enum State {
    /// Not running: being created, or in backoff.
    Waiting {
        /// `ContainerCreating`, `PodInitializing`, `CrashLoopBackOff`, `ErrImagePull`...
        reason: String,
        /// Explanation, if any.
        message: Option<String>,
    },
    /// Running since.
    Running(Timestamp),
    /// Ended and not restarting (yet).
    Terminated(Terminated),
}

/// What the node knows of one container.
#[derive(Clone, Debug)]
pub struct ContainerStatus {
    /// Container name.
    pub name: String,
    /// Its image.
    pub image: String,
    /// Now.
    pub state: State,
    /// The previous run, after a restart.
    pub last: Option<Terminated>,
    /// Restarts so far.
    pub restart_count: u32,
}

impl ContainerStatus {
    fn new(name: &str, image: &str, reason: &str) -> Self {
        ContainerStatus {
            name: name.into(),
            image: image.into(),
            state: State::Waiting {
                reason: reason.into(),
                message: None,
            },
            last: None,
            restart_count: 0,
        }
    }

    fn running(&self) -> bool {
        matches!(self.state, State::Running(_))
    }

    fn to_json(&self, uid: &str, init: bool) -> Value {
        let terminated = |t: &Terminated| {
            let mut v = json!({"exitCode": t.exit_code, "reason": t.reason,
                "startedAt": stamp(t.started_at), "finishedAt": stamp(t.finished_at)});
            if let Some(m) = &t.message {
                v["message"] = json!(m);
            }
            json!({"terminated": v})
        };
        let state = match &self.state {
            State::Waiting { reason, message } => {
                let mut w = json!({"reason": reason});
                if let Some(m) = message {
                    w["message"] = json!(m);
                }
                json!({"waiting": w})
            }
            State::Running(at) => json!({"running": {"startedAt": stamp(*at)}}),
            State::Terminated(t) => terminated(t),
        };
        let ready = if init {
            matches!(&self.state, State::Terminated(t) if t.exit_code == 0)
        } else {
            self.running()
        };
        let mut v = json!({
            "name": self.name,
            "image": self.image,
            "imageID": format!("orchd-wasm://{}", self.image),
            "containerID": format!("orchd-wasm://{uid}/{}", self.name),
            "ready": ready,
            "started": self.running(),
            "restartCount": self.restart_count,
            "state": state,
            "lastState": self.last.as_ref().map_or_else(|| json!({}), terminated),
        });
        if init {
            v.as_object_mut().map(|o| o.remove("started"));
        }
        v
    }
}

/// Everything the node knows of one pod's containers.
#[derive(Clone, Debug)]
pub struct PodRun {
    /// `initContainers`, in order.
    pub init: Vec<ContainerStatus>,
    /// `containers`.
    pub main: Vec<ContainerStatus>,
    /// The pod's restart policy.
    pub policy: RestartPolicy,
    /// When the node took the pod on.
    pub start_time: Timestamp,
    /// The pod's IP, once its sandbox is up.
    pub pod_ip: Option<String>,
    /// Condition type → (status, last transition), to keep transition
    /// times stable across updates.
    transitions: HashMap<&'static str, (bool, Timestamp)>,
}

/// Kubernetes' time format.
pub fn stamp(t: Timestamp) -> String {
    t.strftime("%Y-%m-%dT%H:%M:%SZ").to_string()
}

impl PodRun {
    /// The initial state of `pod`'s containers: all waiting.
    pub fn new(pod: &Value) -> Self {
        let list = |field: &str, reason: &str| -> Vec<ContainerStatus> {
            pod["spec"][field]
                .as_array()
                .into_iter()
                .flatten()
                .map(|c| {
                    ContainerStatus::new(
                        c["name"].as_str().unwrap_or(""),
                        c["image"].as_str().unwrap_or(""),
                        reason,
                    )
                })
                .collect()
        };
        let init = list("initContainers", "PodInitializing");
        let main_reason = if init.is_empty() {
            "ContainerCreating"
        } else {
            "PodInitializing"
        };
        PodRun {
            init,
            main: list("containers", main_reason),
            policy: RestartPolicy::of(pod),
            start_time: Timestamp::now(),
            pod_ip: None,
            transitions: HashMap::new(),
        }
    }

    /// Whether every init container has completed.
    pub fn initialized(&self) -> bool {
        self.init
            .iter()
            .all(|c| matches!(&c.state, State::Terminated(t) if t.exit_code == 0))
    }

    /// The pod phase, as the kubelet computes it.
    pub fn phase(&self) -> &'static str {
        // An init container that failed for good fails the pod.
        if self.policy == RestartPolicy::Never
            && self
                .init
                .iter()
                .any(|c| matches!(&c.state, State::Terminated(t) if t.exit_code != 0))
        {
            return "Failed";
        }
        if !self.initialized() {
            return "Pending";
        }
        let (mut running, mut waiting, mut stopped, mut succeeded) = (0, 0, 0, 0);
        for c in &self.main {
            match &c.state {
                State::Running(_) => running += 1,
                State::Terminated(t) => {
                    stopped += 1;
                    if t.exit_code == 0 {
                        succeeded += 1;
                    }
                }
                // In backoff after a run: it has stopped, for the phase.
                State::Waiting { .. } if c.last.is_some() => stopped += 1,
                State::Waiting { .. } => waiting += 1,
            }
        }
        if waiting > 0 {
            "Pending"
        } else if running > 0 {
            "Running"
        } else if stopped > 0 {
            match self.policy {
                RestartPolicy::Always => "Running",
                RestartPolicy::OnFailure if stopped == succeeded => "Succeeded",
                RestartPolicy::OnFailure => "Running",
                RestartPolicy::Never if stopped == succeeded => "Succeeded",
                RestartPolicy::Never => "Failed",
            }
        } else {
            "Pending"
        }
    }

    fn condition(&mut self, kind: &'static str, ok: bool, reason: Option<&str>) -> Value {
        let now = Timestamp::now();
        let entry = self.transitions.entry(kind).or_insert((ok, now));
        if entry.0 != ok {
            *entry = (ok, now);
        }
        let mut c = json!({"type": kind, "status": if ok { "True" } else { "False" },
            "lastProbeTime": null, "lastTransitionTime": stamp(entry.1)});
        if let (false, Some(r)) = (ok, reason) {
            c["reason"] = json!(r);
        }
        c
    }

    /// The pod's `status` (what a status patch writes), keeping the
    /// PodScheduled condition `scheduled` as the scheduler wrote it.
    pub fn status(&mut self, uid: &str, host_ip: &str, scheduled: Value) -> Value {
        let phase = self.phase();
        let done = matches!(phase, "Succeeded" | "Failed");
        let initialized = self.initialized();
        let all_running = !self.main.is_empty() && self.main.iter().all(|c| c.running());
        let not_ready = if done {
            "PodCompleted"
        } else {
            "ContainersNotReady"
        };
        let conditions = vec![
            self.condition("PodReadyToStartContainers", !done, None),
            self.condition("Initialized", initialized, Some("ContainersNotInitialized")),
            self.condition("Ready", all_running, Some(not_ready)),
            self.condition("ContainersReady", all_running, Some(not_ready)),
            scheduled,
        ];
        let mut status = json!({
            "phase": phase,
            "conditions": conditions,
            "hostIP": host_ip,
            "hostIPs": [{"ip": host_ip}],
            "startTime": stamp(self.start_time),
            "qosClass": "BestEffort",
            "containerStatuses": self.main.iter().map(|c| c.to_json(uid, false)).collect::<Vec<_>>(),
        });
        if let Some(ip) = &self.pod_ip {
            status["podIP"] = json!(ip);
            status["podIPs"] = json!([{ "ip": ip }]);
        }
        if !self.init.is_empty() {
            status["initContainerStatuses"] = self
                .init
                .iter()
                .map(|c| c.to_json(uid, true))
                .collect::<Vec<_>>()
                .into();
        }
        status
    }
}

/// The reason a start error shows as.
fn start_reason(e: &StartError) -> &'static str {
    match e {
        StartError::Image(_) => "ErrImagePull",
        StartError::Create(_) => "CreateContainerError",
    }
}

/// What a pod worker needs from the agent.
#[derive(Clone)]
pub struct PodContext {
    /// The runtime.
    pub runtime: Arc<dyn Runtime>,
    /// Where container logs go: `<logs>/<uid>/<container>/<restart>.log`.
    pub logs: crate::logs::LogFiles,
}

/// The containers of one pod, as a worker runs them.
pub struct PodWorker {
    /// The shared state; the status writer reads it.
    pub run: Arc<Mutex<PodRun>>,
    /// Signalled on every state change.
    pub changed: Arc<Notify>,
}

/// Resolves a container spec into what the runtime needs.
fn container_config(ctx: &PodContext, uid: &str, spec: &Value, attempt: u32) -> ContainerConfig {
    let strings = |field: &str| -> Vec<String> {
        spec[field]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(|a| a.as_str().map(str::to_string))
            .collect()
    };
    let mut args = strings("command");
    args.extend(strings("args"));
    let env = spec["env"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|e| {
            Some((
                e["name"].as_str()?.to_string(),
                e["value"].as_str()?.to_string(),
            ))
        })
        .collect();
    let limits = &spec["resources"]["limits"];
    let quantity = |v: &Value| -> Option<String> {
        v.as_str()
            .map(str::to_string)
            .or_else(|| v.as_f64().map(|n| n.to_string()))
    };
    let name = spec["name"].as_str().unwrap_or("");
    ContainerConfig {
        image: spec["image"].as_str().unwrap_or("").to_string(),
        name: name.to_string(),
        args,
        env,
        memory_limit: quantity(&limits["memory"])
            .and_then(|q| orchd_plugin_host::quantity::bytes(&q).ok()),
        cpu_millis: quantity(&limits["cpu"])
            .and_then(|q| orchd_plugin_host::quantity::millicpu(&q).ok()),
        log_path: ctx.logs.path(uid, name, attempt),
        pod_uid: uid.to_string(),
        attempt,
        spec: spec.clone(),
    }
}

impl PodWorker {
    /// Runs `pod`'s containers until they are done (per restart policy) or
    /// `cancel` turns true, when they are stopped.
    pub async fn run(
        self: Arc<Self>,
        ctx: Arc<PodContext>,
        pod: Value,
        mut cancel: watch::Receiver<bool>,
    ) {
        let uid = pod["metadata"]["uid"].as_str().unwrap_or("").to_string();
        let inits: Vec<Value> = pod["spec"]["initContainers"]
            .as_array()
            .cloned()
            .unwrap_or_default();
        for (i, spec) in inits.iter().enumerate() {
            let ok = self
                .supervise(&ctx, &uid, spec, Slot::Init(i), true, &mut cancel)
                .await;
            if !ok {
                return;
            }
        }
        let mains: Vec<Value> = pod["spec"]["containers"]
            .as_array()
            .cloned()
            .unwrap_or_default();
        let mut tasks = tokio::task::JoinSet::new();
        for (i, spec) in mains.into_iter().enumerate() {
            let me = self.clone();
            let ctx = ctx.clone();
            let uid = uid.clone();
            let mut cancel = cancel.clone();
            tasks.spawn(async move {
                me.supervise(&ctx, &uid, &spec, Slot::Main(i), false, &mut cancel)
                    .await
            });
        }
        while tasks.join_next().await.is_some() {}
    }

    fn update(&self, slot: Slot, f: impl FnOnce(&mut ContainerStatus)) {
        if let Ok(mut run) = self.run.lock() {
            let c = match slot {
                Slot::Init(i) => run.init.get_mut(i),
                Slot::Main(i) => run.main.get_mut(i),
            };
            if let Some(c) = c {
                f(c);
            }
        }
        self.changed.notify_one();
    }

    /// Runs one container, restarting it as the policy says. For an init
    /// container (`until_success`), returns whether it completed; restarts
    /// follow the policy too, except that Always counts as OnFailure.
    async fn supervise(
        &self,
        ctx: &PodContext,
        uid: &str,
        spec: &Value,
        slot: Slot,
        until_success: bool,
        cancel: &mut watch::Receiver<bool>,
    ) -> bool {
        let policy = self
            .run
            .lock()
            .map(|r| r.policy)
            .unwrap_or(RestartPolicy::Never);
        let mut step: u32 = 0;
        let mut attempt: u32 = 0;
        loop {
            if *cancel.borrow() {
                return false;
            }
            let config = container_config(ctx, uid, spec, attempt);
            let log_path = config.log_path.clone();
            ctx.logs.set_live(&log_path, true);
            let started = ctx.runtime.start(config).await;
            if started.is_err() {
                ctx.logs.set_live(&log_path, false);
            }
            let container = match started {
                Ok(c) => c,
                Err(e) => {
                    // Image and create errors retry with the same backoff
                    // (Kubernetes' ImagePullBackOff); the pod stays Pending.
                    let reason = start_reason(&e);
                    self.update(slot, |c| {
                        c.state = State::Waiting {
                            reason: reason.into(),
                            message: Some(e.to_string()),
                        }
                    });
                    step += 1;
                    if !sleep_or_cancel(backoff(step).max(Duration::from_secs(2)), cancel).await {
                        return false;
                    }
                    continue;
                }
            };
            let started_at = container.started_at();
            self.update(slot, |c| c.state = State::Running(started_at));
            let stop = container.stopper();
            let wait = container.wait();
            tokio::pin!(wait);
            let exit = tokio::select! {
                exit = &mut wait => exit,
                _ = wait_cancel(cancel) => {
                    stop();
                    let exit = wait.await;
                    ctx.logs.set_live(&log_path, false);
                    self.update(slot, |c| c.state = State::Terminated(Terminated {
                        exit_code: exit.code, reason: exit.reason.as_k8s().into(),
                        message: exit.message, started_at, finished_at: exit.finished_at,
                    }));
                    return false;
                }
            };
            ctx.logs.set_live(&log_path, false);
            let terminated = Terminated {
                exit_code: exit.code,
                reason: exit.reason.as_k8s().into(),
                message: exit.message.clone(),
                started_at,
                finished_at: exit.finished_at,
            };
            let ran = exit.finished_at.duration_since(started_at).unsigned_abs();
            let restart = if until_success {
                exit.code != 0 && policy != RestartPolicy::Never
            } else {
                policy.restarts(exit.code)
            };
            if !restart {
                self.update(slot, |c| c.state = State::Terminated(terminated));
                return exit.code == 0 && exit.reason != ExitReason::Killed;
            }
            if ran >= BACKOFF_RESET {
                step = 0;
            }
            let delay = backoff(step);
            step += 1;
            attempt += 1;
            self.update(slot, |c| {
                c.restart_count += 1;
                c.last = Some(terminated.clone());
                c.state = if delay.is_zero() {
                    State::Waiting {
                        reason: "ContainerCreating".into(),
                        message: None,
                    }
                } else {
                    State::Waiting {
                        reason: "CrashLoopBackOff".into(),
                        message: Some(format!(
                            "back-off {}s restarting failed container={} pod={uid}",
                            delay.as_secs(),
                            c.name
                        )),
                    }
                };
            });
            if !sleep_or_cancel(delay, cancel).await {
                return false;
            }
        }
    }
}

/// Which container of the pod.
#[derive(Clone, Copy, Debug)]
enum Slot {
    Init(usize),
    Main(usize),
}

/// Resolves when `cancel` becomes true (or its sender goes away).
async fn wait_cancel(cancel: &mut watch::Receiver<bool>) {
    let _ = cancel.wait_for(|c| *c).await;
}

/// Sleeps `d`; false if cancelled first.
async fn sleep_or_cancel(d: Duration, cancel: &mut watch::Receiver<bool>) -> bool {
    tokio::select! {
        _ = tokio::time::sleep(d) => !*cancel.borrow(),
        _ = wait_cancel(cancel) => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_restarts_at_once_then_doubles_from_10s_to_5min() {
        let secs: Vec<u64> = (0..8).map(|s| backoff(s).as_secs()).collect();
        assert_eq!(secs, [0, 10, 20, 40, 80, 160, 300, 300]);
        assert_eq!(backoff(1000), BACKOFF_MAX);
    }

    #[test]
    fn restart_policies() {
        assert!(RestartPolicy::Always.restarts(0));
        assert!(RestartPolicy::OnFailure.restarts(1));
        assert!(!RestartPolicy::OnFailure.restarts(0));
        assert!(!RestartPolicy::Never.restarts(1));
        assert_eq!(
            RestartPolicy::of(&json!({"spec": {"restartPolicy": "Never"}})),
            RestartPolicy::Never
        );
        assert_eq!(RestartPolicy::of(&json!({})), RestartPolicy::Always);
    }

    fn pod(policy: &str, inits: usize) -> PodRun {
        let init: Vec<Value> = (0..inits)
            .map(|i| json!({"name": format!("i{i}"), "image": "x"}))
            .collect();
        PodRun::new(
            &json!({"spec": {"restartPolicy": policy, "initContainers": init,
            "containers": [{"name": "a", "image": "x"}, {"name": "b", "image": "x"}]}}),
        )
    }

    fn term(code: i32) -> State {
        State::Terminated(Terminated {
            exit_code: code,
            reason: if code == 0 { "Completed" } else { "Error" }.into(),
            message: None,
            started_at: Timestamp::now(),
            finished_at: Timestamp::now(),
        })
    }

    #[test]
    fn phases_follow_the_containers_and_the_policy() {
        let mut p = pod("Always", 0);
        assert_eq!(p.phase(), "Pending");
        p.main[0].state = State::Running(Timestamp::now());
        assert_eq!(p.phase(), "Pending", "b still waits to start");
        p.main[1].state = State::Running(Timestamp::now());
        assert_eq!(p.phase(), "Running");
        // In backoff after a crash: still Running under Always.
        p.main[1].last = Some(Terminated {
            exit_code: 1,
            reason: "Error".into(),
            message: None,
            started_at: Timestamp::now(),
            finished_at: Timestamp::now(),
        });
        p.main[1].state = State::Waiting {
            reason: "CrashLoopBackOff".into(),
            message: None,
        };
        assert_eq!(p.phase(), "Running");

        let mut p = pod("Never", 0);
        p.main[0].state = term(0);
        p.main[1].state = term(1);
        assert_eq!(p.phase(), "Failed");
        p.main[1].state = term(0);
        assert_eq!(p.phase(), "Succeeded");

        let mut p = pod("OnFailure", 0);
        p.main[0].state = term(0);
        p.main[1].state = term(0);
        assert_eq!(p.phase(), "Succeeded");
    }

    #[test]
    fn init_containers_gate_the_phase_and_initialized() {
        let mut p = pod("Never", 2);
        assert!(!p.initialized());
        assert_eq!(
            p.main[0].state,
            State::Waiting {
                reason: "PodInitializing".into(),
                message: None
            }
        );
        p.init[0].state = term(0);
        assert_eq!(p.phase(), "Pending");
        p.init[1].state = term(3);
        assert_eq!(p.phase(), "Failed");
        p.init[1].state = term(0);
        assert!(p.initialized());
    }

    #[test]
    fn status_reports_conditions_and_container_states() {
        let mut p = pod("Always", 1);
        p.init[0].state = term(0);
        p.main[0].state = State::Running(Timestamp::now());
        p.main[1].state = State::Running(Timestamp::now());
        p.main[1].restart_count = 2;
        p.pod_ip = Some("127.0.0.1".into());
        let s = p.status(
            "u1",
            "127.0.0.1",
            json!({"type": "PodScheduled", "status": "True"}),
        );
        assert_eq!(s["phase"], "Running");
        let cond = |t: &str| {
            s["conditions"]
                .as_array()
                .unwrap()
                .iter()
                .find(|c| c["type"] == t)
                .unwrap()["status"]
                .clone()
        };
        assert_eq!(cond("Initialized"), "True");
        assert_eq!(cond("Ready"), "True");
        assert_eq!(cond("ContainersReady"), "True");
        assert_eq!(cond("PodScheduled"), "True");
        assert_eq!(s["containerStatuses"][1]["restartCount"], 2);
        assert!(s["containerStatuses"][0]["state"]["running"]["startedAt"].is_string());
        assert_eq!(
            s["initContainerStatuses"][0]["state"]["terminated"]["reason"],
            "Completed"
        );
        assert_eq!(s["podIP"], "127.0.0.1");

        p.main[1].state = term(137);
        if let State::Terminated(t) = &mut p.main[1].state {
            t.reason = "OOMKilled".into();
        }
        let s = p.status("u1", "127.0.0.1", json!({}));
        assert_eq!(
            s["containerStatuses"][1]["state"]["terminated"]["reason"],
            "OOMKilled"
        );
        assert_eq!(
            s["containerStatuses"][1]["state"]["terminated"]["exitCode"],
            137
        );
        assert_eq!(cond("Ready"), "True", "the old status is unchanged");
        let ready = s["conditions"]
            .as_array()
            .unwrap()
            .iter()
            .find(|c| c["type"] == "Ready")
            .unwrap();
        assert_eq!(ready["status"], "False");
        assert_eq!(ready["reason"], "ContainersNotReady");
    }
}
