//! orchd's Linux container runtime: real containers through containerd's
//! gRPC API (`containerd-client`), with runc underneath.
//!
//! * **Client** ([`Containerd`]): one connection to a containerd socket;
//!   every call carries the `containerd-namespace` header (containerd 1.6
//!   needs it on every call) for the namespace `orchd`; only the v1
//!   services (content, images, diff, snapshots, containers, tasks,
//!   leases, version) are used, which containerd 1.6 serves.
//! * **Images** ([`image`], [`Containerd::import`]): no registry is
//!   reachable, so images come from OCI image-layout tarballs, imported
//!   through the API: blobs written to the content store, the image
//!   created, its layers unpacked into the overlayfs snapshotter by the
//!   diff service, all under a lease so the garbage collector cannot take
//!   them half-way. [`image::build_busybox`] makes such a tarball from a
//!   static busybox binary.
//! * **Containers** ([`Containerd::start`]): an OCI runtime spec written as
//!   JSON ([`spec`]), a snapshot of the image as rootfs, a task whose
//!   stdout/stderr FIFOs the agent reads into the container's log file
//!   (one `TIMESTAMP STREAM text` line each, as the wasm shim writes),
//!   wait → exit code, OOM kills read from the container's cgroup
//!   ([`cgroups`]), and everything (task, container, snapshot, FIFOs)
//!   removed when it ends.
//! * **Pod network** ([`network`]): a network namespace per pod, joined by
//!   all of its containers, connected through the CNI bridge plugin.

pub mod cgroups;
mod container;
pub mod image;
mod logs;
pub mod network;
pub mod spec;

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use containerd_client::services::v1 as api;
use containerd_client::tonic::{Request, Status, transport::Channel};
use futures::StreamExt;

pub use container::{Container, ContainerSpec, Exit, ExitReason, StartError};

/// The containerd namespace orchd keeps its images and containers in.
pub const NAMESPACE: &str = "orchd";

/// The snapshotter rootfs and layers use.
pub const SNAPSHOTTER: &str = "overlayfs";

/// The runtime (shim) containers run under.
pub const RUNC_RUNTIME: &str = "io.containerd.runc.v2";

/// Label on every container orchd creates: the node that owns it.
pub const LABEL_NODE: &str = "orchd.dev/node";
/// Label: the pod's uid.
pub const LABEL_POD_UID: &str = "orchd.dev/pod-uid";

/// A connection to containerd.
#[derive(Clone)]
pub struct Containerd {
    channel: Channel,
    socket: PathBuf,
    /// FIFOs live here.
    run_dir: PathBuf,
    cgroups: cgroups::CgroupVersion,
    /// Image name → what starting a container of it needs.
    images: Arc<Mutex<HashMap<String, ResolvedImage>>>,
}

/// An image, resolved for running.
#[derive(Clone, Debug)]
pub struct ResolvedImage {
    /// Its full name.
    pub name: String,
    /// The manifest's digest.
    pub digest: String,
    /// The config.
    pub config: image::ImageConfig,
    /// The top layer's chain ID: the snapshot rootfs are prepared from.
    pub chain_id: String,
}

/// A gRPC failure as one line.
pub(crate) fn grpc(what: &str, s: Status) -> String {
    format!("{what}: {}", s.message())
}

impl Containerd {
    /// Connects to containerd at `socket`; `run_dir` holds the FIFOs of
    /// container output. Fails if containerd does not answer.
    pub async fn connect(socket: &Path, run_dir: &Path) -> Result<Self, String> {
        if !socket.exists() {
            return Err(format!(
                "no containerd socket at {} (start containerd, or give its socket)",
                socket.display()
            ));
        }
        let channel = containerd_client::connect(socket)
            .await
            .map_err(|e| format!("cannot connect to containerd at {}: {e}", socket.display()))?;
        std::fs::create_dir_all(run_dir.join("fifo"))
            .map_err(|e| format!("cannot create {}: {e}", run_dir.display()))?;
        let c = Containerd {
            channel,
            socket: socket.to_path_buf(),
            run_dir: run_dir.to_path_buf(),
            cgroups: cgroups::CgroupVersion::detect(),
            images: Arc::new(Mutex::new(HashMap::new())),
        };
        c.version().await?;
        Ok(c)
    }

    /// The socket this client talks to.
    pub fn socket(&self) -> &Path {
        &self.socket
    }

    /// The cgroup version detected at start.
    pub fn cgroup_version(&self) -> cgroups::CgroupVersion {
        self.cgroups
    }

    /// A request carrying the namespace header (and a lease, if given).
    pub(crate) fn req<T>(&self, msg: T, lease: Option<&str>) -> Request<T> {
        let mut r = Request::new(msg);
        let md = r.metadata_mut();
        md.insert(
            "containerd-namespace",
            containerd_client::tonic::metadata::MetadataValue::from_static(NAMESPACE),
        );
        if let Some(l) = lease
            && let Ok(v) = l.parse()
        {
            md.insert("containerd-lease", v);
        }
        r
    }

    /// containerd's version, e.g. `1.6.20~ds1`.
    pub async fn version(&self) -> Result<String, String> {
        let mut c = api::version_client::VersionClient::new(self.channel.clone());
        let v = c
            .version(self.req((), None))
            .await
            .map_err(|e| grpc("containerd version", e))?;
        Ok(v.into_inner().version)
    }

    pub(crate) fn channel(&self) -> Channel {
        self.channel.clone()
    }

    /// Reads a whole blob from the content store.
    pub(crate) async fn read_blob(&self, digest: &str) -> Result<Vec<u8>, String> {
        let mut c = api::content_client::ContentClient::new(self.channel());
        let mut stream = c
            .read(self.req(
                api::ReadContentRequest {
                    digest: digest.to_string(),
                    offset: 0,
                    size: 0,
                },
                None,
            ))
            .await
            .map_err(|e| grpc(&format!("read {digest}"), e))?
            .into_inner();
        let mut out = Vec::new();
        while let Some(chunk) = stream.next().await {
            out.extend(chunk.map_err(|e| grpc(&format!("read {digest}"), e))?.data);
        }
        Ok(out)
    }

    /// Looks an image up by the name a pod gives (normalized), with its
    /// config and rootfs chain ID; cached per name and manifest.
    pub async fn resolve_image(&self, name: &str) -> Result<ResolvedImage, StartError> {
        let full = image::normalize(name);
        let mut images = api::images_client::ImagesClient::new(self.channel());
        let found = images
            .get(self.req(api::GetImageRequest { name: full.clone() }, None))
            .await;
        let target = match found {
            Ok(r) => r
                .into_inner()
                .image
                .and_then(|i| i.target)
                .ok_or_else(|| StartError::Image(format!("image {full} has no target")))?,
            Err(s) if s.code() == containerd_client::tonic::Code::NotFound => {
                return Err(StartError::Image(format!(
                    "image \"{name}\" not found on this node ({full} is not in containerd's \
                     namespace {NAMESPACE}; no registry is reachable: import it with \
                     `orchd image import FILE.tar`)"
                )));
            }
            Err(s) => return Err(StartError::Image(grpc(&format!("image {full}"), s))),
        };
        if let Ok(cache) = self.images.lock()
            && let Some(r) = cache.get(&full)
            && r.digest == target.digest
        {
            return Ok(r.clone());
        }
        let manifest = self
            .read_blob(&target.digest)
            .await
            .map_err(StartError::Image)?;
        let manifest = self
            .pick_manifest(manifest)
            .await
            .map_err(StartError::Image)?;
        let config_digest = manifest["config"]["digest"]
            .as_str()
            .ok_or_else(|| StartError::Image(format!("image {full}: manifest has no config")))?;
        let config = image::ImageConfig::parse(
            &self
                .read_blob(config_digest)
                .await
                .map_err(StartError::Image)?,
        )
        .map_err(StartError::Image)?;
        let chain_id = image::chain_ids(&config.diff_ids)
            .pop()
            .ok_or_else(|| StartError::Image(format!("image {full} has no layers")))?;
        let resolved = ResolvedImage {
            name: full.clone(),
            digest: target.digest,
            config,
            chain_id,
        };
        if let Ok(mut cache) = self.images.lock() {
            cache.insert(full, resolved.clone());
        }
        Ok(resolved)
    }

    /// The manifest for this platform: `bytes` itself, or the matching
    /// entry when it is an index.
    async fn pick_manifest(&self, bytes: Vec<u8>) -> Result<serde_json::Value, String> {
        let v: serde_json::Value =
            serde_json::from_slice(&bytes).map_err(|e| format!("bad manifest: {e}"))?;
        let Some(list) = v["manifests"].as_array() else {
            return Ok(v);
        };
        let chosen = list
            .iter()
            .find(|m| {
                m["platform"]["architecture"] == image::oci_arch() && m["platform"]["os"] == "linux"
            })
            .or_else(|| list.first())
            .and_then(|m| m["digest"].as_str())
            .ok_or("an image index without manifests")?;
        let bytes = self.read_blob(chosen).await?;
        serde_json::from_slice(&bytes).map_err(|e| format!("bad manifest: {e}"))
    }

    /// Removes what containers of `node` left behind (after a crash of the
    /// agent): tasks killed, containers and their snapshots deleted.
    /// Returns how many were removed.
    pub async fn remove_leftovers(&self, node: &str) -> Result<usize, String> {
        let mut containers = api::containers_client::ContainersClient::new(self.channel());
        let list = containers
            .list(self.req(
                api::ListContainersRequest {
                    filters: vec![format!("labels.\"{LABEL_NODE}\"=={node}")],
                },
                None,
            ))
            .await
            .map_err(|e| grpc("list containers", e))?
            .into_inner()
            .containers;
        let n = list.len();
        for c in list {
            container::remove_container(self, &c.id, true).await;
        }
        Ok(n)
    }

    /// Imports an OCI image-layout tarball; `progress` hears each step.
    /// Returns the names of the images created.
    pub async fn import(
        &self,
        tar: &Path,
        progress: &mut (dyn FnMut(&str) + Send),
    ) -> Result<Vec<String>, String> {
        container::import(self, tar, progress).await
    }

    /// Starts a container; returns once its process runs.
    pub async fn start(&self, spec: ContainerSpec) -> Result<Container, StartError> {
        container::start(self, spec).await
    }

    /// The directory of this client's FIFOs.
    pub(crate) fn fifo_dir(&self) -> PathBuf {
        self.run_dir.join("fifo")
    }
}
