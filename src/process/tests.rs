//! Every reaping strategy on every backend it can run on (the integration
//! tests only see the one this kernel picks), and the orphan list.

use std::os::unix::process::ExitStatusExt;
use std::path::Path;
use std::time::Duration;

use super::reap::{self, FORCE, Strategy};
use super::{Command, Stdio};
use crate::{DriverChoice, DriverKind, EventLoop, sleep, timeout};

const PATIENCE: Duration = Duration::from_secs(20);

/// A loop of `choice`, or `None` where io_uring is unavailable (the
/// `#[ringloop::test]` harness's rule, `RINGLOOP_REQUIRE_URING` included).
fn build(choice: DriverChoice) -> Option<EventLoop> {
    let opts = crate::__macros::Options {
        virtual_clock: false,
        slow_callback_ms: None,
    };
    crate::__macros::build_loop(choice, &opts)
}

fn exists(pid: u32) -> bool {
    Path::new(&format!("/proc/{pid}")).exists()
}

async fn until_gone(pid: u32) {
    timeout(PATIENCE, async {
        while exists(pid) {
            sleep(Duration::from_millis(10)).await;
        }
    })
    .await
    .unwrap_or_else(|_| panic!("pid {pid} was never reaped"));
}

/// Exit codes, signals, a cancelled wait, try_wait and a dropped child, with
/// `strategy` forced on `choice`'s backend.
fn exercise(choice: DriverChoice, strategy: Strategy) {
    let Some(lp) = build(choice) else { return };
    if strategy == Strategy::WaitId {
        assert_eq!(lp.driver_kind(), DriverKind::Uring);
        if let Ok(d @ crate::driver::Driver::Uring(_)) = crate::io::current_driver()
            && !d.supports::<crate::driver::ops::WaitId>()
        {
            eprintln!("SKIP: this kernel lacks IORING_OP_WAITID");
            return;
        }
    }
    FORCE.with(|f| f.set(Some(strategy)));
    lp.run_until_complete(async move {
        let mut child = Command::new("sh").args(["-c", "exit 5"]).spawn().unwrap();
        assert_eq!(child.strategy, strategy, "{child:?}");
        assert_eq!(child.wait().await.unwrap().code(), Some(5));

        let mut child = Command::new("sleep").arg("30").spawn().unwrap();
        assert!(timeout(Duration::from_millis(10), child.wait()).await.is_err());
        assert_eq!(child.try_wait().unwrap(), None);
        child.start_kill().unwrap();
        let status = timeout(PATIENCE, child.wait()).await.unwrap().unwrap();
        assert_eq!(status.signal(), Some(libc::SIGKILL));

        let out = Command::new("echo").arg("strategy").output().await.unwrap();
        assert_eq!(out.stdout, b"strategy\n");

        let mut child = Command::new("cat").stdin(Stdio::piped()).spawn().unwrap();
        // (`wait` closes the stdin it finds: keep it out of reach.)
        let stdin = child.stdin.take();
        // A wait in flight (timed out), then the exit is seen by try_wait.
        assert!(timeout(Duration::from_millis(10), child.wait()).await.is_err());
        drop(stdin);
        let status = timeout(PATIENCE, async {
            loop {
                if let Some(s) = child.try_wait().unwrap() {
                    break s;
                }
                sleep(Duration::from_millis(5)).await;
            }
        })
        .await
        .unwrap();
        assert!(status.success());

        let child = Command::new("sh").args(["-c", "sleep 0.1"]).spawn().unwrap();
        let pid = child.id().unwrap();
        drop(child);
        until_gone(pid).await;
    })
    .unwrap();
    FORCE.with(|f| f.set(None));
}

#[test]
fn waitid_op_on_uring() {
    exercise(DriverChoice::Uring, Strategy::WaitId);
}

#[test]
fn pidfd_poll_on_uring() {
    exercise(DriverChoice::Uring, Strategy::PollPidfd);
}

#[test]
fn pidfd_poll_on_fallback() {
    exercise(DriverChoice::Fallback, Strategy::PollPidfd);
}

#[test]
fn blocking_waitpid_on_uring() {
    exercise(DriverChoice::Uring, Strategy::Blocking);
}

#[test]
fn blocking_waitpid_on_fallback() {
    exercise(DriverChoice::Fallback, Strategy::Blocking);
}

#[test]
fn a_child_dropped_after_its_loop_closed_is_reaped_by_a_later_spawn() {
    for choice in [DriverChoice::Uring, DriverChoice::Fallback] {
        let Some(lp) = build(choice) else { continue };
        let child = lp
            .run_until_complete(async { Command::new("sh").args(["-c", "sleep 0.2"]).spawn().unwrap() })
            .unwrap();
        let pid = child.id().unwrap();
        lp.close().unwrap();
        drop(lp);
        // No loop can reap it now: it goes to the orphan list.
        drop(child);
        assert!(reap::orphans() >= 1, "the child did not go to the orphan list");
        let deadline = std::time::Instant::now() + PATIENCE;
        // Sweeps happen at every spawn (here: on a new loop).
        let lp = build(choice).unwrap();
        while exists(pid) {
            assert!(std::time::Instant::now() < deadline, "orphan {pid} never reaped");
            std::thread::sleep(Duration::from_millis(20));
            lp.run_until_complete(async { Command::new("true").status().await.unwrap() })
                .unwrap();
        }
    }
}

/// What `waitid(P_PID, pid, WEXITED | WNOHANG | WNOWAIT)` says about `pid`
/// (it never reaps anything).
#[derive(Debug, PartialEq, Eq)]
enum ChildState {
    /// Our child, still running.
    Running,
    /// Our child, exited and not reaped: a zombie.
    Zombie,
    /// No (unreaped) child of ours: reaped.
    Reaped,
}

fn child_state(pid: u32) -> ChildState {
    // SAFETY: an all-zero siginfo_t is valid; the kernel writes it.
    let mut info: libc::siginfo_t = unsafe { std::mem::zeroed() };
    // SAFETY: waitid with a valid out-pointer to a local siginfo_t.
    let rc = unsafe {
        libc::waitid(
            libc::P_PID,
            pid as libc::id_t,
            &mut info,
            libc::WEXITED | libc::WNOHANG | libc::WNOWAIT,
        )
    };
    if rc == -1 {
        let e = std::io::Error::last_os_error();
        assert_eq!(e.raw_os_error(), Some(libc::ECHILD), "waitid({pid}): {e}");
        return ChildState::Reaped;
    }
    // SAFETY: waitid wrote si_pid (0 when no child changed state).
    match unsafe { info.si_pid() } {
        0 => ChildState::Running,
        p => {
            assert_eq!(p as u32, pid);
            ChildState::Zombie
        }
    }
}

/// A pipe (read end, write end), both close-on-exec.
fn pipe() -> (std::os::fd::OwnedFd, std::os::fd::OwnedFd) {
    use std::os::fd::FromRawFd;
    let mut fds = [0; 2];
    // SAFETY: pipe2 writes two fds into a valid local array.
    assert_eq!(unsafe { libc::pipe2(fds.as_mut_ptr(), libc::O_CLOEXEC) }, 0);
    // SAFETY: two fresh fds that nothing else owns.
    unsafe {
        (
            std::os::fd::OwnedFd::from_raw_fd(fds[0]),
            std::os::fd::OwnedFd::from_raw_fd(fds[1]),
        )
    }
}

#[test]
fn a_child_whose_wait_was_in_flight_when_its_loop_closed_is_reaped_by_a_later_spawn() {
    let combos = [
        (DriverChoice::Uring, Strategy::WaitId),
        (DriverChoice::Uring, Strategy::PollPidfd),
        (DriverChoice::Uring, Strategy::Blocking),
        (DriverChoice::Fallback, Strategy::PollPidfd),
        (DriverChoice::Fallback, Strategy::Blocking),
    ];
    for (choice, strategy) in combos {
        let Some(lp) = build(choice) else { continue };
        if strategy == Strategy::WaitId
            && let Ok(d @ crate::driver::Driver::Uring(_)) = crate::io::current_driver()
            && !d.supports::<crate::driver::ops::WaitId>()
        {
            eprintln!("SKIP [{choice:?} WaitId]: this kernel lacks IORING_OP_WAITID");
            continue;
        }
        FORCE.with(|f| f.set(Some(strategy)));
        // `cat` exits when the test closes `input`'s write end (not the
        // child's stdin pipe, which `wait` would close).
        let (rd, input) = pipe();
        let child = lp
            .run_until_complete(async move {
                Command::new("cat")
                    .stdin(Stdio::from(rd))
                    .stdout(Stdio::null())
                    .spawn()
                    .unwrap()
            })
            .unwrap();
        FORCE.with(|f| f.set(None));
        let pid = child.id().unwrap();
        assert_eq!(child.strategy, strategy, "{child:?}");
        // The wait is in flight (kept by the child) when the loop closes.
        let (child, timed_out) = lp
            .run_until_complete(async move {
                let mut child = child;
                let timed_out = timeout(Duration::from_millis(20), child.wait()).await.is_err();
                (child, timed_out)
            })
            .unwrap();
        assert!(timed_out, "cat exited early");
        lp.close().unwrap();
        drop(lp);
        assert_eq!(child_state(pid), ChildState::Running);
        drop(child);
        // Now it exits, with no loop left to notice.
        drop(input);
        let deadline = std::time::Instant::now() + PATIENCE;
        while child_state(pid) == ChildState::Running {
            assert!(std::time::Instant::now() < deadline, "cat ({pid}) did not exit");
            std::thread::sleep(Duration::from_millis(5));
        }
        // A spawn (here on a new loop) sweeps the orphan list.
        let lp = build(choice).unwrap();
        lp.run_until_complete(async { Command::new("true").status().await.unwrap() })
            .unwrap();
        // The blocking strategy's pool thread reaps on its own, soon after the exit.
        while strategy == Strategy::Blocking && child_state(pid) == ChildState::Zombie {
            assert!(
                std::time::Instant::now() < deadline,
                "the waitpid thread never reaped {pid}"
            );
            std::thread::sleep(Duration::from_millis(5));
        }
        assert_eq!(
            child_state(pid),
            ChildState::Reaped,
            "[{choice:?} {strategy:?}] pid {pid} was left a zombie"
        );
    }
}
