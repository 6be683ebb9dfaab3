//! The event loop: asyncio's `BaseEventLoop` with `_run_once`.

use std::any::Any;
use std::cell::{Cell, RefCell};
use std::collections::VecDeque;
use std::fmt;
use std::future::Future;
use std::io;
use std::panic::{AssertUnwindSafe, catch_unwind, resume_unwind};
use std::rc::{Rc, Weak};
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use slab::Slab;

use crate::blocking::{BlockingPool, BlockingTask, PoolConfig};
use crate::driver::{Driver, DriverChoice, DriverKind, UringConfig};
use crate::task::{self, OkWrap, RawTask, Task, TaskError, TaskRef};
use crate::time::{Clock, TimerAction, TimerId, TimerQueue};

mod handle;
mod shared;

pub(crate) use handle::CallbackCell;
pub use handle::{Handle, TimerHandle};
pub(crate) use shared::Shared;
pub use shared::{LoopHandle, RemoteTask};

/// Debug-level diagnostics (printed when `RINGLOOP_DEBUG` is set).
pub(crate) fn debug_log(args: fmt::Arguments<'_>) {
    if std::env::var_os("RINGLOOP_DEBUG").is_some() {
        eprintln!("{args}");
    }
}

/// Errors of the loop's own API (asyncio raises `RuntimeError` for these).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum LoopError {
    /// The loop is closed.
    Closed,
    /// This loop is already running (e.g. a nested `run_until_complete`).
    AlreadyRunning,
    /// Another loop is running on this thread.
    AnotherLoopRunning,
    /// `run_until_complete` returned because the loop was stopped before the
    /// future finished. The task stays pending; a later run resumes it.
    StoppedBeforeComplete,
    /// `close()` was called while the loop runs.
    CloseWhileRunning,
    /// The future given to `run_until_complete` was cancelled.
    Cancelled,
    /// No event loop exists on this thread.
    NoLoop,
    /// The driver's wait (`io_uring_enter`, `epoll_wait`, ...) failed with an
    /// error that retrying cannot cure, or too many times in a row; each
    /// failure went to the exception handler (`ExceptionKind::DriverError`).
    /// Tasks stay pending; a later run tries again.
    DriverFailed,
}

impl fmt::Display for LoopError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            LoopError::Closed => "Event loop is closed",
            LoopError::AlreadyRunning => "This event loop is already running",
            LoopError::AnotherLoopRunning => "Cannot run the event loop while another loop is running",
            LoopError::StoppedBeforeComplete => "Event loop stopped before Future completed.",
            LoopError::CloseWhileRunning => "Cannot close a running event loop",
            LoopError::Cancelled => "the future was cancelled",
            LoopError::NoLoop => "no event loop on this thread",
            LoopError::DriverFailed => "the event loop's driver keeps failing to wait for events",
        })
    }
}

impl std::error::Error for LoopError {}

impl From<LoopError> for io::Error {
    fn from(e: LoopError) -> io::Error {
        io::Error::other(e)
    }
}

/// What the exception handler is told about.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum ExceptionKind {
    /// A callback (`call_soon`, timer, done callback) panicked.
    CallbackPanicked,
    /// A task panicked and nobody retrieved the panic.
    TaskPanicNotRetrieved,
    /// Debug mode: a callback or task step took longer than the threshold.
    SlowCallback(Duration),
    /// The driver's wait failed.
    DriverError,
}

/// The context passed to the exception handler (asyncio's context dict).
#[derive(Debug, Clone)]
pub struct ExceptionContext {
    /// What happened.
    pub kind: ExceptionKind,
    /// Human-readable message.
    pub message: String,
    /// The panic message, when a panic is involved and its payload is a string.
    pub panic_message: Option<String>,
    /// The task involved, if any.
    pub task: Option<TaskRef>,
}

/// A custom exception handler, as [`EventLoop::get_exception_handler`] returns it.
pub type ExceptionHandler = Rc<dyn Fn(&ExceptionContext)>;

/// The default exception handler: logs to stderr.
pub fn default_exception_handler(ctx: &ExceptionContext) {
    match &ctx.panic_message {
        Some(p) if !ctx.message.contains(p.as_str()) => eprintln!("ringloop: {} (panic: {p})", ctx.message),
        _ => eprintln!("ringloop: {}", ctx.message),
    }
}

pub(crate) enum Runnable {
    Callback(Rc<CallbackCell>),
    /// A cross-thread callback: nobody holds a handle to it, so it needs no
    /// cancellable cell.
    Remote(Box<dyn FnOnce() + Send>),
    Task {
        key: usize,
        id: u64,
    },
    /// `LoopHandle::stop`, in order with the other cross-thread items.
    Stop,
}

/// Loop state shared (via `Rc`) by the loop, its tasks and handles.
pub(crate) struct LoopInner {
    pub(crate) shared: Arc<Shared>,
    pub(crate) driver: Driver,
    pub(crate) ready: RefCell<VecDeque<Runnable>>,
    pub(crate) timers: RefCell<TimerQueue>,
    pub(crate) clock: Clock,
    pub(crate) tasks: RefCell<Slab<Rc<dyn RawTask>>>,
    pub(crate) current_task: RefCell<Option<TaskRef>>,
    running: Cell<bool>,
    stopping: Cell<bool>,
    closed: Cell<bool>,
    exception_handler: RefCell<Option<ExceptionHandler>>,
    debug: Cell<bool>,
    slow_callback: Cell<Duration>,
    pool: BlockingPool,
    iterations: Cell<u64>,
    /// Driver waits that failed in a row (see `driver::MAX_FAILED_WAITS`).
    failed_waits: Cell<u32>,
    /// Reused buffer for draining the cross-thread queue (no allocation per drain).
    remote_batch: RefCell<Vec<shared::Remote>>,
}

thread_local! {
    static RUNNING: RefCell<Option<Rc<LoopInner>>> = const { RefCell::new(None) };
    static DEFAULT: RefCell<Weak<LoopInner>> = const { RefCell::new(Weak::new()) };
}

/// The loop running on this thread, else this thread's default loop (the
/// most recently created one that is still open).
pub(crate) fn current_inner() -> Option<Rc<LoopInner>> {
    if let Some(lp) = RUNNING.with(|r| r.borrow().clone()) {
        return Some(lp);
    }
    DEFAULT.with(|d| d.borrow().upgrade()).filter(|lp| !lp.closed.get())
}

/// Wakes a task from the loop thread while its loop runs: pushes it on the
/// ready queue directly. Returns false when that is not possible (another
/// thread, or the loop is not running) so the caller takes the remote path.
pub(crate) fn push_local_task(shared: &Arc<Shared>, key: usize, id: u64) -> bool {
    RUNNING
        .try_with(|r| {
            let r = r.borrow();
            match &*r {
                Some(lp) if Arc::ptr_eq(&lp.shared, shared) => {
                    lp.drain_remote();
                    lp.ready.borrow_mut().push_back(Runnable::Task { key, id });
                    true
                }
                _ => false,
            }
        })
        .unwrap_or(false)
}

/// Whether a loop other than the one owning `shared` runs on this thread: a
/// task of the `shared` loop awaited there could never make progress.
pub(crate) fn other_loop_running(shared: &Arc<Shared>) -> bool {
    RUNNING
        .try_with(|r| matches!(&*r.borrow(), Some(lp) if !Arc::ptr_eq(&lp.shared, shared)))
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
            self.drain_remote();
            self.ready.borrow_mut().push_back(Runnable::Callback(cell.clone()));
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
    fn run_once(self: &Rc<Self>) -> Result<(), LoopError> {
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
        if blocking {
            self.shared.sleeping.store(true, Ordering::SeqCst);
            if self.shared.has_remote() {
                timeout = Some(Duration::ZERO);
            }
        }
        let res = self.driver.wait(timeout);
        if blocking {
            self.shared.sleeping.store(false, Ordering::SeqCst);
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
            let Some(r) = self.ready.borrow_mut().pop_front() else {
                break;
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
                Runnable::Remote(f) => {
                    if let Err(p) = catch_unwind(AssertUnwindSafe(f)) {
                        self.report_panic(ExceptionKind::CallbackPanicked, "Exception in callback", p);
                    }
                    None
                }
                Runnable::Stop => {
                    self.stopping.set(true);
                    None
                }
                Runnable::Task { key, id } => {
                    let t = self.tasks.borrow().get(key).filter(|t| t.core().id() == id).cloned();
                    match t {
                        Some(t) => {
                            let r = start.is_some().then(|| TaskRef::from_raw(t.clone()));
                            t.run(self);
                            r
                        }
                        None => None,
                    }
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
    fn drain_remote(&self) {
        if !self.shared.has_remote() {
            return;
        }
        let mut batch = std::mem::take(&mut *self.remote_batch.borrow_mut());
        self.shared.drain_into(&mut batch);
        for r in batch.drain(..) {
            match r {
                shared::Remote::Wake { key, id } => self.ready.borrow_mut().push_back(Runnable::Task { key, id }),
                shared::Remote::Call(f) => self.ready.borrow_mut().push_back(Runnable::Remote(f)),
                // In FIFO order like asyncio's `call_soon_threadsafe(loop.stop)`:
                // callbacks queued before the stop still run.
                shared::Remote::Stop => self.ready.borrow_mut().push_back(Runnable::Stop),
            }
        }
        *self.remote_batch.borrow_mut() = batch;
    }
}

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
    inner: Rc<LoopInner>,
    owner: bool,
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

/// Configures and builds an [`EventLoop`].
#[derive(Clone, Debug, Default)]
pub struct Builder {
    driver: DriverChoice,
    uring: UringConfig,
    virtual_clock: bool,
    debug: Option<bool>,
    slow_callback: Option<Duration>,
    pool: PoolConfig,
}

impl Builder {
    /// Which backend to use (default [`DriverChoice::Auto`]).
    pub fn driver(mut self, choice: DriverChoice) -> Self {
        self.driver = choice;
        self
    }
    /// io_uring submission-queue size (default 256).
    pub fn ring_entries(mut self, entries: u32) -> Self {
        self.uring.entries = entries;
        self
    }
    /// Whether to try SINGLE_ISSUER / DEFER_TASKRUN / COOP_TASKRUN (default true).
    pub fn uring_tuned_flags(mut self, on: bool) -> Self {
        self.uring.tuned_flags = on;
        self
    }
    /// The io_uring receive pool used by `recv_stream` (default 256 buffers
    /// of 4 KiB): `buffers` must be a power of two (at most 32768). With 0
    /// buffers, pooled receives use single-shot receives into heap buffers.
    pub fn recv_pool(mut self, buffers: u16, buffer_size: u32) -> Self {
        self.uring.recv_pool_entries = buffers;
        self.uring.recv_pool_buf_size = buffer_size;
        self
    }
    /// Which io_uring data-path features to use where the kernel has them
    /// (default: [`UringFeatures::all`](crate::UringFeatures::all));
    /// `RINGLOOP_URING_DISABLE` can turn more off.
    pub fn uring_features(mut self, features: crate::UringFeatures) -> Self {
        self.uring.features = features;
        self
    }
    /// Sends (`write`, `write_all`, `send`) of at least `bytes` use
    /// io_uring's zero-copy `SEND_ZC` where the kernel has it (default 16
    /// KiB; below that the copy is cheaper than the notification).
    pub fn send_zc_threshold(mut self, bytes: usize) -> Self {
        self.uring.send_zc_threshold = bytes;
        self
    }
    /// Test hook: behave as if the kernel lacked `IORING_FEAT_EXT_ARG`
    /// (the wait timeout then goes through a Timeout SQE).
    #[doc(hidden)]
    pub fn uring_disable_ext_arg(mut self, on: bool) -> Self {
        self.uring.disable_ext_arg = on;
        self
    }
    /// Use a virtual clock: whenever the loop would sleep until a timer, time
    /// jumps to that timer instead (asyncio's TestLoop, tokio's paused time).
    pub fn virtual_clock(mut self, on: bool) -> Self {
        self.virtual_clock = on;
        self
    }
    /// Debug mode (slow-callback warnings). Default: `RINGLOOP_ASYNC_DEBUG=1`.
    pub fn debug(mut self, on: bool) -> Self {
        self.debug = Some(on);
        self
    }
    /// Threshold of the slow-callback warning (default 100 ms).
    pub fn slow_callback_duration(mut self, d: Duration) -> Self {
        self.slow_callback = Some(d);
        self
    }
    /// Maximum blocking-pool threads (default `min(32, cores + 4)`).
    pub fn max_blocking_threads(mut self, n: usize) -> Self {
        self.pool.max_threads = n.max(1);
        self
    }
    /// How long an idle blocking-pool thread waits for work before exiting
    /// (default 10 s).
    pub fn blocking_keep_alive(mut self, d: Duration) -> Self {
        self.pool.keep_alive = d;
        self
    }

    /// Builds the loop. With [`DriverChoice::Auto`] a failure to set up
    /// io_uring selects the readiness backend; an explicit choice errors.
    pub fn build(self) -> io::Result<EventLoop> {
        if self.driver == DriverChoice::Auto {
            warn_on_unknown_driver_env();
        }
        let driver = Driver::build(self.driver, &self.uring)?;
        let shared = Arc::new(Shared::new(driver.notifier()));
        let debug = self
            .debug
            .unwrap_or_else(|| std::env::var("RINGLOOP_ASYNC_DEBUG").map(|v| v == "1").unwrap_or(false));
        let inner = Rc::new(LoopInner {
            shared,
            driver,
            ready: RefCell::new(VecDeque::with_capacity(64)),
            timers: RefCell::new(TimerQueue::default()),
            clock: Clock::new(self.virtual_clock),
            tasks: RefCell::new(Slab::new()),
            current_task: RefCell::new(None),
            running: Cell::new(false),
            stopping: Cell::new(false),
            closed: Cell::new(false),
            exception_handler: RefCell::new(None),
            debug: Cell::new(debug),
            slow_callback: Cell::new(self.slow_callback.unwrap_or(Duration::from_millis(100))),
            pool: BlockingPool::new(self.pool),
            iterations: Cell::new(0),
            failed_waits: Cell::new(0),
            remote_batch: RefCell::new(Vec::new()),
        });
        debug_log(format_args!(
            "ringloop: event loop on the {} backend",
            inner.driver.kind()
        ));
        DEFAULT.with(|d| *d.borrow_mut() = Rc::downgrade(&inner));
        Ok(EventLoop { inner, owner: true })
    }
}

/// Warns once per process on stderr when `RINGLOOP_DRIVER` holds a value
/// `Driver::build` does not know (it then chooses automatically), so a typo
/// such as `urnig` is not silently ignored.
fn warn_on_unknown_driver_env() {
    static WARNED: std::sync::Once = std::sync::Once::new();
    let Some(v) = std::env::var_os("RINGLOOP_DRIVER") else {
        return;
    };
    // The values `Driver::build` accepts, plus the spelled-out default.
    let known = ["uring", "io_uring", "fallback", "readiness", "auto", ""];
    if !known.iter().any(|k| v == *k) {
        WARNED.call_once(|| {
            eprintln!(
                "ringloop: ignoring RINGLOOP_DRIVER={v:?}: expected uring (or io_uring), \
                 fallback (or readiness) or auto; choosing the backend automatically"
            )
        });
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
    let leftovers: Vec<TaskRef> = lp
        .inner
        .tasks
        .borrow()
        .iter()
        .map(|(_, t)| TaskRef::from_raw(t.clone()))
        .collect();
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
    /// or `None` when the default one ([`default_exception_handler`]) is in use.
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
        let when = crate::time::add_clamped(self.time(), delay);
        self.call_at(when, f)
    }

    /// Schedules `f` at the loop time `when`. A past `when` runs in the next
    /// iteration, after earlier deadlines.
    pub fn call_at(&self, when: Instant, f: impl FnOnce() + 'static) -> Result<TimerHandle, LoopError> {
        self.inner.check_open()?;
        let cb = CallbackCell::new(crate::context::bind(Box::new(f)));
        let id = crate::time::schedule_timer(&self.inner, when, cb.clone());
        Ok(TimerHandle::new(cb, id, when, &self.inner))
    }

    /// Spawns `fut` as a task on this loop.
    pub fn create_task<F>(&self, fut: F) -> Result<Task<F::Output>, LoopError>
    where
        F: Future + 'static,
        F::Output: 'static,
    {
        self.inner.check_open()?;
        Ok(task::spawn_raw(&self.inner, OkWrap(fut)))
    }

    /// A new pending [`LoopFuture`](crate::LoopFuture) bound to this loop
    /// (asyncio's `loop.create_future()`; like it, works on a closed loop).
    pub fn create_future<T: 'static>(&self) -> crate::LoopFuture<T> {
        crate::LoopFuture::new(&self.inner)
    }

    /// Runs `f` on the loop's blocking thread pool; the result comes back
    /// through the cross-thread path.
    pub fn run_in_executor<T, F>(&self, f: F) -> Result<BlockingTask<T>, LoopError>
    where
        T: Send + 'static,
        F: FnOnce() -> T + Send + 'static,
    {
        self.inner.check_open()?;
        self.inner.pool.spawn(f).ok_or(LoopError::Closed)
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
    pub fn run_until_complete<F>(&self, fut: F) -> Result<F::Output, LoopError>
    where
        F: Future + 'static,
        F::Output: 'static,
    {
        self.check_can_run()?;
        let task = task::spawn_raw(&self.inner, OkWrap(fut));
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
        let tasks: Vec<Rc<dyn RawTask>> = self.inner.tasks.borrow_mut().drain().collect();
        for t in tasks {
            t.discard();
        }
        drop(self.inner.shared.take_remote());
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
