//! [`Queue`], [`LifoQueue`] and [`PriorityQueue`]: asyncio's queues, one
//! generic implementation ([`GenericQueue`]) with three disciplines.

use std::cell::RefCell;
use std::fmt;
use std::mem;
use std::rc::Rc;
use std::task::{Context, Poll, Waker};

use super::error::{QueueEmpty, QueueFull, QueueShutDown, TaskDoneError, TryGetError, TryPutError};
use super::wait_list::{WaitList, Waiter, wake_all};

/// A first-in, first-out queue (asyncio's `asyncio.Queue`): puts of 1, 3, 2
/// are got as 1, 3, 2.
///
/// ```
/// # use ringloop::sync::Queue;
/// let q = Queue::new(0);
/// for i in [1, 3, 2] {
///     q.put_nowait(i).unwrap();
/// }
/// let got: Vec<i32> = std::iter::from_fn(|| q.get_nowait().ok()).collect();
/// assert_eq!(got, [1, 3, 2]);
/// ```
pub type Queue<T> = GenericQueue<T, Fifo>;

/// A last-in, first-out queue (asyncio's `asyncio.LifoQueue`): puts of 1, 3,
/// 2 are got as 2, 3, 1.
///
/// ```
/// # use ringloop::sync::LifoQueue;
/// let q = LifoQueue::new(0);
/// for i in [1, 3, 2] {
///     q.put_nowait(i).unwrap();
/// }
/// let got: Vec<i32> = std::iter::from_fn(|| q.get_nowait().ok()).collect();
/// assert_eq!(got, [2, 3, 1]);
/// ```
pub type LifoQueue<T> = GenericQueue<T, Lifo>;

/// A queue that yields its smallest item first (asyncio's
/// `asyncio.PriorityQueue`): puts of 1, 3, 2 are got as 1, 2, 3. Equal
/// items come out in the order they were put (asyncio leaves that order
/// undefined). Wrap items in [`std::cmp::Reverse`] for largest-first.
///
/// ```
/// # use ringloop::sync::PriorityQueue;
/// let q = PriorityQueue::new(0);
/// for i in [1, 3, 2] {
///     q.put_nowait(i).unwrap();
/// }
/// let got: Vec<i32> = std::iter::from_fn(|| q.get_nowait().ok()).collect();
/// assert_eq!(got, [1, 2, 3]);
/// ```
pub type PriorityQueue<T> = GenericQueue<T, Priority>;

mod discipline;
mod futures;

pub use discipline::{Discipline, Fifo, Lifo, Priority};
pub use futures::{QueueGet, QueueJoin, QueuePut, QueueStream};

/// The queue shared by [`Queue`], [`LifoQueue`] and [`PriorityQueue`]
/// (asyncio's `asyncio.Queue` family); use those aliases to name it.
///
/// * `maxsize == 0` means unbounded; [`full`](Self::full) is then always
///   `false`.
/// * [`put_nowait`](Self::put_nowait) on a full queue fails with
///   [`QueueFull`] (handing the item back); [`get_nowait`](Self::get_nowait)
///   on an empty one fails with [`QueueEmpty`] (both wrapped in
///   [`TryPutError`] / [`TryGetError`]).
/// * [`shutdown`](Self::shutdown) (Python 3.13): puts then fail with
///   [`QueueShutDown`], gets fail once the queue is empty, and blocked
///   putters and getters are woken to see it.
/// * [`put`](Self::put) and [`get`](Self::get) complete on their first poll
///   when they need not wait. Blocked putters and getters are served in FIFO
///   order with **no barging**: an item put while getters wait is reserved
///   for the first of them, and a slot freed while putters wait is reserved
///   for the first of them, so a newcomer (including `get_nowait` /
///   `put_nowait`) cannot take it first. As in asyncio, a woken getter takes
///   the head of the queue *when it runs* (so a `LifoQueue` or
///   `PriorityQueue` hands it the item that is on top at that moment), and a
///   woken putter puts its item when it runs.
/// * A woken getter or putter that is dropped (cancelled) before running
///   passes its reservation on to the next waiter. The item never left the
///   queue, so a cancelled getter cannot lose it. A putter dropped while it
///   waits drops its item (it was never put).
/// * [`task_done`](Self::task_done) and [`join`](Self::join) count items as
///   asyncio does: each item that enters the queue must be marked done
///   once; underflow is a [`TaskDoneError`].
/// * [`stream`](Self::stream) gives a [`futures_core::Stream`] of items.
///
/// While a woken waiter holds a reservation, `qsize`/`empty`/`full` report
/// the queue's contents as asyncio does (reserved items are still in the
/// queue; a reserved slot is still free), yet a newcomer's `get_nowait` /
/// `put_nowait` fails, where asyncio would let it barge.
///
/// Clones share the same queue. Items are never cloned. A
/// [`PriorityQueue`] compares items while it updates its state, so an `Ord`
/// implementation must not call back into the same queue.
pub struct GenericQueue<T, K: Discipline<T>> {
    inner: Rc<QueueInner<T, K>>,
}

struct QueueInner<T, K: Discipline<T>> {
    maxsize: usize,
    state: RefCell<QueueState<T, K>>,
}

/// Invariants: `get_reserved <= len(buf)`; getters wait only while every
/// item is reserved (`len(buf) == get_reserved`); putters wait only while
/// `len(buf) + put_reserved >= maxsize` (so never when unbounded).
struct QueueState<T, K: Discipline<T>> {
    buf: K::Buf,
    getters: WaitList,
    putters: WaitList,
    joiners: WaitList,
    /// Items reserved for woken getters that have not run yet.
    get_reserved: usize,
    /// Slots reserved for woken putters that have not run yet.
    put_reserved: usize,
    /// asyncio's `_unfinished_tasks`.
    unfinished: usize,
    /// Python 3.13's `_is_shutdown`.
    shutdown: bool,
}

impl<T, K: Discipline<T>> QueueState<T, K> {
    fn len(&self) -> usize {
        K::len(&self.buf)
    }

    /// Whether a newcomer's put must wait (or fail).
    fn no_free_slot(&self, maxsize: usize) -> bool {
        maxsize > 0 && self.len().saturating_add(self.put_reserved) >= maxsize
    }

    /// Put an item that has a right to enter, and wake a getter for it.
    fn push(&mut self, item: T, wakers: &mut Vec<Waker>) {
        K::push(&mut self.buf, item);
        self.unfinished = self.unfinished.saturating_add(1);
        self.wake_getters(wakers);
    }

    /// Take an item that the caller has a right to, and wake a putter for
    /// the freed slot.
    fn pop(&mut self, maxsize: usize, wakers: &mut Vec<Waker>) -> Option<T> {
        let item = K::pop(&mut self.buf);
        self.wake_putters(maxsize, wakers);
        item
    }

    /// Reserve unreserved items for waiting getters, FIFO.
    fn wake_getters(&mut self, wakers: &mut Vec<Waker>) {
        while self.len() > self.get_reserved {
            let Some(node) = self.getters.pop_waiting() else {
                break;
            };
            self.get_reserved += 1;
            wakers.extend(node.notify());
        }
    }

    /// Reserve free slots for waiting putters, FIFO.
    fn wake_putters(&mut self, maxsize: usize, wakers: &mut Vec<Waker>) {
        while !self.no_free_slot(maxsize) {
            let Some(node) = self.putters.pop_waiting() else {
                break;
            };
            self.put_reserved += 1;
            wakers.extend(node.notify());
        }
    }
}

impl<T, K: Discipline<T>> QueueInner<T, K> {
    /// A newcomer's put: succeeds unless the queue is shut down or no slot
    /// is free.
    fn try_put(&self, item: T) -> Result<(), TryPutError<T>> {
        let mut wakers = Vec::new();
        {
            let mut st = self.state.borrow_mut();
            if st.shutdown {
                return Err(TryPutError::ShutDown(QueueShutDown::new(item)));
            }
            if st.no_free_slot(self.maxsize) {
                return Err(TryPutError::Full(QueueFull::new(item)));
            }
            st.push(item, &mut wakers);
        }
        wake_all(wakers);
        Ok(())
    }

    /// A newcomer's get: succeeds if some item is not reserved; otherwise
    /// fails with `ShutDown` once the queue is shut down, else `Empty`.
    fn try_get(&self) -> Result<T, TryGetError> {
        let mut wakers = Vec::new();
        let item = {
            let mut st = self.state.borrow_mut();
            if st.len() <= st.get_reserved {
                return Err(if st.shutdown {
                    TryGetError::ShutDown(QueueShutDown::new(()))
                } else {
                    TryGetError::Empty(QueueEmpty)
                });
            }
            st.pop(self.maxsize, &mut wakers)
        };
        wake_all(wakers);
        item.ok_or(TryGetError::Empty(QueueEmpty))
    }

    fn poll_get(&self, state: &mut GetState, cx: &mut Context<'_>) -> Poll<Result<T, QueueShutDown>> {
        match mem::replace(state, GetState::Done) {
            GetState::Init => match self.try_get() {
                Ok(item) => Poll::Ready(Ok(item)),
                Err(TryGetError::ShutDown(e)) => Poll::Ready(Err(e)),
                Err(TryGetError::Empty(_)) => {
                    let node = self.state.borrow_mut().getters.push(Some(cx.waker()));
                    *state = GetState::Waiting(node);
                    Poll::Pending
                }
            },
            GetState::Waiting(node) => {
                if !node.is_notified() {
                    if !self.state.borrow().shutdown {
                        node.set_waker(cx.waker());
                        *state = GetState::Waiting(node);
                        return Poll::Pending;
                    }
                    // Woken by `shutdown`: leave the line, then take an
                    // unreserved item if one is left, else fail.
                    let _stale = self.state.borrow_mut().getters.cancel(&node);
                    return Poll::Ready(self.try_get().map_err(|_| QueueShutDown::new(())));
                }
                let mut wakers = Vec::new();
                let item = {
                    let mut st = self.state.borrow_mut();
                    st.get_reserved = st.get_reserved.saturating_sub(1);
                    let item = st.pop(self.maxsize, &mut wakers);
                    if item.is_none() && !st.shutdown {
                        // Unreachable while the invariants hold; wait again
                        // rather than panic.
                        *state = GetState::Waiting(st.getters.push(Some(cx.waker())));
                    }
                    item
                };
                wake_all(wakers);
                match item {
                    Some(item) => Poll::Ready(Ok(item)),
                    // `shutdown(immediate = true)` drained the reserved item.
                    None if matches!(state, GetState::Done) => Poll::Ready(Err(QueueShutDown::new(()))),
                    None => Poll::Pending,
                }
            }
            GetState::Done => Poll::Pending,
        }
    }

    fn drop_get(&self, state: &mut GetState) {
        let GetState::Waiting(node) = mem::replace(state, GetState::Done) else {
            return;
        };
        if node.is_notified() {
            // Woken, then cancelled: the item stays in the queue and its
            // reservation passes on to the next getter.
            let mut wakers = Vec::new();
            {
                let mut st = self.state.borrow_mut();
                st.get_reserved = st.get_reserved.saturating_sub(1);
                st.wake_getters(&mut wakers);
            }
            wake_all(wakers);
        } else {
            let _stale = self.state.borrow_mut().getters.cancel(&node);
        }
    }
}

/// The put future's state.
enum PutState<T> {
    Init(T),
    Waiting(Rc<Waiter>, T),
    Done,
}

/// The get future's (and stream's) state.
enum GetState {
    Init,
    Waiting(Rc<Waiter>),
    Done,
}

impl<T, K: Discipline<T>> GenericQueue<T, K> {
    /// A queue holding at most `maxsize` items; `0` means unbounded.
    pub fn new(maxsize: usize) -> Self {
        GenericQueue {
            inner: Rc::new(QueueInner {
                maxsize,
                state: RefCell::new(QueueState {
                    buf: K::new_buf(),
                    getters: WaitList::new(),
                    putters: WaitList::new(),
                    joiners: WaitList::new(),
                    get_reserved: 0,
                    put_reserved: 0,
                    unfinished: 0,
                    shutdown: false,
                }),
            }),
        }
    }

    /// The capacity given to [`new`](Self::new) (`0`: unbounded).
    pub fn maxsize(&self) -> usize {
        self.inner.maxsize
    }

    /// The number of items in the queue.
    pub fn qsize(&self) -> usize {
        self.inner.state.borrow().len()
    }

    /// Whether the queue holds no item.
    pub fn empty(&self) -> bool {
        self.qsize() == 0
    }

    /// Whether the queue holds `maxsize` items (never, when unbounded).
    pub fn full(&self) -> bool {
        self.inner.maxsize > 0 && self.qsize() >= self.inner.maxsize
    }

    /// Put `item` if a slot is free right now; otherwise hand it back in
    /// [`TryPutError::Full`] ([`TryPutError::ShutDown`] after
    /// [`shutdown`](Self::shutdown)). Never overtakes a waiting putter.
    pub fn put_nowait(&self, item: T) -> Result<(), TryPutError<T>> {
        self.inner.try_put(item)
    }

    /// Take the next item if one is there for a newcomer right now;
    /// otherwise fail with [`TryGetError::Empty`], or with
    /// [`TryGetError::ShutDown`] once the queue is shut down (and empty).
    /// Never overtakes a waiting getter.
    pub fn get_nowait(&self) -> Result<T, TryGetError> {
        self.inner.try_get()
    }

    /// Put `item`, waiting in FIFO order for a free slot if the queue is full.
    ///
    /// Fails with [`QueueShutDown`] (handing the item back) if the queue is
    /// shut down, also while this put waits.
    ///
    /// Dropping the future before it completes drops `item` unput; a slot
    /// already reserved for it passes on to the next putter.
    pub fn put(&self, item: T) -> QueuePut<'_, T, K> {
        QueuePut {
            queue: &self.inner,
            state: PutState::Init(item),
        }
    }

    /// Take the next item, waiting in FIFO order if the queue is empty.
    ///
    /// Fails with [`QueueShutDown`] once the queue is shut down and empty
    /// (a waiting get is woken for it).
    ///
    /// Dropping the future before it completes leaves the items in the
    /// queue; an item already reserved for it passes on to the next getter.
    pub fn get(&self) -> QueueGet<'_, T, K> {
        QueueGet {
            queue: &self.inner,
            state: GetState::Init,
        }
    }

    /// Mark one item as processed; when every item put so far is,
    /// [`join`](Self::join) waiters wake up.
    ///
    /// Fails with [`TaskDoneError`] if called more times than items were put
    /// (asyncio's `ValueError`).
    pub fn task_done(&self) -> Result<(), TaskDoneError> {
        let wakers = {
            let mut st = self.inner.state.borrow_mut();
            if st.unfinished == 0 {
                return Err(TaskDoneError);
            }
            st.unfinished -= 1;
            let mut wakers = Vec::new();
            if st.unfinished == 0 {
                while let Some(node) = st.joiners.pop_waiting() {
                    wakers.extend(node.notify());
                }
            }
            wakers
        };
        wake_all(wakers);
        Ok(())
    }

    /// Wait until every item put so far has been marked with
    /// [`task_done`](Self::task_done); completes at once if none is
    /// outstanding. Waiters woken by the count reaching zero complete even if
    /// new items are put before they run (as asyncio's event-based `join`).
    pub fn join(&self) -> QueueJoin<'_, T, K> {
        QueueJoin {
            queue: &self.inner,
            node: None,
            done: false,
        }
    }

    /// A [`Stream`](futures_core::Stream) of the items, got one by one as by [`get`](Self::get)
    /// (FIFO among getters, sharing the queue with them).
    ///
    /// The stream ends (yields `None`) once the queue is shut down and empty,
    /// where `get` would fail with [`QueueShutDown`]. Dropping the stream
    /// while it waits behaves like dropping a `get` future.
    pub fn stream(&self) -> QueueStream<T, K> {
        QueueStream {
            queue: self.clone(),
            state: GetState::Init,
            ended: false,
        }
    }

    /// Shut the queue down (Python 3.13's `Queue.shutdown`).
    ///
    /// Afterwards every put (`put`, `put_nowait`) fails with
    /// [`QueueShutDown`], and so does every get once the queue is empty.
    /// Blocked putters are woken and fail; blocked getters are woken and
    /// fail unless an unreserved item is left for them.
    ///
    /// With `immediate`, the queue is also emptied at once (the items are
    /// dropped), so every get fails from now on, and the unfinished-task
    /// count drops by the number of items removed, so [`join`](Self::join)
    /// returns once the items already taken are marked done. Idempotent;
    /// there is no way back.
    pub fn shutdown(&self, immediate: bool) {
        let mut wakers = Vec::new();
        let mut drained = Vec::new();
        {
            let mut st = self.inner.state.borrow_mut();
            st.shutdown = true;
            if immediate {
                while let Some(item) = K::pop(&mut st.buf) {
                    drained.push(item);
                }
                st.get_reserved = 0;
                st.unfinished = st.unfinished.saturating_sub(drained.len());
                if st.unfinished == 0 {
                    while let Some(node) = st.joiners.pop_waiting() {
                        wakers.extend(node.notify());
                    }
                }
            }
            st.getters.wake_waiting(&mut wakers);
            st.putters.wake_waiting(&mut wakers);
        }
        wake_all(wakers);
        // The items are dropped outside the borrow (their `Drop` may use the queue).
        drop(drained);
    }

    /// Whether [`shutdown`](Self::shutdown) was called.
    pub fn is_shut_down(&self) -> bool {
        self.inner.state.borrow().shutdown
    }
}

impl<T, K: Discipline<T>> Clone for GenericQueue<T, K> {
    fn clone(&self) -> Self {
        GenericQueue {
            inner: Rc::clone(&self.inner),
        }
    }
}

impl<T, K: Discipline<T>> Default for GenericQueue<T, K> {
    /// An unbounded queue.
    fn default() -> Self {
        Self::new(0)
    }
}

impl<T, K: Discipline<T>> fmt::Debug for GenericQueue<T, K> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let st = self.inner.state.borrow();
        f.debug_struct(K::NAME)
            .field("maxsize", &self.inner.maxsize)
            .field("qsize", &st.len())
            .field("getters", &st.getters.waiting())
            .field("putters", &st.putters.waiting())
            .field("unfinished", &st.unfinished)
            .finish()
    }
}
