//! Node-pressure eviction, as the kubelet's eviction manager decides it:
//! hard thresholds on the measured signals (`memory.available<100Mi` and
//! `nodefs.available<10%` by default, `evictionHard` in the Plugin's
//! `spec.config`), and under memory pressure one pod evicted per check,
//! ranked as the kubelet ranks them: pods using more memory than they
//! request first, then the lowest priority, then the largest use above
//! the request.
//!
//! Pure functions of the signals, the thresholds and the pods' use, so the
//! component (which reads the pods through the `runtime` host calls) and
//! the node's native fallback (which has them at hand) decide alike. Disk
//! pressure is reported but evicts nothing: the node measures no pod's
//! disk use.

use orchd_sdk::node_policy::runtime::PodSandbox;
use orchd_sdk::node_policy::{Eviction, PressureVerdict, Signal};
use orchd_sdk::quantity;
use orchd_sdk::serde_json::{self, Value};

/// The signal of free memory.
pub const MEMORY: &str = "memory.available";
/// The signal of free disk under the node's data directory.
pub const NODEFS: &str = "nodefs.available";

/// A hard eviction threshold.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Threshold {
    /// Below this many bytes available.
    Bytes(u64),
    /// Below this share of capacity, in hundredths of a percent.
    Basis(u64),
}

impl Threshold {
    /// `100Mi` or `10%` (`12.5%`).
    pub fn parse(text: &str) -> Result<Threshold, String> {
        let text = text.trim();
        if let Some(pct) = text.strip_suffix('%') {
            let value: f64 = pct
                .trim()
                .parse()
                .map_err(|_| format!("{text:?} is not a percentage"))?;
            if !(0.0..=100.0).contains(&value) {
                return Err(format!("{text:?} is not between 0% and 100%"));
            }
            return Ok(Threshold::Basis((value * 100.0).round() as u64));
        }
        quantity::parse_bytes(text)
            .map(Threshold::Bytes)
            .ok_or_else(|| format!("{text:?} is neither a quantity (100Mi) nor a percentage (10%)"))
    }

    /// The threshold in bytes for a signal of `capacity` bytes.
    pub fn bytes(self, capacity: u64) -> u64 {
        match self {
            Threshold::Bytes(b) => b,
            Threshold::Basis(bp) => {
                u64::try_from(u128::from(capacity) * u128::from(bp) / 10_000).unwrap_or(u64::MAX)
            }
        }
    }
}

/// The hard thresholds in force.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Thresholds {
    /// `memory.available`.
    pub memory: Threshold,
    /// `nodefs.available`.
    pub nodefs: Threshold,
}

impl Default for Thresholds {
    /// The kubelet's defaults.
    fn default() -> Self {
        Thresholds {
            memory: Threshold::Bytes(100 << 20),
            nodefs: Threshold::Basis(1_000),
        }
    }
}

impl Thresholds {
    /// From the Plugin's `spec.config`: empty, or JSON such as
    /// `{"evictionHard": {"memory.available": "500Mi", "nodefs.available": "5%"}}`;
    /// signals not named keep their defaults.
    pub fn from_config(config: &str) -> Result<Thresholds, String> {
        let mut t = Thresholds::default();
        if config.trim().is_empty() {
            return Ok(t);
        }
        let value: Value =
            serde_json::from_str(config).map_err(|e| format!("spec.config is not JSON: {e}"))?;
        let Some(hard) = value.get("evictionHard") else {
            return Ok(t);
        };
        let hard = hard
            .as_object()
            .ok_or("spec.config.evictionHard must be an object of signal: threshold")?;
        for (signal, threshold) in hard {
            let text = threshold
                .as_str()
                .ok_or_else(|| format!("evictionHard.{signal} must be a string"))?;
            let parsed =
                Threshold::parse(text).map_err(|e| format!("evictionHard.{signal}: {e}"))?;
            match signal.as_str() {
                MEMORY => t.memory = parsed,
                NODEFS => t.nodefs = parsed,
                other => {
                    return Err(format!(
                        "evictionHard: unknown signal {other:?} ({MEMORY} or {NODEFS})"
                    ));
                }
            }
        }
        Ok(t)
    }

    fn of(&self, signal: &str) -> Option<Threshold> {
        match signal {
            MEMORY => Some(self.memory),
            NODEFS => Some(self.nodefs),
            _ => None,
        }
    }
}

/// A pod and the memory it uses now.
pub type PodUse = (PodSandbox, u64);

/// Which signals are past their thresholds, and under memory pressure the
/// pod to evict. `pods` is asked for only under memory pressure.
pub fn check(
    signals: &[Signal],
    thresholds: &Thresholds,
    pods: impl FnOnce() -> Vec<PodUse>,
) -> PressureVerdict {
    let mut pressed = Vec::new();
    let mut memory = None;
    for s in signals {
        let Some(t) = thresholds.of(&s.name) else {
            continue;
        };
        let limit = t.bytes(s.capacity_bytes);
        if s.available_bytes < limit {
            pressed.push(s.name.clone());
            if s.name == MEMORY {
                memory = Some((limit, s.available_bytes));
            }
        }
    }
    let mut evict = Vec::new();
    if let Some((limit, available)) = memory {
        let mut pods = pods();
        rank_for_memory(&mut pods);
        if let Some((pod, used)) = pods.first() {
            evict.push(Eviction {
                uid: pod.uid.clone(),
                message: format!(
                    "The node was low on resource: memory. Threshold quantity: {}, available: {}. \
                     Pod {}/{} was using {}, request is {}.",
                    human(limit),
                    human(available),
                    pod.namespace,
                    pod.name,
                    human(*used),
                    human(pod.memory_request_bytes)
                ),
            });
        }
    }
    PressureVerdict { pressed, evict }
}

/// The kubelet's order under memory pressure: use above request first,
/// then lower priority, then more use above request.
pub fn rank_for_memory(pods: &mut [PodUse]) {
    pods.sort_by(|(a, a_used), (b, b_used)| {
        let exceeds = |p: &PodSandbox, used: u64| used > p.memory_request_bytes;
        let over =
            |p: &PodSandbox, used: u64| i128::from(used) - i128::from(p.memory_request_bytes);
        exceeds(b, *b_used)
            .cmp(&exceeds(a, *a_used))
            .then(a.priority.cmp(&b.priority))
            .then(over(b, *b_used).cmp(&over(a, *a_used)))
            .then(a.uid.cmp(&b.uid))
    });
}

/// Bytes as Kubernetes would write them, rounded to Ki.
fn human(bytes: u64) -> String {
    quantity::format_bytes(bytes.div_ceil(1024) * 1024)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pod(uid: &str, qos: &str, priority: i32, request: u64) -> PodSandbox {
        PodSandbox {
            uid: uid.into(),
            namespace: "default".into(),
            name: uid.into(),
            qos_class: qos.into(),
            priority,
            handler: "wasm".into(),
            memory_request_bytes: request,
        }
    }

    fn signal(name: &str, available: u64, capacity: u64) -> Signal {
        Signal {
            name: name.into(),
            available_bytes: available,
            capacity_bytes: capacity,
        }
    }

    #[test]
    fn thresholds_parse_quantities_and_percentages() {
        let t = Thresholds::from_config(
            r#"{"evictionHard": {"memory.available": "1Gi", "nodefs.available": "12.5%"}}"#,
        )
        .unwrap();
        assert_eq!(t.memory, Threshold::Bytes(1 << 30));
        assert_eq!(t.nodefs.bytes(1_000), 125);
        assert_eq!(Thresholds::from_config("").unwrap(), Thresholds::default());
        for bad in [
            "{",
            r#"{"evictionHard": {"pids.available": "10"}}"#,
            r#"{"evictionHard": {"memory.available": "lots"}}"#,
            r#"{"evictionHard": {"nodefs.available": "120%"}}"#,
            r#"{"evictionHard": []}"#,
        ] {
            assert!(Thresholds::from_config(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn signals_past_their_thresholds_are_pressed() {
        let t = Thresholds::default();
        let v = check(
            &[signal(MEMORY, 50 << 20, 8 << 30), signal(NODEFS, 5, 100)],
            &t,
            Vec::new,
        );
        assert_eq!(v.pressed, [MEMORY, NODEFS]);
        assert!(v.evict.is_empty(), "no pods, nothing to evict");
        let v = check(
            &[signal(MEMORY, 1 << 30, 8 << 30), signal(NODEFS, 50, 100)],
            &t,
            || panic!("pods are read only under memory pressure"),
        );
        assert!(v.pressed.is_empty() && v.evict.is_empty());
    }

    #[test]
    fn memory_pressure_evicts_best_effort_then_the_lowest_priority_then_the_largest_excess() {
        let mut pods = vec![
            (pod("guaranteed", "Guaranteed", 0, 100 << 20), 90 << 20),
            (pod("burstable-over", "Burstable", 0, 10 << 20), 50 << 20),
            (pod("best-effort", "BestEffort", 0, 0), 20 << 20),
            (pod("important", "BestEffort", 1000, 0), 500 << 20),
        ];
        rank_for_memory(&mut pods);
        let order: Vec<&str> = pods.iter().map(|(p, _)| p.uid.as_str()).collect();
        // Over their requests: burstable-over (+40Mi), best-effort (+20Mi),
        // important (priority 1000, last of those); then the one within.
        assert_eq!(
            order,
            ["burstable-over", "best-effort", "important", "guaranteed"]
        );

        let v = check(
            &[signal(MEMORY, 10 << 20, 8 << 30)],
            &Thresholds::default(),
            || pods.clone(),
        );
        assert_eq!(v.evict.len(), 1);
        assert_eq!(v.evict[0].uid, "burstable-over");
        assert_eq!(
            v.evict[0].message,
            "The node was low on resource: memory. Threshold quantity: 100Mi, available: 10Mi. \
             Pod default/burstable-over was using 50Mi, request is 10Mi."
        );
    }
}
