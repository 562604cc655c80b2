//! `pods/NAME/exec` over WebSocket, as kubectl 1.30+ speaks it: the
//! request (GET or POST with `command=..&stdin=..&stdout=..&stderr=..&tty=..`)
//! is upgraded to a WebSocket with the subprotocol `v5.channel.k8s.io` (or
//! `v4.channel.k8s.io`); every binary message starts with a channel byte:
//! 0 stdin (client → server), 1 stdout, 2 stderr, 3 error (a `Status` JSON
//! with the exit code, then the connection closes), 4 resize (ignored), and
//! in v5 255 "close" (`[255, channel]`: the client's stdin is at its end).
//!
//! The command runs through [`PodExec`] (the node agent in this process),
//! which takes all of stdin and answers with all of stdout and stderr: so
//! `kubectl exec -i` collects stdin until the client closes it, then runs
//! the command; output is not streamed while it runs, and `-t` gets no
//! terminal (stderr is merged into stdout, resizes are ignored).
//!
//! The WebSocket framing (RFC 6455) is implemented here, with the SHA-1
//! the handshake needs: a few hundred lines instead of a WebSocket crate
//! and its dependencies.

use std::time::Duration;

use base64::Engine as _;
use hyper::body::Incoming;
use hyper::{Response, StatusCode, header};
use hyper_util::rt::TokioIo;
use serde_json::{Value, json};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};

use crate::codec::{self, Body};
use crate::status::ApiError;
use crate::{ApiServer, ExecRequest};

/// The subprotocols served, most preferred first.
const PROTOCOLS: &[&str] = &["v5.channel.k8s.io", "v4.channel.k8s.io"];

/// Largest stdin an exec takes, and largest message accepted.
const MAX_STDIN: usize = 16 << 20;

/// How long a command run by `kubectl exec` may take.
pub const EXEC_TIMEOUT: Duration = Duration::from_secs(3600);

const STDIN: u8 = 0;
const STDOUT: u8 = 1;
const STDERR: u8 = 2;
const ERROR: u8 = 3;
const CLOSE: u8 = 255;

/// `namespace` and `name` of a `/api/v1/namespaces/NS/pods/NAME/exec` path.
pub(crate) fn exec_path(path: &str) -> Option<(&str, &str)> {
    let rest = path.strip_prefix("/api/v1/namespaces/")?;
    let parts: Vec<&str> = rest.trim_end_matches('/').split('/').collect();
    match parts.as_slice() {
        [ns, "pods", name, "exec"] if !ns.is_empty() && !name.is_empty() => Some((ns, name)),
        _ => None,
    }
}

/// Whether the request asks for a WebSocket upgrade.
pub(crate) fn wants_websocket(headers: &header::HeaderMap) -> bool {
    let has = |name: header::HeaderName, token: &str| {
        headers.get_all(name).iter().any(|v| {
            v.to_str()
                .is_ok_and(|v| v.split(',').any(|t| t.trim().eq_ignore_ascii_case(token)))
        })
    };
    has(header::UPGRADE, "websocket") && has(header::CONNECTION, "upgrade")
}

/// The `Sec-WebSocket-Accept` answer to a `Sec-WebSocket-Key`.
pub fn accept_key(key: &str) -> String {
    let mut input = key.trim().as_bytes().to_vec();
    input.extend_from_slice(b"258EAFA5-E914-47DA-95CA-C5AB0DC85B11");
    base64::engine::general_purpose::STANDARD.encode(sha1(&input))
}

/// SHA-1 (FIPS 180-4), for the WebSocket handshake only.
pub fn sha1(data: &[u8]) -> [u8; 20] {
    let mut h: [u32; 5] = [0x67452301, 0xEFCDAB89, 0x98BADCFE, 0x10325476, 0xC3D2E1F0];
    let mut message = data.to_vec();
    let bits = (data.len() as u64).wrapping_mul(8);
    message.push(0x80);
    while message.len() % 64 != 56 {
        message.push(0);
    }
    message.extend_from_slice(&bits.to_be_bytes());
    for block in message.chunks(64) {
        let mut w = [0u32; 80];
        for (i, word) in block.chunks(4).enumerate() {
            w[i] = u32::from_be_bytes([word[0], word[1], word[2], word[3]]);
        }
        for i in 16..80 {
            w[i] = (w[i - 3] ^ w[i - 8] ^ w[i - 14] ^ w[i - 16]).rotate_left(1);
        }
        let [mut a, mut b, mut c, mut d, mut e] = h;
        for (i, wi) in w.iter().enumerate() {
            let (f, k) = match i {
                0..=19 => ((b & c) | (!b & d), 0x5A827999),
                20..=39 => (b ^ c ^ d, 0x6ED9EBA1),
                40..=59 => ((b & c) | (b & d) | (c & d), 0x8F1BBCDC),
                _ => (b ^ c ^ d, 0xCA62C1D6),
            };
            let t = a
                .rotate_left(5)
                .wrapping_add(f)
                .wrapping_add(e)
                .wrapping_add(k)
                .wrapping_add(*wi);
            e = d;
            d = c;
            c = b.rotate_left(30);
            b = a;
            a = t;
        }
        for (x, y) in h.iter_mut().zip([a, b, c, d, e]) {
            *x = x.wrapping_add(y);
        }
    }
    let mut out = [0u8; 20];
    for (i, word) in h.iter().enumerate() {
        out[i * 4..i * 4 + 4].copy_from_slice(&word.to_be_bytes());
    }
    out
}

/// One WebSocket message (fragments joined).
#[derive(Debug, PartialEq, Eq)]
pub enum Message {
    /// Text or binary data.
    Data(Vec<u8>),
    /// A ping to answer.
    Ping(Vec<u8>),
    /// The peer closes.
    Close,
}

/// Reads one message; `None` at the end of the stream.
pub async fn read_message<R: AsyncRead + Unpin>(r: &mut R) -> std::io::Result<Option<Message>> {
    let mut data = Vec::new();
    loop {
        let mut head = [0u8; 2];
        match r.read_exact(&mut head).await {
            Ok(_) => {}
            Err(e) if e.kind() == std::io::ErrorKind::UnexpectedEof => return Ok(None),
            Err(e) => return Err(e),
        }
        let fin = head[0] & 0x80 != 0;
        let opcode = head[0] & 0x0F;
        let masked = head[1] & 0x80 != 0;
        let len = match head[1] & 0x7F {
            126 => u64::from(r.read_u16().await?),
            127 => r.read_u64().await?,
            n => u64::from(n),
        };
        if len as usize > MAX_STDIN || data.len() + len as usize > MAX_STDIN {
            return Err(std::io::Error::other("WebSocket message too large"));
        }
        let mut mask = [0u8; 4];
        if masked {
            r.read_exact(&mut mask).await?;
        }
        let mut payload = vec![0u8; len as usize];
        r.read_exact(&mut payload).await?;
        if masked {
            for (i, b) in payload.iter_mut().enumerate() {
                *b ^= mask[i % 4];
            }
        }
        match opcode {
            0x8 => return Ok(Some(Message::Close)),
            0x9 => return Ok(Some(Message::Ping(payload))),
            0xA => continue,
            _ => {
                data.extend_from_slice(&payload);
                if fin {
                    return Ok(Some(Message::Data(data)));
                }
            }
        }
    }
}

/// Encodes one unmasked server frame.
pub fn frame(opcode: u8, payload: &[u8]) -> Vec<u8> {
    let mut out = vec![0x80 | opcode];
    match payload.len() {
        n if n < 126 => out.push(n as u8),
        n if n <= 0xFFFF => {
            out.push(126);
            out.extend_from_slice(&(n as u16).to_be_bytes());
        }
        n => {
            out.push(127);
            out.extend_from_slice(&(n as u64).to_be_bytes());
        }
    }
    out.extend_from_slice(payload);
    out
}

/// A binary message on `channel`, split so no frame is huge.
fn channel_frames(channel: u8, data: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    for chunk in data.chunks(32 * 1024) {
        let mut payload = Vec::with_capacity(chunk.len() + 1);
        payload.push(channel);
        payload.extend_from_slice(chunk);
        out.extend(frame(0x2, &payload));
    }
    out
}

/// The `Status` kubectl reads on the error channel for an exit `code`.
pub fn exit_status(code: i32, command: &[String]) -> Value {
    if code == 0 {
        return json!({"metadata": {}, "status": "Success"});
    }
    json!({
        "metadata": {},
        "status": "Failure",
        "message": format!("command terminated with non-zero exit code: error executing command {command:?}, exit code {code}"),
        "reason": "NonZeroExitCode",
        "details": {"causes": [{"reason": "ExitCode", "message": code.to_string()}]},
    })
}

fn failure(message: &str) -> Value {
    json!({"metadata": {}, "status": "Failure", "message": message, "reason": "InternalError", "code": 500})
}

impl ApiServer {
    /// Upgrades `pods/NAME/exec` to a WebSocket and runs the command.
    pub(crate) async fn exec_upgrade(
        &self,
        mut req: hyper::Request<Incoming>,
        namespace: &str,
        name: &str,
    ) -> Response<Body> {
        let query = req.uri().query().unwrap_or("").to_string();
        let params = crate::request::parse_query(&query);
        let flag = |k: &str| matches!(params.get(k).map(String::as_str), Some("true" | "1"));
        let command: Vec<String> = query
            .split('&')
            .filter_map(|p| p.split_once('='))
            .filter(|(k, _)| *k == "command")
            .map(|(_, v)| crate::request::percent_decode(v))
            .collect();
        let offered: Vec<String> = req
            .headers()
            .get_all(header::SEC_WEBSOCKET_PROTOCOL)
            .iter()
            .filter_map(|v| v.to_str().ok())
            .flat_map(|v| v.split(',').map(|p| p.trim().to_string()))
            .collect();
        let Some(protocol) = PROTOCOLS.iter().find(|p| offered.iter().any(|o| o == *p)) else {
            return codec::error_response(&ApiError::bad_request(format!(
                "unsupported WebSocket subprotocols {offered:?}: orchd serves {PROTOCOLS:?}"
            )));
        };
        let Some(key) = req
            .headers()
            .get(header::SEC_WEBSOCKET_KEY)
            .and_then(|k| k.to_str().ok())
            .map(accept_key)
        else {
            return codec::error_response(&ApiError::bad_request("missing Sec-WebSocket-Key"));
        };
        // Resolve the pod now; errors still go over the error channel, as
        // kubectl prints them from there.
        let prepared = self
            .exec_request(namespace, name, &params, command.clone())
            .await;
        let v5 = *protocol == "v5.channel.k8s.io";
        let want_stdin = flag("stdin");
        let tty = flag("tty");
        let runner = self.pod_exec.get().cloned();
        let upgrade = hyper::upgrade::on(&mut req);
        tokio::spawn(async move {
            let Ok(upgraded) = upgrade.await else { return };
            let mut io = TokioIo::new(upgraded);
            // An empty stdout message says the stream is up, as Kubernetes does.
            let _ = io.write_all(&channel_frames(STDOUT, &[])).await;
            let status = match (prepared, runner) {
                (Err(e), _) => failure(&e.message),
                (Ok(_), None) => failure("no node agent runs in this orchd process"),
                (Ok(mut request), Some(runner)) => {
                    if want_stdin {
                        match read_stdin(&mut io, v5).await {
                            Ok(stdin) => request.stdin = stdin,
                            // The client went away or sent garbage.
                            Err(_) => return,
                        }
                    }
                    match runner.exec(request).await {
                        Ok(out) => {
                            let mut stdout = out.stdout;
                            if tty {
                                stdout.extend_from_slice(&out.stderr);
                            } else if !out.stderr.is_empty() {
                                let _ = io.write_all(&channel_frames(STDERR, &out.stderr)).await;
                            }
                            if !stdout.is_empty() {
                                let _ = io.write_all(&channel_frames(STDOUT, &stdout)).await;
                            }
                            exit_status(out.code, &command)
                        }
                        Err(e) => failure(&e),
                    }
                }
            };
            let body = serde_json::to_vec(&status).unwrap_or_default();
            let _ = io.write_all(&channel_frames(ERROR, &body)).await;
            let _ = io.write_all(&frame(0x8, &1000u16.to_be_bytes())).await;
            let _ = io.flush().await;
            let _ = io.shutdown().await;
        });
        Response::builder()
            .status(StatusCode::SWITCHING_PROTOCOLS)
            .header(header::UPGRADE, "websocket")
            .header(header::CONNECTION, "Upgrade")
            .header(header::SEC_WEBSOCKET_ACCEPT, key)
            .header(header::SEC_WEBSOCKET_PROTOCOL, *protocol)
            .body(codec::full(""))
            .unwrap_or_else(|_| Response::new(codec::full("")))
    }

    /// What the node needs to run the command: the pod's uid and the
    /// container (the only one when not named).
    async fn exec_request(
        &self,
        namespace: &str,
        name: &str,
        params: &std::collections::HashMap<String, String>,
        command: Vec<String>,
    ) -> Result<ExecRequest, ApiError> {
        if command.is_empty() {
            return Err(ApiError::bad_request(
                "you must specify at least one command for the container",
            ));
        }
        let key = orchd_store::ObjectKey::namespaced("pods", namespace, name);
        let pod = self.store.get(&key).await.map_err(|e| ApiError {
            code: 404,
            reason: "NotFound",
            message: format!("pods \"{name}\" not found: {e}"),
            details: None,
        })?;
        let names: Vec<&str> = pod["spec"]["containers"]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(|c| c["name"].as_str())
            .collect();
        let container = match params.get("container").filter(|c| !c.is_empty()) {
            Some(c) if names.contains(&c.as_str()) => c.clone(),
            Some(c) => {
                return Err(ApiError::bad_request(format!(
                    "container {c} is not valid for pod {name}"
                )));
            }
            None => names.first().map(|n| n.to_string()).unwrap_or_default(),
        };
        if pod["status"]["phase"] != "Running" {
            return Err(ApiError::bad_request(format!(
                "cannot exec into a container in a completed pod; current phase is {}",
                pod["status"]["phase"].as_str().unwrap_or("Pending")
            )));
        }
        Ok(ExecRequest {
            uid: pod["metadata"]["uid"].as_str().unwrap_or("").to_string(),
            container,
            command,
            stdin: Vec::new(),
            timeout: EXEC_TIMEOUT,
        })
    }
}

/// Collects the client's stdin until it closes it (v5: `[255, 0]`) or the
/// connection.
async fn read_stdin<S: AsyncRead + AsyncWrite + Unpin>(
    io: &mut S,
    v5: bool,
) -> std::io::Result<Vec<u8>> {
    let mut stdin = Vec::new();
    loop {
        match read_message(io).await? {
            None | Some(Message::Close) => return Ok(stdin),
            Some(Message::Ping(p)) => io.write_all(&frame(0xA, &p)).await?,
            Some(Message::Data(d)) => match d.split_first() {
                Some((&STDIN, rest)) => {
                    if stdin.len() + rest.len() > MAX_STDIN {
                        return Err(std::io::Error::other("stdin too large"));
                    }
                    stdin.extend_from_slice(rest);
                }
                Some((&CLOSE, rest)) if v5 && rest.last() == Some(&STDIN) => return Ok(stdin),
                _ => {}
            },
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn hex(b: &[u8]) -> String {
        b.iter().map(|x| format!("{x:02x}")).collect()
    }

    #[test]
    fn sha1_and_the_handshake_answer() {
        assert_eq!(
            hex(&sha1(b"abc")),
            "a9993e364706816aba3e25717850c26c9cd0d89d"
        );
        assert_eq!(hex(&sha1(b"")), "da39a3ee5e6b4b0d3255bfef95601890afd80709");
        assert_eq!(
            hex(&sha1(&[b'a'; 1000])),
            "291e9a6c66994949b57ba5e650361e98fc36b1ba"
        );
        // RFC 6455's example.
        assert_eq!(
            accept_key("dGhlIHNhbXBsZSBub25jZQ=="),
            "s3pPLMBiTxaQ9kYGzzhZRbK+xOo="
        );
    }

    #[test]
    fn exec_paths() {
        assert_eq!(
            exec_path("/api/v1/namespaces/d/pods/p/exec"),
            Some(("d", "p"))
        );
        assert_eq!(exec_path("/api/v1/namespaces/d/pods/p/log"), None);
        assert_eq!(exec_path("/api/v1/namespaces//pods/p/exec"), None);
    }

    #[test]
    fn exit_statuses_carry_the_code_as_kubectl_reads_it() {
        assert_eq!(exit_status(0, &[])["status"], "Success");
        let s = exit_status(3, &["sh".into()]);
        assert_eq!(s["reason"], "NonZeroExitCode");
        assert_eq!(
            s["details"]["causes"][0],
            json!({"reason": "ExitCode", "message": "3"})
        );
    }

    fn client_frame(opcode: u8, fin: bool, payload: &[u8]) -> Vec<u8> {
        let mask = [1u8, 2, 3, 4];
        let mut out = vec![if fin { 0x80 } else { 0 } | opcode];
        if payload.len() < 126 {
            out.push(0x80 | payload.len() as u8);
        } else {
            out.push(0x80 | 126);
            out.extend_from_slice(&(payload.len() as u16).to_be_bytes());
        }
        out.extend_from_slice(&mask);
        out.extend(payload.iter().enumerate().map(|(i, b)| b ^ mask[i % 4]));
        out
    }

    #[tokio::test]
    async fn masked_fragmented_frames_decode_and_stdin_ends_on_close() {
        let big = vec![7u8; 300];
        let mut wire = client_frame(0x2, false, &[STDIN, b'h']);
        wire.extend(client_frame(0x0, true, b"i\n"));
        wire.extend(client_frame(0x9, true, b"p"));
        let mut with_big = vec![STDIN];
        with_big.extend_from_slice(&big);
        wire.extend(client_frame(0x2, true, &with_big));
        wire.extend(client_frame(0x2, true, &[CLOSE, STDIN]));
        wire.extend(client_frame(0x2, true, &[STDIN, b'x']));
        let (mut client, mut server) = tokio::io::duplex(1 << 16);
        client.write_all(&wire).await.unwrap();
        let stdin = read_stdin(&mut server, true).await.unwrap();
        let mut expected = b"hi\n".to_vec();
        expected.extend_from_slice(&big);
        assert_eq!(stdin, expected, "data after the close is not stdin");
        // The ping was answered with a pong.
        let mut pong = [0u8; 3];
        client.read_exact(&mut pong).await.unwrap();
        assert_eq!(pong, [0x8A, 1, b'p']);
    }

    #[tokio::test]
    async fn server_frames_round_trip_through_the_reader() {
        let payload = vec![9u8; 70_000];
        let mut wire = frame(0x2, &payload);
        wire.extend(frame(0x2, b"\x01ok"));
        let mut r = &wire[..];
        assert_eq!(
            read_message(&mut r).await.unwrap(),
            Some(Message::Data(payload))
        );
        assert_eq!(
            read_message(&mut r).await.unwrap(),
            Some(Message::Data(b"\x01ok".to_vec()))
        );
        assert_eq!(read_message(&mut r).await.unwrap(), None);
    }
}
