//! Pooled receives (`recv_stream`): io_uring multishot receive into the
//! loop's provided-buffer ring, heap buffers on the fallback backend.

mod common;

use futures_util::StreamExt;
use ringloop::net::{TcpListener, TcpStream, UnixStream};
use ringloop::{AsyncWriteOwned, DriverKind, EventLoop, spawn};

/// A loop like `lp` with a receive pool of `n` buffers of `size` bytes that
/// never grows.
fn loop_with_pool(lp: &EventLoop, n: u16, size: u32) -> EventLoop {
    EventLoop::builder()
        .driver(common::choice_of(lp))
        .recv_pool(n, size)
        .recv_pool_limit(0)
        .build()
        .unwrap()
}

/// A connected TCP pair on loopback: (client, accepted).
async fn tcp_pair() -> (TcpStream, TcpStream) {
    let l = TcpListener::bind("127.0.0.1:0".parse().unwrap()).unwrap();
    let c = TcpStream::connect(l.local_addr().unwrap()).await.unwrap();
    let (s, _) = l.accept().await.unwrap();
    (c, s)
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
            pairs.push(tcp_pair().await);
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
        let (a, b) = tcp_pair().await;
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
            let (a, b) = tcp_pair().await;
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
        let (a, b) = tcp_pair().await;
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
        let (a, b) = tcp_pair().await;
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

#[ringloop::test]
fn a_chunk_says_whether_it_filled_its_buffer(lp: &EventLoop) {
    let own = loop_with_pool(lp, 2, 64);
    let uring = ring_buffers_in_use(&own);
    own.run_until_complete(async move {
        let (a, b) = tcp_pair().await;
        let (r, _) = a.write_all(pattern(1, 100)).await;
        r.unwrap();
        drop(a);
        let mut rx = b.recv_stream();
        let mut chunks = Vec::new();
        while let Some(buf) = rx.next().await {
            let buf = buf.unwrap();
            chunks.push((buf.len(), buf.filled_its_buffer()));
        }
        if uring {
            // 64-byte buffers: the first is filled, the rest drained the socket.
            assert_eq!(chunks, [(64, true), (36, false)]);
        } else {
            // One heap receive of up to 4 KiB.
            assert_eq!(chunks, [(100, false)]);
        }
    })
    .unwrap();
}

#[ringloop::test]
fn a_pool_that_runs_dry_grows_to_its_limit_then_receives_into_heap_buffers(lp: &EventLoop) {
    // Two 64-byte buffers to start with, at most sixteen; the reader holds
    // everything it receives, so only growth gives the kernel more room.
    let own = EventLoop::builder()
        .driver(common::choice_of(lp))
        .recv_pool(2, 64)
        .recv_pool_limit(16 * 64)
        .build()
        .unwrap();
    let uring = ring_buffers_in_use(&own);
    own.run_until_complete(async move {
        let (a, b) = tcp_pair().await;
        let data = pattern(3, 4000);
        let expect = data.clone();
        let writer = spawn(async move {
            let (r, _) = a.write_all(data).await;
            r.unwrap();
        });
        let mut rx = b.recv_stream();
        let mut held = Vec::new();
        let mut got = Vec::new();
        while got.len() < expect.len() {
            let buf = rx.next().await.unwrap().unwrap();
            got.extend_from_slice(&buf);
            held.push(buf);
        }
        writer.await.unwrap();
        assert!(got == expect, "bytes lost or reordered");
        let ring_bytes: usize = held.iter().filter(|b| b.is_ring_buffer()).map(|b| b.len()).sum();
        let ring_chunks = held.iter().filter(|b| b.is_ring_buffer()).count();
        if uring {
            // Every buffer of the grown pool was filled (whole buffers, or
            // shared ones filled to the end), and the rest came in heap
            // buffers once the pool was at its limit.
            assert_eq!(ring_bytes, 16 * 64, "{ring_chunks} ring chunks");
            assert!(held.iter().any(|b| !b.is_ring_buffer()), "no heap receive at the limit");
        } else {
            assert_eq!(ring_chunks, 0);
        }
    })
    .unwrap();
    let desc = own.driver_description();
    if uring {
        assert!(desc.contains("buffer ring 16 x 64 B, growing to 16"), "{desc}");
    }
}

#[ringloop::test]
fn unix_recv_streams_reach_end_of_stream_after_bulk_data(lp: &EventLoop) {
    // Writers that send 64 KiB and close before their readers, which hold
    // on to a few chunks each, have caught up. (On Linux 6.17+ a multishot
    // receive on AF_UNIX could then miss the end of stream, so AF_UNIX
    // streams receive single-shot; this hung before that.)
    let own = EventLoop::builder()
        .driver(common::choice_of(lp))
        .recv_pool(2, 64)
        .build()
        .unwrap();
    own.run_until_complete(async move {
        let mut tasks = Vec::new();
        for i in 0..4 {
            let (a, b) = UnixStream::pair().unwrap();
            let data = pattern(i, 64 * 1024 + i * 13);
            let expect = data.clone();
            spawn(async move {
                for chunk in data.chunks(1000) {
                    let (r, _) = a.write_all(chunk.to_vec()).await;
                    r.unwrap();
                }
            })
            .detach();
            tasks.push(spawn(async move {
                let mut rx = b.recv_stream();
                let mut held = Vec::new();
                let mut got = Vec::new();
                while let Some(buf) = rx.next().await {
                    let buf = buf.unwrap();
                    got.extend_from_slice(&buf);
                    held.push(buf);
                    if held.len() > 3 {
                        held.remove(0);
                    }
                }
                got == expect
            }));
        }
        for (i, t) in tasks.into_iter().enumerate() {
            let done = ringloop::timeout(std::time::Duration::from_secs(20), t).await;
            assert!(
                done.expect("end of stream never arrived").unwrap(),
                "stream {i}: bytes differ"
            );
        }
    })
    .unwrap();
}

/// Whether this loop's stream pool is consumed incrementally
/// (`IOU_PBUF_RING_INC`): known once the pool was registered, i.e. after a
/// first `recv_stream` receive.
fn incremental_in_use(lp: &EventLoop) -> bool {
    ring_buffers_in_use(lp) && lp.driver_description().contains(", incremental)")
}

/// Offset of a ring chunk inside its pool buffer (the pool's buffers are
/// `size`-byte slots of one page-aligned allocation).
fn offset_in_buffer(buf: &[u8], size: usize) -> usize {
    buf.as_ptr() as usize % size
}

/// Sends `count` messages of `len` bytes over a fresh pair, receiving each
/// (and dropping its chunks) before the next: with every pool buffer back
/// in the ring this never finds it empty, so no chunk is a heap buffer.
async fn assert_no_buffer_lost(lp: &EventLoop, count: u8, len: usize) {
    let (a, b) = tcp_pair().await;
    let mut rx = b.recv_stream();
    let mut heap = 0;
    for i in 0..count {
        let (r, _) = a.write_all(vec![i; len]).await;
        r.unwrap();
        let mut n = 0;
        while n < len {
            let chunk = rx.next().await.unwrap().unwrap();
            assert!(chunk.iter().all(|&x| x == i), "message {i}: {chunk:?}");
            heap += !chunk.is_ring_buffer() as usize;
            n += chunk.len();
        }
    }
    if ring_buffers_in_use(lp) {
        assert_eq!(heap, 0, "a pool buffer was lost");
    }
}

#[ringloop::test]
fn small_receives_share_a_pool_buffer_when_consumed_incrementally(lp: &EventLoop) {
    // Two 4 KiB buffers; forty 100-byte messages, each received (and held)
    // before the next is sent. Consumed incrementally they all fit in the
    // first buffer; otherwise each takes a whole buffer and the ring runs
    // dry after two (the rest arrive in heap buffers).
    let own = loop_with_pool(lp, 2, 4096);
    own.run_until_complete(async move {
        let (a, b) = tcp_pair().await;
        let mut rx = b.recv_stream();
        let mut held = Vec::new();
        for i in 0..40 {
            let (r, _) = a.write_all(pattern(i, 100)).await;
            r.unwrap();
            let mut got = Vec::new();
            while got.len() < 100 {
                let chunk = rx.next().await.unwrap().unwrap();
                got.extend_from_slice(&chunk);
                held.push(chunk);
            }
            assert_eq!(got, pattern(i, 100), "message {i}");
        }
        let lp = ringloop::current().unwrap();
        let ring = held.iter().filter(|c| c.is_ring_buffer()).count();
        if incremental_in_use(&lp) {
            assert_eq!(ring, held.len(), "every small receive fits the shared buffers");
            let shared = held.iter().filter(|c| offset_in_buffer(c, 4096) != 0).count();
            assert!(shared >= 38, "only {shared} chunks start inside a buffer");
            // Each chunk starts where the previous one in its buffer ended.
            for w in held.windows(2) {
                let (p, q) = (w[0].as_ptr() as usize, w[1].as_ptr() as usize);
                if offset_in_buffer(&w[1], 4096) != 0 {
                    assert_eq!(q, p + w[0].len(), "chunks of one buffer are contiguous");
                }
            }
        } else if ring_buffers_in_use(&lp) {
            assert!(ring <= 2, "{ring} whole buffers held out of two");
        }
        // Everything held goes back: messages received (and dropped) one at
        // a time, three times the pool's size in all, never find the ring
        // empty.
        drop(held);
        let mut heap = 0;
        for i in 0..40 {
            let msg = pattern(100 + i, 300);
            let (r, _) = a.write_all(msg.clone()).await;
            r.unwrap();
            let mut got = Vec::new();
            while got.len() < msg.len() {
                let chunk = rx.next().await.unwrap().unwrap();
                heap += !chunk.is_ring_buffer() as usize;
                got.extend_from_slice(&chunk);
            }
            assert_eq!(got, msg, "message {i} after the held ones");
        }
        if ring_buffers_in_use(&lp) {
            assert_eq!(heap, 0, "a pool buffer was lost");
        }
    })
    .unwrap();
}

#[ringloop::test]
fn pooled_receives_over_shared_buffers_keep_every_byte(lp: &EventLoop) {
    // Eight connections share four 256-byte buffers; writers send random
    // sizes, readers keep a random number of recent chunks. Receives of
    // different connections interleave inside one buffer, the ring runs dry
    // over and over, streams end (zero-length results) while buffers are
    // partly filled: every byte must still arrive, in order, untouched.
    let seed = common::net::XorShift::seed_from_env();
    eprintln!("RINGLOOP_TEST_SEED={seed}");
    let own = loop_with_pool(lp, 4, 256);
    own.run_until_complete(async move {
        let mut rng = common::net::XorShift::new(seed);
        let mut tasks = Vec::new();
        for conn in 0..8usize {
            for round in 0..3usize {
                let (a, b) = tcp_pair().await;
                let mut data = vec![0u8; 2000 + rng.below(3000) as usize];
                rng.fill(&mut data);
                let sizes: Vec<usize> = (0..64).map(|_| 1 + rng.below(700) as usize).collect();
                let keep: Vec<usize> = (0..64).map(|_| rng.below(6) as usize).collect();
                let expect = data.clone();
                tasks.push(spawn(async move {
                    let mut at = 0;
                    let mut i = 0;
                    while at < data.len() {
                        let end = (at + sizes[i % sizes.len()]).min(data.len());
                        let (r, _) = a.write_all(data[at..end].to_vec()).await;
                        r.unwrap();
                        at = end;
                        i += 1;
                        if i % 3 == 0 {
                            ringloop::yield_now().await;
                        }
                    }
                    drop(a);
                    (0usize, 0usize)
                }));
                tasks.push(spawn(async move {
                    let mut rx = b.recv_stream();
                    // Chunks kept, with where they start in the stream.
                    let mut held: Vec<(usize, ringloop::buf::PooledBuf)> = Vec::new();
                    let mut got = Vec::new();
                    let (mut heap, mut shared) = (0, 0);
                    let mut i = 0;
                    let unchanged = |at: usize, chunk: &[u8]| {
                        assert!(
                            chunk == &expect[at..at + chunk.len()],
                            "connection {conn} round {round}: a held chunk at {at} was overwritten"
                        );
                    };
                    while let Some(chunk) = rx.next().await {
                        let chunk = chunk.unwrap();
                        if chunk.is_ring_buffer() {
                            shared += (offset_in_buffer(&chunk, 256) != 0) as usize;
                        } else {
                            heap += 1;
                        }
                        held.push((got.len(), chunk));
                        got.extend_from_slice(&held.last().unwrap().1);
                        while held.len() > keep[i % keep.len()] {
                            let (at, old) = held.remove(0);
                            unchanged(at, &old);
                        }
                        i += 1;
                    }
                    for (at, chunk) in &held {
                        unchanged(*at, chunk);
                    }
                    assert!(
                        got == expect,
                        "connection {conn} round {round}: {} of {} bytes, or changed",
                        got.len(),
                        expect.len()
                    );
                    (heap, shared)
                }));
            }
        }
        let (mut heap, mut shared) = (0, 0);
        for t in tasks {
            let (h, s) = t.await.unwrap();
            heap += h;
            shared += s;
        }
        let lp = ringloop::current().unwrap();
        if ring_buffers_in_use(&lp) {
            assert!(heap > 0, "the ring never ran dry: the test proves less than it should");
        }
        if incremental_in_use(&lp) {
            assert!(shared > 0, "no receive shared a buffer");
        }
        // Every buffer came back (none leaked by a dropped stream, an end
        // of stream or a failed receive).
        assert_no_buffer_lost(&lp, 40, 100).await;
    })
    .unwrap();
}

#[ringloop::test]
fn dropping_streams_with_unread_results_in_shared_buffers_returns_them(lp: &EventLoop) {
    // Results queued for a stream that is dropped (and results that arrive
    // after) name buffers that other connections' chunks share: they are
    // released without disturbing the chunks still held.
    let own = loop_with_pool(lp, 2, 512);
    own.run_until_complete(async move {
        let mut kept = Vec::new();
        for round in 0..12u8 {
            let (a, b) = tcp_pair().await;
            {
                let mut rx = b.recv_stream();
                let (r, _) = a.write_all(vec![round; 40]).await;
                r.unwrap();
                kept.push((round, rx.next().await.unwrap().unwrap()));
                for _ in 0..3 {
                    let (r, _) = a.write_all(vec![0xee; 40]).await;
                    r.unwrap();
                    ringloop::sleep(std::time::Duration::from_millis(1)).await;
                }
            }
            drop((a, b));
        }
        for (round, chunk) in &kept {
            assert!(chunk.iter().all(|x| x == round), "round {round}: {chunk:?}");
        }
        drop(kept);
        assert_no_buffer_lost(&ringloop::current().unwrap(), 30, 200).await;
    })
    .unwrap();
}
