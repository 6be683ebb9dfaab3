//! The io_uring driver: one ring per loop, batched submission, completions
//! dispatched to per-operation slots.
//!
//! # Structure
//!
//! * [`UringDriver`] is a cheap `Rc` handle (`!Send`: one ring per loop
//!   thread). Operations ([`Op`], [`MultiOp`]) keep a clone, so the ring and
//!   the slots outlive every operation that may still be known to the kernel.
//! * [`Core`] (behind one `RefCell`) owns the ring, the slab of operation
//!   slots, a userspace backlog for SQEs that did not fit in the SQ, the
//!   cross-thread eventfd's read buffer and the bookkeeping of the
//!   Timeout-SQE wait used on kernels without `IORING_FEAT_EXT_ARG`.
//!
//! # user_data
//!
//! An operation's SQE carries its slab key. Values with the top bit set
//! ([`INTERNAL`]) belong to the driver: [`EVENTFD_UD`] (the armed eventfd
//! read), [`CANCEL_UD`] (AsyncCancel / TimeoutRemove, results ignored) and
//! `WAIT_TIMEOUT_UD | generation` (the wait timeout without EXT_ARG). A slab
//! never reaches 2^63 entries, so the two ranges cannot meet.
//!
//! # Invariants
//!
//! * A slot stays allocated until the CQE without `IORING_CQE_F_MORE` for its
//!   key has been reaped, so a key (user_data) is never reused while the
//!   kernel may still post a completion for it. An AsyncCancel for a key is
//!   queued before any SQE of a later operation that could reuse the key,
//!   and the kernel runs a user_data cancel inline when it is submitted, so
//!   a late cancel cannot hit the reuser.
//! * Memory an SQE points at is owned by the operation's resources (in the
//!   `Op` while it is alive, in the slot's `Ignored` state after), or by
//!   `Core` for the driver's own SQEs, and outlives the final CQE. If the
//!   driver is dropped before a final CQE arrives, that memory is leaked,
//!   never freed.
//! * The `RefCell` is never borrowed across a call into code that is not the
//!   driver's: wakers are woken, and orphaned resources dropped, after the
//!   borrow ends (both may re-enter the driver, e.g. to submit an op).
//!
//! # Unsafe inventory (this module and `op.rs`)
//!
//! * `SubmissionQueue::push` (in [`Core::push`] / [`Core::flush_backlog`]):
//!   the kernel dereferences the SQE's pointers; see the contract of
//!   `Core::push`.
//! * `libc::eventfd`, `libc::write`, `libc::read` on the eventfd: plain FFI on
//!   an fd this module owns, with valid local buffers; `OwnedFd::from_raw_fd`
//!   takes ownership of the fresh eventfd.
//! * `Box::from_raw` of the eventfd read buffer in `Drop`, only when no read
//!   is in flight.
//! * [`UringDriver::submit`] / [`UringDriver::submit_multishot`] are
//!   `unsafe fn`s: their callers promise the SQE only points into memory the
//!   resources keep alive at a fixed address.

mod op;
pub(crate) mod pool;
#[cfg(test)]
mod tests;

#[allow(unused_imports)] // `MultiOp` is used by tests now and by I/O types next.
pub(crate) use op::{MultiOp, Op, Timeout};

use std::any::Any;
use std::cell::RefCell;
use std::collections::VecDeque;
use std::io;
use std::mem;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::ptr::NonNull;
use std::rc::Rc;
use std::sync::Arc;
use std::task::Waker;
use std::time::{Duration, Instant};

use io_uring::{IoUring, Probe, opcode, squeue, types};
use slab::Slab;

use super::{Notify, UringConfig};
use op::Lifecycle;

/// user_data values at or above this are the driver's own.
const INTERNAL: u64 = 1 << 63;
/// The armed eventfd read (or poll, see [`WakeMode`]).
const EVENTFD_UD: u64 = u64::MAX;
/// AsyncCancel and TimeoutRemove SQEs: their own CQEs carry nothing we need.
const CANCEL_UD: u64 = u64::MAX - 1;
/// The wait timeout on kernels without EXT_ARG: `WAIT_TIMEOUT_UD | generation`.
const WAIT_TIMEOUT_UD: u64 = INTERNAL;
const WAIT_TIMEOUT_MASK: u64 = !0xFFFF_FFFF;

/// How long dropping the driver waits for the final completions of cancelled
/// operations before leaking their resources.
const TEARDOWN_GRACE: Duration = Duration::from_secs(1);

// Setup flags we try, as our own bits (mapped onto `io_uring::Builder`).
const SINGLE_ISSUER: u32 = 1 << 0;
const DEFER_TASKRUN: u32 = 1 << 1;
const COOP_TASKRUN: u32 = 1 << 2;
const TASKRUN_FLAG: u32 = 1 << 3;
const SUBMIT_ALL: u32 = 1 << 4;

/// Flag sets tried in order when `tuned_flags` is on; each refused with
/// EINVAL (an older kernel) falls through to the next. DEFER_TASKRUN (6.1)
/// always comes with TASKRUN_FLAG (5.19), which `wait` relies on to know when
/// a zero-timeout poll must enter the kernel.
const TUNED_ATTEMPTS: [u32; 4] = [
    SINGLE_ISSUER | DEFER_TASKRUN | COOP_TASKRUN | TASKRUN_FLAG | SUBMIT_ALL, // 6.1+
    SINGLE_ISSUER | COOP_TASKRUN | TASKRUN_FLAG | SUBMIT_ALL,                 // 6.0
    COOP_TASKRUN | TASKRUN_FLAG | SUBMIT_ALL,                                 // 5.19
    0,
];

fn flags_name(flags: u32) -> String {
    const NAMES: [(u32, &str); 5] = [
        (SINGLE_ISSUER, "SINGLE_ISSUER"),
        (DEFER_TASKRUN, "DEFER_TASKRUN"),
        (COOP_TASKRUN, "COOP_TASKRUN"),
        (TASKRUN_FLAG, "TASKRUN_FLAG"),
        (SUBMIT_ALL, "SUBMIT_ALL"),
    ];
    let names: Vec<&str> = NAMES
        .iter()
        .filter(|(bit, _)| flags & bit != 0)
        .map(|(_, name)| *name)
        .collect();
    if names.is_empty() {
        "none".to_owned()
    } else {
        names.join("|")
    }
}

/// Opcodes the driver cannot work without (PollAdd backs the eventfd wake on
/// kernels whose io_uring read of a non-blocking eventfd returns EAGAIN).
const REQUIRED_OPCODES: [(u8, &str); 6] = [
    (opcode::Nop::CODE, "NOP"),
    (opcode::Read::CODE, "READ"),
    (opcode::Timeout::CODE, "TIMEOUT"),
    (opcode::TimeoutRemove::CODE, "TIMEOUT_REMOVE"),
    (opcode::AsyncCancel::CODE, "ASYNC_CANCEL"),
    (opcode::PollAdd::CODE, "POLL_ADD"),
];

fn build_ring(entries: u32, flags: u32) -> io::Result<IoUring> {
    let mut builder = IoUring::builder();
    if flags & SINGLE_ISSUER != 0 {
        builder.setup_single_issuer();
    }
    if flags & DEFER_TASKRUN != 0 {
        builder.setup_defer_taskrun();
    }
    if flags & COOP_TASKRUN != 0 {
        builder.setup_coop_taskrun();
    }
    if flags & TASKRUN_FLAG != 0 {
        builder.setup_taskrun_flag();
    }
    if flags & SUBMIT_ALL != 0 {
        builder.setup_submit_all();
    }
    // The CQ is left at the kernel's default size, twice the SQ: asking for it
    // explicitly (IORING_SETUP_CQSIZE) would only add a failure mode on old
    // kernels.
    builder.build(entries)
}

fn setup_error(e: io::Error, entries: u32, tried: &str) -> io::Error {
    let hint = match e.raw_os_error() {
        Some(libc::ENOMEM) => {
            "; kernels before 5.12 charge ring memory to RLIMIT_MEMLOCK: raise `ulimit -l` \
             or ask for fewer entries"
        }
        Some(libc::EPERM) => {
            "; io_uring is forbidden for this process (a seccomp filter such as Docker's \
             default profile, or the kernel.io_uring_disabled sysctl)"
        }
        Some(libc::ENOSYS) => {
            "; this kernel has no io_uring (too old or built without it), or a seccomp \
             filter hides it"
        }
        Some(libc::EINVAL) => "; the kernel refused every flag set; entries must be between 1 and 32768",
        Some(libc::EMFILE) | Some(libc::ENFILE) => "; out of file descriptors",
        _ => "",
    };
    io::Error::new(
        e.kind(),
        format!("io_uring_setup(entries = {entries}, flag sets tried: {tried}) failed: {e}{hint}"),
    )
}

/// Submits one NOP and waits for its completion. `io_uring_setup` working
/// says nothing about `io_uring_enter`: a seccomp filter may refuse only the
/// latter, and a ring that cannot be entered must be rejected at setup (so
/// `Auto` falls back) rather than fail every wait of the loop.
fn enter_works(ring: &mut IoUring) -> io::Result<()> {
    let nop = opcode::Nop::new().build().user_data(CANCEL_UD);
    // SAFETY: a NOP references no memory.
    if unsafe { ring.submission().push(&nop) }.is_err() {
        return Err(io::Error::other("io_uring: no room for one NOP in a new SQ"));
    }
    loop {
        match ring.submit_and_wait(1) {
            Ok(_) => break,
            Err(e) if e.raw_os_error() == Some(libc::EINTR) => continue,
            Err(e) => {
                return Err(io::Error::new(
                    e.kind(),
                    format!(
                        "io_uring_enter on a new ring failed: {e} (io_uring_setup is allowed but \
                         io_uring_enter is not, e.g. by a seccomp filter)"
                    ),
                ));
            }
        }
    }
    // The NOP's CQE (user_data CANCEL_UD: nothing to dispatch).
    ring.completion().for_each(drop);
    Ok(())
}

fn enter_error(e: io::Error) -> io::Error {
    io::Error::new(e.kind(), format!("io_uring_enter failed: {e}"))
}

/// A `Timespec` for `d`, clamped so the kernel's signed seconds stay valid.
fn timespec(d: Duration) -> types::Timespec {
    types::Timespec::new()
        .sec(d.as_secs().min(i64::MAX as u64))
        .nsec(d.subsec_nanos())
}

/// The cross-thread wake-up: an eventfd whose read is kept armed in the ring.
struct EventFd(OwnedFd);

impl Notify for EventFd {
    fn notify(&self) {
        let one: u64 = 1;
        // SAFETY: writes 8 bytes from a live local to an eventfd we own. An
        // EAGAIN (counter saturated) means a wake-up is already pending.
        let _ = unsafe { libc::write(self.0.as_raw_fd(), (&raw const one).cast(), 8) };
    }
}

/// How the eventfd is watched.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum WakeMode {
    /// An 8-byte IORING_OP_READ into `Core::eventfd_buf`.
    Read,
    /// IORING_OP_POLL_ADD, then a non-blocking read(2) to reset the counter:
    /// for kernels that complete an io_uring read of a non-blocking eventfd
    /// with EAGAIN instead of waiting.
    Poll,
    /// Gave up after repeated errors (logged); cross-thread wake-ups then
    /// only land when something else wakes the ring.
    Off,
}

/// The wait timeout used when EXT_ARG is missing (or disabled for tests):
/// at most one is current; a replaced one is removed with TimeoutRemove and
/// its CQE ignored.
struct LegacyTimeout {
    /// Read by the kernel when the Timeout SQE is submitted (the kernel copies
    /// it then); heap-allocated so its address is stable.
    ts: Box<types::Timespec>,
    /// The timeout the current wait relies on: (generation, deadline).
    current: Option<(u32, Option<Instant>)>,
    generation: u32,
    /// Timeout SQEs pushed whose CQE has not been reaped yet.
    outstanding: u32,
}

/// Counters for diagnostics and tests (cheap increments).
#[derive(Clone, Copy, Debug, Default)]
pub(crate) struct Stats {
    /// `io_uring_enter` calls made by `wait` (not counting SQ-full submits).
    pub enters: u64,
    /// CQEs dispatched to operation slots.
    pub op_cqes: u64,
    /// Kernel-side CQE overflow flushes performed.
    pub overflow_flushes: u64,
}

pub(crate) struct Core {
    ring: IoUring,
    slots: Slab<Lifecycle>,
    /// SQEs that did not fit in the SQ (and could not be submitted to make
    /// room); pushed before anything newer, so submission order is kept.
    backlog: VecDeque<squeue::Entry>,
    /// Wakers of completed operations, woken after the borrow ends.
    to_wake: Vec<Waker>,
    /// Resources of orphaned operations whose final CQE arrived, dropped
    /// after the borrow ends.
    graveyard: Vec<Box<dyn Any>>,
    /// Next SQEs of lingering operations, collected while the CQ is
    /// borrowed and pushed right after.
    resubmit: Vec<squeue::Entry>,
    /// The earliest deadline of a lingering operation not yet cancelled.
    linger_deadline: Option<Instant>,
    /// The receive-buffer pool, registered on first use.
    pool: PoolState,
    pool_config: (u16, u32),
    eventfd: Arc<EventFd>,
    /// Target of the armed eventfd read. Raw (from `Box::into_raw`) because
    /// the kernel writes it behind Rust's back; freed in `Drop` only when no
    /// read is in flight.
    eventfd_buf: NonNull<u64>,
    eventfd_armed: bool,
    wake_mode: WakeMode,
    wake_errors: u32,
    ext_arg: bool,
    legacy: LegacyTimeout,
    /// TASKRUN_FLAG accepted: the kernel tells us (IORING_SQ_TASKRUN) when a
    /// zero-timeout poll must enter to get completions.
    taskrun_flag: bool,
    /// COOP_TASKRUN without TASKRUN_FLAG: we cannot tell, so always enter.
    always_enter_to_poll: bool,
    closing: bool,
    dropped_reported: u32,
    stats: Stats,
    /// The loop was closed: new operations complete at once with ECANCELED
    /// instead of queueing SQEs nobody would ever submit.
    closed: bool,
}

/// Whether the receive-buffer pool exists.
pub(crate) enum PoolState {
    Unset,
    Ready(Rc<pool::Pool>),
    /// Registration failed (kernel before 5.19, or out of memory): receives
    /// that would use it fall back to single-shot ones into heap buffers.
    Failed,
}

impl PoolState {
    pub(crate) fn get(&self) -> Option<&pool::Pool> {
        match self {
            PoolState::Ready(p) => Some(p),
            _ => None,
        }
    }
}

pub(crate) struct Inner {
    core: RefCell<Core>,
    description: String,
    /// The opcodes this kernel supports (`IORING_REGISTER_PROBE`).
    probe: Probe,
}

/// The io_uring driver handle (cheap to clone, `!Send`).
#[derive(Clone)]
pub(crate) struct UringDriver {
    inner: Rc<Inner>,
}

impl UringDriver {
    /// Sets up a ring of `cfg.entries` SQEs (CQ twice that), with the tuned
    /// flags the kernel accepts, probes the opcodes the driver needs and arms
    /// the cross-thread eventfd. Any failure is an error naming the syscall,
    /// so the caller can fall back to the readiness backend.
    pub(crate) fn new(cfg: &UringConfig) -> io::Result<Self> {
        let attempts: &[u32] = if cfg.tuned_flags { &TUNED_ATTEMPTS } else { &[0] };
        Self::with_attempts(cfg, attempts)
    }

    /// `new` with the flag sets to try, in order (tests use it to exercise
    /// the fall-through an older kernel takes).
    fn with_attempts(cfg: &UringConfig, attempts: &[u32]) -> io::Result<Self> {
        let mut refused = Vec::new();
        let mut built = None;
        for (i, &flags) in attempts.iter().enumerate() {
            match build_ring(cfg.entries, flags) {
                Ok(ring) => {
                    built = Some((ring, flags));
                    break;
                }
                Err(e) if e.raw_os_error() == Some(libc::EINVAL) && i + 1 < attempts.len() => {
                    refused.push(flags_name(flags));
                }
                Err(e) => {
                    refused.push(flags_name(flags));
                    return Err(setup_error(e, cfg.entries, &refused.join(", ")));
                }
            }
        }
        let Some((mut ring, flags)) = built else {
            // Unreachable: the last attempt either succeeds or returns.
            return Err(io::Error::other("io_uring_setup: no flag set to try"));
        };

        let mut probe = Probe::new();
        ring.submitter().register_probe(&mut probe).map_err(|e| {
            io::Error::new(
                e.kind(),
                format!(
                    "io_uring_register(IORING_REGISTER_PROBE) failed: {e} \
                     (kernels before 5.6 cannot report their opcodes)"
                ),
            )
        })?;
        for (code, name) in REQUIRED_OPCODES {
            if !probe.is_supported(code) {
                return Err(io::Error::new(
                    io::ErrorKind::Unsupported,
                    format!("io_uring: this kernel lacks the IORING_OP_{name} opcode"),
                ));
            }
        }
        enter_works(&mut ring)?;
        let params = ring.params();
        if !params.is_feature_nodrop() {
            return Err(io::Error::new(
                io::ErrorKind::Unsupported,
                "io_uring: this kernel lacks IORING_FEAT_NODROP (completions could be lost)",
            ));
        }
        let kernel_ext_arg = params.is_feature_ext_arg();
        let ext_arg = kernel_ext_arg && !cfg.disable_ext_arg;

        // SAFETY: plain FFI; the result is checked before use.
        let raw = unsafe { libc::eventfd(0, libc::EFD_NONBLOCK | libc::EFD_CLOEXEC) };
        if raw < 0 {
            let e = io::Error::last_os_error();
            return Err(io::Error::new(e.kind(), format!("eventfd failed: {e}")));
        }
        // SAFETY: `raw` is a freshly created fd that nothing else owns.
        let eventfd = Arc::new(EventFd(unsafe { OwnedFd::from_raw_fd(raw) }));

        let description = format!(
            "io_uring: {} SQ / {} CQ entries, flags {}{}, features{}{}{}",
            params.sq_entries(),
            params.cq_entries(),
            flags_name(flags),
            if refused.is_empty() {
                String::new()
            } else {
                format!(" (refused: {})", refused.join(", "))
            },
            if params.is_feature_nodrop() { " NODROP" } else { "" },
            match (kernel_ext_arg, ext_arg) {
                (true, true) => " EXT_ARG",
                (true, false) => " EXT_ARG(disabled: Timeout-SQE waits)",
                _ => " (no EXT_ARG: Timeout-SQE waits)",
            },
            if params.is_feature_fast_poll() {
                " FAST_POLL"
            } else {
                ""
            },
        );

        let mut core = Core {
            ring,
            slots: Slab::new(),
            backlog: VecDeque::new(),
            to_wake: Vec::new(),
            graveyard: Vec::new(),
            resubmit: Vec::new(),
            linger_deadline: None,
            pool: PoolState::Unset,
            pool_config: (cfg.recv_pool_entries, cfg.recv_pool_buf_size),
            eventfd,
            eventfd_buf: NonNull::from(Box::leak(Box::new(0u64))),
            eventfd_armed: false,
            wake_mode: WakeMode::Read,
            wake_errors: 0,
            ext_arg,
            legacy: LegacyTimeout {
                ts: Box::new(types::Timespec::new()),
                current: None,
                generation: 0,
                outstanding: 0,
            },
            taskrun_flag: flags & TASKRUN_FLAG != 0,
            always_enter_to_poll: flags & COOP_TASKRUN != 0 && flags & TASKRUN_FLAG == 0,
            closing: false,
            dropped_reported: 0,
            stats: Stats::default(),
            closed: false,
        };
        core.arm_eventfd();
        crate::debug::debug_log(format_args!("ringloop: {description}"));
        Ok(UringDriver {
            inner: Rc::new(Inner {
                core: RefCell::new(core),
                description,
                probe,
            }),
        })
    }

    /// Which setup flags and features this ring runs with (debug output).
    pub(crate) fn setup_description(&self) -> String {
        let mode = self.inner.core.borrow().wake_mode;
        format!("{}, eventfd wake: {mode:?}", self.inner.description)
    }

    /// Submits everything queued and waits for completions (at most
    /// `timeout`; `None` = no limit, zero = poll) in one `io_uring_enter` in
    /// the common case, then wakes the wakers of everything that completed.
    pub(crate) fn wait(&self, timeout: Option<Duration>) -> io::Result<()> {
        let res = {
            let mut core = self.inner.core.borrow_mut();
            if timeout == Some(Duration::ZERO) && core.idle() {
                // Loop iterations that only run callbacks pass here: nothing
                // to submit, reap or wake.
                return Ok(());
            }
            core.wait(timeout)
        };
        self.inner.wake_and_bury();
        res
    }

    /// Marks the driver closed (its loop was closed): later operations fail
    /// with `ECANCELED` at once instead of waiting for a loop that never runs.
    pub(crate) fn close(&self) {
        self.inner.core.borrow_mut().closed = true;
    }

    /// Whether the kernel supports `opcode` (e.g. `opcode::WaitId::CODE`),
    /// per the probe taken at setup: I/O types use it to pick an operation
    /// or a fallback.
    pub(crate) fn supports(&self, opcode: u8) -> bool {
        self.inner.probe.is_supported(opcode)
    }

    /// A `Send + Sync` handle whose `notify()` wakes a blocked `wait`.
    pub(crate) fn notifier(&self) -> Arc<dyn Notify> {
        self.inner.core.borrow().eventfd.clone()
    }

    /// The loop's receive-buffer pool, registered on first use; `None` if
    /// this kernel (or the configuration) cannot have one.
    pub(crate) fn recv_pool(&self) -> Option<Rc<pool::Pool>> {
        let mut core = self.inner.core.borrow_mut();
        if let PoolState::Unset = core.pool {
            let (entries, size) = core.pool_config;
            core.pool = match pool::Pool::register(&core.ring, entries, size) {
                Ok(p) => PoolState::Ready(Rc::new(p)),
                Err(e) => {
                    crate::debug::debug_log(format_args!(
                        "ringloop: no io_uring receive pool ({e}); pooled receives use single-shot RECV"
                    ));
                    PoolState::Failed
                }
            };
        }
        match &core.pool {
            PoolState::Ready(p) => Some(p.clone()),
            _ => None,
        }
    }

    /// Counters since the ring was built.
    #[allow(dead_code)] // Benchmarks and the loop's debug output will read these.
    pub(crate) fn stats(&self) -> Stats {
        self.inner.core.borrow().stats
    }

    /// Number of operation slots in use (in flight, completed but not yet
    /// collected, or orphaned awaiting their final CQE).
    #[allow(dead_code)]
    pub(crate) fn slots_in_use(&self) -> usize {
        self.inner.core.borrow().slots.len()
    }

    /// Allocates a slot and queues `entry` with the slot's key as user_data.
    ///
    /// # Safety
    ///
    /// As for [`Core::push`], with the operation's final CQE as the end.
    unsafe fn submit_entry(&self, entry: squeue::Entry) -> usize {
        let mut core = self.inner.core.borrow_mut();
        if core.closed {
            // Nothing will ever enter this ring again: complete at once
            // without queueing the SQE (so nothing points at the resources).
            return core.slots.insert(Lifecycle::Completed(-libc::ECANCELED, 0));
        }
        let key = core.slots.insert(Lifecycle::Submitted);
        debug_assert!((key as u64) < INTERNAL);
        // SAFETY: forwarded from this function's contract.
        unsafe { core.push(entry.user_data(key as u64)) };
        key
    }
}

impl Inner {
    /// Wakes the wakers and drops the orphaned resources collected by the
    /// last reap, after the borrow ends (both may re-enter the driver).
    fn wake_and_bury(&self) {
        let (mut wakers, graveyard) = {
            let mut core = self.core.borrow_mut();
            if core.to_wake.is_empty() && core.graveyard.is_empty() {
                return;
            }
            (mem::take(&mut core.to_wake), mem::take(&mut core.graveyard))
        };
        for waker in wakers.drain(..) {
            waker.wake();
        }
        drop(graveyard);
        // Hand the (empty) vector back so its capacity is reused.
        if let Ok(mut core) = self.core.try_borrow_mut()
            && core.to_wake.is_empty()
        {
            core.to_wake = wakers;
        }
    }
}

impl Core {
    /// Queues an SQE, submitting what is queued when the SQ is full; an SQE
    /// that still does not fit goes to the backlog. Never drops an SQE.
    ///
    /// # Safety
    ///
    /// Every pointer in `entry` must stay valid, at the same address and not
    /// otherwise accessed in a conflicting way, until the final CQE for its
    /// user_data has been reaped (or, for the driver's own SQEs, until the
    /// kernel has consumed it), or forever if it never is.
    unsafe fn push(&mut self, entry: squeue::Entry) {
        if self.backlog.is_empty() {
            // SAFETY: the entry's pointers satisfy this function's contract.
            if unsafe { self.ring.submission().push(&entry) }.is_ok() {
                return;
            }
            // SQ full: hand the queued SQEs to the kernel, then retry. Errors
            // (EBUSY with a CQ overflow backlog, EAGAIN) leave them queued and
            // the entry goes to the backlog, flushed by the next `wait`.
            if self.ring.submit().is_ok() {
                // SAFETY: as above.
                if unsafe { self.ring.submission().push(&entry) }.is_ok() {
                    return;
                }
            }
        }
        self.backlog.push_back(entry);
    }

    /// Records a new lingering operation's deadline.
    pub(super) fn note_linger(&mut self, deadline: Instant) {
        self.linger_deadline = Some(self.linger_deadline.map_or(deadline, |d| d.min(deadline)));
    }

    /// Cancels lingering operations whose deadline passed and returns how
    /// long until the next deadline (`None`: nothing lingers).
    fn expire_lingering(&mut self) -> Option<Duration> {
        let earliest = self.linger_deadline?;
        let now = Instant::now();
        if now < earliest {
            return Some(earliest - now);
        }
        let mut next: Option<Instant> = None;
        let mut expired = Vec::new();
        for (key, slot) in self.slots.iter_mut() {
            if let Lifecycle::Lingering(l) = slot
                && !l.cancelled
            {
                if l.deadline <= now {
                    l.cancelled = true;
                    expired.push(key);
                } else {
                    next = Some(next.map_or(l.deadline, |d| d.min(l.deadline)));
                }
            }
        }
        for key in expired {
            self.push_cancel(key as u64);
        }
        self.linger_deadline = next;
        next.map(|d| d - now)
    }

    /// Whether an operation handed over with `Op::linger` is still running.
    fn has_lingering(&self) -> bool {
        self.linger_deadline.is_some() && self.slots.iter().any(|(_, s)| matches!(s, Lifecycle::Lingering(_)))
    }

    /// Queues an AsyncCancel for operation `key`.
    fn push_cancel(&mut self, key: u64) {
        let entry = opcode::AsyncCancel::new(key).build().user_data(CANCEL_UD);
        // SAFETY: AsyncCancel references no memory.
        unsafe { self.push(entry) };
    }

    /// Moves backlog SQEs into the SQ, submitting whenever it fills. Stops
    /// early (leaving the rest for the next call) if the kernel refuses more
    /// for now.
    fn flush_backlog(&mut self) -> io::Result<()> {
        while let Some(entry) = self.backlog.front() {
            // SAFETY: backlog entries were accepted by `push`, whose caller
            // upheld its contract.
            if unsafe { self.ring.submission().push(entry) }.is_ok() {
                self.backlog.pop_front();
                continue;
            }
            match self.ring.submit() {
                Ok(_) => {}
                Err(e) if is_transient(&e) => {
                    self.reap();
                    return Ok(());
                }
                Err(e) => return Err(enter_error(e)),
            }
            if self.ring.submission().is_full() {
                self.reap();
                return Ok(());
            }
        }
        Ok(())
    }

    fn arm_eventfd(&mut self) {
        let fd = types::Fd(self.eventfd.0.as_raw_fd());
        let entry = match self.wake_mode {
            WakeMode::Read => opcode::Read::new(fd, self.eventfd_buf.as_ptr().cast(), 8).build(),
            WakeMode::Poll => opcode::PollAdd::new(fd, libc::POLLIN as u32).build(),
            WakeMode::Off => return,
        };
        // The read targets `eventfd_buf`, a heap u64 owned by `Core`
        // that is freed only when no read is armed (leaked otherwise); the fd
        // is kept open by `self.eventfd` for as long as `Core` lives.
        // SAFETY: upheld as explained just above.
        unsafe { self.push(entry.user_data(EVENTFD_UD)) };
        self.eventfd_armed = true;
    }

    /// Resets the eventfd counter after a poll completion (WakeMode::Poll).
    fn drain_eventfd(&self) {
        let mut value: u64 = 0;
        // SAFETY: reads at most 8 bytes into a live local; the fd is ours and
        // non-blocking (EAGAIN just means someone else already drained it).
        let _ = unsafe { libc::read(self.eventfd.0.as_raw_fd(), (&raw mut value).cast(), 8) };
    }

    /// Pushes the wait-timeout SQE for kernels without EXT_ARG, keeping at
    /// most one current: an existing one that fires no later than needed is
    /// reused, a later one is removed first.
    fn arm_legacy_timeout(&mut self, remaining: Option<Duration>) {
        let Some(d) = remaining else {
            // An unbounded wait must not be cut short by an old timeout.
            if let Some((generation, _)) = self.legacy.current.take() {
                self.push_timeout_remove(generation);
            }
            return;
        };
        let deadline = Instant::now().checked_add(d);
        if let Some((generation, current)) = self.legacy.current {
            let fires_in_time = match (current, deadline) {
                (Some(current), Some(deadline)) => current <= deadline,
                (_, None) => true,
                (None, Some(_)) => false,
            };
            if fires_in_time {
                return;
            }
            self.push_timeout_remove(generation);
        }
        self.legacy.generation = self.legacy.generation.wrapping_add(1);
        let generation = self.legacy.generation;
        *self.legacy.ts = timespec(d);
        let ts: *const types::Timespec = &*self.legacy.ts;
        let entry = opcode::Timeout::new(ts)
            .build()
            .user_data(WAIT_TIMEOUT_UD | u64::from(generation));
        // `ts` points into `legacy.ts`, a Box owned by `Core` that is
        // only rewritten by the next arm (after this SQE was submitted by the
        // enter that follows) and leaked in `Drop` if timeouts are outstanding.
        // SAFETY: upheld as explained just above.
        unsafe { self.push(entry) };
        self.legacy.outstanding += 1;
        self.legacy.current = Some((generation, deadline));
    }

    fn push_timeout_remove(&mut self, generation: u32) {
        let entry = opcode::TimeoutRemove::new(WAIT_TIMEOUT_UD | u64::from(generation))
            .build()
            .user_data(CANCEL_UD);
        // SAFETY: TimeoutRemove references no memory.
        unsafe { self.push(entry) };
    }

    fn wait(&mut self, timeout: Option<Duration>) -> io::Result<()> {
        let timeout = match self.expire_lingering() {
            // Wake up in time to cancel an operation lingering too long.
            Some(left) => Some(timeout.map_or(left, |t| t.min(left))),
            None => timeout,
        };
        self.flush_backlog()?;
        let timeout = if self.backlog.is_empty() {
            timeout
        } else {
            // More SQEs than the SQ holds are waiting: come back at once.
            Some(Duration::ZERO)
        };
        match timeout {
            Some(d) if d.is_zero() => self.poll(),
            _ => self.wait_blocking(timeout),
        }
    }

    /// Nothing for a zero-timeout wait to do: no queued SQE (in the ring or
    /// the backlog), no CQE, no kernel task work or CQ overflow waiting for
    /// an enter, the cross-thread eventfd watch armed (or deliberately not,
    /// while closing), and nothing left to wake or drop.
    fn idle(&mut self) -> bool {
        if !self.backlog.is_empty()
            || !(self.eventfd_armed || self.closing)
            || !self.to_wake.is_empty()
            || !self.graveyard.is_empty()
        {
            return false;
        }
        !self.needs_enter() && self.ring.completion().is_empty()
    }

    /// Whether a zero-timeout wait must enter the kernel: SQEs to submit, a
    /// CQ overflow to flush, or (deferred) task work that only an enter runs.
    fn needs_enter(&mut self) -> bool {
        let sq = self.ring.submission();
        !sq.is_empty() || sq.cq_overflow() || (self.taskrun_flag && sq.taskrun()) || self.always_enter_to_poll
    }

    /// A zero-timeout wait: enters only when there is something to submit or
    /// the kernel has completion work that needs an enter.
    fn poll(&mut self) -> io::Result<()> {
        if self.needs_enter() {
            self.stats.enters += 1;
            // `submit` adds GETEVENTS when IORING_SQ_TASKRUN or the overflow
            // flag is set, which is what runs DEFER_TASKRUN work.
            match self.ring.submit() {
                Ok(_) => {}
                Err(e) if is_transient(&e) => {}
                Err(e) => return Err(enter_error(e)),
            }
        }
        self.reap();
        Ok(())
    }

    fn wait_blocking(&mut self, timeout: Option<Duration>) -> io::Result<()> {
        let deadline = timeout.and_then(|d| Instant::now().checked_add(d));
        let mut remaining = timeout;
        let mut retries = 0;
        loop {
            self.stats.enters += 1;
            let res = if self.ext_arg {
                match remaining {
                    None => self.ring.submitter().submit_and_wait(1),
                    Some(d) => {
                        let ts = timespec(d);
                        let args = types::SubmitArgs::new().timespec(&ts);
                        self.ring.submitter().submit_with_args(1, &args)
                    }
                }
            } else {
                self.arm_legacy_timeout(remaining);
                self.ring.submitter().submit_and_wait(1)
            };
            let mut timed_out = false;
            if let Err(e) = res {
                match e.raw_os_error() {
                    Some(libc::ETIME) => timed_out = true,
                    // A signal: let the loop look at the world again.
                    Some(libc::EINTR) => {
                        self.reap();
                        return Ok(());
                    }
                    // CQ overflow backlog (or a transient allocation
                    // failure): make room, then try again.
                    Some(libc::EBUSY) | Some(libc::EAGAIN) if retries < 8 => {
                        retries += 1;
                        self.reap();
                        continue;
                    }
                    Some(libc::EBUSY) | Some(libc::EAGAIN) => {
                        self.reap();
                        return Ok(());
                    }
                    _ => return Err(enter_error(e)),
                }
            }
            if self.reap() || timed_out {
                return Ok(());
            }
            // Only the driver's own bookkeeping CQEs (cancel results, a
            // removed wait timeout) arrived: they must not end the wait.
            if let Some(deadline) = deadline {
                let now = Instant::now();
                if now >= deadline {
                    return Ok(());
                }
                remaining = Some(deadline - now);
            }
        }
    }

    /// Drains the CQ, flushing the kernel's overflow list until it is empty,
    /// and dispatches every CQE. Returns whether anything the loop cares
    /// about happened (an operation CQE, a cross-thread wake, the wait
    /// timeout firing).
    fn reap(&mut self) -> bool {
        let mut progress = false;
        let mut drain_eventfd = false;
        for _round in 0..1024 {
            {
                let Core {
                    ring,
                    slots,
                    to_wake,
                    graveyard,
                    resubmit,
                    pool,
                    legacy,
                    stats,
                    eventfd_armed,
                    wake_mode,
                    wake_errors,
                    closing,
                    ..
                } = self;
                for cqe in ring.completion() {
                    let user_data = cqe.user_data();
                    if user_data < INTERNAL {
                        stats.op_cqes += 1;
                        progress = true;
                        op::dispatch(
                            slots,
                            to_wake,
                            graveyard,
                            resubmit,
                            pool.get(),
                            (user_data as usize, cqe.result(), cqe.flags()),
                        );
                    } else if user_data == EVENTFD_UD {
                        *eventfd_armed = false;
                        progress = true;
                        let res = cqe.result();
                        if res >= 0 {
                            *wake_errors = 0;
                            // A poll completion leaves the counter set.
                            drain_eventfd |= *wake_mode == WakeMode::Poll;
                        } else if res == -libc::EAGAIN && *wake_mode == WakeMode::Read {
                            crate::debug::debug_log(format_args!(
                                "ringloop: io_uring read of a non-blocking eventfd returned \
                                 EAGAIN; watching it with POLL_ADD instead"
                            ));
                            *wake_mode = WakeMode::Poll;
                        } else if res != -libc::ECANCELED || !*closing {
                            *wake_errors += 1;
                            if *wake_errors > 3 {
                                crate::debug::debug_log(format_args!(
                                    "ringloop: the eventfd wake-up keeps failing ({}); \
                                     cross-thread wake-ups are disabled",
                                    io::Error::from_raw_os_error(-res)
                                ));
                                *wake_mode = WakeMode::Off;
                            }
                        }
                    } else if user_data & WAIT_TIMEOUT_MASK == WAIT_TIMEOUT_UD {
                        legacy.outstanding = legacy.outstanding.saturating_sub(1);
                        let generation = user_data as u32;
                        if let Some((current, _)) = legacy.current
                            && current == generation
                        {
                            legacy.current = None;
                            progress = true;
                        }
                    }
                    // CANCEL_UD: nothing to do.
                }
            }
            for entry in mem::take(&mut self.resubmit) {
                // SAFETY: `op::Linger::step` built it under `Op::linger`'s
                // contract; the state it points into stays in the slot.
                unsafe { self.push(entry) };
            }
            if drain_eventfd {
                drain_eventfd = false;
                self.drain_eventfd();
            }
            if !self.eventfd_armed && !self.closing {
                self.arm_eventfd();
            }
            if !self.ring.submission().cq_overflow() {
                break;
            }
            // The kernel holds completions that did not fit: an enter with
            // GETEVENTS (added by `submit` while the overflow flag is set)
            // moves them into the CQ, which we then drain again.
            self.stats.overflow_flushes += 1;
            match self.ring.submit() {
                Ok(_) => {}
                Err(e) if is_transient(&e) => {}
                Err(e) => {
                    crate::debug::debug_log(format_args!("ringloop: io_uring_enter while flushing CQ overflow: {e}"));
                    break;
                }
            }
        }
        let dropped = self.ring.completion().overflow();
        if dropped != self.dropped_reported {
            // Only possible if the kernel could not allocate its overflow
            // list: the affected operations will never complete.
            self.dropped_reported = dropped;
            crate::debug::debug_log(format_args!(
                "ringloop: the kernel dropped {dropped} io_uring completions (out of memory)"
            ));
        }
        progress
    }

    /// Anything the kernel may still write into memory we own.
    fn has_in_flight(&self) -> bool {
        !self.slots.is_empty() || self.eventfd_armed
    }
}

fn is_transient(e: &io::Error) -> bool {
    matches!(
        e.raw_os_error(),
        Some(libc::EBUSY) | Some(libc::EAGAIN) | Some(libc::EINTR)
    )
}

impl Drop for Core {
    fn drop(&mut self) {
        self.closing = true;
        // Writes the API already reported as done are finished first (each
        // until its own deadline; `wait` cancels the late ones).
        let mut hard_stop = None;
        while self.has_lingering() {
            if self.linger_deadline.is_none() {
                // All cancelled: their final CQEs get the usual grace.
                let stop = *hard_stop.get_or_insert_with(|| Instant::now() + TEARDOWN_GRACE);
                if Instant::now() >= stop {
                    break;
                }
            }
            if self.wait(Some(TEARDOWN_GRACE)).is_err() {
                break;
            }
        }
        // Every slot left is `Ignored`: a live operation holds an `Rc` to the
        // driver, so none can exist now. Cancel them all (again: the first
        // AsyncCancel may not have been submitted yet, a second is harmless).
        let keys: Vec<usize> = self.slots.iter().map(|(key, _)| key).collect();
        for key in keys {
            self.push_cancel(key as u64);
        }
        if self.eventfd_armed {
            self.push_cancel(EVENTFD_UD);
        }
        if let Some((generation, _)) = self.legacy.current.take() {
            self.push_timeout_remove(generation);
        }
        let deadline = Instant::now() + TEARDOWN_GRACE;
        while self.has_in_flight() {
            let now = Instant::now();
            if now >= deadline {
                break;
            }
            if self.wait(Some(deadline - now)).is_err() {
                break;
            }
        }
        // Orphaned resources whose final CQE arrived during teardown.
        self.to_wake.clear();
        drop(mem::take(&mut self.graveyard));

        // Whatever is still in flight may still be written by the kernel
        // (the ring's own teardown runs asynchronously after its fd is
        // closed), so its memory is leaked rather than freed.
        let leaked = self.slots.len();
        if leaked > 0 {
            // A receive still in flight may write into a pool buffer.
            mem::forget(mem::replace(&mut self.pool, PoolState::Failed));
        }
        for slot in self.slots.drain() {
            match slot {
                Lifecycle::Ignored { resources, .. } => mem::forget(resources),
                Lifecycle::Lingering(linger) => mem::forget(linger),
                _ => {}
            }
        }
        if !self.eventfd_armed {
            // SAFETY: `eventfd_buf` came from `Box::leak` in `new` and no read
            // into it is in flight any more.
            drop(unsafe { Box::from_raw(self.eventfd_buf.as_ptr()) });
        }
        let unsubmitted = !self.backlog.is_empty() || !self.ring.submission().is_empty();
        if self.legacy.outstanding > 0 && unsubmitted {
            // The kernel copies a Timeout's timespec when it consumes the SQE,
            // so only a Timeout SQE still queued could read it later: leak it
            // then rather than free it.
            mem::forget(mem::replace(&mut self.legacy.ts, Box::new(types::Timespec::new())));
        }
        if leaked > 0 || self.eventfd_armed {
            crate::debug::debug_log(format_args!(
                "ringloop: io_uring driver dropped with {leaked} operation(s) still in flight \
                 after {TEARDOWN_GRACE:?}; their buffers are leaked, not freed"
            ));
        }
    }
}
