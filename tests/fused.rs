//! `FusedFuture` / `FusedStream` on ringloop's futures and streams:
//! `futures::select!` takes them without `.fuse()`, and a terminated one
//! is not polled again.

use std::time::Duration;

use futures_core::future::FusedFuture;
use futures_core::stream::FusedStream;
use futures_util::{StreamExt, select};
use ringloop::{EventLoop, sleep, spawn, timeout};

#[ringloop::test(virtual_clock)]
async fn select_over_a_sleep_and_a_task() {
    let mut tick = sleep(Duration::from_millis(10));
    let mut task = spawn(async {
        sleep(Duration::from_millis(50)).await;
        7
    });
    assert!(!tick.is_terminated());
    assert!(!task.is_terminated());
    let mut order = Vec::new();
    loop {
        select! {
            () = tick => {
                // Done: `select!` must skip it from now on.
                assert!(tick.is_terminated());
                assert!(!task.is_terminated());
                order.push("sleep".to_string());
            }
            r = task => {
                assert!(task.is_terminated());
                order.push(format!("task {}", r.unwrap()));
            }
            complete => break,
        }
    }
    assert_eq!(order, ["sleep", "task 7"]);
    assert!(tick.is_terminated() && task.is_terminated());
}

#[ringloop::test(virtual_clock)]
async fn a_done_task_is_not_terminated_until_awaited() {
    let mut task = spawn(async { 1 });
    let mut long = sleep(Duration::from_secs(5));
    sleep(Duration::from_millis(1)).await;
    assert!(task.is_done());
    // Its result is still to be collected: `select!` must still poll it.
    assert!(!task.is_terminated());
    select! {
        r = task => assert_eq!(r.unwrap(), 1),
        () = long => panic!("the sleep cannot win"),
    }
    assert!(task.is_terminated());
    assert!(!long.is_terminated());
}

#[ringloop::test(virtual_clock)]
async fn timeout_is_fused() {
    // An `async` block is not `Unpin`: `select!` takes it pinned.
    let mut quick = std::pin::pin!(timeout(Duration::from_secs(1), async { 3 }));
    let mut slow = timeout(Duration::from_millis(20), sleep(Duration::from_secs(60)));
    let mut got = Vec::new();
    loop {
        select! {
            r = quick => got.push(format!("quick {:?}", r)),
            r = slow => got.push(format!("slow {}", r.is_err())),
            complete => break,
        }
    }
    assert_eq!(got, ["quick Ok(3)", "slow true"]);
    assert!(quick.is_terminated() && slow.is_terminated());
}

#[ringloop::test(virtual_clock)]
async fn a_yield_is_terminated_after_its_second_poll() {
    let mut y = ringloop::yield_now();
    assert!(!y.is_terminated());
    select! { () = y => {} }
    assert!(y.is_terminated());
    // Polling a completed sleep again returns at once (no new timer).
    (&mut y).await;
}

#[ringloop::test]
fn incoming_is_a_never_ending_fused_stream(lp: &EventLoop) {
    lp.run_until_complete(async {
        let listener = ringloop::net::TcpListener::bind("127.0.0.1:0".parse().unwrap()).unwrap();
        let addr = listener.local_addr().unwrap();
        let mut incoming = listener.incoming();
        assert!(!incoming.is_terminated());
        let mut connect = spawn(ringloop::net::TcpStream::connect(addr));
        let mut accepted = 0;
        let mut connected = false;
        while accepted == 0 || !connected {
            select! {
                c = incoming.next() => {
                    c.expect("never ends").unwrap();
                    accepted += 1;
                }
                s = connect => {
                    s.unwrap().unwrap();
                    connected = true;
                }
            }
        }
        assert!(!incoming.is_terminated());
    })
    .unwrap();
}
