//! A per-thread cache of task allocations.
//!
//! A loop that spawns a burst of short tasks frees them all again a moment
//! later, and the next burst asks for the same sizes. With glibc's
//! allocator such a burst costs 17–57 ns per allocation and free, depending
//! on the heap's state: small chunks go to LIFO fast bins whose pop reads
//! the link stored in the (by then uncached) chunk, one dependent miss per
//! spawn, and which state the heap is in changes from burst to burst (the
//! `spawn_detached` benchmark swung between 55 and 140 ns per task). Here
//! freed task memory is kept, per thread, on a stack of pointers for its
//! size class, and spawns take from it: popping reads a contiguous array,
//! not the freed block, and the cost no longer depends on the heap's past.
//!
//! * Size classes are multiples of 16 bytes up to [`MAX_CLASS_SIZE`] with
//!   alignment ≤ 16; every block of a class is allocated from the global
//!   allocator with the class's layout, so any block serves any task of its
//!   class and a block that leaves the cache is freed with the layout it was
//!   made with. Larger or over-aligned tasks use the global allocator
//!   directly.
//! * The cache holds at most `limit` bytes of blocks per thread
//!   ([`DEFAULT_LIMIT`], `Builder::task_cache_limit`; 0 turns it off);
//!   blocks beyond it go back to the global allocator. The stacks of
//!   pointers themselves (8 bytes per cached block, kept at their peak
//!   capacity until the cache is emptied) are not counted.
//! * A spawn that fails (no loop, or a closed one) empties the cache and
//!   makes the thread inactive again, so a thread without a loop does not
//!   start keeping blocks by trying.
//! * Only a thread that allocated a task since the cache was last emptied
//!   keeps blocks: a thread that merely drops the last waker of some task
//!   frees the memory at once (it would never reuse it).
//! * Closing a loop empties its thread's cache; a thread's exit frees what
//!   is left.

use std::alloc::{Layout, alloc, dealloc, handle_alloc_error};
use std::cell::RefCell;
use std::ptr::NonNull;

/// The largest cached size (bytes); larger tasks bypass the cache.
pub(crate) const MAX_CLASS_SIZE: usize = 1024;

/// Size-class granularity and the alignment of every cached block.
const GRAIN: usize = 16;

const CLASSES: usize = MAX_CLASS_SIZE / GRAIN;

/// Bytes of freed task memory a loop's thread keeps for reuse unless
/// `Builder::task_cache_limit` or `RINGLOOP_TASK_CACHE_LIMIT` says
/// otherwise (16 MiB).
pub const DEFAULT_LIMIT: usize = 16 << 20;

struct Cache {
    /// Free blocks per class (class `i` holds `(i + 1) * GRAIN` bytes).
    stacks: [Vec<NonNull<u8>>; CLASSES],
    /// Bytes in `stacks`.
    bytes: usize,
    limit: usize,
    /// Whether this thread allocated a task since the cache was emptied.
    active: bool,
}

impl Cache {
    const fn new() -> Cache {
        Cache {
            stacks: [const { Vec::new() }; CLASSES],
            bytes: 0,
            limit: DEFAULT_LIMIT,
            active: false,
        }
    }

    /// Frees cached blocks until at most `keep` bytes are left.
    fn trim(&mut self, keep: usize) {
        for (i, stack) in self.stacks.iter_mut().enumerate() {
            let layout = class_layout(i);
            while self.bytes > keep {
                let Some(p) = stack.pop() else { break };
                // SAFETY: every cached block was allocated by the global
                // allocator with its class's layout and is owned by the cache.
                unsafe { dealloc(p.as_ptr(), layout) };
                self.bytes -= layout.size();
            }
            if stack.is_empty() {
                *stack = Vec::new();
            }
        }
    }
}

impl Drop for Cache {
    fn drop(&mut self) {
        self.trim(0);
    }
}

thread_local! {
    static CACHE: RefCell<Cache> = const { RefCell::new(Cache::new()) };
}

/// The class of `layout`, if it has one.
#[inline(always)]
const fn class_of(layout: Layout) -> Option<usize> {
    if layout.align() <= GRAIN && layout.size() <= MAX_CLASS_SIZE && layout.size() > 0 {
        Some(layout.size().div_ceil(GRAIN) - 1)
    } else {
        None
    }
}

#[inline(always)]
const fn class_layout(class: usize) -> Layout {
    debug_assert!(class < CLASSES);
    // SAFETY: a non-zero multiple of 16, aligned to 16, far below isize::MAX.
    unsafe { Layout::from_size_align_unchecked((class + 1) * GRAIN, GRAIN) }
}

/// Allocates a block for a value of `layout`, from this thread's cache when
/// it holds one of the class. Panics on a zero-sized layout (a task never
/// is one; the check folds away for a constant layout).
#[inline]
pub(super) fn allocate(layout: Layout) -> NonNull<u8> {
    assert!(layout.size() != 0, "zero-sized task allocation");
    let actual = match class_of(layout) {
        Some(class) => {
            let cached = CACHE
                .try_with(|c| {
                    let mut c = c.borrow_mut();
                    c.active = true;
                    let p = c.stacks[class].pop();
                    if p.is_some() {
                        c.bytes -= class_layout(class).size();
                    }
                    p
                })
                .ok()
                .flatten();
            if let Some(p) = cached {
                return p;
            }
            class_layout(class)
        }
        None => layout,
    };
    // SAFETY: `actual` has a non-zero size (asserted above; a class layout
    // is at least 16 bytes).
    let p = unsafe { alloc(actual) };
    NonNull::new(p).unwrap_or_else(|| handle_alloc_error(actual))
}

/// Frees a block from [`allocate`] with the same `layout`, into this
/// thread's cache if it has room.
///
/// # Safety
///
/// `ptr` came from `allocate(layout)` and is not used afterwards.
#[inline]
pub(super) unsafe fn free(ptr: NonNull<u8>, layout: Layout) {
    let actual = match class_of(layout) {
        Some(class) => {
            let size = class_layout(class).size();
            let kept = CACHE
                .try_with(|c| {
                    let mut c = c.borrow_mut();
                    if c.active && c.bytes + size <= c.limit {
                        c.stacks[class].push(ptr);
                        c.bytes += size;
                        true
                    } else {
                        false
                    }
                })
                .unwrap_or(false);
            if kept {
                return;
            }
            class_layout(class)
        }
        None => layout,
    };
    // SAFETY: per the contract, `ptr` came from the global allocator with
    // `actual` (the class layout for class-sized blocks, see `allocate`).
    unsafe { dealloc(ptr.as_ptr(), actual) };
}

/// Sets this thread's cache limit (bytes), freeing blocks above it.
pub(crate) fn set_limit(bytes: usize) {
    let _ = CACHE.try_with(|c| {
        let mut c = c.borrow_mut();
        c.limit = bytes;
        c.trim(bytes);
    });
}

/// Empties this thread's cache; until the thread allocates a task again,
/// freed tasks go straight back to the global allocator.
pub(crate) fn release() {
    let _ = CACHE.try_with(|c| {
        let mut c = c.borrow_mut();
        c.trim(0);
        c.active = false;
    });
}

/// Bytes of freed task memory this thread's cache holds (for tests).
#[doc(hidden)]
pub fn cached_bytes() -> usize {
    CACHE.try_with(|c| c.borrow().bytes).unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn classes_round_up_to_sixteen_bytes_and_skip_big_or_overaligned_layouts() {
        let l = |s, a| Layout::from_size_align(s, a).unwrap();
        assert_eq!(class_of(l(1, 1)), Some(0));
        assert_eq!(class_of(l(16, 8)), Some(0));
        assert_eq!(class_of(l(17, 8)), Some(1));
        assert_eq!(class_of(l(120, 8)), Some(7));
        assert_eq!(class_of(l(1024, 16)), Some(CLASSES - 1));
        assert_eq!(class_of(l(1025, 8)), None);
        assert_eq!(class_of(l(64, 64)), None);
        assert_eq!(class_layout(7).size(), 128);
    }

    #[test]
    fn freed_blocks_are_reused_within_the_limit_and_released_on_request() {
        std::thread::spawn(|| {
            let l = Layout::from_size_align(100, 8).unwrap();
            // Not active yet: a free goes to the global allocator.
            let a = allocate(l);
            release();
            // SAFETY: from `allocate(l)`, not used again.
            unsafe { free(a, l) };
            assert_eq!(cached_bytes(), 0);
            // Active: the block is kept and handed out again.
            let b = allocate(l);
            // SAFETY: as above.
            unsafe { free(b, l) };
            assert_eq!(cached_bytes(), 112);
            let c = allocate(l);
            assert_eq!(c, b);
            assert_eq!(cached_bytes(), 0);
            // The limit caps what is kept.
            set_limit(112);
            let d = allocate(l);
            // SAFETY: as above (both blocks).
            unsafe {
                free(c, l);
                free(d, l);
            }
            assert_eq!(cached_bytes(), 112);
            set_limit(0);
            assert_eq!(cached_bytes(), 0);
            set_limit(DEFAULT_LIMIT);
            let big = Layout::from_size_align(4096, 8).unwrap();
            let e = allocate(big);
            // SAFETY: as above.
            unsafe { free(e, big) };
            assert_eq!(cached_bytes(), 0);
            let f = allocate(l);
            // SAFETY: as above.
            unsafe { free(f, l) };
            release();
            assert_eq!(cached_bytes(), 0);
        })
        .join()
        .unwrap();
    }
}
