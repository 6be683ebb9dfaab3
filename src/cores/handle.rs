//! `CoresHandle`: the `Send + Sync` handle to every loop of a running
//! multi-loop runtime (remote spawn, balanced spawn, shutdown).

use std::cell::RefCell;
use std::fmt;
use std::future::Future;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant};

use super::CoresError;
use super::event::{Flag, FlagWait};
use crate::runtime::{LoopHandle, RemoteTask};

pub(super) struct Inner {
    pub(super) loops: Vec<LoopHandle>,
    next: AtomicUsize,
    pub(super) shutdown: Flag,
    pub(super) all_finished: Flag,
    finished: Vec<AtomicBool>,
    finished_count: AtomicUsize,
    pub(super) shutdown_timeout: Duration,
    /// When shutdown was first requested.
    shutdown_at: OnceLock<Instant>,
}

/// A `Send + Sync + Clone` handle to the loops of a running
/// [`cores`](super) runtime. Inside a loop, [`handle()`](super::handle())
/// returns it.
#[derive(Clone)]
pub struct CoresHandle {
    pub(super) inner: Arc<Inner>,
}

impl fmt::Debug for CoresHandle {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("CoresHandle")
            .field("loops", &self.inner.loops.len())
            .field("shutdown", &self.inner.shutdown.is_set())
            .finish()
    }
}

thread_local! {
    static CURRENT: RefCell<Option<(CoresHandle, usize)>> = const { RefCell::new(None) };
}

pub(super) fn set_current(v: Option<(CoresHandle, usize)>) {
    CURRENT.with(|c| *c.borrow_mut() = v);
}

/// The handle of the multi-loop runtime whose loop runs on this thread.
pub fn handle() -> Option<CoresHandle> {
    CURRENT.with(|c| c.borrow().as_ref().map(|(h, _)| h.clone()))
}

/// The index of the runtime's loop running on this thread.
pub fn current_index() -> Option<usize> {
    CURRENT.with(|c| c.borrow().as_ref().map(|(_, i)| *i))
}

impl CoresHandle {
    pub(super) fn new(loops: Vec<LoopHandle>, shutdown_timeout: Duration) -> CoresHandle {
        let n = loops.len();
        CoresHandle {
            inner: Arc::new(Inner {
                loops,
                next: AtomicUsize::new(0),
                shutdown: Flag::default(),
                all_finished: Flag::default(),
                finished: (0..n).map(|_| AtomicBool::new(false)).collect(),
                finished_count: AtomicUsize::new(0),
                shutdown_timeout,
                shutdown_at: OnceLock::new(),
            }),
        }
    }

    /// Number of loops.
    pub fn len(&self) -> usize {
        self.inner.loops.len()
    }

    /// Always false (a runtime has at least one loop).
    pub fn is_empty(&self) -> bool {
        self.inner.loops.is_empty()
    }

    /// The [`LoopHandle`] of loop `index`.
    pub fn loop_handle(&self, index: usize) -> Option<&LoopHandle> {
        self.inner.loops.get(index)
    }

    /// Spawns `fut` on loop `index`; the returned [`RemoteTask`] is `Send`
    /// and awaitable from any loop (or joined from any thread). Refused
    /// once shutdown was requested.
    pub fn spawn_on<F>(&self, index: usize, fut: F) -> Result<RemoteTask<F::Output>, CoresError>
    where
        F: Future + Send + 'static,
        F::Output: Send + 'static,
    {
        if self.inner.shutdown.is_set() {
            return Err(CoresError::ShuttingDown);
        }
        let lp = self.inner.loops.get(index).ok_or(CoresError::NoSuchLoop {
            index,
            count: self.len(),
        })?;
        lp.spawn(fut).map_err(|error| CoresError::Loop { index, error })
    }

    /// Spawns `fut` on the next loop in round-robin order.
    pub fn spawn_balanced<F>(&self, fut: F) -> Result<RemoteTask<F::Output>, CoresError>
    where
        F: Future + Send + 'static,
        F::Output: Send + 'static,
    {
        let i = self.inner.next.fetch_add(1, Ordering::Relaxed) % self.len();
        self.spawn_on(i, fut)
    }

    /// Requests a graceful shutdown: [`spawn_on`](Self::spawn_on) refuses
    /// new work, [`shutdown_requested`](Self::shutdown_requested) resolves
    /// on every loop (so servers stop accepting and wind down), each
    /// loop's main future still running at the deadline (the request +
    /// the runtime's shutdown timeout) is dropped, and once every main
    /// future is done each loop lets its other tasks finish until that
    /// deadline before it closes (dropping what is left). Idempotent.
    pub fn shutdown(&self) {
        self.inner.shutdown_at.get_or_init(Instant::now);
        self.inner.shutdown.set();
    }

    /// Shutdown request time + the runtime's shutdown timeout (`None`
    /// before a request).
    pub(super) fn shutdown_deadline(&self) -> Option<Instant> {
        let at = *self.inner.shutdown_at.get()?;
        Some(
            at.checked_add(self.inner.shutdown_timeout)
                .unwrap_or(at + Duration::from_secs(86_400 * 365)),
        )
    }

    /// Whether shutdown was requested.
    pub fn is_shutting_down(&self) -> bool {
        self.inner.shutdown.is_set()
    }

    /// Resolves once shutdown is requested (from any thread or loop).
    pub async fn shutdown_requested(&self) {
        FlagWait::new(&self.inner.shutdown).await
    }

    /// Records that loop `index`'s main future is done (once per loop).
    pub(super) fn mark_finished(&self, index: usize) {
        if !self.inner.finished[index].swap(true, Ordering::AcqRel)
            && self.inner.finished_count.fetch_add(1, Ordering::AcqRel) + 1 == self.len()
        {
            self.inner.all_finished.set();
        }
    }
}
