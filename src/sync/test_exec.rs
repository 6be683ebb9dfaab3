//! A tiny single-threaded executor for the unit tests of this module.
//!
//! It mirrors asyncio's scheduling closely enough to check FIFO orders,
//! no-barging and cancellation hand-off: [`Exec::spawn`] schedules a task's
//! first poll for the next iteration, a wake re-queues the task id (once),
//! and [`Exec::run_once`] polls exactly the tasks that were ready when the
//! iteration began. Cancelling a task drops its future, as ringloop does.

use std::cell::RefCell;
use std::collections::VecDeque;
use std::future::Future;
use std::pin::Pin;
use std::rc::Rc;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll, Wake, Waker};

type LocalFut = Pin<Box<dyn Future<Output = ()>>>;

type ReadyQueue = Arc<Mutex<VecDeque<usize>>>;

struct TaskWaker {
    id: usize,
    ready: ReadyQueue,
}

impl Wake for TaskWaker {
    fn wake(self: Arc<Self>) {
        self.wake_by_ref();
    }

    fn wake_by_ref(self: &Arc<Self>) {
        let mut ready = self.ready.lock().unwrap();
        if !ready.contains(&self.id) {
            ready.push_back(self.id);
        }
    }
}

#[derive(Default)]
struct Slot {
    fut: Option<LocalFut>,
    running: bool,
    cancel_requested: bool,
    done: bool,
}

#[derive(Default)]
struct ExecInner {
    tasks: RefCell<Vec<Slot>>,
    ready: ReadyQueue,
}

/// Test executor handle; clones share the executor.
#[derive(Clone, Default)]
pub(crate) struct Exec {
    inner: Rc<ExecInner>,
}

impl Exec {
    pub(crate) fn new() -> Self {
        Self::default()
    }

    /// Spawn `fut`; its first poll happens in the next iteration.
    pub(crate) fn spawn(&self, fut: impl Future<Output = ()> + 'static) -> usize {
        let mut tasks = self.inner.tasks.borrow_mut();
        let id = tasks.len();
        tasks.push(Slot {
            fut: Some(Box::pin(fut)),
            ..Slot::default()
        });
        self.inner.ready.lock().unwrap().push_back(id);
        id
    }

    /// Cancel task `id` by dropping its future (after its current poll, if
    /// it is the running task). Returns false if it already finished.
    pub(crate) fn cancel(&self, id: usize) -> bool {
        let fut = {
            let mut tasks = self.inner.tasks.borrow_mut();
            let slot = &mut tasks[id];
            if slot.done {
                return false;
            }
            slot.done = true;
            if slot.running {
                slot.cancel_requested = true;
            }
            slot.fut.take()
        };
        drop(fut);
        true
    }

    /// One iteration: poll exactly the tasks that were ready when it began.
    /// Returns how many were polled.
    pub(crate) fn run_once(&self) -> usize {
        let batch: Vec<usize> = self.inner.ready.lock().unwrap().drain(..).collect();
        let mut polled = 0;
        for id in batch {
            let fut = {
                let mut tasks = self.inner.tasks.borrow_mut();
                let slot = &mut tasks[id];
                if slot.done {
                    continue;
                }
                slot.running = true;
                slot.fut.take()
            };
            let Some(mut fut) = fut else { continue };
            polled += 1;
            let waker = Waker::from(Arc::new(TaskWaker {
                id,
                ready: Arc::clone(&self.inner.ready),
            }));
            let mut cx = Context::from_waker(&waker);
            let result = fut.as_mut().poll(&mut cx);
            let keep = {
                let mut tasks = self.inner.tasks.borrow_mut();
                let slot = &mut tasks[id];
                slot.running = false;
                if result.is_ready() {
                    slot.done = true;
                }
                !slot.done && !slot.cancel_requested
            };
            if keep {
                self.inner.tasks.borrow_mut()[id].fut = Some(fut);
            } else {
                // Dropped outside the borrow: drops may touch primitives.
                drop(fut);
            }
        }
        polled
    }

    /// Run iterations until no task is ready; returns how many ran.
    pub(crate) fn run_until_stalled(&self) -> usize {
        let mut iterations = 0;
        while !self.inner.ready.lock().unwrap().is_empty() {
            self.run_once();
            iterations += 1;
            assert!(iterations < 100_000, "test executor livelock");
        }
        iterations
    }
}

/// Yield to the executor once (asyncio's `sleep(0)`).
pub(crate) fn yield_now() -> impl Future<Output = ()> {
    let mut yielded = false;
    std::future::poll_fn(move |cx| {
        if yielded {
            Poll::Ready(())
        } else {
            yielded = true;
            cx.waker().wake_by_ref();
            Poll::Pending
        }
    })
}

/// Poll `fut` once with a no-op waker.
pub(crate) fn poll_once<F: Future + Unpin>(fut: &mut F) -> Poll<F::Output> {
    let mut cx = Context::from_waker(Waker::noop());
    Pin::new(fut).poll(&mut cx)
}

/// A shared, append-only log for recording orders.
#[derive(Clone, Default)]
pub(crate) struct Log<T>(Rc<RefCell<Vec<T>>>);

impl<T: Clone> Log<T> {
    pub(crate) fn new() -> Self {
        Log(Rc::new(RefCell::new(Vec::new())))
    }

    pub(crate) fn push(&self, value: T) {
        self.0.borrow_mut().push(value);
    }

    pub(crate) fn get(&self) -> Vec<T> {
        self.0.borrow().clone()
    }
}
