//! The loop clock and the timer queue: a leaf (no loop, no tasks), used by
//! `runtime` to order its timers and by `time`'s futures through it.
//!
//! One timer structure serves both backends: a binary heap ordered by
//! `(deadline, sequence)` plus a slab of live timers. Cancelling removes the
//! slab entry (O(1)); the heap entry goes stale and is skipped or purged
//! later, asyncio-style (the heap is rebuilt when more than half of more
//! than 100 entries are stale). Equal deadlines
//! fire in scheduling order. Timers never fire early: an entry is due only
//! when `deadline <= now`. What a timer does when due (its action) is the
//! caller's type.

use std::cell::Cell;
use std::cmp::Ordering;
use std::collections::BinaryHeap;
use std::time::{Duration, Instant};

use slab::Slab;

/// The loop's clock: real monotonic time, or a virtual clock for tests that
/// jumps to the next timer whenever the loop would otherwise sleep.
pub(crate) struct Clock {
    base: Instant,
    virtual_offset: Option<Cell<Duration>>,
}

impl Clock {
    pub(crate) fn new(virtual_time: bool) -> Clock {
        Clock {
            base: Instant::now(),
            virtual_offset: virtual_time.then(|| Cell::new(Duration::ZERO)),
        }
    }
    pub(crate) fn now(&self) -> Instant {
        match &self.virtual_offset {
            Some(off) => self.base + off.get(),
            None => Instant::now(),
        }
    }
    pub(crate) fn is_virtual(&self) -> bool {
        self.virtual_offset.is_some()
    }
    /// Moves a virtual clock forward to `to` (never backwards).
    pub(crate) fn advance_to(&self, to: Instant) {
        if let Some(off) = &self.virtual_offset {
            let target = to.saturating_duration_since(self.base);
            if target > off.get() {
                off.set(target);
            }
        }
    }
}

/// About 30 years: what a duration too large for an `Instant` is clamped to.
const FAR_FUTURE: Duration = Duration::from_secs(86400 * 365 * 30);

/// `t + d`, clamped to `t` + ~30 years when the sum does not fit in an
/// `Instant` (no duration ever panics; such a deadline is never reached).
pub(crate) fn add_clamped(t: Instant, d: Duration) -> Instant {
    t.checked_add(d)
        .unwrap_or_else(|| t.checked_add(FAR_FUTURE).unwrap_or(t))
}

/// Identifies one scheduled timer: its slab key and its unique sequence
/// number (so a reused key never matches a stale id). Plain integers, so
/// futures holding one stay `Send`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct TimerId {
    key: usize,
    seq: u64,
}

impl TimerId {
    /// The timer's sequence number: equal deadlines fire in this order.
    pub(crate) fn seq(self) -> u64 {
        self.seq
    }
}

struct Live<A> {
    seq: u64,
    action: A,
}

struct Entry {
    when: Instant,
    seq: u64,
    key: usize,
}

impl PartialEq for Entry {
    fn eq(&self, other: &Self) -> bool {
        self.when == other.when && self.seq == other.seq
    }
}
impl Eq for Entry {}
impl PartialOrd for Entry {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}
impl Ord for Entry {
    // Reversed: `BinaryHeap` is a max-heap, we want the earliest first.
    fn cmp(&self, other: &Self) -> Ordering {
        (other.when, other.seq).cmp(&(self.when, self.seq))
    }
}

/// Heap of deadlines + slab of live timers. A cancelled timer leaves the slab
/// at once (O(1)); its heap entry goes stale and is skipped or purged.
pub(crate) struct TimerQueue<A> {
    heap: BinaryHeap<Entry>,
    live: Slab<Live<A>>,
    seq: u64,
}

impl<A> Default for TimerQueue<A> {
    fn default() -> Self {
        TimerQueue {
            heap: BinaryHeap::new(),
            live: Slab::new(),
            seq: 0,
        }
    }
}

impl<A> TimerQueue<A> {
    /// Number of live (not cancelled, not yet due) timers.
    pub(crate) fn len(&self) -> usize {
        self.live.len()
    }

    pub(crate) fn insert(&mut self, when: Instant, action: A) -> TimerId {
        self.seq += 1;
        let seq = self.seq;
        let key = self.live.insert(Live { seq, action });
        self.heap.push(Entry { when, seq, key });
        TimerId { key, seq }
    }

    fn is_live(&self, id: TimerId) -> bool {
        self.live.get(id.key).is_some_and(|l| l.seq == id.seq)
    }

    /// Cancels a timer; returns its action (to be dropped by the caller
    /// outside any borrow). Unknown or fired ids are ignored.
    pub(crate) fn cancel(&mut self, id: TimerId) -> Option<A> {
        if self.is_live(id) {
            Some(self.live.remove(id.key).action)
        } else {
            None
        }
    }

    /// Whether the timer already fired (or was cancelled).
    pub(crate) fn is_gone(&self, id: TimerId) -> bool {
        !self.is_live(id)
    }

    /// The action of a live timer, to replace it (e.g. a newer waker).
    pub(crate) fn action_mut(&mut self, id: TimerId) -> Option<&mut A> {
        self.live
            .get_mut(id.key)
            .filter(|l| l.seq == id.seq)
            .map(|l| &mut l.action)
    }

    fn stale(&self) -> usize {
        self.heap.len() - self.live.len()
    }

    /// asyncio's purge: rebuild when mostly cancelled, else pop stale heads.
    pub(crate) fn purge(&mut self) {
        if self.heap.len() > 100 && self.stale() * 2 > self.heap.len() {
            let old = std::mem::take(&mut self.heap);
            let live = &self.live;
            self.heap = old
                .into_iter()
                .filter(|e| live.get(e.key).is_some_and(|l| l.seq == e.seq))
                .collect();
        } else {
            self.pop_stale_heads();
        }
    }

    fn pop_stale_heads(&mut self) {
        while let Some(top) = self.heap.peek() {
            if self.live.get(top.key).is_some_and(|l| l.seq == top.seq) {
                break;
            }
            self.heap.pop();
        }
    }

    pub(crate) fn next_deadline(&mut self) -> Option<Instant> {
        self.pop_stale_heads();
        self.heap.peek().map(|e| e.when)
    }

    /// Pops the earliest timer due at `now` (deadline <= now).
    pub(crate) fn pop_due(&mut self, now: Instant) -> Option<A> {
        self.pop_stale_heads();
        let top = self.heap.peek()?;
        if top.when > now {
            return None;
        }
        let e = self.heap.pop()?;
        Some(self.live.remove(e.key).action)
    }

    /// Drops every timer (loop close); the caller drops the actions.
    pub(crate) fn clear(&mut self) -> Vec<A> {
        self.heap.clear();
        self.live.drain().map(|l| l.action).collect()
    }
}
