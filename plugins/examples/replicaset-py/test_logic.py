import logic


def pod(name, node=None, phase="Running", ready_at=None, created="2026-01-01T00:00:00Z"):
    status = {"phase": phase}
    if ready_at:
        status["conditions"] = [{"type": "Ready", "status": "True", "lastTransitionTime": ready_at}]
    return {"metadata": {"name": name, "creationTimestamp": created, "labels": {"app": "x"}},
            "spec": {"nodeName": node} if node else {}, "status": status}


def test_deletes_unscheduled_then_pending_then_not_ready_then_newest_ready():
    owned = [
        pod("ready-old", "n", ready_at="2026-01-01T00:00:10Z"),
        pod("ready-new", "n", ready_at="2026-01-01T00:01:00Z"),
        pod("not-ready", "n"),
        pod("pending", "n", phase="Pending"),
        pod("unscheduled", phase="Pending"),
    ]
    names = [p["metadata"]["name"] for p in logic.pods_to_delete(owned, 5)]
    assert names == ["unscheduled", "pending", "not-ready", "ready-new", "ready-old"]
    assert len(logic.pods_to_delete(owned, 2)) == 2


def rs(min_ready=0):
    return {"metadata": {"name": "web-1", "namespace": "default", "uid": "u1", "generation": 3},
            "spec": {"replicas": 2, "minReadySeconds": min_ready,
                     "template": {"metadata": {"labels": {"app": "x"}}, "spec": {"containers": [{"name": "c"}]}}}}


def test_pods_come_from_the_template_and_are_controlled():
    p = logic.pod_from_template(rs())
    assert p["metadata"]["generateName"] == "web-1-"
    assert p["metadata"]["labels"] == {"app": "x"}
    assert p["metadata"]["ownerReferences"][0]["uid"] == "u1"
    assert p["metadata"]["ownerReferences"][0]["controller"] is True
    assert p["spec"]["containers"][0]["name"] == "c"


def test_status_counts_ready_and_available_after_min_ready_seconds():
    now = logic.parse_time("2026-01-01T00:00:30Z")
    owned = [pod("a", "n", ready_at="2026-01-01T00:00:00Z"), pod("b", "n", ready_at="2026-01-01T00:00:25Z"),
             pod("c", "n")]
    s = logic.status(rs(min_ready=10), owned, now)
    assert s == {"replicas": 3, "fullyLabeledReplicas": 3, "readyReplicas": 2, "availableReplicas": 1,
                 "observedGeneration": 3}
    assert logic.next_available(rs(min_ready=10), owned, now) == logic.parse_time("2026-01-01T00:00:35Z")
    assert logic.status_changed({"replicas": 3}, s)
    assert not logic.status_changed(dict(s), s)
    assert not logic.status_changed(None, {"replicas": 0, "readyReplicas": 0})
