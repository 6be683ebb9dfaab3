//! The thread-safe part of a loop: the cross-thread queue and wake-up.
//!
//! Protocol (no lost wake-ups, no syscall while the loop is awake):
//! the loop stores `sleeping = true` (SeqCst) and then checks `has_remote`
//! before blocking; a remote thread pushes under the mutex, stores
//! `has_remote = true` (SeqCst) and then notifies the driver only if it swaps
//! `sleeping` from true to false. Whichever store comes first in the SeqCst
//! order, either the loop sees the item or the remote sees the sleeper.

use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::task::{Context, Poll, Waker};

use super::LoopError;
use crate::driver::Notify;
use crate::task::TaskError;

pub(crate) enum Remote {
    Wake { key: usize, id: u64 },
    Call(Box<dyn FnOnce() + Send>),
    Stop,
}

/// Source of loop ids: process-wide and never reused, unlike an address.
static NEXT_LOOP_ID: AtomicU64 = AtomicU64::new(1);

pub(crate) struct Shared {
    /// The loop's identity (see `LoopInner::id`).
    pub(crate) id: u64,
    queue: Mutex<Vec<Remote>>,
    has_remote: AtomicBool,
    pub(crate) sleeping: AtomicBool,
    closed: AtomicBool,
    notifier: Arc<dyn Notify>,
}

impl Shared {
    pub(crate) fn new(notifier: Arc<dyn Notify>) -> Shared {
        Shared {
            id: NEXT_LOOP_ID.fetch_add(1, Ordering::Relaxed),
            queue: Mutex::new(Vec::new()),
            has_remote: AtomicBool::new(false),
            sleeping: AtomicBool::new(false),
            closed: AtomicBool::new(false),
            notifier,
        }
    }

    fn lock(&self) -> MutexGuard<'_, Vec<Remote>> {
        // A panic while holding this lock cannot leave the Vec inconsistent.
        self.queue.lock().unwrap_or_else(|e| e.into_inner())
    }

    pub(crate) fn has_remote(&self) -> bool {
        self.has_remote.load(Ordering::SeqCst)
    }

    /// Moves every queued item to `out`, keeping the queue's capacity.
    pub(crate) fn drain_into(&self, out: &mut Vec<Remote>) {
        let mut q = self.lock();
        self.has_remote.store(false, Ordering::SeqCst);
        out.append(&mut q);
    }

    pub(crate) fn take_remote(&self) -> Vec<Remote> {
        let mut q = self.lock();
        self.has_remote.store(false, Ordering::SeqCst);
        std::mem::take(&mut *q)
    }

    fn push(&self, r: Remote) {
        {
            let mut q = self.lock();
            q.push(r);
            self.has_remote.store(true, Ordering::SeqCst);
        }
        if self.sleeping.load(Ordering::SeqCst) && self.sleeping.swap(false, Ordering::SeqCst) {
            self.notifier.notify();
        }
    }

    pub(crate) fn push_remote_wake(&self, key: usize, id: u64) {
        if !self.closed.load(Ordering::Acquire) {
            self.push(Remote::Wake { key, id });
        }
    }

    pub(crate) fn close(&self) {
        self.closed.store(true, Ordering::Release);
    }
}

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
        if self.is_closed() {
            return Err(LoopError::Closed);
        }
        self.shared.push(Remote::Call(Box::new(f)));
        Ok(())
    }

    /// Stops the loop from any thread (like `call_soon_threadsafe(loop.stop)`).
    pub fn stop(&self) -> Result<(), LoopError> {
        if self.is_closed() {
            return Err(LoopError::Closed);
        }
        self.shared.push(Remote::Stop);
        Ok(())
    }

    /// Spawns a `Send` future on the loop from any thread. The returned
    /// [`RemoteTask`] is `Send` and resolves to the task's result.
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
        self.call_soon_threadsafe(move || {
            let task = crate::task::spawn(fut);
            crate::task::spawn(async move {
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
