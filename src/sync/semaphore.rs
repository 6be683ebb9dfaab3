//! [`Semaphore`] and [`BoundedSemaphore`]: asyncio's semaphores.

use std::cell::{Cell, RefCell};
use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::rc::Rc;
use std::task::{Context, Poll};

use super::error::BoundedReleaseError;
use super::wait_list::{WaitList, Waiter, wake};

/// A counting semaphore for tasks of one loop (asyncio's
/// `asyncio.Semaphore`).
///
/// [`acquire`](Semaphore::acquire) resolves to a [`SemaphorePermit`] that
/// gives its unit back when dropped. [`release`](Semaphore::release) adds a
/// unit and is unbounded, as in asyncio (see [`BoundedSemaphore`] for the
/// checked variant).
///
/// * An acquire that can be served at once completes on its first poll.
/// * Waiters are served in FIFO order. A released unit is handed straight to
///   the first waiter: **no barging**, a newcomer cannot take it first.
/// * A waiter that was handed a unit and is then dropped (cancelled) passes
///   the unit on to the next waiter (or back to the count).
///
/// The count is a `usize`, so asyncio's `ValueError` for a negative initial
/// value cannot happen: such a value does not type-check. A count that
/// would exceed `usize::MAX` saturates.
///
/// Clones share the same semaphore.
///
/// ```
/// # use ringloop::sync::Semaphore;
/// let sem = Semaphore::new(2);
/// let a = sem.try_acquire().unwrap();
/// let _b = sem.try_acquire().unwrap();
/// assert!(sem.try_acquire().is_none());
/// drop(a);
/// assert_eq!(sem.available(), 1);
/// sem.release(); // unbounded
/// assert_eq!(sem.available(), 2);
/// ```
#[derive(Clone)]
pub struct Semaphore {
    inner: Rc<SemInner>,
}

/// Shared state of a semaphore.
///
/// Invariants: `value > 0` implies no node is waiting (a unit released while
/// a waiter waits is handed to it instead of being counted); `outstanding`
/// counts live permits plus units handed to woken waiters that have not run.
struct SemInner {
    value: Cell<usize>,
    outstanding: Cell<usize>,
    waiters: RefCell<WaitList>,
}

impl SemInner {
    fn new(value: usize) -> Rc<Self> {
        Rc::new(SemInner {
            value: Cell::new(value),
            outstanding: Cell::new(0),
            waiters: RefCell::new(WaitList::new()),
        })
    }

    /// Take a unit if one is free.
    fn try_take(&self) -> bool {
        let value = self.value.get();
        if value == 0 {
            return false;
        }
        self.value.set(value - 1);
        self.outstanding.set(self.outstanding.get() + 1);
        true
    }

    /// Add a unit: hand it to the first waiter, or count it.
    fn add_unit(&self) {
        let waker = {
            let mut waiters = self.waiters.borrow_mut();
            match waiters.pop_waiting() {
                Some(next) => {
                    self.outstanding.set(self.outstanding.get() + 1);
                    next.notify()
                }
                None => {
                    self.value.set(self.value.get().saturating_add(1));
                    None
                }
            }
        };
        wake(waker);
    }

    /// A permit given back (dropped, or handed to a cancelled waiter).
    fn give_back(&self) {
        self.outstanding.set(self.outstanding.get().saturating_sub(1));
        self.add_unit();
    }

    fn acquire(self: &Rc<Self>) -> SemaphoreAcquire<'_> {
        SemaphoreAcquire {
            sem: self,
            state: AcquireState::Init,
        }
    }

    fn try_acquire(self: &Rc<Self>) -> Option<SemaphorePermit> {
        self.try_take().then(|| SemaphorePermit::new(self))
    }

    fn fmt(&self, name: &str, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct(name)
            .field("available", &self.value.get())
            .field("waiters", &self.waiters.borrow().waiting())
            .finish()
    }
}

impl Semaphore {
    /// A semaphore with `value` units.
    pub fn new(value: usize) -> Self {
        Semaphore {
            inner: SemInner::new(value),
        }
    }

    /// Take a unit, waiting in FIFO order if none is free.
    ///
    /// Dropping the returned future gives up the place in line; a unit
    /// already handed to it passes on to the next waiter.
    pub fn acquire(&self) -> SemaphoreAcquire<'_> {
        self.inner.acquire()
    }

    /// Take a unit if one is free right now (never overtakes a waiter).
    pub fn try_acquire(&self) -> Option<SemaphorePermit> {
        self.inner.try_acquire()
    }

    /// Add a unit (unbounded, as asyncio's `release()`); it goes to the first
    /// waiter if there is one. Pairs with [`SemaphorePermit::forget`].
    pub fn release(&self) {
        self.inner.add_unit();
    }

    /// The number of free units (asyncio's `_value`).
    pub fn available(&self) -> usize {
        self.inner.value.get()
    }

    /// Whether an acquire would have to wait (asyncio's `locked()`).
    pub fn locked(&self) -> bool {
        self.available() == 0
    }
}

impl Default for Semaphore {
    /// A semaphore with one unit, like asyncio's default.
    fn default() -> Self {
        Semaphore::new(1)
    }
}

impl fmt::Debug for Semaphore {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.inner.fmt("Semaphore", f)
    }
}

/// A [`Semaphore`] that refuses to be released above its initial value
/// (asyncio's `asyncio.BoundedSemaphore`).
///
/// Permits (RAII) always give their unit back, so they can never push the
/// count over the bound. [`release`](BoundedSemaphore::release) is for units
/// whose permit was [`forget`](SemaphorePermit::forget)-ten: it fails with
/// [`BoundedReleaseError`] (asyncio's `ValueError`) when the free units plus
/// the live permits already make up the initial value.
///
/// ```
/// # use ringloop::sync::{BoundedSemaphore, BoundedReleaseError};
/// let sem = BoundedSemaphore::new(1);
/// assert!(matches!(sem.release(), Err(BoundedReleaseError { .. })));
/// sem.try_acquire().unwrap().forget();
/// assert_eq!(sem.available(), 0);
/// assert_eq!(sem.release(), Ok(()));
/// assert!(matches!(sem.release(), Err(BoundedReleaseError { .. })));
/// ```
#[derive(Clone)]
pub struct BoundedSemaphore {
    inner: Rc<SemInner>,
    bound: usize,
}

impl BoundedSemaphore {
    /// A bounded semaphore with `value` units, which is also its bound.
    pub fn new(value: usize) -> Self {
        BoundedSemaphore {
            inner: SemInner::new(value),
            bound: value,
        }
    }

    /// Take a unit, waiting in FIFO order if none is free (see
    /// [`Semaphore::acquire`]).
    pub fn acquire(&self) -> SemaphoreAcquire<'_> {
        self.inner.acquire()
    }

    /// Take a unit if one is free right now (never overtakes a waiter).
    pub fn try_acquire(&self) -> Option<SemaphorePermit> {
        self.inner.try_acquire()
    }

    /// Give back a unit whose permit was forgotten; it goes to the first
    /// waiter if there is one.
    ///
    /// Fails with [`BoundedReleaseError`] if that would make the free units
    /// plus the live permits exceed the initial value.
    pub fn release(&self) -> Result<(), BoundedReleaseError> {
        let used = self.inner.value.get().saturating_add(self.inner.outstanding.get());
        if used >= self.bound {
            return Err(BoundedReleaseError);
        }
        self.inner.add_unit();
        Ok(())
    }

    /// The number of free units.
    pub fn available(&self) -> usize {
        self.inner.value.get()
    }

    /// Whether an acquire would have to wait.
    pub fn locked(&self) -> bool {
        self.available() == 0
    }

    /// The initial value, above which the count may not be released.
    pub fn bound(&self) -> usize {
        self.bound
    }
}

impl Default for BoundedSemaphore {
    /// A bounded semaphore with one unit, like asyncio's default.
    fn default() -> Self {
        BoundedSemaphore::new(1)
    }
}

impl fmt::Debug for BoundedSemaphore {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.inner.fmt("BoundedSemaphore", f)
    }
}

/// One unit of a [`Semaphore`] or [`BoundedSemaphore`]; dropping it gives
/// the unit back (to the first waiter, if any).
#[must_use = "the unit is given back as soon as the permit is dropped"]
pub struct SemaphorePermit {
    sem: Option<Rc<SemInner>>,
}

impl SemaphorePermit {
    fn new(sem: &Rc<SemInner>) -> Self {
        SemaphorePermit {
            sem: Some(Rc::clone(sem)),
        }
    }

    /// Consume the permit without giving its unit back, as with asyncio's
    /// bare `acquire()`; a later `release()` gives it back.
    pub fn forget(mut self) {
        if let Some(sem) = self.sem.take() {
            sem.outstanding.set(sem.outstanding.get().saturating_sub(1));
        }
    }
}

impl Drop for SemaphorePermit {
    fn drop(&mut self) {
        if let Some(sem) = self.sem.take() {
            sem.give_back();
        }
    }
}

impl fmt::Debug for SemaphorePermit {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SemaphorePermit").finish_non_exhaustive()
    }
}

enum AcquireState {
    Init,
    Waiting(Rc<Waiter>),
    Done,
}

/// Future returned by [`Semaphore::acquire`] and
/// [`BoundedSemaphore::acquire`].
///
/// Polling it again after it has completed returns `Pending`.
#[must_use = "futures do nothing unless polled"]
pub struct SemaphoreAcquire<'a> {
    sem: &'a Rc<SemInner>,
    state: AcquireState,
}

impl Future for SemaphoreAcquire<'_> {
    type Output = SemaphorePermit;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<SemaphorePermit> {
        let this = self.get_mut();
        let sem = this.sem;
        match &this.state {
            AcquireState::Init => {
                if sem.try_take() {
                    this.state = AcquireState::Done;
                    Poll::Ready(SemaphorePermit::new(sem))
                } else {
                    let node = sem.waiters.borrow_mut().push(Some(cx.waker()));
                    this.state = AcquireState::Waiting(node);
                    Poll::Pending
                }
            }
            AcquireState::Waiting(node) => {
                if node.is_notified() {
                    // The unit (and its `outstanding` count) was handed to us.
                    this.state = AcquireState::Done;
                    Poll::Ready(SemaphorePermit::new(sem))
                } else {
                    node.set_waker(cx.waker());
                    Poll::Pending
                }
            }
            AcquireState::Done => Poll::Pending,
        }
    }
}

impl Drop for SemaphoreAcquire<'_> {
    fn drop(&mut self) {
        if let AcquireState::Waiting(node) = &self.state {
            if node.is_notified() {
                // Handed a unit, then cancelled: pass it on.
                self.sem.give_back();
            } else {
                // Drop the stale waker only after the borrow ends.
                let _stale = self.sem.waiters.borrow_mut().cancel(node);
            }
        }
    }
}

impl fmt::Debug for SemaphoreAcquire<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SemaphoreAcquire").finish_non_exhaustive()
    }
}
