//! OCI images: names as Kubernetes writes them, an OCI image-layout
//! tarball builder (a one-layer busybox image from a static busybox
//! binary, since no registry is reachable), and the digests and chain IDs
//! that link an image's layers to its snapshots.

use std::collections::BTreeMap;
use std::io::Write;
use std::path::Path;

use serde_json::{Value, json};
use sha2::{Digest, Sha256};

/// OCI media types.
pub const MEDIA_INDEX: &str = "application/vnd.oci.image.index.v1+json";
/// An OCI manifest.
pub const MEDIA_MANIFEST: &str = "application/vnd.oci.image.manifest.v1+json";
/// An OCI image config.
pub const MEDIA_CONFIG: &str = "application/vnd.oci.image.config.v1+json";
/// An uncompressed layer.
pub const MEDIA_LAYER_TAR: &str = "application/vnd.oci.image.layer.v1.tar";
/// Docker's manifest list.
pub const DOCKER_LIST: &str = "application/vnd.docker.distribution.manifest.list.v2+json";
/// Docker's manifest.
pub const DOCKER_MANIFEST: &str = "application/vnd.docker.distribution.manifest.v2+json";

/// The annotation containerd reads an imported image's full name from.
pub const ANNOTATION_NAME: &str = "io.containerd.image.name";
/// The OCI annotation for a manifest's reference (often just a tag).
pub const ANNOTATION_REF: &str = "org.opencontainers.image.ref.name";

/// `sha256:<hex>` of `data`.
pub fn digest(data: &[u8]) -> String {
    let hash = Sha256::digest(data);
    let mut s = String::with_capacity(71);
    s.push_str("sha256:");
    for b in hash {
        s.push_str(&format!("{b:02x}"));
    }
    s
}

/// The chain ID of a layer on top of `parent` (OCI image spec: the first
/// layer's is its diff ID, each next one `sha256(parent + " " + diff_id)`).
pub fn chain_id(parent: Option<&str>, diff_id: &str) -> String {
    match parent {
        None => diff_id.to_string(),
        Some(p) => digest(format!("{p} {diff_id}").as_bytes()),
    }
}

/// The chain IDs of every layer, bottom up.
pub fn chain_ids(diff_ids: &[String]) -> Vec<String> {
    let mut out: Vec<String> = Vec::with_capacity(diff_ids.len());
    for d in diff_ids {
        let next = chain_id(out.last().map(String::as_str), d);
        out.push(next);
    }
    out
}

/// A Kubernetes image reference made fully qualified as containerd stores
/// it: `busybox` → `docker.io/library/busybox:latest`, `me/app:1` →
/// `docker.io/me/app:1`, `registry:5000/x` → `registry:5000/x:latest`;
/// digests are kept.
pub fn normalize(name: &str) -> String {
    let name = name.trim();
    let (first, rest) = match name.split_once('/') {
        Some((f, r)) => (f, Some(r)),
        None => (name, None),
    };
    let mut full = match rest {
        // A registry host has a dot or a port, or is localhost.
        Some(r) if first.contains('.') || first.contains(':') || first == "localhost" => {
            format!("{first}/{r}")
        }
        Some(_) => format!("docker.io/{name}"),
        None => format!("docker.io/library/{name}"),
    };
    if full.starts_with("docker.io/") && !full["docker.io/".len()..].contains('/') {
        full = format!("docker.io/library/{}", &full["docker.io/".len()..]);
    }
    let last = full.rsplit('/').next().unwrap_or("");
    if !last.contains(':') && !last.contains('@') {
        full.push_str(":latest");
    }
    full
}

/// The OCI architecture name of this machine.
pub fn oci_arch() -> &'static str {
    match std::env::consts::ARCH {
        "x86_64" => "amd64",
        "aarch64" => "arm64",
        "arm" => "arm",
        "powerpc64" => "ppc64le",
        "s390x" => "s390x",
        "riscv64" => "riscv64",
        other => other,
    }
}

/// What an image's config says about running it.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ImageConfig {
    /// `Entrypoint`.
    pub entrypoint: Vec<String>,
    /// `Cmd`.
    pub cmd: Vec<String>,
    /// `Env` (`NAME=value`).
    pub env: Vec<String>,
    /// `WorkingDir`.
    pub working_dir: String,
    /// `rootfs.diff_ids`.
    pub diff_ids: Vec<String>,
}

impl ImageConfig {
    /// Parses an OCI (or Docker) image config.
    pub fn parse(bytes: &[u8]) -> Result<Self, String> {
        let v: Value =
            serde_json::from_slice(bytes).map_err(|e| format!("bad image config: {e}"))?;
        let strings = |v: &Value| -> Vec<String> {
            v.as_array()
                .into_iter()
                .flatten()
                .filter_map(|s| s.as_str().map(str::to_string))
                .collect()
        };
        let c = &v["config"];
        Ok(ImageConfig {
            entrypoint: strings(&c["Entrypoint"]),
            cmd: strings(&c["Cmd"]),
            env: strings(&c["Env"]),
            working_dir: c["WorkingDir"].as_str().unwrap_or("").to_string(),
            diff_ids: strings(&v["rootfs"]["diff_ids"]),
        })
    }

    /// The process arguments, by Kubernetes' rules: `command` replaces the
    /// entrypoint (and drops the image's Cmd); `args` replace Cmd.
    pub fn argv(&self, command: &[String], args: &[String]) -> Vec<String> {
        match (command.is_empty(), args.is_empty()) {
            (false, _) => command.iter().chain(args).cloned().collect(),
            (true, false) => self.entrypoint.iter().chain(args).cloned().collect(),
            (true, true) => self.entrypoint.iter().chain(&self.cmd).cloned().collect(),
        }
    }
}

/// The applets a busybox binary provides (`busybox --list`).
fn busybox_applets(busybox: &Path) -> Result<Vec<String>, String> {
    let out = std::process::Command::new(busybox)
        .arg("--list")
        .output()
        .map_err(|e| format!("cannot run {} --list: {e}", busybox.display()))?;
    if !out.status.success() {
        return Err(format!("{} --list failed", busybox.display()));
    }
    Ok(String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(str::trim)
        .filter(|a| !a.is_empty() && !a.contains('/') && *a != "busybox")
        .map(str::to_string)
        .collect())
}

fn header(kind: tar::EntryType, path: &str, size: u64, mode: u32) -> tar::Header {
    let mut h = tar::Header::new_ustar();
    h.set_entry_type(kind);
    let _ = h.set_path(path);
    h.set_size(size);
    h.set_mode(mode);
    h.set_uid(0);
    h.set_gid(0);
    // Fixed times: the same binary gives the same digests.
    h.set_mtime(0);
    h.set_cksum();
    h
}

fn append_file(
    b: &mut tar::Builder<impl Write>,
    path: &str,
    data: &[u8],
    mode: u32,
) -> Result<(), String> {
    let h = header(tar::EntryType::Regular, path, data.len() as u64, mode);
    b.append(&h, data)
        .map_err(|e| format!("cannot write {path}: {e}"))
}

/// The one layer of the busybox image: `/bin/busybox`, a symlink per
/// applet, the usual empty directories and a minimal /etc.
pub fn busybox_layer(busybox: &Path) -> Result<Vec<u8>, String> {
    let binary =
        std::fs::read(busybox).map_err(|e| format!("cannot read {}: {e}", busybox.display()))?;
    let applets = busybox_applets(busybox)?;
    let mut b = tar::Builder::new(Vec::new());
    for dir in [
        "bin/", "dev/", "etc/", "proc/", "root/", "sys/", "tmp/", "var/", "var/www/", "usr/",
        "usr/bin/", "sbin/",
    ] {
        let mode = if dir == "tmp/" { 0o1777 } else { 0o755 };
        let h = header(tar::EntryType::Directory, dir, 0, mode);
        b.append(&h, std::io::empty())
            .map_err(|e| format!("cannot write {dir}: {e}"))?;
    }
    append_file(&mut b, "bin/busybox", &binary, 0o755)?;
    for applet in &applets {
        let mut h = header(tar::EntryType::Symlink, &format!("bin/{applet}"), 0, 0o777);
        h.set_link_name("busybox")
            .map_err(|e| format!("bad applet {applet}: {e}"))?;
        h.set_cksum();
        b.append(&h, std::io::empty())
            .map_err(|e| format!("cannot write bin/{applet}: {e}"))?;
    }
    append_file(
        &mut b,
        "etc/passwd",
        b"root:x:0:0:root:/root:/bin/sh\nnobody:x:65534:65534:nobody:/:/bin/false\n",
        0o644,
    )?;
    append_file(&mut b, "etc/group", b"root:x:0:\nnogroup:x:65534:\n", 0o644)?;
    b.into_inner()
        .map_err(|e| format!("cannot finish the layer: {e}"))
}

/// Writes an OCI image-layout tarball of one image: `layer` (an
/// uncompressed tar) with `config` (the `config` section of the image
/// config), named `name` (normalized).
pub fn write_oci_tar(
    out: &Path,
    name: &str,
    layer: &[u8],
    config: Value,
) -> Result<String, String> {
    let name = normalize(name);
    let diff_id = digest(layer);
    let image_config = json!({
        "architecture": oci_arch(),
        "os": "linux",
        "config": config,
        "rootfs": {"type": "layers", "diff_ids": [diff_id]},
        "history": [{"created_by": "orchd image build", "comment": "one layer"}],
    });
    let config_bytes = serde_json::to_vec(&image_config).map_err(|e| e.to_string())?;
    let manifest = json!({
        "schemaVersion": 2,
        "mediaType": MEDIA_MANIFEST,
        "config": {"mediaType": MEDIA_CONFIG, "digest": digest(&config_bytes), "size": config_bytes.len()},
        "layers": [{"mediaType": MEDIA_LAYER_TAR, "digest": diff_id, "size": layer.len()}],
    });
    let manifest_bytes = serde_json::to_vec(&manifest).map_err(|e| e.to_string())?;
    let manifest_digest = digest(&manifest_bytes);
    let tag = name.rsplit(':').next().unwrap_or("latest").to_string();
    let index = json!({
        "schemaVersion": 2,
        "mediaType": MEDIA_INDEX,
        "manifests": [{
            "mediaType": MEDIA_MANIFEST, "digest": manifest_digest, "size": manifest_bytes.len(),
            "annotations": {ANNOTATION_NAME: name, ANNOTATION_REF: tag},
            "platform": {"architecture": oci_arch(), "os": "linux"},
        }],
    });
    let file =
        std::fs::File::create(out).map_err(|e| format!("cannot create {}: {e}", out.display()))?;
    let mut b = tar::Builder::new(std::io::BufWriter::new(file));
    append_file(
        &mut b,
        "oci-layout",
        br#"{"imageLayoutVersion":"1.0.0"}"#,
        0o644,
    )?;
    append_file(
        &mut b,
        "index.json",
        &serde_json::to_vec(&index).map_err(|e| e.to_string())?,
        0o644,
    )?;
    let blobs: BTreeMap<String, &[u8]> = [
        (diff_id.clone(), layer),
        (digest(&config_bytes), &config_bytes[..]),
        (manifest_digest.clone(), &manifest_bytes[..]),
    ]
    .into_iter()
    .collect();
    for (d, data) in blobs {
        let hex = d.trim_start_matches("sha256:");
        append_file(&mut b, &format!("blobs/sha256/{hex}"), data, 0o644)?;
    }
    b.into_inner()
        .and_then(|mut w| w.flush().map(|_| ()))
        .map_err(|e| format!("cannot write {}: {e}", out.display()))?;
    Ok(manifest_digest)
}

/// Builds `busybox:latest` from a static busybox binary into an OCI
/// image-layout tarball at `out`; returns the manifest digest.
pub fn build_busybox(busybox: &Path, out: &Path, name: &str) -> Result<String, String> {
    let layer = busybox_layer(busybox)?;
    write_oci_tar(
        out,
        name,
        &layer,
        json!({
            "Env": ["PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"],
            "Cmd": ["sh"],
            "WorkingDir": "/",
        }),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_normalized_as_docker_does() {
        assert_eq!(normalize("busybox"), "docker.io/library/busybox:latest");
        assert_eq!(normalize("busybox:1.36"), "docker.io/library/busybox:1.36");
        assert_eq!(normalize("me/app"), "docker.io/me/app:latest");
        assert_eq!(
            normalize("docker.io/busybox"),
            "docker.io/library/busybox:latest"
        );
        assert_eq!(normalize("reg.local:5000/x/y"), "reg.local:5000/x/y:latest");
        assert_eq!(normalize("localhost/x:2"), "localhost/x:2");
        assert_eq!(
            normalize("busybox@sha256:abc"),
            "docker.io/library/busybox@sha256:abc"
        );
    }

    #[test]
    fn chain_ids_follow_the_oci_rule() {
        let ids = chain_ids(&["sha256:a".into(), "sha256:b".into()]);
        assert_eq!(ids[0], "sha256:a");
        assert_eq!(ids[1], digest(b"sha256:a sha256:b"));
        assert_eq!(
            digest(b""),
            "sha256:e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"
        );
    }

    #[test]
    fn kubernetes_command_and_args_rules() {
        let c = ImageConfig {
            entrypoint: vec!["/ep".into()],
            cmd: vec!["c".into()],
            ..Default::default()
        };
        let s = |v: &[&str]| v.iter().map(|s| s.to_string()).collect::<Vec<_>>();
        assert_eq!(c.argv(&[], &[]), s(&["/ep", "c"]));
        assert_eq!(c.argv(&[], &s(&["a"])), s(&["/ep", "a"]));
        assert_eq!(c.argv(&s(&["x"]), &[]), s(&["x"]));
        assert_eq!(c.argv(&s(&["x"]), &s(&["y"])), s(&["x", "y"]));
    }

    #[test]
    fn an_oci_tarball_has_layout_index_and_blobs_matching_their_digests() {
        let dir = tempfile::tempdir().unwrap();
        let out = dir.path().join("img.tar");
        let mut layer = tar::Builder::new(Vec::new());
        append_file(&mut layer, "hello.txt", b"hi\n", 0o644).unwrap();
        let layer = layer.into_inner().unwrap();
        let manifest = write_oci_tar(&out, "demo", &layer, json!({"Cmd": ["/x"]})).unwrap();
        let mut names = BTreeMap::new();
        let mut archive = tar::Archive::new(std::fs::File::open(&out).unwrap());
        for entry in archive.entries().unwrap() {
            let mut entry = entry.unwrap();
            let path = entry.path().unwrap().to_string_lossy().into_owned();
            let mut data = Vec::new();
            std::io::Read::read_to_end(&mut entry, &mut data).unwrap();
            if let Some(hex) = path.strip_prefix("blobs/sha256/") {
                assert_eq!(digest(&data), format!("sha256:{hex}"));
            }
            names.insert(path, data);
        }
        let index: Value = serde_json::from_slice(&names["index.json"]).unwrap();
        assert_eq!(index["manifests"][0]["digest"], manifest);
        assert_eq!(
            index["manifests"][0]["annotations"][ANNOTATION_NAME],
            "docker.io/library/demo:latest"
        );
        assert!(names.contains_key("oci-layout"));
        let m: Value = serde_json::from_slice(
            &names[&format!("blobs/sha256/{}", manifest.trim_start_matches("sha256:"))],
        )
        .unwrap();
        let cfg_hex = m["config"]["digest"]
            .as_str()
            .unwrap()
            .trim_start_matches("sha256:");
        let cfg = ImageConfig::parse(&names[&format!("blobs/sha256/{cfg_hex}")]).unwrap();
        assert_eq!(cfg.cmd, vec!["/x".to_string()]);
        assert_eq!(cfg.diff_ids, vec![digest(&layer)]);
    }

    #[test]
    fn the_busybox_layer_links_every_applet() {
        let bb = Path::new("/bin/busybox");
        if !bb.exists() {
            // Debian's busybox-static is what `cargo xtask test` installs;
            // without it there is nothing to package.
            eprintln!("no /bin/busybox here: skipped");
            return;
        }
        let layer = busybox_layer(bb).unwrap();
        let mut archive = tar::Archive::new(&layer[..]);
        let mut links = 0;
        let mut has_binary = false;
        for entry in archive.entries().unwrap() {
            let entry = entry.unwrap();
            let path = entry.path().unwrap().to_string_lossy().into_owned();
            if path == "bin/busybox" {
                has_binary = true;
            }
            if entry.header().entry_type() == tar::EntryType::Symlink {
                assert_eq!(
                    entry.link_name().unwrap().unwrap().to_str(),
                    Some("busybox")
                );
                links += 1;
            }
        }
        assert!(has_binary);
        assert!(links > 50, "{links} applets");
    }
}
