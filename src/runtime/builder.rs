//! `Builder`: configures and builds an `EventLoop`.

use std::cell::{Cell, RefCell};
use std::collections::VecDeque;
use std::io;
use std::rc::Rc;
use std::sync::Arc;
use std::time::Duration;

use slab::Slab;

use super::inner::{DEFAULT, LoopInner};
use super::{EventLoop, Shared};
use crate::debug::debug_log;
use crate::driver::{Driver, DriverChoice, UringConfig};
use crate::thread_pool::{BlockingPool, PoolConfig};
use crate::timer::{Clock, TimerQueue};

/// Configures and builds an [`EventLoop`].
#[derive(Clone, Debug, Default)]
pub struct Builder {
    driver: DriverChoice,
    uring: UringConfig,
    virtual_clock: bool,
    debug: Option<bool>,
    slow_callback: Option<Duration>,
    pool: PoolConfig,
    task_cache_limit: Option<usize>,
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
    /// The io_uring receive pools used by `recv_stream` and
    /// `recv_from_stream`: the number of buffers each starts with (a power
    /// of two, at most 32768) and their size. Each pool is registered on
    /// first use; stream and datagram receives have one each, so a loop
    /// that uses both holds two. A pool grows by this many buffers when a
    /// receive finds every buffer out, up to
    /// [`recv_pool_limit`](Self::recv_pool_limit). Default: where the
    /// kernel consumes stream buffers incrementally (6.12,
    /// [`UringFeatures::incremental_recv`](crate::UringFeatures::incremental_recv)),
    /// 16 buffers of 64 KiB for streams (small receives share a buffer, a
    /// large message fills one at once); otherwise, and for datagrams, 256
    /// of 4 KiB. With 0 buffers, pooled receives use single-shot receives
    /// into heap buffers.
    pub fn recv_pool(mut self, buffers: u16, buffer_size: u32) -> Self {
        self.uring.recv_pool = Some((buffers, buffer_size));
        self
    }
    /// The most bytes each io_uring receive pool grows to (default 32 MiB;
    /// rounded down to a power-of-two number of buffers, at most 32768):
    /// when a multishot receive finds
    /// every buffer out (`ENOBUFS`: the application holds them, or many
    /// connections receive at once), the pool adds another step of
    /// buffers (the starting number of [`recv_pool`](Self::recv_pool))
    /// and the receive goes on; at the limit that receive goes to a heap
    /// buffer instead. The memory stays with the loop. A limit at or below
    /// the starting size keeps the pool at that size.
    pub fn recv_pool_limit(mut self, bytes: usize) -> Self {
        self.uring.recv_pool_limit = bytes;
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
    /// Size of the io_uring fixed-file table in which sockets the loop
    /// accepts or creates are installed (default 4096, capped at the soft
    /// `RLIMIT_NOFILE`; 0 turns fixed files off). Sockets beyond it use
    /// their plain fds.
    pub fn fixed_files(mut self, slots: u32) -> Self {
        self.uring.fixed_files = slots;
        self
    }
    /// How many bytes of freed task memory the loop's thread keeps for
    /// reuse by later spawns (default
    /// [`DEFAULT_TASK_CACHE_LIMIT`](crate::task::DEFAULT_TASK_CACHE_LIMIT),
    /// 16 MiB, or `RINGLOOP_TASK_CACHE_LIMIT` in bytes; 0 turns the cache
    /// off, e.g. to let AddressSanitizer see every freed task). Tasks up to
    /// 1 KiB with alignment ≤ 16 are kept; the cache belongs to the
    /// thread, so the latest loop built on it sets the limit, and closing a
    /// loop empties it.
    pub fn task_cache_limit(mut self, bytes: usize) -> Self {
        self.task_cache_limit = Some(bytes);
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
    /// io_uring selects the fallback backend; an explicit choice errors.
    pub fn build(self) -> io::Result<EventLoop> {
        if self.driver == DriverChoice::Auto {
            warn_on_unknown_driver_env();
        }
        let driver = Driver::build(self.driver, &self.uring)?;
        crate::task::set_task_cache_limit(self.task_cache_limit.unwrap_or_else(task_cache_limit_from_env));
        let shared = Arc::new(Shared::new(driver.notifier()));
        let debug = self
            .debug
            .unwrap_or_else(|| std::env::var("RINGLOOP_ASYNC_DEBUG").map(|v| v == "1").unwrap_or(false));
        let inner = Rc::new_cyclic(|me: &std::rc::Weak<LoopInner>| LoopInner {
            sched_hook: crate::task::SchedHook::new(shared.clone(), me.clone()),
            shared,
            driver,
            ready: RefCell::new(VecDeque::with_capacity(64)),
            timers: RefCell::new(TimerQueue::default()),
            clock: Clock::new(self.virtual_clock),
            tasks: RefCell::new(Slab::new()),
            task_ids: Default::default(),
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
        inner.driver.set_task_hook(inner.sched_hook.clone());
        debug_log(format_args!(
            "ringloop: event loop on the {} backend",
            inner.driver.kind()
        ));
        DEFAULT.with(|d| *d.borrow_mut() = Rc::downgrade(&inner));
        Ok(EventLoop { inner, owner: true })
    }
}

/// `RINGLOOP_TASK_CACHE_LIMIT` (bytes) if set and valid, else the default.
fn task_cache_limit_from_env() -> usize {
    match std::env::var("RINGLOOP_TASK_CACHE_LIMIT") {
        Ok(v) => v.trim().parse().unwrap_or_else(|_| {
            static WARNED: std::sync::Once = std::sync::Once::new();
            WARNED.call_once(|| {
                crate::debug::warn_log(format_args!(
                    "ringloop: ignoring RINGLOOP_TASK_CACHE_LIMIT={v:?}: expected a number of bytes"
                ))
            });
            crate::task::DEFAULT_TASK_CACHE_LIMIT
        }),
        Err(_) => crate::task::DEFAULT_TASK_CACHE_LIMIT,
    }
}

/// Warns once per process (stderr, or a `tracing` event) when `RINGLOOP_DRIVER` holds a value
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
            crate::debug::warn_log(format_args!(
                "ringloop: ignoring RINGLOOP_DRIVER={v:?}: expected uring (or io_uring), \
                 fallback (or readiness) or auto; choosing the backend automatically"
            ))
        });
    }
}
