//! `orchd`: a Kubernetes-compatible orchestrator whose policies are
//! WebAssembly plugins.
//!
//! `orchd up` starts a single-host cluster; `orchd server` runs the control
//! plane alone; `orchd get|apply|delete` is a small client for use without
//! kubectl.

/// Prints a line to stdout, ignoring a closed or full stdout: `orchd up`
/// must keep serving when whatever read its output has gone away, where
/// `println!` would panic on the broken pipe.
macro_rules! out {
    ($($arg:tt)*) => {{
        use std::io::Write as _;
        let _ = writeln!(std::io::stdout(), $($arg)*);
    }};
}

/// [`out!`] without the newline.
macro_rules! out_part {
    ($($arg:tt)*) => {{
        use std::io::Write as _;
        let _ = write!(std::io::stdout(), $($arg)*);
    }};
}

mod client;
mod cluster;
mod commands;
mod image;
mod inprocess;
mod plugin;
mod sim;
mod template;

use std::net::SocketAddr;
use std::path::PathBuf;

use clap::{Parser, Subcommand};

/// Command-line interface.
#[derive(Parser)]
#[command(
    name = "orchd",
    version,
    about = "A Kubernetes-compatible orchestrator built as a WebAssembly-plugin microkernel"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Start a single-host cluster (store, API) and write a kubeconfig.
    Up(cluster::UpArgs),
    /// Run the control plane only (store and API), for multi-host set-ups.
    Server(cluster::UpArgs),
    /// Show objects: `orchd get pods`, `orchd get deploy web -o yaml`.
    Get(commands::GetArgs),
    /// Create or update the objects in a YAML or JSON file (server-side apply).
    Apply(commands::ApplyArgs),
    /// Delete objects by type and name, or those in a file.
    Delete(commands::DeleteArgs),
    /// Install, list, roll back and remove plugins.
    Plugin(plugin::PluginArgs),
    /// Simulations for tests and benchmarks: `orchd sim nodes --count 100`.
    Sim(sim::SimArgs),
    /// Container images in containerd: `orchd image import FILE.tar`.
    Image(image::ImageArgs),
}

/// Where the client commands find the API server.
#[derive(clap::Args, Clone)]
pub struct ServerArgs {
    /// API server URL; defaults to the one in DATA_DIR/kubeconfig.
    #[arg(long, global = true)]
    pub server: Option<String>,
    /// Data directory of the cluster (for its kubeconfig).
    #[arg(long, global = true, default_value = ".orchd")]
    pub data_dir: PathBuf,
}

/// Default listen address of the API.
pub const DEFAULT_LISTEN: &str = "127.0.0.1:6443";

/// mimalloc: allocation-heavy paths (JSON objects, watch events) spend far
/// less in the allocator than with glibc's (see `cargo xtask bench`).
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() {
    let cli = Cli::parse();
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("orchd: cannot start the async runtime: {e}");
            std::process::exit(1);
        }
    };
    let result = runtime.block_on(async {
        match cli.command {
            Command::Up(args) => cluster::up(args, true).await,
            Command::Server(args) => cluster::up(args, false).await,
            Command::Get(args) => commands::get(args).await,
            Command::Apply(args) => commands::apply(args).await,
            Command::Delete(args) => commands::delete(args).await,
            Command::Plugin(args) => plugin::run(args).await,
            Command::Sim(args) => sim::run(args).await,
            Command::Image(args) => image::run(args).await,
        }
    });
    // Blocking work still running (a plugin compiling) must not hold the
    // exit: everything durable is already written.
    runtime.shutdown_timeout(std::time::Duration::from_secs(1));
    if let Err(e) = result {
        eprintln!("orchd: {e:#}");
        std::process::exit(1);
    }
}

/// Parses a listen address.
pub fn parse_listen(s: &str) -> anyhow::Result<SocketAddr> {
    s.parse()
        .map_err(|_| anyhow::anyhow!("--listen must be IP:PORT, e.g. {DEFAULT_LISTEN}, not {s:?}"))
}
