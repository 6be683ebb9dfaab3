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
        if let Some((sqes, _)) = counts {
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
        if let Some((_, cancels)) = counts {
            assert!(cancels >= 1, "{choice:?}: the queue bound never cancelled the accept");
        }
    }
}
