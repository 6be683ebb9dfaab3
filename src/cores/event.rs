//! `Flag`: a cross-thread, set-once event that futures on any loop await
//! (the shutdown request, "every loop's main future finished").

use std::future::Future;
use std::pin::Pin;
use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, Ordering};
use std::task::{Context, Poll, Waker};

#[derive(Default)]
pub(super) struct Flag {
    set: AtomicBool,
    waiters: Mutex<Vec<Waker>>,
}

impl Flag {
    pub(super) fn is_set(&self) -> bool {
        self.set.load(Ordering::Acquire)
    }

    /// Sets the flag and wakes every waiter (a ringloop waker from another
    /// thread goes through that loop's cross-thread queue). Idempotent.
    pub(super) fn set(&self) {
        let waiters = {
            let mut w = self.waiters.lock().unwrap_or_else(|e| e.into_inner());
            self.set.store(true, Ordering::Release);
            std::mem::take(&mut *w)
        };
        for w in waiters {
            w.wake();
        }
    }

    pub(super) fn poll_wait(&self, cx: &mut Context<'_>) -> Poll<()> {
        if self.is_set() {
            return Poll::Ready(());
        }
        let mut w = self.waiters.lock().unwrap_or_else(|e| e.into_inner());
        // Checked again under the lock: `set` stores before taking the list.
        if self.is_set() {
            return Poll::Ready(());
        }
        if !w.iter().any(|x| x.will_wake(cx.waker())) {
            w.push(cx.waker().clone());
        }
        Poll::Pending
    }
}

/// Waits for a [`Flag`] held in an `Arc`-owning structure.
pub(super) struct FlagWait<'a>(pub(super) &'a Flag);

impl Future for FlagWait<'_> {
    type Output = ();
    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<()> {
        self.0.poll_wait(cx)
    }
}
