//! Many cores: one [`EventLoop`](crate::EventLoop) per thread, optionally
//! pinned to a CPU (thread-per-core, as monoio, glommio and seastar do).
//!
//! Each loop has its own ring (or reactor), tasks and timers; nothing is
//! shared but what the program shares. Loops talk through
//! [`CoresHandle::spawn_on`] (a `Send` future run on a named loop, its
//! output coming back through a `Send` [`RemoteTask`](crate::RemoteTask)),
//! [`CoresHandle::spawn_balanced`] (round robin) and the [`channel`]
//! module's `Send` channels. Connections are spread by the kernel: each
//! loop binds its own listener with `SO_REUSEPORT`
//! ([`TcpListener::bind_with`](crate::net::TcpListener::bind_with),
//! [`UdpSocket::bind_with`](crate::net::UdpSocket::bind_with)).
//!
//! ```
//! use ringloop::cores;
//!
//! let outputs = cores::Builder::new()
//!     .loops(2)
//!     .run(|idx| async move {
//!         let h = cores::handle().unwrap();
//!         // Ask the other loop for its index.
//!         let other = (idx.get() + 1) % idx.count();
//!         let task = h.spawn_on(other, async { cores::current_index().unwrap() }).unwrap();
//!         task.await.unwrap()
//!     })
//!     .unwrap();
//! assert_eq!(outputs, vec![Some(1), Some(0)]);
//! ```
//!
//! # Lifetime and shutdown
//!
//! [`Builder::run`] starts the threads, calls the factory on each loop's
//! thread with its [`LoopIndex`] and runs the returned future as that
//! loop's main task. A loop whose main future is done keeps running (other
//! loops may still spawn on it) until every loop's main future is done;
//! then every loop closes (tasks still pending are cancelled) and `run`
//! returns the outputs in loop order.
//!
//! [`CoresHandle::shutdown`] (also on Ctrl+C with [`Builder::ctrl_c`])
//! asks for a graceful stop: [`CoresHandle::shutdown_requested`] resolves
//! on every loop so servers stop accepting and finish, remote spawns are
//! refused, and a main future still running after
//! [`Builder::shutdown_timeout`] is dropped (its output is then `None`).
//! Once every main future is done, each loop lets its other tasks (e.g.
//! connections in flight) finish until that same deadline, then closes.
//! A panic in a loop's main future is caught, shuts the others down the
//! same way, and `run` returns [`CoresError::Panicked`] naming the loop.

mod affinity;
pub mod channel;
mod event;
mod handle;

use std::fmt;
use std::future::Future;
use std::io;
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::pin::pin;
use std::sync::mpsc;
use std::task::Poll;
use std::time::Duration;

pub use affinity::{Pinning, allowed_cpus, current_cpu};
pub use handle::{CoresHandle, current_index, handle};

use crate::driver::DriverChoice;
use crate::runtime::LoopError;
use event::FlagWait;

/// Process-wide counts of cross-thread wake-ups of io_uring loops by path
/// (diagnostics: which mechanism woke sleeping loops). A loop that sleeps
/// when work arrives from another thread is woken once; one that is awake
/// needs no wake-up and is not counted.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct WakeCounts {
    /// Wake-ups sent as `IORING_OP_MSG_RING` from a thread running an
    /// io_uring loop (no syscall on the receiver's side).
    pub sent_msg_ring: u64,
    /// Wake-ups sent by an eventfd write (other threads, the readiness
    /// backend's senders, or MSG_RING off/unsupported).
    pub sent_eventfd: u64,
    /// `MSG_RING` wake-up completions reaped by receiving loops.
    pub received_msg_ring: u64,
    /// Eventfd read (or poll) completions reaped by receiving loops.
    pub received_eventfd: u64,
}

/// The current [`WakeCounts`].
pub fn wake_counts() -> WakeCounts {
    let [sent_msg_ring, sent_eventfd, received_msg_ring, received_eventfd] = crate::driver::uring_wake_counts();
    WakeCounts {
        sent_msg_ring,
        sent_eventfd,
        received_msg_ring,
        received_eventfd,
    }
}

/// Which loop a per-loop factory call is for.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct LoopIndex {
    index: usize,
    count: usize,
}

impl LoopIndex {
    /// This loop's index, `0..count()`.
    pub fn get(self) -> usize {
        self.index
    }
    /// Number of loops in the runtime.
    pub fn count(self) -> usize {
        self.count
    }
}

impl From<LoopIndex> for usize {
    fn from(i: LoopIndex) -> usize {
        i.index
    }
}

/// Errors of the multi-loop runtime.
#[derive(Debug)]
pub enum CoresError {
    /// Loop `index` could not be set up (pinning or building its loop);
    /// no loop ran.
    Build {
        /// The loop.
        index: usize,
        /// Why.
        error: io::Error,
    },
    /// Loop `index`'s main future (or factory call) panicked; the other
    /// loops were shut down.
    Panicked {
        /// The loop.
        index: usize,
        /// The panic message (when it was a string).
        message: String,
    },
    /// Loop `index` failed (its run returned this error, or it refused a
    /// remote spawn).
    Loop {
        /// The loop.
        index: usize,
        /// Why.
        error: LoopError,
    },
    /// [`CoresHandle::spawn_on`] named a loop that does not exist.
    NoSuchLoop {
        /// The index asked for.
        index: usize,
        /// Number of loops.
        count: usize,
    },
    /// Shutdown was requested: no new remote work is accepted.
    ShuttingDown,
}

impl fmt::Display for CoresError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            CoresError::Build { index, error } => write!(f, "loop {index} could not be set up: {error}"),
            CoresError::Panicked { index, message } => write!(f, "loop {index} panicked: {message}"),
            CoresError::Loop { index, error } => write!(f, "loop {index} failed: {error}"),
            CoresError::NoSuchLoop { index, count } => write!(f, "no loop {index} (there are {count})"),
            CoresError::ShuttingDown => f.write_str("the runtime is shutting down"),
        }
    }
}

impl std::error::Error for CoresError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            CoresError::Build { error, .. } => Some(error),
            CoresError::Loop { error, .. } => Some(error),
            _ => None,
        }
    }
}

/// Configures and runs a multi-loop runtime.
#[derive(Clone, Debug)]
pub struct Builder {
    loops: Option<usize>,
    pinning: Pinning,
    loop_builder: crate::runtime::Builder,
    thread_name: String,
    shutdown_timeout: Duration,
    ctrl_c: bool,
}

impl Default for Builder {
    fn default() -> Self {
        Builder::new()
    }
}

impl Builder {
    /// Defaults: one loop per available core, no pinning, default loop
    /// options, threads named `ringloop-N`, 5 s shutdown timeout, Ctrl+C
    /// not handled.
    pub fn new() -> Builder {
        Builder {
            loops: None,
            pinning: Pinning::Off,
            loop_builder: crate::runtime::Builder::default(),
            thread_name: "ringloop".to_string(),
            shutdown_timeout: Duration::from_secs(5),
            ctrl_c: false,
        }
    }

    /// Number of loops (at least 1; default `available_parallelism`).
    pub fn loops(mut self, n: usize) -> Self {
        self.loops = Some(n.max(1));
        self
    }

    /// CPU pinning of the loop threads (default [`Pinning::Off`]).
    pub fn pinning(mut self, p: Pinning) -> Self {
        self.pinning = p;
        self
    }

    /// The options every loop is built with (driver, ring size, ...).
    pub fn loop_builder(mut self, b: crate::runtime::Builder) -> Self {
        self.loop_builder = b;
        self
    }

    /// Shortcut: every loop's backend.
    pub fn driver(mut self, choice: DriverChoice) -> Self {
        self.loop_builder = self.loop_builder.driver(choice);
        self
    }

    /// Shortcut: every loop's io_uring submission-queue size.
    pub fn ring_entries(mut self, entries: u32) -> Self {
        self.loop_builder = self.loop_builder.ring_entries(entries);
        self
    }

    /// Shortcut: every loop's io_uring data-path features; with
    /// `msg_ring` off, cross-loop wake-ups use the eventfd path.
    pub fn uring_features(mut self, features: crate::UringFeatures) -> Self {
        self.loop_builder = self.loop_builder.uring_features(features);
        self
    }

    /// Thread names are `{prefix}-{index}` (Linux keeps 15 bytes).
    pub fn thread_name(mut self, prefix: impl Into<String>) -> Self {
        self.thread_name = prefix.into();
        self
    }

    /// How long main futures may run after shutdown is requested before
    /// they are dropped (default 5 s).
    pub fn shutdown_timeout(mut self, d: Duration) -> Self {
        self.shutdown_timeout = d;
        self
    }

    /// Whether Ctrl+C (SIGINT) requests shutdown (default false). The
    /// handler is process-wide and stays installed afterwards (see
    /// [`signal::ctrl_c`](crate::signal::ctrl_c)).
    pub fn ctrl_c(mut self, on: bool) -> Self {
        self.ctrl_c = on;
        self
    }

    /// Number of loops this builder starts.
    pub fn loop_count(&self) -> usize {
        self.loops
            .unwrap_or_else(|| std::thread::available_parallelism().map_or(1, |n| n.get()))
    }

    /// Starts the loops, runs `factory(index)` on each loop's thread as its
    /// main future, and returns the outputs in loop order once every loop
    /// finished (see the [module docs](self)). `None` for a loop whose main
    /// future was dropped at the shutdown timeout.
    pub fn run<F, Fut>(self, factory: F) -> Result<Vec<Option<Fut::Output>>, CoresError>
    where
        F: Fn(LoopIndex) -> Fut + Send + Sync + 'static,
        Fut: Future + 'static,
        Fut::Output: Send + 'static,
    {
        let n = self.loop_count();
        let factory = std::sync::Arc::new(factory);
        let (setup_tx, setup_rx) = mpsc::channel();
        let mut starts = Vec::with_capacity(n);
        let mut threads = Vec::with_capacity(n);
        for index in 0..n {
            let cpu = match self.pinning.cpu_for(index) {
                Ok(c) => c,
                Err(error) => {
                    drop(starts);
                    join_all(threads);
                    return Err(CoresError::Build { index, error });
                }
            };
            let (start_tx, start_rx) = mpsc::channel::<CoresHandle>();
            starts.push(start_tx);
            let setup_tx = setup_tx.clone();
            let lb = self.loop_builder.clone();
            let factory = factory.clone();
            let ctrl_c = self.ctrl_c;
            let spawned = std::thread::Builder::new()
                .name(format!("{}-{index}", self.thread_name))
                .spawn(move || {
                    let li = LoopIndex { index, count: n };
                    loop_thread(li, cpu, lb, setup_tx, start_rx, ctrl_c, &*factory)
                });
            match spawned {
                Ok(t) => threads.push(t),
                Err(error) => {
                    drop(starts);
                    join_all(threads);
                    return Err(CoresError::Build { index, error });
                }
            }
        }
        drop(setup_tx);
        let mut handles: Vec<Option<crate::runtime::LoopHandle>> = (0..n).map(|_| None).collect();
        let mut failure = None;
        for _ in 0..n {
            match setup_rx.recv() {
                Ok((i, Ok(h))) => handles[i] = Some(h),
                Ok((i, Err(error))) => {
                    failure.get_or_insert(CoresError::Build { index: i, error });
                }
                Err(_) => break,
            }
        }
        if failure.is_none() && handles.iter().any(Option::is_none) {
            let index = handles.iter().position(Option::is_none).unwrap_or(0);
            failure = Some(CoresError::Panicked {
                index,
                message: "the loop thread ended during setup".into(),
            });
        }
        if let Some(e) = failure {
            drop(starts);
            join_all(threads);
            return Err(e);
        }
        let handle = CoresHandle::new(handles.into_iter().flatten().collect(), self.shutdown_timeout);
        for s in &starts {
            // A thread that is gone already is reported by its join below.
            let _ = s.send(handle.clone());
        }
        drop(starts);
        let mut outputs = Vec::with_capacity(n);
        let mut first_error = None;
        for (index, t) in threads.into_iter().enumerate() {
            let outcome = t.join().unwrap_or_else(|p| Outcome::Panicked(panic_message(&*p)));
            match outcome {
                Outcome::Done(v) => outputs.push(v),
                Outcome::NotStarted => outputs.push(None),
                Outcome::Panicked(message) => {
                    handle.shutdown();
                    outputs.push(None);
                    first_error.get_or_insert(CoresError::Panicked { index, message });
                }
                Outcome::Failed(error) => {
                    outputs.push(None);
                    first_error.get_or_insert(CoresError::Loop { index, error });
                }
            }
        }
        match first_error {
            Some(e) => Err(e),
            None => Ok(outputs),
        }
    }
}

/// Runs `factory` on a default [`Builder`] (one loop per core).
pub fn run<F, Fut>(factory: F) -> Result<Vec<Option<Fut::Output>>, CoresError>
where
    F: Fn(LoopIndex) -> Fut + Send + Sync + 'static,
    Fut: Future + 'static,
    Fut::Output: Send + 'static,
{
    Builder::new().run(factory)
}

enum Outcome<T> {
    Done(Option<T>),
    NotStarted,
    Panicked(String),
    Failed(LoopError),
}

fn join_all<T>(threads: Vec<std::thread::JoinHandle<T>>) {
    for t in threads {
        let _ = t.join();
    }
}

fn panic_message(p: &(dyn std::any::Any + Send)) -> String {
    if let Some(s) = p.downcast_ref::<&str>() {
        (*s).to_string()
    } else if let Some(s) = p.downcast_ref::<String>() {
        s.clone()
    } else {
        "(non-string panic payload)".to_string()
    }
}

/// Graceful shutdown's last step on a loop: lets its other tasks finish,
/// until `deadline` at most (checked every few milliseconds).
async fn drain_tasks(deadline: std::time::Instant) {
    // The task running this is one of them.
    while crate::runtime::all_tasks().len() > 1 {
        let now = std::time::Instant::now();
        if now >= deadline {
            return;
        }
        crate::time::sleep((deadline - now).min(Duration::from_millis(5))).await;
    }
}

type SetupMsg = (usize, io::Result<crate::runtime::LoopHandle>);

fn loop_thread<F, Fut>(
    li: LoopIndex,
    cpu: Option<usize>,
    lb: crate::runtime::Builder,
    setup_tx: mpsc::Sender<SetupMsg>,
    start_rx: mpsc::Receiver<CoresHandle>,
    ctrl_c: bool,
    factory: &F,
) -> Outcome<Fut::Output>
where
    F: Fn(LoopIndex) -> Fut,
    Fut: Future + 'static,
    Fut::Output: Send + 'static,
{
    let index = li.index;
    let built = cpu
        .map_or(Ok(()), affinity::pin_current_thread)
        .and_then(|()| lb.build());
    let lp = match built {
        Ok(lp) => lp,
        Err(e) => {
            let _ = setup_tx.send((index, Err(e)));
            return Outcome::NotStarted;
        }
    };
    // Installed before any loop runs user code, so a SIGINT from then on
    // requests shutdown.
    let ctrl = (ctrl_c && index == 0).then(crate::signal::ctrl_c);
    let _ = setup_tx.send((index, Ok(lp.handle())));
    drop(setup_tx);
    // No handle: another loop failed to set up; this one never runs.
    let Ok(handle) = start_rx.recv() else {
        return Outcome::NotStarted;
    };
    handle::set_current(Some((handle.clone(), index)));
    let h = handle.clone();
    let result = catch_unwind(AssertUnwindSafe(|| {
        let main = factory(li);
        lp.run_until_complete(async move {
            if let Some(ctrl) = ctrl {
                let h2 = h.clone();
                crate::runtime::spawn(async move {
                    // Ends with the shutdown, however requested (it must
                    // not hold the final drain until the deadline).
                    let mut ctrl = pin!(ctrl);
                    let mut stop = pin!(h2.shutdown_requested());
                    let delivered = std::future::poll_fn(|cx| {
                        if let Poll::Ready(r) = ctrl.as_mut().poll(cx) {
                            return Poll::Ready(r.is_ok());
                        }
                        stop.as_mut().poll(cx).map(|()| false)
                    })
                    .await;
                    if delivered {
                        h2.shutdown();
                    }
                })
                .detach();
            }
            let main = pin!(main);
            let abort = pin!(async {
                FlagWait::new(&h.inner.shutdown).await;
                if let Some(deadline) = h.shutdown_deadline() {
                    crate::time::sleep_until(deadline).await;
                }
            });
            let (mut main, mut abort) = (main, abort);
            let out = std::future::poll_fn(|cx| {
                if let Poll::Ready(v) = main.as_mut().poll(cx) {
                    return Poll::Ready(Some(v));
                }
                if abort.as_mut().poll(cx).is_ready() {
                    return Poll::Ready(None);
                }
                Poll::Pending
            })
            .await;
            h.mark_finished(index);
            FlagWait::new(&h.inner.all_finished).await;
            if let Some(deadline) = h.shutdown_deadline() {
                drain_tasks(deadline).await;
            }
            out
        })
    }));
    handle.mark_finished(index);
    let outcome = match result {
        Ok(Ok(out)) => Outcome::Done(out),
        Ok(Err(e)) => {
            handle.shutdown();
            Outcome::Failed(e)
        }
        Err(p) => {
            handle.shutdown();
            Outcome::Panicked(panic_message(&*p))
        }
    };
    handle::set_current(None);
    drop(lp);
    outcome
}
