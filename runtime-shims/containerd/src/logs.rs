//! Container output: the task's stdout and stderr FIFOs read into the
//! container's log file, one `RFC3339-nano-timestamp STREAM text` line
//! each (the format the wasm shim writes and `kubectl logs` reads).

use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use tokio::io::AsyncReadExt;

/// Most log bytes one container run writes; the rest is dropped (with one
/// line saying so), so a process printing in a loop cannot fill the disk.
pub const MAX_LOG_BYTES: u64 = 10 << 20;

/// Longest line kept as one; longer output is split.
const MAX_LINE: usize = 16 * 1024;

/// One run's log file, shared by its two streams.
#[derive(Clone)]
pub(crate) struct LogFile(Arc<Mutex<Inner>>);

struct Inner {
    file: std::fs::File,
    written: u64,
    truncated: bool,
}

impl LogFile {
    /// Creates (or appends to) the log at `path`.
    pub(crate) fn create(path: &Path) -> std::io::Result<Self> {
        if let Some(dir) = path.parent() {
            std::fs::create_dir_all(dir)?;
        }
        let file = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(path)?;
        Ok(LogFile(Arc::new(Mutex::new(Inner {
            file,
            written: 0,
            truncated: false,
        }))))
    }

    pub(crate) fn write_line(&self, stream: &str, line: &[u8]) {
        let Ok(mut inner) = self.0.lock() else {
            return;
        };
        if inner.truncated {
            return;
        }
        let stamp = jiff::Timestamp::now().strftime("%Y-%m-%dT%H:%M:%S%.9fZ");
        let text = String::from_utf8_lossy(line);
        let text = text.trim_end_matches('\r');
        let mut record = format!("{stamp} {stream} {text}\n");
        if inner.written + record.len() as u64 > MAX_LOG_BYTES {
            inner.truncated = true;
            record = format!("{stamp} stderr [orchd: log limit reached, further output dropped]\n");
        }
        inner.written += record.len() as u64;
        // A full disk must not stop the container: its output is lost.
        let _ = inner.file.write_all(record.as_bytes());
    }
}

/// Cuts bytes into lines for a log.
pub(crate) struct Lines {
    log: LogFile,
    stream: &'static str,
    line: Vec<u8>,
}

impl Lines {
    pub(crate) fn new(log: LogFile, stream: &'static str) -> Self {
        Lines {
            log,
            stream,
            line: Vec::new(),
        }
    }

    pub(crate) fn accept(&mut self, bytes: &[u8]) {
        for &b in bytes {
            if b == b'\n' {
                self.log.write_line(self.stream, &self.line);
                self.line.clear();
                continue;
            }
            if self.line.len() >= MAX_LINE {
                self.log.write_line(self.stream, &self.line);
                self.line.clear();
            }
            self.line.push(b);
        }
    }

    /// Writes a last line without its newline.
    pub(crate) fn finish(mut self) {
        if !self.line.is_empty() {
            let line = std::mem::take(&mut self.line);
            self.log.write_line(self.stream, &line);
        }
    }
}

/// A FIFO pair for one process's output.
pub(crate) struct Fifos {
    pub(crate) stdout: PathBuf,
    pub(crate) stderr: PathBuf,
}

impl Fifos {
    /// Creates `<dir>/<id>.stdout` and `.stderr`.
    pub(crate) fn create(dir: &Path, id: &str) -> Result<Self, String> {
        let f = Fifos {
            stdout: dir.join(format!("{id}.stdout")),
            stderr: dir.join(format!("{id}.stderr")),
        };
        for p in [&f.stdout, &f.stderr] {
            let _ = std::fs::remove_file(p);
            rustix::fs::mknodat(
                rustix::fs::CWD,
                p,
                rustix::fs::FileType::Fifo,
                rustix::fs::Mode::from_raw_mode(0o600),
                0,
            )
            .map_err(|e| format!("cannot create the FIFO {}: {e}", p.display()))?;
        }
        Ok(f)
    }

    /// Removes both.
    pub(crate) fn remove(&self) {
        let _ = std::fs::remove_file(&self.stdout);
        let _ = std::fs::remove_file(&self.stderr);
    }
}

/// Opens a FIFO for reading without waiting for a writer (non-blocking,
/// read-only). Opened before the task is created: the shim's open of its
/// writing end waits for a reader. Read only after the task is created:
/// before the shim has its end open, a read returns end-of-file.
pub(crate) fn open_reader(path: &Path) -> std::io::Result<tokio::net::unix::pipe::Receiver> {
    tokio::net::unix::pipe::OpenOptions::new().open_receiver(path)
}

/// How long output may keep arriving after the process has exited
/// (the shim copies what is left, then closes the FIFO).
const DRAIN: std::time::Duration = std::time::Duration::from_secs(2);

/// Reads a FIFO into `sink` until end-of-file (the shim closed it after
/// copying everything), or [`DRAIN`] after `done` fires.
pub(crate) async fn pump(
    mut rx: tokio::net::unix::pipe::Receiver,
    mut sink: impl FnMut(&[u8]) + Send,
    mut done: tokio::sync::watch::Receiver<bool>,
) {
    let mut buf = vec![0u8; 64 * 1024];
    let mut deadline: Option<tokio::time::Instant> = None;
    loop {
        let r = match deadline {
            Some(d) => match tokio::time::timeout_at(d, rx.read(&mut buf)).await {
                Ok(r) => r,
                Err(_) => return,
            },
            None => tokio::select! {
                r = rx.read(&mut buf) => r,
                _ = done.wait_for(|d| *d) => {
                    deadline = Some(tokio::time::Instant::now() + DRAIN);
                    continue;
                }
            },
        };
        match r {
            Ok(0) | Err(_) => return,
            Ok(n) => sink(&buf[..n]),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lines_are_timestamped_and_split() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("a/0.log");
        let log = LogFile::create(&path).unwrap();
        let mut out = Lines::new(log.clone(), "stdout");
        out.accept(b"one\ntw");
        out.accept(b"o\nthree");
        out.finish();
        let text = std::fs::read_to_string(&path).unwrap();
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(lines.len(), 3, "{text}");
        assert!(lines[0].ends_with(" stdout one"));
        assert!(lines[1].ends_with(" stdout two"));
        assert!(lines[2].ends_with(" stdout three"));
        let stamp = lines[0].split(' ').next().unwrap();
        assert!(stamp.parse::<jiff::Timestamp>().is_ok(), "{stamp}");
    }

    #[tokio::test]
    async fn a_fifo_is_read_until_its_writer_closes() {
        let dir = tempfile::tempdir().unwrap();
        let f = Fifos::create(dir.path(), "c1").unwrap();
        let rx = open_reader(&f.stdout).unwrap();
        let (tx_done, done) = tokio::sync::watch::channel(false);
        let got = Arc::new(Mutex::new(Vec::new()));
        let sink = {
            let got = got.clone();
            move |b: &[u8]| got.lock().unwrap().extend_from_slice(b)
        };
        let task = tokio::spawn(pump(rx, sink, done));
        let mut w = std::fs::OpenOptions::new()
            .write(true)
            .open(&f.stdout)
            .unwrap();
        w.write_all(b"hello\n").unwrap();
        w.write_all(b"world\n").unwrap();
        drop(w);
        // End-of-file ends it, without `done`.
        tokio::time::timeout(std::time::Duration::from_secs(5), task)
            .await
            .expect("the pump ends at end-of-file")
            .unwrap();
        drop(tx_done);
        assert_eq!(&*got.lock().unwrap(), b"hello\nworld\n");
        f.remove();
        assert!(!f.stdout.exists());
    }
}
