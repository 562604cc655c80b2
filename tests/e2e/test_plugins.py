"""Plugins end to end: `orchd plugin install|list|rollback`, the Plugin
resource through kubectl, hot swap under load with no pod lost or bound
twice, and hostile plugins (refused at install, rolled back on probation,
restarted with the cause recorded) while the cluster keeps scheduling.

The components come from `cargo xtask test` (target/e2e-plugins): the
default scheduler, the first-fit example (another policy serving
`default-scheduler`), and builds of tests/plugins/misbehaving-scheduler.
"""

from __future__ import annotations

import base64
import hashlib
import http.client
import json
import threading
import time

from conftest import start_orchd
from helpers import Cluster, HollowNodes, PodWatch, plugin_path, request, run_orchd, split_url, wait_until

PLUGINS = "/apis/orchd.dev/v1/plugins"
COMPONENTS = "/apis/orchd.dev/v1/plugincomponents"
PODS = "/api/v1/namespaces/default/pods"


def plugin(c: Cluster, name: str = "default-scheduler") -> dict:
    return c.get(f"{PLUGINS}/{name}")


def status(c: Cluster, name: str = "default-scheduler") -> dict:
    return plugin(c, name).get("status") or {}


def pod(name: str, labels: dict | None = None, scheduler: str | None = None, cpu: str = "10m") -> dict:
    spec: dict = {"containers": [{"name": "c", "image": "busybox", "resources": {"requests": {"cpu": cpu}}}]}
    if scheduler:
        spec["schedulerName"] = scheduler
    return {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": name, "labels": labels or {}}, "spec": spec}


def node_of(c: Cluster, name: str) -> str | None:
    return c.get(f"{PODS}/{name}")["spec"].get("nodeName")


def bound(c: Cluster, *names: str) -> list[str]:
    """Waits until every named pod is bound; returns their nodes."""
    return [wait_until(f"pod {n} bound", lambda n=n: node_of(c, n)) for n in names]


def events_about(c: Cluster, name: str, namespace: str = "default") -> list[dict]:
    items = c.get(f"/api/v1/namespaces/{namespace}/events")["items"]
    return [e for e in items if e["involvedObject"].get("name") == name]


def one_line_error(p) -> str:
    assert p.returncode != 0, f"expected a failure, got exit 0:\n{p.stdout}"
    lines = p.stderr.strip().splitlines()
    assert len(lines) == 1, f"expected a one-line error, got:\n{p.stderr}"
    return lines[0]


def start_cluster(tmp_path, *flags: str) -> Cluster:
    return Cluster(start_orchd(tmp_path, list(flags)), tmp_path)


def stop_cluster(c: Cluster, *nodes: HollowNodes) -> None:
    for n in nodes:
        n.stop()
    code = c.orchd.stop()
    print(c.orchd.log())
    assert code == 0, f"orchd exited {code} on SIGTERM"


# --- install refuses what is not a plugin ---------------------------------

def test_install_refuses_what_is_not_a_plugin_in_one_line(cluster, hollow_nodes, tmp_path):
    hollow_nodes(2, "--prefix", "refuse")
    wait_until("the default scheduler", lambda: status(cluster).get("phase") == "Active")
    components_before = {i["metadata"]["name"] for i in cluster.get(COMPONENTS)["items"]}
    cases = {
        "garbage.wasm": (bytes(range(256)) * 8, "do not start with the \\0asm header"),
        "empty.wasm": (b"", "do not start with the \\0asm header"),
        # A valid, empty core module: WebAssembly, but not a component.
        "core-module.wasm": (b"\0asm\x01\0\0\0", "core WebAssembly module"),
        # A valid, empty component: exports nothing of any world.
        "no-world.wasm": (b"\0asm\x0d\0\x01\0", "world"),
    }
    for file, (data, expected) in cases.items():
        path = tmp_path / file
        path.write_bytes(data)
        p = run_orchd(cluster, "plugin", "install", str(path), check=False)
        line = one_line_error(p)
        assert expected in line, f"{file}: {line}"
    # Real components that break the rules.
    p = run_orchd(cluster, "plugin", "install", str(plugin_path("forbidden-host-call.wasm")), check=False)
    line = one_line_error(p)
    assert "cannot link" in line and "objects" in line, line
    p = run_orchd(cluster, "plugin", "install", str(plugin_path("always-trapping.wasm")), check=False)
    line = one_line_error(p)
    assert "trapped in schedule" in line and "misbehaving on purpose" in line, line

    # Nothing was uploaded or changed, and scheduling goes on.
    assert {i["metadata"]["name"] for i in cluster.get(COMPONENTS)["items"]} == components_before
    plugins = {p["metadata"]["name"]: p for p in cluster.get(PLUGINS)["items"]}
    assert sorted(plugins) == ["cronjob", "daemonset", "default-scheduler", "deployment", "endpoints",
                               "garbage-collector", "job", "namespace", "node-lifecycle", "replicaset",
                               "serviceaccount", "statefulset"]
    assert len(plugins["default-scheduler"]["spec"]["revisions"]) == 1
    cluster.create(PODS, pod("after-refusals"))
    bound(cluster, "after-refusals")


# --- hot swap under load ---------------------------------------------------

class Placements(PodWatch):
    """Records, per pod, every nodeName it is seen with, in order."""

    def on_listed(self, pods: list[dict]) -> None:
        self.nodes: dict[str, list[str | None]] = {}
        for p in pods:
            self.on_event("ADDED", p)

    def on_event(self, kind: str, pod: dict) -> None:
        if kind not in ("ADDED", "MODIFIED"):
            return
        seen = self.nodes.setdefault(pod["metadata"]["name"], [])
        node = pod["spec"].get("nodeName")
        if not seen or seen[-1] != node:
            seen.append(node)


def test_hot_swap_under_load_binds_every_pod_exactly_once(cluster, hollow_nodes):
    # Room for every load pod on any one node: first fit then always packs
    # the extra pods below onto the first node, never onto the next one
    # because the first filled up exactly.
    hollow_nodes(10, "--cpu", "64", "--memory", "256Gi", "--pods", "2000", "--prefix", "swap")
    wait_until("the default scheduler", lambda: status(cluster).get("phase") == "Active")
    first_digest = status(cluster)["activeDigest"]
    watch = Placements(cluster, "")

    # The last 200 of the 1,000 pods are created only once the swap is
    # done, so the swap lands mid-flow however fast this machine creates
    # pods, and the new revision has pods of its own to place.
    total, writers, after_swap = 1000, 4, 200
    created = [0]
    swapped = threading.Event()
    lock = threading.Lock()
    failures: list[str] = []

    def create(worker: int):
        host, port = split_url(cluster.url)
        conn = http.client.HTTPConnection(host, port, timeout=30)
        for i in range(worker, total, writers):
            if i >= total - after_swap:
                swapped.wait(timeout=120)
            r = request(cluster.url, "POST", PODS, pod(f"load-{i:04d}"), conn=conn)
            if r.status != 201:
                failures.append(f"load-{i}: {r!r}")
            with lock:
                created[0] += 1
        conn.close()

    threads = [threading.Thread(target=create, args=(w,)) for w in range(writers)]
    for t in threads:
        t.start()
    wait_until("200 pods created", lambda: created[0] >= 200, timeout=60)
    try:
        install = run_orchd(cluster, "plugin", "install", str(plugin_path("first-fit-scheduler.wasm")))
    finally:
        swapped.set()
    for t in threads:
        t.join()
    assert not failures, failures[:5]
    assert "revision 2 is active" in install.stdout, install.stdout

    def all_bound():
        items = cluster.get(PODS)["items"]
        unbound = [p["metadata"]["name"] for p in items if not p["spec"].get("nodeName")]
        return len(items) == total and not unbound

    wait_until("every pod bound", all_bound, timeout=180, interval=0.5)
    time.sleep(1)  # let the watch catch up with the last bindings
    watch.close()
    assert not watch.errors, watch.errors

    # Exactly one binding per pod, never moved, and one Scheduled event.
    assert len(watch.nodes) == total
    for name, seen in watch.nodes.items():
        placements = [n for n in seen if n]
        assert len(placements) == 1, f"{name} was bound {len(placements)} times: {seen}"
    # Pods created after the swap were placed by first fit: onto one node.
    late = {watch.nodes[f"load-{i:04d}"][-1] for i in range(total - after_swap, total)}
    assert len(late) == 1, f"first fit spread the pods created after the swap over {late}"
    scheduled: dict[str, int] = {}
    for e in cluster.get("/api/v1/namespaces/default/events")["items"]:
        if e["reason"] == "Scheduled":
            name = e["involvedObject"]["name"]
            scheduled[name] = scheduled.get(name, 0) + e.get("count", 1)
    assert len(scheduled) == total
    assert set(scheduled.values()) == {1}, {k: v for k, v in scheduled.items() if v != 1}

    s = status(cluster)
    assert (s["phase"], s["activeRevision"]) == ("Active", 2), s
    assert s["activeDigest"] != first_digest
    assert s.get("swapMillis") is not None, s
    assert [r["revision"] for r in plugin(cluster)["spec"]["revisions"]] == [1, 2]

    # The new policy decides now: first fit packs new pods onto one node.
    for i in range(5):
        cluster.create(PODS, pod(f"packed-{i}"))
    assert len(set(bound(cluster, *[f"packed-{i}" for i in range(5)]))) == 1

    # Roll back: the spreading default decides again.
    back = run_orchd(cluster, "plugin", "rollback", "default-scheduler")
    assert "revision 1 is active" in back.stdout, back.stdout
    s = status(cluster)
    assert (s["phase"], s["activeRevision"], s["activeDigest"]) == ("Active", 1, first_digest), s
    for i in range(6):
        cluster.create(PODS, pod(f"spread-{i}"))
    assert len(set(bound(cluster, *[f"spread-{i}" for i in range(6)]))) >= 2

    listed = run_orchd(cluster, "plugin", "list").stdout
    assert "default-scheduler" in listed and "1/2" in listed and "Active" in listed, listed


# --- bad revisions roll back ----------------------------------------------

def test_a_revision_failing_on_probation_rolls_back_and_loses_no_pod(tmp_path):
    c = start_cluster(tmp_path, "--plugin-probation-ms", "60000")
    nodes = HollowNodes(c.url, 2, "--prefix", "probation")
    try:
        wait_until("the default scheduler", lambda: status(c).get("phase") == "Active")
        run_orchd(c, "plugin", "install", str(plugin_path("misbehaving-default.wasm")), "--no-wait")
        wait_until("revision 2 on probation",
                   lambda: status(c).get("phase") == "Probation" and status(c).get("activeRevision") == 2)
        for i in range(2):
            c.create(PODS, pod(f"trap-{i}", labels={"orchd.dev/misbehave": "trap"}))
        wait_until("the rollback", lambda: status(c).get("phase") == "RolledBack", timeout=60)
        s = status(c)
        assert s["activeRevision"] == 1 and s["failedRevisions"] == [2], s
        assert "trapped in schedule" in s["lastError"], s
        # The pods the bad revision failed on are placed by the restored one.
        bound(c, "trap-0", "trap-1")
        reasons = {e["reason"] for e in events_about(c, "default-scheduler")}
        assert "RevisionRolledBack" in reasons, reasons
        # kubectl shows it.
        out = c.kubectl("get", "plugins").stdout
        assert "RolledBack" in out and "default-scheduler" in out, out
    finally:
        stop_cluster(c, nodes)


def test_a_revision_set_through_kubectl_that_fails_warm_up_is_refused(cluster, hollow_nodes):
    hollow_nodes(2, "--prefix", "warmup")
    wait_until("the default scheduler", lambda: status(cluster).get("phase") == "Active")
    data = plugin_path("always-trapping.wasm").read_bytes()
    hexdigest = hashlib.sha256(data).hexdigest()
    # The component as an object, the way any client can store it...
    cluster.create(COMPONENTS, {
        "apiVersion": "orchd.dev/v1", "kind": "PluginComponent",
        "metadata": {"name": f"sha256-{hexdigest}"},
        "data": base64.b64encode(data).decode(),
    })
    # ...and a name that is not its digest is refused.
    r = cluster.http("POST", COMPONENTS, {
        "apiVersion": "orchd.dev/v1", "kind": "PluginComponent",
        "metadata": {"name": "sha256-" + "0" * 64}, "data": base64.b64encode(data).decode(),
    })
    assert r.status == 422 and "digest" in r.json()["message"], r
    patch = [
        {"op": "add", "path": "/spec/revisions/-",
         "value": {"revision": 2, "digest": f"sha256:{hexdigest}", "source": "kubectl"}},
        {"op": "replace", "path": "/spec/revision", "value": 2},
    ]
    cluster.kubectl("patch", "plugin", "default-scheduler", "--type", "json", "-p", json.dumps(patch))
    wait_until("revision 2 refused", lambda: 2 in status(cluster).get("failedRevisions", []))
    s = status(cluster)
    assert (s["phase"], s["activeRevision"]) == ("RolledBack", 1), s
    assert "trapped in schedule" in s["lastError"], s
    cluster.create(PODS, pod("still-scheduled"))
    bound(cluster, "still-scheduled")
    # Pointing back at revision 1 makes it Active again.
    cluster.kubectl("patch", "plugin", "default-scheduler", "--type", "merge", "-p", '{"spec":{"revision":1}}')
    wait_until("revision 1 active again", lambda: status(cluster).get("phase") == "Active")


# --- misbehaving plugins are restarted, others keep serving ---------------

def test_misbehaving_plugin_is_restarted_with_the_cause_and_others_keep_serving(cluster, hollow_nodes):
    hollow_nodes(2, "--prefix", "chaos")
    wait_until("the default scheduler", lambda: status(cluster).get("phase") == "Active")
    run_orchd(cluster, "plugin", "install", str(plugin_path("misbehaving-chaos.wasm")),
              "--call-timeout-ms", "300", "--memory-mib", "64")
    assert status(cluster, "chaos")["schedulerName"] == "chaos"

    causes = {"loop": "exceeded its 300 ms deadline", "oom": "ran out of memory", "trap": "trapped in schedule"}
    for behaviour, cause in causes.items():
        name = f"chaos-{behaviour}"
        cluster.create(PODS, pod(name, labels={"orchd.dev/misbehave": behaviour}, scheduler="chaos"))
        wait_until(f"the {behaviour} failure recorded",
                   lambda cause=cause: cause in (status(cluster, "chaos").get("lastError") or ""), timeout=60)
        failed = [e for e in events_about(cluster, name) if e["reason"] == "FailedScheduling"]
        assert any(cause in e["message"] for e in failed), failed
        assert node_of(cluster, name) is None
        # The default scheduler is not disturbed.
        cluster.create(PODS, pod(f"default-during-{behaviour}"))
        bound(cluster, f"default-during-{behaviour}")
        cluster.http("DELETE", f"{PODS}/{name}")
    assert status(cluster, "chaos")["restarts"] >= 3
    assert "PluginFailed" in {e["reason"] for e in events_about(cluster, "chaos")}
    # A fresh instance serves well-behaved pods again, after its backoff.
    cluster.create(PODS, pod("chaos-fine", scheduler="chaos"))
    assert bound(cluster, "chaos-fine") == ["chaos-0"]
    # A plugin can be removed; its pods are then nobody's.
    run_orchd(cluster, "plugin", "remove", "chaos")
    assert cluster.status_of(f"{PLUGINS}/chaos") == 404
    cluster.create(PODS, pod("chaos-orphan", scheduler="chaos"))
    time.sleep(1.5)
    assert node_of(cluster, "chaos-orphan") is None
