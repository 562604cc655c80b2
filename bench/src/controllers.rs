//! `orchd-bench controllers`: a Deployment scaled from 0 to many replicas
//! on a whole control plane, as Kubernetes' density test does.
//!
//! The cluster is the real thing a user starts: `orchd up` (release build,
//! its default plugins — scheduler, deployment, replicaset, garbage
//! collector — as Wasm components) in one process, and `orchd sim nodes`
//! (hollow nodes that heartbeat through Leases and report their pods
//! Running and Ready) in another, both talking HTTP. This benchmark only
//! creates the Deployment, scales it, and watches pods through the API:
//!
//! * from the scale request to the last pod Running and Ready, and pods per
//!   second over that time;
//! * each pod's startup latency, from the moment the watch shows it created
//!   to the moment it shows it Running and Ready (p50, p90, p99, max) —
//!   Kubernetes' pod startup SLO is p99 <= 5 s for pods without images to
//!   pull, which hollow nodes are;
//! * the control plane's resident memory at the end (and its peak), the
//!   hollow nodes' process beside it.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use bytes::Bytes;
use http_body_util::{BodyExt, Empty};
use hyper_util::rt::TokioIo;
use serde_json::{Value, json};
use tokio::io::AsyncBufReadExt;
use tokio::process::{Child, Command};

use crate::http::Conn;

/// The figures: 1,000 hollow nodes, 10,000 replicas.
const DEFAULT_NODES: usize = 1_000;
const DEFAULT_REPLICAS: usize = 10_000;
const DEFAULT_MAX_SECONDS: u64 = 600;

/// Kubernetes' pod startup SLO (stateless pods, no image pulls): p99.
const STARTUP_SLO: Duration = Duration::from_secs(5);

/// Longest a start-up phase may take.
const PHASE_TIMEOUT: Duration = Duration::from_secs(300);

/// The Deployment this benchmark scales, and its pods' label.
const NAME: &str = "density";

/// What `orchd-bench controllers` is given.
pub struct Args {
    /// The `orchd` binary.
    pub orchd: PathBuf,
    /// Hollow nodes.
    pub nodes: usize,
    /// Replicas the Deployment is scaled to.
    pub replicas: usize,
    /// Time limit from the scale to the last pod Ready.
    pub max_seconds: u64,
}

impl Args {
    /// `ORCHD_BIN [--nodes N] [--replicas N] [--max-seconds S]`.
    pub fn parse(args: &[String]) -> anyhow::Result<Self> {
        let usage =
            "usage: orchd-bench controllers ORCHD_BIN [--nodes N] [--replicas N] [--max-seconds S]";
        let mut orchd = None;
        let (mut nodes, mut replicas, mut max_seconds) =
            (DEFAULT_NODES, DEFAULT_REPLICAS, DEFAULT_MAX_SECONDS);
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
                "--replicas" => replicas = number("--replicas")?,
                "--max-seconds" => max_seconds = number("--max-seconds")? as u64,
                flag if flag.starts_with("--") => bail!("unknown option {flag}\n{usage}"),
                path if orchd.is_none() => orchd = Some(PathBuf::from(path)),
                extra => bail!("unexpected argument {extra}\n{usage}"),
            }
        }
        // Hollow nodes take 110 pods each, as a kubelet does by default.
        if replicas > nodes * 110 {
            bail!("{replicas} pods do not fit {nodes} hollow nodes (110 pods each)\n{usage}");
        }
        Ok(Args {
            orchd: orchd.with_context(|| usage.to_string())?,
            nodes,
            replicas,
            max_seconds,
        })
    }
}

/// A child process whose stdout is scanned for a line, then drained.
pub(crate) async fn spawn_and_wait_for(
    what: &str,
    mut command: Command,
    marker: &str,
) -> anyhow::Result<(Child, String)> {
    let mut child = command
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::inherit())
        .kill_on_drop(true)
        .spawn()
        .with_context(|| format!("cannot start {what}"))?;
    let stdout = child.stdout.take().context("no stdout")?;
    let mut lines = tokio::io::BufReader::new(stdout).lines();
    let line = tokio::time::timeout(PHASE_TIMEOUT, async {
        while let Some(line) = lines.next_line().await? {
            if line.contains(marker) {
                return anyhow::Ok(line);
            }
        }
        bail!("{what} exited before printing {marker:?}")
    })
    .await
    .with_context(|| format!("{what} did not print {marker:?} in time"))??;
    // Keep reading so the child never blocks on a full pipe.
    tokio::spawn(async move { while let Ok(Some(_)) = lines.next_line().await {} });
    Ok((child, line))
}

/// Resident memory of a process, now and at its peak, in MiB.
fn rss_mib(pid: u32) -> Option<(f64, f64)> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let field = |name: &str| -> Option<f64> {
        let line = status.lines().find(|l| l.starts_with(name))?;
        let kib: f64 = line.split_whitespace().nth(1)?.parse().ok()?;
        Some(kib / 1024.0)
    };
    Some((field("VmRSS:")?, field("VmHWM:")?))
}

/// What the watch has seen of one pod.
#[derive(Default, Clone, Copy)]
struct PodTimes {
    created: Option<Instant>,
    ready: Option<Instant>,
    /// The API's creationTimestamp (whole seconds) to the wall clock when
    /// the watch showed it Ready: the same latency measured without
    /// trusting the watch's delivery of the creation.
    server_startup: Option<Duration>,
}

fn is_running_and_ready(pod: &Value) -> bool {
    pod["status"]["phase"] == "Running"
        && pod["status"]["conditions"].as_array().is_some_and(|cs| {
            cs.iter()
                .any(|c| c["type"] == "Ready" && c["status"] == "True")
        })
}

/// Watches the benchmark's pods from `resource_version` on, recording when
/// each was first seen and first seen Running and Ready; returns once
/// `replicas` are Ready, or with what it has at `deadline`.
async fn watch_pods(
    addr: SocketAddr,
    resource_version: String,
    replicas: usize,
    deadline: Instant,
    scaled: Instant,
) -> anyhow::Result<HashMap<String, PodTimes>> {
    let stream = tokio::net::TcpStream::connect(addr).await?;
    stream.set_nodelay(true)?;
    let (mut sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream)).await?;
    tokio::spawn(conn);
    let uri = format!(
        "/api/v1/namespaces/default/pods?watch=1&labelSelector=app%3D{NAME}&resourceVersion={resource_version}&allowWatchBookmarks=true"
    );
    let request = hyper::Request::get(uri)
        .header("host", addr.to_string())
        .body(Empty::<Bytes>::new())?;
    let response = sender.send_request(request).await?;
    if response.status() != 200 {
        let body = response.into_body().collect().await?.to_bytes();
        bail!("watching pods: {}", String::from_utf8_lossy(&body));
    }
    let mut body = response.into_body();
    let mut pods: HashMap<String, PodTimes> = HashMap::new();
    let mut ready = 0usize;
    let mut buffer: Vec<u8> = Vec::new();
    let mut last_report = Instant::now();
    while ready < replicas {
        let frame = match tokio::time::timeout_at(deadline.into(), body.frame()).await {
            Err(_) => break,
            Ok(None) => bail!("the API closed the watch"),
            Ok(Some(frame)) => frame?,
        };
        let Ok(data) = frame.into_data() else {
            continue;
        };
        let now = Instant::now();
        buffer.extend_from_slice(&data);
        while let Some(end) = buffer.iter().position(|&b| b == b'\n') {
            let line: Vec<u8> = buffer.drain(..=end).collect();
            let event: Value = serde_json::from_slice(&line).context("a watch event")?;
            let kind = event["type"].as_str().unwrap_or_default();
            if kind == "ERROR" {
                bail!("the watch failed: {}", event["object"]);
            }
            let object = &event["object"];
            let Some(name) = object["metadata"]["name"].as_str() else {
                continue;
            };
            if kind == "BOOKMARK" || kind == "DELETED" {
                continue;
            }
            let times = pods.entry(name.to_owned()).or_default();
            times.created.get_or_insert(now);
            if times.ready.is_none() && is_running_and_ready(object) {
                times.ready = Some(now);
                times.server_startup = object["metadata"]["creationTimestamp"]
                    .as_str()
                    .and_then(|t| t.parse::<jiff::Timestamp>().ok())
                    .and_then(|t| jiff::Timestamp::now().duration_since(t).try_into().ok());
                ready += 1;
            }
        }
        if last_report.elapsed() >= Duration::from_secs(5) {
            last_report = Instant::now();
            println!(
                "  {:>5.0} s: {} pods created, {ready} Running and Ready",
                scaled.elapsed().as_secs_f64(),
                pods.len()
            );
        }
    }
    Ok(pods)
}

pub(crate) fn percentile(sorted: &[Duration], p: f64) -> Duration {
    if sorted.is_empty() {
        return Duration::ZERO;
    }
    let rank = ((p / 100.0) * sorted.len() as f64).ceil() as usize;
    sorted[rank.clamp(1, sorted.len()) - 1]
}

/// Runs the benchmark and prints the summary.
pub async fn run(args: Args) -> anyhow::Result<()> {
    let dir = tempfile::tempdir()?;
    println!(
        "== controllers: a Deployment scaled 0 -> {} on {} hollow nodes (orchd up and orchd sim nodes, release, separate processes) ==",
        args.replicas, args.nodes
    );
    let mut up = Command::new(&args.orchd);
    up.args(["up", "--listen", "127.0.0.1:0", "--data-dir"])
        .arg(dir.path().join("cluster"));
    let started = Instant::now();
    let (control_plane, line) = spawn_and_wait_for("orchd up", up, "API serving on").await?;
    let url = line
        .split_whitespace()
        .last()
        .context("no address in orchd up's output")?
        .to_owned();
    let addr: SocketAddr = url
        .trim_start_matches("http://")
        .parse()
        .with_context(|| format!("orchd up printed {line:?}"))?;
    println!(
        "  orchd up serving on {url} in {:.2} s",
        started.elapsed().as_secs_f64()
    );
    let mut sim = Command::new(&args.orchd);
    sim.args(["sim", "nodes", "--count", &args.nodes.to_string()])
        .args(["--server", &url])
        .arg("--data-dir")
        .arg(dir.path().join("sim"));
    let started = Instant::now();
    let (nodes, _) = spawn_and_wait_for("orchd sim nodes", sim, "registered").await?;
    println!(
        "  {} hollow nodes registered in {:.1} s",
        args.nodes,
        started.elapsed().as_secs_f64()
    );

    let mut conn = Conn::open(addr).await?;
    let deployment = json!({
        "apiVersion": "apps/v1", "kind": "Deployment",
        "metadata": {"name": NAME, "namespace": "default"},
        "spec": {
            "replicas": 0,
            "selector": {"matchLabels": {"app": NAME}},
            "template": {
                "metadata": {"labels": {"app": NAME}},
                "spec": {"containers": [{
                    "name": "app", "image": "registry.k8s.io/pause:3.10",
                    "resources": {"requests": {"cpu": "10m", "memory": "16Mi"}}
                }]}
            }
        }
    });
    let (code, body) = conn
        .send(
            "POST",
            "/apis/apps/v1/namespaces/default/deployments",
            "application/json",
            serde_json::to_vec(&deployment)?,
        )
        .await?;
    if code != 201 {
        bail!(
            "creating the Deployment: {code} {}",
            String::from_utf8_lossy(&body)
        );
    }
    // Watch from now on: every pod of the benchmark is created after this.
    let (code, body) = conn
        .send(
            "GET",
            &format!("/api/v1/namespaces/default/pods?labelSelector=app%3D{NAME}"),
            "application/json",
            Vec::new(),
        )
        .await?;
    if code != 200 {
        bail!("listing pods: {code} {}", String::from_utf8_lossy(&body));
    }
    let list: Value = serde_json::from_slice(&body)?;
    let resource_version = list["metadata"]["resourceVersion"]
        .as_str()
        .context("no resourceVersion in the pod list")?
        .to_owned();

    let (before, _) = rss_mib(control_plane.id().context("orchd up exited")?)
        .context("cannot read orchd up's memory")?;
    println!("  control plane RSS before scaling: {before:.0} MiB");
    println!("scaling to {} replicas...", args.replicas);
    let scaled = Instant::now();
    let deadline = scaled + Duration::from_secs(args.max_seconds);
    let watcher = tokio::spawn(watch_pods(
        addr,
        resource_version,
        args.replicas,
        deadline,
        scaled,
    ));
    let (code, body) = conn
        .send(
            "PATCH",
            &format!("/apis/apps/v1/namespaces/default/deployments/{NAME}/scale"),
            "application/merge-patch+json",
            serde_json::to_vec(&json!({"spec": {"replicas": args.replicas}}))?,
        )
        .await?;
    if code != 200 {
        bail!(
            "scaling the Deployment: {code} {}",
            String::from_utf8_lossy(&body)
        );
    }
    let pods = watcher.await.context("the pod watch")??;
    let elapsed_to = |t: Option<Instant>| t.map(|t| t.duration_since(scaled));
    let last_ready = pods.values().filter_map(|p| elapsed_to(p.ready)).max();
    let mut startup: Vec<Duration> = pods
        .values()
        .filter_map(|p| Some(p.ready?.duration_since(p.created?)))
        .collect();
    startup.sort();
    let ready = startup.len();
    let mut server_startup: Vec<Duration> =
        pods.values().filter_map(|p| p.server_startup).collect();
    server_startup.sort();
    let cp = rss_mib(control_plane.id().context("orchd up exited")?);
    let sim_rss = nodes.id().and_then(rss_mib);

    println!(
        "\n== controllers summary: {} hollow nodes, Deployment 0 -> {} replicas, 2-core machine ==",
        args.nodes, args.replicas
    );
    if ready < args.replicas {
        println!(
            "  ONLY {ready} of {} pods Running and Ready after {} s ({} created)",
            args.replicas,
            args.max_seconds,
            pods.len()
        );
    }
    let took = last_ready.unwrap_or(Duration::from_secs(args.max_seconds));
    println!(
        "  scale -> all Running and Ready     {:>10.1} s",
        took.as_secs_f64()
    );
    println!(
        "  pods Running and Ready per second  {:>10.0}",
        ready as f64 / took.as_secs_f64()
    );
    let p99 = percentile(&startup, 99.0);
    for (name, p) in [("p50", 50.0), ("p90", 90.0), ("p99", 99.0), ("max", 100.0)] {
        println!(
            "  pod startup {name} (created -> Ready) {:>9.2} s",
            percentile(&startup, p).as_secs_f64()
        );
    }
    println!(
        "  the same from creationTimestamp     p50 {:.2} s, p99 {:.2} s (1 s resolution)",
        percentile(&server_startup, 50.0).as_secs_f64(),
        percentile(&server_startup, 99.0).as_secs_f64()
    );
    println!(
        "  startup SLO p99 <= {} s              {:>10}",
        STARTUP_SLO.as_secs(),
        if ready == args.replicas
            && p99 <= STARTUP_SLO
            && percentile(&server_startup, 99.0) <= STARTUP_SLO + Duration::from_secs(1)
        {
            "met"
        } else {
            "MISSED"
        }
    );
    if let Some((now, peak)) = cp {
        println!("  control plane RSS at the end       {now:>8.0} MiB (peak {peak:.0} MiB)");
    }
    if let Some((now, _)) = sim_rss {
        println!("  hollow nodes' process RSS           {now:>8.0} MiB");
    }
    drop(nodes);
    drop(control_plane);
    if ready < args.replicas {
        bail!("the Deployment did not reach {} Ready pods", args.replicas);
    }
    Ok(())
}
