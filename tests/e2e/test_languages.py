"""Plugins in Python and JavaScript end to end, with the real kubectl.

The components are built from source by `cargo xtask test`
(plugins/examples/*-py with componentize-py over sdk/python,
plugins/examples/*-js with componentize-qjs over sdk/js) and installed
with `orchd plugin install`, as a user would. `orchd plugin new` projects
are built with their own build.sh for every language and world.

Python components are ~18 MB: the first install of one compiles it (~15 s
on a loaded 2-core machine with the dev profile's optimized cranelift;
5.5 min without), later ones load the artifact cached by digest.
"""

from __future__ import annotations

import json
import os
import subprocess
import urllib.parse

import pytest

from helpers import Cluster, orchd_bin, plugin_path, run_orchd, wait_until

PODS = "/api/v1/namespaces/default/pods"
DEPLOYMENTS = "/apis/apps/v1/namespaces/default/deployments"
PLUGINS = "/apis/orchd.dev/v1/plugins"
ZONE = "topology.kubernetes.io/zone"

# Compiling an 18 MB component the first time on a loaded 2-core machine.
INSTALL_TIMEOUT = "300"


def install(c: Cluster, file: str, *args: str) -> str:
    p = run_orchd(c, "plugin", "install", str(plugin_path(file)), "--timeout", INSTALL_TIMEOUT, *args,
                  timeout=float(INSTALL_TIMEOUT) + 60)
    return p.stdout


def live_pods(c: Cluster, selector: str) -> list[dict]:
    q = urllib.parse.quote(selector)
    return [p for p in c.get(f"{PODS}?labelSelector={q}")["items"] if not p["metadata"].get("deletionTimestamp")]


def is_ready(pod: dict) -> bool:
    return any(x.get("type") == "Ready" and x.get("status") == "True"
               for x in (pod.get("status") or {}).get("conditions") or [])


def rollout(c: Cluster, name: str):
    c.kubectl("rollout", "status", f"deployment/{name}", "--timeout=120s", timeout=150)


def settled(c: Cluster, name: str, replicas: int, image: str | None = None):
    """Exactly `replicas` live pods of `name`, all ready (and of `image`)."""
    pods = live_pods(c, f"app={name}")
    ok = len(pods) == replicas and all(is_ready(p) for p in pods) and (
        image is None or all(p["spec"]["containers"][0]["image"] == image for p in pods))
    return pods if ok else None


def deployment(name: str, replicas: int, image: str = "app:1", pod_spec: str = "", volumes: str = "") -> str:
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
    type: RollingUpdate
    rollingUpdate: {{maxSurge: 1, maxUnavailable: 1}}
  template:
    metadata:
      labels: {{app: {name}}}
    spec:
{pod_spec}
      containers:
      - name: app
        image: {image}
{volumes}
"""


def configmap(name: str, value: str) -> str:
    return f"""
apiVersion: v1
kind: ConfigMap
metadata:
  name: {name}
data:
  setting: "{value}"
"""


def test_python_controller_rolls_a_deployment_when_its_configmap_changes(cluster, hollow_nodes):
    hollow_nodes(2)
    out = install(cluster, "configmap-reloader-py.wasm", "--name", "configmap-reloader",
                  "--read", "deployments.apps,configmaps", "--write", "deployments.apps")
    assert "is a controller plugin" in out and "revision 1 is active" in out, out
    cluster.kubectl_apply_text(configmap("settings", "one"))
    cluster.kubectl_apply_text(deployment("web", 2, volumes="""      volumes:
      - name: cfg
        configMap: {name: settings}"""))
    rollout(cluster, "web")
    # First sight: the hash is recorded on the Deployment, the pods stay.
    hashed = wait_until("the ConfigMap hash recorded on the Deployment", lambda: (
        cluster.get(f"{DEPLOYMENTS}/web")["metadata"].get("annotations", {}).get("orchd.dev/configmap-hash")))
    first = {p["metadata"]["name"] for p in wait_until("2 ready pods", lambda: settled(cluster, "web", 2))}
    template = cluster.get(f"{DEPLOYMENTS}/web")["spec"]["template"]
    assert "kubectl.kubernetes.io/restartedAt" not in (template["metadata"].get("annotations") or {})

    # Re-applying the same data restarts nothing; new data rolls the pods.
    cluster.kubectl_apply_text(configmap("settings", "one").replace("name: settings", "name: settings\n  labels: {touched: again}"))
    cluster.kubectl_apply_text(configmap("settings", "two"))
    restarted = wait_until("the pod template stamped", lambda: (
        (cluster.get(f"{DEPLOYMENTS}/web")["spec"]["template"]["metadata"].get("annotations") or {})
        .get("kubectl.kubernetes.io/restartedAt")), timeout=60)
    assert restarted
    rollout(cluster, "web")
    pods = wait_until("2 new ready pods", lambda: (
        (p := settled(cluster, "web", 2)) and not first & {x["metadata"]["name"] for x in p} and p), timeout=90)
    assert len(pods) == 2
    d = cluster.get(f"{DEPLOYMENTS}/web")
    assert d["metadata"]["annotations"]["orchd.dev/configmap-hash"] != hashed
    assert d["metadata"]["generation"] == 2, "one restart for one change"
    events = cluster.kubectl_json("get", "events", "--field-selector", "involvedObject.name=web")["items"]
    assert any(e["reason"] == "ConfigMapChanged" and "settings" in e["message"] for e in events), events


def test_python_scheduler_packs_pods_into_one_zone(cluster, hollow_nodes):
    for zone in ("a", "b", "c"):
        hollow_nodes(2, "--labels", f"{ZONE}=zone-{zone}", "--prefix", f"z{zone}", "--cpu", "4")
    out = install(cluster, "zone-packer-py.wasm")
    assert 'serving schedulerName "zone-packer"' in out and "revision 1 is active" in out, out
    nodes = cluster.kubectl_json("get", "nodes")["items"]
    zone_of = {n["metadata"]["name"]: n["metadata"]["labels"][ZONE] for n in nodes}
    assert len(set(zone_of.values())) == 3, zone_of
    cluster.kubectl_apply_text(deployment("packed", 6, pod_spec="      schedulerName: zone-packer"))
    pods = wait_until("6 pods bound", lambda: (
        (p := live_pods(cluster, "app=packed")) and len(p) == 6 and all(x["spec"].get("nodeName") for x in p) and p),
        timeout=90)
    zones = {zone_of[p["spec"]["nodeName"]] for p in pods}
    assert len(zones) == 1, f"spread over {zones}: {[p['spec']['nodeName'] for p in pods]}"
    # The default scheduler spreads the same workload over the zones.
    cluster.kubectl_apply_text(deployment("spread", 6))
    pods = wait_until("6 spread pods bound", lambda: (
        (p := live_pods(cluster, "app=spread")) and len(p) == 6 and all(x["spec"].get("nodeName") for x in p) and p),
        timeout=90)
    assert len({zone_of[p["spec"]["nodeName"]] for p in pods}) > 1


def test_python_replicaset_controller_replaces_the_default(cluster, hollow_nodes):
    hollow_nodes(3)
    out = install(cluster, "replicaset-py.wasm", "--name", "replicaset")
    assert "revision 2 is active" in out, out
    plugin = cluster.get(f"{PLUGINS}/replicaset")
    assert plugin["status"]["activeRevision"] == 2
    cluster.kubectl_apply_text(deployment("web", 3))
    rollout(cluster, "web")
    wait_until("3 ready pods", lambda: settled(cluster, "web", 3))
    cluster.kubectl("scale", "deployment/web", "--replicas=6")
    rollout(cluster, "web")
    wait_until("6 ready pods", lambda: settled(cluster, "web", 6))
    cluster.kubectl("set", "image", "deployment/web", "app=app:2")
    rollout(cluster, "web")
    wait_until("6 ready pods of app:2", lambda: settled(cluster, "web", 6, "app:2"), timeout=90)
    cluster.kubectl("scale", "deployment/web", "--replicas=2")
    wait_until("2 ready pods of app:2", lambda: settled(cluster, "web", 2, "app:2"), timeout=60)
    rs = [r for r in cluster.kubectl_json("get", "rs")["items"] if r["metadata"]["name"].startswith("web-")]
    by_image = {r["spec"]["template"]["spec"]["containers"][0]["image"]: r for r in rs}
    assert by_image["app:2"]["status"].get("readyReplicas") == 2, by_image["app:2"]["status"]
    assert by_image["app:1"]["spec"]["replicas"] == 0 and not by_image["app:1"]["status"].get("replicas")
    d = cluster.kubectl_json("get", "deployment/web")
    assert (d["status"].get("updatedReplicas"), d["status"].get("availableReplicas")) == (2, 2), d["status"]
    # It was the Python revision that did all this, and it never failed.
    plugin = cluster.get(f"{PLUGINS}/replicaset")
    assert (plugin["status"]["phase"], plugin["status"]["activeRevision"]) == ("Active", 2), plugin["status"]


def test_js_admission_policy_is_an_admission_component_and_denies(cluster, tmp_path):
    """Built from JS and accepted by `orchd plugin install` as world
    `admission`; once Active it judges pod writes, and its denials read in
    kubectl as Kubernetes' webhook denials do."""
    p = run_orchd(cluster, "plugin", "install", str(plugin_path("admission-policy-js.wasm")),
                  "--name", "admission-policy", "--resources", "pods", "--operations", "CREATE,UPDATE",
                  "--no-wait")
    assert "is a admission plugin" in p.stdout, p.stdout
    plugin = cluster.get(f"{PLUGINS}/admission-policy")
    assert plugin["spec"]["world"] == "admission"
    wait_until("the policy to be Active",
               lambda: (cluster.get(f"{PLUGINS}/admission-policy").get("status") or {}).get("phase") == "Active",
               timeout=300)
    pod = lambda name, labels, image: f"""
apiVersion: v1
kind: Pod
metadata:
  name: {name}
  labels: {labels}
spec:
  containers:
  - name: app
    image: {image}
"""
    path = tmp_path / "pod.yaml"
    path.write_text(pod("unlabeled", "{app: x}", "busybox"))
    denied = cluster.kubectl("apply", "-f", str(path), check=False)
    assert denied.returncode != 0 and "missing required label(s): team" in denied.stderr, denied.stderr
    path.write_text(pod("elsewhere", "{team: a}", "docker.io/nginx:1"))
    denied = cluster.kubectl("apply", "-f", str(path), check=False)
    assert denied.returncode != 0 and "image(s) not allowed: app=docker.io/nginx:1" in denied.stderr, denied.stderr
    path.write_text(pod("fine", "{team: a}", "busybox:1.36"))
    cluster.kubectl("apply", "-f", str(path))
    assert cluster.status_of(f"{PODS}/fine") == 200


def test_js_controller_replicates_a_configmap_into_every_namespace(cluster):
    """A JavaScript controller (world controller, componentize-qjs): a
    ConfigMap labelled `orchd.dev/replicate=true` is copied into every
    namespace, new ones included; copies follow the source's data, a copy
    deleted by hand comes back, a ConfigMap of that name that is not a copy
    is left alone, and the copies go when the source loses its label."""
    out = install(cluster, "configmap-replicator-js.wasm", "--name", "configmap-replicator",
                  "--read", "configmaps,namespaces", "--write", "configmaps",
                  "--config", '{"exclude": ["kube-node-lease"]}')
    assert "is a controller plugin" in out and "revision 1 is active" in out, out
    cluster.kubectl("create", "namespace", "team-a")
    cluster.kubectl_apply_text("""
apiVersion: v1
kind: Namespace
metadata:
  name: team-b
---
apiVersion: v1
kind: ConfigMap
metadata:
  name: shared
  namespace: team-b
data:
  owner: team-b
""")
    cluster.kubectl_apply_text("""
apiVersion: v1
kind: ConfigMap
metadata:
  name: shared
  labels: {orchd.dev/replicate: "true", app: settings}
data:
  region: eu
  level: "3"
""")

    def data(ns: str) -> dict | None:
        """The data of ConfigMap `shared` in `ns`, read with kubectl; None if there is none."""
        p = cluster.kubectl("get", "configmap", "shared", "-n", ns, "-o", "json", check=False)
        if p.returncode != 0:
            assert "NotFound" in p.stderr, p.stderr
            return None
        return json.loads(p.stdout).get("data") or {}
    expected = {"region": "eu", "level": "3"}
    wait_until("copies in team-a, kube-system and kube-public",
               lambda: all(data(ns) == expected for ns in ("team-a", "kube-system", "kube-public")), timeout=60)
    copy = cluster.kubectl_json("get", "configmap", "shared", "-n", "team-a")
    assert copy["metadata"]["annotations"]["orchd.dev/replicated-from"] == "default/shared"
    assert copy["metadata"]["labels"] == {"app": "settings", "orchd.dev/replica": "true"}, copy["metadata"]
    assert data("kube-node-lease") is None, "excluded by the plugin's configuration"
    assert data("team-b") == {"owner": "team-b"}, "a ConfigMap that is not a copy is never overwritten"
    events = cluster.kubectl_json("get", "events", "--field-selector", "involvedObject.name=shared")["items"]
    assert any(e["reason"] == "ReplicationBlocked" and "team-b" in e["message"] for e in events), events

    # A namespace created later gets its copy; a changed source (a key
    # dropped, one changed) changes every copy.
    cluster.kubectl("create", "namespace", "team-c")
    wait_until("a copy in the new namespace", lambda: data("team-c") == expected, timeout=60)
    cluster.kubectl("patch", "configmap", "shared", "--type=json",
                    "-p", '[{"op": "remove", "path": "/data/level"}, {"op": "replace", "path": "/data/region", "value": "us"}]')
    wait_until("every copy updated", lambda: all(data(ns) == {"region": "us"} for ns in ("team-a", "team-c", "kube-system")),
               timeout=60)

    # A copy deleted by hand comes back; a copy edited by hand is put back.
    cluster.kubectl("delete", "configmap", "shared", "-n", "team-a")
    wait_until("the deleted copy back", lambda: data("team-a") == {"region": "us"}, timeout=60)
    cluster.kubectl("patch", "configmap", "shared", "-n", "team-c", "--type=merge", "-p", '{"data": {"region": "mars"}}')
    wait_until("the edited copy put back", lambda: data("team-c") == {"region": "us"}, timeout=60)

    # Without the label it is no longer a source: its copies go, the
    # foreign one and the source stay.
    cluster.kubectl("label", "configmap", "shared", "orchd.dev/replicate-")
    wait_until("the copies deleted", lambda: all(data(ns) is None for ns in ("team-a", "team-c", "kube-system", "kube-public")),
               timeout=60)
    assert data("team-b") == {"owner": "team-b"} and data("default") == {"region": "us"}
    plugin = cluster.get(f"{PLUGINS}/configmap-replicator")
    assert plugin["status"]["phase"] == "Active" and not plugin["status"].get("restarts"), plugin["status"]


@pytest.mark.parametrize("lang,worlds", [
    ("rust", ["controller", "scheduler", "admission"]),
    ("python", ["controller", "scheduler", "admission"]),
    ("js", ["controller", "scheduler", "admission"]),
])
def test_plugin_new_builds_components_install_accepts(cluster, tmp_path, lang, worlds):
    """`orchd plugin new` for each world: build.sh gives a component that
    `orchd plugin install` checks as its world and that runs (controllers
    and schedulers; admission ones as far as this build runs them)."""
    env = dict(os.environ)
    if lang == "rust" and os.environ.get("ORCHD_WASM_TARGET_DIR"):
        # Shares the dependencies xtask already built for wasm32-wasip2.
        env["CARGO_TARGET_DIR"] = os.environ["ORCHD_WASM_TARGET_DIR"]
    for world in worlds:
        name = f"my-{lang}-{world}"
        project = tmp_path / name
        subprocess.run([orchd_bin(), "plugin", "new", name, "--lang", lang, "--world", world, "--dir", str(project)],
                       check=True, capture_output=True, text=True)
        assert (project / "README.md").is_file() and (project / "build.sh").is_file()
        b = subprocess.run(["./build.sh"], cwd=project, env=env, capture_output=True, text=True, timeout=600)
        assert b.returncode == 0, f"{name}: build.sh failed\n{b.stdout}\n{b.stderr}"
        component = project / f"{name}.wasm"
        assert component.is_file(), b.stdout
        args = ["plugin", "install", str(component), "--name", name, "--timeout", INSTALL_TIMEOUT]
        if world == "controller":
            args += ["--read", "configmaps", "--write", "configmaps"]
        if world == "admission":
            args.append("--no-wait")
        out = run_orchd(cluster, *args, timeout=float(INSTALL_TIMEOUT) + 60).stdout
        if world == "scheduler":
            assert f'serving schedulerName "{name}"' in out, out
        else:
            assert f"is a {world} plugin" in out, out
        if world == "admission":
            wait_until(f"admission plugin {name} to be Active",
                       lambda: (cluster.get(f"{PLUGINS}/{name}").get("status") or {}).get("phase") == "Active",
                       timeout=300)
        else:
            assert "revision 1 is active" in out, out
    if "controller" not in worlds:
        return
    # The controller does its job: it labels ConfigMaps.
    cluster.kubectl_apply_text(configmap("probe", "x"))
    wait_until("the template controller labels the ConfigMap", lambda: (
        (cluster.get("/api/v1/namespaces/default/configmaps/probe")["metadata"].get("labels") or {}).get("seen")
        == "yes"), timeout=30)
