//! The controller's object cache, as client-go's informer store and
//! kube-runtime's reflector keep one: the objects of every resource a
//! controller watches, fed by the host-run informers, so its `get` and
//! `list` host calls are answered from memory instead of going through the
//! API and the store on every reconcile.
//!
//! Each object is kept as the JSON text the plugin receives (with
//! `apiVersion` and `kind`), serialized once per change rather than once
//! per read, beside its labels for selector matching. The cache of a
//! resource is shared by every controller of a plugin manager that watches
//! it ([`SharedCaches`]), as client-go's shared informers are: ten
//! controllers watching pods hold one copy of them, not ten.
//!
//! Invariants:
//! - An entry only moves forward: a change is applied only if its
//!   resourceVersion is newer than the entry's, so an informer event that
//!   arrives after the controller's own write of a newer version does not
//!   undo it.
//! - The controller reads its own writes: every object a write returns is
//!   applied at once (the API answered with the stored version), and a
//!   delete removes the entry and leaves a tombstone at the deletion's
//!   resourceVersion, so the informer's late events about the object
//!   cannot bring it back. A tombstone goes when the informer reaches it.
//! - A resource is served from the cache only once an informer has
//!   listed it; before that (and for resources the controller does not
//!   watch) reads go to the API.
//! - A relist (one informer's, while others feed the same cache) merges:
//!   listed objects are applied like any change, and an object it does not
//!   show goes only if nothing wrote it after the list's revision.
//!
//! Like any informer cache it may lag behind the store for changes made by
//! others; controllers are level-triggered and retry on conflicts.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::{Arc, Mutex, RwLock, Weak};

use orchd_resources::ResourceType;
use orchd_store::meta;
use orchd_store::selector::LabelSelector;
use serde_json::{Map, Value};

/// (namespace, name) of an object.
type Name = (Option<String>, String);

/// One cached object.
struct Entry {
    /// Its resourceVersion (`None` if it had none: then any change wins).
    revision: Option<u64>,
    /// The object as the plugin receives it.
    text: Arc<str>,
    labels: Option<Map<String, Value>>,
}

/// The cached objects of one resource.
#[derive(Default)]
struct Resource {
    /// Whether the informer has listed once.
    synced: bool,
    /// In key order, as the API lists them.
    objects: BTreeMap<Name, Entry>,
    /// Objects this controller deleted, at the deletion's resourceVersion.
    tombstones: HashMap<Name, u64>,
}

/// The cached objects of one resource, shared by the controllers that
/// watch it.
pub struct ResourceCache {
    r: ResourceType,
    inner: RwLock<Resource>,
}

/// One plugin manager's caches, one per resource, each alive while a
/// controller uses it.
#[derive(Default)]
pub struct SharedCaches {
    caches: Mutex<HashMap<String, Weak<ResourceCache>>>,
}

impl SharedCaches {
    /// The cache of `resource` (of type `r`): the one in use, or a new one.
    pub fn get(&self, resource: &str, r: ResourceType) -> Arc<ResourceCache> {
        let fresh = || {
            Arc::new(ResourceCache {
                r,
                inner: RwLock::new(Resource::default()),
            })
        };
        let Ok(mut caches) = self.caches.lock() else {
            return fresh();
        };
        caches.retain(|_, c| c.strong_count() > 0);
        if let Some(cache) = caches.get(resource).and_then(Weak::upgrade) {
            return cache;
        }
        let cache = fresh();
        caches.insert(resource.to_string(), Arc::downgrade(&cache));
        cache
    }
}

/// The objects of the resources a controller watches.
pub struct ObjectCache {
    resources: HashMap<String, Arc<ResourceCache>>,
}

fn name_of(object: &Value) -> Option<Name> {
    let name = meta::meta_str(object, "name")?.to_string();
    Some((
        meta::meta_str(object, "namespace").map(str::to_string),
        name,
    ))
}

/// `object` as the plugin receives it: with the apiVersion and kind that
/// lists leave out.
pub(crate) fn text_of(object: &Value, r: &ResourceType) -> String {
    let has_type = object.get("apiVersion").is_some() && object.get("kind").is_some();
    if has_type {
        return object.to_string();
    }
    let mut object = object.clone();
    if let Some(map) = object.as_object_mut() {
        map.entry("apiVersion")
            .or_insert_with(|| Value::String(r.api_version()));
        map.entry("kind")
            .or_insert_with(|| Value::String(r.kind.to_string()));
    }
    object.to_string()
}

impl Resource {
    /// Applies a newer version of an object (an informer event or the
    /// controller's own write); older ones are ignored.
    fn upsert(&mut self, r: &ResourceType, object: &Value) {
        let Some(name) = name_of(object) else { return };
        let revision = meta::resource_version(object);
        if let (Some(&deleted), Some(rv)) = (self.tombstones.get(&name), revision) {
            if rv <= deleted {
                return;
            }
            self.tombstones.remove(&name);
        }
        if let Some(existing) = self.objects.get(&name)
            && let (Some(old), Some(new)) = (existing.revision, revision)
            && new <= old
        {
            return;
        }
        let entry = Entry {
            revision,
            text: text_of(object, r).into(),
            labels: object["metadata"]["labels"].as_object().cloned(),
        };
        self.objects.insert(name, entry);
    }

    /// Merges a list taken at `revision` (see the invariants).
    fn resync(&mut self, r: &ResourceType, objects: &[Value], revision: u64) {
        let listed: HashSet<Name> = objects.iter().filter_map(name_of).collect();
        for object in objects {
            self.upsert(r, object);
        }
        self.objects.retain(|name, entry| {
            listed.contains(name) || entry.revision.is_some_and(|rv| rv > revision)
        });
        self.tombstones.retain(|_, deleted| *deleted > revision);
        self.synced = true;
    }

    /// Removes an object the informer saw deleted (its last state), unless
    /// the cache holds a newer incarnation (recreated by this controller).
    fn remove(&mut self, object: &Value) {
        let Some(name) = name_of(object) else { return };
        let revision = meta::resource_version(object);
        if let Some(rv) = revision {
            if self.tombstones.get(&name).is_some_and(|&t| t <= rv) {
                self.tombstones.remove(&name);
            }
            if let Some(existing) = self.objects.get(&name)
                && existing.revision.is_some_and(|old| old > rv)
            {
                return;
            }
        }
        self.objects.remove(&name);
    }
}

impl ObjectCache {
    /// A cache of its own for `resources` (each with its type), none
    /// listed yet.
    pub fn new(resources: impl IntoIterator<Item = (String, ResourceType)>) -> Arc<Self> {
        Self::shared(&SharedCaches::default(), resources)
    }

    /// The caches of `resources` from `shared`: what other controllers
    /// watching them hold already, and what they will be told.
    pub fn shared(
        shared: &SharedCaches,
        resources: impl IntoIterator<Item = (String, ResourceType)>,
    ) -> Arc<Self> {
        Arc::new(ObjectCache {
            resources: resources
                .into_iter()
                .map(|(name, r)| {
                    let cache = shared.get(&name, r);
                    (name, cache)
                })
                .collect(),
        })
    }

    fn with<T>(
        &self,
        resource: &str,
        f: impl FnOnce(&ResourceType, &mut Resource) -> T,
    ) -> Option<T> {
        let cache = self.resources.get(resource)?;
        let mut cached = cache.inner.write().ok()?;
        Some(f(&cache.r, &mut cached))
    }

    fn read<T>(&self, resource: &str, f: impl FnOnce(&Resource) -> T) -> Option<T> {
        let cache = self.resources.get(resource)?;
        let cached = cache.inner.read().ok()?;
        cached.synced.then(|| f(&cached))
    }

    /// An informer listed `objects` at `revision`: they are everything
    /// there was then.
    pub fn resync(&self, resource: &str, objects: &[Value], revision: u64) {
        self.with(resource, |r, cached| cached.resync(r, objects, revision));
    }

    /// The informer saw `object` added or modified, or the controller
    /// wrote it (the version the API stored).
    pub fn upsert(&self, resource: &str, object: &Value) {
        self.with(resource, |r, cached| cached.upsert(r, object));
    }

    /// The informer saw `object` deleted (its last state).
    pub fn remove(&self, resource: &str, object: &Value) {
        self.with(resource, |_, cached| cached.remove(object));
    }

    /// The controller deleted the object `namespace/name`; the API
    /// answered with `answer` (the object, still there with a
    /// deletionTimestamp while finalizers hold it, or a Status).
    pub fn deleted(&self, resource: &str, namespace: Option<&str>, name: &str, answer: &Value) {
        self.with(resource, |r, cached| {
            let still_there = answer["metadata"]["name"] == name
                && answer["metadata"]["deletionTimestamp"].is_string()
                && answer["metadata"]["finalizers"]
                    .as_array()
                    .is_some_and(|f| !f.is_empty());
            if still_there {
                cached.upsert(r, answer);
                return;
            }
            let key = (namespace.map(str::to_string), name.to_string());
            let entry = cached.objects.remove(&key);
            // The deletion happened after every version seen so far.
            let at = meta::resource_version(answer)
                .or(entry.and_then(|e| e.revision))
                .unwrap_or(0);
            cached.tombstones.insert(key, at);
        });
    }

    /// The object, as text; outer `None` if the cache does not serve the
    /// resource (ask the API), inner `None` if there is no such object.
    pub fn get(
        &self,
        resource: &str,
        namespace: Option<&str>,
        name: &str,
    ) -> Option<Option<Arc<str>>> {
        self.read(resource, |cached| {
            let key = (namespace.map(str::to_string), name.to_string());
            cached.objects.get(&key).map(|e| e.text.clone())
        })
    }

    /// The objects of `resource` (in `namespace`, or everywhere) that
    /// `selector` matches, as text, in key order; `None` if the cache does
    /// not serve the resource.
    pub fn list(
        &self,
        resource: &str,
        namespace: Option<&str>,
        selector: &LabelSelector,
    ) -> Option<Vec<String>> {
        self.read(resource, |cached| {
            let matching = |(key, entry): (&Name, &Entry)| {
                (selector.is_empty() || selector.matches_labels(entry.labels.as_ref()))
                    .then(|| entry.text.to_string())
                    .filter(|_| namespace.is_none() || key.0.as_deref() == namespace)
            };
            match namespace {
                // Keys sort by namespace first: one range, not a scan.
                Some(ns) => {
                    let from = (Some(ns.to_string()), String::new());
                    cached
                        .objects
                        .range(from..)
                        .take_while(|(k, _)| k.0.as_deref() == Some(ns))
                        .filter_map(matching)
                        .collect()
                }
                None => cached.objects.iter().filter_map(matching).collect(),
            }
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn pods() -> ResourceType {
        orchd_resources::resources()
            .iter()
            .find(|r| r.plural == "pods")
            .cloned()
            .unwrap()
    }

    fn pod(ns: &str, name: &str, rv: u64, app: &str) -> Value {
        json!({"metadata": {"name": name, "namespace": ns, "resourceVersion": rv.to_string(),
               "labels": {"app": app}}})
    }

    fn cache() -> Arc<ObjectCache> {
        ObjectCache::new([("pods".to_string(), pods())])
    }

    fn names(list: Option<Vec<String>>) -> Vec<String> {
        list.unwrap()
            .iter()
            .map(|t| {
                let v: Value = serde_json::from_str(t).unwrap();
                format!(
                    "{}/{}",
                    v["metadata"]["namespace"].as_str().unwrap(),
                    v["metadata"]["name"].as_str().unwrap()
                )
            })
            .collect()
    }

    #[test]
    fn serves_only_after_the_first_list() {
        let c = cache();
        let all = LabelSelector::default();
        assert!(c.list("pods", None, &all).is_none());
        assert!(c.get("pods", Some("a"), "p").is_none());
        c.resync(
            "pods",
            &[pod("b", "q", 2, "db"), pod("a", "p", 1, "web")],
            2,
        );
        assert_eq!(names(c.list("pods", None, &all)), ["a/p", "b/q"]);
        let text = c.get("pods", Some("a"), "p").unwrap().unwrap();
        assert!(text.contains(r#""kind":"Pod""#) && text.contains(r#""apiVersion":"v1""#));
        assert_eq!(c.get("pods", Some("a"), "nope"), Some(None));
        // Resources it does not cache are never served.
        assert!(c.list("services", None, &all).is_none());
    }

    #[test]
    fn lists_by_namespace_and_selector() {
        let c = cache();
        c.resync(
            "pods",
            &[
                pod("a", "p1", 1, "web"),
                pod("a", "p2", 2, "db"),
                pod("ab", "p3", 3, "web"),
                pod("b", "p4", 4, "web"),
            ],
            4,
        );
        let web = LabelSelector::parse("app=web").unwrap();
        assert_eq!(names(c.list("pods", Some("a"), &web)), ["a/p1"]);
        assert_eq!(names(c.list("pods", None, &web)), ["a/p1", "ab/p3", "b/p4"]);
        assert_eq!(
            names(c.list("pods", Some("ab"), &LabelSelector::default())),
            ["ab/p3"]
        );
        assert!(names(c.list("pods", Some("zz"), &web)).is_empty());
    }

    #[test]
    fn older_versions_never_replace_newer_ones() {
        let c = cache();
        c.resync("pods", &[], 0);
        // The controller's own write at 10, then the informer's late
        // event of version 7.
        c.upsert("pods", &pod("a", "p", 10, "new"));
        c.upsert("pods", &pod("a", "p", 7, "old"));
        let text = c.get("pods", Some("a"), "p").unwrap().unwrap();
        assert!(text.contains("new"));
        // A deletion of an older incarnation does not remove the new one.
        c.remove("pods", &pod("a", "p", 8, "old"));
        assert!(c.get("pods", Some("a"), "p").unwrap().is_some());
        c.remove("pods", &pod("a", "p", 11, "new"));
        assert_eq!(c.get("pods", Some("a"), "p"), Some(None));
    }

    #[test]
    fn own_deletes_are_not_undone_by_late_events() {
        let c = cache();
        c.resync("pods", &[pod("a", "p", 5, "web")], 5);
        c.deleted(
            "pods",
            Some("a"),
            "p",
            &json!({"kind": "Status", "status": "Success"}),
        );
        assert_eq!(c.get("pods", Some("a"), "p"), Some(None));
        // The informer still delivers a modification from before the
        // delete: the tombstone keeps it out.
        c.upsert("pods", &pod("a", "p", 5, "web"));
        assert_eq!(c.get("pods", Some("a"), "p"), Some(None));
        // A new pod of the same name, created later, is let in.
        c.upsert("pods", &pod("a", "p", 9, "web"));
        assert!(c.get("pods", Some("a"), "p").unwrap().is_some());

        // A delete held by finalizers leaves the object, now deleting.
        let mut held = pod("a", "f", 12, "web");
        held["metadata"]["deletionTimestamp"] = json!("2026-01-01T00:00:00Z");
        held["metadata"]["finalizers"] = json!(["x"]);
        c.deleted("pods", Some("a"), "f", &held);
        let text = c.get("pods", Some("a"), "f").unwrap().unwrap();
        assert!(text.contains("deletionTimestamp"));
    }

    #[test]
    fn controllers_share_one_cache_per_resource_and_relists_merge() {
        let shared = SharedCaches::default();
        let a = ObjectCache::shared(&shared, [("pods".to_string(), pods())]);
        let b = ObjectCache::shared(&shared, [("pods".to_string(), pods())]);
        a.resync(
            "pods",
            &[pod("n", "old", 3, "x"), pod("n", "kept", 4, "x")],
            10,
        );
        // What one controller's informer listed, the other reads.
        assert_eq!(
            names(b.list("pods", None, &LabelSelector::default())),
            ["n/kept", "n/old"]
        );
        // One writes after the list; the other's late relist (taken at
        // revision 11, before that write, and without "old", deleted
        // meanwhile) keeps the newer write and drops what is gone.
        b.upsert("pods", &pod("n", "new", 12, "x"));
        a.resync("pods", &[pod("n", "kept", 4, "x")], 11);
        assert_eq!(
            names(b.list("pods", None, &LabelSelector::default())),
            ["n/kept", "n/new"]
        );
        // A cache lives while a controller uses it.
        drop((a, b));
        let c = ObjectCache::shared(&shared, [("pods".to_string(), pods())]);
        assert!(c.list("pods", None, &LabelSelector::default()).is_none());
    }
}
