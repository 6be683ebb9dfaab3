//! Error types of [`crate::sync`].
//!
//! Each maps one of asyncio's exceptions (see the item docs). All are small,
//! `#[non_exhaustive]`, and implement [`std::error::Error`]; none of the
//! primitives ever panics on misuse.

use std::error::Error;
use std::fmt;

use super::lock::LockGuard;

/// [`put_nowait`](super::GenericQueue::put_nowait) found the queue full
/// (asyncio's `QueueFull`). The rejected item is handed back.
#[non_exhaustive]
pub struct QueueFull<T> {
    item: T,
}

impl<T> QueueFull<T> {
    pub(crate) fn new(item: T) -> Self {
        QueueFull { item }
    }

    /// The item that could not be put.
    pub fn item(&self) -> &T {
        &self.item
    }

    /// Take back the item that could not be put.
    pub fn into_inner(self) -> T {
        self.item
    }
}

impl<T> fmt::Debug for QueueFull<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("QueueFull").finish_non_exhaustive()
    }
}

impl<T> fmt::Display for QueueFull<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("queue is full")
    }
}

impl<T> Error for QueueFull<T> {}

/// [`get_nowait`](super::GenericQueue::get_nowait) found the queue empty
/// (asyncio's `QueueEmpty`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
#[non_exhaustive]
pub struct QueueEmpty;

impl fmt::Display for QueueEmpty {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("queue is empty")
    }
}

impl Error for QueueEmpty {}

/// [`task_done`](super::GenericQueue::task_done) was called more times than
/// items were put (asyncio raises `ValueError`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
#[non_exhaustive]
pub struct TaskDoneError;

impl fmt::Display for TaskDoneError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("task_done() called too many times")
    }
}

impl Error for TaskDoneError {}

/// [`BoundedSemaphore::release`](super::BoundedSemaphore::release) would
/// raise the count above its initial value (asyncio raises `ValueError`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
#[non_exhaustive]
pub struct BoundedReleaseError;

impl fmt::Display for BoundedReleaseError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("BoundedSemaphore released too many times")
    }
}

impl Error for BoundedReleaseError {}

/// [`Condition::notify`](super::Condition::notify) or
/// [`notify_all`](super::Condition::notify_all) was called while the
/// condition's lock was not held (asyncio raises `RuntimeError`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
#[non_exhaustive]
pub struct NotHeld;

impl fmt::Display for NotHeld {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("cannot notify on un-acquired lock")
    }
}

impl Error for NotHeld {}

/// [`Condition::wait`](super::Condition::wait) or
/// [`wait_for`](super::Condition::wait_for) was given a guard of a different
/// lock than the condition's. The guard is handed back, still held.
#[non_exhaustive]
pub struct ForeignGuard {
    guard: LockGuard,
}

impl ForeignGuard {
    pub(crate) fn new(guard: LockGuard) -> Self {
        ForeignGuard { guard }
    }

    /// Take back the guard (the other lock is still held by it).
    pub fn into_guard(self) -> LockGuard {
        self.guard
    }
}

impl fmt::Debug for ForeignGuard {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ForeignGuard").finish_non_exhaustive()
    }
}

impl fmt::Display for ForeignGuard {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("guard belongs to a different lock than the condition's")
    }
}

impl Error for ForeignGuard {}

/// The queue was shut down with
/// [`shutdown`](super::GenericQueue::shutdown) (Python 3.13's
/// `QueueShutDown`): a put after shutdown, or a get once a shut-down queue
/// is empty. A rejected put hands its item back (`T`); for gets `T` is `()`.
#[non_exhaustive]
pub struct QueueShutDown<T = ()> {
    item: T,
}

impl<T> QueueShutDown<T> {
    pub(crate) fn new(item: T) -> Self {
        QueueShutDown { item }
    }

    /// The item that could not be put (`()` for a get).
    pub fn item(&self) -> &T {
        &self.item
    }

    /// Take back the item that could not be put (`()` for a get).
    pub fn into_inner(self) -> T {
        self.item
    }
}

impl<T> fmt::Debug for QueueShutDown<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("QueueShutDown").finish_non_exhaustive()
    }
}

impl<T> fmt::Display for QueueShutDown<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("queue is shut down")
    }
}

impl<T: Clone> Clone for QueueShutDown<T> {
    fn clone(&self) -> Self {
        QueueShutDown::new(self.item.clone())
    }
}

impl<T> PartialEq for QueueShutDown<T> {
    /// All `QueueShutDown` errors are equal (the item is not compared).
    fn eq(&self, _other: &Self) -> bool {
        true
    }
}

impl<T> Eq for QueueShutDown<T> {}

impl<T> Error for QueueShutDown<T> {}

/// Why [`put_nowait`](super::GenericQueue::put_nowait) failed; either way
/// the item is handed back.
pub enum TryPutError<T> {
    /// The queue is full (asyncio's `QueueFull`).
    Full(QueueFull<T>),
    /// The queue was shut down (Python 3.13's `QueueShutDown`).
    ShutDown(QueueShutDown<T>),
}

impl<T> TryPutError<T> {
    /// Take back the item that could not be put.
    pub fn into_inner(self) -> T {
        match self {
            TryPutError::Full(e) => e.into_inner(),
            TryPutError::ShutDown(e) => e.into_inner(),
        }
    }

    /// The item that could not be put.
    pub fn item(&self) -> &T {
        match self {
            TryPutError::Full(e) => e.item(),
            TryPutError::ShutDown(e) => e.item(),
        }
    }

    /// Whether the queue was full.
    pub fn is_full(&self) -> bool {
        matches!(self, TryPutError::Full(_))
    }

    /// Whether the queue was shut down.
    pub fn is_shut_down(&self) -> bool {
        matches!(self, TryPutError::ShutDown(_))
    }
}

impl<T> fmt::Debug for TryPutError<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            TryPutError::Full(e) => f.debug_tuple("Full").field(e).finish(),
            TryPutError::ShutDown(e) => f.debug_tuple("ShutDown").field(e).finish(),
        }
    }
}

impl<T> fmt::Display for TryPutError<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            TryPutError::Full(e) => e.fmt(f),
            TryPutError::ShutDown(e) => e.fmt(f),
        }
    }
}

impl<T> Error for TryPutError<T> {}

/// Why [`get_nowait`](super::GenericQueue::get_nowait) failed.
#[derive(Debug, PartialEq)]
pub enum TryGetError {
    /// Nothing to take right now (asyncio's `QueueEmpty`).
    Empty(QueueEmpty),
    /// The queue was shut down and is empty (Python 3.13's `QueueShutDown`).
    ShutDown(QueueShutDown),
}

impl TryGetError {
    /// Whether the queue was (momentarily) empty.
    pub fn is_empty(&self) -> bool {
        matches!(self, TryGetError::Empty(_))
    }

    /// Whether the queue is shut down (and empty): no item will ever come.
    pub fn is_shut_down(&self) -> bool {
        matches!(self, TryGetError::ShutDown(_))
    }
}

impl fmt::Display for TryGetError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            TryGetError::Empty(e) => e.fmt(f),
            TryGetError::ShutDown(e) => e.fmt(f),
        }
    }
}

impl Error for TryGetError {}

/// [`Barrier::wait`](super::Barrier::wait) failed because the barrier was
/// aborted, or reset while the task waited (asyncio's `BrokenBarrierError`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
#[non_exhaustive]
pub struct BrokenBarrierError;

impl fmt::Display for BrokenBarrierError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("barrier is broken (aborted or reset)")
    }
}

impl Error for BrokenBarrierError {}
