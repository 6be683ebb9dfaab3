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
//! Files: `setup.rs` (flag sets tried, opcode probe, enter check),
//! `ring.rs` (`Core`: submission, wait, reap, teardown), `submit.rs` (queueing
//! `driver::ops` types), `msg_ring.rs` (cross-loop wake-ups), `notify.rs` (the
//! eventfd wake), `msg_ring.rs` (the MSG_RING wake between io_uring
//! loops), `timeout.rs` (Timeout-SQE waits without EXT_ARG), `op.rs`
//! (slots and the op futures), `pool.rs` (the provided-buffer ring).
//!
//! # user_data
//!
//! An operation's SQE carries its slab key. Values with the top bit set
//! ([`INTERNAL`]) belong to the driver: [`EVENTFD_UD`] (the armed eventfd
//! read), [`CANCEL_UD`] (AsyncCancel / TimeoutRemove, results ignored),
//! `MSG_RING_WAKE_UD` (a wake-up posted by another loop's MSG_RING),
//! `MSG_RING_SENT_UD` (our own MSG_RING SQEs, results ignored) and
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
//! * `msg_ring.rs`: pushing a `MSG_RING` SQE (it names no memory; its
//!   target fd is owned by the notifier being called) and
//!   `BorrowedFd::borrow_raw` of our ring's fd to `dup` it.
//! * `Box::from_raw` of the eventfd read buffer in `Drop`, only when no read
//!   is in flight.
//! * [`UringDriver::submit`] / [`UringDriver::submit_multishot`] are
//!   `unsafe fn`s: their callers promise the SQE only points into memory the
//!   resources keep alive at a fixed address.

mod fixed;
mod msg_ring;
mod notify;
mod op;
pub(crate) mod pool;
mod ring;
mod setup;
mod submit;
#[cfg(test)]
mod tests;
mod timeout;

#[allow(unused_imports)] // `MultiOp` is used by tests now and by I/O types next.
pub(crate) use fixed::FixedSlot;
pub(crate) use op::{MultiOp, Op, OrphanFn};

use std::io;
use std::rc::Rc;
use std::sync::Arc;
use std::time::Duration;

use io_uring::squeue;

use super::{Notify, UringConfig};
pub(crate) use msg_ring::wake_counts;
use msg_ring::{MSG_RING_WAKE_UD, RingNotifier};
use notify::{EventFd, WakeMode};
use op::Lifecycle;
use ring::{Core, Inner};
pub(crate) use ring::{PoolState, Stats};
pub(crate) use setup::ZC_REPORT_USAGE;
use setup::*;
use timeout::LegacyTimeout;
pub(crate) use timeout::timespec;

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

/// The io_uring driver handle (cheap to clone, `!Send`).
#[derive(Clone)]
pub(crate) struct UringDriver {
    inner: Rc<Inner>,
}

/// The ring size of a pool starting with `entries` buffers of `size` bytes
/// that may grow to `limit` bytes: the largest power of two of buffers
/// within the limit (at most 32768), at least `entries`.
fn max_buffers(entries: u16, size: u32, limit: usize) -> u16 {
    let fit = (limit / (size.max(1) as usize)).min(32768) as u16;
    if !entries.is_power_of_two() || fit <= entries {
        return entries;
    }
    1 << (15 - fit.leading_zeros())
}

impl UringDriver {
    /// Sets up a ring of `cfg.entries` SQEs (CQ twice that), with the tuned
    /// flags the kernel accepts, probes the opcodes the driver needs and arms
    /// the cross-thread eventfd. Any failure is an error naming the syscall,
    /// so the caller can fall back to the fallback backend.
    pub(crate) fn new(cfg: &UringConfig) -> io::Result<Self> {
        let attempts: &[u32] = if cfg.tuned_flags { &TUNED_ATTEMPTS } else { &[0] };
        Self::with_attempts(cfg, attempts)
    }

    /// Which setup flags and features this ring runs with (debug output).
    pub(crate) fn setup_description(&self) -> String {
        let core = self.inner.core.borrow();
        let f = &self.inner.features;
        let mut path = Vec::new();
        if f.multishot_accept {
            path.push("multishot accept".to_owned());
        }
        if f.multishot_recv {
            let described = |p: &pool::Pool| {
                format!(
                    "multishot recv (buffer ring {} x {} B, growing to {}{})",
                    p.buffers(),
                    p.buf_size(),
                    p.max_buffers(),
                    if p.is_incremental() { ", incremental" } else { "" }
                )
            };
            path.push(match (&core.pools.stream, core.pool_config.0) {
                (PoolState::Failed, _) => "multishot recv (no buffer ring: single-shot)".to_owned(),
                (PoolState::Ready(p), _) => described(p),
                (PoolState::Unset, Some((n, size))) => format!("multishot recv (buffer ring {n} x {size} B)"),
                (PoolState::Unset, None) => "multishot recv (buffer ring of the default size)".to_owned(),
            });
        }
        match self.inner.send_zc_threshold {
            Some(t) if self.inner.zc_report_usage => {
                path.push(format!("SEND_ZC from {t} B (plain sends on sockets it copies for)"))
            }
            Some(t) => path.push(format!("SEND_ZC from {t} B")),
            None if f.send_zc => path.push("SEND_ZC unsupported".to_owned()),
            None => {}
        }
        if let Some(fixed) = self.inner.fixed.describe() {
            path.push(fixed);
        }
        if f.msg_ring && self.inner.probe.is_supported(io_uring::opcode::MsgRingData::CODE) {
            path.push("MSG_RING wake".to_owned());
        }
        let path = if path.is_empty() {
            "plain (every feature off)".to_owned()
        } else {
            path.join(", ")
        };
        format!(
            "{}, eventfd wake: {:?}, data path: {path}",
            self.inner.description, core.wake_mode
        )
    }

    /// Submits everything queued and waits for completions (at most
    /// `timeout`; `None` = no limit, zero = poll) in one `io_uring_enter` in
    /// the common case, then wakes the wakers of everything that completed.
    pub(crate) fn wait(&self, timeout: Option<Duration>) -> io::Result<()> {
        self.release_pending_fixed();
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

    /// Gives the driver its loop's schedule hook (once, right after the loop
    /// is built): operations polled by that loop's tasks then keep a local
    /// task reference instead of a waker clone.
    pub(crate) fn set_task_hook(&self, hook: std::rc::Rc<crate::task::SchedHook>) {
        let _ = self.inner.task_hook.set(hook);
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

    /// Whether `feature` was asked for (builder and `RINGLOOP_URING_DISABLE`);
    /// the kernel's support is found out when the operation is first tried.
    pub(crate) fn uses(&self, feature: crate::driver::Feature) -> bool {
        use crate::driver::Feature;
        let f = &self.inner.features;
        match feature {
            Feature::MultishotAccept => f.multishot_accept,
            Feature::MultishotRecv => f.multishot_recv,
        }
    }

    /// The size from which sends use `SEND_ZC` (`None`: off or unsupported).
    pub(crate) fn send_zc_threshold(&self) -> Option<usize> {
        self.inner.send_zc_threshold
    }

    /// Whether `SEND_ZC` notifications report copies (probed at setup).
    pub(crate) fn send_zc_reports_copies(&self) -> bool {
        self.inner.zc_report_usage
    }

    /// A `Send + Sync` handle whose `notify()` wakes a blocked `wait`.
    pub(crate) fn notifier(&self) -> Arc<dyn Notify> {
        self.inner.notifier.clone()
    }

    /// The loop's stream receive pool (incrementally consumed where the
    /// kernel has it), registered on first use; `None` if this kernel (or
    /// the configuration) cannot have one.
    pub(crate) fn stream_pool(&self) -> Option<Rc<pool::Pool>> {
        self.recv_pool(false)
    }

    /// The loop's datagram receive pool (its buffers are never shared by
    /// two datagrams), registered on first use; `None` as for
    /// [`stream_pool`](Self::stream_pool).
    pub(crate) fn dgram_pool(&self) -> Option<Rc<pool::Pool>> {
        self.recv_pool(true)
    }

    fn recv_pool(&self, dgram: bool) -> Option<Rc<pool::Pool>> {
        let mut core = self.inner.core.borrow_mut();
        let core = &mut *core;
        let (asked, limit) = core.pool_config;
        let (state, group, first_bid) = if dgram {
            (&mut core.pools.dgram, pool::DGRAM_GROUP, pool::DGRAM_FIRST_BID)
        } else {
            (&mut core.pools.stream, pool::STREAM_GROUP, 0)
        };
        if let PoolState::Unset = state {
            let register = |incremental: bool| {
                let (entries, size) = asked.unwrap_or(crate::driver::default_recv_pool(incremental));
                let spec = pool::PoolSpec {
                    entries,
                    max_entries: max_buffers(entries, size, limit),
                    size,
                    group,
                    first_bid,
                    incremental,
                };
                pool::Pool::register(&core.ring, spec)
            };
            // Only the stream pool may be incremental (see `pool.rs`).
            let inc = !dgram && self.inner.features.incremental_recv;
            let registered = match register(inc) {
                Err(e) if inc && e.kind() == io::ErrorKind::Unsupported => register(false),
                res => res,
            };
            *state = match registered {
                Ok(p) => PoolState::Ready(Rc::new(p)),
                Err(e) => {
                    crate::debug::debug_log(format_args!(
                        "ringloop: no io_uring receive pool ({e}); pooled receives use single-shot RECV"
                    ));
                    PoolState::Failed
                }
            };
        }
        match state {
            PoolState::Ready(p) => Some(p.clone()),
            _ => None,
        }
    }

    #[cfg(test)]
    /// Counters since the ring was built.
    pub(crate) fn stats(&self) -> Stats {
        self.inner.core.borrow().stats
    }

    /// Number of operation slots in use (in flight, completed but not yet
    /// collected, or orphaned awaiting their final CQE).
    pub(crate) fn slots_in_use(&self) -> usize {
        self.inner.core.borrow().slots.len()
    }

    /// Allocates a slot and queues `entry` with the slot's key as user_data;
    /// the slot starts out waiting for `waiter`'s task when one is given
    /// (the caller is a poll that would otherwise register it at once).
    /// Returns the key and whether the operation was queued (false: the
    /// ring is closed and the slot already holds `ECANCELED`).
    ///
    /// # Safety
    ///
    /// As for [`Core::push`], with the operation's final CQE as the end.
    unsafe fn submit_entry(&self, entry: squeue::Entry, waiter: Option<&std::task::Context<'_>>) -> (usize, bool) {
        let mut core = self.inner.core.borrow_mut();
        if core.closed {
            // Nothing will ever enter this ring again: complete at once
            // without queueing the SQE (so nothing points at the resources).
            return (core.slots.insert(Lifecycle::Completed(-libc::ECANCELED, 0, 0)), false);
        }
        let slot = match waiter {
            Some(cx) => Lifecycle::Waiting(self.inner.waiter(cx)),
            None => Lifecycle::Submitted,
        };
        let key = core.slots.insert(slot);
        debug_assert!((key as u64) < INTERNAL);
        // SAFETY: forwarded from this function's contract.
        unsafe { core.push(entry.user_data(key as u64)) };
        (key, true)
    }
}
