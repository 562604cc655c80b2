//! The table of served resources.

use k8s_openapi::api::{apps, authorization, batch, coordination, core, node};
use schemars::{JsonSchema, Schema, SchemaGenerator};
use serde::{Serialize, de::DeserializeOwned};
use serde_json::Value;

use crate::orchd_v1;

/// A subresource served under `/{plural}/{name}/{subresource}`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Subresource {
    /// `status`: writes touch only `.status`.
    Status,
    /// `scale`: an `autoscaling/v1` Scale view of `.spec.replicas`.
    Scale,
    /// `binding`: assigns a pod to a node (pods only).
    Binding,
    /// `log`: container logs as text (pods only).
    Log,
    /// `finalize`: writes only `spec.finalizers` (namespaces only), the
    /// way the namespace controller releases a namespace it has emptied.
    Finalize,
}

impl Subresource {
    /// The path segment: `status`, `scale`, `binding`, `log`, `finalize`.
    pub fn as_str(self) -> &'static str {
        match self {
            Subresource::Status => "status",
            Subresource::Scale => "scale",
            Subresource::Binding => "binding",
            Subresource::Log => "log",
            Subresource::Finalize => "finalize",
        }
    }
}

/// One served resource and its Kubernetes type.
#[derive(Clone, Copy)]
pub struct ResourceType {
    /// API group; `""` for the core group.
    pub group: &'static str,
    /// API version within the group.
    pub version: &'static str,
    /// Kind, e.g. `Deployment`.
    pub kind: &'static str,
    /// Plural resource name used in URLs, e.g. `deployments`.
    pub plural: &'static str,
    /// Singular name, e.g. `deployment`.
    pub singular: &'static str,
    /// Namespaced (true) or cluster-scoped.
    pub namespaced: bool,
    /// Short names kubectl resolves, e.g. `deploy`.
    pub short_names: &'static [&'static str],
    /// Categories, e.g. `all` for `kubectl get all`.
    pub categories: &'static [&'static str],
    /// Served subresources.
    pub subresources: &'static [Subresource],
    /// A review (e.g. SelfSubjectAccessReview): only `create`, answered
    /// by the server and never stored.
    pub create_only: bool,
    /// Decodes JSON through the typed definition and encodes it back: the
    /// canonical stored form (unknown fields dropped).
    pub(crate) round_trip: fn(&Value) -> Result<Value, String>,
    /// Adds the type's schema (and every type it refers to) to a generator.
    pub(crate) schema: fn(&mut SchemaGenerator) -> Schema,
    /// The OpenAPI definition name, e.g. `io.k8s.api.apps.v1.Deployment`.
    pub(crate) schema_name: fn() -> String,
}

impl std::fmt::Debug for ResourceType {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "ResourceType({})", self.group_resource())
    }
}

impl ResourceType {
    /// `apiVersion` as written in objects: `v1`, `apps/v1`.
    pub fn api_version(&self) -> String {
        if self.group.is_empty() {
            self.version.to_string()
        } else {
            format!("{}/{}", self.group, self.version)
        }
    }

    /// Group-qualified plural (Kubernetes' GroupResource string):
    /// `pods`, `deployments.apps`. Also the store's resource key.
    pub fn group_resource(&self) -> String {
        if self.group.is_empty() {
            self.plural.to_string()
        } else {
            format!("{}.{}", self.plural, self.group)
        }
    }

    /// Whether the resource serves `sub`.
    pub fn has_subresource(&self, sub: Subresource) -> bool {
        self.subresources.contains(&sub)
    }

    /// The OpenAPI definition name of the kind.
    pub fn schema_name(&self) -> String {
        (self.schema_name)()
    }

    /// Adds the kind's schema to `generator` and returns the reference.
    pub fn add_schema(&self, generator: &mut SchemaGenerator) -> Schema {
        (self.schema)(generator)
    }
}

/// Decodes `value` as `T` and encodes it back: the canonical object.
/// Decoding from the borrowed value, not a copy: a pod's deep copy was a
/// quarter of the round trip, and every create and update makes one.
fn round_trip<T: DeserializeOwned + Serialize>(value: &Value) -> Result<Value, String> {
    let typed: T = serde_path_to_error::deserialize(value).map_err(|e| {
        let path = e.path().to_string();
        let inner = e.into_inner();
        if path == "." {
            inner.to_string()
        } else {
            format!("{path}: {inner}")
        }
    })?;
    serde_json::to_value(typed).map_err(|e| e.to_string())
}

fn schema<T: JsonSchema>(generator: &mut SchemaGenerator) -> Schema {
    generator.subschema_for::<T>()
}

fn schema_name<T: JsonSchema>() -> String {
    T::schema_name().into_owned()
}

macro_rules! resource {
    ($ty:ty, $group:literal, $version:literal, $kind:literal, $plural:literal, $singular:literal,
     namespaced: $ns:literal, short: [$($short:literal),*], categories: [$($cat:literal),*],
     sub: [$($sub:ident),*]) => {
        ResourceType {
            group: $group,
            version: $version,
            kind: $kind,
            plural: $plural,
            singular: $singular,
            namespaced: $ns,
            short_names: &[$($short),*],
            categories: &[$($cat),*],
            subresources: &[$(Subresource::$sub),*],
            create_only: false,
            round_trip: round_trip::<$ty>,
            schema: schema::<$ty>,
            schema_name: schema_name::<$ty>,
        }
    };
}

static RESOURCES: &[ResourceType] = &[
    resource!(core::v1::Namespace, "", "v1", "Namespace", "namespaces", "namespace",
        namespaced: false, short: ["ns"], categories: [], sub: [Status, Finalize]),
    resource!(core::v1::Pod, "", "v1", "Pod", "pods", "pod",
        namespaced: true, short: ["po"], categories: ["all"], sub: [Status, Binding, Log]),
    resource!(core::v1::Node, "", "v1", "Node", "nodes", "node",
        namespaced: false, short: ["no"], categories: [], sub: [Status]),
    resource!(core::v1::Service, "", "v1", "Service", "services", "service",
        namespaced: true, short: ["svc"], categories: ["all"], sub: [Status]),
    resource!(core::v1::Endpoints, "", "v1", "Endpoints", "endpoints", "endpoints",
        namespaced: true, short: ["ep"], categories: [], sub: []),
    resource!(core::v1::Event, "", "v1", "Event", "events", "event",
        namespaced: true, short: ["ev"], categories: [], sub: []),
    resource!(core::v1::ConfigMap, "", "v1", "ConfigMap", "configmaps", "configmap",
        namespaced: true, short: ["cm"], categories: [], sub: []),
    resource!(core::v1::Secret, "", "v1", "Secret", "secrets", "secret",
        namespaced: true, short: [], categories: [], sub: []),
    resource!(core::v1::ServiceAccount, "", "v1", "ServiceAccount", "serviceaccounts", "serviceaccount",
        namespaced: true, short: ["sa"], categories: [], sub: []),
    resource!(apps::v1::Deployment, "apps", "v1", "Deployment", "deployments", "deployment",
        namespaced: true, short: ["deploy"], categories: ["all"], sub: [Status, Scale]),
    resource!(apps::v1::ReplicaSet, "apps", "v1", "ReplicaSet", "replicasets", "replicaset",
        namespaced: true, short: ["rs"], categories: ["all"], sub: [Status, Scale]),
    resource!(apps::v1::DaemonSet, "apps", "v1", "DaemonSet", "daemonsets", "daemonset",
        namespaced: true, short: ["ds"], categories: ["all"], sub: [Status]),
    resource!(apps::v1::StatefulSet, "apps", "v1", "StatefulSet", "statefulsets", "statefulset",
        namespaced: true, short: ["sts"], categories: ["all"], sub: [Status, Scale]),
    resource!(batch::v1::Job, "batch", "v1", "Job", "jobs", "job",
        namespaced: true, short: [], categories: ["all"], sub: [Status]),
    resource!(batch::v1::CronJob, "batch", "v1", "CronJob", "cronjobs", "cronjob",
        namespaced: true, short: ["cj"], categories: ["all"], sub: [Status]),
    resource!(coordination::v1::Lease, "coordination.k8s.io", "v1", "Lease", "leases", "lease",
        namespaced: true, short: [], categories: [], sub: []),
    resource!(node::v1::RuntimeClass, "node.k8s.io", "v1", "RuntimeClass", "runtimeclasses", "runtimeclass",
        namespaced: false, short: [], categories: [], sub: []),
    resource!(orchd_v1::Plugin, "orchd.dev", "v1", "Plugin", "plugins", "plugin",
        namespaced: false, short: ["plg"], categories: [], sub: [Status]),
    resource!(orchd_v1::PluginComponent, "orchd.dev", "v1", "PluginComponent", "plugincomponents", "plugincomponent",
        namespaced: false, short: [], categories: [], sub: []),
    ResourceType {
        create_only: true,
        ..resource!(authorization::v1::SelfSubjectAccessReview, "authorization.k8s.io", "v1",
            "SelfSubjectAccessReview", "selfsubjectaccessreviews", "selfsubjectaccessreview",
            namespaced: false, short: [], categories: [], sub: [])
    },
];

/// Every served resource.
pub fn resources() -> &'static [ResourceType] {
    RESOURCES
}

/// The resource served at `group`/`version`/`plural`.
pub fn find_by_plural(group: &str, version: &str, plural: &str) -> Option<&'static ResourceType> {
    RESOURCES
        .iter()
        .find(|r| r.group == group && r.version == version && r.plural == plural)
}

/// The resource of `apiVersion` + `kind`.
pub fn find_by_kind(api_version: &str, kind: &str) -> Option<&'static ResourceType> {
    RESOURCES
        .iter()
        .find(|r| r.kind == kind && r.api_version() == api_version)
}

/// The served group/versions in discovery order: `("", "v1")` first.
pub fn group_versions() -> Vec<(&'static str, &'static str)> {
    let mut out: Vec<(&str, &str)> = Vec::new();
    for r in RESOURCES {
        if !out.contains(&(r.group, r.version)) {
            out.push((r.group, r.version));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_unique_and_lookups_agree() {
        for r in resources() {
            assert_eq!(
                find_by_plural(r.group, r.version, r.plural).unwrap().kind,
                r.kind
            );
            assert_eq!(
                find_by_kind(&r.api_version(), r.kind).unwrap().plural,
                r.plural
            );
        }
        assert_eq!(
            find_by_kind("apps/v1", "Deployment")
                .unwrap()
                .group_resource(),
            "deployments.apps"
        );
        assert_eq!(group_versions()[0], ("", "v1"));
    }

    #[test]
    fn schema_names_are_the_kubernetes_definition_names() {
        let d = find_by_kind("apps/v1", "Deployment").unwrap();
        assert_eq!(d.schema_name(), "io.k8s.api.apps.v1.Deployment");
    }
}
