//! Unix domain sockets: stream listener and connection, datagram socket.
//!
//! Paths name filesystem sockets; on Linux (and Android) a path whose first
//! byte is NUL (`"\0name"`) names a socket in the abstract namespace, which
//! has no file and vanishes with its last socket. Binding never removes an
//! existing file: binding to a path that exists is `AddrInUse` (as in std
//! and tokio; asyncio's `create_unix_server` deletes a stale socket file
//! first). Dropping a listener does not remove its file either.

use std::fmt;
use std::io;
use std::net::Shutdown;
use std::os::fd::{AsRawFd, OwnedFd, RawFd};
use std::path::Path;
use std::pin::Pin;
use std::task::{Context, Poll};

use socket2::{Domain, SockAddr, SockRef, Socket, Type};

use super::RecvMeta;
use super::ops::{self as net_ops, One};
use super::stream::{ReadHalf, SocketStream, Unix, WriteHalf};
use crate::buf::{BufResult, IoBuf, IoBufMut};
use crate::driver::Driver;
use crate::io::{SharedFd, current_driver, ops};

/// The address of a Unix socket: a path, an abstract name (Linux), or
/// unnamed (an unbound socket, or one end of a pair).
#[derive(Clone)]
pub struct SocketAddr(SockAddr);

impl SocketAddr {
    pub(super) fn new(addr: SockAddr) -> SocketAddr {
        // The kernel reports an unbound peer with a zero-length (or
        // family-only) address: normalise to a proper unnamed AF_UNIX one.
        if addr.is_unix() && addr.len() as usize >= sun_path_offset() {
            SocketAddr(addr)
        } else {
            SocketAddr(unnamed())
        }
    }

    /// Whether the socket has no name.
    pub fn is_unnamed(&self) -> bool {
        self.0.is_unnamed()
    }

    /// The filesystem path, if it has one.
    pub fn as_pathname(&self) -> Option<&Path> {
        self.0.as_pathname()
    }

    /// The abstract-namespace name (without the leading NUL), if it has one.
    #[cfg(any(target_os = "linux", target_os = "android"))]
    pub fn as_abstract_name(&self) -> Option<&[u8]> {
        self.0.as_abstract_namespace()
    }

    #[cfg(any(target_os = "linux", target_os = "android"))]
    fn abstract_name(&self) -> Option<&[u8]> {
        self.0.as_abstract_namespace()
    }

    #[cfg(not(any(target_os = "linux", target_os = "android")))]
    fn abstract_name(&self) -> Option<&[u8]> {
        None
    }
}

impl fmt::Debug for SocketAddr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if let Some(p) = self.as_pathname() {
            write!(f, "{p:?} (pathname)")
        } else if let Some(name) = self.abstract_name() {
            write!(f, "\"\\0{}\" (abstract)", name.escape_ascii())
        } else {
            f.write_str("(unnamed)")
        }
    }
}

fn sun_path_offset() -> usize {
    std::mem::offset_of!(libc::sockaddr_un, sun_path)
}

fn unnamed() -> SockAddr {
    // SAFETY: an all-zero `sockaddr_storage` is valid; we set the family and
    // declare only the family-sized prefix (the unnamed form).
    unsafe {
        let mut storage: libc::sockaddr_storage = std::mem::zeroed();
        storage.ss_family = libc::AF_UNIX as libc::sa_family_t;
        SockAddr::new(storage, sun_path_offset() as libc::socklen_t)
    }
}

/// A Unix socket address from a path (leading NUL: abstract namespace).
/// The empty path is refused (it would mean "autobind").
fn path_addr(path: &Path) -> io::Result<SockAddr> {
    if path.as_os_str().is_empty() {
        return Err(io::Error::new(io::ErrorKind::InvalidInput, "empty Unix socket path"));
    }
    SockAddr::unix(path)
}

fn local_of(fd: &SharedFd) -> io::Result<SocketAddr> {
    Ok(SocketAddr::new(SockRef::from(fd).local_addr()?))
}

fn peer_of(fd: &SharedFd) -> io::Result<SocketAddr> {
    Ok(SocketAddr::new(SockRef::from(fd).peer_addr()?))
}

fn adopt(fd: OwnedFd) -> io::Result<(SharedFd, Driver)> {
    let drv = current_driver()?;
    crate::io::set_nonblocking(fd.as_raw_fd(), matches!(drv, Driver::Fallback(_)))?;
    Ok((SharedFd::new(fd, &drv)?, drv))
}

/// A Unix stream listener.
pub struct UnixListener {
    fd: SharedFd,
    drv: Driver,
}

impl fmt::Debug for UnixListener {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("UnixListener")
            .field("fd", &self.fd.raw())
            .field("local", &self.local_addr().ok())
            .finish()
    }
}

impl UnixListener {
    /// Binds to `path` (a leading NUL byte: Linux abstract name) and listens
    /// with a backlog of 1024. An existing file at `path` is `AddrInUse`.
    pub fn bind(path: impl AsRef<Path>) -> io::Result<UnixListener> {
        let addr = path_addr(path.as_ref())?;
        let drv = current_driver()?;
        let sock = Socket::new(Domain::UNIX, Type::STREAM.cloexec(), None)?;
        sock.bind(&addr)?;
        sock.listen(1024)?;
        Ok(UnixListener {
            fd: SharedFd::new(OwnedFd::from(sock), &drv)?,
            drv,
        })
    }

    /// Adopts a bound, listening std listener.
    pub fn from_std(l: std::os::unix::net::UnixListener) -> io::Result<UnixListener> {
        let (fd, drv) = adopt(OwnedFd::from(l))?;
        Ok(UnixListener { fd, drv })
    }

    /// Waits for a connection; returns it and the peer's (usually unnamed)
    /// address.
    pub async fn accept(&self) -> io::Result<(UnixStream, SocketAddr)> {
        let (fd, addr) = ops::accept(&self.drv, &self.fd).await?;
        let stream = UnixStream::from_owned(fd, self.drv.clone())?;
        Ok((stream, SocketAddr::new(addr)))
    }

    /// A stream of accepted connections; see
    /// [`TcpListener::incoming`](super::TcpListener::incoming).
    pub fn incoming(&self) -> UnixIncoming<'_> {
        UnixIncoming {
            acceptor: net_ops::Acceptor::new(&self.drv, &self.fd),
            _listener: std::marker::PhantomData,
        }
    }

    /// The bound address.
    pub fn local_addr(&self) -> io::Result<SocketAddr> {
        local_of(&self.fd)
    }
}

impl AsRawFd for UnixListener {
    fn as_raw_fd(&self) -> RawFd {
        self.fd.raw()
    }
}

impl std::os::fd::AsFd for UnixListener {
    fn as_fd(&self) -> std::os::fd::BorrowedFd<'_> {
        self.fd.as_fd()
    }
}

/// The stream returned by [`UnixListener::incoming`].
pub struct UnixIncoming<'a> {
    acceptor: net_ops::Acceptor,
    _listener: std::marker::PhantomData<&'a UnixListener>,
}

impl fmt::Debug for UnixIncoming<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("UnixIncoming").finish_non_exhaustive()
    }
}

impl futures_core::Stream for UnixIncoming<'_> {
    type Item = io::Result<UnixStream>;

    fn poll_next(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        let this = self.get_mut();
        let res = std::task::ready!(this.acceptor.poll_accept(cx));
        let drv = this.acceptor.driver().clone();
        Poll::Ready(Some(res.and_then(|fd| UnixStream::from_owned(fd, drv))))
    }
}

/// A Unix stream connection: the [`SocketStream`] of the [`Unix`] family,
/// with the same owned-buffer API, halves and `futures-io` impls as
/// [`TcpStream`](super::TcpStream).
pub type UnixStream = SocketStream<Unix>;
/// Read half of [`UnixStream::into_split`].
pub type UnixReadHalf = ReadHalf<Unix>;
/// Write half of [`UnixStream::into_split`].
pub type UnixWriteHalf = WriteHalf<Unix>;

impl SocketStream<Unix> {
    /// Connects to the listener at `path` (leading NUL: abstract name).
    pub async fn connect(path: impl AsRef<Path>) -> io::Result<UnixStream> {
        let addr = path_addr(path.as_ref())?;
        let drv = current_driver()?;
        let sock = Socket::new(Domain::UNIX, Type::STREAM.cloexec(), None)?;
        let stream = UnixStream::from_owned(OwnedFd::from(sock), drv)?;
        ops::connect(&stream.drv, &stream.fd, addr).await?;
        Ok(stream)
    }

    /// A connected pair of unnamed sockets (`socketpair(2)`).
    pub fn pair() -> io::Result<(UnixStream, UnixStream)> {
        let drv = current_driver()?;
        let (a, b) = Socket::pair(Domain::UNIX, Type::STREAM.cloexec(), None)?;
        Ok((
            UnixStream::from_owned(OwnedFd::from(a), drv.clone())?,
            UnixStream::from_owned(OwnedFd::from(b), drv)?,
        ))
    }

    /// Adopts a connected std stream.
    pub fn from_std(s: std::os::unix::net::UnixStream) -> io::Result<UnixStream> {
        let (fd, drv) = adopt(OwnedFd::from(s))?;
        Ok(UnixStream::from_shared(fd, drv))
    }
}

/// A Unix datagram socket. Message boundaries are kept; a datagram longer
/// than the receive buffer is truncated, which
/// [`recv_msg`](Self::recv_msg) reports.
pub struct UnixDatagram {
    fd: SharedFd,
    drv: Driver,
}

impl fmt::Debug for UnixDatagram {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("UnixDatagram")
            .field("fd", &self.fd.raw())
            .field("local", &self.local_addr().ok())
            .field("peer", &self.peer_addr().ok())
            .finish()
    }
}

impl UnixDatagram {
    fn from_socket(sock: Socket, drv: Driver) -> io::Result<UnixDatagram> {
        Ok(UnixDatagram {
            fd: SharedFd::new_socket(OwnedFd::from(sock), &drv)?,
            drv,
        })
    }

    /// A socket bound to `path` (leading NUL: abstract name); an existing
    /// file is `AddrInUse`.
    pub fn bind(path: impl AsRef<Path>) -> io::Result<UnixDatagram> {
        let addr = path_addr(path.as_ref())?;
        let drv = current_driver()?;
        let sock = Socket::new(Domain::UNIX, Type::DGRAM.cloexec(), None)?;
        sock.bind(&addr)?;
        Self::from_socket(sock, drv)
    }

    /// An unbound socket (it can send; replies need a bound sender).
    pub fn unbound() -> io::Result<UnixDatagram> {
        let drv = current_driver()?;
        Self::from_socket(Socket::new(Domain::UNIX, Type::DGRAM.cloexec(), None)?, drv)
    }

    /// A connected pair of unnamed datagram sockets.
    pub fn pair() -> io::Result<(UnixDatagram, UnixDatagram)> {
        let drv = current_driver()?;
        let (a, b) = Socket::pair(Domain::UNIX, Type::DGRAM.cloexec(), None)?;
        Ok((Self::from_socket(a, drv.clone())?, Self::from_socket(b, drv)?))
    }

    /// Adopts a std datagram socket.
    pub fn from_std(s: std::os::unix::net::UnixDatagram) -> io::Result<UnixDatagram> {
        let (fd, drv) = adopt(OwnedFd::from(s))?;
        Ok(UnixDatagram { fd, drv })
    }

    /// Sets the default peer (a datagram connect never blocks).
    pub fn connect(&self, path: impl AsRef<Path>) -> io::Result<()> {
        SockRef::from(&self.fd).connect(&path_addr(path.as_ref())?)
    }

    /// Sends one datagram to the connected peer.
    pub async fn send<B: IoBuf>(&self, buf: B) -> BufResult<usize, B> {
        ops::send(&self.drv, &self.fd, buf, 0).await
    }

    /// Receives one datagram into `buf`'s capacity; returns the bytes stored.
    pub async fn recv<B: IoBufMut>(&self, buf: B) -> BufResult<usize, B> {
        let (res, One(buf)) = net_ops::recv_msg(&self.drv, &self.fd, One(buf), false, true).await;
        (res.map(|r| r.len), buf)
    }

    /// Sends one datagram to the socket at `path`.
    pub async fn send_to<B: IoBuf>(&self, buf: B, path: impl AsRef<Path>) -> BufResult<usize, B> {
        let addr = match path_addr(path.as_ref()) {
            Ok(a) => a,
            Err(e) => return (Err(e), buf),
        };
        let (res, One(buf)) = net_ops::send_msg(&self.drv, &self.fd, One(buf), Some(&addr)).await;
        (res, buf)
    }

    /// Receives one datagram; returns the bytes stored and the sender.
    pub async fn recv_from<B: IoBufMut>(&self, buf: B) -> BufResult<(usize, SocketAddr), B> {
        let (res, buf) = self.recv_msg(buf).await;
        (res.map(|m| (m.len, m.addr)), buf)
    }

    /// Receives one datagram and reports the bytes stored, the sender and
    /// whether the datagram was truncated.
    pub async fn recv_msg<B: IoBufMut>(&self, buf: B) -> BufResult<RecvMeta<SocketAddr>, B> {
        let (res, One(buf)) = net_ops::recv_msg(&self.drv, &self.fd, One(buf), true, true).await;
        let res = res.map(|r| RecvMeta {
            len: r.len,
            addr: r.addr.map(SocketAddr::new).unwrap_or_else(|| SocketAddr(unnamed())),
            truncated: r.truncated,
        });
        (res, buf)
    }

    /// The local address.
    pub fn local_addr(&self) -> io::Result<SocketAddr> {
        local_of(&self.fd)
    }

    /// The connected peer (`NotConnected` if none).
    pub fn peer_addr(&self) -> io::Result<SocketAddr> {
        peer_of(&self.fd)
    }

    /// Shuts down one or both directions.
    pub fn shutdown(&self, how: Shutdown) -> io::Result<()> {
        ops::shutdown(&self.fd, how)
    }
}

impl AsRawFd for UnixDatagram {
    fn as_raw_fd(&self) -> RawFd {
        self.fd.raw()
    }
}

impl std::os::fd::AsFd for UnixDatagram {
    fn as_fd(&self) -> std::os::fd::BorrowedFd<'_> {
        self.fd.as_fd()
    }
}
