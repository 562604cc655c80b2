//! Pod lifecycle policy, minimal and in one place (a later `node-policy`
//! plugin replaces this module): init containers in order, then the app
//! containers; restart policy Always / OnFailure / Never with
//! CrashLoopBackOff (the first restart at once, then 10 s doubling to
//! 5 min, reset after 10 min of running fine, as the kubelet); the pod's
//! status (phase, conditions, container states) computed from what the
//! containers did; probes (startup holds liveness and readiness until it
//! succeeds, readiness gates `ready` and the Ready conditions, liveness
//! failures restart the container), PostStart and PreStop hooks, and
//! graceful termination (PreStop, `terminate`, the grace period, then
//! `stopper`), with the kubelet's Events (`Unhealthy`, `Killing`,
//! `FailedPostStartHook`, `FailedPreStopHook`).
//!
//! The pod's IP is its sandbox's (the runtime's): 127.0.0.1 for wasm pods,
//! which share the host's network (the wasm shim grants TCP); an address on
//! the node's bridge for containerd pods.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use jiff::Timestamp;
use orchd_plugin_host::events::{EventRecorder, EventType};
use serde_json::{Value, json};
use tokio::sync::{Notify, mpsc, watch};
use tokio::time::Instant;

use crate::probe::{self, Probe, Threshold};
use crate::runtime::{
    ContainerConfig, ContainerExit, ExitReason, RunningContainer, Runtime, StartError,
};

/// How long a PostStart hook may run.
pub const POST_START_TIMEOUT: Duration = Duration::from_secs(30);

/// What the node wants of a pod's containers.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Stop {
    /// Keep them running.
    Run,
    /// End them by this deadline: PreStop, `terminate`, then `stopper`.
    Graceful(Instant),
    /// Stop them now (the pod is gone).
    Now,
}

impl Stop {
    /// Whether the containers are to end.
    pub fn stopping(self) -> bool {
        self != Stop::Run
    }

    /// The deadline by which they must be gone (now for `Now`).
    fn deadline(self) -> Option<Instant> {
        match self {
            Stop::Run => None,
            Stop::Graceful(at) => Some(at),
            Stop::Now => Some(Instant::now()),
        }
    }
}

/// A deletion's deadline from its grace period, as the kubelet counts it:
/// from when the node sees the deletion.
pub fn grace_deadline(pod: &Value) -> Stop {
    match pod["metadata"]["deletionGracePeriodSeconds"].as_u64() {
        Some(0) | None => Stop::Now,
        Some(secs) => Stop::Graceful(Instant::now() + Duration::from_secs(secs)),
    }
}

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
    /// The readiness result of the current run (true without a probe).
    pub ready: bool,
    /// The startup result of the current run (true without a probe).
    pub started: bool,
    /// The runtime's id of the latest run, once one started.
    pub container_id: Option<String>,
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
            ready: false,
            started: false,
            container_id: None,
        }
    }

    fn running(&self) -> bool {
        matches!(self.state, State::Running(_))
    }

    /// Running and ready (readiness passed, startup done).
    fn is_ready(&self) -> bool {
        self.running() && self.ready && self.started
    }

    fn to_json(&self, init: bool, runtime: &str) -> Value {
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
            self.is_ready()
        };
        let mut v = json!({
            "name": self.name,
            "image": self.image,
            "imageID": format!("{runtime}://{}", self.image),
            "ready": ready,
            "started": self.running() && self.started,
            "restartCount": self.restart_count,
            "state": state,
            "lastState": self.last.as_ref().map_or_else(|| json!({}), terminated),
        });
        // None before the first run starts, as in Kubernetes.
        if let Some(id) = &self.container_id {
            v["containerID"] = json!(format!("{runtime}://{id}"));
        }
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
    /// The scheme of its runtime (`orchd-wasm`, `containerd`), as container
    /// and image IDs show it.
    pub runtime: String,
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
            runtime: "orchd-wasm".into(),
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
    pub fn status(&mut self, host_ip: &str, scheduled: Value) -> Value {
        let phase = self.phase();
        let done = matches!(phase, "Succeeded" | "Failed");
        let initialized = self.initialized();
        let all_running = !self.main.is_empty() && self.main.iter().all(|c| c.is_ready());
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
        // No qosClass: the API sets it at creation from the admitted
        // resources, and this status goes out as a merge patch that keeps it.
        let mut status = json!({
            "phase": phase,
            "conditions": conditions,
            "hostIP": host_ip,
            "hostIPs": [{"ip": host_ip}],
            "startTime": stamp(self.start_time),
            "containerStatuses": self.main.iter().map(|c| c.to_json(false, &self.runtime)).collect::<Vec<_>>(),
        });
        if let Some(ip) = &self.pod_ip {
            status["podIP"] = json!(ip);
            status["podIPs"] = json!([{ "ip": ip }]);
        }
        if !self.init.is_empty() {
            status["initContainerStatuses"] = self
                .init
                .iter()
                .map(|c| c.to_json(true, &self.runtime))
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
        StartError::Start(_) => "StartError",
    }
}

/// The running containers of a node, by pod uid and container name (for
/// `kubectl exec`).
pub type Containers = Mutex<HashMap<(String, String), Arc<dyn RunningContainer>>>;

/// What a pod worker needs from the agent.
#[derive(Clone)]
pub struct PodContext {
    /// The runtime.
    pub runtime: Arc<dyn Runtime>,
    /// Where container logs go: `<logs>/<uid>/<container>/<restart>.log`.
    pub logs: crate::logs::LogFiles,
    /// Records the kubelet's Events.
    pub events: Arc<EventRecorder>,
    /// The containers running now.
    pub containers: Arc<Containers>,
    /// The pod IP probes and hooks reach by default.
    pub pod_ip: String,
}

/// The containers of one pod, as a worker runs them.
pub struct PodWorker {
    /// The shared state; the status writer reads it.
    pub run: Arc<Mutex<PodRun>>,
    /// Signalled on every state change.
    pub changed: Arc<Notify>,
    /// The pod (what its Events are about).
    pub pod: Value,
}

/// The pod's `terminationGracePeriodSeconds` (30 if unset).
fn termination_grace(pod: &Value) -> Duration {
    Duration::from_secs(
        pod["spec"]["terminationGracePeriodSeconds"]
            .as_u64()
            .unwrap_or(30),
    )
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
        mut cancel: watch::Receiver<Stop>,
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

    /// One run of a started container: marks it running, watches it (hooks,
    /// probes, deletion) until it ends. Returns its exit, when it started,
    /// and whether the node stopped it for good.
    async fn run_once(
        &self,
        ctx: &PodContext,
        uid: &str,
        spec: &Value,
        slot: Slot,
        container: Box<dyn RunningContainer>,
        cancel: &mut watch::Receiver<Stop>,
    ) -> (ContainerExit, Timestamp, bool) {
        let container: Arc<dyn RunningContainer> = Arc::from(container);
        let name = spec["name"].as_str().unwrap_or("").to_string();
        let started_at = container.started_at();
        let id = container.id();
        // Init containers have no probes.
        let probes = match slot {
            Slot::Init(_) => Probes::default(),
            Slot::Main(_) => Probes::of(spec, &ctx.pod_ip),
        };
        self.update(slot, |c| {
            c.state = State::Running(started_at);
            c.container_id = Some(id);
            c.started = probes.startup.is_none();
            c.ready = probes.readiness.is_none();
        });
        if let Ok(mut running) = ctx.containers.lock() {
            running.insert((uid.to_string(), name.clone()), container.clone());
        }
        let (exit, stopped) = self
            .watch_container(ctx, spec, slot, &container, probes, cancel)
            .await;
        if let Ok(mut running) = ctx.containers.lock() {
            let key = (uid.to_string(), name);
            if running
                .get(&key)
                .is_some_and(|c| Arc::ptr_eq(c, &container))
            {
                running.remove(&key);
            }
        }
        (exit, started_at, stopped)
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
        cancel: &mut watch::Receiver<Stop>,
    ) -> bool {
        let policy = self
            .run
            .lock()
            .map(|r| r.policy)
            .unwrap_or(RestartPolicy::Never);
        let mut step: u32 = 0;
        let mut attempt: u32 = 0;
        loop {
            if cancel.borrow().stopping() {
                return false;
            }
            let config = container_config(ctx, uid, spec, attempt);
            let log_path = config.log_path.clone();
            ctx.logs.set_live(&log_path, true);
            let started = ctx.runtime.start(config).await;
            if started.is_err() {
                ctx.logs.set_live(&log_path, false);
            }
            let (exit, started_at) = match started {
                Ok(container) => {
                    let (exit, started_at, stopped) =
                        self.run_once(ctx, uid, spec, slot, container, cancel).await;
                    if stopped {
                        ctx.logs.set_live(&log_path, false);
                        self.update(slot, |c| {
                            c.state = State::Terminated(Terminated {
                                exit_code: exit.code,
                                reason: exit.reason.as_k8s().into(),
                                message: exit.message,
                                started_at,
                                finished_at: exit.finished_at,
                            })
                        });
                        return false;
                    }
                    (exit, started_at)
                }
                // The process never started: as the kubelet, a run that
                // ended at once (StartError, 128), which the restart policy
                // handles like any exit.
                Err(StartError::Start(message)) => {
                    self.event(
                        ctx,
                        EventType::Warning,
                        "Failed",
                        &format!("Error: {message}"),
                    );
                    // Nothing of that run is left to name.
                    self.update(slot, |c| c.container_id = None);
                    let now = Timestamp::now();
                    let exit = ContainerExit {
                        code: 128,
                        reason: ExitReason::StartError,
                        message: Some(message),
                        finished_at: now,
                    };
                    (exit, now)
                }
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

/// The probes of one container.
#[derive(Default)]
struct Probes {
    startup: Option<Probe>,
    liveness: Option<Probe>,
    readiness: Option<Probe>,
    /// A probe spec that cannot run (a port name that is not there...).
    broken: Vec<String>,
}

impl Probes {
    fn of(spec: &Value, pod_ip: &str) -> Self {
        let mut p = Probes::default();
        for (field, slot) in [
            ("startupProbe", &mut p.startup),
            ("livenessProbe", &mut p.liveness),
            ("readinessProbe", &mut p.readiness),
        ] {
            match Probe::of(spec, field, pod_ip) {
                Some(Ok(probe)) => *slot = Some(probe),
                Some(Err(e)) => p.broken.push(format!("{field}: {e}")),
                None => {}
            }
        }
        p
    }
}

impl PodWorker {
    fn event(&self, ctx: &PodContext, kind: EventType, reason: &str, message: &str) {
        let mut object = self.pod.clone();
        object["kind"] = json!("Pod");
        object["apiVersion"] = json!("v1");
        ctx.events.record(&object, kind, reason, message);
    }

    /// Watches one run of a container: runs its PostStart hook and probes,
    /// kills it on a failed hook or liveness, and ends it when the pod is
    /// deleted. Returns its exit and whether the node stopped it for good.
    async fn watch_container(
        &self,
        ctx: &PodContext,
        spec: &Value,
        slot: Slot,
        container: &Arc<dyn RunningContainer>,
        probes: Probes,
        cancel: &mut watch::Receiver<Stop>,
    ) -> (ContainerExit, bool) {
        let name = spec["name"].as_str().unwrap_or("").to_string();
        let wait = container.wait();
        tokio::pin!(wait);
        for problem in &probes.broken {
            self.event(
                ctx,
                EventType::Warning,
                "Unhealthy",
                &format!("Probe errored: {problem}"),
            );
        }
        if let Some(hook) = spec["lifecycle"]["postStart"].as_object() {
            let hook = Value::Object(hook.clone());
            let result = match probe::action(&hook, spec, &ctx.pod_ip) {
                Ok(action) => tokio::select! {
                    r = probe::run(&action, container.as_ref(), POST_START_TIMEOUT) => r,
                    exit = &mut wait => return (exit, false),
                },
                Err(e) => Err(e),
            };
            if let Err(e) = result {
                self.event(ctx, EventType::Warning, "FailedPostStartHook", &e);
                self.event(
                    ctx,
                    EventType::Normal,
                    "Killing",
                    &format!("FailedPostStartHook: stopping container {name}"),
                );
                (container.stopper())();
                return (wait.await, false);
            }
        }
        let (kill_tx, mut kill_rx) = mpsc::channel::<String>(1);
        let prober = tokio::spawn(self.clone_for_probes().probe_loop(
            ctx.events.clone(),
            slot,
            container.clone(),
            probes,
            kill_tx,
        ));
        let _abort = AbortOnDrop(prober);
        loop {
            tokio::select! {
                exit = &mut wait => return (exit, false),
                Some(reason) = kill_rx.recv() => {
                    self.event(ctx, EventType::Normal, "Killing", &format!(
                        "Container {name} failed {reason} probe, will be restarted"));
                    // The probe's own terminationGracePeriodSeconds wins over the pod's.
                    let grace = spec[format!("{reason}Probe")]["terminationGracePeriodSeconds"]
                        .as_u64()
                        .map_or_else(|| termination_grace(&self.pod), Duration::from_secs);
                    let deadline = Instant::now() + grace;
                    let exit = self.kill(ctx, spec, container, wait.as_mut(), Stop::Graceful(deadline), cancel).await;
                    return (exit, false);
                }
                _ = cancel.changed() => {
                    let stop = *cancel.borrow();
                    if stop.stopping() {
                        self.event(ctx, EventType::Normal, "Killing", &format!("Stopping container {name}"));
                        let exit = self.kill(ctx, spec, container, wait.as_mut(), stop, cancel).await;
                        return (exit, true);
                    }
                }
            }
        }
    }

    /// Ends a container as the kubelet does: its PreStop hook, then
    /// `terminate`, then `stopper` once the deadline passes (a later,
    /// shorter deadline from `cancel` applies at once).
    async fn kill(
        &self,
        ctx: &PodContext,
        spec: &Value,
        container: &Arc<dyn RunningContainer>,
        mut wait: std::pin::Pin<&mut (impl std::future::Future<Output = ContainerExit> + ?Sized)>,
        stop: Stop,
        cancel: &mut watch::Receiver<Stop>,
    ) -> ContainerExit {
        let mut deadline = stop.deadline().unwrap_or_else(Instant::now);
        if let Some(hook) = spec["lifecycle"]["preStop"].as_object()
            && deadline > Instant::now()
        {
            let hook = Value::Object(hook.clone());
            let left = deadline.saturating_duration_since(Instant::now());
            let result = match probe::action(&hook, spec, &ctx.pod_ip) {
                Ok(action) => tokio::select! {
                    r = probe::run(&action, container.as_ref(), left) => Some(r),
                    exit = &mut wait => return exit,
                    _ = tokio::time::sleep_until(deadline) => Some(Err(format!(
                        "the PreStop hook did not finish within the grace period ({}s)", left.as_secs()))),
                },
                Err(e) => Some(Err(e)),
            };
            if let Some(Err(e)) = result {
                self.event(ctx, EventType::Warning, "FailedPreStopHook", &e);
            }
        }
        container.terminate();
        loop {
            tokio::select! {
                exit = &mut wait => return exit,
                _ = tokio::time::sleep_until(deadline) => break,
                changed = cancel.changed() => {
                    match changed {
                        Ok(()) => if let Some(sooner) = cancel.borrow().deadline() {
                            deadline = deadline.min(sooner);
                        },
                        Err(_) => break,
                    }
                }
            }
        }
        (container.stopper())();
        wait.await
    }

    fn clone_for_probes(&self) -> ProbeTarget {
        ProbeTarget {
            run: self.run.clone(),
            changed: self.changed.clone(),
            pod: self.pod.clone(),
        }
    }
}

/// Aborts a task when dropped (the probes of a container that ended).
struct AbortOnDrop(tokio::task::JoinHandle<()>);

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        self.0.abort();
    }
}

/// What the probe loop of a container updates.
struct ProbeTarget {
    run: Arc<Mutex<PodRun>>,
    changed: Arc<Notify>,
    pod: Value,
}

impl ProbeTarget {
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

    /// Runs the startup probe until it succeeds, then liveness and
    /// readiness; sends the failed probe's name on `kill` when the
    /// container must be restarted.
    async fn probe_loop(
        self,
        events: Arc<EventRecorder>,
        slot: Slot,
        container: Arc<dyn RunningContainer>,
        probes: Probes,
        kill: mpsc::Sender<String>,
    ) {
        let record = |kind: &str, message: &str| {
            let mut object = self.pod.clone();
            object["kind"] = json!("Pod");
            object["apiVersion"] = json!("v1");
            events.record(
                &object,
                EventType::Warning,
                "Unhealthy",
                &format!("{kind} probe failed: {message}"),
            );
        };
        if let Some(startup) = &probes.startup {
            tokio::time::sleep(startup.initial_delay).await;
            let mut t = Threshold::new(startup, false);
            let mut failures = 0u32;
            loop {
                let result = probe::run(&startup.action, container.as_ref(), startup.timeout).await;
                if let Err(e) = &result {
                    record("Startup", e);
                    failures += 1;
                    if failures >= startup.failure_threshold {
                        let _ = kill.send("startup".into()).await;
                        return;
                    }
                } else {
                    failures = 0;
                }
                if t.record(result.is_ok()) == Some(true) {
                    break;
                }
                tokio::time::sleep(startup.period).await;
            }
            self.update(slot, |c| c.started = true);
        }
        let started = Instant::now();
        let mut live = probes
            .liveness
            .as_ref()
            .map(|p| (Threshold::new(p, true), started + p.initial_delay));
        let mut ready = probes
            .readiness
            .as_ref()
            .map(|p| (Threshold::new(p, false), started + p.initial_delay));
        loop {
            let next = [live.as_ref().map(|l| l.1), ready.as_ref().map(|r| r.1)]
                .into_iter()
                .flatten()
                .min();
            let Some(next) = next else { return };
            tokio::time::sleep_until(next).await;
            if let (Some(p), Some((t, due))) = (&probes.liveness, live.as_mut())
                && *due <= Instant::now()
            {
                let result = probe::run(&p.action, container.as_ref(), p.timeout).await;
                if let Err(e) = &result {
                    record("Liveness", e);
                }
                *due = Instant::now() + p.period;
                if t.record(result.is_ok()) == Some(false) {
                    let _ = kill.send("liveness".into()).await;
                    return;
                }
            }
            if let (Some(p), Some((t, due))) = (&probes.readiness, ready.as_mut())
                && *due <= Instant::now()
            {
                let result = probe::run(&p.action, container.as_ref(), p.timeout).await;
                if let Err(e) = &result {
                    record("Readiness", e);
                }
                *due = Instant::now() + p.period;
                if let Some(ok) = t.record(result.is_ok()) {
                    self.update(slot, |c| c.ready = ok);
                }
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

/// Resolves when the containers are to stop (or the sender goes away).
async fn wait_cancel(cancel: &mut watch::Receiver<Stop>) {
    let _ = cancel.wait_for(|c| c.stopping()).await;
}

/// Sleeps `d`; false if stopped first.
async fn sleep_or_cancel(d: Duration, cancel: &mut watch::Receiver<Stop>) -> bool {
    tokio::select! {
        _ = tokio::time::sleep(d) => !cancel.borrow().stopping(),
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

    #[test]
    fn status_names_the_runtime_and_leaves_qos_to_the_api() {
        let mut p = pod("Always", 1);
        p.runtime = "containerd".into();
        let s = p.status(
            "10.0.0.1",
            json!({"type": "PodScheduled", "status": "True"}),
        );
        assert!(s.get("qosClass").is_none(), "{s}");
        // No run has started yet: no container ID.
        assert!(
            s["containerStatuses"][0].get("containerID").is_none(),
            "{s}"
        );
        assert_eq!(s["initContainerStatuses"][0]["imageID"], "containerd://x");
    }

    #[test]
    fn the_container_id_is_the_runtimes_id_of_the_latest_run() {
        let mut p = pod("Always", 0);
        p.runtime = "containerd".into();
        p.main[0].container_id = Some("uid1-a-3".into());
        p.main[0].state = term(1);
        let s = p.status("10.0.0.1", json!({}));
        assert_eq!(
            s["containerStatuses"][0]["containerID"],
            "containerd://uid1-a-3"
        );
        assert!(s["containerStatuses"][1].get("containerID").is_none());
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
        for c in &mut p.main {
            c.ready = true;
            c.started = true;
        }
        p.pod_ip = Some("127.0.0.1".into());
        let s = p.status(
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
        let s = p.status("127.0.0.1", json!({}));
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

        // Running but its readiness probe not passed: not ready.
        p.main[1].state = State::Running(Timestamp::now());
        p.main[1].ready = false;
        let s = p.status("127.0.0.1", json!({}));
        assert_eq!(s["containerStatuses"][1]["ready"], false);
        assert_eq!(s["containerStatuses"][1]["started"], true);
        assert_eq!(s["containerStatuses"][0]["ready"], true);
        let ready = |s: &Value| {
            s["conditions"]
                .as_array()
                .unwrap()
                .iter()
                .find(|c| c["type"] == "Ready")
                .unwrap()["status"]
                .clone()
        };
        assert_eq!(ready(&s), "False");
        p.main[1].ready = true;
        assert_eq!(ready(&p.status("127.0.0.1", json!({}))), "True");
        // Startup not done: neither started nor ready.
        p.main[1].started = false;
        let s = p.status("127.0.0.1", json!({}));
        assert_eq!(s["containerStatuses"][1]["started"], false);
        assert_eq!(ready(&s), "False");
    }

    #[test]
    fn deletion_deadlines_follow_the_grace_period() {
        let now = Instant::now();
        match grace_deadline(&json!({"metadata": {"deletionGracePeriodSeconds": 7}})) {
            Stop::Graceful(at) => {
                let d = at.duration_since(now);
                assert!(
                    d >= Duration::from_secs(7) && d < Duration::from_secs(8),
                    "{d:?}"
                );
            }
            other => panic!("{other:?}"),
        }
        assert_eq!(
            grace_deadline(&json!({"metadata": {"deletionGracePeriodSeconds": 0}})),
            Stop::Now
        );
        assert!(Stop::Now.stopping() && !Stop::Run.stopping());
        assert_eq!(
            termination_grace(&json!({"spec": {"terminationGracePeriodSeconds": 3}})),
            Duration::from_secs(3)
        );
        assert_eq!(termination_grace(&json!({})), Duration::from_secs(30));
    }
}
