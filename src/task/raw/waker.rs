//! The hand-written waker: its vtable and the atomic reference count.

use std::ptr::NonNull;
use std::sync::Arc;
use std::sync::atomic::{Ordering, fence};
use std::task::{RawWaker, RawWakerVTable};

use super::*;

pub(super) static WAKER_VTABLE: RawWakerVTable =
    RawWakerVTable::new(waker_clone, waker_wake, waker_wake_by_ref, waker_drop);

/// # Safety
///
/// `ptr` is a live task header (the caller owns a reference).
pub(super) unsafe fn header<'a>(ptr: *const ()) -> &'a Header {
    // SAFETY: guaranteed by the caller; wakers only ever read the header.
    unsafe { &*ptr.cast::<Header>() }
}

pub(super) unsafe fn waker_clone(ptr: *const ()) -> RawWaker {
    // SAFETY: the waker being cloned owns a reference (or is the borrowed
    // waker of a running step, which holds one).
    let h = unsafe { header(ptr) };
    let prev = acquire(h);
    if prev & SCHED_REF == 0 && h.state.fetch_or(SCHED_REF, Ordering::AcqRel) & SCHED_REF == 0 {
        // The first owned waker: from now on wakers may outlive the loop,
        // so the task takes a strong count of the hook's `Arc` (released
        // with the allocation). Only one caller gets here (`fetch_or`).
        // No owned waker existed, so this is the borrowed waker of a running
        // step (maybe used from a scoped thread), during which
        // `RawRef::poll` keeps the loop's `SchedHook`, so the `Arc`, alive.
        // SAFETY: that `Arc` is alive; `sched` is its `Arc::as_ptr`.
        unsafe { Arc::increment_strong_count(h.sched.as_ptr().cast_const()) };
    }
    RawWaker::new(ptr, &WAKER_VTABLE)
}

pub(super) unsafe fn waker_wake(ptr: *const ()) {
    // SAFETY: the waker being consumed owns a reference, released after.
    unsafe {
        waker_wake_by_ref(ptr);
        waker_drop(ptr);
    }
}

pub(super) unsafe fn waker_wake_by_ref(ptr: *const ()) {
    // An owned waker implies `SCHED_REF`; a borrowed one is only used
    // during a step, which keeps the loop's hook alive.
    // SAFETY: the waker owns a reference and the hook is alive (above).
    unsafe { wake(header(ptr)) };
}

pub(super) unsafe fn waker_drop(ptr: *const ()) {
    // SAFETY: the waker owns a reference, given up here.
    unsafe { release(NonNull::new_unchecked(ptr.cast_mut().cast::<Header>())) }
}

/// Takes one more atomic reference; returns the previous state.
pub(super) fn acquire(h: &Header) -> usize {
    let prev = h.state.fetch_add(REF_ONE, Ordering::Relaxed);
    // Like `Arc`: an absurd count means leaked wakers; abort before it wraps.
    if prev > isize::MAX as usize {
        std::process::abort();
    }
    prev
}

/// Gives up one atomic reference; the last one frees the allocation.
///
/// # Safety
///
/// The caller owns the reference and does not use `ptr` afterwards.
pub(super) unsafe fn release(ptr: NonNull<Header>) {
    // The vtable is read first: once our reference is given up, another
    // thread may free the header.
    // SAFETY: the caller's reference keeps the header alive for this access.
    let (vtable, sched, prev) = unsafe {
        let h = ptr.as_ref();
        let (vtable, sched) = (h.vtable, h.sched);
        // A count of one is the caller's own reference: nobody else can
        // take one (that needs a reference), so it is the last without a
        // locked instruction. `Acquire` orders the earlier releases of other
        // references (by other threads) before the free, as the fence does.
        let now = h.state.load(Ordering::Acquire);
        if now & !FLAGS == REF_ONE {
            (vtable, sched, now)
        } else {
            let prev = h.state.fetch_sub(REF_ONE, Ordering::Release);
            if prev & !FLAGS == REF_ONE {
                // Every other reference was released before (with `Release`).
                fence(Ordering::Acquire);
            }
            (vtable, sched, prev)
        }
    };
    if prev & !FLAGS == REF_ONE {
        if prev & SCHED_REF != 0 {
            // The count taken by the first owned waker (`waker_clone`).
            // SAFETY: given back once; `sched` is that `Arc`'s `as_ptr`.
            unsafe { Arc::decrement_strong_count(sched.as_ptr().cast_const()) };
        }
        // SAFETY: that was the last reference; nobody can reach the cell.
        unsafe { (vtable.dealloc)(ptr) }
    }
}

/// Wake: queue the task unless it is queued already or finished. Only the
/// header is read (any thread).
///
/// # Safety
///
/// The schedule hook `h.sched` points to is alive (see `Header::sched`).
pub(super) unsafe fn wake(h: &Header) {
    let prev = h.state.fetch_or(SCHEDULED, Ordering::AcqRel);
    if prev & (SCHEDULED | DONE) == 0 {
        // SAFETY: guaranteed by the caller.
        unsafe { schedule_now(h) };
    }
}

/// Queues the task on its loop (the caller just set `SCHEDULED`).
///
/// # Safety
///
/// As for [`wake`].
#[inline]
pub(super) unsafe fn schedule_now(h: &Header) {
    // SAFETY: guaranteed by the caller.
    unsafe { h.sched.as_ref() }.0.schedule(Wakeup { h });
}

/// A wake-up on its way to the task's loop ([`Schedule::schedule`]): on the
/// loop's own thread it becomes a local reference, elsewhere an owned
/// [`RemoteWake`] for the cross-thread queue.
#[derive(Clone, Copy)]
pub(crate) struct Wakeup<'a> {
    /// Alive while borrowed: the waker (or local reference) being woken
    /// holds a reference.
    h: &'a Header,
}

impl Wakeup<'_> {
    /// A reference to the task that may cross threads, for the loop's
    /// cross-thread queue (one more atomic reference).
    pub(crate) fn remote(&self) -> RemoteWake {
        acquire(self.h);
        RemoteWake {
            ptr: NonNull::from(self.h),
        }
    }

    /// A local reference to the task, for the loop's ready queue; `None`
    /// when its loop-thread contents are gone (it finished and every local
    /// reference went; a wake-up then has nothing to run).
    ///
    /// # Safety
    ///
    /// The caller runs on the thread of the task's loop (a task's local part
    /// is only ever touched there).
    pub(crate) unsafe fn local(&self) -> Option<crate::task::TaskRef> {
        // SAFETY: the header is alive (see `h`), on its loop's thread (the
        // caller's promise).
        let raw = unsafe { RawRef::local_at(NonNull::from(self.h)) }?;
        Some(crate::task::TaskRef::from_raw(raw))
    }
}

/// A task woken from another thread, queued for its loop: owns one atomic
/// reference (like a waker), so the task's memory stays until the loop
/// thread turns it into a local reference or drops it.
pub(crate) struct RemoteWake {
    ptr: NonNull<Header>,
}

// SAFETY: like a waker: off the loop thread only the header is touched (the
// reference is released; the last one frees the allocation, whose `!Send`
// contents were dropped on the loop thread before).
unsafe impl Send for RemoteWake {}

impl RemoteWake {
    /// A local reference to the task (its own reference is given up);
    /// `None` when the task's loop-thread contents are gone (it finished).
    ///
    /// # Safety
    ///
    /// The caller runs on the thread of the task's loop.
    pub(crate) unsafe fn into_local(self) -> Option<crate::task::TaskRef> {
        let me = ManuallyDrop::new(self);
        // SAFETY: our reference keeps the header alive; the caller's promise
        // puts us on its loop's thread; the reference is released once.
        unsafe {
            let raw = RawRef::local_at(me.ptr);
            release(me.ptr);
            raw.map(crate::task::TaskRef::from_raw)
        }
    }
}

impl Drop for RemoteWake {
    fn drop(&mut self) {
        // SAFETY: we own one reference, given up here.
        unsafe { release(self.ptr) }
    }
}
