//! orchd's embedded container runtime: runs `wasi:cli` command components
//! as containers, in-process on wasmtime. It needs nothing installed.
//!
//! * **Image**: a component file. `file:///abs/path.wasm` names one
//!   directly; any other image `NAME[:TAG]` is looked up as
//!   `<images dir>/NAME.wasm` (the tag is ignored: a local file has one
//!   version), see [`resolve_image`].
//! * **Process**: `command` then `args` become the guest's arguments after
//!   argv\[0\] (the image name), `env` its environment. No directories are
//!   preopened: a wasm container sees its arguments, environment, clocks,
//!   randomness, stdout/stderr and TCP sockets (`wasi:sockets`, no UDP, no
//!   name lookup). Wasm pods share the host's network (their pod IP is
//!   127.0.0.1), so a container may listen on a host port: that is what
//!   httpGet and tcpSocket probes reach.
//! * **Exec** ([`WasmRuntime::exec`]): a wasm container has no processes
//!   to join, so running a command "in" it starts a NEW instance of the
//!   container's own component with the command as its whole argv (the
//!   first word is argv\[0\], as for a multi-call binary), the
//!   container's environment and limits, the given stdin, and its
//!   stdout/stderr captured; the instance shares nothing with the running
//!   one but the network.
//! * **Output**: stdout and stderr go line by line into the container's log
//!   file, each line as `RFC3339-nano-timestamp STREAM text` (the CRI log
//!   format without its partial-line tag).
//! * **Limits**: `memory_limit` caps linear memory (growing past it traps,
//!   reported as [`ExitReason::OomKilled`]); `cpu_millis` throttles the
//!   guest thread to that share of one core, measured from the thread's own
//!   CPU time at each epoch tick; [`Stopper::stop`] ends a guest through
//!   epoch interruption at its next tick in Wasm code (a guest blocked in a
//!   host call such as a sleep stops when that call returns).
//! * **Exit codes** as for processes: `main` returning is 0, a failure
//!   exit 1 (WASI 0.2's `exit` carries success or failure only, so Rust's
//!   `exit(3)` arrives as 1; a guest using the unstable `exit-with-code`
//!   would need that import linked), a trap is 134 (as an abort), out of
//!   memory and being stopped are 137 (as SIGKILL).
//!
//! Each container runs on its own OS thread (the guest is synchronous
//! code), so no container ever blocks the async runtime.

mod log;

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime};

use jiff::Timestamp;
use wasmtime::component::{Component, InstancePre, Linker, ResourceTable};
use wasmtime::{Config, Engine, ResourceLimiter, Store, StoreLimits, StoreLimitsBuilder};
use wasmtime_wasi::p2::bindings::sync::CommandPre;
use wasmtime_wasi::{WasiCtx, WasiCtxView, WasiView};

pub use log::{LogLine, parse_log_line};

/// The runtime's version, as nodes report it (`orchd-wasm://VERSION`).
pub const VERSION: &str = env!("CARGO_PKG_VERSION");

/// How often the engine's epoch advances: the granularity of stopping and
/// of CPU throttling.
pub const EPOCH_TICK: Duration = Duration::from_millis(10);

/// Linear memory a container gets when its spec sets no memory limit.
pub const DEFAULT_MEMORY_LIMIT: u64 = 512 << 20;

/// Most log bytes one container run writes; the rest is dropped (with one
/// line saying so), so a guest printing in a loop cannot fill the disk.
pub const MAX_LOG_BYTES: u64 = 10 << 20;

/// What to run.
#[derive(Clone, Debug)]
pub struct ContainerSpec {
    /// The component file (see [`resolve_image`]).
    pub image: PathBuf,
    /// argv\[0\], by convention the image name.
    pub program: String,
    /// The arguments after argv\[0\] (Kubernetes' `command` then `args`).
    pub args: Vec<String>,
    /// Environment variables.
    pub env: Vec<(String, String)>,
    /// Largest linear memory, in bytes ([`DEFAULT_MEMORY_LIMIT`] if none).
    pub memory_limit: Option<u64>,
    /// Share of one core the guest may use, in millicores (none: no limit).
    pub cpu_millis: Option<u64>,
    /// The log file (created, or appended to).
    pub log_path: PathBuf,
}

/// Why a container could not be started.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum StartError {
    /// The image file is missing or unreadable (Kubernetes: `ErrImagePull`).
    Image(String),
    /// The file is no runnable `wasi:cli` command component, or the
    /// container could not be set up (`CreateContainerError`).
    Create(String),
    /// The container was made but its process could not be started (runc:
    /// an executable that is not there or not executable, a cgroup setting
    /// the kernel refused). Kubernetes counts this as a run that ended at
    /// once: terminated with reason `StartError` and exit code 128
    /// ([`ExitReason::StartError`]), then restarted as the policy says.
    Start(String),
}

impl std::fmt::Display for StartError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            StartError::Image(m) | StartError::Create(m) | StartError::Start(m) => f.write_str(m),
        }
    }
}

/// Why a container ended.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ExitReason {
    /// Exit code 0.
    Completed,
    /// A non-zero exit or a trap.
    Error,
    /// It hit its memory limit.
    OomKilled,
    /// It was stopped ([`Stopper::stop`]).
    Killed,
    /// Its process never started ([`StartError::Start`]); the code is 128.
    StartError,
}

impl ExitReason {
    /// The Kubernetes `reason` of a terminated container state.
    pub fn as_k8s(self) -> &'static str {
        match self {
            ExitReason::Completed => "Completed",
            ExitReason::Error | ExitReason::Killed => "Error",
            ExitReason::OomKilled => "OOMKilled",
            ExitReason::StartError => "StartError",
        }
    }
}

/// How a container ended.
#[derive(Clone, Debug)]
pub struct Exit {
    /// The exit code, as a process's.
    pub code: i32,
    /// Why.
    pub reason: ExitReason,
    /// A one-line explanation for traps and limits.
    pub message: Option<String>,
    /// When it ended.
    pub finished_at: Timestamp,
}

/// Most bytes of stdout (and of stderr) an exec keeps; the rest is
/// dropped.
pub const MAX_EXEC_OUTPUT: usize = 4 << 20;

/// A command run in a new instance of a container's component (see the
/// crate doc).
#[derive(Clone, Debug)]
pub struct ExecSpec {
    /// The component file.
    pub image: PathBuf,
    /// The whole argv (its first word is argv\[0\]).
    pub argv: Vec<String>,
    /// Environment variables (the container's).
    pub env: Vec<(String, String)>,
    /// Largest linear memory (the container's limit).
    pub memory_limit: Option<u64>,
    /// Share of one core (the container's limit).
    pub cpu_millis: Option<u64>,
    /// What the command reads on stdin.
    pub stdin: Vec<u8>,
    /// How long it may run before it is stopped.
    pub timeout: Duration,
}

/// What an exec printed and how it ended.
#[derive(Clone, Debug)]
pub struct ExecResult {
    /// Its exit, as a container's.
    pub exit: Exit,
    /// Its stdout.
    pub stdout: Vec<u8>,
    /// Its stderr.
    pub stderr: Vec<u8>,
    /// Whether it was stopped because its timeout ran out.
    pub timed_out: bool,
}

/// Stops a running container.
#[derive(Clone, Debug)]
pub struct Stopper(Arc<AtomicBool>);

impl Stopper {
    /// Asks the guest to stop; it does at its next epoch tick in Wasm code.
    pub fn stop(&self) {
        self.0.store(true, Ordering::Relaxed);
    }
}

/// A started container.
pub struct Container {
    /// When the guest started running.
    pub started_at: Timestamp,
    stop: Stopper,
    exit: tokio::sync::oneshot::Receiver<Exit>,
    memory: Arc<AtomicU64>,
}

impl Container {
    /// The bytes of linear memory its instance holds now (kept up to date
    /// as the guest grows its memories): the wasm shim's working set.
    pub fn memory_gauge(&self) -> Arc<AtomicU64> {
        self.memory.clone()
    }

    /// A handle that stops it.
    pub fn stopper(&self) -> Stopper {
        self.stop.clone()
    }

    /// Waits for it to end.
    pub async fn wait(self) -> Exit {
        match self.exit.await {
            Ok(exit) => exit,
            // The thread died without reporting (a host bug): say so
            // rather than hang.
            Err(_) => Exit {
                code: 128,
                reason: ExitReason::Error,
                message: Some("the container's thread ended without an exit status".into()),
                finished_at: Timestamp::now(),
            },
        }
    }
}

/// The runtime: one wasmtime engine for every container of the node, and
/// its compiled components, keyed by file and modification time.
#[derive(Clone)]
pub struct WasmRuntime {
    engine: Engine,
    compiled: Arc<Mutex<HashMap<PathBuf, Prepared>>>,
    _ticker: Arc<Ticker>,
}

/// A compiled and linked component, with the modification time and size
/// of the file it came from.
type Prepared = (SystemTime, u64, InstancePre<State>);

/// Ends the epoch thread when the last runtime handle goes.
struct Ticker(Arc<AtomicBool>);

impl Drop for Ticker {
    fn drop(&mut self) {
        self.0.store(true, Ordering::Relaxed);
    }
}

impl WasmRuntime {
    /// A runtime with its own engine (component model and epoch
    /// interruption on, as the plugin host's) and epoch ticker thread.
    pub fn new() -> Result<Self, String> {
        let mut config = Config::new();
        config.wasm_component_model(true);
        config.epoch_interruption(true);
        config.consume_fuel(false);
        let engine =
            Engine::new(&config).map_err(|e| format!("cannot create the wasm engine: {e}"))?;
        let stop = Arc::new(AtomicBool::new(false));
        let weak = engine.weak();
        let thread_stop = stop.clone();
        std::thread::Builder::new()
            .name("orchd-node-epoch".into())
            .spawn(move || {
                while !thread_stop.load(Ordering::Relaxed) {
                    std::thread::sleep(EPOCH_TICK);
                    match weak.upgrade() {
                        Some(engine) => engine.increment_epoch(),
                        None => break,
                    }
                }
            })
            .map_err(|e| format!("cannot start the epoch ticker: {e}"))?;
        Ok(WasmRuntime {
            engine,
            compiled: Arc::new(Mutex::new(HashMap::new())),
            _ticker: Arc::new(Ticker(stop)),
        })
    }

    /// Compiles and links the component at `path`, or reuses the cached
    /// result for the same file unchanged. CPU-heavy: runs on the
    /// container's thread.
    fn prepare(&self, path: &Path) -> Result<InstancePre<State>, StartError> {
        let meta = std::fs::metadata(path).map_err(|e| {
            StartError::Image(format!(
                "image file {} is not readable: {e}",
                path.display()
            ))
        })?;
        let modified = meta.modified().unwrap_or(SystemTime::UNIX_EPOCH);
        if let Ok(cache) = self.compiled.lock()
            && let Some((m, len, pre)) = cache.get(path)
            && *m == modified
            && *len == meta.len()
        {
            return Ok(pre.clone());
        }
        let bytes = std::fs::read(path).map_err(|e| {
            StartError::Image(format!(
                "image file {} is not readable: {e}",
                path.display()
            ))
        })?;
        let component = Component::new(&self.engine, &bytes).map_err(|e| {
            StartError::Create(format!(
                "{} is not a valid wasm component: {}",
                path.display(),
                one_line(&e)
            ))
        })?;
        let mut linker: Linker<State> = Linker::new(&self.engine);
        wasmtime_wasi::p2::add_to_linker_sync(&mut linker)
            .map_err(|e| StartError::Create(format!("cannot link WASI: {}", one_line(&e))))?;
        let pre = linker.instantiate_pre(&component).map_err(|e| {
            StartError::Create(format!(
                "{} imports what this runtime does not provide: {}",
                path.display(),
                one_line(&e)
            ))
        })?;
        // A component without `wasi:cli/run` is a library, not a program.
        CommandPre::new(pre.clone()).map_err(|e| {
            StartError::Create(format!(
                "{} is not a wasi:cli command (no wasi:cli/run export): {}",
                path.display(),
                one_line(&e)
            ))
        })?;
        if let Ok(mut cache) = self.compiled.lock() {
            cache.insert(path.to_path_buf(), (modified, meta.len(), pre.clone()));
        }
        Ok(pre)
    }

    /// Starts a container: compiles (or reuses) its component on a new
    /// thread, and returns once the guest runs.
    pub async fn start(&self, spec: ContainerSpec) -> Result<Container, StartError> {
        let (ready_tx, ready_rx) = tokio::sync::oneshot::channel();
        let (exit_tx, exit_rx) = tokio::sync::oneshot::channel();
        let stop = Stopper(Arc::new(AtomicBool::new(false)));
        let memory = Arc::new(AtomicU64::new(0));
        let thread_memory = memory.clone();
        let runtime = self.clone();
        let thread_stop = stop.clone();
        std::thread::Builder::new()
            .name("orchd-wasm-container".into())
            .spawn(move || {
                let prepared = runtime.prepare(&spec.image).and_then(|pre| {
                    let log = log::LogFile::create(&spec.log_path, MAX_LOG_BYTES).map_err(|e| {
                        StartError::Create(format!(
                            "cannot create the log file {}: {e}",
                            spec.log_path.display()
                        ))
                    })?;
                    Ok((pre, log))
                });
                let (pre, log) = match prepared {
                    Ok(p) => p,
                    Err(e) => {
                        let _ = ready_tx.send(Err(e));
                        return;
                    }
                };
                let _ = ready_tx.send(Ok(Timestamp::now()));
                let io = Io {
                    stdin: None,
                    output: Output::Log(log),
                };
                let limits = Limits {
                    memory: spec.memory_limit,
                    cpu_millis: spec.cpu_millis,
                    gauge: Some(thread_memory),
                };
                let mut argv = vec![spec.program.clone()];
                argv.extend(spec.args.iter().cloned());
                let exit = run(
                    &runtime.engine,
                    &pre,
                    &argv,
                    &spec.env,
                    limits,
                    io,
                    &thread_stop,
                );
                let _ = exit_tx.send(exit);
            })
            .map_err(|e| StartError::Create(format!("cannot start a container thread: {e}")))?;
        let started_at = ready_rx.await.map_err(|_| {
            StartError::Create("the container thread ended before starting".into())
        })??;
        Ok(Container {
            started_at,
            stop,
            exit: exit_rx,
            memory,
        })
    }
}

impl WasmRuntime {
    /// Runs `spec` to its end in a new instance (see the crate doc) on a
    /// thread of its own; stops it when its timeout runs out. An error is
    /// a component that cannot be loaded.
    pub async fn exec(&self, spec: ExecSpec) -> Result<ExecResult, StartError> {
        let (tx, rx) = tokio::sync::oneshot::channel();
        let stop = Stopper(Arc::new(AtomicBool::new(false)));
        let runtime = self.clone();
        let thread_stop = stop.clone();
        let stdout = wasmtime_wasi::p2::pipe::MemoryOutputPipe::new(MAX_EXEC_OUTPUT);
        let stderr = wasmtime_wasi::p2::pipe::MemoryOutputPipe::new(MAX_EXEC_OUTPUT);
        let (out, err) = (stdout.clone(), stderr.clone());
        let timeout = spec.timeout;
        std::thread::Builder::new()
            .name("orchd-wasm-exec".into())
            .spawn(move || {
                let pre = match runtime.prepare(&spec.image) {
                    Ok(pre) => pre,
                    Err(e) => {
                        let _ = tx.send(Err(e));
                        return;
                    }
                };
                let io = Io {
                    stdin: Some(wasmtime_wasi::p2::pipe::MemoryInputPipe::new(spec.stdin)),
                    output: Output::Memory(out, err),
                };
                let limits = Limits {
                    memory: spec.memory_limit,
                    cpu_millis: spec.cpu_millis,
                    gauge: None,
                };
                let exit = run(
                    &runtime.engine,
                    &pre,
                    &spec.argv,
                    &spec.env,
                    limits,
                    io,
                    &thread_stop,
                );
                let _ = tx.send(Ok(exit));
            })
            .map_err(|e| StartError::Create(format!("cannot start an exec thread: {e}")))?;
        let mut rx = rx;
        let mut timed_out = false;
        let exit = tokio::select! {
            r = &mut rx => r,
            _ = tokio::time::sleep(timeout) => {
                timed_out = true;
                stop.stop();
                rx.await
            }
        };
        let exit =
            exit.map_err(|_| StartError::Create("the exec thread ended without an exit".into()))??;
        Ok(ExecResult {
            exit,
            stdout: stdout.contents().to_vec(),
            stderr: stderr.contents().to_vec(),
            timed_out,
        })
    }
}

/// The standard streams of one instance.
struct Io {
    /// None: an empty stdin.
    stdin: Option<wasmtime_wasi::p2::pipe::MemoryInputPipe>,
    output: Output,
}

/// Where stdout and stderr go.
enum Output {
    /// Into the container's log file.
    Log(log::LogFile),
    /// Kept in memory (stdout, stderr).
    Memory(
        wasmtime_wasi::p2::pipe::MemoryOutputPipe,
        wasmtime_wasi::p2::pipe::MemoryOutputPipe,
    ),
}

/// The resource limits of one instance.
#[derive(Clone)]
struct Limits {
    memory: Option<u64>,
    cpu_millis: Option<u64>,
    /// Where the instance's linear memory size is kept (for the node's
    /// pod stats); none for exec instances.
    gauge: Option<Arc<AtomicU64>>,
}

/// The file an image names: `file:///abs/path.wasm`, or `NAME[:TAG]` as
/// `images_dir/NAME.wasm`. Names with path separators or `..` are refused
/// (an image name must not reach outside the image directory).
pub fn resolve_image(image: &str, images_dir: &Path) -> Result<PathBuf, StartError> {
    if let Some(path) = image.strip_prefix("file://") {
        let path = Path::new(path);
        if !path.is_absolute() {
            return Err(StartError::Image(format!(
                "image {image:?}: a file:// image needs an absolute path"
            )));
        }
        return Ok(path.to_path_buf());
    }
    // `name:tag` or `name@sha256:...`: the local file has one version.
    let name = image.split(['@', ':']).next().unwrap_or("");
    if name.is_empty() || name.contains('/') || name.contains("..") || name.starts_with('.') {
        return Err(StartError::Image(format!(
            "image {image:?} is neither file:///PATH.wasm nor a NAME found as {}/NAME.wasm",
            images_dir.display()
        )));
    }
    let path = images_dir.join(format!("{name}.wasm"));
    if !path.is_file() {
        return Err(StartError::Image(format!(
            "image {image:?} not found: no {} (the wasm runtime pulls from no registry)",
            path.display()
        )));
    }
    Ok(path)
}

/// A wasmtime error and its causes on one line, without the backtrace.
fn one_line(error: &wasmtime::Error) -> String {
    let mut parts: Vec<String> = Vec::new();
    for cause in error.chain() {
        let text = cause.to_string();
        let first = text.lines().next().unwrap_or("").trim().to_string();
        if !first.is_empty() && !parts.contains(&first) {
            parts.push(first);
        }
    }
    parts.join(": ")
}

/// Store data of one container run.
pub struct State {
    wasi: WasiCtx,
    table: ResourceTable,
    limiter: Limiter,
}

impl WasiView for State {
    fn ctx(&mut self) -> WasiCtxView<'_> {
        WasiCtxView {
            ctx: &mut self.wasi,
            table: &mut self.table,
        }
    }
}

/// Store limits remembering whether memory ran out, so that trap is
/// reported as OOMKilled, and keeping the memories' total size in `gauge`.
struct Limiter {
    inner: StoreLimits,
    memory_exhausted: bool,
    gauge: Option<Arc<AtomicU64>>,
}

impl ResourceLimiter for Limiter {
    fn memory_growing(
        &mut self,
        current: usize,
        desired: usize,
        maximum: Option<usize>,
    ) -> wasmtime::Result<bool> {
        let answer = self.inner.memory_growing(current, desired, maximum);
        match answer {
            Ok(true) => {
                if let Some(gauge) = &self.gauge {
                    let grown = u64::try_from(desired - current.min(desired)).unwrap_or(0);
                    gauge.fetch_add(grown, Ordering::Relaxed);
                }
            }
            _ => self.memory_exhausted = true,
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
}

/// This thread's CPU time so far, from `/proc/thread-self/schedstat`
/// (its first field is nanoseconds on a CPU).
fn thread_cpu_time() -> Option<Duration> {
    let text = std::fs::read_to_string("/proc/thread-self/schedstat").ok()?;
    let ns: u64 = text.split_whitespace().next()?.parse().ok()?;
    Some(Duration::from_nanos(ns))
}

/// How long a guest allowed `millis` of a core must pause, having used
/// `cpu` of CPU time over `wall` of wall time: long enough to bring its
/// share back to the limit.
pub fn throttle_pause(cpu: Duration, wall: Duration, millis: u64) -> Duration {
    if millis == 0 {
        return Duration::ZERO;
    }
    let share = millis as f64 / 1000.0;
    // At the limit, cpu == share * wall; the pause p makes it so:
    // cpu == share * (wall + p).
    let target_wall = cpu.as_secs_f64() / share;
    let pause = target_wall - wall.as_secs_f64();
    if pause <= 0.0 {
        Duration::ZERO
    } else {
        Duration::from_secs_f64(pause.min(1.0))
    }
}

/// Runs the guest to its end on this thread.
fn run(
    engine: &Engine,
    pre: &InstancePre<State>,
    argv: &[String],
    env: &[(String, String)],
    limits: Limits,
    io: Io,
    stop: &Stopper,
) -> Exit {
    let mut wasi = WasiCtx::builder();
    wasi.args(argv).envs(env);
    match io.output {
        Output::Log(log) => wasi
            .stdout(log.stream("stdout"))
            .stderr(log.stream("stderr")),
        Output::Memory(out, err) => wasi.stdout(out).stderr(err),
    };
    wasi
        // Wasm pods share the host's network: TCP to and from any address
        // (probes reach a server this way), no UDP, no name lookup.
        .inherit_network()
        .allow_ip_name_lookup(false)
        .allow_tcp(true)
        .allow_udp(false);
    if let Some(stdin) = io.stdin {
        wasi.stdin(stdin);
    }
    let memory =
        usize::try_from(limits.memory.unwrap_or(DEFAULT_MEMORY_LIMIT)).unwrap_or(usize::MAX);
    let state = State {
        wasi: wasi.build(),
        table: ResourceTable::new(),
        limiter: Limiter {
            inner: StoreLimitsBuilder::new()
                .memory_size(memory)
                .trap_on_grow_failure(true)
                .build(),
            memory_exhausted: false,
            gauge: limits.gauge.clone(),
        },
    };
    let mut store = Store::new(engine, state);
    store.limiter(|s| &mut s.limiter);
    store.set_epoch_deadline(1);
    let flag = stop.0.clone();
    let cpu_millis = limits.cpu_millis;
    let wall_start = Instant::now();
    let cpu_start = thread_cpu_time().unwrap_or_default();
    store.epoch_deadline_callback(move |_| {
        if flag.load(Ordering::Relaxed) {
            return Ok(wasmtime::UpdateDeadline::Interrupt);
        }
        if let Some(millis) = cpu_millis
            && let Some(cpu) = thread_cpu_time()
        {
            let pause = throttle_pause(cpu.saturating_sub(cpu_start), wall_start.elapsed(), millis);
            if !pause.is_zero() {
                std::thread::sleep(pause);
            }
        }
        Ok(wasmtime::UpdateDeadline::Continue(1))
    });
    let outcome = CommandPre::new(pre.clone())
        .and_then(|command| command.instantiate(&mut store))
        .and_then(|command| command.wasi_cli_run().call_run(&mut store));
    let exhausted = store.data().limiter.memory_exhausted;
    let exit = |code: i32, reason: ExitReason, message: Option<String>| Exit {
        code,
        reason,
        message,
        finished_at: Timestamp::now(),
    };
    let result = match outcome {
        Ok(Ok(())) => exit(0, ExitReason::Completed, None),
        Ok(Err(())) => exit(1, ExitReason::Error, None),
        Err(e) => {
            if let Some(code) = e.downcast_ref::<wasmtime_wasi::I32Exit>() {
                let reason = if code.0 == 0 {
                    ExitReason::Completed
                } else {
                    ExitReason::Error
                };
                exit(code.0, reason, None)
            } else if stop.0.load(Ordering::Relaxed) {
                exit(137, ExitReason::Killed, Some("stopped".into()))
            } else if exhausted {
                exit(
                    137,
                    ExitReason::OomKilled,
                    Some(format!("memory limit of {memory} bytes reached")),
                )
            } else {
                exit(134, ExitReason::Error, Some(one_line(&e)))
            }
        }
    };
    drop(store);
    result
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn images_resolve_to_files_in_the_image_directory_or_by_url() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("hello.wasm"), b"x").unwrap();
        assert_eq!(
            resolve_image("hello", dir.path()).unwrap(),
            dir.path().join("hello.wasm")
        );
        assert_eq!(
            resolve_image("hello:1.0", dir.path()).unwrap(),
            dir.path().join("hello.wasm")
        );
        assert_eq!(
            resolve_image("file:///x/y.wasm", dir.path()).unwrap(),
            PathBuf::from("/x/y.wasm")
        );
        for bad in [
            "missing",
            "../hello",
            "a/b",
            "",
            "file://rel.wasm",
            ".hidden",
        ] {
            assert!(
                matches!(resolve_image(bad, dir.path()), Err(StartError::Image(_))),
                "{bad}"
            );
        }
    }

    #[test]
    fn throttling_pauses_only_over_the_share() {
        let s = Duration::from_millis;
        assert_eq!(throttle_pause(s(50), s(100), 500), Duration::ZERO);
        assert_eq!(throttle_pause(s(40), s(100), 500), Duration::ZERO);
        // 100 ms of CPU at half a core needs 200 ms of wall time.
        let p = throttle_pause(s(100), s(100), 500);
        assert!((p.as_secs_f64() - 0.1).abs() < 1e-6, "{p:?}");
        assert_eq!(throttle_pause(s(100), s(100), 0), Duration::ZERO);
    }

    fn spec(dir: &Path, wat: &str) -> ContainerSpec {
        let image = dir.join("c.wasm");
        std::fs::write(&image, wat::parse_str(wat).unwrap()).unwrap();
        ContainerSpec {
            image,
            program: "c".into(),
            args: vec![],
            env: vec![],
            memory_limit: None,
            cpu_millis: None,
            log_path: dir.join("c.log"),
        }
    }

    #[tokio::test]
    async fn a_core_module_is_refused_and_a_missing_file_is_an_image_error() {
        let dir = tempfile::tempdir().unwrap();
        let runtime = WasmRuntime::new().unwrap();
        let s = spec(dir.path(), "(module)");
        assert!(matches!(
            runtime.start(s.clone()).await.err(),
            Some(StartError::Create(_))
        ));
        let mut missing = s;
        missing.image = dir.path().join("nope.wasm");
        assert!(matches!(
            runtime.start(missing).await.err(),
            Some(StartError::Image(_))
        ));
    }
}
