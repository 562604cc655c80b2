//! Supervision of one plugin's instance: a failed call (trap, missed
//! deadline, memory cap) poisons only that instance; the next call gets a
//! fresh one, with exponential backoff while failures keep coming. Every
//! failure is returned to the caller as a value.

use std::sync::Arc;
use std::time::{Duration, Instant};

use wasmtime::{Engine, Store, Trap};

use crate::PluginError;
use crate::engine::{EPOCH_TICK, one_line};
use crate::sandbox::{HostState, Limits, LogLevel, LogSink};

/// First delay before a restart after two failures in a row.
const BACKOFF_START: Duration = Duration::from_millis(100);
/// Longest delay between restarts.
const BACKOFF_MAX: Duration = Duration::from_secs(30);

/// Builds the typed bindings of a fresh instance in `store`.
pub type Instantiate<B> =
    Box<dyn Fn(&mut Store<HostState>) -> wasmtime::Result<B> + Send + Sync + 'static>;

/// Counters and state of a supervised plugin, for status reports.
#[derive(Clone, Debug, Default)]
pub struct SupervisorStatus {
    /// Instances started to replace a failed one.
    pub restarts: u64,
    /// Failures since the last successful call.
    pub consecutive_failures: u32,
    /// The most recent failure.
    pub last_error: Option<PluginError>,
    /// Calls made while backing off are refused until then.
    pub retry_at: Option<Instant>,
}

struct Live<B> {
    store: Store<HostState>,
    bindings: B,
}

/// A plugin instance under supervision, with bindings of type `B`.
///
/// Calls are synchronous and may run for up to the call deadline: run them
/// on a blocking thread, never on an async runtime's worker.
pub struct Supervised<B> {
    name: Arc<str>,
    engine: Engine,
    limits: Limits,
    log: LogSink,
    instantiate: Instantiate<B>,
    live: Option<Live<B>>,
    /// Instances started so far; the live one is number `started`.
    started: u64,
    status: SupervisorStatus,
    access: Option<Arc<crate::access::ObjectAccess>>,
}

impl<B> Supervised<B> {
    /// Supervises instances of plugin `name` made by `instantiate`.
    /// Nothing is instantiated until the first call (or [`Self::warm`]).
    pub fn new(
        name: &str,
        engine: Engine,
        limits: Limits,
        log: LogSink,
        instantiate: Instantiate<B>,
    ) -> Self {
        Supervised {
            name: name.into(),
            engine,
            limits,
            log,
            instantiate,
            live: None,
            started: 0,
            status: SupervisorStatus::default(),
            access: None,
        }
    }

    /// Gives every instance `access` to objects and events (for worlds
    /// that import them).
    pub fn with_access(mut self, access: Arc<crate::access::ObjectAccess>) -> Self {
        self.access = Some(access);
        self
    }

    /// The plugin's name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// Restarts, failures and the last error.
    pub fn status(&self) -> &SupervisorStatus {
        &self.status
    }

    /// Which instance is live, if one is: a number that changes with
    /// every new instance, so callers that fill an instance's state can
    /// tell that a failure replaced it.
    pub fn instance(&self) -> Option<u64> {
        self.live.as_ref().map(|_| self.started)
    }

    /// The limits every instance and call gets.
    pub fn limits(&self) -> &Limits {
        &self.limits
    }

    /// Instantiates now, so that the first real call does not pay for it
    /// and a component that cannot start is reported at load time.
    pub fn warm(&mut self) -> Result<(), PluginError> {
        self.ensure_live().map(|_| ())
    }

    /// Calls into the plugin through `f`, under the call deadline. A failure
    /// drops the instance (wasmtime poisons an instance that trapped) and
    /// schedules the restart; while backing off, calls fail at once with
    /// [`PluginError::BackingOff`].
    pub fn call<R>(
        &mut self,
        call: &str,
        f: impl FnOnce(&B, &mut Store<HostState>) -> wasmtime::Result<R>,
    ) -> Result<R, PluginError> {
        self.call_with(call, f, true)
    }

    /// Like [`Self::call`], but a success does not end a run of failures:
    /// for a call that only prepares the one that does the work (a
    /// scheduler's `update` before `schedule`), so that a plugin failing
    /// at the work still backs off.
    pub fn call_preparing<R>(
        &mut self,
        call: &str,
        f: impl FnOnce(&B, &mut Store<HostState>) -> wasmtime::Result<R>,
    ) -> Result<R, PluginError> {
        self.call_with(call, f, false)
    }

    fn call_with<R>(
        &mut self,
        call: &str,
        f: impl FnOnce(&B, &mut Store<HostState>) -> wasmtime::Result<R>,
        settles: bool,
    ) -> Result<R, PluginError> {
        let ticks = deadline_ticks(self.limits.call_deadline);
        let live = self.ensure_live()?;
        live.store.set_epoch_deadline(ticks);
        live.store.data_mut().limiter.memory_exhausted = false;
        match f(&live.bindings, &mut live.store) {
            Ok(value) => {
                if settles {
                    self.status.consecutive_failures = 0;
                    self.status.retry_at = None;
                }
                Ok(value)
            }
            Err(e) => {
                let error = self.classify(call, &e);
                self.fail(error.clone());
                Err(error)
            }
        }
    }

    fn ensure_live(&mut self) -> Result<&mut Live<B>, PluginError> {
        if self.live.is_none() {
            if let Some(at) = self.status.retry_at {
                let now = Instant::now();
                if now < at {
                    return Err(PluginError::BackingOff {
                        plugin: self.name.to_string(),
                        retry_in: at - now,
                        failures: self.status.consecutive_failures,
                        last: self
                            .status
                            .last_error
                            .as_ref()
                            .map(|e| e.to_string())
                            .unwrap_or_default(),
                    });
                }
            }
            let failed_before = self.status.consecutive_failures > 0;
            if failed_before {
                self.status.restarts += 1;
            }
            let mut store = Store::new(
                &self.engine,
                HostState::new(
                    self.name.clone(),
                    &self.limits,
                    self.log.clone(),
                    self.access.clone(),
                ),
            );
            store.limiter(|state| &mut state.limiter);
            store.set_epoch_deadline(deadline_ticks(self.limits.call_deadline));
            match (self.instantiate)(&mut store) {
                Ok(bindings) => {
                    if failed_before {
                        (self.log)(
                            &self.name,
                            LogLevel::Warn,
                            &format!(
                                "restarted (restart {}, after {} failure(s) in a row)",
                                self.status.restarts, self.status.consecutive_failures
                            ),
                        );
                    }
                    self.started += 1;
                    self.live = Some(Live { store, bindings });
                }
                Err(e) => {
                    let error = PluginError::Instantiate {
                        plugin: self.name.to_string(),
                        message: with_last_output(one_line(&e), store.data()),
                    };
                    self.fail(error.clone());
                    return Err(error);
                }
            }
        }
        match self.live.as_mut() {
            Some(live) => Ok(live),
            None => Err(PluginError::Internal("instance vanished".into())),
        }
    }

    fn classify(&self, call: &str, error: &wasmtime::Error) -> PluginError {
        let plugin = self.name.to_string();
        let state = self.live.as_ref().map(|l| l.store.data());
        if state.is_some_and(|s| s.limiter.memory_exhausted) {
            return PluginError::OutOfMemory {
                plugin,
                call: call.into(),
                limit_bytes: self.limits.memory_bytes,
            };
        }
        if let Some(Trap::Interrupt) = error.downcast_ref::<Trap>() {
            return PluginError::Deadline {
                plugin,
                call: call.into(),
                deadline: self.limits.call_deadline,
            };
        }
        let message = match error.downcast_ref::<Trap>() {
            Some(trap) => trap.to_string(),
            None => one_line(error),
        };
        PluginError::Trap {
            plugin,
            call: call.into(),
            message: match state {
                Some(s) => with_last_output(message, s),
                None => message,
            },
        }
    }

    fn fail(&mut self, error: PluginError) {
        self.live = None;
        self.status.consecutive_failures = self.status.consecutive_failures.saturating_add(1);
        let delay = backoff(self.status.consecutive_failures);
        self.status.retry_at = Some(Instant::now() + delay);
        (self.log)(
            &self.name,
            LogLevel::Error,
            &format!(
                "{error}; instance discarded, next start in {} ms",
                delay.as_millis()
            ),
        );
        self.status.last_error = Some(error);
    }
}

/// Delay before the next instance after `failures` failures in a row: the
/// first restart is immediate (one bad input should not stall the plugin),
/// then 100 ms doubling up to 30 s.
pub fn backoff(failures: u32) -> Duration {
    if failures <= 1 {
        return Duration::ZERO;
    }
    let doublings = (failures - 2).min(20);
    BACKOFF_START
        .saturating_mul(1u32 << doublings)
        .min(BACKOFF_MAX)
}

/// Epoch ticks for `deadline`, rounded up, at least one.
fn deadline_ticks(deadline: Duration) -> u64 {
    let tick = EPOCH_TICK.as_nanos().max(1);
    let ticks = deadline.as_nanos().div_ceil(tick);
    u64::try_from(ticks).unwrap_or(u64::MAX).max(1)
}

/// Adds the guest's last stderr line (a Rust panic message, typically) to
/// an error message.
fn with_last_output(message: String, state: &HostState) -> String {
    match state.last_stderr_line() {
        Some(line) if !line.is_empty() => format!("{message} (last stderr: {line})"),
        _ => message,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_doubles_from_100ms_to_30s() {
        assert_eq!(backoff(1), Duration::ZERO);
        assert_eq!(backoff(2), Duration::from_millis(100));
        assert_eq!(backoff(3), Duration::from_millis(200));
        assert_eq!(backoff(4), Duration::from_millis(400));
        assert_eq!(backoff(10), Duration::from_millis(25_600));
        assert_eq!(backoff(11), Duration::from_secs(30));
        assert_eq!(backoff(u32::MAX), Duration::from_secs(30));
    }

    #[test]
    fn deadlines_round_up_to_ticks() {
        assert_eq!(deadline_ticks(Duration::ZERO), 1);
        assert_eq!(deadline_ticks(Duration::from_millis(10)), 1);
        assert_eq!(deadline_ticks(Duration::from_millis(11)), 2);
        assert_eq!(deadline_ticks(Duration::from_secs(1)), 100);
    }
}
