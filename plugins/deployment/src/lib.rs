//! The deployment controller, as Kubernetes' controller-manager runs it: a
//! Deployment owns one ReplicaSet per pod template it has had, told apart
//! by the `pod-template-hash` label, and moves pods from the old ones to
//! the new one.
//!
//! - `RollingUpdate`: the new ReplicaSet grows while every pod that exists
//!   or may soon exist stays within `replicas + maxSurge`; old ones shrink
//!   while at least `replicas - maxUnavailable` pods stay available.
//!   Both bounds are judged from the pods each ReplicaSet controls right
//!   now as well as its spec, so a ReplicaSet still catching up never
//!   lets the rollout overshoot. `Recreate`: old pods all go, then the new
//!   ReplicaSet is scaled up.
//! - Revisions: each ReplicaSet carries `deployment.kubernetes.io/revision`
//!   (the Deployment the newest), so `kubectl rollout history` lists them
//!   and `kubectl rollout undo`, which copies an old template back, makes
//!   that ReplicaSet the new one again with the next revision. Old
//!   ReplicaSets beyond `revisionHistoryLimit` are deleted once empty.
//! - `paused`: no rollout, only scaling; a change of `replicas` during a
//!   rollout is spread over the ReplicaSets in proportion.
//! - Status: observedGeneration, replicas, updatedReplicas, readyReplicas,
//!   availableReplicas, unavailableReplicas, and the `Available` and
//!   `Progressing` conditions with Kubernetes' reasons, including
//!   `ProgressDeadlineExceeded` after `progressDeadlineSeconds` without
//!   progress, so `kubectl rollout status` ends when it would there.
//!
//! It reconciles `deployments.apps` and watches ReplicaSets, mapped to
//! their controlling Deployment; it counts pods from the ReplicaSets'
//! status, never listing them (thousands of pods per reconcile was most of
//! its time at scale). Capabilities: `read: deployments.apps,
//! replicasets.apps`, `write: deployments.apps, replicasets.apps`.

mod logic;

use logic::{Condition, RsCounts};
use orchd_sdk::controller::{BoxError, Controller, ControllerSpec, ReconcileResult};
use orchd_sdk::objects::{self, Error, ObjectRef};
use orchd_sdk::serde_json::{Value, json};
use orchd_sdk::{events, meta};

const DEPLOYMENTS: &str = "deployments.apps";
const REPLICASETS: &str = "replicasets.apps";

struct Deployments;

impl Controller for Deployments {
    fn setup(_config: &str) -> Result<ControllerSpec, BoxError> {
        Ok(ControllerSpec::new(DEPLOYMENTS).watch_owned(REPLICASETS, "Deployment"))
    }

    fn reconcile(key: ObjectRef) -> Result<ReconcileResult, BoxError> {
        match sync(key) {
            // Someone else wrote one of the objects meanwhile: that change
            // queues the Deployment again, to be looked at afresh.
            Err(e) if e.downcast_ref::<Error>().is_some_and(Error::is_conflict) => Ok(
                ReconcileResult::requeue_after(std::time::Duration::from_millis(100)),
            ),
            other => other,
        }
    }
}

/// One reconcile of the Deployment at `key`.
fn sync(key: ObjectRef) -> Result<ReconcileResult, BoxError> {
    let d: Value = match objects::get(&key) {
        Ok(d) => d,
        Err(Error::NotFound(_)) => return Ok(ReconcileResult::Done),
        Err(e) => return Err(e.into()),
    };
    let Some(namespace) = key.namespace.clone() else {
        return Ok(ReconcileResult::Done);
    };
    let selector = &d["spec"]["selector"];
    let empty = selector["matchLabels"]
        .as_object()
        .is_none_or(|m| m.is_empty())
        && selector["matchExpressions"]
            .as_array()
            .is_none_or(|e| e.is_empty());
    if empty {
        events::warning(
            &key,
            "SelectingAll",
            "This deployment is selecting all pods. A non-empty selector is required.",
        );
        return Ok(ReconcileResult::Done);
    }
    let mut s = Sync::load(key, namespace, d)?;
    if meta::is_deleting(&s.d) {
        let new = s.new_index();
        s.sync_status_only(new)?;
        return Ok(ReconcileResult::Done);
    }
    s.check_paused_conditions()?;
    let requeue_at = if s.d["spec"]["paused"] == true || s.is_scaling_event() {
        s.sync_scale()?;
        None
    } else if logic::is_rolling(&s.d) {
        s.rollout_rolling()?
    } else {
        s.rollout_recreate()?
    };
    Ok(match requeue_at {
        Some(at) => {
            let secs = u64::try_from(at - s.now).unwrap_or(0);
            ReconcileResult::requeue_after(std::time::Duration::from_secs(secs))
        }
        None => ReconcileResult::Done,
    })
}

/// One reconcile of one Deployment: the Deployment and what it owns,
/// kept current as this reconcile writes them.
struct Sync {
    key: ObjectRef,
    namespace: String,
    d: Value,
    /// The ReplicaSets it controls, oldest first.
    rss: Vec<Value>,
    now: i64,
}

fn name_of(object: &Value) -> String {
    object["metadata"]["name"]
        .as_str()
        .unwrap_or_default()
        .to_string()
}

fn spec_replicas(rs: &Value) -> i64 {
    rs["spec"]["replicas"].as_i64().unwrap_or(0)
}

fn annotation_int(object: &Value, key: &str) -> Option<i64> {
    object["metadata"]["annotations"][key]
        .as_str()?
        .parse()
        .ok()
}

impl Sync {
    /// Reads the Deployment's ReplicaSets (adopting and releasing as the
    /// selector says).
    fn load(key: ObjectRef, namespace: String, d: Value) -> Result<Self, BoxError> {
        let uid = d["metadata"]["uid"]
            .as_str()
            .unwrap_or_default()
            .to_string();
        let selector = &d["spec"]["selector"];
        let deleting = meta::is_deleting(&d);
        let mut rss = Vec::new();
        for rs in objects::list::<Value>(REPLICASETS, Some(&namespace), "")? {
            let matches = meta::selector_matches(selector, &rs["metadata"]["labels"])?;
            match meta::controller_ref(&rs) {
                Some(r) if r["uid"] == uid.as_str() => {
                    if matches {
                        rss.push(rs);
                    } else if !deleting {
                        set_owner_refs(&rs, |refs| refs.retain(|r| r["uid"] != uid.as_str()))?;
                    }
                }
                Some(_) => {}
                None if matches && !deleting && !meta::is_deleting(&rs) => {
                    let reference = meta::controller_reference(&d, "apps/v1", "Deployment");
                    if let Some(adopted) = set_owner_refs(&rs, |refs| refs.push(reference))? {
                        rss.push(adopted);
                    }
                }
                None => {}
            }
        }
        rss.sort_by_key(|rs| {
            (
                rs["metadata"]["creationTimestamp"]
                    .as_str()
                    .and_then(meta::parse_time)
                    .unwrap_or(0),
                name_of(rs),
            )
        });

        Ok(Sync {
            key,
            namespace,
            d,
            rss,
            now: meta::now_unix(),
        })
    }

    fn replicas(&self) -> i64 {
        logic::replicas(&self.d)
    }

    /// The ReplicaSet whose template is the Deployment's (the oldest, if
    /// several are).
    fn new_index(&self) -> Option<usize> {
        self.rss.iter().position(|rs| {
            logic::same_template(&rs["spec"]["template"], &self.d["spec"]["template"])
        })
    }

    fn old_indices(&self, new: Option<usize>) -> Vec<usize> {
        (0..self.rss.len()).filter(|i| Some(*i) != new).collect()
    }

    /// Spec and current pods of ReplicaSet `i`, as its status reports
    /// them (as Kubernetes' deployment controller reads them: the
    /// replicaset controller counts the pods, with the same
    /// `minReadySeconds`). A status that lags behind errs on the safe side:
    /// pods being deleted still count toward the surge, pods just made
    /// ready are not yet counted available.
    fn counts_of(&self, i: usize) -> RsCounts {
        let rs = &self.rss[i];
        let status = |field: &str| rs["status"][field].as_i64().unwrap_or(0).max(0);
        RsCounts {
            spec: spec_replicas(rs),
            pods: status("replicas"),
            available_pods: status("availableReplicas"),
        }
    }

    fn all_counts(&self) -> Vec<RsCounts> {
        (0..self.rss.len()).map(|i| self.counts_of(i)).collect()
    }

    fn has_deadline(&self) -> bool {
        logic::progress_deadline(&self.d).is_some()
    }

    fn conditions(&self) -> Vec<Value> {
        self.d["status"]["conditions"]
            .as_array()
            .cloned()
            .unwrap_or_default()
    }

    /// Writes the Deployment's status (the rest of `self.d` as read).
    fn write_status(&mut self, status: Value) -> Result<(), BoxError> {
        let mut d = self.d.clone();
        d["status"] = status;
        self.d = objects::update_status(DEPLOYMENTS, &d)?;
        Ok(())
    }

    /// Sets one condition in the stored status and writes it if that
    /// changed anything.
    fn write_condition(&mut self, c: &Condition) -> Result<(), BoxError> {
        let mut conditions = self.conditions();
        let before = conditions.clone();
        logic::set_condition(&mut conditions, c, self.now);
        if conditions == before {
            return Ok(());
        }
        let mut status = self.d["status"].clone();
        if !status.is_object() {
            status = json!({});
        }
        status["conditions"] = json!(conditions);
        self.write_status(status)
    }

    fn update_deployment(&mut self) -> Result<(), BoxError> {
        self.d = objects::update(DEPLOYMENTS, &self.d)?;
        Ok(())
    }

    /// Sets ReplicaSet `i`'s replicas (and the replica annotations
    /// proportional scaling reads); returns whether its size changed.
    fn scale(&mut self, i: usize, size: i64) -> Result<bool, BoxError> {
        let desired = self.replicas().to_string();
        let max = (self.replicas() + logic::max_surge(&self.d)).to_string();
        let rs = &self.rss[i];
        let old = spec_replicas(rs);
        let annotations = &rs["metadata"]["annotations"];
        if old == size
            && annotations[logic::DESIRED_REPLICAS] == desired.as_str()
            && annotations[logic::MAX_REPLICAS] == max.as_str()
        {
            return Ok(false);
        }
        let mut rs = rs.clone();
        rs["spec"]["replicas"] = json!(size);
        rs["metadata"]["annotations"][logic::DESIRED_REPLICAS] = json!(desired);
        rs["metadata"]["annotations"][logic::MAX_REPLICAS] = json!(max);
        self.rss[i] = objects::update(REPLICASETS, &rs)?;
        if old != size {
            let way = if size > old { "up" } else { "down" };
            events::normal(
                &self.key,
                "ScalingReplicaSet",
                &format!(
                    "Scaled {way} replica set {} from {old} to {size}",
                    name_of(&rs)
                ),
            );
        }
        Ok(old != size)
    }

    /// Finds the new ReplicaSet and brings revisions up to date; with
    /// `create`, makes the new ReplicaSet when there is none.
    fn sync_revision(&mut self, create: bool) -> Result<Option<usize>, BoxError> {
        let new = self.new_index();
        let max_old = self
            .old_indices(new)
            .iter()
            .map(|i| logic::revision(&self.rss[*i]))
            .max()
            .unwrap_or(0);
        let next_revision = max_old + 1;
        if let Some(i) = new {
            let rs = &self.rss[i];
            let mut updated = rs.clone();
            if logic::revision(rs) < next_revision {
                updated["metadata"]["annotations"][logic::REVISION] =
                    json!(next_revision.to_string());
            }
            for (k, v) in logic::copied_annotations(&self.d) {
                updated["metadata"]["annotations"][k] = v;
            }
            updated["spec"]["minReadySeconds"] =
                json!(self.d["spec"]["minReadySeconds"].as_i64().unwrap_or(0));
            if updated["metadata"]["annotations"] != rs["metadata"]["annotations"]
                || updated["spec"]["minReadySeconds"].as_i64()
                    != Some(rs["spec"]["minReadySeconds"].as_i64().unwrap_or(0))
            {
                self.rss[i] = objects::update(REPLICASETS, &updated)?;
            }
            self.sync_deployment_revision(i)?;
            if self.has_deadline()
                && logic::find_condition(&self.conditions(), "Progressing").is_none()
            {
                let message = format!("Found new replica set \"{}\"", name_of(&self.rss[i]));
                self.write_condition(&Condition {
                    kind: "Progressing",
                    status: "True",
                    reason: "FoundNewReplicaSet",
                    message,
                })?;
            }
            return Ok(Some(i));
        }
        if !create {
            return Ok(None);
        }
        let collisions = self.d["status"]["collisionCount"].as_i64().unwrap_or(0);
        let hash = logic::template_hash(&self.d["spec"]["template"], collisions);
        let replicas = if logic::is_rolling(&self.d) {
            let mut all = self.all_counts();
            let fresh = RsCounts {
                spec: 0,
                pods: 0,
                available_pods: 0,
            };
            all.push(fresh.clone());
            logic::rolling_new_replicas(self.replicas(), logic::max_surge(&self.d), &all, &fresh)
        } else {
            self.replicas()
        };
        let rs = logic::new_replica_set(&self.d, &hash, replicas, next_revision);
        let name = name_of(&rs);
        let created = match objects::create(REPLICASETS, &rs) {
            Ok(created) => created,
            Err(Error::Conflict(_)) => {
                // The name is taken by a ReplicaSet of another template:
                // the next hash is salted with a higher collisionCount.
                let mut status = self.d["status"].clone();
                if !status.is_object() {
                    status = json!({});
                }
                status["collisionCount"] = json!(collisions + 1);
                self.write_status(status)?;
                return Err(format!(
                    "replica set {name} exists with another template; trying another name"
                )
                .into());
            }
            Err(e) => {
                if self.has_deadline() {
                    self.write_condition(&Condition {
                        kind: "Progressing",
                        status: "False",
                        reason: "ReplicaSetCreateError",
                        message: format!("Failed to create new replica set \"{name}\": {e}"),
                    })?;
                }
                return Err(e.into());
            }
        };
        if replicas > 0 {
            events::normal(
                &self.key,
                "ScalingReplicaSet",
                &format!("Scaled up replica set {name} from 0 to {replicas}"),
            );
        }
        self.rss.push(created);
        let i = self.rss.len() - 1;
        self.sync_deployment_revision(i)?;
        if self.has_deadline() {
            self.write_condition(&Condition {
                kind: "Progressing",
                status: "True",
                reason: "NewReplicaSetCreated",
                message: format!("Created new replica set \"{name}\""),
            })?;
        }
        Ok(Some(i))
    }

    /// The Deployment's revision annotation follows its new ReplicaSet's.
    fn sync_deployment_revision(&mut self, new: usize) -> Result<(), BoxError> {
        let revision = logic::revision(&self.rss[new]);
        if logic::revision(&self.d) != revision {
            self.d["metadata"]["annotations"][logic::REVISION] = json!(revision.to_string());
            self.update_deployment()?;
        }
        Ok(())
    }

    /// The status the ReplicaSets amount to, with the `Available`
    /// condition set (and a `ReplicaFailure` one while a ReplicaSet has
    /// one); `Progressing` is left as it was.
    fn base_status(&self, new: Option<usize>) -> (logic::Counts, Vec<Value>) {
        let counts = logic::counts(&self.rss, new);
        let mut conditions = self.conditions();
        let min_available = self.replicas() - logic::max_unavailable(&self.d);
        let available = if counts.available >= min_available {
            Condition {
                kind: "Available",
                status: "True",
                reason: "MinimumReplicasAvailable",
                message: "Deployment has minimum availability.".into(),
            }
        } else {
            Condition {
                kind: "Available",
                status: "False",
                reason: "MinimumReplicasUnavailable",
                message: "Deployment does not have minimum availability.".into(),
            }
        };
        logic::set_condition(&mut conditions, &available, self.now);
        let failure = self.rss.iter().find_map(|rs| {
            rs["status"]["conditions"]
                .as_array()?
                .iter()
                .find(|c| c["type"] == "ReplicaFailure" && c["status"] == "True")
                .cloned()
        });
        match failure {
            Some(f) => logic::set_condition(
                &mut conditions,
                &Condition {
                    kind: "ReplicaFailure",
                    status: "True",
                    reason: if f["reason"] == "FailedDelete" {
                        "FailedDelete"
                    } else {
                        "FailedCreate"
                    },
                    message: f["message"].as_str().unwrap_or_default().to_string(),
                },
                self.now,
            ),
            None => conditions.retain(|c| c["type"] != "ReplicaFailure"),
        }
        (counts, conditions)
    }

    /// Writes `counts` and `conditions` as the status if they differ from
    /// the stored one.
    fn write_counts(
        &mut self,
        counts: &logic::Counts,
        conditions: Vec<Value>,
    ) -> Result<(), BoxError> {
        let mut status = json!({
            "observedGeneration": self.d["metadata"]["generation"].as_i64().unwrap_or(0),
            "replicas": counts.replicas,
            "updatedReplicas": counts.updated,
            "readyReplicas": counts.ready,
            "availableReplicas": counts.available,
            "unavailableReplicas": counts.unavailable,
            "conditions": conditions,
        });
        if let Some(c) = self.d["status"]["collisionCount"].as_i64() {
            status["collisionCount"] = json!(c);
        }
        let old = &self.d["status"];
        let unchanged = logic::stored_counts(&self.d) == *counts
            && old["observedGeneration"] == status["observedGeneration"]
            && old["conditions"] == status["conditions"];
        if unchanged {
            return Ok(());
        }
        self.write_status(status)
    }

    /// Status without judging progress: while paused or being deleted.
    fn sync_status_only(&mut self, new: Option<usize>) -> Result<(), BoxError> {
        let (counts, conditions) = self.base_status(new);
        self.write_counts(&counts, conditions)
    }

    /// Status with the `Progressing` condition judged; returns when to
    /// look again for the progress deadline.
    fn sync_rollout_status(&mut self, new: Option<usize>) -> Result<Option<i64>, BoxError> {
        let (counts, mut conditions) = self.base_status(new);
        if self.has_deadline() {
            let current = logic::find_condition(&conditions, "Progressing").cloned();
            let already_complete = counts.replicas == counts.updated
                && current
                    .as_ref()
                    .is_some_and(|c| c["reason"] == "NewReplicaSetAvailable");
            let new_name = new.map(|i| name_of(&self.rss[i]));
            if !already_complete {
                if logic::is_complete(&self.d, &counts) {
                    let message = match &new_name {
                        Some(n) => format!("ReplicaSet \"{n}\" has successfully progressed."),
                        None => "Deployment has successfully progressed.".into(),
                    };
                    logic::set_condition(
                        &mut conditions,
                        &Condition {
                            kind: "Progressing",
                            status: "True",
                            reason: "NewReplicaSetAvailable",
                            message,
                        },
                        self.now,
                    );
                } else if logic::is_progressing(&logic::stored_counts(&self.d), &counts) {
                    let message = match &new_name {
                        Some(n) => format!("ReplicaSet \"{n}\" is progressing."),
                        None => "Deployment is progressing.".into(),
                    };
                    logic::refresh_condition(
                        &mut conditions,
                        &Condition {
                            kind: "Progressing",
                            status: "True",
                            reason: "ReplicaSetUpdated",
                            message,
                        },
                        self.now,
                    );
                } else if logic::timed_out(&self.d, &conditions, self.now) {
                    let message = match &new_name {
                        Some(n) => format!("ReplicaSet \"{n}\" has timed out progressing."),
                        None => format!(
                            "Deployment \"{}\" has timed out progressing.",
                            self.key.name
                        ),
                    };
                    logic::set_condition(
                        &mut conditions,
                        &Condition {
                            kind: "Progressing",
                            status: "False",
                            reason: "ProgressDeadlineExceeded",
                            message,
                        },
                        self.now,
                    );
                }
            }
        }
        let again = if logic::is_complete(&self.d, &counts) {
            None
        } else {
            // The first whole second at which it has run out.
            logic::deadline_at(&self.d, &conditions).map(|at| at + 1)
        };
        self.write_counts(&counts, conditions)?;
        Ok(again)
    }

    /// Paused and resumed show in the `Progressing` condition.
    fn check_paused_conditions(&mut self) -> Result<(), BoxError> {
        if !self.has_deadline() {
            return Ok(());
        }
        let conditions = self.conditions();
        let reason = logic::find_condition(&conditions, "Progressing")
            .and_then(|c| c["reason"].as_str())
            .unwrap_or_default()
            .to_string();
        if reason == "ProgressDeadlineExceeded" {
            return Ok(());
        }
        let paused = self.d["spec"]["paused"] == true;
        let c = if paused && reason != "DeploymentPaused" {
            ("DeploymentPaused", "Deployment is paused")
        } else if !paused && reason == "DeploymentPaused" {
            ("DeploymentResumed", "Deployment is resumed")
        } else {
            return Ok(());
        };
        self.write_condition(&Condition {
            kind: "Progressing",
            status: "Unknown",
            reason: c.0,
            message: c.1.into(),
        })
    }

    /// Whether `replicas` changed since the active ReplicaSets were sized.
    fn is_scaling_event(&self) -> bool {
        let replicas = self.replicas();
        self.rss
            .iter()
            .filter(|rs| spec_replicas(rs) > 0)
            .filter_map(|rs| annotation_int(rs, logic::DESIRED_REPLICAS))
            .any(|desired| desired != replicas)
    }

    /// Scaling without rolling out: when paused, or when `replicas`
    /// changed.
    fn sync_scale(&mut self) -> Result<(), BoxError> {
        let new = self.sync_revision(false)?;
        self.scale_replica_sets(new)?;
        if self.d["spec"]["paused"] == true {
            self.cleanup(new)?;
        }
        self.sync_status_only(new)
    }

    /// Sizes the ReplicaSets for the Deployment's replicas: the one
    /// active ReplicaSet gets them all; during a rolling update they are
    /// spread in proportion.
    fn scale_replica_sets(&mut self, new: Option<usize>) -> Result<(), BoxError> {
        let replicas = self.replicas();
        let active: Vec<usize> = (0..self.rss.len())
            .filter(|i| spec_replicas(&self.rss[*i]) > 0)
            .collect();
        let only = match active.len() {
            0 => new.or_else(|| self.rss.len().checked_sub(1)),
            1 => Some(active[0]),
            _ => None,
        };
        if let Some(i) = only {
            self.scale(i, replicas)?;
            return Ok(());
        }
        if let Some(n) = new {
            let rs = &self.rss[n];
            let saturated = spec_replicas(rs) == replicas
                && annotation_int(rs, logic::DESIRED_REPLICAS) == Some(replicas)
                && rs["status"]["availableReplicas"].as_i64().unwrap_or(0) == replicas;
            if saturated {
                for i in self.old_indices(new) {
                    if spec_replicas(&self.rss[i]) > 0 {
                        self.scale(i, 0)?;
                    }
                }
                return Ok(());
            }
        }
        if !logic::is_rolling(&self.d) {
            return Ok(());
        }
        let allowed = if replicas > 0 {
            replicas + logic::max_surge(&self.d)
        } else {
            0
        };
        let total: i64 = active.iter().map(|i| spec_replicas(&self.rss[*i])).sum();
        let to_add = allowed - total;
        let mut order = active;
        // Largest first; when growing the newer wins ties, when shrinking
        // the older.
        order.sort_by(|a, b| {
            let by_size = spec_replicas(&self.rss[*b]).cmp(&spec_replicas(&self.rss[*a]));
            by_size.then(if to_add > 0 { b.cmp(a) } else { a.cmp(b) })
        });
        let fallback = self.d["status"]["replicas"].as_i64().unwrap_or(0);
        let specs: Vec<i64> = order.iter().map(|i| spec_replicas(&self.rss[*i])).collect();
        let annotated: Vec<i64> = order
            .iter()
            .map(|i| annotation_int(&self.rss[*i], logic::MAX_REPLICAS).unwrap_or(fallback))
            .collect();
        let sizes = logic::proportional_sizes(&specs, &annotated, allowed, to_add);
        for (i, size) in order.into_iter().zip(sizes) {
            self.scale(i, size)?;
        }
        Ok(())
    }

    /// One step of a rolling update; returns when to look again.
    fn rollout_rolling(&mut self) -> Result<Option<i64>, BoxError> {
        let Some(new) = self.sync_revision(true)? else {
            return Ok(None);
        };
        let replicas = self.replicas();
        let surge = logic::max_surge(&self.d);
        let unavailable = logic::max_unavailable(&self.d);

        // Grow (or trim) the new ReplicaSet.
        let new_spec = spec_replicas(&self.rss[new]);
        if new_spec != replicas {
            let target = if new_spec > replicas {
                replicas
            } else {
                logic::rolling_new_replicas(
                    replicas,
                    surge,
                    &self.all_counts(),
                    &self.counts_of(new),
                )
            };
            if self.scale(new, target)? {
                return self.sync_rollout_status(Some(new));
            }
        }

        // Shrink the old ones: first pods that are not available anyway,
        // then as many as availability allows, oldest first.
        let olds: Vec<usize> = self
            .old_indices(Some(new))
            .into_iter()
            .filter(|i| spec_replicas(&self.rss[*i]) > 0)
            .collect();
        if !olds.is_empty() {
            let room = logic::old_scale_down_room(
                replicas,
                unavailable,
                &self.all_counts(),
                Some(&self.counts_of(new)),
            );
            if room > 0 {
                let mut scaled = false;
                let old_counts: Vec<RsCounts> = olds.iter().map(|i| self.counts_of(*i)).collect();
                for (i, size) in olds.iter().zip(logic::cleanup_unhealthy(&old_counts, room)) {
                    scaled |= self.scale(*i, size)?;
                }
                let old_counts: Vec<RsCounts> = olds.iter().map(|i| self.counts_of(*i)).collect();
                let sizes =
                    logic::scale_down_old(replicas, unavailable, &self.all_counts(), &old_counts);
                for (i, size) in olds.iter().zip(sizes) {
                    scaled |= self.scale(*i, size)?;
                }
                if scaled {
                    return self.sync_rollout_status(Some(new));
                }
            }
        }

        if logic::is_complete(&self.d, &logic::counts(&self.rss, Some(new))) {
            self.cleanup(Some(new))?;
        }
        self.sync_rollout_status(Some(new))
    }

    /// One step of a Recreate rollout: every old pod goes before the new
    /// ReplicaSet grows. Returns when to look again.
    fn rollout_recreate(&mut self) -> Result<Option<i64>, BoxError> {
        let new = self.sync_revision(false)?;
        let mut scaled = false;
        for i in self.old_indices(new) {
            if spec_replicas(&self.rss[i]) > 0 {
                scaled |= self.scale(i, 0)?;
            }
        }
        if scaled {
            return self.sync_rollout_status(new);
        }
        let old_running = self.old_indices(new).iter().any(|i| {
            self.counts_of(*i).pods > 0
                || self.rss[*i]["status"]["replicas"].as_i64().unwrap_or(0) > 0
        });
        if old_running {
            return self.sync_rollout_status(new);
        }
        let new = match new {
            Some(i) => i,
            None => match self.sync_revision(true)? {
                Some(i) => i,
                None => return Ok(None),
            },
        };
        let replicas = self.replicas();
        self.scale(new, replicas)?;
        if logic::is_complete(&self.d, &logic::counts(&self.rss, Some(new))) {
            self.cleanup(Some(new))?;
        }
        self.sync_rollout_status(Some(new))
    }

    /// Deletes the oldest empty old ReplicaSets beyond
    /// `revisionHistoryLimit`.
    fn cleanup(&mut self, new: Option<usize>) -> Result<(), BoxError> {
        let Some(limit) = self.d["spec"]["revisionHistoryLimit"].as_i64() else {
            return Ok(());
        };
        let mut alive: Vec<usize> = self
            .old_indices(new)
            .into_iter()
            .filter(|i| !meta::is_deleting(&self.rss[*i]))
            .collect();
        let excess = alive.len() as i64 - limit.max(0);
        if excess <= 0 {
            return Ok(());
        }
        alive.sort_by_key(|i| (logic::revision(&self.rss[*i]), *i));
        for i in alive.into_iter().take(usize::try_from(excess).unwrap_or(0)) {
            let rs = &self.rss[i];
            let busy = rs["status"]["replicas"].as_i64().unwrap_or(0) != 0
                || spec_replicas(rs) != 0
                || rs["metadata"]["generation"].as_i64().unwrap_or(0)
                    > rs["status"]["observedGeneration"].as_i64().unwrap_or(0);
            if busy {
                continue;
            }
            let name = name_of(rs);
            match objects::delete(&ObjectRef::namespaced(
                REPLICASETS,
                self.namespace.as_str(),
                name.as_str(),
            )) {
                Ok(()) | Err(Error::NotFound(_)) => {}
                Err(e) => return Err(e.into()),
            }
        }
        Ok(())
    }
}

/// Rewrites `object`'s ownerReferences with `change`, with its
/// resourceVersion as a precondition; `None` if it is gone.
fn set_owner_refs(
    object: &Value,
    change: impl FnOnce(&mut Vec<Value>),
) -> Result<Option<Value>, Error> {
    let mut refs: Vec<Value> = object["metadata"]["ownerReferences"]
        .as_array()
        .cloned()
        .unwrap_or_default();
    change(&mut refs);
    let patch = json!({"metadata": {
        "ownerReferences": if refs.is_empty() { Value::Null } else { json!(refs) },
        "resourceVersion": object["metadata"]["resourceVersion"],
    }});
    let Some(key) = ObjectRef::of(REPLICASETS, object) else {
        return Ok(None);
    };
    match objects::patch(&key, &patch) {
        Ok(v) => Ok(Some(v)),
        Err(Error::NotFound(_)) => Ok(None),
        Err(e) => Err(e),
    }
}

orchd_sdk::export_controller!(Deployments);
