//! The operations, each with an io_uring and a readiness implementation.
//!
//! What a dropped (cancelled) operation may already have done:
//! * read / recv / accept: on io_uring the kernel may complete it before the
//!   AsyncCancel lands; the bytes are then consumed (lost to the caller) and
//!   an accepted fd is closed by the driver. On the readiness backend
//!   nothing happens after the drop.
//! * write / send: may have written some or all bytes.
//! * connect: the socket may be connected or half-way; drop the socket.

use std::io;
use std::mem::MaybeUninit;
use std::net::Shutdown;
use std::os::fd::{FromRawFd, OwnedFd};

use ringloop_fallback::Direction;
use socket2::SockAddr;

#[cfg(target_os = "linux")]
use io_uring::{opcode, types};

use super::{SharedFd, ShortRead, cvt, retry, retry_drain};
use crate::buf::{BufResult, IoBuf, IoBufMut};
use crate::driver::Driver;

#[cfg(target_os = "linux")]
fn fd_of(fd: &SharedFd) -> types::Fd {
    types::Fd(fd.raw())
}

/// `read(2)` (or `pread(2)` with an offset) into the buffer's spare capacity.
#[allow(dead_code)] // Used by files and pipes next.
pub(crate) async fn read<B: IoBufMut>(
    drv: &Driver,
    fd: &SharedFd,
    mut buf: B,
    offset: Option<u64>,
) -> BufResult<usize, B> {
    if buf.bytes_total() == 0 {
        // Nothing to read into: answer at once (a zero-length read could
        // otherwise wait for data that it cannot take).
        return (Ok(0), buf);
    }
    let res = match drv {
        #[cfg(target_os = "linux")]
        Driver::Uring(d) => {
            // SAFETY: the SQE points into `buf`'s stable heap storage and at
            // `fd`, both owned by the op's resources until completion.
            let op = unsafe {
                d.submit((fd.clone(), buf), |(fd, buf)| {
                    let len = buf.bytes_total().min(u32::MAX as usize) as u32;
                    opcode::Read::new(fd_of(fd), buf.stable_mut_ptr(), len)
                        .offset(offset.unwrap_or(u64::MAX))
                        .build()
                })
            };
            let (res, (_, b)) = op.await;
            buf = b;
            res.map(|n| n as usize)
        }
        Driver::Readiness(r) => {
            let len = buf.bytes_total();
            let ptr = buf.stable_mut_ptr();
            // A positioned read is a file's: its short reads mean nothing.
            let kind = match offset {
                Some(_) => ShortRead::Inconclusive,
                None => fd.short_read(),
            };
            retry_drain(
                r,
                fd,
                Direction::Read,
                || {
                    // SAFETY: `ptr` points to `len` writable bytes of `buf`,
                    // which outlives this call.
                    cvt(unsafe {
                        match offset {
                            Some(off) => libc::pread(fd.raw(), ptr.cast(), len, off as libc::off_t),
                            None => libc::read(fd.raw(), ptr.cast(), len),
                        }
                    })
                },
                |&n| kind.drained(n, len, None),
            )
            .await
        }
    };
    if let Ok(n) = res {
        // SAFETY: the kernel initialised the first `n` bytes.
        unsafe { buf.set_init(n) };
    }
    (res, buf)
}

/// `write(2)` (or `pwrite(2)` with an offset) of the buffer's initialised bytes.
#[allow(dead_code)] // Used by files and pipes next.
pub(crate) async fn write<B: IoBuf>(drv: &Driver, fd: &SharedFd, buf: B, offset: Option<u64>) -> BufResult<usize, B> {
    match drv {
        #[cfg(target_os = "linux")]
        Driver::Uring(d) => {
            // SAFETY: the SQE points into `buf`'s stable storage and at `fd`,
            // both owned by the op's resources until completion.
            let op = unsafe {
                d.submit((fd.clone(), buf), |(fd, buf)| {
                    let len = buf.bytes_init().min(u32::MAX as usize) as u32;
                    opcode::Write::new(fd_of(fd), buf.stable_ptr(), len)
                        .offset(offset.unwrap_or(u64::MAX))
                        .build()
                })
            };
            let (res, (_, buf)) = op.await;
            (res.map(|n| n as usize), buf)
        }
        Driver::Readiness(r) => {
            let (ptr, len) = (buf.stable_ptr(), buf.bytes_init());
            let res = retry(r, fd, Direction::Write, || {
                // SAFETY: `ptr` points to `len` initialised bytes of `buf`.
                cvt(unsafe {
                    match offset {
                        Some(off) => libc::pwrite(fd.raw(), ptr.cast(), len, off as libc::off_t),
                        None => libc::write(fd.raw(), ptr.cast(), len),
                    }
                })
            })
            .await;
            (res, buf)
        }
    }
}

/// `recv(2)` into the buffer's capacity.
pub(crate) async fn recv<B: IoBufMut>(drv: &Driver, fd: &SharedFd, mut buf: B, flags: i32) -> BufResult<usize, B> {
    if buf.bytes_total() == 0 {
        // As in `read`: a zero-length receive answers at once.
        return (Ok(0), buf);
    }
    let res = match drv {
        #[cfg(target_os = "linux")]
        Driver::Uring(d) => {
            // SAFETY: as in `read`.
            let op = unsafe {
                d.submit((fd.clone(), buf), |(fd, buf)| {
                    let len = buf.bytes_total().min(u32::MAX as usize) as u32;
                    opcode::Recv::new(fd_of(fd), buf.stable_mut_ptr(), len)
                        .flags(flags)
                        .build()
                })
            };
            let (res, (_, b)) = op.await;
            buf = b;
            res.map(|n| n as usize)
        }
        Driver::Readiness(r) => {
            let (ptr, len) = (buf.stable_mut_ptr(), buf.bytes_total());
            // Flags such as MSG_PEEK leave the data queued.
            let kind = if flags == 0 {
                fd.short_read()
            } else {
                ShortRead::Inconclusive
            };
            retry_drain(
                r,
                fd,
                Direction::Read,
                // SAFETY: `ptr` points to `len` writable bytes of `buf`.
                || unsafe { recv_now(fd, ptr, len, flags, kind) },
                |&(n, msg_flags)| kind.drained(n, len, msg_flags),
            )
            .await
            .map(|(n, _)| n)
        }
    };
    if let Ok(n) = res {
        // SAFETY: the kernel initialised the first `n` bytes.
        unsafe { buf.set_init(n) };
    }
    (res, buf)
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

/// `send(2)` of the buffer's initialised bytes, with `MSG_NOSIGNAL` so a
/// closed peer gives `EPIPE` instead of killing the process.
pub(crate) async fn send<B: IoBuf>(drv: &Driver, fd: &SharedFd, buf: B, flags: i32) -> BufResult<usize, B> {
    let flags = flags | libc::MSG_NOSIGNAL;
    match drv {
        #[cfg(target_os = "linux")]
        Driver::Uring(d) => {
            // SAFETY: as in `write`.
            let op = unsafe {
                d.submit((fd.clone(), buf), |(fd, buf)| {
                    let len = buf.bytes_init().min(u32::MAX as usize) as u32;
                    opcode::Send::new(fd_of(fd), buf.stable_ptr(), len).flags(flags).build()
                })
            };
            let (res, (_, buf)) = op.await;
            (res.map(|n| n as usize), buf)
        }
        Driver::Readiness(r) => {
            let (ptr, len) = (buf.stable_ptr(), buf.bytes_init());
            let res = retry(r, fd, Direction::Write, || {
                // SAFETY: `ptr` points to `len` initialised bytes of `buf`.
                cvt(unsafe { libc::send(fd.raw(), ptr.cast(), len, flags) })
            })
            .await;
            (res, buf)
        }
    }
}

/// Storage for a peer address filled in by the kernel (heap, so stable).
struct AddrBuf {
    storage: MaybeUninit<libc::sockaddr_storage>,
    len: libc::socklen_t,
}

impl AddrBuf {
    fn new() -> Box<AddrBuf> {
        Box::new(AddrBuf {
            storage: MaybeUninit::zeroed(),
            len: std::mem::size_of::<libc::sockaddr_storage>() as libc::socklen_t,
        })
    }
    fn to_sockaddr(&self) -> SockAddr {
        // SAFETY: the storage was zeroed and the kernel wrote `len` bytes of
        // a valid address into it; `sockaddr_storage` is large enough.
        unsafe {
            let storage: libc::sockaddr_storage = self.storage.assume_init_read();
            SockAddr::new(storage, self.len)
        }
    }
}

pub(crate) fn close_orphan_fd(res: i32, _flags: u32) {
    if res >= 0 {
        // SAFETY: an accept/open that completed after its future was dropped:
        // nobody else knows this fd, so closing it is the only way not to leak it.
        unsafe { libc::close(res) };
    }
}

/// `accept4(2)` with `SOCK_CLOEXEC` (and non-blocking on the readiness backend).
pub(crate) async fn accept(drv: &Driver, fd: &SharedFd) -> io::Result<(OwnedFd, SockAddr)> {
    match drv {
        #[cfg(target_os = "linux")]
        Driver::Uring(d) => {
            // SAFETY: the SQE points into the boxed `AddrBuf` and at `fd`,
            // owned by the op's resources until completion.
            let op = unsafe {
                d.submit((fd.clone(), AddrBuf::new()), |(fd, addr)| {
                    opcode::Accept::new(fd_of(fd), addr.storage.as_mut_ptr().cast(), &mut addr.len)
                        .flags(libc::SOCK_CLOEXEC)
                        .build()
                })
            }
            .on_orphan_cqe(close_orphan_fd);
            let (res, (_, addr)) = op.await;
            let newfd = res? as i32;
            // SAFETY: the kernel returned a fresh fd that we now own.
            let owned = unsafe { OwnedFd::from_raw_fd(newfd) };
            Ok((owned, addr.to_sockaddr()))
        }
        Driver::Readiness(r) => {
            let mut addr = AddrBuf::new();
            let newfd = retry(r, fd, Direction::Read, || {
                addr.len = std::mem::size_of::<libc::sockaddr_storage>() as libc::socklen_t;
                // SAFETY: `addr` is a valid, writable sockaddr_storage + length.
                cvt(unsafe {
                    libc::accept4(
                        fd.raw(),
                        addr.storage.as_mut_ptr().cast(),
                        &mut addr.len,
                        libc::SOCK_CLOEXEC | libc::SOCK_NONBLOCK,
                    )
                } as isize)
            })
            .await?;
            // SAFETY: the kernel returned a fresh fd that we now own.
            let owned = unsafe { OwnedFd::from_raw_fd(newfd as i32) };
            Ok((owned, addr.to_sockaddr()))
        }
    }
}

/// `connect(2)`.
pub(crate) async fn connect(drv: &Driver, fd: &SharedFd, addr: SockAddr) -> io::Result<()> {
    match drv {
        #[cfg(target_os = "linux")]
        Driver::Uring(d) => {
            // SAFETY: the SQE points into the boxed address and at `fd`,
            // owned by the op's resources until completion.
            let op = unsafe {
                d.submit((fd.clone(), Box::new(addr)), |(fd, addr)| {
                    opcode::Connect::new(fd_of(fd), addr.as_ptr().cast(), addr.len()).build()
                })
            };
            op.await.0.map(drop)
        }
        Driver::Readiness(r) => {
            // SAFETY: `addr` is a valid socket address of `addr.len()` bytes.
            let rc = unsafe { libc::connect(fd.raw(), addr.as_ptr().cast(), addr.len()) };
            if rc == 0 {
                return Ok(());
            }
            let err = io::Error::last_os_error();
            if err.raw_os_error() != Some(libc::EINPROGRESS) && err.kind() != io::ErrorKind::Interrupted {
                return Err(err);
            }
            // Writable means the handshake finished (SO_ERROR tells how). A
            // wake-up can also be spurious (another future of the same task
            // woke it): then the socket is still connecting, and we wait on.
            // Like `EAGAIN`, "still connecting" clears cached writability
            // first (the socket's initial "maybe ready"), so the wait blocks
            // until the handshake's event; success leaves it set.
            let key = fd.key()?;
            loop {
                r.reactor().clear_ready(key, Direction::Write);
                super::readiness(r, fd, Direction::Write).await?;
                if let Some(e) = take_socket_error(fd)? {
                    return Err(e);
                }
                match socket2::SockRef::from(fd).peer_addr() {
                    Ok(_) => return Ok(()),
                    Err(e) if e.raw_os_error() == Some(libc::ENOTCONN) => {}
                    Err(e) => return Err(e),
                }
            }
        }
    }
}

fn take_socket_error(fd: &SharedFd) -> io::Result<Option<io::Error>> {
    let mut err: libc::c_int = 0;
    let mut len = std::mem::size_of::<libc::c_int>() as libc::socklen_t;
    // SAFETY: valid out-pointers for an int option.
    let rc = unsafe {
        libc::getsockopt(
            fd.raw(),
            libc::SOL_SOCKET,
            libc::SO_ERROR,
            (&mut err as *mut libc::c_int).cast(),
            &mut len,
        )
    };
    if rc < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok((err != 0).then(|| io::Error::from_raw_os_error(err)))
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
