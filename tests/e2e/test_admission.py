"""Admission plugins end to end, with the real kubectl: a mutating policy
(the Rust example default-resources) fills pods' resource requests; a
validating one (the Rust example required-labels) denies writes and kubectl
prints its message; a policy that never answers follows its failure policy
(Ignore lets requests through, Fail refuses them) and an Event on the Plugin
says why; and a new revision of a validating policy is installed while
1,000 API writes are in flight: each is judged by the old or the new
revision, none fails with a 5xx, and those sent after the switch are judged
by the new one.

The components come from `cargo xtask test` (target/e2e-plugins): the two
examples and builds of tests/plugins/test-admission (judge-v1, judge-v2,
looping-admission, trapping-admission).
"""

from __future__ import annotations

import http.client
import threading
import time

from helpers import Cluster, configmap, cm_path, plugin_path, request, run_orchd, split_url, wait_until

PLUGINS = "/apis/orchd.dev/v1/plugins"


def install(c: Cluster, file: str, *args: str) -> str:
    p = run_orchd(c, "plugin", "install", str(plugin_path(file)), *args)
    return p.stdout


def plugin_events(c: Cluster, name: str, reason: str) -> list[dict]:
    events = c.kubectl_json("get", "events", "-A")["items"]
    return [e for e in events
            if e["involvedObject"].get("name") == name and e["involvedObject"].get("kind") == "Plugin"
            and e.get("reason") == reason]


POD_WITHOUT_REQUESTS = """
apiVersion: v1
kind: Pod
metadata:
  name: {name}
  labels: {labels}
spec:
  containers:
  - name: app
    image: nginx
  - name: sidecar
    image: busybox
    resources:
      requests:
        cpu: 250m
"""


def test_mutating_policy_fills_missing_requests(cluster):
    c = cluster
    out = install(c, "default-resources.wasm", "--type", "Mutating",
                  "--resources", "pods", "--operations", "CREATE,UPDATE")
    assert "admission plugin" in out, out
    spec = c.kubectl_json("get", "plugins.orchd.dev", "default-resources")["spec"]["admission"]
    assert spec["type"] == "Mutating" and spec["rules"][0]["resources"] == ["pods"], spec

    applied = c.kubectl_apply_text(POD_WITHOUT_REQUESTS.format(name="plain", labels="{}"))
    # The plugin's warnings reach kubectl through the Warning header.
    assert 'default-resources: container "app" requests cpu 100m by default' in applied.stderr, applied.stderr
    pod = c.kubectl_json("get", "pod", "plain")
    app, sidecar = pod["spec"]["containers"]
    assert app["resources"]["requests"] == {"cpu": "100m", "memory": "128Mi"}, app
    # What the user set stays; only the missing memory request is added.
    assert sidecar["resources"]["requests"] == {"cpu": "250m", "memory": "128Mi"}, sidecar
    # The QoS class follows the patched requests.
    assert pod["status"]["qosClass"] == "Burstable", pod["status"]

    # Other resources are not reviewed: a ConfigMap is written as sent.
    c.kubectl("create", "configmap", "untouched", "--from-literal=a=b")
    assert c.kubectl_json("get", "configmap", "untouched")["data"] == {"a": "b"}


DEPLOYMENT = """
apiVersion: apps/v1
kind: Deployment
metadata:
  name: {name}
  labels: {labels}
spec:
  replicas: 0
  selector:
    matchLabels: {{app: {name}}}
  template:
    metadata:
      labels: {{app: {name}}}
    spec:
      containers:
      - name: app
        image: nginx
"""


def test_validating_policy_denies_with_its_message(cluster):
    c = cluster
    install(c, "required-labels.wasm", "--resources", "pods,deployments.apps", "--operations", "CREATE,UPDATE")

    denied = c.kubectl("apply", "-f", "-", input=POD_WITHOUT_REQUESTS.format(name="anonymous", labels="{}"),
                       check=False)
    assert denied.returncode != 0, denied.stdout
    assert ('admission webhook "required-labels" denied the request: '
            'pods "anonymous" is missing the required label "owner" (set metadata.labels.owner)') in denied.stderr, \
        denied.stderr
    assert c.kubectl("get", "pod", "anonymous", check=False).returncode != 0, "a denied pod must not be stored"

    denied = c.kubectl("apply", "-f", "-", input=DEPLOYMENT.format(name="web", labels="{tier: front}"), check=False)
    assert denied.returncode != 0
    assert 'deployments "web" is missing the required label "owner"' in denied.stderr, denied.stderr

    c.kubectl("apply", "-f", "-", input=POD_WITHOUT_REQUESTS.format(name="owned", labels="{owner: team-a}"))
    c.kubectl("apply", "-f", "-", input=DEPLOYMENT.format(name="web", labels="{owner: team-a}"))
    # Updates are reviewed too: taking the label away is denied.
    removed = c.kubectl("label", "pod", "owned", "owner-", check=False)
    assert removed.returncode != 0 and 'missing the required label "owner"' in removed.stderr, removed.stderr
    assert c.kubectl_json("get", "pod", "owned")["metadata"]["labels"] == {"owner": "team-a"}
    # Deletes are not in the plugin's operations.
    c.kubectl("delete", "pod", "owned", "--wait=false")

    # The raw answer is the Status Kubernetes gives for a webhook denial.
    r = request(c.url, "POST", "/api/v1/namespaces/default/pods",
                {"metadata": {"name": "raw"}, "spec": {"containers": [{"name": "a", "image": "x"}]}})
    assert r.status == 403, r
    status = r.json()
    assert status["kind"] == "Status" and status["code"] == 403 and "reason" not in status, status


def test_failure_policy_when_the_policy_never_answers(cluster):
    c = cluster
    install(c, "looping-admission.wasm", "--name", "slow", "--failure-policy", "Ignore",
            "--resources", "configmaps", "--operations", "CREATE", "--timeout-seconds", "1")

    # Ignore: the request goes through once the deadline stopped the plugin.
    started = time.monotonic()
    c.kubectl("create", "configmap", "let-through", "--from-literal=a=b")
    assert time.monotonic() - started >= 0.9, "the plugin must have been given its deadline"
    assert c.kubectl_json("get", "configmap", "let-through")["data"] == {"a": "b"}
    ignored = wait_until("an AdmissionFailed event for Ignore", lambda: [
        e for e in plugin_events(c, "slow", "AdmissionFailed")
        if "failurePolicy Ignore: the request was let through" in e["message"]])
    assert "exceeded its 1000 ms deadline in review" in ignored[0]["message"], ignored[0]
    assert ignored[0]["type"] == "Warning"
    status = c.kubectl_json("get", "plugins.orchd.dev", "slow")["status"]
    assert status["restarts"] >= 1 and "deadline" in status["lastError"], status

    # Fail: the same component, now failing closed, refuses the write.
    install(c, "looping-admission.wasm", "--name", "slow", "--failure-policy", "Fail",
            "--resources", "configmaps", "--operations", "CREATE", "--timeout-seconds", "1")
    refused = c.kubectl("create", "configmap", "refused", "--from-literal=a=b", check=False)
    assert refused.returncode != 0
    assert 'failed calling webhook "slow"' in refused.stderr and "deadline" in refused.stderr, refused.stderr
    assert c.kubectl("get", "configmap", "refused", check=False).returncode != 0
    wait_until("an AdmissionFailed event for Fail", lambda: [
        e for e in plugin_events(c, "slow", "AdmissionFailed")
        if "failurePolicy Fail: the request was refused" in e["message"]])

    # Writes the rules do not cover are not held up.
    c.kubectl("create", "namespace", "elsewhere")

    # Removing the plugin takes it out of the chain.
    run_orchd(c, "plugin", "remove", "slow")
    wait_until("creates pass again", lambda: request(
        c.url, "POST", cm_path(), configmap("after-removal")).status == 201, timeout=30)


def test_trapping_policy_is_restarted_and_follows_its_failure_policy(cluster):
    c = cluster
    install(c, "trapping-admission.wasm", "--name", "trappy", "--failure-policy", "Ignore",
            "--resources", "configmaps", "--operations", "CREATE")
    for i in range(3):
        c.kubectl("create", "configmap", f"through-{i}", "--from-literal=a=b")
    events = wait_until("an AdmissionFailed event about the trap", lambda: [
        e for e in plugin_events(c, "trappy", "AdmissionFailed") if "trapped in review" in e["message"]])
    assert "trapping on purpose" in events[0]["message"], events[0]
    assert "failurePolicy Ignore: the request was let through" in events[0]["message"], events[0]
    # The first two traps each discard an instance (the first restart is
    # immediate); the third create may come while it backs off, which
    # refuses the call without an instance to discard.
    status = wait_until("restarts counted", lambda: (
        s := c.kubectl_json("get", "plugins.orchd.dev", "trappy")["status"])["restarts"] >= 2 and s)
    assert status["phase"] == "Active", status


def wait_settled(c: Cluster, name: str) -> dict:
    """Waits until the plugin host has acted on the Plugin's latest spec."""
    def settled():
        p = c.kubectl_json("get", "plugins.orchd.dev", name)
        s = p.get("status", {})
        return s.get("observedGeneration") == p["metadata"]["generation"] and s.get("phase") == "Active" and p
    return wait_until(f"plugin {name} to run its latest spec", settled)


def test_namespace_and_object_selectors(cluster):
    c = cluster
    install(c, "required-labels.wasm", "--resources", "pods", "--operations", "CREATE")
    c.kubectl("create", "namespace", "strict")
    c.kubectl("label", "namespace", "strict", "policy=strict")
    c.kubectl("create", "namespace", "lax")
    c.kubectl("patch", "plugins.orchd.dev", "required-labels", "--type", "merge", "-p",
              '{"spec": {"admission": {"namespaceSelector": {"matchLabels": {"policy": "strict"}},'
              ' "objectSelector": {"matchExpressions": [{"key": "exempt", "operator": "DoesNotExist"}]}}}}')
    wait_settled(c, "required-labels")

    pod = POD_WITHOUT_REQUESTS.format(name="p", labels="{}")
    c.kubectl("apply", "-n", "lax", "-f", "-", input=pod)
    denied = c.kubectl("apply", "-n", "strict", "-f", "-", input=pod, check=False)
    assert denied.returncode != 0 and 'missing the required label "owner"' in denied.stderr, denied.stderr
    c.kubectl("apply", "-n", "strict", "-f", "-", input=POD_WITHOUT_REQUESTS.format(name="p", labels="{exempt: 'yes'}"))
    # Labelling the namespace brings it under the policy at once.
    c.kubectl("label", "namespace", "lax", "policy=strict")
    denied = c.kubectl("apply", "-n", "lax", "-f", "-", input=POD_WITHOUT_REQUESTS.format(name="q", labels="{}"),
                       check=False)
    assert denied.returncode != 0 and 'pods "q" is missing' in denied.stderr, denied.stderr


def test_mutating_then_validating(cluster):
    """Mutating plugins run before validating ones whatever their `order`
    (the validating plugin here has the lower one): a pod is patched, then
    judged; a denied one is not stored."""
    c = cluster
    install(c, "required-labels.wasm", "--resources", "pods", "--operations", "CREATE", "--order=-5")
    install(c, "default-resources.wasm", "--type", "Mutating", "--resources", "pods", "--operations", "CREATE",
            "--order", "10")
    denied = c.kubectl("apply", "-f", "-", input=POD_WITHOUT_REQUESTS.format(name="unowned", labels="{}"), check=False)
    assert denied.returncode != 0
    assert 'admission webhook "required-labels" denied the request' in denied.stderr, denied.stderr
    assert c.kubectl("get", "pod", "unowned", check=False).returncode != 0
    ok = c.kubectl("apply", "-f", "-", input=POD_WITHOUT_REQUESTS.format(name="patched", labels="{owner: me}"))
    assert "default-resources: container" in ok.stderr, ok.stderr
    assert c.kubectl_json("get", "pod", "patched")["spec"]["containers"][0]["resources"]["requests"]["cpu"] == "100m"


def test_hot_reload_under_1000_requests_in_flight(cluster):
    c = cluster
    install(c, "judge-v1.wasm", "--name", "judge", "--resources", "configmaps", "--operations", "CREATE")
    first = request(c.url, "POST", cm_path(), configmap("before"))
    assert first.status == 201 and "judged by v1" in " ".join(first.warnings()), (first, first.warnings())

    host, port = split_url(c.url)
    results: list[tuple[float, int, str, str]] = []
    lock = threading.Lock()
    switched_at: list[float] = []
    total = 1000

    def create(name: str) -> None:
        conn = http.client.HTTPConnection(host, port, timeout=60)
        sent = time.monotonic()
        try:
            r = request(c.url, "POST", cm_path(), configmap(name), conn=conn)
            answer = (sent, r.status, " ".join(r.warnings()), r.body.decode(errors="replace")[:300])
        except OSError as e:  # not answered at all: recorded, and fails the test below
            answer = (sent, 0, "", repr(e))
        finally:
            conn.close()
        with lock:
            results.append(answer)

    def swap() -> None:
        run_orchd(c, "plugin", "install", str(plugin_path("judge-v2.wasm")), "--name", "judge")
        switched_at.append(time.monotonic())

    # 1,000 threads each send creates one after the other, so 1,000 are in
    # flight all along; the new revision is installed meanwhile, and each
    # thread stops once it has sent one after the install returned.
    def worker(w: int) -> None:
        n = 0
        while True:
            after_switch = bool(switched_at)
            create(f"load-{w}-{n}")
            n += 1
            if after_switch:
                return
            if time.monotonic() - load_started > 120:
                return

    load_started = time.monotonic()
    threads = [threading.Thread(target=worker, args=(w,)) for w in range(total)]
    for t in threads:
        t.start()
    wait_until("a few hundred answers before the install", lambda: len(results) >= 300, timeout=60)
    swap()
    for t in threads:
        t.join(timeout=180)
    took = time.monotonic() - load_started
    assert switched_at, "the install of revision 2 did not finish"

    unanswered = [r for r in results if r[1] == 0]
    assert not unanswered, f"{len(unanswered)} requests got no answer: {unanswered[:3]}"
    server_errors = [r for r in results if r[1] >= 500]
    assert not server_errors, f"{len(server_errors)} requests failed with 5xx: {server_errors[:3]}"
    not_created = [r for r in results if r[1] != 201]
    assert not not_created, f"{len(not_created)} requests were not created: {not_created[:3]}"
    judged = {"v1": 0, "v2": 0}
    for _, _, warnings, _ in results:
        said = [j for j in judged if f"judged by {j}" in warnings]
        assert len(said) == 1, f"each request is judged by exactly one revision: {warnings!r}"
        judged[said[0]] += 1
    after = [r for r in results if r[0] > switched_at[0]]
    assert len(after) >= total
    assert all("judged by v2" in r[2] for r in after), \
        f"requests sent after the switch were judged by v1: {[r for r in after if 'v2' not in r[2]][:3]}"
    print(f"{len(results)} creates from {total} threads in {took:.1f} s; judged: {judged}, "
          f"sent after the switch: {len(after)}")
    assert judged["v1"] >= 300 and judged["v2"] >= total, judged

    # After the switch, both answers come from revision 2.
    allowed = request(c.url, "POST", cm_path(), configmap("after"))
    assert allowed.status == 201 and "judged by v2" in " ".join(allowed.warnings()), allowed
    # A server-side dry run is reviewed too (and allowed: no deny label).
    dry = c.kubectl("create", "configmap", "dry", "--from-literal=a=b", "--dry-run=server")
    assert "Warning: judged by v2" in dry.stderr, dry.stderr
    denied = c.kubectl("apply", "-f", "-", check=False, input=(
        "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: denied\n  labels: {deny: 'yes'}\n"))
    assert denied.returncode != 0
    assert 'admission webhook "judge" denied the request: judged by v2: configmap denied is labelled deny' \
        in denied.stderr, denied.stderr
    status = c.kubectl_json("get", "plugins.orchd.dev", "judge")["status"]
    assert status["phase"] == "Active" and status["activeRevision"] == 2, status
