//! A minimal HTTP/1.1 client for the built-in commands.

use anyhow::{Context, bail};
use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::{Method, Request};
use hyper_util::rt::TokioIo;
use serde_json::Value;

/// An API server address (`http://host:port`).
pub struct Client {
    authority: String,
}

/// One response: status code and parsed JSON body.
pub struct Answer {
    /// HTTP status code.
    pub code: u16,
    /// Parsed body (`Null` if not JSON).
    pub body: Value,
}

impl Client {
    /// A client for `server` (only `http://` URLs for now).
    pub fn new(server: &str) -> anyhow::Result<Self> {
        let Some(authority) = server.strip_prefix("http://") else {
            bail!("only http:// servers are supported, not {server:?}");
        };
        Ok(Client {
            authority: authority.trim_end_matches('/').to_string(),
        })
    }

    /// Sends one request.
    pub async fn send(
        &self,
        method: Method,
        path: &str,
        content_type: Option<&str>,
        body: Vec<u8>,
    ) -> anyhow::Result<Answer> {
        let stream = tokio::net::TcpStream::connect(&self.authority)
            .await
            .with_context(|| {
                format!(
                    "cannot reach the API server at http://{} (is `orchd up` running?)",
                    self.authority
                )
            })?;
        let (mut sender, conn) =
            hyper::client::conn::http1::handshake(TokioIo::new(stream)).await?;
        tokio::spawn(conn);
        let mut builder = Request::builder()
            .method(method)
            .uri(path)
            .header(hyper::header::HOST, &self.authority)
            .header(hyper::header::ACCEPT, "application/json");
        if let Some(ct) = content_type {
            builder = builder.header(hyper::header::CONTENT_TYPE, ct);
        }
        let response = sender
            .send_request(builder.body(Full::new(Bytes::from(body)))?)
            .await?;
        let code = response.status().as_u16();
        let bytes = response.into_body().collect().await?.to_bytes();
        Ok(Answer {
            code,
            body: serde_json::from_slice(&bytes).unwrap_or(Value::Null),
        })
    }
}

impl Answer {
    /// Fails with the Status message unless the code is 2xx.
    pub fn ok(self) -> anyhow::Result<Value> {
        if (200..300).contains(&self.code) {
            Ok(self.body)
        } else {
            let message = self.body["message"]
                .as_str()
                .map(str::to_string)
                .unwrap_or_else(|| format!("HTTP {}", self.code));
            bail!("{message}")
        }
    }
}
