//! `shield`: asyncio's `asyncio.shield`.

use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};

use crate::task::{CancelOnDrop, Task, TaskError};

/// Protects a task from the cancellation of whoever awaits it (asyncio's
/// `asyncio.shield`).
///
/// Awaiting the returned [`Shield`] gives the task's result. If the awaiting
/// task is cancelled (or the `Shield` is dropped for any reason), the inner
/// task is **not** cancelled: it keeps running, detached, and finishes on
/// its own. A [`CancelOnDrop`] handle is accepted too and loses its
/// cancel-on-drop behaviour, which is what makes `shield` useful in
/// ringloop: a plain [`Task`] handle already detaches when dropped, but
/// gathers, task groups and `cancel_on_drop` handles propagate
/// cancellation, and `shield` stops that. If the inner task itself is
/// cancelled, awaiting the shield gives `Err(TaskError::Cancelled)`, as in
/// asyncio. To shield a plain future, spawn it first:
/// `shield(ringloop::spawn(fut))`.
///
/// ```
/// # let lp = ringloop::EventLoop::new().unwrap();
/// lp.run_until_complete(async {
///     let inner = ringloop::spawn(async { 7 }).cancel_on_drop();
///     let outer = ringloop::spawn(ringloop::shield(inner));
///     outer.cancel(); // drops the shield, not the inner task
///     assert!(outer.await.unwrap_err().is_cancelled());
/// })
/// .unwrap();
/// ```
pub fn shield<T: 'static>(task: impl Into<Task<T>>) -> Shield<T> {
    Shield { task: task.into() }
}

impl<T: 'static> From<CancelOnDrop<T>> for Task<T> {
    /// The plain (detaching) handle, as [`CancelOnDrop::into_inner`].
    fn from(t: CancelOnDrop<T>) -> Task<T> {
        t.into_inner()
    }
}

/// Future returned by [`shield`]; resolves to the inner task's result.
/// Dropping it leaves the inner task running.
pub struct Shield<T: 'static> {
    task: Task<T>,
}

impl<T: 'static> Shield<T> {
    /// The shielded task.
    pub fn task(&self) -> &Task<T> {
        &self.task
    }

    /// Gives back the task handle.
    pub fn into_inner(self) -> Task<T> {
        self.task
    }
}

impl<T: 'static> Future for Shield<T> {
    type Output = Result<T, TaskError>;
    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        Pin::new(&mut self.task).poll(cx)
    }
}

impl<T: 'static> fmt::Debug for Shield<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Shield").field("task", &self.task).finish()
    }
}
