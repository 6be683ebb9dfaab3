//! The public `EventLoop` API, `current()` and `run()`.

use std::cell::Cell;
use std::fmt;
use std::future::Future;
use std::io;
use std::panic::resume_unwind;
use std::rc::Rc;
use std::time::{Duration, Instant};

use super::inner::{LoopInner, RUNNING, TimerAction, current_inner};
use super::tasks::spawn_raw;
use super::{Builder, CallbackCell, ExceptionContext, ExceptionHandler, Handle, LoopError, LoopHandle, TimerHandle};
use crate::driver::DriverKind;
use crate::task::{OkWrap, Task, TaskError, TaskRef};

/// An asyncio-style event loop. One per thread; `!Send`.
///
/// `EventLoop` is a cheap handle: clones (and [`current`]) refer to the same
/// loop. The handle returned by [`EventLoop::new`] / [`Builder::build`] owns
/// the loop: dropping it closes the loop (like `loop.close()`).
///
/// ```
/// use ringloop::EventLoop;
/// use std::time::Duration;
///
/// let lp = EventLoop::new().unwrap();
/// let out = lp
///     .run_until_complete(async {
///         ringloop::sleep(Duration::from_millis(10)).await;
///         40 + 2
///     })
///     .unwrap();
/// assert_eq!(out, 42);
/// ```
pub struct EventLoop {
    pub(super) inner: Rc<LoopInner>,
    pub(super) owner: bool,
}

impl Clone for EventLoop {
    fn clone(&self) -> Self {
        EventLoop {
            inner: self.inner.clone(),
            owner: false,
        }
    }
}

impl fmt::Debug for EventLoop {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("EventLoop")
            .field("driver", &self.driver_kind())
            .field("running", &self.is_running())
            .field("closed", &self.is_closed())
            .finish()
    }
}

/// The loop running on this thread, else this thread's default loop (the
/// most recently created loop that is still open), like asyncio's
/// `get_event_loop()`.
pub fn current() -> Option<EventLoop> {
    current_inner().map(|inner| EventLoop { inner, owner: false })
}

/// asyncio's `asyncio.run`: creates a loop, runs `fut` to completion, then
/// cancels every task still pending, lets them unwind for one iteration,
/// shuts the blocking pool down and closes the loop.
///
/// Called while a loop runs on this thread, it returns
/// [`LoopError::AnotherLoopRunning`] (as an `io::Error`) without creating a
/// loop, and leaves the running loop and its tasks alone.
///
/// ```
/// let v = ringloop::run(async { 6 * 7 }).unwrap();
/// assert_eq!(v, 42);
/// ```
pub fn run<F>(fut: F) -> io::Result<F::Output>
where
    F: Future + 'static,
    F::Output: 'static,
{
    if RUNNING.with(|r| r.borrow().is_some()) {
        return Err(LoopError::AnotherLoopRunning.into());
    }
    let lp = EventLoop::new()?;
    let out = lp.run_until_complete(fut);
    // This loop's own tasks (never the tasks of whatever loop is current).
    let leftovers: Vec<TaskRef> = lp.inner.tasks.borrow().iter().map(|(_, t)| t.clone()).collect();
    if !leftovers.is_empty() {
        for t in &leftovers {
            t.cancel();
        }
        // Cancelled tasks drop their futures at their next step.
        lp.stop();
        let _ = lp.run_forever();
    }
    lp.close().map_err(io::Error::from)?;
    out.map_err(io::Error::from)
}

struct RunGuard<'a> {
    inner: &'a Rc<LoopInner>,
}

impl Drop for RunGuard<'_> {
    fn drop(&mut self) {
        self.inner.running.set(false);
        self.inner.stopping.set(false);
        RUNNING.with(|r| *r.borrow_mut() = None);
    }
}

impl EventLoop {
    /// A loop with default settings (see [`Builder`]).
    pub fn new() -> io::Result<EventLoop> {
        Builder::default().build()
    }

    /// A [`Builder`].
    pub fn builder() -> Builder {
        Builder::default()
    }

    /// Which backend this loop runs on.
    pub fn driver_kind(&self) -> DriverKind {
        self.inner.driver.kind()
    }

    /// A human-readable description of the backend (flags, OS mechanism).
    pub fn driver_description(&self) -> String {
        self.inner.driver.description()
    }

    /// The loop state, for the layers above the loop that extend its API
    /// (`blocking`'s `run_in_executor`, `future`'s `create_future`).
    pub(crate) fn inner(&self) -> &Rc<LoopInner> {
        &self.inner
    }

    /// A `Send + Sync` handle for other threads.
    pub fn handle(&self) -> LoopHandle {
        LoopHandle::new(self.inner.shared.clone())
    }

    /// The loop clock (monotonic; virtual if configured).
    pub fn time(&self) -> Instant {
        self.inner.clock.now()
    }

    /// Whether `run_forever` / `run_until_complete` is executing.
    pub fn is_running(&self) -> bool {
        self.inner.running.get()
    }

    /// Whether `close()` was called.
    pub fn is_closed(&self) -> bool {
        self.inner.closed.get()
    }

    /// Debug mode on/off.
    pub fn set_debug(&self, on: bool) {
        self.inner.debug.set(on);
    }

    /// Whether debug mode is on.
    pub fn get_debug(&self) -> bool {
        self.inner.debug.get()
    }

    /// Sets the slow-callback threshold of debug mode.
    pub fn set_slow_callback_duration(&self, d: Duration) {
        self.inner.slow_callback.set(d);
    }

    /// Sets (or with `None`, resets to the default) the exception handler.
    pub fn set_exception_handler(&self, handler: Option<impl Fn(&ExceptionContext) + 'static>) {
        *self.inner.exception_handler.borrow_mut() = handler.map(|h| Rc::new(h) as ExceptionHandler);
    }

    /// The exception handler set by [`set_exception_handler`](EventLoop::set_exception_handler),
    /// or `None` when the default one ([`default_exception_handler`](super::default_exception_handler)) is in use.
    pub fn get_exception_handler(&self) -> Option<ExceptionHandler> {
        self.inner.exception_handler.borrow().clone()
    }

    /// Calls the current exception handler.
    pub fn call_exception_handler(&self, ctx: ExceptionContext) {
        self.inner.call_exception_handler(ctx)
    }

    /// Number of completed loop iterations (diagnostics and tests).
    pub fn iterations(&self) -> u64 {
        self.inner.iterations.get()
    }

    /// The loop's counters now (see [`LoopMetrics`](super::LoopMetrics)).
    pub fn metrics(&self) -> super::LoopMetrics {
        self.inner.metrics()
    }

    /// A snapshot of this loop's pending tasks: id, name, state, spawn
    /// location and what each waits on; its `Display` prints one line per
    /// task (see [`TaskDump`](crate::task::TaskDump)).
    pub fn task_dump(&self) -> crate::task::TaskDump {
        self.inner.task_dump()
    }

    /// Number of live blocking-pool threads.
    pub fn blocking_threads(&self) -> usize {
        self.inner.pool.threads()
    }

    /// Schedules `f` for the next iteration (FIFO with other callbacks and
    /// task wake-ups).
    pub fn call_soon(&self, f: impl FnOnce() + 'static) -> Result<Handle, LoopError> {
        self.inner.check_open()?;
        Ok(Handle::new(
            self.inner.schedule_callback(crate::context::bind(Box::new(f))),
        ))
    }

    /// Schedules `f` to run `delay` from now (`call_at(time() + delay)`). A
    /// delay too large for an `Instant` (e.g. `Duration::MAX`) is clamped to
    /// about 30 years.
    pub fn call_later(&self, delay: Duration, f: impl FnOnce() + 'static) -> Result<TimerHandle, LoopError> {
        let when = crate::timer::add_clamped(self.time(), delay);
        self.call_at(when, f)
    }

    /// Schedules `f` at the loop time `when`. A past `when` runs in the next
    /// iteration, after earlier deadlines.
    pub fn call_at(&self, when: Instant, f: impl FnOnce() + 'static) -> Result<TimerHandle, LoopError> {
        self.inner.check_open()?;
        let cb = CallbackCell::new(crate::context::bind(Box::new(f)));
        let id = self
            .inner
            .timers
            .borrow_mut()
            .insert(when, TimerAction::Callback(cb.clone()));
        Ok(TimerHandle::new(cb, id, when, &self.inner))
    }

    /// Spawns `fut` as a task on this loop.
    #[track_caller]
    pub fn create_task<F>(&self, fut: F) -> Result<Task<F::Output>, LoopError>
    where
        F: Future + 'static,
        F::Output: 'static,
    {
        self.inner.check_open()?;
        Ok(spawn_raw(&self.inner, OkWrap(fut)))
    }

    /// Asks the loop to stop after the current iteration. Before
    /// `run_forever`, it makes the next run do exactly one iteration.
    pub fn stop(&self) {
        self.inner.stopping.set(true);
    }

    fn check_can_run(&self) -> Result<(), LoopError> {
        if self.inner.closed.get() {
            return Err(LoopError::Closed);
        }
        if self.inner.running.get() {
            return Err(LoopError::AlreadyRunning);
        }
        if RUNNING.with(|r| r.borrow().is_some()) {
            return Err(LoopError::AnotherLoopRunning);
        }
        Ok(())
    }

    /// Runs until [`stop`](EventLoop::stop) is called, or until the driver's
    /// wait fails for good ([`LoopError::DriverFailed`]: an error no retry
    /// can cure, or `8` failures in a row) instead of spinning.
    pub fn run_forever(&self) -> Result<(), LoopError> {
        self.check_can_run()?;
        self.inner.running.set(true);
        RUNNING.with(|r| *r.borrow_mut() = Some(self.inner.clone()));
        let _guard = RunGuard { inner: &self.inner };
        loop {
            self.inner.run_once()?;
            if self.inner.stopping.get() {
                break;
            }
        }
        Ok(())
    }

    /// Runs the loop until `fut` completes and returns its output.
    ///
    /// The future runs as a task; like asyncio, the loop stops through a done
    /// callback, so the rest of that iteration's batch still runs. A panic in
    /// `fut` is resumed in the caller. If the loop is stopped first,
    /// [`LoopError::StoppedBeforeComplete`] is returned and the task stays
    /// pending (a later run resumes it).
    #[track_caller]
    pub fn run_until_complete<F>(&self, fut: F) -> Result<F::Output, LoopError>
    where
        F: Future + 'static,
        F::Output: 'static,
    {
        self.check_can_run()?;
        let task = spawn_raw(&self.inner, OkWrap(fut));
        let active = Rc::new(Cell::new(true));
        let flag = active.clone();
        let weak = Rc::downgrade(&self.inner);
        task.add_done_callback(move |_| {
            if flag.get() {
                if let Some(lp) = weak.upgrade() {
                    lp.stopping.set(true);
                }
            }
        });
        let res = self.run_forever();
        active.set(false);
        res?;
        match task.take_result() {
            Some(Ok(v)) => Ok(v),
            Some(Err(TaskError::Panicked(p))) => resume_unwind(p),
            Some(Err(_)) => Err(LoopError::Cancelled),
            None => Err(LoopError::StoppedBeforeComplete),
        }
    }

    /// Closes the loop: discards pending callbacks and timers, drops every
    /// pending task's future, and shuts the blocking pool down. Idempotent;
    /// an error while the loop runs.
    pub fn close(&self) -> Result<(), LoopError> {
        if self.inner.running.get() {
            return Err(LoopError::CloseWhileRunning);
        }
        if self.inner.closed.get() {
            return Ok(());
        }
        self.inner.closed.set(true);
        self.inner.shared.close();
        self.inner.driver.close();
        let ready = std::mem::take(&mut *self.inner.ready.borrow_mut());
        drop(ready);
        let timers = self.inner.timers.borrow_mut().clear();
        drop(timers);
        let tasks: Vec<TaskRef> = self.inner.tasks.borrow_mut().drain().collect();
        for t in tasks {
            t.discard();
        }
        drop(self.inner.shared.take_remote());
        // The freed tasks' memory, kept for this loop's spawns, goes back.
        crate::task::release_task_cache();
        self.inner.pool.shutdown();
        Ok(())
    }
}

impl Drop for EventLoop {
    fn drop(&mut self) {
        if self.owner && !self.inner.running.get() {
            let _ = self.close();
        }
    }
}
