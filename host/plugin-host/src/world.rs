//! Which world of `orchd:plugin@0.1.0` a component implements, told from
//! its exports, and a first check that the bytes are a component at all.

use std::fmt;

use wasmtime::Engine;
use wasmtime::component::Component;
use wasmtime::component::types::ComponentItem;

use crate::PluginError;

/// A plugin role: one world of the WIT contract.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum World {
    /// Picks nodes for pods (`world scheduler`).
    Scheduler,
    /// Reconciles objects (`world controller`).
    Controller,
    /// Reviews API writes (`world admission`).
    Admission,
    /// Decides a node's pod lifecycle (`world node-policy`).
    NodePolicy,
}

impl World {
    /// Every known world, in the order they are tried.
    pub const ALL: [World; 4] = [
        World::Scheduler,
        World::Controller,
        World::Admission,
        World::NodePolicy,
    ];

    /// The world's name in the WIT package.
    pub fn name(self) -> &'static str {
        match self {
            World::Scheduler => "scheduler",
            World::Controller => "controller",
            World::Admission => "admission",
            World::NodePolicy => "node-policy",
        }
    }

    /// The functions a component of this world exports.
    pub fn exports(self) -> &'static [&'static str] {
        match self {
            World::Scheduler => &["scheduler-name", "update", "schedule"],
            World::Controller => &["setup", "reconcile"],
            World::Admission => &["review"],
            World::NodePolicy => &[
                "setup",
                "after-exit",
                "pod-status",
                "pod-cgroup",
                "check-pressure",
            ],
        }
    }
}

impl fmt::Display for World {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// Rejects bytes that are not a binary WebAssembly component before the
/// (slower, wordier) parser sees them, with a message saying what they are.
pub fn check_header(bytes: &[u8]) -> Result<(), PluginError> {
    if bytes.len() < 8 || &bytes[..4] != b"\0asm" {
        return Err(PluginError::Invalid(format!(
            "not a WebAssembly component: the {} bytes do not start with the \\0asm header",
            bytes.len()
        )));
    }
    match &bytes[4..8] {
        [0x0d, 0x00, 0x01, 0x00] => Ok(()),
        [0x01, 0x00, 0x00, 0x00] => Err(PluginError::Invalid(
            "a core WebAssembly module, not a component: build it for wasm32-wasip2 or wrap it with `wasm-tools component new`".into(),
        )),
        other => Err(PluginError::Invalid(format!(
            "not a WebAssembly component this host understands (version/layer bytes {other:02x?})"
        ))),
    }
}

/// The world a compiled component implements, from the names of its
/// exported functions. Exactly one world must match; the function types are
/// checked later, when the host links the world's bindings.
pub fn detect(engine: &Engine, component: &Component) -> Result<World, PluginError> {
    let ty = component.component_type();
    let funcs: Vec<&str> = ty
        .exports(engine)
        .filter(|(_, item)| matches!(item.ty, ComponentItem::ComponentFunc(_)))
        .map(|(name, _)| name)
        .collect();
    let matching: Vec<World> = World::ALL
        .into_iter()
        .filter(|w| w.exports().iter().all(|e| funcs.contains(e)))
        .collect();
    match matching.as_slice() {
        [world] => Ok(*world),
        [] => Err(PluginError::Invalid(format!(
            "the component matches no known world of orchd:plugin@0.1.0: it exports {} \
             (a scheduler exports scheduler-name, update and schedule, a controller setup and reconcile, \
             an admission plugin review, a node policy setup, after-exit, pod-status, pod-cgroup and check-pressure)",
            if funcs.is_empty() {
                "no functions".to_string()
            } else {
                funcs.join(", ")
            }
        ))),
        several => Err(PluginError::Invalid(format!(
            "the component's exports match several worlds ({}); a plugin has one role",
            several
                .iter()
                .map(|w| w.name())
                .collect::<Vec<_>>()
                .join(", ")
        ))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn header_check_names_what_the_bytes_are() {
        let garbage = check_header(b"hello, world").unwrap_err().to_string();
        assert!(garbage.contains("not a WebAssembly component"), "{garbage}");
        let core = check_header(b"\0asm\x01\0\0\0").unwrap_err().to_string();
        assert!(core.contains("core WebAssembly module"), "{core}");
        assert!(check_header(b"\0asm\x0d\0\x01\0").is_ok());
        assert!(check_header(b"\0as").is_err());
        assert!(check_header(b"").is_err());
    }
}
