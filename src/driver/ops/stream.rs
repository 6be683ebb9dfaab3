//! Byte operations on an fd: [`Read`], [`Write`], [`Recv`], [`Send`].
//!
//! What a dropped (cancelled) operation may already have done: a read or
//! receive may have consumed bytes (lost to the caller) on io_uring, where
//! the kernel can complete it before the AsyncCancel lands; a write or send
//! may have written some or all bytes. On the fallback backend nothing
//! happens after the drop.

use std::io;

use ringloop_fallback::Direction;

use super::{OpCode, Readiness};
use crate::buf::{BufResult, IoBuf, IoBufMut};
use crate::driver::fd::{SharedFd, ShortRead};

#[cfg(target_os = "linux")]
use io_uring::{opcode, squeue};

/// The length the kernel is asked for (its length fields are 32-bit).
fn len32(n: usize) -> u32 {
    n.min(u32::MAX as usize) as u32
}

fn cvt(ret: isize) -> io::Result<usize> {
    if ret < 0 {
        Err(io::Error::last_os_error())
    } else {
        Ok(ret as usize)
    }
}

/// Gives `buf` back with its first `n` bytes marked initialised.
fn filled<B: IoBufMut>(res: io::Result<usize>, mut buf: B) -> BufResult<usize, B> {
    if let Ok(n) = res {
        let n = n.min(buf.bytes_total());
        // SAFETY: the kernel (or the syscall) initialised the first `n` bytes.
        unsafe { buf.set_init(n) };
    }
    (res, buf)
}

/// `read(2)` (or `pread(2)` with an offset) into the buffer's capacity.
pub(crate) struct Read<B> {
    fd: SharedFd,
    buf: B,
    offset: Option<u64>,
}

impl<B: IoBufMut> Read<B> {
    pub(crate) fn new(fd: &SharedFd, buf: B, offset: Option<u64>) -> Self {
        Read {
            fd: fd.clone(),
            buf,
            offset,
        }
    }
}

// SAFETY: the SQE points into `buf`'s stable heap storage (`IoBufMut`'s
// contract) and names `fd`, both owned by the op until it completes.
unsafe impl<B: IoBufMut> OpCode for Read<B> {
    type Output = BufResult<usize, B>;
    #[cfg(target_os = "linux")]
    const CODE: u8 = opcode::Read::CODE;

    #[cfg(target_os = "linux")]
    fn sqe(&mut self) -> squeue::Entry {
        let len = len32(self.buf.bytes_total());
        fd_sqe!(&self.fd, t => opcode::Read::new(t, self.buf.stable_mut_ptr(), len)
            .offset(self.offset.unwrap_or(u64::MAX))
            .build())
    }

    fn immediate(&mut self) -> Option<io::Result<usize>> {
        // Nothing to read into: answer at once (a zero-length read could
        // otherwise wait for data that it cannot take).
        (self.buf.bytes_total() == 0).then_some(Ok(0))
    }

    fn readiness(&self) -> Readiness<'_> {
        Readiness::Fd(&self.fd, Direction::Read)
    }

    fn attempt(&mut self) -> io::Result<usize> {
        let (ptr, len) = (self.buf.stable_mut_ptr(), self.buf.bytes_total());
        // SAFETY: `ptr` points to `len` writable bytes of `buf`.
        cvt(unsafe {
            match self.offset {
                Some(off) => libc::pread(self.fd.raw(), ptr.cast(), len, off as libc::off_t),
                None => libc::read(self.fd.raw(), ptr.cast(), len),
            }
        })
    }

    fn drained(&self, n: usize) -> bool {
        // A positioned read is a file's: its short reads mean nothing.
        self.offset.is_none() && self.fd.short_read().drained(n, self.buf.bytes_total(), None)
    }

    fn complete(self, res: io::Result<usize>, _flags: u32) -> Self::Output {
        filled(res, self.buf)
    }
}

/// `write(2)` (or `pwrite(2)` with an offset) of the initialised bytes.
pub(crate) struct Write<B> {
    fd: SharedFd,
    buf: B,
    offset: Option<u64>,
}

impl<B: IoBuf> Write<B> {
    pub(crate) fn new(fd: &SharedFd, buf: B, offset: Option<u64>) -> Self {
        Write {
            fd: fd.clone(),
            buf,
            offset,
        }
    }
}

// SAFETY: as for `Read` (the kernel only reads the buffer).
unsafe impl<B: IoBuf> OpCode for Write<B> {
    type Output = BufResult<usize, B>;
    #[cfg(target_os = "linux")]
    const CODE: u8 = opcode::Write::CODE;

    #[cfg(target_os = "linux")]
    fn sqe(&mut self) -> squeue::Entry {
        let len = len32(self.buf.bytes_init());
        fd_sqe!(&self.fd, t => opcode::Write::new(t, self.buf.stable_ptr(), len)
            .offset(self.offset.unwrap_or(u64::MAX))
            .build())
    }

    fn readiness(&self) -> Readiness<'_> {
        Readiness::Fd(&self.fd, Direction::Write)
    }

    fn attempt(&mut self) -> io::Result<usize> {
        let (ptr, len) = (self.buf.stable_ptr(), self.buf.bytes_init());
        // SAFETY: `ptr` points to `len` initialised bytes of `buf`.
        cvt(unsafe {
            match self.offset {
                Some(off) => libc::pwrite(self.fd.raw(), ptr.cast(), len, off as libc::off_t),
                None => libc::write(self.fd.raw(), ptr.cast(), len),
            }
        })
    }

    fn complete(self, res: io::Result<usize>, _flags: u32) -> Self::Output {
        (res, self.buf)
    }
}

/// `recv(2)` into the buffer's capacity.
pub(crate) struct Recv<B> {
    fd: SharedFd,
    buf: B,
    flags: i32,
    /// `msg_flags` of the last readiness attempt (Unix streams).
    msg_flags: Option<libc::c_int>,
}

impl<B: IoBufMut> Recv<B> {
    pub(crate) fn new(fd: &SharedFd, buf: B, flags: i32) -> Self {
        Recv {
            fd: fd.clone(),
            buf,
            flags,
            msg_flags: None,
        }
    }

    fn short_read(&self) -> ShortRead {
        // Flags such as MSG_PEEK leave the data queued.
        if self.flags == 0 {
            self.fd.short_read()
        } else {
            ShortRead::Inconclusive
        }
    }
}

// SAFETY: as for `Read`.
unsafe impl<B: IoBufMut> OpCode for Recv<B> {
    type Output = BufResult<usize, B>;
    #[cfg(target_os = "linux")]
    const CODE: u8 = opcode::Recv::CODE;

    #[cfg(target_os = "linux")]
    fn sqe(&mut self) -> squeue::Entry {
        let len = len32(self.buf.bytes_total());
        fd_sqe!(&self.fd, t => opcode::Recv::new(t, self.buf.stable_mut_ptr(), len)
            .flags(self.flags)
            .build())
    }

    fn immediate(&mut self) -> Option<io::Result<usize>> {
        // As for `Read`: a zero-length receive answers at once.
        (self.buf.bytes_total() == 0).then_some(Ok(0))
    }

    fn readiness(&self) -> Readiness<'_> {
        Readiness::Fd(&self.fd, Direction::Read)
    }

    fn attempt(&mut self) -> io::Result<usize> {
        let (ptr, len) = (self.buf.stable_mut_ptr(), self.buf.bytes_total());
        // SAFETY: `ptr` points to `len` writable bytes of `buf`.
        let (n, msg_flags) = unsafe { recv_now(&self.fd, ptr, len, self.flags, self.short_read()) }?;
        self.msg_flags = msg_flags;
        Ok(n)
    }

    fn drained(&self, n: usize) -> bool {
        self.short_read().drained(n, self.buf.bytes_total(), self.msg_flags)
    }

    fn complete(self, res: io::Result<usize>, _flags: u32) -> Self::Output {
        filled(res, self.buf)
    }
}

/// One non-blocking receive into `len` bytes at `ptr`: `recv(2)`, or
/// `recvmsg(2)` without a control buffer for [`ShortRead::DrainsUnlessCtrunc`]
/// fds, whose `msg_flags` (returned then) tell whether ancillary data ended
/// the read early.
///
/// # Safety
///
/// `ptr` must be valid for writes of `len` bytes for the call's duration.
pub(crate) unsafe fn recv_now(
    fd: &SharedFd,
    ptr: *mut u8,
    len: usize,
    flags: libc::c_int,
    kind: ShortRead,
) -> io::Result<(usize, Option<libc::c_int>)> {
    if kind != ShortRead::DrainsUnlessCtrunc {
        // SAFETY: forwarded from the caller.
        return cvt(unsafe { libc::recv(fd.raw(), ptr.cast(), len, flags) }).map(|n| (n, None));
    }
    let mut iov = libc::iovec {
        iov_base: ptr.cast(),
        iov_len: len,
    };
    // SAFETY: an all-zero msghdr is valid (no name, no control buffer).
    let mut msg: libc::msghdr = unsafe { std::mem::zeroed() };
    msg.msg_iov = &mut iov;
    msg.msg_iovlen = 1;
    // SAFETY: `msg` points at one iovec over the caller's `len` writable
    // bytes and at nothing else; both outlive the call.
    let n = cvt(unsafe { libc::recvmsg(fd.raw(), &mut msg, flags) })?;
    Ok((n, Some(msg.msg_flags)))
}

/// `send(2)` of the initialised bytes, with `MSG_NOSIGNAL` so a closed peer
/// gives `EPIPE` instead of killing the process.
pub(crate) struct Send<B> {
    fd: SharedFd,
    buf: B,
    flags: i32,
}

impl<B: IoBuf> Send<B> {
    pub(crate) fn new(fd: &SharedFd, buf: B, flags: i32) -> Self {
        Send {
            fd: fd.clone(),
            buf,
            flags: flags | libc::MSG_NOSIGNAL,
        }
    }
}

// SAFETY: as for `Write`.
unsafe impl<B: IoBuf> OpCode for Send<B> {
    type Output = BufResult<usize, B>;
    #[cfg(target_os = "linux")]
    const CODE: u8 = opcode::Send::CODE;

    #[cfg(target_os = "linux")]
    fn sqe(&mut self) -> squeue::Entry {
        let len = len32(self.buf.bytes_init());
        fd_sqe!(&self.fd, t => opcode::Send::new(t, self.buf.stable_ptr(), len)
            .flags(self.flags)
            .build())
    }

    fn readiness(&self) -> Readiness<'_> {
        Readiness::Fd(&self.fd, Direction::Write)
    }

    fn attempt(&mut self) -> io::Result<usize> {
        let (ptr, len) = (self.buf.stable_ptr(), self.buf.bytes_init());
        // SAFETY: `ptr` points to `len` initialised bytes of `buf`.
        cvt(unsafe { libc::send(self.fd.raw(), ptr.cast(), len, self.flags) })
    }

    fn complete(self, res: io::Result<usize>, _flags: u32) -> Self::Output {
        (res, self.buf)
    }
}

#[cfg(target_os = "linux")]
impl Send<crate::buf::Slice<Vec<u8>>> {
    /// Hands a write-behind send (bytes the API already reported as
    /// written) to the driver to finish, short sends included, until
    /// `deadline`, instead of cancelling it (see `Op::linger`).
    pub(crate) fn linger(op: super::Submit<Self>, deadline: std::time::Instant) {
        let Some(op) = op.into_uring() else { return };
        // Every SQE `linger_send_step` builds points into the state's `Vec`,
        // owned by the driver's lingering slot until the final completion.
        // SAFETY: that memory and the `SharedFd` (fd open) outlive each SQE.
        unsafe {
            op.linger(
                deadline,
                |s: Self| {
                    let begin = s.buf.begin();
                    (s.fd, s.buf.into_inner(), begin)
                },
                linger_send_step,
            )
        }
    }
}

/// One completion of a lingering send: the SEND for the bytes still
/// unsent, or `None` when all were sent or the send failed.
#[cfg(target_os = "linux")]
fn linger_send_step(state: &mut (SharedFd, Vec<u8>, usize), res: i32) -> Option<squeue::Entry> {
    let (fd, buf, off) = state;
    match res {
        n if n > 0 => *off += n as usize,
        n if n == -libc::EINTR || n == -libc::EAGAIN => {}
        _ => return None,
    }
    let rest = buf.get(*off..).filter(|r| !r.is_empty())?;
    Some(fd_sqe!(&fd, t => opcode::Send::new(t, rest.as_ptr(), len32(rest.len()))
            .flags(libc::MSG_NOSIGNAL)
            .build()))
}

/// A receive straight into a borrowed slice, for poll-based callers (the
/// `futures-io` traits): only the fallback backend can do it (io_uring
/// needs memory the operation owns until the completion), so on io_uring
/// this is `None` and the caller uses an owned-buffer [`Recv`].
pub(crate) fn poll_recv_slice(
    drv: &crate::driver::Driver,
    fd: &SharedFd,
    token: &mut Option<ringloop_fallback::WaitToken>,
    cx: &mut std::task::Context<'_>,
    out: &mut [u8],
) -> Option<std::task::Poll<io::Result<usize>>> {
    let crate::driver::Driver::Fallback(r) = drv else {
        return None;
    };
    let kind = fd.short_read();
    let len = out.len();
    let ptr = out.as_mut_ptr();
    Some(
        r.poll_retry(
            fd,
            Direction::Read,
            token,
            cx,
            true,
            // SAFETY: `ptr` is valid for writes of `len` bytes: it is `out`,
            // borrowed mutably for this whole call.
            || unsafe { recv_now(fd, ptr, len, 0, kind) },
            |&(n, msg_flags)| kind.drained(n, len, msg_flags),
        )
        .map(|res| res.map(|(n, _)| n)),
    )
}

/// A send straight from a borrowed slice (see [`poll_recv_slice`]); `None`
/// on io_uring, where the caller copies into an owned-buffer [`Send`].
pub(crate) fn poll_send_slice(
    drv: &crate::driver::Driver,
    fd: &SharedFd,
    token: &mut Option<ringloop_fallback::WaitToken>,
    cx: &mut std::task::Context<'_>,
    data: &[u8],
) -> Option<std::task::Poll<io::Result<usize>>> {
    let crate::driver::Driver::Fallback(r) = drv else {
        return None;
    };
    Some(r.poll_retry(
        fd,
        Direction::Write,
        token,
        cx,
        true,
        // SAFETY: `data` is a valid slice for the call's duration.
        || cvt(unsafe { libc::send(fd.raw(), data.as_ptr().cast(), data.len(), libc::MSG_NOSIGNAL) }),
        |_| false,
    ))
}

/// `SEND_ZC` (6.0): a send whose bytes the kernel takes straight from the
/// buffer. It completes twice: the result, then (`IORING_CQE_F_NOTIF`) the
/// notification that the kernel no longer reads the buffer; the future
/// resolves — and a dropped one releases the buffer — only after the
/// second. With `report` (`IORING_SEND_ZC_REPORT_USAGE`, 6.2) the output
/// also tells whether the kernel copied the bytes anyway (loopback, or a
/// device that cannot send from user pages), in which case zero-copy only
/// cost the page pinning and the extra CQE. io_uring only: the fallback
/// backend and smaller sends use [`Send`].
#[cfg(target_os = "linux")]
pub(crate) struct SendZc<B> {
    fd: SharedFd,
    buf: B,
    flags: i32,
    report: bool,
}

/// What a [`SendZc`] resolves to: the send's result, the buffer, and
/// whether the notification reported that the kernel copied the bytes.
#[cfg(target_os = "linux")]
pub(crate) type SendZcOutput<B> = (io::Result<usize>, B, bool);

#[cfg(target_os = "linux")]
impl<B: IoBuf> SendZc<B> {
    pub(crate) fn new(fd: &SharedFd, buf: B, flags: i32, report: bool) -> Self {
        SendZc {
            fd: fd.clone(),
            buf,
            flags: flags | libc::MSG_NOSIGNAL,
            report,
        }
    }
}

// SAFETY: as for `Send`; the driver keeps the op (and so the buffer) until
// the notification, the final CQE, has arrived.
#[cfg(target_os = "linux")]
unsafe impl<B: IoBuf> OpCode for SendZc<B> {
    type Output = SendZcOutput<B>;
    const CODE: u8 = opcode::SendZc::CODE;

    fn sqe(&mut self) -> squeue::Entry {
        let len = len32(self.buf.bytes_init());
        let zc_flags = if self.report {
            crate::driver::uring::ZC_REPORT_USAGE
        } else {
            0
        };
        fd_sqe!(&self.fd, t => opcode::SendZc::new(t, self.buf.stable_ptr(), len)
            .flags(self.flags)
            .zc_flags(zc_flags)
            .build())
    }

    fn readiness(&self) -> Readiness<'_> {
        Readiness::Unsupported
    }

    /// `flags` carries `IORING_CQE_F_NOTIF` when the notification reported
    /// a copy (see `Op::poll_with_flags`).
    fn complete(self, res: io::Result<usize>, flags: u32) -> Self::Output {
        (res, self.buf, io_uring::cqueue::notif(flags))
    }
}
