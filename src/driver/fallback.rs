//! Adapter from the loop's driver contract to `ringloop-fallback`.

use std::io;
use std::os::fd::RawFd;
use std::sync::Arc;
use std::task::{Context, Poll, ready};
use std::time::Duration;

use ringloop_fallback::{Direction, Reactor, WaitToken};

use super::Notify;
use super::fd::SharedFd;

pub(crate) struct FallbackDriver {
    closed: std::cell::Cell<bool>,
    reactor: Reactor,
    notifier: Arc<ringloop_fallback::Notifier>,
}

impl FallbackDriver {
    pub(crate) fn new() -> io::Result<Self> {
        let reactor = Reactor::new()?;
        let notifier = Arc::new(reactor.notifier());
        Ok(FallbackDriver {
            closed: std::cell::Cell::new(false),
            reactor,
            notifier,
        })
    }

    pub(crate) fn wait(&self, timeout: Option<Duration>) -> io::Result<()> {
        // A zero-timeout poll with no registered source cannot find anything
        // (cross-thread work is seen through the loop's own queue): skip
        // its syscall(s).
        if timeout == Some(Duration::ZERO) && self.reactor.registered() == 0 {
            return Ok(());
        }
        self.reactor.wait(timeout).map(drop)
    }

    /// Marks the driver closed (its loop was closed): waiting for readiness
    /// then fails at once instead of hanging.
    pub(crate) fn close(&self) {
        self.closed.set(true);
    }

    pub(crate) fn is_closed(&self) -> bool {
        self.closed.get()
    }

    /// Operations waiting for readiness now (the reactor's waiters).
    pub(crate) fn waiting_ops(&self) -> usize {
        self.reactor.waiters()
    }

    pub(crate) fn notifier(&self) -> Arc<dyn Notify> {
        self.notifier.clone()
    }
}

impl FallbackDriver {
    /// Polls for `dir` readiness of `fd` as the waiter `token` (one per
    /// direction and waiting object, so a re-poll refreshes its waker
    /// instead of adding one). A waiter left behind when the fd is dropped
    /// is cleared by its deregistration.
    pub(crate) fn poll_wait(
        &self,
        fd: &SharedFd,
        dir: Direction,
        token: &mut Option<WaitToken>,
        cx: &mut Context<'_>,
    ) -> Poll<io::Result<()>> {
        if self.is_closed() {
            return Poll::Ready(Err(loop_closed_error()));
        }
        match fd.key() {
            Ok(key) => self.reactor.poll_ready_tracked(key, dir, token, cx),
            Err(e) => Poll::Ready(Err(e)),
        }
    }

    /// Withdraws a waiter registered by [`poll_wait`](Self::poll_wait) that
    /// was not woken (a stale token is ignored).
    pub(crate) fn cancel_wait(&self, fd: &SharedFd, dir: Direction, token: WaitToken) {
        if let Ok(key) = fd.key() {
            self.reactor.cancel_wait(key, dir, token);
        }
    }

    /// The fallback backend's "emulated completion": runs the non-blocking
    /// syscall `attempt` until it does not say `EAGAIN`, waiting for `dir`
    /// readiness (as waiter `token`) in between; `EINTR` retries at once.
    ///
    /// Edge mode (see `ringloop_fallback`): a direction whose readiness was
    /// cleared (after `EAGAIN` or a draining read) and not reported since
    /// waits before the syscall instead of paying an `EAGAIN` (unless
    /// `may_wait_first` is false, e.g. before a `connect` was even made);
    /// `EAGAIN` clears it before waiting. Both happen within one poll, with
    /// no reactor wait in between, so readiness that arrives after the
    /// syscall is still queued in the kernel and wakes the wait: nothing is
    /// lost. A result that `drained` the receive buffer (a short read on a
    /// stream, see [`ShortRead`](super::fd::ShortRead)) clears read readiness.
    /// One-shot mode: the syscall always comes first, as the clearing calls
    /// do nothing.
    #[allow(clippy::too_many_arguments)]
    pub(crate) fn poll_retry<T>(
        &self,
        fd: &SharedFd,
        dir: Direction,
        token: &mut Option<WaitToken>,
        cx: &mut Context<'_>,
        may_wait_first: bool,
        mut attempt: impl FnMut() -> io::Result<T>,
        drained: impl Fn(&T) -> bool,
    ) -> Poll<io::Result<T>> {
        let key = match fd.key() {
            Ok(key) => key,
            Err(e) => return Poll::Ready(Err(e)),
        };
        // On a closed loop the syscall is still tried first (waiting
        // reports the closed loop).
        let mut wait = may_wait_first && !self.is_closed() && !self.reactor.is_ready(key, dir);
        loop {
            if wait {
                // Pending until an event (a spurious `Ready(Ok)` retries).
                ready!(self.poll_wait(fd, dir, token, cx))?;
            }
            match attempt() {
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                    self.reactor.clear_ready(key, dir);
                    wait = true;
                }
                Err(e) if e.kind() == io::ErrorKind::Interrupted => wait = false,
                Ok(v) => {
                    if drained(&v) {
                        self.reactor.note_short_read(key);
                    }
                    return Poll::Ready(Ok(v));
                }
                Err(e) => return Poll::Ready(Err(e)),
            }
        }
    }

    /// Registers `fd` with the reactor (made non-blocking first).
    ///
    /// # Safety
    ///
    /// `fd` must stay open until [`deregister`](Self::deregister) is called
    /// with the returned key.
    pub(crate) unsafe fn register(&self, fd: RawFd) -> io::Result<usize> {
        super::fd::set_nonblocking(fd, true)?;
        // SAFETY: forwarded from this function's contract.
        unsafe { self.reactor.register(fd) }
    }

    pub(crate) fn deregister(&self, key: usize) {
        let _ = self.reactor.deregister(key);
    }
}

/// The error of an operation on an I/O object whose event loop was closed.
pub(crate) fn loop_closed_error() -> io::Error {
    io::Error::other("ringloop: the event loop this I/O object belongs to is closed")
}
