//! UDP on both backends.

mod common;

use ringloop::EventLoop;
use ringloop::net::UdpSocket;
use ringloop::timeout;
use std::io::ErrorKind;
use std::net::SocketAddr;
use std::time::Duration;

fn local() -> SocketAddr {
    "127.0.0.1:0".parse().unwrap()
}

#[ringloop::test]
fn udp_datagrams_keep_their_boundaries_and_order(lp: &EventLoop) {
    lp.run_until_complete(async {
        let a = UdpSocket::bind(local()).unwrap();
        let b = UdpSocket::bind(local()).unwrap();
        let (a_addr, b_addr) = (a.local_addr().unwrap(), b.local_addr().unwrap());
        let sent: Vec<Vec<u8>> = vec![b"alpha".to_vec(), vec![b'x'; 1200], b"c".to_vec()];
        for d in &sent {
            let (r, _) = a.send_to(d.clone(), b_addr).await;
            assert_eq!(r.unwrap(), d.len());
        }
        for d in &sent {
            let (r, got) = b.recv_from(Vec::with_capacity(4096)).await;
            let (n, from) = r.unwrap();
            assert_eq!(n, d.len());
            assert_eq!(&got, d, "each datagram arrives whole and in order");
            assert_eq!(from, a_addr);
        }
    })
    .unwrap();
}

#[ringloop::test]
fn udp_truncation_is_reported_and_the_next_datagram_is_intact(lp: &EventLoop) {
    lp.run_until_complete(async {
        let a = UdpSocket::bind(local()).unwrap();
        let b = UdpSocket::bind(local()).unwrap();
        let b_addr = b.local_addr().unwrap();
        let big: Vec<u8> = (0..100u8).collect();
        for d in [big.clone(), b"tiny".to_vec(), big.clone(), b"end".to_vec()] {
            let (r, _) = a.send_to(d, b_addr).await;
            r.unwrap();
        }
        let small: Box<[u8]> = vec![0u8; 10].into_boxed_slice();
        let (r, buf) = b.recv_msg(small).await;
        let m = r.unwrap();
        assert!(m.truncated, "a 100-byte datagram into 10 bytes is truncated");
        assert_eq!(m.len, 10);
        assert_eq!(&buf[..], &big[..10]);
        assert_eq!(m.addr, a.local_addr().unwrap());
        let (r, buf) = b.recv_msg(Vec::with_capacity(64)).await;
        let m = r.unwrap();
        assert!(!m.truncated);
        assert_eq!(buf, b"tiny");
        // recv_from truncates silently (std/tokio shape) and keeps boundaries.
        let (r, buf) = b.recv_from(vec![0u8; 10].into_boxed_slice()).await;
        assert_eq!(r.unwrap().0, 10);
        assert_eq!(&buf[..], &big[..10]);
        let (r, buf) = b.recv_from(Vec::with_capacity(64)).await;
        assert_eq!(r.unwrap().0, 3);
        assert_eq!(buf, b"end");
    })
    .unwrap();
}

#[ringloop::test]
fn connected_udp_sockets_send_and_recv(lp: &EventLoop) {
    lp.run_until_complete(async {
        let a = UdpSocket::bind(local()).unwrap();
        let b = UdpSocket::bind(local()).unwrap();
        let (a_addr, b_addr) = (a.local_addr().unwrap(), b.local_addr().unwrap());
        assert_eq!(a.peer_addr().unwrap_err().kind(), ErrorKind::NotConnected);
        // Through the resolver (a literal given as a string).
        a.connect(b_addr.to_string()).await.unwrap();
        b.connect(a_addr).await.unwrap();
        assert_eq!(a.peer_addr().unwrap(), b_addr);
        for i in 0..10u32 {
            let msg = format!("ping {i}").into_bytes();
            let (r, _) = a.send(msg.clone()).await;
            r.unwrap();
            let (r, got) = b.recv(Vec::with_capacity(64)).await;
            assert_eq!(r.unwrap(), msg.len());
            assert_eq!(got, msg);
        }
        // A connected socket ignores datagrams from other senders.
        let stranger = UdpSocket::bind(local()).unwrap();
        let (r, _) = stranger.send_to(b"intruder".as_slice(), b_addr).await;
        r.unwrap();
        let (r, _) = a.send(b"friend".as_slice()).await;
        r.unwrap();
        let (r, got) = b.recv(Vec::with_capacity(64)).await;
        r.unwrap();
        assert_eq!(got, b"friend");
    })
    .unwrap();
}

#[ringloop::test]
fn udp_send_to_an_invalid_address_is_an_error(lp: &EventLoop) {
    lp.run_until_complete(async {
        let a = UdpSocket::bind(local()).unwrap();
        let (r, buf) = a.send_to(b"x".as_slice(), "127.0.0.1:0".parse().unwrap()).await;
        assert_eq!(buf, b"x", "the buffer comes back with the error");
        let e = r.unwrap_err();
        assert_eq!(e.kind(), ErrorKind::InvalidInput, "{e:?}");
        // An IPv6 target from an IPv4 socket.
        let (r, _) = a.send_to(b"x".as_slice(), "[::1]:9".parse().unwrap()).await;
        assert!(r.is_err());
        // Unresolvable names for connect.
        let e = a.connect("no-such-host.invalid:9").await.unwrap_err();
        eprintln!("{e}");
    })
    .unwrap();
}

#[ringloop::test]
fn a_connected_udp_socket_reports_an_unreachable_port_as_refused(lp: &EventLoop) {
    lp.run_until_complete(async {
        // A port nobody else takes meanwhile and nothing of ours reaches.
        let (_held, dead) = common::refusing_udp_port();
        let a = UdpSocket::bind(local()).unwrap();
        a.connect(dead).await.unwrap();
        let (r, _) = a.send(b"anyone?".as_slice()).await;
        r.unwrap();
        // The ICMP "port unreachable" (never rate-limited on loopback)
        // turns into an error on the next receive, on both backends.
        let res = timeout(Duration::from_secs(10), a.recv(Vec::with_capacity(16))).await;
        let (r, _) = res.expect("the ICMP error should end the receive");
        assert_eq!(r.unwrap_err().kind(), ErrorKind::ConnectionRefused);
    })
    .unwrap();
}

#[ringloop::test]
fn udp_socket_options_round_trip(lp: &EventLoop) {
    lp.run_until_complete(async {
        let a = UdpSocket::bind(local()).unwrap();
        a.set_broadcast(true).unwrap();
        assert!(a.broadcast().unwrap());
        a.set_ttl(17).unwrap();
        assert_eq!(a.ttl().unwrap(), 17);
        a.set_multicast_ttl_v4(3).unwrap();
        assert_eq!(a.multicast_ttl_v4().unwrap(), 3);
        a.set_multicast_loop_v4(false).unwrap();
        assert!(!a.multicast_loop_v4().unwrap());
        assert!(a.take_error().unwrap().is_none());
        assert!(format!("{a:?}").contains("UdpSocket"));
    })
    .unwrap();
}

#[ringloop::test]
fn a_cancelled_udp_receive_leaves_the_socket_usable(lp: &EventLoop) {
    lp.run_until_complete(async {
        let a = UdpSocket::bind(local()).unwrap();
        let b = UdpSocket::bind(local()).unwrap();
        let b_addr = b.local_addr().unwrap();
        for _ in 0..20 {
            // Nothing to receive: the deadline drops the in-flight recvmsg.
            assert!(
                timeout(Duration::from_millis(1), b.recv_from(vec![0u8; 64]))
                    .await
                    .is_err()
            );
        }
        let (r, _) = a.send_to(b"after".as_slice(), b_addr).await;
        r.unwrap();
        let (r, got) = b.recv_from(Vec::with_capacity(64)).await;
        r.unwrap();
        assert_eq!(got, b"after");
    })
    .unwrap();
}

#[ringloop::test]
fn udp_over_ipv6_loopback_when_available(lp: &EventLoop) {
    lp.run_until_complete(async {
        let Ok(a) = UdpSocket::bind("[::1]:0".parse().unwrap()) else {
            eprintln!("SKIP: no IPv6 loopback here");
            return;
        };
        let b = UdpSocket::bind("[::1]:0".parse().unwrap()).unwrap();
        let (r, _) = a.send_to(b"six".as_slice(), b.local_addr().unwrap()).await;
        r.unwrap();
        let (r, got) = b.recv_from(Vec::with_capacity(16)).await;
        assert_eq!(r.unwrap().1, a.local_addr().unwrap());
        assert_eq!(got, b"six");
    })
    .unwrap();
}

/// Loops for both backends with a receive pool of `buffers` × `size`.
fn loops_with_pool(buffers: u16, size: u32) -> Vec<(ringloop::DriverChoice, EventLoop)> {
    use ringloop::DriverChoice;
    [DriverChoice::Uring, DriverChoice::Fallback]
        .into_iter()
        .filter(|&c| common::build(c, false).is_some())
        .map(|c| {
            (
                c,
                EventLoop::builder().driver(c).recv_pool(buffers, size).build().unwrap(),
            )
        })
        .collect()
}

/// Sends `rounds` bursts of `burst` datagrams from two sockets to `to`;
/// datagram `i` of sender `s` is `[s, i]` followed by `i % 700` bytes of `i`.
async fn send_bursts(to: SocketAddr, rounds: u32, burst: u32, pace: &ringloop::sync::Semaphore) -> [SocketAddr; 2] {
    let senders = [UdpSocket::bind(local()).unwrap(), UdpSocket::bind(local()).unwrap()];
    let addrs = [senders[0].local_addr().unwrap(), senders[1].local_addr().unwrap()];
    let pace = pace.clone();
    ringloop::spawn(async move {
        for r in 0..rounds {
            // Wait until the receiver took the previous burst (a localhost
            // UDP socket drops what overflows its receive buffer).
            pace.acquire().await.forget();
            for k in 0..burst {
                let i = r * burst + k;
                for (s, sock) in senders.iter().enumerate() {
                    let mut d = vec![s as u8, i as u8];
                    d.extend(std::iter::repeat_n(i as u8, (i % 700) as usize));
                    let (res, _) = sock.send_to(d, to).await;
                    res.unwrap();
                }
            }
        }
    })
    .detach();
    addrs
}

#[test]
fn recv_from_stream_yields_every_datagram_in_order_with_its_sender() {
    for (choice, lp) in loops_with_pool(256, 4096) {
        lp.run_until_complete(async move {
            let server = UdpSocket::bind(local()).unwrap();
            let pace = ringloop::sync::Semaphore::new(1);
            let (rounds, burst) = (10u32, 20u32);
            let addrs = send_bursts(server.local_addr().unwrap(), rounds, burst, &pace).await;
            let mut stream = server.recv_from_stream();
            let mut next = [0u32; 2];
            for n in 1..=rounds * burst * 2 {
                let (buf, meta) = timeout(Duration::from_secs(10), stream.next_datagram())
                    .await
                    .expect("a datagram went missing")
                    .unwrap();
                let s = usize::from(buf[0]);
                let i = next[s];
                assert_eq!(meta.addr, addrs[s], "{choice:?}: sender");
                assert_eq!(buf[1], i as u8, "{choice:?}: sender {s}'s datagrams in order");
                assert_eq!(meta.len, buf.len());
                assert_eq!(buf.len(), 2 + (i % 700) as usize, "{choice:?}: datagram {i} whole");
                assert!(buf[2..].iter().all(|&b| b == i as u8));
                assert!(!meta.truncated);
                next[s] += 1;
                if n % (burst * 2) == 0 {
                    pace.release();
                }
            }
            assert_eq!(next, [rounds * burst; 2]);
        })
        .unwrap();
    }
}

#[test]
fn recv_from_stream_with_an_exhausted_pool_loses_no_datagram_and_recovers() {
    // Two 4 KiB buffers: held datagrams exhaust the pool (ENOBUFS on io_uring).
    for (choice, lp) in loops_with_pool(2, 4096) {
        lp.run_until_complete(async move {
            let server = UdpSocket::bind(local()).unwrap();
            let pace = ringloop::sync::Semaphore::new(1);
            let (rounds, burst) = (3u32, 16u32);
            send_bursts(server.local_addr().unwrap(), rounds, burst, &pace).await;
            let mut stream = server.recv_from_stream();
            let mut held = Vec::new();
            let mut next = [0u32; 2];
            for n in 1..=rounds * burst * 2 {
                let (buf, _) = timeout(Duration::from_secs(10), stream.next_datagram())
                    .await
                    .expect("a datagram went missing")
                    .unwrap();
                let s = usize::from(buf[0]);
                assert_eq!(buf[1], next[s] as u8, "{choice:?}: in order, none lost");
                assert_eq!(buf.len(), 2 + (next[s] % 700) as usize);
                next[s] += 1;
                held.push(buf);
                if n % (burst * 2) == 0 {
                    // Release the buffers (the pool recovers) and pace on.
                    held.clear();
                    pace.release();
                }
            }
        })
        .unwrap();
    }
}

#[test]
fn recv_from_stream_reports_datagrams_longer_than_a_pool_buffer_as_truncated() {
    for (choice, lp) in loops_with_pool(16, 512) {
        lp.run_until_complete(async move {
            let server = UdpSocket::bind(local()).unwrap();
            let client = UdpSocket::bind(local()).unwrap();
            let to = server.local_addr().unwrap();
            let (res, _) = client.send_to(vec![7u8; 1000], to).await;
            res.unwrap();
            let (res, _) = client.send_to(b"after".to_vec(), to).await;
            res.unwrap();
            let mut stream = server.recv_from_stream();
            let (buf, meta) = stream.next_datagram().await.unwrap();
            if buf.is_ring_buffer() {
                // 512 bytes less the 16-byte header and 28-byte address.
                assert!(meta.truncated, "{choice:?}: truncation reported");
                assert_eq!(buf.len(), 512 - 44);
            } else {
                assert!(!meta.truncated, "{choice:?}: heap receives take 64 KiB");
                assert_eq!(buf.len(), 1000);
            }
            assert!(buf.iter().all(|&b| b == 7));
            let (buf, meta) = stream.next_datagram().await.unwrap();
            assert_eq!(
                (&buf[..], meta.truncated),
                (&b"after"[..], false),
                "{choice:?}: next one intact"
            );
        })
        .unwrap();
    }
}
