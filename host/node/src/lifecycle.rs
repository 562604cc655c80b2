//! The pod worker: runs a pod's containers and keeps what the node knows
//! of them. Init containers in order, then the app containers; after each
//! exit the node policy (`crate::policy`: the `kubelet` plugin, restart
//! policy and CrashLoopBackOff) says whether and when the container runs
//! again; the pod's status (phase and conditions from the node policy,
//! container states from here); probes (startup holds liveness and readiness until it
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

use crate::policy::{self, AfterExit, ContainerState, ContainerView, PodVerdict};
use crate::probe::{self, Probe, Threshold};
use crate::runtime::{
    ContainerConfig, ContainerExit, ExitReason, RunningContainer, Runtime, StartError,
};

/// The longest restart delay the node takes from its policy.
pub const MAX_RESTART_DELAY: Duration = Duration::from_secs(24 * 3600);

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
    pub policy: policy::RestartPolicy,
    /// When the node took the pod on.
    pub start_time: Timestamp,
    /// The pod's IP, once its sandbox is up.
    pub pod_ip: Option<String>,
    /// The scheme of its runtime (`orchd-wasm`, `containerd`), as container
    /// and image IDs show it.
    pub runtime: String,
    /// Why the node evicted the pod, once it has: the pod ends Failed
    /// with reason Evicted, whatever its containers did.
    pub evicted: Option<String>,
    /// Condition type → (status, last transition), to keep transition
    /// times stable across updates.
    transitions: HashMap<String, (bool, Timestamp)>,
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
            policy: policy::restart_policy(pod),
            start_time: Timestamp::now(),
            pod_ip: None,
            evicted: None,
            runtime: "orchd-wasm".into(),
            transitions: HashMap::new(),
        }
    }

    /// The pod as the node policy sees it: each container's state.
    pub fn view(&self) -> policy::PodView {
        let view = |c: &ContainerStatus, init: bool| ContainerView {
            name: c.name.clone(),
            init,
            state: match &c.state {
                State::Waiting { .. } => ContainerState::Waiting(c.last.is_some()),
                State::Running(_) => ContainerState::Running(c.is_ready()),
                State::Terminated(t) => ContainerState::Terminated(t.exit_code),
            },
        };
        policy::PodView {
            restart_policy: self.policy,
            containers: self
                .init
                .iter()
                .map(|c| view(c, true))
                .chain(self.main.iter().map(|c| view(c, false)))
                .collect(),
        }
    }

    /// A condition with a stable `lastTransitionTime`: the time it last
    /// changed status, as this node saw it.
    fn condition(&mut self, c: &policy::PodCondition) -> Value {
        let now = Timestamp::now();
        let entry = self
            .transitions
            .entry(c.type_.clone())
            .or_insert((c.status, now));
        if entry.0 != c.status {
            *entry = (c.status, now);
        }
        let mut v = json!({"type": c.type_, "status": if c.status { "True" } else { "False" },
            "lastProbeTime": null, "lastTransitionTime": stamp(entry.1)});
        if let (false, Some(r)) = (c.status, &c.reason) {
            v["reason"] = json!(r);
        }
        v
    }

    /// The pod's `status` (what a status patch writes): the phase and
    /// conditions of the node policy's `verdict` on [`Self::view`], the
    /// container states, keeping the PodScheduled condition `scheduled`
    /// as the scheduler wrote it.
    pub fn status(&mut self, verdict: &PodVerdict, host_ip: &str, scheduled: Value) -> Value {
        let mut conditions: Vec<Value> = verdict
            .conditions
            .iter()
            .map(|c| self.condition(c))
            .collect();
        conditions.push(scheduled);
        if self.evicted.is_some() {
            let c = policy::PodCondition {
                type_: "DisruptionTarget".into(),
                status: true,
                reason: None,
            };
            let mut c = self.condition(&c);
            c["reason"] = json!("TerminationByKubelet");
            c["message"] = json!("The node was low on resources and evicted the pod");
            conditions.push(c);
        }
        // No qosClass: the API sets it at creation from the admitted
        // resources, and this status goes out as a merge patch that keeps it.
        let mut status = json!({
            "phase": policy::phase_name(verdict.phase),
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
        if let Some(message) = &self.evicted {
            status["phase"] = json!("Failed");
            status["reason"] = json!("Evicted");
            status["message"] = json!(message);
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
    /// Where the lifecycle decisions come from.
    pub policy: policy::Policy,
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

    /// The restarts of the container in `slot` so far.
    fn restart_count(&self, slot: Slot) -> u32 {
        let Ok(run) = self.run.lock() else { return 0 };
        let c = match slot {
            Slot::Init(i) => run.init.get(i),
            Slot::Main(i) => run.main.get(i),
        };
        c.map_or(0, |c| c.restart_count)
    }

    /// The pod as the kubelet's messages name it: `NAME_NAMESPACE(UID)`.
    fn pod_label(&self) -> String {
        let m = &self.pod["metadata"];
        format!(
            "{}_{}({})",
            m["name"].as_str().unwrap_or(""),
            m["namespace"].as_str().unwrap_or(""),
            m["uid"].as_str().unwrap_or("")
        )
    }

    fn update(&self, slot: Slot, f: impl FnOnce(&mut ContainerStatus)) {
        update_container(&self.run, &self.changed, slot, f);
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
            .unwrap_or(policy::RestartPolicy::Never);
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
                    if !sleep_or_cancel(policy::retry_delay(step), cancel).await {
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
            let facts = policy::ContainerExit {
                name: spec["name"].as_str().unwrap_or("").to_string(),
                pod: self.pod_label(),
                init: until_success,
                exit_code: exit.code,
                reason: terminated.reason.clone(),
                ran_ms: u64::try_from(ran.as_millis()).unwrap_or(u64::MAX),
                restart_count: self.restart_count(slot),
                backoff_step: step,
            };
            let plan = match ctx.policy.after_exit(&facts, policy).await {
                AfterExit::StayTerminated => {
                    self.update(slot, |c| c.state = State::Terminated(terminated));
                    return exit.code == 0 && exit.reason != ExitReason::Killed;
                }
                AfterExit::Restart(plan) => plan,
            };
            step = plan.next_step;
            attempt += 1;
            // A policy's delay is bounded (a plugin's u64::MAX would
            // overflow a deadline); to keep a container down for good a
            // policy answers stay-terminated.
            let delay = Duration::from_millis(plan.delay_ms).min(MAX_RESTART_DELAY);
            self.update(slot, |c| {
                c.restart_count += 1;
                c.last = Some(terminated.clone());
                c.state = State::Waiting {
                    reason: plan.waiting_reason,
                    message: plan.message,
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
        update_container(&self.run, &self.changed, slot, f);
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

/// Changes the container in `slot` of `run` and wakes the status writer.
fn update_container(
    run: &Mutex<PodRun>,
    changed: &Notify,
    slot: Slot,
    f: impl FnOnce(&mut ContainerStatus),
) {
    if let Ok(mut run) = run.lock() {
        let c = match slot {
            Slot::Init(i) => run.init.get_mut(i),
            Slot::Main(i) => run.main.get_mut(i),
        };
        if let Some(c) = c {
            f(c);
        }
    }
    changed.notify_one();
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
    fn restart_policy_defaults_to_always() {
        assert_eq!(
            policy::restart_policy(&json!({"spec": {"restartPolicy": "Never"}})),
            policy::RestartPolicy::Never
        );
        assert_eq!(
            policy::restart_policy(&json!({})),
            policy::RestartPolicy::Always
        );
    }

    /// The status with the built-in rules' verdict on the pod.
    fn status(p: &mut PodRun, host_ip: &str, scheduled: Value) -> Value {
        let verdict = policy::builtin_pod_status(&p.view());
        p.status(&verdict, host_ip, scheduled)
    }

    fn phase(p: &PodRun) -> &'static str {
        policy::phase_name(policy::builtin_pod_status(&p.view()).phase)
    }

    fn initialized(p: &PodRun) -> bool {
        policy::builtin_pod_status(&p.view())
            .conditions
            .iter()
            .any(|c| c.type_ == "Initialized" && c.status)
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
        let s = status(
            &mut p,
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
        let s = status(&mut p, "10.0.0.1", json!({}));
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
        assert_eq!(phase(&p), "Pending");
        p.main[0].state = State::Running(Timestamp::now());
        assert_eq!(phase(&p), "Pending", "b still waits to start");
        p.main[1].state = State::Running(Timestamp::now());
        assert_eq!(phase(&p), "Running");
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
        assert_eq!(phase(&p), "Running");

        let mut p = pod("Never", 0);
        p.main[0].state = term(0);
        p.main[1].state = term(1);
        assert_eq!(phase(&p), "Failed");
        p.main[1].state = term(0);
        assert_eq!(phase(&p), "Succeeded");

        let mut p = pod("OnFailure", 0);
        p.main[0].state = term(0);
        p.main[1].state = term(0);
        assert_eq!(phase(&p), "Succeeded");
    }

    #[test]
    fn init_containers_gate_the_phase_and_initialized() {
        let mut p = pod("Never", 2);
        assert!(!initialized(&p));
        assert_eq!(
            p.main[0].state,
            State::Waiting {
                reason: "PodInitializing".into(),
                message: None
            }
        );
        p.init[0].state = term(0);
        assert_eq!(phase(&p), "Pending");
        p.init[1].state = term(3);
        assert_eq!(phase(&p), "Failed");
        p.init[1].state = term(0);
        assert!(initialized(&p));
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
        let s = status(
            &mut p,
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
        let s = status(&mut p, "127.0.0.1", json!({}));
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
        let s = status(&mut p, "127.0.0.1", json!({}));
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
        assert_eq!(ready(&status(&mut p, "127.0.0.1", json!({}))), "True");
        // Startup not done: neither started nor ready.
        p.main[1].started = false;
        let s = status(&mut p, "127.0.0.1", json!({}));
        assert_eq!(s["containerStatuses"][1]["started"], false);
        assert_eq!(ready(&s), "False");
    }

    #[test]
    fn an_evicted_pod_is_failed_whatever_its_containers_did() {
        let mut p = pod("Always", 0);
        p.main[0].state = State::Running(Timestamp::now());
        p.evicted = Some("The node was low on resource: memory.".into());
        let s = status(&mut p, "127.0.0.1", json!({}));
        assert_eq!(s["phase"], "Failed");
        assert_eq!(s["reason"], "Evicted");
        assert_eq!(s["message"], "The node was low on resource: memory.");
        let disruption = s["conditions"]
            .as_array()
            .unwrap()
            .iter()
            .find(|c| c["type"] == "DisruptionTarget")
            .unwrap();
        assert_eq!(disruption["status"], "True");
        assert_eq!(disruption["reason"], "TerminationByKubelet");
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
