//! [`SharedFd`]: an owned fd shared by an I/O object and its in-flight
//! operations, registered with the readiness reactor when the loop runs
//! the fallback backend.

use std::cell::Cell;
#[cfg(target_os = "linux")]
use std::cell::OnceCell;
use std::io;
use std::os::fd::{AsRawFd, FromRawFd, IntoRawFd, OwnedFd, RawFd};
use std::rc::Rc;

use super::Driver;
use super::fallback::FallbackDriver;

struct Registration {
    key: usize,
    reactor: Rc<FallbackDriver>,
}

/// What a short read (some bytes, fewer than asked) on an fd proves about
/// its receive buffer; the fallback backend then waits before the next read
/// instead of paying a failing syscall (`Reactor::note_short_read`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum ShortRead {
    /// Nothing: datagram sockets (one datagram per read), listeners, files,
    /// terminals, anything not known to be a byte stream.
    Inconclusive,
    /// The buffer was emptied: TCP streams and pipes (a TCP read stops early
    /// only at an urgent-data mark, and the reactor ignores short reads once
    /// urgent data, an end of stream or an error was reported).
    Drains,
    /// Unix stream sockets: the buffer was emptied unless ancillary data
    /// ended the read (the kernel stops a read after a message carrying file
    /// descriptors, or between writers with different credentials), which
    /// `MSG_CTRUNC` reveals because reads pass no control buffer. Reads
    /// therefore use `recvmsg` on the fallback backend.
    DrainsUnlessCtrunc,
}

impl ShortRead {
    /// Whether a read that returned `n` of `asked` bytes, with the kernel's
    /// `msg_flags` if known, emptied the receive buffer.
    pub(crate) fn drained(self, n: usize, asked: usize, msg_flags: Option<libc::c_int>) -> bool {
        n > 0
            && n < asked
            && match self {
                ShortRead::Inconclusive => false,
                ShortRead::Drains => true,
                ShortRead::DrainsUnlessCtrunc => msg_flags.is_some_and(|f| f & libc::MSG_CTRUNC == 0),
            }
    }
}

struct FdInner {
    fd: Cell<RawFd>,
    reg: Option<Registration>,
    short_read: Cell<ShortRead>,
    /// Sends may use `SEND_ZC` (TCP sockets; cleared if the kernel refuses).
    zero_copy: Cell<bool>,
    /// Pooled receives may use a multishot `RECV` (see `set_multishot_recv`).
    multishot_recv: Cell<bool>,
    /// The socket's slot in the ring's fixed-file table, if it has one;
    /// dropped (emptied) after the fd is closed, or before it is handed out.
    #[cfg(target_os = "linux")]
    fixed: OnceCell<super::uring::FixedSlot>,
}

impl Drop for FdInner {
    fn drop(&mut self) {
        if let Some(reg) = &self.reg {
            reg.reactor.deregister(reg.key);
        }
        let fd = self.fd.get();
        if fd >= 0 {
            // SAFETY: we own `fd` (taken from an `OwnedFd`); every operation
            // that used it held a clone of this `Rc`, so none is in flight.
            drop(unsafe { OwnedFd::from_raw_fd(fd) });
        }
    }
}

/// An owned file descriptor shared by an I/O object and its in-flight
/// operations: it is closed when the last of them is gone, so the kernel
/// never sees a closed (or reused) fd number in a pending operation. On the
/// fallback backend it is non-blocking and registered with the reactor.
#[derive(Clone)]
pub(crate) struct SharedFd(Rc<FdInner>);

impl SharedFd {
    /// Adopts `fd` for use with `driver`.
    pub(crate) fn new(fd: OwnedFd, driver: &Driver) -> io::Result<SharedFd> {
        let reg = match driver {
            Driver::Fallback(r) => {
                // SAFETY: `fd` is owned by the `FdInner` built below, whose
                // `Drop` deregisters before closing it.
                let key = unsafe { r.register(fd.as_raw_fd())? };
                Some(Registration {
                    key,
                    reactor: r.clone(),
                })
            }
            #[cfg(target_os = "linux")]
            Driver::Uring(_) => None,
        };
        Ok(SharedFd(Rc::new(FdInner {
            fd: Cell::new(fd.into_raw_fd()),
            reg,
            short_read: Cell::new(ShortRead::Inconclusive),
            zero_copy: Cell::new(false),
            multishot_recv: Cell::new(true),
            #[cfg(target_os = "linux")]
            fixed: OnceCell::new(),
        })))
    }

    /// [`SharedFd::new`] for a datagram socket, installed in the io_uring
    /// fixed-file table where there is room ([`SharedFd::use_fixed`]).
    pub(crate) fn new_socket(fd: OwnedFd, driver: &Driver) -> io::Result<SharedFd> {
        let shared = SharedFd::new(fd, driver)?;
        shared.use_fixed(driver);
        Ok(shared)
    }

    /// Installs this socket in the io_uring fixed-file table (a no-op on
    /// the fallback backend, when fixed files are off, or when the table is
    /// full): its operations then name the slot instead of the fd.
    pub(crate) fn use_fixed(&self, driver: &Driver) {
        #[cfg(target_os = "linux")]
        if let Driver::Uring(d) = driver
            && self.0.fixed.get().is_none()
            && let Some(slot) = d.install_fixed(self.raw())
        {
            let _ = self.0.fixed.set(slot);
        }
        #[cfg(not(target_os = "linux"))]
        let _ = driver;
    }

    /// The fixed-file slot that io_uring operations name, if any.
    #[cfg(target_os = "linux")]
    pub(crate) fn fixed_index(&self) -> Option<u32> {
        self.0.fixed.get().map(super::uring::FixedSlot::index)
    }

    /// Declares whether sends on this fd may use zero-copy `SEND_ZC`
    /// (default: no; TCP streams say yes, AF_UNIX refuses it).
    pub(crate) fn set_zero_copy(&self, on: bool) {
        self.0.zero_copy.set(on);
    }

    pub(crate) fn zero_copy(&self) -> bool {
        self.0.zero_copy.get()
    }

    /// Declares whether pooled receives on this fd may keep a multishot
    /// `RECV` armed (default: yes). AF_UNIX stream sockets say no: since
    /// Linux 6.17 they report how many bytes are left after a receive
    /// (`SO_INQ`), and report 0 at end of stream too (TCP reports 1 there),
    /// so a multishot receive whose read emptied a socket whose peer had
    /// already closed goes back to waiting for a wake-up that was already
    /// given, and the end of stream never arrives.
    pub(crate) fn set_multishot_recv(&self, on: bool) {
        self.0.multishot_recv.set(on);
    }

    pub(crate) fn multishot_recv(&self) -> bool {
        self.0.multishot_recv.get()
    }

    /// Declares what a short read on this fd proves (default: nothing). Set
    /// by the stream and pipe types right after creation.
    pub(crate) fn set_short_read(&self, kind: ShortRead) {
        self.0.short_read.set(kind);
    }

    pub(crate) fn short_read(&self) -> ShortRead {
        self.0.short_read.get()
    }

    pub(crate) fn raw(&self) -> RawFd {
        self.0.fd.get()
    }

    /// The reactor key (fallback backend only).
    pub(crate) fn key(&self) -> io::Result<usize> {
        match &self.0.reg {
            Some(r) => Ok(r.key),
            None => Err(io::Error::other(
                "ringloop: fd not registered with the fallback backend",
            )),
        }
    }

    /// Takes the fd back when no other handle (in-flight or orphaned
    /// operation) holds it, e.g. to close it asynchronously; otherwise gives
    /// this handle back. On the fallback backend it is deregistered first.
    pub(crate) fn try_into_owned(self) -> Result<OwnedFd, SharedFd> {
        match Rc::try_unwrap(self.0) {
            Ok(inner) => {
                // `FdInner::drop` deregisters, empties the fixed-file slot
                // (so the table no longer keeps the socket open) and skips
                // the close for -1.
                let fd = inner.fd.replace(-1);
                drop(inner);
                // SAFETY: we owned `fd` through the unique `FdInner`, which
                // no longer closes it.
                Ok(unsafe { OwnedFd::from_raw_fd(fd) })
            }
            Err(rc) => Err(SharedFd(rc)),
        }
    }
}

impl std::os::fd::AsFd for SharedFd {
    fn as_fd(&self) -> std::os::fd::BorrowedFd<'_> {
        // SAFETY: the fd stays open as long as this `SharedFd` (and so the
        // borrow) lives: it is closed only when the last clone drops.
        unsafe { std::os::fd::BorrowedFd::borrow_raw(self.raw()) }
    }
}

impl AsRawFd for SharedFd {
    fn as_raw_fd(&self) -> RawFd {
        self.raw()
    }
}

pub(crate) fn set_nonblocking(fd: RawFd, on: bool) -> io::Result<()> {
    // SAFETY: fcntl on an fd we own, with integer arguments only.
    let flags = unsafe { libc::fcntl(fd, libc::F_GETFL) };
    if flags < 0 {
        return Err(io::Error::last_os_error());
    }
    let new = if on {
        flags | libc::O_NONBLOCK
    } else {
        flags & !libc::O_NONBLOCK
    };
    // SAFETY: as above.
    if new != flags && unsafe { libc::fcntl(fd, libc::F_SETFL, new) } < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}
