"""orchd on a real etcd: `orchd up --store etcd://...` serves kubectl's
create/get/watch/delete from etcd, two `orchd server` processes on the
same etcd serve the same objects (a write through one reaches a watch
through the other), and only the replica holding the plugins' Lease runs
the schedulers and controllers: the other stands by and takes over when
the lease lapses. Admission plugins run in every replica (each one's API
enforces them), and components far larger than etcd's 1.5 MiB request
limit install, stored in chunks.

etcd is Debian's etcd-server (`cargo xtask test` installs it); without it
these tests fail saying so, unless ORCHD_SKIP_ETCD_TESTS=1.
"""

from __future__ import annotations

import base64
import json
import os
import shutil
import socket
import subprocess
import time
from pathlib import Path

import pytest

from helpers import Cluster, HollowNodes, Orchd, plugin_path, request, run_orchd, wait_until
from test_kubectl import Lines


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture
def etcd(tmp_path):
    """A single-member etcd on free loopback ports; yields its host:port."""
    binary = shutil.which("etcd") or "/usr/bin/etcd"
    if not os.access(binary, os.X_OK):
        if os.environ.get("ORCHD_SKIP_ETCD_TESTS") == "1":
            pytest.skip("etcd is not installed (ORCHD_SKIP_ETCD_TESTS=1)")
        pytest.fail("etcd is not installed: `apt-get install etcd-server` (cargo xtask test does)")
    client, peer = free_port(), free_port()
    client_url, peer_url = f"http://127.0.0.1:{client}", f"http://127.0.0.1:{peer}"
    log = open(tmp_path / "etcd.log", "w")
    proc = subprocess.Popen(
        [binary, "--name", "e2e", "--data-dir", str(tmp_path / "etcd"),
         "--listen-client-urls", client_url, "--advertise-client-urls", client_url,
         "--listen-peer-urls", peer_url, "--initial-advertise-peer-urls", peer_url,
         "--initial-cluster", f"e2e={peer_url}", "--log-level", "error", "--logger", "zap"],
        stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT)
    endpoint = f"127.0.0.1:{client}"
    try:
        def healthy():
            if proc.poll() is not None:
                raise AssertionError(f"etcd exited {proc.returncode}: {(tmp_path / 'etcd.log').read_text()}")
            try:
                return b'"health":"true"' in request(client_url, "GET", "/health", timeout=2).body
            except OSError:
                return False
        wait_until("etcd to be healthy", healthy, timeout=30)
        yield endpoint
    finally:
        proc.kill()
        proc.wait()
        log.close()


def etcd_keys(endpoint: str, prefix: str) -> list[str]:
    """The keys under `prefix`, read from etcd's gateway directly."""
    start = prefix.encode()
    end = start[:-1] + bytes([start[-1] + 1])
    r = request(f"http://{endpoint}", "POST", "/v3/kv/range",
                {"key": base64.b64encode(start).decode(), "range_end": base64.b64encode(end).decode(),
                 "keys_only": True})
    assert r.status == 200, r
    return [base64.b64decode(kv["key"]).decode() for kv in r.json().get("kvs", [])]


def configmap_manifest(tmp: Path, name: str, value: str) -> Path:
    path = tmp / f"{name}-{time.monotonic_ns()}.json"
    path.write_text(json.dumps({"apiVersion": "v1", "kind": "ConfigMap",
                                "metadata": {"name": name, "namespace": "default"}, "data": {"v": value}}))
    return path


def start(tmp_path: Path, name: str, args: list[str], command: str = "up") -> Cluster:
    o = Orchd(tmp_path / name, args, command=command).start()
    work = tmp_path / f"{name}-kubectl"
    work.mkdir()
    return Cluster(o, work)


def stop(cluster: Cluster):
    code = cluster.orchd.stop()
    print(cluster.orchd.log())
    assert code == 0, f"orchd exited {code} on SIGTERM:\n{cluster.orchd.log()}"


def test_up_on_etcd_serves_kubectl(etcd, tmp_path):
    c = start(tmp_path, "up", ["--store", f"etcd://{etcd}/e2e-up"])
    try:
        assert f"orchd: opening store etcd at {etcd} (key prefix /e2e-up)" in c.orchd.log()
        c.kubectl("create", "-f", str(configmap_manifest(tmp_path, "stored", "one")))
        got = c.kubectl_json("get", "configmap", "stored")
        assert got["data"] == {"v": "one"}
        # It is in etcd, under the prefix, with the documented layout.
        assert "/e2e-up/configmaps/default/stored" in etcd_keys(etcd, "/e2e-up/")

        watch = subprocess.Popen(
            c.kubectl_cmd("get", "configmap", "stored", "-w", "-o", 'jsonpath={.metadata.name}={.data.v}{"\\n"}'),
            stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        try:
            lines = Lines(watch)
            lines.wait_for(lambda l: l == "stored=one")
            c.kubectl("patch", "configmap", "stored", "--type=merge", "-p", '{"data":{"v":"two"}}')
            lines.wait_for(lambda l: l == "stored=two")
        finally:
            watch.kill()
            watch.wait()

        c.kubectl("delete", "configmap", "stored")
        assert c.kubectl("get", "configmap", "stored", check=False).returncode != 0
        assert "/e2e-up/configmaps/default/stored" not in etcd_keys(etcd, "/e2e-up/")
    finally:
        stop(c)


def test_two_servers_share_one_etcd(etcd, tmp_path):
    store = ["--store", f"etcd://{etcd}/e2e-shared"]
    a = start(tmp_path, "a", store, command="server")
    b = start(tmp_path, "b", [*store, "--no-default-plugins"], command="server")
    try:
        watch = subprocess.Popen(
            b.kubectl_cmd("get", "configmaps", "-w", "-o", 'jsonpath={.metadata.name}={.data.v}{"\\n"}'),
            stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        try:
            lines = Lines(watch)
            # The watch is established once kubectl printed the (empty) list;
            # a write through A must reach it through B.
            time_limit = time.monotonic() + 20
            a.kubectl("create", "-f", str(configmap_manifest(tmp_path, "shared", "from-a")))
            lines.wait_for(lambda l: l == "shared=from-a", timeout=max(1.0, time_limit - time.monotonic()))
            b.kubectl("patch", "configmap", "shared", "--type=merge", "-p", '{"data":{"v":"from-b"}}')
            lines.wait_for(lambda l: l == "shared=from-b")
        finally:
            watch.kill()
            watch.wait()
        assert a.kubectl_json("get", "configmap", "shared")["data"] == {"v": "from-b"}
        # Optimistic concurrency spans the replicas: a stale write through A
        # after B's change is refused.
        stale = a.get("/api/v1/namespaces/default/configmaps/shared")
        b.kubectl("patch", "configmap", "shared", "--type=merge", "-p", '{"data":{"v":"again"}}')
        stale["data"] = {"v": "stale"}
        r = a.http("PUT", "/api/v1/namespaces/default/configmaps/shared", stale)
        assert r.status == 409, r
        a.kubectl("delete", "configmap", "shared")
        wait_until("B to see the delete",
                   lambda: b.kubectl("get", "configmap", "shared", check=False).returncode != 0)
    finally:
        stop(b)
        stop(a)


def lease_holder(c: Cluster) -> str | None:
    lease = c.get("/apis/coordination.k8s.io/v1/namespaces/kube-system/leases/orchd-plugins")
    return lease["spec"].get("holderIdentity")


def test_one_replica_runs_the_plugins_and_another_takes_over(etcd, tmp_path):
    store = ["--store", f"etcd://{etcd}/e2e-leader"]
    a = start(tmp_path, "a", [*store, "--identity", "replica-a"], command="server")
    wait_until("replica a to lead", lambda: "replica-a leads" in a.orchd.log(), timeout=20)
    b = start(tmp_path, "b", [*store, "--identity", "replica-b"], command="server")
    try:
        wait_until("replica b to stand by",
                   lambda: "standing by: lease kube-system/orchd-plugins is held by replica-a" in b.orchd.log(),
                   timeout=20)
        assert lease_holder(b) == "replica-a"
        # The leader's controllers do the work, once: exactly `replicas`
        # pods, however many replicas watch the ReplicaSet.
        rs = {"apiVersion": "apps/v1", "kind": "ReplicaSet",
              "metadata": {"name": "led", "namespace": "default"},
              "spec": {"replicas": 3, "selector": {"matchLabels": {"app": "led"}},
                       "template": {"metadata": {"labels": {"app": "led"}},
                                    "spec": {"containers": [{"name": "c", "image": "busybox"}]}}}}
        b.create("/apis/apps/v1/namespaces/default/replicasets", rs)

        def pods() -> int:
            return len(b.get("/api/v1/namespaces/default/pods?labelSelector=app%3Dled")["items"])
        wait_until("3 pods", lambda: pods() == 3, timeout=30)
        assert "leads" not in b.orchd.log()

        # A crashes without releasing the lease: B takes over once it
        # lapses (15 s), and its controllers carry on.
        a.orchd.kill()
        wait_until("replica b to lead", lambda: "replica-b leads" in b.orchd.log(), timeout=40)
        assert lease_holder(b) == "replica-b"
        b.kubectl("scale", "replicaset", "led", "--replicas=5")
        wait_until("5 pods", lambda: pods() == 5, timeout=30)
        time.sleep(0.5)
        assert pods() == 5
    finally:
        stop(b)
        if a.orchd.proc and a.orchd.proc.poll() is None:
            stop(a)
    # A clean stop gives the lease up.
    assert "released the lease kube-system/orchd-plugins" in b.orchd.log()


POD = """
apiVersion: v1
kind: Pod
metadata:
  name: {name}
  labels: {labels}
spec:
  containers:
  - name: app
    image: busybox
"""


def test_every_replica_enforces_the_admission_plugins(etcd, tmp_path):
    """A policy installed through the leader is enforced by the replica
    that does not lead: a denied create through it prints the policy's
    message in kubectl, and nothing is stored."""
    store = ["--store", f"etcd://{etcd}/e2e-admission"]
    a = start(tmp_path, "a", [*store, "--identity", "replica-a"], command="server")
    wait_until("replica a to lead", lambda: "replica-a leads" in a.orchd.log(), timeout=20)
    b = start(tmp_path, "b", [*store, "--identity", "replica-b"], command="server")
    try:
        wait_until("replica b to stand by",
                   lambda: "standing by: lease kube-system/orchd-plugins is held by replica-a" in b.orchd.log(),
                   timeout=20)
        out = run_orchd(a, "plugin", "install", str(plugin_path("required-labels.wasm")),
                        "--resources", "pods", "--operations", "CREATE,UPDATE").stdout
        assert "admission plugin" in out, out
        wait_until("replica b to load the policy",
                   lambda: "plugin required-labels: [info] revision 1 reviews API writes" in b.orchd.log(), timeout=60)
        assert "replica-b leads" not in b.orchd.log()

        denied = b.kubectl("apply", "-f", "-", input=POD.format(name="anonymous", labels="{}"), check=False)
        assert denied.returncode != 0, denied.stdout
        assert ('admission webhook "required-labels" denied the request: '
                'pods "anonymous" is missing the required label "owner"') in denied.stderr, denied.stderr
        assert a.status_of("/api/v1/namespaces/default/pods/anonymous") == 404
        b.kubectl("apply", "-f", "-", input=POD.format(name="owned", labels="{owner: team-a}"))
        assert a.get("/api/v1/namespaces/default/pods/owned")["metadata"]["labels"] == {"owner": "team-a"}

        # Deleting the Plugin (through b) lifts the policy in both replicas.
        run_orchd(b, "plugin", "remove", "required-labels")
        for replica in (a, b):
            wait_until("the policy lifted", lambda: replica.kubectl(
                "apply", "-f", "-", input=POD.format(name="free", labels="{}"), check=False).returncode == 0,
                timeout=30)
            replica.kubectl("delete", "pod", "free", "--wait=false")
    finally:
        stop(b)
        stop(a)


def test_a_python_plugin_installs_on_etcd_in_chunks(etcd, tmp_path):
    """A Python component (~18 MB, far past etcd's 1.5 MiB request limit)
    installs on an etcd-backed cluster, stored as 1 MiB chunks and a head,
    and runs: the Python scheduler binds a pod. Removing the plugin
    removes the chunks with the head."""
    component = plugin_path("zone-packer-py.wasm")
    size = component.stat().st_size
    chunks = -(-size // (1 << 20))
    assert chunks > 2, f"{component} is only {size} bytes"
    c = start(tmp_path, "big", ["--store", f"etcd://{etcd}/e2e-big"])
    nodes = HollowNodes(c.url, 2, "--labels", "topology.kubernetes.io/zone=zone-a")
    try:
        out = run_orchd(c, "plugin", "install", str(component), "--timeout", "300", timeout=360).stdout
        assert f"({size} bytes in {chunks} chunks)" in out, out
        assert 'serving schedulerName "zone-packer"' in out and "revision 1 is active" in out, out
        digest = c.get("/apis/orchd.dev/v1/plugins/zone-packer")["spec"]["revisions"][0]["digest"]
        head = "sha256-" + digest.removeprefix("sha256:")
        keys = [k for k in etcd_keys(etcd, "/e2e-big/plugincomponents.orchd.dev/") if head in k]
        assert sorted(keys) == sorted([f"/e2e-big/plugincomponents.orchd.dev/{head}"]
                                      + [f"/e2e-big/plugincomponents.orchd.dev/{head}-{i}" for i in range(chunks)]), keys
        stored = c.get(f"/apis/orchd.dev/v1/plugincomponents/{head}")
        assert stored["size"] == size and len(stored["chunks"]) == chunks and not stored.get("data"), \
            {k: v for k, v in stored.items() if k != "chunks"}

        c.create("/api/v1/namespaces/default/pods", {
            "apiVersion": "v1", "kind": "Pod", "metadata": {"name": "packed"},
            "spec": {"schedulerName": "zone-packer", "containers": [{"name": "c", "image": "busybox"}]}})
        wait_until("the Python scheduler to bind the pod",
                   lambda: c.get("/api/v1/namespaces/default/pods/packed")["spec"].get("nodeName"), timeout=60)

        # The same bytes again (revision 2): nothing is uploaded.
        again = run_orchd(c, "plugin", "install", str(component), "--no-wait").stdout
        assert f"component {head} is already stored" in again, again
        run_orchd(c, "plugin", "remove", "zone-packer")
        assert [k for k in etcd_keys(etcd, "/e2e-big/plugincomponents.orchd.dev/") if head in k] == []
    finally:
        nodes.stop()
        stop(c)
