//! Starting and stopping a cluster: the store, the API server, the
//! kubeconfig, and clean shutdown on SIGINT/SIGTERM.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Instant;

use anyhow::Context;
use orchd_api::{ApiConfig, ApiServer};
use orchd_store::{EtcdStore, EtcdStoreConfig, RedbStore, RedbStoreConfig, Store};

use crate::{DEFAULT_LISTEN, parse_listen};

/// Options of `orchd up` and `orchd server`.
#[derive(clap::Args)]
pub struct UpArgs {
    /// Directory for the store file and the kubeconfig.
    #[arg(long, default_value = ".orchd")]
    pub data_dir: PathBuf,
    /// The store: `redb` (default: an embedded file in --data-dir) or
    /// `etcd://HOST:PORT[/PREFIX]` (a real etcd, shared by several
    /// `orchd server` replicas; keys under PREFIX, `/orchd` by default).
    #[arg(
        long,
        default_value = "redb",
        value_name = "redb|etcd://HOST:PORT[/PREFIX]"
    )]
    pub store: String,
    /// Address the API listens on (loopback by default).
    #[arg(long, default_value = DEFAULT_LISTEN)]
    pub listen: String,
    /// Watch history kept for resuming, in events (default: the store's);
    /// a watch from an older resourceVersion gets 410 Gone and relists.
    #[arg(long)]
    pub history_limit: Option<usize>,
    /// How often history is compacted down to --history-limit, in
    /// milliseconds (default: the store's; 0 turns compaction off).
    #[arg(long)]
    pub compaction_interval_ms: Option<u64>,
    /// Start without the default plugins (the scheduler shipped inside
    /// this binary); install your own with `orchd plugin install`.
    #[arg(long)]
    pub no_default_plugins: bool,
    /// How long a newly swapped-in plugin revision stays on probation (it
    /// is rolled back if it keeps failing meanwhile), in milliseconds.
    #[arg(long, default_value_t = 3000)]
    pub plugin_probation_ms: u64,
    /// Also run this many hollow nodes in-process (as `orchd sim nodes`:
    /// they heartbeat and report their pods Running without running them).
    #[arg(long, default_value_t = 0)]
    pub hollow_nodes: usize,
    /// Where compiled plugins are cached (default: $XDG_CACHE_HOME/orchd/
    /// plugins, or ~/.cache/orchd/plugins). Shared by every cluster on the
    /// machine: an artifact is keyed by the component's digest and only
    /// loads into the engine build that made it.
    #[arg(long, value_name = "DIR")]
    pub plugin_cache: Option<PathBuf>,
    /// This replica's identity in the leader election that decides which
    /// control-plane replica runs the plugins (default: host name, process
    /// id and a random suffix).
    #[arg(long, value_name = "NAME")]
    pub identity: Option<String>,
    /// Name of the Node the in-process node agent registers (default: the
    /// host name).
    #[arg(long, value_name = "NAME")]
    pub node_name: Option<String>,
    /// Run no node agent in this process (`orchd up` runs one, with the
    /// embedded wasm runtime; `orchd server` never does): pods then run
    /// only on nodes that join from elsewhere, or hollow nodes.
    #[arg(long)]
    pub no_node: bool,
    /// Add a container runtime to the node: `containerd` (real Linux
    /// containers through containerd and runc, at its default socket
    /// /run/containerd/containerd.sock) or `containerd=SOCKET`. Serves the
    /// RuntimeClass handler `runc`.
    #[arg(long, value_name = "containerd[=SOCKET]")]
    pub runtime: Option<String>,
    /// The handler of pods without a runtimeClassName: `wasm` (default)
    /// or `runc` (needs --runtime containerd).
    #[arg(long, value_name = "wasm|runc", default_value = "wasm")]
    pub default_runtime: String,
    /// The node's podCIDR (IPv4): containerd pods get their addresses from
    /// it, on a bridge of its own. Two nodes on one machine need different
    /// ones.
    #[arg(long, value_name = "CIDR", default_value = orchd_runtime_containerd::network::DEFAULT_POD_CIDR)]
    pub pod_cidr: String,
}

/// containerd's usual socket.
pub const CONTAINERD_SOCKET: &str = "/run/containerd/containerd.sock";

/// The containerd socket `--runtime` names, if any.
fn containerd_socket(runtime: Option<&str>) -> anyhow::Result<Option<PathBuf>> {
    match runtime {
        None => Ok(None),
        Some("containerd") => Ok(Some(PathBuf::from(CONTAINERD_SOCKET))),
        Some(r) => match r.strip_prefix("containerd=") {
            Some(socket) if !socket.is_empty() => Ok(Some(PathBuf::from(socket))),
            _ => anyhow::bail!("unknown runtime {r:?}: expected containerd or containerd=SOCKET"),
        },
    }
}

/// The per-user cache of compiled plugins, shared by clusters and the CLI:
/// compiling a component is the slow part of starting it (seconds for a
/// debug build of orchd), loading a cached artifact takes milliseconds.
pub fn default_plugin_cache(data_dir: &Path) -> PathBuf {
    let base = std::env::var_os("XDG_CACHE_HOME")
        .filter(|d| !d.is_empty())
        .map(PathBuf::from)
        .or_else(|| {
            std::env::var_os("HOME")
                .filter(|h| !h.is_empty())
                .map(|h| PathBuf::from(h).join(".cache"))
        });
    match base {
        Some(base) => base.join("orchd").join("plugins"),
        // No home: keep it with the cluster.
        None => data_dir.join("plugin-cache"),
    }
}

/// A plugin this binary ships and installs on first start.
struct DefaultPlugin {
    /// Plugin name.
    name: &'static str,
    world: orchd_plugin_host::World,
    /// The component, built from `plugins/` by build.rs (empty when the
    /// wasm32-wasip2 target was missing).
    bytes: &'static [u8],
    /// What it may read and write.
    read: &'static [&'static str],
    write: &'static [&'static str],
    /// Host interfaces it may call beyond objects (`runtime`).
    host_calls: &'static [&'static str],
}

static DEFAULT_PLUGINS: &[DefaultPlugin] = &[
    DefaultPlugin {
        name: "default-scheduler",
        world: orchd_plugin_host::World::Scheduler,
        bytes: include_bytes!(concat!(env!("OUT_DIR"), "/default-scheduler.wasm")),
        read: &[],
        write: &[],
        host_calls: &[],
    },
    DefaultPlugin {
        name: "serviceaccount",
        world: orchd_plugin_host::World::Controller,
        bytes: include_bytes!(concat!(env!("OUT_DIR"), "/serviceaccount-controller.wasm")),
        read: &["namespaces", "serviceaccounts"],
        write: &["serviceaccounts"],
        host_calls: &[],
    },
    DefaultPlugin {
        name: "replicaset",
        world: orchd_plugin_host::World::Controller,
        bytes: include_bytes!(concat!(env!("OUT_DIR"), "/replicaset-controller.wasm")),
        read: &["replicasets.apps", "pods"],
        write: &["replicasets.apps", "pods"],
        host_calls: &[],
    },
    DefaultPlugin {
        name: "deployment",
        world: orchd_plugin_host::World::Controller,
        bytes: include_bytes!(concat!(env!("OUT_DIR"), "/deployment-controller.wasm")),
        read: &["deployments.apps", "replicasets.apps"],
        write: &["deployments.apps", "replicasets.apps"],
        host_calls: &[],
    },
    DefaultPlugin {
        name: "garbage-collector",
        world: orchd_plugin_host::World::Controller,
        bytes: include_bytes!(concat!(env!("OUT_DIR"), "/garbage-collector.wasm")),
        // Every owner kind it can look up; it deletes and un-owns
        // dependents and lifts the finalizers of owners it has finished.
        read: &[
            "pods",
            "replicasets.apps",
            "deployments.apps",
            "statefulsets.apps",
            "daemonsets.apps",
            "jobs.batch",
            "cronjobs.batch",
        ],
        write: &[
            "pods",
            "replicasets.apps",
            "deployments.apps",
            "jobs.batch",
            "cronjobs.batch",
            "daemonsets.apps",
            "statefulsets.apps",
        ],
        host_calls: &[],
    },
    DefaultPlugin {
        name: "job",
        world: orchd_plugin_host::World::Controller,
        bytes: include_bytes!(concat!(env!("OUT_DIR"), "/job-controller.wasm")),
        read: &["jobs.batch", "pods"],
        write: &["jobs.batch", "pods"],
        host_calls: &[],
    },
    DefaultPlugin {
        name: "cronjob",
        world: orchd_plugin_host::World::Controller,
        bytes: include_bytes!(concat!(env!("OUT_DIR"), "/cronjob-controller.wasm")),
        read: &["cronjobs.batch", "jobs.batch"],
        write: &["cronjobs.batch", "jobs.batch"],
        host_calls: &[],
    },
    DefaultPlugin {
        name: "daemonset",
        world: orchd_plugin_host::World::Controller,
        bytes: include_bytes!(concat!(env!("OUT_DIR"), "/daemonset-controller.wasm")),
        read: &["daemonsets.apps", "pods", "nodes"],
        write: &["daemonsets.apps", "pods"],
        host_calls: &[],
    },
    DefaultPlugin {
        name: "statefulset",
        world: orchd_plugin_host::World::Controller,
        bytes: include_bytes!(concat!(env!("OUT_DIR"), "/statefulset-controller.wasm")),
        read: &["statefulsets.apps", "pods"],
        write: &["statefulsets.apps", "pods"],
        host_calls: &[],
    },
    DefaultPlugin {
        name: "node-lifecycle",
        world: orchd_plugin_host::World::Controller,
        bytes: include_bytes!(concat!(env!("OUT_DIR"), "/node-lifecycle-controller.wasm")),
        read: &["nodes", "leases.coordination.k8s.io", "pods"],
        write: &["nodes", "pods"],
        host_calls: &[],
    },
    DefaultPlugin {
        name: "namespace",
        world: orchd_plugin_host::World::Controller,
        bytes: include_bytes!(concat!(env!("OUT_DIR"), "/namespace-controller.wasm")),
        // It lists and deletes whatever is namespaced, and finalizes
        // namespaces, as Kubernetes' namespace controller may (*/*).
        read: &["*"],
        write: &["*"],
        host_calls: &[],
    },
    DefaultPlugin {
        name: "endpoints",
        world: orchd_plugin_host::World::Controller,
        bytes: include_bytes!(concat!(env!("OUT_DIR"), "/endpoints-controller.wasm")),
        read: &["services", "pods", "endpoints"],
        write: &["endpoints"],
        host_calls: &[],
    },
    // The node agent's lifecycle rules: pure decisions, no object access.
    DefaultPlugin {
        name: "kubelet",
        world: orchd_plugin_host::World::NodePolicy,
        bytes: include_bytes!(concat!(env!("OUT_DIR"), "/kubelet-node-policy.wasm")),
        read: &[],
        write: &[],
        host_calls: &["runtime"],
    },
];

/// Runs the cluster until a termination signal.
pub async fn up(args: UpArgs, single_host: bool) -> anyhow::Result<()> {
    let started = Instant::now();
    let what = if single_host {
        "single-host cluster"
    } else {
        "control plane"
    };
    let listen = parse_listen(&args.listen)?;
    std::fs::create_dir_all(&args.data_dir).with_context(|| {
        format!(
            "cannot create the data directory {}",
            args.data_dir.display()
        )
    })?;
    let data_dir = args
        .data_dir
        .canonicalize()
        .unwrap_or(args.data_dir.clone());
    out!("orchd: starting {what}");
    let store = open_store(&args, &data_dir).await?;
    let api = ApiServer::new(store.clone(), ApiConfig::default());
    api.bootstrap()
        .await
        .context("cannot create the system namespaces")?;
    let listener = bind(listen).with_context(|| {
        format!("cannot listen on {listen} (is another orchd running? use --listen)")
    })?;
    // The node agent's lifecycle decisions come from the node-policy
    // plugin the manager puts here (the default: `kubelet`).
    let node_policy =
        (single_host && !args.no_node).then(orchd_plugin_host::node_policy::NodePolicySlot::new);
    let plugins = start_plugins(
        &args,
        &data_dir,
        store.clone(),
        api.clone(),
        node_policy.clone(),
    )
    .await?;
    let addr = listener.local_addr()?;
    let server_url = format!("http://{addr}");
    let kubeconfig = data_dir.join("kubeconfig");
    write_kubeconfig(&kubeconfig, &server_url)?;
    out!("orchd: API serving on {server_url}");
    out!("orchd: kubeconfig written to {}", kubeconfig.display());
    out!(
        "orchd: ready in {} ms — try: KUBECONFIG={} kubectl get namespaces",
        started.elapsed().as_millis(),
        kubeconfig.display()
    );

    let node = match node_policy {
        Some(policy) => {
            Some(start_node(&args, &data_dir, store.clone(), api.clone(), policy).await?)
        }
        None => None,
    };

    let hollow = (args.hollow_nodes > 0).then(|| {
        let nodes = crate::sim::NodesArgs::new(args.hollow_nodes, server_url.clone());
        tokio::spawn(async move {
            crate::sim::start_nodes(nodes)
                .await
                .map_err(|e| eprintln!("orchd: hollow nodes: {e:#}"))
                .ok()
        })
    });

    api.serve(listener, shutdown_signal()).await;
    if let Some(task) = hollow
        && let Ok(Some(nodes)) = task.await
    {
        nodes.stop();
    }
    out!("orchd: shutting down");
    if let Some(node) = node {
        node.stop().await;
    }
    plugins.stop().await;
    drop(store);
    out!("orchd: stopped");
    Ok(())
}

/// Pending connections the kernel may queue before orchd accepts them
/// (capped by `net.core.somaxconn`). tokio's default, 1024, overflowed
/// when 1,000 clients connected at once while orchd was busy (compiling a
/// plugin): the kernel fell back to SYN cookies and some connections were
/// reset. Go's net.Listen, which Kubernetes' API server uses, asks for
/// somaxconn too.
const LISTEN_BACKLOG: u32 = 4096;

/// Binds the API's listening socket.
fn bind(listen: std::net::SocketAddr) -> std::io::Result<tokio::net::TcpListener> {
    let socket = if listen.is_ipv4() {
        tokio::net::TcpSocket::new_v4()?
    } else {
        tokio::net::TcpSocket::new_v6()?
    };
    // As std's TcpListener::bind does on Unix: a restarted orchd can take
    // its port back while old connections linger in TIME_WAIT.
    socket.set_reuseaddr(true)?;
    socket.bind(listen)?;
    socket.listen(LISTEN_BACKLOG)
}

/// The API's `pods/log` over the node agent's log files.
struct NodeLogs(orchd_node::logs::LogFiles);

impl orchd_api::PodLogs for NodeLogs {
    fn logs(
        &self,
        r: &orchd_api::LogRequest,
    ) -> Result<futures::stream::BoxStream<'static, bytes::Bytes>, String> {
        let query = orchd_node::logs::LogQuery {
            tail_lines: r.tail_lines,
            timestamps: r.timestamps,
            follow: r.follow,
            previous: r.previous,
        };
        self.0.read(&r.uid, &r.container, &query)
    }
}

/// The API's `pods/exec` over the node agent's running containers.
struct NodeExecs(orchd_node::NodeExec);

impl orchd_api::PodExec for NodeExecs {
    fn exec(
        &self,
        r: orchd_api::ExecRequest,
    ) -> futures::future::BoxFuture<'static, Result<orchd_api::ExecResponse, String>> {
        let node = self.0.clone();
        Box::pin(async move {
            let out = node
                .exec(&r.uid, &r.container, r.command, r.stdin, r.timeout)
                .await?;
            Ok(orchd_api::ExecResponse {
                code: out.code,
                stdout: out.stdout,
                stderr: out.stderr,
            })
        })
    }
}

/// Starts the in-process node agent and lets the API serve its logs.
async fn start_node(
    args: &UpArgs,
    data_dir: &Path,
    store: Arc<dyn Store>,
    api: Arc<ApiServer>,
    policy: Arc<orchd_plugin_host::node_policy::NodePolicySlot>,
) -> anyhow::Result<orchd_node::NodeAgent> {
    let name = args
        .node_name
        .clone()
        .unwrap_or_else(orchd_node::machine::hostname);
    let mut config = orchd_node::NodeConfig::new(name.clone(), data_dir.to_path_buf());
    config.containerd = containerd_socket(args.runtime.as_deref())?;
    config.default_handler = args.default_runtime.clone();
    config.policy = policy;
    orchd_runtime_containerd::network::parse_cidr(&args.pod_cidr)
        .map_err(|e| anyhow::anyhow!(e))?;
    config.pod_cidr = args.pod_cidr.clone();
    let images = config.images_dir();
    let objects: Arc<dyn orchd_plugin_host::access::ObjectApi> =
        Arc::new(crate::inprocess::InProcessApi(api.clone()));
    let mut handlers = vec![orchd_node::HANDLER_WASM];
    if config.containerd.is_some() {
        handlers.push(orchd_node::HANDLER_RUNC);
    }
    ensure_runtime_classes(objects.as_ref(), &handlers).await?;
    let node = orchd_node::NodeAgent::start(config, store, objects)
        .await
        .map_err(|e| anyhow::anyhow!("cannot start the node agent: {e}"))?;
    api.set_pod_logs(Arc::new(NodeLogs(node.logs())));
    api.set_pod_exec(Arc::new(NodeExecs(node.execs())));
    out!(
        "orchd: node {name} registered (runtimes: {}, default {}; wasm images: file:///PATH.wasm or NAME from {}/NAME.wasm)",
        handlers.join(", "),
        args.default_runtime,
        images.display()
    );
    Ok(node)
}

/// Creates a RuntimeClass per handler (named after it) unless one exists.
async fn ensure_runtime_classes(
    api: &dyn orchd_plugin_host::access::ObjectApi,
    handlers: &[&str],
) -> anyhow::Result<()> {
    for handler in handlers {
        let class = serde_json::json!({
            "apiVersion": "node.k8s.io/v1", "kind": "RuntimeClass",
            "metadata": {"name": handler}, "handler": handler,
        });
        let (code, body) = api
            .send(
                "POST",
                "/apis/node.k8s.io/v1/runtimeclasses",
                Some("application/json"),
                serde_json::to_vec(&class)?,
            )
            .await;
        anyhow::ensure!(
            (200..300).contains(&code) || code == 409,
            "cannot create the RuntimeClass {handler}: {code} {}",
            body["message"]
        );
    }
    Ok(())
}

/// Opens the store `--store` names, saying which.
async fn open_store(args: &UpArgs, data_dir: &Path) -> anyhow::Result<Arc<dyn Store>> {
    if args.store.starts_with("etcd://") {
        let mut config = EtcdStoreConfig::from_url(&args.store)?;
        if let Some(limit) = args.history_limit {
            config.history_limit = limit as u64;
        }
        if let Some(ms) = args.compaction_interval_ms {
            config.compaction_interval = std::time::Duration::from_millis(ms);
        }
        out!(
            "orchd: opening store etcd at {} (key prefix {})",
            config.endpoint,
            config.prefix
        );
        let endpoint = config.endpoint.clone();
        let store = EtcdStore::connect(config)
            .await
            .with_context(|| format!("cannot reach etcd at {endpoint}"))?;
        return Ok(store);
    }
    anyhow::ensure!(
        args.store == "redb",
        "unknown store {:?}: expected redb or etcd://HOST:PORT[/PREFIX]",
        args.store
    );
    let store_path = data_dir.join("store.redb");
    out!("orchd: opening store redb at {}", store_path.display());
    let mut config = RedbStoreConfig::new(store_path.clone());
    if let Some(limit) = args.history_limit {
        config.history_limit = limit;
    }
    if let Some(ms) = args.compaction_interval_ms {
        config.compaction_interval = std::time::Duration::from_millis(ms);
    }
    let store = RedbStore::open(config)
        .with_context(|| format!("cannot open the store at {}", store_path.display()))?;
    Ok(store)
}

/// Starts the plugin manager, first installing the default plugins this
/// binary ships unless told not to or already installed.
async fn start_plugins(
    args: &UpArgs,
    data_dir: &Path,
    store: Arc<dyn Store>,
    api: std::sync::Arc<ApiServer>,
    node_policy: Option<Arc<orchd_plugin_host::node_policy::NodePolicySlot>>,
) -> anyhow::Result<PluginRunner> {
    use orchd_plugin_host::leader::{self, ElectionConfig};
    use orchd_plugin_host::manager::{self, Ensured, ManagerConfig, PluginSet};
    use orchd_plugin_host::{PluginEngine, sandbox};
    if args.no_default_plugins {
        out!("orchd: default plugins not installed (--no-default-plugins)");
    } else if DEFAULT_PLUGINS.iter().any(|p| p.bytes.is_empty()) {
        out!(
            "orchd: warning: this orchd was built without its default plugins (the wasm32-wasip2 target was missing: `rustup target add wasm32-wasip2`, then rebuild); pods stay Pending until you `orchd plugin install` a scheduler"
        );
    } else {
        // The default node policy only where a node agent runs to use it
        // (a process with a node installs it itself on a shared store).
        let wanted = DEFAULT_PLUGINS
            .iter()
            .filter(|p| p.world != orchd_plugin_host::World::NodePolicy || node_policy.is_some());
        for p in wanted {
            let capabilities = (!p.read.is_empty()
                || !p.write.is_empty()
                || !p.host_calls.is_empty())
            .then(|| orchd_resources::orchd_v1::PluginCapabilities {
                read: p.read.iter().map(|r| r.to_string()).collect(),
                write: p.write.iter().map(|r| r.to_string()).collect(),
                host_calls: p.host_calls.iter().map(|r| r.to_string()).collect(),
            });
            let ensured = manager::ensure_plugin(
                store.as_ref(),
                p.name,
                p.world,
                p.bytes,
                "built into orchd",
                capabilities,
            )
            .await
            .with_context(|| format!("cannot install the default plugin {}", p.name))?;
            if ensured == Ensured::Created {
                out!(
                    "orchd: installed plugin {} ({}, sha256:{}…, {} KB, built into orchd)",
                    p.name,
                    p.world,
                    &orchd_plugin_host::engine::sha256_hex(p.bytes)[..12],
                    p.bytes.len() / 1024
                );
            }
        }
    }
    if !args.no_default_plugins {
        configure_namespace_sweep(store.as_ref()).await?;
    }
    let cache_dir = args
        .plugin_cache
        .clone()
        .unwrap_or_else(|| default_plugin_cache(data_dir));
    out!(
        "orchd: plugin host: compiled plugins cached in {}",
        cache_dir.display()
    );
    let engine = PluginEngine::new(Some(cache_dir))
        .map_err(|e| anyhow::anyhow!("cannot start the plugin host: {e}"))?;
    // The API reviews writes with the admission plugins the manager puts
    // into this chain.
    let chain = orchd_plugin_host::admission::AdmissionChain::new(store.clone());
    api.set_admission(chain.clone());
    let config = ManagerConfig {
        probation: std::time::Duration::from_millis(args.plugin_probation_ms),
        admission: Some(chain),
        plugins: PluginSet::All,
        node_policy,
    };
    let api: std::sync::Arc<dyn orchd_plugin_host::access::ObjectApi> =
        std::sync::Arc::new(crate::inprocess::InProcessApi(api));
    let shared = args.store.starts_with("etcd://");
    let store_for_election = store.clone();
    let start = move |config: ManagerConfig| {
        manager::start(
            store.clone(),
            Some(api.clone()),
            engine.clone(),
            sandbox::stderr_sink(),
            config,
        )
    };
    if !shared {
        return Ok(PluginRunner::Alone(start(config)));
    }
    // On a shared store every replica's API enforces the admission
    // plugins, so every replica loads them, unelected; schedulers and
    // controllers run in one replica at a time: the one holding the lease.
    let admission = start(ManagerConfig {
        plugins: PluginSet::Admission,
        ..config.clone()
    });
    let elected = ManagerConfig {
        plugins: PluginSet::Elected,
        admission: None,
        node_policy: None,
        ..config
    };
    let election = ElectionConfig::new(
        args.identity
            .clone()
            .unwrap_or_else(leader::default_identity),
    );
    let notify: leader::Notify = std::sync::Arc::new(|m: &str| out!("orchd: leader election: {m}"));
    let elector = leader::start(store_for_election, election, notify, move || {
        Box::new(start(elected.clone()))
    });
    Ok(PluginRunner::Elected { admission, elector })
}

/// What runs the plugins. On the embedded store, which only this process
/// can open, the manager itself: there is no other replica to elect
/// against (and no lease to renew every 2 s). On etcd, a manager of the
/// admission plugins in every replica, and an elector that runs the
/// manager of the others while this replica holds the lease.
enum PluginRunner {
    Alone(orchd_plugin_host::manager::ManagerHandle),
    Elected {
        admission: orchd_plugin_host::manager::ManagerHandle,
        elector: orchd_plugin_host::leader::ElectorHandle,
    },
}

impl PluginRunner {
    async fn stop(self) {
        match self {
            PluginRunner::Alone(manager) => manager.stop().await,
            PluginRunner::Elected { admission, elector } => {
                elector.stop().await;
                admission.stop().await;
            }
        }
    }
}

/// Tells the namespace controller which resources to sweep: every
/// namespaced resource this orchd serves, written into its Plugin's
/// `spec.config` unless one is set already (so a user's list stands, and
/// clearing it makes the next start write the current one).
async fn configure_namespace_sweep(store: &dyn orchd_store::Store) -> anyhow::Result<()> {
    let key = orchd_store::ObjectKey::cluster("plugins.orchd.dev", "namespace");
    let mut plugin = match store.get(&key).await {
        Ok(p) => p,
        Err(orchd_store::StoreError::NotFound { .. }) => return Ok(()),
        Err(e) => return Err(e).context("cannot read the namespace plugin"),
    };
    if plugin["spec"]["config"]
        .as_str()
        .is_some_and(|c| !c.is_empty())
    {
        return Ok(());
    }
    let resources: Vec<String> = orchd_resources::resources()
        .iter()
        .filter(|r| r.namespaced && !r.create_only)
        .map(|r| r.group_resource())
        .collect();
    plugin["spec"]["config"] =
        serde_json::Value::String(serde_json::json!({ "resources": resources }).to_string());
    match store.update(&key, plugin).await {
        // Someone configured it meanwhile: theirs stands.
        Ok(_) | Err(orchd_store::StoreError::Conflict { .. }) => Ok(()),
        Err(e) => Err(e).context("cannot configure the namespace plugin"),
    }
}

/// Resolves on SIGINT or SIGTERM.
pub(crate) async fn shutdown_signal() {
    use tokio::signal::unix::{SignalKind, signal};
    let mut term = match signal(SignalKind::terminate()) {
        Ok(s) => s,
        Err(_) => {
            let _ = tokio::signal::ctrl_c().await;
            return;
        }
    };
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {}
        _ = term.recv() => {}
    }
}

/// Writes a kubeconfig kubectl can use as is.
fn write_kubeconfig(path: &Path, server: &str) -> anyhow::Result<()> {
    let text = format!(
        "apiVersion: v1\nkind: Config\nclusters:\n- name: orchd\n  cluster:\n    server: {server}\ncontexts:\n- name: orchd\n  context:\n    cluster: orchd\n    user: orchd\n    namespace: default\ncurrent-context: orchd\nusers:\n- name: orchd\n  user: {{}}\npreferences: {{}}\n"
    );
    std::fs::write(path, text).with_context(|| format!("cannot write {}", path.display()))
}

/// The server URL recorded in a kubeconfig written by [`write_kubeconfig`].
pub fn server_from_kubeconfig(path: &Path) -> Option<String> {
    let text = std::fs::read_to_string(path).ok()?;
    text.lines().find_map(|l| {
        l.trim()
            .strip_prefix("server: ")
            .map(|s| s.trim().to_string())
    })
}
