//! `LoopMetrics`: the loop's counters, read on demand.

use super::LoopInner;

/// A snapshot of an event loop's counters ([`EventLoop::metrics`](super::EventLoop::metrics)).
/// Always available (no cargo feature): the loop keeps only its iteration
/// count; everything else is read from the structures it already has when
/// the snapshot is taken.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct LoopMetrics {
    /// Completed loop iterations (`_run_once` calls).
    pub iterations: u64,
    /// Entries in the ready queue (callbacks and task steps due in the next
    /// iteration, or the rest of the current one).
    pub ready_len: usize,
    /// Tasks spawned and not yet finished (what `all_tasks()` lists).
    pub live_tasks: usize,
    /// Pending timers (sleeps, `call_later`/`call_at` callbacks, timeouts).
    pub timers: usize,
    /// I/O operations in flight: on io_uring, operation slots in use
    /// (submitted and not yet completed, completed but not yet collected by
    /// their future, or cancelled and awaiting their final completion, a
    /// multishot accept or receive counting once); on the fallback backend,
    /// operations waiting for readiness.
    pub inflight_ops: usize,
    /// Threads of the blocking pool (busy or idle).
    pub blocking_threads: usize,
    /// Blocking-pool threads waiting for work.
    pub blocking_idle: usize,
    /// Jobs queued on the blocking pool, not yet picked up by a thread.
    pub blocking_queued: usize,
}

impl LoopInner {
    pub(super) fn metrics(&self) -> LoopMetrics {
        let (blocking_threads, blocking_idle, blocking_queued) = self.pool.stats();
        LoopMetrics {
            iterations: self.iterations.get(),
            ready_len: self.ready.borrow().len(),
            live_tasks: self.tasks.borrow().len(),
            timers: self.timers.borrow().len(),
            inflight_ops: self.driver.inflight_ops(),
            blocking_threads,
            blocking_idle,
            blocking_queued,
        }
    }
}
