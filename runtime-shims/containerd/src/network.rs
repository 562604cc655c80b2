//! The pod network: one network namespace per pod, held by a bind mount
//! under the agent's run directory (as CNI runtimes do, so no pause
//! container is needed), connected by the standard CNI plugins from
//! containernetworking-plugins: `bridge` (the node's bridge, `orchd0`,
//! with the gateway address on the host, so the host reaches every pod
//! IP) with `host-local` IPAM over the node's podCIDR, and `loopback`.

use std::path::{Path, PathBuf};
use std::process::Stdio;

use serde_json::{Value, json};
use tokio::io::AsyncWriteExt;

/// Where Debian's containernetworking-plugins and the upstream tarball put
/// the plugins.
const CNI_DIRS: &[&str] = &["/usr/lib/cni", "/opt/cni/bin"];

/// The node's bridge.
pub const BRIDGE: &str = "orchd0";

/// A pod's network.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PodNet {
    /// The namespace file (a bind mount of the namespace).
    pub netns: PathBuf,
    /// The pod's IPv4 address.
    pub ip: String,
}

/// Sets pods' networks up and down.
#[derive(Clone, Debug)]
pub struct Network {
    /// Namespace files: `<run>/netns/<uid>`.
    netns_dir: PathBuf,
    /// host-local's allocations.
    ipam_dir: PathBuf,
    cni_bin: PathBuf,
    subnet: String,
}

impl Network {
    /// A network over `subnet` (the node's podCIDR), keeping its state
    /// under `run_dir`. Fails if the CNI plugins are not installed.
    pub fn new(run_dir: &Path, subnet: &str) -> Result<Self, String> {
        let cni_bin = CNI_DIRS
            .iter()
            .map(PathBuf::from)
            .find(|d| d.join("bridge").is_file() && d.join("host-local").is_file())
            .ok_or_else(|| {
                format!(
                    "no CNI plugins (bridge, host-local) in {}: install containernetworking-plugins",
                    CNI_DIRS.join(" or ")
                )
            })?;
        let netns_dir = run_dir.join("netns");
        let ipam_dir = run_dir.join("cni-ipam");
        for d in [&netns_dir, &ipam_dir] {
            std::fs::create_dir_all(d)
                .map_err(|e| format!("cannot create {}: {e}", d.display()))?;
        }
        Ok(Network {
            netns_dir,
            ipam_dir,
            cni_bin,
            subnet: subnet.to_string(),
        })
    }

    /// The bridge plugin's configuration.
    pub fn bridge_config(&self) -> Value {
        json!({
            "cniVersion": "1.0.0",
            "name": "orchd",
            "type": "bridge",
            "bridge": BRIDGE,
            "isGateway": true,
            "ipMasq": false,
            "hairpinMode": true,
            "ipam": {
                "type": "host-local",
                "ranges": [[{"subnet": self.subnet}]],
                "dataDir": self.ipam_dir,
            },
        })
    }

    /// The namespace file of pod `uid`.
    pub fn netns_path(&self, uid: &str) -> PathBuf {
        self.netns_dir.join(uid)
    }

    /// Creates pod `uid`'s namespace and connects it; undoes what it did on
    /// failure.
    pub async fn setup(&self, uid: &str) -> Result<PodNet, String> {
        if uid.is_empty() || uid.contains('/') {
            return Err(format!("invalid pod uid {uid:?}"));
        }
        let netns = self.netns_path(uid);
        if !netns.exists() {
            std::fs::write(&netns, b"")
                .map_err(|e| format!("cannot create {}: {e}", netns.display()))?;
            // util-linux's unshare makes a new network namespace and
            // bind-mounts it onto the file: it outlives the process.
            let out = tokio::process::Command::new("unshare")
                .arg(format!("--net={}", netns.display()))
                .arg("true")
                .stdin(Stdio::null())
                .output()
                .await
                .map_err(|e| format!("cannot run unshare: {e}"))?;
            if !out.status.success() {
                let _ = std::fs::remove_file(&netns);
                return Err(format!(
                    "cannot create the pod's network namespace: {}",
                    String::from_utf8_lossy(&out.stderr).trim()
                ));
            }
        }
        let lo = json!({"cniVersion": "1.0.0", "name": "orchd-lo", "type": "loopback"});
        let result = async {
            self.cni("ADD", "loopback", "lo", uid, &netns, &lo).await?;
            self.cni("ADD", "bridge", "eth0", uid, &netns, &self.bridge_config())
                .await
        }
        .await;
        let result = match result {
            Ok(r) => r,
            Err(e) => {
                self.teardown(uid).await;
                return Err(e);
            }
        };
        let ip = result["ips"]
            .as_array()
            .and_then(|ips| ips.iter().find_map(|i| i["address"].as_str()))
            .and_then(|a| a.split('/').next())
            .map(str::to_string);
        match ip {
            Some(ip) => Ok(PodNet { netns, ip }),
            None => {
                self.teardown(uid).await;
                Err(format!("the bridge plugin gave no IP address: {result}"))
            }
        }
    }

    /// Disconnects pod `uid` (releasing its IP and veth) and removes its
    /// namespace. Safe to call for a pod without one.
    pub async fn teardown(&self, uid: &str) {
        if uid.is_empty() || uid.contains('/') {
            return;
        }
        let netns = self.netns_path(uid);
        // DEL releases the IP even when the namespace is already gone.
        if let Err(e) = self
            .cni("DEL", "bridge", "eth0", uid, &netns, &self.bridge_config())
            .await
        {
            eprintln!("orchd: pod {uid}: CNI DEL: {e}");
        }
        if netns.exists() {
            let _ = rustix::mount::unmount(&netns, rustix::mount::UnmountFlags::DETACH);
            if let Err(e) = std::fs::remove_file(&netns) {
                eprintln!("orchd: cannot remove {}: {e}", netns.display());
            }
        }
    }

    /// Pods with a namespace file (to clean up after a crash).
    pub fn pods(&self) -> Vec<String> {
        std::fs::read_dir(&self.netns_dir)
            .into_iter()
            .flatten()
            .flatten()
            .filter_map(|e| e.file_name().to_str().map(str::to_string))
            .collect()
    }

    /// Runs one CNI plugin command; returns its result.
    async fn cni(
        &self,
        command: &str,
        plugin: &str,
        ifname: &str,
        uid: &str,
        netns: &Path,
        config: &Value,
    ) -> Result<Value, String> {
        let mut child = tokio::process::Command::new(self.cni_bin.join(plugin))
            .env("CNI_COMMAND", command)
            .env("CNI_CONTAINERID", uid)
            .env("CNI_NETNS", netns)
            .env("CNI_IFNAME", ifname)
            .env("CNI_PATH", &self.cni_bin)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .map_err(|e| format!("cannot run the CNI plugin {plugin}: {e}"))?;
        if let Some(mut stdin) = child.stdin.take() {
            let _ = stdin.write_all(config.to_string().as_bytes()).await;
        }
        let out = child
            .wait_with_output()
            .await
            .map_err(|e| format!("CNI plugin {plugin}: {e}"))?;
        let stdout = String::from_utf8_lossy(&out.stdout);
        if !out.status.success() {
            // Errors come as a JSON object on stdout.
            let msg = serde_json::from_str::<Value>(&stdout)
                .ok()
                .and_then(|v| {
                    let m = v["msg"].as_str()?.to_string();
                    Some(match v["details"].as_str() {
                        Some(d) if !d.is_empty() => format!("{m}: {d}"),
                        _ => m,
                    })
                })
                .unwrap_or_else(|| {
                    format!("{}{}", stdout.trim(), String::from_utf8_lossy(&out.stderr))
                });
            return Err(format!("CNI {plugin} {command} failed: {msg}"));
        }
        if stdout.trim().is_empty() {
            return Ok(Value::Null);
        }
        serde_json::from_str(&stdout)
            .map_err(|e| format!("CNI {plugin} {command}: unreadable result ({e}): {stdout}"))
    }
}
