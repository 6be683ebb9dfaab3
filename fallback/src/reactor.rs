//! The reactor: registration, per-direction waits, and `wait`.

use std::cell::RefCell;
use std::io;
use std::sync::Arc;
use std::task::{Context, Poll, Waker};
use std::time::Duration;

use slab::Slab;

use crate::Direction;
use crate::source::{SourceState, WaitToken, Waiter, interest};
use crate::sys::{Event, Events, PollMode, Poller, RawSource, backend_name, borrow_raw, exceptional};

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

    /// Number of waiters (pending `poll_ready*` registrations not yet woken
    /// or withdrawn), over every source and direction. O(sources): meant for
    /// diagnostics, not for a hot path.
    pub fn waiters(&self) -> usize {
        self.sources
            .borrow()
            .iter()
            .map(|(_, s)| s.reader.len() + s.writer.len())
            .sum()
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

impl Drop for Reactor {
    fn drop(&mut self) {
        let keys: Vec<usize> = self.sources.borrow().iter().map(|(k, _)| k).collect();
        for k in keys {
            let _ = self.deregister(k);
        }
    }
}
