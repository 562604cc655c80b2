//! The node lifecycle controller's policy as pure functions: when a node's
//! heartbeats are overdue, what its conditions and taints become, and when
//! each pod bound to it is evicted.

use orchd_sdk::meta;
use orchd_sdk::serde_json::{Value, json};

/// The grace period without heartbeats after which a node is Unknown
/// (Kubernetes' `--node-monitor-grace-period`).
pub const DEFAULT_GRACE_MS: i64 = 40_000;

/// The taint of a node whose Ready condition is Unknown.
pub const UNREACHABLE: &str = "node.kubernetes.io/unreachable";
/// The taint of a node whose Ready condition is False.
pub const NOT_READY: &str = "node.kubernetes.io/not-ready";

/// The node conditions a kubelet posts, set to Unknown when it stops.
const CONDITIONS: [&str; 4] = ["Ready", "MemoryPressure", "DiskPressure", "PIDPressure"];

/// The plugin's configuration.
#[derive(Debug, Clone, PartialEq)]
pub struct Config {
    /// Milliseconds without a heartbeat before a node is Unknown.
    pub grace_ms: i64,
}

impl Config {
    /// Parses the Plugin's `spec.config`: empty for the defaults, or a
    /// JSON object such as `{"nodeMonitorGracePeriodSeconds": 4}`
    /// (fractions allowed).
    pub fn parse(text: &str) -> Result<Config, String> {
        if text.trim().is_empty() {
            return Ok(Config {
                grace_ms: DEFAULT_GRACE_MS,
            });
        }
        let value: Value = orchd_sdk::serde_json::from_str(text)
            .map_err(|e| format!("config is not JSON: {e}"))?;
        let map = value.as_object().ok_or("config must be a JSON object")?;
        let mut config = Config {
            grace_ms: DEFAULT_GRACE_MS,
        };
        for (key, v) in map {
            match key.as_str() {
                "nodeMonitorGracePeriodSeconds" => {
                    let secs = v
                        .as_f64()
                        .filter(|s| s.is_finite() && *s > 0.0 && *s < 86_400.0)
                        .ok_or("nodeMonitorGracePeriodSeconds must be a number of seconds in (0, 86400)")?;
                    // In range: the product fits an i64.
                    config.grace_ms = (secs * 1000.0).round() as i64;
                }
                other => return Err(format!("unknown config field {other:?}")),
            }
        }
        Ok(config)
    }
}

/// An RFC 3339 time (fractions allowed: Leases use microseconds) as Unix
/// milliseconds.
pub fn parse_millis(text: &str) -> Option<i64> {
    let secs = meta::parse_time(text)?;
    let frac = text
        .get(19..)
        .and_then(|rest| rest.strip_prefix('.'))
        .map(|f| {
            let digits: String = f.chars().take_while(char::is_ascii_digit).take(3).collect();
            format!("{digits:0<3}").parse::<i64>().unwrap_or(0)
        })
        .unwrap_or(0);
    Some(secs * 1000 + frac)
}

/// The node's condition of `kind`, if it has one.
fn condition<'a>(node: &'a Value, kind: &str) -> Option<&'a Value> {
    node["status"]["conditions"]
        .as_array()?
        .iter()
        .find(|c| c["type"] == kind)
}

/// The status of the node's Ready condition: `True`, `False` or `Unknown`
/// (also when it has none).
pub fn ready_status(node: &Value) -> &str {
    condition(node, "Ready")
        .and_then(|c| c["status"].as_str())
        .unwrap_or("Unknown")
}

/// When the node last showed it is alive, in Unix milliseconds: the later
/// of its Lease's `renewTime` and its Ready condition's heartbeat, or its
/// creation if neither was ever posted.
pub fn last_heartbeat(node: &Value, lease: Option<&Value>) -> Option<i64> {
    let renewed = lease
        .and_then(|l| l["spec"]["renewTime"].as_str())
        .and_then(parse_millis);
    let posted = condition(node, "Ready")
        .and_then(|c| c["lastHeartbeatTime"].as_str())
        .and_then(parse_millis);
    renewed.max(posted).or_else(|| {
        node["metadata"]["creationTimestamp"]
            .as_str()
            .and_then(parse_millis)
    })
}

/// The node's conditions once its kubelet is known to have stopped
/// posting: each of the kubelet's conditions Unknown, as Kubernetes sets
/// them; `None` when they are already.
pub fn unknown_conditions(node: &Value, now: &str) -> Option<Value> {
    let mut conditions: Vec<Value> = node["status"]["conditions"]
        .as_array()
        .cloned()
        .unwrap_or_default();
    let mut changed = false;
    for kind in CONDITIONS {
        match conditions.iter_mut().find(|c| c["type"] == kind) {
            Some(c) if c["status"] == "Unknown" => {}
            Some(c) => {
                c["status"] = json!("Unknown");
                c["reason"] = json!("NodeStatusUnknown");
                c["message"] = json!("Kubelet stopped posting node status.");
                c["lastTransitionTime"] = json!(now);
                changed = true;
            }
            None => {
                conditions.push(json!({
                    "type": kind,
                    "status": "Unknown",
                    "reason": "NodeStatusNeverUpdated",
                    "message": "Kubelet never posted node status.",
                    "lastHeartbeatTime": now,
                    "lastTransitionTime": now,
                }));
                changed = true;
            }
        }
    }
    changed.then(|| json!(conditions))
}

/// The node's taints made to match its Ready status: `unreachable` while
/// Unknown, `not-ready` while False (each NoSchedule and NoExecute, the
/// latter stamped `timeAdded`), neither while True. Other taints are kept.
/// `None` when nothing changes.
pub fn wanted_taints(node: &Value, now: &str) -> Option<Vec<Value>> {
    let current: Vec<Value> = node["spec"]["taints"]
        .as_array()
        .cloned()
        .unwrap_or_default();
    let wanted_key = match ready_status(node) {
        "Unknown" => Some(UNREACHABLE),
        "False" => Some(NOT_READY),
        _ => None,
    };
    let mut next: Vec<Value> = current
        .iter()
        .filter(|t| {
            let key = t["key"].as_str().unwrap_or_default();
            !(key == UNREACHABLE || key == NOT_READY) || Some(key) == wanted_key
        })
        .cloned()
        .collect();
    if let Some(key) = wanted_key {
        for effect in ["NoSchedule", "NoExecute"] {
            if !next
                .iter()
                .any(|t| t["key"] == key && t["effect"] == effect)
            {
                let mut taint = json!({"key": key, "effect": effect});
                if effect == "NoExecute" {
                    taint["timeAdded"] = json!(now);
                }
                next.push(taint);
            }
        }
    }
    (next != current).then_some(next)
}

/// Whether `toleration` tolerates `taint` (Kubernetes' rules: an empty key
/// with `Exists` tolerates everything; an empty effect every effect).
pub fn tolerates(toleration: &Value, taint: &Value) -> bool {
    let effect = toleration["effect"].as_str().unwrap_or_default();
    if !effect.is_empty() && taint["effect"].as_str() != Some(effect) {
        return false;
    }
    let key = toleration["key"].as_str().unwrap_or_default();
    let operator = toleration["operator"].as_str().unwrap_or("Equal");
    if key.is_empty() {
        return operator == "Exists";
    }
    if taint["key"].as_str() != Some(key) {
        return false;
    }
    match operator {
        "Exists" => true,
        "Equal" | "" => {
            toleration["value"].as_str().unwrap_or_default()
                == taint["value"].as_str().unwrap_or_default()
        }
        _ => false,
    }
}

/// When a pod on a node with `taints` is to be evicted.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Eviction {
    /// It tolerates every NoExecute taint for good.
    Never,
    /// At this Unix millisecond (now or in the past: at once).
    At(i64),
}

/// When `pod` must leave a node with `taints`, as Kubernetes' taint
/// manager decides: at once if a NoExecute taint is not tolerated, else
/// when the shortest `tolerationSeconds` among the tolerations in use has
/// passed since its taint was added (`now_ms` for a taint without a
/// `timeAdded`), never if none is bounded.
pub fn eviction(pod: &Value, taints: &[Value], now_ms: i64) -> Eviction {
    let tolerations: Vec<Value> = pod["spec"]["tolerations"]
        .as_array()
        .cloned()
        .unwrap_or_default();
    let mut at: Option<i64> = None;
    for taint in taints.iter().filter(|t| t["effect"] == "NoExecute") {
        let Some(used) = tolerations.iter().find(|t| tolerates(t, taint)) else {
            return Eviction::At(now_ms);
        };
        let Some(seconds) = used["tolerationSeconds"].as_i64() else {
            continue;
        };
        let added = taint["timeAdded"]
            .as_str()
            .and_then(parse_millis)
            .unwrap_or(now_ms);
        let due = added.saturating_add(seconds.max(0).saturating_mul(1000));
        at = Some(at.map_or(due, |a| a.min(due)));
    }
    at.map_or(Eviction::Never, Eviction::At)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn node(ready: &str, heartbeat: &str, taints: Value) -> Value {
        json!({
            "metadata": {"name": "n1", "creationTimestamp": "2026-01-01T00:00:00Z"},
            "spec": {"taints": taints},
            "status": {"conditions": [
                {"type": "MemoryPressure", "status": "False", "lastHeartbeatTime": heartbeat},
                {"type": "Ready", "status": ready, "reason": "KubeletReady", "lastHeartbeatTime": heartbeat},
            ]},
        })
    }

    #[test]
    fn config_defaults_and_parses_the_grace_period() {
        assert_eq!(Config::parse("").unwrap().grace_ms, 40_000);
        assert_eq!(
            Config::parse(r#"{"nodeMonitorGracePeriodSeconds": 4}"#)
                .unwrap()
                .grace_ms,
            4_000
        );
        assert_eq!(
            Config::parse(r#"{"nodeMonitorGracePeriodSeconds": 0.5}"#)
                .unwrap()
                .grace_ms,
            500
        );
        assert!(Config::parse(r#"{"nodeMonitorGracePeriodSeconds": -1}"#).is_err());
        assert!(Config::parse(r#"{"grace": 4}"#).is_err());
        assert!(Config::parse("4s").is_err());
    }

    #[test]
    fn times_parse_to_milliseconds() {
        assert_eq!(parse_millis("1970-01-01T00:00:01Z"), Some(1000));
        assert_eq!(parse_millis("1970-01-01T00:00:01.250000Z"), Some(1250));
        assert_eq!(parse_millis("1970-01-01T00:00:01.5Z"), Some(1500));
        assert_eq!(parse_millis("yesterday"), None);
    }

    #[test]
    fn the_last_heartbeat_is_the_later_of_lease_and_status() {
        let n = node("True", "1970-01-01T00:00:10Z", Value::Null);
        let lease = json!({"spec": {"renewTime": "1970-01-01T00:00:20.000000Z"}});
        assert_eq!(last_heartbeat(&n, Some(&lease)), Some(20_000));
        let old = json!({"spec": {"renewTime": "1970-01-01T00:00:05.000000Z"}});
        assert_eq!(last_heartbeat(&n, Some(&old)), Some(10_000));
        let mut bare = n.clone();
        bare["status"] = json!({});
        assert_eq!(
            last_heartbeat(&bare, None),
            parse_millis("2026-01-01T00:00:00Z")
        );
    }

    #[test]
    fn a_silent_node_turns_unknown_once() {
        let n = node("True", "1970-01-01T00:00:10Z", Value::Null);
        let now = "1970-01-01T00:01:00Z";
        let conditions = unknown_conditions(&n, now).unwrap();
        let ready = conditions
            .as_array()
            .unwrap()
            .iter()
            .find(|c| c["type"] == "Ready")
            .unwrap();
        assert_eq!(ready["status"], "Unknown");
        assert_eq!(ready["reason"], "NodeStatusUnknown");
        assert_eq!(ready["message"], "Kubelet stopped posting node status.");
        assert_eq!(ready["lastTransitionTime"], now);
        // The heartbeat stays what the kubelet last posted.
        assert_eq!(ready["lastHeartbeatTime"], "1970-01-01T00:00:10Z");
        // Conditions the kubelet never posted are added, Unknown.
        assert_eq!(conditions.as_array().unwrap().len(), 4);
        let mut marked = n.clone();
        marked["status"]["conditions"] = conditions;
        assert_eq!(unknown_conditions(&marked, now), None);
    }

    #[test]
    fn taints_follow_the_ready_condition() {
        let now = "1970-01-01T00:01:00Z";
        let user = json!({"key": "gpu", "value": "true", "effect": "NoSchedule"});
        let unknown = node("Unknown", now, json!([user.clone()]));
        let taints = wanted_taints(&unknown, now).unwrap();
        assert_eq!(
            taints,
            vec![
                user.clone(),
                json!({"key": UNREACHABLE, "effect": "NoSchedule"}),
                json!({"key": UNREACHABLE, "effect": "NoExecute", "timeAdded": now}),
            ]
        );
        let mut tainted = unknown.clone();
        tainted["spec"]["taints"] = json!(taints);
        assert_eq!(wanted_taints(&tainted, "1970-01-01T00:02:00Z"), None);
        // Not ready: the other taint replaces it.
        let mut not_ready = tainted.clone();
        not_ready["status"]["conditions"][1]["status"] = json!("False");
        let taints = wanted_taints(&not_ready, now).unwrap();
        assert!(taints.iter().all(|t| t["key"] != UNREACHABLE));
        assert_eq!(taints.iter().filter(|t| t["key"] == NOT_READY).count(), 2);
        // Ready again: only the user's taint is left.
        let mut ready = tainted.clone();
        ready["status"]["conditions"][1]["status"] = json!("True");
        assert_eq!(wanted_taints(&ready, now), Some(vec![user]));
        assert_eq!(wanted_taints(&node("True", now, Value::Null), now), None);
    }

    #[test]
    fn pods_leave_after_their_toleration_seconds() {
        let added = "1970-01-01T00:01:00Z";
        let taints = vec![
            json!({"key": UNREACHABLE, "effect": "NoSchedule"}),
            json!({"key": UNREACHABLE, "effect": "NoExecute", "timeAdded": added}),
        ];
        let pod = |tolerations: Value| json!({"spec": {"tolerations": tolerations}});
        let now = 61_000;
        assert_eq!(eviction(&pod(Value::Null), &taints, now), Eviction::At(now));
        let bounded = pod(json!([
            {"key": NOT_READY, "operator": "Exists", "effect": "NoExecute", "tolerationSeconds": 1},
            {"key": UNREACHABLE, "operator": "Exists", "effect": "NoExecute", "tolerationSeconds": 300},
        ]));
        assert_eq!(eviction(&bounded, &taints, now), Eviction::At(360_000));
        let forever = pod(json!([{"key": UNREACHABLE, "operator": "Exists"}]));
        assert_eq!(eviction(&forever, &taints, now), Eviction::Never);
        let everything = pod(json!([{"operator": "Exists", "tolerationSeconds": 2}]));
        assert_eq!(eviction(&everything, &taints, now), Eviction::At(62_000));
        // A NoSchedule toleration does not keep a pod on a NoExecute taint.
        let wrong =
            pod(json!([{"key": UNREACHABLE, "operator": "Exists", "effect": "NoSchedule"}]));
        assert_eq!(eviction(&wrong, &taints, now), Eviction::At(now));
        // No NoExecute taint: nothing to do.
        assert_eq!(
            eviction(&pod(Value::Null), &taints[..1], now),
            Eviction::Never
        );
    }

    #[test]
    fn tolerations_match_as_in_kubernetes() {
        let taint = json!({"key": "k", "value": "v", "effect": "NoExecute"});
        assert!(tolerates(
            &json!({"key": "k", "operator": "Equal", "value": "v"}),
            &taint
        ));
        assert!(tolerates(&json!({"key": "k", "value": "v"}), &taint));
        assert!(!tolerates(&json!({"key": "k", "value": "w"}), &taint));
        assert!(tolerates(
            &json!({"key": "k", "operator": "Exists", "effect": "NoExecute"}),
            &taint
        ));
        assert!(!tolerates(&json!({"key": "", "operator": "Equal"}), &taint));
        assert!(!tolerates(
            &json!({"key": "other", "operator": "Exists"}),
            &taint
        ));
    }
}
