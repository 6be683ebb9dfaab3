//! Tasks: futures driven by the loop, asyncio's `Task`.
//!
//! A task is one allocation (see `raw`): a thread-safe header (state word
//! with the atomic reference count, the schedule hook, slab key and id), the
//! loop-thread bookkeeping (`TaskCore`), the future and the output. Its
//! waker is a hand-written vtable over that same allocation: waking on the
//! loop thread pushes the task on the ready queue directly; waking from any
//! other thread goes through the loop's cross-thread queue and wakes the
//! driver only if the loop sleeps.
//!
//! The task module does not know the loop: whoever spawns a task gives it
//! a `Schedule` hook (thread-safe: where wake-ups go, wrapped in a
//! `SchedHook` the loop owns) and a `LoopHooks` hook (loop thread:
//! callbacks, exception reporting, the current task); the runtime
//! implements both.
//!
//! Dropping a [`Task`] handle **detaches** the task (it keeps running, like an
//! asyncio task nobody awaits). Use [`Task::cancel_on_drop`] for the opposite.

use std::any::Any;
use std::cell::{Cell, OnceCell, RefCell, RefMut};
use std::panic::Location;
use std::rc::Rc;
use std::task::Waker;

mod dump;
mod error;
mod handle;
mod raw;

pub use dump::{TaskDump, TaskInfo, TaskState};
pub use error::TaskError;
pub(crate) use error::panic_message;
pub use handle::{CancelOnDrop, DoneCallbackId, Finished, Task, TaskRef};
pub use raw::DEFAULT_TASK_CACHE_LIMIT;
#[doc(hidden)]
pub use raw::cached_task_bytes;
use raw::{DropFuture, Init, OutputKind, RawRef, StepResult};
pub(crate) use raw::{OkWrap, RemoteWake, SchedHook, TaskBox, Wakeup, release_task_cache, set_task_cache_limit};

// The spawning entry points need the current loop, so the runtime defines
// them (`ringloop::spawn`, `try_spawn`, `current_task`, `all_tasks` at the
// crate root); `task/` itself never names the runtime.

/// Where a task's wake-ups go: the loop's side of the waker. Thread-safe,
/// since wakers may be woken on any thread; stored in every task's header.
pub(crate) trait Schedule: Send + Sync + 'static {
    /// Queues a step of the task. On the loop's own thread while it runs
    /// this pushes a local reference on the ready queue; elsewhere an owned
    /// reference ([`RemoteWake`]) goes through the cross-thread queue (and
    /// wakes a sleeping loop).
    fn schedule(&self, task: Wakeup<'_>);
    /// Whether a loop other than this one runs on the calling thread (a
    /// task awaited there could never make progress).
    fn foreign_loop_running(&self) -> bool;
}

/// What a task needs from its loop, on the loop thread.
pub(crate) trait LoopHooks {
    fn is_closed(&self) -> bool;
    /// Schedules `f` through the ready queue (dropped if the loop is closed).
    fn call_soon(&self, f: Box<dyn FnOnce()>);
    /// The task `(key, id)` finished: the loop stops tracking it.
    fn task_finished(&self, key: u32, id: u64);
    /// Reports a panic of a future's (or output's) destructor.
    fn report_drop_panic(&self, what: &str, payload: Box<dyn Any + Send>);
    /// Reports a task panic nobody retrieved.
    fn report_unretrieved(&self, task: TaskRef, panic_text: String);
    /// Makes `task` the current task; returns the previous one.
    fn swap_current(&self, task: Option<TaskRef>) -> Option<TaskRef>;
    /// The schedule hook this loop gives its tasks.
    fn sched_hook(&self) -> &Rc<SchedHook>;
}

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum State {
    Pending,
    Finished,
    Cancelled,
}

type DoneCallback = Box<dyn FnOnce(&TaskRef)>;

/// Whom to wake later (a task's listener, an I/O operation's waiter): a
/// local reference when it is a task of the same loop (no atomic operation
/// to keep, wake or drop it, and none of the waker's reference counting on
/// the task's state word), else a clone of the waker.
pub(crate) enum WakeHandle {
    Task(RawRef),
    Waker(Waker),
}

impl WakeHandle {
    /// For a task's listener: `owner` is the task being waited for.
    fn for_task(owner: &RawRef, w: &Waker) -> WakeHandle {
        match owner.local_from_waker(w) {
            Some(r) => WakeHandle::Task(r),
            None => WakeHandle::Waker(w.clone()),
        }
    }
    /// For something the loop with `hook` will wake (its I/O driver); a
    /// waker clone without a hook.
    pub(crate) fn for_loop(hook: Option<&Rc<SchedHook>>, w: &Waker) -> WakeHandle {
        match hook.and_then(|h| RawRef::local_from_loop_waker(h, w)) {
            Some(r) => WakeHandle::Task(r),
            None => WakeHandle::Waker(w.clone()),
        }
    }
    pub(crate) fn will_wake(&self, w: &Waker) -> bool {
        match self {
            WakeHandle::Task(r) => r.is_woken_by(w),
            WakeHandle::Waker(x) => x.will_wake(w),
        }
    }
    pub(crate) fn wake(self) {
        match self {
            WakeHandle::Task(r) => r.schedule(),
            WakeHandle::Waker(w) => w.wake(),
        }
    }
}

/// Loop-thread task bookkeeping, shared by every task type (inside the
/// task allocation).
pub(crate) struct TaskCore {
    /// The task's id (process-unique; its default name is `Task-<id>`).
    id: u64,
    state: Cell<State>,
    /// True while user code runs with the future slot borrowed (a poll or
    /// an in-place drop): the slot is then off limits (see `raw`).
    future_busy: Cell<bool>,
    cancel_requested: Cell<bool>,
    handle_alive: Cell<bool>,
    /// A gather: `cancel()` succeeds only if it cancels a child.
    gather: Cell<bool>,
    /// The first thing waiting for the task to finish when it is a task of
    /// the same loop, inline (the usual single awaiter, or a gather, costs
    /// no allocation and no atomic operation); every other listener goes to
    /// `Extra::listeners`, after it in wake-up order (registration order). A
    /// `Cell`: taken and put back, never borrowed.
    listener: Cell<Option<RawRef>>,
    /// What few tasks use, allocated on first use (one pointer inline).
    extra: OnceCell<Box<RefCell<Extra>>>,
    /// Where the task was spawned (`#[track_caller]` through the spawn
    /// functions), for the task dump.
    spawned_at: &'static Location<'static>,
    /// What its latest step last waited on (`debug::note_wait`), for the
    /// task dump; `None` when no ringloop future said.
    waiting_on: Cell<Option<crate::debug::WaitSite>>,
}

/// The rarely used parts of a task, boxed on demand so a plain spawn
/// neither initializes nor drops them.
#[derive(Default)]
struct Extra {
    /// `None` until set: the default name is formatted on demand.
    name: Option<String>,
    /// The task's `contextvars` context (a copy of its spawner's); `None`
    /// while empty, which is always the case until a `ContextVar` is set.
    context: crate::context::Ctx,
    done_callbacks: Vec<(DoneCallbackId, DoneCallback)>,
    /// Tasks cancelled together with this one, synchronously (a gather's
    /// children, like asyncio's `_GatheringFuture.cancel`).
    linked: Vec<TaskRef>,
    /// Listeners after the first (`TaskCore::listener`).
    listeners: Vec<WakeHandle>,
}

impl TaskCore {
    /// A pending task's bookkeeping. Built by `RawRef::allocate` after the
    /// allocation, straight into it (built before, it was copied through
    /// the stack with a store-forwarding stall).
    #[inline(always)]
    fn new(id: u64, context: crate::context::Ctx, spawned_at: &'static Location<'static>) -> TaskCore {
        let core = TaskCore {
            id,
            state: Cell::new(State::Pending),
            future_busy: Cell::new(false),
            cancel_requested: Cell::new(false),
            handle_alive: Cell::new(true),
            gather: Cell::new(false),
            listener: Cell::new(None),
            extra: OnceCell::new(),
            spawned_at,
            waiting_on: Cell::new(None),
        };
        core.set_context(context);
        core
    }
    /// Takes the task's context out (to enter it for a step).
    fn take_context(&self) -> crate::context::Ctx {
        self.extra().and_then(|e| e.borrow_mut().context.take())
    }
    /// Puts the task's context back (after a step).
    fn set_context(&self, ctx: crate::context::Ctx) {
        match self.extra() {
            Some(e) => e.borrow_mut().context = ctx,
            None if ctx.is_some() => self.extra_mut().context = ctx,
            None => {}
        }
    }
    /// The extra parts, created on first use.
    fn extra_mut(&self) -> RefMut<'_, Extra> {
        self.extra.get_or_init(Default::default).borrow_mut()
    }
    /// The extra parts, if any were ever needed.
    fn extra(&self) -> Option<&RefCell<Extra>> {
        self.extra.get().map(|e| &**e)
    }
    fn name(&self) -> Option<String> {
        self.extra().and_then(|e| e.borrow().name.clone())
    }
    fn take_done_callbacks(&self) -> Vec<(DoneCallbackId, DoneCallback)> {
        match self.extra() {
            Some(e) => std::mem::take(&mut e.borrow_mut().done_callbacks),
            None => Vec::new(),
        }
    }
    fn take_linked(&self) -> Vec<TaskRef> {
        match self.extra() {
            Some(e) => std::mem::take(&mut e.borrow_mut().linked),
            None => Vec::new(),
        }
    }
    /// A copy of the linked tasks (cancelling them may touch this task).
    fn linked(&self) -> Vec<TaskRef> {
        match self.extra() {
            Some(e) => e.borrow().linked.clone(),
            None => Vec::new(),
        }
    }
    fn is_done(&self) -> bool {
        self.state.get() != State::Pending
    }
    /// Wakes `w` when the task finishes, unless an equivalent listener is
    /// registered already. `owner` is this task.
    fn register_listener(&self, owner: &RawRef, w: &Waker) {
        if let Some(first) = self.listener.take() {
            let same = first.is_woken_by(w);
            self.listener.set(Some(first));
            if same {
                return;
            }
        }
        if let Some(e) = self.extra() {
            if e.borrow().listeners.iter().any(|x| x.will_wake(w)) {
                return;
            }
        }
        self.push_listener(owner, w);
    }
    /// Wakes `w` when the task finishes (no dedup: callers register once).
    /// The first listener stays inline when it is a task of this loop.
    fn push_listener(&self, owner: &RawRef, w: &Waker) {
        let first = self.listener.take();
        let empty = first.is_none() && self.extra().is_none_or(|e| e.borrow().listeners.is_empty());
        self.listener.set(first);
        if empty {
            if let Some(r) = owner.local_from_waker(w) {
                self.listener.set(Some(r));
                return;
            }
        }
        let l = WakeHandle::for_task(owner, w);
        self.extra_mut().listeners.push(l);
    }
}

/// Creates a task for a future (already in its allocation, see
/// [`TaskBox`]) whose output carries a `TaskError`: one allocation. `key`
/// (its slab key) and `id` identify it in its loop (`id` must be unique in
/// the process); the task is not scheduled yet (see
/// [`TaskRef::schedule`]). `spawned_at` is where the user spawned it.
#[inline]
pub(crate) fn new_task<T, F>(
    fut: TaskBox<F, T>,
    key: u32,
    id: u64,
    hook: &Rc<SchedHook>,
    spawned_at: &'static Location<'static>,
) -> Task<T>
where
    T: 'static,
    F: std::future::Future<Output = Result<T, TaskError>> + 'static,
{
    let context = crate::context::capture();
    Task::from_typed(RawRef::allocate(
        fut,
        Init {
            key,
            id,
            hook,
            context,
            spawned_at,
        },
    ))
}

impl TaskRef {
    /// Runs one step of the task (or its pending cancellation); called by
    /// the loop for a ready-queue entry. Inlined into the loop's run queue
    /// drain (measured: out of line it costs spawn+run ~10%).
    #[inline]
    pub(crate) fn run<H: LoopHooks>(&self, lp: &H) {
        let raw = self.raw();
        let core = raw.core();
        if core.is_done() {
            return;
        }
        raw.clear_scheduled();
        if core.cancel_requested.get() {
            if let DropFuture::Dropped(Err(p)) = raw.drop_future() {
                lp.report_drop_panic("panic while dropping a cancelled task", p);
            }
            self.finish_with(Some(lp as &dyn LoopHooks), TaskError::Cancelled);
            return;
        }
        let prev = lp.swap_current(Some(self.clone()));
        // Switch to the task's context only once context variables are in use.
        let ctx_on = crate::context::in_use();
        let prev_ctx = if ctx_on {
            crate::context::enter(core.take_context())
        } else {
            None
        };
        let res = raw.poll(lp.sched_hook());
        // The wait-site note this step left (see `debug::note_wait`), taken
        // after every step so none carries over to the next: one
        // thread-local access per step.
        let waiting_on = crate::debug::take_wait();
        drop(lp.swap_current(prev));
        if ctx_on || crate::context::in_use() {
            core.set_context(crate::context::enter(prev_ctx));
        }
        let panicked = matches!(res, StepResult::Panicked(_));
        match res {
            StepResult::Pending => {
                core.waiting_on.set(waiting_on);
                return;
            }
            StepResult::Ready(drop_panic) => {
                if let Some(p) = drop_panic {
                    lp.report_drop_panic("panic while dropping a finished task", p);
                }
                // Cancelled during its own last step (e.g. it cancelled
                // itself and returned): it ends cancelled, as in asyncio.
                if core.cancel_requested.get() {
                    if let Err(p) = raw.set_error(TaskError::Cancelled) {
                        lp.report_drop_panic("panic while dropping a cancelled task's output", p);
                    }
                }
            }
            StepResult::Panicked(p) => {
                // `set_error` drops the future first; there is no old output.
                if let Err(p) = raw.set_error(TaskError::Panicked(p)) {
                    lp.report_drop_panic("panic while dropping a finished task", p);
                }
            }
        }
        let cancelled = core.cancel_requested.get() && raw.output_kind() == OutputKind::Cancelled;
        self.finish(Some(lp), cancelled, panicked);
    }

    /// Stores `Err(e)` and finishes (cancelled when `e` is `Cancelled`).
    fn finish_with(&self, lp: Option<&dyn LoopHooks>, e: TaskError) {
        let cancelled = e.is_cancelled();
        let panicked = matches!(e, TaskError::Panicked(_));
        if let Err(p) = self.raw().set_error(e) {
            if let Some(lp) = lp {
                lp.report_drop_panic("panic while dropping a cancelled task's output", p);
            }
        }
        self.finish(lp, cancelled, panicked);
    }

    /// Marks the task done (its output is stored: `panicked` when that is a
    /// panic), untracks it, schedules its done callbacks and wakes its
    /// listeners.
    ///
    /// Generic over the hooks so the loop's own step (`run`) calls its loop
    /// directly; the cancel paths pass `dyn LoopHooks`.
    #[inline]
    fn finish<H: LoopHooks + ?Sized>(&self, lp: Option<&H>, cancelled: bool, panicked: bool) {
        let raw = self.raw();
        let core = raw.core();
        raw.set_done();
        core.state
            .set(if cancelled { State::Cancelled } else { State::Finished });
        let has_extra = core.extra().is_some();
        if let Some(lp) = lp {
            lp.task_finished(raw.key(), raw.id());
            if has_extra {
                for (_, cb) in core.take_done_callbacks() {
                    let r = self.clone();
                    lp.call_soon(Box::new(move || cb(&r)));
                }
            }
            if panicked && !core.handle_alive.get() {
                report_unretrieved(lp, self);
            }
        }
        let more = if has_extra {
            drop(core.take_linked());
            core.extra().map(|e| std::mem::take(&mut e.borrow_mut().listeners))
        } else {
            None
        };
        if let Some(r) = core.listener.take() {
            r.schedule();
        }
        if let Some(more) = more {
            for l in more {
                l.wake();
            }
        }
    }

    /// Cancels the task now: drops its future and finishes it cancelled
    /// before returning (unless its own step is running).
    pub(crate) fn cancel_now(&self) {
        let raw = self.raw();
        let core = raw.core();
        if core.is_done() {
            return;
        }
        let Some(lp) = raw.loop_hooks().filter(|lp| !lp.is_closed()) else {
            core.cancel_requested.set(true);
            return;
        };
        // A gather's children first (at once too), as `cancel_core` does.
        let linked = core.linked();
        let mut cancelled_a_child = false;
        for t in linked.into_iter().filter(|t| !t.is_done()) {
            t.cancel_now();
            cancelled_a_child = true;
        }
        if core.gather.get() && !cancelled_a_child {
            return;
        }
        core.cancel_requested.set(true);
        match raw.drop_future() {
            // Not while the task's own step runs (its future is borrowed):
            // it then ends at its next scheduling point like any cancel.
            DropFuture::Busy => {
                raw.schedule();
                return;
            }
            DropFuture::Dropped(Err(p)) => {
                lp.report_drop_panic("panic while dropping a cancelled task", p);
            }
            DropFuture::Dropped(Ok(())) | DropFuture::Absent => {}
        }
        if !core.is_done() {
            self.finish_with(Some(&*lp), TaskError::Cancelled);
        }
    }

    /// Drops the future without scheduling anything (loop close).
    pub(crate) fn discard(&self) {
        let raw = self.raw();
        if raw.core().is_done() {
            return;
        }
        let _ = raw.drop_future();
        let callbacks = raw.core().take_done_callbacks();
        drop(callbacks);
        self.finish_with(None, TaskError::Cancelled);
    }

    /// Marks a fresh task queued so the spawner can push it on the ready
    /// queue directly; false when that is not possible (use `schedule`).
    #[inline]
    pub(crate) fn claim_first_step(&self) -> bool {
        self.raw().claim_first_step()
    }

    /// Queues a step (the first one after a spawn, like asyncio's
    /// `call_soon(self.__step)`).
    pub(crate) fn schedule(&self) {
        self.raw().schedule();
    }
}

fn report_unretrieved<H: LoopHooks + ?Sized>(lp: &H, task: &TaskRef) {
    let text = task.raw().panic_text().unwrap_or_default();
    lp.report_unretrieved(task.clone(), text);
}

fn cancel_core(raw: &RawRef) -> bool {
    let core = raw.core();
    if core.is_done() {
        return false;
    }
    let linked = core.linked();
    // Children first, like asyncio's `_GatheringFuture.cancel`.
    let mut cancelled_a_child = false;
    for t in linked {
        cancelled_a_child |= t.cancel();
    }
    if core.gather.get() && !cancelled_a_child {
        // Every child already finished: the gather keeps its result.
        return false;
    }
    core.cancel_requested.set(true);
    raw.schedule();
    true
}
