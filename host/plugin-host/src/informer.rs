//! A host-run informer: list a resource, then watch it from the list's
//! revision, relisting when the watch expires or breaks. Changes are sent
//! to one loop as messages, tagged with the caller's kind; the loop owns
//! all state (the scheduler runner, the plugin manager).

use std::sync::Arc;
use std::time::Duration;

use futures::StreamExt;
use orchd_store::{EventType, ListOptions, ObjectList, Scope, Store, StoreError, WatchOptions};
use serde_json::Value;
use tokio::sync::{mpsc, watch};

/// A change seen by an informer; `K` tells the receiver which informer.
pub(crate) enum Change<K> {
    /// The full current list (first sync and every relist) and the
    /// revision it reflects: anything cached from before that revision
    /// and not in it is gone.
    Resync(K, Vec<Value>, u64),
    /// Added or modified. The store's own copy, shared with every other
    /// watcher: a receiver that keeps or reads it copies nothing.
    Upsert(K, Arc<Value>),
    /// Deleted (its last state), shared as for `Upsert`.
    Delete(K, Arc<Value>),
}

/// Runs the informer of `resource` (the store's group-qualified plural),
/// tagging its messages with `kind`, until `stop` turns true or the
/// receiver is gone.
pub(crate) async fn run<K: Copy + Send + 'static>(
    store: Arc<dyn Store>,
    resource: &'static str,
    kind: K,
    tx: mpsc::Sender<Change<K>>,
    mut stop: watch::Receiver<bool>,
) {
    let scope = Scope {
        resource: resource.into(),
        ..Scope::default()
    };
    let mut delay = Duration::from_millis(100);
    loop {
        let listed = tokio::select! {
            _ = stop.changed() => return,
            listed = list_all(store.as_ref(), &scope) => listed,
        };
        let (items, revision) = match listed {
            Ok(l) => l,
            Err(e) => {
                eprintln!("orchd: informer: cannot list {resource}: {e}");
                if sleep_or_stop(&mut stop, delay).await {
                    return;
                }
                delay = (delay * 2).min(Duration::from_secs(10));
                continue;
            }
        };
        if tx
            .send(Change::Resync(kind, items, revision))
            .await
            .is_err()
        {
            return;
        }
        let options = WatchOptions {
            after: Some(revision),
            bookmark_interval: None,
        };
        let mut stream = match store.watch(&scope, &options).await {
            Ok(s) => s,
            Err(e) => {
                if !matches!(e, StoreError::Expired { .. }) {
                    eprintln!("orchd: informer: cannot watch {resource}: {e}");
                    if sleep_or_stop(&mut stop, delay).await {
                        return;
                    }
                    delay = (delay * 2).min(Duration::from_secs(10));
                }
                continue;
            }
        };
        delay = Duration::from_millis(100);
        loop {
            let next = tokio::select! {
                _ = stop.changed() => return,
                next = stream.next() => next,
            };
            let change = match next {
                Some(Ok(event)) => match event.event_type {
                    EventType::Added | EventType::Modified => Change::Upsert(kind, event.object),
                    EventType::Deleted => Change::Delete(kind, event.object),
                    EventType::Bookmark => continue,
                },
                // Expired: fell behind compaction; any other error or the
                // end of the stream: start over. Both mean relist.
                Some(Err(_)) | None => break,
            };
            if tx.send(change).await.is_err() {
                return;
            }
        }
    }
}

/// Every object of `scope` and the revision they reflect. One unpaged
/// list: it is a single consistent snapshot, so watching from its revision
/// replays exactly the later changes (a continued list would read later
/// pages at a newer state and the replay could briefly undo them).
async fn list_all(store: &dyn Store, scope: &Scope) -> Result<(Vec<Value>, u64), StoreError> {
    let ObjectList {
        items, revision, ..
    } = store.list(scope, &ListOptions::default()).await?;
    Ok((items, revision))
}

/// Sleeps; true if told to stop meanwhile.
async fn sleep_or_stop(stop: &mut watch::Receiver<bool>, delay: Duration) -> bool {
    tokio::select! {
        _ = stop.changed() => true,
        _ = tokio::time::sleep(delay) => false,
    }
}
