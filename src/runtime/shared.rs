//! The thread-safe part of a loop: the cross-thread queue, and the
//! sleep/notify handshake (`SleepGate`) that wakes the loop for it.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};

use crate::driver::Notify;

pub(crate) enum Remote {
    /// A task woken from another thread (owns a reference to it).
    Wake(crate::task::RemoteWake),
    Call(Box<dyn FnOnce() + Send>),
    Stop,
}

/// Source of loop ids: process-wide and never reused, unlike an address.
static NEXT_LOOP_ID: AtomicU64 = AtomicU64::new(1);

/// The loop's sleep/notify protocol with the threads that queue work for
/// it (async-executor's `Sleepers`, for the single thread that sleeps here:
/// the loop's). No lost wake-up, no syscall while the loop is awake:
///
/// - the loop calls [`begin_sleep`](SleepGate::begin_sleep) before a
///   blocking wait: it stores `sleeping = true` (SeqCst) and then reads
///   `pending`; if work is pending it must not block;
/// - a producer, after queueing, calls [`set_pending`](SleepGate::set_pending)
///   (stores `pending = true`, SeqCst) and then
///   [`wake`](SleepGate::wake), which notifies the driver only if it swaps
///   `sleeping` from true to false.
///
/// Whichever store comes first in the SeqCst order, either the loop sees
/// the work or the producer sees the sleeper; a sleep gets at most one
/// notification, and an awake loop none.
struct SleepGate {
    pending: AtomicBool,
    sleeping: AtomicBool,
    notifier: Arc<dyn Notify>,
}

impl SleepGate {
    fn new(notifier: Arc<dyn Notify>) -> SleepGate {
        SleepGate {
            pending: AtomicBool::new(false),
            sleeping: AtomicBool::new(false),
            notifier,
        }
    }

    #[inline]
    fn is_pending(&self) -> bool {
        self.pending.load(Ordering::SeqCst)
    }

    fn set_pending(&self, on: bool) {
        self.pending.store(on, Ordering::SeqCst);
    }

    /// Loop side: announces a blocking wait; false when work is already
    /// pending (then the loop must not block).
    fn begin_sleep(&self) -> bool {
        self.sleeping.store(true, Ordering::SeqCst);
        !self.is_pending()
    }

    /// Loop side: the wait returned.
    fn end_sleep(&self) {
        self.sleeping.store(false, Ordering::SeqCst);
    }

    /// Producer side, after `set_pending(true)`: wakes a sleeping loop.
    fn wake(&self) {
        if self.sleeping.load(Ordering::SeqCst) && self.sleeping.swap(false, Ordering::SeqCst) {
            self.notifier.notify();
        }
    }
}

pub(crate) struct Shared {
    /// The loop's identity (see `LoopInner::id`).
    pub(crate) id: u64,
    queue: Mutex<Vec<Remote>>,
    gate: SleepGate,
    pub(super) closed: AtomicBool,
}

impl Shared {
    pub(crate) fn new(notifier: Arc<dyn Notify>) -> Shared {
        Shared {
            id: NEXT_LOOP_ID.fetch_add(1, Ordering::Relaxed),
            queue: Mutex::new(Vec::new()),
            gate: SleepGate::new(notifier),
            closed: AtomicBool::new(false),
        }
    }

    fn lock(&self) -> MutexGuard<'_, Vec<Remote>> {
        // A panic while holding this lock cannot leave the Vec inconsistent.
        self.queue.lock().unwrap_or_else(|e| e.into_inner())
    }

    #[inline]
    pub(crate) fn has_remote(&self) -> bool {
        self.gate.is_pending()
    }

    /// Before a blocking wait (see [`SleepGate`]): false when cross-thread
    /// items are queued, so the wait must not block.
    pub(crate) fn begin_sleep(&self) -> bool {
        self.gate.begin_sleep()
    }

    /// After the wait that `begin_sleep` announced.
    pub(crate) fn end_sleep(&self) {
        self.gate.end_sleep()
    }

    /// Moves every queued item to `out`, keeping the queue's capacity.
    pub(crate) fn drain_into(&self, out: &mut Vec<Remote>) {
        let mut q = self.lock();
        self.gate.set_pending(false);
        out.append(&mut q);
    }

    pub(crate) fn take_remote(&self) -> Vec<Remote> {
        let mut q = self.lock();
        self.gate.set_pending(false);
        std::mem::take(&mut *q)
    }

    /// Queues `r` and wakes a sleeping loop; once the loop is closed `r`
    /// is handed back instead. Checked under the queue's lock, which `close`
    /// takes too, so nothing is queued after the loop's last drain: no
    /// callback is lost silently, and no task reference stays behind in a
    /// queue that the task itself keeps alive (through its wakers' schedule
    /// hook).
    pub(super) fn push(&self, r: Remote) -> Result<(), Remote> {
        {
            let mut q = self.lock();
            if self.closed.load(Ordering::Acquire) {
                return Err(r);
            }
            q.push(r);
            self.gate.set_pending(true);
        }
        self.gate.wake();
        Ok(())
    }

    /// Queues a task woken from another thread; once the loop is closed it
    /// is dropped (its reference released, outside the lock).
    pub(crate) fn push_remote_wake(&self, task: crate::task::RemoteWake) {
        drop(self.push(Remote::Wake(task)));
    }

    pub(crate) fn close(&self) {
        let _q = self.lock();
        self.closed.store(true, Ordering::Release);
    }
}
