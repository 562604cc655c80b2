//! The `runc` RuntimeClass handler: real Linux containers through
//! containerd ([`orchd_runtime_containerd`]). A pod's sandbox is its
//! network namespace on the node's CNI bridge plus its cgroup
//! (`/orchd/pod<uid>`, the parent of its containers' cgroups); both go
//! when the pod does.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use orchd_runtime_containerd as ctrd;
use serde_json::Value;

use crate::policy::PodCgroup;
use crate::runtime::{
    ContainerConfig, ContainerExit, ExecOutput, ExitReason, RunningContainer, Runtime, Sandbox,
    StartError,
};

/// The cgroup every pod's cgroup sits below.
pub const CGROUP_ROOT: &str = "/orchd";

/// A pod's sandbox as this shim keeps it.
#[derive(Clone, Debug)]
struct PodSandbox {
    netns: PathBuf,
    name: String,
    /// Its cgroup, its containers' parent.
    cgroup: String,
}

/// The containerd runtime of a node.
pub struct ContainerdShim {
    client: ctrd::Containerd,
    network: ctrd::network::Network,
    node: String,
    version: String,
    sandboxes: Mutex<HashMap<String, PodSandbox>>,
}

/// The QoS cgroups below [`CGROUP_ROOT`] a pod's may sit in (Guaranteed
/// pods' sit directly in the root).
pub const QOS_PARENTS: [&str; 3] = ["", "burstable", "besteffort"];

/// The cgroup of pod `uid` under the QoS cgroup `parent`.
pub fn pod_cgroup(parent: &str, uid: &str) -> String {
    if parent.is_empty() {
        format!("{CGROUP_ROOT}/pod{uid}")
    } else {
        format!("{CGROUP_ROOT}/{parent}/pod{uid}")
    }
}

/// Removes pod `uid`'s cgroup wherever it is; returns what could not be.
fn remove_pod_cgroups(uid: &str) -> Vec<String> {
    QOS_PARENTS
        .iter()
        .flat_map(|parent| ctrd::cgroups::remove(&pod_cgroup(parent, uid)))
        .collect()
}

impl ContainerdShim {
    /// Connects to containerd at `socket` for node `node` whose pods get
    /// addresses from `pod_cidr`; keeps FIFOs and namespaces under
    /// `run_dir`. Removes what a previous run of this node left behind.
    pub async fn connect(
        socket: &Path,
        run_dir: &Path,
        node: &str,
        pod_cidr: &str,
    ) -> Result<Self, String> {
        let client = ctrd::Containerd::connect(socket, run_dir).await?;
        let version = client.version().await?;
        let network = ctrd::network::Network::new(run_dir, pod_cidr)?;
        let shim = ContainerdShim {
            client,
            network,
            node: node.to_string(),
            version,
            sandboxes: Mutex::new(HashMap::new()),
        };
        let left = shim.client.remove_leftovers(node).await?;
        for uid in shim.network.pods() {
            shim.network.teardown(&uid).await;
            remove_pod_cgroups(&uid);
        }
        if left > 0 {
            println!("orchd: node {node}: removed {left} containers left by an earlier run");
        }
        Ok(shim)
    }

    /// The bridge this node's pods are on.
    pub fn bridge(&self) -> &str {
        self.network.bridge()
    }

    /// containerd's cgroup version, as detected.
    pub fn cgroup_version(&self) -> &'static str {
        self.client.cgroup_version().as_str()
    }
}

fn strings(v: &Value) -> Vec<String> {
    v.as_array()
        .into_iter()
        .flatten()
        .filter_map(|s| s.as_str().map(str::to_string))
        .collect()
}

/// CPU request in millicores from a container spec.
fn cpu_request(spec: &Value) -> Option<u64> {
    let q = &spec["resources"]["requests"]["cpu"];
    let q = q
        .as_str()
        .map(str::to_string)
        .or_else(|| q.as_f64().map(|n| n.to_string()))?;
    orchd_plugin_host::quantity::millicpu(&q).ok()
}

struct CtrdContainer(ctrd::Container);

#[async_trait::async_trait]
impl RunningContainer for CtrdContainer {
    fn id(&self) -> String {
        self.0.id.clone()
    }

    fn started_at(&self) -> jiff::Timestamp {
        self.0.started_at
    }

    fn stopper(&self) -> Box<dyn Fn() + Send + Sync> {
        self.0.stopper()
    }

    async fn wait(&self) -> ContainerExit {
        let exit = self.0.wait().await;
        ContainerExit {
            code: exit.code,
            reason: match exit.reason {
                ctrd::ExitReason::Completed => ExitReason::Completed,
                ctrd::ExitReason::Error => ExitReason::Error,
                ctrd::ExitReason::OomKilled => ExitReason::OomKilled,
                ctrd::ExitReason::Killed => ExitReason::Killed,
            },
            message: exit.message,
            finished_at: exit.finished_at,
        }
    }

    fn terminate(&self) {
        self.0.terminate();
    }

    async fn exec(
        &self,
        command: Vec<String>,
        stdin: Vec<u8>,
        timeout: std::time::Duration,
    ) -> Result<ExecOutput, String> {
        let (code, stdout, stderr) = self.0.exec(command, stdin, timeout).await?;
        Ok(ExecOutput {
            code,
            stdout,
            stderr,
        })
    }
}

#[async_trait::async_trait]
impl Runtime for ContainerdShim {
    fn version(&self) -> String {
        format!("containerd://{}", self.version)
    }

    async fn start(
        &self,
        config: ContainerConfig,
    ) -> Result<Box<dyn RunningContainer>, StartError> {
        let sandbox = self
            .sandboxes
            .lock()
            .ok()
            .and_then(|s| s.get(&config.pod_uid).cloned())
            .ok_or_else(|| StartError::Create(format!("pod {} has no sandbox", config.pod_uid)))?;
        let spec = &config.spec;
        let started = self
            .client
            .start(ctrd::ContainerSpec {
                pod_uid: config.pod_uid.clone(),
                pod_name: sandbox.name,
                node: self.node.clone(),
                name: config.name,
                attempt: config.attempt,
                image: config.image,
                command: strings(&spec["command"]),
                args: strings(&spec["args"]),
                env: config.env,
                working_dir: spec["workingDir"].as_str().map(str::to_string),
                memory_limit: config.memory_limit,
                cpu_limit_millis: config.cpu_millis,
                cpu_request_millis: cpu_request(spec),
                netns: Some(sandbox.netns),
                cgroup_parent: sandbox.cgroup,
                log_path: config.log_path,
            })
            .await
            .map_err(|e| match e {
                ctrd::StartError::Image(m) => StartError::Image(m),
                ctrd::StartError::Create(m) => StartError::Create(m),
                ctrd::StartError::Start(m) => StartError::Start(m),
            })?;
        Ok(Box::new(CtrdContainer(started)))
    }

    /// Deletes the pod bridge once no pod namespace is left.
    async fn shutdown(&self) {
        match self.network.remove_bridge().await {
            Ok(true) => println!(
                "orchd: node {}: removed the pod bridge {}",
                self.node,
                self.network.bridge()
            ),
            Ok(false) => {}
            Err(e) => eprintln!("orchd: node {}: {e}", self.node),
        }
    }

    /// The pod's cgroup first (under its QoS parent, with its limits: a
    /// write the kernel refuses fails the sandbox with its message), then
    /// its network.
    async fn create_sandbox(&self, pod: &Value, cgroup: &PodCgroup) -> Result<Sandbox, String> {
        let uid = pod["metadata"]["uid"].as_str().unwrap_or("");
        let path = pod_cgroup(&cgroup.parent, uid);
        let limits = ctrd::cgroups::PodLimits {
            memory_bytes: cgroup.memory_limit_bytes,
            cpu_shares: cgroup.cpu_shares,
            cpu_limit_millis: cgroup.cpu_limit_millis,
        };
        ctrd::cgroups::create_pod(self.client.cgroup_version(), &path, &limits)
            .map_err(|e| format!("pod cgroup {path}: {e}"))?;
        let net = match self.network.setup(uid).await {
            Ok(net) => net,
            Err(e) => {
                ctrd::cgroups::remove(&path);
                return Err(e);
            }
        };
        if let Ok(mut s) = self.sandboxes.lock() {
            s.insert(
                uid.to_string(),
                PodSandbox {
                    netns: net.netns,
                    name: pod["metadata"]["name"].as_str().unwrap_or("").to_string(),
                    cgroup: path,
                },
            );
        }
        Ok(Sandbox { pod_ip: net.ip })
    }

    async fn remove_sandbox(&self, uid: &str) {
        let sandbox = self.sandboxes.lock().ok().and_then(|mut s| s.remove(uid));
        self.network.teardown(uid).await;
        let left = match sandbox {
            Some(s) => ctrd::cgroups::remove(&s.cgroup),
            None => remove_pod_cgroups(uid),
        };
        for left in left {
            eprintln!("orchd: pod {uid}: cannot remove cgroup {left}");
        }
    }

    fn pod_cgroup(&self, uid: &str) -> Option<String> {
        self.sandboxes
            .lock()
            .ok()?
            .get(uid)
            .map(|s| s.cgroup.clone())
    }

    fn pod_netns(&self, uid: &str) -> Option<String> {
        let s = self.sandboxes.lock().ok()?;
        s.get(uid).map(|s| s.netns.display().to_string())
    }

    fn bridge(&self) -> Option<String> {
        Some(ContainerdShim::bridge(self).to_string())
    }

    /// The pod cgroup's working set: every container's memory at once.
    fn pod_memory_bytes(&self, uid: &str, running: &[Arc<dyn RunningContainer>]) -> u64 {
        let _ = running;
        let cgroup = self
            .sandboxes
            .lock()
            .ok()
            .and_then(|s| s.get(uid).map(|s| s.cgroup.clone()));
        cgroup
            .and_then(|c| ctrd::cgroups::memory_working_set(self.client.cgroup_version(), &c))
            .unwrap_or(0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn reads_cpu_requests_and_string_lists() {
        assert_eq!(
            cpu_request(&json!({"resources": {"requests": {"cpu": "250m"}}})),
            Some(250)
        );
        assert_eq!(
            cpu_request(&json!({"resources": {"requests": {"cpu": 2}}})),
            Some(2000)
        );
        assert_eq!(cpu_request(&json!({})), None);
        assert_eq!(strings(&json!(["a", 1, "b"])), vec!["a", "b"]);
        assert_eq!(pod_cgroup("", "u"), "/orchd/podu");
        assert_eq!(pod_cgroup("besteffort", "u"), "/orchd/besteffort/podu");
    }
}
