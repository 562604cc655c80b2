"""Pod lifecycle on the in-process node agent (wasm shim), with the real
kubectl: readiness, liveness and startup probes (httpGet against a wasm
container serving HTTP on the host network, exec running a new instance of
the container's component), PostStart and PreStop hooks, graceful deletion
(Terminating, the grace period, then gone) and `kubectl exec`.

Wasm containers have no signals: `terminate` does nothing, so every wasm
container "ignores" termination and is stopped when its grace period runs
out. Pods share the host network, so each test uses its own port."""

from __future__ import annotations

import json
import time

from helpers import Cluster, plugin_path, table_rows, wait_until

NODE = "probe-node"


def image() -> str:
    return "file://" + str(plugin_path("hello-wasm.wasm").resolve())


def pod_yaml(name: str, args: list[str], extra: str = "", grace: int = 2, policy: str = "Always") -> str:
    return f"""apiVersion: v1
kind: Pod
metadata:
  name: {name}
spec:
  restartPolicy: {policy}
  terminationGracePeriodSeconds: {grace}
  containers:
    - name: main
      image: {image()}
      args: {json.dumps(args)}
{extra}"""


def pod(c: Cluster, name: str) -> dict:
    return c.get(f"/api/v1/namespaces/default/pods/{name}")


def status(c: Cluster, name: str) -> dict:
    return (pod(c, name).get("status", {}).get("containerStatuses") or [{}])[0]


def condition(p: dict, kind: str) -> str | None:
    return next((x["status"] for x in p.get("status", {}).get("conditions") or [] if x["type"] == kind), None)


def events(c: Cluster, name: str, reason: str) -> list[dict]:
    items = c.kubectl_json("get", "events", "--field-selector",
                           f"involvedObject.name={name},reason={reason}")["items"]
    return items


def test_a_readiness_probe_gates_ready(node_cluster):
    c = node_cluster
    c.kubectl_apply_text(pod_yaml("gated", ["--serve", "18181", "--ready-after", "4"], """      readinessProbe:
        httpGet: {path: /healthz, port: 18181}
        periodSeconds: 1
"""))
    # Running but not ready while /healthz answers 503.
    p = wait_until("running", lambda: (p := pod(c, "gated")).get("status", {}).get("phase") == "Running" and p,
                   timeout=30, interval=0.1)
    assert condition(p, "Ready") == "False", p["status"]
    assert p["status"]["containerStatuses"][0]["ready"] is False
    p = wait_until("ready", lambda: condition(p := pod(c, "gated"), "Ready") == "True" and p, timeout=30)
    assert condition(p, "ContainersReady") == "True"
    assert p["status"]["containerStatuses"][0]["ready"] is True
    unhealthy = events(c, "gated", "Unhealthy")
    assert any("Readiness probe failed: HTTP probe failed with statuscode: 503" in e["message"]
               for e in unhealthy), unhealthy
    rows = table_rows(c.kubectl("get", "pod", "gated").stdout)
    assert rows[1][1] == "1/1", rows
    # The probes' requests are in the container's log.
    assert "GET /healthz HTTP/1.1 -> 200" in c.kubectl("logs", "gated").stdout


def test_a_failing_liveness_probe_restarts_the_container(node_cluster):
    c = node_cluster
    c.kubectl_apply_text(pod_yaml("sickly", ["--serve", "18182", "--fail-after", "3"], """      livenessProbe:
        httpGet: {path: /healthz, port: 18182}
        periodSeconds: 1
        failureThreshold: 2
""", grace=1))
    s = wait_until("a restart", lambda: (s := status(c, "sickly")).get("restartCount", 0) >= 1 and s, timeout=60)
    assert s["lastState"]["terminated"]["exitCode"] == 137, s
    # Each run has its own id, <pod uid>-<container>-<attempt>, which the
    # status names once it runs (until then, the ended run's).
    uid = pod(c, "sickly")["metadata"]["uid"]
    assert s["containerID"] in (f"orchd-wasm://{uid}-main-0", f"orchd-wasm://{uid}-main-1"), s
    s = wait_until("the new run running", lambda: "running" in (s := status(c, "sickly"))["state"] and s,
                   timeout=30, interval=0.1)
    assert s["containerID"] == f"orchd-wasm://{uid}-main-{s['restartCount']}", s
    unhealthy = events(c, "sickly", "Unhealthy")
    assert any("Liveness probe failed: HTTP probe failed with statuscode: 500" in e["message"] for e in unhealthy)
    killing = events(c, "sickly", "Killing")
    assert any("failed liveness probe, will be restarted" in e["message"] for e in killing), killing
    assert all(e["source"]["component"] == "kubelet" for e in killing)
    described = c.kubectl("describe", "pod", "sickly").stdout
    assert "Unhealthy" in described and "Liveness probe failed" in described


def test_a_startup_probe_holds_readiness_until_it_succeeds(node_cluster):
    c = node_cluster
    # The startup probe is an exec probe: a new instance of the container's
    # component checks the server over TCP.
    c.kubectl_apply_text(pod_yaml("slow", ["--serve", "18183", "--ready-after", "3"], """      startupProbe:
        exec: {command: [hello-wasm, check, http, "127.0.0.1:18183/healthz"]}
        periodSeconds: 1
        failureThreshold: 30
      readinessProbe:
        tcpSocket: {port: 18183}
        periodSeconds: 1
"""))
    s = wait_until("running", lambda: (s := status(c, "slow")).get("state", {}).get("running") and s,
                   timeout=30, interval=0.1)
    assert s["started"] is False and s["ready"] is False, s
    s = wait_until("started and ready", lambda: (s := status(c, "slow")).get("started")
                   and s.get("ready") and s, timeout=30)
    assert s["restartCount"] == 0
    startup = events(c, "slow", "Unhealthy")
    assert startup and "Startup probe failed" in startup[0]["message"], startup
    assert "exited with 1" in startup[0]["message"], startup


def test_a_failed_post_start_hook_kills_the_container(node_cluster):
    c = node_cluster
    c.kubectl_apply_text(pod_yaml("hooked", ["--interval-ms", "200"], """      lifecycle:
        postStart:
          exec: {command: [hello-wasm, check, exit, "3"]}
"""))
    failed = wait_until("FailedPostStartHook", lambda: events(c, "hooked", "FailedPostStartHook"), timeout=30)
    assert "exited with 1" in failed[0]["message"], failed
    assert failed[0]["type"] == "Warning"
    wait_until("a restart", lambda: status(c, "hooked").get("restartCount", 0) >= 1, timeout=30)


def test_delete_runs_pre_stop_then_waits_the_grace_period(node_cluster):
    c = node_cluster
    c.kubectl_apply_text(pod_yaml("stopper", ["--serve", "18185"], """      lifecycle:
        preStop:
          httpGet: {path: /prestop, port: 18185}
""", grace=4))
    wait_until("running", lambda: pod(c, "stopper").get("status", {}).get("phase") == "Running", timeout=30)
    started = time.monotonic()
    c.kubectl("delete", "pod", "stopper", "--wait=false")
    p = pod(c, "stopper")
    assert p["metadata"]["deletionGracePeriodSeconds"] == 4
    rows = table_rows(c.kubectl("get", "pod", "stopper").stdout)
    assert rows[1][2] == "Terminating", rows
    # PreStop ran: the container logged its request.
    wait_until("the PreStop request in the logs",
               lambda: "GET /prestop HTTP/1.1" in c.kubectl("logs", "stopper", check=False).stdout, timeout=10)
    # A wasm container ignores termination: it is killed at the deadline,
    # then the node deletes the pod for good.
    wait_until("gone", lambda: c.status_of("/api/v1/namespaces/default/pods/stopper") == 404, timeout=30)
    took = time.monotonic() - started
    assert 3 <= took < 15, took
    assert [e["message"] for e in events(c, "stopper", "Killing")] == ["Stopping container main"]


def test_kubectl_delete_waits_through_terminating_and_force_is_immediate(node_cluster):
    c = node_cluster
    for name in ("patient", "forced"):
        c.kubectl_apply_text(pod_yaml(name, ["--interval-ms", "200"], grace=3))
    wait_until("running", lambda: all(pod(c, n).get("status", {}).get("phase") == "Running"
                                      for n in ("patient", "forced")), timeout=30)
    started = time.monotonic()
    c.kubectl("delete", "pod", "patient", timeout=60)
    assert time.monotonic() - started >= 2
    assert c.status_of("/api/v1/namespaces/default/pods/patient") == 404
    started = time.monotonic()
    c.kubectl("delete", "pod", "forced", "--grace-period=0", "--force", timeout=30)
    assert time.monotonic() - started < 2.5
    assert c.status_of("/api/v1/namespaces/default/pods/forced") == 404
    # An unbound pod goes at once too.
    c.kubectl("run", "nowhere", "--image", "x", "--overrides",
              json.dumps({"spec": {"nodeSelector": {"no": "such-node"}}}))
    c.kubectl("delete", "pod", "nowhere", timeout=10)
    assert c.status_of("/api/v1/namespaces/default/pods/nowhere") == 404


def test_kubectl_exec_prints_output_and_returns_the_exit_code(node_cluster):
    c = node_cluster
    c.kubectl_apply_text(pod_yaml("shell", ["--serve", "18186"], """      env:
        - {name: GREETING, value: from-env}
"""))
    wait_until("running", lambda: pod(c, "shell").get("status", {}).get("phase") == "Running", timeout=30)
    # A new instance of the container's component runs the command: it
    # reaches the container's server over the shared network.
    out = c.kubectl("exec", "shell", "--", "hello-wasm", "check", "http", "127.0.0.1:18186/healthz")
    assert out.stdout == "check: GET /healthz answered 200\n", out
    assert "GET /healthz HTTP/1.1 -> 200" in c.kubectl("logs", "shell").stdout
    # -i: stdin reaches the command; -c names the container.
    out = c.kubectl("exec", "-i", "shell", "-c", "main", "--", "hello-wasm", "cat", input="piped text\n")
    assert out.stdout == "piped text\n", out
    # Exit codes propagate (WASI 0.2 carries failure only: 1).
    r = c.kubectl("exec", "shell", "--", "sh", "-c", "exit 3", check=False)
    assert r.returncode == 1, r
    r = c.kubectl("exec", "shell", "--", "hello-wasm", "check", "http", "127.0.0.1:1/", check=False)
    assert r.returncode == 1 and "cannot connect" in r.stderr, r
    # -t without a terminal: kubectl says so and runs without one.
    r = c.kubectl("exec", "-t", "shell", "--", "hello-wasm", "check", "exit", "0", check=False)
    assert r.returncode == 0, r
    r = c.kubectl("exec", "shell", "-c", "nope", "--", "x", check=False)
    assert r.returncode != 0 and "not valid" in r.stderr, r


def test_a_terminating_pod_of_a_node_that_goes_away_is_deleted(node_cluster):
    """No agent runs for node `ghost`: its pod stays Terminating until the
    Node is deleted, then goes (what Kubernetes' pod GC does), and a pod
    bound to a Node that does not exist is deleted at once."""
    c = node_cluster
    c.kubectl_apply_text("""apiVersion: v1
kind: Node
metadata:
  name: ghost
""")
    for name, node in (("haunted", "ghost"), ("lost", "no-such-node")):
        c.kubectl_apply_text(f"""apiVersion: v1
kind: Pod
metadata:
  name: {name}
spec:
  nodeName: {node}
  containers:
    - {{name: main, image: x}}
""")
    c.kubectl("delete", "pod", "lost", timeout=10)
    assert c.status_of("/api/v1/namespaces/default/pods/lost") == 404
    c.kubectl("delete", "pod", "haunted", "--wait=false")
    p = pod(c, "haunted")
    assert p["metadata"]["deletionGracePeriodSeconds"] == 30 and p["metadata"]["deletionTimestamp"], p["metadata"]
    c.kubectl("delete", "node", "ghost")
    wait_until("the pod gone with its node",
               lambda: c.status_of("/api/v1/namespaces/default/pods/haunted") == 404, timeout=10)
