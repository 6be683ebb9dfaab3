//! `Flag`: a cross-thread, set-once event that futures on any loop await
//! (the shutdown request, "every loop's main future finished").

use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Mutex, MutexGuard};
use std::task::{Context, Poll, Waker};

use slab::Slab;

#[derive(Default)]
pub(super) struct Flag {
    set: AtomicBool,
    /// One entry per pending [`FlagWait`], removed when it is dropped, so
    /// waits given up (a `select` that took the other branch) leave nothing.
    waiters: Mutex<Slab<Waker>>,
}

impl Flag {
    fn lock(&self) -> MutexGuard<'_, Slab<Waker>> {
        // No user code runs under the lock.
        self.waiters.lock().unwrap_or_else(|e| e.into_inner())
    }

    pub(super) fn is_set(&self) -> bool {
        self.set.load(Ordering::Acquire)
    }

    /// Sets the flag and wakes every waiter (a ringloop waker from another
    /// thread goes through that loop's cross-thread queue). Idempotent.
    pub(super) fn set(&self) {
        let waiters = {
            let mut w = self.lock();
            self.set.store(true, Ordering::Release);
            std::mem::take(&mut *w)
        };
        for (_, w) in waiters {
            w.wake();
        }
    }
}

/// Waits for a [`Flag`].
pub(super) struct FlagWait<'a> {
    flag: &'a Flag,
    key: Option<usize>,
}

impl<'a> FlagWait<'a> {
    pub(super) fn new(flag: &'a Flag) -> FlagWait<'a> {
        FlagWait { flag, key: None }
    }
}

impl Future for FlagWait<'_> {
    type Output = ();
    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<()> {
        let me = self.get_mut();
        if me.flag.is_set() {
            return Poll::Ready(());
        }
        let mut w = me.flag.lock();
        // Checked again under the lock: `set` stores before taking the list.
        if me.flag.is_set() {
            return Poll::Ready(());
        }
        match me.key.and_then(|k| w.get_mut(k)) {
            Some(old) => {
                if !old.will_wake(cx.waker()) {
                    *old = cx.waker().clone();
                }
            }
            None => me.key = Some(w.insert(cx.waker().clone())),
        }
        Poll::Pending
    }
}

impl Drop for FlagWait<'_> {
    fn drop(&mut self) {
        if let Some(k) = self.key
            && !self.flag.is_set()
        {
            // After `set` the slab was emptied and is never filled again,
            // so a key cannot name another waiter's entry.
            self.flag.lock().try_remove(k);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn abandoned_waits_leave_no_waker_and_set_wakes_pending_ones() {
        let flag = Flag::default();
        let mut cx = Context::from_waker(Waker::noop());
        for _ in 0..100 {
            let mut w = FlagWait::new(&flag);
            assert!(Pin::new(&mut w).poll(&mut cx).is_pending());
            assert!(Pin::new(&mut w).poll(&mut cx).is_pending());
        }
        assert_eq!(flag.lock().len(), 0);
        let mut kept = FlagWait::new(&flag);
        assert!(Pin::new(&mut kept).poll(&mut cx).is_pending());
        assert_eq!(flag.lock().len(), 1);
        flag.set();
        assert_eq!(flag.lock().len(), 0);
        assert!(Pin::new(&mut kept).poll(&mut cx).is_ready());
        assert!(Pin::new(&mut FlagWait::new(&flag)).poll(&mut cx).is_ready());
    }
}
