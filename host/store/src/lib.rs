//! orchd's object store.
//!
//! The store keeps Kubernetes-shaped JSON objects under [`ObjectKey`]s and
//! gives them Kubernetes' storage semantics:
//!
//! * one global, monotonically increasing [`Revision`]; an object's
//!   `metadata.resourceVersion` is the revision of its last write;
//! * optimistic concurrency: a write carrying a stale resourceVersion fails
//!   with [`StoreError::Conflict`];
//! * server-owned metadata (`uid`, `creationTimestamp`, `generation`,
//!   `deletionTimestamp`) and finalizers;
//! * every committed write becomes exactly one [`WatchEvent`], delivered in
//!   revision order to every matching watcher, resumable from any revision
//!   still in the history window ([`StoreError::Expired`] otherwise);
//! * a write is acknowledged only once it is durable.
//!
//! [`Store`] is the contract every backend implements; [`redb_store`] is the
//! embedded default, [`etcd_store`] the distributed one (a real etcd, shared
//! by several control-plane replicas). The conformance suite in [`conformance`] is written
//! against the trait so every backend runs the same checks.

pub mod conformance;
pub mod error;
pub mod etcd_store;
pub mod key;
pub mod lease;
pub mod meta;
pub mod redb_store;
pub mod selector;
mod watch_filter;

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use futures::stream::BoxStream;
use serde_json::Value;

pub use error::StoreError;
pub use etcd_store::{EtcdStore, EtcdStoreConfig};
pub use key::ObjectKey;
pub use redb_store::{RedbStore, RedbStoreConfig};
pub use selector::{FieldSelector, LabelSelector};

/// A point in the store's history. Every committed write gets the next one.
pub type Revision = u64;

/// Result type of store operations.
pub type Result<T, E = StoreError> = std::result::Result<T, E>;

/// Which objects a list or watch covers.
#[derive(Clone, Debug, Default)]
pub struct Scope {
    /// Group-qualified plural resource name: `pods`, `deployments.apps`.
    pub resource: String,
    /// Only objects in this namespace; `None` for all namespaces (or for
    /// cluster-scoped resources).
    pub namespace: Option<String>,
    /// Only objects whose labels match.
    pub label_selector: LabelSelector,
    /// Only objects whose fields match.
    pub field_selector: FieldSelector,
}

/// Options of [`Store::list`].
#[derive(Clone, Debug, Default)]
pub struct ListOptions {
    /// Return at most this many items (after filtering) and a continue token.
    pub limit: Option<usize>,
    /// Token from a previous page's [`ObjectList::continue_token`].
    pub continue_token: Option<String>,
}

/// One page of a list.
#[derive(Clone, Debug)]
pub struct ObjectList {
    /// Matching objects in key order, each with its `resourceVersion` set.
    pub items: Vec<Value>,
    /// The revision the list reflects (the first page's, for continued lists).
    pub revision: Revision,
    /// Set when more items may follow.
    pub continue_token: Option<String>,
    /// Estimate of the items left after this page, when known.
    pub remaining_item_count: Option<u64>,
}

/// Conditions a delete must meet (Kubernetes `Preconditions`).
#[derive(Clone, Debug, Default)]
pub struct Preconditions {
    /// The object's `metadata.uid` must equal this.
    pub uid: Option<String>,
    /// The object's `metadata.resourceVersion` must equal this.
    pub resource_version: Option<Revision>,
}

/// What a delete did.
#[derive(Clone, Debug)]
pub enum DeleteOutcome {
    /// The object is gone; this is its last state (resourceVersion = the
    /// revision of the delete).
    Deleted(Value),
    /// The object has finalizers, or a grace period runs: `deletionTimestamp`
    /// is set and the object stays until its finalizers are removed by
    /// updates (and, for a grace period, a delete with grace 0).
    Finalizing(Value),
}

/// Kind of a [`WatchEvent`].
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum EventType {
    /// The object was created (or, for a filtered watch, started to match).
    Added,
    /// The object changed.
    Modified,
    /// The object was removed (or, for a filtered watch, stopped matching).
    Deleted,
    /// No change: the watcher has seen everything up to `revision`.
    Bookmark,
}

impl EventType {
    /// The Kubernetes wire name: `ADDED`, `MODIFIED`, `DELETED`, `BOOKMARK`.
    pub fn as_str(self) -> &'static str {
        match self {
            EventType::Added => "ADDED",
            EventType::Modified => "MODIFIED",
            EventType::Deleted => "DELETED",
            EventType::Bookmark => "BOOKMARK",
        }
    }
}

/// One change seen by a watcher.
#[derive(Clone, Debug)]
pub struct WatchEvent {
    /// What happened.
    pub event_type: EventType,
    /// The revision of the write (for bookmarks: the revision seen so far).
    pub revision: Revision,
    /// The object after the write; for `Deleted`, its last state. For
    /// bookmarks, an object carrying only `metadata.resourceVersion`
    /// (apiVersion/kind are added by the API layer).
    pub object: Arc<Value>,
    /// `object` as `serde_json` encodes it, when the backend has the
    /// bytes at hand (the JSON it stored): a watch line is then written
    /// without encoding the object again.
    pub json: Option<Arc<[u8]>>,
}

/// An object as the store holds it, shared rather than copied: the answer
/// of the `_shared` calls.
#[derive(Clone, Debug, PartialEq)]
pub struct SharedObject {
    /// The object, decoded; the backend may share it with its watchers.
    pub object: Arc<Value>,
    /// `object` as `serde_json` encodes it, when the backend has the bytes
    /// at hand: an answer is then sent without encoding it again.
    pub json: Option<Arc<[u8]>>,
}

impl SharedObject {
    /// An object without its encoded form.
    pub fn new(object: Arc<Value>) -> Self {
        SharedObject { object, json: None }
    }
}

impl std::ops::Deref for SharedObject {
    type Target = Value;

    fn deref(&self) -> &Value {
        &self.object
    }
}

/// Options of [`Store::watch`].
#[derive(Clone, Debug, Default)]
pub struct WatchOptions {
    /// Deliver every event after this revision. `None` means "from now".
    /// A revision older than the compaction point fails with
    /// [`StoreError::Expired`].
    pub after: Option<Revision>,
    /// When set, a `Bookmark` event is sent after this long without events.
    pub bookmark_interval: Option<Duration>,
}

/// A stream of watch events. It ends with `Err(StoreError::Expired)` if
/// the watcher fell behind the compaction point.
pub type WatchStream = BoxStream<'static, Result<WatchEvent>>;

/// The contract of an orchd store backend.
///
/// Objects are `serde_json::Value`s shaped like Kubernetes objects (with a
/// `metadata` map). The store owns `metadata.resourceVersion`, `uid`,
/// `creationTimestamp`, `generation` and `deletionTimestamp`; everything else
/// is the caller's (the API layer validates and defaults before writing).
#[async_trait]
pub trait Store: Send + Sync + 'static {
    /// Creates `object` at `key`. Sets `resourceVersion`,
    /// `creationTimestamp`, `generation: 1` and `uid` (unless the caller
    /// already assigned one: the API server does, before defaulting).
    /// Fails with `AlreadyExists` if the key holds an object.
    async fn create(&self, key: &ObjectKey, object: Value) -> Result<Value>;

    /// Reads the object at `key`.
    async fn get(&self, key: &ObjectKey) -> Result<Value>;

    /// [`Store::get`], answered with the stored object itself rather than
    /// a copy, for callers that only read it (a patch builds the next
    /// object from it). The backend may keep recent objects decoded in
    /// memory and answer from there.
    async fn get_shared(&self, key: &ObjectKey) -> Result<SharedObject> {
        self.get(key).await.map(|v| SharedObject::new(Arc::new(v)))
    }

    /// Lists objects in `scope`, in key order.
    async fn list(&self, scope: &Scope, options: &ListOptions) -> Result<ObjectList>;

    /// Replaces the object at `key`.
    ///
    /// If `object.metadata.resourceVersion` is set it must equal the stored
    /// one (`Conflict` otherwise); if absent or empty the write is
    /// unconditional. `uid`, `creationTimestamp` and `deletionTimestamp` are
    /// kept from the stored object; `generation` is bumped when anything
    /// outside `metadata` and `status` changed. An object that has a
    /// `deletionTimestamp` and no finalizers left is removed (a `Deleted`
    /// event), and its last state is returned.
    async fn update(&self, key: &ObjectKey, object: Value) -> Result<Value>;

    /// [`Store::create`], answered with the stored object itself rather
    /// than a copy: for callers that only read the answer (encode it, look
    /// at a field). The backend may share it with its watchers, which a
    /// copy of a pod for every write made a visible cost of.
    async fn create_shared(&self, key: &ObjectKey, object: Value) -> Result<SharedObject> {
        self.create(key, object)
            .await
            .map(|v| SharedObject::new(Arc::new(v)))
    }

    /// [`Store::update`], answered as [`Store::create_shared`] is.
    async fn update_shared(&self, key: &ObjectKey, object: Value) -> Result<SharedObject> {
        self.update(key, object)
            .await
            .map(|v| SharedObject::new(Arc::new(v)))
    }

    /// Deletes the object at `key`, honouring `preconditions` and finalizers.
    async fn delete(&self, key: &ObjectKey, preconditions: &Preconditions)
    -> Result<DeleteOutcome>;

    /// Deletes the object at `key` with a grace period of `grace` seconds
    /// (see [`meta::plan_delete`]): 0 is [`Store::delete`]; more marks the
    /// object (`deletionTimestamp`, `deletionGracePeriodSeconds`) and keeps
    /// it, answered as [`DeleteOutcome::Finalizing`], until a delete with
    /// grace 0 (a pod's node confirming its containers stopped).
    async fn delete_with_grace(
        &self,
        key: &ObjectKey,
        preconditions: &Preconditions,
        grace: u32,
    ) -> Result<DeleteOutcome>;

    /// Watches `scope`. Events come in revision order with no gap and no
    /// duplicate. With a label or field selector, an object that starts to
    /// match is `Added` and one that stops matching is `Deleted`.
    async fn watch(&self, scope: &Scope, options: &WatchOptions) -> Result<WatchStream>;

    /// The newest committed revision.
    async fn current_revision(&self) -> Result<Revision>;

    /// The oldest revision a watch may resume after.
    async fn compacted_revision(&self) -> Result<Revision>;

    /// Drops history up to and including `revision`: watches resuming from
    /// before it get `Expired`.
    async fn compact(&self, revision: Revision) -> Result<()>;

    /// Reads the object at `key`, lets `mutate` change it, and writes it
    /// back with the read resourceVersion as precondition, retrying on
    /// conflicts with concurrent writers (Kubernetes' GuaranteedUpdate).
    /// `mutate` may fail to abort the update.
    async fn guaranteed_update(
        &self,
        key: &ObjectKey,
        mutate: &(dyn Fn(Value) -> Result<Value> + Send + Sync),
    ) -> Result<Value> {
        for _ in 0..64 {
            let current = self.get(key).await?;
            let rv = meta::resource_version(&current);
            let mut next = mutate(current)?;
            meta::set_resource_version(&mut next, rv);
            match self.update(key, next).await {
                Err(StoreError::Conflict { .. }) => continue,
                other => return other,
            }
        }
        Err(StoreError::Conflict {
            key: key.to_string(),
            message: "too many concurrent updates, try again".into(),
        })
    }
}
