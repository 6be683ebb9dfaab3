//! [`Event`]: asyncio's `Event`.

use std::cell::{Cell, RefCell};
use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::rc::Rc;
use std::task::{Context, Poll};

use super::wait_list::{WaitList, Waiter, wake_all};

/// A flag that tasks can wait on (asyncio's `asyncio.Event`).
///
/// * [`wait`](Event::wait) completes at once (first poll) if the flag is set.
/// * [`set`](Event::set) wakes every waiter; a [`clear`](Event::clear)
///   right afterwards does not undo their wakeup: they still complete.
///
/// Clones share the same flag.
///
/// ```
/// # use ringloop::sync::Event;
/// let ev = Event::new();
/// assert!(!ev.is_set());
/// ev.set();
/// assert!(ev.is_set());
/// ev.clear();
/// assert!(!ev.is_set());
/// ```
#[derive(Clone, Default)]
pub struct Event {
    inner: Rc<EventInner>,
}

#[derive(Default)]
struct EventInner {
    set: Cell<bool>,
    /// Non-empty only while the flag is clear.
    waiters: RefCell<WaitList>,
}

impl Event {
    /// A new event, not set.
    pub fn new() -> Self {
        Self::default()
    }

    /// Whether the flag is set.
    pub fn is_set(&self) -> bool {
        self.inner.set.get()
    }

    /// Set the flag and wake every waiter. Does nothing if already set.
    pub fn set(&self) {
        if self.inner.set.replace(true) {
            return;
        }
        let wakers = {
            let mut waiters = self.inner.waiters.borrow_mut();
            let mut wakers = Vec::with_capacity(waiters.waiting());
            while let Some(node) = waiters.pop_waiting() {
                wakers.extend(node.notify());
            }
            wakers
        };
        wake_all(wakers);
    }

    /// Clear the flag. Waiters woken by an earlier [`set`](Event::set) still
    /// complete.
    pub fn clear(&self) {
        self.inner.set.set(false);
    }

    /// Wait until the flag is set (asyncio's `wait()`, which returns `True`).
    pub fn wait(&self) -> EventWait<'_> {
        EventWait {
            event: self,
            state: WaitState::Init,
        }
    }
}

impl fmt::Debug for Event {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Event")
            .field("is_set", &self.is_set())
            .field("waiters", &self.inner.waiters.borrow().waiting())
            .finish()
    }
}

enum WaitState {
    Init,
    Waiting(Rc<Waiter>),
    Done,
}

/// Future returned by [`Event::wait`].
///
/// Polling it again after it has completed returns `Ready` again.
#[must_use = "futures do nothing unless polled"]
pub struct EventWait<'a> {
    event: &'a Event,
    state: WaitState,
}

impl Future for EventWait<'_> {
    type Output = ();

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<()> {
        let this = self.get_mut();
        let inner = &this.event.inner;
        match &this.state {
            WaitState::Init => {
                if inner.set.get() {
                    this.state = WaitState::Done;
                    Poll::Ready(())
                } else {
                    let node = inner.waiters.borrow_mut().push(Some(cx.waker()));
                    this.state = WaitState::Waiting(node);
                    Poll::Pending
                }
            }
            WaitState::Waiting(node) => {
                if node.is_notified() {
                    this.state = WaitState::Done;
                    Poll::Ready(())
                } else {
                    node.set_waker(cx.waker());
                    Poll::Pending
                }
            }
            WaitState::Done => Poll::Ready(()),
        }
    }
}

impl Drop for EventWait<'_> {
    fn drop(&mut self) {
        // A notified waiter has nothing to pass on: `set` wakes everyone.
        if let WaitState::Waiting(node) = &self.state {
            // Drop the stale waker only after the borrow ends.
            let _stale = self.event.inner.waiters.borrow_mut().cancel(node);
        }
    }
}

impl fmt::Debug for EventWait<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("EventWait").finish_non_exhaustive()
    }
}
