//! TCP listener and stream.

use std::fmt;
use std::io;
use std::net::{Shutdown, SocketAddr, ToSocketAddrs};
use std::os::fd::{AsRawFd, OwnedFd, RawFd};
use std::pin::Pin;
use std::rc::Rc;
use std::task::{Context, Poll};
use std::time::Duration;

use socket2::{Domain, Protocol, SockAddr, SockRef, Socket, Type};

use crate::buf::{AsyncReadOwned, AsyncWriteOwned, BufResult, IoBuf, IoBufMut};
use crate::driver::Driver;
use crate::io::{SharedFd, ShortRead, current_driver, ops};
use crate::net::RecvStream;
use crate::net::compat::{self, CompatSlot, ReadState, WriteState};
use crate::net::ops as net_ops;

fn to_std(addr: &SockAddr) -> io::Result<SocketAddr> {
    addr.as_socket()
        .ok_or_else(|| io::Error::new(io::ErrorKind::InvalidData, "not an IP socket address"))
}

/// A TCP listening socket (asyncio's `start_server` building block).
pub struct TcpListener {
    fd: SharedFd,
    drv: Driver,
}

impl fmt::Debug for TcpListener {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TcpListener")
            .field("fd", &self.fd.raw())
            .field("local", &self.local_addr().ok())
            .finish()
    }
}

impl TcpListener {
    /// Binds with `SO_REUSEADDR` and a backlog of 1024. `addr` must be a
    /// literal address (no name resolution, which could block the loop).
    pub fn bind(addr: SocketAddr) -> io::Result<TcpListener> {
        Self::bind_with(addr, false, 1024)
    }

    /// Binds with optional `SO_REUSEPORT` (Unix) and an explicit backlog.
    pub fn bind_with(addr: SocketAddr, reuse_port: bool, backlog: i32) -> io::Result<TcpListener> {
        let drv = current_driver()?;
        let sock = Socket::new(Domain::for_address(addr), Type::STREAM.cloexec(), Some(Protocol::TCP))?;
        sock.set_reuse_address(true)?;
        if reuse_port {
            sock.set_reuse_port(true)?;
        }
        sock.bind(&addr.into())?;
        sock.listen(backlog)?;
        let fd = SharedFd::new(OwnedFd::from(sock), &drv)?;
        Ok(TcpListener { fd, drv })
    }

    /// Adopts a bound, listening std listener.
    pub fn from_std(l: std::net::TcpListener) -> io::Result<TcpListener> {
        let drv = current_driver()?;
        let fd = OwnedFd::from(l);
        crate::io::set_nonblocking(fd.as_raw_fd(), matches!(drv, Driver::Readiness(_)))?;
        Ok(TcpListener {
            fd: SharedFd::new(fd, &drv)?,
            drv,
        })
    }

    /// Waits for a connection.
    pub async fn accept(&self) -> io::Result<(TcpStream, SocketAddr)> {
        let (fd, addr) = ops::accept(&self.drv, &self.fd).await?;
        let stream = TcpStream::from_owned(fd, self.drv.clone())?;
        Ok((stream, to_std(&addr)?))
    }

    /// The bound address.
    pub fn local_addr(&self) -> io::Result<SocketAddr> {
        to_std(&SockRef::from(&self.fd).local_addr()?)
    }
}

impl AsRawFd for TcpListener {
    fn as_raw_fd(&self) -> RawFd {
        self.fd.raw()
    }
}

impl std::os::fd::AsFd for TcpListener {
    fn as_fd(&self) -> std::os::fd::BorrowedFd<'_> {
        self.fd.as_fd()
    }
}

/// A TCP connection. I/O takes owned buffers and gives them back:
/// `let (res, buf) = stream.read(buf).await;` (with
/// [`AsyncReadOwned`]/[`AsyncWriteOwned`] in scope). Methods take `&self`, so one
/// task may read while another writes (see also [`TcpStream::into_split`]).
///
/// It also implements `futures-io`'s `AsyncRead`, `AsyncBufRead` and
/// `AsyncWrite` (internally buffered on io_uring; see the
/// [`net`](crate::net) module docs), for crates built on those traits.
pub struct TcpStream {
    fd: SharedFd,
    drv: Driver,
    compat: CompatSlot,
}

impl fmt::Debug for TcpStream {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TcpStream")
            .field("fd", &self.fd.raw())
            .field("local", &self.local_addr().ok())
            .field("peer", &self.peer_addr().ok())
            .finish()
    }
}

impl TcpStream {
    fn from_owned(fd: OwnedFd, drv: Driver) -> io::Result<TcpStream> {
        let fd = SharedFd::new(fd, &drv)?;
        fd.set_short_read(ShortRead::Drains);
        Ok(TcpStream {
            fd,
            drv,
            compat: CompatSlot::default(),
        })
    }

    /// Connects to `addr`, resolving host names on the blocking pool and
    /// trying each resolved address in turn (the last error is returned).
    pub async fn connect<A: ToSocketAddrs + Send + 'static>(addr: A) -> io::Result<TcpStream> {
        let addrs = super::resolve(addr).await?;
        let mut last = None;
        for a in addrs {
            match Self::connect_addr(a).await {
                Ok(s) => return Ok(s),
                Err(e) => last = Some(e),
            }
        }
        Err(last.unwrap_or_else(|| io::Error::new(io::ErrorKind::InvalidInput, "no address")))
    }

    /// Connects to one literal address.
    pub async fn connect_addr(addr: SocketAddr) -> io::Result<TcpStream> {
        let drv = current_driver()?;
        let sock = Socket::new(Domain::for_address(addr), Type::STREAM.cloexec(), Some(Protocol::TCP))?;
        let stream = TcpStream::from_owned(OwnedFd::from(sock), drv)?;
        ops::connect(&stream.drv, &stream.fd, addr.into()).await?;
        Ok(stream)
    }

    /// Shuts down one or both directions.
    pub fn shutdown(&self, how: Shutdown) -> io::Result<()> {
        ops::shutdown(&self.fd, how)
    }

    /// The peer's address.
    pub fn peer_addr(&self) -> io::Result<SocketAddr> {
        to_std(&SockRef::from(&self.fd).peer_addr()?)
    }

    /// The local address.
    pub fn local_addr(&self) -> io::Result<SocketAddr> {
        to_std(&SockRef::from(&self.fd).local_addr()?)
    }

    /// `TCP_NODELAY`.
    pub fn set_nodelay(&self, on: bool) -> io::Result<()> {
        SockRef::from(&self.fd).set_nodelay(on)
    }

    /// Whether `TCP_NODELAY` is set.
    pub fn nodelay(&self) -> io::Result<bool> {
        SockRef::from(&self.fd).nodelay()
    }

    /// Adopts a connected std stream.
    pub fn from_std(s: std::net::TcpStream) -> io::Result<TcpStream> {
        let drv = current_driver()?;
        let fd = OwnedFd::from(s);
        crate::io::set_nonblocking(fd.as_raw_fd(), matches!(drv, Driver::Readiness(_)))?;
        Self::from_owned(fd, drv)
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
    pub fn into_split(mut self) -> (OwnedReadHalf, OwnedWriteHalf) {
        let state = self.compat.take();
        let s = Rc::new(self);
        (
            OwnedReadHalf {
                inner: s.clone(),
                rd: state.rd,
            },
            OwnedWriteHalf { inner: s, wr: state.wr },
        )
    }
}

impl AsRawFd for TcpStream {
    fn as_raw_fd(&self) -> RawFd {
        self.fd.raw()
    }
}

impl std::os::fd::AsFd for TcpStream {
    fn as_fd(&self) -> std::os::fd::BorrowedFd<'_> {
        self.fd.as_fd()
    }
}

/// Read half of [`TcpStream::into_split`] (also `AsyncRead` /
/// `AsyncBufRead`).
pub struct OwnedReadHalf {
    inner: Rc<TcpStream>,
    rd: ReadState,
}

/// Write half of [`TcpStream::into_split`] (also `AsyncWrite`); dropping it
/// does not shut the connection down (call [`OwnedWriteHalf::shutdown`] or
/// `AsyncWriteExt::close`).
pub struct OwnedWriteHalf {
    inner: Rc<TcpStream>,
    wr: WriteState,
}

impl fmt::Debug for OwnedReadHalf {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_tuple("OwnedReadHalf").field(&self.inner).finish()
    }
}

impl fmt::Debug for OwnedWriteHalf {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_tuple("OwnedWriteHalf").field(&self.inner).finish()
    }
}

impl AsyncReadOwned for TcpStream {
    async fn read<B: IoBufMut>(&self, buf: B) -> BufResult<usize, B> {
        ops::recv(&self.drv, &self.fd, buf, 0).await
    }

    async fn read_exact(&self, buf: Vec<u8>, len: usize) -> BufResult<(), Vec<u8>> {
        net_ops::recv_exact(&self.drv, &self.fd, buf, len).await
    }
}

impl AsyncWriteOwned for TcpStream {
    async fn write<B: IoBuf>(&self, buf: B) -> BufResult<usize, B> {
        ops::send(&self.drv, &self.fd, buf, 0).await
    }

    /// Closes the connection and reports `close(2)`'s result (io_uring
    /// `CLOSE` on the io_uring backend), after flushing the bytes the
    /// `futures-io` `AsyncWrite` impl accepted (a failed flush is reported
    /// after the close). If a dropped operation still holds the socket (its
    /// cancellation is in flight), the socket is closed when that completes
    /// and `Ok` is returned.
    async fn close(self) -> io::Result<()> {
        let TcpStream { fd, drv, mut compat } = self;
        // Bytes the `futures-io` impl accepted go out first.
        let flushed = compat.flush(&drv, &fd).await;
        // The compat state may hold in-flight operations (and fd handles).
        drop(compat);
        let closed = net_ops::close(&drv, fd).await;
        flushed.and(closed)
    }
}

impl AsyncReadOwned for OwnedReadHalf {
    async fn read<B: IoBufMut>(&self, buf: B) -> BufResult<usize, B> {
        self.inner.read(buf).await
    }

    async fn read_exact(&self, buf: Vec<u8>, len: usize) -> BufResult<(), Vec<u8>> {
        self.inner.read_exact(buf, len).await
    }
}

impl AsyncWriteOwned for OwnedWriteHalf {
    async fn write<B: IoBuf>(&self, buf: B) -> BufResult<usize, B> {
        self.inner.write(buf).await
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

impl OwnedWriteHalf {
    /// Shuts the write direction down (the peer reads end of stream).
    pub fn shutdown(&self) -> io::Result<()> {
        self.inner.shutdown(Shutdown::Write)
    }
}

impl OwnedReadHalf {
    /// See [`TcpStream::recv_stream`].
    pub fn recv_stream(&self) -> RecvStream<'_> {
        RecvStream::new(&self.inner.drv, &self.inner.fd)
    }

    /// See [`TcpStream::readv`].
    pub async fn readv<B: IoBufMut>(&self, bufs: Vec<B>) -> BufResult<usize, Vec<B>> {
        self.inner.readv(bufs).await
    }
    /// The connection's peer address.
    pub fn peer_addr(&self) -> io::Result<SocketAddr> {
        self.inner.peer_addr()
    }
    /// The connection's local address.
    pub fn local_addr(&self) -> io::Result<SocketAddr> {
        self.inner.local_addr()
    }
}

impl OwnedWriteHalf {
    /// See [`TcpStream::writev`].
    pub async fn writev<B: IoBuf>(&self, bufs: Vec<B>) -> BufResult<usize, Vec<B>> {
        self.inner.writev(bufs).await
    }
    /// The connection's peer address.
    pub fn peer_addr(&self) -> io::Result<SocketAddr> {
        self.inner.peer_addr()
    }
    /// The connection's local address.
    pub fn local_addr(&self) -> io::Result<SocketAddr> {
        self.inner.local_addr()
    }
}

compat::impl_futures_io!(TcpStream);
compat::impl_futures_io_read_half!(OwnedReadHalf);
compat::impl_futures_io_write_half!(OwnedWriteHalf);

impl TcpListener {
    /// A stream of accepted connections (`futures_core::Stream` of
    /// `io::Result<TcpStream>`). It never ends; an accept error (e.g.
    /// `EMFILE`) is yielded as an item and the next poll accepts again.
    /// Dropping it cancels the pending accept.
    pub fn incoming(&self) -> Incoming<'_> {
        Incoming {
            acceptor: net_ops::Acceptor::new(&self.drv, &self.fd),
            _listener: std::marker::PhantomData,
        }
    }

    /// `IP_TTL` of accepted sockets.
    pub fn set_ttl(&self, ttl: u32) -> io::Result<()> {
        SockRef::from(&self.fd).set_ttl(ttl)
    }

    /// `IP_TTL`.
    pub fn ttl(&self) -> io::Result<u32> {
        SockRef::from(&self.fd).ttl()
    }
}

/// The stream returned by [`TcpListener::incoming`].
pub struct Incoming<'a> {
    acceptor: net_ops::Acceptor,
    _listener: std::marker::PhantomData<&'a TcpListener>,
}

impl fmt::Debug for Incoming<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Incoming").finish_non_exhaustive()
    }
}

impl futures_core::Stream for Incoming<'_> {
    type Item = io::Result<TcpStream>;

    fn poll_next(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        let this = self.get_mut();
        let res = std::task::ready!(this.acceptor.poll_accept(cx));
        let drv = this.acceptor.driver().clone();
        Poll::Ready(Some(res.and_then(|(fd, _addr)| TcpStream::from_owned(fd, drv))))
    }
}

impl TcpStream {
    /// Vectored read (`recvmsg` with one iovec per buffer): fills `bufs` in
    /// order, each from the start of its capacity (like [`read`](Self::read));
    /// returns the total. `Ok(0)`: end of stream, or no capacity at all.
    pub async fn readv<B: IoBufMut>(&self, bufs: Vec<B>) -> BufResult<usize, Vec<B>> {
        net_ops::recv_vectored(&self.drv, &self.fd, bufs).await
    }

    /// Vectored write (`sendmsg` with one iovec per buffer, `MSG_NOSIGNAL`):
    /// sends some of the buffers' bytes in order; returns how many.
    pub async fn writev<B: IoBuf>(&self, bufs: Vec<B>) -> BufResult<usize, Vec<B>> {
        net_ops::send_vectored(&self.drv, &self.fd, bufs).await
    }

    /// `IP_TTL`.
    pub fn set_ttl(&self, ttl: u32) -> io::Result<()> {
        SockRef::from(&self.fd).set_ttl(ttl)
    }

    /// `IP_TTL`.
    pub fn ttl(&self) -> io::Result<u32> {
        SockRef::from(&self.fd).ttl()
    }

    /// `SO_LINGER`: `None` (default) closes in the background; `Some(d)`
    /// makes close wait up to `d` for unsent data (`Some(ZERO)`: reset).
    pub fn set_linger(&self, linger: Option<Duration>) -> io::Result<()> {
        SockRef::from(&self.fd).set_linger(linger)
    }

    /// `SO_LINGER`.
    pub fn linger(&self) -> io::Result<Option<Duration>> {
        SockRef::from(&self.fd).linger()
    }

    /// `SO_KEEPALIVE`: `None` turns keep-alive probes off; `Some(idle)` turns
    /// them on, first probe after `idle` without traffic (`TCP_KEEPIDLE`, or
    /// `TCP_KEEPALIVE` on Apple systems).
    pub fn set_keepalive(&self, idle: Option<Duration>) -> io::Result<()> {
        let sock = SockRef::from(&self.fd);
        match idle {
            None => sock.set_keepalive(false),
            Some(d) => sock.set_tcp_keepalive(&socket2::TcpKeepalive::new().with_time(d)),
        }
    }

    /// Whether `SO_KEEPALIVE` is on.
    pub fn keepalive(&self) -> io::Result<bool> {
        SockRef::from(&self.fd).keepalive()
    }
}
