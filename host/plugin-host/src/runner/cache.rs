//! The scheduler's view of the cluster: one `node-info` per node, kept
//! up to date incrementally so a decision never rebuilds the world, with
//! the pods bound to (or assumed on) each node.

use std::collections::HashMap;

use serde_json::Value;

use crate::podinfo;
use crate::scheduler::types::{NodeInfo, PlacedPod, Resources};

/// A pod counted on a node.
#[derive(Clone, Debug)]
pub(crate) struct Placement {
    pub(crate) node: String,
    requests: Resources,
    host_ports: Vec<u16>,
    placed: PlacedPod,
    /// Chosen by this scheduler, binding not yet seen in the store.
    pub(crate) assumed: bool,
}

impl Placement {
    /// The placement of `pod` on `node`.
    pub(crate) fn of(pod: &Value, node: &str, assumed: bool) -> Self {
        Placement {
            node: node.into(),
            requests: podinfo::pod_requests(pod),
            host_ports: podinfo::host_ports(pod),
            placed: PlacedPod {
                namespace: pod["metadata"]["namespace"]
                    .as_str()
                    .unwrap_or_default()
                    .into(),
                labels: podinfo::labels(pod),
                owner_uid: podinfo::controller_uid(pod),
            },
            assumed,
        }
    }
}

/// Nodes and the pods placed on them.
#[derive(Default)]
pub(crate) struct Cache {
    /// The nodes that exist, exactly as handed to the plugin.
    nodes: Vec<NodeInfo>,
    /// Node name → position in `nodes`.
    index: HashMap<String, usize>,
    /// Pod key (`namespace/name`) → where it is counted.
    pods: HashMap<String, Placement>,
    /// Node name → keys of the pods counted there, also for nodes not (or
    /// no longer) known, so their pods count as soon as the node appears.
    by_node: HashMap<String, Vec<String>>,
}

impl Cache {
    /// The nodes for a decision. Taken out while a call runs and put back
    /// with [`Cache::restore_nodes`]: the loop owning the cache waits for
    /// the call, so nothing changes meanwhile.
    pub(crate) fn take_nodes(&mut self) -> Vec<NodeInfo> {
        std::mem::take(&mut self.nodes)
    }

    /// Puts back what [`Cache::take_nodes`] took.
    pub(crate) fn restore_nodes(&mut self, nodes: Vec<NodeInfo>) {
        self.nodes = nodes;
    }

    /// Whether `name` is a known node.
    pub(crate) fn has_node(&self, name: &str) -> bool {
        self.index.contains_key(name)
    }

    /// Adds or updates a node from its object. Returns whether anything a
    /// filter reads changed (so waiting pods deserve another try).
    pub(crate) fn upsert_node(&mut self, node: &Value) -> bool {
        let Some(name) = node["metadata"]["name"].as_str() else {
            return false;
        };
        let fresh = NodeInfo {
            name: name.into(),
            labels: podinfo::labels(node),
            allocatable: podinfo::node_allocatable(node),
            requested: zero(),
            taints: podinfo::node_taints(node),
            unschedulable: podinfo::node_unschedulable(node),
            ready: podinfo::node_ready(node),
            used_host_ports: Vec::new(),
            pods: Vec::new(),
        };
        match self.index.get(name) {
            Some(&i) => {
                let current = &mut self.nodes[i];
                let changed = current.labels != fresh.labels
                    || current.allocatable != fresh.allocatable
                    || current.taints != fresh.taints
                    || current.unschedulable != fresh.unschedulable
                    || current.ready != fresh.ready;
                current.labels = fresh.labels;
                current.allocatable = fresh.allocatable;
                current.taints = fresh.taints;
                current.unschedulable = fresh.unschedulable;
                current.ready = fresh.ready;
                changed
            }
            None => {
                self.index.insert(name.into(), self.nodes.len());
                self.nodes.push(fresh);
                self.refresh(name);
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

    /// Counts pod `key` as `placement` (replacing an earlier placement).
    pub(crate) fn place(&mut self, key: &str, placement: Placement) {
        let node = placement.node.clone();
        if let Some(old) = self.pods.insert(key.into(), placement) {
            if old.node != node {
                self.unlink(key, &old.node);
                self.refresh(&old.node);
            } else {
                // Same node: the entry is already linked.
                self.refresh(&node);
                return;
            }
        }
        self.by_node
            .entry(node.clone())
            .or_default()
            .push(key.into());
        self.refresh(&node);
    }

    /// Stops counting pod `key`. Returns its placement, if it had one.
    pub(crate) fn unplace(&mut self, key: &str) -> Option<Placement> {
        let old = self.pods.remove(key)?;
        self.unlink(key, &old.node);
        self.refresh(&old.node);
        Some(old)
    }

    fn unlink(&mut self, key: &str, node: &str) {
        if let Some(keys) = self.by_node.get_mut(node) {
            keys.retain(|k| k != key);
            if keys.is_empty() {
                self.by_node.remove(node);
            }
        }
    }

    /// Recomputes what is placed on `node` from its pods.
    fn refresh(&mut self, node: &str) {
        let Some(&i) = self.index.get(node) else {
            return;
        };
        let mut requested = zero();
        let mut ports = Vec::new();
        let mut placed = Vec::new();
        for key in self.by_node.get(node).into_iter().flatten() {
            if let Some(p) = self.pods.get(key) {
                requested.milli_cpu = requested.milli_cpu.saturating_add(p.requests.milli_cpu);
                requested.memory_bytes = requested
                    .memory_bytes
                    .saturating_add(p.requests.memory_bytes);
                requested.pods = requested.pods.saturating_add(p.requests.pods);
                ports.extend_from_slice(&p.host_ports);
                placed.push(p.placed.clone());
            }
        }
        ports.sort_unstable();
        ports.dedup();
        let info = &mut self.nodes[i];
        info.requested = requested;
        info.used_host_ports = ports;
        info.pods = placed;
    }
}

fn zero() -> Resources {
    Resources {
        milli_cpu: 0,
        memory_bytes: 0,
        pods: 0,
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

    #[test]
    fn pods_count_on_their_node_even_if_it_appears_later() {
        let mut cache = Cache::default();
        cache.place("default/a", Placement::of(&pod("a", "1"), "n1", false));
        assert!(!cache.has_node("n1"));
        assert!(cache.upsert_node(&node("n1")));
        let nodes = cache.take_nodes();
        assert_eq!(nodes[0].requested.milli_cpu, 1000);
        assert_eq!(nodes[0].requested.pods, 1);
        assert_eq!(nodes[0].used_host_ports, vec![80]);
        cache.restore_nodes(nodes);

        cache.place("default/b", Placement::of(&pod("b", "500m"), "n1", true));
        cache.place("default/b", Placement::of(&pod("b", "500m"), "n1", false));
        let nodes = cache.take_nodes();
        assert_eq!(nodes[0].requested.milli_cpu, 1500);
        assert_eq!(nodes[0].pods.len(), 2);
        cache.restore_nodes(nodes);

        cache.unplace("default/a");
        let nodes = cache.take_nodes();
        assert_eq!(nodes[0].requested.milli_cpu, 500);
        assert_eq!(nodes[0].pods.len(), 1);
        cache.restore_nodes(nodes);
    }

    #[test]
    fn node_updates_report_relevant_changes_and_deletes_keep_the_index() {
        let mut cache = Cache::default();
        for n in ["n1", "n2", "n3"] {
            cache.upsert_node(&node(n));
        }
        assert!(!cache.upsert_node(&node("n2")), "same node, no change");
        let mut cordoned = node("n2");
        cordoned["spec"] = json!({"unschedulable": true});
        assert!(cache.upsert_node(&cordoned));
        cache.delete_node("n1");
        assert!(!cache.has_node("n1"));
        assert!(cache.has_node("n3"));
        cache.place("default/x", Placement::of(&pod("x", "1"), "n3", false));
        let nodes = cache.take_nodes();
        let n3 = nodes
            .iter()
            .find(|n| n.name == "n3")
            .map(|n| n.requested.milli_cpu);
        assert_eq!(n3, Some(1000));
        assert_eq!(nodes.len(), 2);
        cache.restore_nodes(nodes);
    }
}
