//! The blocking thread pool: a bounded set of threads running boxed jobs
//! (a leaf: it knows nothing of loops or tasks; `blocking` builds the jobs
//! and the futures that await them).
//!
//! Threads are started on demand up to `max_threads` (default
//! `min(32, cores + 4)`), exit after `keep_alive` without work, and
//! `shutdown` (the loop's `close()`) lets queued jobs run but refuses new
//! ones (like `shutdown(wait=False)`).

use std::collections::VecDeque;
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::time::Duration;

pub(crate) type Job = Box<dyn FnOnce() + Send>;

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

    /// `(threads, idle threads, queued jobs)` now.
    pub(crate) fn stats(&self) -> (usize, usize, usize) {
        let st = self.inner.lock();
        (st.threads, st.idle, st.jobs.len())
    }

    pub(crate) fn shutdown(&self) {
        self.inner.lock().shutdown = true;
        self.inner.cond.notify_all();
    }

    /// Queues `job`; false (the job dropped unrun) after shutdown or when
    /// no thread can be started.
    pub(crate) fn submit(&self, job: Job) -> bool {
        let mut st = self.inner.lock();
        if st.shutdown {
            return false;
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
                    return false;
                }
            }
        } else {
            self.inner.cond.notify_one();
        }
        drop(st);
        true
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
