//! The FIFO waiter list shared by every primitive in this module.
//!
//! A waiter is an `Rc<Waiter>` held both by the list and by the future that
//! waits. The waker side *pops* a waiter from the list, marks it
//! [`State::Notified`] (which means whatever the primitive grants: the lock,
//! a unit, a reserved queue item or slot) and wakes it; the future then
//! completes on its next poll. A future dropped while still
//! waiting marks its node [`State::Cancelled`] and leaves it in the list;
//! cancelled nodes are skipped when popped and compacted away once they make
//! up more than half of the list, so cancellation is O(1) amortised and the
//! list cannot grow without bound.
//!
//! Invariants:
//! * a node in the list is `Waiting` or `Cancelled`, never `Notified`;
//! * `cancelled` equals the number of `Cancelled` nodes in the list;
//! * a `Notified` node is referenced only by its future (and by a waker-side
//!   local that is about to drop it).
//!
//! Wakers are returned to the caller rather than woken here, so that callers
//! can release their `RefCell` borrows before running foreign waker code.

use std::cell::Cell;
use std::collections::VecDeque;
use std::rc::Rc;
use std::task::Waker;

/// Where a waiter is in its life.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum State {
    /// In the list, waiting to be notified.
    Waiting,
    /// Popped from the list by a notifier; the future has not consumed it yet.
    Notified,
    /// Its future was dropped while it was still `Waiting`.
    Cancelled,
}

/// One parked future.
pub(crate) struct Waiter {
    state: Cell<State>,
    waker: Cell<Option<Waker>>,
}

impl Waiter {
    /// Whether a notifier has popped this waiter and woken it.
    pub(crate) fn is_notified(&self) -> bool {
        self.state.get() == State::Notified
    }

    /// Remember `waker`, reusing the stored one when it would wake the same task.
    pub(crate) fn set_waker(&self, waker: &Waker) {
        match self.waker.take() {
            Some(old) if old.will_wake(waker) => self.waker.set(Some(old)),
            _ => self.waker.set(Some(waker.clone())),
        }
    }

    /// Mark a popped waiter as notified and hand back its waker, to be woken
    /// once the caller has released its borrows.
    #[must_use = "the returned waker must be woken"]
    pub(crate) fn notify(&self) -> Option<Waker> {
        debug_assert_eq!(self.state.get(), State::Waiting);
        self.state.set(State::Notified);
        self.waker.take()
    }
}

/// A FIFO list of waiters; see the module docs.
#[derive(Default)]
pub(crate) struct WaitList {
    queue: VecDeque<Rc<Waiter>>,
    cancelled: usize,
}

/// Compaction is considered only once this many cancelled nodes pile up.
const COMPACT_MIN: usize = 16;

impl WaitList {
    /// An empty list.
    pub(crate) fn new() -> Self {
        Self::default()
    }

    /// Append a new waiting node (with its waker, if known yet).
    pub(crate) fn push(&mut self, waker: Option<&Waker>) -> Rc<Waiter> {
        let node = Rc::new(Waiter {
            state: Cell::new(State::Waiting),
            waker: Cell::new(waker.cloned()),
        });
        self.queue.push_back(Rc::clone(&node));
        node
    }

    /// Number of nodes still waiting.
    pub(crate) fn waiting(&self) -> usize {
        self.queue.len() - self.cancelled
    }

    /// Pop the first node that is still waiting (dropping cancelled ones on
    /// the way). The caller must `notify` it.
    pub(crate) fn pop_waiting(&mut self) -> Option<Rc<Waiter>> {
        while let Some(node) = self.queue.pop_front() {
            if node.state.get() == State::Cancelled {
                self.cancelled -= 1;
                continue;
            }
            return Some(node);
        }
        None
    }

    /// Collect (clones of) the wakers of every node still waiting, leaving
    /// the nodes in the list: each woken future re-checks the primitive's
    /// state itself (used when a queue is shut down).
    pub(crate) fn wake_waiting(&self, out: &mut Vec<Waker>) {
        for node in &self.queue {
            if node.state.get() != State::Waiting {
                continue;
            }
            if let Some(w) = node.waker.take() {
                out.push(w.clone());
                node.waker.set(Some(w));
            }
        }
    }

    /// Cancel a node whose future is being dropped while it still waits.
    /// Does nothing if the node is not waiting. Returns the node's waker for
    /// the caller to drop outside its borrows.
    #[must_use = "drop the waker after releasing the borrow"]
    pub(crate) fn cancel(&mut self, node: &Waiter) -> Option<Waker> {
        if node.state.get() != State::Waiting {
            return None;
        }
        node.state.set(State::Cancelled);
        self.cancelled += 1;
        if self.cancelled >= COMPACT_MIN && self.cancelled * 2 > self.queue.len() {
            self.queue.retain(|n| n.state.get() != State::Cancelled);
            self.cancelled = 0;
        }
        node.waker.take()
    }
}

/// Wake every waker in `wakers` (called after borrows are released).
pub(crate) fn wake_all(wakers: Vec<Waker>) {
    for waker in wakers {
        waker.wake();
    }
}

/// Wake `waker` if there is one.
pub(crate) fn wake(waker: Option<Waker>) {
    if let Some(waker) = waker {
        waker.wake();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cancelled_nodes_are_skipped_and_compacted() {
        let mut list = WaitList::new();
        let nodes: Vec<_> = (0..1000).map(|_| list.push(None)).collect();
        for node in &nodes[..999] {
            let _ = list.cancel(node);
        }
        assert_eq!(list.waiting(), 1);
        assert!(list.queue.len() < 64, "compaction keeps the list small");
        let first = list.pop_waiting().expect("one waiter left");
        assert!(Rc::ptr_eq(&first, &nodes[999]));
        assert!(list.pop_waiting().is_none());
        assert_eq!(list.cancelled, 0);
    }

    #[test]
    fn cancel_of_a_notified_node_is_a_no_op() {
        let mut list = WaitList::new();
        let a = list.push(None);
        let b = list.push(None);
        let popped = list.pop_waiting().unwrap();
        let _ = popped.notify();
        assert!(list.cancel(&a).is_none());
        assert!(a.is_notified());
        assert_eq!(list.waiting(), 1);
        assert!(Rc::ptr_eq(&list.pop_waiting().unwrap(), &b));
    }
}
