//! asyncio behaviours (ASYNCIO-SEMANTICS §0–6) that need more than one part
//! of the loop, each test named after the behaviour; on both backends.

mod common;

use common::Log;
use ringloop::EventLoop;
use ringloop::{ExceptionContext, ReturnWhen, TaskError, sleep, spawn, yield_now};
use std::cell::{Cell, RefCell};
use std::future::Future;
use std::pin::Pin;
use std::rc::Rc;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll, Waker};
use std::time::Duration;

/// A `Send` ordered log (for callbacks given to `call_soon_threadsafe`).
#[derive(Clone, Default)]
struct SendLog(Arc<Mutex<Vec<&'static str>>>);

impl SendLog {
    fn push(&self, s: &'static str) {
        self.0.lock().unwrap().push(s);
    }
    fn get(&self) -> Vec<&'static str> {
        self.0.lock().unwrap().clone()
    }
}

/// A future that stays pending until its waker is taken and woken by hand.
#[derive(Clone, Default)]
struct Parked(Rc<RefCell<(bool, Option<Waker>)>>);

impl Parked {
    fn take_waker(&self) -> Waker {
        let mut s = self.0.borrow_mut();
        s.0 = true;
        s.1.take().expect("the task is parked")
    }
}

impl Future for Parked {
    type Output = ();
    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<()> {
        let mut s = self.0.borrow_mut();
        if s.0 {
            Poll::Ready(())
        } else {
            s.1 = Some(cx.waker().clone());
            Poll::Pending
        }
    }
}

#[ringloop::test(virtual_clock)]
fn call_soon_threadsafe_made_before_call_soon_runs_first(lp: &EventLoop) {
    let log = SendLog::default();
    let h = lp.handle();
    // While the loop is stopped, from the loop's thread.
    let l = log.clone();
    h.call_soon_threadsafe(move || l.push("remote 1")).unwrap();
    let l = log.clone();
    lp.call_soon(move || l.push("local 1")).unwrap();
    // From another thread that finished before the local call.
    let (l, h2) = (log.clone(), h.clone());
    std::thread::spawn(move || h2.call_soon_threadsafe(move || l.push("remote 2")).unwrap())
        .join()
        .unwrap();
    let l = log.clone();
    lp.call_soon(move || l.push("local 2")).unwrap();
    // From a callback while the loop runs.
    let (l, lp2) = (log.clone(), lp.clone());
    lp.call_soon(move || {
        let l2 = l.clone();
        h.call_soon_threadsafe(move || l2.push("remote 3")).unwrap();
        let l3 = l.clone();
        lp2.call_soon(move || l3.push("local 3")).unwrap();
        let s = lp2.clone();
        lp2.call_soon(move || s.stop()).unwrap();
    })
    .unwrap();
    lp.run_forever().unwrap();
    assert_eq!(
        log.get(),
        ["remote 1", "local 1", "remote 2", "local 2", "remote 3", "local 3"]
    );
}

#[ringloop::test(virtual_clock)]
fn a_threadsafe_stop_is_ordered_like_call_soon_threadsafe_loop_stop(lp: &EventLoop) {
    // asyncio: call_soon_threadsafe(a); call_soon_threadsafe(loop.stop);
    // call_soon(b) runs a, stop, b in the next iteration, then stops.
    let log = SendLog::default();
    let (h, l, lp2) = (lp.handle(), log.clone(), lp.clone());
    lp.call_soon(move || {
        let a = l.clone();
        h.call_soon_threadsafe(move || a.push("a")).unwrap();
        h.stop().unwrap();
        let b = l.clone();
        lp2.call_soon(move || b.push("b")).unwrap();
    })
    .unwrap();
    let l = log.clone();
    lp.call_later(Duration::from_secs(1), move || l.push("later")).unwrap();
    lp.run_forever().unwrap();
    assert_eq!(log.get(), ["a", "b"]);
}

#[ringloop::test(virtual_clock)]
fn a_wakeup_made_while_the_loop_is_stopped_runs_before_a_later_call_soon(lp: &EventLoop) {
    let log = Log::new();
    let parked = Parked::default();
    let (p, l) = (parked.clone(), log.clone());
    let _t = lp
        .create_task(async move {
            p.await;
            l.push("task resumed");
        })
        .unwrap();
    lp.run_until_complete(yield_now()).unwrap();
    // The loop is stopped: wake the task, then schedule a callback.
    parked.take_waker().wake();
    let l = log.clone();
    lp.call_soon(move || l.push("callback")).unwrap();
    let l = lp.clone();
    lp.call_soon(move || l.stop()).unwrap();
    lp.run_forever().unwrap();
    assert_eq!(log.get(), ["task resumed", "callback"]);
}

#[ringloop::test(virtual_clock)]
fn wait_first_completed_returns_every_task_already_done(lp: &EventLoop) {
    let (done, pending) = lp
        .run_until_complete(async {
            let tasks = [1u64, 1, 2].map(|s| {
                spawn(async move {
                    sleep(Duration::from_secs(s)).await;
                    s
                })
            });
            ringloop::wait(tasks, ReturnWhen::FirstCompleted).await.unwrap()
        })
        .unwrap();
    assert_eq!((done.len(), pending.len()), (2, 1));
}

#[ringloop::test(virtual_clock)]
fn cancelling_a_gather_whose_children_all_finished_returns_false_and_keeps_its_result(lp: &EventLoop) {
    let (cancelled, result) = lp
        .run_until_complete(async {
            let children = [1, 2].map(|v| {
                spawn(async move {
                    yield_now().await;
                    v
                })
            });
            let refs = children.each_ref().map(|c| c.as_ref());
            let g = ringloop::gather_tasks(children);
            // Wait until both children finished but the gather has not
            // collected them yet (it runs one iteration later).
            while !refs.iter().all(|c| c.is_done()) {
                yield_now().await;
            }
            assert!(!g.is_done());
            (g.cancel(), g.await)
        })
        .unwrap();
    assert!(!cancelled);
    assert_eq!(result.unwrap(), [1, 2]);
}

#[ringloop::test(virtual_clock)]
fn cancelling_a_gather_with_an_unfinished_child_returns_true(lp: &EventLoop) {
    let (cancelled, result) = lp
        .run_until_complete(async {
            let g = ringloop::gather([
                Box::pin(async { 1 }) as Pin<Box<dyn Future<Output = i32>>>,
                Box::pin(async {
                    sleep(Duration::from_secs(5)).await;
                    2
                }),
            ]);
            sleep(Duration::from_secs(1)).await;
            (g.cancel(), g.await)
        })
        .unwrap();
    assert!(cancelled);
    assert!(result.unwrap_err().is_cancelled());
}

#[ringloop::test(virtual_clock)]
fn timeout_zero_or_expired_returns_elapsed_without_polling_the_future(lp: &EventLoop) {
    let polled = Rc::new(Cell::new(0));
    let (p1, p2) = (polled.clone(), polled.clone());
    let (zero, past) = lp
        .run_until_complete(async move {
            let zero = ringloop::timeout(Duration::ZERO, async move {
                p1.set(p1.get() + 1);
                1
            })
            .await;
            let now = ringloop::current().unwrap().time();
            let past = ringloop::timeout_at(now - Duration::from_secs(1), async move {
                p2.set(p2.get() + 1);
                2
            })
            .await;
            (zero, past)
        })
        .unwrap();
    assert!(zero.is_err() && past.is_err());
    assert_eq!(polled.get(), 0);
}

#[ringloop::test(virtual_clock)]
fn a_timeout_expiring_around_a_cancel_on_drop_task_leaves_it_cancelled_on_return(lp: &EventLoop) {
    let (r, done, cancelled) = lp
        .run_until_complete(async {
            let t = spawn(sleep(Duration::from_secs(10)));
            let tr = t.as_ref();
            let r = ringloop::timeout(Duration::from_secs(1), t.cancel_on_drop()).await;
            (r.is_err(), tr.is_done(), tr.is_cancelled())
        })
        .unwrap();
    assert!(r);
    assert!(done && cancelled, "done {done}, cancelled {cancelled}");
}

#[ringloop::test(virtual_clock)]
fn a_timeout_expiring_around_a_cancel_on_drop_gather_leaves_it_and_its_children_cancelled(lp: &EventLoop) {
    let states = lp
        .run_until_complete(async {
            let children = [1u64, 10].map(|s| spawn(sleep(Duration::from_secs(s))));
            let refs = children.each_ref().map(|c| c.as_ref());
            let g = ringloop::gather_tasks(children);
            let gr = g.as_ref();
            let r = ringloop::timeout(Duration::from_secs(5), g.cancel_on_drop()).await;
            assert!(r.is_err());
            [gr, refs[0].clone(), refs[1].clone()].map(|t| (t.is_done(), t.is_cancelled()))
        })
        .unwrap();
    // The gather and its unfinished child are cancelled; the child that
    // finished in time is not.
    assert_eq!(states, [(true, true), (true, false), (true, true)]);
}

#[ringloop::test(virtual_clock)]
fn a_task_that_cancels_itself_and_then_returns_ends_cancelled(lp: &EventLoop) {
    // asyncio's test_cancel_at_end.
    let t = lp
        .create_task(async {
            assert!(ringloop::current_task().unwrap().cancel());
            42
        })
        .unwrap();
    let r = lp.run_until_complete(async move {
        let tr = t.as_ref();
        (t.await, tr.is_cancelled())
    });
    let (r, cancelled) = r.unwrap();
    assert!(r.unwrap_err().is_cancelled());
    assert!(cancelled);
}

#[ringloop::test(virtual_clock)]
fn cancelling_a_task_that_awaits_a_task_leaves_the_awaited_task_running(lp: &EventLoop) {
    // Deliberate difference (ARCHITECTURE.md): a dropped `Task` handle
    // detaches; asyncio would cancel the awaited task.
    let (inner_result, outer_cancelled) = lp
        .run_until_complete(async {
            let inner = spawn(async {
                sleep(Duration::from_secs(2)).await;
                "inner"
            });
            let ir = inner.as_ref();
            let outer = spawn(inner);
            sleep(Duration::from_secs(1)).await;
            outer.cancel();
            let outer_cancelled = outer.await.unwrap_err().is_cancelled();
            ir.finished().await;
            (ir.is_cancelled(), outer_cancelled)
        })
        .unwrap();
    assert!(!inner_result);
    assert!(outer_cancelled);
}

#[ringloop::test(virtual_clock)]
fn with_cancel_on_drop_cancelling_the_awaiting_task_cancels_the_awaited_one(lp: &EventLoop) {
    let inner_cancelled = lp
        .run_until_complete(async {
            let inner = spawn(sleep(Duration::from_secs(2)));
            let ir = inner.as_ref();
            let inner = inner.cancel_on_drop();
            let outer = spawn(inner);
            sleep(Duration::from_secs(1)).await;
            outer.cancel();
            let _ = outer.await;
            ir.is_cancelled()
        })
        .unwrap();
    assert!(inner_cancelled);
}

#[ringloop::test(virtual_clock)]
fn remove_done_callback_removes_the_callback_and_returns_the_count(lp: &EventLoop) {
    let log = Log::new();
    let t = lp.create_task(async {}).unwrap();
    let (a, b, c) = (log.clone(), log.clone(), log.clone());
    let ia = t.add_done_callback(move |_| a.push("a"));
    let ib = t.add_done_callback(move |_| b.push("b"));
    t.add_done_callback(move |_| c.push("c"));
    assert_ne!(ia, ib);
    assert_eq!(t.remove_done_callback(ib), 1);
    assert_eq!(t.remove_done_callback(ib), 0);
    // An id of another task removes nothing here.
    let other = lp.create_task(async {}).unwrap();
    let io = other.add_done_callback(|_| {});
    assert_eq!(t.as_ref().remove_done_callback(io), 0);
    lp.run_until_complete(t.finished()).unwrap();
    lp.run_until_complete(yield_now()).unwrap();
    assert_eq!(log.get(), ["a", "c"]);
    // Once the task is done its callbacks were scheduled: nothing to remove.
    assert_eq!(t.remove_done_callback(ia), 0);
}

#[ringloop::test(virtual_clock)]
fn timer_handles_compare_by_when(lp: &EventLoop) {
    let now = lp.time();
    let late = lp.call_at(now + Duration::from_secs(2), || {}).unwrap();
    let early = lp.call_at(now + Duration::from_secs(1), || {}).unwrap();
    let tie = lp.call_at(now + Duration::from_secs(1), || {}).unwrap();
    assert_eq!(early.when(), now + Duration::from_secs(1));
    assert!(early < late && tie < late);
    // Equal deadlines order as they fire: in scheduling order.
    assert!(early < tie);
    let mut hs = [&late, &tie, &early];
    hs.sort();
    assert_eq!(
        hs.iter().map(|h| h.when()).collect::<Vec<_>>(),
        [early.when(), tie.when(), late.when()]
    );
    assert!(early != tie);
    assert_eq!(early.cmp(&early), std::cmp::Ordering::Equal);
}

#[ringloop::test(virtual_clock)]
fn get_exception_handler_returns_the_installed_handler(lp: &EventLoop) {
    assert!(lp.get_exception_handler().is_none());
    let seen = Rc::new(Cell::new(0));
    let s = seen.clone();
    lp.set_exception_handler(Some(move |_: &ExceptionContext| s.set(s.get() + 1)));
    let h = lp.get_exception_handler().expect("a handler is installed");
    lp.call_soon(|| panic!("boom")).unwrap();
    lp.run_until_complete(yield_now()).unwrap();
    assert_eq!(seen.get(), 1);
    lp.set_exception_handler(None::<fn(&ExceptionContext)>);
    assert!(lp.get_exception_handler().is_none());
    // The returned handler is the same callable.
    lp.set_exception_handler(Some(move |c: &ExceptionContext| h(c)));
    lp.call_soon(|| panic!("boom")).unwrap();
    lp.run_until_complete(yield_now()).unwrap();
    assert_eq!(seen.get(), 2);
}

#[ringloop::test(virtual_clock)]
fn task_is_cancelling_until_the_cancellation_completes(lp: &EventLoop) {
    let t = lp.create_task(sleep(Duration::from_secs(1))).unwrap();
    assert!(!t.is_cancelling());
    t.cancel();
    assert!(t.is_cancelling() && t.as_ref().is_cancelling());
    lp.run_until_complete(t.finished()).unwrap();
    assert!(!t.is_cancelling() && t.is_cancelled());
    let _: Option<Result<(), TaskError>> = t.take_result();
}

#[ringloop::test]
fn nested_timeouts_the_expired_outer_deadline_reports_when_it_is_earlier(lp: &EventLoop) {
    let r = lp
        .run_until_complete(async {
            let lp = ringloop::current().unwrap();
            // Once both timers are armed, block the loop past both
            // deadlines: they become due in the same iteration.
            lp.call_later(Duration::from_millis(1), || {
                std::thread::sleep(Duration::from_millis(60))
            })
            .unwrap();
            ringloop::timeout(
                Duration::from_millis(20),
                ringloop::timeout(Duration::from_millis(40), sleep(Duration::from_secs(10))),
            )
            .await
        })
        .unwrap();
    // The outer deadline (20 ms) expired first: the outer reports it.
    assert!(r.is_err(), "the inner timeout reported the outer's expiry: {r:?}");
}
