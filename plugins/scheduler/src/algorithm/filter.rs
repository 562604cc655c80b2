//! Filters: whether a pod may run on a node, and if not, why, in
//! Kubernetes' words. They run in kube-scheduler's order (NodeUnschedulable,
//! NodeName, TaintToleration, NodeAffinity, NodePorts, NodeResourcesFit,
//! InterPodAffinity) and the first failing filter gives the node's reason
//! (NodeResourcesFit one per resource the node is short of, as
//! kube-scheduler's does), so the FailedScheduling summary reads as it
//! would on Kubernetes.

use std::borrow::Cow;

use super::affinity::RequiredAffinity;
use super::types::{
    Label, NodeInfo, PodInfo, SelectorOperator, SelectorRequirement, SelectorTerm, Taint,
    TaintEffect, Toleration, TolerationOperator, label,
};

/// The reasons filters give, as kube-scheduler words them.
pub mod reasons {
    use super::Taint;

    /// The pod's `spec.nodeName` names another node.
    pub const NODE_NAME: &str = "node(s) didn't match the requested node name";
    /// The node is cordoned.
    pub const UNSCHEDULABLE: &str = "node(s) were unschedulable";
    /// `nodeSelector` or required node affinity does not match.
    pub const NODE_AFFINITY: &str = "node(s) didn't match Pod's node affinity/selector";
    /// A host port the pod wants is taken.
    pub const HOST_PORTS: &str = "node(s) didn't have free ports for the requested pod ports";
    /// Not enough CPU left.
    pub const INSUFFICIENT_CPU: &str = "Insufficient cpu";
    /// Not enough memory left.
    pub const INSUFFICIENT_MEMORY: &str = "Insufficient memory";
    /// The node's pod count is at its allocatable.
    pub const TOO_MANY_PODS: &str = "Too many pods";
    /// Required pod affinity does not hold.
    pub const POD_AFFINITY: &str = "node(s) didn't match pod affinity rules";
    /// Required pod anti-affinity does not hold.
    pub const POD_ANTI_AFFINITY: &str = "node(s) didn't match pod anti-affinity rules";

    /// The node has a `NoSchedule`/`NoExecute` taint the pod does not
    /// tolerate: `node(s) had untolerated taint {key: value}`.
    pub fn untolerated_taint(taint: &Taint) -> String {
        format!(
            "node(s) had untolerated taint {{{}: {}}}",
            taint.key, taint.value
        )
    }
}

/// The taint Kubernetes' node lifecycle controller puts on a node whose
/// Ready condition is not True; the scheduler treats a not-ready node as
/// carrying it, so pods that tolerate it (DaemonSets) still land there.
pub const NOT_READY_TAINT: &str = "node.kubernetes.io/not-ready";

/// The taint a cordoned node stands for; tolerating it lets a pod onto a
/// cordoned node, as NodeUnschedulable allows.
pub const UNSCHEDULABLE_TAINT: &str = "node.kubernetes.io/unschedulable";

/// The key a node selector requirement uses for a `matchFields` term on
/// the node's name.
pub const NODE_NAME_FIELD: &str = "metadata.name";

/// Whether `pod` may run on `node`; the error is the first failing
/// filter's reason. `required` is the pod's required inter-pod affinity,
/// computed once per pod over every node.
pub fn filter(
    pod: &PodInfo,
    node: &NodeInfo,
    required: &RequiredAffinity<'_>,
) -> Result<(), Cow<'static, str>> {
    if node.unschedulable && !tolerated(&pod.tolerations, &implicit_taint(UNSCHEDULABLE_TAINT)) {
        return Err(reasons::UNSCHEDULABLE.into());
    }
    if pod.node_name.as_deref().is_some_and(|n| n != node.name) {
        return Err(reasons::NODE_NAME.into());
    }
    if let Some(taint) = untolerated_taint(pod, node) {
        return Err(reasons::untolerated_taint(&taint).into());
    }
    if !matches_node_affinity(pod, node) {
        return Err(reasons::NODE_AFFINITY.into());
    }
    if pod
        .host_ports
        .iter()
        .any(|p| *p != 0 && node.used_host_ports.contains(p))
    {
        return Err(reasons::HOST_PORTS.into());
    }
    if let Some(reason) = insufficient_resource(pod, node) {
        return Err(reason.into());
    }
    required.check(node).map_err(Cow::Borrowed)
}

/// The first `NoSchedule`/`NoExecute` taint of `node` the pod does not
/// tolerate, counting a not-ready node as tainted `not-ready:NoSchedule`.
pub fn untolerated_taint(pod: &PodInfo, node: &NodeInfo) -> Option<Taint> {
    let hard = |t: &&Taint| t.effect != TaintEffect::PreferNoSchedule;
    if let Some(t) = node
        .taints
        .iter()
        .filter(hard)
        .find(|t| !tolerated(&pod.tolerations, t))
    {
        return Some(t.clone());
    }
    if node.ready {
        return None;
    }
    // Built only for a node that is not Ready: it was an allocation and a
    // free for every node looked at, dear in WebAssembly's allocator.
    let not_ready = implicit_taint(NOT_READY_TAINT);
    (!tolerated(&pod.tolerations, &not_ready)).then_some(not_ready)
}

fn implicit_taint(key: &str) -> Taint {
    Taint {
        key: key.to_owned(),
        value: String::new(),
        effect: TaintEffect::NoSchedule,
    }
}

/// Whether any of `tolerations` tolerates `taint` (Kubernetes'
/// `ToleratesTaint`).
pub fn tolerated(tolerations: &[Toleration], taint: &Taint) -> bool {
    tolerations.iter().any(|t| tolerates(t, taint))
}

fn tolerates(toleration: &Toleration, taint: &Taint) -> bool {
    if toleration.effect.is_some_and(|e| e != taint.effect) {
        return false;
    }
    if !toleration.key.is_empty() && toleration.key != taint.key {
        return false;
    }
    match toleration.operator {
        TolerationOperator::Exists => true,
        // An empty key only means "every key" together with Exists.
        TolerationOperator::Equal => toleration.key == taint.key && toleration.value == taint.value,
    }
}

/// `nodeSelector` and required node affinity (any term) both hold.
pub fn matches_node_affinity(pod: &PodInfo, node: &NodeInfo) -> bool {
    let selector_ok = pod
        .node_selector
        .iter()
        .all(|want| label(&node.labels, &want.key) == Some(want.value.as_str()));
    selector_ok
        && (pod.required_node_affinity.is_empty()
            || pod
                .required_node_affinity
                .iter()
                .any(|term| node_term_matches(term, node)))
}

/// Whether a node selector term matches `node`. As in Kubernetes, a term
/// with no requirements matches no node, and `metadata.name` is the
/// node's name (`matchFields`), not a label.
pub fn node_term_matches(term: &SelectorTerm, node: &NodeInfo) -> bool {
    !term.requirements.is_empty()
        && term.requirements.iter().all(|r| {
            let value = if r.key == NODE_NAME_FIELD {
                Some(node.name.as_str())
            } else {
                label(&node.labels, &r.key)
            };
            requirement_matches(r, value)
        })
}

/// Whether a label selector matches `labels`. Unlike a node selector term,
/// an empty label selector matches everything.
pub fn label_selector_matches(selector: &SelectorTerm, labels: &[Label]) -> bool {
    selector
        .requirements
        .iter()
        .all(|r| requirement_matches(r, label(labels, &r.key)))
}

/// Whether one requirement holds for a label's `value` (`None`: absent).
pub fn requirement_matches(req: &SelectorRequirement, value: Option<&str>) -> bool {
    match req.operator {
        SelectorOperator::In => value.is_some_and(|v| req.values.iter().any(|w| w == v)),
        SelectorOperator::NotIn => value.is_none_or(|v| req.values.iter().all(|w| w != v)),
        SelectorOperator::Exists => value.is_some(),
        SelectorOperator::DoesNotExist => value.is_none(),
        SelectorOperator::Gt | SelectorOperator::Lt => {
            // Kubernetes requires exactly one integer value, and a label
            // that is not an integer never matches.
            let (Some(v), [bound]) = (value, req.values.as_slice()) else {
                return false;
            };
            match (v.parse::<i64>(), bound.parse::<i64>()) {
                (Ok(v), Ok(bound)) if req.operator == SelectorOperator::Gt => v > bound,
                (Ok(v), Ok(bound)) => v < bound,
                _ => false,
            }
        }
    }
}

/// NodeResourcesFit: the first resource the node is short of (see
/// [`insufficient_resources`]).
pub fn insufficient_resource(pod: &PodInfo, node: &NodeInfo) -> Option<&'static str> {
    insufficient_resources(pod, node).next()
}

/// NodeResourcesFit: every resource the node is short of, in Kubernetes'
/// order (pods, cpu, memory): the pod's requests against allocatable minus
/// what is already requested on the node. As in kube-scheduler, a node
/// short of several resources gives each as a reason (`2 Insufficient cpu,
/// 2 Insufficient memory`). A zero request always fits, even on an
/// over-committed node.
pub fn insufficient_resources(
    pod: &PodInfo,
    node: &NodeInfo,
) -> impl Iterator<Item = &'static str> {
    let want = &pod.requests;
    let (alloc, used) = (&node.allocatable, &node.requested);
    let pods = u64::from(used.pods) + u64::from(want.pods.max(1)) > u64::from(alloc.pods);
    let cpu = want.milli_cpu > 0 && want.milli_cpu > alloc.milli_cpu.saturating_sub(used.milli_cpu);
    let memory = want.memory_bytes > 0
        && want.memory_bytes > alloc.memory_bytes.saturating_sub(used.memory_bytes);
    [
        (pods, reasons::TOO_MANY_PODS),
        (cpu, reasons::INSUFFICIENT_CPU),
        (memory, reasons::INSUFFICIENT_MEMORY),
    ]
    .into_iter()
    .filter_map(|(short, reason)| short.then_some(reason))
}

/// Whether `reason` is one NodeResourcesFit gives.
pub fn is_resource_reason(reason: &str) -> bool {
    matches!(
        reason,
        reasons::TOO_MANY_PODS | reasons::INSUFFICIENT_CPU | reasons::INSUFFICIENT_MEMORY
    )
}
