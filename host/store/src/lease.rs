//! Coordination helpers over `coordination.k8s.io/v1` Lease objects: node
//! heartbeats and leader election of control-plane replicas.
//!
//! They work on any [`Store`] and rely only on its optimistic concurrency:
//! every change is written with the resourceVersion it was computed from,
//! so of two racing acquirers exactly one wins and the other sees the
//! winner's lease on its retry.

use std::time::Duration;

use jiff::{SignedDuration, Timestamp};
use serde_json::{Value, json};

use crate::{ObjectKey, Result, Store, StoreError};

/// The group-qualified resource of Lease objects.
pub const LEASE_RESOURCE: &str = "leases.coordination.k8s.io";

/// Attempts before giving up under sustained contention.
const MAX_ATTEMPTS: usize = 32;

/// A lease as one holder sees it after an operation.
#[derive(Clone, Debug)]
pub struct LeaseState {
    /// Whether the calling holder holds the lease now.
    pub held: bool,
    /// The current holder, if any.
    pub holder: Option<String>,
    /// How many times the lease changed hands.
    pub transitions: i64,
    /// The Lease object as stored.
    pub lease: Value,
}

impl LeaseState {
    fn of(lease: Value, holder: &str) -> Self {
        let current = holder_of(&lease).map(str::to_string);
        LeaseState {
            held: current.as_deref() == Some(holder),
            holder: current,
            transitions: spec(&lease)
                .and_then(|s| s.get("leaseTransitions"))
                .and_then(Value::as_i64)
                .unwrap_or(0),
            lease,
        }
    }
}

/// The store key of Lease `namespace/name`.
pub fn lease_key(namespace: &str, name: &str) -> ObjectKey {
    ObjectKey::namespaced(LEASE_RESOURCE, namespace, name)
}

/// The current time in Kubernetes' MicroTime format:
/// `2026-11-23T21:36:30.123456Z`.
pub fn now_micro() -> String {
    format_micro(Timestamp::now())
}

fn format_micro(t: Timestamp) -> String {
    t.strftime("%Y-%m-%dT%H:%M:%S%.6fZ").to_string()
}

fn spec(lease: &Value) -> Option<&serde_json::Map<String, Value>> {
    lease.get("spec")?.as_object()
}

fn holder_of(lease: &Value) -> Option<&str> {
    spec(lease)?
        .get("holderIdentity")?
        .as_str()
        .filter(|h| !h.is_empty())
}

/// Whole seconds, rounded up so a lease never lasts less than asked.
fn duration_secs(d: Duration) -> i64 {
    let secs = d.as_secs() + u64::from(d.subsec_nanos() > 0);
    i64::try_from(secs).unwrap_or(i64::MAX).max(1)
}

/// Whether the lease's last renewal plus its duration lies before `now`.
/// A lease with no parsable renewal time counts as expired: nobody can be
/// proven to hold it.
pub fn is_expired(lease: &Value, now: Timestamp) -> bool {
    let Some(spec) = spec(lease) else { return true };
    let renewed = spec
        .get("renewTime")
        .or_else(|| spec.get("acquireTime"))
        .and_then(Value::as_str)
        .and_then(|s| s.parse::<Timestamp>().ok());
    let Some(renewed) = renewed else { return true };
    let secs = spec
        .get("leaseDurationSeconds")
        .and_then(Value::as_i64)
        .unwrap_or(0);
    match renewed.checked_add(SignedDuration::from_secs(secs)) {
        Ok(until) => until < now,
        Err(_) => false,
    }
}

fn spec_mut(lease: &mut Value) -> Result<&mut serde_json::Map<String, Value>> {
    let obj = lease
        .as_object_mut()
        .ok_or_else(|| StoreError::Internal("stored lease is not a JSON map".into()))?;
    let spec = obj.entry("spec").or_insert_with(|| json!({}));
    if !spec.is_object() {
        *spec = json!({});
    }
    spec.as_object_mut()
        .ok_or_else(|| StoreError::Internal("lease spec is not a JSON map".into()))
}

/// Takes the lease `namespace/name` for `holder` for `duration`: creates it
/// if missing, renews it if `holder` already holds it, takes it over if it
/// is free or expired (counting a transition). Otherwise leaves it alone
/// and returns `held: false` with the current holder.
pub async fn acquire(
    store: &dyn Store,
    namespace: &str,
    name: &str,
    holder: &str,
    duration: Duration,
) -> Result<LeaseState> {
    let key = lease_key(namespace, name);
    for _ in 0..MAX_ATTEMPTS {
        let now = Timestamp::now();
        let stamp = format_micro(now);
        let lease = match store.get(&key).await {
            Ok(lease) => lease,
            Err(StoreError::NotFound { .. }) => {
                let lease = json!({
                    "apiVersion": "coordination.k8s.io/v1",
                    "kind": "Lease",
                    "metadata": {"name": name, "namespace": namespace},
                    "spec": {
                        "holderIdentity": holder,
                        "leaseDurationSeconds": duration_secs(duration),
                        "acquireTime": stamp,
                        "renewTime": stamp,
                        "leaseTransitions": 0,
                    },
                });
                match store.create(&key, lease).await {
                    Ok(created) => return Ok(LeaseState::of(created, holder)),
                    Err(StoreError::AlreadyExists { .. }) => continue,
                    Err(e) => return Err(e),
                }
            }
            Err(e) => return Err(e),
        };
        let current = holder_of(&lease).map(str::to_string);
        let mut next = lease.clone();
        {
            let spec = spec_mut(&mut next)?;
            if current.as_deref() == Some(holder) {
                spec.insert("renewTime".into(), json!(stamp));
                spec.insert(
                    "leaseDurationSeconds".into(),
                    json!(duration_secs(duration)),
                );
            } else if current.is_none() || is_expired(&lease, now) {
                let transitions = spec
                    .get("leaseTransitions")
                    .and_then(Value::as_i64)
                    .unwrap_or(0);
                spec.insert("holderIdentity".into(), json!(holder));
                spec.insert(
                    "leaseDurationSeconds".into(),
                    json!(duration_secs(duration)),
                );
                spec.insert("acquireTime".into(), json!(stamp));
                spec.insert("renewTime".into(), json!(stamp));
                spec.insert(
                    "leaseTransitions".into(),
                    json!(transitions.saturating_add(1)),
                );
            } else {
                return Ok(LeaseState::of(lease, holder));
            }
        }
        // `next` carries the resourceVersion read above: a concurrent
        // change makes this a Conflict and the loop looks again.
        match store.update(&key, next).await {
            Ok(updated) => return Ok(LeaseState::of(updated, holder)),
            Err(StoreError::Conflict { .. }) => continue,
            Err(e) => return Err(e),
        }
    }
    Err(contended(&key))
}

/// Extends `holder`'s lease by `duration` from now. Fails with `Conflict`
/// if someone else holds it (or nobody does), `NotFound` if it is missing.
pub async fn renew(
    store: &dyn Store,
    namespace: &str,
    name: &str,
    holder: &str,
    duration: Duration,
) -> Result<LeaseState> {
    let key = lease_key(namespace, name);
    for _ in 0..MAX_ATTEMPTS {
        let lease = store.get(&key).await?;
        match holder_of(&lease) {
            Some(h) if h == holder => {}
            other => {
                return Err(StoreError::Conflict {
                    key: key.to_string(),
                    message: match other {
                        Some(h) => format!("the lease is held by {h:?}, not {holder:?}"),
                        None => format!("the lease is not held by {holder:?}"),
                    },
                });
            }
        }
        let mut next = lease;
        {
            let spec = spec_mut(&mut next)?;
            spec.insert("renewTime".into(), json!(now_micro()));
            spec.insert(
                "leaseDurationSeconds".into(),
                json!(duration_secs(duration)),
            );
        }
        match store.update(&key, next).await {
            Ok(updated) => return Ok(LeaseState::of(updated, holder)),
            Err(StoreError::Conflict { .. }) => continue,
            Err(e) => return Err(e),
        }
    }
    Err(contended(&key))
}

/// Gives the lease up if `holder` holds it, so another can take it at once
/// rather than after expiry. A lease held by someone else is left alone
/// (`held: false`). `NotFound` if it is missing.
pub async fn release(
    store: &dyn Store,
    namespace: &str,
    name: &str,
    holder: &str,
) -> Result<LeaseState> {
    let key = lease_key(namespace, name);
    for _ in 0..MAX_ATTEMPTS {
        let lease = store.get(&key).await?;
        if holder_of(&lease) != Some(holder) {
            return Ok(LeaseState::of(lease, holder));
        }
        let mut next = lease;
        spec_mut(&mut next)?.remove("holderIdentity");
        match store.update(&key, next).await {
            Ok(updated) => return Ok(LeaseState::of(updated, holder)),
            Err(StoreError::Conflict { .. }) => continue,
            Err(e) => return Err(e),
        }
    }
    Err(contended(&key))
}

fn contended(key: &ObjectKey) -> StoreError {
    StoreError::Conflict {
        key: key.to_string(),
        message: "the lease is being changed concurrently, try again".into(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn micro_time_format() {
        let t: Timestamp = "2026-11-23T21:36:30.123456789Z".parse().unwrap();
        assert_eq!(format_micro(t), "2026-11-23T21:36:30.123456Z");
        let t: Timestamp = "2026-11-23T21:36:30Z".parse().unwrap();
        assert_eq!(format_micro(t), "2026-11-23T21:36:30.000000Z");
        assert_eq!(now_micro().len(), "2026-11-23T21:36:30.123456Z".len());
    }

    #[test]
    fn expiry() {
        let now: Timestamp = "2026-01-01T00:01:00Z".parse().unwrap();
        let lease = |renew: &str, secs: i64| json!({"spec": {"renewTime": renew, "leaseDurationSeconds": secs}});
        assert!(!is_expired(&lease("2026-01-01T00:00:30.000000Z", 40), now));
        assert!(is_expired(&lease("2026-01-01T00:00:30.000000Z", 20), now));
        assert!(is_expired(&json!({"spec": {}}), now));
        assert!(is_expired(&json!({}), now));
        assert!(is_expired(&lease("garbage", 40), now));
    }

    #[test]
    fn durations_round_up() {
        assert_eq!(duration_secs(Duration::from_millis(1)), 1);
        assert_eq!(duration_secs(Duration::from_millis(1500)), 2);
        assert_eq!(duration_secs(Duration::from_secs(40)), 40);
        assert_eq!(duration_secs(Duration::ZERO), 1);
    }
}
