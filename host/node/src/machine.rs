//! What the node reports about its machine, measured: capacity from the
//! CPUs and /proc/meminfo, identity from /proc and /etc/os-release, and
//! the pressure conditions from free memory, free disk under the data
//! directory and the number of processes.

use std::path::Path;

use serde_json::{Value, json};

/// Kubelet's hard eviction threshold for memory (`memory.available<100Mi`),
/// subtracted from capacity for allocatable and used for MemoryPressure.
pub const MEMORY_RESERVE: u64 = 100 << 20;
/// Kubelet's `nodefs.available<10%`.
pub const DISK_MIN_FREE_PERCENT: u64 = 10;
/// PIDPressure when fewer than this share of `pid_max` is left.
pub const PID_MIN_FREE_PERCENT: u64 = 10;
/// Pods per node (the kubelet's default).
pub const MAX_PODS: u32 = 110;

/// `/proc/meminfo` field `key` in bytes.
pub fn meminfo(text: &str, key: &str) -> Option<u64> {
    text.lines().find_map(|l| {
        let rest = l.strip_prefix(key)?.strip_prefix(':')?;
        let kb: u64 = rest.split_whitespace().next()?.parse().ok()?;
        Some(kb * 1024)
    })
}

/// PRETTY_NAME of an os-release file.
pub fn os_image(text: &str) -> Option<String> {
    text.lines().find_map(|l| {
        let v = l.strip_prefix("PRETTY_NAME=")?;
        Some(v.trim().trim_matches('"').to_string())
    })
}

/// The number of processes from `/proc/loadavg` (`1.0 0.5 0.2 3/456 789`).
pub fn process_count(loadavg: &str) -> Option<u64> {
    loadavg
        .split_whitespace()
        .nth(3)?
        .split_once('/')?
        .1
        .parse()
        .ok()
}

fn read(path: &str) -> String {
    std::fs::read_to_string(path).unwrap_or_default()
}

/// Kubernetes' name of this architecture.
pub fn arch() -> &'static str {
    match std::env::consts::ARCH {
        "x86_64" => "amd64",
        "aarch64" => "arm64",
        other => other,
    }
}

/// The host name as a valid Node name (a DNS subdomain): lower-cased,
/// other characters than letters, digits, `-` and `.` turned into `-`.
pub fn hostname() -> String {
    node_name(&read("/proc/sys/kernel/hostname"))
}

/// `raw` made a valid Node name.
pub fn node_name(raw: &str) -> String {
    let name: String = raw
        .trim()
        .to_ascii_lowercase()
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '.' || c == '-' {
                c
            } else {
                '-'
            }
        })
        .take(253)
        .collect();
    let name = name.trim_matches(|c| c == '-' || c == '.');
    if name.is_empty() {
        "localhost".into()
    } else {
        name.to_string()
    }
}

/// The machine's capacity: CPUs this process may use, memory, pods.
pub fn capacity() -> (u64, u64) {
    let cpus = std::thread::available_parallelism()
        .map(|n| n.get() as u64)
        .unwrap_or(1);
    let memory = meminfo(&read("/proc/meminfo"), "MemTotal").unwrap_or(0);
    (cpus, memory)
}

/// Bytes free and total on the filesystem of `dir`.
pub fn disk(dir: &Path) -> Option<(u64, u64)> {
    let st = rustix::fs::statvfs(dir).ok()?;
    Some((
        st.f_bavail.saturating_mul(st.f_frsize),
        st.f_blocks.saturating_mul(st.f_frsize),
    ))
}

/// `status.capacity` and `status.allocatable`.
pub fn resources(data_dir: &Path) -> (Value, Value) {
    let (cpus, memory) = capacity();
    let disk_total = disk(data_dir).map_or(0, |d| d.1);
    let ki = |b: u64| format!("{}Ki", b / 1024);
    let capacity = json!({"cpu": cpus.to_string(), "memory": ki(memory),
        "ephemeral-storage": ki(disk_total), "pods": MAX_PODS.to_string()});
    let allocatable = json!({"cpu": cpus.to_string(),
        "memory": ki(memory.saturating_sub(MEMORY_RESERVE)),
        "ephemeral-storage": ki(disk_total - disk_total * DISK_MIN_FREE_PERCENT / 100),
        "pods": MAX_PODS.to_string()});
    (capacity, allocatable)
}

/// `status.nodeInfo`.
pub fn node_info(runtime_version: &str, kubelet_version: &str) -> Value {
    let trim = |s: String| s.trim().to_string();
    json!({
        "machineID": trim(read("/etc/machine-id")),
        "systemUUID": trim(read("/etc/machine-id")),
        "bootID": trim(read("/proc/sys/kernel/random/boot_id")),
        "kernelVersion": trim(read("/proc/sys/kernel/osrelease")),
        "osImage": os_image(&read("/etc/os-release")).unwrap_or_else(|| "Linux".into()),
        "containerRuntimeVersion": runtime_version,
        "kubeletVersion": kubelet_version,
        "kubeProxyVersion": "",
        "operatingSystem": "linux",
        "architecture": arch(),
    })
}

/// One pressure condition: (type, under pressure, reason, message).
pub type Pressure = (&'static str, bool, &'static str, String);

/// The eviction signals, measured now: `memory.available` (MemAvailable
/// of MemTotal) and `nodefs.available` (free space under `data_dir`).
pub fn signals(data_dir: &Path) -> Vec<crate::policy::Signal> {
    let meminfo_text = read("/proc/meminfo");
    let mut out = vec![crate::policy::Signal {
        name: "memory.available".into(),
        available_bytes: meminfo(&meminfo_text, "MemAvailable").unwrap_or(0),
        capacity_bytes: meminfo(&meminfo_text, "MemTotal").unwrap_or(0),
    }];
    if let Some((free, total)) = disk(data_dir) {
        out.push(crate::policy::Signal {
            name: "nodefs.available".into(),
            available_bytes: free,
            capacity_bytes: total,
        });
    }
    out
}

/// MemoryPressure, DiskPressure and PIDPressure, measured now. `pressed`
/// is the node policy's last word on which eviction signals are past
/// their thresholds; without one, the kubelet's default thresholds apply.
pub fn pressures(data_dir: &Path, pressed: Option<&[String]>) -> Vec<Pressure> {
    let meminfo_text = read("/proc/meminfo");
    let available = meminfo(&meminfo_text, "MemAvailable");
    let is_pressed =
        |signal: &str, default: bool| pressed.map_or(default, |p| p.iter().any(|s| s == signal));
    let memory_pressed = is_pressed(
        "memory.available",
        available.is_some_and(|a| a < MEMORY_RESERVE),
    );
    let memory = match available {
        Some(a) if memory_pressed => (
            "MemoryPressure",
            true,
            "KubeletHasInsufficientMemory",
            format!("only {} MiB of memory available", a >> 20),
        ),
        _ => (
            "MemoryPressure",
            false,
            "KubeletHasSufficientMemory",
            format!(
                "kubelet has sufficient memory available ({} MiB)",
                available.unwrap_or(0) >> 20
            ),
        ),
    };
    let measured = disk(data_dir);
    let disk_pressed = is_pressed(
        "nodefs.available",
        measured
            .is_some_and(|(free, total)| total > 0 && free * 100 / total < DISK_MIN_FREE_PERCENT),
    );
    let disk = match measured {
        Some((free, total)) if total > 0 && disk_pressed => (
            "DiskPressure",
            true,
            "KubeletHasDiskPressure",
            format!(
                "only {}% of the disk under {} is free",
                free * 100 / total,
                data_dir.display()
            ),
        ),
        _ => (
            "DiskPressure",
            false,
            "KubeletHasNoDiskPressure",
            "kubelet has no disk pressure".into(),
        ),
    };
    let pid_max: u64 = read("/proc/sys/kernel/pid_max")
        .trim()
        .parse()
        .unwrap_or(32768);
    let procs = process_count(&read("/proc/loadavg")).unwrap_or(0);
    let pid = if procs * 100 > pid_max * (100 - PID_MIN_FREE_PERCENT) {
        (
            "PIDPressure",
            true,
            "KubeletHasInsufficientPID",
            format!("{procs} of {pid_max} process IDs in use"),
        )
    } else {
        (
            "PIDPressure",
            false,
            "KubeletHasSufficientPID",
            "kubelet has sufficient PID available".into(),
        )
    };
    vec![memory, disk, pid]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_proc_and_os_release() {
        let m = "MemTotal:       16303412 kB\nMemFree:  1 kB\nMemAvailable:   8000000 kB\n";
        assert_eq!(meminfo(m, "MemTotal"), Some(16303412 * 1024));
        assert_eq!(meminfo(m, "MemAvailable"), Some(8000000 * 1024));
        assert_eq!(meminfo(m, "Mem"), None);
        assert_eq!(
            os_image("NAME=\"Debian\"\nPRETTY_NAME=\"Debian GNU/Linux 12 (bookworm)\"\n")
                .as_deref(),
            Some("Debian GNU/Linux 12 (bookworm)")
        );
        assert_eq!(process_count("0.10 0.20 0.30 2/345 6789"), Some(345));
        assert_eq!(process_count("garbage"), None);
        assert_eq!(node_name("My_Host\n"), "my-host");
        assert_eq!(node_name("-x.lan."), "x.lan");
        assert_eq!(node_name(""), "localhost");
    }

    #[test]
    fn the_real_machine_has_capacity_and_no_pressure_here() {
        let (cpus, memory) = capacity();
        assert!(cpus >= 1 && memory > MEMORY_RESERVE);
        let dir = std::env::temp_dir();
        let (cap, alloc) = resources(&dir);
        assert_eq!(cap["pods"], "110");
        assert!(alloc["memory"].as_str().unwrap().ends_with("Ki"));
        assert_eq!(pressures(&dir, None).len(), 3);
        // The node policy's word wins over the default thresholds.
        let pressed = ["memory.available".to_string()];
        let p = pressures(&dir, Some(&pressed));
        assert!(p[0].1 && p[0].2 == "KubeletHasInsufficientMemory", "{p:?}");
        assert!(!p[1].1, "{p:?}");
        let signals = signals(&dir);
        assert_eq!(signals[0].name, "memory.available");
        assert!(signals[0].available_bytes <= signals[0].capacity_bytes);
        assert_eq!(signals[1].name, "nodefs.available");
        assert!(
            !node_info("x://1", "v1").as_object().unwrap()["kernelVersion"]
                .as_str()
                .unwrap()
                .is_empty()
        );
    }
}
