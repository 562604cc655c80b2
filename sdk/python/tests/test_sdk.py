"""The SDK natively, against the bindings componentize-py generates from
wit/ (`componentize-py bindings`, run here: COMPONENTIZE_PY names it). Host
imports are not callable natively; the pure parts and the mapping to the
generated types are."""

import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[3]


@pytest.fixture(scope="module")
def world(request, tmp_path_factory):
    exe = os.environ.get("COMPONENTIZE_PY", "componentize-py")
    out = tmp_path_factory.mktemp(request.param)
    subprocess.run([exe, "-d", str(ROOT / "wit"), "-w", request.param, "bindings", str(out)], check=True)
    sys.path[:0] = [str(out), str(ROOT / "sdk" / "python")]
    for m in [m for m in sys.modules if m.split(".")[0] in ("wit_world", "orchd_sdk", "componentize_py_types")]:
        del sys.modules[m]
    yield request.param
    sys.path.remove(str(out))
    sys.path.remove(str(ROOT / "sdk" / "python"))


@pytest.mark.parametrize("world", ["scheduler"], indirect=True)
def test_scheduler_view_adds_up_and_counts_bound_pods_at_once(world):
    from wit_world.imports import scheduling_types as t
    from orchd_sdk.scheduler import bind, export, Scheduler, unschedulable

    def node(name, cpu):
        return t.Node(name=name, labels=[t.Label("zone", "a")], allocatable=t.Resources(cpu, 1 << 30, 10),
                      taints=[], unschedulable=False, ready=True)

    def placed(key, node_name, cpu):
        return t.PlacedPod(key=key, node=node_name, namespace="default", labels=[], owner_uid=None,
                           requests=t.Resources(cpu, 0, 1), host_ports=[80])

    def pod(name, cpu):
        return t.PodInfo(namespace="default", name=name, uid=name, labels=[], requests=t.Resources(cpu, 0, 0),
                         node_name=None, node_selector=[], required_node_affinity=[], preferred_node_affinity=[],
                         tolerations=[], host_ports=[], required_pod_affinity=[], required_pod_anti_affinity=[],
                         preferred_pod_affinity=[], preferred_pod_anti_affinity=[], owner_uid=None)

    class MostFree(Scheduler):
        name = "most-free"

        def schedule(self, p, nodes):
            fits = [n for n in nodes if n.fits(p)]
            if not fits:
                return unschedulable([(n.name, "Insufficient cpu") for n in nodes])
            return bind(max(fits, key=lambda n: (n.free().milli_cpu, n.name)).name)

    w = export(MostFree)()
    assert w.scheduler_name() == "most-free"
    # A pod on a node not known yet waits for it.
    w.update([t.ClusterChange_PodPlaced(placed("default/a", "n1", 500))], True)
    w.update([t.ClusterChange_NodeSet(node("n1", 1000)), t.ClusterChange_NodeSet(node("n2", 1000))], False)
    decisions = w.schedule([pod("b", 600), pod("c", 600), pod("d", 600)])
    assert decisions[0] == t.Decision_Bind("n2")
    assert isinstance(decisions[1], t.Decision_Unschedulable)
    assert {r.node for r in decisions[1].value} == {"n1", "n2"}
    # Removing the first pod frees n1 for the next decision.
    w.update([t.ClusterChange_PodRemoved("default/a")], False)
    assert w.schedule([pod("e", 600)]) == [t.Decision_Bind("n1")]
    # A reset forgets everything.
    w.update([t.ClusterChange_NodeSet(node("n3", 100))], True)
    assert isinstance(w.schedule([pod("f", 600)])[0], t.Decision_Unschedulable)


@pytest.mark.parametrize("world", ["controller"], indirect=True)
def test_controller_spec_results_and_errors_map_to_the_generated_types(world):
    from componentize_py_types import Err
    from wit_world.imports import controller_types as t
    from orchd_sdk.controller import Controller, ControllerSpec, export, requeue_after

    class C(Controller):
        def setup(self, config):
            if config == "bad":
                raise ValueError("bad config")
            return ControllerSpec("deployments.apps").watch_owned("pods", "ReplicaSet").read("nodes")

        def reconcile(self, key):
            if key.name == "later":
                return requeue_after(1.5)
            if key.name == "boom":
                raise RuntimeError("it broke")
            return None

    w = export(C)()
    spec = w.setup("")
    assert spec == t.ControllerSpec("deployments.apps", [t.Watch("pods", "owner:ReplicaSet"), t.Watch("nodes", "none")], 1)
    with pytest.raises(Err, match="bad config"):
        w.setup("bad")
    from orchd_sdk.objects import ref
    assert w.reconcile(ref("deployments.apps", "default", "x")) == t.ReconcileResult_Done()
    assert w.reconcile(ref("deployments.apps", "default", "later")) == t.ReconcileResult_RequeueAfter(1500)
    with pytest.raises(Err) as e:
        w.reconcile(ref("deployments.apps", "default", "boom"))
    assert "RuntimeError: it broke" in e.value.value


@pytest.mark.parametrize("world", ["admission"], indirect=True)
def test_admission_parses_objects_and_encodes_patches(world):
    from wit_world.imports import admission_types as t
    from orchd_sdk.admission import Admission, allow, deny, export

    class P(Admission):
        def review(self, r):
            if r.object["metadata"].get("labels") is None:
                return deny("needs labels")
            return allow().with_patch([{"op": "add", "path": "/metadata/labels/x", "value": "y"}]).with_warning("w")

    w = export(P)()
    req = lambda obj: t.AdmissionRequest("u", "pods", None, "default", "p", t.Operation.CREATE, obj, None, "me", False)
    assert w.review(req('{"metadata": {}}')) == t.AdmissionResponse(False, "needs labels", None, [])
    ok = w.review(req('{"metadata": {"labels": {}}}'))
    assert ok.allowed and ok.warnings == ["w"] and '"path": "/metadata/labels/x"' in ok.patch


def test_selectors_match_as_kubernetes():
    sys.path.insert(0, str(ROOT / "sdk" / "python"))
    from orchd_sdk import meta
    sel = {"matchLabels": {"app": "web"}, "matchExpressions": [{"key": "tier", "operator": "In", "values": ["a", "b"]},
                                                               {"key": "canary", "operator": "DoesNotExist"}]}
    assert meta.selector_matches(sel, {"app": "web", "tier": "a"})
    assert not meta.selector_matches(sel, {"app": "web", "tier": "c"})
    assert not meta.selector_matches(sel, {"app": "web", "tier": "a", "canary": "1"})
    assert meta.selector_matches({}, {"any": "thing"})
    assert not meta.selector_matches(None, {"any": "thing"})
    assert meta.selector_string(sel) == "app=web,tier in (a,b),!canary"
