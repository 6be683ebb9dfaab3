//! `sendmsg`/`recvmsg` ([`SendMsg`], [`RecvMsg`]): the `msghdr`, its iovec
//! array and the address storage live in one `Box<Msg>` owned by the
//! operation, next to the buffers the iovecs point into; a dropped
//! operation parks all of them in the driver until the kernel's final
//! completion. Vectored stream I/O uses them rather than `writev`/`readv`,
//! so a write to a closed peer gives `EPIPE` (`MSG_NOSIGNAL`) instead of
//! raising `SIGPIPE`.

use std::io;
use std::mem::{self, MaybeUninit};

use ringloop_fallback::Direction;
use socket2::SockAddr;

#[cfg(target_os = "linux")]
use io_uring::{opcode, squeue};

use super::{OpCode, Readiness};
use crate::buf::{BufResult, IoBuf, IoBufMut};
use crate::driver::fd::SharedFd;

fn cvt(ret: isize) -> io::Result<usize> {
    if ret < 0 {
        Err(io::Error::last_os_error())
    } else {
        Ok(ret as usize)
    }
}

/// One buffer, for the message operations (which take buffer lists).
pub(crate) struct One<B>(pub(crate) B);

/// Buffers a send gathers from.
pub(crate) trait OutBufs: 'static {
    /// Appends one iovec per buffer (its initialised bytes).
    fn iovecs(&self, out: &mut Vec<libc::iovec>);
}

/// Buffers a receive scatters into.
pub(crate) trait InBufs: 'static {
    /// Appends one iovec per buffer (its whole capacity, from the start).
    fn iovecs(&mut self, out: &mut Vec<libc::iovec>);
    /// Total capacity.
    fn capacity(&self) -> usize;
    /// Marks the first `n` received bytes as initialised, buffer by buffer.
    ///
    /// # Safety
    ///
    /// The kernel must have written the first `n` bytes of the iovecs.
    unsafe fn received(&mut self, n: usize);
}

fn out_iovec<B: IoBuf>(b: &B) -> libc::iovec {
    libc::iovec {
        iov_base: b.stable_ptr() as *mut libc::c_void,
        iov_len: b.bytes_init(),
    }
}

fn in_iovec<B: IoBufMut>(b: &mut B) -> libc::iovec {
    libc::iovec {
        iov_base: b.stable_mut_ptr().cast(),
        iov_len: b.bytes_total(),
    }
}

impl<B: IoBuf> OutBufs for One<B> {
    fn iovecs(&self, out: &mut Vec<libc::iovec>) {
        out.push(out_iovec(&self.0));
    }
}

impl<B: IoBuf> OutBufs for Vec<B> {
    fn iovecs(&self, out: &mut Vec<libc::iovec>) {
        out.extend(self.iter().map(out_iovec));
    }
}

impl<B: IoBufMut> InBufs for One<B> {
    fn iovecs(&mut self, out: &mut Vec<libc::iovec>) {
        out.push(in_iovec(&mut self.0));
    }
    fn capacity(&self) -> usize {
        self.0.bytes_total()
    }
    unsafe fn received(&mut self, n: usize) {
        // SAFETY: forwarded from the caller; `n` never exceeds the capacity.
        unsafe { self.0.set_init(n.min(self.0.bytes_total())) };
    }
}

impl<B: IoBufMut> InBufs for Vec<B> {
    fn iovecs(&mut self, out: &mut Vec<libc::iovec>) {
        out.extend(self.iter_mut().map(in_iovec));
    }
    fn capacity(&self) -> usize {
        self.iter().map(|b| b.bytes_total()).sum()
    }
    unsafe fn received(&mut self, mut n: usize) {
        for b in self.iter_mut() {
            if n == 0 {
                break;
            }
            // A zero-capacity buffer takes nothing; the next one continues.
            let k = n.min(b.bytes_total());
            // SAFETY: the kernel filled the iovecs in order, so the first `k`
            // bytes of this buffer were written.
            unsafe { b.set_init(k) };
            n -= k;
        }
    }
}

/// A `msghdr` with the iovec array and address storage it points at. Boxed,
/// so the self-references stay valid when the box moves.
pub(crate) struct Msg {
    hdr: libc::msghdr,
    iov: Vec<libc::iovec>,
    addr: MaybeUninit<libc::sockaddr_storage>,
}

impl Msg {
    /// Builds the header. `name`: `Some(Some(a))` sends to `a`, `Some(None)`
    /// asks the kernel for the peer's address, `None` uses no address.
    pub(crate) fn new(iov: Vec<libc::iovec>, name: Option<Option<&SockAddr>>) -> Box<Msg> {
        let mut m = Box::new(Msg {
            // SAFETY: an all-zero `msghdr` is valid (null pointers, zero
            // lengths); zeroing also clears any private padding fields.
            hdr: unsafe { mem::zeroed() },
            iov,
            addr: MaybeUninit::zeroed(),
        });
        m.hdr.msg_iov = m.iov.as_mut_ptr();
        m.hdr.msg_iovlen = m.iov.len() as _;
        match name {
            None => {}
            Some(Some(a)) => {
                let len = (a.len() as usize).min(mem::size_of::<libc::sockaddr_storage>());
                // SAFETY: `a` holds `a.len()` bytes of address, the storage
                // is `sockaddr_storage`-sized, and the two do not overlap.
                unsafe {
                    std::ptr::copy_nonoverlapping(a.as_ptr().cast::<u8>(), m.addr.as_mut_ptr().cast::<u8>(), len)
                };
                m.hdr.msg_name = m.addr.as_mut_ptr().cast();
                m.hdr.msg_namelen = len as libc::socklen_t;
            }
            Some(None) => {
                m.hdr.msg_name = m.addr.as_mut_ptr().cast();
                m.hdr.msg_namelen = mem::size_of::<libc::sockaddr_storage>() as libc::socklen_t;
            }
        }
        m
    }

    /// Resets what a previous `recvmsg` attempt wrote.
    pub(crate) fn reset_for_recv(&mut self) {
        if !self.hdr.msg_name.is_null() {
            self.hdr.msg_namelen = mem::size_of::<libc::sockaddr_storage>() as libc::socklen_t;
        }
        self.hdr.msg_flags = 0;
    }

    /// The address the kernel stored (`None` when none was asked for).
    pub(crate) fn peer(&self) -> Option<SockAddr> {
        if self.hdr.msg_name.is_null() {
            return None;
        }
        let len = (self.hdr.msg_namelen as usize).min(mem::size_of::<libc::sockaddr_storage>());
        // SAFETY: the storage was zeroed and the kernel wrote `len` bytes of
        // address into it; `SockAddr::new` takes storage and length.
        Some(unsafe { SockAddr::new(self.addr.assume_init_read(), len as libc::socklen_t) })
    }
}

/// What a `recvmsg` produced.
pub(crate) struct Received {
    /// Bytes stored in the buffers.
    pub(crate) len: usize,
    /// The datagram was longer than the buffers (the rest is discarded).
    pub(crate) truncated: bool,
    /// The sender's address, when asked for.
    pub(crate) addr: Option<SockAddr>,
}

/// `sendmsg(2)` of `bufs` (gathered, in order), to an address if the
/// message names one, with `MSG_NOSIGNAL`.
pub(crate) struct SendMsg<T> {
    fd: SharedFd,
    bufs: T,
    msg: Box<Msg>,
}

impl<T: OutBufs> SendMsg<T> {
    pub(crate) fn new(fd: &SharedFd, bufs: T, addr: Option<&SockAddr>) -> Self {
        let mut iov = Vec::new();
        bufs.iovecs(&mut iov);
        SendMsg {
            fd: fd.clone(),
            bufs,
            msg: Msg::new(iov, addr.map(Some)),
        }
    }
}

const SEND_FLAGS: libc::c_int = libc::MSG_NOSIGNAL;

// SAFETY: the SQE points at the boxed `msghdr`, which points at its own
// iovec array and address storage (heap, moved with the box) and, through
// the iovecs, into the buffers' stable storage; all owned by the op.
unsafe impl<T: OutBufs> OpCode for SendMsg<T> {
    type Output = BufResult<usize, T>;
    #[cfg(target_os = "linux")]
    const CODE: u8 = opcode::SendMsg::CODE;

    #[cfg(target_os = "linux")]
    fn sqe(&mut self) -> squeue::Entry {
        fd_sqe!(&self.fd, t => opcode::SendMsg::new(t, &self.msg.hdr)
            .flags(SEND_FLAGS as u32)
            .build())
    }

    fn readiness(&self) -> Readiness<'_> {
        Readiness::Fd(&self.fd, Direction::Write)
    }

    fn attempt(&mut self) -> io::Result<usize> {
        // SAFETY: `msg` points at live iovecs into `bufs` and at its own
        // address storage, all valid for this call.
        cvt(unsafe { libc::sendmsg(self.fd.raw(), &self.msg.hdr, SEND_FLAGS) })
    }

    fn complete(self, res: io::Result<usize>, _flags: u32) -> Self::Output {
        (res, self.bufs)
    }
}

/// `sendto(2)` of one buffer's initialised bytes to `addr`, with
/// `MSG_NOSIGNAL`. On io_uring a `SEND` with a destination address (Linux
/// 6.0; the caller checks [`Driver::send_to_supported`](crate::driver::Driver::send_to_supported)),
/// so the kernel copies no `msghdr` and we allocate no iovec array.
pub(crate) struct SendTo<B> {
    fd: SharedFd,
    buf: B,
    /// Boxed: the SQE points at it while the op moves.
    addr: Box<SockAddr>,
}

impl<B: IoBuf> SendTo<B> {
    pub(crate) fn new(fd: &SharedFd, buf: B, addr: SockAddr) -> Self {
        SendTo {
            fd: fd.clone(),
            buf,
            addr: Box::new(addr),
        }
    }
}

// SAFETY: the SQE points into `buf`'s stable storage (`IoBuf`'s contract)
// and at the boxed address, both owned by the op until it completes.
unsafe impl<B: IoBuf> OpCode for SendTo<B> {
    type Output = BufResult<usize, B>;
    #[cfg(target_os = "linux")]
    const CODE: u8 = opcode::Send::CODE;

    #[cfg(target_os = "linux")]
    fn sqe(&mut self) -> squeue::Entry {
        let len = self.buf.bytes_init().min(u32::MAX as usize) as u32;
        let (addr, addr_len) = (self.addr.as_ptr().cast::<libc::sockaddr>(), self.addr.len());
        fd_sqe!(&self.fd, t => opcode::Send::new(t, self.buf.stable_ptr(), len)
            .flags(SEND_FLAGS)
            .dest_addr(addr)
            .dest_addr_len(addr_len)
            .build())
    }

    fn readiness(&self) -> Readiness<'_> {
        Readiness::Fd(&self.fd, Direction::Write)
    }

    fn attempt(&mut self) -> io::Result<usize> {
        // SAFETY: `buf` holds `bytes_init()` readable bytes and `addr` a
        // socket address of `len()` bytes, both valid for this call.
        cvt(unsafe {
            libc::sendto(
                self.fd.raw(),
                self.buf.stable_ptr().cast(),
                self.buf.bytes_init(),
                SEND_FLAGS,
                self.addr.as_ptr().cast(),
                self.addr.len(),
            )
        })
    }

    fn complete(self, res: io::Result<usize>, _flags: u32) -> Self::Output {
        (res, self.buf)
    }
}

/// `recvmsg(2)` into `bufs` (scattered, in order), optionally with the
/// sender's address. `datagram` makes truncation detectable: on Linux it
/// adds `MSG_TRUNC`, so the kernel returns the datagram's full length;
/// everywhere the returned `msg_flags` are checked too.
pub(crate) struct RecvMsg<T> {
    fd: SharedFd,
    bufs: T,
    msg: Box<Msg>,
    flags: libc::c_int,
    datagram: bool,
    cap: usize,
}

impl<T: InBufs> RecvMsg<T> {
    pub(crate) fn new(fd: &SharedFd, mut bufs: T, want_addr: bool, datagram: bool) -> Self {
        let mut iov = Vec::new();
        bufs.iovecs(&mut iov);
        let flags = if datagram && cfg!(any(target_os = "linux", target_os = "android")) {
            libc::MSG_TRUNC
        } else {
            0
        };
        RecvMsg {
            fd: fd.clone(),
            cap: bufs.capacity(),
            bufs,
            msg: Msg::new(iov, want_addr.then_some(None)),
            flags,
            datagram,
        }
    }
}

// SAFETY: as for `SendMsg`; the kernel writes into the buffers (through the
// iovecs), the address storage and the header's length/flag fields.
unsafe impl<T: InBufs> OpCode for RecvMsg<T> {
    type Output = BufResult<Received, T>;
    #[cfg(target_os = "linux")]
    const CODE: u8 = opcode::RecvMsg::CODE;

    #[cfg(target_os = "linux")]
    fn sqe(&mut self) -> squeue::Entry {
        fd_sqe!(&self.fd, t => opcode::RecvMsg::new(t, &mut self.msg.hdr)
            .flags(self.flags as u32)
            .build())
    }

    fn immediate(&mut self) -> Option<io::Result<usize>> {
        // As `Recv`: nothing to read into on a stream answers at once. (A
        // zero-length datagram receive still consumes a datagram.)
        (self.cap == 0 && !self.datagram).then_some(Ok(0))
    }

    fn readiness(&self) -> Readiness<'_> {
        Readiness::Fd(&self.fd, Direction::Read)
    }

    fn attempt(&mut self) -> io::Result<usize> {
        self.msg.reset_for_recv();
        // SAFETY: `msg` points at live iovecs into `bufs` (writable
        // capacity) and at its own address storage.
        cvt(unsafe { libc::recvmsg(self.fd.raw(), &mut self.msg.hdr, self.flags) })
    }

    fn drained(&self, n: usize) -> bool {
        !self.datagram && self.fd.short_read().drained(n, self.cap, Some(self.msg.hdr.msg_flags))
    }

    fn complete(mut self, res: io::Result<usize>, _flags: u32) -> Self::Output {
        match res {
            Ok(n) => {
                let len = n.min(self.cap);
                // SAFETY: the kernel stored `len` bytes through the iovecs.
                unsafe { self.bufs.received(len) };
                let truncated = n > self.cap || self.msg.hdr.msg_flags & libc::MSG_TRUNC != 0;
                let addr = self.msg.peer();
                (Ok(Received { len, truncated, addr }), self.bufs)
            }
            Err(e) => (Err(e), self.bufs),
        }
    }
}
