//! Leader election of control-plane replicas: plugins run only in the
//! replica that holds a Lease, as kube-controller-manager and
//! kube-scheduler do.
//!
//! Every replica runs an elector against the shared store. The one that
//! holds the Lease (`kube-system/orchd-plugins` by default) renews it
//! every retry period and runs the plugins; the others stay passive and
//! try again every retry period, taking over once the lease is released
//! (a clean shutdown) or has expired (a crash or a partition). A leader
//! that cannot renew within its renew deadline, or finds the lease held by
//! someone else, steps down at once: it stops its plugins before anyone
//! else may take the lease (the renew deadline is shorter than the lease
//! duration), so two replicas never both act on a lease they both think
//! they hold.
//!
//! The election itself is [`orchd_store::lease`]: optimistic concurrency
//! on the Lease object, so of two racing replicas exactly one wins.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use orchd_store::{Store, lease};
use tokio::sync::watch;
use tokio::time::Instant;

/// What a replica runs while it leads, and stops when it no longer does.
pub trait Leading: Send {
    /// Stops everything the replica does as leader; the lease is given up
    /// only after this returns.
    fn step_down(self: Box<Self>) -> Pin<Box<dyn Future<Output = ()> + Send>>;
}

impl Leading for crate::manager::ManagerHandle {
    fn step_down(self: Box<Self>) -> Pin<Box<dyn Future<Output = ()> + Send>> {
        Box::pin(self.stop())
    }
}

/// How a replica competes for the lease. The defaults are Kubernetes'
/// (`--leader-elect-lease-duration` 15 s, `-renew-deadline` 10 s,
/// `-retry-period` 2 s).
#[derive(Clone, Debug)]
pub struct ElectionConfig {
    /// Namespace of the Lease.
    pub namespace: String,
    /// Name of the Lease.
    pub name: String,
    /// This replica's identity, unique among replicas.
    pub identity: String,
    /// How long a lease lasts without renewal: how long the others wait
    /// after a leader vanishes without releasing it.
    pub lease_duration: Duration,
    /// How long a leader keeps leading without a successful renewal.
    /// Shorter than `lease_duration`, so it has stepped down before the
    /// lease can expire for the others.
    pub renew_deadline: Duration,
    /// How often the leader renews and the others try to acquire.
    pub retry_period: Duration,
}

impl ElectionConfig {
    /// Kubernetes' timings for the lease `kube-system/orchd-plugins`.
    pub fn new(identity: impl Into<String>) -> Self {
        ElectionConfig {
            namespace: "kube-system".into(),
            name: "orchd-plugins".into(),
            identity: identity.into(),
            lease_duration: Duration::from_secs(15),
            renew_deadline: Duration::from_secs(10),
            retry_period: Duration::from_secs(2),
        }
    }
}

/// A unique identity for this process: host name, process id and a random
/// suffix (two replicas on one host must not share one).
pub fn default_identity() -> String {
    let host = std::fs::read_to_string("/proc/sys/kernel/hostname")
        .map(|h| h.trim().to_owned())
        .ok()
        .filter(|h| !h.is_empty())
        .unwrap_or_else(|| "orchd".to_owned());
    let random = uuid::Uuid::new_v4().simple().to_string();
    format!("{host}_{}_{}", std::process::id(), &random[..8])
}

/// What the elector reports as leadership changes.
pub type Notify = Arc<dyn Fn(&str) + Send + Sync>;

/// A running elector. [`Self::stop`] steps down (if leading) and releases
/// the lease so another replica takes over at once.
pub struct ElectorHandle {
    stop: watch::Sender<bool>,
    leading: watch::Receiver<bool>,
    task: tokio::task::JoinHandle<()>,
}

impl ElectorHandle {
    /// Whether this replica leads now.
    pub fn is_leading(&self) -> bool {
        *self.leading.borrow()
    }

    /// A receiver that sees every change of [`Self::is_leading`].
    pub fn leading(&self) -> watch::Receiver<bool> {
        self.leading.clone()
    }

    /// Steps down if leading, releases the lease, and returns.
    pub async fn stop(self) {
        let _ = self.stop.send(true);
        let _ = self.task.await;
    }

    /// Stops the elector without stepping down or releasing anything, as
    /// a crash would: the lease stays until it expires. For tests.
    #[doc(hidden)]
    pub fn abort(self) {
        self.task.abort();
    }
}

/// Starts competing for the lease; `lead` is called each time this replica
/// becomes leader and what it returns is stepped down when it stops being
/// one. Must be called within a tokio runtime.
pub fn start(
    store: Arc<dyn Store>,
    config: ElectionConfig,
    notify: Notify,
    lead: impl FnMut() -> Box<dyn Leading> + Send + 'static,
) -> ElectorHandle {
    let (stop_tx, stop_rx) = watch::channel(false);
    let (leading_tx, leading_rx) = watch::channel(false);
    let task = tokio::spawn(run(store, config, notify, lead, stop_rx, leading_tx));
    ElectorHandle {
        stop: stop_tx,
        leading: leading_rx,
        task,
    }
}

async fn run(
    store: Arc<dyn Store>,
    config: ElectionConfig,
    notify: Notify,
    mut lead: impl FnMut() -> Box<dyn Leading> + Send,
    mut stop: watch::Receiver<bool>,
    leading_tx: watch::Sender<bool>,
) {
    let who = format!("lease {}/{}", config.namespace, config.name);
    let mut leader: Option<(Box<dyn Leading>, Instant)> = None;
    let mut last_holder: Option<String> = None;
    loop {
        let attempt = lease::acquire(
            store.as_ref(),
            &config.namespace,
            &config.name,
            &config.identity,
            config.lease_duration,
        );
        // A store that does not answer counts as a failed renewal: the
        // deadline below decides, not the call.
        let outcome =
            tokio::time::timeout(config.retry_period.max(Duration::from_millis(100)), attempt)
                .await;
        let now = Instant::now();
        let lost = match (leader.as_mut(), outcome) {
            (None, Ok(Ok(state))) if state.held => {
                notify(&format!(
                    "{} leads ({who} acquired); starting plugins",
                    config.identity
                ));
                leader = Some((lead(), now));
                let _ = leading_tx.send(true);
                None
            }
            (None, Ok(Ok(state))) => {
                if state.holder != last_holder {
                    notify(&format!(
                        "standing by: {who} is held by {}",
                        state.holder.as_deref().unwrap_or("nobody")
                    ));
                    last_holder = state.holder;
                }
                None
            }
            (None, _) => None,
            (Some((_, renewed)), Ok(Ok(state))) if state.held => {
                *renewed = now;
                None
            }
            (Some(_), Ok(Ok(state))) => {
                let why = format!(
                    "{who} was taken by {}",
                    state.holder.as_deref().unwrap_or("nobody")
                );
                last_holder = state.holder;
                Some(why)
            }
            (Some((_, renewed)), failed)
                if now.duration_since(*renewed) >= config.renew_deadline =>
            {
                let why = match failed {
                    Ok(Err(e)) => e.to_string(),
                    _ => "the store did not answer".to_owned(),
                };
                last_holder = None;
                Some(format!(
                    "could not renew the {who} for {} s ({why})",
                    config.renew_deadline.as_secs_f64()
                ))
            }
            // Not renewed yet, still within the deadline: try again.
            (Some(_), _) => None,
        };
        if let Some(why) = lost
            && let Some((running, _)) = leader.take()
        {
            notify(&format!("{why}: stopping plugins"));
            running.step_down().await;
            let _ = leading_tx.send(false);
        }
        tokio::select! {
            _ = tokio::time::sleep(config.retry_period) => {}
            _ = stop.changed() => break,
        }
    }
    if let Some((running, _)) = leader.take() {
        running.step_down().await;
        let _ = leading_tx.send(false);
        match lease::release(
            store.as_ref(),
            &config.namespace,
            &config.name,
            &config.identity,
        )
        .await
        {
            Ok(_) => notify(&format!("released the {who}")),
            Err(e) => notify(&format!("cannot release the {who}: {e}")),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Mutex;
    use std::sync::atomic::{AtomicUsize, Ordering};

    use orchd_store::{RedbStore, RedbStoreConfig};
    use serde_json::Value;

    /// Counts how many replicas lead at once, and how often each led.
    #[derive(Default)]
    struct Census {
        now: AtomicUsize,
        most: AtomicUsize,
        terms: Mutex<Vec<String>>,
    }

    struct Term(Arc<Census>);

    impl Leading for Term {
        fn step_down(self: Box<Self>) -> Pin<Box<dyn Future<Output = ()> + Send>> {
            Box::pin(async move {
                self.0.now.fetch_sub(1, Ordering::SeqCst);
            })
        }
    }

    fn elector(store: &Arc<dyn Store>, census: &Arc<Census>, identity: &str) -> ElectorHandle {
        let mut config = ElectionConfig::new(identity);
        config.lease_duration = Duration::from_secs(2);
        config.renew_deadline = Duration::from_millis(1500);
        config.retry_period = Duration::from_millis(100);
        let (census, id) = (census.clone(), identity.to_owned());
        start(store.clone(), config, Arc::new(|_| {}), move || {
            let leaders = census.now.fetch_add(1, Ordering::SeqCst) + 1;
            census.most.fetch_max(leaders, Ordering::SeqCst);
            census.terms.lock().unwrap().push(id.clone());
            Box::new(Term(census.clone()))
        })
    }

    async fn until(what: &str, limit: Duration, f: impl Fn() -> bool) {
        let deadline = Instant::now() + limit;
        while !f() {
            assert!(Instant::now() < deadline, "timed out waiting until {what}");
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    fn temp_store() -> (Arc<dyn Store>, tempfile::TempDir) {
        let dir = tempfile::tempdir().unwrap();
        let store = RedbStore::open(RedbStoreConfig::new(dir.path().join("s.redb"))).unwrap();
        (store, dir)
    }

    #[tokio::test]
    async fn one_leads_the_other_takes_over_on_release_or_expiry() {
        let (store, _dir) = temp_store();
        let census = Arc::new(Census::default());
        let a = elector(&store, &census, "a");
        until("a leads", Duration::from_secs(5), || a.is_leading()).await;
        let b = elector(&store, &census, "b");
        // b keeps trying every 100 ms for longer than a lease lasts, and
        // stays passive because a renews.
        tokio::time::sleep(Duration::from_millis(2500)).await;
        assert!(!b.is_leading());
        assert!(a.is_leading());

        // A clean stop releases: b takes over within a few retry periods,
        // not after the lease's 2 s.
        let stopped = Instant::now();
        a.stop().await;
        until("b leads", Duration::from_secs(1), || b.is_leading()).await;
        assert!(stopped.elapsed() < Duration::from_secs(1));

        // A crash releases nothing: c waits for the lease to expire.
        let c = elector(&store, &census, "c");
        tokio::time::sleep(Duration::from_millis(300)).await;
        assert!(!c.is_leading());
        let crashed = Instant::now();
        b.abort();
        // b's term is still counted: nothing stepped it down. Forget it.
        census.now.fetch_sub(1, Ordering::SeqCst);
        until("c leads", Duration::from_secs(6), || c.is_leading()).await;
        assert!(crashed.elapsed() >= Duration::from_secs(1));
        c.stop().await;

        assert_eq!(census.most.load(Ordering::SeqCst), 1, "two leaders at once");
        assert_eq!(*census.terms.lock().unwrap(), ["a", "b", "c"]);
        assert_eq!(census.now.load(Ordering::SeqCst), 0);
    }

    #[tokio::test]
    async fn a_leader_whose_lease_is_taken_steps_down() {
        let (store, _dir) = temp_store();
        let census = Arc::new(Census::default());
        let a = elector(&store, &census, "a");
        until("a leads", Duration::from_secs(5), || a.is_leading()).await;
        // Someone rewrites the lease to another holder (an operator, or a
        // replica that saw it expire while a was stalled).
        let key = lease::lease_key("kube-system", "orchd-plugins");
        store
            .guaranteed_update(&key, &|mut l: Value| {
                l["spec"]["holderIdentity"] = "intruder".into();
                Ok(l)
            })
            .await
            .unwrap();
        until("a steps down", Duration::from_secs(2), || !a.is_leading()).await;
        assert_eq!(census.now.load(Ordering::SeqCst), 0);
        a.stop().await;
    }
}
