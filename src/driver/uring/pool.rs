//! The loop's receive-buffer pools: provided-buffer rings
//! (`IORING_REGISTER_PBUF_RING`, Linux 5.19) that multishot receives pick
//! buffers from. A loop has up to two, each registered on first use: one
//! for stream receives ([`STREAM_GROUP`]) and one for datagrams
//! ([`DGRAM_GROUP`]). Their buffer ids are disjoint (the stream pool's are
//! below [`DGRAM_FIRST_BID`], the datagram pool's from it), so a CQE's
//! buffer id alone names the pool.
//!
//! Memory: one page-aligned allocation for the ring of `io_uring_buf`
//! entries (16 bytes each, room for the most buffers the pool may grow to;
//! the kernel reads it, we write entries and publish the tail) and one per
//! *step* of buffers: the pool starts with one step of `entries × size`
//! bytes and [grows](Pool::grow) by another when a receive finds every
//! buffer out (`ENOBUFS`), up to its limit. Buffer `bid` is at index
//! `bid - first_bid`, in step `index / entries`. The kernel picks a buffer
//! from the ring's head when data arrives and reports its id in the CQE; the
//! buffer is ours until we put it back at the tail.
//!
//! Incremental consumption (`IOU_PBUF_RING_INC`, Linux 6.12; the stream
//! pool only, where the kernel has it): the kernel keeps the buffer at the
//! head of the ring until it is full, and each receive takes only the bytes
//! it needed, so a 100-byte message uses 100 bytes of a buffer instead of a
//! whole one. A CQE then reports bytes at the buffer's *current fill
//! offset*, which user space must track per buffer, in CQE order: the driver
//! calls [`Pool::hold`] for every CQE naming a buffer as it reaps it (the
//! order in which the kernel committed the bytes, whichever connection
//! takes the result later), which returns the offset and counts one holder.
//! The kernel has retired a buffer (it is no longer in the ring) once a CQE
//! naming it comes without `IORING_CQE_F_BUF_MORE` (the kernel clears it
//! when the buffer is full); it goes back to the ring when it is retired
//! and its last holder released it ([`Pool::release`]). A CQE the kernel
//! drops (it could not allocate its overflow list) would shift every later
//! offset in its buffer: the driver then [poisons](Pool::poison) the pool,
//! whose results fail from then on rather than hand out the wrong bytes. A zero-length or failed receive names no buffer
//! when it ran inline (the kernel puts the buffer back at the ring's head
//! untouched); one that ran in io-wq (`IOSQE_ASYNC`) names the buffer it
//! selected, which the kernel then took whole, so it counts as retired.
//! (That is why the stream pool is only used by receives without a length
//! limit: an io-wq receive of at most `n` bytes would take only `n` bytes
//! of the buffer yet report fewer and no `F_BUF_MORE`.) Datagram receives
//! never use incremental consumption: a datagram that met a nearly full
//! buffer would be truncated.
//!
//! Without incremental consumption every CQE naming a buffer consumed it
//! whole (one holder), and releasing it puts it back at once.
//!
//! Lifetime: a pool is an `Rc` shared by the driver core and every
//! outstanding buffer, so it is freed after the last of them. The driver's
//! teardown forgets its reference if receives are still in flight when it
//! gives up waiting (the kernel could still write into a buffer), so the
//! memory is then leaked rather than freed under the kernel.

use std::alloc::{Layout, alloc_zeroed, dealloc};
use std::cell::Cell;
use std::io;
use std::ptr::NonNull;
use std::sync::atomic::{AtomicU16, Ordering};

use io_uring::IoUring;

/// Buffer group id of the stream receive pool.
pub(crate) const STREAM_GROUP: u16 = 0;
/// Buffer group id of the datagram receive pool.
pub(crate) const DGRAM_GROUP: u16 = 1;
/// The datagram pool's first buffer id (the stream pool's is 0); each pool
/// has at most this many buffers.
pub(crate) const DGRAM_FIRST_BID: u16 = 32768;

const ENTRY_SIZE: usize = 16;
const PAGE: usize = 4096;
/// `IOU_PBUF_RING_INC`: the ring's buffers are consumed incrementally.
const PBUF_RING_INC: u16 = 2;

/// The offset [`Pool::hold`] reports when it cannot know where a result's
/// bytes are (a [poisoned](Pool::poison) incremental pool).
pub(crate) const UNKNOWN_OFFSET: u32 = u32::MAX;

/// What [`Pool::register`] sets up.
#[derive(Clone, Copy, Debug)]
pub(crate) struct PoolSpec {
    /// Number of buffers to start with, and to add at each growth step: a
    /// power of two, at most 32768.
    pub(crate) entries: u16,
    /// The most buffers the pool grows to: a power of two, from `entries`
    /// to 32768 (`entries`: it never grows).
    pub(crate) max_entries: u16,
    /// Size of each buffer in bytes.
    pub(crate) size: u32,
    /// Buffer group id.
    pub(crate) group: u16,
    /// Id of the first buffer (the others follow).
    pub(crate) first_bid: u16,
    /// Register for incremental consumption; a kernel without it (before
    /// 6.12) makes `register` fail with [`io::ErrorKind::Unsupported`].
    pub(crate) incremental: bool,
}

/// Per-buffer bookkeeping of an incrementally consumed pool.
#[derive(Default)]
struct Fill {
    /// Bytes the kernel has filled from the buffer's start.
    filled: Cell<u32>,
    /// Results that name this buffer and have not been released.
    holders: Cell<u32>,
    /// The kernel is done with it (it left the ring).
    retired: Cell<bool>,
}

pub(crate) struct Pool {
    ring: NonNull<u8>,
    ring_layout: Layout,
    /// Buffer memory, one allocation per growth step (null: not yet).
    steps: Box<[Cell<*mut u8>]>,
    step_layout: Layout,
    /// Buffers per step (a power of two) and its log2.
    step: u16,
    step_shift: u32,
    /// Ring entries: the most buffers the pool can have.
    cap: u16,
    /// Buffers allocated and handed to the ring (a multiple of `step`).
    count: Cell<u16>,
    size: u32,
    first_bid: u16,
    /// Our copy of the tail (the kernel's head chases it).
    tail: Cell<u16>,
    /// Incremental consumption is on: one entry per buffer.
    fill: Option<Box<[Fill]>>,
    /// See [`Pool::poison`].
    poisoned: Cell<bool>,
}

impl Pool {
    /// Allocates `spec.entries` buffers of `spec.size` bytes and a ring
    /// with room for `spec.max_entries`, fills the ring with the buffers and
    /// registers it with `ring` (incrementally consumed if asked for).
    pub(crate) fn register(ring: &IoUring, spec: PoolSpec) -> io::Result<Pool> {
        let PoolSpec {
            entries,
            max_entries,
            size,
            group,
            first_bid,
            incremental,
        } = spec;
        if !entries.is_power_of_two()
            || !max_entries.is_power_of_two()
            || max_entries < entries
            || max_entries > 32768
            || size == 0
            || u32::from(first_bid) + u32::from(max_entries) > 65536
        {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                "ringloop: the receive pool needs a power-of-two buffer count (at most 32768), a non-zero size and buffer ids below 65536",
            ));
        }
        let invalid = |e| io::Error::new(io::ErrorKind::InvalidInput, e);
        let ring_layout = Layout::from_size_align(usize::from(max_entries) * ENTRY_SIZE, PAGE).map_err(invalid)?;
        let total = usize::from(entries)
            .checked_mul(size as usize)
            .ok_or_else(|| io::Error::new(io::ErrorKind::InvalidInput, "ringloop: receive pool too large"))?;
        // Page-aligned steps, but a tiny pool's steps need not take a page each.
        let step_layout = Layout::from_size_align(total, if total >= PAGE { PAGE } else { 64 }).map_err(invalid)?;
        // SAFETY: the layout has a non-zero size (entries >= 1).
        let ring_nn = NonNull::new(unsafe { alloc_zeroed(ring_layout) })
            .ok_or_else(|| io::Error::new(io::ErrorKind::OutOfMemory, "ringloop: receive pool allocation failed"))?;
        let steps = usize::from(max_entries / entries);
        let pool = Pool {
            ring: ring_nn,
            ring_layout,
            steps: (0..steps).map(|_| Cell::new(std::ptr::null_mut())).collect(),
            step_layout,
            step: entries,
            step_shift: entries.trailing_zeros(),
            cap: max_entries,
            count: Cell::new(0),
            size,
            first_bid,
            tail: Cell::new(0),
            fill: incremental.then(|| (0..max_entries).map(|_| Fill::default()).collect()),
            poisoned: Cell::new(false),
        };
        // (From here on `pool`'s drop frees what was allocated.)
        if !pool.grow() {
            return Err(io::Error::new(
                io::ErrorKind::OutOfMemory,
                "ringloop: receive pool allocation failed",
            ));
        }
        // The ring memory stays allocated as long as the kernel may read it:
        // the pool is only freed once no `Rc` is left, and the driver core
        // keeps (or leaks) one until the ring itself is gone.
        let flags = if incremental { PBUF_RING_INC } else { 0 };
        // SAFETY: page-aligned ring memory of `max_entries` entries that outlives the kernel's use (above).
        let registered = unsafe {
            ring.submitter()
                .register_buf_ring_with_flags(ring_nn.as_ptr() as u64, max_entries, group, flags)
        };
        match registered {
            Ok(()) => Ok(pool),
            // Kernels before 6.12 reject the flag.
            Err(e) if incremental && e.raw_os_error() == Some(libc::EINVAL) => Err(io::Error::new(
                io::ErrorKind::Unsupported,
                "io_uring: no incrementally consumed buffer rings (Linux 6.12)",
            )),
            Err(e) => Err(io::Error::new(
                e.kind(),
                format!("io_uring_register(IORING_REGISTER_PBUF_RING): {e}"),
            )),
        }
    }

    /// Allocates one more step of buffers and puts them in the ring (the
    /// first step at registration, another when a receive found every
    /// buffer out); false if the pool is at its limit or the allocation
    /// failed. Grow only for an `ENOBUFS` of a receive armed when the pool
    /// had as many [buffers](Self::buffers) as now: one armed before the
    /// last growth may have run dry before the new buffers were there.
    pub(crate) fn grow(&self) -> bool {
        let count = self.count.get();
        if count >= self.cap {
            return false;
        }
        // SAFETY: the layout has a non-zero size (step >= 1, size >= 1).
        let mem = unsafe { alloc_zeroed(self.step_layout) };
        if mem.is_null() {
            return false;
        }
        self.steps[usize::from(count >> self.step_shift)].set(mem);
        self.count.set(count + self.step);
        for i in count..count + self.step {
            self.push(self.first_bid + i);
        }
        self.publish();
        true
    }

    /// Buffers allocated so far.
    pub(crate) fn buffers(&self) -> u16 {
        self.count.get()
    }

    /// The most buffers it grows to.
    pub(crate) fn max_buffers(&self) -> u16 {
        self.cap
    }

    /// Whether buffer `bid` is one of this pool's.
    pub(crate) fn owns(&self, bid: u16) -> bool {
        bid.wrapping_sub(self.first_bid) < self.count.get()
    }

    /// Whether the kernel consumes this pool's buffers incrementally.
    pub(crate) fn is_incremental(&self) -> bool {
        self.fill.is_some()
    }

    /// Counts one holder of buffer `bid`, named by a CQE with result `res`
    /// and (`more`) `IORING_CQE_F_BUF_MORE` or not, in the order CQEs are
    /// reaped. Returns where the CQE's bytes start in the buffer (0 unless
    /// the pool is incremental; [`UNKNOWN_OFFSET`] once it is
    /// [poisoned](Pool::poison)).
    pub(crate) fn hold(&self, bid: u16, res: i32, more: bool) -> u32 {
        let Some(f) = self.fill.as_ref().and_then(|fill| fill.get(self.index(bid))) else {
            return 0;
        };
        if self.poisoned.get() {
            return UNKNOWN_OFFSET;
        }
        debug_assert!(!f.retired.get(), "io_uring CQE for retired pool buffer {bid}");
        let off = f.filled.get();
        f.holders.set(f.holders.get() + 1);
        if res <= 0 {
            // A result without data names a buffer only when the receive
            // ran in io-wq, which took the whole rest of the buffer when it
            // selected it (an inline one names none).
            f.retired.set(true);
            return off;
        }
        let end = off.saturating_add(res as u32);
        debug_assert!(end <= self.size, "pool buffer {bid} filled past its end");
        f.filled.set(end.min(self.size));
        // The kernel's word, not our count: it clears `F_BUF_MORE` exactly
        // when the buffer leaves the ring (full, or taken whole by io-wq).
        if !more {
            f.retired.set(true);
        }
        off
    }

    /// The kernel dropped CQEs (it could not allocate its overflow list):
    /// an incremental pool's fill offsets can no longer be trusted, so
    /// from now on its results report [`UNKNOWN_OFFSET`] and none of its
    /// buffers goes back to the ring (one could still be the kernel's).
    pub(crate) fn poison(&self) {
        if self.fill.is_some() {
            self.poisoned.set(true);
        }
    }

    fn index(&self, bid: u16) -> usize {
        debug_assert!(self.owns(bid));
        usize::from(bid.wrapping_sub(self.first_bid))
    }

    /// Buffer size in bytes.
    pub(crate) fn buf_size(&self) -> u32 {
        self.size
    }

    /// The start of buffer `bid` (one of the pool's buffers; any other id
    /// gives the first buffer's start).
    pub(crate) fn buf_ptr(&self, bid: u16) -> *mut u8 {
        let index = bid.wrapping_sub(self.first_bid);
        let index = if index < self.count.get() { index } else { 0 };
        let step = self.steps[usize::from(index >> self.step_shift)].get();
        let at = usize::from(index & (self.step - 1)) * self.size as usize;
        // `index < count`, so its step is allocated (`grow` allocates
        // steps in order before counting their buffers).
        // SAFETY: `at` is inside that step's allocation.
        unsafe { step.add(at) }
    }

    /// Writes the ring entry for `bid` at our tail (not yet visible).
    fn push(&self, bid: u16) {
        let tail = self.tail.get();
        let index = usize::from(tail & (self.cap - 1));
        // The fields are written one by one because entry 0's last two bytes
        // are the shared tail, which must not be overwritten.
        // SAFETY: `index < cap`, so the entry lies inside the ring allocation.
        unsafe {
            let entry = self.ring.as_ptr().add(index * ENTRY_SIZE);
            entry.cast::<u64>().write(self.buf_ptr(bid) as u64);
            entry.add(8).cast::<u32>().write(self.size);
            entry.add(12).cast::<u16>().write(bid);
        }
        self.tail.set(tail.wrapping_add(1));
    }

    /// Makes the pushed entries visible to the kernel.
    fn publish(&self) {
        // The kernel reads the tail concurrently, hence the atomic access,
        // with release order so the entries written before are visible first.
        // SAFETY: the tail is the `u16` at offset 14 of the page-aligned ring (aligned for an atomic).
        let tail = unsafe { AtomicU16::from_ptr(self.ring.as_ptr().add(14).cast::<u16>()) };
        tail.store(self.tail.get(), Ordering::Release);
    }

    /// Drops one holder of buffer `bid` (see [`Pool::hold`]); the buffer
    /// goes back to the kernel once it has none and the kernel retired it.
    pub(crate) fn release(&self, bid: u16) {
        if !self.owns(bid) {
            return;
        }
        if let Some(fill) = &self.fill {
            if self.poisoned.get() {
                return;
            }
            let f = &fill[self.index(bid)];
            let holders = f.holders.get();
            if holders == 0 {
                debug_assert!(false, "pool buffer {bid} released more often than held");
                return;
            }
            f.holders.set(holders - 1);
            if holders > 1 || !f.retired.get() {
                return;
            }
            f.filled.set(0);
            f.retired.set(false);
        }
        self.push(bid);
        self.publish();
    }
}

impl Drop for Pool {
    fn drop(&mut self) {
        // Allocated in `register` / `grow` with these layouts; the kernel no
        // longer uses them (see the module docs for how that is ensured).
        // SAFETY: each pointer is freed once, with its own layout.
        unsafe {
            dealloc(self.ring.as_ptr(), self.ring_layout);
            for step in self.steps.iter().map(Cell::get).filter(|p| !p.is_null()) {
                dealloc(step, self.step_layout);
            }
        }
    }
}

// SAFETY: `buf_ptr` maps every id to the start of an allocated buffer of
// `size` bytes (another id to the first), which lives until the pool is
// dropped.
unsafe impl crate::buf::BufRing for Pool {
    fn buf_size(&self) -> u32 {
        Pool::buf_size(self)
    }
    fn buf_ptr(&self, bid: u16) -> *mut u8 {
        Pool::buf_ptr(self, bid)
    }
    fn release(&self, bid: u16) {
        Pool::release(self, bid)
    }
}
