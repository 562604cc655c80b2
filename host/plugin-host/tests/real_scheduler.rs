//! The real default scheduler component (`plugins/scheduler`) under the
//! host: loading, direct calls, and the runner binding pods in a store.
//!
//! The component comes from `$ORCHD_TEST_PLUGINS/default-scheduler.wasm`
//! when `cargo xtask test` built it; otherwise it is built here with
//! `cargo build --release --target wasm32-wasip2 -p orchd-scheduler` into
//! `<target>/wasm-plugins`, the directory orchd's build script uses (a
//! separate target directory, so the host's own build is not invalidated).

use std::path::{Path, PathBuf};
use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant};

use orchd_plugin_host::runner;
use orchd_plugin_host::scheduler::ViewChange;
use orchd_plugin_host::scheduler::types::{Decision, Node, PodInfo};
use orchd_plugin_host::{Limits, PluginEngine, SchedulerPlugin, World, podinfo};
use orchd_store::{ListOptions, ObjectKey, RedbStore, RedbStoreConfig, Scope, Store};
use serde_json::{Value, json};

fn scheduler_wasm() -> PathBuf {
    static WASM: OnceLock<Result<PathBuf, String>> = OnceLock::new();
    let found = WASM.get_or_init(|| {
        if let Some(dir) = std::env::var_os("ORCHD_TEST_PLUGINS") {
            return Ok(PathBuf::from(dir).join("default-scheduler.wasm"));
        }
        let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("../..");
        // This test runs as <target>/<profile>/deps/real_scheduler-<hash>.
        let exe = std::env::current_exe().map_err(|e| format!("no test executable: {e}"))?;
        let target = exe
            .ancestors()
            .nth(3)
            .map(|t| t.join("wasm-plugins"))
            .ok_or("cannot find the target directory")?;
        let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
        let status = std::process::Command::new(cargo)
            .current_dir(&root)
            .args([
                "build",
                "--release",
                "--target",
                "wasm32-wasip2",
                "-p",
                "orchd-scheduler",
                "--target-dir",
            ])
            .arg(&target)
            .status()
            .map_err(|e| format!("cannot run cargo: {e}"))?;
        if !status.success() {
            return Err(format!(
                "building the scheduler component failed ({status}); is the wasm32-wasip2 target installed (rustup target add wasm32-wasip2)?"
            ));
        }
        Ok(target.join("wasm32-wasip2/release/orchd_scheduler.wasm"))
    });
    match found {
        Ok(path) => path.clone(),
        Err(e) => panic!("{e}"),
    }
}

fn load(engine: &PluginEngine) -> SchedulerPlugin {
    let bytes = std::fs::read(scheduler_wasm()).unwrap_or_else(|e| panic!("{e}"));
    let compiled = engine.compile(&bytes).unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(compiled.world, World::Scheduler);
    SchedulerPlugin::load(
        engine,
        &compiled,
        "default-scheduler",
        Limits::default(),
        orchd_plugin_host::sandbox::stderr_sink(),
    )
    .unwrap_or_else(|e| panic!("{e}"))
}

fn node_object(name: &str, cpu: &str, taints: Value) -> Value {
    json!({
        "apiVersion": "v1", "kind": "Node",
        "metadata": {"name": name, "labels": {"kubernetes.io/hostname": name}},
        "spec": {"taints": taints},
        "status": {
            "capacity": {"cpu": cpu, "memory": "8Gi", "pods": "110"},
            "allocatable": {"cpu": cpu, "memory": "8Gi", "pods": "110"},
            "conditions": [{"type": "Ready", "status": "True"}]
        }
    })
}

fn pod_object(name: &str, cpu: &str) -> Value {
    json!({
        "apiVersion": "v1", "kind": "Pod",
        "metadata": {"name": name, "namespace": "default", "labels": {"app": name}},
        "spec": {
            "schedulerName": "default-scheduler",
            "containers": [{"name": "c", "image": "busybox",
                            "resources": {"requests": {"cpu": cpu, "memory": "64Mi"}}}]
        },
        "status": {"phase": "Pending"}
    })
}

fn node_set(node: &Value) -> ViewChange {
    ViewChange::NodeSet(Arc::new(Node {
        name: node["metadata"]["name"].as_str().unwrap_or_default().into(),
        labels: podinfo::labels(node),
        allocatable: podinfo::node_allocatable(node),
        taints: podinfo::node_taints(node),
        unschedulable: false,
        ready: true,
    }))
}

/// The one decision for `pod`, after `changes`.
fn decide(
    plugin: &mut SchedulerPlugin,
    changes: &[ViewChange],
    reset: bool,
    pod: &PodInfo,
) -> Decision {
    match plugin.schedule(changes, reset, std::slice::from_ref(pod)) {
        Ok(mut decisions) if decisions.len() == 1 => decisions.remove(0),
        other => panic!("unexpected {other:?}"),
    }
}

#[test]
fn the_default_scheduler_decides_through_the_host() {
    let engine = PluginEngine::new(None).unwrap_or_else(|e| panic!("{e}"));
    let mut plugin = load(&engine);
    assert_eq!(plugin.scheduler_name(), "default-scheduler");
    let nodes = [
        node_set(&node_object("small", "1", json!([]))),
        node_set(&node_object("big", "8", json!([]))),
        node_set(&node_object(
            "gpu",
            "16",
            json!([{"key": "gpu", "value": "true", "effect": "NoSchedule"}]),
        )),
    ];
    assert!(plugin.needs_full_view());
    let pod: PodInfo = podinfo::pod_info(&pod_object("p", "2"));
    let refused = plugin.schedule(&[], false, std::slice::from_ref(&pod));
    assert!(refused.is_err(), "changes without a view: {refused:?}");
    assert_eq!(
        decide(&mut plugin, &nodes, true, &pod),
        Decision::Bind("big".into())
    );
    assert!(!plugin.needs_full_view());
    // The plugin counted p on big: 6 of its 8 CPUs are left, so a pod of
    // 7 fits nowhere now.
    let seven: PodInfo = podinfo::pod_info(&pod_object("seven", "7"));
    match decide(&mut plugin, &[], false, &seven) {
        Decision::Unschedulable(rejections) => {
            let message = runner::fit_error_message(nodes.len(), &rejections);
            assert_eq!(
                message,
                "0/3 nodes are available: 1 node(s) had untolerated taint {gpu: true}, 2 Insufficient cpu."
            );
        }
        other => panic!("unexpected {other:?}"),
    }
    // Until the host says the binding failed.
    let removed = [ViewChange::PodRemoved("default/p".into())];
    assert_eq!(
        decide(&mut plugin, &removed, false, &seven),
        Decision::Bind("big".into())
    );
    // A reset with many nodes replaces the view and forgets what was
    // counted before (how fast it is, `cargo xtask bench scheduler` says).
    let many: Vec<ViewChange> = (0..1000)
        .map(|i| node_set(&node_object(&format!("n{i}"), "4", json!([]))))
        .collect();
    let batch: Vec<PodInfo> = (0..50)
        .map(|i| podinfo::pod_info(&pod_object(&format!("b{i}"), "1")))
        .collect();
    let decisions = plugin
        .schedule(&many, true, &batch)
        .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(decisions.len(), 50);
    assert!(
        decisions
            .iter()
            .all(|d| matches!(d, Decision::Bind(n) if n.starts_with('n')))
    );
}

async fn wait_for<T>(what: &str, mut check: impl AsyncFnMut() -> Option<T>) -> T {
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        if let Some(v) = check().await {
            return v;
        }
        if Instant::now() > deadline {
            panic!("timed out waiting for {what}");
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

async fn events_about(store: &dyn Store, pod: &str) -> Vec<Value> {
    let scope = Scope {
        resource: "events".into(),
        namespace: Some("default".into()),
        ..Scope::default()
    };
    let list = store
        .list(&scope, &ListOptions::default())
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    list.items
        .into_iter()
        .filter(|e| e["involvedObject"]["name"] == pod)
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_runner_binds_pods_assumes_them_and_records_events() {
    let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
    let store: Arc<dyn Store> = RedbStore::open(RedbStoreConfig::new(dir.path().join("s.redb")))
        .unwrap_or_else(|e| panic!("{e}"));
    for n in ["n1", "n2"] {
        store
            .create(
                &ObjectKey::cluster("nodes", n),
                node_object(n, "2", json!([])),
            )
            .await
            .unwrap_or_else(|e| panic!("{e}"));
    }
    let engine = PluginEngine::new(None).unwrap_or_else(|e| panic!("{e}"));
    let plugin = tokio::task::spawn_blocking(move || load(&engine))
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    let handle =
        runner::start(store.clone(), Box::new(plugin), None).unwrap_or_else(|e| panic!("{e}"));

    // Each pod takes 1.5 of a node's 2 CPUs: the second must not go where
    // the first was assumed, even before the first binding is seen.
    for p in ["a", "b"] {
        store
            .create(
                &ObjectKey::namespaced("pods", "default", p),
                pod_object(p, "1500m"),
            )
            .await
            .unwrap_or_else(|e| panic!("{e}"));
    }
    let mut nodes = Vec::new();
    for p in ["a", "b"] {
        let key = ObjectKey::namespaced("pods", "default", p);
        let node = wait_for("binding", async || {
            let pod = store.get(&key).await.ok()?;
            pod["spec"]["nodeName"].as_str().map(str::to_string)
        })
        .await;
        let pod = store.get(&key).await.unwrap_or_else(|e| panic!("{e}"));
        let scheduled = pod["status"]["conditions"]
            .as_array()
            .and_then(|c| c.iter().find(|c| c["type"] == "PodScheduled"))
            .cloned()
            .unwrap_or_default();
        assert_eq!(scheduled["status"], "True");
        let event = wait_for("Scheduled event", async || {
            events_about(store.as_ref(), p)
                .await
                .into_iter()
                .find(|e| e["reason"] == "Scheduled")
        })
        .await;
        assert_eq!(
            event["message"],
            format!("Successfully assigned default/{p} to {node}")
        );
        assert_eq!(event["source"]["component"], "default-scheduler");
        nodes.push(node);
    }
    assert_ne!(nodes[0], nodes[1], "the second pod saw the first one");

    // A third pod fits nowhere now: Pending, with the reasons.
    store
        .create(
            &ObjectKey::namespaced("pods", "default", "c"),
            pod_object("c", "1"),
        )
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    let event = wait_for("FailedScheduling event", async || {
        events_about(store.as_ref(), "c")
            .await
            .into_iter()
            .find(|e| e["reason"] == "FailedScheduling")
    })
    .await;
    assert_eq!(event["type"], "Warning");
    assert_eq!(
        event["message"],
        "0/2 nodes are available: 2 Insufficient cpu."
    );
    let key_c = ObjectKey::namespaced("pods", "default", "c");
    let pod_c = store.get(&key_c).await.unwrap_or_else(|e| panic!("{e}"));
    assert!(pod_c["spec"]["nodeName"].is_null());

    // Deleting a bound pod frees its node: the waiting pod is retried at
    // once (not after its backoff) and lands there.
    store
        .delete(
            &ObjectKey::namespaced("pods", "default", "a"),
            &Default::default(),
        )
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    let node_c = wait_for("the waiting pod to bind", async || {
        let pod = store.get(&key_c).await.ok()?;
        pod["spec"]["nodeName"].as_str().map(str::to_string)
    })
    .await;
    assert_eq!(node_c, nodes[0]);
    let stats = handle.stats().clone();
    assert_eq!(
        stats.scheduled.load(std::sync::atomic::Ordering::Relaxed),
        3
    );

    // One runner per schedulerName.
    let engine = PluginEngine::new(None).unwrap_or_else(|e| panic!("{e}"));
    let second = tokio::task::spawn_blocking(move || load(&engine))
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    let refused = runner::start(store.clone(), Box::new(second), None).err();
    assert!(
        refused.is_some_and(|e| e.to_string().contains("already running")),
        "a second runner for the same name was accepted"
    );
    handle.stop().await;
}
