//! Pooled receives (`recv_stream`): io_uring multishot receive into the
//! loop's provided-buffer ring, heap buffers on the fallback backend.

mod common;

use futures_util::StreamExt;
use ringloop::net::{TcpListener, TcpStream, UnixStream};
use ringloop::{AsyncWriteOwned, DriverKind, EventLoop, spawn};

/// A loop like `lp` with a receive pool of `n` buffers of `size` bytes.
fn loop_with_pool(lp: &EventLoop, n: u16, size: u32) -> EventLoop {
    EventLoop::builder()
        .driver(common::choice_of(lp))
        .recv_pool(n, size)
        .build()
        .unwrap()
}

fn pattern(conn: usize, len: usize) -> Vec<u8> {
    (0..len).map(|i| (i * 31 + conn * 7) as u8).collect()
}

/// Whether pooled receives come from the kernel's buffer ring on this loop
/// (io_uring with multishot receive on; `RINGLOOP_URING_DISABLE` may turn
/// it off, and then they are heap buffers as on the fallback backend).
fn ring_buffers_in_use(lp: &EventLoop) -> bool {
    lp.driver_kind() == DriverKind::Uring && lp.driver_description().contains("multishot recv (buffer ring")
}

#[ringloop::test]
fn recv_stream_echo_server_returns_every_byte(lp: &EventLoop) {
    let uring = ring_buffers_in_use(lp);
    lp.run_until_complete(async move {
        let listener = TcpListener::bind("127.0.0.1:0".parse().unwrap()).unwrap();
        let addr = listener.local_addr().unwrap();
        let server = spawn(async move {
            let mut conns = Vec::new();
            for _ in 0..32 {
                let (s, _) = listener.accept().await.unwrap();
                conns.push(spawn(async move {
                    let mut rx = s.recv_stream();
                    let mut ring = 0usize;
                    while let Some(buf) = rx.next().await {
                        let buf = buf.unwrap();
                        ring += buf.is_ring_buffer() as usize;
                        let (r, _) = s.write_all(buf).await;
                        r.unwrap();
                    }
                    ring
                }));
            }
            let mut ring = 0;
            for c in conns {
                ring += c.await.unwrap();
            }
            ring
        });
        let mut clients = Vec::new();
        for c in 0..32 {
            clients.push(spawn(async move {
                let s = TcpStream::connect(addr).await.unwrap();
                for round in 0..20 {
                    let msg = pattern(c + round, 100 + round * 50);
                    let (r, _) = s.write_all(msg.clone()).await;
                    r.unwrap();
                    let (r, got) = ringloop::AsyncReadOwned::read_exact(&s, Vec::new(), msg.len()).await;
                    r.unwrap();
                    assert_eq!(got, msg);
                }
                ringloop::AsyncWriteOwned::close(s).await.unwrap();
            }));
        }
        for c in clients {
            c.await.unwrap();
        }
        let ring = server.await.unwrap();
        if uring {
            assert!(ring > 0, "no chunk came from the buffer ring");
        } else {
            assert_eq!(ring, 0);
        }
    })
    .unwrap();
}

#[ringloop::test]
fn recv_stream_survives_pool_exhaustion_without_losing_bytes(lp: &EventLoop) {
    // Two 64-byte buffers for four connections whose server holds on to
    // what it received: the ring runs dry (ENOBUFS) over and over.
    let own = loop_with_pool(lp, 2, 64);
    let uring = ring_buffers_in_use(&own);
    own.run_until_complete(async move {
        let mut pairs = Vec::new();
        for _ in 0..4 {
            pairs.push(UnixStream::pair().unwrap());
        }
        let mut readers = Vec::new();
        let mut writers = Vec::new();
        for (i, (a, b)) in pairs.into_iter().enumerate() {
            let data = pattern(i, 64 * 1024 + i * 13);
            let expect = data.clone();
            writers.push(spawn(async move {
                for chunk in data.chunks(1000) {
                    let (r, _) = a.write_all(chunk.to_vec()).await;
                    r.unwrap();
                }
                drop(a);
            }));
            readers.push(spawn(async move {
                let mut rx = b.recv_stream();
                let mut held = Vec::new();
                let mut got = Vec::new();
                let mut heap = 0;
                while let Some(buf) = rx.next().await {
                    let buf = buf.unwrap();
                    heap += !buf.is_ring_buffer() as usize;
                    got.extend_from_slice(&buf);
                    // Keep some buffers out of the ring for a while.
                    held.push(buf);
                    if held.len() > 3 {
                        held.remove(0);
                    }
                }
                assert!(
                    got == expect,
                    "stream {i}: {} of {} bytes, or reordered",
                    got.len(),
                    expect.len()
                );
                heap
            }));
        }
        for w in writers {
            w.await.unwrap();
        }
        let mut heap = 0;
        for r in readers {
            heap += r.await.unwrap();
        }
        if uring {
            assert!(heap > 0, "the ring never ran dry: the test proves nothing");
        }
        // Every buffer came back: both can be held at once again.
        let (a, b) = UnixStream::pair().unwrap();
        let (r, _) = a.write_all(vec![1u8; 64]).await;
        r.unwrap();
        let mut rx = b.recv_stream();
        let first = rx.next().await.unwrap().unwrap();
        let (r, _) = a.write_all(vec![2u8; 64]).await;
        r.unwrap();
        let second = rx.next().await.unwrap().unwrap();
        if uring {
            assert!(
                first.is_ring_buffer() && second.is_ring_buffer(),
                "a pool buffer was lost"
            );
        }
        assert_eq!((&first[..], &second[..]), (&[1u8; 64][..], &[2u8; 64][..]));
    })
    .unwrap();
}

#[ringloop::test]
fn dropped_recv_stream_returns_every_buffer(lp: &EventLoop) {
    let own = loop_with_pool(lp, 4, 32);
    let uring = ring_buffers_in_use(&own);
    own.run_until_complete(async move {
        for round in 0..3 {
            let (a, b) = UnixStream::pair().unwrap();
            {
                let mut rx = b.recv_stream();
                let (r, _) = a.write_all(vec![round as u8; 32]).await;
                r.unwrap();
                let first = rx.next().await.unwrap().unwrap();
                assert_eq!(&first[..], &[round as u8; 32][..]);
                // More data picked by the kernel but never taken.
                let (r, _) = a.write_all(vec![9u8; 96]).await;
                r.unwrap();
                ringloop::sleep(std::time::Duration::from_millis(5)).await;
            }
            drop((a, b));
        }
        // All four buffers can be held at once.
        let (a, b) = UnixStream::pair().unwrap();
        let mut rx = b.recv_stream();
        let mut held = Vec::new();
        for i in 0..4u8 {
            let (r, _) = a.write_all(vec![i; 32]).await;
            r.unwrap();
            held.push(rx.next().await.unwrap().unwrap());
        }
        if uring {
            assert!(
                held.iter().all(|b| b.is_ring_buffer()),
                "pool buffers were lost: {held:?}"
            );
        }
        for (i, b) in held.iter().enumerate() {
            assert_eq!(&b[..], &[i as u8; 32][..]);
        }
    })
    .unwrap();
}

#[ringloop::test]
fn recv_stream_ends_at_end_of_stream(lp: &EventLoop) {
    lp.run_until_complete(async {
        let (a, b) = UnixStream::pair().unwrap();
        let (r, _) = a.write_all(b"last words".to_vec()).await;
        r.unwrap();
        drop(a);
        let mut rx = b.recv_stream();
        let mut got = Vec::new();
        while let Some(buf) = rx.next().await {
            got.extend_from_slice(&buf.unwrap());
        }
        assert_eq!(got, b"last words");
        assert!(rx.next().await.is_none(), "stays ended");
    })
    .unwrap();
}
