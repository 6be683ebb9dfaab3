//! The futures and the stream of a queue: put, get, join.

use std::fmt;
use std::future::Future;
use std::mem;
use std::pin::Pin;
use std::rc::Rc;
use std::task::{Context, Poll};

use futures_core::Stream;
use futures_core::stream::FusedStream;

use super::super::error::{QueueShutDown, TryPutError};
use super::super::wait_list::{Waiter, wake_all};
use super::{Discipline, GenericQueue, GetState, PutState, QueueInner};

/// Future returned by [`GenericQueue::put`].
///
/// Polling it again after it has completed returns `Pending`.
#[must_use = "futures do nothing unless polled"]
pub struct QueuePut<'a, T, K: Discipline<T>> {
    pub(super) queue: &'a QueueInner<T, K>,
    pub(super) state: PutState<T>,
}

// The item is never pinned: it is only moved in and out by value.
impl<T, K: Discipline<T>> Unpin for QueuePut<'_, T, K> {}

impl<T, K: Discipline<T>> Future for QueuePut<'_, T, K> {
    type Output = Result<(), QueueShutDown<T>>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let this = self.get_mut();
        let queue = this.queue;
        match mem::replace(&mut this.state, PutState::Done) {
            PutState::Init(item) => match queue.try_put(item) {
                Ok(()) => Poll::Ready(Ok(())),
                Err(TryPutError::ShutDown(e)) => Poll::Ready(Err(e)),
                Err(TryPutError::Full(e)) => {
                    let node = queue.state.borrow_mut().putters.push(Some(cx.waker()));
                    this.state = PutState::Waiting(node, e.into_inner());
                    Poll::Pending
                }
            },
            PutState::Waiting(node, item) => {
                if queue.state.borrow().shutdown {
                    // Woken by `shutdown` (or shut down after a slot was
                    // reserved for us): give the slot back and fail.
                    let mut st = queue.state.borrow_mut();
                    if node.is_notified() {
                        st.put_reserved = st.put_reserved.saturating_sub(1);
                        drop(st);
                    } else {
                        let stale = st.putters.cancel(&node);
                        drop(st);
                        drop(stale);
                    }
                    return Poll::Ready(Err(QueueShutDown::new(item)));
                }
                if !node.is_notified() {
                    node.set_waker(cx.waker());
                    this.state = PutState::Waiting(node, item);
                    return Poll::Pending;
                }
                let mut wakers = Vec::new();
                {
                    let mut st = queue.state.borrow_mut();
                    st.put_reserved = st.put_reserved.saturating_sub(1);
                    st.push(item, &mut wakers);
                }
                wake_all(wakers);
                Poll::Ready(Ok(()))
            }
            PutState::Done => Poll::Pending,
        }
    }
}

impl<T, K: Discipline<T>> Drop for QueuePut<'_, T, K> {
    fn drop(&mut self) {
        let PutState::Waiting(node, item) = mem::replace(&mut self.state, PutState::Done) else {
            return;
        };
        if node.is_notified() {
            // Woken, then cancelled: pass the reserved slot on.
            let mut wakers = Vec::new();
            {
                let mut st = self.queue.state.borrow_mut();
                st.put_reserved = st.put_reserved.saturating_sub(1);
                st.wake_putters(self.queue.maxsize, &mut wakers);
            }
            wake_all(wakers);
        } else {
            let _stale = self.queue.state.borrow_mut().putters.cancel(&node);
        }
        // The item was never put; it is dropped here, outside any borrow.
        drop(item);
    }
}

impl<T, K: Discipline<T>> fmt::Debug for QueuePut<'_, T, K> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("QueuePut").finish_non_exhaustive()
    }
}

/// Future returned by [`GenericQueue::get`].
///
/// Polling it again after it has completed returns `Pending`.
#[must_use = "futures do nothing unless polled"]
pub struct QueueGet<'a, T, K: Discipline<T>> {
    pub(super) queue: &'a QueueInner<T, K>,
    pub(super) state: GetState,
}

impl<T, K: Discipline<T>> Future for QueueGet<'_, T, K> {
    type Output = Result<T, QueueShutDown>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let this = self.get_mut();
        this.queue.poll_get(&mut this.state, cx)
    }
}

impl<T, K: Discipline<T>> Drop for QueueGet<'_, T, K> {
    fn drop(&mut self) {
        self.queue.drop_get(&mut self.state);
    }
}

impl<T, K: Discipline<T>> fmt::Debug for QueueGet<'_, T, K> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("QueueGet").finish_non_exhaustive()
    }
}

/// Future returned by [`GenericQueue::join`].
///
/// Polling it again after it has completed returns `Ready` again.
#[must_use = "futures do nothing unless polled"]
pub struct QueueJoin<'a, T, K: Discipline<T>> {
    pub(super) queue: &'a QueueInner<T, K>,
    pub(super) node: Option<Rc<Waiter>>,
    pub(super) done: bool,
}

impl<T, K: Discipline<T>> Future for QueueJoin<'_, T, K> {
    type Output = ();

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<()> {
        let this = self.get_mut();
        if this.done {
            return Poll::Ready(());
        }
        match &this.node {
            None => {
                let mut st = this.queue.state.borrow_mut();
                if st.unfinished == 0 {
                    this.done = true;
                    return Poll::Ready(());
                }
                this.node = Some(st.joiners.push(Some(cx.waker())));
                Poll::Pending
            }
            Some(node) if node.is_notified() => {
                this.node = None;
                this.done = true;
                Poll::Ready(())
            }
            Some(node) => {
                node.set_waker(cx.waker());
                Poll::Pending
            }
        }
    }
}

impl<T, K: Discipline<T>> Drop for QueueJoin<'_, T, K> {
    fn drop(&mut self) {
        // A notified joiner has nothing to pass on: everyone is woken.
        if let Some(node) = self.node.take() {
            let _stale = self.queue.state.borrow_mut().joiners.cancel(&node);
        }
    }
}

impl<T, K: Discipline<T>> fmt::Debug for QueueJoin<'_, T, K> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("QueueJoin").finish_non_exhaustive()
    }
}

/// A [`Stream`] of a queue's items, from [`GenericQueue::stream`]; it ends
/// once the queue is shut down and empty. It owns a handle to the queue.
#[must_use = "streams do nothing unless polled"]
pub struct QueueStream<T, K: Discipline<T>> {
    pub(super) queue: GenericQueue<T, K>,
    pub(super) state: GetState,
    pub(super) ended: bool,
}

impl<T, K: Discipline<T>> QueueStream<T, K> {
    /// The queue this stream takes items from.
    pub fn queue(&self) -> &GenericQueue<T, K> {
        &self.queue
    }
}

impl<T, K: Discipline<T>> Stream for QueueStream<T, K> {
    type Item = T;

    fn poll_next(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<T>> {
        let this = self.get_mut();
        if this.ended {
            return Poll::Ready(None);
        }
        if matches!(this.state, GetState::Done) {
            this.state = GetState::Init;
        }
        match this.queue.inner.poll_get(&mut this.state, cx) {
            Poll::Ready(Ok(item)) => Poll::Ready(Some(item)),
            Poll::Ready(Err(_)) => {
                this.ended = true;
                Poll::Ready(None)
            }
            Poll::Pending => Poll::Pending,
        }
    }
}

impl<T, K: Discipline<T>> FusedStream for QueueStream<T, K> {
    /// `true` once the stream has ended (the queue was shut down and emptied).
    fn is_terminated(&self) -> bool {
        self.ended
    }
}

impl<T, K: Discipline<T>> Drop for QueueStream<T, K> {
    fn drop(&mut self) {
        self.queue.inner.drop_get(&mut self.state);
    }
}

impl<T, K: Discipline<T>> fmt::Debug for QueueStream<T, K> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("QueueStream")
            .field("queue", &self.queue)
            .finish_non_exhaustive()
    }
}
