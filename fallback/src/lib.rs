//! `ringloop-fallback`: the portable readiness reactor behind ringloop's
//! non-io_uring backend.
//!
//! This crate knows nothing about ringloop's tasks, timers or loop. It offers
//! exactly three things on top of the OS poller (direct epoll on Linux;
//! elsewhere the [`polling`] crate: kqueue, event ports, IOCP or plain
//! `poll(2)`, chosen per OS):
//!
//! 1. [`Reactor::wait`]: block for at most a timeout, then wake the
//!    [`Waker`]s of every source whose readiness fired;
//! 2. [`Notifier`]: a `Send + Sync` handle that makes a concurrent or the next
//!    `wait` return promptly (cross-thread wake-up);
//! 3. registration of raw sources and per-direction waits
//!    ([`Reactor::register`], [`Reactor::poll_ready_tracked`],
//!    [`Reactor::deregister`]).
//!
//! The intended I/O pattern ("emulated completion"): try the non-blocking
//! syscall; on `EAGAIN` call [`Reactor::clear_ready`] and then
//! [`Reactor::poll_ready_tracked`], which stores the waker; when woken, retry
//! the syscall. Two modes implement this, chosen by [`Reactor::new`]:
//!
//! * **Edge-triggered** (Linux epoll, kqueue): each source is registered once
//!   with read and write interest and never re-armed. The reactor caches, per
//!   source and direction, whether the direction may be ready: set when
//!   [`Reactor::wait`] sees an event for it (with or without a waiter),
//!   cleared by [`Reactor::clear_ready`] (the caller's syscall said `EAGAIN`)
//!   or [`Reactor::note_short_read`]. While it is clear a caller may wait
//!   first instead of paying a failing syscall ([`Reactor::is_ready`]).
//!   Because events are only processed inside `wait`, a readiness change
//!   after the failed syscall is still queued in the kernel and reported by
//!   the next `wait`, so clearing right after `EAGAIN` loses nothing.
//! * **One-shot** (`polling`'s `poll(2)`, event ports, IOCP): interest is
//!   armed per wait and disarmed by each report; arming re-evaluates the
//!   current readiness in the OS, so a change between the failed syscall
//!   and the arming is never lost. [`Reactor::is_ready`] is always `true`
//!   and the clearing calls do nothing.
//!
//! ```
//! use ringloop_fallback::Reactor;
//! use std::time::Duration;
//!
//! let reactor = Reactor::new().unwrap();
//! let notifier = reactor.notifier();
//! std::thread::spawn(move || notifier.notify());
//! // Returns as soon as the other thread notifies (or after 5 s at worst).
//! reactor.wait(Some(Duration::from_secs(5))).unwrap();
//! ```

#![deny(unsafe_op_in_unsafe_fn)]
#![warn(missing_docs)]

use std::cell::RefCell;
use std::io;
use std::sync::Arc;
use std::task::{Context, Poll, Waker};
use std::time::Duration;

#[cfg(all(any(target_os = "linux", target_os = "android"), not(polling_test_poll_backend)))]
mod sys_epoll;
#[cfg(all(any(target_os = "linux", target_os = "android"), not(polling_test_poll_backend)))]
use sys_epoll::{Event, Events, PollMode, Poller};

#[cfg(not(all(any(target_os = "linux", target_os = "android"), not(polling_test_poll_backend))))]
use polling::{Event, Events, PollMode, Poller};
use slab::Slab;

/// Whether a reported event held a condition that can end a read early
/// while the source stays readable: a hang-up or end of stream, an error,
/// or priority (urgent) data, whose mark stops a read.
#[cfg(all(any(target_os = "linux", target_os = "android"), not(polling_test_poll_backend)))]
fn exceptional(ev: &Event) -> bool {
    ev.exceptional
}

/// `polling`'s events do not say (portably), so every event counts: short
/// reads then never clear readiness once a source has seen an event.
#[cfg(not(all(any(target_os = "linux", target_os = "android"), not(polling_test_poll_backend))))]
fn exceptional(_ev: &Event) -> bool {
    true
}

#[cfg(unix)]
/// The raw OS handle a source is registered with (a file descriptor on Unix).
pub type RawSource = std::os::fd::RawFd;
#[cfg(windows)]
/// The raw OS handle a source is registered with (a socket on Windows).
pub type RawSource = std::os::windows::io::RawSocket;

/// Which readiness a caller waits for.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Direction {
    /// The source is readable (or has an error / hang-up pending).
    Read,
    /// The source is writable (or has an error / hang-up pending).
    Write,
}

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

/// One task waiting for one direction of a source.
struct Waiter {
    /// Unique per reactor, so a stale [`WaitToken`] never matches a reused slot.
    id: u64,
    waker: Waker,
}

/// Identifies a waiter registered by [`Reactor::poll_ready_tracked`], so
/// its owner can refresh the waker or withdraw it ([`Reactor::cancel_wait`]).
/// Once the waiter has been woken the token is stale, and using it is
/// harmless.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct WaitToken {
    slot: usize,
    id: u64,
}

struct SourceState {
    raw: RawSource,
    /// Every waiter of a direction is woken when it becomes ready (several
    /// tasks may wait on one socket, e.g. two accepts on one listener).
    reader: Slab<Waiter>,
    writer: Slab<Waiter>,
    /// Edge mode: the direction may be ready. Set at registration and by
    /// every event reporting the direction; cleared only by the owner
    /// (`clear_ready` after `EAGAIN`, `note_short_read`, or consumed by a
    /// `poll_ready*` that returns `Ready`). Invariant: while set, the
    /// direction has no waiters (`wait` sets it and wakes them together;
    /// waiters are only added while it is clear).
    read_ready: bool,
    write_ready: bool,
    /// Edge mode: an event reported a hang-up, an error or urgent data
    /// ([`exceptional`]); from then on a short read proves nothing.
    short_reads_inconclusive: bool,
}

impl SourceState {
    fn waiters(&mut self, dir: Direction) -> &mut Slab<Waiter> {
        match dir {
            Direction::Read => &mut self.reader,
            Direction::Write => &mut self.writer,
        }
    }

    fn ready_flag(&mut self, dir: Direction) -> &mut bool {
        match dir {
            Direction::Read => &mut self.read_ready,
            Direction::Write => &mut self.write_ready,
        }
    }
}

/// How sources are registered with the OS poller.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Mode {
    /// Registered once, read + write, edge-triggered; readiness cached.
    Edge,
    /// Interest armed per wait (`EPOLLONESHOT` or equivalent).
    Oneshot,
}

/// A single-threaded readiness reactor. Not `Sync`: one loop owns it.
pub struct Reactor {
    poller: Arc<Poller>,
    events: RefCell<Events>,
    sources: RefCell<Slab<SourceState>>,
    next_waiter_id: std::cell::Cell<u64>,
    mode: Mode,
}

/// Cross-thread wake-up handle for a [`Reactor`].
#[derive(Clone)]
pub struct Notifier {
    poller: Arc<Poller>,
}

impl Notifier {
    /// Makes the reactor's current (or next) [`Reactor::wait`] return.
    pub fn notify(&self) {
        // A failed notification only happens when the poller is gone, in
        // which case there is nobody left to wake.
        let _ = self.poller.notify();
    }
}

impl std::fmt::Debug for Notifier {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Notifier").finish_non_exhaustive()
    }
}

impl std::fmt::Debug for Reactor {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Reactor")
            .field("backend", &backend_name())
            .field("edge_triggered", &self.is_edge_triggered())
            .field("sources", &self.sources.borrow().len())
            .finish()
    }
}

impl Reactor {
    /// Creates the OS poller; sources are registered edge-triggered where
    /// the backend supports it, one-shot otherwise (see the crate docs).
    pub fn new() -> io::Result<Reactor> {
        let poller = Poller::new()?;
        let mode = if poller.supports_edge() {
            Mode::Edge
        } else {
            Mode::Oneshot
        };
        Ok(Reactor::with_mode(poller, mode))
    }

    /// Creates a reactor in one-shot mode even where edge mode is available
    /// (what backends without edge support always use); for tests and
    /// comparisons.
    pub fn new_oneshot() -> io::Result<Reactor> {
        Ok(Reactor::with_mode(Poller::new()?, Mode::Oneshot))
    }

    fn with_mode(poller: Poller, mode: Mode) -> Reactor {
        Reactor {
            poller: Arc::new(poller),
            events: RefCell::new(Events::new()),
            sources: RefCell::new(Slab::new()),
            next_waiter_id: std::cell::Cell::new(0),
            mode,
        }
    }

    /// Whether sources are registered edge-triggered with cached readiness
    /// (`false`: one-shot interest per wait).
    pub fn is_edge_triggered(&self) -> bool {
        self.mode == Mode::Edge
    }

    /// A `Send + Sync` handle that wakes this reactor from any thread.
    pub fn notifier(&self) -> Notifier {
        Notifier {
            poller: self.poller.clone(),
        }
    }

    /// Number of registered sources.
    pub fn registered(&self) -> usize {
        self.sources.borrow().len()
    }

    /// Waits for readiness events or a notification for at most `timeout`
    /// (`None`: no limit; `Some(ZERO)`: just poll), then wakes the waiters of
    /// every source that became ready. Returns how many wakers were woken.
    ///
    /// In edge mode every reported direction is also remembered as ready,
    /// whether or not anyone waits for it, until its owner clears it.
    ///
    /// `EINTR` is not an error: it returns `Ok(0)`.
    pub fn wait(&self, timeout: Option<Duration>) -> io::Result<usize> {
        let mut to_wake: Vec<Waker> = Vec::new();
        {
            let mut events = self.events.borrow_mut();
            events.clear();
            match self.poller.wait(&mut events, timeout) {
                Ok(_) => {}
                Err(e) if e.kind() == io::ErrorKind::Interrupted => return Ok(0),
                // `polling`'s poll(2) backend: a `notify` from another thread
                // raced with this wait (its flag was set, its byte not yet
                // written). `polling` then returns EAGAIN *without* clearing
                // its own "notified" flag, after which every later `notify`
                // would be skipped and the loop would sleep forever (seen as a
                // rare hang of a loop woken by its blocking pool). A
                // zero-timeout wait that succeeds clears that flag. Either
                // way this was a wake-up: the caller looks at its queues.
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                    let mut tries = 0;
                    loop {
                        events.clear();
                        match self.poller.wait(&mut events, Some(Duration::ZERO)) {
                            Ok(_) => break,
                            Err(e)
                                if matches!(e.kind(), io::ErrorKind::WouldBlock | io::ErrorKind::Interrupted)
                                    && tries < 10_000 =>
                            {
                                // The notifier is between its flag and its
                                // write; let it finish.
                                tries += 1;
                                std::thread::yield_now();
                            }
                            Err(e) => return Err(e),
                        }
                    }
                }
                Err(e) => return Err(e),
            }
            let mut sources = self.sources.borrow_mut();
            for ev in events.iter() {
                let Some(src) = sources.get_mut(ev.key) else {
                    continue;
                };
                // Errors and hang-ups are reported as both readable and
                // writable, so the retried syscall surfaces them.
                if ev.readable {
                    to_wake.extend(src.reader.drain().map(|w| w.waker));
                }
                if ev.writable {
                    to_wake.extend(src.writer.drain().map(|w| w.waker));
                }
                match self.mode {
                    Mode::Edge => {
                        src.read_ready |= ev.readable;
                        src.write_ready |= ev.writable;
                        if exceptional(&ev) {
                            src.short_reads_inconclusive = true;
                        }
                    }
                    Mode::Oneshot => {
                        // The report disarmed the source; re-arm whatever is
                        // still wanted (a direction that did not fire keeps
                        // its waiters).
                        let want = interest(ev.key, src);
                        if want.readable || want.writable {
                            Self::modify(&self.poller, src.raw, want)?;
                        }
                    }
                }
            }
        }
        let n = to_wake.len();
        for w in to_wake {
            w.wake();
        }
        Ok(n)
    }

    /// Registers a raw source; returns its key. In edge mode it is added
    /// once with read and write interest and starts ready in both
    /// directions (the first attempt is the syscall); in one-shot mode it
    /// starts with no interest.
    ///
    /// # Safety
    ///
    /// `raw` must stay open until [`Reactor::deregister`] is called with the
    /// returned key (the OS poller must not see a closed or reused handle).
    pub unsafe fn register(&self, raw: RawSource) -> io::Result<usize> {
        let mut sources = self.sources.borrow_mut();
        let entry = sources.vacant_entry();
        let key = entry.key();
        let (interest, mode) = match self.mode {
            Mode::Edge => (Event::all(key), PollMode::Edge),
            Mode::Oneshot => (Event::none(key), PollMode::Oneshot),
        };
        // SAFETY: the caller guarantees `raw` stays valid until `deregister`,
        // which deletes it from the poller before the handle can be closed.
        unsafe { self.poller.add_with_mode(raw, interest, mode)? };
        entry.insert(SourceState {
            raw,
            reader: Slab::new(),
            writer: Slab::new(),
            read_ready: true,
            write_ready: true,
            short_reads_inconclusive: false,
        });
        Ok(key)
    }

    /// Whether `dir` of source `key` may be ready, i.e. whether the caller
    /// should try its syscall before waiting. Edge mode: the cached flag
    /// (`true` for an unknown key, so the syscall surfaces the state);
    /// one-shot mode: always `true`.
    pub fn is_ready(&self, key: usize, dir: Direction) -> bool {
        if self.mode == Mode::Oneshot {
            return true;
        }
        let mut sources = self.sources.borrow_mut();
        match sources.get_mut(key) {
            Some(src) => *src.ready_flag(dir),
            None => true,
        }
    }

    /// Forgets that `dir` of source `key` may be ready. Call it when a
    /// non-blocking syscall in that direction said `EAGAIN`, before waiting
    /// (in the same poll: no [`Reactor::wait`] may run in between, so any
    /// readiness that came after the syscall is still queued in the kernel
    /// and will set the flag again). One-shot mode: no effect.
    pub fn clear_ready(&self, key: usize, dir: Direction) {
        if self.mode == Mode::Oneshot {
            return;
        }
        if let Some(src) = self.sources.borrow_mut().get_mut(key) {
            *src.ready_flag(dir) = false;
        }
    }

    /// Reports that a read on source `key` returned fewer bytes than asked
    /// (but some), on a source whose short reads mean its receive buffer was
    /// emptied (stream sockets, pipes; never datagrams, listeners or files):
    /// read readiness is cleared as after `EAGAIN`, so the next read waits
    /// for an event instead of paying a failing syscall.
    ///
    /// A short read does not prove the source unreadable when an end of
    /// stream, an error or urgent data is pending (each ends or stops a read
    /// while the source stays readable). Each of those is reported by an
    /// event: one that came after the last processed event is still queued
    /// in the kernel (and will set the flag again); one already processed
    /// marked the source, whose short reads are then ignored for good. Where
    /// the backend cannot tell ([`polling`]'s events), any event marks it.
    /// One-shot mode: no effect.
    pub fn note_short_read(&self, key: usize) {
        if self.mode == Mode::Oneshot {
            return;
        }
        if let Some(src) = self.sources.borrow_mut().get_mut(key)
            && !src.short_reads_inconclusive
        {
            src.read_ready = false;
        }
    }

    /// Waits for `dir` of source `key` with an anonymous waker: edge mode
    /// returns `Ready(Ok)` at once if the direction is believed ready
    /// (consuming the flag: the caller's syscall must then find out and
    /// clear it again if needed), else adds the waker to the direction's
    /// waiters; one-shot mode arms interest and adds the waker. A waker is
    /// not added twice (`Waker::will_wake`); every waiter is woken by a later
    /// [`Reactor::wait`] once the direction is reported (or by
    /// `deregister`). An unknown key is an error.
    ///
    /// The waker cannot be withdrawn: if its owner loses interest, it stays
    /// (and is woken spuriously) until the direction fires. Futures that may
    /// be dropped while waiting should use [`Reactor::poll_ready_tracked`].
    pub fn poll_ready(&self, key: usize, dir: Direction, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        self.arm(key, dir, cx, None)
    }

    /// Like [`Reactor::poll_ready`], for a waiter identified by `token`: the
    /// first call (with `None`) registers a new waiter and stores its token;
    /// later calls with a live token refresh that waiter's waker. Pass the
    /// token to [`Reactor::cancel_wait`] when giving up before being woken.
    pub fn poll_ready_tracked(
        &self,
        key: usize,
        dir: Direction,
        token: &mut Option<WaitToken>,
        cx: &mut Context<'_>,
    ) -> Poll<io::Result<()>> {
        self.arm(key, dir, cx, Some(token))
    }

    /// Withdraws a waiter registered by [`Reactor::poll_ready_tracked`] that
    /// has not been woken yet; a stale token or unknown key is ignored.
    pub fn cancel_wait(&self, key: usize, dir: Direction, token: WaitToken) {
        let removed = {
            let mut sources = self.sources.borrow_mut();
            let Some(src) = sources.get_mut(key) else { return };
            let waiters = src.waiters(dir);
            match waiters.get(token.slot) {
                Some(w) if w.id == token.id => Some(waiters.remove(token.slot)),
                _ => None,
            }
        };
        // The waker is dropped outside the borrow. One-shot mode: the OS
        // interest stays armed until it fires once with nobody to wake
        // (cheap). Edge mode: a later event just sets the flag.
        drop(removed);
    }

    fn arm(
        &self,
        key: usize,
        dir: Direction,
        cx: &mut Context<'_>,
        token: Option<&mut Option<WaitToken>>,
    ) -> Poll<io::Result<()>> {
        let mut sources = self.sources.borrow_mut();
        let Some(src) = sources.get_mut(key) else {
            return Poll::Ready(Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                "ringloop-fallback: poll_ready on an unregistered source",
            )));
        };
        if self.mode == Mode::Edge {
            let ready = src.ready_flag(dir);
            if *ready {
                // No waiter can be registered while the flag is set (see
                // `SourceState`), so nothing is left behind.
                *ready = false;
                return Poll::Ready(Ok(()));
            }
        }
        let waiters = src.waiters(dir);
        let existing = match &token {
            Some(Some(t)) => waiters.get_mut(t.slot).filter(|w| w.id == t.id),
            Some(None) => None,
            None => waiters
                .iter_mut()
                .map(|(_, w)| w)
                .find(|w| w.waker.will_wake(cx.waker())),
        };
        let mut old = None;
        match existing {
            Some(w) if w.waker.will_wake(cx.waker()) => {}
            Some(w) => old = Some(std::mem::replace(&mut w.waker, cx.waker().clone())),
            None => {
                let id = self.next_waiter_id.get();
                self.next_waiter_id.set(id + 1);
                let slot = waiters.insert(Waiter {
                    id,
                    waker: cx.waker().clone(),
                });
                if let Some(token) = token {
                    *token = Some(WaitToken { slot, id });
                }
            }
        }
        let res = match self.mode {
            // Interest never changes: the next event reporting `dir` wakes us.
            Mode::Edge => Ok(()),
            Mode::Oneshot => Self::modify(&self.poller, src.raw, interest(key, src)),
        };
        drop(sources);
        drop(old);
        match res {
            Ok(()) => Poll::Pending,
            Err(e) => Poll::Ready(Err(e)),
        }
    }

    /// Removes the source from the poller. Pending waiters are woken so they
    /// can observe the closed state. Unknown keys are ignored.
    pub fn deregister(&self, key: usize) -> io::Result<()> {
        let removed = {
            let mut sources = self.sources.borrow_mut();
            if !sources.contains(key) {
                return Ok(());
            }
            sources.remove(key)
        };
        // SAFETY: the source was registered by `register`, whose contract
        // keeps the handle open until this call.
        let res = self.poller.delete(unsafe { borrow_raw(removed.raw) });
        for w in removed.reader.into_iter().chain(removed.writer) {
            w.1.waker.wake();
        }
        res
    }

    /// Re-arms a one-shot registration.
    fn modify(poller: &Poller, raw: RawSource, ev: Event) -> io::Result<()> {
        // SAFETY: only registered (hence still open) handles reach here.
        poller.modify(unsafe { borrow_raw(raw) }, ev)
    }
}

/// One-shot mode: the interest a source's waiters need.
fn interest(key: usize, src: &SourceState) -> Event {
    match (!src.reader.is_empty(), !src.writer.is_empty()) {
        (true, true) => Event::all(key),
        (true, false) => Event::readable(key),
        (false, true) => Event::writable(key),
        (false, false) => Event::none(key),
    }
}

#[cfg(unix)]
/// # Safety
/// `raw` must be an open descriptor for the lifetime of the borrow.
unsafe fn borrow_raw(raw: RawSource) -> std::os::fd::BorrowedFd<'static> {
    // SAFETY: forwarded to the caller.
    unsafe { std::os::fd::BorrowedFd::borrow_raw(raw) }
}

#[cfg(windows)]
/// # Safety
/// `raw` must be an open socket for the lifetime of the borrow.
unsafe fn borrow_raw(raw: RawSource) -> std::os::windows::io::BorrowedSocket<'static> {
    // SAFETY: forwarded to the caller.
    unsafe { std::os::windows::io::BorrowedSocket::borrow_raw(raw) }
}

impl Drop for Reactor {
    fn drop(&mut self) {
        let keys: Vec<usize> = self.sources.borrow().iter().map(|(k, _)| k).collect();
        for k in keys {
            let _ = self.deregister(k);
        }
    }
}

#[cfg(all(test, unix))]
mod tests {
    use super::*;
    use std::io::{Read, Write};
    use std::os::fd::AsRawFd;
    use std::os::unix::net::UnixStream;
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::task::Wake;
    use std::time::Instant;

    struct Count(AtomicUsize);
    impl Wake for Count {
        fn wake(self: Arc<Self>) {
            self.0.fetch_add(1, Ordering::SeqCst);
        }
    }

    fn counter() -> (Arc<Count>, Waker) {
        let c = Arc::new(Count(AtomicUsize::new(0)));
        let w = Waker::from(c.clone());
        (c, w)
    }

    fn woken(c: &Count) -> usize {
        c.0.load(Ordering::SeqCst)
    }

    /// A non-blocking socket pair, `a` registered with `r`.
    fn registered_pair(r: &Reactor) -> (UnixStream, UnixStream, usize) {
        let (a, b) = UnixStream::pair().unwrap();
        a.set_nonblocking(true).unwrap();
        // SAFETY: every test deregisters (or drops the reactor) before `a`.
        let key = unsafe { r.register(a.as_raw_fd()).unwrap() };
        (a, b, key)
    }

    /// Edge mode, where this build has it (not under the poll(2) backend).
    fn edge_reactor() -> Option<Reactor> {
        let r = Reactor::new().unwrap();
        if r.is_edge_triggered() {
            Some(r)
        } else {
            eprintln!("SKIP: no edge-triggered mode on the {} backend", backend_name());
            None
        }
    }

    /// Fills `a`'s send buffer (the peer does not read) until `EAGAIN`.
    fn fill(a: &mut UnixStream) -> usize {
        let chunk = [7u8; 4096];
        let mut total = 0;
        loop {
            match a.write(&chunk) {
                Ok(n) => total += n,
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return total,
                Err(e) => panic!("write: {e}"),
            }
        }
    }

    #[test]
    fn edge_mode_is_used_where_supported() {
        let r = Reactor::new().unwrap();
        if cfg!(target_os = "linux") {
            // Direct epoll is edge-triggered; `polling`'s poll(2) cannot be.
            assert_eq!(r.is_edge_triggered(), !cfg!(polling_test_poll_backend));
        }
        assert!(!Reactor::new_oneshot().unwrap().is_edge_triggered());
    }

    #[test]
    fn notify_from_another_thread_wakes_a_blocked_wait() {
        let r = Reactor::new().unwrap();
        let n = r.notifier();
        let t = std::thread::spawn(move || {
            std::thread::sleep(Duration::from_millis(50));
            n.notify();
        });
        let start = Instant::now();
        r.wait(Some(Duration::from_secs(10))).unwrap();
        assert!(start.elapsed() < Duration::from_secs(5));
        t.join().unwrap();
    }

    #[test]
    fn oneshot_readable_source_wakes_its_waiter_once_armed() {
        let r = Reactor::new_oneshot().unwrap();
        let (_a, mut b, key) = registered_pair(&r);
        let (count, waker) = counter();
        let mut cx = Context::from_waker(&waker);
        assert!(
            r.is_ready(key, Direction::Read),
            "one-shot mode always tries the syscall"
        );
        assert!(r.poll_ready(key, Direction::Read, &mut cx).is_pending());
        assert_eq!(r.wait(Some(Duration::ZERO)).unwrap(), 0);
        b.write_all(b"x").unwrap();
        assert_eq!(r.wait(Some(Duration::from_secs(5))).unwrap(), 1);
        assert_eq!(woken(&count), 1);
        // Already-readable data is reported as soon as interest is re-armed.
        assert!(r.poll_ready(key, Direction::Read, &mut cx).is_pending());
        assert_eq!(r.wait(Some(Duration::from_secs(5))).unwrap(), 1);
        r.deregister(key).unwrap();
        assert_eq!(r.registered(), 0);
    }

    #[test]
    fn every_waiter_of_a_direction_is_woken_and_a_cancelled_one_is_not() {
        for r in [Some(Reactor::new_oneshot().unwrap()), edge_reactor()]
            .into_iter()
            .flatten()
        {
            let (_a, mut b, key) = registered_pair(&r);
            // Edge mode: consume the registration's report, then act as if a
            // read just said EAGAIN.
            r.wait(Some(Duration::ZERO)).unwrap();
            r.clear_ready(key, Direction::Read);
            let counts: Vec<(Arc<Count>, Waker)> = (0..3).map(|_| counter()).collect();
            let mut tokens = [None, None, None];
            for ((_, waker), t) in counts.iter().zip(&mut tokens) {
                let mut cx = Context::from_waker(waker);
                assert!(r.poll_ready_tracked(key, Direction::Read, t, &mut cx).is_pending());
                // Polling again with the same token refreshes, not duplicates.
                assert!(r.poll_ready_tracked(key, Direction::Read, t, &mut cx).is_pending());
            }
            // An untracked waiter too (deduplicated by `will_wake`).
            let (untracked, waker) = counter();
            let mut cx = Context::from_waker(&waker);
            assert!(r.poll_ready(key, Direction::Read, &mut cx).is_pending());
            assert!(r.poll_ready(key, Direction::Read, &mut cx).is_pending());
            r.cancel_wait(key, Direction::Read, tokens[1].unwrap());
            b.write_all(b"x").unwrap();
            assert_eq!(r.wait(Some(Duration::from_secs(5))).unwrap(), 3, "{r:?}");
            let counts: Vec<usize> = counts.iter().map(|(c, _)| woken(c)).collect();
            assert_eq!(counts, [1, 0, 1]);
            assert_eq!(woken(&untracked), 1);
            // Tokens of woken waiters are stale: cancelling them is a no-op.
            r.cancel_wait(key, Direction::Read, tokens[0].unwrap());
            r.deregister(key).unwrap();
        }
    }

    #[test]
    fn deregister_wakes_the_waiters_of_both_directions() {
        for r in [Some(Reactor::new_oneshot().unwrap()), edge_reactor()]
            .into_iter()
            .flatten()
        {
            let (mut a, _b, key) = registered_pair(&r);
            fill(&mut a);
            r.wait(Some(Duration::ZERO)).unwrap();
            r.clear_ready(key, Direction::Read);
            r.clear_ready(key, Direction::Write);
            let (rc, rw) = counter();
            let (wc, ww) = counter();
            let (mut rt, mut wt) = (None, None);
            let mut cx = Context::from_waker(&rw);
            assert!(
                r.poll_ready_tracked(key, Direction::Read, &mut rt, &mut cx)
                    .is_pending()
            );
            let mut cx = Context::from_waker(&ww);
            assert!(
                r.poll_ready_tracked(key, Direction::Write, &mut wt, &mut cx)
                    .is_pending()
            );
            assert_eq!(r.wait(Some(Duration::ZERO)).unwrap(), 0);
            r.deregister(key).unwrap();
            assert_eq!((woken(&rc), woken(&wc)), (1, 1));
            // Unknown keys: waiting is an error, the flag query says "try".
            assert!(matches!(
                r.poll_ready(key, Direction::Read, &mut cx),
                Poll::Ready(Err(_))
            ));
            assert!(r.is_ready(key, Direction::Read));
        }
    }

    #[test]
    fn edge_new_source_starts_ready_and_poll_consumes_the_flag() {
        let Some(r) = edge_reactor() else { return };
        let (_a, _b, key) = registered_pair(&r);
        assert!(r.is_ready(key, Direction::Read));
        assert!(r.is_ready(key, Direction::Write));
        let (count, waker) = counter();
        let mut cx = Context::from_waker(&waker);
        // Believed ready: answered at once, flag consumed.
        assert!(matches!(
            r.poll_ready(key, Direction::Read, &mut cx),
            Poll::Ready(Ok(()))
        ));
        assert!(!r.is_ready(key, Direction::Read));
        assert!(r.is_ready(key, Direction::Write), "directions are independent");
        assert!(r.poll_ready(key, Direction::Read, &mut cx).is_pending());
        assert_eq!(woken(&count), 0);
        r.deregister(key).unwrap();
    }

    #[test]
    fn edge_event_with_nobody_waiting_is_remembered() {
        let Some(r) = edge_reactor() else { return };
        let (mut a, mut b, key) = registered_pair(&r);
        r.wait(Some(Duration::ZERO)).unwrap();
        // A read said EAGAIN; nobody waits yet.
        r.clear_ready(key, Direction::Read);
        assert!(!r.is_ready(key, Direction::Read));
        b.write_all(b"hello").unwrap();
        // The event is processed with no waiter: nothing to wake...
        assert_eq!(r.wait(Some(Duration::from_secs(5))).unwrap(), 0);
        // ...but the readiness is kept, so a later wait does not block.
        assert!(r.is_ready(key, Direction::Read));
        let (count, waker) = counter();
        let mut cx = Context::from_waker(&waker);
        let mut token = None;
        assert!(matches!(
            r.poll_ready_tracked(key, Direction::Read, &mut token, &mut cx),
            Poll::Ready(Ok(()))
        ));
        assert_eq!(token, None, "no waiter was registered");
        let mut buf = [0u8; 16];
        assert_eq!(a.read(&mut buf).unwrap(), 5);
        assert_eq!(woken(&count), 0);
        r.deregister(key).unwrap();
    }

    #[test]
    fn edge_cleared_readiness_stays_pending_until_a_new_event() {
        let Some(r) = edge_reactor() else { return };
        let (mut a, mut b, key) = registered_pair(&r);
        b.write_all(b"abc").unwrap();
        assert_eq!(r.wait(Some(Duration::from_secs(5))).unwrap(), 0);
        assert!(r.is_ready(key, Direction::Read));
        let mut buf = [0u8; 2];
        assert_eq!(a.read(&mut buf).unwrap(), 2);
        // Pretend the (unread) rest is not there: cleared readiness with
        // data pending is not reported again, because the source is
        // edge-triggered and never re-armed. (This is why only `EAGAIN` and
        // draining short reads may clear it.)
        r.clear_ready(key, Direction::Read);
        let (count, waker) = counter();
        let mut cx = Context::from_waker(&waker);
        let mut token = None;
        assert!(
            r.poll_ready_tracked(key, Direction::Read, &mut token, &mut cx)
                .is_pending()
        );
        assert!(token.is_some());
        assert_eq!(r.wait(Some(Duration::from_millis(20))).unwrap(), 0);
        assert_eq!(woken(&count), 0);
        assert!(!r.is_ready(key, Direction::Read));
        // Re-polling refreshes the same waiter.
        let first = token;
        assert!(
            r.poll_ready_tracked(key, Direction::Read, &mut token, &mut cx)
                .is_pending()
        );
        assert_eq!(token, first);
        // A new edge (more data) wakes it and sets the flag.
        b.write_all(b"d").unwrap();
        assert_eq!(r.wait(Some(Duration::from_secs(5))).unwrap(), 1);
        assert_eq!(woken(&count), 1);
        assert!(r.is_ready(key, Direction::Read));
        let mut buf = [0u8; 8];
        assert_eq!(a.read(&mut buf).unwrap(), 2);
        assert_eq!(&buf[..2], b"cd");
        // The woken waiter's token is stale now.
        r.cancel_wait(key, Direction::Read, token.unwrap());
        r.deregister(key).unwrap();
    }

    #[test]
    fn edge_wakes_each_direction_by_its_own_events() {
        let Some(r) = edge_reactor() else { return };
        let (mut a, mut b, key) = registered_pair(&r);
        let sent = fill(&mut a);
        r.wait(Some(Duration::ZERO)).unwrap();
        // Both directions said EAGAIN (nothing to read, send buffer full).
        r.clear_ready(key, Direction::Read);
        r.clear_ready(key, Direction::Write);
        let (rc, rw) = counter();
        let (wc, ww) = counter();
        let (mut rt, mut wt) = (None, None);
        assert!(
            r.poll_ready_tracked(key, Direction::Read, &mut rt, &mut Context::from_waker(&rw))
                .is_pending()
        );
        assert!(
            r.poll_ready_tracked(key, Direction::Write, &mut wt, &mut Context::from_waker(&ww))
                .is_pending()
        );
        // Data for `a`: the reader wakes; the writer keeps waiting (its send
        // buffer is still full, so the event does not report writability).
        b.write_all(b"ping").unwrap();
        assert_eq!(r.wait(Some(Duration::from_secs(5))).unwrap(), 1);
        assert_eq!((woken(&rc), woken(&wc)), (1, 0));
        assert!(r.is_ready(key, Direction::Read));
        assert!(!r.is_ready(key, Direction::Write));
        // The peer drains what `a` sent: send space frees up, the writer wakes.
        b.set_nonblocking(true).unwrap();
        let mut got = 0;
        let mut buf = vec![0u8; 64 * 1024];
        while got < sent {
            match b.read(&mut buf) {
                Ok(n) => got += n,
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                    r.wait(Some(Duration::from_millis(10))).unwrap();
                }
                Err(e) => panic!("read: {e}"),
            }
        }
        let deadline = Instant::now() + Duration::from_secs(5);
        while woken(&wc) == 0 && Instant::now() < deadline {
            r.wait(Some(Duration::from_millis(50))).unwrap();
        }
        assert_eq!((woken(&rc), woken(&wc)), (1, 1));
        assert!(r.is_ready(key, Direction::Write));
        r.deregister(key).unwrap();
    }

    #[test]
    fn edge_short_read_clears_until_a_hang_up_was_seen() {
        let Some(r) = edge_reactor() else { return };
        let (_a, mut b, key) = registered_pair(&r);
        b.write_all(b"x").unwrap();
        r.wait(Some(Duration::from_secs(5))).unwrap();
        assert!(r.is_ready(key, Direction::Read));
        r.note_short_read(key);
        assert!(!r.is_ready(key, Direction::Read), "a draining short read clears");
        // The peer hangs up: reported (RDHUP), and from then on short reads
        // prove nothing (the end of stream stays readable).
        drop(b);
        r.wait(Some(Duration::from_secs(5))).unwrap();
        assert!(r.is_ready(key, Direction::Read));
        r.note_short_read(key);
        assert!(r.is_ready(key, Direction::Read));
        // EAGAIN still clears.
        r.clear_ready(key, Direction::Read);
        assert!(!r.is_ready(key, Direction::Read));
        r.deregister(key).unwrap();
    }

    #[test]
    fn oneshot_clearing_calls_change_nothing() {
        let r = Reactor::new_oneshot().unwrap();
        let (_a, _b, key) = registered_pair(&r);
        r.clear_ready(key, Direction::Read);
        r.note_short_read(key);
        assert!(r.is_ready(key, Direction::Read));
        let (_c, waker) = counter();
        assert!(
            r.poll_ready(key, Direction::Write, &mut Context::from_waker(&waker))
                .is_pending()
        );
        r.deregister(key).unwrap();
    }

    #[test]
    fn poll_ready_on_unknown_key_is_an_error() {
        let r = Reactor::new().unwrap();
        let (_c, waker) = counter();
        let mut cx = Context::from_waker(&waker);
        match r.poll_ready(42, Direction::Write, &mut cx) {
            Poll::Ready(Err(e)) => assert_eq!(e.kind(), io::ErrorKind::InvalidInput),
            other => panic!("expected an error, got {other:?}"),
        }
    }
}
