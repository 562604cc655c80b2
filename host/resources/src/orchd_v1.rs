//! orchd's own API group, `orchd.dev/v1`: the kinds that describe plugins.
//!
//! * `Plugin` (cluster-scoped): one policy plugin by name: its world, the
//!   revisions installed so far (each a component digest), the revision
//!   that should run, its limits, and in `status` what actually runs
//!   (active revision, restarts, last error). `orchd plugin install` adds a
//!   revision, `orchd plugin rollback` points `spec.revision` back; the
//!   plugin host does the rest, so kubectl edits work the same way.
//! * `PluginComponent` (cluster-scoped): the bytes of one component, named
//!   by their digest (`sha256-<hex>`), so every control-plane replica loads
//!   the same code. Immutable by construction: a name is a digest, and the
//!   API checks that the bytes hash to it. A component larger than
//!   [`COMPONENT_CHUNK_BYTES`] (Python and JavaScript ones are 12-24 MB;
//!   etcd refuses requests over 1.5 MiB) is stored in chunks: objects
//!   `sha256-<hex>-0`, `-1`, ... of at most that many bytes each, written
//!   first, then the head `sha256-<hex>`, which lists the chunks' digests
//!   and holds no data. Whoever loads it checks each chunk and the whole
//!   against the digests; whoever deletes the head deletes its chunks.
//!
//! Both are plain serde types with schemars schemas, so they go through the
//! same validation, defaults, OpenAPI and Table code as Kubernetes' kinds.

pub use k8s_openapi::apimachinery::pkg::apis::meta::v1::{LabelSelector, ObjectMeta};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

/// The API group.
pub const GROUP: &str = "orchd.dev";

/// Prefix of a `PluginComponent` name; the lower-case hex digest follows.
pub const COMPONENT_NAME_PREFIX: &str = "sha256-";

/// Largest component stored in one object, and the size of each chunk of
/// a larger one. Base64 makes a chunk ~1.4 MB of JSON: under etcd's default
/// 1.5 MiB request limit (`--max-request-bytes`) with room for the
/// object's metadata.
pub const COMPONENT_CHUNK_BYTES: usize = 1 << 20;

/// A policy plugin.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
#[schemars(rename = "dev.orchd.v1.Plugin")]
pub struct Plugin {
    /// `orchd.dev/v1`.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub api_version: String,
    /// `Plugin`.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub kind: String,
    /// Standard object metadata.
    #[serde(default)]
    pub metadata: ObjectMeta,
    /// What should run.
    #[serde(default)]
    pub spec: PluginSpec,
    /// What runs, as the plugin host reports it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub status: Option<PluginStatus>,
}

/// What should run.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct PluginSpec {
    /// The world the component implements: `scheduler`, `controller` or
    /// `admission`. Checked against the component's exports on load.
    #[serde(default)]
    pub world: String,
    /// The revision that should run (one of `revisions`).
    #[serde(default)]
    pub revision: i64,
    /// Every revision installed, oldest first.
    #[serde(default)]
    pub revisions: Vec<PluginRevision>,
    /// Per-instance memory cap and per-call deadline.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub limits: Option<PluginLimits>,
    /// What the plugin may read and write through the host (controllers);
    /// nothing when absent. Checked on every host call.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub capabilities: Option<PluginCapabilities>,
    /// Configuration handed to the plugin at start (a controller's `setup`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub config: Option<String>,
    /// For `world: admission`: which API writes it reviews and how, in the
    /// style of Kubernetes' admissionregistration webhooks.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub admission: Option<AdmissionSpec>,
}

/// How an admission plugin takes part in the API's write path.
///
/// The API calls the mutating plugins first, one after the other in
/// ascending `order` (then by Plugin name), each seeing the object as the
/// previous one patched it; then it validates the object's schema; then it
/// calls the validating plugins (same order). The first denial ends the
/// request.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct AdmissionSpec {
    /// `Mutating` (may answer a JSON patch) or `Validating` (the default;
    /// a patch it answers is refused as a failure).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub r#type: Option<String>,
    /// Position in the chain among plugins of the same type: lower first,
    /// ties broken by Plugin name. Default 0.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub order: Option<i32>,
    /// What a call that fails (trap, deadline, bad answer) means:
    /// `Fail` (the default, as in Kubernetes: the request is refused) or
    /// `Ignore` (the request goes on as if the plugin had allowed it).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub failure_policy: Option<String>,
    /// Deadline of one review, 1 to 30 seconds; default 1.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub timeout_seconds: Option<i32>,
    /// The writes reviewed: any rule matching is enough. Without rules the
    /// plugin reviews nothing (as a Kubernetes webhook without rules).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub rules: Vec<AdmissionRule>,
    /// Only objects in namespaces whose labels match (cluster-scoped
    /// objects always match, as in Kubernetes).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub namespace_selector: Option<LabelSelector>,
    /// Only objects whose labels (new or old object) match.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub object_selector: Option<LabelSelector>,
}

/// One rule of an admission plugin: operations on resources.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct AdmissionRule {
    /// `CREATE`, `UPDATE`, `DELETE` or `*`.
    #[serde(default)]
    pub operations: Vec<String>,
    /// API groups (`""` for the core group, `apps`, `*`).
    #[serde(default)]
    pub api_groups: Vec<String>,
    /// Resources (`pods`, `deployments`, `pods/status`, `*`, `*/status`).
    /// A plain resource does not match its subresources.
    #[serde(default)]
    pub resources: Vec<String>,
}

/// Resources a plugin may touch, as the store names them: group-qualified
/// plurals (`pods`, `deployments.apps`), or `*` for every resource.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct PluginCapabilities {
    /// May get, list and watch these.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub read: Vec<String>,
    /// May create, update, patch and delete these (and their status).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub write: Vec<String>,
    /// Host interfaces beyond object access it may call (node policies):
    /// `runtime` (the node's pods and their use), `cgroups` (their
    /// cgroups), `network` (their network).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub host_calls: Vec<String>,
}

/// One installed revision.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct PluginRevision {
    /// 1, 2, ... in order of installation.
    pub revision: i64,
    /// `sha256:<hex>` of the component; its bytes are the
    /// `PluginComponent` named `sha256-<hex>`.
    pub digest: String,
    /// Where it was installed from (a file name), for people.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub source: Option<String>,
    /// When it was installed (RFC 3339).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub installed_at: Option<String>,
}

/// Limits of a plugin's instances.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct PluginLimits {
    /// Linear memory cap per instance, in MiB.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub memory_mib: Option<u32>,
    /// Deadline of one call into the plugin, in milliseconds.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub call_timeout_ms: Option<u32>,
}

/// What runs.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct PluginStatus {
    /// `Pending` (not loaded yet), `Active`, `RolledBack` (the wanted
    /// revision failed; an older one runs) or `Failed` (nothing runs).
    #[serde(default)]
    pub phase: String,
    /// The `metadata.generation` this status answers.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub observed_generation: Option<i64>,
    /// The revision running now.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub active_revision: Option<i64>,
    /// Its digest.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub active_digest: Option<String>,
    /// For schedulers: the `spec.schedulerName` served.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub scheduler_name: Option<String>,
    /// Instances discarded after a failure (trap, deadline, memory) and
    /// started anew, since the active revision took over.
    #[serde(default)]
    pub restarts: i64,
    /// The last failure (load, trap, deadline, memory), in one line.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_error: Option<String>,
    /// When it happened (RFC 3339).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_error_time: Option<String>,
    /// Revisions refused (failed to load, or failed their first calls) and
    /// not tried again until `spec.revision` names them anew.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub failed_revisions: Vec<i64>,
    /// The last swap: milliseconds from the plugin host seeing the new
    /// revision to that revision's first decision.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub swap_millis: Option<i64>,
    /// A one-line account of the last change, for `orchd plugin list`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub message: Option<String>,
}

/// The bytes of one component, named by their digest.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
#[schemars(rename = "dev.orchd.v1.PluginComponent")]
pub struct PluginComponent {
    /// `orchd.dev/v1`.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub api_version: String,
    /// `PluginComponent`.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub kind: String,
    /// Standard object metadata; the name is `sha256-<hex>`, or
    /// `sha256-<hex>-<index>` for a chunk of a component stored in chunks.
    #[serde(default)]
    pub metadata: ObjectMeta,
    /// The component's bytes (or this chunk's), base64-encoded (standard
    /// alphabet, padded). Empty on the head of a component in chunks.
    #[serde(default)]
    pub data: String,
    /// For a component stored in chunks: the digest (`sha256:<hex>`) of
    /// each chunk, in order; chunk `i` is the object named `<name>-<i>`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub chunks: Vec<String>,
    /// For a component stored in chunks: its size in bytes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub size: Option<u64>,
}

/// The name of chunk `index` of the component named `component`.
pub fn chunk_name(component: &str, index: usize) -> String {
    format!("{component}-{index}")
}

/// Whether `name` names a chunk (`sha256-<64 hex>-<index>`), and which.
pub fn parse_chunk_name(name: &str) -> Option<(&str, usize)> {
    let (component, index) = name.rsplit_once('-')?;
    let hex = component.strip_prefix(COMPONENT_NAME_PREFIX)?;
    let is_hex = hex.len() == 64 && hex.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'));
    let is_index = !index.is_empty()
        && index.bytes().all(|b| b.is_ascii_digit())
        && (index == "0" || !index.starts_with('0'));
    (is_hex && is_index)
        .then(|| Some((component, index.parse().ok()?)))
        .flatten()
}

/// The `PluginComponent` objects that store `bytes`, in the order to
/// write them: the chunks (none for a component of at most
/// [`COMPONENT_CHUNK_BYTES`]), then the head named by the digest, so a
/// head that exists always has its chunks.
pub fn component_objects(bytes: &[u8]) -> (Vec<serde_json::Value>, serde_json::Value) {
    use base64::Engine as _;
    let b64 = |b: &[u8]| base64::engine::general_purpose::STANDARD.encode(b);
    let name = component_name(&format!("sha256:{}", sha256_hex(bytes)));
    let object = |name: &str| {
        serde_json::json!({
            "apiVersion": "orchd.dev/v1",
            "kind": "PluginComponent",
            "metadata": {"name": name},
        })
    };
    if bytes.len() <= COMPONENT_CHUNK_BYTES {
        let mut head = object(&name);
        head["data"] = b64(bytes).into();
        return (Vec::new(), head);
    }
    let mut chunks = Vec::new();
    let mut digests = Vec::new();
    for (i, part) in bytes.chunks(COMPONENT_CHUNK_BYTES).enumerate() {
        let mut chunk = object(&chunk_name(&name, i));
        chunk["data"] = b64(part).into();
        chunks.push(chunk);
        digests.push(format!("sha256:{}", sha256_hex(part)));
    }
    let mut head = object(&name);
    head["chunks"] = digests.into();
    head["size"] = (bytes.len() as u64).into();
    (chunks, head)
}

/// The `PluginComponent` name holding the bytes of `digest`
/// (`sha256:<hex>` → `sha256-<hex>`).
pub fn component_name(digest: &str) -> String {
    match digest.strip_prefix("sha256:") {
        Some(hex) => format!("{COMPONENT_NAME_PREFIX}{hex}"),
        None => digest.replace(':', "-"),
    }
}

/// Lower-case hex sha256 of `bytes`.
pub fn sha256_hex(bytes: &[u8]) -> String {
    use sha2::Digest;
    let digest = sha2::Sha256::digest(bytes);
    let mut out = String::with_capacity(64);
    for b in digest {
        out.push_str(&format!("{b:02x}"));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn large_components_are_chunks_then_a_head() {
        use base64::Engine as _;
        let decode = |v: &serde_json::Value| {
            base64::engine::general_purpose::STANDARD
                .decode(v["data"].as_str().unwrap())
                .unwrap()
        };
        let small = vec![7u8; COMPONENT_CHUNK_BYTES];
        let (chunks, head) = component_objects(&small);
        assert!(chunks.is_empty());
        assert_eq!(decode(&head), small);
        assert!(head.get("chunks").is_none());

        let big: Vec<u8> = (0..2 * COMPONENT_CHUNK_BYTES + 5)
            .map(|i| (i % 251) as u8)
            .collect();
        let (chunks, head) = component_objects(&big);
        let name = format!("sha256-{}", sha256_hex(&big));
        assert_eq!(head["metadata"]["name"], name.as_str());
        assert!(head.get("data").is_none());
        assert_eq!(head["size"], big.len() as u64);
        assert_eq!(chunks.len(), 3);
        let mut joined = Vec::new();
        for (i, chunk) in chunks.iter().enumerate() {
            assert_eq!(chunk["metadata"]["name"], chunk_name(&name, i).as_str());
            let part = decode(chunk);
            assert!(part.len() <= COMPONENT_CHUNK_BYTES);
            assert_eq!(
                head["chunks"][i],
                format!("sha256:{}", sha256_hex(&part)).as_str()
            );
            joined.extend(part);
        }
        assert_eq!(joined, big);
        // Under etcd's 1.5 MiB request limit, as JSON.
        assert!(serde_json::to_vec(&chunks[0]).unwrap().len() < 1_500_000);
    }

    #[test]
    fn chunk_names_parse() {
        let hex = sha256_hex(b"x");
        let head = format!("sha256-{hex}");
        assert_eq!(
            parse_chunk_name(&format!("{head}-12")),
            Some((head.as_str(), 12))
        );
        assert_eq!(
            parse_chunk_name(&format!("{head}-0")),
            Some((head.as_str(), 0))
        );
        assert_eq!(parse_chunk_name(&head), None);
        assert_eq!(parse_chunk_name(&format!("{head}-01")), None);
        assert_eq!(parse_chunk_name(&format!("{head}-")), None);
        assert_eq!(parse_chunk_name("sha256-abc-1"), None);
    }

    #[test]
    fn component_names_follow_digests() {
        let hex = sha256_hex(b"abc");
        assert_eq!(
            hex,
            "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
        );
        assert_eq!(
            component_name(&format!("sha256:{hex}")),
            format!("sha256-{hex}")
        );
    }
}
