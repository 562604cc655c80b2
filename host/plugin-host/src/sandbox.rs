//! What one plugin instance may use: its store data (WASI context with no
//! preopens, no environment, no sockets, no inherited stdio), its memory and
//! table limits, and where its output goes.

use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::Bytes;
use wasmtime::{ResourceLimiter, StoreLimits, StoreLimitsBuilder};
use wasmtime_wasi::cli::{IsTerminal, StdoutStream};
use wasmtime_wasi::p2::{OutputStream, Pollable, StreamResult};
use wasmtime_wasi::{ResourceTable, WasiCtx, WasiCtxView, WasiView};

/// Severity of a plugin's log line.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum LogLevel {
    /// Chatter for plugin authors.
    Debug,
    /// Normal operation.
    Info,
    /// Something odd the operator may want to see.
    Warn,
    /// Something failed.
    Error,
}

impl LogLevel {
    /// Lower-case name as printed in the host log.
    pub fn as_str(self) -> &'static str {
        match self {
            LogLevel::Debug => "debug",
            LogLevel::Info => "info",
            LogLevel::Warn => "warn",
            LogLevel::Error => "error",
        }
    }
}

/// Where plugin log lines go: `(plugin name, level, message)`.
pub type LogSink = Arc<dyn Fn(&str, LogLevel, &str) + Send + Sync>;

/// A sink printing `orchd: plugin NAME: [level] message` to stderr,
/// leaving out debug lines unless `ORCHD_PLUGIN_DEBUG` is set.
pub fn stderr_sink() -> LogSink {
    let debug = std::env::var_os("ORCHD_PLUGIN_DEBUG").is_some();
    Arc::new(move |plugin, level, message| {
        if level > LogLevel::Debug || debug {
            eprintln!("orchd: plugin {plugin}: [{}] {message}", level.as_str());
        }
    })
}

/// Longest log line kept; the rest is cut so one call cannot flood the log.
const MAX_LINE: usize = 4096;

/// Output bytes one instance may write to stdout and stderr together before
/// the rest is dropped: a guest printing in a loop must not fill the disk.
const MAX_OUTPUT_PER_INSTANCE: usize = 1 << 20;

/// Resource limits of one plugin instance and its calls.
#[derive(Clone, Debug)]
pub struct Limits {
    /// Largest linear memory, in bytes; growing past it traps.
    pub memory_bytes: usize,
    /// Largest table, in elements.
    pub table_elements: usize,
    /// Longest a single call into the plugin may run before it is stopped.
    pub call_deadline: Duration,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            // Fits Rust and C guests with room for large node lists; Python
            // and JavaScript guests start at 9-13 MiB and need a manifest
            // that raises it when they hold big caches.
            memory_bytes: 128 << 20,
            table_elements: 100_000,
            call_deadline: Duration::from_secs(1),
        }
    }
}

impl Limits {
    /// The defaults for a plugin of `world`. A controller reconciles one
    /// object but may read thousands from the cache (a ReplicaSet of
    /// 10,000 pods) and runs beside everything else on a loaded machine:
    /// the deadline is wall-clock time, so 1 s livelocked a controller
    /// whose reconcile needed just over it under contention. 10 s still
    /// stops a looping controller. A scheduler's call is one decision and
    /// keeps the tight default; admission reviews have their own timeout.
    pub fn for_world(world: &str) -> Self {
        let mut limits = Limits::default();
        if world == crate::world::World::Controller.name() {
            limits.call_deadline = CONTROLLER_CALL_DEADLINE;
        }
        limits
    }
}

/// The default deadline of one call into a controller.
pub const CONTROLLER_CALL_DEADLINE: Duration = Duration::from_secs(10);

/// Memory and table limits, remembering whether the memory cap was hit so
/// a failure can be reported as out-of-memory rather than a bare trap.
pub(crate) struct Limiter {
    inner: StoreLimits,
    pub(crate) memory_exhausted: bool,
}

impl ResourceLimiter for Limiter {
    fn memory_growing(
        &mut self,
        current: usize,
        desired: usize,
        maximum: Option<usize>,
    ) -> wasmtime::Result<bool> {
        let answer = self.inner.memory_growing(current, desired, maximum);
        if !matches!(answer, Ok(true)) {
            self.memory_exhausted = true;
        }
        answer
    }

    fn memory_grow_failed(&mut self, error: wasmtime::Error) -> wasmtime::Result<()> {
        self.memory_exhausted = true;
        self.inner.memory_grow_failed(error)
    }

    fn table_growing(
        &mut self,
        current: usize,
        desired: usize,
        maximum: Option<usize>,
    ) -> wasmtime::Result<bool> {
        self.inner.table_growing(current, desired, maximum)
    }

    fn table_grow_failed(&mut self, error: wasmtime::Error) -> wasmtime::Result<()> {
        self.inner.table_grow_failed(error)
    }

    fn instances(&self) -> usize {
        self.inner.instances()
    }

    fn tables(&self) -> usize {
        self.inner.tables()
    }

    fn memories(&self) -> usize {
        self.inner.memories()
    }
}

/// The data of one plugin instance's `Store`.
pub struct HostState {
    pub(crate) plugin: Arc<str>,
    wasi: WasiCtx,
    table: ResourceTable,
    pub(crate) limiter: Limiter,
    pub(crate) log: LogSink,
    pub(crate) output: Arc<Mutex<OutputState>>,
    /// The plugin's way to the cluster's objects and events (controllers);
    /// `None` for worlds that import no such host calls.
    pub(crate) access: Option<Arc<crate::access::ObjectAccess>>,
    /// The node's runtime as a node policy's host calls see it; `None`
    /// for other worlds.
    pub(crate) node: Option<Arc<crate::node_policy::NodeAccess>>,
}

impl HostState {
    /// Fresh state for an instance of `plugin`: WASI with nothing granted
    /// (no preopened directories, no environment or arguments, sockets
    /// denied by wasmtime-wasi's defaults, stdin closed) and stdout/stderr
    /// forwarded line by line into the host log.
    pub(crate) fn new(
        plugin: Arc<str>,
        limits: &Limits,
        log: LogSink,
        access: Option<Arc<crate::access::ObjectAccess>>,
    ) -> Self {
        let output = Arc::new(Mutex::new(OutputState::default()));
        let mut wasi = WasiCtx::builder();
        wasi.stdout(LogStream::new(
            plugin.clone(),
            "stdout",
            log.clone(),
            output.clone(),
        ))
        .stderr(LogStream::new(
            plugin.clone(),
            "stderr",
            log.clone(),
            output.clone(),
        ))
        .allow_ip_name_lookup(false)
        .allow_tcp(false)
        .allow_udp(false);
        HostState {
            plugin,
            wasi: wasi.build(),
            table: ResourceTable::new(),
            limiter: Limiter {
                inner: StoreLimitsBuilder::new()
                    .memory_size(limits.memory_bytes)
                    .table_elements(limits.table_elements)
                    .instances(64)
                    .memories(16)
                    .tables(64)
                    .trap_on_grow_failure(true)
                    .build(),
                memory_exhausted: false,
            },
            log,
            output,
            access,
            node: None,
        }
    }

    /// Sends one line from the plugin to the host log.
    pub(crate) fn log(&self, level: LogLevel, message: &str) {
        let message = truncate(message, MAX_LINE);
        (self.log)(&self.plugin, level, message);
    }

    /// The last line the guest wrote to stderr (a Rust guest's panic
    /// message, typically), for error reports.
    pub(crate) fn last_stderr_line(&self) -> Option<String> {
        self.output.lock().ok()?.last_stderr.clone()
    }
}

impl WasiView for HostState {
    fn ctx(&mut self) -> WasiCtxView<'_> {
        WasiCtxView {
            ctx: &mut self.wasi,
            table: &mut self.table,
        }
    }
}

/// Output bookkeeping shared by an instance's stdout and stderr.
#[derive(Default)]
pub(crate) struct OutputState {
    written: usize,
    truncated: bool,
    last_stderr: Option<String>,
}

/// A guest output stream that turns lines into host log lines.
#[derive(Clone)]
struct LogStream {
    plugin: Arc<str>,
    name: &'static str,
    log: LogSink,
    output: Arc<Mutex<OutputState>>,
    line: Arc<Mutex<Vec<u8>>>,
}

impl LogStream {
    fn new(
        plugin: Arc<str>,
        name: &'static str,
        log: LogSink,
        output: Arc<Mutex<OutputState>>,
    ) -> Self {
        LogStream {
            plugin,
            name,
            log,
            output,
            line: Arc::new(Mutex::new(Vec::new())),
        }
    }

    /// Accepts everything the guest writes (so a guest never fails on a
    /// print), logging whole lines and dropping what is over the budget.
    fn accept(&self, bytes: &[u8]) {
        let (Ok(mut output), Ok(mut line)) = (self.output.lock(), self.line.lock()) else {
            return;
        };
        let room = MAX_OUTPUT_PER_INSTANCE.saturating_sub(output.written);
        if room == 0 {
            if !output.truncated {
                output.truncated = true;
                (self.log)(
                    &self.plugin,
                    LogLevel::Warn,
                    "output limit reached: further stdout/stderr of this instance is dropped",
                );
            }
            return;
        }
        let bytes = &bytes[..bytes.len().min(room)];
        output.written += bytes.len();
        for &b in bytes {
            if b == b'\n' || line.len() >= MAX_LINE {
                self.emit(&mut output, &line);
                line.clear();
                if b == b'\n' {
                    continue;
                }
            }
            line.push(b);
        }
    }

    fn emit(&self, output: &mut OutputState, line: &[u8]) {
        let text = String::from_utf8_lossy(line);
        let text = text.trim_end_matches('\r');
        let level = if self.name == "stderr" {
            // Rust's panic output ends with a hint about RUST_BACKTRACE;
            // the panic message before it is the cause worth reporting.
            if !(text.starts_with("note: ") && output.last_stderr.is_some()) {
                output.last_stderr = Some(text.to_string());
            }
            LogLevel::Warn
        } else {
            LogLevel::Info
        };
        (self.log)(&self.plugin, level, &format!("{}: {text}", self.name));
    }
}

impl IsTerminal for LogStream {
    fn is_terminal(&self) -> bool {
        false
    }
}

impl StdoutStream for LogStream {
    fn p2_stream(&self) -> Box<dyn OutputStream> {
        Box::new(self.clone())
    }

    fn async_stream(&self) -> Box<dyn tokio::io::AsyncWrite + Send + Sync> {
        Box::new(self.clone())
    }
}

impl OutputStream for LogStream {
    fn write(&mut self, bytes: Bytes) -> StreamResult<()> {
        self.accept(&bytes);
        Ok(())
    }

    fn flush(&mut self) -> StreamResult<()> {
        Ok(())
    }

    fn check_write(&mut self) -> StreamResult<usize> {
        Ok(64 * 1024)
    }
}

#[async_trait::async_trait]
impl Pollable for LogStream {
    async fn ready(&mut self) {}
}

impl tokio::io::AsyncWrite for LogStream {
    fn poll_write(
        self: Pin<&mut Self>,
        _cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        self.accept(buf);
        Poll::Ready(Ok(buf.len()))
    }

    fn poll_flush(self: Pin<&mut Self>, _cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Poll::Ready(Ok(()))
    }

    fn poll_shutdown(self: Pin<&mut Self>, _cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Poll::Ready(Ok(()))
    }
}

/// `s` cut to at most `max` bytes on a character boundary.
pub(crate) fn truncate(s: &str, max: usize) -> &str {
    if s.len() <= max {
        return s;
    }
    let mut end = max;
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    &s[..end]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn controllers_get_a_longer_default_deadline_than_schedulers() {
        assert_eq!(
            Limits::for_world("controller").call_deadline,
            CONTROLLER_CALL_DEADLINE
        );
        assert_eq!(
            Limits::for_world("scheduler").call_deadline,
            Limits::default().call_deadline
        );
        assert!(Limits::default().call_deadline < CONTROLLER_CALL_DEADLINE);
    }
}
