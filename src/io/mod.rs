//! Backend-generic I/O plumbing shared by `net`, `fs`, `process`, `signal`.
//!
//! The operations themselves are types in `driver::ops`, each with an
//! io_uring and a readiness implementation; `io::ops` gives them the
//! owned-buffer function shape the I/O types use.

use std::io;

use crate::driver::Driver;
pub(crate) use crate::driver::fd::{SharedFd, ShortRead, set_nonblocking};

pub(crate) mod ops;

/// The current loop's driver, or an error outside a loop.
pub(crate) fn current_driver() -> io::Result<Driver> {
    match crate::runtime::current_inner() {
        Some(lp) if !lp.is_closed() => Ok(lp.driver.clone()),
        Some(_) => Err(io::Error::other("ringloop: the event loop is closed")),
        None => Err(io::Error::other(
            "ringloop: no event loop on this thread (create an EventLoop first)",
        )),
    }
}

/// Writes every initialised byte of `buf` through repeated calls of `write`,
/// which gets a window over the bytes not written yet and the count already
/// written (for positioned writes). A zero-byte write is `WriteZero`;
/// `EINTR` retries. The buffer comes back in every case.
pub(crate) async fn write_all_with<B, F, Fut>(buf: B, mut write: F) -> crate::buf::BufResult<(), B>
where
    B: crate::buf::IoBuf,
    F: FnMut(crate::buf::Slice<B>, usize) -> Fut,
    Fut: std::future::Future<Output = crate::buf::BufResult<usize, crate::buf::Slice<B>>>,
{
    let total = buf.bytes_init();
    let mut slice = buf.slice(..);
    let mut done = 0;
    while done < total {
        let (res, s) = write(slice, done).await;
        let buf = s.into_inner();
        match res {
            Ok(0) => return (Err(io::ErrorKind::WriteZero.into()), buf),
            Ok(n) => done += n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return (Err(e), buf),
        }
        slice = buf.slice(done..);
    }
    (Ok(()), slice.into_inner())
}

/// Converts a `-1`-style libc return value.
pub(crate) fn cvt(ret: isize) -> io::Result<usize> {
    if ret < 0 {
        Err(io::Error::last_os_error())
    } else {
        Ok(ret as usize)
    }
}
