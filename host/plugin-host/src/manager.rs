//! The plugin manager: makes what runs match the `orchd.dev/v1` Plugin
//! objects, as a controller does.
//!
//! It watches Plugins; when one wants a revision that does not run, it
//! reads that revision's `PluginComponent`, checks the bytes against the
//! digest, compiles them off the async workers (through the artifact
//! cache), checks the world, instantiates and warms the plugin, and only
//! then puts it in charge: a first revision starts its runner, a later one
//! is swapped into the running one ([`runner::RunnerHandle::swap`]) so no
//! pod is lost or decided twice. A revision that fails to load, or fails
//! its first calls, is recorded in `status.failedRevisions` and the last
//! good one keeps (or goes back to) running. Everything it learns goes to
//! the Plugin's status and to Events about it.
//!
//! Schedulers and controllers are run (a controller's object calls go
//! through the API given to [`start`], checked against the Plugin's
//! `spec.capabilities`); admission plugins are put into the API's
//! [`AdmissionChain`] given in [`ManagerConfig::admission`] (a new
//! revision replaces the old one in the chain in one step, once loaded and
//! instantiated), and their failed reviews become Events on the Plugin.
//!
//! A manager runs one [`PluginSet`]: on a shared store each replica runs
//! the admission plugins itself (its API enforces them) while schedulers
//! and controllers run in the replica holding the lease.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use orchd_resources::orchd_v1::{self, Plugin, PluginStatus};
use orchd_store::{ObjectKey, Store, StoreError, meta};
use serde_json::Value;
use tokio::sync::{mpsc, watch};

use crate::access::{ObjectAccess, ObjectApi};
use crate::admission::{AdmissionChain, AdmissionFailure, AdmissionPlugin, AdmissionSettings};
use crate::controller::ControllerPlugin;
use crate::events::{EventRecorder, EventType};
use crate::informer::{self, Change};
use crate::node_policy::{NodePolicyPlugin, NodePolicySlot};
use crate::reconciler::{self, ReconcilerHandle};
use crate::reflector::SharedCaches;
use crate::runner::{self, Report, RunnerHandle};
use crate::{Limits, LogSink, PluginEngine, PluginError, SchedulerPlugin, World};

/// How long [`ManagerHandle::stop`] waits for the manager to finish what
/// it is doing.
const STOP_GRACE: Duration = Duration::from_secs(2);

/// The store resource of Plugin objects.
pub const PLUGINS: &str = "plugins.orchd.dev";
/// The store resource of PluginComponent objects.
pub const COMPONENTS: &str = "plugincomponents.orchd.dev";

/// Which Plugins a manager runs; it leaves the others alone (no load, no
/// status write), for another manager to run.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PluginSet {
    /// Every Plugin: a replica alone on its store.
    All,
    /// Only Plugins of the worlds every replica applies itself:
    /// `admission` (each API replica enforces its own chain: a replica
    /// that does not hold the plugins' lease must still enforce policy)
    /// and `node-policy` (each node agent decides for its own pods). Run
    /// by every replica, unelected.
    Admission,
    /// Every Plugin but those (schedulers, controllers, and Plugins whose
    /// world is wrong, to be refused): what the replica holding the lease
    /// runs, since two replicas must never both decide.
    Elected,
}

impl PluginSet {
    /// Whether a Plugin of `world` (its `spec.world`) belongs to this set.
    pub fn runs(self, world: &str) -> bool {
        let admission = world == World::Admission.name() || world == World::NodePolicy.name();
        match self {
            PluginSet::All => true,
            PluginSet::Admission => admission,
            PluginSet::Elected => !admission,
        }
    }
}

/// How the manager runs plugins.
#[derive(Clone, Debug)]
pub struct ManagerConfig {
    /// How long a swapped-in revision may still be sent back by failing.
    pub probation: Duration,
    /// The API's admission chain, where admission plugins are put; without
    /// one, admission plugins are refused.
    pub admission: Option<Arc<AdmissionChain>>,
    /// The Plugins this manager runs.
    pub plugins: PluginSet,
    /// Where node policies are put for the node agent of this process;
    /// without one, node policies are refused.
    pub node_policy: Option<Arc<NodePolicySlot>>,
}

impl Default for ManagerConfig {
    fn default() -> Self {
        ManagerConfig {
            probation: Duration::from_secs(3),
            admission: None,
            plugins: PluginSet::All,
            node_policy: None,
        }
    }
}

/// A running manager. Call [`Self::stop`] to stop it and its plugins.
pub struct ManagerHandle {
    stop: watch::Sender<bool>,
    task: tokio::task::JoinHandle<()>,
}

impl ManagerHandle {
    /// Stops watching and stops every plugin it runs. A plugin still
    /// compiling (seconds, for a big component in a debug build) is not
    /// waited for beyond a short grace: it was not running yet.
    pub async fn stop(self) {
        let _ = self.stop.send(true);
        let mut task = self.task;
        if tokio::time::timeout(STOP_GRACE, &mut task).await.is_err() {
            task.abort();
        }
    }
}

/// Starts the manager. Must be called within a tokio runtime. Controllers'
/// object calls go through `api` (without one, controllers are refused).
pub fn start(
    store: Arc<dyn Store>,
    api: Option<Arc<dyn ObjectApi>>,
    engine: PluginEngine,
    log: LogSink,
    config: ManagerConfig,
) -> ManagerHandle {
    let (stop_tx, stop_rx) = watch::channel(false);
    let (change_tx, change_rx) = mpsc::channel(256);
    tokio::spawn(informer::run(
        store.clone(),
        PLUGINS,
        (),
        change_tx,
        stop_rx.clone(),
    ));
    let (report_tx, report_rx) = mpsc::unbounded_channel();
    let (failure_tx, failure_rx) = mpsc::unbounded_channel();
    if let Some(chain) = &config.admission
        && config.plugins.runs(World::Admission.name())
    {
        chain.report_failures_to(failure_tx.clone());
    }
    if let Some(slot) = &config.node_policy
        && config.plugins.runs(World::NodePolicy.name())
    {
        slot.report_failures_to(failure_tx);
    }
    let manager = Manager {
        caches: SharedCaches::default(),
        events: EventRecorder::new(store.clone(), "plugin-manager"),
        store,
        api,
        engine,
        log,
        config,
        running: HashMap::new(),
        refused: HashMap::new(),
        report_tx,
    };
    let task = tokio::spawn(manager.run(change_rx, report_rx, failure_rx, stop_rx));
    ManagerHandle {
        stop: stop_tx,
        task,
    }
}

/// What runs a plugin: the scheduler runner, the controller runner, or
/// the admission chain (by the plugin's name in it).
enum Runs {
    Scheduler(RunnerHandle),
    Controller(ReconcilerHandle),
    Admission(Arc<AdmissionChain>, String),
    NodePolicy(Arc<NodePolicySlot>, String),
}

impl Runs {
    async fn stop(self) {
        match self {
            Runs::Scheduler(r) => r.stop().await,
            Runs::Controller(r) => r.stop().await,
            Runs::Admission(chain, name) => chain.remove(&name),
            Runs::NodePolicy(slot, name) => slot.remove(&name),
        }
    }
}

/// A loaded revision, ready to take over.
enum Loaded {
    Scheduler(SchedulerPlugin),
    Controller(ControllerPlugin),
    Admission(AdmissionPlugin),
    NodePolicy(NodePolicyPlugin),
}

/// A plugin that runs.
struct Running {
    revision: i64,
    digest: String,
    /// For schedulers, the schedulerName served.
    scheduler_name: Option<String>,
    runner: Runs,
    /// While a swapped-in revision is on probation: the one it replaced
    /// (revision, digest, settings).
    previous: Option<(i64, String, Value)>,
    /// When the revision running now was asked for, for the swap time.
    asked_at: Instant,
    /// The limits, capabilities and configuration it was loaded with: a
    /// change of them reloads the same revision.
    settings: Value,
    /// The Plugin's generation it was loaded for.
    generation: i64,
}

/// A loaded revision and what it was loaded for.
struct Revision {
    generation: i64,
    revision: i64,
    digest: String,
    settings: Value,
    asked_at: Instant,
}

/// A revision that took over, for its status.
struct TookOver<'a> {
    phase: &'static str,
    generation: i64,
    revision: i64,
    digest: &'a str,
    /// For schedulers.
    scheduler_name: Option<&'a str>,
    message: &'a str,
}

struct Manager {
    store: Arc<dyn Store>,
    api: Option<Arc<dyn ObjectApi>>,
    engine: PluginEngine,
    log: LogSink,
    config: ManagerConfig,
    running: HashMap<String, Running>,
    /// Revisions refused per plugin, with the generation they were refused
    /// at. Kept here, not read back from the status: the watch can bring an
    /// older version of the object (one of the manager's own earlier
    /// writes) after a refusal, and that must not load the revision again.
    refused: HashMap<String, (i64, Vec<i64>)>,
    report_tx: mpsc::UnboundedSender<(String, Report)>,
    events: Arc<EventRecorder>,
    /// The object caches its controllers share, one per resource.
    caches: SharedCaches,
}

impl Manager {
    async fn run(
        mut self,
        mut changes: mpsc::Receiver<Change<()>>,
        mut reports: mpsc::UnboundedReceiver<(String, Report)>,
        mut failures: mpsc::UnboundedReceiver<AdmissionFailure>,
        mut stop: watch::Receiver<bool>,
    ) {
        loop {
            tokio::select! {
                _ = stop.changed() => break,
                change = changes.recv() => match change {
                    Some(change) => self.apply(change).await,
                    None => break,
                },
                Some((name, report)) = reports.recv() => self.reported(&name, report).await,
                Some(failure) = failures.recv() => self.admission_failed(failure).await,
            }
        }
        for (_, running) in self.running.drain() {
            match running.runner {
                // The API keeps enforcing the policies in force when this
                // manager stops (losing the lease must not switch
                // admission off); the next manager replaces them.
                Runs::Admission(..) | Runs::NodePolicy(..) => {}
                other => other.stop().await,
            }
        }
    }

    async fn apply(&mut self, change: Change<()>) {
        match change {
            Change::Resync((), plugins, _) => {
                let names: Vec<String> = plugins
                    .iter()
                    .filter_map(|p| meta::meta_str(p, "name").map(str::to_string))
                    .collect();
                let gone: Vec<String> = self
                    .running
                    .keys()
                    .filter(|n| !names.contains(n))
                    .cloned()
                    .collect();
                for name in gone {
                    self.remove(&name, "the Plugin was deleted").await;
                }
                for plugin in plugins {
                    self.reconcile(plugin).await;
                }
            }
            Change::Upsert((), plugin) => self.reconcile(Arc::unwrap_or_clone(plugin)).await,
            Change::Delete((), plugin) => {
                if let Some(name) = meta::meta_str(&plugin, "name") {
                    self.remove(name, "the Plugin was deleted").await;
                }
            }
        }
    }

    async fn remove(&mut self, name: &str, why: &str) {
        if let Some(running) = self.running.remove(name) {
            running.runner.stop().await;
            (self.log)(name, crate::LogLevel::Info, &format!("stopped: {why}"));
        }
    }

    /// Brings what runs for one Plugin in line with its spec.
    async fn reconcile(&mut self, object: Value) {
        let Some(name) = meta::meta_str(&object, "name").map(str::to_string) else {
            return;
        };
        if meta::meta_str(&object, "deletionTimestamp").is_some() {
            self.remove(&name, "the Plugin was deleted").await;
            return;
        }
        let generation = object["metadata"]["generation"].as_i64().unwrap_or(0);
        let plugin: Plugin = match serde_json::from_value(object.clone()) {
            Ok(p) => p,
            Err(e) => {
                eprintln!("orchd: plugin manager: cannot read Plugin {name}: {e}");
                return;
            }
        };
        // On a shared store, a replica without a node agent leaves node
        // policies to the replicas that have one (refusing them would
        // fight those replicas over the status); alone, it refuses them.
        let no_node_here = plugin.spec.world == World::NodePolicy.name()
            && self.config.node_policy.is_none()
            && self.config.plugins != PluginSet::All;
        if !self.config.plugins.runs(&plugin.spec.world) || no_node_here {
            // Another manager's (its world changed, say): stop what runs
            // here, and leave its status to that manager.
            self.remove(&name, "the Plugin's world is run elsewhere")
                .await;
            return;
        }
        let status = plugin.status.clone().unwrap_or_default();
        let wanted = plugin.spec.revision;
        let current = self
            .running
            .get(&name)
            .filter(|r| r.settings == settings_of(&plugin))
            .map(|r| r.revision);
        if current == Some(wanted) {
            // Pointing back at what runs (after a refused revision, say)
            // settles the plugin as it is.
            let on_probation = self
                .running
                .get(&name)
                .is_some_and(|r| r.previous.is_some());
            let phase = if on_probation { "Probation" } else { "Active" };
            if status.observed_generation != Some(generation) || status.phase != phase {
                let message = format!("revision {wanted} runs");
                self.write_status(&name, |s| {
                    s.observed_generation = Some(generation);
                    s.phase = phase.into();
                    s.failed_revisions.retain(|r| *r != wanted);
                    s.message = Some(message.clone());
                })
                .await;
            }
            return;
        }
        let refused_here = self
            .refused
            .get(&name)
            .is_some_and(|(g, revisions)| *g == generation && revisions.contains(&wanted));
        let refused_before = status.failed_revisions.contains(&wanted)
            && status.observed_generation == Some(generation);
        if refused_here || refused_before {
            // Refused before, and nothing changed since.
            return;
        }
        let asked_at = Instant::now();
        match self.load(&name, &plugin).await {
            Ok((loaded, digest)) => {
                let revision = Revision {
                    generation,
                    revision: wanted,
                    digest,
                    settings: settings_of(&plugin),
                    asked_at,
                };
                self.put_in_charge(&name, revision, loaded).await
            }
            Err(e) => self.refuse(&name, &object, generation, wanted, e).await,
        }
    }

    /// Reads, checks, compiles and warms revision `spec.revision`.
    async fn load(&self, name: &str, plugin: &Plugin) -> Result<(Loaded, String), PluginError> {
        let wanted = plugin.spec.revision;
        let revision = plugin
            .spec
            .revisions
            .iter()
            .find(|r| r.revision == wanted)
            .ok_or_else(|| PluginError::Invalid(format!("revision {wanted} is not installed")))?;
        let digest = revision.digest.clone();
        if plugin.spec.world == World::NodePolicy.name()
            && let Some(other) = self
                .running
                .iter()
                .find(|(n, r)| *n != name && matches!(r.runner, Runs::NodePolicy(..)))
                .map(|(n, _)| n)
        {
            return Err(PluginError::Invalid(format!(
                "node policy {other} is in charge of the node; install this one as a revision of it \
                 (orchd plugin install FILE --name {other}) or remove {other} first"
            )));
        }
        let bytes = crate::component::read(self.store.as_ref(), &digest)
            .await
            .map_err(|e| match e {
                crate::component::ReadError::Store(m) => {
                    PluginError::Internal(format!("revision {wanted}: {m}"))
                }
                e => PluginError::Invalid(format!("revision {wanted}: {e}")),
            })?;
        let world = plugin.spec.world.clone();
        let limits = limits_of(plugin);
        let engine = self.engine.clone();
        let log = self.log.clone();
        let access = self.api.clone().map(|api| {
            Arc::new(ObjectAccess::new(
                name,
                plugin.spec.capabilities.clone().unwrap_or_default(),
                api,
                tokio::runtime::Handle::current(),
                EventRecorder::new(self.store.clone(), name),
            ))
        });
        let config = plugin.spec.config.clone().unwrap_or_default();
        let admission = match plugin.spec.world.as_str() {
            "admission" => Some(AdmissionSettings::from_spec(
                plugin.spec.admission.as_ref(),
            )?),
            _ => None,
        };
        let has_chain = self.config.admission.is_some();
        let node_slot = self.config.node_policy.clone();
        let host_calls = plugin
            .spec
            .capabilities
            .as_ref()
            .map(|c| c.host_calls.clone())
            .unwrap_or_default();
        let name = name.to_string();
        let loaded = tokio::task::spawn_blocking(move || {
            let compiled = engine.compile(&bytes)?;
            if compiled.world.name() != world {
                return Err(PluginError::Invalid(format!(
                    "the component is a {} plugin, but the Plugin says world {world:?}",
                    compiled.world
                )));
            }
            match compiled.world {
                World::Scheduler => SchedulerPlugin::load(&engine, &compiled, &name, limits, log)
                    .map(Loaded::Scheduler),
                World::Controller => {
                    let access = access.ok_or_else(|| {
                        PluginError::Invalid("this plugin host runs no controllers".into())
                    })?;
                    let c = ControllerPlugin::load(
                        &engine, &compiled, &name, limits, log, access, &config,
                    )?;
                    Ok(Loaded::Controller(c))
                }
                World::Admission => {
                    let settings = admission.filter(|_| has_chain).ok_or_else(|| {
                        PluginError::Invalid("this plugin host has no admission chain".into())
                    })?;
                    AdmissionPlugin::load(&engine, &compiled, &name, wanted, limits, settings, log)
                        .map(Loaded::Admission)
                }
                World::NodePolicy => {
                    let slot = node_slot.ok_or_else(|| {
                        PluginError::Invalid("this plugin host runs no node agent".into())
                    })?;
                    NodePolicyPlugin::load(
                        &engine,
                        &compiled,
                        &name,
                        wanted,
                        limits,
                        log,
                        &config,
                        &host_calls,
                        &slot,
                    )
                    .map(Loaded::NodePolicy)
                }
            }
        })
        .await
        .map_err(|e| PluginError::Internal(format!("the plugin loader stopped: {e}")))?;
        Ok((loaded?, digest))
    }

    /// Starts a loaded revision, or swaps it in for the running one.
    async fn put_in_charge(&mut self, name: &str, r: Revision, loaded: Loaded) {
        let decider = match loaded {
            Loaded::Scheduler(decider) => decider,
            Loaded::Controller(controller) => {
                self.start_controller(name, r, controller).await;
                return;
            }
            Loaded::Admission(plugin) => {
                self.start_admission(name, r, plugin).await;
                return;
            }
            Loaded::NodePolicy(plugin) => {
                self.start_node_policy(name, r, plugin).await;
                return;
            }
        };
        let Revision {
            generation,
            revision,
            digest,
            settings,
            asked_at,
        } = r;
        let scheduler_name = decider.scheduler_name().to_string();
        let swap_into = self.running.get_mut(name).and_then(|r| match &r.runner {
            Runs::Scheduler(_) if r.scheduler_name.as_deref() == Some(&scheduler_name) => Some(r),
            _ => None,
        });
        if let Some(running) = swap_into
            && let Runs::Scheduler(runner) = &running.runner
        {
            let probation = self.config.probation;
            let warm_up = match runner.swap(Box::new(decider), probation).await {
                Ok(warm_up) => warm_up,
                Err(e) => {
                    let object = self.current_object(name).await;
                    self.refuse(name, &object, generation, revision, e).await;
                    return;
                }
            };
            let from = running.revision;
            running.previous = Some((
                running.revision,
                running.digest.clone(),
                running.settings.clone(),
            ));
            running.revision = revision;
            running.digest = digest.clone();
            running.asked_at = asked_at;
            running.settings = settings;
            running.generation = generation;
            let message = format!(
                "revision {revision} took over from revision {from}, on probation (given the cluster, {} nodes and {} pods, in {} ms)",
                warm_up.nodes,
                warm_up.pods,
                warm_up.took.as_millis()
            );
            let took_over = TookOver {
                phase: "Probation",
                generation,
                revision,
                digest: &digest,
                scheduler_name: Some(&scheduler_name),
                message: &message,
            };
            self.took_over(name, took_over).await;
            return;
        }
        // A first start, or a revision serving another schedulerName: the
        // old runner (if any) stops before the new one starts, so no two
        // runners ever decide the same pods.
        let previous = self.running.remove(name);
        if let Some(old) = previous {
            old.runner.stop().await;
        }
        let tx = self.reports_of(name);
        match runner::start(self.store.clone(), Box::new(decider), Some(tx)) {
            Ok(handle) => {
                self.running.insert(
                    name.to_string(),
                    Running {
                        revision,
                        digest: digest.clone(),
                        scheduler_name: Some(scheduler_name.clone()),
                        runner: Runs::Scheduler(handle),
                        previous: None,
                        asked_at,
                        settings,
                        generation,
                    },
                );
                let message = format!("revision {revision} serves schedulerName {scheduler_name}");
                let took_over = TookOver {
                    phase: "Active",
                    generation,
                    revision,
                    digest: &digest,
                    scheduler_name: Some(&scheduler_name),
                    message: &message,
                };
                self.took_over(name, took_over).await;
                let object = self.current_object(name).await;
                self.events
                    .record(&object, EventType::Normal, "RevisionActive", &message);
            }
            Err(e) => {
                let object = self.current_object(name).await;
                self.refuse(name, &object, generation, revision, e).await;
            }
        }
    }

    /// A channel for a runner's reports, forwarded tagged with `name`.
    fn reports_of(&self, name: &str) -> mpsc::UnboundedSender<Report> {
        let (tx, mut rx) = mpsc::unbounded_channel();
        let forward = self.report_tx.clone();
        let plugin_name = name.to_string();
        tokio::spawn(async move {
            while let Some(report) = rx.recv().await {
                if forward.send((plugin_name.clone(), report)).is_err() {
                    return;
                }
            }
        });
        tx
    }

    /// Starts a controller revision. The old one (if any) stops first,
    /// after its reconcile in progress; the new one lists everything and
    /// reconciles every key, so a change made meanwhile is not missed
    /// (reconciles are level-triggered).
    async fn start_controller(&mut self, name: &str, r: Revision, controller: ControllerPlugin) {
        let Revision {
            generation,
            revision,
            digest,
            settings,
            asked_at,
        } = r;
        if let Some(old) = self.running.remove(name) {
            old.runner.stop().await;
        }
        let primary = controller.spec().primary.clone();
        let handle = reconciler::start(
            self.store.clone(),
            controller,
            &self.caches,
            self.reports_of(name),
        );
        self.running.insert(
            name.to_string(),
            Running {
                revision,
                digest: digest.clone(),
                scheduler_name: None,
                runner: Runs::Controller(handle),
                previous: None,
                asked_at,
                settings,
                generation,
            },
        );
        let message = format!("revision {revision} reconciles {primary}");
        let took_over = TookOver {
            phase: "Active",
            generation,
            revision,
            digest: &digest,
            scheduler_name: None,
            message: &message,
        };
        self.took_over(name, took_over).await;
        let object = self.current_object(name).await;
        self.events
            .record(&object, EventType::Normal, "RevisionActive", &message);
    }

    /// Puts an admission revision in force: it replaces the old revision
    /// in the API's chain in one step (reviews under way finish on the
    /// old one; the next ones start on the new one).
    async fn start_admission(&mut self, name: &str, r: Revision, plugin: AdmissionPlugin) {
        let Some(chain) = self.config.admission.clone() else {
            return;
        };
        let phase = match plugin.settings().phase {
            orchd_api::admission::Phase::Mutating => "mutating",
            orchd_api::admission::Phase::Validating => "validating",
        };
        chain.install(Arc::new(plugin));
        let role = format!("reviews API writes ({phase})");
        self.replaced_in_place(name, r, Runs::Admission(chain, name.to_string()), &role)
            .await;
    }

    /// Puts a node policy revision in charge of the node agent's
    /// decisions, in one step (calls under way finish on the old one).
    async fn start_node_policy(&mut self, name: &str, r: Revision, plugin: NodePolicyPlugin) {
        let Some(slot) = self.config.node_policy.clone() else {
            return;
        };
        slot.install(Arc::new(plugin));
        let runs = Runs::NodePolicy(slot, name.to_string());
        self.replaced_in_place(name, r, runs, "decides the node's pod lifecycle")
            .await;
    }

    /// Records a revision that took over in place (put into the admission
    /// chain or the node policy slot by the caller, replacing the one
    /// before in one step), in `running`, the status and an Event; `role`
    /// says what it does ("reviews API writes (validating)").
    async fn replaced_in_place(&mut self, name: &str, r: Revision, runs: Runs, role: &str) {
        let Revision {
            generation,
            revision,
            digest,
            settings,
            asked_at,
        } = r;
        let from = self.running.get(name).map(|r| r.revision);
        // Replaced, not stopped: stopping the old entry would take the
        // plugin's name out of the chain or slot the new revision is in.
        self.running.insert(
            name.to_string(),
            Running {
                revision,
                digest: digest.clone(),
                scheduler_name: None,
                runner: runs,
                previous: None,
                asked_at,
                settings,
                generation,
            },
        );
        let message = match from {
            Some(from) if from != revision => {
                format!("revision {revision} {role}, took over from revision {from}")
            }
            _ => format!("revision {revision} {role}"),
        };
        let took_over = TookOver {
            phase: "Active",
            generation,
            revision,
            digest: &digest,
            scheduler_name: None,
            message: &message,
        };
        self.took_over(name, took_over).await;
        let millis = i64::try_from(asked_at.elapsed().as_millis()).unwrap_or(i64::MAX);
        self.write_status(name, |s| s.swap_millis = Some(millis))
            .await;
        let object = self.current_object(name).await;
        self.events
            .record(&object, EventType::Normal, "RevisionActive", &message);
    }

    /// A review by an admission plugin failed: the failure policy decided
    /// the request, and an instance that trapped or ran out of time or
    /// memory was discarded (the next review starts a new one, counted as
    /// a restart). Recorded as a Warning Event.
    async fn admission_failed(&mut self, failure: AdmissionFailure) {
        let current = self
            .running
            .get(&failure.plugin)
            .is_some_and(|r| r.digest == failure.digest);
        if !current {
            return;
        }
        self.record_failure(
            &failure.plugin,
            &failure.error,
            failure.restarted,
            failure.reason,
            &failure.message,
        )
        .await;
    }

    /// Logs and records in the status that a revision now decides.
    async fn took_over(&self, name: &str, t: TookOver<'_>) {
        (self.log)(name, crate::LogLevel::Info, t.message);
        self.write_status(name, |s| {
            s.phase = t.phase.into();
            s.observed_generation = Some(t.generation);
            s.active_revision = Some(t.revision);
            s.active_digest = Some(t.digest.to_string());
            s.scheduler_name = t.scheduler_name.map(str::to_string);
            s.restarts = 0;
            // The swap time of this revision, once measured; never the
            // one before's.
            s.swap_millis = None;
            s.failed_revisions.retain(|r| *r != t.revision);
            s.message = Some(t.message.to_string());
        })
        .await;
    }

    /// Records that `revision` will not run; whatever ran keeps running.
    async fn refuse(
        &mut self,
        name: &str,
        object: &Value,
        generation: i64,
        revision: i64,
        error: PluginError,
    ) {
        self.remember_refusal(name, generation, revision);
        let running = self
            .running
            .get(name)
            .map(|r| (r.revision, r.digest.clone()));
        let message = match &running {
            Some((active, _)) => {
                format!("revision {revision} refused, revision {active} keeps running: {error}")
            }
            None => format!("revision {revision} refused: {error}"),
        };
        (self.log)(name, crate::LogLevel::Error, &message);
        self.write_status(name, |s| {
            s.phase = if running.is_some() {
                "RolledBack"
            } else {
                "Failed"
            }
            .into();
            s.observed_generation = Some(generation);
            s.active_revision = running.as_ref().map(|r| r.0);
            s.active_digest = running.as_ref().map(|r| r.1.clone());
            if !s.failed_revisions.contains(&revision) {
                s.failed_revisions.push(revision);
            }
            s.last_error = Some(error.to_string());
            s.last_error_time = Some(meta::now_rfc3339());
            s.message = Some(message.clone());
        })
        .await;
        self.events
            .record(object, EventType::Warning, "RevisionFailed", &message);
    }

    fn remember_refusal(&mut self, name: &str, generation: i64, revision: i64) {
        let entry = self
            .refused
            .entry(name.to_string())
            .or_insert((generation, Vec::new()));
        if entry.0 != generation {
            *entry = (generation, Vec::new());
        }
        if !entry.1.contains(&revision) {
            entry.1.push(revision);
        }
    }

    async fn reported(&mut self, name: &str, report: Report) {
        let Some(running) = self.running.get_mut(name) else {
            return;
        };
        match report {
            Report::FirstDecision { digest, at } if digest == running.digest => {
                // From the manager seeing the revision (before it loaded
                // it) to the new revision's first decision.
                let total = at.saturating_duration_since(running.asked_at);
                let millis = i64::try_from(total.as_millis()).unwrap_or(i64::MAX);
                self.write_status(name, |s| s.swap_millis = Some(millis))
                    .await;
            }
            Report::FirstDecision { .. } => {}
            Report::Confirmed { digest } if digest == running.digest => {
                running.previous = None;
                let message = format!("revision {} active", running.revision);
                (self.log)(name, crate::LogLevel::Info, &message);
                self.write_status(name, |s| {
                    s.phase = "Active".into();
                    s.message = Some(message.clone());
                })
                .await;
                let object = self.current_object(name).await;
                self.events
                    .record(&object, EventType::Normal, "RevisionActive", &message);
            }
            Report::Confirmed { .. } => {}
            Report::RolledBack {
                failed,
                restored,
                error,
            } => {
                let Some((previous, previous_digest, previous_settings)) = running.previous.take()
                else {
                    return;
                };
                if previous_digest != restored || running.digest != failed {
                    return;
                }
                let failed_revision = running.revision;
                let failed_generation = running.generation;
                running.revision = previous;
                running.digest = previous_digest.clone();
                running.settings = previous_settings;
                self.remember_refusal(name, failed_generation, failed_revision);
                let message = format!(
                    "revision {failed_revision} failed on probation, back to revision {previous}: {error}"
                );
                (self.log)(name, crate::LogLevel::Error, &message);
                self.write_status(name, |s| {
                    s.phase = "RolledBack".into();
                    s.active_revision = Some(previous);
                    s.active_digest = Some(previous_digest.clone());
                    if !s.failed_revisions.contains(&failed_revision) {
                        s.failed_revisions.push(failed_revision);
                    }
                    s.last_error = Some(error.to_string());
                    s.last_error_time = Some(meta::now_rfc3339());
                    s.message = Some(message.clone());
                })
                .await;
                let object = self.current_object(name).await;
                self.events
                    .record(&object, EventType::Warning, "RevisionRolledBack", &message);
            }
            Report::ReconcileFailed {
                digest,
                key,
                message,
            } => {
                if digest != running.digest {
                    return;
                }
                let error = format!("reconciling {key}: {message}");
                let event = format!("{error}; retried with backoff");
                self.record_failure(name, &error, false, "ReconcileFailed", &event)
                    .await;
            }
            Report::Failed { digest, error } => {
                if digest != running.digest {
                    return;
                }
                // Every failure discards the instance; the next call starts
                // a new one.
                let event = format!("{error}; the instance is restarted with backoff");
                self.record_failure(name, &error.to_string(), true, "PluginFailed", &event)
                    .await;
            }
        }
    }

    /// Records a failure of the running revision in the status (counting a
    /// restart when the instance was discarded) and as a Warning Event.
    async fn record_failure(
        &self,
        name: &str,
        error: &str,
        restarted: bool,
        reason: &str,
        event: &str,
    ) {
        self.write_status(name, |s| {
            if restarted {
                s.restarts = s.restarts.saturating_add(1);
            }
            s.last_error = Some(error.to_string());
            s.last_error_time = Some(meta::now_rfc3339());
        })
        .await;
        let object = self.current_object(name).await;
        self.events
            .record(&object, EventType::Warning, reason, event);
    }

    async fn current_object(&self, name: &str) -> Value {
        self.store
            .get(&ObjectKey::cluster(PLUGINS, name))
            .await
            .unwrap_or_else(|_| serde_json::json!({"metadata": {"name": name}}))
    }

    /// Changes the Plugin's status through `edit`, retrying on conflicts.
    async fn write_status(&self, name: &str, edit: impl Fn(&mut PluginStatus) + Send + Sync) {
        let key = ObjectKey::cluster(PLUGINS, name);
        let result = self
            .store
            .guaranteed_update(&key, &|mut object: Value| {
                let mut status: PluginStatus =
                    serde_json::from_value(object["status"].clone()).unwrap_or_default();
                edit(&mut status);
                object["status"] = serde_json::to_value(&status).unwrap_or(Value::Null);
                Ok(object)
            })
            .await;
        match result {
            Ok(_) | Err(StoreError::NotFound { .. }) => {}
            Err(e) => eprintln!("orchd: plugin manager: cannot update the status of {name}: {e}"),
        }
    }
}

/// What a Plugin sets for its instances besides the revision.
fn settings_of(plugin: &Plugin) -> Value {
    serde_json::json!({
        "limits": plugin.spec.limits,
        "capabilities": plugin.spec.capabilities,
        "config": plugin.spec.config,
        "admission": plugin.spec.admission,
    })
}

/// The limits a Plugin asks for, on top of its world's defaults.
fn limits_of(plugin: &Plugin) -> Limits {
    let mut limits = Limits::for_world(&plugin.spec.world);
    if let Some(l) = &plugin.spec.limits {
        if let Some(mib) = l.memory_mib {
            limits.memory_bytes = (mib as usize) << 20;
        }
        if let Some(ms) = l.call_timeout_ms {
            limits.call_deadline = Duration::from_millis(u64::from(ms));
        }
    }
    limits
}

/// What [`ensure_plugin`] did.
#[derive(Debug, PartialEq, Eq)]
pub enum Ensured {
    /// The Plugin was created with the component as revision 1.
    Created,
    /// A Plugin of that name exists; it was left as it is.
    Exists,
}

/// Creates Plugin `name` with `bytes` as its first revision unless a
/// Plugin of that name exists (a user's revisions are never replaced).
/// Used by `orchd up` for the default plugins it ships.
pub async fn ensure_plugin(
    store: &dyn Store,
    name: &str,
    world: World,
    bytes: &[u8],
    source: &str,
    capabilities: Option<orchd_v1::PluginCapabilities>,
) -> Result<Ensured, StoreError> {
    let key = ObjectKey::cluster(PLUGINS, name);
    match store.get(&key).await {
        Ok(_) => return Ok(Ensured::Exists),
        Err(StoreError::NotFound { .. }) => {}
        Err(e) => return Err(e),
    }
    // The same path as `orchd plugin install`: in chunks if it is large.
    let digest = crate::component::write(store, bytes).await?;
    let plugin = serde_json::json!({
        "apiVersion": "orchd.dev/v1",
        "kind": "Plugin",
        "metadata": {"name": name},
        "spec": {
            "world": world.name(),
            "capabilities": capabilities,
            "revision": 1,
            "revisions": [{
                "revision": 1,
                "digest": digest,
                "source": source,
                "installedAt": meta::now_rfc3339(),
            }],
        },
    });
    match store.create(&key, plugin).await {
        Ok(_) => Ok(Ensured::Created),
        Err(StoreError::AlreadyExists { .. }) => Ok(Ensured::Exists),
        Err(e) => Err(e),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn plugin_sets_split_admission_from_the_elected_worlds() {
        for world in ["scheduler", "controller", "admission", "", "bogus"] {
            assert!(PluginSet::All.runs(world));
            // Exactly one of the two split managers runs each Plugin, so
            // none is run twice and none is left without a manager.
            assert_ne!(
                PluginSet::Admission.runs(world),
                PluginSet::Elected.runs(world),
                "{world}"
            );
        }
        assert!(PluginSet::Admission.runs("admission"));
        assert!(PluginSet::Elected.runs("controller"));
        assert!(PluginSet::Elected.runs("bogus"), "refused by the leader");
    }
}
