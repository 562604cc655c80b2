//! The cronjob controller, as Kubernetes' controller-manager runs it: a
//! CronJob creates a Job from its `jobTemplate` each time its `schedule`
//! fires.
//!
//! - Schedules are standard 5-field cron (see [`cron`]) in UTC:
//!   `spec.timeZone` may be unset, `UTC` or `Etc/UTC`; any other zone is
//!   reported (`UnknownTimeZone`) and the CronJob does not run.
//! - The Job for the run scheduled at time `t` is named
//!   `<cronjob>-<t in minutes since the epoch>`, annotated
//!   `batch.kubernetes.io/cronjob-scheduled-timestamp`, and controlled by
//!   the CronJob. Only the latest missed run starts; with
//!   `startingDeadlineSeconds` runs later than that are skipped, and more
//!   than 100 missed runs are reported (`TooManyMissedTimes`).
//! - `concurrencyPolicy`: `Allow` starts runs regardless; `Forbid` skips a
//!   run while a Job still runs; `Replace` deletes the running Jobs first.
//!   `suspend` starts nothing.
//! - Finished Jobs beyond `successfulJobsHistoryLimit` (default 3) and
//!   `failedJobsHistoryLimit` (default 1) are deleted, oldest first, in
//!   the background (the garbage collector takes their pods).
//! - Status: `active` (references to the running Jobs),
//!   `lastScheduleTime`, `lastSuccessfulTime`. Between runs the
//!   reconcile is requeued until the next scheduled time.
//!
//! It reconciles `cronjobs.batch` and watches Jobs, mapped to their
//! controlling CronJob. Capabilities: `read: cronjobs.batch, jobs.batch`,
//! `write: cronjobs.batch, jobs.batch`.

pub mod cron;
mod logic;

use std::time::Duration;

use logic::Action;
use orchd_sdk::controller::{BoxError, Controller, ControllerSpec, ReconcileResult};
use orchd_sdk::objects::{self, Error, ObjectRef};
use orchd_sdk::serde_json::Value;
use orchd_sdk::{events, log, meta};

const CRONJOBS: &str = "cronjobs.batch";
const JOBS: &str = "jobs.batch";

struct CronJobs;

impl Controller for CronJobs {
    fn setup(_config: &str) -> Result<ControllerSpec, BoxError> {
        Ok(ControllerSpec::new(CRONJOBS).watch_owned(JOBS, "CronJob"))
    }

    fn reconcile(key: ObjectRef) -> Result<ReconcileResult, BoxError> {
        match sync(&key) {
            // Someone else wrote the CronJob meanwhile: that change queues
            // it again, to be looked at afresh.
            Err(e) if e.downcast_ref::<Error>().is_some_and(Error::is_conflict) => {
                Ok(ReconcileResult::requeue_after(Duration::from_millis(100)))
            }
            other => other,
        }
    }
}

fn name_of(object: &Value) -> String {
    object["metadata"]["name"]
        .as_str()
        .unwrap_or_default()
        .to_string()
}

/// One reconcile of the CronJob at `key`.
fn sync(key: &ObjectRef) -> Result<ReconcileResult, BoxError> {
    let cj: Value = match objects::get(key) {
        Ok(c) => c,
        Err(Error::NotFound(_)) => return Ok(ReconcileResult::Done),
        Err(e) => return Err(e.into()),
    };
    let Some(namespace) = key.namespace.as_deref() else {
        return Ok(ReconcileResult::Done);
    };
    if meta::is_deleting(&cj) {
        return Ok(ReconcileResult::Done);
    }
    let now = meta::now_unix();
    let uid = cj["metadata"]["uid"].as_str().unwrap_or_default();
    let mut jobs: Vec<Value> = objects::list::<Value>(JOBS, Some(namespace), "")?
        .into_iter()
        .filter(|j| meta::is_controlled_by(j, uid))
        .collect();

    // Jobs the last status listed as running that have finished since.
    for r in cj["status"]["active"].as_array().into_iter().flatten() {
        if let Some(job) = jobs.iter().find(|j| j["metadata"]["uid"] == r["uid"])
            && let Some(ok) = logic::outcome(job)
        {
            let how = if ok { "Complete" } else { "Failed" };
            let name = name_of(job);
            events::normal(
                key,
                "SawCompletedJob",
                &format!("Saw completed job: {name}, condition: {how}"),
            );
        }
    }

    for name in logic::history_to_delete(&cj, &jobs) {
        delete_job(key, namespace, &name)?;
        jobs.retain(|j| name_of(j) != name);
    }
    let mut active: Vec<Value> = jobs
        .iter()
        .filter(|j| logic::outcome(j).is_none() && !meta::is_deleting(j))
        .cloned()
        .collect();

    let (scheduled, next) = if cj["spec"]["suspend"] == true {
        (None, None)
    } else {
        match logic::schedule(&cj) {
            Err((reason, message)) => {
                events::warning(key, reason, &message);
                (None, None)
            }
            Ok(schedule) => run_due(key, namespace, &cj, &schedule, now, &mut active, &jobs)?,
        }
    };

    let status = logic::status(&cj, &active, scheduled, &jobs);
    if status != cj["status"] {
        let mut updated = cj.clone();
        updated["status"] = status;
        match objects::update_status(CRONJOBS, &updated) {
            Ok(_) | Err(Error::NotFound(_)) => {}
            Err(e) => return Err(e.into()),
        }
    }
    Ok(match next {
        // Whole seconds, and `now` was rounded down: a little later, so
        // the time has surely come.
        Some(at) => ReconcileResult::requeue_after(
            Duration::from_secs(u64::try_from(at.saturating_sub(now)).unwrap_or(0))
                + Duration::from_millis(100),
        ),
        None => ReconcileResult::Done,
    })
}

/// Starts the run due at `now`, if any, as the concurrency policy allows;
/// returns the scheduled time of the run started (for
/// `lastScheduleTime`) and the next scheduled time.
fn run_due(
    key: &ObjectRef,
    namespace: &str,
    cj: &Value,
    schedule: &cron::Schedule,
    now: i64,
    active: &mut Vec<Value>,
    jobs: &[Value],
) -> Result<(Option<i64>, Option<i64>), BoxError> {
    let due = logic::due(cj, schedule, now);
    if due.next.is_none() && due.scheduled.is_none() {
        events::warning(
            key,
            "InvalidSchedule",
            "the schedule never fires (within five years)",
        );
    }
    if due.missed > logic::TOO_MANY_MISSED {
        events::warning(
            key,
            "TooManyMissedTimes",
            &format!(
                "too many missed start times: > {}. Set or decrease .spec.startingDeadlineSeconds or check clock skew",
                logic::TOO_MANY_MISSED
            ),
        );
    }
    let Some(t) = due.scheduled else {
        return Ok((None, due.next));
    };
    let when = meta::format_time(t);
    if due.too_late {
        events::warning(
            key,
            "MissSchedule",
            &format!("Missed scheduled time to start a job: {when}"),
        );
        return Ok((None, due.next));
    }
    let name = logic::job_name(cj, t);
    // Already started (a reconcile whose status write was lost): the
    // deterministic name says so.
    if jobs.iter().any(|j| name_of(j) == name) {
        return Ok((Some(t), due.next));
    }
    match logic::action(cj, active.len()) {
        Action::Skip => {
            log::debug(&format!(
                "{key}: not starting the run of {when}: a previous one still runs (Forbid)"
            ));
            events::normal(
                key,
                "JobAlreadyActive",
                &format!("Not starting job for {when} because a previous one is still running"),
            );
            // Not recorded as scheduled: it is started later if a Job ends
            // before the next run (and the starting deadline allows).
            return Ok((None, due.next));
        }
        Action::Replace => {
            for job in active.drain(..) {
                delete_job(key, namespace, &name_of(&job))?;
            }
        }
        Action::Start => {}
    }
    match objects::create(JOBS, &logic::job_from_template(cj, t)) {
        Ok(job) => {
            events::normal(key, "SuccessfulCreate", &format!("Created job {name}"));
            active.push(job);
            Ok((Some(t), due.next))
        }
        Err(Error::Conflict(_)) => {
            // Created meanwhile under the same name: ours if we control it.
            let existing: Value =
                objects::get(&ObjectRef::namespaced(JOBS, namespace, name.as_str()))?;
            if meta::is_controlled_by(&existing, cj["metadata"]["uid"].as_str().unwrap_or("")) {
                if logic::outcome(&existing).is_none() {
                    active.push(existing);
                }
                Ok((Some(t), due.next))
            } else {
                events::warning(
                    key,
                    "FailedCreate",
                    &format!(
                        "Error creating job {name}: a Job of that name exists and is not this CronJob's"
                    ),
                );
                Ok((None, due.next))
            }
        }
        Err(e) => {
            events::warning(key, "FailedCreate", &format!("Error creating job: {e}"));
            Err(e.into())
        }
    }
}

/// Deletes a Job of the CronJob (background propagation, the API's
/// default: its pods follow through the garbage collector).
fn delete_job(key: &ObjectRef, namespace: &str, name: &str) -> Result<(), Error> {
    match objects::delete(&ObjectRef::namespaced(JOBS, namespace, name)) {
        Ok(()) => {
            events::normal(key, "SuccessfulDelete", &format!("Deleted job {name}"));
            Ok(())
        }
        Err(Error::NotFound(_)) => Ok(()),
        Err(e) => Err(e),
    }
}

orchd_sdk::export_controller!(CronJobs);
