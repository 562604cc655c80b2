"""The Rust example plugins/examples/required-labels, ported line for line
to Python (componentize-py) for `cargo xtask bench plugins`: pods and
Deployments must carry a non-empty `owner` label; the denial names what is
missing, in the same words."""

from orchd_sdk.admission import Admission, allow, deny, export

REQUIRED = ["owner"]
REVIEWED = ["pods", "deployments.apps"]


def missing(obj, required):
    labels = (obj.get("metadata") or {}).get("labels") or {}
    return [l for l in required if not isinstance(labels.get(l), str) or not labels.get(l)]


def message(resource, name, absent):
    kind = resource.split(".")[0]
    labels = ", ".join(f'"{l}"' for l in absent)
    fields = ", ".join(f"metadata.labels.{l}" for l in absent)
    noun = "label" if len(absent) == 1 else "labels"
    return f'{kind} "{name}" is missing the required {noun} {labels} (set {fields})'


class RequiredLabels(Admission):
    def review(self, request):
        if request.resource not in REVIEWED or request.sub_resource is not None:
            return allow()
        if request.object is None:
            return allow()
        absent = missing(request.object, REQUIRED)
        return allow() if not absent else deny(message(request.resource, request.name, absent))


WitWorld = export(RequiredLabels)
