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

struct FdInner {
    fd: Cell<RawFd>,
    reg: Option<Registration>,
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
        })))
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

/// Waits until the reactor reports `dir` readiness for `fd` (one arming; a
/// spurious wake-up just makes the caller retry its syscall). Several tasks
/// may wait on one fd at once; a wait dropped early withdraws its waker.
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
    mut f: impl FnMut() -> io::Result<T>,
) -> io::Result<T> {
    loop {
        match f() {
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => readiness(r, fd, dir).await?,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            res => return res,
        }
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
