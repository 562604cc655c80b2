from types import SimpleNamespace as R

import logic


def res(cpu, mem=1 << 30, pods=10):
    return R(milli_cpu=cpu, memory_bytes=mem, pods=pods)


class Node:
    def __init__(self, name, zone, cpu=4000, pods=(), taints=(), unschedulable=False):
        self.name, self.labels = name, {logic.ZONE_LABEL: zone} if zone else {}
        self.pods, self.taints = list(pods), list(taints)
        self.unschedulable, self.ready = unschedulable, True
        self.cpu = cpu

    def free(self):
        used = sum(p.requests.milli_cpu for p in self.pods)
        return res(self.cpu - used, pods=10 - len(self.pods))


def pod(owner="rs1", cpu=100, tolerations=(), selector=()):
    return R(requests=res(cpu, 0, 1), owner_uid=owner, tolerations=list(tolerations),
             node_selector=list(selector))


def placed(owner, cpu=100):
    return R(owner_uid=owner, requests=res(cpu, 0, 1))


def test_follows_its_siblings_zone_then_the_fullest_zone():
    nodes = [Node("a1", "a"), Node("b1", "b", pods=[placed("other")]), Node("c1", "c", pods=[placed("rs1")])]
    assert logic.choose(pod(), nodes) == ("c1", [])
    # No sibling anywhere: the zone with most pods.
    assert logic.choose(pod(owner="new"), nodes)[0] in ("b1", "c1")
    nodes[1].pods.append(placed("other"))
    assert logic.choose(pod(owner="new"), nodes)[0] == "b1"


def test_packs_within_the_zone_and_spills_when_full():
    nodes = [Node("a1", "a", cpu=1000, pods=[placed("rs1", 900)]), Node("a2", "a", cpu=1000), Node("b1", "b")]
    # a1 has least free but cannot fit 200m: a2 in the same zone.
    assert logic.choose(pod(cpu=200), nodes)[0] == "a2"
    assert logic.choose(pod(cpu=50), nodes)[0] == "a1"
    assert logic.choose(pod(cpu=2000), nodes)[0] == "b1"


def test_rejects_with_kubernetes_reasons():
    taint = R(key="gpu", value="yes", effect=R(name="NO_SCHEDULE"))
    nodes = [Node("a1", "a", cpu=100), Node("b1", "b", taints=[taint]), Node("c1", "c", unschedulable=True)]
    node, rejections = logic.choose(pod(cpu=500), nodes)
    assert node is None
    assert dict(rejections) == {"a1": "Insufficient cpu", "b1": "node(s) had untolerated taint {gpu: yes}",
                                "c1": "node(s) were unschedulable"}
    tol = R(key="gpu", operator=R(name="EQUAL"), value="yes", effect=None)
    assert logic.choose(pod(cpu=500, tolerations=[tol]), nodes)[0] == "b1"
