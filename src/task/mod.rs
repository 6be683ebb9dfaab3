//! Tasks: futures driven by the loop, asyncio's `Task`.
//!
//! A task is one allocation (`Rc<TaskCell<F>>`) owned by the loop's task slab
//! while it is pending. Its waker is a separate `Arc<WakeHeader>` (Send + Sync):
//! waking on the loop thread pushes the task on the ready queue directly;
//! waking from any other thread goes through the loop's cross-thread queue and
//! wakes the driver only if the loop sleeps.
//!
//! Dropping a [`Task`] handle **detaches** the task (it keeps running, like an
//! asyncio task nobody awaits). Use [`Task::cancel_on_drop`] for the opposite.

use std::any::Any;
use std::cell::{Cell, RefCell};
use std::fmt;
use std::future::Future;
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::pin::Pin;
use std::rc::{Rc, Weak};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::task::{Context, Poll, Wake, Waker};

use crate::runtime::{self, ExceptionContext, ExceptionKind, LoopError, LoopInner, Shared};

/// Why a task produced no value.
#[non_exhaustive]
pub enum TaskError {
    /// The task was cancelled (its future was dropped before finishing), or a
    /// gather it stood for saw a cancelled child.
    Cancelled,
    /// The task's future panicked; the payload is kept.
    Panicked(Box<dyn Any + Send + 'static>),
    /// The result was already taken by an earlier `.await` / `take_result`.
    AlreadyRetrieved,
    /// The task belongs to another event loop than the one that awaited it
    /// (asyncio: "attached to a different loop"). Such a task can only make
    /// progress while its own loop runs, so waiting for it would hang.
    ForeignLoop,
}

impl TaskError {
    /// True for [`TaskError::Cancelled`].
    pub fn is_cancelled(&self) -> bool {
        matches!(self, TaskError::Cancelled)
    }
    /// True for [`TaskError::Panicked`].
    pub fn is_panic(&self) -> bool {
        matches!(self, TaskError::Panicked(_))
    }
    /// The panic message, when the payload is a string.
    pub fn panic_message(&self) -> Option<&str> {
        match self {
            TaskError::Panicked(p) => panic_message(p.as_ref()),
            _ => None,
        }
    }
    /// Takes the panic payload (for `std::panic::resume_unwind`).
    pub fn into_panic(self) -> Option<Box<dyn Any + Send + 'static>> {
        match self {
            TaskError::Panicked(p) => Some(p),
            _ => None,
        }
    }
}

pub(crate) fn panic_message(p: &(dyn Any + Send)) -> Option<&str> {
    if let Some(s) = p.downcast_ref::<&'static str>() {
        Some(s)
    } else {
        p.downcast_ref::<String>().map(|s| s.as_str())
    }
}

impl fmt::Debug for TaskError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            TaskError::Cancelled => f.write_str("Cancelled"),
            TaskError::Panicked(p) => f
                .debug_tuple("Panicked")
                .field(&panic_message(p.as_ref()).unwrap_or("<non-string payload>"))
                .finish(),
            TaskError::AlreadyRetrieved => f.write_str("AlreadyRetrieved"),
            TaskError::ForeignLoop => f.write_str("ForeignLoop"),
        }
    }
}

impl fmt::Display for TaskError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            TaskError::Cancelled => f.write_str("task was cancelled"),
            TaskError::Panicked(p) => match panic_message(p.as_ref()) {
                Some(m) => write!(f, "task panicked: {m}"),
                None => f.write_str("task panicked"),
            },
            TaskError::AlreadyRetrieved => f.write_str("task result was already retrieved"),
            TaskError::ForeignLoop => f.write_str("the task belongs to a different event loop"),
        }
    }
}

impl std::error::Error for TaskError {}

static NEXT_TASK_ID: AtomicU64 = AtomicU64::new(1);

/// The thread-safe part of a task: what its `Waker` points to.
pub(crate) struct WakeHeader {
    pub(crate) key: usize,
    pub(crate) id: u64,
    /// Set while the task sits in a ready queue (dedupes wake-ups) and
    /// permanently once the task finished (stale wakers become no-ops).
    scheduled: AtomicBool,
    shared: Arc<Shared>,
}

impl Wake for WakeHeader {
    fn wake(self: Arc<Self>) {
        self.wake_by_ref()
    }
    fn wake_by_ref(self: &Arc<Self>) {
        if self.scheduled.swap(true, Ordering::AcqRel) {
            return;
        }
        if !runtime::push_local_task(&self.shared, self.key, self.id) {
            self.shared.push_remote_wake(self.key, self.id);
        }
    }
}

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum State {
    Pending,
    Finished,
    Cancelled,
}

type DoneCallback = Box<dyn FnOnce(&TaskRef)>;

static NEXT_CALLBACK_ID: AtomicU64 = AtomicU64::new(1);

/// Identifies one [`Task::add_done_callback`] registration, for
/// [`Task::remove_done_callback`]. Ids are unique in the process, so an id
/// from another task (or a callback that already ran) removes nothing.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct DoneCallbackId(u64);

/// Loop-local task bookkeeping shared by every task type.
pub(crate) struct TaskCore {
    header: Arc<WakeHeader>,
    waker: Waker,
    name: RefCell<Option<String>>,
    state: Cell<State>,
    cancel_requested: Cell<bool>,
    handle_alive: Cell<bool>,
    done_callbacks: RefCell<Vec<(DoneCallbackId, DoneCallback)>>,
    listeners: RefCell<Vec<Waker>>,
    /// Tasks cancelled together with this one, synchronously (a gather's
    /// children, like asyncio's `_GatheringFuture.cancel`).
    linked: RefCell<Vec<TaskRef>>,
    /// A gather: `cancel()` succeeds only if it cancels a child.
    gather: Cell<bool>,
    lp: Weak<LoopInner>,
    /// The task's `contextvars` context (a copy of its spawner's); `None`
    /// while empty, which is always the case until a `ContextVar` is set.
    context: Cell<crate::context::Ctx>,
}

impl TaskCore {
    pub(crate) fn id(&self) -> u64 {
        self.header.id
    }
    fn is_done(&self) -> bool {
        self.state.get() != State::Pending
    }
    fn schedule(&self) {
        self.waker.wake_by_ref();
    }
    /// Whether another loop than this task's runs on this thread (awaiting
    /// the task there would hang).
    fn on_foreign_loop(&self) -> bool {
        runtime::other_loop_running(&self.header.shared)
    }
}

pub(crate) trait RawTask {
    fn core(&self) -> &TaskCore;
    /// Runs one step (or the cancellation) of the task.
    fn run(self: Rc<Self>, lp: &LoopInner);
    /// Cancels the task now: drops its future and finishes it cancelled
    /// before returning (unless its own step is running).
    fn cancel_now(self: Rc<Self>);
    /// Drops the future without scheduling anything (loop close).
    fn discard(self: Rc<Self>);
    /// Whether the stored output is an unretrieved panic.
    fn has_unretrieved_panic(&self) -> bool;
    fn panic_text(&self) -> Option<String>;
}

struct TaskCell<T, F> {
    core: TaskCore,
    future: RefCell<Option<F>>,
    output: RefCell<Option<Result<T, TaskError>>>,
}

impl<T: 'static, F: Future<Output = Result<T, TaskError>> + 'static> TaskCell<T, F> {
    fn finish(self: &Rc<Self>, lp: Option<&LoopInner>, out: Result<T, TaskError>, cancelled: bool) {
        let core = &self.core;
        core.header.scheduled.store(true, Ordering::Release);
        core.state
            .set(if cancelled { State::Cancelled } else { State::Finished });
        *self.output.borrow_mut() = Some(out);
        if let Some(lp) = lp {
            lp.tasks.borrow_mut().try_remove(core.header.key);
            // A `TaskRef` (an `Rc` clone) only when someone needs one.
            let as_ref = || TaskRef {
                raw: self.clone() as Rc<dyn RawTask>,
            };
            let callbacks = std::mem::take(&mut *core.done_callbacks.borrow_mut());
            for (_, cb) in callbacks {
                let r = as_ref();
                lp.schedule_callback(Box::new(move || cb(&r)));
            }
            if !core.handle_alive.get() && self.has_unretrieved_panic() {
                report_unretrieved(lp, &as_ref());
            }
        }
        let linked = std::mem::take(&mut *core.linked.borrow_mut());
        drop(linked);
        let listeners = std::mem::take(&mut *core.listeners.borrow_mut());
        for w in listeners {
            w.wake();
        }
    }
}

fn report_unretrieved(lp: &LoopInner, task: &TaskRef) {
    let text = task.raw.panic_text().unwrap_or_default();
    lp.call_exception_handler(ExceptionContext {
        kind: ExceptionKind::TaskPanicNotRetrieved,
        message: format!("Task exception was never retrieved ({}): {text}", task.name()),
        panic_message: Some(text),
        task: Some(task.clone()),
    });
}

impl<T: 'static, F: Future<Output = Result<T, TaskError>> + 'static> RawTask for TaskCell<T, F> {
    fn core(&self) -> &TaskCore {
        &self.core
    }

    fn run(self: Rc<Self>, lp: &LoopInner) {
        let core = &self.core;
        if core.is_done() {
            return;
        }
        core.header.scheduled.store(false, Ordering::Release);
        if core.cancel_requested.get() {
            let dropped = catch_unwind(AssertUnwindSafe(|| *self.future.borrow_mut() = None));
            if let Err(p) = dropped {
                lp.report_panic(
                    ExceptionKind::CallbackPanicked,
                    "panic while dropping a cancelled task",
                    p,
                );
            }
            self.finish(Some(lp), Err(TaskError::Cancelled), true);
            return;
        }
        let prev = lp.current_task.replace(Some(TaskRef {
            raw: self.clone() as Rc<dyn RawTask>,
        }));
        // Switch to the task's context only once context variables are in use.
        let ctx_on = crate::context::in_use();
        let prev_ctx = if ctx_on {
            crate::context::enter(core.context.take())
        } else {
            None
        };
        let mut cx = Context::from_waker(&core.waker);
        let res = {
            let mut slot = self.future.borrow_mut();
            match slot.as_mut() {
                Some(f) => {
                    // The future lives inside the task's `Rc` allocation
                    // and is never moved: it is only ever dropped in place (by
                    // assigning `None` to the slot), so pinning it is sound.
                    // SAFETY: upheld as explained just above.
                    let f = unsafe { Pin::new_unchecked(f) };
                    catch_unwind(AssertUnwindSafe(|| f.poll(&mut cx)))
                }
                None => Ok(Poll::Pending),
            }
        };
        lp.current_task.replace(prev);
        if ctx_on || crate::context::in_use() {
            core.context.set(crate::context::enter(prev_ctx));
        }
        let out = match res {
            Ok(Poll::Pending) => return,
            // Cancelled during its own last step (e.g. it cancelled itself
            // and returned): it ends cancelled, as in asyncio.
            Ok(Poll::Ready(v)) if core.cancel_requested.get() => {
                if let Err(p) = catch_unwind(AssertUnwindSafe(|| drop(v))) {
                    lp.report_panic(
                        ExceptionKind::CallbackPanicked,
                        "panic while dropping a cancelled task's output",
                        p,
                    );
                }
                Err(TaskError::Cancelled)
            }
            Ok(Poll::Ready(v)) => v,
            Err(p) => Err(TaskError::Panicked(p)),
        };
        if let Err(p) = catch_unwind(AssertUnwindSafe(|| *self.future.borrow_mut() = None)) {
            lp.report_panic(
                ExceptionKind::CallbackPanicked,
                "panic while dropping a finished task",
                p,
            );
        }
        let cancelled = matches!(out, Err(TaskError::Cancelled)) && core.cancel_requested.get();
        self.finish(Some(lp), out, cancelled);
    }

    fn cancel_now(self: Rc<Self>) {
        let core = &self.core;
        if core.is_done() {
            return;
        }
        let Some(lp) = core.lp.upgrade().filter(|lp| !lp.is_closed()) else {
            core.cancel_requested.set(true);
            return;
        };
        // A gather's children first (at once too), as `cancel_core` does.
        let linked = core.linked.borrow().clone();
        let mut cancelled_a_child = false;
        for t in linked.into_iter().filter(|t| !t.is_done()) {
            t.raw.cancel_now();
            cancelled_a_child = true;
        }
        if core.gather.get() && !cancelled_a_child {
            return;
        }
        core.cancel_requested.set(true);
        // Not while the task's own step runs (its future is borrowed): it
        // then ends at its next scheduling point like any cancel.
        let Ok(mut slot) = self.future.try_borrow_mut() else {
            core.schedule();
            return;
        };
        let fut = slot.take();
        drop(slot);
        if let Err(p) = catch_unwind(AssertUnwindSafe(|| drop(fut))) {
            lp.report_panic(
                ExceptionKind::CallbackPanicked,
                "panic while dropping a cancelled task",
                p,
            );
        }
        if !core.is_done() {
            self.finish(Some(&lp), Err(TaskError::Cancelled), true);
        }
    }

    fn discard(self: Rc<Self>) {
        if self.core.is_done() {
            return;
        }
        let _ = catch_unwind(AssertUnwindSafe(|| *self.future.borrow_mut() = None));
        self.core.done_callbacks.borrow_mut().clear();
        self.finish(None, Err(TaskError::Cancelled), true);
    }

    fn has_unretrieved_panic(&self) -> bool {
        matches!(&*self.output.borrow(), Some(Err(TaskError::Panicked(_))))
    }

    fn panic_text(&self) -> Option<String> {
        match &*self.output.borrow() {
            Some(Err(e @ TaskError::Panicked(_))) => {
                Some(e.panic_message().unwrap_or("<non-string panic payload>").to_owned())
            }
            _ => None,
        }
    }
}

trait JoinSlot<T> {
    fn core(&self) -> &TaskCore;
    fn take_output(&self) -> Option<Result<T, TaskError>>;
    fn raw(self: Rc<Self>) -> Rc<dyn RawTask>;
    fn has_panic(&self) -> bool;
}

impl<T: 'static, F: Future<Output = Result<T, TaskError>> + 'static> JoinSlot<T> for TaskCell<T, F> {
    fn core(&self) -> &TaskCore {
        &self.core
    }
    fn take_output(&self) -> Option<Result<T, TaskError>> {
        self.output.borrow_mut().take()
    }
    fn raw(self: Rc<Self>) -> Rc<dyn RawTask> {
        self
    }
    fn has_panic(&self) -> bool {
        self.has_unretrieved_panic()
    }
}

/// Wraps a plain future so its output is `Ok(value)`.
pub(crate) struct OkWrap<F>(pub(crate) F);

impl<F: Future> Future for OkWrap<F> {
    type Output = Result<F::Output, TaskError>;
    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        // SAFETY: structural pinning of the only field; `OkWrap` never moves it.
        let f = unsafe { self.map_unchecked_mut(|s| &mut s.0) };
        f.poll(cx).map(Ok)
    }
}

/// Creates a task on `lp` (which must not be closed) for a future whose
/// output already carries a `TaskError`.
pub(crate) fn spawn_raw<T, F>(lp: &Rc<LoopInner>, fut: F) -> Task<T>
where
    T: 'static,
    F: Future<Output = Result<T, TaskError>> + 'static,
{
    let id = NEXT_TASK_ID.fetch_add(1, Ordering::Relaxed);
    let mut tasks = lp.tasks.borrow_mut();
    let entry = tasks.vacant_entry();
    let key = entry.key();
    let header = Arc::new(WakeHeader {
        key,
        id,
        scheduled: AtomicBool::new(false),
        shared: lp.shared.clone(),
    });
    let waker = Waker::from(header.clone());
    let cell = Rc::new(TaskCell {
        core: TaskCore {
            header,
            waker,
            name: RefCell::new(None),
            state: Cell::new(State::Pending),
            cancel_requested: Cell::new(false),
            handle_alive: Cell::new(true),
            done_callbacks: RefCell::new(Vec::new()),
            listeners: RefCell::new(Vec::new()),
            linked: RefCell::new(Vec::new()),
            gather: Cell::new(false),
            lp: Rc::downgrade(lp),
            context: Cell::new(crate::context::capture()),
        },
        future: RefCell::new(Some(fut)),
        output: RefCell::new(None),
    });
    entry.insert(cell.clone() as Rc<dyn RawTask>);
    drop(tasks);
    // The first step is scheduled like asyncio's `call_soon(self.__step)`.
    cell.core.schedule();
    Task {
        slot: cell as Rc<dyn JoinSlot<T>>,
    }
}

/// An untyped, cloneable reference to a task (from [`all_tasks`],
/// [`current_task`] or a done callback). It never keeps a task alive on the
/// loop and never owns its result.
#[derive(Clone)]
pub struct TaskRef {
    raw: Rc<dyn RawTask>,
}

impl TaskRef {
    pub(crate) fn from_raw(raw: Rc<dyn RawTask>) -> TaskRef {
        TaskRef { raw }
    }
    /// Process-unique id (increasing).
    pub fn id(&self) -> u64 {
        self.raw.core().id()
    }
    /// The task's name (`Task-<id>` unless set).
    pub fn name(&self) -> String {
        name_of(self.raw.core())
    }
    /// Requests cancellation; see [`Task::cancel`].
    pub fn cancel(&self) -> bool {
        cancel_core(self.raw.core())
    }
    /// Whether the task finished (normally, by panic or by cancellation).
    pub fn is_done(&self) -> bool {
        self.raw.core().is_done()
    }
    /// Whether the task ended by cancellation.
    pub fn is_cancelled(&self) -> bool {
        self.raw.core().state.get() == State::Cancelled
    }
    /// Whether `cancel()` was called on a task that is still pending.
    pub fn is_cancelling(&self) -> bool {
        let c = self.raw.core();
        c.cancel_requested.get() && !c.is_done()
    }
}

impl PartialEq for TaskRef {
    fn eq(&self, other: &Self) -> bool {
        self.id() == other.id()
    }
}
impl Eq for TaskRef {}

impl fmt::Debug for TaskRef {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TaskRef")
            .field("name", &self.name())
            .field("done", &self.is_done())
            .finish()
    }
}

fn name_of(core: &TaskCore) -> String {
    match &*core.name.borrow() {
        Some(n) => n.clone(),
        None => format!("Task-{}", core.id()),
    }
}

fn cancel_core(core: &TaskCore) -> bool {
    if core.is_done() {
        return false;
    }
    let linked = core.linked.borrow().clone();
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
    core.schedule();
    true
}

/// A handle to a spawned task; `.await` it for `Result<T, TaskError>`.
///
/// Dropping the handle detaches the task (it keeps running). A panic the task
/// produced that was never retrieved is reported to the loop's exception
/// handler when the handle is dropped (or when a detached task finishes).
pub struct Task<T> {
    slot: Rc<dyn JoinSlot<T>>,
}

impl<T: 'static> Task<T> {
    fn core(&self) -> &TaskCore {
        self.slot.core()
    }
    /// Process-unique id (increasing).
    pub fn id(&self) -> u64 {
        self.core().id()
    }
    /// The task's name (`Task-<id>` unless set).
    pub fn name(&self) -> String {
        name_of(self.core())
    }
    /// Renames the task.
    pub fn set_name(&self, name: impl Into<String>) {
        *self.core().name.borrow_mut() = Some(name.into());
    }
    /// Builder-style [`Task::set_name`].
    pub fn with_name(self, name: impl Into<String>) -> Self {
        self.set_name(name);
        self
    }
    /// Requests cancellation. Returns `false` if the task is already done,
    /// `true` otherwise (also when a cancel was already requested). The
    /// task's future is dropped at its next scheduling point (the next loop
    /// iteration), which cancels any I/O it owns; a task cancelled before
    /// its first step never runs its body, and one cancelled during its own
    /// step (it cancelled itself) ends cancelled even if the step returned.
    /// A gather's `cancel` cancels its unfinished children and returns
    /// `false`, leaving the gather's result alone, if there are none.
    pub fn cancel(&self) -> bool {
        cancel_core(self.core())
    }
    /// Whether the task finished.
    pub fn is_done(&self) -> bool {
        self.core().is_done()
    }
    /// Whether the task ended by cancellation.
    pub fn is_cancelled(&self) -> bool {
        self.core().state.get() == State::Cancelled
    }
    /// Takes the result if the task is done (`None` while pending or after
    /// the result was taken).
    pub fn take_result(&self) -> Option<Result<T, TaskError>> {
        if self.is_done() { self.slot.take_output() } else { None }
    }
    /// Schedules `f` to run (through the ready queue, never synchronously)
    /// once the task is done; if it already is, `f` is scheduled now.
    /// Callbacks run in registration order. The returned id lets
    /// [`remove_done_callback`](Task::remove_done_callback) unregister it.
    pub fn add_done_callback(&self, f: impl FnOnce(&TaskRef) + 'static) -> DoneCallbackId {
        self.as_ref().add_done_callback(f)
    }
    /// Unregisters a callback added by [`add_done_callback`](Task::add_done_callback)
    /// and returns how many were removed (asyncio's count): 1, or 0 when the
    /// id is not registered on this task (removed already, another task's,
    /// or the task is done and its callbacks were already scheduled).
    pub fn remove_done_callback(&self, id: DoneCallbackId) -> usize {
        self.as_ref().remove_done_callback(id)
    }
    /// Whether `cancel()` was called on a task that is still pending.
    pub fn is_cancelling(&self) -> bool {
        let c = self.core();
        c.cancel_requested.get() && !c.is_done()
    }
    /// An untyped reference to this task.
    pub fn as_ref(&self) -> TaskRef {
        TaskRef {
            raw: self.slot.clone().raw(),
        }
    }
    /// A future that resolves when the task is done, without taking its result.
    pub fn finished(&self) -> Finished {
        Finished { task: self.as_ref() }
    }
    /// Detaches the task explicitly (same as dropping the handle).
    pub fn detach(self) {}
    /// Converts into a handle that cancels the task when dropped.
    pub fn cancel_on_drop(self) -> CancelOnDrop<T> {
        CancelOnDrop { task: Some(self) }
    }
    /// Whether the task finished by panicking (and the panic is still stored).
    pub fn has_panicked(&self) -> bool {
        self.slot.has_panic()
    }
    /// Makes `cancel()` on this task also cancel `child` at once.
    pub(crate) fn link_child(&self, child: TaskRef) {
        self.core().linked.borrow_mut().push(child);
    }
    /// Gives this task a gather's `cancel()`: it returns `false` (and the
    /// task keeps its result) when no child was left to cancel.
    pub(crate) fn mark_gather(&self) {
        self.core().gather.set(true);
    }
    pub(crate) fn add_listener(&self, w: Waker) {
        self.core().listeners.borrow_mut().push(w);
    }
    /// Whether the task is pending and belongs to another loop than the one
    /// running on this thread (see [`TaskError::ForeignLoop`]).
    pub(crate) fn is_foreign_and_pending(&self) -> bool {
        !self.is_done() && self.core().on_foreign_loop()
    }
}

impl TaskRef {
    /// See [`Task::add_done_callback`].
    pub fn add_done_callback(&self, f: impl FnOnce(&TaskRef) + 'static) -> DoneCallbackId {
        let id = DoneCallbackId(NEXT_CALLBACK_ID.fetch_add(1, Ordering::Relaxed));
        let core = self.raw.core();
        if core.is_done() {
            if let Some(lp) = core.lp.upgrade() {
                let me = self.clone();
                lp.schedule_callback(Box::new(move || f(&me)));
            }
        } else {
            core.done_callbacks.borrow_mut().push((id, Box::new(f)));
        }
        id
    }
    /// See [`Task::remove_done_callback`].
    pub fn remove_done_callback(&self, id: DoneCallbackId) -> usize {
        let removed = {
            let mut cbs = self.raw.core().done_callbacks.borrow_mut();
            cbs.iter().position(|(i, _)| *i == id).map(|at| cbs.remove(at))
        };
        // Dropped outside the borrow: a callback's captures may touch the task.
        usize::from(removed.is_some())
    }
    /// See [`Task::finished`].
    pub fn finished(&self) -> Finished {
        Finished { task: self.clone() }
    }
}

impl<T: 'static> Future for Task<T> {
    type Output = Result<T, TaskError>;
    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let core = self.core();
        if core.is_done() {
            return Poll::Ready(self.slot.take_output().unwrap_or(Err(TaskError::AlreadyRetrieved)));
        }
        if core.on_foreign_loop() {
            return Poll::Ready(Err(TaskError::ForeignLoop));
        }
        let mut l = core.listeners.borrow_mut();
        if !l.iter().any(|w| w.will_wake(cx.waker())) {
            l.push(cx.waker().clone());
        }
        Poll::Pending
    }
}

impl<T> Drop for Task<T> {
    fn drop(&mut self) {
        let core = self.slot.core();
        core.handle_alive.set(false);
        if core.state.get() == State::Finished && self.slot.has_panic() {
            if let Some(lp) = core.lp.upgrade() {
                report_unretrieved(
                    &lp,
                    &TaskRef {
                        raw: self.slot.clone().raw(),
                    },
                );
            }
        }
    }
}

impl<T: 'static> fmt::Debug for Task<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Task")
            .field("name", &self.name())
            .field("done", &self.is_done())
            .field("cancelled", &self.is_cancelled())
            .finish()
    }
}

/// Resolves when a task is done; see [`Task::finished`].
pub struct Finished {
    task: TaskRef,
}

impl Future for Finished {
    type Output = ();
    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<()> {
        let core = self.task.raw.core();
        if core.is_done() {
            return Poll::Ready(());
        }
        let mut l = core.listeners.borrow_mut();
        if !l.iter().any(|w| w.will_wake(cx.waker())) {
            l.push(cx.waker().clone());
        }
        Poll::Pending
    }
}

/// A task handle that cancels its task when dropped (see [`Task::cancel_on_drop`]).
///
/// The cancellation is immediate: the task's future (and, for a gather, its
/// unfinished children's) is dropped and the task is done and cancelled
/// before `drop` returns, unless that task's own step is running.
pub struct CancelOnDrop<T: 'static> {
    task: Option<Task<T>>,
}

impl<T: 'static> CancelOnDrop<T> {
    /// Gives back the plain (detaching) handle.
    pub fn into_inner(mut self) -> Task<T> {
        self.task.take().expect("present until drop")
    }
    /// The wrapped handle.
    pub fn task(&self) -> &Task<T> {
        self.task.as_ref().expect("present until drop")
    }
}

impl<T: 'static> Future for CancelOnDrop<T> {
    type Output = Result<T, TaskError>;
    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        match self.task.as_mut() {
            Some(t) => Pin::new(t).poll(cx),
            None => Poll::Ready(Err(TaskError::AlreadyRetrieved)),
        }
    }
}

impl<T: 'static> Drop for CancelOnDrop<T> {
    /// Cancels the task at once: its future is dropped (and the task is done
    /// and cancelled) before `drop` returns, so e.g. a `timeout` around it
    /// returns with the task already finished, as asyncio's `wait_for`
    /// waits for the cancelled inner task. Only a task dropping its own
    /// handle during its step is cancelled at its next scheduling point.
    fn drop(&mut self) {
        if let Some(t) = &self.task {
            if !t.is_done() {
                t.slot.clone().raw().cancel_now();
            }
        }
    }
}

/// Spawns `fut` on the current loop (the running one, else this thread's
/// default loop). The first step runs in the next loop iteration.
///
/// # Panics
///
/// When there is no loop on this thread or it is closed; use [`try_spawn`]
/// for an error instead.
pub fn spawn<F>(fut: F) -> Task<F::Output>
where
    F: Future + 'static,
    F::Output: 'static,
{
    match try_spawn(fut) {
        Ok(t) => t,
        Err(e) => panic!("ringloop::spawn: {e}"),
    }
}

/// Like [`spawn`], with an error when there is no open loop on this thread.
pub fn try_spawn<F>(fut: F) -> Result<Task<F::Output>, LoopError>
where
    F: Future + 'static,
    F::Output: 'static,
{
    let lp = runtime::current_inner().ok_or(LoopError::NoLoop)?;
    lp.check_open()?;
    Ok(spawn_raw(&lp, OkWrap(fut)))
}

/// The task whose step is running now, if any.
pub fn current_task() -> Option<TaskRef> {
    let lp = runtime::current_inner()?;
    lp.current_task.borrow().clone()
}

/// The not-yet-done tasks of the current loop (empty without a loop).
pub fn all_tasks() -> Vec<TaskRef> {
    match runtime::current_inner() {
        Some(lp) => lp
            .tasks
            .borrow()
            .iter()
            .map(|(_, t)| TaskRef { raw: t.clone() })
            .collect(),
        None => Vec::new(),
    }
}
