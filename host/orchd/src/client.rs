//! A minimal HTTP/1.1 client for the built-in commands and the hollow
//! nodes: JSON requests over kept-alive connections, and watches read as
//! one JSON event per line.

use std::sync::Mutex;

use anyhow::{Context, bail};
use bytes::{Buf, Bytes, BytesMut};
use http_body_util::{BodyExt, Full};
use hyper::client::conn::http1::SendRequest;
use hyper::{Method, Request};
use hyper_util::rt::TokioIo;
use serde_json::Value;

/// Idle connections kept for reuse: enough for the hollow nodes' bounded
/// concurrency, few enough to be nothing for the server.
const MAX_IDLE: usize = 32;

/// An API server address (`http://host:port`).
pub struct Client {
    authority: String,
    idle: Mutex<Vec<SendRequest<Full<Bytes>>>>,
}

/// One response: status code and parsed JSON body.
pub struct Answer {
    /// HTTP status code.
    pub code: u16,
    /// Parsed body (`Null` if not JSON).
    pub body: Value,
}

/// An open watch: JSON events, one per line.
pub struct WatchLines {
    body: hyper::body::Incoming,
    buffer: BytesMut,
}

impl Client {
    /// A client for `server` (only `http://` URLs for now).
    pub fn new(server: &str) -> anyhow::Result<Self> {
        let Some(authority) = server.strip_prefix("http://") else {
            bail!("only http:// servers are supported, not {server:?}");
        };
        Ok(Client {
            authority: authority.trim_end_matches('/').to_string(),
            idle: Mutex::new(Vec::new()),
        })
    }

    async fn connect(&self) -> anyhow::Result<SendRequest<Full<Bytes>>> {
        let stream = tokio::net::TcpStream::connect(&self.authority)
            .await
            .with_context(|| {
                format!(
                    "cannot reach the API server at http://{} (is `orchd up` running?)",
                    self.authority
                )
            })?;
        let _ = stream.set_nodelay(true);
        let (sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream)).await?;
        tokio::spawn(conn);
        Ok(sender)
    }

    /// A connection ready for a request: an idle one if any still works.
    async fn connection(&self) -> anyhow::Result<SendRequest<Full<Bytes>>> {
        loop {
            let idle = self.idle.lock().ok().and_then(|mut i| i.pop());
            match idle {
                Some(mut sender) => {
                    if sender.ready().await.is_ok() {
                        return Ok(sender);
                    }
                }
                None => return self.connect().await,
            }
        }
    }

    fn request(
        &self,
        method: Method,
        path: &str,
        content_type: Option<&str>,
        body: Vec<u8>,
    ) -> anyhow::Result<Request<Full<Bytes>>> {
        let mut builder = Request::builder()
            .method(method)
            .uri(path)
            .header(hyper::header::HOST, &self.authority)
            .header(hyper::header::ACCEPT, "application/json");
        if let Some(ct) = content_type {
            builder = builder.header(hyper::header::CONTENT_TYPE, ct);
        }
        Ok(builder.body(Full::new(Bytes::from(body)))?)
    }

    /// Sends one request.
    pub async fn send(
        &self,
        method: Method,
        path: &str,
        content_type: Option<&str>,
        body: Vec<u8>,
    ) -> anyhow::Result<Answer> {
        self.exchange(method, path, content_type, body, true).await
    }

    /// Sends a JSON body for its effect: a success's body is not parsed
    /// (left `Null`), an error's is, for its message. A hollow node's
    /// status update answers with the whole pod, which it has no use for.
    pub async fn send_json_for_effect(
        &self,
        method: Method,
        path: &str,
        content_type: &str,
        body: &Value,
    ) -> anyhow::Result<Answer> {
        let body = serde_json::to_vec(body)?;
        self.exchange(method, path, Some(content_type), body, false)
            .await
    }

    async fn exchange(
        &self,
        method: Method,
        path: &str,
        content_type: Option<&str>,
        body: Vec<u8>,
        parse_success: bool,
    ) -> anyhow::Result<Answer> {
        let mut sender = self.connection().await?;
        let request = self.request(method, path, content_type, body)?;
        let response = sender.send_request(request).await?;
        let code = response.status().as_u16();
        let bytes = response.into_body().collect().await?.to_bytes();
        if let Ok(mut idle) = self.idle.lock()
            && idle.len() < MAX_IDLE
        {
            idle.push(sender);
        }
        let parse = parse_success || !(200..300).contains(&code);
        Ok(Answer {
            code,
            body: if parse {
                serde_json::from_slice(&bytes).unwrap_or(Value::Null)
            } else {
                Value::Null
            },
        })
    }

    /// Sends a JSON body.
    pub async fn send_json(
        &self,
        method: Method,
        path: &str,
        content_type: &str,
        body: &Value,
    ) -> anyhow::Result<Answer> {
        self.send(method, path, Some(content_type), serde_json::to_vec(body)?)
            .await
    }

    /// Opens a watch (`path` must carry `watch=1`) on its own connection.
    pub async fn watch(&self, path: &str) -> anyhow::Result<WatchLines> {
        let mut sender = self.connect().await?;
        let request = self.request(Method::GET, path, None, Vec::new())?;
        let response = sender.send_request(request).await?;
        let code = response.status().as_u16();
        if !(200..300).contains(&code) {
            let bytes = response.into_body().collect().await?.to_bytes();
            let body: Value = serde_json::from_slice(&bytes).unwrap_or(Value::Null);
            Answer { code, body }.ok()?;
            bail!("HTTP {code}");
        }
        Ok(WatchLines {
            body: response.into_body(),
            buffer: BytesMut::new(),
        })
    }
}

impl WatchLines {
    /// The next event decoded as `T` (which may read only the fields it
    /// needs), `None` when the server closed the watch.
    pub async fn next_as<T: serde::de::DeserializeOwned>(&mut self) -> anyhow::Result<Option<T>> {
        loop {
            if let Some(at) = self.buffer.iter().position(|b| *b == b'\n') {
                let line = self.buffer.split_to(at + 1);
                let line = &line[..at];
                if line.iter().all(u8::is_ascii_whitespace) {
                    continue;
                }
                return Ok(Some(serde_json::from_slice(line)?));
            }
            match self.body.frame().await {
                Some(frame) => {
                    if let Ok(mut data) = frame?.into_data() {
                        while data.has_remaining() {
                            let chunk = data.chunk();
                            self.buffer.extend_from_slice(chunk);
                            let n = chunk.len();
                            data.advance(n);
                        }
                    }
                }
                None => return Ok(None),
            }
        }
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
