//! Containers and image import through containerd's v1 services.

use std::collections::HashMap;
use std::io::Read;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use containerd_client::services::v1 as api;
use containerd_client::services::v1::snapshots as snap;
use containerd_client::tonic::Code;
use containerd_client::types::{Descriptor, Mount};
use jiff::Timestamp;
use tokio::sync::{oneshot, watch};

use crate::logs::{Fifos, Lines, LogFile, open_reader, pump};
use crate::{Containerd, LABEL_NODE, LABEL_POD_UID, RUNC_RUNTIME, SNAPSHOTTER, grpc, image, spec};

/// Why a container could not be started.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum StartError {
    /// The image is not there or unreadable (`ErrImagePull`).
    Image(String),
    /// The container could not be made: its snapshot, record, FIFOs or
    /// log (`CreateContainerError`).
    Create(String),
    /// The container was made but runc could not start its process (task
    /// create or start failed: a command that does not exist or is not
    /// executable, a cgroup setting the kernel refused); Kubernetes shows
    /// this as a run terminated with reason `StartError`, exit code 128.
    Start(String),
}

impl std::fmt::Display for StartError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            StartError::Image(m) | StartError::Create(m) | StartError::Start(m) => f.write_str(m),
        }
    }
}

/// Why a container ended.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ExitReason {
    /// Exit code 0.
    Completed,
    /// Any other exit.
    Error,
    /// The kernel's OOM killer ended it (its cgroup says so).
    OomKilled,
    /// orchd stopped it.
    Killed,
}

/// How a container ended.
#[derive(Clone, Debug)]
pub struct Exit {
    /// Exit code (128 + signal for a signalled process).
    pub code: i32,
    /// Why.
    pub reason: ExitReason,
    /// An explanation, if any.
    pub message: Option<String>,
    /// When.
    pub finished_at: Timestamp,
}

/// What to run.
#[derive(Clone, Debug, Default)]
pub struct ContainerSpec {
    /// The pod's uid.
    pub pod_uid: String,
    /// The pod's name (the container's host name).
    pub pod_name: String,
    /// The node running it (labelled, for clean-up after a crash).
    pub node: String,
    /// The container's name in the pod.
    pub name: String,
    /// Which run of it this is (0 first).
    pub attempt: u32,
    /// Image reference as the pod writes it.
    pub image: String,
    /// Kubernetes `command` (replaces the image's entrypoint).
    pub command: Vec<String>,
    /// Kubernetes `args` (replace the image's Cmd).
    pub args: Vec<String>,
    /// Extra environment.
    pub env: Vec<(String, String)>,
    /// `workingDir`.
    pub working_dir: Option<String>,
    /// Memory limit in bytes.
    pub memory_limit: Option<u64>,
    /// CPU limit in millicores.
    pub cpu_limit_millis: Option<u64>,
    /// CPU request in millicores.
    pub cpu_request_millis: Option<u64>,
    /// The pod's network namespace.
    pub netns: Option<PathBuf>,
    /// The pod's cgroup (e.g. `/orchd/pod<uid>`): the container's is below.
    pub cgroup_parent: String,
    /// The log file this run writes.
    pub log_path: PathBuf,
}

/// containerd ids: `[A-Za-z0-9_.-]`, at most 76 characters.
fn container_id(spec: &ContainerSpec) -> String {
    let clean = |s: &str, max: usize| -> String {
        s.chars()
            .map(|c| {
                if c.is_ascii_alphanumeric() || c == '-' || c == '_' || c == '.' {
                    c
                } else {
                    '-'
                }
            })
            .take(max)
            .collect()
    };
    format!(
        "{}-{}-{}",
        clean(&spec.pod_uid, 36),
        clean(&spec.name, 30),
        spec.attempt
    )
}

/// A running container.
pub struct Container {
    /// containerd's id of it.
    pub id: String,
    /// When its process started.
    pub started_at: Timestamp,
    client: Containerd,
    killed: Arc<AtomicBool>,
    /// The watcher's answer, until the first `wait` takes it.
    exit: tokio::sync::Mutex<Option<oneshot::Receiver<Exit>>>,
    /// The exit, once known: every `wait` answers the same.
    exited: std::sync::OnceLock<Exit>,
    env: Vec<String>,
    cwd: String,
}

impl Container {
    /// Sends `signal` to the container's processes, in the background.
    fn signal(&self, signal: u32) {
        let client = self.client.clone();
        let id = self.id.clone();
        if let Ok(handle) = tokio::runtime::Handle::try_current() {
            handle.spawn(async move { kill(&client, &id, signal).await });
        }
    }

    /// Asks it to end: SIGTERM.
    pub fn terminate(&self) {
        self.signal(15);
    }

    /// A function that kills it (SIGKILL), callable many times.
    pub fn stopper(&self) -> Box<dyn Fn() + Send + Sync> {
        let client = self.client.clone();
        let id = self.id.clone();
        let killed = self.killed.clone();
        let handle = tokio::runtime::Handle::try_current().ok();
        Box::new(move || {
            killed.store(true, Ordering::Relaxed);
            if let Some(h) = &handle {
                let client = client.clone();
                let id = id.clone();
                h.spawn(async move { kill(&client, &id, 9).await });
            }
        })
    }

    /// Waits for it to end (and be cleaned up); callable while `exec` and
    /// `terminate` are, and every call answers the same exit.
    pub async fn wait(&self) -> Exit {
        let mut pending = self.exit.lock().await;
        if let Some(rx) = pending.take() {
            let exit = rx.await.unwrap_or_else(|_| Exit {
                code: 128,
                reason: ExitReason::Error,
                message: Some("the container's watcher ended without an exit status".into()),
                finished_at: Timestamp::now(),
            });
            let _ = self.exited.set(exit);
        }
        drop(pending);
        self.exited.get().cloned().unwrap_or_else(|| Exit {
            code: 128,
            reason: ExitReason::Error,
            message: Some("the container's exit was lost".into()),
            finished_at: Timestamp::now(),
        })
    }

    /// Runs `command` in the container (Tasks.Exec), feeding `stdin`;
    /// returns its exit code and output, or an error after `timeout`.
    pub async fn exec(
        &self,
        command: Vec<String>,
        stdin: Vec<u8>,
        timeout: std::time::Duration,
    ) -> Result<(i32, Vec<u8>, Vec<u8>), String> {
        exec(self, command, stdin, timeout).await
    }
}

async fn kill(client: &Containerd, id: &str, signal: u32) {
    let mut tasks = api::tasks_client::TasksClient::new(client.channel());
    let _ = tasks
        .kill(client.req(
            api::KillRequest {
                container_id: id.to_string(),
                exec_id: String::new(),
                signal,
                all: true,
            },
            None,
        ))
        .await;
}

/// Deletes a container's task (killing it first if `kill_first`), the
/// container and its snapshot; errors are ignored (it may be half-made).
pub(crate) async fn remove_container(client: &Containerd, id: &str, kill_first: bool) {
    let mut tasks = api::tasks_client::TasksClient::new(client.channel());
    if kill_first {
        kill(client, id, 9).await;
        let _ = tokio::time::timeout(
            std::time::Duration::from_secs(10),
            tasks.wait(client.req(
                api::WaitRequest {
                    container_id: id.to_string(),
                    exec_id: String::new(),
                },
                None,
            )),
        )
        .await;
    }
    let _ = tasks
        .delete(client.req(
            api::DeleteTaskRequest {
                container_id: id.to_string(),
            },
            None,
        ))
        .await;
    let mut containers = api::containers_client::ContainersClient::new(client.channel());
    let _ = containers
        .delete(client.req(api::DeleteContainerRequest { id: id.to_string() }, None))
        .await;
    let mut snapshots = snap::snapshots_client::SnapshotsClient::new(client.channel());
    let _ = snapshots
        .remove(client.req(
            snap::RemoveSnapshotRequest {
                snapshotter: SNAPSHOTTER.into(),
                key: id.to_string(),
            },
            None,
        ))
        .await;
}

/// The environment: the image's, then the pod's (later entries win).
fn environment(image_env: &[String], extra: &[(String, String)]) -> Vec<String> {
    let mut out: Vec<String> = Vec::new();
    let mut set = |entry: String| {
        let name = entry.split('=').next().unwrap_or("").to_string();
        out.retain(|e| e.split('=').next() != Some(name.as_str()));
        out.push(entry);
    };
    if !image_env.iter().any(|e| e.starts_with("PATH=")) {
        set("PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin".into());
    }
    for e in image_env {
        set(e.clone());
    }
    for (k, v) in extra {
        set(format!("{k}={v}"));
    }
    out
}

/// Creates and starts a container.
pub(crate) async fn start(
    client: &Containerd,
    spec: ContainerSpec,
) -> Result<Container, StartError> {
    let image = client.resolve_image(&spec.image).await?;
    let id = container_id(&spec);
    // A leftover of the same id (an agent crash mid-start) goes first.
    remove_container(client, &id, true).await;
    let args = image.config.argv(&spec.command, &spec.args);
    if args.is_empty() {
        return Err(StartError::Create(format!(
            "no command: neither the pod nor the image {} gives one",
            image.name
        )));
    }
    let env = environment(&image.config.env, &spec.env);
    let cwd = spec
        .working_dir
        .clone()
        .filter(|d| !d.is_empty())
        .unwrap_or_else(|| image.config.working_dir.clone());
    let cgroups_path = format!("{}/{id}", spec.cgroup_parent.trim_end_matches('/'));
    let runtime_spec = spec::runtime_spec(&spec::SpecInput {
        args,
        env: env.clone(),
        cwd: cwd.clone(),
        hostname: spec.pod_name.chars().take(63).collect(),
        netns: spec.netns.as_ref().map(|p| p.display().to_string()),
        cgroups_path: cgroups_path.clone(),
        memory_limit: spec.memory_limit,
        cpu_limit_millis: spec.cpu_limit_millis,
        cpu_request_millis: spec.cpu_request_millis,
    });
    let lease = create_lease(client, "orchd-create")
        .await
        .map_err(StartError::Create)?;
    let created = create(client, &spec, &id, &image, &runtime_spec, &lease).await;
    // The container record holds the snapshot from here on.
    delete_lease(client, lease).await;
    let (mounts, fifos) = match created {
        Ok(x) => x,
        Err(e) => {
            remove_container(client, &id, false).await;
            return Err(e);
        }
    };
    let cleanup = |fifos: &Fifos| fifos.remove();
    let log = match LogFile::create(&spec.log_path) {
        Ok(l) => l,
        Err(e) => {
            cleanup(&fifos);
            remove_container(client, &id, false).await;
            return Err(StartError::Create(format!(
                "cannot create the log {}: {e}",
                spec.log_path.display()
            )));
        }
    };
    let (out_rx, err_rx) = match (open_reader(&fifos.stdout), open_reader(&fifos.stderr)) {
        (Ok(a), Ok(b)) => (a, b),
        (Err(e), _) | (_, Err(e)) => {
            cleanup(&fifos);
            remove_container(client, &id, false).await;
            return Err(StartError::Create(format!(
                "cannot open the output FIFOs: {e}"
            )));
        }
    };
    let mut tasks = api::tasks_client::TasksClient::new(client.channel());
    let task = tasks
        .create(client.req(
            api::CreateTaskRequest {
                container_id: id.clone(),
                rootfs: mounts,
                stdin: String::new(),
                stdout: fifos.stdout.display().to_string(),
                stderr: fifos.stderr.display().to_string(),
                terminal: false,
                ..Default::default()
            },
            None,
        ))
        .await;
    if let Err(s) = task {
        cleanup(&fifos);
        remove_container(client, &id, false).await;
        // runc's own message (containerd's wording, as the kubelet shows it).
        return Err(StartError::Start(format!(
            "failed to create containerd task: {}",
            s.message()
        )));
    }
    // Output is read from now on (the shim holds the FIFOs' writing ends).
    let (done_tx, done_rx) = watch::channel(false);
    let readers = [("stdout", out_rx), ("stderr", err_rx)].map(|(name, rx)| {
        let mut lines = Lines::new(log.clone(), name);
        let done = done_rx.clone();
        tokio::spawn(async move {
            let mut lines_ref = Some(&mut lines);
            pump(
                rx,
                |b| {
                    if let Some(l) = lines_ref.as_mut() {
                        l.accept(b)
                    }
                },
                done,
            )
            .await;
            lines.finish();
        })
    });
    // Wait is asked before Start, so the exit cannot be missed.
    let (waiting_tx, waiting_rx) = oneshot::channel::<Result<u32, String>>();
    {
        let client = client.clone();
        let id = id.clone();
        tokio::spawn(async move {
            let mut tasks = api::tasks_client::TasksClient::new(client.channel());
            let r = tasks
                .wait(client.req(
                    api::WaitRequest {
                        container_id: id,
                        exec_id: String::new(),
                    },
                    None,
                ))
                .await
                .map(|r| r.into_inner().exit_status)
                .map_err(|s| s.message().to_string());
            let _ = waiting_tx.send(r);
        });
    }
    let started = tasks
        .start(client.req(
            api::StartRequest {
                container_id: id.clone(),
                exec_id: String::new(),
            },
            None,
        ))
        .await;
    if let Err(s) = started {
        let _ = done_tx.send(true);
        for r in readers {
            let _ = r.await;
        }
        cleanup(&fifos);
        remove_container(client, &id, true).await;
        return Err(StartError::Start(format!(
            "failed to start containerd task: {}",
            s.message()
        )));
    }
    let started_at = Timestamp::now();
    let killed = Arc::new(AtomicBool::new(false));
    let (exit_tx, exit_rx) = oneshot::channel();
    {
        let client = client.clone();
        let id = id.clone();
        let killed = killed.clone();
        let version = client.cgroup_version();
        let limited = spec.memory_limit.is_some();
        tokio::spawn(async move {
            let status = waiting_rx
                .await
                .unwrap_or_else(|_| Err("the wait ended".into()));
            let finished_at = Timestamp::now();
            // Before the task is deleted: runc removes the cgroup then.
            let ooms = crate::cgroups::oom_kills(version, &cgroups_path).unwrap_or(0);
            let _ = done_tx.send(true);
            for r in readers {
                let _ = r.await;
            }
            remove_container(&client, &id, false).await;
            fifos.remove();
            let exit = match status {
                Ok(code) => {
                    let code = i32::try_from(code).unwrap_or(255);
                    let reason = if ooms > 0 && limited {
                        ExitReason::OomKilled
                    } else if killed.load(Ordering::Relaxed) {
                        ExitReason::Killed
                    } else if code == 0 {
                        ExitReason::Completed
                    } else {
                        ExitReason::Error
                    };
                    Exit {
                        code,
                        reason,
                        message: (reason == ExitReason::OomKilled)
                            .then(|| "the container went over its memory limit".to_string()),
                        finished_at,
                    }
                }
                Err(m) => Exit {
                    code: 128,
                    reason: ExitReason::Error,
                    message: Some(format!("lost track of the container: {m}")),
                    finished_at,
                },
            };
            let _ = exit_tx.send(exit);
        });
    }
    Ok(Container {
        id,
        started_at,
        client: client.clone(),
        killed,
        exit: tokio::sync::Mutex::new(Some(exit_rx)),
        exited: std::sync::OnceLock::new(),
        env,
        cwd,
    })
}

/// The snapshot and the container record, made under `lease`; returns
/// the rootfs mounts and the output FIFOs.
///
/// containerd's garbage collector removes a snapshot nothing references,
/// and between `Prepare` and the container record that references it, only
/// the lease does. (Without one, a collection set off by another
/// container's removal took the fresh snapshot, and the task failed to
/// mount its root filesystem.)
async fn create(
    client: &Containerd,
    spec: &ContainerSpec,
    id: &str,
    image: &crate::ResolvedImage,
    runtime_spec: &serde_json::Value,
    lease: &str,
) -> Result<(Vec<Mount>, Fifos), StartError> {
    let mut snapshots = snap::snapshots_client::SnapshotsClient::new(client.channel());
    let mounts = snapshots
        .prepare(client.req(
            snap::PrepareSnapshotRequest {
                snapshotter: SNAPSHOTTER.into(),
                key: id.to_string(),
                parent: image.chain_id.clone(),
                labels: HashMap::new(),
            },
            Some(lease),
        ))
        .await
        .map_err(|s| {
            StartError::Create(format!(
                "cannot prepare the root filesystem from {} (is the image unpacked?): {}",
                image.name,
                s.message()
            ))
        })?
        .into_inner()
        .mounts;
    let labels: HashMap<String, String> = [
        (LABEL_NODE.to_string(), spec.node.clone()),
        (LABEL_POD_UID.to_string(), spec.pod_uid.clone()),
        (
            "io.kubernetes.container.name".to_string(),
            spec.name.clone(),
        ),
    ]
    .into_iter()
    .collect();
    let mut containers = api::containers_client::ContainersClient::new(client.channel());
    containers
        .create(client.req(
            api::CreateContainerRequest {
                container: Some(api::Container {
                    id: id.to_string(),
                    labels,
                    image: image.name.clone(),
                    runtime: Some(api::container::Runtime {
                        name: RUNC_RUNTIME.into(),
                        options: None,
                    }),
                    spec: Some(prost_types::Any {
                        type_url: spec::SPEC_TYPE_URL.into(),
                        value: serde_json::to_vec(runtime_spec).unwrap_or_default(),
                    }),
                    snapshotter: SNAPSHOTTER.into(),
                    snapshot_key: id.to_string(),
                    ..Default::default()
                }),
            },
            Some(lease),
        ))
        .await
        .map_err(|s| StartError::Create(grpc("cannot create the container", s)))?;
    let fifos = Fifos::create(&client.fifo_dir(), id).map_err(StartError::Create)?;
    Ok((mounts, fifos))
}

/// Runs a process in a running container.
async fn exec(
    c: &Container,
    command: Vec<String>,
    stdin: Vec<u8>,
    timeout: std::time::Duration,
) -> Result<(i32, Vec<u8>, Vec<u8>), String> {
    use tokio::io::AsyncWriteExt;
    if command.is_empty() {
        return Err("no command to run".into());
    }
    let client = &c.client;
    let exec_id = format!(
        "exec-{:x}",
        Timestamp::now().as_nanosecond() as u128 & 0xffff_ffff_ffff
    );
    let fifos = Fifos::create(&client.fifo_dir(), &format!("{}-{exec_id}", c.id))?;
    let stdin_path = client.fifo_dir().join(format!("{}-{exec_id}.stdin", c.id));
    let with_stdin = !stdin.is_empty();
    if with_stdin {
        let _ = std::fs::remove_file(&stdin_path);
        rustix::fs::mknodat(
            rustix::fs::CWD,
            &stdin_path,
            rustix::fs::FileType::Fifo,
            rustix::fs::Mode::from_raw_mode(0o600),
            0,
        )
        .map_err(|e| format!("cannot create the stdin FIFO: {e}"))?;
    }
    let cleanup = |fifos: &Fifos| {
        fifos.remove();
        let _ = std::fs::remove_file(&stdin_path);
    };
    let (out_rx, err_rx) = match (open_reader(&fifos.stdout), open_reader(&fifos.stderr)) {
        (Ok(a), Ok(b)) => (a, b),
        (Err(e), _) | (_, Err(e)) => {
            cleanup(&fifos);
            return Err(format!("cannot open the output FIFOs: {e}"));
        }
    };
    // The shim opens stdin for reading without waiting for a writer; the
    // writing end is opened read-write here so that open cannot block.
    let stdin_tx = if with_stdin {
        match tokio::net::unix::pipe::OpenOptions::new()
            .read_write(true)
            .open_sender(&stdin_path)
        {
            Ok(s) => Some(s),
            Err(e) => {
                cleanup(&fifos);
                return Err(format!("cannot open the stdin FIFO: {e}"));
            }
        }
    } else {
        None
    };
    let process = spec::process(&command, &c.env, &c.cwd);
    let mut tasks = api::tasks_client::TasksClient::new(client.channel());
    let made = tasks
        .exec(client.req(
            api::ExecProcessRequest {
                container_id: c.id.clone(),
                stdin: if with_stdin {
                    stdin_path.display().to_string()
                } else {
                    String::new()
                },
                stdout: fifos.stdout.display().to_string(),
                stderr: fifos.stderr.display().to_string(),
                terminal: false,
                spec: Some(prost_types::Any {
                    type_url: spec::PROCESS_TYPE_URL.into(),
                    value: serde_json::to_vec(&process).unwrap_or_default(),
                }),
                exec_id: exec_id.clone(),
            },
            None,
        ))
        .await;
    if let Err(s) = made {
        cleanup(&fifos);
        return Err(grpc("exec", s));
    }
    let (done_tx, done_rx) = watch::channel(false);
    let collect = |rx, done| {
        tokio::spawn(async move {
            let mut out = Vec::new();
            pump(rx, |b: &[u8]| out.extend_from_slice(b), done).await;
            out
        })
    };
    let out_task = collect(out_rx, done_rx.clone());
    let err_task = collect(err_rx, done_rx);
    let (wait_tx, wait_rx) = oneshot::channel();
    {
        let client = client.clone();
        let id = c.id.clone();
        let exec_id = exec_id.clone();
        tokio::spawn(async move {
            let mut tasks = api::tasks_client::TasksClient::new(client.channel());
            let r = tasks
                .wait(client.req(
                    api::WaitRequest {
                        container_id: id,
                        exec_id,
                    },
                    None,
                ))
                .await
                .map(|r| r.into_inner().exit_status)
                .map_err(|s| s.message().to_string());
            let _ = wait_tx.send(r);
        });
    }
    let started = tasks
        .start(client.req(
            api::StartRequest {
                container_id: c.id.clone(),
                exec_id: exec_id.clone(),
            },
            None,
        ))
        .await;
    if let Err(s) = started {
        let _ = done_tx.send(true);
        delete_process(client, &c.id, &exec_id).await;
        cleanup(&fifos);
        return Err(grpc("exec start", s));
    }
    if let Some(mut tx) = stdin_tx {
        let _ = tx.write_all(&stdin).await;
        drop(tx);
        // The shim passes stdin's end on only when told to.
        let _ = tasks
            .close_io(client.req(
                api::CloseIoRequest {
                    container_id: c.id.clone(),
                    exec_id: exec_id.clone(),
                    stdin: true,
                },
                None,
            ))
            .await;
    }
    let result = match tokio::time::timeout(timeout, wait_rx).await {
        Ok(Ok(Ok(code))) => Ok(i32::try_from(code).unwrap_or(255)),
        Ok(Ok(Err(m))) => Err(format!("exec wait: {m}")),
        Ok(Err(_)) => Err("exec wait ended".to_string()),
        Err(_) => {
            let _ = tasks
                .kill(client.req(
                    api::KillRequest {
                        container_id: c.id.clone(),
                        exec_id: exec_id.clone(),
                        signal: 9,
                        all: false,
                    },
                    None,
                ))
                .await;
            Err(format!(
                "command timed out after {} s",
                timeout.as_secs_f64()
            ))
        }
    };
    let _ = done_tx.send(true);
    let stdout = out_task.await.unwrap_or_default();
    let stderr = err_task.await.unwrap_or_default();
    delete_process(client, &c.id, &exec_id).await;
    cleanup(&fifos);
    result.map(|code| (code, stdout, stderr))
}

async fn delete_process(client: &Containerd, id: &str, exec_id: &str) {
    let mut tasks = api::tasks_client::TasksClient::new(client.channel());
    let _ = tasks
        .delete_process(client.req(
            api::DeleteProcessRequest {
                container_id: id.to_string(),
                exec_id: exec_id.to_string(),
            },
            None,
        ))
        .await;
}

/// Writes one blob into the content store (no-op if it is there).
async fn write_blob(
    client: &Containerd,
    lease: &str,
    digest: &str,
    data: Vec<u8>,
) -> Result<(), String> {
    const CHUNK: usize = 1 << 20;
    let total = data.len() as i64;
    let reference = format!("orchd-import-{digest}");
    let mut requests = Vec::new();
    let mut offset = 0usize;
    while offset < data.len() {
        let end = (offset + CHUNK).min(data.len());
        requests.push(api::WriteContentRequest {
            action: api::WriteAction::Write as i32,
            r#ref: reference.clone(),
            total,
            expected: digest.to_string(),
            offset: offset as i64,
            data: data[offset..end].to_vec(),
            ..Default::default()
        });
        offset = end;
    }
    requests.push(api::WriteContentRequest {
        action: api::WriteAction::Commit as i32,
        r#ref: reference,
        total,
        expected: digest.to_string(),
        offset: total,
        ..Default::default()
    });
    let mut content = api::content_client::ContentClient::new(client.channel());
    let stream = futures::stream::iter(requests);
    let result = content.write(client.req(stream, Some(lease))).await;
    let mut responses = match result {
        Ok(r) => r.into_inner(),
        Err(s) if s.code() == Code::AlreadyExists => return Ok(()),
        Err(s) => return Err(grpc(&format!("write {digest}"), s)),
    };
    use futures::StreamExt;
    while let Some(r) = responses.next().await {
        match r {
            Ok(_) => {}
            Err(s) if s.code() == Code::AlreadyExists => return Ok(()),
            Err(s) => return Err(grpc(&format!("write {digest}"), s)),
        }
    }
    Ok(())
}

/// Sets labels on a blob (garbage-collection references).
async fn label_blob(
    client: &Containerd,
    lease: &str,
    digest: &str,
    labels: HashMap<String, String>,
) -> Result<(), String> {
    let paths = labels.keys().map(|k| format!("labels.{k}")).collect();
    let mut content = api::content_client::ContentClient::new(client.channel());
    content
        .update(client.req(
            api::UpdateRequest {
                info: Some(api::Info {
                    digest: digest.to_string(),
                    labels,
                    ..Default::default()
                }),
                update_mask: Some(prost_types::FieldMask { paths }),
            },
            Some(lease),
        ))
        .await
        .map_err(|s| grpc(&format!("label {digest}"), s))?;
    Ok(())
}

fn descriptor(v: &serde_json::Value) -> Result<Descriptor, String> {
    Ok(Descriptor {
        media_type: v["mediaType"].as_str().unwrap_or_default().to_string(),
        digest: v["digest"]
            .as_str()
            .ok_or("a descriptor without a digest")?
            .to_string(),
        size: v["size"].as_i64().unwrap_or(0),
        annotations: HashMap::new(),
    })
}

/// Imports an OCI image-layout tarball.
pub(crate) async fn import(
    client: &Containerd,
    tar_path: &Path,
    progress: &mut (dyn FnMut(&str) + Send),
) -> Result<Vec<String>, String> {
    let file = std::fs::File::open(tar_path)
        .map_err(|e| format!("cannot open {}: {e}", tar_path.display()))?;
    let lease = create_lease(client, "orchd-import").await?;
    let result = import_leased(client, &lease, file, progress).await;
    delete_lease(client, lease).await;
    result
}

/// How long a lease outlives an agent that died holding it.
const LEASE_EXPIRY: jiff::SignedDuration = jiff::SignedDuration::from_secs(3600);

/// A lease named `prefix-<now in ns>-<n>` (unique in this process, and
/// within containerd's 76 characters for an id), which protects what is
/// made under it from garbage collection until it is deleted or expires.
async fn create_lease(client: &Containerd, prefix: &str) -> Result<String, String> {
    static SEQUENCE: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
    let now = Timestamp::now();
    let n = SEQUENCE.fetch_add(1, Ordering::Relaxed);
    let id = format!("{prefix}-{}-{n}", now.as_nanosecond());
    let expire = now
        .checked_add(LEASE_EXPIRY)
        .map_err(|e| format!("cannot compute a lease expiry: {e}"))?;
    let mut leases = api::leases_client::LeasesClient::new(client.channel());
    leases
        .create(client.req(
            api::CreateRequest {
                id: id.clone(),
                labels: HashMap::from([(
                    "containerd.io/gc.expire".to_string(),
                    expire.to_string(),
                )]),
            },
            None,
        ))
        .await
        .map_err(|s| grpc("create a lease", s))?;
    Ok(id)
}

/// Ends a lease; what it held is kept only if something else references it.
async fn delete_lease(client: &Containerd, id: String) {
    let mut leases = api::leases_client::LeasesClient::new(client.channel());
    let _ = leases
        .delete(client.req(api::DeleteRequest { id, sync: false }, None))
        .await;
}

/// Small blobs (manifests, indexes, configs) kept in memory to read.
const SMALL_BLOB: u64 = 4 << 20;

async fn import_leased(
    client: &Containerd,
    lease: &str,
    file: std::fs::File,
    progress: &mut (dyn FnMut(&str) + Send),
) -> Result<Vec<String>, String> {
    let mut archive = tar::Archive::new(std::io::BufReader::new(file));
    let mut index: Option<serde_json::Value> = None;
    let mut small: HashMap<String, Vec<u8>> = HashMap::new();
    let mut layout = false;
    let entries = archive
        .entries()
        .map_err(|e| format!("not a tar archive: {e}"))?;
    for entry in entries {
        let mut entry = entry.map_err(|e| format!("bad tar entry: {e}"))?;
        let path = entry
            .path()
            .map_err(|e| format!("bad tar path: {e}"))?
            .to_string_lossy()
            .trim_start_matches("./")
            .to_string();
        if entry.header().entry_type() != tar::EntryType::Regular {
            continue;
        }
        let size = entry.header().size().unwrap_or(0);
        let mut data = Vec::with_capacity(size as usize);
        entry
            .read_to_end(&mut data)
            .map_err(|e| format!("cannot read {path}: {e}"))?;
        if path == "index.json" {
            index =
                Some(serde_json::from_slice(&data).map_err(|e| format!("bad index.json: {e}"))?);
        } else if path == "oci-layout" {
            layout = true;
        } else if let Some(hex) = path.strip_prefix("blobs/sha256/") {
            let d = format!("sha256:{hex}");
            let actual = image::digest(&data);
            if actual != d {
                return Err(format!("blob {path} does not match its digest ({actual})"));
            }
            progress(&format!("blob {d} ({} bytes)", data.len()));
            if size <= SMALL_BLOB {
                small.insert(d.clone(), data.clone());
            }
            write_blob(client, lease, &d, data).await?;
        }
    }
    let index = index.ok_or("no index.json: not an OCI image layout tarball")?;
    if !layout {
        return Err("no oci-layout file: not an OCI image layout tarball".into());
    }
    let mut names = Vec::new();
    for entry in index["manifests"].as_array().into_iter().flatten() {
        let annotations = &entry["annotations"];
        let name = annotations[image::ANNOTATION_NAME]
            .as_str()
            .map(image::normalize)
            .or_else(|| {
                annotations[image::ANNOTATION_REF]
                    .as_str()
                    .filter(|r| r.contains('/') || r.contains(':') || !r.is_empty())
                    .map(image::normalize)
            })
            .ok_or("a manifest in index.json has no image name annotation")?;
        let target = descriptor(entry)?;
        // An index in the index: pick this platform's manifest.
        let mut manifest_digest = target.digest.clone();
        let mut manifest: serde_json::Value = serde_json::from_slice(
            small
                .get(&manifest_digest)
                .ok_or_else(|| format!("manifest {manifest_digest} is not in the tarball"))?,
        )
        .map_err(|e| format!("bad manifest: {e}"))?;
        if let Some(list) = manifest["manifests"].as_array() {
            let chosen = list
                .iter()
                .find(|m| m["platform"]["architecture"] == image::oci_arch())
                .or_else(|| list.first())
                .ok_or("an empty image index")?
                .clone();
            let children: HashMap<String, String> = list
                .iter()
                .enumerate()
                .filter_map(|(i, m)| {
                    Some((
                        format!("containerd.io/gc.ref.content.m.{i}"),
                        m["digest"].as_str()?.to_string(),
                    ))
                })
                .collect();
            label_blob(client, lease, &manifest_digest, children).await?;
            manifest_digest = descriptor(&chosen)?.digest;
            manifest = serde_json::from_slice(
                small
                    .get(&manifest_digest)
                    .ok_or_else(|| format!("manifest {manifest_digest} is not in the tarball"))?,
            )
            .map_err(|e| format!("bad manifest: {e}"))?;
        }
        let config_desc = descriptor(&manifest["config"])?;
        let config = image::ImageConfig::parse(
            small
                .get(&config_desc.digest)
                .ok_or_else(|| format!("config {} is not in the tarball", config_desc.digest))?,
        )?;
        let layers: Vec<Descriptor> = manifest["layers"]
            .as_array()
            .into_iter()
            .flatten()
            .map(descriptor)
            .collect::<Result<_, _>>()?;
        if layers.len() != config.diff_ids.len() {
            return Err(format!(
                "{name}: {} layers but {} diff IDs",
                layers.len(),
                config.diff_ids.len()
            ));
        }
        let chains = image::chain_ids(&config.diff_ids);
        for (i, layer) in layers.iter().enumerate() {
            let parent = if i == 0 { "" } else { &chains[i - 1] };
            unpack(client, lease, layer, &chains[i], parent).await?;
            progress(&format!("unpacked layer {} as {}", layer.digest, chains[i]));
        }
        // References the garbage collector follows: manifest → config and
        // layers, config → the unpacked snapshot.
        let mut refs: HashMap<String, String> = HashMap::new();
        refs.insert(
            "containerd.io/gc.ref.content.config".into(),
            config_desc.digest.clone(),
        );
        for (i, l) in layers.iter().enumerate() {
            refs.insert(
                format!("containerd.io/gc.ref.content.l.{i}"),
                l.digest.clone(),
            );
        }
        label_blob(client, lease, &manifest_digest, refs).await?;
        if let Some(top) = chains.last() {
            let mut snap_ref = HashMap::new();
            snap_ref.insert(
                format!("containerd.io/gc.ref.snapshot.{SNAPSHOTTER}"),
                top.clone(),
            );
            label_blob(client, lease, &config_desc.digest, snap_ref).await?;
        }
        create_image(client, lease, &name, target).await?;
        progress(&format!("imported {name} ({manifest_digest})"));
        names.push(name);
    }
    if names.is_empty() {
        return Err("index.json names no manifests".into());
    }
    Ok(names)
}

/// Unpacks one layer into the snapshot `chain` on top of `parent`,
/// unless it is there already.
async fn unpack(
    client: &Containerd,
    lease: &str,
    layer: &Descriptor,
    chain: &str,
    parent: &str,
) -> Result<(), String> {
    let mut snapshots = snap::snapshots_client::SnapshotsClient::new(client.channel());
    let exists = snapshots
        .stat(client.req(
            snap::StatSnapshotRequest {
                snapshotter: SNAPSHOTTER.into(),
                key: chain.to_string(),
            },
            Some(lease),
        ))
        .await
        .is_ok();
    if exists {
        return Ok(());
    }
    let key = format!("extract-{}-{chain}", Timestamp::now().as_nanosecond());
    let mounts = snapshots
        .prepare(client.req(
            snap::PrepareSnapshotRequest {
                snapshotter: SNAPSHOTTER.into(),
                key: key.clone(),
                parent: parent.to_string(),
                labels: HashMap::new(),
            },
            Some(lease),
        ))
        .await
        .map_err(|s| grpc("prepare a layer snapshot", s))?
        .into_inner()
        .mounts;
    let mut diff = api::diff_client::DiffClient::new(client.channel());
    let applied = diff
        .apply(client.req(
            api::ApplyRequest {
                diff: Some(layer.clone()),
                mounts,
                ..Default::default()
            },
            Some(lease),
        ))
        .await;
    let committed = match applied {
        Ok(_) => snapshots
            .commit(client.req(
                snap::CommitSnapshotRequest {
                    snapshotter: SNAPSHOTTER.into(),
                    name: chain.to_string(),
                    key: key.clone(),
                    ..Default::default()
                },
                Some(lease),
            ))
            .await
            .map(|_| ())
            .map_err(|s| grpc("commit the layer snapshot", s)),
        Err(s) => Err(grpc(&format!("apply layer {}", layer.digest), s)),
    };
    if committed.is_err() {
        let _ = snapshots
            .remove(client.req(
                snap::RemoveSnapshotRequest {
                    snapshotter: SNAPSHOTTER.into(),
                    key,
                },
                Some(lease),
            ))
            .await;
    }
    committed
}

/// Creates the image record, or points an existing one at `target`.
async fn create_image(
    client: &Containerd,
    lease: &str,
    name: &str,
    target: Descriptor,
) -> Result<(), String> {
    let mut images = api::images_client::ImagesClient::new(client.channel());
    let image = api::Image {
        name: name.to_string(),
        target: Some(target),
        ..Default::default()
    };
    let created = images
        .create(client.req(
            api::CreateImageRequest {
                image: Some(image.clone()),
                ..Default::default()
            },
            Some(lease),
        ))
        .await;
    match created {
        Ok(_) => Ok(()),
        Err(s) if s.code() == Code::AlreadyExists => images
            .update(client.req(
                api::UpdateImageRequest {
                    image: Some(image),
                    update_mask: Some(prost_types::FieldMask {
                        paths: vec!["target".into()],
                    }),
                    ..Default::default()
                },
                Some(lease),
            ))
            .await
            .map(|_| ())
            .map_err(|s| grpc(&format!("update image {name}"), s)),
        Err(s) => Err(grpc(&format!("create image {name}"), s)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_are_valid_containerd_ids() {
        let id = container_id(&ContainerSpec {
            pod_uid: "0d6f0c6e-8c1b-4c1e-9f00-123456789abc".into(),
            name: "a very/long:name".repeat(4),
            attempt: 12,
            ..Default::default()
        });
        assert!(id.len() <= 76, "{id}");
        assert!(
            id.chars()
                .all(|c| c.is_ascii_alphanumeric() || "-_.".contains(c))
        );
        assert!(id.ends_with("-12"));
    }

    #[test]
    fn pod_env_overrides_the_images() {
        let env = environment(
            &["PATH=/bin".into(), "A=1".into()],
            &[("A".into(), "2".into()), ("B".into(), "3".into())],
        );
        assert_eq!(env, vec!["PATH=/bin", "A=2", "B=3"]);
        let env = environment(&[], &[]);
        assert!(env[0].starts_with("PATH="));
    }
}
