//! A scheduler that misbehaves on purpose, for the tests of supervision,
//! probation and rollback. It is not an example to follow.
//!
//! What it does with a pod depends on the pod's label
//! `orchd.dev/misbehave`:
//!
//! | label | behaviour |
//! |---|---|
//! | `trap` | panics (a wasm trap) |
//! | `loop` | spins forever (stopped by the call deadline) |
//! | `oom` | allocates until the memory cap stops it |
//! | `bad-node` | binds the pod to a node that does not exist |
//! | none | binds it to the first node by name that is ready and has room |
//!
//! Compile-time settings, so one crate gives every component the tests
//! need: `ORCHD_SCHEDULER_NAME` (default `default-scheduler`) and
//! `ORCHD_MISBEHAVE` (a behaviour from the table applied to every pod but
//! the host's warm-up call, or `always-trap` to trap on warm-up as well);
//! the `forbidden-host-call` feature makes `schedule` read an object
//! through `objects`, which no scheduler may import.

use orchd_sdk::scheduler::{Decision, NodeInfo, PodInfo, Rejection, Scheduler};

/// The label that picks the misbehaviour.
const LABEL: &str = "orchd.dev/misbehave";

/// The name of the pod the host schedules once against no nodes to warm
/// a new instance up.
const WARM_UP_POD: &str = "orchd-warm-up";

struct Misbehaving;

impl Scheduler for Misbehaving {
    const NAME: &'static str = match option_env!("ORCHD_SCHEDULER_NAME") {
        Some(name) => name,
        None => "default-scheduler",
    };

    fn schedule(pod: &PodInfo, nodes: &[NodeInfo]) -> Decision {
        #[cfg(feature = "forbidden-host-call")]
        {
            let node = orchd_sdk::objects::ObjectRef::cluster("nodes", "any");
            let _ = orchd_sdk::objects::get::<orchd_sdk::serde_json::Value>(&node);
        }
        let always = option_env!("ORCHD_MISBEHAVE");
        let behaviour = match always {
            Some("always-trap") => Some("trap"),
            Some(b) if pod.name != WARM_UP_POD => Some(b),
            _ => pod
                .labels
                .iter()
                .find(|l| l.key == LABEL)
                .map(|l| l.value.as_str()),
        };
        match behaviour {
            Some("trap") => panic!("misbehaving on purpose: pod {} asked for a trap", pod.name),
            Some("loop") => spin(),
            Some("oom") => eat_memory(),
            Some("bad-node") => return Decision::Bind("no-such-node".into()),
            _ => {}
        }
        let mut by_name: Vec<&NodeInfo> = nodes.iter().collect();
        by_name.sort_unstable_by(|a, b| a.name.cmp(&b.name));
        let fits = |n: &NodeInfo| {
            let free = n.free();
            n.ready
                && !n.unschedulable
                && free.pods >= 1
                && pod.requests.milli_cpu <= free.milli_cpu
                && pod.requests.memory_bytes <= free.memory_bytes
        };
        match by_name.iter().find(|n| fits(n)) {
            Some(n) => Decision::Bind(n.name.clone()),
            None => Decision::Unschedulable(
                by_name
                    .into_iter()
                    .map(|n| Rejection::new(&n.name, "node(s) had no room"))
                    .collect(),
            ),
        }
    }
}

/// Never returns; `black_box` keeps the optimiser from proving it.
fn spin() -> ! {
    let mut n: u64 = 0;
    loop {
        n = std::hint::black_box(n.wrapping_add(1));
    }
}

/// Grows memory until the host's cap makes the allocation fail.
fn eat_memory() -> ! {
    let mut hoard: Vec<Vec<u8>> = Vec::new();
    loop {
        let mut chunk = vec![0u8; 1 << 20];
        chunk[0] = 1;
        hoard.push(std::hint::black_box(chunk));
    }
}

orchd_sdk::export_scheduler!(Misbehaving);
