//! `LoopHandle`: the `Send + Sync` handle other threads use to schedule
//! callbacks on a loop, stop it, or spawn tasks on it (`RemoteTask`).

use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll, Waker};

use super::LoopError;
use super::shared::{Remote, Shared};
use crate::task::TaskError;

/// A `Send + Sync + Clone` handle to a loop, for other threads
/// (asyncio's `call_soon_threadsafe`, `run_coroutine_threadsafe`).
#[derive(Clone)]
pub struct LoopHandle {
    shared: Arc<Shared>,
}

impl fmt::Debug for LoopHandle {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("LoopHandle").field("closed", &self.is_closed()).finish()
    }
}

impl LoopHandle {
    pub(crate) fn new(shared: Arc<Shared>) -> LoopHandle {
        LoopHandle { shared }
    }

    /// Whether the loop was closed.
    pub fn is_closed(&self) -> bool {
        self.shared.closed.load(Ordering::Acquire)
    }

    /// Schedules `f` on the loop from any thread; a sleeping loop wakes at once.
    pub fn call_soon_threadsafe(&self, f: impl FnOnce() + Send + 'static) -> Result<(), LoopError> {
        self.shared
            .push(Remote::Call(Box::new(f)))
            .map_err(|_| LoopError::Closed)
    }

    /// Stops the loop from any thread (like `call_soon_threadsafe(loop.stop)`).
    pub fn stop(&self) -> Result<(), LoopError> {
        self.shared.push(Remote::Stop).map_err(|_| LoopError::Closed)
    }

    /// Spawns a `Send` future on the loop from any thread. The returned
    /// [`RemoteTask`] is `Send` and resolves to the task's result.
    #[track_caller]
    pub fn spawn<F>(&self, fut: F) -> Result<RemoteTask<F::Output>, LoopError>
    where
        F: Future + Send + 'static,
        F::Output: Send + 'static,
    {
        let state = Arc::new(Mutex::new(RemoteState {
            result: None,
            waker: None,
        }));
        let completer = Completer { state: state.clone() };
        let at = std::panic::Location::caller();
        self.call_soon_threadsafe(move || {
            let task = match super::tasks::try_spawn_at(fut, at) {
                Ok(t) => t,
                Err(e) => panic!("ringloop::LoopHandle::spawn: {e}"),
            };
            super::spawn(async move {
                let r = task.await;
                completer.complete(r);
            })
            .detach();
        })?;
        Ok(RemoteTask { state })
    }
}

struct RemoteState<T> {
    result: Option<Result<T, TaskError>>,
    waker: Option<Waker>,
}

struct Completer<T> {
    state: Arc<Mutex<RemoteState<T>>>,
}

impl<T> Completer<T> {
    fn complete(&self, r: Result<T, TaskError>) {
        let waker = {
            let mut s = self.state.lock().unwrap_or_else(|e| e.into_inner());
            if s.result.is_none() {
                s.result = Some(r);
            }
            s.waker.take()
        };
        if let Some(w) = waker {
            w.wake();
        }
    }
}

impl<T> Drop for Completer<T> {
    fn drop(&mut self) {
        // Dropped without a result: the task (or the loop) went away.
        self.complete(Err(TaskError::Cancelled));
    }
}

/// A task spawned from another thread via [`LoopHandle::spawn`]; `Send`.
/// Await it from any executor, or call [`RemoteTask::join`] to block.
pub struct RemoteTask<T> {
    state: Arc<Mutex<RemoteState<T>>>,
}

impl<T> fmt::Debug for RemoteTask<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RemoteTask").finish_non_exhaustive()
    }
}

impl<T> RemoteTask<T> {
    /// Blocks the calling thread until the task finishes.
    pub fn join(self) -> Result<T, TaskError> {
        struct ThreadWaker(std::thread::Thread);
        impl std::task::Wake for ThreadWaker {
            fn wake(self: Arc<Self>) {
                self.0.unpark();
            }
        }
        let waker = Waker::from(Arc::new(ThreadWaker(std::thread::current())));
        let mut cx = Context::from_waker(&waker);
        let mut me = self;
        loop {
            if let Poll::Ready(r) = Pin::new(&mut me).poll(&mut cx) {
                return r;
            }
            std::thread::park();
        }
    }
}

impl<T> Future for RemoteTask<T> {
    type Output = Result<T, TaskError>;
    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let mut s = self.state.lock().unwrap_or_else(|e| e.into_inner());
        match s.result.take() {
            Some(r) => Poll::Ready(r),
            None => {
                s.waker = Some(cx.waker().clone());
                Poll::Pending
            }
        }
    }
}
