//! [`Metadata`] and [`FileType`]: what `statx(2)` (io_uring) or `stat(2)`
//! (the blocking pool) reports, in one small type for both backends.

use std::fmt;
use std::fs::Permissions;
use std::io;
use std::os::unix::fs::PermissionsExt;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

// `mode_t` is `u32` on Linux and `u16` on macOS and some BSDs.
#[allow(clippy::unnecessary_cast)]
const S_IFMT: u32 = libc::S_IFMT as u32;
#[allow(clippy::unnecessary_cast)]
const S_IFREG: u32 = libc::S_IFREG as u32;
#[allow(clippy::unnecessary_cast)]
const S_IFDIR: u32 = libc::S_IFDIR as u32;
#[allow(clippy::unnecessary_cast)]
const S_IFLNK: u32 = libc::S_IFLNK as u32;

/// The kind of a file system object (from the type bits of `st_mode`).
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct FileType(u32);

impl FileType {
    fn kind(self) -> u32 {
        self.0 & S_IFMT
    }
    /// A regular file.
    pub fn is_file(self) -> bool {
        self.kind() == S_IFREG
    }
    /// A directory.
    pub fn is_dir(self) -> bool {
        self.kind() == S_IFDIR
    }
    /// A symbolic link (only reported by [`symlink_metadata`](super::symlink_metadata)).
    pub fn is_symlink(self) -> bool {
        self.kind() == S_IFLNK
    }
}

impl fmt::Debug for FileType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let name = if self.is_file() {
            "file"
        } else if self.is_dir() {
            "dir"
        } else if self.is_symlink() {
            "symlink"
        } else {
            "other"
        };
        f.debug_tuple("FileType").field(&name).finish()
    }
}

/// A timestamp as the kernel reports it: seconds and nanoseconds since the
/// Unix epoch (seconds may be negative).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Stamp {
    pub(crate) sec: i64,
    pub(crate) nsec: u32,
}

impl Stamp {
    fn to_system_time(self, what: &str) -> io::Result<SystemTime> {
        let t = if self.sec >= 0 {
            UNIX_EPOCH.checked_add(Duration::new(self.sec as u64, 0))
        } else {
            UNIX_EPOCH.checked_sub(Duration::new(self.sec.unsigned_abs(), 0))
        };
        t.and_then(|t| t.checked_add(Duration::from_nanos(u64::from(self.nsec))))
            .ok_or_else(|| io::Error::new(io::ErrorKind::InvalidData, format!("{what} time out of range")))
    }
}

/// Metadata of a file or directory: size, kind, permissions, times.
///
/// The same type on both backends: on io_uring it comes from `statx(2)`
/// (`IORING_OP_STATX`), on the fallback backend from `std::fs::metadata`
/// run on the blocking pool. (`std::fs::Metadata` cannot be built from a
/// `statx` buffer, hence this small type.)
#[derive(Clone, PartialEq, Eq)]
pub struct Metadata {
    pub(crate) len: u64,
    pub(crate) mode: u32,
    pub(crate) ino: u64,
    pub(crate) nlink: u64,
    pub(crate) uid: u32,
    pub(crate) gid: u32,
    pub(crate) blocks: u64,
    pub(crate) modified: Option<Stamp>,
    pub(crate) accessed: Option<Stamp>,
    pub(crate) created: Option<Stamp>,
}

impl fmt::Debug for Metadata {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Metadata")
            .field("file_type", &self.file_type())
            .field("len", &self.len)
            .field("mode", &format_args!("{:o}", self.mode))
            .field("modified", &self.modified().ok())
            .finish_non_exhaustive()
    }
}

impl Metadata {
    /// Size in bytes.
    pub fn len(&self) -> u64 {
        self.len
    }
    /// Whether the size is zero.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }
    /// The kind of object.
    pub fn file_type(&self) -> FileType {
        FileType(self.mode)
    }
    /// A regular file.
    pub fn is_file(&self) -> bool {
        self.file_type().is_file()
    }
    /// A directory.
    pub fn is_dir(&self) -> bool {
        self.file_type().is_dir()
    }
    /// A symbolic link (only from [`symlink_metadata`](super::symlink_metadata)).
    pub fn is_symlink(&self) -> bool {
        self.file_type().is_symlink()
    }
    /// `st_mode`: the type bits and the permission bits (as
    /// `std::os::unix::fs::MetadataExt::mode`).
    pub fn mode(&self) -> u32 {
        self.mode
    }
    /// The permissions, as `std::fs::Metadata::permissions` gives them.
    pub fn permissions(&self) -> Permissions {
        Permissions::from_mode(self.mode)
    }
    /// Inode number.
    pub fn ino(&self) -> u64 {
        self.ino
    }
    /// Number of hard links.
    pub fn nlink(&self) -> u64 {
        self.nlink
    }
    /// Owner's user id.
    pub fn uid(&self) -> u32 {
        self.uid
    }
    /// Owner's group id.
    pub fn gid(&self) -> u32 {
        self.gid
    }
    /// Allocated 512-byte blocks (smaller than `len / 512` for sparse files).
    pub fn blocks(&self) -> u64 {
        self.blocks
    }
    /// Last modification time.
    pub fn modified(&self) -> io::Result<SystemTime> {
        stamp(self.modified, "modification")
    }
    /// Last access time.
    pub fn accessed(&self) -> io::Result<SystemTime> {
        stamp(self.accessed, "access")
    }
    /// Creation (birth) time; `Unsupported` where the file system does not
    /// record it.
    pub fn created(&self) -> io::Result<SystemTime> {
        stamp(self.created, "creation")
    }
}

fn stamp(s: Option<Stamp>, what: &str) -> io::Result<SystemTime> {
    match s {
        Some(s) => s.to_system_time(what),
        None => Err(io::Error::new(
            io::ErrorKind::Unsupported,
            format!("the {what} time is not available on this file system"),
        )),
    }
}

impl From<std::fs::Metadata> for Metadata {
    fn from(m: std::fs::Metadata) -> Metadata {
        use std::os::unix::fs::MetadataExt;
        let created = m.created().ok().map(|t| match t.duration_since(UNIX_EPOCH) {
            Ok(d) => Stamp {
                sec: d.as_secs() as i64,
                nsec: d.subsec_nanos(),
            },
            Err(e) => {
                // Before the epoch: whole seconds rounded down, nanoseconds up.
                let d = e.duration();
                let (mut sec, mut nsec) = (-(d.as_secs() as i64), d.subsec_nanos());
                if nsec > 0 {
                    sec -= 1;
                    nsec = 1_000_000_000 - nsec;
                }
                Stamp { sec, nsec }
            }
        });
        Metadata {
            len: m.len(),
            mode: m.mode(),
            ino: m.ino(),
            nlink: m.nlink(),
            uid: m.uid(),
            gid: m.gid(),
            blocks: m.blocks(),
            modified: Some(Stamp {
                sec: m.mtime(),
                nsec: m.mtime_nsec() as u32,
            }),
            accessed: Some(Stamp {
                sec: m.atime(),
                nsec: m.atime_nsec() as u32,
            }),
            created,
        }
    }
}

#[cfg(target_os = "linux")]
impl Metadata {
    /// From a `statx` buffer the kernel filled; fields outside `stx_mask`
    /// are reported as unavailable.
    pub(crate) fn from_statx(s: &libc::statx) -> Metadata {
        let has = |bit: libc::c_uint| s.stx_mask & bit != 0;
        let ts = |t: &libc::statx_timestamp| Stamp {
            sec: t.tv_sec,
            nsec: t.tv_nsec,
        };
        Metadata {
            len: s.stx_size,
            mode: u32::from(s.stx_mode),
            ino: s.stx_ino,
            nlink: u64::from(s.stx_nlink),
            uid: s.stx_uid,
            gid: s.stx_gid,
            blocks: s.stx_blocks,
            modified: has(libc::STATX_MTIME).then(|| ts(&s.stx_mtime)),
            accessed: has(libc::STATX_ATIME).then(|| ts(&s.stx_atime)),
            created: has(libc::STATX_BTIME).then(|| ts(&s.stx_btime)),
        }
    }
}
