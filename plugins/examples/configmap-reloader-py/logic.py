"""Pure logic of the ConfigMap reloader (no host calls: unit-tested natively)."""

import hashlib
import json
from typing import Any, Dict, List, Optional

#: On the Deployment's metadata: the hash of the ConfigMaps its pods saw
#: last. Kept off the pod template so recording it never rolls the pods.
HASH_ANNOTATION = "orchd.dev/configmap-hash"
#: On the pod template: the same annotation `kubectl rollout restart`
#: writes, so a change rolls the pods as a restart would.
RESTARTED_AT = "kubectl.kubernetes.io/restartedAt"

Object = Dict[str, Any]


def referenced_configmaps(deployment: Object) -> List[str]:
    """Names of the ConfigMaps the pod template mounts as volumes (also
    projected) or reads into its containers' environment, sorted, once each."""
    spec = ((deployment.get("spec") or {}).get("template") or {}).get("spec") or {}
    names = set()
    for v in spec.get("volumes") or []:
        if (v.get("configMap") or {}).get("name"):
            names.add(v["configMap"]["name"])
        for s in (v.get("projected") or {}).get("sources") or []:
            if (s.get("configMap") or {}).get("name"):
                names.add(s["configMap"]["name"])
    for c in (spec.get("containers") or []) + (spec.get("initContainers") or []):
        for e in c.get("envFrom") or []:
            if (e.get("configMapRef") or {}).get("name"):
                names.add(e["configMapRef"]["name"])
        for e in c.get("env") or []:
            ref = ((e.get("valueFrom") or {}).get("configMapKeyRef") or {})
            if ref.get("name"):
                names.add(ref["name"])
    return sorted(names)


def configmaps_hash(configmaps: Dict[str, Optional[Object]]) -> str:
    """A hash of what the pods would see: each ConfigMap's data and
    binaryData by name (a missing one counts as missing). Metadata does not
    count, so re-applying the same data restarts nothing."""
    seen = {
        name: None if cm is None else {"data": cm.get("data") or {}, "binaryData": cm.get("binaryData") or {}}
        for name, cm in sorted(configmaps.items())
    }
    return hashlib.sha256(json.dumps(seen, sort_keys=True).encode()).hexdigest()[:16]


def plan(deployment: Object, current_hash: str, now: str) -> Optional[Object]:
    """The merge patch to write, or None when the Deployment is in line.

    First sight records the hash without restarting (the pods were just
    created from the current data); a different hash stamps the template,
    which makes the deployment controller roll the pods."""
    meta = deployment.get("metadata") or {}
    recorded = (meta.get("annotations") or {}).get(HASH_ANNOTATION)
    if recorded == current_hash:
        return None
    patch: Object = {"metadata": {"annotations": {HASH_ANNOTATION: current_hash}}}
    if recorded is not None:
        patch["spec"] = {"template": {"metadata": {"annotations": {RESTARTED_AT: now}}}}
    return patch
