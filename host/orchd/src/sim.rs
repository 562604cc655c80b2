//! Hollow nodes (`orchd sim nodes`), as Kubernetes' kubemark: Node objects
//! that register, heartbeat through Leases in `kube-node-lease`, and mark
//! the pods bound to them Running and Ready without running anything.
//!
//! They talk to the cluster only over its HTTP API, like a real node agent
//! in another process. A pod annotated `orchd.dev/sim-exit:
//! "succeed-after=2s"` (or `"fail-after=2s"`) ends Succeeded (or Failed)
//! that long after it started.
//!
//! Stopping the process (SIGTERM) stops the heartbeats and keeps the Node
//! objects, as a machine that went away would: the node lifecycle
//! controller then marks them Unknown and evicts their pods. Starting it
//! again with the same `--prefix` takes the nodes over and posts them
//! Ready.

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use hyper::Method;
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};
use tokio::sync::Semaphore;

use crate::ServerArgs;
use crate::client::Client;

/// The annotation that makes a hollow pod finish.
pub const EXIT_ANNOTATION: &str = "orchd.dev/sim-exit";

/// The label every hollow node carries.
pub const HOLLOW_LABEL: &str = "node.orchd.dev/hollow";

/// How long a Lease lasts without renewal (the kubelet's default).
const LEASE_SECONDS: i64 = 40;

/// API requests in flight at once, so thousands of nodes do not flood the
/// server (or run out of file descriptors).
const CONCURRENCY: usize = 16;

const MERGE_PATCH: &str = "application/merge-patch+json";
const JSON: &str = "application/json";

/// `orchd sim ...`.
#[derive(clap::Args)]
pub struct SimArgs {
    #[command(subcommand)]
    command: SimCommand,
}

#[derive(clap::Subcommand)]
enum SimCommand {
    /// Register hollow nodes that heartbeat and run pods in name only.
    Nodes(NodesArgs),
}

/// Options of `orchd sim nodes`.
#[derive(clap::Args, Clone)]
pub struct NodesArgs {
    /// How many nodes.
    #[arg(long, default_value_t = 1)]
    pub count: usize,
    /// CPU of each node (capacity and allocatable), as a quantity.
    #[arg(long, default_value = "4")]
    pub cpu: String,
    /// Memory of each node, as a quantity.
    #[arg(long, default_value = "8Gi")]
    pub memory: String,
    /// Pods each node can hold.
    #[arg(long, default_value_t = 110)]
    pub pods: u32,
    /// Extra labels: `k=v,k2=v2`.
    #[arg(long, default_value = "")]
    pub labels: String,
    /// Taints: `k=v:NoSchedule,k2:NoExecute`.
    #[arg(long, default_value = "")]
    pub taints: String,
    /// Node names are PREFIX-0, PREFIX-1, ...
    #[arg(long, default_value = "hollow")]
    pub prefix: String,
    /// How often each node renews its Lease, in milliseconds (the
    /// kubelet's 10 s by default; tests of node failure use less, with a
    /// node-lifecycle grace period to match).
    #[arg(long, default_value_t = 10_000, value_parser = clap::value_parser!(u64).range(100..))]
    pub heartbeat_ms: u64,
    #[command(flatten)]
    pub server: ServerArgs,
}

impl NodesArgs {
    /// `count` nodes of the default size talking to `server`.
    pub fn new(count: usize, server: String) -> Self {
        NodesArgs {
            count,
            cpu: "4".into(),
            memory: "8Gi".into(),
            pods: 110,
            labels: String::new(),
            taints: String::new(),
            prefix: "hollow".into(),
            heartbeat_ms: 10_000,
            server: ServerArgs {
                server: Some(server),
                data_dir: ".orchd".into(),
            },
        }
    }
}

/// Running hollow nodes; [`Self::stop`] ends their heartbeats and pods.
pub struct HollowNodes {
    heartbeats: tokio::task::JoinHandle<()>,
    pods: tokio::task::JoinHandle<()>,
}

impl HollowNodes {
    /// Stops heartbeating and handling pods; the Node objects stay.
    pub fn stop(self) {
        self.heartbeats.abort();
        self.pods.abort();
    }
}

/// Runs `orchd sim ...`.
pub async fn run(args: SimArgs) -> anyhow::Result<()> {
    match args.command {
        SimCommand::Nodes(nodes) => run_nodes(nodes).await,
    }
}

/// One hollow node.
struct HollowNode {
    name: String,
    /// The node's address block, unique among the nodes of one run and,
    /// through the prefix, most likely across runs with other prefixes.
    slot: u32,
    next_ip: Mutex<u32>,
}

impl HollowNode {
    /// The node's address: one per node in 172.16.0.0/12.
    fn host_ip(&self) -> String {
        let i = self.slot + 1;
        format!("172.{}.{}.{}", 16 + (i >> 16), (i >> 8) & 0xff, i & 0xff)
    }

    /// A pod address from the node's /24 in 10.0.0.0/8 (`.2`–`.254`, reused
    /// round robin: addresses only have to look real).
    fn pod_ip(&self) -> String {
        let host = match self.next_ip.lock() {
            Ok(mut next) => {
                let ip = 2 + *next % 253;
                *next = next.wrapping_add(1);
                ip
            }
            Err(_) => 2,
        };
        format!("10.{}.{}.{host}", self.slot >> 8, self.slot & 0xff)
    }

    fn pod_cidr(&self) -> String {
        format!("10.{}.{}.0/24", self.slot >> 8, self.slot & 0xff)
    }

    /// The slot of node `index` of a run with `prefix`: consecutive from a
    /// base taken from the prefix (FNV-1a), so two `orchd sim nodes` runs
    /// with different prefixes do not hand out the same pod addresses.
    fn slot(prefix: &str, index: usize) -> u32 {
        let base = prefix.bytes().fold(0x811c_9dc5u32, |h, b| {
            (h ^ u32::from(b)).wrapping_mul(0x0100_0193)
        });
        let index = u32::try_from(index % 65_536).unwrap_or(0);
        (base.wrapping_add(index)) & 0xffff
    }
}

/// State shared by the node tasks.
struct Sim {
    client: Client,
    nodes: HashMap<String, Arc<HollowNode>>,
    /// Pods (by uid) this process has started or is finishing.
    handled: Mutex<HashSet<String>>,
    permits: Semaphore,
    /// How often each node renews its Lease.
    heartbeat: Duration,
}

async fn run_nodes(args: NodesArgs) -> anyhow::Result<()> {
    let nodes = start_nodes(args).await?;
    crate::cluster::shutdown_signal().await;
    nodes.stop();
    out!(
        "orchd: sim: stopped; the nodes stay registered and their leases expire (remove them with: kubectl delete nodes -l {HOLLOW_LABEL}=true)"
    );
    Ok(())
}

/// Registers the nodes, then heartbeats and handles their pods in the
/// background.
pub async fn start_nodes(args: NodesArgs) -> anyhow::Result<HollowNodes> {
    if args.count == 0 {
        bail!("--count must be at least 1");
    }
    orchd_plugin_host::quantity::millicpu(&args.cpu).map_err(|e| anyhow::anyhow!("--cpu: {e}"))?;
    orchd_plugin_host::quantity::bytes(&args.memory)
        .map_err(|e| anyhow::anyhow!("--memory: {e}"))?;
    let labels = parse_labels(&args.labels)?;
    let taints = parse_taints(&args.taints)?;
    let client = crate::commands::client(&args.server)?;
    let nodes: HashMap<String, Arc<HollowNode>> = (0..args.count)
        .map(|index| {
            let name = format!("{}-{index}", args.prefix);
            (
                name.clone(),
                Arc::new(HollowNode {
                    name,
                    slot: HollowNode::slot(&args.prefix, index),
                    next_ip: Mutex::new(0),
                }),
            )
        })
        .collect();
    let sim = Arc::new(Sim {
        client,
        nodes,
        handled: Mutex::new(HashSet::new()),
        permits: Semaphore::new(CONCURRENCY),
        heartbeat: Duration::from_millis(args.heartbeat_ms.max(100)),
    });

    let started = Instant::now();
    let mut registrations = tokio::task::JoinSet::new();
    for node in sim.nodes.values() {
        let sim = sim.clone();
        let node = node.clone();
        let object = node_object(&node, &args, &labels, &taints);
        registrations.spawn(async move {
            let _permit = sim.permits.acquire().await;
            register(&sim.client, &node, object).await
        });
    }
    while let Some(joined) = registrations.join_next().await {
        joined.context("a registration task failed")??;
    }
    out!(
        "orchd: sim: {} hollow node(s) registered ({}-0..{}-{}) in {} ms, {} CPU, {} memory, {} pods each",
        args.count,
        args.prefix,
        args.prefix,
        args.count - 1,
        started.elapsed().as_millis(),
        args.cpu,
        args.memory,
        args.pods
    );

    Ok(HollowNodes {
        heartbeats: tokio::spawn(heartbeat_loop(sim.clone())),
        pods: tokio::spawn(pod_loop(sim)),
    })
}

fn parse_labels(text: &str) -> anyhow::Result<Vec<(String, String)>> {
    text.split(',')
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .map(|pair| match pair.split_once('=') {
            Some((k, v)) if !k.is_empty() => Ok((k.to_string(), v.to_string())),
            _ => bail!("--labels: {pair:?} is not KEY=VALUE"),
        })
        .collect()
}

fn parse_taints(text: &str) -> anyhow::Result<Vec<Value>> {
    text.split(',')
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .map(|taint| {
            let Some((kv, effect)) = taint.rsplit_once(':') else {
                bail!("--taints: {taint:?} is not KEY[=VALUE]:EFFECT");
            };
            if !matches!(effect, "NoSchedule" | "PreferNoSchedule" | "NoExecute") {
                bail!(
                    "--taints: effect {effect:?} must be NoSchedule, PreferNoSchedule or NoExecute"
                );
            }
            let (key, value) = kv.split_once('=').unwrap_or((kv, ""));
            if key.is_empty() {
                bail!("--taints: {taint:?} has no key");
            }
            Ok(json!({"key": key, "value": value, "effect": effect}))
        })
        .collect()
}

fn now() -> String {
    jiff::Timestamp::now()
        .strftime("%Y-%m-%dT%H:%M:%SZ")
        .to_string()
}

fn now_micro() -> String {
    jiff::Timestamp::now()
        .strftime("%Y-%m-%dT%H:%M:%S%.6fZ")
        .to_string()
}

fn node_object(
    node: &HollowNode,
    args: &NodesArgs,
    labels: &[(String, String)],
    taints: &[Value],
) -> Value {
    let mut all_labels = serde_json::Map::new();
    for (k, v) in [
        ("kubernetes.io/hostname", node.name.as_str()),
        ("kubernetes.io/os", "linux"),
        ("kubernetes.io/arch", "amd64"),
        (HOLLOW_LABEL, "true"),
    ] {
        all_labels.insert(k.into(), json!(v));
    }
    for (k, v) in labels {
        all_labels.insert(k.clone(), json!(v));
    }
    let resources = json!({"cpu": args.cpu, "memory": args.memory, "pods": args.pods.to_string()});
    let stamp = now();
    let condition = |kind: &str, status: &str, reason: &str, message: &str| {
        json!({"type": kind, "status": status, "reason": reason, "message": message,
               "lastHeartbeatTime": stamp, "lastTransitionTime": stamp})
    };
    json!({
        "apiVersion": "v1",
        "kind": "Node",
        "metadata": {"name": node.name, "labels": all_labels},
        "spec": {"podCIDR": node.pod_cidr(), "podCIDRs": [node.pod_cidr()], "taints": taints},
        "status": {
            "capacity": resources,
            "allocatable": resources,
            "conditions": [
                condition("MemoryPressure", "False", "KubeletHasSufficientMemory", "hollow node has sufficient memory available"),
                condition("DiskPressure", "False", "KubeletHasNoDiskPressure", "hollow node has no disk pressure"),
                condition("PIDPressure", "False", "KubeletHasSufficientPID", "hollow node has sufficient PID available"),
                condition("Ready", "True", "KubeletReady", "hollow node is posting ready status"),
            ],
            "addresses": [
                {"type": "InternalIP", "address": node.host_ip()},
                {"type": "Hostname", "address": node.name},
            ],
            "daemonEndpoints": {"kubeletEndpoint": {"Port": 10250}},
            "nodeInfo": {
                "machineID": format!("hollow-{}", node.name),
                "systemUUID": format!("hollow-{}", node.name),
                "bootID": format!("hollow-{}", node.name),
                "kernelVersion": "hollow",
                "osImage": "orchd hollow node",
                "containerRuntimeVersion": "sim://0.1.0",
                "kubeletVersion": "v1.37.0-orchd",
                "kubeProxyVersion": "",
                "operatingSystem": "linux",
                "architecture": "amd64",
            },
        },
    })
}

/// Creates the Node (or refreshes an existing one) and its Lease.
async fn register(client: &Client, node: &HollowNode, object: Value) -> anyhow::Result<()> {
    let path = format!("/api/v1/nodes/{}", node.name);
    let created = client
        .send_json(Method::POST, "/api/v1/nodes", JSON, &object)
        .await?;
    match created.code {
        200..=299 => {}
        409 => {
            // Left from an earlier run: take it over with this run's shape.
            client
                .send_json(
                    Method::PATCH,
                    &path,
                    MERGE_PATCH,
                    &json!({"metadata": {"labels": object["metadata"]["labels"]},
                            "spec": {"taints": object["spec"]["taints"], "unschedulable": null}}),
                )
                .await?
                .ok()
                .with_context(|| format!("cannot update node {}", node.name))?;
            client
                .send_json(
                    Method::PATCH,
                    &format!("{path}/status"),
                    MERGE_PATCH,
                    &json!({"status": object["status"]}),
                )
                .await?
                .ok()
                .with_context(|| format!("cannot update the status of node {}", node.name))?;
        }
        _ => {
            created
                .ok()
                .with_context(|| format!("cannot register node {}", node.name))?;
        }
    }
    renew_lease(client, &node.name).await
}

fn lease_path(name: &str) -> String {
    format!("/apis/coordination.k8s.io/v1/namespaces/kube-node-lease/leases/{name}")
}

/// Renews the node's Lease, creating it if missing.
async fn renew_lease(client: &Client, name: &str) -> anyhow::Result<()> {
    let stamp = now_micro();
    let renewed = client
        .send_json(
            Method::PATCH,
            &lease_path(name),
            MERGE_PATCH,
            &json!({"spec": {"holderIdentity": name, "leaseDurationSeconds": LEASE_SECONDS, "renewTime": stamp}}),
        )
        .await?;
    if renewed.code != 404 {
        renewed
            .ok()
            .with_context(|| format!("cannot renew the lease of {name}"))?;
        return Ok(());
    }
    // Owned by its Node, as a kubelet's Lease is: the Node's deletion
    // takes the Lease with it, and controllers map a Lease to its Node.
    let node = client
        .send(
            Method::GET,
            &format!("/api/v1/nodes/{name}"),
            None,
            Vec::new(),
        )
        .await?
        .ok()
        .with_context(|| format!("cannot read node {name}"))?;
    let owner = json!([{"apiVersion": "v1", "kind": "Node", "name": name,
                        "uid": node["metadata"]["uid"]}]);
    let lease = json!({
        "apiVersion": "coordination.k8s.io/v1",
        "kind": "Lease",
        "metadata": {"name": name, "namespace": "kube-node-lease", "ownerReferences": owner},
        "spec": {"holderIdentity": name, "leaseDurationSeconds": LEASE_SECONDS,
                 "acquireTime": stamp, "renewTime": stamp},
    });
    let created = client
        .send_json(
            Method::POST,
            "/apis/coordination.k8s.io/v1/namespaces/kube-node-lease/leases",
            JSON,
            &lease,
        )
        .await?;
    if created.code == 409 {
        return Ok(());
    }
    created
        .ok()
        .with_context(|| format!("cannot create the lease of {name}"))?;
    Ok(())
}

/// Renews every node's Lease each heartbeat period, spread over the period
/// so thousands of nodes do not renew in one burst.
async fn heartbeat_loop(sim: Arc<Sim>) {
    let mut names: Vec<String> = sim.nodes.keys().cloned().collect();
    names.sort();
    let heartbeat = sim.heartbeat;
    let step = heartbeat / u32::try_from(names.len().max(1)).unwrap_or(u32::MAX);
    loop {
        let round = Instant::now();
        for name in &names {
            let sim = sim.clone();
            let name = name.clone();
            tokio::spawn(async move {
                let _permit = sim.permits.acquire().await;
                if let Err(e) = renew_lease(&sim.client, &name).await {
                    eprintln!("orchd: sim: heartbeat of {name}: {e:#}");
                }
            });
            tokio::time::sleep(step).await;
        }
        let spent = round.elapsed();
        if spent < heartbeat {
            tokio::time::sleep(heartbeat - spent).await;
        }
    }
}

/// Lists and watches pods, handling those bound to our nodes; relists
/// after an expired or broken watch.
async fn pod_loop(sim: Arc<Sim>) {
    let mut delay = Duration::from_millis(200);
    loop {
        match watch_pods(&sim).await {
            Ok(()) => delay = Duration::from_millis(200),
            Err(e) => {
                eprintln!("orchd: sim: pod watch: {e:#}; retrying");
                tokio::time::sleep(delay).await;
                delay = (delay * 2).min(Duration::from_secs(5));
            }
        }
    }
}

/// Only pods bound to a node (`spec.nodeName!=`), as a kubelet watches
/// only its own: a pending pod is none of a node's business, and every
/// pod created would otherwise cost one more watch line to encode, send
/// and read. A binding arrives as `ADDED`, the pod starting to match.
const BOUND_PODS: &str = "fieldSelector=spec.nodeName%21%3D";

/// One list and the watches after it; returns when a relist is needed.
async fn watch_pods(sim: &Arc<Sim>) -> anyhow::Result<()> {
    let list = sim
        .client
        .send(
            Method::GET,
            &format!("/api/v1/pods?{BOUND_PODS}"),
            None,
            Vec::new(),
        )
        .await?
        .ok()?;
    let mut revision = list["metadata"]["resourceVersion"]
        .as_str()
        .unwrap_or("0")
        .to_string();
    for pod in list["items"].as_array().into_iter().flatten() {
        handle_pod(sim, pod);
    }
    // A watch the server closes (timeout) resumes from the last revision
    // seen; an ERROR event (410 Gone after compaction) means relist.
    loop {
        let mut watch = sim
            .client
            .watch(&format!(
                "/api/v1/pods?{BOUND_PODS}&watch=1&allowWatchBookmarks=true&resourceVersion={revision}"
            ))
            .await?;
        while let Some(event) = watch.next_as::<PodEvent>().await? {
            let PodEvent { event_type, object } = event;
            match event_type.as_str() {
                "ADDED" | "MODIFIED" => handle_pod(sim, &object.to_value()),
                "DELETED" => {
                    if let (Some(uid), Ok(mut handled)) =
                        (object.metadata.uid.as_deref(), sim.handled.lock())
                    {
                        handled.remove(uid);
                    }
                }
                "ERROR" => return Ok(()),
                _ => {}
            }
            if let Some(rv) = object.metadata.resource_version {
                revision = rv;
            }
        }
    }
}

/// One line of the pod watch, as a hollow node reads it.
#[derive(Deserialize)]
struct PodEvent {
    #[serde(rename = "type")]
    event_type: String,
    #[serde(default)]
    object: PodView,
}

/// What a hollow node reads of a pod: the fields it acts on, decoded
/// straight from the watch line while the rest is skipped. Building every
/// pod of the watch whole (three versions of each pod it runs) was most of
/// the simulator's CPU in the scheduler benchmark. [`PodView::to_value`]
/// gives the same JSON shape as the pod, restricted to these fields.
#[derive(Deserialize, Serialize, Default)]
#[serde(default, rename_all = "camelCase")]
struct PodView {
    metadata: PodViewMeta,
    spec: PodViewSpec,
    #[serde(deserialize_with = "pod_status_or_none")]
    status: PodViewStatus,
}

#[derive(Deserialize, Serialize, Default)]
#[serde(default, rename_all = "camelCase")]
struct PodViewMeta {
    #[serde(skip_serializing_if = "Option::is_none")]
    name: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    namespace: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    uid: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    resource_version: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    deletion_timestamp: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    deletion_grace_period_seconds: Option<i64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    annotations: Option<std::collections::BTreeMap<String, String>>,
}

#[derive(Deserialize, Serialize, Default)]
#[serde(default, rename_all = "camelCase")]
struct PodViewSpec {
    #[serde(skip_serializing_if = "Option::is_none")]
    node_name: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    containers: Option<Vec<ContainerView>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    init_containers: Option<Vec<ContainerView>>,
}

#[derive(Deserialize, Serialize, Default)]
#[serde(default)]
struct ContainerView {
    #[serde(skip_serializing_if = "Option::is_none")]
    name: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    image: Option<String>,
}

#[derive(Deserialize, Serialize, Default)]
#[serde(default)]
struct PodViewStatus {
    #[serde(skip_serializing_if = "Option::is_none")]
    phase: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    conditions: Option<Vec<Value>>,
}

impl PodView {
    /// The pod's JSON restricted to the fields read.
    fn to_value(&self) -> Value {
        serde_json::to_value(self).unwrap_or(Value::Null)
    }
}

/// A pod's status, or none for anything else in that place: an ERROR
/// event's object is a `Status`, whose `status` is a string.
fn pod_status_or_none<'de, D: serde::Deserializer<'de>>(d: D) -> Result<PodViewStatus, D::Error> {
    struct Either;
    impl<'de> serde::de::Visitor<'de> for Either {
        type Value = PodViewStatus;
        fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
            f.write_str("a pod status")
        }
        fn visit_map<A: serde::de::MapAccess<'de>>(
            self,
            map: A,
        ) -> Result<PodViewStatus, A::Error> {
            PodViewStatus::deserialize(serde::de::value::MapAccessDeserializer::new(map))
        }
        fn visit_str<E: serde::de::Error>(self, _: &str) -> Result<PodViewStatus, E> {
            Ok(PodViewStatus::default())
        }
        fn visit_unit<E: serde::de::Error>(self) -> Result<PodViewStatus, E> {
            Ok(PodViewStatus::default())
        }
    }
    d.deserialize_any(Either)
}

/// Starts (or, after a restart of this process, resumes) a pod bound to
/// one of our nodes.
fn handle_pod(sim: &Arc<Sim>, pod: &Value) {
    let Some(node) = pod["spec"]["nodeName"]
        .as_str()
        .and_then(|n| sim.nodes.get(n))
        .cloned()
    else {
        return;
    };
    let Some(uid) = pod["metadata"]["uid"].as_str().map(str::to_string) else {
        return;
    };
    if pod["metadata"]["deletionTimestamp"].is_string() {
        // Nothing really runs: confirm the deletion at once (grace 0), as
        // kubemark's hollow kubelet does.
        if pod["metadata"]["deletionGracePeriodSeconds"].as_i64() != Some(0) {
            let sim = sim.clone();
            let path = format!(
                "/api/v1/namespaces/{}/pods/{}",
                pod["metadata"]["namespace"].as_str().unwrap_or("default"),
                pod["metadata"]["name"].as_str().unwrap_or("")
            );
            let body = serde_json::json!({"gracePeriodSeconds": 0, "preconditions": {"uid": uid}});
            tokio::spawn(async move {
                let _permit = sim.permits.acquire().await;
                let body = serde_json::to_vec(&body).unwrap_or_default();
                if let Err(e) = sim
                    .client
                    .send(Method::DELETE, &path, Some("application/json"), body)
                    .await
                {
                    eprintln!("orchd: sim: cannot confirm the deletion of {path}: {e:#}");
                }
            });
        }
        return;
    }
    let phase = pod["status"]["phase"]
        .as_str()
        .unwrap_or("Pending")
        .to_string();
    if matches!(phase.as_str(), "Succeeded" | "Failed") {
        return;
    }
    match sim.handled.lock() {
        Ok(mut handled) => {
            if !handled.insert(uid.clone()) {
                return;
            }
        }
        Err(_) => return,
    }
    let exit = match pod["metadata"]["annotations"][EXIT_ANNOTATION].as_str() {
        Some(text) => match parse_exit(text) {
            Ok(exit) => Some(exit),
            Err(e) => {
                eprintln!(
                    "orchd: sim: pod {}: ignoring {EXIT_ANNOTATION}: {e}",
                    pod_name(pod)
                );
                None
            }
        },
        None => None,
    };
    let sim = sim.clone();
    let pod = pod.clone();
    tokio::spawn(async move {
        if phase != "Running" {
            let started = {
                let _permit = sim.permits.acquire().await;
                start_pod(&sim.client, &node, &pod).await
            };
            if let Err(e) = started {
                eprintln!("orchd: sim: cannot start pod {}: {e:#}", pod_name(&pod));
                // Let a later event try again.
                if let Ok(mut handled) = sim.handled.lock() {
                    handled.remove(&uid);
                }
                return;
            }
        }
        if let Some((succeed, after)) = exit {
            tokio::time::sleep(after).await;
            let _permit = sim.permits.acquire().await;
            if let Err(e) = finish_pod(&sim.client, &pod, succeed).await {
                eprintln!("orchd: sim: cannot finish pod {}: {e:#}", pod_name(&pod));
            }
        }
    });
}

fn pod_name(pod: &Value) -> String {
    format!(
        "{}/{}",
        pod["metadata"]["namespace"].as_str().unwrap_or("default"),
        pod["metadata"]["name"].as_str().unwrap_or("")
    )
}

fn status_path(pod: &Value) -> String {
    format!(
        "/api/v1/namespaces/{}/pods/{}/status",
        pod["metadata"]["namespace"].as_str().unwrap_or("default"),
        pod["metadata"]["name"].as_str().unwrap_or("")
    )
}

/// `succeed-after=2s` → (true, 2 s); `fail-after=500ms` → (false, 0.5 s).
fn parse_exit(text: &str) -> anyhow::Result<(bool, Duration)> {
    let Some((what, after)) = text.trim().split_once('=') else {
        bail!("{text:?} is not succeed-after=DURATION or fail-after=DURATION");
    };
    let succeed = match what.trim() {
        "succeed-after" => true,
        "fail-after" => false,
        other => bail!("{other:?} is not succeed-after or fail-after"),
    };
    Ok((succeed, parse_duration(after.trim())?))
}

/// `500ms`, `2s`, `1.5s`, `1m`, `1h`.
fn parse_duration(text: &str) -> anyhow::Result<Duration> {
    let split = text
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .unwrap_or(text.len());
    let (number, unit) = text.split_at(split);
    let value: f64 = number
        .parse()
        .map_err(|_| anyhow::anyhow!("{text:?} is not a duration like 2s or 500ms"))?;
    let seconds = match unit {
        "ms" => value / 1000.0,
        "s" | "" => value,
        "m" => value * 60.0,
        "h" => value * 3600.0,
        _ => bail!("{text:?}: unit must be ms, s, m or h"),
    };
    Duration::try_from_secs_f64(seconds).map_err(|_| anyhow::anyhow!("{text:?} is out of range"))
}

/// The PodScheduled condition the pod already has (kept as is).
fn scheduled_condition(pod: &Value) -> Value {
    pod["status"]["conditions"]
        .as_array()
        .and_then(|c| c.iter().find(|c| c["type"] == "PodScheduled"))
        .cloned()
        .unwrap_or_else(
            || json!({"type": "PodScheduled", "status": "True", "lastTransitionTime": now()}),
        )
}

fn container_names(pod: &Value, field: &str) -> Vec<(String, String)> {
    pod["spec"][field]
        .as_array()
        .into_iter()
        .flatten()
        .map(|c| {
            (
                c["name"].as_str().unwrap_or("").to_string(),
                c["image"].as_str().unwrap_or("").to_string(),
            )
        })
        .collect()
}

/// Marks a pod Running and Ready with every container running.
async fn start_pod(client: &Client, node: &HollowNode, pod: &Value) -> anyhow::Result<()> {
    let stamp = now();
    let uid = pod["metadata"]["uid"].as_str().unwrap_or("");
    let condition = |kind: &str| json!({"type": kind, "status": "True", "lastProbeTime": null, "lastTransitionTime": stamp});
    let containers: Vec<Value> = container_names(pod, "containers")
        .into_iter()
        .map(|(name, image)| {
            json!({"name": name, "image": image, "imageID": format!("sim://{image}"),
                   "containerID": format!("sim://{uid}/{name}"), "ready": true, "started": true,
                   "restartCount": 0, "state": {"running": {"startedAt": stamp}}})
        })
        .collect();
    let init: Vec<Value> = container_names(pod, "initContainers")
        .into_iter()
        .map(|(name, image)| {
            json!({"name": name, "image": image, "imageID": format!("sim://{image}"),
                   "containerID": format!("sim://{uid}/{name}"), "ready": true,
                   "restartCount": 0, "state": {"terminated": {"exitCode": 0, "reason": "Completed",
                   "startedAt": stamp, "finishedAt": stamp}}})
        })
        .collect();
    let pod_ip = node.pod_ip();
    let host_ip = node.host_ip();
    let status = json!({"status": {
        "phase": "Running",
        "hostIP": host_ip,
        "hostIPs": [{"ip": host_ip}],
        "podIP": pod_ip,
        "podIPs": [{"ip": pod_ip}],
        "startTime": stamp,
        "conditions": [
            condition("PodReadyToStartContainers"),
            condition("Initialized"),
            condition("Ready"),
            condition("ContainersReady"),
            scheduled_condition(pod),
        ],
        "containerStatuses": containers,
        "initContainerStatuses": init,
    }});
    let answer = client
        .send_json_for_effect(Method::PATCH, &status_path(pod), MERGE_PATCH, &status)
        .await?;
    if answer.code == 404 {
        return Ok(());
    }
    answer.ok()?;
    Ok(())
}

/// Marks a running pod Succeeded or Failed, its containers terminated.
async fn finish_pod(client: &Client, pod: &Value, succeed: bool) -> anyhow::Result<()> {
    // The pod may have been deleted and recreated under the same name
    // meanwhile: finish only the one that was started.
    let current = client
        .send(
            Method::GET,
            &status_path(pod).replace("/status", ""),
            None,
            Vec::new(),
        )
        .await?;
    if current.code == 404 || current.body["metadata"]["uid"] != pod["metadata"]["uid"] {
        return Ok(());
    }
    let stamp = now();
    let (phase, exit_code, reason) = if succeed {
        ("Succeeded", 0, "Completed")
    } else {
        ("Failed", 1, "Error")
    };
    let started_at = current.body["status"]["startTime"]
        .as_str()
        .unwrap_or(&stamp)
        .to_string();
    let uid = pod["metadata"]["uid"].as_str().unwrap_or("");
    let containers: Vec<Value> = container_names(pod, "containers")
        .into_iter()
        .map(|(name, image)| {
            json!({"name": name, "image": image, "imageID": format!("sim://{image}"),
                   "containerID": format!("sim://{uid}/{name}"), "ready": false, "started": false,
                   "restartCount": 0, "state": {"terminated": {"exitCode": exit_code, "reason": reason,
                   "startedAt": started_at, "finishedAt": stamp}}})
        })
        .collect();
    let not_ready = |kind: &str| {
        json!({"type": kind, "status": "False", "reason": "PodCompleted", "lastProbeTime": null,
               "lastTransitionTime": stamp})
    };
    let status = json!({"status": {
        "phase": phase,
        "conditions": [
            not_ready("PodReadyToStartContainers"),
            {"type": "Initialized", "status": "True", "reason": "PodCompleted", "lastProbeTime": null, "lastTransitionTime": started_at},
            not_ready("Ready"),
            not_ready("ContainersReady"),
            scheduled_condition(&current.body),
        ],
        "containerStatuses": containers,
    }});
    let answer = client
        .send_json_for_effect(Method::PATCH, &status_path(pod), MERGE_PATCH, &status)
        .await?;
    if answer.code == 404 {
        return Ok(());
    }
    answer.ok()?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_watch_line_is_read_as_the_fields_a_hollow_node_uses() {
        let line = json!({"type": "MODIFIED", "object": {
            "apiVersion": "v1", "kind": "Pod",
            "metadata": {"name": "p", "namespace": "ns", "uid": "u", "resourceVersion": "9",
                         "labels": {"app": "x"}, "annotations": {EXIT_ANNOTATION: "fail-after=1s"},
                         "deletionTimestamp": null},
            "spec": {"nodeName": "hollow-1", "schedulerName": "default-scheduler",
                     "containers": [{"name": "c", "image": "busybox", "resources": {"requests": {"cpu": "1"}}}]},
            "status": {"phase": "Pending", "qosClass": "Burstable",
                       "conditions": [{"type": "PodScheduled", "status": "True"}]}}});
        // Decoded from bytes, as the watch does.
        let read = |line: Value| -> PodEvent {
            serde_json::from_slice(line.to_string().as_bytes()).unwrap_or_else(|e| panic!("{e}"))
        };
        let event = read(line);
        assert_eq!(event.event_type, "MODIFIED");
        assert_eq!(
            event.object.to_value(),
            json!({"metadata": {"name": "p", "namespace": "ns", "uid": "u", "resourceVersion": "9",
                                "annotations": {EXIT_ANNOTATION: "fail-after=1s"}},
                   "spec": {"nodeName": "hollow-1", "containers": [{"name": "c", "image": "busybox"}]},
                   "status": {"phase": "Pending", "conditions": [{"type": "PodScheduled", "status": "True"}]}})
        );
        // An expired watch's ERROR event carries a Status, not a pod.
        let error = read(json!({"type": "ERROR", "object": {
            "kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Failure",
            "reason": "Expired", "code": 410}}));
        assert_eq!(error.event_type, "ERROR");
        assert!(error.object.metadata.resource_version.is_none());
    }

    #[test]
    fn exit_annotations_and_durations_parse() {
        assert_eq!(
            parse_exit("succeed-after=2s").ok(),
            Some((true, Duration::from_secs(2)))
        );
        assert_eq!(
            parse_exit("fail-after=500ms").ok(),
            Some((false, Duration::from_millis(500)))
        );
        assert_eq!(
            parse_exit(" fail-after = 1.5s ").ok(),
            Some((false, Duration::from_millis(1500)))
        );
        assert_eq!(parse_duration("1m").ok(), Some(Duration::from_secs(60)));
        for bad in [
            "succeed",
            "explode-after=2s",
            "fail-after=soon",
            "fail-after=2d",
            "fail-after=-1s",
        ] {
            assert!(parse_exit(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn labels_and_taints_parse() {
        assert_eq!(
            parse_labels("zone=a, disk=ssd").ok(),
            Some(vec![
                ("zone".into(), "a".into()),
                ("disk".into(), "ssd".into())
            ])
        );
        assert!(parse_labels("novalue").is_err());
        let taints = parse_taints("gpu=true:NoSchedule,dedicated:NoExecute").unwrap_or_default();
        assert_eq!(
            taints[0],
            json!({"key": "gpu", "value": "true", "effect": "NoSchedule"})
        );
        assert_eq!(
            taints[1],
            json!({"key": "dedicated", "value": "", "effect": "NoExecute"})
        );
        assert!(parse_taints("gpu=true").is_err());
        assert!(parse_taints("gpu=true:Sometimes").is_err());
        assert!(parse_labels("").unwrap_or_default().is_empty());
    }

    #[test]
    fn addresses_are_distinct_per_node() {
        let node = |slot| HollowNode {
            name: format!("n{slot}"),
            slot,
            next_ip: Mutex::new(0),
        };
        let (a, b) = (node(0), node(300));
        assert_ne!(a.host_ip(), b.host_ip());
        assert_ne!(a.pod_cidr(), b.pod_cidr());
        assert_eq!(a.pod_ip(), "10.0.0.2");
        assert_eq!(a.pod_ip(), "10.0.0.3");
        assert_eq!(b.pod_ip(), "10.1.44.2");
        let hollow: HashSet<u32> = (0..5000).map(|i| HollowNode::slot("hollow", i)).collect();
        assert_eq!(hollow.len(), 5000);
        assert_ne!(HollowNode::slot("hollow", 0), HollowNode::slot("gpu", 0));
    }
}
