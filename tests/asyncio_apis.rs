//! asyncio APIs of issue #8 (create_future, contextvars, as_completed, shield,
//! TaskGroup, Barrier, Queue.shutdown), on both backends. Tests assert
//! orders, results and errors, never timing.

#[macro_use]
mod common;

use common::Log;
use ringloop::sync::{Discipline, GenericQueue, LifoQueue, PriorityQueue, Queue};
use ringloop::{spawn, yield_now};
use std::pin::Pin;

/// Await the next item of a stream (no futures-util needed).
async fn next<S: futures_core::Stream + Unpin>(s: &mut S) -> Option<S::Item> {
    std::future::poll_fn(|cx| Pin::new(&mut *s).poll_next(cx)).await
}

/// Python 3.13: after `shutdown()`, gets drain what is left, then raise.
async fn drain_after_shutdown<K: Discipline<i32>>(q: GenericQueue<i32, K>) -> Vec<i32> {
    for i in [1, 3, 2] {
        q.put(i).await.unwrap();
    }
    q.shutdown(false);
    assert!(q.is_shut_down());
    let err = q.put(9).await.unwrap_err();
    assert_eq!(err.into_inner(), 9, "the rejected item is handed back");
    assert!(q.put_nowait(9).unwrap_err().is_shut_down());
    let mut got = Vec::new();
    while let Ok(v) = q.get().await {
        got.push(v);
    }
    assert!(q.get_nowait().unwrap_err().is_shut_down());
    got
}

both_backends! {
    // ------------------------------------------------- Queue.shutdown (3.13)

    fn queue_shutdown_put_raises_and_get_raises_once_empty(lp) {
        lp.run_until_complete(async {
            assert_eq!(drain_after_shutdown(Queue::new(0)).await, [1, 3, 2]);
            assert_eq!(drain_after_shutdown(LifoQueue::new(5)).await, [2, 3, 1]);
            assert_eq!(drain_after_shutdown(PriorityQueue::new(3)).await, [1, 2, 3]);
        })
        .unwrap();
    }

    fn queue_shutdown_wakes_blocked_getters_and_putters(lp) {
        let log = Log::new();
        let l = log.clone();
        lp.run_until_complete(async move {
            // Getters blocked on an empty queue.
            let q: Queue<i32> = Queue::new(1);
            let getters: Vec<_> = (0..2)
                .map(|i| {
                    let (q, l) = (q.clone(), l.clone());
                    spawn(async move {
                        let r = q.get().await;
                        l.push(format!("get{i} {}", if r.is_err() { "shut down" } else { "item" }));
                    })
                })
                .collect();
            // Putters blocked on a full queue.
            let full: Queue<i32> = Queue::new(1);
            full.put_nowait(0).unwrap();
            let putters: Vec<_> = (1..3)
                .map(|i| {
                    let (q, l) = (full.clone(), l.clone());
                    spawn(async move {
                        let r = q.put(i).await;
                        l.push(format!("put{i} {:?}", r.map_err(|e| e.into_inner())));
                    })
                })
                .collect();
            yield_now().await;
            assert!(l.get().is_empty(), "everyone is blocked");
            q.shutdown(false);
            full.shutdown(false);
            for t in getters.into_iter().chain(putters) {
                t.await.unwrap();
            }
            // The item put before shutdown is still there for a get.
            assert_eq!(full.get().await.unwrap(), 0);
            assert!(full.get().await.is_err());
        })
        .unwrap();
        assert_eq!(
            log.get(),
            ["get0 shut down", "get1 shut down", "put1 Err(1)", "put2 Err(2)"]
        );
    }

    fn queue_shutdown_immediate_drains_and_releases_join(lp) {
        let log = Log::new();
        let l = log.clone();
        lp.run_until_complete(async move {
            let q = Queue::new(0);
            for i in 0..3 {
                q.put_nowait(i).unwrap();
            }
            assert_eq!(q.get().await.unwrap(), 0, "one item taken, not yet done");
            let (q2, l2) = (q.clone(), l.clone());
            let joiner = spawn(async move {
                q2.join().await;
                l2.push("joined");
            });
            yield_now().await;
            q.shutdown(true);
            assert_eq!(q.qsize(), 0, "immediate shutdown empties the queue");
            assert!(q.get().await.is_err(), "nothing left to get");
            yield_now().await;
            assert!(l.get().is_empty(), "the taken item is still unfinished");
            l.push("task_done");
            q.task_done().unwrap();
            joiner.await.unwrap();
            assert!(q.task_done().is_err(), "drained items count as done");
        })
        .unwrap();
        assert_eq!(log.get(), ["task_done", "joined"]);
    }

    fn queue_shutdown_immediate_fails_a_woken_getter(lp) {
        lp.run_until_complete(async {
            let q: Queue<&str> = Queue::new(0);
            let q2 = q.clone();
            let getter = spawn(async move { q2.get().await });
            yield_now().await;
            q.put_nowait("x").unwrap(); // reserved for the getter, which has not run yet
            q.shutdown(true);
            assert!(getter.await.unwrap().is_err(), "the reserved item was drained");
        })
        .unwrap();
    }

    fn queue_stream_ends_after_shutdown(lp) {
        lp.run_until_complete(async {
            let q = Queue::new(0);
            let mut s = q.stream();
            q.put_nowait(1).unwrap();
            q.put_nowait(2).unwrap();
            let q2 = q.clone();
            spawn(async move {
                yield_now().await;
                q2.shutdown(false);
            });
            let mut got = Vec::new();
            while let Some(v) = next(&mut s).await {
                got.push(v);
            }
            assert_eq!(got, [1, 2]);
            assert!(futures_core::stream::FusedStream::is_terminated(&s));
            assert_eq!(next(&mut s).await, None);
        })
        .unwrap();
    }
}
