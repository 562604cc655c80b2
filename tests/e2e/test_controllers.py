"""Controller plugins end to end: the serviceaccount controller orchd
ships (plugins/serviceaccount, a Wasm component) keeps a `default`
ServiceAccount in every namespace, and a controller's capabilities are
enforced on every host call it makes."""

from __future__ import annotations

import json

from conftest import start_orchd
from helpers import Cluster, plugin_path, run_orchd, wait_until

PLUGINS = "/apis/orchd.dev/v1/plugins"


def status(c: Cluster, name: str) -> dict:
    return c.get(f"{PLUGINS}/{name}").get("status") or {}


def account_uid(c: Cluster, namespace: str) -> str | None:
    r = c.http("GET", f"/api/v1/namespaces/{namespace}/serviceaccounts/default")
    return r.json()["metadata"]["uid"] if r.status == 200 else None


def test_every_namespace_gets_a_default_service_account(cluster):
    wait_until("the serviceaccount controller", lambda: status(cluster, "serviceaccount").get("phase") == "Active")
    for ns in ("default", "kube-system"):
        wait_until(f"the default account in {ns}", lambda ns=ns: account_uid(cluster, ns))
    cluster.kubectl("create", "namespace", "shop")
    first = wait_until("the default account in shop", lambda: account_uid(cluster, "shop"))
    out = cluster.kubectl("get", "serviceaccounts", "-n", "shop").stdout
    assert "default" in out, out
    # Deleted, it comes back (a new object).
    cluster.kubectl("delete", "serviceaccount", "default", "-n", "shop")
    again = wait_until("the account back", lambda: account_uid(cluster, "shop"))
    assert again != first
    out = cluster.kubectl("get", "plugins").stdout
    assert "serviceaccount" in out and "controller" in out, out


def test_controller_capabilities_are_enforced_on_every_host_call(tmp_path):
    c = Cluster(start_orchd(tmp_path, ["--no-default-plugins"]), tmp_path)
    try:
        component = str(plugin_path("serviceaccount-controller.wasm"))
        # No capabilities at all: it may not even watch what it reconciles.
        p = run_orchd(c, "plugin", "install", component, "--name", "sa-blind", check=False)
        assert p.returncode != 0
        line = p.stderr.strip()
        assert len(line.splitlines()) == 1 and "may not read namespaces" in line, p.stderr
        assert status(c, "sa-blind")["phase"] == "Failed"

        # Read but no write: it runs, and each create it tries is refused
        # by the host before reaching the API.
        run_orchd(c, "plugin", "install", component, "--name", "sa-readonly",
                  "--read", "namespaces,serviceaccounts")
        c.kubectl("create", "namespace", "locked")
        wait_until("the refusal recorded",
                   lambda: "may not write serviceaccounts" in (status(c, "sa-readonly").get("lastError") or ""))
        assert account_uid(c, "locked") is None
        events = [e for e in c.get("/api/v1/namespaces/default/events")["items"]
                  if e["involvedObject"].get("name") == "sa-readonly"]
        assert any(e["reason"] == "ReconcileFailed" for e in events), events

        # Granting write through kubectl reloads it with the new
        # capabilities, and the retried work item now succeeds.
        caps = {"spec": {"capabilities": {"read": ["namespaces", "serviceaccounts"],
                                          "write": ["serviceaccounts"]}}}
        c.kubectl("patch", "plugin", "sa-readonly", "--type", "merge", "-p", json.dumps(caps))
        wait_until("the account created", lambda: account_uid(c, "locked"), timeout=60)
        assert status(c, "sa-readonly")["phase"] == "Active"
    finally:
        code = c.orchd.stop()
        print(c.orchd.log())
        assert code == 0
