//! The default scheduling algorithm, in plain Rust over plain structs: the
//! component wraps it, and the benchmark and tests call it natively.
//!
//! [`schedule`] filters nodes ([`filter`]), scores the feasible ones
//! ([`score`]) and binds to the best; ties go to one of the best nodes
//! picked by a hash of the pod's uid, so equal pods spread instead of
//! piling onto the first node by name, yet the same pod always gets the
//! same answer.
//!
//! Like kube-scheduler, it stops filtering once it has found enough
//! feasible nodes in a large cluster (`percentageOfNodesToScore`, adaptive
//! by default: 10% of 5,000 nodes, never fewer than 100), starting at a
//! node picked by the pod's uid so that successive pods look at different
//! parts of the cluster. A pod that fits nowhere still gets a reason for
//! every node.

pub mod affinity;
pub mod filter;
pub mod score;
mod types;

pub use types::*;

use std::borrow::Cow;

use affinity::RequiredAffinity;
use score::Weights;

/// How the algorithm runs.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Config {
    /// How much each score counts.
    pub weights: Weights,
    /// Stop filtering once this percentage of the nodes is feasible; 0
    /// picks it from the cluster size as kube-scheduler does, 100 always
    /// looks at every node.
    pub percentage_of_nodes_to_score: u32,
}

impl Config {
    /// kube-scheduler's defaults.
    pub const KUBERNETES: Config = Config {
        weights: Weights::KUBERNETES,
        percentage_of_nodes_to_score: 0,
    };
}

impl Config {
    /// The bin-packing profile ([`Weights::BIN_PACKING`]).
    pub const BIN_PACKING: Config = Config {
        weights: Weights::BIN_PACKING,
        percentage_of_nodes_to_score: 0,
    };
}

impl Default for Config {
    fn default() -> Self {
        Config::KUBERNETES
    }
}

/// Clusters smaller than this are always searched whole.
pub const MIN_FEASIBLE_NODES_TO_FIND: usize = 100;

/// How many feasible nodes are enough among `total`, as kube-scheduler's
/// `numFeasibleNodesToFind` computes it.
pub fn feasible_nodes_to_find(total: usize, percentage: u32) -> usize {
    if total < MIN_FEASIBLE_NODES_TO_FIND || percentage >= 100 {
        return total;
    }
    let percentage = if percentage == 0 {
        // 50% for small clusters, shrinking by 1% per 125 nodes, at least 5%.
        50usize.saturating_sub(total / 125).max(5)
    } else {
        percentage as usize
    };
    (total * percentage / 100).max(MIN_FEASIBLE_NODES_TO_FIND)
}

/// Decides where `pod` goes among `nodes` with kube-scheduler's defaults.
pub fn schedule(pod: &PodInfo, nodes: &[NodeInfo]) -> Decision {
    schedule_with(pod, nodes, &Config::KUBERNETES)
}

/// Decides where `pod` goes among `nodes`.
pub fn schedule_with(pod: &PodInfo, nodes: &[NodeInfo], config: &Config) -> Decision {
    let required = RequiredAffinity::new(pod, nodes);
    let enough = feasible_nodes_to_find(nodes.len(), config.percentage_of_nodes_to_score);
    let start = if nodes.is_empty() {
        0
    } else {
        (fnv1a(pod.uid.as_bytes()) % nodes.len() as u64) as usize
    };
    // Reasons are kept only until a feasible node shows up: most pods fit
    // somewhere, and building thousands of strings for nothing is the
    // slowest part of a large cluster.
    let mut feasible: Vec<&NodeInfo> = Vec::new();
    let mut reasons: Vec<(&str, Cow<'static, str>)> = Vec::new();
    // Where the reasons of the nodes before `start` begin (a node may give
    // several reasons).
    let mut wrapped_at = None;
    for (i, node) in nodes[start..].iter().chain(&nodes[..start]).enumerate() {
        if i == nodes.len() - start {
            wrapped_at = Some(reasons.len());
        }
        match filter::filter(pod, node, &required) {
            Ok(()) => {
                feasible.push(node);
                if feasible.len() >= enough {
                    break;
                }
            }
            // NodeResourcesFit names every resource the node is short of.
            Err(reason) if feasible.is_empty() && filter::is_resource_reason(&reason) => reasons
                .extend(
                    filter::insufficient_resources(pod, node)
                        .map(|r| (node.name.as_str(), Cow::Borrowed(r))),
                ),
            Err(reason) if feasible.is_empty() => reasons.push((&node.name, reason)),
            Err(_) => {}
        }
    }
    match feasible.len() {
        0 => {
            // Reported in the caller's node order, not the search order.
            let mut rejections: Vec<Rejection> = reasons
                .into_iter()
                .map(|(node, reason)| Rejection {
                    node: node.to_owned(),
                    reason: reason.into_owned(),
                })
                .collect();
            let wrapped_at = wrapped_at.unwrap_or(rejections.len());
            rejections.rotate_left(wrapped_at);
            return Decision::Unschedulable(rejections);
        }
        1 => return Decision::Bind(feasible[0].name.clone()),
        _ => {}
    }
    let weights = &config.weights;
    let totals = score::total(pod, &feasible, nodes, weights);
    let best = totals.iter().copied().max().unwrap_or(0);
    let mut ties: Vec<&str> = feasible
        .iter()
        .zip(&totals)
        .filter(|(_, t)| **t == best)
        .map(|(n, _)| n.name.as_str())
        .collect();
    ties.sort_unstable();
    let pick = if pod.uid.is_empty() {
        0
    } else {
        (fnv1a(pod.uid.as_bytes()) % ties.len() as u64) as usize
    };
    Decision::Bind(ties[pick].to_owned())
}

/// FNV-1a: a fixed hash, identical natively and in Wasm and across runs,
/// unlike std's randomly seeded one.
fn fnv1a(bytes: &[u8]) -> u64 {
    bytes.iter().fold(0xcbf2_9ce4_8422_2325, |h, b| {
        (h ^ u64::from(*b)).wrapping_mul(0x0000_0100_0000_01b3)
    })
}

#[cfg(test)]
mod tests;
