"""Pure logic of the Python replicaset controller (unit-tested natively)."""

import calendar
from typing import Any, Dict, List, Optional

Object = Dict[str, Any]

#: Most pods created or deleted in one reconcile, as Kubernetes' burstReplicas.
BURST_REPLICAS = 500


def parse_time(text: Optional[str]) -> Optional[int]:
    """RFC 3339 in UTC (`2026-01-02T03:04:05Z`, fractions allowed) to Unix
    seconds. By hand: `time.strptime` imports `_strptime` lazily, which a
    componentize-py component does not have (only modules imported while
    the component was built are in it)."""
    if not text or len(text) < 19:
        return None
    try:
        fields = (text[0:4], text[5:7], text[8:10], text[11:13], text[14:16], text[17:19])
        y, mo, d, h, mi, s = (int(f) for f in fields)
    except ValueError:
        return None
    return calendar.timegm((y, mo, d, h, mi, s, 0, 0, 0))


def _ready_condition(pod: Object) -> Optional[Object]:
    for c in (pod.get("status") or {}).get("conditions") or []:
        if c.get("type") == "Ready":
            return c
    return None


def is_ready(pod: Object) -> bool:
    c = _ready_condition(pod)
    return c is not None and c.get("status") == "True"


def available_at(pod: Object, min_ready: int) -> Optional[int]:
    """When a ready pod counts as available (ready for `min_ready` s)."""
    c = _ready_condition(pod)
    if c is None or c.get("status") != "True":
        return None
    since = parse_time(c.get("lastTransitionTime"))
    return (since or 0) + min_ready


def _rank(pod: Object) -> tuple:
    """Sort key: the pod to delete first sorts first (as Kubernetes:
    unscheduled, pending, not ready, then ready for the shortest time,
    newest)."""
    spec, status = pod.get("spec") or {}, pod.get("status") or {}
    scheduled = 1 if spec.get("nodeName") else 0
    phase = {"Pending": 0, "Unknown": 1}.get(status.get("phase"), 2)
    ready = 1 if is_ready(pod) else 0
    ready_since = parse_time((_ready_condition(pod) or {}).get("lastTransitionTime")) or 0
    created = parse_time((pod.get("metadata") or {}).get("creationTimestamp")) or 0
    return (scheduled, phase, ready, -ready_since, -created)


def pods_to_delete(owned: List[Object], count: int) -> List[Object]:
    """The `count` pods to delete first."""
    return sorted(owned, key=_rank)[:count]


def pod_from_template(rs: Object) -> Object:
    """A new pod from `rs`'s template, named by the API (`generateName`)
    and controlled by the ReplicaSet."""
    template = (rs.get("spec") or {}).get("template") or {}
    tmeta = template.get("metadata") or {}
    m = rs["metadata"]
    metadata: Object = {"generateName": m["name"] + "-", "namespace": m.get("namespace")}
    for field in ("labels", "annotations", "finalizers"):
        if tmeta.get(field) is not None:
            metadata[field] = tmeta[field]
    metadata["ownerReferences"] = [{
        "apiVersion": "apps/v1", "kind": "ReplicaSet", "name": m["name"], "uid": m["uid"],
        "controller": True, "blockOwnerDeletion": True,
    }]
    return {"apiVersion": "v1", "kind": "Pod", "metadata": metadata, "spec": template.get("spec") or {}}


def status(rs: Object, owned: List[Object], now: int) -> Object:
    """The counts `owned` (its active pods) amount to at `now`."""
    spec = rs.get("spec") or {}
    min_ready = max(0, int(spec.get("minReadySeconds") or 0))
    tlabels = ((spec.get("template") or {}).get("metadata") or {}).get("labels") or {}

    def labeled(p):
        labels = (p.get("metadata") or {}).get("labels") or {}
        return all(labels.get(k) == v for k, v in tlabels.items())

    def available(p):
        at = available_at(p, min_ready)
        return at is not None and at <= now

    return {
        "replicas": len(owned),
        "fullyLabeledReplicas": sum(1 for p in owned if labeled(p)),
        "readyReplicas": sum(1 for p in owned if is_ready(p)),
        "availableReplicas": sum(1 for p in owned if available(p)),
        "observedGeneration": int((rs.get("metadata") or {}).get("generation") or 0),
    }


def status_changed(old: Optional[Object], new: Object) -> bool:
    """Whether `new` differs from the stored status (absent counts are 0)."""
    old = old or {}
    return any(int(old.get(k) or 0) != v for k, v in new.items())


def next_available(rs: Object, owned: List[Object], now: int) -> Optional[int]:
    """The earliest time a ready-but-not-yet-available pod becomes available."""
    min_ready = max(0, int((rs.get("spec") or {}).get("minReadySeconds") or 0))
    times = [at for p in owned if (at := available_at(p, min_ready)) is not None and at > now]
    return min(times) if times else None
