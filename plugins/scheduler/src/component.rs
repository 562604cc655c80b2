//! The component glue: the SDK keeps the view of the cluster and calls the
//! algorithm, which works on the SDK's records directly, so nothing is
//! converted per decision.

use orchd_sdk::scheduler::{Decision, NodeInfo, PodInfo, Scheduler};

struct DefaultScheduler;

impl Scheduler for DefaultScheduler {
    const NAME: &'static str = crate::SCHEDULER_NAME;

    fn schedule(pod: &PodInfo, nodes: &[NodeInfo]) -> Decision {
        crate::algorithm::schedule_with(pod, nodes, &crate::PROFILE)
    }
}

orchd_sdk::export_scheduler!(DefaultScheduler);
