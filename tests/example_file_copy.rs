//! Runs `examples/file_copy.rs` on both backends (it needs paths made at run
//! time, so it lives outside `tests/examples.rs`'s fixed list).
//!
//! The examples are built once (shared helper in `tests/support/`), then it runs
//! with `RINGLOOP_DRIVER` set to the backend of the test's loop and
//! `RINGLOOP_DEBUG=1`, whose stderr line names the backend it ran on.

mod common;

use ringloop::EventLoop;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::sync::OnceLock;

fn example() -> &'static Path {
    static EXE: OnceLock<Result<PathBuf, String>> = OnceLock::new();
    let exe = EXE.get_or_init(|| common::examples::build_examples().map(|dir| dir.join("file_copy")));
    match exe {
        Ok(p) => p,
        Err(e) => panic!("{e}"),
    }
}

fn run(backend: &str, args: &[&Path]) -> Output {
    Command::new(example())
        .args(args)
        .env("RINGLOOP_DRIVER", backend)
        .env("RINGLOOP_DEBUG", "1")
        .output()
        .expect("cannot start examples/file_copy")
}

fn backend_name(lp: &ringloop::EventLoop) -> &'static str {
    match lp.driver_kind() {
        ringloop::DriverKind::Uring => "uring",
        _ => "fallback",
    }
}

#[ringloop::test]
fn file_copy_example_copies_the_bytes_and_reports_the_count(lp: &EventLoop) {
    let backend = backend_name(lp);
    let dir = std::env::temp_dir().join(format!("ringloop-file-copy-{}-{backend}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    // Not a multiple of the example's chunk size, so the last chunk is short.
    let data: Vec<u8> = (0..3 * 1024 * 1024 + 4321u32)
        .map(|i| (i.wrapping_mul(2654435761) >> 11) as u8)
        .collect();
    let src = dir.join("src");
    let dst = dir.join("dst");
    std::fs::write(&src, &data).unwrap();
    // An existing, longer destination is truncated.
    std::fs::write(&dst, vec![1u8; data.len() + 100]).unwrap();

    let out = run(backend, &[&src, &dst]);
    let (stdout, stderr) = (
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr),
    );
    let ctx = format!(
        "exit {:?}\n--- stdout ---\n{stdout}--- stderr ---\n{stderr}",
        out.status.code()
    );
    assert!(out.status.success(), "{ctx}");
    assert!(
        stderr.contains(&format!("event loop on the {backend} backend")),
        "wrong backend: {ctx}"
    );
    assert_eq!(stdout.trim(), format!("copied {} bytes", data.len()), "{ctx}");
    assert!(std::fs::read(&dst).unwrap() == data, "the copy differs from the source");

    // An empty file copies as 0 bytes.
    let empty = dir.join("empty");
    std::fs::write(&empty, b"").unwrap();
    let out = run(backend, &[&empty, &dst]);
    assert!(out.status.success());
    assert_eq!(String::from_utf8_lossy(&out.stdout).trim(), "copied 0 bytes");
    assert_eq!(std::fs::metadata(&dst).unwrap().len(), 0);

    // A missing source fails with a message naming the error, no panic.
    let out = run(backend, &[&dir.join("missing"), &dst]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(stderr.contains("No such file or directory"), "{stderr}");
    assert!(!stderr.contains("panicked"), "{stderr}");

    // Wrong usage: exit status 2 and a usage line.
    let out = run(backend, &[&src]);
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("usage: file_copy SRC DST"));

    let _ = std::fs::remove_dir_all(&dir);
}
