//! Container log files and reading them for `kubectl logs`.
//!
//! Each run of a container writes `<root>/<pod uid>/<container>/<N>.log`,
//! N being its restart count at the start, so the current run is the
//! highest N and `--previous` the one before.

use std::collections::HashSet;
use std::io::{Read, Seek, SeekFrom};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use futures::stream::BoxStream;

/// How often a followed log is checked for more output.
const FOLLOW_POLL: Duration = Duration::from_millis(200);

/// What `kubectl logs` asks for.
#[derive(Clone, Debug, Default)]
pub struct LogQuery {
    /// Only the last N lines.
    pub tail_lines: Option<usize>,
    /// Prefix each line with its RFC 3339 timestamp.
    pub timestamps: bool,
    /// Keep streaming until the container ends.
    pub follow: bool,
    /// The run before the current one.
    pub previous: bool,
}

/// The node's container logs.
#[derive(Clone)]
pub struct LogFiles {
    root: PathBuf,
    /// Log files whose container is still running.
    live: Arc<Mutex<HashSet<PathBuf>>>,
}

impl LogFiles {
    /// Logs under `root`.
    pub fn new(root: PathBuf) -> Self {
        LogFiles {
            root,
            live: Arc::new(Mutex::new(HashSet::new())),
        }
    }

    /// The file of run `attempt` of `container` in pod `uid`.
    pub fn path(&self, uid: &str, container: &str, attempt: u32) -> PathBuf {
        self.root
            .join(uid)
            .join(container)
            .join(format!("{attempt}.log"))
    }

    /// Marks a log live (its container runs) or finished.
    pub fn set_live(&self, path: &Path, live: bool) {
        if let Ok(mut set) = self.live.lock() {
            if live {
                set.insert(path.to_path_buf());
            } else {
                set.remove(path);
            }
        }
    }

    fn is_live(&self, path: &Path) -> bool {
        self.live.lock().map(|s| s.contains(path)).unwrap_or(false)
    }

    /// Removes a pod's logs (it is gone).
    pub fn remove_pod(&self, uid: &str) {
        if !uid.is_empty() && !uid.contains('/') {
            let _ = std::fs::remove_dir_all(self.root.join(uid));
        }
    }

    /// The runs of a container that have a log, oldest first.
    fn runs(&self, uid: &str, container: &str) -> Vec<u32> {
        let mut runs: Vec<u32> = std::fs::read_dir(self.root.join(uid).join(container))
            .into_iter()
            .flatten()
            .flatten()
            .filter_map(|e| e.file_name().to_str()?.strip_suffix(".log")?.parse().ok())
            .collect();
        runs.sort_unstable();
        runs
    }

    /// The log of `container` in pod `uid`, as `kubectl logs` prints it.
    pub fn read(
        &self,
        uid: &str,
        container: &str,
        query: &LogQuery,
    ) -> Result<BoxStream<'static, Bytes>, String> {
        if uid.contains('/') || container.contains('/') || container.contains("..") {
            return Err(format!("invalid container name {container:?}"));
        }
        let runs = self.runs(uid, container);
        let run = if query.previous {
            runs.len().checked_sub(2).map(|i| runs[i])
        } else {
            runs.last().copied()
        };
        let Some(run) = run else {
            return Err(if query.previous {
                format!("previous terminated container {container:?} not found")
            } else {
                format!("container {container:?} is waiting to start: no output yet")
            });
        };
        let path = self.path(uid, container, run);
        let mut offset = 0u64;
        let text = read_from(&path, &mut offset);
        // Only whole lines: a partial last line waits for its newline.
        let complete = text.rfind('\n').map_or(0, |i| i + 1);
        offset -= (text.len() - complete) as u64;
        let lines: Vec<&str> = text[..complete].lines().collect();
        let skip = query
            .tail_lines
            .map_or(0, |n| lines.len().saturating_sub(n));
        let first = render(&lines[skip..], query.timestamps);
        let head = futures::stream::once(async move { Bytes::from(first) });
        if !query.follow || (query.previous) {
            return Ok(Box::pin(head));
        }
        let logs = self.clone();
        let timestamps = query.timestamps;
        let rest = futures::stream::unfold(
            (logs, path, offset, false),
            move |(logs, path, mut offset, done)| async move {
                if done {
                    return None;
                }
                loop {
                    let live = logs.is_live(&path);
                    let text = read_from(&path, &mut offset);
                    let complete = if live {
                        text.rfind('\n').map_or(0, |i| i + 1)
                    } else {
                        text.len()
                    };
                    offset -= (text.len() - complete) as u64;
                    if complete > 0 {
                        let lines: Vec<&str> = text[..complete].lines().collect();
                        let chunk = Bytes::from(render(&lines, timestamps));
                        return Some((chunk, (logs, path, offset, !live)));
                    }
                    if !live {
                        return None;
                    }
                    tokio::time::sleep(FOLLOW_POLL).await;
                }
            },
        );
        Ok(Box::pin(futures::StreamExt::chain(head, rest)))
    }
}

/// What the file holds after `offset` (advanced past it).
fn read_from(path: &Path, offset: &mut u64) -> String {
    let Ok(mut file) = std::fs::File::open(path) else {
        return String::new();
    };
    if file.seek(SeekFrom::Start(*offset)).is_err() {
        return String::new();
    }
    let mut bytes = Vec::new();
    let _ = file.read_to_end(&mut bytes);
    *offset += bytes.len() as u64;
    // A multi-byte character cut by a concurrent write: keep it for later.
    match String::from_utf8(bytes) {
        Ok(s) => s,
        Err(e) => {
            let valid = e.utf8_error().valid_up_to();
            let bytes = e.into_bytes();
            *offset -= (bytes.len() - valid) as u64;
            String::from_utf8_lossy(&bytes[..valid]).into_owned()
        }
    }
}

/// Log records as `kubectl logs` shows them.
fn render(lines: &[&str], timestamps: bool) -> String {
    let mut out = String::new();
    for line in lines {
        let Some(l) = orchd_runtime_wasm::parse_log_line(line) else {
            continue;
        };
        if timestamps {
            out.push_str(l.timestamp);
            out.push(' ');
        }
        out.push_str(l.text);
        out.push('\n');
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use futures::StreamExt;

    async fn collect(s: BoxStream<'static, Bytes>) -> String {
        let parts: Vec<Bytes> = s.collect().await;
        parts
            .iter()
            .map(|b| String::from_utf8_lossy(b).into_owned())
            .collect()
    }

    #[tokio::test]
    async fn tail_timestamps_previous_and_follow() {
        let dir = tempfile::tempdir().unwrap();
        let logs = LogFiles::new(dir.path().to_path_buf());
        let p0 = logs.path("u", "c", 0);
        std::fs::create_dir_all(p0.parent().unwrap()).unwrap();
        std::fs::write(&p0, "2026-01-01T00:00:00.000000001Z stdout old\n").unwrap();
        let p1 = logs.path("u", "c", 1);
        std::fs::write(
            &p1,
            "2026-01-01T00:00:01.000000001Z stdout one\n2026-01-01T00:00:02.000000001Z stderr two\n2026-01-01T00:00:03.000000001Z stdout thr",
        )
        .unwrap();
        let q = LogQuery::default();
        assert_eq!(
            collect(logs.read("u", "c", &q).unwrap()).await,
            "one\ntwo\n"
        );
        let q = LogQuery {
            tail_lines: Some(1),
            timestamps: true,
            ..Default::default()
        };
        assert_eq!(
            collect(logs.read("u", "c", &q).unwrap()).await,
            "2026-01-01T00:00:02.000000001Z two\n"
        );
        let q = LogQuery {
            previous: true,
            ..Default::default()
        };
        assert_eq!(collect(logs.read("u", "c", &q).unwrap()).await, "old\n");
        assert!(logs.read("u", "nope", &LogQuery::default()).is_err());

        // Follow: streams until the run ends, then the partial line too.
        logs.set_live(&p1, true);
        let q = LogQuery {
            follow: true,
            ..Default::default()
        };
        let stream = logs.read("u", "c", &q).unwrap();
        let reader = tokio::spawn(collect(stream));
        tokio::time::sleep(Duration::from_millis(300)).await;
        assert!(!reader.is_finished());
        use std::io::Write;
        let mut f = std::fs::OpenOptions::new().append(true).open(&p1).unwrap();
        f.write_all(b"ee\n2026-01-01T00:00:04.000000001Z stdout four\n")
            .unwrap();
        logs.set_live(&p1, false);
        let text = tokio::time::timeout(Duration::from_secs(5), reader)
            .await
            .unwrap()
            .unwrap();
        assert_eq!(text, "one\ntwo\nthree\nfour\n");
    }
}
