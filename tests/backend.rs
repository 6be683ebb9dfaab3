//! Backend selection: env override, cargo feature, and fallback on ring failure.

mod common;

use ringloop::{DriverChoice, DriverKind, EventLoop};
use std::process::Command;

/// Runs the ignored probe test below in a child process with `env` set and
/// returns the driver kind it reported.
fn driver_kind_in_child(env: &[(&str, &str)]) -> String {
    let exe = std::env::current_exe().unwrap();
    let mut cmd = Command::new(exe);
    cmd.args([
        "--ignored",
        "--exact",
        "child_probe_reports_driver_kind",
        "--nocapture",
        "--test-threads=1",
    ]);
    cmd.env_remove("RINGLOOP_DRIVER");
    for (k, v) in env {
        cmd.env(k, v);
    }
    let out = cmd.output().unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "child failed: {stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    stdout
        .lines()
        .find_map(|l| l.split_once("DRIVER_KIND=").map(|(_, k)| k.trim()))
        .unwrap_or_else(|| panic!("child printed no kind: {stdout}"))
        .to_string()
}

#[test]
#[ignore = "helper: run by the tests below in a child process"]
fn child_probe_reports_driver_kind() {
    let lp = EventLoop::new().unwrap();
    assert_eq!(lp.run_until_complete(async { 1 }).unwrap(), 1);
    println!("DRIVER_KIND={}", lp.driver_kind());
}

fn uring_available() -> bool {
    EventLoop::builder().driver(DriverChoice::Uring).build().is_ok()
}

#[test]
fn env_ringloop_driver_fallback_selects_the_readiness_backend() {
    assert_eq!(driver_kind_in_child(&[("RINGLOOP_DRIVER", "fallback")]), "fallback");
}

#[test]
fn env_ringloop_driver_uring_selects_io_uring_when_available() {
    if !uring_available() {
        assert!(!common::require_uring(), "io_uring required but unavailable");
        eprintln!("SKIP: io_uring unavailable here");
        return;
    }
    assert_eq!(driver_kind_in_child(&[("RINGLOOP_DRIVER", "uring")]), "uring");
}

#[test]
fn auto_prefers_io_uring_when_it_works() {
    let kind = driver_kind_in_child(&[]);
    if uring_available() {
        assert_eq!(kind, "uring");
    } else {
        assert!(!common::require_uring(), "io_uring required but unavailable");
        assert_eq!(kind, "fallback");
    }
}

#[test]
fn a_ring_that_cannot_be_created_falls_back_instead_of_erroring() {
    // 2^30 SQEs is far beyond IORING_MAX_ENTRIES: io_uring_setup fails (EINVAL).
    let lp = EventLoop::builder().ring_entries(1 << 30).build().unwrap();
    assert_eq!(lp.driver_kind(), DriverKind::Readiness);
    assert_eq!(lp.run_until_complete(async { 3 }).unwrap(), 3);
    // An explicit io_uring request does not fall back: it reports the error.
    let err = EventLoop::builder()
        .driver(DriverChoice::Uring)
        .ring_entries(1 << 30)
        .build()
        .unwrap_err();
    eprintln!("forced uring with an absurd ring: {err}");
}

#[test]
fn explicit_fallback_choice_beats_the_environment() {
    let lp = EventLoop::builder().driver(DriverChoice::Fallback).build().unwrap();
    assert_eq!(lp.driver_kind(), DriverKind::Readiness);
    assert!(lp.driver_description().starts_with("fallback ("));
}

#[cfg(feature = "fallback")]
#[test]
fn the_fallback_feature_forces_the_readiness_backend() {
    assert_eq!(EventLoop::new().unwrap().driver_kind(), DriverKind::Readiness);
    assert_eq!(
        driver_kind_in_child(&[("RINGLOOP_DRIVER", "uring")]).as_str(),
        "fallback"
    );
    let err = EventLoop::builder().driver(DriverChoice::Uring).build().unwrap_err();
    assert_eq!(err.kind(), std::io::ErrorKind::Unsupported);
}

#[cfg(not(feature = "fallback"))]
#[test]
fn without_the_fallback_feature_uring_can_be_forced() {
    match EventLoop::builder().driver(DriverChoice::Uring).build() {
        Ok(lp) => assert_eq!(lp.driver_kind(), DriverKind::Uring),
        Err(e) => {
            assert!(!common::require_uring(), "io_uring required but unavailable: {e}");
            eprintln!("SKIP: io_uring unavailable here: {e}");
        }
    }
}

#[test]
fn the_readiness_backend_uses_the_configured_os_mechanism() {
    let lp = EventLoop::builder().driver(DriverChoice::Fallback).build().unwrap();
    let desc = lp.driver_description();
    eprintln!("readiness backend: {desc}");
    if std::env::var("RINGLOOP_EXPECT_POLL_BACKEND").as_deref() == Ok("1") {
        assert_eq!(
            desc, "fallback (poll)",
            "--cfg polling_test_poll_backend must select poll(2)"
        );
    } else if cfg!(target_os = "linux") {
        assert_eq!(desc, "fallback (epoll)");
    }
}
