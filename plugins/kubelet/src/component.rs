//! The component glue: the rules work on the SDK's records directly.

use orchd_sdk::node_policy::{
    AfterExit, ContainerExit, NodePolicy, PodVerdict, PodView, RestartPolicy,
};

struct Kubelet;

impl NodePolicy for Kubelet {
    fn after_exit(exit: ContainerExit, policy: RestartPolicy) -> AfterExit {
        crate::after_exit(&exit, policy, &crate::PROFILE)
    }

    fn pod_status(pod: PodView) -> PodVerdict {
        crate::pod_status(&pod)
    }
}

orchd_sdk::export_node_policy!(Kubelet);
