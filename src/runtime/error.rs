//! The loop's errors and the exception handler's vocabulary.

use std::fmt;
use std::io;
use std::rc::Rc;
use std::time::Duration;

use crate::task::TaskRef;

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
    /// An I/O error a background task could not hand to anyone (a
    /// [`Server`](crate::protocols::Server)'s accept failed, e.g. EMFILE).
    IoError,
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

/// A custom exception handler, as [`EventLoop::get_exception_handler`](super::EventLoop::get_exception_handler) returns it.
pub type ExceptionHandler = Rc<dyn Fn(&ExceptionContext)>;

/// The default exception handler: logs to stderr, or, with the `tracing`
/// feature while a `tracing` subscriber is installed, emits a `tracing`
/// event of target `"ringloop"`.
///
/// The event is a WARN for [`ExceptionKind::SlowCallback`] (with a
/// `duration_ms` field) and an ERROR otherwise; its fields are `message`,
/// `kind`, `task.name` and `task.id` (when a task is involved) and
/// `panic` (the panic message, when a panic is involved).
pub fn default_exception_handler(ctx: &ExceptionContext) {
    #[cfg(feature = "tracing")]
    if crate::debug::tracing_active() {
        trace_exception(ctx);
        return;
    }
    match &ctx.panic_message {
        Some(p) if !ctx.message.contains(p.as_str()) => eprintln!("ringloop: {} (panic: {p})", ctx.message),
        _ => eprintln!("ringloop: {}", ctx.message),
    }
}

#[cfg(feature = "tracing")]
fn trace_exception(ctx: &ExceptionContext) {
    let name = ctx.task.as_ref().map(TaskRef::name);
    let name = name.as_deref();
    let id = ctx.task.as_ref().map(TaskRef::id);
    let panic = ctx.panic_message.as_deref();
    let kind = match &ctx.kind {
        ExceptionKind::CallbackPanicked => "callback_panicked",
        ExceptionKind::TaskPanicNotRetrieved => "task_panic_not_retrieved",
        ExceptionKind::SlowCallback(_) => "slow_callback",
        ExceptionKind::DriverError => "driver_error",
        ExceptionKind::IoError => "io_error",
    };
    match &ctx.kind {
        ExceptionKind::SlowCallback(took) => tracing::warn!(
            target: "ringloop",
            kind,
            task.name = name,
            task.id = id,
            duration_ms = took.as_secs_f64() * 1e3,
            "{}",
            ctx.message
        ),
        _ => tracing::error!(
            target: "ringloop",
            kind,
            task.name = name,
            task.id = id,
            panic,
            "{}",
            ctx.message
        ),
    }
}
