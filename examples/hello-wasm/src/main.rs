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
//! * `--message TEXT`: what each line says (default `hello from wasm`).
//!
//! The environment variable `GREETING` overrides the message too.

use std::time::Duration;

fn main() {
    let mut count: Option<u64> = None;
    let mut exit_code = 0;
    let mut interval = Duration::from_millis(1000);
    let mut alloc = false;
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
            "--message" => message = value("--message"),
            other => {
                eprintln!("hello-wasm: unknown option {other:?}");
                std::process::exit(2);
            }
        }
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
    if exit_code != 0 {
        eprintln!("hello-wasm: exiting with {exit_code}");
    }
    std::process::exit(exit_code);
}
