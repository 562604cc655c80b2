//! OpenAPI v3 documents, generated from the `k8s-openapi` type definitions.
//!
//! kubectl reads these documents for three things, and each shapes what is
//! generated here:
//!
//! * `kubectl explain` looks a kind up by the `x-kubernetes-group-version-kind`
//!   list on a schema in `components.schemas`, then follows `$ref`s (also
//!   through a single-element `allOf`) down the field path.
//! * Before sending `fieldValidation`, kubectl looks in the group-version
//!   document for a PATCH operation whose `x-kubernetes-group-version-kind`
//!   (a single object there, not a list) names the kind, and checks that the
//!   operation's own `parameters` list a query parameter `fieldValidation`.
//!   Parameters declared at path level do not count. The first matching
//!   PATCH operation decides, so status and scale PATCHes carry it too.
//! * Client-side `kubectl apply` computes its strategic merge patch from the
//!   kind's schema when the kind's PATCH operation accepts
//!   `application/strategic-merge-patch+json`. List merge keys then come
//!   from `x-kubernetes-patch-merge-key` / `x-kubernetes-patch-strategy` on
//!   the property schema; without them every list would be replaced whole,
//!   so they are added here (k8s-openapi does not carry them).

use std::sync::{Arc, OnceLock};

use k8s_openapi::api::{autoscaling, core};
use k8s_openapi::apimachinery::pkg::apis::meta::v1 as meta;
use schemars::generate::SchemaSettings;
use serde_json::{Map, Value, json};

use crate::registry::{ResourceType, Subresource, group_versions, resources};

/// Where definitions live; `$ref`s point at `#/components/schemas/NAME`.
const REF_PREFIX: &str = "#/components/schemas/";

/// The patch content types orchd accepts on PATCH.
const PATCH_TYPES: &[&str] = &[
    "application/apply-patch+yaml",
    "application/json-patch+json",
    "application/merge-patch+json",
    "application/strategic-merge-patch+json",
];

/// One generated group-version document and its content hash.
struct Document {
    group: &'static str,
    version: &'static str,
    doc: Arc<Value>,
    hash: String,
}

fn documents() -> &'static [Document] {
    static DOCS: OnceLock<Vec<Document>> = OnceLock::new();
    DOCS.get_or_init(|| {
        group_versions()
            .into_iter()
            .map(|(group, version)| {
                let doc = build_document(group, version);
                let bytes = serde_json::to_vec(&doc).unwrap_or_default();
                Document {
                    group,
                    version,
                    doc: Arc::new(doc),
                    hash: content_hash(&bytes),
                }
            })
            .collect()
    })
}

/// The path of a group-version below `/openapi/v3/` (and below `/`):
/// `api/v1` for the core group, `apis/{group}/{version}` otherwise.
pub fn group_version_path(group: &str, version: &str) -> String {
    if group.is_empty() {
        format!("api/{version}")
    } else {
        format!("apis/{group}/{version}")
    }
}

/// The `/openapi/v3` discovery document: one entry per served
/// group-version, each pointing at its document with a content hash that
/// changes whenever the document does (kubectl caches by that URL).
pub fn v3_root() -> Value {
    let mut paths = Map::new();
    for d in documents() {
        let path = group_version_path(d.group, d.version);
        let url = format!("/openapi/v3/{path}?hash={}", d.hash);
        paths.insert(path, json!({ "serverRelativeURL": url }));
    }
    json!({ "paths": paths })
}

/// The OpenAPI v3 document of one group-version, or `None` if it is not
/// served. Generated once and shared.
pub fn v3_group_version(group: &str, version: &str) -> Option<Arc<Value>> {
    documents()
        .iter()
        .find(|d| d.group == group && d.version == version)
        .map(|d| Arc::clone(&d.doc))
}

/// The hash of a group-version document as advertised in [`v3_root`];
/// servers may answer a request carrying the current hash with long-lived
/// caching headers, as Kubernetes does.
pub fn v3_group_version_hash(group: &str, version: &str) -> Option<&'static str> {
    documents()
        .iter()
        .find(|d| d.group == group && d.version == version)
        .map(|d| d.hash.as_str())
}

/// Two FNV-1a lanes (different offsets, the second over rotated bytes) for
/// 128 bits: stable across builds and Rust versions, unlike `std`'s hasher,
/// which is what a cache key needs. Not meant to resist tampering.
fn content_hash(bytes: &[u8]) -> String {
    const PRIME: u64 = 0x0000_0100_0000_01b3;
    let mut a: u64 = 0xcbf2_9ce4_8422_2325;
    let mut b: u64 = 0x8422_2325_cbf2_9ce4;
    for &byte in bytes {
        a = (a ^ u64::from(byte)).wrapping_mul(PRIME);
        b = (b ^ u64::from(byte.rotate_left(3))).wrapping_mul(PRIME);
    }
    format!("{a:016X}{b:016X}")
}

fn gvk(group: &str, version: &str, kind: &str) -> Value {
    json!({ "group": group, "kind": kind, "version": version })
}

fn schema_ref(name: &str) -> Value {
    json!({ "$ref": format!("{REF_PREFIX}{name}") })
}

fn build_document(group: &'static str, version: &'static str) -> Value {
    let served: Vec<&ResourceType> = resources()
        .iter()
        .filter(|r| r.group == group && r.version == version)
        .collect();
    let has = |sub: Subresource| served.iter().any(|r| r.has_subresource(sub));

    let mut generator = SchemaSettings::openapi3().into_generator();
    for r in &served {
        r.add_schema(&mut generator);
    }
    // Referenced by the paths: list metadata, delete bodies, Status
    // answers, patch bodies and watch events.
    generator.subschema_for::<meta::ListMeta>();
    generator.subschema_for::<meta::DeleteOptions>();
    generator.subschema_for::<meta::Status>();
    generator.subschema_for::<meta::Patch>();
    generator.subschema_for::<meta::WatchEvent<core::v1::Pod>>();
    if has(Subresource::Scale) {
        generator.subschema_for::<autoscaling::v1::Scale>();
    }
    if has(Subresource::Binding) {
        generator.subschema_for::<core::v1::Binding>();
    }
    let mut schemas = generator.take_definitions(true);

    for r in &served {
        let name = r.schema_name();
        if let Some(Value::Object(schema)) = schemas.get_mut(&name) {
            schema.insert(
                "x-kubernetes-group-version-kind".into(),
                json!([gvk(r.group, r.version, r.kind)]),
            );
        }
        schemas.insert(list_schema_name(r), list_schema(r));
    }
    // Shared meta kinds carry the GVKs under which this group-version
    // serves them, as in Kubernetes' own documents.
    let mut shared = vec![gvk("", "v1", "")];
    if !group.is_empty() {
        shared.push(gvk(group, version, ""));
    }
    for kind in ["DeleteOptions", "WatchEvent"] {
        let list: Vec<Value> = shared
            .iter()
            .map(|g| {
                let mut g = g.clone();
                g["kind"] = json!(kind);
                g
            })
            .collect();
        if let Some(Value::Object(schema)) =
            schemas.get_mut(&format!("io.k8s.apimachinery.pkg.apis.meta.v1.{kind}"))
        {
            schema.insert("x-kubernetes-group-version-kind".into(), Value::Array(list));
        }
    }
    for (kind, g, v) in [
        ("Status", "", "v1"),
        ("Scale", "autoscaling", "v1"),
        ("Binding", "", "v1"),
    ] {
        let name = match kind {
            "Status" => "io.k8s.apimachinery.pkg.apis.meta.v1.Status",
            "Scale" => "io.k8s.api.autoscaling.v1.Scale",
            _ => "io.k8s.api.core.v1.Binding",
        };
        if let Some(Value::Object(schema)) = schemas.get_mut(name) {
            schema.insert(
                "x-kubernetes-group-version-kind".into(),
                json!([gvk(g, v, kind)]),
            );
        }
    }
    add_patch_extensions(&mut schemas);

    let mut paths = Map::new();
    for r in &served {
        add_paths(&mut paths, r);
    }
    json!({
        "openapi": "3.0.0",
        "info": { "title": "Kubernetes", "version": "v1.37.0" },
        "paths": paths,
        "components": { "schemas": schemas },
    })
}

fn list_schema_name(r: &ResourceType) -> String {
    format!("{}List", r.schema_name())
}

/// k8s-openapi models lists as one generic type without a schema, so the
/// per-kind list definition is assembled from references to the real
/// item and `ListMeta` definitions.
fn list_schema(r: &ResourceType) -> Value {
    json!({
        "description": format!("{}List is a list of {}.", r.kind, r.kind),
        "type": "object",
        "properties": {
            "apiVersion": {
                "description": "The versioned schema of this representation of an object.",
                "type": "string",
            },
            "items": {
                "description": format!("List of {}.", r.plural),
                "type": "array",
                "items": schema_ref(&r.schema_name()),
            },
            "kind": {
                "description": "The REST resource this object represents.",
                "type": "string",
            },
            "metadata": {
                "allOf": [schema_ref("io.k8s.apimachinery.pkg.apis.meta.v1.ListMeta")],
                "description": "Standard list metadata.",
            },
        },
        "required": ["items"],
        "x-kubernetes-group-version-kind": [gvk(r.group, r.version, &format!("{}List", r.kind))],
    })
}

/// Strategic-merge facts per definition: (definition, field, patch
/// strategy, merge key). Taken from the `patchStrategy` / `patchMergeKey`
/// struct tags in k8s.io/api and k8s.io/apimachinery; entries whose
/// definition or field a document lacks are skipped.
const PATCH_META: &[(&str, &str, &str, Option<&str>)] = &[
    (
        "io.k8s.apimachinery.pkg.apis.meta.v1.ObjectMeta",
        "finalizers",
        "merge",
        None,
    ),
    (
        "io.k8s.apimachinery.pkg.apis.meta.v1.ObjectMeta",
        "ownerReferences",
        "merge",
        Some("uid"),
    ),
    (
        "io.k8s.api.core.v1.PodSpec",
        "volumes",
        "merge,retainKeys",
        Some("name"),
    ),
    (
        "io.k8s.api.core.v1.PodSpec",
        "initContainers",
        "merge",
        Some("name"),
    ),
    (
        "io.k8s.api.core.v1.PodSpec",
        "containers",
        "merge",
        Some("name"),
    ),
    (
        "io.k8s.api.core.v1.PodSpec",
        "ephemeralContainers",
        "merge",
        Some("name"),
    ),
    (
        "io.k8s.api.core.v1.PodSpec",
        "imagePullSecrets",
        "merge",
        Some("name"),
    ),
    (
        "io.k8s.api.core.v1.PodSpec",
        "hostAliases",
        "merge",
        Some("ip"),
    ),
    (
        "io.k8s.api.core.v1.PodSpec",
        "topologySpreadConstraints",
        "merge",
        Some("topologyKey"),
    ),
    (
        "io.k8s.api.core.v1.PodSpec",
        "schedulingGates",
        "merge",
        Some("name"),
    ),
    (
        "io.k8s.api.core.v1.PodSpec",
        "resourceClaims",
        "merge,retainKeys",
        Some("name"),
    ),
    (
        "io.k8s.api.core.v1.Container",
        "ports",
        "merge",
        Some("containerPort"),
    ),
    ("io.k8s.api.core.v1.Container", "env", "merge", Some("name")),
    (
        "io.k8s.api.core.v1.Container",
        "volumeMounts",
        "merge",
        Some("mountPath"),
    ),
    (
        "io.k8s.api.core.v1.Container",
        "volumeDevices",
        "merge",
        Some("devicePath"),
    ),
    (
        "io.k8s.api.core.v1.EphemeralContainer",
        "ports",
        "merge",
        Some("containerPort"),
    ),
    (
        "io.k8s.api.core.v1.EphemeralContainer",
        "env",
        "merge",
        Some("name"),
    ),
    (
        "io.k8s.api.core.v1.EphemeralContainer",
        "volumeMounts",
        "merge",
        Some("mountPath"),
    ),
    (
        "io.k8s.api.core.v1.EphemeralContainer",
        "volumeDevices",
        "merge",
        Some("devicePath"),
    ),
    (
        "io.k8s.api.core.v1.ContainerStatus",
        "volumeMounts",
        "merge",
        Some("mountPath"),
    ),
    (
        "io.k8s.api.core.v1.ContainerStatus",
        "allocatedResourcesStatus",
        "merge",
        Some("name"),
    ),
    (
        "io.k8s.api.core.v1.PodStatus",
        "conditions",
        "merge",
        Some("type"),
    ),
    (
        "io.k8s.api.core.v1.PodStatus",
        "hostIPs",
        "merge",
        Some("ip"),
    ),
    (
        "io.k8s.api.core.v1.PodStatus",
        "podIPs",
        "merge",
        Some("ip"),
    ),
    (
        "io.k8s.api.core.v1.PodStatus",
        "resourceClaimStatuses",
        "merge,retainKeys",
        Some("name"),
    ),
    (
        "io.k8s.api.core.v1.ServiceSpec",
        "ports",
        "merge",
        Some("port"),
    ),
    (
        "io.k8s.api.core.v1.ServiceStatus",
        "conditions",
        "merge",
        Some("type"),
    ),
    (
        "io.k8s.api.core.v1.ServiceAccount",
        "secrets",
        "merge",
        Some("name"),
    ),
    ("io.k8s.api.core.v1.NodeSpec", "podCIDRs", "merge", None),
    (
        "io.k8s.api.core.v1.NodeStatus",
        "conditions",
        "merge",
        Some("type"),
    ),
    (
        "io.k8s.api.core.v1.NodeStatus",
        "addresses",
        "merge",
        Some("type"),
    ),
    (
        "io.k8s.api.core.v1.NamespaceStatus",
        "conditions",
        "merge",
        Some("type"),
    ),
    (
        "io.k8s.api.apps.v1.DeploymentSpec",
        "strategy",
        "retainKeys",
        None,
    ),
    (
        "io.k8s.api.apps.v1.DeploymentStatus",
        "conditions",
        "merge",
        Some("type"),
    ),
    (
        "io.k8s.api.apps.v1.ReplicaSetStatus",
        "conditions",
        "merge",
        Some("type"),
    ),
    (
        "io.k8s.api.apps.v1.DaemonSetStatus",
        "conditions",
        "merge",
        Some("type"),
    ),
    (
        "io.k8s.api.apps.v1.StatefulSetStatus",
        "conditions",
        "merge",
        Some("type"),
    ),
    (
        "io.k8s.api.batch.v1.JobStatus",
        "conditions",
        "merge",
        Some("type"),
    ),
];

fn add_patch_extensions(schemas: &mut Map<String, Value>) {
    for &(definition, field, strategy, key) in PATCH_META {
        let Some(property) = schemas
            .get_mut(definition)
            .and_then(|d| d.get_mut("properties"))
            .and_then(|p| p.get_mut(field))
            .and_then(Value::as_object_mut)
        else {
            continue;
        };
        property.insert("x-kubernetes-patch-strategy".into(), json!(strategy));
        if let Some(key) = key {
            property.insert("x-kubernetes-patch-merge-key".into(), json!(key));
        }
    }
}

/// `CoreV1`, `AppsV1`, `CoordinationV1`: the group-version part of
/// Kubernetes' operation ids.
fn operation_group(group: &str, version: &str) -> String {
    let base = if group.is_empty() {
        "core"
    } else {
        group.split('.').next().unwrap_or(group)
    };
    format!("{}{}", upper_first(base), upper_first(version))
}

fn upper_first(s: &str) -> String {
    let mut chars = s.chars();
    match chars.next() {
        Some(c) => c.to_uppercase().chain(chars).collect(),
        None => String::new(),
    }
}

fn tag(group: &str, version: &str) -> String {
    let base = if group.is_empty() {
        "core"
    } else {
        group.split('.').next().unwrap_or(group)
    };
    format!("{base}_{version}")
}

fn query(name: &str, kind: &str, description: &str) -> Value {
    let schema = if kind == "string" {
        json!({"type": "string", "uniqueItems": true})
    } else {
        json!({"type": kind, "uniqueItems": true})
    };
    json!({ "name": name, "in": "query", "description": description, "schema": schema })
}

fn path_param(name: &str, description: &str) -> Value {
    json!({ "name": name, "in": "path", "description": description, "required": true, "schema": {"type": "string", "uniqueItems": true} })
}

fn p_dry_run() -> Value {
    query(
        "dryRun",
        "string",
        "When present, the request is processed but nothing is persisted. The only valid value is All.",
    )
}
fn p_field_manager() -> Value {
    query(
        "fieldManager",
        "string",
        "Name of the actor making the change, recorded in managedFields.",
    )
}
fn p_field_validation() -> Value {
    query(
        "fieldValidation",
        "string",
        "How to treat fields the schema does not know or duplicated fields: Ignore drops them, Warn drops them with a warning (the default), Strict rejects the request.",
    )
}
fn p_force() -> Value {
    query(
        "force",
        "boolean",
        "Server-side apply only: take ownership of fields other managers own instead of failing with a conflict.",
    )
}
fn p_pretty() -> Value {
    query("pretty", "string", "If 'true', the output is indented.")
}

fn list_params() -> Vec<Value> {
    vec![
        query(
            "allowWatchBookmarks",
            "boolean",
            "Ask for BOOKMARK events in a watch.",
        ),
        query(
            "continue",
            "string",
            "Token from a previous page of a limited list.",
        ),
        query(
            "fieldSelector",
            "string",
            "Restrict the answer to objects whose fields match.",
        ),
        query(
            "labelSelector",
            "string",
            "Restrict the answer to objects whose labels match.",
        ),
        query(
            "limit",
            "integer",
            "Largest number of objects to return in one page.",
        ),
        query(
            "resourceVersion",
            "string",
            "Which version of the collection to read or watch from.",
        ),
        query(
            "resourceVersionMatch",
            "string",
            "How resourceVersion is compared: Exact or NotOlderThan.",
        ),
        query(
            "sendInitialEvents",
            "boolean",
            "For a watch: start with synthetic ADDED events for the current state, then a bookmark.",
        ),
        query(
            "timeoutSeconds",
            "integer",
            "Time limit for a list or watch call.",
        ),
        query("watch", "boolean", "Watch for changes instead of listing."),
    ]
}

fn delete_params(collection: bool) -> Vec<Value> {
    let mut params = vec![
        p_dry_run(),
        query(
            "gracePeriodSeconds",
            "integer",
            "Seconds before the object is deleted; zero means immediately.",
        ),
        query(
            "ignoreStoreReadErrorWithClusterBreakingPotential",
            "boolean",
            "Delete an object that cannot be read back from storage.",
        ),
        query(
            "orphanDependents",
            "boolean",
            "Deprecated: use propagationPolicy.",
        ),
        query(
            "propagationPolicy",
            "string",
            "Garbage collection of dependents: Orphan, Background or Foreground.",
        ),
    ];
    if collection {
        params.extend(
            list_params()
                .into_iter()
                .filter(|p| !matches!(p["name"].as_str(), Some("allowWatchBookmarks" | "watch"))),
        );
    }
    params
}

fn json_content(schema: Value) -> Value {
    json!({ "application/json": { "schema": schema } })
}

fn responses(codes: &[&str], schema: &Value) -> Value {
    let mut out = Map::new();
    for code in codes {
        let description = match *code {
            "201" => "Created",
            "202" => "Accepted",
            _ => "OK",
        };
        out.insert(
            (*code).to_string(),
            json!({ "description": description, "content": json_content(schema.clone()) }),
        );
    }
    out.insert("401".into(), json!({ "description": "Unauthorized" }));
    Value::Object(out)
}

/// One operation; `action` is Kubernetes' `x-kubernetes-action`.
struct Op<'a> {
    action: &'a str,
    id: String,
    description: String,
    params: Vec<Value>,
    body: Option<Value>,
    responses: Value,
    gvk: Value,
    tag: String,
}

impl Op<'_> {
    fn into_value(self) -> Value {
        let mut op = json!({
            "tags": [self.tag],
            "description": self.description,
            "operationId": self.id,
            "responses": self.responses,
            "x-kubernetes-action": self.action,
            "x-kubernetes-group-version-kind": self.gvk,
        });
        if !self.params.is_empty() {
            op["parameters"] = Value::Array(self.params);
        }
        if let Some(body) = self.body {
            op["requestBody"] = body;
        }
        op
    }
}

fn add_paths(paths: &mut Map<String, Value>, r: &ResourceType) {
    let prefix = format!("/{}", group_version_path(r.group, r.version));
    let og = operation_group(r.group, r.version);
    let tag = tag(r.group, r.version);
    let kind_gvk = gvk(r.group, r.version, r.kind);
    let kind_ref = schema_ref(&r.schema_name());
    let list_ref = schema_ref(&list_schema_name(r));
    let status_ref = schema_ref("io.k8s.apimachinery.pkg.apis.meta.v1.Status");
    let delete_body = json!({ "content": json_content(schema_ref("io.k8s.apimachinery.pkg.apis.meta.v1.DeleteOptions")) });
    let scope = if r.namespaced { "Namespaced" } else { "" };
    let name_param = path_param("name", &format!("name of the {}", r.kind));
    let ns_param = path_param(
        "namespace",
        "object name and auth scope, such as for teams and projects",
    );
    let scoped_params = |with_name: bool| {
        let mut params = Vec::new();
        if with_name {
            params.push(name_param.clone());
        }
        if r.namespaced {
            params.push(ns_param.clone());
        }
        params.push(p_pretty());
        params
    };
    let op = |action: &'static str, id: String, description: String| Op {
        action,
        id,
        description,
        params: Vec::new(),
        body: None,
        responses: Value::Null,
        gvk: kind_gvk.clone(),
        tag: tag.clone(),
    };
    let collection = if r.namespaced {
        format!("{prefix}/namespaces/{{namespace}}/{}", r.plural)
    } else {
        format!("{prefix}/{}", r.plural)
    };
    let item = format!("{collection}/{{name}}");
    let write_params = || vec![p_dry_run(), p_field_manager(), p_field_validation()];
    let patch_params = || {
        vec![
            p_dry_run(),
            p_field_manager(),
            p_field_validation(),
            p_force(),
        ]
    };
    let object_body =
        |schema: &Value| json!({ "content": { "*/*": { "schema": schema } }, "required": true });
    let patch_body = || {
        let mut content = Map::new();
        for t in PATCH_TYPES {
            content.insert(
                (*t).to_string(),
                json!({ "schema": schema_ref("io.k8s.apimachinery.pkg.apis.meta.v1.Patch") }),
            );
        }
        json!({ "content": content, "required": true })
    };

    if r.namespaced {
        let mut list = op(
            "list",
            format!("list{og}{}ForAllNamespaces", r.kind),
            format!("list or watch objects of kind {}", r.kind),
        );
        list.params = list_params();
        list.responses = responses(&["200"], &list_ref);
        paths.insert(
            format!("{prefix}/{}", r.plural),
            json!({ "get": list.into_value(), "parameters": [p_pretty()] }),
        );
    }

    let mut list = op(
        "list",
        format!("list{og}{scope}{}", r.kind),
        format!("list or watch objects of kind {}", r.kind),
    );
    list.params = list_params();
    list.responses = responses(&["200"], &list_ref);
    let mut create = op(
        "post",
        format!("create{og}{scope}{}", r.kind),
        format!("create a {}", r.kind),
    );
    create.params = write_params();
    create.body = Some(object_body(&kind_ref));
    create.responses = responses(&["200", "201", "202"], &kind_ref);
    let mut delete_all = op(
        "deletecollection",
        format!("delete{og}Collection{scope}{}", r.kind),
        format!("delete collection of {}", r.kind),
    );
    delete_all.params = delete_params(true);
    delete_all.body = Some(delete_body.clone());
    delete_all.responses = responses(&["200"], &status_ref);
    paths.insert(
        collection,
        json!({
            "get": list.into_value(),
            "post": create.into_value(),
            "delete": delete_all.into_value(),
            "parameters": scoped_params(false),
        }),
    );

    let mut read = op(
        "get",
        format!("read{og}{scope}{}", r.kind),
        format!("read the specified {}", r.kind),
    );
    read.responses = responses(&["200"], &kind_ref);
    let mut replace = op(
        "put",
        format!("replace{og}{scope}{}", r.kind),
        format!("replace the specified {}", r.kind),
    );
    replace.params = write_params();
    replace.body = Some(object_body(&kind_ref));
    replace.responses = responses(&["200", "201"], &kind_ref);
    let mut patch = op(
        "patch",
        format!("patch{og}{scope}{}", r.kind),
        format!("partially update the specified {}", r.kind),
    );
    patch.params = patch_params();
    patch.body = Some(patch_body());
    patch.responses = responses(&["200", "201"], &kind_ref);
    let mut delete = op(
        "delete",
        format!("delete{og}{scope}{}", r.kind),
        format!("delete a {}", r.kind),
    );
    delete.params = delete_params(false);
    delete.body = Some(delete_body);
    delete.responses = responses(&["200", "202"], &status_ref);
    paths.insert(
        item.clone(),
        json!({
            "get": read.into_value(),
            "put": replace.into_value(),
            "patch": patch.into_value(),
            "delete": delete.into_value(),
            "parameters": scoped_params(true),
        }),
    );

    for &sub in r.subresources {
        let suffix = upper_first(sub.as_str());
        let path = format!("{item}/{}", sub.as_str());
        let entry = match sub {
            Subresource::Status | Subresource::Scale => {
                let (schema, sub_gvk) = if sub == Subresource::Scale {
                    (
                        schema_ref("io.k8s.api.autoscaling.v1.Scale"),
                        gvk("autoscaling", "v1", "Scale"),
                    )
                } else {
                    (kind_ref.clone(), kind_gvk.clone())
                };
                let what = format!("{} of the specified {}", sub.as_str(), r.kind);
                let mut read = op(
                    "get",
                    format!("read{og}{scope}{}{suffix}", r.kind),
                    format!("read {what}"),
                );
                read.responses = responses(&["200"], &schema);
                read.gvk = sub_gvk.clone();
                let mut replace = op(
                    "put",
                    format!("replace{og}{scope}{}{suffix}", r.kind),
                    format!("replace {what}"),
                );
                replace.params = write_params();
                replace.body = Some(object_body(&schema));
                replace.responses = responses(&["200", "201"], &schema);
                replace.gvk = sub_gvk.clone();
                let mut patch = op(
                    "patch",
                    format!("patch{og}{scope}{}{suffix}", r.kind),
                    format!("partially update {what}"),
                );
                patch.params = patch_params();
                patch.body = Some(patch_body());
                patch.responses = responses(&["200", "201"], &schema);
                patch.gvk = sub_gvk;
                json!({
                    "get": read.into_value(),
                    "put": replace.into_value(),
                    "patch": patch.into_value(),
                    "parameters": scoped_params(true),
                })
            }
            Subresource::Finalize => {
                let mut replace = op(
                    "put",
                    format!("replace{og}{scope}{}{suffix}", r.kind),
                    format!("replace finalize of the specified {}", r.kind),
                );
                replace.params = write_params();
                replace.body = Some(object_body(&kind_ref));
                replace.responses = responses(&["200", "201"], &kind_ref);
                replace.gvk = kind_gvk.clone();
                json!({ "put": replace.into_value(), "parameters": scoped_params(true) })
            }
            Subresource::Binding => {
                let binding = schema_ref("io.k8s.api.core.v1.Binding");
                let mut create = op(
                    "post",
                    format!("create{og}{scope}{}{suffix}", r.kind),
                    format!("create binding of a {}", r.kind),
                );
                create.params = write_params();
                create.body = Some(object_body(&binding));
                create.responses = responses(&["200", "201", "202"], &binding);
                create.gvk = gvk("", "v1", "Binding");
                json!({ "post": create.into_value(), "parameters": scoped_params(true) })
            }
            Subresource::Log => {
                let mut read = op(
                    "get",
                    format!("read{og}{scope}{}{suffix}", r.kind),
                    format!("read log of the specified {}", r.kind),
                );
                read.params = vec![
                    query(
                        "container",
                        "string",
                        "The container to read logs from; may be omitted when the pod has one container.",
                    ),
                    query("follow", "boolean", "Keep streaming the log as it grows."),
                    query(
                        "insecureSkipTLSVerifyBackend",
                        "boolean",
                        "Do not verify the serving certificate of the kubelet.",
                    ),
                    query("limitBytes", "integer", "Stop after this many bytes."),
                    query(
                        "previous",
                        "boolean",
                        "Read the log of the previous, terminated container instance.",
                    ),
                    query(
                        "sinceSeconds",
                        "integer",
                        "Only lines newer than this many seconds.",
                    ),
                    query(
                        "stream",
                        "string",
                        "Which stream to return: All, Stdout or Stderr.",
                    ),
                    query(
                        "tailLines",
                        "integer",
                        "Only this many lines from the end of the log.",
                    ),
                    query(
                        "timestamps",
                        "boolean",
                        "Prefix every line with an RFC3339 timestamp.",
                    ),
                ];
                read.responses = json!({
                    "200": { "description": "OK", "content": { "text/plain": { "schema": { "type": "string" } } } },
                    "401": { "description": "Unauthorized" },
                });
                json!({ "get": read.into_value(), "parameters": scoped_params(true) })
            }
        };
        paths.insert(path, entry);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn doc(group: &str, version: &str) -> Arc<Value> {
        v3_group_version(group, version).expect("served group-version")
    }

    /// The definition a property points at, through `$ref` or a
    /// single-element `allOf`, as kubectl resolves it.
    fn target<'a>(doc: &'a Value, property: &Value) -> &'a Value {
        let reference = property
            .get("$ref")
            .or_else(|| {
                property
                    .get("allOf")
                    .and_then(|a| a.get(0))
                    .and_then(|a| a.get("$ref"))
            })
            .and_then(Value::as_str)
            .unwrap_or_else(|| panic!("no reference in {property}"));
        let name = reference
            .strip_prefix(REF_PREFIX)
            .expect("components reference");
        &doc["components"]["schemas"][name]
    }

    #[test]
    fn root_lists_every_group_version_with_a_stable_hash() {
        let root = v3_root();
        let paths = root["paths"].as_object().unwrap();
        assert_eq!(paths.len(), group_versions().len());
        let url = paths["apis/apps/v1"]["serverRelativeURL"].as_str().unwrap();
        assert!(url.starts_with("/openapi/v3/apis/apps/v1?hash="), "{url}");
        assert_eq!(root, v3_root());
        assert!(url.ends_with(v3_group_version_hash("apps", "v1").unwrap()));
        assert!(paths.contains_key("api/v1"));
        assert!(v3_group_version("apps", "v2").is_none());
    }

    #[test]
    fn explain_chain_deployment_spec_strategy_resolves() {
        let d = doc("apps", "v1");
        let deployment = &d["components"]["schemas"]["io.k8s.api.apps.v1.Deployment"];
        assert_eq!(
            deployment["x-kubernetes-group-version-kind"],
            json!([{"group": "apps", "kind": "Deployment", "version": "v1"}])
        );
        let spec = target(&d, &deployment["properties"]["spec"]);
        assert!(
            spec["description"]
                .as_str()
                .unwrap()
                .contains("DeploymentSpec")
        );
        let strategy_prop = &spec["properties"]["strategy"];
        assert_eq!(strategy_prop["x-kubernetes-patch-strategy"], "retainKeys");
        let strategy = target(&d, strategy_prop);
        assert!(strategy["properties"]["rollingUpdate"].is_object());
        assert_eq!(strategy["properties"]["type"]["type"], "string");
    }

    fn walk_refs<'a>(v: &'a Value, out: &mut Vec<&'a str>) {
        match v {
            Value::Object(m) => {
                for (k, child) in m {
                    if k == "$ref" {
                        out.push(child.as_str().unwrap_or("<not a string>"));
                    } else {
                        walk_refs(child, out);
                    }
                }
            }
            Value::Array(a) => a.iter().for_each(|c| walk_refs(c, out)),
            _ => {}
        }
    }

    #[test]
    fn every_ref_in_every_document_resolves() {
        for (g, v) in group_versions() {
            let d = doc(g, v);
            let schemas = d["components"]["schemas"].as_object().unwrap();
            let mut refs = Vec::new();
            walk_refs(&d, &mut refs);
            assert!(!refs.is_empty());
            for r in refs {
                let name = r
                    .strip_prefix(REF_PREFIX)
                    .unwrap_or_else(|| panic!("{g}/{v}: odd ref {r}"));
                assert!(schemas.contains_key(name), "{g}/{v}: dangling {r}");
            }
            // Nothing JSON-Schema-2020 that OpenAPI 3.0 readers reject.
            let text = serde_json::to_string(&*d).unwrap();
            assert!(
                !text.contains("\"$defs\"") && !text.contains("\"$schema\""),
                "{g}/{v}"
            );
        }
    }

    #[test]
    fn every_kind_has_a_gvk_and_a_patch_operation_with_field_validation() {
        for r in resources() {
            let d = doc(r.group, r.version);
            let schema = &d["components"]["schemas"][&r.schema_name()];
            assert_eq!(
                schema["x-kubernetes-group-version-kind"][0]["kind"], r.kind,
                "{r:?}"
            );
            let want = gvk(r.group, r.version, r.kind);
            let patches: Vec<&Value> = d["paths"]
                .as_object()
                .unwrap()
                .values()
                .filter_map(|p| p.get("patch"))
                .filter(|op| op["x-kubernetes-group-version-kind"] == want)
                .collect();
            assert!(!patches.is_empty(), "{r:?}");
            for op in patches {
                let params = op["parameters"].as_array().unwrap();
                assert!(
                    params
                        .iter()
                        .any(|p| p["name"] == "fieldValidation" && p["in"] == "query")
                );
                assert!(
                    op["requestBody"]["content"]
                        .get("application/strategic-merge-patch+json")
                        .is_some()
                );
            }
        }
    }

    #[test]
    fn merge_keys_are_on_the_list_properties() {
        let d = doc("", "v1");
        let s = &d["components"]["schemas"];
        assert_eq!(
            s["io.k8s.api.core.v1.PodSpec"]["properties"]["containers"]["x-kubernetes-patch-merge-key"],
            "name"
        );
        assert_eq!(
            s["io.k8s.api.core.v1.Container"]["properties"]["ports"]["x-kubernetes-patch-merge-key"],
            "containerPort"
        );
        assert_eq!(
            s["io.k8s.apimachinery.pkg.apis.meta.v1.ObjectMeta"]["properties"]["finalizers"]["x-kubernetes-patch-strategy"],
            "merge"
        );
        assert!(
            s["io.k8s.api.core.v1.PodList"]["properties"]["items"]["items"]["$ref"].is_string()
        );
        assert!(d["paths"]["/api/v1/namespaces/{namespace}/pods/{name}/log"]["get"].is_object());
        assert!(d["paths"]["/api/v1/nodes/{name}/status"]["patch"].is_object());
    }
}
