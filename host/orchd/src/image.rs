//! `orchd image`: container images in containerd, which pods of the `runc`
//! RuntimeClass run. No registry is reachable, so images come from OCI
//! image-layout tarballs: `orchd image import FILE.tar`; `orchd image
//! build-busybox FILE.tar` makes one from a static busybox binary.

use std::path::PathBuf;

use anyhow::Context;
use orchd_runtime_containerd as ctrd;

/// Options of `orchd image`.
#[derive(clap::Args)]
pub struct ImageArgs {
    #[command(subcommand)]
    command: ImageCommand,
}

#[derive(clap::Subcommand)]
enum ImageCommand {
    /// Import an OCI image-layout tarball into containerd (namespace
    /// `orchd`), unpacking its layers for the overlayfs snapshotter.
    Import {
        /// The tarball.
        file: PathBuf,
        /// containerd's socket.
        #[arg(long, default_value = crate::cluster::CONTAINERD_SOCKET)]
        address: PathBuf,
    },
    /// Build an OCI image-layout tarball of a busybox image: one layer with
    /// a static busybox binary and a link per applet.
    BuildBusybox {
        /// Where to write the tarball.
        file: PathBuf,
        /// The static busybox binary (Debian: busybox-static).
        #[arg(long, default_value = "/bin/busybox")]
        busybox: PathBuf,
        /// The image's name.
        #[arg(long, default_value = "busybox:latest")]
        name: String,
    },
}

/// Runs `orchd image ...`.
pub async fn run(args: ImageArgs) -> anyhow::Result<()> {
    match args.command {
        ImageCommand::Import { file, address } => {
            // FIFOs are not needed to import; the client wants a directory.
            let run_dir = std::env::temp_dir().join(format!("orchd-image-{}", std::process::id()));
            let client = ctrd::Containerd::connect(&address, &run_dir)
                .await
                .map_err(anyhow::Error::msg)?;
            out!(
                "importing {} into containerd at {}",
                file.display(),
                address.display()
            );
            let result = client
                .import(&file, &mut |step: &str| out!("  {step}"))
                .await;
            let _ = std::fs::remove_dir_all(&run_dir);
            let names = result
                .map_err(anyhow::Error::msg)
                .with_context(|| format!("cannot import {}", file.display()))?;
            for n in names {
                out!("imported {n}");
            }
            Ok(())
        }
        ImageCommand::BuildBusybox {
            file,
            busybox,
            name,
        } => {
            let digest =
                ctrd::image::build_busybox(&busybox, &file, &name).map_err(anyhow::Error::msg)?;
            out!(
                "built {} ({digest}) from {} into {}",
                ctrd::image::normalize(&name),
                busybox.display(),
                file.display()
            );
            Ok(())
        }
    }
}
