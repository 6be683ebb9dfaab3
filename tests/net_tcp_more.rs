//! TCP: accept stream, vectored I/O, socket options, async close — both backends.

mod common;

use futures_util::StreamExt;
use ringloop::EventLoop;
use ringloop::buf::IoBuf;
use ringloop::net::{TcpListener, TcpStream};
use ringloop::{AsyncReadOwned, AsyncWriteOwned};
use ringloop::{spawn, timeout};
use std::time::Duration;

fn local() -> std::net::SocketAddr {
    "127.0.0.1:0".parse().unwrap()
}

#[ringloop::test]
fn tcp_incoming_yields_each_connection(lp: &EventLoop) {
    lp.run_until_complete(async {
        let listener = TcpListener::bind(local()).unwrap();
        let addr = listener.local_addr().unwrap();
        let clients = spawn(async move {
            for i in 0..5u8 {
                let c = TcpStream::connect(addr).await.unwrap();
                let (r, _) = c.write_all(vec![i]).await;
                r.unwrap();
            }
        });
        let mut seen = Vec::new();
        let mut incoming = listener.incoming();
        while seen.len() < 5 {
            let s = incoming.next().await.expect("incoming never ends").unwrap();
            assert_eq!(s.local_addr().unwrap(), addr);
            let (r, got) = s.read_exact(Vec::new(), 1).await;
            r.unwrap();
            seen.push(got[0]);
        }
        seen.sort();
        assert_eq!(seen, [0, 1, 2, 3, 4]);
        clients.await.unwrap();
    })
    .unwrap();
}

#[ringloop::test]
fn dropping_incoming_mid_accept_leaves_the_listener_serving(lp: &EventLoop) {
    lp.run_until_complete(async {
        let listener = TcpListener::bind(local()).unwrap();
        let addr = listener.local_addr().unwrap();
        for _ in 0..10 {
            let mut incoming = listener.incoming();
            assert!(timeout(Duration::from_millis(1), incoming.next()).await.is_err());
        }
        let c = spawn(async move { TcpStream::connect(addr).await.unwrap() });
        let (s, peer) = listener.accept().await.unwrap();
        let c = c.await.unwrap();
        assert_eq!(peer, c.local_addr().unwrap());
        let (r, _) = s.write_all(b"hi".as_slice()).await;
        r.unwrap();
        let (r, got) = c.read_exact(Vec::new(), 2).await;
        r.unwrap();
        assert_eq!(got, b"hi");
    })
    .unwrap();
}

#[ringloop::test]
fn tcp_readv_writev_round_trip(lp: &EventLoop) {
    lp.run_until_complete(async {
        let listener = TcpListener::bind(local()).unwrap();
        let c = TcpStream::connect(listener.local_addr().unwrap()).await.unwrap();
        let (s, _) = listener.accept().await.unwrap();
        let parts = vec![b"head:".to_vec(), b"body-".repeat(1000), b":tail".to_vec()];
        let total: usize = parts.iter().map(Vec::len).sum();
        let (r, back) = c.writev(parts.clone()).await;
        assert_eq!(back, parts, "the buffers come back");
        let sent = r.unwrap();
        assert!(sent > 0 && sent <= total);
        // writev may send part of the data: send the rest.
        let (r, _) = c.write_all(parts.concat()[sent..].to_vec()).await;
        r.unwrap();
        c.shutdown(std::net::Shutdown::Write).unwrap();
        // Scatter into a partly filled buffer's tail (a slice) and a second buffer.
        let mut got = Vec::new();
        loop {
            let mut first = Vec::with_capacity(64);
            first.extend_from_slice(b"PREFIX");
            let bufs = vec![first.slice(6..), Vec::with_capacity(4096).slice(..)];
            let (r, bufs) = s.readv(bufs).await;
            let n = r.unwrap();
            if n == 0 {
                break;
            }
            let mut it = bufs.into_iter().map(|s| s.into_inner());
            let first = it.next().unwrap();
            assert!(first.starts_with(b"PREFIX"), "bytes before the slice are kept");
            got.extend_from_slice(&first[6..]);
            got.extend_from_slice(&it.next().unwrap());
        }
        assert!(got == parts.concat(), "gathered and scattered bytes match");
        let (r, _) = s.writev(Vec::<Vec<u8>>::new()).await;
        assert_eq!(r.unwrap(), 0, "an empty writev sends nothing");
    })
    .unwrap();
}

#[ringloop::test]
fn tcp_socket_options_round_trip(lp: &EventLoop) {
    lp.run_until_complete(async {
        let listener = TcpListener::bind(local()).unwrap();
        listener.set_ttl(42).unwrap();
        assert_eq!(listener.ttl().unwrap(), 42);
        let c = TcpStream::connect(listener.local_addr().unwrap()).await.unwrap();
        c.set_ttl(33).unwrap();
        assert_eq!(c.ttl().unwrap(), 33);
        assert_eq!(c.linger().unwrap(), None);
        c.set_linger(Some(Duration::from_secs(2))).unwrap();
        assert_eq!(c.linger().unwrap(), Some(Duration::from_secs(2)));
        c.set_keepalive(Some(Duration::from_secs(30))).unwrap();
        assert!(c.keepalive().unwrap());
        c.set_keepalive(None).unwrap();
        assert!(!c.keepalive().unwrap());
    })
    .unwrap();
}

#[ringloop::test]
fn async_close_reports_success_and_the_peer_sees_eof(lp: &EventLoop) {
    lp.run_until_complete(async {
        let listener = TcpListener::bind(local()).unwrap();
        let addr = listener.local_addr().unwrap();
        let c = TcpStream::connect(addr).await.unwrap();
        let (s, _) = listener.accept().await.unwrap();
        let (r, _) = c.write_all(b"bye".as_slice()).await;
        r.unwrap();
        c.close().await.unwrap();
        let (r, got) = s.read_exact(Vec::new(), 3).await;
        r.unwrap();
        assert_eq!(got, b"bye");
        let (r, _) = s.read(Vec::with_capacity(8)).await;
        assert_eq!(r.unwrap(), 0);

        // With a cancelled read still being torn down, close defers to it.
        let c2 = TcpStream::connect(addr).await.unwrap();
        let (s2, _) = listener.accept().await.unwrap();
        assert!(timeout(Duration::from_millis(1), c2.read(vec![0u8; 16])).await.is_err());
        c2.close().await.unwrap();
        let (r, _) = s2.read(Vec::with_capacity(8)).await;
        assert_eq!(r.unwrap(), 0, "the socket is closed once the cancellation lands");
    })
    .unwrap();
}

/// I/O futures are lazy, like `async fn`s: one dropped before its first
/// poll sends or receives nothing (the bytes the peer then gets, and the
/// bytes we then read, are exactly the ones asked for afterwards).
#[ringloop::test]
fn io_futures_dropped_before_their_first_poll_do_nothing(lp: &EventLoop) {
    use std::io::{Read, Write};
    lp.run_until_complete(async {
        let listener = std::net::TcpListener::bind(local()).unwrap();
        let s = TcpStream::connect(listener.local_addr().unwrap()).await.unwrap();
        let (mut peer, _) = listener.accept().unwrap();
        drop(s.write(vec![1u8; 100]));
        drop(s.write_all(vec![2u8; 100]));
        // Large enough for a zero-copy send on io_uring.
        drop(s.write_all(vec![3u8; 64 * 1024]));
        peer.write_all(b"abc").unwrap();
        drop(s.read(Vec::with_capacity(16)));
        // Let the loop submit and complete whatever was queued.
        ringloop::sleep(Duration::from_millis(20)).await;
        let (r, got) = s.read_exact(Vec::new(), 3).await;
        r.unwrap();
        assert_eq!(got, b"abc");
        let (r, _) = s.write_all(b"ok".to_vec()).await;
        r.unwrap();
        s.shutdown(std::net::Shutdown::Write).unwrap();
        let mut all = Vec::new();
        peer.read_to_end(&mut all).unwrap();
        assert_eq!(all, b"ok");
    })
    .unwrap();
}
