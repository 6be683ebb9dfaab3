//! Backend-generic I/O plumbing shared by `net`, `fs`, `process`, `signal`.
//!
//! One operation, one implementation per backend: on io_uring an operation
//! is an SQE whose resources (the fd handle, buffers, addresses) move into
//! the driver's op slot until the completion arrives; on the readiness
//! backend it is the non-blocking syscall, retried after readiness when it
//! says `EAGAIN` ("emulated completion").

use std::cell::Cell;
use std::future::Future;
use std::io;
use std::ops::ControlFlow;
use std::os::fd::{AsRawFd, FromRawFd, IntoRawFd, OwnedFd, RawFd};
use std::pin::Pin;
use std::rc::Rc;
use std::task::{Context, Poll};

use ringloop_fallback::Direction;

use crate::driver::Driver;
use crate::driver::readiness::ReadinessDriver;

pub(crate) mod ops;
pub(crate) mod ops_poll;

/// The current loop's driver, or an error outside a loop.
pub(crate) fn current_driver() -> io::Result<Driver> {
    match crate::runtime::current_inner() {
        Some(lp) if !lp.is_closed() => Ok(lp.driver.clone()),
        Some(_) => Err(io::Error::other("ringloop: the event loop is closed")),
        None => Err(io::Error::other(
            "ringloop: no event loop on this thread (create an EventLoop first)",
        )),
    }
}

/// Writes every initialised byte of `buf` through repeated calls of `write`,
/// which gets a window over the bytes not written yet and the count already
/// written (for positioned writes). A zero-byte write is `WriteZero`;
/// `EINTR` retries. The buffer comes back in every case.
pub(crate) async fn write_all_with<B, F, Fut>(buf: B, mut write: F) -> crate::buf::BufResult<(), B>
where
    B: crate::buf::IoBuf,
    F: FnMut(crate::buf::Slice<B>, usize) -> Fut,
    Fut: std::future::Future<Output = crate::buf::BufResult<usize, crate::buf::Slice<B>>>,
{
    let total = buf.bytes_init();
    let mut slice = buf.slice(..);
    let mut done = 0;
    while done < total {
        let (res, s) = write(slice, done).await;
        let buf = s.into_inner();
        match res {
            Ok(0) => return (Err(io::ErrorKind::WriteZero.into()), buf),
            Ok(n) => done += n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return (Err(e), buf),
        }
        slice = buf.slice(done..);
    }
    (Ok(()), slice.into_inner())
}

/// The error of an operation on an I/O object whose event loop was closed.
pub(crate) fn loop_closed_error() -> io::Error {
    io::Error::other("ringloop: the event loop this I/O object belongs to is closed")
}

struct Registration {
    key: usize,
    reactor: Rc<ReadinessDriver>,
}

/// What a short read (some bytes, fewer than asked) on an fd proves about
/// its receive buffer; the readiness backend then waits before the next read
/// instead of paying a failing syscall (`Reactor::note_short_read`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum ShortRead {
    /// Nothing: datagram sockets (one datagram per read), listeners, files,
    /// terminals, anything not known to be a byte stream.
    Inconclusive,
    /// The buffer was emptied: TCP streams and pipes (a TCP read stops early
    /// only at an urgent-data mark, and the reactor ignores short reads once
    /// urgent data, an end of stream or an error was reported).
    Drains,
    /// Unix stream sockets: the buffer was emptied unless ancillary data
    /// ended the read (the kernel stops a read after a message carrying file
    /// descriptors, or between writers with different credentials), which
    /// `MSG_CTRUNC` reveals because reads pass no control buffer. Reads
    /// therefore use `recvmsg` on the readiness backend.
    DrainsUnlessCtrunc,
}

impl ShortRead {
    /// Whether a read that returned `n` of `asked` bytes, with the kernel's
    /// `msg_flags` if known, emptied the receive buffer.
    pub(crate) fn drained(self, n: usize, asked: usize, msg_flags: Option<libc::c_int>) -> bool {
        n > 0
            && n < asked
            && match self {
                ShortRead::Inconclusive => false,
                ShortRead::Drains => true,
                ShortRead::DrainsUnlessCtrunc => msg_flags.is_some_and(|f| f & libc::MSG_CTRUNC == 0),
            }
    }
}

struct FdInner {
    fd: Cell<RawFd>,
    reg: Option<Registration>,
    short_read: Cell<ShortRead>,
}

impl Drop for FdInner {
    fn drop(&mut self) {
        if let Some(reg) = &self.reg {
            let _ = reg.reactor.reactor().deregister(reg.key);
        }
        let fd = self.fd.get();
        if fd >= 0 {
            // SAFETY: we own `fd` (taken from an `OwnedFd`); every operation
            // that used it held a clone of this `Rc`, so none is in flight.
            drop(unsafe { OwnedFd::from_raw_fd(fd) });
        }
    }
}

/// An owned file descriptor shared by an I/O object and its in-flight
/// operations: it is closed when the last of them is gone, so the kernel
/// never sees a closed (or reused) fd number in a pending operation. On the
/// readiness backend it is non-blocking and registered with the reactor.
#[derive(Clone)]
pub(crate) struct SharedFd(Rc<FdInner>);

impl SharedFd {
    /// Adopts `fd` for use with `driver`.
    pub(crate) fn new(fd: OwnedFd, driver: &Driver) -> io::Result<SharedFd> {
        let reg = match driver {
            Driver::Readiness(r) => {
                set_nonblocking(fd.as_raw_fd(), true)?;
                // SAFETY: `fd` is owned by the `FdInner` built below, whose
                // `Drop` deregisters before closing it.
                let key = unsafe { r.reactor().register(fd.as_raw_fd())? };
                Some(Registration {
                    key,
                    reactor: r.clone(),
                })
            }
            #[cfg(target_os = "linux")]
            Driver::Uring(_) => None,
        };
        Ok(SharedFd(Rc::new(FdInner {
            fd: Cell::new(fd.into_raw_fd()),
            reg,
            short_read: Cell::new(ShortRead::Inconclusive),
        })))
    }

    /// Declares what a short read on this fd proves (default: nothing). Set
    /// by the stream and pipe types right after creation.
    pub(crate) fn set_short_read(&self, kind: ShortRead) {
        self.0.short_read.set(kind);
    }

    pub(crate) fn short_read(&self) -> ShortRead {
        self.0.short_read.get()
    }

    pub(crate) fn raw(&self) -> RawFd {
        self.0.fd.get()
    }

    /// The reactor key (readiness backend only).
    pub(crate) fn key(&self) -> io::Result<usize> {
        match &self.0.reg {
            Some(r) => Ok(r.key),
            None => Err(io::Error::other(
                "ringloop: fd not registered with the readiness backend",
            )),
        }
    }

    /// Takes the fd back when no other handle (in-flight or orphaned
    /// operation) holds it, e.g. to close it asynchronously; otherwise gives
    /// this handle back. On the readiness backend it is deregistered first.
    #[allow(dead_code)] // Not every platform's I/O types use it.
    pub(crate) fn try_into_owned(self) -> Result<OwnedFd, SharedFd> {
        match Rc::try_unwrap(self.0) {
            Ok(inner) => {
                // `FdInner::drop` deregisters and skips the close for -1.
                let fd = inner.fd.replace(-1);
                drop(inner);
                // SAFETY: we owned `fd` through the unique `FdInner`, which
                // no longer closes it.
                Ok(unsafe { OwnedFd::from_raw_fd(fd) })
            }
            Err(rc) => Err(SharedFd(rc)),
        }
    }

    /// Number of handles (object + in-flight operations).
    #[allow(dead_code)]
    pub(crate) fn handles(&self) -> usize {
        Rc::strong_count(&self.0)
    }
}

impl std::os::fd::AsFd for SharedFd {
    fn as_fd(&self) -> std::os::fd::BorrowedFd<'_> {
        // SAFETY: the fd stays open as long as this `SharedFd` (and so the
        // borrow) lives: it is closed only when the last clone drops.
        unsafe { std::os::fd::BorrowedFd::borrow_raw(self.raw()) }
    }
}

impl AsRawFd for SharedFd {
    fn as_raw_fd(&self) -> RawFd {
        self.raw()
    }
}

pub(crate) fn set_nonblocking(fd: RawFd, on: bool) -> io::Result<()> {
    // SAFETY: fcntl on an fd we own, with integer arguments only.
    let flags = unsafe { libc::fcntl(fd, libc::F_GETFL) };
    if flags < 0 {
        return Err(io::Error::last_os_error());
    }
    let new = if on {
        flags | libc::O_NONBLOCK
    } else {
        flags & !libc::O_NONBLOCK
    };
    // SAFETY: as above.
    if new != flags && unsafe { libc::fcntl(fd, libc::F_SETFL, new) } < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

/// Waits until the reactor reports `dir` readiness for `fd`. Several tasks
/// may wait on one fd at once; a wait dropped early withdraws its waker. A
/// spurious wake-up just makes the caller retry its syscall.
///
/// Edge mode: if the direction is believed ready the wait ends at once and
/// consumes that belief, so the caller must follow with a check that finds
/// out (a syscall; on `EAGAIN`, wait again). [`retry`] only waits after
/// clearing the readiness itself, so there it always blocks until an event.
pub(crate) async fn readiness(r: &ReadinessDriver, fd: &SharedFd, dir: Direction) -> io::Result<()> {
    if r.is_closed() {
        return Err(loop_closed_error());
    }
    Readiness {
        reactor: r.reactor(),
        key: fd.key()?,
        dir,
        token: None,
        armed: false,
    }
    .await
}

struct Readiness<'a> {
    reactor: &'a ringloop_fallback::Reactor,
    key: usize,
    dir: Direction,
    token: Option<ringloop_fallback::WaitToken>,
    armed: bool,
}

impl Future for Readiness<'_> {
    type Output = io::Result<()>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        if this.armed {
            return Poll::Ready(Ok(()));
        }
        this.armed = true;
        this.reactor.poll_ready_tracked(this.key, this.dir, &mut this.token, cx)
    }
}

impl Drop for Readiness<'_> {
    fn drop(&mut self) {
        // A no-op if the waiter was woken (its token is stale by then).
        if let Some(token) = self.token {
            self.reactor.cancel_wait(self.key, self.dir, token);
        }
    }
}

/// Runs a non-blocking syscall until it does not say `EAGAIN`, waiting for
/// readiness in between; `EINTR` retries at once.
pub(crate) async fn retry<T>(
    r: &ReadinessDriver,
    fd: &SharedFd,
    dir: Direction,
    f: impl FnMut() -> io::Result<T>,
) -> io::Result<T> {
    retry_drain(r, fd, dir, f, |_| false).await
}

/// [`retry`] for reads whose result can prove the receive buffer empty:
/// when `drained(&result)` says so (a short read on a stream, see
/// [`ShortRead`]), read readiness is cleared so the next read waits for an
/// event first.
///
/// Edge mode (see `ringloop_fallback`): a direction whose readiness was
/// cleared (after `EAGAIN` or a draining read) and not reported since waits
/// before the syscall instead of paying an `EAGAIN`; `EAGAIN` clears it
/// before waiting. Both happen within one poll of this future, with no
/// reactor wait in between, so readiness that arrives after the syscall is
/// still queued in the kernel and wakes the wait: nothing is lost. One-shot
/// mode: the syscall always comes first, as the clearing calls do nothing.
pub(crate) async fn retry_drain<T>(
    r: &ReadinessDriver,
    fd: &SharedFd,
    dir: Direction,
    mut f: impl FnMut() -> io::Result<T>,
    drained: impl Fn(&T) -> bool,
) -> io::Result<T> {
    let key = fd.key()?;
    let mut wait = wait_first(r, key, dir);
    loop {
        if wait {
            readiness(r, fd, dir).await?;
        }
        match after_attempt(r, key, dir, f(), &drained) {
            ControlFlow::Break(res) => return res,
            ControlFlow::Continue(w) => wait = w,
        }
    }
}

/// Whether a readiness retry loop should wait before its first syscall:
/// only in edge mode, when `dir`'s readiness was cleared and not reported
/// since. On a closed loop the syscall is still tried first (waiting
/// reports the closed loop).
pub(crate) fn wait_first(r: &ReadinessDriver, key: usize, dir: Direction) -> bool {
    !r.is_closed() && !r.reactor().is_ready(key, dir)
}

/// The bookkeeping after one syscall attempt of a readiness retry loop
/// ([`retry_drain`] and its poll-based twin in `net/compat.rs`): `EAGAIN`
/// clears `dir`'s readiness and continues after a wait (`Continue(true)`),
/// `EINTR` continues at once (`Continue(false)`); anything else is the
/// result (`Break`), and a result that `drained` the receive buffer clears
/// read readiness.
pub(crate) fn after_attempt<T>(
    r: &ReadinessDriver,
    key: usize,
    dir: Direction,
    res: io::Result<T>,
    drained: impl Fn(&T) -> bool,
) -> ControlFlow<io::Result<T>, bool> {
    match res {
        Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
            r.reactor().clear_ready(key, dir);
            ControlFlow::Continue(true)
        }
        Err(e) if e.kind() == io::ErrorKind::Interrupted => ControlFlow::Continue(false),
        Ok(v) => {
            if drained(&v) {
                r.reactor().note_short_read(key);
            }
            ControlFlow::Break(Ok(v))
        }
        Err(e) => ControlFlow::Break(Err(e)),
    }
}

/// Converts a `-1`-style libc return value.
pub(crate) fn cvt(ret: isize) -> io::Result<usize> {
    if ret < 0 {
        Err(io::Error::last_os_error())
    } else {
        Ok(ret as usize)
    }
}
