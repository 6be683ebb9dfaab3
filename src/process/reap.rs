//! Waiting for and reaping children, without a SIGCHLD handler.
//!
//! Strategies, picked per child at spawn:
//!
//! * [`Strategy::WaitId`] (io_uring, Linux 6.5+ per the ring's probe):
//!   `IORING_OP_WAITID(P_PIDFD, WEXITED)`: the kernel waits, reaps and fills
//!   in a `siginfo_t` owned by the operation.
//! * [`Strategy::PollPidfd`] (io_uring without WAITID, and the fallback
//!   backend; Linux 5.3+): wait until the pidfd is readable (the child
//!   exited) through the driver, then `waitid(P_PIDFD, WNOHANG)` (or
//!   `waitpid(pid, WNOHANG)` on 5.3, which lacks P_PIDFD).
//! * [`Strategy::Blocking`] (no pidfd: `pidfd_open` is missing (ENOSYS),
//!   forbidden by seccomp, or not Linux): a blocking `waitpid(pid, 0)` on the
//!   loop's blocking pool, which occupies one pool thread for the child's
//!   lifetime.
//!
//! Orphans: a [`Child`](super::Child) dropped before its exit was collected
//! hands its wait to a detached task that reaps it. If that is impossible
//! (the loop is closing or closed), the child goes to a process-wide orphan
//! list (holding a pidfd, so a recycled pid can never be reaped by mistake),
//! which every later spawn and every collected exit sweeps with `WNOHANG`.

use std::future::Future;
use std::io;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::os::unix::process::ExitStatusExt;
use std::pin::Pin;
use std::process::ExitStatus;
use std::sync::Mutex;
#[cfg(target_os = "linux")]
use std::sync::atomic::{AtomicBool, Ordering};

use crate::driver::Driver;
use crate::io::SharedFd;

/// How a child's exit is awaited (see the module docs).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Strategy {
    #[cfg(target_os = "linux")]
    WaitId,
    #[cfg(target_os = "linux")]
    PollPidfd,
    Blocking,
}

#[cfg(test)]
thread_local! {
    /// Tests force a strategy (only those the driver and kernel can run).
    pub(crate) static FORCE: std::cell::Cell<Option<Strategy>> = const { std::cell::Cell::new(None) };
}

/// Picks the strategy for a child on `drv`, given whether it has a pidfd.
pub(crate) fn strategy(drv: &Driver, has_pidfd: bool) -> Strategy {
    #[cfg(test)]
    if let Some(s) = FORCE.with(|f| f.get()) {
        if s == Strategy::Blocking || has_pidfd {
            return s;
        }
    }
    if !has_pidfd {
        return Strategy::Blocking;
    }
    #[cfg(target_os = "linux")]
    {
        if drv.supports::<crate::driver::ops::WaitId>() {
            Strategy::WaitId
        } else {
            Strategy::PollPidfd
        }
    }
    #[cfg(not(target_os = "linux"))]
    {
        let _ = drv;
        Strategy::Blocking
    }
}

/// `pidfd_open` gave ENOSYS or EPERM once: do not try again.
#[cfg(target_os = "linux")]
static NO_PIDFD: AtomicBool = AtomicBool::new(false);

/// A pidfd for our child `pid`, or `None` where the kernel has none (the
/// caller then uses [`Strategy::Blocking`]).
#[cfg(target_os = "linux")]
pub(crate) fn pidfd_open(pid: u32) -> Option<OwnedFd> {
    #[cfg(test)]
    if FORCE.with(|f| f.get()) == Some(Strategy::Blocking) {
        return None;
    }
    if NO_PIDFD.load(Ordering::Relaxed) {
        return None;
    }
    // SAFETY: the pidfd_open syscall takes a pid and flags and returns a new
    // fd (close-on-exec) or -1; no memory is passed.
    let fd = unsafe { libc::syscall(libc::SYS_pidfd_open, pid as libc::pid_t, 0 as libc::c_uint) };
    if fd >= 0 {
        // SAFETY: a fresh fd that nothing else owns.
        return Some(unsafe { OwnedFd::from_raw_fd(fd as RawFd) });
    }
    let e = io::Error::last_os_error();
    match e.raw_os_error() {
        Some(libc::ENOSYS) | Some(libc::EPERM) => {
            NO_PIDFD.store(true, Ordering::Relaxed);
            crate::debug::debug_log(format_args!(
                "ringloop::process: pidfd_open unavailable ({e}); children are reaped by blocking waitpid on the blocking pool"
            ));
        }
        _ => crate::debug::debug_log(format_args!(
            "ringloop::process: pidfd_open({pid}) failed ({e}); this child is reaped by a blocking waitpid"
        )),
    }
    None
}

#[cfg(not(target_os = "linux"))]
pub(crate) fn pidfd_open(_pid: u32) -> Option<OwnedFd> {
    None
}

/// Sends `sig` to the child: through its pidfd when it has one (race-free),
/// else by pid (safe while the child is unreaped: its pid cannot be reused).
/// A child that is already gone (ESRCH) is not an error.
pub(crate) fn send_signal(pid: u32, pidfd: Option<RawFd>, sig: libc::c_int) -> io::Result<()> {
    #[cfg(target_os = "linux")]
    if let Some(fd) = pidfd {
        // SAFETY: pidfd_send_signal(fd, sig, NULL, 0) passes no memory.
        let rc = unsafe {
            libc::syscall(
                libc::SYS_pidfd_send_signal,
                fd,
                sig,
                std::ptr::null::<libc::siginfo_t>(),
                0 as libc::c_uint,
            )
        };
        if rc == 0 {
            return Ok(());
        }
        let e = io::Error::last_os_error();
        match e.raw_os_error() {
            Some(libc::ESRCH) => return Ok(()),
            Some(libc::ENOSYS) => {} // 5.3 has pidfd_open (5.3) after pidfd_send_signal (5.1): unreachable in practice.
            _ => return Err(e),
        }
    }
    #[cfg(not(target_os = "linux"))]
    let _ = pidfd;
    // SAFETY: kill(2) with integer arguments.
    if unsafe { libc::kill(pid as libc::pid_t, sig) } == 0 {
        return Ok(());
    }
    let e = io::Error::last_os_error();
    if e.raw_os_error() == Some(libc::ESRCH) {
        Ok(())
    } else {
        Err(e)
    }
}

/// The `ExitStatus` for a `waitid` result (`si_code`, `si_status`).
#[cfg(target_os = "linux")]
fn status_from_siginfo(info: &libc::siginfo_t) -> io::Result<ExitStatus> {
    // SAFETY: reading the SIGCHLD fields of a siginfo the kernel filled in
    // for a waitid with WEXITED (si_pid was checked non-zero by the caller).
    let status = unsafe { info.si_status() };
    let raw = match info.si_code {
        libc::CLD_EXITED => (status & 0xff) << 8,
        libc::CLD_KILLED => status & 0x7f,
        libc::CLD_DUMPED => (status & 0x7f) | 0x80,
        code => {
            return Err(io::Error::other(format!(
                "ringloop::process: waitid reported si_code {code}, not an exit"
            )));
        }
    };
    Ok(ExitStatus::from_raw(raw))
}

/// Reaps the child if it has exited (`WNOHANG`); `Ok(None)` while it runs.
/// `ECHILD` (already reaped elsewhere) is returned as an error.
pub(crate) fn try_reap(pid: u32, pidfd: Option<RawFd>) -> io::Result<Option<ExitStatus>> {
    #[cfg(target_os = "linux")]
    if let Some(fd) = pidfd {
        loop {
            // SAFETY: an all-zero siginfo_t is valid; the kernel writes it.
            let mut info: libc::siginfo_t = unsafe { std::mem::zeroed() };
            // SAFETY: waitid with a valid out-pointer to a local siginfo_t.
            let rc = unsafe {
                libc::waitid(
                    libc::P_PIDFD,
                    fd as libc::id_t,
                    &mut info,
                    libc::WEXITED | libc::WNOHANG,
                )
            };
            if rc == 0 {
                // SAFETY: waitid always writes si_pid (0 when nothing exited).
                if unsafe { info.si_pid() } == 0 {
                    return Ok(None);
                }
                return status_from_siginfo(&info).map(Some);
            }
            let e = io::Error::last_os_error();
            match e.raw_os_error() {
                Some(libc::EINTR) => continue,
                Some(libc::EAGAIN) => return Ok(None),
                // Linux 5.3 has pidfds but not P_PIDFD: use the pid, which
                // cannot be recycled while the child is unreaped.
                Some(libc::EINVAL) => break,
                _ => return Err(e),
            }
        }
    }
    #[cfg(not(target_os = "linux"))]
    let _ = pidfd;
    loop {
        let mut status = 0;
        // SAFETY: waitpid with a valid out-pointer to a local int.
        let rc = unsafe { libc::waitpid(pid as libc::pid_t, &mut status, libc::WNOHANG) };
        if rc == 0 {
            return Ok(None);
        }
        if rc > 0 {
            return Ok(Some(ExitStatus::from_raw(status)));
        }
        let e = io::Error::last_os_error();
        if e.kind() != io::ErrorKind::Interrupted {
            return Err(e);
        }
    }
}

/// Blocking `waitpid(pid, 0)`, for the blocking pool.
pub(crate) fn blocking_wait(pid: u32) -> io::Result<ExitStatus> {
    loop {
        let mut status = 0;
        // SAFETY: waitpid with a valid out-pointer to a local int.
        let rc = unsafe { libc::waitpid(pid as libc::pid_t, &mut status, 0) };
        if rc > 0 {
            return Ok(ExitStatus::from_raw(status));
        }
        let e = io::Error::last_os_error();
        if e.kind() != io::ErrorKind::Interrupted {
            return Err(e);
        }
    }
}

/// A boxed wait for a child's exit (pidfd strategies).
pub(crate) type ExitFuture = Pin<Box<dyn Future<Output = io::Result<ExitStatus>>>>;

/// The driver-based wait for `pidfd`'s child to exit, reaping it.
#[cfg(target_os = "linux")]
pub(crate) fn exit_future(strategy: Strategy, drv: Driver, pid: u32, pidfd: SharedFd) -> ExitFuture {
    match (strategy, &drv) {
        (Strategy::WaitId, _) if drv.supports::<crate::driver::ops::WaitId>() => {
            Box::pin(async move { waitid_op(&drv, &pidfd).await })
        }
        _ => Box::pin(async move {
            loop {
                if let Some(status) = try_reap(pid, Some(pidfd.raw()))? {
                    return Ok(status);
                }
                crate::io::ops::poll_readable(&drv, &pidfd).await?;
            }
        }),
    }
}

/// `IORING_OP_WAITID(P_PIDFD, pidfd, WEXITED)`: resolves once the kernel
/// reaped the child.
#[cfg(target_os = "linux")]
async fn waitid_op(drv: &Driver, pidfd: &SharedFd) -> io::Result<ExitStatus> {
    let info = crate::driver::ops::submit(drv, crate::driver::ops::WaitId::new(pidfd)).await?;
    status_from_siginfo(&info)
}

/// A child nobody waits for any more and no loop can reap.
enum Orphan {
    /// Holds a pidfd of its own, so a recycled pid is never reaped.
    Pidfd { pid: u32, fd: OwnedFd },
    /// No pidfd: safe while unreaped (the pid is not recycled before).
    Pid(u32),
}

static ORPHANS: Mutex<Vec<Orphan>> = Mutex::new(Vec::new());

/// Adds a child to the orphan list (swept by [`reap_orphans`]).
pub(crate) fn push_orphan(pid: u32, pidfd: Option<&SharedFd>) {
    let dup = pidfd.and_then(|fd| {
        // SAFETY: F_DUPFD_CLOEXEC on an fd the SharedFd keeps open; the
        // result is checked.
        let new = unsafe { libc::fcntl(fd.as_raw_fd(), libc::F_DUPFD_CLOEXEC, 0) };
        // SAFETY: a fresh fd that nothing else owns.
        (new >= 0).then(|| unsafe { OwnedFd::from_raw_fd(new) })
    });
    let orphan = match dup {
        Some(fd) => Orphan::Pidfd { pid, fd },
        // Without a pidfd of its own (none, or out of fds), by pid.
        None => Orphan::Pid(pid),
    };
    ORPHANS.lock().unwrap_or_else(|e| e.into_inner()).push(orphan);
}

/// Reaps every orphan that has exited; drops those already reaped.
pub(crate) fn reap_orphans() {
    let mut orphans = ORPHANS.lock().unwrap_or_else(|e| e.into_inner());
    if orphans.is_empty() {
        return;
    }
    orphans.retain(|o| {
        let res = match o {
            Orphan::Pidfd { pid, fd } => try_reap(*pid, Some(fd.as_raw_fd())),
            Orphan::Pid(pid) => try_reap(*pid, None),
        };
        matches!(res, Ok(None))
    });
}

#[cfg(test)]
/// Number of orphans not reaped yet (tests).
pub(crate) fn orphans() -> usize {
    ORPHANS.lock().unwrap_or_else(|e| e.into_inner()).len()
}

/// Pushes the child to the orphan list if dropped while `armed` (the reaper
/// task was refused or dropped before the child exited).
pub(crate) struct OrphanGuard {
    pub(crate) pid: u32,
    pub(crate) pidfd: Option<SharedFd>,
    pub(crate) armed: bool,
}

impl Drop for OrphanGuard {
    fn drop(&mut self) {
        if self.armed {
            push_orphan(self.pid, self.pidfd.as_ref());
        }
    }
}
