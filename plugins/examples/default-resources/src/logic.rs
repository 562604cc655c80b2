//! What to add to a pod, and the JSON patch that adds it: pure functions,
//! tested natively.

use orchd_sdk::serde_json::{Value, json};

/// The default requests: what a container gets when it asks for nothing.
pub const DEFAULTS: [(&str, &str); 2] = [("cpu", "100m"), ("memory", "128Mi")];

/// One request added to one container.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Added {
    /// `containers` or `initContainers`.
    pub list: &'static str,
    /// Index in that list.
    pub index: usize,
    /// The container's name.
    pub container: String,
    /// `cpu` or `memory`.
    pub resource: &'static str,
    /// The quantity requested.
    pub quantity: &'static str,
}

/// The requests missing from `pod`'s containers (and init containers).
pub fn defaults_for(pod: &Value) -> Vec<Added> {
    let mut added = Vec::new();
    for list in ["initContainers", "containers"] {
        let containers = pod["spec"][list]
            .as_array()
            .map(Vec::as_slice)
            .unwrap_or(&[]);
        for (index, c) in containers.iter().enumerate() {
            for (resource, quantity) in DEFAULTS {
                if c["resources"]["requests"].get(resource).is_none() {
                    added.push(Added {
                        list,
                        index,
                        container: c["name"].as_str().unwrap_or_default().to_string(),
                        resource,
                        quantity,
                    });
                }
            }
        }
    }
    added
}

/// The JSON patch (RFC 6902) that adds `added` to `pod`: it creates
/// `resources` and `requests` where they are missing, since an `add` needs
/// its parent to exist.
pub fn patch(pod: &Value, added: &[Added]) -> Value {
    let mut ops = Vec::new();
    let mut made: Vec<(&str, usize)> = Vec::new();
    for a in added {
        let base = format!("/spec/{}/{}/resources", a.list, a.index);
        let container = &pod["spec"][a.list][a.index];
        let has_requests = container["resources"]["requests"].is_object();
        if !has_requests && !made.contains(&(a.list, a.index)) {
            made.push((a.list, a.index));
            if container["resources"].is_object() {
                ops.push(json!({"op": "add", "path": format!("{base}/requests"), "value": {}}));
            } else {
                ops.push(json!({"op": "add", "path": base, "value": {"requests": {}}}));
            }
        }
        ops.push(json!({
            "op": "add",
            "path": format!("{base}/requests/{}", a.resource),
            "value": a.quantity,
        }));
    }
    Value::Array(ops)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Applies `add` operations the way the host does, for the tests.
    fn apply(mut doc: Value, patch: &Value) -> Value {
        for op in patch.as_array().unwrap() {
            assert_eq!(op["op"], "add");
            let path = op["path"].as_str().unwrap();
            let (parent, key) = path.rsplit_once('/').unwrap();
            let target = doc.pointer_mut(parent).expect("parent exists");
            target[key] = op["value"].clone();
        }
        doc
    }

    #[test]
    fn a_container_without_requests_gets_both() {
        let pod = json!({"spec": {"containers": [{"name": "app", "image": "nginx"}]}});
        let added = defaults_for(&pod);
        assert_eq!(added.len(), 2);
        let out = apply(pod.clone(), &patch(&pod, &added));
        assert_eq!(
            out["spec"]["containers"][0]["resources"]["requests"],
            json!({"cpu": "100m", "memory": "128Mi"})
        );
    }

    #[test]
    fn what_is_set_stays_and_only_the_missing_one_is_added() {
        let pod = json!({"spec": {
            "initContainers": [{"name": "init", "resources": {"limits": {"cpu": "1"}}}],
            "containers": [
                {"name": "a", "resources": {"requests": {"cpu": "2"}}},
                {"name": "b", "resources": {"requests": {"cpu": "1", "memory": "1Gi"}}},
            ],
        }});
        let added = defaults_for(&pod);
        let names: Vec<(&str, &str)> = added
            .iter()
            .map(|a| (a.container.as_str(), a.resource))
            .collect();
        assert_eq!(
            names,
            vec![("init", "cpu"), ("init", "memory"), ("a", "memory")]
        );
        let out = apply(pod.clone(), &patch(&pod, &added));
        assert_eq!(
            out["spec"]["initContainers"][0]["resources"]["limits"]["cpu"],
            "1"
        );
        assert_eq!(
            out["spec"]["initContainers"][0]["resources"]["requests"]["memory"],
            "128Mi"
        );
        assert_eq!(
            out["spec"]["containers"][0]["resources"]["requests"],
            json!({"cpu": "2", "memory": "128Mi"})
        );
        assert_eq!(out["spec"]["containers"][1], pod["spec"]["containers"][1]);
    }

    #[test]
    fn a_pod_with_every_request_is_left_alone() {
        let pod = json!({"spec": {"containers": [{"name": "a", "resources": {"requests": {"cpu": "1", "memory": "1Gi"}}}]}});
        assert!(defaults_for(&pod).is_empty());
        assert!(defaults_for(&json!({})).is_empty());
    }
}
