//! orchd's benchmarks, each printing orchd's figures beside a baseline run
//! on the same machine:
//!
//! * `orchd-bench store [ORCHD_BIN]`: durable write throughput at several
//!   concurrencies for (1) the store through its trait, (2) the HTTP API
//!   end to end, (3) etcd (Debian's `etcd-server`, started here on
//!   loopback with its own data dir) through its JSON gateway — the same
//!   JSON-over-HTTP/1.1 shape as orchd's API; then watch fan-out latency,
//!   `orchd up` time to ready, and idle memory.
//! * `orchd-bench scheduler ORCHD_BIN SCHEDULER_WASM FIRST_FIT_WASM`: pods
//!   bound per second end to end with the Wasm scheduler and with the
//!   native build of the same algorithm, the cost of calls into the
//!   component, instantiation and compilation, and hot-swap time (see
//!   `scheduler.rs`).
//! * `orchd-bench controllers ORCHD_BIN`: a Deployment scaled from 0 to
//!   10,000 replicas on 1,000 hollow nodes, `orchd up` with its default
//!   plugins doing the work: time until all pods are Running and Ready,
//!   per-pod startup latency against Kubernetes' SLO, control-plane memory
//!   (see `controllers.rs`).
//! * `orchd-bench plugins ORCHD_BIN RUST_WASM PYTHON_WASM JS_WASM`: one
//!   admission policy built from Rust, Python and JavaScript: size, cold
//!   compile, load, per-review latency, and API latency with and without it
//!   (see `plugins.rs`).
//! * `orchd-bench pods ORCHD_BIN HELLO_WASM`: pod startup latency (create
//!   -> Running, p50/p99 over 200 pods) on the wasm shim and on
//!   containerd/runc, beside bare `ctr run -d`; node Ready time (see
//!   `pods.rs`).

mod controllers;
mod etcd;
mod http;
mod native;
mod plugins;
mod pods;
mod scheduler;

use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use orchd_store::{ObjectKey, RedbStore, RedbStoreConfig, Scope, Store, WatchOptions};
use serde_json::json;

const CONCURRENCY: &[usize] = &[1, 16, 64];

/// mimalloc: allocation-heavy paths (JSON objects, watch events) spend far
/// less in the allocator than with glibc's (see `cargo xtask bench`).
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> anyhow::Result<()> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    match args.first().map(String::as_str) {
        Some("store") => runtime.block_on(store_bench(args.get(1).map(PathBuf::from))),
        Some("scheduler") => {
            let options = scheduler::Args::parse(&args[1..])?;
            runtime.block_on(scheduler::run(options))
        }
        Some("controllers") => {
            let options = controllers::Args::parse(&args[1..])?;
            runtime.block_on(controllers::run(options))
        }
        Some("plugins") => {
            let options = plugins::Args::parse(&args[1..])?;
            runtime.block_on(plugins::run(options))
        }
        Some("pods") => {
            let options = pods::Args::parse(&args[1..])?;
            runtime.block_on(pods::run(options))
        }
        Some(other) => {
            bail!(
                "unknown benchmark {other:?} (available: store, scheduler, controllers, plugins, pods)"
            )
        }
        None => bail!(
            "usage: orchd-bench store [ORCHD_BIN] | orchd-bench scheduler ORCHD_BIN SCHEDULER_WASM FIRST_FIT_WASM [--nodes N] [--pods N] [--max-seconds S] | orchd-bench controllers ORCHD_BIN [--nodes N] [--replicas N] [--max-seconds S] | orchd-bench plugins ORCHD_BIN RUST_WASM PYTHON_WASM JS_WASM [--reviews N] [--requests N] [--concurrency N] | orchd-bench pods ORCHD_BIN HELLO_WASM [--pods N]"
        ),
    }
}

/// Writes per run: enough for a steady figure, small enough for a 2-core box.
fn writes_for(concurrency: usize) -> usize {
    if concurrency == 1 { 1_000 } else { 10_000 }
}

fn configmap(i: usize, round: usize) -> serde_json::Value {
    json!({"apiVersion": "v1", "kind": "ConfigMap",
           "metadata": {"name": format!("cm-{i}"), "namespace": "default"},
           "data": {"round": round.to_string(), "payload": "x".repeat(200)}})
}

async fn store_bench(orchd_bin: Option<PathBuf>) -> anyhow::Result<()> {
    println!("== store: durable writes/s (create then update of distinct keys), 2-core machine ==");
    println!("{:<34} {:>10} {:>10} {:>10}", "path", "c=1", "c=16", "c=64");

    let mut direct = Vec::new();
    for &c in CONCURRENCY {
        let (store, _dir) = temp_store()?;
        direct.push(trait_writes(store, c).await?);
    }
    print_row("orchd store (trait, redb)", &direct);

    let mut api = Vec::new();
    for &c in CONCURRENCY {
        let (store, _dir) = temp_store()?;
        let server = orchd_api::ApiServer::new(store, orchd_api::ApiConfig::default());
        server.bootstrap().await?;
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
        let addr = listener.local_addr()?;
        let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
        let task = tokio::spawn(server.serve(listener, async move {
            let _ = stop_rx.await;
        }));
        api.push(http::api_writes(addr, c, writes_for(c)).await?);
        let _ = stop_tx.send(());
        let _ = task.await;
    }
    print_row("orchd API (HTTP/1.1 JSON, e2e)", &api);

    let etcd_figures = match etcd::Etcd::start().await {
        Ok(etcd) => {
            let mut v = Vec::new();
            for &c in CONCURRENCY {
                v.push(etcd.put_throughput(c, writes_for(c)).await?);
            }
            Some(v)
        }
        Err(e) => {
            println!("etcd: not run: {e:#}");
            None
        }
    };
    if let Some(etcd) = &etcd_figures {
        print_row("etcd 3.4 (gateway HTTP/1.1 JSON)", etcd);
        let ratio = |a: &[f64]| a.iter().zip(etcd).map(|(x, e)| x / e).collect::<Vec<_>>();
        println!(
            "{:<34} {:>10} {:>10} {:>10}",
            "ratio orchd store / etcd", "", "", ""
        );
        print_ratio("  trait", &ratio(&direct));
        print_ratio("  API", &ratio(&api));
    }

    println!(
        "\n== watch fan-out: 1,000 watchers, 200 writes, delivery latency from write start =="
    );
    let (p50, p99) = fan_out(1_000, 200).await?;
    println!("p50 {:.2} ms   p99 {:.2} ms", p50, p99);

    if let Some(bin) = orchd_bin {
        println!("\n== orchd up ==");
        let (ready, rss) = startup(&bin).await?;
        println!(
            "time to /readyz: {:.0} ms   idle RSS after 3 s: {:.1} MB",
            ready.as_secs_f64() * 1e3,
            rss as f64 / 1e6
        );
    } else {
        println!("\n(pass the orchd binary path to also measure `orchd up` time and idle RSS)");
    }
    Ok(())
}

/// A fresh store in a temporary directory (kept while the guard lives).
fn temp_store() -> anyhow::Result<(Arc<dyn Store>, tempfile::TempDir)> {
    let dir = tempfile::tempdir()?;
    let store: Arc<dyn Store> = RedbStore::open(RedbStoreConfig::new(dir.path().join("s.redb")))?;
    Ok((store, dir))
}

fn print_row(name: &str, figures: &[f64]) {
    println!(
        "{name:<34} {:>10.0} {:>10.0} {:>10.0}",
        figures[0], figures[1], figures[2]
    );
}

fn print_ratio(name: &str, figures: &[f64]) {
    println!(
        "{name:<34} {:>9.2}x {:>9.2}x {:>9.2}x",
        figures[0], figures[1], figures[2]
    );
}

/// Creates `writes_for(c)` objects from `c` tasks, then updates each once.
async fn trait_writes(store: Arc<dyn Store>, concurrency: usize) -> anyhow::Result<f64> {
    let total = writes_for(concurrency);
    let started = Instant::now();
    let mut tasks = Vec::new();
    for w in 0..concurrency {
        let store = store.clone();
        tasks.push(tokio::spawn(async move {
            let mut i = w;
            while i < total / 2 {
                let key = ObjectKey::namespaced("configmaps", "default", &format!("cm-{i}"));
                let created = store.create(&key, configmap(i, 0)).await?;
                let mut next = configmap(i, 1);
                next["metadata"]["resourceVersion"] =
                    created["metadata"]["resourceVersion"].clone();
                store.update(&key, next).await?;
                i += concurrency;
            }
            anyhow::Ok(())
        }));
    }
    for t in tasks {
        t.await.context("writer task")??;
    }
    Ok(total as f64 / started.elapsed().as_secs_f64())
}

/// Delivery latency over `watchers` watches of `writes` sequential writes.
async fn fan_out(watchers: usize, writes: usize) -> anyhow::Result<(f64, f64)> {
    let (store, _dir) = temp_store()?;
    let scope = Scope {
        resource: "configmaps".into(),
        ..Default::default()
    };
    let starts = Arc::new(std::sync::Mutex::new(std::collections::HashMap::<
        String,
        Instant,
    >::new()));
    let mut handles = Vec::new();
    for _ in 0..watchers {
        let mut stream = store.watch(&scope, &WatchOptions::default()).await?;
        let starts = starts.clone();
        handles.push(tokio::spawn(async move {
            use futures::StreamExt;
            let mut latencies = Vec::with_capacity(writes);
            while latencies.len() < writes {
                match stream.next().await {
                    Some(Ok(ev)) => {
                        let name = ev.object["metadata"]["name"]
                            .as_str()
                            .unwrap_or_default()
                            .to_string();
                        if let Some(t) = starts
                            .lock()
                            .map_err(|_| anyhow::anyhow!("poisoned"))?
                            .get(&name)
                        {
                            latencies.push(t.elapsed());
                        }
                    }
                    Some(Err(e)) => return Err(anyhow::anyhow!("watch failed: {e}")),
                    None => break,
                }
            }
            anyhow::Ok(latencies)
        }));
    }
    for i in 0..writes {
        let name = format!("cm-{i}");
        starts
            .lock()
            .map_err(|_| anyhow::anyhow!("poisoned"))?
            .insert(name.clone(), Instant::now());
        store
            .create(
                &ObjectKey::namespaced("configmaps", "default", &name),
                configmap(i, 0),
            )
            .await?;
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
    let mut all = Vec::new();
    for h in handles {
        all.extend(
            tokio::time::timeout(Duration::from_secs(60), h)
                .await
                .context("watchers timed out")???,
        );
    }
    all.sort();
    let pct =
        |p: f64| all[((all.len() as f64 * p) as usize).min(all.len() - 1)].as_secs_f64() * 1e3;
    Ok((pct(0.50), pct(0.99)))
}

/// Starts `orchd up`, times it to /readyz, and reads its RSS when idle.
async fn startup(bin: &PathBuf) -> anyhow::Result<(Duration, u64)> {
    let dir = tempfile::tempdir()?;
    let port = std::net::TcpListener::bind("127.0.0.1:0")?
        .local_addr()?
        .port();
    let started = Instant::now();
    let mut child = tokio::process::Command::new(bin)
        .args(["up", "--data-dir"])
        .arg(dir.path())
        .args(["--listen", &format!("127.0.0.1:{port}")])
        .stdout(std::process::Stdio::null())
        .kill_on_drop(true)
        .spawn()
        .with_context(|| format!("cannot start {}", bin.display()))?;
    let addr: std::net::SocketAddr = format!("127.0.0.1:{port}").parse()?;
    let ready = loop {
        if http::get_ok(addr, "/readyz").await {
            break started.elapsed();
        }
        if started.elapsed() > Duration::from_secs(30) {
            bail!("orchd did not become ready in 30 s");
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    };
    tokio::time::sleep(Duration::from_secs(3)).await;
    let pid = child.id().context("orchd exited")?;
    let status = std::fs::read_to_string(format!("/proc/{pid}/status"))?;
    let rss_kb: u64 = status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.split_whitespace().next())
        .and_then(|v| v.parse().ok())
        .context("no VmRSS")?;
    child.kill().await.ok();
    Ok((ready, rss_kb * 1024))
}
