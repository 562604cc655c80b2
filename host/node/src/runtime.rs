//! The container runtime as the node agent sees it: a CRI-shaped trait the
//! embedded wasm shim and the containerd shim ([`crate::containerd`])
//! implement; a node holds one per RuntimeClass handler.

use std::path::PathBuf;
use std::sync::Arc;

use crate::policy::PodCgroup;

pub use orchd_runtime_wasm::{ExitReason, StartError};

/// One container to start (resolved from a pod's container spec).
#[derive(Clone, Debug)]
pub struct ContainerConfig {
    /// The container's `image` as written in the pod.
    pub image: String,
    /// Its name in the pod.
    pub name: String,
    /// `command` followed by `args`.
    pub args: Vec<String>,
    /// Environment (`env` entries with a literal `value`).
    pub env: Vec<(String, String)>,
    /// `resources.limits.memory` in bytes.
    pub memory_limit: Option<u64>,
    /// `resources.limits.cpu` in millicores.
    pub cpu_millis: Option<u64>,
    /// Where its stdout/stderr go.
    pub log_path: PathBuf,
    /// The pod's uid (the sandbox it joins).
    pub pod_uid: String,
    /// Which run of the container this is (0 first).
    pub attempt: u32,
    /// The container's spec as the pod writes it, for what a runtime needs
    /// beyond the fields above (the containerd shim: `command` and `args`
    /// apart, `workingDir`, CPU requests).
    pub spec: serde_json::Value,
}

/// What a pod's containers share, as [`Runtime::create_sandbox`] set it up.
#[derive(Clone, Debug)]
pub struct Sandbox {
    /// The pod's IP address.
    pub pod_ip: String,
}

/// What a command run inside a container printed and how it ended.
#[derive(Clone, Debug, Default)]
pub struct ExecOutput {
    /// Exit code.
    pub code: i32,
    /// Its standard output.
    pub stdout: Vec<u8>,
    /// Its standard error.
    pub stderr: Vec<u8>,
}

/// How a container ended.
#[derive(Clone, Debug)]
pub struct ContainerExit {
    /// Exit code, as a process's.
    pub code: i32,
    /// Why.
    pub reason: ExitReason,
    /// A one-line explanation, if any.
    pub message: Option<String>,
    /// When.
    pub finished_at: jiff::Timestamp,
}

/// A started container.
///
/// `wait` borrows (rather than consumes) the container and the trait is
/// `Sync`, so that `exec` and `terminate` stay callable while the
/// lifecycle waits for the end: probes, hooks and `kubectl exec` need that.
#[async_trait::async_trait]
pub trait RunningContainer: Send + Sync {
    /// The runtime's id of this run of the container (what
    /// `status.containerStatuses[].containerID` shows after `SCHEME://`).
    fn id(&self) -> String;
    /// When it started.
    fn started_at(&self) -> jiff::Timestamp;
    /// A function that stops it (callable many times, from any thread).
    fn stopper(&self) -> Box<dyn Fn() + Send + Sync>;
    /// Waits for it to end (every call answers the same exit).
    async fn wait(&self) -> ContainerExit;
    /// Asks the container to end gracefully (SIGTERM to a process). The default does nothing:
    /// a runtime without signals is ended by `stopper()` when the grace period runs out.
    fn terminate(&self) {}
    /// The memory it uses now (working set), if the runtime knows it per
    /// container.
    fn memory_bytes(&self) -> Option<u64> {
        None
    }
    /// Runs `command` inside the running container (exec probes, hooks, `kubectl exec`),
    /// feeding it `stdin`, waiting at most `timeout`.
    async fn exec(
        &self,
        command: Vec<String>,
        stdin: Vec<u8>,
        timeout: std::time::Duration,
    ) -> Result<ExecOutput, String> {
        let _ = (command, stdin, timeout);
        Err("exec is not supported by this runtime".into())
    }
}

/// A container runtime (a RuntimeClass handler).
#[async_trait::async_trait]
pub trait Runtime: Send + Sync {
    /// `NAME://VERSION`, as `nodeInfo.containerRuntimeVersion` shows it.
    fn version(&self) -> String;
    /// Starts a container; returns once it runs.
    async fn start(&self, config: ContainerConfig)
    -> Result<Box<dyn RunningContainer>, StartError>;
    /// Sets up what the containers of `pod` share (network namespace, pod
    /// IP, pod cgroup as `cgroup` says: its QoS parent and limits) before
    /// the first starts. The default fits a runtime without sandboxes (the
    /// wasm shim): the pod shares the host's network view, its IP is
    /// 127.0.0.1, and it has no cgroup.
    async fn create_sandbox(
        &self,
        pod: &serde_json::Value,
        cgroup: &PodCgroup,
    ) -> Result<Sandbox, String> {
        let _ = (pod, cgroup);
        Ok(Sandbox {
            pod_ip: "127.0.0.1".into(),
        })
    }
    /// Tears down the sandbox of pod `uid` once its containers have
    /// stopped (safe to call for a pod without one).
    async fn remove_sandbox(&self, uid: &str) {
        let _ = uid;
    }
    /// Pod `uid`'s cgroup path, if the runtime gave it one.
    fn pod_cgroup(&self, uid: &str) -> Option<String> {
        let _ = uid;
        None
    }
    /// Pod `uid`'s network namespace, if it has its own.
    fn pod_netns(&self, uid: &str) -> Option<String> {
        let _ = uid;
        None
    }
    /// The bridge the runtime's pods hang on, if any.
    fn bridge(&self) -> Option<String> {
        None
    }
    /// The memory pod `uid` uses now (working set), given its `running`
    /// containers. The default adds up the containers' own figures.
    fn pod_memory_bytes(&self, uid: &str, running: &[Arc<dyn RunningContainer>]) -> u64 {
        let _ = uid;
        running.iter().filter_map(|c| c.memory_bytes()).sum()
    }
    /// Releases what the runtime holds for the node as a whole once the
    /// agent stops and its pods are gone (the containerd shim: the pod
    /// bridge). The default holds nothing.
    async fn shutdown(&self) {}
}

/// The embedded wasm runtime: images are component files.
pub struct WasmShim {
    runtime: orchd_runtime_wasm::WasmRuntime,
    images: PathBuf,
}

impl WasmShim {
    /// A shim resolving image names in `images` (see
    /// [`orchd_runtime_wasm::resolve_image`]).
    pub fn new(images: PathBuf) -> Result<Self, String> {
        Ok(WasmShim {
            runtime: orchd_runtime_wasm::WasmRuntime::new()?,
            images,
        })
    }
}

/// A wasm container: the running instance, and what a new instance for
/// `exec` needs (see [`orchd_runtime_wasm::WasmRuntime::exec`]).
struct WasmContainer {
    /// `<pod uid>-<container name>-<attempt>`: one per run, as containerd's.
    id: String,
    started_at: jiff::Timestamp,
    stopper: orchd_runtime_wasm::Stopper,
    /// The instance until the first `wait` takes it.
    running: tokio::sync::Mutex<Option<orchd_runtime_wasm::Container>>,
    exit: std::sync::OnceLock<ContainerExit>,
    runtime: orchd_runtime_wasm::WasmRuntime,
    image: PathBuf,
    env: Vec<(String, String)>,
    memory_limit: Option<u64>,
    cpu_millis: Option<u64>,
    /// Its instance's linear memory, in bytes.
    memory: Arc<std::sync::atomic::AtomicU64>,
}

#[async_trait::async_trait]
impl RunningContainer for WasmContainer {
    fn id(&self) -> String {
        self.id.clone()
    }

    fn started_at(&self) -> jiff::Timestamp {
        self.started_at
    }

    fn stopper(&self) -> Box<dyn Fn() + Send + Sync> {
        let stopper = self.stopper.clone();
        Box::new(move || stopper.stop())
    }

    fn memory_bytes(&self) -> Option<u64> {
        Some(self.memory.load(std::sync::atomic::Ordering::Relaxed))
    }

    async fn wait(&self) -> ContainerExit {
        let mut running = self.running.lock().await;
        if let Some(container) = running.take() {
            let exit = container.wait().await;
            let _ = self.exit.set(ContainerExit {
                code: exit.code,
                reason: exit.reason,
                message: exit.message,
                finished_at: exit.finished_at,
            });
        }
        drop(running);
        self.exit.get().cloned().unwrap_or_else(|| ContainerExit {
            code: 128,
            reason: ExitReason::Error,
            message: Some("the container's exit was lost".into()),
            finished_at: jiff::Timestamp::now(),
        })
    }

    /// A wasm container has no processes to join: the command runs in a
    /// new instance of the container's component, its words as the whole
    /// argv (see the wasm runtime's crate doc).
    async fn exec(
        &self,
        command: Vec<String>,
        stdin: Vec<u8>,
        timeout: std::time::Duration,
    ) -> Result<ExecOutput, String> {
        if command.is_empty() {
            return Err("no command given".into());
        }
        let result = self
            .runtime
            .exec(orchd_runtime_wasm::ExecSpec {
                image: self.image.clone(),
                argv: command,
                env: self.env.clone(),
                memory_limit: self.memory_limit,
                cpu_millis: self.cpu_millis,
                stdin,
                timeout,
            })
            .await
            .map_err(|e| e.to_string())?;
        if result.timed_out {
            return Err(format!(
                "command timed out after {}s",
                timeout.as_secs_f64()
            ));
        }
        Ok(ExecOutput {
            code: result.exit.code,
            stdout: result.stdout,
            stderr: result.stderr,
        })
    }
}

#[async_trait::async_trait]
impl Runtime for WasmShim {
    fn version(&self) -> String {
        format!("orchd-wasm://{}", orchd_runtime_wasm::VERSION)
    }

    async fn start(
        &self,
        config: ContainerConfig,
    ) -> Result<Box<dyn RunningContainer>, StartError> {
        let image = orchd_runtime_wasm::resolve_image(&config.image, &self.images)?;
        let id = format!("{}-{}-{}", config.pod_uid, config.name, config.attempt);
        let container = self
            .runtime
            .start(orchd_runtime_wasm::ContainerSpec {
                image: image.clone(),
                program: config.image.clone(),
                args: config.args,
                env: config.env.clone(),
                memory_limit: config.memory_limit,
                cpu_millis: config.cpu_millis,
                log_path: config.log_path,
            })
            .await?;
        Ok(Box::new(WasmContainer {
            id,
            started_at: container.started_at,
            stopper: container.stopper(),
            memory: container.memory_gauge(),
            running: tokio::sync::Mutex::new(Some(container)),
            exit: std::sync::OnceLock::new(),
            runtime: self.runtime.clone(),
            image,
            env: config.env,
            memory_limit: config.memory_limit,
            cpu_millis: config.cpu_millis,
        }))
    }
}
