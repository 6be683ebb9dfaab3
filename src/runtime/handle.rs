//! `Handle` / `TimerHandle`: cancellable scheduled callbacks.

use std::cell::{Cell, RefCell};
use std::fmt;
use std::rc::Rc;
use std::time::Instant;

use std::rc::Weak;

use super::LoopInner;
use crate::timer::TimerId;

/// A scheduled callback shared by the ready queue / timer heap and its handle.
pub(crate) struct CallbackCell {
    cancelled: Cell<bool>,
    f: RefCell<Option<Box<dyn FnOnce()>>>,
}

impl CallbackCell {
    pub(crate) fn new(f: Box<dyn FnOnce()>) -> Rc<CallbackCell> {
        Rc::new(CallbackCell {
            cancelled: Cell::new(false),
            f: RefCell::new(Some(f)),
        })
    }
    /// The callback, unless cancelled or already run.
    pub(crate) fn take(&self) -> Option<Box<dyn FnOnce()>> {
        if self.cancelled.get() {
            return None;
        }
        self.f.borrow_mut().take()
    }
    fn cancel(&self) {
        self.cancelled.set(true);
        let f = self.f.borrow_mut().take();
        drop(f);
    }
}

/// Handle of a [`call_soon`](crate::EventLoop::call_soon) callback.
pub struct Handle {
    cell: Rc<CallbackCell>,
}

impl Handle {
    pub(crate) fn new(cell: Rc<CallbackCell>) -> Handle {
        Handle { cell }
    }
    /// Cancels the callback (idempotent). A callback cancelled earlier in
    /// the same batch is skipped.
    pub fn cancel(&self) {
        self.cell.cancel()
    }
    /// Whether `cancel()` was called.
    pub fn cancelled(&self) -> bool {
        self.cell.cancelled.get()
    }
}

impl fmt::Debug for Handle {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Handle").field("cancelled", &self.cancelled()).finish()
    }
}

/// Handle of a [`call_later`](crate::EventLoop::call_later) /
/// [`call_at`](crate::EventLoop::call_at) callback.
///
/// Handles order by [`when`](TimerHandle::when) (asyncio's `TimerHandle`
/// comparisons); equal deadlines order as they fire, in scheduling order.
/// Two handles are equal only when they are the same timer.
pub struct TimerHandle {
    cell: Rc<CallbackCell>,
    id: TimerId,
    when: Instant,
    loop_id: u64,
    lp: Weak<LoopInner>,
}

impl TimerHandle {
    pub(crate) fn new(cell: Rc<CallbackCell>, id: TimerId, when: Instant, lp: &Rc<LoopInner>) -> TimerHandle {
        TimerHandle {
            cell,
            id,
            when,
            loop_id: lp.id(),
            lp: Rc::downgrade(lp),
        }
    }
    /// The ordering key: deadline, then firing order, then loop.
    fn key(&self) -> (Instant, u64, u64) {
        (self.when, self.id.seq(), self.loop_id)
    }
    /// Cancels the timer (idempotent, O(1)).
    pub fn cancel(&self) {
        self.cell.cancel();
        if let Some(lp) = self.lp.upgrade() {
            let action = lp.timers.try_borrow_mut().ok().and_then(|mut t| t.cancel(self.id));
            drop(action);
        }
    }
    /// Whether `cancel()` was called.
    pub fn cancelled(&self) -> bool {
        self.cell.cancelled.get()
    }
    /// The absolute deadline on the loop clock.
    pub fn when(&self) -> Instant {
        self.when
    }
}

impl fmt::Debug for TimerHandle {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TimerHandle")
            .field("when", &self.when())
            .field("cancelled", &self.cancelled())
            .finish()
    }
}

impl PartialEq for TimerHandle {
    fn eq(&self, other: &Self) -> bool {
        self.key() == other.key()
    }
}
impl Eq for TimerHandle {}
impl PartialOrd for TimerHandle {
    fn partial_cmp(&self, other: &Self) -> Option<std::cmp::Ordering> {
        Some(self.cmp(other))
    }
}
impl Ord for TimerHandle {
    fn cmp(&self, other: &Self) -> std::cmp::Ordering {
        self.key().cmp(&other.key())
    }
}
