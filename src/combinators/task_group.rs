//! `TaskGroup`: asyncio 3.11's structured concurrency.

use std::any::Any;
use std::cell::{Cell, RefCell};
use std::error::Error;
use std::fmt;
use std::future::Future;
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::pin::{Pin, pin};
use std::rc::{Rc, Weak};
use std::task::{Context, Poll, Waker};

use slab::Slab;

use crate::runtime::{self, ExceptionKind, LoopError, LoopInner};
use crate::task::{Task, TaskError, TaskRef, panic_message};

/// How one child of a [`TaskGroup`] failed.
#[non_exhaustive]
pub enum ChildError {
    /// The child panicked; the payload is kept (for `resume_unwind`).
    Panicked(Box<dyn Any + Send + 'static>),
    /// A child spawned with [`TaskGroup::spawn_fallible`] returned `Err`.
    Failed(Box<dyn Error>),
}

impl ChildError {
    /// The panic message, when this is a panic with a string payload.
    pub fn panic_message(&self) -> Option<&str> {
        match self {
            ChildError::Panicked(p) => panic_message(p.as_ref()),
            ChildError::Failed(_) => None,
        }
    }
    /// The error, when a fallible child returned `Err`.
    pub fn error(&self) -> Option<&(dyn Error + 'static)> {
        match self {
            ChildError::Failed(e) => Some(&**e),
            ChildError::Panicked(_) => None,
        }
    }
}

impl fmt::Debug for ChildError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ChildError::Panicked(p) => f
                .debug_tuple("Panicked")
                .field(&panic_message(p.as_ref()).unwrap_or("<non-string payload>"))
                .finish(),
            ChildError::Failed(e) => f.debug_tuple("Failed").field(&e.to_string()).finish(),
        }
    }
}

impl fmt::Display for ChildError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ChildError::Panicked(p) => match panic_message(p.as_ref()) {
                Some(m) => write!(f, "task panicked: {m}"),
                None => f.write_str("task panicked"),
            },
            ChildError::Failed(e) => write!(f, "{e}"),
        }
    }
}

/// The failures of a [`TaskGroup`]'s children, in the order they happened
/// (asyncio's `ExceptionGroup`).
pub struct TaskGroupError {
    errors: Vec<ChildError>,
}

impl TaskGroupError {
    /// The failures, in the order they happened (never empty).
    pub fn errors(&self) -> &[ChildError] {
        &self.errors
    }
    /// Takes the failures.
    pub fn into_errors(self) -> Vec<ChildError> {
        self.errors
    }
}

impl fmt::Debug for TaskGroupError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TaskGroupError").field("errors", &self.errors).finish()
    }
}

impl fmt::Display for TaskGroupError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let n = self.errors.len();
        write!(
            f,
            "unhandled errors in a TaskGroup ({n} sub-exception{})",
            if n == 1 { "" } else { "s" }
        )
    }
}

impl Error for TaskGroupError {}

/// Why [`TaskGroup::try_spawn`] refused a child (asyncio raises
/// `RuntimeError`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum GroupSpawnError {
    /// The group was joined (or its owner dropped): it is finished.
    Finished,
    /// A child failed: the group is cancelling its children.
    ShuttingDown,
    /// The group's loop is gone or closed.
    Loop(LoopError),
}

impl fmt::Display for GroupSpawnError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            GroupSpawnError::Finished => f.write_str("TaskGroup is finished"),
            GroupSpawnError::ShuttingDown => f.write_str("TaskGroup is shutting down"),
            GroupSpawnError::Loop(e) => write!(f, "{e}"),
        }
    }
}

impl Error for GroupSpawnError {}

struct GroupState {
    /// Unfinished children (removed when a child's future is dropped).
    children: Slab<TaskRef>,
    errors: Vec<ChildError>,
    /// A child failed: the abort is scheduled.
    abort_scheduled: bool,
    /// The abort ran: the other children were cancelled, no new spawns.
    aborting: bool,
    /// Joined (or the owner dropped): no new spawns.
    finished: bool,
    /// Joiners (and `task_group`'s body watcher).
    waiters: Vec<Waker>,
}

struct GroupInner {
    lp: Weak<LoopInner>,
    state: RefCell<GroupState>,
    /// Whether the errors were handed to a joiner.
    retrieved: Cell<bool>,
}

impl GroupInner {
    fn wake_waiters(&self) {
        let waiters = std::mem::take(&mut self.state.borrow_mut().waiters);
        for w in waiters {
            w.wake();
        }
    }

    /// Records a failure. The first one schedules the abort through the
    /// ready queue, as asyncio's done callback does, so children that fail
    /// in the same loop iteration are all reported.
    fn fail(self: &Rc<Self>, err: ChildError) {
        let schedule = {
            let mut st = self.state.borrow_mut();
            st.errors.push(err);
            !std::mem::replace(&mut st.abort_scheduled, true)
        };
        if schedule {
            match self.lp.upgrade() {
                Some(lp) => {
                    let g = Rc::downgrade(self);
                    lp.schedule_callback(Box::new(move || {
                        if let Some(g) = g.upgrade() {
                            g.abort();
                        }
                    }));
                }
                None => self.abort(),
            }
        }
        self.wake_waiters();
    }

    /// asyncio's `_abort`: cancel every child, refuse new ones.
    fn abort(&self) {
        self.state.borrow_mut().aborting = true;
        self.cancel_all();
        self.wake_waiters();
    }

    fn cancel_all(&self) {
        let to_cancel: Vec<TaskRef> = self.state.borrow().children.iter().map(|(_, t)| t.clone()).collect();
        for t in to_cancel {
            t.cancel();
        }
    }
}

impl Drop for GroupInner {
    fn drop(&mut self) {
        if self.retrieved.get() {
            return;
        }
        // Never joined: report the panics nobody saw (errors are values the
        // owner chose not to read).
        let errors = std::mem::take(&mut self.state.get_mut().errors);
        if let Some(lp) = self.lp.upgrade() {
            for e in errors {
                if let ChildError::Panicked(p) = e {
                    lp.report_panic(
                        ExceptionKind::TaskPanicNotRetrieved,
                        "TaskGroup child panicked and the group was never joined",
                        p,
                    );
                }
            }
        }
    }
}

/// Removes a child from its group when the child's future is dropped
/// (finished or cancelled).
struct ChildGuard {
    group: Weak<GroupInner>,
    key: usize,
}

impl Drop for ChildGuard {
    fn drop(&mut self) {
        let Some(g) = self.group.upgrade() else { return };
        let last = {
            let mut st = g.state.borrow_mut();
            st.children.try_remove(self.key);
            st.children.is_empty()
        };
        if last {
            g.wake_waiters();
        }
    }
}

/// Structured concurrency (asyncio 3.11's `asyncio.TaskGroup`).
///
/// [`spawn`](Self::spawn) children into the group, then
/// [`join`](Self::join) it: the join waits for every child. When a child
/// fails (panics, or returns `Err` from [`spawn_fallible`](Self::spawn_fallible)),
/// every other child is cancelled (in the next loop iteration, like
/// asyncio's done callback, so children that fail in the same iteration are
/// all reported), the group stops accepting children, and the join resolves
/// to a [`TaskGroupError`] with all the failures (asyncio's
/// `ExceptionGroup`) once the children have finished. Cancelled children
/// are not failures.
///
/// Cancellation: dropping the `TaskGroup` returned by [`new`](Self::new)
/// (for instance because the task that owns it was cancelled) cancels every
/// unfinished child. Clones are spawners for the same group (give one to a
/// child so it can add siblings); dropping a clone cancels nothing.
///
/// Differences from asyncio, because Rust has no exceptions: a failed
/// child's failure is moved into the group, so its own [`Task`] handle
/// resolves to `Err(TaskError::AlreadyRetrieved)`; and with
/// `TaskGroup::new()` the code between the spawns and the join is not
/// interrupted when a child fails. [`task_group`] runs the body as part of
/// the group and drops it (asyncio cancels it) on the first failure.
///
/// ```
/// use ringloop::TaskGroup;
/// # let lp = ringloop::EventLoop::new().unwrap();
/// lp.run_until_complete(async {
///     let tg = TaskGroup::new();
///     let a = tg.spawn(async { 1 });
///     let b = tg.spawn(async { 2 });
///     tg.join().await.unwrap();
///     assert_eq!(a.await.unwrap() + b.await.unwrap(), 3);
///
///     let tg = TaskGroup::new();
///     tg.spawn_fallible(async { Err::<(), _>("bad input") });
///     let slow = tg.spawn(ringloop::sleep(std::time::Duration::from_secs(3600)));
///     let err = tg.join().await.unwrap_err();
///     assert_eq!(err.errors()[0].to_string(), "bad input");
///     assert!(slow.await.unwrap_err().is_cancelled());
/// })
/// .unwrap();
/// ```
pub struct TaskGroup {
    inner: Rc<GroupInner>,
    owner: bool,
}

impl Clone for TaskGroup {
    /// Another spawner for the same group; dropping it cancels nothing.
    fn clone(&self) -> Self {
        TaskGroup {
            inner: self.inner.clone(),
            owner: false,
        }
    }
}

impl TaskGroup {
    /// A new, empty group on the current loop (the running one, else this
    /// thread's default loop). Without a loop, every spawn fails with
    /// [`GroupSpawnError::Loop`].
    pub fn new() -> TaskGroup {
        let lp = runtime::current_inner()
            .map(|lp| Rc::downgrade(&lp))
            .unwrap_or_default();
        TaskGroup {
            inner: Rc::new(GroupInner {
                lp,
                state: RefCell::new(GroupState {
                    children: Slab::new(),
                    errors: Vec::new(),
                    abort_scheduled: false,
                    aborting: false,
                    finished: false,
                    waiters: Vec::new(),
                }),
                retrieved: Cell::new(false),
            }),
            owner: true,
        }
    }

    /// Spawns `fut` as a child task; it fails the group if it panics.
    ///
    /// # Panics
    ///
    /// If the group is finished or shutting down, or its loop is gone (see
    /// [`try_spawn`](Self::try_spawn)).
    #[track_caller]
    pub fn spawn<F>(&self, fut: F) -> Task<F::Output>
    where
        F: Future + 'static,
        F::Output: 'static,
    {
        match self.try_spawn(fut) {
            Ok(t) => t,
            Err(e) => panic!("TaskGroup::spawn: {e}"),
        }
    }

    /// Like [`spawn`](Self::spawn), with an error instead of a panic.
    #[track_caller]
    pub fn try_spawn<F>(&self, fut: F) -> Result<Task<F::Output>, GroupSpawnError>
    where
        F: Future + 'static,
        F::Output: 'static,
    {
        self.spawn_child(fut, Ok)
    }

    /// Spawns a child whose `Err` fails the group: the error goes to the
    /// group's [`TaskGroupError`] (the handle then resolves to
    /// `Err(TaskError::AlreadyRetrieved)`); `Ok(v)` is the handle's result.
    ///
    /// # Panics
    ///
    /// As [`spawn`](Self::spawn).
    #[track_caller]
    pub fn spawn_fallible<T, E, F>(&self, fut: F) -> Task<T>
    where
        F: Future<Output = Result<T, E>> + 'static,
        T: 'static,
        E: Into<Box<dyn Error>>,
    {
        match self.spawn_child(fut, |r| r.map_err(|e| ChildError::Failed(e.into()))) {
            Ok(t) => t,
            Err(e) => panic!("TaskGroup::spawn_fallible: {e}"),
        }
    }

    #[track_caller]
    fn spawn_child<F, T>(
        &self,
        fut: F,
        split: impl FnOnce(F::Output) -> Result<T, ChildError> + 'static,
    ) -> Result<Task<T>, GroupSpawnError>
    where
        F: Future + 'static,
        T: 'static,
    {
        let lp = self
            .inner
            .lp
            .upgrade()
            .ok_or(GroupSpawnError::Loop(LoopError::NoLoop))?;
        lp.check_open().map_err(GroupSpawnError::Loop)?;
        let mut st = self.inner.state.borrow_mut();
        if st.finished {
            return Err(GroupSpawnError::Finished);
        }
        if st.aborting {
            return Err(GroupSpawnError::ShuttingDown);
        }
        let entry = st.children.vacant_entry();
        let key = entry.key();
        let guard = ChildGuard {
            group: Rc::downgrade(&self.inner),
            key,
        };
        let body = async move {
            let guard = guard;
            let mut fut = pin!(fut);
            let out = std::future::poll_fn(|cx| match catch_unwind(AssertUnwindSafe(|| fut.as_mut().poll(cx))) {
                Ok(p) => p.map(Ok),
                Err(payload) => Poll::Ready(Err(ChildError::Panicked(payload))),
            })
            .await;
            match out.and_then(split) {
                Ok(v) => Ok(v),
                Err(e) => {
                    if let Some(g) = guard.group.upgrade() {
                        g.fail(e);
                    }
                    Err(TaskError::AlreadyRetrieved)
                }
            }
        };
        let t = crate::runtime::spawn_raw(&lp, body);
        entry.insert(t.as_ref());
        Ok(t)
    }

    /// Waits until every child has finished (including children spawned
    /// while waiting), then resolves to `Ok(())`, or to the failures if any
    /// child failed. Afterwards the group is finished: spawns fail.
    pub fn join(&self) -> TaskGroupJoin<'_> {
        TaskGroupJoin { group: self }
    }

    /// Number of children that have not finished yet.
    pub fn len(&self) -> usize {
        self.inner.state.borrow().children.len()
    }

    /// Whether every child has finished.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Whether a child failed (the other children were cancelled).
    pub fn is_aborting(&self) -> bool {
        self.inner.state.borrow().aborting
    }

    fn register(&self, waker: &Waker) {
        let mut st = self.inner.state.borrow_mut();
        if !st.waiters.iter().any(|w| w.will_wake(waker)) {
            st.waiters.push(waker.clone());
        }
    }
}

impl Default for TaskGroup {
    fn default() -> Self {
        TaskGroup::new()
    }
}

impl Drop for TaskGroup {
    fn drop(&mut self) {
        if self.owner {
            self.inner.state.borrow_mut().finished = true;
            self.inner.cancel_all();
        }
    }
}

impl fmt::Debug for TaskGroup {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let st = self.inner.state.borrow();
        f.debug_struct("TaskGroup")
            .field("children", &st.children.len())
            .field("errors", &st.errors.len())
            .field("aborting", &st.aborting)
            .finish()
    }
}

/// Future returned by [`TaskGroup::join`].
#[must_use = "futures do nothing unless polled"]
pub struct TaskGroupJoin<'a> {
    group: &'a TaskGroup,
}

impl Future for TaskGroupJoin<'_> {
    type Output = Result<(), TaskGroupError>;
    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let inner = &self.group.inner;
        let errors = {
            let mut st = inner.state.borrow_mut();
            if !st.children.is_empty() {
                drop(st);
                self.group.register(cx.waker());
                return Poll::Pending;
            }
            st.finished = true;
            std::mem::take(&mut st.errors)
        };
        inner.retrieved.set(true);
        if errors.is_empty() {
            Poll::Ready(Ok(()))
        } else {
            Poll::Ready(Err(TaskGroupError { errors }))
        }
    }
}

impl fmt::Debug for TaskGroupJoin<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TaskGroupJoin").finish_non_exhaustive()
    }
}

/// Runs `body` with a fresh [`TaskGroup`] (asyncio's
/// `async with TaskGroup() as tg:`): the body's output is returned once the
/// body and every child have finished. On the first child failure the body
/// is dropped (asyncio cancels it), the other children are cancelled, and
/// the failures are returned once all children have finished. If the
/// returned future is dropped (the awaiting task was cancelled), the body is
/// dropped and every child is cancelled.
///
/// ```
/// # let lp = ringloop::EventLoop::new().unwrap();
/// lp.run_until_complete(async {
///     let sum = ringloop::task_group(|tg| async move {
///         let a = tg.spawn(async { 20 });
///         let b = tg.spawn(async { 22 });
///         a.await.unwrap() + b.await.unwrap()
///     })
///     .await
///     .unwrap();
///     assert_eq!(sum, 42);
/// })
/// .unwrap();
/// ```
pub async fn task_group<R, F, Fut>(body: F) -> Result<R, TaskGroupError>
where
    F: FnOnce(TaskGroup) -> Fut,
    Fut: Future<Output = R>,
{
    let tg = TaskGroup::new();
    let mut body = pin!(Some(body(tg.clone())));
    let out = std::future::poll_fn(|cx| {
        if tg.is_aborting() {
            return Poll::Ready(None);
        }
        let Some(b) = body.as_mut().as_pin_mut() else {
            return Poll::Ready(None);
        };
        match b.poll(cx) {
            Poll::Ready(v) => Poll::Ready(Some(v)),
            Poll::Pending => {
                tg.register(cx.waker());
                Poll::Pending
            }
        }
    })
    .await;
    // Drop the body (asyncio cancels it) before waiting for the children.
    body.set(None);
    tg.join().await?;
    // Without a failure the body finished (it is only abandoned on one).
    out.ok_or_else(|| TaskGroupError { errors: Vec::new() })
}
