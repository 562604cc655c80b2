//! orchd's node agent: registers its Node with capacity, identity and
//! conditions measured on the machine, heartbeats through its Lease in
//! `kube-node-lease`, posts its status every heartbeat, and runs the pods
//! bound to it through a container [`runtime::Runtime`]: one per
//! RuntimeClass handler, `wasm` (the embedded wasm shim) always and `runc`
//! (containerd, [`containerd`]) when a containerd socket is configured. A
//! pod's `runtimeClassName` picks the handler; pods without one get the
//! node's default.
//!
//! Writes go through the API (an [`ObjectApi`]: in `orchd up` the server
//! in-process, so validation and defaults apply as for any client); the
//! node's pods are watched in the store with the field selector
//! `spec.nodeName=<node>`, as a kubelet watches them through the API.
//!
//! Pod lifecycle policy lives in [`lifecycle`] alone, so that a later
//! `node-policy` plugin can take it over.

pub mod containerd;
pub mod lifecycle;
pub mod logs;
pub mod machine;
pub mod policy;
pub mod probe;
pub mod runtime;

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use orchd_plugin_host::access::ObjectApi;
use orchd_plugin_host::node_policy::{
    CgroupStats, CgroupVersion, NodeNetworkInfo, NodePolicySlot, NodeRuntime, PodNetworkInfo,
    PodSandbox, PodUsage,
};
use orchd_store::{EventType, FieldSelector, ListOptions, Scope, Store, StoreError, WatchOptions};
use serde_json::{Value, json};
use tokio::sync::{Notify, watch};

use crate::lifecycle::{PodContext, PodRun, PodWorker, Stop};
use crate::logs::LogFiles;
use crate::runtime::{ExecOutput, Runtime};

/// How long a Lease lasts without renewal (the kubelet's default).
const LEASE_SECONDS: i64 = 40;

/// The kubelet version nodes report.
pub const KUBELET_VERSION: &str = "v1.37.0-orchd";

/// The label saying which runtime a node runs pods with.
pub const RUNTIME_LABEL: &str = "node.orchd.dev/runtime";

const MERGE_PATCH: &str = "application/merge-patch+json";
const JSON: &str = "application/json";

/// Settings of a node agent.
#[derive(Clone, Debug)]
pub struct NodeConfig {
    /// The Node's name.
    pub name: String,
    /// Where images (`images/NAME.wasm`) and container logs (`pods/`) live;
    /// its filesystem is the one DiskPressure measures.
    pub data_dir: PathBuf,
    /// How often the Lease is renewed and the status posted.
    pub heartbeat: Duration,
    /// `spec.podCIDR`.
    pub pod_cidr: String,
    /// containerd's socket: adds the `runc` handler.
    pub containerd: Option<PathBuf>,
    /// The handler of pods without a RuntimeClass (`wasm` or `runc`).
    pub default_handler: String,
    /// How often the eviction signals are measured and checked.
    pub eviction_interval: Duration,
    /// The node policy plugin in charge of the lifecycle decisions (the
    /// plugin manager fills it); while it is empty, or when a call fails,
    /// the built-in rules (`orchd-kubelet`, natively) decide.
    pub policy: Arc<NodePolicySlot>,
}

/// The handler of the embedded wasm runtime.
pub const HANDLER_WASM: &str = "wasm";
/// The handler of containerd with runc.
pub const HANDLER_RUNC: &str = "runc";

impl NodeConfig {
    /// A node named `name` keeping its state in `data_dir`.
    pub fn new(name: String, data_dir: PathBuf) -> Self {
        NodeConfig {
            name,
            data_dir,
            heartbeat: Duration::from_secs(10),
            pod_cidr: orchd_runtime_containerd::network::DEFAULT_POD_CIDR.into(),
            containerd: None,
            default_handler: HANDLER_WASM.into(),
            eviction_interval: Duration::from_secs(10),
            policy: NodePolicySlot::new(),
        }
    }

    /// Where images named without `file://` are looked up.
    pub fn images_dir(&self) -> PathBuf {
        self.data_dir.join("images")
    }
}

/// A running node agent.
pub struct NodeAgent {
    logs: LogFiles,
    tasks: Vec<tokio::task::JoinHandle<()>>,
    inner: Arc<Inner>,
}

struct Inner {
    config: NodeConfig,
    api: Arc<dyn ObjectApi>,
    ctx: Arc<PodContext>,
    runtime_version: String,
    /// Handler → runtime.
    runtimes: HashMap<String, Arc<dyn Runtime>>,
    events: Arc<orchd_plugin_host::events::EventRecorder>,
    workers: Mutex<HashMap<String, Worker>>,
    /// Pods being stopped after their deletion.
    draining: Mutex<Vec<tokio::task::JoinHandle<()>>>,
    /// Condition type → (status, last transition time).
    transitions: Mutex<HashMap<String, (String, String)>>,
    /// The pods running now, as the node policy's `runtime` host calls
    /// and the eviction checks see them.
    pods: Arc<NodePods>,
    /// The eviction signals past their thresholds, per the node policy's
    /// last check (`None` before the first).
    pressed: Mutex<Option<Vec<String>>>,
}

/// A pod the node runs, as the eviction checks see it.
struct RunningPod {
    sandbox: PodSandbox,
    runtime: Arc<dyn Runtime>,
    run: Arc<Mutex<PodRun>>,
    changed: Arc<Notify>,
    /// Its metadata, for Events.
    pod: Value,
}

/// The pods running now and their containers: what the node policy's
/// `runtime`, `cgroups` and `network` host calls answer with.
struct NodePods {
    running: Mutex<HashMap<String, RunningPod>>,
    containers: Arc<lifecycle::Containers>,
    /// `spec.podCIDR`.
    pod_cidr: String,
    /// The pod bridge of a runtime that has one (containerd's).
    bridge: Option<String>,
}

impl NodeRuntime for NodePods {
    fn pod_sandboxes(&self) -> Vec<PodSandbox> {
        match self.running.lock() {
            Ok(r) => r.values().map(|p| p.sandbox.clone()).collect(),
            Err(_) => Vec::new(),
        }
    }

    fn pod_sandbox_stats(&self, uid: &str) -> Option<PodUsage> {
        let runtime = self.running.lock().ok()?.get(uid)?.runtime.clone();
        let containers: Vec<Arc<dyn runtime::RunningContainer>> = match self.containers.lock() {
            Ok(c) => c
                .iter()
                .filter(|((pod, _), _)| pod == uid)
                .map(|(_, c)| c.clone())
                .collect(),
            Err(_) => Vec::new(),
        };
        Some(PodUsage {
            memory_working_set_bytes: runtime.pod_memory_bytes(uid, &containers),
        })
    }

    fn cgroup_version(&self) -> CgroupVersion {
        match orchd_runtime_containerd::cgroups::CgroupVersion::detect() {
            orchd_runtime_containerd::cgroups::CgroupVersion::V1 => CgroupVersion::V1,
            orchd_runtime_containerd::cgroups::CgroupVersion::V2 => CgroupVersion::V2,
        }
    }

    fn pod_cgroup_stats(&self, uid: &str) -> Option<CgroupStats> {
        let runtime = self.running.lock().ok()?.get(uid)?.runtime.clone();
        let path = runtime.pod_cgroup(uid)?;
        let version = orchd_runtime_containerd::cgroups::CgroupVersion::detect();
        let stats = orchd_runtime_containerd::cgroups::stats(version, &path)?;
        Some(CgroupStats {
            path,
            memory_usage_bytes: stats.memory_usage_bytes,
            memory_limit_bytes: stats.memory_limit_bytes,
            oom_kills: stats.oom_kills,
            cpu_usage_micros: stats.cpu_usage_micros,
        })
    }

    fn node_network(&self) -> NodeNetworkInfo {
        NodeNetworkInfo {
            pod_cidr: self.pod_cidr.clone(),
            bridge: self.bridge.clone(),
        }
    }

    fn pod_network(&self, uid: &str) -> Option<PodNetworkInfo> {
        let running = self.running.lock().ok()?;
        let pod = running.get(uid)?;
        let ip = pod.run.lock().ok()?.pod_ip.clone().unwrap_or_default();
        Some(PodNetworkInfo {
            ip,
            netns: pod.runtime.pod_netns(uid),
        })
    }
}

/// The pod's sum of its containers' memory requests (limits where a
/// request is missing, as the API defaults them).
fn memory_requests(pod: &Value) -> u64 {
    pod["spec"]["containers"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|c| {
            let r = &c["resources"];
            let q = r["requests"]["memory"]
                .as_str()
                .or_else(|| r["limits"]["memory"].as_str())?;
            orchd_plugin_host::quantity::bytes(q).ok()
        })
        .sum()
}

/// One pod being run.
struct Worker {
    cancel: watch::Sender<Stop>,
    /// Taken by the task that finishes a graceful deletion.
    done: Option<tokio::task::JoinHandle<()>>,
}

impl NodeAgent {
    /// Registers the node and starts heartbeats and pod handling.
    pub async fn start(
        config: NodeConfig,
        store: Arc<dyn Store>,
        api: Arc<dyn ObjectApi>,
    ) -> Result<Self, String> {
        std::fs::create_dir_all(config.images_dir())
            .map_err(|e| format!("cannot create {}: {e}", config.images_dir().display()))?;
        let mut runtimes: HashMap<String, Arc<dyn Runtime>> = HashMap::new();
        runtimes.insert(
            HANDLER_WASM.into(),
            Arc::new(runtime::WasmShim::new(config.images_dir())?),
        );
        if let Some(socket) = &config.containerd {
            let shim = containerd::ContainerdShim::connect(
                socket,
                &config.data_dir.join("run"),
                &config.name,
                &config.pod_cidr,
            )
            .await?;
            println!(
                "orchd: node {}: containerd {} at {} (cgroups {}), pod network on bridge {} over {}",
                config.name,
                shim.version(),
                socket.display(),
                shim.cgroup_version(),
                shim.bridge(),
                config.pod_cidr
            );
            runtimes.insert(HANDLER_RUNC.into(), Arc::new(shim));
        }
        let runtime = runtimes
            .get(&config.default_handler)
            .cloned()
            .ok_or_else(|| {
                format!(
                    "the default runtime {:?} is not configured (handlers: {})",
                    config.default_handler,
                    handlers(&runtimes)
                )
            })?;
        let runtime_version = runtime.version();
        let events = orchd_plugin_host::events::EventRecorder::new(store.clone(), "kubelet");
        let logs = LogFiles::new(config.data_dir.join("pods"));
        let containers: Arc<lifecycle::Containers> = Arc::new(Mutex::new(HashMap::new()));
        let pods = Arc::new(NodePods {
            running: Mutex::new(HashMap::new()),
            containers: containers.clone(),
            pod_cidr: config.pod_cidr.clone(),
            bridge: runtimes.values().find_map(|r| r.bridge()),
        });
        config.policy.attach(pods.clone());
        let inner = Arc::new(Inner {
            pods,
            pressed: Mutex::new(None),
            ctx: Arc::new(PodContext {
                runtime,
                logs: logs.clone(),
                events: orchd_plugin_host::events::EventRecorder::new(store.clone(), "kubelet"),
                containers,
                pod_ip: "127.0.0.1".into(),
                policy: policy::Policy::new(config.policy.clone()),
            }),
            config,
            api,
            runtime_version,
            runtimes,
            events,
            workers: Mutex::new(HashMap::new()),
            draining: Mutex::new(Vec::new()),
            transitions: Mutex::new(HashMap::new()),
        });
        inner.register().await?;
        let heartbeat = {
            let inner = inner.clone();
            tokio::spawn(async move {
                let mut tick = tokio::time::interval(inner.config.heartbeat);
                tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
                tick.tick().await;
                loop {
                    tick.tick().await;
                    if let Err(e) = inner.renew_lease().await {
                        eprintln!("orchd: node {}: heartbeat: {e}", inner.config.name);
                    }
                    if let Err(e) = inner.post_status().await {
                        eprintln!("orchd: node {}: status: {e}", inner.config.name);
                    }
                }
            })
        };
        let pods = {
            let inner = inner.clone();
            tokio::spawn(async move { inner.pod_loop(store).await })
        };
        let pressure = tokio::spawn(inner.clone().pressure_loop());
        Ok(NodeAgent {
            logs,
            tasks: vec![heartbeat, pods, pressure],
            inner,
        })
    }

    /// The node's container logs (for the API's `pods/log`).
    pub fn logs(&self) -> LogFiles {
        self.logs.clone()
    }

    /// The node's running containers (for the API's `pods/exec`).
    pub fn execs(&self) -> NodeExec {
        NodeExec(self.inner.ctx.containers.clone())
    }

    /// Stops heartbeats and every container; the Node object stays (its
    /// Lease expires, as for a machine that went away).
    pub async fn stop(self) {
        for t in &self.tasks {
            t.abort();
        }
        let workers: Vec<Worker> = match self.inner.workers.lock() {
            Ok(mut w) => w.drain().map(|(_, w)| w).collect(),
            Err(_) => Vec::new(),
        };
        for w in &workers {
            let _ = w.cancel.send(Stop::Now);
        }
        for w in workers {
            if let Some(done) = w.done {
                let _ = tokio::time::timeout(Duration::from_secs(5), done).await;
            }
        }
        let draining: Vec<_> = match self.inner.draining.lock() {
            Ok(mut d) => d.drain(..).collect(),
            Err(_) => Vec::new(),
        };
        // Together, with one deadline: a wasm guest sleeping in a host
        // call stops only when the call returns.
        let _ =
            tokio::time::timeout(Duration::from_secs(5), futures::future::join_all(draining)).await;
        for runtime in self.inner.runtimes.values() {
            runtime.shutdown().await;
        }
    }
}

/// Runs commands in a node's running containers.
#[derive(Clone)]
pub struct NodeExec(Arc<lifecycle::Containers>);

impl NodeExec {
    /// Runs `command` in container `container` of the pod `uid` (see
    /// [`runtime::RunningContainer::exec`]); an error when it is not
    /// running here.
    pub async fn exec(
        &self,
        uid: &str,
        container: &str,
        command: Vec<String>,
        stdin: Vec<u8>,
        timeout: Duration,
    ) -> Result<ExecOutput, String> {
        let running = self
            .0
            .lock()
            .ok()
            .and_then(|m| m.get(&(uid.to_string(), container.to_string())).cloned())
            .ok_or_else(|| format!("container {container} is not running"))?;
        running.exec(command, stdin, timeout).await
    }
}

/// The handlers a node has, sorted, for messages.
fn handlers(runtimes: &HashMap<String, Arc<dyn Runtime>>) -> String {
    let mut names: Vec<&str> = runtimes.keys().map(String::as_str).collect();
    names.sort_unstable();
    names.join(", ")
}

/// The Events a kubelet records for what changed in a pod's container
/// statuses between two status reports: Started, Failed (image or
/// create errors) and BackOff.
fn container_events(
    previous: &Value,
    now: &Value,
) -> Vec<(orchd_plugin_host::events::EventType, &'static str, String)> {
    use orchd_plugin_host::events::EventType::{Normal, Warning};
    let mut out = Vec::new();
    for field in ["initContainerStatuses", "containerStatuses"] {
        for c in now[field].as_array().into_iter().flatten() {
            let name = c["name"].as_str().unwrap_or("");
            let before = previous[field]
                .as_array()
                .and_then(|l| l.iter().find(|p| p["name"] == c["name"]))
                .map(|p| &p["state"])
                .unwrap_or(&Value::Null);
            let state = &c["state"];
            if let Some(at) = state["running"]["startedAt"].as_str()
                && before["running"]["startedAt"].as_str() != Some(at)
            {
                out.push((Normal, "Started", format!("Started container {name}")));
            }
            let waiting = &state["waiting"];
            if waiting.is_null() || *waiting == before["waiting"] {
                continue;
            }
            let message = waiting["message"].as_str().unwrap_or("");
            match waiting["reason"].as_str() {
                Some("ErrImagePull") => out.push((
                    Warning,
                    "Failed",
                    format!(
                        "Failed to pull image \"{}\": {message}",
                        c["image"].as_str().unwrap_or("")
                    ),
                )),
                Some("CreateContainerError") => {
                    out.push((Warning, "Failed", format!("Error: {message}")))
                }
                Some("CrashLoopBackOff") if before["waiting"]["reason"] != "CrashLoopBackOff" => {
                    out.push((
                        Warning,
                        "BackOff",
                        format!("Back-off restarting failed container {name}"),
                    ))
                }
                _ => {}
            }
        }
    }
    out
}

fn pod_path(pod: &Value) -> String {
    format!(
        "/api/v1/namespaces/{}/pods/{}",
        pod["metadata"]["namespace"].as_str().unwrap_or("default"),
        pod["metadata"]["name"].as_str().unwrap_or("")
    )
}

impl Inner {
    async fn send(&self, method: &str, path: &str, body: &Value, ct: &str) -> (u16, Value) {
        self.api
            .send(
                method,
                path,
                Some(ct),
                serde_json::to_vec(body).unwrap_or_default(),
            )
            .await
    }

    fn host_ip(&self) -> &'static str {
        "127.0.0.1"
    }

    /// The conditions, measured now; transition times kept from before
    /// while a condition's status stays the same.
    fn conditions(&self) -> Vec<Value> {
        let now = lifecycle::stamp(jiff::Timestamp::now());
        let pressed = self.pressed.lock().ok().and_then(|p| p.clone());
        let mut list: Vec<(String, String, String, String)> =
            machine::pressures(&self.config.data_dir, pressed.as_deref())
                .into_iter()
                .map(|(kind, pressure, reason, message)| {
                    (
                        kind.to_string(),
                        if pressure { "True" } else { "False" }.to_string(),
                        reason.to_string(),
                        message,
                    )
                })
                .collect();
        list.push((
            "Ready".into(),
            "True".into(),
            "KubeletReady".into(),
            format!(
                "orchd node agent is posting ready status ({})",
                self.runtime_version
            ),
        ));
        let mut transitions = match self.transitions.lock() {
            Ok(t) => t,
            Err(p) => p.into_inner(),
        };
        list.into_iter()
            .map(|(kind, status, reason, message)| {
                let entry = transitions
                    .entry(kind.clone())
                    .or_insert((status.clone(), now.clone()));
                if entry.0 != status {
                    *entry = (status.clone(), now.clone());
                }
                json!({"type": kind, "status": status, "reason": reason, "message": message,
                       "lastHeartbeatTime": now, "lastTransitionTime": entry.1})
            })
            .collect()
    }

    fn status(&self) -> Value {
        let (capacity, allocatable) = machine::resources(&self.config.data_dir);
        json!({
            "capacity": capacity,
            "allocatable": allocatable,
            "conditions": self.conditions(),
            "addresses": [
                {"type": "InternalIP", "address": self.host_ip()},
                {"type": "Hostname", "address": machine::hostname()},
            ],
            "daemonEndpoints": {"kubeletEndpoint": {"Port": 0}},
            "nodeInfo": machine::node_info(&self.runtime_version, KUBELET_VERSION),
        })
    }

    /// Creates the Node (or takes over an existing one), then its Lease.
    async fn register(&self) -> Result<(), String> {
        let name = &self.config.name;
        let labels = json!({
            "kubernetes.io/hostname": name,
            "kubernetes.io/os": "linux",
            "kubernetes.io/arch": machine::arch(),
            RUNTIME_LABEL: self.config.default_handler,
        });
        let node = json!({
            "apiVersion": "v1", "kind": "Node",
            "metadata": {"name": name, "labels": labels},
            "spec": {"podCIDR": self.config.pod_cidr, "podCIDRs": [self.config.pod_cidr]},
            "status": self.status(),
        });
        let (code, body) = self.send("POST", "/api/v1/nodes", &node, JSON).await;
        match code {
            200..=299 => {}
            409 => {
                let path = format!("/api/v1/nodes/{name}");
                let (code, body) = self
                    .send(
                        "PATCH",
                        &path,
                        &json!({"metadata": {"labels": labels}, "spec": {"unschedulable": null}}),
                        MERGE_PATCH,
                    )
                    .await;
                if !(200..300).contains(&code) {
                    return Err(format!(
                        "cannot update node {name}: {code} {}",
                        body["message"]
                    ));
                }
                self.post_status().await?;
            }
            _ => {
                return Err(format!(
                    "cannot register node {name}: {code} {}",
                    body["message"]
                ));
            }
        }
        self.renew_lease().await
    }

    async fn post_status(&self) -> Result<(), String> {
        let path = format!("/api/v1/nodes/{}/status", self.config.name);
        let (code, body) = self
            .send(
                "PATCH",
                &path,
                &json!({"status": self.status()}),
                MERGE_PATCH,
            )
            .await;
        if (200..300).contains(&code) {
            Ok(())
        } else {
            Err(format!("{code} {}", body["message"]))
        }
    }

    /// Renews the node's Lease, creating it (owned by the Node) if missing.
    async fn renew_lease(&self) -> Result<(), String> {
        let name = &self.config.name;
        let path = format!("/apis/coordination.k8s.io/v1/namespaces/kube-node-lease/leases/{name}");
        let stamp = orchd_store::lease::now_micro();
        let (code, body) = self
            .send(
                "PATCH",
                &path,
                &json!({"spec": {"holderIdentity": name,
                "leaseDurationSeconds": LEASE_SECONDS, "renewTime": stamp}}),
                MERGE_PATCH,
            )
            .await;
        if code != 404 {
            return if (200..300).contains(&code) {
                Ok(())
            } else {
                Err(format!(
                    "cannot renew the lease: {code} {}",
                    body["message"]
                ))
            };
        }
        let (_, node) = self
            .api
            .send("GET", &format!("/api/v1/nodes/{name}"), None, Vec::new())
            .await;
        let lease = json!({
            "apiVersion": "coordination.k8s.io/v1", "kind": "Lease",
            "metadata": {"name": name, "namespace": "kube-node-lease",
                "ownerReferences": [{"apiVersion": "v1", "kind": "Node", "name": name,
                    "uid": node["metadata"]["uid"]}]},
            "spec": {"holderIdentity": name, "leaseDurationSeconds": LEASE_SECONDS,
                "acquireTime": stamp, "renewTime": stamp},
        });
        let (code, body) = self
            .send(
                "POST",
                "/apis/coordination.k8s.io/v1/namespaces/kube-node-lease/leases",
                &lease,
                JSON,
            )
            .await;
        if (200..300).contains(&code) || code == 409 {
            Ok(())
        } else {
            Err(format!(
                "cannot create the lease: {code} {}",
                body["message"]
            ))
        }
    }

    /// Every eviction interval: measures the eviction signals, asks the
    /// node policy what they mean, reports the pressure conditions it
    /// names (at once when they change) and evicts the pod it picks.
    async fn pressure_loop(self: Arc<Self>) {
        let mut tick = tokio::time::interval(self.config.eviction_interval);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tick.tick().await;
            let signals = machine::signals(&self.config.data_dir);
            let verdict = self
                .ctx
                .policy
                .check_pressure(&signals, self.pods.as_ref())
                .await;
            let changed = match self.pressed.lock() {
                Ok(mut p) => {
                    let new = Some(verdict.pressed.clone());
                    let changed = *p != new;
                    *p = new;
                    changed
                }
                Err(_) => false,
            };
            if changed && let Err(e) = self.post_status().await {
                eprintln!("orchd: node {}: status: {e}", self.config.name);
            }
            // One at a time, as the kubelet: the next check measures
            // what this one freed.
            if let Some(e) = verdict.evict.first() {
                self.evict(&e.uid, &e.message);
            }
        }
    }

    /// Evicts pod `uid`: its containers are stopped at once and it ends
    /// Failed with reason Evicted, as the kubelet's eviction manager does.
    fn evict(&self, uid: &str, message: &str) {
        use orchd_plugin_host::events::EventType;
        let pod = self
            .pods
            .running
            .lock()
            .ok()
            .and_then(|mut r| r.remove(uid));
        let Some(pod) = pod else {
            return;
        };
        if let Ok(mut run) = pod.run.lock() {
            run.evicted = Some(message.to_string());
        }
        pod.changed.notify_one();
        let mut object = pod.pod.clone();
        object["kind"] = json!("Pod");
        object["apiVersion"] = json!("v1");
        self.events
            .record(&object, EventType::Warning, "Evicted", message);
        eprintln!(
            "orchd: node {}: evicting pod {}/{}: {message}",
            self.config.name, pod.sandbox.namespace, pod.sandbox.name
        );
        if let Ok(workers) = self.workers.lock()
            && let Some(w) = workers.get(uid)
        {
            // A deadline already passed: no PreStop, no grace; the status
            // is still written (unlike a deletion's `Stop::Now`).
            w.cancel
                .send_replace(Stop::Graceful(tokio::time::Instant::now()));
        }
    }

    /// Lists and watches the node's pods, relisting after an expired or
    /// broken watch.
    async fn pod_loop(self: Arc<Self>, store: Arc<dyn Store>) {
        let mut delay = Duration::from_millis(200);
        loop {
            match self.watch_pods(store.as_ref()).await {
                Ok(()) => delay = Duration::from_millis(200),
                Err(e) => {
                    eprintln!("orchd: node {}: pod watch: {e}; retrying", self.config.name);
                    tokio::time::sleep(delay).await;
                    delay = (delay * 2).min(Duration::from_secs(5));
                }
            }
        }
    }

    async fn watch_pods(self: &Arc<Self>, store: &dyn Store) -> Result<(), StoreError> {
        use futures::StreamExt;
        let scope = Scope {
            resource: "pods".into(),
            namespace: None,
            label_selector: Default::default(),
            field_selector: FieldSelector::equals("spec.nodeName", &self.config.name),
        };
        let list = store.list(&scope, &ListOptions::default()).await?;
        let present: std::collections::HashSet<String> = list
            .items
            .iter()
            .filter_map(|p| p["metadata"]["uid"].as_str().map(str::to_string))
            .collect();
        // Pods deleted while the watch was down.
        let gone: Vec<String> = match self.workers.lock() {
            Ok(w) => w
                .keys()
                .filter(|u| !present.contains(*u))
                .cloned()
                .collect(),
            Err(_) => Vec::new(),
        };
        for uid in gone {
            self.forget(&uid);
        }
        for pod in &list.items {
            self.handle(pod);
        }
        let mut events = store
            .watch(
                &scope,
                &WatchOptions {
                    after: Some(list.revision),
                    bookmark_interval: None,
                },
            )
            .await?;
        while let Some(event) = events.next().await {
            let event = event?;
            match event.event_type {
                EventType::Added | EventType::Modified => self.handle(&event.object),
                EventType::Deleted => {
                    if let Some(uid) = event.object["metadata"]["uid"].as_str() {
                        self.forget(uid);
                    }
                }
                EventType::Bookmark => {}
            }
        }
        Ok(())
    }

    /// Stops a deleted pod's containers and drops its logs.
    fn forget(&self, uid: &str) {
        let worker = self.workers.lock().ok().and_then(|mut w| w.remove(uid));
        if let Some(w) = worker {
            let _ = w.cancel.send(Stop::Now);
            let logs = self.ctx.logs.clone();
            let uid = uid.to_string();
            // A graceful deletion's own task cleans up after its worker.
            if let Some(done) = w.done {
                self.drain(tokio::spawn(async move {
                    let _ = done.await;
                    logs.remove_pod(&uid);
                }));
            }
        }
    }

    /// Keeps a task stopping a pod (its containers, then its sandbox) for
    /// [`NodeAgent::stop`] to wait on: a pod deleted just before shutdown
    /// is still torn down completely.
    fn drain(&self, task: tokio::task::JoinHandle<()>) {
        if let Ok(mut d) = self.draining.lock() {
            d.retain(|t| !t.is_finished());
            d.push(task);
        }
    }

    /// Starts a worker for a pod new to this node, or ends one being
    /// deleted gracefully.
    fn handle(self: &Arc<Self>, pod: &Value) {
        let Some(uid) = pod["metadata"]["uid"].as_str().map(str::to_string) else {
            return;
        };
        let Ok(mut workers) = self.workers.lock() else {
            return;
        };
        if pod["metadata"]["deletionTimestamp"].is_string() {
            // Graceful deletion, as a kubelet does it: PreStop, terminate,
            // the grace period, kill; then the pod is deleted for good.
            let stop = lifecycle::grace_deadline(pod);
            let worker = workers.entry(uid.clone()).or_insert_with(|| {
                let (cancel, _) = watch::channel(Stop::Run);
                Worker { cancel, done: None }
            });
            let current = *worker.cancel.borrow();
            let sooner = match (current, stop) {
                (Stop::Run, _) | (_, Stop::Now) => true,
                (Stop::Graceful(a), Stop::Graceful(b)) => b < a,
                (Stop::Now, _) | (_, Stop::Run) => false,
            };
            let first = current == Stop::Run;
            if sooner {
                worker.cancel.send_replace(stop);
            }
            if !first {
                return;
            }
            let done = worker.done.take();
            let me = self.clone();
            let path = pod_path(pod);
            self.drain(tokio::spawn(async move {
                if let Some(done) = done {
                    let _ = done.await;
                }
                let body = json!({"gracePeriodSeconds": 0, "preconditions": {"uid": uid}});
                let (code, answer) = me.send("DELETE", &path, &body, JSON).await;
                if !(200..300).contains(&code) && code != 404 && code != 409 {
                    eprintln!(
                        "orchd: node {}: cannot delete pod {path}: {code} {}",
                        me.config.name, answer["message"]
                    );
                }
                if let Ok(mut w) = me.workers.lock() {
                    w.remove(&uid);
                }
                me.ctx.logs.remove_pod(&uid);
            }));
            return;
        }
        if workers.contains_key(&uid)
            || matches!(
                pod["status"]["phase"].as_str(),
                Some("Succeeded" | "Failed")
            )
        {
            return;
        }
        let (cancel, cancelled) = watch::channel(Stop::Run);
        let done = tokio::spawn(self.clone().run_pod(pod.clone(), cancelled));
        workers.insert(
            uid,
            Worker {
                cancel,
                done: Some(done),
            },
        );
    }

    /// The runtime of the handler `pod`'s RuntimeClass names (the node's
    /// default without one); or why there is none, as (reason, message).
    async fn runtime_for(&self, pod: &Value) -> Result<Arc<dyn Runtime>, (&'static str, String)> {
        let handler = match pod["spec"]["runtimeClassName"]
            .as_str()
            .filter(|c| !c.is_empty())
        {
            None => self.config.default_handler.clone(),
            Some(class) => {
                let path = format!("/apis/node.k8s.io/v1/runtimeclasses/{class}");
                let (code, rc) = self.api.send("GET", &path, None, Vec::new()).await;
                match code {
                    200 => rc["handler"].as_str().unwrap_or("").to_string(),
                    404 => {
                        return Err((
                            "RuntimeClassNotFound",
                            format!("RuntimeClass \"{class}\" not found"),
                        ));
                    }
                    _ => {
                        return Err((
                            "RuntimeClassError",
                            format!(
                                "cannot read RuntimeClass \"{class}\": {code} {}",
                                rc["message"]
                            ),
                        ));
                    }
                }
            }
        };
        self.runtimes.get(&handler).cloned().ok_or_else(|| {
            (
                "RuntimeHandlerNotFound",
                format!(
                    "node {} has no runtime handler \"{handler}\" (it has: {})",
                    self.config.name,
                    handlers(&self.runtimes)
                ),
            )
        })
    }

    /// Fails a pod the node cannot run (as a kubelet's admission rejects
    /// one): phase Failed with the reason, and a Warning event.
    async fn reject(&self, pod: &Value, status_path: &str, reason: &str, message: &str) {
        use orchd_plugin_host::events::EventType;
        self.events.record(pod, EventType::Warning, reason, message);
        let status = json!({"status": {"phase": "Failed", "reason": reason, "message": message}});
        let (code, body) = self.send("PATCH", status_path, &status, MERGE_PATCH).await;
        if !(200..300).contains(&code) && code != 404 {
            eprintln!(
                "orchd: node {}: cannot fail pod {}: {code} {}",
                self.config.name,
                pod_path(pod),
                body["message"]
            );
        }
    }

    /// Sets up the pod's sandbox, retrying (with a FailedCreatePodSandBox
    /// event each time) until it works or the pod is stopped.
    async fn sandbox(
        &self,
        pod: &Value,
        runtime: &dyn Runtime,
        cancel: &watch::Receiver<Stop>,
    ) -> Option<runtime::Sandbox> {
        use orchd_plugin_host::events::EventType;
        let uid = pod["metadata"]["uid"].as_str().unwrap_or("");
        let cgroup = self
            .ctx
            .policy
            .pod_cgroup(&policy::pod_resources(pod))
            .await;
        let mut delay = Duration::from_secs(1);
        loop {
            match runtime.create_sandbox(pod, &cgroup).await {
                Ok(s) => return Some(s),
                Err(e) => {
                    eprintln!(
                        "orchd: node {}: pod {}: {e}",
                        self.config.name,
                        pod_path(pod)
                    );
                    self.events.record(
                        pod,
                        EventType::Warning,
                        "FailedCreatePodSandBox",
                        &format!("Failed to create pod sandbox: {e}"),
                    );
                }
            }
            let mut cancel = cancel.clone();
            let cancelled = tokio::select! {
                _ = tokio::time::sleep(delay) => false,
                r = cancel.wait_for(|c| *c != Stop::Run) => { drop(r); true }
            };
            if cancelled {
                runtime.remove_sandbox(uid).await;
                return None;
            }
            delay = (delay * 2).min(Duration::from_secs(30));
        }
    }

    /// Runs one pod and keeps its status posted until its containers are
    /// done or it is stopped.
    async fn run_pod(self: Arc<Self>, pod: Value, cancel: watch::Receiver<Stop>) {
        let uid = pod["metadata"]["uid"].as_str().unwrap_or("").to_string();
        let worker = Arc::new(PodWorker {
            run: Arc::new(Mutex::new(PodRun::new(&pod))),
            changed: Arc::new(Notify::new()),
            pod: json!({"metadata": {
                "name": pod["metadata"]["name"],
                "namespace": pod["metadata"]["namespace"],
                "uid": pod["metadata"]["uid"],
            }}),
        });
        let scheduled = pod["status"]["conditions"]
            .as_array()
            .and_then(|c| c.iter().find(|c| c["type"] == "PodScheduled"))
            .cloned()
            .unwrap_or_else(|| json!({"type": "PodScheduled", "status": "True"}));
        let status_path = format!("{}/status", pod_path(&pod));
        let runtime = match self.runtime_for(&pod).await {
            Ok(r) => r,
            Err((reason, message)) => {
                self.reject(&pod, &status_path, reason, &message).await;
                return;
            }
        };
        let Some(sandbox) = self.sandbox(&pod, runtime.as_ref(), &cancel).await else {
            return;
        };
        if let Ok(mut run) = worker.run.lock() {
            run.pod_ip = Some(sandbox.pod_ip.clone());
            if let Some((scheme, _)) = runtime.version().split_once("://") {
                run.runtime = scheme.to_string();
            }
        }
        let handler = self
            .runtimes
            .iter()
            .find(|(_, r)| Arc::ptr_eq(r, &runtime))
            .map(|(h, _)| h.clone())
            .unwrap_or_default();
        if let Ok(mut running) = self.pods.running.lock() {
            running.insert(
                uid.clone(),
                RunningPod {
                    sandbox: PodSandbox {
                        uid: uid.clone(),
                        namespace: pod["metadata"]["namespace"]
                            .as_str()
                            .unwrap_or("")
                            .to_string(),
                        name: pod["metadata"]["name"].as_str().unwrap_or("").to_string(),
                        qos_class: pod["status"]["qosClass"]
                            .as_str()
                            .unwrap_or("BestEffort")
                            .to_string(),
                        priority: pod["spec"]["priority"]
                            .as_i64()
                            .and_then(|p| i32::try_from(p).ok())
                            .unwrap_or(0),
                        handler,
                        memory_request_bytes: memory_requests(&pod),
                    },
                    runtime: runtime.clone(),
                    run: worker.run.clone(),
                    changed: worker.changed.clone(),
                    pod: worker.pod.clone(),
                },
            );
        }
        // Probes and hooks without a `host` reach the pod's own IP (on the
        // bridge for containerd pods; 127.0.0.1 is the host's loopback).
        let ctx = Arc::new(PodContext {
            runtime: runtime.clone(),
            pod_ip: sandbox.pod_ip,
            ..(*self.ctx).clone()
        });
        let runner = {
            let (worker, pod, cancel, uid) =
                (worker.clone(), pod.clone(), cancel.clone(), uid.clone());
            // The sandbox goes once the containers have stopped.
            tokio::spawn(async move {
                worker.run(ctx, pod, cancel).await;
                runtime.remove_sandbox(&uid).await;
            })
        };
        tokio::pin!(runner);
        let mut finished = false;
        let mut previous = Value::Null;
        loop {
            let Ok(view) = worker.run.lock().map(|run| run.view()) else {
                return;
            };
            let verdict = self.ctx.policy.pod_status(&view).await;
            let status = match worker.run.lock() {
                Ok(mut run) => run.status(&verdict, self.host_ip(), scheduled.clone()),
                Err(_) => return,
            };
            for (kind, reason, message) in container_events(&previous, &status) {
                self.events.record(&pod, kind, reason, &message);
            }
            previous = status.clone();
            // A pod being deleted gracefully still reports its containers
            // ending; one deleted for good has nowhere to report to.
            if *cancel.borrow() != Stop::Now {
                let (code, body) = self
                    .send(
                        "PATCH",
                        &status_path,
                        &json!({"status": status}),
                        MERGE_PATCH,
                    )
                    .await;
                if code == 404 {
                    // Gone: the watch's DELETED event stops the containers.
                } else if !(200..300).contains(&code) {
                    eprintln!(
                        "orchd: node {}: cannot update the status of pod {}: {code} {}",
                        self.config.name,
                        pod_path(&pod),
                        body["message"]
                    );
                }
            }
            if finished {
                if let Ok(mut running) = self.pods.running.lock() {
                    running.remove(&uid);
                }
                return;
            }
            tokio::select! {
                _ = worker.changed.notified() => {}
                _ = &mut runner => finished = true,
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn container_state_changes_become_kubelet_events() {
        let status = |state: Value| json!({"containerStatuses": [{"name": "c", "image": "img", "state": state}]});
        let waiting = |reason: &str, message: &str| {
            status(json!({"waiting": {"reason": reason, "message": message}}))
        };
        let reasons = |before: &Value, now: &Value| -> Vec<(&'static str, String)> {
            container_events(before, now)
                .into_iter()
                .map(|(_, r, m)| (r, m))
                .collect()
        };
        let pulling = waiting("ErrImagePull", "image \"img\" not found");
        assert_eq!(
            reasons(&Value::Null, &pulling),
            vec![(
                "Failed",
                "Failed to pull image \"img\": image \"img\" not found".to_string()
            )]
        );
        assert!(
            reasons(&pulling, &pulling).is_empty(),
            "no repeat without a change"
        );
        let running = status(json!({"running": {"startedAt": "2026-01-01T00:00:00Z"}}));
        assert_eq!(reasons(&pulling, &running)[0].0, "Started");
        assert!(reasons(&running, &running).is_empty());
        let backoff = waiting("CrashLoopBackOff", "back-off 10s");
        assert_eq!(reasons(&running, &backoff)[0].0, "BackOff");
        let longer = waiting("CrashLoopBackOff", "back-off 20s");
        assert!(
            reasons(&backoff, &longer).is_empty(),
            "one BackOff per entry into it"
        );
        let create = waiting("CreateContainerError", "exec: \"x\": not found");
        assert_eq!(
            reasons(&backoff, &create),
            vec![("Failed", "Error: exec: \"x\": not found".to_string())]
        );
    }
}
