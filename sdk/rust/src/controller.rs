//! Writing a controller: implement [`Controller`] and export it with
//! [`export_controller!`](crate::export_controller).
//!
//! The host runs the informers and the workqueue: it calls
//! [`Controller::setup`] once to learn what to watch, then
//! [`Controller::reconcile`] with one key at a time (never the same key
//! twice at once). A reconcile reads the world through [`crate::objects`],
//! writes the changes that bring it in line, and returns; an error is
//! retried with rate-limited backoff.

use std::time::Duration;

pub use crate::bindings::controller::orchd::plugin::controller_types::{
    ControllerSpec, ReconcileResult, Watch,
};
pub use crate::objects::{Error, ObjectRef};

/// Any error a reconcile may return with `?`: the host logs its text and
/// retries the key with backoff.
pub type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// A controller plugin.
pub trait Controller {
    /// Called once after instantiation with the plugin's configuration
    /// (from its Plugin object, often empty): what to watch.
    fn setup(config: &str) -> Result<ControllerSpec, BoxError>;

    /// Brings the world in line with the primary object at `key`, which may
    /// no longer exist (then clean up, or do nothing).
    fn reconcile(key: ObjectRef) -> Result<ReconcileResult, BoxError>;
}

impl<T: Controller> crate::bindings::controller::Guest for T {
    fn setup(config: String) -> Result<ControllerSpec, String> {
        <T as Controller>::setup(&config).map_err(|e| e.to_string())
    }

    fn reconcile(key: ObjectRef) -> Result<ReconcileResult, String> {
        <T as Controller>::reconcile(key).map_err(|e| e.to_string())
    }
}

impl ControllerSpec {
    /// Reconciles `primary` (`deployments.apps`), one key at a time, with
    /// no other watches yet.
    pub fn new(primary: impl Into<String>) -> Self {
        ControllerSpec {
            primary: primary.into(),
            watches: Vec::new(),
            concurrency: 1,
        }
    }

    /// Also reconciles an object of `resource` when it changes, under its
    /// own key (`map-to: self`).
    pub fn watch(mut self, resource: impl Into<String>) -> Self {
        self.watches.push(Watch {
            resource: resource.into(),
            map_to: "self".to_owned(),
        });
        self
    }

    /// Reconciles the controlling owner of kind `owner_kind` (`ReplicaSet`)
    /// when an object of `resource` changes (`map-to: owner:KIND`); an
    /// object with no controlling owner of that kind maps to its first
    /// owner of that kind (a kubelet's Lease names its Node that way).
    pub fn watch_owned(mut self, resource: impl Into<String>, owner_kind: &str) -> Self {
        self.watches.push(Watch {
            resource: resource.into(),
            map_to: format!("owner:{owner_kind}"),
        });
        self
    }

    /// Keeps `resource` in the host's cache for this controller's reads
    /// without queuing any work when it changes (`map-to: none`): for what
    /// a reconcile lists but does not react to, such as the pods a
    /// Deployment counts.
    pub fn read(mut self, resource: impl Into<String>) -> Self {
        self.watches.push(Watch {
            resource: resource.into(),
            map_to: "none".to_owned(),
        });
        self
    }

    /// Reconciles every primary in the same namespace whose `spec.selector`
    /// matches the labels of an object of `resource` when it changes
    /// (`map-to: selector`): how a ReplicaSet hears of an orphan pod it
    /// may adopt. The selector is a LabelSelector or, as a Service's, a
    /// plain map of labels. Primaries with an empty selector select nothing.
    pub fn watch_selected(mut self, resource: impl Into<String>) -> Self {
        self.watches.push(Watch {
            resource: resource.into(),
            map_to: "selector".to_owned(),
        });
        self
    }

    /// Reconciles every primary, in every namespace, when an object of
    /// `resource` changes (`map-to: all`): how a DaemonSet hears of a node
    /// that appeared or changed.
    pub fn watch_all(mut self, resource: impl Into<String>) -> Self {
        self.watches.push(Watch {
            resource: resource.into(),
            map_to: "all".to_owned(),
        });
        self
    }

    /// Lets the host run up to `concurrency` reconciles (of different keys)
    /// at once.
    pub fn with_concurrency(mut self, concurrency: u32) -> Self {
        self.concurrency = concurrency.max(1);
        self
    }
}

impl ReconcileResult {
    /// Reconcile the same key again after `delay` (millisecond precision).
    pub fn requeue_after(delay: Duration) -> Self {
        ReconcileResult::RequeueAfter(u64::try_from(delay.as_millis()).unwrap_or(u64::MAX))
    }
}

/// Exports a type implementing [`Controller`] as the component's
/// `controller` world. Use once per plugin, with a type name (not a path).
#[macro_export]
macro_rules! export_controller {
    ($ty:ident) => {
        $crate::bindings::controller::export!($ty with_types_in $crate::bindings::controller);
    };
}
