"""Writing a controller: subclass :class:`Controller` and export it::

    from orchd_sdk.controller import Controller, ControllerSpec, done, export

    class Labeler(Controller):
        def setup(self, config):
            return ControllerSpec("configmaps")

        def reconcile(self, key):
            ...
            return done()

    WitWorld = export(Labeler)

The host runs the informers and the workqueue: it calls ``setup`` once to
learn what to watch, then ``reconcile`` with one key at a time (never the
same key twice at once). A reconcile reads the world through
:mod:`orchd_sdk.objects`, writes what brings it in line, and returns; an
exception is logged by the host and the key retried with backoff.
"""

import traceback

from componentize_py_types import Err
from wit_world.imports import controller_types as _wit

from .objects import ApiError, ObjectRef  # noqa: F401 (re-exported)


class ControllerSpec:
    """What a controller reconciles and watches (builder, as in Rust)."""

    def __init__(self, primary: str, concurrency: int = 1):
        self.primary = primary
        self.watches = []
        self.concurrency = max(1, int(concurrency))

    def _add(self, resource: str, map_to: str) -> "ControllerSpec":
        self.watches.append((resource, map_to))
        return self

    def watch(self, resource: str) -> "ControllerSpec":
        """Reconcile a changed object of ``resource`` under its own key."""
        return self._add(resource, "self")

    def watch_owned(self, resource: str, owner_kind: str) -> "ControllerSpec":
        """Reconcile the controlling owner of kind ``owner_kind``."""
        return self._add(resource, f"owner:{owner_kind}")

    def watch_selected(self, resource: str) -> "ControllerSpec":
        """Reconcile the primaries whose ``spec.selector`` matches it."""
        return self._add(resource, "selector")

    def watch_all(self, resource: str) -> "ControllerSpec":
        """Reconcile every primary when an object of ``resource`` changes."""
        return self._add(resource, "all")

    def watch_namespace(self, resource: str) -> "ControllerSpec":
        """Reconcile the object's namespace (for a primary ``namespaces``)."""
        return self._add(resource, "namespace")

    def read(self, resource: str) -> "ControllerSpec":
        """Keep ``resource`` in the host's cache for reads, queuing nothing."""
        return self._add(resource, "none")

    def to_wit(self) -> "_wit.ControllerSpec":
        """The generated record the host receives."""
        return _wit.ControllerSpec(
            primary=self.primary,
            watches=[_wit.Watch(resource=r, map_to=m) for r, m in self.watches],
            concurrency=self.concurrency,
        )


def done() -> "_wit.ReconcileResult":
    """Done until something changes."""
    return _wit.ReconcileResult_Done()


def requeue_after(seconds: float) -> "_wit.ReconcileResult":
    """Reconcile the same key again after ``seconds``."""
    return _wit.ReconcileResult_RequeueAfter(max(0, int(seconds * 1000)))


class Controller:
    """A controller plugin: override ``setup`` and ``reconcile``."""

    def setup(self, config: str) -> ControllerSpec:
        """Called once with the plugin's configuration text: what to watch."""
        raise NotImplementedError

    def reconcile(self, key: ObjectRef):
        """Brings the world in line with the primary object at ``key`` (which
        may no longer exist). Returns ``done()`` or ``requeue_after(s)``;
        ``None`` means done."""
        raise NotImplementedError


def _message(e: BaseException) -> str:
    if isinstance(e, ApiError):
        return str(e)
    # The last frames say where it failed; the host shows this text.
    tb = traceback.format_exception(type(e), e, e.__traceback__, limit=-3)
    return "".join(tb).strip()


def export(cls):
    """The ``WitWorld`` class componentize-py exports, serving ``cls``."""
    plugin = cls()

    class WitWorld:
        def setup(self, config: str):
            try:
                spec = plugin.setup(config)
            except Exception as e:
                raise Err(_message(e))
            if isinstance(spec, str):
                spec = ControllerSpec(spec)
            return spec.to_wit()

        def reconcile(self, key):
            try:
                result = plugin.reconcile(key)
            except Exception as e:
                raise Err(_message(e))
            return done() if result is None else result

    return WitWorld
