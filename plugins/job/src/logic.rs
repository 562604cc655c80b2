//! The job controller's policy as pure functions: what a Job's pods amount
//! to, how many to start or stop, when the Job has succeeded or failed,
//! how long to back off after failures, and the status to report.

use std::cmp::Ordering;

use orchd_sdk::serde_json::{Map, Value, json};
use orchd_sdk::{meta, pods};

/// Most pods created or deleted in one reconcile, as Kubernetes'
/// `MaxBatchSize`: the rest follow in the next reconcile.
pub const MAX_BATCH: usize = 500;

/// The first delay before a pod replaces a failed one (Kubernetes'
/// `DefaultJobPodFailureBackOff`); it doubles with each further failure.
pub const BACKOFF_BASE_SECS: i64 = 10;

/// The longest delay between failures (Kubernetes' `MaxJobPodFailureBackOff`).
pub const BACKOFF_MAX_SECS: i64 = 360;

/// The labels a Job's pods carry, naming the Job and its uid (the
/// `batch.kubernetes.io/` ones and the legacy unprefixed ones).
pub const JOB_NAME_LABELS: [&str; 2] = ["batch.kubernetes.io/job-name", "job-name"];
/// See [`JOB_NAME_LABELS`].
pub const CONTROLLER_UID_LABELS: [&str; 2] =
    ["batch.kubernetes.io/controller-uid", "controller-uid"];

/// `spec.completions`; `None` is a work queue: the Job is done once one
/// pod succeeded and the rest have finished.
pub fn completions(job: &Value) -> Option<i64> {
    job["spec"]["completions"].as_i64().map(|c| c.max(0))
}

/// `spec.parallelism` (default 1).
pub fn parallelism(job: &Value) -> i64 {
    job["spec"]["parallelism"].as_i64().unwrap_or(1).max(0)
}

/// `spec.backoffLimit` (default 6).
pub fn backoff_limit(job: &Value) -> i64 {
    job["spec"]["backoffLimit"].as_i64().unwrap_or(6).max(0)
}

/// Whether `spec.suspend` is set.
pub fn is_suspended(job: &Value) -> bool {
    job["spec"]["suspend"] == true
}

/// The condition of `kind` in `status.conditions`, if any.
pub fn condition<'a>(status: &'a Value, kind: &str) -> Option<&'a Value> {
    status["conditions"]
        .as_array()?
        .iter()
        .find(|c| c["type"] == kind)
}

/// Whether the condition of `kind` is there and `True`.
pub fn has_true(status: &Value, kind: &str) -> bool {
    condition(status, kind).is_some_and(|c| c["status"] == "True")
}

/// When the Job finished (its `Complete` or `Failed` condition became
/// true, Unix seconds), or `None` while it has not.
pub fn finished_at(job: &Value) -> Option<i64> {
    let status = &job["status"];
    ["Complete", "Failed"]
        .iter()
        .filter_map(|kind| condition(status, kind))
        .find(|c| c["status"] == "True")
        .map(|c| {
            c["lastTransitionTime"]
                .as_str()
                .or_else(|| status["completionTime"].as_str())
                .and_then(meta::parse_time)
                .unwrap_or(0)
        })
}

/// When a finished Job is to be deleted (`ttlSecondsAfterFinished` after
/// it finished), if it has a TTL.
pub fn expires_at(job: &Value, finished: i64) -> Option<i64> {
    let ttl = job["spec"]["ttlSecondsAfterFinished"].as_i64()?;
    Some(finished.saturating_add(ttl.max(0)))
}

/// A new pod from `job`'s template: named `<job>-<5 random characters>` by
/// the API (`generateName`), carrying the job-name and controller-uid
/// labels, controlled by the Job.
pub fn pod_from_template(job: &Value) -> Value {
    let template = &job["spec"]["template"];
    let name = job["metadata"]["name"].as_str().unwrap_or_default();
    let uid = job["metadata"]["uid"].as_str().unwrap_or_default();
    let mut metadata = Map::new();
    metadata.insert("generateName".into(), json!(format!("{name}-")));
    metadata.insert("namespace".into(), job["metadata"]["namespace"].clone());
    for field in ["annotations", "finalizers"] {
        let v = &template["metadata"][field];
        if !v.is_null() {
            metadata.insert(field.into(), v.clone());
        }
    }
    let mut labels = template["metadata"]["labels"]
        .as_object()
        .cloned()
        .unwrap_or_default();
    // The API put these into the template already unless the user chose
    // the selector (`manualSelector`); pods of such a Job carry them too,
    // as in Kubernetes, which makes them easy to find by Job.
    for key in JOB_NAME_LABELS {
        labels.entry(key).or_insert_with(|| json!(name));
    }
    for key in CONTROLLER_UID_LABELS {
        labels.entry(key).or_insert_with(|| json!(uid));
    }
    metadata.insert("labels".into(), Value::Object(labels));
    metadata.insert(
        "ownerReferences".into(),
        json!([meta::controller_reference(job, "batch/v1", "Job")]),
    );
    json!({
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": metadata,
        "spec": template["spec"],
    })
}

fn phase(pod: &Value) -> &str {
    pod["status"]["phase"].as_str().unwrap_or("Pending")
}

/// When a finished pod finished (Unix seconds): its containers' latest
/// `finishedAt`, else its `Ready` condition's last change, else its
/// creation.
pub fn finish_time(pod: &Value) -> i64 {
    let terminated = pod["status"]["containerStatuses"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|c| c["state"]["terminated"]["finishedAt"].as_str())
        .filter_map(meta::parse_time)
        .max();
    terminated
        .or_else(|| {
            pod["status"]["conditions"]
                .as_array()
                .into_iter()
                .flatten()
                .find(|c| c["type"] == "Ready")
                .and_then(|c| c["lastTransitionTime"].as_str())
                .and_then(meta::parse_time)
        })
        .or_else(|| {
            pod["metadata"]["creationTimestamp"]
                .as_str()
                .and_then(meta::parse_time)
        })
        .unwrap_or(0)
}

/// What a Job's pods amount to.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Counts {
    /// Neither finished nor being deleted.
    pub active: i64,
    /// Active and `Ready`.
    pub ready: i64,
    /// Phase `Succeeded`.
    pub succeeded: i64,
    /// Phase `Failed`.
    pub failed: i64,
    /// Being deleted and not finished.
    pub terminating: i64,
}

/// Counts `pods` (the Job's own).
pub fn counts(pods: &[Value]) -> Counts {
    let mut c = Counts::default();
    for p in pods {
        match phase(p) {
            "Succeeded" => c.succeeded += 1,
            "Failed" => c.failed += 1,
            _ if meta::is_deleting(p) => c.terminating += 1,
            _ => {
                c.active += 1;
                if pods::is_ready(p) {
                    c.ready += 1;
                }
            }
        }
    }
    c
}

/// The delay before a pod may replace the last of `failures` consecutive
/// failed pods: 10 s, doubling, at most 6 minutes; none without failures.
pub fn backoff_delay(failures: u32) -> i64 {
    if failures == 0 {
        return 0;
    }
    let mut delay = BACKOFF_BASE_SECS;
    for _ in 1..failures {
        delay = delay.saturating_mul(2);
        if delay >= BACKOFF_MAX_SECS {
            return BACKOFF_MAX_SECS;
        }
    }
    delay.min(BACKOFF_MAX_SECS)
}

/// When the next pod may start (Unix seconds), as Kubernetes' backoff
/// record has it: the failures since the last success, each doubling the
/// delay, counted from the last failure. `None` without such failures.
pub fn next_start_allowed(pods: &[Value]) -> Option<i64> {
    let last_success = pods
        .iter()
        .filter(|p| phase(p) == "Succeeded")
        .map(finish_time)
        .max()
        .unwrap_or(i64::MIN);
    let failures: Vec<i64> = pods
        .iter()
        .filter(|p| phase(p) == "Failed")
        .map(finish_time)
        .filter(|t| *t >= last_success)
        .collect();
    let last = *failures.iter().max()?;
    let n = u32::try_from(failures.len()).unwrap_or(u32::MAX);
    Some(last.saturating_add(backoff_delay(n)))
}

/// How a Job ends.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Finish {
    /// Enough pods succeeded.
    Complete,
    /// It failed, with Kubernetes' reason (`BackoffLimitExceeded`,
    /// `DeadlineExceeded`) and a message.
    Failed {
        /// The condition's reason.
        reason: String,
        /// The condition's message.
        message: String,
    },
}

/// What one reconcile of a running Job does.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Plan {
    /// Pods to create.
    pub create: usize,
    /// Names of active pods to delete (the Job finished, was suspended,
    /// or runs more than its parallelism).
    pub delete: Vec<String>,
    /// Whether (and how) the Job ends.
    pub finish: Option<Finish>,
    /// When to look again (a deadline, the end of a backoff), Unix seconds.
    pub requeue_at: Option<i64>,
}

fn name(pod: &Value) -> String {
    pod["metadata"]["name"]
        .as_str()
        .unwrap_or_default()
        .to_string()
}

/// Which of two active pods to stop first (`Less`: `a`): unscheduled,
/// then not running, then not ready, then newest.
fn stop_order(a: &Value, b: &Value) -> Ordering {
    let created = |p: &Value| {
        p["metadata"]["creationTimestamp"]
            .as_str()
            .and_then(meta::parse_time)
            .unwrap_or(0)
    };
    pods::is_scheduled(a)
        .cmp(&pods::is_scheduled(b))
        .then_with(|| (phase(a) == "Running").cmp(&(phase(b) == "Running")))
        .then_with(|| pods::is_ready(a).cmp(&pods::is_ready(b)))
        .then_with(|| created(b).cmp(&created(a)))
        .then_with(|| name(b).cmp(&name(a)))
}

/// The active pods among `pods`, the ones to stop first first.
fn active_by_stop_order(pods: &[Value]) -> Vec<&Value> {
    let mut active: Vec<&Value> = pods
        .iter()
        .filter(|p| !matches!(phase(p), "Succeeded" | "Failed") && !meta::is_deleting(p))
        .collect();
    active.sort_by(|a, b| stop_order(a, b));
    active
}

/// When the Job started counting toward its deadline: `status.startTime`.
pub fn start_time(job: &Value) -> Option<i64> {
    job["status"]["startTime"]
        .as_str()
        .and_then(meta::parse_time)
}

/// What to do about a running (not finished) Job with `pods` at `now`.
/// `started` is when it started (`status.startTime`, or now for a Job
/// starting in this reconcile).
pub fn plan(job: &Value, pods: &[Value], started: Option<i64>, now: i64) -> Plan {
    let c = counts(pods);
    let active = active_by_stop_order(pods);
    let stop_all = || active.iter().map(|p| name(p)).collect::<Vec<_>>();
    let mut plan = Plan::default();
    if is_suspended(job) {
        plan.delete = stop_all();
        return plan;
    }
    // A verdict reached earlier (its pods were still terminating) stands.
    let status = &job["status"];
    if has_true(status, "FailureTarget") {
        let c = condition(status, "FailureTarget").unwrap_or(&Value::Null);
        plan.finish = Some(Finish::Failed {
            reason: c["reason"].as_str().unwrap_or("Failed").to_string(),
            message: c["message"].as_str().unwrap_or_default().to_string(),
        });
    } else if has_true(status, "SuccessCriteriaMet") {
        plan.finish = Some(Finish::Complete);
    } else if c.failed > backoff_limit(job) {
        plan.finish = Some(Finish::Failed {
            reason: "BackoffLimitExceeded".into(),
            message: "Job has reached the specified backoff limit".into(),
        });
    } else if let (Some(deadline), Some(start)) =
        (job["spec"]["activeDeadlineSeconds"].as_i64(), started)
        && now >= start.saturating_add(deadline)
    {
        plan.finish = Some(Finish::Failed {
            reason: "DeadlineExceeded".into(),
            message: "Job was active longer than specified deadline".into(),
        });
    } else {
        let done = match completions(job) {
            Some(want) => c.succeeded >= want,
            None => c.succeeded > 0 && c.active == 0,
        };
        if done {
            plan.finish = Some(Finish::Complete);
        }
    }
    if plan.finish.is_some() {
        plan.delete = stop_all();
        return plan;
    }

    if let (Some(deadline), Some(start)) = (job["spec"]["activeDeadlineSeconds"].as_i64(), started)
    {
        plan.requeue_at = Some(start.saturating_add(deadline));
    }
    let parallelism = parallelism(job);
    let want = match completions(job) {
        Some(total) => parallelism.min(total - c.succeeded).max(0),
        // A work queue: once one pod succeeded, no new ones start, and the
        // ones running finish on their own.
        None if c.succeeded > 0 => c.active,
        None => parallelism,
    };
    if c.active > want {
        let excess = usize::try_from(c.active - want).unwrap_or(0).min(MAX_BATCH);
        plan.delete = active.iter().take(excess).map(|p| name(p)).collect();
    } else if c.active < want {
        match next_start_allowed(pods) {
            Some(at) if at > now => {
                plan.requeue_at = Some(plan.requeue_at.map_or(at, |r| r.min(at)));
            }
            _ => {
                plan.create = usize::try_from(want - c.active).unwrap_or(0).min(MAX_BATCH);
            }
        }
    }
    plan
}

/// Sets the condition of `kind` in `conditions`, keeping its transition
/// time while its status stays the same; returns whether it changed.
pub fn set_condition(
    conditions: &mut Vec<Value>,
    kind: &str,
    status: &str,
    reason: &str,
    message: &str,
    now: i64,
) -> bool {
    if let Some(old) = conditions.iter().find(|c| c["type"] == kind)
        && old["status"] == status
        && old["reason"] == reason
    {
        return false;
    }
    let stamp = meta::format_time(now);
    let since = conditions
        .iter()
        .find(|c| c["type"] == kind && c["status"] == status)
        .and_then(|c| c["lastTransitionTime"].as_str())
        .map_or_else(|| stamp.clone(), str::to_string);
    conditions.retain(|c| c["type"] != kind);
    conditions.push(json!({
        "type": kind,
        "status": status,
        "lastProbeTime": stamp,
        "lastTransitionTime": since,
        "reason": reason,
        "message": message,
    }));
    true
}

/// The status after a reconcile: `c` the pod counts once its writes
/// landed, `started` the start time, `finish` the verdict and `settled`
/// whether all its pods have stopped (then the verdict becomes the
/// `Complete` or `Failed` condition; before, only `SuccessCriteriaMet` or
/// `FailureTarget`, as Kubernetes does).
pub fn status(
    job: &Value,
    c: Counts,
    started: Option<i64>,
    finish: Option<&Finish>,
    settled: bool,
    now: i64,
) -> Value {
    let mut status = job["status"].as_object().cloned().unwrap_or_default();
    let mut set_count = |field: &str, n: i64, keep_zero: bool| {
        if n == 0 && !keep_zero {
            status.remove(field);
        } else {
            status.insert(field.into(), json!(n));
        }
    };
    // Zero counts are left out, as Kubernetes' omitempty does; `ready` is a
    // pointer there and always written.
    set_count("active", c.active, false);
    set_count("succeeded", c.succeeded, false);
    set_count("failed", c.failed, false);
    set_count("terminating", c.terminating, false);
    set_count("ready", c.ready, true);
    match started {
        Some(t) => {
            status.insert("startTime".into(), json!(meta::format_time(t)));
        }
        None => {
            status.remove("startTime");
        }
    }
    let mut conditions: Vec<Value> = status
        .get("conditions")
        .and_then(Value::as_array)
        .cloned()
        .unwrap_or_default();
    if is_suspended(job) && finish.is_none() {
        set_condition(
            &mut conditions,
            "Suspended",
            "True",
            "JobSuspended",
            "Job suspended",
            now,
        );
    } else if has_true(&job["status"], "Suspended") {
        set_condition(
            &mut conditions,
            "Suspended",
            "False",
            "JobResumed",
            "Job resumed",
            now,
        );
    }
    match finish {
        Some(Finish::Complete) => {
            set_condition(
                &mut conditions,
                "SuccessCriteriaMet",
                "True",
                "CompletionsReached",
                "Reached expected number of succeeded pods",
                now,
            );
            if settled {
                set_condition(
                    &mut conditions,
                    "Complete",
                    "True",
                    "CompletionsReached",
                    "Reached expected number of succeeded pods",
                    now,
                );
                status
                    .entry("completionTime")
                    .or_insert_with(|| json!(meta::format_time(now)));
            }
        }
        Some(Finish::Failed { reason, message }) => {
            set_condition(
                &mut conditions,
                "FailureTarget",
                "True",
                reason,
                message,
                now,
            );
            if settled {
                set_condition(&mut conditions, "Failed", "True", reason, message, now);
            }
        }
        None => {}
    }
    if conditions.is_empty() {
        status.remove("conditions");
    } else {
        status.insert("conditions".into(), json!(conditions));
    }
    Value::Object(status)
}

#[cfg(test)]
mod tests {
    use super::*;

    const T0: i64 = 1_796_186_100;

    fn job(spec: Value) -> Value {
        let mut j = json!({
            "metadata": {"name": "pi", "namespace": "ns", "uid": "job-uid"},
            "spec": {
                "parallelism": 1,
                "backoffLimit": 6,
                "selector": {"matchLabels": {"batch.kubernetes.io/controller-uid": "job-uid"}},
                "template": {
                    "metadata": {"labels": {"batch.kubernetes.io/controller-uid": "job-uid", "app": "pi"}},
                    "spec": {"restartPolicy": "Never", "containers": [{"name": "c", "image": "perl"}]},
                },
            },
        });
        for (k, v) in spec.as_object().unwrap() {
            j["spec"][k] = v.clone();
        }
        j
    }

    fn pod(name: &str, phase: &str, finished: Option<i64>) -> Value {
        let mut p = json!({
            "metadata": {"name": name, "creationTimestamp": meta::format_time(T0)},
            "spec": {"nodeName": "n1"},
            "status": {"phase": phase},
        });
        if let Some(t) = finished {
            p["status"]["containerStatuses"] =
                json!([{"state": {"terminated": {"finishedAt": meta::format_time(t)}}}]);
        }
        p
    }

    #[test]
    fn pods_come_from_the_template_labeled_and_controlled() {
        let p = pod_from_template(&job(json!({})));
        assert_eq!(p["metadata"]["generateName"], "pi-");
        assert_eq!(p["metadata"]["namespace"], "ns");
        let labels = &p["metadata"]["labels"];
        assert_eq!(labels["app"], "pi");
        assert_eq!(labels["batch.kubernetes.io/job-name"], "pi");
        assert_eq!(labels["job-name"], "pi");
        assert_eq!(labels["controller-uid"], "job-uid");
        assert!(meta::is_controlled_by(&p, "job-uid"));
        assert_eq!(meta::controller_ref(&p).unwrap()["kind"], "Job");
        assert_eq!(p["spec"]["restartPolicy"], "Never");
    }

    #[test]
    fn parallelism_bounds_the_pods_and_completions_end_the_job() {
        let j = job(json!({"completions": 3, "parallelism": 2}));
        assert_eq!(plan(&j, &[], Some(T0), T0).create, 2);
        let running = [pod("a", "Running", None), pod("b", "Running", None)];
        assert_eq!(plan(&j, &running, Some(T0), T0), Plan::default());
        // One done, two to go: a second pod joins the running one.
        let one_done = [
            pod("a", "Succeeded", Some(T0 + 2)),
            pod("b", "Running", None),
        ];
        assert_eq!(plan(&j, &one_done, Some(T0), T0 + 2).create, 1);
        // Two done: the last completion needs only one more pod.
        let two_done = [
            pod("a", "Succeeded", Some(T0 + 2)),
            pod("b", "Succeeded", Some(T0 + 2)),
        ];
        assert_eq!(plan(&j, &two_done, Some(T0), T0 + 2).create, 1);
        let two_done_one_running = [
            pod("a", "Succeeded", Some(T0 + 2)),
            pod("b", "Succeeded", Some(T0 + 2)),
            pod("c", "Running", None),
        ];
        assert_eq!(
            plan(&j, &two_done_one_running, Some(T0), T0 + 2),
            Plan::default()
        );
        let all_done = [
            pod("a", "Succeeded", Some(T0 + 2)),
            pod("b", "Succeeded", Some(T0 + 2)),
            pod("c", "Succeeded", Some(T0 + 4)),
        ];
        let p = plan(&j, &all_done, Some(T0), T0 + 4);
        assert_eq!(p.finish, Some(Finish::Complete));
        assert!(p.delete.is_empty() && p.create == 0);
        // Lowering parallelism stops the newest pods.
        let mut newer = pod("new", "Running", None);
        newer["metadata"]["creationTimestamp"] = json!(meta::format_time(T0 + 5));
        let three = [pod("a", "Running", None), newer, pod("b", "Running", None)];
        assert_eq!(plan(&j, &three, Some(T0), T0 + 6).delete, ["new"]);
    }

    #[test]
    fn a_work_queue_completes_once_one_pod_succeeded_and_the_rest_finished() {
        let j = job(json!({"parallelism": 3}));
        assert_eq!(plan(&j, &[], Some(T0), T0).create, 3);
        let some_done = [pod("a", "Succeeded", Some(T0)), pod("b", "Running", None)];
        let p = plan(&j, &some_done, Some(T0), T0);
        assert_eq!((p.create, p.finish.clone()), (0, None));
        let all_done = [
            pod("a", "Succeeded", Some(T0)),
            pod("b", "Failed", Some(T0)),
        ];
        assert_eq!(
            plan(&j, &all_done, Some(T0), T0).finish,
            Some(Finish::Complete)
        );
    }

    #[test]
    fn backoff_doubles_from_ten_seconds_up_to_six_minutes() {
        assert_eq!(
            (1..=8).map(backoff_delay).collect::<Vec<_>>(),
            [10, 20, 40, 80, 160, 320, 360, 360]
        );
        assert_eq!(backoff_delay(0), 0);
        assert_eq!(backoff_delay(u32::MAX), 360);
        let j = job(json!({"completions": 1, "backoffLimit": 3}));
        let failed = [pod("a", "Failed", Some(T0))];
        let p = plan(&j, &failed, Some(T0), T0 + 3);
        assert_eq!((p.create, p.requeue_at), (0, Some(T0 + 10)));
        assert_eq!(plan(&j, &failed, Some(T0), T0 + 10).create, 1);
        let twice = [
            pod("a", "Failed", Some(T0)),
            pod("b", "Failed", Some(T0 + 15)),
        ];
        assert_eq!(next_start_allowed(&twice), Some(T0 + 35));
        // A success resets the count.
        let mut j2 = job(json!({"completions": 3, "backoffLimit": 3}));
        j2["spec"]["parallelism"] = json!(1);
        let reset = [
            pod("a", "Failed", Some(T0)),
            pod("b", "Succeeded", Some(T0 + 20)),
            pod("c", "Failed", Some(T0 + 30)),
        ];
        assert_eq!(next_start_allowed(&reset), Some(T0 + 40));
        assert_eq!(next_start_allowed(&[pod("a", "Succeeded", Some(T0))]), None);
    }

    #[test]
    fn failures_beyond_the_backoff_limit_fail_the_job() {
        let j = job(json!({"completions": 1, "backoffLimit": 2}));
        let two = [
            pod("a", "Failed", Some(T0)),
            pod("b", "Failed", Some(T0 + 12)),
        ];
        assert_eq!(plan(&j, &two, Some(T0), T0 + 13).finish, None);
        let three = [
            pod("a", "Failed", Some(T0)),
            pod("b", "Failed", Some(T0 + 12)),
            pod("c", "Failed", Some(T0 + 40)),
        ];
        let p = plan(&j, &three, Some(T0), T0 + 40);
        assert!(
            matches!(&p.finish, Some(Finish::Failed { reason, .. }) if reason == "BackoffLimitExceeded")
        );
        assert_eq!(p.create, 0);
    }

    #[test]
    fn the_active_deadline_fails_the_job_and_stops_its_pods() {
        let j = job(json!({"completions": 1, "activeDeadlineSeconds": 5}));
        let running = [pod("a", "Running", None)];
        let p = plan(&j, &running, Some(T0), T0 + 4);
        assert_eq!((p.finish.clone(), p.requeue_at), (None, Some(T0 + 5)));
        let p = plan(&j, &running, Some(T0), T0 + 5);
        assert!(
            matches!(&p.finish, Some(Finish::Failed { reason, .. }) if reason == "DeadlineExceeded")
        );
        assert_eq!(p.delete, ["a"]);
        // The verdict, once recorded, stands while its pods stop.
        let mut recorded = j.clone();
        recorded["status"] = status(
            &j,
            counts(&running),
            Some(T0),
            p.finish.as_ref(),
            false,
            T0 + 5,
        );
        assert!(has_true(&recorded["status"], "FailureTarget"));
        assert!(condition(&recorded["status"], "Failed").is_none());
        let again = plan(&recorded, &[], Some(T0), T0 + 6);
        assert_eq!(again.finish, p.finish);
    }

    #[test]
    fn suspending_stops_every_pod_and_resuming_is_reported() {
        let j = job(json!({"completions": 2, "suspend": true}));
        let running = [pod("a", "Running", None)];
        let p = plan(&j, &running, None, T0);
        assert_eq!((p.delete.len(), p.create), (1, 0));
        let s = status(&j, Counts::default(), None, None, true, T0);
        assert_eq!(
            condition(&s, "Suspended").unwrap()["reason"],
            "JobSuspended"
        );
        let mut resumed = j.clone();
        resumed["spec"]["suspend"] = json!(false);
        resumed["status"] = s;
        let s = status(
            &resumed,
            Counts::default(),
            Some(T0 + 9),
            None,
            true,
            T0 + 9,
        );
        let c = condition(&s, "Suspended").unwrap();
        assert_eq!(
            (c["status"].as_str(), c["reason"].as_str()),
            (Some("False"), Some("JobResumed"))
        );
        assert_eq!(s["startTime"], meta::format_time(T0 + 9));
    }

    #[test]
    fn status_counts_and_final_conditions() {
        let j = job(json!({"completions": 2}));
        let mut ready = pod("r", "Running", None);
        ready["status"]["conditions"] = json!([{"type": "Ready", "status": "True"}]);
        let mut deleting = pod("d", "Running", None);
        deleting["metadata"]["deletionTimestamp"] = json!(meta::format_time(T0));
        let pods = [
            ready,
            pod("p", "Pending", None),
            pod("s", "Succeeded", Some(T0)),
            pod("f", "Failed", Some(T0)),
            deleting,
        ];
        let c = counts(&pods);
        assert_eq!(
            c,
            Counts {
                active: 2,
                ready: 1,
                succeeded: 1,
                failed: 1,
                terminating: 1
            }
        );
        let s = status(&j, c, Some(T0), None, false, T0);
        assert_eq!(
            (s["active"].as_i64(), s["ready"].as_i64()),
            (Some(2), Some(1))
        );
        assert_eq!(s["startTime"], meta::format_time(T0));
        assert!(s["conditions"].is_null() && s["completionTime"].is_null());
        let done = status(
            &j,
            Counts {
                succeeded: 2,
                ..Counts::default()
            },
            Some(T0),
            Some(&Finish::Complete),
            true,
            T0 + 7,
        );
        assert!(done.get("active").is_none() && done["ready"] == 0);
        assert!(has_true(&done, "Complete") && has_true(&done, "SuccessCriteriaMet"));
        assert_eq!(done["completionTime"], meta::format_time(T0 + 7));
        let mut finished = j.clone();
        finished["status"] = done;
        assert_eq!(finished_at(&finished), Some(T0 + 7));
        assert_eq!(expires_at(&finished, T0 + 7), None);
        finished["spec"]["ttlSecondsAfterFinished"] = json!(30);
        assert_eq!(expires_at(&finished, T0 + 7), Some(T0 + 37));
        // Nothing new to say: the same status again.
        let again = status(
            &finished,
            Counts {
                succeeded: 2,
                ..Counts::default()
            },
            Some(T0),
            Some(&Finish::Complete),
            true,
            T0 + 9,
        );
        assert_eq!(again, finished["status"]);
    }
}
