//! What the driver does underneath the socket types (operation counts,
//! bounded queues), on both backends; the integration tests cover the
//! behaviour seen from outside.

use std::collections::HashSet;
use std::io::Write;
use std::time::Duration;

use futures_core::Stream;

use super::TcpListener;
use crate::buf::AsyncReadOwned;
use crate::{DriverChoice, EventLoop, sleep};

fn build(choice: DriverChoice) -> Option<EventLoop> {
    match EventLoop::builder().driver(choice).build() {
        Ok(lp) => Some(lp),
        Err(e) if std::env::var("RINGLOOP_REQUIRE_URING").is_ok_and(|v| v == "1") => {
            panic!("RINGLOOP_REQUIRE_URING=1 but {choice:?} is unavailable: {e}")
        }
        Err(e) => {
            eprintln!("SKIP [{choice:?}]: {e}");
            None
        }
    }
}

fn next<S: Stream + Unpin>(s: &mut S) -> impl Future<Output = Option<S::Item>> + '_ {
    std::future::poll_fn(move |cx| std::pin::Pin::new(&mut *s).poll_next(cx))
}

/// `clients` blocking connections from another thread, each sending its
/// 4-byte index and closing; the loop takes them from `incoming()` (after
/// `stall`, so connections pile up first) and returns the indices read and
/// the SQEs the loop queued meanwhile and the multishot operations the
/// driver cancelled at its queue bound (io_uring only).
fn accept_all(lp: &EventLoop, clients: u32, stall: Duration) -> (HashSet<u32>, Option<(u64, u64)>) {
    lp.run_until_complete(async move {
        let drv = crate::io::current_driver().unwrap();
        let listener = TcpListener::bind_with("127.0.0.1:0".parse().unwrap(), false, 4096).unwrap();
        let addr = listener.local_addr().unwrap();
        let mut incoming = listener.incoming();
        let before = drv.sqes_queued();
        let client = std::thread::spawn(move || {
            for i in 0..clients {
                let mut s = std::net::TcpStream::connect(addr).unwrap();
                s.write_all(&i.to_le_bytes()).unwrap();
            }
        });
        // Arm the accept, then let the connections queue up.
        let mut seen = HashSet::new();
        if !stall.is_zero() {
            let first = crate::timeout(Duration::from_millis(1), next(&mut incoming)).await;
            if let Ok(Some(s)) = first {
                let (res, buf) = s.unwrap().read_exact(Vec::new(), 4).await;
                res.unwrap();
                seen.insert(u32::from_le_bytes(buf[..4].try_into().unwrap()));
            }
            sleep(stall).await;
        }
        while seen.len() < clients as usize {
            let stream = crate::timeout(Duration::from_secs(20), next(&mut incoming))
                .await
                .expect("a connection was lost")
                .expect("incoming never ends")
                .expect("accept failed");
            let (res, buf) = stream.read_exact(Vec::new(), 4).await;
            res.unwrap();
            assert!(seen.insert(u32::from_le_bytes(buf[..4].try_into().unwrap())));
        }
        client.join().unwrap();
        let sqes = drv.sqes_queued().zip(before).map(|(after, before)| after - before);
        (seen, sqes.zip(drv.queue_bound_cancels()))
    })
    .expect("the loop ran")
}

#[test]
fn incoming_takes_1000_connections_and_on_io_uring_one_multishot_accept_serves_them() {
    for choice in [DriverChoice::Uring, DriverChoice::Fallback] {
        let Some(lp) = build(choice) else { continue };
        let (seen, counts) = accept_all(&lp, 1000, Duration::ZERO);
        assert_eq!(seen.len(), 1000, "{choice:?}");
        let multishot = build(choice).is_some_and(|lp| {
            lp.run_until_complete(async {
                crate::io::current_driver()
                    .unwrap()
                    .uses(crate::driver::Feature::MultishotAccept)
            })
            .unwrap()
        });
        if let Some((sqes, _)) = counts.filter(|_| multishot) {
            // Per connection: one RECV of its index (the accept costs no
            // SQE); a single-shot accept loop would add 1000 more.
            assert!(sqes < 1000 + 50, "{choice:?}: {sqes} SQEs for 1000 connections");
        }
    }
}

#[test]
fn a_stalled_incoming_loses_no_connection_when_its_queue_bound_cancels_the_accept() {
    // More connections than the driver queues for a multishot accept
    // (`STREAM_QUEUE_LIMIT`), all arriving while nobody takes them: the
    // driver cancels the accept, the listen backlog keeps the rest, and the
    // stream re-arms once it has caught up.
    for choice in [DriverChoice::Uring, DriverChoice::Fallback] {
        let Some(lp) = build(choice) else { continue };
        let (seen, counts) = accept_all(&lp, 700, Duration::from_millis(300));
        assert_eq!(seen.len(), 700, "{choice:?}");
        let multishot = build(choice).is_some_and(|lp| {
            lp.run_until_complete(async {
                crate::io::current_driver()
                    .unwrap()
                    .uses(crate::driver::Feature::MultishotAccept)
            })
            .unwrap()
        });
        if let Some((_, cancels)) = counts.filter(|_| multishot) {
            assert!(cancels >= 1, "{choice:?}: the queue bound never cancelled the accept");
        }
    }
}

/// A buffer that counts its drops (to see when the driver lets go of it).
struct ProbeBuf(Vec<u8>, std::rc::Rc<std::cell::Cell<u32>>);

impl Drop for ProbeBuf {
    fn drop(&mut self) {
        self.1.set(self.1.get() + 1);
    }
}

// SAFETY: delegates to the Vec's stable heap buffer.
unsafe impl crate::buf::IoBuf for ProbeBuf {
    fn stable_ptr(&self) -> *const u8 {
        self.0.as_ptr()
    }
    fn bytes_init(&self) -> usize {
        self.0.len()
    }
    fn bytes_total(&self) -> usize {
        self.0.capacity()
    }
}

async fn connected_pair() -> (super::TcpStream, super::TcpStream) {
    let listener = TcpListener::bind("127.0.0.1:0".parse().unwrap()).unwrap();
    let addr = listener.local_addr().unwrap();
    let (client, accepted) = futures_util_join(super::TcpStream::connect_addr(addr), listener.accept()).await;
    (client.unwrap(), accepted.unwrap().0)
}

async fn futures_util_join<A: Future + 'static, B: Future>(a: A, b: B) -> (A::Output, B::Output)
where
    A::Output: 'static,
{
    let a = crate::spawn(a);
    let b = b.await;
    match a.await {
        Ok(a) => (a, b),
        Err(e) => panic!("join task: {e}"),
    }
}

#[test]
fn large_writes_use_send_zc_on_io_uring_and_every_byte_arrives() {
    use crate::buf::AsyncWriteOwned;
    for (choice, features) in [
        (DriverChoice::Uring, crate::UringFeatures::all()),
        (DriverChoice::Uring, crate::UringFeatures::none()),
        (DriverChoice::Fallback, crate::UringFeatures::all()),
    ] {
        let Ok(lp) = EventLoop::builder().driver(choice).uring_features(features).build() else {
            let Some(_) = build(choice) else { continue };
            unreachable!("build succeeded without features but failed with them");
        };
        lp.run_until_complete(async move {
            let drv = crate::io::current_driver().unwrap();
            let zc_before = drv.ops_submitted::<crate::driver::ops::SendZc<Vec<u8>>>();
            let (a, b) = connected_pair().await;
            let data: Vec<u8> = (0..(1u32 << 20)).map(|i| (i % 251) as u8).collect();
            let expect = data.clone();
            let reader = crate::spawn(async move {
                let (res, buf) = b.read_exact(Vec::new(), 1 << 20).await;
                res.unwrap();
                buf
            });
            let (res, _) = a.write_all(data).await;
            res.unwrap();
            assert!(reader.await.ok().unwrap() == expect, "{choice:?}: bytes differ");
            let zc = drv
                .ops_submitted::<crate::driver::ops::SendZc<Vec<u8>>>()
                .zip(zc_before)
                .map(|(a, b)| a - b);
            match (zc, drv.send_zc_threshold()) {
                (Some(n), Some(_)) => assert!(n >= 1, "{choice:?}: no SEND_ZC for a 1 MiB write"),
                (Some(n), None) => assert_eq!(n, 0, "{choice:?}: SEND_ZC while off"),
                _ => {}
            }
        })
        .unwrap();
    }
}

#[test]
fn send_zc_stops_on_a_socket_the_kernel_copies_for() {
    use crate::buf::AsyncWriteOwned;
    let Some(lp) = build(DriverChoice::Uring) else { return };
    lp.run_until_complete(async {
        let drv = crate::io::current_driver().unwrap();
        if drv.send_zc_threshold().is_none() || !drv.send_zc_reports_copies() {
            eprintln!("SKIP: this kernel's SEND_ZC does not report copies (6.2+)");
            return;
        }
        let zc_before = drv.ops_submitted::<crate::driver::ops::SendZc<Vec<u8>>>().unwrap();
        let (a, b) = connected_pair().await;
        const ROUNDS: usize = 4;
        const LEN: usize = 256 << 10;
        let reader = crate::spawn(async move {
            let (res, buf) = b.read_exact(Vec::new(), ROUNDS * LEN).await;
            res.unwrap();
            buf
        });
        let mut expect = Vec::new();
        for round in 0..ROUNDS {
            let data: Vec<u8> = (0..LEN).map(|i| (i % 241 + round) as u8).collect();
            expect.extend_from_slice(&data);
            let (res, _) = a.write_all(data).await;
            res.unwrap();
        }
        assert!(reader.await.ok().unwrap() == expect, "bytes differ");
        // Loopback always copies: the first large send is zero-copy, its
        // notification says the bytes were copied, and every later send on
        // the socket is a plain SEND.
        let zc = drv.ops_submitted::<crate::driver::ops::SendZc<Vec<u8>>>().unwrap() - zc_before;
        assert_eq!(zc, 1, "SEND_ZC kept being used on a loopback socket");
    })
    .unwrap();
}

#[test]
fn a_dropped_send_zc_keeps_its_buffer_until_the_kernel_is_done_with_it() {
    use crate::buf::AsyncWriteOwned;
    let Some(lp) = build(DriverChoice::Uring) else { return };
    lp.run_until_complete(async {
        let drv = crate::io::current_driver().unwrap();
        if drv.send_zc_threshold().is_none() {
            eprintln!("SKIP: this kernel has no SEND_ZC");
            return;
        }
        let (a, b) = connected_pair().await;
        // Small socket buffers and a peer that does not read: the send
        // cannot finish, so it is in flight when its future is dropped.
        socket2::SockRef::from(&a).set_send_buffer_size(4096).unwrap();
        socket2::SockRef::from(&b).set_recv_buffer_size(4096).unwrap();
        // Fill the window with small (copied) sends until one cannot finish.
        loop {
            let filler = crate::timeout(Duration::from_millis(20), a.write(vec![1u8; 8192])).await;
            if filler.is_err() {
                break;
            }
        }
        let drops = std::rc::Rc::new(std::cell::Cell::new(0));
        let buf = ProbeBuf(vec![7u8; 4 << 20], drops.clone());
        let res = crate::timeout(Duration::from_millis(100), a.write(buf)).await;
        assert!(res.is_err(), "a 4 MiB send into a 4 KiB window finished");
        // Dropped with the timeout, cancelled, but still the kernel's.
        assert_eq!(drops.get(), 0, "the buffer was freed while the kernel might read it");
        // The peer drains; the cancel and the notification arrive; only
        // then is the buffer released, exactly once.
        let reader = crate::spawn(async move {
            let mut got = 0usize;
            loop {
                let (res, buf) = b.read(Vec::with_capacity(1 << 16)).await;
                match res.unwrap() {
                    0 => return got,
                    n => {
                        assert!(buf[..n].iter().all(|&x| x == 1 || x == 7));
                        got += n;
                    }
                }
            }
        });
        for _ in 0..500 {
            if drops.get() == 1 {
                break;
            }
            sleep(Duration::from_millis(10)).await;
        }
        assert_eq!(drops.get(), 1, "the buffer was never released (or twice)");
        drop(a);
        let got = reader.await.ok().unwrap();
        assert!(got > 0);
    })
    .unwrap();
}

/// Echoes one byte (plus one) on `server` and checks it on `client`.
async fn echo_one(client: &super::TcpStream, server: &super::TcpStream, b: u8) {
    use crate::buf::AsyncWriteOwned;
    let (res, _) = client.write_all(vec![b]).await;
    res.unwrap();
    let (res, got) = server.read_exact(Vec::new(), 1).await;
    res.unwrap();
    let (res, _) = server.write_all(vec![got[0].wrapping_add(1)]).await;
    res.unwrap();
    let (res, back) = client.read_exact(Vec::new(), 1).await;
    res.unwrap();
    assert_eq!(back, [b.wrapping_add(1)]);
}

#[test]
fn a_full_fixed_file_table_leaves_later_sockets_on_plain_fds_and_freed_slots_are_reused() {
    for choice in [DriverChoice::Uring, DriverChoice::Fallback] {
        let Ok(lp) = EventLoop::builder().driver(choice).fixed_files(4).build() else {
            let Some(_) = build(choice) else { continue };
            unreachable!("build succeeded with the default table but failed with 4 slots");
        };
        lp.run_until_complete(async move {
            let drv = crate::io::current_driver().unwrap();
            let before = drv.fixed_files();
            // 6 connected pairs: 12 sockets for a 4-slot table.
            let mut pairs = Vec::new();
            for _ in 0..6 {
                pairs.push(connected_pair().await);
            }
            for (i, (c, s)) in pairs.iter().enumerate() {
                echo_one(c, s, i as u8).await;
            }
            let counts = drv
                .fixed_files()
                .zip(before)
                .map(|(a, b)| (a.0 - b.0, a.1 - b.1, a.2, a.3));
            match counts {
                Some((installed, plain, in_use, true)) => {
                    assert_eq!((installed, plain, in_use), (4, 8, 4), "{choice:?}: fixed-file counts");
                }
                Some((installed, _, in_use, false)) => assert_eq!((installed, in_use), (0, 0)),
                None => {}
            }
            // Dropping a socket that holds a slot empties it: the peer sees
            // the end of stream at once (the table no longer keeps the
            // socket open), and the slot is used by the next socket.
            let (c0, s0) = pairs.remove(0);
            drop(s0);
            let (res, _) = crate::timeout(Duration::from_secs(10), c0.read(vec![0u8; 8]))
                .await
                .expect("the peer of a closed fixed-file socket saw no end of stream");
            assert_eq!(res.unwrap(), 0, "{choice:?}: end of stream expected");
            if let Some((_, _, in_use, true)) = drv.fixed_files() {
                assert_eq!(in_use, 3, "{choice:?}: the dropped socket's slot is free again");
            }
            let (c, s) = connected_pair().await;
            echo_one(&c, &s, 200).await;
            if let Some((installed, _, in_use, true)) = drv.fixed_files() {
                assert_eq!(
                    installed - before.unwrap().0,
                    5,
                    "{choice:?}: the freed slot was reused"
                );
                assert_eq!(in_use, 4);
            }
            drop((c, s, c0));
            drop(pairs);
            if let Some((_, _, in_use, enabled)) = drv.fixed_files() {
                assert!(!enabled || in_use == 0, "{choice:?}: slots left in use: {in_use}");
            }
        })
        .unwrap();
    }
}

#[test]
fn udp_recv_from_stream_uses_one_multishot_recvmsg_and_heap_receives_once_the_pool_is_out() {
    use crate::driver::ops::dgram::RecvMsgMulti;
    // 4 buffers that may grow to 8 (one step), or may not grow.
    for (choice, limit) in [
        (DriverChoice::Uring, 0),
        (DriverChoice::Uring, 8 * 4096),
        (DriverChoice::Fallback, 0),
    ] {
        let ring_bufs = if limit == 0 { 4 } else { 8 };
        let Ok(lp) = EventLoop::builder()
            .driver(choice)
            .recv_pool(4, 4096)
            .recv_pool_limit(limit)
            .build()
        else {
            let Some(_) = build(choice) else { continue };
            unreachable!("build succeeded with the default pool but failed with 4 buffers");
        };
        lp.run_until_complete(async move {
            let drv = crate::io::current_driver().unwrap();
            let server = super::UdpSocket::bind("127.0.0.1:0".parse().unwrap()).unwrap();
            let client = super::UdpSocket::bind("127.0.0.1:0".parse().unwrap()).unwrap();
            let to = server.local_addr().unwrap();
            let multi_before = drv.ops_submitted::<RecvMsgMulti>();
            let send_to_before = drv.ops_submitted::<crate::driver::ops::SendTo<Vec<u8>>>();
            let mut stream = server.recv_from_stream();
            let mut held = Vec::new();
            for i in 0..12u8 {
                let (res, _) = client.send_to(vec![i; 100], to).await;
                res.unwrap();
                let (buf, meta) = stream.next_datagram().await.unwrap();
                assert_eq!((&buf[..], meta.addr), (&[i; 100][..], client.local_addr().unwrap()));
                held.push(buf);
            }
            // On io_uring (6.0+) each send_to is one SEND with an address.
            let sends = drv
                .ops_submitted::<crate::driver::ops::SendTo<Vec<u8>>>()
                .zip(send_to_before)
                .map(|(a, b)| a - b);
            if let Some(n) = sends {
                assert_eq!(n, if drv.send_to_supported() { 12 } else { 0 }, "{choice:?}");
            }
            let ring: Vec<bool> = held.iter().map(|b| b.is_ring_buffer()).collect();
            let multi = drv
                .ops_submitted::<RecvMsgMulti>()
                .zip(multi_before)
                .map(|(a, b)| a - b);
            if let Some(n) = multi
                && drv.uses(crate::driver::Feature::MultishotRecv)
            {
                // Four pool buffers (eight once the pool grew at the first
                // ENOBUFS), then heap receives (ENOBUFS at the limit), each
                // followed by a re-arm attempt.
                assert!(ring[..ring_bufs].iter().all(|&r| r), "{choice:?} {limit}: {ring:?}");
                assert!(ring[ring_bufs..].iter().all(|r| !r), "{choice:?} {limit}: {ring:?}");
                assert!(n >= 1, "{choice:?}: no multishot recvmsg");
                drop(held);
                // The pool is back: the next datagram lands in a ring buffer.
                let (res, _) = client.send_to(vec![99; 10], to).await;
                res.unwrap();
                let (buf, _) = stream.next_datagram().await.unwrap();
                assert!(buf.is_ring_buffer(), "{choice:?}: buffers returned to the pool");
            } else {
                assert!(ring.iter().all(|r| !r));
            }
        })
        .unwrap();
    }
}
