//! The default scheduling algorithm, in plain Rust over plain structs: the
//! component wraps it, and the benchmark and tests call it natively.
//!
//! [`schedule`] filters nodes ([`filter`]), scores the feasible ones
//! ([`score`]) and binds to the best; ties go to one of the best nodes
//! picked by a hash of the pod's uid with each node's name, so equal pods
//! spread instead of piling onto the first node by name, yet the same pod
//! always gets the same answer, whatever the order of the nodes.
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
    let ties = feasible
        .iter()
        .zip(&totals)
        .filter(|(_, t)| **t == best)
        .map(|(n, _)| n.name.as_str());
    let chosen = if pod.uid.is_empty() {
        ties.min()
    } else {
        // Rendezvous hashing: the tie whose name hashes highest together
        // with the pod's uid. Any order of the nodes gives the same
        // answer, as sorting the ties' names and indexing them by the
        // uid did, but at a few integer operations per tie: in an even
        // cluster hundreds of nodes tie, and sorting their names was a
        // third of a decision in WebAssembly (byte-wise `memcmp`).
        let uid = fnv1a(pod.uid.as_bytes());
        ties.max_by_key(|name| (mix(uid ^ word_hash(name.as_bytes())), *name))
    };
    Decision::Bind(chosen.unwrap_or(&feasible[0].name).to_owned())
}

/// A fixed hash of `bytes` taken eight at a time (names are short, and a
/// byte at a time is what made comparing them slow).
fn word_hash(bytes: &[u8]) -> u64 {
    let mut chunks = bytes.chunks_exact(8);
    let mut h = bytes.len() as u64;
    for chunk in &mut chunks {
        let word = u64::from_le_bytes(chunk.try_into().unwrap_or_default());
        h = mix(h ^ word);
    }
    let mut last = [0u8; 8];
    last[..chunks.remainder().len()].copy_from_slice(chunks.remainder());
    mix(h ^ u64::from_le_bytes(last))
}

/// splitmix64's finalizer: every input bit moves every output bit, so
/// names that differ in one character still rank independently.
fn mix(mut z: u64) -> u64 {
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
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
