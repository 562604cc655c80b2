//! Kubernetes strategic merge patch.
//!
//! The semantics follow k8s.io/apimachinery's `strategicpatch` package as
//! observed from the wire: what `kubectl apply` (three-way), `kubectl patch`
//! and `kubectl edit` send, and what the API server makes of it.

use crate::schema::{MergeStrategy, merge_strategy};
use crate::value::canon;
use crate::{PatchError, invalid};
use serde_json::{Map, Value};
use std::collections::{HashMap, HashSet};

const PATCH: &str = "$patch";
const RETAIN_KEYS: &str = "$retainKeys";
const SET_ELEMENT_ORDER: &str = "$setElementOrder";
const DELETE_FROM_PRIMITIVE_LIST: &str = "$deleteFromPrimitiveList";

type Object = Map<String, Value>;

/// Applies a Kubernetes strategic merge patch to `doc`, an object of `kind`
/// (`"Pod"`, `"Deployment"`, ...; see [`crate::merge_strategy`] for the
/// fields that merge).
///
/// - Objects merge recursively; `null` deletes a member.
/// - Lists replace, unless the field merges: lists of objects with a merge
///   key merge element by element (`{"$patch": "delete", <key>: ...}`
///   removes an element, a `{"$patch": "replace"}` element makes the list
///   exactly the patch's other elements); merge-strategy lists of scalars
///   (`metadata.finalizers`) merge as sets, and
///   `$deleteFromPrimitiveList/<field>` removes values from them.
/// - `$patch: replace` on an object replaces it, `$patch: delete` deletes
///   it, `$patch: merge` merges (the default).
/// - `$setElementOrder/<field>` orders a merged list: listed elements first
///   in the given order, elements only the server had interleaved by their
///   old positions.
/// - `$retainKeys` drops every member the patch does not name, and rejects a
///   patch naming members outside the list.
///
/// Directives are never stored: a new value taken from the patch has them
/// applied to nothing. The patch must be an object; anything it cannot
/// express (unknown `$patch` value, element without its merge key, list
/// element types that do not match) is [`PatchError::Invalid`].
pub fn strategic_merge_patch(doc: &Value, patch: &Value, kind: &str) -> Result<Value, PatchError> {
    let Value::Object(patch) = patch else {
        return Err(invalid(format!(
            "strategic merge patch must be a JSON object, got {patch}"
        )));
    };
    let original = match doc {
        Value::Object(map) => Some(map.clone()),
        _ => None,
    };
    let mut cx = Cx {
        kind,
        path: Vec::new(),
    };
    Ok(Value::Object(
        cx.merge_object(original, patch)?.unwrap_or_default(),
    ))
}

/// The walk's position: the kind being patched and the field names from the
/// root, which together select the merge strategy of the current field.
struct Cx<'a> {
    kind: &'a str,
    path: Vec<String>,
}

fn is_directive(key: &str) -> bool {
    key == PATCH
        || key == RETAIN_KEYS
        || key.starts_with(SET_ELEMENT_ORDER)
        || key.starts_with(DELETE_FROM_PRIMITIVE_LIST)
}

/// The field a `$prefix/<field>` directive refers to, or `None` when `key`
/// is not that directive.
fn directive_field<'k>(key: &'k str, prefix: &str) -> Result<Option<&'k str>, PatchError> {
    let Some(rest) = key.strip_prefix(prefix) else {
        return Ok(None);
    };
    match rest.strip_prefix('/') {
        Some(field) if !field.is_empty() => Ok(Some(field)),
        _ if prefix == SET_ELEMENT_ORDER => {
            Err(invalid("invalid patch format of setElementOrder list"))
        }
        _ => Err(invalid("invalid patch format of primitive list")),
    }
}

fn unknown_patch_type(directive: &Value, map: &Object) -> PatchError {
    invalid(format!(
        "unknown patch type: {directive} in map: {}",
        Value::Object(map.clone())
    ))
}

fn no_merge_key(map: &Object, key: &str) -> PatchError {
    invalid(format!(
        "map: {} does not contain declared merge key: {key}",
        Value::Object(map.clone())
    ))
}

/// Sets `key` without moving it: clients diff and display objects in member
/// order, so a changed field should stay where it was.
fn set(map: &mut Object, key: &str, value: Value) {
    match map.get_mut(key) {
        Some(slot) => *slot = value,
        None => {
            map.insert(key.to_string(), value);
        }
    }
}

#[derive(Clone, Copy, PartialEq)]
enum Elements {
    Objects,
    Scalars,
}

/// What a merging list holds. Like Kubernetes, lists of lists and lists
/// mixing objects with scalars cannot be merged.
fn element_kind<'v>(
    items: impl Iterator<Item = &'v Value>,
) -> Result<Option<Elements>, PatchError> {
    let mut kind = None;
    for item in items {
        let this = match item {
            Value::Array(_) => return Err(invalid("lists of lists are not supported")),
            Value::Object(_) => Elements::Objects,
            _ => Elements::Scalars,
        };
        match kind {
            None => kind = Some(this),
            Some(k) if k != this => {
                return Err(invalid("list element types are not identical"));
            }
            Some(_) => {}
        }
    }
    Ok(kind)
}

impl Cx<'_> {
    fn strategy(&self) -> Option<MergeStrategy> {
        merge_strategy(self.kind, &self.path)
    }

    fn field_name(&self) -> String {
        self.path.join(".")
    }

    /// Merges `patch` into `original` (absent for a new value); `None` means
    /// the object is deleted.
    fn merge_object(
        &mut self,
        original: Option<Object>,
        patch: &Object,
    ) -> Result<Option<Object>, PatchError> {
        match patch.get(PATCH) {
            None => {}
            Some(d) => match d.as_str() {
                Some("replace") => return self.merge_members(Object::new(), patch).map(Some),
                Some("delete") => return Ok(None),
                Some("merge") => {}
                _ => return Err(unknown_patch_type(d, patch)),
            },
        }
        self.merge_members(original.unwrap_or_default(), patch)
            .map(Some)
    }

    fn merge_members(
        &mut self,
        mut original: Object,
        patch: &Object,
    ) -> Result<Object, PatchError> {
        if let Some(retain) = patch.get(RETAIN_KEYS) {
            let bad = || invalid("invalid patch format of retainKeys");
            let Value::Array(list) = retain else {
                return Err(bad());
            };
            let keep = list
                .iter()
                .map(|v| v.as_str().ok_or_else(bad))
                .collect::<Result<HashSet<&str>, _>>()?;
            for (key, value) in patch {
                if !value.is_null() && !is_directive(key) && !keep.contains(key.as_str()) {
                    return Err(invalid(format!(
                        "invalid patch: field {key:?} is not in the $retainKeys list"
                    )));
                }
            }
            original.retain(|key, _| keep.contains(key.as_str()));
        }

        // Ordered lists go first and take their patch list with them, so the
        // order directive sees the whole merged list.
        let mut ordered: HashSet<&str> = HashSet::new();
        for (key, order) in patch {
            let Some(field) = directive_field(key, SET_ELEMENT_ORDER)? else {
                continue;
            };
            let Value::Array(order) = order else {
                return Err(invalid("invalid patch format of setElementOrder list"));
            };
            let patch_list = patch.get(field).filter(|v| !v.is_null());
            self.path.push(field.to_string());
            let existing = original.get_mut(field).map(std::mem::take);
            let merged = self.ordered_list(existing, patch_list, order);
            self.path.pop();
            if let Some(list) = merged? {
                set(&mut original, field, Value::Array(list));
            }
            if patch_list.is_some() {
                ordered.insert(field);
            }
        }

        for (key, value) in patch {
            if is_directive(key) || ordered.contains(key.as_str()) {
                continue;
            }
            if value.is_null() {
                original.shift_remove(key.as_str());
                continue;
            }
            self.path.push(key.clone());
            let existing = original.get_mut(key.as_str()).map(std::mem::take);
            let merged = self.merge_value(existing, value);
            self.path.pop();
            match merged? {
                Some(v) => set(&mut original, key, v),
                None => {
                    original.shift_remove(key.as_str());
                }
            }
        }

        for (key, value) in patch {
            let Some(field) = directive_field(key, DELETE_FROM_PRIMITIVE_LIST)? else {
                continue;
            };
            let Value::Array(remove) = value else {
                return Err(invalid("invalid patch format of primitive list"));
            };
            if let Some(Value::Array(items)) = original.get_mut(field) {
                let remove: HashSet<String> = remove.iter().map(canon).collect();
                items.retain(|v| !remove.contains(&canon(v)));
            }
        }
        Ok(original)
    }

    /// Merges one non-null patch value into the existing value of the field
    /// at `self.path`; `None` means the field is deleted.
    fn merge_value(
        &mut self,
        existing: Option<Value>,
        patch: &Value,
    ) -> Result<Option<Value>, PatchError> {
        match patch {
            Value::Object(p) => {
                let original = match existing {
                    Some(Value::Object(m))
                        if self.strategy() != Some(MergeStrategy::ReplaceMap) =>
                    {
                        Some(m)
                    }
                    _ => None,
                };
                Ok(self.merge_object(original, p)?.map(Value::Object))
            }
            Value::Array(p) => {
                let original = match existing {
                    Some(Value::Array(items)) => Some(items),
                    _ => None,
                };
                Ok(Some(Value::Array(self.merge_list(original, p)?)))
            }
            scalar => Ok(Some(scalar.clone())),
        }
    }

    fn merge_list(
        &mut self,
        original: Option<Vec<Value>>,
        patch: &[Value],
    ) -> Result<Vec<Value>, PatchError> {
        let key = match self.strategy() {
            Some(MergeStrategy::ByKey(keys)) => keys.first().copied(),
            Some(MergeStrategy::Set) => None,
            _ => return self.replace_list(patch),
        };
        let original = original.unwrap_or_default();
        let all = original.iter().chain(patch);
        match element_kind(all)? {
            None => Ok(original),
            Some(Elements::Scalars) => Ok(merge_scalars(original, patch)),
            Some(Elements::Objects) => match key {
                Some(key) => self.merge_by_key(original, patch, key),
                None => Err(invalid(format!(
                    "cannot merge lists without merge key for {}",
                    self.field_name()
                ))),
            },
        }
    }

    /// A list that does not merge becomes the patch's list, with directives
    /// applied to nothing (a `$patch: delete` element vanishes).
    fn replace_list(&mut self, patch: &[Value]) -> Result<Vec<Value>, PatchError> {
        let mut out = Vec::with_capacity(patch.len());
        for item in patch {
            match item {
                Value::Object(m) => {
                    if let Some(obj) = self.merge_object(None, m)?
                        && !(obj.is_empty() && m.contains_key(PATCH))
                    {
                        out.push(Value::Object(obj));
                    }
                }
                other => out.push(other.clone()),
            }
        }
        Ok(out)
    }

    fn merge_by_key(
        &mut self,
        mut original: Vec<Value>,
        patch: &[Value],
        key: &str,
    ) -> Result<Vec<Value>, PatchError> {
        let mut items: Vec<&Object> = Vec::with_capacity(patch.len());
        let mut replace = false;
        for item in patch {
            let Value::Object(m) = item else {
                return Err(invalid("list element types are not identical"));
            };
            let Some(directive) = m.get(PATCH) else {
                items.push(m);
                continue;
            };
            match directive.as_str() {
                Some("delete") => {
                    let id = canon(m.get(key).ok_or_else(|| no_merge_key(m, key))?);
                    original.retain(|o| key_id(o, key).as_deref() != Some(id.as_str()));
                }
                Some("replace") => replace = true,
                Some("merge") => items.push(m),
                _ => return Err(unknown_patch_type(directive, m)),
            }
        }
        if replace {
            original = Vec::with_capacity(items.len());
            for m in items.drain(..) {
                original.push(Value::Object(
                    self.merge_object(None, m)?.unwrap_or_default(),
                ));
            }
        }

        let server_order: Vec<Option<String>> = original.iter().map(|o| key_id(o, key)).collect();
        let mut position: HashMap<String, usize> = HashMap::new();
        for (i, id) in server_order.iter().enumerate() {
            if let Some(id) = id {
                position.entry(id.clone()).or_insert(i);
            }
        }
        let mut patch_order = Vec::with_capacity(items.len());
        for m in items {
            let id = canon(m.get(key).ok_or_else(|| no_merge_key(m, key))?);
            patch_order.push(id.clone());
            match position.get(&id) {
                Some(&i) => {
                    let existing = match std::mem::take(&mut original[i]) {
                        Value::Object(o) => Some(o),
                        _ => None,
                    };
                    original[i] =
                        Value::Object(self.merge_object(existing, m)?.unwrap_or_default());
                }
                None => {
                    position.insert(id, original.len());
                    original.push(Value::Object(
                        self.merge_object(None, m)?.unwrap_or_default(),
                    ));
                }
            }
        }
        Ok(order(
            original,
            |v| key_id(v, key),
            &patch_order,
            &server_order,
        ))
    }

    /// Handles `$setElementOrder/<field>` together with the field's patch
    /// list. `None` when neither the document nor the patch has the list.
    fn ordered_list(
        &mut self,
        existing: Option<Value>,
        patch_list: Option<&Value>,
        order_list: &[Value],
    ) -> Result<Option<Vec<Value>>, PatchError> {
        let original = match existing {
            Some(Value::Array(items)) => Some(items),
            _ => None,
        };
        let patch_list = match patch_list {
            None => None,
            Some(Value::Array(items)) => Some(items.as_slice()),
            Some(_) => {
                return Err(invalid(format!(
                    "invalid patch: {} must be a list",
                    self.field_name()
                )));
            }
        };
        let strategy = self.strategy();
        let key = match strategy {
            Some(MergeStrategy::ByKey(keys)) => keys.first().copied(),
            _ => None,
        };
        let keyed = key.is_some()
            && original
                .iter()
                .flatten()
                .chain(patch_list.into_iter().flatten())
                .chain(order_list)
                .any(Value::is_object);
        let ident = |v: &Value| -> Result<String, PatchError> {
            match (keyed, key, v) {
                (true, Some(key), Value::Object(m)) => {
                    m.get(key).map(canon).ok_or_else(|| no_merge_key(m, key))
                }
                (true, Some(key), other) => Err(invalid(format!(
                    "{other} in $setElementOrder list is not an object with merge key {key}"
                ))),
                _ => Ok(canon(v)),
            }
        };
        let order_ids = order_list
            .iter()
            .map(ident)
            .collect::<Result<Vec<_>, _>>()?;
        if let Some(patch_list) = patch_list {
            check_relative_order(patch_list, &order_ids, &ident)?;
        }

        let server_order: Vec<Option<String>> =
            original.iter().flatten().map(|v| ident(v).ok()).collect();
        let merged = match (original, patch_list) {
            (None, None) => return Ok(None),
            (Some(items), None) => items,
            (original, Some(patch)) => self.merge_list(original, patch)?,
        };
        if !matches!(strategy, Some(MergeStrategy::ByKey(_) | MergeStrategy::Set)) {
            return Ok(Some(merged));
        }
        Ok(Some(order(
            merged,
            |v| ident(v).ok(),
            &order_ids,
            &server_order,
        )))
    }
}

/// A patch list must list its elements in the same relative order as the
/// `$setElementOrder` list, and only elements that list names; otherwise the
/// client computed the two from different objects.
fn check_relative_order(
    patch_list: &[Value],
    order_ids: &[String],
    ident: &dyn Fn(&Value) -> Result<String, PatchError>,
) -> Result<(), PatchError> {
    let mut at = 0;
    for item in patch_list {
        if item.as_object().is_some_and(|m| m.contains_key(PATCH)) {
            continue;
        }
        let id = ident(item)?;
        match order_ids[at..].iter().position(|o| *o == id) {
            Some(offset) => at += offset + 1,
            None => {
                return Err(invalid(format!(
                    "The order in patch list: {} doesn't match $setElementOrder list: {:?}",
                    Value::Array(patch_list.to_vec()),
                    order_ids
                )));
            }
        }
    }
    Ok(())
}

fn key_id(v: &Value, key: &str) -> Option<String> {
    v.as_object()?.get(key).map(canon)
}

/// Set union of two scalar lists, keeping first occurrences.
fn merge_scalars(original: Vec<Value>, patch: &[Value]) -> Vec<Value> {
    let server_order: Vec<Option<String>> = original.iter().map(|v| Some(canon(v))).collect();
    let patch_order: Vec<String> = patch.iter().map(canon).collect();
    let mut seen = HashSet::new();
    let mut merged = Vec::with_capacity(original.len() + patch.len());
    for v in original.into_iter().chain(patch.iter().cloned()) {
        if seen.insert(canon(&v)) {
            merged.push(v);
        }
    }
    order(merged, |v| Some(canon(v)), &patch_order, &server_order)
}

/// Kubernetes' element order for a merged list: elements the patch (or its
/// `$setElementOrder` list) names come in the patch's order; elements only
/// the server had keep their old order and are slotted in before the first
/// patch element that stood after them on the server. A new element,
/// unknown to the server, therefore lands before the server-only elements
/// that follow it in the merge.
fn order(
    merged: Vec<Value>,
    ident: impl Fn(&Value) -> Option<String>,
    patch_order: &[String],
    server_order: &[Option<String>],
) -> Vec<Value> {
    let mut patch_pos: HashMap<&str, usize> = HashMap::new();
    for (i, id) in patch_order.iter().enumerate() {
        patch_pos.entry(id.as_str()).or_insert(i);
    }
    let mut server_pos: HashMap<&str, usize> = HashMap::new();
    for (i, id) in server_order.iter().enumerate() {
        if let Some(id) = id {
            server_pos.entry(id.as_str()).or_insert(i);
        }
    }
    let total = merged.len();
    let mut from_patch: Vec<(usize, Option<usize>, Value)> = Vec::new();
    let mut server_only: Vec<(Option<usize>, Value)> = Vec::new();
    for v in merged {
        let id = ident(&v);
        let p = id.as_deref().and_then(|i| patch_pos.get(i)).copied();
        let s = id.as_deref().and_then(|i| server_pos.get(i)).copied();
        match p {
            Some(p) => from_patch.push((p, s, v)),
            None => server_only.push((s, v)),
        }
    }
    from_patch.sort_by_key(|(p, _, _)| *p);
    server_only.sort_by_key(|(s, _)| s.unwrap_or(usize::MAX));

    let mut out = Vec::with_capacity(total);
    let mut left = server_only.into_iter().peekable();
    let mut right = from_patch.into_iter().peekable();
    loop {
        let take_left = match (left.peek(), right.peek()) {
            (Some((Some(l), _)), Some((_, Some(r), _))) => l < r,
            (Some(_), Some(_)) => false,
            (Some(_), None) => true,
            (None, Some(_)) => false,
            (None, None) => break,
        };
        if take_left {
            if let Some((_, v)) = left.next() {
                out.push(v);
            }
        } else if let Some((_, _, v)) = right.next() {
            out.push(v);
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::value::json_eq;
    use serde_json::json;

    fn smp(doc: Value, patch: Value, kind: &str) -> Value {
        strategic_merge_patch(&doc, &patch, kind).unwrap_or_else(|e| panic!("{e}"))
    }

    fn deployment() -> Value {
        json!({
            "apiVersion": "apps/v1",
            "kind": "Deployment",
            "metadata": {"name": "web", "labels": {"app": "web", "tier": "front"}},
            "spec": {
                "replicas": 2,
                "template": {
                    "metadata": {"labels": {"app": "web"}},
                    "spec": {
                        "containers": [
                            {
                                "name": "app",
                                "image": "nginx:1.25",
                                "ports": [{"containerPort": 80, "protocol": "TCP"}],
                                "env": [{"name": "A", "value": "1"}, {"name": "X", "value": "2"}],
                                "args": ["--a", "--b"]
                            },
                            {"name": "sidecar", "image": "busybox"}
                        ]
                    }
                }
            }
        })
    }

    fn container<'a>(d: &'a Value, name: &str) -> &'a Value {
        d["spec"]["template"]["spec"]["containers"]
            .as_array()
            .unwrap()
            .iter()
            .find(|c| c["name"] == name)
            .unwrap()
    }

    #[test]
    fn kubectl_apply_image_change_keeps_other_fields() {
        let got = smp(
            deployment(),
            json!({"spec":{"template":{"spec":{"$setElementOrder/containers":[{"name":"app"}],"containers":[{"image":"nginx:1.26","name":"app"}]}}}}),
            "Deployment",
        );
        let app = container(&got, "app");
        assert_eq!(app["image"], "nginx:1.26");
        assert_eq!(
            app["ports"],
            json!([{"containerPort": 80, "protocol": "TCP"}])
        );
        assert_eq!(app["env"].as_array().unwrap().len(), 2);
        // The server-only sidecar stays, after the ordered element.
        let names: Vec<&Value> = got["spec"]["template"]["spec"]["containers"]
            .as_array()
            .unwrap()
            .iter()
            .map(|c| &c["name"])
            .collect();
        assert_eq!(names, [&json!("app"), &json!("sidecar")]);
        assert_eq!(got["spec"]["replicas"], 2);
        assert!(
            got["spec"]["template"]["spec"]
                .get("$setElementOrder/containers")
                .is_none()
        );
    }

    #[test]
    fn null_deletes_a_label() {
        let got = smp(
            deployment(),
            json!({"metadata": {"labels": {"tier": null}}}),
            "Deployment",
        );
        assert_eq!(got["metadata"]["labels"], json!({"app": "web"}));
        // Deleting what is not there is not an error.
        let again = smp(
            got.clone(),
            json!({"metadata": {"labels": {"tier": null}}}),
            "Deployment",
        );
        assert_eq!(again, got);
    }

    #[test]
    fn delete_env_var_by_merge_key() {
        let got = smp(
            deployment(),
            json!({"spec":{"template":{"spec":{"containers":[
                {"name":"app","$setElementOrder/env":[{"name":"A"}],"env":[{"$patch":"delete","name":"X"}]}
            ]}}}}),
            "Deployment",
        );
        assert_eq!(
            container(&got, "app")["env"],
            json!([{"name": "A", "value": "1"}])
        );
        assert_eq!(container(&got, "app")["image"], "nginx:1.25");
    }

    #[test]
    fn patch_replace_on_list_and_map() {
        let got = smp(
            deployment(),
            json!({"spec":{"template":{"spec":{"containers":[
                {"$patch":"replace"},
                {"name":"only","image":"alpine"}
            ]}}}}),
            "Deployment",
        );
        assert_eq!(
            got["spec"]["template"]["spec"]["containers"],
            json!([{"name": "only", "image": "alpine"}])
        );

        let got = smp(
            deployment(),
            json!({"metadata": {"labels": {"$patch": "replace", "new": "x"}}}),
            "Deployment",
        );
        assert_eq!(got["metadata"]["labels"], json!({"new": "x"}));

        let got = smp(
            deployment(),
            json!({"metadata": {"labels": {"$patch": "delete"}}}),
            "Deployment",
        );
        assert!(got["metadata"].get("labels").is_none());

        let got = smp(
            deployment(),
            json!({"metadata": {"labels": {"$patch": "merge", "new": "x"}}}),
            "Deployment",
        );
        assert_eq!(
            got["metadata"]["labels"],
            json!({"app": "web", "tier": "front", "new": "x"})
        );
    }

    #[test]
    fn finalizers_merge_as_a_set() {
        let doc = json!({"metadata": {"name": "p", "finalizers": ["a", "b"]}});
        let got = smp(
            doc.clone(),
            json!({"metadata": {"finalizers": ["b", "c"]}}),
            "ConfigMap",
        );
        let mut f: Vec<String> =
            serde_json::from_value(got["metadata"]["finalizers"].clone()).unwrap();
        f.sort();
        assert_eq!(f, ["a", "b", "c"]);

        // What kubectl apply sends to drop one finalizer.
        let got = smp(
            doc,
            json!({"metadata": {"$setElementOrder/finalizers": ["a"], "$deleteFromPrimitiveList/finalizers": ["b"]}}),
            "Pod",
        );
        assert_eq!(got["metadata"]["finalizers"], json!(["a"]));
    }

    #[test]
    fn scalar_set_order_follows_kubernetes() {
        // apimachinery's "merge lists of scalars" case.
        let got = smp(
            json!({"metadata": {"finalizers": [1, 2, 4]}}),
            json!({"metadata": {"$setElementOrder/finalizers": [1, 2, 3], "finalizers": [3]}}),
            "Pod",
        );
        assert_eq!(got["metadata"]["finalizers"], json!([1, 2, 3, 4]));
    }

    #[test]
    fn container_ports_merge_by_container_port() {
        let got = smp(
            json!({"spec": {"containers": [{"name": "c", "ports": [
                {"containerPort": 80, "name": "http"},
                {"containerPort": 443, "name": "https"}
            ]}]}}),
            json!({"spec": {"containers": [{"name": "c", "ports": [
                {"containerPort": 443, "hostPort": 8443},
                {"containerPort": 9090, "name": "metrics"}
            ]}]}}),
            "Pod",
        );
        let ports = got["spec"]["containers"][0]["ports"].as_array().unwrap();
        assert_eq!(ports.len(), 3);
        assert!(ports.contains(&json!({"containerPort": 80, "name": "http"})));
        assert!(ports.contains(&json!({"containerPort": 443, "name": "https", "hostPort": 8443})));
        assert!(ports.contains(&json!({"containerPort": 9090, "name": "metrics"})));
    }

    #[test]
    fn new_elements_without_order_go_first() {
        // As Kubernetes does when no $setElementOrder is given.
        let got = smp(
            json!({"spec": {"containers": [{"name": "a"}, {"name": "b"}]}}),
            json!({"spec": {"containers": [{"name": "new"}]}}),
            "Pod",
        );
        assert_eq!(
            got["spec"]["containers"],
            json!([{"name": "new"}, {"name": "a"}, {"name": "b"}])
        );
    }

    #[test]
    fn set_element_order_with_server_only_items() {
        // apimachinery's "set elements order in a list with server-only items 3".
        let named = |ns: &[u64]| Value::Array(ns.iter().map(|n| json!({"name": n})).collect());
        let got = smp(
            json!({"spec": {"volumes": named(&[1, 2, 7, 9, 8, 3, 4])}}),
            json!({"spec": {"$setElementOrder/volumes": named(&[2, 1, 4, 3])}}),
            "Pod",
        );
        assert_eq!(got["spec"]["volumes"], named(&[2, 1, 7, 9, 8, 4, 3]));
    }

    #[test]
    fn add_item_and_preserve_order() {
        // apimachinery's "add an item in a list and preserve order" three-way case.
        let got = smp(
            json!({"spec": {"volumes": [{"name": 1, "other": "a"}, {"name": 2, "value": 2, "other": "b"}]}}),
            json!({"spec": {
                "$setElementOrder/volumes": [{"name": 3}, {"name": 1}, {"name": 2}],
                "volumes": [{"name": 3, "value": 3}]
            }}),
            "Pod",
        );
        assert_eq!(
            got["spec"]["volumes"],
            json!([{"name": 3, "value": 3}, {"name": 1, "other": "a"}, {"name": 2, "value": 2, "other": "b"}])
        );
    }

    #[test]
    fn unknown_lists_replace() {
        let got = smp(
            deployment(),
            json!({"spec":{"template":{"spec":{"containers":[{"name":"app","args":["--c"]}],
                "tolerations":[{"key":"k","operator":"Exists"}]}}}}),
            "Deployment",
        );
        assert_eq!(container(&got, "app")["args"], json!(["--c"]));
        assert_eq!(
            got["spec"]["template"]["spec"]["tolerations"],
            json!([{"key": "k", "operator": "Exists"}])
        );
        // Node taints are atomic in Kubernetes.
        let got = smp(
            json!({"spec": {"taints": [{"key": "a", "effect": "NoSchedule"}]}}),
            json!({"spec": {"taints": [{"key": "b", "effect": "NoExecute"}]}}),
            "Node",
        );
        assert_eq!(
            got["spec"]["taints"],
            json!([{"key": "b", "effect": "NoExecute"}])
        );
        // A list in a kind without a table entry replaces, even of objects.
        let got = smp(
            json!({"data": {"x": "1"}, "items": [{"name": "a"}]}),
            json!({"items": [{"name": "b"}]}),
            "Widget",
        );
        assert_eq!(got["items"], json!([{"name": "b"}]));
    }

    #[test]
    fn retain_keys_switches_a_union() {
        let doc = json!({"spec": {"strategy": {"type": "RollingUpdate", "rollingUpdate": {"maxSurge": 1}}}});
        let got = smp(
            doc.clone(),
            json!({"spec": {"strategy": {"$retainKeys": ["type"], "rollingUpdate": null, "type": "Recreate"}}}),
            "Deployment",
        );
        assert_eq!(got["spec"]["strategy"], json!({"type": "Recreate"}));
        let err = strategic_merge_patch(
            &doc,
            &json!({"spec": {"strategy": {"$retainKeys": ["type"], "other": 1}}}),
            "Deployment",
        );
        assert!(err.is_err());
    }

    #[test]
    fn volumes_with_retain_keys() {
        // What kubectl sends when a volume changes source.
        let got = smp(
            json!({"spec": {"volumes": [{"name": "v", "emptyDir": {}}, {"name": "w", "emptyDir": {}}]}}),
            json!({"spec": {
                "$setElementOrder/volumes": [{"name": "v"}, {"name": "w"}],
                "volumes": [{"$retainKeys": ["configMap", "name"], "configMap": {"name": "cm"}, "name": "v"}]
            }}),
            "Pod",
        );
        assert_eq!(
            got["spec"]["volumes"],
            json!([{"name": "v", "configMap": {"name": "cm"}}, {"name": "w", "emptyDir": {}}])
        );
    }

    #[test]
    fn service_ports_and_conditions() {
        let got = smp(
            json!({"spec": {"ports": [{"port": 80, "targetPort": 8080}, {"port": 443}]},
                   "status": {"conditions": [{"type": "A", "status": "False"}]}}),
            json!({"spec": {"ports": [{"port": 80, "targetPort": 9090}]},
                   "status": {"conditions": [{"type": "A", "status": "True"}, {"type": "B", "status": "True"}]}}),
            "Service",
        );
        assert_eq!(
            got["spec"]["ports"],
            json!([{"port": 80, "targetPort": 9090}, {"port": 443}])
        );
        assert_eq!(
            got["status"]["conditions"],
            json!([{"type": "A", "status": "True"}, {"type": "B", "status": "True"}])
        );
    }

    #[test]
    fn cronjob_template_path() {
        let doc = json!({"spec": {"jobTemplate": {"spec": {"template": {"spec": {
            "containers": [{"name": "a", "image": "x", "env": [{"name": "E", "value": "1"}]}]
        }}}}}});
        let got = smp(
            doc,
            json!({"spec": {"jobTemplate": {"spec": {"template": {"spec": {
                "containers": [{"name": "a", "env": [{"name": "F", "value": "2"}]}]
            }}}}}}),
            "CronJob",
        );
        let c = &got["spec"]["jobTemplate"]["spec"]["template"]["spec"]["containers"][0];
        assert_eq!(c["image"], "x");
        assert_eq!(c["env"].as_array().unwrap().len(), 2);
    }

    #[test]
    fn new_values_carry_no_directives_or_nulls() {
        let got = smp(
            json!({}),
            json!({"spec": {
                "$setElementOrder/containers": [{"name": "a"}],
                "containers": [{"name": "a", "image": null, "env": [{"$patch": "delete", "name": "Z"}]}],
                "x": {"$patch": "replace", "y": 1},
                "gone": {"$patch": "delete"}
            }}),
            "Pod",
        );
        assert_eq!(
            got,
            json!({"spec": {"containers": [{"name": "a", "env": []}], "x": {"y": 1}}})
        );
    }

    #[test]
    fn malformed_patches_are_errors() {
        let doc = deployment();
        for patch in [
            json!([1, 2]),
            json!("x"),
            json!(null),
            json!({"metadata": {"$patch": "bogus"}}),
            json!({"metadata": {"labels": {"$patch": 7}}}),
            json!({"spec": {"template": {"spec": {"containers": [{"image": "no-name"}]}}}}),
            json!({"spec": {"template": {"spec": {"containers": [{"$patch": "delete"}]}}}}),
            json!({"spec": {"template": {"spec": {"containers": [{"$patch": "frob", "name": "app"}]}}}}),
            json!({"spec": {"template": {"spec": {"containers": ["app"]}}}}),
            json!({"spec": {"template": {"spec": {"containers": [[1]]}}}}),
            json!({"metadata": {"$setElementOrder": []}}),
            json!({"metadata": {"$setElementOrder/finalizers": "a"}}),
            json!({"metadata": {"$deleteFromPrimitiveList": ["a"]}}),
            json!({"metadata": {"$retainKeys": "name"}}),
            json!({"metadata": {"finalizers": [{"a": 1}]}}),
            json!({"spec": {"template": {"spec": {
                "$setElementOrder/containers": [{"name": "sidecar"}],
                "containers": [{"name": "app", "image": "x"}]
            }}}}),
        ] {
            let result = strategic_merge_patch(&doc, &patch, "Deployment");
            assert!(
                matches!(result, Err(PatchError::Invalid(_))),
                "{patch} should be invalid, got {result:?}"
            );
        }
    }

    #[test]
    fn kubectl_apply_removes_a_container_and_changes_a_port() {
        let got = smp(
            deployment(),
            json!({"spec":{"template":{"spec":{
                "$setElementOrder/containers":[{"name":"app"}],
                "containers":[
                    {"$setElementOrder/ports":[{"containerPort":8080}],"name":"app",
                     "ports":[{"containerPort":8080},{"$patch":"delete","containerPort":80}],
                     "resources":null},
                    {"$patch":"delete","name":"sidecar"}
                ]
            }}}}),
            "Deployment",
        );
        let containers = &got["spec"]["template"]["spec"]["containers"];
        assert_eq!(containers.as_array().unwrap().len(), 1);
        assert_eq!(containers[0]["ports"], json!([{"containerPort": 8080}]));
        assert_eq!(containers[0]["image"], "nginx:1.25");
    }

    #[test]
    fn kubectl_apply_annotation_and_labels() {
        let got = smp(
            deployment(),
            json!({"metadata":{"annotations":{"kubectl.kubernetes.io/last-applied-configuration":"{}\n"},
                   "labels":{"tier":"back"}},"spec":{"replicas":3}}),
            "Deployment",
        );
        assert_eq!(
            got["metadata"]["labels"],
            json!({"app": "web", "tier": "back"})
        );
        assert_eq!(
            got["metadata"]["annotations"]["kubectl.kubernetes.io/last-applied-configuration"],
            "{}\n"
        );
        assert_eq!(got["spec"]["replicas"], 3);
    }

    #[test]
    fn input_is_untouched_on_error() {
        let doc = deployment();
        let before = doc.clone();
        let patch = json!({"metadata": {"labels": {"x": "1"}}, "spec": {"$patch": "nope"}});
        assert!(strategic_merge_patch(&doc, &patch, "Deployment").is_err());
        assert_eq!(doc, before);
    }

    #[test]
    fn numbers_match_merge_keys_by_value() {
        let got = smp(
            json!({"spec": {"containers": [{"name": "c", "ports": [{"containerPort": 80, "name": "a"}]}]}}),
            json!({"spec": {"containers": [{"name": "c", "ports": [{"containerPort": 80.0, "hostPort": 1}]}]}}),
            "Pod",
        );
        assert_eq!(
            got["spec"]["containers"][0]["ports"]
                .as_array()
                .unwrap()
                .len(),
            1
        );
        assert!(json_eq(
            &got["spec"]["containers"][0]["ports"][0]["hostPort"],
            &json!(1)
        ));
    }
}
