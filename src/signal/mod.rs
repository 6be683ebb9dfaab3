//! Unix signals as futures and streams (asyncio's `loop.add_signal_handler`,
//! tokio's `tokio::signal`).
//!
//! ```no_run
//! use ringloop::EventLoop;
//! use ringloop::signal::{self, SignalKind};
//!
//! let lp = EventLoop::new().unwrap();
//! lp.run_until_complete(async {
//!     let mut hangups = signal::signal(SignalKind::hangup()).unwrap();
//!     while hangups.recv().await.is_some() {
//!         println!("got SIGHUP: reloading");
//!     }
//! })
//! .unwrap();
//! ```
//!
//! # Semantics
//!
//! * [`signal(kind)`](signal) registers at once and returns a [`Signal`]
//!   stream that yields `()` for deliveries **after** it was created.
//!   Deliveries between two polls are coalesced into one item (the kernel
//!   coalesces pending signals too). Any number of streams, on any number of
//!   loops and threads, may listen to the same signal: each sees every
//!   delivery.
//! * [`ctrl_c()`] returns a future resolving at the next SIGINT. It registers
//!   when called, not when first polled (tokio registers at the first poll),
//!   so a SIGINT that arrives between the call and the first poll is not
//!   missed — nor does it kill the process.
//! * **The first registration for a signal replaces its default action for
//!   the whole process, for good**: after `ctrl_c()` has been called once,
//!   SIGINT no longer terminates the program, even once every stream is
//!   dropped (deliveries are then simply counted). tokio does the same;
//!   asyncio restores the default in `remove_signal_handler`, which is only
//!   sound with a single loop in the main thread. A handler that was
//!   installed before ours (by the program or another library) is chained:
//!   it still runs, after ours.
//! * SIGKILL, SIGSTOP, SIGILL, SIGFPE and SIGSEGV are refused
//!   (`InvalidInput`), as in tokio/signal-hook.
//!
//! # Design: a self-pipe on both backends, not signalfd
//!
//! A `sigaction` handler (installed once per signal number and process)
//! increments an atomic per-signal counter and writes one byte to a
//! process-wide non-blocking pipe; that is all it does (plus chaining), so it
//! is async-signal-safe. Each stream owns a `dup` of the pipe's read end and
//! waits for it to become readable through its loop's driver — a one-shot
//! `IORING_OP_POLL_ADD` on io_uring, read interest on the fallback backend.
//! Whichever stream wakes first drains the pipe and wakes every stream whose
//! signal's counter moved (their `Waker`s may belong to other loops and
//! threads). This is tokio's design (signal-hook-registry's handler + a
//! global UnixStream pair, drained by any driver, broadcast to all
//! listeners) and asyncio's (`signal.set_wakeup_fd` + a self-pipe read by the
//! loop).
//!
//! The design brief suggested signalfd read through the ring on Linux. We
//! deviate because signalfd only sees signals that are **blocked in every
//! thread** of the process: a library cannot guarantee that (threads created
//! before the call, by the test harness or other libraries, keep the signal
//! unblocked and the default action — e.g. termination — wins), blocking is
//! inherited by children spawned afterwards unless undone between fork and
//! exec, and one signalfd read consumes a signal for one reader only, so two
//! loops could not both see it. The self-pipe costs one atomic, one
//! `write(2)` per delivery and one extra wake-up per listening loop; signals
//! are rare, so that is noise. The pipe and the handlers are never freed:
//! another thread may be inside the handler at any moment.
//!
//! A stream whose wait on the pipe fails in the OS ends (`recv` returns
//! `None`); a [`ctrl_c()`] future first polled without an open loop on the
//! thread resolves to an error. A stream belongs to the loop it was created
//! on (or, for `ctrl_c()`, first polled on).

use std::fmt;
use std::future::{Future, poll_fn};
use std::io;
use std::os::fd::{FromRawFd, OwnedFd};
use std::pin::Pin;
use std::task::{Context, Poll};

use libc::c_int;

use crate::driver::Driver;
use crate::io::{SharedFd, current_driver};

mod registry;

/// A signal number, with constructors for the common ones.
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct SignalKind(c_int);

impl SignalKind {
    /// Any signal by number (e.g. `libc::SIGWINCH`, real-time signals).
    pub const fn from_raw(signum: c_int) -> SignalKind {
        SignalKind(signum)
    }
    /// The signal number.
    pub const fn as_raw_value(&self) -> c_int {
        self.0
    }
    /// SIGINT: Ctrl+C in a terminal.
    pub const fn interrupt() -> SignalKind {
        SignalKind(libc::SIGINT)
    }
    /// SIGTERM: polite termination request (`kill PID`).
    pub const fn terminate() -> SignalKind {
        SignalKind(libc::SIGTERM)
    }
    /// SIGHUP: the terminal went away; daemons often reload on it.
    pub const fn hangup() -> SignalKind {
        SignalKind(libc::SIGHUP)
    }
    /// SIGQUIT: Ctrl+\ in a terminal.
    pub const fn quit() -> SignalKind {
        SignalKind(libc::SIGQUIT)
    }
    /// SIGUSR1.
    pub const fn user_defined1() -> SignalKind {
        SignalKind(libc::SIGUSR1)
    }
    /// SIGUSR2.
    pub const fn user_defined2() -> SignalKind {
        SignalKind(libc::SIGUSR2)
    }
    /// SIGCHLD: a child stopped or exited. (ringloop's `process` module does
    /// not need it: it reaps through pidfds.)
    pub const fn child() -> SignalKind {
        SignalKind(libc::SIGCHLD)
    }
    /// SIGALRM.
    pub const fn alarm() -> SignalKind {
        SignalKind(libc::SIGALRM)
    }
    /// SIGPIPE. (Rust programs start with SIGPIPE ignored; listening to it
    /// replaces that disposition.)
    pub const fn pipe() -> SignalKind {
        SignalKind(libc::SIGPIPE)
    }
    /// SIGWINCH: the terminal was resized.
    pub const fn window_change() -> SignalKind {
        SignalKind(libc::SIGWINCH)
    }
}

impl From<c_int> for SignalKind {
    fn from(signum: c_int) -> SignalKind {
        SignalKind(signum)
    }
}

impl fmt::Debug for SignalKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let name = match self.0 {
            libc::SIGINT => "SIGINT",
            libc::SIGTERM => "SIGTERM",
            libc::SIGHUP => "SIGHUP",
            libc::SIGQUIT => "SIGQUIT",
            libc::SIGUSR1 => "SIGUSR1",
            libc::SIGUSR2 => "SIGUSR2",
            libc::SIGCHLD => "SIGCHLD",
            libc::SIGALRM => "SIGALRM",
            libc::SIGPIPE => "SIGPIPE",
            libc::SIGWINCH => "SIGWINCH",
            n => return write!(f, "SignalKind({n})"),
        };
        f.write_str(name)
    }
}

/// The per-loop half of a stream: its own fd for the shared pipe, and the
/// wait for it to become readable.
struct Watch {
    drv: Driver,
    fd: SharedFd,
    armed: Option<Pin<Box<dyn Future<Output = io::Result<()>>>>>,
}

impl Watch {
    fn new() -> io::Result<Watch> {
        let drv = current_driver()?;
        let raw = registry::dup_read_end()?;
        // SAFETY: `raw` is a fresh fd (from F_DUPFD_CLOEXEC) that we own.
        let owned = unsafe { OwnedFd::from_raw_fd(raw) };
        let fd = SharedFd::new(owned, &drv)?;
        Ok(Watch { drv, fd, armed: None })
    }

    /// Waits (once) for the pipe to become readable.
    fn poll(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let armed = self.armed.get_or_insert_with(|| {
            let (drv, fd) = (self.drv.clone(), self.fd.clone());
            Box::pin(async move { crate::io::ops::poll_readable(&drv, &fd).await })
        });
        let res = armed.as_mut().poll(cx);
        if res.is_ready() {
            self.armed = None;
        }
        res
    }
}

/// A stream of deliveries of one signal; see the [module docs](self).
///
/// Implements [`futures_core::Stream`] with `Item = ()`; [`Signal::recv`] is
/// the same as an `async fn`. `!Send`: it belongs to the loop that polls it.
pub struct Signal {
    kind: SignalKind,
    reg: registry::Registration,
    /// Created on the first poll when the stream was made without a loop
    /// (`ctrl_c()` outside one).
    watch: Option<Watch>,
}

impl fmt::Debug for Signal {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Signal")
            .field("kind", &self.kind)
            .finish_non_exhaustive()
    }
}

/// Listens for `kind`: deliveries from now on are reported by the returned
/// stream. Installs the process-wide handler on first use (replacing the
/// signal's default action, see the [module docs](self)).
///
/// Errors: `InvalidInput` for a number that is not a signal or one that
/// cannot be handled (SIGKILL, SIGSTOP, SIGILL, SIGFPE, SIGSEGV), an error
/// without an open loop on this thread, or the OS error of `sigaction`,
/// `pipe`, `dup` or the backend registration.
pub fn signal(kind: SignalKind) -> io::Result<Signal> {
    let mut s = Signal::register(kind)?;
    s.watch = Some(Watch::new()?);
    Ok(s)
}

impl Signal {
    /// The process-wide part only (handler, listener entry).
    fn register(kind: SignalKind) -> io::Result<Signal> {
        Ok(Signal {
            kind,
            reg: registry::register(kind.0)?,
            watch: None,
        })
    }

    /// Which signal this stream reports.
    pub fn kind(&self) -> SignalKind {
        self.kind
    }

    /// Waits for the next delivery; `None` if the stream ended (see the
    /// [module docs](self)).
    pub async fn recv(&mut self) -> Option<()> {
        poll_fn(|cx| self.poll_recv(cx)).await
    }

    /// Polls for the next delivery (`Ready(None)`: the stream ended).
    pub fn poll_recv(&mut self, cx: &mut Context<'_>) -> Poll<Option<()>> {
        self.poll_delivery(cx).map(|r| r.ok())
    }

    fn poll_delivery(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        loop {
            if self.reg.take_delivery() {
                return Poll::Ready(Ok(()));
            }
            // Register for broadcasts first, then look again, so a delivery
            // that another loop broadcast in between is not missed.
            self.reg.set_waker(cx.waker());
            if self.reg.take_delivery() {
                return Poll::Ready(Ok(()));
            }
            if self.watch.is_none() {
                self.watch = Some(Watch::new()?);
            }
            let Some(watch) = &mut self.watch else {
                unreachable!("set above")
            };
            match watch.poll(cx) {
                Poll::Ready(res) => {
                    registry::drain_and_broadcast();
                    res?;
                }
                Poll::Pending => return Poll::Pending,
            }
        }
    }
}

impl futures_core::Stream for Signal {
    type Item = ();

    fn poll_next(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<()>> {
        self.get_mut().poll_recv(cx)
    }
}

/// The future of [`ctrl_c()`].
#[must_use = "futures do nothing unless awaited"]
pub struct CtrlC {
    inner: Result<Signal, Option<io::Error>>,
}

impl fmt::Debug for CtrlC {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("CtrlC").finish_non_exhaustive()
    }
}

impl Future for CtrlC {
    type Output = io::Result<()>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match &mut self.get_mut().inner {
            Ok(s) => s.poll_delivery(cx),
            Err(e) => Poll::Ready(Err(e
                .take()
                .unwrap_or_else(|| io::Error::other("ringloop::signal::CtrlC polled after completion")))),
        }
    }
}

/// Resolves at the next SIGINT (Ctrl+C) delivered after this call.
///
/// The handler is installed by the call itself (see the
/// [module docs](self)): from then on SIGINT no longer terminates the
/// process. The future may be created before the loop; it needs one when
/// polled. Errors are those of [`signal`].
pub fn ctrl_c() -> CtrlC {
    CtrlC {
        inner: Signal::register(SignalKind::interrupt()).map_err(Some),
    }
}
