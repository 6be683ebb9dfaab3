//! Runs `examples/ctrl_c.rs` on both backends and presses Ctrl+C: once the
//! three tasks have printed `waiting`, SIGINT goes to the example process,
//! which must cancel the three tasks (`cancel task` / `true` each), run the
//! loop once more, close it and exit successfully — long before the first
//! task's two-second sleep would have ended.
//!
//! The example is built like `tests/examples.rs` builds them (same profile
//! and features, `CARGO_TARGET_DIR` honoured). Backends are picked with
//! `RINGLOOP_DRIVER`; without io_uring the uring run is skipped (said on
//! stderr) unless `RINGLOOP_REQUIRE_URING=1`.

use std::io::{BufRead, BufReader, Read};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::OnceLock;
use std::sync::mpsc;
use std::time::{Duration, Instant};

use ringloop::{DriverChoice, EventLoop};

mod common;

/// Generous bound for the example to start and print its first lines on a
/// loaded machine.
const STARTUP_TIMEOUT: Duration = Duration::from_secs(30);

fn example() -> &'static Path {
    static EXE: OnceLock<Result<PathBuf, String>> = OnceLock::new();
    let exe = EXE.get_or_init(|| common::examples::build_examples().map(|dir| dir.join("ctrl_c")));
    match exe {
        Ok(p) => p,
        Err(e) => panic!("{e}"),
    }
}

fn uring_available() -> bool {
    if cfg!(feature = "fallback") {
        eprintln!("SKIP [uring]: built with the `fallback` feature");
        return false;
    }
    match EventLoop::builder().driver(DriverChoice::Uring).build() {
        Ok(_) => true,
        Err(e) if std::env::var("RINGLOOP_REQUIRE_URING").is_ok_and(|v| v == "1") => {
            panic!("RINGLOOP_REQUIRE_URING=1 but io_uring is unavailable: {e}")
        }
        Err(e) => {
            eprintln!("SKIP [uring]: io_uring unavailable here ({e})");
            false
        }
    }
}

fn press_ctrl_c_after_three_waiting_lines(backend: &str) {
    let mut child = Command::new(example())
        .env("RINGLOOP_DRIVER", backend)
        .env("RINGLOOP_DEBUG", "1")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("start examples/ctrl_c");
    let pid = child.id() as libc::pid_t;
    let (tx, rx) = mpsc::channel();
    let stdout = BufReader::new(child.stdout.take().expect("piped"));
    let reader = std::thread::spawn(move || {
        for line in stdout.lines() {
            let Ok(line) = line else { break };
            if tx.send(line).is_err() {
                break;
            }
        }
    });
    let mut stderr = child.stderr.take().expect("piped");
    let stderr = std::thread::spawn(move || {
        let mut s = String::new();
        let _ = stderr.read_to_string(&mut s);
        s
    });

    let mut lines = Vec::new();
    let started = Instant::now();
    while lines.iter().filter(|l| *l == "waiting").count() < 3 {
        let left = STARTUP_TIMEOUT.saturating_sub(started.elapsed());
        match rx.recv_timeout(left) {
            Ok(line) => lines.push(line),
            Err(e) => {
                let _ = child.kill();
                panic!("[{backend}] no three `waiting` lines ({e:?}); got {lines:?}");
            }
        }
    }
    let interrupted = Instant::now();
    // SAFETY: kill(2) on our own child's pid, which is not reaped yet.
    assert_eq!(unsafe { libc::kill(pid, libc::SIGINT) }, 0, "kill(SIGINT)");

    let status = loop {
        if let Some(status) = child.try_wait().expect("try_wait") {
            break status;
        }
        if interrupted.elapsed() > STARTUP_TIMEOUT {
            let _ = child.kill();
            panic!("[{backend}] the example did not exit after SIGINT; printed {lines:?}");
        }
        std::thread::sleep(Duration::from_millis(10));
    };
    let exited_after = interrupted.elapsed();
    reader.join().expect("stdout reader");
    lines.extend(rx.try_iter());
    let stderr = stderr.join().expect("stderr reader");
    let ctx = format!(
        "[{backend}] status {status}, {exited_after:?} after SIGINT\n--- stdout ---\n{lines:#?}\n--- stderr ---\n{stderr}"
    );

    assert!(status.success(), "{ctx}");
    assert!(
        stderr.contains(&format!("event loop on the {backend} backend")),
        "not run on the requested backend: {ctx}"
    );
    let expected = [
        "waiting",
        "waiting",
        "waiting",
        "cancel task",
        "true",
        "cancel task",
        "true",
        "cancel task",
        "true",
    ];
    assert_eq!(lines, expected, "{ctx}");
    // The shortest task sleeps 2 s: it must have been cancelled, not finished.
    assert!(exited_after < Duration::from_secs(3), "{ctx}");
}

#[test]
fn ctrl_c_cancels_every_task_and_closes_the_loop_on_uring() {
    if uring_available() {
        press_ctrl_c_after_three_waiting_lines("uring");
    }
}

#[test]
fn ctrl_c_cancels_every_task_and_closes_the_loop_on_fallback() {
    press_ctrl_c_after_three_waiting_lines("fallback");
}
