//! [`Lock`]: asyncio's `Lock`, with an RAII guard.

use std::cell::{Cell, RefCell};
use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::rc::Rc;
use std::task::{Context, Poll};

use super::wait_list::{WaitList, Waiter, wake};

/// A FIFO-fair mutual-exclusion lock for tasks of one loop (asyncio's
/// `asyncio.Lock`).
///
/// The lock protects no data of its own; [`lock`](Lock::lock) resolves to a
/// [`LockGuard`] and dropping the guard releases the lock. Clones share the
/// same lock.
///
/// * An uncontended [`lock`](Lock::lock) completes on its first poll,
///   without yielding to the loop.
/// * Waiters are served in FIFO order. Releasing the lock wakes only the
///   first waiter and hands the lock to it: **no barging**. Between the
///   release and the woken waiter running, [`locked`](Lock::locked) reports
///   `false` (as in asyncio), yet a newcomer's `lock()` still queues behind
///   the woken waiter and [`try_lock`](Lock::try_lock) fails.
/// * A woken waiter whose future is dropped before it runs (cancelled)
///   passes the lock on to the next waiter, or unlocks it if there is none.
///
/// Unlike asyncio, releasing an unlocked lock is impossible (there is no
/// `release()`; only a guard releases), and the lock is not bound to a loop:
/// it is `!Send`, so it stays on the thread that made it.
///
/// ```
/// # use ringloop::sync::Lock;
/// # use std::task::{Context, Poll, Waker};
/// # use std::pin::pin;
/// let lock = Lock::new();
/// let guard = lock.try_lock().expect("uncontended");
/// assert!(lock.locked());
/// assert!(lock.try_lock().is_none());
/// drop(guard);
/// assert!(!lock.locked());
/// // An uncontended `lock()` is ready on its first poll.
/// let mut fut = pin!(lock.lock());
/// let mut cx = Context::from_waker(Waker::noop());
/// assert!(matches!(fut.as_mut().poll(&mut cx), Poll::Ready(_)));
/// ```
#[derive(Clone, Default)]
pub struct Lock {
    pub(crate) inner: Rc<LockInner>,
}

/// Shared state of a [`Lock`].
///
/// Invariants: `held` is true while a guard exists or a hand-off is pending;
/// `handoff` is true while a woken waiter has been given the lock but has not
/// run yet (at most one can be); waiters wait only while `held` is true.
#[derive(Default)]
pub(crate) struct LockInner {
    held: Cell<bool>,
    handoff: Cell<bool>,
    waiters: RefCell<WaitList>,
}

impl LockInner {
    /// Release the lock: hand it to the first waiter, or unlock.
    fn release(&self) {
        let waker = {
            let mut waiters = self.waiters.borrow_mut();
            match waiters.pop_waiting() {
                Some(next) => {
                    self.handoff.set(true);
                    next.notify()
                }
                None => {
                    self.held.set(false);
                    None
                }
            }
        };
        wake(waker);
    }
}

impl Lock {
    /// A new, unlocked lock.
    pub fn new() -> Self {
        Self::default()
    }

    /// Acquire the lock, waiting in FIFO order if it is held.
    ///
    /// Dropping the returned future gives up the place in line; if the lock
    /// had already been handed to it, the lock passes to the next waiter.
    pub fn lock(&self) -> LockFuture<'_> {
        LockFuture {
            lock: self,
            state: LockState::Init,
        }
    }

    /// Acquire the lock if that is possible right now without overtaking a
    /// waiter (including one that was woken but has not run yet).
    pub fn try_lock(&self) -> Option<LockGuard> {
        if self.inner.held.get() {
            None
        } else {
            self.inner.held.set(true);
            Some(self.guard())
        }
    }

    /// Whether the lock is held (asyncio's `locked()`).
    ///
    /// As in asyncio this is `false` between a release and the run of the
    /// waiter it woke, although that waiter already owns the lock.
    pub fn locked(&self) -> bool {
        self.inner.held.get() && !self.inner.handoff.get()
    }

    fn guard(&self) -> LockGuard {
        LockGuard {
            inner: Rc::clone(&self.inner),
        }
    }
}

impl fmt::Debug for Lock {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Lock")
            .field("locked", &self.locked())
            .field("waiters", &self.inner.waiters.borrow().waiting())
            .finish()
    }
}

/// Proof that a [`Lock`] is held; dropping it releases the lock and wakes
/// the first waiter.
#[must_use = "the lock is released as soon as the guard is dropped"]
pub struct LockGuard {
    pub(crate) inner: Rc<LockInner>,
}

impl LockGuard {
    /// Whether this guard holds `lock`.
    pub fn is_guard_of(&self, lock: &Lock) -> bool {
        Rc::ptr_eq(&self.inner, &lock.inner)
    }
}

impl Drop for LockGuard {
    fn drop(&mut self) {
        self.inner.release();
    }
}

impl fmt::Debug for LockGuard {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("LockGuard").finish_non_exhaustive()
    }
}

enum LockState {
    Init,
    Waiting(Rc<Waiter>),
    Done,
}

/// Future returned by [`Lock::lock`] (and [`Condition::lock`](super::Condition::lock)).
///
/// Polling it again after it has completed returns `Pending`.
#[must_use = "futures do nothing unless polled"]
pub struct LockFuture<'a> {
    lock: &'a Lock,
    state: LockState,
}

impl Future for LockFuture<'_> {
    type Output = LockGuard;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<LockGuard> {
        let this = self.get_mut();
        let inner = &this.lock.inner;
        match &this.state {
            LockState::Init => {
                if !inner.held.get() {
                    inner.held.set(true);
                    this.state = LockState::Done;
                    Poll::Ready(this.lock.guard())
                } else {
                    let node = inner.waiters.borrow_mut().push(Some(cx.waker()));
                    this.state = LockState::Waiting(node);
                    Poll::Pending
                }
            }
            LockState::Waiting(node) => {
                if node.is_notified() {
                    // The lock was handed to us; `held` is still true.
                    inner.handoff.set(false);
                    this.state = LockState::Done;
                    Poll::Ready(this.lock.guard())
                } else {
                    node.set_waker(cx.waker());
                    Poll::Pending
                }
            }
            LockState::Done => Poll::Pending,
        }
    }
}

impl Drop for LockFuture<'_> {
    fn drop(&mut self) {
        if let LockState::Waiting(node) = &self.state {
            let inner = &self.lock.inner;
            if node.is_notified() {
                // Woken, then cancelled: pass the lock on.
                inner.handoff.set(false);
                inner.release();
            } else {
                // Drop the stale waker only after the borrow ends.
                let _stale = inner.waiters.borrow_mut().cancel(node);
            }
        }
    }
}

impl fmt::Debug for LockFuture<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("LockFuture").finish_non_exhaustive()
    }
}
