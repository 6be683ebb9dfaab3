//! The child's standard streams as pipes on the loop's driver.

use std::fmt;
use std::io;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};

use super::Stdio;
use crate::buf::{BufResult, IoBuf, IoBufMut};
use crate::driver::Driver;
use crate::io::{SharedFd, ShortRead, ops};

/// One end of a pipe to or from the child, on the loop's driver.
pub(super) struct Pipe {
    fd: SharedFd,
    drv: Driver,
}

impl Pipe {
    pub(super) fn new(fd: OwnedFd, drv: &Driver) -> io::Result<Pipe> {
        let fd = SharedFd::new(fd, drv)?;
        // A child's stdio pipe (`pipe2`, never packet mode): a short read
        // emptied it.
        fd.set_short_read(ShortRead::Drains);
        Ok(Pipe { fd, drv: drv.clone() })
    }

    pub(super) async fn read<B: IoBufMut>(&self, buf: B) -> BufResult<usize, B> {
        ops::read(&self.drv, &self.fd, buf, None).await
    }

    pub(super) async fn write<B: IoBuf>(&self, buf: B) -> BufResult<usize, B> {
        ops::write(&self.drv, &self.fd, buf, None).await
    }

    pub(super) async fn write_all<B: IoBuf>(&self, buf: B) -> BufResult<(), B> {
        crate::buf::write_all_with(buf, |s, _| self.write(s)).await
    }

    pub(super) async fn read_to_end(&self, mut buf: Vec<u8>) -> BufResult<(), Vec<u8>> {
        loop {
            if buf.capacity() - buf.len() < 4096 {
                buf.reserve(8192);
            }
            let start = buf.len();
            let (res, s) = self.read(buf.slice(start..)).await;
            buf = s.into_inner();
            match res {
                Ok(0) => return (Ok(()), buf),
                Ok(_) => {}
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return (Err(e), buf),
            }
        }
    }

    /// A blocking fd for the same pipe (for another child's stdio).
    pub(super) fn into_owned_fd(self) -> io::Result<OwnedFd> {
        // SAFETY: F_DUPFD_CLOEXEC on the fd our SharedFd keeps open; checked.
        let new = unsafe { libc::fcntl(self.fd.as_raw_fd(), libc::F_DUPFD_CLOEXEC, 0) };
        if new < 0 {
            return Err(io::Error::last_os_error());
        }
        // SAFETY: a fresh fd that nothing else owns.
        let owned = unsafe { OwnedFd::from_raw_fd(new) };
        // The pipe end is shared with the dup: a child expects it blocking.
        crate::io::set_nonblocking(owned.as_raw_fd(), false)?;
        Ok(owned)
    }
}

/// The write end of the child's stdin. Dropping it closes the pipe (the
/// child reads end of file).
pub struct ChildStdin(pub(super) Pipe);

/// The read end of the child's stdout.
pub struct ChildStdout(pub(super) Pipe);

/// The read end of the child's stderr.
pub struct ChildStderr(pub(super) Pipe);

macro_rules! debug_pipe {
    ($($t:ident),*) => {$(
        impl fmt::Debug for $t {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.debug_tuple(stringify!($t)).field(&self.0.fd.raw()).finish()
            }
        }
        impl AsRawFd for $t {
            fn as_raw_fd(&self) -> RawFd {
                self.0.fd.raw()
            }
        }
        impl $t {
            /// A blocking fd for this pipe end, e.g. to connect it to another
            /// child (`Stdio::from(fd)`; `Stdio::try_from(pipe)` does the
            /// same). Reads or writes of this stream that were cancelled on
            /// io_uring may still complete on the pipe.
            pub fn into_owned_fd(self) -> io::Result<OwnedFd> {
                self.0.into_owned_fd()
            }
        }
        impl TryFrom<$t> for Stdio {
            type Error = io::Error;
            fn try_from(pipe: $t) -> io::Result<Stdio> {
                pipe.into_owned_fd().map(Stdio::from)
            }
        }
    )*};
}
debug_pipe!(ChildStdin, ChildStdout, ChildStderr);

impl ChildStdin {
    /// Writes some of `buf`'s bytes; returns how many. `BrokenPipe` once the
    /// child closed its end.
    pub async fn write<B: IoBuf>(&self, buf: B) -> BufResult<usize, B> {
        self.0.write(buf).await
    }

    /// Writes all of `buf`'s bytes.
    pub async fn write_all<B: IoBuf>(&self, buf: B) -> BufResult<(), B> {
        self.0.write_all(buf).await
    }
}

macro_rules! reader {
    ($($t:ident),*) => {$(
        impl $t {
            /// Reads into `buf`'s spare capacity; `Ok(0)` is end of file (the
            /// child closed its end, usually by exiting).
            pub async fn read<B: IoBufMut>(&self, buf: B) -> BufResult<usize, B> {
                self.0.read(buf).await
            }

            /// Reads until end of file, appending to `buf`; returns the
            /// whole buffer (on error: the error and what was read so far).
            pub async fn read_to_end(&self, buf: Vec<u8>) -> BufResult<(), Vec<u8>> {
                self.0.read_to_end(buf).await
            }
        }
    )*};
}
reader!(ChildStdout, ChildStderr);
