"""DaemonSets and StatefulSets end to end: the daemonset and statefulset
controllers orchd ships (plugins/daemonset, plugins/statefulset, Wasm
components) driven with the real kubectl against hollow nodes, which mark
bound pods Running and Ready.

Orders (which pod came or went first, and what was Ready then) are checked
from a watch of the pods, which sees every state the API went through, not
by sampling with sleeps."""

from __future__ import annotations

import time
import urllib.parse

from helpers import Cluster, PodWatch, table_rows, wait_until

PODS = "/api/v1/namespaces/default/pods"
DAEMONSETS = "/apis/apps/v1/namespaces/default/daemonsets"
STATEFULSETS = "/apis/apps/v1/namespaces/default/statefulsets"


def is_ready(pod: dict) -> bool:
    return any(c.get("type") == "Ready" and c.get("status") == "True"
               for c in (pod.get("status") or {}).get("conditions") or [])


def live_pods(c: Cluster, selector: str) -> list[dict]:
    """Pods matching `selector` that are not being deleted."""
    q = urllib.parse.quote(selector)
    return [p for p in c.get(f"{PODS}?labelSelector={q}")["items"]
            if not p["metadata"].get("deletionTimestamp")]


class PodLog(PodWatch):
    """Every change to the pods matching a selector, in the API's order,
    from a list plus a watch: (event, pod name, pod object)."""

    def on_listed(self, pods: list[dict]):
        self.events: list[tuple[str, str, dict]] = [("LISTED", p["metadata"]["name"], p) for p in pods]
        self.times: list[float] = [time.monotonic()] * len(self.events)

    def on_event(self, kind: str, obj: dict):
        self.events.append((kind, obj["metadata"]["name"], obj))
        self.times.append(time.monotonic())

    def snapshot(self) -> list[tuple[str, str, dict]]:
        with self.lock:
            return list(self.events)

def gone_or_going(kind: str, pod: dict) -> bool:
    return kind == "DELETED" or bool(pod["metadata"].get("deletionTimestamp"))


# --- DaemonSets ---------------------------------------------------------

DAEMONSET = """
apiVersion: apps/v1
kind: DaemonSet
metadata:
  name: agent
spec:
  selector:
    matchLabels: {app: agent}
  updateStrategy:
    type: RollingUpdate
    rollingUpdate: {maxUnavailable: 1}
  template:
    metadata:
      labels: {app: agent}
    spec:
      nodeSelector: {role: worker}
      containers:
      - name: agent
        image: agent:1
"""


def pods_by_node(c: Cluster) -> dict[str, list[dict]]:
    by: dict[str, list[dict]] = {}
    for p in live_pods(c, "app=agent"):
        by.setdefault(p["spec"].get("nodeName") or "", []).append(p)
    return by


def daemonset_settled(c: Cluster, nodes: set[str], image: str):
    """The DaemonSet's pods are exactly one Ready pod of `image` on each of
    `nodes`, and its status says so; returns the pods by node."""
    by = pods_by_node(c)
    if set(by) != nodes or any(len(ps) != 1 for ps in by.values()):
        return None
    if not all(is_ready(ps[0]) and ps[0]["spec"]["containers"][0]["image"] == image for ps in by.values()):
        return None
    ds = c.get(f"{DAEMONSETS}/agent")
    s = ds.get("status") or {}
    n = len(nodes)
    want = {"desiredNumberScheduled": n, "currentNumberScheduled": n, "numberReady": n,
            "numberAvailable": n, "updatedNumberScheduled": n}
    if any(s.get(k, 0) != v for k, v in want.items()) or s.get("numberMisscheduled", 0) != 0:
        return None
    if s.get("observedGeneration") != ds["metadata"]["generation"]:
        return None
    return by


def test_daemonset_covers_eligible_nodes_rolls_out_and_is_collected(cluster, hollow_nodes):
    hollow_nodes(2, "--labels", "role=worker", "--prefix", "w")
    hollow_nodes(1, "--labels", "role=db", "--prefix", "db")
    hollow_nodes(1, "--labels", "role=worker", "--taints", "dedicated=infra:NoSchedule", "--prefix", "tainted")
    c = cluster
    c.kubectl("apply", "-f", "-", input=DAEMONSET)
    by = wait_until("a Ready agent pod on each worker node", lambda: daemonset_settled(c, {"w-0", "w-1"}, "agent:1"),
                    timeout=60)
    # Placed as Kubernetes does: pinned by required node affinity on the
    # node's name (the scheduler bound it), tolerating node trouble.
    pod = by["w-0"][0]
    terms = pod["spec"]["affinity"]["nodeAffinity"]["requiredDuringSchedulingIgnoredDuringExecution"]["nodeSelectorTerms"]
    assert terms == [{"matchFields": [{"key": "metadata.name", "operator": "In", "values": ["w-0"]}]}]
    keys = {(t.get("key"), t.get("effect")) for t in pod["spec"]["tolerations"]}
    assert ("node.kubernetes.io/not-ready", "NoExecute") in keys
    assert ("node.kubernetes.io/unschedulable", "NoSchedule") in keys
    assert pod["metadata"]["labels"].get("controller-revision-hash")
    owner = pod["metadata"]["ownerReferences"][0]
    assert (owner["kind"], owner["name"], owner["controller"]) == ("DaemonSet", "agent", True)
    c.kubectl("rollout", "status", "daemonset/agent", "--timeout=60s", timeout=90)
    rows = table_rows(c.kubectl("get", "ds", "agent").stdout)
    assert rows[1][:7] == ["agent", "2", "2", "2", "2", "2", "role=worker"], rows
    # The db node (label) and the tainted node got none: the status above
    # counted exactly the two workers, and no pod of it was ever on them.
    assert not any(p["spec"].get("nodeName") in ("db-0", "tainted-0")
                   for p in c.get(f"{PODS}?labelSelector=app%3Dagent")["items"])

    # A worker node added later gets its pod.
    hollow_nodes(1, "--labels", "role=worker", "--prefix", "late")
    wait_until("a Ready agent pod on the late node",
               lambda: daemonset_settled(c, {"w-0", "w-1", "late-0"}, "agent:1"), timeout=60)

    # A template change rolls out within maxUnavailable 1: never more than
    # one node without a Ready pod, as the watch saw it.
    log = PodLog(c, "app=agent")
    c.kubectl("set", "image", "daemonset/agent", "agent=agent:2")
    out = c.kubectl("rollout", "status", "daemonset/agent", "--timeout=90s", timeout=120).stdout
    assert "successfully rolled out" in out, out
    by = wait_until("every node on agent:2", lambda: daemonset_settled(c, {"w-0", "w-1", "late-0"}, "agent:2"),
                    timeout=30)
    log.close()
    assert not log.errors, log.errors
    ready: dict[str, str] = {}  # pod name -> node, for Ready live pods
    worst = 3
    trace = [(kind, name, p["spec"].get("nodeName"), is_ready(p), p["spec"]["containers"][0]["image"])
             for kind, name, p in log.snapshot()]
    for kind, name, p in log.snapshot():
        if gone_or_going(kind, p) or not is_ready(p):
            ready.pop(name, None)
        else:
            ready[name] = p["spec"].get("nodeName") or ""
        # The listed pods are one state, not a sequence of them.
        if kind != "LISTED":
            worst = min(worst, len(set(ready.values())))
    assert worst >= 2, f"{3 - worst} nodes were without a Ready pod at once: {trace}"
    old_hash = pod["metadata"]["labels"]["controller-revision-hash"]
    assert all(ps[0]["metadata"]["labels"]["controller-revision-hash"] != old_hash for ps in by.values())

    # Deleting the DaemonSet removes its pods (the garbage collector).
    c.kubectl("delete", "daemonset", "agent", timeout=60)
    wait_until("the agent pods gone", lambda: not c.get(f"{PODS}?labelSelector=app%3Dagent")["items"], timeout=60)


def test_daemonset_replaces_failing_pods_with_a_growing_backoff(cluster, hollow_nodes):
    hollow_nodes(1, "--labels", "role=worker", "--prefix", "w")
    c = cluster
    log = PodLog(c, "app=agent")
    # Every pod fails as soon as it runs (the hollow node ends it).
    failing = DAEMONSET.replace("    metadata:\n      labels: {app: agent}",
                                "    metadata:\n      labels: {app: agent}\n"
                                "      annotations: {orchd.dev/sim-exit: fail-after=0s}")
    assert failing != DAEMONSET
    c.kubectl("apply", "-f", "-", input=failing)

    def added() -> list[float]:
        with log.lock:
            return [t for (kind, _, _), t in zip(log.events, log.times) if kind == "ADDED"]

    times = wait_until("four pods in turn", lambda: (a := added()) and len(a) >= 4 and a, timeout=60)
    log.close()
    # Replaced each time, but after 1 s, 2 s, 4 s...: not in a hot loop.
    failed = [n for kind, n, p in log.snapshot() if (p.get("status") or {}).get("phase") == "Failed"]
    assert len(set(failed)) >= 3, failed
    assert times[3] - times[2] >= 2.5, times
    assert times[3] - times[2] > times[1] - times[0], times


# --- StatefulSets -------------------------------------------------------

STATEFULSET = """
apiVersion: apps/v1
kind: StatefulSet
metadata:
  name: web
spec:
  serviceName: web
  replicas: 3
  podManagementPolicy: OrderedReady
  selector:
    matchLabels: {app: web}
  template:
    metadata:
      labels: {app: web}
    spec:
      containers:
      - name: web
        image: web:1
"""


def set_settled(c: Cluster, names: list[str], image: str, name: str = "web"):
    """The set's pods are exactly `names`, Ready, of `image`, and its
    status says the roll out is complete; returns the pods by name."""
    pods = {p["metadata"]["name"]: p for p in live_pods(c, f"app={name}")}
    if sorted(pods) != sorted(names):
        return None
    if not all(is_ready(p) and p["spec"]["containers"][0]["image"] == image for p in pods.values()):
        return None
    sts = c.get(f"{STATEFULSETS}/{name}")
    s = sts.get("status") or {}
    n = len(names)
    if (s.get("replicas"), s.get("readyReplicas"), s.get("updatedReplicas")) != (n, n, n):
        return None
    if s.get("currentRevision") != s.get("updateRevision"):
        return None
    return pods


def test_statefulset_orders_pods_scales_down_from_the_top_and_is_collected(cluster, hollow_nodes):
    hollow_nodes(2)
    c = cluster
    log = PodLog(c, "app=web")
    c.kubectl("apply", "-f", "-", input=STATEFULSET)
    pods = wait_until("web-0..2 Ready", lambda: set_settled(c, ["web-0", "web-1", "web-2"], "web:1"), timeout=60)
    c.kubectl("rollout", "status", "statefulset/web", "--timeout=60s", timeout=90)
    rows = table_rows(c.kubectl("get", "sts", "web").stdout)
    assert rows[1][:2] == ["web", "3/3"], rows

    # Each pod was created only once every lower ordinal was Ready.
    state: dict[str, dict] = {}
    created: list[str] = []
    for kind, name, p in log.snapshot():
        if kind == "ADDED":
            ordinal = int(name.rsplit("-", 1)[1])
            for lower in range(ordinal):
                before = state.get(f"web-{lower}")
                assert before is not None and is_ready(before), \
                    f"{name} was created while web-{lower} was {'missing' if before is None else 'not Ready'}"
            created.append(name)
        if gone_or_going(kind, p):
            state.pop(name, None)
        else:
            state[name] = p
    assert created == ["web-0", "web-1", "web-2"], created

    # Stable identity.
    p = pods["web-1"]
    assert p["metadata"]["labels"]["statefulset.kubernetes.io/pod-name"] == "web-1"
    assert p["metadata"]["labels"]["apps.kubernetes.io/pod-index"] == "1"
    assert (p["spec"]["hostname"], p["spec"]["subdomain"]) == ("web-1", "web")

    # A template change rolls from the highest ordinal down, one at a time.
    mark = len(log.snapshot())
    c.kubectl("set", "image", "statefulset/web", "web=web:2")
    out = c.kubectl("rollout", "status", "statefulset/web", "--timeout=90s", timeout=120).stdout
    # Partition defaults to 0, so kubectl reports a partitioned roll out.
    assert "roll out complete" in out or "rolling update complete" in out, out
    wait_until("web-0..2 on web:2", lambda: set_settled(c, ["web-0", "web-1", "web-2"], "web:2"), timeout=30)
    replaced = [name for kind, name, p in log.snapshot()[mark:] if kind == "ADDED"]
    assert replaced == ["web-2", "web-1", "web-0"], replaced

    # Scaling down removes web-2 first, then web-1 once web-2 is gone.
    mark = len(log.snapshot())
    c.kubectl("scale", "statefulset", "web", "--replicas=1")
    wait_until("only web-0 left", lambda: set_settled(c, ["web-0"], "web:2"), timeout=60)
    removed: list[str] = []
    for kind, name, p in log.snapshot()[mark:]:
        if gone_or_going(kind, p) and name not in removed:
            removed.append(name)
    assert removed == ["web-2", "web-1"], removed
    # web-1 began going only after web-2 was fully gone.
    events = log.snapshot()[mark:]
    web2_deleted = next(i for i, (k, n, _) in enumerate(events) if n == "web-2" and k == "DELETED")
    web1_going = next(i for i, (k, n, p) in enumerate(events) if n == "web-1" and gone_or_going(k, p))
    assert web2_deleted < web1_going, events
    log.close()
    assert not log.errors, log.errors

    # Deleting the StatefulSet removes its pods (the garbage collector).
    c.kubectl("delete", "statefulset", "web", timeout=60)
    wait_until("the web pods gone", lambda: not c.get(f"{PODS}?labelSelector=app%3Dweb")["items"], timeout=60)


def test_statefulset_adopts_an_orphan_member(cluster, hollow_nodes):
    hollow_nodes(1)
    c = cluster
    orphan = c.create(PODS, {"apiVersion": "v1", "kind": "Pod",
                             "metadata": {"name": "db-0", "labels": {"app": "db"}},
                             "spec": {"containers": [{"name": "db", "image": "db:1"}]}})
    log = PodLog(c, "app=db")
    c.kubectl("apply", "-f", "-", input=STATEFULSET.replace("web", "db").replace("replicas: 3", "replicas: 2"))
    wait_until("db-0 and db-1 Ready", lambda: set_settled(c, ["db-0", "db-1"], "db:1", "db"), timeout=60)
    log.close()
    sts_uid = c.get(f"{STATEFULSETS}/db")["metadata"]["uid"]
    # The orphan itself (its uid) came under the set's control. It carried
    # no revision label, so, as in Kubernetes, the update then replaced it.
    adopted = [p for kind, name, p in log.snapshot()
               if p["metadata"]["uid"] == orphan["metadata"]["uid"] and any(
                   r.get("controller") and r.get("uid") == sts_uid
                   for r in p["metadata"].get("ownerReferences") or [])]
    assert adopted, log.snapshot()
    assert not log.errors, log.errors
