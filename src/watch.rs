//! asyncio's callback-style watchers: `loop.add_reader` / `add_writer`
//! for arbitrary file descriptors and `loop.add_signal_handler`.
//!
//! Each watcher is a task that waits for the event and calls the callback;
//! the returned handle removes it (`remove`, or dropping the handle: asyncio's
//! `remove_reader(fd)` / `remove_signal_handler(sig)`). After removal the
//! callback is never called again.
//!
//! Readers and writers are level-triggered, as asyncio's: while the fd stays
//! readable (the callback did not drain it) the callback runs again once per
//! loop iteration, on both backends (a zero-timeout `poll(2)` checks after
//! each call, so the fallback backend's edge-triggered reports do not lose
//! a wake-up). The watcher keeps its own duplicate of the fd (`F_DUPFD_CLOEXEC`):
//! closing the original while watched does not close the file.
//!
//! ```
//! use std::cell::RefCell;
//! use std::io::{Read, Write};
//! use std::os::unix::net::UnixStream;
//! use std::rc::Rc;
//!
//! ringloop::run(async {
//!     let (mut a, b) = UnixStream::pair().unwrap();
//!     b.set_nonblocking(true).unwrap();
//!     let got = Rc::new(RefCell::new(Vec::new()));
//!     let (got2, mut b2) = (got.clone(), b.try_clone().unwrap());
//!     let watcher = ringloop::watch::add_reader(&b, move || {
//!         let mut buf = [0u8; 64];
//!         if let Ok(n) = b2.read(&mut buf) {
//!             got2.borrow_mut().extend_from_slice(&buf[..n]);
//!         }
//!     })
//!     .unwrap();
//!     a.write_all(b"ping").unwrap();
//!     while got.borrow().len() < 4 {
//!         ringloop::sleep(std::time::Duration::from_millis(1)).await;
//!     }
//!     assert_eq!(*got.borrow(), b"ping");
//!     assert!(watcher.remove());
//! })
//! .unwrap();
//! ```

use std::fmt;
use std::io;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, RawFd};

use crate::Task;
use crate::io::{SharedFd, current_driver};
use crate::signal::SignalKind;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Interest {
    Read,
    Write,
}

/// A watcher added by [`add_reader`], [`add_writer`] or
/// [`add_signal_handler`]; dropping it removes it.
pub struct Watcher {
    task: Option<Task<()>>,
    what: String,
}

impl fmt::Debug for Watcher {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Watcher")
            .field("what", &self.what)
            .field("active", &self.is_active())
            .finish()
    }
}

impl Watcher {
    /// Removes the watcher: the callback is not called again. `false` if it
    /// had already stopped (its wait failed; the error went to the loop's
    /// exception handler).
    pub fn remove(mut self) -> bool {
        self.stop()
    }

    /// Whether the watcher is still waiting.
    pub fn is_active(&self) -> bool {
        self.task.as_ref().is_some_and(|t| !t.is_done())
    }

    fn stop(&mut self) -> bool {
        match self.task.take() {
            Some(t) => {
                let active = !t.is_done();
                t.cancel();
                active
            }
            None => false,
        }
    }
}

impl Drop for Watcher {
    fn drop(&mut self) {
        self.stop();
    }
}

/// Calls `callback` whenever `fd` is readable (asyncio's
/// `loop.add_reader(fd, callback)`), until the returned [`Watcher`] is
/// removed or dropped.
pub fn add_reader<F: FnMut() + 'static>(fd: impl AsFd, callback: F) -> io::Result<Watcher> {
    add(fd.as_fd(), Interest::Read, callback)
}

/// Calls `callback` whenever `fd` is writable (asyncio's
/// `loop.add_writer(fd, callback)`), until the returned [`Watcher`] is
/// removed or dropped.
pub fn add_writer<F: FnMut() + 'static>(fd: impl AsFd, callback: F) -> io::Result<Watcher> {
    add(fd.as_fd(), Interest::Write, callback)
}

/// Whether `fd` is ready for `interest` right now (`poll(2)`, no wait).
fn ready_now(fd: RawFd, interest: Interest) -> bool {
    let events = match interest {
        Interest::Read => libc::POLLIN,
        Interest::Write => libc::POLLOUT,
    };
    let mut p = libc::pollfd { fd, events, revents: 0 };
    // SAFETY: one valid pollfd on the stack, count 1, no wait.
    let n = unsafe { libc::poll(&mut p, 1, 0) };
    n > 0 && p.revents != 0
}

fn report(message: String) {
    if let Some(lp) = crate::runtime::current() {
        lp.call_exception_handler(crate::runtime::ExceptionContext {
            kind: crate::runtime::ExceptionKind::IoError,
            message,
            panic_message: None,
            task: None,
        });
    }
}

fn add<F: FnMut() + 'static>(fd: BorrowedFd<'_>, interest: Interest, mut callback: F) -> io::Result<Watcher> {
    let drv = current_driver()?;
    let raw = fd.as_raw_fd();
    let shared = SharedFd::new(fd.try_clone_to_owned()?, &drv)?;
    let what = format!("{interest:?} fd {raw}");
    let label = what.clone();
    let task = crate::try_spawn(async move {
        loop {
            let res = match interest {
                Interest::Read => crate::io::ops::poll_readable(&drv, &shared).await,
                Interest::Write => crate::io::ops::poll_writable(&drv, &shared).await,
            };
            if let Err(e) = res {
                report(format!("watcher ({label}) failed: {e}"));
                return;
            }
            // A readiness report may be stale (the fallback backend reports
            // the registration's initial state): check before calling.
            if !ready_now(shared.raw(), interest) {
                continue;
            }
            loop {
                callback();
                // Level-triggered: once per iteration while still ready.
                crate::time::yield_now().await;
                if !ready_now(shared.raw(), interest) {
                    break;
                }
            }
        }
    })
    .map_err(io::Error::other)?;
    Ok(Watcher { task: Some(task), what })
}

/// Calls `callback` on the loop every time signal `kind` arrives (asyncio's
/// `loop.add_signal_handler(sig, callback)`), until the returned
/// [`Watcher`] is removed or dropped. Built on [`crate::signal::signal`]
/// (several deliveries before the loop looks may run the callback once).
pub fn add_signal_handler<F: FnMut() + 'static>(kind: SignalKind, mut callback: F) -> io::Result<Watcher> {
    let mut sig = crate::signal::signal(kind)?;
    let task = crate::try_spawn(async move {
        while sig.recv().await.is_some() {
            callback();
        }
    })
    .map_err(io::Error::other)?;
    Ok(Watcher {
        task: Some(task),
        what: format!("signal {kind:?}"),
    })
}
