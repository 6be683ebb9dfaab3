//! The ring's state behind the driver's `RefCell`: submission (with a
//! backlog when the SQ is full), the wait, completion dispatch, lingering
//! operations and teardown.

use crate::task::WakeHandle;
use std::any::Any;
use std::cell::RefCell;
use std::collections::VecDeque;
use std::io;
use std::mem;
use std::ptr::NonNull;
use std::rc::Rc;
use std::sync::Arc;
use std::time::{Duration, Instant};

use io_uring::{IoUring, Probe, opcode, squeue, types};
use slab::Slab;

use super::*;

/// Counters for diagnostics and tests (cheap increments).
#[derive(Clone, Copy, Debug)]
pub(crate) struct Stats {
    /// `io_uring_enter` calls made by `wait` (not counting SQ-full submits).
    pub enters: u64,
    /// CQEs dispatched to operation slots.
    pub op_cqes: u64,
    /// Kernel-side CQE overflow flushes performed.
    pub overflow_flushes: u64,
    /// SQEs queued (operations, cancels and the driver's own).
    pub sqes: u64,
    /// Multishot operations cancelled because their queue reached
    /// `STREAM_QUEUE_LIMIT`.
    pub queue_bound_cancels: u64,
    /// Sockets installed in the fixed-file table.
    pub fixed_installed: u64,
    /// Sockets that kept their plain fd because the table was full (or an
    /// install failed).
    pub fixed_full: u64,
    /// Operations submitted, by io_uring opcode number (tests only).
    #[cfg(test)]
    pub ops_by_opcode: [u64; 64],
}

// Written out: in test builds `ops_by_opcode` is a `[u64; 64]`, which has
// no `Default` impl.
#[allow(clippy::derivable_impls)]
impl Default for Stats {
    fn default() -> Self {
        Stats {
            enters: 0,
            op_cqes: 0,
            overflow_flushes: 0,
            sqes: 0,
            queue_bound_cancels: 0,
            fixed_installed: 0,
            fixed_full: 0,
            #[cfg(test)]
            ops_by_opcode: [0; 64],
        }
    }
}

pub(crate) struct Core {
    pub(super) ring: IoUring,
    pub(super) slots: Slab<Lifecycle>,
    /// SQEs that did not fit in the SQ (and could not be submitted to make
    /// room); pushed before anything newer, so submission order is kept.
    pub(super) backlog: VecDeque<squeue::Entry>,
    /// Waiters of completed operations, woken after the borrow ends.
    pub(super) to_wake: Vec<WakeHandle>,
    /// Resources of orphaned operations whose final CQE arrived, dropped
    /// after the borrow ends.
    pub(super) graveyard: Vec<Box<dyn Any>>,
    /// Next SQEs of lingering operations, collected while the CQ is
    /// borrowed and pushed right after.
    pub(super) resubmit: Vec<squeue::Entry>,
    /// The earliest deadline of a lingering operation not yet cancelled.
    pub(super) linger_deadline: Option<Instant>,
    /// The receive-buffer pools, each registered on first use.
    pub(super) pools: Pools,
    /// The receive pools asked for (`UringConfig::recv_pool`) and their
    /// growth limit in bytes.
    pub(super) pool_config: (Option<(u16, u32)>, usize),
    pub(super) eventfd: Arc<EventFd>,
    /// Target of the armed eventfd read. Raw (from `Box::into_raw`) because
    /// the kernel writes it behind Rust's back; freed in `Drop` only when no
    /// read is in flight.
    pub(super) eventfd_buf: NonNull<u64>,
    pub(super) eventfd_armed: bool,
    pub(super) wake_mode: WakeMode,
    pub(super) wake_errors: u32,
    pub(super) ext_arg: bool,
    pub(super) legacy: LegacyTimeout,
    /// TASKRUN_FLAG accepted: the kernel tells us (IORING_SQ_TASKRUN) when a
    /// zero-timeout poll must enter to get completions.
    pub(super) taskrun_flag: bool,
    /// COOP_TASKRUN without TASKRUN_FLAG: we cannot tell, so always enter.
    pub(super) always_enter_to_poll: bool,
    pub(super) closing: bool,
    pub(super) dropped_reported: u32,
    pub(super) stats: Stats,
    /// The loop was closed: new operations complete at once with ECANCELED
    /// instead of queueing SQEs nobody would ever submit.
    pub(super) closed: bool,
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

/// The loop's two receive pools (`pool.rs`): stream and datagram.
pub(crate) struct Pools {
    pub(crate) stream: PoolState,
    pub(crate) dgram: PoolState,
}

impl Pools {
    /// The pool buffer `bid` belongs to.
    fn owner(&self, bid: u16) -> Option<&pool::Pool> {
        [&self.stream, &self.dgram]
            .into_iter()
            .filter_map(PoolState::get)
            .find(|p| p.owns(bid))
    }

    /// Counts the holder of the buffer a CQE names, as it is reaped, and
    /// returns where its bytes start in the buffer (see
    /// [`pool::Pool::hold`]).
    pub(crate) fn hold(&self, res: i32, flags: u32) -> u32 {
        let Some(bid) = io_uring::cqueue::buffer_select(flags) else {
            return 0;
        };
        match self.owner(bid) {
            Some(p) => p.hold(bid, res, io_uring::cqueue::buffer_more(flags)),
            None => 0,
        }
    }

    /// See [`pool::Pool::poison`].
    pub(crate) fn poison(&self) {
        for p in [&self.stream, &self.dgram].into_iter().filter_map(PoolState::get) {
            p.poison();
        }
    }

    /// Releases the buffer of a recorded CQE whose result nobody collects.
    pub(crate) fn release(&self, flags: u32) {
        if let Some(bid) = io_uring::cqueue::buffer_select(flags)
            && let Some(p) = self.owner(bid)
        {
            p.release(bid);
        }
    }
}

pub(crate) struct Inner {
    pub(super) core: RefCell<Core>,
    pub(super) description: String,
    /// The opcodes this kernel supports (`IORING_REGISTER_PROBE`).
    pub(super) probe: Probe,
    /// The data-path features asked for (builder and environment).
    pub(super) features: crate::driver::UringFeatures,
    /// Sends of at least this size use `SEND_ZC` (asked for and probed).
    pub(super) send_zc_threshold: Option<usize>,
    /// `SEND_ZC` notifications report whether the kernel copied the bytes
    /// (6.2; probed): a socket whose sends get copied (loopback, a device
    /// without scatter-gather) goes back to plain sends.
    pub(super) zc_report_usage: bool,
    /// The wake-up handle other threads get (`msg_ring::RingNotifier`).
    pub(super) notifier: Arc<dyn crate::driver::Notify>,
    /// The fixed-file table for sockets (`fixed.rs`).
    pub(super) fixed: super::fixed::FixedFiles,
    /// The owning loop's schedule hook, set right after the loop is built:
    /// operations polled by that loop's tasks keep a local task reference
    /// instead of a waker clone (`task::WakeHandle`).
    pub(super) task_hook: std::cell::OnceCell<std::rc::Rc<crate::task::SchedHook>>,
}

impl Inner {
    /// Whom `cx` wakes, as the driver keeps it: a local task reference for
    /// a task of its own loop, else a waker clone (`task::WakeHandle`).
    pub(super) fn waiter(&self, cx: &std::task::Context<'_>) -> WakeHandle {
        WakeHandle::for_loop(self.task_hook.get(), cx.waker())
    }

    /// Wakes the wakers and drops the orphaned resources collected by the
    /// last reap, after the borrow ends (both may re-enter the driver).
    pub(super) fn wake_and_bury(&self) {
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
    pub(super) unsafe fn push(&mut self, entry: squeue::Entry) {
        self.stats.sqes += 1;
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
    pub(super) fn expire_lingering(&mut self) -> Option<Duration> {
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
    pub(super) fn has_lingering(&self) -> bool {
        self.linger_deadline.is_some() && self.slots.iter().any(|(_, s)| matches!(s, Lifecycle::Lingering(_)))
    }

    /// Queues an AsyncCancel for operation `key`.
    pub(super) fn push_cancel(&mut self, key: u64) {
        let entry = opcode::AsyncCancel::new(key).build().user_data(CANCEL_UD);
        // SAFETY: AsyncCancel references no memory.
        unsafe { self.push(entry) };
    }

    /// Moves backlog SQEs into the SQ, submitting whenever it fills. Stops
    /// early (leaving the rest for the next call) if the kernel refuses more
    /// for now.
    pub(super) fn flush_backlog(&mut self) -> io::Result<()> {
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
    pub(super) fn wait(&mut self, timeout: Option<Duration>) -> io::Result<()> {
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
    pub(super) fn idle(&mut self) -> bool {
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
    pub(super) fn needs_enter(&mut self) -> bool {
        let sq = self.ring.submission();
        !sq.is_empty() || sq.cq_overflow() || (self.taskrun_flag && sq.taskrun()) || self.always_enter_to_poll
    }

    /// A zero-timeout wait: enters only when there is something to submit or
    /// the kernel has completion work that needs an enter.
    pub(super) fn poll(&mut self) -> io::Result<()> {
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

    pub(super) fn wait_blocking(&mut self, timeout: Option<Duration>) -> io::Result<()> {
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
    pub(super) fn reap(&mut self) -> bool {
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
                    pools,
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
                            pools,
                            (user_data as usize, cqe.result(), cqe.flags()),
                        );
                    } else if user_data == MSG_RING_WAKE_UD {
                        // Another loop's MSG_RING: a wake-up, nothing to re-arm.
                        progress = true;
                        msg_ring::count_received_msg_ring();
                    } else if user_data == EVENTFD_UD {
                        *eventfd_armed = false;
                        progress = true;
                        let res = cqe.result();
                        if res >= 0 {
                            msg_ring::count_received_eventfd();
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
                    } else if user_data == msg_ring::MSG_RING_SENT_UD && cqe.result() < 0 {
                        msg_ring::sent_failed(cqe.result());
                    }
                    // CANCEL_UD: nothing to do.
                }
            }
            for entry in mem::take(&mut self.resubmit) {
                if entry.get_user_data() == CANCEL_UD {
                    self.stats.queue_bound_cancels += 1;
                }
                // Built by `op::Linger::step` (its state stays in the slot).
                // SAFETY: `Op::linger`'s contract, or an AsyncCancel (no memory).
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
            // A dropped receive result would shift every later offset in its
            // buffer: results of an incremental pool fail from now on.
            self.pools.poison();
        }
        progress
    }

    /// Anything the kernel may still write into memory we own.
    pub(super) fn has_in_flight(&self) -> bool {
        !self.slots.is_empty() || self.eventfd_armed
    }
}

pub(super) fn is_transient(e: &io::Error) -> bool {
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
            mem::forget(mem::replace(&mut self.pools.stream, PoolState::Failed));
            mem::forget(mem::replace(&mut self.pools.dgram, PoolState::Failed));
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
