//! The loop's side of tasks: spawning (slab entry, id), the schedule and
//! loop hooks the task module calls back, and the public spawn functions.

use std::any::Any;
use std::cell::Cell;
use std::future::Future;
use std::panic::Location;
use std::rc::Rc;
use std::sync::atomic::{AtomicU64, Ordering};

use super::inner::{LoopInner, Runnable, current_inner, other_loop_running, push_local_task};
use super::{ExceptionContext, ExceptionKind, LoopError, Shared};
use crate::task::{self, LoopHooks, OkWrap, Schedule, Task, TaskBox, TaskDump, TaskError, TaskRef, Wakeup};

/// Task ids are handed to loops in blocks of this many, so a spawn touches
/// no shared counter (one atomic add per block).
const TASK_ID_BLOCK: u64 = 1024;

/// The next unreserved task id block (ids start at 1).
static NEXT_TASK_ID: AtomicU64 = AtomicU64::new(1);

/// A loop's current block of task ids: `(next, end)`.
#[derive(Default)]
pub(crate) struct TaskIds(Cell<(u64, u64)>);

impl TaskIds {
    /// A process-unique id, increasing within one loop.
    fn next(&self) -> u64 {
        let (mut next, mut end) = self.0.get();
        if next == end {
            next = NEXT_TASK_ID.fetch_add(TASK_ID_BLOCK, Ordering::Relaxed);
            end = next + TASK_ID_BLOCK;
        }
        self.0.set((next + 1, end));
        next
    }
}

/// Creates a task on `lp` (which must not be closed) for a future whose
/// output already carries a `TaskError`, and schedules its first step. The
/// task dump shows the caller as its spawn location.
#[track_caller]
pub(crate) fn spawn_raw<T, F>(lp: &Rc<LoopInner>, fut: F) -> Task<T>
where
    T: 'static,
    F: Future<Output = Result<T, TaskError>> + 'static,
{
    spawn_raw_at(lp, fut, Location::caller())
}

/// [`spawn_raw`] with an explicit spawn location.
#[inline]
pub(crate) fn spawn_raw_at<T, F>(lp: &Rc<LoopInner>, fut: F, at: &'static Location<'static>) -> Task<T>
where
    T: 'static,
    F: Future<Output = Result<T, TaskError>> + 'static,
{
    spawn_boxed(lp, TaskBox::new(fut), at)
}

/// [`spawn_raw_at`] for a future already in its task allocation.
#[inline]
fn spawn_boxed<T, F>(lp: &Rc<LoopInner>, fut: TaskBox<F, T>, at: &'static Location<'static>) -> Task<T>
where
    T: 'static,
    F: Future<Output = Result<T, TaskError>> + 'static,
{
    let id = lp.task_ids.next();
    let mut tasks = lp.tasks.borrow_mut();
    let entry = tasks.vacant_entry();
    // A task keeps its slab key in 32 bits: 2^32 live tasks (hundreds of
    // GiB) cannot exist, like a reference count that would overflow.
    let Ok(key) = u32::try_from(entry.key()) else {
        std::process::abort();
    };
    let task = task::new_task(fut, key, id, &lp.sched_hook, at);
    let r = task.as_ref();
    // The usual case: straight onto the ready queue (what `schedule` would
    // do, without its hook call and thread check).
    let claimed = r.claim_first_step();
    entry.insert(r.clone());
    drop(tasks);
    if claimed {
        lp.push_ready(Runnable::Task(r));
    } else {
        r.schedule();
    }
    task
}

impl Schedule for Shared {
    fn schedule(&self, task: Wakeup<'_>) {
        if !push_local_task(self, task) {
            self.push_remote_wake(task.remote());
        }
    }
    fn foreign_loop_running(&self) -> bool {
        other_loop_running(self)
    }
}

impl LoopHooks for LoopInner {
    fn is_closed(&self) -> bool {
        LoopInner::is_closed(self)
    }
    fn call_soon(&self, f: Box<dyn FnOnce()>) {
        self.schedule_callback(f);
    }
    fn task_finished(&self, key: u32, id: u64) {
        let key = key as usize;
        let removed = {
            let mut tasks = self.tasks.borrow_mut();
            match tasks.get(key) {
                Some(t) if t.id() == id => Some(tasks.remove(key)),
                _ => None,
            }
        };
        // Dropped outside the borrow (it may be the task's last reference).
        drop(removed);
    }
    fn report_drop_panic(&self, what: &str, payload: Box<dyn Any + Send>) {
        self.report_panic(ExceptionKind::CallbackPanicked, what, payload);
    }
    fn report_unretrieved(&self, task: TaskRef, panic_text: String) {
        self.call_exception_handler(ExceptionContext {
            kind: ExceptionKind::TaskPanicNotRetrieved,
            message: format!("Task exception was never retrieved ({}): {panic_text}", task.name()),
            panic_message: Some(panic_text),
            task: Some(task),
        });
    }
    fn swap_current(&self, task: Option<TaskRef>) -> Option<TaskRef> {
        self.current_task.replace(task)
    }
    fn sched_hook(&self) -> &Rc<task::SchedHook> {
        &self.sched_hook
    }
}

/// Spawns `fut` on the current loop (the running one, else this thread's
/// default loop). The first step runs in the next loop iteration.
///
/// # Panics
///
/// When there is no loop on this thread or it is closed; use [`try_spawn`]
/// for an error instead.
#[track_caller]
#[inline]
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
#[track_caller]
#[inline]
pub fn try_spawn<F>(fut: F) -> Result<Task<F::Output>, LoopError>
where
    F: Future + 'static,
    F::Output: 'static,
{
    try_spawn_at(fut, Location::caller())
}

/// [`try_spawn`] with an explicit spawn location (for the task dump).
#[inline]
pub(crate) fn try_spawn_at<F>(fut: F, at: &'static Location<'static>) -> Result<Task<F::Output>, LoopError>
where
    F: Future + 'static,
    F::Output: 'static,
{
    // The allocation first: the future moves into it before anything
    // else (see `TaskBox`); on an error it is dropped with the box.
    let fut = TaskBox::new(OkWrap(fut));
    let lp = current_inner()
        .ok_or(LoopError::NoLoop)
        .and_then(|lp| lp.check_open().map(|()| lp));
    match lp {
        Ok(lp) => Ok(spawn_boxed(&lp, fut, at)),
        Err(e) => {
            drop(fut);
            // No open loop here: the thread gives back the task memory it
            // just started to keep (see `task/raw/cache.rs`).
            crate::task::release_task_cache();
            Err(e)
        }
    }
}

/// The task whose step is running now, if any.
pub fn current_task() -> Option<TaskRef> {
    let lp = current_inner()?;
    lp.current_task.borrow().clone()
}

/// The not-yet-done tasks of the current loop (empty without a loop).
pub fn all_tasks() -> Vec<TaskRef> {
    match current_inner() {
        Some(lp) => lp.tasks.borrow().iter().map(|(_, t)| t.clone()).collect(),
        None => Vec::new(),
    }
}

/// A snapshot of the current loop's pending tasks (empty without a loop);
/// see [`EventLoop::task_dump`](super::EventLoop::task_dump).
pub fn task_dump() -> TaskDump {
    match current_inner() {
        Some(lp) => lp.task_dump(),
        None => TaskDump::default(),
    }
}

impl LoopInner {
    pub(crate) fn task_dump(&self) -> TaskDump {
        let tasks: Vec<TaskRef> = self.tasks.borrow().iter().map(|(_, t)| t.clone()).collect();
        TaskDump::new(tasks)
    }
}
