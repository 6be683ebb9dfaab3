//! The OS switch: direct epoll on Linux (`sys_epoll`), the `polling`
//! crate elsewhere (or with `--cfg polling_test_poll_backend`), and the
//! raw-handle types of each OS.

#[cfg(all(any(target_os = "linux", target_os = "android"), not(polling_test_poll_backend)))]
pub(crate) use crate::sys_epoll::{Event, Events, PollMode, Poller};

#[cfg(not(all(any(target_os = "linux", target_os = "android"), not(polling_test_poll_backend))))]
pub(crate) use polling::{Event, Events, PollMode, Poller};

/// Whether a reported event held a condition that can end a read early
/// while the source stays readable: a hang-up or end of stream, an error,
/// or priority (urgent) data, whose mark stops a read.
#[cfg(all(any(target_os = "linux", target_os = "android"), not(polling_test_poll_backend)))]
pub(crate) fn exceptional(ev: &Event) -> bool {
    ev.exceptional
}

/// `polling`'s events do not say (portably), so every event counts: short
/// reads then never clear readiness once a source has seen an event.
#[cfg(not(all(any(target_os = "linux", target_os = "android"), not(polling_test_poll_backend))))]
pub(crate) fn exceptional(_ev: &Event) -> bool {
    true
}

#[cfg(unix)]
/// The raw OS handle a source is registered with (a file descriptor on Unix).
pub type RawSource = std::os::fd::RawFd;
#[cfg(windows)]
/// The raw OS handle a source is registered with (a socket on Windows).
pub type RawSource = std::os::windows::io::RawSocket;

/// Name of the OS mechanism `polling` uses in this build.
pub fn backend_name() -> &'static str {
    if cfg!(polling_test_poll_backend) {
        "poll"
    } else if cfg!(any(target_os = "linux", target_os = "android")) {
        "epoll"
    } else if cfg!(any(
        target_os = "macos",
        target_os = "ios",
        target_os = "freebsd",
        target_os = "netbsd",
        target_os = "openbsd",
        target_os = "dragonfly"
    )) {
        "kqueue"
    } else if cfg!(any(target_os = "solaris", target_os = "illumos")) {
        "event ports"
    } else if cfg!(windows) {
        "iocp"
    } else {
        "poll"
    }
}

#[cfg(unix)]
/// # Safety
/// `raw` must be an open descriptor for the lifetime of the borrow.
pub(crate) unsafe fn borrow_raw(raw: RawSource) -> std::os::fd::BorrowedFd<'static> {
    // SAFETY: forwarded to the caller.
    unsafe { std::os::fd::BorrowedFd::borrow_raw(raw) }
}

#[cfg(windows)]
/// # Safety
/// `raw` must be an open socket for the lifetime of the borrow.
pub(crate) unsafe fn borrow_raw(raw: RawSource) -> std::os::windows::io::BorrowedSocket<'static> {
    // SAFETY: forwarded to the caller.
    unsafe { std::os::windows::io::BorrowedSocket::borrow_raw(raw) }
}
