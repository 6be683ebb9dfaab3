//! Per-source state: the waiters of each direction and, in edge mode, the
//! cached readiness.

use std::task::Waker;

use slab::Slab;

use crate::Direction;
use crate::sys::{Event, RawSource};

/// One task waiting for one direction of a source.
pub(crate) struct Waiter {
    /// Unique per reactor, so a stale [`WaitToken`] never matches a reused slot.
    pub(crate) id: u64,
    pub(crate) waker: Waker,
}

/// Identifies a waiter registered by [`Reactor::poll_ready_tracked`](crate::Reactor::poll_ready_tracked), so
/// its owner can refresh the waker or withdraw it ([`Reactor::cancel_wait`](crate::Reactor::cancel_wait)).
/// Once the waiter has been woken the token is stale, and using it is
/// harmless.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct WaitToken {
    pub(crate) slot: usize,
    pub(crate) id: u64,
}

pub(crate) struct SourceState {
    pub(crate) raw: RawSource,
    /// Every waiter of a direction is woken when it becomes ready (several
    /// tasks may wait on one socket, e.g. two accepts on one listener).
    pub(crate) reader: Slab<Waiter>,
    pub(crate) writer: Slab<Waiter>,
    /// Edge mode: the direction may be ready. Set at registration and by
    /// every event reporting the direction; cleared only by the owner
    /// (`clear_ready` after `EAGAIN`, `note_short_read`, or consumed by a
    /// `poll_ready*` that returns `Ready`). Invariant: while set, the
    /// direction has no waiters (`wait` sets it and wakes them together;
    /// waiters are only added while it is clear).
    pub(crate) read_ready: bool,
    pub(crate) write_ready: bool,
    /// Edge mode: an event reported a hang-up, an error or urgent data
    /// ([`exceptional`](crate::sys::exceptional)); from then on a short read proves nothing.
    pub(crate) short_reads_inconclusive: bool,
}

impl SourceState {
    pub(crate) fn waiters(&mut self, dir: Direction) -> &mut Slab<Waiter> {
        match dir {
            Direction::Read => &mut self.reader,
            Direction::Write => &mut self.writer,
        }
    }

    pub(crate) fn ready_flag(&mut self, dir: Direction) -> &mut bool {
        match dir {
            Direction::Read => &mut self.read_ready,
            Direction::Write => &mut self.write_ready,
        }
    }
}

/// One-shot mode: the interest a source's waiters need.
pub(crate) fn interest(key: usize, src: &SourceState) -> Event {
    match (!src.reader.is_empty(), !src.writer.is_empty()) {
        (true, true) => Event::all(key),
        (true, false) => Event::readable(key),
        (false, true) => Event::writable(key),
        (false, false) => Event::none(key),
    }
}
