//! `orchd-bench pods ORCHD_BIN HELLO_WASM`: pod startup latency on a real
//! node, from the pod's creation (the POST) to the API showing it Running,
//! for the embedded wasm shim and for containerd with runc, beside bare
//! `ctr run -d` of the same image on the same containerd.
//!
//! The benchmark starts its own containerd (socket, root and state in a
//! temporary directory), builds and imports the busybox image with `orchd
//! image`, starts `orchd up --runtime containerd=SOCKET`, then creates the
//! pods one after another (each waited for), so the figures are latencies,
//! not throughput. Also: the node's Ready time after `orchd up` started.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use serde_json::{Value, json};
use tokio::process::Command;

use crate::controllers::{percentile, spawn_and_wait_for};
use crate::http::Conn;

const DEFAULT_PODS: usize = 200;

/// Pods alive at once (a node's default capacity is 110).
const BATCH: usize = 100;

/// Longest one pod may take to run.
const POD_TIMEOUT: Duration = Duration::from_secs(60);

/// What `orchd-bench pods` is given.
pub struct Args {
    orchd: PathBuf,
    hello_wasm: PathBuf,
    pods: usize,
}

impl Args {
    /// `ORCHD_BIN HELLO_WASM [--pods N]`.
    pub fn parse(args: &[String]) -> anyhow::Result<Self> {
        let usage = "usage: orchd-bench pods ORCHD_BIN HELLO_WASM [--pods N]";
        let mut paths = Vec::new();
        let mut pods = DEFAULT_PODS;
        let mut it = args.iter();
        while let Some(a) = it.next() {
            match a.as_str() {
                "--pods" => {
                    pods = it
                        .next()
                        .and_then(|v| v.parse().ok())
                        .filter(|&n: &usize| n > 0)
                        .with_context(|| format!("--pods needs a positive number\n{usage}"))?
                }
                flag if flag.starts_with("--") => bail!("unknown option {flag}\n{usage}"),
                p => paths.push(PathBuf::from(p)),
            }
        }
        let [orchd, hello_wasm] =
            <[PathBuf; 2]>::try_from(paths).map_err(|_| anyhow::anyhow!("{usage}"))?;
        Ok(Args {
            orchd,
            hello_wasm,
            pods,
        })
    }
}

/// A containerd of the benchmark's own, stopped on drop.
struct Containerd {
    child: tokio::process::Child,
    socket: PathBuf,
}

impl Containerd {
    async fn start(dir: &Path) -> anyhow::Result<Self> {
        std::fs::create_dir_all(dir)?;
        let socket = dir.join("containerd.sock");
        let config = dir.join("config.toml");
        std::fs::write(
            &config,
            format!(
                "version = 2\nroot = \"{root}\"\nstate = \"{state}\"\ndisabled_plugins = [\"io.containerd.grpc.v1.cri\"]\n[grpc]\n  address = \"{sock}\"\n[ttrpc]\n  address = \"{sock}.ttrpc\"\n[debug]\n  address = \"\"\n[metrics]\n  address = \"\"\n",
                root = dir.join("root").display(),
                state = dir.join("state").display(),
                sock = socket.display()
            ),
        )?;
        let child = Command::new("containerd")
            .arg("--config")
            .arg(&config)
            .stdin(std::process::Stdio::null())
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .kill_on_drop(true)
            .spawn()
            .context("cannot start containerd (apt-get install containerd runc)")?;
        let c = Containerd { child, socket };
        let deadline = Instant::now() + Duration::from_secs(30);
        while Instant::now() < deadline {
            if c.socket.exists() && c.ctr(&["version"]).await.is_ok() {
                return Ok(c);
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        bail!(
            "containerd did not answer on {} in 30 s",
            c.socket.display()
        )
    }

    async fn ctr(&self, args: &[&str]) -> anyhow::Result<String> {
        let out = Command::new("ctr")
            .arg("--address")
            .arg(&self.socket)
            .args(["--namespace", "orchd"])
            .args(args)
            .stdin(std::process::Stdio::null())
            .output()
            .await?;
        if !out.status.success() {
            bail!(
                "ctr {}: {}",
                args.join(" "),
                String::from_utf8_lossy(&out.stderr)
            );
        }
        Ok(String::from_utf8_lossy(&out.stdout).into_owned())
    }
}

async fn run_ok(what: &str, cmd: &mut Command) -> anyhow::Result<()> {
    let out = cmd.stdin(std::process::Stdio::null()).output().await?;
    if !out.status.success() {
        bail!("{what}: {}", String::from_utf8_lossy(&out.stderr));
    }
    Ok(())
}

fn pod(name: &str, class: &str, image: &str, args: &[&str]) -> Value {
    json!({
        "apiVersion": "v1", "kind": "Pod",
        "metadata": {"name": name, "namespace": "default", "labels": {"bench": "pods"}},
        "spec": {"runtimeClassName": class, "containers": [{
            "name": "main", "image": image, "args": args,
        }]},
    })
}

/// Creates `count` pods one by one, each waited for until Running;
/// returns their latencies (sorted), then deletes them.
async fn startup(
    addr: SocketAddr,
    count: usize,
    make: impl Fn(usize) -> Value,
) -> anyhow::Result<Vec<Duration>> {
    let mut conn = Conn::open(addr).await?;
    let mut latencies = Vec::with_capacity(count);
    let pods = "/api/v1/namespaces/default/pods";
    for i in 0..count {
        let object = make(i);
        let name = object["metadata"]["name"]
            .as_str()
            .unwrap_or("")
            .to_string();
        let t0 = Instant::now();
        let (code, body) = conn
            .send(
                "POST",
                pods,
                "application/json",
                serde_json::to_vec(&object)?,
            )
            .await?;
        if code != 201 {
            bail!("creating {name}: {code} {}", String::from_utf8_lossy(&body));
        }
        loop {
            let (code, body) = conn
                .send(
                    "GET",
                    &format!("{pods}/{name}"),
                    "application/json",
                    Vec::new(),
                )
                .await?;
            if code == 200 {
                let p: Value = serde_json::from_slice(&body)?;
                match p["status"]["phase"].as_str() {
                    Some("Running") => break,
                    Some("Failed") => bail!("pod {name} failed: {}", p["status"]),
                    _ => {}
                }
            }
            if t0.elapsed() > POD_TIMEOUT {
                bail!("pod {name} not Running in {} s", POD_TIMEOUT.as_secs());
            }
            tokio::time::sleep(Duration::from_millis(2)).await;
        }
        latencies.push(t0.elapsed());
        // A node takes 110 pods: measure in batches, deleted in between.
        if (i + 1) % BATCH == 0 && i + 1 < count {
            delete_all(&mut conn, (i + 1 - BATCH..=i).map(&make)).await?;
        }
    }
    // The last batch: what the loop has not deleted.
    let rest = if count.is_multiple_of(BATCH) {
        BATCH.min(count)
    } else {
        count % BATCH
    };
    delete_all(&mut conn, (count - rest..count).map(&make)).await?;
    latencies.sort();
    Ok(latencies)
}

/// Deletes `pods` and waits until the API has none of the benchmark's.
async fn delete_all(conn: &mut Conn, pods: impl Iterator<Item = Value>) -> anyhow::Result<()> {
    let path = "/api/v1/namespaces/default/pods";
    for p in pods {
        let name = p["metadata"]["name"].as_str().unwrap_or("").to_string();
        conn.send(
            "DELETE",
            &format!("{path}/{name}"),
            "application/json",
            br#"{"gracePeriodSeconds":0}"#.to_vec(),
        )
        .await?;
    }
    let pods = path;
    let deadline = Instant::now() + Duration::from_secs(120);
    loop {
        let (_, body) = conn
            .send(
                "GET",
                &format!("{pods}?labelSelector=bench%3Dpods"),
                "application/json",
                Vec::new(),
            )
            .await?;
        let list: Value = serde_json::from_slice(&body)?;
        if list["items"].as_array().is_none_or(|i| i.is_empty()) {
            break;
        }
        if Instant::now() > deadline {
            bail!("the benchmark's pods were not gone within 120 s");
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    Ok(())
}

/// `ctr run -d` of busybox `count` times, each timed; then removed.
async fn ctr_baseline(c: &Containerd, count: usize) -> anyhow::Result<Vec<Duration>> {
    let mut latencies = Vec::with_capacity(count);
    for i in 0..count {
        let id = format!("bench-ctr-{i}");
        let t0 = Instant::now();
        c.ctr(&[
            "run",
            "-d",
            "--null-io",
            "docker.io/library/busybox:latest",
            &id,
            "sleep",
            "3600",
        ])
        .await?;
        latencies.push(t0.elapsed());
    }
    for i in 0..count {
        let id = format!("bench-ctr-{i}");
        let _ = c.ctr(&["task", "kill", "-s", "SIGKILL", &id]).await;
        for _ in 0..100 {
            if c.ctr(&["task", "rm", &id]).await.is_ok() {
                break;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        c.ctr(&["container", "rm", &id]).await?;
    }
    latencies.sort();
    Ok(latencies)
}

fn row(name: &str, l: &[Duration]) {
    let ms = |d: Duration| d.as_secs_f64() * 1000.0;
    println!(
        "  {name:<34} p50 {:>8.1} ms   p99 {:>8.1} ms   max {:>8.1} ms",
        ms(percentile(l, 50.0)),
        ms(percentile(l, 99.0)),
        ms(percentile(l, 100.0))
    );
}

/// SIGTERM, then waits: orchd stops its node agent cleanly.
async fn stop(mut child: tokio::process::Child) -> anyhow::Result<()> {
    if let Some(pid) = child.id() {
        let _ = Command::new("kill")
            .args(["-TERM", &pid.to_string()])
            .status()
            .await;
    }
    match tokio::time::timeout(Duration::from_secs(30), child.wait()).await {
        Ok(status) => {
            status?;
            Ok(())
        }
        Err(_) => bail!("orchd did not stop within 30 s of SIGTERM"),
    }
}

/// Runs the benchmark and prints the summary.
pub async fn run(args: Args) -> anyhow::Result<()> {
    let dir = tempfile::Builder::new()
        .prefix("orchd-bench-pods")
        .tempdir()?;
    println!(
        "== pods: startup latency of {} pods each (create -> Running), wasm shim, containerd/runc, bare ctr run ==",
        args.pods
    );
    let ctrd = Containerd::start(&dir.path().join("containerd")).await?;
    let tar = dir.path().join("busybox.tar");
    run_ok(
        "orchd image build-busybox",
        Command::new(&args.orchd)
            .args(["image", "build-busybox"])
            .arg(&tar),
    )
    .await?;
    run_ok(
        "orchd image import",
        Command::new(&args.orchd)
            .args(["image", "import"])
            .arg(&tar)
            .arg("--address")
            .arg(&ctrd.socket),
    )
    .await?;
    let mut up = Command::new(&args.orchd);
    up.args(["up", "--listen", "127.0.0.1:0", "--node-name", "bench-node"])
        .arg("--runtime")
        .arg(format!("containerd={}", ctrd.socket.display()))
        .arg("--data-dir")
        .arg(dir.path().join("cluster"));
    let started = Instant::now();
    let (orchd, line) = spawn_and_wait_for("orchd up", up, "API serving on").await?;
    let addr: SocketAddr = line
        .split_whitespace()
        .last()
        .context("no address in orchd up's output")?
        .trim_start_matches("http://")
        .parse()?;
    let mut conn = Conn::open(addr).await?;
    let ready = loop {
        let (code, body) = conn
            .send(
                "GET",
                "/api/v1/nodes/bench-node",
                "application/json",
                Vec::new(),
            )
            .await?;
        if code == 200 {
            let node: Value = serde_json::from_slice(&body)?;
            let is_ready = node["status"]["conditions"].as_array().is_some_and(|c| {
                c.iter()
                    .any(|c| c["type"] == "Ready" && c["status"] == "True")
            });
            if is_ready {
                break started.elapsed();
            }
        }
        if started.elapsed() > Duration::from_secs(60) {
            bail!("the node was not Ready in 60 s");
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    };
    let image = format!("file://{}", args.hello_wasm.canonicalize()?.display());
    let wasm = startup(addr, args.pods, |i| {
        pod(
            &format!("wasm-{i}"),
            "wasm",
            &image,
            &["--interval-ms", "500"],
        )
    })
    .await?;
    let runc = startup(addr, args.pods, |i| {
        pod(&format!("runc-{i}"), "runc", "busybox", &["sleep", "3600"])
    })
    .await?;
    // The pods are gone from the API; their containers go next (the node
    // agent stops them and cleans up): wait for that before the baseline.
    let deadline = Instant::now() + Duration::from_secs(120);
    while !ctrd
        .ctr(&["containers", "ls", "-q"])
        .await?
        .trim()
        .is_empty()
    {
        if Instant::now() > deadline {
            bail!("the pods' containers were not removed within 120 s");
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    // An open keep-alive connection would hold the API's graceful stop.
    drop(conn);
    stop(orchd).await?;
    let ctr = ctr_baseline(&ctrd, args.pods).await?;
    println!(
        "\n== pods summary ({} pods each, one at a time, 2-core machine) ==",
        args.pods
    );
    println!(
        "  node Ready after `orchd up` started {:>8.1} ms (target < 1 s)",
        ready.as_secs_f64() * 1000.0
    );
    row("wasm shim (target p99 <= 100 ms)", &wasm);
    row("containerd/runc (target p99 <= 1 s)", &runc);
    row("bare `ctr run -d` (baseline)", &ctr);
    let ratio = percentile(&runc, 99.0).as_secs_f64() / percentile(&ctr, 99.0).as_secs_f64();
    println!("  containerd p99 / ctr run p99       {ratio:>8.2}x (target <= 1.5x)");
    stop(ctrd.child).await?;
    Ok(())
}
