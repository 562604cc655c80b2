//! Which fields merge, and how: the facts Kubernetes keeps in its Go struct
//! tags (`patchStrategy`, `patchMergeKey`) and `+listMapKey` markers, written
//! out by field path for the kinds orchd serves.
//!
//! Checked against k8s.io/api core/v1, apps/v1, batch/v1, policy/v1 and
//! k8s.io/apimachinery meta/v1 `types.go`. Some fields one might expect here
//! are atomic in Kubernetes and so replace as a whole: `spec.taints` and
//! `spec.tolerations`, `EndpointSubset` addresses and ports, a container's
//! `resizePolicy`, `envFrom`, `args` and `command`.

/// How a field combines with a patch, where it does not simply replace.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MergeStrategy {
    /// A list of objects merged element by element. The first key is the
    /// strategic-merge `patchMergeKey`; any further keys are the extra
    /// `+listMapKey`s that server-side apply uses to identify an element
    /// (e.g. `protocol` beside `containerPort`).
    ByKey(&'static [&'static str]),
    /// A list of scalars merged as a set (`patchStrategy:"merge"` without a
    /// merge key), such as `metadata.finalizers`.
    Set,
    /// An object replaced as a whole rather than merged
    /// (`patchStrategy:"replace"`).
    ReplaceMap,
}

use MergeStrategy::{ByKey, ReplaceMap, Set};

const NAME: MergeStrategy = ByKey(&["name"]);
const TYPE: MergeStrategy = ByKey(&["type"]);
const IP: MergeStrategy = ByKey(&["ip"]);

/// Fields of a PodSpec, by path relative to the PodSpec.
const POD_SPEC: &[(&[&str], MergeStrategy)] = &[
    (&["containers"], NAME),
    (&["initContainers"], NAME),
    (&["ephemeralContainers"], NAME),
    (&["volumes"], NAME),
    (&["imagePullSecrets"], NAME),
    (&["hostAliases"], IP),
    (
        &["topologySpreadConstraints"],
        ByKey(&["topologyKey", "whenUnsatisfiable"]),
    ),
    (&["schedulingGates"], NAME),
    (&["resourceClaims"], NAME),
    (&["evictionResponders"], NAME),
];

/// The Container fields shared by `containers`, `initContainers` and
/// `ephemeralContainers`, relative to the container.
const CONTAINER: &[(&str, MergeStrategy)] = &[
    ("ports", ByKey(&["containerPort", "protocol"])),
    ("env", NAME),
    ("volumeMounts", ByKey(&["mountPath"])),
    ("volumeDevices", ByKey(&["devicePath"])),
];

const CONTAINER_LISTS: &[&str] = &["containers", "initContainers", "ephemeralContainers"];

/// ObjectMeta fields, relative to a `metadata` object.
const OBJECT_META: &[(&str, MergeStrategy)] =
    &[("finalizers", Set), ("ownerReferences", ByKey(&["uid"]))];

/// Fields that do not belong to a PodSpec or ObjectMeta, per kind, by full path.
fn kind_fields(kind: &str) -> &'static [(&'static [&'static str], MergeStrategy)] {
    if is(kind, "Pod") {
        &[
            (&["status", "podIPs"], IP),
            (&["status", "hostIPs"], IP),
            (&["status", "resourceClaimStatuses"], NAME),
            (
                &["status", "nodeAllocatableResourceClaimStatuses"],
                ByKey(&["resourceClaimName"]),
            ),
        ]
    } else if is(kind, "Node") {
        &[
            (&["spec", "podCIDRs"], Set),
            (&["status", "addresses"], TYPE),
        ]
    } else if is(kind, "Service") {
        &[(&["spec", "ports"], ByKey(&["port", "protocol"]))]
    } else if is(kind, "ServiceAccount") {
        &[(&["secrets"], NAME)]
    } else if is(kind, "PodDisruptionBudget") {
        &[(&["spec", "selector"], ReplaceMap)]
    } else {
        &[]
    }
}

/// Where a kind keeps its PodSpec(s).
fn pod_spec_prefixes(kind: &str) -> &'static [&'static [&'static str]] {
    if is(kind, "Pod") {
        &[&["spec"]]
    } else if is(kind, "PodTemplate") {
        &[&["template", "spec"]]
    } else if is(kind, "CronJob") {
        &[&["spec", "jobTemplate", "spec", "template", "spec"]]
    } else if [
        "Deployment",
        "ReplicaSet",
        "DaemonSet",
        "StatefulSet",
        "Job",
        "ReplicationController",
    ]
    .iter()
    .any(|k| is(kind, k))
    {
        &[&["spec", "template", "spec"]]
    } else {
        &[]
    }
}

/// Where a kind keeps ObjectMeta besides its own `metadata`.
fn nested_meta_prefixes(kind: &str) -> &'static [&'static [&'static str]] {
    if is(kind, "PodTemplate") {
        &[&["template", "metadata"]]
    } else if is(kind, "CronJob") {
        &[
            &["spec", "jobTemplate", "metadata"],
            &["spec", "jobTemplate", "spec", "template", "metadata"],
        ]
    } else if pod_spec_prefixes(kind).is_empty() || is(kind, "Pod") {
        &[]
    } else {
        &[&["spec", "template", "metadata"]]
    }
}

fn is(kind: &str, name: &str) -> bool {
    kind.eq_ignore_ascii_case(name)
}

fn matches<S: AsRef<str>>(path: &[S], want: &[&str]) -> bool {
    path.len() == want.len() && path.iter().zip(want).all(|(a, b)| a.as_ref() == *b)
}

fn strip<'p, S: AsRef<str>>(path: &'p [S], prefix: &[&str]) -> Option<&'p [S]> {
    (path.len() >= prefix.len() && matches(&path[..prefix.len()], prefix))
        .then(|| &path[prefix.len()..])
}

/// The merge strategy of the field at `path` (field names from the object's
/// root; list elements are not counted, so a container's env is
/// `["spec", "containers", "env"]` in a Pod) in an object of `kind`
/// (`"Pod"`, `"Deployment"`, ...; case-insensitive). `None` means the field
/// replaces: every scalar, every object not listed, every atomic list.
///
/// PodSpec fields are found under every kind's pod template, ObjectMeta
/// fields under every `metadata`, and `status.conditions` merges by `type`
/// for every kind, as it does across the built-in APIs.
pub fn merge_strategy<S: AsRef<str>>(kind: &str, path: &[S]) -> Option<MergeStrategy> {
    let meta_field = |rest: &[S]| -> Option<MergeStrategy> {
        match rest {
            [field] => OBJECT_META
                .iter()
                .find(|(name, _)| *name == field.as_ref())
                .map(|(_, s)| *s),
            _ => None,
        }
    };
    if let Some(rest) = strip(path, &["metadata"]) {
        return meta_field(rest);
    }
    for prefix in nested_meta_prefixes(kind) {
        if let Some(rest) = strip(path, prefix) {
            return meta_field(rest);
        }
    }
    for prefix in pod_spec_prefixes(kind) {
        if let Some(rest) = strip(path, prefix) {
            if let Some((_, s)) = POD_SPEC.iter().find(|(p, _)| matches(rest, p)) {
                return Some(*s);
            }
            if let [list, field] = rest
                && CONTAINER_LISTS.contains(&list.as_ref())
            {
                return CONTAINER
                    .iter()
                    .find(|(name, _)| *name == field.as_ref())
                    .map(|(_, s)| *s);
            }
        }
    }
    if let Some((_, s)) = kind_fields(kind).iter().find(|(p, _)| matches(path, p)) {
        return Some(*s);
    }
    if matches(path, &["status", "conditions"]) {
        return Some(TYPE);
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pod_spec_fields_under_each_template() {
        let cases: &[(&str, &[&str])] = &[
            ("Pod", &["spec"]),
            ("Deployment", &["spec", "template", "spec"]),
            ("ReplicaSet", &["spec", "template", "spec"]),
            ("DaemonSet", &["spec", "template", "spec"]),
            ("StatefulSet", &["spec", "template", "spec"]),
            ("Job", &["spec", "template", "spec"]),
            ("ReplicationController", &["spec", "template", "spec"]),
            ("PodTemplate", &["template", "spec"]),
            (
                "CronJob",
                &["spec", "jobTemplate", "spec", "template", "spec"],
            ),
        ];
        for (kind, prefix) in cases {
            let at = |tail: &[&str]| {
                let path: Vec<&str> = prefix.iter().chain(tail).copied().collect();
                merge_strategy(kind, &path)
            };
            assert_eq!(at(&["containers"]), Some(NAME), "{kind}");
            assert_eq!(at(&["initContainers", "env"]), Some(NAME), "{kind}");
            assert_eq!(
                at(&["containers", "ports"]),
                Some(ByKey(&["containerPort", "protocol"]))
            );
            assert_eq!(
                at(&["containers", "volumeMounts"]),
                Some(ByKey(&["mountPath"]))
            );
            assert_eq!(at(&["volumes"]), Some(NAME));
            assert_eq!(at(&["hostAliases"]), Some(IP));
            assert_eq!(at(&["tolerations"]), None);
            assert_eq!(at(&["containers", "args"]), None);
            assert_eq!(at(&["containers", "resizePolicy"]), None);
        }
        assert_eq!(merge_strategy("ConfigMap", &["spec", "containers"]), None);
        assert_eq!(
            merge_strategy("deployment", &["spec", "template", "spec", "containers"]),
            Some(NAME)
        );
    }

    #[test]
    fn metadata_and_kind_fields() {
        assert_eq!(
            merge_strategy("ConfigMap", &["metadata", "finalizers"]),
            Some(Set)
        );
        assert_eq!(
            merge_strategy("Pod", &["metadata", "ownerReferences"]),
            Some(ByKey(&["uid"]))
        );
        assert_eq!(
            merge_strategy(
                "Deployment",
                &["spec", "template", "metadata", "finalizers"]
            ),
            Some(Set)
        );
        assert_eq!(merge_strategy("Pod", &["metadata", "labels"]), None);
        assert_eq!(merge_strategy("Node", &["status", "addresses"]), Some(TYPE));
        assert_eq!(merge_strategy("Node", &["spec", "taints"]), None);
        assert_eq!(merge_strategy("Node", &["spec", "podCIDRs"]), Some(Set));
        assert_eq!(
            merge_strategy("Service", &["spec", "ports"]),
            Some(ByKey(&["port", "protocol"]))
        );
        assert_eq!(merge_strategy("Endpoints", &["subsets", "ports"]), None);
        assert_eq!(merge_strategy("Job", &["status", "conditions"]), Some(TYPE));
        assert_eq!(merge_strategy("Pod", &["status", "podIPs"]), Some(IP));
        assert_eq!(
            merge_strategy("Pod", &["status", "containerStatuses"]),
            None
        );
    }
}
