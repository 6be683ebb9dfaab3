//! The task allocation: layout, state word, waker vtable, reference counts.
//! This is the only module of `task/` with `unsafe` code.
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
use std::marker::PhantomData;
use std::mem::{ManuallyDrop, MaybeUninit};
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::pin::Pin;
use std::ptr::NonNull;
use std::rc::{Rc, Weak};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering, fence};
use std::task::{Context, Poll, RawWaker, RawWakerVTable, Waker};

use super::{Schedule, TaskCore, TaskError};

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
    refs: Cell<usize>,
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
}

impl SchedHook {
    pub(crate) fn new(sched: Arc<dyn Schedule>) -> Rc<SchedHook> {
        Rc::new(SchedHook { sched })
    }
}

/// What a new task is given by whoever spawns it.
pub(crate) struct Init<'a> {
    pub(crate) key: usize,
    pub(crate) id: u64,
    pub(crate) hook: &'a Rc<SchedHook>,
    pub(crate) core: TaskCore,
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
        // SAFETY: the header is at offset 0 of the `repr(C)` cell, the
        // pointer carries the whole allocation's provenance (from
        // `Box::into_raw`), and the caller guarantees it is live.
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

static WAKER_VTABLE: RawWakerVTable = RawWakerVTable::new(waker_clone, waker_wake, waker_wake_by_ref, waker_drop);

/// # Safety
///
/// `ptr` is a live task header (the caller owns a reference).
unsafe fn header<'a>(ptr: *const ()) -> &'a Header {
    // SAFETY: guaranteed by the caller; wakers only ever read the header.
    unsafe { &*ptr.cast::<Header>() }
}

unsafe fn waker_clone(ptr: *const ()) -> RawWaker {
    // SAFETY: the waker being cloned owns a reference (or is the borrowed
    // waker of a running step, which holds one).
    let h = unsafe { header(ptr) };
    let prev = acquire(h);
    if prev & SCHED_REF == 0 && h.state.fetch_or(SCHED_REF, Ordering::AcqRel) & SCHED_REF == 0 {
        // The first owned waker: from now on wakers may outlive the loop,
        // so the task takes a strong count of the hook's `Arc` (released
        // with the allocation). Only one caller gets here (`fetch_or`).
        // SAFETY: no owned waker existed, so this is the borrowed waker of
        // a running step (possibly used from a scoped thread), during which
        // `RawRef::poll` keeps the loop's `SchedHook`, and so the `Arc`,
        // alive; `sched` points into that `Arc` (from `Arc::as_ptr`).
        unsafe { Arc::increment_strong_count(h.sched.as_ptr().cast_const()) };
    }
    RawWaker::new(ptr, &WAKER_VTABLE)
}

unsafe fn waker_wake(ptr: *const ()) {
    // SAFETY: the waker being consumed owns a reference, released after.
    unsafe {
        waker_wake_by_ref(ptr);
        waker_drop(ptr);
    }
}

unsafe fn waker_wake_by_ref(ptr: *const ()) {
    // SAFETY: the waker owns a reference; the hook is alive: an owned waker
    // implies `SCHED_REF`, and the borrowed one is only used during a step
    // (which keeps the loop's hook alive).
    unsafe { wake(header(ptr)) };
}

unsafe fn waker_drop(ptr: *const ()) {
    // SAFETY: the waker owns a reference, given up here.
    unsafe { release(NonNull::new_unchecked(ptr.cast_mut().cast::<Header>())) }
}

/// Takes one more atomic reference; returns the previous state.
fn acquire(h: &Header) -> usize {
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
unsafe fn release(ptr: NonNull<Header>) {
    // SAFETY: the caller's reference keeps the header alive for this access.
    // The vtable is read first: once our reference is given up, another
    // thread may free the header.
    let (vtable, sched, prev) = unsafe {
        let h = ptr.as_ref();
        let (vtable, sched) = (h.vtable, h.sched);
        (vtable, sched, h.state.fetch_sub(REF_ONE, Ordering::Release))
    };
    if prev & !FLAGS == REF_ONE {
        // Every other reference was released before (with `Release`).
        fence(Ordering::Acquire);
        if prev & SCHED_REF != 0 {
            // SAFETY: the strong count taken by the first owned waker
            // (`waker_clone`), given back once; `sched` came from
            // `Arc::as_ptr` of that `Arc`.
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
unsafe fn wake(h: &Header) {
    let prev = h.state.fetch_or(SCHEDULED, Ordering::AcqRel);
    if prev & (SCHEDULED | DONE) == 0 {
        // SAFETY: guaranteed by the caller.
        unsafe { h.sched.as_ref() }.schedule(h.key, h.id);
    }
}

/// A local (loop-thread, `!Send`) reference to a task.
pub(crate) struct RawRef {
    ptr: NonNull<Header>,
    /// `!Send + !Sync`: the local count is a plain `Cell`.
    _local: PhantomData<Rc<()>>,
}

/// A [`RawRef`] that knows its output type, for `Task<T>`.
pub(crate) struct TypedRef<T> {
    raw: RawRef,
    _out: PhantomData<fn() -> T>,
}

impl RawRef {
    /// Allocates a task (one allocation) holding `future`; the returned
    /// reference is its only local one, and the local group its only
    /// atomic one.
    pub(crate) fn allocate<F, T>(future: F, init: Init) -> TypedRef<T>
    where
        F: Future<Output = Result<T, TaskError>> + 'static,
        T: 'static,
    {
        // Built in place in the allocation (no copy of the whole cell).
        // From `Arc::as_ptr` (not a reference): the pointer keeps the whole
        // `Arc` allocation's provenance, as `increment_strong_count` needs.
        // SAFETY: `Arc::as_ptr` is never null.
        let sched = unsafe { NonNull::new_unchecked(Arc::as_ptr(&init.hook.sched).cast_mut()) };
        let hook = Rc::downgrade(init.hook);
        let mut cell = Box::<TaskCell<F, T>>::new_uninit();
        let p = cell.as_mut_ptr();
        // SAFETY: every field of the uninitialized cell is written once, in
        // place, through raw pointers (nothing is read or dropped).
        unsafe {
            (&raw mut (*p).prefix.header).write(Header {
                state: AtomicUsize::new(REF_ONE),
                vtable: &TaskCell::<F, T>::VTABLE,
                sched,
                key: init.key,
                id: init.id,
            });
            (&raw mut (*p).prefix.local).write(Local {
                refs: Cell::new(1),
                future_busy: Cell::new(false),
                hook: ManuallyDrop::new(hook),
                core: ManuallyDrop::new(init.core),
            });
            (&raw mut (*p).future).write(UnsafeCell::new(Some(future)));
            (&raw mut (*p).output).write(UnsafeCell::new(None));
        }
        // SAFETY: `Box::into_raw` never returns null; every field is
        // initialized above, so the cell may be used as a `TaskCell<F, T>`
        // (`dealloc` frees it as a `Box<TaskCell<F, T>>`, same layout).
        let ptr = unsafe { NonNull::new_unchecked(Box::into_raw(cell)) }.cast::<Header>();
        TypedRef {
            raw: RawRef {
                ptr,
                _local: PhantomData,
            },
            _out: PhantomData,
        }
    }

    fn prefix(&self) -> &Prefix {
        // SAFETY: this local reference keeps the allocation and its local
        // part alive; the prefix is at offset 0 of the `repr(C)` cell.
        unsafe { self.ptr.cast::<Prefix>().as_ref() }
    }

    fn vtable(&self) -> &'static Vtable {
        self.prefix().header.vtable
    }

    pub(crate) fn core(&self) -> &TaskCore {
        &self.prefix().local.core
    }

    pub(crate) fn key(&self) -> usize {
        self.prefix().header.key
    }

    pub(crate) fn id(&self) -> u64 {
        self.prefix().header.id
    }

    /// Whether a loop other than this task's runs on this thread (false
    /// once the task's loop is gone).
    pub(crate) fn foreign_loop_running(&self) -> bool {
        match self.prefix().local.hook.upgrade() {
            Some(h) => h.sched.foreign_loop_running(),
            None => false,
        }
    }

    /// Whether both refer to the same task.
    pub(crate) fn ptr_eq(&self, other: &RawRef) -> bool {
        self.ptr == other.ptr
    }

    /// Whether `w` wakes this task.
    pub(crate) fn is_woken_by(&self, w: &Waker) -> bool {
        std::ptr::eq(w.vtable(), &WAKER_VTABLE) && std::ptr::eq(w.data(), self.ptr.as_ptr().cast_const().cast())
    }

    /// Wakes the task (as its waker's `wake_by_ref` does); nothing once its
    /// loop is gone (it cannot run anymore).
    pub(crate) fn schedule(&self) {
        let p = self.prefix();
        if p.local.hook.strong_count() > 0 {
            // SAFETY: the loop's hook is alive (checked just above).
            unsafe { wake(&p.header) };
        }
    }

    /// Marks the task finished: wakes are no-ops from now on.
    pub(crate) fn set_done(&self) {
        self.prefix().header.state.fetch_or(DONE, Ordering::Release);
    }

    /// Clears `SCHEDULED` at the start of a step: a wake during the step
    /// queues the task again.
    pub(crate) fn clear_scheduled(&self) {
        self.prefix().header.state.fetch_and(!SCHEDULED, Ordering::AcqRel);
    }

    /// A local reference to the task `w` wakes, when `w` is the waker of a
    /// task of the same loop as this one (so of this thread) that still has
    /// local references; `None` otherwise. Listeners keep such a reference
    /// instead of a waker clone: no atomic operation to store or drop it.
    pub(crate) fn local_from_waker(&self, w: &Waker) -> Option<RawRef> {
        if !std::ptr::eq(w.vtable(), &WAKER_VTABLE) {
            return None;
        }
        let ptr = NonNull::new(w.data().cast_mut().cast::<Header>())?;
        // SAFETY: a waker with this vtable points to a task header and owns
        // a reference to it, so the header is alive while `w` is borrowed.
        let h = unsafe { ptr.as_ref() };
        // Both hooks are alive (ours: checked here; the waker's: it owns a
        // strong count, or it is the borrowed waker of a running step), so
        // equal addresses mean the same hook, i.e. the same loop. Addresses
        // only: nothing is dereferenced.
        let me = self.prefix();
        if me.local.hook.strong_count() == 0 || !std::ptr::addr_eq(h.sched.as_ptr(), me.header.sched.as_ptr()) {
            return None;
        }
        // SAFETY: the same loop, so that task belongs to this thread (a loop
        // and its tasks never leave their thread): its local part, at a
        // fixed offset of the live allocation, may be used here. `refs` is
        // a plain `Cell` that is never dropped, readable even at zero (only
        // that field is referenced: the core may already be dropped).
        let refs = unsafe { &(*ptr.cast::<Prefix>().as_ptr()).local.refs };
        let n = refs.get();
        if n == 0 || n == usize::MAX {
            // Its local contents are gone (or the count is saturated):
            // the caller keeps a waker instead.
            return None;
        }
        refs.set(n + 1);
        Some(RawRef {
            ptr,
            _local: PhantomData,
        })
    }

    /// Polls the future once (in place, panics caught) with the task's own
    /// waker; on `Ready` the output is stored. `Pending` as well when there
    /// is no future or the slot is busy (a re-entrant call), or when `hook`
    /// is not this task's loop hook.
    ///
    /// `hook` is the caller's proof that the task's loop hook lives for the
    /// whole step (the borrowed waker below relies on it).
    #[inline]
    pub(crate) fn poll(&self, hook: &Rc<SchedHook>) -> StepResult {
        if !std::ptr::eq(self.prefix().local.hook.as_ptr(), Rc::as_ptr(hook)) {
            return Poll::Pending;
        }
        // SAFETY: a waker borrowed for this call only, never dropped (so it
        // needs no reference of its own): this `RawRef` keeps the task alive
        // for longer; clones made by the future take their own references.
        let waker = ManuallyDrop::new(unsafe {
            Waker::from_raw(RawWaker::new(self.ptr.as_ptr().cast_const().cast(), &WAKER_VTABLE))
        });
        let mut cx = Context::from_waker(&waker);
        // SAFETY: the vtable matches the cell; we hold a local reference.
        unsafe { (self.vtable().poll)(self.ptr, &mut cx) }
    }

    /// Drops the future in place, unless absent or busy.
    pub(crate) fn drop_future(&self) -> DropFuture {
        // SAFETY: the vtable matches the cell; we hold a local reference.
        unsafe { (self.vtable().drop_future)(self.ptr) }
    }

    /// Stores `Err(e)` as the output; `Err` when dropping a previous output
    /// panicked.
    pub(crate) fn set_error(&self, e: TaskError) -> Result<(), Panic> {
        // SAFETY: the vtable matches the cell; we hold a local reference.
        unsafe { (self.vtable().set_error)(self.ptr, e) }
    }

    pub(crate) fn output_kind(&self) -> OutputKind {
        // SAFETY: the vtable matches the cell; we hold a local reference.
        unsafe { (self.vtable().output_kind)(self.ptr) }
    }

    pub(crate) fn panic_text(&self) -> Option<String> {
        // SAFETY: the vtable matches the cell; we hold a local reference.
        unsafe { (self.vtable().panic_text)(self.ptr) }
    }
}

impl Clone for RawRef {
    fn clone(&self) -> RawRef {
        let refs = &self.prefix().local.refs;
        let n = refs.get();
        if n == usize::MAX {
            std::process::abort();
        }
        refs.set(n + 1);
        RawRef {
            ptr: self.ptr,
            _local: PhantomData,
        }
    }
}

impl Drop for RawRef {
    fn drop(&mut self) {
        let refs = &self.prefix().local.refs;
        let n = refs.get() - 1;
        refs.set(n);
        if n == 0 {
            let vtable = self.vtable();
            // SAFETY: that was the last local reference: the loop-thread
            // contents are dropped here (on the loop thread: `RawRef` is
            // `!Send`), then the local group's atomic reference is released.
            unsafe {
                (vtable.drop_local)(self.ptr);
                release(self.ptr);
            }
        }
    }
}

impl<T> TypedRef<T> {
    pub(crate) fn raw(&self) -> &RawRef {
        &self.raw
    }

    /// Takes the output out of its slot.
    pub(crate) fn take_output(&self) -> Option<Result<T, TaskError>> {
        let mut out = MaybeUninit::<Option<Result<T, TaskError>>>::uninit();
        // SAFETY: a `TypedRef<T>` is only made by `RawRef::allocate::<F, T>`, so
        // the vtable's `take_output` writes exactly this type, and always
        // writes it.
        unsafe {
            (self.raw.vtable().take_output)(self.raw.ptr, out.as_mut_ptr().cast());
            out.assume_init()
        }
    }
}

/// Wraps a plain future so its output is `Ok(value)`.
pub(crate) struct OkWrap<F>(pub(crate) F);

impl<F: Future> Future for OkWrap<F> {
    type Output = Result<F::Output, TaskError>;
    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        // SAFETY: structural pinning of the only field; `OkWrap` never moves it.
        let f = unsafe { self.map_unchecked_mut(|s| &mut s.0) };
        f.poll(cx).map(Ok)
    }
}
