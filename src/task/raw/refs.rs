//! Local task references ([`RawRef`], [`TypedRef`]) and [`OkWrap`].

use std::alloc::Layout;
use std::cell::{Cell, UnsafeCell};
use std::future::Future;
use std::marker::PhantomData;
use std::mem::{ManuallyDrop, MaybeUninit};
use std::pin::Pin;
use std::ptr::NonNull;
use std::rc::Rc;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::task::{Context, Poll, RawWaker, Waker};

use crate::task::{TaskCore, TaskError};

use super::*;

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
    /// Makes the task of `task` (the allocation holding its future): the
    /// returned reference is its only local one, and the local group its
    /// only atomic one. Always inlined into the spawn, so `init` is never
    /// built in memory and read back (that cost a store-forwarding stall).
    #[inline(always)]
    pub(crate) fn allocate<F, T>(task: TaskBox<F, T>, init: Init) -> TypedRef<T>
    where
        F: Future<Output = Result<T, TaskError>> + 'static,
        T: 'static,
    {
        // From `Arc::as_ptr` (not a reference): the pointer keeps the whole
        // `Arc` allocation's provenance, as `increment_strong_count` needs.
        // SAFETY: `Arc::as_ptr` is never null.
        let sched = unsafe { NonNull::new_unchecked(Arc::as_ptr(&init.hook.sched).cast_mut()) };
        let hook = Rc::downgrade(init.hook);
        let p = task.cell.as_ptr();
        // From here on the cell is completed into a task, not dropped as a
        // `TaskBox`.
        std::mem::forget(task);
        // The stage (the future) was written by `TaskBox::new`.
        // SAFETY: every other field is written once, in place, through raw
        // pointers (nothing is read or dropped).
        unsafe {
            (&raw mut (*p).prefix.header).write(Header {
                state: AtomicUsize::new(REF_ONE),
                vtable: &TaskCell::<F, T>::VTABLE,
                sched,
            });
            (&raw mut (*p).prefix.local).write(Local {
                refs: Cell::new(1),
                key: init.key,
                hook: ManuallyDrop::new(hook),
                core: ManuallyDrop::new(TaskCore::new(init.id, init.context, init.spawned_at)),
            });
        }
        // Every field is initialized above, so the cell may be used as a
        // `TaskCell<F, T>` (`dealloc` drops it in place and frees the block).
        // SAFETY: `p` came from a `NonNull`.
        let ptr = unsafe { NonNull::new_unchecked(p) }.cast::<Header>();
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

    pub(crate) fn key(&self) -> u32 {
        self.prefix().local.key
    }

    pub(crate) fn id(&self) -> u64 {
        self.core().id
    }

    /// The task's loop, unless it is gone.
    pub(crate) fn loop_hooks(&self) -> Option<Rc<dyn LoopHooks>> {
        self.prefix().local.hook.upgrade()?.lp.upgrade()
    }

    /// Whether a loop other than this task's runs on this thread (false
    /// once the task's loop is gone).
    pub(crate) fn foreign_loop_running(&self) -> bool {
        match self.prefix().local.hook.upgrade() {
            Some(h) => h.sched.0.foreign_loop_running(),
            None => false,
        }
    }

    /// Asks the CPU to start loading the task's first four cache lines (the
    /// header, its bookkeeping and the start of its future), for a task
    /// that runs next: its cache misses then overlap with the current
    /// task's step instead of stalling its own (an echo server's tasks are
    /// cold by the time their completions come back).
    #[inline]
    pub(crate) fn prefetch(&self) {
        #[cfg(target_arch = "x86_64")]
        {
            use std::arch::x86_64::{_MM_HINT_T0, _mm_prefetch};
            let p = self.ptr.as_ptr().cast::<i8>().cast_const();
            for line in 0..4 {
                // SAFETY: a prefetch is a hint that never faults, whatever
                // the address; SSE is part of the x86_64 baseline.
                unsafe { _mm_prefetch::<_MM_HINT_T0>(p.wrapping_add(line * 64)) };
            }
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

    /// The state word, when this reference is the only way to reach it
    /// right now: the atomic count is the local group's one reference (no
    /// waker exists) and the task's step is not running (so no borrowed
    /// waker either, which a step may lend to a scoped thread). Nobody else
    /// can then read or change the word (making a waker needs a reference),
    /// so a plain load and store replace an atomic read-modify-write (a
    /// locked instruction, the dominant cost of a spawn before).
    #[inline]
    fn exclusive_state(&self) -> Option<usize> {
        let p = self.prefix();
        if p.local.core.future_busy.get() {
            return None;
        }
        let s = p.header.state.load(Ordering::Acquire);
        (s & !FLAGS == REF_ONE).then_some(s)
    }

    /// Wakes the task (as its waker's `wake_by_ref` does); nothing once its
    /// loop is gone (it cannot run anymore).
    #[inline]
    pub(crate) fn schedule(&self) {
        let p = self.prefix();
        if p.local.hook.strong_count() == 0 {
            return;
        }
        match self.claim_exclusive() {
            // SAFETY: the loop's hook is alive (checked above).
            Some(true) => unsafe { schedule_now(&p.header) },
            Some(false) => {}
            // SAFETY: the loop's hook is alive (checked above).
            None => unsafe { wake(&p.header) },
        }
    }

    /// Sets `SCHEDULED` with a plain store when nobody else can see the
    /// state (see `exclusive_state`): `Some(true)` when the caller must
    /// queue the step, `Some(false)` when it is queued or done already,
    /// `None` when the state is shared (an atomic wake is needed).
    #[inline]
    fn claim_exclusive(&self) -> Option<bool> {
        let s = self.exclusive_state()?;
        if s & (SCHEDULED | DONE) != 0 {
            return Some(false);
        }
        self.prefix().header.state.store(s | SCHEDULED, Ordering::Release);
        Some(true)
    }

    /// Marks the task queued without queueing it, when nobody else can see
    /// its state and its loop lives; false otherwise (then `schedule` is
    /// the way). A spawn uses it and pushes the step itself.
    #[inline]
    pub(crate) fn claim_first_step(&self) -> bool {
        self.prefix().local.hook.strong_count() > 0 && self.claim_exclusive() == Some(true)
    }

    /// Marks the task finished: wakes are no-ops from now on.
    #[inline]
    pub(crate) fn set_done(&self) {
        let state = &self.prefix().header.state;
        match self.exclusive_state() {
            Some(s) => state.store(s | DONE, Ordering::Release),
            None => {
                state.fetch_or(DONE, Ordering::Release);
            }
        }
    }

    /// Clears `SCHEDULED` at the start of a step: a wake during the step
    /// queues the task again.
    #[inline]
    pub(crate) fn clear_scheduled(&self) {
        let state = &self.prefix().header.state;
        match self.exclusive_state() {
            Some(s) => state.store(s & !SCHEDULED, Ordering::Release),
            None => {
                state.fetch_and(!SCHEDULED, Ordering::AcqRel);
            }
        }
    }

    /// Whether the task sits in a ready queue (woken, its step not begun).
    pub(crate) fn is_scheduled(&self) -> bool {
        self.prefix().header.state.load(Ordering::Acquire) & SCHEDULED != 0
    }

    /// Whether the task's future is being polled (or dropped) right now.
    pub(crate) fn is_busy(&self) -> bool {
        self.prefix().local.core.future_busy.get()
    }

    /// A local reference to the task `w` wakes, when `w` is the waker of a
    /// task of the same loop as this one (so of this thread) that still has
    /// local references; `None` otherwise. Listeners keep such a reference
    /// instead of a waker clone: no atomic operation to store or drop it.
    pub(crate) fn local_from_waker(&self, w: &Waker) -> Option<RawRef> {
        let me = self.prefix();
        if me.local.hook.strong_count() == 0 {
            return None;
        }
        // SAFETY: our loop's hook is alive (checked above) and, as this
        // reference is, on this thread.
        unsafe { RawRef::local_of_waker(w, me.header.sched) }
    }

    /// A local reference to the task `w` wakes, when `w` is the waker of a
    /// task of `hook`'s loop that still has local references; `None`
    /// otherwise. The loop's I/O driver keeps such a reference instead of a
    /// waker clone.
    pub(crate) fn local_from_loop_waker(hook: &Rc<SchedHook>, w: &Waker) -> Option<RawRef> {
        // From `Arc::as_ptr`, as in every task header of that loop.
        // SAFETY: `Arc::as_ptr` is never null.
        let sched = unsafe { NonNull::new_unchecked(Arc::as_ptr(&hook.sched).cast_mut()) };
        // SAFETY: `hook` (an `Rc`: this thread's) keeps that target alive.
        unsafe { RawRef::local_of_waker(w, sched) }
    }

    /// A local reference to the task `w` wakes, if `w` is a task waker whose
    /// schedule target is `sched`.
    ///
    /// # Safety
    ///
    /// `sched` is the live schedule target of a loop whose thread this is.
    unsafe fn local_of_waker(w: &Waker, sched: NonNull<SchedTarget>) -> Option<RawRef> {
        if !std::ptr::eq(w.vtable(), &WAKER_VTABLE) {
            return None;
        }
        let ptr = NonNull::new(w.data().cast_mut().cast::<Header>())?;
        // SAFETY: a waker with this vtable points to a task header and owns
        // a reference to it, so the header is alive while `w` is borrowed.
        let h = unsafe { ptr.as_ref() };
        // Both targets are alive (`sched`: the caller's promise; the
        // waker's: it owns a strong count, or it is the borrowed waker of a
        // running step), so equal addresses mean the same loop. Addresses
        // only: nothing is dereferenced.
        if !std::ptr::addr_eq(h.sched.as_ptr(), sched.as_ptr()) {
            return None;
        }
        // The same loop, so that task belongs to this thread (a loop and its
        // tasks never leave their thread). `None` (its local contents are
        // gone): the caller keeps a waker instead.
        // SAFETY: the header is alive (see above), on its loop's thread.
        unsafe { RawRef::local_at(ptr) }
    }

    /// A new local reference to the task at `ptr`; `None` once its local
    /// contents are gone (count zero) or when the count is saturated.
    ///
    /// # Safety
    ///
    /// `ptr` is a live task header and the caller runs on its loop's thread.
    #[inline]
    pub(super) unsafe fn local_at(ptr: NonNull<Header>) -> Option<RawRef> {
        // `refs` is a plain `Cell` that is never dropped, readable at zero
        // (only that field is referenced: the core may be dropped already).
        // SAFETY: the local part, at a fixed offset of the live allocation,
        // may be used on this thread (the caller's promise).
        let refs = unsafe { &(*ptr.cast::<Prefix>().as_ptr()).local.refs };
        let n = refs.get();
        if n == 0 || n == u32::MAX {
            return None;
        }
        refs.set(n + 1);
        Some(RawRef {
            ptr,
            _local: PhantomData,
        })
    }

    /// Polls the future once (in place, panics caught) with the task's own
    /// waker; on `Ready` the future is dropped and its output stored.
    /// `Pending` as well when there
    /// is no future or the slot is busy (a re-entrant call), or when `hook`
    /// is not this task's loop hook.
    ///
    /// `hook` is the caller's proof that the task's loop hook lives for the
    /// whole step (the borrowed waker below relies on it).
    #[inline]
    pub(crate) fn poll(&self, hook: &Rc<SchedHook>) -> StepResult {
        if !std::ptr::eq(self.prefix().local.hook.as_ptr(), Rc::as_ptr(hook)) {
            return StepResult::Pending;
        }
        // A waker borrowed for this call only and never dropped, so it needs
        // no reference of its own; clones made by the future take theirs.
        // SAFETY: this `RawRef` keeps the task alive longer than the waker.
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

    /// Stores `Err(e)` as the output (dropping the future first if it is
    /// still there); `Err` when a destructor panicked.
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
    #[inline]
    fn clone(&self) -> RawRef {
        let refs = &self.prefix().local.refs;
        let n = refs.get();
        if n == u32::MAX {
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
    #[inline]
    fn drop(&mut self) {
        let refs = &self.prefix().local.refs;
        let n = refs.get() - 1;
        refs.set(n);
        if n == 0 {
            self.drop_last();
        }
    }
}

impl RawRef {
    /// The last local reference went: the loop-thread contents are dropped
    /// here, then the local group's atomic reference goes.
    #[inline(never)]
    fn drop_last(&mut self) {
        let vtable = self.vtable();
        // SAFETY: last local ref, on the loop thread (`RawRef` is !Send).
        unsafe {
            (vtable.drop_local)(self.ptr);
            release(self.ptr);
        }
    }
}

/// A task allocation that so far holds only its future. A spawn makes it
/// first, so the future moves once, straight from the caller into the
/// heap, after the allocation call: copied through the stack right after
/// the caller built it, the copy read the future back before its stores
/// had landed (a store-forwarding stall, ~8% of a spawn). Dropped, it
/// drops the future and frees the memory.
pub(crate) struct TaskBox<F, T> {
    /// From `cache::allocate` with `TaskCell<F, T>`'s layout; only `stage`
    /// is written.
    cell: NonNull<TaskCell<F, T>>,
}

impl<F, T> TaskBox<F, T>
where
    F: Future<Output = Result<T, TaskError>> + 'static,
    T: 'static,
{
    #[inline(always)]
    pub(crate) fn new(future: F) -> TaskBox<F, T> {
        let cell = cache::allocate(Layout::new::<TaskCell<F, T>>()).cast::<TaskCell<F, T>>();
        // The block is sized and aligned for the cell (`cache::allocate`).
        // SAFETY: one field of the fresh block is written in place; nothing is read or dropped.
        unsafe { (&raw mut (*cell.as_ptr()).stage).write(UnsafeCell::new(Stage::Running(future))) };
        TaskBox { cell }
    }
}

impl<F, T> Drop for TaskBox<F, T> {
    fn drop(&mut self) {
        let p = self.cell.as_ptr();
        // If the future's destructor unwinds, the memory leaks.
        // SAFETY: only the stage is initialized (`new`): dropped in
        // place once, then the block goes back with the layout it came with.
        unsafe {
            std::ptr::drop_in_place(&raw mut (*p).stage);
            cache::free(self.cell.cast(), Layout::new::<TaskCell<F, T>>());
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
        // A `TypedRef<T>` is only made by `RawRef::allocate::<F, T>`.
        // SAFETY: so `take_output` always writes exactly this type into `out`.
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
