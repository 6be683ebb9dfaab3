//! Blocking work off the loop (asyncio's `run_in_executor` / `to_thread`):
//! `BlockingTask`, the future of a job's result, and the API that queues
//! jobs on the loop's thread pool (`crate::thread_pool`, a leaf the loop
//! owns). Results travel back through the awaiting task's `Waker`, i.e. the
//! loop's cross-thread path.

use std::fmt;
use std::future::Future;
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll, Waker};

use crate::runtime::{EventLoop, LoopError};
use crate::task::TaskError;
use crate::thread_pool::{BlockingPool, Job};

struct Slot<T> {
    result: Option<Result<T, TaskError>>,
    waker: Option<Waker>,
}

/// The result of a blocking job (see [`EventLoop::run_in_executor`](crate::EventLoop::run_in_executor));
/// resolves to `Err(TaskError::Panicked)` if the job panicked. Dropping it
/// does not stop the job (a thread cannot be interrupted); its result is dropped.
pub struct BlockingTask<T> {
    slot: Arc<Mutex<Slot<T>>>,
}

impl<T> fmt::Debug for BlockingTask<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("BlockingTask").finish_non_exhaustive()
    }
}

impl<T> Future for BlockingTask<T> {
    type Output = Result<T, TaskError>;
    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let mut s = self.slot.lock().unwrap_or_else(|e| e.into_inner());
        match s.result.take() {
            Some(r) => Poll::Ready(r),
            None => {
                match &s.waker {
                    Some(w) if w.will_wake(cx.waker()) => {}
                    _ => s.waker = Some(cx.waker().clone()),
                }
                crate::debug::note_wait(|| "blocking job");
                Poll::Pending
            }
        }
    }
}

/// Queues `f` on `pool`; `None` after shutdown or when no thread can be started.
fn spawn_on<T, F>(pool: &BlockingPool, f: F) -> Option<BlockingTask<T>>
where
    T: Send + 'static,
    F: FnOnce() -> T + Send + 'static,
{
    // The job runs in a copy of the caller's context (asyncio's `to_thread`).
    let f = crate::context::bind_send(f);
    let slot = Arc::new(Mutex::new(Slot {
        result: None,
        waker: None,
    }));
    let out = slot.clone();
    let job: Job = Box::new(move || {
        let r = catch_unwind(AssertUnwindSafe(f)).map_err(TaskError::Panicked);
        let waker = {
            let mut s = out.lock().unwrap_or_else(|e| e.into_inner());
            s.result = Some(r);
            s.waker.take()
        };
        if let Some(w) = waker {
            w.wake();
        }
    });
    pool.submit(job).then_some(BlockingTask { slot })
}

impl EventLoop {
    /// Runs `f` on the loop's blocking thread pool; the result comes back
    /// through the cross-thread path.
    pub fn run_in_executor<T, F>(&self, f: F) -> Result<BlockingTask<T>, LoopError>
    where
        T: Send + 'static,
        F: FnOnce() -> T + Send + 'static,
    {
        self.inner().check_open()?;
        spawn_on(self.inner().blocking_pool(), f).ok_or(LoopError::Closed)
    }
}

/// Runs `f` on the current loop's blocking pool (asyncio's `to_thread`).
///
/// # Panics
///
/// Without an open loop on this thread; use
/// [`EventLoop::run_in_executor`](crate::EventLoop::run_in_executor) for an error instead.
pub fn spawn_blocking<T, F>(f: F) -> BlockingTask<T>
where
    T: Send + 'static,
    F: FnOnce() -> T + Send + 'static,
{
    let lp = crate::runtime::current().expect("ringloop::spawn_blocking: no event loop on this thread");
    match lp.run_in_executor(f) {
        Ok(t) => t,
        Err(e) => panic!("ringloop::spawn_blocking: {e}"),
    }
}
