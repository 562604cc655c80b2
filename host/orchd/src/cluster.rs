//! Starting and stopping a cluster: the store, the API server, the
//! kubeconfig, and clean shutdown on SIGINT/SIGTERM.

use std::path::{Path, PathBuf};
use std::time::Instant;

use anyhow::Context;
use orchd_api::{ApiConfig, ApiServer};
use orchd_store::{RedbStore, RedbStoreConfig};

use crate::{DEFAULT_LISTEN, parse_listen};

/// Options of `orchd up` and `orchd server`.
#[derive(clap::Args)]
pub struct UpArgs {
    /// Directory for the store file and the kubeconfig.
    #[arg(long, default_value = ".orchd")]
    pub data_dir: PathBuf,
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
}

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
    let store_path = data_dir.join("store.redb");
    println!("orchd: starting {what}");
    println!("orchd: opening store {}", store_path.display());
    let mut config = RedbStoreConfig::new(store_path.clone());
    if let Some(limit) = args.history_limit {
        config.history_limit = limit;
    }
    if let Some(ms) = args.compaction_interval_ms {
        config.compaction_interval = std::time::Duration::from_millis(ms);
    }
    let store = RedbStore::open(config)
        .with_context(|| format!("cannot open the store at {}", store_path.display()))?;
    let api = ApiServer::new(store.clone(), ApiConfig::default());
    api.bootstrap()
        .await
        .context("cannot create the system namespaces")?;
    let listener = tokio::net::TcpListener::bind(listen)
        .await
        .with_context(|| {
            format!("cannot listen on {listen} (is another orchd running? use --listen)")
        })?;
    let addr = listener.local_addr()?;
    let server_url = format!("http://{addr}");
    let kubeconfig = data_dir.join("kubeconfig");
    write_kubeconfig(&kubeconfig, &server_url)?;
    println!("orchd: API serving on {server_url}");
    println!("orchd: kubeconfig written to {}", kubeconfig.display());
    println!(
        "orchd: ready in {} ms — try: KUBECONFIG={} kubectl get namespaces",
        started.elapsed().as_millis(),
        kubeconfig.display()
    );

    api.serve(listener, shutdown_signal()).await;
    println!("orchd: shutting down");
    drop(store);
    println!("orchd: stopped");
    Ok(())
}

async fn shutdown_signal() {
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
