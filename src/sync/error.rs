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
