"""Writing a scheduler: subclass :class:`Scheduler` and export it::

    from orchd_sdk.scheduler import Scheduler, bind, unschedulable, export

    class MostFreeCpu(Scheduler):
        name = "most-free-cpu"          # pods opt in with spec.schedulerName

        def schedule(self, pod, nodes):
            fits = [n for n in nodes if n.ready and n.fits(pod)]
            if not fits:
                return unschedulable([(n.name, "Insufficient cpu") for n in nodes])
            return bind(max(fits, key=lambda n: n.free().milli_cpu).name)

    WitWorld = export(MostFreeCpu)

As in the Rust SDK, the host feeds the component changes to nodes and
placed pods; the SDK keeps them in a :class:`Cluster` with what is requested
on each node added up, and ``schedule`` is called once per pending pod with
every node. A pod it binds counts on its node at once, for the next call.
"""

from typing import Dict, List, Optional

from wit_world.imports import scheduling_types as _wit

Resources = _wit.Resources
PodInfo = _wit.PodInfo


def labels(record) -> Dict[str, str]:
    """The labels of a generated record (pod, node, placed pod) as a dict."""
    return {label.key: label.value for label in record.labels}


def _add(a, b):
    return Resources(milli_cpu=a.milli_cpu + b.milli_cpu,
                     memory_bytes=a.memory_bytes + b.memory_bytes,
                     pods=a.pods + b.pods)


def _sub(a, b):
    return Resources(milli_cpu=max(0, a.milli_cpu - b.milli_cpu),
                     memory_bytes=max(0, a.memory_bytes - b.memory_bytes),
                     pods=max(0, a.pods - b.pods))


def fits_in(requests, free) -> bool:
    """Whether every amount of ``requests`` fits in ``free``."""
    return (requests.milli_cpu <= free.milli_cpu and requests.memory_bytes <= free.memory_bytes
            and requests.pods <= free.pods)


class NodeInfo:
    """A node and what is placed on it, kept up to date by :class:`Cluster`."""

    def __init__(self, node):
        self.name: str = node.name
        self.pods: list = []
        self.set(node)
        self.add_up()

    def set(self, node) -> None:
        self.labels: Dict[str, str] = labels(node)
        self.allocatable = node.allocatable
        self.taints = node.taints
        self.unschedulable: bool = node.unschedulable
        self.ready: bool = node.ready

    def add_up(self) -> None:
        requested = Resources(milli_cpu=0, memory_bytes=0, pods=0)
        ports = set()
        for p in self.pods:
            requested = _add(requested, p.requests)
            ports.update(p.host_ports)
        self.requested = requested
        self.used_host_ports = sorted(ports)

    def free(self):
        """Allocatable minus what is requested on the node."""
        return _sub(self.allocatable, self.requested)

    def fits(self, pod) -> bool:
        """Whether ``pod``'s requests fit in what is free (at least one pod)."""
        r = pod.requests
        return fits_in(Resources(milli_cpu=r.milli_cpu, memory_bytes=r.memory_bytes,
                                 pods=max(1, r.pods)), self.free())


class Cluster:
    """The scheduler's view: every node with the pods counted on it. A pod on
    a node not known (yet, or any more) waits under that name."""

    def __init__(self):
        self.nodes: Dict[str, NodeInfo] = {}
        self.placements: Dict[str, str] = {}
        self.waiting: Dict[str, list] = {}

    def apply(self, change) -> None:
        """Applies one ``cluster-change`` from the host."""
        if isinstance(change, _wit.ClusterChange_NodeSet):
            node = change.value
            current = self.nodes.get(node.name)
            if current is not None:
                current.set(node)
            else:
                info = NodeInfo(node)
                info.pods = self.waiting.pop(node.name, [])
                info.add_up()
                self.nodes[node.name] = info
        elif isinstance(change, _wit.ClusterChange_NodeRemoved):
            node = self.nodes.pop(change.value, None)
            if node is not None and node.pods:
                self.waiting[node.name] = node.pods
        elif isinstance(change, _wit.ClusterChange_PodPlaced):
            self.place(change.value)
        elif isinstance(change, _wit.ClusterChange_PodRemoved):
            self.remove_pod(change.value)

    def place(self, pod) -> None:
        """Counts ``pod`` (a placed-pod record) on its node."""
        self.remove_pod(pod.key)
        self.placements[pod.key] = pod.node
        node = self.nodes.get(pod.node)
        if node is None:
            self.waiting.setdefault(pod.node, []).append(pod)
        else:
            node.pods.append(pod)
            node.add_up()

    def remove_pod(self, key: str) -> None:
        """Stops counting pod ``key`` (``namespace/name``)."""
        name = self.placements.pop(key, None)
        if name is None:
            return
        node = self.nodes.get(name)
        if node is not None:
            node.pods = [p for p in node.pods if p.key != key]
            node.add_up()
        else:
            rest = [p for p in self.waiting.get(name, []) if p.key != key]
            if rest:
                self.waiting[name] = rest
            else:
                self.waiting.pop(name, None)

    def placement(self, key: str) -> Optional[str]:
        """The node name pod ``key`` is counted on."""
        return self.placements.get(key)

    def decide(self, pods, schedule) -> list:
        """One decision per pod; a bound pod counts on its node at once."""
        decisions = []
        nodes = list(self.nodes.values())
        for pod in pods:
            decision = schedule(pod, nodes)
            if isinstance(decision, _wit.Decision_Bind):
                r = pod.requests
                self.place(_wit.PlacedPod(
                    key=f"{pod.namespace}/{pod.name}", node=decision.value,
                    namespace=pod.namespace, labels=pod.labels, owner_uid=pod.owner_uid,
                    requests=Resources(milli_cpu=r.milli_cpu, memory_bytes=r.memory_bytes,
                                       pods=max(1, r.pods)),
                    host_ports=pod.host_ports))
            decisions.append(decision)
        return decisions


def bind(node: str):
    """Bind the pod to ``node``."""
    return _wit.Decision_Bind(node)


def unschedulable(rejections: List[tuple]):
    """No node fits: ``(node, reason)`` pairs, reasons in Kubernetes' words
    (``Insufficient cpu``) so the host groups them as users expect."""
    return _wit.Decision_Unschedulable([_wit.Rejection(node=n, reason=r) for n, r in rejections])


class Scheduler:
    """A scheduler plugin: set ``name`` and override ``schedule``."""

    #: The ``spec.schedulerName`` this plugin serves.
    name = "default-scheduler"

    def schedule(self, pod, nodes: List[NodeInfo]):
        """Decides where ``pod`` (a pod-info record) goes among ``nodes``."""
        raise NotImplementedError


def export(cls):
    """The ``WitWorld`` class componentize-py exports, serving ``cls``."""
    plugin = cls()
    state = {"cluster": Cluster()}

    class WitWorld:
        def scheduler_name(self) -> str:
            return plugin.name

        def update(self, changes, reset: bool) -> None:
            if reset:
                state["cluster"] = Cluster()
            cluster = state["cluster"]
            for change in changes:
                cluster.apply(change)

        def schedule(self, pods):
            return state["cluster"].decide(pods, plugin.schedule)

    WitWorld.cluster = staticmethod(lambda: state["cluster"])
    return WitWorld
