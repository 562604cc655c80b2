//! A real etcd for the baseline: Debian's `etcd-server`, started on
//! loopback ports with its own data dir, driven through its JSON gateway
//! (`/v3/kv/put`), each put acknowledged after etcd's fsync'd commit.

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use base64::Engine;

use crate::http::Conn;

/// A running etcd, stopped on drop.
pub struct Etcd {
    child: std::process::Child,
    client: SocketAddr,
    _dir: tempfile::TempDir,
}

fn free_port() -> anyhow::Result<u16> {
    Ok(std::net::TcpListener::bind("127.0.0.1:0")?
        .local_addr()?
        .port())
}

impl Etcd {
    /// Starts etcd and waits until it answers.
    pub async fn start() -> anyhow::Result<Self> {
        let bin = ["/usr/bin/etcd", "/usr/local/bin/etcd"]
            .into_iter()
            .find(|p| std::path::Path::new(p).exists())
            .context("etcd is not installed (apt-get install etcd-server)")?;
        let dir = tempfile::tempdir()?;
        let (client_port, peer_port) = (free_port()?, free_port()?);
        let client = format!("http://127.0.0.1:{client_port}");
        let peer = format!("http://127.0.0.1:{peer_port}");
        let child = std::process::Command::new(bin)
            .args(["--name", "bench", "--data-dir"])
            .arg(dir.path())
            .args([
                "--listen-client-urls",
                &client,
                "--advertise-client-urls",
                &client,
            ])
            .args([
                "--listen-peer-urls",
                &peer,
                "--initial-advertise-peer-urls",
                &peer,
            ])
            .args(["--initial-cluster", &format!("bench={peer}")])
            .args([
                "--log-level",
                "error",
                "--quota-backend-bytes",
                "4294967296",
            ])
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .with_context(|| format!("cannot start {bin}"))?;
        let etcd = Etcd {
            child,
            client: format!("127.0.0.1:{client_port}").parse()?,
            _dir: dir,
        };
        let started = Instant::now();
        loop {
            if crate::http::get_ok(etcd.client, "/health").await {
                return Ok(etcd);
            }
            if started.elapsed() > Duration::from_secs(20) {
                bail!("etcd did not become healthy in 20 s");
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// Puts per second: `total` puts of distinct keys (a create and an update
    /// each, as in the orchd runs) from `concurrency` connections.
    pub async fn put_throughput(&self, concurrency: usize, total: usize) -> anyhow::Result<f64> {
        let b64 = |s: &str| base64::engine::general_purpose::STANDARD.encode(s);
        let started = Instant::now();
        let mut tasks = Vec::new();
        for w in 0..concurrency {
            let addr = self.client;
            tasks.push(tokio::spawn(async move {
                let mut conn = Conn::open(addr).await?;
                let mut i = w;
                while i < total / 2 {
                    let key = b64(&format!(
                        "/registry/configmaps/default/cm-{i}-{concurrency}"
                    ));
                    for round in 0..2 {
                        let value = serde_json::to_string(&crate::configmap(i, round))?;
                        let body = serde_json::to_vec(
                            &serde_json::json!({"key": key, "value": b64(&value)}),
                        )?;
                        let (code, resp) = conn
                            .send("POST", "/v3/kv/put", "application/json", body)
                            .await?;
                        if code != 200 {
                            bail!(
                                "etcd put answered {code}: {}",
                                String::from_utf8_lossy(&resp)
                            );
                        }
                    }
                    i += concurrency;
                }
                anyhow::Ok(())
            }));
        }
        for t in tasks {
            t.await.context("etcd client task")??;
        }
        Ok(total as f64 / started.elapsed().as_secs_f64())
    }
}

impl Drop for Etcd {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
