//! `orchd get`, `orchd apply -f` and `orchd delete`: enough of kubectl to
//! use a cluster without installing it.

use std::path::PathBuf;

use anyhow::{Context, bail};
use hyper::Method;
use orchd_resources::{ResourceType, resources};
use serde::Deserialize;
use serde_json::Value;

use crate::ServerArgs;
use crate::client::Client;

/// Options of `orchd get`.
#[derive(clap::Args)]
pub struct GetArgs {
    /// Resource type: plural, singular, short name or kind (pods, po, Pod).
    pub resource: String,
    /// Object name; all objects when omitted.
    pub name: Option<String>,
    /// Namespace.
    #[arg(short, long, default_value = "default")]
    pub namespace: String,
    /// All namespaces.
    #[arg(short = 'A', long)]
    pub all_namespaces: bool,
    /// Output: name (default), json or yaml.
    #[arg(short, long, default_value = "name")]
    pub output: String,
    #[command(flatten)]
    server: ServerArgs,
}

/// Options of `orchd apply`.
#[derive(clap::Args)]
pub struct ApplyArgs {
    /// YAML or JSON file, possibly with several `---` documents.
    #[arg(short = 'f', long)]
    pub filename: PathBuf,
    /// Namespace for objects that name none.
    #[arg(short, long, default_value = "default")]
    pub namespace: String,
    #[command(flatten)]
    server: ServerArgs,
}

/// Options of `orchd delete`.
#[derive(clap::Args)]
pub struct DeleteArgs {
    /// Resource type (omit with -f).
    pub resource: Option<String>,
    /// Object name.
    pub name: Option<String>,
    /// Delete the objects in this file instead.
    #[arg(short = 'f', long)]
    pub filename: Option<PathBuf>,
    /// Namespace.
    #[arg(short, long, default_value = "default")]
    pub namespace: String,
    #[command(flatten)]
    server: ServerArgs,
}

/// A client for the API server named by `server` (or its kubeconfig).
pub(crate) fn client(server: &ServerArgs) -> anyhow::Result<Client> {
    let url = match &server.server {
        Some(s) => s.clone(),
        None => crate::cluster::server_from_kubeconfig(&server.data_dir.join("kubeconfig"))
            .unwrap_or_else(|| format!("http://{}", crate::DEFAULT_LISTEN)),
    };
    Client::new(&url)
}

/// Resolves what a user typed to a served resource.
fn resolve(name: &str) -> anyhow::Result<&'static ResourceType> {
    let lower = name.to_ascii_lowercase();
    let (base, group) = lower
        .split_once('.')
        .map_or((lower.as_str(), None), |(b, g)| (b, Some(g)));
    resources()
        .iter()
        .find(|r| {
            group.is_none_or(|g| g == r.group)
                && (r.plural == base
                    || r.singular == base
                    || r.kind.eq_ignore_ascii_case(base)
                    || r.short_names.contains(&base))
        })
        .with_context(|| format!("the server doesn't have a resource type {name:?}"))
}

fn collection_path(r: &ResourceType, namespace: Option<&str>) -> String {
    let prefix = if r.group.is_empty() {
        format!("/api/{}", r.version)
    } else {
        format!("/apis/{}/{}", r.group, r.version)
    };
    match namespace.filter(|_| r.namespaced) {
        Some(ns) => format!("{prefix}/namespaces/{ns}/{}", r.plural),
        None => format!("{prefix}/{}", r.plural),
    }
}

fn print(value: &Value, output: &str) -> anyhow::Result<()> {
    match output {
        "json" => out!("{}", serde_json::to_string_pretty(value)?),
        "yaml" => out_part!("{}", serde_norway::to_string(value)?),
        "name" => {
            let items = value["items"]
                .as_array()
                .cloned()
                .unwrap_or_else(|| vec![value.clone()]);
            for item in items {
                let ns = item["metadata"]["namespace"]
                    .as_str()
                    .map(|n| format!("{n}/"))
                    .unwrap_or_default();
                out!(
                    "{}{}",
                    ns,
                    item["metadata"]["name"].as_str().unwrap_or_default()
                );
            }
        }
        other => bail!("unknown output format {other:?} (name, json, yaml)"),
    }
    Ok(())
}

/// `orchd get`.
pub async fn get(args: GetArgs) -> anyhow::Result<()> {
    let r = resolve(&args.resource)?;
    let ns = (!args.all_namespaces).then_some(args.namespace.as_str());
    let mut path = collection_path(r, ns);
    if let Some(name) = &args.name {
        path = format!("{path}/{name}");
    }
    let value = client(&args.server)?
        .send(Method::GET, &path, None, Vec::new())
        .await?
        .ok()?;
    print(&value, &args.output)
}

/// The documents of a YAML/JSON file (empty documents skipped).
fn read_documents(path: &PathBuf) -> anyhow::Result<Vec<Value>> {
    let text =
        std::fs::read_to_string(path).with_context(|| format!("cannot read {}", path.display()))?;
    let mut docs = Vec::new();
    for (i, doc) in serde_norway::Deserializer::from_str(&text).enumerate() {
        let value = Value::deserialize(doc)
            .with_context(|| format!("{}: document {} is not valid YAML", path.display(), i + 1))?;
        match value {
            Value::Null => {}
            Value::Object(_) => docs.push(value),
            _ => bail!("{}: document {} is not an object", path.display(), i + 1),
        }
    }
    Ok(docs)
}

fn locate(
    doc: &Value,
    default_ns: &str,
) -> anyhow::Result<(&'static ResourceType, String, String)> {
    let api_version = doc["apiVersion"]
        .as_str()
        .context("an object has no apiVersion")?;
    let kind = doc["kind"].as_str().context("an object has no kind")?;
    let r = orchd_resources::find_by_kind(api_version, kind)
        .with_context(|| format!("no resource of kind {kind:?} in {api_version:?} is served"))?;
    let name = doc["metadata"]["name"]
        .as_str()
        .context("an object has no metadata.name")?
        .to_string();
    let ns = doc["metadata"]["namespace"]
        .as_str()
        .unwrap_or(default_ns)
        .to_string();
    Ok((r, ns, name))
}

/// `orchd apply -f`: server-side apply of every document.
pub async fn apply(args: ApplyArgs) -> anyhow::Result<()> {
    let client = client(&args.server)?;
    for doc in read_documents(&args.filename)? {
        let (r, ns, name) = locate(&doc, &args.namespace)?;
        let path = format!(
            "{}/{name}?fieldManager=orchd&fieldValidation=Strict",
            collection_path(r, Some(&ns))
        );
        let answer = client
            .send(
                Method::PATCH,
                &path,
                Some("application/apply-patch+yaml"),
                serde_json::to_vec(&doc)?,
            )
            .await?;
        let verb = if answer.code == 201 {
            "created"
        } else {
            "configured"
        };
        answer.ok()?;
        out!("{}/{name} {verb}", r.group_resource());
    }
    Ok(())
}

/// `orchd delete`.
pub async fn delete(args: DeleteArgs) -> anyhow::Result<()> {
    let client = client(&args.server)?;
    let targets: Vec<(&ResourceType, String, String)> =
        match (&args.filename, &args.resource, &args.name) {
            (Some(file), None, None) => read_documents(file)?
                .iter()
                .map(|d| locate(d, &args.namespace))
                .collect::<anyhow::Result<_>>()?,
            (None, Some(resource), Some(name)) => {
                vec![(resolve(resource)?, args.namespace.clone(), name.clone())]
            }
            _ => bail!("give either RESOURCE NAME or -f FILE"),
        };
    for (r, ns, name) in targets {
        let path = format!("{}/{name}", collection_path(r, Some(&ns)));
        client
            .send(
                Method::DELETE,
                &path,
                Some("application/json"),
                br#"{"propagationPolicy":"Background"}"#.to_vec(),
            )
            .await?
            .ok()?;
        out!("{}/{name} deleted", r.group_resource());
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn resolves_the_names_kubectl_accepts() {
        assert_eq!(resolve("po").unwrap().plural, "pods");
        assert_eq!(resolve("Deployment").unwrap().plural, "deployments");
        assert_eq!(resolve("deployments.apps").unwrap().plural, "deployments");
        assert!(resolve("widgets").is_err());
        assert_eq!(
            collection_path(resolve("deploy").unwrap(), Some("x")),
            "/apis/apps/v1/namespaces/x/deployments"
        );
        assert_eq!(
            collection_path(resolve("nodes").unwrap(), Some("x")),
            "/api/v1/nodes"
        );
    }
}
