//! Socket operations beyond `io::ops`: `sendmsg`/`recvmsg` with a heap-owned
//! `msghdr` (vectored stream I/O, datagrams with addresses), `close`, and the
//! owned-buffer helpers every stream type shares.
//!
//! On io_uring the `msghdr`, its iovec array and the address storage live in
//! one `Box<Msg>` that is part of the operation's resources, next to the
//! buffers the iovecs point into; a dropped operation parks all of them in
//! the driver until the kernel's final completion. `SENDMSG`/`RECVMSG`
//! (Linux 5.3) and `CLOSE` (5.6) need no probe: the driver already requires
//! `IORING_REGISTER_PROBE`, which arrived in 5.6.
//!
//! Vectored stream I/O uses `sendmsg`/`recvmsg` rather than `writev`/`readv`
//! on both backends, so a write to a closed peer gives `EPIPE`
//! (`MSG_NOSIGNAL`) instead of raising `SIGPIPE`.
//!
//! What a dropped operation may already have done is as in `io::ops`: a
//! receive may have consumed a datagram (or bytes), a send may have sent.

use std::io;
use std::mem::{self, MaybeUninit};
use std::os::fd::{IntoRawFd, OwnedFd};

use ringloop_fallback::Direction;
use socket2::SockAddr;

#[cfg(target_os = "linux")]
use io_uring::{opcode, types};

use crate::buf::{BufResult, IoBuf, IoBufMut};
use crate::driver::Driver;
use crate::io::{SharedFd, ShortRead, cvt, ops, retry, retry_drain};

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
struct Msg {
    hdr: libc::msghdr,
    iov: Vec<libc::iovec>,
    addr: MaybeUninit<libc::sockaddr_storage>,
}

impl Msg {
    /// Builds the header. `name`: `Some(Some(a))` sends to `a`, `Some(None)`
    /// asks the kernel for the peer's address, `None` uses no address.
    fn new(iov: Vec<libc::iovec>, name: Option<Option<&SockAddr>>) -> Box<Msg> {
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
    fn reset_for_recv(&mut self) {
        if !self.hdr.msg_name.is_null() {
            self.hdr.msg_namelen = mem::size_of::<libc::sockaddr_storage>() as libc::socklen_t;
        }
        self.hdr.msg_flags = 0;
    }

    /// The address the kernel stored (`None` when none was asked for).
    fn peer(&self) -> Option<SockAddr> {
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

#[cfg(target_os = "linux")]
fn fd_of(fd: &SharedFd) -> types::Fd {
    types::Fd(fd.raw())
}

/// `sendmsg(2)` of `bufs` (gathered, in order), to `addr` if given, with
/// `MSG_NOSIGNAL`.
pub(crate) async fn send_msg<T: OutBufs>(
    drv: &Driver,
    fd: &SharedFd,
    bufs: T,
    addr: Option<&SockAddr>,
) -> BufResult<usize, T> {
    let flags = libc::MSG_NOSIGNAL;
    let mut iov = Vec::new();
    bufs.iovecs(&mut iov);
    let msg = Msg::new(iov, addr.map(Some));
    match drv {
        #[cfg(target_os = "linux")]
        Driver::Uring(d) => {
            // The SQE points at the boxed `msghdr`, which points at its own
            // iovec array and address storage (heap, moved with the box) and,
            // through the iovecs, into the buffers' stable storage.
            // SAFETY: `msg`, `bufs` and `fd` are the op's resources until completion.
            let op = unsafe {
                d.submit((fd.clone(), bufs, msg), |(fd, _, msg)| {
                    opcode::SendMsg::new(fd_of(fd), &msg.hdr).flags(flags as u32).build()
                })
            };
            let (res, (_, bufs, _)) = op.await;
            (res.map(|n| n as usize), bufs)
        }
        Driver::Readiness(r) => {
            let res = retry(r, fd, Direction::Write, || {
                // SAFETY: `msg` points at live iovecs into `bufs` and at its
                // own address storage, all valid for this call.
                cvt(unsafe { libc::sendmsg(fd.raw(), &msg.hdr, flags) })
            })
            .await;
            (res, bufs)
        }
    }
}

/// `recvmsg(2)` into `bufs` (scattered, in order). `want_addr` asks for the
/// sender's address. `datagram` makes truncation detectable: on Linux it
/// adds `MSG_TRUNC`, so the kernel returns the datagram's full length (only
/// meaningful — and only passed — for datagram sockets); everywhere the
/// returned `msg_flags` are checked too.
pub(crate) async fn recv_msg<T: InBufs>(
    drv: &Driver,
    fd: &SharedFd,
    mut bufs: T,
    want_addr: bool,
    datagram: bool,
) -> BufResult<Received, T> {
    let cap = bufs.capacity();
    if cap == 0 && !datagram {
        // As `io::ops::recv`: nothing to read into on a stream answers at
        // once. (A zero-length datagram receive still consumes a datagram.)
        return (
            Ok(Received {
                len: 0,
                truncated: false,
                addr: None,
            }),
            bufs,
        );
    }
    let flags = if datagram && cfg!(any(target_os = "linux", target_os = "android")) {
        libc::MSG_TRUNC
    } else {
        0
    };
    let mut iov = Vec::new();
    bufs.iovecs(&mut iov);
    let mut msg = Msg::new(iov, want_addr.then_some(None));
    let (res, msg) = match drv {
        #[cfg(target_os = "linux")]
        Driver::Uring(d) => {
            // As in `send_msg`; the kernel writes into the buffers (through the
            // iovecs), the address storage and the header's length/flag fields.
            // SAFETY: everything the SQE points at is owned by the op's resources.
            let op = unsafe {
                d.submit((fd.clone(), bufs, msg), |(fd, _, msg)| {
                    opcode::RecvMsg::new(fd_of(fd), &mut msg.hdr)
                        .flags(flags as u32)
                        .build()
                })
            };
            let (res, (_, b, msg)) = op.await;
            bufs = b;
            (res.map(|n| n as usize), msg)
        }
        Driver::Readiness(r) => {
            let kind = if datagram {
                ShortRead::Inconclusive
            } else {
                fd.short_read()
            };
            let res = retry_drain(
                r,
                fd,
                Direction::Read,
                || {
                    msg.reset_for_recv();
                    // SAFETY: `msg` points at live iovecs into `bufs` (writable
                    // capacity) and at its own address storage.
                    let n = cvt(unsafe { libc::recvmsg(fd.raw(), &mut msg.hdr, flags) })?;
                    Ok((n, msg.hdr.msg_flags))
                },
                |&(n, msg_flags)| kind.drained(n, cap, Some(msg_flags)),
            )
            .await
            .map(|(n, _)| n);
            (res, msg)
        }
    };
    match res {
        Ok(n) => {
            let len = n.min(cap);
            // SAFETY: the kernel stored `len` bytes through the iovecs.
            unsafe { bufs.received(len) };
            let truncated = n > cap || msg.hdr.msg_flags & libc::MSG_TRUNC != 0;
            (
                Ok(Received {
                    len,
                    truncated,
                    addr: msg.peer(),
                }),
                bufs,
            )
        }
        Err(e) => (Err(e), bufs),
    }
}

/// Closes `fd` and reports the result when this is its last handle
/// (io_uring `CLOSE` or `close(2)`); when an operation still holds it, it is
/// closed once that operation is gone and `Ok` is returned.
pub(crate) async fn close(drv: &Driver, fd: SharedFd) -> io::Result<()> {
    let Ok(owned) = fd.try_into_owned() else {
        return Ok(());
    };
    match drv {
        #[cfg(target_os = "linux")]
        Driver::Uring(d) => {
            let raw = owned.into_raw_fd();
            // A dropped close still runs (the kernel does not cancel closes),
            // so the fd cannot leak.
            // SAFETY: the SQE references no memory; `raw` is ours to close.
            let op = unsafe { d.submit((), |_| opcode::Close::new(types::Fd(raw)).build()) };
            op.await.0.map(drop)
        }
        Driver::Readiness(_) => close_now(owned),
    }
}

fn close_now(fd: OwnedFd) -> io::Result<()> {
    let raw = fd.into_raw_fd();
    // SAFETY: we own `raw` (taken from the `OwnedFd`) and close it once.
    let rc = unsafe { libc::close(raw) };
    if rc < 0 {
        let e = io::Error::last_os_error();
        // EINTR after close(2) on Linux means the fd is closed anyway.
        if e.kind() != io::ErrorKind::Interrupted {
            return Err(e);
        }
    }
    Ok(())
}

/// `write_all` for stream sockets: sends until every initialised byte of
/// `buf` went out.
pub(crate) async fn send_all<B: IoBuf>(drv: &Driver, fd: &SharedFd, buf: B) -> BufResult<(), B> {
    crate::io::write_all_with(buf, |s, _| ops::send(drv, fd, s, 0)).await
}

/// `read_exact` for stream sockets: receives until `buf` holds `len`
/// initialised bytes; an early end of stream is `UnexpectedEof`. A `len`
/// whose buffer cannot be allocated is `OutOfMemory` (nothing is read),
/// never an abort.
pub(crate) async fn recv_exact(drv: &Driver, fd: &SharedFd, mut buf: Vec<u8>, len: usize) -> BufResult<(), Vec<u8>> {
    if let Err(e) = buf.try_reserve(len.saturating_sub(buf.len())) {
        let msg = format!("read_exact: cannot allocate a buffer of {len} bytes: {e}");
        return (Err(io::Error::new(io::ErrorKind::OutOfMemory, msg)), buf);
    }
    while buf.len() < len {
        let start = buf.len();
        let (res, s) = ops::recv(drv, fd, buf.slice(start..len), 0).await;
        buf = s.into_inner();
        match res {
            Ok(0) => return (Err(io::ErrorKind::UnexpectedEof.into()), buf),
            Ok(_) => {}
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return (Err(e), buf),
        }
    }
    (Ok(()), buf)
}

/// Vectored receive on a stream socket: fills `bufs` in order.
pub(crate) async fn recv_vectored<B: IoBufMut>(drv: &Driver, fd: &SharedFd, bufs: Vec<B>) -> BufResult<usize, Vec<B>> {
    let (res, bufs) = recv_msg(drv, fd, bufs, false, false).await;
    (res.map(|r| r.len), bufs)
}

/// Vectored send on a stream socket: gathers `bufs` in order.
pub(crate) async fn send_vectored<B: IoBuf>(drv: &Driver, fd: &SharedFd, bufs: Vec<B>) -> BufResult<usize, Vec<B>> {
    send_msg(drv, fd, bufs, None).await
}

type AcceptFut = std::pin::Pin<Box<dyn std::future::Future<Output = io::Result<(OwnedFd, SockAddr)>>>>;

/// The accept loop behind the listeners' `incoming()` streams: one boxed
/// accept future at a time (dropping it cancels the accept, and an fd the
/// kernel accepted late is closed by the driver).
pub(crate) struct Acceptor {
    drv: Driver,
    fd: SharedFd,
    fut: Option<AcceptFut>,
}

impl Acceptor {
    pub(crate) fn new(drv: &Driver, fd: &SharedFd) -> Acceptor {
        Acceptor {
            drv: drv.clone(),
            fd: fd.clone(),
            fut: None,
        }
    }

    pub(crate) fn poll_accept(
        &mut self,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<io::Result<(OwnedFd, SockAddr)>> {
        let fut = self.fut.get_or_insert_with(|| {
            let (drv, fd) = (self.drv.clone(), self.fd.clone());
            Box::pin(async move { ops::accept(&drv, &fd).await })
        });
        let res = std::task::ready!(fut.as_mut().poll(cx));
        self.fut = None;
        std::task::Poll::Ready(res)
    }

    pub(crate) fn driver(&self) -> &Driver {
        &self.drv
    }
}
