"""Writing an admission policy: subclass :class:`Admission` and export it::

    from orchd_sdk.admission import Admission, allow, deny, export

    class NoLatest(Admission):
        def review(self, request):
            ...

    WitWorld = export(NoLatest)

The API calls ``review`` in its write path, with a deadline and the
Plugin's failure policy (an exception or a trap follows it).
"""

import json
from typing import Any, Dict, List, Optional

from wit_world.imports import admission_types as _wit

Operation = _wit.Operation


class Request:
    """An admission request, with the objects already parsed."""

    def __init__(self, raw: "_wit.AdmissionRequest"):
        self.raw = raw
        self.uid = raw.uid
        self.resource = raw.resource
        self.sub_resource = raw.sub_resource
        self.namespace = raw.namespace
        self.name = raw.name
        self.operation = raw.operation
        self.user = raw.user
        self.dry_run = raw.dry_run
        #: The object after the change (None for delete), as a dict.
        self.object: Optional[Dict[str, Any]] = json.loads(raw.object) if raw.object else None
        #: The object before the change (update and delete).
        self.old_object: Optional[Dict[str, Any]] = json.loads(raw.old_object) if raw.old_object else None


class Response:
    """An admission answer; build with :func:`allow` or :func:`deny`."""

    def __init__(self, allowed: bool, message: str = ""):
        self.allowed = allowed
        self.message = message
        self.patch: Optional[List[Dict[str, Any]]] = None
        self.warnings: List[str] = []

    def with_patch(self, operations: List[Dict[str, Any]]) -> "Response":
        """Mutates the object by a JSON patch (RFC 6902), mutating plugins only."""
        self.patch = list(operations)
        return self

    def with_warning(self, warning: str) -> "Response":
        """Adds a warning shown to the client."""
        self.warnings.append(warning)
        return self

    def to_wit(self) -> "_wit.AdmissionResponse":
        """The generated record the host receives."""
        return _wit.AdmissionResponse(
            allowed=self.allowed,
            message=self.message,
            patch=None if self.patch is None else json.dumps(self.patch),
            warnings=list(self.warnings),
        )


def allow() -> Response:
    """Allows the request."""
    return Response(True)


def deny(message: str) -> Response:
    """Denies the request; ``message`` is shown to the user."""
    return Response(False, message)


class Admission:
    """An admission policy: override ``review``."""

    def review(self, request: Request) -> Response:
        """Judges one request."""
        raise NotImplementedError


def export(cls):
    """The ``WitWorld`` class componentize-py exports, serving ``cls``."""
    plugin = cls()

    class WitWorld:
        def review(self, request):
            return plugin.review(Request(request)).to_wit()

    return WitWorld
