//! ringloop: an asyncio-shaped event loop for Rust.
//!
//! On Linux the loop drives io_uring directly; everywhere else (and where
//! io_uring is unavailable or forbidden) a fallback backend
//! (`ringloop-fallback`: epoll / kqueue / poll via `polling`) runs the same
//! task, timer, gather and wait APIs.
//!
//! ```
//! use ringloop::{EventLoop, gather, sleep};
//! use std::time::Duration;
//!
//! let lp = EventLoop::new().unwrap();
//! let results = lp
//!     .run_until_complete(async {
//!         let jobs = (1..=3u64).map(|i| async move {
//!             sleep(Duration::from_millis(10 * i)).await;
//!             i * 10
//!         });
//!         gather(jobs).await.unwrap()
//!     })
//!     .unwrap();
//! assert_eq!(results, vec![10, 20, 30]);
//! println!("ran on the {} backend", lp.driver_kind());
//! ```
//!
//! # Attribute macros
//!
//! [`macro@main`] runs an `async fn main()` on a new loop ([`run`]):
//!
//! ```
//! #[ringloop::main]
//! async fn main() -> std::io::Result<()> {
//!     ringloop::sleep(std::time::Duration::from_millis(1)).await;
//!     Ok(())
//! }
//! ```
//!
//! [`macro@test`] turns an `async fn name()` (the loop's main future) or a
//! `fn name(lp: &EventLoop)` (which drives the loop itself) into the tests
//! `name::uring` and `name::fallback`. Options: `backend = "uring"` /
//! `"fallback"` / `"both"` (default), `virtual_clock` (timers jump instead of
//! sleeping), `slow_callback_ms = N` (debug mode; the test fails if any
//! callback or task step blocked the loop N ms or longer). The io_uring test
//! prints `SKIP [uring]: ...` and passes where io_uring cannot be set up,
//! unless `RINGLOOP_REQUIRE_URING=1`.
//!
//! ```
//! # use ringloop::EventLoop;
//! #[ringloop::test(virtual_clock)]
//! async fn an_hour_passes_at_once() {
//!     ringloop::sleep(std::time::Duration::from_secs(3600)).await;
//! }
//!
//! #[ringloop::test(slow_callback_ms = 50)]
//! fn no_callback_blocks(lp: &EventLoop) {
//!     lp.run_until_complete(async { ringloop::spawn(async { 1 }).await }).unwrap().unwrap();
//! }
//! ```
#![deny(unsafe_op_in_unsafe_fn)]
#![warn(missing_docs)]

pub mod blocking;
pub mod buf;
pub mod combinators;
pub mod context;
pub mod cores;
mod debug;
pub mod dns;
mod driver;
pub mod fs;
pub mod future;
#[cfg(feature = "hyper")]
pub mod hyper;
mod io;
pub mod net;
pub mod process;
pub mod protocols;
pub mod runtime;
pub mod signal;
pub mod streams;
pub mod sync;
pub mod task;
pub mod thread_bound;
mod thread_pool;
pub mod time;
mod timer;
#[cfg(feature = "tls")]
pub mod tls;
pub mod watch;

/// Runtime side of the attribute macros (what their expansions call).
#[doc(hidden)]
pub mod __macros;

pub use ringloop_macros::{main, test};

pub use blocking::{BlockingTask, spawn_blocking};
pub use buf::{AsyncReadOwned, AsyncWriteOwned};
pub use combinators::{ReturnWhen, WaitError, gather, gather_settled, gather_tasks, gather_tasks_settled, wait};
pub use combinators::{TaskGroup, TaskGroupError, as_completed, shield, task_group};
pub use context::ContextVar;
pub use driver::{DriverChoice, DriverKind, UringFeatures};
pub use future::{CallbackId, FutureError, InvalidStateError, LoopFuture, create_future};
pub use runtime::{
    Builder, EventLoop, ExceptionContext, ExceptionKind, Handle, LoopError, LoopHandle, LoopMetrics, RemoteTask,
    TimerHandle, current, default_exception_handler, run,
};
pub use runtime::{all_tasks, current_task, spawn, task_dump, try_spawn};
pub use task::{CancelOnDrop, DoneCallbackId, Task, TaskDump, TaskError, TaskInfo, TaskRef, TaskState};
pub use thread_bound::{ThreadBound, WrongThread};
pub use time::{Elapsed, Interval, MissedTicks, Sleep, interval, sleep, sleep_until, timeout, timeout_at, yield_now};

/// The traits most programs need in scope: `use ringloop::prelude::*;`.
pub mod prelude {
    pub use crate::buf::{AsyncReadOwned, AsyncWriteOwned, IoBuf, IoBufMut};
}

/// The README's code blocks, compiled and run as doctests so they stay true.
#[doc = include_str!("../README.md")]
#[cfg(doctest)]
pub struct ReadmeDoctests;
