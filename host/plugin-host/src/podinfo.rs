//! Reducing Pod and Node JSON to the typed records of the scheduling hot
//! path. Malformed fields are skipped, never a panic: the API validates
//! objects on the way in, and the scheduler must survive what slips by.

use serde_json::Value;

use crate::quantity;
use crate::scheduler::types::{
    Label, PodAffinityTerm, PodInfo, Resources, SelectorOperator, SelectorRequirement,
    SelectorTerm, Taint, TaintEffect, Toleration, TolerationOperator, WeightedPodAffinityTerm,
    WeightedTerm,
};

/// The resources a pod asks for, as Kubernetes' `PodRequests` computes
/// them: the sum over containers plus sidecars (restartable init
/// containers), at least the largest init container step, plus the pod's
/// overhead; `pods` is 1.
pub fn pod_requests(pod: &Value) -> Resources {
    let spec = &pod["spec"];
    let mut sum = Amounts::default();
    for c in array(&spec["containers"]) {
        sum.add(container_requests(c));
    }
    let mut sidecars = Amounts::default();
    let mut init_max = Amounts::default();
    for c in array(&spec["initContainers"]) {
        let own = container_requests(c);
        let step = if c["restartPolicy"].as_str() == Some("Always") {
            sidecars.add(own);
            sidecars
        } else {
            let mut step = own;
            step.add(sidecars);
            step
        };
        init_max.max(step);
    }
    sum.add(sidecars);
    sum.max(init_max);
    sum.add(amounts(&spec["overhead"]));
    Resources {
        milli_cpu: sum.milli_cpu,
        memory_bytes: sum.memory_bytes,
        pods: 1,
    }
}

/// CPU and memory of one resource list.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
struct Amounts {
    milli_cpu: u64,
    memory_bytes: u64,
}

impl Amounts {
    fn add(&mut self, other: Amounts) {
        self.milli_cpu = self.milli_cpu.saturating_add(other.milli_cpu);
        self.memory_bytes = self.memory_bytes.saturating_add(other.memory_bytes);
    }

    fn max(&mut self, other: Amounts) {
        self.milli_cpu = self.milli_cpu.max(other.milli_cpu);
        self.memory_bytes = self.memory_bytes.max(other.memory_bytes);
    }
}

/// A container's requests; limits stand in for missing requests, as the
/// API server defaults them.
fn container_requests(container: &Value) -> Amounts {
    let resources = &container["resources"];
    let requests = amounts(&resources["requests"]);
    let limits = amounts(&resources["limits"]);
    let has = |list: &Value, key: &str| list.get(key).is_some();
    Amounts {
        milli_cpu: if has(&resources["requests"], "cpu") {
            requests.milli_cpu
        } else {
            limits.milli_cpu
        },
        memory_bytes: if has(&resources["requests"], "memory") {
            requests.memory_bytes
        } else {
            limits.memory_bytes
        },
    }
}

fn amounts(list: &Value) -> Amounts {
    Amounts {
        milli_cpu: quantity_of(&list["cpu"], quantity::millicpu),
        memory_bytes: quantity_of(&list["memory"], quantity::bytes),
    }
}

/// A quantity given as a string or (from YAML) a number; 0 when absent or
/// malformed.
fn quantity_of(value: &Value, parse: fn(&str) -> Result<u64, quantity::QuantityError>) -> u64 {
    match value {
        Value::String(s) => parse(s).unwrap_or(0),
        Value::Number(n) => parse(&n.to_string()).unwrap_or(0),
        _ => 0,
    }
}

/// A node's allocatable resources (capacity when allocatable is absent).
pub fn node_allocatable(node: &Value) -> Resources {
    let status = &node["status"];
    let list = if status["allocatable"].is_object() {
        &status["allocatable"]
    } else {
        &status["capacity"]
    };
    let a = amounts(list);
    Resources {
        milli_cpu: a.milli_cpu,
        memory_bytes: a.memory_bytes,
        pods: u32::try_from(quantity_of(&list["pods"], quantity::bytes)).unwrap_or(u32::MAX),
    }
}

/// A node's taints.
pub fn node_taints(node: &Value) -> Vec<Taint> {
    array(&node["spec"]["taints"])
        .filter_map(|t| {
            Some(Taint {
                key: t["key"].as_str()?.to_string(),
                value: str_of(&t["value"]),
                effect: effect(t["effect"].as_str()?)?,
            })
        })
        .collect()
}

/// Whether the node's `Ready` condition is `True`.
pub fn node_ready(node: &Value) -> bool {
    array(&node["status"]["conditions"])
        .any(|c| c["type"].as_str() == Some("Ready") && c["status"].as_str() == Some("True"))
}

/// Whether the node is cordoned (`spec.unschedulable`).
pub fn node_unschedulable(node: &Value) -> bool {
    node["spec"]["unschedulable"].as_bool().unwrap_or(false)
}

/// `metadata.labels` as records, in the object's order.
pub fn labels(object: &Value) -> Vec<Label> {
    string_map(&object["metadata"]["labels"])
}

/// The uid of the object's controlling owner.
pub fn controller_uid(object: &Value) -> Option<String> {
    array(&object["metadata"]["ownerReferences"])
        .find(|r| r["controller"].as_bool() == Some(true))
        .and_then(|r| r["uid"].as_str())
        .map(str::to_string)
}

/// Host ports the pod's containers claim.
pub fn host_ports(pod: &Value) -> Vec<u16> {
    let mut ports: Vec<u16> = array(&pod["spec"]["containers"])
        .flat_map(|c| array(&c["ports"]))
        .filter_map(|p| p["hostPort"].as_u64())
        .filter_map(|p| u16::try_from(p).ok())
        .filter(|p| *p > 0)
        .collect();
    ports.sort_unstable();
    ports.dedup();
    ports
}

/// The pod reduced to what scheduling reads.
pub fn pod_info(pod: &Value) -> PodInfo {
    let meta = &pod["metadata"];
    let spec = &pod["spec"];
    let affinity = &spec["affinity"];
    let node_affinity = &affinity["nodeAffinity"];
    PodInfo {
        namespace: str_of(&meta["namespace"]),
        name: str_of(&meta["name"]),
        uid: str_of(&meta["uid"]),
        labels: labels(pod),
        requests: pod_requests(pod),
        node_name: spec["nodeName"]
            .as_str()
            .filter(|n| !n.is_empty())
            .map(str::to_string),
        node_selector: string_map(&spec["nodeSelector"]),
        required_node_affinity: array(
            &node_affinity["requiredDuringSchedulingIgnoredDuringExecution"]["nodeSelectorTerms"],
        )
        .map(node_selector_term)
        .collect(),
        preferred_node_affinity: array(
            &node_affinity["preferredDuringSchedulingIgnoredDuringExecution"],
        )
        .map(|p| WeightedTerm {
            weight: weight(&p["weight"]),
            term: node_selector_term(&p["preference"]),
        })
        .collect(),
        tolerations: array(&spec["tolerations"]).map(toleration).collect(),
        host_ports: host_ports(pod),
        required_pod_affinity: required_pod_terms(&affinity["podAffinity"]),
        required_pod_anti_affinity: required_pod_terms(&affinity["podAntiAffinity"]),
        preferred_pod_affinity: preferred_pod_terms(&affinity["podAffinity"]),
        preferred_pod_anti_affinity: preferred_pod_terms(&affinity["podAntiAffinity"]),
        owner_uid: controller_uid(pod),
    }
}

/// A node selector term. `matchFields` (Kubernetes allows only
/// `metadata.name`) become requirements on the key `metadata.name`.
fn node_selector_term(term: &Value) -> SelectorTerm {
    let requirements = array(&term["matchExpressions"])
        .chain(array(&term["matchFields"]))
        .filter_map(requirement)
        .collect();
    SelectorTerm { requirements }
}

/// A label selector (`matchLabels` and `matchExpressions`) as one term.
fn label_selector(selector: &Value) -> SelectorTerm {
    let mut requirements: Vec<SelectorRequirement> = string_map(&selector["matchLabels"])
        .into_iter()
        .map(|l| SelectorRequirement {
            key: l.key,
            operator: SelectorOperator::In,
            values: vec![l.value],
        })
        .collect();
    requirements.extend(array(&selector["matchExpressions"]).filter_map(requirement));
    SelectorTerm { requirements }
}

fn requirement(expr: &Value) -> Option<SelectorRequirement> {
    let operator = match expr["operator"].as_str()? {
        "In" => SelectorOperator::In,
        "NotIn" => SelectorOperator::NotIn,
        "Exists" => SelectorOperator::Exists,
        "DoesNotExist" => SelectorOperator::DoesNotExist,
        "Gt" => SelectorOperator::Gt,
        "Lt" => SelectorOperator::Lt,
        _ => return None,
    };
    Some(SelectorRequirement {
        key: expr["key"].as_str()?.to_string(),
        operator,
        values: array(&expr["values"])
            .filter_map(|v| v.as_str().map(str::to_string))
            .collect(),
    })
}

/// A selector no labels satisfy (`In` no values).
fn nothing() -> SelectorTerm {
    SelectorTerm {
        requirements: vec![SelectorRequirement {
            key: String::new(),
            operator: SelectorOperator::In,
            values: Vec::new(),
        }],
    }
}

fn pod_affinity_term(term: &Value) -> PodAffinityTerm {
    let selector = &term["labelSelector"];
    PodAffinityTerm {
        // As in Kubernetes, a term with no `labelSelector` matches no pod
        // (an empty one, `{}`, matches every pod).
        selector: if selector.is_object() {
            label_selector(selector)
        } else {
            nothing()
        },
        namespaces: array(&term["namespaces"])
            .filter_map(|v| v.as_str().map(str::to_string))
            .collect(),
        topology_key: str_of(&term["topologyKey"]),
    }
}

fn required_pod_terms(affinity: &Value) -> Vec<PodAffinityTerm> {
    array(&affinity["requiredDuringSchedulingIgnoredDuringExecution"])
        .map(pod_affinity_term)
        .collect()
}

fn preferred_pod_terms(affinity: &Value) -> Vec<WeightedPodAffinityTerm> {
    array(&affinity["preferredDuringSchedulingIgnoredDuringExecution"])
        .map(|p| WeightedPodAffinityTerm {
            weight: weight(&p["weight"]),
            term: pod_affinity_term(&p["podAffinityTerm"]),
        })
        .collect()
}

fn toleration(t: &Value) -> Toleration {
    Toleration {
        key: str_of(&t["key"]),
        operator: match t["operator"].as_str() {
            Some("Exists") => TolerationOperator::Exists,
            _ => TolerationOperator::Equal,
        },
        value: str_of(&t["value"]),
        effect: t["effect"].as_str().and_then(effect),
    }
}

fn effect(name: &str) -> Option<TaintEffect> {
    match name {
        "NoSchedule" => Some(TaintEffect::NoSchedule),
        "PreferNoSchedule" => Some(TaintEffect::PreferNoSchedule),
        "NoExecute" => Some(TaintEffect::NoExecute),
        _ => None,
    }
}

/// The Kubernetes name of a taint effect.
pub fn effect_name(effect: TaintEffect) -> &'static str {
    match effect {
        TaintEffect::NoSchedule => "NoSchedule",
        TaintEffect::PreferNoSchedule => "PreferNoSchedule",
        TaintEffect::NoExecute => "NoExecute",
    }
}

fn weight(v: &Value) -> i32 {
    v.as_i64().and_then(|w| i32::try_from(w).ok()).unwrap_or(0)
}

fn array(v: &Value) -> impl Iterator<Item = &Value> {
    v.as_array().into_iter().flatten()
}

fn str_of(v: &Value) -> String {
    v.as_str().unwrap_or_default().to_string()
}

fn string_map(v: &Value) -> Vec<Label> {
    v.as_object()
        .into_iter()
        .flatten()
        .filter_map(|(k, v)| {
            Some(Label {
                key: k.clone(),
                value: v.as_str()?.to_string(),
            })
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    #[test]
    fn requests_sum_containers_max_init_and_add_overhead() {
        let pod = json!({"spec": {
            "containers": [
                {"resources": {"requests": {"cpu": "100m", "memory": "64Mi"}}},
                {"resources": {"requests": {"cpu": "0.5"}, "limits": {"memory": "1Gi"}}},
                {"resources": {}},
            ],
            "initContainers": [
                {"resources": {"requests": {"cpu": "2", "memory": "10Mi"}}},
            ],
            "overhead": {"cpu": "10m", "memory": 1000},
        }});
        let r = pod_requests(&pod);
        // cpu: max(100m + 500m, 2000m) + 10m; memory: 64Mi + 1Gi (limit) + 1000.
        assert_eq!(r.milli_cpu, 2010);
        assert_eq!(r.memory_bytes, (64 << 20) + (1 << 30) + 1000);
        assert_eq!(r.pods, 1);
    }

    #[test]
    fn sidecars_add_to_the_running_sum() {
        let pod = json!({"spec": {
            "containers": [{"resources": {"requests": {"cpu": "1"}}}],
            "initContainers": [
                {"restartPolicy": "Always", "resources": {"requests": {"cpu": "200m"}}},
                {"resources": {"requests": {"cpu": "1500m"}}},
            ],
        }});
        // Steps: sidecar 200m, then init 1500m + 200m = 1700m; running:
        // 1000m + 200m = 1200m; the pod needs max(1200m, 1700m).
        assert_eq!(pod_requests(&pod).milli_cpu, 1700);
    }

    #[test]
    fn pod_info_reads_placement_fields() {
        let pod = json!({
            "metadata": {"name": "web", "namespace": "prod", "uid": "u1",
                "labels": {"app": "web"},
                "ownerReferences": [
                    {"uid": "other", "controller": false},
                    {"uid": "rs-1", "controller": true}]},
            "spec": {
                "nodeSelector": {"disk": "ssd"},
                "containers": [{"ports": [{"containerPort": 80, "hostPort": 8080}, {"containerPort": 81}]}],
                "tolerations": [
                    {"key": "gpu", "operator": "Exists", "effect": "NoSchedule"},
                    {"key": "team", "value": "a"}],
                "affinity": {
                    "nodeAffinity": {
                        "requiredDuringSchedulingIgnoredDuringExecution": {"nodeSelectorTerms": [
                            {"matchExpressions": [{"key": "zone", "operator": "In", "values": ["a", "b"]}]}]},
                        "preferredDuringSchedulingIgnoredDuringExecution": [
                            {"weight": 10, "preference": {"matchExpressions": [{"key": "fast", "operator": "Exists"}]}}]},
                    "podAntiAffinity": {
                        "requiredDuringSchedulingIgnoredDuringExecution": [
                            {"labelSelector": {"matchLabels": {"app": "web"}}, "topologyKey": "kubernetes.io/hostname"}]}
                }
            }
        });
        let info = pod_info(&pod);
        assert_eq!(
            (info.namespace.as_str(), info.name.as_str()),
            ("prod", "web")
        );
        assert_eq!(info.owner_uid.as_deref(), Some("rs-1"));
        assert_eq!(info.host_ports, vec![8080]);
        assert_eq!(info.node_selector[0].key, "disk");
        assert_eq!(info.tolerations.len(), 2);
        assert!(matches!(
            info.tolerations[0].operator,
            TolerationOperator::Exists
        ));
        assert!(matches!(
            info.tolerations[1].operator,
            TolerationOperator::Equal
        ));
        assert!(info.tolerations[1].effect.is_none());
        assert_eq!(
            info.required_node_affinity[0].requirements[0].values,
            vec!["a", "b"]
        );
        assert_eq!(info.preferred_node_affinity[0].weight, 10);
        let anti = &info.required_pod_anti_affinity[0];
        assert_eq!(anti.topology_key, "kubernetes.io/hostname");
        assert!(matches!(
            anti.selector.requirements[0].operator,
            SelectorOperator::In
        ));
        assert!(info.node_name.is_none());
    }

    #[test]
    fn a_pod_affinity_term_without_label_selector_matches_no_pod() {
        let pod = json!({"spec": {"affinity": {
            "podAntiAffinity": {"requiredDuringSchedulingIgnoredDuringExecution": [
                {"topologyKey": "kubernetes.io/hostname"},
                {"labelSelector": {}, "topologyKey": "kubernetes.io/hostname"},
            ]},
            "podAffinity": {"preferredDuringSchedulingIgnoredDuringExecution": [
                {"weight": 5, "podAffinityTerm": {"labelSelector": null, "topologyKey": "zone"}},
            ]},
        }}});
        let info = pod_info(&pod);
        // "The value is one of no values": no pod's labels satisfy it.
        let matches_nothing = |term: &SelectorTerm| {
            term.requirements
                .iter()
                .any(|r| r.operator == SelectorOperator::In && r.values.is_empty())
        };
        let [absent, empty] = info.required_pod_anti_affinity.as_slice() else {
            panic!(
                "two anti-affinity terms: {:?}",
                info.required_pod_anti_affinity
            );
        };
        assert!(matches_nothing(&absent.selector), "{absent:?}");
        assert!(empty.selector.requirements.is_empty(), "{empty:?}");
        assert!(matches_nothing(
            &info.preferred_pod_affinity[0].term.selector
        ));
    }

    #[test]
    fn nodes_read_allocatable_taints_and_readiness() {
        let node = json!({
            "spec": {"taints": [{"key": "gpu", "value": "true", "effect": "NoSchedule"}, {"key": "bad"}]},
            "status": {
                "capacity": {"cpu": "8", "memory": "16Gi", "pods": "110"},
                "allocatable": {"cpu": "3500m", "memory": "8Gi", "pods": "100"},
                "conditions": [{"type": "Ready", "status": "True"}]}
        });
        let a = node_allocatable(&node);
        assert_eq!((a.milli_cpu, a.memory_bytes, a.pods), (3500, 8 << 30, 100));
        assert_eq!(node_taints(&node).len(), 1);
        assert!(node_ready(&node));
        assert!(!node_unschedulable(&node));
    }

    #[test]
    fn garbage_never_panics() {
        for v in [
            json!(null),
            json!(1),
            json!({"spec": 3}),
            json!({"spec": {"containers": "x"}}),
            json!({"metadata": [], "spec": {"affinity": {"nodeAffinity": 7}, "tolerations": [1, null]}}),
        ] {
            let _ = pod_info(&v);
            let _ = node_allocatable(&v);
            let _ = node_taints(&v);
        }
    }
}
