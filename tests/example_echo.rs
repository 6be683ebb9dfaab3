//! `examples/echo_server.rs` + `examples/echo_client.rs`, on both backends.

mod common;

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};

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

#[test]
fn echo_client_gets_every_message_back_intact_from_echo_server() {
    let dir = common::examples::build_examples().unwrap();
    for backend in backends() {
        let mut server = Command::new(dir.join("echo_server"))
            .arg("127.0.0.1:0")
            .env("RINGLOOP_DRIVER", backend)
            .stdout(Stdio::piped())
            .spawn()
            .unwrap();
        let mut first = String::new();
        BufReader::new(server.stdout.take().unwrap())
            .read_line(&mut first)
            .unwrap();
        // "echo server listening on 127.0.0.1:PORT (backend)"
        assert!(first.ends_with(&format!("({backend})\n")), "{first:?}");
        let addr = first.split_whitespace().nth(4).unwrap().to_string();
        let out = Command::new(dir.join("echo_client"))
            .args([addr.as_str(), "300", "1000"])
            .env("RINGLOOP_DRIVER", backend)
            .output()
            .unwrap();
        let _ = server.kill();
        let _ = server.wait();
        let stdout = String::from_utf8_lossy(&out.stdout);
        assert!(
            out.status.success(),
            "[{backend}] client failed: {stdout} {}",
            String::from_utf8_lossy(&out.stderr)
        );
        assert!(
            stdout.starts_with("300 messages of 1000 B echoed intact"),
            "[{backend}] {stdout}"
        );
    }
}
