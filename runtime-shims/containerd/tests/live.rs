//! Against a real containerd (ignored by default: it needs root, runc and a
//! containerd started on `ORCHD_CONTAINERD_SOCKET`; the e2e suite starts
//! one). Run: `ORCHD_CONTAINERD_SOCKET=/path/containerd.sock cargo test
//! -p orchd-runtime-containerd --test live -- --ignored`.

use std::path::PathBuf;
use std::time::Duration;

use orchd_runtime_containerd::{ContainerSpec, Containerd, ExitReason, image};

async fn client(dir: &std::path::Path) -> Containerd {
    let socket = PathBuf::from(
        std::env::var("ORCHD_CONTAINERD_SOCKET").expect("set ORCHD_CONTAINERD_SOCKET"),
    );
    let c = Containerd::connect(&socket, dir).await.unwrap();
    let tar = dir.join("busybox.tar");
    image::build_busybox(std::path::Path::new("/bin/busybox"), &tar, "busybox").unwrap();
    let names = c
        .import(&tar, &mut |m: &str| eprintln!("{m}"))
        .await
        .unwrap();
    assert_eq!(names, vec!["docker.io/library/busybox:latest".to_string()]);
    c
}

fn spec(dir: &std::path::Path, name: &str, command: &[&str]) -> ContainerSpec {
    ContainerSpec {
        pod_uid: "live-test".into(),
        pod_name: "live".into(),
        node: "live-node".into(),
        name: name.into(),
        image: "busybox".into(),
        command: command.iter().map(|s| s.to_string()).collect(),
        cgroup_parent: "/orchd-live/podlive".into(),
        log_path: dir.join(format!("{name}.log")),
        ..Default::default()
    }
}

#[tokio::test]
#[ignore]
async fn runs_logs_ooms_execs_and_cleans_up() {
    let dir = tempfile::tempdir().unwrap();
    let c = client(dir.path()).await;

    let s = spec(
        dir.path(),
        "echo",
        &["sh", "-c", "echo out; echo err >&2; exit 3"],
    );
    let log = s.log_path.clone();
    let exit = c.start(s).await.unwrap().wait().await;
    assert_eq!(exit.code, 3);
    assert_eq!(exit.reason, ExitReason::Error);
    let text = std::fs::read_to_string(&log).unwrap();
    assert!(
        text.contains(" stdout out\n") && text.contains(" stderr err\n"),
        "{text}"
    );

    let mut s = spec(
        dir.path(),
        "hog",
        &[
            "sh",
            "-c",
            "x=$(head -c 100000000 /dev/zero | tr '\\0' a); echo survived",
        ],
    );
    s.memory_limit = Some(16 << 20);
    let exit = c.start(s).await.unwrap().wait().await;
    assert_eq!(exit.reason, ExitReason::OomKilled, "{exit:?}");
    assert_eq!(exit.code, 137);

    let running = c
        .start(spec(dir.path(), "sleeper", &["sleep", "60"]))
        .await
        .unwrap();
    let (code, out, _) = running
        .exec(
            vec!["sh".into(), "-c".into(), "cat; echo done".into()],
            b"in\n".to_vec(),
            Duration::from_secs(10),
        )
        .await
        .unwrap();
    assert_eq!((code, out.as_slice()), (0, &b"in\ndone\n"[..]));
    running.stopper()();
    let exit = running.wait().await;
    assert_eq!((exit.code, exit.reason), (137, ExitReason::Killed));

    let missing = c
        .start(spec(dir.path(), "nope", &["no-such-command"]))
        .await;
    // runc fails to start the process: a start error, not a create error.
    assert!(
        matches!(&missing, Err(orchd_runtime_containerd::StartError::Start(m))
            if m.contains(r#"exec: "no-such-command": executable file not found in $PATH"#)),
        "{:?}",
        missing.err()
    );
    // A limit below what runc's init already uses: the cgroup write is
    // refused (v1: EBUSY) or the init OOM-killed (v2).
    let mut tiny = spec(dir.path(), "tiny", &["true"]);
    tiny.memory_limit = Some(1 << 20);
    let tiny = c.start(tiny).await;
    assert!(
        matches!(&tiny, Err(orchd_runtime_containerd::StartError::Start(m)) if m.contains("memory limit")),
        "{:?}",
        tiny.err()
    );
    let ghost = c
        .start(ContainerSpec {
            image: "ghost".into(),
            ..spec(dir.path(), "g", &["true"])
        })
        .await;
    assert!(matches!(
        ghost,
        Err(orchd_runtime_containerd::StartError::Image(_))
    ));
    assert_eq!(
        c.remove_leftovers("live-node").await.unwrap(),
        0,
        "every container was removed"
    );
    orchd_runtime_containerd::cgroups::remove("/orchd-live");
}
