//! Owned buffers for completion I/O.
//!
//! With io_uring the kernel reads from / writes into a buffer after the call
//! that submitted the operation returned, so the runtime must own the buffer
//! until the completion arrives — even if the future is dropped. I/O methods
//! therefore take buffers by value and give them back with the result:
//!
//! ```ignore
//! use ringloop::prelude::*; // AsyncReadOwned / AsyncWriteOwned
//! let (res, buf) = stream.read(vec![0u8; 4096]).await;
//! let n = res?;
//! ```
//!
//! [`IoBuf`] (readable bytes, for writes) and [`IoBufMut`] (writable
//! capacity, for reads) are `unsafe` traits: implementors promise the
//! pointer stays valid and fixed while the value is moved around (heap or
//! `'static` memory only). [`Slice`] restricts an operation to a sub-range.

use std::ops::{Bound, RangeBounds};

mod owned_io;
mod pooled;
pub use owned_io::{AsyncReadOwned, AsyncWriteOwned};
pub(crate) use owned_io::{count_written, write_all_with};
#[cfg(target_os = "linux")]
pub(crate) use pooled::BufRing;
pub use pooled::PooledBuf;

/// A buffer whose initialised bytes can be written out.
///
/// # Safety
///
/// `stable_ptr` must point to at least `bytes_init()` initialised bytes that
/// stay valid and at the same address while the value is moved (until it is
/// dropped or mutably accessed through a safe API).
pub unsafe trait IoBuf: 'static {
    /// Start of the bytes.
    fn stable_ptr(&self) -> *const u8;
    /// Number of initialised bytes (what a write sends).
    fn bytes_init(&self) -> usize;
    /// Total capacity.
    fn bytes_total(&self) -> usize;

    /// Restricts the buffer to `range` (of its capacity for reads, of its
    /// initialised bytes for writes).
    ///
    /// # Panics
    ///
    /// When the range is out of bounds of the capacity, or start > end.
    fn slice(self, range: impl RangeBounds<usize>) -> Slice<Self>
    where
        Self: Sized,
    {
        let begin = match range.start_bound() {
            Bound::Included(&n) => n,
            Bound::Excluded(&n) => n + 1,
            Bound::Unbounded => 0,
        };
        let end = match range.end_bound() {
            Bound::Included(&n) => n + 1,
            Bound::Excluded(&n) => n,
            Bound::Unbounded => self.bytes_total(),
        };
        assert!(begin <= end, "slice start {begin} > end {end}");
        assert!(
            end <= self.bytes_total(),
            "slice end {end} > capacity {}",
            self.bytes_total()
        );
        Slice { buf: self, begin, end }
    }
}

/// A buffer with writable capacity that reads fill.
///
/// # Safety
///
/// `stable_mut_ptr` must point to `bytes_total()` writable bytes that stay
/// valid and at the same address while the value is moved.
pub unsafe trait IoBufMut: IoBuf {
    /// Start of the capacity.
    fn stable_mut_ptr(&mut self) -> *mut u8;
    /// Marks the first `pos` bytes as initialised (never shrinks).
    ///
    /// # Safety
    ///
    /// The first `pos` bytes must actually be initialised.
    unsafe fn set_init(&mut self, pos: usize);
}

// SAFETY: a Vec's heap buffer does not move when the Vec value moves; only
// reallocation moves it, which needs `&mut`, not available while in flight.
unsafe impl IoBuf for Vec<u8> {
    fn stable_ptr(&self) -> *const u8 {
        self.as_ptr()
    }
    fn bytes_init(&self) -> usize {
        self.len()
    }
    fn bytes_total(&self) -> usize {
        self.capacity()
    }
}

// SAFETY: see the `IoBuf` impl: the heap allocation is stable and `capacity`
// bytes long.
unsafe impl IoBufMut for Vec<u8> {
    fn stable_mut_ptr(&mut self) -> *mut u8 {
        self.as_mut_ptr()
    }
    unsafe fn set_init(&mut self, pos: usize) {
        if self.len() < pos {
            // SAFETY: the caller guarantees the first `pos` bytes are
            // initialised, and `pos <= capacity` for every driver result.
            unsafe { self.set_len(pos) };
        }
    }
}

// SAFETY: a boxed slice's heap allocation is stable; all of it is initialised.
unsafe impl IoBuf for Box<[u8]> {
    fn stable_ptr(&self) -> *const u8 {
        self.as_ptr()
    }
    fn bytes_init(&self) -> usize {
        self.len()
    }
    fn bytes_total(&self) -> usize {
        self.len()
    }
}

// SAFETY: as above; every byte is already initialised.
unsafe impl IoBufMut for Box<[u8]> {
    fn stable_mut_ptr(&mut self) -> *mut u8 {
        self.as_mut_ptr()
    }
    unsafe fn set_init(&mut self, _pos: usize) {}
}

// SAFETY: `'static` data never moves or is freed.
unsafe impl IoBuf for &'static [u8] {
    fn stable_ptr(&self) -> *const u8 {
        self.as_ptr()
    }
    fn bytes_init(&self) -> usize {
        self.len()
    }
    fn bytes_total(&self) -> usize {
        self.len()
    }
}

// SAFETY: `'static` data never moves or is freed.
unsafe impl IoBuf for &'static str {
    fn stable_ptr(&self) -> *const u8 {
        self.as_ptr()
    }
    fn bytes_init(&self) -> usize {
        self.len()
    }
    fn bytes_total(&self) -> usize {
        self.len()
    }
}

#[cfg(feature = "bytes")]
// SAFETY: `Bytes` is an immutable, reference-counted heap (or static) buffer.
unsafe impl IoBuf for bytes::Bytes {
    fn stable_ptr(&self) -> *const u8 {
        self.as_ptr()
    }
    fn bytes_init(&self) -> usize {
        self.len()
    }
    fn bytes_total(&self) -> usize {
        self.len()
    }
}

#[cfg(feature = "bytes")]
// SAFETY: `BytesMut`'s storage only moves on reallocation, which needs `&mut`.
unsafe impl IoBuf for bytes::BytesMut {
    fn stable_ptr(&self) -> *const u8 {
        self.as_ptr()
    }
    fn bytes_init(&self) -> usize {
        self.len()
    }
    fn bytes_total(&self) -> usize {
        self.capacity()
    }
}

#[cfg(feature = "bytes")]
// SAFETY: as above; `capacity` bytes are writable.
unsafe impl IoBufMut for bytes::BytesMut {
    fn stable_mut_ptr(&mut self) -> *mut u8 {
        self.as_mut_ptr()
    }
    unsafe fn set_init(&mut self, pos: usize) {
        if self.len() < pos {
            // SAFETY: forwarded from the caller.
            unsafe { self.set_len(pos) };
        }
    }
}

/// A sub-range of a buffer; see [`IoBuf::slice`].
#[derive(Debug)]
pub struct Slice<T> {
    buf: T,
    begin: usize,
    end: usize,
}

impl<T> Slice<T> {
    /// Start offset in the underlying buffer.
    pub fn begin(&self) -> usize {
        self.begin
    }
    /// End offset in the underlying buffer.
    pub fn end(&self) -> usize {
        self.end
    }
    /// The underlying buffer.
    pub fn get_ref(&self) -> &T {
        &self.buf
    }
    /// Gives the underlying buffer back.
    pub fn into_inner(self) -> T {
        self.buf
    }
}

// SAFETY: a window into a buffer that upholds the `IoBuf` contract.
unsafe impl<T: IoBuf> IoBuf for Slice<T> {
    fn stable_ptr(&self) -> *const u8 {
        // SAFETY: `begin <= bytes_total` was checked at construction.
        unsafe { self.buf.stable_ptr().add(self.begin) }
    }
    fn bytes_init(&self) -> usize {
        self.buf.bytes_init().clamp(self.begin, self.end) - self.begin
    }
    fn bytes_total(&self) -> usize {
        self.end - self.begin
    }
}

// SAFETY: a window into a buffer that upholds the `IoBufMut` contract.
unsafe impl<T: IoBufMut> IoBufMut for Slice<T> {
    fn stable_mut_ptr(&mut self) -> *mut u8 {
        // SAFETY: `begin <= bytes_total` was checked at construction.
        unsafe { self.buf.stable_mut_ptr().add(self.begin) }
    }
    unsafe fn set_init(&mut self, pos: usize) {
        // Only extend the underlying buffer when the window starts inside its
        // initialised prefix: otherwise the gap before `begin` would be
        // exposed uninitialised.
        if self.buf.bytes_init() >= self.begin {
            // SAFETY: bytes `..begin` are initialised (checked above) and the
            // caller guarantees `begin..begin + pos`.
            unsafe { self.buf.set_init(self.begin + pos) };
        }
    }
}

/// A result together with the buffer the operation owned.
pub type BufResult<T, B> = (std::io::Result<T>, B);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn vec_reports_len_as_init_and_capacity_as_total() {
        let mut v = Vec::with_capacity(16);
        v.extend_from_slice(b"abc");
        assert_eq!(v.bytes_init(), 3);
        assert!(v.bytes_total() >= 16);
        // SAFETY: writing 2 bytes inside the capacity before declaring them.
        unsafe {
            v.stable_mut_ptr().add(3).write(b'd');
            v.stable_mut_ptr().add(4).write(b'e');
            v.set_init(5);
        }
        assert_eq!(v, b"abcde");
    }

    #[test]
    fn slices_window_the_buffer() {
        let v = b"hello world".to_vec();
        let s = v.slice(6..);
        assert_eq!(s.bytes_init(), 5);
        assert_eq!(s.bytes_total(), s.get_ref().capacity() - 6);
        assert_eq!(s.into_inner(), b"hello world");
    }

    #[test]
    #[should_panic(expected = "slice end")]
    fn slicing_beyond_capacity_panics() {
        let v: &'static [u8] = b"abc";
        let _ = v.slice(..10);
    }
}

#[cfg(all(test, feature = "bytes"))]
mod bytes_tests {
    use super::*;

    #[test]
    fn bytes_types_report_their_lengths_and_fill_through_set_init() {
        let b = bytes::Bytes::from_static(b"abc");
        assert_eq!((b.bytes_init(), b.bytes_total()), (3, 3));
        let mut m = bytes::BytesMut::with_capacity(8);
        // SAFETY: one byte written inside the capacity before declaring it.
        unsafe {
            m.stable_mut_ptr().write(b'x');
            m.set_init(1);
        }
        assert_eq!(&m[..], b"x");
        assert!(m.bytes_total() >= 8);
    }
}
