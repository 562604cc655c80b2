//! Inter-pod affinity (InterPodAffinity): required terms as a filter,
//! preferred terms as a score. Both look at the pods on every node, not
//! only the feasible ones, because a domain (a zone) is shared by nodes
//! that may fail other filters.

use std::collections::BTreeMap;

use super::filter::{label_selector_matches, reasons};
use super::types::{Label, NodeInfo, PlacedPod, PodAffinityTerm, PodInfo, label};

/// A topology domain: a topology key and a node's value for it.
type Domain<'a> = (&'a str, &'a str);

/// Whether `term` (from `pod`'s spec) selects a pod in `namespace` with
/// `labels`: its namespaces (empty: the incoming pod's) and its selector.
pub fn term_selects(
    term: &PodAffinityTerm,
    pod: &PodInfo,
    namespace: &str,
    labels: &[Label],
) -> bool {
    let in_namespace = if term.namespaces.is_empty() {
        namespace == pod.namespace
    } else {
        term.namespaces.iter().any(|n| n == namespace)
    };
    in_namespace && label_selector_matches(&term.selector, labels)
}

fn selects_placed(term: &PodAffinityTerm, pod: &PodInfo, placed: &PlacedPod) -> bool {
    term_selects(term, pod, &placed.namespace, &placed.labels)
}

/// The incoming pod's required affinity and anti-affinity, counted once
/// per pod over every node, then checked per node.
#[derive(Debug, Default)]
pub struct RequiredAffinity<'a> {
    affinity: &'a [PodAffinityTerm],
    anti_affinity: &'a [PodAffinityTerm],
    /// Pods matching all affinity terms, per domain of each term.
    affinity_counts: BTreeMap<Domain<'a>, u32>,
    /// Pods matching each anti-affinity term, per domain of that term.
    anti_affinity_counts: BTreeMap<Domain<'a>, u32>,
    /// The pod matches its own affinity terms: the first of a group that
    /// wants to be together may go anywhere rather than wait forever.
    self_affine: bool,
}

impl<'a> RequiredAffinity<'a> {
    /// Counts the pods on `nodes` that `pod`'s required terms select.
    pub fn new(pod: &'a PodInfo, nodes: &'a [NodeInfo]) -> Self {
        let affinity = pod.required_pod_affinity.as_slice();
        let anti_affinity = pod.required_pod_anti_affinity.as_slice();
        let mut counts = RequiredAffinity {
            affinity,
            anti_affinity,
            self_affine: affinity
                .iter()
                .all(|t| term_selects(t, pod, &pod.namespace, &pod.labels)),
            ..Default::default()
        };
        if affinity.is_empty() && anti_affinity.is_empty() {
            return counts;
        }
        for node in nodes {
            for placed in &node.pods {
                if !affinity.is_empty() && affinity.iter().all(|t| selects_placed(t, pod, placed)) {
                    for term in affinity {
                        if let Some(value) = label(&node.labels, &term.topology_key) {
                            *counts
                                .affinity_counts
                                .entry((term.topology_key.as_str(), value))
                                .or_default() += 1;
                        }
                    }
                }
                for term in anti_affinity {
                    if selects_placed(term, pod, placed)
                        && let Some(value) = label(&node.labels, &term.topology_key)
                    {
                        *counts
                            .anti_affinity_counts
                            .entry((term.topology_key.as_str(), value))
                            .or_default() += 1;
                    }
                }
            }
        }
        counts
    }

    /// Whether `node` satisfies the pod's required terms (Kubernetes'
    /// `satisfyPodAffinity` and `satisfyPodAntiAffinity`).
    pub fn check(&self, node: &NodeInfo) -> Result<(), &'static str> {
        let mut pods_exist = true;
        for term in self.affinity {
            // A node without the topology label is in no domain at all.
            let Some(value) = label(&node.labels, &term.topology_key) else {
                return Err(reasons::POD_AFFINITY);
            };
            let count = self
                .affinity_counts
                .get(&(term.topology_key.as_str(), value))
                .copied()
                .unwrap_or(0);
            if count == 0 {
                pods_exist = false;
            }
        }
        // With no matching pod anywhere, a pod that matches its own terms
        // starts the group instead of waiting for itself forever.
        let starts_group = self.affinity_counts.is_empty() && self.self_affine;
        if !(pods_exist || starts_group) {
            return Err(reasons::POD_AFFINITY);
        }
        for term in self.anti_affinity {
            if let Some(value) = label(&node.labels, &term.topology_key)
                && self
                    .anti_affinity_counts
                    .get(&(term.topology_key.as_str(), value))
                    .is_some_and(|c| *c > 0)
            {
                return Err(reasons::POD_ANTI_AFFINITY);
            }
        }
        Ok(())
    }
}

/// The raw preferred inter-pod affinity score of each of `feasible`: for
/// every preferred term, its weight times the pods it selects in the
/// node's domain, added for affinity and subtracted for anti-affinity.
pub fn preferred_raw(pod: &PodInfo, feasible: &[&NodeInfo], all: &[NodeInfo]) -> Vec<i64> {
    let terms = pod
        .preferred_pod_affinity
        .iter()
        .map(|w| (i64::from(w.weight), &w.term))
        .chain(
            pod.preferred_pod_anti_affinity
                .iter()
                .map(|w| (-i64::from(w.weight), &w.term)),
        )
        .filter(|(weight, _)| *weight != 0)
        .collect::<Vec<_>>();
    if terms.is_empty() {
        return vec![0; feasible.len()];
    }
    let mut by_domain: BTreeMap<Domain<'_>, i64> = BTreeMap::new();
    for node in all {
        for placed in &node.pods {
            for (weight, term) in &terms {
                if let Some(value) = label(&node.labels, &term.topology_key)
                    && selects_placed(term, pod, placed)
                {
                    *by_domain
                        .entry((term.topology_key.as_str(), value))
                        .or_default() += weight;
                }
            }
        }
    }
    // Each domain a node is in counts once, however many terms share its
    // topology key: the terms' weights are already summed per domain.
    let mut keys: Vec<&str> = terms.iter().map(|(_, t)| t.topology_key.as_str()).collect();
    keys.sort_unstable();
    keys.dedup();
    feasible
        .iter()
        .map(|node| {
            keys.iter()
                .filter_map(|k| {
                    let value = label(&node.labels, k)?;
                    by_domain.get(&(*k, value)).copied()
                })
                .sum()
        })
        .collect()
}
