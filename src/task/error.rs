//! Why a task produced no value. A leaf module: it imports nothing from the
//! crate, so every layer (blocking pool, runtime, combinators) can use it.

use std::any::Any;
use std::fmt;

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

/// The message of a panic payload, when it is a string.
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
