//! Write orchd plugins in Rust.
//!
//! An orchd plugin is a WebAssembly component implementing one world of the
//! `orchd:plugin@0.1.0` contract (`wit/plugin.wit`). This crate wraps the
//! bindings wit-bindgen generates from that contract so that a plugin is a
//! type, one trait impl and one macro call:
//!
//! ```ignore
//! use orchd_sdk::scheduler::{Decision, NodeInfo, PodInfo, Scheduler};
//!
//! struct FirstFit;
//!
//! impl Scheduler for FirstFit {
//!     const NAME: &'static str = "first-fit";
//!     fn schedule(pod: &PodInfo, nodes: &[NodeInfo]) -> Decision {
//!         match nodes.iter().find(|n| pod.requests.fits_in(&n.free())) {
//!             Some(n) => Decision::Bind(n.name.clone()),
//!             None => Decision::Unschedulable(Vec::new()),
//!         }
//!     }
//! }
//!
//! orchd_sdk::export_scheduler!(FirstFit);
//! ```
//!
//! Enable the cargo feature of the world the plugin implements
//! (`features = ["scheduler"]`): each world's bindings are only compiled in
//! with it, so a component imports exactly its own world.
//!
//! | world (feature) | trait | macro | host calls it may make |
//! |---|---|---|---|
//! | `scheduler` | `scheduler::Scheduler` | `export_scheduler!` | `log` |
//! | `controller` | `controller::Controller` | `export_controller!` | `log`, `events`, `objects` |
//! | `admission` | `admission::Admission` | `export_admission!` | `log` |
//! | `node-policy` | `node_policy::NodePolicy` | `export_node_policy!` | `log`, `runtime` |
//!
//! Build with `cargo build --release --target wasm32-wasip2`: the `.wasm`
//! cargo writes is already a component. The types and helpers also compile
//! natively so plugin logic can be unit-tested with `cargo test`; host calls
//! (`log`, `events`, `objects`) exist only inside a component and panic if
//! called natively.
//!
//! Pure helpers for any world: [`meta`] (owner references, label
//! selectors, timestamps), [`pods`] (active, ready, available),
//! [`quantity`] and [`revision`] (pod template hashes).

#[cfg(feature = "admission")]
pub mod admission;
#[doc(hidden)]
pub mod bindings;
#[cfg(feature = "controller")]
pub mod controller;
#[cfg(feature = "controller")]
pub mod events;
pub mod log;
pub mod meta;
#[cfg(feature = "node-policy")]
pub mod node_policy;
#[cfg(feature = "controller")]
pub mod objects;
pub mod pods;
pub mod quantity;
pub mod revision;
#[cfg(feature = "scheduler")]
pub mod scheduler;

/// Re-exported so plugins handle JSON objects without their own dependency.
pub use serde_json;

/// The names most plugins use.
pub mod prelude {
    #[cfg(feature = "admission")]
    pub use crate::admission::{Admission, AdmissionRequest, AdmissionResponse, Operation};
    #[cfg(feature = "controller")]
    pub use crate::controller::{BoxError, Controller, ControllerSpec, ReconcileResult};
    #[cfg(feature = "node-policy")]
    pub use crate::node_policy::{
        AfterExit, ContainerExit, ContainerState, ContainerView, Eviction, NodePolicy,
        PodCondition, PodPhase, PodVerdict, PodView, PressureVerdict, RestartPlan, RestartPolicy,
        Signal,
    };
    #[cfg(feature = "controller")]
    pub use crate::objects::{Error, ObjectRef};
    #[cfg(feature = "scheduler")]
    pub use crate::scheduler::{
        Decision, Label, NodeInfo, PodInfo, Rejection, Resources, Scheduler, Taint, TaintEffect,
    };
    pub use serde_json::{Value, json};
}

// Without its world's feature, an export macro explains itself instead of
// failing with "cannot find macro".

/// Exports a scheduler: needs orchd-sdk's `scheduler` feature.
#[cfg(not(feature = "scheduler"))]
#[macro_export]
macro_rules! export_scheduler {
    ($($t:tt)*) => {
        ::core::compile_error!("export_scheduler! needs orchd-sdk's `scheduler` feature: orchd-sdk = { ..., features = [\"scheduler\"] }");
    };
}

/// Exports a controller: needs orchd-sdk's `controller` feature.
#[cfg(not(feature = "controller"))]
#[macro_export]
macro_rules! export_controller {
    ($($t:tt)*) => {
        ::core::compile_error!("export_controller! needs orchd-sdk's `controller` feature: orchd-sdk = { ..., features = [\"controller\"] }");
    };
}

/// Exports an admission policy: needs orchd-sdk's `admission` feature.
#[cfg(not(feature = "admission"))]
#[macro_export]
macro_rules! export_admission {
    ($($t:tt)*) => {
        ::core::compile_error!("export_admission! needs orchd-sdk's `admission` feature: orchd-sdk = { ..., features = [\"admission\"] }");
    };
}

/// Exports a node policy: needs orchd-sdk's `node-policy` feature.
#[cfg(not(feature = "node-policy"))]
#[macro_export]
macro_rules! export_node_policy {
    ($($t:tt)*) => {
        ::core::compile_error!("export_node_policy! needs orchd-sdk's `node-policy` feature: orchd-sdk = { ..., features = [\"node-policy\"] }");
    };
}
