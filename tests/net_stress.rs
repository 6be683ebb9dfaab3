//! TCP stress on both backends: 100 MiB through one connection (checksummed)
//! and 1 000 concurrent connections × 100 round trips each.

mod common;

use ringloop::EventLoop;
use ringloop::{AsyncReadOwned, AsyncWriteOwned};
use std::cell::Cell;
use std::rc::Rc;
use std::time::{Duration, Instant};

use common::net::*;
use common::open_fds;
use ringloop::net::TcpStream;
use ringloop::{spawn, timeout};

/// Bytes pushed through one connection.
const ECHO_BYTES: u64 = 100 * 1024 * 1024;
/// Concurrent connections and round trips per connection.
const CONNS: usize = 1_000;
const ROUND_TRIPS: usize = 100;

/// Nothing here may take this long even on a loaded 2-core machine in a
/// debug build; it turns a hang into a failure.
const NO_HANG: Duration = Duration::from_secs(300);

#[ringloop::test]
fn one_hundred_mib_echo_through_one_connection_arrives_intact(lp: &EventLoop) {
    let t0 = Instant::now();
    let seed = 0x5eed_0001;
    let (sent, received) = lp
        .run_until_complete(async move {
            let listener = loopback_listener();
            let addr = listener.local_addr().unwrap();
            let server = spawn(echo_server(listener)).cancel_on_drop();
            let (rd, wr) = TcpStream::connect_addr(addr).await.unwrap().into_split();
            let writer = spawn(async move {
                let mut rng = XorShift::new(seed);
                let mut sum = Checksum::default();
                let mut buf = Vec::with_capacity(256 * 1024);
                let mut left = ECHO_BYTES;
                while left > 0 {
                    // Odd chunk sizes, so reads and writes never line up.
                    let n = (left as usize).min(128 * 1024 + rng.below(128 * 1024) as usize);
                    buf.clear();
                    buf.resize(n, 0);
                    rng.fill(&mut buf);
                    sum.update(&buf);
                    let (r, b) = wr.write_all(buf).await;
                    r.unwrap();
                    buf = b;
                    left -= n as u64;
                }
                wr.shutdown().unwrap();
                sum.finish()
            });
            let reader = spawn(async move {
                let mut sum = Checksum::default();
                let mut buf = Vec::with_capacity(200 * 1024 + 17);
                loop {
                    buf.clear();
                    let (r, b) = rd.read(buf).await;
                    buf = b;
                    if r.unwrap() == 0 {
                        return sum.finish();
                    }
                    sum.update(&buf);
                }
            });
            let sent = timeout(NO_HANG, writer).await.expect("writer hung").unwrap();
            let received = timeout(NO_HANG, reader).await.expect("reader hung").unwrap();
            drop(server);
            (sent, received)
        })
        .unwrap();
    eprintln!(
        "[{}] 100 MiB echo: sent {:x}/{} B, received {:x}/{} B, {:?}",
        lp.driver_kind(),
        sent.0,
        sent.1,
        received.0,
        received.1,
        t0.elapsed()
    );
    assert_eq!(sent.1, ECHO_BYTES);
    assert_eq!(received, sent, "echoed stream differs (checksum, length)");
}

#[ringloop::test]
fn a_thousand_concurrent_connections_each_make_a_hundred_round_trips(lp: &EventLoop) {
    // Both backends' copies of this test may run at once in this
    // process: budget the fds for two (2 per connection each).
    let wanted = (4 * CONNS + 256) as u64;
    let soft = raise_nofile_to(wanted);
    let budget = (soft as usize).saturating_sub(open_fds() + 256) / 4;
    let conns = CONNS.min(budget);
    if conns < CONNS {
        eprintln!(
            "RLIMIT_NOFILE soft limit {soft} (hard {}) allows only {conns} connections per \
             backend instead of {CONNS}: scaled down",
            nofile_limit().1
        );
    }
    assert!(conns >= 100, "RLIMIT_NOFILE too low for a meaningful run: {soft}");
    let t0 = Instant::now();
    let total = lp
        .run_until_complete(async move {
            let listener = loopback_listener();
            let addr = listener.local_addr().unwrap();
            let server = spawn(echo_server(listener)).cancel_on_drop();
            let round_trips = Rc::new(Cell::new(0usize));
            let clients: Vec<_> = (0..conns)
                .map(|id| {
                    let round_trips = round_trips.clone();
                    spawn(async move {
                        let c = TcpStream::connect_addr(addr).await.unwrap();
                        c.set_nodelay(true).unwrap();
                        let mut reply = Vec::new();
                        for round in 0..ROUND_TRIPS {
                            let msg = format!("conn {id:>4} round {round:>3}|").into_bytes();
                            let (r, _) = c.write_all(msg.clone()).await;
                            r.unwrap();
                            reply.clear();
                            let (r, got) = c.read_exact(reply, msg.len()).await;
                            r.unwrap();
                            assert_eq!(got, msg, "conn {id} round {round}: wrong echo");
                            reply = got;
                            round_trips.set(round_trips.get() + 1);
                        }
                    })
                })
                .collect();
            for c in clients {
                timeout(NO_HANG, c).await.expect("a client hung").unwrap();
            }
            drop(server);
            round_trips.get()
        })
        .unwrap();
    eprintln!(
        "[{}] {conns} connections x {ROUND_TRIPS} round trips: {total} in {:?}",
        lp.driver_kind(),
        t0.elapsed()
    );
    assert_eq!(total, conns * ROUND_TRIPS);
}
