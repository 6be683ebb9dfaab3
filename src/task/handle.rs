//! The handles users hold: [`Task`], [`TaskRef`], [`Finished`], [`CancelOnDrop`].

use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering};
use std::task::{Context, Poll, Waker};

use super::raw::{OutputKind, RawRef, TypedRef};
use super::{State, TaskCore, TaskError, cancel_core, report_unretrieved};

static NEXT_CALLBACK_ID: AtomicU64 = AtomicU64::new(1);

/// Identifies one [`Task::add_done_callback`] registration, for
/// [`Task::remove_done_callback`]. Ids are unique in the process, so an id
/// from another task (or a callback that already ran) removes nothing.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct DoneCallbackId(u64);

/// An untyped, cloneable reference to a task (from [`all_tasks`](crate::all_tasks),
/// [`current_task`](crate::current_task) or a done callback). It never keeps a
/// task alive on the loop and never owns its result.
#[derive(Clone)]
pub struct TaskRef {
    raw: RawRef,
}

impl TaskRef {
    pub(super) fn from_raw(raw: RawRef) -> TaskRef {
        TaskRef { raw }
    }
    pub(super) fn raw(&self) -> &RawRef {
        &self.raw
    }
    /// Starts loading the task's first cache lines: it runs next.
    #[inline]
    pub(crate) fn prefetch(&self) {
        self.raw.prefetch()
    }
    fn core(&self) -> &TaskCore {
        self.raw.core()
    }
    /// Process-unique id (increasing in spawn order on one loop).
    pub fn id(&self) -> u64 {
        self.raw.id()
    }
    /// The task's name (`Task-<id>` unless set).
    pub fn name(&self) -> String {
        name_of(&self.raw)
    }
    /// Requests cancellation; see [`Task::cancel`].
    pub fn cancel(&self) -> bool {
        cancel_core(&self.raw)
    }
    /// Whether the task finished (normally, by panic or by cancellation).
    pub fn is_done(&self) -> bool {
        self.core().is_done()
    }
    /// Whether the task ended by cancellation.
    pub fn is_cancelled(&self) -> bool {
        self.core().state.get() == State::Cancelled
    }
    /// Whether `cancel()` was called on a task that is still pending.
    pub fn is_cancelling(&self) -> bool {
        let c = self.core();
        c.cancel_requested.get() && !c.is_done()
    }
    /// See [`Task::add_done_callback`].
    pub fn add_done_callback(&self, f: impl FnOnce(&TaskRef) + 'static) -> DoneCallbackId {
        let id = DoneCallbackId(NEXT_CALLBACK_ID.fetch_add(1, Ordering::Relaxed));
        let core = self.core();
        if core.is_done() {
            if let Some(lp) = self.raw.loop_hooks() {
                let me = self.clone();
                lp.call_soon(Box::new(move || f(&me)));
            }
        } else {
            let f: Box<dyn FnOnce(&TaskRef)> = Box::new(f);
            core.extra_mut().done_callbacks.push((id, f));
        }
        id
    }
    /// See [`Task::remove_done_callback`].
    pub fn remove_done_callback(&self, id: DoneCallbackId) -> usize {
        let removed = {
            self.core().extra().and_then(|e| {
                let mut e = e.borrow_mut();
                let at = e.done_callbacks.iter().position(|(i, _)| *i == id)?;
                Some(e.done_callbacks.remove(at))
            })
        };
        // Dropped outside the borrow: a callback's captures may touch the task.
        usize::from(removed.is_some())
    }
    /// See [`Task::finished`].
    pub fn finished(&self) -> Finished {
        Finished { task: self.clone() }
    }
}

impl PartialEq for TaskRef {
    fn eq(&self, other: &Self) -> bool {
        self.raw.ptr_eq(&other.raw)
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

fn name_of(raw: &RawRef) -> String {
    match raw.core().name() {
        Some(n) => n,
        None => format!("Task-{}", raw.id()),
    }
}

/// A handle to a spawned task; `.await` it for `Result<T, TaskError>`.
///
/// Dropping the handle detaches the task (it keeps running). A panic the task
/// produced that was never retrieved is reported to the loop's exception
/// handler when the handle is dropped (or when a detached task finishes).
///
/// A `FusedFuture`: `is_terminated` turns true once awaiting it has
/// returned `Ready` (so `futures::select!` takes it without `.fuse()` and
/// never polls it again).
pub struct Task<T> {
    slot: TypedRef<T>,
    /// Polling it returned `Ready`.
    terminated: bool,
}

impl<T> Task<T> {
    pub(super) fn from_typed(slot: TypedRef<T>) -> Task<T> {
        Task {
            slot,
            terminated: false,
        }
    }
    fn core(&self) -> &TaskCore {
        self.slot.raw().core()
    }
}

impl<T: 'static> Task<T> {
    /// Process-unique id (increasing in spawn order on one loop).
    pub fn id(&self) -> u64 {
        self.slot.raw().id()
    }
    /// The task's name (`Task-<id>` unless set).
    pub fn name(&self) -> String {
        name_of(self.slot.raw())
    }
    /// Renames the task.
    pub fn set_name(&self, name: impl Into<String>) {
        let name = name.into();
        self.core().extra_mut().name = Some(name);
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
        cancel_core(self.slot.raw())
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
            raw: self.slot.raw().clone(),
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
        self.is_done() && self.slot.raw().output_kind() == OutputKind::Panicked
    }
    /// Makes `cancel()` on this task also cancel `children` at once.
    pub(crate) fn link_children(&self, children: Vec<TaskRef>) {
        let mut extra = self.core().extra_mut();
        if extra.linked.is_empty() {
            extra.linked = children;
        } else {
            extra.linked.extend(children);
        }
    }
    /// Gives this task a gather's `cancel()`: it returns `false` (and the
    /// task keeps its result) when no child was left to cancel.
    pub(crate) fn mark_gather(&self) {
        self.core().gather.set(true);
    }
    /// Wakes `w` when the task is done (callers register once).
    pub(crate) fn add_listener(&self, w: &Waker) {
        let raw = self.slot.raw();
        raw.core().push_listener(raw, w);
    }
    /// Whether the task is pending and belongs to another loop than the one
    /// running on this thread (see [`TaskError::ForeignLoop`]).
    pub(crate) fn is_foreign_and_pending(&self) -> bool {
        !self.is_done() && self.slot.raw().foreign_loop_running()
    }
}

impl<T: 'static> Future for Task<T> {
    type Output = Result<T, TaskError>;
    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let this = self.get_mut();
        let core = this.core();
        if core.is_done() {
            this.terminated = true;
            return Poll::Ready(this.slot.take_output().unwrap_or(Err(TaskError::AlreadyRetrieved)));
        }
        if this.slot.raw().foreign_loop_running() {
            this.terminated = true;
            return Poll::Ready(Err(TaskError::ForeignLoop));
        }
        let core = this.core();
        core.register_listener(this.slot.raw(), cx.waker());
        crate::debug::note_wait(|| "task");
        Poll::Pending
    }
}

impl<T: 'static> futures_core::future::FusedFuture for Task<T> {
    /// True once awaiting the task returned `Ready` (not merely once the
    /// task is done: its result is still to be collected then).
    fn is_terminated(&self) -> bool {
        self.terminated
    }
}

impl<T> Drop for Task<T> {
    fn drop(&mut self) {
        let raw = self.slot.raw();
        let core = raw.core();
        core.handle_alive.set(false);
        if core.state.get() == State::Finished && raw.output_kind() == OutputKind::Panicked {
            if let Some(lp) = raw.loop_hooks() {
                report_unretrieved(&*lp, &TaskRef { raw: raw.clone() });
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
        let core = self.task.core();
        if core.is_done() {
            return Poll::Ready(());
        }
        core.register_listener(&self.task.raw, cx.waker());
        crate::debug::note_wait(|| "task");
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

impl<T: 'static> futures_core::future::FusedFuture for CancelOnDrop<T> {
    /// As for [`Task`].
    fn is_terminated(&self) -> bool {
        self.task.as_ref().is_none_or(|t| t.terminated)
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
                t.as_ref().cancel_now();
            }
        }
    }
}
