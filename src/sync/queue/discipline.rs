//! Queue disciplines: FIFO, LIFO and priority order (sealed).

use std::cmp::Reverse;
use std::collections::{BinaryHeap, VecDeque};

/// Marker for [`Queue`](super::Queue)'s first-in, first-out order.
#[derive(Debug)]
pub enum Fifo {}

/// Marker for [`LifoQueue`](super::LifoQueue)'s last-in, first-out order.
#[derive(Debug)]
pub enum Lifo {}

/// Marker for [`PriorityQueue`](super::PriorityQueue)'s smallest-first order.
#[derive(Debug)]
pub enum Priority {}

pub(super) mod sealed {
    use std::cmp::{Ordering, Reverse};
    use std::collections::BinaryHeap;

    /// How a discipline stores its items. Not nameable outside the crate.
    pub trait Store<T> {
        /// The buffer type.
        type Buf;
        /// asyncio's class name, for `Debug`.
        const NAME: &'static str;
        fn new_buf() -> Self::Buf;
        fn push(buf: &mut Self::Buf, item: T);
        fn pop(buf: &mut Self::Buf) -> Option<T>;
        fn len(buf: &Self::Buf) -> usize;
    }

    /// A heap entry: ordered by item, then by put order (so ties are FIFO).
    pub struct PriorityEntry<T> {
        pub(crate) item: T,
        pub(crate) seq: u64,
    }

    impl<T: Ord> PartialEq for PriorityEntry<T> {
        fn eq(&self, other: &Self) -> bool {
            self.cmp(other) == Ordering::Equal
        }
    }
    impl<T: Ord> Eq for PriorityEntry<T> {}
    impl<T: Ord> PartialOrd for PriorityEntry<T> {
        fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
            Some(self.cmp(other))
        }
    }
    impl<T: Ord> Ord for PriorityEntry<T> {
        fn cmp(&self, other: &Self) -> Ordering {
            self.item.cmp(&other.item).then(self.seq.cmp(&other.seq))
        }
    }

    /// [`PriorityQueue`](crate::sync::PriorityQueue)'s buffer: a min-heap plus the next sequence number.
    pub struct PriorityBuf<T> {
        pub(crate) heap: BinaryHeap<Reverse<PriorityEntry<T>>>,
        pub(crate) next_seq: u64,
    }
}

/// The order in which a [`GenericQueue`](super::GenericQueue) hands out its items: [`Fifo`],
/// [`Lifo`] or [`Priority`]. Sealed: it cannot be implemented outside
/// ringloop.
pub trait Discipline<T>: sealed::Store<T> {}

impl<T> sealed::Store<T> for Fifo {
    type Buf = VecDeque<T>;
    const NAME: &'static str = "Queue";
    fn new_buf() -> VecDeque<T> {
        VecDeque::new()
    }
    fn push(buf: &mut VecDeque<T>, item: T) {
        buf.push_back(item);
    }
    fn pop(buf: &mut VecDeque<T>) -> Option<T> {
        buf.pop_front()
    }
    fn len(buf: &VecDeque<T>) -> usize {
        buf.len()
    }
}
impl<T> Discipline<T> for Fifo {}

impl<T> sealed::Store<T> for Lifo {
    type Buf = Vec<T>;
    const NAME: &'static str = "LifoQueue";
    fn new_buf() -> Vec<T> {
        Vec::new()
    }
    fn push(buf: &mut Vec<T>, item: T) {
        buf.push(item);
    }
    fn pop(buf: &mut Vec<T>) -> Option<T> {
        buf.pop()
    }
    fn len(buf: &Vec<T>) -> usize {
        buf.len()
    }
}
impl<T> Discipline<T> for Lifo {}

impl<T: Ord> sealed::Store<T> for Priority {
    type Buf = sealed::PriorityBuf<T>;
    const NAME: &'static str = "PriorityQueue";
    fn new_buf() -> sealed::PriorityBuf<T> {
        sealed::PriorityBuf {
            heap: BinaryHeap::new(),
            next_seq: 0,
        }
    }
    fn push(buf: &mut sealed::PriorityBuf<T>, item: T) {
        let seq = buf.next_seq;
        buf.next_seq = seq.wrapping_add(1);
        buf.heap.push(Reverse(sealed::PriorityEntry { item, seq }));
    }
    fn pop(buf: &mut sealed::PriorityBuf<T>) -> Option<T> {
        buf.heap.pop().map(|Reverse(entry)| entry.item)
    }
    fn len(buf: &sealed::PriorityBuf<T>) -> usize {
        buf.heap.len()
    }
}
impl<T: Ord> Discipline<T> for Priority {}
