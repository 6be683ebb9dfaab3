//! Unit tests for the primitives, run on the test executor in `test_exec`.
//! They port CPython's `test_locks.py` / `test_queues.py` behaviours that
//! ASYNCIO-SEMANTICS.md §7–8 lists, and assert orders and results only.

use std::cmp::Ordering;
use std::pin::pin;
use std::task::Poll;

use futures_core::Stream;

use super::test_exec::{Exec, Log, poll_once, yield_now};
use super::*;

// ---------------------------------------------------------------- Lock

#[test]
fn lock_uncontended_is_ready_on_first_poll() {
    let lock = Lock::new();
    let mut fut = pin!(lock.lock());
    let guard = match poll_once(&mut fut) {
        Poll::Ready(g) => g,
        Poll::Pending => panic!("uncontended lock() yielded"),
    };
    assert!(lock.locked());
    drop(guard);
    assert!(!lock.locked());
}

#[test]
fn lock_try_lock_fails_while_held() {
    let lock = Lock::new();
    let g = lock.try_lock().expect("free");
    assert!(lock.try_lock().is_none());
    assert!(g.is_guard_of(&lock));
    assert!(!g.is_guard_of(&Lock::new()));
    drop(g);
    assert!(lock.try_lock().is_some());
}

#[test]
fn lock_waiters_are_served_fifo() {
    let ex = Exec::new();
    let lock = Lock::new();
    let log = Log::new();
    let held = lock.try_lock().unwrap();
    for i in 0..4 {
        let (lock, log) = (lock.clone(), log.clone());
        ex.spawn(async move {
            let _g = lock.lock().await;
            log.push(i);
            yield_now().await;
        });
    }
    ex.run_until_stalled();
    assert!(log.get().is_empty());
    drop(held);
    ex.run_until_stalled();
    assert_eq!(log.get(), [0, 1, 2, 3]);
    assert!(!lock.locked());
}

/// asyncio probe p13: between release and the woken waiter running,
/// `locked()` is false, yet a newcomer queues behind the woken waiter.
#[test]
fn lock_newcomer_does_not_barge_past_woken_waiter() {
    let ex = Exec::new();
    let lock = Lock::new();
    let log = Log::new();
    let held = lock.try_lock().unwrap();
    let (l, lg) = (lock.clone(), log.clone());
    ex.spawn(async move {
        let _g = l.lock().await;
        lg.push("b");
    });
    ex.run_until_stalled();
    drop(held);
    assert!(!lock.locked(), "asyncio reports unlocked in the window");
    assert!(lock.try_lock().is_none(), "try_lock must not barge");
    let (l, lg) = (lock.clone(), log.clone());
    ex.spawn(async move {
        let _g = l.lock().await;
        lg.push("c");
    });
    ex.run_until_stalled();
    assert_eq!(log.get(), ["b", "c"]);
}

#[test]
fn lock_woken_then_cancelled_waiter_passes_lock_on() {
    let ex = Exec::new();
    let lock = Lock::new();
    let log = Log::new();
    let held = lock.try_lock().unwrap();
    let mut ids = Vec::new();
    for name in ["b", "c"] {
        let (l, lg) = (lock.clone(), log.clone());
        ids.push(ex.spawn(async move {
            let _g = l.lock().await;
            lg.push(name);
        }));
    }
    ex.run_until_stalled();
    drop(held); // wakes b
    assert!(ex.cancel(ids[0])); // b is cancelled before it runs
    ex.run_until_stalled();
    assert_eq!(log.get(), ["c"]);
    assert!(!lock.locked());
}

#[test]
fn lock_woken_then_cancelled_last_waiter_unlocks() {
    let ex = Exec::new();
    let lock = Lock::new();
    let held = lock.try_lock().unwrap();
    let l = lock.clone();
    let id = ex.spawn(async move {
        let _g = l.lock().await;
    });
    ex.run_until_stalled();
    drop(held);
    ex.cancel(id);
    assert!(!lock.locked());
    assert!(lock.try_lock().is_some(), "lock must be free again");
}

#[test]
fn lock_cancelled_waiting_waiter_leaves_the_line() {
    let ex = Exec::new();
    let lock = Lock::new();
    let log = Log::new();
    let held = lock.try_lock().unwrap();
    let mut ids = Vec::new();
    for name in ["b", "c", "d"] {
        let (l, lg) = (lock.clone(), log.clone());
        ids.push(ex.spawn(async move {
            let _g = l.lock().await;
            lg.push(name);
        }));
    }
    ex.run_until_stalled();
    ex.cancel(ids[1]);
    drop(held);
    ex.run_until_stalled();
    assert_eq!(log.get(), ["b", "d"]);
}

#[test]
fn lock_future_polled_after_completion_is_pending() {
    let lock = Lock::new();
    let mut fut = pin!(lock.lock());
    let Poll::Ready(_g) = poll_once(&mut fut) else {
        panic!("not ready")
    };
    assert!(poll_once(&mut fut).is_pending());
}

// ---------------------------------------------------------------- Event

#[test]
fn event_wait_on_set_event_is_ready_on_first_poll() {
    let ev = Event::new();
    ev.set();
    assert!(poll_once(&mut pin!(ev.wait())).is_ready());
}

#[test]
fn event_set_wakes_all_and_clear_right_after_does_not_undo() {
    let ex = Exec::new();
    let ev = Event::new();
    let log = Log::new();
    for i in 0..3 {
        let (ev, log) = (ev.clone(), log.clone());
        ex.spawn(async move {
            ev.wait().await;
            log.push(i);
        });
    }
    ex.run_until_stalled();
    assert!(log.get().is_empty());
    ev.set();
    ev.clear();
    ex.run_until_stalled();
    assert_eq!(log.get(), [0, 1, 2]);
    assert!(!ev.is_set());
}

/// CPython test_wait: a task created before `set()` that has not started
/// yet runs first: `[3, 1, 2]`.
#[test]
fn event_unstarted_task_runs_before_woken_waiters() {
    let ex = Exec::new();
    let ev = Event::new();
    let log = Log::new();
    for i in [1, 2] {
        let (ev, log) = (ev.clone(), log.clone());
        ex.spawn(async move {
            ev.wait().await;
            log.push(i);
        });
    }
    ex.run_until_stalled();
    let (e, l) = (ev.clone(), log.clone());
    ex.spawn(async move {
        e.wait().await;
        l.push(3);
    });
    ev.set();
    ex.run_until_stalled();
    assert_eq!(log.get(), [3, 1, 2]);
}

#[test]
fn event_cancelled_waiter_does_not_disturb_others() {
    let ex = Exec::new();
    let ev = Event::new();
    let log = Log::new();
    let mut ids = Vec::new();
    for i in 0..3 {
        let (ev, log) = (ev.clone(), log.clone());
        ids.push(ex.spawn(async move {
            ev.wait().await;
            log.push(i);
        }));
    }
    ex.run_until_stalled();
    ex.cancel(ids[1]);
    ev.set();
    ex.cancel(ids[2]); // woken, then cancelled
    ex.run_until_stalled();
    assert_eq!(log.get(), [0]);
}

// ---------------------------------------------------------------- Condition

#[test]
fn condition_notify_without_lock_is_not_held_error() {
    let cond = Condition::new();
    assert_eq!(cond.notify(1), Err(NotHeld));
    assert_eq!(cond.notify_all(), Err(NotHeld));
    let g = cond.try_lock().unwrap();
    assert_eq!(cond.notify(1), Ok(0));
    assert_eq!(cond.notify_all(), Ok(0));
    drop(g);
}

#[test]
fn condition_wait_with_foreign_guard_is_refused_and_guard_returned() {
    let ex = Exec::new();
    let cond = Condition::new();
    let other = Lock::new();
    let (c, o) = (cond.clone(), other.clone());
    let res = ex.block_on(async move {
        let g = o.lock().await;
        match c.wait(g).await {
            Ok(_) => None,
            Err(e) => Some(e.into_guard().is_guard_of(&o)),
        }
    });
    assert_eq!(res, Some(true));
    assert!(!other.locked(), "guard handed back, then dropped");
    let (c, o) = (cond.clone(), other.clone());
    let res = ex.block_on(async move {
        let g = o.lock().await;
        c.wait_for(g, || true).await.is_err()
    });
    assert!(res);
}

fn spawn_cond_waiters(ex: &Exec, cond: &Condition, log: &Log<i32>, n: i32) -> Vec<usize> {
    (1..=n)
        .map(|i| {
            let (cond, log) = (cond.clone(), log.clone());
            ex.spawn(async move {
                let g = cond.lock().await;
                let g = cond.wait(g).await.unwrap();
                assert!(cond.locked(), "wait re-acquires the lock");
                log.push(i);
                drop(g);
            })
        })
        .collect()
}

/// CPython test_notify: notify(1) wakes one waiter, notify(2048) the rest, FIFO.
#[test]
fn condition_notify_n_wakes_at_most_n_fifo() {
    let ex = Exec::new();
    let cond = Condition::new();
    let log = Log::new();
    spawn_cond_waiters(&ex, &cond, &log, 3);
    ex.run_until_stalled();
    assert!(!cond.locked(), "wait releases the lock");

    let g = cond.try_lock().unwrap();
    assert_eq!(cond.notify(1), Ok(1));
    drop(g);
    ex.run_until_stalled();
    assert_eq!(log.get(), [1]);

    let g = cond.try_lock().unwrap();
    assert_eq!(cond.notify(1), Ok(1));
    assert_eq!(cond.notify(2048), Ok(1));
    drop(g);
    ex.run_until_stalled();
    assert_eq!(log.get(), [1, 2, 3]);
}

#[test]
fn condition_notify_all_wakes_every_waiter_fifo() {
    let ex = Exec::new();
    let cond = Condition::new();
    let log = Log::new();
    spawn_cond_waiters(&ex, &cond, &log, 3);
    ex.run_until_stalled();
    let g = cond.try_lock().unwrap();
    assert_eq!(cond.notify_all(), Ok(3));
    // Woken waiters cannot run until the lock is released.
    ex.run_until_stalled();
    assert!(log.get().is_empty());
    drop(g);
    ex.run_until_stalled();
    assert_eq!(log.get(), [1, 2, 3]);
}

#[test]
fn condition_wait_for_waits_until_predicate_holds() {
    let ex = Exec::new();
    let cond = Condition::new();
    let value = std::rc::Rc::new(std::cell::Cell::new(0));
    let calls = std::rc::Rc::new(std::cell::Cell::new(0));
    let (c, v, n) = (cond.clone(), value.clone(), calls.clone());
    let (_, out) = ex.spawn_with(async move {
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
        held
    });
    ex.run_until_stalled();
    assert_eq!(calls.get(), 1);

    value.set(1);
    let g = cond.try_lock().unwrap();
    cond.notify(1).unwrap();
    drop(g);
    ex.run_until_stalled();
    assert_eq!(calls.get(), 2);
    assert!(out.borrow().is_none());

    value.set(2);
    let g = cond.try_lock().unwrap();
    cond.notify(1).unwrap();
    drop(g);
    ex.run_until_stalled();
    assert_eq!(calls.get(), 3);
    assert_eq!(*out.borrow(), Some(true));
}

#[test]
fn condition_wait_for_true_predicate_does_not_yield() {
    let cond = Condition::new();
    let g = cond.try_lock().unwrap();
    let mut fut = pin!(cond.wait_for(g, || true));
    match poll_once(&mut fut) {
        Poll::Ready(Ok(g)) => assert!(g.is_guard_of(cond.as_lock())),
        _ => panic!("wait_for with a true predicate yielded"),
    }
}

#[test]
fn condition_notified_then_cancelled_waiter_passes_notification_on() {
    let ex = Exec::new();
    let cond = Condition::new();
    let log = Log::new();
    let ids = spawn_cond_waiters(&ex, &cond, &log, 3);
    ex.run_until_stalled();
    let g = cond.try_lock().unwrap();
    assert_eq!(cond.notify(1), Ok(1)); // wakes 1
    ex.cancel(ids[0]);
    drop(g);
    ex.run_until_stalled();
    assert_eq!(log.get(), [2], "the notification passed to waiter 2");
}

#[test]
fn condition_waiter_cancelled_while_reacquiring_passes_lock_on() {
    let ex = Exec::new();
    let cond = Condition::new();
    let log = Log::new();
    let ids = spawn_cond_waiters(&ex, &cond, &log, 2);
    ex.run_until_stalled();
    let g = cond.try_lock().unwrap();
    cond.notify_all().unwrap();
    ex.run_until_stalled(); // both now wait for the lock
    drop(g); // hands the lock to waiter 1
    ex.cancel(ids[0]);
    ex.run_until_stalled();
    assert_eq!(log.get(), [2]);
    assert!(!cond.locked());
    assert!(cond.try_lock().is_some());
}

#[test]
fn condition_with_shared_lock() {
    let lock = Lock::new();
    let a = Condition::with_lock(lock.clone());
    let b = Condition::with_lock(lock.clone());
    let g = lock.try_lock().unwrap();
    assert!(a.locked() && b.locked());
    assert_eq!(b.notify(1), Ok(0));
    drop(g);
    assert_eq!(a.notify(1), Err(NotHeld));
}

// ---------------------------------------------------------------- Semaphore

#[test]
fn semaphore_uncontended_acquire_is_ready_on_first_poll() {
    let sem = Semaphore::new(2);
    let Poll::Ready(p) = poll_once(&mut pin!(sem.acquire())) else {
        panic!("uncontended acquire yielded")
    };
    assert_eq!(sem.available(), 1);
    assert!(!sem.locked());
    drop(p);
    assert_eq!(sem.available(), 2);
}

#[test]
fn semaphore_waiters_are_served_fifo_without_barging() {
    let ex = Exec::new();
    let sem = Semaphore::new(0);
    let log = Log::new();
    for i in 0..3 {
        let (sem, log) = (sem.clone(), log.clone());
        ex.spawn(async move {
            sem.acquire().await.forget();
            log.push(i);
        });
    }
    ex.run_until_stalled();
    assert!(sem.locked());
    sem.release();
    // The unit is reserved for waiter 0: a newcomer cannot take it.
    assert_eq!(sem.available(), 0);
    assert!(sem.try_acquire().is_none());
    sem.release();
    sem.release();
    ex.run_until_stalled();
    assert_eq!(log.get(), [0, 1, 2]);
    assert_eq!(sem.available(), 0);
}

#[test]
fn semaphore_permit_drop_wakes_first_waiter() {
    let ex = Exec::new();
    let sem = Semaphore::new(1);
    let log = Log::new();
    let p = sem.try_acquire().unwrap();
    for i in 0..2 {
        let (sem, log) = (sem.clone(), log.clone());
        ex.spawn(async move {
            let _p = sem.acquire().await;
            log.push(i);
            yield_now().await;
        });
    }
    ex.run_until_stalled();
    drop(p);
    ex.run_until_stalled();
    assert_eq!(log.get(), [0, 1]);
    assert_eq!(sem.available(), 1);
}

#[test]
fn semaphore_woken_then_cancelled_waiter_passes_unit_on() {
    let ex = Exec::new();
    let sem = Semaphore::new(0);
    let log = Log::new();
    let mut ids = Vec::new();
    for i in 0..2 {
        let (sem, log) = (sem.clone(), log.clone());
        ids.push(ex.spawn(async move {
            let _p = sem.acquire().await;
            log.push(i);
        }));
    }
    ex.run_until_stalled();
    sem.release();
    ex.cancel(ids[0]);
    ex.run_until_stalled();
    assert_eq!(log.get(), [1]);
    assert_eq!(sem.available(), 1);
}

#[test]
fn semaphore_release_is_unbounded() {
    let sem = Semaphore::new(1);
    sem.release();
    sem.release();
    assert_eq!(sem.available(), 3);
    let _a = sem.try_acquire().unwrap();
    let _b = sem.try_acquire().unwrap();
    let _c = sem.try_acquire().unwrap();
    assert!(sem.try_acquire().is_none());
}

#[test]
fn bounded_semaphore_release_above_initial_value_is_an_error() {
    let sem = BoundedSemaphore::new(2);
    assert_eq!(sem.bound(), 2);
    assert_eq!(sem.release(), Err(BoundedReleaseError));
    let p = sem.try_acquire().unwrap();
    // A live permit gives its unit back itself; releasing it too would
    // exceed the bound later.
    assert_eq!(sem.release(), Err(BoundedReleaseError));
    p.forget();
    assert_eq!(sem.available(), 1);
    assert_eq!(sem.release(), Ok(()));
    assert_eq!(sem.available(), 2);
    assert_eq!(sem.release(), Err(BoundedReleaseError));
}

#[test]
fn bounded_semaphore_waiters_fifo_and_permits_never_exceed_bound() {
    let ex = Exec::new();
    let sem = BoundedSemaphore::new(1);
    let log = Log::new();
    let p = sem.try_acquire().unwrap();
    for i in 0..3 {
        let (sem, log) = (sem.clone(), log.clone());
        ex.spawn(async move {
            let _p = sem.acquire().await;
            log.push(i);
            yield_now().await;
        });
    }
    ex.run_until_stalled();
    drop(p);
    ex.run_until_stalled();
    assert_eq!(log.get(), [0, 1, 2]);
    assert_eq!(sem.available(), 1);
    assert_eq!(sem.release(), Err(BoundedReleaseError));
}

// ---------------------------------------------------------------- Queues

fn drain<K: Discipline<i32>>(q: &GenericQueue<i32, K>) -> Vec<i32> {
    std::iter::from_fn(|| q.get_nowait().ok()).collect()
}

#[test]
fn queue_orders_for_puts_1_3_2() {
    let fifo = Queue::new(0);
    let lifo = LifoQueue::new(0);
    let prio = PriorityQueue::new(0);
    for i in [1, 3, 2] {
        fifo.put_nowait(i).unwrap();
        lifo.put_nowait(i).unwrap();
        prio.put_nowait(i).unwrap();
    }
    assert_eq!(drain(&fifo), [1, 3, 2]);
    assert_eq!(drain(&lifo), [2, 3, 1]);
    assert_eq!(drain(&prio), [1, 2, 3]);
}

#[derive(Debug)]
struct Keyed(u8, &'static str);
impl PartialEq for Keyed {
    fn eq(&self, o: &Self) -> bool {
        self.0 == o.0
    }
}
impl Eq for Keyed {}
impl PartialOrd for Keyed {
    fn partial_cmp(&self, o: &Self) -> Option<Ordering> {
        Some(self.cmp(o))
    }
}
impl Ord for Keyed {
    fn cmp(&self, o: &Self) -> Ordering {
        self.0.cmp(&o.0)
    }
}

#[test]
fn priority_queue_equal_items_come_out_in_put_order() {
    let q = PriorityQueue::new(0);
    for (k, v) in [(2, "a"), (1, "b"), (2, "c"), (1, "d"), (2, "e")] {
        q.put_nowait(Keyed(k, v)).unwrap();
    }
    let got: Vec<_> = std::iter::from_fn(|| q.get_nowait().ok().map(|k| k.1)).collect();
    assert_eq!(got, ["b", "d", "a", "c", "e"]);
}

#[test]
fn queue_nowait_errors() {
    let q = Queue::new(1);
    assert_eq!(q.get_nowait(), Err(TryGetError::Empty(QueueEmpty)));
    q.put_nowait(1).unwrap();
    assert!(q.full());
    let err = q.put_nowait(2).unwrap_err();
    assert_eq!(*err.item(), 2);
    assert_eq!(err.into_inner(), 2);
    assert_eq!(q.qsize(), 1);
    assert_eq!(q.get_nowait(), Ok(1));
    assert!(q.empty());
}

#[test]
fn unbounded_queue_is_never_full() {
    let q = Queue::new(0);
    for i in 0..1000 {
        q.put_nowait(i).unwrap();
        assert!(!q.full());
    }
    assert_eq!(q.qsize(), 1000);
    assert_eq!(q.maxsize(), 0);
}

#[test]
fn queue_uncontended_put_and_get_are_ready_on_first_poll() {
    let q = Queue::new(1);
    assert!(poll_once(&mut pin!(q.put(7))).is_ready());
    assert_eq!(poll_once(&mut pin!(q.get())), Poll::Ready(Ok(7)));
}

#[test]
fn queue_put_blocks_while_full() {
    let ex = Exec::new();
    let q = Queue::new(1);
    let log = Log::new();
    q.put_nowait(1).unwrap();
    let (q2, l) = (q.clone(), log.clone());
    ex.spawn(async move {
        q2.put(2).await.unwrap();
        l.push("put 2 done");
    });
    ex.run_until_stalled();
    assert!(log.get().is_empty());
    assert_eq!(q.qsize(), 1);
    assert_eq!(q.get_nowait(), Ok(1));
    ex.run_until_stalled();
    assert_eq!(log.get(), ["put 2 done"]);
    assert_eq!(q.get_nowait(), Ok(2));
}

#[test]
fn queue_blocked_getters_are_served_fifo() {
    let ex = Exec::new();
    let q = Queue::new(0);
    let log = Log::new();
    for i in 0..3 {
        let (q, log) = (q.clone(), log.clone());
        ex.spawn(async move {
            let item = q.get().await.unwrap();
            log.push((i, item));
        });
    }
    ex.run_until_stalled();
    for item in [10, 20, 30] {
        q.put_nowait(item).unwrap();
    }
    ex.run_until_stalled();
    assert_eq!(log.get(), [(0, 10), (1, 20), (2, 30)]);
}

#[test]
fn queue_blocked_putters_are_served_fifo() {
    let ex = Exec::new();
    let q = Queue::new(1);
    q.put_nowait(0).unwrap();
    for i in 1..=3 {
        let q = q.clone();
        ex.spawn(async move { q.put(i).await.unwrap() });
    }
    ex.run_until_stalled();
    let (_, out) = ex.spawn_with({
        let q = q.clone();
        async move {
            let mut got = Vec::new();
            for _ in 0..4 {
                got.push(q.get().await.unwrap());
            }
            got
        }
    });
    ex.run_until_stalled();
    assert_eq!(out.borrow_mut().take(), Some(vec![0, 1, 2, 3]));
}

#[test]
fn queue_get_nowait_does_not_barge_past_woken_getter() {
    let ex = Exec::new();
    let q = Queue::new(0);
    let (q2, out) = (q.clone(), Log::new());
    let o = out.clone();
    ex.spawn(async move { o.push(q2.get().await.unwrap()) });
    ex.run_until_stalled();
    q.put_nowait("x").unwrap();
    assert_eq!(q.qsize(), 1, "the item is still in the queue, as in asyncio");
    assert_eq!(
        q.get_nowait(),
        Err(TryGetError::Empty(QueueEmpty)),
        "but reserved for the getter"
    );
    ex.run_until_stalled();
    assert_eq!(out.get(), ["x"]);
    assert!(q.empty());
}

#[test]
fn queue_put_nowait_does_not_barge_past_woken_putter() {
    let ex = Exec::new();
    let q = Queue::new(1);
    q.put_nowait(1).unwrap();
    let q2 = q.clone();
    ex.spawn(async move { q2.put(2).await.unwrap() });
    ex.run_until_stalled();
    assert_eq!(q.get_nowait(), Ok(1));
    assert!(!q.full(), "the slot is free, as in asyncio");
    assert_eq!(q.put_nowait(3).map_err(TryPutError::into_inner), Err(3));
    ex.run_until_stalled();
    assert_eq!(drain(&q), [2]);
}

#[test]
fn lifo_woken_getter_takes_the_top_when_it_runs() {
    let ex = Exec::new();
    let q = LifoQueue::new(0);
    let out = Log::new();
    let (q2, o) = (q.clone(), out.clone());
    ex.spawn(async move { o.push(q2.get().await.unwrap()) });
    ex.run_until_stalled();
    q.put_nowait(1).unwrap();
    q.put_nowait(2).unwrap();
    ex.run_until_stalled();
    assert_eq!(out.get(), [2]);
    assert_eq!(drain(&q), [1]);
}

#[test]
fn queue_woken_then_cancelled_getter_passes_item_on() {
    let ex = Exec::new();
    let q = Queue::new(0);
    let out = Log::new();
    let mut ids = Vec::new();
    for i in 0..2 {
        let (q, o) = (q.clone(), out.clone());
        ids.push(ex.spawn(async move { o.push((i, q.get().await.unwrap())) }));
    }
    ex.run_until_stalled();
    q.put_nowait("a").unwrap(); // reserved for getter 0
    ex.cancel(ids[0]);
    ex.run_until_stalled();
    assert_eq!(out.get(), [(1, "a")]);
}

#[test]
fn queue_woken_then_cancelled_last_getter_keeps_item_in_queue() {
    let ex = Exec::new();
    let q = Queue::new(0);
    let q2 = q.clone();
    let id = ex.spawn(async move {
        q2.get().await.unwrap();
    });
    ex.run_until_stalled();
    q.put_nowait("a").unwrap();
    ex.cancel(id);
    assert_eq!(q.get_nowait(), Ok("a"), "the item was not lost");
}

#[test]
fn queue_woken_then_cancelled_putter_passes_slot_on() {
    let ex = Exec::new();
    let q = Queue::new(1);
    q.put_nowait(0).unwrap();
    let mut ids = Vec::new();
    for i in 1..=2 {
        let q = q.clone();
        ids.push(ex.spawn(async move { q.put(i).await.unwrap() }));
    }
    ex.run_until_stalled();
    assert_eq!(q.get_nowait(), Ok(0)); // slot reserved for putter 1
    ex.cancel(ids[0]);
    ex.run_until_stalled();
    assert_eq!(drain(&q), [2]);
}

#[test]
fn queue_cancelled_waiting_putter_drops_its_item() {
    let ex = Exec::new();
    let q = Queue::new(1);
    q.put_nowait(0).unwrap();
    let q2 = q.clone();
    let id = ex.spawn(async move { q2.put(1).await.unwrap() });
    ex.run_until_stalled();
    ex.cancel(id);
    assert_eq!(q.get_nowait(), Ok(0));
    assert_eq!(q.get_nowait(), Err(TryGetError::Empty(QueueEmpty)));
    assert!(q.put_nowait(2).is_ok());
}

#[test]
fn queue_task_done_underflow_is_an_error() {
    let q = Queue::new(0);
    assert_eq!(q.task_done(), Err(TaskDoneError));
    q.put_nowait(1).unwrap();
    q.get_nowait().unwrap();
    assert_eq!(q.task_done(), Ok(()));
    assert_eq!(q.task_done(), Err(TaskDoneError));
}

#[test]
fn queue_join_returns_at_once_when_nothing_is_unfinished() {
    let q: Queue<i32> = Queue::new(0);
    assert!(poll_once(&mut pin!(q.join())).is_ready());
}

#[test]
fn queue_join_waits_for_task_done_per_put() {
    let ex = Exec::new();
    let q = Queue::new(0);
    let log = Log::new();
    for i in 0..3 {
        q.put_nowait(i).unwrap();
    }
    let (q2, l) = (q.clone(), log.clone());
    ex.spawn(async move {
        q2.join().await;
        l.push("joined");
    });
    ex.run_until_stalled();
    for _ in 0..3 {
        q.get_nowait().unwrap();
    }
    ex.run_until_stalled();
    assert!(log.get().is_empty(), "items got but not done");
    q.task_done().unwrap();
    q.task_done().unwrap();
    ex.run_until_stalled();
    assert!(log.get().is_empty());
    q.task_done().unwrap();
    // A put right after the count reached zero does not undo the wakeup.
    q.put_nowait(9).unwrap();
    ex.run_until_stalled();
    assert_eq!(log.get(), ["joined"]);
}

#[test]
fn queue_stream_yields_items_in_order_and_waits() {
    let ex = Exec::new();
    let q = Queue::new(0);
    q.put_nowait(1).unwrap();
    let (_, out) = ex.spawn_with({
        let q = q.clone();
        async move {
            let mut stream = pin!(q.stream());
            let mut got = Vec::new();
            while got.len() < 3 {
                let item = std::future::poll_fn(|cx| stream.as_mut().poll_next(cx)).await;
                got.push(item.expect("queue streams never end"));
            }
            got
        }
    });
    ex.run_until_stalled();
    assert!(out.borrow().is_none());
    q.put_nowait(2).unwrap();
    q.put_nowait(3).unwrap();
    ex.run_until_stalled();
    assert_eq!(out.borrow_mut().take(), Some(vec![1, 2, 3]));
}

#[test]
fn queue_stream_dropped_after_wakeup_keeps_item() {
    let q = Queue::new(0);
    let mut stream = q.stream();
    let mut cx = std::task::Context::from_waker(std::task::Waker::noop());
    assert!(std::pin::Pin::new(&mut stream).poll_next(&mut cx).is_pending());
    q.put_nowait(5).unwrap();
    drop(stream);
    assert_eq!(q.get_nowait(), Ok(5));
}

#[test]
fn debug_output_names_the_queue_kind() {
    let q: LifoQueue<u8> = LifoQueue::new(3);
    assert!(format!("{q:?}").starts_with("LifoQueue"));
    let q: PriorityQueue<u8> = PriorityQueue::default();
    assert!(format!("{q:?}").starts_with("PriorityQueue"));
}

#[test]
fn errors_display() {
    assert_eq!(QueueEmpty.to_string(), "queue is empty");
    assert_eq!(QueueFull::new(1).to_string(), "queue is full");
    assert!(!TaskDoneError.to_string().is_empty());
    assert!(!BoundedReleaseError.to_string().is_empty());
    assert!(!NotHeld.to_string().is_empty());
    let e: Box<dyn std::error::Error> = Box::new(QueueFull::new(String::new()));
    assert_eq!(e.to_string(), "queue is full");
}
