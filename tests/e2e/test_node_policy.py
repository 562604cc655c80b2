"""The node's lifecycle decisions as a plugin (`world node-policy`): the
default `kubelet` plugin decides restarts and CrashLoopBackOff for the
in-process node agent; a new revision takes over live (a build of the same
crate whose every restart comes after 1 s) and `orchd plugin rollback`
goes back; a revision that traps on every call costs no restart of the
crashed container: the node falls back on its built-in rules, and the
Plugin counts the failures and says why in an Event.

The components come from `cargo xtask test` (target/e2e-plugins):
kubelet-quick.wasm (plugins/kubelet with ORCHD_KUBELET_PROFILE=quick) and
trapping-node-policy.wasm (tests/plugins/test-node-policy)."""

from __future__ import annotations

import time

import pytest

from helpers import Cluster, Orchd, plugin_path, run_orchd, wait_until

NODE = "policy-node"


@pytest.fixture
def node_cluster(tmp_path):
    """`orchd up` with its node agent, no hollow nodes."""
    o = Orchd(tmp_path / "data", ["--node-name", NODE], node=True).start()
    try:
        yield Cluster(o, tmp_path)
    finally:
        code = o.stop()
        print(o.log())
    assert code == 0, f"orchd exited {code} on SIGTERM:\n{o.log()}"


def crasher(c: Cluster, name: str) -> None:
    image = "file://" + str(plugin_path("hello-wasm.wasm").resolve())
    c.kubectl_apply_text(f"""apiVersion: v1
kind: Pod
metadata:
  name: {name}
spec:
  containers:
    - name: main
      image: {image}
      args: ["--count", "1", "--exit", "1"]
""")


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
