//! Container log files: the guest's stdout and stderr, one timestamped
//! line each, as `2026-12-02T08:14:33.123456789Z stdout text`.

use std::fs::File;
use std::io::Write;
use std::path::Path;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};

use bytes::Bytes;
use wasmtime_wasi::cli::{IsTerminal, StdoutStream};
use wasmtime_wasi::p2::{OutputStream, Pollable, StreamResult};

/// Longest line kept as one; longer output is split.
const MAX_LINE: usize = 16 * 1024;

/// One container run's log file, shared by its two streams.
#[derive(Clone)]
pub(crate) struct LogFile {
    inner: Arc<Mutex<Inner>>,
}

struct Inner {
    file: File,
    written: u64,
    limit: u64,
    truncated: bool,
}

impl LogFile {
    /// Creates (or appends to) the log at `path`, creating its directory.
    pub(crate) fn create(path: &Path, limit: u64) -> std::io::Result<Self> {
        if let Some(dir) = path.parent() {
            std::fs::create_dir_all(dir)?;
        }
        let file = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(path)?;
        Ok(LogFile {
            inner: Arc::new(Mutex::new(Inner {
                file,
                written: 0,
                limit,
                truncated: false,
            })),
        })
    }

    /// A guest stream (`stdout` or `stderr`) writing into this file.
    pub(crate) fn stream(&self, name: &'static str) -> LineStream {
        LineStream {
            log: self.clone(),
            name,
            line: Arc::new(Mutex::new(Vec::new())),
        }
    }

    fn write_line(&self, stream: &str, line: &[u8]) {
        let Ok(mut inner) = self.inner.lock() else {
            return;
        };
        if inner.truncated {
            return;
        }
        let stamp = jiff::Timestamp::now().strftime("%Y-%m-%dT%H:%M:%S%.9fZ");
        let text = String::from_utf8_lossy(line);
        let text = text.trim_end_matches('\r');
        let mut record = format!("{stamp} {stream} {text}\n");
        if inner.written + record.len() as u64 > inner.limit {
            inner.truncated = true;
            record = format!("{stamp} stderr [orchd: log limit reached, further output dropped]\n");
        }
        inner.written += record.len() as u64;
        // A full disk must not kill the guest: its output is lost, not it.
        let _ = inner.file.write_all(record.as_bytes());
    }
}

/// A guest output stream cutting its bytes into log lines.
#[derive(Clone)]
pub(crate) struct LineStream {
    log: LogFile,
    name: &'static str,
    line: Arc<Mutex<Vec<u8>>>,
}

impl LineStream {
    fn accept(&self, bytes: &[u8]) {
        let Ok(mut line) = self.line.lock() else {
            return;
        };
        for &b in bytes {
            if b == b'\n' {
                self.log.write_line(self.name, &line);
                line.clear();
                continue;
            }
            if line.len() >= MAX_LINE {
                self.log.write_line(self.name, &line);
                line.clear();
            }
            line.push(b);
        }
    }
}

impl Drop for LineStream {
    /// A last line without its newline is still output.
    fn drop(&mut self) {
        // Every clone shares the buffer: only the last one flushes.
        if Arc::strong_count(&self.line) == 1
            && let Ok(line) = self.line.lock()
            && !line.is_empty()
        {
            self.log.write_line(self.name, &line);
        }
    }
}

impl IsTerminal for LineStream {
    fn is_terminal(&self) -> bool {
        false
    }
}

impl StdoutStream for LineStream {
    fn p2_stream(&self) -> Box<dyn OutputStream> {
        Box::new(self.clone())
    }

    fn async_stream(&self) -> Box<dyn tokio::io::AsyncWrite + Send + Sync> {
        Box::new(self.clone())
    }
}

impl OutputStream for LineStream {
    fn write(&mut self, bytes: Bytes) -> StreamResult<()> {
        self.accept(&bytes);
        Ok(())
    }

    fn flush(&mut self) -> StreamResult<()> {
        Ok(())
    }

    fn check_write(&mut self) -> StreamResult<usize> {
        Ok(64 * 1024)
    }
}

#[async_trait::async_trait]
impl Pollable for LineStream {
    async fn ready(&mut self) {}
}

impl tokio::io::AsyncWrite for LineStream {
    fn poll_write(
        self: Pin<&mut Self>,
        _cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        self.accept(buf);
        Poll::Ready(Ok(buf.len()))
    }

    fn poll_flush(self: Pin<&mut Self>, _cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Poll::Ready(Ok(()))
    }

    fn poll_shutdown(self: Pin<&mut Self>, _cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Poll::Ready(Ok(()))
    }
}

/// One line of a log file.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LogLine<'a> {
    /// RFC 3339 timestamp with nanoseconds.
    pub timestamp: &'a str,
    /// `stdout` or `stderr`.
    pub stream: &'a str,
    /// What the guest wrote, without the newline.
    pub text: &'a str,
}

/// Parses one line (without its newline) of a log file.
pub fn parse_log_line(line: &str) -> Option<LogLine<'_>> {
    let (timestamp, rest) = line.split_once(' ')?;
    let (stream, text) = rest.split_once(' ').unwrap_or((rest, ""));
    Some(LogLine {
        timestamp,
        stream,
        text,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lines_are_timestamped_split_and_capped() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("x/c.log");
        let log = LogFile::create(&path, 200).unwrap();
        let out = log.stream("stdout");
        out.accept(b"hello\nwor");
        out.accept(b"ld\n");
        let err = log.stream("stderr");
        err.accept(b"tail without newline");
        drop(err);
        let text = std::fs::read_to_string(&path).unwrap();
        let lines: Vec<LogLine> = text.lines().filter_map(parse_log_line).collect();
        assert_eq!(lines.len(), 3, "{text}");
        assert_eq!((lines[0].stream, lines[0].text), ("stdout", "hello"));
        assert_eq!(lines[1].text, "world");
        assert_eq!(
            (lines[2].stream, lines[2].text),
            ("stderr", "tail without newline")
        );
        assert!(lines[0].timestamp.parse::<jiff::Timestamp>().is_ok());
        for _ in 0..10 {
            out.accept(b"0123456789012345678901234567890123456789\n");
        }
        let text = std::fs::read_to_string(&path).unwrap();
        assert!(text.len() <= 200 + 100, "{}", text.len());
        assert!(text.contains("log limit reached"));
    }
}
