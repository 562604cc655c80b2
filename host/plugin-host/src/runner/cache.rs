//! The host's view of the cluster for one scheduler: every node and where
//! each pod is counted, plus the changes the plugin has not seen yet.
//!
//! The plugin keeps a copy of this view (`world scheduler`'s `update`), so
//! every change here that the plugin's copy would show is also logged as a
//! `cluster-change` and sent before the next decision; the whole view is
//! sent only to a new instance, or when the log has grown past the view
//! itself. Invariant: the plugin's copy plus the logged changes equals this
//! view, except for pods the plugin assumed itself and the host has not
//! recorded yet (see [`Cache::assume`]).

use std::collections::HashMap;
use std::sync::Arc;

use serde_json::Value;

use crate::podinfo;
use crate::scheduler::ViewChange;
use crate::scheduler::types::{Node, PlacedPod};

/// A pod counted on a node.
#[derive(Clone, Debug)]
pub(crate) struct Placement {
    /// What the plugin sees of it (shared with the changes that carry it).
    pub(crate) pod: Arc<PlacedPod>,
    /// Chosen by this scheduler, binding not yet seen in the store.
    pub(crate) assumed: bool,
}

impl Placement {
    /// The placement of `pod` (known as `key`) on `node`.
    pub(crate) fn of(key: &str, pod: &Value, node: &str, assumed: bool) -> Self {
        Placement {
            pod: Arc::new(PlacedPod {
                key: key.into(),
                node: node.into(),
                namespace: pod["metadata"]["namespace"]
                    .as_str()
                    .unwrap_or_default()
                    .into(),
                labels: podinfo::labels(pod),
                owner_uid: podinfo::controller_uid(pod),
                requests: podinfo::pod_requests(pod),
                host_ports: podinfo::host_ports(pod),
            }),
            assumed,
        }
    }
}

/// Nodes, placed pods, and the changes the plugin has yet to see.
#[derive(Default)]
pub(crate) struct Cache {
    /// Nodes in the order they appeared (a removal moves the last one into
    /// the gap, as the SDK's view does).
    nodes: Vec<Arc<Node>>,
    /// Node name → position in `nodes`.
    index: HashMap<String, usize>,
    /// Pod key (`namespace/name`) → where it is counted, also on nodes not
    /// (or no longer) known, so they count as soon as the node appears.
    pods: HashMap<String, Placement>,
    /// Changes since the plugin's view was last brought up to date.
    log: Vec<ViewChange>,
    /// The log was dropped for being longer than the view: the plugin
    /// needs the whole view.
    log_dropped: bool,
    /// While a decider that is about to take over is being given the
    /// whole view: the changes since that view (see [`Cache::fork`]).
    incoming: Option<Vec<ViewChange>>,
    /// `incoming` outgrew the view and was dropped: the decider taking
    /// over will need the whole view again.
    incoming_dropped: bool,
}

/// What brings a plugin's view up to date: changes, or with `reset` the
/// whole view.
pub(crate) struct ViewUpdate {
    pub(crate) changes: Vec<ViewChange>,
    pub(crate) reset: bool,
}

impl Cache {
    /// The changes the plugin has not seen, and forgets them; the whole
    /// view instead if `full` is asked or the log was dropped.
    pub(crate) fn take_update(&mut self, full: bool) -> ViewUpdate {
        if full || self.log_dropped {
            self.log.clear();
            self.log_dropped = false;
            return self.whole_view();
        }
        ViewUpdate {
            changes: std::mem::take(&mut self.log),
            reset: false,
        }
    }

    /// The whole view for a decider about to take over; from now on the
    /// changes are also logged for it, until [`Cache::join`] makes its log
    /// the one sent, or [`Cache::unfork`] drops it.
    pub(crate) fn fork(&mut self) -> ViewUpdate {
        self.incoming = Some(Vec::new());
        self.incoming_dropped = false;
        self.whole_view()
    }

    /// Every node, then every placed pod, to replace a plugin's view.
    fn whole_view(&self) -> ViewUpdate {
        let mut changes = Vec::with_capacity(self.nodes.len() + self.pods.len());
        // Reference counts, not copies: see `ViewChange`.
        changes.extend(self.nodes.iter().cloned().map(ViewChange::NodeSet));
        changes.extend(
            self.pods
                .values()
                .map(|p| ViewChange::PodPlaced(p.pod.clone())),
        );
        ViewUpdate {
            changes,
            reset: true,
        }
    }

    /// The forked decider takes over: what is logged from now on is for
    /// it, starting with the changes since its view.
    pub(crate) fn join(&mut self) {
        if let Some(incoming) = self.incoming.take() {
            self.log = incoming;
            self.log_dropped = self.incoming_dropped;
        }
    }

    /// The forked decider will not take over.
    pub(crate) fn unfork(&mut self) {
        self.incoming = None;
    }

    fn record(&mut self, change: ViewChange) {
        let limit = self.log_limit();
        if let Some(incoming) = &mut self.incoming
            && !self.incoming_dropped
        {
            incoming.push(change.clone());
            if incoming.len() > limit {
                incoming.clear();
                self.incoming_dropped = true;
            }
        }
        if self.log_dropped {
            return;
        }
        self.log.push(change);
        if self.log.len() > limit {
            self.log.clear();
            self.log_dropped = true;
        }
    }

    /// Longest a log of changes may grow: past the size of the view,
    /// sending the view is cheaper.
    fn log_limit(&self) -> usize {
        1024 + 2 * (self.nodes.len() + self.pods.len())
    }

    /// Whether `name` is a known node.
    pub(crate) fn has_node(&self, name: &str) -> bool {
        self.index.contains_key(name)
    }

    /// Number of known nodes.
    pub(crate) fn node_count(&self) -> usize {
        self.nodes.len()
    }

    /// Adds or updates a node from its object. Returns whether anything a
    /// filter reads changed (so waiting pods deserve another try).
    pub(crate) fn upsert_node(&mut self, node: &Value) -> bool {
        let Some(name) = node["metadata"]["name"].as_str() else {
            return false;
        };
        let fresh = Node {
            name: name.into(),
            labels: podinfo::labels(node),
            allocatable: podinfo::node_allocatable(node),
            taints: podinfo::node_taints(node),
            unschedulable: podinfo::node_unschedulable(node),
            ready: podinfo::node_ready(node),
        };
        match self.index.get(name) {
            Some(&i) if *self.nodes[i] == fresh => false,
            Some(&i) => {
                let fresh = Arc::new(fresh);
                self.nodes[i] = fresh.clone();
                self.record(ViewChange::NodeSet(fresh));
                true
            }
            None => {
                let fresh = Arc::new(fresh);
                self.index.insert(name.into(), self.nodes.len());
                self.nodes.push(fresh.clone());
                self.record(ViewChange::NodeSet(fresh));
                true
            }
        }
    }

    /// Removes a node (its pods stay counted under its name).
    pub(crate) fn delete_node(&mut self, name: &str) {
        let Some(i) = self.index.remove(name) else {
            return;
        };
        self.nodes.swap_remove(i);
        if let Some(moved) = self.nodes.get(i) {
            self.index.insert(moved.name.clone(), i);
        }
        self.record(ViewChange::NodeRemoved(name.into()));
    }

    /// Number of placed pods (bound or assumed).
    pub(crate) fn pod_count(&self) -> usize {
        self.pods.len()
    }

    /// Names of every known node.
    pub(crate) fn node_names(&self) -> Vec<String> {
        self.nodes.iter().map(|n| n.name.clone()).collect()
    }

    /// Where the pod `key` is counted, if anywhere.
    pub(crate) fn placement(&self, key: &str) -> Option<&Placement> {
        self.pods.get(key)
    }

    /// Every counted pod key.
    pub(crate) fn pod_keys(&self) -> Vec<String> {
        self.pods.keys().cloned().collect()
    }

    /// Counts pod `key` as `placement` (replacing an earlier placement);
    /// the plugin hears of it unless it already sees exactly that.
    pub(crate) fn place(&mut self, key: &str, placement: Placement) {
        let unchanged = self.pods.get(key).is_some_and(|p| p.pod == placement.pod);
        let pod = (!unchanged).then(|| placement.pod.clone());
        self.pods.insert(key.into(), placement);
        if let Some(pod) = pod {
            self.record(ViewChange::PodPlaced(pod));
        }
    }

    /// Counts pod `key` as the plugin already does: it assumed the pod
    /// on the node it chose, so nothing is sent.
    pub(crate) fn assume(&mut self, key: &str, placement: Placement) {
        // A decider about to take over did not assume it: tell it.
        if let Some(incoming) = &mut self.incoming
            && !self.incoming_dropped
        {
            incoming.push(ViewChange::PodPlaced(placement.pod.clone()));
        }
        self.pods.insert(key.into(), placement);
    }

    /// Marks pod `key`, assumed on `node`, as bound there. Returns false
    /// if it is not counted on `node`.
    pub(crate) fn confirm(&mut self, key: &str, node: &str) -> bool {
        match self.pods.get_mut(key) {
            Some(p) if p.pod.node == node => {
                p.assumed = false;
                true
            }
            _ => false,
        }
    }

    /// Tells the plugin to stop counting pod `key`, which it assumed on a
    /// node the host will not bind it to.
    pub(crate) fn disown(&mut self, key: &str) {
        self.pods.remove(key);
        self.record(ViewChange::PodRemoved(key.into()));
    }

    /// Stops counting pod `key`. Returns its placement, if it had one.
    pub(crate) fn unplace(&mut self, key: &str) -> Option<Placement> {
        let old = self.pods.remove(key)?;
        self.record(ViewChange::PodRemoved(key.into()));
        Some(old)
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn pod(name: &str, cpu: &str) -> Value {
        json!({"metadata": {"name": name, "namespace": "default", "labels": {"app": name}},
               "spec": {"containers": [{"resources": {"requests": {"cpu": cpu}},
                                        "ports": [{"hostPort": 80}]}]}})
    }

    fn node(name: &str) -> Value {
        json!({"metadata": {"name": name},
               "status": {"allocatable": {"cpu": "4", "memory": "8Gi", "pods": "110"},
                          "conditions": [{"type": "Ready", "status": "True"}]}})
    }

    fn kinds(update: &ViewUpdate) -> Vec<String> {
        update
            .changes
            .iter()
            .map(|c| match c {
                ViewChange::NodeSet(n) => format!("node-set {}", n.name),
                ViewChange::NodeRemoved(n) => format!("node-removed {n}"),
                ViewChange::PodPlaced(p) => format!("pod-placed {} on {}", p.key, p.node),
                ViewChange::PodRemoved(k) => format!("pod-removed {k}"),
            })
            .collect()
    }

    #[test]
    fn changes_are_logged_once_and_only_when_the_plugin_would_see_them() {
        let mut cache = Cache::default();
        cache.place(
            "default/a",
            Placement::of("default/a", &pod("a", "1"), "n1", false),
        );
        assert!(cache.upsert_node(&node("n1")));
        assert!(!cache.upsert_node(&node("n1")), "same node, no change");
        let first = cache.take_update(false);
        assert!(!first.reset);
        assert_eq!(kinds(&first), ["pod-placed default/a on n1", "node-set n1"]);
        assert!(cache.take_update(false).changes.is_empty());

        // Assumed by the plugin: nothing to send; the binding confirmed,
        // or seen later with the same placement, sends nothing either.
        let b = pod("b", "500m");
        cache.assume("default/b", Placement::of("default/b", &b, "n1", true));
        assert!(!cache.confirm("default/b", "n2"), "not counted there");
        assert!(cache.confirm("default/b", "n1"));
        assert!(!cache.placement("default/b").is_some_and(|p| p.assumed));
        cache.place("default/b", Placement::of("default/b", &b, "n1", false));
        assert!(cache.take_update(false).changes.is_empty());

        let mut cordoned = node("n1");
        cordoned["spec"] = json!({"unschedulable": true});
        assert!(cache.upsert_node(&cordoned));
        cache.unplace("default/a");
        cache.disown("default/c");
        cache.delete_node("n1");
        assert_eq!(
            kinds(&cache.take_update(false)),
            [
                "node-set n1",
                "pod-removed default/a",
                "pod-removed default/c",
                "node-removed n1"
            ]
        );
    }

    #[test]
    fn a_new_instance_gets_the_whole_view() {
        let mut cache = Cache::default();
        for n in ["n1", "n2", "n3"] {
            cache.upsert_node(&node(n));
        }
        cache.delete_node("n1");
        cache.place(
            "default/x",
            Placement::of("default/x", &pod("x", "1"), "n3", false),
        );
        let full = cache.take_update(true);
        assert!(full.reset);
        let mut seen = kinds(&full);
        seen.sort();
        assert_eq!(
            seen,
            ["node-set n2", "node-set n3", "pod-placed default/x on n3"]
        );
        assert!(
            cache.take_update(false).changes.is_empty(),
            "the log went with it"
        );
        assert_eq!(cache.node_count(), 2);
        assert_eq!(
            cache
                .placement("default/x")
                .map(|p| p.pod.requests.milli_cpu),
            Some(1000)
        );
    }

    #[test]
    fn a_fork_gets_the_view_then_every_change_after_it() {
        let mut cache = Cache::default();
        cache.upsert_node(&node("n1"));
        let fork = cache.fork();
        assert!(fork.reset);
        assert_eq!(kinds(&fork), ["node-set n1"]);
        cache.upsert_node(&node("n2"));
        // The decider in charge meanwhile gets its changes as before.
        assert_eq!(
            kinds(&cache.take_update(false)),
            ["node-set n1", "node-set n2"]
        );
        cache.delete_node("n1");
        cache.join();
        assert_eq!(
            kinds(&cache.take_update(false)),
            ["node-set n2", "node-removed n1"]
        );
        // What the decider in charge assumes, the forked one is told of.
        cache.fork();
        let p = pod("p", "1");
        cache.assume("default/p", Placement::of("default/p", &p, "n2", true));
        assert!(cache.take_update(false).changes.is_empty());
        cache.join();
        assert_eq!(
            kinds(&cache.take_update(false)),
            ["pod-placed default/p on n2"]
        );
        // Dropped: nothing more is logged for it.
        cache.fork();
        cache.unfork();
        cache.upsert_node(&node("n3"));
        cache.join();
        assert_eq!(kinds(&cache.take_update(false)), ["node-set n3"]);
    }

    #[test]
    fn a_log_longer_than_the_view_turns_into_the_view() {
        let mut cache = Cache::default();
        cache.upsert_node(&node("n1"));
        let p = pod("p", "1");
        for i in 0..2_000 {
            let node = if i % 2 == 0 { "n1" } else { "n2" };
            cache.place("default/p", Placement::of("default/p", &p, node, false));
        }
        let update = cache.take_update(false);
        assert!(update.reset, "sent whole instead of 2,000 moves");
        // The same for a decider about to take over.
        cache.fork();
        for i in 0..2_000 {
            let node = if i % 2 == 0 { "n1" } else { "n2" };
            cache.place("default/p", Placement::of("default/p", &p, node, false));
        }
        cache.take_update(false);
        cache.join();
        assert!(cache.take_update(false).reset);
        assert_eq!(update.changes.len(), 2);
        cache.unplace("default/p");
        let next = cache.take_update(false);
        assert!(!next.reset);
        assert_eq!(kinds(&next), ["pod-removed default/p"]);
    }
}
