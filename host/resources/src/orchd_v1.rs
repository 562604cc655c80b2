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
//!   API checks that the bytes hash to it.
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
    /// Configuration handed to the plugin at start (a controller's `init`).
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
    /// Standard object metadata; the name is `sha256-<hex>`.
    #[serde(default)]
    pub metadata: ObjectMeta,
    /// The component's bytes, base64-encoded (standard alphabet, padded).
    #[serde(default)]
    pub data: String,
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
