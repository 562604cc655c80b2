//! orchd's default scheduler.
//!
//! Built for `wasm32-wasip2` this crate is a component of
//! `world scheduler` serving `spec.schedulerName: default-scheduler`; built
//! natively it is the same [`algorithm`] as a library, the baseline the
//! benchmark runs beside the component.
//!
//! Filters, in kube-scheduler's order and words: cordoned nodes, the
//! requested `spec.nodeName`, taints and tolerations (a not-ready node
//! counts as tainted `node.kubernetes.io/not-ready`), `nodeSelector` and
//! required node affinity, host ports, CPU / memory / pod count, required
//! pod affinity and anti-affinity. Scores, weighted as kube-scheduler's
//! default profile: least allocated, balanced allocation, spreading one
//! owner's pods across nodes and zones, preferred node affinity,
//! preferred pod affinity and anti-affinity, `PreferNoSchedule` taints.

pub mod algorithm;

#[cfg(target_arch = "wasm32")]
mod component;

/// The `spec.schedulerName` the component serves.
pub const SCHEDULER_NAME: &str = "default-scheduler";

/// The scoring profile the component is built with: kube-scheduler's
/// default (spreading), or with the `bin-packing` feature, MostAllocated
/// (packing). Both serve `default-scheduler`, so either can replace the
/// other live with `orchd plugin install`.
#[cfg(not(feature = "bin-packing"))]
pub const PROFILE: algorithm::Config = algorithm::Config::KUBERNETES;
/// The scoring profile the component is built with (see above).
#[cfg(feature = "bin-packing")]
pub const PROFILE: algorithm::Config = algorithm::Config::BIN_PACKING;
