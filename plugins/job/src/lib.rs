//! The job controller, as Kubernetes' controller-manager runs it: a Job
//! runs pods from its template until enough of them succeed.
//!
//! - `completions` (default 1) pods must succeed, at most `parallelism`
//!   (default 1) running at once. With `completions` unset the Job is a
//!   work queue: `parallelism` pods start, none start after the first
//!   success, and the Job completes once one succeeded and all finished.
//!   (Indexed completion mode, pod failure policies, success policies
//!   and `backoffLimitPerIndex` are not implemented: every Job runs as
//!   `NonIndexed`.)
//! - Failed pods are replaced after a backoff of 10 s doubling per
//!   failure since the last success, capped at 6 min, counted from the
//!   last pod's failure (the reconcile is requeued until then). More
//!   failed pods than `backoffLimit` (default 6) fail the Job
//!   (`BackoffLimitExceeded`); running longer than `activeDeadlineSeconds`
//!   from `startTime` too (`DeadlineExceeded`). A failing or completing
//!   Job stops its remaining pods; the verdict first shows as the
//!   `FailureTarget` or `SuccessCriteriaMet` condition, then, once no pod
//!   is left running, as `Failed` or `Complete` (with `completionTime`).
//! - `suspend`: every active pod is deleted and the `Suspended` condition
//!   set; on resume `startTime` restarts, so the deadline counts from then.
//! - Pods are named `<job>-<5 random characters>`, controlled by the Job,
//!   and labeled `batch.kubernetes.io/job-name`,
//!   `batch.kubernetes.io/controller-uid` and the legacy `job-name`,
//!   `controller-uid`. Finished pods are kept while the Job exists, and
//!   the status counts them: active, ready, succeeded, failed,
//!   terminating, with startTime and completionTime.
//! - `ttlSecondsAfterFinished` (Kubernetes' separate TTL-after-finished
//!   controller, folded in here): a finished Job is deleted that long after
//!   it finished, in the background, so the garbage collector then
//!   deletes its pods.
//!
//! It reconciles `jobs.batch` and watches pods, mapped to their
//! controlling Job. Capabilities: `read: jobs.batch, pods`,
//! `write: jobs.batch, pods`.

mod logic;

use std::time::{Duration, Instant};

use logic::Finish;
use orchd_sdk::controller::{BoxError, Controller, ControllerSpec, ReconcileResult};
use orchd_sdk::objects::{self, Error, ObjectRef};
use orchd_sdk::serde_json::Value;
use orchd_sdk::{events, meta};

/// The resource this controller reconciles.
const JOBS: &str = "jobs.batch";

/// How long one reconcile may spend writing before it leaves the rest to
/// the next call: well inside the default 1 s call deadline.
const WRITE_BUDGET: Duration = Duration::from_millis(400);

/// How often a Job whose verdict is in looks again at its pods still
/// terminating (their deletion maps back to it too; this is a safety net).
const SETTLE_POLL: Duration = Duration::from_millis(500);

struct Jobs;

impl Controller for Jobs {
    fn setup(_config: &str) -> Result<ControllerSpec, BoxError> {
        Ok(ControllerSpec::new(JOBS).watch_owned("pods", "Job"))
    }

    fn reconcile(key: ObjectRef) -> Result<ReconcileResult, BoxError> {
        match sync(&key) {
            // Someone else wrote the Job or a pod meanwhile: that change
            // queues the Job again, to be looked at afresh.
            Err(e) if e.downcast_ref::<Error>().is_some_and(Error::is_conflict) => {
                Ok(ReconcileResult::requeue_after(Duration::from_millis(100)))
            }
            other => other,
        }
    }
}

/// A requeue at Unix time `at` (whole seconds, `now` rounded down: a little
/// later, so the time has surely come).
fn requeue_at(at: i64, now: i64) -> ReconcileResult {
    let secs = u64::try_from(at.saturating_sub(now)).unwrap_or(0);
    ReconcileResult::requeue_after(Duration::from_secs(secs) + Duration::from_millis(100))
}

/// One reconcile of the Job at `key`.
fn sync(key: &ObjectRef) -> Result<ReconcileResult, BoxError> {
    let started_at = Instant::now();
    let job: Value = match objects::get(key) {
        Ok(j) => j,
        Err(Error::NotFound(_)) => return Ok(ReconcileResult::Done),
        Err(e) => return Err(e.into()),
    };
    let Some(namespace) = key.namespace.as_deref() else {
        return Ok(ReconcileResult::Done);
    };
    // Being deleted: the garbage collector takes its pods.
    if meta::is_deleting(&job) {
        return Ok(ReconcileResult::Done);
    }
    let now = meta::now_unix();
    if let Some(finished) = logic::finished_at(&job) {
        return expire(key, &job, finished, now);
    }

    let uid = job["metadata"]["uid"].as_str().unwrap_or_default();
    let selector = meta::selector_string(&job["spec"]["selector"]);
    if selector.is_empty() {
        // The API generates a selector; an empty one would take every pod.
        events::warning(key, "InvalidSelector", "The Job has no pod selector.");
        return Ok(ReconcileResult::Done);
    }
    let pods: Vec<Value> = objects::list::<Value>("pods", Some(namespace), &selector)?
        .into_iter()
        .filter(|p| meta::is_controlled_by(p, uid))
        .collect();

    let resuming = logic::has_true(&job["status"], "Suspended") && !logic::is_suspended(&job);
    let started = if logic::is_suspended(&job) {
        logic::start_time(&job)
    } else if resuming {
        Some(now)
    } else {
        logic::start_time(&job).or(Some(now))
    };
    let plan = logic::plan(&job, &pods, started, now);
    let mut counts = logic::counts(&pods);
    let mut out_of_time = false;

    for name in &plan.delete {
        if started_at.elapsed() > WRITE_BUDGET {
            out_of_time = true;
            break;
        }
        match objects::delete(&ObjectRef::namespaced("pods", namespace, name.as_str())) {
            Ok(()) | Err(Error::NotFound(_)) => {
                events::normal(key, "SuccessfulDelete", &format!("Deleted pod: {name}"));
                counts.active -= 1;
                // Whether it was ready no longer matters: it is gone.
                counts.ready = counts.ready.min(counts.active);
            }
            Err(e) => {
                events::warning(key, "FailedDelete", &format!("Error deleting: {e}"));
                return Err(e.into());
            }
        }
    }
    let mut failed_create = false;
    for _ in 0..plan.create {
        if started_at.elapsed() > WRITE_BUDGET {
            out_of_time = true;
            break;
        }
        match create_pod(&job) {
            Ok(pod) => {
                let name = pod["metadata"]["name"].as_str().unwrap_or_default();
                events::normal(key, "SuccessfulCreate", &format!("Created pod: {name}"));
                counts.active += 1;
            }
            Err(e) => {
                // One failure (a bad template, a quota) stops the rest
                // rather than repeating it many times.
                events::warning(key, "FailedCreate", &format!("Error creating: {e}"));
                failed_create = true;
                break;
            }
        }
    }

    let settled = counts.active == 0 && counts.terminating == 0 && !out_of_time;
    let status = logic::status(&job, counts, started, plan.finish.as_ref(), settled, now);
    if status != job["status"] {
        let mut updated = job.clone();
        updated["status"] = status;
        match objects::update_status(JOBS, &updated) {
            Ok(_) | Err(Error::NotFound(_)) => {}
            Err(e) => return Err(e.into()),
        }
        // The Job was not finished when this reconcile began (see above):
        // it finishes now.
        if settled {
            match &plan.finish {
                Some(Finish::Complete) => events::normal(key, "Completed", "Job completed"),
                Some(Finish::Failed { reason, message }) => {
                    events::warning(key, reason, message);
                }
                None => {}
            }
        }
    }

    if out_of_time {
        return Ok(ReconcileResult::RequeueAfter(0));
    }
    if failed_create {
        return Err("creating a pod failed; retrying with backoff".into());
    }
    if plan.finish.is_some() && !settled {
        return Ok(ReconcileResult::requeue_after(SETTLE_POLL));
    }
    if plan.finish.is_some() {
        // Finished now: the TTL, if any, counts from here.
        return Ok(match logic::expires_at(&job, now) {
            Some(at) => requeue_at(at, now),
            None => ReconcileResult::Done,
        });
    }
    Ok(match plan.requeue_at {
        Some(at) => requeue_at(at, now),
        None => ReconcileResult::Done,
    })
}

/// A finished Job: deletes it once its `ttlSecondsAfterFinished` ran out
/// (background propagation, the API's default, so its pods follow).
fn expire(
    key: &ObjectRef,
    job: &Value,
    finished: i64,
    now: i64,
) -> Result<ReconcileResult, BoxError> {
    let Some(at) = logic::expires_at(job, finished) else {
        return Ok(ReconcileResult::Done);
    };
    if now < at {
        return Ok(requeue_at(at, now));
    }
    match objects::delete(key) {
        Ok(()) | Err(Error::NotFound(_)) => Ok(ReconcileResult::Done),
        Err(e) => Err(e.into()),
    }
}

/// Creates one pod from the template; a generated name that happens to be
/// taken is tried again with another.
fn create_pod(job: &Value) -> Result<Value, Error> {
    let pod = logic::pod_from_template(job);
    match objects::create("pods", &pod) {
        Err(Error::Conflict(_)) => objects::create("pods", &pod),
        other => other,
    }
}

orchd_sdk::export_controller!(Jobs);
