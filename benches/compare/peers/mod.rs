//! The servers compared by `benches/compare.rs`, one set per protocol. Every
//! peer has the same shape for each:
//!
//! - TCP echo ([`serve`]): one thread, accept loop, one task (or state
//!   machine) per connection, a 64 KiB buffer per connection, read whatever
//!   arrived and write it all back, TCP_NODELAY on.
//! - HTTP/1.1 keep-alive "hello" ([`serve_http`]): one thread, accept loop,
//!   one task (or state machine) per connection, TCP_NODELAY on. Per
//!   connection a 4 KiB input buffer (doubled, up to 64 KiB, only when a
//!   request head does not fit; beyond that the connection is closed) and an
//!   output `Vec` reused across requests. Loop: read what arrived after the
//!   bytes already buffered, [`http::respond`] (one response per complete
//!   request, pipelined ones in order), write all responses, keep the
//!   unconsumed bytes; close on EOF or error. The owned-buffer runtimes
//!   (ringloop, monoio, compio) read into the free tail of a `Vec` whose
//!   length is the buffered input (`slice(len..)`, monoio `slice_mut(len..)`;
//!   [`http::make_room`] grows it); tokio and the raw loops read into the
//!   free tail of an [`http::Input`].
//! - UDP echo ([`serve_udp`]): one socket (from [`udp_socket`]), a 64 KiB
//!   buffer; receive one datagram, send exactly those bytes back to its
//!   sender. The runtimes run one sequential receive-then-send loop (one
//!   operation at a time). The raw io_uring loop keeps exactly one RecvMsg or
//!   SendMsg in flight (the same one-at-a-time shape as the runtimes). The
//!   raw epoll loop (level-triggered) does non-blocking `recvfrom` until
//!   EAGAIN, `sendto` after each; a `sendto` EAGAIN keeps the datagram and
//!   waits for EPOLLOUT instead of dropping it. Everywhere a failed send
//!   loses just that datagram and receive errors caused by ICMP or signals
//!   ([`transient_udp_error`]) are skipped; other receive errors end the
//!   server.
//!
//! `ringloop/uring-<N>loops` ([`cores_peer`]) is the exception to "one
//! thread": N io_uring loops of a `ringloop::cores` runtime, one
//! `SO_REUSEPORT` listener each, the same per-connection code as
//! `ringloop/uring`; TCP only. `ALL` has `ringloop/uring-2loops`; `--peers`
//! takes any N.
//!
//! `raw-uring-ms` ([`raw_uring_ms`]) differs on purpose: its connections
//! share a provided-buffer ring (multishot receive) instead of owning a
//! 64 KiB buffer each, and it serves no UDP (those rows say `skipped`).

use std::io;
use std::net::{TcpListener, UdpSocket};

pub mod compio_peer;
pub mod cores_peer;
pub mod epoll;
pub mod http;
pub mod monoio_peer;
pub mod raw_uring;
pub mod raw_uring_ms;
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
    "raw-uring-ms",
    "raw-epoll",
    "ringloop/uring-2loops",
];

/// Whether `name` runs more than one thread (a multi-loop peer).
pub fn is_multi_loop(name: &str) -> bool {
    cores_peer::loops_of(name).is_some()
}

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
        "raw-uring-ms" => raw_uring_ms::serve(l, false, ready),
        "raw-epoll" => epoll::serve(l, ready),
        _ => Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            format!("unknown peer {name}"),
        )),
    }
}

/// Serves HTTP/1.1 keep-alive "hello" as peer `name` on `l` until killed.
/// Errors mean the peer is unavailable.
pub fn serve_http(name: &str, l: TcpListener, ready: impl FnOnce() + 'static) -> io::Result<()> {
    match name {
        "ringloop/uring" => ringloop_peer::serve_http(l, ringloop::DriverChoice::Uring, ready),
        "ringloop/fallback" => ringloop_peer::serve_http(l, ringloop::DriverChoice::Fallback, ready),
        "tokio-ct" => tokio_peer::serve_http(l, ready),
        "monoio" => monoio_peer::serve_http(l, ready),
        "compio" => compio_peer::serve_http(l, ready),
        "raw-uring" => raw_uring::serve_http(l, false, ready),
        "raw-uring-sq+dt" => raw_uring::serve_http(l, true, ready),
        "raw-uring-ms" => raw_uring_ms::serve(l, true, ready),
        "raw-epoll" => epoll::serve_http(l, ready),
        _ => Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            format!("unknown peer {name}"),
        )),
    }
}

/// Serves UDP echo as peer `name` on `s` (already bound) until killed.
/// Errors mean the peer is unavailable.
pub fn serve_udp(name: &str, s: UdpSocket, ready: impl FnOnce() + 'static) -> io::Result<()> {
    match name {
        "ringloop/uring" => ringloop_peer::serve_udp(s, ringloop::DriverChoice::Uring, ready),
        "ringloop/fallback" => ringloop_peer::serve_udp(s, ringloop::DriverChoice::Fallback, ready),
        "tokio-ct" => tokio_peer::serve_udp(s, ready),
        "monoio" => monoio_peer::serve_udp(s, ready),
        "compio" => compio_peer::serve_udp(s, ready),
        "raw-uring" => raw_uring::serve_udp(s, false, ready),
        "raw-uring-sq+dt" => raw_uring::serve_udp(s, true, ready),
        "raw-uring-ms" => Err(io::Error::new(
            io::ErrorKind::Unsupported,
            "skipped: raw-uring-ms serves TCP (echo, HTTP) only",
        )),
        "raw-epoll" => epoll::serve_udp(s, ready),
        _ => Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            format!("unknown peer {name}"),
        )),
    }
}

/// Socket buffer size asked for on UDP sockets (servers and clients), so a
/// burst of 64 concurrent 64 KiB datagrams is not dropped on loopback.
pub const UDP_SOCKBUF: usize = 4 << 20;

/// Binds a UDP socket on 127.0.0.1:0 with SO_RCVBUF/SO_SNDBUF raised to
/// [`UDP_SOCKBUF`], best effort: SO_*BUFFORCE when privileged, else the
/// plain options (which the kernel caps at `net.core.{r,w}mem_max`).
pub fn udp_socket() -> io::Result<UdpSocket> {
    let s = socket2::Socket::new(socket2::Domain::IPV4, socket2::Type::DGRAM, None)?;
    for (force, plain) in [
        (libc::SO_RCVBUFFORCE, libc::SO_RCVBUF),
        (libc::SO_SNDBUFFORCE, libc::SO_SNDBUF),
    ] {
        if setsockopt_int(&s, force, UDP_SOCKBUF).is_err() {
            let _ = setsockopt_int(&s, plain, UDP_SOCKBUF);
        }
    }
    s.bind(&"127.0.0.1:0".parse::<std::net::SocketAddr>().unwrap().into())?;
    Ok(s.into())
}

fn setsockopt_int(s: &socket2::Socket, opt: libc::c_int, val: usize) -> io::Result<()> {
    let v = val as libc::c_int;
    // SAFETY: valid fd; the option pointer and length describe one c_int.
    let r = unsafe {
        libc::setsockopt(
            std::os::fd::AsRawFd::as_raw_fd(s),
            libc::SOL_SOCKET,
            opt,
            (&v as *const libc::c_int).cast(),
            std::mem::size_of::<libc::c_int>() as libc::socklen_t,
        )
    };
    if r == 0 {
        Ok(())
    } else {
        Err(io::Error::last_os_error())
    }
}

/// Receive errors a UDP echo loop skips rather than dying on: ICMP errors
/// queued on the socket (a client that went away) and signals.
pub fn transient_udp_error(e: &io::Error) -> bool {
    matches!(
        e.kind(),
        io::ErrorKind::ConnectionRefused | io::ErrorKind::ConnectionReset | io::ErrorKind::Interrupted
    )
}
