"""Restarts a Deployment's pods when a ConfigMap they use changes.

A Python controller (componentize-py + orchd_sdk). It reconciles
Deployments and watches ConfigMaps (a ConfigMap change queues every
Deployment: `map-to: all`). For each Deployment it hashes the data of the
ConfigMaps its pod template mounts (volumes, projected volumes) or reads
(envFrom, env valueFrom): the first time it records the hash in the
Deployment's `orchd.dev/configmap-hash` annotation; when the hash changes it
stamps `kubectl.kubernetes.io/restartedAt` on the pod template, as
`kubectl rollout restart` does, and the deployment controller rolls the pods.

Capabilities: read `deployments.apps`, `configmaps`; write `deployments.apps`.
"""

from orchd_sdk import events, meta, objects
from orchd_sdk.controller import Controller, ControllerSpec, export

import logic


class ConfigMapReloader(Controller):
    def setup(self, config):
        return ControllerSpec("deployments.apps").watch_all("configmaps")

    def reconcile(self, key):
        try:
            deployment = objects.get(key)
        except objects.ApiError as e:
            if e.is_not_found():
                return None
            raise
        if meta.is_deleting(deployment):
            return None
        configmaps = {}
        for name in logic.referenced_configmaps(deployment):
            try:
                configmaps[name] = objects.get(objects.ref("configmaps", key.namespace, name))
            except objects.ApiError as e:
                if not e.is_not_found():
                    raise
                configmaps[name] = None
        if not configmaps:
            return None
        patch = logic.plan(deployment, logic.configmaps_hash(configmaps), meta.now())
        if patch is None:
            return None
        objects.patch(key, patch)
        if "spec" in patch:
            events.normal(key, "ConfigMapChanged",
                          f"restarting pods: ConfigMap(s) {', '.join(sorted(configmaps))} changed")
        return None


WitWorld = export(ConfigMapReloader)
