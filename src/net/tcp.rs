//! TCP listener and stream.

use std::fmt;
use std::io;
use std::net::{Shutdown, SocketAddr, ToSocketAddrs};
use std::os::fd::{AsRawFd, OwnedFd, RawFd};

use socket2::{Domain, Protocol, SockAddr, SockRef, Socket, Type};

use crate::buf::{BufResult, IoBuf, IoBufMut};
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

/// A TCP connection. I/O takes owned buffers and gives them back:
/// `let (res, buf) = stream.read(buf).await;`. Methods take `&self`, so one
/// task may read while another writes (see also [`TcpStream::into_split`]).
pub struct TcpStream {
    fd: SharedFd,
    drv: Driver,
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
        Ok(TcpStream {
            fd: SharedFd::new(fd, &drv)?,
            drv,
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

    /// Reads into `buf`'s spare capacity; `Ok(0)` means end of stream (or a
    /// zero-capacity buffer).
    pub async fn read<B: IoBufMut>(&self, buf: B) -> BufResult<usize, B> {
        ops::recv(&self.drv, &self.fd, buf, 0).await
    }

    /// Writes some of `buf`'s bytes; returns how many.
    pub async fn write<B: IoBuf>(&self, buf: B) -> BufResult<usize, B> {
        ops::send(&self.drv, &self.fd, buf, 0).await
    }

    /// Writes all of `buf`'s bytes.
    pub async fn write_all<B: IoBuf>(&self, buf: B) -> BufResult<(), B> {
        let total = buf.bytes_init();
        let mut slice = buf.slice(..);
        let mut done = 0;
        while done < total {
            let (res, s) = self.write(slice).await;
            let buf = s.into_inner();
            match res {
                Ok(0) => return (Err(io::ErrorKind::WriteZero.into()), buf),
                Ok(n) => done += n,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return (Err(e), buf),
            }
            slice = buf.slice(done..);
        }
        (Ok(()), slice.into_inner())
    }

    /// Reads until `buf` holds `len` initialised bytes in total; an early end
    /// of stream is `UnexpectedEof`.
    pub async fn read_exact(&self, mut buf: Vec<u8>, len: usize) -> BufResult<(), Vec<u8>> {
        buf.reserve(len.saturating_sub(buf.len()));
        while buf.len() < len {
            let start = buf.len();
            let (res, s) = self.read(buf.slice(start..len)).await;
            buf = s.into_inner();
            match res {
                Ok(0) => return (Err(io::ErrorKind::UnexpectedEof.into()), buf),
                Ok(_) => {}
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return (Err(e), buf),
            }
        }
        (Ok(()), buf)
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

    /// Splits into a read half and a write half usable from two tasks.
    pub fn into_split(self) -> (OwnedReadHalf, OwnedWriteHalf) {
        let s = std::rc::Rc::new(self);
        (OwnedReadHalf(s.clone()), OwnedWriteHalf(s))
    }
}

impl AsRawFd for TcpStream {
    fn as_raw_fd(&self) -> RawFd {
        self.fd.raw()
    }
}

/// Read half of [`TcpStream::into_split`].
#[derive(Debug)]
pub struct OwnedReadHalf(std::rc::Rc<TcpStream>);

/// Write half of [`TcpStream::into_split`]; dropping it does not shut the
/// connection down (call [`OwnedWriteHalf::shutdown`]).
#[derive(Debug)]
pub struct OwnedWriteHalf(std::rc::Rc<TcpStream>);

impl OwnedReadHalf {
    /// See [`TcpStream::read`].
    pub async fn read<B: IoBufMut>(&self, buf: B) -> BufResult<usize, B> {
        self.0.read(buf).await
    }
    /// See [`TcpStream::read_exact`].
    pub async fn read_exact(&self, buf: Vec<u8>, len: usize) -> BufResult<(), Vec<u8>> {
        self.0.read_exact(buf, len).await
    }
}

impl OwnedWriteHalf {
    /// See [`TcpStream::write`].
    pub async fn write<B: IoBuf>(&self, buf: B) -> BufResult<usize, B> {
        self.0.write(buf).await
    }
    /// See [`TcpStream::write_all`].
    pub async fn write_all<B: IoBuf>(&self, buf: B) -> BufResult<(), B> {
        self.0.write_all(buf).await
    }
    /// Shuts the write direction down (the peer reads end of stream).
    pub fn shutdown(&self) -> io::Result<()> {
        self.0.shutdown(Shutdown::Write)
    }
}
