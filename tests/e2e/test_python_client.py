"""End to end with the official Python client (`kubernetes` on PyPI),
configured from the kubeconfig `orchd up` writes."""

from __future__ import annotations

import base64
import http.client
import json
import threading
import time

import pytest
from kubernetes import client, config, watch
from kubernetes.client.rest import ApiException

from helpers import cm_path, request, split_url

#: `orchd up` flags that make history short and compaction frequent, so a
#: test can see a watch expire (410) without 100,000 writes.
SHORT_HISTORY = ["--history-limit", "5", "--compaction-interval-ms", "100"]


def api_client(kubeconfig) -> client.ApiClient:
    return config.new_client_from_config(config_file=str(kubeconfig))


@pytest.fixture
def api(cluster):
    c = api_client(cluster.kubeconfig)
    yield c
    c.close()


def meta(name: str, **kw) -> client.V1ObjectMeta:
    return client.V1ObjectMeta(name=name, **kw)


def test_version_endpoint(api):
    info = client.VersionApi(api).get_code()  # GET /version/ (trailing slash)
    assert (info.major, info.minor) == ("1", "37")


def test_configmap_create_list_patch_replace_delete(api):
    v1 = client.CoreV1Api(api)
    created = v1.create_namespaced_config_map(
        "default", client.V1ConfigMap(metadata=meta("py", labels={"app": "py"}), data={"a": "1"}))
    assert created.metadata.uid and int(created.metadata.resource_version) > 0
    v1.create_namespaced_config_map("default", client.V1ConfigMap(metadata=meta("other"), data={}))

    listed = v1.list_namespaced_config_map("default", label_selector="app=py")
    assert [i.metadata.name for i in listed.items] == ["py"]

    patched = v1.patch_namespaced_config_map("py", "default", {"data": {"b": "2"}})  # strategic merge
    assert patched.data == {"a": "1", "b": "2"}
    assert int(patched.metadata.resource_version) > int(created.metadata.resource_version)

    patched.data["a"] = "changed"
    replaced = v1.replace_namespaced_config_map("py", "default", patched)
    assert replaced.data == {"a": "changed", "b": "2"}

    created.data = {"stale": "write"}  # carries the first resourceVersion
    with pytest.raises(ApiException) as e:
        v1.replace_namespaced_config_map("py", "default", created)
    assert e.value.status == 409
    assert json.loads(e.value.body)["reason"] == "Conflict"
    assert v1.read_namespaced_config_map("py", "default").data == {"a": "changed", "b": "2"}

    v1.delete_namespaced_config_map("py", "default")
    with pytest.raises(ApiException) as e:
        v1.read_namespaced_config_map("py", "default")
    assert e.value.status == 404
    assert [i.metadata.name for i in v1.list_namespaced_config_map("default").items] == ["other"]


def test_deployment_create_list_patch_scale_delete(api):
    apps = client.AppsV1Api(api)
    body = client.V1Deployment(
        metadata=meta("web", labels={"app": "web"}),
        spec=client.V1DeploymentSpec(
            replicas=2,
            selector=client.V1LabelSelector(match_labels={"app": "web"}),
            template=client.V1PodTemplateSpec(
                metadata=client.V1ObjectMeta(labels={"app": "web"}),
                spec=client.V1PodSpec(containers=[client.V1Container(name="nginx", image="nginx:1.27")]))))
    created = apps.create_namespaced_deployment("default", body)
    assert created.spec.replicas == 2 and created.metadata.generation == 1

    everywhere = apps.list_deployment_for_all_namespaces()
    assert [(d.metadata.namespace, d.metadata.name) for d in everywhere.items] == [("default", "web")]

    # A list body goes as a JSON patch.
    patched = apps.patch_namespaced_deployment(
        "web", "default", [{"op": "replace", "path": "/spec/template/spec/containers/0/image", "value": "nginx:1.28"}])
    assert patched.spec.template.spec.containers[0].image == "nginx:1.28"
    assert patched.metadata.generation == 2

    scale = apps.read_namespaced_deployment_scale("web", "default")
    assert scale.spec.replicas == 2
    apps.patch_namespaced_deployment_scale("web", "default", {"spec": {"replicas": 6}})
    assert apps.read_namespaced_deployment("web", "default").spec.replicas == 6

    apps.delete_namespaced_deployment("web", "default", propagation_policy="Background")
    with pytest.raises(ApiException) as e:
        apps.read_namespaced_deployment("web", "default")
    assert e.value.status == 404


def test_namespace_pod_and_secret(api):
    v1 = client.CoreV1Api(api)
    v1.create_namespace(client.V1Namespace(metadata=meta("pyns")))
    v1.create_namespaced_pod("pyns", client.V1Pod(
        metadata=meta("p1", labels={"app": "p"}),
        spec=client.V1PodSpec(containers=[client.V1Container(name="c", image="busybox:1.36")])))
    v1.create_namespaced_secret("pyns", client.V1Secret(
        metadata=meta("s1"), data={"password": base64.b64encode(b"hunter2").decode()}))

    pods = v1.list_pod_for_all_namespaces(label_selector="app=p")
    assert [(p.metadata.namespace, p.metadata.name) for p in pods.items] == [("pyns", "p1")]
    by_field = v1.list_pod_for_all_namespaces(field_selector="metadata.namespace=pyns")
    assert [p.metadata.name for p in by_field.items] == ["p1"]
    assert v1.list_namespaced_pod("default").items == []
    secret = v1.read_namespaced_secret("s1", "pyns")
    assert base64.b64decode(secret.data["password"]) == b"hunter2"
    assert "pyns" in [n.metadata.name for n in v1.list_namespace().items]

    v1.delete_namespaced_pod("p1", "pyns")
    v1.delete_namespaced_secret("s1", "pyns")
    assert v1.list_namespaced_pod("pyns").items == []


def collect(w: watch.Watch, func, count: int, **kwargs) -> list[tuple[str, str, int]]:
    """The first `count` events of a watch as (type, name, resourceVersion)."""
    events = []
    for ev in w.stream(func, timeout_seconds=5, _request_timeout=20, **kwargs):
        o = ev["object"]
        events.append((ev["type"], o.metadata.name, int(o.metadata.resource_version)))
        if len(events) == count:
            w.stop()
    return events


def test_watch_resumes_from_resource_version(api):
    v1 = client.CoreV1Api(api)
    a = v1.create_namespaced_config_map("default", client.V1ConfigMap(metadata=meta("w-a"), data={"v": "1"}))
    start = a.metadata.resource_version
    v1.create_namespaced_config_map("default", client.V1ConfigMap(metadata=meta("w-b"), data={}))
    v1.patch_namespaced_config_map("w-a", "default", {"data": {"v": "2"}})
    v1.delete_namespaced_config_map("w-b", "default")

    w = watch.Watch()
    events = collect(w, v1.list_namespaced_config_map, 3, namespace="default", resource_version=start)
    assert [(t, n) for t, n, _ in events] == [("ADDED", "w-b"), ("MODIFIED", "w-a"), ("DELETED", "w-b")], events
    revs = [rv for _, _, rv in events]
    assert revs == sorted(revs) and len(set(revs)) == 3 and revs[0] > int(start)

    # Resume from where the last watch stopped: only what came after.
    v1.create_namespaced_config_map("default", client.V1ConfigMap(metadata=meta("w-c"), data={}))
    resumed = collect(w, v1.list_namespaced_config_map, 1, namespace="default", resource_version=str(revs[-1]))
    assert [(t, n) for t, n, _ in resumed] == [("ADDED", "w-c")], resumed
    assert resumed[0][2] > revs[-1]


def watch_expired(url: str, rv: str) -> bool:
    """True when a raw watch from `rv` answers 410 Gone (HTTP or ERROR event)."""
    host, port = split_url(url)
    conn = http.client.HTTPConnection(host, port, timeout=10)
    try:
        conn.request("GET", f"{cm_path()}?watch=1&resourceVersion={rv}&timeoutSeconds=1")
        resp = conn.getresponse()
        if resp.status == 410:
            return True
        line = resp.readline()
        if not line:
            return False
        ev = json.loads(line)
        return ev["type"] == "ERROR" and ev["object"]["code"] == 410
    finally:
        conn.close()


def test_watch_after_compaction_gets_410_then_relists(orchd_factory):
    o = orchd_factory(SHORT_HISTORY)
    api = api_client(o.kubeconfig)
    try:
        v1 = client.CoreV1Api(api)
        first = v1.create_namespaced_config_map("default", client.V1ConfigMap(metadata=meta("r-0"), data={"v": "0"}))
        old_rv = first.metadata.resource_version
        for i in range(1, 31):
            v1.create_namespaced_config_map("default", client.V1ConfigMap(metadata=meta(f"r-{i}"), data={"v": "0"}))
            v1.patch_namespaced_config_map(f"r-{i}", "default", {"data": {"v": str(i)}})
        deadline = time.monotonic() + 10
        while not watch_expired(o.url, old_rv):
            assert time.monotonic() < deadline, "history was not compacted within 10 s"
            time.sleep(0.1)

        # The client retries an expired watch once, then raises the 410.
        w = watch.Watch()
        with pytest.raises(ApiException) as e:
            for _ in w.stream(v1.list_namespaced_config_map, namespace="default", resource_version=old_rv,
                              _request_timeout=20):
                pass
        assert e.value.status == 410

        # Relist, then watch from the list's resourceVersion.
        listed = v1.list_namespaced_config_map("default")
        state = {cm.metadata.name: cm.data["v"] for cm in listed.items}
        assert state == {"r-0": "0", **{f"r-{i}": str(i) for i in range(1, 31)}}
        rv = listed.metadata.resource_version
        assert int(rv) > int(old_rv)

        def later():
            time.sleep(0.3)
            v1.create_namespaced_config_map("default", client.V1ConfigMap(metadata=meta("after"), data={}))

        t = threading.Thread(target=later)
        t.start()
        events = collect(w, v1.list_namespaced_config_map, 1, namespace="default", resource_version=rv)
        t.join()
        assert [(t_, n) for t_, n, _ in events] == [("ADDED", "after")], events
    finally:
        api.close()


def test_list_with_limit_and_continue(api):
    v1 = client.CoreV1Api(api)
    for i in range(7):
        v1.create_namespaced_config_map("default", client.V1ConfigMap(metadata=meta(f"page-{i}"), data={}))
    names, token, pages = [], None, 0
    while True:
        page = v1.list_namespaced_config_map("default", limit=3, _continue=token)
        pages += 1
        assert len(page.items) <= 3
        names += [i.metadata.name for i in page.items]
        token = page.metadata._continue
        if not token:
            break
    assert pages == 3 and sorted(names) == [f"page-{i}" for i in range(7)], (pages, names)


def test_raw_request_roundtrip_matches_client(api, cluster):
    """The client's view and the raw HTTP view agree."""
    v1 = client.CoreV1Api(api)
    v1.create_namespaced_config_map("default", client.V1ConfigMap(metadata=meta("same"), data={"k": "v"}))
    raw = request(cluster.url, "GET", cm_path(name="same")).json()
    typed = v1.read_namespaced_config_map("same", "default")
    assert raw["metadata"]["resourceVersion"] == typed.metadata.resource_version
    assert raw["data"] == typed.data == {"k": "v"}
