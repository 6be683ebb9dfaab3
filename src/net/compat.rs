//! `futures-io` compatibility: poll-based `AsyncRead` / `AsyncBufRead` /
//! `AsyncWrite` on top of the owned-buffer operations.
//!
//! The traits lend the caller's buffer only for the duration of one `poll`,
//! while an io_uring operation needs memory it owns until the completion.
//! So each direction keeps a small state machine:
//!
//! * **read (io_uring)**: an internal buffer (16 KiB) is lent to a `RECV`
//!   operation; `poll_read` copies from it, `poll_fill_buf` exposes it.
//! * **write (io_uring)**: `poll_write` first finishes the write in flight
//!   (resubmitting the rest after a short send), then copies up to 64 KiB of
//!   the caller's bytes into the internal buffer, submits a `SEND` and
//!   returns `Ready(n)` at once (write-behind, like a `BufWriter` one
//!   operation deep). An error of that send is returned by the next
//!   `poll_write` / `poll_flush` / `poll_close`. `poll_flush` waits until
//!   the buffer has been sent, `poll_close` flushes and then shuts the write
//!   direction down.
//! * **readiness backend**: `poll_read`/`poll_write` call `recv`/`send`
//!   directly on the caller's buffer and wait for readiness on `EAGAIN`
//!   (with the cached edge-mode readiness of `io::retry_drain`); only
//!   `poll_fill_buf` uses the internal buffer. Nothing is buffered on the
//!   write side, so `poll_flush` is immediate.
//!
//! Dropping the object while an operation is in flight is fine: the driver
//! keeps the buffer until the kernel is done. Bytes that `poll_write`
//! accepted are never lost to a drop: a write-behind send still in flight
//! when the stream (or its write half) is dropped is handed to the driver
//! ([`Op::linger`]), which finishes it, short sends included, for up to
//! [`WRITE_LINGER`] while the loop runs (and when the loop is torn down), and
//! only then closes the socket. The stream's own `close()` flushes first.
//!
//! Mixing the owned-buffer methods (`read(buf)`) with the `futures-io`
//! traits on the same direction is allowed but bytes already buffered for
//! `poll_read` are not seen by `read(buf)`.

use std::io;
use std::ops::ControlFlow;
use std::task::{Context, Poll, ready};

use ringloop_fallback::{Direction, WaitToken};

#[cfg(target_os = "linux")]
use crate::buf::{IoBuf, Slice};
use crate::driver::Driver;
#[cfg(target_os = "linux")]
use crate::driver::uring::Op;
use crate::io::ops::recv_now;
use crate::io::{SharedFd, cvt};

const READ_CAP: usize = 16 * 1024;
#[cfg(target_os = "linux")]
const WRITE_CAP: usize = 64 * 1024;
/// How long bytes accepted by `poll_write` may keep a dropped stream's
/// socket open while the driver finishes sending them (like `SO_LINGER`,
/// but for the userspace write-behind buffer; the kernel's own send buffer
/// is flushed by the kernel after `close` as usual).
pub(crate) const WRITE_LINGER: std::time::Duration = std::time::Duration::from_secs(10);

/// Read-direction state.
#[derive(Default)]
pub(crate) struct ReadState {
    /// Buffered bytes are `buf[pos..]`.
    buf: Vec<u8>,
    pos: usize,
    #[cfg(target_os = "linux")]
    op: Option<Op<(SharedFd, Vec<u8>)>>,
    /// Readiness backend: this direction's reactor waiter.
    wait: Option<WaitToken>,
}

/// Write-direction state.
#[derive(Default)]
pub(crate) struct WriteState {
    /// The buffer, when no send is in flight.
    spare: Vec<u8>,
    #[cfg(target_os = "linux")]
    op: Option<Op<(SharedFd, Slice<Vec<u8>>)>>,
    /// `poll_close` already shut the write direction down.
    closed: bool,
    /// Readiness backend: this direction's reactor waiter.
    wait: Option<WaitToken>,
}

/// Both directions, allocated on first use (most streams never need it).
#[derive(Default)]
pub(crate) struct Compat {
    pub(crate) rd: ReadState,
    pub(crate) wr: WriteState,
}

/// Lazily boxed [`Compat`] state kept in a stream object.
#[derive(Default)]
pub(crate) struct CompatSlot(Option<Box<Compat>>);

impl CompatSlot {
    pub(crate) fn get(&mut self) -> &mut Compat {
        self.0.get_or_insert_with(Default::default)
    }
    /// Waits until bytes accepted by `poll_write` have been sent (for the
    /// streams' `close`); the error of a failed send is returned.
    pub(crate) async fn flush(&mut self, drv: &Driver, fd: &SharedFd) -> io::Result<()> {
        match &mut self.0 {
            Some(c) => std::future::poll_fn(|cx| c.wr.poll_flush(drv, fd, cx)).await,
            None => Ok(()),
        }
    }

    /// Takes the state out (for `into_split`).
    pub(crate) fn take(&mut self) -> Compat {
        self.0.take().map(|b| *b).unwrap_or_default()
    }
}

/// Arms `dir` readiness for `fd` as the waiter `token` (one per direction
/// and object, so a re-poll refreshes its waker instead of adding one). A
/// waiter left behind when the object is dropped is cleared by the fd's
/// deregistration.
fn readiness_wait(
    drv: &Driver,
    fd: &SharedFd,
    dir: Direction,
    token: &mut Option<WaitToken>,
    cx: &mut Context<'_>,
) -> Poll<io::Result<()>> {
    match drv {
        Driver::Readiness(r) => {
            if r.is_closed() {
                return Poll::Ready(Err(crate::io::loop_closed_error()));
            }
            match fd.key() {
                Ok(key) => r.reactor().poll_ready_tracked(key, dir, token, cx),
                Err(e) => Poll::Ready(Err(e)),
            }
        }
        #[cfg(target_os = "linux")]
        Driver::Uring(_) => Poll::Ready(Err(io::Error::other("ringloop: readiness wait on io_uring"))),
    }
}

/// Runs the non-blocking syscall `f` in direction `dir` until it does not
/// say `EAGAIN`, waiting (as waiter `token`) in between: the poll-based twin
/// of `io::retry_drain`, with the same rules (edge mode: wait first while
/// the direction's readiness is cleared, clear it on `EAGAIN`, and clear
/// read readiness when `drained` says a result emptied the buffer).
fn poll_retry<T>(
    drv: &Driver,
    fd: &SharedFd,
    dir: Direction,
    token: &mut Option<WaitToken>,
    cx: &mut Context<'_>,
    mut f: impl FnMut() -> io::Result<T>,
    drained: impl Fn(&T) -> bool,
) -> Poll<io::Result<T>> {
    let (r, key) = match (drv, fd.key()) {
        (Driver::Readiness(r), Ok(key)) => (r, key),
        (_, Err(e)) => return Poll::Ready(Err(e)),
        #[cfg(target_os = "linux")]
        (Driver::Uring(_), Ok(_)) => {
            return Poll::Ready(Err(io::Error::other("ringloop: readiness retry on io_uring")));
        }
    };
    let mut wait = crate::io::wait_first(r, key, dir);
    loop {
        if wait {
            // Pending until an event (a spurious `Ready(Ok)` just retries).
            ready!(readiness_wait(drv, fd, dir, token, cx))?;
        }
        match crate::io::after_attempt(r, key, dir, f(), &drained) {
            ControlFlow::Break(res) => return Poll::Ready(res),
            ControlFlow::Continue(w) => wait = w,
        }
    }
}

/// Non-blocking receive into `len` bytes at `ptr`, waiting (as waiter
/// `token`) on `EAGAIN`.
///
/// # Safety
///
/// `ptr` must be valid for writes of `len` bytes for the call's duration.
pub(super) unsafe fn poll_recv_now(
    drv: &Driver,
    fd: &SharedFd,
    token: &mut Option<WaitToken>,
    cx: &mut Context<'_>,
    ptr: *mut u8,
    len: usize,
) -> Poll<io::Result<usize>> {
    let kind = fd.short_read();
    poll_retry(
        drv,
        fd,
        Direction::Read,
        token,
        cx,
        // SAFETY: forwarded from the caller.
        || unsafe { recv_now(fd, ptr, len, 0, kind) },
        |&(n, msg_flags)| kind.drained(n, len, msg_flags),
    )
    .map_ok(|(n, _)| n)
}

impl ReadState {
    fn buffered(&self) -> &[u8] {
        &self.buf[self.pos..]
    }

    /// `AsyncBufRead::poll_fill_buf`.
    pub(crate) fn poll_fill_buf(
        &mut self,
        drv: &Driver,
        fd: &SharedFd,
        cx: &mut Context<'_>,
    ) -> Poll<io::Result<&[u8]>> {
        if self.pos < self.buf.len() {
            return Poll::Ready(Ok(self.buffered()));
        }
        match drv {
            #[cfg(target_os = "linux")]
            Driver::Uring(d) => {
                if self.op.is_none() {
                    let mut buf = std::mem::take(&mut self.buf);
                    buf.clear();
                    buf.reserve(READ_CAP);
                    // SAFETY: the SQE points into `buf`'s heap capacity and at
                    // `fd`, both owned by the op's resources until completion.
                    let op = unsafe {
                        d.submit((fd.clone(), buf), |(fd, buf)| {
                            let len = buf.capacity().min(u32::MAX as usize) as u32;
                            io_uring::opcode::Recv::new(io_uring::types::Fd(fd.raw()), buf.as_mut_ptr(), len).build()
                        })
                    };
                    self.op = Some(op);
                }
                let op = self.op.as_mut().expect("read op just set");
                let (res, _flags, (_, mut buf)) = ready!(op.poll_with_flags(cx));
                self.op = None;
                self.pos = 0;
                let res = res.map(|n| {
                    let n = (n as usize).min(buf.capacity());
                    // SAFETY: the kernel initialised the first `n` bytes.
                    unsafe { buf.set_len(n) };
                });
                self.buf = buf;
                res?;
            }
            Driver::Readiness(_) => {
                self.buf.clear();
                self.buf.reserve(READ_CAP);
                self.pos = 0;
                let cap = self.buf.capacity();
                let ptr = self.buf.as_mut_ptr();
                // SAFETY: `ptr` is the start of the Vec's `cap` bytes of
                // (uninitialised) capacity, writable while we hold `&mut self`.
                let n = ready!(unsafe { poll_recv_now(drv, fd, &mut self.wait, cx, ptr, cap) })?;
                // SAFETY: `recv` initialised the first `n` bytes.
                unsafe { self.buf.set_len(n) };
            }
        }
        Poll::Ready(Ok(self.buffered()))
    }

    /// `AsyncBufRead::consume`.
    pub(crate) fn consume(&mut self, amt: usize) {
        self.pos = (self.pos + amt).min(self.buf.len());
    }

    /// `AsyncRead::poll_read`.
    pub(crate) fn poll_read(
        &mut self,
        drv: &Driver,
        fd: &SharedFd,
        cx: &mut Context<'_>,
        out: &mut [u8],
    ) -> Poll<io::Result<usize>> {
        if out.is_empty() {
            return Poll::Ready(Ok(0));
        }
        if self.pos >= self.buf.len() && matches!(drv, Driver::Readiness(_)) {
            // Nothing buffered: read straight into the caller's slice.
            // SAFETY: `out` is writable for its length during this call.
            return unsafe { poll_recv_now(drv, fd, &mut self.wait, cx, out.as_mut_ptr(), out.len()) };
        }
        let avail = ready!(self.poll_fill_buf(drv, fd, cx))?;
        let n = avail.len().min(out.len());
        out[..n].copy_from_slice(&avail[..n]);
        self.consume(n);
        Poll::Ready(Ok(n))
    }
}

#[cfg(target_os = "linux")]
impl Drop for WriteState {
    fn drop(&mut self) {
        let Some(op) = self.op.take() else { return };
        let deadline = std::time::Instant::now() + WRITE_LINGER;
        // SAFETY: every SQE `linger_send_step` builds points into the
        // state's `Vec`, which the driver owns (in the lingering slot) until
        // the final completion, and at its `SharedFd`, which keeps the fd open.
        unsafe {
            op.linger(
                deadline,
                |(fd, slice): (SharedFd, Slice<Vec<u8>>)| {
                    let begin = slice.begin();
                    (fd, slice.into_inner(), begin)
                },
                linger_send_step,
            )
        }
    }
}

/// One completion of a lingering write-behind send: the SEND for the bytes
/// still unsent, or `None` when all were sent or the send failed.
#[cfg(target_os = "linux")]
fn linger_send_step(state: &mut (SharedFd, Vec<u8>, usize), res: i32) -> Option<io_uring::squeue::Entry> {
    let (fd, buf, off) = state;
    match res {
        n if n > 0 => *off += n as usize,
        n if n == -libc::EINTR || n == -libc::EAGAIN => {}
        _ => return None,
    }
    let rest = buf.get(*off..).filter(|r| !r.is_empty())?;
    let len = rest.len().min(u32::MAX as usize) as u32;
    Some(
        io_uring::opcode::Send::new(io_uring::types::Fd(fd.raw()), rest.as_ptr(), len)
            .flags(libc::MSG_NOSIGNAL)
            .build(),
    )
}

impl WriteState {
    /// Finishes the send in flight (resubmitting the rest after short sends).
    #[cfg(target_os = "linux")]
    fn poll_drain(&mut self, drv: &Driver, fd: &SharedFd, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let Driver::Uring(d) = drv else {
            return Poll::Ready(Ok(()));
        };
        while let Some(op) = self.op.as_mut() {
            let (res, _flags, (_, slice)) = ready!(op.poll_with_flags(cx));
            self.op = None;
            let begin = slice.begin();
            let buf = slice.into_inner();
            let next = match res {
                Ok(0) => Err(io::Error::from(io::ErrorKind::WriteZero)),
                Ok(n) => Ok(begin + n as usize),
                Err(e) if e.kind() == io::ErrorKind::Interrupted => Ok(begin),
                Err(e) => Err(e),
            };
            match next {
                Ok(off) if off < buf.len() => self.op = Some(submit_send(d, fd, buf.slice(off..))),
                Ok(_) => self.spare = buf,
                Err(e) => {
                    // The unsent rest is dropped with the error.
                    self.spare = buf;
                    return Poll::Ready(Err(e));
                }
            }
        }
        Poll::Ready(Ok(()))
    }

    #[cfg(not(target_os = "linux"))]
    fn poll_drain(&mut self, _drv: &Driver, _fd: &SharedFd, _cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Poll::Ready(Ok(()))
    }

    /// `AsyncWrite::poll_write`.
    pub(crate) fn poll_write(
        &mut self,
        drv: &Driver,
        fd: &SharedFd,
        cx: &mut Context<'_>,
        data: &[u8],
    ) -> Poll<io::Result<usize>> {
        ready!(self.poll_drain(drv, fd, cx))?;
        if data.is_empty() {
            return Poll::Ready(Ok(0));
        }
        match drv {
            #[cfg(target_os = "linux")]
            Driver::Uring(d) => {
                let n = data.len().min(WRITE_CAP);
                let mut buf = std::mem::take(&mut self.spare);
                buf.clear();
                buf.extend_from_slice(&data[..n]);
                self.op = Some(submit_send(d, fd, buf.slice(..)));
                Poll::Ready(Ok(n))
            }
            Driver::Readiness(_) => poll_retry(
                drv,
                fd,
                Direction::Write,
                &mut self.wait,
                cx,
                // SAFETY: `data` is a valid slice for the call's duration.
                || cvt(unsafe { libc::send(fd.raw(), data.as_ptr().cast(), data.len(), libc::MSG_NOSIGNAL) }),
                |_| false,
            ),
        }
    }

    /// `AsyncWrite::poll_flush`.
    pub(crate) fn poll_flush(&mut self, drv: &Driver, fd: &SharedFd, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        self.poll_drain(drv, fd, cx)
    }

    /// `AsyncWrite::poll_close`: flush, then `shutdown(SHUT_WR)` once.
    pub(crate) fn poll_close(&mut self, drv: &Driver, fd: &SharedFd, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        ready!(self.poll_drain(drv, fd, cx))?;
        if !self.closed {
            self.closed = true;
            crate::io::ops::shutdown(fd, std::net::Shutdown::Write)?;
        }
        Poll::Ready(Ok(()))
    }
}

#[cfg(target_os = "linux")]
fn submit_send(
    d: &crate::driver::uring::UringDriver,
    fd: &SharedFd,
    buf: Slice<Vec<u8>>,
) -> Op<(SharedFd, Slice<Vec<u8>>)> {
    // SAFETY: the SQE points into the slice's stable heap bytes and at `fd`,
    // both owned by the op's resources until completion.
    unsafe {
        d.submit((fd.clone(), buf), |(fd, buf)| {
            let len = buf.bytes_init().min(u32::MAX as usize) as u32;
            io_uring::opcode::Send::new(io_uring::types::Fd(fd.raw()), buf.stable_ptr(), len)
                .flags(libc::MSG_NOSIGNAL)
                .build()
        })
    }
}

/// Implements the `futures-io` traits for a stream type with `fd`, `drv`
/// and `compat: CompatSlot` fields.
macro_rules! impl_futures_io {
    ($ty:ty) => {
        impl futures_io::AsyncRead for $ty {
            fn poll_read(
                self: std::pin::Pin<&mut Self>,
                cx: &mut std::task::Context<'_>,
                buf: &mut [u8],
            ) -> std::task::Poll<std::io::Result<usize>> {
                let this = self.get_mut();
                this.compat.get().rd.poll_read(&this.drv, &this.fd, cx, buf)
            }
        }

        impl futures_io::AsyncBufRead for $ty {
            fn poll_fill_buf(
                self: std::pin::Pin<&mut Self>,
                cx: &mut std::task::Context<'_>,
            ) -> std::task::Poll<std::io::Result<&[u8]>> {
                let this = self.get_mut();
                this.compat.get().rd.poll_fill_buf(&this.drv, &this.fd, cx)
            }
            fn consume(self: std::pin::Pin<&mut Self>, amt: usize) {
                self.get_mut().compat.get().rd.consume(amt)
            }
        }

        impl futures_io::AsyncWrite for $ty {
            fn poll_write(
                self: std::pin::Pin<&mut Self>,
                cx: &mut std::task::Context<'_>,
                buf: &[u8],
            ) -> std::task::Poll<std::io::Result<usize>> {
                let this = self.get_mut();
                this.compat.get().wr.poll_write(&this.drv, &this.fd, cx, buf)
            }
            fn poll_flush(
                self: std::pin::Pin<&mut Self>,
                cx: &mut std::task::Context<'_>,
            ) -> std::task::Poll<std::io::Result<()>> {
                let this = self.get_mut();
                this.compat.get().wr.poll_flush(&this.drv, &this.fd, cx)
            }
            fn poll_close(
                self: std::pin::Pin<&mut Self>,
                cx: &mut std::task::Context<'_>,
            ) -> std::task::Poll<std::io::Result<()>> {
                let this = self.get_mut();
                this.compat.get().wr.poll_close(&this.drv, &this.fd, cx)
            }
        }
    };
}

/// Implements `AsyncRead`/`AsyncBufRead` for a read half with fields
/// `inner` (an `Rc` of the stream) and `rd: ReadState`.
macro_rules! impl_futures_io_read_half {
    ($ty:ty) => {
        impl futures_io::AsyncRead for $ty {
            fn poll_read(
                self: std::pin::Pin<&mut Self>,
                cx: &mut std::task::Context<'_>,
                buf: &mut [u8],
            ) -> std::task::Poll<std::io::Result<usize>> {
                let this = self.get_mut();
                this.rd.poll_read(&this.inner.drv, &this.inner.fd, cx, buf)
            }
        }

        impl futures_io::AsyncBufRead for $ty {
            fn poll_fill_buf(
                self: std::pin::Pin<&mut Self>,
                cx: &mut std::task::Context<'_>,
            ) -> std::task::Poll<std::io::Result<&[u8]>> {
                let this = self.get_mut();
                this.rd.poll_fill_buf(&this.inner.drv, &this.inner.fd, cx)
            }
            fn consume(self: std::pin::Pin<&mut Self>, amt: usize) {
                self.get_mut().rd.consume(amt)
            }
        }
    };
}

/// Implements `AsyncWrite` for a write half with fields `inner` (an `Rc` of
/// the stream) and `wr: WriteState`.
macro_rules! impl_futures_io_write_half {
    ($ty:ty) => {
        impl futures_io::AsyncWrite for $ty {
            fn poll_write(
                self: std::pin::Pin<&mut Self>,
                cx: &mut std::task::Context<'_>,
                buf: &[u8],
            ) -> std::task::Poll<std::io::Result<usize>> {
                let this = self.get_mut();
                this.wr.poll_write(&this.inner.drv, &this.inner.fd, cx, buf)
            }
            fn poll_flush(
                self: std::pin::Pin<&mut Self>,
                cx: &mut std::task::Context<'_>,
            ) -> std::task::Poll<std::io::Result<()>> {
                let this = self.get_mut();
                this.wr.poll_flush(&this.inner.drv, &this.inner.fd, cx)
            }
            fn poll_close(
                self: std::pin::Pin<&mut Self>,
                cx: &mut std::task::Context<'_>,
            ) -> std::task::Poll<std::io::Result<()>> {
                let this = self.get_mut();
                this.wr.poll_close(&this.inner.drv, &this.inner.fd, cx)
            }
        }
    };
}

pub(crate) use {impl_futures_io, impl_futures_io_read_half, impl_futures_io_write_half};
