//! The operations in the owned-buffer function shape the I/O types call:
//! each is one `driver::ops` type submitted to the loop's driver, which
//! runs it on io_uring or on the fallback backend.

use std::future::Future;
use std::io;
use std::net::Shutdown;
use std::os::fd::OwnedFd;
use std::pin::Pin;
use std::task::{Context, Poll, ready};

use socket2::SockAddr;

use super::{SharedFd, cvt};
use crate::buf::{BufResult, IoBuf, IoBufMut};
use crate::driver::Driver;
use crate::driver::ops::{self, OnPoll, submit, submit_on_poll, submit_polled};

/// `read(2)` (or `pread(2)` with an offset) into the buffer's spare
/// capacity. Like the others here, submitted at the first poll.
pub(crate) fn read<'a, B: IoBufMut>(
    drv: &'a Driver,
    fd: &SharedFd,
    buf: B,
    offset: Option<u64>,
) -> OnPoll<'a, ops::Read<B>> {
    submit_on_poll(drv, ops::Read::new(fd, buf, offset))
}

/// `write(2)` (or `pwrite(2)` with an offset) of the buffer's initialised bytes.
pub(crate) fn write<'a, B: IoBuf>(
    drv: &'a Driver,
    fd: &SharedFd,
    buf: B,
    offset: Option<u64>,
) -> OnPoll<'a, ops::Write<B>> {
    submit_on_poll(drv, ops::Write::new(fd, buf, offset))
}

/// `recv(2)` into the buffer's capacity.
pub(crate) fn recv<'a, B: IoBufMut>(drv: &'a Driver, fd: &SharedFd, buf: B, flags: i32) -> OnPoll<'a, ops::Recv<B>> {
    submit_on_poll(drv, ops::Recv::new(fd, buf, flags))
}

/// `send(2)` of the buffer's initialised bytes, with `MSG_NOSIGNAL`; on
/// io_uring a zero-copy `SEND_ZC` from the driver's threshold on. Lazy, as
/// an `async fn` would be: nothing is submitted before the first poll.
pub(crate) fn send<'a, B: IoBuf>(drv: &'a Driver, fd: &'a SharedFd, buf: B, flags: i32) -> SendOne<'a, B> {
    SendOne {
        drv,
        fd,
        flags,
        op: SendState::Start(Some(buf)),
    }
}

/// The future of [`send`]. Written by hand rather than as an `async fn`:
/// `write_all` loops hold it, and nested `async fn`s each keep a copy of
/// the state below them (a stream's `write_all` future was 432 bytes, and
/// every send moved it around).
pub(crate) struct SendOne<'a, B: IoBuf> {
    drv: &'a Driver,
    fd: &'a SharedFd,
    flags: i32,
    op: SendState<B>,
}

enum SendState<B: IoBuf> {
    /// Not polled yet.
    Start(Option<B>),
    Plain(ops::Submit<ops::Send<B>>),
    #[cfg(target_os = "linux")]
    ZeroCopy(ops::Submit<ops::SendZc<B>>),
}

// The buffer is never pinned: it only moves in and out by value.
impl<B: IoBuf> Unpin for SendOne<'_, B> {}

impl<'a, B: IoBuf> SendOne<'a, B> {
    /// A send of `buf` on the same socket with the same flags (the next
    /// chunk of a `write_all`).
    pub(crate) fn next<C: IoBuf>(&self, buf: C) -> SendOne<'a, C> {
        send(self.drv, self.fd, buf, self.flags)
    }

    /// Submits the send (zero-copy from the driver's threshold on, unless
    /// the socket refused zero-copy before) and polls it once.
    fn start(&mut self, buf: B, cx: &mut Context<'_>) -> Poll<BufResult<usize, B>> {
        #[cfg(target_os = "linux")]
        if self.fd.zero_copy() && self.drv.send_zc_threshold().is_some_and(|t| buf.bytes_init() >= t) {
            let report = self.drv.send_zc_reports_copies();
            self.op = SendState::ZeroCopy(submit(self.drv, ops::SendZc::new(self.fd, buf, self.flags, report)));
            return Pin::new(self).poll(cx);
        }
        let (op, res) = submit_polled(self.drv, ops::Send::new(self.fd, buf, self.flags), cx);
        self.op = SendState::Plain(op);
        res
    }
}

impl<B: IoBuf> Future for SendOne<'_, B> {
    type Output = BufResult<usize, B>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let this = self.get_mut();
        match &mut this.op {
            SendState::Start(buf) => {
                let buf = buf.take().expect("send polled after completion");
                this.start(buf, cx)
            }
            SendState::Plain(op) => Pin::new(op).poll(cx),
            #[cfg(target_os = "linux")]
            SendState::ZeroCopy(op) => {
                let (res, buf, copied) = ready!(Pin::new(op).poll(cx));
                match res {
                    // A socket that cannot send zero-copy: plain sends from now on.
                    Err(e) if matches!(e.raw_os_error(), Some(libc::EOPNOTSUPP | libc::EINVAL)) => {
                        this.fd.set_zero_copy(false);
                        this.start(buf, cx)
                    }
                    res => {
                        // The kernel copied the bytes anyway (a loopback
                        // peer, a device without scatter-gather): zero-copy
                        // only added the pinning and the notification, so
                        // this socket sends plainly from now on.
                        if copied {
                            this.fd.set_zero_copy(false);
                        }
                        Poll::Ready((res, buf))
                    }
                }
            }
        }
    }
}

/// `accept4(2)` with `SOCK_CLOEXEC`.
pub(crate) async fn accept(drv: &Driver, fd: &SharedFd) -> io::Result<(OwnedFd, SockAddr)> {
    submit(drv, ops::Accept::new(fd)).await
}

/// `connect(2)`.
pub(crate) async fn connect(drv: &Driver, fd: &SharedFd, addr: SockAddr) -> io::Result<()> {
    submit(drv, ops::Connect::new(fd, addr)).await
}

/// Resolves once `fd` is readable (see [`ops::PollReadable`]).
pub(crate) async fn poll_readable(drv: &Driver, fd: &SharedFd) -> io::Result<()> {
    submit(drv, ops::PollReadable::new(fd)).await
}

/// Resolves once `fd` is writable (see [`ops::PollWritable`]).
pub(crate) async fn poll_writable(drv: &Driver, fd: &SharedFd) -> io::Result<()> {
    submit(drv, ops::PollWritable::new(fd)).await
}

/// `shutdown(2)` (synchronous on both backends: it never blocks).
pub(crate) fn shutdown(fd: &SharedFd, how: Shutdown) -> io::Result<()> {
    let how = match how {
        Shutdown::Read => libc::SHUT_RD,
        Shutdown::Write => libc::SHUT_WR,
        Shutdown::Both => libc::SHUT_RDWR,
    };
    // SAFETY: plain syscall on an fd we own.
    cvt(unsafe { libc::shutdown(fd.raw(), how) } as isize).map(drop)
}
