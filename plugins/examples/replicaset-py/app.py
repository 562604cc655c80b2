"""A replicaset controller in Python: a slimmed twin of the default Rust one
(plugins/replicaset), installed in its place with
`orchd plugin install replicaset-py.wasm --name replicaset`.

Each ReplicaSet keeps `spec.replicas` active pods matching its selector,
made from its template: pods it controls count while they match (one that
stops matching is released), matching orphans are adopted; too few → pods
named `<replicaset>-<random>` are created, too many → unscheduled, pending,
not-ready, then newest pods are deleted first (at most 500 either way per
reconcile, and writes stop at a time budget, the rest follow at once).
Status: replicas, fullyLabeledReplicas, readyReplicas, availableReplicas
(ready for minReadySeconds), observedGeneration. Left out of this slim
version: the ReplicaFailure condition and pod-deletion-cost.

Reconciles `replicasets.apps`; watches pods mapped to their controlling
ReplicaSet and, for orphans, to every ReplicaSet selecting them.
Capabilities: read and write `replicasets.apps`, `pods`.
"""

import time

from orchd_sdk import events, meta, objects, pods
from orchd_sdk.controller import Controller, ControllerSpec, done, export, requeue_after

import logic

REPLICASETS = "replicasets.apps"
#: Seconds of writes per reconcile, well inside the 1 s call deadline.
WRITE_BUDGET = 0.4


class ReplicaSets(Controller):
    def setup(self, config):
        return ControllerSpec(REPLICASETS).watch_owned("pods", "ReplicaSet").watch_selected("pods")

    def reconcile(self, key):
        try:
            return self.sync(key)
        except objects.ApiError as e:
            # Someone else wrote meanwhile: that change queues it again.
            if e.is_conflict():
                return requeue_after(0.1)
            raise

    def sync(self, key):
        started = time.monotonic()
        try:
            rs = objects.get(key)
        except objects.ApiError as e:
            if e.is_not_found():
                return done()
            raise
        uid = rs["metadata"]["uid"]
        deleting = meta.is_deleting(rs)
        selector = (rs.get("spec") or {}).get("selector")
        owned = []
        for pod in objects.list("pods", key.namespace):
            if not pods.is_active(pod):
                continue
            matches = meta.selector_matches(selector, meta.labels(pod))
            owner = meta.controller_of(pod)
            if owner is not None and owner.get("uid") == uid:
                if matches:
                    owned.append(pod)
                elif not deleting:
                    self.release(pod, uid)
            elif owner is None and matches and not deleting:
                adopted = self.adopt(rs, pod)
                if adopted is not None:
                    owned.append(adopted)

        replicas = int((rs.get("spec") or {}).get("replicas", 1))
        out_of_time = False
        if not deleting and len(owned) < replicas:
            for _ in range(min(replicas - len(owned), logic.BURST_REPLICAS)):
                if time.monotonic() - started > WRITE_BUDGET:
                    out_of_time = True
                    break
                try:
                    pod = objects.create("pods", logic.pod_from_template(rs))
                except objects.ApiError as e:
                    events.warning(key, "FailedCreate", f"Error creating: {e}")
                    break
                events.normal(key, "SuccessfulCreate", f"Created pod: {pod['metadata']['name']}")
                owned.append(pod)
        elif not deleting and len(owned) > replicas:
            excess = min(len(owned) - replicas, logic.BURST_REPLICAS)
            for pod in logic.pods_to_delete(owned, excess):
                if time.monotonic() - started > WRITE_BUDGET:
                    out_of_time = True
                    break
                name = pod["metadata"]["name"]
                try:
                    objects.delete(objects.ref("pods", key.namespace, name))
                except objects.ApiError as e:
                    if not e.is_not_found():
                        events.warning(key, "FailedDelete", f"Error deleting: {e}")
                        break
                events.normal(key, "SuccessfulDelete", f"Deleted pod: {name}")
                owned.remove(pod)

        now = int(time.time())
        status = logic.status(rs, owned, now)
        if logic.status_changed(rs.get("status"), status):
            rs["status"] = {**(rs.get("status") or {}), **status}
            try:
                objects.update_status(REPLICASETS, rs)
            except objects.ApiError as e:
                # Gone, or changed meanwhile (that change queues it again).
                if not (e.is_not_found() or e.is_conflict()):
                    raise
        if out_of_time:
            return requeue_after(0)
        at = logic.next_available(rs, owned, now)
        return done() if at is None else requeue_after(at - now + 0.05)

    def adopt(self, rs, pod):
        """Makes `rs` the controller of orphan `pod` (None if it is gone);
        its resourceVersion is a precondition."""
        refs = list((pod["metadata"].get("ownerReferences") or []))
        refs.append(meta.owner_reference(rs, "apps/v1", "ReplicaSet"))
        patch = {"metadata": {"ownerReferences": refs, "resourceVersion": pod["metadata"]["resourceVersion"]}}
        try:
            return objects.patch(objects.ref_of("pods", pod), patch)
        except objects.ApiError as e:
            if e.is_not_found():
                return None
            raise

    def release(self, pod, uid):
        """Removes the controller reference to `uid` from `pod`."""
        refs = [r for r in pod["metadata"].get("ownerReferences") or [] if r.get("uid") != uid]
        patch = {"metadata": {"ownerReferences": refs or None,
                              "resourceVersion": pod["metadata"]["resourceVersion"]}}
        try:
            objects.patch(objects.ref_of("pods", pod), patch)
        except objects.ApiError as e:
            if not e.is_not_found():
                raise


WitWorld = export(ReplicaSets)
