"""Pure helpers on pods (run natively too, for unit tests)."""

from typing import Any, Dict

Object = Dict[str, Any]


def is_active(pod: Object) -> bool:
    """Not finished and not being deleted: counts toward replicas."""
    phase = (pod.get("status") or {}).get("phase")
    return phase not in ("Succeeded", "Failed") and not (pod.get("metadata") or {}).get("deletionTimestamp")


def is_ready(pod: Object) -> bool:
    """The pod's ``Ready`` condition is ``True``."""
    for c in (pod.get("status") or {}).get("conditions") or []:
        if c.get("type") == "Ready":
            return c.get("status") == "True"
    return False
