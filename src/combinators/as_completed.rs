//! `as_completed`: asyncio's `asyncio.as_completed`, as a `Stream`.

use std::collections::VecDeque;
use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, Mutex, MutexGuard};
use std::task::{Context, Poll, Wake, Waker};
use std::time::Duration;

use futures_core::Stream;
use futures_core::stream::FusedStream;

use crate::time::{Elapsed, Timeout};

/// Which futures were woken, in wake order (shared with their wakers, which
/// may be woken from any thread).
struct ReadySet {
    state: Mutex<ReadyState>,
}

struct ReadyState {
    queue: VecDeque<usize>,
    queued: Vec<bool>,
    waker: Option<Waker>,
}

impl ReadySet {
    fn lock(&self) -> MutexGuard<'_, ReadyState> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }
}

/// The waker of one future: marks it ready and wakes the stream's task.
struct IndexWaker {
    index: usize,
    set: Arc<ReadySet>,
}

impl Wake for IndexWaker {
    fn wake(self: Arc<Self>) {
        self.wake_by_ref()
    }
    fn wake_by_ref(self: &Arc<Self>) {
        let waker = {
            let mut st = self.set.lock();
            if !st.queued[self.index] {
                st.queued[self.index] = true;
                st.queue.push_back(self.index);
            }
            st.waker.clone()
        };
        if let Some(w) = waker {
            w.wake();
        }
    }
}

/// Yields the outputs of `futs` in the order they complete (asyncio's
/// `asyncio.as_completed`), as a [`Stream`] that ends after the last one.
///
/// The futures are polled only by the stream, each only when its own waker
/// fired, so a task's result comes out as soon as the stream sees the task
/// finish; tasks that finish in the same loop iteration come out in
/// completion order. Pass [`Task`](crate::Task)s (or other `Unpin`
/// futures: `Box::pin` the rest) to have them run concurrently on their own.
/// Nothing is cancelled when the stream is dropped early: tasks detach, and
/// [`AsCompleted::into_remaining`] gives back what did not finish. Use
/// [`AsCompleted::timeout`] for asyncio's `timeout=`.
///
/// ```
/// use ringloop::{as_completed, sleep, spawn};
/// use std::time::Duration;
/// # let lp = ringloop::EventLoop::new().unwrap();
/// lp.run_until_complete(async {
///     let tasks = [30u64, 10, 20].map(|ms| {
///         spawn(async move {
///             sleep(Duration::from_millis(ms)).await;
///             ms
///         })
///     });
///     let mut done = as_completed(tasks);
///     let mut order = Vec::new();
///     while let Some(r) = done.next().await {
///         order.push(r.unwrap());
///     }
///     assert_eq!(order, [10, 20, 30]);
/// })
/// .unwrap();
/// ```
pub fn as_completed<I>(futs: I) -> AsCompleted<I::Item>
where
    I: IntoIterator,
    I::Item: Future + Unpin,
{
    let futs: Vec<Option<I::Item>> = futs.into_iter().map(Some).collect();
    let n = futs.len();
    let set = Arc::new(ReadySet {
        state: Mutex::new(ReadyState {
            // Every future needs its first poll.
            queue: (0..n).collect(),
            queued: vec![true; n],
            waker: None,
        }),
    });
    let wakers = (0..n)
        .map(|index| {
            Waker::from(Arc::new(IndexWaker {
                index,
                set: set.clone(),
            }))
        })
        .collect();
    AsCompleted {
        futs,
        wakers,
        set,
        remaining: n,
    }
}

/// Stream returned by [`as_completed`].
pub struct AsCompleted<F> {
    futs: Vec<Option<F>>,
    wakers: Vec<Waker>,
    set: Arc<ReadySet>,
    remaining: usize,
}

impl<F: Future + Unpin> AsCompleted<F> {
    /// The next output in completion order; `None` once all are out.
    pub async fn next(&mut self) -> Option<F::Output> {
        std::future::poll_fn(|cx| Pin::new(&mut *self).poll_next(cx)).await
    }

    /// How many futures have not produced their output yet.
    pub fn remaining(&self) -> usize {
        self.remaining
    }

    /// The futures that have not completed yet, in input order (nothing is
    /// cancelled).
    pub fn into_remaining(self) -> Vec<F> {
        self.futs.into_iter().flatten().collect()
    }

    /// Gives up `duration` from now (asyncio's `timeout=`): the stream then
    /// yields one `Err(Elapsed)` and ends. The unfinished futures are not
    /// cancelled; get them back with [`AsCompletedTimeout::into_remaining`].
    pub fn timeout(self, duration: Duration) -> AsCompletedTimeout<F> {
        AsCompletedTimeout {
            inner: self,
            deadline: Some(crate::time::timeout(duration, std::future::pending())),
        }
    }
}

impl<F: Future + Unpin> Stream for AsCompleted<F> {
    type Item = F::Output;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<F::Output>> {
        let this = &mut *self;
        if this.remaining == 0 {
            return Poll::Ready(None);
        }
        let budget = {
            let mut st = this.set.lock();
            match &st.waker {
                Some(w) if w.will_wake(cx.waker()) => {}
                _ => st.waker = Some(cx.waker().clone()),
            }
            st.queue.len()
        };
        // Poll at most what was ready on entry, so a future that keeps
        // waking itself cannot make this loop spin.
        for _ in 0..budget {
            let index = {
                let mut st = this.set.lock();
                let Some(i) = st.queue.pop_front() else { break };
                st.queued[i] = false;
                i
            };
            let Some(fut) = this.futs[index].as_mut() else { continue };
            let mut fcx = Context::from_waker(&this.wakers[index]);
            if let Poll::Ready(out) = Pin::new(fut).poll(&mut fcx) {
                this.futs[index] = None;
                this.remaining -= 1;
                return Poll::Ready(Some(out));
            }
        }
        if !this.set.lock().queue.is_empty() {
            cx.waker().wake_by_ref();
        }
        Poll::Pending
    }

    fn size_hint(&self) -> (usize, Option<usize>) {
        (self.remaining, Some(self.remaining))
    }
}

impl<F: Future + Unpin> FusedStream for AsCompleted<F> {
    fn is_terminated(&self) -> bool {
        self.remaining == 0
    }
}

impl<F> fmt::Debug for AsCompleted<F> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("AsCompleted")
            .field("remaining", &self.remaining)
            .finish_non_exhaustive()
    }
}

/// Stream returned by [`AsCompleted::timeout`]: `Ok(output)` in completion
/// order, then, if the deadline passes first, one `Err(Elapsed)` and the end.
pub struct AsCompletedTimeout<F> {
    inner: AsCompleted<F>,
    /// `None` once the deadline passed.
    deadline: Option<Timeout<std::future::Pending<()>>>,
}

impl<F: Future + Unpin> AsCompletedTimeout<F> {
    /// The next output in completion order (see [`AsCompletedTimeout`]).
    pub async fn next(&mut self) -> Option<Result<F::Output, Elapsed>> {
        std::future::poll_fn(|cx| Pin::new(&mut *self).poll_next(cx)).await
    }

    /// How many futures have not produced their output yet.
    pub fn remaining(&self) -> usize {
        self.inner.remaining
    }

    /// The futures that have not completed yet, in input order (nothing is
    /// cancelled).
    pub fn into_remaining(self) -> Vec<F> {
        self.inner.into_remaining()
    }
}

impl<F: Future + Unpin> Stream for AsCompletedTimeout<F> {
    type Item = Result<F::Output, Elapsed>;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        let this = &mut *self;
        let Some(deadline) = this.deadline.as_mut() else {
            return Poll::Ready(None);
        };
        // Outputs that are ready win over the deadline.
        match Pin::new(&mut this.inner).poll_next(cx) {
            Poll::Ready(Some(out)) => return Poll::Ready(Some(Ok(out))),
            Poll::Ready(None) => {
                this.deadline = None;
                return Poll::Ready(None);
            }
            Poll::Pending => {}
        }
        // `Timeout` is `Unpin` here: its inner future is `Pending<()>`.
        match Pin::new(deadline).poll(cx) {
            Poll::Ready(r) => {
                this.deadline = None;
                Poll::Ready(r.err().map(Err))
            }
            Poll::Pending => Poll::Pending,
        }
    }
}

impl<F: Future + Unpin> FusedStream for AsCompletedTimeout<F> {
    fn is_terminated(&self) -> bool {
        self.deadline.is_none()
    }
}

impl<F> fmt::Debug for AsCompletedTimeout<F> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("AsCompletedTimeout")
            .field("remaining", &self.inner.remaining)
            .field("expired", &self.deadline.is_none())
            .finish()
    }
}
