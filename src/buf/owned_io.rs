//! The owned-buffer stream traits: [`AsyncReadOwned`] and [`AsyncWriteOwned`].
//!
//! They are traits (in the prelude, `use ringloop::prelude::*;`) rather than
//! inherent methods so that they never hide `futures-io`'s extension
//! methods of the same names (`AsyncReadExt::read`, `AsyncWriteExt::write_all`,
//! `close`, ...), which take borrowed slices and have other semantics. Import
//! the one family you use; with both imported, these (`&self`) methods are
//! found first and the `futures` ones are called as
//! `AsyncWriteExt::write_all(&mut s, ..)`.

use std::future::Future;
use std::io;

use super::{BufResult, IoBuf, IoBufMut};

/// Reading into owned buffers: `let (res, buf) = stream.read(buf).await;`.
///
/// Methods take `&self`, so one task may read while another writes.
/// Implemented by [`TcpStream`](crate::net::TcpStream),
/// [`UnixStream`](crate::net::UnixStream) and their read halves.
pub trait AsyncReadOwned {
    /// Reads into `buf`'s spare capacity (from its start; see
    /// [`IoBufMut`]); `Ok(0)` means end of stream (or a zero-capacity
    /// buffer).
    fn read<B: IoBufMut>(&self, buf: B) -> impl Future<Output = BufResult<usize, B>>;

    /// Reads until `buf` holds `len` initialised bytes in total; an early end
    /// of stream is `UnexpectedEof`. Growing `buf` to `len` bytes is
    /// fallible: a length that cannot be allocated is `OutOfMemory`, with
    /// `buf` handed back.
    fn read_exact(&self, buf: Vec<u8>, len: usize) -> impl Future<Output = BufResult<(), Vec<u8>>>;
}

/// Writing from owned buffers: `let (res, buf) = stream.write_all(buf).await;`.
///
/// When `write`/`write_all` return `Ok`, the bytes are in the kernel (no
/// userspace buffering), so a drop or close right after loses nothing.
/// Implemented by [`TcpStream`](crate::net::TcpStream),
/// [`UnixStream`](crate::net::UnixStream) and their write halves.
pub trait AsyncWriteOwned {
    /// Writes some of `buf`'s bytes; returns how many.
    fn write<B: IoBuf>(&self, buf: B) -> impl Future<Output = BufResult<usize, B>>;

    /// Writes all of `buf`'s bytes (a zero-byte write is `WriteZero`).
    fn write_all<B: IoBuf>(&self, buf: B) -> impl Future<Output = BufResult<(), B>> {
        write_all_with(buf, |s, _| self.write(s))
    }

    /// Flushes bytes the `futures-io` `AsyncWrite` impl accepted, then
    /// closes: a stream closes its socket and reports `close(2)`'s result; a
    /// write half shuts the write direction down (the socket closes when
    /// both halves are gone). A flush error is returned after the close.
    fn close(self) -> impl Future<Output = io::Result<()>>
    where
        Self: Sized;
}

/// Writes every initialised byte of `buf` through repeated calls of `write`,
/// which gets a window over the bytes not written yet and the count already
/// written (for positioned writes). A zero-byte write is `WriteZero`;
/// `EINTR` retries. The buffer comes back in every case.
pub(crate) async fn write_all_with<B, F, Fut>(buf: B, mut write: F) -> crate::buf::BufResult<(), B>
where
    B: crate::buf::IoBuf,
    F: FnMut(crate::buf::Slice<B>, usize) -> Fut,
    Fut: std::future::Future<Output = crate::buf::BufResult<usize, crate::buf::Slice<B>>>,
{
    let total = buf.bytes_init();
    let mut slice = buf.slice(..);
    let mut done = 0;
    while done < total {
        let (res, s) = write(slice, done).await;
        let buf = s.into_inner();
        if let Err(e) = count_written(res, &mut done) {
            return (Err(e), buf);
        }
        slice = buf.slice(done..);
    }
    (Ok(()), slice.into_inner())
}

/// One write of a write-all loop: adds its count to `done`; a zero-byte
/// write is `WriteZero`, `EINTR` is no error (the loop retries).
pub(crate) fn count_written(res: io::Result<usize>, done: &mut usize) -> io::Result<()> {
    match res {
        Ok(0) => Err(io::ErrorKind::WriteZero.into()),
        Ok(n) => {
            *done += n;
            Ok(())
        }
        Err(e) if e.kind() == io::ErrorKind::Interrupted => Ok(()),
        Err(e) => Err(e),
    }
}
