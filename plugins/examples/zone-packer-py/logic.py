"""Pure logic of the zone-packing scheduler (unit-tested natively with
plain records standing in for the generated ones)."""

from typing import Dict, List, Optional, Tuple

ZONE_LABEL = "topology.kubernetes.io/zone"


def _name(enum_value) -> str:
    return getattr(enum_value, "name", str(enum_value))


def tolerates(pod, taint) -> bool:
    """Whether one of the pod's tolerations tolerates ``taint``."""
    for t in pod.tolerations:
        if t.effect is not None and _name(t.effect) != _name(taint.effect):
            continue
        if t.key and t.key != taint.key:
            continue
        if _name(t.operator) == "EXISTS" or (t.key == taint.key and t.value == taint.value):
            return True
    return False


def rejection(pod, node) -> Optional[str]:
    """Why ``node`` cannot take ``pod``, in Kubernetes' words, or None."""
    if node.unschedulable:
        return "node(s) were unschedulable"
    if not node.ready:
        return "node(s) had untolerated taint {node.kubernetes.io/not-ready: }"
    for label in pod.node_selector:
        if node.labels.get(label.key) != label.value:
            return "node(s) didn't match Pod's node affinity/selector"
    for taint in node.taints:
        if _name(taint.effect) != "PREFER_NO_SCHEDULE" and not tolerates(pod, taint):
            return f"node(s) had untolerated taint {{{taint.key}: {taint.value}}}"
    free, r = node.free(), pod.requests
    if r.milli_cpu > free.milli_cpu:
        return "Insufficient cpu"
    if r.memory_bytes > free.memory_bytes:
        return "Insufficient memory"
    if max(1, r.pods) > free.pods:
        return "Too many pods"
    return None


def choose(pod, nodes) -> Tuple[Optional[str], List[Tuple[str, str]]]:
    """The node for ``pod``, packing into the fewest zones: among the nodes
    that fit, the zone already holding most pods of the pod's owner, then
    most pods at all (then the first zone by name); within it the node
    with the least CPU free (bin packing). Returns (node, rejections)."""
    fits, rejected = [], []
    for n in nodes:
        why = rejection(pod, n)
        if why is None:
            fits.append(n)
        else:
            rejected.append((n.name, why))
    if not fits:
        return None, rejected
    siblings: Dict[str, int] = {}
    total: Dict[str, int] = {}
    for n in nodes:
        zone = n.labels.get(ZONE_LABEL, "")
        total[zone] = total.get(zone, 0) + len(n.pods)
        if pod.owner_uid is not None:
            siblings[zone] = siblings.get(zone, 0) + sum(1 for p in n.pods if p.owner_uid == pod.owner_uid)

    def key(n):
        zone = n.labels.get(ZONE_LABEL, "")
        # Highest first for the counts, lowest first for names and free CPU.
        return (-siblings.get(zone, 0), -total.get(zone, 0), zone, n.free().milli_cpu, n.name)

    return min(fits, key=key).name, []
