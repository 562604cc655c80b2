//! The one wasmtime `Engine` every plugin shares, its epoch ticker, and
//! compiling components through the on-disk artifact cache.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use wasmtime::component::Component;
use wasmtime::{Config, Engine};

use crate::PluginError;
use crate::cache::ArtifactCache;
use crate::world::{self, World};

/// How often the engine's epoch advances: the granularity of call
/// deadlines. 10 ms keeps the ticker's cost negligible while a 1 s deadline
/// is met within 1%.
pub const EPOCH_TICK: Duration = Duration::from_millis(10);

/// A compiled component, ready to be linked and instantiated.
#[derive(Clone)]
pub struct Compiled {
    /// The compiled code.
    pub component: Component,
    /// `sha256:` and the hex digest of the component's bytes.
    pub digest: String,
    /// The world its exports implement.
    pub world: World,
    /// Whether the artifact came from the on-disk cache.
    pub from_cache: bool,
    /// Time spent compiling or loading.
    pub elapsed: Duration,
}

/// The plugin engine: shared by every plugin of the process.
///
/// Component model on, epoch interruption on (every call gets a deadline),
/// fuel off (epochs cost far less per instruction).
#[derive(Clone)]
pub struct PluginEngine {
    engine: Engine,
    cache: Option<ArtifactCache>,
    _ticker: Arc<Ticker>,
}

/// Ends the ticker thread when the last engine handle is dropped.
struct Ticker {
    stop: Arc<std::sync::atomic::AtomicBool>,
}

impl Drop for Ticker {
    fn drop(&mut self) {
        self.stop.store(true, std::sync::atomic::Ordering::Relaxed);
    }
}

impl PluginEngine {
    /// A new engine; precompiled artifacts are cached in `cache_dir` when
    /// given.
    pub fn new(cache_dir: Option<PathBuf>) -> Result<Self, PluginError> {
        let mut config = Config::new();
        config.wasm_component_model(true);
        config.epoch_interruption(true);
        config.consume_fuel(false);
        // `perf record` then names plugin functions (written to
        // /tmp/perf-PID.map): for profiling plugins, off by default.
        if std::env::var_os("ORCHD_WASM_PERFMAP").is_some() {
            config.profiler(wasmtime::ProfilingStrategy::PerfMap);
        }
        let engine = Engine::new(&config).map_err(|e| {
            PluginError::Internal(format!("cannot create the wasm engine: {}", one_line(&e)))
        })?;
        let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
        let weak = engine.weak();
        let thread_stop = stop.clone();
        std::thread::Builder::new()
            .name("orchd-epoch".into())
            .spawn(move || {
                while !thread_stop.load(std::sync::atomic::Ordering::Relaxed) {
                    std::thread::sleep(EPOCH_TICK);
                    match weak.upgrade() {
                        Some(engine) => engine.increment_epoch(),
                        None => break,
                    }
                }
            })
            .map_err(|e| PluginError::Internal(format!("cannot start the epoch ticker: {e}")))?;
        let cache = cache_dir.map(|dir| ArtifactCache::new(&engine, dir));
        Ok(PluginEngine {
            engine,
            cache,
            _ticker: Arc::new(Ticker { stop }),
        })
    }

    /// The wasmtime engine.
    pub fn engine(&self) -> &Engine {
        &self.engine
    }

    /// Compiles `bytes` (or loads the cached artifact of the same digest)
    /// and detects its world. Anything that is not a component of a known
    /// world is rejected with a one-line reason.
    ///
    /// Compiling is CPU-heavy (milliseconds to seconds): call it off the
    /// async runtime's worker threads (`spawn_blocking`).
    pub fn compile(&self, bytes: &[u8]) -> Result<Compiled, PluginError> {
        let started = Instant::now();
        world::check_header(bytes)?;
        let hex = sha256_hex(bytes);
        let digest = format!("sha256:{hex}");
        if let Some(component) = self.cache.as_ref().and_then(|c| c.load(&self.engine, &hex)) {
            // A cached artifact was compiled from these very bytes, which
            // passed detection before it was stored; detecting again is
            // cheap and keeps one code path.
            let world = world::detect(&self.engine, &component)?;
            return Ok(Compiled {
                component,
                digest,
                world,
                from_cache: true,
                elapsed: started.elapsed(),
            });
        }
        let component = Component::new(&self.engine, bytes)
            .map_err(|e| PluginError::Invalid(format!("invalid component: {}", one_line(&e))))?;
        let world = world::detect(&self.engine, &component)?;
        if let Some(cache) = &self.cache
            && let Err(e) = cache.store(&hex, &component)
        {
            eprintln!("orchd: warning: plugin artifact cache: {e}");
        }
        Ok(Compiled {
            component,
            digest,
            world,
            from_cache: false,
            elapsed: started.elapsed(),
        })
    }
}

pub use orchd_resources::orchd_v1::sha256_hex;

/// A wasmtime error and its causes on one line, outermost first, without
/// the wasm backtrace wasmtime appends to traps.
pub fn one_line(error: &wasmtime::Error) -> String {
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

/// Links `compiled` against WASI (which grants nothing, see
/// [`crate::sandbox`]) and the host calls `add_world` adds for its world.
/// A component importing anything else fails here, with its name.
pub(crate) fn link(
    engine: &PluginEngine,
    compiled: &Compiled,
    name: &str,
    add_world: impl FnOnce(
        &mut wasmtime::component::Linker<crate::sandbox::HostState>,
    ) -> wasmtime::Result<()>,
) -> Result<wasmtime::component::InstancePre<crate::sandbox::HostState>, PluginError> {
    let mut linker = wasmtime::component::Linker::new(engine.engine());
    wasmtime_wasi::p2::add_to_linker_sync(&mut linker)
        .map_err(|e| PluginError::Internal(format!("cannot link WASI: {}", one_line(&e))))?;
    add_world(&mut linker).map_err(|e| {
        PluginError::Internal(format!("cannot link the host calls: {}", one_line(&e)))
    })?;
    linker
        .instantiate_pre(&compiled.component)
        .map_err(|e| PluginError::Invalid(format!("cannot link {name}: {}", one_line(&e))))
}
