//! `orchd-bench plugins ORCHD_BIN RUST_WASM PYTHON_WASM JS_WASM`: the same
//! admission policy (required labels: pods and Deployments need an `owner`
//! label) built from Rust, Python (componentize-py) and JavaScript
//! (componentize-qjs), side by side:
//!
//! * component size;
//! * cold compile: a fresh engine with no artifact cache, as the first
//!   install of a digest on a machine pays it;
//! * load: linking and starting the first instance from the compiled
//!   component, as the plugin host does for a new revision or a restart
//!   after a trap;
//! * per-review latency p50/p99: one `review` through the admission chain
//!   the API calls (a realistic pod create as the AdmissionRequest, host to
//!   plugin and back, on the pooled instance);
//! * API latency: pod creates through `orchd up` (release), concurrency 16,
//!   with no admission plugin, with the Rust build and with the Python
//!   build installed (`orchd plugin install`).
//!
//! Ratios are against the Rust build (and the no-plugin API).

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use orchd_api::admission::{Admission, AdmissionRequest, Operation, Phase, Refusal};
use orchd_plugin_host::admission::{AdmissionChain, AdmissionPlugin, AdmissionSettings};
use orchd_plugin_host::{Limits, PluginEngine, World, sandbox};
use orchd_resources::orchd_v1::{AdmissionRule, AdmissionSpec};
use orchd_store::{RedbStore, RedbStoreConfig};
use serde_json::{Value, json};
use tokio::process::Command;

use crate::controllers::{percentile, spawn_and_wait_for};
use crate::http::Conn;

/// What to run.
pub struct Args {
    orchd: PathBuf,
    /// (language, component).
    components: Vec<(&'static str, PathBuf)>,
    reviews: usize,
    requests: usize,
    concurrency: usize,
}

impl Args {
    /// `ORCHD_BIN RUST PYTHON JS [--reviews N] [--requests N] [--concurrency N]`.
    pub fn parse(args: &[String]) -> anyhow::Result<Self> {
        let mut positional = Vec::new();
        let mut reviews = 2_000;
        let mut requests = 2_000;
        let mut concurrency = 16;
        let mut it = args.iter();
        while let Some(a) = it.next() {
            let mut number = |what: &str| -> anyhow::Result<usize> {
                it.next()
                    .with_context(|| format!("{what} needs a number"))?
                    .parse()
                    .with_context(|| format!("{what} needs a number"))
            };
            match a.as_str() {
                "--reviews" => reviews = number("--reviews")?,
                "--requests" => requests = number("--requests")?,
                "--concurrency" => concurrency = number("--concurrency")?.max(1),
                other => positional.push(PathBuf::from(other)),
            }
        }
        let [orchd, rust, python, js] = <[PathBuf; 4]>::try_from(positional).map_err(|_| {
            anyhow::anyhow!(
                "usage: orchd-bench plugins ORCHD_BIN RUST_WASM PYTHON_WASM JS_WASM [--reviews N] [--requests N] [--concurrency N]"
            )
        })?;
        Ok(Args {
            orchd,
            components: vec![("Rust", rust), ("Python", python), ("JavaScript", js)],
            reviews: reviews.max(1),
            requests: requests.max(1),
            concurrency,
        })
    }
}

/// A pod create as the API reviews it: labels, two containers with
/// resources, probes and env, as `kubectl apply` sends one.
fn pod(name: &str) -> Value {
    json!({
        "apiVersion": "v1", "kind": "Pod",
        "metadata": {
            "name": name, "namespace": "default",
            "labels": {"app": "web", "tier": "front", "owner": "team-a"},
            "annotations": {"kubectl.kubernetes.io/last-applied-configuration": "{}"},
        },
        "spec": {
            "containers": [
                {"name": "app", "image": "registry.local/web:1.4.2",
                 "ports": [{"containerPort": 8080, "protocol": "TCP"}],
                 "env": [{"name": "MODE", "value": "production"}, {"name": "LOG", "value": "info"}],
                 "resources": {"requests": {"cpu": "250m", "memory": "256Mi"},
                               "limits": {"cpu": "1", "memory": "512Mi"}},
                 "readinessProbe": {"httpGet": {"path": "/ready", "port": 8080}, "periodSeconds": 5}},
                {"name": "sidecar", "image": "registry.local/proxy:2.0",
                 "resources": {"requests": {"cpu": "50m", "memory": "64Mi"}}},
            ],
            "restartPolicy": "Always",
            "terminationGracePeriodSeconds": 30,
        },
    })
}

fn review_request(i: usize) -> AdmissionRequest {
    let name = format!("web-{i}");
    AdmissionRequest {
        uid: format!("00000000-0000-0000-0000-{i:012}"),
        group: String::new(),
        resource: "pods".into(),
        subresource: None,
        namespace: Some("default".into()),
        name: name.clone(),
        operation: Operation::Create,
        object: Some(pod(&name)),
        old_object: None,
        dry_run: false,
    }
}

fn settings() -> anyhow::Result<AdmissionSettings> {
    let spec = AdmissionSpec {
        rules: vec![AdmissionRule {
            operations: vec!["CREATE".into(), "UPDATE".into()],
            api_groups: vec!["".into()],
            resources: vec!["pods".into()],
        }],
        ..Default::default()
    };
    AdmissionSettings::from_spec(Some(&spec)).map_err(|e| anyhow::anyhow!("{e}"))
}

/// The figures of one build.
struct Figures {
    lang: &'static str,
    size: usize,
    compile: Duration,
    load: Duration,
    p50: Duration,
    p99: Duration,
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1e3
}

fn us(d: Duration) -> f64 {
    d.as_secs_f64() * 1e6
}

async fn measure(
    lang: &'static str,
    path: &PathBuf,
    reviews: usize,
    store: Arc<dyn orchd_store::Store>,
) -> anyhow::Result<Figures> {
    let bytes = std::fs::read(path).with_context(|| format!("cannot read {}", path.display()))?;
    let size = bytes.len();
    let (compile, load, plugin) = tokio::task::spawn_blocking(move || {
        // No cache directory: every compile is cold.
        let engine = PluginEngine::new(None).map_err(|e| anyhow::anyhow!("{e}"))?;
        let started = Instant::now();
        let compiled = engine.compile(&bytes).map_err(|e| anyhow::anyhow!("{e}"))?;
        let compile = started.elapsed();
        if compiled.world != World::Admission {
            bail!(
                "{lang}: a {} component, not an admission one",
                compiled.world
            );
        }
        let log = sandbox::stderr_sink();
        let mut loads = Vec::new();
        let mut plugin = None;
        for _ in 0..5 {
            let started = Instant::now();
            let p = AdmissionPlugin::load(
                &engine,
                &compiled,
                "required-labels",
                1,
                Limits::default(),
                settings()?,
                log.clone(),
            )
            .map_err(|e| anyhow::anyhow!("{lang}: {e}"))?;
            loads.push(started.elapsed());
            plugin = Some(p);
        }
        loads.sort();
        let plugin = plugin.context("no load")?;
        anyhow::Ok((compile, loads[loads.len() / 2], plugin))
    })
    .await??;
    let chain = AdmissionChain::new(store);
    chain.install(Arc::new(plugin));
    // The denial must be the policy's, whatever the language.
    let mut unlabelled = review_request(0);
    if let Some(o) = unlabelled.object.as_mut() {
        o["metadata"]["labels"]
            .as_object_mut()
            .map(|l| l.remove("owner"));
    }
    match chain.review(Phase::Validating, unlabelled).await {
        Err(Refusal::Denied { message, .. })
            if message.contains("is missing the required label \"owner\"") => {}
        Err(other) => bail!("{lang}: unexpected refusal {other:?}"),
        Ok(_) => bail!("{lang}: a pod without an owner label was allowed"),
    }
    for i in 0..reviews.min(200) {
        if chain
            .review(Phase::Validating, review_request(i))
            .await
            .is_err()
        {
            bail!("{lang}: a labelled pod was refused");
        }
    }
    let mut took = Vec::with_capacity(reviews);
    for i in 0..reviews {
        let request = review_request(i);
        let started = Instant::now();
        let answer = chain.review(Phase::Validating, request).await;
        took.push(started.elapsed());
        if answer.is_err() {
            bail!("{lang}: a labelled pod was refused");
        }
    }
    took.sort();
    Ok(Figures {
        lang,
        size,
        compile,
        load,
        p50: percentile(&took, 50.0),
        p99: percentile(&took, 99.0),
    })
}

/// Pod creates at `concurrency` through the API at `addr`: latencies
/// sorted, and creates per second.
async fn api_latency(
    addr: SocketAddr,
    prefix: &str,
    concurrency: usize,
    total: usize,
) -> anyhow::Result<(Vec<Duration>, f64)> {
    let started = Instant::now();
    let mut tasks = Vec::new();
    for w in 0..concurrency {
        let prefix = prefix.to_string();
        tasks.push(tokio::spawn(async move {
            let mut conn = Conn::open(addr).await?;
            let mut took = Vec::new();
            let mut i = w;
            while i < total {
                let mut body = pod(&format!("{prefix}-{i}"));
                body["metadata"]
                    .as_object_mut()
                    .map(|m| m.remove("namespace"));
                let body = serde_json::to_vec(&body)?;
                let t = Instant::now();
                let (code, resp) = conn
                    .send(
                        "POST",
                        "/api/v1/namespaces/default/pods",
                        "application/json",
                        body,
                    )
                    .await?;
                took.push(t.elapsed());
                if code != 201 {
                    bail!("create answered {code}: {}", String::from_utf8_lossy(&resp));
                }
                i += concurrency;
            }
            anyhow::Ok(took)
        }));
    }
    let mut all = Vec::new();
    for t in tasks {
        all.extend(t.await.context("client task")??);
    }
    let rate = total as f64 / started.elapsed().as_secs_f64();
    all.sort();
    Ok((all, rate))
}

/// Starts `orchd up` with no default plugins in `dir`; returns it and its
/// address.
async fn start_orchd(
    orchd: &PathBuf,
    dir: &std::path::Path,
) -> anyhow::Result<(tokio::process::Child, SocketAddr)> {
    let mut up = Command::new(orchd);
    up.args([
        "up",
        "--listen",
        "127.0.0.1:0",
        "--no-default-plugins",
        "--no-node",
        "--data-dir",
    ])
    .arg(dir.join("cluster"))
    .arg("--plugin-cache")
    .arg(dir.join("plugin-cache"));
    let (child, line) = spawn_and_wait_for("orchd up", up, "API serving on").await?;
    let url = line
        .split_whitespace()
        .last()
        .context("no address in orchd up's output")?;
    let addr = url
        .trim_start_matches("http://")
        .parse()
        .with_context(|| format!("orchd up printed {line:?}"))?;
    Ok((child, addr))
}

/// Runs the benchmark and prints the tables.
pub async fn run(args: Args) -> anyhow::Result<()> {
    let dir = tempfile::tempdir()?;
    let store: Arc<dyn orchd_store::Store> =
        RedbStore::open(RedbStoreConfig::new(dir.path().join("bench.redb")))?;
    println!(
        "== plugins: one admission policy (required labels) from Rust, Python and JavaScript (release host) =="
    );
    let mut figures = Vec::new();
    for (lang, path) in &args.components {
        figures.push(measure(lang, path, args.reviews, store.clone()).await?);
    }
    println!(
        "{:<12} {:>12} {:>16} {:>12} {:>14} {:>14}",
        "build", "size", "cold compile", "load", "review p50", "review p99"
    );
    for f in &figures {
        println!(
            "{:<12} {:>9} KB {:>13.0} ms {:>9.2} ms {:>11.1} µs {:>11.1} µs",
            f.lang,
            f.size / 1024,
            ms(f.compile),
            ms(f.load),
            us(f.p50),
            us(f.p99)
        );
    }
    let rust = &figures[0];
    for f in &figures[1..] {
        let ratio = |a: f64, b: f64| if b > 0.0 { a / b } else { f64::NAN };
        println!(
            "{:<12} vs Rust: size {:.0}x, compile {:.0}x, load {:.1}x, review p50 {:.1}x, p99 {:.1}x",
            f.lang,
            ratio(f.size as f64, rust.size as f64),
            ratio(ms(f.compile), ms(rust.compile)),
            ratio(ms(f.load), ms(rust.load)),
            ratio(us(f.p50), us(rust.p50)),
            ratio(us(f.p99), us(rust.p99)),
        );
    }

    println!(
        "\n== API: {} pod creates, concurrency {}, `orchd up` (release, no default plugins) ==",
        args.requests, args.concurrency
    );
    println!(
        "{:<26} {:>12} {:>12} {:>12}",
        "admission", "p50", "p99", "creates/s"
    );
    let variants: [(&str, Option<&PathBuf>); 3] = [
        ("none", None),
        ("Rust required-labels", Some(&args.components[0].1)),
        ("Python required-labels", Some(&args.components[1].1)),
    ];
    let mut baseline: Option<(Duration, Duration)> = None;
    for (i, (what, component)) in variants.into_iter().enumerate() {
        let run_dir = dir.path().join(format!("api-{i}"));
        std::fs::create_dir_all(&run_dir)?;
        let (mut child, addr) = start_orchd(&args.orchd, &run_dir).await?;
        let result = async {
            if let Some(component) = component {
                let out = Command::new(&args.orchd)
                    .args(["plugin", "install"])
                    .arg(component)
                    .args([
                        "--name",
                        "required-labels",
                        "--resources",
                        "pods",
                        "--operations",
                        "CREATE,UPDATE",
                        "--timeout",
                        "300",
                        "--server",
                    ])
                    .arg(format!("http://{addr}"))
                    .arg("--data-dir")
                    .arg(run_dir.join("cluster"))
                    .output()
                    .await?;
                if !out.status.success() {
                    bail!(
                        "orchd plugin install failed: {}{}",
                        String::from_utf8_lossy(&out.stdout),
                        String::from_utf8_lossy(&out.stderr)
                    );
                }
                // The API enforces it: an unlabelled pod is refused.
                let mut conn = Conn::open(addr).await?;
                let mut bare = pod("unlabelled");
                bare["metadata"]["labels"] = json!({});
                let (code, _) = conn
                    .send(
                        "POST",
                        "/api/v1/namespaces/default/pods",
                        "application/json",
                        serde_json::to_vec(&bare)?,
                    )
                    .await?;
                if code == 201 {
                    bail!("{what}: an unlabelled pod was created");
                }
            }
            // Warm-up: connections, caches, the pooled instances.
            api_latency(addr, "warm", args.concurrency, args.concurrency * 10).await?;
            api_latency(addr, "pod", args.concurrency, args.requests).await
        }
        .await;
        let _ = child.start_kill();
        let _ = child.wait().await;
        let (took, rate) = result?;
        let (p50, p99) = (percentile(&took, 50.0), percentile(&took, 99.0));
        let vs = match baseline {
            None => {
                baseline = Some((p50, p99));
                String::new()
            }
            Some((b50, b99)) => format!(
                "   (p50 {:.2}x, p99 {:.2}x no plugin)",
                p50.as_secs_f64() / b50.as_secs_f64(),
                p99.as_secs_f64() / b99.as_secs_f64()
            ),
        };
        println!(
            "{:<26} {:>9.2} ms {:>9.2} ms {:>12.0}{vs}",
            what,
            ms(p50),
            ms(p99),
            rate
        );
    }
    Ok(())
}
