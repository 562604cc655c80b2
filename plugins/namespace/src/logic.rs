//! The namespace controller's policy as pure functions: its configuration
//! (the resources to sweep), what is left in a namespace being deleted,
//! and the conditions that say so.

use std::collections::BTreeMap;

use orchd_sdk::serde_json::{Value, json};

/// The spec finalizer this controller lifts once the namespace is empty.
pub const FINALIZER: &str = "kubernetes";

/// Parses the Plugin's `spec.config`: `{"resources": ["pods",
/// "deployments.apps", ...]}`, the namespaced resources to sweep (orchd
/// writes every namespaced resource it serves there when it installs the
/// plugin).
pub fn resources_from_config(text: &str) -> Result<Vec<String>, String> {
    let value: Value = orchd_sdk::serde_json::from_str(text)
        .map_err(|e| format!("config must be JSON like {{\"resources\": [\"pods\", ...]}}: {e}"))?;
    let list = value["resources"]
        .as_array()
        .ok_or("config needs \"resources\": the namespaced resources to sweep")?;
    let mut out = Vec::new();
    for r in list {
        let r = r.as_str().ok_or("\"resources\" must hold strings")?;
        if r.is_empty() || r.contains('/') {
            return Err(format!("{r:?} is not a resource name"));
        }
        if !out.iter().any(|o| o == r) {
            out.push(r.to_string());
        }
    }
    Ok(out)
}

/// Whether the namespace waits on this controller: it is being deleted
/// and its `spec.finalizers` still name [`FINALIZER`].
pub fn needs_sweep(namespace: &Value) -> bool {
    namespace["metadata"]["deletionTimestamp"].is_string()
        && namespace["spec"]["finalizers"]
            .as_array()
            .is_some_and(|f| f.iter().any(|x| x == FINALIZER))
}

/// The namespace's `spec.finalizers` without [`FINALIZER`].
pub fn finalizers_without_ours(namespace: &Value) -> Vec<Value> {
    namespace["spec"]["finalizers"]
        .as_array()
        .into_iter()
        .flatten()
        .filter(|f| *f != FINALIZER)
        .cloned()
        .collect()
}

/// What a sweep found still there.
#[derive(Debug, Default, Clone, PartialEq)]
pub struct Remaining {
    /// Objects left per resource.
    pub objects: BTreeMap<String, usize>,
    /// Objects left per finalizer they wait on.
    pub finalizers: BTreeMap<String, usize>,
    /// Resources whose listing or deletion failed, with why.
    pub failures: Vec<String>,
}

impl Remaining {
    /// Counts an object of `resource` that is still there.
    pub fn add(&mut self, resource: &str, object: &Value) {
        *self.objects.entry(resource.to_string()).or_default() += 1;
        for f in object["metadata"]["finalizers"]
            .as_array()
            .into_iter()
            .flatten()
        {
            if let Some(f) = f.as_str() {
                *self.finalizers.entry(f.to_string()).or_default() += 1;
            }
        }
    }

    /// Whether the namespace is empty and nothing failed.
    pub fn is_done(&self) -> bool {
        self.objects.is_empty() && self.failures.is_empty()
    }
}

fn condition(
    kind: &str,
    present: bool,
    reason_true: &str,
    reason_false: &str,
    message: String,
) -> Value {
    json!({
        "type": kind,
        "status": if present { "True" } else { "False" },
        "reason": if present { reason_true } else { reason_false },
        "message": message,
    })
}

/// The namespace's deletion conditions for what is `left`, in Kubernetes'
/// words; `lastTransitionTime` is `now` for a condition whose status
/// changes and kept otherwise. Conditions of other types are kept.
pub fn conditions(current: &Value, left: &Remaining, now: &str) -> Value {
    let counts = |m: &BTreeMap<String, usize>, sep: &str| {
        m.iter()
            .map(|(k, n)| format!("{k}{sep}{n} resource instances"))
            .collect::<Vec<_>>()
            .join(", ")
    };
    let wanted = [
        condition(
            "NamespaceDeletionContentFailure",
            !left.failures.is_empty(),
            "ContentDeletionFailed",
            "ContentDeleted",
            if left.failures.is_empty() {
                "All content successfully deleted, may be waiting on finalization".into()
            } else {
                format!(
                    "Failed to delete all resource types, {} remaining: {}",
                    left.failures.len(),
                    left.failures.join(", ")
                )
            },
        ),
        condition(
            "NamespaceContentRemaining",
            !left.objects.is_empty(),
            "SomeResourcesRemain",
            "ContentRemoved",
            if left.objects.is_empty() {
                "All content successfully removed".into()
            } else {
                format!(
                    "Some resources are remaining: {}",
                    counts(&left.objects, " has ")
                )
            },
        ),
        condition(
            "NamespaceFinalizersRemaining",
            !left.finalizers.is_empty(),
            "SomeFinalizersRemain",
            "ContentHasNoFinalizers",
            if left.finalizers.is_empty() {
                "All content-preserving finalizers finished".into()
            } else {
                format!(
                    "Some content in the namespace has finalizers remaining: {}",
                    counts(&left.finalizers, " in ")
                )
            },
        ),
    ];
    let old: Vec<Value> = current["status"]["conditions"]
        .as_array()
        .cloned()
        .unwrap_or_default();
    let mut out: Vec<Value> = old
        .iter()
        .filter(|c| !wanted.iter().any(|w| w["type"] == c["type"]))
        .cloned()
        .collect();
    for mut w in wanted {
        let time = old
            .iter()
            .find(|c| c["type"] == w["type"] && c["status"] == w["status"])
            .and_then(|c| c["lastTransitionTime"].as_str().map(str::to_string))
            .unwrap_or_else(|| now.to_string());
        w["lastTransitionTime"] = json!(time);
        out.push(w);
    }
    Value::Array(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn config_lists_resources() {
        assert_eq!(
            resources_from_config(r#"{"resources": ["pods", "deployments.apps", "pods"]}"#)
                .unwrap(),
            ["pods", "deployments.apps"]
        );
        assert!(resources_from_config("").is_err());
        assert!(resources_from_config(r#"{"resources": "pods"}"#).is_err());
        assert!(resources_from_config(r#"{"resources": ["namespaces/finalize"]}"#).is_err());
    }

    #[test]
    fn only_deleted_namespaces_with_our_finalizer_are_swept() {
        let ns = |deleting: bool, finalizers: Value| {
            let mut n = json!({"metadata": {"name": "a"}, "spec": {"finalizers": finalizers}});
            if deleting {
                n["metadata"]["deletionTimestamp"] = json!("2026-01-01T00:00:00Z");
            }
            n
        };
        assert!(needs_sweep(&ns(true, json!(["kubernetes"]))));
        assert!(!needs_sweep(&ns(false, json!(["kubernetes"]))));
        assert!(!needs_sweep(&ns(true, json!(["other"]))));
        assert!(!needs_sweep(&ns(true, Value::Null)));
        assert_eq!(
            finalizers_without_ours(&ns(true, json!(["other", "kubernetes"]))),
            vec![json!("other")]
        );
    }

    #[test]
    fn conditions_say_what_is_left() {
        let mut left = Remaining::default();
        left.add(
            "pods",
            &json!({"metadata": {"finalizers": ["example.com/hold"]}}),
        );
        left.add("pods", &json!({"metadata": {}}));
        left.add("deployments.apps", &json!({"metadata": {}}));
        assert!(!left.is_done());
        let now = "2026-01-01T00:00:00Z";
        let c = conditions(&json!({}), &left, now);
        let find = |c: &Value, t: &str| {
            c.as_array()
                .unwrap()
                .iter()
                .find(|x| x["type"] == t)
                .unwrap()
                .clone()
        };
        let remaining = find(&c, "NamespaceContentRemaining");
        assert_eq!(remaining["status"], "True");
        assert_eq!(remaining["reason"], "SomeResourcesRemain");
        assert_eq!(
            remaining["message"],
            "Some resources are remaining: deployments.apps has 1 resource instances, pods has 2 resource instances"
        );
        let finalizers = find(&c, "NamespaceFinalizersRemaining");
        assert_eq!(
            finalizers["message"],
            "Some content in the namespace has finalizers remaining: example.com/hold in 1 resource instances"
        );
        assert_eq!(
            find(&c, "NamespaceDeletionContentFailure")["status"],
            "False"
        );
        // Unchanged statuses keep their transition time; others get now.
        let later = "2026-01-01T00:01:00Z";
        let mut ns = json!({"status": {"conditions": c}});
        left.failures.push("pods: boom".into());
        let c2 = conditions(&ns, &left, later);
        assert_eq!(
            find(&c2, "NamespaceContentRemaining")["lastTransitionTime"],
            now
        );
        let failure = find(&c2, "NamespaceDeletionContentFailure");
        assert_eq!(failure["status"], "True");
        assert_eq!(failure["lastTransitionTime"], later);
        assert_eq!(
            failure["message"],
            "Failed to delete all resource types, 1 remaining: pods: boom"
        );
        ns["status"]["conditions"] = c2;
        assert_eq!(conditions(&ns, &left, later), ns["status"]["conditions"]);
        assert!(Remaining::default().is_done());
    }
}
