//! Socket operations: [`Accept`], [`Connect`], [`Close`], [`PollReadable`],
//! [`PollWritable`] (`sendmsg`/`recvmsg` are in `msg.rs`).
//!
//! A dropped accept may still accept a connection on io_uring: the driver
//! closes that fd ([`OpCode::ORPHAN`]). A dropped connect may leave the
//! socket connected or half-way: drop the socket.

use std::io;
use std::mem::{self, MaybeUninit};
use std::os::fd::{FromRawFd, IntoRawFd, OwnedFd};

use ringloop_fallback::Direction;
use socket2::SockAddr;

#[cfg(target_os = "linux")]
use io_uring::{opcode, squeue, types};

use super::{OpCode, Readiness};
use crate::driver::fd::SharedFd;

fn cvt(ret: isize) -> io::Result<usize> {
    if ret < 0 {
        Err(io::Error::last_os_error())
    } else {
        Ok(ret as usize)
    }
}

/// Storage for a peer address filled in by the kernel (heap, so stable).
pub(crate) struct AddrBuf {
    storage: MaybeUninit<libc::sockaddr_storage>,
    len: libc::socklen_t,
}

impl AddrBuf {
    pub(crate) fn new() -> Box<AddrBuf> {
        Box::new(AddrBuf {
            storage: MaybeUninit::zeroed(),
            len: mem::size_of::<libc::sockaddr_storage>() as libc::socklen_t,
        })
    }
    pub(crate) fn to_sockaddr(&self) -> SockAddr {
        // SAFETY: the storage was zeroed and the kernel wrote `len` bytes of
        // a valid address into it; `sockaddr_storage` is large enough.
        unsafe {
            let storage: libc::sockaddr_storage = self.storage.assume_init_read();
            SockAddr::new(storage, self.len)
        }
    }
}

/// Closes an fd produced by a completion nobody collects (accept, open).
#[cfg(target_os = "linux")]
pub(crate) fn close_orphan_fd(res: i32, _flags: u32) {
    if res >= 0 {
        // An accept/open that completed after its future was dropped.
        // SAFETY: nobody else knows this fd; closing it is the only way not to leak it.
        unsafe { libc::close(res) };
    }
}

/// `accept4(2)` with `SOCK_CLOEXEC` (and non-blocking on the fallback
/// backend).
pub(crate) struct Accept {
    fd: SharedFd,
    addr: Box<AddrBuf>,
}

impl Accept {
    pub(crate) fn new(fd: &SharedFd) -> Self {
        Accept {
            fd: fd.clone(),
            addr: AddrBuf::new(),
        }
    }
}

// SAFETY: the SQE points into the boxed `AddrBuf` and names `fd`, both
// owned by the op until the final completion.
unsafe impl OpCode for Accept {
    type Output = io::Result<(OwnedFd, SockAddr)>;
    #[cfg(target_os = "linux")]
    const CODE: u8 = opcode::Accept::CODE;
    #[cfg(target_os = "linux")]
    const ORPHAN: Option<super::OrphanFn> = Some(close_orphan_fd);

    #[cfg(target_os = "linux")]
    fn sqe(&mut self) -> squeue::Entry {
        fd_sqe!(&self.fd, t => opcode::Accept::new(
            t,
            self.addr.storage.as_mut_ptr().cast(),
            &mut self.addr.len,
        )
        .flags(libc::SOCK_CLOEXEC)
        .build())
    }

    fn readiness(&self) -> Readiness<'_> {
        Readiness::Fd(&self.fd, Direction::Read)
    }

    fn attempt(&mut self) -> io::Result<usize> {
        self.addr.len = mem::size_of::<libc::sockaddr_storage>() as libc::socklen_t;
        // SAFETY: `addr` is a valid, writable sockaddr_storage + length.
        cvt(unsafe {
            libc::accept4(
                self.fd.raw(),
                self.addr.storage.as_mut_ptr().cast(),
                &mut self.addr.len,
                libc::SOCK_CLOEXEC | libc::SOCK_NONBLOCK,
            )
        } as isize)
    }

    fn complete(self, res: io::Result<usize>, _flags: u32) -> Self::Output {
        let newfd = res? as libc::c_int;
        // SAFETY: the kernel returned a fresh fd that we now own.
        let owned = unsafe { OwnedFd::from_raw_fd(newfd) };
        Ok((owned, self.addr.to_sockaddr()))
    }
}

/// `connect(2)`. On the fallback backend: the non-blocking connect, then
/// (on `EINPROGRESS`) writability, `SO_ERROR` and a peer-address check.
pub(crate) struct Connect {
    fd: SharedFd,
    addr: Box<SockAddr>,
    /// Fallback backend: `connect` was called and said `EINPROGRESS`.
    started: bool,
}

impl Connect {
    pub(crate) fn new(fd: &SharedFd, addr: SockAddr) -> Self {
        Connect {
            fd: fd.clone(),
            addr: Box::new(addr),
            started: false,
        }
    }
}

// SAFETY: the SQE points into the boxed address and names `fd`, both owned
// by the op until completion.
unsafe impl OpCode for Connect {
    type Output = io::Result<()>;
    #[cfg(target_os = "linux")]
    const CODE: u8 = opcode::Connect::CODE;

    #[cfg(target_os = "linux")]
    fn sqe(&mut self) -> squeue::Entry {
        fd_sqe!(&self.fd, t => opcode::Connect::new(t, self.addr.as_ptr().cast(), self.addr.len()).build())
    }

    fn readiness(&self) -> Readiness<'_> {
        Readiness::Fd(&self.fd, Direction::Write)
    }

    fn may_wait_first(&self) -> bool {
        self.started
    }

    fn attempt(&mut self) -> io::Result<usize> {
        if !self.started {
            // SAFETY: `addr` is a valid socket address of `addr.len()` bytes.
            let rc = unsafe { libc::connect(self.fd.raw(), self.addr.as_ptr().cast(), self.addr.len()) };
            if rc == 0 {
                return Ok(0);
            }
            let err = io::Error::last_os_error();
            if err.raw_os_error() != Some(libc::EINPROGRESS) && err.kind() != io::ErrorKind::Interrupted {
                return Err(err);
            }
            // In progress: like `EAGAIN`, this clears cached writability
            // (the socket's initial "maybe ready"), so the wait blocks
            // until the handshake's event.
            self.started = true;
            return Err(io::ErrorKind::WouldBlock.into());
        }
        // Writable means the handshake finished (SO_ERROR tells how). A
        // wake-up can also be spurious: then the socket is still
        // connecting, and we wait on.
        if let Some(e) = take_socket_error(&self.fd)? {
            return Err(e);
        }
        match socket2::SockRef::from(&self.fd).peer_addr() {
            Ok(_) => Ok(0),
            Err(e) if e.raw_os_error() == Some(libc::ENOTCONN) => Err(io::ErrorKind::WouldBlock.into()),
            Err(e) => Err(e),
        }
    }

    fn complete(self, res: io::Result<usize>, _flags: u32) -> Self::Output {
        res.map(drop)
    }
}

fn take_socket_error(fd: &SharedFd) -> io::Result<Option<io::Error>> {
    let mut err: libc::c_int = 0;
    let mut len = mem::size_of::<libc::c_int>() as libc::socklen_t;
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

/// `close(2)` of an fd nothing else holds. The kernel does not cancel a
/// close, so a dropped one still runs and the fd cannot leak.
pub(crate) struct Close {
    fd: Option<OwnedFd>,
    #[cfg(target_os = "linux")]
    raw: libc::c_int,
}

impl Close {
    pub(crate) fn new(fd: OwnedFd) -> Self {
        Close {
            #[cfg(target_os = "linux")]
            raw: std::os::fd::AsRawFd::as_raw_fd(&fd),
            fd: Some(fd),
        }
    }
}

// SAFETY: the SQE references no memory; the fd is the op's to close (the
// `OwnedFd` is released into the SQE and never closed by us afterwards).
unsafe impl OpCode for Close {
    type Output = io::Result<()>;
    #[cfg(target_os = "linux")]
    const CODE: u8 = opcode::Close::CODE;

    #[cfg(target_os = "linux")]
    fn sqe(&mut self) -> squeue::Entry {
        // The kernel closes it now: we must not.
        if let Some(fd) = self.fd.take() {
            let _ = fd.into_raw_fd();
        }
        opcode::Close::new(types::Fd(self.raw)).build()
    }

    fn readiness(&self) -> Readiness<'_> {
        Readiness::Once
    }

    fn attempt(&mut self) -> io::Result<usize> {
        let Some(fd) = self.fd.take() else { return Ok(0) };
        let raw = fd.into_raw_fd();
        // SAFETY: we own `raw` (taken from the `OwnedFd`) and close it once.
        if unsafe { libc::close(raw) } < 0 {
            let e = io::Error::last_os_error();
            // EINTR after close(2) on Linux means the fd is closed anyway.
            if e.kind() != io::ErrorKind::Interrupted {
                return Err(e);
            }
        }
        Ok(0)
    }

    fn complete(self, res: io::Result<usize>, _flags: u32) -> Self::Output {
        res.map(drop)
    }
}

/// Resolves once the fd is readable (or has an error or hang-up pending).
///
/// On io_uring this is a one-shot `IORING_OP_POLL_ADD` for `POLLIN`; on the
/// fallback backend a wait for the reactor's next read report (edge mode:
/// at once, consuming it, if a report came since the last such wait).
/// Either may report readiness that a following non-blocking syscall does
/// not find (another reader was faster): callers must check fully after
/// each wake-up (reap the child, drain the pipe to `EAGAIN`) and poll again.
pub(crate) struct PollReadable {
    fd: SharedFd,
}

impl PollReadable {
    pub(crate) fn new(fd: &SharedFd) -> Self {
        PollReadable { fd: fd.clone() }
    }
}

// SAFETY: the SQE references no memory, only `fd`, which the op keeps open.
unsafe impl OpCode for PollReadable {
    type Output = io::Result<()>;
    #[cfg(target_os = "linux")]
    const CODE: u8 = opcode::PollAdd::CODE;

    #[cfg(target_os = "linux")]
    fn sqe(&mut self) -> squeue::Entry {
        fd_sqe!(&self.fd, t => opcode::PollAdd::new(t, libc::POLLIN as u32).build())
    }

    fn readiness(&self) -> Readiness<'_> {
        Readiness::Wait(&self.fd, Direction::Read)
    }

    fn complete(self, res: io::Result<usize>, _flags: u32) -> Self::Output {
        res.map(drop)
    }
}

/// Resolves once the fd is writable (or has an error or hang-up pending):
/// [`PollReadable`] for `POLLOUT` / the reactor's write readiness, with the
/// same caveats.
pub(crate) struct PollWritable {
    fd: SharedFd,
}

impl PollWritable {
    pub(crate) fn new(fd: &SharedFd) -> Self {
        PollWritable { fd: fd.clone() }
    }
}

// SAFETY: the SQE references no memory, only `fd`, which the op keeps open.
unsafe impl OpCode for PollWritable {
    type Output = io::Result<()>;
    #[cfg(target_os = "linux")]
    const CODE: u8 = opcode::PollAdd::CODE;

    #[cfg(target_os = "linux")]
    fn sqe(&mut self) -> squeue::Entry {
        fd_sqe!(&self.fd, t => opcode::PollAdd::new(t, libc::POLLOUT as u32).build())
    }

    fn readiness(&self) -> Readiness<'_> {
        Readiness::Wait(&self.fd, Direction::Write)
    }

    fn complete(self, res: io::Result<usize>, _flags: u32) -> Self::Output {
        res.map(drop)
    }
}
