"""A scheduler policy in Python that packs pods into the fewest zones.

Serves `spec.schedulerName: zone-packer` (beside the default scheduler).
Nodes are grouped by their `topology.kubernetes.io/zone` label; a pod goes
to the zone that already holds most pods of its owner (then most pods at
all), onto the node there with the least CPU free, so a workload fills one
zone before it spills into the next. Nodes that do not fit (resources,
taints, nodeSelector, cordoned, not ready) are rejected with Kubernetes'
reasons. Capabilities: none (the scheduler world imports only `log`).
"""

from orchd_sdk.scheduler import Scheduler, bind, export, unschedulable

import logic


class ZonePacker(Scheduler):
    name = "zone-packer"

    def schedule(self, pod, nodes):
        node, rejections = logic.choose(pod, nodes)
        return bind(node) if node is not None else unschedulable(rejections)


WitWorld = export(ZonePacker)
