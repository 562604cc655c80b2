//! Builds the default plugins (`plugins/scheduler`, `plugins/serviceaccount`,
//! `plugins/replicaset`, `plugins/deployment`, `plugins/garbage-collector`,
//! `plugins/job`, `plugins/cronjob`, `plugins/daemonset`, `plugins/statefulset`,
//! `plugins/node-lifecycle`, `plugins/namespace`, `plugins/endpoints` and
//! `plugins/kubelet` for `wasm32-wasip2`) so `orchd up` can ship them inside the binary and
//! run with nothing to install.
//!
//! The component is built by a nested cargo into its own target directory
//! (`<target>/wasm-plugins`) so it neither waits on nor invalidates the
//! host build. Without the `wasm32-wasip2` target installed the binary is
//! built without them (a warning says so, and `orchd up` tells the user how
//! to fix it); a component that fails to compile fails the build.

#![allow(
    clippy::disallowed_macros,
    reason = "cargo reads a build script's directives from its stdout"
)]

/// (package, file the component is built as, file embedded in OUT_DIR).
const PLUGINS: &[(&str, &str, &str)] = &[
    (
        "orchd-scheduler",
        "orchd_scheduler.wasm",
        "default-scheduler.wasm",
    ),
    (
        "orchd-serviceaccount-controller",
        "orchd_serviceaccount_controller.wasm",
        "serviceaccount-controller.wasm",
    ),
    (
        "orchd-replicaset-controller",
        "orchd_replicaset_controller.wasm",
        "replicaset-controller.wasm",
    ),
    (
        "orchd-deployment-controller",
        "orchd_deployment_controller.wasm",
        "deployment-controller.wasm",
    ),
    (
        "orchd-garbage-collector",
        "orchd_garbage_collector.wasm",
        "garbage-collector.wasm",
    ),
    (
        "orchd-job-controller",
        "orchd_job_controller.wasm",
        "job-controller.wasm",
    ),
    (
        "orchd-cronjob-controller",
        "orchd_cronjob_controller.wasm",
        "cronjob-controller.wasm",
    ),
    (
        "orchd-daemonset-controller",
        "orchd_daemonset_controller.wasm",
        "daemonset-controller.wasm",
    ),
    (
        "orchd-statefulset-controller",
        "orchd_statefulset_controller.wasm",
        "statefulset-controller.wasm",
    ),
    (
        "orchd-node-lifecycle-controller",
        "orchd_node_lifecycle_controller.wasm",
        "node-lifecycle-controller.wasm",
    ),
    (
        "orchd-namespace-controller",
        "orchd_namespace_controller.wasm",
        "namespace-controller.wasm",
    ),
    (
        "orchd-endpoints-controller",
        "orchd_endpoints_controller.wasm",
        "endpoints-controller.wasm",
    ),
    (
        "orchd-kubelet",
        "orchd_kubelet.wasm",
        "kubelet-node-policy.wasm",
    ),
];

use std::env;
use std::path::{Path, PathBuf};
use std::process::Command;

fn main() {
    let out_dir = PathBuf::from(env::var_os("OUT_DIR").expect("cargo sets OUT_DIR"));
    let manifest = PathBuf::from(env::var_os("CARGO_MANIFEST_DIR").expect("cargo sets it"));
    let root = manifest.join("../..");
    for dir in [
        "plugins/scheduler",
        "plugins/serviceaccount",
        "plugins/replicaset",
        "plugins/deployment",
        "plugins/garbage-collector",
        "plugins/node-lifecycle",
        "plugins/namespace",
        "plugins/endpoints",
        "sdk/rust",
        "wit",
        "plugins/job",
        "plugins/cronjob",
        "plugins/daemonset",
        "plugins/statefulset",
        "plugins/kubelet",
    ] {
        println!("cargo:rerun-if-changed={}", root.join(dir).display());
    }
    println!("cargo:rerun-if-changed=build.rs");
    if !wasm_target_installed() {
        println!(
            "cargo:warning=the wasm32-wasip2 target is not installed: orchd is built without its default plugins (run `rustup target add wasm32-wasip2`, or `cargo xtask demo`, which does)"
        );
        for (_, _, embedded) in PLUGINS {
            write(&out_dir.join(embedded), &[]);
        }
        return;
    }
    let target_dir = wasm_target_dir(&out_dir);
    let cargo = env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
    let mut cmd = Command::new(cargo);
    cmd.current_dir(&root)
        .args(["build", "--release", "--target", "wasm32-wasip2"]);
    for (package, _, _) in PLUGINS {
        cmd.args(["-p", package]);
    }
    cmd.arg("--target-dir").arg(&target_dir);
    // The outer build's flags are for the host, not for wasm.
    for var in [
        "RUSTFLAGS",
        "CARGO_ENCODED_RUSTFLAGS",
        "CARGO_BUILD_RUSTFLAGS",
        "CARGO_BUILD_TARGET",
        "RUSTC_WORKSPACE_WRAPPER",
    ] {
        cmd.env_remove(var);
    }
    let status = cmd
        .status()
        .unwrap_or_else(|e| panic!("cannot run cargo to build the default plugins: {e}"));
    if !status.success() {
        panic!("building the default plugin components (plugins/) failed: {status}");
    }
    for (_, built, embedded) in PLUGINS {
        copy(
            &target_dir.join("wasm32-wasip2/release").join(built),
            &out_dir.join(embedded),
        );
    }
}

/// `<target>/wasm-plugins`, from `OUT_DIR` = `<target>[/<triple>]/<profile>/build/<pkg>/out`.
fn wasm_target_dir(out_dir: &Path) -> PathBuf {
    let build = out_dir
        .ancestors()
        .find(|p| p.file_name().is_some_and(|n| n == "build"));
    match build.and_then(Path::parent).and_then(Path::parent) {
        Some(base) => base.join("wasm-plugins"),
        None => out_dir.join("wasm-plugins"),
    }
}

fn wasm_target_installed() -> bool {
    let rustc = env::var_os("RUSTC").unwrap_or_else(|| "rustc".into());
    let Ok(out) = Command::new(rustc)
        .args(["--print", "target-libdir", "--target", "wasm32-wasip2"])
        .output()
    else {
        return false;
    };
    let dir = String::from_utf8_lossy(&out.stdout).trim().to_string();
    out.status.success() && Path::new(&dir).is_dir()
}

fn copy(from: &Path, to: &Path) {
    let bytes = std::fs::read(from).unwrap_or_else(|e| {
        panic!(
            "cannot read the scheduler component {}: {e}",
            from.display()
        )
    });
    write(to, &bytes);
}

fn write(to: &Path, bytes: &[u8]) {
    // Rewrite only on change, so dependents are not rebuilt for nothing.
    if std::fs::read(to).is_ok_and(|old| old == bytes) {
        return;
    }
    std::fs::write(to, bytes).unwrap_or_else(|e| panic!("cannot write {}: {e}", to.display()));
}
