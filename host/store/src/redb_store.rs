//! The embedded default backend: one redb file.
//!
//! Layout: three tables in one file.
//!
//! * `objects`: encoded [`ObjectKey`] → the object's JSON, `resourceVersion`
//!   included, so reads need nothing else;
//! * `events`: revision → the committed change (type, key, object, and the
//!   previous object where a selector watch needs it to see transitions);
//! * `meta`: the current and the compacted revision.
//!
//! Writes go through one writer thread that group-commits: it drains the
//! queue, applies everything in one redb write transaction with immediate
//! durability, and answers callers and wakes watchers only after the commit
//! returned. Watchers read a shared in-memory tail of recent events, falling
//! back to the `events` table when they lag behind it, so no event is ever
//! dropped for a slow watcher: it either catches up or gets `Expired`.
//!
//! An update that changes nothing (the stored object already equals the
//! result) writes nothing and returns the stored object, as Kubernetes does:
//! no new revision, no event.

use std::collections::{HashMap, VecDeque};
use std::fmt::Display;
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, RwLock, Weak};
use std::thread::JoinHandle;
use std::time::Duration;

use async_trait::async_trait;
use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use futures::StreamExt;
use redb::{Database, Durability, ReadableDatabase, ReadableTable, Table, TableDefinition};
use serde::{Deserialize, Serialize};
use serde_json::Value;
use tokio::sync::{mpsc, oneshot, watch};
use tokio::time::Instant;

use crate::watch_filter::{Selectors, bookmark};
use crate::{
    DeleteOutcome, EventType, ListOptions, ObjectKey, ObjectList, Preconditions, Result, Revision,
    Scope, SharedObject, Store, StoreError, WatchEvent, WatchOptions, WatchStream, meta,
};

const OBJECTS: TableDefinition<&str, &[u8]> = TableDefinition::new("objects");
const EVENTS: TableDefinition<u64, &[u8]> = TableDefinition::new("events");
/// How much object JSON the writer keeps decoded in memory.
const CURRENT_OBJECTS_BYTES: usize = 64 << 20;
const META: TableDefinition<&str, u64> = TableDefinition::new("meta");
const META_REVISION: &str = "revision";
const META_COMPACTED: &str = "compacted";

/// Most write requests one transaction carries: bounds the latency a
/// request waits behind others and the size of one commit.
const MAX_BATCH: usize = 256;
/// Recent events kept in memory for live watchers.
pub const DEFAULT_TAIL_CAPACITY: usize = 4096;
/// Events a watcher takes per step, from the tail or from the table.
const WATCH_CHUNK: usize = 512;

/// Where and how a [`RedbStore`] keeps its data.
#[derive(Clone, Debug)]
pub struct RedbStoreConfig {
    /// The database file; created (with its parent directories) if missing.
    pub path: PathBuf,
    /// Events kept in the resumable history window; older ones are
    /// compacted away by the background task.
    pub history_limit: usize,
    /// How often the background task compacts to `history_limit`.
    /// `Duration::ZERO` turns automatic compaction off.
    pub compaction_interval: Duration,
}

impl RedbStoreConfig {
    /// The default configuration for a database file at `path`.
    pub fn new(path: impl Into<PathBuf>) -> Self {
        RedbStoreConfig {
            path: path.into(),
            ..Default::default()
        }
    }
}

impl Default for RedbStoreConfig {
    fn default() -> Self {
        RedbStoreConfig {
            path: PathBuf::from("orchd.redb"),
            history_limit: 100_000,
            compaction_interval: Duration::from_secs(60),
        }
    }
}

/// The redb-backed [`Store`].
pub struct RedbStore {
    inner: Arc<Inner>,
    // Both are `Option` so `Drop` can close the queue and then wait for the
    // writer, which releases the database file for a reopen.
    writes: Option<mpsc::UnboundedSender<WriteRequest>>,
    writer: Option<JoinHandle<()>>,
    compactor: Option<tokio::task::JoinHandle<()>>,
    history_limit: usize,
}

/// State shared by the store handle, the writer thread and every watcher.
struct Inner {
    db: Database,
    tail: RwLock<Tail>,
    compacted: AtomicU64,
    /// The newest published revision; its sender lives in the writer
    /// thread, so watchers see the channel close when the store shuts down.
    revision: watch::Receiver<Revision>,
    /// Recently written objects as last committed: the writer's reads of
    /// the object it updates, and `get`s, are answered from here without
    /// a table read or a JSON decode.
    committed: Mutex<CurrentObjects>,
}

impl Inner {
    fn committed(&self) -> std::sync::MutexGuard<'_, CurrentObjects> {
        self.committed.lock().unwrap_or_else(|e| e.into_inner())
    }
}

/// One committed change, as kept in memory.
#[derive(Debug)]
struct StoredEvent {
    revision: Revision,
    event_type: EventType,
    key: ObjectKey,
    object: Arc<Value>,
    /// `object`'s JSON as stored, for events of this process's writes
    /// (those read back from the history table are decoded only).
    json: Option<Arc<[u8]>>,
    /// The object before this write; `None` for creations and for deletes,
    /// where `object` already is the last state.
    prev: Option<Arc<Value>>,
}

/// The history record's shape, as [`event_record`] writes it (kept for the
/// test that checks the two agree).
#[cfg(test)]
#[derive(Serialize)]
struct EventRecordRef<'a> {
    #[serde(rename = "type")]
    event_type: &'a str,
    key: &'a str,
    object: &'a Value,
    #[serde(skip_serializing_if = "Option::is_none")]
    prev: Option<&'a Value>,
}

#[derive(Deserialize)]
struct EventRecord {
    #[serde(rename = "type")]
    event_type: String,
    key: String,
    object: Value,
    #[serde(default)]
    prev: Option<Value>,
}

#[derive(Serialize, Deserialize)]
struct ContinueToken {
    rv: Revision,
    start: String,
}

/// The newest events, with consecutive revisions.
struct Tail {
    events: VecDeque<Arc<StoredEvent>>,
    capacity: usize,
}

impl Tail {
    fn push(&mut self, event: Arc<StoredEvent>) {
        // A revision jump (only after a commit that failed yet landed)
        // would break the index arithmetic; watchers then read the table.
        if self
            .events
            .back()
            .is_some_and(|last| last.revision + 1 != event.revision)
        {
            self.events.clear();
        }
        if self.events.len() >= self.capacity {
            self.events.pop_front();
        }
        self.events.push_back(event);
    }

    /// Up to `max` events from revision `from` on; `None` if `from` is
    /// older than the tail.
    fn slice_from(&self, from: Revision, max: usize) -> Option<Vec<Arc<StoredEvent>>> {
        let first = self.events.front()?.revision;
        if from < first {
            return None;
        }
        let start = usize::try_from(from - first).ok()?;
        if start >= self.events.len() {
            return Some(Vec::new());
        }
        Some(self.events.range(start..).take(max).cloned().collect())
    }
}

enum WriteOp {
    Create(ObjectKey, Value),
    Update(ObjectKey, Value),
    Delete(ObjectKey, Preconditions, u32),
    Compact(Revision),
}

enum WriteOutput {
    /// The object as stored and its JSON, shared with the events: a
    /// caller wanting its own copy makes it on its own thread, not the
    /// writer's.
    Object(Current),
    Delete(DeleteOutcome),
    Done,
}

struct WriteRequest {
    op: WriteOp,
    reply: oneshot::Sender<Result<WriteOutput>>,
}

trait OrInternal<T> {
    fn internal(self) -> Result<T>;
}

impl<T, E: Display> OrInternal<T> for std::result::Result<T, E> {
    fn internal(self) -> Result<T> {
        self.map_err(|e| StoreError::Internal(e.to_string()))
    }
}

fn closed() -> StoreError {
    StoreError::Internal("the store is closed".into())
}

/// Keys are stored as `resource/namespace/name`: a `/` in the resource or
/// namespace, or an empty part, would make two keys collide or mis-decode.
pub(crate) fn validate_key(key: &ObjectKey) -> Result<()> {
    let bad = |why: &str| Err(StoreError::BadRequest(format!("invalid key {key}: {why}")));
    if key.resource.is_empty() || key.resource.contains('/') {
        return bad("resource must be non-empty and contain no '/'");
    }
    if let Some(ns) = &key.namespace
        && (ns.is_empty() || ns.contains('/'))
    {
        return bad("namespace must be non-empty and contain no '/'");
    }
    if key.name.is_empty() {
        return bad("name must be non-empty");
    }
    Ok(())
}

/// The history record of an event, `EventRecordRef`'s JSON, built from
/// JSON already encoded (`object`, `prev`).
fn event_record(
    event_type: &str,
    key: &str,
    object: &[u8],
    prev: Option<&[u8]>,
) -> Result<Vec<u8>> {
    let mut out = Vec::with_capacity(object.len() + prev.map_or(0, <[u8]>::len) + key.len() + 48);
    out.extend_from_slice(b"{\"type\":");
    serde_json::to_writer(&mut out, event_type).internal()?;
    out.extend_from_slice(b",\"key\":");
    serde_json::to_writer(&mut out, key).internal()?;
    out.extend_from_slice(b",\"object\":");
    out.extend_from_slice(object);
    if let Some(prev) = prev {
        out.extend_from_slice(b",\"prev\":");
        out.extend_from_slice(prev);
    }
    out.push(b'}');
    Ok(out)
}

fn decode_object(bytes: &[u8]) -> Result<Value> {
    serde_json::from_slice(bytes).internal()
}

fn decode_event(revision: Revision, bytes: &[u8]) -> Result<StoredEvent> {
    let record: EventRecord = serde_json::from_slice(bytes).internal()?;
    let event_type = match record.event_type.as_str() {
        "ADDED" => EventType::Added,
        "MODIFIED" => EventType::Modified,
        "DELETED" => EventType::Deleted,
        other => {
            return Err(StoreError::Internal(format!(
                "event {revision} has unknown type {other:?}"
            )));
        }
    };
    let key = ObjectKey::decode(&record.key).ok_or_else(|| {
        StoreError::Internal(format!("event {revision} has a bad key {:?}", record.key))
    })?;
    Ok(StoredEvent {
        revision,
        event_type,
        key,
        object: Arc::new(record.object),
        json: None,
        prev: record.prev.map(Arc::new),
    })
}

fn read_meta(db: &Database) -> Result<(Revision, Revision)> {
    let txn = db.begin_read().internal()?;
    let meta = txn.open_table(META).internal()?;
    let get = |k: &str| -> Result<Revision> {
        Ok(meta.get(k).internal()?.map(|g| g.value()).unwrap_or(0))
    };
    Ok((get(META_REVISION)?, get(META_COMPACTED)?))
}

/// Runs blocking redb work off the async threads.
async fn blocking<T: Send + 'static>(f: impl FnOnce() -> Result<T> + Send + 'static) -> Result<T> {
    tokio::task::spawn_blocking(f)
        .await
        .map_err(|e| StoreError::Internal(format!("store task failed: {e}")))?
}

impl RedbStore {
    /// Opens (or creates) the database at `config.path`. Must be called
    /// inside a tokio runtime: the background compaction runs on it.
    pub fn open(config: RedbStoreConfig) -> Result<Arc<RedbStore>> {
        Self::open_with_tail_capacity(config, DEFAULT_TAIL_CAPACITY)
    }

    /// Like [`RedbStore::open`], keeping `tail_capacity` recent events in
    /// memory for live watchers (tests use a small one to exercise catch-up
    /// from the table).
    pub fn open_with_tail_capacity(
        config: RedbStoreConfig,
        tail_capacity: usize,
    ) -> Result<Arc<RedbStore>> {
        let runtime = tokio::runtime::Handle::try_current().map_err(|_| {
            StoreError::Internal("RedbStore::open must be called inside a tokio runtime".into())
        })?;
        if let Some(parent) = config.path.parent()
            && !parent.as_os_str().is_empty()
        {
            std::fs::create_dir_all(parent)
                .map_err(|e| StoreError::Internal(format!("creating {}: {e}", parent.display())))?;
        }
        let db = Database::create(&config.path)
            .map_err(|e| StoreError::Internal(format!("opening {}: {e}", config.path.display())))?;
        {
            // Creates the tables on first use, so readers can always open them.
            let txn = db.begin_write().internal()?;
            txn.open_table(OBJECTS).internal()?;
            txn.open_table(EVENTS).internal()?;
            txn.open_table(META).internal()?;
            txn.commit().internal()?;
        }
        let (revision, compacted) = read_meta(&db)?;
        let (revision_tx, revision_rx) = watch::channel(revision);
        let inner = Arc::new(Inner {
            db,
            tail: RwLock::new(Tail {
                events: VecDeque::new(),
                capacity: tail_capacity.max(1),
            }),
            compacted: AtomicU64::new(compacted),
            revision: revision_rx,
            committed: Mutex::new(CurrentObjects::new(CURRENT_OBJECTS_BYTES)),
        });
        let (writes, requests) = mpsc::unbounded_channel();
        let writer = Writer {
            inner: inner.clone(),
            requests,
            revision_tx,
            revision,
            compacted,
        };
        let writer = std::thread::Builder::new()
            .name("orchd-store-writer".into())
            .spawn(move || writer.run())
            .map_err(|e| StoreError::Internal(format!("starting the writer thread: {e}")))?;

        let history_limit = config.history_limit;
        let interval = config.compaction_interval;
        let store = Arc::new_cyclic(|weak: &Weak<RedbStore>| {
            let compactor = (!interval.is_zero()).then(|| {
                let weak = weak.clone();
                runtime.spawn(async move {
                    let mut ticker = tokio::time::interval(interval);
                    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
                    ticker.tick().await;
                    loop {
                        ticker.tick().await;
                        let Some(store) = weak.upgrade() else { break };
                        // A failed round is retried at the next tick; the
                        // store keeps working with a longer history.
                        let _ = store.compact_to_limit().await;
                    }
                })
            });
            RedbStore {
                inner,
                writes: Some(writes),
                writer: Some(writer),
                compactor,
                history_limit,
            }
        });
        Ok(store)
    }

    /// Compacts so that at most `history_limit` events stay resumable; what
    /// the background task runs.
    pub async fn compact_to_limit(&self) -> Result<()> {
        let current = *self.inner.revision.borrow();
        let target = current.saturating_sub(self.history_limit as u64);
        if target > self.inner.compacted.load(Ordering::Acquire) {
            self.compact(target).await?;
        }
        Ok(())
    }

    async fn submit(&self, op: WriteOp) -> Result<WriteOutput> {
        let (reply, answer) = oneshot::channel();
        self.writes
            .as_ref()
            .ok_or_else(closed)?
            .send(WriteRequest { op, reply })
            .map_err(|_| closed())?;
        answer
            .await
            .map_err(|_| StoreError::Internal("the store writer stopped before answering".into()))?
    }
}

impl Drop for RedbStore {
    fn drop(&mut self) {
        if let Some(c) = self.compactor.take() {
            c.abort();
        }
        self.writes = None;
        if let Some(w) = self.writer.take() {
            // The writer finishes the batch in hand and exits once the
            // queue is closed; waiting makes a reopen right after drop work
            // (as long as no watch stream still holds the file).
            let _ = w.join();
        }
    }
}

/// The single writer: owns the revision counter.
struct Writer {
    inner: Arc<Inner>,
    requests: mpsc::UnboundedReceiver<WriteRequest>,
    revision_tx: watch::Sender<Revision>,
    revision: Revision,
    compacted: Revision,
}

/// An object, decoded and as its stored JSON.
type Current = (Arc<Value>, Arc<[u8]>);

fn shared((object, json): Current) -> SharedObject {
    SharedObject {
        object,
        json: Some(json),
    }
}

/// Recently written objects, decoded and as stored, shared by the writer
/// and the readers.
///
/// Every update and delete needs the stored object (preconditions, the
/// `prev` of its event); decoding it from the table was the writer
/// thread's largest cost, and the writer thread is the store's ceiling.
/// A `get` of a recently written object (a status patch reads the pod the
/// scheduler just bound) is answered from here too, without a hop to a
/// blocking thread, a table read and a decode.
///
/// Invariant: an entry equals what the objects table holds for its key as
/// of the last committed transaction. A batch's writes are kept apart
/// (`Batch::written`) and applied here only once their transaction has
/// committed, so readers never see a write that may still fail; a failed
/// commit clears everything. Bounded by the JSON bytes held; when full it
/// is cleared whole (simple, and the next writes refill it with the
/// objects that are actually changing). `generation` changes with every
/// applied batch and every clear: a reader that loaded an object from the
/// table adds it only if no batch was applied since it began, so an entry
/// is never older than the table.
struct CurrentObjects {
    entries: HashMap<String, Current>,
    bytes: usize,
    max_bytes: usize,
    generation: u64,
}

impl CurrentObjects {
    fn new(max_bytes: usize) -> Self {
        CurrentObjects {
            entries: HashMap::new(),
            bytes: 0,
            max_bytes,
            generation: 0,
        }
    }

    /// Applies a committed batch's writes (`None`: the key was removed).
    fn apply(&mut self, written: HashMap<String, Option<Current>>) {
        self.generation += 1;
        for (key, entry) in written {
            match entry {
                Some((object, json)) => self.insert(&key, object, json),
                None => self.remove(&key),
            }
        }
    }

    /// Adds what a reader loaded from the table at `generation`, unless a
    /// batch was applied since (the entry might be older than its write).
    fn fill(&mut self, generation: u64, key: &str, object: Arc<Value>, json: Arc<[u8]>) {
        if self.generation == generation && !self.entries.contains_key(key) {
            self.insert(key, object, json);
        }
    }

    fn get(&self, key: &str) -> Option<Current> {
        self.entries.get(key).cloned()
    }

    fn insert(&mut self, key: &str, object: Arc<Value>, json: Arc<[u8]>) {
        if self.bytes + json.len() > self.max_bytes {
            self.clear();
        }
        self.bytes += json.len();
        if let Some((_, old)) = self.entries.insert(key.to_string(), (object, json)) {
            self.bytes -= old.len();
        }
    }

    fn remove(&mut self, key: &str) {
        if let Some((_, old)) = self.entries.remove(key) {
            self.bytes -= old.len();
        }
    }

    fn clear(&mut self) {
        self.entries.clear();
        self.bytes = 0;
        self.generation += 1;
    }
}

/// What one committed batch produced.
struct Committed {
    outcomes: Vec<Result<WriteOutput>>,
    events: Vec<Arc<StoredEvent>>,
    revision: Revision,
    compacted: Revision,
}

impl Writer {
    fn run(mut self) {
        while let Some(first) = self.requests.blocking_recv() {
            let mut batch = vec![first];
            while batch.len() < MAX_BATCH {
                match self.requests.try_recv() {
                    Ok(r) => batch.push(r),
                    Err(_) => break,
                }
            }
            self.process(batch);
        }
    }

    fn process(&mut self, batch: Vec<WriteRequest>) {
        let (ops, replies): (Vec<_>, Vec<_>) = batch.into_iter().map(|r| (r.op, r.reply)).unzip();
        match self.commit(ops) {
            Ok(done) => {
                self.revision = done.revision;
                self.compacted = done.compacted;
                if !done.events.is_empty() {
                    let mut tail = self.inner.tail.write().unwrap_or_else(|e| e.into_inner());
                    for e in done.events {
                        tail.push(e);
                    }
                }
                self.inner
                    .compacted
                    .store(done.compacted, Ordering::Release);
                // Published after the tail holds the events: a watcher that
                // sees revision N finds every event up to N in the tail or
                // in the table.
                self.revision_tx.send_if_modified(|r| {
                    let changed = *r != done.revision;
                    *r = done.revision;
                    changed
                });
                for (reply, outcome) in replies.into_iter().zip(done.outcomes) {
                    let _ = reply.send(outcome);
                }
            }
            Err(e) => {
                // The transaction may have landed after all: the cache
                // cannot say which of its writes the table holds.
                self.inner.committed().clear();
                // A commit that reported failure may still have landed;
                // continue from what the file says so revisions never repeat.
                if let Ok((revision, compacted)) = read_meta(&self.inner.db)
                    && revision > self.revision
                {
                    self.revision = revision;
                    self.compacted = compacted.max(self.compacted);
                    self.inner
                        .compacted
                        .store(self.compacted, Ordering::Release);
                    self.revision_tx.send_replace(revision);
                }
                for reply in replies {
                    let _ = reply.send(Err(e.clone()));
                }
            }
        }
    }

    fn commit(&mut self, ops: Vec<WriteOp>) -> Result<Committed> {
        let mut txn = self.inner.db.begin_write().internal()?;
        txn.set_durability(Durability::Immediate).internal()?;
        let mut outcomes = Vec::with_capacity(ops.len());
        let (events, revision, compacted, written) = {
            let mut batch = Batch {
                objects: txn.open_table(OBJECTS).internal()?,
                history: txn.open_table(EVENTS).internal()?,
                revision: self.revision,
                compacted: self.compacted,
                events: Vec::new(),
                inner: &self.inner,
                written: HashMap::new(),
            };
            for op in ops {
                let outcome = match op {
                    WriteOp::Create(key, object) => {
                        batch.create(&key, object).map(WriteOutput::Object)
                    }
                    WriteOp::Update(key, object) => {
                        batch.update(&key, object).map(WriteOutput::Object)
                    }
                    WriteOp::Delete(key, pre, grace) => {
                        batch.delete(&key, &pre, grace).map(WriteOutput::Delete)
                    }
                    WriteOp::Compact(rev) => batch.compact(rev).map(|()| WriteOutput::Done),
                };
                // Refused requests fail alone (they change nothing before
                // refusing); a storage error leaves the transaction in an
                // unknown state, so the whole batch fails.
                if let Err(StoreError::Internal(m)) = &outcome {
                    return Err(StoreError::Internal(m.clone()));
                }
                outcomes.push(outcome);
            }
            if batch.revision != self.revision || batch.compacted != self.compacted {
                let mut meta = txn.open_table(META).internal()?;
                meta.insert(META_REVISION, batch.revision).internal()?;
                meta.insert(META_COMPACTED, batch.compacted).internal()?;
            }
            (batch.events, batch.revision, batch.compacted, batch.written)
        };
        if revision == self.revision && compacted == self.compacted {
            // Nothing was written: skip the fsync.
            txn.abort().internal()?;
        } else {
            txn.commit().internal()?;
            // Before any reply or event: whoever learns of a write reads it.
            self.inner.committed().apply(written);
        }
        Ok(Committed {
            outcomes,
            events,
            revision,
            compacted,
        })
    }
}

/// The tables of one write transaction, and what it has done so far.
struct Batch<'t> {
    objects: Table<'t, &'static str, &'static [u8]>,
    history: Table<'t, u64, &'static [u8]>,
    revision: Revision,
    compacted: Revision,
    events: Vec<Arc<StoredEvent>>,
    /// The store's shared state, for its committed-objects cache.
    inner: &'t Inner,
    /// This batch's writes, by key (`None`: removed): they reach
    /// `committed` once the transaction has committed.
    written: HashMap<String, Option<Current>>,
}

impl Batch<'_> {
    /// The stored object at `key`, decoded, and its JSON as stored (the
    /// history record of the next write reuses it as `prev`).
    fn load(&mut self, key: &str) -> Result<Option<Current>> {
        if let Some(written) = self.written.get(key) {
            return Ok(written.clone());
        }
        if let Some(found) = self.inner.committed().get(key) {
            return Ok(Some(found));
        }
        match self.objects.get(key).internal()? {
            Some(guard) => {
                let json: Arc<[u8]> = Arc::from(guard.value());
                let object = Arc::new(decode_object(&json)?);
                // Not written by this batch: the table's entry is the
                // committed one, and only this thread commits.
                self.inner
                    .committed()
                    .insert(key, object.clone(), json.clone());
                Ok(Some((object, json)))
            }
            None => Ok(None),
        }
    }

    fn exists(&self, key: &str) -> Result<bool> {
        if let Some(written) = self.written.get(key) {
            return Ok(written.is_some());
        }
        if self.inner.committed().entries.contains_key(key) {
            return Ok(true);
        }
        Ok(self.objects.get(key).internal()?.is_some())
    }

    /// Stores `object` at `key`; returns its JSON for the history record.
    fn put(&mut self, key: &str, object: &Value) -> Result<Arc<[u8]>> {
        let bytes = serde_json::to_vec(object).internal()?;
        self.objects.insert(key, bytes.as_slice()).internal()?;
        Ok(Arc::from(bytes))
    }

    /// Removes the object at `key` from the table and the cache.
    fn remove(&mut self, key: &str) -> Result<()> {
        self.objects.remove(key).internal()?;
        self.written.insert(key.to_string(), None);
        Ok(())
    }

    /// Records the event of the write that took revision `self.revision`,
    /// and remembers `object` as the key's current state unless it was
    /// deleted. `prev`'s JSON is spliced into the history record instead
    /// of encoding again: the writer thread serializes every write, so its
    /// time per write is the store's ceiling.
    fn emit(
        &mut self,
        event_type: EventType,
        key: &ObjectKey,
        encoded_key: &str,
        object: Arc<Value>,
        object_json: Option<Arc<[u8]>>,
        prev: Option<Current>,
    ) -> Result<Arc<[u8]>> {
        let object_json = match object_json {
            Some(json) => json,
            None => Arc::from(serde_json::to_vec(&*object).internal()?),
        };
        let bytes = event_record(
            event_type.as_str(),
            encoded_key,
            &object_json,
            prev.as_ref().map(|(_, json)| &**json),
        )?;
        self.history
            .insert(self.revision, bytes.as_slice())
            .internal()?;
        if event_type != EventType::Deleted {
            self.written.insert(
                encoded_key.to_string(),
                Some((object.clone(), object_json.clone())),
            );
        }
        self.events.push(Arc::new(StoredEvent {
            revision: self.revision,
            event_type,
            key: key.clone(),
            object,
            json: Some(object_json.clone()),
            prev: prev.map(|(value, _)| value),
        }));
        Ok(object_json)
    }

    fn create(&mut self, key: &ObjectKey, mut object: Value) -> Result<Current> {
        validate_key(key)?;
        meta::metadata_mut(&mut object)?;
        let enc = key.encode();
        if self.exists(&enc)? {
            return Err(StoreError::AlreadyExists {
                key: key.to_string(),
            });
        }
        let revision = self.revision + 1;
        meta::stamp_create(&mut object)?;
        meta::set_resource_version(&mut object, Some(revision));
        let json = self.put(&enc, &object)?;
        self.revision = revision;
        let object = Arc::new(object);
        let json = self.emit(
            EventType::Added,
            key,
            &enc,
            object.clone(),
            Some(json),
            None,
        )?;
        Ok((object, json))
    }

    fn update(&mut self, key: &ObjectKey, mut object: Value) -> Result<Current> {
        validate_key(key)?;
        meta::metadata_mut(&mut object)?;
        let enc = key.encode();
        let (stored, stored_json) = self.load(&enc)?.ok_or_else(|| StoreError::NotFound {
            key: key.to_string(),
        })?;
        if let Some(given) = meta::update_precondition(&object)?
            && Some(given) != meta::resource_version(&stored)
        {
            return Err(meta::conflict(key));
        }
        let terminating = meta::update_removes(&key.resource, &stored, &object);
        meta::stamp_update(&stored, &mut object)?;
        if terminating {
            self.revision += 1;
            meta::set_resource_version(&mut object, Some(self.revision));
            self.remove(&enc)?;
            let object = Arc::new(object);
            let json = self.emit(
                EventType::Deleted,
                key,
                &enc,
                object.clone(),
                None,
                Some((stored, stored_json)),
            )?;
            return Ok((object, json));
        }
        if object == *stored {
            return Ok((stored, stored_json));
        }
        self.revision += 1;
        meta::set_resource_version(&mut object, Some(self.revision));
        let json = self.put(&enc, &object)?;
        let object = Arc::new(object);
        let json = self.emit(
            EventType::Modified,
            key,
            &enc,
            object.clone(),
            Some(json),
            Some((stored, stored_json)),
        )?;
        Ok((object, json))
    }

    fn delete(
        &mut self,
        key: &ObjectKey,
        pre: &Preconditions,
        grace: u32,
    ) -> Result<DeleteOutcome> {
        validate_key(key)?;
        let enc = key.encode();
        let (stored, stored_json) = self.load(&enc)?.ok_or_else(|| StoreError::NotFound {
            key: key.to_string(),
        })?;
        meta::check_preconditions(key, &stored, pre)?;
        match meta::plan_delete(&key.resource, &stored, grace, jiff::Timestamp::now())? {
            meta::DeletePlan::Keep => Ok(DeleteOutcome::Finalizing(Arc::unwrap_or_clone(stored))),
            meta::DeletePlan::Mark(mut object) => {
                self.revision += 1;
                meta::set_resource_version(&mut object, Some(self.revision));
                let json = self.put(&enc, &object)?;
                let object = Arc::new(object);
                self.emit(
                    EventType::Modified,
                    key,
                    &enc,
                    object.clone(),
                    Some(json),
                    Some((stored, stored_json)),
                )?;
                Ok(DeleteOutcome::Finalizing(Arc::unwrap_or_clone(object)))
            }
            meta::DeletePlan::Remove => {
                let mut object = Arc::unwrap_or_clone(stored);
                self.revision += 1;
                meta::set_resource_version(&mut object, Some(self.revision));
                self.remove(&enc)?;
                let object = Arc::new(object);
                self.emit(EventType::Deleted, key, &enc, object.clone(), None, None)?;
                Ok(DeleteOutcome::Deleted(Arc::unwrap_or_clone(object)))
            }
        }
    }

    fn compact(&mut self, revision: Revision) -> Result<()> {
        if revision <= self.compacted {
            return Ok(());
        }
        if revision > self.revision {
            return Err(StoreError::BadRequest(format!(
                "cannot compact to revision {revision}: the current revision is {}",
                self.revision
            )));
        }
        self.history
            .retain_in(..=revision, |_, _| false)
            .internal()?;
        self.compacted = revision;
        Ok(())
    }
}

/// Which events a watcher wants.
struct Filter {
    resource: String,
    namespace: Option<String>,
    selectors: Selectors,
}

impl Filter {
    fn new(scope: &Scope) -> Self {
        Filter {
            resource: scope.resource.clone(),
            namespace: scope.namespace.clone().filter(|n| !n.is_empty()),
            selectors: Selectors {
                labels: scope.label_selector.clone(),
                fields: scope.field_selector.clone(),
            },
        }
    }

    /// The event this watcher sees for `e`, if any: selector watches turn
    /// an object starting (stopping) to match into `Added` (`Deleted`).
    fn apply(&self, e: &StoredEvent) -> Option<WatchEvent> {
        if e.key.resource != self.resource
            || (self.namespace.is_some() && e.key.namespace != self.namespace)
        {
            return None;
        }
        self.selectors.apply(
            e.event_type,
            e.revision,
            &e.object,
            e.json.as_ref(),
            e.prev.as_ref(),
        )
    }
}

/// One watch stream's state: a cursor over the global event sequence.
struct Watcher {
    inner: Arc<Inner>,
    filter: Filter,
    /// Every event up to here has been considered.
    cursor: Revision,
    pending: VecDeque<WatchEvent>,
    revision: watch::Receiver<Revision>,
    bookmark_interval: Option<Duration>,
    last_sent: Instant,
    closed: bool,
    done: bool,
}

impl Watcher {
    async fn next(&mut self) -> Option<Result<WatchEvent>> {
        loop {
            if let Some(e) = self.pending.pop_front() {
                self.last_sent = Instant::now();
                return Some(Ok(e));
            }
            if self.done {
                return None;
            }
            let current = *self.revision.borrow_and_update();
            if current > self.cursor {
                if let Err(e) = self.fill(current).await {
                    self.done = true;
                    return Some(Err(e));
                }
                continue;
            }
            if self.closed {
                return None;
            }
            let changed = match self.bookmark_interval {
                None => self.revision.changed().await.is_ok(),
                Some(interval) => tokio::select! {
                    r = self.revision.changed() => r.is_ok(),
                    _ = tokio::time::sleep_until(self.last_sent + interval) => {
                        self.last_sent = Instant::now();
                        return Some(Ok(bookmark(self.cursor)));
                    }
                },
            };
            if !changed {
                // The store shut down: deliver what was committed, then end.
                self.closed = true;
            }
        }
    }

    /// Moves the cursor forward over the next events up to `current`.
    async fn fill(&mut self, current: Revision) -> Result<()> {
        let from = self.cursor + 1;
        let from_tail = {
            let tail = self.inner.tail.read().unwrap_or_else(|e| e.into_inner());
            tail.slice_from(from, WATCH_CHUNK)
        };
        let events = match from_tail {
            Some(events) if !events.is_empty() => events,
            _ => {
                let inner = self.inner.clone();
                blocking(move || read_history(&inner.db, from, current)).await?
            }
        };
        for e in events {
            if e.revision <= self.cursor {
                continue;
            }
            if e.revision != self.cursor + 1 {
                return Err(StoreError::Internal(format!(
                    "watch history has a gap: expected revision {}, found {}",
                    self.cursor + 1,
                    e.revision
                )));
            }
            self.cursor = e.revision;
            if let Some(we) = self.filter.apply(&e) {
                self.pending.push_back(we);
            }
        }
        Ok(())
    }
}

/// Events `from..=to` (at most one chunk) from the table.
fn read_history(db: &Database, from: Revision, to: Revision) -> Result<Vec<Arc<StoredEvent>>> {
    let txn = db.begin_read().internal()?;
    let meta = txn.open_table(META).internal()?;
    let compacted = meta
        .get(META_COMPACTED)
        .internal()?
        .map(|g| g.value())
        .unwrap_or(0);
    if from <= compacted {
        return Err(StoreError::Expired {
            requested: from - 1,
            compacted,
        });
    }
    let table = txn.open_table(EVENTS).internal()?;
    let mut out = Vec::new();
    for entry in table.range(from..=to).internal()? {
        let (k, v) = entry.internal()?;
        out.push(Arc::new(decode_event(k.value(), v.value())?));
        if out.len() >= WATCH_CHUNK {
            break;
        }
    }
    if out.first().map(|e| e.revision) != Some(from) {
        return Err(StoreError::Internal(format!(
            "event {from} is missing from the history"
        )));
    }
    Ok(out)
}

fn list_blocking(
    db: &Database,
    scope: &Scope,
    prefix: &str,
    token: Option<ContinueToken>,
    limit: Option<usize>,
) -> Result<ObjectList> {
    let txn = db.begin_read().internal()?;
    let meta = txn.open_table(META).internal()?;
    let get = |k: &str| -> Result<Revision> {
        Ok(meta.get(k).internal()?.map(|g| g.value()).unwrap_or(0))
    };
    let mut revision = get(META_REVISION)?;
    let compacted = get(META_COMPACTED)?;
    let start = match token {
        Some(t) => {
            // A continued list claims the first page's revision; once that
            // is compacted a watch could not resume from it, so the client
            // must start over (Kubernetes answers 410 too).
            if t.rv < compacted {
                return Err(StoreError::Expired {
                    requested: t.rv,
                    compacted,
                });
            }
            revision = t.rv;
            t.start
        }
        None => prefix.to_string(),
    };
    let unfiltered = scope.label_selector.is_empty() && scope.field_selector.is_empty();
    let table = txn.open_table(OBJECTS).internal()?;
    let mut items = Vec::new();
    let mut last_key: Option<String> = None;
    let mut more = false;
    let mut remaining: Option<u64> = None;
    let mut range = table.range(start.as_str()..).internal()?;
    for entry in range.by_ref() {
        let (k, v) = entry.internal()?;
        let k = k.value();
        if !k.starts_with(prefix) {
            break;
        }
        if limit.is_some_and(|l| items.len() >= l) {
            more = true;
            if unfiltered {
                remaining = Some(1);
            }
            break;
        }
        let object = decode_object(v.value())?;
        if unfiltered
            || (scope.label_selector.matches(&object) && scope.field_selector.matches(&object))
        {
            items.push(object);
            last_key = Some(k.to_string());
        }
    }
    if let Some(count) = remaining.as_mut() {
        // Keys only, no decoding: cheap next to the page itself.
        for entry in range {
            let (k, _) = entry.internal()?;
            if !k.value().starts_with(prefix) {
                break;
            }
            *count += 1;
        }
    }
    let continue_token = match (more, last_key) {
        (true, Some(last)) => {
            let token = ContinueToken {
                rv: revision,
                // The smallest key after `last`.
                start: format!("{last}\0"),
            };
            Some(URL_SAFE_NO_PAD.encode(serde_json::to_vec(&token).internal()?))
        }
        _ => None,
    };
    Ok(ObjectList {
        items,
        revision,
        continue_token,
        remaining_item_count: remaining,
    })
}

fn decode_continue(token: &str, prefix: &str) -> Result<ContinueToken> {
    let bad = || StoreError::BadRequest(format!("invalid continue token {token:?}"));
    let bytes = URL_SAFE_NO_PAD
        .decode(token.trim_end_matches('='))
        .map_err(|_| bad())?;
    let t: ContinueToken = serde_json::from_slice(&bytes).map_err(|_| bad())?;
    if !t.start.starts_with(prefix) {
        return Err(StoreError::BadRequest(format!(
            "continue token {token:?} belongs to another list"
        )));
    }
    Ok(t)
}

pub(crate) fn validate_scope(scope: &Scope) -> Result<()> {
    if scope.resource.is_empty() || scope.resource.contains('/') {
        return Err(StoreError::BadRequest(format!(
            "invalid resource {:?}",
            scope.resource
        )));
    }
    if let Some(ns) = &scope.namespace
        && ns.contains('/')
    {
        return Err(StoreError::BadRequest(format!("invalid namespace {ns:?}")));
    }
    Ok(())
}

#[async_trait]
impl Store for RedbStore {
    async fn create(&self, key: &ObjectKey, object: Value) -> Result<Value> {
        self.create_shared(key, object)
            .await
            .map(|shared| Arc::unwrap_or_clone(shared.object))
    }

    async fn create_shared(&self, key: &ObjectKey, object: Value) -> Result<SharedObject> {
        match self.submit(WriteOp::Create(key.clone(), object)).await? {
            WriteOutput::Object(current) => Ok(shared(current)),
            _ => Err(StoreError::Internal("unexpected writer answer".into())),
        }
    }

    async fn get(&self, key: &ObjectKey) -> Result<Value> {
        self.get_shared(key)
            .await
            .map(|shared| Arc::unwrap_or_clone(shared.object))
    }

    async fn get_shared(&self, key: &ObjectKey) -> Result<SharedObject> {
        validate_key(key)?;
        let enc = key.encode();
        let generation = {
            let committed = self.inner.committed();
            if let Some(current) = committed.get(&enc) {
                return Ok(shared(current));
            }
            committed.generation
        };
        let inner = self.inner.clone();
        let name = key.to_string();
        blocking(move || {
            let txn = inner.db.begin_read().internal()?;
            let table = txn.open_table(OBJECTS).internal()?;
            let Some(guard) = table.get(enc.as_str()).internal()? else {
                return Err(StoreError::NotFound { key: name });
            };
            let json: Arc<[u8]> = Arc::from(guard.value());
            let object = Arc::new(decode_object(&json)?);
            inner
                .committed()
                .fill(generation, &enc, object.clone(), json.clone());
            Ok(shared((object, json)))
        })
        .await
    }

    async fn list(&self, scope: &Scope, options: &ListOptions) -> Result<ObjectList> {
        validate_scope(scope)?;
        let namespace = scope.namespace.as_deref().filter(|n| !n.is_empty());
        let prefix = ObjectKey::scope_prefix(&scope.resource, namespace);
        let token = options
            .continue_token
            .as_deref()
            .filter(|t| !t.is_empty())
            .map(|t| decode_continue(t, &prefix))
            .transpose()?;
        let limit = options.limit.filter(|l| *l > 0);
        let inner = self.inner.clone();
        let scope = scope.clone();
        blocking(move || list_blocking(&inner.db, &scope, &prefix, token, limit)).await
    }

    async fn update(&self, key: &ObjectKey, object: Value) -> Result<Value> {
        self.update_shared(key, object)
            .await
            .map(|shared| Arc::unwrap_or_clone(shared.object))
    }

    async fn update_shared(&self, key: &ObjectKey, object: Value) -> Result<SharedObject> {
        match self.submit(WriteOp::Update(key.clone(), object)).await? {
            WriteOutput::Object(current) => Ok(shared(current)),
            _ => Err(StoreError::Internal("unexpected writer answer".into())),
        }
    }

    async fn delete(
        &self,
        key: &ObjectKey,
        preconditions: &Preconditions,
    ) -> Result<DeleteOutcome> {
        self.delete_with_grace(key, preconditions, 0).await
    }

    async fn delete_with_grace(
        &self,
        key: &ObjectKey,
        preconditions: &Preconditions,
        grace: u32,
    ) -> Result<DeleteOutcome> {
        match self
            .submit(WriteOp::Delete(key.clone(), preconditions.clone(), grace))
            .await?
        {
            WriteOutput::Delete(d) => Ok(d),
            _ => Err(StoreError::Internal("unexpected writer answer".into())),
        }
    }

    async fn watch(&self, scope: &Scope, options: &WatchOptions) -> Result<WatchStream> {
        validate_scope(scope)?;
        let revision = self.inner.revision.clone();
        let current = *revision.borrow();
        let cursor = match options.after {
            Some(after) => {
                let compacted = self.inner.compacted.load(Ordering::Acquire);
                if after < compacted {
                    return Err(StoreError::Expired {
                        requested: after,
                        compacted,
                    });
                }
                after
            }
            None => current,
        };
        let watcher = Watcher {
            inner: self.inner.clone(),
            filter: Filter::new(scope),
            cursor,
            pending: VecDeque::new(),
            revision,
            bookmark_interval: options.bookmark_interval.filter(|d| !d.is_zero()),
            last_sent: Instant::now(),
            closed: false,
            done: false,
        };
        Ok(futures::stream::unfold(watcher, |mut w| async move {
            let item = w.next().await?;
            Some((item, w))
        })
        .boxed())
    }

    async fn current_revision(&self) -> Result<Revision> {
        Ok(*self.inner.revision.borrow())
    }

    async fn compacted_revision(&self) -> Result<Revision> {
        Ok(self.inner.compacted.load(Ordering::Acquire))
    }

    async fn compact(&self, revision: Revision) -> Result<()> {
        match self.submit(WriteOp::Compact(revision)).await? {
            WriteOutput::Done => Ok(()),
            _ => Err(StoreError::Internal("unexpected writer answer".into())),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn event(revision: Revision) -> Arc<StoredEvent> {
        Arc::new(StoredEvent {
            revision,
            event_type: EventType::Added,
            key: ObjectKey::cluster("nodes", "n"),
            object: Arc::new(json!({})),
            json: None,
            prev: None,
        })
    }

    #[test]
    fn a_reader_fills_the_cache_only_if_no_batch_was_applied_since_it_began() {
        let json = |b: &'static [u8]| -> Arc<[u8]> { Arc::from(b) };
        let mut current = CurrentObjects::new(1 << 20);
        let old = Arc::new(serde_json::json!({"v": 1}));
        let new = Arc::new(serde_json::json!({"v": 2}));
        // A reader begins, reads the table's version 1...
        let began = current.generation;
        // ...while a batch that writes version 2 commits and is applied.
        current.apply(HashMap::from([(
            "k".to_string(),
            Some((new.clone(), json(b"2"))),
        )]));
        current.fill(began, "k", old.clone(), json(b"1"));
        assert_eq!(current.get("k").unwrap().0, new);
        // A removal applied since is not undone by a late reader either.
        let began = current.generation;
        current.apply(HashMap::from([("k".to_string(), None)]));
        current.fill(began, "k", old.clone(), json(b"1"));
        assert!(current.get("k").is_none());
        // With nothing applied in between, the reader's load is kept.
        current.fill(current.generation, "k", old.clone(), json(b"1"));
        assert_eq!(current.get("k").unwrap().0, old);
    }

    #[test]
    fn current_objects_count_their_bytes_and_clear_when_full() {
        let mut current = CurrentObjects::new(10);
        let obj = Arc::new(serde_json::json!({}));
        current.insert("a", obj.clone(), Arc::from(&b"1234"[..]));
        current.insert("b", obj.clone(), Arc::from(&b"1234"[..]));
        assert_eq!(current.bytes, 8);
        // Replacing an entry accounts for the old one.
        current.insert("a", obj.clone(), Arc::from(&b"12"[..]));
        assert_eq!(current.bytes, 6);
        current.remove("b");
        assert_eq!(current.bytes, 2);
        assert!(current.get("b").is_none());
        // Over the bound: everything goes, the new entry stays.
        current.insert("c", obj.clone(), Arc::from(&b"123456789"[..]));
        assert_eq!(current.bytes, 9);
        assert!(current.get("a").is_none());
        assert_eq!(&*current.get("c").unwrap().1, b"123456789");
    }

    #[test]
    fn tail_is_bounded_and_contiguous() {
        let mut tail = Tail {
            events: VecDeque::new(),
            capacity: 3,
        };
        assert!(tail.slice_from(1, 10).is_none());
        for r in 1..=5 {
            tail.push(event(r));
        }
        assert!(tail.slice_from(2, 10).is_none());
        let revs = |v: Vec<Arc<StoredEvent>>| v.iter().map(|e| e.revision).collect::<Vec<_>>();
        assert_eq!(revs(tail.slice_from(3, 10).unwrap()), vec![3, 4, 5]);
        assert_eq!(revs(tail.slice_from(4, 1).unwrap()), vec![4]);
        assert!(tail.slice_from(6, 10).unwrap().is_empty());
        tail.push(event(9));
        assert_eq!(revs(tail.slice_from(9, 10).unwrap()), vec![9]);
        assert!(tail.slice_from(5, 10).is_none());
    }

    #[test]
    fn continue_tokens_are_checked() {
        assert!(matches!(
            decode_continue("not base64!", "pods/"),
            Err(StoreError::BadRequest(_))
        ));
        let other = URL_SAFE_NO_PAD.encode(br#"{"rv":3,"start":"nodes/x"}"#);
        assert!(matches!(
            decode_continue(&other, "pods/"),
            Err(StoreError::BadRequest(_))
        ));
        let ok = URL_SAFE_NO_PAD.encode(br#"{"rv":3,"start":"pods/a/b\u0000"}"#);
        assert_eq!(decode_continue(&ok, "pods/").unwrap().rv, 3);
    }

    #[test]
    fn keys_are_validated() {
        assert!(validate_key(&ObjectKey::namespaced("pods", "a/b", "x")).is_err());
        assert!(validate_key(&ObjectKey::namespaced("pods", "", "x")).is_err());
        assert!(validate_key(&ObjectKey::cluster("", "x")).is_err());
        assert!(validate_key(&ObjectKey::cluster("nodes", "")).is_err());
        assert!(validate_key(&ObjectKey::cluster("nodes", "a/b")).is_ok());
    }

    #[test]
    fn open_outside_a_runtime_is_an_error_not_a_panic() {
        let dir = tempfile::tempdir().unwrap();
        assert!(matches!(
            RedbStore::open(RedbStoreConfig::new(dir.path().join("db"))),
            Err(StoreError::Internal(_))
        ));
    }
}

#[cfg(test)]
mod record_tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn spliced_history_records_are_what_serde_writes_and_reads() {
        let object =
            json!({"metadata": {"name": "p\"q", "labels": {"a": "é"}}, "spec": {"x": [1, 2]}});
        let prev = json!({"metadata": {"name": "p\"q"}});
        for prev in [None, Some(&prev)] {
            let spliced = event_record(
                "MODIFIED",
                "pods/default/p\"q",
                &serde_json::to_vec(&object).unwrap_or_default(),
                prev.map(|p| serde_json::to_vec(p).unwrap_or_default())
                    .as_deref(),
            )
            .unwrap_or_else(|e| panic!("{e}"));
            let by_serde = serde_json::to_vec(&EventRecordRef {
                event_type: "MODIFIED",
                key: "pods/default/p\"q",
                object: &object,
                prev,
            })
            .unwrap_or_default();
            assert_eq!(spliced, by_serde);
            let event = decode_event(7, &spliced).unwrap_or_else(|e| panic!("{e}"));
            assert_eq!(*event.object, object);
            assert_eq!(event.prev.as_deref(), prev);
        }
    }
}
