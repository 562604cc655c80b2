//! The pod network: one network namespace per pod, held by a bind mount
//! under the agent's run directory (as CNI runtimes do, so no pause
//! container is needed), connected by the standard CNI plugins from
//! containernetworking-plugins: `bridge` (the node's bridge, `orchd0`
//! for the default podCIDR, with the gateway address on the host, so the
//! host reaches every pod IP) with `host-local` IPAM over the node's
//! podCIDR, and `loopback`. A bridge carries one IPv4 gateway (the bridge
//! plugin refuses a second), so each podCIDR has a bridge of its own
//! ([`bridge_name`]): two nodes on one machine need different podCIDRs.

use std::path::{Path, PathBuf};
use std::process::Stdio;

use serde_json::{Value, json};
use tokio::io::AsyncWriteExt;

/// Where Debian's containernetworking-plugins and the upstream tarball put
/// the plugins.
const CNI_DIRS: &[&str] = &["/usr/lib/cni", "/opt/cni/bin"];

/// The bridge of the default podCIDR ([`DEFAULT_POD_CIDR`]).
pub const BRIDGE: &str = "orchd0";

/// The podCIDR of a node unless configured.
pub const DEFAULT_POD_CIDR: &str = "10.244.0.0/24";

/// Checks an IPv4 CIDR (`a.b.c.d/n`, n from 8 to 30, no host bits set);
/// returns its network address and prefix length.
pub fn parse_cidr(cidr: &str) -> Result<(std::net::Ipv4Addr, u8), String> {
    let bad = |why: &str| format!("invalid pod CIDR {cidr:?}: {why}");
    let (addr, len) = cidr.split_once('/').ok_or_else(|| bad("no /prefix"))?;
    let addr: std::net::Ipv4Addr = addr.parse().map_err(|_| bad("not an IPv4 address"))?;
    let len: u8 = len.parse().map_err(|_| bad("bad prefix length"))?;
    // Below /30 there is no room for a gateway and a pod.
    if !(8..=30).contains(&len) {
        return Err(bad("the prefix length must be 8 to 30"));
    }
    let mask = u32::MAX << (32 - u32::from(len));
    if u32::from(addr) & !mask != 0 {
        return Err(bad("host bits are set"));
    }
    Ok((addr, len))
}

/// The bridge of the pods of `cidr`: [`BRIDGE`] for the default one,
/// else `orchd` and the network address in hex (at most 15 characters,
/// the kernel's limit).
pub fn bridge_name(cidr: &str) -> String {
    match parse_cidr(cidr) {
        Ok(_) if cidr == DEFAULT_POD_CIDR => BRIDGE.to_string(),
        Ok((addr, _)) => format!("orchd{:08x}", u32::from(addr)),
        Err(_) => BRIDGE.to_string(),
    }
}

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
    bridge: String,
}

impl Network {
    /// A network over `subnet` (the node's podCIDR), keeping its state
    /// under `run_dir`. Fails if the CNI plugins are not installed or the
    /// subnet is no IPv4 CIDR.
    pub fn new(run_dir: &Path, subnet: &str) -> Result<Self, String> {
        parse_cidr(subnet)?;
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
            bridge: bridge_name(subnet),
        })
    }

    /// The bridge its pods are on.
    pub fn bridge(&self) -> &str {
        &self.bridge
    }

    /// Deletes the bridge (and with it the gateway address) once no pod
    /// uses it: none of this network's namespaces is left and no interface
    /// is attached to it (another agent's pods on this machine would be).
    /// Returns whether it deleted it.
    pub async fn remove_bridge(&self) -> Result<bool, String> {
        if !self.pods().is_empty() {
            return Ok(false);
        }
        let dir = Path::new("/sys/class/net").join(&self.bridge);
        if !dir.exists() {
            return Ok(false);
        }
        let ports = std::fs::read_dir(dir.join("brif"))
            .map(|d| d.count())
            .unwrap_or(0);
        if ports > 0 {
            return Ok(false);
        }
        let out = tokio::process::Command::new("ip")
            .args(["link", "delete", &self.bridge, "type", "bridge"])
            .stdin(Stdio::null())
            .output()
            .await
            .map_err(|e| format!("cannot run ip: {e}"))?;
        if !out.status.success() {
            return Err(format!(
                "cannot delete the bridge {}: {}",
                self.bridge,
                String::from_utf8_lossy(&out.stderr).trim()
            ));
        }
        Ok(true)
    }

    /// The bridge plugin's configuration.
    pub fn bridge_config(&self) -> Value {
        json!({
            "cniVersion": "1.0.0",
            "name": "orchd",
            "type": "bridge",
            "bridge": self.bridge,
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cidrs_are_checked() {
        assert_eq!(
            parse_cidr("10.244.0.0/24"),
            Ok((std::net::Ipv4Addr::new(10, 244, 0, 0), 24))
        );
        for bad in [
            "10.244.0.0",
            "10.244.0.1/24",
            "10.244.0.0/31",
            "fd00::/64",
            "x/24",
            "10.0.0.0/7",
        ] {
            assert!(parse_cidr(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn each_pod_cidr_has_its_own_bridge() {
        assert_eq!(bridge_name(DEFAULT_POD_CIDR), "orchd0");
        let other = bridge_name("10.245.0.0/24");
        assert_eq!(other, "orchd0af50000");
        assert!(other.len() <= 15);
        assert_ne!(bridge_name("10.245.1.0/24"), other);
    }
}
