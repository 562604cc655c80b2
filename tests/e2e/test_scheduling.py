"""Scheduling end to end: hollow nodes (`orchd sim nodes`), ordinary Pod
YAML applied with the real kubectl, and the default scheduler (the Wasm
component built from plugins/scheduler) placing the pods.

One test per filter and per score of the default profile, plus several
schedulers at once. Placements are checked through `spec.nodeName`; pods
that must stay Pending are checked to get a FailedScheduling event worded
as kube-scheduler words it, and to be still unbound a moment later.

Scoring tests are built so that exactly one node wins by a clear margin
(worked out from kube-scheduler's formulas in the comments), never by the
tie-break, so they are deterministic.
"""

from __future__ import annotations

import itertools
import json
import time

import yaml

from helpers import plugin_path, run_orchd, wait_until

NS = "default"
PODS = f"/api/v1/namespaces/{NS}/pods"
EVENTS = f"/api/v1/namespaces/{NS}/events"
IMAGE = "registry.k8s.io/pause:3.10"
HOSTNAME = "kubernetes.io/hostname"
ZONE = "topology.kubernetes.io/zone"

#: How long a pod must go on being Pending after its FailedScheduling event
#: (longer than the scheduler's first 1 s retry backoff).
GRACE = 1.5

_probe_ids = itertools.count()


# --- fixtures ----------------------------------------------------------------

def wait_plugin_active(cluster, name: str, scheduler_name: str) -> None:
    def active():
        r = cluster.http("GET", f"/apis/orchd.dev/v1/plugins/{name}")
        status = (r.json().get("status") or {}) if r.status == 200 else {}
        return status.get("phase") == "Active" and status.get("schedulerName") == scheduler_name
    wait_until(f"plugin {name} Active", active, timeout=60)


# --- manifests -------------------------------------------------------------

def pod(name: str, *, cpu: str | None = None, memory: str | None = None, labels: dict | None = None,
        node_name: str | None = None, node_selector: dict | None = None, affinity: dict | None = None,
        tolerations: list | None = None, host_port: int | None = None, scheduler_name: str | None = None,
        owner: dict | None = None) -> dict:
    """An ordinary Pod manifest with one pause container."""
    container: dict = {"name": "app", "image": IMAGE}
    requests = {k: v for k, v in (("cpu", cpu), ("memory", memory)) if v is not None}
    if requests:
        container["resources"] = {"requests": requests}
    if host_port is not None:
        container["ports"] = [{"containerPort": 80, "hostPort": host_port}]
    spec: dict = {"containers": [container]}
    for key, value in (("nodeName", node_name), ("nodeSelector", node_selector), ("affinity", affinity),
                       ("tolerations", tolerations), ("schedulerName", scheduler_name)):
        if value is not None:
            spec[key] = value
    meta: dict = {"name": name}
    if labels:
        meta["labels"] = labels
    if owner:
        meta["ownerReferences"] = [{
            "apiVersion": "apps/v1", "kind": "ReplicaSet", "name": owner["metadata"]["name"],
            "uid": owner["metadata"]["uid"], "controller": True, "blockOwnerDeletion": True,
        }]
    return {"apiVersion": "v1", "kind": "Pod", "metadata": meta, "spec": spec}


def apply(cluster, *docs: dict) -> None:
    """`kubectl apply -f` of the documents, as one multi-document YAML file
    (kubectl creates them in order)."""
    cluster.kubectl_apply_text(yaml.safe_dump_all(docs, sort_keys=False))


def replica_set(cluster, name: str, replicas: int) -> dict:
    """Creates a ReplicaSet with kubectl and returns it (with its uid), to
    own pods made by hand. The replicaset controller orchd runs by default
    would add and remove pods of its own: it is stopped first."""
    if "orchd: plugin replicaset: [info] stopped: the Plugin was deleted" not in cluster.orchd.log():
        cluster.kubectl("delete", "plugin", "replicaset")
        wait_until("the replicaset controller stopped", lambda: "orchd: plugin replicaset: [info] stopped: "
                   "the Plugin was deleted" in cluster.orchd.log())
    apply(cluster, {
        "apiVersion": "apps/v1", "kind": "ReplicaSet", "metadata": {"name": name},
        "spec": {
            "replicas": replicas,
            "selector": {"matchLabels": {"app": name}},
            "template": {"metadata": {"labels": {"app": name}},
                         "spec": {"containers": [{"name": "app", "image": IMAGE}]}},
        },
    })
    rs = cluster.get(f"/apis/apps/v1/namespaces/{NS}/replicasets/{name}")
    assert rs["metadata"].get("uid"), rs
    return rs


def term(key: str, operator: str, *values: str) -> dict:
    expr: dict = {"key": key, "operator": operator}
    if values:
        expr["values"] = list(values)
    return expr


def required_node_affinity(*exprs: dict) -> dict:
    return {"nodeAffinity": {"requiredDuringSchedulingIgnoredDuringExecution": {
        "nodeSelectorTerms": [{"matchExpressions": list(exprs)}]}}}


def pod_term(labels: dict, topology_key: str = HOSTNAME) -> dict:
    return {"labelSelector": {"matchLabels": labels}, "topologyKey": topology_key}


# --- observing -------------------------------------------------------------

def get_pod(cluster, name: str) -> dict:
    return cluster.get(f"{PODS}/{name}")


def node_of(cluster, name: str) -> str | None:
    return get_pod(cluster, name)["spec"].get("nodeName") or None


def wait_bound(cluster, *names: str, timeout: float = 30.0) -> dict[str, str]:
    """Waits until every pod is bound; returns pod name → node name."""
    def check():
        nodes = {n: node_of(cluster, n) for n in names}
        return nodes if all(nodes.values()) else None
    return wait_until(f"pods {', '.join(names)} bound", check, timeout)


def events(cluster, pod_name: str | None = None, reason: str | None = None) -> list[dict]:
    """Events about pods (raw HTTP: cheap enough to poll)."""
    items = cluster.get(EVENTS)["items"]
    return [e for e in items
            if e["involvedObject"].get("kind") == "Pod"
            and (pod_name is None or e["involvedObject"].get("name") == pod_name)
            and (reason is None or e.get("reason") == reason)]


def kubectl_events(cluster) -> dict[str, list[dict]]:
    """Events about pods as `kubectl get events -o json` shows them, by pod
    name."""
    by_pod: dict[str, list[dict]] = {}
    for e in cluster.kubectl_json("get", "events", "-n", NS)["items"]:
        if e["involvedObject"].get("kind") == "Pod":
            by_pod.setdefault(e["involvedObject"].get("name"), []).append(e)
    return by_pod


def wait_failed_scheduling(cluster, name: str, message: str, timeout: float = 30.0) -> dict:
    """Waits for a FailedScheduling event about pod `name` whose message is
    `message` (kube-scheduler's summary; anything it may append, such as a
    preemption note, is allowed after it)."""
    seen: list[str] = []

    def check():
        found = events(cluster, name, "FailedScheduling")
        seen[:] = [e.get("message", "") for e in found]
        return next((e for e in found if e.get("message", "").startswith(message)), None)
    try:
        return wait_until(f"FailedScheduling of {name}", check, timeout)
    except AssertionError:
        raise AssertionError(f"no FailedScheduling event for {name} saying {message!r}; "
                             f"its FailedScheduling messages: {seen!r}") from None


def assert_stays_pending(cluster, expected: dict[str, str]) -> None:
    """Each pod (name → expected FailedScheduling message) gets a
    FailedScheduling event with that message, seen through kubectl too,
    and a moment later is still unbound, Pending, with PodScheduled=False
    (Unschedulable) as kube-scheduler leaves it."""
    for name, message in expected.items():
        wait_failed_scheduling(cluster, name, message)
    shown_by_pod = kubectl_events(cluster)
    for name, message in expected.items():
        shown = [e for e in shown_by_pod.get(name, []) if e.get("reason") == "FailedScheduling"]
        assert any(e["message"].startswith(message) and e["type"] == "Warning"
                   and e["source"]["component"] == "default-scheduler" for e in shown), shown
    time.sleep(GRACE)
    for name, message in expected.items():
        p = get_pod(cluster, name)
        assert not p["spec"].get("nodeName"), f"{name} was bound to {p['spec']['nodeName']}"
        assert p["status"].get("phase", "Pending") == "Pending", p["status"]
        assert not events(cluster, name, "Scheduled"), events(cluster, name)
        cond = wait_until(f"PodScheduled=False on {name}", lambda: next(
            (c for c in get_pod(cluster, name)["status"].get("conditions", [])
             if c["type"] == "PodScheduled" and c["status"] == "False"), None))
        assert cond["reason"] == "Unschedulable" and cond["message"].startswith(message), cond


def scheduled_by(cluster, *names: str) -> dict[str, str]:
    """Pod name → the component of its Scheduled event (waits for them), as
    `kubectl get events -o json` shows them; checks each names the pod's
    node."""
    for name in names:
        wait_until(f"Scheduled event of {name}", lambda: events(cluster, name, "Scheduled"))
    shown = kubectl_events(cluster)
    by: dict[str, str] = {}
    for name in names:
        [event] = [e for e in shown.get(name, []) if e.get("reason") == "Scheduled"]
        assert event["message"] == f"Successfully assigned {NS}/{name} to {node_of(cluster, name)}", event
        assert event["source"]["component"] == event["reportingComponent"], event
        by[name] = event["source"]["component"]
    return by


def settle(cluster, node_count: int) -> None:
    """Waits until the default scheduler knows all `node_count` nodes: a
    probe pod nothing can host must be refused by exactly that many nodes.
    The probe is then deleted. Placement tests call it after starting
    hollow nodes, so no pod is decided on a partial view of the cluster."""
    name = f"settle-probe-{next(_probe_ids)}"
    cluster.create(PODS, pod(name, node_selector={"orchd.dev/settle-probe": "nowhere"}))
    wait_failed_scheduling(cluster, name, f"0/{node_count} nodes are available: ")
    r = cluster.http("DELETE", f"{PODS}/{name}")
    assert r.status in (200, 202), r
    wait_until(f"{name} deleted", lambda: cluster.status_of(f"{PODS}/{name}") == 404)


def set_ready(cluster, node: str, status: str) -> None:
    """Sets the node's Ready condition through the status subresource, as a
    kubelet (or the node lifecycle controller) would; hollow nodes only
    write their status when they register."""
    conditions = cluster.get(f"/api/v1/nodes/{node}")["status"]["conditions"]
    for c in conditions:
        if c["type"] == "Ready":
            c.update(status=status, reason="KubeletNotReady" if status != "True" else "KubeletReady",
                     message=f"set {status} by the test")
    cluster.kubectl("patch", "node", node, "--subresource=status", "--type=merge",
                    "-p", json.dumps({"status": {"conditions": conditions}}))
    got = cluster.get(f"/api/v1/nodes/{node}")["status"]["conditions"]
    assert [c["status"] for c in got if c["type"] == "Ready"] == [status], got


# --- filters -----------------------------------------------------------------

def test_cpu_request_too_large(cluster, hollow_nodes):
    hollow_nodes(2, "--prefix", "cpu", "--cpu", "2")
    settle(cluster, 2)
    # Decided in order: 1.5 of 2 CPUs taken on the first node, the second
    # pod cannot share it, and the third fits on neither.
    apply(cluster, pod("cpu-a", cpu="1500m"), pod("cpu-b", cpu="1500m"),
          pod("cpu-c", cpu="1500m"), pod("cpu-huge", cpu="3"))
    placed = wait_bound(cluster, "cpu-a", "cpu-b")
    assert sorted(placed.values()) == ["cpu-0", "cpu-1"], placed
    assert_stays_pending(cluster, {
        "cpu-c": "0/2 nodes are available: 2 Insufficient cpu.",
        "cpu-huge": "0/2 nodes are available: 2 Insufficient cpu.",
    })
    described = cluster.kubectl("describe", "pod", "cpu-c").stdout
    assert "FailedScheduling" in described and "0/2 nodes are available: 2 Insufficient cpu." in described, described


def test_memory_request_too_large(cluster, hollow_nodes):
    hollow_nodes(2, "--prefix", "mem", "--memory", "1Gi")
    settle(cluster, 2)
    apply(cluster, pod("mem-a", memory="768Mi"), pod("mem-b", memory="768Mi"),
          pod("mem-c", memory="768Mi"), pod("mem-huge", cpu="100m", memory="2Gi"),
          pod("mem-and-cpu", cpu="8", memory="2Gi"))
    placed = wait_bound(cluster, "mem-a", "mem-b")
    assert sorted(placed.values()) == ["mem-0", "mem-1"], placed
    assert_stays_pending(cluster, {
        "mem-c": "0/2 nodes are available: 2 Insufficient memory.",
        "mem-huge": "0/2 nodes are available: 2 Insufficient memory.",
        # As kube-scheduler, every resource a node is short of counts.
        "mem-and-cpu": "0/2 nodes are available: 2 Insufficient cpu, 2 Insufficient memory.",
    })


def test_node_pod_count_full(cluster, hollow_nodes):
    hollow_nodes(2, "--prefix", "podcount", "--pods", "1")
    settle(cluster, 2)
    # Pods without requests: only the node's pod count can stop them.
    apply(cluster, pod("count-a"), pod("count-b"), pod("count-c"))
    placed = wait_bound(cluster, "count-a", "count-b")
    assert sorted(placed.values()) == ["podcount-0", "podcount-1"], placed
    assert_stays_pending(cluster, {"count-c": "0/2 nodes are available: 2 Too many pods."})


def test_user_set_node_name_is_left_alone(cluster, hollow_nodes):
    # The named node is one the scheduler would never pick (NoSchedule
    # taint): a pod naming it skips scheduling, as on Kubernetes.
    hollow_nodes(1, "--prefix", "pinned-taint", "--taints", "dedicated=infra:NoSchedule")
    hollow_nodes(1, "--prefix", "pinned-free")
    settle(cluster, 2)
    apply(cluster, pod("pinned", cpu="100m", node_name="pinned-taint-0"),
          pod("pinned-nowhere", node_name="no-such-node"),
          pod("free", cpu="100m"))
    # The scheduler has decided the pod created after them...
    assert wait_bound(cluster, "free") == {"free": "pinned-free-0"}
    assert scheduled_by(cluster, "free") == {"free": "default-scheduler"}
    # ...and the hollow node runs the pinned pod where the user put it.
    wait_until("pinned pod Running", lambda: get_pod(cluster, "pinned")["status"].get("phase") == "Running")
    time.sleep(GRACE)
    assert node_of(cluster, "pinned") == "pinned-taint-0"
    assert node_of(cluster, "pinned-nowhere") == "no-such-node"
    for name in ("pinned", "pinned-nowhere"):
        assert events(cluster, name) == [], events(cluster, name)
    assert get_pod(cluster, "pinned-nowhere")["status"].get("phase", "Pending") == "Pending"


def test_node_selector(cluster, hollow_nodes):
    hollow_nodes(1, "--prefix", "sel-ssd", "--labels", "disk=ssd")
    hollow_nodes(2, "--prefix", "sel-hdd", "--labels", "disk=hdd")
    settle(cluster, 3)
    apply(cluster, pod("want-ssd", node_selector={"disk": "ssd"}),
          pod("want-ssd-too", node_selector={"disk": "ssd", HOSTNAME: "sel-ssd-0"}),
          pod("want-hdd", node_selector={"disk": "hdd"}),
          pod("want-nvme", node_selector={"disk": "nvme"}))
    placed = wait_bound(cluster, "want-ssd", "want-ssd-too", "want-hdd")
    assert placed["want-ssd"] == "sel-ssd-0" and placed["want-ssd-too"] == "sel-ssd-0", placed
    assert placed["want-hdd"] in ("sel-hdd-0", "sel-hdd-1"), placed
    assert_stays_pending(cluster, {
        "want-nvme": "0/3 nodes are available: 3 node(s) didn't match Pod's node affinity/selector.",
    })


def test_required_node_affinity(cluster, hollow_nodes):
    hollow_nodes(1, "--prefix", "na-small", "--labels", "size=small,gen=1")
    hollow_nodes(1, "--prefix", "na-medium", "--labels", "size=medium,gen=2")
    hollow_nodes(1, "--prefix", "na-large", "--labels", "size=large,gen=3,gpu=nvidia")
    settle(cluster, 3)
    apply(cluster,
          pod("aff-in", affinity=required_node_affinity(term("size", "In", "small", "tiny"))),
          pod("aff-notin", affinity=required_node_affinity(term("size", "NotIn", "small", "large"))),
          pod("aff-exists", affinity=required_node_affinity(term("gpu", "Exists"))),
          pod("aff-gt", affinity=required_node_affinity(term("gen", "Gt", "2"))),
          # Terms are ORed: the second matches the medium node only.
          pod("aff-or", affinity={"nodeAffinity": {"requiredDuringSchedulingIgnoredDuringExecution": {
              "nodeSelectorTerms": [{"matchExpressions": [term("size", "In", "huge")]},
                                    {"matchExpressions": [term("gen", "Gt", "1"), term("gpu", "DoesNotExist")]}]}}}),
          pod("aff-none", affinity=required_node_affinity(term("gen", "Gt", "5"))))
    placed = wait_bound(cluster, "aff-in", "aff-notin", "aff-exists", "aff-gt", "aff-or")
    assert placed == {
        "aff-in": "na-small-0",
        "aff-notin": "na-medium-0",
        "aff-exists": "na-large-0",
        "aff-gt": "na-large-0",
        "aff-or": "na-medium-0",
    }, placed
    assert_stays_pending(cluster, {
        "aff-none": "0/3 nodes are available: 3 node(s) didn't match Pod's node affinity/selector.",
    })


def test_taints_and_tolerations(cluster, hollow_nodes):
    hollow_nodes(1, "--prefix", "taint", "--taints", "gpu=true:NoSchedule")
    settle(cluster, 1)
    apply(cluster,
          pod("intolerant"),
          pod("wrong-value", tolerations=[{"key": "gpu", "operator": "Equal", "value": "false",
                                           "effect": "NoSchedule"}]),
          pod("wrong-effect", tolerations=[{"key": "gpu", "operator": "Equal", "value": "true",
                                            "effect": "PreferNoSchedule"}]),
          pod("tolerant", tolerations=[{"key": "gpu", "operator": "Equal", "value": "true",
                                        "effect": "NoSchedule"}]),
          pod("tolerant-exists", tolerations=[{"key": "gpu", "operator": "Exists"}]))
    placed = wait_bound(cluster, "tolerant", "tolerant-exists")
    assert set(placed.values()) == {"taint-0"}, placed
    untolerated = "0/1 nodes are available: 1 node(s) had untolerated taint {gpu: true}."
    assert_stays_pending(cluster, {"intolerant": untolerated, "wrong-value": untolerated,
                                   "wrong-effect": untolerated})


def test_host_ports(cluster, hollow_nodes):
    hollow_nodes(2, "--prefix", "hostport")
    settle(cluster, 2)
    # Decided in order: the second pod cannot share the first one's node,
    # the third finds the port taken everywhere, another port still fits.
    apply(cluster, pod("port-a", host_port=8080), pod("port-b", host_port=8080),
          pod("port-c", host_port=8080), pod("port-other", host_port=9090))
    placed = wait_bound(cluster, "port-a", "port-b", "port-other")
    assert sorted([placed["port-a"], placed["port-b"]]) == ["hostport-0", "hostport-1"], placed
    assert_stays_pending(cluster, {
        "port-c": "0/2 nodes are available: 2 node(s) didn't have free ports for the requested pod ports.",
    })


def test_required_pod_affinity(cluster, hollow_nodes):
    hollow_nodes(2, "--prefix", "rpa-a", "--labels", f"{ZONE}=a")
    hollow_nodes(1, "--prefix", "rpa-b", "--labels", f"{ZONE}=b")
    settle(cluster, 3)
    apply(cluster,
          pod("db", cpu="500m", memory="1Gi", labels={"app": "db"}, node_name="rpa-a-1"),
          pod("same-node", cpu="100m", affinity={"podAffinity": {
              "requiredDuringSchedulingIgnoredDuringExecution": [pod_term({"app": "db"})]}}),
          pod("same-zone", cpu="100m", affinity={"podAffinity": {
              "requiredDuringSchedulingIgnoredDuringExecution": [pod_term({"app": "db"}, ZONE)]}}),
          pod("lonely", labels={"app": "lonely"}, affinity={"podAffinity": {
              "requiredDuringSchedulingIgnoredDuringExecution": [pod_term({"app": "missing"})]}}))
    placed = wait_bound(cluster, "same-node", "same-zone")
    assert placed["same-node"] == "rpa-a-1", placed
    assert placed["same-zone"] in ("rpa-a-0", "rpa-a-1"), placed
    assert_stays_pending(cluster, {
        "lonely": "0/3 nodes are available: 3 node(s) didn't match pod affinity rules.",
    })


def test_required_pod_anti_affinity(cluster, hollow_nodes):
    hollow_nodes(2, "--prefix", "raa")
    settle(cluster, 2)
    anti = {"podAntiAffinity": {"requiredDuringSchedulingIgnoredDuringExecution": [pod_term({"app": "web"})]}}
    # raa-1 is the busier node, so only the anti-affinity keeps web-1 off raa-0.
    apply(cluster,
          pod("web-0", cpu="100m", memory="128Mi", labels={"app": "web"}, node_name="raa-0"),
          pod("filler", cpu="1", memory="2Gi", node_name="raa-1"),
          pod("web-1", cpu="100m", memory="128Mi", labels={"app": "web"}, affinity=anti),
          # Decided after web-1: both nodes run an app=web pod.
          pod("web-2", cpu="100m", memory="128Mi", labels={"app": "web"}, affinity=anti),
          # A term without labelSelector matches no pod, as on Kubernetes.
          pod("no-selector", cpu="100m", labels={"app": "web"}, affinity={"podAntiAffinity": {
              "requiredDuringSchedulingIgnoredDuringExecution": [{"topologyKey": HOSTNAME}]}}))
    assert wait_bound(cluster, "web-1") == {"web-1": "raa-1"}
    wait_bound(cluster, "no-selector")
    assert_stays_pending(cluster, {
        "web-2": "0/2 nodes are available: 2 node(s) didn't match pod anti-affinity rules.",
    })


def test_cordoned_node_gets_no_pods(cluster, hollow_nodes):
    hollow_nodes(2, "--prefix", "cordon")
    settle(cluster, 2)
    cluster.kubectl("cordon", "cordon-0")
    assert cluster.get("/api/v1/nodes/cordon-0")["spec"].get("unschedulable") is True
    # A pod only cordon-0 could take shows the scheduler sees the cordon.
    apply(cluster, pod("wants-cordoned", node_selector={HOSTNAME: "cordon-0"}))
    assert_stays_pending(cluster, {
        "wants-cordoned": "0/2 nodes are available: 1 node(s) didn't match Pod's node affinity/selector, "
                          "1 node(s) were unschedulable.",
    })
    apply(cluster, pod("free-a", cpu="100m"), pod("free-b", cpu="100m"), pod("free-c", cpu="100m"))
    placed = wait_bound(cluster, "free-a", "free-b", "free-c")
    assert set(placed.values()) == {"cordon-1"}, placed
    cluster.kubectl("uncordon", "cordon-0")
    assert wait_bound(cluster, "wants-cordoned") == {"wants-cordoned": "cordon-0"}


def test_not_ready_node_gets_no_pods(cluster, hollow_nodes):
    hollow_nodes(2, "--prefix", "notready")
    settle(cluster, 2)
    set_ready(cluster, "notready-0", "False")
    # As on Kubernetes, a not-ready node counts as tainted
    # node.kubernetes.io/not-ready:NoSchedule.
    apply(cluster, pod("wants-not-ready", node_selector={HOSTNAME: "notready-0"}))
    assert_stays_pending(cluster, {
        "wants-not-ready": "0/2 nodes are available: 1 node(s) didn't match Pod's node affinity/selector, "
                           "1 node(s) had untolerated taint {node.kubernetes.io/not-ready: }.",
    })
    apply(cluster, pod("free-a", cpu="100m"), pod("free-b", cpu="100m"), pod("free-c", cpu="100m"),
          # A pod tolerating the taint may go to the not-ready node.
          pod("tolerates-not-ready", node_selector={HOSTNAME: "notready-0"},
              tolerations=[{"key": "node.kubernetes.io/not-ready", "operator": "Exists"}]))
    placed = wait_bound(cluster, "free-a", "free-b", "free-c", "tolerates-not-ready")
    assert placed == {"free-a": "notready-1", "free-b": "notready-1", "free-c": "notready-1",
                      "tolerates-not-ready": "notready-0"}, placed
    # Ready again: the waiting pod goes there.
    set_ready(cluster, "notready-0", "True")
    assert wait_bound(cluster, "wants-not-ready") == {"wants-not-ready": "notready-0"}


# --- scores ------------------------------------------------------------------

def test_least_allocated_prefers_the_emptier_node(cluster, hollow_nodes):
    hollow_nodes(2, "--prefix", "least")
    settle(cluster, 2)
    # least-0 (first by name) is half full, least-1 empty. LeastAllocated:
    # least-0 (37+43)/2 = 40, least-1 (87+93)/2 = 90; balanced ~96 on both.
    # Then least-1 holds 0.5 CPU and least-0 2: the next one goes to least-1
    # too (fewer pods is not what counts, free resources are).
    apply(cluster, pod("half", cpu="2", memory="4Gi", node_name="least-0"),
          pod("incoming", cpu="500m", memory="512Mi"),
          pod("next", cpu="500m", memory="512Mi"))
    assert wait_bound(cluster, "incoming", "next") == {"incoming": "least-1", "next": "least-1"}


def test_balanced_allocation(cluster, hollow_nodes):
    hollow_nodes(2, "--prefix", "balance")
    settle(cluster, 2)
    # Nodes: 4 CPU, 8Gi. The incoming pod asks 1 CPU (25%) and 4Gi (50%).
    # balance-0 holds CPU, balance-1 memory; once the pod is placed:
    #   balance-0: cpu 50%, memory 53%: LeastAllocated (50+46)/2 = 48,
    #              BalancedAllocation (1 - |.5-.53|/2) = 98
    #   balance-1: cpu 27%, memory 75%: LeastAllocated (72+25)/2 = 48,
    #              BalancedAllocation (1 - |.27-.75|/2) = 76
    # Equally free overall, so the even use of resources decides.
    apply(cluster, pod("cpu-heavy", cpu="1", memory="256Mi", node_name="balance-0"),
          pod("memory-heavy", cpu="100m", memory="2Gi", node_name="balance-1"),
          pod("incoming", cpu="1", memory="4Gi"))
    assert wait_bound(cluster, "incoming") == {"incoming": "balance-0"}


def test_spreading_across_nodes(cluster, hollow_nodes):
    hollow_nodes(2, "--prefix", "spread")
    settle(cluster, 2)
    rs = replica_set(cluster, "web", 2)
    # spread-0: one pod of the ReplicaSet; spread-1: two pods of nobody's.
    apply(cluster,
          pod("web-0", cpu="100m", memory="128Mi", labels={"app": "web"}, owner=rs, node_name="spread-0"),
          pod("other-0", cpu="100m", memory="128Mi", labels={"app": "other"}, node_name="spread-1"),
          pod("other-1", cpu="100m", memory="128Mi", labels={"app": "other"}, node_name="spread-1"),
          # A pod of no owner goes to the emptier node, spread-0...
          pod("loner", cpu="100m", memory="128Mi"),
          # ...which makes both nodes hold the same; the ReplicaSet's next
          # pod goes where none of its pods are.
          pod("web-1", cpu="100m", memory="128Mi", labels={"app": "web"}, owner=rs))
    assert wait_bound(cluster, "loner", "web-1") == {"loner": "spread-0", "web-1": "spread-1"}


def test_spreading_across_zones(cluster, hollow_nodes):
    hollow_nodes(2, "--prefix", "zone-a", "--labels", f"{ZONE}=a")
    hollow_nodes(1, "--prefix", "zone-b", "--labels", f"{ZONE}=b")
    settle(cluster, 3)
    rs = replica_set(cluster, "api", 3)
    apply(cluster,
          pod("api-0", cpu="100m", memory="128Mi", labels={"app": "api"}, owner=rs, node_name="zone-a-0"),
          # zone-a-1 and zone-b-0 are both empty and hold none of the pods,
          # but zone a already has one: the next pod goes to zone b.
          pod("api-1", cpu="100m", memory="128Mi", labels={"app": "api"}, owner=rs),
          # One in each zone: the third goes to the node with none in zone a.
          pod("api-2", cpu="100m", memory="128Mi", labels={"app": "api"}, owner=rs))
    assert wait_bound(cluster, "api-1", "api-2") == {"api-1": "zone-b-0", "api-2": "zone-a-1"}


def test_preferred_node_affinity(cluster, hollow_nodes):
    hollow_nodes(1, "--prefix", "pna-ssd", "--labels", "disk=ssd")
    hollow_nodes(1, "--prefix", "pna-hdd", "--labels", "disk=hdd")
    settle(cluster, 2)
    prefers_ssd = {"nodeAffinity": {"preferredDuringSchedulingIgnoredDuringExecution": [
        {"weight": 80, "preference": {"matchExpressions": [term("disk", "In", "ssd")]}},
        {"weight": 5, "preference": {"matchExpressions": [term("disk", "In", "tape")]}},
    ]}}
    # The ssd node is the busier one: only the preference takes a pod there.
    apply(cluster, pod("filler", cpu="1", memory="2Gi", node_name="pna-ssd-0"),
          pod("indifferent", cpu="500m", memory="512Mi"),
          pod("picky", cpu="500m", memory="512Mi", affinity=prefers_ssd))
    assert wait_bound(cluster, "indifferent", "picky") == {"indifferent": "pna-hdd-0", "picky": "pna-ssd-0"}


def test_preferred_pod_affinity(cluster, hollow_nodes):
    hollow_nodes(2, "--prefix", "ppa")
    settle(cluster, 2)
    near_cache = {"podAffinity": {"preferredDuringSchedulingIgnoredDuringExecution": [
        {"weight": 100, "podAffinityTerm": pod_term({"app": "cache"})}]}}
    # ppa-1 runs the cache and is the busier node.
    apply(cluster, pod("cache", cpu="100m", memory="128Mi", labels={"app": "cache"}, node_name="ppa-1"),
          pod("filler", cpu="1", memory="2Gi", node_name="ppa-1"),
          pod("indifferent", cpu="500m", memory="512Mi"),
          pod("near-cache", cpu="500m", memory="512Mi", affinity=near_cache))
    assert wait_bound(cluster, "indifferent", "near-cache") == {"indifferent": "ppa-0", "near-cache": "ppa-1"}


def test_preferred_pod_anti_affinity(cluster, hollow_nodes):
    hollow_nodes(2, "--prefix", "ppaa")
    settle(cluster, 2)
    away = {"podAntiAffinity": {"preferredDuringSchedulingIgnoredDuringExecution": [
        {"weight": 100, "podAffinityTerm": pod_term({"app": "noisy"})}]}}
    # ppaa-0 runs the noisy pod but is the emptier node.
    apply(cluster, pod("noisy", cpu="100m", memory="128Mi", labels={"app": "noisy"}, node_name="ppaa-0"),
          pod("filler", cpu="1", memory="2Gi", node_name="ppaa-1"),
          pod("indifferent", cpu="200m", memory="256Mi"),
          pod("quiet", cpu="200m", memory="256Mi", affinity=away))
    assert wait_bound(cluster, "indifferent", "quiet") == {"indifferent": "ppaa-0", "quiet": "ppaa-1"}


def test_prefer_no_schedule_taint(cluster, hollow_nodes):
    hollow_nodes(1, "--prefix", "pns-taint", "--taints", "dedicated=batch:PreferNoSchedule")
    hollow_nodes(1, "--prefix", "pns-plain")
    settle(cluster, 2)
    # The tainted node is the emptier one; PreferNoSchedule only steers.
    apply(cluster, pod("filler", cpu="1", memory="2Gi", node_name="pns-plain-0"),
          pod("intolerant", cpu="500m", memory="512Mi"),
          pod("tolerant", cpu="500m", memory="512Mi", tolerations=[
              {"key": "dedicated", "operator": "Equal", "value": "batch", "effect": "PreferNoSchedule"}]))
    assert wait_bound(cluster, "intolerant", "tolerant") == {"intolerant": "pns-plain-0", "tolerant": "pns-taint-0"}


# --- several schedulers ------------------------------------------------------

def test_several_schedulers_by_scheduler_name(cluster, hollow_nodes):
    hollow_nodes(3, "--prefix", "ff")
    settle(cluster, 3)
    out = run_orchd(cluster, "plugin", "install", str(plugin_path("first-fit-named.wasm"))).stdout
    assert 'serving schedulerName "first-fit"' in out, out
    wait_plugin_active(cluster, "first-fit", "first-fit")
    names = [row.split()[0] for row in cluster.kubectl("get", "plugins").stdout.splitlines()[1:]]
    assert {"default-scheduler", "first-fit"} <= set(names), names

    apply(cluster,
          pod("nobody-serves", cpu="100m", scheduler_name="no-such-scheduler"),
          pod("packed-a", cpu="500m", memory="512Mi", scheduler_name="first-fit"),
          pod("packed-b", cpu="500m", memory="512Mi", scheduler_name="first-fit"),
          pod("default-a", cpu="500m", memory="512Mi"),
          pod("default-b", cpu="500m", memory="512Mi", scheduler_name="default-scheduler"))
    placed = wait_bound(cluster, "packed-a", "packed-b", "default-a", "default-b")
    # First fit: the first node by name that fits, for both.
    assert placed["packed-a"] == "ff-0" and placed["packed-b"] == "ff-0", placed
    assert scheduled_by(cluster, "packed-a", "packed-b", "default-a", "default-b") == {
        "packed-a": "first-fit", "packed-b": "first-fit",
        "default-a": "default-scheduler", "default-b": "default-scheduler"}
    # The default scheduler spreads: its two pods do not share a node.
    assert placed["default-a"] != placed["default-b"], placed
    # Nobody serves the last schedulerName: no decision, no event, ever.
    time.sleep(GRACE)
    p = get_pod(cluster, "nobody-serves")
    assert not p["spec"].get("nodeName"), p["spec"]
    assert p["status"].get("phase", "Pending") == "Pending"
    assert not [c for c in p["status"].get("conditions", []) if c["type"] == "PodScheduled"], p["status"]
    assert events(cluster, "nobody-serves") == []
    assert "nobody-serves" not in kubectl_events(cluster)
