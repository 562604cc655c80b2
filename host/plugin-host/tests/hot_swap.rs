//! Hot swap in the scheduler runner: a swapped-in decider that keeps
//! failing on probation hands back to the previous one by itself, the
//! pods it failed on are placed by the one restored, and a good one is
//! confirmed once its probation ends. Native deciders keep the test about
//! the runner's logic (the Wasm side is covered by real_scheduler.rs and
//! hostile.rs).

use std::sync::Arc;
use std::time::{Duration, Instant};

use orchd_plugin_host::PluginError;
use orchd_plugin_host::runner::{self, Decide, Report};
use orchd_plugin_host::scheduler::ViewChange;
use orchd_plugin_host::scheduler::types::{Decision, PodInfo};
use orchd_store::{ObjectKey, RedbStore, RedbStoreConfig, Store};
use serde_json::json;
use tokio::sync::mpsc;

const NAME: &str = "swap-test";

/// Binds every pod to the first node by name, or fails. It keeps its
/// view of the cluster from the changes, as a plugin does.
struct Native {
    digest: &'static str,
    fails: Fails,
    nodes: Option<Vec<String>>,
}

/// Which calls a [`Native`] fails.
#[derive(Clone, Copy, PartialEq)]
enum Fails {
    Never,
    /// Takes its view, fails every decision.
    Deciding,
    /// Cannot even take its view.
    Always,
}

impl Decide for Native {
    fn scheduler_name(&self) -> &str {
        NAME
    }
    fn digest(&self) -> &str {
        self.digest
    }
    fn needs_full_view(&self) -> bool {
        self.nodes.is_none()
    }
    fn schedule(
        &mut self,
        changes: &[ViewChange],
        reset: bool,
        pods: &[PodInfo],
    ) -> Result<Vec<Decision>, PluginError> {
        if self.fails == Fails::Always || (self.fails == Fails::Deciding && !pods.is_empty()) {
            // A failed plugin instance loses its view.
            self.nodes = None;
            return Err(PluginError::Trap {
                plugin: NAME.into(),
                call: "schedule".into(),
                message: "failing on purpose".into(),
            });
        }
        let nodes = match (&mut self.nodes, reset) {
            (view, true) => view.insert(Vec::new()),
            (Some(view), false) => view,
            (None, false) => panic!("the runner sent changes to a decider with no view"),
        };
        for change in changes {
            match change {
                ViewChange::NodeSet(n) if !nodes.contains(&n.name) => nodes.push(n.name.clone()),
                ViewChange::NodeRemoved(name) => nodes.retain(|n| n != name),
                _ => {}
            }
        }
        nodes.sort();
        Ok(pods
            .iter()
            .map(|_| match nodes.first() {
                Some(n) => Decision::Bind(n.clone()),
                None => Decision::Unschedulable(Vec::new()),
            })
            .collect())
    }
}

fn decider(digest: &'static str, fails: Fails) -> Box<dyn Decide> {
    Box::new(Native {
        digest,
        fails,
        nodes: None,
    })
}

async fn create_pod(store: &dyn Store, name: &str) {
    let pod = json!({
        "apiVersion": "v1", "kind": "Pod",
        "metadata": {"name": name, "namespace": "default"},
        "spec": {"schedulerName": NAME, "containers": [{"name": "c", "image": "i"}]},
        "status": {"phase": "Pending"}
    });
    store
        .create(&ObjectKey::namespaced("pods", "default", name), pod)
        .await
        .unwrap_or_else(|e| panic!("{e}"));
}

async fn node_of(store: &dyn Store, name: &str) -> Option<String> {
    let deadline = Instant::now() + Duration::from_secs(20);
    while Instant::now() < deadline {
        let pod = store
            .get(&ObjectKey::namespaced("pods", "default", name))
            .await
            .ok()?;
        if let Some(node) = pod["spec"]["nodeName"].as_str() {
            return Some(node.to_string());
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    None
}

/// The next report matching `pick`, skipping others.
async fn next_report(
    reports: &mut mpsc::UnboundedReceiver<Report>,
    what: &str,
    pick: impl Fn(&Report) -> bool,
) -> Report {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    loop {
        match tokio::time::timeout_at(deadline, reports.recv()).await {
            Ok(Some(r)) if pick(&r) => return r,
            Ok(Some(_)) => continue,
            Ok(None) => panic!("the runner stopped before {what}"),
            Err(_) => panic!("no {what} within 20 s"),
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn probation_rolls_back_a_failing_decider_and_confirms_a_good_one() {
    let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
    let store: Arc<dyn Store> = RedbStore::open(RedbStoreConfig::new(dir.path().join("s.redb")))
        .unwrap_or_else(|e| panic!("{e}"));
    let node = |name: &str| {
        json!({
            "apiVersion": "v1", "kind": "Node", "metadata": {"name": name},
            "status": {"allocatable": {"cpu": "4", "memory": "8Gi", "pods": "110"},
                       "conditions": [{"type": "Ready", "status": "True"}]}
        })
    };
    store
        .create(&ObjectKey::cluster("nodes", "n1"), node("n1"))
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    let (tx, mut reports) = mpsc::unbounded_channel();
    let handle = runner::start(store.clone(), decider("good-1", Fails::Never), Some(tx))
        .unwrap_or_else(|e| panic!("{e}"));
    create_pod(store.as_ref(), "before").await;
    assert_eq!(
        node_of(store.as_ref(), "before").await.as_deref(),
        Some("n1")
    );

    // A decider for another schedulerName is refused.
    struct Other;
    impl Decide for Other {
        fn scheduler_name(&self) -> &str {
            "someone-else"
        }
        fn digest(&self) -> &str {
            "other"
        }
        fn needs_full_view(&self) -> bool {
            true
        }
        fn schedule(
            &mut self,
            _: &[ViewChange],
            _: bool,
            pods: &[PodInfo],
        ) -> Result<Vec<Decision>, PluginError> {
            Ok(pods
                .iter()
                .map(|_| Decision::Unschedulable(Vec::new()))
                .collect())
        }
    }
    let refused = handle.swap(Box::new(Other), Duration::from_secs(1)).await;
    assert!(
        matches!(refused, Err(PluginError::Invalid(_))),
        "{refused:?}"
    );

    // One that cannot take its view is refused before it takes over.
    let refused = handle
        .swap(decider("broken", Fails::Always), Duration::from_secs(60))
        .await;
    assert!(
        matches!(refused, Err(PluginError::Trap { .. })),
        "{refused:?}"
    );

    // A failing decider, on a long probation: two failures send it back.
    handle
        .swap(decider("bad", Fails::Deciding), Duration::from_secs(60))
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    // A node the bad one is told of, not the one it replaced: that one
    // must get the whole view back when it is restored.
    store
        .create(&ObjectKey::cluster("nodes", "n0"), node("n0"))
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    create_pod(store.as_ref(), "p1").await;
    create_pod(store.as_ref(), "p2").await;
    let failed = next_report(&mut reports, "a failure report", |r| {
        matches!(r, Report::Failed { .. })
    })
    .await;
    assert!(matches!(failed, Report::Failed { ref digest, .. } if digest == "bad"));
    let back = next_report(&mut reports, "the rollback", |r| {
        matches!(r, Report::RolledBack { .. })
    })
    .await;
    match back {
        Report::RolledBack {
            failed, restored, ..
        } => assert_eq!((failed.as_str(), restored.as_str()), ("bad", "good-1")),
        _ => unreachable!(),
    }
    // The pods the bad one failed on are placed by the restored one, which
    // knows of the node added meanwhile.
    assert_eq!(node_of(store.as_ref(), "p1").await.as_deref(), Some("n0"));
    assert_eq!(node_of(store.as_ref(), "p2").await.as_deref(), Some("n0"));

    // A good decider decides first, then passes its short probation.
    handle
        .swap(decider("good-2", Fails::Never), Duration::from_millis(200))
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    create_pod(store.as_ref(), "p3").await;
    let first = next_report(&mut reports, "the first decision", |r| {
        matches!(r, Report::FirstDecision { .. })
    })
    .await;
    assert!(matches!(first, Report::FirstDecision { ref digest, .. } if digest == "good-2"));
    let confirmed = next_report(&mut reports, "the confirmation", |r| {
        matches!(r, Report::Confirmed { .. })
    })
    .await;
    assert!(matches!(confirmed, Report::Confirmed { ref digest } if digest == "good-2"));
    assert_eq!(node_of(store.as_ref(), "p3").await.as_deref(), Some("n0"));
    let scheduled = handle
        .stats()
        .scheduled
        .load(std::sync::atomic::Ordering::Relaxed);
    assert_eq!(scheduled, 4, "each pod bound exactly once");
    handle.stop().await;
}
