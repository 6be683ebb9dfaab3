//! One stream core for TCP and Unix: [`SocketStream<F>`] and its halves
//! [`ReadHalf<F>`] / [`WriteHalf<F>`], generic over the address family
//! ([`Tcp`], [`Unix`]). [`TcpStream`](super::TcpStream) and
//! [`UnixStream`](super::UnixStream) are its two instances; what differs
//! (connecting, addresses, socket options) is in `tcp.rs` and `unix.rs`.

use std::fmt;
use std::future::Future;
use std::io;
use std::marker::PhantomData;
use std::net::Shutdown;
use std::os::fd::{AsRawFd, OwnedFd, RawFd};
use std::pin::Pin;
use std::rc::Rc;
use std::task::{Context, Poll};

use socket2::{SockAddr, SockRef};

use super::RecvStream;
use super::compat::{CompatSlot, ReadState, WriteState};
use super::ops as net_ops;
use crate::buf::{AsyncReadOwned, AsyncWriteOwned, BufResult, IoBuf, IoBufMut};
use crate::driver::Driver;
use crate::io::{SharedFd, ShortRead, ops};

mod sealed {
    pub trait Sealed {}
}

/// The address family of a [`SocketStream`]: [`Tcp`] or [`Unix`] (sealed).
pub trait Family: sealed::Sealed + 'static {
    /// The family's socket address type.
    type Addr: fmt::Debug;
    /// The stream type's name (for `Debug`).
    #[doc(hidden)]
    const NAME: &'static str;
    /// Converts an address the kernel reported.
    #[doc(hidden)]
    fn addr(addr: SockAddr) -> io::Result<Self::Addr>;
    /// Whether a short read may end at ancillary data (Unix streams).
    #[doc(hidden)]
    const ANCILLARY: bool;
}

/// TCP ([`TcpStream`](super::TcpStream)).
#[derive(Debug)]
pub enum Tcp {}

impl sealed::Sealed for Tcp {}

impl Family for Tcp {
    type Addr = std::net::SocketAddr;
    const NAME: &'static str = "TcpStream";
    const ANCILLARY: bool = false;
    fn addr(addr: SockAddr) -> io::Result<std::net::SocketAddr> {
        addr.as_socket()
            .ok_or_else(|| io::Error::new(io::ErrorKind::InvalidData, "not an IP socket address"))
    }
}

/// Unix domain sockets ([`UnixStream`](super::UnixStream)).
#[cfg(unix)]
#[derive(Debug)]
pub enum Unix {}

#[cfg(unix)]
impl sealed::Sealed for Unix {}

#[cfg(unix)]
impl Family for Unix {
    type Addr = super::unix::SocketAddr;
    const NAME: &'static str = "UnixStream";
    const ANCILLARY: bool = true;
    fn addr(addr: SockAddr) -> io::Result<super::unix::SocketAddr> {
        Ok(super::unix::SocketAddr::new(addr))
    }
}

/// A connected stream socket with owned-buffer I/O (`read(buf)`,
/// `write_all(buf)`, … from [`AsyncReadOwned`]/[`AsyncWriteOwned`]).
/// Methods take `&self`, so one task may read while another writes (see
/// also [`into_split`](Self::into_split)).
///
/// It also implements `futures-io`'s `AsyncRead`, `AsyncBufRead` and
/// `AsyncWrite` (internally buffered on io_uring; see the
/// [`net`](crate::net) module docs), for crates built on those traits.
pub struct SocketStream<F: Family> {
    pub(super) fd: SharedFd,
    pub(super) drv: Driver,
    compat: CompatSlot,
    _family: PhantomData<fn() -> F>,
}

impl<F: Family> fmt::Debug for SocketStream<F> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct(F::NAME)
            .field("fd", &self.fd.raw())
            .field("local", &self.local_addr().ok())
            .field("peer", &self.peer_addr().ok())
            .finish()
    }
}

impl<F: Family> SocketStream<F> {
    pub(super) fn from_owned(fd: OwnedFd, drv: Driver) -> io::Result<Self> {
        Ok(Self::from_shared(SharedFd::new(fd, &drv)?, drv))
    }

    pub(super) fn from_shared(fd: SharedFd, drv: Driver) -> Self {
        fd.set_short_read(if F::ANCILLARY {
            ShortRead::DrainsUnlessCtrunc
        } else {
            ShortRead::Drains
        });
        // AF_UNIX has no zero-copy send (EOPNOTSUPP), and its end of
        // stream can be lost by a multishot receive (see `set_multishot_recv`).
        fd.set_zero_copy(!F::ANCILLARY);
        fd.set_multishot_recv(!F::ANCILLARY);
        fd.use_fixed(&drv);
        SocketStream {
            fd,
            drv,
            compat: CompatSlot::default(),
            _family: PhantomData,
        }
    }

    /// Vectored read (`recvmsg` with one iovec per buffer): fills `bufs` in
    /// order, each from the start of its capacity (like `read`); returns
    /// the total. `Ok(0)`: end of stream, or no capacity at all.
    pub async fn readv<B: IoBufMut>(&self, bufs: Vec<B>) -> BufResult<usize, Vec<B>> {
        net_ops::recv_vectored(&self.drv, &self.fd, bufs).await
    }

    /// Vectored write (`sendmsg` with one iovec per buffer, `MSG_NOSIGNAL`):
    /// sends some of the buffers' bytes in order; returns how many.
    pub async fn writev<B: IoBuf>(&self, bufs: Vec<B>) -> BufResult<usize, Vec<B>> {
        net_ops::send_vectored(&self.drv, &self.fd, bufs).await
    }

    /// Shuts down one or both directions.
    pub fn shutdown(&self, how: Shutdown) -> io::Result<()> {
        ops::shutdown(&self.fd, how)
    }

    /// The peer's address.
    pub fn peer_addr(&self) -> io::Result<F::Addr> {
        F::addr(SockRef::from(&self.fd).peer_addr()?)
    }

    /// The local address.
    pub fn local_addr(&self) -> io::Result<F::Addr> {
        F::addr(SockRef::from(&self.fd).local_addr()?)
    }

    /// Received chunks in buffers of the loop's receive pool, as a
    /// `futures_core::Stream` (or [`RecvStream::next_buf`]): on io_uring one
    /// multishot receive stays armed and the kernel fills pool buffers
    /// (no SQE per chunk, no copy); write a chunk back with
    /// `write_all(buf)`, drop it to return the buffer. Use it for
    /// request/response protocols with many connections; use
    /// `read(buf)` to read into memory you own (e.g. a large transfer into
    /// one buffer). Bytes buffered by the `futures-io` impls are not seen.
    pub fn recv_stream(&self) -> RecvStream<'_> {
        RecvStream::new(&self.drv, &self.fd)
    }

    /// Splits into a read half and a write half usable from two tasks.
    /// Bytes buffered by the `futures-io` impls move with their half.
    pub fn into_split(mut self) -> (ReadHalf<F>, WriteHalf<F>) {
        let state = self.compat.take();
        let s = Rc::new(self);
        (
            ReadHalf {
                inner: s.clone(),
                rd: state.rd,
            },
            WriteHalf { inner: s, wr: state.wr },
        )
    }
}

impl<F: Family> AsRawFd for SocketStream<F> {
    fn as_raw_fd(&self) -> RawFd {
        self.fd.raw()
    }
}

impl<F: Family> std::os::fd::AsFd for SocketStream<F> {
    fn as_fd(&self) -> std::os::fd::BorrowedFd<'_> {
        self.fd.as_fd()
    }
}

impl<F: Family> AsyncReadOwned for SocketStream<F> {
    fn read<B: IoBufMut>(&self, buf: B) -> impl Future<Output = BufResult<usize, B>> {
        ops::recv(&self.drv, &self.fd, buf, 0)
    }

    async fn read_exact(&self, buf: Vec<u8>, len: usize) -> BufResult<(), Vec<u8>> {
        net_ops::recv_exact(&self.drv, &self.fd, buf, len).await
    }
}

impl<F: Family> AsyncWriteOwned for SocketStream<F> {
    fn write<B: IoBuf>(&self, buf: B) -> impl Future<Output = BufResult<usize, B>> {
        ops::send(&self.drv, &self.fd, buf, 0)
    }

    fn write_all<B: IoBuf>(&self, buf: B) -> impl Future<Output = BufResult<(), B>> {
        net_ops::send_all(&self.drv, &self.fd, buf)
    }

    /// Closes the connection and reports `close(2)`'s result (io_uring
    /// `CLOSE` on the io_uring backend), after flushing the bytes the
    /// `futures-io` `AsyncWrite` impl accepted (a failed flush is reported
    /// after the close). If a dropped operation still holds the socket (its
    /// cancellation is in flight), the socket is closed when that completes
    /// and `Ok` is returned.
    async fn close(self) -> io::Result<()> {
        let SocketStream {
            fd, drv, mut compat, ..
        } = self;
        // Bytes the `futures-io` impl accepted go out first.
        let flushed = compat.flush(&drv, &fd).await;
        // The compat state may hold in-flight operations (and fd handles).
        drop(compat);
        let closed = net_ops::close(&drv, fd).await;
        flushed.and(closed)
    }
}

/// Read half of [`SocketStream::into_split`] (also `AsyncRead` /
/// `AsyncBufRead`).
pub struct ReadHalf<F: Family> {
    inner: Rc<SocketStream<F>>,
    rd: ReadState,
}

/// Write half of [`SocketStream::into_split`] (also `AsyncWrite`);
/// dropping it does not shut the connection down (call
/// [`WriteHalf::shutdown`] or `close`).
pub struct WriteHalf<F: Family> {
    inner: Rc<SocketStream<F>>,
    wr: WriteState,
}

impl<F: Family> fmt::Debug for ReadHalf<F> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_tuple("ReadHalf").field(&self.inner).finish()
    }
}

impl<F: Family> fmt::Debug for WriteHalf<F> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_tuple("WriteHalf").field(&self.inner).finish()
    }
}

impl<F: Family> AsyncReadOwned for ReadHalf<F> {
    async fn read<B: IoBufMut>(&self, buf: B) -> BufResult<usize, B> {
        self.inner.read(buf).await
    }

    async fn read_exact(&self, buf: Vec<u8>, len: usize) -> BufResult<(), Vec<u8>> {
        self.inner.read_exact(buf, len).await
    }
}

impl<F: Family> AsyncWriteOwned for WriteHalf<F> {
    async fn write<B: IoBuf>(&self, buf: B) -> BufResult<usize, B> {
        self.inner.write(buf).await
    }

    async fn write_all<B: IoBuf>(&self, buf: B) -> BufResult<(), B> {
        self.inner.write_all(buf).await
    }

    /// Flushes what the `futures-io` impl accepted, then shuts the write
    /// direction down; the socket closes when both halves are gone.
    async fn close(mut self) -> io::Result<()> {
        let inner = &self.inner;
        let flushed = std::future::poll_fn(|cx| self.wr.poll_flush(&inner.drv, &inner.fd, cx)).await;
        let shut = self.inner.shutdown(Shutdown::Write);
        flushed.and(shut)
    }
}

impl<F: Family> ReadHalf<F> {
    /// See [`SocketStream::recv_stream`].
    pub fn recv_stream(&self) -> RecvStream<'_> {
        self.inner.recv_stream()
    }

    /// See [`SocketStream::readv`].
    pub async fn readv<B: IoBufMut>(&self, bufs: Vec<B>) -> BufResult<usize, Vec<B>> {
        self.inner.readv(bufs).await
    }

    /// The connection's peer address.
    pub fn peer_addr(&self) -> io::Result<F::Addr> {
        self.inner.peer_addr()
    }

    /// The connection's local address.
    pub fn local_addr(&self) -> io::Result<F::Addr> {
        self.inner.local_addr()
    }
}

impl<F: Family> WriteHalf<F> {
    /// See [`SocketStream::writev`].
    pub async fn writev<B: IoBuf>(&self, bufs: Vec<B>) -> BufResult<usize, Vec<B>> {
        self.inner.writev(bufs).await
    }

    /// Shuts the write direction down (the peer reads end of stream).
    pub fn shutdown(&self) -> io::Result<()> {
        self.inner.shutdown(Shutdown::Write)
    }

    /// The connection's peer address.
    pub fn peer_addr(&self) -> io::Result<F::Addr> {
        self.inner.peer_addr()
    }

    /// The connection's local address.
    pub fn local_addr(&self) -> io::Result<F::Addr> {
        self.inner.local_addr()
    }
}

impl<F: Family> futures_io::AsyncRead for SocketStream<F> {
    fn poll_read(self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &mut [u8]) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        this.compat.get().rd.poll_read(&this.drv, &this.fd, cx, buf)
    }
}

impl<F: Family> futures_io::AsyncBufRead for SocketStream<F> {
    fn poll_fill_buf(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<&[u8]>> {
        let this = self.get_mut();
        this.compat.get().rd.poll_fill_buf(&this.drv, &this.fd, cx)
    }
    fn consume(self: Pin<&mut Self>, amt: usize) {
        self.get_mut().compat.get().rd.consume(amt)
    }
}

impl<F: Family> futures_io::AsyncWrite for SocketStream<F> {
    fn poll_write(self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &[u8]) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        this.compat.get().wr.poll_write(&this.drv, &this.fd, cx, buf)
    }
    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        this.compat.get().wr.poll_flush(&this.drv, &this.fd, cx)
    }
    fn poll_close(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        this.compat.get().wr.poll_close(&this.drv, &this.fd, cx)
    }
}

impl<F: Family> futures_io::AsyncRead for ReadHalf<F> {
    fn poll_read(self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &mut [u8]) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        this.rd.poll_read(&this.inner.drv, &this.inner.fd, cx, buf)
    }
}

impl<F: Family> futures_io::AsyncBufRead for ReadHalf<F> {
    fn poll_fill_buf(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<&[u8]>> {
        let this = self.get_mut();
        this.rd.poll_fill_buf(&this.inner.drv, &this.inner.fd, cx)
    }
    fn consume(self: Pin<&mut Self>, amt: usize) {
        self.get_mut().rd.consume(amt)
    }
}

impl<F: Family> futures_io::AsyncWrite for WriteHalf<F> {
    fn poll_write(self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &[u8]) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        this.wr.poll_write(&this.inner.drv, &this.inner.fd, cx, buf)
    }
    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        this.wr.poll_flush(&this.inner.drv, &this.inner.fd, cx)
    }
    fn poll_close(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        this.wr.poll_close(&this.inner.drv, &this.inner.fd, cx)
    }
}
