//! `orchd plugin install|list|rollback|remove` (and `new`, in `template`): managing policy plugins
//! through their `orchd.dev/v1` Plugin objects.
//!
//! The commands only write objects, as kubectl would; the plugin host in
//! the cluster loads, swaps and rolls back, and reports in the Plugin's
//! status, which the commands wait for and print. `install` checks the
//! component here first (a valid component of a known world) so a bad file
//! is refused before anything is uploaded.

use std::path::PathBuf;
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use hyper::Method;
use orchd_plugin_host::{Limits, PluginEngine, SchedulerPlugin, World, sandbox};
use orchd_resources::orchd_v1::{self, Plugin};

use crate::ServerArgs;
use crate::client::Client;

const PLUGINS: &str = "/apis/orchd.dev/v1/plugins";
const COMPONENTS: &str = "/apis/orchd.dev/v1/plugincomponents";
const JSON: &str = "application/json";

/// `orchd plugin ...`.
#[derive(clap::Args)]
pub struct PluginArgs {
    #[command(subcommand)]
    command: PluginCommand,
}

#[derive(clap::Subcommand)]
enum PluginCommand {
    /// Install a component as a new revision of a plugin (creating the
    /// plugin if needed) and wait until it runs, or is refused.
    Install(Box<InstallArgs>),
    /// List plugins with their active revision and health.
    List(ListArgs),
    /// Run an earlier revision again (by default the one before the
    /// active revision).
    Rollback(RollbackArgs),
    /// Stop a plugin and delete it with its revisions.
    Remove(RemoveArgs),
    /// Write a new plugin project (Rust, Python or JavaScript; world
    /// scheduler, controller or admission) with a build script and README.
    New(crate::template::NewArgs),
}

#[derive(clap::Args)]
struct InstallArgs {
    /// A WebAssembly component (`.wasm`) of world scheduler, controller, node-policy or
    /// admission.
    file: PathBuf,
    /// Plugin name. Default: for a scheduler, the schedulerName it serves
    /// (so a component serving `default-scheduler` replaces the default);
    /// otherwise the file name without `.wasm`.
    #[arg(long)]
    name: Option<String>,
    /// Memory cap per instance, in MiB.
    #[arg(long)]
    memory_mib: Option<u32>,
    /// Deadline of one call into the plugin, in milliseconds.
    #[arg(long)]
    call_timeout_ms: Option<u32>,
    /// Resources the plugin may read (get, list, watch), comma-separated
    /// store names: `pods,deployments.apps`, or `*`.
    #[arg(long, value_delimiter = ',')]
    read: Option<Vec<String>>,
    /// Resources the plugin may write (create, update, patch, delete).
    #[arg(long, value_delimiter = ',')]
    write: Option<Vec<String>>,
    /// Host interfaces the plugin may call, comma-separated (node
    /// policies): `runtime` (the node's pods and what they use), `cgroups`,
    /// `network`.
    #[arg(long, value_delimiter = ',')]
    host_calls: Option<Vec<String>>,
    /// Configuration text handed to the plugin when it starts.
    #[arg(long)]
    config: Option<String>,
    #[command(flatten)]
    admission: AdmissionArgs,
    #[command(flatten)]
    wait: WaitArgs,
    #[command(flatten)]
    server: ServerArgs,
}

/// `spec.admission` of an admission plugin (any flag given replaces the
/// whole `spec.admission`; finer settings such as selectors: kubectl edit).
#[derive(clap::Args)]
struct AdmissionArgs {
    /// Admission: `Mutating` or `Validating` (default).
    #[arg(long = "type")]
    admission_type: Option<String>,
    /// Admission: `Fail` (default: refuse the request when the plugin
    /// fails) or `Ignore` (let it through).
    #[arg(long)]
    failure_policy: Option<String>,
    /// Admission: deadline of one review, 1-30 s (default 1).
    #[arg(long)]
    timeout_seconds: Option<i32>,
    /// Admission: position in the chain (lower first, then by name).
    #[arg(long, allow_negative_numbers = true)]
    order: Option<i32>,
    /// Admission: resources reviewed, as store names (`pods`,
    /// `deployments.apps`, `pods/status`, `*`), comma-separated.
    #[arg(long, value_delimiter = ',')]
    resources: Option<Vec<String>>,
    /// Admission: operations reviewed, comma-separated (default
    /// `CREATE,UPDATE`).
    #[arg(long, value_delimiter = ',')]
    operations: Option<Vec<String>>,
}

impl AdmissionArgs {
    /// The `spec.admission` the flags describe, if any was given.
    fn spec(&self) -> Option<orchd_v1::AdmissionSpec> {
        let any = self.admission_type.is_some()
            || self.failure_policy.is_some()
            || self.timeout_seconds.is_some()
            || self.order.is_some()
            || self.resources.is_some()
            || self.operations.is_some();
        if !any {
            return None;
        }
        let operations = self
            .operations
            .clone()
            .unwrap_or_else(|| vec!["CREATE".into(), "UPDATE".into()]);
        // One rule per API group: `deployments.apps` → group apps.
        let mut rules: Vec<orchd_v1::AdmissionRule> = Vec::new();
        for r in self.resources.clone().unwrap_or_default() {
            let (resource, sub) = match r.split_once('/') {
                Some((res, sub)) => (res.to_string(), Some(sub.to_string())),
                None => (r.clone(), None),
            };
            let (plural, group) = match resource.split_once('.') {
                Some((p, g)) => (p.to_string(), g.to_string()),
                None if resource == "*" => ("*".to_string(), "*".to_string()),
                None => (resource.clone(), String::new()),
            };
            let plural = match sub {
                Some(sub) => format!("{plural}/{sub}"),
                None => plural,
            };
            match rules
                .iter_mut()
                .find(|rule| rule.api_groups == [group.clone()])
            {
                Some(rule) => rule.resources.push(plural),
                None => rules.push(orchd_v1::AdmissionRule {
                    operations: operations.clone(),
                    api_groups: vec![group],
                    resources: vec![plural],
                }),
            }
        }
        if rules.is_empty() && self.operations.is_some() {
            rules.push(orchd_v1::AdmissionRule {
                operations,
                api_groups: vec!["*".into()],
                resources: vec!["*".into()],
            });
        }
        Some(orchd_v1::AdmissionSpec {
            r#type: self.admission_type.clone(),
            order: self.order,
            failure_policy: self.failure_policy.clone(),
            timeout_seconds: self.timeout_seconds,
            rules,
            namespace_selector: None,
            object_selector: None,
        })
    }
}

/// Whether and how long to wait for the plugin host to act.
#[derive(clap::Args)]
struct WaitArgs {
    /// Return once the change is recorded, without waiting for it to run.
    #[arg(long)]
    no_wait: bool,
    /// How long to wait for the plugin host, in seconds.
    #[arg(long, default_value_t = 60)]
    timeout: u64,
}

#[derive(clap::Args)]
struct ListArgs {
    #[command(flatten)]
    server: ServerArgs,
}

#[derive(clap::Args)]
struct RollbackArgs {
    /// Plugin name.
    name: String,
    /// The revision to run.
    #[arg(long)]
    to: Option<i64>,
    #[command(flatten)]
    wait: WaitArgs,
    #[command(flatten)]
    server: ServerArgs,
}

#[derive(clap::Args)]
struct RemoveArgs {
    /// Plugin name.
    name: String,
    #[command(flatten)]
    server: ServerArgs,
}

/// Runs `orchd plugin ...`.
pub async fn run(args: PluginArgs) -> anyhow::Result<()> {
    match args.command {
        PluginCommand::Install(a) => install(*a).await,
        PluginCommand::List(a) => list(a).await,
        PluginCommand::Rollback(a) => rollback(a).await,
        PluginCommand::Remove(a) => remove(a).await,
        PluginCommand::New(a) => crate::template::new(a),
    }
}

/// What the local check learned about a component.
struct Checked {
    world: World,
    digest: String,
    scheduler_name: Option<String>,
}

/// Compiles the component here (through the machine's artifact cache, so
/// a cluster on this machine then loads it at once) and tells its world.
fn check(bytes: Vec<u8>, cache: Option<PathBuf>, name: &str) -> anyhow::Result<Checked> {
    let engine = PluginEngine::new(cache).map_err(|e| anyhow::anyhow!("{e}"))?;
    let compiled = engine.compile(&bytes).map_err(|e| anyhow::anyhow!("{e}"))?;
    let scheduler_name = match compiled.world {
        World::Scheduler => {
            // The check's own failures are reported as its result; the
            // plugin's log lines would only repeat them.
            let log: sandbox::LogSink = std::sync::Arc::new(|_, _, _| {});
            let plugin = SchedulerPlugin::load(&engine, &compiled, name, Limits::default(), log)
                .map_err(|e| anyhow::anyhow!("{e}"))?;
            Some(plugin.scheduler_name().to_string())
        }
        _ => None,
    };
    Ok(Checked {
        world: compiled.world,
        digest: compiled.digest,
        scheduler_name,
    })
}

async fn install(args: InstallArgs) -> anyhow::Result<()> {
    let path = &args.file;
    let bytes = std::fs::read(path).with_context(|| format!("cannot read {}", path.display()))?;
    out!(
        "orchd: checking {} ({} KB)",
        path.display(),
        bytes.len().div_ceil(1024)
    );
    let cache = Some(crate::cluster::default_plugin_cache(&args.server.data_dir));
    let label = path.display().to_string();
    let checked = {
        let bytes = bytes.clone();
        tokio::task::spawn_blocking(move || check(bytes, cache, &label))
            .await
            .context("the component check stopped")?
            .with_context(|| format!("{} is not a plugin orchd can run", path.display()))?
    };
    let name = match (&args.name, &checked.scheduler_name) {
        (Some(n), _) => n.clone(),
        (None, Some(s)) => s.clone(),
        (None, None) => default_name(path),
    };
    match &checked.scheduler_name {
        Some(s) => out!(
            "orchd: {} is a scheduler serving schedulerName {s:?}, {}",
            path.display(),
            checked.digest
        ),
        None => out!(
            "orchd: {} is a {} plugin, {}",
            path.display(),
            checked.world,
            checked.digest
        ),
    }
    let client = crate::commands::client(&args.server)?;
    upload(&client, &checked.digest, &bytes).await?;

    let source = path
        .file_name()
        .map(|f| f.to_string_lossy().into_owned())
        .unwrap_or_default();
    let limits = match (args.memory_mib, args.call_timeout_ms) {
        (None, None) => None,
        (memory_mib, call_timeout_ms) => Some(orchd_v1::PluginLimits {
            memory_mib,
            call_timeout_ms,
        }),
    };
    let capabilities = match (args.read, args.write, args.host_calls) {
        (None, None, None) => None,
        (read, write, host_calls) => Some(orchd_v1::PluginCapabilities {
            read: read.unwrap_or_default(),
            write: write.unwrap_or_default(),
            host_calls: host_calls.unwrap_or_default(),
        }),
    };
    let settings = Settings {
        limits,
        capabilities,
        config: args.config,
        admission: args.admission.spec(),
    };
    if checked.world == World::Admission
        && settings
            .admission
            .as_ref()
            .is_none_or(|a| a.rules.is_empty())
    {
        out!(
            "orchd: note: no --resources or --operations given: unless the Plugin's spec.admission.rules name some writes, the plugin reviews none"
        );
    }
    let (revision, generation) = add_revision(&client, &name, &checked, &source, &settings).await?;
    if args.wait.no_wait {
        return Ok(());
    }
    wait(
        &client,
        &name,
        revision,
        generation,
        Duration::from_secs(args.wait.timeout),
    )
    .await
}

/// `my_policy.wasm` → `my-policy`.
fn default_name(path: &std::path::Path) -> String {
    let stem = path
        .file_stem()
        .map(|s| s.to_string_lossy().to_ascii_lowercase())
        .unwrap_or_default();
    let name: String = stem
        .chars()
        .map(|c| if c.is_ascii_alphanumeric() { c } else { '-' })
        .collect();
    let name = name.trim_matches('-').to_string();
    if name.is_empty() {
        "plugin".into()
    } else {
        name
    }
}

/// Stores the component's bytes (once per digest): a large one as chunks,
/// then the head naming them (see `orchd_v1::component_objects`), so it
/// fits etcd's request limit and a head never lacks its chunks.
async fn upload(client: &Client, digest: &str, bytes: &[u8]) -> anyhow::Result<()> {
    let name = orchd_v1::component_name(digest);
    let path = format!("{COMPONENTS}/{name}");
    if client
        .send(Method::GET, &path, None, Vec::new())
        .await?
        .code
        == 200
    {
        out!("orchd: component {name} is already stored");
        return Ok(());
    }
    let (chunks, head) = orchd_v1::component_objects(bytes);
    let count = chunks.len();
    for chunk in chunks {
        let answer = client
            .send_json(Method::POST, COMPONENTS, JSON, &chunk)
            .await?;
        // 409: left by an upload that stopped halfway; the plugin host
        // checks every chunk's bytes when it loads the component.
        if answer.code != 409 {
            answer.ok().with_context(|| {
                format!(
                    "cannot upload {}",
                    chunk["metadata"]["name"].as_str().unwrap_or_default()
                )
            })?;
        }
    }
    let answer = client
        .send_json(Method::POST, COMPONENTS, JSON, &head)
        .await?;
    match answer.code {
        201 | 200 if count > 0 => out!(
            "orchd: uploaded component {name} ({} bytes in {count} chunks)",
            bytes.len()
        ),
        201 | 200 => out!("orchd: uploaded component {name}"),
        409 => out!("orchd: component {name} is already stored"),
        _ => {
            answer.ok().context("cannot upload the component")?;
        }
    }
    Ok(())
}

/// What `install` sets on the Plugin besides the revision; `None` keeps
/// what an existing Plugin has.
struct Settings {
    limits: Option<orchd_v1::PluginLimits>,
    capabilities: Option<orchd_v1::PluginCapabilities>,
    config: Option<String>,
    admission: Option<orchd_v1::AdmissionSpec>,
}

impl Settings {
    fn is_empty(&self) -> bool {
        self.limits.is_none()
            && self.capabilities.is_none()
            && self.config.is_none()
            && self.admission.is_none()
    }
}

/// Appends a revision with `checked`'s digest and makes it the wanted
/// one (creating the Plugin on first install). Returns the revision and
/// the Plugin's generation after the write.
async fn add_revision(
    client: &Client,
    name: &str,
    checked: &Checked,
    source: &str,
    settings: &Settings,
) -> anyhow::Result<(i64, i64)> {
    let path = format!("{PLUGINS}/{name}");
    for _ in 0..10 {
        let answer = client.send(Method::GET, &path, None, Vec::new()).await?;
        let revision_entry = |revision: i64| orchd_v1::PluginRevision {
            revision,
            digest: checked.digest.clone(),
            source: Some(source.to_string()),
            installed_at: Some(
                jiff::Timestamp::now()
                    .strftime("%Y-%m-%dT%H:%M:%SZ")
                    .to_string(),
            ),
        };
        if answer.code == 404 {
            let plugin = Plugin {
                api_version: "orchd.dev/v1".into(),
                kind: "Plugin".into(),
                metadata: orchd_v1_meta(name),
                spec: orchd_v1::PluginSpec {
                    world: checked.world.name().into(),
                    revision: 1,
                    revisions: vec![revision_entry(1)],
                    limits: settings.limits.clone(),
                    capabilities: settings.capabilities.clone(),
                    config: settings.config.clone(),
                    admission: settings.admission.clone(),
                },
                status: None,
            };
            let answer = client
                .send_json(Method::POST, PLUGINS, JSON, &serde_json::to_value(&plugin)?)
                .await?;
            if answer.code == 409 {
                continue;
            }
            let created = answer.ok().context("cannot create the plugin")?;
            out!("orchd: plugin {name} created with revision 1");
            return Ok((1, created["metadata"]["generation"].as_i64().unwrap_or(1)));
        }
        let object = answer.ok().context("cannot read the plugin")?;
        let mut plugin: Plugin = serde_json::from_value(object)
            .with_context(|| format!("the cluster's Plugin {name} is not readable"))?;
        if plugin.spec.world != checked.world.name() {
            bail!(
                "plugin {name} is a {} plugin; this component is a {} plugin (choose another --name)",
                plugin.spec.world,
                checked.world
            );
        }
        let status = plugin.status.clone().unwrap_or_default();
        let active = plugin
            .spec
            .revisions
            .iter()
            .find(|r| Some(r.revision) == status.active_revision);
        if let Some(active) = active
            && active.digest == checked.digest
            && plugin.spec.revision == active.revision
            && settings.is_empty()
        {
            out!(
                "orchd: plugin {name} already runs this component (revision {})",
                active.revision
            );
            return Ok((active.revision, plugin.metadata.generation.unwrap_or(0)));
        }
        let next = plugin
            .spec
            .revisions
            .iter()
            .map(|r| r.revision)
            .max()
            .unwrap_or(0)
            + 1;
        plugin.spec.revisions.push(revision_entry(next));
        plugin.spec.revision = next;
        if settings.limits.is_some() {
            plugin.spec.limits = settings.limits.clone();
        }
        if settings.capabilities.is_some() {
            plugin.spec.capabilities = settings.capabilities.clone();
        }
        if settings.config.is_some() {
            plugin.spec.config = settings.config.clone();
        }
        if settings.admission.is_some() {
            plugin.spec.admission = settings.admission.clone();
        }
        let answer = client
            .send_json(Method::PUT, &path, JSON, &serde_json::to_value(&plugin)?)
            .await?;
        if answer.code == 409 {
            continue;
        }
        let updated = answer.ok().context("cannot update the plugin")?;
        let from = status
            .active_revision
            .map(|r| format!(" (revision {r} runs now)"))
            .unwrap_or_default();
        out!("orchd: plugin {name}: revision {next} requested{from}");
        return Ok((
            next,
            updated["metadata"]["generation"].as_i64().unwrap_or(0),
        ));
    }
    bail!("plugin {name} keeps changing under us; try again")
}

fn orchd_v1_meta(name: &str) -> orchd_v1::ObjectMeta {
    orchd_v1::ObjectMeta {
        name: Some(name.to_string()),
        ..Default::default()
    }
}

/// Waits until the plugin host has acted on `generation`: `revision` runs
/// (and passed its probation) or was refused.
async fn wait(
    client: &Client,
    name: &str,
    revision: i64,
    generation: i64,
    timeout: Duration,
) -> anyhow::Result<()> {
    let started = Instant::now();
    let mut said_probation = false;
    loop {
        let plugin = get_plugin(client, name).await?;
        let status = plugin.status.unwrap_or_default();
        let seen = status.observed_generation.unwrap_or(0) >= generation;
        let elapsed = started.elapsed().as_millis();
        if seen && status.failed_revisions.contains(&revision) {
            let error = status.last_error.unwrap_or_default();
            match status.active_revision {
                Some(active) => bail!(
                    "plugin {name}: revision {revision} was refused, revision {active} keeps running: {error}"
                ),
                None => bail!("plugin {name}: revision {revision} was refused: {error}"),
            }
        }
        if seen && status.active_revision == Some(revision) {
            match status.phase.as_str() {
                "Active" => {
                    let swap = status
                        .swap_millis
                        .map(|ms| format!(", first decision {ms} ms after the plugin host saw it"))
                        .unwrap_or_default();
                    out!(
                        "orchd: plugin {name}: revision {revision} is active ({elapsed} ms{swap})"
                    );
                    return Ok(());
                }
                "Probation" if !said_probation => {
                    said_probation = true;
                    out!(
                        "orchd: plugin {name}: revision {revision} took over ({elapsed} ms); on probation, it goes back if it keeps failing"
                    );
                }
                _ => {}
            }
        }
        if started.elapsed() > timeout {
            bail!(
                "plugin {name}: revision {revision} not active after {} s (phase {:?}: {})",
                timeout.as_secs(),
                status.phase,
                status.message.unwrap_or_default()
            );
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Reads Plugin `name`.
async fn get_plugin(client: &Client, name: &str) -> anyhow::Result<Plugin> {
    let object = client
        .send(Method::GET, &format!("{PLUGINS}/{name}"), None, Vec::new())
        .await?
        .ok()
        .with_context(|| format!("cannot read plugin {name}"))?;
    serde_json::from_value(object)
        .with_context(|| format!("the cluster's Plugin {name} is not readable"))
}

async fn list(args: ListArgs) -> anyhow::Result<()> {
    let client = crate::commands::client(&args.server)?;
    let list = client
        .send(Method::GET, PLUGINS, None, Vec::new())
        .await?
        .ok()
        .context("cannot list plugins")?;
    let mut rows = vec![
        [
            "NAME",
            "WORLD",
            "REVISION",
            "PHASE",
            "RESTARTS",
            "DIGEST",
            "LAST ERROR",
        ]
        .map(String::from),
    ];
    for item in list["items"]
        .as_array()
        .map(Vec::as_slice)
        .unwrap_or_default()
    {
        let plugin: Plugin = serde_json::from_value(item.clone())?;
        let status = plugin.status.unwrap_or_default();
        let latest = plugin
            .spec
            .revisions
            .iter()
            .map(|r| r.revision)
            .max()
            .unwrap_or(0);
        let revision = match status.active_revision {
            Some(a) => format!("{a}/{latest}"),
            None => format!("-/{latest}"),
        };
        let digest = status
            .active_digest
            .as_deref()
            .map(|d| d.trim_start_matches("sha256:").chars().take(12).collect())
            .unwrap_or_else(|| "-".to_string());
        rows.push([
            plugin.metadata.name.unwrap_or_default(),
            plugin.spec.world,
            revision,
            if status.phase.is_empty() {
                "Pending".into()
            } else {
                status.phase
            },
            status.restarts.to_string(),
            digest,
            status.last_error.unwrap_or_else(|| "-".into()),
        ]);
    }
    print_table(&rows);
    Ok(())
}

fn print_table<const N: usize>(rows: &[[String; N]]) {
    let mut widths = [0usize; N];
    for row in rows {
        for (w, cell) in widths.iter_mut().zip(row) {
            *w = (*w).max(cell.chars().count());
        }
    }
    for row in rows {
        let mut line = String::new();
        for (i, cell) in row.iter().enumerate() {
            if i + 1 == N {
                line.push_str(cell);
            } else {
                line.push_str(&format!("{cell:<width$}   ", width = widths[i]));
            }
        }
        out!("{}", line.trim_end());
    }
}

async fn rollback(args: RollbackArgs) -> anyhow::Result<()> {
    let client = crate::commands::client(&args.server)?;
    let name = &args.name;
    let path = format!("{PLUGINS}/{name}");
    for _ in 0..10 {
        let mut plugin = get_plugin(&client, name).await?;
        let status = plugin.status.clone().unwrap_or_default();
        let active = status.active_revision.unwrap_or(plugin.spec.revision);
        let target = match args.to {
            Some(to) => {
                if !plugin.spec.revisions.iter().any(|r| r.revision == to) {
                    let known: Vec<String> = plugin
                        .spec
                        .revisions
                        .iter()
                        .map(|r| r.revision.to_string())
                        .collect();
                    bail!(
                        "plugin {name} has no revision {to} (it has {})",
                        known.join(", ")
                    );
                }
                to
            }
            None => plugin
                .spec
                .revisions
                .iter()
                .map(|r| r.revision)
                .filter(|r| *r < active && !status.failed_revisions.contains(r))
                .max()
                .with_context(|| {
                    format!("plugin {name} has no revision before {active} to go back to")
                })?,
        };
        if target == active && plugin.spec.revision == active {
            out!("orchd: plugin {name} already runs revision {active}");
            return Ok(());
        }
        plugin.spec.revision = target;
        let answer = client
            .send_json(Method::PUT, &path, JSON, &serde_json::to_value(&plugin)?)
            .await?;
        if answer.code == 409 {
            continue;
        }
        let updated = answer.ok().context("cannot update the plugin")?;
        out!("orchd: plugin {name}: rolling back from revision {active} to revision {target}");
        if args.wait.no_wait {
            return Ok(());
        }
        let generation = updated["metadata"]["generation"].as_i64().unwrap_or(0);
        return wait(
            &client,
            name,
            target,
            generation,
            Duration::from_secs(args.wait.timeout),
        )
        .await;
    }
    bail!("plugin {name} keeps changing under us; try again")
}

async fn remove(args: RemoveArgs) -> anyhow::Result<()> {
    let client = crate::commands::client(&args.server)?;
    let name = &args.name;
    let path = format!("{PLUGINS}/{name}");
    let plugin = get_plugin(&client, name).await?;
    client
        .send(Method::DELETE, &path, None, Vec::new())
        .await?
        .ok()
        .with_context(|| format!("cannot delete plugin {name}"))?;
    out!("orchd: plugin {name} removed");
    // Components no other plugin refers to go too.
    let others = client
        .send(Method::GET, PLUGINS, None, Vec::new())
        .await?
        .ok()?;
    let in_use: Vec<String> = others["items"]
        .as_array()
        .map(Vec::as_slice)
        .unwrap_or_default()
        .iter()
        .flat_map(|p| {
            p["spec"]["revisions"]
                .as_array()
                .cloned()
                .unwrap_or_default()
        })
        .filter_map(|r| r["digest"].as_str().map(str::to_string))
        .collect();
    for revision in &plugin.spec.revisions {
        if in_use.contains(&revision.digest) {
            continue;
        }
        let component = orchd_v1::component_name(&revision.digest);
        let head = client
            .send(
                Method::GET,
                &format!("{COMPONENTS}/{component}"),
                None,
                Vec::new(),
            )
            .await?;
        let chunks = head.body["chunks"].as_array().map_or(0, Vec::len);
        // The head first: once it is gone no one starts loading the
        // component, and its chunks can go.
        let names = std::iter::once(component.clone())
            .chain((0..chunks).map(|i| orchd_v1::chunk_name(&component, i)));
        for name in names {
            let answer = client
                .send(
                    Method::DELETE,
                    &format!("{COMPONENTS}/{name}"),
                    None,
                    Vec::new(),
                )
                .await?;
            if answer.code != 404 {
                answer
                    .ok()
                    .with_context(|| format!("cannot delete component {name}"))?;
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn default_names_are_dns_labels() {
        assert_eq!(
            default_name(std::path::Path::new("/x/My_Policy.wasm")),
            "my-policy"
        );
        assert_eq!(default_name(std::path::Path::new("__.wasm")), "plugin");
    }
}
