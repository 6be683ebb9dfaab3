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

/// Converts a `-1`-style libc return value.
pub(crate) fn cvt(ret: isize) -> io::Result<usize> {
    if ret < 0 {
        Err(io::Error::last_os_error())
    } else {
        Ok(ret as usize)
    }
}
