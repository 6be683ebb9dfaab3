//! The task allocation: layout, state word, waker vtable, reference counts.
//! This module (with its submodules `waker` and `refs`) is the only one of
//! `task/` with `unsafe` code.
//!
//! A task is **one** heap allocation, a `repr(C)` [`TaskCell<F, T>`]:
//!
//! | part     | who touches it            | contents                                          |
//! |----------|---------------------------|---------------------------------------------------|
//! | `Header` | any thread (wakers)       | state word, vtable, schedule hook                 |
//! | `Local`  | the loop thread only      | local reference count, slab key, loop hook, core  |
//! | `stage`  | the loop thread only      | the future (pinned, dropped in place), then its output |
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

/// The outcome of one poll.
pub(crate) enum StepResult {
    /// Not finished (or nothing to poll).
    Pending,
    /// The future finished: it was dropped and its output stored. `Some`:
    /// the future's destructor panicked (the output is stored all the same).
    Ready(Option<Panic>),
    /// The future panicked while polled; it is still in its slot.
    Panicked(Panic),
}

/// The thread-safe part of a task, at offset 0 of the allocation.
#[repr(C)]
struct Header {
    /// Flags (`SCHEDULED`, `DONE`) and the atomic reference count.
    state: AtomicUsize,
    vtable: &'static Vtable,
    /// Where wake-ups go (the loop's cross-thread state); `Send + Sync`.
    /// Points into the `Arc` of the loop's [`SchedHook`]; valid while that
    /// hook lives (see `Local::hook`) and, once `SCHED_REF` is set, as long
    /// as this allocation. A thin pointer (one word of the header).
    sched: NonNull<SchedTarget>,
}

/// The loop-thread part; follows the header at a fixed offset.
#[repr(C)]
struct Local {
    /// Number of live [`RawRef`]s.
    refs: Cell<u32>,
    /// The task's key in its loop's slab.
    key: u32,
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
    stage: UnsafeCell<Stage<F, T>>,
}

/// The future, then its output, in one slot (the future is dropped before
/// the output is stored, so the two never need room at the same time).
/// Only touched while `Local::future_busy` is clear: while it is set the
/// future is borrowed (polled, or dropped in place) further up the stack.
enum Stage<F, T> {
    Running(F),
    Finished(Result<T, TaskError>),
    /// Dropped without an output yet (cancelled), or output taken.
    Empty,
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
    sched: Arc<SchedTarget>,
    /// The loop's thread-side hooks, for every task of the loop (one
    /// `Weak` here instead of one per task).
    lp: Weak<dyn LoopHooks>,
}

/// The loop's [`Schedule`] behind one more pointer, so that a task header
/// holds a thin pointer to it (one word instead of two).
struct SchedTarget(Arc<dyn Schedule>);

impl SchedHook {
    pub(crate) fn new(sched: Arc<dyn Schedule>, lp: Weak<dyn LoopHooks>) -> Rc<SchedHook> {
        Rc::new(SchedHook {
            sched: Arc::new(SchedTarget(sched)),
            lp,
        })
    }
}

/// What a new task is given by whoever spawns it.
pub(crate) struct Init<'a> {
    pub(crate) key: u32,
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

    /// The task's loop-thread part, its stage slot and the future in it;
    /// `Err(true)` while the slot is busy, `Err(false)` when it holds no
    /// future.
    unsafe fn running<'a>(ptr: NonNull<Header>) -> Result<(&'a Local, *mut Stage<F, T>, *mut F), bool> {
        // SAFETY: see `cell`.
        let cell = unsafe { Self::cell(ptr) };
        let local = &cell.prefix.local;
        if local.core.future_busy.get() {
            return Err(true);
        }
        let slot = cell.stage.get();
        // The slot is only borrowed while `future_busy` is set, and only on
        // this thread (other threads reach the cell only through its header).
        // SAFETY: not busy (checked above), so nobody else borrows the slot.
        match unsafe { &mut *slot } {
            Stage::Running(fut) => Ok((local, slot, fut)),
            _ => Err(false),
        }
    }

    unsafe fn poll(ptr: NonNull<Header>, cx: &mut Context<'_>) -> StepResult {
        // SAFETY: see `cell`.
        let Ok((local, slot, fut)) = (unsafe { Self::running(ptr) }) else {
            return StepResult::Pending;
        };
        // SAFETY: the future lives inside the task allocation, which never
        // moves, and is only ever dropped in place: pinned until dropped.
        let pinned = unsafe { Pin::new_unchecked(&mut *fut) };
        local.core.future_busy.set(true);
        let res = catch_unwind(AssertUnwindSafe(|| pinned.poll(cx)));
        let out = match res {
            Ok(Poll::Pending) => {
                local.core.future_busy.set(false);
                return StepResult::Pending;
            }
            Ok(Poll::Ready(v)) => v,
            Err(p) => {
                local.core.future_busy.set(false);
                return StepResult::Panicked(p);
            }
        };
        // The future makes room for its output.
        // SAFETY: `fut` is the running future of `slot`, not borrowed.
        let dropped = unsafe { Self::replace_future(local, slot, fut, Stage::Finished(out)) };
        StepResult::Ready(dropped.err())
    }

    /// Drops the future `fut` of `slot` in place (marked busy meanwhile, as
    /// its destructor is user code), then overwrites the slot with `next`
    /// without dropping the old contents, whether the destructor returned
    /// or unwound; `Err` is its panic.
    ///
    /// # Safety
    ///
    /// `fut` points to the `Running` future inside `slot`, which nothing
    /// else borrows; it is never used again.
    unsafe fn replace_future(
        local: &Local,
        slot: *mut Stage<F, T>,
        fut: *mut F,
        next: Stage<F, T>,
    ) -> Result<(), Panic> {
        local.core.future_busy.set(true);
        // SAFETY: dropped in place (it is pinned) exactly once: the caller
        // never uses it again and the slot is overwritten right after.
        let res = catch_unwind(AssertUnwindSafe(|| unsafe { std::ptr::drop_in_place(fut) }));
        // SAFETY: `slot` is valid (the caller's promise); `write` does not
        // drop the old contents.
        unsafe { std::ptr::write(slot, next) };
        local.core.future_busy.set(false);
        res
    }

    unsafe fn drop_future(ptr: NonNull<Header>) -> DropFuture {
        // SAFETY: see `cell`.
        let (local, slot, fut) = match unsafe { Self::running(ptr) } {
            Ok(running) => running,
            Err(true) => return DropFuture::Busy,
            Err(false) => return DropFuture::Absent,
        };
        // SAFETY: `fut` is the running future of `slot`, not borrowed.
        DropFuture::Dropped(unsafe { Self::replace_future(local, slot, fut, Stage::Empty) })
    }

    /// The stage, unless the future is borrowed (busy) further up the
    /// stack: then there is no output to look at or replace anyway.
    ///
    /// # Safety
    ///
    /// As for `cell`; the returned borrow must end before user code runs.
    unsafe fn idle_stage<'a>(ptr: NonNull<Header>) -> Option<&'a mut Stage<F, T>> {
        // SAFETY: see `cell`.
        let cell = unsafe { Self::cell(ptr) };
        // SAFETY: not busy, so nobody else borrows the slot; this thread.
        (!cell.prefix.local.core.future_busy.get()).then(|| unsafe { &mut *cell.stage.get() })
    }

    unsafe fn set_error(ptr: NonNull<Header>, e: TaskError) -> Result<(), Panic> {
        // A future still there goes first (its callers dropped it already).
        // SAFETY: see `cell`.
        let dropped = match unsafe { Self::drop_future(ptr) } {
            DropFuture::Dropped(r) => r,
            DropFuture::Absent => Ok(()),
            // Its own step runs: the slot cannot be touched now.
            DropFuture::Busy => return Ok(()),
        };
        // SAFETY: see `cell`; not busy (checked by `drop_future`).
        let old = unsafe { Self::idle_stage(ptr) }.map(|s| std::mem::replace(s, Stage::Finished(Err(e))));
        // The old value (a cancelled task's output) is dropped outside the
        // borrow: its destructor is user code.
        let old = catch_unwind(AssertUnwindSafe(|| drop(old)));
        dropped.and(old)
    }

    unsafe fn output_kind(ptr: NonNull<Header>) -> OutputKind {
        // SAFETY: see `cell`; brief borrow, no user code meanwhile.
        match unsafe { Self::idle_stage(ptr) } {
            Some(Stage::Finished(Ok(_))) => OutputKind::Value,
            Some(Stage::Finished(Err(TaskError::Cancelled))) => OutputKind::Cancelled,
            Some(Stage::Finished(Err(TaskError::Panicked(_)))) => OutputKind::Panicked,
            Some(Stage::Finished(Err(_))) => OutputKind::OtherError,
            _ => OutputKind::Empty,
        }
    }

    unsafe fn panic_text(ptr: NonNull<Header>) -> Option<String> {
        // SAFETY: see `cell`; brief borrow, downcasting runs no user code.
        match unsafe { Self::idle_stage(ptr) } {
            Some(Stage::Finished(Err(e @ TaskError::Panicked(_)))) => {
                Some(e.panic_message().unwrap_or("<non-string panic payload>").to_owned())
            }
            _ => None,
        }
    }

    unsafe fn take_output(ptr: NonNull<Header>, dst: *mut ()) {
        // SAFETY: see `cell`; brief borrow, no user code meanwhile.
        let out = match unsafe { Self::idle_stage(ptr) } {
            Some(s @ Stage::Finished(_)) => match std::mem::replace(s, Stage::Empty) {
                Stage::Finished(v) => Some(v),
                _ => None,
            },
            _ => None,
        };
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
            let busy = &(*(*cell).prefix.local.core).future_busy;
            if !busy.get() {
                busy.set(true);
                // Dropped in place (a future is pinned); if a destructor
                // unwinds, the slot is not touched again and the allocation
                // is leaked (the atomic reference below is never released).
                std::ptr::drop_in_place((*cell).stage.get());
                std::ptr::write((*cell).stage.get(), Stage::Empty);
                busy.set(false);
            }
            ManuallyDrop::drop(&mut (*cell).prefix.local.core);
            ManuallyDrop::drop(&mut (*cell).prefix.local.hook);
        }
    }

    /// Frees the allocation; called once, when the atomic count reached
    /// zero, on any thread. `drop_local` ran before (the local group held a
    /// reference), so the stage is `Empty` and the core and the hook's
    /// `Weak` are dropped; the `SCHED_REF` count was
    /// released by `release`.
    unsafe fn dealloc(ptr: NonNull<Header>) {
        // The `ManuallyDrop` parts are not dropped again, the header holds no
        // owning field, the stage is `Empty` (dropping it is a no-op).
        // SAFETY: from `cache::allocate` with this type's layout, fully
        // initialized, unreferenced: dropped in place once, then freed.
        unsafe {
            std::ptr::drop_in_place(ptr.cast::<TaskCell<F, T>>().as_ptr());
            cache::free(ptr.cast(), std::alloc::Layout::new::<TaskCell<F, T>>());
        }
    }
}

mod cache;
mod refs;
mod waker;

pub use cache::DEFAULT_LIMIT as DEFAULT_TASK_CACHE_LIMIT;
#[doc(hidden)]
pub use cache::cached_bytes as cached_task_bytes;
pub(crate) use cache::{release as release_task_cache, set_limit as set_task_cache_limit};

pub(crate) use refs::{OkWrap, RawRef, TaskBox, TypedRef};
use waker::*;
pub(crate) use waker::{RemoteWake, Wakeup};

#[cfg(all(test, target_pointer_width = "64"))]
mod tests {
    use super::*;

    fn cell_size<F: Future<Output = Result<T, TaskError>>, T>(_: &F) -> usize {
        std::mem::size_of::<TaskCell<F, T>>()
    }

    /// The benchmark's detached task (an `Rc` and an index captured, no
    /// output) needs at most 120 bytes, so it takes a 128-byte block of the
    /// task cache (and, with the cache off, a glibc fast-bin chunk: no bin
    /// coalescing on free).
    #[test]
    fn a_small_task_fits_a_fast_bin_chunk() {
        let sum = Rc::new(Cell::new(0u64));
        let i = 5u64;
        let detached = OkWrap(async move { sum.set(sum.get() + i) });
        assert!(cell_size(&detached) <= 120, "{} bytes", cell_size(&detached));
        let joined = OkWrap(async move { i });
        assert!(cell_size(&joined) <= 112, "{} bytes", cell_size(&joined));
    }
}
