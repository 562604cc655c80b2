//! orchd's Kubernetes-compatible API server.
//!
//! Serves the Kubernetes REST API over HTTP/1.1 (hyper) on top of an
//! [`orchd_store::Store`]: discovery, OpenAPI v3, CRUD with optimistic
//! concurrency, every patch type kubectl sends, server-side apply, watch,
//! Table output for `kubectl get`, and `Status` errors. Type knowledge
//! (validation, defaults, schemas, columns) comes from `orchd-resources`.

pub mod admission;
mod codec;
mod discovery;
pub mod exec;
mod objects;
mod request;
mod route;
mod status;
mod watch;

use std::sync::Arc;
use std::time::Duration;

use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper::{Method, Response};
use hyper_util::rt::TokioIo;
use orchd_resources::Subresource;
use orchd_store::{ObjectKey, SharedObject, Store, StoreError};
use serde_json::{Value, json};
use tokio::net::TcpListener;

pub use codec::Body;
use objects::Target;
pub use request::Request;
use route::Route;
pub use status::{ApiError, ApiResult};

/// The Kubernetes version orchd's API corresponds to.
pub const KUBERNETES_VERSION: (&str, &str) = ("1", "37");

/// Namespaces every cluster has from the start.
pub const SYSTEM_NAMESPACES: &[&str] =
    &["default", "kube-system", "kube-public", "kube-node-lease"];

/// Where plugin components are uploaded (see `max_component_body_bytes`).
const COMPONENTS_PATH: &str = "/apis/orchd.dev/v1/plugincomponents";

/// Settings of the API server.
#[derive(Clone, Debug)]
pub struct ApiConfig {
    /// Largest accepted request body (Kubernetes uses 3 MiB).
    pub max_body_bytes: usize,
    /// How often idle watches with `allowWatchBookmarks` get a bookmark.
    pub bookmark_interval: Duration,
    /// Largest accepted body of a write to `plugincomponents.orchd.dev`:
    /// Python and JavaScript components are 12-18 MB (base64 in JSON adds
    /// a third), far past `max_body_bytes`.
    pub max_component_body_bytes: usize,
}

impl Default for ApiConfig {
    fn default() -> Self {
        ApiConfig {
            max_body_bytes: 3 * 1024 * 1024,
            bookmark_interval: Duration::from_secs(15),
            max_component_body_bytes: 64 * 1024 * 1024,
        }
    }
}

/// The API server: shared by every connection.
pub struct ApiServer {
    store: Arc<dyn Store>,
    config: ApiConfig,
    /// The admission plugins, once the plugin host has been attached.
    admission: std::sync::OnceLock<Arc<dyn admission::Admission>>,
    /// Container logs, once an in-process node agent serves them.
    pod_logs: std::sync::OnceLock<Arc<dyn PodLogs>>,
    /// Commands in containers, once an in-process node agent runs them.
    pod_exec: std::sync::OnceLock<Arc<dyn PodExec>>,
}

/// What `pods/NAME/exec` asks the node to run.
#[derive(Clone, Debug)]
pub struct ExecRequest {
    /// The pod's uid.
    pub uid: String,
    /// The container.
    pub container: String,
    /// The command and its arguments.
    pub command: Vec<String>,
    /// All of its stdin.
    pub stdin: Vec<u8>,
    /// How long it may run.
    pub timeout: Duration,
}

/// What the command printed and its exit code.
#[derive(Clone, Debug, Default)]
pub struct ExecResponse {
    /// Exit code.
    pub code: i32,
    /// Its stdout.
    pub stdout: Vec<u8>,
    /// Its stderr.
    pub stderr: Vec<u8>,
}

/// Runs commands in containers, as a node agent in the same process does:
/// the API reaches it through this (and so does not depend on the node).
pub trait PodExec: Send + Sync {
    /// Runs the request; an error is a one-line reason.
    fn exec(
        &self,
        request: ExecRequest,
    ) -> futures::future::BoxFuture<'static, Result<ExecResponse, String>>;
}

/// What `GET pods/NAME/log` asks for.
#[derive(Clone, Debug)]
pub struct LogRequest {
    /// The pod's uid (its logs are kept by uid).
    pub uid: String,
    /// The container.
    pub container: String,
    /// `tailLines`.
    pub tail_lines: Option<usize>,
    /// `timestamps`.
    pub timestamps: bool,
    /// `follow`: stream until the container ends.
    pub follow: bool,
    /// `previous`: the run before the current one.
    pub previous: bool,
}

/// Container logs, as a node agent in the same process keeps them: the
/// API reads them through this (and so does not depend on the node).
pub trait PodLogs: Send + Sync {
    /// The log text, streamed; an error is a one-line reason (400).
    fn logs(
        &self,
        request: &LogRequest,
    ) -> Result<futures::stream::BoxStream<'static, bytes::Bytes>, String>;
}

/// A JSON reply before encoding.
pub(crate) struct Reply {
    code: u16,
    /// Shared: a written object is answered with the store's own copy,
    /// and with the JSON it stored when the store has it.
    body: SharedObject,
    warnings: Vec<String>,
}

impl Reply {
    fn json(code: u16, body: Value) -> Self {
        Self::shared(code, SharedObject::new(Arc::new(body)))
    }

    fn shared(code: u16, body: SharedObject) -> Self {
        Reply {
            code,
            body,
            warnings: Vec::new(),
        }
    }

    fn with_warnings(mut self, warnings: Vec<String>) -> Self {
        self.warnings = warnings;
        self
    }
}

impl ApiServer {
    /// An API server over `store`.
    pub fn new(store: Arc<dyn Store>, config: ApiConfig) -> Arc<Self> {
        Arc::new(ApiServer {
            store,
            config,
            admission: std::sync::OnceLock::new(),
            pod_logs: std::sync::OnceLock::new(),
            pod_exec: std::sync::OnceLock::new(),
        })
    }

    /// Puts `chain` in every write's path (see [`admission`]). Set once,
    /// at start; a second call is ignored and answers false.
    pub fn set_admission(&self, chain: Arc<dyn admission::Admission>) -> bool {
        self.admission.set(chain).is_ok()
    }

    /// Serves `pods/NAME/log` from `logs` (set once, by the in-process node
    /// agent).
    pub fn set_pod_logs(&self, logs: Arc<dyn PodLogs>) {
        let _ = self.pod_logs.set(logs);
    }

    /// Serves `pods/NAME/exec` through `exec` (set once, by the in-process
    /// node agent).
    pub fn set_pod_exec(&self, exec: Arc<dyn PodExec>) {
        let _ = self.pod_exec.set(exec);
    }

    /// Creates the system namespaces that do not exist yet.
    pub async fn bootstrap(&self) -> Result<(), StoreError> {
        for ns in SYSTEM_NAMESPACES {
            let mut namespace =
                json!({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": ns}});
            if let Some(rt) = orchd_resources::find_by_kind("v1", "Namespace") {
                orchd_resources::defaults::apply(rt, &mut namespace);
            }
            match self
                .store
                .create(&ObjectKey::cluster("namespaces", ns), namespace)
                .await
            {
                Ok(_) | Err(StoreError::AlreadyExists { .. }) => {}
                Err(e) => return Err(e),
            }
        }
        Ok(())
    }

    /// Accepts connections on `listener` until `shutdown` resolves.
    pub async fn serve(
        self: Arc<Self>,
        listener: TcpListener,
        shutdown: impl std::future::Future<Output = ()>,
    ) {
        tokio::pin!(shutdown);
        loop {
            let (stream, _peer) = tokio::select! {
                _ = &mut shutdown => return,
                accepted = listener.accept() => match accepted {
                    Ok(a) => a,
                    // Running out of file descriptors must not end the server.
                    Err(_) => {
                        tokio::time::sleep(Duration::from_millis(50)).await;
                        continue;
                    }
                },
            };
            let _ = stream.set_nodelay(true);
            let server = self.clone();
            tokio::spawn(async move {
                let service = service_fn(move |req| {
                    let server = server.clone();
                    async move { Ok::<_, std::convert::Infallible>(server.handle(req).await) }
                });
                let _ = http1::Builder::new()
                    .serve_connection(TokioIo::new(stream), service)
                    .with_upgrades()
                    .await;
            });
        }
    }

    /// Handles one HTTP request; never fails (errors become `Status`).
    pub async fn handle(&self, req: hyper::Request<hyper::body::Incoming>) -> Response<Body> {
        if let Some((namespace, name)) = exec::exec_path(req.uri().path())
            && exec::wants_websocket(req.headers())
        {
            let (namespace, name) = (namespace.to_string(), name.to_string());
            return self.exec_upgrade(req, &namespace, &name).await;
        }
        let (parts, body) = req.into_parts();
        // Only component uploads may be large; every other body keeps
        // Kubernetes' limit.
        let limit = if parts.uri.path().starts_with(COMPONENTS_PATH) {
            self.config.max_component_body_bytes
        } else {
            self.config.max_body_bytes
        };
        let body = match codec::read_body(body, limit).await {
            Ok(b) => b,
            Err(e) => return codec::error_response(&e),
        };
        let request = Request::new(
            parts.method,
            parts.uri.path(),
            parts.uri.query(),
            parts.headers,
            body,
        );
        match self.dispatch(&request).await {
            Ok(resp) => resp,
            Err(e) => codec::error_response(&e),
        }
    }

    /// Routes a request read whole.
    pub async fn dispatch(&self, req: &Request) -> ApiResult<Response<Body>> {
        let route = route::parse(&req.path)?;
        let is_get = req.method == Method::GET || req.method == Method::HEAD;
        let json = |v: Value| Ok(codec::json_response(200, &v, &[]));
        match route {
            Route::Version if is_get => json(version()),
            Route::Health if is_get => Ok(codec::text_response(200, "ok")),
            Route::CoreVersions if is_get => {
                if discovery::wants_aggregated(req.accept()) {
                    Ok(aggregated_response(discovery::aggregated(true)))
                } else {
                    let host = req
                        .headers
                        .get(hyper::header::HOST)
                        .and_then(|h| h.to_str().ok())
                        .unwrap_or("");
                    json(discovery::core_versions(host))
                }
            }
            Route::Groups if is_get => {
                if discovery::wants_aggregated(req.accept()) {
                    Ok(aggregated_response(discovery::aggregated(false)))
                } else {
                    json(discovery::group_list())
                }
            }
            Route::Group(g) if is_get => {
                discovery::group(g).map_or_else(|| Err(ApiError::no_route(&req.path)), json)
            }
            Route::ResourceList(g, v) if is_get => discovery::resource_list(g, v)
                .map_or_else(|| Err(ApiError::no_route(&req.path)), json),
            Route::OpenApiRoot if is_get => json(orchd_resources::openapi::v3_root()),
            Route::OpenApiGroupVersion(g, v) if is_get => {
                match orchd_resources::openapi::v3_group_version(g, v) {
                    Some(doc) => json((*doc).clone()),
                    None => Err(ApiError::no_route(&req.path)),
                }
            }
            Route::Resource(path) => {
                let target = Target {
                    resource: path.resource,
                    namespace: path.namespace.map(str::to_string),
                    name: path.name.map(str::to_string),
                };
                self.resource(req, &target, path.subresource).await
            }
            _ => Err(ApiError::method_not_allowed(&req.path)),
        }
    }

    async fn resource(
        &self,
        req: &Request,
        target: &Target,
        sub: Option<Subresource>,
    ) -> ApiResult<Response<Body>> {
        if target.resource.create_only {
            return match (&req.method, target.name.as_deref()) {
                (&Method::POST, None) => Ok(objects::reply_response(self.review(req, target)?)),
                _ => Err(ApiError::method_not_allowed(&req.path)),
            };
        }
        let reply = match (&req.method, target.name.as_deref(), sub) {
            (&Method::GET, None, None) if req.flag("watch") => {
                return self.watch(req, target).await;
            }
            (&Method::GET, None, None) => self.list(req, target).await?,
            (&Method::POST, None, None) => self.create(req, target).await?,
            (&Method::DELETE, None, None) => self.delete_collection(req, target).await?,
            (&Method::GET, Some(name), None | Some(Subresource::Status)) => {
                self.get(req, target, name).await?
            }
            (&Method::PUT, Some(name), None | Some(Subresource::Status)) => {
                self.update(req, target, name, sub).await?
            }
            (&Method::PATCH, Some(name), None | Some(Subresource::Status)) => {
                self.patch(req, target, name, sub).await?
            }
            (&Method::DELETE, Some(name), None) => self.delete(req, target, name).await?,
            (&Method::PUT, Some(name), Some(Subresource::Finalize)) => {
                self.finalize(req, target, name).await?
            }
            (
                &Method::GET | &Method::PUT | &Method::PATCH,
                Some(name),
                Some(Subresource::Scale),
            ) => self.scale(req, target, name).await?,
            (&Method::POST, Some(name), Some(Subresource::Binding)) => {
                self.bind(req, target, name).await?
            }
            (&Method::GET, Some(name), Some(Subresource::Log)) => {
                return self.log(req, target, name).await;
            }
            _ => return Err(ApiError::method_not_allowed(&req.path)),
        };
        Ok(objects::reply_response(reply))
    }
}

impl ApiServer {
    /// `GET pods/NAME/log`: the container's output as text/plain, streamed
    /// with `follow`.
    async fn log(&self, req: &Request, target: &Target, name: &str) -> ApiResult<Response<Body>> {
        // The 404 for a missing pod comes first, as in Kubernetes.
        let key = target.key(name);
        let pod = self
            .store
            .get(&key)
            .await
            .map_err(|e| ApiError::from_store(e, &target.subject(name)))?;
        let names: Vec<&str> = pod["spec"]["containers"]
            .as_array()
            .into_iter()
            .flatten()
            .chain(
                pod["spec"]["initContainers"]
                    .as_array()
                    .into_iter()
                    .flatten(),
            )
            .filter_map(|c| c["name"].as_str())
            .collect();
        let container = match req.query("container").filter(|c| !c.is_empty()) {
            Some(c) if names.contains(&c) => c.to_string(),
            Some(c) => {
                return Err(ApiError::bad_request(format!(
                    "container {c} is not valid for pod {name}"
                )));
            }
            None => {
                let main: Vec<&str> = pod["spec"]["containers"]
                    .as_array()
                    .into_iter()
                    .flatten()
                    .filter_map(|c| c["name"].as_str())
                    .collect();
                match main.as_slice() {
                    [only] => only.to_string(),
                    _ => {
                        return Err(ApiError::bad_request(format!(
                            "a container name must be specified for pod {name}, choose one of: [{}]",
                            main.join(" ")
                        )));
                    }
                }
            }
        };
        let Some(logs) = self.pod_logs.get() else {
            return Err(ApiError::bad_request(format!(
                "pod \"{name}\" has no container logs: no node agent runs in this orchd process (started with --no-node?)"
            )));
        };
        let tail_lines = match req.query("tailLines") {
            Some(t) if !t.is_empty() => Some(
                t.parse::<i64>()
                    .map_err(|_| {
                        ApiError::bad_request(format!("tailLines must be an integer, not {t:?}"))
                    })?
                    .max(0) as usize,
            ),
            _ => None,
        };
        let request = LogRequest {
            uid: pod["metadata"]["uid"].as_str().unwrap_or("").to_string(),
            container,
            tail_lines,
            timestamps: req.flag("timestamps"),
            follow: req.flag("follow"),
            previous: req.flag("previous"),
        };
        let stream = logs.logs(&request).map_err(ApiError::bad_request)?;
        // The body must be Sync, the stream is not: a task forwards it,
        // and ends when the client goes away (the send fails).
        let (tx, rx) = tokio::sync::mpsc::channel::<bytes::Bytes>(16);
        tokio::spawn(async move {
            use futures::StreamExt;
            let mut stream = stream;
            loop {
                let chunk = tokio::select! {
                    chunk = stream.next() => chunk,
                    _ = tx.closed() => None,
                };
                let Some(chunk) = chunk else { break };
                if tx.send(chunk).await.is_err() {
                    break;
                }
            }
        });
        let frames = futures::stream::unfold(rx, |mut rx| async move {
            let chunk = rx.recv().await?;
            Some((
                Ok::<_, std::convert::Infallible>(hyper::body::Frame::data(chunk)),
                rx,
            ))
        });
        let body = http_body_util::BodyExt::boxed(http_body_util::StreamBody::new(frames));
        Ok(Response::builder()
            .status(200)
            .header(hyper::header::CONTENT_TYPE, "text/plain")
            .header(hyper::header::CACHE_CONTROL, "no-cache, private")
            .body(body)
            .unwrap_or_else(|_| Response::new(codec::full(""))))
    }
}

fn aggregated_response(doc: Value) -> Response<Body> {
    let mut resp = codec::json_response(200, &doc, &[]);
    resp.headers_mut().insert(
        hyper::header::CONTENT_TYPE,
        hyper::header::HeaderValue::from_static(discovery::AGGREGATED_CONTENT_TYPE),
    );
    resp
}

/// The `/version` document.
pub fn version() -> Value {
    let (major, minor) = KUBERNETES_VERSION;
    json!({
        "major": major,
        "minor": minor,
        "gitVersion": format!("v{major}.{minor}.0+orchd-{}", env!("CARGO_PKG_VERSION")),
        "gitCommit": "",
        "gitTreeState": "clean",
        "buildDate": "",
        "goVersion": "",
        "compiler": "rustc",
        "platform": format!("{}/{}", std::env::consts::OS, if cfg!(target_arch = "x86_64") { "amd64" } else { std::env::consts::ARCH }),
    })
}
