//! The controller runner: the host half of a controller, in the style of
//! kube-runtime's controller and client-go's workqueue.
//!
//! Host-run informers watch the controller's primary resource and the
//! resources it asked to watch; each change maps to a work item (the
//! object itself, its namespace, its controlling owner of a kind, every
//! primary whose `spec.selector` selects it or did before the change,
//! every primary (`all`), or nothing: `none` watches a resource only to
//! read it). What the informers hold is the controller's object cache
//! ([`crate::reflector`]): its reads of watched resources are answered from
//! memory, its own writes visible at once. The
//! queue holds each key at most once, never hands out a key that is being
//! reconciled (a change meanwhile queues it again for after), retries
//! failures with exponential backoff and honours `requeue-after`. Nothing
//! is reconciled before every informer has listed once; after that, every
//! key of the primary resource is reconciled at least once.

use std::collections::{HashMap, HashSet, VecDeque};
use std::sync::Arc;
use std::time::{Duration, Instant};

use orchd_store::selector::LabelSelector;
use orchd_store::{Store, meta};
use serde_json::Value;
use tokio::sync::{mpsc, watch};

use crate::PluginError;
use crate::controller::ControllerPlugin;
use crate::controller::types_of::{ObjectRef, ReconcileResult};
use crate::informer::{self, Change};
use crate::reflector::{ObjectCache, SharedCaches};
use crate::runner::Report;

/// First retry delay after a failed reconcile.
const RETRY_START: Duration = Duration::from_millis(100);
/// Longest retry delay.
const RETRY_MAX: Duration = Duration::from_secs(60);

/// A work item: resource, namespace, name.
type Key = (String, Option<String>, String);

fn key_text(key: &Key) -> String {
    match &key.1 {
        Some(ns) => format!("{} {ns}/{}", key.0, key.2),
        None => format!("{} {}", key.0, key.2),
    }
}

/// Which informer a change comes from.
fn change_index(change: &Change<usize>) -> usize {
    match change {
        Change::Resync(i, _, _) | Change::Upsert(i, _) | Change::Delete(i, _) => *i,
    }
}

/// Delay after `failures` failed reconciles of one key in a row.
pub fn retry_delay(failures: u32) -> Duration {
    let doublings = failures.saturating_sub(1).min(20);
    RETRY_START.saturating_mul(1u32 << doublings).min(RETRY_MAX)
}

/// A workqueue: each key at most once, one reconcile per key at a time.
#[derive(Default)]
pub struct WorkQueue<K: Clone + Eq + std::hash::Hash> {
    ready: VecDeque<K>,
    /// Queued, or changed while being processed.
    dirty: HashSet<K>,
    processing: HashSet<K>,
    /// Keys waiting until a time (retries, requeue-after).
    waiting: HashMap<K, Instant>,
    failures: HashMap<K, u32>,
}

impl<K: Clone + Eq + std::hash::Hash> WorkQueue<K> {
    /// Queues `key` unless it is queued already.
    pub fn add(&mut self, key: K) {
        if !self.dirty.insert(key.clone()) {
            return;
        }
        self.waiting.remove(&key);
        if !self.processing.contains(&key) {
            self.ready.push_back(key);
        }
    }

    /// Queues `key` at `at` (earlier if it is added meanwhile).
    pub fn add_at(&mut self, key: K, at: Instant) {
        if self.dirty.contains(&key) {
            return;
        }
        let due = self.waiting.entry(key).or_insert(at);
        if at < *due {
            *due = at;
        }
    }

    /// The next key to process.
    pub fn get(&mut self) -> Option<K> {
        let key = self.ready.pop_front()?;
        self.dirty.remove(&key);
        self.processing.insert(key.clone());
        Some(key)
    }

    /// Processing `key` ended; if it changed meanwhile, it is queued again.
    pub fn done(&mut self, key: &K) {
        self.processing.remove(key);
        if self.dirty.contains(key) {
            self.ready.push_back(key.clone());
        }
    }

    /// Processing failed: retried after a growing delay.
    pub fn retry(&mut self, key: K, now: Instant) -> Duration {
        let failures = self.failures.entry(key.clone()).or_insert(0);
        *failures = failures.saturating_add(1);
        let delay = retry_delay(*failures);
        self.add_at(key, now + delay);
        delay
    }

    /// Processing succeeded: the failure count starts over.
    pub fn forget(&mut self, key: &K) {
        self.failures.remove(key);
    }

    /// Moves due keys to the ready queue; returns the next due time.
    pub fn promote(&mut self, now: Instant) -> Option<Instant> {
        let due: Vec<K> = self
            .waiting
            .iter()
            .filter(|(_, at)| **at <= now)
            .map(|(k, _)| k.clone())
            .collect();
        for key in due {
            self.waiting.remove(&key);
            self.add(key);
        }
        self.waiting.values().min().copied()
    }

    /// Keys ready now.
    pub fn len(&self) -> usize {
        self.ready.len()
    }

    /// Whether no key is ready now.
    pub fn is_empty(&self) -> bool {
        self.ready.is_empty()
    }
}

/// A primary's `spec.selector`: a LabelSelector (`matchLabels`,
/// `matchExpressions`, as Deployments and ReplicaSets have), or a plain
/// map of labels that must all be equal (as Services and
/// ReplicationControllers have), told apart by its values: a plain map
/// holds only strings.
fn selector_of(selector: &Value) -> Result<LabelSelector, orchd_store::StoreError> {
    match selector.as_object() {
        Some(map) if !map.is_empty() && map.values().all(Value::is_string) => {
            LabelSelector::from_json(&serde_json::json!({ "matchLabels": selector }))
        }
        _ => LabelSelector::from_json(selector),
    }
}

/// A running controller. Call [`Self::stop`] to stop it.
pub struct ReconcilerHandle {
    stop: watch::Sender<bool>,
    task: tokio::task::JoinHandle<()>,
}

impl ReconcilerHandle {
    /// Stops the informers and the loop, after the reconcile in progress.
    pub async fn stop(self) {
        let _ = self.stop.send(true);
        let _ = self.task.await;
    }
}

/// Starts reconciling with `plugin`, its reads answered from `caches`
/// (shared with the manager's other controllers); what happens is told on
/// `reports`.
/// Must be called within a tokio runtime.
pub fn start(
    store: Arc<dyn Store>,
    plugin: ControllerPlugin,
    caches: &SharedCaches,
    reports: mpsc::UnboundedSender<Report>,
) -> ReconcilerHandle {
    let spec = plugin.spec().clone();
    // One informer per resource; each maps its changes through the
    // watches of that resource (the primary maps to itself).
    let mut resources: Vec<String> = vec![spec.primary.clone()];
    for w in &spec.watches {
        if !resources.contains(&w.resource) {
            resources.push(w.resource.clone());
        }
    }
    let (stop_tx, stop_rx) = watch::channel(false);
    let (change_tx, change_rx) = mpsc::channel(4096);
    for (index, resource) in resources.iter().enumerate() {
        // Informers take a 'static name; a controller's resources live as
        // long as the process in practice, and there are a handful.
        let resource: &'static str = Box::leak(resource.clone().into_boxed_str());
        tokio::spawn(informer::run(
            store.clone(),
            resource,
            index,
            change_tx.clone(),
            stop_rx.clone(),
        ));
    }
    drop(change_tx);
    // Reads of the watched resources are answered from what the
    // informers hold (see `reflector`).
    let cache = ObjectCache::shared(
        caches,
        resources.iter().filter_map(|r| {
            crate::access::resource_type(r)
                .ok()
                .map(|t| (r.clone(), *t))
        }),
    );
    plugin.access().use_cache(Some(cache.clone()));
    let loop_state = Reconciler {
        cache,
        maps: resources
            .iter()
            .map(|r| {
                let mut maps: Vec<String> = spec
                    .watches
                    .iter()
                    .filter(|w| &w.resource == r)
                    .map(|w| w.map_to.clone())
                    .collect();
                if *r == spec.primary {
                    maps.push("self".into());
                }
                (r.clone(), maps)
            })
            .collect(),
        primary: spec.primary.clone(),
        selectors: HashMap::new(),
        primaries: HashSet::new(),
        selected: HashMap::new(),
        plugin: Some(plugin),
        queue: WorkQueue::default(),
        synced: HashSet::new(),
        informers: resources.len(),
        ready_at: None,
        reports,
    };
    let task = tokio::spawn(loop_state.run(change_rx, stop_rx));
    ReconcilerHandle {
        stop: stop_tx,
        task,
    }
}

struct Reconciler {
    /// What the informers hold, for the plugin's reads.
    cache: Arc<ObjectCache>,
    /// Per informer (by index): its resource and how its changes map.
    maps: Vec<(String, Vec<String>)>,
    primary: String,
    /// `spec.selector` of each primary object (namespace, name), for
    /// `map-to: selector`; primaries without a usable, non-empty selector
    /// select nothing.
    selectors: HashMap<(Option<String>, String), LabelSelector>,
    /// Every primary object (namespace, name), for `map-to: all`.
    primaries: HashSet<(Option<String>, String)>,
    /// For `map-to: selector`: the primaries each watched object (informer
    /// index, namespace, name) was last selected by, so a change that
    /// makes it leave them reaches them too.
    selected: HashMap<(usize, Option<String>, String), Vec<Key>>,
    plugin: Option<ControllerPlugin>,
    queue: WorkQueue<Key>,
    synced: HashSet<usize>,
    informers: usize,
    /// The plugin is backing off until then.
    ready_at: Option<Instant>,
    reports: mpsc::UnboundedSender<Report>,
}

impl Reconciler {
    async fn run(
        mut self,
        mut changes: mpsc::Receiver<Change<usize>>,
        mut stop: watch::Receiver<bool>,
    ) {
        loop {
            if *stop.borrow() {
                return;
            }
            while let Ok(change) = changes.try_recv() {
                self.apply(change);
            }
            let now = Instant::now();
            let next_due = self.queue.promote(now);
            let plugin_ready = self.ready_at.is_none_or(|at| at <= now);
            if self.synced.len() == self.informers && plugin_ready && !self.queue.is_empty() {
                if let Some(key) = self.queue.get()
                    && !self.reconcile(key).await
                {
                    return;
                }
                continue;
            }
            let wake = [next_due, self.ready_at.filter(|_| !plugin_ready)]
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
                _ = tokio::time::sleep_until(wake.into()) => {}
            }
        }
    }

    fn apply(&mut self, change: Change<usize>) {
        // The cache first: a reconcile this change queues must see it.
        if let Some((resource, _)) = self.maps.get(change_index(&change)) {
            match &change {
                Change::Resync(_, objects, revision) => {
                    self.cache.resync(resource, objects, *revision)
                }
                Change::Upsert(_, object) => self.cache.upsert(resource, object),
                Change::Delete(_, object) => self.cache.remove(resource, object),
            }
        }
        // Informer 0 watches the primary resource: keep its keys and
        // selectors.
        match &change {
            Change::Resync(0, objects, _) => {
                self.selectors.clear();
                self.primaries.clear();
                for o in objects {
                    self.remember_selector(o);
                }
            }
            Change::Upsert(0, o) => self.remember_selector(o),
            Change::Delete(0, o) => {
                if let Some(name) = meta::meta_str(o, "name") {
                    let key = (
                        meta::meta_str(o, "namespace").map(str::to_string),
                        name.to_string(),
                    );
                    self.selectors.remove(&key);
                    self.primaries.remove(&key);
                }
            }
            _ => {}
        }
        let deleted = matches!(change, Change::Delete(..));
        let (index, objects) = match change {
            Change::Resync(i, objects, _) => {
                self.synced.insert(i);
                // A relist says everything anew.
                self.selected.retain(|(at, _, _), _| *at != i);
                (i, objects)
            }
            Change::Upsert(i, object) | Change::Delete(i, object) => {
                (i, vec![Arc::unwrap_or_clone(object)])
            }
        };
        let Some((resource, maps)) = self.maps.get(index).cloned() else {
            return;
        };
        for object in &objects {
            for map in &maps {
                if map == "none" {
                    continue;
                }
                if map == "selector" {
                    // The primaries that selected it before hear of it
                    // too: a pod whose labels no longer match leaves them.
                    let now = self.selecting(object);
                    let id = (
                        index,
                        meta::meta_str(object, "namespace").map(str::to_string),
                        meta::meta_str(object, "name")
                            .unwrap_or_default()
                            .to_string(),
                    );
                    let before = if deleted || now.is_empty() {
                        self.selected.remove(&id)
                    } else {
                        self.selected.insert(id, now.clone())
                    };
                    // (A primary gone since, or now selecting nothing,
                    // was queued by its own change.)
                    let before = before.into_iter().flatten().filter(|(_, ns, name)| {
                        self.selectors.contains_key(&(ns.clone(), name.clone()))
                    });
                    let keys: Vec<Key> = now.into_iter().chain(before).collect();
                    for key in keys {
                        self.queue.add(key);
                    }
                } else if map == "all" {
                    // A change that may concern any primary (a node, for
                    // DaemonSets): the object itself does not say which.
                    for (ns, name) in &self.primaries {
                        self.queue
                            .add((self.primary.clone(), ns.clone(), name.clone()));
                    }
                } else if let Some(key) = self.map_key(&resource, map, object) {
                    self.queue.add(key);
                }
            }
        }
    }

    fn remember_selector(&mut self, primary: &Value) {
        let Some(name) = meta::meta_str(primary, "name") else {
            return;
        };
        let key = (
            meta::meta_str(primary, "namespace").map(str::to_string),
            name.to_string(),
        );
        self.primaries.insert(key.clone());
        match selector_of(&primary["spec"]["selector"]) {
            // An empty selector would select everything: Kubernetes'
            // controllers let it select nothing, and so does this.
            Ok(selector) if !selector.is_empty() => {
                self.selectors.insert(key, selector);
            }
            _ => {
                self.selectors.remove(&key);
            }
        }
    }

    /// The primaries in `object`'s namespace whose selector matches its
    /// labels (`map-to: selector`).
    fn selecting(&self, object: &Value) -> Vec<Key> {
        let namespace = meta::meta_str(object, "namespace").map(str::to_string);
        self.selectors
            .iter()
            .filter(|((ns, _), selector)| *ns == namespace && selector.matches(object))
            .map(|((ns, name), _)| (self.primary.clone(), ns.clone(), name.clone()))
            .collect()
    }

    /// The work item a change of `object` (of `resource`) maps to.
    fn map_key(&self, resource: &str, map: &str, object: &Value) -> Option<Key> {
        let namespace = meta::meta_str(object, "namespace").map(str::to_string);
        let name = meta::meta_str(object, "name")?.to_string();
        if map == "self" {
            return Some((resource.to_string(), namespace, name));
        }
        if map == "namespace" {
            return Some(("namespaces".into(), None, namespace?));
        }
        let kind = map.strip_prefix("owner:")?;
        let refs = object["metadata"]["ownerReferences"].as_array()?;
        // The controlling owner of that kind; failing one, the first owner
        // of that kind (a kubelet's Lease names its Node without
        // `controller: true`).
        let owner = refs
            .iter()
            .find(|o| o["controller"] == true && o["kind"] == kind)
            .or_else(|| {
                refs.iter()
                    .find(|o| o["controller"] != true && o["kind"] == kind)
            })?;
        // A cluster-scoped owner (a Node owning a Lease) has no namespace.
        let namespace = namespace
            .filter(|_| crate::access::resource_type(&self.primary).map_or(true, |r| r.namespaced));
        Some((
            self.primary.clone(),
            namespace,
            owner["name"].as_str()?.to_string(),
        ))
    }

    /// One reconcile. Returns false if the loop cannot go on.
    async fn reconcile(&mut self, key: Key) -> bool {
        let Some(mut plugin) = self.plugin.take() else {
            return false;
        };
        let object = ObjectRef {
            resource: key.0.clone(),
            namespace: key.1.clone(),
            name: key.2.clone(),
        };
        let joined = tokio::task::spawn_blocking(move || {
            let result = plugin.reconcile(&object);
            (plugin, result)
        })
        .await;
        let Ok((plugin, result)) = joined else {
            eprintln!("orchd: controller: stopped: a reconcile was lost");
            return false;
        };
        let digest = plugin.digest().to_string();
        self.plugin = Some(plugin);
        let now = Instant::now();
        match result {
            Ok(Ok(ReconcileResult::Done)) => {
                self.queue.forget(&key);
                self.queue.done(&key);
            }
            Ok(Ok(ReconcileResult::RequeueAfter(ms))) => {
                self.queue.forget(&key);
                self.queue.done(&key);
                self.queue.add_at(key, now + Duration::from_millis(ms));
            }
            Ok(Err(message)) => {
                self.queue.done(&key);
                let _ = self.reports.send(Report::ReconcileFailed {
                    digest,
                    key: key_text(&key),
                    message,
                });
                self.queue.retry(key, now);
            }
            Err(error) => {
                self.queue.done(&key);
                if let PluginError::BackingOff { retry_in, .. } = &error {
                    self.ready_at = Some(now + *retry_in);
                    self.queue.add(key);
                } else {
                    let _ = self.reports.send(Report::Failed { digest, error });
                    self.queue.retry(key, now);
                }
            }
        }
        true
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_are_queued_once_and_never_processed_twice_at_once() {
        let mut q: WorkQueue<&str> = WorkQueue::default();
        q.add("a");
        q.add("a");
        q.add("b");
        assert_eq!(q.len(), 2);
        assert_eq!(q.get(), Some("a"));
        // Changed while processing: not handed out again until done.
        q.add("a");
        assert_eq!(q.get(), Some("b"));
        assert_eq!(q.get(), None);
        q.done(&"a");
        assert_eq!(q.get(), Some("a"));
        q.done(&"a");
        q.done(&"b");
        assert_eq!(q.get(), None);
    }

    /// A loop state for a controller of ReplicaSets that watches pods by
    /// owner and by selector, without a plugin (mapping needs none).
    fn replica_set_mapping() -> Reconciler {
        mapping(
            vec![
                ("replicasets.apps".into(), vec!["self".into()]),
                (
                    "pods".into(),
                    vec!["owner:ReplicaSet".into(), "selector".into()],
                ),
            ],
            "replicasets.apps",
        )
    }

    /// A loop state mapping changes as `maps` say (informer 0 watches
    /// `primary`), without a plugin.
    fn mapping(maps: Vec<(String, Vec<String>)>, primary: &str) -> Reconciler {
        let (reports, _) = mpsc::unbounded_channel();
        Reconciler {
            cache: ObjectCache::new([]),
            informers: maps.len(),
            maps,
            primary: primary.into(),
            selectors: HashMap::new(),
            primaries: HashSet::new(),
            selected: HashMap::new(),
            plugin: None,
            queue: WorkQueue::default(),
            synced: HashSet::new(),
            ready_at: None,
            reports,
        }
    }

    fn drain(q: &mut WorkQueue<Key>) -> Vec<String> {
        let mut keys = Vec::new();
        while let Some(k) = q.get() {
            q.done(&k);
            keys.push(key_text(&k));
        }
        keys.sort();
        keys
    }

    #[test]
    fn changes_map_to_owners_and_to_selecting_primaries() {
        let mut r = replica_set_mapping();
        let rs = |name: &str, selector: Value| serde_json::json!({"metadata": {"name": name, "namespace": "ns"}, "spec": {"selector": selector}});
        r.apply(Change::Resync(
            0,
            vec![
                rs("web", serde_json::json!({"matchLabels": {"app": "web"}})),
                rs("all", serde_json::json!({})),
                rs(
                    "web-or-api",
                    serde_json::json!({"matchExpressions": [{"key": "app", "operator": "In", "values": ["web", "api"]}]}),
                ),
            ],
            0,
        ));
        assert_eq!(drain(&mut r.queue).len(), 3);
        // An orphan pod: every primary whose selector matches (an empty
        // selector selects nothing).
        let orphan = serde_json::json!({"metadata": {"name": "p", "namespace": "ns", "labels": {"app": "web"}}});
        r.apply(Change::Upsert(1, Arc::new(orphan.clone())));
        assert_eq!(
            drain(&mut r.queue),
            ["replicasets.apps ns/web", "replicasets.apps ns/web-or-api"]
        );
        // Another namespace is not selected.
        let elsewhere = serde_json::json!({"metadata": {"name": "p", "namespace": "other", "labels": {"app": "web"}}});
        r.apply(Change::Upsert(1, Arc::new(elsewhere)));
        assert!(drain(&mut r.queue).is_empty());
        // An owned pod maps to its owner too; a deleted primary selects
        // nothing any more.
        r.apply(Change::Delete(0, Arc::new(rs("web", Value::Null))));
        drain(&mut r.queue);
        let owned = serde_json::json!({"metadata": {"name": "q", "namespace": "ns", "labels": {"app": "api"},
            "ownerReferences": [{"kind": "ReplicaSet", "name": "gone", "controller": true}]}});
        r.apply(Change::Upsert(1, Arc::new(owned)));
        assert_eq!(
            drain(&mut r.queue),
            ["replicasets.apps ns/gone", "replicasets.apps ns/web-or-api"]
        );
        r.apply(Change::Upsert(1, Arc::new(orphan)));
        assert_eq!(drain(&mut r.queue), ["replicasets.apps ns/web-or-api"]);
    }

    #[test]
    fn map_to_all_queues_every_primary() {
        let mut r = mapping(
            vec![
                ("daemonsets.apps".into(), vec!["self".into()]),
                ("nodes".into(), vec!["all".into()]),
            ],
            "daemonsets.apps",
        );
        let node = serde_json::json!({"metadata": {"name": "n1"}});
        // No primary known yet: a node change queues nothing.
        r.apply(Change::Upsert(1, Arc::new(node.clone())));
        assert!(drain(&mut r.queue).is_empty());
        let ds = |ns: &str, name: &str| serde_json::json!({"metadata": {"name": name, "namespace": ns}, "spec": {}});
        r.apply(Change::Resync(0, vec![ds("a", "x"), ds("b", "y")], 0));
        drain(&mut r.queue);
        r.apply(Change::Upsert(0, Arc::new(ds("a", "z"))));
        drain(&mut r.queue);
        r.apply(Change::Upsert(1, Arc::new(node.clone())));
        assert_eq!(
            drain(&mut r.queue),
            [
                "daemonsets.apps a/x",
                "daemonsets.apps a/z",
                "daemonsets.apps b/y"
            ]
        );
        // A deleted primary is no longer queued; a relist replaces the set.
        r.apply(Change::Delete(0, Arc::new(ds("a", "x"))));
        drain(&mut r.queue);
        r.apply(Change::Delete(1, Arc::new(node.clone())));
        assert_eq!(
            drain(&mut r.queue),
            ["daemonsets.apps a/z", "daemonsets.apps b/y"]
        );
        r.apply(Change::Resync(0, vec![ds("c", "w")], 0));
        drain(&mut r.queue);
        r.apply(Change::Resync(1, vec![node], 0));
        assert_eq!(drain(&mut r.queue), ["daemonsets.apps c/w"]);
    }

    #[test]
    fn plain_map_selectors_select_like_match_labels() {
        let mut r = mapping(
            vec![
                ("services".into(), vec!["self".into()]),
                ("pods".into(), vec!["selector".into()]),
            ],
            "services",
        );
        let svc = |name: &str, selector: Value| serde_json::json!({"metadata": {"name": name, "namespace": "ns"}, "spec": {"selector": selector}});
        r.apply(Change::Resync(
            0,
            vec![
                svc("web", serde_json::json!({"app": "web", "tier": "front"})),
                svc("headless", Value::Null),
                svc("set", serde_json::json!({"matchLabels": {"app": "web"}})),
            ],
            0,
        ));
        drain(&mut r.queue);
        let pod = |labels: Value| serde_json::json!({"metadata": {"name": "p", "namespace": "ns", "labels": labels}});
        r.apply(Change::Upsert(
            1,
            Arc::new(pod(serde_json::json!({"app": "web", "tier": "front"}))),
        ));
        assert_eq!(drain(&mut r.queue), ["services ns/set", "services ns/web"]);
        // Every label of a plain map must match; the Service the pod
        // leaves hears of it too, once.
        r.apply(Change::Upsert(
            1,
            Arc::new(pod(serde_json::json!({"app": "web"}))),
        ));
        assert_eq!(drain(&mut r.queue), ["services ns/set", "services ns/web"]);
        r.apply(Change::Upsert(
            1,
            Arc::new(pod(serde_json::json!({"app": "web"}))),
        ));
        assert_eq!(drain(&mut r.queue), ["services ns/set"]);
        r.apply(Change::Upsert(
            1,
            Arc::new(pod(serde_json::json!({"app": "api"}))),
        ));
        assert_eq!(drain(&mut r.queue), ["services ns/set"]);
        r.apply(Change::Upsert(
            1,
            Arc::new(pod(serde_json::json!({"app": "api"}))),
        ));
        assert!(drain(&mut r.queue).is_empty());
    }

    #[test]
    fn owners_of_a_cluster_scoped_primary_have_no_namespace() {
        let mut r = mapping(
            vec![
                ("nodes".into(), vec!["self".into()]),
                (
                    "leases.coordination.k8s.io".into(),
                    vec!["owner:Node".into()],
                ),
            ],
            "nodes",
        );
        let lease = serde_json::json!({"metadata": {"name": "n1", "namespace": "kube-node-lease",
            "ownerReferences": [{"apiVersion": "v1", "kind": "Node", "name": "n1", "uid": "u"}]}});
        r.apply(Change::Upsert(1, Arc::new(lease)));
        assert_eq!(drain(&mut r.queue), ["nodes n1"]);
    }

    #[test]
    fn failures_back_off_and_success_forgets_them() {
        let mut q: WorkQueue<&str> = WorkQueue::default();
        let now = Instant::now();
        assert_eq!(q.retry("a", now), Duration::from_millis(100));
        assert_eq!(q.retry("a", now), Duration::from_millis(200));
        assert_eq!(q.promote(now), Some(now + Duration::from_millis(100)));
        assert!(q.is_empty());
        q.promote(now + Duration::from_millis(150));
        assert_eq!(q.get(), Some("a"));
        q.forget(&"a");
        q.done(&"a");
        assert_eq!(q.retry("a", now), Duration::from_millis(100));
        assert_eq!(retry_delay(30), RETRY_MAX);
    }
}
