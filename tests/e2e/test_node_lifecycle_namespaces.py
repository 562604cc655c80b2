"""The node-lifecycle, namespace and endpoints controllers orchd ships
(plugins/node-lifecycle, plugins/namespace, plugins/endpoints, Wasm
components), driven with the real kubectl against hollow nodes.

A node fails by stopping its `orchd sim nodes` process: heartbeats stop,
the Node stays. Grace periods and heartbeats are shortened for the test
(the plugin's `spec.config`, `orchd sim nodes --heartbeat-ms`). Every wait
polls for an end state with a deadline."""

from __future__ import annotations

import json
import urllib.parse
from datetime import datetime

from helpers import Cluster, table_rows, wait_until

HEARTBEAT_MS = "500"
GRACE_SECONDS = 3


def is_ready(pod: dict) -> bool:
    return any(c.get("type") == "Ready" and c.get("status") == "True"
               for c in (pod.get("status") or {}).get("conditions") or [])


def live_pods(c: Cluster, selector: str, ns: str = "default") -> list[dict]:
    q = urllib.parse.quote(selector)
    return [p for p in c.get(f"/api/v1/namespaces/{ns}/pods?labelSelector={q}")["items"]
            if not p["metadata"].get("deletionTimestamp")]


def seconds(stamp: str) -> float:
    return datetime.fromisoformat(stamp.replace("Z", "+00:00")).timestamp()


def set_grace_period(c: Cluster, seconds: float) -> None:
    """Sets the node-lifecycle plugin's grace period and waits until the
    plugin host has reloaded it with that configuration."""
    config = json.dumps({"nodeMonitorGracePeriodSeconds": seconds})
    c.kubectl("patch", "plugin", "node-lifecycle", "--type", "merge",
              "-p", json.dumps({"spec": {"config": config}}))

    def reloaded():
        p = c.get("/apis/orchd.dev/v1/plugins/node-lifecycle")
        status = p.get("status") or {}
        return (status.get("observedGeneration") == p["metadata"]["generation"]
                and status.get("phase") == "Active")

    wait_until("node-lifecycle to run with the new grace period", reloaded, timeout=60)


def node_status_column(c: Cluster, name: str) -> str:
    rows = table_rows(c.kubectl("get", "nodes", name).stdout)
    return rows[1][1] if len(rows) > 1 else ""


def deployment(name: str, replicas: int, ns: str = "default", extra_pod_spec: str = "") -> str:
    return f"""
apiVersion: apps/v1
kind: Deployment
metadata:
  name: {name}
  namespace: {ns}
spec:
  replicas: {replicas}
  selector:
    matchLabels: {{app: {name}}}
  template:
    metadata:
      labels: {{app: {name}}}
    spec:
{extra_pod_spec}
      containers:
      - name: app
        image: nginx:1.27
        ports:
        - {{name: http, containerPort: 8080}}
"""


def test_a_silent_node_turns_not_ready_its_pods_move_and_it_comes_back(cluster, hollow_nodes):
    set_grace_period(cluster, GRACE_SECONDS)
    doomed = hollow_nodes(1, "--prefix", "doomed", "--heartbeat-ms", HEARTBEAT_MS)
    # Every pod lands on the one node there is; the pods tolerate the node
    # being unreachable for 2 s, not the API's default 300 s.
    tolerate = """      tolerations:
      - {key: node.kubernetes.io/unreachable, operator: Exists, effect: NoExecute, tolerationSeconds: 2}
      - {key: node.kubernetes.io/not-ready, operator: Exists, effect: NoExecute, tolerationSeconds: 2}"""
    cluster.kubectl_apply_text(deployment("mover", 3, extra_pod_spec=tolerate))
    first = wait_until("3 running pods on doomed-0", lambda: (
        (ps := live_pods(cluster, "app=mover"))
        and len(ps) == 3 and all(is_ready(p) and p["spec"]["nodeName"] == "doomed-0" for p in ps) and ps))
    first_names = {p["metadata"]["name"] for p in first}
    # The pods' own tolerations cover both taints: the API's defaults
    # (300 s each) are not added.
    assert sorted(t["key"] for t in first[0]["spec"]["tolerations"]) == [
        "node.kubernetes.io/not-ready", "node.kubernetes.io/unreachable"]

    hollow_nodes(2, "--prefix", "stay", "--heartbeat-ms", HEARTBEAT_MS)
    # Healthy nodes stay Ready across several grace periods.
    wait_until("stay nodes Ready", lambda: all(
        node_status_column(cluster, f"stay-{i}") == "Ready" for i in range(2)))

    doomed.stop()
    wait_until("doomed-0 NotReady in kubectl get nodes",
               lambda: node_status_column(cluster, "doomed-0") == "NotReady", timeout=30)
    node = cluster.kubectl_json("get", "node", "doomed-0")
    ready = next(c for c in node["status"]["conditions"] if c["type"] == "Ready")
    assert (ready["status"], ready["reason"], ready["message"]) == (
        "Unknown", "NodeStatusUnknown", "Kubelet stopped posting node status."), ready
    assert all(c["status"] == "Unknown" for c in node["status"]["conditions"]), node["status"]
    node_taints = wait_until("the unreachable taints", lambda: (
        t := cluster.kubectl_json("get", "node", "doomed-0")["spec"].get("taints") or [])
        and {(x["key"], x["effect"]) for x in t} >= {("node.kubernetes.io/unreachable", "NoExecute"),
                                                     ("node.kubernetes.io/unreachable", "NoSchedule")} and t)
    assert not [t for t in node_taints if t["key"] == "node.kubernetes.io/not-ready"], node_taints
    tainted_at = next(t["timeAdded"] for t in node_taints if t["effect"] == "NoExecute")
    # The other nodes are untouched.
    for i in range(2):
        assert node_status_column(cluster, f"stay-{i}") == "Ready"
        assert not cluster.kubectl_json("get", "node", f"stay-{i}")["spec"].get("taints")

    # Evicted after their 2 s; the ReplicaSet replaces them on the others.
    moved = wait_until("3 ready pods on the stay nodes", lambda: (
        (ps := live_pods(cluster, "app=mover"))
        and len(ps) == 3 and all(is_ready(p) and p["spec"]["nodeName"].startswith("stay-") for p in ps) and ps),
        timeout=60)
    assert not first_names & {p["metadata"]["name"] for p in moved}
    events = cluster.kubectl_json("get", "events", "--field-selector", "reason=TaintManagerEviction")["items"]
    evicted = {e["involvedObject"]["name"] for e in events}
    assert first_names <= evicted, (first_names, evicted)
    # Not before their tolerationSeconds (2 s) since the taint: both times
    # are whole seconds, the taint's rounded down.
    for e in events:
        waited = seconds(e["firstTimestamp"]) - seconds(tainted_at)
        assert waited >= 2, (tainted_at, e)

    # Heartbeats resume: the node posts Ready and the taints go.
    hollow_nodes(1, "--prefix", "doomed", "--heartbeat-ms", HEARTBEAT_MS)
    wait_until("doomed-0 Ready again", lambda: node_status_column(cluster, "doomed-0") == "Ready", timeout=30)
    wait_until("the taints gone", lambda: not [
        t for t in cluster.kubectl_json("get", "node", "doomed-0")["spec"].get("taints") or []
        if t["key"].startswith("node.kubernetes.io/")])
    # And it stays Ready past a grace period.
    node = cluster.kubectl_json("get", "node", "doomed-0")
    assert next(c for c in node["status"]["conditions"] if c["type"] == "Ready")["status"] == "True"


def test_deleting_a_namespace_deletes_its_content_then_the_namespace(cluster, hollow_nodes):
    hollow_nodes(1)
    cluster.kubectl_apply_text("apiVersion: v1\nkind: Namespace\nmetadata: {name: team}\n")
    ns = cluster.kubectl_json("get", "namespace", "team")
    assert ns["spec"]["finalizers"] == ["kubernetes"]
    cluster.kubectl_apply_text(deployment("web", 2, ns="team") + """
---
apiVersion: v1
kind: ConfigMap
metadata: {name: settings, namespace: team}
data: {a: b}
---
apiVersion: v1
kind: ConfigMap
metadata: {name: held, namespace: team, finalizers: [example.com/hold]}
---
apiVersion: v1
kind: Service
metadata: {name: web, namespace: team}
spec:
  selector: {app: web}
  ports: [{port: 80, targetPort: http}]
""")
    wait_until("2 running pods in team", lambda: len([p for p in live_pods(cluster, "app=web", "team")
                                                     if is_ready(p)]) == 2)

    cluster.kubectl("delete", "namespace", "team", "--wait=false")
    rows = table_rows(cluster.kubectl("get", "namespace", "team").stdout)
    assert rows[1][:2] == ["team", "Terminating"], rows

    # Nothing new goes in meanwhile, in Kubernetes' words.
    refused = cluster.kubectl("create", "configmap", "late", "-n", "team", check=False)
    assert refused.returncode != 0
    assert ('configmaps "late" is forbidden: unable to create new content in namespace team '
            'because it is being terminated') in refused.stderr, refused.stderr

    # Everything goes but the ConfigMap whose finalizer holds it.
    def left():
        out = cluster.kubectl("get", "deployments,replicasets,pods,services,endpoints,configmaps",
                              "-n", "team", "-o", "name").stdout.split()
        return out
    wait_until("only the held ConfigMap left", lambda: left() == ["configmap/held"], timeout=60)
    ns = cluster.kubectl_json("get", "namespace", "team")
    assert ns["status"]["phase"] == "Terminating"
    conditions = {c["type"]: c for c in wait_until("the deletion conditions", lambda: (
        cluster.kubectl_json("get", "namespace", "team")["status"].get("conditions")))}
    wait_until("NamespaceFinalizersRemaining", lambda: any(
        c["type"] == "NamespaceFinalizersRemaining" and c["status"] == "True"
        and "example.com/hold in 1 resource instances" in c["message"]
        for c in cluster.kubectl_json("get", "namespace", "team")["status"].get("conditions") or []))
    assert "NamespaceContentRemaining" in conditions, conditions

    # Lifting it lets the namespace go.
    cluster.kubectl("patch", "configmap", "held", "-n", "team", "--type", "merge",
                    "-p", '{"metadata":{"finalizers":null}}')
    wait_until("namespace team gone", lambda: cluster.kubectl(
        "get", "namespace", "team", check=False).returncode != 0, timeout=30)
    gone = cluster.kubectl("get", "namespace", "team", check=False)
    assert 'namespaces "team" not found' in gone.stderr, gone.stderr
    # Its name is free again.
    cluster.kubectl_apply_text("apiVersion: v1\nkind: Namespace\nmetadata: {name: team}\n")
    assert cluster.kubectl_json("get", "namespace", "team")["status"]["phase"] == "Active"


def endpoint_ips(c: Cluster, name: str) -> tuple[set[str], set[str]]:
    r = c.http("GET", f"/api/v1/namespaces/default/endpoints/{name}")
    if r.status != 200:
        return set(), set()
    ready, not_ready = set(), set()
    for s in r.json().get("subsets") or []:
        ready |= {a["ip"] for a in s.get("addresses") or []}
        not_ready |= {a["ip"] for a in s.get("notReadyAddresses") or []}
    return ready, not_ready


def test_endpoints_list_ready_pods_and_follow_them(cluster, hollow_nodes):
    hollow_nodes(2)
    cluster.kubectl_apply_text(deployment("web", 3) + """
---
apiVersion: v1
kind: Service
metadata: {name: web, labels: {team: a}}
spec:
  selector: {app: web}
  ports: [{name: web, port: 80, targetPort: http}]
---
apiVersion: v1
kind: Service
metadata: {name: manual}
spec:
  ports: [{port: 80}]
---
apiVersion: v1
kind: Endpoints
metadata: {name: manual}
subsets: [{addresses: [{ip: 192.0.2.1}], ports: [{port: 9999}]}]
""")
    pods = wait_until("3 ready pods", lambda: (
        (ps := live_pods(cluster, "app=web")) and len(ps) == 3 and all(is_ready(p) for p in ps) and ps))
    ips = {p["status"]["podIP"] for p in pods}
    assert len(ips) == 3 and all(ips), ips
    wait_until("the endpoints list the 3 pods", lambda: endpoint_ips(cluster, "web") == (ips, set()))
    ep = cluster.kubectl_json("get", "endpoints", "web")
    assert ep["metadata"]["labels"] == {"team": "a"}
    [subset] = ep["subsets"]
    assert subset["ports"] == [{"name": "web", "port": 8080, "protocol": "TCP"}]
    by_ip = {p["status"]["podIP"]: p for p in pods}
    for a in subset["addresses"]:
        pod = by_ip[a["ip"]]
        assert a["nodeName"] == pod["spec"]["nodeName"]
        assert a["targetRef"] == {"kind": "Pod", "namespace": "default", "name": pod["metadata"]["name"],
                                  "uid": pod["metadata"]["uid"]}
    # kubectl shows the ready ones (three fit the column).
    rows = table_rows(cluster.kubectl("get", "endpoints", "web").stdout)
    assert rows[1][0] == "web" and set(rows[1][1].split(",")) == {f"{ip}:8080" for ip in ips}, rows

    # A pod going unready moves to notReadyAddresses (its node says so).
    victim = pods[0]
    path = f"/api/v1/namespaces/default/pods/{victim['metadata']['name']}/status"
    conditions = [dict(c, status="False") if c["type"] in ("Ready", "ContainersReady") else c
                  for c in victim["status"]["conditions"]]
    r = cluster.http("PATCH", path, {"status": {"conditions": conditions}},
                     headers={"Content-Type": "application/merge-patch+json"})
    assert r.status == 200, r
    ip = victim["status"]["podIP"]
    wait_until("the unready pod under notReadyAddresses",
               lambda: endpoint_ips(cluster, "web") == (ips - {ip}, {ip}))

    # A deleted pod leaves; its replacement comes in once ready.
    cluster.kubectl("delete", "pod", victim["metadata"]["name"], "--wait=false")
    now = wait_until("3 ready pods again", lambda: (
        (ps := live_pods(cluster, "app=web")) and len(ps) == 3 and all(is_ready(p) for p in ps)
        and victim["metadata"]["name"] not in {p["metadata"]["name"] for p in ps} and ps))
    new_ips = {p["status"]["podIP"] for p in now}
    wait_until("the endpoints follow", lambda: endpoint_ips(cluster, "web") == (new_ips, set()))

    # A pod relabelled away leaves (its ReplicaSet releases it and makes
    # another, which comes in).
    stray = now[0]
    cluster.kubectl("label", "pod", stray["metadata"]["name"], "app=stray", "--overwrite")

    def followed():
        ps = live_pods(cluster, "app=web")
        if len(ps) != 3 or not all(is_ready(p) for p in ps):
            return False
        want = {p["status"]["podIP"] for p in ps}
        return stray["status"]["podIP"] not in want and endpoint_ips(cluster, "web") == (want, set())
    wait_until("the endpoints drop the relabelled pod", followed)

    # A Service without a selector keeps the Endpoints written for it.
    assert endpoint_ips(cluster, "manual") == ({"192.0.2.1"}, set())
    # Deleting the Service deletes its Endpoints.
    cluster.kubectl("delete", "service", "web")
    wait_until("the endpoints of web gone",
               lambda: cluster.http("GET", "/api/v1/namespaces/default/endpoints/web").status == 404)
