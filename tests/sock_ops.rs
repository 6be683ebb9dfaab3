//! asyncio's low-level `loop.sock_*` operations (`ringloop::net::sock_*`)
//! on sockets the test owns (socket2 / std), on both backends.

mod common;

use std::io::ErrorKind;
use std::net::SocketAddr;
use std::os::fd::AsRawFd;
use std::time::Duration;

use ringloop::net::socket2::{Domain, SockAddr, Socket, Type};
use ringloop::net::{
    sock_accept, sock_connect, sock_recv, sock_recv_into, sock_recvfrom, sock_recvfrom_into, sock_sendall, sock_sendto,
};

fn listener() -> (Socket, SocketAddr) {
    let l = Socket::new(Domain::IPV4, Type::STREAM, None).unwrap();
    l.bind(&SockAddr::from("127.0.0.1:0".parse::<SocketAddr>().unwrap()))
        .unwrap();
    l.listen(16).unwrap();
    let addr = l.local_addr().unwrap().as_socket().unwrap();
    (l, addr)
}

fn is_nonblocking(s: &Socket) -> bool {
    // SAFETY: F_GETFL on an open fd.
    let flags = unsafe { libc::fcntl(s.as_raw_fd(), libc::F_GETFL) };
    flags & libc::O_NONBLOCK != 0
}

/// A connected pair through `sock_connect` / `sock_accept`.
async fn pair() -> (Socket, Socket) {
    let (l, addr) = listener();
    let client = Socket::new(Domain::IPV4, Type::STREAM, None).unwrap();
    let accept = ringloop::spawn(async move { sock_accept(&l).await });
    sock_connect(&client, addr).await.unwrap();
    let (conn, peer) = accept.await.unwrap().unwrap();
    assert_eq!(
        peer.as_socket(),
        Some(client.local_addr().unwrap().as_socket().unwrap())
    );
    (client, conn)
}

#[ringloop::test]
async fn echo_over_sock_apis() {
    let (l, addr) = listener();
    let server = ringloop::spawn(async move {
        let (conn, _) = sock_accept(&l).await.unwrap();
        // asyncio hands out non-blocking sockets.
        assert!(is_nonblocking(&conn));
        let mut total = 0;
        loop {
            let data = sock_recv(&conn, 64 * 1024).await.unwrap();
            if data.is_empty() {
                break;
            }
            total += data.len();
            sock_sendall(&conn, data).await.0.unwrap();
        }
        total
    });
    let client = Socket::new(Domain::IPV4, Type::STREAM, None).unwrap();
    sock_connect(&client, addr).await.unwrap();
    assert!(is_nonblocking(&client));
    // Larger than the socket buffers: sendall must loop over partial sends
    // while the reader below drains the echo.
    let payload: Vec<u8> = (0..4u32 << 20).map(|i| (i % 251) as u8).collect();
    let sent = payload.clone();
    let writer_sock = client.try_clone().unwrap();
    let writer = ringloop::spawn(async move {
        let (res, buf) = sock_sendall(&writer_sock, sent).await;
        res.unwrap();
        writer_sock.shutdown(std::net::Shutdown::Write).unwrap();
        buf.len()
    });
    let mut got = Vec::with_capacity(payload.len());
    loop {
        let buf = Vec::with_capacity(100_000);
        let (res, buf) = sock_recv_into(&client, buf).await;
        let n = res.unwrap();
        assert_eq!(n, buf.len());
        if n == 0 {
            break;
        }
        got.extend_from_slice(&buf);
    }
    assert_eq!(writer.await.unwrap(), payload.len());
    assert_eq!(server.await.unwrap(), payload.len());
    assert!(
        got == payload,
        "echo differs (got {} of {} bytes)",
        got.len(),
        payload.len()
    );
}

#[ringloop::test]
async fn peer_close_gives_end_of_stream_then_broken_pipe() {
    let (client, conn) = pair().await;
    drop(conn);
    assert_eq!(sock_recv(&client, 100).await.unwrap(), b"");
    // Sends to a closed peer fail (RST after the first send): BrokenPipe or
    // ConnectionReset, never SIGPIPE.
    let mut err = None;
    for _ in 0..100 {
        match sock_sendall(&client, vec![7u8; 64 * 1024]).await.0 {
            Ok(()) => ringloop::sleep(Duration::from_millis(1)).await,
            Err(e) => {
                err = Some(e);
                break;
            }
        }
    }
    let err = err.expect("sending to a closed peer kept succeeding");
    assert!(
        matches!(err.kind(), ErrorKind::BrokenPipe | ErrorKind::ConnectionReset),
        "{err:?}"
    );
}

#[ringloop::test]
async fn connect_refused_is_connection_refused() {
    let (_held, addr) = common::refusing_port();
    let s = Socket::new(Domain::IPV4, Type::STREAM, None).unwrap();
    let err = sock_connect(&s, addr).await.unwrap_err();
    assert_eq!(err.kind(), ErrorKind::ConnectionRefused, "{err:?}");
}

#[ringloop::test]
async fn cancelled_recv_loses_no_later_data() {
    let (client, conn) = pair().await;
    // Nothing to read: the receive is still pending when the timeout drops it.
    let r = ringloop::timeout(Duration::from_millis(20), sock_recv(&conn, 100)).await;
    assert!(r.is_err(), "a receive completed with no data sent: {r:?}");
    // An owned buffer in a dropped receive: the op keeps it (and its own
    // fd) until the kernel is done.
    let r = ringloop::timeout(Duration::from_millis(5), sock_recv_into(&conn, Vec::with_capacity(64))).await;
    assert!(r.is_err());
    sock_sendall(&client, b"after".to_vec()).await.0.unwrap();
    assert_eq!(sock_recv(&conn, 100).await.unwrap(), b"after");
    // Every per-call duplicate was closed: closing the caller's socket
    // ends the connection (the peer reads end of stream).
    drop(conn);
    assert_eq!(sock_recv(&client, 16).await.unwrap(), b"");
}

#[ringloop::test]
async fn dropped_pending_recv_then_closed_socket_is_safe() {
    let (client, conn) = pair().await;
    let r = ringloop::timeout(
        Duration::from_millis(5),
        sock_recv_into(&conn, Vec::with_capacity(4096)),
    )
    .await;
    assert!(r.is_err());
    // The caller closes its socket at once, while the cancelled op may
    // still be in the kernel: the op's own duplicate keeps the socket (and
    // the op its buffer) until the cancellation completed; then the
    // duplicate is closed too and the peer reads end of stream.
    drop(conn);
    assert_eq!(sock_recv(&client, 16).await.unwrap(), b"");
}

#[ringloop::test]
async fn udp_sendto_and_recvfrom() {
    let a = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
    let b = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
    let (aa, ba) = (a.local_addr().unwrap(), b.local_addr().unwrap());
    let (res, _) = sock_sendto(&a, b"one".to_vec(), ba).await;
    assert_eq!(res.unwrap(), 3);
    let (data, from) = sock_recvfrom(&b, 100).await.unwrap();
    assert_eq!((data.as_slice(), from.as_socket()), (&b"one"[..], Some(aa)));
    // A datagram longer than the buffer is truncated to it.
    sock_sendto(&b, b"abcdefgh".to_vec(), aa).await.0.unwrap();
    let (res, buf) = sock_recvfrom_into(&a, Vec::with_capacity(4)).await;
    let (n, from) = res.unwrap();
    assert_eq!((n, buf.as_slice(), from.as_socket()), (4, &b"abcd"[..], Some(ba)));
}

#[ringloop::test]
async fn not_a_socket_is_an_error_not_a_hang() {
    let mut fds = [0; 2];
    // SAFETY: pipe2 writes two fds into a valid array.
    assert_eq!(unsafe { libc::pipe2(fds.as_mut_ptr(), libc::O_CLOEXEC) }, 0);
    // SAFETY: fresh fds that we own.
    let (f, _w) = unsafe {
        use std::os::fd::{FromRawFd, OwnedFd};
        (OwnedFd::from_raw_fd(fds[0]), OwnedFd::from_raw_fd(fds[1]))
    };
    let err = sock_recv(&f, 10).await.unwrap_err();
    assert_eq!(err.raw_os_error(), Some(libc::ENOTSOCK), "{err:?}");
    let err = sock_accept(&f).await.unwrap_err();
    assert_eq!(err.raw_os_error(), Some(libc::ENOTSOCK), "{err:?}");
}
