//! Crash safety: a child process (this test binary, re-executed in child
//! mode) writes to the store and prints every acknowledged write; the
//! parent SIGKILLs it at a random moment, reopens the file and checks that
//! every acknowledged write is there and that revisions keep growing.

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader, Write};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use orchd_store::conformance::Rng;
use orchd_store::{
    ListOptions, ObjectKey, RedbStore, RedbStoreConfig, Revision, Scope, Store, meta,
};
use serde_json::json;

/// Set (to the database path) in the child's environment.
const CHILD_ENV: &str = "ORCHD_STORE_CRASH_CHILD";
const ROUND_ENV: &str = "ORCHD_STORE_CRASH_ROUND";
const ROUNDS: usize = 20;
const WRITERS: usize = 3;
const RESOURCE: &str = "crashwidgets.test.orchd.dev";

fn config(path: &Path) -> RedbStoreConfig {
    RedbStoreConfig {
        path: path.to_path_buf(),
        history_limit: 1_000_000,
        compaction_interval: Duration::ZERO,
    }
}

/// The child's entry point: a no-op in ordinary test runs.
#[test]
fn crash_child() {
    let Ok(path) = std::env::var(CHILD_ENV) else {
        return;
    };
    let round: usize = std::env::var(ROUND_ENV)
        .ok()
        .and_then(|r| r.parse().ok())
        .unwrap_or(0);
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime");
    rt.block_on(child(PathBuf::from(path), round));
}

/// Writes until killed: creates of fresh keys and updates of one counter
/// per writer, printing `ACK <revision> <key> <value>` once acknowledged.
async fn child(path: PathBuf, round: usize) {
    let store = RedbStore::open(config(&path)).expect("child open");
    println!("READY");
    let tasks: Vec<_> = (0..WRITERS)
        .map(|w| {
            let store = store.clone();
            tokio::spawn(async move {
                for i in 0.. {
                    let (name, value) = (format!("r{round}-w{w}-{i}"), format!("v{round}.{w}.{i}"));
                    let k = ObjectKey::namespaced(RESOURCE, "crash", &name);
                    let o = store
                        .create(
                            &k,
                            json!({"metadata": {"name": name}, "spec": {"value": value}}),
                        )
                        .await
                        .expect("create");
                    ack(&o, &name, &value);
                    if i % 2 == 0 {
                        let name = format!("counter-{w}");
                        let k = ObjectKey::namespaced(RESOURCE, "crash", &name);
                        let body = json!({"metadata": {"name": name}, "spec": {"value": value}});
                        let o = match store.update(&k, body.clone()).await {
                            Ok(o) => o,
                            Err(_) => store.create(&k, body).await.expect("create counter"),
                        };
                        ack(&o, &name, &value);
                    }
                }
            })
        })
        .collect();
    for t in tasks {
        let _ = t.await;
    }
}

fn ack(object: &serde_json::Value, name: &str, value: &str) {
    let rv = meta::resource_version(object).expect("rv");
    let mut out = std::io::stdout().lock();
    let _ = writeln!(out, "ACK {rv} {name} {value}");
    let _ = out.flush();
}

struct Ack {
    revision: Revision,
    name: String,
    value: String,
}

fn parse_ack(line: &str) -> Option<Ack> {
    // libtest may have printed its own text before ours on the same line.
    let rest = &line[line.find("ACK ")? + 4..];
    let mut parts = rest.split_whitespace();
    let revision = parts.next()?.parse().ok()?;
    let name = parts.next()?.to_string();
    let value = parts.next()?.to_string();
    Some(Ack {
        revision,
        name,
        value,
    })
}

/// Runs one child until killed after a random delay; returns its
/// acknowledged writes.
fn run_child(exe: &Path, db: &Path, round: usize, delay: Duration) -> Vec<Ack> {
    let mut child = Command::new(exe)
        .args(["crash_child", "--exact", "--nocapture", "--test-threads=1"])
        .env(CHILD_ENV, db)
        .env(ROUND_ENV, round.to_string())
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .expect("spawn child");
    let stdout = child.stdout.take().expect("child stdout");
    let (tx, rx) = mpsc::channel::<String>();
    let reader = std::thread::spawn(move || {
        let mut reader = BufReader::new(stdout);
        loop {
            let mut line = String::new();
            match reader.read_line(&mut line) {
                Ok(0) | Err(_) => break,
                // A line cut by the kill has no newline: not acknowledged.
                Ok(_) if line.ends_with('\n') => {
                    if tx.send(line).is_err() {
                        break;
                    }
                }
                Ok(_) => break,
            }
        }
    });
    let deadline = Instant::now() + Duration::from_secs(30);
    let mut lines = Vec::new();
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        match rx.recv_timeout(left) {
            Ok(l) if l.contains("READY") => break,
            Ok(l) => lines.push(l),
            Err(_) => {
                let _ = child.kill();
                panic!("child did not start");
            }
        }
    }
    std::thread::sleep(delay);
    child.kill().expect("SIGKILL");
    let status = child.wait().expect("wait");
    assert!(!status.success(), "child was killed, not finished");
    reader.join().expect("reader");
    lines.extend(rx.try_iter());
    lines.iter().filter_map(|l| parse_ack(l)).collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn acknowledged_writes_survive_sigkill() {
    let dir = tempfile::tempdir().expect("tempdir");
    let db = dir.path().join("crash.redb");
    let exe = std::env::current_exe().expect("current_exe");
    let seed = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_nanos() as u64)
        .unwrap_or(1);
    eprintln!("crash test seed {seed}");
    let mut rng = Rng::new(seed);

    // Creates: key → (revision, value), exact. Counters: key → the last
    // acknowledged (revision, value); a later unacknowledged write may
    // have landed on top.
    let mut created: BTreeMap<String, (Revision, String)> = BTreeMap::new();
    let mut counters: BTreeMap<String, (Revision, String)> = BTreeMap::new();
    let mut floor: Revision = 0;
    let mut total_acks = 0;

    for round in 0..ROUNDS {
        let delay = Duration::from_millis(20 + rng.below(281));
        let (exe2, db2) = (exe.clone(), db.clone());
        let acks = tokio::task::spawn_blocking(move || run_child(&exe2, &db2, round, delay))
            .await
            .expect("child round");
        total_acks += acks.len();
        for a in acks {
            floor = floor.max(a.revision);
            if a.name.starts_with("counter-") {
                let e = counters.entry(a.name).or_insert((0, String::new()));
                if a.revision > e.0 {
                    *e = (a.revision, a.value);
                }
            } else {
                created.insert(a.name, (a.revision, a.value));
            }
        }

        let store = RedbStore::open(config(&db)).expect("reopen after SIGKILL");
        let current = store.current_revision().await.expect("rev");
        assert!(
            current >= floor,
            "round {round}: revision {current} behind acknowledged {floor}"
        );
        let listed = store
            .list(
                &Scope {
                    resource: RESOURCE.into(),
                    namespace: Some("crash".into()),
                    ..Default::default()
                },
                &ListOptions::default(),
            )
            .await
            .expect("list");
        let stored: BTreeMap<String, (Revision, String)> = listed
            .items
            .iter()
            .map(|o| {
                (
                    meta::meta_str(o, "name").unwrap_or("").to_string(),
                    (
                        meta::resource_version(o).unwrap_or(0),
                        o["spec"]["value"].as_str().unwrap_or("").to_string(),
                    ),
                )
            })
            .collect();
        for (name, want) in &created {
            assert_eq!(
                stored.get(name),
                Some(want),
                "round {round}: acknowledged create of {name} lost"
            );
        }
        for (name, (rev, value)) in &counters {
            let (srev, svalue) = stored
                .get(name)
                .unwrap_or_else(|| panic!("round {round}: counter {name} lost"));
            assert!(
                srev >= rev,
                "round {round}: {name} went back to {srev} from {rev}"
            );
            if srev == rev {
                assert_eq!(svalue, value, "round {round}: {name} changed value");
            }
        }
        assert!(stored.values().all(|(r, _)| *r <= current));

        let probe = format!("probe-{round}");
        let o = store
            .create(
                &ObjectKey::namespaced(RESOURCE, "probe", &probe),
                json!({"metadata": {"name": probe}}),
            )
            .await
            .expect("write after reopen");
        let r = meta::resource_version(&o).expect("rv");
        assert_eq!(r, current + 1, "round {round}: revisions continue");
        floor = r;
        drop(store);
    }
    assert!(
        total_acks > ROUNDS,
        "children acknowledged only {total_acks} writes"
    );
    eprintln!("{total_acks} acknowledged writes over {ROUNDS} kills");
}
