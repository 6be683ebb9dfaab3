//! Synchronization primitives for tasks of one loop, mirroring asyncio's
//! `Lock`, `Event`, `Condition`, `Semaphore`, `BoundedSemaphore`, `Barrier`,
//! `Queue`, `LifoQueue` and `PriorityQueue`.
//!
//! All of them are loop-local: they are `!Send`, keep their state in
//! `Rc`/`Cell`/`RefCell` (no atomics, no mutexes), and need nothing from the
//! runtime but [`std::task::Waker`], so they also work under any other
//! single-threaded executor. Clones share state.
//!
//! Common rules, which every primitive follows:
//!
//! * **Uncontended operations do not yield**: a `lock()`, `acquire()`,
//!   `wait()` on a set event, `put()` to a non-full queue or `get()` from a
//!   non-empty one completes on its first poll.
//! * **FIFO, no barging**: waiters are served in the order they started
//!   waiting. Whatever is released while someone waits (the lock, a
//!   semaphore unit, a queue item or slot) is reserved for the first waiter,
//!   and a newcomer, including the `try_*` / `*_nowait` methods, cannot take
//!   it first, even before the woken waiter has run.
//! * **Cancellation is dropping**: a waiting future that is dropped leaves
//!   the line. If it had already been woken (and so holds a reservation),
//!   the wakeup passes on to the next waiter, so nothing is lost.
//! * **No panics on misuse**: misuse is reported with the small error types
//!   re-exported here. Polling a completed future does not panic either:
//!   futures that hand out a guard, permit or item return `Pending`, the
//!   others `Ready(())` again.
//!
//! Differences from asyncio, and why:
//!
//! * Nothing binds to a loop (asyncio raises `RuntimeError` when one object
//!   is used from two loops). The types are `!Send`, so they cannot leave
//!   their thread, and one thread runs one loop at a time.
//! * There is no `release()` on [`Lock`]; a [`LockGuard`] releases on drop,
//!   so asyncio's "release of an unlocked lock" cannot be written.
//! * [`Condition::wait`] consumes the guard and returns a new one. Dropped
//!   mid-wait it does not re-acquire the lock (see [`Condition`]); a
//!   notified waiter that is dropped passes its notification on (asyncio
//!   3.13 behaviour; 3.11 loses it).
//! * [`Semaphore::new`] takes a `usize`, so a negative initial value (an
//!   asyncio `ValueError`) cannot be expressed.
//! * Queue `put_nowait`/`get_nowait` refuse to barge past a woken waiter,
//!   where asyncio lets them; `qsize`/`empty`/`full`/`locked` still report
//!   what asyncio does. [`Lock::try_lock`] and `try_acquire` (which asyncio
//!   lacks) follow the same rule.
//! * [`PriorityQueue`] returns equal items in put order.
//!
//! ```
//! use ringloop::sync::{Queue, TryGetError};
//!
//! let q = Queue::new(2);
//! q.put_nowait("a").unwrap();
//! q.put_nowait("b").unwrap();
//! assert_eq!(q.put_nowait("c").unwrap_err().into_inner(), "c");
//! assert_eq!(q.get_nowait(), Ok("a"));
//! assert_eq!(q.get_nowait(), Ok("b"));
//! assert!(matches!(q.get_nowait(), Err(TryGetError::Empty(_))));
//! q.shutdown(false);
//! assert!(q.put_nowait("d").unwrap_err().is_shut_down());
//! assert!(q.get_nowait().unwrap_err().is_shut_down());
//! ```
#![warn(missing_docs)]
#![forbid(unsafe_code)]

mod barrier;
mod condition;
mod error;
mod event;
mod lock;
mod queue;
mod semaphore;
mod wait_list;

#[cfg(test)]
mod test_exec;
#[cfg(test)]
mod tests;

pub use barrier::{Barrier, BarrierWait};
pub use condition::Condition;
pub use error::{
    BoundedReleaseError, BrokenBarrierError, ForeignGuard, NotHeld, QueueEmpty, QueueFull, QueueShutDown,
    TaskDoneError, TryGetError, TryPutError,
};
pub use event::{Event, EventWait};
pub use lock::{Lock, LockFuture, LockGuard};
pub use queue::{
    Discipline, Fifo, GenericQueue, Lifo, LifoQueue, Priority, PriorityQueue, Queue, QueueGet, QueueJoin, QueuePut,
    QueueStream,
};
pub use semaphore::{BoundedSemaphore, Semaphore, SemaphoreAcquire, SemaphorePermit};
