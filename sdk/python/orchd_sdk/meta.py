"""Pure helpers on object metadata (run natively too, for unit tests)."""

import datetime
from typing import Any, Dict, List, Optional

Object = Dict[str, Any]


def labels(obj: Object) -> Dict[str, str]:
    """``metadata.labels`` (empty if none)."""
    return (obj.get("metadata") or {}).get("labels") or {}


def annotations(obj: Object) -> Dict[str, str]:
    """``metadata.annotations`` (empty if none)."""
    return (obj.get("metadata") or {}).get("annotations") or {}


def controller_of(obj: Object) -> Optional[Dict[str, Any]]:
    """The owner reference with ``controller: true``, if any."""
    for o in (obj.get("metadata") or {}).get("ownerReferences") or []:
        if o.get("controller"):
            return o
    return None


def is_controlled_by(obj: Object, owner: Object) -> bool:
    """Whether ``owner`` (by uid) is ``obj``'s controller."""
    c = controller_of(obj)
    return c is not None and c.get("uid") == (owner.get("metadata") or {}).get("uid")


def owner_reference(owner: Object, api_version: Optional[str] = None, kind: Optional[str] = None,
                    controller: bool = True) -> Dict[str, Any]:
    """An owner reference naming ``owner`` (with blockOwnerDeletion);
    ``api_version`` and ``kind`` default to the object's own."""
    m = owner["metadata"]
    return {"apiVersion": api_version or owner["apiVersion"], "kind": kind or owner["kind"], "name": m["name"],
            "uid": m["uid"], "controller": controller, "blockOwnerDeletion": True}


def is_deleting(obj: Object) -> bool:
    """Whether ``metadata.deletionTimestamp`` is set."""
    return bool((obj.get("metadata") or {}).get("deletionTimestamp"))


def now() -> str:
    """The current time as Kubernetes writes it (RFC 3339, seconds, UTC)."""
    return datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


def selector_matches(selector: Optional[Object], object_labels: Dict[str, str]) -> bool:
    """Whether a LabelSelector (``matchLabels`` and ``matchExpressions``)
    matches ``object_labels``. An empty selector matches everything; a
    missing one (None) matches nothing, as Kubernetes' controllers read it."""
    if selector is None:
        return False
    for k, v in (selector.get("matchLabels") or {}).items():
        if object_labels.get(k) != v:
            return False
    for e in selector.get("matchExpressions") or []:
        key, op, values = e.get("key"), e.get("operator"), e.get("values") or []
        has = key in object_labels
        if op == "In" and not (has and object_labels[key] in values):
            return False
        if op == "NotIn" and has and object_labels[key] in values:
            return False
        if op == "Exists" and not has:
            return False
        if op == "DoesNotExist" and has:
            return False
        if op not in ("In", "NotIn", "Exists", "DoesNotExist"):
            return False
    return True


def selector_string(selector: Object) -> str:
    """A LabelSelector as the selector string ``objects.list`` takes."""
    parts: List[str] = [f"{k}={v}" for k, v in sorted((selector.get("matchLabels") or {}).items())]
    for e in selector.get("matchExpressions") or []:
        key, op, values = e["key"], e["operator"], e.get("values") or []
        if op == "In":
            parts.append(f"{key} in ({','.join(values)})")
        elif op == "NotIn":
            parts.append(f"{key} notin ({','.join(values)})")
        elif op == "Exists":
            parts.append(key)
        elif op == "DoesNotExist":
            parts.append(f"!{key}")
    return ",".join(parts)
