"""The node's lifecycle decisions as a plugin (`world node-policy`): the
default `kubelet` plugin decides restarts and CrashLoopBackOff for the
in-process node agent; a new revision takes over live (a build of the same
crate whose every restart comes after 1 s) and `orchd plugin rollback`
goes back; a revision that traps on every call costs no restart of the
crashed container: the node falls back on its built-in rules, and the
Plugin counts the failures and says why in an Event. Node-pressure
eviction: with an eviction threshold set in the plugin's `spec.config`
above what the machine has free, the node reports MemoryPressure and
evicts the pod using more memory than it requests (measured through the
`runtime` host calls) before the Guaranteed one; without the `runtime`
grant those calls are refused and nothing is evicted.

The components come from `cargo xtask test` (target/e2e-plugins):
kubelet-quick.wasm (plugins/kubelet with ORCHD_KUBELET_PROFILE=quick) and
trapping-node-policy.wasm (tests/plugins/test-node-policy)."""

from __future__ import annotations

import json
import time

from helpers import Cluster, plugin_path, run_orchd, wait_until

NODE = "policy-node"


def crasher(c: Cluster, name: str) -> None:
    wasm_pod(c, name, ["--count", "1", "--exit", "1"])


def status(c: Cluster, name: str) -> dict:
    pod = c.get(f"/api/v1/namespaces/default/pods/{name}")
    return (pod.get("status", {}).get("containerStatuses") or [{}])[0]


def plugin(c: Cluster, name: str = "kubelet") -> dict:
    return c.kubectl_json("get", "plugins.orchd.dev", name)


def backoff_messages(c: Cluster, name: str, seconds: float) -> tuple[set[str], int, int]:
    """The CrashLoopBackOff messages seen over `seconds`, and the restart
    count at the start and at the end."""
    seen: set[str] = set()
    first = status(c, name).get("restartCount", 0)
    end = time.monotonic() + seconds
    while time.monotonic() < end:
        waiting = status(c, name).get("state", {}).get("waiting", {})
        if waiting.get("reason") == "CrashLoopBackOff":
            seen.add(waiting.get("message", ""))
        time.sleep(0.1)
    return seen, first, status(c, name).get("restartCount", 0)


def wait_active(c: Cluster, revision: int) -> dict:
    return wait_until(f"kubelet revision {revision} in charge", lambda: (
        s := plugin(c).get("status", {})).get("activeRevision") == revision
        and s.get("phase") == "Active" and s)


def test_the_default_kubelet_plugin_decides_and_a_new_revision_takes_over_live(node_cluster):
    c = node_cluster
    p = wait_active(c, 1)
    assert plugin(c)["spec"]["world"] == "node-policy", p
    assert "decides the node's pod lifecycle" in p["message"], p

    crasher(c, "looper")
    # Under the kubelet's rules: the first restart at once, then 10 s.
    wait_until("a CrashLoopBackOff of 10 s", lambda: "back-off 10s" in status(c, "looper").get(
        "state", {}).get("waiting", {}).get("message", ""), timeout=60)

    out = run_orchd(c, "plugin", "install", str(plugin_path("kubelet-quick.wasm")), "--name", "kubelet").stdout
    assert "node-policy plugin" in out, out
    wait_active(c, 2)
    # The container waiting out its 10 s backoff keeps it (decided before
    # the swap); every later restart comes after 1 s.
    wait_until("a CrashLoopBackOff of 1 s", lambda: "back-off 1s" in status(c, "looper").get(
        "state", {}).get("waiting", {}).get("message", ""), timeout=40)
    seen, before, after = backoff_messages(c, "looper", 6)
    assert seen and all(m.startswith("back-off 1s restarting failed container=main pod=looper_default(")
                        for m in seen), seen
    assert after - before >= 3, (before, after)

    run_orchd(c, "plugin", "rollback", "kubelet")
    wait_active(c, 1)
    # Back to the kubelet's rules: the backoff grows again from the step
    # the container had reached (its next restarts wait 10 s and more).
    def long_backoff():
        m = status(c, "looper").get("state", {}).get("waiting", {}).get("message", "")
        return m.startswith("back-off") and not m.startswith("back-off 1s") and m
    message = wait_until("a CrashLoopBackOff of 10 s or more", long_backoff, timeout=40)
    assert "container=main" in message, message


def test_a_trapping_node_policy_falls_back_on_the_built_in_rules(node_cluster):
    c = node_cluster
    wait_active(c, 1)
    run_orchd(c, "plugin", "install", str(plugin_path("trapping-node-policy.wasm")), "--name", "kubelet")
    wait_active(c, 2)
    crasher(c, "survivor")
    # Every decision traps, yet the container restarts and backs off as
    # the kubelet's rules say, and the status keeps its phase.
    s = wait_until("restarts under the built-in rules", lambda: (
        s := status(c, "survivor")).get("restartCount", 0) >= 2 and s, timeout=60)
    assert s["lastState"]["terminated"]["exitCode"] == 1, s
    pod = c.get("/api/v1/namespaces/default/pods/survivor")
    assert pod["status"]["phase"] == "Running", pod["status"]
    events = wait_until("a NodePolicyFailed event", lambda: [
        e for e in c.kubectl_json("get", "events", "-A")["items"]
        if e["involvedObject"].get("kind") == "Plugin" and e["involvedObject"].get("name") == "kubelet"
        and e.get("reason") == "NodePolicyFailed"])
    assert "trapping on purpose" in events[0]["message"], events[0]
    assert "built-in rules" in events[0]["message"], events[0]
    st = wait_until("failures counted", lambda: (s := plugin(c)["status"]).get("restarts", 0) >= 1 and s)
    assert "trapped" in st["lastError"], st

    run_orchd(c, "plugin", "rollback", "kubelet")
    wait_active(c, 1)


def test_a_second_node_policy_is_refused_while_one_is_in_charge(node_cluster):
    c = node_cluster
    wait_active(c, 1)
    p = run_orchd(c, "plugin", "install", str(plugin_path("kubelet-quick.wasm")), check=False)
    assert p.returncode != 0, p.stdout
    st = plugin(c, "kubelet-quick")["status"]
    assert "node policy kubelet is in charge" in st["message"], st
    assert plugin(c)["status"]["phase"] == "Active"


def wasm_pod(c: Cluster, name: str, args: list[str], memory: str | None = None) -> None:
    image = "file://" + str(plugin_path("hello-wasm.wasm").resolve())
    resources = ""
    if memory:
        resources = f"""
      resources:
        requests: {{memory: {memory}, cpu: 100m}}
        limits: {{memory: {memory}, cpu: 100m}}"""
    c.kubectl_apply_text(f"""apiVersion: v1
kind: Pod
metadata:
  name: {name}
spec:
  containers:
    - name: main
      image: {image}
      args: {json.dumps(args)}{resources}
""")


def pod(c: Cluster, name: str) -> dict:
    return c.get(f"/api/v1/namespaces/default/pods/{name}")


def memory_pressure(c: Cluster) -> str:
    node = c.get(f"/api/v1/nodes/{NODE}")
    return next(x for x in node["status"]["conditions"] if x["type"] == "MemoryPressure")["status"]


def set_eviction_threshold(c: Cluster, memory_available: str | None) -> None:
    config = json.dumps({"evictionHard": {"memory.available": memory_available}}) if memory_available else ""
    c.kubectl("patch", "plugins.orchd.dev", "kubelet", "--type", "merge",
              "-p", json.dumps({"spec": {"config": config}}))


def test_memory_pressure_evicts_the_pod_over_its_request_first(node_cluster):
    c = node_cluster
    wait_active(c, 1)
    wasm_pod(c, "greedy", ["--hold-mib", "48"])
    wasm_pod(c, "modest", ["--hold-mib", "4"], memory="256Mi")
    for name in ("greedy", "modest"):
        wait_until(f"{name} Running", lambda n=name: pod(c, n).get("status", {}).get("phase") == "Running",
                   timeout=60)
    assert pod(c, "modest")["status"]["qosClass"] == "Guaranteed"
    assert memory_pressure(c) == "False"

    # A threshold above what any machine has free: real measurements, and
    # the plugin's thresholds say the node is short.
    set_eviction_threshold(c, "1Pi")
    wait_until("MemoryPressure", lambda: memory_pressure(c) == "True", timeout=40)
    evicted = wait_until("greedy evicted", lambda: (
        p := pod(c, "greedy"))["status"].get("reason") == "Evicted" and p, timeout=40, interval=0.1)
    # One pod per check: the Guaranteed pod within its request is not the
    # first to go.
    assert pod(c, "modest")["status"]["phase"] == "Running"
    st = evicted["status"]
    assert st["phase"] == "Failed", st
    assert st["message"].startswith("The node was low on resource: memory. Threshold quantity: 1Pi"), st
    assert "Pod default/greedy was using" in st["message"] and "request is 0" in st["message"], st
    disruption = [x for x in st["conditions"] if x["type"] == "DisruptionTarget"]
    assert disruption and disruption[0]["reason"] == "TerminationByKubelet", st["conditions"]
    wait_until("the container stopped", lambda: "terminated" in (
        pod(c, "greedy")["status"]["containerStatuses"][0]["state"]), timeout=30)
    events = [e for e in c.kubectl_json("get", "events")["items"]
              if e["involvedObject"].get("name") == "greedy" and e.get("reason") == "Evicted"]
    assert events and events[0]["type"] == "Warning", events

    set_eviction_threshold(c, None)
    wait_until("no MemoryPressure", lambda: memory_pressure(c) == "False", timeout=40)


def test_a_node_policy_without_the_runtime_grant_cannot_see_the_pods(node_cluster):
    c = node_cluster
    wait_active(c, 1)
    wasm_pod(c, "bystander", ["--hold-mib", "16"])
    wait_until("bystander Running", lambda: pod(c, "bystander").get("status", {}).get("phase") == "Running",
               timeout=60)
    # Capabilities given without hostCalls replace the default grant.
    run_orchd(c, "plugin", "install", str(plugin_path("kubelet-quick.wasm")), "--name", "kubelet",
              "--read", "pods", "--config", json.dumps({"evictionHard": {"memory.available": "1Pi"}}))
    wait_active(c, 2)
    assert plugin(c)["spec"]["capabilities"].get("hostCalls") is None
    wait_until("MemoryPressure", lambda: memory_pressure(c) == "True", timeout=40)
    wait_until("the refused host call in the log", lambda: "may not call the node's runtime" in c.orchd.log(),
               timeout=40)
    assert pod(c, "bystander")["status"]["phase"] == "Running"
    assert pod(c, "bystander")["status"].get("reason") != "Evicted"
