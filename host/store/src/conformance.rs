//! The conformance suite every [`Store`] backend must pass.
//!
//! Each check is an async function taking the store under test; it panics
//! (as a test does) when the backend misbehaves. Backends run them from
//! their own test files, one test per check, each on a fresh store:
//! the checks keep to namespaces of their own, but compaction and the
//! exact revisions of bookmarks are store-wide, so sharing a store between
//! checks running at once is not supported.
//!
//! [`run_all`] runs every check in turn.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use futures::StreamExt;
use serde_json::{Value, json};

use crate::lease;
use crate::{
    DeleteOutcome, EventType, FieldSelector, LabelSelector, ListOptions, ObjectKey, Preconditions,
    Revision, Scope, Store, StoreError, WatchEvent, WatchOptions, WatchStream, meta,
};

/// The namespaced resource the checks write.
pub const RESOURCE: &str = "widgets.conformance.orchd.dev";
/// A second resource, to check that scopes keep resources apart.
pub const OTHER_RESOURCE: &str = "gadgets.conformance.orchd.dev";
/// A cluster-scoped resource.
pub const CLUSTER_RESOURCE: &str = "clusterwidgets.conformance.orchd.dev";

const TIMEOUT: Duration = Duration::from_secs(20);

/// Calls macro `$test` with the name of every check, so each backend's
/// test file makes one test per check from the same list (a check added
/// here runs on every backend):
/// `orchd_store::each_conformance_check!(my_test_macro);`.
#[macro_export]
macro_rules! each_conformance_check {
    ($test:ident) => {
        $test!(
            create_get_already_exists,
            generation_bumps_only_on_spec_change,
            noop_update_writes_nothing,
            shared_answers_are_the_stored_objects,
            update_conflict_on_stale_resource_version,
            unconditional_update,
            delete_with_preconditions,
            finalizers,
            list_with_selectors,
            list_paging,
            watch_replays_history_then_live,
            watch_selector_transitions,
            watch_expired_after_compact,
            watch_bookmarks,
            leases,
            lease_race,
            guaranteed_update_under_concurrency,
            concurrent_writers_and_watchers,
            namespace_finalizers,
            graceful_delete,
        );
    };
}

/// Runs every check, each on a store from `make`.
pub async fn run_all(mut make: impl FnMut() -> Arc<dyn Store>) {
    macro_rules! run {
        ($($name:ident),* $(,)?) => { $( $name(make()).await; )* };
    }
    crate::each_conformance_check!(run);
}

fn unique_ns(prefix: &str) -> String {
    let id = uuid::Uuid::new_v4().simple().to_string();
    format!("{prefix}-{}", &id[..10])
}

fn key(ns: &str, name: &str) -> ObjectKey {
    ObjectKey::namespaced(RESOURCE, ns, name)
}

fn widget(ns: &str, name: &str, labels: Value, spec: Value) -> Value {
    json!({
        "apiVersion": "conformance.orchd.dev/v1",
        "kind": "Widget",
        "metadata": {"name": name, "namespace": ns, "labels": labels},
        "spec": spec,
    })
}

fn rv(object: &Value) -> Revision {
    meta::resource_version(object)
        .unwrap_or_else(|| panic!("object without a numeric resourceVersion: {object}"))
}

fn name_of(object: &Value) -> String {
    meta::meta_str(object, "name").unwrap_or("").to_string()
}

fn generation(object: &Value) -> i64 {
    object["metadata"]["generation"].as_i64().unwrap_or(-1)
}

fn scope(ns: Option<&str>) -> Scope {
    Scope {
        resource: RESOURCE.into(),
        namespace: ns.map(str::to_string),
        ..Default::default()
    }
}

fn from(after: Revision) -> WatchOptions {
    WatchOptions {
        after: Some(after),
        bookmark_interval: None,
    }
}

async fn next_event(stream: &mut WatchStream) -> WatchEvent {
    match tokio::time::timeout(TIMEOUT, stream.next()).await {
        Ok(Some(Ok(e))) => e,
        Ok(Some(Err(e))) => panic!("watch failed: {e}"),
        Ok(None) => panic!("watch ended"),
        Err(_) => panic!("no watch event within {TIMEOUT:?}"),
    }
}

/// The next event, as (type, name, revision).
async fn next_summary(stream: &mut WatchStream) -> (EventType, String, Revision) {
    let e = next_event(stream).await;
    assert_eq!(
        rv(&e.object),
        e.revision,
        "event object carries the event's revision"
    );
    (e.event_type, name_of(&e.object), e.revision)
}

async fn current(store: &dyn Store) -> Revision {
    store.current_revision().await.expect("current_revision")
}

/// Create sets the server-owned metadata; a second create of the key is
/// `AlreadyExists`; a missing key is `NotFound`.
pub async fn create_get_already_exists(store: Arc<dyn Store>) {
    let ns = unique_ns("create");
    let before = current(&*store).await;
    let mut input = widget(&ns, "a", json!({"app": "web"}), json!({"size": 1}));
    input["metadata"]["resourceVersion"] = json!("12345678");
    let created = store.create(&key(&ns, "a"), input).await.expect("create");
    let uid = meta::meta_str(&created, "uid").expect("uid").to_string();
    assert!(
        !uid.is_empty(),
        "the store sets a uid when the caller did not"
    );
    // The API layer assigns uids before defaulting; the store keeps them.
    let mut assigned = widget(&ns, "with-uid", json!({}), json!({}));
    assigned["metadata"]["uid"] = json!("assigned-by-api");
    let kept = store
        .create(&key(&ns, "with-uid"), assigned)
        .await
        .expect("create with uid");
    assert_eq!(meta::meta_str(&kept, "uid"), Some("assigned-by-api"));
    assert!(meta::meta_str(&created, "creationTimestamp").is_some());
    assert_eq!(generation(&created), 1);
    let r1 = rv(&created);
    assert!(r1 > before, "revision grows: {r1} > {before}");
    assert!(current(&*store).await >= r1);
    assert_eq!(created["spec"]["size"], json!(1));
    assert_eq!(created["metadata"]["labels"]["app"], json!("web"));

    let got = store.get(&key(&ns, "a")).await.expect("get");
    assert_eq!(got, created);

    match store
        .create(&key(&ns, "a"), widget(&ns, "a", json!({}), json!({})))
        .await
    {
        Err(StoreError::AlreadyExists { .. }) => {}
        other => panic!("second create: {other:?}"),
    }
    assert_eq!(store.get(&key(&ns, "a")).await.expect("get"), created);

    match store.get(&key(&ns, "missing")).await {
        Err(StoreError::NotFound { .. }) => {}
        other => panic!("get missing: {other:?}"),
    }

    let b = store
        .create(&key(&ns, "b"), widget(&ns, "b", json!({}), json!({})))
        .await
        .expect("create b");
    assert!(rv(&b) > r1);
    assert_ne!(meta::meta_str(&b, "uid"), Some(uid.as_str()));

    let ck = ObjectKey::cluster(CLUSTER_RESOURCE, &ns);
    let c = store
        .create(&ck, json!({"metadata": {"name": ns}, "spec": {}}))
        .await
        .expect("create cluster-scoped");
    assert_eq!(store.get(&ck).await.expect("get cluster-scoped"), c);

    match store.create(&key(&ns, "bad"), json!([1, 2])).await {
        Err(StoreError::BadRequest(_)) => {}
        other => panic!("create of a non-map: {other:?}"),
    }
}

/// `generation` follows changes outside metadata and status only; uid and
/// creationTimestamp survive updates that try to change them.
pub async fn generation_bumps_only_on_spec_change(store: Arc<dyn Store>) {
    let ns = unique_ns("gen");
    let k = key(&ns, "a");
    let created = store
        .create(&k, widget(&ns, "a", json!({}), json!({"size": 1})))
        .await
        .expect("create");

    let mut labels = created.clone();
    labels["metadata"]["labels"] = json!({"new": "label"});
    labels["metadata"]["uid"] = json!("forged");
    labels["metadata"]["creationTimestamp"] = json!("1999-01-01T00:00:00Z");
    let after_labels = store.update(&k, labels).await.expect("update labels");
    assert_eq!(generation(&after_labels), 1);
    assert!(rv(&after_labels) > rv(&created));
    assert_eq!(after_labels["metadata"]["uid"], created["metadata"]["uid"]);
    assert_eq!(
        after_labels["metadata"]["creationTimestamp"],
        created["metadata"]["creationTimestamp"]
    );

    let mut status = after_labels.clone();
    status["status"] = json!({"ready": true});
    let after_status = store.update(&k, status).await.expect("update status");
    assert_eq!(generation(&after_status), 1);
    assert!(rv(&after_status) > rv(&after_labels));

    let mut spec = after_status.clone();
    spec["spec"]["size"] = json!(2);
    let after_spec = store.update(&k, spec).await.expect("update spec");
    assert_eq!(generation(&after_spec), 2);

    let mut spec = after_spec.clone();
    spec["spec"] = json!({"size": 3, "extra": true});
    let again = store.update(&k, spec).await.expect("update spec again");
    assert_eq!(generation(&again), 3);
    assert_eq!(store.get(&k).await.expect("get"), again);
}

/// An update that changes nothing writes nothing: same resourceVersion, no
/// event (as Kubernetes).
pub async fn noop_update_writes_nothing(store: Arc<dyn Store>) {
    let ns = unique_ns("noop");
    let k = key(&ns, "a");
    let created = store
        .create(&k, widget(&ns, "a", json!({}), json!({"size": 1})))
        .await
        .expect("create");
    let mut w = store
        .watch(&scope(Some(&ns)), &from(rv(&created)))
        .await
        .expect("watch");
    let same = store
        .update(&k, created.clone())
        .await
        .expect("no-op update");
    assert_eq!(same, created);
    let mut changed = created.clone();
    changed["spec"]["size"] = json!(2);
    let changed = store.update(&k, changed).await.expect("update");
    assert_eq!(
        next_summary(&mut w).await,
        (EventType::Modified, "a".into(), rv(&changed))
    );
}

/// `create_shared` and `update_shared` answer with what `get` then reads,
/// and refuse what `create` and `update` refuse.
pub async fn shared_answers_are_the_stored_objects(store: Arc<dyn Store>) {
    let ns = unique_ns("shared");
    let k = key(&ns, "a");
    let created = store
        .create_shared(&k, widget(&ns, "a", json!({}), json!({"size": 1})))
        .await
        .expect("create");
    assert_eq!(*created, store.get(&k).await.expect("get"));
    assert!(matches!(
        store
            .create_shared(&k, widget(&ns, "a", json!({}), json!({})))
            .await,
        Err(StoreError::AlreadyExists { .. })
    ));
    let mut changed = (*created).clone();
    changed["spec"]["size"] = json!(2);
    let updated = store
        .update_shared(&k, changed.clone())
        .await
        .expect("update");
    assert_eq!(updated["spec"]["size"], json!(2));
    assert!(rv(&updated) > rv(&created));
    assert_eq!(*updated, store.get(&k).await.expect("get"));
    let same = store
        .update_shared(&k, (*updated).clone())
        .await
        .expect("no-op update");
    assert_eq!(same, updated);
    // `changed` still carries the first resourceVersion: stale now.
    assert!(matches!(
        store.update_shared(&k, changed).await,
        Err(StoreError::Conflict { .. })
    ));
    // A shared read sees each write as soon as it is answered, the delete
    // included.
    assert_eq!(store.get_shared(&k).await.expect("get_shared"), updated);
    for size in 3..6 {
        let mut next = (*store.get_shared(&k).await.expect("get_shared")).clone();
        next["spec"]["size"] = json!(size);
        let written = store.update_shared(&k, next).await.expect("update");
        let read = store.get_shared(&k).await.expect("get_shared");
        assert_eq!(read, written);
        assert_eq!(read["spec"]["size"], json!(size));
    }
    store
        .delete(&k, &Preconditions::default())
        .await
        .expect("delete");
    assert!(matches!(
        store.get_shared(&k).await,
        Err(StoreError::NotFound { .. })
    ));
    assert!(matches!(
        store.get(&k).await,
        Err(StoreError::NotFound { .. })
    ));
}

/// A stale resourceVersion is a `Conflict` with Kubernetes' message; a
/// missing object is `NotFound`.
pub async fn update_conflict_on_stale_resource_version(store: Arc<dyn Store>) {
    let ns = unique_ns("conflict");
    let k = key(&ns, "a");
    let v1 = store
        .create(&k, widget(&ns, "a", json!({}), json!({"n": 1})))
        .await
        .expect("create");
    let mut next = v1.clone();
    next["spec"]["n"] = json!(2);
    let v2 = store
        .update(&k, next)
        .await
        .expect("update with current rv");
    assert!(rv(&v2) > rv(&v1));

    let mut stale = v1.clone();
    stale["spec"]["n"] = json!(3);
    match store.update(&k, stale).await {
        Err(StoreError::Conflict { message, .. }) => assert!(
            message.contains("the object has been modified"),
            "message: {message}"
        ),
        other => panic!("stale update: {other:?}"),
    }
    assert_eq!(store.get(&k).await.expect("get"), v2);

    let mut garbage = v2.clone();
    garbage["metadata"]["resourceVersion"] = json!("not-a-number");
    garbage["spec"]["n"] = json!(4);
    assert!(
        matches!(
            store.update(&k, garbage).await,
            Err(StoreError::BadRequest(_) | StoreError::Conflict { .. })
        ),
        "unparsable resourceVersion is refused"
    );

    match store
        .update(
            &key(&ns, "missing"),
            widget(&ns, "missing", json!({}), json!({})),
        )
        .await
    {
        Err(StoreError::NotFound { .. }) => {}
        other => panic!("update of a missing object: {other:?}"),
    }
}

/// Without a resourceVersion (or with an empty one) an update always wins.
pub async fn unconditional_update(store: Arc<dyn Store>) {
    let ns = unique_ns("uncond");
    let k = key(&ns, "a");
    let v1 = store
        .create(&k, widget(&ns, "a", json!({}), json!({"n": 1})))
        .await
        .expect("create");
    let mut other = v1.clone();
    other["spec"]["n"] = json!(2);
    store.update(&k, other).await.expect("update");

    let mut blind = v1.clone();
    meta::set_resource_version(&mut blind, None);
    blind["spec"]["n"] = json!(3);
    let v3 = store.update(&k, blind).await.expect("unconditional update");
    assert_eq!(v3["spec"]["n"], json!(3));

    let mut empty = v1.clone();
    empty["metadata"]["resourceVersion"] = json!("");
    empty["spec"]["n"] = json!(4);
    let v4 = store
        .update(&k, empty)
        .await
        .expect("empty rv is unconditional");
    assert_eq!(v4["spec"]["n"], json!(4));
    assert!(rv(&v4) > rv(&v3));
    assert_eq!(v4["metadata"]["uid"], v1["metadata"]["uid"]);
}

/// A delete with a grace period marks the object and keeps it (updates
/// do not remove it), a later one may only shorten the period, and a
/// delete with grace 0 removes it.
pub async fn graceful_delete(store: Arc<dyn Store>) {
    let ns = unique_ns("graceful");
    let k = key(&ns, "a");
    let v1 = store
        .create(&k, widget(&ns, "a", json!({}), json!({})))
        .await
        .expect("create");
    let none = Preconditions::default();
    let marked = match store
        .delete_with_grace(&k, &none, 30)
        .await
        .expect("delete")
    {
        DeleteOutcome::Finalizing(o) => o,
        other => panic!("a graceful delete keeps the object: {other:?}"),
    };
    assert_eq!(marked["metadata"]["deletionGracePeriodSeconds"], 30);
    let deadline: jiff::Timestamp = meta::meta_str(&marked, "deletionTimestamp")
        .expect("deletionTimestamp")
        .parse()
        .expect("a timestamp");
    let ahead = deadline.duration_since(jiff::Timestamp::now()).as_secs();
    assert!((27..=31).contains(&ahead), "{ahead}");
    // A status update while terminating keeps it, and its deletion fields.
    let mut next = marked.clone();
    next["status"] = json!({"phase": "Running"});
    let updated = store.update(&k, next).await.expect("update");
    assert_eq!(
        updated["metadata"]["deletionTimestamp"],
        marked["metadata"]["deletionTimestamp"]
    );
    // Longer: kept as it is; shorter: the deadline moves closer.
    match store
        .delete_with_grace(&k, &none, 60)
        .await
        .expect("delete")
    {
        DeleteOutcome::Finalizing(o) => assert_eq!(o["metadata"]["deletionGracePeriodSeconds"], 30),
        other => panic!("{other:?}"),
    }
    match store.delete_with_grace(&k, &none, 5).await.expect("delete") {
        DeleteOutcome::Finalizing(o) => assert_eq!(o["metadata"]["deletionGracePeriodSeconds"], 5),
        other => panic!("{other:?}"),
    }
    let wrong = Preconditions {
        uid: Some("other".into()),
        resource_version: None,
    };
    assert!(matches!(
        store.delete_with_grace(&k, &wrong, 0).await,
        Err(StoreError::Conflict { .. })
    ));
    let same = Preconditions {
        uid: meta::meta_str(&v1, "uid").map(str::to_string),
        resource_version: None,
    };
    assert!(matches!(
        store.delete_with_grace(&k, &same, 0).await.expect("delete"),
        DeleteOutcome::Deleted(_)
    ));
    assert!(matches!(
        store.get(&k).await,
        Err(StoreError::NotFound { .. })
    ));
}

/// Delete honours uid and resourceVersion preconditions; the deleted
/// object's last state carries the delete's revision.
pub async fn delete_with_preconditions(store: Arc<dyn Store>) {
    let ns = unique_ns("delete");
    let k = key(&ns, "a");
    let v1 = store
        .create(&k, widget(&ns, "a", json!({}), json!({})))
        .await
        .expect("create");
    let uid = meta::meta_str(&v1, "uid").unwrap_or_default().to_string();

    let wrong_uid = Preconditions {
        uid: Some("someone-else".into()),
        resource_version: None,
    };
    assert!(matches!(
        store.delete(&k, &wrong_uid).await,
        Err(StoreError::Conflict { .. })
    ));
    let wrong_rv = Preconditions {
        uid: None,
        resource_version: Some(rv(&v1) + 1000),
    };
    assert!(matches!(
        store.delete(&k, &wrong_rv).await,
        Err(StoreError::Conflict { .. })
    ));
    assert_eq!(store.get(&k).await.expect("still there"), v1);

    let right = Preconditions {
        uid: Some(uid),
        resource_version: Some(rv(&v1)),
    };
    let last = match store.delete(&k, &right).await.expect("delete") {
        DeleteOutcome::Deleted(last) => last,
        other => panic!("delete without finalizers: {other:?}"),
    };
    assert!(rv(&last) > rv(&v1));
    assert_eq!(rv(&last), current(&*store).await);
    assert_eq!(last["metadata"]["uid"], v1["metadata"]["uid"]);
    assert!(matches!(
        store.get(&k).await,
        Err(StoreError::NotFound { .. })
    ));
    assert!(matches!(
        store.delete(&k, &Preconditions::default()).await,
        Err(StoreError::NotFound { .. })
    ));

    // Unconditional delete.
    let k2 = key(&ns, "b");
    store
        .create(&k2, widget(&ns, "b", json!({}), json!({})))
        .await
        .expect("create b");
    assert!(matches!(
        store.delete(&k2, &Preconditions::default()).await,
        Ok(DeleteOutcome::Deleted(_))
    ));
}

/// Delete of an object with finalizers marks it; updates removing the last
/// finalizer remove it, with a `Deleted` event.
pub async fn finalizers(store: Arc<dyn Store>) {
    let ns = unique_ns("final");
    let k = key(&ns, "a");
    let mut input = widget(&ns, "a", json!({}), json!({}));
    input["metadata"]["finalizers"] = json!(["x.example.com/a", "x.example.com/b"]);
    let v1 = store.create(&k, input).await.expect("create");
    let mut w = store
        .watch(&scope(Some(&ns)), &from(rv(&v1)))
        .await
        .expect("watch");

    let marked = match store
        .delete(&k, &Preconditions::default())
        .await
        .expect("delete")
    {
        DeleteOutcome::Finalizing(o) => o,
        other => panic!("delete with finalizers: {other:?}"),
    };
    assert!(meta::meta_str(&marked, "deletionTimestamp").is_some());
    assert!(rv(&marked) > rv(&v1));
    assert_eq!(store.get(&k).await.expect("get"), marked);
    assert_eq!(
        next_summary(&mut w).await,
        (EventType::Modified, "a".into(), rv(&marked))
    );

    // A second delete changes nothing.
    match store
        .delete(&k, &Preconditions::default())
        .await
        .expect("delete again")
    {
        DeleteOutcome::Finalizing(o) => assert_eq!(rv(&o), rv(&marked)),
        other => panic!("second delete: {other:?}"),
    }

    // Removing one finalizer (and trying to clear deletionTimestamp) keeps
    // the object, still terminating.
    let mut one = marked.clone();
    one["metadata"]["finalizers"] = json!(["x.example.com/b"]);
    one["metadata"]
        .as_object_mut()
        .map(|m| m.remove("deletionTimestamp"));
    let v3 = store.update(&k, one).await.expect("remove one finalizer");
    assert_eq!(
        v3["metadata"]["deletionTimestamp"],
        marked["metadata"]["deletionTimestamp"]
    );
    assert_eq!(
        next_summary(&mut w).await,
        (EventType::Modified, "a".into(), rv(&v3))
    );

    let mut none = v3.clone();
    none["metadata"]["finalizers"] = json!([]);
    let last = store.update(&k, none).await.expect("remove last finalizer");
    assert!(rv(&last) > rv(&v3));
    assert!(matches!(
        store.get(&k).await,
        Err(StoreError::NotFound { .. })
    ));
    assert_eq!(
        next_summary(&mut w).await,
        (EventType::Deleted, "a".into(), rv(&last))
    );
}

/// Lists honour namespace, label and field selectors, in key order, each
/// item with its resourceVersion.
pub async fn list_with_selectors(store: Arc<dyn Store>) {
    let ns1 = unique_ns("list1");
    let ns2 = unique_ns("list2");
    let mut max_rv = 0;
    for (ns, name, app, node) in [
        (&ns1, "c", "web", "n1"),
        (&ns1, "a", "web", "n2"),
        (&ns1, "b", "db", "n1"),
        (&ns2, "a", "web", "n1"),
        (&ns2, "d", "cache", ""),
    ] {
        let mut o = widget(ns, name, json!({"app": app}), json!({}));
        if !node.is_empty() {
            o["spec"]["nodeName"] = json!(node);
        }
        max_rv = max_rv.max(rv(&store.create(&key(ns, name), o).await.expect("create")));
    }
    store
        .create(
            &ObjectKey::namespaced(OTHER_RESOURCE, &ns1, "zz"),
            json!({"metadata": {"name": "zz"}}),
        )
        .await
        .expect("create other resource");

    let names = |l: &crate::ObjectList| l.items.iter().map(name_of).collect::<Vec<_>>();
    let list = |sc: Scope| {
        let store = store.clone();
        async move {
            store
                .list(&sc, &ListOptions::default())
                .await
                .expect("list")
        }
    };

    let l = list(scope(Some(&ns1))).await;
    assert_eq!(names(&l), ["a", "b", "c"]);
    assert!(l.revision >= max_rv);
    assert!(l.continue_token.is_none());
    for item in &l.items {
        assert!(rv(item) <= l.revision);
        assert_eq!(item["metadata"]["namespace"], json!(ns1));
    }

    let all = list(scope(None)).await;
    let ours: Vec<_> = all
        .items
        .iter()
        .filter(|o| {
            let ns = meta::meta_str(o, "namespace").unwrap_or("");
            ns == ns1 || ns == ns2
        })
        .map(|o| {
            format!(
                "{}/{}",
                meta::meta_str(o, "namespace").unwrap_or(""),
                name_of(o)
            )
        })
        .collect();
    let mut expected = vec![
        format!("{ns1}/a"),
        format!("{ns1}/b"),
        format!("{ns1}/c"),
        format!("{ns2}/a"),
        format!("{ns2}/d"),
    ];
    expected.sort();
    assert_eq!(ours, expected);

    let mut s = scope(Some(&ns1));
    s.label_selector = LabelSelector::parse("app=web").expect("selector");
    assert_eq!(names(&list(s).await), ["a", "c"]);

    let mut s = scope(Some(&ns1));
    s.label_selector = LabelSelector::parse("app notin (web)").expect("selector");
    assert_eq!(names(&list(s).await), ["b"]);

    let mut s = scope(Some(&ns1));
    s.field_selector = FieldSelector::parse("spec.nodeName=n1").expect("selector");
    assert_eq!(names(&list(s).await), ["b", "c"]);

    let mut s = scope(Some(&ns2));
    s.field_selector = FieldSelector::parse("spec.nodeName=").expect("selector");
    assert_eq!(names(&list(s).await), ["d"]);

    let mut s = scope(Some(&ns1));
    s.field_selector = FieldSelector::parse("metadata.name!=a").expect("selector");
    s.label_selector = LabelSelector::parse("app").expect("selector");
    assert_eq!(names(&list(s).await), ["b", "c"]);

    let l = list(Scope {
        resource: OTHER_RESOURCE.into(),
        namespace: Some(ns1.clone()),
        ..Default::default()
    })
    .await;
    assert_eq!(names(&l), ["zz"]);

    let bad = store
        .list(
            &scope(Some(&ns1)),
            &ListOptions {
                limit: Some(1),
                continue_token: Some("definitely not a token".into()),
            },
        )
        .await;
    assert!(matches!(bad, Err(StoreError::BadRequest(_))), "{bad:?}");
}

/// `limit` + `continue` pages cover every item exactly once, in key order,
/// and every page reports the first page's revision.
pub async fn list_paging(store: Arc<dyn Store>) {
    let ns = unique_ns("page");
    let mut all = Vec::new();
    for i in 0..23 {
        let name = format!("w{i:03}");
        let labels = if i % 3 == 0 {
            json!({"pick": "yes"})
        } else {
            json!({})
        };
        store
            .create(&key(&ns, &name), widget(&ns, &name, labels, json!({})))
            .await
            .expect("create");
        all.push(name);
    }
    let picked: Vec<_> = all
        .iter()
        .enumerate()
        .filter(|(i, _)| i % 3 == 0)
        .map(|(_, n)| n.clone())
        .collect();

    for (sc, expected, limit) in [
        (scope(Some(&ns)), &all, 4),
        (scope(Some(&ns)), &all, 1),
        (scope(Some(&ns)), &all, 23),
        (
            Scope {
                label_selector: LabelSelector::parse("pick=yes").expect("selector"),
                ..scope(Some(&ns))
            },
            &picked,
            3,
        ),
    ] {
        let mut seen = Vec::new();
        let mut token = None;
        let mut first_revision = None;
        let mut pages = 0;
        loop {
            pages += 1;
            assert!(pages < 100, "paging does not end");
            let page = store
                .list(
                    &sc,
                    &ListOptions {
                        limit: Some(limit),
                        continue_token: token.take(),
                    },
                )
                .await
                .expect("list page");
            assert!(page.items.len() <= limit);
            let rev = *first_revision.get_or_insert(page.revision);
            assert_eq!(
                page.revision, rev,
                "continued pages keep the first revision"
            );
            if pages == 1
                && sc.label_selector.is_empty()
                && let Some(n) = page.remaining_item_count
            {
                assert_eq!(n as usize, expected.len() - page.items.len());
            }
            seen.extend(page.items.iter().map(name_of));
            match page.continue_token {
                Some(t) => token = Some(t),
                None => break,
            }
            // Writes between pages must not disturb the pages to come.
            if pages == 2 {
                store
                    .create(
                        &ObjectKey::namespaced(RESOURCE, &format!("{ns}-other"), "x"),
                        widget(&format!("{ns}-other"), "x", json!({}), json!({})),
                    )
                    .await
                    .ok();
            }
        }
        assert_eq!(&seen, expected, "limit {limit}");
    }
}

/// A watch from a past revision replays history, then continues live, with
/// no gap and no duplicate across the handover; a watch "from now" sees
/// only later writes; other namespaces and resources stay out.
pub async fn watch_replays_history_then_live(store: Arc<dyn Store>) {
    let ns = unique_ns("watch");
    let start = current(&*store).await;
    let mut expected = Vec::new();
    for i in 0..10 {
        let name = format!("h{i}");
        let o = store
            .create(&key(&ns, &name), widget(&ns, &name, json!({}), json!({})))
            .await
            .expect("create");
        expected.push((EventType::Added, name, rv(&o)));
    }
    store
        .create(
            &ObjectKey::namespaced(OTHER_RESOURCE, &ns, "noise"),
            json!({"metadata": {"name": "noise"}}),
        )
        .await
        .expect("create noise");
    store
        .create(
            &key(&format!("{ns}-x"), "noise"),
            widget(&format!("{ns}-x"), "noise", json!({}), json!({})),
        )
        .await
        .expect("create noise");

    // Writes keep coming while the watch starts, so the handover from
    // history to live events happens under load.
    let writer = {
        let store = store.clone();
        let ns = ns.clone();
        tokio::spawn(async move {
            let mut out = Vec::new();
            for i in 0..40 {
                let name = format!("h{}", i % 10);
                let k = key(&ns, &name);
                let r = store
                    .guaranteed_update(&k, &|mut o| {
                        o["spec"]["i"] = json!(i);
                        Ok(o)
                    })
                    .await
                    .expect("update");
                out.push((EventType::Modified, name, rv(&r)));
                if i % 8 == 0 {
                    tokio::task::yield_now().await;
                }
            }
            out
        })
    };
    let mut from_start = store
        .watch(&scope(Some(&ns)), &from(start))
        .await
        .expect("watch from start");
    let mut from_now = store
        .watch(&scope(Some(&ns)), &WatchOptions::default())
        .await
        .expect("watch from now");
    expected.extend(writer.await.expect("writer"));
    let last = store
        .create(&key(&ns, "last"), widget(&ns, "last", json!({}), json!({})))
        .await
        .expect("create last");
    expected.push((EventType::Added, "last".into(), rv(&last)));

    for e in &expected {
        assert_eq!(&next_summary(&mut from_start).await, e);
    }
    // The "from now" watch started somewhere during the writes: it sees a
    // suffix of the events, in order, ending with the last.
    let mut got = Vec::new();
    loop {
        let e = next_summary(&mut from_now).await;
        let done = e.1 == "last";
        got.push(e);
        if done {
            break;
        }
    }
    assert!(got.len() <= expected.len());
    let suffix = &expected[expected.len() - got.len()..];
    assert_eq!(got, suffix);
}

/// With a selector, objects starting to match are `Added`, stopping to
/// match `Deleted`; non-matching changes are not sent.
pub async fn watch_selector_transitions(store: Arc<dyn Store>) {
    let ns = unique_ns("selwatch");
    let start = current(&*store).await;
    let mut by_label = store
        .watch(
            &Scope {
                label_selector: LabelSelector::parse("app=web").expect("selector"),
                ..scope(Some(&ns))
            },
            &from(start),
        )
        .await
        .expect("watch");
    let mut by_field = store
        .watch(
            &Scope {
                field_selector: FieldSelector::parse("spec.nodeName=n1").expect("selector"),
                ..scope(Some(&ns))
            },
            &from(start),
        )
        .await
        .expect("watch");

    let x = store
        .create(
            &key(&ns, "x"),
            widget(&ns, "x", json!({"app": "web"}), json!({"nodeName": "n1"})),
        )
        .await
        .expect("create x");
    let y = store
        .create(
            &key(&ns, "y"),
            widget(&ns, "y", json!({"app": "db"}), json!({"nodeName": "n2"})),
        )
        .await
        .expect("create y");
    let y2 = store
        .guaranteed_update(&key(&ns, "y"), &relabel(json!({"app": "web"}), "n2"))
        .await
        .expect("y starts matching the label");
    let x2 = store
        .guaranteed_update(&key(&ns, "x"), &relabel(json!({"app": "db"}), "n1"))
        .await
        .expect("x stops matching the label");
    let x3 = store
        .guaranteed_update(&key(&ns, "x"), &relabel(json!({"app": "db"}), "n2"))
        .await
        .expect("x stops matching the field");
    let y3 = store
        .guaranteed_update(&key(&ns, "y"), &relabel(json!({"app": "web"}), "n1"))
        .await
        .expect("y starts matching the field");
    let y4 = match store
        .delete(&key(&ns, "y"), &Preconditions::default())
        .await
        .expect("delete y")
    {
        DeleteOutcome::Deleted(o) => o,
        other => panic!("{other:?}"),
    };
    let marker = store
        .create(
            &key(&ns, "z"),
            widget(&ns, "z", json!({"app": "web"}), json!({"nodeName": "n1"})),
        )
        .await
        .expect("create marker");

    let label_expected = [
        (EventType::Added, "x".to_string(), rv(&x)),
        (EventType::Added, "y".into(), rv(&y2)),
        (EventType::Deleted, "x".into(), rv(&x2)),
        (EventType::Modified, "y".into(), rv(&y3)),
        (EventType::Deleted, "y".into(), rv(&y4)),
        (EventType::Added, "z".into(), rv(&marker)),
    ];
    for e in &label_expected {
        assert_eq!(&next_summary(&mut by_label).await, e);
    }
    let field_expected = [
        (EventType::Added, "x".to_string(), rv(&x)),
        (EventType::Modified, "x".into(), rv(&x2)),
        (EventType::Deleted, "x".into(), rv(&x3)),
        (EventType::Added, "y".into(), rv(&y3)),
        (EventType::Deleted, "y".into(), rv(&y4)),
        (EventType::Added, "z".into(), rv(&marker)),
    ];
    for e in &field_expected {
        assert_eq!(&next_summary(&mut by_field).await, e);
    }
    let _ = y;
}

fn relabel(
    labels: Value,
    node: &'static str,
) -> impl Fn(Value) -> crate::Result<Value> + Send + Sync {
    move |mut o| {
        o["metadata"]["labels"] = labels.clone();
        o["spec"]["nodeName"] = json!(node);
        Ok(o)
    }
}

/// After `compact(r)`, watches from before `r` fail with `Expired`; from
/// `r` on they still work.
pub async fn watch_expired_after_compact(store: Arc<dyn Store>) {
    let ns = unique_ns("compact");
    let mut revs = Vec::new();
    for i in 0..5 {
        let name = format!("c{i}");
        let o = store
            .create(&key(&ns, &name), widget(&ns, &name, json!({}), json!({})))
            .await
            .expect("create");
        revs.push(rv(&o));
    }
    store.compact(revs[2]).await.expect("compact");
    assert_eq!(
        store
            .compacted_revision()
            .await
            .expect("compacted_revision"),
        revs[2]
    );
    // Compacting to an older revision changes nothing.
    store.compact(revs[0]).await.expect("compact older");
    assert_eq!(
        store
            .compacted_revision()
            .await
            .expect("compacted_revision"),
        revs[2]
    );

    match store.watch(&scope(Some(&ns)), &from(revs[1])).await {
        Err(StoreError::Expired {
            requested,
            compacted,
        }) => {
            assert_eq!(requested, revs[1]);
            assert_eq!(compacted, revs[2]);
        }
        Err(e) => panic!("watch before the compaction point: {e}"),
        Ok(_) => panic!("watch before the compaction point succeeded"),
    }
    let mut w = store
        .watch(&scope(Some(&ns)), &from(revs[2]))
        .await
        .expect("watch at the compaction point");
    assert_eq!(
        next_summary(&mut w).await,
        (EventType::Added, "c3".into(), revs[3])
    );
    assert_eq!(
        next_summary(&mut w).await,
        (EventType::Added, "c4".into(), revs[4])
    );

    let future = current(&*store).await + 1000;
    assert!(
        store.compact(future).await.is_err(),
        "compacting the future"
    );

    // Objects survive compaction.
    let l = store
        .list(&scope(Some(&ns)), &ListOptions::default())
        .await
        .expect("list");
    assert_eq!(l.items.len(), 5);
}

/// An idle watch with a bookmark interval gets bookmarks carrying the
/// newest revision.
pub async fn watch_bookmarks(store: Arc<dyn Store>) {
    let ns = unique_ns("bookmark");
    let interval = Duration::from_millis(150);
    let at = current(&*store).await;
    let mut w = store
        .watch(
            &scope(Some(&ns)),
            &WatchOptions {
                after: Some(at),
                bookmark_interval: Some(interval),
            },
        )
        .await
        .expect("watch");
    let started = tokio::time::Instant::now();
    let b = next_event(&mut w).await;
    assert_eq!(b.event_type, EventType::Bookmark);
    assert!(started.elapsed() >= interval / 2, "bookmark came too early");
    assert!(b.revision >= at);
    assert_eq!(
        b.object["metadata"]["resourceVersion"],
        json!(b.revision.to_string())
    );

    let o = store
        .create(&key(&ns, "a"), widget(&ns, "a", json!({}), json!({})))
        .await
        .expect("create");
    // Writes elsewhere advance the bookmark's revision too.
    let elsewhere = store
        .create(
            &key(&format!("{ns}-x"), "b"),
            widget(&format!("{ns}-x"), "b", json!({}), json!({})),
        )
        .await
        .expect("create elsewhere");
    let e = next_event(&mut w).await;
    assert_eq!(
        (e.event_type, e.revision),
        (EventType::Added, rv(&o)),
        "the write comes before further bookmarks"
    );
    let b2 = next_event(&mut w).await;
    assert_eq!(b2.event_type, EventType::Bookmark);
    assert!(
        b2.revision >= rv(&elsewhere),
        "bookmark reflects later writes"
    );
}

/// Lease helpers: acquire, refusal of a second holder, renew, takeover
/// after expiry, release.
pub async fn leases(store: Arc<dyn Store>) {
    let ns = unique_ns("lease");
    let d = Duration::from_secs(30);
    let s = &*store;

    let a = lease::acquire(s, &ns, "leader", "alice", d)
        .await
        .expect("acquire");
    assert!(a.held);
    assert_eq!(a.holder.as_deref(), Some("alice"));
    assert_eq!(a.transitions, 0);
    assert_eq!(a.lease["apiVersion"], json!("coordination.k8s.io/v1"));
    assert_eq!(a.lease["kind"], json!("Lease"));
    assert_eq!(a.lease["spec"]["leaseDurationSeconds"], json!(30));
    let renew_time = a.lease["spec"]["renewTime"].as_str().unwrap_or("");
    assert_eq!(renew_time.len(), "2026-11-23T21:36:30.123456Z".len());
    assert!(renew_time.ends_with('Z'));

    let b = lease::acquire(s, &ns, "leader", "bob", d)
        .await
        .expect("acquire by bob");
    assert!(!b.held);
    assert_eq!(b.holder.as_deref(), Some("alice"));

    let again = lease::acquire(s, &ns, "leader", "alice", d)
        .await
        .expect("re-acquire by holder");
    assert!(again.held);
    assert_eq!(again.transitions, 0);

    let r = lease::renew(s, &ns, "leader", "alice", d)
        .await
        .expect("renew");
    assert!(r.held);
    assert!(matches!(
        lease::renew(s, &ns, "leader", "bob", d).await,
        Err(StoreError::Conflict { .. })
    ));
    assert!(matches!(
        lease::renew(s, &ns, "missing", "bob", d).await,
        Err(StoreError::NotFound { .. })
    ));

    // Alice stops renewing: make her last renewal an hour old.
    let key = lease::lease_key(&ns, "leader");
    store
        .guaranteed_update(&key, &|mut l| {
            l["spec"]["renewTime"] = json!("2000-01-01T00:00:00.000000Z");
            Ok(l)
        })
        .await
        .expect("age the lease");
    let b = lease::acquire(s, &ns, "leader", "bob", d)
        .await
        .expect("takeover");
    assert!(b.held);
    assert_eq!(b.holder.as_deref(), Some("bob"));
    assert_eq!(b.transitions, 1);
    assert!(matches!(
        lease::renew(s, &ns, "leader", "alice", d).await,
        Err(StoreError::Conflict { .. })
    ));

    let not_hers = lease::release(s, &ns, "leader", "alice")
        .await
        .expect("release by non-holder");
    assert!(!not_hers.held);
    assert_eq!(not_hers.holder.as_deref(), Some("bob"));

    let released = lease::release(s, &ns, "leader", "bob")
        .await
        .expect("release");
    assert!(!released.held);
    assert_eq!(released.holder, None);

    let a = lease::acquire(s, &ns, "leader", "alice", d)
        .await
        .expect("acquire released lease");
    assert!(a.held);
    assert_eq!(a.transitions, 2);
}

/// Racing acquirers of a fresh lease: exactly one wins.
pub async fn lease_race(store: Arc<dyn Store>) {
    let ns = unique_ns("leaserace");
    let tasks: Vec<_> = (0..8)
        .map(|i| {
            let store = store.clone();
            let ns = ns.clone();
            tokio::spawn(async move {
                lease::acquire(
                    &*store,
                    &ns,
                    "contended",
                    &format!("holder-{i}"),
                    Duration::from_secs(60),
                )
                .await
                .expect("acquire")
            })
        })
        .collect();
    let mut winners = Vec::new();
    for t in tasks {
        let s = t.await.expect("task");
        if s.held {
            winners.push(s.holder.clone());
        }
    }
    assert_eq!(winners.len(), 1, "winners: {winners:?}");
    let stored = store
        .get(&lease::lease_key(&ns, "contended"))
        .await
        .expect("get lease");
    assert_eq!(
        stored["spec"]["holderIdentity"].as_str(),
        winners[0].as_deref()
    );
}

/// 16 tasks × 20 increments through `guaranteed_update`: none is lost.
pub async fn guaranteed_update_under_concurrency(store: Arc<dyn Store>) {
    let ns = unique_ns("counter");
    let k = key(&ns, "counter");
    store
        .create(&k, widget(&ns, "counter", json!({}), json!({"count": 0})))
        .await
        .expect("create");
    let tasks: Vec<_> = (0..16)
        .map(|_| {
            let store = store.clone();
            let k = k.clone();
            tokio::spawn(async move {
                for _ in 0..20 {
                    loop {
                        let r = store
                            .guaranteed_update(&k, &|mut o| {
                                let n = o["spec"]["count"].as_i64().unwrap_or(0);
                                o["spec"]["count"] = json!(n + 1);
                                Ok(o)
                            })
                            .await;
                        match r {
                            Ok(_) => break,
                            // GuaranteedUpdate gives up after many lost
                            // races; the caller retries, as controllers do.
                            Err(StoreError::Conflict { .. }) => continue,
                            Err(e) => panic!("guaranteed_update: {e}"),
                        }
                    }
                }
            })
        })
        .collect();
    for t in tasks {
        t.await.expect("task");
    }
    let o = store.get(&k).await.expect("get");
    assert_eq!(o["spec"]["count"], json!(320));
    assert_eq!(generation(&o), 321);

    // A failing mutation aborts without writing.
    let before = rv(&o);
    let r = store
        .guaranteed_update(&k, &|_| Err(StoreError::BadRequest("no".into())))
        .await;
    assert!(matches!(r, Err(StoreError::BadRequest(_))));
    assert_eq!(rv(&store.get(&k).await.expect("get")), before);
}

/// A small deterministic generator, so a failing run can be replayed from
/// its seed.
#[derive(Clone, Debug)]
pub struct Rng(u64);

impl Rng {
    /// A generator from `seed`.
    pub fn new(seed: u64) -> Self {
        Rng(seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1)
    }

    /// The next number below `n` (`n` > 0).
    pub fn below(&mut self, n: u64) -> u64 {
        // xorshift64*
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D) % n.max(1)
    }
}

/// [`many_writers_and_watchers`] at the size the brief asks for: 8 writers
/// × 100 operations, 8 watchers.
pub async fn concurrent_writers_and_watchers(store: Arc<dyn Store>) {
    many_writers_and_watchers(store, 0x5EED, 8, 100, 8).await;
}

/// `writers` tasks run random creates, updates (blind and conditional) and
/// deletes over a small key set while `watchers` watches started at
/// different revisions run: every watcher must see exactly the
/// acknowledged writes after its start revision, once each, in revision
/// order; the final list must agree with the last event of each key.
pub async fn many_writers_and_watchers(
    store: Arc<dyn Store>,
    seed: u64,
    writers: usize,
    ops_per_writer: usize,
    watchers: usize,
) {
    type Summary = (Revision, EventType, String);
    let ns = unique_ns("storm");
    let start = current(&*store).await;
    let (final_tx, final_rx) = tokio::sync::watch::channel(None::<Revision>);

    let spawn_watcher = |after: Revision| {
        let store = store.clone();
        let ns = ns.clone();
        let mut final_rx = final_rx.clone();
        tokio::spawn(async move {
            let mut stream = store
                .watch(&scope(Some(&ns)), &from(after))
                .await
                .expect("watch");
            let mut seen: Vec<Summary> = Vec::new();
            let deadline = tokio::time::Instant::now() + Duration::from_secs(40);
            loop {
                let last = seen.last().map(|e| e.0).unwrap_or(after);
                if final_rx.borrow().is_some_and(|f| last >= f) {
                    return (after, seen);
                }
                tokio::select! {
                    e = stream.next() => match e {
                        Some(Ok(e)) => {
                            assert_eq!(rv(&e.object), e.revision);
                            seen.push((e.revision, e.event_type, name_of(&e.object)));
                        }
                        Some(Err(e)) => panic!("watch from {after} failed: {e}"),
                        None => panic!("watch from {after} ended"),
                    },
                    _ = final_rx.changed() => {}
                    _ = tokio::time::sleep_until(deadline) => {
                        panic!("watch from {after} timed out after {} events", seen.len())
                    }
                }
            }
        })
    };

    let mut watcher_tasks = vec![spawn_watcher(start)];
    let writer_tasks: Vec<_> = (0..writers)
        .map(|w| {
            let store = store.clone();
            let ns = ns.clone();
            tokio::spawn(async move {
                let mut rng = Rng::new(seed ^ ((w as u64 + 1) << 32));
                let mut acked: Vec<Summary> = Vec::new();
                for op in 0..ops_per_writer {
                    let name = format!("k{}", rng.below(6));
                    let k = key(&ns, &name);
                    let value = format!("{w}-{op}");
                    match rng.below(4) {
                        0 => {
                            match store
                                .create(&k, widget(&ns, &name, json!({}), json!({"v": value})))
                                .await
                            {
                                Ok(o) => acked.push((rv(&o), EventType::Added, name)),
                                Err(StoreError::AlreadyExists { .. }) => {}
                                Err(e) => panic!("create: {e}"),
                            }
                        }
                        1 => {
                            let o = widget(&ns, &name, json!({}), json!({"v": value}));
                            match store.update(&k, o).await {
                                Ok(o) => acked.push((rv(&o), EventType::Modified, name)),
                                Err(StoreError::NotFound { .. }) => {}
                                Err(e) => panic!("update: {e}"),
                            }
                        }
                        2 => {
                            let Ok(mut o) = store.get(&k).await else {
                                continue;
                            };
                            o["spec"]["v"] = json!(value);
                            match store.update(&k, o).await {
                                Ok(o) => acked.push((rv(&o), EventType::Modified, name)),
                                Err(StoreError::NotFound { .. } | StoreError::Conflict { .. }) => {}
                                Err(e) => panic!("conditional update: {e}"),
                            }
                        }
                        _ => match store.delete(&k, &Preconditions::default()).await {
                            Ok(DeleteOutcome::Deleted(o)) => {
                                acked.push((rv(&o), EventType::Deleted, name))
                            }
                            Ok(other) => panic!("delete: {other:?}"),
                            Err(StoreError::NotFound { .. }) => {}
                            Err(e) => panic!("delete: {e}"),
                        },
                    }
                }
                acked
            })
        })
        .collect();

    // Start the other watchers while the writers run, at revisions spread
    // over history and the live edge.
    for i in 1..watchers {
        tokio::time::sleep(Duration::from_millis(3 * i as u64)).await;
        let now = current(&*store).await;
        let after = now.saturating_sub((i as u64 * 7) % 40).max(start);
        watcher_tasks.push(spawn_watcher(after));
    }

    let mut acked: Vec<Summary> = Vec::new();
    for t in writer_tasks {
        acked.extend(t.await.expect("writer"));
    }
    acked.sort_by_key(|e| e.0);
    for pair in acked.windows(2) {
        assert!(
            pair[0].0 < pair[1].0,
            "two writes got revision {}",
            pair[0].0
        );
    }
    let last = acked.last().map(|e| e.0).unwrap_or(start);
    final_tx.send_replace(Some(last));

    for t in watcher_tasks {
        let (after, seen) = t.await.expect("watcher");
        let expected: Vec<_> = acked.iter().filter(|e| e.0 > after).cloned().collect();
        assert_eq!(
            seen.len(),
            expected.len(),
            "watch from {after}: event count"
        );
        assert_eq!(seen, expected, "watch from {after}");
    }

    let mut last_by_key: BTreeMap<String, &Summary> = BTreeMap::new();
    for e in &acked {
        last_by_key.insert(e.2.clone(), e);
    }
    let listed = store
        .list(&scope(Some(&ns)), &ListOptions::default())
        .await
        .expect("list");
    let listed: Vec<(String, Revision)> =
        listed.items.iter().map(|o| (name_of(o), rv(o))).collect();
    let expected: Vec<(String, Revision)> = last_by_key
        .values()
        .filter(|e| e.1 != EventType::Deleted)
        .map(|e| (e.2.clone(), e.0))
        .collect();
    assert_eq!(listed, expected, "final state");
}

/// A namespace whose `spec.finalizers` are not empty is only marked by a
/// delete (and turns `Terminating`); a write that empties them (what the
/// `finalize` subresource does) removes it. Other writes keep it.
pub async fn namespace_finalizers(store: Arc<dyn Store>) {
    let name = unique_ns("nsfinal");
    let k = ObjectKey::cluster("namespaces", &name);
    let input = json!({"apiVersion": "v1", "kind": "Namespace",
        "metadata": {"name": name}, "spec": {"finalizers": ["kubernetes"]},
        "status": {"phase": "Active"}});
    store.create(&k, input).await.expect("create");
    let marked = match store
        .delete(&k, &Preconditions::default())
        .await
        .expect("delete")
    {
        DeleteOutcome::Finalizing(o) => o,
        other => panic!("delete of a namespace with spec.finalizers: {other:?}"),
    };
    assert!(meta::meta_str(&marked, "deletionTimestamp").is_some());
    assert_eq!(marked["status"]["phase"], "Terminating");

    // A status write keeps it.
    let mut status = marked.clone();
    status["status"]["conditions"] =
        json!([{"type": "NamespaceContentRemaining", "status": "True"}]);
    let kept = store.update(&k, status).await.expect("status write");
    assert_eq!(kept["status"]["phase"], "Terminating");
    assert!(store.get(&k).await.is_ok());

    let mut finalized = kept.clone();
    finalized["spec"]["finalizers"] = json!([]);
    store.update(&k, finalized).await.expect("finalize");
    assert!(matches!(
        store.get(&k).await,
        Err(StoreError::NotFound { .. })
    ));
}
