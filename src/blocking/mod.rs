//! The blocking executor: a bounded pool of threads for blocking work
//! (asyncio's `run_in_executor` / `to_thread`).
//!
//! Threads are started on demand up to `max_threads` (default
//! `min(32, cores + 4)`), exit after `keep_alive` without work, and the loop's
//! `close()` shuts the pool down (queued jobs still run, new ones are
//! refused; like `shutdown(wait=False)`). Results travel back through the
//! awaiting task's `Waker`, i.e. the loop's cross-thread path.

use std::collections::VecDeque;
use std::fmt;
use std::future::Future;
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::pin::Pin;
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::task::{Context, Poll, Waker};
use std::time::Duration;

use crate::task::TaskError;

type Job = Box<dyn FnOnce() + Send>;

#[derive(Clone, Debug)]
pub(crate) struct PoolConfig {
    pub(crate) max_threads: usize,
    pub(crate) keep_alive: Duration,
}

impl Default for PoolConfig {
    fn default() -> Self {
        let cores = std::thread::available_parallelism().map(|n| n.get()).unwrap_or(1);
        PoolConfig {
            max_threads: (cores + 4).min(32),
            keep_alive: Duration::from_secs(10),
        }
    }
}

struct PoolState {
    jobs: VecDeque<Job>,
    threads: usize,
    idle: usize,
    shutdown: bool,
}

struct PoolInner {
    state: Mutex<PoolState>,
    cond: Condvar,
    cfg: PoolConfig,
}

impl PoolInner {
    fn lock(&self) -> MutexGuard<'_, PoolState> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }
}

pub(crate) struct BlockingPool {
    inner: Arc<PoolInner>,
}

impl BlockingPool {
    pub(crate) fn new(cfg: PoolConfig) -> BlockingPool {
        BlockingPool {
            inner: Arc::new(PoolInner {
                state: Mutex::new(PoolState {
                    jobs: VecDeque::new(),
                    threads: 0,
                    idle: 0,
                    shutdown: false,
                }),
                cond: Condvar::new(),
                cfg,
            }),
        }
    }

    pub(crate) fn threads(&self) -> usize {
        self.inner.lock().threads
    }

    pub(crate) fn shutdown(&self) {
        self.inner.lock().shutdown = true;
        self.inner.cond.notify_all();
    }

    /// Queues `f`; `None` after shutdown or when no thread can be started.
    pub(crate) fn spawn<T, F>(&self, f: F) -> Option<BlockingTask<T>>
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
        let mut st = self.inner.lock();
        if st.shutdown {
            return None;
        }
        st.jobs.push_back(job);
        if st.jobs.len() > st.idle && st.threads < self.inner.cfg.max_threads {
            st.threads += 1;
            let inner = self.inner.clone();
            let spawned = std::thread::Builder::new()
                .name("ringloop-blocking".into())
                .spawn(move || worker(inner));
            if spawned.is_err() {
                st.threads -= 1;
                if st.threads == 0 {
                    st.jobs.pop_back();
                    return None;
                }
            }
        } else {
            self.inner.cond.notify_one();
        }
        drop(st);
        Some(BlockingTask { slot })
    }
}

fn worker(inner: Arc<PoolInner>) {
    let mut st = inner.lock();
    loop {
        if let Some(job) = st.jobs.pop_front() {
            drop(st);
            job();
            st = inner.lock();
            continue;
        }
        if st.shutdown {
            break;
        }
        st.idle += 1;
        let (guard, res) = inner
            .cond
            .wait_timeout(st, inner.cfg.keep_alive)
            .unwrap_or_else(|e| e.into_inner());
        st = guard;
        st.idle -= 1;
        if res.timed_out() && st.jobs.is_empty() {
            break;
        }
    }
    st.threads -= 1;
}

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
                Poll::Pending
            }
        }
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
