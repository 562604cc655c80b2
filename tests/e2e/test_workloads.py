"""Workload controllers end to end: the replicaset and deployment
controllers orchd ships (plugins/replicaset, plugins/deployment, Wasm
components) driven with the real kubectl against hollow nodes, which mark
bound pods Running and Ready.

Rollout bounds are checked from a watch of the pods (every state the API
went through), not by sampling with sleeps."""

from __future__ import annotations

import re
import time
import urllib.parse

from helpers import Cluster, PodWatch, plugin_path, run_orchd, table_rows, wait_until

PODS = "/api/v1/namespaces/default/pods"
RSS = "/apis/apps/v1/namespaces/default/replicasets"
DEPLOYMENTS = "/apis/apps/v1/namespaces/default/deployments"


def deployment_yaml(name: str, image: str, replicas: int, strategy: str, extra_spec: str = "",
                    pod_spec: str = "") -> str:
    return f"""
apiVersion: apps/v1
kind: Deployment
metadata:
  name: {name}
spec:
  replicas: {replicas}
  selector:
    matchLabels: {{app: {name}}}
  strategy:
{strategy}
{extra_spec}
  template:
    metadata:
      labels: {{app: {name}}}
    spec:
{pod_spec}
      containers:
      - name: app
        image: {image}
"""


ROLLING = """    type: RollingUpdate
    rollingUpdate: {maxSurge: 1, maxUnavailable: 1}"""


def is_ready(pod: dict) -> bool:
    return any(c.get("type") == "Ready" and c.get("status") == "True"
               for c in (pod.get("status") or {}).get("conditions") or [])


def live_pods(c: Cluster, selector: str) -> list[dict]:
    """Pods matching `selector` that are not being deleted."""
    q = urllib.parse.quote(selector)
    return [p for p in c.get(f"{PODS}?labelSelector={q}")["items"]
            if not p["metadata"].get("deletionTimestamp")]


def image_of(pod: dict) -> str:
    return pod["spec"]["containers"][0]["image"]


def rollout_status(c: Cluster, name: str, check: bool = True):
    return c.kubectl("rollout", "status", f"deployment/{name}", "--timeout=90s", check=check, timeout=120)


def replica_sets(c: Cluster, selector: str) -> list[dict]:
    q = urllib.parse.quote(selector)
    return c.get(f"{RSS}?labelSelector={q}")["items"]


def revision(obj: dict) -> str | None:
    return (obj["metadata"].get("annotations") or {}).get("deployment.kubernetes.io/revision")


class RolloutWatch(PodWatch):
    """Follows the pods matching a selector and records the extremes the
    rollout went through: most pods at once, fewest ready ones, and
    whether two images ever ran side by side."""

    def on_listed(self, pods: list[dict]):
        self.pods: dict[str, dict] = {p["metadata"]["name"]: p for p in pods}
        self.max_total = len(self.pods)
        self.min_ready = self.ready()
        self.max_images = len(self.images())
        self.added = 0

    def ready(self) -> int:
        return sum(1 for p in self.pods.values() if is_ready(p))

    def images(self) -> set[str]:
        return {image_of(p) for p in self.pods.values()}

    def on_event(self, kind: str, obj: dict):
        name = obj["metadata"]["name"]
        if kind == "DELETED" or obj["metadata"].get("deletionTimestamp"):
            self.pods.pop(name, None)
        else:
            if name not in self.pods:
                self.added += 1
            self.pods[name] = obj
        self.max_total = max(self.max_total, len(self.pods))
        self.min_ready = min(self.min_ready, self.ready())
        self.max_images = max(self.max_images, len(self.images()))

    def settled(self, count: int, image: str) -> bool:
        """Whether the watch has seen exactly `count` pods, all ready and
        of `image` (the rollout's end state)."""
        with self.lock:
            return len(self.pods) == count and self.ready() == count and self.images() == {image}

def check_rolled_out(c: Cluster, name: str, replicas: int, image: str):
    """`kubectl rollout status` completes, then exactly `replicas` pods
    exist, all Running, Ready and of `image`, and the Deployment's status
    counts them."""
    out = rollout_status(c, name).stdout
    assert f'deployment "{name}" successfully rolled out' in out, out
    # After a scale-down, `rollout status` may already succeed while the
    # surplus pods are still being deleted and the Deployment's counts
    # still include them (as in Kubernetes: the counts come from the
    # ReplicaSets' status, written after the pods are gone), so the end
    # state is awaited, not sampled.
    wait_until(f"{replicas} pods of deployment {name}",
               lambda: len(live_pods(c, f"app={name}")) == replicas, timeout=30)
    pods = live_pods(c, f"app={name}")
    assert len(pods) == replicas, [p["metadata"]["name"] for p in pods]
    assert all(p["status"]["phase"] == "Running" and is_ready(p) for p in pods), pods
    assert {image_of(p) for p in pods} == {image}, [image_of(p) for p in pods]

    def settled():
        d = c.get(f"{DEPLOYMENTS}/{name}")
        s = d["status"]
        counts = (s.get("replicas"), s.get("updatedReplicas"), s.get("readyReplicas"), s.get("availableReplicas"))
        done = (s.get("observedGeneration") == d["metadata"]["generation"]
                and counts == (replicas,) * 4 and s.get("unavailableReplicas", 0) == 0)
        return s if done else None

    wait_until(f"deployment {name}'s status to count {replicas} pods", settled, timeout=30)
    s = c.get(f"{DEPLOYMENTS}/{name}")["status"]
    conditions = {cond["type"]: cond for cond in s["conditions"]}
    assert (conditions["Available"]["status"], conditions["Available"]["reason"]) == ("True", "MinimumReplicasAvailable")
    assert (conditions["Progressing"]["status"], conditions["Progressing"]["reason"]) == ("True", "NewReplicaSetAvailable")
    return pods


def history_revisions(c: Cluster, name: str) -> list[str]:
    out = c.kubectl("rollout", "history", f"deployment/{name}").stdout
    rows = table_rows(out)
    header = next(i for i, r in enumerate(rows) if r[:1] == ["REVISION"])
    return [r[0] for r in rows[header + 1:]]


def test_deployment_rolls_out_scales_updates_and_rolls_back(cluster, hollow_nodes):
    hollow_nodes(3)
    cluster.kubectl_apply_text(deployment_yaml("web", "nginx:1.26", 4, ROLLING))
    pods = check_rolled_out(cluster, "web", 4, "nginx:1.26")
    [rs] = replica_sets(cluster, "app=web")
    hash_ = rs["metadata"]["labels"]["pod-template-hash"]
    assert rs["metadata"]["name"] == f"web-{hash_}"
    assert rs["spec"]["selector"]["matchLabels"] == {"app": "web", "pod-template-hash": hash_}
    assert revision(rs) == "1" and revision(cluster.get(f"{DEPLOYMENTS}/web")) == "1"
    [owner] = rs["metadata"]["ownerReferences"]
    assert owner["kind"] == "Deployment" and owner["controller"] and owner["blockOwnerDeletion"]
    for p in pods:
        assert re.fullmatch(rf"web-{hash_}-[a-z0-9]{{5}}", p["metadata"]["name"]), p["metadata"]["name"]
        [ref] = p["metadata"]["ownerReferences"]
        assert (ref["kind"], ref["name"], ref["uid"]) == ("ReplicaSet", rs["metadata"]["name"], rs["metadata"]["uid"])

    # Scaling goes through the same ReplicaSet, up and down.
    cluster.kubectl("scale", "deployment", "web", "--replicas=6")
    check_rolled_out(cluster, "web", 6, "nginx:1.26")
    cluster.kubectl("scale", "deployment", "web", "--replicas=4")
    check_rolled_out(cluster, "web", 4, "nginx:1.26")
    assert len(replica_sets(cluster, "app=web")) == 1

    # A new image rolls out within maxSurge 1 / maxUnavailable 1.
    watch = RolloutWatch(cluster, "app=web")
    try:
        cluster.kubectl("set", "image", "deployment/web", "app=nginx:1.27")
        check_rolled_out(cluster, "web", 4, "nginx:1.27")
        wait_until("the watch to see the end state", lambda: watch.settled(4, "nginx:1.27"))
        assert not watch.errors, watch.errors
        assert watch.added >= 4, watch.added
        assert watch.max_total <= 5, f"{watch.max_total} pods at once, more than replicas + maxSurge"
        assert watch.min_ready >= 3, f"only {watch.min_ready} ready, fewer than replicas - maxUnavailable"
    finally:
        watch.close()
    assert history_revisions(cluster, "web") == ["1", "2"]
    by_revision = {revision(r): r for r in replica_sets(cluster, "app=web")}
    assert by_revision["1"]["spec"]["replicas"] == 0 and by_revision["2"]["spec"]["replicas"] == 4

    # Undo: kubectl copies revision 1's template back; its ReplicaSet
    # becomes the new one again, as revision 3, under the same bounds.
    watch = RolloutWatch(cluster, "app=web")
    try:
        cluster.kubectl("rollout", "undo", "deployment/web")
        check_rolled_out(cluster, "web", 4, "nginx:1.26")
        wait_until("the watch to see the end state", lambda: watch.settled(4, "nginx:1.26"))
        assert watch.max_total <= 5 and watch.min_ready >= 3, (watch.max_total, watch.min_ready)
    finally:
        watch.close()
    assert history_revisions(cluster, "web") == ["2", "3"]
    rss = replica_sets(cluster, "app=web")
    assert len(rss) == 2
    back = next(r for r in rss if revision(r) == "3")
    assert back["metadata"]["name"] == f"web-{hash_}" and back["spec"]["replicas"] == 4
    assert revision(cluster.get(f"{DEPLOYMENTS}/web")) == "3"


def test_recreate_never_runs_two_templates_at_once(cluster, hollow_nodes):
    hollow_nodes(2)
    cluster.kubectl_apply_text(deployment_yaml("batch", "worker:1", 3, "    type: Recreate"))
    check_rolled_out(cluster, "batch", 3, "worker:1")
    watch = RolloutWatch(cluster, "app=batch")
    try:
        cluster.kubectl("set", "image", "deployment/batch", "app=worker:2")
        check_rolled_out(cluster, "batch", 3, "worker:2")
        wait_until("the watch to see the end state", lambda: watch.settled(3, "worker:2"))
        assert watch.max_images == 1, "old and new pods ran side by side"
        assert watch.max_total <= 3, watch.max_total
        assert watch.min_ready == 0  # Recreate: everything goes first
    finally:
        watch.close()


def test_paused_deployment_scales_but_does_not_roll_out(cluster, hollow_nodes):
    hollow_nodes(2)
    cluster.kubectl_apply_text(deployment_yaml("api", "api:1", 2, ROLLING))
    check_rolled_out(cluster, "api", 2, "api:1")
    cluster.kubectl("rollout", "pause", "deployment/api")
    cluster.kubectl("set", "image", "deployment/api", "app=api:2")
    cluster.kubectl("scale", "deployment", "api", "--replicas=3")

    def observed():
        d = cluster.get(f"{DEPLOYMENTS}/api")
        s = d.get("status") or {}
        progressing = next((c for c in s.get("conditions") or [] if c["type"] == "Progressing"), {})
        return (s.get("observedGeneration") == d["metadata"]["generation"] and s.get("readyReplicas") == 3
                and progressing.get("reason") == "DeploymentPaused")

    wait_until("the paused deployment scaled and observed", observed)
    # Scaled, with the old template: no new ReplicaSet while paused.
    [rs] = replica_sets(cluster, "app=api")
    assert rs["spec"]["replicas"] == 3
    assert {image_of(p) for p in live_pods(cluster, "app=api")} == {"api:1"}
    cluster.kubectl("rollout", "resume", "deployment/api")
    check_rolled_out(cluster, "api", 3, "api:2")


def test_progress_deadline_is_reported(cluster, hollow_nodes):
    hollow_nodes(1)
    # Its pods fit no node, so the rollout cannot progress.
    cluster.kubectl_apply_text(deployment_yaml(
        "stuck", "app:1", 2, ROLLING, extra_spec="  progressDeadlineSeconds: 2",
        pod_spec="      nodeSelector: {nowhere: 'true'}"))
    p = rollout_status(cluster, "stuck", check=False)
    assert p.returncode != 0, p.stdout
    assert 'deployment "stuck" exceeded its progress deadline' in p.stderr, p.stderr
    s = cluster.get(f"{DEPLOYMENTS}/stuck")["status"]
    conditions = {c["type"]: c for c in s["conditions"]}
    assert (conditions["Progressing"]["status"], conditions["Progressing"]["reason"]) == \
        ("False", "ProgressDeadlineExceeded"), conditions
    assert conditions["Available"]["status"] == "False", conditions
    assert s["updatedReplicas"] == 2 and s.get("availableReplicas", 0) == 0, s


REPLICASET = """
apiVersion: apps/v1
kind: ReplicaSet
metadata:
  name: front
spec:
  replicas: 3
  selector:
    matchLabels: {app: front}
  template:
    metadata:
      labels: {app: front, tier: web}
    spec:
      containers:
      - name: app
        image: front:1
"""


def test_replicaset_alone_keeps_its_replicas(cluster, hollow_nodes):
    hollow_nodes(2)
    cluster.kubectl_apply_text(REPLICASET)

    def ready_pods():
        rs = cluster.get(f"{RSS}/front")
        s = rs.get("status") or {}
        pods = live_pods(cluster, "app=front")
        full = (s.get("readyReplicas") == 3 and s.get("availableReplicas") == 3
                and s.get("fullyLabeledReplicas") == 3 and s.get("observedGeneration") == rs["metadata"]["generation"])
        return full and len(pods) == 3 and all(is_ready(p) for p in pods) and (rs, pods)

    rs, pods = wait_until("3 ready pods", ready_pods)
    names = {p["metadata"]["name"] for p in pods}
    for p in pods:
        assert re.fullmatch(r"front-[a-z0-9]{5}", p["metadata"]["name"]), p["metadata"]["name"]
        [ref] = p["metadata"]["ownerReferences"]
        assert ref["uid"] == rs["metadata"]["uid"] and ref["controller"] and ref["blockOwnerDeletion"], ref

    # A deleted pod is replaced by a new one.
    victim = sorted(names)[0]
    cluster.kubectl("delete", "pod", victim)
    rs, pods = wait_until("a replacement pod", lambda: (r := ready_pods()) and
                          victim not in {p["metadata"]["name"] for p in r[1]} and r)
    replaced = {p["metadata"]["name"] for p in pods}
    assert len(replaced - names) == 1 and names - replaced == {victim}

    # A pod relabelled out of the selector is released and replaced.
    stray = sorted(replaced)[0]
    cluster.kubectl("label", "pod", stray, "app=stray", "--overwrite")
    wait_until("the stray released", lambda: not cluster.get(f"{PODS}/{stray}")["metadata"].get("ownerReferences"))
    rs, pods = wait_until("3 ready pods again", ready_pods)
    assert stray not in {p["metadata"]["name"] for p in pods}

    # Labelled back, the orphan is adopted; one pod too many is deleted,
    # the most recently ready one (not the adopted, long-ready pod).
    cluster.kubectl("label", "pod", stray, "app=front", "--overwrite")

    def adopted():
        pods = live_pods(cluster, "app=front")
        refs = [(p["metadata"].get("ownerReferences") or [{}])[0].get("uid") for p in pods]
        return len(pods) == 3 and refs == [rs["metadata"]["uid"]] * 3 and pods

    pods = wait_until("the stray adopted and the excess deleted", adopted)
    assert stray in {p["metadata"]["name"] for p in pods}

    # Scaled down, it keeps 1.
    cluster.kubectl("scale", "replicaset", "front", "--replicas=1")
    wait_until("one pod left", lambda: len(live_pods(cluster, "app=front")) == 1
               and (cluster.get(f"{RSS}/front").get("status") or {}).get("replicas") == 1)


def leb128(n: int) -> bytes:
    out = bytearray()
    while True:
        byte, n = n & 0x7F, n >> 7
        out.append(byte | (0x80 if n else 0))
        if not n:
            return bytes(out)


def rebuilt(component: bytes, tag: str) -> bytes:
    """The same component with a custom section appended: another digest,
    the same behaviour, as a rebuild of the plugin would be."""
    name = b"orchd-e2e-rebuild"
    payload = leb128(len(name)) + name + tag.encode()
    return component + b"\x00" + leb128(len(payload)) + payload


def test_replacing_the_replicaset_controller_mid_scale_loses_nothing(cluster, hollow_nodes):
    hollow_nodes(5)
    cluster.kubectl_apply_text(deployment_yaml("big", "app:1", 0, ROLLING))
    rollout_status(cluster, "big")
    component = cluster.tmp / "replicaset-v2.wasm"
    component.write_bytes(rebuilt(plugin_path("replicaset-controller.wasm").read_bytes(), "v2"))
    watch = RolloutWatch(cluster, "app=big")
    try:
        cluster.kubectl("scale", "deployment", "big", "--replicas=200")
        wait_until("the scale-up under way", lambda: 10 <= len(watch.pods) < 200, interval=0.01)
        before = len(watch.pods)
        out = run_orchd(cluster, "plugin", "install", str(component), "--name", "replicaset").stdout
        assert "revision 2" in out, out
        during = len(watch.pods)
        # The new revision took over while the scale-up went on.
        assert during < 200, f"the scale-up finished before the swap ({before} → {during} pods)"
        check_rolled_out(cluster, "big", 200, "app:1")
        wait_until("the watch to see the end state", lambda: watch.settled(200, "app:1"))
        # Not one pod too many at any moment, across the swap.
        assert watch.max_total == 200, watch.max_total
        assert watch.added == 200, watch.added
    finally:
        watch.close()
    plugin = cluster.get("/apis/orchd.dev/v1/plugins/replicaset")
    assert (plugin["status"]["phase"], plugin["status"]["activeRevision"]) == ("Active", 2), plugin["status"]


def test_min_ready_seconds_delays_availability(cluster, hollow_nodes):
    hollow_nodes(2)
    cluster.kubectl_apply_text(deployment_yaml("slow", "app:1", 2, ROLLING, extra_spec="  minReadySeconds: 5"))

    def ready():
        s = cluster.get(f"{DEPLOYMENTS}/slow").get("status") or {}
        return s.get("readyReplicas") == 2 and s

    status = wait_until("both pods ready", ready, interval=0.02)
    ready_at = time.monotonic()
    # Ready, but not for minReadySeconds yet: not available.
    assert status.get("availableReplicas", 0) == 0, status
    check_rolled_out(cluster, "slow", 2, "app:1")
    # Timestamps are whole seconds: the pods may have turned ready up to
    # a second before they were seen ready.
    assert time.monotonic() - ready_at >= 3.5, time.monotonic() - ready_at
    [rs] = replica_sets(cluster, "app=slow")
    assert rs["spec"]["minReadySeconds"] == 5 and rs["status"]["availableReplicas"] == 2, rs
    out = cluster.kubectl("describe", "deployment", "slow").stdout
    assert re.search(rf"NewReplicaSet:\s+{rs['metadata']['name']} \(2/2 replicas created\)", out), out
    assert "ScalingReplicaSet" in out and f"Scaled up replica set {rs['metadata']['name']} from 0 to 2" in out, out
