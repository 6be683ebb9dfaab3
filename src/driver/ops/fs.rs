//! File and process operations that only io_uring runs: regular files are
//! always "ready", so the fallback backend (and a kernel without the
//! opcode, see [`Driver::supports`](crate::driver::Driver::supports)) runs
//! the plain syscall on the blocking pool instead (`fs/ops.rs`), and waits
//! for a child through its pidfd's readability (`process/reap.rs`).

use std::ffi::CString;
use std::io;
use std::mem::MaybeUninit;
use std::os::fd::{FromRawFd, OwnedFd};

use io_uring::{opcode, squeue, types};

use super::{OpCode, Readiness};
use crate::driver::fd::SharedFd;

fn done(res: io::Result<usize>) -> io::Result<()> {
    res.map(drop)
}

/// `openat(AT_FDCWD, path, flags, mode)`. Dropped in flight: the file may
/// still be opened (and created, with `O_CREAT`); the driver then closes
/// the fd.
pub(crate) struct OpenAt {
    pub(crate) path: CString,
    pub(crate) flags: libc::c_int,
    pub(crate) mode: u32,
}

// SAFETY: the SQE points into the CString's heap buffer, owned by the op.
unsafe impl OpCode for OpenAt {
    type Output = io::Result<OwnedFd>;
    const CODE: u8 = opcode::OpenAt::CODE;
    const ORPHAN: Option<super::OrphanFn> = Some(super::net::close_orphan_fd);

    fn sqe(&mut self) -> squeue::Entry {
        opcode::OpenAt::new(types::Fd(libc::AT_FDCWD), self.path.as_ptr())
            .flags(self.flags)
            .mode(self.mode as libc::mode_t)
            .build()
    }

    fn readiness(&self) -> Readiness<'_> {
        Readiness::Unsupported
    }

    fn complete(self, res: io::Result<usize>, _flags: u32) -> Self::Output {
        let raw = res? as libc::c_int;
        // SAFETY: the kernel returned a fresh fd that we now own.
        Ok(unsafe { OwnedFd::from_raw_fd(raw) })
    }
}

/// `fsync` / `fdatasync`.
pub(crate) struct Fsync {
    pub(crate) fd: SharedFd,
    pub(crate) data_only: bool,
}

// SAFETY: the SQE references no memory; `fd` keeps the fd open.
unsafe impl OpCode for Fsync {
    type Output = io::Result<()>;
    const CODE: u8 = opcode::Fsync::CODE;

    fn sqe(&mut self) -> squeue::Entry {
        let flags = if self.data_only {
            types::FsyncFlags::DATASYNC
        } else {
            types::FsyncFlags::empty()
        };
        opcode::Fsync::new(types::Fd(self.fd.raw())).flags(flags).build()
    }

    fn readiness(&self) -> Readiness<'_> {
        Readiness::Unsupported
    }

    fn complete(self, res: io::Result<usize>, _flags: u32) -> Self::Output {
        done(res)
    }
}

/// `ftruncate`.
pub(crate) struct Ftruncate {
    pub(crate) fd: SharedFd,
    pub(crate) len: u64,
}

// SAFETY: the SQE references no memory; `fd` keeps the fd open.
unsafe impl OpCode for Ftruncate {
    type Output = io::Result<()>;
    const CODE: u8 = opcode::Ftruncate::CODE;

    fn sqe(&mut self) -> squeue::Entry {
        opcode::Ftruncate::new(types::Fd(self.fd.raw()), self.len).build()
    }

    fn readiness(&self) -> Readiness<'_> {
        Readiness::Unsupported
    }

    fn complete(self, res: io::Result<usize>, _flags: u32) -> Self::Output {
        done(res)
    }
}

/// `statx` of `path` (relative to the cwd) or, without a path, of `fd`
/// itself (`AT_EMPTY_PATH`).
pub(crate) struct Statx {
    fd: Option<SharedFd>,
    path: Option<CString>,
    flags: libc::c_int,
    buf: Box<MaybeUninit<libc::statx>>,
}

impl Statx {
    pub(crate) fn new(fd: Option<SharedFd>, path: Option<CString>, flags: libc::c_int) -> Self {
        Statx {
            fd,
            path,
            flags,
            buf: Box::new(MaybeUninit::zeroed()),
        }
    }
}

// SAFETY: the SQE points into the boxed statx buffer and the CString's heap
// buffer (or the static empty string), owned by the op (or 'static); `fd`
// keeps the fd open.
unsafe impl OpCode for Statx {
    type Output = io::Result<libc::statx>;
    const CODE: u8 = opcode::Statx::CODE;

    fn sqe(&mut self) -> squeue::Entry {
        let dirfd = self.fd.as_ref().map_or(libc::AT_FDCWD, |fd| fd.raw());
        let name = self.path.as_ref().map_or(c"".as_ptr(), |p| p.as_ptr());
        opcode::Statx::new(types::Fd(dirfd), name, self.buf.as_mut_ptr().cast())
            .flags(self.flags)
            .mask(libc::STATX_BASIC_STATS | libc::STATX_BTIME)
            .build()
    }

    fn readiness(&self) -> Readiness<'_> {
        Readiness::Unsupported
    }

    fn complete(self, res: io::Result<usize>, _flags: u32) -> Self::Output {
        res?;
        // SAFETY: the buffer was zeroed (every field of `statx` is an
        // integer, so any bytes are a valid value) and the kernel filled it.
        Ok(unsafe { self.buf.assume_init_read() })
    }
}

/// `unlinkat(AT_FDCWD, path, dir ? AT_REMOVEDIR : 0)`.
pub(crate) struct UnlinkAt {
    pub(crate) path: CString,
    pub(crate) dir: bool,
}

// SAFETY: the SQE points into the CString's heap buffer, owned by the op.
unsafe impl OpCode for UnlinkAt {
    type Output = io::Result<()>;
    const CODE: u8 = opcode::UnlinkAt::CODE;

    fn sqe(&mut self) -> squeue::Entry {
        let flags = if self.dir { libc::AT_REMOVEDIR } else { 0 };
        opcode::UnlinkAt::new(types::Fd(libc::AT_FDCWD), self.path.as_ptr())
            .flags(flags)
            .build()
    }

    fn readiness(&self) -> Readiness<'_> {
        Readiness::Unsupported
    }

    fn complete(self, res: io::Result<usize>, _flags: u32) -> Self::Output {
        done(res)
    }
}

/// `renameat(AT_FDCWD, from, AT_FDCWD, to)`.
pub(crate) struct RenameAt {
    pub(crate) from: CString,
    pub(crate) to: CString,
}

// SAFETY: the SQE points into the two CStrings' heap buffers, owned by the op.
unsafe impl OpCode for RenameAt {
    type Output = io::Result<()>;
    const CODE: u8 = opcode::RenameAt::CODE;

    fn sqe(&mut self) -> squeue::Entry {
        opcode::RenameAt::new(
            types::Fd(libc::AT_FDCWD),
            self.from.as_ptr(),
            types::Fd(libc::AT_FDCWD),
            self.to.as_ptr(),
        )
        .build()
    }

    fn readiness(&self) -> Readiness<'_> {
        Readiness::Unsupported
    }

    fn complete(self, res: io::Result<usize>, _flags: u32) -> Self::Output {
        done(res)
    }
}

/// `mkdirat(AT_FDCWD, path, mode)`.
pub(crate) struct MkdirAt {
    pub(crate) path: CString,
    pub(crate) mode: u32,
}

// SAFETY: the SQE points into the CString's heap buffer, owned by the op.
unsafe impl OpCode for MkdirAt {
    type Output = io::Result<()>;
    const CODE: u8 = opcode::MkDirAt::CODE;

    fn sqe(&mut self) -> squeue::Entry {
        opcode::MkDirAt::new(types::Fd(libc::AT_FDCWD), self.path.as_ptr())
            .mode(self.mode as libc::mode_t)
            .build()
    }

    fn readiness(&self) -> Readiness<'_> {
        Readiness::Unsupported
    }

    fn complete(self, res: io::Result<usize>, _flags: u32) -> Self::Output {
        done(res)
    }
}

/// `waitid(P_PIDFD, pidfd, WEXITED)`: resolves once the kernel reaped the
/// child.
pub(crate) struct WaitId {
    pidfd: SharedFd,
    info: Box<libc::siginfo_t>,
}

impl WaitId {
    pub(crate) fn new(pidfd: &SharedFd) -> Self {
        WaitId {
            pidfd: pidfd.clone(),
            // SAFETY: an all-zero siginfo_t is a valid value.
            info: Box::new(unsafe { std::mem::zeroed() }),
        }
    }
}

// SAFETY: the SQE points at the boxed siginfo (a stable heap address the
// kernel writes at completion) and names the pidfd; both owned by the op.
unsafe impl OpCode for WaitId {
    type Output = io::Result<Box<libc::siginfo_t>>;
    const CODE: u8 = opcode::WaitId::CODE;

    fn sqe(&mut self) -> squeue::Entry {
        opcode::WaitId::new(libc::P_PIDFD, self.pidfd.raw() as libc::id_t, libc::WEXITED)
            .infop((&mut *self.info as *mut libc::siginfo_t).cast_const())
            .build()
    }

    fn readiness(&self) -> Readiness<'_> {
        Readiness::Unsupported
    }

    fn complete(self, res: io::Result<usize>, _flags: u32) -> Self::Output {
        res?;
        Ok(self.info)
    }
}
