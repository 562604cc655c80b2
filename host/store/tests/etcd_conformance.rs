//! The shared conformance suite run against [`EtcdStore`] on a real etcd,
//! plus what is particular to it: stores under different prefixes share
//! one etcd without seeing each other, two stores on one prefix (two
//! control-plane replicas) see each other's writes, and a watcher resuming
//! from before the in-memory tail reads etcd's history.
//!
//! Each test starts its own etcd (Debian's `etcd-server`) on free loopback
//! ports with a temporary data dir, killed on drop: etcd's revisions and
//! compaction are cluster-wide, and the checks assert exact revisions.
//! Without etcd installed the tests fail, saying how to install it, unless
//! `ORCHD_SKIP_ETCD_TESTS=1` says to skip them.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use futures::StreamExt;
use orchd_store::conformance;
use orchd_store::{
    EtcdStore, EtcdStoreConfig, EventType, ListOptions, ObjectKey, Scope, Store, StoreError,
    WatchOptions, meta,
};
use serde_json::json;

/// A running etcd, killed on drop.
struct Etcd {
    child: std::process::Child,
    endpoint: String,
    _dir: tempfile::TempDir,
}

fn etcd_binary() -> Option<PathBuf> {
    if let Some(p) = std::env::var_os("ORCHD_ETCD_BIN") {
        return Some(PathBuf::from(p));
    }
    ["/usr/bin/etcd", "/usr/local/bin/etcd"]
        .into_iter()
        .map(PathBuf::from)
        .find(|p| p.exists())
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("a free port")
}

impl Etcd {
    /// Starts etcd; `None` when it is missing and the environment says to
    /// skip.
    fn start() -> Option<Etcd> {
        let Some(bin) = etcd_binary() else {
            if std::env::var("ORCHD_SKIP_ETCD_TESTS").is_ok_and(|v| v == "1") {
                eprintln!("etcd is not installed: skipped (ORCHD_SKIP_ETCD_TESTS=1)");
                return None;
            }
            panic!(
                "etcd is not installed: `apt-get install etcd-server` (or set ORCHD_ETCD_BIN; \
                 ORCHD_SKIP_ETCD_TESTS=1 skips these tests)"
            );
        };
        // RAM-backed when possible: etcd fsyncs every commit.
        let shm = Path::new("/dev/shm");
        let dir = if shm.is_dir() {
            tempfile::tempdir_in(shm)
        } else {
            tempfile::tempdir()
        }
        .expect("tempdir");
        // Ports are picked free, yet another process may take one before
        // etcd binds it: try a few times.
        for _ in 0..5 {
            let (client_port, peer_port) = (free_port(), free_port());
            let client = format!("http://127.0.0.1:{client_port}");
            let peer = format!("http://127.0.0.1:{peer_port}");
            let mut child = std::process::Command::new(&bin)
                .args(["--name", "t", "--data-dir"])
                .arg(dir.path().join(format!("d{client_port}")))
                .args(["--listen-client-urls", &client])
                .args(["--advertise-client-urls", &client])
                .args(["--listen-peer-urls", &peer])
                .args(["--initial-advertise-peer-urls", &peer])
                .args(["--initial-cluster", &format!("t={peer}")])
                .args(["--log-level", "error", "--logger", "zap"])
                .stdout(std::process::Stdio::null())
                .stderr(std::process::Stdio::null())
                .spawn()
                .unwrap_or_else(|e| panic!("cannot start {}: {e}", bin.display()));
            let endpoint = format!("127.0.0.1:{client_port}");
            let deadline = Instant::now() + Duration::from_secs(20);
            while Instant::now() < deadline {
                if let Ok(Some(_)) = child.try_wait() {
                    break;
                }
                if healthy(&endpoint) {
                    return Some(Etcd {
                        child,
                        endpoint,
                        _dir: dir,
                    });
                }
                std::thread::sleep(Duration::from_millis(30));
            }
            let _ = child.kill();
            let _ = child.wait();
        }
        panic!("etcd did not start");
    }

    fn config(&self, prefix: &str) -> EtcdStoreConfig {
        EtcdStoreConfig {
            prefix: prefix.into(),
            compaction_interval: Duration::ZERO,
            ..EtcdStoreConfig::new(self.endpoint.clone())
        }
    }

    async fn store(&self, prefix: &str) -> Arc<EtcdStore> {
        EtcdStore::connect(self.config(prefix))
            .await
            .expect("connect to etcd")
    }
}

impl Drop for Etcd {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Whether etcd answers `/health` with `"health":"true"`.
fn healthy(endpoint: &str) -> bool {
    use std::io::{Read, Write};
    let Ok(mut s) = std::net::TcpStream::connect(endpoint) else {
        return false;
    };
    let _ = s.set_read_timeout(Some(Duration::from_secs(2)));
    let req = format!("GET /health HTTP/1.1\r\nHost: {endpoint}\r\nConnection: close\r\n\r\n");
    if s.write_all(req.as_bytes()).is_err() {
        return false;
    }
    let mut out = String::new();
    let _ = s.read_to_string(&mut out);
    out.contains("\"health\":\"true\"")
}

macro_rules! conformance_tests {
    ($($name:ident),* $(,)?) => {
        $(
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn $name() {
                let Some(etcd) = Etcd::start() else { return };
                let store = etcd.store(concat!("/orchd-test-", stringify!($name))).await;
                conformance::$name(store).await;
            }
        )*
    };
}

orchd_store::each_conformance_check!(conformance_tests);

mod generated {
    use super::*;
    use proptest::prelude::*;

    proptest! {
        #![proptest_config(ProptestConfig { cases: 3, ..ProptestConfig::default() })]

        /// Random workloads (seed, writer and watcher counts): every watcher
        /// sees every acknowledged write after its start, once, in order.
        #[test]
        fn many_writers_and_watchers(seed in any::<u64>(), writers in 1usize..6, watchers in 1usize..6) {
            let rt = tokio::runtime::Builder::new_multi_thread()
                .worker_threads(2)
                .enable_all()
                .build()
                .expect("runtime");
            rt.block_on(async {
                let Some(etcd) = Etcd::start() else { return };
                let store = etcd.store("/orchd-test-generated").await;
                conformance::many_writers_and_watchers(store, seed, writers, 30, watchers).await;
            });
        }
    }
}

fn widget(ns: &str, name: &str) -> serde_json::Value {
    json!({"metadata": {"name": name, "namespace": ns}, "spec": {}})
}

fn scope(ns: &str) -> Scope {
    Scope {
        resource: conformance::RESOURCE.into(),
        namespace: Some(ns.into()),
        ..Default::default()
    }
}

async fn next_event(w: &mut orchd_store::WatchStream) -> orchd_store::WatchEvent {
    match tokio::time::timeout(Duration::from_secs(20), w.next()).await {
        Ok(Some(Ok(e))) => e,
        other => panic!("no watch event: {other:?}"),
    }
}

/// Stores under different prefixes share one etcd, each seeing only its
/// own objects; two stores on the same prefix (two replicas) share them,
/// and a write through one reaches a watch through the other.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn prefixes_isolate_and_replicas_share() {
    let Some(etcd) = Etcd::start() else { return };
    let a = etcd.store("/tenant-a").await;
    let b = etcd.store("/tenant-b").await;
    let a2 = etcd.store("/tenant-a/").await;
    let k = ObjectKey::namespaced(conformance::RESOURCE, "ns", "x");
    let start = a.current_revision().await.expect("rev");
    let mut w = a2
        .watch(
            &scope("ns"),
            &WatchOptions {
                after: Some(start),
                bookmark_interval: None,
            },
        )
        .await
        .expect("watch");
    let created = a.create(&k, widget("ns", "x")).await.expect("create in a");
    assert!(matches!(b.get(&k).await, Err(StoreError::NotFound { .. })));
    b.create(&k, widget("ns", "x")).await.expect("create in b");
    assert_eq!(a2.get(&k).await.expect("get through a2"), created);
    let e = next_event(&mut w).await;
    assert_eq!(e.event_type, EventType::Added);
    assert_eq!(*e.object, created);
    let listed = b
        .list(&scope("ns"), &ListOptions::default())
        .await
        .expect("list b");
    assert_eq!(listed.items.len(), 1);
    assert_ne!(
        listed.items[0]["metadata"]["uid"],
        created["metadata"]["uid"]
    );
    // Updates through the replica conflict like any other writer's.
    let mut stale = created.clone();
    a2.update(&k, json!({"metadata": {"name": "x"}, "spec": {"n": 1}}))
        .await
        .expect("blind update");
    stale["spec"]["n"] = json!(2);
    assert!(matches!(
        a.update(&k, stale).await,
        Err(StoreError::Conflict { .. })
    ));
    assert_eq!(next_event(&mut w).await.event_type, EventType::Modified);
}

/// A watch resuming from before the store's in-memory tail (a store opened
/// later, as a restarted replica is) reads history from etcd, then goes on
/// live; once etcd compacted that history, the watch is `Expired`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn resume_from_before_the_tail_reads_etcd_history() {
    let Some(etcd) = Etcd::start() else { return };
    let first = etcd.store("/o").await;
    let start = first.current_revision().await.expect("rev");
    let mut revs = Vec::new();
    for i in 0..5 {
        let name = format!("h{i}");
        let o = first
            .create(
                &ObjectKey::namespaced(conformance::RESOURCE, "ns", &name),
                widget("ns", &name),
            )
            .await
            .expect("create");
        revs.push(meta::resource_version(&o).expect("rv"));
    }
    // A tiny tail, so even the live part overflows it.
    let later = EtcdStore::connect(EtcdStoreConfig {
        tail_capacity: 2,
        ..etcd.config("/o")
    })
    .await
    .expect("connect");
    let mut w = later
        .watch(
            &scope("ns"),
            &WatchOptions {
                after: Some(start),
                bookmark_interval: None,
            },
        )
        .await
        .expect("watch from before the tail");
    for r in &revs {
        let e = next_event(&mut w).await;
        assert_eq!((e.event_type, e.revision), (EventType::Added, *r));
    }
    let mut live = Vec::new();
    for i in 0..4 {
        let name = format!("l{i}");
        let o = first
            .create(
                &ObjectKey::namespaced(conformance::RESOURCE, "ns", &name),
                widget("ns", &name),
            )
            .await
            .expect("create");
        live.push(meta::resource_version(&o).expect("rv"));
    }
    for r in &live {
        assert_eq!(next_event(&mut w).await.revision, *r);
    }

    first.compact(revs[3]).await.expect("compact");
    assert_eq!(later.compacted_revision().await.expect("rev"), revs[3]);
    assert!(matches!(
        later
            .watch(
                &scope("ns"),
                &WatchOptions {
                    after: Some(revs[1]),
                    bookmark_interval: None,
                },
            )
            .await,
        Err(StoreError::Expired { .. })
    ));
    // A list continued at a compacted revision is Expired too.
    let page = first
        .list(
            &scope("ns"),
            &ListOptions {
                limit: Some(2),
                continue_token: None,
            },
        )
        .await
        .expect("list");
    let token = page.continue_token.expect("more pages");
    first
        .create(
            &ObjectKey::namespaced(conformance::RESOURCE, "other", "x"),
            widget("other", "x"),
        )
        .await
        .expect("create");
    let now = first.current_revision().await.expect("rev");
    assert!(now > page.revision);
    first.compact(now).await.expect("compact");
    assert!(matches!(
        first
            .list(
                &scope("ns"),
                &ListOptions {
                    limit: Some(2),
                    continue_token: Some(token),
                },
            )
            .await,
        Err(StoreError::Expired { .. })
    ));
}

/// An unreachable etcd is an error at connect, not a hang or a panic.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unreachable_etcd_is_an_error() {
    let port = free_port();
    let r = EtcdStore::connect(EtcdStoreConfig::new(format!("127.0.0.1:{port}"))).await;
    assert!(matches!(r, Err(StoreError::Internal(_))));
}
