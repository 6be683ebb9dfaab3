//! asyncio's low-level socket operations on a socket the caller owns:
//! `loop.sock_recv`, `sock_recv_into`, `sock_sendall`, `sock_accept`,
//! `sock_connect`, `sock_recvfrom`, `sock_recvfrom_into`, `sock_sendto`.
//!
//! Each takes anything with an fd (`&socket2::Socket`, `&std::net::TcpStream`,
//! `&UdpSocket`, a `BorrowedFd`, ...) and runs the loop's driver operations
//! (io_uring or the fallback backend) on it. The socket is put in
//! non-blocking mode, as asyncio requires of the sockets it is given.
//!
//! **Ownership**: each call works on its own duplicate of the fd
//! (`F_DUPFD_CLOEXEC`), which the operation owns together with the buffer.
//! A cancelled (dropped) call therefore never leaves the kernel writing
//! into freed memory nor acting on a reused fd number, even if the caller
//! closes its socket right after. What a dropped call may already have done
//! is what any dropped operation may have done (see the [module
//! docs](super)): a receive may have consumed bytes on io_uring only if
//! they had arrived before the cancellation landed; bytes that arrive
//! later are left for the next receive. The price of the duplicate is one
//! `fcntl` and one `close` per call (plus a reactor registration on the
//! fallback backend, like asyncio's `add_reader`/`remove_reader` per
//! call); a socket used for many operations is cheaper as a
//! [`TcpStream`](super::TcpStream) / [`UdpSocket`](super::UdpSocket)
//! (`from_std`).
//!
//! ```
//! use ringloop::net::{sock_accept, sock_connect, sock_recv, sock_sendall};
//! use socket2::{Domain, Socket, Type};
//!
//! ringloop::run(async {
//!     let listener = Socket::new(Domain::IPV4, Type::STREAM, None).unwrap();
//!     listener.bind(&"127.0.0.1:0".parse::<std::net::SocketAddr>().unwrap().into()).unwrap();
//!     listener.listen(8).unwrap();
//!     let addr = listener.local_addr().unwrap();
//!     let client = Socket::new(Domain::IPV4, Type::STREAM, None).unwrap();
//!     sock_connect(&client, addr).await.unwrap();
//!     let (conn, _peer) = sock_accept(&listener).await.unwrap();
//!     sock_sendall(&client, b"ping".to_vec()).await.0.unwrap();
//!     assert_eq!(sock_recv(&conn, 16).await.unwrap(), b"ping");
//! })
//! .unwrap();
//! ```

use std::io;
use std::os::fd::{AsFd, AsRawFd, OwnedFd};

use socket2::{SockAddr, Socket};

use crate::buf::{BufResult, IoBuf, IoBufMut};
use crate::driver::Driver;
use crate::driver::ops::{self as dops, submit};
use crate::io::{SharedFd, current_driver, ops, set_nonblocking};

use super::ops::{One, recv_msg, send_all, send_msg};

/// The loop's driver and an operation-owned duplicate of `sock`, non-blocking.
fn adopt(sock: impl AsFd) -> io::Result<(Driver, SharedFd)> {
    let drv = current_driver()?;
    let owned: OwnedFd = sock.as_fd().try_clone_to_owned()?;
    set_nonblocking(owned.as_raw_fd(), true)?;
    let fd = SharedFd::new(owned, &drv)?;
    Ok((drv, fd))
}

/// Receives up to `nbytes` bytes (asyncio's `loop.sock_recv(sock, nbytes)`).
/// An empty vector means the peer closed its side (end of stream), or
/// `nbytes` was 0. A size that cannot be allocated is `OutOfMemory`.
pub async fn sock_recv(sock: impl AsFd, nbytes: usize) -> io::Result<Vec<u8>> {
    let mut buf = Vec::new();
    if let Err(e) = buf.try_reserve_exact(nbytes) {
        let msg = format!("sock_recv: cannot allocate {nbytes} bytes: {e}");
        return Err(io::Error::new(io::ErrorKind::OutOfMemory, msg));
    }
    // `try_reserve_exact` may give more: ask the kernel for `nbytes` only.
    let (res, slice) = sock_recv_into(sock, buf.slice(0..nbytes)).await;
    res.map(|_| slice.into_inner())
}

/// Receives into `buf`'s capacity and returns how many bytes were stored
/// (asyncio's `loop.sock_recv_into(sock, buf)`); 0 at end of stream. The
/// buffer comes back in every case.
pub async fn sock_recv_into<B: IoBufMut>(sock: impl AsFd, buf: B) -> BufResult<usize, B> {
    let (drv, fd) = match adopt(sock) {
        Ok(v) => v,
        Err(e) => return (Err(e), buf),
    };
    ops::recv(&drv, &fd, buf, 0).await
}

/// Sends every initialised byte of `buf` (asyncio's `loop.sock_sendall`),
/// with `MSG_NOSIGNAL`: a peer that closed gives `BrokenPipe` (or
/// `ConnectionReset`), never `SIGPIPE`. On an error some bytes may have
/// been sent.
pub async fn sock_sendall<B: IoBuf>(sock: impl AsFd, buf: B) -> BufResult<(), B> {
    let (drv, fd) = match adopt(sock) {
        Ok(v) => v,
        Err(e) => return (Err(e), buf),
    };
    send_all(&drv, &fd, buf).await
}

/// Accepts a connection on a listening socket (asyncio's
/// `loop.sock_accept(sock)`): the new socket (non-blocking, close-on-exec)
/// and the peer's address.
pub async fn sock_accept(sock: impl AsFd) -> io::Result<(Socket, SockAddr)> {
    let (drv, fd) = adopt(sock)?;
    let (conn, addr) = ops::accept(&drv, &fd).await?;
    set_nonblocking(conn.as_raw_fd(), true)?;
    Ok((Socket::from(conn), addr))
}

/// Connects `sock` to `addr` (asyncio's `loop.sock_connect(sock, address)`;
/// the address must be resolved: see [`crate::dns::getaddrinfo`]). The
/// non-blocking connect's `EINPROGRESS` is waited out (writability, then
/// `SO_ERROR`); a refused connection is `ConnectionRefused`.
pub async fn sock_connect(sock: impl AsFd, addr: impl Into<SockAddr>) -> io::Result<()> {
    let (drv, fd) = adopt(sock)?;
    match submit(&drv, dops::Connect::new(&fd, addr.into())).await {
        // A kernel whose io_uring CONNECT reports a non-blocking socket's
        // handshake as still in progress instead of completing it (older
        // than the 6.2-era fix): finish the wait here.
        Err(e) if matches!(e.raw_os_error(), Some(libc::EINPROGRESS | libc::EALREADY)) => loop {
            ops::poll_writable(&drv, &fd).await?;
            let s = socket2::SockRef::from(&fd);
            if let Some(err) = s.take_error()? {
                return Err(err);
            }
            match s.peer_addr() {
                Ok(_) => return Ok(()),
                Err(e) if e.raw_os_error() == Some(libc::ENOTCONN) => {}
                Err(e) => return Err(e),
            }
        },
        res => res,
    }
}

/// Receives one datagram of at most `nbytes` bytes and its sender (asyncio's
/// `loop.sock_recvfrom(sock, bufsize)`); the rest of a longer datagram is
/// discarded.
pub async fn sock_recvfrom(sock: impl AsFd, nbytes: usize) -> io::Result<(Vec<u8>, SockAddr)> {
    let mut buf = Vec::new();
    if let Err(e) = buf.try_reserve_exact(nbytes) {
        let msg = format!("sock_recvfrom: cannot allocate {nbytes} bytes: {e}");
        return Err(io::Error::new(io::ErrorKind::OutOfMemory, msg));
    }
    let (res, slice) = sock_recvfrom_into(sock, buf.slice(0..nbytes)).await;
    res.map(|(_, addr)| (slice.into_inner(), addr))
}

/// Receives one datagram into `buf`'s capacity (asyncio's
/// `loop.sock_recvfrom_into(sock, buf)`): bytes stored and the sender.
pub async fn sock_recvfrom_into<B: IoBufMut>(sock: impl AsFd, buf: B) -> BufResult<(usize, SockAddr), B> {
    let (drv, fd) = match adopt(sock) {
        Ok(v) => v,
        Err(e) => return (Err(e), buf),
    };
    let (res, One(buf)) = recv_msg(&drv, &fd, One(buf), true, true).await;
    let res = res.and_then(|r| {
        let addr = r
            .addr
            .ok_or_else(|| io::Error::new(io::ErrorKind::InvalidData, "recvmsg returned no address"))?;
        Ok((r.len, addr))
    });
    (res, buf)
}

/// Sends `buf`'s initialised bytes as one datagram to `addr` (asyncio's
/// `loop.sock_sendto(sock, data, address)`); returns the bytes sent.
pub async fn sock_sendto<B: IoBuf>(sock: impl AsFd, buf: B, addr: impl Into<SockAddr>) -> BufResult<usize, B> {
    let (drv, fd) = match adopt(sock) {
        Ok(v) => v,
        Err(e) => return (Err(e), buf),
    };
    let addr = addr.into();
    let (res, One(buf)) = send_msg(&drv, &fd, One(buf), Some(&addr)).await;
    (res, buf)
}
