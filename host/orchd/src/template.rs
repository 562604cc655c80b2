//! `orchd plugin new NAME --lang rust|python|js --world controller|scheduler|admission`:
//! writes a buildable plugin project (sources, a `build.sh` that writes
//! `NAME.wasm`, a README) to start from.
//!
//! Python and JavaScript projects are self-contained: they get a copy of
//! the SDK (`sdk/python`, `sdk/js`, compiled into this binary) and of the
//! WIT contract, and only need the pinned toolchain (componentize-py from
//! PyPI; componentize-qjs from npm, installed by `build.sh`). A Rust
//! project depends on `sdk/rust` by path (`--sdk`), which holds the WIT.

use std::path::{Path, PathBuf};

use anyhow::{Context, bail};

/// The contract, as the SDKs build against it.
const WIT: &str = include_str!("../../../wit/plugin.wit");

/// `sdk/python/orchd_sdk`, file by file.
const PYTHON_SDK: &[(&str, &str)] = &[
    (
        "__init__.py",
        include_str!("../../../sdk/python/orchd_sdk/__init__.py"),
    ),
    (
        "admission.py",
        include_str!("../../../sdk/python/orchd_sdk/admission.py"),
    ),
    (
        "controller.py",
        include_str!("../../../sdk/python/orchd_sdk/controller.py"),
    ),
    (
        "events.py",
        include_str!("../../../sdk/python/orchd_sdk/events.py"),
    ),
    (
        "log.py",
        include_str!("../../../sdk/python/orchd_sdk/log.py"),
    ),
    (
        "meta.py",
        include_str!("../../../sdk/python/orchd_sdk/meta.py"),
    ),
    (
        "objects.py",
        include_str!("../../../sdk/python/orchd_sdk/objects.py"),
    ),
    (
        "pods.py",
        include_str!("../../../sdk/python/orchd_sdk/pods.py"),
    ),
    (
        "scheduler.py",
        include_str!("../../../sdk/python/orchd_sdk/scheduler.py"),
    ),
];

/// `sdk/js`, file by file.
const JS_SDK: &[(&str, &str)] = &[
    ("admission.js", include_str!("../../../sdk/js/admission.js")),
    (
        "controller.js",
        include_str!("../../../sdk/js/controller.js"),
    ),
    ("events.js", include_str!("../../../sdk/js/events.js")),
    ("log.js", include_str!("../../../sdk/js/log.js")),
    ("objects.js", include_str!("../../../sdk/js/objects.js")),
    ("scheduler.js", include_str!("../../../sdk/js/scheduler.js")),
];

/// Pinned toolchains, as `cargo xtask test` installs them.
const COMPONENTIZE_PY: &str = "componentize-py==0.25.1";
const COMPONENTIZE_QJS: &str = "0.4.5";

/// The language of a new plugin.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum Lang {
    /// Rust with the `orchd-sdk` crate (wit-bindgen).
    Rust,
    /// Python with `orchd_sdk` over componentize-py.
    Python,
    /// JavaScript with `orchd-sdk` over componentize-qjs (QuickJS).
    Js,
}

/// The world a new plugin implements.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum TemplateWorld {
    /// Picks nodes for the pods asking for it by schedulerName.
    Scheduler,
    /// Reconciles objects (here: labels ConfigMaps).
    Controller,
    /// Allows, denies or patches API writes.
    Admission,
}

impl TemplateWorld {
    fn as_str(self) -> &'static str {
        match self {
            TemplateWorld::Scheduler => "scheduler",
            TemplateWorld::Controller => "controller",
            TemplateWorld::Admission => "admission",
        }
    }
}

/// `orchd plugin new`.
#[derive(clap::Args)]
pub struct NewArgs {
    /// Plugin name (lowercase letters, digits and `-`): the project
    /// directory, the component `NAME.wasm`, and a scheduler's
    /// schedulerName.
    name: String,
    /// Language of the project.
    #[arg(long, value_enum)]
    lang: Lang,
    /// World the plugin implements.
    #[arg(long, value_enum)]
    world: TemplateWorld,
    /// Where to write the project (default: ./NAME); must not exist or be
    /// empty.
    #[arg(long)]
    dir: Option<PathBuf>,
    /// The orchd `sdk/` directory a Rust project depends on by path
    /// (default: the one of the source tree this binary was built from).
    #[arg(long)]
    sdk: Option<PathBuf>,
}

/// Runs `orchd plugin new`.
pub fn new(args: NewArgs) -> anyhow::Result<()> {
    let name = &args.name;
    let valid = !name.is_empty()
        && name.len() <= 63
        && name
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-')
        && name.starts_with(|c: char| c.is_ascii_lowercase())
        && !name.ends_with('-');
    if !valid {
        bail!(
            "plugin name {name:?}: use lowercase letters, digits and '-', starting with a letter (at most 63)"
        );
    }
    let dir = args.dir.clone().unwrap_or_else(|| PathBuf::from(name));
    if dir.exists()
        && std::fs::read_dir(&dir)
            .with_context(|| format!("cannot read {}", dir.display()))?
            .next()
            .is_some()
    {
        bail!("{} exists and is not empty", dir.display());
    }
    let files = match args.lang {
        Lang::Rust => {
            let sdk = match &args.sdk {
                Some(s) => s.clone(),
                None => Path::new(env!("CARGO_MANIFEST_DIR")).join("../../sdk"),
            };
            let rust_sdk = sdk.join("rust");
            if !rust_sdk.join("Cargo.toml").is_file() {
                bail!(
                    "no orchd Rust SDK at {}: pass --sdk with the sdk/ directory of an orchd checkout",
                    rust_sdk.display()
                );
            }
            let rust_sdk = rust_sdk
                .canonicalize()
                .with_context(|| format!("cannot resolve {}", rust_sdk.display()))?;
            rust_files(name, args.world, &rust_sdk)
        }
        Lang::Python => python_files(name, args.world),
        Lang::Js => js_files(name, args.world),
    };
    for (path, text) in &files {
        let to = dir.join(path);
        if let Some(parent) = to.parent() {
            std::fs::create_dir_all(parent)
                .with_context(|| format!("cannot create {}", parent.display()))?;
        }
        std::fs::write(&to, text).with_context(|| format!("cannot write {}", to.display()))?;
        if path == "build.sh" {
            use std::os::unix::fs::PermissionsExt;
            std::fs::set_permissions(&to, std::fs::Permissions::from_mode(0o755))
                .with_context(|| format!("cannot make {} executable", to.display()))?;
        }
    }
    out!(
        "orchd: wrote a {:?} {} plugin to {} ({} files): cd there and run ./build.sh (see README.md)",
        args.lang,
        args.world.as_str(),
        dir.display(),
        files.len()
    );
    Ok(())
}

/// What to pass `orchd plugin install` for each world.
fn install_line(name: &str, world: TemplateWorld) -> String {
    match world {
        TemplateWorld::Controller => format!(
            "orchd plugin install {name}.wasm --name {name} --read configmaps --write configmaps"
        ),
        TemplateWorld::Scheduler => format!("orchd plugin install {name}.wasm"),
        TemplateWorld::Admission => format!("orchd plugin install {name}.wasm --name {name}"),
    }
}

/// What the template does, for its README.
fn what(name: &str, world: TemplateWorld) -> String {
    match world {
        TemplateWorld::Controller => "a controller that labels every ConfigMap `seen=yes` \
             and records an Event about it (reconciles `configmaps`)"
            .into(),
        TemplateWorld::Scheduler => format!(
            "a scheduler serving `spec.schedulerName: {name}`: among the nodes with room \
             for the pod it picks the one with the most free CPU, and otherwise says why \
             each node was rejected"
        ),
        TemplateWorld::Admission => "an admission policy that denies pods whose containers \
             use an image without a tag or tagged `:latest`"
            .into(),
    }
}

fn readme(name: &str, world: TemplateWorld, lang: &str, build: &str, layout: &str) -> String {
    format!(
        "# {name}\n\n\
         An orchd {world} plugin in {lang}: {what}.\n\n\
         It is a WebAssembly component of world `{world}` of the contract in\n\
         `orchd:plugin@0.1.0` (wit/plugin.wit in the orchd tree).\n\n\
         ## Build\n\n\
         ```sh\n./build.sh        # writes {name}.wasm\n```\n\n{build}\n\n\
         ## Install\n\n\
         ```sh\n{install}\norchd plugin list\n```\n\n\
         Installing again hot-swaps to the new revision; `orchd plugin rollback {name}`\n\
         goes back. The component is checked (compiled, its world detected) before it\n\
         is uploaded.\n\n\
         ## Layout\n\n{layout}\n",
        world = world.as_str(),
        what = what(name, world),
        install = install_line(name, world),
    )
}

fn rust_files(name: &str, world: TemplateWorld, sdk: &Path) -> Vec<(String, String)> {
    let crate_name = name.replace('-', "_");
    let cargo = format!(
        "[package]\nname = \"{name}\"\nversion = \"0.1.0\"\nedition = \"2024\"\npublish = false\n\n\
         [lib]\n# A component is a cdylib built for wasm32-wasip2.\ncrate-type = [\"cdylib\"]\n\n\
         [dependencies]\n# Exactly the feature of the world this plugin implements.\n\
         orchd-sdk = {{ path = \"{}\", features = [\"{}\"] }}\n\n\
         # Its own workspace, even when created inside another one. For a\n\
         # smaller component: [profile.release] opt-level = \"s\", strip = true.\n[workspace]\n",
        sdk.display(),
        world.as_str()
    );
    let lib = match world {
        TemplateWorld::Controller => RUST_CONTROLLER.to_string(),
        TemplateWorld::Scheduler => RUST_SCHEDULER.replace("__NAME__", name),
        TemplateWorld::Admission => RUST_ADMISSION.to_string(),
    };
    let build = format!(
        "#!/bin/sh\n# Builds {name}.wasm (needs `rustup target add wasm32-wasip2` once).\nset -eu\ncd \"$(dirname \"$0\")\"\n\
         cargo build --release --target wasm32-wasip2\n\
         cp \"${{CARGO_TARGET_DIR:-target}}/wasm32-wasip2/release/{crate_name}.wasm\" {name}.wasm\n\
         echo \"built $(pwd)/{name}.wasm\"\n"
    );
    vec![
        ("Cargo.toml".into(), cargo),
        ("src/lib.rs".into(), lib),
        ("build.sh".into(), build),
        (
            "README.md".into(),
            readme(
                name,
                world,
                "Rust",
                "Needs Rust with the `wasm32-wasip2` target (`rustup target add wasm32-wasip2`).\n\
                 `cargo build --release --target wasm32-wasip2` writes a component directly;\n\
                 `cargo test` runs the logic natively.",
                &format!(
                    "- `src/lib.rs`: the plugin\n- `Cargo.toml`: depends on the orchd SDK at `{}`\n",
                    sdk.display()
                ),
            ),
        ),
        (".gitignore".into(), format!("/target\n/{name}.wasm\n")),
    ]
}

fn python_files(name: &str, world: TemplateWorld) -> Vec<(String, String)> {
    let app = match world {
        TemplateWorld::Controller => PY_CONTROLLER.to_string(),
        TemplateWorld::Scheduler => PY_SCHEDULER.replace("__NAME__", name),
        TemplateWorld::Admission => PY_ADMISSION.to_string(),
    };
    let build = format!(
        "#!/bin/sh\n# Builds {name}.wasm with componentize-py ({COMPONENTIZE_PY}:\n\
         # `pip install {COMPONENTIZE_PY}`, or set COMPONENTIZE_PY to its path).\nset -eu\ncd \"$(dirname \"$0\")\"\n\
         \"${{COMPONENTIZE_PY:-componentize-py}}\" -d wit -w {world} componentize app -p . -o {name}.wasm\n\
         echo \"built $(pwd)/{name}.wasm\"\n",
        world = world.as_str()
    );
    let mut files = vec![
        ("app.py".into(), app),
        ("build.sh".into(), build),
        ("wit/plugin.wit".into(), WIT.to_string()),
        (
            "README.md".into(),
            readme(
                name,
                world,
                "Python",
                &format!(
                    "Needs componentize-py: `pip install {COMPONENTIZE_PY}` (into a venv), or set\n\
                     `COMPONENTIZE_PY` to the executable. Building takes ~15 s and gives an\n\
                     ~18 MB component (CPython inside); orchd compiles it once per digest and\n\
                     caches the result. componentize-py generates the bindings of `wit/`\n\
                     (module `wit_world`) while it builds; `orchd_sdk/` wraps them."
                ),
                "- `app.py`: the plugin (`WitWorld = export(...)` is what componentize-py exports)\n\
                 - `orchd_sdk/`: a copy of orchd's Python SDK (`sdk/python`)\n\
                 - `wit/plugin.wit`: the contract\n",
            ),
        ),
        (".gitignore".into(), format!("/{name}.wasm\n__pycache__/\n")),
    ];
    files.extend(
        PYTHON_SDK
            .iter()
            .map(|(f, text)| (format!("orchd_sdk/{f}"), text.to_string())),
    );
    files
}

fn js_files(name: &str, world: TemplateWorld) -> Vec<(String, String)> {
    let app = match world {
        TemplateWorld::Controller => JS_CONTROLLER.to_string(),
        TemplateWorld::Scheduler => JS_SCHEDULER.replace("__NAME__", name),
        TemplateWorld::Admission => JS_ADMISSION.to_string(),
    };
    let package = format!(
        "{{\n  \"name\": \"{name}\",\n  \"version\": \"0.1.0\",\n  \"private\": true,\n  \"type\": \"module\",\n  \
         \"scripts\": {{ \"build\": \"./build.sh\" }},\n  \
         \"devDependencies\": {{ \"componentize-qjs\": \"{COMPONENTIZE_QJS}\" }}\n}}\n"
    );
    let build = format!(
        "#!/bin/sh\n# Builds {name}.wasm with componentize-qjs (QuickJS), installed from npm\n\
         # unless COMPONENTIZE_QJS names the executable.\nset -eu\ncd \"$(dirname \"$0\")\"\n\
         if [ -z \"${{COMPONENTIZE_QJS:-}}\" ]; then\n  npm install --no-audit --no-fund\n  \
         COMPONENTIZE_QJS=node_modules/.bin/componentize-qjs\nfi\n\
         # componentize-qjs resolves `orchd-sdk/...` under ./node_modules only.\n\
         rm -rf node_modules/orchd-sdk\nmkdir -p node_modules\ncp -r orchd-sdk node_modules/orchd-sdk\n\
         \"$COMPONENTIZE_QJS\" --wit wit --world {world} --sync --js app.js --module-root . -o {name}.wasm\n\
         echo \"built $(pwd)/{name}.wasm\"\n",
        world = world.as_str()
    );
    let mut files = vec![
        ("app.js".into(), app),
        ("package.json".into(), package),
        ("build.sh".into(), build),
        ("wit/plugin.wit".into(), WIT.to_string()),
        (
            "README.md".into(),
            readme(
                name,
                world,
                "JavaScript",
                "Needs Node.js and npm: `build.sh` installs componentize-qjs (QuickJS) from npm\n\
                 and builds a ~1.6 MB component in a few seconds. WIT imports are ES modules\n\
                 (`import log from \"orchd:plugin/log@0.1.0\"`); records have camelCase keys,\n\
                 enums are strings, variants `{ tag, val }`; `orchd-sdk/` wraps them.",
                "- `app.js`: the plugin (its exports are the world's functions)\n\
                 - `orchd-sdk/`: a copy of orchd's JavaScript SDK (`sdk/js`)\n\
                 - `wit/plugin.wit`: the contract\n",
            ),
        ),
        (
            ".gitignore".into(),
            format!("/{name}.wasm\nnode_modules/\n"),
        ),
    ];
    files.extend(
        JS_SDK
            .iter()
            .map(|(f, text)| (format!("orchd-sdk/{f}"), text.to_string())),
    );
    files
}

const RUST_CONTROLLER: &str = r#"//! A controller: labels every ConfigMap `seen=yes` and records an Event.
//! Capabilities: read and write `configmaps`.

use orchd_sdk::prelude::*;
use orchd_sdk::{events, objects};

struct Labeler;

impl Controller for Labeler {
    fn setup(_config: &str) -> Result<ControllerSpec, BoxError> {
        Ok(ControllerSpec::new("configmaps"))
    }

    fn reconcile(key: ObjectRef) -> Result<ReconcileResult, BoxError> {
        let cm: Value = match objects::get(&key) {
            Err(e) if e.is_not_found() => return Ok(ReconcileResult::Done),
            other => other?,
        };
        if cm["metadata"]["labels"]["seen"] != "yes" {
            let _: Value = objects::patch(&key, &json!({"metadata": {"labels": {"seen": "yes"}}}))?;
            events::normal(&key, "Seen", "labeled seen=yes");
        }
        Ok(ReconcileResult::Done)
    }
}

orchd_sdk::export_controller!(Labeler);
"#;

const RUST_SCHEDULER: &str = r#"//! A scheduler serving `spec.schedulerName: __NAME__`: the node with the most
//! free CPU among those with room for the pod.

use orchd_sdk::scheduler::{Decision, NodeInfo, PodInfo, Rejection, Scheduler};

struct MostFreeCpu;

impl Scheduler for MostFreeCpu {
    const NAME: &'static str = "__NAME__";

    fn schedule(pod: &PodInfo, nodes: &[NodeInfo]) -> Decision {
        let mut rejections = Vec::new();
        let mut best: Option<&NodeInfo> = None;
        for node in nodes {
            if node.unschedulable || !node.ready {
                rejections.push(Rejection::new(&node.name, "node(s) were unschedulable"));
            } else if !pod.requests.fits_in(&node.free()) {
                rejections.push(Rejection::new(&node.name, "Insufficient resources"));
            } else if best.is_none_or(|b| node.free().milli_cpu > b.free().milli_cpu) {
                best = Some(node);
            }
        }
        match best {
            Some(node) => Decision::Bind(node.name.clone()),
            None => Decision::Unschedulable(rejections),
        }
    }
}

orchd_sdk::export_scheduler!(MostFreeCpu);
"#;

const RUST_ADMISSION: &str = r#"//! An admission policy: denies pods whose containers use an image without
//! a tag or tagged `:latest`.

use orchd_sdk::admission::{Admission, AdmissionRequest, AdmissionResponse};
use orchd_sdk::serde_json::Value;

struct NoLatest;

impl Admission for NoLatest {
    fn review(request: AdmissionRequest) -> AdmissionResponse {
        if request.resource != "pods" {
            return AdmissionResponse::allow();
        }
        let Some(Ok(pod)) = request.object::<Value>() else {
            return AdmissionResponse::allow();
        };
        let containers = pod["spec"]["containers"].as_array().cloned().unwrap_or_default();
        for c in containers {
            let image = c["image"].as_str().unwrap_or_default();
            let tag = image.rsplit('/').next().unwrap_or_default().split_once(':').map(|(_, t)| t);
            if matches!(tag, None | Some("latest")) {
                return AdmissionResponse::deny(format!(
                    "container {} uses image {image:?}: pin a tag other than latest",
                    c["name"].as_str().unwrap_or_default()
                ));
            }
        }
        AdmissionResponse::allow()
    }
}

orchd_sdk::export_admission!(NoLatest);
"#;

const PY_CONTROLLER: &str = r#""""A controller: labels every ConfigMap `seen=yes` and records an Event.
Capabilities: read and write `configmaps`."""

from orchd_sdk import events, objects
from orchd_sdk.controller import Controller, ControllerSpec, done, export


class Labeler(Controller):
    def setup(self, config):
        return ControllerSpec("configmaps")

    def reconcile(self, key):
        try:
            cm = objects.get(key)
        except objects.ApiError as e:
            if e.is_not_found():
                return done()
            raise
        if (cm["metadata"].get("labels") or {}).get("seen") != "yes":
            objects.patch(key, {"metadata": {"labels": {"seen": "yes"}}})
            events.normal(key, "Seen", "labeled seen=yes")
        return done()


WitWorld = export(Labeler)
"#;

const PY_SCHEDULER: &str = r#""""A scheduler serving `spec.schedulerName: __NAME__`: the node with the most
free CPU among those with room for the pod."""

from orchd_sdk.scheduler import Scheduler, bind, export, unschedulable


class MostFreeCpu(Scheduler):
    name = "__NAME__"

    def schedule(self, pod, nodes):
        rejections, best = [], None
        for node in nodes:
            if node.unschedulable or not node.ready:
                rejections.append((node.name, "node(s) were unschedulable"))
            elif not node.fits(pod):
                rejections.append((node.name, "Insufficient resources"))
            elif best is None or node.free().milli_cpu > best.free().milli_cpu:
                best = node
        return bind(best.name) if best is not None else unschedulable(rejections)


WitWorld = export(MostFreeCpu)
"#;

const PY_ADMISSION: &str = r#""""An admission policy: denies pods whose containers use an image without a
tag or tagged `:latest`."""

from orchd_sdk.admission import Admission, allow, deny, export


class NoLatest(Admission):
    def review(self, request):
        if request.resource != "pods" or request.object is None:
            return allow()
        for c in (request.object.get("spec") or {}).get("containers") or []:
            image = c.get("image", "")
            last = image.rsplit("/", 1)[-1]
            tag = last.split(":", 1)[1] if ":" in last else None
            if tag in (None, "latest"):
                return deny(f"container {c.get('name')} uses image {image!r}: pin a tag other than latest")
        return allow()


WitWorld = export(NoLatest)
"#;

const JS_CONTROLLER: &str = r#"// A controller: labels every ConfigMap `seen=yes` and records an Event.
// Capabilities: read and write `configmaps`.
import { exportController, spec, done } from "orchd-sdk/controller.js";
import * as objects from "orchd-sdk/objects.js";
import * as events from "orchd-sdk/events.js";

export const { setup, reconcile } = exportController({
  setup: (config) => spec("configmaps"),
  reconcile(key) {
    let cm;
    try {
      cm = objects.get(key);
    } catch (e) {
      if (e instanceof objects.ApiError && e.isNotFound()) return done();
      throw e;
    }
    if ((cm.metadata.labels || {}).seen !== "yes") {
      objects.patch(key, { metadata: { labels: { seen: "yes" } } });
      events.normal(key, "Seen", "labeled seen=yes");
    }
    return done();
  },
});
"#;

const JS_SCHEDULER: &str = r#"// A scheduler serving `spec.schedulerName: __NAME__`: the node with the most
// free CPU among those with room for the pod.
import { exportScheduler, bind, unschedulable } from "orchd-sdk/scheduler.js";

export const { schedulerName, update, schedule } = exportScheduler({
  name: "__NAME__",
  schedule(pod, nodes) {
    const rejections = [];
    let best = null;
    for (const node of nodes) {
      if (node.unschedulable || !node.ready) rejections.push([node.name, "node(s) were unschedulable"]);
      else if (!node.fits(pod)) rejections.push([node.name, "Insufficient resources"]);
      else if (best === null || node.free().milliCpu > best.free().milliCpu) best = node;
    }
    return best ? bind(best.name) : unschedulable(rejections);
  },
});
"#;

const JS_ADMISSION: &str = r#"// An admission policy: denies pods whose containers use an image without a
// tag or tagged `:latest`.
import { exportAdmission, allow, deny } from "orchd-sdk/admission.js";

export const { review } = exportAdmission((req) => {
  if (req.resource !== "pods" || !req.object) return allow();
  for (const c of req.object.spec?.containers ?? []) {
    const image = c.image ?? "";
    const last = image.split("/").pop();
    const tag = last.includes(":") ? last.split(":")[1] : null;
    if (tag === null || tag === "latest") {
      return deny(`container ${c.name} uses image "${image}": pin a tag other than latest`);
    }
  }
  return allow();
});
"#;

#[cfg(test)]
mod tests {
    use super::*;

    /// A fresh directory under the system's temp dir, removed on drop.
    struct TempDir(PathBuf);

    impl TempDir {
        fn new(tag: &str) -> TempDir {
            let dir =
                std::env::temp_dir().join(format!("orchd-template-{tag}-{}", std::process::id()));
            let _ = std::fs::remove_dir_all(&dir);
            std::fs::create_dir_all(&dir).unwrap();
            TempDir(dir)
        }
        fn path(&self) -> &Path {
            &self.0
        }
    }

    impl Drop for TempDir {
        fn drop(&mut self) {
            let _ = std::fs::remove_dir_all(&self.0);
        }
    }

    fn args(name: &str, lang: Lang, world: TemplateWorld, dir: &Path) -> NewArgs {
        NewArgs {
            name: name.into(),
            lang,
            world,
            dir: Some(dir.to_path_buf()),
            sdk: None,
        }
    }

    #[test]
    fn every_language_and_world_writes_a_named_project() {
        let tmp = TempDir::new("all");
        for lang in [Lang::Rust, Lang::Python, Lang::Js] {
            for world in [
                TemplateWorld::Controller,
                TemplateWorld::Scheduler,
                TemplateWorld::Admission,
            ] {
                let dir = tmp.path().join(format!("{lang:?}-{}", world.as_str()));
                new(args("my-plugin", lang, world, &dir)).unwrap();
                let build = std::fs::read_to_string(dir.join("build.sh")).unwrap();
                assert!(build.contains("my-plugin.wasm"), "{build}");
                assert!(dir.join("README.md").is_file());
                let app = match lang {
                    Lang::Rust => "src/lib.rs",
                    Lang::Python => "app.py",
                    Lang::Js => "app.js",
                };
                let app = std::fs::read_to_string(dir.join(app)).unwrap();
                assert!(!app.contains("__NAME__"), "{app}");
                if world == TemplateWorld::Scheduler {
                    assert!(app.contains("\"my-plugin\""), "{app}");
                }
                if lang != Lang::Rust {
                    let wit = std::fs::read_to_string(dir.join("wit/plugin.wit")).unwrap();
                    assert!(wit.contains(&format!("world {}", world.as_str())));
                }
            }
        }
        assert!(
            tmp.path()
                .join("Python-controller/orchd_sdk/objects.py")
                .is_file()
        );
        assert!(
            tmp.path()
                .join("Js-admission/orchd-sdk/admission.js")
                .is_file()
        );
    }

    #[test]
    fn refuses_bad_names_and_non_empty_directories() {
        let tmp = TempDir::new("bad");
        for bad in ["", "My-Plugin", "-x", "x-", "a_b", "9lives"] {
            let dir = tmp.path().join("p");
            assert!(new(args(bad, Lang::Python, TemplateWorld::Admission, &dir)).is_err());
        }
        std::fs::write(tmp.path().join("file"), "x").unwrap();
        let err = new(args("ok", Lang::Js, TemplateWorld::Scheduler, tmp.path())).unwrap_err();
        assert!(err.to_string().contains("not empty"), "{err}");
    }
}
