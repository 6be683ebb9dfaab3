//! Backend selection: env override, cargo feature, and fallback on ring failure.

mod common;

use ringloop::{DriverChoice, DriverKind, EventLoop};
use std::process::Command;

/// Runs the ignored probe test `probe` in a child process with `env` set and
/// returns the driver kind it reported and its stderr.
fn probe_in_child(probe: &str, env: &[(&str, &str)]) -> (String, String) {
    let exe = std::env::current_exe().unwrap();
    let mut cmd = Command::new(exe);
    cmd.args(["--ignored", "--exact", probe, "--nocapture", "--test-threads=1"]);
    cmd.env_remove("RINGLOOP_DRIVER");
    for (k, v) in env {
        cmd.env(k, v);
    }
    let out = cmd.output().unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    assert!(out.status.success(), "child failed: {stdout}\n{stderr}");
    let kind = stdout
        .lines()
        .find_map(|l| l.split_once("DRIVER_KIND=").map(|(_, k)| k.trim()))
        .unwrap_or_else(|| panic!("child printed no kind: {stdout}"))
        .to_string();
    (kind, stderr)
}

/// The driver kind a default loop gets in a child process with `env` set.
fn driver_kind_in_child(env: &[(&str, &str)]) -> String {
    probe_in_child("child_probe_reports_driver_kind", env).0
}

#[test]
#[ignore = "helper: run by the tests below in a child process"]
fn child_probe_reports_driver_kind() {
    let lp = EventLoop::new().unwrap();
    assert_eq!(lp.run_until_complete(async { 1 }).unwrap(), 1);
    // A second loop: a warning about the environment is printed only once.
    drop(EventLoop::new().unwrap());
    println!("DRIVER_KIND={}", lp.driver_kind());
}

#[test]
#[ignore = "helper: run by the tests below in a child process"]
fn child_probe_explicit_fallback_choice() {
    let lp = EventLoop::builder().driver(DriverChoice::Fallback).build().unwrap();
    assert_eq!(lp.run_until_complete(async { 1 }).unwrap(), 1);
    println!("DRIVER_KIND={}", lp.driver_kind());
}

#[test]
fn a_misspelt_ringloop_driver_is_reported_once_on_stderr() {
    let (kind, stderr) = probe_in_child("child_probe_reports_driver_kind", &[("RINGLOOP_DRIVER", "urnig")]);
    let warnings: Vec<&str> = stderr.lines().filter(|l| l.contains("RINGLOOP_DRIVER")).collect();
    assert_eq!(warnings.len(), 1, "expected one warning, stderr: {stderr}");
    for word in ["urnig", "uring", "fallback", "auto"] {
        assert!(warnings[0].contains(word), "warning lacks {word:?}: {}", warnings[0]);
    }
    // The value is ignored: the choice is automatic.
    assert_eq!(kind, driver_kind_in_child(&[]));
    // Accepted values are not reported.
    for ok in ["uring", "fallback", "auto"] {
        let (_, stderr) = probe_in_child("child_probe_reports_driver_kind", &[("RINGLOOP_DRIVER", ok)]);
        assert!(!stderr.contains("RINGLOOP_DRIVER"), "{ok}: {stderr}");
    }
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
    // With RINGLOOP_DRIVER=uring actually set (in a child process).
    let (kind, _) = probe_in_child("child_probe_explicit_fallback_choice", &[("RINGLOOP_DRIVER", "uring")]);
    assert_eq!(kind, "fallback");
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

/// The loop on io_uring without EXT_ARG (wait timeouts through a Timeout SQE)
/// and with default ring flags still honours timers and cross-thread wakes.
#[test]
fn uring_loop_without_ext_arg_and_with_untuned_flags_keeps_time() {
    for (no_ext_arg, tuned) in [(true, true), (false, false), (true, false)] {
        let lp = match EventLoop::builder()
            .driver(DriverChoice::Uring)
            .uring_disable_ext_arg(no_ext_arg)
            .uring_tuned_flags(tuned)
            .build()
        {
            Ok(lp) => lp,
            Err(e) => {
                assert!(!common::require_uring(), "io_uring required but unavailable: {e}");
                eprintln!("SKIP: {e}");
                return;
            }
        };
        eprintln!("{}", lp.driver_description());
        let t0 = std::time::Instant::now();
        let order = lp
            .run_until_complete(async {
                let log = std::rc::Rc::new(std::cell::RefCell::new(Vec::new()));
                let mut ts = Vec::new();
                for ms in [30u64, 10, 20] {
                    let l = log.clone();
                    ts.push(ringloop::spawn(async move {
                        ringloop::sleep(std::time::Duration::from_millis(ms)).await;
                        l.borrow_mut().push(ms);
                    }));
                }
                for t in ts {
                    t.await.unwrap();
                }
                log.borrow().clone()
            })
            .unwrap();
        assert_eq!(order, [10, 20, 30]);
        assert!(t0.elapsed() >= std::time::Duration::from_millis(30));
        let h = lp.handle();
        let th = std::thread::spawn(move || {
            std::thread::sleep(std::time::Duration::from_millis(20));
            h.stop().unwrap();
        });
        lp.call_later(std::time::Duration::from_secs(10), || {}).unwrap();
        let w = std::time::Instant::now();
        lp.run_forever().unwrap();
        th.join().unwrap();
        assert!(w.elapsed() < std::time::Duration::from_secs(5));
    }
}
