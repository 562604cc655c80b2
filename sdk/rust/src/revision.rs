//! Revisions of a pod template, as DaemonSets and StatefulSets label their
//! pods with them (`controller-revision-hash`) and Deployments name their
//! ReplicaSets (`pod-template-hash`). Pure functions over
//! `serde_json::Value`.
//!
//! Kubernetes keeps each revision in a ControllerRevision object; orchd's
//! controllers need only to tell pods of the current template from older
//! ones, which a stable hash of the template does.

use serde_json::{Map, Value, json};

/// The label naming the template revision a pod was made from.
pub const REVISION_LABEL: &str = "controller-revision-hash";

/// FNV-1a, 32 bits: small, and stable across builds and platforms.
fn fnv1a(bytes: &[u8], mut hash: u32) -> u32 {
    for b in bytes {
        hash ^= u32::from(*b);
        hash = hash.wrapping_mul(0x0100_0193);
    }
    hash
}

/// Appends `v` as JSON with object keys sorted, so equal templates hash
/// equally whatever order their fields were written in.
fn canonical(v: &Value, out: &mut String) {
    match v {
        Value::Object(m) => {
            let mut keys: Vec<&String> = m.keys().collect();
            keys.sort();
            out.push('{');
            for (i, k) in keys.into_iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                out.push_str(&Value::String(k.clone()).to_string());
                out.push(':');
                canonical(&m[k.as_str()], out);
            }
            out.push('}');
        }
        Value::Array(a) => {
            out.push('[');
            for (i, x) in a.iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                canonical(x, out);
            }
            out.push(']');
        }
        other => out.push_str(&other.to_string()),
    }
}

/// Drops nulls, empty objects and empty lists, recursively: a template
/// written back with `resources: {}` is the same template.
fn prune(v: &Value) -> Option<Value> {
    match v {
        Value::Null => None,
        Value::Object(m) => {
            let kept: Map<String, Value> = m
                .iter()
                .filter_map(|(k, v)| prune(v).map(|v| (k.clone(), v)))
                .collect();
            (!kept.is_empty()).then_some(Value::Object(kept))
        }
        Value::Array(a) if a.is_empty() => None,
        // Elements keep their places: an empty one still counts.
        Value::Array(a) => Some(Value::Array(
            a.iter().map(|x| prune(x).unwrap_or(json!({}))).collect(),
        )),
        other => Some(other.clone()),
    }
}

/// Characters of a hash: no vowels (no words), no look-alikes.
const ALPHABET: &[u8] = b"bcdfghjklmnpqrstvwxz2456789";

/// The revision hash of a pod template: equal for templates that differ
/// only in key order, empty fields or their own [`REVISION_LABEL`];
/// different (but for a 32-bit collision) otherwise. Fit for a label value.
pub fn template_hash(template: &Value) -> String {
    hash_ignoring(template, REVISION_LABEL, 0)
}

/// `template` without the label `own_label` (the one its hash is written
/// to) and pruned of empty fields: what its hash, and whether two
/// templates are the same, depend on.
pub fn normalized(template: &Value, own_label: &str) -> Value {
    let mut t = template.clone();
    if let Some(labels) = t["metadata"]["labels"].as_object_mut() {
        labels.remove(own_label);
    }
    prune(&t).unwrap_or(Value::Null)
}

/// The hash of [`normalized`]`(template, own_label)`, varied by
/// `collision_count` when it is above 0 (a Deployment's, when a name is
/// taken by another template), in letters fit for a name or label value.
pub fn hash_ignoring(template: &Value, own_label: &str, collision_count: i64) -> String {
    let mut text = String::new();
    canonical(&normalized(template, own_label), &mut text);
    let mut hash = fnv1a(text.as_bytes(), 0x811c_9dc5);
    if collision_count > 0 {
        hash = fnv1a(&collision_count.to_le_bytes(), hash);
    }
    let mut n = u64::from(hash);
    let base = ALPHABET.len() as u64;
    let mut out = String::new();
    loop {
        out.push(char::from(ALPHABET[(n % base) as usize]));
        n /= base;
        if n == 0 {
            break;
        }
    }
    out
}

/// The revision label of `object` (a pod), if it has one.
pub fn revision_of(object: &Value) -> Option<&str> {
    object["metadata"]["labels"][REVISION_LABEL].as_str()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hash_ignores_key_order_empty_fields_and_its_own_label() {
        let a = json!({"metadata": {"labels": {"app": "web", "tier": "x"}},
                       "spec": {"containers": [{"name": "c", "image": "nginx:1"}]}});
        let b = json!({"spec": {"containers": [{"image": "nginx:1", "name": "c", "resources": {}}]},
                       "metadata": {"labels": {"tier": "x", "app": "web", REVISION_LABEL: "old"}}});
        assert_eq!(template_hash(&a), template_hash(&b));
        let mut c = a.clone();
        c["spec"]["containers"][0]["image"] = json!("nginx:2");
        assert_ne!(template_hash(&a), template_hash(&c));
        let h = template_hash(&a);
        assert!(!h.is_empty() && h.bytes().all(|b| ALPHABET.contains(&b)));
        let pod = json!({"metadata": {"labels": {REVISION_LABEL: h}}});
        assert_eq!(revision_of(&pod), Some(h.as_str()));
        assert_eq!(revision_of(&json!({})), None);
    }
}
