//! The records the algorithm works on: the SDK's, generated from
//! `interface scheduling-types` (`wit/plugin.wit`), plus the SDK's
//! [`NodeInfo`], a node with what is placed on it. The SDK's types build
//! natively too, so the benchmark and the tests run the algorithm with no
//! WebAssembly at all, on exactly the records the component decides over.

pub use orchd_sdk::scheduler::{
    Decision, Label, NodeInfo, PlacedPod, PodAffinityTerm, PodInfo, Rejection, Resources,
    SelectorOperator, SelectorRequirement, SelectorTerm, Taint, TaintEffect, Toleration,
    TolerationOperator, WeightedPodAffinityTerm, WeightedTerm,
};

/// The value of label `key` in `labels`.
pub(crate) fn label<'a>(labels: &'a [Label], key: &str) -> Option<&'a str> {
    labels
        .iter()
        .find(|l| l.key == key)
        .map(|l| l.value.as_str())
}
