//! The loop's receive-buffer pool: a provided-buffer ring
//! (`IORING_REGISTER_PBUF_RING`, Linux 5.19) that multishot receives pick
//! buffers from.
//!
//! Memory: one page-aligned allocation for the ring of `io_uring_buf`
//! entries (16 bytes each; the kernel reads it, we write entries and publish
//! the tail) and one for the buffers themselves (`entries × size` bytes,
//! buffer `bid` at `bid × size`). The kernel picks a buffer from the ring's
//! head when data arrives and reports its id in the CQE; the buffer is ours
//! until we put it back at the tail ([`Pool::recycle`], called when a
//! [`PooledBuf`](crate::buf::PooledBuf) is dropped).
//!
//! Lifetime: the pool is an `Rc` shared by the driver core and every
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

/// Buffer group id of the loop's pool (one group per ring).
pub(crate) const POOL_GROUP: u16 = 0;

const ENTRY_SIZE: usize = 16;
const PAGE: usize = 4096;

pub(crate) struct Pool {
    ring: NonNull<u8>,
    ring_layout: Layout,
    bufs: NonNull<u8>,
    bufs_layout: Layout,
    entries: u16,
    size: u32,
    /// Our copy of the tail (the kernel's head chases it).
    tail: Cell<u16>,
}

impl Pool {
    /// Allocates `entries` (a power of two, at most 32768) buffers of `size`
    /// bytes, fills the ring with all of them and registers it with `ring`
    /// as group [`POOL_GROUP`].
    pub(crate) fn register(ring: &IoUring, entries: u16, size: u32) -> io::Result<Pool> {
        if !entries.is_power_of_two() || entries > 32768 || size == 0 {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                "ringloop: the receive pool needs a power-of-two buffer count (at most 32768) and a non-zero size",
            ));
        }
        let ring_layout = Layout::from_size_align(usize::from(entries) * ENTRY_SIZE, PAGE)
            .map_err(|e| io::Error::new(io::ErrorKind::InvalidInput, e))?;
        let total = usize::from(entries)
            .checked_mul(size as usize)
            .ok_or_else(|| io::Error::new(io::ErrorKind::InvalidInput, "ringloop: receive pool too large"))?;
        let bufs_layout =
            Layout::from_size_align(total, PAGE).map_err(|e| io::Error::new(io::ErrorKind::InvalidInput, e))?;
        // SAFETY: both layouts have a non-zero size (entries >= 1, size >= 1).
        let (ring_ptr, bufs_ptr) = unsafe { (alloc_zeroed(ring_layout), alloc_zeroed(bufs_layout)) };
        let (Some(ring_nn), Some(bufs_nn)) = (NonNull::new(ring_ptr), NonNull::new(bufs_ptr)) else {
            // SAFETY: each pointer is freed only if it was allocated, with its layout.
            unsafe {
                if !ring_ptr.is_null() {
                    dealloc(ring_ptr, ring_layout);
                }
                if !bufs_ptr.is_null() {
                    dealloc(bufs_ptr, bufs_layout);
                }
            }
            return Err(io::Error::new(
                io::ErrorKind::OutOfMemory,
                "ringloop: receive pool allocation failed",
            ));
        };
        let pool = Pool {
            ring: ring_nn,
            ring_layout,
            bufs: bufs_nn,
            bufs_layout,
            entries,
            size,
            tail: Cell::new(0),
        };
        for bid in 0..entries {
            pool.push(bid);
        }
        pool.publish();
        // The ring memory stays allocated as long as the kernel may read it:
        // the pool is only freed once no `Rc` is left, and the driver core
        // keeps (or leaks) one until the ring itself is gone.
        #[allow(deprecated)] // `_with_flags` only adds a flags argument (0 here).
        // SAFETY: page-aligned ring memory of `entries` entries that outlives the kernel's use (above).
        let res = unsafe {
            ring.submitter()
                .register_buf_ring(ring_nn.as_ptr() as u64, entries, POOL_GROUP)
        };
        res.map_err(|e| io::Error::new(e.kind(), format!("io_uring_register(IORING_REGISTER_PBUF_RING): {e}")))?;
        Ok(pool)
    }

    /// Buffer size in bytes.
    pub(crate) fn buf_size(&self) -> u32 {
        self.size
    }

    /// The start of buffer `bid`.
    pub(crate) fn buf_ptr(&self, bid: u16) -> *mut u8 {
        debug_assert!(bid < self.entries);
        // SAFETY: `bid < entries`, so the offset is inside the allocation.
        unsafe { self.bufs.as_ptr().add(usize::from(bid) * self.size as usize) }
    }

    /// Writes the ring entry for `bid` at our tail (not yet visible).
    fn push(&self, bid: u16) {
        let tail = self.tail.get();
        let index = usize::from(tail & (self.entries - 1));
        // The fields are written one by one because entry 0's last two bytes
        // are the shared tail, which must not be overwritten.
        // SAFETY: `index < entries`, so the entry lies inside the ring allocation.
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

    /// Gives buffer `bid` back to the kernel.
    pub(crate) fn recycle(&self, bid: u16) {
        if bid < self.entries {
            self.push(bid);
            self.publish();
        }
    }
}

impl Drop for Pool {
    fn drop(&mut self) {
        // SAFETY: allocated in `register` with these layouts; the kernel no
        // longer uses them (see the module docs for how that is ensured).
        unsafe {
            dealloc(self.ring.as_ptr(), self.ring_layout);
            dealloc(self.bufs.as_ptr(), self.bufs_layout);
        }
    }
}

impl crate::buf::BufRing for Pool {
    fn buf_size(&self) -> u32 {
        Pool::buf_size(self)
    }
    fn buf_ptr(&self, bid: u16) -> *mut u8 {
        Pool::buf_ptr(self, bid)
    }
    fn recycle(&self, bid: u16) {
        Pool::recycle(self, bid)
    }
}
