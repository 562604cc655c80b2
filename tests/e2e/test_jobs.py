"""Batch controllers end to end: the job and cronjob controllers orchd
ships (plugins/job, plugins/cronjob, Wasm components) driven with the real
kubectl against hollow nodes, whose pods finish Succeeded or Failed as their
`orchd.dev/sim-exit` annotation says.

Bounds (pods running at once) are checked from a watch of the pods, and
end states are awaited with `kubectl wait` or polls with a deadline."""

from __future__ import annotations

import urllib.parse
from datetime import datetime, timezone

from helpers import Cluster, PodWatch, wait_until

NS = "default"
PODS = f"/api/v1/namespaces/{NS}/pods"
JOBS = f"/apis/batch/v1/namespaces/{NS}/jobs"
CRONJOBS = f"/apis/batch/v1/namespaces/{NS}/cronjobs"


def job_yaml(name: str, exit: str | None, spec: str) -> str:
    """A Job whose pods end as `exit` says (`succeed-after=2s`), or run
    until stopped (`None`); `spec` adds fields to its spec (indented 2)."""
    annotations = f'\n      annotations:\n        orchd.dev/sim-exit: "{exit}"' if exit else ""
    return f"""apiVersion: batch/v1
kind: Job
metadata:
  name: {name}
spec:
{spec}
  template:
    metadata:
      labels:
        app: {name}{annotations}
    spec:
      restartPolicy: Never
      containers:
      - name: work
        image: busybox
"""


def parse_time(text: str) -> float:
    return datetime.strptime(text, "%Y-%m-%dT%H:%M:%SZ").replace(tzinfo=timezone.utc).timestamp()


def phase(pod: dict) -> str:
    return (pod.get("status") or {}).get("phase", "Pending")


def job_pods(c: Cluster, job: str) -> list[dict]:
    q = urllib.parse.quote(f"batch.kubernetes.io/job-name={job}")
    return c.get(f"{PODS}?labelSelector={q}")["items"]


def condition(obj: dict, kind: str) -> dict | None:
    for cond in (obj.get("status") or {}).get("conditions") or []:
        if cond["type"] == kind:
            return cond
    return None


class ActiveWatch(PodWatch):
    """Follows the pods matching a selector and records the most that were
    active (neither finished nor deleted) at once."""

    def on_listed(self, pods: list[dict]):
        self.pods: dict[str, dict] = {p["metadata"]["name"]: p for p in pods}
        self.seen: set[str] = set(self.pods)
        self.max_active = self.active()

    def active(self) -> int:
        return sum(1 for p in self.pods.values() if phase(p) not in ("Succeeded", "Failed"))

    def on_event(self, kind: str, obj: dict):
        name = obj["metadata"]["name"]
        self.seen.add(name)
        if kind == "DELETED" or obj["metadata"].get("deletionTimestamp"):
            self.pods.pop(name, None)
        else:
            self.pods[name] = obj
        self.max_active = max(self.max_active, self.active())

def test_job_completes_with_bounded_parallelism_and_its_pods_go_with_it(cluster, hollow_nodes):
    hollow_nodes(2)
    watch = ActiveWatch(cluster, "batch.kubernetes.io/job-name=par")
    try:
        cluster.kubectl_apply_text(job_yaml("par", "succeed-after=2s", "  completions: 3\n  parallelism: 2"))
        cluster.kubectl("wait", "--for=condition=complete", "job/par", "--timeout=60s", timeout=70)
        assert not watch.errors, watch.errors
        assert watch.max_active == 2, f"{watch.max_active} pods ran at once (parallelism 2)"
        assert len(watch.seen) == 3, sorted(watch.seen)
    finally:
        watch.close()

    job = cluster.kubectl_json("get", "job", "par")
    status = job["status"]
    assert status["succeeded"] == 3 and "failed" not in status and "active" not in status, status
    assert status["ready"] == 0, status
    assert parse_time(status["startTime"]) <= parse_time(status["completionTime"])
    assert condition(job, "Complete")["reason"] == "CompletionsReached"
    assert condition(job, "SuccessCriteriaMet")["status"] == "True"
    uid = job["metadata"]["uid"]
    assert job["spec"]["selector"]["matchLabels"] == {"batch.kubernetes.io/controller-uid": uid}

    # Finished pods stay while the Job exists, labeled for it.
    pods = job_pods(cluster, "par")
    assert sorted(phase(p) for p in pods) == ["Succeeded"] * 3
    for p in pods:
        labels = p["metadata"]["labels"]
        assert labels["batch.kubernetes.io/controller-uid"] == uid and labels["controller-uid"] == uid
        assert labels["batch.kubernetes.io/job-name"] == "par" and labels["job-name"] == "par"
        assert p["metadata"]["ownerReferences"][0]["kind"] == "Job"
        assert p["metadata"]["name"].startswith("par-")
    table = cluster.kubectl("get", "jobs").stdout
    assert "par" in table and "3/3" in table, table

    # Deleting the Job takes its pods (the garbage collector).
    cluster.kubectl("delete", "job", "par", "--timeout=30s", timeout=40)
    wait_until("the Job's pods to be deleted", lambda: job_pods(cluster, "par") == [])


def test_failing_pods_respect_the_backoff_limit(cluster, hollow_nodes):
    hollow_nodes(1)
    cluster.kubectl_apply_text(job_yaml("flaky", "fail-after=1s", "  backoffLimit: 2"))
    # Two backoffs (10 s, then 20 s) and three 1 s runs.
    cluster.kubectl("wait", "--for=condition=failed", "job/flaky", "--timeout=90s", timeout=100)
    job = cluster.kubectl_json("get", "job", "flaky")
    failed = condition(job, "Failed")
    assert failed["status"] == "True" and failed["reason"] == "BackoffLimitExceeded", failed
    assert condition(job, "FailureTarget")["reason"] == "BackoffLimitExceeded"
    assert condition(job, "Complete") is None
    assert job["status"]["failed"] == 3 and "active" not in job["status"], job["status"]
    assert "completionTime" not in job["status"]

    pods = sorted(job_pods(cluster, "flaky"), key=lambda p: p["metadata"]["creationTimestamp"])
    assert [phase(p) for p in pods] == ["Failed"] * 3, [p["metadata"]["name"] for p in pods]

    # Each replacement waited out the backoff from the previous failure:
    # 10 s, then 20 s (timestamps are whole seconds).
    def finished(p: dict) -> float:
        return parse_time(p["status"]["containerStatuses"][0]["state"]["terminated"]["finishedAt"])

    def created(p: dict) -> float:
        return parse_time(p["metadata"]["creationTimestamp"])

    assert created(pods[1]) - finished(pods[0]) >= 9, (pods[0]["status"], pods[1]["metadata"])
    assert created(pods[2]) - finished(pods[1]) >= 19, (pods[1]["status"], pods[2]["metadata"])
    events = cluster.kubectl("get", "events", "--field-selector", "involvedObject.name=flaky").stdout
    assert "BackoffLimitExceeded" in events, events


def test_deadline_ttl_and_suspend(cluster, hollow_nodes):
    """activeDeadlineSeconds fails a long Job, ttlSecondsAfterFinished
    deletes a finished one, and a suspended Job starts nothing until
    resumed (the three Jobs run side by side)."""
    hollow_nodes(2)
    # Pods that never finish on their own.
    cluster.kubectl_apply_text(job_yaml("long", None, "  parallelism: 2\n  completions: 4\n  activeDeadlineSeconds: 3"))
    cluster.kubectl_apply_text(job_yaml("brief", "succeed-after=1s", "  ttlSecondsAfterFinished: 4"))
    cluster.kubectl_apply_text(job_yaml("later", "succeed-after=1s", "  suspend: true"))
    cluster.kubectl("wait", "--for=condition=suspended", "job/later", "--timeout=30s", timeout=40)

    cluster.kubectl("wait", "--for=condition=failed", "job/long", "--timeout=60s", timeout=70)
    long = cluster.kubectl_json("get", "job", "long")
    assert condition(long, "Failed")["reason"] == "DeadlineExceeded"
    failed_at = parse_time(condition(long, "Failed")["lastTransitionTime"])
    assert failed_at - parse_time(long["status"]["startTime"]) >= 3
    # Its running pods were stopped; the failed Job itself stays.
    wait_until("the long Job's pods to be stopped", lambda: job_pods(cluster, "long") == [])
    assert "active" not in cluster.kubectl_json("get", "job", "long")["status"]

    # The brief Job completes, then goes with its pods after its TTL.
    cluster.kubectl("wait", "--for=condition=complete", "job/brief", "--timeout=60s", timeout=70)
    brief = cluster.kubectl_json("get", "job", "brief")
    completed = parse_time(brief["status"]["completionTime"])
    assert len(job_pods(cluster, "brief")) == 1
    cluster.kubectl("wait", "--for=delete", "job/brief", "--timeout=60s", timeout=70)
    gone_at = datetime.now(timezone.utc).timestamp()
    assert gone_at - completed >= 3, (gone_at, completed)
    wait_until("the brief Job's pods to be deleted", lambda: job_pods(cluster, "brief") == [])

    # The suspended Job ran nothing all this while; resumed, it completes.
    later = cluster.kubectl_json("get", "job", "later")
    assert job_pods(cluster, "later") == [] and "startTime" not in later["status"], later["status"]
    assert condition(later, "Suspended")["reason"] == "JobSuspended"
    cluster.kubectl("patch", "job", "later", "--type=merge", "-p", '{"spec":{"suspend":false}}')
    cluster.kubectl("wait", "--for=condition=complete", "job/later", "--timeout=60s", timeout=70)
    later = cluster.kubectl_json("get", "job", "later")
    resumed = condition(later, "Suspended")
    assert resumed["status"] == "False" and resumed["reason"] == "JobResumed", resumed
    assert later["status"]["succeeded"] == 1


def test_cronjob_fires_and_its_job_completes(cluster, hollow_nodes):
    hollow_nodes(1)
    cluster.kubectl_apply_text("""apiVersion: batch/v1
kind: CronJob
metadata:
  name: tick
spec:
  schedule: "* * * * *"
  timeZone: Etc/UTC
  concurrencyPolicy: Forbid
  jobTemplate:
    metadata:
      labels:
        app: tick
    spec:
      template:
        metadata:
          annotations:
            orchd.dev/sim-exit: "succeed-after=1s"
        spec:
          restartPolicy: Never
          containers:
          - name: work
            image: busybox
""")
    cj = cluster.kubectl_json("get", "cronjob", "tick")
    uid = cj["metadata"]["uid"]

    def jobs():
        return [j for j in cluster.get(f"{JOBS}?labelSelector=app%3Dtick")["items"]
                if any(r["uid"] == uid for r in j["metadata"].get("ownerReferences") or [])]

    # `* * * * *` fires at the next whole minute.
    first = wait_until("the CronJob to create a Job", jobs, timeout=75, interval=0.5)[0]
    name = first["metadata"]["name"]
    scheduled = first["metadata"]["annotations"]["batch.kubernetes.io/cronjob-scheduled-timestamp"]
    at = parse_time(scheduled)
    assert at % 60 == 0, scheduled
    assert name == f"tick-{int(at) // 60}", (name, scheduled)
    ref = first["metadata"]["ownerReferences"][0]
    assert ref["kind"] == "CronJob" and ref["controller"] is True

    cluster.kubectl("wait", "--for=condition=complete", f"job/{name}", "--timeout=60s", timeout=70)

    def recorded():
        status = cluster.kubectl_json("get", "cronjob", "tick").get("status") or {}
        return status if status.get("lastSuccessfulTime") and not status.get("active") else None

    status = wait_until("the CronJob to record the finished run", recorded, timeout=30, interval=0.2)
    assert status["lastScheduleTime"] == scheduled, status
    job = cluster.kubectl_json("get", "job", name)
    assert status["lastSuccessfulTime"] == job["status"]["completionTime"]
    table = cluster.kubectl("get", "cronjobs").stdout
    assert "tick" in table and "* * * * *" in table, table
