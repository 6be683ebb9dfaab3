//! The thread-safe part of a loop: the cross-thread queue and wake-up.
//!
//! Protocol (no lost wake-ups, no syscall while the loop is awake):
//! the loop stores `sleeping = true` (SeqCst) and then checks `has_remote`
//! before blocking; a remote thread pushes under the mutex, stores
//! `has_remote = true` (SeqCst) and then notifies the driver only if it swaps
//! `sleeping` from true to false. Whichever store comes first in the SeqCst
//! order, either the loop sees the item or the remote sees the sleeper.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};

use crate::driver::Notify;

pub(crate) enum Remote {
    Wake { key: usize, id: u64 },
    Call(Box<dyn FnOnce() + Send>),
    Stop,
}

/// Source of loop ids: process-wide and never reused, unlike an address.
static NEXT_LOOP_ID: AtomicU64 = AtomicU64::new(1);

pub(crate) struct Shared {
    /// The loop's identity (see `LoopInner::id`).
    pub(crate) id: u64,
    queue: Mutex<Vec<Remote>>,
    has_remote: AtomicBool,
    pub(crate) sleeping: AtomicBool,
    pub(super) closed: AtomicBool,
    notifier: Arc<dyn Notify>,
}

impl Shared {
    pub(crate) fn new(notifier: Arc<dyn Notify>) -> Shared {
        Shared {
            id: NEXT_LOOP_ID.fetch_add(1, Ordering::Relaxed),
            queue: Mutex::new(Vec::new()),
            has_remote: AtomicBool::new(false),
            sleeping: AtomicBool::new(false),
            closed: AtomicBool::new(false),
            notifier,
        }
    }

    fn lock(&self) -> MutexGuard<'_, Vec<Remote>> {
        // A panic while holding this lock cannot leave the Vec inconsistent.
        self.queue.lock().unwrap_or_else(|e| e.into_inner())
    }

    pub(crate) fn has_remote(&self) -> bool {
        self.has_remote.load(Ordering::SeqCst)
    }

    /// Moves every queued item to `out`, keeping the queue's capacity.
    pub(crate) fn drain_into(&self, out: &mut Vec<Remote>) {
        let mut q = self.lock();
        self.has_remote.store(false, Ordering::SeqCst);
        out.append(&mut q);
    }

    pub(crate) fn take_remote(&self) -> Vec<Remote> {
        let mut q = self.lock();
        self.has_remote.store(false, Ordering::SeqCst);
        std::mem::take(&mut *q)
    }

    pub(super) fn push(&self, r: Remote) {
        {
            let mut q = self.lock();
            q.push(r);
            self.has_remote.store(true, Ordering::SeqCst);
        }
        if self.sleeping.load(Ordering::SeqCst) && self.sleeping.swap(false, Ordering::SeqCst) {
            self.notifier.notify();
        }
    }

    pub(crate) fn push_remote_wake(&self, key: usize, id: u64) {
        if !self.closed.load(Ordering::Acquire) {
            self.push(Remote::Wake { key, id });
        }
    }

    pub(crate) fn close(&self) {
        self.closed.store(true, Ordering::Release);
    }
}
