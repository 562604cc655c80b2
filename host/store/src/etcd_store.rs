//! The distributed backend: a real etcd (v3 API), so several control-plane
//! replicas share one store and etcd's Raft does the consensus.
//!
//! It talks to etcd's JSON gateway over HTTP/1.1 (`/v3/kv/range`,
//! `/v3/kv/txn`, `/v3/kv/compaction`, `/v3/watch`): keys and values are
//! base64, 64-bit numbers are strings, and fields at their default value
//! are left out (`succeeded: false`, a PUT event's `type`, `count: 0`).
//!
//! Semantics follow Kubernetes' etcd3 storage:
//!
//! * an object lives at `<prefix>/<resource>/<namespace>/<name>`
//!   (cluster-scoped: `<prefix>/<resource>/<name>`), the default prefix
//!   being `/orchd`; its value is its JSON without `resourceVersion`,
//!   which is the key's `mod_revision`;
//! * create is a txn on `create_revision == 0`, update and delete a txn on
//!   `mod_revision ==` the revision read (a stale caller gets `Conflict`, an
//!   unconditional write re-reads and retries);
//! * a list reads one consistent revision, in pages; a continue token
//!   carries that revision and the next key;
//! * watches are served from one etcd watch per store over the whole
//!   prefix (with `prev_kv`, for selector transitions and the last state of
//!   deleted objects), kept in a bounded in-memory tail, as Kubernetes'
//!   watch cache does. A watcher resuming from before the tail gets an etcd
//!   watch of its own; etcd answering that the revision is compacted ends
//!   it with `Expired`;
//! * etcd's compaction is cluster-wide: the compacted revision is kept in
//!   the key [`COMPACTED_KEY`] (outside every prefix), written with a
//!   compare-and-swap before etcd compacts, as Kubernetes' `compact_rev_key`.

use std::collections::VecDeque;
use std::sync::{Arc, Mutex, RwLock};
use std::time::Duration;

use async_trait::async_trait;
use base64::Engine;
use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use bytes::Bytes;
use futures::StreamExt;
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper::client::conn::http1::SendRequest;
use hyper_util::rt::TokioIo;
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};
use tokio::sync::watch;
use tokio::time::Instant;

use crate::redb_store::{validate_key, validate_scope};
use crate::watch_filter::{Selectors, bookmark};
use crate::{
    DeleteOutcome, EventType, ListOptions, ObjectKey, ObjectList, Preconditions, Result, Revision,
    Scope, Store, StoreError, WatchEvent, WatchOptions, WatchStream, meta,
};

/// The key prefix when none is given.
pub const DEFAULT_PREFIX: &str = "/orchd";
/// Where the compacted revision is kept. etcd compacts the whole keyspace,
/// so it is one key for every store sharing the etcd, outside any prefix.
pub const COMPACTED_KEY: &str = "/orchd-compacted-revision";
/// Recent events kept in memory for live watchers.
pub const DEFAULT_TAIL_CAPACITY: usize = 8192;
/// Keys one range request reads at most: bounds the size of an etcd answer.
const RANGE_CHUNK: usize = 500;
/// Events a watcher takes from the tail per step.
const WATCH_CHUNK: usize = 512;
/// Idle connections kept for requests.
const MAX_IDLE: usize = 32;
/// Attempts of an unconditional write racing other writers.
const MAX_ATTEMPTS: usize = 64;

/// Where and how an [`EtcdStore`] keeps its data.
#[derive(Clone, Debug)]
pub struct EtcdStoreConfig {
    /// etcd's client address, `host:port`.
    pub endpoint: String,
    /// The key prefix of this store's objects, `/orchd` by default: stores
    /// with different prefixes share one etcd without seeing each other.
    pub prefix: String,
    /// Revisions kept resumable; older ones are compacted by the
    /// background task.
    pub history_limit: u64,
    /// How often the background task compacts; `Duration::ZERO` turns it
    /// off (etcd's own `--auto-compaction-*` may do it instead).
    pub compaction_interval: Duration,
    /// Events kept in memory for live watchers.
    pub tail_capacity: usize,
}

impl EtcdStoreConfig {
    /// The default configuration for etcd at `endpoint` (`host:port`).
    pub fn new(endpoint: impl Into<String>) -> Self {
        EtcdStoreConfig {
            endpoint: endpoint.into(),
            prefix: DEFAULT_PREFIX.into(),
            history_limit: 100_000,
            compaction_interval: Duration::from_secs(300),
            tail_capacity: DEFAULT_TAIL_CAPACITY,
        }
    }

    /// Parses `etcd://host:port[/prefix]`.
    pub fn from_url(url: &str) -> Result<Self> {
        let bad = |why: &str| StoreError::BadRequest(format!("invalid etcd URL {url:?}: {why}"));
        let rest = url
            .strip_prefix("etcd://")
            .ok_or_else(|| bad("expected etcd://host:port[/prefix]"))?;
        let (endpoint, prefix) = match rest.split_once('/') {
            Some((e, p)) => (e, p.trim_matches('/')),
            None => (rest, ""),
        };
        let (host, port) = endpoint
            .rsplit_once(':')
            .ok_or_else(|| bad("the port is missing"))?;
        if host.is_empty() || port.parse::<u16>().is_err() {
            return Err(bad("expected host:port"));
        }
        let mut config = EtcdStoreConfig::new(endpoint);
        if !prefix.is_empty() {
            config.prefix = format!("/{prefix}");
        }
        Ok(config)
    }
}

trait OrInternal<T> {
    fn internal(self) -> Result<T>;
}

impl<T, E: std::fmt::Display> OrInternal<T> for std::result::Result<T, E> {
    fn internal(self) -> Result<T> {
        self.map_err(|e| StoreError::Internal(format!("etcd: {e}")))
    }
}

fn b64(s: &str) -> String {
    STANDARD.encode(s)
}

/// The smallest key after every key starting with `prefix`.
fn prefix_end(prefix: &str) -> String {
    let mut bytes = prefix.as_bytes().to_vec();
    while let Some(last) = bytes.pop() {
        if last < 0xff {
            bytes.push(last + 1);
            return String::from_utf8_lossy(&bytes).into_owned();
        }
    }
    "\0".into()
}

/// A gateway number: 64-bit integers come as strings; absent means 0.
fn num(v: &Value) -> u64 {
    match v {
        Value::String(s) => s.parse().unwrap_or(0),
        Value::Number(n) => n.as_u64().unwrap_or(0),
        _ => 0,
    }
}

/// One key-value as etcd returns it.
#[derive(Debug)]
struct Kv {
    key: String,
    value: Vec<u8>,
    create_revision: Revision,
    mod_revision: Revision,
    version: u64,
}

impl Kv {
    fn parse(v: &Value) -> Result<Kv> {
        let bytes = |field: &str| -> Result<Vec<u8>> {
            match v.get(field).and_then(Value::as_str) {
                Some(s) => STANDARD.decode(s).internal(),
                None => Ok(Vec::new()),
            }
        };
        Ok(Kv {
            key: String::from_utf8_lossy(&bytes("key")?).into_owned(),
            value: bytes("value")?,
            create_revision: num(&v["create_revision"]),
            mod_revision: num(&v["mod_revision"]),
            version: num(&v["version"]),
        })
    }

    /// The stored object, its resourceVersion being `revision`.
    fn object_at(&self, revision: Revision) -> Result<Value> {
        let mut object: Value = serde_json::from_slice(&self.value).map_err(|e| {
            StoreError::Internal(format!("etcd key {:?} holds no JSON object: {e}", self.key))
        })?;
        meta::set_resource_version(&mut object, Some(revision));
        Ok(object)
    }

    fn object(&self) -> Result<Value> {
        self.object_at(self.mod_revision)
    }
}

fn kvs(v: &Value) -> Result<Vec<Kv>> {
    v.get("kvs")
        .and_then(Value::as_array)
        .map(|a| a.iter().map(Kv::parse).collect())
        .unwrap_or(Ok(Vec::new()))
}

fn header_revision(v: &Value) -> Revision {
    num(&v["header"]["revision"])
}

/// Why a gateway call failed.
#[derive(Debug)]
enum CallError {
    /// etcd answered with an error (gRPC code and message).
    Etcd { code: u64, message: String },
    /// No answer: connection, HTTP or decoding failure.
    Transport(String),
}

impl CallError {
    fn compacted(&self) -> bool {
        matches!(self, CallError::Etcd { message, .. } if message.contains("required revision has been compacted"))
    }
}

impl From<CallError> for StoreError {
    fn from(e: CallError) -> Self {
        match e {
            CallError::Etcd { code, message } => {
                StoreError::Internal(format!("etcd: {message} (code {code})"))
            }
            CallError::Transport(m) => StoreError::Internal(format!("etcd: {m}")),
        }
    }
}

/// An HTTP/1.1 client of the gateway with a small pool of kept-alive
/// connections.
struct Client {
    endpoint: String,
    idle: Mutex<Vec<SendRequest<Full<Bytes>>>>,
}

impl Client {
    async fn connect(&self) -> std::result::Result<SendRequest<Full<Bytes>>, CallError> {
        let stream = tokio::net::TcpStream::connect(&self.endpoint)
            .await
            .map_err(|e| {
                CallError::Transport(format!("cannot connect to {}: {e}", self.endpoint))
            })?;
        // Small requests on a kept-alive connection: no Nagle delay.
        let _ = stream.set_nodelay(true);
        let (sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
            .await
            .map_err(|e| CallError::Transport(e.to_string()))?;
        tokio::spawn(async move {
            let _ = conn.await;
        });
        Ok(sender)
    }

    fn request(&self, path: &str, body: Vec<u8>) -> hyper::Request<Full<Bytes>> {
        let mut req = hyper::Request::new(Full::new(Bytes::from(body)));
        *req.method_mut() = hyper::Method::POST;
        *req.uri_mut() = path.parse().unwrap_or_default();
        if let Ok(host) = self.endpoint.parse() {
            req.headers_mut().insert(hyper::header::HOST, host);
        }
        req.headers_mut().insert(
            hyper::header::CONTENT_TYPE,
            hyper::header::HeaderValue::from_static("application/json"),
        );
        req
    }

    /// POSTs `body` to `path` and returns etcd's answer.
    async fn call(&self, path: &str, body: &Value) -> std::result::Result<Value, CallError> {
        let body = serde_json::to_vec(body).map_err(|e| CallError::Transport(e.to_string()))?;
        let pooled = {
            let mut idle = self.idle.lock().unwrap_or_else(|e| e.into_inner());
            let mut found = None;
            while let Some(s) = idle.pop() {
                if !s.is_closed() {
                    found = Some(s);
                    break;
                }
            }
            found
        };
        let mut sender = match pooled {
            Some(s) => s,
            None => self.connect().await?,
        };
        if sender.ready().await.is_err() {
            sender = self.connect().await?;
            sender
                .ready()
                .await
                .map_err(|e| CallError::Transport(e.to_string()))?;
        }
        let resp = sender
            .send_request(self.request(path, body))
            .await
            .map_err(|e| CallError::Transport(format!("{path}: {e}")))?;
        let status = resp.status();
        let bytes = resp
            .into_body()
            .collect()
            .await
            .map_err(|e| CallError::Transport(format!("{path}: {e}")))?
            .to_bytes();
        {
            let mut idle = self.idle.lock().unwrap_or_else(|e| e.into_inner());
            if idle.len() < MAX_IDLE && !sender.is_closed() {
                idle.push(sender);
            }
        }
        let value: Value = serde_json::from_slice(&bytes).map_err(|e| {
            CallError::Transport(format!(
                "{path} answered {status} with no JSON ({e}): {}",
                String::from_utf8_lossy(&bytes)
            ))
        })?;
        if !status.is_success() || value.get("error").is_some() {
            return Err(CallError::Etcd {
                code: num(&value["code"]),
                message: value["message"]
                    .as_str()
                    .or(value["error"].as_str())
                    .unwrap_or("unknown error")
                    .to_string(),
            });
        }
        Ok(value)
    }

    /// Reads `key` (or `[key, end)`), at `revision` (0: the newest).
    async fn range(
        &self,
        key: &str,
        end: Option<&str>,
        revision: Revision,
        limit: usize,
    ) -> std::result::Result<Value, CallError> {
        let mut req = json!({"key": b64(key)});
        if let Some(end) = end {
            req["range_end"] = json!(b64(end));
        }
        if revision > 0 {
            req["revision"] = json!(revision.to_string());
        }
        if limit > 0 {
            req["limit"] = json!(limit.to_string());
        }
        self.call("/v3/kv/range", &req).await
    }

    /// Runs a txn: `succeeded` and the answer.
    async fn txn(&self, compare: Value, success: Value, failure: Value) -> Result<(bool, Value)> {
        let resp = self
            .call(
                "/v3/kv/txn",
                &json!({"compare": compare, "success": success, "failure": failure}),
            )
            .await?;
        Ok((resp["succeeded"].as_bool().unwrap_or(false), resp))
    }

    /// Opens a watch on a connection of its own (the gateway streams one
    /// watch per HTTP request) and waits for etcd to confirm it.
    async fn watch(&self, create: Value) -> Result<WatchConn> {
        let mut sender = self.connect().await?;
        sender.ready().await.internal()?;
        let body = serde_json::to_vec(&json!({"create_request": create})).internal()?;
        let resp = sender
            .send_request(self.request("/v3/watch", body))
            .await
            .internal()?;
        if !resp.status().is_success() {
            let status = resp.status();
            let body = resp.into_body().collect().await.internal()?.to_bytes();
            return Err(StoreError::Internal(format!(
                "etcd watch answered {status}: {}",
                String::from_utf8_lossy(&body)
            )));
        }
        let mut conn = WatchConn {
            body: resp.into_body(),
            buf: Vec::new(),
            _sender: sender,
        };
        match conn.next().await? {
            Some(first) if first["created"].as_bool() == Some(true) => Ok(conn),
            other => Err(StoreError::Internal(format!(
                "etcd did not confirm the watch: {other:?}"
            ))),
        }
    }
}

/// One streaming watch: the gateway writes one `{"result": WatchResponse}`
/// per line.
struct WatchConn {
    body: Incoming,
    buf: Vec<u8>,
    _sender: SendRequest<Full<Bytes>>,
}

impl WatchConn {
    /// The next WatchResponse; `None` when etcd closed the stream.
    async fn next(&mut self) -> Result<Option<Value>> {
        loop {
            if let Some(pos) = self.buf.iter().position(|b| *b == b'\n') {
                let line: Vec<u8> = self.buf.drain(..=pos).collect();
                if line.iter().all(u8::is_ascii_whitespace) {
                    continue;
                }
                let mut v: Value = serde_json::from_slice(&line).internal()?;
                if let Some(e) = v.get("error") {
                    return Err(StoreError::Internal(format!("etcd watch failed: {e}")));
                }
                return Ok(Some(v["result"].take()));
            }
            match self.body.frame().await {
                None => return Ok(None),
                Some(Err(e)) => return Err(StoreError::Internal(format!("etcd watch: {e}"))),
                Some(Ok(frame)) => {
                    if let Ok(data) = frame.into_data() {
                        self.buf.extend_from_slice(&data);
                    }
                }
            }
        }
    }
}

/// One committed change under the store's prefix.
#[derive(Debug)]
struct StoredEvent {
    revision: Revision,
    event_type: EventType,
    /// The full etcd key.
    key: String,
    /// The object after the write; for deletes, its last state.
    object: Arc<Value>,
    /// The object before a modification (selector watches need it).
    prev: Option<Arc<Value>>,
}

/// The events of one WatchResponse. A value that is not JSON (something
/// else wrote under the prefix) is reported and skipped.
fn parse_events(resp: &Value) -> Vec<StoredEvent> {
    let mut out = Vec::new();
    for e in resp["events"].as_array().map(Vec::as_slice).unwrap_or(&[]) {
        match parse_event(e) {
            Ok(ev) => out.push(ev),
            Err(err) => eprintln!("orchd-store: skipping an etcd event: {err}"),
        }
    }
    out
}

fn parse_event(e: &Value) -> Result<StoredEvent> {
    let kv = Kv::parse(&e["kv"])?;
    let prev = match e.get("prev_kv") {
        Some(p) => Some(Kv::parse(p)?),
        None => None,
    };
    let revision = kv.mod_revision;
    if e["type"].as_str() == Some("DELETE") {
        // The last state, at the delete's revision (as Kubernetes).
        let object = match &prev {
            Some(p) => p.object_at(revision)?,
            None => json!({"metadata": {
                "name": kv.key.rsplit('/').next().unwrap_or(""),
                "resourceVersion": revision.to_string(),
            }}),
        };
        return Ok(StoredEvent {
            revision,
            event_type: EventType::Deleted,
            key: kv.key,
            object: Arc::new(object),
            prev: None,
        });
    }
    let event_type = if kv.create_revision == kv.mod_revision {
        EventType::Added
    } else {
        EventType::Modified
    };
    Ok(StoredEvent {
        revision,
        event_type,
        object: Arc::new(kv.object()?),
        key: kv.key,
        prev: match prev {
            Some(p) if event_type == EventType::Modified => Some(Arc::new(p.object()?)),
            _ => None,
        },
    })
}

/// The newest events under the prefix, in revision order (revisions are
/// not consecutive: other writes to etcd take some).
struct Tail {
    events: VecDeque<Arc<StoredEvent>>,
    /// Every event after this revision is in `events`.
    base: Revision,
    capacity: usize,
}

impl Tail {
    fn push(&mut self, event: StoredEvent) {
        if self.events.len() >= self.capacity
            && let Some(old) = self.events.pop_front()
        {
            self.base = old.revision;
        }
        self.events.push_back(Arc::new(event));
    }

    /// Up to `max` events after `cursor`; `None` if some were evicted.
    fn after(&self, cursor: Revision, max: usize) -> Option<Vec<Arc<StoredEvent>>> {
        if cursor < self.base {
            return None;
        }
        let start = self.events.partition_point(|e| e.revision <= cursor);
        Some(self.events.range(start..).take(max).cloned().collect())
    }
}

/// State shared by the store, its prefix watch and every watcher.
struct Shared {
    client: Client,
    prefix: String,
    tail: RwLock<Tail>,
}

/// The store's one etcd watch over its prefix: fills the tail and
/// publishes how far it got (`progress`: every event up to it is in).
async fn run_prefix_watch(shared: Arc<Shared>, progress: watch::Sender<Revision>) {
    let start = format!("{}/", shared.prefix);
    let end = prefix_end(&start);
    let mut backoff = Duration::from_millis(50);
    loop {
        let next = *progress.borrow() + 1;
        let create = json!({
            "key": b64(&start),
            "range_end": b64(&end),
            "start_revision": next.to_string(),
            "prev_kv": true,
            "progress_notify": true,
        });
        if let Ok(mut conn) = shared.client.watch(create).await {
            while let Ok(Some(resp)) = conn.next().await {
                backoff = Duration::from_millis(50);
                let compacted = num(&resp["compact_revision"]);
                if compacted > 0 {
                    // History between `next` and etcd's compaction point
                    // is gone: watchers behind it go to etcd themselves
                    // and get Expired there.
                    let mut tail = shared.tail.write().unwrap_or_else(|e| e.into_inner());
                    tail.events.clear();
                    tail.base = compacted - 1;
                    drop(tail);
                    progress.send_if_modified(|p| {
                        let changed = *p < compacted - 1;
                        *p = (*p).max(compacted - 1);
                        changed
                    });
                    break;
                }
                if resp["canceled"].as_bool() == Some(true) {
                    break;
                }
                let events = parse_events(&resp);
                let mut reached = header_revision(&resp);
                if !events.is_empty() {
                    let mut tail = shared.tail.write().unwrap_or_else(|e| e.into_inner());
                    for e in events {
                        reached = reached.max(e.revision);
                        if e.revision > tail.events.back().map_or(tail.base, |l| l.revision) {
                            tail.push(e);
                        }
                    }
                }
                // Published after the tail holds the events: a watcher
                // that sees progress P finds every event up to P.
                progress.send_if_modified(|p| {
                    let changed = reached > *p;
                    *p = (*p).max(reached);
                    changed
                });
            }
        }
        tokio::time::sleep(backoff).await;
        backoff = (backoff * 2).min(Duration::from_secs(2));
    }
}

/// Which events a watcher wants.
struct Filter {
    key_prefix: String,
    selectors: Selectors,
}

impl Filter {
    /// The event this watcher sees for `e`, if any: with a selector, an
    /// object starting (stopping) to match is `Added` (`Deleted`).
    fn apply(&self, e: &StoredEvent) -> Option<WatchEvent> {
        if !e.key.starts_with(&self.key_prefix) {
            return None;
        }
        self.selectors
            .apply(e.event_type, e.revision, &e.object, None, e.prev.as_ref())
    }
}

/// Where a watcher reads events from.
enum Source {
    /// The store's tail.
    Tail,
    /// An etcd watch of its own, for a start before the tail.
    Etcd(WatchConn),
}

/// One watch stream's state.
struct Watcher {
    shared: Arc<Shared>,
    filter: Filter,
    /// Every event up to here has been considered.
    cursor: Revision,
    pending: VecDeque<WatchEvent>,
    progress: watch::Receiver<Revision>,
    source: Source,
    bookmark_interval: Option<Duration>,
    last_sent: Instant,
    closed: bool,
    done: bool,
}

impl Watcher {
    fn direct_create(&self) -> Value {
        json!({
            "key": b64(&self.filter.key_prefix),
            "range_end": b64(&prefix_end(&self.filter.key_prefix)),
            "start_revision": (self.cursor + 1).to_string(),
            "prev_kv": true,
        })
    }

    async fn next(&mut self) -> Option<Result<WatchEvent>> {
        loop {
            if let Some(e) = self.pending.pop_front() {
                self.last_sent = Instant::now();
                return Some(Ok(e));
            }
            if self.done {
                return None;
            }
            let step = match self.source {
                Source::Tail => self.step_tail().await,
                Source::Etcd(_) => self.step_etcd().await,
            };
            match step {
                Ok(Some(e)) => {
                    self.last_sent = Instant::now();
                    return Some(Ok(e));
                }
                Ok(None) => {}
                Err(e) => {
                    self.done = true;
                    return Some(Err(e));
                }
            }
        }
    }

    /// Reads what the tail has past the cursor, or waits for more; returns
    /// a bookmark when one is due.
    async fn step_tail(&mut self) -> Result<Option<WatchEvent>> {
        let progress = *self.progress.borrow_and_update();
        if progress > self.cursor {
            let events = {
                let tail = self.shared.tail.read().unwrap_or_else(|e| e.into_inner());
                tail.after(self.cursor, WATCH_CHUNK)
            };
            let Some(events) = events else {
                // Fell behind the tail: read the rest from etcd.
                let conn = self.shared.client.watch(self.direct_create()).await?;
                self.source = Source::Etcd(conn);
                return Ok(None);
            };
            let complete = events.len() < WATCH_CHUNK;
            for e in events {
                self.cursor = e.revision;
                if let Some(we) = self.filter.apply(&e) {
                    self.pending.push_back(we);
                }
            }
            if complete {
                self.cursor = self.cursor.max(progress);
            }
            return Ok(None);
        }
        if self.closed {
            self.done = true;
            return Ok(None);
        }
        let changed = match self.bookmark_interval {
            None => self.progress.changed().await.is_ok(),
            Some(interval) => tokio::select! {
                r = self.progress.changed() => r.is_ok(),
                _ = tokio::time::sleep_until(self.last_sent + interval) => {
                    return Ok(Some(bookmark(self.cursor)));
                }
            },
        };
        if !changed {
            // The store shut down: deliver what was seen, then end.
            self.closed = true;
        }
        Ok(None)
    }

    /// Reads the next answer of the watcher's own etcd watch.
    async fn step_etcd(&mut self) -> Result<Option<WatchEvent>> {
        let Source::Etcd(conn) = &mut self.source else {
            return Ok(None);
        };
        let resp = match self.bookmark_interval {
            None => conn.next().await?,
            Some(interval) => tokio::select! {
                r = conn.next() => r?,
                _ = tokio::time::sleep_until(self.last_sent + interval) => {
                    return Ok(Some(bookmark(self.cursor)));
                }
            },
        };
        let Some(resp) = resp else {
            // etcd closed the stream: end it; the client resumes from the
            // last revision it saw, as after any closed watch.
            self.done = true;
            return Ok(None);
        };
        let compacted = num(&resp["compact_revision"]);
        if compacted > 0 {
            return Err(StoreError::Expired {
                requested: self.cursor,
                compacted: compacted - 1,
            });
        }
        if resp["canceled"].as_bool() == Some(true) {
            return Err(StoreError::Internal(format!(
                "etcd cancelled the watch: {}",
                resp["cancel_reason"].as_str().unwrap_or("no reason given")
            )));
        }
        for e in parse_events(&resp) {
            if e.revision > self.cursor {
                self.cursor = e.revision;
                if let Some(we) = self.filter.apply(&e) {
                    self.pending.push_back(we);
                }
            }
        }
        // etcd's answer revision: every event up to it has been sent.
        self.cursor = self.cursor.max(header_revision(&resp));
        Ok(None)
    }
}

#[derive(Serialize, Deserialize)]
struct ContinueToken {
    rv: Revision,
    start: String,
}

fn decode_continue(token: &str, range_prefix: &str) -> Result<ContinueToken> {
    let bad = || StoreError::BadRequest(format!("invalid continue token {token:?}"));
    let bytes = URL_SAFE_NO_PAD
        .decode(token.trim_end_matches('='))
        .map_err(|_| bad())?;
    let t: ContinueToken = serde_json::from_slice(&bytes).map_err(|_| bad())?;
    if !t.start.starts_with(range_prefix) {
        return Err(StoreError::BadRequest(format!(
            "continue token {token:?} belongs to another list"
        )));
    }
    Ok(t)
}

/// The etcd-backed [`Store`].
pub struct EtcdStore {
    shared: Arc<Shared>,
    progress: watch::Receiver<Revision>,
    tasks: Vec<tokio::task::JoinHandle<()>>,
}

impl Drop for EtcdStore {
    fn drop(&mut self) {
        for t in &self.tasks {
            t.abort();
        }
    }
}

impl EtcdStore {
    /// Connects to etcd and starts the prefix watch (and the compaction
    /// task, if configured). Fails if etcd does not answer.
    pub async fn connect(config: EtcdStoreConfig) -> Result<Arc<EtcdStore>> {
        let prefix = config.prefix.trim_end_matches('/').to_string();
        if !prefix.starts_with('/') || prefix.len() < 2 {
            return Err(StoreError::BadRequest(format!(
                "invalid key prefix {:?}: expected /name",
                config.prefix
            )));
        }
        let shared = Arc::new(Shared {
            client: Client {
                endpoint: config.endpoint.clone(),
                idle: Mutex::new(Vec::new()),
            },
            prefix,
            tail: RwLock::new(Tail {
                events: VecDeque::new(),
                base: 0,
                capacity: config.tail_capacity.max(1),
            }),
        });
        let (current, _, _) = read_compacted(&shared.client).await?;
        shared.tail.write().unwrap_or_else(|e| e.into_inner()).base = current;
        let (progress_tx, progress) = watch::channel(current);
        let mut tasks = vec![tokio::spawn(run_prefix_watch(shared.clone(), progress_tx))];
        if !config.compaction_interval.is_zero() {
            let shared = shared.clone();
            let (interval, limit) = (config.compaction_interval, config.history_limit);
            tasks.push(tokio::spawn(async move {
                let mut ticker = tokio::time::interval(interval);
                ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
                ticker.tick().await;
                loop {
                    ticker.tick().await;
                    // A failed round is retried at the next tick; the
                    // store keeps working with a longer history.
                    if let Ok((current, compacted, _)) = read_compacted(&shared.client).await {
                        let target = current.saturating_sub(limit);
                        if target > compacted {
                            let _ = compact(&shared.client, target).await;
                        }
                    }
                }
            }));
        }
        Ok(Arc::new(EtcdStore {
            shared,
            progress,
            tasks,
        }))
    }

    /// The etcd key of `key`.
    fn etcd_key(&self, key: &ObjectKey) -> String {
        match &key.namespace {
            Some(ns) => format!(
                "{}/{}/{}/{}",
                self.shared.prefix, key.resource, ns, key.name
            ),
            None => format!("{}/{}/{}", self.shared.prefix, key.resource, key.name),
        }
    }

    /// The etcd key prefix of a scope.
    fn scope_prefix(&self, scope: &Scope) -> String {
        match scope.namespace.as_deref().filter(|n| !n.is_empty()) {
            Some(ns) => format!("{}/{}/{}/", self.shared.prefix, scope.resource, ns),
            None => format!("{}/{}/", self.shared.prefix, scope.resource),
        }
    }

    fn client(&self) -> &Client {
        &self.shared.client
    }

    async fn read(&self, key: &ObjectKey, ek: &str) -> Result<Kv> {
        let resp = self.client().range(ek, None, 0, 0).await?;
        kvs(&resp)?
            .into_iter()
            .next()
            .ok_or_else(|| StoreError::NotFound {
                key: key.to_string(),
            })
    }

    /// Writes `object` at `ek` if the key is still at `mod_revision`;
    /// `Ok(Err(fresh))` with the current key-value otherwise.
    async fn put_if(
        &self,
        key: &ObjectKey,
        ek: &str,
        mod_revision: Revision,
        object: Option<&Value>,
    ) -> Result<std::result::Result<Revision, Kv>> {
        let op = match object {
            Some(o) => {
                let mut o = o.clone();
                meta::set_resource_version(&mut o, None);
                let value = serde_json::to_vec(&o).internal()?;
                json!({"request_put": {"key": b64(ek), "value": STANDARD.encode(value)}})
            }
            None => json!({"request_delete_range": {"key": b64(ek)}}),
        };
        let (ok, resp) = self
            .client()
            .txn(
                json!([{"key": b64(ek), "target": "MOD", "result": "EQUAL",
                        "mod_revision": mod_revision.to_string()}]),
                json!([op]),
                json!([{"request_range": {"key": b64(ek)}}]),
            )
            .await?;
        if ok {
            return Ok(Ok(header_revision(&resp)));
        }
        let fresh = kvs(&resp["responses"][0]["response_range"])?;
        fresh
            .into_iter()
            .next()
            .map(Err)
            .ok_or_else(|| StoreError::NotFound {
                key: key.to_string(),
            })
    }
}

/// The current revision, the compacted one (from [`COMPACTED_KEY`]) and
/// that key's version (0: never written), from one read.
async fn read_compacted(client: &Client) -> Result<(Revision, Revision, u64)> {
    let resp = client.range(COMPACTED_KEY, None, 0, 0).await?;
    let current = header_revision(&resp);
    match kvs(&resp)?.into_iter().next() {
        Some(kv) => {
            let compacted = String::from_utf8_lossy(&kv.value)
                .trim()
                .parse()
                .unwrap_or(0);
            Ok((current, compacted, kv.version))
        }
        None => Ok((current, 0, 0)),
    }
}

/// Records `revision` as compacted (compare-and-swap, so concurrent
/// replicas agree), then has etcd compact.
async fn compact(client: &Client, revision: Revision) -> Result<()> {
    for _ in 0..MAX_ATTEMPTS {
        let (current, compacted, version) = read_compacted(client).await?;
        if revision <= compacted {
            return Ok(());
        }
        if revision > current {
            return Err(StoreError::BadRequest(format!(
                "cannot compact to revision {revision}: the current revision is {current}"
            )));
        }
        let (ok, _) = client
            .txn(
                json!([{"key": b64(COMPACTED_KEY), "target": "VERSION", "result": "EQUAL",
                        "version": version.to_string()}]),
                json!([{"request_put": {"key": b64(COMPACTED_KEY),
                        "value": b64(&revision.to_string())}}]),
                json!([]),
            )
            .await?;
        if !ok {
            continue;
        }
        // Our compacted revision R means "resumable after R"; etcd's C
        // means "readable from C": so etcd compacts to R + 1, which exists
        // now that the put above took a revision.
        return match client
            .call(
                "/v3/kv/compaction",
                &json!({"revision": (revision + 1).to_string(), "physical": false}),
            )
            .await
        {
            Ok(_) => Ok(()),
            // Another replica (or etcd's auto-compaction) went further.
            Err(e) if e.compacted() => Ok(()),
            Err(e) => Err(e.into()),
        };
    }
    Err(StoreError::Conflict {
        key: COMPACTED_KEY.into(),
        message: "too many concurrent compactions, try again".into(),
    })
}

#[async_trait]
impl Store for EtcdStore {
    async fn create(&self, key: &ObjectKey, mut object: Value) -> Result<Value> {
        validate_key(key)?;
        meta::stamp_create(&mut object)?;
        meta::set_resource_version(&mut object, None);
        let ek = self.etcd_key(key);
        let value = serde_json::to_vec(&object).internal()?;
        let (ok, resp) = self
            .client()
            .txn(
                json!([{"key": b64(&ek), "target": "CREATE", "result": "EQUAL",
                        "create_revision": "0"}]),
                json!([{"request_put": {"key": b64(&ek), "value": STANDARD.encode(value)}}]),
                json!([]),
            )
            .await?;
        if !ok {
            return Err(StoreError::AlreadyExists {
                key: key.to_string(),
            });
        }
        meta::set_resource_version(&mut object, Some(header_revision(&resp)));
        Ok(object)
    }

    async fn get(&self, key: &ObjectKey) -> Result<Value> {
        validate_key(key)?;
        self.read(key, &self.etcd_key(key)).await?.object()
    }

    async fn list(&self, scope: &Scope, options: &ListOptions) -> Result<ObjectList> {
        validate_scope(scope)?;
        let range_prefix = self.scope_prefix(scope);
        let end = prefix_end(&range_prefix);
        let token = options
            .continue_token
            .as_deref()
            .filter(|t| !t.is_empty())
            .map(|t| decode_continue(t, &range_prefix))
            .transpose()?;
        let limit = options.limit.filter(|l| *l > 0);
        let unfiltered = scope.label_selector.is_empty() && scope.field_selector.is_empty();
        let (mut revision, mut start) = match token {
            Some(t) => (t.rv, t.start),
            None => (0, range_prefix.clone()),
        };
        let mut items = Vec::new();
        let mut last_key: Option<String> = None;
        let mut more = false;
        let mut remaining = None;
        'pages: loop {
            let want = limit.map_or(RANGE_CHUNK, |l| (l - items.len() + 1).min(RANGE_CHUNK));
            // Selectors drop items: read more than the page needs.
            let ask = if unfiltered { want } else { RANGE_CHUNK };
            let resp = match self.client().range(&start, Some(&end), revision, ask).await {
                Ok(r) => r,
                Err(e) if e.compacted() => {
                    // A continued list claims the first page's revision;
                    // once compacted the client must start over (410).
                    let (_, compacted, _) = read_compacted(self.client()).await?;
                    return Err(StoreError::Expired {
                        requested: revision,
                        compacted: compacted.max(revision),
                    });
                }
                Err(e) => return Err(e.into()),
            };
            if revision == 0 {
                revision = header_revision(&resp);
            }
            let count = num(&resp["count"]);
            let page = kvs(&resp)?;
            let n = page.len();
            for (i, kv) in page.into_iter().enumerate() {
                if limit.is_some_and(|l| items.len() >= l) {
                    more = true;
                    if unfiltered {
                        // `count` counts every key from `start` on.
                        remaining = Some(count.saturating_sub(i as u64));
                    }
                    break 'pages;
                }
                let object = kv.object()?;
                if unfiltered
                    || (scope.label_selector.matches(&object)
                        && scope.field_selector.matches(&object))
                {
                    items.push(object);
                    last_key = Some(kv.key.clone());
                }
                start = format!("{}\0", kv.key);
            }
            if resp["more"].as_bool() != Some(true) || n == 0 {
                break;
            }
        }
        let continue_token = match (more, last_key) {
            (true, Some(last)) => {
                let token = ContinueToken {
                    rv: revision,
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

    async fn update(&self, key: &ObjectKey, object: Value) -> Result<Value> {
        validate_key(key)?;
        meta::metadata_mut(&mut object.clone())?;
        let given = meta::update_precondition(&object)?;
        let ek = self.etcd_key(key);
        let mut kv = self.read(key, &ek).await?;
        for _ in 0..MAX_ATTEMPTS {
            let stored = kv.object()?;
            if given.is_some_and(|g| g != kv.mod_revision) {
                return Err(meta::conflict(key));
            }
            let mut next = object.clone();
            let removes = meta::update_removes(&key.resource, &stored, &next);
            meta::stamp_update(&stored, &mut next)?;
            if !removes && next == stored {
                // Nothing changes: no write, no event (as Kubernetes).
                return Ok(stored);
            }
            match self
                .put_if(key, &ek, kv.mod_revision, (!removes).then_some(&next))
                .await?
            {
                Ok(revision) => {
                    meta::set_resource_version(&mut next, Some(revision));
                    return Ok(next);
                }
                Err(fresh) => kv = fresh,
            }
        }
        Err(StoreError::Conflict {
            key: key.to_string(),
            message: "too many concurrent updates, try again".into(),
        })
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
        validate_key(key)?;
        let ek = self.etcd_key(key);
        let mut kv = self.read(key, &ek).await?;
        for _ in 0..MAX_ATTEMPTS {
            let stored = kv.object()?;
            meta::check_preconditions(key, &stored, preconditions)?;
            let (mut next, keep) =
                match meta::plan_delete(&key.resource, &stored, grace, jiff::Timestamp::now())? {
                    meta::DeletePlan::Keep => return Ok(DeleteOutcome::Finalizing(stored)),
                    meta::DeletePlan::Mark(next) => (next, true),
                    meta::DeletePlan::Remove => (stored.clone(), false),
                };
            match self
                .put_if(key, &ek, kv.mod_revision, keep.then_some(&next))
                .await?
            {
                Ok(revision) => {
                    meta::set_resource_version(&mut next, Some(revision));
                    return Ok(if keep {
                        DeleteOutcome::Finalizing(next)
                    } else {
                        DeleteOutcome::Deleted(next)
                    });
                }
                Err(fresh) => kv = fresh,
            }
        }
        Err(StoreError::Conflict {
            key: key.to_string(),
            message: "too many concurrent updates, try again".into(),
        })
    }

    async fn watch(&self, scope: &Scope, options: &WatchOptions) -> Result<WatchStream> {
        validate_scope(scope)?;
        let (current, compacted, _) = read_compacted(self.client()).await?;
        let cursor = match options.after {
            Some(after) if after < compacted => {
                return Err(StoreError::Expired {
                    requested: after,
                    compacted,
                });
            }
            Some(after) => after,
            None => current,
        };
        let mut watcher = Watcher {
            shared: self.shared.clone(),
            filter: Filter {
                key_prefix: self.scope_prefix(scope),
                selectors: Selectors {
                    labels: scope.label_selector.clone(),
                    fields: scope.field_selector.clone(),
                },
            },
            cursor,
            pending: VecDeque::new(),
            progress: self.progress.clone(),
            source: Source::Tail,
            bookmark_interval: options.bookmark_interval.filter(|d| !d.is_zero()),
            last_sent: Instant::now(),
            closed: false,
            done: false,
        };
        let behind = {
            let tail = self.shared.tail.read().unwrap_or_else(|e| e.into_inner());
            cursor < tail.base
        };
        if behind {
            // Opened now, so a start etcd already compacted fails here.
            let conn = self.client().watch(watcher.direct_create()).await?;
            watcher.source = Source::Etcd(conn);
        }
        Ok(futures::stream::unfold(watcher, |mut w| async move {
            let item = w.next().await?;
            Some((item, w))
        })
        .boxed())
    }

    async fn current_revision(&self) -> Result<Revision> {
        Ok(read_compacted(self.client()).await?.0)
    }

    async fn compacted_revision(&self) -> Result<Revision> {
        Ok(read_compacted(self.client()).await?.1)
    }

    async fn compact(&self, revision: Revision) -> Result<()> {
        compact(self.client(), revision).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls_are_parsed() {
        let c = EtcdStoreConfig::from_url("etcd://127.0.0.1:2379").unwrap();
        assert_eq!(
            (c.endpoint.as_str(), c.prefix.as_str()),
            ("127.0.0.1:2379", "/orchd")
        );
        let c = EtcdStoreConfig::from_url("etcd://localhost:12/a/b/").unwrap();
        assert_eq!(
            (c.endpoint.as_str(), c.prefix.as_str()),
            ("localhost:12", "/a/b")
        );
        for bad in ["http://x:1", "etcd://x", "etcd://:1", "etcd://x:port"] {
            assert!(EtcdStoreConfig::from_url(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn prefix_end_covers_the_prefix() {
        assert_eq!(prefix_end("/orchd/"), "/orchd0");
        assert!("/orchd/pods/x" < prefix_end("/orchd/").as_str());
        assert!("/orchd-compacted-revision" < "/orchd/");
    }

    #[test]
    fn gateway_events_are_mapped() {
        let kv = |create: u64, m: u64, v: &str| {
            json!({"key": b64("/o/pods/ns/a"), "create_revision": create.to_string(),
                   "mod_revision": m.to_string(), "value": b64(v)})
        };
        // A PUT's type is left out (its enum value is 0).
        let added = parse_event(&json!({"kv": kv(5, 5, r#"{"metadata":{"name":"a"}}"#)})).unwrap();
        assert_eq!((added.event_type, added.revision), (EventType::Added, 5));
        assert_eq!(meta::resource_version(&added.object), Some(5));
        let modified = parse_event(&json!({
            "kv": kv(5, 7, r#"{"metadata":{"name":"a"},"spec":1}"#),
            "prev_kv": kv(5, 5, r#"{"metadata":{"name":"a"}}"#),
        }))
        .unwrap();
        assert_eq!(modified.event_type, EventType::Modified);
        assert_eq!(
            modified.prev.as_deref().and_then(meta::resource_version),
            Some(5)
        );
        let deleted = parse_event(&json!({
            "type": "DELETE",
            "kv": {"key": b64("/o/pods/ns/a"), "mod_revision": "9"},
            "prev_kv": kv(5, 7, r#"{"metadata":{"name":"a"},"spec":1}"#),
        }))
        .unwrap();
        assert_eq!(deleted.event_type, EventType::Deleted);
        assert_eq!(deleted.object["spec"], json!(1));
        assert_eq!(meta::resource_version(&deleted.object), Some(9));
        assert!(parse_event(&json!({"kv": kv(1, 1, "not json")})).is_err());
    }

    #[test]
    fn tail_reports_eviction() {
        let mut tail = Tail {
            events: VecDeque::new(),
            base: 10,
            capacity: 2,
        };
        for r in [12, 15, 19] {
            tail.push(StoredEvent {
                revision: r,
                event_type: EventType::Added,
                key: String::new(),
                object: Arc::new(json!({})),
                prev: None,
            });
        }
        assert_eq!(tail.base, 12);
        assert!(tail.after(11, 10).is_none());
        let revs = |v: Vec<Arc<StoredEvent>>| v.iter().map(|e| e.revision).collect::<Vec<_>>();
        assert_eq!(revs(tail.after(12, 10).unwrap()), [15, 19]);
        assert_eq!(revs(tail.after(16, 10).unwrap()), [19]);
        assert!(tail.after(19, 10).unwrap().is_empty());
    }
}
