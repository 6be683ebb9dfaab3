//! The driver layer: the only code that talks to the OS event mechanism.
//!
//! Two implementations share one small contract, used by the loop:
//!
//! * `wait(timeout)`: submit whatever is queued, block for completions or
//!   readiness for at most `timeout` (`None` = no limit, `Some(ZERO)` = poll),
//!   then wake the `Waker`s of everything that finished. It never runs user
//!   code other than `Waker::wake`.
//! * `notifier()`: a `Send + Sync` handle whose `notify()` makes a concurrent
//!   or the next `wait` return promptly (cross-thread wake-up).
//!
//! The driver never knows about tasks beyond a `Waker`.

use std::fmt;
use std::io;
use std::sync::Arc;
use std::time::Duration;

pub(crate) mod readiness;
#[cfg(target_os = "linux")]
pub(crate) mod uring;

/// Which backend an [`EventLoop`](crate::EventLoop) runs on.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum DriverKind {
    /// Linux io_uring: operations are submitted as SQEs, completions wake tasks.
    Uring,
    /// The portable readiness backend (`ringloop-fallback`: epoll, kqueue,
    /// event ports, IOCP or poll(2)).
    Readiness,
}

impl fmt::Display for DriverKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            DriverKind::Uring => f.write_str("uring"),
            DriverKind::Readiness => f.write_str("fallback"),
        }
    }
}

/// Which backend the builder should use.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Default)]
#[non_exhaustive]
pub enum DriverChoice {
    /// io_uring when it can be set up and probed, else the readiness backend.
    /// `RINGLOOP_DRIVER=uring|fallback` overrides this choice.
    #[default]
    Auto,
    /// io_uring or an error (never silently falls back).
    Uring,
    /// The readiness backend.
    Fallback,
}

/// Consecutive failed [`Driver::wait`]s after which the loop gives up and
/// `run_forever` / `run_until_complete` return `LoopError::DriverFailed`
/// (an error that no retry can cure stops it at the first failure).
pub(crate) const MAX_FAILED_WAITS: u32 = 8;

/// Whether a failed wait will fail again however often it is retried: the
/// mechanism is forbidden (EPERM/EACCES, e.g. a seccomp filter), missing
/// (ENOSYS/EOPNOTSUPP) or broken (EBADF/EFAULT/EINVAL/ENXIO). Transient
/// errors (EINTR, EAGAIN, EBUSY, ETIME) never reach the loop: the drivers
/// absorb them. Errors that name their syscall keep only the errno's kind
/// (ENOSYS/EOPNOTSUPP are `Unsupported`, EINVAL `InvalidInput`), which is
/// what is checked first.
pub(crate) fn wait_error_is_permanent(e: &io::Error) -> bool {
    use io::ErrorKind::{InvalidInput, PermissionDenied, Unsupported};
    matches!(e.kind(), PermissionDenied | Unsupported | InvalidInput)
        || matches!(e.raw_os_error(), Some(libc::EBADF | libc::EFAULT | libc::ENXIO))
}

/// Wakes a sleeping driver from any thread.
pub(crate) trait Notify: Send + Sync {
    fn notify(&self);
}

impl Notify for ringloop_fallback::Notifier {
    fn notify(&self) {
        ringloop_fallback::Notifier::notify(self)
    }
}

/// Settings the builder passes to the io_uring driver.
#[derive(Clone, Debug)]
pub(crate) struct UringConfig {
    /// Submission queue entries (rounded up to a power of two by the kernel).
    pub entries: u32,
    /// Try SINGLE_ISSUER / DEFER_TASKRUN / COOP_TASKRUN (each probed).
    pub tuned_flags: bool,
    /// Pretend the kernel lacks IORING_FEAT_EXT_ARG (tests the Timeout-SQE path).
    pub disable_ext_arg: bool,
    /// Receive pool: number of buffers (a power of two) and their size.
    pub recv_pool_entries: u16,
    pub recv_pool_buf_size: u32,
}

impl Default for UringConfig {
    fn default() -> Self {
        UringConfig {
            entries: 256,
            tuned_flags: true,
            disable_ext_arg: false,
            recv_pool_entries: 256,
            recv_pool_buf_size: 4096,
        }
    }
}

/// The loop's driver; cloning is cheap (both variants are `Rc` handles), so
/// I/O objects keep one. Operation resources must never hold one (that
/// would keep the ring alive from its own slots).
#[derive(Clone)]
pub(crate) enum Driver {
    #[cfg(target_os = "linux")]
    Uring(uring::UringDriver),
    Readiness(std::rc::Rc<readiness::ReadinessDriver>),
}

impl Driver {
    pub(crate) fn kind(&self) -> DriverKind {
        match self {
            #[cfg(target_os = "linux")]
            Driver::Uring(_) => DriverKind::Uring,
            Driver::Readiness(_) => DriverKind::Readiness,
        }
    }

    pub(crate) fn description(&self) -> String {
        match self {
            #[cfg(target_os = "linux")]
            Driver::Uring(d) => format!("uring ({})", d.setup_description()),
            Driver::Readiness(_) => format!("fallback ({})", ringloop_fallback::backend_name()),
        }
    }

    /// The loop closed: operations submitted later fail at once.
    pub(crate) fn close(&self) {
        match self {
            #[cfg(target_os = "linux")]
            Driver::Uring(d) => d.close(),
            Driver::Readiness(d) => d.close(),
        }
    }

    pub(crate) fn wait(&self, timeout: Option<Duration>) -> io::Result<()> {
        match self {
            #[cfg(target_os = "linux")]
            Driver::Uring(d) => d.wait(timeout),
            Driver::Readiness(d) => d.wait(timeout),
        }
    }

    pub(crate) fn notifier(&self) -> Arc<dyn Notify> {
        match self {
            #[cfg(target_os = "linux")]
            Driver::Uring(d) => d.notifier(),
            Driver::Readiness(d) => d.notifier(),
        }
    }

    /// Builds the driver the configuration asks for. With `Auto`, any failure
    /// to set up or probe io_uring selects the readiness backend.
    pub(crate) fn build(choice: DriverChoice, cfg: &UringConfig) -> io::Result<Driver> {
        let readiness = || Ok(Driver::Readiness(std::rc::Rc::new(readiness::ReadinessDriver::new()?)));
        if cfg!(feature = "fallback") || !cfg!(target_os = "linux") {
            // io_uring is compiled out or disabled: only an explicit request
            // for it is an error; `RINGLOOP_DRIVER=uring` is ignored.
            return match choice {
                DriverChoice::Uring => Err(io::Error::new(
                    io::ErrorKind::Unsupported,
                    if cfg!(feature = "fallback") {
                        "ringloop: the io_uring backend is disabled by the `fallback` cargo feature"
                    } else {
                        "ringloop: io_uring is only available on Linux"
                    },
                )),
                _ => readiness(),
            };
        }
        let choice = match choice {
            DriverChoice::Auto => match std::env::var("RINGLOOP_DRIVER").as_deref() {
                Ok("uring") | Ok("io_uring") => DriverChoice::Uring,
                Ok("fallback") | Ok("readiness") => DriverChoice::Fallback,
                _ => DriverChoice::Auto,
            },
            other => other,
        };
        match choice {
            DriverChoice::Fallback => readiness(),
            #[cfg(target_os = "linux")]
            DriverChoice::Uring => Ok(Driver::Uring(uring::UringDriver::new(cfg)?)),
            #[cfg(target_os = "linux")]
            _ => match uring::UringDriver::new(cfg) {
                Ok(d) => Ok(Driver::Uring(d)),
                Err(e) => {
                    crate::debug::debug_log(format_args!(
                        "ringloop: io_uring unavailable ({e}); using the readiness backend ({})",
                        ringloop_fallback::backend_name()
                    ));
                    readiness()
                }
            },
            #[cfg(not(target_os = "linux"))]
            _ => readiness(),
        }
    }
}
