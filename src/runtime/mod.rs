//! The event loop: asyncio's `BaseEventLoop` with `_run_once`.
//!
//! `error` (LoopError, exception handler types), `builder` (Builder),
//! `inner` (LoopInner, the iteration), `event_loop` (the public API),
//! `handle` (Handle/TimerHandle), `shared` (the cross-thread queue),
//! `loop_handle` (LoopHandle, remote spawn), `tasks` (spawning, the
//! schedule / loop hooks tasks call back, the task dump), `metrics`
//! (LoopMetrics).

mod builder;
mod error;
mod event_loop;
mod handle;
mod inner;
mod loop_handle;
mod metrics;
mod shared;
mod tasks;

pub use builder::Builder;
pub use error::{ExceptionContext, ExceptionHandler, ExceptionKind, LoopError, default_exception_handler};
pub use event_loop::{EventLoop, current, run};
pub(crate) use handle::CallbackCell;
pub use handle::{Handle, TimerHandle};
pub(crate) use inner::{LoopInner, TimerAction, Timers, cancel_timer, current_inner};
pub use loop_handle::{LoopHandle, RemoteTask};
pub use metrics::LoopMetrics;
pub(crate) use shared::Shared;
pub use tasks::{all_tasks, current_task, spawn, task_dump, try_spawn};
pub(crate) use tasks::{spawn_raw, try_spawn_at};
