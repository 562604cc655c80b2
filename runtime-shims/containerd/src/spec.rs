//! The OCI runtime spec (config.json) of a container, written as JSON:
//! what runc reads to set up the process, its namespaces, mounts and
//! cgroup.

use serde_json::{Value, json};

/// `type_url` containerd expects for a runtime spec carried in an `Any`.
pub const SPEC_TYPE_URL: &str = "types.containerd.io/opencontainers/runtime-spec/1/Spec";
/// `type_url` of a process spec (exec).
pub const PROCESS_TYPE_URL: &str = "types.containerd.io/opencontainers/runtime-spec/1/Process";

/// The CFS period CPU quotas are expressed in (Kubernetes' default).
pub const CPU_PERIOD: u64 = 100_000;

/// What varies from one container to the next.
#[derive(Clone, Debug, Default)]
pub struct SpecInput {
    /// argv.
    pub args: Vec<String>,
    /// `NAME=value` entries.
    pub env: Vec<String>,
    /// Working directory (absolute).
    pub cwd: String,
    /// The UTS host name (the pod's name).
    pub hostname: String,
    /// The pod's network namespace to join (none: a fresh empty one).
    pub netns: Option<String>,
    /// cgroup path, e.g. `/orchd/pod<uid>/<id>`.
    pub cgroups_path: String,
    /// Memory limit in bytes.
    pub memory_limit: Option<u64>,
    /// CPU limit in millicores (becomes a CFS quota).
    pub cpu_limit_millis: Option<u64>,
    /// CPU request in millicores (becomes cpu shares).
    pub cpu_request_millis: Option<u64>,
}

/// Docker's and containerd's default capability set for containers.
const CAPABILITIES: &[&str] = &[
    "CAP_CHOWN",
    "CAP_DAC_OVERRIDE",
    "CAP_FSETID",
    "CAP_FOWNER",
    "CAP_MKNOD",
    "CAP_NET_RAW",
    "CAP_SETGID",
    "CAP_SETUID",
    "CAP_SETFCAP",
    "CAP_SETPCAP",
    "CAP_NET_BIND_SERVICE",
    "CAP_SYS_CHROOT",
    "CAP_KILL",
    "CAP_AUDIT_WRITE",
];

/// Paths hidden from the container (as containerd's default spec).
const MASKED: &[&str] = &[
    "/proc/acpi",
    "/proc/asound",
    "/proc/kcore",
    "/proc/keys",
    "/proc/latency_stats",
    "/proc/timer_list",
    "/proc/timer_stats",
    "/proc/sched_debug",
    "/sys/firmware",
    "/proc/scsi",
];

const READONLY: &[&str] = &[
    "/proc/bus",
    "/proc/fs",
    "/proc/irq",
    "/proc/sys",
    "/proc/sysrq-trigger",
];

/// cpu shares for a request of `millis` (Kubernetes' formula: 1024 per
/// core, at least 2).
pub fn cpu_shares(millis: u64) -> u64 {
    (millis * 1024 / 1000).max(2)
}

/// The CFS quota for a limit of `millis` over [`CPU_PERIOD`] (at least
/// 1 ms, the kernel's minimum).
pub fn cpu_quota(millis: u64) -> u64 {
    (millis * CPU_PERIOD / 1000).max(1000)
}

/// The process part of a spec (also what an exec runs).
pub fn process(args: &[String], env: &[String], cwd: &str) -> Value {
    let caps: Vec<&str> = CAPABILITIES.to_vec();
    json!({
        "terminal": false,
        "user": {"uid": 0, "gid": 0},
        "args": args,
        "env": env,
        "cwd": if cwd.is_empty() { "/" } else { cwd },
        "capabilities": {"bounding": caps, "effective": caps, "permitted": caps},
        "noNewPrivileges": true,
    })
}

/// The whole runtime spec.
pub fn runtime_spec(input: &SpecInput) -> Value {
    let mut namespaces = vec![
        json!({"type": "pid"}),
        json!({"type": "ipc"}),
        json!({"type": "uts"}),
        json!({"type": "mount"}),
    ];
    namespaces.push(match &input.netns {
        Some(path) => json!({"type": "network", "path": path}),
        None => json!({"type": "network"}),
    });
    let mut resources = json!({"devices": [{"allow": false, "access": "rwm"}]});
    if let Some(limit) = input.memory_limit {
        // Swap equal to the limit: no swap beyond memory (as Kubernetes).
        resources["memory"] = json!({"limit": limit, "swap": limit});
    }
    let mut cpu = serde_json::Map::new();
    if let Some(m) = input.cpu_request_millis.or(input.cpu_limit_millis) {
        cpu.insert("shares".into(), json!(cpu_shares(m)));
    }
    if let Some(m) = input.cpu_limit_millis {
        cpu.insert("quota".into(), json!(cpu_quota(m)));
        cpu.insert("period".into(), json!(CPU_PERIOD));
    }
    if !cpu.is_empty() {
        resources["cpu"] = Value::Object(cpu);
    }
    json!({
        "ociVersion": "1.0.2-dev",
        "process": process(&input.args, &input.env, &input.cwd),
        "root": {"path": "rootfs", "readonly": false},
        "hostname": input.hostname,
        "mounts": [
            {"destination": "/proc", "type": "proc", "source": "proc",
             "options": ["nosuid", "noexec", "nodev"]},
            {"destination": "/dev", "type": "tmpfs", "source": "tmpfs",
             "options": ["nosuid", "strictatime", "mode=755", "size=65536k"]},
            {"destination": "/dev/pts", "type": "devpts", "source": "devpts",
             "options": ["nosuid", "noexec", "newinstance", "ptmxmode=0666", "mode=0620", "gid=5"]},
            {"destination": "/dev/shm", "type": "tmpfs", "source": "shm",
             "options": ["nosuid", "noexec", "nodev", "mode=1777", "size=65536k"]},
            {"destination": "/dev/mqueue", "type": "mqueue", "source": "mqueue",
             "options": ["nosuid", "noexec", "nodev"]},
            {"destination": "/sys", "type": "sysfs", "source": "sysfs",
             "options": ["nosuid", "noexec", "nodev", "ro"]},
            {"destination": "/sys/fs/cgroup", "type": "cgroup", "source": "cgroup",
             "options": ["ro", "nosuid", "noexec", "nodev"]},
            {"destination": "/tmp", "type": "tmpfs", "source": "tmpfs",
             "options": ["nosuid", "nodev", "mode=1777"]},
        ],
        "linux": {
            "resources": resources,
            "cgroupsPath": input.cgroups_path,
            "namespaces": namespaces,
            "maskedPaths": MASKED,
            "readonlyPaths": READONLY,
        },
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn limits_become_cgroup_resources() {
        let spec = runtime_spec(&SpecInput {
            args: vec!["sh".into(), "-c".into(), "echo hi".into()],
            env: vec!["PATH=/bin".into()],
            cwd: String::new(),
            hostname: "web".into(),
            netns: Some("/run/orchd/netns/u1".into()),
            cgroups_path: "/orchd/podu1/c1".into(),
            memory_limit: Some(32 << 20),
            cpu_limit_millis: Some(500),
            cpu_request_millis: Some(250),
        });
        let r = &spec["linux"]["resources"];
        assert_eq!(r["memory"]["limit"], 32 << 20);
        assert_eq!(r["cpu"]["quota"], 50_000);
        assert_eq!(r["cpu"]["period"], 100_000);
        assert_eq!(r["cpu"]["shares"], 256);
        assert_eq!(spec["process"]["cwd"], "/");
        assert_eq!(spec["process"]["args"][2], "echo hi");
        assert_eq!(spec["linux"]["cgroupsPath"], "/orchd/podu1/c1");
        let ns = spec["linux"]["namespaces"].as_array().unwrap();
        assert!(
            ns.iter()
                .any(|n| n["type"] == "network" && n["path"] == "/run/orchd/netns/u1")
        );
        assert_eq!(spec["hostname"], "web");
    }

    #[test]
    fn no_limits_no_cpu_or_memory_section() {
        let spec = runtime_spec(&SpecInput::default());
        assert!(spec["linux"]["resources"].get("memory").is_none());
        assert!(spec["linux"]["resources"].get("cpu").is_none());
        assert_eq!(cpu_shares(1), 2);
        assert_eq!(cpu_quota(1), 1000);
    }
}
