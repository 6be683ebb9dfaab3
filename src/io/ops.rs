//! The operations in the owned-buffer function shape the I/O types call:
//! each is one `driver::ops` type submitted to the loop's driver, which
//! runs it on io_uring or on the fallback backend.

use std::io;
use std::net::Shutdown;
use std::os::fd::OwnedFd;

use socket2::SockAddr;

use super::{SharedFd, cvt};
use crate::buf::{BufResult, IoBuf, IoBufMut};
use crate::driver::Driver;
use crate::driver::ops::{self, submit};

/// `read(2)` (or `pread(2)` with an offset) into the buffer's spare capacity.
pub(crate) async fn read<B: IoBufMut>(drv: &Driver, fd: &SharedFd, buf: B, offset: Option<u64>) -> BufResult<usize, B> {
    submit(drv, ops::Read::new(fd, buf, offset)).await
}

/// `write(2)` (or `pwrite(2)` with an offset) of the buffer's initialised bytes.
pub(crate) async fn write<B: IoBuf>(drv: &Driver, fd: &SharedFd, buf: B, offset: Option<u64>) -> BufResult<usize, B> {
    submit(drv, ops::Write::new(fd, buf, offset)).await
}

/// `recv(2)` into the buffer's capacity.
pub(crate) async fn recv<B: IoBufMut>(drv: &Driver, fd: &SharedFd, buf: B, flags: i32) -> BufResult<usize, B> {
    submit(drv, ops::Recv::new(fd, buf, flags)).await
}

/// `send(2)` of the buffer's initialised bytes, with `MSG_NOSIGNAL`; on
/// io_uring a zero-copy `SEND_ZC` from the driver's threshold on.
pub(crate) async fn send<B: IoBuf>(drv: &Driver, fd: &SharedFd, buf: B, flags: i32) -> BufResult<usize, B> {
    #[cfg(target_os = "linux")]
    if fd.zero_copy() && drv.send_zc_threshold().is_some_and(|t| buf.bytes_init() >= t) {
        let (res, buf) = submit(drv, ops::SendZc::new(fd, buf, flags)).await;
        match res {
            // A socket that cannot send zero-copy: plain sends from now on.
            Err(e) if matches!(e.raw_os_error(), Some(libc::EOPNOTSUPP | libc::EINVAL)) => fd.set_zero_copy(false),
            res => return (res, buf),
        }
        return submit(drv, ops::Send::new(fd, buf, flags)).await;
    }
    submit(drv, ops::Send::new(fd, buf, flags)).await
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
