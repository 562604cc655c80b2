//! Reading and writing the `metadata` fields the store owns.
//!
//! Shared by every backend so they stamp objects the same way.

use serde_json::{Map, Value, json};

use crate::{Revision, StoreError};

/// `metadata` of `object`, if it is a map.
pub fn metadata(object: &Value) -> Option<&Map<String, Value>> {
    object.get("metadata")?.as_object()
}

/// Mutable `metadata` of `object`, created if missing.
pub fn metadata_mut(object: &mut Value) -> Result<&mut Map<String, Value>, StoreError> {
    let obj = object
        .as_object_mut()
        .ok_or_else(|| StoreError::BadRequest("object must be a JSON map".into()))?;
    let meta = obj
        .entry("metadata")
        .or_insert_with(|| Value::Object(Map::new()));
    meta.as_object_mut()
        .ok_or_else(|| StoreError::BadRequest("metadata must be a JSON map".into()))
}

/// `metadata.resourceVersion` as a revision; `None` if absent, empty or
/// not a number.
pub fn resource_version(object: &Value) -> Option<Revision> {
    metadata(object)?
        .get("resourceVersion")?
        .as_str()?
        .parse()
        .ok()
}

/// Sets `metadata.resourceVersion` (removes it for `None`).
pub fn set_resource_version(object: &mut Value, revision: Option<Revision>) {
    if let Ok(meta) = metadata_mut(object) {
        match revision {
            Some(rv) => {
                meta.insert("resourceVersion".into(), Value::String(rv.to_string()));
            }
            None => {
                meta.remove("resourceVersion");
            }
        }
    }
}

/// A string field of `metadata`.
pub fn meta_str<'a>(object: &'a Value, field: &str) -> Option<&'a str> {
    metadata(object)?.get(field)?.as_str()
}

/// `metadata.finalizers`, empty if absent.
pub fn finalizers(object: &Value) -> Vec<String> {
    metadata(object)
        .and_then(|m| m.get("finalizers"))
        .and_then(Value::as_array)
        .map(|a| {
            a.iter()
                .filter_map(|v| v.as_str().map(str::to_string))
                .collect()
        })
        .unwrap_or_default()
}

/// Whether deleting `object` (of `resource`) must wait: it has
/// `metadata.finalizers`, or it is a namespace whose `spec.finalizers`
/// still name the work to do on its content (`kubernetes`: the namespace
/// controller deleting everything in it), as Kubernetes' namespace
/// registry keeps a namespace until both lists are empty.
pub fn deletion_held(resource: &str, object: &Value) -> bool {
    !finalizers(object).is_empty()
        || (resource == "namespaces"
            && object["spec"]["finalizers"]
                .as_array()
                .is_some_and(|f| !f.is_empty()))
}

/// The current time as Kubernetes writes timestamps (RFC 3339, seconds,
/// UTC): `2026-11-23T21:36:30Z`.
pub fn now_rfc3339() -> String {
    jiff::Timestamp::now()
        .strftime("%Y-%m-%dT%H:%M:%SZ")
        .to_string()
}

/// Whether `a` and `b` differ outside `metadata` and `status`: the change
/// that bumps `metadata.generation`.
pub fn spec_changed(a: &Value, b: &Value) -> bool {
    // Compared in place: copying both objects minus metadata and status
    // to compare the copies was 2.5% of all CPU in the scheduler
    // benchmark (every binding and status update comes through here).
    let empty = Map::new();
    let (a, b) = (
        a.as_object().unwrap_or(&empty),
        b.as_object().unwrap_or(&empty),
    );
    let compared = |k: &str| !matches!(k, "metadata" | "status");
    let count = |m: &Map<String, Value>| m.keys().filter(|k| compared(k)).count();
    count(a) != count(b) || a.iter().any(|(k, v)| compared(k) && b.get(k) != Some(v))
}

/// Stamps the server-owned metadata of an object about to be created:
/// a fresh `uid` unless the caller (the API layer) assigned one,
/// `creationTimestamp`, `generation: 1`, and no deletion fields.
pub fn stamp_create(object: &mut Value) -> Result<(), StoreError> {
    let m = metadata_mut(object)?;
    // The API layer may assign the uid first (Job defaulting needs it);
    // anything else gets a fresh one.
    if m.get("uid")
        .and_then(Value::as_str)
        .is_none_or(str::is_empty)
    {
        m.insert(
            "uid".into(),
            Value::String(uuid::Uuid::new_v4().to_string()),
        );
    }
    m.insert("creationTimestamp".into(), Value::String(now_rfc3339()));
    m.insert("generation".into(), serde_json::json!(1));
    m.remove("deletionTimestamp");
    m.remove("deletionGracePeriodSeconds");
    Ok(())
}

/// The resourceVersion an update is conditioned on: `None` when absent or
/// empty (an unconditional update), `BadRequest` when not a number.
pub fn update_precondition(object: &Value) -> Result<Option<Revision>, StoreError> {
    match meta_str(object, "resourceVersion").filter(|s| !s.is_empty()) {
        None => Ok(None),
        Some(given) => given
            .parse()
            .map(Some)
            .map_err(|_| StoreError::BadRequest(format!("invalid resourceVersion {given:?}"))),
    }
}

/// Carries the server-owned fields of `stored` over to `object`, its
/// replacement: `uid`, `creationTimestamp` and the deletion fields are
/// kept, `generation` is bumped when the spec changed, and
/// `resourceVersion` is the stored one (the caller sets the new one once
/// the write has a revision).
pub fn stamp_update(stored: &Value, object: &mut Value) -> Result<(), StoreError> {
    let stored_meta = metadata(stored).cloned().unwrap_or_default();
    let generation = stored_meta
        .get("generation")
        .and_then(Value::as_i64)
        .unwrap_or(1);
    let generation = if spec_changed(stored, object) {
        generation.saturating_add(1)
    } else {
        generation
    };
    let m = metadata_mut(object)?;
    for field in [
        "uid",
        "creationTimestamp",
        "deletionTimestamp",
        "deletionGracePeriodSeconds",
    ] {
        match stored_meta.get(field) {
            Some(v) => m.insert(field.into(), v.clone()),
            None => m.remove(field),
        };
    }
    m.insert("generation".into(), serde_json::json!(generation));
    set_resource_version(object, resource_version(stored));
    Ok(())
}

/// Whether an update leaves nothing to keep the object (of `resource`):
/// it was already marked for deletion with no grace period left to run
/// (`deletionGracePeriodSeconds` 0: a pod being terminated gracefully
/// stays until its node confirms) and nothing holds it any more (see
/// [`deletion_held`]).
pub fn update_removes(resource: &str, stored: &Value, object: &Value) -> bool {
    metadata(stored).is_some_and(|m| {
        m.contains_key("deletionTimestamp")
            && m.get("deletionGracePeriodSeconds")
                .and_then(Value::as_i64)
                .unwrap_or(0)
                == 0
    }) && !deletion_held(resource, object)
}

/// What a delete with a grace period does to a stored object.
#[derive(Clone, Debug, PartialEq)]
pub enum DeletePlan {
    /// Remove it now.
    Remove,
    /// Write this state (marked for deletion) and keep the object.
    Mark(Value),
    /// Leave it as it is (already marked, nothing to shorten).
    Keep,
}

/// Plans a delete of `stored` (of `resource`) with `grace` seconds, as
/// Kubernetes does: 0 removes the object unless finalizers hold it (then
/// it is marked, its grace period ended); more than 0 marks it with
/// `deletionTimestamp` = now + grace and `deletionGracePeriodSeconds` =
/// grace (bumping `generation`), and a later delete may only shorten that.
pub fn plan_delete(
    resource: &str,
    stored: &Value,
    grace: u32,
    now: jiff::Timestamp,
) -> Result<DeletePlan, StoreError> {
    let held = deletion_held(resource, stored);
    let marked = meta_str(stored, "deletionTimestamp").map(str::to_string);
    let current_grace = metadata(stored)
        .and_then(|m| m.get("deletionGracePeriodSeconds"))
        .and_then(Value::as_i64);
    if grace == 0 {
        if !held {
            return Ok(DeletePlan::Remove);
        }
        let mut next = stored.clone();
        if marked.is_none() {
            mark_deleting(resource, &mut next)?;
            return Ok(DeletePlan::Mark(next));
        }
        if current_grace.unwrap_or(0) != 0 {
            metadata_mut(&mut next)?.insert("deletionGracePeriodSeconds".into(), json!(0));
            return Ok(DeletePlan::Mark(next));
        }
        return Ok(DeletePlan::Keep);
    }
    let deadline = now
        .checked_add(jiff::SignedDuration::from_secs(i64::from(grace)))
        .unwrap_or(now);
    let stamp = deadline.strftime("%Y-%m-%dT%H:%M:%SZ").to_string();
    let mut next = stored.clone();
    match marked {
        None => {
            let m = metadata_mut(&mut next)?;
            m.insert("deletionTimestamp".into(), json!(stamp));
            m.insert("deletionGracePeriodSeconds".into(), json!(grace));
            if let Some(g) = m.get("generation").and_then(Value::as_i64)
                && g > 0
            {
                m.insert("generation".into(), json!(g.saturating_add(1)));
            }
            Ok(DeletePlan::Mark(next))
        }
        Some(existing) => {
            // Finalizing already, or the running grace period ends sooner.
            let sooner = existing
                .parse::<jiff::Timestamp>()
                .map(|t| deadline < t)
                .unwrap_or(false);
            if current_grace.unwrap_or(0) == 0 || !sooner {
                return Ok(DeletePlan::Keep);
            }
            let m = metadata_mut(&mut next)?;
            m.insert("deletionTimestamp".into(), json!(stamp));
            m.insert("deletionGracePeriodSeconds".into(), json!(grace));
            Ok(DeletePlan::Mark(next))
        }
    }
}

/// Checks a delete's preconditions against the stored object; `key` names
/// it in the error.
pub fn check_preconditions(
    key: &crate::ObjectKey,
    stored: &Value,
    pre: &crate::Preconditions,
) -> Result<(), StoreError> {
    if let Some(uid) = &pre.uid {
        let actual = meta_str(stored, "uid").unwrap_or("");
        if actual != uid {
            return Err(StoreError::Conflict {
                key: key.to_string(),
                message: format!(
                    "Precondition failed: UID in precondition: {uid}, UID in object meta: {actual}"
                ),
            });
        }
    }
    let stored_rv = resource_version(stored);
    if let Some(rv) = pre.resource_version
        && Some(rv) != stored_rv
    {
        return Err(StoreError::Conflict {
            key: key.to_string(),
            message: format!(
                "Precondition failed: ResourceVersion in precondition: {rv}, ResourceVersion in object meta: {}",
                stored_rv.map(|r| r.to_string()).unwrap_or_default()
            ),
        });
    }
    Ok(())
}

/// The state of an object (of `resource`) with finalizers once a delete
/// marked it: `deletionTimestamp` set and `generation` bumped, and a
/// namespace's phase `Terminating` until its content is gone and its
/// finalizers lifted, as Kubernetes does.
pub fn mark_deleting(resource: &str, object: &mut Value) -> Result<(), StoreError> {
    if resource == "namespaces"
        && let Some(root) = object.as_object_mut()
    {
        match root.get_mut("status").and_then(Value::as_object_mut) {
            Some(status) => {
                status.insert("phase".into(), serde_json::json!("Terminating"));
            }
            None => {
                root.insert("status".into(), serde_json::json!({"phase": "Terminating"}));
            }
        }
    }
    let m = metadata_mut(object)?;
    m.insert("deletionTimestamp".into(), Value::String(now_rfc3339()));
    // As Kubernetes does for objects deleted with finalizers pending and
    // no grace period of their own.
    m.entry("deletionGracePeriodSeconds")
        .or_insert(serde_json::json!(0));
    if let Some(g) = m.get("generation").and_then(Value::as_i64)
        && g > 0
    {
        m.insert("generation".into(), serde_json::json!(g.saturating_add(1)));
    }
    Ok(())
}

/// The error of an update whose resourceVersion is stale, with
/// Kubernetes' message.
pub fn conflict(key: &crate::ObjectKey) -> StoreError {
    StoreError::Conflict {
        key: key.to_string(),
        message: "the object has been modified; please apply your changes to the latest version and try again".into(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(s: &str) -> jiff::Timestamp {
        s.parse().unwrap()
    }

    #[test]
    fn only_changes_outside_metadata_and_status_count_as_spec_changes() {
        let pod = json!({"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "a"},
                         "spec": {"nodeName": ""}, "status": {"phase": "Pending"}});
        let mut other = pod.clone();
        other["status"]["phase"] = json!("Running");
        other["metadata"]["labels"] = json!({"x": "y"});
        assert!(!spec_changed(&pod, &other));
        // Field order does not matter.
        let reordered = json!({"status": {"phase": "Pending"}, "spec": {"nodeName": ""},
                               "metadata": {"name": "a"}, "kind": "Pod", "apiVersion": "v1"});
        assert!(!spec_changed(&pod, &reordered));
        let mut bound = pod.clone();
        bound["spec"]["nodeName"] = json!("n1");
        assert!(spec_changed(&pod, &bound));
        let mut added = pod.clone();
        added["data"] = json!({});
        assert!(spec_changed(&pod, &added) && spec_changed(&added, &pod));
        let mut removed = pod.clone();
        removed.as_object_mut().unwrap().remove("spec");
        assert!(spec_changed(&pod, &removed) && spec_changed(&removed, &pod));
        // Without status on one side, nothing else differs.
        let mut no_status = pod.clone();
        no_status.as_object_mut().unwrap().remove("status");
        assert!(!spec_changed(&pod, &no_status) && !spec_changed(&no_status, &pod));
        assert!(!spec_changed(&json!(null), &json!(1)));
    }

    #[test]
    fn graceful_deletes_mark_then_only_shorten_and_finalizers_hold() {
        let now = at("2026-01-01T00:00:00Z");
        let pod = json!({"metadata": {"name": "p", "generation": 1}});
        assert_eq!(
            plan_delete("pods", &pod, 0, now).unwrap(),
            DeletePlan::Remove
        );
        let DeletePlan::Mark(marked) = plan_delete("pods", &pod, 30, now).unwrap() else {
            panic!("marks");
        };
        assert_eq!(
            marked["metadata"]["deletionTimestamp"],
            "2026-01-01T00:00:30Z"
        );
        assert_eq!(marked["metadata"]["deletionGracePeriodSeconds"], 30);
        assert_eq!(marked["metadata"]["generation"], 2);
        // Not removed by an update while its grace period runs.
        assert!(!update_removes("pods", &marked, &marked));
        let later = at("2026-01-01T00:00:10Z");
        assert_eq!(
            plan_delete("pods", &marked, 30, later).unwrap(),
            DeletePlan::Keep
        );
        let DeletePlan::Mark(shorter) = plan_delete("pods", &marked, 5, later).unwrap() else {
            panic!("shortens");
        };
        assert_eq!(
            shorter["metadata"]["deletionTimestamp"],
            "2026-01-01T00:00:15Z"
        );
        assert_eq!(shorter["metadata"]["generation"], 2);
        assert_eq!(
            plan_delete("pods", &marked, 0, later).unwrap(),
            DeletePlan::Remove
        );

        // With a finalizer: grace 0 ends the grace period, the object stays
        // until the finalizer goes.
        let mut held = marked.clone();
        held["metadata"]["finalizers"] = json!(["x"]);
        let DeletePlan::Mark(ended) = plan_delete("pods", &held, 0, later).unwrap() else {
            panic!("ends the grace period");
        };
        assert_eq!(ended["metadata"]["deletionGracePeriodSeconds"], 0);
        assert_eq!(
            plan_delete("pods", &ended, 0, later).unwrap(),
            DeletePlan::Keep
        );
        let mut released = ended.clone();
        released["metadata"]["finalizers"] = json!([]);
        assert!(update_removes("pods", &ended, &released));
    }
}
