//! API discovery: which groups, versions and resources are served.
//!
//! Both forms kubectl understands are served: the legacy documents
//! (`APIVersions`, `APIGroupList`, `APIResourceList`) and aggregated
//! discovery (`apidiscovery.k8s.io/v2` `APIGroupDiscoveryList`), chosen by
//! the Accept header.

use orchd_resources::{ResourceType, Subresource, group_versions, resources};
use serde_json::{Value, json};

/// The exact Content-Type kubectl expects for aggregated discovery.
pub const AGGREGATED_CONTENT_TYPE: &str =
    "application/json;g=apidiscovery.k8s.io;v=v2;as=APIGroupDiscoveryList";

/// Whether the Accept header asks for aggregated discovery v2.
pub fn wants_aggregated(accept: &str) -> bool {
    accept.split(',').any(|part| {
        let p = part.replace(' ', "");
        p.contains("g=apidiscovery.k8s.io")
            && p.contains("v=v2;")
            && p.contains("as=APIGroupDiscoveryList")
            || p.ends_with("g=apidiscovery.k8s.io;v=v2;as=APIGroupDiscoveryList")
    })
}

const VERBS: &[&str] = &[
    "create",
    "delete",
    "deletecollection",
    "get",
    "list",
    "patch",
    "update",
    "watch",
];

fn verbs(resource: &ResourceType) -> &'static [&'static str] {
    if resource.create_only {
        &["create"]
    } else {
        VERBS
    }
}

fn subresource_verbs(sub: Subresource) -> &'static [&'static str] {
    match sub {
        Subresource::Status | Subresource::Scale => &["get", "patch", "update"],
        Subresource::Binding => &["create"],
        Subresource::Log => &["get"],
        Subresource::Finalize => &["update"],
    }
}

fn subresource_kind(
    resource: &ResourceType,
    sub: Subresource,
) -> (&'static str, &'static str, &'static str) {
    match sub {
        Subresource::Status => (resource.group, resource.version, resource.kind),
        Subresource::Scale => ("autoscaling", "v1", "Scale"),
        Subresource::Binding => ("", "v1", "Binding"),
        Subresource::Log => ("", "v1", "Pod"),
        Subresource::Finalize => (resource.group, resource.version, resource.kind),
    }
}

/// `/api`: the core group's versions.
pub fn core_versions(server_address: &str) -> Value {
    json!({
        "kind": "APIVersions",
        "versions": ["v1"],
        "serverAddressByClientCIDRs": [{"clientCIDR": "0.0.0.0/0", "serverAddress": server_address}],
    })
}

fn group_doc(group: &str) -> Value {
    let versions: Vec<Value> = group_versions()
        .into_iter()
        .filter(|(g, _)| *g == group)
        .map(|(g, v)| json!({"groupVersion": format!("{g}/{v}"), "version": v}))
        .collect();
    json!({
        "kind": "APIGroup",
        "apiVersion": "v1",
        "name": group,
        "versions": versions,
        "preferredVersion": versions.first().cloned().unwrap_or(Value::Null),
    })
}

/// `/apis` in the legacy form.
pub fn group_list() -> Value {
    let mut groups: Vec<&str> = Vec::new();
    for (g, _) in group_versions() {
        if !g.is_empty() && !groups.contains(&g) {
            groups.push(g);
        }
    }
    json!({
        "kind": "APIGroupList",
        "apiVersion": "v1",
        "groups": groups.into_iter().map(group_doc).collect::<Vec<_>>(),
    })
}

/// `/apis/{group}`, if served.
pub fn group(group: &str) -> Option<Value> {
    group_versions()
        .iter()
        .any(|(g, _)| *g == group && !g.is_empty())
        .then(|| group_doc(group))
}

/// `/api/v1` or `/apis/{group}/{version}`, if served.
pub fn resource_list(group: &str, version: &str) -> Option<Value> {
    let served: Vec<&ResourceType> = resources()
        .iter()
        .filter(|r| r.group == group && r.version == version)
        .collect();
    if served.is_empty() {
        return None;
    }
    let mut list = Vec::new();
    for r in served {
        let mut entry = json!({
            "name": r.plural,
            "singularName": r.singular,
            "namespaced": r.namespaced,
            "kind": r.kind,
            "verbs": verbs(r),
        });
        if !r.short_names.is_empty() {
            entry["shortNames"] = json!(r.short_names);
        }
        if !r.categories.is_empty() {
            entry["categories"] = json!(r.categories);
        }
        list.push(entry);
        for sub in r.subresources {
            let (g, v, kind) = subresource_kind(r, *sub);
            let mut e = json!({
                "name": format!("{}/{}", r.plural, sub.as_str()),
                "singularName": "",
                "namespaced": r.namespaced,
                "kind": kind,
                "verbs": subresource_verbs(*sub),
            });
            if g != r.group || v != r.version {
                e["group"] = json!(g);
                e["version"] = json!(v);
            }
            list.push(e);
        }
    }
    let group_version = if group.is_empty() {
        version.to_string()
    } else {
        format!("{group}/{version}")
    };
    Some(json!({
        "kind": "APIResourceList",
        "apiVersion": "v1",
        "groupVersion": group_version,
        "resources": list,
    }))
}

/// Aggregated discovery for the core group (`core == true`, served at
/// `/api`) or every other group (`/apis`).
pub fn aggregated(core: bool) -> Value {
    let mut items: Vec<Value> = Vec::new();
    for (group, version) in group_versions() {
        if group.is_empty() != core {
            continue;
        }
        let resources: Vec<Value> = resources()
            .iter()
            .filter(|r| r.group == group && r.version == version)
            .map(|r| {
                let mut e = json!({
                    "resource": r.plural,
                    "responseKind": {"group": r.group, "version": r.version, "kind": r.kind},
                    "scope": if r.namespaced { "Namespaced" } else { "Cluster" },
                    "singularResource": r.singular,
                    "verbs": verbs(r),
                });
                if !r.short_names.is_empty() {
                    e["shortNames"] = json!(r.short_names);
                }
                if !r.categories.is_empty() {
                    e["categories"] = json!(r.categories);
                }
                if !r.subresources.is_empty() {
                    e["subresources"] = r
                        .subresources
                        .iter()
                        .map(|s| {
                            let (g, v, k) = subresource_kind(r, *s);
                            json!({
                                "subresource": s.as_str(),
                                "responseKind": {"group": g, "version": v, "kind": k},
                                "verbs": subresource_verbs(*s),
                            })
                        })
                        .collect::<Vec<_>>()
                        .into();
                }
                e
            })
            .collect();
        let version_doc =
            json!({"version": version, "resources": resources, "freshness": "Current"});
        match items.iter_mut().find(|i| i["metadata"]["name"] == group) {
            Some(item) => item["versions"]
                .as_array_mut()
                .expect("versions is an array")
                .push(version_doc),
            None => items.push(json!({"metadata": {"name": group}, "versions": [version_doc]})),
        }
    }
    json!({
        "kind": "APIGroupDiscoveryList",
        "apiVersion": "apidiscovery.k8s.io/v2",
        "metadata": {},
        "items": items,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn aggregated_accept_header_is_recognised() {
        let kubectl = "application/json;g=apidiscovery.k8s.io;v=v2;as=APIGroupDiscoveryList,application/json;g=apidiscovery.k8s.io;v=v2beta1;as=APIGroupDiscoveryList,application/json";
        assert!(wants_aggregated(kubectl));
        assert!(!wants_aggregated("application/json, */*"));
    }

    #[test]
    fn documents_list_every_resource_with_short_names() {
        let core = resource_list("", "v1").unwrap();
        let pods = core["resources"]
            .as_array()
            .unwrap()
            .iter()
            .find(|r| r["name"] == "pods")
            .unwrap();
        assert_eq!(pods["shortNames"][0], "po");
        assert!(
            core["resources"]
                .as_array()
                .unwrap()
                .iter()
                .any(|r| r["name"] == "pods/binding")
        );
        let agg = aggregated(false);
        let apps = agg["items"]
            .as_array()
            .unwrap()
            .iter()
            .find(|i| i["metadata"]["name"] == "apps")
            .unwrap();
        let deploy = apps["versions"][0]["resources"]
            .as_array()
            .unwrap()
            .iter()
            .find(|r| r["resource"] == "deployments")
            .unwrap();
        assert_eq!(deploy["categories"][0], "all");
        assert_eq!(deploy["subresources"][1]["responseKind"]["kind"], "Scale");
        assert!(resource_list("nope", "v1").is_none());
        // apps, batch, coordination.k8s.io, node.k8s.io, orchd.dev, authorization.k8s.io
        assert_eq!(group_list()["groups"].as_array().unwrap().len(), 6);
    }
}
