//! On-disk cache of precompiled components, keyed by the component's
//! sha256 digest, the wasmtime version and the engine's compatibility hash.
//!
//! Compiling is the slow part of loading a plugin (tens of milliseconds for
//! a Rust guest, seconds for a Python or JavaScript one); loading a cached
//! artifact is a memory map and a few checks.
//!
//! This is the only module of the crate that uses `unsafe`: wasmtime cannot
//! check that a precompiled artifact is the machine code it claims to be,
//! so loading one is `unsafe`. It is sound here because the cache only ever
//! loads files it wrote itself: each file is named by the digest of the
//! component it was compiled from, is written whole to a temporary name and
//! renamed into place (so a reader never maps a half-written or changing
//! file, even with several orchd processes sharing the directory), and
//! lives in a directory of the user running orchd (their cache directory,
//! or one given on the command line), which has the same trust as the
//! `orchd` binary they run. Bytes handed in by users
//! always go through `Component::new`, never through this loader.
#![allow(unsafe_code)]

use std::hash::{Hash, Hasher};
use std::io::Write;
use std::path::{Path, PathBuf};

use wasmtime::Engine;
use wasmtime::component::Component;

/// The wasmtime version artifacts are built with: part of every file name,
/// so an upgraded binary never even tries an old artifact.
const WASMTIME_VERSION: &str = "48";

/// A directory of precompiled components.
#[derive(Clone, Debug)]
pub(crate) struct ArtifactCache {
    dir: PathBuf,
    engine_hash: String,
}

impl ArtifactCache {
    /// A cache in `dir` for artifacts of `engine` (created on first store).
    pub(crate) fn new(engine: &Engine, dir: PathBuf) -> Self {
        // The std hasher with its fixed default keys is stable for one
        // build; a different build computing a different name only costs a
        // recompile, never a wrong load, since wasmtime checks the artifact's
        // header against the engine as well.
        let mut hasher = std::collections::hash_map::DefaultHasher::new();
        engine.precompile_compatibility_hash().hash(&mut hasher);
        ArtifactCache {
            dir,
            engine_hash: format!("{:016x}", hasher.finish()),
        }
    }

    fn path(&self, digest_hex: &str) -> PathBuf {
        self.dir.join(format!(
            "{digest_hex}-wasmtime{WASMTIME_VERSION}-{}.cwasm",
            self.engine_hash
        ))
    }

    /// The cached artifact of the component with this digest, if any.
    /// A file that does not load (truncated by a crash of an old writer,
    /// from another engine configuration) is removed and reported as absent.
    pub(crate) fn load(&self, engine: &Engine, digest_hex: &str) -> Option<Component> {
        let path = self.path(digest_hex);
        if !path.is_file() {
            return None;
        }
        // SAFETY: see the module documentation: `path` is a file this cache
        // wrote whole (temporary name, then rename) from the output of
        // `Component::serialize` for the component whose digest names it,
        // in a directory only this host writes.
        match unsafe { Component::deserialize_file(engine, &path) } {
            Ok(component) => Some(component),
            Err(_) => {
                let _ = std::fs::remove_file(&path);
                None
            }
        }
    }

    /// Stores the artifact of `component`. Failures are returned for the
    /// caller to log; a cache that cannot be written only makes the next
    /// start slower.
    pub(crate) fn store(&self, digest_hex: &str, component: &Component) -> Result<(), String> {
        let bytes = component
            .serialize()
            .map_err(|e| format!("cannot serialize the compiled component: {e}"))?;
        std::fs::create_dir_all(&self.dir)
            .map_err(|e| format!("cannot create {}: {e}", self.dir.display()))?;
        let path = self.path(digest_hex);
        let tmp = self.dir.join(format!(
            ".{digest_hex}.{}.{}.tmp",
            std::process::id(),
            uuid::Uuid::new_v4().simple()
        ));
        write_whole(&tmp, &bytes).map_err(|e| {
            let _ = std::fs::remove_file(&tmp);
            format!("cannot write {}: {e}", tmp.display())
        })?;
        std::fs::rename(&tmp, &path).map_err(|e| {
            let _ = std::fs::remove_file(&tmp);
            format!("cannot rename into {}: {e}", path.display())
        })
    }
}

fn write_whole(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    let mut file = std::fs::File::create(path)?;
    file.write_all(bytes)?;
    file.sync_all()
}
