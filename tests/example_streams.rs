//! `examples/streams_echo_{server,client}.rs` and
//! `examples/protocol_echo_{server,client}.rs` (asyncio's documentation
//! echo pairs), on both backends: each client against each server, and a
//! Python asyncio client against each server when python3 is present.

mod common;

use std::io::{BufRead, BufReader, Read};
use std::path::Path;
use std::process::{Child, Command, Stdio};

fn backends() -> Vec<&'static str> {
    if cfg!(feature = "fallback") {
        return vec!["fallback"];
    }
    match ringloop::EventLoop::builder()
        .driver(ringloop::DriverChoice::Uring)
        .build()
    {
        Ok(_) => vec!["uring", "fallback"],
        Err(e) => {
            assert!(!common::require_uring(), "io_uring required but unavailable: {e}");
            eprintln!("SKIP [uring]: {e}");
            vec!["fallback"]
        }
    }
}

/// Starts a server example; returns it, its stdout reader and its address.
fn start(dir: &Path, name: &str, backend: &str) -> (Child, BufReader<std::process::ChildStdout>, String) {
    let mut server = Command::new(dir.join(name))
        .arg("127.0.0.1:0")
        .env("RINGLOOP_DRIVER", backend)
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let mut out = BufReader::new(server.stdout.take().unwrap());
    let mut first = String::new();
    out.read_line(&mut first).unwrap();
    // "Serving on 127.0.0.1:PORT (backend)"
    assert!(
        first.starts_with("Serving on ") && first.ends_with(&format!("({backend})\n")),
        "{first:?}"
    );
    let addr = first.split_whitespace().nth(2).unwrap().to_string();
    (server, out, addr)
}

/// Stops the server and returns the rest of what it printed.
fn stop(mut server: Child, mut out: BufReader<std::process::ChildStdout>) -> String {
    let _ = server.kill();
    let _ = server.wait();
    let mut rest = String::new();
    out.read_to_string(&mut rest).unwrap();
    rest
}

fn run_client(dir: &Path, name: &str, addr: &str, backend: &str) -> String {
    let out = Command::new(dir.join(name))
        .args([addr, "Hello World!"])
        .env("RINGLOOP_DRIVER", backend)
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(
        out.status.success(),
        "[{backend}] {name} failed: {stdout} {}",
        String::from_utf8_lossy(&out.stderr)
    );
    stdout
}

const STREAMS_CLIENT_OUT: &str = "Send: \"Hello World!\"\nReceived: \"Hello World!\"\nClose the connection\n";
const PROTOCOL_CLIENT_OUT: &str =
    "Data sent: \"Hello World!\"\nData received: \"Hello World!\"\nThe server closed the connection\n";

#[test]
fn streams_and_protocol_echo_examples_interoperate() {
    let dir = common::examples::build_examples().unwrap();
    for backend in backends() {
        for server_name in ["streams_echo_server", "protocol_echo_server"] {
            let (server, out, addr) = start(&dir, server_name, backend);
            let a = run_client(&dir, "streams_echo_client", &addr, backend);
            let b = run_client(&dir, "protocol_echo_client", &addr, backend);
            let printed = stop(server, out);
            assert_eq!(a, STREAMS_CLIENT_OUT, "[{backend}] streams client vs {server_name}");
            assert_eq!(b, PROTOCOL_CLIENT_OUT, "[{backend}] protocol client vs {server_name}");
            let expected_lines: &[&str] = if server_name == "streams_echo_server" {
                &[
                    "Received \"Hello World!\" from 127.0.0.1:",
                    "Send: \"Hello World!\"",
                    "Close the connection",
                ]
            } else {
                &[
                    "Connection from 127.0.0.1:",
                    "Data received: \"Hello World!\"",
                    "Send: \"Hello World!\"",
                    "Close the client socket",
                ]
            };
            let lines: Vec<&str> = printed.lines().collect();
            assert_eq!(
                lines.len(),
                2 * expected_lines.len(),
                "[{backend}] {server_name}: {printed}"
            );
            for (line, want) in lines.iter().zip(expected_lines.iter().cycle()) {
                assert!(
                    line.starts_with(want),
                    "[{backend}] {server_name}: {line:?} is not {want:?}"
                );
            }
        }
    }
}

const PY_CLIENT: &str = r#"
import asyncio, sys
async def main(host, port):
    reader, writer = await asyncio.open_connection(host, int(port))
    writer.write(b'Hello from Python!')
    await writer.drain()
    data = await reader.read()
    writer.close()
    await writer.wait_closed()
    print(f'Received: {data.decode()!r}')
asyncio.run(main(*sys.argv[1].rsplit(':', 1)))
"#;

#[test]
fn python_asyncio_client_against_the_echo_example_servers() {
    if !std::process::Command::new("python3")
        .arg("--version")
        .output()
        .is_ok_and(|o| o.status.success())
    {
        eprintln!("SKIP: python3 not found; the Python interop test needs it");
        return;
    }
    let dir = common::examples::build_examples().unwrap();
    for backend in backends() {
        for server_name in ["streams_echo_server", "protocol_echo_server"] {
            let (server, out, addr) = start(&dir, server_name, backend);
            let py = Command::new("python3").args(["-c", PY_CLIENT, &addr]).output().unwrap();
            stop(server, out);
            assert!(
                py.status.success(),
                "[{backend}] python vs {server_name}: {}",
                String::from_utf8_lossy(&py.stderr)
            );
            assert_eq!(String::from_utf8_lossy(&py.stdout), "Received: 'Hello from Python!'\n");
        }
    }
}
