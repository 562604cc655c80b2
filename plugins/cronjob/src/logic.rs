//! The cronjob controller's policy as pure functions: which scheduled
//! time is due, what the concurrency policy does about running Jobs, the
//! Job a template makes, which finished Jobs the history limits prune, and
//! the status to report.

use orchd_sdk::meta;
use orchd_sdk::serde_json::{Map, Value, json};

use crate::cron::Schedule;

/// The annotation with the time a Job was scheduled for (RFC 3339).
pub const SCHEDULED_TIMESTAMP: &str = "batch.kubernetes.io/cronjob-scheduled-timestamp";

/// Missed start times beyond which an event asks the user to set or lower
/// `startingDeadlineSeconds` (Kubernetes' limit).
pub const TOO_MANY_MISSED: usize = 100;

/// The schedule of `cj`, or why it cannot be used. Only UTC time zones are
/// supported (`spec.timeZone` unset, `UTC` or `Etc/UTC`).
pub fn schedule(cj: &Value) -> Result<Schedule, (&'static str, String)> {
    match cj["spec"]["timeZone"].as_str() {
        None | Some("UTC" | "Etc/UTC") => {}
        Some(tz) => {
            return Err((
                "UnknownTimeZone",
                format!("time zone {tz:?} is not supported: orchd runs CronJobs in UTC only"),
            ));
        }
    }
    let text = cj["spec"]["schedule"].as_str().unwrap_or_default();
    Schedule::parse(text).map_err(|e| {
        (
            "UnparseableSchedule",
            format!("unparseable schedule {text:?}: {e}"),
        )
    })
}

/// The name of the Job for the run scheduled at `t`: the CronJob's name and
/// `t` in minutes since the epoch, as Kubernetes names them (so one run
/// can never be created twice).
pub fn job_name(cj: &Value, t: i64) -> String {
    let name = cj["metadata"]["name"].as_str().unwrap_or_default();
    format!("{name}-{}", t.div_euclid(60))
}

/// The Job for the run scheduled at `t`, from `cj`'s `jobTemplate`,
/// controlled by the CronJob.
pub fn job_from_template(cj: &Value, t: i64) -> Value {
    let template = &cj["spec"]["jobTemplate"];
    let mut metadata = Map::new();
    metadata.insert("name".into(), json!(job_name(cj, t)));
    metadata.insert("namespace".into(), cj["metadata"]["namespace"].clone());
    if let Some(labels) = template["metadata"]["labels"].as_object() {
        metadata.insert("labels".into(), Value::Object(labels.clone()));
    }
    let mut annotations = template["metadata"]["annotations"]
        .as_object()
        .cloned()
        .unwrap_or_default();
    annotations.insert(SCHEDULED_TIMESTAMP.into(), json!(meta::format_time(t)));
    metadata.insert("annotations".into(), Value::Object(annotations));
    metadata.insert(
        "ownerReferences".into(),
        json!([meta::controller_reference(cj, "batch/v1", "CronJob")]),
    );
    json!({
        "apiVersion": "batch/v1",
        "kind": "Job",
        "metadata": metadata,
        "spec": template["spec"],
    })
}

/// How a Job ended: `Some(true)` complete, `Some(false)` failed, `None`
/// still running.
pub fn outcome(job: &Value) -> Option<bool> {
    let is_true = |kind: &str| {
        job["status"]["conditions"]
            .as_array()
            .into_iter()
            .flatten()
            .any(|c| c["type"] == kind && c["status"] == "True")
    };
    if is_true("Complete") {
        Some(true)
    } else if is_true("Failed") {
        Some(false)
    } else {
        None
    }
}

fn time_of(object: &Value, pointer: &str) -> Option<i64> {
    object.pointer(pointer)?.as_str().and_then(meta::parse_time)
}

/// When a Job started, for ordering the history: its `startTime`, else
/// its scheduled time, else its creation.
pub fn started(job: &Value) -> i64 {
    time_of(job, "/status/startTime")
        .or_else(|| {
            job["metadata"]["annotations"][SCHEDULED_TIMESTAMP]
                .as_str()
                .and_then(meta::parse_time)
        })
        .or_else(|| time_of(job, "/metadata/creationTimestamp"))
        .unwrap_or(0)
}

/// Which run is due at `now`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Due {
    /// The most recent scheduled time not yet run, if any.
    pub scheduled: Option<i64>,
    /// How many scheduled times were missed (counted up to
    /// [`TOO_MANY_MISSED`] + 1).
    pub missed: usize,
    /// Whether that time is past `startingDeadlineSeconds` (then it is
    /// skipped).
    pub too_late: bool,
    /// The next scheduled time after `now`.
    pub next: Option<i64>,
}

/// The run due at `now`: the latest scheduled time after the last run (or
/// the CronJob's creation) and at most `now`. With
/// `startingDeadlineSeconds`, times older than that are not even looked at.
pub fn due(cj: &Value, schedule: &Schedule, now: i64) -> Due {
    let mut earliest = time_of(cj, "/status/lastScheduleTime")
        .or_else(|| time_of(cj, "/metadata/creationTimestamp"))
        .unwrap_or(now);
    let deadline = cj["spec"]["startingDeadlineSeconds"].as_i64();
    if let Some(d) = deadline {
        earliest = earliest.max(now.saturating_sub(d));
    }
    let latest = schedule.prev(now).filter(|t| *t > earliest);
    let mut missed = 0;
    if latest.is_some() {
        let mut t = earliest;
        while let Some(n) = schedule.next(t) {
            if n > now || missed > TOO_MANY_MISSED {
                break;
            }
            missed += 1;
            t = n;
        }
    }
    Due {
        scheduled: latest,
        missed,
        too_late: match (latest, deadline) {
            (Some(t), Some(d)) => t.saturating_add(d) < now,
            _ => false,
        },
        next: schedule.next(now),
    }
}

/// What `concurrencyPolicy` says about starting a run while `active` Jobs
/// of the CronJob still run.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Action {
    /// Start it (`Allow`, or nothing running).
    Start,
    /// Skip it (`Forbid` with a Job running).
    Skip,
    /// Delete the running Jobs, then start it (`Replace`).
    Replace,
}

/// The action for `cj`'s policy with `active` Jobs running.
pub fn action(cj: &Value, active: usize) -> Action {
    if active == 0 {
        return Action::Start;
    }
    match cj["spec"]["concurrencyPolicy"].as_str() {
        Some("Forbid") => Action::Skip,
        Some("Replace") => Action::Replace,
        _ => Action::Start,
    }
}

/// The names of finished Jobs beyond the history limits
/// (`successfulJobsHistoryLimit`, `failedJobsHistoryLimit`), oldest
/// first. An unset limit keeps everything.
pub fn history_to_delete(cj: &Value, jobs: &[Value]) -> Vec<String> {
    let mut doomed = Vec::new();
    for (complete, limit) in [
        (true, &cj["spec"]["successfulJobsHistoryLimit"]),
        (false, &cj["spec"]["failedJobsHistoryLimit"]),
    ] {
        let Some(limit) = limit.as_i64() else {
            continue;
        };
        let mut finished: Vec<&Value> = jobs
            .iter()
            .filter(|j| outcome(j) == Some(complete) && !meta::is_deleting(j))
            .collect();
        let excess = finished
            .len()
            .saturating_sub(usize::try_from(limit).unwrap_or(0));
        finished.sort_by_key(|j| {
            (
                started(j),
                j["metadata"]["name"].as_str().map(str::to_string),
            )
        });
        doomed.extend(
            finished
                .into_iter()
                .take(excess)
                .filter_map(|j| j["metadata"]["name"].as_str().map(str::to_string)),
        );
    }
    doomed
}

/// A reference to `job` for `status.active`.
pub fn job_reference(job: &Value) -> Value {
    json!({
        "apiVersion": "batch/v1",
        "kind": "Job",
        "name": job["metadata"]["name"],
        "namespace": job["metadata"]["namespace"],
        "uid": job["metadata"]["uid"],
    })
}

/// The status with `active` Jobs running, the run scheduled at
/// `scheduled` (if one started now) and the Jobs of the CronJob (for
/// `lastSuccessfulTime`, the latest completion).
pub fn status(cj: &Value, active: &[Value], scheduled: Option<i64>, jobs: &[Value]) -> Value {
    let mut status = cj["status"].as_object().cloned().unwrap_or_default();
    if active.is_empty() {
        status.remove("active");
    } else {
        let mut refs: Vec<Value> = active.iter().map(job_reference).collect();
        refs.sort_by(|a, b| a["name"].as_str().cmp(&b["name"].as_str()));
        status.insert("active".into(), json!(refs));
    }
    let old_schedule = time_of(cj, "/status/lastScheduleTime");
    if let Some(t) = scheduled
        && old_schedule.is_none_or(|old| t > old)
    {
        status.insert("lastScheduleTime".into(), json!(meta::format_time(t)));
    }
    let completed = jobs
        .iter()
        .filter(|j| outcome(j) == Some(true))
        .filter_map(|j| time_of(j, "/status/completionTime"))
        .max();
    let old_success = time_of(cj, "/status/lastSuccessfulTime");
    if let Some(t) = completed
        && old_success.is_none_or(|old| t > old)
    {
        status.insert("lastSuccessfulTime".into(), json!(meta::format_time(t)));
    }
    Value::Object(status)
}

#[cfg(test)]
mod tests {
    use super::*;

    const CREATED: &str = "2026-12-02T04:00:30Z";

    fn t(text: &str) -> i64 {
        meta::parse_time(text).unwrap()
    }

    fn cj(spec: Value) -> Value {
        let mut c = json!({
            "metadata": {"name": "tick", "namespace": "ns", "uid": "cj-uid", "creationTimestamp": CREATED},
            "spec": {
                "schedule": "*/5 * * * *",
                "concurrencyPolicy": "Allow",
                "successfulJobsHistoryLimit": 3,
                "failedJobsHistoryLimit": 1,
                "jobTemplate": {
                    "metadata": {"labels": {"app": "tick"}, "annotations": {"a": "b"}},
                    "spec": {"template": {"spec": {"restartPolicy": "Never", "containers": [{"name": "c", "image": "x"}]}}},
                },
            },
        });
        for (k, v) in spec.as_object().unwrap() {
            c["spec"][k] = v.clone();
        }
        c
    }

    fn job(name: &str, started: &str, outcome: Option<bool>) -> Value {
        let mut j = json!({
            "metadata": {"name": name, "namespace": "ns", "uid": format!("{name}-uid")},
            "status": {"startTime": started},
        });
        if let Some(ok) = outcome {
            let kind = if ok { "Complete" } else { "Failed" };
            j["status"]["conditions"] = json!([{"type": kind, "status": "True"}]);
            if ok {
                j["status"]["completionTime"] = json!(started);
            }
        }
        j
    }

    #[test]
    fn jobs_are_named_by_their_minute_and_carry_the_schedule() {
        let c = cj(json!({}));
        let at = t("2026-12-02T04:05:00Z");
        let j = job_from_template(&c, at);
        assert_eq!(j["metadata"]["name"], format!("tick-{}", at / 60));
        assert_eq!(j["metadata"]["name"], "tick-29936405");
        assert_eq!(j["metadata"]["labels"]["app"], "tick");
        assert_eq!(j["metadata"]["annotations"]["a"], "b");
        assert_eq!(
            j["metadata"]["annotations"][SCHEDULED_TIMESTAMP],
            "2026-12-02T04:05:00Z"
        );
        assert!(meta::is_controlled_by(&j, "cj-uid"));
        assert_eq!(meta::controller_ref(&j).unwrap()["kind"], "CronJob");
        assert_eq!(j["spec"]["template"]["spec"]["restartPolicy"], "Never");
    }

    #[test]
    fn the_latest_missed_time_is_due_and_the_next_one_is_known() {
        let c = cj(json!({}));
        let s = schedule(&c).unwrap();
        // Created 04:00:30: nothing due until 04:05.
        let d = due(&c, &s, t("2026-12-02T04:03:00Z"));
        assert_eq!(d.scheduled, None);
        assert_eq!(d.next, Some(t("2026-12-02T04:05:00Z")));
        let d = due(&c, &s, t("2026-12-02T04:05:01Z"));
        assert_eq!(
            (d.scheduled, d.missed, d.too_late),
            (Some(t("2026-12-02T04:05:00Z")), 1, false)
        );
        // Once run, it is not due again.
        let mut ran = c.clone();
        ran["status"]["lastScheduleTime"] = json!("2026-12-02T04:05:00Z");
        assert_eq!(due(&ran, &s, t("2026-12-02T04:09:59Z")).scheduled, None);
        // Down for a while: only the latest of the missed runs is due.
        let d = due(&ran, &s, t("2026-12-02T04:31:00Z"));
        assert_eq!(
            (d.scheduled, d.missed),
            (Some(t("2026-12-02T04:30:00Z")), 5)
        );
        assert_eq!(d.next, Some(t("2026-12-02T04:35:00Z")));
    }

    #[test]
    fn the_starting_deadline_skips_late_runs_and_bounds_the_search() {
        let c = cj(json!({"startingDeadlineSeconds": 30}));
        let s = schedule(&c).unwrap();
        let d = due(&c, &s, t("2026-12-02T04:05:20Z"));
        assert_eq!(
            (d.scheduled, d.too_late),
            (Some(t("2026-12-02T04:05:00Z")), false)
        );
        // 60 s late: older than the deadline, so not even looked at.
        let d = due(&c, &s, t("2026-12-02T04:06:00Z"));
        assert_eq!(d.scheduled, None);
        // Far behind without a deadline: more than 100 missed.
        let every = cj(json!({"schedule": "* * * * *"}));
        let s = schedule(&every).unwrap();
        let d = due(&every, &s, t("2026-12-02T07:00:00Z"));
        assert!(d.missed > TOO_MANY_MISSED);
        assert_eq!(d.scheduled, Some(t("2026-12-02T07:00:00Z")));
        let bounded = cj(json!({"schedule": "* * * * *", "startingDeadlineSeconds": 200}));
        let d = due(&bounded, &s, t("2026-12-02T07:00:00Z"));
        assert_eq!(d.missed, 4);
    }

    #[test]
    fn concurrency_policies() {
        assert_eq!(action(&cj(json!({})), 2), Action::Start);
        assert_eq!(
            action(&cj(json!({"concurrencyPolicy": "Forbid"})), 1),
            Action::Skip
        );
        assert_eq!(
            action(&cj(json!({"concurrencyPolicy": "Forbid"})), 0),
            Action::Start
        );
        assert_eq!(
            action(&cj(json!({"concurrencyPolicy": "Replace"})), 1),
            Action::Replace
        );
        assert_eq!(
            action(&cj(json!({"concurrencyPolicy": "Replace"})), 0),
            Action::Start
        );
    }

    #[test]
    fn history_limits_prune_the_oldest_finished_jobs() {
        let c = cj(json!({"successfulJobsHistoryLimit": 2, "failedJobsHistoryLimit": 1}));
        let jobs = [
            job("ok-3", "2026-12-02T04:15:00Z", Some(true)),
            job("ok-1", "2026-12-02T04:05:00Z", Some(true)),
            job("bad-1", "2026-12-02T04:00:00Z", Some(false)),
            job("ok-2", "2026-12-02T04:10:00Z", Some(true)),
            job("bad-2", "2026-12-02T04:20:00Z", Some(false)),
            job("running", "2026-12-02T03:00:00Z", None),
            job("ok-0", "2026-12-02T03:59:00Z", Some(true)),
        ];
        assert_eq!(history_to_delete(&c, &jobs), ["ok-0", "ok-1", "bad-1"]);
        let none = cj(json!({"successfulJobsHistoryLimit": 0, "failedJobsHistoryLimit": 0}));
        assert_eq!(history_to_delete(&none, &jobs).len(), 6);
        let mut unlimited = cj(json!({}));
        unlimited["spec"]
            .as_object_mut()
            .unwrap()
            .retain(|k, _| !k.ends_with("HistoryLimit"));
        assert!(history_to_delete(&unlimited, &jobs).is_empty());
    }

    #[test]
    fn status_tracks_active_jobs_and_the_last_times() {
        let c = cj(json!({}));
        let running = job("tick-2", "2026-12-02T04:10:00Z", None);
        let done = job("tick-1", "2026-12-02T04:05:00Z", Some(true));
        let s = status(
            &c,
            std::slice::from_ref(&running),
            Some(t("2026-12-02T04:10:00Z")),
            &[running.clone(), done],
        );
        assert_eq!(s["active"][0]["name"], "tick-2");
        assert_eq!(s["active"][0]["kind"], "Job");
        assert_eq!(s["lastScheduleTime"], "2026-12-02T04:10:00Z");
        assert_eq!(s["lastSuccessfulTime"], "2026-12-02T04:05:00Z");
        let mut later = c.clone();
        later["status"] = s;
        let s = status(&later, &[], None, &[]);
        assert!(s.get("active").is_none());
        assert_eq!(s["lastScheduleTime"], "2026-12-02T04:10:00Z");
        assert_eq!(s["lastSuccessfulTime"], "2026-12-02T04:05:00Z");
    }

    #[test]
    fn only_utc_time_zones_and_valid_schedules_are_used() {
        assert!(schedule(&cj(json!({"timeZone": "Etc/UTC"}))).is_ok());
        assert_eq!(
            schedule(&cj(json!({"timeZone": "Europe/Paris"})))
                .unwrap_err()
                .0,
            "UnknownTimeZone"
        );
        assert_eq!(
            schedule(&cj(json!({"schedule": "every minute"})))
                .unwrap_err()
                .0,
            "UnparseableSchedule"
        );
    }
}
