//! TCP listener and stream.

use std::fmt;
use std::io;
use std::net::{SocketAddr, ToSocketAddrs};
use std::os::fd::{AsRawFd, OwnedFd, RawFd};
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

use socket2::{Domain, Protocol, SockAddr, SockRef, Socket, Type};

use super::ops as net_ops;
use super::stream::{ReadHalf, SocketStream, Tcp, WriteHalf};
use crate::driver::Driver;
use crate::io::{SharedFd, current_driver, ops};

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
        crate::io::set_nonblocking(fd.as_raw_fd(), matches!(drv, Driver::Fallback(_)))?;
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

/// A TCP connection: the [`SocketStream`] of the [`Tcp`] family (the
/// owned-buffer API, halves and `futures-io` impls are shared with
/// [`UnixStream`](super::UnixStream)).
pub type TcpStream = SocketStream<Tcp>;
/// Read half of [`TcpStream::into_split`].
pub type TcpReadHalf = ReadHalf<Tcp>;
/// Write half of [`TcpStream::into_split`].
pub type TcpWriteHalf = WriteHalf<Tcp>;
/// The name tokio uses for [`TcpReadHalf`].
pub type OwnedReadHalf = TcpReadHalf;
/// The name tokio uses for [`TcpWriteHalf`].
pub type OwnedWriteHalf = TcpWriteHalf;

impl SocketStream<Tcp> {
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
        crate::io::set_nonblocking(fd.as_raw_fd(), drv.kind() == crate::DriverKind::Fallback)?;
        Self::from_owned(fd, drv)
    }
}

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
        Poll::Ready(Some(res.and_then(|fd| TcpStream::from_owned(fd, drv))))
    }
}

impl futures_core::stream::FusedStream for Incoming<'_> {
    /// Never: the stream of connections does not end.
    fn is_terminated(&self) -> bool {
        false
    }
}

impl SocketStream<Tcp> {
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
