//! The machine's cgroups as the runtime needs them: which version is
//! mounted (v1, or v2 unified; detected at start as `stat -fc %T
//! /sys/fs/cgroup` tells), whether a container was OOM-killed, and the
//! removal of a pod's cgroup once its containers are gone (runc removes
//! only each container's own).

use std::path::{Path, PathBuf};

/// The cgroup root.
pub const CGROUP_ROOT: &str = "/sys/fs/cgroup";

/// Which cgroup hierarchy the machine mounts.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum CgroupVersion {
    /// Legacy (or hybrid): one hierarchy per controller.
    V1,
    /// Unified.
    V2,
}

impl CgroupVersion {
    /// Detects it: `/sys/fs/cgroup` is a cgroup2 filesystem on a v2
    /// machine, a tmpfs of per-controller mounts on v1.
    pub fn detect() -> Self {
        if Path::new(CGROUP_ROOT).join("cgroup.controllers").exists() {
            CgroupVersion::V2
        } else {
            CgroupVersion::V1
        }
    }

    /// `v1` or `v2`.
    pub fn as_str(self) -> &'static str {
        match self {
            CgroupVersion::V1 => "v1",
            CgroupVersion::V2 => "v2",
        }
    }
}

/// Where a cgroup path (`/orchd/pod.../id`) lives in the memory
/// controller.
fn memory_dir(version: CgroupVersion, path: &str) -> PathBuf {
    let rel = path.trim_start_matches('/');
    match version {
        CgroupVersion::V1 => Path::new(CGROUP_ROOT).join("memory").join(rel),
        CgroupVersion::V2 => Path::new(CGROUP_ROOT).join(rel),
    }
}

/// The kernel's count of OOM kills in a cgroup: v1 `memory.oom_control`
/// (`oom_kill N`, kernel 4.13+), v2 `memory.events` (`oom_kill N`).
pub fn oom_kills(version: CgroupVersion, path: &str) -> Option<u64> {
    let file = match version {
        CgroupVersion::V1 => "memory.oom_control",
        CgroupVersion::V2 => "memory.events",
    };
    let text = std::fs::read_to_string(memory_dir(version, path).join(file)).ok()?;
    parse_oom_kills(&text)
}

/// The limits of a pod's cgroup.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct PodLimits {
    /// Memory limit, if any.
    pub memory_bytes: Option<u64>,
    /// CPU weight as v1 `cpu.shares`.
    pub cpu_shares: u64,
    /// CPU limit in millicores, if any (a CFS quota per 100 ms period).
    pub cpu_limit_millis: Option<u64>,
}

/// The CFS period the CPU limit is a quota of, in microseconds.
pub const CFS_PERIOD_US: u64 = 100_000;

/// v1 `cpu.shares` (2..262144) as v2 `cpu.weight` (1..10000), the
/// conversion runc and the kubelet use.
pub fn shares_to_weight(shares: u64) -> u64 {
    let shares = shares.clamp(2, 262_144);
    1 + ((shares - 2) * 9_999) / 262_142
}

/// The CFS quota of a CPU limit, in microseconds per [`CFS_PERIOD_US`]
/// (at least the kernel's 1 ms).
pub fn cfs_quota_us(millis: u64) -> u64 {
    (millis.saturating_mul(CFS_PERIOD_US) / 1000).max(1000)
}

/// Creates the pod cgroup `path` (e.g. `/orchd/burstable/pod<uid>`) with
/// `limits`, before its containers' cgroups are made below it. On v1 the
/// memory and cpu hierarchies get it (runc makes the others); on v2 the
/// cpu and memory controllers are enabled down to its parent. An error
/// names the write the kernel refused; what was made is removed again.
pub fn create_pod(version: CgroupVersion, path: &str, limits: &PodLimits) -> Result<(), String> {
    let made = match version {
        CgroupVersion::V1 => create_pod_v1(path, limits),
        CgroupVersion::V2 => create_pod_v2(path, limits),
    };
    if made.is_err() {
        remove(path);
    }
    made
}

fn write(dir: &Path, file: &str, value: &str) -> Result<(), String> {
    std::fs::write(dir.join(file), value).map_err(|e| {
        format!(
            "cannot write {value:?} to {}: {e}",
            dir.join(file).display()
        )
    })
}

fn mkdir(dir: &Path) -> Result<(), String> {
    std::fs::create_dir_all(dir).map_err(|e| format!("cannot create {}: {e}", dir.display()))
}

fn create_pod_v1(path: &str, limits: &PodLimits) -> Result<(), String> {
    let rel = path.trim_start_matches('/');
    let memory = Path::new(CGROUP_ROOT).join("memory").join(rel);
    mkdir(&memory)?;
    if let Some(bytes) = limits.memory_bytes {
        write(&memory, "memory.limit_in_bytes", &bytes.to_string())?;
    }
    let cpu_root = ["cpu", "cpu,cpuacct"]
        .iter()
        .map(|c| Path::new(CGROUP_ROOT).join(c))
        .find(|p| p.join("cpu.shares").exists());
    if let Some(root) = cpu_root {
        let cpu = root.join(rel);
        mkdir(&cpu)?;
        write(&cpu, "cpu.shares", &limits.cpu_shares.to_string())?;
        if let Some(millis) = limits.cpu_limit_millis {
            write(&cpu, "cpu.cfs_period_us", &CFS_PERIOD_US.to_string())?;
            write(&cpu, "cpu.cfs_quota_us", &cfs_quota_us(millis).to_string())?;
        }
    }
    Ok(())
}

fn create_pod_v2(path: &str, limits: &PodLimits) -> Result<(), String> {
    let rel = path.trim_start_matches('/');
    let root = Path::new(CGROUP_ROOT);
    // Each level down to the pod's parent hands cpu and memory on.
    let mut dir = root.to_path_buf();
    for part in Path::new(rel).iter() {
        write(&dir, "cgroup.subtree_control", "+cpu +memory")?;
        dir = dir.join(part);
        mkdir(&dir)?;
    }
    write(
        &dir,
        "memory.max",
        &limits
            .memory_bytes
            .map_or_else(|| "max".to_string(), |b| b.to_string()),
    )?;
    write(
        &dir,
        "cpu.weight",
        &shares_to_weight(limits.cpu_shares).to_string(),
    )?;
    let quota = limits
        .cpu_limit_millis
        .map_or_else(|| "max".to_string(), |m| cfs_quota_us(m).to_string());
    write(&dir, "cpu.max", &format!("{quota} {CFS_PERIOD_US}"))?;
    Ok(())
}

/// A cgroup's memory working set, as the kubelet counts it: usage less
/// inactive file cache (v1 `memory.usage_in_bytes` less `total_inactive_file`
/// of `memory.stat`; v2 `memory.current` less `inactive_file`). `None` if
/// the cgroup is not there.
pub fn memory_working_set(version: CgroupVersion, path: &str) -> Option<u64> {
    let dir = memory_dir(version, path);
    let (usage_file, inactive_key) = match version {
        CgroupVersion::V1 => ("memory.usage_in_bytes", "total_inactive_file"),
        CgroupVersion::V2 => ("memory.current", "inactive_file"),
    };
    let usage: u64 = std::fs::read_to_string(dir.join(usage_file))
        .ok()?
        .trim()
        .parse()
        .ok()?;
    let stat = std::fs::read_to_string(dir.join("memory.stat")).unwrap_or_default();
    Some(usage.saturating_sub(stat_value(&stat, inactive_key).unwrap_or(0)))
}

/// What a cgroup reports now.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Stats {
    /// Memory charged to it, page cache included.
    pub memory_usage_bytes: u64,
    /// Its memory limit; `None` when unlimited.
    pub memory_limit_bytes: Option<u64>,
    /// OOM kills in it so far.
    pub oom_kills: u64,
    /// CPU time used, in microseconds.
    pub cpu_usage_micros: u64,
}

/// A v1 "unlimited" memory limit is the largest page-aligned value; any
/// limit this large means none.
const UNLIMITED: u64 = 1 << 62;

/// The cgroup `path`'s figures; `None` if it is not there.
pub fn stats(version: CgroupVersion, path: &str) -> Option<Stats> {
    let memory = memory_dir(version, path);
    let number = |dir: &Path, file: &str| -> Option<u64> {
        std::fs::read_to_string(dir.join(file))
            .ok()?
            .trim()
            .parse()
            .ok()
    };
    match version {
        CgroupVersion::V1 => {
            let rel = path.trim_start_matches('/');
            let cpuacct = ["cpuacct", "cpu,cpuacct"]
                .iter()
                .map(|c| Path::new(CGROUP_ROOT).join(c).join(rel))
                .find(|d| d.join("cpuacct.usage").exists());
            Some(Stats {
                memory_usage_bytes: number(&memory, "memory.usage_in_bytes")?,
                memory_limit_bytes: number(&memory, "memory.limit_in_bytes")
                    .filter(|l| *l < UNLIMITED),
                oom_kills: oom_kills(version, path).unwrap_or(0),
                cpu_usage_micros: cpuacct
                    .and_then(|d| number(&d, "cpuacct.usage"))
                    .map_or(0, |ns| ns / 1000),
            })
        }
        CgroupVersion::V2 => {
            let cpu = std::fs::read_to_string(memory.join("cpu.stat")).unwrap_or_default();
            Some(Stats {
                memory_usage_bytes: number(&memory, "memory.current")?,
                memory_limit_bytes: number(&memory, "memory.max"),
                oom_kills: oom_kills(version, path).unwrap_or(0),
                cpu_usage_micros: stat_value(&cpu, "usage_usec").unwrap_or(0),
            })
        }
    }
}

/// The value of `key` in a `memory.stat` text (`key N` lines).
pub fn stat_value(text: &str, key: &str) -> Option<u64> {
    text.lines().find_map(|l| {
        let (k, v) = l.split_once(' ')?;
        (k == key).then(|| v.trim().parse().ok()).flatten()
    })
}

/// `oom_kill N` out of a `memory.oom_control` / `memory.events` text.
pub fn parse_oom_kills(text: &str) -> Option<u64> {
    text.lines().find_map(|l| {
        let (k, v) = l.split_once(' ')?;
        (k == "oom_kill").then(|| v.trim().parse().ok()).flatten()
    })
}

/// The directories a cgroup path has on this machine: one per mounted
/// hierarchy (v1 controllers, the hybrid unified one, or v2's single one).
pub fn dirs(path: &str) -> Vec<PathBuf> {
    let rel = path.trim_start_matches('/');
    let mut out = Vec::new();
    let Ok(mounts) = std::fs::read_to_string("/proc/self/mountinfo") else {
        return out;
    };
    for line in mounts.lines() {
        // mountinfo: ... mount_point ... - fstype source options
        let mut parts = line.split(" - ");
        let (Some(left), Some(right)) = (parts.next(), parts.next()) else {
            continue;
        };
        let fstype = right.split(' ').next().unwrap_or("");
        if fstype != "cgroup" && fstype != "cgroup2" {
            continue;
        }
        if let Some(mount_point) = left.split(' ').nth(4) {
            let dir = Path::new(mount_point).join(rel);
            if !out.contains(&dir) {
                out.push(dir);
            }
        }
    }
    out
}

/// Removes the cgroup `path` and everything below it in every hierarchy
/// (children first: a cgroup directory is removed with rmdir, empty of
/// processes). Returns what could not be removed.
pub fn remove(path: &str) -> Vec<String> {
    let mut left = Vec::new();
    for dir in dirs(path) {
        if dir.exists()
            && let Err(e) = remove_tree(&dir)
        {
            left.push(format!("{}: {e}", dir.display()));
        }
    }
    left
}

fn remove_tree(dir: &Path) -> std::io::Result<()> {
    for entry in std::fs::read_dir(dir)?.flatten() {
        if entry.file_type().map(|t| t.is_dir()).unwrap_or(false) {
            remove_tree(&entry.path())?;
        }
    }
    match std::fs::remove_dir(dir) {
        Err(e) if e.kind() != std::io::ErrorKind::NotFound => Err(e),
        _ => Ok(()),
    }
}

#[cfg(test)]
mod pod_tests {
    use super::*;

    #[test]
    fn cpu_conversions_match_runc_and_the_kubelet() {
        assert_eq!(shares_to_weight(2), 1);
        assert_eq!(shares_to_weight(1024), 39);
        assert_eq!(shares_to_weight(262_144), 10_000);
        assert_eq!(cfs_quota_us(250), 25_000);
        assert_eq!(cfs_quota_us(1), 1_000);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_oom_kill_counts_of_both_versions() {
        let v1 = "oom_kill_disable 0\nunder_oom 0\noom_kill 2\n";
        assert_eq!(parse_oom_kills(v1), Some(2));
        let v2 = "low 0\nhigh 0\nmax 5\noom 1\noom_kill 1\noom_group_kill 0\n";
        assert_eq!(parse_oom_kills(v2), Some(1));
        assert_eq!(parse_oom_kills("oom 3\n"), None);
    }

    #[test]
    fn a_cgroup_path_has_a_directory_per_hierarchy() {
        let dirs = dirs("/orchd/podx");
        if CgroupVersion::detect() == CgroupVersion::V1
            && Path::new("/sys/fs/cgroup/memory").exists()
        {
            assert!(
                dirs.contains(&PathBuf::from("/sys/fs/cgroup/memory/orchd/podx")),
                "{dirs:?}"
            );
        }
        assert!(dirs.iter().all(|d| d.ends_with("orchd/podx")));
    }
}
