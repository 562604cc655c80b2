//! `orchd-bench scheduler`: the Wasm scheduler beside the native build of
//! the same algorithm, on this machine.
//!
//! * End to end, once per variant, each on a fresh cluster: a temporary
//!   redb store and the API server in this process, N hollow nodes from
//!   the real `orchd sim nodes` binary in a separate process (kubemark's
//!   shape: they register, heartbeat through Leases and mark their pods
//!   Running, all over HTTP, while the scheduler works), and the scheduler
//!   runner (informers, queue, binding through the store) driving either
//!   the component or the native algorithm. Pods are created through the
//!   HTTP API with bounded concurrency; the figure is pods bound per second
//!   from the first create to the last binding (the runner's counter).
//! * Micro figures on the same component: a trivial call, one decision
//!   over N nodes, instantiation, load, and compilation cold and cached.
//! * Hot swap through the plugin manager, on the native run's cluster
//!   (N nodes, its pods bound, pods still flowing): a new revision whose
//!   artifact is already cached replaces the running one, then swaps
//!   back and forth; for every swap the Plugin's `status.swapMillis` and
//!   the wall time from the update to the first binding made by the new
//!   revision are taken, and their medians reported.

use std::collections::HashSet;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use base64::Engine as _;
use futures::StreamExt;
use orchd_plugin_host::manager::{self, ManagerConfig};
use orchd_plugin_host::runner::{self, Decide, RunnerStats};
use orchd_plugin_host::sandbox::HostState;
use orchd_plugin_host::scheduler::ViewChange;
use orchd_plugin_host::scheduler::types::{Label, Node, PlacedPod, PodInfo, Resources};
use orchd_plugin_host::supervisor::Supervised;
use orchd_plugin_host::{Compiled, Limits, LogLevel, LogSink, PluginEngine, SchedulerPlugin};
use orchd_plugin_host::{World, engine::one_line, podinfo};
use orchd_store::{EventType, ObjectKey, RedbStore, RedbStoreConfig, Scope, Store, WatchOptions};
use serde_json::{Value, json};
use tokio::io::AsyncBufReadExt;

use crate::http::Conn;
use crate::native::{self, NativeScheduler};

/// Defaults from the issue: kube-scheduler's own scale test is 5,000
/// nodes.
const DEFAULT_NODES: usize = 5_000;
const DEFAULT_PODS: usize = 10_000;

/// Connections creating pods at once: enough to keep the scheduler's queue
/// from running dry, few enough not to starve the rest of a 2-core box.
const CREATE_CONCURRENCY: usize = 16;

/// Most pods created and not yet bound in the end-to-end runs (see
/// [`Flow::max_backlog`]); far more than a scheduler binds between two
/// looks at its queue.
const MAX_BACKLOG: usize = 1_000;

/// The same while the swap happens: a short queue.
const SWAP_BACKLOG: usize = 16;

/// Default time limit of one end-to-end run: the whole benchmark must
/// stay within minutes even when the scheduler is far below its target.
const DEFAULT_MAX_SECONDS: u64 = 60;

/// Node names of `orchd sim nodes` (its default prefix).
const NODE_PREFIX: &str = "hollow";

/// The Plugin the swap replaces: the name `orchd up` gives the default.
const PLUGIN: &str = "default-scheduler";

/// Longest any one phase may take before the run is called failed.
const PHASE_TIMEOUT: Duration = Duration::from_secs(300);

/// What `orchd-bench scheduler` is given.
pub struct Args {
    /// The `orchd` binary (for `orchd sim nodes`).
    pub orchd: PathBuf,
    /// The default scheduler component (plugins/scheduler, wasm32-wasip2).
    pub scheduler_wasm: PathBuf,
    /// Another revision serving the same schedulerName (first-fit).
    pub first_fit_wasm: PathBuf,
    /// Hollow nodes.
    pub nodes: usize,
    /// Pods scheduled per variant.
    pub pods: usize,
    /// Time limit of one end-to-end run, in seconds: past it the figure
    /// is the pods bound so far over the time taken.
    pub max_seconds: u64,
}

impl Args {
    /// `ORCHD_BIN SCHEDULER_WASM FIRST_FIT_WASM [--nodes N] [--pods N]
    /// [--max-seconds S]`.
    pub fn parse(args: &[String]) -> anyhow::Result<Self> {
        let usage = "usage: orchd-bench scheduler ORCHD_BIN SCHEDULER_WASM FIRST_FIT_WASM [--nodes N] [--pods N] [--max-seconds S]";
        let mut positional = Vec::new();
        let mut nodes = DEFAULT_NODES;
        let mut pods = DEFAULT_PODS;
        let mut max_seconds = DEFAULT_MAX_SECONDS;
        let mut it = args.iter();
        while let Some(a) = it.next() {
            let mut number = |what: &str| -> anyhow::Result<usize> {
                it.next()
                    .and_then(|v| v.parse().ok())
                    .filter(|&n: &usize| n > 0)
                    .with_context(|| format!("{what} needs a positive number\n{usage}"))
            };
            match a.as_str() {
                "--nodes" => nodes = number("--nodes")?,
                "--pods" => pods = number("--pods")?,
                "--max-seconds" => max_seconds = number("--max-seconds")? as u64,
                flag if flag.starts_with("--") => bail!("unknown option {flag}\n{usage}"),
                path => positional.push(PathBuf::from(path)),
            }
        }
        // A hollow node (4 CPUs) holds 40 pods of 100m, and each cluster
        // gets the pods twice (flowing, then as a backlog): leave room for
        // the swap phase's pods too, or pods end up unschedulable and the
        // run measures backoff instead of scheduling.
        if pods > nodes * 15 {
            bail!("{pods} pods do not fit {nodes} hollow nodes (at most 15 per node)\n{usage}");
        }
        let [orchd, scheduler_wasm, first_fit_wasm] =
            <[PathBuf; 3]>::try_from(positional).map_err(|_| anyhow::anyhow!("{usage}"))?;
        Ok(Args {
            orchd,
            scheduler_wasm,
            first_fit_wasm,
            nodes,
            pods,
            max_seconds,
        })
    }
}

/// Runs the whole benchmark and prints the summary.
pub async fn run(args: Args) -> anyhow::Result<()> {
    let started = Instant::now();
    let scheduler = read(&args.scheduler_wasm)?;
    let first_fit = read(&args.first_fit_wasm)?;
    check_serves_default(&scheduler, &args.scheduler_wasm)?;
    check_serves_default(&first_fit, &args.first_fit_wasm)?;
    println!(
        "== scheduler: {} hollow nodes, {} pods; Wasm component ({} KB) beside the native build of the same algorithm ==",
        args.nodes,
        args.pods,
        scheduler.len() / 1024
    );
    println!("(2-core machine; figures move with whatever else runs on it)");

    println!(
        "\n-- micro figures (component {}) --",
        args.scheduler_wasm.display()
    );
    let micro = {
        let bytes = scheduler.clone();
        let nodes = args.nodes;
        tokio::task::spawn_blocking(move || micro(&bytes, nodes))
            .await
            .context("the micro benchmarks stopped")??
    };

    println!("\n-- end to end, Wasm component --");
    let cluster = Cluster::start(&args.orchd, args.nodes).await?;
    let wasm = {
        let engine = PluginEngine::new(None).map_err(|e| anyhow::anyhow!("{e}"))?;
        let plugin = load_plugin(&engine, &scheduler, "default-scheduler")?;
        let flowing = end_to_end(&cluster, Box::new(plugin), &args, "wasm").await;
        match flowing {
            Ok(flowing) => {
                let plugin = load_plugin(&engine, &scheduler, "default-scheduler")?;
                drain(&cluster, Box::new(plugin), args.pods, "wasm")
                    .await
                    .map(|drained| (flowing, drained))
            }
            Err(e) => Err(e),
        }
    };
    cluster.stop().await;
    let (wasm, wasm_drain) = wasm?;

    println!("\n-- end to end, native build of the same algorithm --");
    let cluster = Cluster::start(&args.orchd, args.nodes).await?;
    let native = end_to_end(
        &cluster,
        Box::new(NativeScheduler::default()),
        &args,
        "native",
    )
    .await;
    let native = match native {
        Ok(flowing) => drain(
            &cluster,
            Box::new(NativeScheduler::default()),
            args.pods,
            "native",
        )
        .await
        .map(|drained| (flowing, drained)),
        Err(e) => Err(e),
    };
    let swap = match &native {
        Ok((run, _)) => {
            println!(
                "\n-- hot swap through the plugin manager (same cluster: {} nodes, {} pods bound, pods flowing) --",
                args.nodes, run.bound
            );
            swap(&cluster, args.nodes, &scheduler, &first_fit).await
        }
        Err(_) => Err(anyhow::anyhow!("not run: the native run failed")),
    };
    cluster.stop().await;
    let (native, native_drain) = native?;
    let swap = swap?;

    summary(
        &args,
        &micro,
        [&wasm, &native],
        [&wasm_drain, &native_drain],
        &swap,
    );
    println!(
        "\n(whole run: {:.0} s)",
        started.elapsed().as_secs_f64().ceil()
    );
    Ok(())
}

/// Both revisions must serve `default-scheduler`: a component built with
/// another `ORCHD_SCHEDULER_NAME` would start a second runner on a swap
/// instead of replacing the first, and the swap would never be seen.
fn check_serves_default(bytes: &[u8], path: &Path) -> anyhow::Result<()> {
    let engine = PluginEngine::new(None).map_err(|e| anyhow::anyhow!("{e}"))?;
    let plugin = load_plugin(&engine, bytes, "check")
        .with_context(|| format!("{} is not a scheduler orchd can run", path.display()))?;
    if plugin.scheduler_name() != runner::DEFAULT_SCHEDULER_NAME {
        bail!(
            "{} serves schedulerName {:?}, not {:?} (was it built with ORCHD_SCHEDULER_NAME set?)",
            path.display(),
            plugin.scheduler_name(),
            runner::DEFAULT_SCHEDULER_NAME
        );
    }
    Ok(())
}

fn read(path: &Path) -> anyhow::Result<Vec<u8>> {
    std::fs::read(path).with_context(|| format!("cannot read {}", path.display()))
}

/// Plugin log lines, indented under the benchmark's progress.
fn quiet_sink() -> LogSink {
    Arc::new(|plugin, level, message| {
        if level >= LogLevel::Info {
            println!("  plugin host: {plugin}: [{}] {message}", level.as_str());
        }
    })
}

fn load_plugin(engine: &PluginEngine, bytes: &[u8], name: &str) -> anyhow::Result<SchedulerPlugin> {
    let compiled = engine.compile(bytes).map_err(|e| anyhow::anyhow!("{e}"))?;
    SchedulerPlugin::load(engine, &compiled, name, Limits::default(), quiet_sink())
        .map_err(|e| anyhow::anyhow!("{e}"))
}

// ---------------------------------------------------------------- micro

/// Figures of the component alone (no store, no API).
struct Micro {
    /// `scheduler-name` through the supervised instance, per call.
    trivial_call: Duration,
    /// The same String made by a native function call, per call.
    trivial_native: Duration,
    /// The whole view (N nodes, a pod on each) sent to the Wasm plugin.
    view_wasm: Duration,
    /// The same into the native build's view.
    view_native: Duration,
    /// The whole view with as many pods as at the swap phase
    /// ([`SWAP_PODS_PER_NODE`] on each node), sent to the Wasm plugin.
    swap_view_wasm: Duration,
    /// The same into the native build's view.
    swap_view_native: Duration,
    /// The same sent to a fresh instance, as a swap does.
    swap_view_fresh: Duration,
    /// One decision (one pod in the batch, no changes), Wasm.
    decision_wasm: Duration,
    /// The same decision, native.
    decision_native: Duration,
    /// The native algorithm alone over the SDK's view: what is left of a
    /// decision without crossing into the plugin.
    algorithm_only: Duration,
    /// A fresh instance from a prepared InstancePre.
    instantiate: Duration,
    /// `SchedulerPlugin::load` of an already compiled component.
    load: Duration,
    /// `PluginEngine::compile` with no artifact cache: compilation alone.
    compile_cold: Duration,
    /// The same with an empty cache: compilation, then the artifact
    /// written (serialize, write, fsync, rename).
    compile_cold_stored: Duration,
    /// `PluginEngine::compile` of a fresh engine over a filled cache.
    compile_cached: Duration,
}

fn median(mut samples: Vec<Duration>) -> Duration {
    samples.sort();
    samples.get(samples.len() / 2).copied().unwrap_or_default()
}

/// Median over `rounds` of `f`'s duration.
fn time_each(rounds: usize, mut f: impl FnMut() -> anyhow::Result<()>) -> anyhow::Result<Duration> {
    let mut samples = Vec::with_capacity(rounds);
    for _ in 0..rounds {
        let started = Instant::now();
        f()?;
        samples.push(started.elapsed());
    }
    Ok(median(samples))
}

/// Per-iteration time of `f`: the median of 5 batches of `per_batch`
/// (a batch amortises the clock; the median drops batches hit by noise).
fn per_iteration(
    per_batch: u32,
    mut f: impl FnMut() -> anyhow::Result<()>,
) -> anyhow::Result<Duration> {
    let mut batches = Vec::new();
    for _ in 0..5 {
        let started = Instant::now();
        for _ in 0..per_batch {
            f()?;
        }
        batches.push(started.elapsed() / per_batch);
    }
    Ok(median(batches))
}

fn micro(bytes: &[u8], node_count: usize) -> anyhow::Result<Micro> {
    let err = |e: orchd_plugin_host::PluginError| anyhow::anyhow!("{e}");

    // Compile: a fresh engine every round, first with no cache at all
    // (compilation alone), then over an empty cache directory (the
    // artifact is written too, as on a first install).
    let compile_cold = time_each(3, || {
        let engine = PluginEngine::new(None).map_err(err)?;
        let compiled = engine.compile(bytes).map_err(err)?;
        anyhow::ensure!(!compiled.from_cache, "compiled without a cache, yet cached");
        Ok(())
    })?;
    let compile_cold_stored = time_each(3, || {
        let dir = tempfile::tempdir()?;
        let engine = PluginEngine::new(Some(dir.path().to_path_buf())).map_err(err)?;
        let compiled = engine.compile(bytes).map_err(err)?;
        anyhow::ensure!(!compiled.from_cache, "a fresh cache had the artifact");
        Ok(())
    })?;
    // Cached: a new engine over a filled directory each round, as a
    // restarted orchd (or a swap) finds it.
    let cache = tempfile::tempdir()?;
    PluginEngine::new(Some(cache.path().to_path_buf()))
        .map_err(err)?
        .compile(bytes)
        .map_err(err)?;
    let compile_cached = time_each(20, || {
        let engine = PluginEngine::new(Some(cache.path().to_path_buf())).map_err(err)?;
        let compiled = engine.compile(bytes).map_err(err)?;
        anyhow::ensure!(
            compiled.from_cache,
            "the artifact was not taken from the cache"
        );
        Ok(())
    })?;
    println!(
        "compile: cold {:.1} ms (with the artifact written to an empty cache: {:.1} ms), from the artifact cache {:.2} ms",
        ms(compile_cold),
        ms(compile_cold_stored),
        ms(compile_cached)
    );

    let engine = PluginEngine::new(None).map_err(err)?;
    let compiled = engine.compile(bytes).map_err(err)?;
    let load = time_each(20, || {
        SchedulerPlugin::load(&engine, &compiled, "bench", Limits::default(), quiet_sink())
            .map_err(err)
            .map(drop)
    })?;
    let instantiate = instantiate_time(&engine, &compiled)?;
    println!(
        "instantiate (fresh Store + sandbox state + InstancePre::instantiate): {:.1} µs; load (link, type-check, instantiate, first call): {:.2} ms",
        us(instantiate),
        ms(load)
    );

    let mut plugin =
        SchedulerPlugin::load(&engine, &compiled, "bench", Limits::default(), quiet_sink())
            .map_err(err)?;
    let trivial_call = per_iteration(20_000, || {
        let name = plugin.call_scheduler_name().map_err(err)?;
        std::hint::black_box(name);
        Ok(())
    })?;
    let trivial_native = per_iteration(20_000, || {
        std::hint::black_box(String::from(std::hint::black_box(
            orchd_scheduler::SCHEDULER_NAME,
        )));
        Ok(())
    })?;
    println!(
        "trivial call (scheduler-name, a string back): {:.0} ns; native function returning the same String: {:.0} ns",
        ns(trivial_call),
        ns(trivial_native)
    );

    let view = micro_view(node_count, 1);
    let pods: Vec<PodInfo> = (0..50)
        .map(|i| podinfo::pod_info(&pod_object("micro", i, Some(&format!("uid-{i}")))))
        .collect();
    let mut baseline = NativeScheduler::default();
    let view_wasm = time_each(5, || {
        plugin.schedule(&view, true, &[]).map_err(err).map(drop)
    })?;
    let view_native = time_each(5, || {
        baseline.schedule(&view, true, &[]).map_err(err).map(drop)
    })?;
    println!(
        "the whole view ({node_count} nodes, a pod on each) sent to a plugin: Wasm {:.1} ms, native {:.1} ms",
        ms(view_wasm),
        ms(view_native)
    );
    // What a swap sends at the end to end run's swap phase: by then about
    // four pods are placed on each node.
    let swap_view = micro_view(node_count, SWAP_PODS_PER_NODE);
    let swap_view_wasm = time_each(3, || {
        plugin
            .schedule(&swap_view, true, &[])
            .map_err(err)
            .map(drop)
    })?;
    let swap_view_native = time_each(3, || {
        baseline
            .schedule(&swap_view, true, &[])
            .map_err(err)
            .map(drop)
    })?;
    // A swap gives the view to a fresh instance: its first call also
    // grows its memory from nothing.
    let mut fresh_rounds = Vec::new();
    for _ in 0..3 {
        let mut fresh =
            SchedulerPlugin::load(&engine, &compiled, "bench", Limits::default(), quiet_sink())
                .map_err(err)?;
        let started = Instant::now();
        fresh.schedule(&swap_view, true, &[]).map_err(err)?;
        fresh_rounds.push(started.elapsed());
    }
    let swap_view_fresh = median(fresh_rounds);
    println!(
        "the whole view ({node_count} nodes, {SWAP_PODS_PER_NODE} pods on each) sent to a plugin: Wasm {:.1} ms (to a fresh instance, as a swap does: {:.1} ms), native {:.1} ms",
        ms(swap_view_wasm),
        ms(swap_view_fresh),
        ms(swap_view_native)
    );
    // Few per batch: at thousands of nodes one decision takes up to a
    // millisecond. Each pod bound counts on its node afterwards, as in a
    // real run.
    let mut i = 0;
    let decision_wasm = per_iteration(20, || {
        i += 1;
        let decision = plugin
            .schedule(&[], false, std::slice::from_ref(&pods[i % pods.len()]))
            .map_err(err)?;
        std::hint::black_box(decision);
        Ok(())
    })?;
    let decision_native = per_iteration(20, || {
        i += 1;
        let decision = baseline
            .schedule(&[], false, std::slice::from_ref(&pods[i % pods.len()]))
            .map_err(err)?;
        std::hint::black_box(decision);
        Ok(())
    })?;
    let mut cluster = orchd_sdk::scheduler::Cluster::default();
    cluster.update(view.iter().map(native::change_of).collect(), true);
    let converted_pods: Vec<_> = pods.iter().map(native::pod_info).collect();
    let algorithm_only = per_iteration(20, || {
        i += 1;
        std::hint::black_box(orchd_scheduler::algorithm::schedule_with(
            &converted_pods[i % pods.len()],
            cluster.nodes(),
            &orchd_scheduler::PROFILE,
        ));
        Ok(())
    })?;
    println!(
        "one decision over {node_count} nodes (1 pod placed on each): Wasm {:.0} µs, native {:.0} µs ({:.2}x); of which the algorithm alone (native, over the SDK's view): {:.0} µs",
        us(decision_wasm),
        us(decision_native),
        decision_native.as_secs_f64() / decision_wasm.as_secs_f64(),
        us(algorithm_only)
    );
    Ok(Micro {
        trivial_call,
        trivial_native,
        view_wasm,
        view_native,
        swap_view_wasm,
        swap_view_native,
        swap_view_fresh,
        decision_wasm,
        decision_native,
        algorithm_only,
        instantiate,
        load,
        compile_cold,
        compile_cold_stored,
        compile_cached,
    })
}

/// Median time to start a fresh instance the way the plugin host does
/// after a failure: `Supervised::warm` builds a new wasmtime `Store` with
/// the sandbox's `HostState` (WASI context granting nothing, limits) and
/// instantiates a prepared `InstancePre`. The linker is built once, outside
/// the timing, with the same imports `SchedulerPlugin::load` links (WASI
/// p2 and `orchd:plugin/log`, here a no-op: nothing logs while starting).
fn instantiate_time(engine: &PluginEngine, compiled: &Compiled) -> anyhow::Result<Duration> {
    let wasm = |e: wasmtime::Error| anyhow::anyhow!("{}", one_line(&e));
    let mut linker: wasmtime::component::Linker<HostState> =
        wasmtime::component::Linker::new(engine.engine());
    wasmtime_wasi::p2::add_to_linker_sync(&mut linker).map_err(wasm)?;
    linker
        .root()
        .instance("orchd:plugin/log@0.1.0")
        .map_err(wasm)?
        .func_new("log", |_, _, _, _| Ok(()))
        .map_err(wasm)?;
    let pre = Arc::new(linker.instantiate_pre(&compiled.component).map_err(wasm)?);
    time_each(200, || {
        let pre = pre.clone();
        let mut supervised = Supervised::new(
            "bench",
            engine.engine().clone(),
            Limits::default(),
            quiet_sink(),
            Box::new(move |store| pre.instantiate(store)),
        );
        supervised.warm().map_err(|e| anyhow::anyhow!("{e}"))
    })
}

/// The view of hollow nodes halfway through an end to end run, as the
/// runner's cache sends it whole: `orchd sim nodes`' labels and size, one
/// pod placed on each.
fn micro_view(count: usize, pods_per_node: usize) -> Vec<ViewChange> {
    let label = |k: &str, v: &str| Label {
        key: k.into(),
        value: v.into(),
    };
    let mut changes = Vec::with_capacity((1 + pods_per_node) * count);
    for i in 0..count {
        let name = format!("{NODE_PREFIX}-{i}");
        changes.extend((0..pods_per_node).map(|p| {
            ViewChange::PodPlaced(Arc::new(PlacedPod {
                key: format!("default/placed-{i}-{p}"),
                node: name.clone(),
                namespace: "default".into(),
                labels: vec![label("app", "bench")],
                owner_uid: None,
                requests: Resources {
                    milli_cpu: 100,
                    memory_bytes: 128 << 20,
                    pods: 1,
                },
                host_ports: Vec::new(),
            }))
        }));
        changes.push(ViewChange::NodeSet(Arc::new(Node {
            labels: vec![
                label("kubernetes.io/hostname", &name),
                label("kubernetes.io/os", "linux"),
                label("kubernetes.io/arch", "amd64"),
                label("node.orchd.dev/hollow", "true"),
            ],
            name,
            allocatable: Resources {
                milli_cpu: 4_000,
                memory_bytes: 8 << 30,
                pods: 110,
            },
            taints: Vec::new(),
            unschedulable: false,
            ready: true,
        })));
    }
    changes
}

/// The benchmark's pod: a small request, as kube-scheduler's own
/// throughput tests use.
fn pod_object(prefix: &str, i: usize, uid: Option<&str>) -> Value {
    let mut pod = json!({
        "apiVersion": "v1", "kind": "Pod",
        "metadata": {"name": format!("{prefix}-{i}"), "namespace": "default",
                     "labels": {"app": "bench"}},
        "spec": {"containers": [{"name": "c", "image": "busybox",
                                 "resources": {"requests": {"cpu": "100m", "memory": "128Mi"}}}]},
    });
    if let Some(uid) = uid {
        pod["metadata"]["uid"] = json!(uid);
    }
    pod
}

// ---------------------------------------------------------- the cluster

/// A fresh store and API server in this process, with hollow nodes from
/// `orchd sim nodes` in another.
struct Cluster {
    store: Arc<dyn Store>,
    addr: SocketAddr,
    stop: tokio::sync::oneshot::Sender<()>,
    server: tokio::task::JoinHandle<()>,
    sim: tokio::process::Child,
    /// The simulator's stderr: how many lines, and the first few.
    sim_errors: Arc<Mutex<(usize, Vec<String>)>>,
    /// Kept last: the store file lives in it.
    dir: tempfile::TempDir,
}

impl Cluster {
    async fn start(orchd: &Path, nodes: usize) -> anyhow::Result<Self> {
        let dir = tempfile::tempdir()?;
        let store: Arc<dyn Store> =
            RedbStore::open(RedbStoreConfig::new(dir.path().join("store.redb")))?;
        let api = orchd_api::ApiServer::new(store.clone(), orchd_api::ApiConfig::default());
        api.bootstrap().await?;
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
        let addr = listener.local_addr()?;
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let server = tokio::spawn(api.serve(listener, async move {
            let _ = stopped.await;
        }));
        println!(
            "registering {nodes} hollow nodes: `orchd sim nodes` (separate process, through the API at http://{addr})..."
        );
        let started = Instant::now();
        let mut sim = tokio::process::Command::new(orchd)
            .args(["sim", "nodes", "--count", &nodes.to_string()])
            .args(["--server", &format!("http://{addr}")])
            .arg("--data-dir")
            .arg(dir.path())
            .stdin(std::process::Stdio::null())
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .kill_on_drop(true)
            .spawn()
            .with_context(|| format!("cannot start {}", orchd.display()))?;
        let sim_errors = Arc::new(Mutex::new((0, Vec::new())));
        if let Some(stderr) = sim.stderr.take() {
            let errors = sim_errors.clone();
            tokio::spawn(async move {
                let mut lines = tokio::io::BufReader::new(stderr).lines();
                while let Ok(Some(line)) = lines.next_line().await {
                    if let Ok(mut e) = errors.lock() {
                        e.0 += 1;
                        if e.1.len() < 3 {
                            e.1.push(line);
                        }
                    }
                }
            });
        }
        let stdout = sim.stdout.take().context("no stdout from orchd sim")?;
        let mut lines = tokio::io::BufReader::new(stdout).lines();
        // The simulator says so once every node and its Lease exist.
        let registered = tokio::time::timeout(PHASE_TIMEOUT, async {
            while let Some(line) = lines.next_line().await? {
                if line.contains("registered") {
                    return anyhow::Ok(line);
                }
            }
            bail!("orchd sim nodes exited before registering its nodes")
        })
        .await
        .context("orchd sim nodes did not register its nodes in time")??;
        // Keep reading so the simulator never blocks on a full pipe.
        tokio::spawn(async move { while let Ok(Some(_)) = lines.next_line().await {} });
        let cluster = Cluster {
            store,
            addr,
            stop,
            server,
            sim,
            sim_errors,
            dir,
        };
        let seen = cluster.count("nodes", |_| true).await?;
        if seen != nodes {
            bail!("{seen} nodes in the store after `{registered}`");
        }
        println!(
            "  {nodes} nodes registered in {:.1} s",
            started.elapsed().as_secs_f64()
        );
        Ok(cluster)
    }

    /// Objects of `resource` for which `f` holds.
    async fn count(&self, resource: &str, f: impl Fn(&Value) -> bool) -> anyhow::Result<usize> {
        let scope = Scope {
            resource: resource.into(),
            ..Scope::default()
        };
        let list = self.store.list(&scope, &Default::default()).await?;
        Ok(list.items.iter().filter(|o| f(o)).count())
    }

    async fn stop(mut self) {
        let _ = self.sim.kill().await;
        if let Ok(e) = self.sim_errors.lock()
            && e.0 > 0
        {
            println!(
                "  (orchd sim nodes wrote {} line(s) to stderr, first: {})",
                e.0,
                e.1.join(" | ")
            );
        }
        let _ = self.stop.send(());
        let _ = self.server.await;
        drop(self.store);
        drop(self.dir);
    }
}

/// How a pod creator paces itself.
#[derive(Clone)]
struct Flow {
    /// Set to stop creating.
    stop: Arc<AtomicBool>,
    /// Pods of this creator bound so far, as the caller counts them.
    bound: Arc<dyn Fn() -> usize + Send + Sync>,
    /// Most pods created and not yet bound: enough that the scheduler's
    /// queue never runs dry, bounded so that a slow scheduler does not
    /// have the API flooded (and the CPU taken) by creates it cannot use.
    max_backlog: usize,
}

impl Flow {
    fn new(bound: Arc<dyn Fn() -> usize + Send + Sync>, max_backlog: usize) -> Self {
        Flow {
            stop: Arc::new(AtomicBool::new(false)),
            bound,
            max_backlog,
        }
    }
}

/// Creates up to `count` pods named `prefix-i` through the API from
/// `concurrency` keep-alive connections, paced by `flow`. Returns the pods
/// created and when the last create was answered.
async fn create_pods(
    addr: SocketAddr,
    prefix: &'static str,
    count: usize,
    concurrency: usize,
    flow: Flow,
) -> anyhow::Result<(usize, Instant)> {
    let created = Arc::new(AtomicUsize::new(0));
    let next = Arc::new(AtomicUsize::new(0));
    let last = Arc::new(Mutex::new(Instant::now()));
    let mut tasks = Vec::new();
    for _ in 0..concurrency {
        let (created, next, last, flow) =
            (created.clone(), next.clone(), last.clone(), flow.clone());
        tasks.push(tokio::spawn(async move {
            let mut conn = Conn::open(addr).await?;
            loop {
                let claimed = next.load(Ordering::Relaxed);
                if claimed >= count || flow.stop.load(Ordering::Relaxed) {
                    return anyhow::Ok(());
                }
                if claimed.saturating_sub((flow.bound)()) >= flow.max_backlog {
                    tokio::time::sleep(Duration::from_millis(1)).await;
                    continue;
                }
                let i = next.fetch_add(1, Ordering::Relaxed);
                if i >= count || flow.stop.load(Ordering::Relaxed) {
                    return anyhow::Ok(());
                }
                let body = serde_json::to_vec(&pod_object(prefix, i, None))?;
                let (code, resp) = conn
                    .send(
                        "POST",
                        "/api/v1/namespaces/default/pods",
                        "application/json",
                        body,
                    )
                    .await?;
                if code != 201 {
                    bail!(
                        "creating a pod answered {code}: {}",
                        String::from_utf8_lossy(&resp)
                    );
                }
                created.fetch_add(1, Ordering::Relaxed);
                if let Ok(mut last) = last.lock() {
                    *last = Instant::now();
                }
            }
        }));
    }
    for t in tasks {
        t.await.context("pod creator")??;
    }
    let last = last.lock().map(|l| *l).unwrap_or_else(|_| Instant::now());
    Ok((created.load(Ordering::Relaxed), last))
}

/// Deletes the pods no scheduler bound (left by a run stopped at its time
/// limit), so the next phase starts with an empty queue.
async fn delete_pending(store: &Arc<dyn Store>) -> anyhow::Result<usize> {
    let scope = Scope {
        resource: "pods".into(),
        ..Scope::default()
    };
    let keys: Vec<ObjectKey> = store
        .list(&scope, &Default::default())
        .await?
        .items
        .iter()
        .filter(|p| p["spec"]["nodeName"].as_str().is_none_or(str::is_empty))
        .filter_map(|p| {
            Some(ObjectKey::namespaced(
                "pods",
                p["metadata"]["namespace"].as_str()?,
                p["metadata"]["name"].as_str()?,
            ))
        })
        .collect();
    let count = keys.len();
    // Concurrent deletes share the store's group commits.
    futures::stream::iter(keys)
        .map(|key| {
            let store = store.clone();
            async move { store.delete(&key, &Default::default()).await }
        })
        .buffer_unordered(32)
        .for_each(|_| async {})
        .await;
    Ok(count)
}

// ---------------------------------------------------------- end to end

/// One end-to-end run.
struct EndToEnd {
    /// From the first create to the last binding counted.
    elapsed: Duration,
    /// From the first create to the last create answered.
    created_in: Duration,
    /// Pods created.
    created: usize,
    /// Pods bound (all of them, unless the run hit its time limit).
    bound: usize,
    /// Pods asked for.
    wanted: usize,
    unschedulable: u64,
    conflicts: u64,
    plugin_errors: u64,
}

impl EndToEnd {
    fn pods_per_second(&self) -> f64 {
        self.bound as f64 / self.elapsed.as_secs_f64()
    }

    fn created_per_second(&self) -> f64 {
        self.created as f64 / self.created_in.as_secs_f64()
    }
}

async fn wait_scheduled(stats: &RunnerStats, at_least: u64, what: &str) -> anyhow::Result<()> {
    let started = Instant::now();
    while stats.scheduled.load(Ordering::Relaxed) < at_least {
        if started.elapsed() > PHASE_TIMEOUT {
            bail!(
                "{what}: only {} pods bound",
                stats.scheduled.load(Ordering::Relaxed)
            );
        }
        tokio::time::sleep(Duration::from_millis(1)).await;
    }
    Ok(())
}

async fn end_to_end(
    cluster: &Cluster,
    decider: Box<dyn Decide>,
    args: &Args,
    label: &str,
) -> anyhow::Result<EndToEnd> {
    let handle =
        runner::start(cluster.store.clone(), decider, None).map_err(|e| anyhow::anyhow!("{e}"))?;
    let result = measure(cluster, &handle, args, label).await;
    handle.stop().await;
    let run = result?;
    if run.bound < run.wanted {
        let deleted = delete_pending(&cluster.store).await?;
        println!("  ({deleted} pods left unbound at the time limit deleted)");
    }
    Ok(run)
}

async fn measure(
    cluster: &Cluster,
    handle: &runner::RunnerHandle,
    args: &Args,
    label: &str,
) -> anyhow::Result<EndToEnd> {
    let pods = args.pods;
    let stats = handle.stats().clone();
    // One pod first: it is bound only once both informers have listed
    // (so every node is known) and the decider has made a call, so the
    // clock below starts on a warm scheduler.
    let warmup = Flow::new(Arc::new(|| 0), 1);
    create_pods(cluster.addr, "warmup", 1, 1, warmup).await?;
    wait_scheduled(&stats, 1, "warm-up").await?;
    let bound_now = {
        let stats = stats.clone();
        move || {
            let scheduled = stats.scheduled.load(Ordering::Relaxed);
            usize::try_from(scheduled.saturating_sub(1)).unwrap_or(usize::MAX)
        }
    };
    let flow = Flow::new(Arc::new(bound_now.clone()), MAX_BACKLOG);
    println!(
        "creating {pods} pods through the API ({CREATE_CONCURRENCY} connections, at most {MAX_BACKLOG} waiting) while the {label} scheduler binds them (time limit {} s)...",
        args.max_seconds
    );
    let started = Instant::now();
    let creator = tokio::spawn(create_pods(
        cluster.addr,
        "bench",
        pods,
        CREATE_CONCURRENCY,
        flow.clone(),
    ));
    let limit = Duration::from_secs(args.max_seconds);
    let mut last_print = Instant::now();
    let mut creator = Some(creator);
    let mut creates = None;
    let mut bound;
    loop {
        bound = bound_now();
        if bound >= pods || started.elapsed() >= limit {
            break;
        }
        // A failed create would leave the loop waiting for pods that never come.
        if let Some(task) = creator.take_if(|t| t.is_finished()) {
            creates = Some(task.await.context("pod creator")??);
        }
        if last_print.elapsed() >= Duration::from_secs(5) {
            last_print = Instant::now();
            println!(
                "  {:>5.1} s: {bound} bound, {} waiting in the scheduler's queue",
                started.elapsed().as_secs_f64(),
                stats.pending.load(Ordering::Relaxed)
            );
        }
        tokio::time::sleep(Duration::from_millis(1)).await;
    }
    let elapsed = started.elapsed();
    flow.stop.store(true, Ordering::Relaxed);
    let (created, last_create) = match (creates, creator) {
        (Some(done), _) => done,
        (None, Some(task)) => task.await.context("pod creator")??,
        (None, None) => bail!("{label}: the pod creator vanished"),
    };
    let run = EndToEnd {
        elapsed,
        created_in: last_create.duration_since(started),
        created,
        bound,
        wanted: pods,
        unschedulable: stats.unschedulable.load(Ordering::Relaxed),
        conflicts: stats.bind_conflicts.load(Ordering::Relaxed),
        plugin_errors: stats.plugin_errors.load(Ordering::Relaxed),
    };
    let limited = if bound < pods {
        format!(" (time limit: {bound} of {pods} bound)")
    } else {
        String::new()
    };
    println!(
        "  {label}: {bound} pods bound in {:.2} s = {:.0} pods/s{limited}; {created} created in {:.2} s = {:.0}/s; unschedulable attempts {}, bind conflicts {}, plugin errors {}",
        elapsed.as_secs_f64(),
        run.pods_per_second(),
        run.created_in.as_secs_f64(),
        run.created_per_second(),
        run.unschedulable,
        run.conflicts,
        run.plugin_errors
    );
    Ok(run)
}

/// A backlog drained: every pod pending before the scheduler starts, as
/// after a scheduler outage or a large batch submitted at once. This is the
/// scheduler's own rate: no pod creation competes with it.
struct Drain {
    /// Pods bound.
    pods: usize,
    /// From starting the runner (informers list, whole view sent) to the
    /// last binding.
    elapsed: Duration,
    /// Creating the backlog through the API, with no scheduler running:
    /// the ceiling the flowing figure is held under.
    created_in: Duration,
}

impl Drain {
    fn pods_per_second(&self) -> f64 {
        self.pods as f64 / self.elapsed.as_secs_f64()
    }

    fn created_per_second(&self) -> f64 {
        self.pods as f64 / self.created_in.as_secs_f64()
    }
}

async fn drain(
    cluster: &Cluster,
    decider: Box<dyn Decide>,
    pods: usize,
    label: &str,
) -> anyhow::Result<Drain> {
    println!("creating a backlog of {pods} pending pods through the API, no scheduler running...");
    let unpaced = Flow::new(Arc::new(|| 0), usize::MAX);
    let creating = Instant::now();
    let (created, last_create) =
        create_pods(cluster.addr, "backlog", pods, CREATE_CONCURRENCY, unpaced).await?;
    if created != pods {
        bail!("{label}: only {created} of {pods} backlog pods were created");
    }
    let created_in = last_create.duration_since(creating);
    println!(
        "  {pods} created in {:.2} s = {:.0}/s (the API alone)",
        created_in.as_secs_f64(),
        pods as f64 / created_in.as_secs_f64()
    );
    let started = Instant::now();
    let handle =
        runner::start(cluster.store.clone(), decider, None).map_err(|e| anyhow::anyhow!("{e}"))?;
    let stats = handle.stats().clone();
    let waited = wait_scheduled(&stats, pods as u64, &format!("{label} backlog")).await;
    let elapsed = started.elapsed();
    handle.stop().await;
    waited?;
    let drained = Drain {
        pods,
        elapsed,
        created_in,
    };
    println!(
        "  {label}: {pods} pending pods bound in {:.2} s = {:.0} pods/s (from the scheduler's start: lists, whole view, decisions, bindings)",
        elapsed.as_secs_f64(),
        drained.pods_per_second()
    );
    Ok(drained)
}

// ---------------------------------------------------------------- swap

/// The hot-swap figures.
struct Swap {
    /// The Plugin's `status.swapMillis`, as the manager measured it, for
    /// each swap in turn (the first to first-fit, then back and forth).
    status_millis: Vec<i64>,
    /// From sending the Plugin update to the watch showing the first pod
    /// bound by the new revision, for each swap in turn.
    update_to_binding: Vec<Duration>,
    /// Uploading the component (before the update; not in the figures).
    upload: Duration,
    /// Pods created while the swap happened; all bound at the end.
    flowing: usize,
    /// Whether the manager took the new artifact from the cache.
    cached: bool,
    /// The longest time between two bindings from an update to the first
    /// binding by the new revision, over all swaps: how long scheduling
    /// paused.
    longest_gap: Duration,
    /// The same before the update, with the old revision alone: the
    /// flow's own gaps, for comparison.
    gap_before: Duration,
}

/// What the pod watch of the swap phase saw.
#[derive(Default)]
struct SwapWatch {
    /// `swap-*` pods seen bound.
    bound: usize,
    /// Set when a Plugin update is sent.
    updated_at: Option<Instant>,
    /// Whether the revision swapped in is first-fit, which binds to the
    /// probe nodes, rather than the default, which keeps off them.
    new_on_probes: bool,
    /// The first `swap-*` pod bound by the new revision after the update:
    /// on a probe node for first-fit, elsewhere for the default.
    first_new: Option<Instant>,
    /// When the last `swap-*` binding was seen.
    last_bound: Option<Instant>,
    /// Longest gap between bindings before the first update.
    gap_before: Duration,
    /// Longest gap between bindings from an update to its `first_new`.
    gap_during: Duration,
}

impl SwapWatch {
    /// Starts timing a swap to first-fit (`to_first_fit`) or back to the
    /// default scheduler.
    fn updating(&mut self, to_first_fit: bool) -> Instant {
        let now = Instant::now();
        self.updated_at = Some(now);
        self.new_on_probes = to_first_fit;
        self.first_new = None;
        now
    }
}

async fn swap(
    cluster: &Cluster,
    nodes: usize,
    scheduler: &[u8],
    first_fit: &[u8],
) -> anyhow::Result<Swap> {
    let err = |e: orchd_plugin_host::PluginError| anyhow::anyhow!("{e}");
    // First-fit binds to the first nodes by name that fit, in string
    // order: hollow-0, hollow-1, hollow-10, hollow-100, ... A
    // PreferNoSchedule taint on the first of those (which first-fit does
    // not score) keeps the default scheduler off them. So after a swap to
    // first-fit, the first pod bound to a probe node was decided by the
    // new revision, and after a swap back, the first pod bound elsewhere.
    let mut names: Vec<String> = (0..nodes).map(|i| format!("{NODE_PREFIX}-{i}")).collect();
    names.sort_unstable();
    names.truncate(SWAP_PROBES);
    let probes: HashSet<String> = names.into_iter().collect();
    // The drain before this leaves thousands of pods for the hollow nodes
    // to mark Running: the swap is measured under its own flow of pods,
    // not under that tail of status updates.
    let settle = Instant::now();
    loop {
        let starting = cluster
            .count("pods", |p| p["status"]["phase"] != "Running")
            .await?;
        if starting == 0 {
            break;
        }
        if settle.elapsed() > PHASE_TIMEOUT {
            bail!("{starting} pods were still not Running before the swap");
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    println!(
        "  every pod so far Running after {:.1} s; the swap phase starts",
        settle.elapsed().as_secs_f64()
    );
    let mut conn = Conn::open(cluster.addr).await?;
    let taint = json!({"spec": {"taints": [
        {"key": "bench.orchd.dev/swap-probe", "value": "", "effect": "PreferNoSchedule"}]}});
    for probe in &probes {
        let (code, body) = conn
            .send(
                "PATCH",
                &format!("/api/v1/nodes/{probe}"),
                "application/merge-patch+json",
                serde_json::to_vec(&taint)?,
            )
            .await?;
        if code != 200 {
            bail!(
                "tainting {probe} answered {code}: {}",
                String::from_utf8_lossy(&body)
            );
        }
    }

    // Install compiles off the hot path: `orchd plugin install` compiles
    // the component into the cluster's artifact cache before it uploads.
    let cache_dir = cluster.dir.path().join("plugin-cache");
    let engine = PluginEngine::new(Some(cache_dir.clone())).map_err(err)?;
    let precompiled = {
        let engine = engine.clone();
        let bytes = first_fit.to_vec();
        tokio::task::spawn_blocking(move || engine.compile(&bytes))
            .await?
            .map_err(err)?
    };
    let artifact = artifact_of(&cache_dir, &precompiled.digest)?;

    println!(
        "starting the plugin manager with Plugin {PLUGIN} revision 1 (the default scheduler component)..."
    );
    manager::ensure_plugin(
        cluster.store.as_ref(),
        PLUGIN,
        World::Scheduler,
        scheduler,
        "orchd-bench",
        None,
    )
    .await?;
    // No object API: the bench runs a scheduler, no controllers.
    let manager = manager::start(
        cluster.store.clone(),
        None,
        engine,
        quiet_sink(),
        ManagerConfig::default(),
    );
    let result = swap_with_manager(cluster, probes, first_fit, &precompiled.digest).await;
    manager.stop().await;
    let ((status_millis, update_to_binding, upload, flowing), (gap_before, longest_gap)) = result?;
    let cached = artifact_of(&cache_dir, &precompiled.digest)? == artifact;
    Ok(Swap {
        status_millis,
        update_to_binding,
        upload,
        flowing,
        cached,
        longest_gap,
        gap_before,
    })
}

/// The cached artifact of `digest`: its path and modification time (a
/// cache miss would compile and write it again).
fn artifact_of(dir: &Path, digest: &str) -> anyhow::Result<(PathBuf, std::time::SystemTime)> {
    let hex = digest.trim_start_matches("sha256:");
    for entry in std::fs::read_dir(dir)? {
        let entry = entry?;
        if entry.file_name().to_string_lossy().starts_with(hex) {
            return Ok((entry.path(), entry.metadata()?.modified()?));
        }
    }
    bail!("no artifact for {digest} in {}", dir.display())
}

async fn plugin_status(store: &dyn Store) -> anyhow::Result<Value> {
    let object = store
        .get(&ObjectKey::cluster(manager::PLUGINS, PLUGIN))
        .await?;
    Ok(object["status"].clone())
}

async fn swap_with_manager(
    cluster: &Cluster,
    probes: HashSet<String>,
    first_fit: &[u8],
    digest: &str,
) -> anyhow::Result<(
    (Vec<i64>, Vec<Duration>, Duration, usize),
    (Duration, Duration),
)> {
    let store = cluster.store.as_ref();
    let started = Instant::now();
    loop {
        let status = plugin_status(store).await?;
        if status["phase"] == "Active" && status["activeRevision"] == 1 {
            break;
        }
        if status["phase"] == "Failed" || started.elapsed() > PHASE_TIMEOUT {
            bail!("revision 1 did not become active: {status}");
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    println!(
        "  revision 1 active after {:.2} s (manager start, list, compile, load)",
        started.elapsed().as_secs_f64()
    );

    // Watch pods from now on: bindings of the pods created below.
    let seen = Arc::new(Mutex::new(SwapWatch::default()));
    let scope = Scope {
        resource: "pods".into(),
        ..Scope::default()
    };
    let mut stream = store.watch(&scope, &WatchOptions::default()).await?;
    let watcher = tokio::spawn({
        let seen = seen.clone();
        async move {
            let mut bound = HashSet::new();
            while let Some(event) = stream.next().await {
                let Ok(event) = event else { break };
                if event.event_type != EventType::Modified {
                    continue;
                }
                let pod = &event.object;
                let name = pod["metadata"]["name"].as_str().unwrap_or_default();
                let node = pod["spec"]["nodeName"].as_str().unwrap_or_default();
                if !name.starts_with("swap-") || node.is_empty() || !bound.insert(name.to_string())
                {
                    continue;
                }
                let Ok(mut seen) = seen.lock() else { break };
                seen.bound += 1;
                let now = Instant::now();
                if let Some(last) = seen.last_bound.replace(now) {
                    let gap = now - last;
                    match (seen.updated_at, seen.first_new) {
                        (None, _) => seen.gap_before = seen.gap_before.max(gap),
                        (Some(_), None) => seen.gap_during = seen.gap_during.max(gap),
                        _ => {}
                    }
                }
                if seen.updated_at.is_some()
                    && seen.first_new.is_none()
                    && probes.contains(node) == seen.new_on_probes
                {
                    seen.first_new = Some(now);
                }
            }
        }
    });
    let result = flow_and_swap(cluster, &seen, first_fit, digest).await;
    watcher.abort();
    let gaps = seen
        .lock()
        .map(|s| (s.gap_before, s.gap_during))
        .unwrap_or_default();
    result.map(|r| (r, gaps))
}

async fn flow_and_swap(
    cluster: &Cluster,
    seen: &Arc<Mutex<SwapWatch>>,
    first_fit: &[u8],
    digest: &str,
) -> anyhow::Result<(Vec<i64>, Vec<Duration>, Duration, usize)> {
    let bound = |seen: &Arc<Mutex<SwapWatch>>| seen.lock().map(|s| s.bound).unwrap_or(0);
    // A steady stream with a short queue: a pod is always waiting when
    // the new revision takes over, and the flow ends soon after the stop.
    let flow = Flow::new(
        Arc::new({
            let seen = seen.clone();
            move || bound(&seen)
        }),
        SWAP_BACKLOG,
    );
    let stop = flow.stop.clone();
    let creator = tokio::spawn(create_pods(cluster.addr, "swap", 1_000_000, 2, flow));
    let started = Instant::now();
    while bound(seen) < 50 {
        if started.elapsed() > PHASE_TIMEOUT || creator.is_finished() {
            stop.store(true, Ordering::Relaxed);
            creator.await??;
            bail!("revision 1 bound only {} of the flowing pods", bound(seen));
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    println!("  pods flowing: {} bound by revision 1 so far", bound(seen));

    // `orchd plugin install`: upload the bytes, then add the revision.
    let mut conn = Conn::open(cluster.addr).await?;
    let upload_started = Instant::now();
    let component = json!({
        "apiVersion": "orchd.dev/v1", "kind": "PluginComponent",
        "metadata": {"name": orchd_resources::orchd_v1::component_name(digest)},
        "data": base64::engine::general_purpose::STANDARD.encode(first_fit),
    });
    let (code, body) = conn
        .send(
            "POST",
            "/apis/orchd.dev/v1/plugincomponents",
            "application/json",
            serde_json::to_vec(&component)?,
        )
        .await?;
    if code != 201 {
        bail!(
            "uploading the component answered {code}: {}",
            String::from_utf8_lossy(&body)
        );
    }
    let upload = upload_started.elapsed();
    println!(
        "updating Plugin {PLUGIN} to revision 2 (first-fit, artifact already cached) while pods flow..."
    );
    let store = cluster.store.as_ref();
    let first = swap_to(
        &mut conn,
        store,
        seen,
        2,
        digest,
        "first-fit-scheduler.wasm",
    )
    .await?;
    println!(
        "  status.swapMillis {} ms; update sent → first pod bound by revision 2 seen: {:.1} ms (PUT answered after {:.1} ms; component upload before it: {:.1} ms)",
        first.status_millis,
        ms(first.update_to_binding),
        ms(first.put),
        ms(upload)
    );

    // One swap is one sample on a noisy 2-core machine: swap back and
    // forth a few more times while the pods still flow.
    let object = store
        .get(&ObjectKey::cluster(manager::PLUGINS, PLUGIN))
        .await?;
    let default_digest = object["spec"]["revisions"][0]["digest"]
        .as_str()
        .context("revision 1 has no digest")?
        .to_string();
    let mut all_millis = vec![first.status_millis];
    let mut all_bindings = vec![first.update_to_binding];
    for revision in 3..(3 + MORE_SWAPS as i64) {
        let (digest, source) = if revision % 2 == 1 {
            (default_digest.as_str(), "default-scheduler.wasm")
        } else {
            (digest, "first-fit-scheduler.wasm")
        };
        let swapped = swap_to(&mut conn, store, seen, revision, digest, source).await?;
        all_millis.push(swapped.status_millis);
        all_bindings.push(swapped.update_to_binding);
    }
    println!(
        "  {} more swaps (back to the default, then first-fit again, ...): status.swapMillis {:?} ms; update sent → first new binding seen {:?} ms",
        MORE_SWAPS,
        &all_millis[1..],
        all_bindings[1..]
            .iter()
            .map(|d| (ms(*d) * 10.0).round() / 10.0)
            .collect::<Vec<_>>()
    );

    // Stop the flow; every pod created must end up bound, none lost.
    stop.store(true, Ordering::Relaxed);
    let (flowing, _) = creator.await.context("pod creator")??;
    let settle = Instant::now();
    loop {
        let bound_now = cluster
            .count("pods", |p| {
                p["metadata"]["name"]
                    .as_str()
                    .is_some_and(|n| n.starts_with("swap-"))
                    && p["spec"]["nodeName"]
                        .as_str()
                        .is_some_and(|n| !n.is_empty())
            })
            .await?;
        if bound_now == flowing {
            break;
        }
        if settle.elapsed() > Duration::from_secs(60) {
            bail!("after the swap only {bound_now} of {flowing} flowing pods were bound");
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    println!("  {flowing} pods created during the swap phase, all bound");
    Ok((all_millis, all_bindings, upload, flowing))
}

/// The Plugin as it is now, with `revision` (component `digest`) added
/// and made current: the body of `orchd plugin install`'s update.
async fn with_revision(
    conn: &mut Conn,
    revision: i64,
    digest: &str,
    source: &str,
) -> anyhow::Result<Vec<u8>> {
    let path = format!("/apis/orchd.dev/v1/plugins/{PLUGIN}");
    let (code, body) = conn
        .send("GET", &path, "application/json", Vec::new())
        .await?;
    if code != 200 {
        bail!("reading the Plugin answered {code}");
    }
    let mut plugin: Value = serde_json::from_slice(&body)?;
    plugin["spec"]["revisions"]
        .as_array_mut()
        .context("the Plugin has no revisions")?
        .push(json!({"revision": revision, "digest": digest, "source": source}));
    plugin["spec"]["revision"] = json!(revision);
    Ok(serde_json::to_vec(&plugin)?)
}

/// Sends an update made by [`with_revision`].
async fn put_plugin(conn: &mut Conn, body: Vec<u8>, revision: i64) -> anyhow::Result<()> {
    let path = format!("/apis/orchd.dev/v1/plugins/{PLUGIN}");
    let (code, resp) = conn.send("PUT", &path, "application/json", body).await?;
    if code != 200 {
        bail!(
            "updating the Plugin to revision {revision} answered {code}: {}",
            String::from_utf8_lossy(&resp)
        );
    }
    Ok(())
}

/// Swaps after the first one, back and forth.
const MORE_SWAPS: usize = 4;

/// Nodes tainted for the swap phase, which first-fit fills in turn: room
/// for its pods during the phase (36 more on each).
const SWAP_PROBES: usize = 20;

/// Pods placed on each node in the micro benchmark's swap-sized view: the
/// end to end run's swap phase finds about 20,000 pods on 5,000 nodes.
const SWAP_PODS_PER_NODE: usize = 4;

/// One swap's figures.
struct Swapped {
    /// The Plugin's `status.swapMillis`.
    status_millis: i64,
    /// From sending the update to the watch showing the first pod bound
    /// by the new revision.
    update_to_binding: Duration,
    /// How long the update's PUT took to answer.
    put: Duration,
}

/// Makes `revision` (component `digest`, first-fit if `source` says so)
/// the Plugin's revision and waits for its first decision and the first
/// binding by it.
async fn swap_to(
    conn: &mut Conn,
    store: &dyn Store,
    seen: &Mutex<SwapWatch>,
    revision: i64,
    digest: &str,
    source: &str,
) -> anyhow::Result<Swapped> {
    let body = with_revision(conn, revision, digest, source).await?;
    let to_first_fit = source.starts_with("first-fit");
    let updated_at = seen
        .lock()
        .map_err(|_| anyhow::anyhow!("the swap watch panicked"))?
        .updating(to_first_fit);
    put_plugin(conn, body, revision).await?;
    let put = updated_at.elapsed();
    loop {
        let status = plugin_status(store).await?;
        let first_new = seen.lock().ok().and_then(|s| s.first_new);
        // The takeover clears swapMillis; the first decision sets it.
        if status["activeRevision"] == revision
            && let (Some(status_millis), Some(first)) = (status["swapMillis"].as_i64(), first_new)
        {
            return Ok(Swapped {
                status_millis,
                update_to_binding: first.duration_since(updated_at),
                put,
            });
        }
        if status["failedRevisions"]
            .as_array()
            .is_some_and(|f| f.contains(&json!(revision)))
        {
            bail!("revision {revision} was refused: {status}");
        }
        if updated_at.elapsed() > Duration::from_secs(60) {
            bail!("no first binding by revision {revision} within 60 s: {status}");
        }
        tokio::time::sleep(Duration::from_millis(1)).await;
    }
}

// ------------------------------------------------------------- summary

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1e3
}

fn us(d: Duration) -> f64 {
    d.as_secs_f64() * 1e6
}

fn ns(d: Duration) -> f64 {
    d.as_secs_f64() * 1e9
}

fn verdict(ok: bool) -> &'static str {
    if ok { "met" } else { "MISSED" }
}

fn summary(
    args: &Args,
    micro: &Micro,
    [wasm, native]: [&EndToEnd; 2],
    [wasm_drain, native_drain]: [&Drain; 2],
    swap: &Swap,
) {
    let ratio = wasm.pods_per_second() / native.pods_per_second();
    println!(
        "\n== scheduler summary: {} hollow nodes, {} pods, 2-core machine (noisy: other work shares it) ==",
        args.nodes, args.pods
    );
    println!(
        "{:<44} {:>12} {:>12} {:>7}  {:<16} {:<6}",
        "figure", "Wasm", "native", "ratio", "target", "result"
    );
    let row = |name: &str, w: String, n: String, r: String, target: &str, ok: Option<bool>| {
        println!(
            "{name:<44} {w:>12} {n:>12} {r:>7}  {target:<16} {}",
            ok.map(verdict).unwrap_or("")
        );
    };
    row(
        "pods bound/s, end to end",
        format!("{:.0}", wasm.pods_per_second()),
        format!("{:.0}", native.pods_per_second()),
        format!("{ratio:.2}x"),
        ">= 3000/s (Wasm)",
        Some(wasm.pods_per_second() >= 3000.0),
    );
    let drain_ratio = wasm_drain.pods_per_second() / native_drain.pods_per_second();
    row(
        "pods bound/s, a backlog drained",
        format!("{:.0}", wasm_drain.pods_per_second()),
        format!("{:.0}", native_drain.pods_per_second()),
        format!("{drain_ratio:.2}x"),
        ">= 3000/s (Wasm)",
        Some(wasm_drain.pods_per_second() >= 3000.0),
    );
    row(
        "  Wasm / native (flowing, backlog)",
        String::new(),
        String::new(),
        format!("{ratio:.2}x, {drain_ratio:.2}x"),
        ">= 0.8x",
        Some(ratio >= 0.8 && drain_ratio >= 0.8),
    );
    row(
        "  pods bound (of those asked for)",
        format!("{}/{}", wasm.bound, wasm.wanted),
        format!("{}/{}", native.bound, native.wanted),
        String::new(),
        "",
        None,
    );
    row(
        "  pods created/s meanwhile (API)",
        format!("{:.0}", wasm.created_per_second()),
        format!("{:.0}", native.created_per_second()),
        String::new(),
        "",
        None,
    );
    row(
        "  pods created/s, no scheduler (API alone)",
        format!("{:.0}", wasm_drain.created_per_second()),
        format!("{:.0}", native_drain.created_per_second()),
        String::new(),
        "",
        None,
    );
    row(
        &format!("one decision, {} nodes (µs)", args.nodes),
        format!("{:.0}", us(micro.decision_wasm)),
        format!("{:.0}", us(micro.decision_native)),
        format!(
            "{:.2}x",
            micro.decision_native.as_secs_f64() / micro.decision_wasm.as_secs_f64()
        ),
        "",
        None,
    );
    row(
        "  of which the algorithm alone (µs)",
        String::new(),
        format!("{:.0}", us(micro.algorithm_only)),
        String::new(),
        "",
        None,
    );
    row(
        &format!("the whole view sent, {} nodes (ms)", args.nodes),
        format!("{:.1}", ms(micro.view_wasm)),
        format!("{:.1}", ms(micro.view_native)),
        format!(
            "{:.2}x",
            micro.view_native.as_secs_f64() / micro.view_wasm.as_secs_f64()
        ),
        "",
        None,
    );
    row(
        &format!("  with {SWAP_PODS_PER_NODE} pods on each node, as at the swap (ms)"),
        format!("{:.1}", ms(micro.swap_view_wasm)),
        format!("{:.1}", ms(micro.swap_view_native)),
        format!(
            "{:.2}x",
            micro.swap_view_native.as_secs_f64() / micro.swap_view_wasm.as_secs_f64()
        ),
        "",
        None,
    );
    row(
        "    the same, to a fresh instance, as a swap does (ms)",
        format!("{:.1}", ms(micro.swap_view_fresh)),
        String::new(),
        String::new(),
        "",
        None,
    );
    row(
        "trivial call, scheduler-name (ns)",
        format!("{:.0}", ns(micro.trivial_call)),
        format!("{:.0}", ns(micro.trivial_native)),
        String::new(),
        "<= 1000 ns",
        Some(micro.trivial_call <= Duration::from_micros(1)),
    );
    row(
        "instantiate, fresh instance (µs)",
        format!("{:.1}", us(micro.instantiate)),
        String::new(),
        String::new(),
        "",
        None,
    );
    row(
        "load: link + instantiate + first call (ms)",
        format!("{:.2}", ms(micro.load)),
        String::new(),
        String::new(),
        "",
        None,
    );
    row(
        "compile, cold (ms)",
        format!("{:.1}", ms(micro.compile_cold)),
        String::new(),
        String::new(),
        "",
        None,
    );
    row(
        "compile + artifact write, empty cache (ms)",
        format!("{:.1}", ms(micro.compile_cold_stored)),
        String::new(),
        String::new(),
        "",
        None,
    );
    row(
        "compile, from the artifact cache (ms)",
        format!("{:.2}", ms(micro.compile_cached)),
        String::new(),
        String::new(),
        "",
        None,
    );
    let mut millis = swap.status_millis.clone();
    millis.sort_unstable();
    let median = millis.get(millis.len() / 2).copied().unwrap_or(i64::MAX);
    row(
        &format!("swap: status.swapMillis, median of {} (ms)", millis.len()),
        format!("{median}"),
        String::new(),
        String::new(),
        "< 100 ms cached",
        Some(median < 100 && swap.cached),
    );
    row(
        "  fastest, slowest (ms)",
        format!(
            "{}, {}",
            millis.first().copied().unwrap_or_default(),
            millis.last().copied().unwrap_or_default()
        ),
        String::new(),
        String::new(),
        "",
        None,
    );
    let mut bindings = swap.update_to_binding.clone();
    bindings.sort_unstable();
    let median = bindings
        .get(bindings.len() / 2)
        .copied()
        .unwrap_or(Duration::MAX);
    row(
        &format!(
            "swap: update → first new binding seen, median of {} (ms)",
            bindings.len()
        ),
        format!("{:.1}", ms(median)),
        String::new(),
        String::new(),
        "< 100 ms cached",
        Some(median < Duration::from_millis(100) && swap.cached),
    );
    row(
        "  fastest, slowest (ms)",
        format!(
            "{:.1}, {:.1}",
            ms(bindings.first().copied().unwrap_or_default()),
            ms(bindings.last().copied().unwrap_or_default())
        ),
        String::new(),
        String::new(),
        "",
        None,
    );
    row(
        "swap: longest pause between bindings (ms)",
        format!("{:.1}", ms(swap.longest_gap)),
        String::new(),
        String::new(),
        "",
        None,
    );
    row(
        "  the same before the update (ms)",
        format!("{:.1}", ms(swap.gap_before)),
        String::new(),
        String::new(),
        "",
        None,
    );
    println!(
        "(swap: artifact {} the cache; {} pods flowing through it, all bound; component upload before the update {:.1} ms)",
        if swap.cached {
            "taken from"
        } else {
            "NOT taken from"
        },
        swap.flowing,
        ms(swap.upload)
    );
    println!(
        "(end to end: unschedulable attempts / bind conflicts / plugin errors: Wasm {}/{}/{}, native {}/{}/{})",
        wasm.unschedulable,
        wasm.conflicts,
        wasm.plugin_errors,
        native.unschedulable,
        native.conflicts,
        native.plugin_errors
    );
}
