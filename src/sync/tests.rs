//! Unit tests for the primitives, run on the test executor in `test_exec`.
//! Behaviours that show through the loop (orders, FIFO hand-off, barging,
//! cancellation of woken waiters, errors) are tested once, on both
//! backends, in `tests/sync.rs`; this file keeps what only shows at the
//! poll level or needs no loop (ready on first poll, repolling a finished
//! future, dropping a woken stream) and the cases `tests/sync.rs` does not
//! cover. All assert orders and results only (ASYNCIO-SEMANTICS.md §7–8).

use std::cmp::Ordering;
use std::pin::pin;
use std::task::Poll;

use futures_core::Stream;

use super::test_exec::{Exec, Log, poll_once, yield_now};
use super::*;

// ---------------------------------------------------------------- Lock

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
