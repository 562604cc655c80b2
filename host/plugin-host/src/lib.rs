//! orchd's plugin host: runs policy plugins, WebAssembly components of the
//! worlds in `wit/` (package `orchd:plugin@0.1.0`), in a sandbox.
//!
//! * [`PluginEngine`]: the one shared wasmtime engine (component model,
//!   epoch interruption driven by a ticker thread), compiling components
//!   through an on-disk cache of precompiled artifacts keyed by digest;
//! * [`world`]: telling a component's world from its exports, rejecting
//!   anything else with a one-line reason;
//! * [`sandbox`]: per-instance limits (memory cap, call deadline) and a WASI
//!   context that grants nothing (no files, network, environment or stdio;
//!   output goes to the host log);
//! * [`supervisor`]: a failure poisons only that instance; the next call
//!   gets a fresh one, with exponential backoff while failures continue;
//! * [`scheduler`]: the host side of `world scheduler`, and [`runner`], the
//!   informers, node cache, queue and binding loop that feed it, with hot
//!   swap of the deciding plugin;
//! * [`manager`]: makes what runs match the `orchd.dev/v1` Plugin objects
//!   (load, warm, swap, roll back, report status and Events);
//! * [`node_policy`]: the host side of `world node-policy`, the node
//!   agent's lifecycle decisions, and the slot holding the revision in
//!   charge;
//! * [`leader`]: leader election of control-plane replicas, so the plugins
//!   run in one replica at a time.

pub mod access;
pub mod admission;
mod cache;
pub mod component;
pub mod controller;
pub mod engine;
pub mod events;
mod informer;
pub mod leader;
pub mod manager;
pub mod node_policy;
pub mod podinfo;
pub mod quantity;
pub mod reconciler;
pub mod reflector;
pub mod runner;
pub mod sandbox;
pub mod scheduler;
pub mod supervisor;
pub mod world;

use std::time::Duration;

pub use engine::{Compiled, PluginEngine};
pub use sandbox::{Limits, LogLevel, LogSink};
pub use scheduler::SchedulerPlugin;
pub use world::World;

/// Why loading or calling a plugin failed. Every plugin failure reaches
/// the caller as one of these; none panics the host.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum PluginError {
    /// The bytes are not a component of a known world, or do not link.
    #[error("{0}")]
    Invalid(String),
    /// A fresh instance could not be started.
    #[error("plugin {plugin} failed to start: {message}")]
    Instantiate {
        /// Plugin name.
        plugin: String,
        /// What went wrong.
        message: String,
    },
    /// A call ran past its deadline and was stopped.
    #[error("plugin {plugin} exceeded its {} ms deadline in {call}", deadline.as_millis())]
    Deadline {
        /// Plugin name.
        plugin: String,
        /// The exported function called.
        call: String,
        /// The deadline it missed.
        deadline: Duration,
    },
    /// The instance tried to grow its memory past the cap.
    #[error("plugin {plugin} ran out of memory in {call} (limit {} MiB)", limit_bytes >> 20)]
    OutOfMemory {
        /// Plugin name.
        plugin: String,
        /// The exported function called.
        call: String,
        /// The memory cap.
        limit_bytes: usize,
    },
    /// The instance trapped (a guest panic, `unreachable`, a bad access).
    #[error("plugin {plugin} trapped in {call}: {message}")]
    Trap {
        /// Plugin name.
        plugin: String,
        /// The exported function called.
        call: String,
        /// The trap and, when known, the guest's last stderr line.
        message: String,
    },
    /// The plugin keeps failing; it is not restarted before the delay ends.
    #[error(
        "plugin {plugin} is backing off after {failures} failures in a row (next start in {} ms; last error: {last})",
        retry_in.as_millis()
    )]
    BackingOff {
        /// Plugin name.
        plugin: String,
        /// Time left before the next start.
        retry_in: Duration,
        /// Failures in a row.
        failures: u32,
        /// The last failure.
        last: String,
    },
    /// The host itself failed.
    #[error("plugin host: {0}")]
    Internal(String),
}
