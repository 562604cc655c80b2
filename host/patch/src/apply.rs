//! Server-side apply (`application/apply-patch+yaml`) and the FieldsV1
//! field sets recorded in `metadata.managedFields`.
//!
//! A field set is a tree of path elements in Kubernetes' notation:
//! `f:<field>` for an object member, `k:{"name":"app"}` for an element of a
//! list merged by key (all of the element's list-map keys, sorted),
//! `v:"x"` for a value of a set-like list, `i:<n>` for a list position (only
//! ever read from other writers). A node is a member of the set when it is a
//! leaf (`{}`) or carries `".": {}`.

use crate::schema::{MergeStrategy, merge_strategy};
use crate::value::{canon, json_eq, strip_nulls};
use crate::{PatchError, invalid};
use serde_json::{Map, Value};
use std::collections::{BTreeMap, HashMap};

/// Metadata the server owns; Kubernetes never lists it in a field set, and
/// an applied configuration does not get to change it on a live object.
const SERVER_OWNED_META: &[&str] = &[
    "creationTimestamp",
    "selfLink",
    "uid",
    "clusterName",
    "generation",
    "managedFields",
    "resourceVersion",
];

#[derive(Debug, Default, Clone, PartialEq)]
struct FieldSet {
    member: bool,
    children: BTreeMap<String, FieldSet>,
}

impl FieldSet {
    fn leaf() -> FieldSet {
        FieldSet {
            member: true,
            children: BTreeMap::new(),
        }
    }

    fn is_empty(&self) -> bool {
        !self.member && self.children.is_empty()
    }

    /// Reads a FieldsV1 tree. Malformed input yields what could be read:
    /// managedFields come from stored objects, and a damaged entry must not
    /// make the object impossible to apply to.
    fn from_fields_v1(v: &Value) -> FieldSet {
        let mut root = FieldSet::node_from_json(v);
        root.member = false;
        root
    }

    fn node_from_json(v: &Value) -> FieldSet {
        let Value::Object(map) = v else {
            return FieldSet::leaf();
        };
        let mut node = FieldSet {
            member: map.is_empty(),
            children: BTreeMap::new(),
        };
        for (key, child) in map {
            if key == "." {
                node.member = true;
            } else {
                node.children
                    .insert(normalize_element(key), FieldSet::node_from_json(child));
            }
        }
        node
    }

    fn to_fields_v1(&self) -> Value {
        let mut map = Map::new();
        if self.member && !self.children.is_empty() {
            map.insert(".".to_string(), Value::Object(Map::new()));
        }
        for (key, child) in &self.children {
            map.insert(key.clone(), child.to_fields_v1());
        }
        Value::Object(map)
    }

    fn union_with(&mut self, other: &FieldSet) {
        self.member |= other.member;
        for (key, child) in &other.children {
            self.children
                .entry(key.clone())
                .or_default()
                .union_with(child);
        }
    }
}

/// JSON with object members sorted, so that the same key or value always
/// yields the same path element string.
fn sorted_json(v: &Value) -> String {
    fn sort(v: &Value) -> Value {
        match v {
            Value::Object(map) => {
                let mut entries: Vec<(&String, &Value)> = map.iter().collect();
                entries.sort_by(|a, b| a.0.cmp(b.0));
                Value::Object(
                    entries
                        .into_iter()
                        .map(|(k, v)| (k.clone(), sort(v)))
                        .collect(),
                )
            }
            Value::Array(items) => Value::Array(items.iter().map(sort).collect()),
            other => other.clone(),
        }
    }
    sort(v).to_string()
}

fn normalize_element(key: &str) -> String {
    for prefix in ["k:", "v:"] {
        if let Some(rest) = key.strip_prefix(prefix)
            && let Ok(v) = serde_json::from_str::<Value>(rest)
        {
            return format!("{prefix}{}", sorted_json(&v));
        }
    }
    key.to_string()
}

/// A parsed path element.
enum Element {
    Field(String),
    Key(Map<String, Value>),
    Value(Value),
    Index(usize),
}

fn parse_element(s: &str) -> Option<Element> {
    if let Some(name) = s.strip_prefix("f:") {
        return Some(Element::Field(name.to_string()));
    }
    if let Some(rest) = s.strip_prefix("k:") {
        return match serde_json::from_str(rest).ok()? {
            Value::Object(map) => Some(Element::Key(map)),
            _ => None,
        };
    }
    if let Some(rest) = s.strip_prefix("v:") {
        return serde_json::from_str(rest).ok().map(Element::Value);
    }
    s.strip_prefix("i:")?.parse().ok().map(Element::Index)
}

fn primary_key<S: AsRef<str>>(kind: &str, path: &[S]) -> Option<&'static str> {
    match merge_strategy(kind, path) {
        Some(MergeStrategy::ByKey(keys)) => keys.first().copied(),
        _ => None,
    }
}

/// Does a list element match a `k:{...}` element? Every key both sides have
/// must agree, and at least one must be present. Keys the element lacks are
/// tolerated because the server may default them (a port's `protocol`)
/// after they were recorded.
fn key_matches(item: &Value, key: &Map<String, Value>) -> bool {
    let Value::Object(item) = item else {
        return false;
    };
    let mut seen = false;
    for (k, want) in key {
        if let Some(have) = item.get(k) {
            if !json_eq(have, want) {
                return false;
            }
            seen = true;
        }
    }
    seen
}

/// Finds list elements by path element without scanning the list once per
/// lookup: applied configurations and recorded field sets can both be large.
struct ListIndex {
    by_id: HashMap<String, Vec<usize>>,
    primary: Option<&'static str>,
}

impl ListIndex {
    fn new(items: &[Value], primary: Option<&'static str>) -> ListIndex {
        let mut by_id: HashMap<String, Vec<usize>> = HashMap::new();
        for (i, item) in items.iter().enumerate() {
            let id = match (item, primary) {
                (Value::Object(m), Some(p)) => m.get(p).map(|v| format!("k{}", canon(v))),
                (Value::Object(_) | Value::Array(_), _) => None,
                (scalar, _) => Some(format!("v{}", canon(scalar))),
            };
            if let Some(id) = id {
                by_id.entry(id).or_default().push(i);
            }
        }
        ListIndex { by_id, primary }
    }

    /// Positions of the elements `element` names, in list order.
    fn find(&self, items: &[Value], element: &Element) -> Vec<usize> {
        match element {
            Element::Field(_) => Vec::new(),
            Element::Index(i) => (*i < items.len()).then_some(*i).into_iter().collect(),
            Element::Value(v) => self
                .by_id
                .get(&format!("v{}", canon(v)))
                .cloned()
                .unwrap_or_default(),
            Element::Key(key) => match self.primary.and_then(|p| key.get(p)) {
                Some(pv) => self
                    .by_id
                    .get(&format!("k{}", canon(pv)))
                    .into_iter()
                    .flatten()
                    .copied()
                    .filter(|&i| key_matches(&items[i], key))
                    .collect(),
                None => (0..items.len())
                    .filter(|&i| key_matches(&items[i], key))
                    .collect(),
            },
        }
    }
}

/// Builds field sets and merges applied configurations; both need the kind
/// and the field path to know which lists merge and by what.
struct Walker<'a> {
    kind: &'a str,
    path: Vec<String>,
}

impl Walker<'_> {
    fn at_metadata(&self) -> bool {
        self.path.len() == 1 && self.path[0] == "metadata"
    }

    fn is_stripped(&self, key: &str) -> bool {
        (self.path.is_empty() && (key == "apiVersion" || key == "kind"))
            || (self.at_metadata()
                && (key == "name" || key == "namespace" || SERVER_OWNED_META.contains(&key)))
    }

    fn collect(&mut self, v: &Value, node: &mut FieldSet) -> Result<(), PatchError> {
        match v {
            Value::Object(map) if map.is_empty() => node.member = true,
            Value::Object(map) => {
                for (key, child) in map {
                    if child.is_null() || self.is_stripped(key) {
                        continue;
                    }
                    self.path.push(key.clone());
                    let mut sub = FieldSet::default();
                    let result = self.collect(child, &mut sub);
                    self.path.pop();
                    result?;
                    if !sub.is_empty() {
                        node.children.insert(format!("f:{key}"), sub);
                    }
                }
            }
            Value::Array(items) if !items.is_empty() => match merge_strategy(self.kind, &self.path)
            {
                Some(MergeStrategy::ByKey(keys)) if items.iter().all(Value::is_object) => {
                    for item in items {
                        let element = self.key_element(item, keys)?;
                        if node.children.contains_key(&element) {
                            return Err(invalid(format!(
                                ".{}: duplicate entries for key {}",
                                self.path.join("."),
                                &element[2..]
                            )));
                        }
                        let mut sub = FieldSet::leaf();
                        self.collect(item, &mut sub)?;
                        node.children.insert(element, sub);
                    }
                }
                Some(MergeStrategy::Set)
                    if items.iter().all(|i| !i.is_object() && !i.is_array()) =>
                {
                    for item in items {
                        node.children
                            .insert(format!("v:{}", sorted_json(item)), FieldSet::leaf());
                    }
                }
                _ => node.member = true,
            },
            _ => node.member = true,
        }
        Ok(())
    }

    fn key_element(&self, item: &Value, keys: &[&str]) -> Result<String, PatchError> {
        let key = self.key_fields(item, keys)?;
        Ok(format!("k:{}", sorted_json(&Value::Object(key))))
    }

    /// The list-map key fields an element has; the merge key is required.
    fn key_fields(&self, item: &Value, keys: &[&str]) -> Result<Map<String, Value>, PatchError> {
        let Value::Object(item) = item else {
            return Err(invalid("list element is not an object"));
        };
        let mut sorted: Vec<&str> = keys.to_vec();
        sorted.sort_unstable();
        let mut key = Map::new();
        for k in sorted {
            if let Some(v) = item.get(k).filter(|v| !v.is_null()) {
                key.insert(k.to_string(), v.clone());
            }
        }
        let primary = keys.first().copied().unwrap_or_default();
        if !key.contains_key(primary) {
            return Err(invalid(format!(
                ".{}: associative list with keys has an element that omits key field {primary:?}",
                self.path.join(".")
            )));
        }
        Ok(key)
    }

    /// Removes from `live` what the applier owned before (`prev`) but no
    /// longer applies (`new`) and nobody else owns (`others`).
    fn prune(
        &mut self,
        live: &mut Value,
        prev: &FieldSet,
        new: Option<&FieldSet>,
        others: Option<&FieldSet>,
    ) {
        match live {
            Value::Object(map) => {
                for (key, prev_child) in &prev.children {
                    let Some(Element::Field(name)) = parse_element(key) else {
                        continue;
                    };
                    let (new_child, other_child) = (child(new, key), child(others, key));
                    if new_child.is_none() && other_child.is_none() {
                        map.shift_remove(name.as_str());
                    } else if let Some(value) = map.get_mut(name.as_str()) {
                        self.path.push(name);
                        self.prune(value, prev_child, new_child, other_child);
                        self.path.pop();
                    }
                }
            }
            Value::Array(items) => {
                let index = ListIndex::new(items, primary_key(self.kind, &self.path));
                let mut drop = vec![false; items.len()];
                for (key, prev_child) in &prev.children {
                    let Some(element) = parse_element(key) else {
                        continue;
                    };
                    let positions = index.find(items, &element);
                    let (new_child, other_child) = (child(new, key), child(others, key));
                    if new_child.is_none() && other_child.is_none() {
                        for i in positions {
                            drop[i] = true;
                        }
                    } else if let Some(&i) = positions.first() {
                        self.prune(&mut items[i], prev_child, new_child, other_child);
                    }
                }
                let mut i = 0;
                items.retain(|_| {
                    i += 1;
                    !drop[i - 1]
                });
            }
            _ => {}
        }
    }

    /// Force semantics: where `other` owns a field the applier now sets to a
    /// different value, ownership moves to the applier. Fields set to the
    /// value they already had stay shared.
    fn take_conflicts(
        &mut self,
        new: &FieldSet,
        applied: &Value,
        live: &Value,
        other: &mut FieldSet,
    ) {
        let applied_index = self.list_index(applied);
        let live_index = self.list_index(live);
        for (key, new_child) in &new.children {
            let Some(other_child) = other.children.get_mut(key) else {
                continue;
            };
            let Some(element) = parse_element(key) else {
                continue;
            };
            let a = descend(applied, &element, applied_index.as_ref());
            let l = descend(live, &element, live_index.as_ref());
            if new_child.children.is_empty() && new_child.member && other_child.member {
                if !matches!((a, l), (Some(a), Some(l)) if json_eq(a, l)) {
                    // The applier replaced this value whole, so the other
                    // writer loses everything under it too.
                    *other_child = FieldSet::default();
                }
            } else if let (Some(a), Some(l)) = (a, l) {
                let pushed = if let Element::Field(name) = &element {
                    self.path.push(name.clone());
                    true
                } else {
                    false
                };
                self.take_conflicts(new_child, a, l, other_child);
                if pushed {
                    self.path.pop();
                }
            }
            if other_child.is_empty() {
                other.children.remove(key);
            }
        }
    }

    fn list_index(&self, v: &Value) -> Option<ListIndex> {
        match v {
            Value::Array(items) => Some(ListIndex::new(items, primary_key(self.kind, &self.path))),
            _ => None,
        }
    }

    /// Merges an applied configuration onto the object being built.
    fn merge(&mut self, target: &mut Value, applied: &Value, has_live: bool) {
        if let (Value::Object(t), Value::Object(a)) = (&mut *target, applied) {
            for (key, value) in a {
                if value.is_null()
                    || (self.at_metadata()
                        && (key == "managedFields"
                            || (has_live && SERVER_OWNED_META.contains(&key.as_str()))))
                {
                    continue;
                }
                self.path.push(key.clone());
                match t.get_mut(key.as_str()) {
                    Some(existing) => self.merge(existing, value, has_live),
                    None => {
                        t.insert(key.clone(), strip_nulls(value));
                    }
                }
                self.path.pop();
            }
            return;
        }
        if let (Value::Array(t), Value::Array(a)) = (&mut *target, applied) {
            match merge_strategy(self.kind, &self.path) {
                Some(MergeStrategy::ByKey(keys))
                    if t.iter().chain(a).all(Value::is_object) && !keys.is_empty() =>
                {
                    let primary = keys[0];
                    let mut index = ListIndex::new(t, Some(primary));
                    for item in a {
                        let Ok(key) = self.key_fields(item, keys) else {
                            t.push(strip_nulls(item));
                            continue;
                        };
                        match index.find(t, &Element::Key(key)).first() {
                            Some(&i) => self.merge(&mut t[i], item, has_live),
                            None => {
                                if let Some(pv) = item.get(primary) {
                                    index
                                        .by_id
                                        .entry(format!("k{}", canon(pv)))
                                        .or_default()
                                        .push(t.len());
                                }
                                t.push(strip_nulls(item));
                            }
                        }
                    }
                    return;
                }
                Some(MergeStrategy::Set)
                    if t.iter().chain(a).all(|v| !v.is_object() && !v.is_array()) =>
                {
                    let mut present: std::collections::HashSet<String> =
                        t.iter().map(canon).collect();
                    for item in a {
                        if present.insert(canon(item)) {
                            t.push(item.clone());
                        }
                    }
                    return;
                }
                _ => {}
            }
        }
        *target = strip_nulls(applied);
    }
}

fn child<'s>(set: Option<&'s FieldSet>, key: &str) -> Option<&'s FieldSet> {
    set.and_then(|s| s.children.get(key))
}

fn descend<'v>(v: &'v Value, element: &Element, index: Option<&ListIndex>) -> Option<&'v Value> {
    match (v, element) {
        (Value::Object(map), Element::Field(name)) => map.get(name),
        (Value::Array(items), _) => {
            let i = *index?.find(items, element).first()?;
            items.get(i)
        }
        _ => None,
    }
}

/// The field set of `obj`, an object of `kind`, in FieldsV1 notation: what a
/// `managedFields` entry records for a writer that set exactly these fields.
/// Server-owned metadata (name, uid, resourceVersion, ...) and `apiVersion`
/// and `kind` are left out, as Kubernetes does. Errors when a list merged by
/// key has an element without its key, or two elements with the same key.
pub fn fields_v1(obj: &Value, kind: &str) -> Result<Value, PatchError> {
    let mut set = FieldSet::default();
    Walker {
        kind,
        path: Vec::new(),
    }
    .collect(obj, &mut set)?;
    set.member = false;
    Ok(set.to_fields_v1())
}

/// Server-side apply of `applied` (the configuration `manager` wants) onto
/// `live` (or onto an empty object, to create), for an object of `kind`;
/// `now` is the RFC 3339 time recorded in the manager's entry.
///
/// The result is `live` with:
/// 1. every field `manager` applied last time (per its `Apply` entry in
///    `metadata.managedFields`) but omits now removed, unless another
///    manager's entry also lists it;
/// 2. `applied` merged on: objects recursively, lists with a merge key
///    element by element, set-like lists as sets, everything else replaced;
///    `null`s in `applied` are ignored, as is its `metadata.managedFields`,
///    and on a live object the server-owned metadata (uid, resourceVersion,
///    creationTimestamp, generation) is kept;
/// 3. `manager`'s entry (operation `Apply`, the applied `apiVersion`,
///    `time`, `fieldsType: FieldsV1`, `fieldsV1`) added or refreshed.
///
/// Conflicts are resolved as with `--force-conflicts`: when another manager
/// owns a field that `applied` sets to a different value, the field is
/// changed and moved from that manager's entry to this one (entries left
/// empty are dropped); fields set to their current value become shared. No
/// 409 Conflict is ever reported.
pub fn server_side_apply(
    live: Option<&Value>,
    applied: &Value,
    kind: &str,
    manager: &str,
    now: &str,
) -> Result<Value, PatchError> {
    if !applied.is_object() {
        return Err(invalid(format!(
            "apply patch must be a JSON object, got {applied}"
        )));
    }
    if manager.is_empty() {
        return Err(invalid(
            "PATCH, application/apply-patch+yaml requires fieldManager to be set",
        ));
    }
    let mut walker = Walker {
        kind,
        path: Vec::new(),
    };
    let mut new_set = FieldSet::default();
    walker.collect(applied, &mut new_set)?;
    new_set.member = false;

    let empty = Value::Object(Map::new());
    let live_obj = live.filter(|v| v.is_object()).unwrap_or(&empty);
    let mut result = live_obj.clone();

    let entries: Vec<Value> = live_obj
        .pointer("/metadata/managedFields")
        .and_then(Value::as_array)
        .cloned()
        .unwrap_or_default();
    let mine = entries.iter().position(|e| {
        e.get("manager").and_then(Value::as_str) == Some(manager)
            && e.get("operation").and_then(Value::as_str) == Some("Apply")
            && e.get("subresource")
                .and_then(Value::as_str)
                .is_none_or(str::is_empty)
    });
    let set_of = |e: &Value| FieldSet::from_fields_v1(e.get("fieldsV1").unwrap_or(&Value::Null));
    let prev_set = mine.map(|i| set_of(&entries[i])).unwrap_or_default();
    let mut others: Vec<Option<FieldSet>> = entries
        .iter()
        .enumerate()
        .map(|(i, e)| (Some(i) != mine && e.is_object()).then(|| set_of(e)))
        .collect();
    let mut others_union = FieldSet::default();
    for set in others.iter().flatten() {
        others_union.union_with(set);
    }

    walker.prune(&mut result, &prev_set, Some(&new_set), Some(&others_union));
    for set in others.iter_mut().flatten() {
        walker.take_conflicts(&new_set, applied, live_obj, set);
    }
    walker.merge(&mut result, applied, live.is_some());

    let api_version = applied
        .get("apiVersion")
        .or_else(|| live_obj.get("apiVersion"))
        .and_then(Value::as_str);
    let mut entry = Map::new();
    entry.insert("manager".into(), Value::String(manager.into()));
    entry.insert("operation".into(), Value::String("Apply".into()));
    if let Some(v) = api_version {
        entry.insert("apiVersion".into(), Value::String(v.into()));
    }
    entry.insert("time".into(), Value::String(now.into()));
    entry.insert("fieldsType".into(), Value::String("FieldsV1".into()));
    entry.insert("fieldsV1".into(), new_set.to_fields_v1());

    let mut managed = Vec::with_capacity(entries.len() + 1);
    let mut placed = false;
    for (i, (mut e, set)) in entries.into_iter().zip(others).enumerate() {
        if Some(i) == mine {
            placed = true;
            if !new_set.is_empty() {
                managed.push(Value::Object(std::mem::take(&mut entry)));
            }
            continue;
        }
        match set {
            Some(set) if set.is_empty() => {}
            Some(set) => {
                if let Value::Object(m) = &mut e {
                    m.insert("fieldsV1".into(), set.to_fields_v1());
                }
                managed.push(e);
            }
            None => managed.push(e),
        }
    }
    if !placed && !new_set.is_empty() {
        managed.push(Value::Object(entry));
    }

    let Value::Object(root) = &mut result else {
        return Err(invalid("object is not a JSON object"));
    };
    let metadata = root
        .entry("metadata")
        .or_insert_with(|| Value::Object(Map::new()));
    if !metadata.is_object() {
        *metadata = Value::Object(Map::new());
    }
    if let Value::Object(meta) = metadata {
        if managed.is_empty() {
            meta.shift_remove("managedFields");
        } else {
            meta.insert("managedFields".into(), Value::Array(managed));
        }
    }
    Ok(result)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    const T0: &str = "2026-01-01T00:00:00Z";
    const T1: &str = "2026-01-01T00:01:00Z";

    fn config(image: &str, extra_env: bool) -> Value {
        let mut env = vec![json!({"name": "A", "value": "1"})];
        if extra_env {
            env.push(json!({"name": "B", "value": "2"}));
        }
        json!({
            "apiVersion": "apps/v1",
            "kind": "Deployment",
            "metadata": {"name": "web", "namespace": "default", "labels": {"app": "web"}},
            "spec": {
                "replicas": 2,
                "template": {"spec": {"containers": [
                    {"name": "app", "image": image, "env": env,
                     "ports": [{"containerPort": 80, "protocol": "TCP"}]}
                ]}}
            }
        })
    }

    fn entry<'a>(obj: &'a Value, manager: &str) -> Option<&'a Value> {
        obj["metadata"]["managedFields"]
            .as_array()?
            .iter()
            .find(|e| e["manager"] == manager)
    }

    #[test]
    fn creates_from_scratch() {
        let got =
            server_side_apply(None, &config("nginx:1", true), "Deployment", "kubectl", T0).unwrap();
        assert_eq!(got["metadata"]["name"], "web");
        assert_eq!(
            got["spec"]["template"]["spec"]["containers"][0]["image"],
            "nginx:1"
        );
        let e = entry(&got, "kubectl").unwrap();
        assert_eq!(e["operation"], "Apply");
        assert_eq!(e["apiVersion"], "apps/v1");
        assert_eq!(e["time"], T0);
        assert_eq!(e["fieldsType"], "FieldsV1");
        assert_eq!(
            e["fieldsV1"],
            json!({
                "f:metadata": {"f:labels": {"f:app": {}}},
                "f:spec": {
                    "f:replicas": {},
                    "f:template": {"f:spec": {"f:containers": {
                        "k:{\"name\":\"app\"}": {
                            ".": {},
                            "f:env": {
                                "k:{\"name\":\"A\"}": {".": {}, "f:name": {}, "f:value": {}},
                                "k:{\"name\":\"B\"}": {".": {}, "f:name": {}, "f:value": {}}
                            },
                            "f:image": {},
                            "f:name": {},
                            "f:ports": {
                                "k:{\"containerPort\":80,\"protocol\":\"TCP\"}": {
                                    ".": {}, "f:containerPort": {}, "f:protocol": {}
                                }
                            }
                        }
                    }}}
                }
            })
        );
    }

    #[test]
    fn reapply_changes_a_field() {
        let v1 =
            server_side_apply(None, &config("nginx:1", true), "Deployment", "kubectl", T0).unwrap();
        let v2 = server_side_apply(
            Some(&v1),
            &config("nginx:2", true),
            "Deployment",
            "kubectl",
            T1,
        )
        .unwrap();
        assert_eq!(
            v2["spec"]["template"]["spec"]["containers"][0]["image"],
            "nginx:2"
        );
        let entries = v2["metadata"]["managedFields"].as_array().unwrap();
        assert_eq!(entries.len(), 1);
        assert_eq!(entries[0]["time"], T1);
    }

    #[test]
    fn reapply_omitting_fields_removes_them() {
        let v1 =
            server_side_apply(None, &config("nginx:1", true), "Deployment", "kubectl", T0).unwrap();
        let mut cfg = config("nginx:1", false);
        cfg["metadata"]["labels"] = json!(null);
        let v2 = server_side_apply(Some(&v1), &cfg, "Deployment", "kubectl", T1).unwrap();
        assert_eq!(
            v2["spec"]["template"]["spec"]["containers"][0]["env"],
            json!([{"name": "A", "value": "1"}])
        );
        assert!(v2["metadata"].get("labels").is_none());
        assert_eq!(v2["metadata"]["name"], "web");
        assert!(
            entry(&v2, "kubectl").unwrap()["fieldsV1"]["f:metadata"].is_null(),
            "labels no longer owned"
        );
    }

    #[test]
    fn another_managers_field_survives() {
        let v1 =
            server_side_apply(None, &config("nginx:1", true), "Deployment", "kubectl", T0).unwrap();
        // Another manager applies a label and an annotation, and also claims
        // the env var B that kubectl applied with the same value.
        let other = json!({
            "apiVersion": "apps/v1", "kind": "Deployment",
            "metadata": {"name": "web", "labels": {"team": "a"}, "annotations": {"note": "x"}},
            "spec": {"template": {"spec": {"containers": [
                {"name": "app", "env": [{"name": "B", "value": "2"}]}
            ]}}}
        });
        let v2 = server_side_apply(Some(&v1), &other, "Deployment", "ops", T1).unwrap();
        assert_eq!(v2["metadata"]["labels"], json!({"app": "web", "team": "a"}));

        // kubectl drops env B and its labels: B stays (ops owns it), team stays.
        let mut cfg = config("nginx:1", false);
        cfg["metadata"]["labels"] = json!(null);
        let v3 = server_side_apply(Some(&v2), &cfg, "Deployment", "kubectl", T1).unwrap();
        assert_eq!(v3["metadata"]["labels"], json!({"team": "a"}));
        assert_eq!(v3["metadata"]["annotations"], json!({"note": "x"}));
        let env = &v3["spec"]["template"]["spec"]["containers"][0]["env"];
        assert_eq!(
            env,
            &json!([{"name": "A", "value": "1"}, {"name": "B", "value": "2"}])
        );
        assert!(entry(&v3, "ops").is_some());
    }

    #[test]
    fn forced_conflict_moves_ownership() {
        let v1 =
            server_side_apply(None, &config("nginx:1", true), "Deployment", "kubectl", T0).unwrap();
        let other = json!({
            "apiVersion": "apps/v1", "kind": "Deployment",
            "metadata": {"name": "web"},
            "spec": {"replicas": 5}
        });
        let v2 = server_side_apply(Some(&v1), &other, "Deployment", "hpa", T1).unwrap();
        assert_eq!(v2["spec"]["replicas"], 5);
        // kubectl's entry no longer has replicas; hpa's only entry does.
        assert!(
            entry(&v2, "kubectl").unwrap()["fieldsV1"]["f:spec"]
                .get("f:replicas")
                .is_none()
        );
        // hpa stops applying replicas: nobody owns it any more, so it goes.
        let v3 = server_side_apply(
            Some(&v2),
            &json!({"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": "web", "labels": {"x": "y"}}}),
            "Deployment",
            "hpa",
            T1,
        )
        .unwrap();
        assert!(v3["spec"].get("replicas").is_none());
    }

    #[test]
    fn keeps_server_owned_metadata_and_other_entries() {
        let mut live =
            server_side_apply(None, &config("nginx:1", true), "Deployment", "kubectl", T0).unwrap();
        live["metadata"]["uid"] = json!("u-1");
        live["metadata"]["resourceVersion"] = json!("7");
        live["metadata"]["managedFields"]
            .as_array_mut()
            .unwrap()
            .push(
                json!({"manager": "controller", "operation": "Update", "apiVersion": "apps/v1",
                         "fieldsType": "FieldsV1", "fieldsV1": {"f:status": {"f:replicas": {}}}}),
            );
        live["status"] = json!({"replicas": 2});
        let mut cfg = config("nginx:1", true);
        cfg["metadata"]["uid"] = json!("forged");
        cfg["metadata"]["managedFields"] = json!([]);
        let got = server_side_apply(Some(&live), &cfg, "Deployment", "kubectl", T1).unwrap();
        assert_eq!(got["metadata"]["uid"], "u-1");
        assert_eq!(got["metadata"]["resourceVersion"], "7");
        assert_eq!(got["status"], json!({"replicas": 2}));
        assert_eq!(
            got["metadata"]["managedFields"].as_array().unwrap().len(),
            2
        );
    }

    #[test]
    fn finalizers_apply_as_a_set() {
        let cm = |f: Value| json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "c", "finalizers": f}});
        let v1 = server_side_apply(None, &cm(json!(["a", "b"])), "ConfigMap", "m", T0).unwrap();
        assert_eq!(
            entry(&v1, "m").unwrap()["fieldsV1"],
            json!({"f:metadata": {"f:finalizers": {"v:\"a\"": {}, "v:\"b\"": {}}}})
        );
        let v2 = server_side_apply(Some(&v1), &cm(json!(["a"])), "ConfigMap", "m", T1).unwrap();
        assert_eq!(v2["metadata"]["finalizers"], json!(["a"]));
    }

    #[test]
    fn dropping_a_container_removes_it() {
        let mut two = config("nginx:1", true);
        two["spec"]["template"]["spec"]["containers"]
            .as_array_mut()
            .unwrap()
            .push(json!({"name": "sidecar", "image": "busybox"}));
        let v1 = server_side_apply(None, &two, "Deployment", "kubectl", T0).unwrap();
        assert_eq!(
            v1["spec"]["template"]["spec"]["containers"]
                .as_array()
                .unwrap()
                .len(),
            2
        );
        let v2 = server_side_apply(
            Some(&v1),
            &config("nginx:1", true),
            "Deployment",
            "kubectl",
            T1,
        )
        .unwrap();
        let containers = v2["spec"]["template"]["spec"]["containers"]
            .as_array()
            .unwrap();
        assert_eq!(containers.len(), 1);
        assert_eq!(containers[0]["name"], "app");
    }

    #[test]
    fn defaulted_list_keys_still_match() {
        let cfg = |port_name: Option<&str>| {
            let mut port = json!({"containerPort": 80});
            if let Some(n) = port_name {
                port["name"] = json!(n);
            }
            json!({"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "p"},
                   "spec": {"containers": [{"name": "c", "image": "i", "ports": [port]}]}})
        };
        let mut v1 = server_side_apply(None, &cfg(Some("http")), "Pod", "m", T0).unwrap();
        // The server defaults the protocol after the fact.
        v1["spec"]["containers"][0]["ports"][0]["protocol"] = json!("TCP");
        let v2 = server_side_apply(Some(&v1), &cfg(None), "Pod", "m", T1).unwrap();
        assert_eq!(
            v2["spec"]["containers"][0]["ports"],
            json!([{"containerPort": 80, "protocol": "TCP"}])
        );
    }

    #[test]
    fn invalid_applies() {
        assert!(server_side_apply(None, &json!([1]), "Pod", "m", T0).is_err());
        assert!(server_side_apply(None, &json!({"a": 1}), "Pod", "", T0).is_err());
        let dup = json!({"spec": {"containers": [{"name": "a"}, {"name": "a"}]}});
        assert!(server_side_apply(None, &dup, "Pod", "m", T0).is_err());
        let nokey = json!({"spec": {"containers": [{"image": "a"}]}});
        assert!(server_side_apply(None, &nokey, "Pod", "m", T0).is_err());
    }

    #[test]
    fn fields_v1_round_trips() {
        let set = fields_v1(&config("x", true), "Deployment").unwrap();
        assert_eq!(FieldSet::from_fields_v1(&set).to_fields_v1(), set);
        // Differently spelled keys from other writers normalise.
        let parsed = FieldSet::from_fields_v1(
            &json!({"f:a": {"k:{\"protocol\": \"TCP\", \"containerPort\": 80}": {}}}),
        );
        assert!(
            parsed.children["f:a"]
                .children
                .contains_key("k:{\"containerPort\":80,\"protocol\":\"TCP\"}")
        );
    }
}
