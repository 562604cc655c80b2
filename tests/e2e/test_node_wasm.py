"""The in-process node agent of `orchd up` and its wasm runtime: a real
Node with measured capacity, pods that really run a `wasi:cli` component
(examples/hello-wasm), their logs through `kubectl logs`, restart policy
and CrashLoopBackOff, exit codes, OOMKilled, and deletion stopping them."""

from __future__ import annotations

import json
import os
import re
import subprocess
import time

from helpers import Cluster, plugin_path, table_rows, wait_until

NODE = "wasm-node"


def image() -> str:
    return "file://" + str(plugin_path("hello-wasm.wasm").resolve())


def pod_manifest(name: str, args: list[str], policy: str = "Always", memory: str | None = None) -> str:
    limits = f"\n      resources:\n        limits:\n          memory: {memory}" if memory else ""
    return f"""apiVersion: v1
kind: Pod
metadata:
  name: {name}
spec:
  restartPolicy: {policy}
  containers:
    - name: main
      image: {image()}
      args: {json.dumps(args)}{limits}
"""


def pod(cluster: Cluster, name: str) -> dict:
    return cluster.get(f"/api/v1/namespaces/default/pods/{name}")


def container_status(cluster: Cluster, name: str) -> dict:
    statuses = pod(cluster, name).get("status", {}).get("containerStatuses") or [{}]
    return statuses[0]


def wait_phase(cluster: Cluster, name: str, phase: str, timeout: float = 60.0) -> dict:
    return wait_until(f"pod {name} {phase}",
                      lambda: (p := pod(cluster, name)).get("status", {}).get("phase") == phase and p,
                      timeout=timeout, interval=0.2)


def test_node_registers_ready_with_the_machines_capacity(node_cluster):
    c = node_cluster
    wait_until("node Ready", lambda: any(
        x["type"] == "Ready" and x["status"] == "True"
        for x in c.get(f"/api/v1/nodes/{NODE}").get("status", {}).get("conditions", [])), timeout=30)
    rows = table_rows(c.kubectl("get", "nodes", "-o", "wide").stdout)
    header, [row] = rows[0], rows[1:]
    cells = dict(zip(header, row))
    assert row[0] == NODE and cells["STATUS"] == "Ready", rows
    assert cells["INTERNAL-IP"] == "127.0.0.1", rows
    assert row[-1].startswith("orchd-wasm://"), rows
    with open("/proc/sys/kernel/osrelease") as f:
        assert f.read().strip() in row, rows

    node = c.get(f"/api/v1/nodes/{NODE}")
    with open("/proc/meminfo") as f:
        total_kb = int(next(line for line in f if line.startswith("MemTotal:")).split()[1])
    assert node["status"]["capacity"]["memory"] == f"{total_kb}Ki"
    assert node["status"]["capacity"]["cpu"] == str(len(os.sched_getaffinity(0)))
    assert node["status"]["capacity"]["pods"] == "110"
    assert node["metadata"]["labels"]["node.orchd.dev/runtime"] == "wasm"
    types = {x["type"]: x["status"] for x in node["status"]["conditions"]}
    # Measured, not assumed: DiskPressure is what the machine's free space
    # under the data dir says (below 10% free, as the kubelet's default).
    st = os.statvfs(c.orchd.data_dir)
    under_pressure = st.f_bavail * 100 // st.f_blocks < 10
    assert types == {"Ready": "True", "MemoryPressure": "False",
                     "DiskPressure": "True" if under_pressure else "False",
                     "PIDPressure": "False"}, (types, st.f_bavail, st.f_blocks)
    described = c.kubectl("describe", "node", NODE).stdout
    for text in ("KubeletReady", "KubeletHasSufficientMemory", "orchd-wasm://", "Capacity:"):
        assert text in described, described
    lease = c.get(f"/apis/coordination.k8s.io/v1/namespaces/kube-node-lease/leases/{NODE}")
    assert lease["spec"]["holderIdentity"] == NODE


def test_a_wasm_pod_runs_and_its_output_shows_in_kubectl_logs(node_cluster):
    c = node_cluster
    c.kubectl_apply_text(pod_manifest("hello", ["--interval-ms", "200"]))
    p = wait_phase(c, "hello", "Running")
    assert p["status"]["podIP"] == "127.0.0.1"
    assert {x["type"]: x["status"] for x in p["status"]["conditions"]}["Ready"] == "True"
    assert "running" in p["status"]["containerStatuses"][0]["state"]
    logs = wait_until("4 lines of output",
                      lambda: (out := c.kubectl("logs", "hello").stdout).count("\n") >= 4 and out,
                      timeout=30, interval=0.2)
    assert logs.startswith("hello from wasm #1\nhello from wasm #2\n"), logs
    tail = c.kubectl("logs", "hello", "--tail", "2").stdout.splitlines()
    assert len(tail) == 2 and all(line.startswith("hello from wasm #") for line in tail), tail
    first = c.kubectl("logs", "hello", "-c", "main", "--timestamps").stdout.splitlines()[0]
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{9}Z hello from wasm #1", first), first
    rows = table_rows(c.kubectl("get", "pods", "-o", "wide").stdout)
    assert rows[1][0] == "hello" and rows[1][2] == "Running" and NODE in rows[1], rows

    # -f streams until the container ends.
    c.kubectl_apply_text(pod_manifest("counter", ["--count", "5", "--interval-ms", "300"], policy="Never"))
    wait_until("counter started", lambda: container_status(c, "counter").get("state", {}).get("running")
               or pod(c, "counter").get("status", {}).get("phase") == "Succeeded", timeout=30, interval=0.1)
    followed = c.kubectl("logs", "-f", "counter", timeout=30).stdout
    assert followed.splitlines() == [f"hello from wasm #{i}" for i in range(1, 6)], followed
    done = wait_phase(c, "counter", "Succeeded")
    term = done["status"]["containerStatuses"][0]["state"]["terminated"]
    assert term["exitCode"] == 0 and term["reason"] == "Completed", term


def test_a_crashing_container_restarts_with_growing_backoff(node_cluster):
    c = node_cluster
    c.kubectl_apply_text(pod_manifest("crasher", ["--count", "1", "--exit", "1"]))
    seen_backoff = False
    times: dict[int, float] = {}
    deadline = time.monotonic() + 60
    # The first restart comes at once (and is usually missed here), then
    # 10 s, then 20 s: counts 2 -> 3 -> 4.
    while 4 not in times and time.monotonic() < deadline:
        s = container_status(c, "crasher")
        count = s.get("restartCount", 0)
        if count and count not in times:
            times[count] = time.monotonic()
        if s.get("state", {}).get("waiting", {}).get("reason") == "CrashLoopBackOff":
            seen_backoff = True
            assert "back-off" in s["state"]["waiting"]["message"]
        time.sleep(0.1)
    assert {2, 3, 4} <= set(times), times
    assert seen_backoff
    first_gap, second_gap = times[3] - times[2], times[4] - times[3]
    assert 8 < first_gap < 15 and 18 < second_gap < 25, times
    s = container_status(c, "crasher")
    assert s["lastState"]["terminated"]["exitCode"] == 1
    assert pod(c, "crasher")["status"]["phase"] == "Running"
    assert "hello from wasm #1" in c.kubectl("logs", "crasher").stdout


def test_restart_policy_never_fails_the_pod_with_the_exit_code(node_cluster):
    c = node_cluster
    # WASI 0.2's `exit` carries success or failure only (Rust's std maps
    # every non-zero code to failure): a failed wasm program exits 1.
    c.kubectl_apply_text(pod_manifest("failing", ["--count", "1", "--exit", "3"], policy="Never"))
    p = wait_phase(c, "failing", "Failed")
    s = p["status"]["containerStatuses"][0]
    assert s["state"]["terminated"]["exitCode"] == 1
    assert s["state"]["terminated"]["reason"] == "Error"
    assert s["restartCount"] == 0
    assert "exiting with 3" in c.kubectl("logs", "failing").stdout


def test_a_container_over_its_memory_limit_is_oomkilled(node_cluster):
    c = node_cluster
    c.kubectl_apply_text(pod_manifest("hog", ["--alloc"], policy="Never", memory="32Mi"))
    p = wait_phase(c, "hog", "Failed")
    term = p["status"]["containerStatuses"][0]["state"]["terminated"]
    assert term["reason"] == "OOMKilled" and term["exitCode"] == 137, term
    out = c.kubectl("logs", "hog").stdout
    assert "allocated 16 MiB" in out and "allocated 48 MiB" not in out, out


def test_deleting_a_pod_stops_its_containers(node_cluster):
    c = node_cluster
    c.kubectl_apply_text(pod_manifest("doomed", ["--interval-ms", "100"]))
    p = wait_phase(c, "doomed", "Running")
    logs_dir = c.orchd.data_dir / "pods" / p["metadata"]["uid"]
    assert logs_dir.is_dir()
    c.kubectl("delete", "pod", "doomed", "--wait=true", timeout=60)
    assert c.status_of("/api/v1/namespaces/default/pods/doomed") == 404
    # The agent removes a pod's logs only once its containers have stopped.
    wait_until("the stopped pod's logs removed", lambda: not logs_dir.exists(), timeout=15, interval=0.1)


def test_an_image_that_is_not_there_is_err_image_pull(node_cluster):
    c = node_cluster
    c.kubectl("run", "ghost", "--image", "no-such-image", "--restart", "Never")
    s = wait_until("ErrImagePull", lambda: (w := container_status(c, "ghost").get("state", {}).get("waiting"))
                   and w.get("reason") == "ErrImagePull" and w, timeout=30, interval=0.1)
    assert "no-such-image" in s["message"]
    assert pod(c, "ghost")["status"]["phase"] == "Pending"
    r = subprocess.run(c.kubectl_cmd("logs", "ghost"), capture_output=True, text=True,
                       env={**os.environ, "HOME": str(c.tmp)})
    assert r.returncode != 0 and "waiting to start" in r.stderr, r


def test_the_example_deployment_runs_on_the_node_by_image_name(node_cluster, examples):
    """examples/hello-wasm/deployment.yaml as the demo applies it: `image:
    hello-wasm` resolves to <data-dir>/images/hello-wasm.wasm."""
    c = node_cluster
    images = c.orchd.data_dir / "images"
    images.mkdir(exist_ok=True)
    (images / "hello-wasm.wasm").write_bytes(plugin_path("hello-wasm.wasm").read_bytes())
    c.kubectl("apply", "-f", str(examples / "hello-wasm" / "deployment.yaml"))
    c.kubectl("rollout", "status", "deployment/hello-wasm", "--timeout=90s", timeout=120)
    pods = c.kubectl_json("get", "pods", "-l", "app=hello-wasm")["items"]
    assert len(pods) == 2 and all(p["status"]["phase"] == "Running" and p["spec"]["nodeName"] == NODE
                                  for p in pods), pods
    out = wait_until("the deployment's output", lambda: (o := c.kubectl("logs", "deployment/hello-wasm").stdout)
                     and "hello from a wasm pod #1" in o and o, timeout=30, interval=0.2)
    assert out.startswith("hello from a wasm pod #1\n"), out


def test_init_containers_run_first_and_in_order(node_cluster):
    c = node_cluster
    img = image()
    c.kubectl_apply_text(f"""apiVersion: v1
kind: Pod
metadata:
  name: staged
spec:
  initContainers:
    - name: first
      image: {img}
      args: ["--count", "1", "--message", "init one"]
    - name: second
      image: {img}
      args: ["--count", "1", "--message", "init two"]
  containers:
    - name: app
      image: {img}
      args: ["--interval-ms", "200"]
""")
    p = wait_phase(c, "staged", "Running")
    inits = p["status"]["initContainerStatuses"]
    assert [s["name"] for s in inits] == ["first", "second"]
    ends = [s["state"]["terminated"] for s in inits]
    assert all(t["reason"] == "Completed" and t["exitCode"] == 0 for t in ends), ends
    app_started = p["status"]["containerStatuses"][0]["state"]["running"]["startedAt"]
    assert ends[0]["finishedAt"] <= ends[1]["startedAt"] and ends[1]["finishedAt"] <= app_started, p["status"]
    assert {x["type"]: x["status"] for x in p["status"]["conditions"]}["Initialized"] == "True"
    assert c.kubectl("logs", "staged", "-c", "second").stdout == "init two #1\n"
