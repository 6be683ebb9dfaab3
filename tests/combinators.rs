//! gather / wait / timeout / interval (ASYNCIO-SEMANTICS §6), on both backends.

mod common;

use common::Log;
use ringloop::EventLoop;
use ringloop::{
    ReturnWhen, TaskError, WaitError, gather, gather_settled, gather_tasks, gather_tasks_settled, sleep, spawn, wait,
};
use std::cell::Cell;
use std::rc::Rc;
use std::time::Duration;

async fn after(ms: u64, v: &'static str) -> &'static str {
    sleep(Duration::from_millis(ms)).await;
    v
}

#[ringloop::test(virtual_clock)]
fn gather_keeps_argument_order(lp: &EventLoop) {
    let out = lp
        .run_until_complete(async { gather([after(30, "a"), after(10, "b"), after(20, "c")]).await })
        .unwrap()
        .unwrap();
    assert_eq!(out, ["a", "b", "c"]);
    let empty: Vec<u8> = lp
        .run_until_complete(async { gather(Vec::<std::future::Ready<u8>>::new()).await })
        .unwrap()
        .unwrap();
    assert!(empty.is_empty());
}

#[ringloop::test(virtual_clock)]
fn ten_concurrent_sleeps_take_as_long_as_one(lp: &EventLoop) {
    let t0 = lp.time();
    lp.run_until_complete(async { gather((0..10).map(|_| sleep(Duration::from_secs(2)))).await })
        .unwrap()
        .unwrap();
    let took = lp.time() - t0;
    assert!(
        took >= Duration::from_secs(2) && took < Duration::from_secs(3),
        "{took:?}"
    );
}

#[ringloop::test(virtual_clock)]
fn first_error_propagates_while_the_others_keep_running(lp: &EventLoop) {
    let finished = Rc::new(Cell::new(false));
    let f = finished.clone();
    lp.run_until_complete(async move {
        let slow = async move {
            sleep(Duration::from_millis(50)).await;
            f.set(true);
        };
        let boom = async {
            sleep(Duration::from_millis(10)).await;
            panic!("child boom");
        };
        let g = gather_tasks([spawn(slow), spawn(boom)]);
        let e = g.await.unwrap_err();
        assert_eq!(e.panic_message(), Some("child boom"));
        sleep(Duration::from_millis(100)).await;
    })
    .unwrap();
    assert!(finished.get(), "the sibling kept running after the first error");
}

#[ringloop::test(virtual_clock)]
fn settled_gather_returns_every_outcome_in_place(lp: &EventLoop) {
    let out = lp
        .run_until_complete(async {
            let cancelled = spawn(after(50, "never"));
            cancelled.cancel();
            gather_tasks_settled([spawn(after(10, "ok")), spawn(async { panic!("bad") }), cancelled]).await
        })
        .unwrap()
        .unwrap();
    assert_eq!(out.len(), 3);
    assert_eq!(*out[0].as_ref().unwrap(), "ok");
    assert_eq!(out[1].as_ref().unwrap_err().panic_message(), Some("bad"));
    assert!(out[2].as_ref().unwrap_err().is_cancelled());
}

#[ringloop::test(virtual_clock)]
fn a_cancelled_child_fails_the_gather_but_siblings_continue(lp: &EventLoop) {
    let done = Rc::new(Cell::new(false));
    let d = done.clone();
    lp.run_until_complete(async move {
        let victim = spawn(after(50, "x"));
        let sibling = spawn(async move {
            sleep(Duration::from_millis(30)).await;
            d.set(true);
            "y"
        });
        let v = victim.as_ref();
        let g = gather_tasks([victim, sibling]);
        v.cancel();
        assert!(g.await.unwrap_err().is_cancelled());
        sleep(Duration::from_millis(60)).await;
    })
    .unwrap();
    assert!(done.get());
}

#[ringloop::test(virtual_clock)]
fn cancelling_a_gather_cancels_every_unfinished_child(lp: &EventLoop) {
    let log = Log::new();
    let l = log.clone();
    lp.run_until_complete(async move {
        let children: Vec<_> = (0..3).map(|i| spawn(after(10 + i * 10, "z"))).collect();
        let refs: Vec<_> = children.iter().map(|c| c.as_ref()).collect();
        let g = gather_tasks(children);
        sleep(Duration::from_millis(15)).await; // child 0 is done by now
        assert!(g.cancel());
        assert!(g.await.unwrap_err().is_cancelled());
        sleep(Duration::from_millis(1)).await;
        for r in refs {
            l.push(format!("{}", r.is_cancelled()));
        }
    })
    .unwrap();
    assert_eq!(log.get(), ["false", "true", "true"]);
}

#[ringloop::test(virtual_clock)]
fn cancelling_a_gather_cancels_its_children_at_once_so_they_never_start(lp: &EventLoop) {
    let log = Log::new();
    let l = log.clone();
    lp.run_until_complete(async move {
        let mk = |tag: &'static str| {
            let l = l.clone();
            async move {
                l.push(tag);
                sleep(Duration::from_millis(10)).await;
            }
        };
        let inner = gather([mk("leaf a"), mk("leaf b")]);
        let outer = gather_tasks([inner]);
        assert!(outer.cancel());
        assert!(outer.await.unwrap_err().is_cancelled());
    })
    .unwrap();
    assert!(log.get().is_empty(), "{:?}", log.get());
}

#[ringloop::test(virtual_clock)]
fn nested_gathers_return_nested_results(lp: &EventLoop) {
    let out = lp
        .run_until_complete(async {
            let g1 = gather([after(20, "a"), after(10, "b")]);
            let g2 = gather([after(5, "c")]);
            gather_tasks([g1, g2]).await
        })
        .unwrap()
        .unwrap();
    assert_eq!(out, vec![vec!["a", "b"], vec!["c"]]);
}

#[ringloop::test(virtual_clock)]
fn cancelling_the_top_gather_cancels_every_leaf(lp: &EventLoop) {
    let leaves = lp
        .run_until_complete(async {
            let l1: Vec<_> = (0..2).map(|_| spawn(after(100, "l"))).collect();
            let l2: Vec<_> = (0..2).map(|_| spawn(after(100, "l"))).collect();
            let refs: Vec<_> = l1.iter().chain(l2.iter()).map(|t| t.as_ref()).collect();
            let top = gather_tasks([gather_tasks(l1), gather_tasks(l2)]);
            sleep(Duration::from_millis(10)).await;
            top.cancel();
            assert!(top.await.unwrap_err().is_cancelled());
            sleep(Duration::from_millis(5)).await;
            refs.iter().map(|r| r.is_cancelled()).collect::<Vec<_>>()
        })
        .unwrap();
    assert_eq!(leaves, [true; 4]);
}

#[ringloop::test(virtual_clock)]
fn group2_cancel_fails_the_top_gather_while_group1_finishes(lp: &EventLoop) {
    // The tutorial's grouping with `group2.cancel()`.
    let group1_done = Rc::new(Cell::new(0));
    let g1d = group1_done.clone();
    lp.run_until_complete(async move {
        let group1 = gather((0..2).map(|_| {
            let d = g1d.clone();
            async move {
                sleep(Duration::from_secs(2)).await;
                d.set(d.get() + 1);
                "projectsedu"
            }
        }));
        let group2 = gather((0..2).map(|_| after(2000, "imooc")));
        assert!(group2.cancel());
        let top = gather_tasks([group1, group2]);
        assert!(top.await.unwrap_err().is_cancelled());
        sleep(Duration::from_secs(3)).await;
    })
    .unwrap();
    assert_eq!(group1_done.get(), 2, "group1 still finished");
    // And with return_exceptions=True at the top: [['x'], Cancelled].
    let out = lp
        .run_until_complete(async {
            let g1 = gather([after(10, "x")]);
            let g2 = gather([after(10, "y")]);
            g2.cancel();
            gather_tasks_settled([g1, g2]).await.unwrap()
        })
        .unwrap();
    assert_eq!(*out[0].as_ref().unwrap(), vec!["x"]);
    assert!(out[1].as_ref().unwrap_err().is_cancelled());
}

#[ringloop::test(virtual_clock)]
fn settled_gather_cancelled_from_outside_still_fails(lp: &EventLoop) {
    let e = lp
        .run_until_complete(async {
            let g = gather_settled([after(50, "a")]);
            g.cancel();
            g.await.unwrap_err()
        })
        .unwrap();
    assert!(matches!(e, TaskError::Cancelled));
}

#[ringloop::test(virtual_clock)]
fn heterogeneous_gather_macro(lp: &EventLoop) {
    let (a, b, c) = lp
        .run_until_complete(async {
            ringloop::gather!(after(20, "str"), async { 7u32 }, async {
                sleep(Duration::from_millis(5)).await;
                vec![1, 2]
            })
            .await
            .unwrap()
        })
        .unwrap();
    assert_eq!((a, b, c), ("str", 7, vec![1, 2]));
}

#[ringloop::test(virtual_clock)]
fn wait_all_completed_returns_everything_done(lp: &EventLoop) {
    let (done, pending) = lp
        .run_until_complete(async {
            let ts = vec![spawn(after(10, "a")), spawn(after(30, "b"))];
            wait(ts, ReturnWhen::AllCompleted).await.unwrap()
        })
        .unwrap();
    assert_eq!(done.len(), 2);
    assert!(pending.is_empty());
    assert_eq!(done[0].take_result().unwrap().unwrap(), "a");
}

#[ringloop::test(virtual_clock)]
fn wait_first_completed_leaves_the_rest_pending_and_running(lp: &EventLoop) {
    lp.run_until_complete(async {
        let ts = vec![spawn(after(30, "slow")), spawn(after(10, "fast"))];
        let (done, pending) = wait(ts, ReturnWhen::FirstCompleted).await.unwrap();
        assert_eq!(done.len(), 1);
        assert_eq!(done[0].take_result().unwrap().unwrap(), "fast");
        assert_eq!(pending.len(), 1);
        assert!(!pending[0].is_cancelled());
        let rest = pending.into_iter().next().unwrap();
        assert_eq!(rest.await.unwrap(), "slow", "wait never cancels pending tasks");
    })
    .unwrap();
}

#[ringloop::test(virtual_clock)]
fn wait_first_exception_ignores_cancellations(lp: &EventLoop) {
    lp.run_until_complete(async {
        let c = spawn(after(5, "cancelled"));
        c.cancel();
        let ts = vec![
            c,
            spawn(after(20, "ok")),
            spawn(async {
                sleep(Duration::from_millis(10)).await;
                panic!("fx")
            }),
            spawn(after(100, "late")),
        ];
        let (done, pending) = wait(ts, ReturnWhen::FirstException).await.unwrap();
        assert_eq!(done.len(), 2, "the cancellation did not end the wait, the panic did");
        assert_eq!(pending.len(), 2);
        // Without any panic it waits for all.
        let ts = vec![spawn(after(5, "a")), spawn(after(15, "b"))];
        let (done, pending) = wait(ts, ReturnWhen::FirstException).await.unwrap();
        assert_eq!((done.len(), pending.len()), (2, 0));
    })
    .unwrap();
}

#[ringloop::test(virtual_clock)]
fn wait_with_timeout_returns_pending_without_error_or_cancel(lp: &EventLoop) {
    lp.run_until_complete(async {
        let ts = vec![spawn(after(10, "a")), spawn(after(1000, "b"))];
        let (done, pending) = wait(ts, ReturnWhen::AllCompleted)
            .timeout(Duration::from_millis(50))
            .await
            .unwrap();
        assert_eq!((done.len(), pending.len()), (1, 1));
        assert!(!pending[0].is_cancelled() && !pending[0].is_done());
    })
    .unwrap();
}

#[ringloop::test(virtual_clock)]
fn wait_on_an_empty_set_is_an_error(lp: &EventLoop) {
    let r = lp
        .run_until_complete(async { wait(Vec::<ringloop::Task<()>>::new(), ReturnWhen::AllCompleted).await })
        .unwrap();
    assert_eq!(r.unwrap_err(), WaitError::Empty);
}

#[ringloop::test(virtual_clock)]
fn timeout_cancels_the_inner_future_on_expiry(lp: &EventLoop) {
    let dropped = Rc::new(Cell::new(false));
    let d = dropped.clone();
    let r = lp
        .run_until_complete(async move {
            struct Probe(Rc<Cell<bool>>);
            impl Drop for Probe {
                fn drop(&mut self) {
                    self.0.set(true);
                }
            }
            ringloop::timeout(Duration::from_millis(10), async move {
                let _p = Probe(d);
                sleep(Duration::from_secs(10)).await;
            })
            .await
        })
        .unwrap();
    assert!(r.is_err());
    assert!(dropped.get());
    let ok = lp
        .run_until_complete(ringloop::timeout(Duration::from_secs(1), after(10, "in time")))
        .unwrap();
    assert_eq!(ok.unwrap(), "in time");
    // A zero timeout never polls the future, even a ready one (asyncio's
    // wait_for(coro, 0) never starts the coroutine).
    let ready = lp
        .run_until_complete(ringloop::timeout(Duration::ZERO, async { 3 }))
        .unwrap();
    assert!(ready.is_err());
    let e: std::io::Error = lp
        .run_until_complete(ringloop::timeout(Duration::ZERO, sleep(Duration::from_secs(1))))
        .unwrap()
        .unwrap_err()
        .into();
    assert_eq!(e.kind(), std::io::ErrorKind::TimedOut);
}

#[ringloop::test(virtual_clock)]
fn interval_ticks_on_schedule(lp: &EventLoop) {
    let ticks = lp
        .run_until_complete(async {
            let t0 = ringloop::current().unwrap().time();
            let mut iv = ringloop::interval(Duration::from_millis(100));
            let mut out = Vec::new();
            for _ in 0..4 {
                out.push(iv.tick().await - t0);
            }
            out
        })
        .unwrap();
    assert_eq!(ticks, [0, 100, 200, 300].map(Duration::from_millis));
}
