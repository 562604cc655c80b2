"""Bad input over raw HTTP: each request gets the Kubernetes `Status` with
the right code and reason, and nothing is written (the store's revision,
seen as a list's resourceVersion, does not move)."""

from __future__ import annotations

import pytest

from conftest import serve, start_orchd
from helpers import Response, cm_path, configmap, current_revision


@pytest.fixture
def cluster(tmp_path):
    """conftest's `cluster` without the default plugins: these tests check
    that the store's revision does not move, and the serviceaccount
    controller and the scheduler write on their own."""
    yield from serve(start_orchd(tmp_path, ["--no-default-plugins"]), tmp_path)


def assert_status(r: Response, code: int, reason: str) -> dict:
    assert r.status == code, r
    assert r.headers.get("Content-Type", "").startswith("application/json"), r.headers
    s = r.json()
    assert (s.get("apiVersion"), s.get("kind")) == ("v1", "Status"), s
    assert s["status"] == "Failure" and s["code"] == code and s["reason"] == reason, s
    assert isinstance(s.get("message"), str) and s["message"], s
    return s


@pytest.fixture
def nothing_written(cluster):
    """Asserts at the end of the test that the store did not change, and
    that the server still answers (no panic)."""
    before = current_revision(cluster.url)
    yield
    assert current_revision(cluster.url) == before, "a rejected request changed the store"
    assert cluster.status_of("/readyz") == 200


def names(cluster, ns="default") -> list[str]:
    return [i["metadata"]["name"] for i in cluster.get(cm_path(ns))["items"]]


def test_malformed_json_is_400(cluster, nothing_written):
    r = cluster.http("POST", cm_path(), b'{"apiVersion":"v1","kind":"ConfigMap","metadata":{"name":"bad"')
    assert_status(r, 400, "BadRequest")
    assert names(cluster) == []


def test_malformed_yaml_is_400(cluster, nothing_written):
    body = b"apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: bad\n  labels: [unclosed\ndata: {a: 1\n"
    r = cluster.http("POST", cm_path(), body, content_type="application/yaml")
    assert_status(r, 400, "BadRequest")
    assert names(cluster) == []


def test_valid_yaml_body_is_accepted(cluster):
    """The counterpart of the test above: YAML bodies are served at all."""
    body = b"apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: good\ndata:\n  a: '1'\n"
    r = cluster.http("POST", cm_path(), body, content_type="application/yaml")
    assert r.status == 201, r
    assert cluster.get(cm_path(name="good"))["data"] == {"a": "1"}


@pytest.mark.parametrize("api_version,kind", [("v1", "Secret"), ("apps/v1", "ConfigMap"), ("v2", "ConfigMap")])
def test_wrong_api_version_or_kind_is_400(cluster, nothing_written, api_version, kind):
    body = {"apiVersion": api_version, "kind": kind, "metadata": {"name": "bad"}, "data": {}}
    r = cluster.http("POST", cm_path(), body)
    assert_status(r, 400, "BadRequest")
    assert names(cluster) == []


def test_unknown_field_strict_is_400(cluster, nothing_written):
    body = {**configmap("bad", {"a": "1"}), "bogus": 1}
    r = cluster.http("POST", cm_path() + "?fieldValidation=Strict", body)
    s = assert_status(r, 400, "BadRequest")
    assert 'unknown field "bogus"' in s["message"], s
    assert names(cluster) == []


def test_unknown_nested_field_strict_is_400(cluster, nothing_written):
    body = configmap("bad")
    body["metadata"]["lables"] = {"typo": "yes"}
    r = cluster.http("POST", cm_path() + "?fieldValidation=Strict", body)
    s = assert_status(r, 400, "BadRequest")
    assert "lables" in s["message"], s


def test_unknown_field_warn_writes_with_warning(cluster):
    body = {**configmap("warned", {"a": "1"}), "bogus": 1}
    r = cluster.http("POST", cm_path() + "?fieldValidation=Warn", body)
    assert r.status == 201, r
    # `299 - "unknown field \"bogus\""`: a quoted-string, quotes escaped
    assert any('unknown field "bogus"' in w.replace('\\"', '"') for w in r.warnings()), r.headers.items()
    stored = cluster.get(cm_path(name="warned"))
    assert stored["data"] == {"a": "1"} and "bogus" not in stored


def test_invalid_field_validation_value_is_400(cluster, nothing_written):
    r = cluster.http("POST", cm_path() + "?fieldValidation=Loose", configmap("bad"))
    assert_status(r, 400, "BadRequest")


def test_huge_body_is_413(cluster, nothing_written):
    body = configmap("huge", {"blob": "x" * (3 * 1024 * 1024 + 512 * 1024)})
    r = cluster.http("POST", cm_path(), body)
    assert_status(r, 413, "RequestEntityTooLarge")
    assert names(cluster) == []


def test_stale_resource_version_put_is_409(cluster):
    created = cluster.create(cm_path(), configmap("c", {"v": "1"}))
    fresh = dict(created, data={"v": "2"})
    r = cluster.http("PUT", cm_path(name="c"), fresh)
    assert r.status == 200, r
    current = r.json()
    before = current_revision(cluster.url)

    stale = dict(created, data={"v": "stale"})  # the first resourceVersion
    r = cluster.http("PUT", cm_path(name="c"), stale)
    s = assert_status(r, 409, "Conflict")
    assert s["details"]["name"] == "c", s
    got = cluster.get(cm_path(name="c"))
    assert got["data"] == {"v": "2"} and got["metadata"]["resourceVersion"] == current["metadata"]["resourceVersion"]
    assert current_revision(cluster.url) == before


def test_create_existing_is_409_already_exists(cluster):
    cluster.create(cm_path(), configmap("dup", {"v": "1"}))
    before = current_revision(cluster.url)
    r = cluster.http("POST", cm_path(), configmap("dup", {"v": "2"}))
    s = assert_status(r, 409, "AlreadyExists")
    assert s["details"]["name"] == "dup", s
    assert cluster.get(cm_path(name="dup"))["data"] == {"v": "1"}
    assert current_revision(cluster.url) == before


@pytest.mark.parametrize("name", ["Bad_Name", "-leading-dash", "x" * 254])
def test_invalid_name_is_422_with_causes(cluster, nothing_written, name):
    r = cluster.http("POST", cm_path(), configmap(name))
    s = assert_status(r, 422, "Invalid")
    details = s["details"]
    assert details["kind"] == "ConfigMap" and details["name"] == name, s
    assert any(c.get("field") == "metadata.name" for c in details["causes"]), s


def test_invalid_spec_is_422_with_causes(cluster, nothing_written):
    dep = {"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": "web"},
           "spec": {"replicas": 1, "selector": {"matchLabels": {"app": "web"}},
                    "template": {"metadata": {"labels": {"app": "web"}},
                                 "spec": {"containers": [{"name": "c"}]}}}}  # no image
    r = cluster.http("POST", "/apis/apps/v1/namespaces/default/deployments", dep)
    s = assert_status(r, 422, "Invalid")
    assert any("image" in c.get("field", "") for c in s["details"]["causes"]), s


def test_wrong_type_for_field_is_rejected(cluster, nothing_written):
    body = configmap("bad")
    body["data"] = {"a": 1}  # data values must be strings
    assert_status(cluster.http("POST", cm_path(), body), 400, "BadRequest")
    assert names(cluster) == []


def test_create_in_missing_namespace_is_404(cluster, nothing_written):
    r = cluster.http("POST", cm_path("nope"), configmap("c"))
    s = assert_status(r, 404, "NotFound")
    assert s["details"]["name"] == "nope" and s["details"]["kind"] == "namespaces", s
    assert cluster.get("/api/v1/configmaps")["items"] == []


def test_get_missing_object_is_404(cluster, nothing_written):
    s = assert_status(cluster.http("GET", cm_path(name="ghost")), 404, "NotFound")
    assert (s["details"]["name"], s["details"]["kind"]) == ("ghost", "configmaps"), s


def test_unsupported_content_type_is_415(cluster, nothing_written):
    r = cluster.http("POST", cm_path(), b"name=c", content_type="text/plain")
    assert_status(r, 415, "UnsupportedMediaType")
    assert names(cluster) == []


def test_patch_with_unsupported_content_type_is_415(cluster):
    cluster.create(cm_path(), configmap("c", {"v": "1"}))
    before = current_revision(cluster.url)
    r = cluster.http("PATCH", cm_path(name="c"), {"data": {"v": "2"}}, content_type="application/json")
    assert_status(r, 415, "UnsupportedMediaType")
    assert cluster.get(cm_path(name="c"))["data"] == {"v": "1"}
    assert current_revision(cluster.url) == before


def test_name_mismatch_on_put_is_400(cluster):
    created = cluster.create(cm_path(), configmap("c", {"v": "1"}))
    before = current_revision(cluster.url)
    other = dict(created, metadata=dict(created["metadata"], name="d"))
    r = cluster.http("PUT", cm_path(name="c"), other)
    assert_status(r, 400, "BadRequest")
    assert current_revision(cluster.url) == before
    assert cluster.status_of(cm_path(name="d")) == 404


def test_unknown_resource_is_404(cluster, nothing_written):
    r = cluster.http("GET", "/api/v1/namespaces/default/widgets")
    assert_status(r, 404, "NotFound")
