//! Networking: TCP, UDP and Unix sockets with owned-buffer I/O, on io_uring
//! or the fallback backend with one API.
//!
//! * [`TcpListener`] / [`TcpStream`], [`UdpSocket`], and (Unix only)
//!   [`UnixListener`] / [`UnixStream`] / [`UnixDatagram`].
//! * I/O takes buffers by value and gives them back:
//!   `let (res, buf) = stream.read(buf).await;` (see [`crate::buf`]); the
//!   stream methods come from [`AsyncReadOwned`](crate::AsyncReadOwned) /
//!   [`AsyncWriteOwned`](crate::AsyncWriteOwned) (`use ringloop::prelude::*`).
//!   Vectored `readv`/`writev` take a `Vec` of buffers.
//! * Datagram sockets keep message boundaries. A datagram longer than the
//!   buffer is truncated; `recv_msg` reports it ([`RecvMeta::truncated`]).
//! * Listeners have `incoming()`, a `futures_core::Stream` of connections.
//! * asyncio's low-level `loop.sock_*` calls on a socket the caller owns:
//!   [`sock_recv`], [`sock_sendall`], [`sock_accept`], [`sock_connect`], ...
//!   (module [`sock`]).
//! * Stream types implement `futures-io`'s `AsyncRead`, `AsyncBufRead` and
//!   `AsyncWrite`, so crates written against those traits (e.g.
//!   `futures::io::BufReader`, codecs, `futures-rustls`) run on ringloop.
//!   On io_uring these copy through a per-direction internal buffer (reads:
//!   16 KiB; writes: up to 64 KiB submitted per `poll_write`, which returns
//!   before the kernel took the bytes; `poll_flush` waits for them, and
//!   `poll_close` flushes then shuts writing down). On the fallback backend
//!   they call `recv`/`send` on the caller's slice directly. The
//!   owned-buffer methods are trait methods, so they do not hide the
//!   `futures` extension methods of the same names. Accepted bytes are not
//!   lost to a drop: `close` flushes, and a dropped stream's write-behind
//!   send is finished by the driver (up to 10 s) before the socket closes.
//!
//! What a dropped (cancelled) operation may already have done: a receive
//! may have consumed bytes or a datagram, a send may have sent, an accept
//! may have accepted (the connection is then closed). The `futures-io`
//! impls keep their in-flight operation across polls, so dropping an
//! `AsyncReadExt::read` future loses nothing.

mod compat;
mod ops;
mod recv_stream;
mod reuseport;
pub mod sock;
mod stream;
mod tcp;
// Driver-level checks (io_uring op counters next to the fallback backend).
#[cfg(all(test, target_os = "linux"))]
mod tests;
mod udp;
#[cfg(unix)]
pub mod unix;

pub use recv_stream::{RecvFromStream, RecvStream};
pub use reuseport::{attach_reuseport_cpu_steering, reuseport_tcp_listeners};
pub use sock::{
    sock_accept, sock_connect, sock_recv, sock_recv_into, sock_recvfrom, sock_recvfrom_into, sock_sendall, sock_sendto,
};
/// The `socket2` crate whose `Socket` / `SockAddr` the [`sock`] functions use.
pub use socket2;
#[cfg(unix)]
pub use stream::Unix;
pub use stream::{Family, ReadHalf, SocketStream, Tcp, WriteHalf};
pub use tcp::{Incoming, OwnedReadHalf, OwnedWriteHalf, TcpListener, TcpReadHalf, TcpStream, TcpWriteHalf};
pub use udp::UdpSocket;
#[cfg(unix)]
pub use unix::{UnixDatagram, UnixIncoming, UnixListener, UnixReadHalf, UnixStream, UnixWriteHalf};

/// What a datagram receive produced (`recv_msg` on [`UdpSocket`] and
/// [`UnixDatagram`]).
#[derive(Clone, Debug)]
#[non_exhaustive]
pub struct RecvMeta<A> {
    /// Bytes stored in the buffer.
    pub len: usize,
    /// The sender.
    pub addr: A,
    /// The datagram was longer than the buffer; the rest was discarded.
    pub truncated: bool,
}

use std::io;
use std::net::{SocketAddr, ToSocketAddrs};

/// Resolves `addr` on the blocking pool (getaddrinfo may block for seconds).
pub(crate) async fn resolve<A: ToSocketAddrs + Send + 'static>(addr: A) -> io::Result<Vec<SocketAddr>> {
    let lp = crate::runtime::current().ok_or_else(|| io::Error::other("ringloop: no event loop on this thread"))?;
    let job = lp.run_in_executor(move || addr.to_socket_addrs().map(|it| it.collect::<Vec<_>>()))?;
    let addrs = job
        .await
        .map_err(|e| io::Error::other(format!("address resolution failed: {e}")))??;
    if addrs.is_empty() {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            "could not resolve to any address",
        ));
    }
    Ok(addrs)
}
