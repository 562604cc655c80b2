//! The code wit-bindgen generates from `wit/`: one module per world, each
//! behind the cargo feature of the same name, plus `base` for `log`.
//!
//! Why features: every generated world leaves a custom section describing
//! its imports in this library, and the linker keeps all of them, so a
//! scheduler built against an SDK holding all three worlds would also
//! import the type-only interfaces of the controller and admission worlds.
//! The exports are described by the section `export_*!` expands in the
//! plugin's own crate (`pub_export_macro`), so a component exports exactly
//! the world it implements.
#![allow(unsafe_code, missing_docs, clippy::all)]

/// `log`, imported by every world, generated once so that every world's
/// bindings share one `Level` and one `log` function.
pub mod base {
    wit_bindgen::generate!({
        path: "../../wit",
        inline: "package orchd:sdk; world base { import orchd:plugin/log@0.1.0; }",
        world: "orchd:sdk/base",
        additional_derives: [PartialEq, Eq],
        with: { "orchd:plugin/log@0.1.0": generate },
    });
}

/// `world scheduler`.
#[cfg(feature = "scheduler")]
pub mod scheduler {
    wit_bindgen::generate!({
        path: "../../wit",
        world: "orchd:plugin/scheduler@0.1.0",
        pub_export_macro: true,
        default_bindings_module: "orchd_sdk::bindings::scheduler",
        additional_derives: [PartialEq, Eq],
        with: {
            "orchd:plugin/log@0.1.0": crate::bindings::base::orchd::plugin::log,
        },
    });
}

/// `world controller`.
#[cfg(feature = "controller")]
pub mod controller {
    wit_bindgen::generate!({
        path: "../../wit",
        world: "orchd:plugin/controller@0.1.0",
        pub_export_macro: true,
        default_bindings_module: "orchd_sdk::bindings::controller",
        additional_derives: [PartialEq, Eq],
        with: {
            "orchd:plugin/log@0.1.0": crate::bindings::base::orchd::plugin::log,
        },
    });
}

/// `world admission`.
#[cfg(feature = "admission")]
pub mod admission {
    wit_bindgen::generate!({
        path: "../../wit",
        world: "orchd:plugin/admission@0.1.0",
        pub_export_macro: true,
        default_bindings_module: "orchd_sdk::bindings::admission",
        additional_derives: [PartialEq, Eq],
        with: {
            "orchd:plugin/log@0.1.0": crate::bindings::base::orchd::plugin::log,
        },
    });
}

/// `world node-policy`.
#[cfg(feature = "node-policy")]
pub mod node_policy {
    wit_bindgen::generate!({
        path: "../../wit",
        world: "orchd:plugin/node-policy@0.1.0",
        pub_export_macro: true,
        default_bindings_module: "orchd_sdk::bindings::node_policy",
        additional_derives: [PartialEq, Eq],
        with: {
            "orchd:plugin/log@0.1.0": crate::bindings::base::orchd::plugin::log,
        },
    });
}
