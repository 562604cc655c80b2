//! Plain Rust mirrors of the records in `interface scheduling-types`, so
//! the algorithm builds and runs natively with no WebAssembly dependency.
//! Field names and meanings are the WIT's; see `wit/plugin.wit`.

/// Amounts of schedulable resources.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Resources {
    /// CPU in thousandths of a core.
    pub milli_cpu: u64,
    /// Memory in bytes.
    pub memory_bytes: u64,
    /// Number of pods.
    pub pods: u32,
}

/// A `key=value` label.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Label {
    /// The label's key.
    pub key: String,
    /// The label's value.
    pub value: String,
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

/// What a taint does to pods that do not tolerate it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum TaintEffect {
    /// New pods are not scheduled onto the node.
    NoSchedule,
    /// The scheduler avoids the node when it can.
    PreferNoSchedule,
    /// New pods are not scheduled and running ones are evicted.
    NoExecute,
}

/// A node taint.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Taint {
    /// The taint's key.
    pub key: String,
    /// The taint's value (may be empty).
    pub value: String,
    /// The taint's effect.
    pub effect: TaintEffect,
}

/// How a toleration compares values.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum TolerationOperator {
    /// Any value (and, with an empty key, any key).
    Exists,
    /// The same value.
    Equal,
}

/// A pod toleration.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Toleration {
    /// The taint key; empty with `Exists` tolerates every taint.
    pub key: String,
    /// How values are compared.
    pub operator: TolerationOperator,
    /// The value for `Equal`.
    pub value: String,
    /// The effect tolerated; `None` tolerates every effect.
    pub effect: Option<TaintEffect>,
}

/// The operator of a selector requirement.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SelectorOperator {
    /// The label's value is one of the values.
    In,
    /// The label is absent or its value is none of the values.
    NotIn,
    /// The label is present.
    Exists,
    /// The label is absent.
    DoesNotExist,
    /// The label's value, an integer, is greater than the one value.
    Gt,
    /// The label's value, an integer, is less than the one value.
    Lt,
}

/// One requirement of a selector.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SelectorRequirement {
    /// The label key (for node selector terms, `metadata.name` stands for
    /// the node's name, as `matchFields` does).
    pub key: String,
    /// The operator.
    pub operator: SelectorOperator,
    /// The values the operator compares with.
    pub values: Vec<String>,
}

/// A node selector term or label selector: every requirement must hold.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct SelectorTerm {
    /// The requirements, all of which must hold.
    pub requirements: Vec<SelectorRequirement>,
}

/// A preferred node affinity term.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct WeightedTerm {
    /// Its weight (1–100).
    pub weight: i32,
    /// The term.
    pub term: SelectorTerm,
}

/// A pod (anti-)affinity term: pods matching `selector` in `namespaces`
/// (empty: the incoming pod's own) within the same `topology_key` domain.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct PodAffinityTerm {
    /// Which pods the term is about.
    pub selector: SelectorTerm,
    /// The namespaces of those pods; empty means the incoming pod's.
    pub namespaces: Vec<String>,
    /// The node label whose value names the domain (`kubernetes.io/hostname`).
    pub topology_key: String,
}

/// A preferred pod (anti-)affinity term.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct WeightedPodAffinityTerm {
    /// Its weight (1–100).
    pub weight: i32,
    /// The term.
    pub term: PodAffinityTerm,
}

/// The pod to place, reduced to what scheduling reads.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct PodInfo {
    /// The pod's namespace.
    pub namespace: String,
    /// The pod's name.
    pub name: String,
    /// The pod's uid (hashed to break ties between equal nodes).
    pub uid: String,
    /// The pod's labels.
    pub labels: Vec<Label>,
    /// What the pod requests (`pods` is 1).
    pub requests: Resources,
    /// `spec.nodeName` asked for by the user.
    pub node_name: Option<String>,
    /// `spec.nodeSelector`.
    pub node_selector: Vec<Label>,
    /// Required node affinity: any term may match (OR of terms).
    pub required_node_affinity: Vec<SelectorTerm>,
    /// Preferred node affinity.
    pub preferred_node_affinity: Vec<WeightedTerm>,
    /// The pod's tolerations.
    pub tolerations: Vec<Toleration>,
    /// Host ports the pod's containers claim.
    pub host_ports: Vec<u16>,
    /// Required pod affinity terms (all must hold).
    pub required_pod_affinity: Vec<PodAffinityTerm>,
    /// Required pod anti-affinity terms (all must hold).
    pub required_pod_anti_affinity: Vec<PodAffinityTerm>,
    /// Preferred pod affinity terms.
    pub preferred_pod_affinity: Vec<WeightedPodAffinityTerm>,
    /// Preferred pod anti-affinity terms.
    pub preferred_pod_anti_affinity: Vec<WeightedPodAffinityTerm>,
    /// uid of the controlling owner, whose pods are spread.
    pub owner_uid: Option<String>,
}

/// A pod already placed on (or assumed for) a node.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct PlacedPod {
    /// Its namespace.
    pub namespace: String,
    /// Its labels.
    pub labels: Vec<Label>,
    /// uid of its controlling owner.
    pub owner_uid: Option<String>,
}

/// A node and what is already placed on it.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct NodeInfo {
    /// The node's name.
    pub name: String,
    /// The node's labels.
    pub labels: Vec<Label>,
    /// What the node offers to pods.
    pub allocatable: Resources,
    /// Requests of the pods bound to or assumed on the node.
    pub requested: Resources,
    /// The node's taints.
    pub taints: Vec<Taint>,
    /// Cordoned (`spec.unschedulable`).
    pub unschedulable: bool,
    /// The node's `Ready` condition is `True`.
    pub ready: bool,
    /// Host ports claimed by pods on the node.
    pub used_host_ports: Vec<u16>,
    /// The pods on the node.
    pub pods: Vec<PlacedPod>,
}

/// Why a node was rejected, in Kubernetes' words.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Rejection {
    /// The node.
    pub node: String,
    /// The reason (`Insufficient cpu`).
    pub reason: String,
}

/// Where the pod goes.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Decision {
    /// Bind the pod to this node.
    Bind(String),
    /// No node fits: one rejection per node.
    Unschedulable(Vec<Rejection>),
}

/// The value of label `key` in `labels`.
pub(crate) fn label<'a>(labels: &'a [Label], key: &str) -> Option<&'a str> {
    labels
        .iter()
        .find(|l| l.key == key)
        .map(|l| l.value.as_str())
}
