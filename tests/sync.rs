//! Synchronization primitives and queues (ASYNCIO-SEMANTICS §7–8), on both
//! backends. Every test asserts orders, results and errors, never timing.

mod common;

use common::Log;
use futures_util::StreamExt;
use ringloop::EventLoop;
use ringloop::sync::{
    BoundedReleaseError, BoundedSemaphore, Condition, Event, LifoQueue, Lock, NotHeld, PriorityQueue, Queue, Semaphore,
    TaskDoneError, TryGetError,
};
use ringloop::{TaskError, spawn, yield_now};
use std::cell::Cell;
use std::rc::Rc;

/// A task that takes `lock`, logs `name`, yields once holding it, and releases.
fn lock_user(lock: &Lock, log: &Log, name: &'static str) -> ringloop::Task<()> {
    let (lock, log) = (lock.clone(), log.clone());
    spawn(async move {
        let _g = lock.lock().await;
        log.push(name);
        yield_now().await;
    })
}

/// A task that waits on `cond` (holding its lock around the wait) and logs `name`.
fn cond_waiter(cond: &Condition, log: &Log, name: &'static str) -> ringloop::Task<()> {
    let (cond, log) = (cond.clone(), log.clone());
    spawn(async move {
        let g = cond.lock().await;
        let g = cond.wait(g).await.unwrap();
        assert!(cond.locked(), "wait() returns with the lock re-acquired");
        log.push(name);
        drop(g);
    })
}

// ------------------------------------------------------------ Lock

#[ringloop::test]
fn lock_uncontended_acquire_does_not_yield(lp: &EventLoop) {
    let log = Log::new();
    let l = log.clone();
    lp.run_until_complete(async move {
        let l2 = l.clone();
        let other = spawn(async move { l2.push("other task") });
        let lock = Lock::new();
        let g = lock.lock().await;
        l.push("locked");
        assert!(lock.locked());
        drop(g);
        assert!(!lock.locked());
        other.await.unwrap();
    })
    .unwrap();
    assert_eq!(log.get(), ["locked", "other task"]);
}

#[ringloop::test]
fn lock_waiters_are_served_fifo(lp: &EventLoop) {
    let log = Log::new();
    let l = log.clone();
    lp.run_until_complete(async move {
        let lock = Lock::new();
        let g = lock.lock().await;
        let tasks: Vec<_> = ["a", "b", "c", "d"]
            .into_iter()
            .map(|n| lock_user(&lock, &l, n))
            .collect();
        yield_now().await;
        assert!(l.get().is_empty());
        drop(g);
        for t in tasks {
            t.await.unwrap();
        }
        assert!(!lock.locked());
    })
    .unwrap();
    assert_eq!(log.get(), ["a", "b", "c", "d"]);
}

#[ringloop::test]
fn lock_newcomer_queues_behind_the_woken_waiter(lp: &EventLoop) {
    // asyncio probe p13.
    let log = Log::new();
    let l = log.clone();
    lp.run_until_complete(async move {
        let lock = Lock::new();
        let g = lock.lock().await;
        let b = lock_user(&lock, &l, "b");
        yield_now().await;
        drop(g);
        assert!(
            !lock.locked(),
            "locked() is false between release and the waiter running"
        );
        assert!(lock.try_lock().is_none(), "but nobody may barge");
        let c = lock_user(&lock, &l, "c");
        b.await.unwrap();
        c.await.unwrap();
    })
    .unwrap();
    assert_eq!(log.get(), ["b", "c"]);
}

#[ringloop::test]
fn lock_woken_then_cancelled_waiter_passes_the_lock_on(lp: &EventLoop) {
    let log = Log::new();
    let l = log.clone();
    lp.run_until_complete(async move {
        let lock = Lock::new();
        let g = lock.lock().await;
        let b = lock_user(&lock, &l, "b");
        let c = lock_user(&lock, &l, "c");
        yield_now().await;
        drop(g); // wakes b only
        assert!(b.cancel());
        assert!(matches!(b.await, Err(TaskError::Cancelled)));
        c.await.unwrap();
        assert!(!lock.locked());
        assert!(lock.try_lock().is_some());
    })
    .unwrap();
    assert_eq!(log.get(), ["c"]);
}

#[ringloop::test]
fn lock_cancelled_waiting_waiter_leaves_the_line(lp: &EventLoop) {
    let log = Log::new();
    let l = log.clone();
    lp.run_until_complete(async move {
        let lock = Lock::new();
        let g = lock.lock().await;
        let b = lock_user(&lock, &l, "b");
        let c = lock_user(&lock, &l, "c");
        let d = lock_user(&lock, &l, "d");
        yield_now().await;
        assert!(c.cancel());
        assert!(matches!(c.await, Err(TaskError::Cancelled)));
        drop(g);
        b.await.unwrap();
        d.await.unwrap();
    })
    .unwrap();
    assert_eq!(log.get(), ["b", "d"]);
}

// ------------------------------------------------------------ Event

#[ringloop::test]
fn event_wait_on_a_set_event_does_not_yield(lp: &EventLoop) {
    let log = Log::new();
    let l = log.clone();
    lp.run_until_complete(async move {
        let l2 = l.clone();
        let other = spawn(async move { l2.push("other task") });
        let ev = Event::new();
        ev.set();
        ev.wait().await;
        l.push("waited");
        other.await.unwrap();
    })
    .unwrap();
    assert_eq!(log.get(), ["waited", "other task"]);
}

#[ringloop::test]
fn event_set_wakes_every_waiter_and_clear_does_not_undo_it(lp: &EventLoop) {
    let log = Log::new();
    let l = log.clone();
    lp.run_until_complete(async move {
        let ev = Event::new();
        let tasks: Vec<_> = ["a", "b", "c"]
            .into_iter()
            .map(|n| {
                let (ev, l) = (ev.clone(), l.clone());
                spawn(async move {
                    ev.wait().await;
                    l.push(n);
                })
            })
            .collect();
        yield_now().await;
        assert!(l.get().is_empty());
        ev.set();
        ev.clear();
        for t in tasks {
            t.await.unwrap();
        }
        assert!(!ev.is_set());
    })
    .unwrap();
    assert_eq!(log.get(), ["a", "b", "c"]);
}

#[ringloop::test]
fn event_task_created_before_set_runs_before_the_woken_waiters(lp: &EventLoop) {
    // CPython test_wait: result [3, 1, 2].
    let log = Log::new();
    let l = log.clone();
    lp.run_until_complete(async move {
        let ev = Event::new();
        let waiter = |n: &'static str| {
            let (ev, l) = (ev.clone(), l.clone());
            spawn(async move {
                ev.wait().await;
                l.push(n);
            })
        };
        let t1 = waiter("1");
        let t2 = waiter("2");
        yield_now().await;
        let t3 = waiter("3");
        ev.set();
        t1.await.unwrap();
        t2.await.unwrap();
        t3.await.unwrap();
    })
    .unwrap();
    assert_eq!(log.get(), ["3", "1", "2"]);
}

// ------------------------------------------------------------ Condition

#[ringloop::test]
fn condition_notify_without_the_lock_is_an_error(lp: &EventLoop) {
    lp.run_until_complete(async {
        let cond = Condition::new();
        assert!(matches!(cond.notify(1), Err(NotHeld { .. })));
        assert!(matches!(cond.notify_all(), Err(NotHeld { .. })));
        let g = cond.lock().await;
        assert!(matches!(cond.notify(1), Ok(0)));
        assert!(matches!(cond.notify_all(), Ok(0)));
        drop(g);
    })
    .unwrap();
}

#[ringloop::test]
fn condition_wait_with_a_guard_of_another_lock_is_an_error(lp: &EventLoop) {
    lp.run_until_complete(async {
        let cond = Condition::new();
        let other = Lock::new();
        let g = other.lock().await;
        let err = cond.wait(g).await.unwrap_err();
        let g = err.into_guard();
        assert!(
            g.is_guard_of(&other) && other.locked(),
            "the guard comes back, still held"
        );
        let err = cond.wait_for(g, || true).await.unwrap_err();
        drop(err);
        assert!(!other.locked());
    })
    .unwrap();
}

#[ringloop::test]
fn condition_notify_n_wakes_at_most_n_waiters_fifo(lp: &EventLoop) {
    // CPython test_notify.
    let log = Log::new();
    let l = log.clone();
    lp.run_until_complete(async move {
        let cond = Condition::new();
        let tasks: Vec<_> = ["1", "2", "3"].into_iter().map(|n| cond_waiter(&cond, &l, n)).collect();
        yield_now().await;
        assert!(!cond.locked(), "waiters released the lock");

        let g = cond.lock().await;
        assert!(matches!(cond.notify(1), Ok(1)));
        drop(g);
        for _ in 0..3 {
            yield_now().await;
        }
        assert_eq!(l.get(), ["1"]);

        let g = cond.lock().await;
        assert!(matches!(cond.notify(1), Ok(1)));
        assert!(matches!(cond.notify(2048), Ok(1)));
        drop(g);
        for t in tasks {
            t.await.unwrap();
        }
    })
    .unwrap();
    assert_eq!(log.get(), ["1", "2", "3"]);
}

#[ringloop::test]
fn condition_notify_all_wakes_every_waiter_fifo(lp: &EventLoop) {
    let log = Log::new();
    let l = log.clone();
    lp.run_until_complete(async move {
        let cond = Condition::new();
        let tasks: Vec<_> = ["1", "2", "3"].into_iter().map(|n| cond_waiter(&cond, &l, n)).collect();
        yield_now().await;
        let g = cond.lock().await;
        assert!(matches!(cond.notify_all(), Ok(3)));
        for _ in 0..3 {
            yield_now().await;
        }
        assert!(l.get().is_empty(), "woken waiters still need the lock");
        drop(g);
        for t in tasks {
            t.await.unwrap();
        }
    })
    .unwrap();
    assert_eq!(log.get(), ["1", "2", "3"]);
}

#[ringloop::test]
fn condition_wait_for_returns_once_the_predicate_holds(lp: &EventLoop) {
    lp.run_until_complete(async {
        let cond = Condition::new();
        let value = Rc::new(Cell::new(0));
        let calls = Rc::new(Cell::new(0));
        let (c, v, n) = (cond.clone(), value.clone(), calls.clone());
        let t = spawn(async move {
            let g = c.lock().await;
            let g = c
                .wait_for(g, || {
                    n.set(n.get() + 1);
                    v.get() == 2
                })
                .await
                .unwrap();
            let held = c.locked();
            drop(g);
            (held, v.get())
        });
        for step in 1..=2 {
            yield_now().await;
            assert_eq!(calls.get(), step, "checked at start, then after each wakeup");
            assert!(!t.is_done(), "the predicate does not hold yet");
            value.set(step);
            let g = cond.lock().await;
            cond.notify(1).unwrap();
            drop(g);
        }
        assert_eq!(t.await.unwrap(), (true, 2));
        assert_eq!(calls.get(), 3, "checked at start and after each wakeup");

        // A predicate that already holds returns without releasing the lock.
        let g = cond.lock().await;
        let g = cond.wait_for(g, || true).await.unwrap();
        assert!(g.is_guard_of(cond.as_lock()));
    })
    .unwrap();
}

#[ringloop::test]
fn condition_notified_then_cancelled_waiter_passes_the_notification_on(lp: &EventLoop) {
    let log = Log::new();
    let l = log.clone();
    lp.run_until_complete(async move {
        let cond = Condition::new();
        let t1 = cond_waiter(&cond, &l, "1");
        let t2 = cond_waiter(&cond, &l, "2");
        let t3 = cond_waiter(&cond, &l, "3");
        yield_now().await;
        let g = cond.lock().await;
        assert!(matches!(cond.notify(1), Ok(1))); // wakes 1
        assert!(t1.cancel());
        drop(g);
        assert!(matches!(t1.await, Err(TaskError::Cancelled)));
        t2.await.unwrap();
        assert!(t3.cancel());
    })
    .unwrap();
    assert_eq!(log.get(), ["2"]);
}

#[ringloop::test]
fn condition_waiter_cancelled_while_reacquiring_passes_the_lock_on(lp: &EventLoop) {
    let log = Log::new();
    let l = log.clone();
    lp.run_until_complete(async move {
        let cond = Condition::new();
        let t1 = cond_waiter(&cond, &l, "1");
        let t2 = cond_waiter(&cond, &l, "2");
        yield_now().await;
        let g = cond.lock().await;
        cond.notify_all().unwrap();
        yield_now().await; // both now queue for the lock
        drop(g); // hands the lock to 1
        assert!(t1.cancel());
        assert!(matches!(t1.await, Err(TaskError::Cancelled)));
        t2.await.unwrap();
        assert!(!cond.locked());
        assert!(cond.try_lock().is_some());
    })
    .unwrap();
    assert_eq!(log.get(), ["2"]);
}

// ------------------------------------------------------------ Semaphore

#[ringloop::test]
fn semaphore_waiters_are_served_fifo_without_barging(lp: &EventLoop) {
    let log = Log::new();
    let l = log.clone();
    lp.run_until_complete(async move {
        let sem = Semaphore::new(1);
        let p = sem.acquire().await; // uncontended: no yield
        assert_eq!(sem.available(), 0);
        let tasks: Vec<_> = ["a", "b", "c"]
            .into_iter()
            .map(|n| {
                let (sem, l) = (sem.clone(), l.clone());
                spawn(async move {
                    let _p = sem.acquire().await;
                    l.push(n);
                    yield_now().await;
                })
            })
            .collect();
        yield_now().await;
        assert!(sem.locked());
        drop(p); // unit handed to "a"
        assert_eq!(sem.available(), 0);
        assert!(sem.try_acquire().is_none(), "a newcomer cannot take a's unit");
        for t in tasks {
            t.await.unwrap();
        }
        assert_eq!(sem.available(), 1);
    })
    .unwrap();
    assert_eq!(log.get(), ["a", "b", "c"]);
}

#[ringloop::test]
fn semaphore_woken_then_cancelled_waiter_passes_the_unit_on(lp: &EventLoop) {
    let log = Log::new();
    let l = log.clone();
    lp.run_until_complete(async move {
        let sem = Semaphore::new(0);
        let waiter = |n: &'static str| {
            let (sem, l) = (sem.clone(), l.clone());
            spawn(async move {
                let _p = sem.acquire().await;
                l.push(n);
            })
        };
        let a = waiter("a");
        let b = waiter("b");
        yield_now().await;
        sem.release();
        assert!(a.cancel());
        assert!(matches!(a.await, Err(TaskError::Cancelled)));
        b.await.unwrap();
        assert_eq!(sem.available(), 1);
    })
    .unwrap();
    assert_eq!(log.get(), ["b"]);
}

#[ringloop::test]
fn semaphore_release_is_unbounded(lp: &EventLoop) {
    lp.run_until_complete(async {
        let sem = Semaphore::new(0);
        for _ in 0..3 {
            sem.release();
        }
        assert_eq!(sem.available(), 3);
        let permits: Vec<_> = acquire_all(&sem).await;
        assert_eq!(permits.len(), 3);
        assert!(sem.try_acquire().is_none());
    })
    .unwrap();
}

#[ringloop::test]
fn bounded_semaphore_release_above_the_initial_value_is_an_error(lp: &EventLoop) {
    lp.run_until_complete(async {
        let sem = BoundedSemaphore::new(2);
        assert_eq!(sem.bound(), 2);
        assert!(matches!(sem.release(), Err(BoundedReleaseError { .. })));
        let p = sem.acquire().await;
        assert!(
            matches!(sem.release(), Err(BoundedReleaseError { .. })),
            "a live permit releases itself"
        );
        p.forget();
        assert_eq!(sem.available(), 1);
        assert!(sem.release().is_ok());
        assert_eq!(sem.available(), 2);
        assert!(matches!(sem.release(), Err(BoundedReleaseError { .. })));
    })
    .unwrap();
}

// ------------------------------------------------------------ Queues

#[ringloop::test]
fn queue_orders_for_puts_of_1_3_2(lp: &EventLoop) {
    let (fifo, lifo, prio) = lp
        .run_until_complete(async {
            let (q, lq, pq) = (Queue::new(0), LifoQueue::new(0), PriorityQueue::new(0));
            for i in [1, 3, 2] {
                q.put(i).await.unwrap();
                lq.put(i).await.unwrap();
                pq.put(i).await.unwrap();
            }
            let mut out = (vec![], vec![], vec![]);
            for _ in 0..3 {
                out.0.push(q.get().await.unwrap());
                out.1.push(lq.get().await.unwrap());
                out.2.push(pq.get().await.unwrap());
            }
            out
        })
        .unwrap();
    assert_eq!(fifo, [1, 3, 2]);
    assert_eq!(lifo, [2, 3, 1]);
    assert_eq!(prio, [1, 2, 3]);
}

#[ringloop::test]
fn queue_uncontended_put_and_get_do_not_yield(lp: &EventLoop) {
    let log = Log::new();
    let l = log.clone();
    lp.run_until_complete(async move {
        let l2 = l.clone();
        let other = spawn(async move { l2.push("other task") });
        let q = Queue::new(1);
        q.put("x").await.unwrap();
        assert_eq!(q.get().await.unwrap(), "x");
        l.push("put and got");
        other.await.unwrap();
    })
    .unwrap();
    assert_eq!(log.get(), ["put and got", "other task"]);
}

#[ringloop::test]
fn queue_put_blocks_while_the_queue_is_full(lp: &EventLoop) {
    let log = Log::new();
    let l = log.clone();
    lp.run_until_complete(async move {
        let q = Queue::new(2);
        q.put(1).await.unwrap();
        q.put(2).await.unwrap();
        assert!(q.full());
        let (q2, l2) = (q.clone(), l.clone());
        let putter = spawn(async move {
            q2.put(3).await.unwrap();
            l2.push("put 3");
        });
        for _ in 0..3 {
            yield_now().await;
        }
        assert!(l.get().is_empty(), "put must wait while full");
        assert_eq!(q.qsize(), 2);
        assert_eq!(q.get().await.unwrap(), 1);
        putter.await.unwrap();
        assert_eq!(q.get().await.unwrap(), 2);
        assert_eq!(q.get().await.unwrap(), 3);
    })
    .unwrap();
    assert_eq!(log.get(), ["put 3"]);
}

#[ringloop::test]
fn queue_nowait_errors(lp: &EventLoop) {
    lp.run_until_complete(async {
        let q = Queue::new(1);
        assert!(matches!(q.get_nowait(), Err(TryGetError::Empty(_))));
        q.put_nowait("a").unwrap();
        assert!(q.full());
        let err = q.put_nowait("b").unwrap_err();
        assert_eq!(*err.item(), "b");
        assert_eq!(err.into_inner(), "b", "the rejected item is handed back");
        assert_eq!(q.qsize(), 1);
        assert_eq!(q.get_nowait().unwrap(), "a");
        assert!(q.empty());

        let unbounded = Queue::new(0);
        for i in 0..100 {
            unbounded.put_nowait(i).unwrap();
            assert!(!unbounded.full());
        }
        assert_eq!(unbounded.qsize(), 100);
        assert_eq!(unbounded.maxsize(), 0);
    })
    .unwrap();
}

#[ringloop::test]
fn queue_blocked_getters_and_putters_are_served_fifo(lp: &EventLoop) {
    let log = Log::new();
    let l = log.clone();
    lp.run_until_complete(async move {
        let q = Queue::new(1);
        let getters: Vec<_> = ["g1", "g2", "g3"]
            .into_iter()
            .map(|n| {
                let (q, l) = (q.clone(), l.clone());
                spawn(async move {
                    let v: i32 = q.get().await.unwrap();
                    l.push(format!("{n}={v}"));
                })
            })
            .collect();
        yield_now().await;
        let putters: Vec<_> = (1..=5)
            .map(|i| {
                let q = q.clone();
                spawn(async move { q.put(i).await.unwrap() })
            })
            .collect();
        for g in getters {
            g.await.unwrap();
        }
        for p in putters.into_iter().take(3) {
            p.await.unwrap();
        }
        let mut rest = vec![];
        for _ in 0..2 {
            rest.push(q.get().await.unwrap());
        }
        l.push(format!("rest={rest:?}"));
    })
    .unwrap();
    assert_eq!(log.get(), ["g1=1", "g2=2", "g3=3", "rest=[4, 5]"]);
}

#[ringloop::test]
fn queue_newcomers_do_not_barge_past_woken_waiters(lp: &EventLoop) {
    lp.run_until_complete(async {
        // A getter woken by a put keeps its item.
        let q = Queue::new(0);
        let q2 = q.clone();
        let getter = spawn(async move { q2.get().await.unwrap() });
        yield_now().await;
        q.put_nowait("x").unwrap();
        assert_eq!(q.qsize(), 1);
        assert!(matches!(q.get_nowait(), Err(TryGetError::Empty(_))));
        assert_eq!(getter.await.unwrap(), "x");
        assert!(q.empty());

        // A putter woken by a get keeps its slot.
        let q = Queue::new(1);
        q.put_nowait(1).unwrap();
        let q2 = q.clone();
        let putter = spawn(async move { q2.put(2).await.unwrap() });
        yield_now().await;
        assert_eq!(q.get_nowait().unwrap(), 1);
        assert!(!q.full(), "the slot is free, as in asyncio");
        assert_eq!(q.put_nowait(3).unwrap_err().into_inner(), 3);
        putter.await.unwrap();
        assert_eq!(q.get_nowait().unwrap(), 2);
    })
    .unwrap();
}

#[ringloop::test]
fn queue_woken_then_cancelled_getter_does_not_lose_the_item(lp: &EventLoop) {
    lp.run_until_complete(async {
        let q = Queue::new(0);
        let getter = |q: &Queue<&'static str>| {
            let q = q.clone();
            spawn(async move { q.get().await.unwrap() })
        };
        let a = getter(&q);
        let b = getter(&q);
        yield_now().await;
        q.put_nowait("item").unwrap(); // reserved for a
        assert!(a.cancel());
        assert!(matches!(a.await, Err(TaskError::Cancelled)));
        assert_eq!(b.await.unwrap(), "item", "passed on to the next getter");

        let c = getter(&q);
        yield_now().await;
        q.put_nowait("kept").unwrap();
        assert!(c.cancel());
        assert!(matches!(c.await, Err(TaskError::Cancelled)));
        assert_eq!(q.get_nowait().unwrap(), "kept", "no getter left: it stays queued");
    })
    .unwrap();
}

#[ringloop::test]
fn queue_task_done_and_join(lp: &EventLoop) {
    let log = Log::new();
    let l = log.clone();
    lp.run_until_complete(async move {
        let q = Queue::new(0);
        assert!(matches!(q.task_done(), Err(TaskDoneError { .. })));
        q.join().await; // nothing unfinished: returns at once
        for i in 0..4 {
            q.put(i).await.unwrap();
        }
        let (q2, l2) = (q.clone(), l.clone());
        let joiner = spawn(async move {
            q2.join().await;
            l2.push("joined");
        });
        let workers: Vec<_> = (0..2)
            .map(|_| {
                let (q, l) = (q.clone(), l.clone());
                spawn(async move {
                    loop {
                        let item = q.get().await.unwrap();
                        yield_now().await;
                        l.push(format!("done {item}"));
                        q.task_done().unwrap();
                    }
                })
            })
            .collect();
        joiner.await.unwrap();
        for w in workers {
            w.cancel();
        }
        assert!(matches!(q.task_done(), Err(TaskDoneError { .. })));
    })
    .unwrap();
    let got = log.get();
    assert_eq!(got.last().map(String::as_str), Some("joined"));
    let mut done = got[..got.len() - 1].to_vec();
    done.sort();
    assert_eq!(done, ["done 0", "done 1", "done 2", "done 3"]);
}

#[ringloop::test]
fn queue_stream_yields_items_in_queue_order(lp: &EventLoop) {
    let got = lp
        .run_until_complete(async {
            let q = PriorityQueue::new(0);
            let q2 = q.clone();
            let consumer = spawn(async move {
                let mut items = q2.stream();
                let mut got = vec![];
                while got.len() < 6 {
                    got.push(items.next().await.expect("queue streams never end"));
                }
                got
            });
            for i in [3, 1, 2] {
                q.put_nowait(i).unwrap();
            }
            yield_now().await;
            for i in [6, 4, 5] {
                q.put(i).await.unwrap();
                yield_now().await;
            }
            consumer.await.unwrap()
        })
        .unwrap();
    assert_eq!(got, [1, 2, 3, 6, 4, 5]);
}

/// Take every free unit of `sem` with `acquire().await` (each completes
/// without waiting), stopping when none is left.
async fn acquire_all(sem: &Semaphore) -> Vec<ringloop::sync::SemaphorePermit> {
    let mut permits = vec![];
    while sem.available() > 0 {
        permits.push(sem.acquire().await);
    }
    permits
}
