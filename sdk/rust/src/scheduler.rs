//! Writing a scheduler: implement [`Scheduler`] and export it with
//! [`export_scheduler!`](crate::export_scheduler).
//!
//! The host runs the informers and feeds the component the changes to
//! nodes and placed pods; the SDK keeps them in a [`Cluster`] inside the
//! component, with what is requested on every node added up, so a
//! decision costs only the plugin's own algorithm. For each pending pod
//! whose `spec.schedulerName` is [`Scheduler::NAME`] the host asks for a
//! decision and [`Scheduler::schedule`] gets the pod's requirements and
//! every node with what is already placed on it (bound and assumed pods).
//! A bound pod counts on its node at once, for the next decision. The host
//! then binds through `pods/binding` and records `Scheduled`, or for
//! [`Decision::Unschedulable`] records `FailedScheduling` with the reasons
//! grouped per class (`0/3 nodes are available: 2 Insufficient cpu, ...`)
//! and retries with backoff. Write reasons in Kubernetes' words so the
//! grouping reads as users expect.

use std::cell::RefCell;
use std::collections::HashMap;

pub use crate::bindings::scheduler::orchd::plugin::scheduling_types::{
    ClusterChange, Decision, Label, Node, PlacedPod, PodAffinityTerm, PodInfo, Rejection,
    Resources, SelectorOperator, SelectorRequirement, SelectorTerm, Taint, TaintEffect, Toleration,
    TolerationOperator, WeightedPodAffinityTerm, WeightedTerm,
};

/// A scheduler plugin.
pub trait Scheduler {
    /// The `spec.schedulerName` this plugin serves (`default-scheduler`).
    const NAME: &'static str;

    /// Decides where `pod` goes among `nodes`, every node in the cluster.
    fn schedule(pod: &PodInfo, nodes: &[NodeInfo]) -> Decision;
}

thread_local! {
    /// The component's view of the cluster. A component instance is
    /// single-threaded and the host never calls it reentrantly.
    static CLUSTER: RefCell<Cluster> = RefCell::new(Cluster::default());
}

impl<T: Scheduler> crate::bindings::scheduler::Guest for T {
    fn scheduler_name() -> String {
        T::NAME.to_owned()
    }

    fn update(changes: Vec<ClusterChange>, reset: bool) {
        CLUSTER.with_borrow_mut(|cluster| cluster.update(changes, reset));
    }

    fn schedule(pods: Vec<PodInfo>) -> Vec<Decision> {
        CLUSTER.with_borrow_mut(|cluster| cluster.decide(pods, T::schedule))
    }
}

/// A node and what is placed on it: the record a [`Scheduler`] decides
/// over. Kept up to date by [`Cluster`].
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct NodeInfo {
    /// The node's name.
    pub name: String,
    /// The node's labels.
    pub labels: Vec<Label>,
    /// What the node offers to pods.
    pub allocatable: Resources,
    /// Requests of the pods bound to or assumed on the node, added up.
    pub requested: Resources,
    /// The node's taints.
    pub taints: Vec<Taint>,
    /// Cordoned (`spec.unschedulable`).
    pub unschedulable: bool,
    /// The node's `Ready` condition is `True`.
    pub ready: bool,
    /// Host ports claimed by pods on the node, sorted, once each.
    pub used_host_ports: Vec<u16>,
    /// The pods on the node.
    pub pods: Vec<PlacedPod>,
}

/// A scheduler's view of the cluster, built from the host's
/// [`ClusterChange`]s: every node, with the pods counted on it and their
/// requests added up.
///
/// Invariants: each pod key is counted on exactly one node name; a pod on a
/// node the view does not know (yet, or any more) waits under that name
/// and counts as soon as the node appears; `requested` and
/// `used_host_ports` of a node always equal what its `pods` add up to.
#[derive(Debug, Default)]
pub struct Cluster {
    nodes: Vec<NodeInfo>,
    /// Node name → position in `nodes`.
    index: HashMap<String, usize>,
    /// Pod key → the node name it is counted on.
    placements: HashMap<String, String>,
    /// Pods counted on node names the view does not know.
    waiting: HashMap<String, Vec<PlacedPod>>,
}

impl Cluster {
    /// Every known node, in the order they appeared (a removal moves the
    /// last node into the gap).
    pub fn nodes(&self) -> &[NodeInfo] {
        &self.nodes
    }

    /// The node called `name`.
    pub fn node(&self, name: &str) -> Option<&NodeInfo> {
        self.index.get(name).map(|&i| &self.nodes[i])
    }

    /// The node name pod `key` (`namespace/name`) is counted on.
    pub fn placement(&self, key: &str) -> Option<&str> {
        self.placements.get(key).map(String::as_str)
    }

    /// Number of pods counted (on known nodes or not).
    pub fn pod_count(&self) -> usize {
        self.placements.len()
    }

    /// Applies the host's changes in order; with `reset`, they are the
    /// whole cluster and replace the view. A whole view is sized up front
    /// (thousands of nodes and tens of thousands of pods at once: no
    /// growing and rehashing on the way).
    pub fn update(&mut self, changes: Vec<ClusterChange>, reset: bool) {
        if reset {
            let nodes = changes
                .iter()
                .filter(|c| matches!(c, ClusterChange::NodeSet(_)))
                .count();
            *self = Cluster {
                nodes: Vec::with_capacity(nodes),
                index: HashMap::with_capacity(nodes),
                placements: HashMap::with_capacity(changes.len() - nodes),
                waiting: HashMap::new(),
            };
        }
        for change in changes {
            self.apply(change);
        }
    }

    /// Applies one change from the host.
    pub fn apply(&mut self, change: ClusterChange) {
        match change {
            ClusterChange::NodeSet(node) => self.set_node(node),
            ClusterChange::NodeRemoved(name) => self.remove_node(&name),
            ClusterChange::PodPlaced(pod) => self.place(pod),
            ClusterChange::PodRemoved(key) => self.remove_pod(&key),
        }
    }

    /// Adds or replaces a node; the pods counted on it stay.
    pub fn set_node(&mut self, node: Node) {
        if let Some(&i) = self.index.get(&node.name) {
            let current = &mut self.nodes[i];
            current.labels = node.labels;
            current.allocatable = node.allocatable;
            current.taints = node.taints;
            current.unschedulable = node.unschedulable;
            current.ready = node.ready;
            return;
        }
        let pods = self.waiting.remove(&node.name).unwrap_or_default();
        let mut info = NodeInfo {
            name: node.name,
            labels: node.labels,
            allocatable: node.allocatable,
            requested: Resources::ZERO,
            taints: node.taints,
            unschedulable: node.unschedulable,
            ready: node.ready,
            used_host_ports: Vec::new(),
            pods,
        };
        info.add_up();
        self.index.insert(info.name.clone(), self.nodes.len());
        self.nodes.push(info);
    }

    /// Removes a node; its pods wait under its name.
    pub fn remove_node(&mut self, name: &str) {
        let Some(i) = self.index.remove(name) else {
            return;
        };
        let node = self.nodes.swap_remove(i);
        if let Some(moved) = self.nodes.get(i) {
            self.index.insert(moved.name.clone(), i);
        }
        if !node.pods.is_empty() {
            self.waiting.insert(node.name, node.pods);
        }
    }

    /// Counts `pod` on its node, replacing where it was counted before.
    pub fn place(&mut self, pod: PlacedPod) {
        // One lookup of the key, which also says where it was counted:
        // this runs for every pod of a whole view and every decision.
        if let Some(before) = self.placements.insert(pod.key.clone(), pod.node.clone()) {
            self.uncount(&before, &pod.key);
        }
        match self.index.get(&pod.node) {
            Some(&i) => self.nodes[i].count(pod),
            None => self.waiting.entry(pod.node.clone()).or_default().push(pod),
        }
    }

    /// Stops counting pod `key`.
    pub fn remove_pod(&mut self, key: &str) {
        if let Some(node) = self.placements.remove(key) {
            self.uncount(&node, key);
        }
    }

    /// Takes pod `key` off `node`, known or not.
    fn uncount(&mut self, node: &str, key: &str) {
        match self.index.get(node) {
            Some(&i) => {
                let info = &mut self.nodes[i];
                info.pods.retain(|p| p.key != key);
                info.add_up();
            }
            None => {
                if let Some(pods) = self.waiting.get_mut(node) {
                    pods.retain(|p| p.key != key);
                    if pods.is_empty() {
                        self.waiting.remove(node);
                    }
                }
            }
        }
    }

    /// Decides for `pods` in order with `schedule`; each pod bound counts
    /// on its node before the next decision, as the contract says.
    pub fn decide(
        &mut self,
        pods: Vec<PodInfo>,
        mut schedule: impl FnMut(&PodInfo, &[NodeInfo]) -> Decision,
    ) -> Vec<Decision> {
        pods.into_iter()
            .map(|pod| {
                let decision = schedule(&pod, &self.nodes);
                if let Decision::Bind(node) = &decision {
                    self.place(PlacedPod::assumed(pod, node));
                }
                decision
            })
            .collect()
    }
}

impl NodeInfo {
    /// Adds `pod` to `pods`, `requested` and `used_host_ports` (the same
    /// as [`NodeInfo::add_up`] after pushing it: saturating sums add up
    /// in any order, but without going over every pod on the node).
    fn count(&mut self, pod: PlacedPod) {
        self.requested = self.requested.saturating_add(&pod.requests);
        if !pod.host_ports.is_empty() {
            self.used_host_ports.extend_from_slice(&pod.host_ports);
            self.used_host_ports.sort_unstable();
            self.used_host_ports.dedup();
        }
        self.pods.push(pod);
    }

    /// Recomputes `requested` and `used_host_ports` from `pods`.
    fn add_up(&mut self) {
        let mut requested = Resources::ZERO;
        let mut ports = Vec::new();
        for pod in &self.pods {
            requested = requested.saturating_add(&pod.requests);
            ports.extend_from_slice(&pod.host_ports);
        }
        ports.sort_unstable();
        ports.dedup();
        self.requested = requested;
        self.used_host_ports = ports;
    }

    /// The value of the node's label `key`.
    pub fn label(&self, key: &str) -> Option<&str> {
        find_label(&self.labels, key)
    }

    /// Allocatable minus what is already requested on the node.
    pub fn free(&self) -> Resources {
        self.allocatable.saturating_sub(&self.requested)
    }
}

impl PlacedPod {
    /// `pod` counted on `node`, as the SDK assumes it after binding it
    /// there (the host later confirms it with the same record).
    pub fn assumed(pod: PodInfo, node: &str) -> PlacedPod {
        PlacedPod {
            key: format!("{}/{}", pod.namespace, pod.name),
            node: node.to_owned(),
            namespace: pod.namespace,
            labels: pod.labels,
            owner_uid: pod.owner_uid,
            requests: Resources {
                pods: pod.requests.pods.max(1),
                ..pod.requests
            },
            host_ports: pod.host_ports,
        }
    }
}

impl Default for Resources {
    fn default() -> Self {
        Resources::ZERO
    }
}

impl Default for PlacedPod {
    fn default() -> Self {
        PlacedPod {
            key: String::new(),
            node: String::new(),
            namespace: String::new(),
            labels: Vec::new(),
            owner_uid: None,
            requests: Resources::ZERO,
            host_ports: Vec::new(),
        }
    }
}

impl Default for PodInfo {
    /// A pod that asks for nothing and constrains nothing.
    fn default() -> Self {
        PodInfo {
            namespace: String::new(),
            name: String::new(),
            uid: String::new(),
            labels: Vec::new(),
            requests: Resources::ZERO,
            node_name: None,
            node_selector: Vec::new(),
            required_node_affinity: Vec::new(),
            preferred_node_affinity: Vec::new(),
            tolerations: Vec::new(),
            host_ports: Vec::new(),
            required_pod_affinity: Vec::new(),
            required_pod_anti_affinity: Vec::new(),
            preferred_pod_affinity: Vec::new(),
            preferred_pod_anti_affinity: Vec::new(),
            owner_uid: None,
        }
    }
}

// The type is generated by wit-bindgen: the impl cannot be derived here.
#[allow(clippy::derivable_impls)]
impl Default for SelectorTerm {
    fn default() -> Self {
        SelectorTerm {
            requirements: Vec::new(),
        }
    }
}

// The type is generated by wit-bindgen: the impl cannot be derived here.
#[allow(clippy::derivable_impls)]
impl Default for PodAffinityTerm {
    fn default() -> Self {
        PodAffinityTerm {
            selector: SelectorTerm::default(),
            namespaces: Vec::new(),
            topology_key: String::new(),
        }
    }
}

// The type is generated by wit-bindgen: the impl cannot be derived here.
#[allow(clippy::derivable_impls)]
impl Default for Label {
    fn default() -> Self {
        Label {
            key: String::new(),
            value: String::new(),
        }
    }
}

impl Resources {
    /// Nothing.
    pub const ZERO: Resources = Resources {
        milli_cpu: 0,
        memory_bytes: 0,
        pods: 0,
    };

    /// `self - other` per resource, stopping at zero: a node can be
    /// over-committed when pods were bound by hand past its allocatable.
    pub fn saturating_sub(&self, other: &Resources) -> Resources {
        Resources {
            milli_cpu: self.milli_cpu.saturating_sub(other.milli_cpu),
            memory_bytes: self.memory_bytes.saturating_sub(other.memory_bytes),
            pods: self.pods.saturating_sub(other.pods),
        }
    }

    /// `self + other` per resource.
    pub fn saturating_add(&self, other: &Resources) -> Resources {
        Resources {
            milli_cpu: self.milli_cpu.saturating_add(other.milli_cpu),
            memory_bytes: self.memory_bytes.saturating_add(other.memory_bytes),
            pods: self.pods.saturating_add(other.pods),
        }
    }

    /// Whether every amount of `self` fits in `free`.
    pub fn fits_in(&self, free: &Resources) -> bool {
        self.milli_cpu <= free.milli_cpu
            && self.memory_bytes <= free.memory_bytes
            && self.pods <= free.pods
    }
}

impl PodInfo {
    /// The value of the pod's label `key`.
    pub fn label(&self, key: &str) -> Option<&str> {
        find_label(&self.labels, key)
    }

    /// Whether one of the pod's tolerations tolerates `taint`.
    pub fn tolerates(&self, taint: &Taint) -> bool {
        self.tolerations.iter().any(|t| t.tolerates(taint))
    }
}

impl Toleration {
    /// Whether this toleration tolerates `taint`, with Kubernetes' rules:
    /// an empty key with `Exists` matches every key, no effect matches
    /// every effect, `Exists` ignores the value.
    pub fn tolerates(&self, taint: &Taint) -> bool {
        if self.effect.is_some_and(|e| e != taint.effect) {
            return false;
        }
        if !self.key.is_empty() && self.key != taint.key {
            return false;
        }
        match self.operator {
            TolerationOperator::Exists => true,
            TolerationOperator::Equal => self.key == taint.key && self.value == taint.value,
        }
    }
}

impl Rejection {
    /// Rejects `node` for `reason` (`Insufficient cpu`).
    pub fn new(node: impl Into<String>, reason: impl Into<String>) -> Self {
        Rejection {
            node: node.into(),
            reason: reason.into(),
        }
    }
}

impl Label {
    /// A `key=value` label.
    pub fn new(key: impl Into<String>, value: impl Into<String>) -> Self {
        Label {
            key: key.into(),
            value: value.into(),
        }
    }
}

fn find_label<'a>(labels: &'a [Label], key: &str) -> Option<&'a str> {
    labels
        .iter()
        .find(|l| l.key == key)
        .map(|l| l.value.as_str())
}

/// Exports a type implementing [`Scheduler`] as the component's `scheduler`
/// world. Use once per plugin, with a type name (not a path).
#[macro_export]
macro_rules! export_scheduler {
    ($ty:ident) => {
        $crate::bindings::scheduler::export!($ty with_types_in $crate::bindings::scheduler);
    };
}

#[cfg(test)]
mod tests {
    use super::*;

    fn taint(key: &str, value: &str, effect: TaintEffect) -> Taint {
        Taint {
            key: key.into(),
            value: value.into(),
            effect,
        }
    }

    fn toleration(
        key: &str,
        op: TolerationOperator,
        value: &str,
        effect: Option<TaintEffect>,
    ) -> Toleration {
        Toleration {
            key: key.into(),
            operator: op,
            value: value.into(),
            effect,
        }
    }

    #[test]
    fn toleration_rules() {
        let t = taint("gpu", "yes", TaintEffect::NoSchedule);
        assert!(toleration("gpu", TolerationOperator::Equal, "yes", None).tolerates(&t));
        assert!(!toleration("gpu", TolerationOperator::Equal, "no", None).tolerates(&t));
        assert!(toleration("gpu", TolerationOperator::Exists, "", None).tolerates(&t));
        assert!(toleration("", TolerationOperator::Exists, "", None).tolerates(&t));
        assert!(!toleration("", TolerationOperator::Equal, "yes", None).tolerates(&t));
        assert!(
            !toleration(
                "gpu",
                TolerationOperator::Exists,
                "",
                Some(TaintEffect::NoExecute)
            )
            .tolerates(&t)
        );
    }

    fn node(name: &str, cpu: u64) -> Node {
        Node {
            name: name.into(),
            labels: Vec::new(),
            allocatable: Resources {
                milli_cpu: cpu,
                memory_bytes: 1 << 30,
                pods: 10,
            },
            taints: Vec::new(),
            unschedulable: false,
            ready: true,
        }
    }

    fn placed(key: &str, node: &str, cpu: u64, ports: &[u16]) -> PlacedPod {
        PlacedPod {
            key: key.into(),
            node: node.into(),
            namespace: "default".into(),
            requests: Resources {
                milli_cpu: cpu,
                memory_bytes: 0,
                pods: 1,
            },
            host_ports: ports.to_vec(),
            ..PlacedPod::default()
        }
    }

    fn requested(cluster: &Cluster, node: &str) -> Option<(u64, u32, Vec<u16>)> {
        cluster.node(node).map(|n| {
            (
                n.requested.milli_cpu,
                n.requested.pods,
                n.used_host_ports.clone(),
            )
        })
    }

    #[test]
    fn the_view_adds_up_what_is_placed_on_each_node() {
        let mut c = Cluster::default();
        // A pod on a node not known yet waits for it.
        c.apply(ClusterChange::PodPlaced(placed(
            "default/a",
            "n1",
            500,
            &[80],
        )));
        assert!(c.node("n1").is_none());
        c.apply(ClusterChange::NodeSet(node("n1", 4000)));
        c.apply(ClusterChange::NodeSet(node("n2", 4000)));
        assert_eq!(requested(&c, "n1"), Some((500, 1, vec![80])));
        c.apply(ClusterChange::PodPlaced(placed(
            "default/b",
            "n1",
            250,
            &[80, 443],
        )));
        assert_eq!(requested(&c, "n1"), Some((750, 2, vec![80, 443])));
        // Placed again elsewhere: moves, counted once.
        c.apply(ClusterChange::PodPlaced(placed(
            "default/b",
            "n2",
            250,
            &[],
        )));
        assert_eq!(requested(&c, "n1"), Some((500, 1, vec![80])));
        assert_eq!(requested(&c, "n2"), Some((250, 1, vec![])));
        assert_eq!(c.placement("default/b"), Some("n2"));
        // A node update keeps its pods.
        let mut cordoned = node("n2", 2000);
        cordoned.unschedulable = true;
        c.apply(ClusterChange::NodeSet(cordoned));
        assert_eq!(requested(&c, "n2"), Some((250, 1, vec![])));
        assert_eq!(c.node("n2").map(|n| n.free().milli_cpu), Some(1750));
        // A removed node's pods wait under its name and come back with it.
        c.apply(ClusterChange::NodeRemoved("n1".into()));
        assert_eq!(c.nodes().len(), 1);
        assert_eq!(c.node("n2").map(|n| n.name.as_str()), Some("n2"));
        c.apply(ClusterChange::NodeSet(node("n1", 4000)));
        assert_eq!(requested(&c, "n1"), Some((500, 1, vec![80])));
        c.apply(ClusterChange::PodRemoved("default/a".into()));
        c.apply(ClusterChange::PodRemoved("default/unknown".into()));
        assert_eq!(requested(&c, "n1"), Some((0, 0, vec![])));
        assert_eq!(c.pod_count(), 1);
    }

    #[test]
    fn a_bound_pod_counts_before_the_next_decision() {
        let mut c = Cluster::default();
        c.apply(ClusterChange::NodeSet(node("n1", 1000)));
        c.apply(ClusterChange::NodeSet(node("n2", 1000)));
        let pod = |name: &str| PodInfo {
            namespace: "default".into(),
            name: name.into(),
            requests: Resources {
                milli_cpu: 600,
                memory_bytes: 0,
                pods: 1,
            },
            ..PodInfo::default()
        };
        // Most free CPU wins; ties go to the first.
        let decisions = c.decide(vec![pod("a"), pod("b"), pod("c")], |pod, nodes| match nodes
            .iter()
            .filter(|n| pod.requests.fits_in(&n.free()))
            .max_by_key(|n| (n.free().milli_cpu, std::cmp::Reverse(n.name.clone())))
        {
            Some(n) => Decision::Bind(n.name.clone()),
            None => Decision::Unschedulable(Vec::new()),
        });
        assert_eq!(
            decisions,
            [
                Decision::Bind("n1".into()),
                Decision::Bind("n2".into()),
                Decision::Unschedulable(Vec::new())
            ]
        );
        assert_eq!(c.placement("default/a"), Some("n1"));
        assert_eq!(c.placement("default/c"), None);
        assert_eq!(requested(&c, "n2"), Some((600, 1, vec![])));
    }

    #[test]
    fn resources_arithmetic() {
        let a = Resources {
            milli_cpu: 1000,
            memory_bytes: 10,
            pods: 2,
        };
        let b = Resources {
            milli_cpu: 1500,
            memory_bytes: 4,
            pods: 1,
        };
        assert_eq!(
            a.saturating_sub(&b),
            Resources {
                milli_cpu: 0,
                memory_bytes: 6,
                pods: 1
            }
        );
        assert_eq!(a.saturating_add(&b).milli_cpu, 2500);
        assert!(Resources::ZERO.fits_in(&a));
        assert!(!b.fits_in(&a));
    }
}
