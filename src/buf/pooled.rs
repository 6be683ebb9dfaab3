//! [`PooledBuf`]: bytes received into the loop's buffer pool.

use std::fmt;
use std::ops::Deref;
#[cfg(target_os = "linux")]
use std::rc::Rc;

use super::IoBuf;

/// The memory behind ring-backed [`PooledBuf`]s: the driver's
/// provided-buffer ring (`driver/uring/pool.rs`), seen through this trait so
/// that `buf` does not depend on the driver.
///
/// # Safety
///
/// For every `bid`, `buf_ptr(bid)` points at `buf_size()` bytes of one
/// allocation that stays valid while the value lives: a `PooledBuf` reads
/// its bytes through that pointer.
#[cfg(target_os = "linux")]
pub(crate) unsafe trait BufRing {
    /// Size of each buffer.
    fn buf_size(&self) -> u32;
    /// Start of buffer `bid` (valid while the ring lives).
    fn buf_ptr(&self, bid: u16) -> *mut u8;
    /// Drops this value's hold on buffer `bid` (the buffer goes back to the
    /// kernel once nothing holds it).
    fn release(&self, bid: u16);
}

/// Bytes a pooled receive produced ([`TcpStream::recv_stream`](crate::net::TcpStream::recv_stream)).
///
/// On io_uring it is (part of) a buffer of the loop's provided-buffer ring
/// that the kernel filled: no copy, and the buffer goes back to the ring
/// when dropped (where the kernel consumes buffers incrementally, once
/// every chunk received into it is dropped), so keep it only as long as
/// needed (an echo server writes it straight back:
/// `stream.write_all(buf)`). Elsewhere (and when the ring ran out of
/// buffers) it owns a heap buffer. Dereferences to the received bytes and
/// implements [`IoBuf`], so it can be written out without copying.
pub struct PooledBuf {
    inner: Inner,
}

enum Inner {
    #[cfg(target_os = "linux")]
    Ring {
        pool: Rc<dyn BufRing>,
        bid: u16,
        /// The first byte: `off` bytes into buffer `bid` (after a multishot
        /// `recvmsg`'s header and address; past earlier receives in an
        /// incrementally consumed buffer). Kept rather than recomputed:
        /// every `len()` and deref of a ring buffer would otherwise be a
        /// dynamic call into the pool.
        ptr: std::ptr::NonNull<u8>,
        /// At most the buffer size (a `u32`): keeps the value at 32 bytes.
        len: u32,
        /// The bytes end where the buffer does (see `filled_its_buffer`);
        /// known when the value is made, where the buffer size is at hand.
        filled: bool,
    },
    Heap(Vec<u8>),
}

// Kept small: a `PooledBuf` travels by value through every echo write.
#[cfg(target_os = "linux")]
const _: () = assert!(std::mem::size_of::<PooledBuf>() == 32);

impl PooledBuf {
    /// The `len` bytes at `off` in ring buffer `bid` (both clamped to the
    /// buffer).
    #[cfg(target_os = "linux")]
    pub(crate) fn from_ring_at<P: BufRing + 'static>(pool: Rc<P>, bid: u16, off: usize, len: usize) -> PooledBuf {
        let size = pool.buf_size() as usize;
        let off = off.min(size);
        let len = len.min(size - off);
        let filled = off + len == size;
        let len = len as u32;
        // `off <= size`: inside buffer `bid` or one past its end (the
        // deref relies on it, not this arithmetic).
        let ptr = pool.buf_ptr(bid).wrapping_add(off);
        let ptr = std::ptr::NonNull::new(ptr).expect("pool buffers are not at address 0");
        PooledBuf {
            inner: Inner::Ring {
                pool,
                bid,
                ptr,
                len,
                filled,
            },
        }
    }

    pub(crate) fn from_vec(v: Vec<u8>) -> PooledBuf {
        PooledBuf { inner: Inner::Heap(v) }
    }

    /// Whether the bytes live in the loop's buffer ring (else on the heap).
    pub fn is_ring_buffer(&self) -> bool {
        match &self.inner {
            #[cfg(target_os = "linux")]
            Inner::Ring { .. } => true,
            Inner::Heap(_) => false,
        }
    }

    /// Whether the receive that produced this chunk stopped because its
    /// buffer was full (a ring buffer filled to its end, a heap buffer to
    /// its capacity) rather than because the socket was empty: then more
    /// of the same message may already be waiting, and a server that writes
    /// a message back in one piece can look for the next chunk first. A
    /// chunk that ends before its buffer does drained the socket.
    pub fn filled_its_buffer(&self) -> bool {
        match &self.inner {
            #[cfg(target_os = "linux")]
            Inner::Ring { filled, .. } => *filled,
            Inner::Heap(v) => v.len() == v.capacity(),
        }
    }

    /// The bytes as a `Vec` (a copy for a ring buffer, which goes back to
    /// the ring).
    pub fn into_vec(mut self) -> Vec<u8> {
        match &mut self.inner {
            Inner::Heap(v) => std::mem::take(v),
            #[cfg(target_os = "linux")]
            Inner::Ring { .. } => self.to_vec(),
        }
    }
}

impl Deref for PooledBuf {
    type Target = [u8];

    fn deref(&self) -> &[u8] {
        match &self.inner {
            #[cfg(target_os = "linux")]
            Inner::Ring { ptr, len, .. } => {
                // The bytes are not written again until this value is
                // dropped: the buffer is out of the ring, or (consumed
                // incrementally) the kernel only fills it past them.
                // SAFETY: the kernel wrote `len` bytes at `ptr` (clamped to the buffer in `from_ring_at`).
                unsafe { std::slice::from_raw_parts(ptr.as_ptr(), *len as usize) }
            }
            Inner::Heap(v) => v,
        }
    }
}

impl AsRef<[u8]> for PooledBuf {
    fn as_ref(&self) -> &[u8] {
        self
    }
}

impl fmt::Debug for PooledBuf {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("PooledBuf")
            .field("len", &self.len())
            .field("ring", &self.is_ring_buffer())
            .finish()
    }
}

impl Drop for PooledBuf {
    fn drop(&mut self) {
        #[cfg(target_os = "linux")]
        if let Inner::Ring { pool, bid, .. } = &self.inner {
            pool.release(*bid);
        }
    }
}

// SAFETY: the bytes are either in a ring buffer (fixed memory owned by the
// pool, which this value keeps alive through its `Rc`, and not written by
// the kernel again before the value is dropped) or a `Vec`'s heap buffer;
// neither moves with the value, and `len` bytes are initialised.
unsafe impl IoBuf for PooledBuf {
    fn stable_ptr(&self) -> *const u8 {
        self.deref().as_ptr()
    }
    fn bytes_init(&self) -> usize {
        self.len()
    }
    fn bytes_total(&self) -> usize {
        self.len()
    }
}
