//! The task allocation: layout, state word, waker vtable, reference counts.
//! This module (with its submodules `waker` and `refs`) is the only one of
//! `task/` with `unsafe` code.
//!
//! A task is **one** heap allocation, a `repr(C)` [`TaskCell<F, T>`]:
//!
//! | part     | who touches it            | contents                                          |
//! |----------|---------------------------|---------------------------------------------------|
//! | `Header` | any thread (wakers)       | state word, vtable, schedule hook, slab key, id   |
//! | `Local`  | the loop thread only      | local reference count, future-slot guard, core    |
//! | `future` | the loop thread only      | `Option<F>`, pinned in place, dropped in place    |
//! | `output` | the loop thread only      | `Option<Result<T, TaskError>>`                    |
//!
//! `Header` and `Local` do not depend on `F` or `T`, so a type-erased pointer
//! (`NonNull<Header>`) reaches them at fixed offsets; the typed operations
//! on the future and the output go through the per-`(F, T)` [`Vtable`].
//!
//! # Two reference counts
//!
//! * **Local references** ([`RawRef`]: the loop's slab entry, `Task`,
//!   `TaskRef`, the reference a step holds) are `!Send` and counted in a
//!   plain `Cell`. Together they own **one** reference of the atomic count.
//! * **Wakers** may be cloned, woken and dropped on any thread; each owns one
//!   reference of the atomic count in the state word.
//!
//! When the local count drops to zero (necessarily on the loop thread),
//! everything that is not `Send` is dropped right there: the future (if it
//! still exists), the output, and the core (callbacks, listeners, name, the
//! loop hook). Then the local group's atomic reference is released. The
//! memory is freed when the atomic count reaches zero, possibly on another
//! thread by the last waker: by then only the header's `Send + Sync`
//! schedule hook is left to drop. A waker therefore never keeps `!Send`
//! data alive, and never outlives the memory it points to.

use std::any::Any;
use std::cell::{Cell, UnsafeCell};
use std::future::Future;
use std::mem::ManuallyDrop;
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::pin::Pin;
use std::ptr::NonNull;
use std::rc::{Rc, Weak};
use std::sync::Arc;
use std::sync::atomic::AtomicUsize;
use std::task::{Context, Poll};

use super::{LoopHooks, Schedule, TaskCore, TaskError};

/// State bit: the task sits in a ready queue (the loop's, or the
/// cross-thread one); further wakes are no-ops until the loop clears the bit
/// at the start of the task's step.
const SCHEDULED: usize = 1 << 0;

/// State bit: the task finished (or was cancelled or discarded). Never
/// cleared: wakes from stale wakers are no-ops from then on.
const DONE: usize = 1 << 1;

/// State bit: the task owns one strong count of its schedule hook's `Arc`
/// (taken when its first owned waker is made, released with the
/// allocation). Until then the hook is kept alive by the loop.
const SCHED_REF: usize = 1 << 2;

/// One reference in the state word: the atomic reference count is the state
/// divided by this (the bits above the flags).
const REF_ONE: usize = 1 << 3;

/// The flag bits of the state word (below the reference count).
const FLAGS: usize = REF_ONE - 1;

/// A panic payload caught while polling or dropping user code.
pub(crate) type Panic = Box<dyn Any + Send + 'static>;

/// The outcome of one poll: `Ready(Ok)` stored the output, `Ready(Err)`
/// is the panic the future raised.
pub(crate) type StepResult = Poll<Result<(), Panic>>;

/// The thread-safe part of a task, at offset 0 of the allocation.
#[repr(C)]
struct Header {
    /// Flags (`SCHEDULED`, `DONE`) and the atomic reference count.
    state: AtomicUsize,
    vtable: &'static Vtable,
    /// Where wake-ups go (the loop's cross-thread state); `Send + Sync`.
    /// Points into the `Arc` of the loop's [`SchedHook`]; valid while that
    /// hook lives (see `Local::hook`) and, once `SCHED_REF` is set, as long
    /// as this allocation.
    sched: NonNull<dyn Schedule>,
    key: usize,
    id: u64,
}

/// The loop-thread part; follows the header at a fixed offset.
#[repr(C)]
struct Local {
    /// Number of live [`RawRef`]s.
    refs: Cell<u32>,
    /// True while user code runs with the future slot borrowed (a poll or
    /// an in-place drop): the slot is then off limits.
    future_busy: Cell<bool>,
    /// The loop's schedule hook: while it lives, `Header::sched` is valid.
    hook: ManuallyDrop<Weak<SchedHook>>,
    core: ManuallyDrop<TaskCore>,
}

/// The non-generic prefix of every task allocation.
#[repr(C)]
struct Prefix {
    header: Header,
    local: Local,
}

/// The whole allocation.
#[repr(C)]
struct TaskCell<F, T> {
    prefix: Prefix,
    future: UnsafeCell<Option<F>>,
    output: UnsafeCell<Option<Result<T, TaskError>>>,
}

/// What the stored output is, without its type.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub(crate) enum OutputKind {
    /// No output (pending, or already taken).
    Empty,
    Value,
    Cancelled,
    Panicked,
    /// Another `TaskError` (`AlreadyRetrieved`, `ForeignLoop`).
    OtherError,
}

/// Outcome of [`RawRef::drop_future`].
pub(crate) enum DropFuture {
    /// The future was dropped in place (`Err`: its destructor panicked).
    Dropped(Result<(), Panic>),
    /// There was no future (finished or dropped before).
    Absent,
    /// The task's own step (or the future's own drop) is running: the slot
    /// cannot be touched now.
    Busy,
}

/// The typed operations of one `TaskCell<F, T>`.
struct Vtable {
    poll: unsafe fn(NonNull<Header>, &mut Context<'_>) -> StepResult,
    drop_future: unsafe fn(NonNull<Header>) -> DropFuture,
    set_error: unsafe fn(NonNull<Header>, TaskError) -> Result<(), Panic>,
    output_kind: unsafe fn(NonNull<Header>) -> OutputKind,
    panic_text: unsafe fn(NonNull<Header>) -> Option<String>,
    /// Writes `Option<Result<T, TaskError>>` (taken from the slot) to the
    /// pointer, which must be valid for such a write.
    take_output: unsafe fn(NonNull<Header>, *mut ()),
    drop_local: unsafe fn(NonNull<Header>),
    dealloc: unsafe fn(NonNull<Header>),
}

/// A loop's schedule hook, shared by its tasks. The loop keeps it in an
/// `Rc`; tasks keep a `Weak` (no atomic operation per spawn) and a raw
/// pointer to the `Arc`'s contents for their wakers, which take a strong
/// count of the `Arc` only once a waker leaves the task's step.
pub(crate) struct SchedHook {
    /// Never replaced: its contents stay put while the hook lives.
    sched: Arc<dyn Schedule>,
    /// The loop's thread-side hooks, for every task of the loop (one
    /// `Weak` here instead of one per task).
    lp: Weak<dyn LoopHooks>,
}

impl SchedHook {
    pub(crate) fn new(sched: Arc<dyn Schedule>, lp: Weak<dyn LoopHooks>) -> Rc<SchedHook> {
        Rc::new(SchedHook { sched, lp })
    }
}

/// What a new task is given by whoever spawns it.
pub(crate) struct Init<'a> {
    pub(crate) key: usize,
    pub(crate) id: u64,
    pub(crate) hook: &'a Rc<SchedHook>,
    pub(crate) context: crate::context::Ctx,
    pub(crate) spawned_at: &'static std::panic::Location<'static>,
}

impl<F, T> TaskCell<F, T>
where
    F: Future<Output = Result<T, TaskError>> + 'static,
    T: 'static,
{
    const VTABLE: Vtable = Vtable {
        poll: Self::poll,
        drop_future: Self::drop_future,
        set_error: Self::set_error,
        output_kind: Self::output_kind,
        panic_text: Self::panic_text,
        take_output: Self::take_output,
        drop_local: Self::drop_local,
        dealloc: Self::dealloc,
    };

    /// # Safety (every function below)
    ///
    /// `ptr` points to a live `TaskCell<F, T>` (it came from
    /// `RawRef::allocate::<F, T>`, whose vtable is this one), and the caller is on
    /// the loop thread holding a local reference (except `dealloc`, see there).
    unsafe fn cell<'a>(ptr: NonNull<Header>) -> &'a TaskCell<F, T> {
        // The pointer carries the whole allocation's provenance.
        // SAFETY: the header is at offset 0 of the `repr(C)` cell, which
        // the caller guarantees is live.
        unsafe { ptr.cast::<TaskCell<F, T>>().as_ref() }
    }

    unsafe fn poll(ptr: NonNull<Header>, cx: &mut Context<'_>) -> StepResult {
        // SAFETY: see `cell`.
        let cell = unsafe { Self::cell(ptr) };
        let local = &cell.prefix.local;
        if local.future_busy.get() {
            return Poll::Pending;
        }
        // SAFETY: the slot is only borrowed while `future_busy` is set (we
        // just checked it is not), and only on this thread (the cell is
        // reachable from other threads only through its header).
        let slot = unsafe { &mut *cell.future.get() };
        let Some(fut) = slot.as_mut() else {
            return Poll::Pending;
        };
        // SAFETY: the future lives inside the task allocation, which never
        // moves, and is only ever dropped in place (`drop_future`,
        // `drop_local`): it stays pinned until dropped.
        let fut = unsafe { Pin::new_unchecked(fut) };
        local.future_busy.set(true);
        let res = catch_unwind(AssertUnwindSafe(|| fut.poll(cx)));
        local.future_busy.set(false);
        match res {
            Ok(Poll::Pending) => Poll::Pending,
            Ok(Poll::Ready(v)) => {
                // SAFETY: the output slot is only borrowed briefly, without
                // running user code, on this thread.
                let old = unsafe { (*cell.output.get()).replace(v) };
                drop(old);
                Poll::Ready(Ok(()))
            }
            Err(p) => Poll::Ready(Err(p)),
        }
    }

    unsafe fn drop_future(ptr: NonNull<Header>) -> DropFuture {
        // SAFETY: see `cell`.
        let cell = unsafe { Self::cell(ptr) };
        let local = &cell.prefix.local;
        if local.future_busy.get() {
            return DropFuture::Busy;
        }
        let slot = cell.future.get();
        // SAFETY: not busy, so nobody borrows the slot; this thread only.
        let Some(fut) = (unsafe { &mut *slot }).as_mut() else {
            return DropFuture::Absent;
        };
        let fut: *mut F = fut;
        local.future_busy.set(true);
        // SAFETY: the future is dropped in place (it is pinned) exactly
        // once: whether its destructor returns or unwinds, the slot is then
        // overwritten with `None` without dropping the old value.
        let res = catch_unwind(AssertUnwindSafe(|| unsafe { std::ptr::drop_in_place(fut) }));
        // SAFETY: as just explained; `write` does not drop the old contents.
        unsafe { std::ptr::write(slot, None) };
        local.future_busy.set(false);
        DropFuture::Dropped(res)
    }

    unsafe fn set_error(ptr: NonNull<Header>, e: TaskError) -> Result<(), Panic> {
        // SAFETY: see `cell`.
        let cell = unsafe { Self::cell(ptr) };
        // SAFETY: brief borrow of the output slot, no user code meanwhile.
        let old = unsafe { (*cell.output.get()).replace(Err(e)) };
        // The old value (a cancelled task's output) is dropped outside the
        // borrow: its destructor is user code.
        catch_unwind(AssertUnwindSafe(|| drop(old)))
    }

    unsafe fn output_kind(ptr: NonNull<Header>) -> OutputKind {
        // SAFETY: see `cell`.
        let cell = unsafe { Self::cell(ptr) };
        // SAFETY: brief shared borrow, no user code meanwhile.
        match unsafe { &*cell.output.get() } {
            None => OutputKind::Empty,
            Some(Ok(_)) => OutputKind::Value,
            Some(Err(TaskError::Cancelled)) => OutputKind::Cancelled,
            Some(Err(TaskError::Panicked(_))) => OutputKind::Panicked,
            Some(Err(_)) => OutputKind::OtherError,
        }
    }

    unsafe fn panic_text(ptr: NonNull<Header>) -> Option<String> {
        // SAFETY: see `cell`.
        let cell = unsafe { Self::cell(ptr) };
        // SAFETY: brief shared borrow; downcasting runs no user code.
        match unsafe { &*cell.output.get() } {
            Some(Err(e @ TaskError::Panicked(_))) => {
                Some(e.panic_message().unwrap_or("<non-string panic payload>").to_owned())
            }
            _ => None,
        }
    }

    unsafe fn take_output(ptr: NonNull<Header>, dst: *mut ()) {
        // SAFETY: see `cell`.
        let cell = unsafe { Self::cell(ptr) };
        // SAFETY: brief borrow of the output slot, no user code meanwhile.
        let out = unsafe { (*cell.output.get()).take() };
        // SAFETY: the caller (`TypedRef<T>`, whose `T` is this `T`) passes
        // a valid, writable `Option<Result<T, TaskError>>` location.
        unsafe { dst.cast::<Option<Result<T, TaskError>>>().write(out) };
    }

    /// Drops the loop-thread contents; called once, when the local count
    /// reached zero (on the loop thread, no `RawRef` left).
    unsafe fn drop_local(ptr: NonNull<Header>) {
        // SAFETY: no local reference is left, so nothing else borrows the
        // future, the output or the core; wakers only read the header.
        unsafe {
            let cell = ptr.cast::<TaskCell<F, T>>().as_ptr();
            if !(*cell).prefix.local.future_busy.get() {
                if let Some(fut) = (*(*cell).future.get()).as_mut() {
                    let fut: *mut F = fut;
                    (*cell).prefix.local.future_busy.set(true);
                    // Dropped in place (pinned); if its destructor unwinds,
                    // the slot is not touched again and the allocation is
                    // leaked (the atomic reference below is never released).
                    std::ptr::drop_in_place(fut);
                    std::ptr::write((*cell).future.get(), None);
                    (*cell).prefix.local.future_busy.set(false);
                }
            }
            let out = (*(*cell).output.get()).take();
            drop(out);
            ManuallyDrop::drop(&mut (*cell).prefix.local.core);
            ManuallyDrop::drop(&mut (*cell).prefix.local.hook);
        }
    }

    /// Frees the allocation; called once, when the atomic count reached
    /// zero, on any thread. `drop_local` ran before (the local group held a
    /// reference), so the future and output slots are `None` and the core
    /// and the hook's `Weak` are dropped; the `SCHED_REF` count was
    /// released by `release`.
    unsafe fn dealloc(ptr: NonNull<Header>) {
        // SAFETY: the allocation came from `Box::new_uninit` of this type,
        // fully initialized; the `ManuallyDrop` parts are not dropped
        // again, the header holds no owning field, the slots hold `None`
        // (dropping them is a no-op), and nobody references the cell anymore.
        drop(unsafe { Box::from_raw(ptr.cast::<TaskCell<F, T>>().as_ptr()) });
    }
}

mod refs;
mod waker;

pub(crate) use refs::{OkWrap, RawRef, TaskBox, TypedRef};
pub(crate) use waker::Wakeup;
use waker::*;
