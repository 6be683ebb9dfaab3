//! UDP sockets.

use std::fmt;
use std::io;
use std::net::{Ipv4Addr, Ipv6Addr, SocketAddr, ToSocketAddrs};
use std::os::fd::{AsRawFd, OwnedFd, RawFd};

use socket2::{Domain, Protocol, SockAddr, SockRef, Socket, Type};

use super::RecvMeta;
use super::ops::{self as net_ops, One};
use crate::buf::{BufResult, IoBuf, IoBufMut};
use crate::driver::Driver;
use crate::io::{SharedFd, current_driver, ops};

fn to_std(addr: &SockAddr) -> io::Result<SocketAddr> {
    addr.as_socket()
        .ok_or_else(|| io::Error::new(io::ErrorKind::InvalidData, "not an IP socket address"))
}

/// A UDP socket (asyncio's datagram endpoint building block). Message
/// boundaries are kept: each send is one datagram, each receive takes one.
///
/// A datagram longer than the receive buffer is truncated (the rest is
/// discarded by the kernel, as with std and tokio). [`recv`](Self::recv) and
/// [`recv_from`](Self::recv_from) return the bytes stored;
/// [`recv_msg`](Self::recv_msg) also reports whether the datagram was
/// truncated. Methods take `&self`, so several tasks may send and receive
/// at once.
pub struct UdpSocket {
    fd: SharedFd,
    drv: Driver,
}

impl fmt::Debug for UdpSocket {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("UdpSocket")
            .field("fd", &self.fd.raw())
            .field("local", &self.local_addr().ok())
            .field("peer", &self.peer_addr().ok())
            .finish()
    }
}

impl UdpSocket {
    /// Binds to a literal address (port 0 picks a free port).
    pub fn bind(addr: SocketAddr) -> io::Result<UdpSocket> {
        Self::bind_with(addr, false)
    }

    /// Binds with optional `SO_REUSEPORT` (Unix): several sockets (one per
    /// loop) on one address share its datagrams, spread by the kernel by
    /// a hash of the source (see [`attach_reuseport_cpu_steering`](super::attach_reuseport_cpu_steering)
    /// to steer by CPU instead).
    pub fn bind_with(addr: SocketAddr, reuse_port: bool) -> io::Result<UdpSocket> {
        let drv = current_driver()?;
        let sock = Socket::new(Domain::for_address(addr), Type::DGRAM.cloexec(), Some(Protocol::UDP))?;
        if reuse_port {
            sock.set_reuse_port(true)?;
        }
        sock.bind(&addr.into())?;
        Ok(UdpSocket {
            fd: SharedFd::new_socket(OwnedFd::from(sock), &drv)?,
            drv,
        })
    }

    /// Adopts a bound std socket.
    pub fn from_std(s: std::net::UdpSocket) -> io::Result<UdpSocket> {
        let drv = current_driver()?;
        let fd = OwnedFd::from(s);
        crate::io::set_nonblocking(fd.as_raw_fd(), matches!(drv, Driver::Fallback(_)))?;
        Ok(UdpSocket {
            fd: SharedFd::new_socket(fd, &drv)?,
            drv,
        })
    }

    /// Sets the default peer: [`send`](Self::send) goes there and only its
    /// datagrams are received. Host names are resolved on the blocking pool;
    /// each resolved address is tried in turn (the last error is returned).
    pub async fn connect<A: ToSocketAddrs + Send + 'static>(&self, addr: A) -> io::Result<()> {
        let addrs = super::resolve(addr).await?;
        let mut last = None;
        for a in addrs {
            // A datagram connect never blocks: it only records the peer.
            match SockRef::from(&self.fd).connect(&a.into()) {
                Ok(()) => return Ok(()),
                Err(e) => last = Some(e),
            }
        }
        Err(last.unwrap_or_else(|| io::Error::new(io::ErrorKind::InvalidInput, "no address")))
    }

    /// Sends `buf`'s initialised bytes as one datagram to the connected peer.
    pub async fn send<B: IoBuf>(&self, buf: B) -> BufResult<usize, B> {
        ops::send(&self.drv, &self.fd, buf, 0).await
    }

    /// Receives one datagram from the connected peer into `buf`'s capacity
    /// (from its start); returns the bytes stored (a longer datagram is
    /// truncated: use [`recv_msg`](Self::recv_msg) to detect that).
    pub async fn recv<B: IoBufMut>(&self, buf: B) -> BufResult<usize, B> {
        let (res, One(buf)) = net_ops::recv_msg(&self.drv, &self.fd, One(buf), false, true).await;
        (res.map(|r| r.len), buf)
    }

    /// Sends `buf`'s initialised bytes as one datagram to `target` (a
    /// literal address: an address of the wrong family, port 0 and the like
    /// are errors).
    pub async fn send_to<B: IoBuf>(&self, buf: B, target: SocketAddr) -> BufResult<usize, B> {
        net_ops::send_to(&self.drv, &self.fd, buf, SockAddr::from(target)).await
    }

    /// Receives one datagram into `buf`'s capacity; returns the bytes stored
    /// and the sender (a longer datagram is truncated: use
    /// [`recv_msg`](Self::recv_msg) to detect that).
    pub async fn recv_from<B: IoBufMut>(&self, buf: B) -> BufResult<(usize, SocketAddr), B> {
        let (res, buf) = self.recv_msg(buf).await;
        (res.map(|m| (m.len, m.addr)), buf)
    }

    /// Receives one datagram into `buf`'s capacity and reports the bytes
    /// stored, the sender, and whether the datagram was longer than the
    /// buffer ([`RecvMeta::truncated`]).
    pub async fn recv_msg<B: IoBufMut>(&self, buf: B) -> BufResult<RecvMeta<SocketAddr>, B> {
        let (res, One(buf)) = net_ops::recv_msg(&self.drv, &self.fd, One(buf), true, true).await;
        let res = res.and_then(|r| {
            let addr = r
                .addr
                .as_ref()
                .ok_or_else(|| io::Error::new(io::ErrorKind::InvalidData, "recvmsg returned no address"))?;
            Ok(RecvMeta {
                len: r.len,
                addr: to_std(addr)?,
                truncated: r.truncated,
            })
        });
        (res, buf)
    }

    /// Received datagrams in buffers of the loop's receive pool, with
    /// their senders, as a `futures_core::Stream` (or
    /// [`RecvFromStream::next_datagram`](super::RecvFromStream::next_datagram)):
    /// on io_uring one multishot `recvmsg` stays armed and the kernel
    /// fills pool buffers (no SQE per datagram, no copy); drop a buffer to
    /// return it. A datagram longer than a pool buffer's room (the buffer
    /// size, 4 KiB by default, less 44 bytes of header and address; see
    /// `Builder::recv_pool`) is truncated there and reported with
    /// [`RecvMeta::truncated`](super::RecvMeta::truncated); on the fallback
    /// backend up to 64 KiB fit. Use [`recv_from`](Self::recv_from) to
    /// receive into memory you own.
    pub fn recv_from_stream(&self) -> super::RecvFromStream<'_> {
        super::RecvFromStream::new(&self.drv, &self.fd)
    }

    /// The bound address.
    pub fn local_addr(&self) -> io::Result<SocketAddr> {
        to_std(&SockRef::from(&self.fd).local_addr()?)
    }

    /// The connected peer (`NotConnected` if none).
    pub fn peer_addr(&self) -> io::Result<SocketAddr> {
        to_std(&SockRef::from(&self.fd).peer_addr()?)
    }

    /// `SO_BROADCAST`: allow sending to broadcast addresses.
    pub fn set_broadcast(&self, on: bool) -> io::Result<()> {
        SockRef::from(&self.fd).set_broadcast(on)
    }

    /// `SO_BROADCAST`.
    pub fn broadcast(&self) -> io::Result<bool> {
        SockRef::from(&self.fd).broadcast()
    }

    /// `IP_TTL` (IPv4 unicast time-to-live).
    pub fn set_ttl(&self, ttl: u32) -> io::Result<()> {
        SockRef::from(&self.fd).set_ttl(ttl)
    }

    /// `IP_TTL`.
    pub fn ttl(&self) -> io::Result<u32> {
        SockRef::from(&self.fd).ttl()
    }

    /// `IP_MULTICAST_TTL`.
    pub fn set_multicast_ttl_v4(&self, ttl: u32) -> io::Result<()> {
        SockRef::from(&self.fd).set_multicast_ttl_v4(ttl)
    }

    /// `IP_MULTICAST_TTL`.
    pub fn multicast_ttl_v4(&self) -> io::Result<u32> {
        SockRef::from(&self.fd).multicast_ttl_v4()
    }

    /// `IP_MULTICAST_LOOP`.
    pub fn set_multicast_loop_v4(&self, on: bool) -> io::Result<()> {
        SockRef::from(&self.fd).set_multicast_loop_v4(on)
    }

    /// `IP_MULTICAST_LOOP`.
    pub fn multicast_loop_v4(&self) -> io::Result<bool> {
        SockRef::from(&self.fd).multicast_loop_v4()
    }

    /// `IPV6_MULTICAST_LOOP`.
    pub fn set_multicast_loop_v6(&self, on: bool) -> io::Result<()> {
        SockRef::from(&self.fd).set_multicast_loop_v6(on)
    }

    /// `IPV6_MULTICAST_LOOP`.
    pub fn multicast_loop_v6(&self) -> io::Result<bool> {
        SockRef::from(&self.fd).multicast_loop_v6()
    }

    /// `IP_ADD_MEMBERSHIP` on `interface` (`UNSPECIFIED`: the default one).
    pub fn join_multicast_v4(&self, group: Ipv4Addr, interface: Ipv4Addr) -> io::Result<()> {
        SockRef::from(&self.fd).join_multicast_v4(&group, &interface)
    }

    /// `IP_DROP_MEMBERSHIP`.
    pub fn leave_multicast_v4(&self, group: Ipv4Addr, interface: Ipv4Addr) -> io::Result<()> {
        SockRef::from(&self.fd).leave_multicast_v4(&group, &interface)
    }

    /// `IPV6_ADD_MEMBERSHIP` on interface index `interface` (0: default).
    pub fn join_multicast_v6(&self, group: Ipv6Addr, interface: u32) -> io::Result<()> {
        SockRef::from(&self.fd).join_multicast_v6(&group, interface)
    }

    /// `IPV6_DROP_MEMBERSHIP`.
    pub fn leave_multicast_v6(&self, group: Ipv6Addr, interface: u32) -> io::Result<()> {
        SockRef::from(&self.fd).leave_multicast_v6(&group, interface)
    }

    /// Takes and clears the pending socket error (`SO_ERROR`), e.g. an ICMP
    /// "port unreachable" reported for an earlier send.
    pub fn take_error(&self) -> io::Result<Option<io::Error>> {
        SockRef::from(&self.fd).take_error()
    }
}

impl AsRawFd for UdpSocket {
    fn as_raw_fd(&self) -> RawFd {
        self.fd.raw()
    }
}

impl std::os::fd::AsFd for UdpSocket {
    fn as_fd(&self) -> std::os::fd::BorrowedFd<'_> {
        self.fd.as_fd()
    }
}
