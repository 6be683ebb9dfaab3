//! `examples/hyper_hello.rs`, `examples/https_hello.rs` and
//! `examples/hyper_client.rs` (features `hyper` + `tls`), on both backends:
//! the client gets answers over HTTP/1.1 (keep-alive) and HTTP/2, plain
//! and TLS, and Ctrl+C (SIGINT) shuts the servers down gracefully.
#![cfg(all(feature = "hyper", feature = "tls"))]

#[path = "common/tls_certs.rs"]
mod certs;
mod common;

use std::io::{BufRead, BufReader, Read};
use std::path::PathBuf;
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

/// Builds the three examples with this test binary's features (so the
/// library build is shared) and returns their directory.
fn build() -> PathBuf {
    let mut features = vec!["hyper", "tls"];
    if cfg!(feature = "fallback") {
        features.push("fallback");
    }
    if cfg!(feature = "bytes") {
        features.push("bytes");
    }
    let mut cmd = Command::new(env!("CARGO"));
    cmd.args([
        "build",
        "--quiet",
        "--example",
        "hyper_hello",
        "--example",
        "hyper_client",
    ])
    .args(["--example", "https_hello", "--features", &features.join(",")])
    .current_dir(env!("CARGO_MANIFEST_DIR"));
    if !cfg!(debug_assertions) {
        cmd.arg("--release");
    }
    let status = cmd.status().expect("run cargo");
    assert!(status.success(), "building the hyper examples failed");
    let profile = if cfg!(debug_assertions) { "debug" } else { "release" };
    common::examples::target_dir().join(profile).join("examples")
}

/// Starts a server example; returns it and the address from its
/// `listening on ADDR (BACKEND)` line.
fn start(path: PathBuf, args: &[&str], backend: &str) -> (Child, String, BufReader<std::process::ChildStdout>) {
    let mut child = Command::new(path)
        .args(args)
        .env("RINGLOOP_DRIVER", backend)
        .stdout(Stdio::piped())
        .spawn()
        .expect("spawn server");
    let mut out = BufReader::new(child.stdout.take().unwrap());
    let mut first = String::new();
    out.read_line(&mut first).unwrap();
    assert!(first.starts_with("listening on "), "{first:?}");
    assert!(first.ends_with(&format!("({backend})\n")), "{first:?}");
    let addr = first.split_whitespace().nth(2).unwrap().to_string();
    (child, addr, out)
}

fn client(dir: &std::path::Path, args: &[&str], backend: &str) -> String {
    let out = Command::new(dir.join("hyper_client"))
        .args(args)
        .env("RINGLOOP_DRIVER", backend)
        .output()
        .expect("run client");
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(
        out.status.success(),
        "[{backend}] client {args:?} failed: {stdout} {}",
        String::from_utf8_lossy(&out.stderr)
    );
    stdout
}

/// SIGINT, then the rest of stdout once the server exited successfully.
fn interrupt(mut child: Child, mut out: BufReader<std::process::ChildStdout>) -> String {
    // SAFETY: kill(2) on our own, not yet reaped child.
    assert_eq!(unsafe { libc::kill(child.id() as i32, libc::SIGINT) }, 0);
    let mut rest = String::new();
    out.read_to_string(&mut rest).unwrap();
    let status = child.wait().unwrap();
    assert!(status.success(), "server exit: {status}");
    rest
}

#[test]
fn hyper_hello_serves_http1_and_h2c_and_shuts_down_on_ctrl_c() {
    let dir = build();
    for backend in backends() {
        let (server, addr, out) = start(dir.join("hyper_hello"), &["127.0.0.1:0"], backend);
        let url = format!("http://{addr}/");
        let h1 = client(&dir, &[&url, "--repeat", "3"], backend);
        let mut want = String::new();
        for i in 1..=3 {
            want += &format!("status: 200 OK\nversion: HTTP/1.1\nHello, world! (HTTP/1.1, request #{i})\n");
        }
        assert_eq!(h1, want, "[{backend}]");
        let h2 = client(&dir, &[&url, "--http2", "--repeat", "2"], backend);
        let mut want = String::new();
        for i in 4..=5 {
            want += &format!("status: 200 OK\nversion: HTTP/2.0\nHello, world! (HTTP/2.0, request #{i})\n");
        }
        assert_eq!(h2, want, "[{backend}]");
        assert_eq!(interrupt(server, out), "shut down after 5 requests\n", "[{backend}]");
    }
}

#[test]
fn https_hello_answers_by_alpn_and_shuts_down_on_ctrl_c() {
    let dir = build();
    let pki = certs::TestPki::new();
    let cert = pki.dir.join("cert.pem").to_string_lossy().into_owned();
    let key = pki.dir.join("key.pem").to_string_lossy().into_owned();
    let ca = pki.ca_path().to_string_lossy().into_owned();
    for backend in backends() {
        let (server, addr, out) = start(dir.join("https_hello"), &["127.0.0.1:0", &cert, &key], backend);
        let port = addr.rsplit(':').next().unwrap();
        let url = format!("https://localhost:{port}/");
        let h2 = client(&dir, &[&url, "--http2", "--cacert", &ca], backend);
        assert_eq!(
            h2, "status: 200 OK\nversion: HTTP/2.0\nHello over TLS! (HTTP/2.0)\n",
            "[{backend}]"
        );
        let h1 = client(&dir, &[&url, "--cacert", &ca, "--repeat", "2"], backend);
        assert_eq!(
            h1,
            "status: 200 OK\nversion: HTTP/1.1\nHello over TLS! (HTTP/1.1)\n".repeat(2),
            "[{backend}]"
        );
        assert_eq!(interrupt(server, out), "shut down\n", "[{backend}]");
    }
}
