//! The shared conformance suite run against [`RedbStore`], plus checks of
//! what is particular to the redb backend: catch-up of slow watchers from
//! the events table, reopening, automatic compaction, group commit.

use std::sync::Arc;
use std::time::Duration;

use futures::StreamExt;
use orchd_store::conformance;
use orchd_store::{
    EventType, ListOptions, ObjectKey, RedbStore, RedbStoreConfig, Revision, Scope, Store,
    StoreError, WatchOptions, meta,
};
use serde_json::json;
use tempfile::TempDir;

fn config(dir: &TempDir) -> RedbStoreConfig {
    RedbStoreConfig {
        path: dir.path().join("store.redb"),
        history_limit: 100_000,
        compaction_interval: Duration::from_secs(60),
    }
}

fn open() -> (Arc<dyn Store>, TempDir) {
    let dir = tempfile::tempdir().expect("tempdir");
    let store = RedbStore::open(config(&dir)).expect("open");
    (store, dir)
}

macro_rules! conformance_tests {
    ($($name:ident),* $(,)?) => {
        $(
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn $name() {
                let (store, _dir) = open();
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
        #![proptest_config(ProptestConfig { cases: 4, ..ProptestConfig::default() })]

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
                let (store, _dir) = open();
                conformance::many_writers_and_watchers(store, seed, writers, 30, watchers).await;
            });
        }
    }
}

fn key(name: &str) -> ObjectKey {
    ObjectKey::namespaced(conformance::RESOURCE, "ns", name)
}

fn widget(name: &str) -> serde_json::Value {
    json!({"metadata": {"name": name, "namespace": "ns"}, "spec": {}})
}

fn scope() -> Scope {
    Scope {
        resource: conformance::RESOURCE.into(),
        namespace: Some("ns".into()),
        ..Default::default()
    }
}

fn after(rev: Revision) -> WatchOptions {
    WatchOptions {
        after: Some(rev),
        bookmark_interval: None,
    }
}

async fn create_n(store: &dyn Store, prefix: &str, n: usize) -> Vec<Revision> {
    let mut revs = Vec::new();
    for i in 0..n {
        let name = format!("{prefix}{i:04}");
        let o = store
            .create(&key(&name), widget(&name))
            .await
            .expect("create");
        revs.push(meta::resource_version(&o).expect("rv"));
    }
    revs
}

/// A watcher far behind the in-memory tail reads the rest from the events
/// table, with no gap at the handover to the tail.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn slow_watcher_catches_up_from_the_table() {
    let dir = tempfile::tempdir().expect("tempdir");
    let store = RedbStore::open_with_tail_capacity(config(&dir), 8).expect("open");
    let start = store.current_revision().await.expect("rev");
    let mut slow = store.watch(&scope(), &after(start)).await.expect("watch");
    let mut live = store.watch(&scope(), &after(start)).await.expect("watch");
    let writer = {
        let store = store.clone();
        tokio::spawn(async move { create_n(&*store, "w", 150).await })
    };
    // `live` keeps up while the writes go on; `slow` only starts reading
    // once they are done, far behind the 8-event tail.
    let mut live_revs = Vec::new();
    while live_revs.len() < 150 {
        let e = live.next().await.expect("event").expect("ok");
        live_revs.push(e.revision);
    }
    let revs = writer.await.expect("writer");
    assert_eq!(live_revs, revs);
    let mut slow_revs = Vec::new();
    while slow_revs.len() < 150 {
        let e = slow.next().await.expect("event").expect("ok");
        assert_eq!(e.event_type, EventType::Added);
        slow_revs.push(e.revision);
    }
    assert_eq!(slow_revs, revs);
    // And it continues live.
    let more = create_n(&*store, "x", 3).await;
    for r in more {
        assert_eq!(slow.next().await.expect("event").expect("ok").revision, r);
    }
}

/// A watcher whose position was compacted away while it lagged ends with
/// `Expired` as its last item.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn lagging_watcher_gets_expired_after_compaction() {
    let dir = tempfile::tempdir().expect("tempdir");
    let store = RedbStore::open_with_tail_capacity(config(&dir), 4).expect("open");
    let start = store.current_revision().await.expect("rev");
    let mut w = store.watch(&scope(), &after(start)).await.expect("watch");
    let revs = create_n(&*store, "c", 20).await;
    store.compact(revs[15]).await.expect("compact");
    match w.next().await {
        Some(Err(StoreError::Expired {
            requested,
            compacted,
        })) => {
            assert_eq!(requested, start);
            assert_eq!(compacted, revs[15]);
        }
        other => panic!("expected Expired, got {other:?}"),
    }
    assert!(w.next().await.is_none(), "the stream ends after Expired");
}

/// Data, revisions, history and the compaction point survive a clean
/// reopen; revisions continue from the stored one.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reopen_keeps_everything() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (revs, objects) = {
        let store = RedbStore::open(config(&dir)).expect("open");
        let revs = create_n(&*store, "r", 10).await;
        store.compact(revs[2]).await.expect("compact");
        let objects = store
            .list(&scope(), &ListOptions::default())
            .await
            .expect("list");
        (revs, objects.items)
    };
    let store = RedbStore::open(config(&dir)).expect("reopen");
    assert_eq!(store.current_revision().await.expect("rev"), revs[9]);
    assert_eq!(store.compacted_revision().await.expect("rev"), revs[2]);
    let listed = store
        .list(&scope(), &ListOptions::default())
        .await
        .expect("list");
    assert_eq!(listed.items, objects);
    assert_eq!(listed.revision, revs[9]);
    // History from before the restart is still resumable.
    let mut w = store.watch(&scope(), &after(revs[4])).await.expect("watch");
    for r in &revs[5..] {
        assert_eq!(w.next().await.expect("event").expect("ok").revision, *r);
    }
    let next = create_n(&*store, "s", 1).await;
    assert_eq!(next[0], revs[9] + 1);
    assert_eq!(
        w.next().await.expect("event").expect("ok").revision,
        next[0]
    );
    assert!(matches!(
        store.watch(&scope(), &after(revs[1])).await,
        Err(StoreError::Expired { .. })
    ));
}

/// The background task keeps `history_limit` events.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn automatic_compaction_keeps_history_limit() {
    let dir = tempfile::tempdir().expect("tempdir");
    let store = RedbStore::open(RedbStoreConfig {
        history_limit: 10,
        compaction_interval: Duration::from_millis(50),
        ..config(&dir)
    })
    .expect("open");
    let revs = create_n(&*store, "a", 30).await;
    let last = revs[29];
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    while store.compacted_revision().await.expect("rev") != last - 10 {
        assert!(tokio::time::Instant::now() < deadline, "no compaction");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert!(store.watch(&scope(), &after(last - 11)).await.is_err());
    let mut w = store
        .watch(&scope(), &after(last - 10))
        .await
        .expect("watch");
    assert_eq!(
        w.next().await.expect("event").expect("ok").revision,
        last - 9
    );
}

/// Concurrent writes are group-committed yet each gets its own revision,
/// the batch's revisions are consecutive, and a request refused within a
/// batch fails alone.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn group_commit_isolates_requests() {
    let (store, _dir) = open();
    let start = store.current_revision().await.expect("rev");
    let tasks: Vec<_> = (0..60)
        .map(|i| {
            let store = store.clone();
            tokio::spawn(async move {
                // Every third request races for the same key.
                let name = if i % 3 == 0 {
                    "same".to_string()
                } else {
                    format!("n{i}")
                };
                store.create(&key(&name), widget(&name)).await
            })
        })
        .collect();
    let mut revs = Vec::new();
    let mut already = 0;
    for t in tasks {
        match t.await.expect("task") {
            Ok(o) => revs.push(meta::resource_version(&o).expect("rv")),
            Err(StoreError::AlreadyExists { .. }) => already += 1,
            Err(e) => panic!("create: {e}"),
        }
    }
    assert_eq!(already, 19);
    revs.sort();
    let expected: Vec<Revision> = (start + 1..=start + 41).collect();
    assert_eq!(revs, expected);
    assert_eq!(store.current_revision().await.expect("rev"), start + 41);
}

/// A thousand live watchers each get every event.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_thousand_watchers() {
    let (store, _dir) = open();
    let start = store.current_revision().await.expect("rev");
    let mut streams = Vec::new();
    for _ in 0..1000 {
        streams.push(store.watch(&scope(), &after(start)).await.expect("watch"));
    }
    let readers: Vec<_> = streams
        .into_iter()
        .map(|mut s| {
            tokio::spawn(async move {
                let mut revs = Vec::new();
                while revs.len() < 20 {
                    revs.push(s.next().await.expect("event").expect("ok").revision);
                }
                revs
            })
        })
        .collect();
    let revs = create_n(&*store, "t", 20).await;
    let all = tokio::time::timeout(Duration::from_secs(20), async {
        let mut out = Vec::new();
        for r in readers {
            out.push(r.await.expect("reader"));
        }
        out
    })
    .await
    .expect("watchers keep up");
    for seen in all {
        assert_eq!(seen, revs);
    }
}

/// Bad input is refused with BadRequest, never a panic.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_input_is_refused() {
    let (store, _dir) = open();
    let bad_key = ObjectKey::namespaced("pods", "a/b", "x");
    assert!(matches!(
        store.create(&bad_key, widget("x")).await,
        Err(StoreError::BadRequest(_))
    ));
    assert!(matches!(
        store.create(&key("x"), json!({"metadata": 5})).await,
        Err(StoreError::BadRequest(_))
    ));
    assert!(matches!(
        store.create(&key("x"), json!("string")).await,
        Err(StoreError::BadRequest(_))
    ));
    assert!(matches!(
        store
            .list(
                &Scope {
                    resource: String::new(),
                    ..Default::default()
                },
                &ListOptions::default()
            )
            .await,
        Err(StoreError::BadRequest(_))
    ));
    // The store still works after refusing.
    store.create(&key("x"), widget("x")).await.expect("create");
}
