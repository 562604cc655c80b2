"""Object access for controllers, checked against the plugin's capabilities
on every call. Objects cross as JSON text; here they are ``dict``s.

Reads are served from the host's informer cache of the resources the
controller watches. A failed call raises :class:`ApiError`.
"""

import json
from typing import Any, Dict, List, Optional

from componentize_py_types import Err
from wit_world.imports import objects as _wit
from wit_world.imports import types as _types

#: Where an object lives: ``ObjectRef(resource, namespace, name)``, the
#: generated record (``resource`` is group-qualified and plural:
#: ``deployments.apps``; ``namespace`` is None for cluster-scoped ones).
ObjectRef = _types.ObjectRef

Object = Dict[str, Any]

_KINDS = {
    _types.Error_NotFound: "not-found",
    _types.Error_Conflict: "conflict",
    _types.Error_Invalid: "invalid",
    _types.Error_Forbidden: "forbidden",
    _types.Error_Internal: "internal",
}


class ApiError(Exception):
    """A host call failed, as the Kubernetes API would say it.

    ``kind`` is one of ``not-found`` (404), ``conflict`` (409: exists, or a
    stale resourceVersion), ``invalid`` (400/422), ``forbidden`` (outside
    the plugin's capabilities), ``internal`` (retry later).
    """

    def __init__(self, kind: str, message: str):
        super().__init__(f"{kind}: {message}")
        self.kind = kind
        self.message = message

    def is_not_found(self) -> bool:
        """404: no such object."""
        return self.kind == "not-found"

    def is_conflict(self) -> bool:
        """409: already exists, or a stale resourceVersion."""
        return self.kind == "conflict"


def _call(f, *args):
    try:
        return f(*args)
    except Err as e:
        error = e.value
        raise ApiError(_KINDS.get(type(error), "internal"), str(getattr(error, "value", error))) from None


def ref(resource: str, namespace: Optional[str], name: str) -> "_types.ObjectRef":
    """``ObjectRef`` of ``resource`` (``pods``) ``namespace``/``name``."""
    return _types.ObjectRef(resource=resource, namespace=namespace, name=name)


def ref_of(resource: str, obj: Object) -> "_types.ObjectRef":
    """The ``ObjectRef`` of ``obj``, an object of ``resource``."""
    meta = obj.get("metadata") or {}
    return ref(resource, meta.get("namespace"), meta.get("name", ""))


def get(key: "_types.ObjectRef") -> Object:
    """The object at ``key``; raises ``ApiError`` (``is_not_found()``)."""
    return json.loads(_call(_wit.get, key))


def list(resource: str, namespace: Optional[str] = None, label_selector: str = "") -> List[Object]:
    """Objects of ``resource``, optionally in one namespace and matching a
    label selector string (``app=web,tier in (a,b)``)."""
    return [json.loads(o) for o in _call(_wit.list, resource, namespace, label_selector)]


def create(resource: str, obj: Object) -> Object:
    """Creates ``obj``; returns it as stored."""
    return json.loads(_call(_wit.create, resource, json.dumps(obj)))


def update(resource: str, obj: Object) -> Object:
    """Replaces ``obj``; its ``metadata.resourceVersion`` is a precondition
    (a stale one raises a conflict)."""
    return json.loads(_call(_wit.update, resource, json.dumps(obj)))


def update_status(resource: str, obj: Object) -> Object:
    """Replaces ``obj``'s status (the status subresource)."""
    return json.loads(_call(_wit.update_status, resource, json.dumps(obj)))


def patch(key: "_types.ObjectRef", merge_patch: Object) -> Object:
    """Applies a JSON merge patch (RFC 7386) to the object at ``key``."""
    return json.loads(_call(_wit.patch, key, json.dumps(merge_patch)))


def delete(key: "_types.ObjectRef") -> None:
    """Deletes the object at ``key``."""
    _call(_wit.delete, key)
