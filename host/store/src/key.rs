//! Where an object lives in the store.

use std::fmt;

/// The address of one object: resource, namespace (for namespaced
/// resources) and name.
///
/// `resource` is the group-qualified plural, as Kubernetes' `GroupResource`
/// prints it: `pods`, `deployments.apps`, `leases.coordination.k8s.io`.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ObjectKey {
    /// Group-qualified plural resource name.
    pub resource: String,
    /// Namespace, `None` for cluster-scoped objects.
    pub namespace: Option<String>,
    /// Object name.
    pub name: String,
}

impl ObjectKey {
    /// A key of a namespaced object.
    pub fn namespaced(resource: &str, namespace: &str, name: &str) -> Self {
        ObjectKey {
            resource: resource.into(),
            namespace: Some(namespace.into()),
            name: name.into(),
        }
    }

    /// A key of a cluster-scoped object.
    pub fn cluster(resource: &str, name: &str) -> Self {
        ObjectKey {
            resource: resource.into(),
            namespace: None,
            name: name.into(),
        }
    }

    /// The flat storage form: `resource/namespace/name` (empty namespace for
    /// cluster-scoped objects). Sorting these sorts by resource, then
    /// namespace, then name, so a scope is one contiguous range.
    pub fn encode(&self) -> String {
        format!(
            "{}/{}/{}",
            self.resource,
            self.namespace.as_deref().unwrap_or(""),
            self.name
        )
    }

    /// Parses [`ObjectKey::encode`]'s form.
    pub fn decode(s: &str) -> Option<Self> {
        let mut parts = s.splitn(3, '/');
        let resource = parts.next()?.to_string();
        let namespace = parts.next()?;
        let name = parts.next()?.to_string();
        Some(ObjectKey {
            resource,
            namespace: (!namespace.is_empty()).then(|| namespace.to_string()),
            name,
        })
    }

    /// The encoded prefix shared by every key of `resource` in `namespace`
    /// (or of every namespace when `None`).
    pub fn scope_prefix(resource: &str, namespace: Option<&str>) -> String {
        match namespace {
            Some(ns) => format!("{resource}/{ns}/"),
            None => format!("{resource}/"),
        }
    }
}

impl fmt::Display for ObjectKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.namespace {
            Some(ns) => write!(f, "{} \"{}/{}\"", self.resource, ns, self.name),
            None => write!(f, "{} \"{}\"", self.resource, self.name),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn encode_round_trips_and_sorts_by_scope() {
        let a = ObjectKey::namespaced("pods", "default", "web-1");
        let b = ObjectKey::cluster("nodes", "n1");
        assert_eq!(ObjectKey::decode(&a.encode()), Some(a.clone()));
        assert_eq!(ObjectKey::decode(&b.encode()), Some(b));
        assert!(
            a.encode()
                .starts_with(&ObjectKey::scope_prefix("pods", Some("default")))
        );
        assert!(
            a.encode()
                .starts_with(&ObjectKey::scope_prefix("pods", None))
        );
        assert!(
            !a.encode()
                .starts_with(&ObjectKey::scope_prefix("pod", None))
        );
    }
}
