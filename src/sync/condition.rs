//! [`Condition`]: asyncio's `Condition`.

use std::cell::RefCell;
use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::rc::Rc;
use std::task::{Context, Poll};

use super::error::{ForeignGuard, NotHeld};
use super::lock::{Lock, LockFuture, LockGuard};
use super::wait_list::{WaitList, Waiter, wake_all};

/// A condition variable for tasks of one loop (asyncio's
/// `asyncio.Condition`), built on a [`Lock`].
///
/// * [`wait`](Condition::wait) takes the [`LockGuard`], releases the lock
///   while it waits for a notification, re-acquires the lock and returns the
///   new guard.
/// * [`notify(n)`](Condition::notify) wakes at most `n` waiters in FIFO
///   order, [`notify_all`](Condition::notify_all) wakes them all; both return
///   how many they woke, and fail with [`NotHeld`] when the lock is not held
///   (asyncio's `RuntimeError`). As in asyncio, "held" means held by anyone:
///   a `Lock` does not know which task owns it.
/// * A guard of another lock passed to `wait`/`wait_for` is refused with
///   [`ForeignGuard`], which hands the guard back.
///
/// Clones share the same condition. Several conditions may share one lock
/// ([`with_lock`](Condition::with_lock)).
///
/// # Cancellation (dropping a `wait` future)
///
/// asyncio's `wait()`, when cancelled, first re-acquires the lock and then
/// raises `CancelledError`, so the caller always leaves holding the lock.
/// A Rust future cannot await in `Drop`, and the caller's guard has been
/// moved into `wait`, so ringloop does this instead:
///
/// * dropped **while waiting for a notification**: the lock stays released
///   (it was released when `wait` started), the waiter leaves the queue, and
///   if it had already been notified that notification passes on to the
///   next waiter (as asyncio 3.13 does; 3.11 loses it), so `notify(1)` is
///   never swallowed by a cancelled task;
/// * dropped **while re-acquiring the lock**: it gives up its place in the
///   lock's queue exactly like a dropped [`Lock::lock`] future (a lock
///   already handed to it passes on to the next waiter).
///
/// Either way the lock is not held on the caller's behalf afterwards, which
/// is safe because the caller no longer has a guard.
///
/// ```
/// # use ringloop::sync::{Condition, NotHeld};
/// let cond = Condition::new();
/// assert!(matches!(cond.notify(1), Err(NotHeld { .. })));
/// let guard = cond.try_lock().unwrap();
/// assert_eq!(cond.notify_all(), Ok(0));
/// drop(guard);
/// ```
#[derive(Clone, Default)]
pub struct Condition {
    inner: Rc<CondInner>,
}

#[derive(Default)]
struct CondInner {
    lock: Lock,
    waiters: RefCell<WaitList>,
}

impl CondInner {
    /// Wake up to `n` waiters, FIFO, without checking the lock.
    fn wake_up(&self, n: usize) -> usize {
        let wakers = {
            let mut waiters = self.waiters.borrow_mut();
            let mut wakers = Vec::new();
            let mut woken = 0;
            while woken < n {
                let Some(node) = waiters.pop_waiting() else {
                    break;
                };
                woken += 1;
                wakers.extend(node.notify());
            }
            (wakers, woken)
        };
        let (wakers, woken) = wakers;
        wake_all(wakers);
        woken
    }
}

impl Condition {
    /// A new condition with its own new [`Lock`].
    pub fn new() -> Self {
        Self::default()
    }

    /// A new condition using `lock` (which other conditions may share).
    pub fn with_lock(lock: Lock) -> Self {
        Condition {
            inner: Rc::new(CondInner {
                lock,
                waiters: RefCell::new(WaitList::new()),
            }),
        }
    }

    /// The underlying lock.
    pub fn as_lock(&self) -> &Lock {
        &self.inner.lock
    }

    /// Acquire the underlying lock (see [`Lock::lock`]).
    pub fn lock(&self) -> LockFuture<'_> {
        self.inner.lock.lock()
    }

    /// Acquire the underlying lock if possible right now (see [`Lock::try_lock`]).
    pub fn try_lock(&self) -> Option<LockGuard> {
        self.inner.lock.try_lock()
    }

    /// Whether the underlying lock is held (see [`Lock::locked`]).
    pub fn locked(&self) -> bool {
        self.inner.lock.locked()
    }

    /// Wake at most `n` waiters, oldest first; returns how many were woken.
    ///
    /// Fails with [`NotHeld`] if the lock is not held. Woken waiters run once
    /// the lock is released, in the order they were woken.
    pub fn notify(&self, n: usize) -> Result<usize, NotHeld> {
        if !self.locked() {
            return Err(NotHeld);
        }
        Ok(self.inner.wake_up(n))
    }

    /// Wake every waiter; returns how many were woken.
    ///
    /// Fails with [`NotHeld`] if the lock is not held.
    pub fn notify_all(&self) -> Result<usize, NotHeld> {
        self.notify(usize::MAX)
    }

    /// Release the lock held by `guard`, wait to be notified, re-acquire the
    /// lock and return the new guard (asyncio's `wait()`, which returns
    /// `True`).
    ///
    /// Fails at once with [`ForeignGuard`] (handing `guard` back) if `guard`
    /// belongs to another lock. See the type docs for what dropping this
    /// future does.
    pub async fn wait(&self, guard: LockGuard) -> Result<LockGuard, ForeignGuard> {
        if !guard.is_guard_of(&self.inner.lock) {
            return Err(ForeignGuard::new(guard));
        }
        // Queue up before releasing, so no notification can slip between.
        let notified = Notified {
            cond: &self.inner,
            node: Some(self.inner.waiters.borrow_mut().push(None)),
        };
        drop(guard);
        notified.await;
        Ok(self.inner.lock.lock().await)
    }

    /// Wait until `predicate` returns `true`, then return the guard
    /// (asyncio's `wait_for`).
    ///
    /// `predicate` is called with the lock held: once at the start and again
    /// after each wakeup. If it is already true, this returns without
    /// releasing the lock or yielding. asyncio returns the predicate's value;
    /// here the predicate is a `bool` and the guard is returned instead.
    pub async fn wait_for<F>(&self, mut guard: LockGuard, mut predicate: F) -> Result<LockGuard, ForeignGuard>
    where
        F: FnMut() -> bool,
    {
        if !guard.is_guard_of(&self.inner.lock) {
            return Err(ForeignGuard::new(guard));
        }
        while !predicate() {
            guard = self.wait(guard).await?;
        }
        Ok(guard)
    }
}

impl fmt::Debug for Condition {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Condition")
            .field("locked", &self.locked())
            .field("waiters", &self.inner.waiters.borrow().waiting())
            .finish()
    }
}

/// Waits for a notification; registered before the lock is released.
struct Notified<'a> {
    cond: &'a CondInner,
    node: Option<Rc<Waiter>>,
}

impl Future for Notified<'_> {
    type Output = ();

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<()> {
        let this = self.get_mut();
        match &this.node {
            Some(node) if node.is_notified() => {
                this.node = None;
                Poll::Ready(())
            }
            Some(node) => {
                node.set_waker(cx.waker());
                Poll::Pending
            }
            None => Poll::Ready(()),
        }
    }
}

impl Drop for Notified<'_> {
    fn drop(&mut self) {
        if let Some(node) = self.node.take() {
            if node.is_notified() {
                // Notified, then cancelled: pass the notification on.
                self.cond.wake_up(1);
            } else {
                // Drop the stale waker only after the borrow ends.
                let _stale = self.cond.waiters.borrow_mut().cancel(&node);
            }
        }
    }
}
