//! [`LoopFuture`]: asyncio's `Future`, a result slot that one side sets and
//! any number of tasks await (`loop.create_future()`).

use std::cell::RefCell;
use std::error::Error;
use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::rc::{Rc, Weak};
use std::task::{Context, Poll, Waker};

use crate::runtime::{self, EventLoop, LoopError, LoopInner};

/// Why a [`LoopFuture`] has no value.
#[derive(Clone)]
#[non_exhaustive]
pub enum FutureError {
    /// [`LoopFuture::result`] on a future that is not done yet (asyncio's
    /// `InvalidStateError`). Awaiting never gives this.
    InvalidState,
    /// The future was cancelled (asyncio's `CancelledError`).
    Cancelled,
    /// [`LoopFuture::set_error`] was called (asyncio's `set_exception`).
    Failed(Rc<dyn Error>),
}

impl FutureError {
    /// True for [`FutureError::Cancelled`].
    pub fn is_cancelled(&self) -> bool {
        matches!(self, FutureError::Cancelled)
    }
    /// The error given to [`LoopFuture::set_error`], if that is what this is.
    pub fn error(&self) -> Option<&(dyn Error + 'static)> {
        match self {
            FutureError::Failed(e) => Some(&**e),
            _ => None,
        }
    }
}

impl fmt::Debug for FutureError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            FutureError::InvalidState => f.write_str("InvalidState"),
            FutureError::Cancelled => f.write_str("Cancelled"),
            FutureError::Failed(e) => f.debug_tuple("Failed").field(&e.to_string()).finish(),
        }
    }
}

impl fmt::Display for FutureError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            FutureError::InvalidState => f.write_str("Result is not set."),
            FutureError::Cancelled => f.write_str("the future was cancelled"),
            FutureError::Failed(e) => write!(f, "{e}"),
        }
    }
}

impl Error for FutureError {
    fn source(&self) -> Option<&(dyn Error + 'static)> {
        self.error()
    }
}

/// [`LoopFuture::set_result`] / [`set_error`](LoopFuture::set_error) on a
/// future that is already done (asyncio's `InvalidStateError`). A rejected
/// `set_result` hands its value back.
#[non_exhaustive]
pub struct InvalidStateError<T = ()> {
    value: T,
}

impl<T> InvalidStateError<T> {
    /// Take back the value that could not be set.
    pub fn into_inner(self) -> T {
        self.value
    }
}

impl<T> fmt::Debug for InvalidStateError<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("InvalidStateError").finish_non_exhaustive()
    }
}

impl<T> fmt::Display for InvalidStateError<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("invalid state: the future is already done")
    }
}

impl<T> Error for InvalidStateError<T> {}

/// Identifies a callback added by [`LoopFuture::add_done_callback`], for
/// [`LoopFuture::remove_done_callback`] (closures cannot be compared, so
/// asyncio's remove-by-function becomes remove-by-id).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct CallbackId(u64);

type DoneCallback<T> = Box<dyn FnOnce(&LoopFuture<T>)>;

enum Entry<T> {
    Callback(u64, DoneCallback<T>),
    Waiter(Waker),
}

enum Outcome<T> {
    Value(T),
    Error(Rc<dyn Error>),
    Cancelled,
}

struct FutState<T> {
    outcome: Option<Outcome<T>>,
    /// Done callbacks and awaiting tasks, in registration order.
    entries: Vec<Entry<T>>,
    next_id: u64,
}

struct FutInner<T> {
    lp: Weak<LoopInner>,
    state: RefCell<FutState<T>>,
}

/// asyncio's `Future`: a result slot bound to a loop, created by
/// [`EventLoop::create_future`](crate::EventLoop::create_future) or
/// [`create_future`].
///
/// * It is PENDING until [`set_result`](Self::set_result),
///   [`set_error`](Self::set_error) (asyncio's `set_exception`) or
///   [`cancel`](Self::cancel); then it is done for good. A second set fails
///   with [`InvalidStateError`]; `cancel` of a done future returns `false`.
/// * Clones share the slot, so one side can set it while any number of
///   tasks await it: `fut.clone().await` gives `Ok(value)` (a clone of it),
///   `Err(FutureError::Failed(e))` or `Err(FutureError::Cancelled)`.
///   Awaiting a done future completes at once, without yielding.
/// * Completion wakes the awaiting tasks and schedules the done callbacks
///   through the loop's ready queue, all in registration order, never
///   synchronously (asyncio's `call_soon(callback, fut)`); a callback added
///   to a done future is scheduled at once. A callback runs in the
///   [context](crate::context) that was current when it was added.
/// * [`result`](Self::result) never blocks: `Err(FutureError::InvalidState)`
///   while pending.
///
/// `T: Clone` is needed to read the value (every reader gets a copy); wrap
/// other values in an `Rc`. Unlike asyncio, an error that nobody retrieves
/// is not reported when the future is dropped.
///
/// ```
/// # let lp = ringloop::EventLoop::new().unwrap();
/// let fut = lp.create_future::<u32>();
/// let setter = fut.clone();
/// lp.call_soon(move || setter.set_result(42).unwrap()).unwrap();
/// assert_eq!(lp.run_until_complete(fut.clone()).unwrap().unwrap(), 42);
/// assert!(fut.is_done());
/// assert!(fut.set_result(7).is_err(), "already done: InvalidStateError");
/// ```
pub struct LoopFuture<T> {
    inner: Rc<FutInner<T>>,
}

impl<T> Clone for LoopFuture<T> {
    fn clone(&self) -> Self {
        LoopFuture {
            inner: self.inner.clone(),
        }
    }
}

/// A new pending [`LoopFuture`] bound to the current loop (the running
/// one, else this thread's default loop), asyncio's `loop.create_future()`.
///
/// # Panics
///
/// When there is no loop on this thread; use
/// [`EventLoop::create_future`](crate::EventLoop::create_future) to pick one.
pub fn create_future<T: 'static>() -> LoopFuture<T> {
    match runtime::current_inner() {
        Some(lp) => LoopFuture::new(&lp),
        None => panic!("ringloop::create_future: {}", LoopError::NoLoop),
    }
}

impl EventLoop {
    /// A new pending [`LoopFuture`] bound to this loop
    /// (asyncio's `loop.create_future()`; like it, works on a closed loop).
    pub fn create_future<T: 'static>(&self) -> crate::LoopFuture<T> {
        crate::LoopFuture::new(self.inner())
    }
}

impl<T: 'static> LoopFuture<T> {
    pub(crate) fn new(lp: &Rc<LoopInner>) -> Self {
        LoopFuture {
            inner: Rc::new(FutInner {
                lp: Rc::downgrade(lp),
                state: RefCell::new(FutState {
                    outcome: None,
                    entries: Vec::new(),
                    next_id: 0,
                }),
            }),
        }
    }

    /// Whether the future has a result, an error, or was cancelled.
    pub fn is_done(&self) -> bool {
        self.inner.state.borrow().outcome.is_some()
    }

    /// Whether the future was cancelled.
    pub fn is_cancelled(&self) -> bool {
        matches!(self.inner.state.borrow().outcome, Some(Outcome::Cancelled))
    }

    /// Completes the future with `value`, waking its awaiters and scheduling
    /// its callbacks. Fails (handing `value` back) if it is already done.
    pub fn set_result(&self, value: T) -> Result<(), InvalidStateError<T>> {
        if self.is_done() {
            return Err(InvalidStateError { value });
        }
        self.complete(Outcome::Value(value));
        Ok(())
    }

    /// Completes the future with an error (asyncio's `set_exception`);
    /// awaiters get `Err(FutureError::Failed(e))`. Fails if already done.
    pub fn set_error(&self, error: impl Into<Box<dyn Error>>) -> Result<(), InvalidStateError> {
        if self.is_done() {
            return Err(InvalidStateError { value: () });
        }
        self.complete(Outcome::Error(Rc::from(error.into())));
        Ok(())
    }

    /// Cancels the future: `false` if it is already done, else it becomes
    /// cancelled (awaiters get `Err(FutureError::Cancelled)`, callbacks are
    /// scheduled) and `true`.
    pub fn cancel(&self) -> bool {
        self.complete(Outcome::Cancelled)
    }

    /// Sets `outcome` unless done already (then returns `false`).
    fn complete(&self, outcome: Outcome<T>) -> bool {
        let entries = {
            let mut st = self.inner.state.borrow_mut();
            if st.outcome.is_some() {
                return false;
            }
            st.outcome = Some(outcome);
            std::mem::take(&mut st.entries)
        };
        let lp = self.inner.lp.upgrade();
        for e in entries {
            match e {
                Entry::Waiter(w) => w.wake(),
                Entry::Callback(_, cb) => {
                    if let Some(lp) = &lp {
                        let me = self.clone();
                        lp.schedule_callback(Box::new(move || cb(&me)));
                    }
                }
            }
        }
        true
    }

    /// The value (a clone), without waiting: `Err(FutureError::InvalidState)`
    /// while pending, else what awaiting gives.
    pub fn result(&self) -> Result<T, FutureError>
    where
        T: Clone,
    {
        match &self.inner.state.borrow().outcome {
            None => Err(FutureError::InvalidState),
            Some(Outcome::Value(v)) => Ok(v.clone()),
            Some(Outcome::Error(e)) => Err(FutureError::Failed(e.clone())),
            Some(Outcome::Cancelled) => Err(FutureError::Cancelled),
        }
    }

    /// asyncio's `exception()`: `Ok(None)` after `set_result`, `Ok(Some(e))`
    /// after `set_error`; `Err(InvalidState)` while pending,
    /// `Err(Cancelled)` if cancelled.
    pub fn error(&self) -> Result<Option<Rc<dyn Error>>, FutureError> {
        match &self.inner.state.borrow().outcome {
            None => Err(FutureError::InvalidState),
            Some(Outcome::Value(_)) => Ok(None),
            Some(Outcome::Error(e)) => Ok(Some(e.clone())),
            Some(Outcome::Cancelled) => Err(FutureError::Cancelled),
        }
    }

    /// Schedules `f(&future)` through the loop's ready queue once the future
    /// is done (at once if it already is); never called synchronously.
    /// Callbacks run in registration order.
    pub fn add_done_callback(&self, f: impl FnOnce(&LoopFuture<T>) + 'static) -> CallbackId {
        // asyncio runs the callback in the context current when it was added.
        let snap = crate::context::snapshot();
        let f = move |fut: &LoopFuture<T>| crate::context::run_snapshot(snap, || f(fut));
        let mut st = self.inner.state.borrow_mut();
        let id = st.next_id;
        st.next_id += 1;
        if st.outcome.is_none() {
            st.entries.push(Entry::Callback(id, Box::new(f)));
        } else {
            drop(st);
            if let Some(lp) = self.inner.lp.upgrade() {
                let me = self.clone();
                lp.schedule_callback(Box::new(move || f(&me)));
            }
        }
        CallbackId(id)
    }

    /// Removes a callback that has not been scheduled yet; returns how many
    /// were removed (0 or 1, as asyncio's count).
    pub fn remove_done_callback(&self, id: CallbackId) -> usize {
        let removed = {
            let mut st = self.inner.state.borrow_mut();
            let pos = st
                .entries
                .iter()
                .position(|e| matches!(e, Entry::Callback(cid, _) if *cid == id.0));
            pos.map(|i| st.entries.remove(i))
        };
        // The closure is dropped outside the borrow.
        usize::from(removed.is_some())
    }
}

impl<T: Clone + 'static> Future for LoopFuture<T> {
    type Output = Result<T, FutureError>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        {
            let mut st = self.inner.state.borrow_mut();
            if st.outcome.is_none() {
                let known = st
                    .entries
                    .iter()
                    .any(|e| matches!(e, Entry::Waiter(w) if w.will_wake(cx.waker())));
                if !known {
                    st.entries.push(Entry::Waiter(cx.waker().clone()));
                }
                crate::debug::note_wait(|| "future");
                return Poll::Pending;
            }
        }
        Poll::Ready(self.result())
    }
}

impl<T> fmt::Debug for LoopFuture<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let state = match &self.inner.state.borrow().outcome {
            None => "pending",
            Some(Outcome::Cancelled) => "cancelled",
            Some(_) => "finished",
        };
        f.debug_struct("LoopFuture").field("state", &state).finish()
    }
}
