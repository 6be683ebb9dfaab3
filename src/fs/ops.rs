//! The file operations, one function each, with two implementations:
//!
//! * io_uring: the real opcode (`OPENAT`, `READ`/`WRITE` with an offset,
//!   `FSYNC`, `STATX`, `UNLINKAT`, `RENAMEAT`, `MKDIRAT`, `FTRUNCATE`,
//!   `CLOSE`). Every opcode is checked against the probe taken when the ring
//!   was set up ([`Driver::supports`]); one the running kernel lacks
//!   (`UNLINKAT`/`RENAMEAT` arrived in 5.11, `MKDIRAT` in 5.15, `FTRUNCATE`
//!   in 6.9; a seccomp filter may hide others) runs on the blocking pool
//!   instead, with a duplicate of the fd when it needs one.
//! * the blocking pool (fallback backend, and the case above): regular
//!   files are always "ready", so readiness polling cannot help; the plain
//!   syscall runs on a pool thread. Buffers (and an `Arc` of the file) move
//!   into the job and come back with the result, so a dropped future never
//!   frees memory a pool thread still uses.

use std::ffi::{CStr, CString, OsStr};
use std::io;
use std::os::fd::{AsRawFd, FromRawFd, IntoRawFd, OwnedFd, RawFd};
use std::os::unix::ffi::OsStrExt;
use std::path::Path;
use std::sync::{Arc, Mutex};

#[cfg(target_os = "linux")]
use std::os::fd::AsFd;

use super::Metadata;
use crate::buf::{BufResult, IoBuf, IoBufMut};
use crate::driver::Driver;
#[cfg(target_os = "linux")]
use crate::driver::ops::{self as dops, OpCode, submit};
#[cfg(target_os = "linux")]
use crate::io::SharedFd;
use crate::io::cvt;

/// How a [`File`](super::File) holds its fd.
pub(crate) enum FileFd {
    /// io_uring: shared with in-flight operations, closed after the last.
    #[cfg(target_os = "linux")]
    Ring(SharedFd),
    /// Blocking pool: every job holds a clone, so the fd stays open (and its
    /// number is not reused) while a job that may outlive its future runs.
    Pool(Arc<std::fs::File>),
}

impl FileFd {
    pub(crate) fn raw(&self) -> RawFd {
        match self {
            #[cfg(target_os = "linux")]
            FileFd::Ring(fd) => fd.raw(),
            FileFd::Pool(f) => f.as_raw_fd(),
        }
    }

    /// A handle a pool job can own: the file itself on the fallback
    /// backend, a duplicate fd when io_uring lacks the opcode.
    fn pool_file(&self) -> io::Result<Arc<std::fs::File>> {
        match self {
            #[cfg(target_os = "linux")]
            FileFd::Ring(fd) => {
                let dup = fd
                    .as_fd()
                    .try_clone_to_owned()
                    .map_err(|e| io::Error::new(e.kind(), format!("fcntl(F_DUPFD_CLOEXEC) failed: {e}")))?;
                Ok(Arc::new(std::fs::File::from(dup)))
            }
            FileFd::Pool(f) => Ok(f.clone()),
        }
    }
}

#[cfg(test)]
thread_local! {
    /// Unit tests set this to run the blocking-pool path on an io_uring loop
    /// (what a kernel without the opcodes gets).
    pub(crate) static FORCE_POOL: std::cell::Cell<bool> = const { std::cell::Cell::new(false) };
}

fn force_pool() -> bool {
    #[cfg(test)]
    {
        FORCE_POOL.with(|f| f.get())
    }
    #[cfg(not(test))]
    {
        false
    }
}

/// Whether the loop runs on io_uring and the kernel has `O`'s opcode.
#[cfg(target_os = "linux")]
fn ring<O: OpCode>(drv: &Driver) -> bool {
    drv.supports::<O>() && !force_pool()
}

/// A path as the kernel wants it; a NUL byte inside is `InvalidInput`.
pub(crate) fn cstring(path: &Path) -> io::Result<CString> {
    CString::new(path.as_os_str().as_bytes()).map_err(|_| {
        io::Error::new(
            io::ErrorKind::InvalidInput,
            format!("path contains a NUL byte: {:?}", path),
        )
    })
}

fn os_path(path: &CStr) -> &Path {
    Path::new(OsStr::from_bytes(path.to_bytes()))
}

/// Offsets above `i64::MAX` are refused on both backends (io_uring would
/// read `u64::MAX` as "the current position", `pread` as a negative offset).
fn check_offset(offset: u64) -> io::Result<()> {
    if offset > i64::MAX as u64 {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            format!("file offset {offset} is larger than i64::MAX"),
        ));
    }
    Ok(())
}

/// Retries a syscall interrupted by a signal.
fn no_eintr<T>(mut f: impl FnMut() -> io::Result<T>) -> io::Result<T> {
    loop {
        match f() {
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            res => return res,
        }
    }
}

/// Runs `f` on the current loop's blocking pool.
pub(crate) async fn pool<T: Send + 'static>(f: impl FnOnce() -> io::Result<T> + Send + 'static) -> io::Result<T> {
    let lp = crate::runtime::current()
        .ok_or_else(|| io::Error::other("ringloop: no event loop on this thread (create an EventLoop first)"))?;
    let job = lp.run_in_executor(f).map_err(|e| {
        io::Error::other(format!(
            "ringloop: cannot run a file operation on the blocking pool: {e}"
        ))
    })?;
    match job.await {
        Ok(res) => res,
        Err(e) => Err(io::Error::other(format!(
            "ringloop: blocking file operation failed: {e}"
        ))),
    }
}

/// Runs `f(&mut buf)` on the blocking pool and hands `buf` back with the
/// result — also when the job could not be started or panicked. If the
/// future is dropped, the job keeps the buffer until it is done with it.
async fn pool_buf<B, T>(buf: B, f: impl FnOnce(&mut B) -> io::Result<T> + Send + 'static) -> BufResult<T, B>
where
    B: Send + 'static,
    T: Send + 'static,
{
    let home = Arc::new(Mutex::new(Some(buf)));
    let job_home = home.clone();
    let res = pool(move || {
        let mut guard = job_home.lock().unwrap_or_else(|e| e.into_inner());
        match guard.as_mut() {
            Some(buf) => f(buf),
            None => Err(io::Error::other("ringloop: file operation buffer missing")),
        }
    })
    .await;
    // The job (and its lock guard) is gone once `pool` returned: it either
    // ran to the end, unwound, or was dropped without running.
    let buf = home.lock().unwrap_or_else(|e| e.into_inner()).take();
    (res, buf.expect("only this function takes the buffer out"))
}

fn pread<B: IoBufMut>(file: &std::fs::File, buf: &mut B, offset: u64) -> io::Result<usize> {
    let len = buf.bytes_total();
    if len == 0 {
        return Ok(0);
    }
    let ptr = buf.stable_mut_ptr();
    let n = no_eintr(|| {
        // SAFETY: `ptr` points to `len` writable bytes of `buf`, which the
        // job owns for the duration of the call; the fd is kept open by `file`.
        cvt(unsafe { libc::pread(file.as_raw_fd(), ptr.cast(), len, offset as libc::off_t) })
    })?;
    // SAFETY: the kernel initialised the first `n` bytes.
    unsafe { buf.set_init(n) };
    Ok(n)
}

fn pwrite<B: IoBuf>(file: &std::fs::File, buf: &B, offset: u64) -> io::Result<usize> {
    let (ptr, len) = (buf.stable_ptr(), buf.bytes_init());
    no_eintr(|| {
        // SAFETY: `ptr` points to `len` initialised bytes of `buf`, owned by
        // the job for the duration of the call.
        cvt(unsafe { libc::pwrite(file.as_raw_fd(), ptr.cast(), len, offset as libc::off_t) })
    })
}

/// `pread`: `IORING_OP_READ` with an offset, or on the pool.
pub(crate) async fn read_at<B: IoBufMut + Send>(drv: &Driver, fd: &FileFd, buf: B, offset: u64) -> BufResult<usize, B> {
    if let Err(e) = check_offset(offset) {
        return (Err(e), buf);
    }
    #[cfg(target_os = "linux")]
    if let FileFd::Ring(sfd) = fd
        && ring::<dops::Read<B>>(drv)
    {
        return crate::io::ops::read(drv, sfd, buf, Some(offset)).await;
    }
    #[cfg(not(target_os = "linux"))]
    let _ = drv;
    let file = match fd.pool_file() {
        Ok(f) => f,
        Err(e) => return (Err(e), buf),
    };
    pool_buf(buf, move |b| pread(&file, b, offset)).await
}

/// `pwrite`: `IORING_OP_WRITE` with an offset, or on the pool.
pub(crate) async fn write_at<B: IoBuf + Send>(drv: &Driver, fd: &FileFd, buf: B, offset: u64) -> BufResult<usize, B> {
    if let Err(e) = check_offset(offset) {
        return (Err(e), buf);
    }
    #[cfg(target_os = "linux")]
    if let FileFd::Ring(sfd) = fd
        && ring::<dops::Write<B>>(drv)
    {
        return crate::io::ops::write(drv, sfd, buf, Some(offset)).await;
    }
    #[cfg(not(target_os = "linux"))]
    let _ = drv;
    let file = match fd.pool_file() {
        Ok(f) => f,
        Err(e) => return (Err(e), buf),
    };
    pool_buf(buf, move |b| pwrite(&file, b, offset)).await
}

fn open_blocking(path: &CStr, flags: libc::c_int, mode: u32) -> io::Result<OwnedFd> {
    let fd = no_eintr(|| {
        // SAFETY: `path` is a valid NUL-terminated string; plain syscall.
        cvt(unsafe { libc::open(path.as_ptr(), flags, mode as libc::c_uint) } as isize)
    })?;
    // SAFETY: a fresh fd that nothing else owns.
    Ok(unsafe { OwnedFd::from_raw_fd(fd as RawFd) })
}

/// `openat(AT_FDCWD, path, flags, mode)`.
///
/// Dropped in flight: the file may still be opened (and created, with
/// `O_CREAT`); the fd is then closed (by the driver's orphan hook on
/// io_uring, by the pool job dropping its unclaimed result otherwise).
pub(crate) async fn open(drv: &Driver, path: CString, flags: libc::c_int, mode: u32) -> io::Result<FileFd> {
    #[cfg(target_os = "linux")]
    if ring::<dops::OpenAt>(drv) {
        let owned = submit(drv, dops::OpenAt { path, flags, mode }).await?;
        return Ok(FileFd::Ring(SharedFd::new(owned, drv)?));
    }
    let owned = pool(move || open_blocking(&path, flags, mode)).await?;
    match drv {
        #[cfg(target_os = "linux")]
        Driver::Uring(_) => Ok(FileFd::Ring(SharedFd::new(owned, drv)?)),
        Driver::Fallback(_) => Ok(FileFd::Pool(Arc::new(std::fs::File::from(owned)))),
    }
}

/// `fsync` / `fdatasync`: `IORING_OP_FSYNC` (with `IORING_FSYNC_DATASYNC`).
pub(crate) async fn sync(drv: &Driver, fd: &FileFd, data_only: bool) -> io::Result<()> {
    #[cfg(target_os = "linux")]
    if let FileFd::Ring(sfd) = fd
        && ring::<dops::Fsync>(drv)
    {
        let fd = sfd.clone();
        return submit(drv, dops::Fsync { fd, data_only }).await;
    }
    #[cfg(not(target_os = "linux"))]
    let _ = drv;
    let file = fd.pool_file()?;
    pool(move || if data_only { file.sync_data() } else { file.sync_all() }).await
}

/// `ftruncate`: `IORING_OP_FTRUNCATE` (Linux 6.9+), else on the pool.
pub(crate) async fn set_len(drv: &Driver, fd: &FileFd, len: u64) -> io::Result<()> {
    check_offset(len)?;
    #[cfg(target_os = "linux")]
    if let FileFd::Ring(sfd) = fd
        && ring::<dops::Ftruncate>(drv)
    {
        return submit(drv, dops::Ftruncate { fd: sfd.clone(), len }).await;
    }
    #[cfg(not(target_os = "linux"))]
    let _ = drv;
    let file = fd.pool_file()?;
    pool(move || file.set_len(len)).await
}

/// `statx` on the ring: of `path` (relative to the cwd) or, without a
/// path, of `fd` itself (`AT_EMPTY_PATH`).
#[cfg(target_os = "linux")]
async fn statx_ring(
    drv: &Driver,
    fd: Option<SharedFd>,
    path: Option<CString>,
    flags: libc::c_int,
) -> io::Result<Metadata> {
    let st = submit(drv, dops::Statx::new(fd, path, flags)).await?;
    Ok(Metadata::from_statx(&st))
}

/// Metadata of an open file: `statx(fd, "", AT_EMPTY_PATH)`.
pub(crate) async fn metadata_fd(drv: &Driver, fd: &FileFd) -> io::Result<Metadata> {
    #[cfg(target_os = "linux")]
    if let FileFd::Ring(sfd) = fd
        && ring::<dops::Statx>(drv)
    {
        return statx_ring(drv, Some(sfd.clone()), None, libc::AT_EMPTY_PATH).await;
    }
    #[cfg(not(target_os = "linux"))]
    let _ = drv;
    let file = fd.pool_file()?;
    pool(move || file.metadata().map(Metadata::from)).await
}

/// Metadata of a path, following symlinks or not.
pub(crate) async fn metadata_path(drv: &Driver, path: CString, follow: bool) -> io::Result<Metadata> {
    #[cfg(target_os = "linux")]
    if ring::<dops::Statx>(drv) {
        let flags = if follow { 0 } else { libc::AT_SYMLINK_NOFOLLOW };
        return statx_ring(drv, None, Some(path), flags).await;
    }
    #[cfg(not(target_os = "linux"))]
    let _ = drv;
    pool(move || {
        let p = os_path(&path);
        let m = if follow {
            std::fs::metadata(p)
        } else {
            std::fs::symlink_metadata(p)
        };
        m.map(Metadata::from)
    })
    .await
}

/// `unlinkat(AT_FDCWD, path, dir ? AT_REMOVEDIR : 0)`.
pub(crate) async fn unlink(drv: &Driver, path: CString, dir: bool) -> io::Result<()> {
    #[cfg(target_os = "linux")]
    if ring::<dops::UnlinkAt>(drv) {
        return submit(drv, dops::UnlinkAt { path, dir }).await;
    }
    #[cfg(not(target_os = "linux"))]
    let _ = drv;
    pool(move || {
        // SAFETY: `path` is a valid NUL-terminated string; plain syscall.
        let rc = unsafe {
            if dir {
                libc::rmdir(path.as_ptr())
            } else {
                libc::unlink(path.as_ptr())
            }
        };
        cvt(rc as isize).map(drop)
    })
    .await
}

/// `renameat(AT_FDCWD, from, AT_FDCWD, to)`.
pub(crate) async fn rename(drv: &Driver, from: CString, to: CString) -> io::Result<()> {
    #[cfg(target_os = "linux")]
    if ring::<dops::RenameAt>(drv) {
        return submit(drv, dops::RenameAt { from, to }).await;
    }
    #[cfg(not(target_os = "linux"))]
    let _ = drv;
    pool(move || {
        // SAFETY: both are valid NUL-terminated strings; plain syscall.
        cvt(unsafe { libc::rename(from.as_ptr(), to.as_ptr()) } as isize).map(drop)
    })
    .await
}

/// `mkdirat(AT_FDCWD, path, mode)`.
pub(crate) async fn mkdir(drv: &Driver, path: CString, mode: u32) -> io::Result<()> {
    #[cfg(target_os = "linux")]
    if ring::<dops::MkdirAt>(drv) {
        return submit(drv, dops::MkdirAt { path, mode }).await;
    }
    #[cfg(not(target_os = "linux"))]
    let _ = drv;
    pool(move || {
        // SAFETY: `path` is a valid NUL-terminated string; plain syscall.
        cvt(unsafe { libc::mkdir(path.as_ptr(), mode as libc::mode_t) } as isize).map(drop)
    })
    .await
}

fn close_blocking(fd: OwnedFd) -> io::Result<()> {
    let raw = fd.into_raw_fd();
    // We owned `raw` and give it up here. EINTR is not retried: on
    // Linux the fd is released even then, and a retry could close a reused
    // number.
    // SAFETY: upheld as explained just above.
    if unsafe { libc::close(raw) } < 0 {
        let e = io::Error::last_os_error();
        if e.kind() != io::ErrorKind::Interrupted {
            return Err(e);
        }
    }
    Ok(())
}

/// Closes the file, reporting `close(2)`'s error (`IORING_OP_CLOSE` on
/// io_uring). If an orphaned operation (a dropped in-flight read, say)
/// still holds the fd, it is closed when that operation ends and this
/// returns `Ok(())`.
pub(crate) async fn close(drv: &Driver, fd: FileFd) -> io::Result<()> {
    match fd {
        #[cfg(target_os = "linux")]
        FileFd::Ring(sfd) => {
            let Ok(owned) = sfd.try_into_owned() else {
                return Ok(());
            };
            if ring::<dops::Close>(drv) {
                return submit(drv, dops::Close::new(owned)).await;
            }
            pool(move || close_blocking(owned)).await
        }
        FileFd::Pool(file) => {
            #[cfg(not(target_os = "linux"))]
            let _ = drv;
            match Arc::try_unwrap(file) {
                Ok(file) => pool(move || close_blocking(OwnedFd::from(file))).await,
                // A pool job still runs with it: the last one closes it.
                Err(_) => Ok(()),
            }
        }
    }
}
