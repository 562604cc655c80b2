//! The scheduler runner: the host half of scheduling.
//!
//! Host-run informers watch nodes and pods; a cache keeps every node and
//! where each pod is counted (bound, or assumed between decision and
//! binding), and logs what changed since the plugin last heard; a queue
//! holds the pending pods of the plugin's schedulerName. The runner takes
//! pending pods in batches: one call brings the plugin's own view of the
//! cluster up to date with the logged changes (the whole view for a new
//! instance), one call decides for the batch, the plugin counting each pod
//! it binds on its node before deciding the next. The runner then assumes
//! each pod on its node, binds it in the store (resourceVersion
//! precondition; a conflict re-queues it) and records `Scheduled` or
//! `FailedScheduling` Events, grouping rejection reasons as Kubernetes
//! words them. Batches grow while decisions are fast and shrink when they
//! are slow, so one call stays far inside the plugin's call deadline.
//!
//! Hot swap: [`RunnerHandle::swap`] hands the loop a new [`Decide`]r. It
//! is first given the whole view on a blocking thread while the current
//! one goes on deciding (the changes meanwhile are logged for both), then
//! takes over between two decisions, so the queue, the cache and the pods
//! assumed but not yet bound carry over untouched: no pod is lost or
//! decided twice, and scheduling does not pause for the new one's warm-up. The new one is on probation for a while; if it keeps
//! failing then, the loop goes back to the previous one by itself and says
//! so through the runner's [`Report`]s.

mod cache;
mod queue;

use std::collections::{BTreeMap, HashSet, VecDeque};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use orchd_store::{ObjectKey, Store, StoreError, meta};
use serde_json::{Value, json};
use tokio::sync::{mpsc, oneshot, watch};

use crate::PluginError;
use crate::events::{EventRecorder, EventType};
use crate::informer::{self, Change};
use crate::podinfo;
use crate::scheduler::SchedulerPlugin;
use crate::scheduler::ViewChange;
use crate::scheduler::types::{Decision, PodInfo, Rejection};
use cache::{Cache, Placement};

/// Which informer a change comes from.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Kind {
    Node,
    Pod,
}
use queue::Queue;

/// The schedulerName of pods that name none.
pub const DEFAULT_SCHEDULER_NAME: &str = "default-scheduler";

/// What decides where pods go: a scheduler plugin, or the same algorithm
/// linked natively (the benchmark's baseline). It keeps its own view of
/// the cluster, fed with changes, as `world scheduler` says. Calls are
/// synchronous and run on a blocking thread.
pub trait Decide: Send + 'static {
    /// The schedulerName served.
    fn scheduler_name(&self) -> &str;
    /// What this is, for reports: a component digest, or `native`.
    fn digest(&self) -> &str;
    /// Whether its view must be sent whole before the next decision
    /// (it has none yet, or lost it).
    fn needs_full_view(&self) -> bool;
    /// Applies `changes` to its view (with `reset`, the whole cluster
    /// after emptying it), then decides for each of `pods` in order, one
    /// decision per pod, counting each pod it binds at once.
    fn schedule(
        &mut self,
        changes: &[ViewChange],
        reset: bool,
        pods: &[PodInfo],
    ) -> Result<Vec<Decision>, PluginError>;
}

impl Decide for SchedulerPlugin {
    fn scheduler_name(&self) -> &str {
        SchedulerPlugin::scheduler_name(self)
    }
    fn digest(&self) -> &str {
        SchedulerPlugin::digest(self)
    }
    fn needs_full_view(&self) -> bool {
        SchedulerPlugin::needs_full_view(self)
    }
    fn schedule(
        &mut self,
        changes: &[ViewChange],
        reset: bool,
        pods: &[PodInfo],
    ) -> Result<Vec<Decision>, PluginError> {
        SchedulerPlugin::schedule(self, changes, reset, pods)
    }
}

/// Most pods decided in one call.
const MAX_BATCH_PODS: usize = 256;

/// Plugin time one batch aims at: far inside any sensible call deadline,
/// short enough that bindings start flowing early and a swap waits little.
const BATCH_TIME: Duration = Duration::from_millis(10);

/// Failed calls during probation that send a swapped-in decider back.
const PROBATION_FAILURES: u32 = 2;

/// What a runner (scheduler or controller) tells its owner, in the order
/// it happens.
#[derive(Debug)]
pub enum Report {
    /// A swapped-in decider made its first decision.
    FirstDecision {
        /// Its digest.
        digest: String,
        /// When the decision came back: a report is read later, after
        /// whatever its reader was doing (such as writing the status of
        /// the takeover), and the swap time must not include that.
        at: Instant,
    },
    /// A swapped-in decider passed its probation; the previous one is gone.
    Confirmed {
        /// Its digest.
        digest: String,
    },
    /// A swapped-in decider failed during probation: the previous one
    /// decides again.
    RolledBack {
        /// The digest that failed.
        failed: String,
        /// The digest deciding again.
        restored: String,
        /// Its last failure.
        error: PluginError,
    },
    /// A call failed: the instance is discarded and the next call starts
    /// a fresh one (after a backoff if failures go on).
    Failed {
        /// The digest that failed.
        digest: String,
        /// What happened.
        error: PluginError,
    },
    /// A controller's reconcile returned an error (retried with backoff).
    ReconcileFailed {
        /// The controller's digest.
        digest: String,
        /// `resource namespace/name` of the work item.
        key: String,
        /// The error the plugin returned.
        message: String,
    },
}

/// A swap asked of the loop, back from warming up with its result.
struct Warmed {
    swap: Swap,
    result: Result<WarmUp, PluginError>,
}

/// How a swapped-in decider was given its view before taking over.
#[derive(Clone, Copy, Debug)]
pub struct WarmUp {
    /// Nodes in the view.
    pub nodes: usize,
    /// Placed pods in the view.
    pub pods: usize,
    /// Time to send it.
    pub took: Duration,
}

/// A swap asked of the loop.
struct Swap {
    decider: Box<dyn Decide>,
    probation: Duration,
    reply: oneshot::Sender<Result<WarmUp, PluginError>>,
}

/// The decider on probation and the one it replaced.
struct Probation {
    previous: Box<dyn Decide>,
    until: Instant,
    failures: u32,
    decided: bool,
}

/// Counters of a running scheduler, for logs, tests and benchmarks.
#[derive(Debug, Default)]
pub struct RunnerStats {
    /// Pods bound.
    pub scheduled: AtomicU64,
    /// Attempts that found no node.
    pub unschedulable: AtomicU64,
    /// Bindings refused because the pod had changed.
    pub bind_conflicts: AtomicU64,
    /// Calls into the plugin that failed (trap, deadline, memory).
    pub plugin_errors: AtomicU64,
    /// Pods waiting for a decision.
    pub pending: AtomicU64,
}

/// A running scheduler. Dropping it does not stop it; call [`Self::stop`].
pub struct RunnerHandle {
    scheduler_name: String,
    stop: watch::Sender<bool>,
    swaps: mpsc::UnboundedSender<Swap>,
    task: tokio::task::JoinHandle<()>,
    stats: Arc<RunnerStats>,
}

impl RunnerHandle {
    /// The schedulerName served.
    pub fn scheduler_name(&self) -> &str {
        &self.scheduler_name
    }

    /// Live counters.
    pub fn stats(&self) -> &Arc<RunnerStats> {
        &self.stats
    }

    /// Replaces the decider between two decisions; returns once the new
    /// one has been given the whole view and is in charge (or failed to
    /// take the view). It must serve the same schedulerName. For `probation`
    /// after that, failing calls send the loop back to the old one (see
    /// [`Report::RolledBack`]); a swap during probation confirms the one on
    /// probation first.
    pub async fn swap(
        &self,
        decider: Box<dyn Decide>,
        probation: Duration,
    ) -> Result<WarmUp, PluginError> {
        if decider.scheduler_name() != self.scheduler_name {
            return Err(PluginError::Invalid(format!(
                "the new revision serves schedulerName {:?}, not {:?}",
                decider.scheduler_name(),
                self.scheduler_name
            )));
        }
        let (reply, answer) = oneshot::channel();
        let swap = Swap {
            decider,
            probation,
            reply,
        };
        if self.swaps.send(swap).is_err() {
            return Err(PluginError::Internal(
                "the scheduler runner has stopped".into(),
            ));
        }
        answer.await.unwrap_or_else(|_| {
            Err(PluginError::Internal(
                "the scheduler runner has stopped".into(),
            ))
        })
    }

    /// Stops the informers and the loop and waits for them. Bindings
    /// already sent to the store complete on their own.
    pub async fn stop(self) {
        let _ = self.stop.send(true);
        let _ = self.task.await;
    }
}

/// schedulerNames served by a runner in this process: two runners for one
/// name would bind the same pods twice.
static ACTIVE: Mutex<Vec<String>> = Mutex::new(Vec::new());

/// Releases the schedulerName when the runner's loop ends.
struct ActiveGuard(String);

impl Drop for ActiveGuard {
    fn drop(&mut self) {
        if let Ok(mut active) = ACTIVE.lock() {
            active.retain(|n| *n != self.0);
        }
    }
}

/// Starts scheduling the pods whose schedulerName `decider` serves; what
/// happens to the decider is told on `reports` if given. Must be called
/// within a tokio runtime. Fails if another runner in this process serves
/// the same name.
pub fn start(
    store: Arc<dyn Store>,
    decider: Box<dyn Decide>,
    reports: Option<mpsc::UnboundedSender<Report>>,
) -> Result<RunnerHandle, PluginError> {
    let name = decider.scheduler_name().to_string();
    {
        let mut active = ACTIVE
            .lock()
            .map_err(|_| PluginError::Internal("scheduler registry poisoned".into()))?;
        if active.contains(&name) {
            return Err(PluginError::Invalid(format!(
                "a scheduler named {name:?} is already running"
            )));
        }
        active.push(name.clone());
    }
    let guard = ActiveGuard(name.clone());
    let (stop_tx, stop_rx) = watch::channel(false);
    let (change_tx, change_rx) = mpsc::channel(4096);
    let (bind_tx, bind_rx) = mpsc::unbounded_channel();
    let (swap_tx, swap_rx) = mpsc::unbounded_channel();
    let (warmed_tx, warmed_rx) = mpsc::unbounded_channel();
    let stats = Arc::new(RunnerStats::default());
    for (resource, kind) in [("nodes", Kind::Node), ("pods", Kind::Pod)] {
        tokio::spawn(informer::run(
            store.clone(),
            resource,
            kind,
            change_tx.clone(),
            stop_rx.clone(),
        ));
    }
    drop(change_tx);
    let runner = Runner {
        events: EventRecorder::new(store.clone(), &name),
        store,
        name: name.clone(),
        plugin: Some(decider),
        probation: None,
        reports,
        cache: Cache::default(),
        queue: Queue::default(),
        synced: HashSet::new(),
        batch: 1,
        resend_view: false,
        swaps_waiting: VecDeque::new(),
        warming: false,
        warmed_tx,
        flush: false,
        plugin_ready_at: None,
        bind_tx,
        stats: stats.clone(),
    };
    let task = tokio::spawn(async move {
        let _guard = guard;
        runner
            .run(change_rx, bind_rx, swap_rx, warmed_rx, stop_rx)
            .await;
    });
    Ok(RunnerHandle {
        scheduler_name: name,
        stop: stop_tx,
        swaps: swap_tx,
        task,
        stats,
    })
}

/// How a binding ended.
enum BindOutcome {
    /// The pod as stored after the binding (the store's shared copy).
    Bound(Arc<Value>),
    Conflict,
    Gone,
    Failed(StoreError),
}

struct BindDone {
    key: String,
    node: String,
    outcome: BindOutcome,
}

/// The loop's state; only the loop touches it.
struct Runner {
    store: Arc<dyn Store>,
    name: String,
    /// Taken out while a call runs on a blocking thread.
    plugin: Option<Box<dyn Decide>>,
    /// Set after a swap, until the new decider is confirmed.
    probation: Option<Probation>,
    reports: Option<mpsc::UnboundedSender<Report>>,
    cache: Cache,
    queue: Queue,
    /// Resources whose first list has arrived; nothing is decided before
    /// both nodes and pods are known.
    synced: HashSet<&'static str>,
    /// Pods to decide in the next call (adapts to how fast decisions are).
    batch: usize,
    /// The decider in charge changed: its view (if it has one) missed
    /// changes, so it gets the whole view next.
    resend_view: bool,
    /// Swaps asked for, waiting for the one warming up.
    swaps_waiting: VecDeque<Swap>,
    /// A swapped-in decider is being given the whole view.
    warming: bool,
    warmed_tx: mpsc::UnboundedSender<Warmed>,
    /// Something changed that may let waiting pods fit.
    flush: bool,
    /// The plugin is backing off until then.
    plugin_ready_at: Option<Instant>,
    bind_tx: mpsc::UnboundedSender<BindDone>,
    stats: Arc<RunnerStats>,
    events: Arc<EventRecorder>,
}

/// Changes applied between two decisions at most, so a flood of events
/// cannot starve scheduling.
const MAX_CHANGES: usize = 10_000;

impl Runner {
    async fn run(
        mut self,
        mut changes: mpsc::Receiver<Change<Kind>>,
        mut binds: mpsc::UnboundedReceiver<BindDone>,
        mut swaps: mpsc::UnboundedReceiver<Swap>,
        mut warmed: mpsc::UnboundedReceiver<Warmed>,
        mut stop: watch::Receiver<bool>,
    ) {
        loop {
            if *stop.borrow() {
                return;
            }
            while let Ok(swap) = swaps.try_recv() {
                self.swap(swap);
            }
            while let Ok(done) = warmed.try_recv() {
                self.warmed(done);
            }
            let mut applied = 0;
            while applied < MAX_CHANGES {
                match changes.try_recv() {
                    Ok(change) => self.apply(change),
                    Err(mpsc::error::TryRecvError::Empty) => break,
                    Err(mpsc::error::TryRecvError::Disconnected) => return,
                }
                applied += 1;
            }
            while let Ok(done) = binds.try_recv() {
                self.bound(done);
            }
            if self.flush {
                self.flush = false;
                self.queue.flush();
            }
            let now = Instant::now();
            let next_backoff = self.queue.promote_due(now);
            self.stats
                .pending
                .store(self.queue.len() as u64, Ordering::Relaxed);
            if self.probation.as_ref().is_some_and(|p| p.until <= now) {
                self.confirm();
            }
            let plugin_ready = self.plugin_ready_at.is_none_or(|at| at <= now);
            if plugin_ready {
                self.plugin_ready_at = None;
            }
            if self.synced.len() == 2 && plugin_ready && self.queue.has_active() {
                let mut batch = Vec::with_capacity(self.batch);
                while batch.len() < self.batch
                    && let Some(item) = self.queue.pop()
                {
                    batch.push(item);
                }
                if !self.attempt(batch).await {
                    return;
                }
                continue;
            }
            let probation_end = self.probation.as_ref().map(|p| p.until);
            let wake = [next_backoff, self.plugin_ready_at, probation_end]
                .into_iter()
                .flatten()
                .min()
                .unwrap_or(now + Duration::from_secs(3600));
            tokio::select! {
                _ = stop.changed() => return,
                change = changes.recv() => match change {
                    Some(change) => self.apply(change),
                    None => return,
                },
                Some(done) = binds.recv() => self.bound(done),
                Some(swap) = swaps.recv() => self.swap(swap),
                Some(done) = warmed.recv() => self.warmed(done),
                _ = tokio::time::sleep_until(wake.into()) => {}
            }
        }
    }

    fn report(&self, report: Report) {
        if let Some(reports) = &self.reports {
            let _ = reports.send(report);
        }
    }

    /// Takes a swap: its decider warms up with the whole view, one swap
    /// at a time, in the order asked.
    fn swap(&mut self, swap: Swap) {
        self.swaps_waiting.push_back(swap);
        self.warm_next();
    }

    fn warm_next(&mut self) {
        if self.warming {
            return;
        }
        let Some(mut swap) = self.swaps_waiting.pop_front() else {
            return;
        };
        self.warming = true;
        let view = self.cache.fork();
        let (nodes, pods) = (self.cache.node_count(), self.cache.pod_count());
        let done = self.warmed_tx.clone();
        tokio::task::spawn_blocking(move || {
            let started = Instant::now();
            let result = swap
                .decider
                .schedule(&view.changes, view.reset, &[])
                .map(|_| WarmUp {
                    nodes,
                    pods,
                    took: started.elapsed(),
                });
            let _ = done.send(Warmed { swap, result });
        });
    }

    /// A decider has its view: it takes over, or, if it could not take the
    /// view, is refused and the current one stays.
    fn warmed(&mut self, warmed: Warmed) {
        self.warming = false;
        match warmed.result {
            Ok(warm_up) => {
                self.cache.join();
                self.take_over(warmed.swap, warm_up);
            }
            Err(e) => {
                self.cache.unfork();
                let _ = warmed.swap.reply.send(Err(e));
            }
        }
        self.warm_next();
    }

    /// Puts a warmed-up decider in charge; the current one waits out the
    /// probation in case the new one fails.
    fn take_over(&mut self, swap: Swap, warm_up: WarmUp) {
        let Some(current) = self.plugin.take() else {
            let _ = swap.reply.send(Err(PluginError::Internal(
                "the scheduler runner has no decider".into(),
            )));
            return;
        };
        // A swap during probation settles the earlier one first.
        if self.probation.is_some() {
            self.confirm();
        }
        self.plugin = Some(swap.decider);
        // Its view is the forked one plus the changes logged for it since.
        self.resend_view = false;
        self.plugin_ready_at = None;
        self.probation = Some(Probation {
            previous: current,
            until: Instant::now() + swap.probation,
            failures: 0,
            decided: false,
        });
        // Pods that were backing off because of the old decider get a
        // chance with the new one.
        self.flush = true;
        let _ = swap.reply.send(Ok(warm_up));
    }

    /// Ends the probation: the decider in charge stays.
    fn confirm(&mut self) {
        if self.probation.take().is_some()
            && let Some(plugin) = &self.plugin
        {
            self.report(Report::Confirmed {
                digest: plugin.digest().to_string(),
            });
        }
    }

    /// Counts a failed call; during probation, enough of them bring the
    /// previous decider back.
    fn failed(&mut self, error: &PluginError) {
        let Some(plugin) = &self.plugin else { return };
        let digest = plugin.digest().to_string();
        // Backing off repeats an earlier failure; it is not a new one.
        let backing_off = matches!(error, PluginError::BackingOff { .. });
        if !backing_off {
            self.report(Report::Failed {
                digest: digest.clone(),
                error: error.clone(),
            });
        }
        let Some(probation) = &mut self.probation else {
            return;
        };
        probation.failures += 1;
        if probation.failures < PROBATION_FAILURES && !backing_off {
            return;
        }
        if let Some(probation) = self.probation.take() {
            let restored = probation.previous.digest().to_string();
            self.plugin = Some(probation.previous);
            self.resend_view = true;
            self.plugin_ready_at = None;
            self.flush = true;
            eprintln!(
                "orchd: scheduler {}: {digest} failed on probation ({error}); back to {restored}",
                self.name
            );
            self.report(Report::RolledBack {
                failed: digest,
                restored,
                error: error.clone(),
            });
        }
    }

    fn apply(&mut self, change: Change<Kind>) {
        match change {
            Change::Resync(Kind::Node, nodes, _) => {
                let names: HashSet<&str> = nodes
                    .iter()
                    .filter_map(|n| n["metadata"]["name"].as_str())
                    .collect();
                for name in self.cache.node_names() {
                    if !names.contains(name.as_str()) {
                        self.cache.delete_node(&name);
                    }
                }
                for node in &nodes {
                    self.cache.upsert_node(node);
                }
                self.synced.insert("nodes");
                self.flush = true;
            }
            Change::Resync(Kind::Pod, pods, _) => {
                let keys: HashSet<String> = pods.iter().filter_map(pod_key).collect();
                let mut known = self.queue.keys();
                known.extend(self.cache.pod_keys());
                for key in known {
                    let assumed = self.cache.placement(&key).is_some_and(|p| p.assumed);
                    if !keys.contains(&key) && !assumed {
                        self.forget_pod(&key);
                    }
                }
                for pod in pods {
                    self.upsert_pod(Arc::new(pod));
                }
                self.synced.insert("pods");
                self.flush = true;
            }
            Change::Upsert(Kind::Node, node) => {
                if self.cache.upsert_node(&node) {
                    self.flush = true;
                }
            }
            Change::Delete(Kind::Node, node) => {
                if let Some(name) = node["metadata"]["name"].as_str() {
                    self.cache.delete_node(name);
                }
            }
            Change::Upsert(Kind::Pod, pod) => self.upsert_pod(pod),
            Change::Delete(Kind::Pod, pod) => {
                if let Some(key) = pod_key(&pod) {
                    self.forget_pod(&key);
                }
            }
        }
    }

    fn upsert_pod(&mut self, pod: Arc<Value>) {
        let Some(key) = pod_key(&pod) else { return };
        let terminal = matches!(
            pod["status"]["phase"].as_str(),
            Some("Succeeded" | "Failed")
        );
        match pod["spec"]["nodeName"].as_str().filter(|n| !n.is_empty()) {
            Some(node) => {
                self.queue.remove(&key);
                if terminal {
                    // A finished pod frees what it requested.
                    if self.cache.unplace(&key).is_some() {
                        self.flush = true;
                    }
                } else {
                    self.cache
                        .place(&key, Placement::of(&key, &pod, node, false));
                }
            }
            None => {
                let ours = pod["spec"]["schedulerName"]
                    .as_str()
                    .filter(|n| !n.is_empty())
                    .unwrap_or(DEFAULT_SCHEDULER_NAME)
                    == self.name;
                let deleting = meta::meta_str(&pod, "deletionTimestamp").is_some();
                if ours && !deleting && !terminal {
                    self.queue.upsert(&key, pod);
                } else {
                    self.queue.remove(&key);
                }
            }
        }
    }

    fn forget_pod(&mut self, key: &str) {
        self.queue.remove(key);
        if self.cache.unplace(key).is_some() {
            self.flush = true;
        }
        if let Some((namespace, name)) = key.split_once('/') {
            self.events.forget(namespace, name);
        }
    }

    /// One call for a batch of pods. Returns false if the runner cannot
    /// go on.
    async fn attempt(&mut self, batch: Vec<(String, Arc<Value>)>) -> bool {
        let Some(mut plugin) = self.plugin.take() else {
            return false;
        };
        let infos: Vec<PodInfo> = batch
            .iter()
            .map(|(_, pod)| podinfo::pod_info(pod))
            .collect();
        let stale = std::mem::take(&mut self.resend_view);
        let full = plugin.needs_full_view() || stale;
        let update = self.cache.take_update(full);
        let joined = tokio::task::spawn_blocking(move || {
            let started = Instant::now();
            let result = plugin.schedule(&update.changes, update.reset, &infos);
            (plugin, result, started.elapsed())
        })
        .await;
        let (plugin, result, took) = match joined {
            Ok(parts) => parts,
            Err(e) => {
                eprintln!(
                    "orchd: scheduler {}: stopped: the plugin call was lost ({e})",
                    self.name
                );
                return false;
            }
        };
        self.resize_batch(batch.len(), took);
        let first = match &mut self.probation {
            Some(probation) if !probation.decided && result.is_ok() => {
                probation.decided = true;
                true
            }
            _ => false,
        };
        if first {
            self.report(Report::FirstDecision {
                digest: plugin.digest().to_string(),
                at: Instant::now(),
            });
        }
        self.plugin = Some(plugin);
        match result {
            Ok(decisions) => {
                for ((key, pod), decision) in batch.into_iter().zip(decisions) {
                    self.decided(key, pod, decision);
                }
            }
            Err(e @ PluginError::BackingOff { .. }) => {
                for (key, _) in &batch {
                    self.queue.retry_first(key);
                }
                if let PluginError::BackingOff { retry_in, .. } = &e {
                    self.plugin_ready_at = Some(Instant::now() + *retry_in);
                }
                self.failed(&e);
            }
            Err(e) => {
                self.stats.plugin_errors.fetch_add(1, Ordering::Relaxed);
                self.failed(&e);
                let message = format!("running scheduler plugin {}: {e}", self.name);
                for (key, pod) in &batch {
                    self.events
                        .record(pod, EventType::Warning, "FailedScheduling", &message);
                    self.queue.retry_later(key);
                }
            }
        }
        true
    }

    /// Sizes the next batch from how long this one took per pod, so that
    /// a call takes about [`BATCH_TIME`].
    fn resize_batch(&mut self, pods: usize, took: Duration) {
        let per_pod = took / u32::try_from(pods.max(1)).unwrap_or(u32::MAX);
        let fits = BATCH_TIME.as_nanos() / per_pod.as_nanos().max(1);
        let fits = usize::try_from(fits).unwrap_or(MAX_BATCH_PODS);
        // Grow gently (a slow pod may follow fast ones), shrink at once.
        self.batch = fits.clamp(1, (self.batch * 2).min(MAX_BATCH_PODS));
    }

    /// Acts on the plugin's decision for one pod.
    fn decided(&mut self, key: String, pod: Arc<Value>, decision: Decision) {
        match decision {
            Decision::Bind(node) if self.cache.has_node(&node) => {
                self.cache
                    .assume(&key, Placement::of(&key, &pod, &node, true));
                let store = self.store.clone();
                let tx = self.bind_tx.clone();
                tokio::spawn(async move {
                    let outcome = bind(store.as_ref(), &pod, &node).await;
                    let _ = tx.send(BindDone { key, node, outcome });
                });
            }
            Decision::Bind(node) => {
                // The plugin counts the pod there already: take it back.
                self.cache.disown(&key);
                self.stats.plugin_errors.fetch_add(1, Ordering::Relaxed);
                let message = format!("scheduler plugin chose node {node:?}, which does not exist");
                eprintln!("orchd: scheduler {}: {key}: {message}", self.name);
                self.failed(&PluginError::Invalid(message.clone()));
                self.events
                    .record(&pod, EventType::Warning, "FailedScheduling", &message);
                self.queue.retry_later(&key);
            }
            Decision::Unschedulable(rejections) => {
                self.stats.unschedulable.fetch_add(1, Ordering::Relaxed);
                let message = fit_error_message(self.cache.node_count(), &rejections);
                self.events
                    .record(&pod, EventType::Warning, "FailedScheduling", &message);
                self.mark_unschedulable(&pod, &message);
                self.queue.retry_later(&key);
            }
        }
    }

    fn bound(&mut self, done: BindDone) {
        let BindDone { key, node, outcome } = done;
        let assumed = self.cache.placement(&key).is_some_and(|p| p.assumed);
        match outcome {
            BindOutcome::Bound(pod) => {
                self.queue.done(&key);
                // The bound pod is the one decided on plus its node: the
                // assumed placement stands, only no longer assumed. If the
                // watch already showed it deleted or finished, it is not
                // counted any more and must not come back.
                self.cache.confirm(&key, &node);
                self.stats.scheduled.fetch_add(1, Ordering::Relaxed);
                let message = format!("Successfully assigned {key} to {node}");
                self.events
                    .record(&pod, EventType::Normal, "Scheduled", &message);
            }
            BindOutcome::Conflict => {
                // The pod changed since it was read; the watch brings the
                // new version (or shows it bound elsewhere).
                if assumed {
                    self.cache.unplace(&key);
                }
                self.stats.bind_conflicts.fetch_add(1, Ordering::Relaxed);
                self.queue.retry_now(&key);
            }
            BindOutcome::Gone => {
                if assumed {
                    self.cache.unplace(&key);
                }
                self.queue.done(&key);
            }
            BindOutcome::Failed(e) => {
                if assumed {
                    self.cache.unplace(&key);
                }
                eprintln!(
                    "orchd: scheduler {}: cannot bind {key} to {node}: {e}",
                    self.name
                );
                self.queue.retry_later(&key);
            }
        }
    }

    /// Sets the pod's `PodScheduled` condition to False/Unschedulable with
    /// the reasons, as kube-scheduler does (shown by `kubectl describe`),
    /// unless it already says so.
    fn mark_unschedulable(&self, pod: &Value, message: &str) {
        let current = pod["status"]["conditions"]
            .as_array()
            .and_then(|c| c.iter().find(|c| c["type"] == "PodScheduled"));
        if current.is_some_and(|c| c["status"] == "False" && c["message"] == message) {
            return;
        }
        let mut next = pod.clone();
        set_condition(
            &mut next,
            json!({"type": "PodScheduled", "status": "False", "reason": "Unschedulable",
                   "message": message, "lastProbeTime": null,
                   "lastTransitionTime": meta::now_rfc3339()}),
        );
        let Some(key) = store_key(pod) else { return };
        let store = self.store.clone();
        tokio::spawn(async move {
            // A conflict means a newer version exists; the next attempt
            // writes the condition on that one.
            let _ = store.update_shared(&key, next).await;
        });
    }
}

/// Binds `pod` to `node`: `spec.nodeName` and `PodScheduled=True`, written
/// with the pod's resourceVersion as precondition.
async fn bind(store: &dyn Store, pod: &Value, node: &str) -> BindOutcome {
    let Some(key) = store_key(pod) else {
        return BindOutcome::Gone;
    };
    let mut next = pod.clone();
    if !next["spec"].is_object() {
        return BindOutcome::Gone;
    }
    next["spec"]["nodeName"] = json!(node);
    set_condition(
        &mut next,
        json!({"type": "PodScheduled", "status": "True", "lastProbeTime": null,
               "lastTransitionTime": meta::now_rfc3339()}),
    );
    match store.update_shared(&key, next).await {
        Ok(bound) => BindOutcome::Bound(bound.object),
        Err(StoreError::Conflict { .. }) => BindOutcome::Conflict,
        Err(StoreError::NotFound { .. }) => BindOutcome::Gone,
        Err(e) => BindOutcome::Failed(e),
    }
}

/// Replaces (or adds) the condition of the same type in `status.conditions`.
fn set_condition(pod: &mut Value, condition: Value) {
    if !pod["status"].is_object() {
        pod["status"] = json!({});
    }
    if !pod["status"]["conditions"].is_array() {
        pod["status"]["conditions"] = json!([]);
    }
    if let Some(list) = pod["status"]["conditions"].as_array_mut() {
        list.retain(|c| c["type"] != condition["type"]);
        list.push(condition);
    }
}

fn pod_key(pod: &Value) -> Option<String> {
    let namespace = meta::meta_str(pod, "namespace")?;
    let name = meta::meta_str(pod, "name")?;
    Some(format!("{namespace}/{name}"))
}

fn store_key(pod: &Value) -> Option<ObjectKey> {
    Some(ObjectKey::namespaced(
        "pods",
        meta::meta_str(pod, "namespace")?,
        meta::meta_str(pod, "name")?,
    ))
}

/// The FailedScheduling message, worded as kube-scheduler's: `0/N nodes
/// are available: ` then each distinct reason with the number of nodes
/// giving it, sorted as strings, e.g. `0/3 nodes are available: 1
/// Insufficient cpu, 2 node(s) had untolerated taint {gpu: true}.`
pub fn fit_error_message(node_count: usize, rejections: &[Rejection]) -> String {
    if node_count == 0 {
        return "0/0 nodes are available: no nodes available to schedule pods.".into();
    }
    let mut counts: BTreeMap<&str, HashSet<&str>> = BTreeMap::new();
    for r in rejections {
        counts
            .entry(r.reason.as_str())
            .or_default()
            .insert(r.node.as_str());
    }
    let mut parts: Vec<String> = counts
        .into_iter()
        .map(|(reason, nodes)| format!("{} {reason}", nodes.len()))
        .collect();
    parts.sort();
    if parts.is_empty() {
        format!("0/{node_count} nodes are available.")
    } else {
        format!("0/{node_count} nodes are available: {}.", parts.join(", "))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn reject(node: &str, reason: &str) -> Rejection {
        Rejection {
            node: node.into(),
            reason: reason.into(),
        }
    }

    #[test]
    fn failed_scheduling_groups_reasons_like_kubernetes() {
        let rejections = [
            reject("n1", "Insufficient cpu"),
            reject("n2", "Insufficient cpu"),
            reject("n2", "Insufficient memory"),
            reject("n3", "node(s) had untolerated taint {gpu: true}"),
            reject("n3", "node(s) had untolerated taint {gpu: true}"),
        ];
        assert_eq!(
            fit_error_message(3, &rejections),
            "0/3 nodes are available: 1 Insufficient memory, 1 node(s) had untolerated taint {gpu: true}, 2 Insufficient cpu."
        );
        assert_eq!(
            fit_error_message(0, &[]),
            "0/0 nodes are available: no nodes available to schedule pods."
        );
        assert_eq!(fit_error_message(2, &[]), "0/2 nodes are available.");
    }
}
