//! Validation of incoming objects against the real Kubernetes types.
//!
//! An object is decoded into its `k8s-openapi` type and encoded back; the
//! result is the canonical stored form. Fields the type does not know are
//! reported separately so the API can apply `fieldValidation`
//! (Strict rejects, Warn warns, Ignore drops). A few semantic rules the
//! Kubernetes API server enforces on every write (names, labels, required
//! containers, selectors matching templates) are checked here too.

use serde_json::{Map, Value};

use crate::ResourceType;

/// One invalid field, as a Kubernetes `StatusCause`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FieldError {
    /// Cause type: `FieldValueRequired`, `FieldValueInvalid`,
    /// `FieldValueDuplicate`, `FieldValueTypeInvalid`, `FieldValueNotFound`.
    pub reason: &'static str,
    /// JSON path of the field, e.g. `metadata.name`, `spec.replicas`.
    pub field: String,
    /// Human-readable explanation.
    pub message: String,
}

impl FieldError {
    fn new(reason: &'static str, field: impl Into<String>, message: impl Into<String>) -> Self {
        FieldError {
            reason,
            field: field.into(),
            message: message.into(),
        }
    }
}

/// An object that passed validation.
#[derive(Clone, Debug)]
pub struct Validated {
    /// The canonical form: decoded through the typed definition, unknown
    /// fields dropped.
    pub object: Value,
    /// Paths of fields the type does not define, e.g. `.spec.foo`.
    pub unknown_fields: Vec<String>,
}

/// Validates `object` as a `resource`. `apiVersion` and `kind` must already
/// be set and match the resource.
pub fn validate(resource: &ResourceType, object: &Value) -> Result<Validated, Vec<FieldError>> {
    let Some(map) = object.as_object() else {
        return Err(vec![FieldError::new(
            "FieldValueTypeInvalid",
            "",
            "object must be a JSON map",
        )]);
    };
    let mut errors = Vec::new();
    check_type_meta(resource, map, &mut errors);
    check_metadata(resource, map, &mut errors);
    if !errors.is_empty() {
        return Err(errors);
    }
    let canonical = decode_typed(resource, object)?;
    let mut unknown_fields = Vec::new();
    unknown_paths(object, &canonical, &mut String::new(), &mut unknown_fields);
    check_semantics(resource, &canonical, &mut errors);
    if !errors.is_empty() {
        return Err(errors);
    }
    Ok(Validated {
        object: canonical,
        unknown_fields,
    })
}

fn decode_typed(resource: &ResourceType, object: &Value) -> Result<Value, Vec<FieldError>> {
    (resource.round_trip)(object).map_err(|message| {
        // serde_path_to_error prefixes the path it failed at: "spec.replicas: invalid type..."
        let (field, msg) = match message.split_once(": ") {
            Some((path, rest)) if !path.contains(' ') => (path.to_string(), rest.to_string()),
            _ => (String::new(), message),
        };
        vec![FieldError::new("FieldValueTypeInvalid", field, msg)]
    })
}

fn check_type_meta(
    resource: &ResourceType,
    map: &Map<String, Value>,
    errors: &mut Vec<FieldError>,
) {
    let api_version = map
        .get("apiVersion")
        .and_then(Value::as_str)
        .unwrap_or_default();
    let kind = map.get("kind").and_then(Value::as_str).unwrap_or_default();
    if api_version != resource.api_version() {
        errors.push(FieldError::new(
            "FieldValueInvalid",
            "apiVersion",
            format!("must be {:?}, not {api_version:?}", resource.api_version()),
        ));
    }
    if kind != resource.kind {
        errors.push(FieldError::new(
            "FieldValueInvalid",
            "kind",
            format!("must be {:?}, not {kind:?}", resource.kind),
        ));
    }
}

fn check_metadata(resource: &ResourceType, map: &Map<String, Value>, errors: &mut Vec<FieldError>) {
    // Reviews are never stored, so they need no name.
    if resource.create_only {
        return;
    }
    let Some(meta) = map.get("metadata").and_then(Value::as_object) else {
        errors.push(FieldError::new(
            "FieldValueRequired",
            "metadata",
            "Required value",
        ));
        return;
    };
    match meta.get("name").and_then(Value::as_str) {
        None | Some("") => errors.push(FieldError::new(
            "FieldValueRequired",
            "metadata.name",
            "name or generateName is required",
        )),
        Some(name) => {
            if let Err(msg) = check_name(resource, name) {
                errors.push(FieldError::new(
                    "FieldValueInvalid",
                    "metadata.name",
                    format!("Invalid value: {name:?}: {msg}"),
                ));
            }
        }
    }
    for field in ["labels", "annotations"] {
        let Some(entries) = meta.get(field) else {
            continue;
        };
        let Some(entries) = entries.as_object() else {
            if !entries.is_null() {
                errors.push(FieldError::new(
                    "FieldValueTypeInvalid",
                    format!("metadata.{field}"),
                    "must be a map of strings",
                ));
            }
            continue;
        };
        for (key, value) in entries {
            if let Err(msg) = check_qualified_name(key) {
                errors.push(FieldError::new(
                    "FieldValueInvalid",
                    format!("metadata.{field}"),
                    format!("Invalid value: {key:?}: {msg}"),
                ));
            }
            if field == "labels"
                && let Some(v) = value.as_str()
                && let Err(msg) = check_label_value(v)
            {
                errors.push(FieldError::new(
                    "FieldValueInvalid",
                    format!("metadata.labels.{key}"),
                    format!("Invalid value: {v:?}: {msg}"),
                ));
            }
        }
    }
}

/// Checks an object name against the rule Kubernetes applies to `resource`:
/// DNS-1123 labels for namespaces, DNS-1035 labels for services, DNS-1123
/// subdomains for the rest.
pub fn check_name(resource: &ResourceType, name: &str) -> Result<(), String> {
    match resource.plural {
        "namespaces" => check_dns1123_label(name),
        "services" => check_dns1035_label(name),
        _ => check_dns1123_subdomain(name),
    }
}

fn is_alnum_lower(c: char) -> bool {
    c.is_ascii_lowercase() || c.is_ascii_digit()
}

/// RFC 1123 label: at most 63 lowercase alphanumerics or '-', starting and
/// ending with an alphanumeric.
pub fn check_dns1123_label(s: &str) -> Result<(), String> {
    const MSG: &str = "a lowercase RFC 1123 label must consist of lower case alphanumeric characters or '-', and must start and end with an alphanumeric character";
    if s.is_empty() || s.len() > 63 {
        return Err(format!("must be no more than 63 characters; {MSG}"));
    }
    let ok = s.chars().all(|c| is_alnum_lower(c) || c == '-')
        && s.starts_with(is_alnum_lower)
        && s.ends_with(is_alnum_lower);
    if ok { Ok(()) } else { Err(MSG.into()) }
}

/// RFC 1035 label: an RFC 1123 label that starts with a letter.
pub fn check_dns1035_label(s: &str) -> Result<(), String> {
    check_dns1123_label(s)?;
    if s.starts_with(|c: char| c.is_ascii_lowercase()) {
        Ok(())
    } else {
        Err("a DNS-1035 label must start with an alphabetic character".into())
    }
}

/// RFC 1123 subdomain: dot-separated labels, at most 253 characters.
pub fn check_dns1123_subdomain(s: &str) -> Result<(), String> {
    const MSG: &str = "a lowercase RFC 1123 subdomain must consist of lower case alphanumeric characters, '-' or '.', and must start and end with an alphanumeric character";
    if s.is_empty() || s.len() > 253 {
        return Err(format!("must be no more than 253 characters; {MSG}"));
    }
    let ok = s.chars().all(|c| is_alnum_lower(c) || c == '-' || c == '.')
        && s.starts_with(is_alnum_lower)
        && s.ends_with(is_alnum_lower)
        && !s.contains("..");
    if ok { Ok(()) } else { Err(MSG.into()) }
}

fn check_name_part(s: &str) -> bool {
    let alnum = |c: char| c.is_ascii_alphanumeric();
    !s.is_empty()
        && s.len() <= 63
        && s.chars().all(|c| alnum(c) || matches!(c, '-' | '_' | '.'))
        && s.starts_with(alnum)
        && s.ends_with(alnum)
}

/// A label or annotation key: `[prefix/]name`, prefix a DNS subdomain.
pub fn check_qualified_name(key: &str) -> Result<(), String> {
    let (prefix, name) = match key.split_once('/') {
        Some((p, n)) => (Some(p), n),
        None => (None, key),
    };
    if let Some(p) = prefix {
        check_dns1123_subdomain(p).map_err(|e| format!("prefix part {e}"))?;
    }
    if check_name_part(name) {
        Ok(())
    } else {
        Err("name part must consist of alphanumeric characters, '-', '_' or '.', and must start and end with an alphanumeric character (at most 63)".into())
    }
}

/// A label value: empty, or a name part (at most 63 characters).
pub fn check_label_value(v: &str) -> Result<(), String> {
    if v.is_empty() || check_name_part(v) {
        Ok(())
    } else {
        Err("a valid label must be an empty string or consist of alphanumeric characters, '-', '_' or '.', and must start and end with an alphanumeric character (at most 63)".into())
    }
}

/// Collects the paths of fields present (and not null) in `original` but
/// missing from `canonical`, its round trip through the typed definition:
/// the fields the type does not know. The path is
/// built in one buffer, extended and cut back as the walk goes: every
/// field of every write is visited, and a string per field was most of
/// the walk's cost.
fn unknown_paths(original: &Value, canonical: &Value, path: &mut String, out: &mut Vec<String>) {
    use std::fmt::Write;
    let len = path.len();
    match (original, canonical) {
        (Value::Object(o), Value::Object(c)) => {
            for (k, v) in o {
                match c.get(k) {
                    Some(cv) => {
                        path.push('.');
                        path.push_str(k);
                        unknown_paths(v, cv, path, out);
                        path.truncate(len);
                    }
                    None if v.is_null() => {}
                    None => out.push(format!("{path}.{k}")),
                }
            }
        }
        (Value::Array(o), Value::Array(c)) => {
            for (i, (ov, cv)) in o.iter().zip(c).enumerate() {
                let _ = write!(path, "[{i}]");
                unknown_paths(ov, cv, path, out);
                path.truncate(len);
            }
        }
        _ => {}
    }
}

fn pod_spec_path(kind: &str) -> Option<&'static [&'static str]> {
    Some(match kind {
        "Pod" => &["spec"],
        "Deployment" | "ReplicaSet" | "DaemonSet" | "StatefulSet" | "Job" => {
            &["spec", "template", "spec"]
        }
        "CronJob" => &["spec", "jobTemplate", "spec", "template", "spec"],
        _ => return None,
    })
}

fn get_path<'a>(v: &'a Value, path: &[&str]) -> Option<&'a Value> {
    path.iter().try_fold(v, |v, k| v.get(k))
}

fn check_semantics(resource: &ResourceType, object: &Value, errors: &mut Vec<FieldError>) {
    if let Some(path) = pod_spec_path(resource.kind) {
        let prefix = path.join(".");
        if let Some(spec) = get_path(object, path) {
            check_pod_spec(spec, &prefix, errors);
        } else if resource.kind != "Pod" || object.get("spec").is_some() {
            errors.push(FieldError::new(
                "FieldValueRequired",
                prefix,
                "Required value",
            ));
        } else {
            errors.push(FieldError::new(
                "FieldValueRequired",
                "spec.containers",
                "Required value",
            ));
        }
    }
    if matches!(
        resource.kind,
        "Deployment" | "ReplicaSet" | "DaemonSet" | "StatefulSet"
    ) {
        check_selector_matches_template(object, errors);
    }
    match resource.kind {
        "Plugin" => check_plugin(object, errors),
        "PluginComponent" => check_plugin_component(object, errors),
        _ => {}
    }
}

/// A Plugin names a known world, numbers its revisions 1, 2, ... with a
/// digest each, and wants one of them.
fn check_plugin(object: &Value, errors: &mut Vec<FieldError>) {
    let spec = &object["spec"];
    let world = spec["world"].as_str().unwrap_or_default();
    if !["scheduler", "controller", "admission", "node-policy"].contains(&world) {
        errors.push(FieldError::new(
            "FieldValueNotSupported",
            "spec.world",
            format!("Unsupported value: {world:?}: supported values: \"scheduler\", \"controller\", \"admission\", \"node-policy\""),
        ));
    }
    let host_calls = spec["capabilities"]["hostCalls"]
        .as_array()
        .map(Vec::as_slice)
        .unwrap_or_default();
    for (i, call) in host_calls.iter().enumerate() {
        if !matches!(call.as_str(), Some("runtime" | "cgroups" | "network")) {
            errors.push(FieldError::new(
                "FieldValueNotSupported",
                format!("spec.capabilities.hostCalls[{i}]"),
                format!(
                    "Unsupported value: {call}: supported values: \"runtime\", \"cgroups\", \"network\""
                ),
            ));
        }
    }
    let revisions = spec["revisions"]
        .as_array()
        .map(Vec::as_slice)
        .unwrap_or_default();
    let mut previous = 0;
    for (i, r) in revisions.iter().enumerate() {
        let number = r["revision"].as_i64().unwrap_or_default();
        if number <= previous {
            errors.push(FieldError::new(
                "FieldValueInvalid",
                format!("spec.revisions[{i}].revision"),
                format!("Invalid value: {number}: revisions must increase, from 1"),
            ));
        }
        previous = number;
        let digest = r["digest"].as_str().unwrap_or_default();
        let hex = digest.strip_prefix("sha256:").unwrap_or_default();
        if hex.len() != 64
            || !hex
                .bytes()
                .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
        {
            errors.push(FieldError::new(
                "FieldValueInvalid",
                format!("spec.revisions[{i}].digest"),
                format!("Invalid value: {digest:?}: must be sha256: and 64 lower-case hex digits"),
            ));
        }
    }
    let wanted = spec["revision"].as_i64().unwrap_or_default();
    if !revisions
        .iter()
        .any(|r| r["revision"].as_i64() == Some(wanted))
    {
        errors.push(FieldError::new(
            "FieldValueInvalid",
            "spec.revision",
            format!("Invalid value: {wanted}: must be one of spec.revisions"),
        ));
    }
}

/// A PluginComponent's name is the digest of its bytes; a chunk
/// (`<name>-<index>`) holds at most a chunk's bytes; the head of a
/// component in chunks holds no bytes but the digests of its chunks (its
/// own digest is checked by whoever loads it: the chunks are elsewhere).
fn check_plugin_component(object: &Value, errors: &mut Vec<FieldError>) {
    use crate::orchd_v1::{
        COMPONENT_CHUNK_BYTES, COMPONENT_NAME_PREFIX, parse_chunk_name, sha256_hex,
    };
    use base64::Engine as _;
    let name = object["metadata"]["name"].as_str().unwrap_or_default();
    let data = object["data"].as_str().unwrap_or_default();
    let chunks = object["chunks"]
        .as_array()
        .map(Vec::as_slice)
        .unwrap_or_default();
    let Ok(bytes) = base64::engine::general_purpose::STANDARD.decode(data) else {
        errors.push(FieldError::new(
            "FieldValueInvalid",
            "data",
            "Invalid value: not base64",
        ));
        return;
    };
    if parse_chunk_name(name).is_some() {
        if bytes.is_empty() || bytes.len() > COMPONENT_CHUNK_BYTES {
            errors.push(FieldError::new(
                "FieldValueInvalid",
                "data",
                format!(
                    "Invalid value: a chunk holds 1 to {COMPONENT_CHUNK_BYTES} bytes, not {}",
                    bytes.len()
                ),
            ));
        }
        if !chunks.is_empty() {
            errors.push(FieldError::new(
                "FieldValueForbidden",
                "chunks",
                "Forbidden: a chunk has no chunks",
            ));
        }
        return;
    }
    if !chunks.is_empty() {
        let hex = name.strip_prefix(COMPONENT_NAME_PREFIX).unwrap_or_default();
        if hex.len() != 64 || !hex.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f')) {
            errors.push(FieldError::new(
                "FieldValueInvalid",
                "metadata.name",
                format!("Invalid value: {name:?}: must be sha256- and 64 lower-case hex digits"),
            ));
        }
        if !bytes.is_empty() {
            errors.push(FieldError::new(
                "FieldValueForbidden",
                "data",
                "Forbidden: a component in chunks holds its bytes in the chunks",
            ));
        }
        for (i, c) in chunks.iter().enumerate() {
            let hex = c
                .as_str()
                .and_then(|c| c.strip_prefix("sha256:"))
                .unwrap_or_default();
            if hex.len() != 64 || !hex.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f')) {
                errors.push(FieldError::new(
                    "FieldValueInvalid",
                    format!("chunks[{i}]"),
                    format!("Invalid value: {c}: must be sha256: and 64 lower-case hex digits"),
                ));
            }
        }
        let size = object["size"].as_u64().unwrap_or(0);
        let max = (chunks.len() as u64).saturating_mul(COMPONENT_CHUNK_BYTES as u64);
        let min = max.saturating_sub(COMPONENT_CHUNK_BYTES as u64);
        if size <= min || size > max {
            errors.push(FieldError::new(
                "FieldValueInvalid",
                "size",
                format!(
                    "Invalid value: {size}: {} chunks of {COMPONENT_CHUNK_BYTES} bytes hold {} to {max} bytes",
                    chunks.len(),
                    min + 1
                ),
            ));
        }
        return;
    }
    let expected = format!("{COMPONENT_NAME_PREFIX}{}", sha256_hex(&bytes));
    if name != expected {
        errors.push(FieldError::new(
            "FieldValueInvalid",
            "metadata.name",
            format!("Invalid value: {name:?}: must be the digest of data, {expected:?}"),
        ));
    }
}

fn check_pod_spec(spec: &Value, prefix: &str, errors: &mut Vec<FieldError>) {
    let containers = spec.get("containers").and_then(Value::as_array);
    if containers.is_none_or(|c| c.is_empty()) {
        errors.push(FieldError::new(
            "FieldValueRequired",
            format!("{prefix}.containers"),
            "Required value",
        ));
    }
    let mut seen = std::collections::HashSet::new();
    for list in ["initContainers", "containers"] {
        for (i, c) in spec
            .get(list)
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
            .enumerate()
        {
            let field = format!("{prefix}.{list}[{i}]");
            match c.get("name").and_then(Value::as_str) {
                Some(name) if !name.is_empty() => {
                    if let Err(msg) = check_dns1123_label(name) {
                        errors.push(FieldError::new(
                            "FieldValueInvalid",
                            format!("{field}.name"),
                            format!("Invalid value: {name:?}: {msg}"),
                        ));
                    }
                    if !seen.insert(name.to_string()) {
                        errors.push(FieldError::new(
                            "FieldValueDuplicate",
                            format!("{field}.name"),
                            format!("Duplicate value: {name:?}"),
                        ));
                    }
                }
                _ => errors.push(FieldError::new(
                    "FieldValueRequired",
                    format!("{field}.name"),
                    "Required value",
                )),
            }
            if c.get("image")
                .and_then(Value::as_str)
                .is_none_or(str::is_empty)
            {
                errors.push(FieldError::new(
                    "FieldValueRequired",
                    format!("{field}.image"),
                    "Required value",
                ));
            }
        }
    }
}

fn check_selector_matches_template(object: &Value, errors: &mut Vec<FieldError>) {
    let Some(selector) = get_path(object, &["spec", "selector"]) else {
        errors.push(FieldError::new(
            "FieldValueRequired",
            "spec.selector",
            "Required value",
        ));
        return;
    };
    let labels = get_path(object, &["spec", "template", "metadata", "labels"])
        .and_then(Value::as_object)
        .cloned()
        .unwrap_or_default();
    let match_labels = selector.get("matchLabels").and_then(Value::as_object);
    let match_expressions = selector.get("matchExpressions").and_then(Value::as_array);
    if match_labels.is_none_or(|m| m.is_empty()) && match_expressions.is_none_or(|m| m.is_empty()) {
        errors.push(FieldError::new(
            "FieldValueInvalid",
            "spec.selector",
            "Invalid value: empty selector is invalid for deployment",
        ));
        return;
    }
    let labels_match = match_labels
        .into_iter()
        .flatten()
        .all(|(k, v)| labels.get(k) == Some(v));
    let expressions_match = match_expressions.into_iter().flatten().all(|e| {
        let key = e.get("key").and_then(Value::as_str).unwrap_or_default();
        let values: Vec<&str> = e
            .get("values")
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
            .filter_map(Value::as_str)
            .collect();
        let actual = labels.get(key).and_then(Value::as_str);
        match e
            .get("operator")
            .and_then(Value::as_str)
            .unwrap_or_default()
        {
            "In" => actual.is_some_and(|a| values.contains(&a)),
            "NotIn" => actual.is_none_or(|a| !values.contains(&a)),
            "Exists" => actual.is_some(),
            "DoesNotExist" => actual.is_none(),
            _ => false,
        }
    });
    if !(labels_match && expressions_match) {
        errors.push(FieldError::new(
            "FieldValueInvalid",
            "spec.template.metadata.labels",
            "Invalid value: `selector` does not match template `labels`",
        ));
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::find_by_kind;
    use serde_json::json;

    fn deployment() -> Value {
        json!({
            "apiVersion": "apps/v1", "kind": "Deployment",
            "metadata": {"name": "web", "labels": {"app": "web"}},
            "spec": {
                "replicas": 2,
                "selector": {"matchLabels": {"app": "web"}},
                "template": {"metadata": {"labels": {"app": "web"}},
                    "spec": {"containers": [{"name": "app", "image": "nginx"}]}}
            }
        })
    }

    #[test]
    fn valid_object_round_trips_without_unknown_fields() {
        let rt = find_by_kind("apps/v1", "Deployment").unwrap();
        let v = validate(rt, &deployment()).unwrap();
        assert!(v.unknown_fields.is_empty(), "{:?}", v.unknown_fields);
        assert_eq!(v.object["spec"]["replicas"], 2);
    }

    #[test]
    fn unknown_fields_are_reported_with_their_path_and_dropped() {
        let rt = find_by_kind("apps/v1", "Deployment").unwrap();
        let mut d = deployment();
        d["spec"]["bogus"] = json!(1);
        d["spec"]["template"]["spec"]["containers"][0]["imagee"] = json!("x");
        let mut v = validate(rt, &d).unwrap();
        // Paths come in the object's key order, which depends on whether
        // serde_json keeps insertion order: compare them sorted.
        v.unknown_fields.sort();
        assert_eq!(
            v.unknown_fields,
            vec![".spec.bogus", ".spec.template.spec.containers[0].imagee"]
        );
        assert!(v.object["spec"].get("bogus").is_none());
    }

    #[test]
    fn wrong_types_names_and_selectors_are_rejected() {
        let rt = find_by_kind("apps/v1", "Deployment").unwrap();
        let mut d = deployment();
        d["spec"]["replicas"] = json!("two");
        let e = validate(rt, &d).unwrap_err();
        assert_eq!(e[0].field, "spec.replicas", "{e:?}");

        let mut d = deployment();
        d["metadata"]["name"] = json!("Bad_Name");
        assert_eq!(validate(rt, &d).unwrap_err()[0].field, "metadata.name");

        let mut d = deployment();
        d["spec"]["template"]["metadata"]["labels"]["app"] = json!("other");
        assert_eq!(
            validate(rt, &d).unwrap_err()[0].field,
            "spec.template.metadata.labels"
        );

        let pod = find_by_kind("v1", "Pod").unwrap();
        let e = validate(pod, &json!({"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "p"}, "spec": {"containers": []}})).unwrap_err();
        assert_eq!(e[0].field, "spec.containers");
        let e = validate(
            pod,
            &json!({"apiVersion": "v1", "kind": "Service", "metadata": {"name": "p"}}),
        )
        .unwrap_err();
        assert_eq!(e[0].field, "kind");
    }

    #[test]
    fn name_rules_follow_kubernetes() {
        assert!(check_dns1123_subdomain("web-1.example").is_ok());
        assert!(check_dns1123_subdomain("-web").is_err());
        assert!(check_dns1123_label("a.b").is_err());
        assert!(check_dns1035_label("1abc").is_err());
        assert!(check_qualified_name("app.kubernetes.io/name").is_ok());
        assert!(check_qualified_name("bad key").is_err());
        assert!(check_label_value("").is_ok());
        assert!(check_label_value("x".repeat(64).as_str()).is_err());
    }

    #[test]
    fn plugin_components_are_whole_chunks_or_heads_of_chunks() {
        use crate::orchd_v1::{COMPONENT_CHUNK_BYTES, component_objects};
        let rt = find_by_kind("orchd.dev/v1", "PluginComponent").unwrap();
        let (chunks, head) = component_objects(b"small");
        assert!(chunks.is_empty());
        validate(rt, &head).unwrap();
        let mut wrong = head.clone();
        wrong["data"] = json!("b3RoZXI=");
        assert_eq!(validate(rt, &wrong).unwrap_err()[0].field, "metadata.name");

        let big = vec![1u8; COMPONENT_CHUNK_BYTES + 1];
        let (chunks, head) = component_objects(&big);
        for chunk in &chunks {
            validate(rt, chunk).unwrap();
        }
        validate(rt, &head).unwrap();
        let mut lying = head.clone();
        lying["size"] = json!(5);
        assert_eq!(validate(rt, &lying).unwrap_err()[0].field, "size");
        let mut stuffed = head.clone();
        stuffed["data"] = json!("eA==");
        assert_eq!(validate(rt, &stuffed).unwrap_err()[0].field, "data");
        let mut bad = head.clone();
        bad["chunks"][0] = json!("md5:x");
        assert_eq!(validate(rt, &bad).unwrap_err()[0].field, "chunks[0]");
        // A chunk holds at most a chunk's bytes.
        let mut fat = chunks[0].clone();
        fat["data"] = json!(base64::Engine::encode(
            &base64::engine::general_purpose::STANDARD,
            vec![0u8; COMPONENT_CHUNK_BYTES + 1]
        ));
        assert_eq!(validate(rt, &fat).unwrap_err()[0].field, "data");
    }
}
