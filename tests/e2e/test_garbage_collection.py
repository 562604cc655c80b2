"""Garbage collection end to end: the garbage-collector plugin orchd ships
(plugins/garbage-collector, a Wasm component) with the real kubectl's
three cascades — background (the default), orphan and foreground — over
a Deployment's ReplicaSets and pods, on hollow nodes."""

from __future__ import annotations

from conftest import start_orchd
from helpers import Cluster, HollowNodes, plugin_path, run_orchd, wait_until
from test_workloads import DEPLOYMENTS, ROLLING, check_rolled_out, deployment_yaml, live_pods, replica_sets


def rolled_out_twice(c: Cluster, name: str) -> tuple[list[dict], list[dict]]:
    """A Deployment with two ReplicaSets (one rollout done); its RSs and
    pods."""
    c.kubectl_apply_text(deployment_yaml(name, "app:1", 3, ROLLING))
    check_rolled_out(c, name, 3, "app:1")
    c.kubectl("set", "image", f"deployment/{name}", "app=app:2")
    pods = check_rolled_out(c, name, 3, "app:2")
    rss = replica_sets(c, f"app={name}")
    assert len(rss) == 2
    return rss, pods


def gone(c: Cluster, path: str) -> bool:
    return c.status_of(path) == 404


def test_background_deletion_removes_replicasets_then_pods(cluster, hollow_nodes):
    hollow_nodes(2)
    rss, pods = rolled_out_twice(cluster, "web")
    cluster.kubectl("delete", "deployment", "web")
    assert gone(cluster, f"{DEPLOYMENTS}/web")
    wait_until("the ReplicaSets collected", lambda: not replica_sets(cluster, "app=web"))
    wait_until("the pods collected", lambda: not live_pods(cluster, "app=web"))
    # Nothing else was touched: the plugins' own objects are all there.
    assert cluster.status_of("/api/v1/namespaces/default/serviceaccounts/default") == 200


def test_orphan_deletion_keeps_the_dependents(cluster, hollow_nodes):
    hollow_nodes(2)
    rss, pods = rolled_out_twice(cluster, "keep")
    cluster.kubectl("delete", "deployment", "keep", "--cascade=orphan")
    assert gone(cluster, f"{DEPLOYMENTS}/keep")
    after = replica_sets(cluster, "app=keep")
    assert {r["metadata"]["uid"] for r in after} == {r["metadata"]["uid"] for r in rss}
    assert all(not r["metadata"].get("ownerReferences") for r in after), after
    # The ReplicaSets go on keeping their pods, the same ones.
    assert {p["metadata"]["uid"] for p in live_pods(cluster, "app=keep")} == {p["metadata"]["uid"] for p in pods}
    victim = pods[0]["metadata"]["name"]
    cluster.kubectl("delete", "pod", victim)
    wait_until("the orphaned ReplicaSet to replace its pod",
               lambda: len(ps := live_pods(cluster, "app=keep")) == 3
               and victim not in {p["metadata"]["name"] for p in ps})


def test_foreground_deletion_removes_the_owner_last(cluster, hollow_nodes):
    hollow_nodes(2)
    rolled_out_twice(cluster, "fg")
    # kubectl waits until the Deployment is gone; by then everything it
    # owned, and what that owned, must be gone already.
    cluster.kubectl("delete", "deployment", "fg", "--cascade=foreground", timeout=90)
    assert gone(cluster, f"{DEPLOYMENTS}/fg")
    assert replica_sets(cluster, "app=fg") == []
    # Not even pods on their way out.
    assert cluster.get("/api/v1/namespaces/default/pods?labelSelector=app%3Dfg")["items"] == []


def test_workload_controllers_install_with_orchd_plugin_install(tmp_path):
    """Without the default plugins, the same components installed by hand
    (with the capabilities orchd gives them) run a Deployment."""
    c = Cluster(start_orchd(tmp_path, ["--no-default-plugins"]), tmp_path)
    nodes = None
    try:
        run_orchd(c, "plugin", "install", str(plugin_path("default-scheduler.wasm")))
        run_orchd(c, "plugin", "install", str(plugin_path("replicaset-controller.wasm")), "--name", "replicaset",
                  "--read", "replicasets.apps,pods", "--write", "replicasets.apps,pods")
        run_orchd(c, "plugin", "install", str(plugin_path("deployment-controller.wasm")), "--name", "deployment",
                  "--read", "deployments.apps,replicasets.apps,pods", "--write", "deployments.apps,replicasets.apps")
        nodes = HollowNodes(c.url, 2)
        c.kubectl_apply_text(deployment_yaml("byhand", "app:1", 2, ROLLING))
        check_rolled_out(c, "byhand", 2, "app:1")
        plugins = {p["metadata"]["name"]: p for p in c.get("/apis/orchd.dev/v1/plugins")["items"]}
        assert plugins["replicaset"]["status"]["phase"] == "Active", plugins["replicaset"]
        assert "garbage-collector" not in plugins
    finally:
        if nodes:
            nodes.stop()
        code = c.orchd.stop()
        print(c.orchd.log())
        assert code == 0
