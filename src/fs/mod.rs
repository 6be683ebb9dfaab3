//! Files and directories, with owned buffers on both backends.
//!
//! ```
//! use ringloop::fs::{self, File};
//!
//! ringloop::run(async {
//!     let dir = std::env::temp_dir().join(format!("ringloop-doc-fs-{}", std::process::id()));
//!     fs::create_dir_all(&dir).await?;
//!     let path = dir.join("hello.txt");
//!
//!     let file = File::create(&path).await?;
//!     let (res, _buf) = file.write_all_at(b"hello, world".to_vec(), 0).await;
//!     res?;
//!     file.sync_all().await?;
//!     file.close().await?;
//!
//!     let file = File::open(&path).await?;
//!     let (res, buf) = file.read_at(Vec::with_capacity(5), 7).await;
//!     assert_eq!(res?, 5);
//!     assert_eq!(buf, b"world");
//!     assert_eq!(file.metadata().await?.len(), 12);
//!
//!     assert_eq!(fs::read(&path).await?, b"hello, world");
//!     fs::remove_file(&path).await?;
//!     fs::remove_dir(&dir).await?;
//!     Ok::<(), std::io::Error>(())
//! })
//! .unwrap()
//! .unwrap();
//! ```
//!
//! # Backends
//!
//! On io_uring every operation is an io_uring opcode: `OPENAT`, `READ` /
//! `WRITE` with an offset, `FSYNC` (`IORING_FSYNC_DATASYNC` for
//! [`File::sync_data`]), `STATX`, `FTRUNCATE`, `UNLINKAT` (`AT_REMOVEDIR`
//! for [`remove_dir`]), `RENAMEAT`, `MKDIRAT` and `CLOSE`. An opcode the
//! running kernel lacks (checked with the ring's probe: `UNLINKAT` and
//! `RENAMEAT` need Linux 5.11, `MKDIRAT` 5.15, `FTRUNCATE` 6.9) runs on the
//! loop's blocking pool instead, with the same result.
//!
//! On the fallback backend every operation runs on the blocking pool
//! (regular files are always "ready", so readiness polling cannot help).
//! The buffer moves into the job and comes back with the result, so the
//! owned-buffer API is the same on both backends; buffers must be `Send`
//! for that reason (`Vec<u8>`, `Box<[u8]>`, `&'static [u8]`, `Bytes` and
//! `BytesMut` are).
//!
//! # Positions
//!
//! [`File`] has no cursor: reads and writes take an explicit offset
//! (`pread`/`pwrite`), so concurrent operations on one file never race on a
//! shared position. [`File::read_to_end`] reads from offset 0. A file opened
//! with [`OpenOptions::append`] appends every write whatever the offset
//! (Linux's `pwrite` behaviour on `O_APPEND` files).
//!
//! # Reads fill the buffer from its start
//!
//! As for sockets, a read writes at the start of the buffer's capacity
//! (`IoBufMut::stable_mut_ptr`) and marks the bytes read as initialised. To
//! append to a `Vec`, read into `vec.slice(vec.len()..)`.
//!
//! # Cancellation
//!
//! Dropping an operation's future before it finishes never frees memory
//! the kernel or a pool thread still uses: the buffer stays with the driver
//! (or the job) until the operation ends. What a dropped operation may
//! already have done:
//! * open: the file may have been opened (and created, with `create`); the
//!   fd is closed, never leaked.
//! * read, metadata: nothing visible (the bytes read are dropped).
//! * write, set_len, sync: may have happened, fully or (write) partly.
//! * remove_file, remove_dir, rename, create_dir: may have happened.

mod metadata;
mod ops;
#[cfg(all(test, target_os = "linux"))]
mod tests;

pub use metadata::{FileType, Metadata};

use std::fmt;
use std::io;
use std::os::fd::{AsRawFd, OwnedFd, RawFd};
use std::path::Path;

use crate::buf::{BufResult, IoBuf, IoBufMut};
use crate::driver::Driver;
use crate::io::current_driver;
use ops::FileFd;

/// An open file. Every method takes `&self` and an explicit offset, so one
/// task may read while another writes. Dropping a `File` closes it (after
/// its in-flight operations); [`File::close`] closes it asynchronously and
/// reports `close(2)`'s error.
pub struct File {
    fd: FileFd,
    drv: Driver,
}

impl fmt::Debug for File {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("File")
            .field("fd", &self.fd.raw())
            .field("backend", &self.drv.kind())
            .finish()
    }
}

impl File {
    /// Opens a file read-only (`OpenOptions::new().read(true)`).
    pub async fn open(path: impl AsRef<Path>) -> io::Result<File> {
        OpenOptions::new().read(true).open(path).await
    }

    /// Opens a file write-only, creating it or truncating it
    /// (`OpenOptions::new().write(true).create(true).truncate(true)`).
    pub async fn create(path: impl AsRef<Path>) -> io::Result<File> {
        OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(true)
            .open(path)
            .await
    }

    /// Creates a new file read-write; `AlreadyExists` if it exists
    /// (`OpenOptions::new().read(true).write(true).create_new(true)`).
    pub async fn create_new(path: impl AsRef<Path>) -> io::Result<File> {
        OpenOptions::new()
            .read(true)
            .write(true)
            .create_new(true)
            .open(path)
            .await
    }

    /// A blank [`OpenOptions`].
    pub fn options() -> OpenOptions {
        OpenOptions::new()
    }

    /// Adopts an open std file.
    pub fn from_std(file: std::fs::File) -> io::Result<File> {
        let drv = current_driver()?;
        let fd = match &drv {
            #[cfg(target_os = "linux")]
            Driver::Uring(_) => FileFd::Ring(crate::io::SharedFd::new(OwnedFd::from(file), &drv)?),
            Driver::Fallback(_) => FileFd::Pool(std::sync::Arc::new(file)),
        };
        Ok(File { fd, drv })
    }

    /// Reads at `offset` into `buf`'s capacity (from its start); returns the
    /// number of bytes read, `0` at or past the end of the file (or for a
    /// zero-capacity buffer). A hole in a sparse file reads as zeros.
    pub async fn read_at<B: IoBufMut + Send>(&self, buf: B, offset: u64) -> BufResult<usize, B> {
        ops::read_at(&self.drv, &self.fd, buf, offset).await
    }

    /// Reads at `offset` until `buf`'s whole capacity (`bytes_total`) is
    /// filled; `UnexpectedEof` if the file ends first (the bytes read so
    /// far are in the buffer).
    pub async fn read_exact_at<B: IoBufMut + Send>(&self, buf: B, offset: u64) -> BufResult<(), B> {
        let total = buf.bytes_total();
        let mut buf = buf;
        let mut done = 0;
        while done < total {
            let (res, slice) = self
                .read_at(buf.slice(done..), offset.saturating_add(done as u64))
                .await;
            buf = slice.into_inner();
            match res {
                Ok(0) => {
                    return (
                        Err(io::Error::new(
                            io::ErrorKind::UnexpectedEof,
                            format!("file ended after {done} of {total} bytes"),
                        )),
                        buf,
                    );
                }
                Ok(n) => done += n,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return (Err(e), buf),
            }
        }
        (Ok(()), buf)
    }

    /// Writes `buf`'s initialised bytes at `offset` (some of them, as
    /// `pwrite` may); returns how many were written. Writing past the end
    /// extends the file, leaving a hole that reads as zeros.
    pub async fn write_at<B: IoBuf + Send>(&self, buf: B, offset: u64) -> BufResult<usize, B> {
        ops::write_at(&self.drv, &self.fd, buf, offset).await
    }

    /// Writes all of `buf`'s initialised bytes at `offset`.
    pub async fn write_all_at<B: IoBuf + Send>(&self, buf: B, offset: u64) -> BufResult<(), B> {
        crate::buf::write_all_with(buf, |s, done| self.write_at(s, offset.saturating_add(done as u64))).await
    }

    /// Reads the whole file, from offset 0 to its end, appending to `buf`;
    /// returns the number of bytes appended. The file has no cursor, so this
    /// does not depend on (or change) earlier reads.
    pub async fn read_to_end(&self, buf: Vec<u8>) -> BufResult<usize, Vec<u8>> {
        self.read_to_end_at(buf, 0).await
    }

    /// Reads from `offset` to the end of the file, appending to `buf`;
    /// returns the number of bytes appended. Spare capacity in `buf` is
    /// used first (reserve the file size to read it in one operation).
    pub async fn read_to_end_at(&self, mut buf: Vec<u8>, offset: u64) -> BufResult<usize, Vec<u8>> {
        let start = buf.len();
        let mut pos = offset;
        loop {
            if buf.len() == buf.capacity() {
                if buf.len() == start {
                    // No room given: start with a modest chunk.
                    if let Err(e) = buf.try_reserve(8 * 1024) {
                        return (Err(io::Error::new(io::ErrorKind::OutOfMemory, e)), buf);
                    }
                } else {
                    // Full, possibly exactly at the end: probe with a small
                    // read before growing the buffer.
                    let (res, probe) = self.read_at(Vec::with_capacity(32), pos).await;
                    match res {
                        Ok(0) => break,
                        Ok(n) => {
                            if let Err(e) = buf.try_reserve(buf.len().max(32 * 1024)) {
                                return (Err(io::Error::new(io::ErrorKind::OutOfMemory, e)), buf);
                            }
                            buf.extend_from_slice(&probe);
                            pos += n as u64;
                        }
                        Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                        Err(e) => return (Err(e), buf),
                    }
                    continue;
                }
            }
            let len = buf.len();
            let (res, slice) = self.read_at(buf.slice(len..), pos).await;
            buf = slice.into_inner();
            match res {
                Ok(0) => break,
                Ok(n) => pos += n as u64,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return (Err(e), buf),
            }
        }
        let n = buf.len() - start;
        (Ok(n), buf)
    }

    /// Flushes data and metadata to the device (`fsync`).
    pub async fn sync_all(&self) -> io::Result<()> {
        ops::sync(&self.drv, &self.fd, false).await
    }

    /// Flushes data, and only the metadata needed to read it back
    /// (`fdatasync`).
    pub async fn sync_data(&self) -> io::Result<()> {
        ops::sync(&self.drv, &self.fd, true).await
    }

    /// The file's metadata (`statx` on the open fd).
    pub async fn metadata(&self) -> io::Result<Metadata> {
        ops::metadata_fd(&self.drv, &self.fd).await
    }

    /// Truncates or extends the file to `len` bytes (extension reads as
    /// zeros). Needs write access.
    pub async fn set_len(&self, len: u64) -> io::Result<()> {
        ops::set_len(&self.drv, &self.fd, len).await
    }

    /// Closes the file, reporting `close(2)`'s error (dropping a `File`
    /// closes it too, silently). If a dropped in-flight operation still
    /// holds the fd, it is closed when that operation ends and this returns
    /// `Ok(())`.
    pub async fn close(self) -> io::Result<()> {
        ops::close(&self.drv, self.fd).await
    }
}

impl AsRawFd for File {
    fn as_raw_fd(&self) -> RawFd {
        self.fd.raw()
    }
}

/// Options for opening a file, as `std::fs::OpenOptions` (with the same
/// validation: e.g. `truncate` without `write` is `InvalidInput`). Files are
/// always opened with `O_CLOEXEC`.
#[derive(Clone, Debug)]
pub struct OpenOptions {
    read: bool,
    write: bool,
    append: bool,
    truncate: bool,
    create: bool,
    create_new: bool,
    mode: u32,
    custom_flags: i32,
}

impl Default for OpenOptions {
    fn default() -> Self {
        OpenOptions::new()
    }
}

fn invalid(msg: &str) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidInput, format!("open: {msg}"))
}

impl OpenOptions {
    /// Every option off; mode `0o666` (before the umask).
    pub fn new() -> OpenOptions {
        OpenOptions {
            read: false,
            write: false,
            append: false,
            truncate: false,
            create: false,
            create_new: false,
            mode: 0o666,
            custom_flags: 0,
        }
    }
    /// Read access.
    pub fn read(&mut self, on: bool) -> &mut Self {
        self.read = on;
        self
    }
    /// Write access.
    pub fn write(&mut self, on: bool) -> &mut Self {
        self.write = on;
        self
    }
    /// Append mode (implies write access): every write goes to the end.
    pub fn append(&mut self, on: bool) -> &mut Self {
        self.append = on;
        self
    }
    /// Truncate to zero length on open (needs write access).
    pub fn truncate(&mut self, on: bool) -> &mut Self {
        self.truncate = on;
        self
    }
    /// Create the file if missing (needs write or append access).
    pub fn create(&mut self, on: bool) -> &mut Self {
        self.create = on;
        self
    }
    /// Create the file, failing with `AlreadyExists` if it exists
    /// (`O_CREAT | O_EXCL`; `create` and `truncate` are then ignored).
    pub fn create_new(&mut self, on: bool) -> &mut Self {
        self.create_new = on;
        self
    }
    /// Permission bits for a created file (before the umask).
    pub fn mode(&mut self, mode: u32) -> &mut Self {
        self.mode = mode;
        self
    }
    /// Extra `open(2)` flags (the access-mode bits are ignored).
    pub fn custom_flags(&mut self, flags: i32) -> &mut Self {
        self.custom_flags = flags;
        self
    }

    /// The `open(2)` flags, validated as std does.
    fn flags(&self) -> io::Result<libc::c_int> {
        let access = match (self.read, self.write, self.append) {
            (true, false, false) => libc::O_RDONLY,
            (false, true, false) => libc::O_WRONLY,
            (true, true, false) => libc::O_RDWR,
            (false, _, true) => libc::O_WRONLY | libc::O_APPEND,
            (true, _, true) => libc::O_RDWR | libc::O_APPEND,
            (false, false, false) => return Err(invalid("no access mode (read, write or append) requested")),
        };
        match (self.write, self.append) {
            (true, false) => {}
            (false, false) => {
                if self.truncate || self.create || self.create_new {
                    return Err(invalid("create, create_new and truncate need write or append access"));
                }
            }
            (_, true) => {
                if self.truncate && !self.create_new {
                    return Err(invalid("truncate and append are mutually exclusive"));
                }
            }
        }
        let creation = match (self.create, self.truncate, self.create_new) {
            (_, _, true) => libc::O_CREAT | libc::O_EXCL,
            (false, false, false) => 0,
            (true, false, false) => libc::O_CREAT,
            (false, true, false) => libc::O_TRUNC,
            (true, true, false) => libc::O_CREAT | libc::O_TRUNC,
        };
        Ok(libc::O_CLOEXEC | access | creation | (self.custom_flags & !libc::O_ACCMODE))
    }

    /// Opens `path` with these options.
    pub async fn open(&self, path: impl AsRef<Path>) -> io::Result<File> {
        let drv = current_driver()?;
        let flags = self.flags()?;
        let path = ops::cstring(path.as_ref())?;
        let fd = ops::open(&drv, path, flags, self.mode).await?;
        Ok(File { fd, drv })
    }
}

/// Reads a whole file (`open`, `statx` for the size, reads, close).
pub async fn read(path: impl AsRef<Path>) -> io::Result<Vec<u8>> {
    let file = File::open(path).await?;
    let hint = match file.metadata().await {
        Ok(m) => usize::try_from(m.len()).unwrap_or(usize::MAX),
        Err(_) => 0,
    };
    let mut buf = Vec::new();
    buf.try_reserve_exact(hint)
        .map_err(|e| io::Error::new(io::ErrorKind::OutOfMemory, e))?;
    let (res, buf) = file.read_to_end(buf).await;
    res?;
    Ok(buf)
}

/// Reads a whole file as UTF-8; `InvalidData` if it is not.
pub async fn read_to_string(path: impl AsRef<Path>) -> io::Result<String> {
    let bytes = read(path).await?;
    String::from_utf8(bytes).map_err(|e| io::Error::new(io::ErrorKind::InvalidData, e))
}

/// Writes `data` as the whole content of a file, creating or truncating it,
/// then closes it (reporting `close(2)`'s error).
pub async fn write<B: IoBuf + Send>(path: impl AsRef<Path>, data: B) -> io::Result<()> {
    let file = File::create(path).await?;
    let (res, _data) = file.write_all_at(data, 0).await;
    res?;
    file.close().await
}

/// Removes a file (`unlinkat`); `NotFound` if missing.
pub async fn remove_file(path: impl AsRef<Path>) -> io::Result<()> {
    let drv = current_driver()?;
    ops::unlink(&drv, ops::cstring(path.as_ref())?, false).await
}

/// Removes an empty directory (`unlinkat` with `AT_REMOVEDIR`).
pub async fn remove_dir(path: impl AsRef<Path>) -> io::Result<()> {
    let drv = current_driver()?;
    ops::unlink(&drv, ops::cstring(path.as_ref())?, true).await
}

/// Renames `from` to `to` (`renameat`), replacing `to` if it is a file.
pub async fn rename(from: impl AsRef<Path>, to: impl AsRef<Path>) -> io::Result<()> {
    let drv = current_driver()?;
    let (from, to) = (ops::cstring(from.as_ref())?, ops::cstring(to.as_ref())?);
    ops::rename(&drv, from, to).await
}

/// Creates a directory (`mkdirat`, mode `0o777` before the umask);
/// `AlreadyExists` if the path exists, `NotFound` if its parent does not.
pub async fn create_dir(path: impl AsRef<Path>) -> io::Result<()> {
    let drv = current_driver()?;
    ops::mkdir(&drv, ops::cstring(path.as_ref())?, 0o777).await
}

/// Creates a directory and every missing parent; `Ok` if it already exists
/// as a directory.
pub async fn create_dir_all(path: impl AsRef<Path>) -> io::Result<()> {
    let path = path.as_ref();
    if path.as_os_str().is_empty() {
        return Ok(());
    }
    let is_dir = |p: &Path| {
        let p = p.to_path_buf();
        async move { metadata(&p).await.map(|m| m.is_dir()).unwrap_or(false) }
    };
    // Walk up until a directory can be created (or exists), then back down.
    let mut missing = Vec::new();
    let mut cur = path;
    loop {
        match create_dir(cur).await {
            Ok(()) => break,
            Err(e) if e.kind() == io::ErrorKind::NotFound => match cur.parent() {
                Some(parent) if !parent.as_os_str().is_empty() => {
                    missing.push(cur);
                    cur = parent;
                }
                _ => return Err(e),
            },
            Err(e) => {
                if is_dir(cur).await {
                    break;
                }
                return Err(e);
            }
        }
    }
    while let Some(dir) = missing.pop() {
        if let Err(e) = create_dir(dir).await
            && !is_dir(dir).await
        {
            return Err(e);
        }
    }
    Ok(())
}

/// Metadata of `path`, following symlinks (`statx`).
pub async fn metadata(path: impl AsRef<Path>) -> io::Result<Metadata> {
    let drv = current_driver()?;
    ops::metadata_path(&drv, ops::cstring(path.as_ref())?, true).await
}

/// Metadata of `path` itself, not following a final symlink.
pub async fn symlink_metadata(path: impl AsRef<Path>) -> io::Result<Metadata> {
    let drv = current_driver()?;
    ops::metadata_path(&drv, ops::cstring(path.as_ref())?, false).await
}
