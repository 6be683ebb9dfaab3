//! The driver layer: the only code that talks to the OS event mechanism.
//!
//! Two implementations share one small contract, used by the loop:
//!
//! * `wait(timeout)`: submit whatever is queued, block for completions or
//!   readiness for at most `timeout` (`None` = no limit, `Some(ZERO)` = poll),
//!   then wake the waiters of everything that finished. It never runs user
//!   code other than waking them (and dropping a replaced waiter, after its
//!   own borrow ends).
//! * `notifier()`: a `Send + Sync` handle whose `notify()` makes a concurrent
//!   or the next `wait` return promptly (cross-thread wake-up).
//!
//! The driver never knows about tasks beyond a `Waker`, except that the
//! io_uring driver keeps whom to wake as a `task::WakeHandle` (a local task
//! reference for tasks of its own loop, no atomic reference counting).

use std::fmt;
use std::io;
use std::sync::Arc;
use std::time::Duration;

pub(crate) mod fallback;
pub(crate) mod fd;
pub(crate) mod ops;
#[cfg(target_os = "linux")]
pub(crate) mod uring;

/// Which backend an [`EventLoop`](crate::EventLoop) runs on.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum DriverKind {
    /// Linux io_uring: operations are submitted as SQEs, completions wake tasks.
    Uring,
    /// The portable fallback backend, readiness-based (`ringloop-fallback`:
    /// epoll, kqueue, event ports, IOCP or poll(2)).
    Fallback,
}

#[allow(non_upper_case_globals)]
impl DriverKind {
    /// The old name of [`DriverKind::Fallback`].
    #[deprecated(note = "renamed to `DriverKind::Fallback` (one name for the backend)")]
    pub const Readiness: DriverKind = DriverKind::Fallback;
}

impl fmt::Display for DriverKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            DriverKind::Uring => f.write_str("uring"),
            DriverKind::Fallback => f.write_str("fallback"),
        }
    }
}

/// Which backend the builder should use.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Default)]
#[non_exhaustive]
pub enum DriverChoice {
    /// io_uring when it can be set up and probed, else the fallback backend.
    /// `RINGLOOP_DRIVER=uring|fallback` overrides this choice.
    #[default]
    Auto,
    /// io_uring or an error (never silently falls back).
    Uring,
    /// The fallback backend.
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

/// One of [`UringFeatures`], for [`Driver::uses`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Feature {
    MultishotAccept,
    MultishotRecv,
}

/// Process-wide counts of cross-thread wake-ups of io_uring loops:
/// `[sent by MSG_RING, sent by eventfd write, MSG_RING CQEs reaped,
/// eventfd completions reaped]` (all zero without io_uring).
pub(crate) fn uring_wake_counts() -> [u64; 4] {
    #[cfg(target_os = "linux")]
    {
        uring::wake_counts()
    }
    #[cfg(not(target_os = "linux"))]
    {
        [0; 4]
    }
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

/// The default most bytes a receive pool grows to.
pub(crate) const DEFAULT_RECV_POOL_LIMIT: usize = 32 << 20;

/// The receive pool a loop starts with unless the builder says otherwise:
/// where the kernel consumes buffers incrementally, 16 buffers of 64 KiB
/// (small receives share a buffer, and a large message fills one in one
/// pass instead of sixteen); otherwise 256 of 4 KiB (each receive takes a
/// whole buffer). Both are 1 MiB.
pub(crate) fn default_recv_pool(incremental: bool) -> (u16, u32) {
    if incremental { (16, 64 << 10) } else { (256, 4 << 10) }
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
    /// Receive pools: number of buffers to start with (a power of two) and
    /// their size; `None`: [`default_recv_pool`].
    pub recv_pool: Option<(u16, u32)>,
    /// The most bytes a receive pool grows to.
    pub recv_pool_limit: usize,
    /// io_uring features to use where the kernel has them.
    pub features: UringFeatures,
    /// Sends of at least this many bytes use `SEND_ZC`.
    pub send_zc_threshold: usize,
    /// Slots of the fixed-file table for sockets (0: none).
    pub fixed_files: u32,
}

/// The io_uring data-path features ringloop uses where the running kernel
/// has them (each is probed and degrades on its own). All are on by
/// default; turning one off (for a benchmark, or to isolate a bug) selects
/// the plain path it replaces. `RINGLOOP_URING_DISABLE` (a comma-separated
/// list of `multishot_accept`, `multishot_recv`, `incremental_recv`, `send_zc`, `msg_ring`,
/// `fixed_files`, or `all`) turns
/// features off for every loop of the process, on top of the builder's
/// choice. [`EventLoop::driver_description`](crate::EventLoop::driver_description)
/// lists the ones in use.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct UringFeatures {
    /// One multishot `ACCEPT` (5.19) behind `incoming()`, instead of one
    /// `ACCEPT` per connection.
    pub multishot_accept: bool,
    /// One multishot `RECV` into the loop's provided-buffer ring (6.0)
    /// behind `recv_stream()`, instead of one `RECV` into a heap buffer per
    /// chunk.
    pub multishot_recv: bool,
    /// The stream receive pool's buffers are consumed incrementally
    /// (`IOU_PBUF_RING_INC`, 6.12): a receive takes only the bytes it
    /// filled, so small messages share a buffer instead of taking one each
    /// (a 128-byte message fills 128 bytes of a buffer, not a whole one; a
    /// buffer goes back to the ring once it is full and every chunk
    /// received into it was dropped). Off, or on an older kernel, every
    /// receive takes a buffer.
    /// Datagram receives never share buffers.
    pub incremental_recv: bool,
    /// Zero-copy `SEND_ZC` (6.0) for sends at or above the threshold
    /// ([`Builder::send_zc_threshold`](crate::Builder::send_zc_threshold)).
    pub send_zc: bool,
    /// Cross-loop wake-ups by `MSG_RING` (5.18) from a thread running an
    /// io_uring loop (see [`cores`](crate::cores)), instead of an eventfd
    /// write on the sender and an eventfd read on the receiver.
    pub msg_ring: bool,
    /// Sockets the loop accepts or creates are installed in the ring's
    /// fixed-file table (5.5; sparse registration 5.19) and their
    /// operations use `IOSQE_FIXED_FILE`; a full table leaves the rest on
    /// plain fds. Size: [`Builder::fixed_files`](crate::Builder::fixed_files).
    pub fixed_files: bool,
}

impl UringFeatures {
    /// Every feature on (the default).
    pub const fn all() -> UringFeatures {
        UringFeatures {
            multishot_accept: true,
            multishot_recv: true,
            incremental_recv: true,
            send_zc: true,
            msg_ring: true,
            fixed_files: true,
        }
    }

    /// Every feature off: io_uring with one plain SQE per operation.
    pub const fn none() -> UringFeatures {
        UringFeatures {
            multishot_accept: false,
            multishot_recv: false,
            incremental_recv: false,
            send_zc: false,
            msg_ring: false,
            fixed_files: false,
        }
    }

    /// Turns off what `RINGLOOP_URING_DISABLE` names; unknown names are
    /// reported once (stderr, or a `tracing` warning) and ignored.
    pub(crate) fn without_env(mut self) -> UringFeatures {
        let Ok(list) = std::env::var("RINGLOOP_URING_DISABLE") else {
            return self;
        };
        for name in list.split(',').map(str::trim).filter(|n| !n.is_empty()) {
            match name {
                "all" => self = UringFeatures::none(),
                "multishot_accept" => self.multishot_accept = false,
                "multishot_recv" => self.multishot_recv = false,
                "incremental_recv" => self.incremental_recv = false,
                "send_zc" => self.send_zc = false,
                "msg_ring" => self.msg_ring = false,
                "fixed_files" => self.fixed_files = false,
                other => {
                    static WARNED: std::sync::Once = std::sync::Once::new();
                    let other = other.to_owned();
                    WARNED.call_once(move || {
                        crate::debug::warn_log(format_args!(
                            "ringloop: RINGLOOP_URING_DISABLE: unknown feature {other:?} ignored \
                             (known: multishot_accept, multishot_recv, incremental_recv, send_zc, msg_ring, fixed_files, all)"
                        ))
                    });
                }
            }
        }
        self
    }
}

impl Default for UringFeatures {
    fn default() -> Self {
        UringFeatures::all()
    }
}

impl Default for UringConfig {
    fn default() -> Self {
        UringConfig {
            entries: 256,
            tuned_flags: true,
            disable_ext_arg: false,
            recv_pool: None,
            recv_pool_limit: DEFAULT_RECV_POOL_LIMIT,
            features: UringFeatures::all(),
            send_zc_threshold: 16 * 1024,
            fixed_files: 4096,
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
    Fallback(std::rc::Rc<fallback::FallbackDriver>),
}

impl Driver {
    pub(crate) fn kind(&self) -> DriverKind {
        match self {
            #[cfg(target_os = "linux")]
            Driver::Uring(_) => DriverKind::Uring,
            Driver::Fallback(_) => DriverKind::Fallback,
        }
    }

    pub(crate) fn description(&self) -> String {
        match self {
            #[cfg(target_os = "linux")]
            Driver::Uring(d) => format!("uring ({})", d.setup_description()),
            Driver::Fallback(_) => format!("fallback ({})", ringloop_fallback::backend_name()),
        }
    }

    /// The loop closed: operations submitted later fail at once.
    pub(crate) fn close(&self) {
        match self {
            #[cfg(target_os = "linux")]
            Driver::Uring(d) => d.close(),
            Driver::Fallback(d) => d.close(),
        }
    }

    pub(crate) fn wait(&self, timeout: Option<Duration>) -> io::Result<()> {
        match self {
            #[cfg(target_os = "linux")]
            Driver::Uring(d) => d.wait(timeout),
            Driver::Fallback(d) => d.wait(timeout),
        }
    }

    /// Operations in flight: on io_uring the operation slots in use
    /// (submitted and not completed, completed but not yet collected by
    /// their future, or cancelled and awaiting their final completion); on
    /// the fallback backend the operations waiting for readiness.
    pub(crate) fn inflight_ops(&self) -> usize {
        match self {
            #[cfg(target_os = "linux")]
            Driver::Uring(d) => d.slots_in_use(),
            Driver::Fallback(d) => d.waiting_ops(),
        }
    }

    /// Whether io_uring runs with `feature` on (asked for and available).
    pub(crate) fn uses(&self, feature: Feature) -> bool {
        match self {
            #[cfg(target_os = "linux")]
            Driver::Uring(d) => d.uses(feature),
            Driver::Fallback(_) => {
                let _ = feature;
                false
            }
        }
    }

    /// Whether `sendto` may be one `SEND` with a destination address
    /// ([`ops::SendTo`]): always on the fallback backend (`sendto(2)`); on
    /// io_uring from Linux 6.0, which added both that and `SEND_ZC`, so the
    /// probe's `SEND_ZC` stands for it (older kernels use `SENDMSG`).
    pub(crate) fn send_to_supported(&self) -> bool {
        match self {
            #[cfg(target_os = "linux")]
            Driver::Uring(d) => d.supports(io_uring::opcode::SendZc::CODE),
            Driver::Fallback(_) => true,
        }
    }

    /// The size from which sends use `SEND_ZC` (`None`: never).
    pub(crate) fn send_zc_threshold(&self) -> Option<usize> {
        match self {
            #[cfg(target_os = "linux")]
            Driver::Uring(d) => d.send_zc_threshold(),
            Driver::Fallback(_) => None,
        }
    }

    /// Whether a `SEND_ZC`'s notification says if the kernel copied the
    /// bytes after all (io_uring on 6.2+).
    #[cfg(target_os = "linux")]
    pub(crate) fn send_zc_reports_copies(&self) -> bool {
        match self {
            Driver::Uring(d) => d.send_zc_reports_copies(),
            Driver::Fallback(_) => false,
        }
    }

    /// SQEs queued on io_uring since the ring was built (`None` on the
    /// fallback backend); tests use it to check how many operations a
    /// workload costs.
    #[cfg(test)]
    pub(crate) fn sqes_queued(&self) -> Option<u64> {
        match self {
            #[cfg(target_os = "linux")]
            Driver::Uring(d) => Some(d.stats().sqes),
            Driver::Fallback(_) => None,
        }
    }

    /// Operations submitted on io_uring with opcode `O::CODE` (`None` on
    /// the fallback backend).
    #[cfg(test)]
    pub(crate) fn ops_submitted<O: ops::OpCode>(&self) -> Option<u64> {
        match self {
            #[cfg(target_os = "linux")]
            Driver::Uring(d) => Some(d.stats().ops_by_opcode[usize::from(O::CODE) % 64]),
            Driver::Fallback(_) => None,
        }
    }

    /// Multishot operations the io_uring driver cancelled because their
    /// completion queue reached its bound (`None` on the fallback backend).
    #[cfg(test)]
    pub(crate) fn queue_bound_cancels(&self) -> Option<u64> {
        match self {
            #[cfg(target_os = "linux")]
            Driver::Uring(d) => Some(d.stats().queue_bound_cancels),
            Driver::Fallback(_) => None,
        }
    }

    /// The io_uring fixed-file table: `(sockets installed, sockets left on
    /// plain fds, slots in use, table enabled)`; `None` on the fallback
    /// backend.
    #[cfg(test)]
    pub(crate) fn fixed_files(&self) -> Option<(u64, u64, usize, bool)> {
        match self {
            #[cfg(target_os = "linux")]
            Driver::Uring(d) => {
                let s = d.stats();
                Some((s.fixed_installed, s.fixed_full, d.fixed_in_use(), d.fixed_enabled()))
            }
            Driver::Fallback(_) => None,
        }
    }

    /// See `UringDriver::set_task_hook` (the readiness backend keeps wakers).
    pub(crate) fn set_task_hook(&self, hook: std::rc::Rc<crate::task::SchedHook>) {
        match self {
            #[cfg(target_os = "linux")]
            Driver::Uring(d) => d.set_task_hook(hook),
            Driver::Fallback(_) => drop(hook),
        }
    }

    pub(crate) fn notifier(&self) -> Arc<dyn Notify> {
        match self {
            #[cfg(target_os = "linux")]
            Driver::Uring(d) => d.notifier(),
            Driver::Fallback(d) => d.notifier(),
        }
    }

    /// Builds the driver the configuration asks for. With `Auto`, any failure
    /// to set up or probe io_uring selects the fallback backend.
    pub(crate) fn build(choice: DriverChoice, cfg: &UringConfig) -> io::Result<Driver> {
        let readiness = || Ok(Driver::Fallback(std::rc::Rc::new(fallback::FallbackDriver::new()?)));
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
                        "ringloop: io_uring unavailable ({e}); using the fallback backend ({})",
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
