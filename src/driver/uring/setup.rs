//! Ring setup: the flag sets tried in order, the opcode probe, the check
//! that `io_uring_enter` works, and the error messages that say why not.

use std::cell::RefCell;
use std::collections::VecDeque;
use std::io;
use std::os::fd::{FromRawFd, OwnedFd};
use std::ptr::NonNull;
use std::rc::Rc;
use std::sync::Arc;

use io_uring::{IoUring, Probe, opcode, squeue, types};
use slab::Slab;

use super::*;

// Setup flags we try, as our own bits (mapped onto `io_uring::Builder`).
pub(super) const SINGLE_ISSUER: u32 = 1 << 0;
pub(super) const DEFER_TASKRUN: u32 = 1 << 1;
pub(super) const COOP_TASKRUN: u32 = 1 << 2;
pub(super) const TASKRUN_FLAG: u32 = 1 << 3;
pub(super) const SUBMIT_ALL: u32 = 1 << 4;

/// Flag sets tried in order when `tuned_flags` is on; each refused with
/// EINVAL (an older kernel) falls through to the next. DEFER_TASKRUN (6.1)
/// always comes with TASKRUN_FLAG (5.19), which `wait` relies on to know when
/// a zero-timeout poll must enter the kernel.
pub(super) const TUNED_ATTEMPTS: [u32; 4] = [
    SINGLE_ISSUER | DEFER_TASKRUN | COOP_TASKRUN | TASKRUN_FLAG | SUBMIT_ALL, // 6.1+
    SINGLE_ISSUER | COOP_TASKRUN | TASKRUN_FLAG | SUBMIT_ALL,                 // 6.0
    COOP_TASKRUN | TASKRUN_FLAG | SUBMIT_ALL,                                 // 5.19
    0,
];

pub(super) fn flags_name(flags: u32) -> String {
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
pub(super) const REQUIRED_OPCODES: [(u8, &str); 6] = [
    (opcode::Nop::CODE, "NOP"),
    (opcode::Read::CODE, "READ"),
    (opcode::Timeout::CODE, "TIMEOUT"),
    (opcode::TimeoutRemove::CODE, "TIMEOUT_REMOVE"),
    (opcode::AsyncCancel::CODE, "ASYNC_CANCEL"),
    (opcode::PollAdd::CODE, "POLL_ADD"),
];

pub(super) fn build_ring(entries: u32, flags: u32) -> io::Result<IoUring> {
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

pub(super) fn setup_error(e: io::Error, entries: u32, tried: &str) -> io::Error {
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
pub(super) fn enter_works(ring: &mut IoUring) -> io::Result<()> {
    // SAFETY: a NOP references no memory.
    unsafe { run_alone(ring, opcode::Nop::new().build()) }
        .map(drop)
        .map_err(|e| {
            io::Error::new(
                e.kind(),
                format!(
                    "io_uring_enter on a new ring failed: {e} (io_uring_setup is allowed but \
                 io_uring_enter is not, e.g. by a seccomp filter)"
                ),
            )
        })
}

/// Submits `sqe` on a ring nothing else uses yet and waits for its final
/// CQE (the first without `IORING_CQE_F_MORE`), returning the results of
/// all its CQEs. User data `CANCEL_UD`: nothing is dispatched.
///
/// # Safety
///
/// `sqe` must satisfy `SubmissionQueue::push`'s contract: any memory it
/// names stays valid until the call returns.
unsafe fn run_alone(ring: &mut IoUring, sqe: squeue::Entry) -> io::Result<Vec<i32>> {
    let sqe = sqe.user_data(CANCEL_UD);
    // SAFETY: the caller's contract; the call waits for the final CQE.
    if unsafe { ring.submission().push(&sqe) }.is_err() {
        return Err(io::Error::other("io_uring: no room for one SQE in a new SQ"));
    }
    let mut results = Vec::new();
    loop {
        match ring.submit_and_wait(1) {
            Ok(_) => {}
            Err(e) if e.raw_os_error() == Some(libc::EINTR) => continue,
            Err(e) => return Err(e),
        }
        let mut done = false;
        for cqe in ring.completion() {
            results.push(cqe.result());
            done |= !io_uring::cqueue::more(cqe.flags());
        }
        if done {
            return Ok(results);
        }
    }
}

/// `IORING_SEND_ZC_REPORT_USAGE` (Linux 6.2): the notification of a
/// `SEND_ZC` says whether the kernel had to copy the bytes after all.
pub(crate) const ZC_REPORT_USAGE: u16 = 1 << 3;
/// `IORING_NOTIF_USAGE_ZC_COPIED`: set in such a notification's result.
pub(super) const ZC_COPIED: i32 = i32::MIN;

/// Whether `SEND_ZC` accepts [`ZC_REPORT_USAGE`]: a kernel without it
/// rejects the flag while preparing the request (`EINVAL`), one with it
/// gets as far as looking up the descriptor (`EBADF` for -1). No opcode
/// probe can tell, so one such request is submitted on the new ring.
pub(super) fn zc_reports_usage(ring: &mut IoUring) -> bool {
    let sqe = opcode::SendZc::new(types::Fd(-1), std::ptr::null(), 0)
        .zc_flags(ZC_REPORT_USAGE)
        .build();
    // (A failed SEND_ZC may post a notification after its result.)
    // SAFETY: a zero-length send from a null pointer references no memory.
    let results = unsafe { run_alone(ring, sqe) };
    matches!(results.as_deref(), Ok([first, ..]) if *first == -libc::EBADF)
}

pub(super) fn enter_error(e: io::Error) -> io::Error {
    io::Error::new(e.kind(), format!("io_uring_enter failed: {e}"))
}

impl UringDriver {
    /// `new` with the flag sets to try, in order (tests use it to exercise
    /// the fall-through an older kernel takes).
    pub(super) fn with_attempts(cfg: &UringConfig, attempts: &[u32]) -> io::Result<Self> {
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
        let features = cfg.features.without_env();
        let zc_report_usage =
            features.send_zc && probe.is_supported(opcode::SendZc::CODE) && zc_reports_usage(&mut ring);
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
            pools: super::ring::Pools {
                stream: PoolState::Unset,
                dgram: PoolState::Unset,
            },
            pool_config: (cfg.recv_pool, cfg.recv_pool_limit),
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
        let msg_ring = features.msg_ring && probe.is_supported(opcode::MsgRingData::CODE);
        let notifier = Arc::new(RingNotifier {
            eventfd: core.eventfd.clone(),
            // Our own reference to the ring file, for senders (see msg_ring.rs).
            ring: if msg_ring {
                msg_ring::dup_ring_fd(&core.ring)
            } else {
                None
            },
        });
        let send_zc_threshold =
            (features.send_zc && probe.is_supported(opcode::SendZc::CODE)).then_some(cfg.send_zc_threshold.max(1));
        crate::debug::debug_log(format_args!("ringloop: {description}"));
        let inner = Rc::new(Inner {
            core: RefCell::new(core),
            description,
            probe,
            features,
            send_zc_threshold,
            zc_report_usage,
            notifier,
            fixed: super::fixed::FixedFiles::new(if features.fixed_files { cfg.fixed_files } else { 0 }),
            task_hook: std::cell::OnceCell::new(),
        });
        if msg_ring {
            msg_ring::register_target(&inner.core.borrow().eventfd);
            msg_ring::register_sender(&inner);
        }
        Ok(UringDriver { inner })
    }
}
