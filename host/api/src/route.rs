//! Parsing request paths into what they address.

use orchd_resources::{ResourceType, Subresource, find_by_plural};

use crate::status::{ApiError, ApiResult};

/// What a request path addresses.
#[derive(Debug)]
pub enum Route<'a> {
    /// `/version`
    Version,
    /// `/healthz`, `/livez`, `/readyz` (and their `/...` checks).
    Health,
    /// `/api`
    CoreVersions,
    /// `/apis`
    Groups,
    /// `/apis/{group}`
    Group(&'a str),
    /// `/api/v1`, `/apis/{group}/{version}`
    ResourceList(&'a str, &'a str),
    /// `/openapi/v3`
    OpenApiRoot,
    /// `/openapi/v3/api/v1`, `/openapi/v3/apis/{group}/{version}`
    OpenApiGroupVersion(&'a str, &'a str),
    /// A resource collection, object or subresource.
    Resource(ResourcePath<'a>),
}

/// A path under a resource: collection (`name` is None), object, or
/// object subresource.
#[derive(Debug)]
pub struct ResourcePath<'a> {
    /// The served resource.
    pub resource: &'static ResourceType,
    /// Namespace from the path (`/namespaces/{ns}/...`).
    pub namespace: Option<&'a str>,
    /// Object name.
    pub name: Option<&'a str>,
    /// Subresource.
    pub subresource: Option<Subresource>,
}

/// Parses `path` (without query).
pub fn parse(path: &str) -> ApiResult<Route<'_>> {
    let trimmed = path.trim_end_matches('/');
    let segments: Vec<&str> = trimmed.split('/').skip(1).collect();
    match segments.as_slice() {
        ["version"] => Ok(Route::Version),
        ["healthz" | "livez" | "readyz", ..] => Ok(Route::Health),
        ["api"] => Ok(Route::CoreVersions),
        ["apis"] => Ok(Route::Groups),
        ["apis", group] => Ok(Route::Group(group)),
        ["api", version] => Ok(Route::ResourceList("", version)),
        ["apis", group, version] => Ok(Route::ResourceList(group, version)),
        ["openapi", "v3"] => Ok(Route::OpenApiRoot),
        ["openapi", "v3", "api", version] => Ok(Route::OpenApiGroupVersion("", version)),
        ["openapi", "v3", "apis", group, version] => Ok(Route::OpenApiGroupVersion(group, version)),
        ["api", version, rest @ ..] => resource_path("", version, rest, path),
        ["apis", group, version, rest @ ..] => resource_path(group, version, rest, path),
        _ => Err(ApiError::no_route(path)),
    }
}

fn resource_path<'a>(
    group: &'a str,
    version: &'a str,
    rest: &[&'a str],
    path: &str,
) -> ApiResult<Route<'a>> {
    let lookup = |plural: &str| {
        find_by_plural(group, version, plural).ok_or_else(|| ApiError::no_route(path))
    };
    let subresource = |resource: &ResourceType, s: &str| {
        resource
            .subresources
            .iter()
            .copied()
            .find(|sub| sub.as_str() == s)
            .ok_or_else(|| ApiError::no_route(path))
    };
    let (namespace, rest) = match rest {
        // `/namespaces/{ns}` and `/namespaces/{ns}/status` address the
        // namespace object itself; longer paths are resources inside it.
        ["namespaces", ns, plural, tail @ ..]
            if !(tail.is_empty() && is_namespace_subresource(plural)) =>
        {
            (Some(*ns), {
                let mut v = vec![*plural];
                v.extend_from_slice(tail);
                v
            })
        }
        _ => (None, rest.to_vec()),
    };
    let (resource, name, sub) = match rest.as_slice() {
        [plural] => (lookup(plural)?, None, None),
        [plural, name] => (lookup(plural)?, Some(*name), None),
        [plural, name, s] => {
            let r = lookup(plural)?;
            (r, Some(*name), Some(subresource(r, s)?))
        }
        _ => return Err(ApiError::no_route(path)),
    };
    if namespace.is_some() && !resource.namespaced {
        return Err(ApiError::no_route(path));
    }
    if name.is_some_and(str::is_empty) {
        return Err(ApiError::no_route(path));
    }
    Ok(Route::Resource(ResourcePath {
        resource,
        namespace,
        name,
        subresource: sub,
    }))
}

fn is_namespace_subresource(s: &str) -> bool {
    matches!(s, "status" | "finalize")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn res(path: &str) -> ResourcePath<'_> {
        match parse(path).unwrap() {
            Route::Resource(r) => r,
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn parses_namespaced_cluster_and_subresource_paths() {
        let r = res("/api/v1/namespaces/default/pods/web/status");
        assert_eq!(
            (r.resource.plural, r.namespace, r.name),
            ("pods", Some("default"), Some("web"))
        );
        assert_eq!(r.subresource, Some(Subresource::Status));
        let r = res("/api/v1/namespaces/kube-system");
        assert_eq!(
            (r.resource.plural, r.namespace, r.name),
            ("namespaces", None, Some("kube-system"))
        );
        let r = res("/api/v1/namespaces/x/status");
        assert_eq!(
            (r.resource.plural, r.name, r.subresource),
            ("namespaces", Some("x"), Some(Subresource::Status))
        );
        let r = res("/apis/apps/v1/deployments");
        assert_eq!(
            (r.resource.plural, r.namespace, r.name),
            ("deployments", None, None)
        );
        assert!(matches!(parse("/version/").unwrap(), Route::Version));
        assert!(parse("/api/v1/namespaces/a/nodes/x").is_err());
        assert!(parse("/api/v1/pods/x/bogus").is_err());
        assert!(parse("/apis/nope/v1/things").is_err());
    }
}
