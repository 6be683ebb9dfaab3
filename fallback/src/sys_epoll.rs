//! Direct epoll on Linux: the subset of `polling`'s API the reactor uses,
//! without `polling`'s per-wait bookkeeping.
//!
//! Measured reason (benches/compare, strace): `polling` 3.11's epoll backend
//! re-arms its timerfd and its notifier (`timerfd_settime` + `epoll_ctl`)
//! and reads its eventfd on every `wait`, even with a zero timeout: 5
//! syscalls per loop iteration where one `epoll_pwait` suffices. Here a wait
//! is one `epoll_wait`; the notifier is a level-triggered eventfd that is
//! read only when it fired; timeouts are rounded up to whole milliseconds
//! (the loop never fires a timer early, so a late wake only costs latency
//! below 1 ms).
//!
//! Two registration modes, as in `polling` ([`PollMode`]):
//!
//! * **Edge** (what the reactor uses here): each fd is added once with
//!   `EPOLLIN | EPOLLRDHUP | EPOLLPRI | EPOLLOUT | EPOLLET` and never
//!   modified again. The kernel queues the fd whenever its wait queue is
//!   woken (new data, freed send space, a hang-up, an error), and
//!   `epoll_wait` reports it once per queueing with the readiness mask of
//!   that moment. The reactor caches that per direction.
//! * **Oneshot** (`EPOLLONESHOT`): one report per arming, re-armed with
//!   `EPOLL_CTL_MOD`; kept so the reactor's one-shot path (what `polling`'s
//!   `poll(2)` backend forces) can be tested on Linux too.
//!
//! Each reported [`Event`] also says whether the mask held a hang-up, an
//! error or priority (urgent) data, which can end a read early while the
//! fd stays readable (see `Reactor::note_short_read`).
//!
//! `--cfg polling_test_poll_backend` (and every other OS) keeps using
//! `polling`, so its backends stay covered.

use std::io;
use std::os::fd::{AsRawFd, BorrowedFd, FromRawFd, OwnedFd, RawFd};
use std::time::Duration;

/// Key reserved for the notifier's eventfd.
const NOTIFY_KEY: u64 = u64::MAX;

/// How an fd is registered (mirrors `polling::PollMode`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum PollMode {
    /// `EPOLLONESHOT`: one report per arming.
    Oneshot,
    /// `EPOLLET`: a report per wake-up of the fd, interest stays.
    Edge,
}

/// Readiness interest or report for one source (mirrors `polling::Event`).
#[derive(Clone, Copy, Debug)]
pub(crate) struct Event {
    pub(crate) key: usize,
    pub(crate) readable: bool,
    pub(crate) writable: bool,
    /// Reports only: the mask held `EPOLLHUP`, `EPOLLRDHUP`, `EPOLLERR` or
    /// `EPOLLPRI`.
    pub(crate) exceptional: bool,
}

impl Event {
    pub(crate) fn none(key: usize) -> Event {
        Event {
            key,
            readable: false,
            writable: false,
            exceptional: false,
        }
    }
    pub(crate) fn readable(key: usize) -> Event {
        Event {
            key,
            readable: true,
            writable: false,
            exceptional: false,
        }
    }
    pub(crate) fn writable(key: usize) -> Event {
        Event {
            key,
            readable: false,
            writable: true,
            exceptional: false,
        }
    }
    pub(crate) fn all(key: usize) -> Event {
        Event {
            key,
            readable: true,
            writable: true,
            exceptional: false,
        }
    }
    fn epoll_flags(self, mode: PollMode) -> u32 {
        let mut flags = match mode {
            PollMode::Oneshot => libc::EPOLLONESHOT as u32,
            PollMode::Edge => libc::EPOLLET as u32,
        };
        if self.readable {
            flags |= (libc::EPOLLIN | libc::EPOLLRDHUP | libc::EPOLLPRI) as u32;
        }
        if self.writable {
            flags |= libc::EPOLLOUT as u32;
        }
        flags
    }
}

/// Reported events of one wait (mirrors `polling::Events`).
pub(crate) struct Events {
    raw: Vec<libc::epoll_event>,
    list: Vec<Event>,
}

impl Events {
    pub(crate) fn new() -> Events {
        Events {
            raw: Vec::with_capacity(1024),
            list: Vec::with_capacity(1024),
        }
    }
    pub(crate) fn clear(&mut self) {
        self.list.clear();
    }
    pub(crate) fn iter(&self) -> impl Iterator<Item = Event> + '_ {
        self.list.iter().copied()
    }
}

/// An epoll instance plus an eventfd for cross-thread notification.
pub(crate) struct Poller {
    epoll: OwnedFd,
    eventfd: OwnedFd,
}

fn cvt(ret: libc::c_int) -> io::Result<libc::c_int> {
    if ret < 0 {
        Err(io::Error::last_os_error())
    } else {
        Ok(ret)
    }
}

impl Poller {
    pub(crate) fn new() -> io::Result<Poller> {
        // SAFETY: plain syscall; the result is checked and then owned.
        let epoll = unsafe { OwnedFd::from_raw_fd(cvt(libc::epoll_create1(libc::EPOLL_CLOEXEC))?) };
        // SAFETY: as above.
        let eventfd = unsafe { OwnedFd::from_raw_fd(cvt(libc::eventfd(0, libc::EFD_CLOEXEC | libc::EFD_NONBLOCK))?) };
        let mut ev = libc::epoll_event {
            events: libc::EPOLLIN as u32,
            u64: NOTIFY_KEY,
        };
        // SAFETY: both fds are open and owned by us; `ev` is a valid event.
        cvt(unsafe { libc::epoll_ctl(epoll.as_raw_fd(), libc::EPOLL_CTL_ADD, eventfd.as_raw_fd(), &mut ev) })?;
        Ok(Poller { epoll, eventfd })
    }

    /// Edge mode is always available with epoll.
    pub(crate) fn supports_edge(&self) -> bool {
        true
    }

    fn ctl(&self, op: libc::c_int, fd: RawFd, ev: Event, mode: PollMode) -> io::Result<()> {
        let mut e = libc::epoll_event {
            events: ev.epoll_flags(mode),
            u64: ev.key as u64,
        };
        // SAFETY: `fd` is open (callers' contracts); `e` is a valid event.
        cvt(unsafe { libc::epoll_ctl(self.epoll.as_raw_fd(), op, fd, &mut e) }).map(drop)
    }

    /// # Safety
    /// `raw` must stay open until `delete` is called for it.
    pub(crate) unsafe fn add_with_mode(&self, raw: RawFd, ev: Event, mode: PollMode) -> io::Result<()> {
        self.ctl(libc::EPOLL_CTL_ADD, raw, ev, mode)
    }

    /// Re-arms a one-shot registration.
    pub(crate) fn modify(&self, fd: BorrowedFd<'_>, ev: Event) -> io::Result<()> {
        self.ctl(libc::EPOLL_CTL_MOD, fd.as_raw_fd(), ev, PollMode::Oneshot)
    }

    pub(crate) fn delete(&self, fd: BorrowedFd<'_>) -> io::Result<()> {
        // SAFETY: `fd` is open; a null event pointer is allowed for DEL.
        cvt(unsafe {
            libc::epoll_ctl(
                self.epoll.as_raw_fd(),
                libc::EPOLL_CTL_DEL,
                fd.as_raw_fd(),
                std::ptr::null_mut(),
            )
        })
        .map(drop)
    }

    pub(crate) fn notify(&self) -> io::Result<()> {
        let one: u64 = 1;
        // SAFETY: an 8-byte write from a local into our eventfd.
        let n = unsafe { libc::write(self.eventfd.as_raw_fd(), (&one as *const u64).cast(), 8) };
        if n < 0 {
            let e = io::Error::last_os_error();
            // A saturated counter (EAGAIN) already guarantees a wake-up.
            if e.kind() != io::ErrorKind::WouldBlock {
                return Err(e);
            }
        }
        Ok(())
    }

    pub(crate) fn wait(&self, events: &mut Events, timeout: Option<Duration>) -> io::Result<usize> {
        let ms: libc::c_int = match timeout {
            None => -1,
            Some(d) if d.is_zero() => 0,
            // Round up so a wait never ends before the timeout.
            Some(d) => d.as_nanos().div_ceil(1_000_000).min(i32::MAX as u128) as libc::c_int,
        };
        let cap = events.raw.capacity();
        // SAFETY: the kernel writes at most `cap` events into the vector's
        // spare capacity; `set_len` below covers only what it wrote.
        let n = cvt(unsafe { libc::epoll_wait(self.epoll.as_raw_fd(), events.raw.as_mut_ptr(), cap as i32, ms) })?;
        // SAFETY: `n <= cap` events were initialised by the kernel.
        unsafe { events.raw.set_len(n as usize) };
        for e in events.raw.drain(..) {
            let key = e.u64;
            if key == NOTIFY_KEY {
                let mut buf = [0u8; 8];
                // SAFETY: an 8-byte read into a local buffer from our eventfd
                // (non-blocking: EAGAIN if another wait drained it).
                let _ = unsafe { libc::read(self.eventfd.as_raw_fd(), buf.as_mut_ptr().cast(), 8) };
                continue;
            }
            let flags = e.events;
            let err_hup = flags & (libc::EPOLLERR | libc::EPOLLHUP) as u32 != 0;
            events.list.push(Event {
                key: key as usize,
                readable: err_hup || flags & (libc::EPOLLIN | libc::EPOLLRDHUP | libc::EPOLLPRI) as u32 != 0,
                writable: err_hup || flags & libc::EPOLLOUT as u32 != 0,
                exceptional: flags & (libc::EPOLLERR | libc::EPOLLHUP | libc::EPOLLRDHUP | libc::EPOLLPRI) as u32 != 0,
            });
        }
        Ok(events.list.len())
    }
}
