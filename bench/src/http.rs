//! A keep-alive HTTP/1.1 load generator: one connection per worker.

use std::net::SocketAddr;
use std::time::Instant;

use anyhow::{Context, bail};
use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::client::conn::http1::SendRequest;
use hyper_util::rt::TokioIo;

/// One open connection.
pub struct Conn {
    sender: SendRequest<Full<Bytes>>,
    host: String,
}

impl Conn {
    /// Connects to `addr`.
    pub async fn open(addr: SocketAddr) -> anyhow::Result<Self> {
        let stream = tokio::net::TcpStream::connect(addr).await?;
        stream.set_nodelay(true)?;
        let (sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream)).await?;
        tokio::spawn(conn);
        Ok(Conn {
            sender,
            host: addr.to_string(),
        })
    }

    /// Sends a request and returns the status and body.
    pub async fn send(
        &mut self,
        method: &str,
        path: &str,
        content_type: &str,
        body: Vec<u8>,
    ) -> anyhow::Result<(u16, Bytes)> {
        self.sender.ready().await?;
        let req = hyper::Request::builder()
            .method(method)
            .uri(path)
            .header("host", &self.host)
            .header("content-type", content_type)
            .body(Full::new(Bytes::from(body)))?;
        let resp = self.sender.send_request(req).await?;
        let code = resp.status().as_u16();
        Ok((code, resp.into_body().collect().await?.to_bytes()))
    }
}

/// Whether GET `path` answers 200.
pub async fn get_ok(addr: SocketAddr, path: &str) -> bool {
    match Conn::open(addr).await {
        Ok(mut c) => matches!(
            c.send("GET", path, "text/plain", Vec::new()).await,
            Ok((200, _))
        ),
        Err(_) => false,
    }
}

/// Creates then updates (merge patch) ConfigMaps through orchd's API.
pub async fn api_writes(addr: SocketAddr, concurrency: usize, total: usize) -> anyhow::Result<f64> {
    let started = Instant::now();
    let mut tasks = Vec::new();
    for w in 0..concurrency {
        tasks.push(tokio::spawn(async move {
            let mut conn = Conn::open(addr).await?;
            let mut i = w;
            while i < total / 2 {
                let body = serde_json::to_vec(&crate::configmap(i, 0))?;
                let (code, resp) = conn
                    .send(
                        "POST",
                        "/api/v1/namespaces/default/configmaps",
                        "application/json",
                        body,
                    )
                    .await?;
                if code != 201 {
                    bail!("create answered {code}: {}", String::from_utf8_lossy(&resp));
                }
                let patch = br#"{"data":{"round":"1"}}"#.to_vec();
                let path = format!("/api/v1/namespaces/default/configmaps/cm-{i}");
                let (code, resp) = conn
                    .send("PATCH", &path, "application/merge-patch+json", patch)
                    .await?;
                if code != 200 {
                    bail!("patch answered {code}: {}", String::from_utf8_lossy(&resp));
                }
                i += concurrency;
            }
            anyhow::Ok(())
        }));
    }
    for t in tasks {
        t.await.context("client task")??;
    }
    Ok(total as f64 / started.elapsed().as_secs_f64())
}
