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
    assert_eq!(lp.driver_kind(), DriverKind::Fallback);
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
    assert_eq!(lp.driver_kind(), DriverKind::Fallback);
    assert!(lp.driver_description().starts_with("fallback ("));
    // With RINGLOOP_DRIVER=uring actually set (in a child process).
    let (kind, _) = probe_in_child("child_probe_explicit_fallback_choice", &[("RINGLOOP_DRIVER", "uring")]);
    assert_eq!(kind, "fallback");
}

#[cfg(feature = "fallback")]
#[test]
fn the_fallback_feature_forces_the_readiness_backend() {
    assert_eq!(EventLoop::new().unwrap().driver_kind(), DriverKind::Fallback);
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
    eprintln!("fallback backend: {desc}");
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

// ---------------------------------------------------------------------------
// A seccomp filter in a re-executed child: io_uring_setup allowed but
// io_uring_enter refused (Auto must fall back), and a loop whose wait
// syscall starts failing after it was built (it must stop, not spin).

/// The seccomp `AUDIT_ARCH_*` of the archs whose syscall numbers the filter
/// below knows (`None`: the tests skip).
const AUDIT_ARCH: Option<u32> = if cfg!(target_arch = "x86_64") {
    Some(0xC000_003E)
} else if cfg!(target_arch = "aarch64") {
    Some(0xC000_00B7)
} else {
    None
};

/// The syscalls a readiness loop may wait in (epoll, or poll(2) under
/// `polling_test_poll_backend`).
#[cfg(target_arch = "x86_64")]
const READINESS_WAITS: &[libc::c_long] = &[
    libc::SYS_epoll_wait,
    libc::SYS_epoll_pwait,
    libc::SYS_epoll_pwait2,
    libc::SYS_poll,
    libc::SYS_ppoll,
];
#[cfg(not(target_arch = "x86_64"))]
const READINESS_WAITS: &[libc::c_long] = &[libc::SYS_epoll_pwait, libc::SYS_epoll_pwait2, libc::SYS_ppoll];

/// Makes `syscalls` fail with `errno` for this thread (and threads it starts
/// later) for good: `PR_SET_NO_NEW_PRIVS`, then a classic BPF program
/// (check the arch, load the syscall number, compare) installed with
/// `seccomp(SECCOMP_SET_MODE_FILTER)`. Only for child processes.
fn forbid_syscalls(syscalls: &[libc::c_long], errno: i32) {
    let arch = AUDIT_ARCH.expect("forbid_syscalls on an arch it does not know");
    let stmt = |code: u32, k: u32| libc::sock_filter {
        code: code as u16,
        jt: 0,
        jf: 0,
        k,
    };
    let jeq = |k: u32, jt: u8| libc::sock_filter {
        code: (libc::BPF_JMP | libc::BPF_JEQ | libc::BPF_K) as u16,
        jt,
        jf: 0,
        k,
    };
    let n = syscalls.len();
    assert!(n < 250);
    // struct seccomp_data { int nr; __u32 arch; ... }
    let mut prog = vec![
        stmt(libc::BPF_LD | libc::BPF_W | libc::BPF_ABS, 4),
        jeq(arch, 1),
        stmt(libc::BPF_RET | libc::BPF_K, libc::SECCOMP_RET_ALLOW),
        stmt(libc::BPF_LD | libc::BPF_W | libc::BPF_ABS, 0),
    ];
    for (i, &nr) in syscalls.iter().enumerate() {
        // Match: jump over the remaining compares and the ALLOW.
        prog.push(jeq(nr as u32, (n - i) as u8));
    }
    prog.push(stmt(libc::BPF_RET | libc::BPF_K, libc::SECCOMP_RET_ALLOW));
    prog.push(stmt(
        libc::BPF_RET | libc::BPF_K,
        libc::SECCOMP_RET_ERRNO | (errno as u32 & libc::SECCOMP_RET_DATA),
    ));
    let fprog = libc::sock_fprog {
        len: prog.len() as u16,
        filter: prog.as_mut_ptr(),
    };
    // SAFETY: prctl with integer arguments.
    let rc = unsafe { libc::prctl(libc::PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) };
    assert_eq!(rc, 0, "PR_SET_NO_NEW_PRIVS: {}", std::io::Error::last_os_error());
    // SAFETY: `fprog` points at `prog`, alive for the call; the kernel
    // copies the program.
    let rc = unsafe {
        libc::syscall(
            libc::SYS_seccomp,
            libc::SECCOMP_SET_MODE_FILTER,
            0,
            &fprog as *const libc::sock_fprog,
        )
    };
    assert_eq!(rc, 0, "seccomp(SET_MODE_FILTER): {}", std::io::Error::last_os_error());
}

/// Runs the ignored helper test `name` in a child process with `env`, and
/// returns (stdout, stderr); fails if it does not succeed within `limit`
/// (a spinning or hung child is killed). Output is kept up to 1 MiB per
/// stream: a child that writes more blocks, and times out.
fn run_child_within(name: &str, env: &[(&str, &str)], limit: std::time::Duration) -> (String, String) {
    use std::io::Read;
    let mut cmd = Command::new(std::env::current_exe().unwrap());
    cmd.args(["--ignored", "--exact", name, "--nocapture", "--test-threads=1"]);
    cmd.env_remove("RINGLOOP_DRIVER");
    cmd.envs(env.iter().copied());
    cmd.stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped());
    let mut child = cmd.spawn().unwrap();
    let capture = |r: Option<Box<dyn Read + Send>>| {
        let mut r = r.unwrap().take(1 << 20);
        std::thread::spawn(move || {
            let mut out = Vec::new();
            let _ = r.read_to_end(&mut out);
            String::from_utf8_lossy(&out).into_owned()
        })
    };
    let out = capture(child.stdout.take().map(|s| Box::new(s) as _));
    let err = capture(child.stderr.take().map(|s| Box::new(s) as _));
    let deadline = std::time::Instant::now() + limit;
    let status = loop {
        if let Some(status) = child.try_wait().unwrap() {
            break Some(status);
        }
        if std::time::Instant::now() >= deadline {
            child.kill().unwrap();
            child.wait().unwrap();
            break None;
        }
        std::thread::sleep(std::time::Duration::from_millis(20));
    };
    let (out, err) = (out.join().unwrap(), err.join().unwrap());
    let tail = |s: &str| s.chars().take(2000).collect::<String>();
    match status {
        None => panic!(
            "child {name} {env:?} still running after {limit:?} (spinning?); it printed:\n{}\n{}",
            tail(&out),
            tail(&err)
        ),
        Some(st) => assert!(
            st.success() && out.contains("1 passed"),
            "child {name} {env:?} failed ({st:?}):\n{}\n{}",
            tail(&out),
            tail(&err)
        ),
    }
    (out, err)
}

const CHILD_LIMIT: std::time::Duration = std::time::Duration::from_secs(30);

#[test]
#[ignore = "helper: run by the test below in a child process"]
fn child_auto_with_io_uring_enter_forbidden() {
    if std::env::var_os("RINGLOOP_TEST_SECCOMP_CHILD").is_none() {
        eprintln!("helper test: only meaningful when run by its parent test; skipping");
        return;
    }
    forbid_syscalls(&[libc::SYS_io_uring_enter], libc::EPERM);
    // io_uring_setup still works, so only the enter check can refuse the ring.
    // SAFETY: io_uring_setup(1, params) with a zeroed 120-byte params struct
    // the kernel fills in; the returned fd is closed right away.
    let fd = unsafe {
        let mut params = [0u8; 120];
        libc::syscall(libc::SYS_io_uring_setup, 1u32, params.as_mut_ptr())
    };
    assert!(fd >= 0, "io_uring_setup refused: {}", std::io::Error::last_os_error());
    // SAFETY: a fresh fd nothing else owns.
    drop(unsafe { <std::os::fd::OwnedFd as std::os::fd::FromRawFd>::from_raw_fd(fd as i32) });
    let err = EventLoop::builder().driver(DriverChoice::Uring).build().unwrap_err();
    assert!(err.to_string().contains("io_uring_enter"), "{err}");
    println!("explicit uring: {err}");

    let lp = EventLoop::new().unwrap();
    assert_eq!(lp.driver_kind(), DriverKind::Fallback);
    let out = lp
        .run_until_complete(async {
            let t = ringloop::spawn(async {
                ringloop::sleep(std::time::Duration::from_millis(5)).await;
                21
            });
            t.await.unwrap() * 2
        })
        .unwrap();
    assert_eq!(out, 42);
    println!("DRIVER_KIND={}", lp.driver_kind());
}

#[cfg(not(feature = "fallback"))]
#[test]
fn auto_falls_back_when_io_uring_setup_works_but_io_uring_enter_is_forbidden() {
    if AUDIT_ARCH.is_none() {
        eprintln!("SKIP: no seccomp syscall table for this arch");
        return;
    }
    if !uring_available() {
        assert!(!common::require_uring(), "io_uring required but unavailable");
        eprintln!("SKIP: io_uring unavailable here");
        return;
    }
    let (out, err) = run_child_within(
        "child_auto_with_io_uring_enter_forbidden",
        &[("RINGLOOP_TEST_SECCOMP_CHILD", "1"), ("RINGLOOP_DEBUG", "1")],
        CHILD_LIMIT,
    );
    assert!(out.contains("DRIVER_KIND=fallback"), "{out}");
    // The fallback is said once, at debug level, naming the refused syscall.
    assert!(
        err.lines()
            .any(|l| l.contains("io_uring unavailable") && l.contains("io_uring_enter")),
        "no debug line about the fallback:\n{err}"
    );
}

#[test]
#[ignore = "helper: run by the test below in a child process"]
fn child_loop_whose_wait_fails() {
    let (Ok(backend), Ok(errno)) = (
        std::env::var("RINGLOOP_TEST_CHILD_BACKEND"),
        std::env::var("RINGLOOP_TEST_SECCOMP_ERRNO"),
    ) else {
        eprintln!("helper test: only meaningful when run by its parent test; skipping");
        return;
    };
    let errno: i32 = errno.parse().unwrap();
    let (choice, waits): (_, &[libc::c_long]) = match backend.as_str() {
        "uring" => (DriverChoice::Uring, &[libc::SYS_io_uring_enter]),
        _ => (DriverChoice::Fallback, READINESS_WAITS),
    };
    let lp = EventLoop::builder().driver(choice).build().unwrap();
    let reports = std::rc::Rc::new(std::cell::Cell::new(0u32));
    let r = reports.clone();
    lp.set_exception_handler(Some(move |ctx: &ringloop::ExceptionContext| {
        assert_eq!(ctx.kind, ringloop::ExceptionKind::DriverError, "{}", ctx.message);
        r.set(r.get() + 1);
    }));
    // Something to wait for, so every backend has to make its wait syscall.
    assert_eq!(
        lp.run_until_complete(async { ringloop::sleep(std::time::Duration::from_millis(1)).await }),
        Ok(())
    );
    forbid_syscalls(waits, errno);

    let res = lp.run_until_complete(async {
        ringloop::sleep(std::time::Duration::from_millis(10)).await;
    });
    assert_eq!(res, Err(ringloop::LoopError::DriverFailed));
    let first = reports.get();
    lp.call_later(std::time::Duration::from_millis(10), {
        let lp = lp.clone();
        move || lp.stop()
    })
    .unwrap();
    assert_eq!(lp.run_forever(), Err(ringloop::LoopError::DriverFailed));
    println!("REPORTS={first},{}", reports.get() - first);
}

#[test]
fn a_driver_wait_that_keeps_failing_stops_the_loop_with_an_error() {
    if AUDIT_ARCH.is_none() {
        eprintln!("SKIP: no seccomp syscall table for this arch");
        return;
    }
    let mut backends = vec!["fallback"];
    if cfg!(not(feature = "fallback")) && uring_available() {
        backends.push("uring");
    } else {
        assert!(!common::require_uring(), "io_uring required but unavailable");
        eprintln!("SKIP [uring]: io_uring unavailable here");
    }
    // EPERM cannot go away: the loop stops at the first failure. ENOMEM
    // might: it stops after 8 failures in a row.
    for backend in backends {
        for (errno, failures) in [(libc::EPERM, 1), (libc::ENOMEM, 8)] {
            let (out, _) = run_child_within(
                "child_loop_whose_wait_fails",
                &[
                    ("RINGLOOP_TEST_CHILD_BACKEND", backend),
                    ("RINGLOOP_TEST_SECCOMP_ERRNO", &errno.to_string()),
                ],
                CHILD_LIMIT,
            );
            let want = format!("REPORTS={failures},{failures}");
            assert!(out.contains(&want), "[{backend} errno {errno}] want {want}:\n{out}");
        }
    }
}
