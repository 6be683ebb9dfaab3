//! `ringloop-fallback`: the portable readiness reactor behind ringloop's
//! non-io_uring backend.
//!
//! This crate knows nothing about ringloop's tasks, timers or loop. It offers
//! exactly three things on top of the [`polling`] crate (epoll, kqueue, event
//! ports, IOCP or plain `poll(2)`, chosen by `polling` per OS):
//!
//! 1. [`Reactor::wait`]: block for at most a timeout, then wake the
//!    [`Waker`]s of every source whose interest fired;
//! 2. [`Notifier`]: a `Send + Sync` handle that makes a concurrent or the next
//!    `wait` return promptly (cross-thread wake-up);
//! 3. registration of raw sources with one-shot interest
//!    ([`Reactor::register`], [`Reactor::poll_ready`], [`Reactor::deregister`]).
//!
//! The intended I/O pattern ("emulated completion") is: try the non-blocking
//! syscall; on `EAGAIN` call [`Reactor::poll_ready`], which (re-)arms interest
//! and stores the waker; when woken, retry the syscall. Arming re-evaluates the
//! current readiness in the OS, so a readiness change between the failed
//! syscall and the arming is never lost.
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
use sys_epoll::{Event, Events, Poller};

#[cfg(not(all(any(target_os = "linux", target_os = "android"), not(polling_test_poll_backend))))]
use polling::{Event, Events, Poller};
use slab::Slab;

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
}

impl SourceState {
    fn waiters(&mut self, dir: Direction) -> &mut Slab<Waiter> {
        match dir {
            Direction::Read => &mut self.reader,
            Direction::Write => &mut self.writer,
        }
    }
}

/// A single-threaded readiness reactor. Not `Sync`: one loop owns it.
pub struct Reactor {
    poller: Arc<Poller>,
    events: RefCell<Events>,
    sources: RefCell<Slab<SourceState>>,
    next_waiter_id: std::cell::Cell<u64>,
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
            .field("sources", &self.sources.borrow().len())
            .finish()
    }
}

impl Reactor {
    /// Creates the OS poller.
    pub fn new() -> io::Result<Reactor> {
        Ok(Reactor {
            poller: Arc::new(Poller::new()?),
            events: RefCell::new(Events::new()),
            sources: RefCell::new(Slab::new()),
            next_waiter_id: std::cell::Cell::new(0),
        })
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
    /// `EINTR` is not an error: it returns `Ok(0)`.
    pub fn wait(&self, timeout: Option<Duration>) -> io::Result<usize> {
        let mut to_wake: Vec<Waker> = Vec::new();
        {
            let mut events = self.events.borrow_mut();
            events.clear();
            match self.poller.wait(&mut events, timeout) {
                Ok(_) => {}
                Err(e) if e.kind() == io::ErrorKind::Interrupted => return Ok(0),
                Err(e) => return Err(e),
            }
            let mut sources = self.sources.borrow_mut();
            for ev in events.iter() {
                let Some(src) = sources.get_mut(ev.key) else {
                    continue;
                };
                // Errors and hang-ups are reported by `polling` as both
                // readable and writable, so the retried syscall surfaces them.
                if ev.readable {
                    to_wake.extend(src.reader.drain().map(|w| w.waker));
                }
                if ev.writable {
                    to_wake.extend(src.writer.drain().map(|w| w.waker));
                }
                // One-shot mode disarmed the source; re-arm whatever is still
                // wanted (a direction that did not fire keeps its waiters).
                let want = interest(ev.key, src);
                if want.readable || want.writable {
                    Self::modify(&self.poller, src.raw, want)?;
                }
            }
        }
        let n = to_wake.len();
        for w in to_wake {
            w.wake();
        }
        Ok(n)
    }

    /// Registers a raw source with no interest yet; returns its key.
    ///
    /// # Safety
    ///
    /// `raw` must stay open until [`Reactor::deregister`] is called with the
    /// returned key (the OS poller must not see a closed or reused handle).
    pub unsafe fn register(&self, raw: RawSource) -> io::Result<usize> {
        let mut sources = self.sources.borrow_mut();
        let entry = sources.vacant_entry();
        let key = entry.key();
        // SAFETY: the caller guarantees `raw` stays valid until `deregister`,
        // which deletes it from the poller before the handle can be closed.
        unsafe { self.poller.add(raw, Event::none(key))? };
        entry.insert(SourceState {
            raw,
            reader: Slab::new(),
            writer: Slab::new(),
        });
        Ok(key)
    }

    /// Arms interest in `dir` for the source `key` and adds the waker to the
    /// direction's waiters, unless an equivalent waker (`Waker::will_wake`)
    /// already waits there; every waiter is woken by a later
    /// [`Reactor::wait`] once the source is ready (or by `deregister`).
    /// Always returns `Pending` unless the key is unknown (then an error):
    /// the caller retries its syscall when woken.
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
        // The waker is dropped outside the borrow. The OS interest stays armed
        // until it fires once with nobody to wake (one-shot, cheap).
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
        let want = interest(key, src);
        let res = Self::modify(&self.poller, src.raw, want);
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

    fn modify(poller: &Poller, raw: RawSource, ev: Event) -> io::Result<()> {
        // SAFETY: only registered (hence still open) handles reach here.
        poller.modify(unsafe { borrow_raw(raw) }, ev)
    }
}

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
    use std::os::fd::AsRawFd;
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::task::Wake;
    use std::time::Instant;

    struct Count(AtomicUsize);
    impl Wake for Count {
        fn wake(self: Arc<Self>) {
            self.0.fetch_add(1, Ordering::SeqCst);
        }
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
    fn readable_source_wakes_its_waiter_once_armed() {
        let r = Reactor::new().unwrap();
        let (a, mut b) = std::os::unix::net::UnixStream::pair().unwrap();
        a.set_nonblocking(true).unwrap();
        // SAFETY: `a` outlives the registration (deregistered below).
        let key = unsafe { r.register(a.as_raw_fd()).unwrap() };
        let count = Arc::new(Count(AtomicUsize::new(0)));
        let waker = Waker::from(count.clone());
        let mut cx = Context::from_waker(&waker);
        assert!(r.poll_ready(key, Direction::Read, &mut cx).is_pending());
        assert_eq!(r.wait(Some(Duration::ZERO)).unwrap(), 0);
        use std::io::Write;
        b.write_all(b"x").unwrap();
        assert_eq!(r.wait(Some(Duration::from_secs(5))).unwrap(), 1);
        assert_eq!(count.0.load(Ordering::SeqCst), 1);
        // Already-readable data is reported as soon as interest is re-armed.
        assert!(r.poll_ready(key, Direction::Read, &mut cx).is_pending());
        assert_eq!(r.wait(Some(Duration::from_secs(5))).unwrap(), 1);
        r.deregister(key).unwrap();
        assert_eq!(r.registered(), 0);
    }

    #[test]
    fn every_waiter_of_a_direction_is_woken_and_a_cancelled_one_is_not() {
        let r = Reactor::new().unwrap();
        let (a, mut b) = std::os::unix::net::UnixStream::pair().unwrap();
        a.set_nonblocking(true).unwrap();
        // SAFETY: `a` outlives the registration (deregistered below).
        let key = unsafe { r.register(a.as_raw_fd()).unwrap() };
        let counts: Vec<Arc<Count>> = (0..3).map(|_| Arc::new(Count(AtomicUsize::new(0)))).collect();
        let mut tokens = [None, None, None];
        for (c, t) in counts.iter().zip(&mut tokens) {
            let waker = Waker::from(c.clone());
            let mut cx = Context::from_waker(&waker);
            assert!(r.poll_ready_tracked(key, Direction::Read, t, &mut cx).is_pending());
            // Polling again with the same token refreshes, not duplicates.
            assert!(r.poll_ready_tracked(key, Direction::Read, t, &mut cx).is_pending());
        }
        // An untracked waiter too (deduplicated by `will_wake`).
        let untracked = Arc::new(Count(AtomicUsize::new(0)));
        let waker = Waker::from(untracked.clone());
        let mut cx = Context::from_waker(&waker);
        assert!(r.poll_ready(key, Direction::Read, &mut cx).is_pending());
        assert!(r.poll_ready(key, Direction::Read, &mut cx).is_pending());
        r.cancel_wait(key, Direction::Read, tokens[1].unwrap());
        use std::io::Write;
        b.write_all(b"x").unwrap();
        assert_eq!(r.wait(Some(Duration::from_secs(5))).unwrap(), 3);
        let woken: Vec<usize> = counts.iter().map(|c| c.0.load(Ordering::SeqCst)).collect();
        assert_eq!(woken, [1, 0, 1]);
        assert_eq!(untracked.0.load(Ordering::SeqCst), 1);
        // Tokens of woken waiters are stale: cancelling them is a no-op.
        r.cancel_wait(key, Direction::Read, tokens[0].unwrap());
        r.deregister(key).unwrap();
    }

    #[test]
    fn poll_ready_on_unknown_key_is_an_error() {
        let r = Reactor::new().unwrap();
        let count = Arc::new(Count(AtomicUsize::new(0)));
        let waker = Waker::from(count);
        let mut cx = Context::from_waker(&waker);
        match r.poll_ready(42, Direction::Write, &mut cx) {
            Poll::Ready(Err(e)) => assert_eq!(e.kind(), io::ErrorKind::InvalidInput),
            other => panic!("expected an error, got {other:?}"),
        }
    }
}
