//! Scores: each plugin gives every feasible node 0–100, and the node's
//! total is the weighted sum, with kube-scheduler's default weights. The
//! formulas are Kubernetes' own, so placements match what users expect.

use super::affinity;
use super::filter::{node_term_matches, tolerated};
use super::types::{NodeInfo, PodInfo, Resources, TaintEffect, label};

/// The highest score a plugin gives a node.
pub const MAX_SCORE: i64 = 100;

/// The zone label spreading balances across.
pub const ZONE_LABEL: &str = "topology.kubernetes.io/zone";

/// CPU Kubernetes assumes for a pod without a CPU request when scoring
/// (`DefaultMilliCPURequest`), so such pods still spread.
pub const DEFAULT_MILLI_CPU: u64 = 100;
/// Memory assumed for a pod without a memory request
/// (`DefaultMemoryRequest`, 200 MiB).
pub const DEFAULT_MEMORY_BYTES: u64 = 200 * 1024 * 1024;

/// How much each score counts in a node's total.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Weights {
    /// NodeResourcesFit, LeastAllocated strategy.
    pub least_allocated: i64,
    /// NodeResourcesFit, MostAllocated strategy (bin packing).
    pub most_allocated: i64,
    /// NodeResourcesBalancedAllocation.
    pub balanced_allocation: i64,
    /// Spreading pods of one owner across nodes and zones.
    pub spread: i64,
    /// Preferred node affinity.
    pub node_affinity: i64,
    /// Preferred inter-pod affinity and anti-affinity.
    pub pod_affinity: i64,
    /// PreferNoSchedule taints.
    pub taint_toleration: i64,
}

impl Weights {
    /// kube-scheduler's default profile: 1 for the resource scores, 2 for
    /// topology spread and the affinities, 3 for taints.
    pub const KUBERNETES: Weights = Weights {
        least_allocated: 1,
        most_allocated: 0,
        balanced_allocation: 1,
        spread: 2,
        node_affinity: 2,
        pod_affinity: 2,
        taint_toleration: 3,
    };

    /// Bin packing, as kube-scheduler's NodeResourcesFit with the
    /// MostAllocated strategy: fill the busiest node that fits first and
    /// do not spread, so whole nodes stay free. Affinities and taints
    /// count as in the default profile.
    pub const BIN_PACKING: Weights = Weights {
        least_allocated: 0,
        most_allocated: 2,
        balanced_allocation: 1,
        spread: 0,
        node_affinity: 2,
        pod_affinity: 2,
        taint_toleration: 3,
    };
}

impl Default for Weights {
    fn default() -> Self {
        Weights::KUBERNETES
    }
}

/// The weighted total of every score, per node of `feasible`; `all` is
/// every node (inter-pod affinity counts pods on nodes that did not pass).
pub fn total(
    pod: &PodInfo,
    feasible: &[&NodeInfo],
    all: &[NodeInfo],
    weights: &Weights,
) -> Vec<i64> {
    let mut totals: Vec<i64> = feasible
        .iter()
        .map(|n| {
            // Only the scores that count: each is work per feasible node.
            let weighted = |weight: i64, score: fn(&PodInfo, &NodeInfo) -> i64| {
                if weight == 0 {
                    0
                } else {
                    weight * score(pod, n)
                }
            };
            weighted(weights.least_allocated, least_allocated)
                + weighted(weights.most_allocated, most_allocated)
                + weighted(weights.balanced_allocation, balanced_allocation)
        })
        .collect();
    let mut add = |weight: i64, scores: Vec<i64>| {
        if weight != 0 {
            for (t, s) in totals.iter_mut().zip(scores) {
                *t += weight * s;
            }
        }
    };
    add(weights.spread, spread(pod, feasible));
    add(weights.node_affinity, node_affinity(pod, feasible));
    add(weights.pod_affinity, pod_affinity(pod, feasible, all));
    add(weights.taint_toleration, taint_toleration(pod, feasible));
    totals
}

/// What the pod counts as for the resource scores: its requests, with
/// Kubernetes' defaults standing in for a missing CPU or memory request.
fn non_zero(requests: &Resources) -> (u64, u64) {
    let cpu = if requests.milli_cpu == 0 {
        DEFAULT_MILLI_CPU
    } else {
        requests.milli_cpu
    };
    let memory = if requests.memory_bytes == 0 {
        DEFAULT_MEMORY_BYTES
    } else {
        requests.memory_bytes
    };
    (cpu, memory)
}

/// `part * MAX_SCORE / whole` for `part <= whole`, `whole > 0`, exactly:
/// in u64 whenever it fits, as it does for any real node (a u128 division
/// is a library call, several times slower, in WebAssembly above all).
/// The bound is compared rather than `checked_mul` used: WebAssembly has
/// no high-half multiply, so the overflow check alone was a call to
/// `__multi3` per score.
pub(crate) fn share(part: u64, whole: u64) -> i64 {
    const SCALE: u64 = MAX_SCORE as u64;
    let score = if part <= u64::MAX / SCALE {
        part * SCALE / whole
    } else {
        (u128::from(part) * u128::from(SCALE) / u128::from(whole)) as u64
    };
    score as i64
}

/// LeastAllocated: the share of CPU and memory left free once the pod is
/// placed, averaged; favours emptier nodes, which spreads load.
pub fn least_allocated(pod: &PodInfo, node: &NodeInfo) -> i64 {
    let (cpu, memory) = non_zero(&pod.requests);
    let free_share = |requested: u64, capacity: u64| -> i64 {
        if capacity == 0 || requested > capacity {
            return 0;
        }
        share(capacity - requested, capacity)
    };
    let cpu_score = free_share(
        node.requested.milli_cpu.saturating_add(cpu),
        node.allocatable.milli_cpu,
    );
    let memory_score = free_share(
        node.requested.memory_bytes.saturating_add(memory),
        node.allocatable.memory_bytes,
    );
    (cpu_score + memory_score) / 2
}

/// MostAllocated: the share of CPU and memory in use once the pod is
/// placed, averaged; favours fuller nodes, which packs load.
pub fn most_allocated(pod: &PodInfo, node: &NodeInfo) -> i64 {
    let (cpu, memory) = non_zero(&pod.requests);
    let used_share = |requested: u64, capacity: u64| -> i64 {
        if capacity == 0 || requested > capacity {
            return 0;
        }
        share(requested, capacity)
    };
    let cpu_score = used_share(
        node.requested.milli_cpu.saturating_add(cpu),
        node.allocatable.milli_cpu,
    );
    let memory_score = used_share(
        node.requested.memory_bytes.saturating_add(memory),
        node.allocatable.memory_bytes,
    );
    (cpu_score + memory_score) / 2
}

/// BalancedAllocation: 100 minus the spread between the CPU and memory
/// fractions in use once the pod is placed; favours nodes whose resources
/// are used evenly, so neither runs out while the other idles. A pod with
/// no requests changes nothing and scores 0 everywhere.
pub fn balanced_allocation(pod: &PodInfo, node: &NodeInfo) -> i64 {
    let want = &pod.requests;
    if want.milli_cpu == 0 && want.memory_bytes == 0 {
        return 0;
    }
    let fraction = |requested: u64, capacity: u64| -> Option<f64> {
        // Not `f64::min`: its NaN rules make it a call to `fmin` in
        // WebAssembly; the ratio of two integers is never NaN.
        (capacity != 0).then(|| {
            let used = requested as f64 / capacity as f64;
            if used > 1.0 { 1.0 } else { used }
        })
    };
    let cpu = fraction(
        node.requested.milli_cpu.saturating_add(want.milli_cpu),
        node.allocatable.milli_cpu,
    );
    let memory = fraction(
        node.requested
            .memory_bytes
            .saturating_add(want.memory_bytes),
        node.allocatable.memory_bytes,
    );
    let std_dev = match (cpu, memory) {
        (Some(c), Some(m)) => ((c - m) / 2.0).abs(),
        _ => 0.0,
    };
    ((1.0 - std_dev) * MAX_SCORE as f64) as i64
}

/// Spreading (SelectorSpread): fewer pods of the same owner on the node
/// and in its zone score higher; the zone counts twice as much as the
/// node when nodes have zones. A pod without an owner scores 0 everywhere.
pub fn spread(pod: &PodInfo, feasible: &[&NodeInfo]) -> Vec<i64> {
    let Some(owner) = pod.owner_uid.as_deref() else {
        return vec![0; feasible.len()];
    };
    let per_node: Vec<i64> = feasible
        .iter()
        .map(|n| {
            n.pods
                .iter()
                .filter(|p| p.owner_uid.as_deref() == Some(owner) && p.namespace == pod.namespace)
                .count() as i64
        })
        .collect();
    let mut per_zone: std::collections::BTreeMap<&str, i64> = Default::default();
    for (node, count) in feasible.iter().zip(&per_node) {
        if let Some(zone) = label(&node.labels, ZONE_LABEL) {
            *per_zone.entry(zone).or_default() += count;
        }
    }
    let max_node = per_node.iter().copied().max().unwrap_or(0);
    let max_zone = per_zone.values().copied().max().unwrap_or(0);
    feasible
        .iter()
        .zip(&per_node)
        .map(|(node, count)| {
            let node_score = if max_node > 0 {
                MAX_SCORE * (max_node - count) / max_node
            } else {
                MAX_SCORE
            };
            match label(&node.labels, ZONE_LABEL) {
                Some(zone) if !per_zone.is_empty() => {
                    let zone_score = if max_zone > 0 {
                        MAX_SCORE * (max_zone - per_zone[zone]) / max_zone
                    } else {
                        MAX_SCORE
                    };
                    (node_score + 2 * zone_score) / 3
                }
                _ => node_score,
            }
        })
        .collect()
}

/// Preferred node affinity: the summed weights of the preferred terms a
/// node matches, scaled so the best node scores 100.
pub fn node_affinity(pod: &PodInfo, feasible: &[&NodeInfo]) -> Vec<i64> {
    if pod.preferred_node_affinity.is_empty() {
        return vec![0; feasible.len()];
    }
    let raw = feasible
        .iter()
        .map(|n| {
            pod.preferred_node_affinity
                .iter()
                .filter(|w| node_term_matches(&w.term, n))
                .map(|w| i64::from(w.weight))
                .sum()
        })
        .collect();
    normalize(raw, false)
}

/// Preferred inter-pod affinity and anti-affinity, scaled between the
/// worst (0) and the best (100) feasible node.
pub fn pod_affinity(pod: &PodInfo, feasible: &[&NodeInfo], all: &[NodeInfo]) -> Vec<i64> {
    let raw = affinity::preferred_raw(pod, feasible, all);
    let (Some(min), Some(max)) = (raw.iter().min().copied(), raw.iter().max().copied()) else {
        return raw;
    };
    raw.into_iter()
        .map(|s| {
            if max > min {
                MAX_SCORE * (s - min) / (max - min)
            } else {
                0
            }
        })
        .collect()
}

/// TaintToleration: fewer untolerated `PreferNoSchedule` taints score
/// higher; the node with the most scores 0.
pub fn taint_toleration(pod: &PodInfo, feasible: &[&NodeInfo]) -> Vec<i64> {
    let raw = feasible
        .iter()
        .map(|n| {
            n.taints
                .iter()
                .filter(|t| t.effect == TaintEffect::PreferNoSchedule)
                .filter(|t| !tolerated(&pod.tolerations, t))
                .count() as i64
        })
        .collect();
    normalize(raw, true)
}

/// Kubernetes' `DefaultNormalizeScore`: scales so the highest raw score
/// becomes 100 (or, reversed, 0); all zeros become 0 (reversed: 100).
fn normalize(raw: Vec<i64>, reverse: bool) -> Vec<i64> {
    let max = raw.iter().copied().max().unwrap_or(0);
    raw.into_iter()
        .map(|s| {
            let scaled = if max > 0 { MAX_SCORE * s / max } else { 0 };
            if reverse { MAX_SCORE - scaled } else { scaled }
        })
        .collect()
}
