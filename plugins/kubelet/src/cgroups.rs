//! A pod's cgroup from its resources, as the kubelet's QoS cgroup manager
//! sets it: Guaranteed pods directly under the node's root, Burstable and
//! BestEffort ones under `burstable` and `besteffort`; CPU shares from the
//! pod's CPU requests (BestEffort: the minimum, 2); a CPU limit and a
//! memory limit only when every container has one (then their sum). The
//! pod's effective value of a resource is the larger of its biggest init
//! container's and the sum of its app containers', plus the RuntimeClass
//! overhead.

use orchd_sdk::node_policy::{ContainerResources, PodCgroup, PodResources};

/// The least `cpu.shares` the kernel takes (and BestEffort pods get).
pub const MIN_SHARES: u64 = 2;
/// The most.
pub const MAX_SHARES: u64 = 262_144;

/// Kubernetes' conversion: 1024 shares per CPU, at least [`MIN_SHARES`].
pub fn shares(milli_cpu: u64) -> u64 {
    (milli_cpu.saturating_mul(1024) / 1000).clamp(MIN_SHARES, MAX_SHARES)
}

/// The pod's value of one resource: `None` if `field` is missing from
/// some container that counts (for limits: then the pod has none).
fn effective(
    containers: &[ContainerResources],
    field: impl Fn(&ContainerResources) -> Option<u64>,
    missing_as_zero: bool,
) -> Option<u64> {
    let mut app: u64 = 0;
    let mut init: u64 = 0;
    for c in containers {
        let v = match field(c) {
            Some(v) => v,
            None if missing_as_zero => 0,
            None => return None,
        };
        if c.init {
            init = init.max(v);
        } else {
            app = app.saturating_add(v);
        }
    }
    Some(app.max(init))
}

/// The pod's cgroup.
pub fn pod_cgroup(pod: &PodResources) -> PodCgroup {
    let parent = match pod.qos_class.as_str() {
        "Guaranteed" => "",
        "BestEffort" => "besteffort",
        _ => "burstable",
    }
    .to_string();
    if pod.qos_class == "BestEffort" {
        return PodCgroup {
            parent,
            memory_limit_bytes: None,
            cpu_shares: MIN_SHARES,
            cpu_limit_millis: None,
        };
    }
    let c = &pod.containers;
    let cpu_request = effective(c, |r| r.cpu_request_millis.or(r.cpu_limit_millis), true)
        .unwrap_or(0)
        .saturating_add(pod.overhead_cpu_millis);
    let with_overhead = |v: u64, overhead: u64| v.saturating_add(overhead);
    PodCgroup {
        parent,
        memory_limit_bytes: effective(c, |r| r.memory_limit_bytes, false)
            .map(|v| with_overhead(v, pod.overhead_memory_bytes)),
        cpu_shares: shares(cpu_request),
        cpu_limit_millis: effective(c, |r| r.cpu_limit_millis, false)
            .map(|v| with_overhead(v, pod.overhead_cpu_millis)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn res(
        init: bool,
        cpu: (Option<u64>, Option<u64>),
        mem: (Option<u64>, Option<u64>),
    ) -> ContainerResources {
        ContainerResources {
            init,
            cpu_request_millis: cpu.0,
            cpu_limit_millis: cpu.1,
            memory_request_bytes: mem.0,
            memory_limit_bytes: mem.1,
        }
    }

    fn pod(qos: &str, containers: Vec<ContainerResources>) -> PodResources {
        PodResources {
            qos_class: qos.into(),
            containers,
            overhead_cpu_millis: 0,
            overhead_memory_bytes: 0,
        }
    }

    #[test]
    fn qos_classes_pick_the_parent_and_best_effort_gets_minimum_shares() {
        let g = pod_cgroup(&pod(
            "Guaranteed",
            vec![res(
                false,
                (Some(500), Some(500)),
                (Some(64 << 20), Some(64 << 20)),
            )],
        ));
        assert_eq!(g.parent, "");
        assert_eq!(g.memory_limit_bytes, Some(64 << 20));
        assert_eq!(g.cpu_shares, 512);
        assert_eq!(g.cpu_limit_millis, Some(500));
        let b = pod_cgroup(&pod(
            "BestEffort",
            vec![res(false, (None, None), (None, None))],
        ));
        assert_eq!(
            (
                b.parent.as_str(),
                b.cpu_shares,
                b.memory_limit_bytes,
                b.cpu_limit_millis
            ),
            ("besteffort", 2, None, None)
        );
    }

    #[test]
    fn a_burstable_pod_is_limited_only_when_every_container_is() {
        let limited = res(
            false,
            (Some(100), Some(200)),
            (Some(10 << 20), Some(20 << 20)),
        );
        let open = res(false, (Some(300), None), (Some(5 << 20), None));
        let p = pod_cgroup(&pod("Burstable", vec![limited, open]));
        assert_eq!(p.parent, "burstable");
        assert_eq!(p.cpu_shares, shares(400));
        assert_eq!((p.memory_limit_bytes, p.cpu_limit_millis), (None, None));
        let p = pod_cgroup(&pod("Burstable", vec![limited, limited]));
        assert_eq!(p.memory_limit_bytes, Some(40 << 20));
        assert_eq!(p.cpu_limit_millis, Some(400));
    }

    #[test]
    fn init_containers_count_as_the_largest_of_them_and_overhead_adds_on() {
        let mut p = pod(
            "Guaranteed",
            vec![
                res(
                    true,
                    (Some(900), Some(900)),
                    (Some(100 << 20), Some(100 << 20)),
                ),
                res(
                    false,
                    (Some(200), Some(200)),
                    (Some(30 << 20), Some(30 << 20)),
                ),
                res(
                    false,
                    (Some(200), Some(200)),
                    (Some(30 << 20), Some(30 << 20)),
                ),
            ],
        );
        p.overhead_memory_bytes = 1 << 20;
        p.overhead_cpu_millis = 10;
        let c = pod_cgroup(&p);
        assert_eq!(c.memory_limit_bytes, Some((100 << 20) + (1 << 20)));
        assert_eq!(c.cpu_limit_millis, Some(910));
        assert_eq!(c.cpu_shares, shares(910));
        assert_eq!(shares(0), 2);
        assert_eq!(shares(1_000_000), MAX_SHARES);
    }
}
