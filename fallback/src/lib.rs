//! `ringloop-fallback`: the portable readiness reactor behind ringloop's
//! non-io_uring backend.
//!
//! This crate knows nothing about ringloop's tasks, timers or loop. It offers
//! exactly three things on top of the OS poller (direct epoll on Linux;
//! elsewhere the [`polling`] crate: kqueue, event ports, IOCP or plain
//! `poll(2)`, chosen per OS):
//!
//! 1. [`Reactor::wait`]: block for at most a timeout, then wake the
//!    [`Waker`](std::task::Waker)s of every source whose readiness fired;
//! 2. [`Notifier`]: a `Send + Sync` handle that makes a concurrent or the next
//!    `wait` return promptly (cross-thread wake-up);
//! 3. registration of raw sources and per-direction waits
//!    ([`Reactor::register`], [`Reactor::poll_ready_tracked`],
//!    [`Reactor::deregister`]).
//!
//! The intended I/O pattern ("emulated completion"): try the non-blocking
//! syscall; on `EAGAIN` call [`Reactor::clear_ready`] and then
//! [`Reactor::poll_ready_tracked`], which stores the waker; when woken, retry
//! the syscall. Two modes implement this, chosen by [`Reactor::new`]:
//!
//! * **Edge-triggered** (Linux epoll, kqueue): each source is registered once
//!   with read and write interest and never re-armed. The reactor caches, per
//!   source and direction, whether the direction may be ready: set when
//!   [`Reactor::wait`] sees an event for it (with or without a waiter),
//!   cleared by [`Reactor::clear_ready`] (the caller's syscall said `EAGAIN`)
//!   or [`Reactor::note_short_read`]. While it is clear a caller may wait
//!   first instead of paying a failing syscall ([`Reactor::is_ready`]).
//!   Because events are only processed inside `wait`, a readiness change
//!   after the failed syscall is still queued in the kernel and reported by
//!   the next `wait`, so clearing right after `EAGAIN` loses nothing.
//! * **One-shot** (`polling`'s `poll(2)`, event ports, IOCP): interest is
//!   armed per wait and disarmed by each report; arming re-evaluates the
//!   current readiness in the OS, so a change between the failed syscall
//!   and the arming is never lost. [`Reactor::is_ready`] is always `true`
//!   and the clearing calls do nothing.
//!
//! ```
//! use ringloop_fallback::Reactor;
//! use std::time::Duration;
//!
//! let reactor = Reactor::new().unwrap();
//! let notifier = reactor.notifier();
//! std::thread::spawn(move || notifier.notify());
//! // Returns as soon as the other thread notifies (or after 5 s at worst).
//! reactor.wait(Some(Duration::from_secs(5))).unwrap();
//! ```

#![deny(unsafe_op_in_unsafe_fn)]
#![warn(missing_docs)]

mod reactor;
mod source;
mod sys;
#[cfg(all(any(target_os = "linux", target_os = "android"), not(polling_test_poll_backend)))]
mod sys_epoll;
#[cfg(all(test, unix))]
mod tests;

pub use reactor::{Notifier, Reactor};
pub use source::WaitToken;
pub use sys::{RawSource, backend_name};

/// Which readiness a caller waits for.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Direction {
    /// The source is readable (or has an error / hang-up pending).
    Read,
    /// The source is writable (or has an error / hang-up pending).
    Write,
}
