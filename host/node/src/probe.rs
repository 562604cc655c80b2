//! Container probes and lifecycle hook handlers, as the kubelet runs them:
//! the spec of a probe (`exec`, `httpGet`, `tcpSocket`; its timing and
//! thresholds), the threshold state machine deciding when a result flips,
//! and the checks themselves (an exec in the container, an HTTP GET, a TCP
//! connect to the pod's IP).

use std::time::Duration;

use serde_json::Value;

use crate::runtime::RunningContainer;

/// What a probe or a hook does.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Action {
    /// Run a command in the container: exit 0 is success.
    Exec(Vec<String>),
    /// GET `path` on `host:port`: a status from 200 to 399 is success.
    Http {
        /// Host (the pod IP unless given).
        host: String,
        /// Port.
        port: u16,
        /// Path with query.
        path: String,
        /// `HTTP` or `HTTPS`.
        scheme: String,
        /// Extra request headers.
        headers: Vec<(String, String)>,
    },
    /// Open a TCP connection to `host:port`.
    Tcp {
        /// Host (the pod IP unless given).
        host: String,
        /// Port.
        port: u16,
    },
    /// Wait (a PreStop `sleep` hook).
    Sleep(Duration),
}

/// Resolves a probe port: a number, or the name of one of the container's
/// `ports`.
fn port(value: &Value, container: &Value) -> Result<u16, String> {
    if let Some(n) = value.as_u64() {
        return u16::try_from(n).map_err(|_| format!("port {n} is out of range"));
    }
    let name = value.as_str().ok_or("the port is missing")?;
    if let Ok(n) = name.parse::<u16>() {
        return Ok(n);
    }
    container["ports"]
        .as_array()
        .into_iter()
        .flatten()
        .find(|p| p["name"] == name)
        .and_then(|p| p["containerPort"].as_u64())
        .and_then(|n| u16::try_from(n).ok())
        .ok_or_else(|| format!("the container has no port named {name:?}"))
}

/// The action of a probe or handler object (`exec`, `httpGet`,
/// `tcpSocket`, `sleep`); `pod_ip` is the default host.
pub fn action(handler: &Value, container: &Value, pod_ip: &str) -> Result<Action, String> {
    let host = |v: &Value| {
        v["host"]
            .as_str()
            .filter(|h| !h.is_empty())
            .unwrap_or(pod_ip)
            .to_string()
    };
    if let Some(exec) = handler.get("exec").filter(|v| v.is_object()) {
        let command: Vec<String> = exec["command"]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(|c| c.as_str().map(str::to_string))
            .collect();
        if command.is_empty() {
            return Err("exec has no command".into());
        }
        return Ok(Action::Exec(command));
    }
    if let Some(http) = handler.get("httpGet").filter(|v| v.is_object()) {
        let path = http["path"].as_str().unwrap_or("/");
        return Ok(Action::Http {
            host: host(http),
            port: port(&http["port"], container)?,
            path: if path.starts_with('/') {
                path.to_string()
            } else {
                format!("/{path}")
            },
            scheme: http["scheme"].as_str().unwrap_or("HTTP").to_uppercase(),
            headers: http["httpHeaders"]
                .as_array()
                .into_iter()
                .flatten()
                .filter_map(|h| Some((h["name"].as_str()?.into(), h["value"].as_str()?.into())))
                .collect(),
        });
    }
    if let Some(tcp) = handler.get("tcpSocket").filter(|v| v.is_object()) {
        return Ok(Action::Tcp {
            host: host(tcp),
            port: port(&tcp["port"], container)?,
        });
    }
    if let Some(sleep) = handler.get("sleep").filter(|v| v.is_object()) {
        let secs = sleep["seconds"].as_u64().ok_or("sleep has no seconds")?;
        return Ok(Action::Sleep(Duration::from_secs(secs)));
    }
    Err("the handler has none of exec, httpGet, tcpSocket, sleep".into())
}

/// A probe of a container, with Kubernetes' defaults.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Probe {
    /// What it checks.
    pub action: Action,
    /// `initialDelaySeconds` (0).
    pub initial_delay: Duration,
    /// `periodSeconds` (10).
    pub period: Duration,
    /// `timeoutSeconds` (1).
    pub timeout: Duration,
    /// `successThreshold` (1).
    pub success_threshold: u32,
    /// `failureThreshold` (3).
    pub failure_threshold: u32,
}

impl Probe {
    /// The probe at `container[field]` (`livenessProbe`...), if any.
    pub fn of(container: &Value, field: &str, pod_ip: &str) -> Option<Result<Probe, String>> {
        let p = container.get(field).filter(|p| p.is_object())?;
        let secs = |f: &str, default: u64, min: u64| {
            Duration::from_secs(p[f].as_u64().unwrap_or(default).max(min))
        };
        let count = |f: &str, default: u32| {
            p[f].as_u64()
                .and_then(|n| u32::try_from(n).ok())
                .unwrap_or(default)
                .max(1)
        };
        Some(action(p, container, pod_ip).map(|action| Probe {
            action,
            initial_delay: secs("initialDelaySeconds", 0, 0),
            period: secs("periodSeconds", 10, 1),
            timeout: secs("timeoutSeconds", 1, 1),
            success_threshold: count("successThreshold", 1),
            failure_threshold: count("failureThreshold", 3),
        }))
    }
}

/// The consecutive-result counter of one probe: its result flips to
/// success after `success_threshold` successes in a row and to failure
/// after `failure_threshold` failures in a row.
#[derive(Clone, Debug)]
pub struct Threshold {
    success_threshold: u32,
    failure_threshold: u32,
    successes: u32,
    failures: u32,
    /// The current result.
    pub ok: bool,
}

impl Threshold {
    /// A counter starting at `initial` (readiness and startup start failed,
    /// liveness succeeded, as in the kubelet).
    pub fn new(probe: &Probe, initial: bool) -> Self {
        Threshold {
            success_threshold: probe.success_threshold,
            failure_threshold: probe.failure_threshold,
            successes: 0,
            failures: 0,
            ok: initial,
        }
    }

    /// Counts one result; returns the new result if it flipped.
    pub fn record(&mut self, success: bool) -> Option<bool> {
        if success {
            self.failures = 0;
            self.successes = self.successes.saturating_add(1);
            if !self.ok && self.successes >= self.success_threshold {
                self.ok = true;
                return Some(true);
            }
        } else {
            self.successes = 0;
            self.failures = self.failures.saturating_add(1);
            if self.ok && self.failures >= self.failure_threshold {
                self.ok = false;
                return Some(false);
            }
        }
        None
    }
}

/// Runs `action` once against `container`; an error says why it failed
/// (the text of an `Unhealthy` or failed-hook event).
pub async fn run(
    action: &Action,
    container: &dyn RunningContainer,
    timeout: Duration,
) -> Result<(), String> {
    match action {
        Action::Exec(command) => {
            let out = container
                .exec(command.clone(), Vec::new(), timeout)
                .await
                .map_err(|e| format!("command {command:?} failed: {e}"))?;
            if out.code == 0 {
                Ok(())
            } else {
                let mut text = String::from_utf8_lossy(&out.stdout).into_owned();
                text.push_str(&String::from_utf8_lossy(&out.stderr));
                let text = text.trim();
                Err(if text.is_empty() {
                    format!("command {command:?} exited with {}", out.code)
                } else {
                    format!("command {command:?} exited with {}: {text}", out.code)
                })
            }
        }
        Action::Http {
            host,
            port,
            path,
            scheme,
            headers,
        } => {
            if scheme != "HTTP" {
                return Err(format!("{scheme} probes are not supported (only HTTP)"));
            }
            match tokio::time::timeout(timeout, http_get(host, *port, path, headers)).await {
                Ok(Ok(code)) if (200..400).contains(&code) => Ok(()),
                Ok(Ok(code)) => Err(format!("HTTP probe failed with statuscode: {code}")),
                Ok(Err(e)) => Err(format!("Get \"http://{host}:{port}{path}\": {e}")),
                Err(_) => Err(format!(
                    "Get \"http://{host}:{port}{path}\": context deadline exceeded (timeout {}s)",
                    timeout.as_secs()
                )),
            }
        }
        Action::Tcp { host, port } => {
            match tokio::time::timeout(
                timeout,
                tokio::net::TcpStream::connect((host.as_str(), *port)),
            )
            .await
            {
                Ok(Ok(_)) => Ok(()),
                Ok(Err(e)) => Err(format!("dial tcp {host}:{port}: {e}")),
                Err(_) => Err(format!("dial tcp {host}:{port}: i/o timeout")),
            }
        }
        Action::Sleep(d) => {
            tokio::time::sleep(*d).await;
            Ok(())
        }
    }
}

/// A minimal HTTP/1.1 GET: returns the status code.
async fn http_get(
    host: &str,
    port: u16,
    path: &str,
    headers: &[(String, String)],
) -> std::io::Result<u16> {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut stream = tokio::net::TcpStream::connect((host, port)).await?;
    let mut request = format!(
        "GET {path} HTTP/1.1\r\nHost: {host}:{port}\r\nUser-Agent: kube-probe/1.37\r\nAccept: */*\r\nConnection: close\r\n"
    );
    for (name, value) in headers {
        request.push_str(&format!("{name}: {value}\r\n"));
    }
    request.push_str("\r\n");
    stream.write_all(request.as_bytes()).await?;
    let mut head = Vec::new();
    let mut buf = [0u8; 512];
    while !head.windows(2).any(|w| w == b"\r\n") && head.len() < 8192 {
        let n = stream.read(&mut buf).await?;
        if n == 0 {
            break;
        }
        head.extend_from_slice(&buf[..n]);
    }
    let line = String::from_utf8_lossy(&head);
    line.split_whitespace()
        .nth(1)
        .and_then(|c| c.parse().ok())
        .ok_or_else(|| std::io::Error::other("malformed HTTP response"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn probes_parse_with_defaults_and_named_ports() {
        let c = json!({"ports": [{"name": "http", "containerPort": 8080}],
            "readinessProbe": {"httpGet": {"path": "healthz", "port": "http"}, "periodSeconds": 2},
            "livenessProbe": {"tcpSocket": {"port": 9000}, "failureThreshold": 1, "timeoutSeconds": 3},
            "startupProbe": {"exec": {"command": ["check", "ok"]}, "initialDelaySeconds": 4}});
        let r = Probe::of(&c, "readinessProbe", "127.0.0.1")
            .unwrap()
            .unwrap();
        assert_eq!(
            r.action,
            Action::Http {
                host: "127.0.0.1".into(),
                port: 8080,
                path: "/healthz".into(),
                scheme: "HTTP".into(),
                headers: vec![]
            }
        );
        assert_eq!(
            (
                r.period,
                r.timeout,
                r.success_threshold,
                r.failure_threshold
            ),
            (Duration::from_secs(2), Duration::from_secs(1), 1, 3)
        );
        let l = Probe::of(&c, "livenessProbe", "10.0.0.1").unwrap().unwrap();
        assert_eq!(
            l.action,
            Action::Tcp {
                host: "10.0.0.1".into(),
                port: 9000
            }
        );
        assert_eq!(
            (l.failure_threshold, l.timeout),
            (1, Duration::from_secs(3))
        );
        let s = Probe::of(&c, "startupProbe", "x").unwrap().unwrap();
        assert_eq!(s.action, Action::Exec(vec!["check".into(), "ok".into()]));
        assert_eq!(s.initial_delay, Duration::from_secs(4));
        assert!(Probe::of(&c, "nope", "x").is_none());
        let bad = json!({"livenessProbe": {"httpGet": {"port": "missing"}}});
        assert!(Probe::of(&bad, "livenessProbe", "x").unwrap().is_err());
        let empty = json!({"livenessProbe": {"periodSeconds": 1}});
        assert!(Probe::of(&empty, "livenessProbe", "x").unwrap().is_err());
        let sleep = json!({"sleep": {"seconds": 2}});
        assert_eq!(
            action(&sleep, &c, "x").unwrap(),
            Action::Sleep(Duration::from_secs(2))
        );
    }

    fn probe(success: u32, failure: u32) -> Probe {
        Probe {
            action: Action::Sleep(Duration::ZERO),
            initial_delay: Duration::ZERO,
            period: Duration::from_secs(1),
            timeout: Duration::from_secs(1),
            success_threshold: success,
            failure_threshold: failure,
        }
    }

    #[test]
    fn results_flip_only_after_their_threshold_in_a_row() {
        // Liveness: starts fine, fails after 3 failures in a row.
        let mut t = Threshold::new(&probe(1, 3), true);
        assert_eq!(t.record(false), None);
        assert_eq!(t.record(false), None);
        assert_eq!(t.record(true), None, "a success resets the failures");
        assert_eq!(t.record(false), None);
        assert_eq!(t.record(false), None);
        assert_eq!(t.record(false), Some(false));
        assert_eq!(t.record(false), None, "already failed");
        assert_eq!(t.record(true), Some(true));

        // Readiness with successThreshold 2: starts failed.
        let mut t = Threshold::new(&probe(2, 1), false);
        assert!(!t.ok);
        assert_eq!(t.record(true), None);
        assert_eq!(t.record(false), None, "already failed");
        assert_eq!(t.record(true), None);
        assert_eq!(t.record(true), Some(true));
        assert_eq!(t.record(false), Some(false));
    }

    #[tokio::test]
    async fn http_and_tcp_checks_reach_a_real_server() {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        tokio::spawn(async move {
            loop {
                let Ok((mut s, _)) = listener.accept().await else {
                    return;
                };
                let mut buf = [0u8; 1024];
                let n = s.read(&mut buf).await.unwrap_or(0);
                let text = String::from_utf8_lossy(&buf[..n]).to_string();
                let code = if text.starts_with("GET /ok ") {
                    200
                } else {
                    503
                };
                let _ = s
                    .write_all(format!("HTTP/1.1 {code} X\r\nContent-Length: 0\r\n\r\n").as_bytes())
                    .await;
            }
        });
        let http = |path: &str| Action::Http {
            host: "127.0.0.1".into(),
            port,
            path: path.into(),
            scheme: "HTTP".into(),
            headers: vec![],
        };
        struct NoExec;
        #[async_trait::async_trait]
        impl RunningContainer for NoExec {
            fn id(&self) -> String {
                "no-exec".into()
            }
            fn started_at(&self) -> jiff::Timestamp {
                jiff::Timestamp::now()
            }
            fn stopper(&self) -> Box<dyn Fn() + Send + Sync> {
                Box::new(|| {})
            }
            async fn wait(&self) -> crate::runtime::ContainerExit {
                unreachable!()
            }
        }
        let t = Duration::from_secs(2);
        assert_eq!(run(&http("/ok"), &NoExec, t).await, Ok(()));
        let err = run(&http("/bad"), &NoExec, t).await.unwrap_err();
        assert!(err.contains("statuscode: 503"), "{err}");
        let tcp = Action::Tcp {
            host: "127.0.0.1".into(),
            port,
        };
        assert_eq!(run(&tcp, &NoExec, t).await, Ok(()));
        let closed = Action::Tcp {
            host: "127.0.0.1".into(),
            port: 1,
        };
        assert!(
            run(&closed, &NoExec, t)
                .await
                .unwrap_err()
                .starts_with("dial tcp 127.0.0.1:1")
        );
        let exec = Action::Exec(vec!["x".into()]);
        assert!(
            run(&exec, &NoExec, t)
                .await
                .unwrap_err()
                .contains("not supported")
        );
    }
}
