//! The deployment controller's policy as pure functions: surge and
//! unavailability arithmetic, pod-template-hash, template identity,
//! revisions, proportional scaling and the status and conditions
//! `kubectl rollout status` reads.

use orchd_sdk::serde_json::{Map, Value, json};
use orchd_sdk::{meta, revision};

/// The revision of a ReplicaSet (and of the Deployment, the newest one).
pub const REVISION: &str = "deployment.kubernetes.io/revision";
/// The Deployment's replicas when the ReplicaSet was last scaled.
pub const DESIRED_REPLICAS: &str = "deployment.kubernetes.io/desired-replicas";
/// The Deployment's replicas plus surge when the ReplicaSet was last scaled.
pub const MAX_REPLICAS: &str = "deployment.kubernetes.io/max-replicas";
/// The label that keeps the pods of each ReplicaSet of a Deployment apart.
pub const HASH_LABEL: &str = "pod-template-hash";

/// Deployment annotations that are the controller's own, or kubectl's,
/// and so are not copied onto ReplicaSets.
const NOT_COPIED: &[&str] = &[
    REVISION,
    DESIRED_REPLICAS,
    MAX_REPLICAS,
    "deployment.kubernetes.io/revision-history",
    "kubectl.kubernetes.io/last-applied-configuration",
];

fn int(v: &Value) -> i64 {
    v.as_i64().unwrap_or(0)
}

/// `spec.replicas` (1 when unset, as the API defaults it).
pub fn replicas(d: &Value) -> i64 {
    d["spec"]["replicas"].as_i64().unwrap_or(1).max(0)
}

/// Whether the Deployment replaces pods with `RollingUpdate` (the default).
pub fn is_rolling(d: &Value) -> bool {
    d["spec"]["strategy"]["type"]
        .as_str()
        .unwrap_or("RollingUpdate")
        != "Recreate"
}

/// An int-or-percent (`3`, `"25%"`) as a number of pods out of `total`,
/// percentages rounded up or down.
pub fn scaled_value(v: &Value, total: i64, round_up: bool) -> Result<i64, String> {
    if let Some(n) = v.as_i64() {
        return Ok(n);
    }
    let text = v
        .as_str()
        .ok_or_else(|| format!("{v} is neither an integer nor a percentage"))?;
    let percent: i64 = text
        .strip_suffix('%')
        .and_then(|p| p.parse().ok())
        .ok_or_else(|| format!("invalid value for IntOrString: {text:?}"))?;
    let scaled = percent * total;
    Ok(if round_up {
        (scaled + 99).div_euclid(100)
    } else {
        scaled.div_euclid(100)
    })
}

/// (maxSurge, maxUnavailable) of a rolling update as pods: surge rounds
/// up, unavailability down, and if both come to zero one pod may be
/// unavailable, or the rollout could never move.
pub fn fenceposts(d: &Value) -> Result<(i64, i64), String> {
    let rolling = &d["spec"]["strategy"]["rollingUpdate"];
    let total = replicas(d);
    let or_default = |v: &Value| {
        if v.is_null() { json!("25%") } else { v.clone() }
    };
    let surge = scaled_value(&or_default(&rolling["maxSurge"]), total, true)?.max(0);
    let unavailable = scaled_value(&or_default(&rolling["maxUnavailable"]), total, false)?.max(0);
    if surge == 0 && unavailable == 0 {
        return Ok((0, 1));
    }
    Ok((surge, unavailable))
}

/// How many pods may be unavailable during the update: none for
/// Recreate or zero replicas, never more than the replicas.
pub fn max_unavailable(d: &Value) -> i64 {
    if !is_rolling(d) || replicas(d) == 0 {
        return 0;
    }
    fenceposts(d).map(|(_, u)| u).unwrap_or(0).min(replicas(d))
}

/// How many pods above the replicas may exist during the update.
pub fn max_surge(d: &Value) -> i64 {
    if !is_rolling(d) {
        return 0;
    }
    fenceposts(d).map(|(s, _)| s).unwrap_or(0)
}

/// A ReplicaSet of the Deployment reduced to the numbers the rollout
/// decides on. `pods` and `available_pods` count the active pods it
/// controls right now: they bound what exists better than its status,
/// which lags behind.
#[derive(Clone, Debug, PartialEq)]
pub struct RsCounts {
    /// `spec.replicas`.
    pub spec: i64,
    /// Active pods it controls.
    pub pods: i64,
    /// Of those, available ones (ready for minReadySeconds).
    pub available_pods: i64,
}

impl RsCounts {
    /// The most pods it has or may soon have: it may still be creating up
    /// to `spec`, or deleting down from `pods`.
    pub fn footprint(&self) -> i64 {
        self.spec.max(self.pods)
    }

    /// The fewest available pods it will keep: when it is scaled below
    /// its pods it deletes not-ready ones first.
    pub fn sure_available(&self) -> i64 {
        self.available_pods.min(self.spec)
    }
}

/// The replicas the new ReplicaSet of a rolling update may have now:
/// up to `replicas`, while every pod that exists or may soon exist stays
/// within `replicas + max_surge`.
pub fn rolling_new_replicas(
    replicas: i64,
    max_surge: i64,
    all: &[RsCounts],
    new: &RsCounts,
) -> i64 {
    let current: i64 = all.iter().map(RsCounts::footprint).sum();
    let max_total = replicas + max_surge;
    if current >= max_total {
        return new.spec;
    }
    let up = (max_total - current).min(replicas - new.spec).max(0);
    new.spec + up
}

/// How far old ReplicaSets may be scaled down in all without the
/// available pods falling below `replicas - max_unavailable`, given the
/// new ReplicaSet's pods that are not available yet.
pub fn old_scale_down_room(
    replicas: i64,
    max_unavailable: i64,
    all: &[RsCounts],
    new: Option<&RsCounts>,
) -> i64 {
    let min_available = replicas - max_unavailable;
    let all_spec: i64 = all.iter().map(|r| r.spec).sum();
    let new_unavailable = new.map_or(0, |n| (n.spec - n.sure_available()).max(0));
    all_spec - min_available - new_unavailable
}

/// Scale-downs for old ReplicaSets (`olds`, oldest first) that remove
/// only pods that are not available, within `room`; returns the new
/// specs.
pub fn cleanup_unhealthy(olds: &[RsCounts], room: i64) -> Vec<i64> {
    let mut left = room.max(0);
    olds.iter()
        .map(|rs| {
            let unhealthy = (rs.spec - rs.sure_available()).max(0).min(left);
            left -= unhealthy;
            rs.spec - unhealthy
        })
        .collect()
}

/// Scale-downs for old ReplicaSets (`olds`, oldest first) of a rolling
/// update, keeping `replicas - max_unavailable` pods available across
/// all ReplicaSets (`all`); returns the new specs.
pub fn scale_down_old(
    replicas: i64,
    max_unavailable: i64,
    all: &[RsCounts],
    olds: &[RsCounts],
) -> Vec<i64> {
    let min_available = replicas - max_unavailable;
    let available: i64 = all.iter().map(RsCounts::sure_available).sum();
    let mut left = (available - min_available).max(0);
    olds.iter()
        .map(|rs| {
            let down = rs.spec.min(left).max(0);
            left -= down;
            rs.spec - down
        })
        .collect()
}

/// The `pod-template-hash` of a pod template, varied by the Deployment's
/// `collisionCount` when a name is taken by a different template.
pub fn template_hash(template: &Value, collision_count: i64) -> String {
    revision::hash_ignoring(template, HASH_LABEL, collision_count)
}

/// Whether two pod templates are the same apart from `pod-template-hash`:
/// how the Deployment recognizes the ReplicaSet of its current template
/// (also after `kubectl rollout undo` copied an old one back).
pub fn same_template(a: &Value, b: &Value) -> bool {
    revision::normalized(a, HASH_LABEL) == revision::normalized(b, HASH_LABEL)
}

/// The `deployment.kubernetes.io/revision` of an object (0 if none).
pub fn revision(object: &Value) -> i64 {
    object["metadata"]["annotations"][REVISION]
        .as_str()
        .and_then(|r| r.parse().ok())
        .unwrap_or(0)
}

/// The annotations a ReplicaSet of `d` carries: the Deployment's own
/// (for example `kubernetes.io/change-cause`, which `kubectl rollout
/// history` shows) but not the controller's or kubectl's bookkeeping.
pub fn copied_annotations(d: &Value) -> Map<String, Value> {
    d["metadata"]["annotations"]
        .as_object()
        .into_iter()
        .flatten()
        .filter(|(k, _)| !NOT_COPIED.contains(&k.as_str()))
        .map(|(k, v)| (k.clone(), v.clone()))
        .collect()
}

/// The new ReplicaSet for `d`'s template: named `<deployment>-<hash>`,
/// its selector and template labels narrowed by `pod-template-hash`.
pub fn new_replica_set(d: &Value, hash: &str, replicas: i64, revision: i64) -> Value {
    let name = d["metadata"]["name"].as_str().unwrap_or_default();
    let mut template = d["spec"]["template"].clone();
    template["metadata"]["labels"][HASH_LABEL] = json!(hash);
    let mut selector = d["spec"]["selector"].clone();
    selector["matchLabels"][HASH_LABEL] = json!(hash);
    let mut annotations = copied_annotations(d);
    annotations.insert(REVISION.into(), json!(revision.to_string()));
    annotations.insert(
        DESIRED_REPLICAS.into(),
        json!(self::replicas(d).to_string()),
    );
    annotations.insert(
        MAX_REPLICAS.into(),
        json!((self::replicas(d) + max_surge(d)).to_string()),
    );
    json!({
        "apiVersion": "apps/v1",
        "kind": "ReplicaSet",
        "metadata": {
            "name": format!("{name}-{hash}"),
            "namespace": d["metadata"]["namespace"],
            "labels": template["metadata"]["labels"],
            "annotations": annotations,
            "ownerReferences": [meta::controller_reference(d, "apps/v1", "Deployment")],
        },
        "spec": {
            "replicas": replicas,
            "minReadySeconds": d["spec"]["minReadySeconds"].as_i64().unwrap_or(0),
            "selector": selector,
            "template": template,
        },
    })
}

/// The sizes proportional scaling gives active ReplicaSets when the
/// Deployment's replicas change mid-rollout, as Kubernetes spreads them:
/// each gets its share of the change by its size over the `max-replicas`
/// it was sized for (`annotated`), the rounding leftover going to the
/// first (the largest; callers sort them). `specs` and `annotated` are
/// per ReplicaSet; `to_add` may be negative.
pub fn proportional_sizes(specs: &[i64], annotated: &[i64], new_max: i64, to_add: i64) -> Vec<i64> {
    let mut sizes = specs.to_vec();
    if to_add == 0 || specs.is_empty() {
        return sizes;
    }
    let mut added = 0i64;
    for (i, (&spec, &annotated)) in specs.iter().zip(annotated).enumerate() {
        if spec == 0 || added == to_add {
            continue;
        }
        let fraction = if new_max <= 0 {
            -spec
        } else if annotated <= 0 {
            // Sized for nothing we know of: no share; the leftover below
            // goes to the largest.
            0
        } else {
            // Rounded to nearest, halves away from zero.
            let num = spec * new_max;
            let scaled = (2 * num + annotated).div_euclid(2 * annotated);
            scaled - spec
        };
        let allowed = to_add - added;
        let share = if to_add > 0 {
            fraction.min(allowed)
        } else {
            fraction.max(allowed)
        };
        sizes[i] += share;
        added += share;
    }
    sizes[0] = (sizes[0] + to_add - added).max(0);
    sizes
}

/// The Deployment status numbers, from its ReplicaSets' statuses as
/// Kubernetes computes them (so `kubectl rollout status` finishes when it
/// would there).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Counts {
    /// Pods of every ReplicaSet (their `status.replicas`).
    pub replicas: i64,
    /// Pods of the new ReplicaSet.
    pub updated: i64,
    /// Ready pods of every ReplicaSet.
    pub ready: i64,
    /// Available pods of every ReplicaSet.
    pub available: i64,
    /// Wanted (spec) pods not available.
    pub unavailable: i64,
}

/// Counts from ReplicaSet objects; `new` is the index of the new one.
pub fn counts(rss: &[Value], new: Option<usize>) -> Counts {
    let sum = |f: &str| rss.iter().map(|rs| int(&rs["status"][f])).sum::<i64>();
    let spec: i64 = rss.iter().map(|rs| int(&rs["spec"]["replicas"])).sum();
    let available = sum("availableReplicas");
    Counts {
        replicas: sum("replicas"),
        updated: new.map_or(0, |i| int(&rss[i]["status"]["replicas"])),
        ready: sum("readyReplicas"),
        available,
        unavailable: (spec - available).max(0),
    }
}

/// The counts a stored Deployment status says (absent fields are 0).
pub fn stored_counts(d: &Value) -> Counts {
    let s = &d["status"];
    Counts {
        replicas: int(&s["replicas"]),
        updated: int(&s["updatedReplicas"]),
        ready: int(&s["readyReplicas"]),
        available: int(&s["availableReplicas"]),
        unavailable: int(&s["unavailableReplicas"]),
    }
}

/// A Deployment condition.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Condition {
    /// `Available`, `Progressing`, `ReplicaFailure`.
    pub kind: &'static str,
    /// `True`, `False`, `Unknown`.
    pub status: &'static str,
    /// CamelCase reason.
    pub reason: &'static str,
    /// For humans.
    pub message: String,
}

/// The condition of `kind` in a list of conditions.
pub fn find_condition<'a>(conditions: &'a [Value], kind: &str) -> Option<&'a Value> {
    conditions.iter().find(|c| c["type"] == kind)
}

/// Sets `c` in `conditions` at `now`: nothing changes if the same status
/// and reason are there already; a changed reason keeps the transition
/// time while the status stays.
pub fn set_condition(conditions: &mut Vec<Value>, c: &Condition, now: i64) {
    let stamp = meta::format_time(now);
    let mut since = stamp.clone();
    if let Some(old) = find_condition(conditions, c.kind) {
        if old["status"] == c.status && old["reason"] == c.reason {
            return;
        }
        if old["status"] == c.status
            && let Some(t) = old["lastTransitionTime"].as_str()
        {
            since = t.to_string();
        }
    }
    conditions.retain(|old| old["type"] != c.kind);
    conditions.push(json!({
        "type": c.kind,
        "status": c.status,
        "lastUpdateTime": stamp,
        "lastTransitionTime": since,
        "reason": c.reason,
        "message": c.message,
    }));
}

/// Replaces the condition of `c.kind` even when status and reason are the
/// same, refreshing `lastUpdateTime` (progress restarts the deadline).
pub fn refresh_condition(conditions: &mut Vec<Value>, c: &Condition, now: i64) {
    let since = find_condition(conditions, c.kind)
        .filter(|old| old["status"] == c.status)
        .and_then(|old| old["lastTransitionTime"].as_str())
        .map(str::to_string);
    conditions.retain(|old| old["type"] != c.kind);
    set_condition(conditions, c, now);
    if let (Some(since), Some(last)) = (since, conditions.last_mut()) {
        last["lastTransitionTime"] = json!(since);
    }
}

/// Whether the rollout is complete: every replica updated and available,
/// no old pod left. (The status written with these counts always observes
/// the current generation.)
pub fn is_complete(d: &Value, c: &Counts) -> bool {
    let r = replicas(d);
    c.updated == r && c.replicas == r && c.available == r
}

/// Whether `new` shows progress over the stored status `old`: more pods
/// updated, fewer old pods, more ready or available.
pub fn is_progressing(old: &Counts, new: &Counts) -> bool {
    new.updated > old.updated
        || (new.replicas - new.updated) < (old.replicas - old.updated)
        || new.ready > old.ready
        || new.available > old.available
}

/// `spec.progressDeadlineSeconds`, if the Deployment has one.
pub fn progress_deadline(d: &Value) -> Option<i64> {
    d["spec"]["progressDeadlineSeconds"].as_i64()
}

/// Whether the rollout went without progress past its deadline at `now`,
/// judged from the Progressing condition's last update.
pub fn timed_out(d: &Value, conditions: &[Value], now: i64) -> bool {
    let Some(deadline) = progress_deadline(d) else {
        return false;
    };
    let Some(c) = find_condition(conditions, "Progressing") else {
        return false;
    };
    match c["reason"].as_str().unwrap_or_default() {
        "NewReplicaSetAvailable" => false,
        "ProgressDeadlineExceeded" => true,
        _ => c["lastUpdateTime"]
            .as_str()
            .and_then(meta::parse_time)
            .is_some_and(|from| from + deadline < now),
    }
}

/// When (Unix seconds) a rollout that is progressing would run out of
/// its deadline: the time to look again.
pub fn deadline_at(d: &Value, conditions: &[Value]) -> Option<i64> {
    let deadline = progress_deadline(d)?;
    let c = find_condition(conditions, "Progressing")?;
    if c["reason"] == "NewReplicaSetAvailable" || c["reason"] == "ProgressDeadlineExceeded" {
        return None;
    }
    Some(c["lastUpdateTime"].as_str().and_then(meta::parse_time)? + deadline)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn deployment(replicas: i64, surge: Value, unavailable: Value) -> Value {
        json!({
            "metadata": {"name": "web", "namespace": "ns", "uid": "d-uid", "generation": 2,
                         "annotations": {"kubernetes.io/change-cause": "v2", REVISION: "1",
                                         "kubectl.kubernetes.io/last-applied-configuration": "{}"}},
            "spec": {
                "replicas": replicas,
                "selector": {"matchLabels": {"app": "web"}},
                "strategy": {"type": "RollingUpdate",
                             "rollingUpdate": {"maxSurge": surge, "maxUnavailable": unavailable}},
                "template": {"metadata": {"labels": {"app": "web"}},
                             "spec": {"containers": [{"name": "c", "image": "nginx:1"}]}},
            },
        })
    }

    #[test]
    fn percentages_round_as_kubernetes_does() {
        // 25% of 10: surge rounds up to 3, unavailable down to 2.
        assert_eq!(
            fenceposts(&deployment(10, json!("25%"), json!("25%"))),
            Ok((3, 2))
        );
        assert_eq!(
            fenceposts(&deployment(3, json!("25%"), json!("25%"))),
            Ok((1, 0))
        );
        assert_eq!(
            fenceposts(&deployment(3, json!(2), json!("50%"))),
            Ok((2, 1))
        );
        // Both zero: one pod may be unavailable, or nothing could move.
        assert_eq!(
            fenceposts(&deployment(1, json!("10%"), json!("10%"))),
            Ok((1, 0))
        );
        assert_eq!(
            fenceposts(&deployment(5, json!(0), json!("10%"))),
            Ok((0, 1))
        );
        assert!(fenceposts(&deployment(5, json!("ten"), json!(1))).is_err());
        assert_eq!(scaled_value(&json!("100%"), 7, false), Ok(7));
        assert_eq!(scaled_value(&json!("1%"), 7, true), Ok(1));
        // More unavailable than replicas is capped; Recreate has none.
        assert_eq!(max_unavailable(&deployment(2, json!(0), json!(5))), 2);
        let mut recreate = deployment(4, json!(1), json!(1));
        recreate["spec"]["strategy"] = json!({"type": "Recreate"});
        assert_eq!((max_surge(&recreate), max_unavailable(&recreate)), (0, 0));
    }

    fn rs(spec: i64, pods: i64, available_pods: i64) -> RsCounts {
        RsCounts {
            spec,
            pods,
            available_pods,
        }
    }

    #[test]
    fn the_new_replica_set_grows_within_the_surge() {
        // 4 replicas, surge 1: old 4/4, new 0 → new may have 1.
        let old = rs(4, 4, 4);
        let new = rs(0, 0, 0);
        assert_eq!(
            rolling_new_replicas(4, 1, &[old.clone(), new.clone()], &new),
            1
        );
        // The old one's spec went down to 3 but its 4th pod still exists:
        // the new one waits.
        let old = rs(3, 4, 4);
        let new = rs(1, 1, 0);
        assert_eq!(rolling_new_replicas(4, 1, &[old, new.clone()], &new), 1);
        // Never past the replicas.
        let new = rs(3, 3, 3);
        assert_eq!(
            rolling_new_replicas(4, 5, &[rs(0, 0, 0), new.clone()], &new),
            4
        );
    }

    #[test]
    fn old_replica_sets_shrink_only_while_enough_stay_available() {
        // 4 replicas, 1 unavailable allowed: min available 3.
        let old = rs(4, 4, 4);
        let new = rs(1, 1, 0);
        let all = [old.clone(), new.clone()];
        let room = old_scale_down_room(4, 1, &all, Some(&new));
        assert_eq!(room, 5 - 3 - 1);
        assert_eq!(cleanup_unhealthy(std::slice::from_ref(&old), room), [4]);
        assert_eq!(scale_down_old(4, 1, &all, std::slice::from_ref(&old)), [3]);
        // Once the new pod is available, one more may go.
        let new = rs(1, 1, 1);
        assert_eq!(
            scale_down_old(4, 1, &[rs(3, 3, 3), new], &[rs(3, 3, 3)]),
            [2]
        );
        // A scaled-down ReplicaSet whose pods are not deleted yet counts
        // only up to its spec.
        assert_eq!(
            scale_down_old(4, 1, &[rs(2, 3, 3), rs(2, 2, 2)], &[rs(2, 3, 3)]),
            [1]
        );
        // Unhealthy pods of old ReplicaSets go first, oldest first.
        assert_eq!(cleanup_unhealthy(&[rs(3, 3, 1), rs(2, 2, 0)], 3), [1, 1]);
    }

    #[test]
    fn template_hash_ignores_key_order_and_its_own_label() {
        let a = json!({"metadata": {"labels": {"app": "web", "tier": "x"}}, "spec": {"containers": []}});
        let b = json!({"spec": {"containers": []}, "metadata": {"labels": {"tier": "x", "app": "web", HASH_LABEL: "zz"}}});
        assert_eq!(template_hash(&a, 0), template_hash(&b, 0));
        assert!(same_template(&a, &b));
        // What kubectl rollout undo writes back: empty fields spelled out.
        let undone = json!({"metadata": {"labels": {"app": "web", "tier": "x"}, "annotations": {}},
                            "spec": {"containers": [], "securityContext": {}, "volumes": null}});
        assert!(same_template(&a, &undone));
        assert_eq!(template_hash(&a, 0), template_hash(&undone, 0));
        let c = json!({"metadata": {"labels": {"app": "web"}}, "spec": {"containers": []}});
        assert_ne!(template_hash(&a, 0), template_hash(&c, 0));
        assert!(!same_template(&a, &c));
        assert_ne!(template_hash(&a, 0), template_hash(&a, 1));
        let h = template_hash(&a, 0);
        assert!(
            !h.is_empty()
                && h.bytes()
                    .all(|b| b"bcdfghjklmnpqrstvwxz2456789".contains(&b)),
            "{h}"
        );
    }

    #[test]
    fn new_replica_sets_carry_hash_revision_and_the_users_annotations() {
        let d = deployment(4, json!(1), json!(1));
        let rs = new_replica_set(&d, "abc", 1, 3);
        assert_eq!(rs["metadata"]["name"], "web-abc");
        assert_eq!(rs["metadata"]["labels"][HASH_LABEL], "abc");
        assert_eq!(rs["spec"]["selector"]["matchLabels"][HASH_LABEL], "abc");
        assert_eq!(
            rs["spec"]["template"]["metadata"]["labels"][HASH_LABEL],
            "abc"
        );
        assert_eq!(revision(&rs), 3);
        let ann = &rs["metadata"]["annotations"];
        assert_eq!(ann["kubernetes.io/change-cause"], "v2");
        assert_eq!(ann[DESIRED_REPLICAS], "4");
        assert_eq!(ann[MAX_REPLICAS], "5");
        assert!(ann["kubectl.kubernetes.io/last-applied-configuration"].is_null());
        assert!(meta::is_controlled_by(&rs, "d-uid"));
        assert!(same_template(
            &rs["spec"]["template"],
            &d["spec"]["template"]
        ));
    }

    #[test]
    fn scaling_mid_rollout_is_proportional() {
        // 10 replicas + 3 surge sized as 8 old + 5 new; scaled to 20
        // (+5 surge: max 25): 12 more, split 8:5 and the leftover to the
        // largest.
        let sizes = proportional_sizes(&[8, 5], &[13, 13], 25, 12);
        assert_eq!(sizes.iter().sum::<i64>(), 25);
        assert_eq!(sizes, [15, 10]);
        // Unknown sizing: all of the change goes to the largest.
        assert_eq!(proportional_sizes(&[8, 5], &[0, 0], 25, 12), [20, 5]);
        // Down to zero: everything goes.
        assert_eq!(proportional_sizes(&[8, 5], &[13, 13], 0, -13), [0, 0]);
        // Scaled down by 4: removed by share, never below zero.
        let down = proportional_sizes(&[8, 5], &[13, 13], 9, -4);
        assert_eq!(down.iter().sum::<i64>(), 9);
        assert!(down.iter().all(|s| *s >= 0));
    }

    fn rs_object(spec: i64, replicas: i64, ready: i64, available: i64) -> Value {
        json!({"spec": {"replicas": spec},
               "status": {"replicas": replicas, "readyReplicas": ready, "availableReplicas": available}})
    }

    #[test]
    fn status_counts_and_completion() {
        let d = deployment(3, json!(1), json!(0));
        let rss = [rs_object(1, 2, 2, 2), rs_object(3, 3, 3, 1)];
        let c = counts(&rss, Some(1));
        assert_eq!(
            c,
            Counts {
                replicas: 5,
                updated: 3,
                ready: 5,
                available: 3,
                unavailable: 1
            }
        );
        assert!(!is_complete(&d, &c));
        let done = counts(&[rs_object(0, 0, 0, 0), rs_object(3, 3, 3, 3)], Some(1));
        assert!(is_complete(&d, &done));
        assert!(is_progressing(&c, &done));
        assert!(!is_progressing(&done, &done));
        assert_eq!(counts(&rss, None).updated, 0);
    }

    #[test]
    fn conditions_keep_transition_times_and_deadlines_expire() {
        let t0 = meta::parse_time("2026-12-02T04:00:00Z").unwrap();
        let mut conds = Vec::new();
        let progressing = |reason, message: &str| Condition {
            kind: "Progressing",
            status: "True",
            reason,
            message: message.into(),
        };
        set_condition(
            &mut conds,
            &progressing("NewReplicaSetCreated", "created"),
            t0,
        );
        set_condition(
            &mut conds,
            &progressing("ReplicaSetUpdated", "progressing"),
            t0 + 10,
        );
        assert_eq!(conds.len(), 1);
        assert_eq!(conds[0]["lastTransitionTime"], meta::format_time(t0));
        assert_eq!(conds[0]["lastUpdateTime"], meta::format_time(t0 + 10));
        // The same reason again changes nothing...
        set_condition(
            &mut conds,
            &progressing("ReplicaSetUpdated", "progressing"),
            t0 + 20,
        );
        assert_eq!(conds[0]["lastUpdateTime"], meta::format_time(t0 + 10));
        // ...unless it is refreshed, as progress does.
        refresh_condition(
            &mut conds,
            &progressing("ReplicaSetUpdated", "progressing"),
            t0 + 20,
        );
        assert_eq!(conds[0]["lastUpdateTime"], meta::format_time(t0 + 20));
        assert_eq!(conds[0]["lastTransitionTime"], meta::format_time(t0));

        let mut d = deployment(3, json!(1), json!(0));
        d["spec"]["progressDeadlineSeconds"] = json!(30);
        assert_eq!(deadline_at(&d, &conds), Some(t0 + 50));
        assert!(!timed_out(&d, &conds, t0 + 50));
        assert!(timed_out(&d, &conds, t0 + 51));
        set_condition(
            &mut conds,
            &progressing("NewReplicaSetAvailable", "done"),
            t0 + 60,
        );
        assert!(!timed_out(&d, &conds, t0 + 1000));
        assert_eq!(deadline_at(&d, &conds), None);
    }
}
