//! `LoopInner`: the loop state shared by the loop, its tasks and handles,
//! and one iteration (`run_once`, asyncio's `_run_once`).

use std::any::Any;
use std::cell::{Cell, RefCell};
use std::collections::VecDeque;
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::rc::{Rc, Weak};
use std::sync::Arc;
use std::task::Waker;
use std::time::{Duration, Instant};

use slab::Slab;

use super::shared::{self, Shared};
use super::tasks::TaskIds;
use super::{CallbackCell, ExceptionContext, ExceptionHandler, ExceptionKind, LoopError, default_exception_handler};
use crate::driver::Driver;
use crate::task::{self, TaskRef};
use crate::thread_pool::BlockingPool;
use crate::timer::{Clock, TimerId, TimerQueue};

/// What a due timer does: run a `call_later`/`call_at` callback, or wake
/// a sleeping future's task.
pub(crate) enum TimerAction {
    Callback(Rc<CallbackCell>),
    Wake(Waker),
}

/// The loop's timers.
pub(crate) type Timers = TimerQueue<TimerAction>;

pub(crate) enum Runnable {
    /// A `call_soon` callback (also a cross-thread one, wrapped when the
    /// cross-thread queue is drained: one pointer keeps entries 16 bytes).
    Callback(Rc<CallbackCell>),
    /// A task step (a local reference: no lookup when it runs).
    Task(TaskRef),
    /// `LoopHandle::stop`, in order with the other cross-thread items.
    Stop,
}

/// Loop state shared (via `Rc`) by the loop, its tasks and handles.
pub(crate) struct LoopInner {
    pub(crate) shared: Arc<Shared>,
    pub(crate) driver: Driver,
    pub(crate) ready: RefCell<VecDeque<Runnable>>,
    pub(crate) timers: RefCell<Timers>,
    pub(crate) clock: Clock,
    /// The pending tasks (a task removes itself when it finishes).
    pub(crate) tasks: RefCell<Slab<TaskRef>>,
    /// The schedule hook every task of this loop points to (`shared`).
    pub(crate) sched_hook: Rc<task::SchedHook>,
    /// This loop's block of task ids.
    pub(crate) task_ids: TaskIds,
    pub(crate) current_task: RefCell<Option<TaskRef>>,
    pub(super) running: Cell<bool>,
    pub(super) stopping: Cell<bool>,
    pub(super) closed: Cell<bool>,
    pub(super) exception_handler: RefCell<Option<ExceptionHandler>>,
    pub(super) debug: Cell<bool>,
    pub(super) slow_callback: Cell<Duration>,
    pub(super) pool: BlockingPool,
    pub(super) iterations: Cell<u64>,
    /// Driver waits that failed in a row (see `driver::MAX_FAILED_WAITS`).
    pub(super) failed_waits: Cell<u32>,
    /// Reused buffer for draining the cross-thread queue (no allocation per drain).
    pub(super) remote_batch: RefCell<Vec<shared::Remote>>,
}

thread_local! {
    pub(super) static RUNNING: RefCell<Option<Rc<LoopInner>>> = const { RefCell::new(None) };
    pub(super) static DEFAULT: RefCell<Weak<LoopInner>> = const { RefCell::new(Weak::new()) };
}

/// The loop running on this thread, else this thread's default loop (the
/// most recently created one that is still open).
#[inline]
pub(crate) fn current_inner() -> Option<Rc<LoopInner>> {
    if let Some(lp) = RUNNING.with(|r| r.borrow().clone()) {
        return Some(lp);
    }
    DEFAULT.with(|d| d.borrow().upgrade()).filter(|lp| !lp.closed.get())
}

/// Wakes a task from the loop thread while its loop runs: pushes it on the
/// ready queue directly. Returns false when that is not possible (another
/// thread, or the loop is not running) so the caller takes the remote path.
#[inline]
pub(crate) fn push_local_task(shared: &Shared, task: task::Wakeup<'_>) -> bool {
    RUNNING
        .try_with(|r| {
            let r = r.borrow();
            match &*r {
                Some(lp) if std::ptr::eq(Arc::as_ptr(&lp.shared), shared) => {
                    // SAFETY: `shared` is the running loop's, so this is the
                    // thread of the task's loop.
                    if let Some(t) = unsafe { task.local() } {
                        lp.push_ready(Runnable::Task(t));
                    }
                    true
                }
                _ => false,
            }
        })
        .unwrap_or(false)
}

/// Whether a loop other than the one owning `shared` runs on this thread: a
/// task of the `shared` loop awaited there could never make progress.
pub(crate) fn other_loop_running(shared: &Shared) -> bool {
    RUNNING
        .try_with(|r| matches!(&*r.borrow(), Some(lp) if !std::ptr::eq(Arc::as_ptr(&lp.shared), shared)))
        .unwrap_or(false)
}

/// Cancels a timer of the loop identified by `loop_id` if that loop is the
/// current one on this thread (otherwise the timer simply fires later and
/// wakes a stale waker, which is harmless).
pub(crate) fn cancel_timer(loop_id: u64, id: TimerId) {
    if let Some(lp) = current_inner() {
        if lp.id() == loop_id {
            let action = lp.timers.try_borrow_mut().ok().and_then(|mut t| t.cancel(id));
            drop(action);
        }
    }
}

impl LoopInner {
    /// Identity of this loop: a process-wide counter, never reused (an
    /// address could be reused by a later loop, and a stale `Sleep` would
    /// then touch that loop's timers).
    pub(crate) fn id(&self) -> u64 {
        self.shared.id
    }

    /// The loop's blocking thread pool.
    pub(crate) fn blocking_pool(&self) -> &BlockingPool {
        &self.pool
    }

    pub(crate) fn is_closed(&self) -> bool {
        self.closed.get()
    }

    pub(crate) fn check_open(&self) -> Result<(), LoopError> {
        if self.closed.get() {
            Err(LoopError::Closed)
        } else {
            Ok(())
        }
    }

    pub(crate) fn schedule_callback(&self, f: Box<dyn FnOnce()>) -> Rc<CallbackCell> {
        let cell = CallbackCell::new(f);
        if !self.closed.get() {
            self.push_ready(Runnable::Callback(cell.clone()));
        }
        cell
    }

    pub(crate) fn call_exception_handler(&self, ctx: ExceptionContext) {
        let handler = self.exception_handler.borrow().clone();
        match handler {
            None => default_exception_handler(&ctx),
            Some(h) => {
                if let Err(p) = catch_unwind(AssertUnwindSafe(|| h(&ctx))) {
                    default_exception_handler(&ExceptionContext {
                        kind: ExceptionKind::CallbackPanicked,
                        message: format!("Unhandled error in exception handler (while handling: {})", ctx.message),
                        panic_message: task::panic_message(p.as_ref()).map(str::to_owned),
                        task: None,
                    });
                }
            }
        }
    }

    pub(crate) fn report_panic(&self, kind: ExceptionKind, what: &str, payload: Box<dyn Any + Send>) {
        let msg = task::panic_message(payload.as_ref()).map(str::to_owned);
        self.call_exception_handler(ExceptionContext {
            kind,
            message: match &msg {
                Some(m) => format!("{what}: {m}"),
                None => what.to_owned(),
            },
            panic_message: msg,
            task: None,
        });
    }

    /// One iteration; `Err(DriverFailed)` (before running anything) when
    /// the driver's wait failed for good.
    pub(super) fn run_once(self: &Rc<Self>) -> Result<(), LoopError> {
        // 1. Purge cancelled timers.
        self.timers.borrow_mut().purge();

        // 2. Pick the wait timeout. The clock is read only when a timer
        // bounds a blocking wait: a clock read costs ~40 ns on some VMs
        // (vDSO clock_gettime), as much as the rest of a busy iteration.
        let busy = !self.ready.borrow().is_empty() || self.stopping.get();
        let next_timer = self.timers.borrow_mut().next_deadline();
        let mut timeout = if busy {
            Some(Duration::ZERO)
        } else {
            next_timer.map(|w| w.saturating_duration_since(self.clock.now()))
        };
        let virtual_jump = self.clock.is_virtual() && timeout != Some(Duration::ZERO) && next_timer.is_some();
        if virtual_jump {
            timeout = Some(Duration::ZERO);
        }

        // 3. Wait for completions / readiness in one driver call.
        let blocking = timeout != Some(Duration::ZERO);
        if blocking && !self.shared.begin_sleep() {
            timeout = Some(Duration::ZERO);
        }
        let res = self.driver.wait(timeout);
        if blocking {
            self.shared.end_sleep();
        }
        match res {
            Ok(()) => self.failed_waits.set(0),
            Err(e) => {
                self.call_exception_handler(ExceptionContext {
                    kind: ExceptionKind::DriverError,
                    message: format!("driver wait failed: {e}"),
                    panic_message: None,
                    task: None,
                });
                // Retrying at once would spin (a wait that fails does not block).
                let failed = self.failed_waits.get() + 1;
                self.failed_waits.set(failed);
                if failed >= crate::driver::MAX_FAILED_WAITS || crate::driver::wait_error_is_permanent(&e) {
                    self.failed_waits.set(0);
                    return Err(LoopError::DriverFailed);
                }
            }
        }
        self.drain_remote();
        if virtual_jump && self.ready.borrow().is_empty() {
            if let Some(w) = next_timer {
                self.clock.advance_to(w);
            }
        }

        // 4. Move due timers to the ready queue, in deadline order. No clock
        // read without timers (the wait or a remote item may have added one
        // since step 2, so look again).
        if self.timers.borrow_mut().next_deadline().is_some() {
            let end = self.clock.now();
            loop {
                let action = self.timers.borrow_mut().pop_due(end);
                match action {
                    None => break,
                    Some(TimerAction::Callback(cb)) => self.ready.borrow_mut().push_back(Runnable::Callback(cb)),
                    Some(TimerAction::Wake(w)) => w.wake(),
                }
            }
        }

        // 5. Run exactly the entries that are ready now.
        let n = self.ready.borrow().len();
        for _ in 0..n {
            let r = {
                let mut ready = self.ready.borrow_mut();
                let Some(r) = ready.pop_front() else {
                    break;
                };
                // The next task's memory loads while this entry runs.
                if let Some(Runnable::Task(next)) = ready.front() {
                    next.prefetch();
                }
                r
            };
            let start = self.debug.get().then(Instant::now);
            let what = match r {
                Runnable::Callback(cb) => {
                    if let Some(f) = cb.take() {
                        if let Err(p) = catch_unwind(AssertUnwindSafe(f)) {
                            self.report_panic(ExceptionKind::CallbackPanicked, "Exception in callback", p);
                        }
                    }
                    None
                }
                Runnable::Stop => {
                    self.stopping.set(true);
                    None
                }
                Runnable::Task(t) => {
                    t.run(&**self);
                    start.is_some().then_some(t)
                }
            };
            if let Some(start) = start {
                let took = start.elapsed();
                if took >= self.slow_callback.get() {
                    let name = what
                        .as_ref()
                        .map(|t| format!("task {}", t.name()))
                        .unwrap_or_else(|| "callback".into());
                    self.call_exception_handler(ExceptionContext {
                        kind: ExceptionKind::SlowCallback(took),
                        message: format!("Executing {name} took {:.3} seconds", took.as_secs_f64()),
                        panic_message: None,
                        task: what,
                    });
                }
            }
        }
        self.iterations.set(self.iterations.get() + 1);
        Ok(())
    }

    /// Moves the cross-thread queue to the end of the ready queue. Called
    /// after each wait and before every local push (call_soon, task wake-up
    /// on the loop thread), so one FIFO holds callbacks and wake-ups in call
    /// order whichever thread made them; without remote items this costs
    /// one atomic load.
    /// Queues `r` from the loop thread: after anything queued from other
    /// threads before it (see `drain_remote`).
    #[inline]
    pub(crate) fn push_ready(&self, r: Runnable) {
        self.drain_remote();
        self.ready.borrow_mut().push_back(r);
    }

    #[inline]
    pub(super) fn drain_remote(&self) {
        if self.shared.has_remote() {
            self.drain_remote_now();
        }
    }

    #[inline(never)]
    fn drain_remote_now(&self) {
        let mut batch = std::mem::take(&mut *self.remote_batch.borrow_mut());
        self.shared.drain_into(&mut batch);
        for r in batch.drain(..) {
            match r {
                shared::Remote::Wake(t) => {
                    // This loop's queue holds only its own tasks.
                    // SAFETY: a `LoopInner` (`!Send`) is used on its thread.
                    if let Some(t) = unsafe { t.into_local() } {
                        self.ready.borrow_mut().push_back(Runnable::Task(t));
                    }
                }
                shared::Remote::Call(f) => self
                    .ready
                    .borrow_mut()
                    .push_back(Runnable::Callback(CallbackCell::new(f))),
                // In FIFO order like asyncio's `call_soon_threadsafe(loop.stop)`:
                // callbacks queued before the stop still run.
                shared::Remote::Stop => self.ready.borrow_mut().push_back(Runnable::Stop),
            }
        }
        *self.remote_batch.borrow_mut() = batch;
    }
}
