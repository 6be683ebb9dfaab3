//! The echo servers compared by `benches/compare.rs`. Every peer has the same
//! shape: one thread, accept loop, one task (or state machine) per
//! connection, a 64 KiB buffer per connection, read whatever arrived and
//! write it all back, TCP_NODELAY on.

use std::io;
use std::net::TcpListener;

pub mod compio_peer;
pub mod epoll;
pub mod monoio_peer;
pub mod raw_uring;
pub mod ringloop_peer;
pub mod tokio_peer;

/// Per-connection buffer size, the same for every peer.
pub const BUF: usize = 64 * 1024;

/// Every peer, in table order.
pub const ALL: &[&str] = &[
    "ringloop/uring",
    "ringloop/fallback",
    "tokio-ct",
    "monoio",
    "compio",
    "raw-uring",
    "raw-uring-sq+dt",
    "raw-epoll",
];

/// Binds 127.0.0.1:0 with a backlog large enough for 512 connections.
pub fn listener() -> io::Result<TcpListener> {
    let s = socket2::Socket::new(socket2::Domain::IPV4, socket2::Type::STREAM, None)?;
    s.set_reuse_address(true)?;
    s.bind(&"127.0.0.1:0".parse::<std::net::SocketAddr>().unwrap().into())?;
    s.listen(1024)?;
    Ok(s.into())
}

/// Serves `name` on `l` until killed. Errors mean the peer is unavailable.
pub fn serve(name: &str, l: TcpListener, ready: impl FnOnce() + 'static) -> io::Result<()> {
    match name {
        "ringloop/uring" => ringloop_peer::serve(l, ringloop::DriverChoice::Uring, ready),
        "ringloop/fallback" => ringloop_peer::serve(l, ringloop::DriverChoice::Fallback, ready),
        "tokio-ct" => tokio_peer::serve(l, ready),
        "monoio" => monoio_peer::serve(l, ready),
        "compio" => compio_peer::serve(l, ready),
        "raw-uring" => raw_uring::serve(l, false, ready),
        "raw-uring-sq+dt" => raw_uring::serve(l, true, ready),
        "raw-epoll" => epoll::serve(l, ready),
        _ => Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            format!("unknown peer {name}"),
        )),
    }
}
