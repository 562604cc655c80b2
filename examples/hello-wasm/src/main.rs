//! The demo workload of orchd's wasm runtime: a `wasi:cli` program (build
//! it with `cargo build --release --target wasm32-wasip2 -p hello-wasm`)
//! that prints a numbered line every second.
//!
//! Options (as container `args`):
//! * `--count N`: print N lines, then exit (default: forever);
//! * `--exit CODE`: exit with CODE when done (default 0; under WASI 0.2 a
//!   non-zero code reaches the host as 1);
//! * `--interval-ms MS`: time between lines (default 1000);
//! * `--alloc`: allocate 1 MiB more every 10 ms, touching it, until memory
//!   runs out (a container over its memory limit);
//! * `--hold-mib N`: allocate and touch N MiB first, and keep it while
//!   printing (a pod using memory, for eviction);
//! * `--message TEXT`: what each line says (default `hello from wasm`);
//! * `--serve PORT`: serve HTTP on 0.0.0.0:PORT instead of printing (wasm
//!   pods share the host's network), logging one line per request:
//!   `/healthz` answers 200, or 500 once `--fail-after SECS` have passed,
//!   or 503 until `--ready-after SECS` have; any other path answers 200.
//!
//! Subcommands, for `kubectl exec` (which runs a new instance with the
//! command as argv) and exec probes:
//! * `check http HOST:PORT/PATH`: exit 0 if GET answers 2xx/3xx, else 1;
//! * `check exit CODE`: exit with CODE (under WASI 0.2 a failure is 1);
//! * `cat`: copy stdin to stdout;
//! * `-c 'exit N'` (as `sh -c`): exit with N.
//!
//! The environment variable `GREETING` overrides the message too.

use std::io::{Read, Write};
use std::time::{Duration, Instant};

fn main() {
    let first: Vec<String> = std::env::args().skip(1).take(3).collect();
    match first
        .iter()
        .map(String::as_str)
        .collect::<Vec<_>>()
        .as_slice()
    {
        ["check", "http", target] => std::process::exit(check_http(target)),
        ["check", "exit", code] => std::process::exit(code.parse().unwrap_or(2)),
        ["cat", ..] => {
            let mut input = Vec::new();
            let _ = std::io::stdin().read_to_end(&mut input);
            let _ = std::io::stdout().write_all(&input);
            return;
        }
        ["-c", script, ..] => {
            let code = script
                .strip_prefix("exit ")
                .and_then(|c| c.trim().parse().ok())
                .unwrap_or(0);
            std::process::exit(code);
        }
        _ => {}
    }
    run();
}

/// GETs `HOST:PORT/PATH`: 0 for a 2xx/3xx answer, 1 otherwise.
fn check_http(target: &str) -> i32 {
    let (addr, path) = match target.find('/') {
        Some(i) => (&target[..i], &target[i..]),
        None => (target, "/"),
    };
    let mut stream = match std::net::TcpStream::connect(addr) {
        Ok(s) => s,
        Err(e) => {
            eprintln!("check: cannot connect to {addr}: {e}");
            return 1;
        }
    };
    let _ = write!(
        stream,
        "GET {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n"
    );
    let mut answer = String::new();
    let _ = stream.read_to_string(&mut answer);
    let code: u16 = answer
        .split_whitespace()
        .nth(1)
        .and_then(|c| c.parse().ok())
        .unwrap_or(0);
    println!("check: GET {path} answered {code}");
    if (200..400).contains(&code) { 0 } else { 1 }
}

/// Serves HTTP on `port` forever (see the crate doc).
fn serve(port: u16, fail_after: Option<u64>, ready_after: Option<u64>) {
    let listener = match std::net::TcpListener::bind(("0.0.0.0", port)) {
        Ok(l) => l,
        Err(e) => {
            eprintln!("hello-wasm: cannot listen on port {port}: {e}");
            std::process::exit(1);
        }
    };
    // Non-blocking with short sleeps, so the host can stop the guest
    // between them (it cannot while a host call blocks).
    let polling = listener.set_nonblocking(true).is_ok();
    println!("serving HTTP on port {port}");
    let start = Instant::now();
    loop {
        let (mut stream, _) = match listener.accept() {
            Ok(s) => s,
            Err(e) if polling && e.kind() == std::io::ErrorKind::WouldBlock => {
                std::thread::sleep(Duration::from_millis(20));
                continue;
            }
            Err(e) => {
                eprintln!("hello-wasm: accept: {e}");
                std::thread::sleep(Duration::from_millis(20));
                continue;
            }
        };
        let _ = stream.set_nonblocking(false);
        let _ = stream.set_read_timeout(Some(Duration::from_secs(2)));
        let mut buf = [0u8; 2048];
        let n = stream.read(&mut buf).unwrap_or(0);
        let request = String::from_utf8_lossy(&buf[..n]);
        let line = request.lines().next().unwrap_or("").to_string();
        let path = line.split_whitespace().nth(1).unwrap_or("/").to_string();
        let age = start.elapsed().as_secs();
        let (code, text) = if path == "/healthz" {
            if fail_after.is_some_and(|s| age >= s) {
                (500, "failing")
            } else if ready_after.is_some_and(|s| age < s) {
                (503, "not ready yet")
            } else {
                (200, "ok")
            }
        } else {
            (200, "hello from wasm")
        };
        println!("{line} -> {code}");
        let _ = write!(
            stream,
            "HTTP/1.1 {code} {text}\r\nContent-Type: text/plain\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{text}",
            text.len()
        );
        let _ = stream.flush();
    }
}

fn run() {
    let mut count: Option<u64> = None;
    let mut exit_code = 0;
    let mut interval = Duration::from_millis(1000);
    let mut alloc = false;
    let mut hold_mib: usize = 0;
    let mut serve_port: Option<u16> = None;
    let mut fail_after: Option<u64> = None;
    let mut ready_after: Option<u64> = None;
    let mut message = std::env::var("GREETING").unwrap_or_else(|_| "hello from wasm".into());
    let mut args = std::env::args().skip(1);
    while let Some(arg) = args.next() {
        let mut value = |name: &str| {
            args.next().unwrap_or_else(|| {
                eprintln!("hello-wasm: {name} needs a value");
                std::process::exit(2)
            })
        };
        match arg.as_str() {
            "--count" => count = value("--count").parse().ok(),
            "--exit" => exit_code = value("--exit").parse().unwrap_or(2),
            "--interval-ms" => {
                interval = Duration::from_millis(value("--interval-ms").parse().unwrap_or(1000))
            }
            "--alloc" => alloc = true,
            "--hold-mib" => hold_mib = value("--hold-mib").parse().unwrap_or(0),
            "--message" => message = value("--message"),
            "--serve" => serve_port = value("--serve").parse().ok(),
            "--fail-after" => fail_after = value("--fail-after").parse().ok(),
            "--ready-after" => ready_after = value("--ready-after").parse().ok(),
            other => {
                eprintln!("hello-wasm: unknown option {other:?}");
                std::process::exit(2);
            }
        }
    }
    if let Some(port) = serve_port {
        serve(port, fail_after, ready_after);
    }
    if alloc {
        let mut hoard: Vec<Vec<u8>> = Vec::new();
        loop {
            // Touched, so the memory is really used.
            hoard.push(vec![1u8; 1 << 20]);
            if hoard.len().is_multiple_of(16) {
                println!("allocated {} MiB", hoard.len());
            }
            std::thread::sleep(Duration::from_millis(10));
        }
    }
    // Touched, so the memory is really used; kept until the end.
    let held = std::hint::black_box(vec![1u8; hold_mib << 20]);
    if hold_mib > 0 {
        println!("holding {} MiB", held.len() >> 20);
    }
    let mut n: u64 = 0;
    loop {
        if count.is_some_and(|c| n >= c) {
            break;
        }
        n += 1;
        println!("{message} #{n}");
        if count.is_some_and(|c| n >= c) {
            break;
        }
        std::thread::sleep(interval);
    }
    std::hint::black_box(&held);
    if exit_code != 0 {
        eprintln!("hello-wasm: exiting with {exit_code}");
    }
    std::process::exit(exit_code);
}
