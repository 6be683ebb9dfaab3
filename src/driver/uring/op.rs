//! Operation slots and the futures that own an operation's resources.
//!
//! An operation is an SQE built from the stable addresses of its resources
//! (buffers, timespecs, fds, ...) plus the resources themselves. The future
//! ([`Op`] for one result, [`MultiOp`] for a stream of them) keeps the
//! resources while the operation is in flight and hands them back with the
//! result. If the future is dropped first, the resources move (boxed, the
//! only allocation on that path) into the slot's `Ignored` state, an
//! AsyncCancel is queued, and they are dropped when the operation's final
//! CQE (the first one without `IORING_CQE_F_MORE`) is reaped.
//!
//! Slot states:
//!
//! ```text
//! Submitted ──poll──> Waiting(waker) ──CQE──> Completed(res, flags, off) ──poll──> (freed)
//!     │  └──────────────CQE─────────────────────────┘
//!     ├── CQE with F_MORE ──> Streaming(queue) ── final CQE ──> finished ──> (freed)
//!     ├── future dropped ──> Ignored(resources) ── final CQE ──> (freed, resources dropped)
//!     └── Op::linger ──> Lingering(state) ── CQE ──> step: next SQE (same key) | done ──> (freed)
//! ```
//!
//! `Lingering` is for writes that the API already reported as accepted
//! (the `futures-io` write-behind buffer): instead of being cancelled when
//! their owner goes away, they run to the end in the driver (resubmitting
//! the rest after short sends) until a deadline, and the driver's teardown
//! waits for them.

use std::any::Any;
use std::collections::VecDeque;
use std::future::Future;
use std::io;
use std::mem;
use std::pin::Pin;
use std::rc::Rc;
use std::task::{Context, Poll};

use crate::task::WakeHandle;
use std::time::Instant;

use io_uring::{cqueue, opcode, squeue};
use slab::Slab;

use super::Inner;

/// Called, under the driver's borrow, for every CQE of an operation whose
/// result will never be collected (future dropped, or completed and then
/// dropped unpolled): e.g. closes an fd an accept produced late. Must not
/// touch the driver.
pub(crate) type OrphanFn = fn(res: i32, flags: u32);

/// State of one operation slot.
pub(crate) enum Lifecycle {
    /// In flight; the future has not registered a waker yet.
    Submitted,
    /// In flight; wake this on the next CQE.
    Waiting(WakeHandle),
    /// The operation's only CQE arrived: `(res, flags, off)`, `off` being
    /// where the bytes start in the pool buffer the flags name (0 unless
    /// the pool is consumed incrementally; see `pool.rs`).
    Completed(i32, u32, u32),
    /// CQEs with `IORING_CQE_F_MORE` arrived (multishot operations, or the
    /// two-CQE zero-copy sends); boxed to keep the common slot small.
    Streaming(Box<Stream>),
    /// The future was dropped while the kernel may still use the resources;
    /// an AsyncCancel was queued. Freed on the final CQE.
    Ignored {
        resources: Box<dyn Any>,
        orphan: Option<OrphanFn>,
    },
    /// The owner handed the operation to the driver to finish
    /// ([`Op::linger`]); boxed to keep the common slot small.
    Lingering(Box<Linger>),
}

/// A dropped operation the driver finishes on its own: each CQE goes to
/// `step`, which returns the next SQE (pointing into the state it owns) or
/// `None` when done; the state is dropped then.
pub(crate) struct Linger {
    step: Box<dyn FnMut(i32) -> Option<squeue::Entry>>,
    /// After this the operation is cancelled and not continued.
    pub(super) deadline: Instant,
    /// An AsyncCancel was queued (deadline passed): do not continue.
    pub(super) cancelled: bool,
}

/// Completions of a multi-CQE operation not yet taken by its future.
pub(crate) struct Stream {
    /// `(res, flags, off)` per CQE, as in [`Lifecycle::Completed`].
    queue: CqeQueue,
    waker: Option<WakeHandle>,
    /// The final CQE (without `F_MORE`) is in `queue` (or was taken).
    finished: bool,
    /// An AsyncCancel was queued because the queue reached
    /// [`STREAM_QUEUE_LIMIT`].
    cancel_sent: bool,
}

/// The CQEs a stream holds, oldest first. The first is kept inline: a
/// stream's owner usually takes each result before the next arrives, and
/// then neither the driver's push nor the owner's pop touches the heap
/// (one cache line less per result on each side, for a connection's state
/// that is cold by the time its CQE comes).
struct CqeQueue {
    first: Option<(i32, u32, u32)>,
    rest: VecDeque<(i32, u32, u32)>,
}

impl CqeQueue {
    fn one(cqe: (i32, u32, u32)) -> CqeQueue {
        CqeQueue {
            first: Some(cqe),
            rest: VecDeque::new(),
        }
    }

    fn push_back(&mut self, cqe: (i32, u32, u32)) {
        if self.first.is_none() {
            // `rest` is empty whenever `first` is (`pop_front` refills it).
            self.first = Some(cqe);
        } else {
            self.rest.push_back(cqe);
        }
    }

    fn pop_front(&mut self) -> Option<(i32, u32, u32)> {
        let cqe = self.first.take()?;
        self.first = self.rest.pop_front();
        Some(cqe)
    }

    fn front(&self) -> Option<&(i32, u32, u32)> {
        self.first.as_ref()
    }

    fn back(&self) -> Option<&(i32, u32, u32)> {
        self.rest.back().or(self.first.as_ref())
    }

    fn len(&self) -> usize {
        usize::from(self.first.is_some()) + self.rest.len()
    }

    fn is_empty(&self) -> bool {
        self.first.is_none()
    }

    fn iter(&self) -> impl Iterator<Item = &(i32, u32, u32)> {
        self.first.iter().chain(self.rest.iter())
    }
}

/// Completions a multishot operation may queue before its future takes
/// them: at this many the driver cancels the operation (the queued results
/// and those already on their way are still delivered; the final CQE ends
/// it and its owner re-arms it once it has caught up). This bounds the
/// memory (and, for accepts, the fds) a stalled consumer holds; the kernel's
/// own queues (listen backlog, socket buffer) take the rest.
pub(crate) const STREAM_QUEUE_LIMIT: usize = 256;

/// Maps a CQE result to `io::Result`.
fn cvt(res: i32) -> io::Result<u32> {
    if res < 0 {
        Err(io::Error::from_raw_os_error(-res))
    } else {
        Ok(res as u32)
    }
}

/// Records one CQE for operation `key`. Wakers to wake and resources to drop
/// are pushed to `to_wake` / `graveyard`, handled after the borrow ends; the
/// next SQE of a lingering operation goes to `resubmit` (its user_data set).
pub(super) fn dispatch(
    slots: &mut Slab<Lifecycle>,
    to_wake: &mut Vec<WakeHandle>,
    graveyard: &mut Vec<Box<dyn Any>>,
    resubmit: &mut Vec<squeue::Entry>,
    pools: &super::ring::Pools,
    (key, res, flags): (usize, i32, u32),
) {
    let more = cqueue::more(flags);
    // Pool buffer bookkeeping happens here, in CQE order (see `pool.rs`).
    let off = pools.hold(res, flags);
    let Some(slot) = slots.get_mut(key) else {
        // Nobody can take this result: its pool buffer (if any) goes back
        // rather than staying held forever.
        pools.release(flags);
        debug_assert!(false, "io_uring CQE for unknown slot {key}");
        return;
    };
    match slot {
        Lifecycle::Submitted | Lifecycle::Waiting(_) => {
            let next = if more {
                Lifecycle::Streaming(Box::new(Stream {
                    queue: CqeQueue::one((res, flags, off)),
                    waker: None,
                    finished: false,
                    cancel_sent: false,
                }))
            } else {
                Lifecycle::Completed(res, flags, off)
            };
            if let Lifecycle::Waiting(waker) = mem::replace(slot, next) {
                to_wake.push(waker);
            }
        }
        Lifecycle::Streaming(stream) => {
            stream.queue.push_back((res, flags, off));
            stream.finished = !more;
            if more && !stream.cancel_sent && stream.queue.len() >= STREAM_QUEUE_LIMIT {
                stream.cancel_sent = true;
                resubmit.push(opcode::AsyncCancel::new(key as u64).build().user_data(super::CANCEL_UD));
            }
            if let Some(waker) = stream.waker.take() {
                to_wake.push(waker);
            }
        }
        Lifecycle::Ignored { orphan, .. } => {
            if let Some(orphan) = orphan {
                orphan(res, flags);
            }
            // A pool buffer picked for a result nobody collects goes back.
            pools.release(flags);
            if !more && let Lifecycle::Ignored { resources, .. } = slots.remove(key) {
                graveyard.push(resources);
            }
        }
        Lifecycle::Lingering(linger) => {
            if more {
                return;
            }
            let next = if linger.cancelled || Instant::now() >= linger.deadline {
                None
            } else {
                (linger.step)(res)
            };
            match next {
                Some(entry) => resubmit.push(entry.user_data(key as u64)),
                None => {
                    if let Lifecycle::Lingering(linger) = slots.remove(key) {
                        graveyard.push(linger);
                    }
                }
            }
        }
        Lifecycle::Completed(..) => {
            // As for an unknown slot: nobody takes this result.
            pools.release(flags);
            debug_assert!(false, "io_uring CQE after the final one for slot {key}");
        }
    }
}

/// Stores whom `cx` wakes in `slot`, returning what it replaces (to be
/// dropped after the driver's borrow ends: a task reference may be the
/// task's last, and dropping it runs user code).
fn register(slot: &mut Option<WakeHandle>, cx: &Context<'_>, driver: &super::Inner) -> Option<WakeHandle> {
    match slot {
        Some(waker) if waker.will_wake(cx.waker()) => None,
        _ => slot.replace(driver.waiter(cx)),
    }
}

/// What `Op` and `MultiOp` share: the slot key, the resources, and the
/// cancel-on-drop logic.
pub(super) struct RawOp<T: 'static> {
    pub(super) driver: Rc<Inner>,
    pub(super) key: usize,
    /// The slot is still allocated (false once the final result was taken).
    pub(super) live: bool,
    /// `Some` while live; the kernel may access memory they own.
    pub(super) resources: Option<T>,
    pub(super) orphan: Option<OrphanFn>,
}

impl<T: 'static> Drop for RawOp<T> {
    fn drop(&mut self) {
        if !self.live {
            return;
        }
        self.live = false;
        let resources = self.resources.take();
        let Ok(mut core) = self.driver.core.try_borrow_mut() else {
            // Not reachable: the driver never drops operations while it is
            // borrowed. Were it reached, the kernel might still use the
            // resources, so leaking them is the only sound choice.
            mem::forget(resources);
            return;
        };
        let Some(slot) = core.slots.get_mut(self.key) else {
            // Not reachable either (a live op's slot is removed only by the op
            // itself). Were it reached, nothing says the kernel is done with
            // the resources: leak them, as above, before reporting it.
            mem::forget(resources);
            debug_assert!(false, "live op without a slot");
            return;
        };
        let done = match slot {
            Lifecycle::Completed(..) => true,
            Lifecycle::Streaming(stream) => stream.finished,
            _ => false,
        };
        let old = if done {
            core.slots.remove(self.key)
        } else {
            let old = mem::replace(
                slot,
                Lifecycle::Ignored {
                    resources: Box::new(resources),
                    orphan: self.orphan,
                },
            );
            core.push_cancel(self.key as u64);
            old
        };
        // Pool buffers picked for results that will never be collected.
        match &old {
            Lifecycle::Completed(_, flags, _) => core.pools.release(*flags),
            Lifecycle::Streaming(stream) => {
                for &(_, flags, _) in stream.queue.iter() {
                    core.pools.release(flags);
                }
            }
            _ => {}
        }
        drop(core);
        // Results that arrived but will never be collected.
        if let Some(orphan) = self.orphan {
            match &old {
                Lifecycle::Completed(res, flags, _) => orphan(*res, *flags),
                Lifecycle::Streaming(stream) => {
                    for &(res, flags, _) in stream.queue.iter() {
                        orphan(res, flags);
                    }
                }
                _ => {}
            }
        }
        // The old waker, and (if the operation had finished) the resources,
        // are dropped here, outside the borrow.
    }
}

/// A submitted single-result operation; resolves to `(result, resources)`.
///
/// The result is that of the operation's first CQE; the future resolves when
/// its final CQE has arrived (the same one for ordinary operations). Dropping
/// it before then cancels the operation and parks the resources in the
/// driver until the kernel is done with them.
#[must_use = "dropping an Op cancels the operation"]
pub(crate) struct Op<T: 'static> {
    pub(super) raw: RawOp<T>,
}

// `Op` never pins its resources: the kernel only sees heap addresses inside
// them, which do not move with the `Op`.
impl<T: 'static> Unpin for Op<T> {}

impl<T: 'static> Op<T> {
    /// Hands the operation to the driver to finish instead of cancelling
    /// it: the resources become `init(resources)`, and every completion
    /// (including one that already arrived) goes to `step`, which returns
    /// the next SQE or `None` when the work is done. After `deadline` the
    /// operation is cancelled and not continued. The driver's teardown waits
    /// for lingering operations (until their deadlines) before cancelling
    /// the rest.
    ///
    /// # Safety
    ///
    /// Every SQE `step` returns must satisfy [`UringDriver::submit`](super::UringDriver::submit)'s
    /// contract with the state `S` as the resources (pointers into its heap
    /// memory only, valid until the next completion).
    pub(crate) unsafe fn linger<S: 'static>(
        mut self,
        deadline: Instant,
        init: impl FnOnce(T) -> S,
        step: fn(&mut S, i32) -> Option<squeue::Entry>,
    ) {
        let raw = &mut self.raw;
        if !raw.live {
            return;
        }
        let Ok(mut core) = raw.driver.core.try_borrow_mut() else {
            // Not reachable (ops are never dropped under the driver's
            // borrow); cancel as an ordinary drop does.
            return;
        };
        let key = raw.key;
        let done = match &core.slots[key] {
            Lifecycle::Completed(res, ..) => Some(*res),
            Lifecycle::Submitted | Lifecycle::Waiting(_) => None,
            // Multishot or already finished: an ordinary drop handles it.
            _ => return,
        };
        raw.live = false;
        let mut state = init(raw.resources.take().expect("a live Op owns its resources"));
        let first = match done {
            Some(res) => match step(&mut state, res) {
                Some(entry) => Some(entry),
                None => {
                    let old = core.slots.remove(key);
                    drop(core);
                    drop(old);
                    return;
                }
            },
            None => None,
        };
        let linger = Linger {
            step: Box::new(move |res| step(&mut state, res)),
            deadline,
            cancelled: false,
        };
        let old = mem::replace(&mut core.slots[key], Lifecycle::Lingering(Box::new(linger)));
        core.note_linger(deadline);
        if let Some(entry) = first {
            // The state the entry points into is now owned by the slot until
            // the final CQE.
            // SAFETY: the entry satisfies `submit`'s contract (this function's).
            unsafe { core.push(entry.user_data(key as u64)) };
        }
        drop(core);
        // The waker of a `Waiting` slot, dropped outside the borrow.
        drop(old);
    }

    /// Like `poll`, also returning the CQE flags (buffer ids, socket state).
    ///
    /// # Panics
    ///
    /// If polled again after it returned `Ready`.
    pub(crate) fn poll_with_flags(&mut self, cx: &mut Context<'_>) -> Poll<(io::Result<u32>, u32, T)> {
        let raw = &mut self.raw;
        assert!(raw.live, "io_uring Op polled after completion");
        let mut core = raw.driver.core.borrow_mut();
        let slot = &mut core.slots[raw.key];
        let (res, flags) = match slot {
            Lifecycle::Completed(res, flags, _) => (*res, *flags),
            Lifecycle::Streaming(stream) if stream.finished => {
                let &(res, mut flags, _) = stream.queue.front().expect("finished stream has its CQEs");
                // A zero-copy send's final CQE is its notification; when
                // that reports a copy, the result's flags say so with
                // F_NOTIF (which a result CQE never carries itself).
                if let Some(&(usage, last, _)) = stream.queue.back()
                    && cqueue::notif(last)
                    && usage & super::setup::ZC_COPIED != 0
                {
                    flags |= last;
                }
                (res, flags)
            }
            Lifecycle::Streaming(stream) => {
                let old = register(&mut stream.waker, cx, &raw.driver);
                drop(core);
                drop(old);
                return Poll::Pending;
            }
            Lifecycle::Submitted => {
                *slot = Lifecycle::Waiting(raw.driver.waiter(cx));
                return Poll::Pending;
            }
            Lifecycle::Waiting(waker) => {
                if waker.will_wake(cx.waker()) {
                    return Poll::Pending;
                }
                let old = mem::replace(waker, raw.driver.waiter(cx));
                drop(core);
                drop(old);
                return Poll::Pending;
            }
            Lifecycle::Ignored { .. } | Lifecycle::Lingering(_) => {
                unreachable!("a live Op's slot is never Ignored or Lingering")
            }
        };
        let old = core.slots.remove(raw.key);
        drop(core);
        drop(old);
        raw.live = false;
        let resources = raw.resources.take().expect("a live Op owns its resources");
        Poll::Ready((cvt(res), flags, resources))
    }
}

impl<T: 'static> Future for Op<T> {
    type Output = (io::Result<u32>, T);

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        self.get_mut()
            .poll_with_flags(cx)
            .map(|(res, _flags, resources)| (res, resources))
    }
}

/// A submitted multishot operation: a stream of `(result, flags)`, one per
/// CQE, ending after the CQE without `IORING_CQE_F_MORE`. Dropping it before
/// the end cancels the operation.
#[must_use = "dropping a MultiOp cancels the operation"]
pub(crate) struct MultiOp<T: 'static> {
    pub(super) raw: RawOp<T>,
}

impl<T: 'static> Unpin for MultiOp<T> {}

impl<T: 'static> MultiOp<T> {
    /// The next completion, `(result, flags, offset in the pool buffer the
    /// flags name)`, or `None` once the final one has been taken.
    pub(crate) fn poll_next_cqe(&mut self, cx: &mut Context<'_>) -> Poll<Option<(io::Result<u32>, u32, u32)>> {
        let raw = &mut self.raw;
        if !raw.live {
            return Poll::Ready(None);
        }
        let mut core = raw.driver.core.borrow_mut();
        let slot = &mut core.slots[raw.key];
        let (res, flags, off, last) = match slot {
            Lifecycle::Completed(res, flags, off) => (*res, *flags, *off, true),
            Lifecycle::Streaming(stream) => match stream.queue.pop_front() {
                Some((res, flags, off)) => (res, flags, off, stream.finished && stream.queue.is_empty()),
                None => {
                    let old = register(&mut stream.waker, cx, &raw.driver);
                    drop(core);
                    drop(old);
                    return Poll::Pending;
                }
            },
            Lifecycle::Submitted => {
                *slot = Lifecycle::Waiting(raw.driver.waiter(cx));
                return Poll::Pending;
            }
            Lifecycle::Waiting(waker) => {
                if waker.will_wake(cx.waker()) {
                    return Poll::Pending;
                }
                let old = mem::replace(waker, raw.driver.waiter(cx));
                drop(core);
                drop(old);
                return Poll::Pending;
            }
            Lifecycle::Ignored { .. } | Lifecycle::Lingering(_) => {
                unreachable!("a live MultiOp's slot is never Ignored or Lingering")
            }
        };
        if last {
            let old = core.slots.remove(raw.key);
            drop(core);
            drop(old);
            raw.live = false;
        }
        Poll::Ready(Some((cvt(res), flags, off)))
    }

    #[cfg(test)]
    /// Whether the final completion has been taken.
    pub(crate) fn is_finished(&self) -> bool {
        !self.raw.live
    }

    #[cfg(test)]
    /// The resources, once the final completion has been taken.
    pub(crate) fn take_resources(&mut self) -> Option<T> {
        if self.raw.live { None } else { self.raw.resources.take() }
    }
}

impl<T: 'static> futures_core::Stream for MultiOp<T> {
    type Item = (io::Result<u32>, u32);

    fn poll_next(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        self.get_mut()
            .poll_next_cqe(cx)
            .map(|next| next.map(|(res, flags, _off)| (res, flags)))
    }
}

#[cfg(test)]
mod tests {
    use super::CqeQueue;

    #[test]
    fn cqe_queue_keeps_arrival_order_across_its_inline_slot() {
        let mut q = CqeQueue::one((1, 0, 0));
        assert_eq!((q.len(), q.is_empty()), (1, false));
        q.push_back((2, 0, 0));
        q.push_back((3, 0, 0));
        assert_eq!(q.iter().map(|c| c.0).collect::<Vec<_>>(), [1, 2, 3]);
        assert_eq!(q.front(), Some(&(1, 0, 0)));
        assert_eq!(q.pop_front(), Some((1, 0, 0)));
        q.push_back((4, 0, 0));
        assert_eq!(q.len(), 3);
        let mut order = Vec::new();
        while let Some(c) = q.pop_front() {
            order.push(c.0);
            if c.0 == 2 {
                // Emptied down to the inline slot, then refilled.
                q.push_back((5, 0, 0));
            }
        }
        assert_eq!(order, [2, 3, 4, 5]);
        assert!(q.is_empty() && q.front().is_none() && q.pop_front().is_none());
        q.push_back((6, 0, 0));
        assert_eq!((q.len(), q.pop_front()), (1, Some((6, 0, 0))));
    }
}
