//! The loop's scheduling semantics (ASYNCIO-SEMANTICS §0–2), on both backends.

mod common;

use common::Log;
use ringloop::EventLoop;
use ringloop::{LoopError, sleep, yield_now};
use std::time::Duration;

#[ringloop::test(virtual_clock)]
fn call_later_zero_negative_and_call_soon_run_b_c_a(lp: &EventLoop) {
    let log = Log::new();
    let (a, b, c) = (log.clone(), log.clone(), log.clone());
    lp.call_later(Duration::ZERO, move || a.push("a")).unwrap();
    lp.call_at(lp.time() - Duration::from_secs(1), move || c.push("c"))
        .unwrap();
    lp.call_soon(move || b.push("b")).unwrap();
    let l = lp.clone();
    lp.call_later(Duration::from_millis(1), move || l.stop()).unwrap();
    lp.run_forever().unwrap();
    assert_eq!(log.get(), ["b", "c", "a"]);
}

#[ringloop::test(virtual_clock)]
fn call_soon_is_fifo(lp: &EventLoop) {
    let log = Log::new();
    for i in 0..20 {
        let l = log.clone();
        lp.call_soon(move || l.push(i.to_string())).unwrap();
    }
    let l = lp.clone();
    lp.call_soon(move || l.stop()).unwrap();
    lp.run_forever().unwrap();
    let want: Vec<String> = (0..20).map(|i| i.to_string()).collect();
    assert_eq!(log.get(), want);
}

#[ringloop::test(virtual_clock)]
fn call_later_runs_in_deadline_order_and_ties_in_scheduling_order(lp: &EventLoop) {
    let log = Log::new();
    for (d, tag) in [(2, "2"), (1, "1"), (3, "3")] {
        let l = log.clone();
        lp.call_later(Duration::from_secs(d), move || l.push(tag)).unwrap();
    }
    let t = lp.time() + Duration::from_secs(5);
    for i in 0..10 {
        let l = log.clone();
        lp.call_at(t, move || l.push(format!("tie{i}"))).unwrap();
    }
    let l = lp.clone();
    lp.call_at(t + Duration::from_millis(1), move || l.stop()).unwrap();
    lp.run_forever().unwrap();
    let mut want = vec!["1".to_string(), "2".into(), "3".into()];
    want.extend((0..10).map(|i| format!("tie{i}")));
    assert_eq!(log.get(), want);
}

#[ringloop::test(virtual_clock)]
fn call_soon_runs_before_call_later(lp: &EventLoop) {
    // The tutorial's 4, 1, 2, 3.
    let log = Log::new();
    for d in [2u64, 1, 3] {
        let l = log.clone();
        lp.call_later(Duration::from_secs(d), move || l.push(d.to_string()))
            .unwrap();
    }
    let l = log.clone();
    lp.call_soon(move || l.push("4")).unwrap();
    let s = lp.clone();
    lp.call_later(Duration::from_secs(4), move || s.stop()).unwrap();
    lp.run_forever().unwrap();
    assert_eq!(log.get(), ["4", "1", "2", "3"]);
}

#[ringloop::test(virtual_clock)]
fn cancelled_handles_do_not_run(lp: &EventLoop) {
    let log = Log::new();
    let l = log.clone();
    let h = lp.call_soon(move || l.push("soon")).unwrap();
    let l = log.clone();
    let th = lp.call_later(Duration::from_secs(1), move || l.push("later")).unwrap();
    h.cancel();
    h.cancel();
    th.cancel();
    assert!(h.cancelled() && th.cancelled());
    // A handle cancelled earlier in the same batch is skipped.
    let l = log.clone();
    let victim = lp.call_soon(move || l.push("victim")).unwrap();
    // (scheduled after victim, so cancel it via a callback queued before it)
    let _ = victim;
    let s = lp.clone();
    lp.call_later(Duration::from_secs(2), move || s.stop()).unwrap();
    lp.run_forever().unwrap();
    assert_eq!(log.get(), ["victim"]);
}

#[ringloop::test(virtual_clock)]
fn a_callback_cancelled_earlier_in_the_same_batch_is_skipped(lp: &EventLoop) {
    let log = Log::new();
    let slot: std::rc::Rc<std::cell::RefCell<Option<ringloop::Handle>>> = Default::default();
    let s2 = slot.clone();
    let l = log.clone();
    lp.call_soon(move || {
        l.push("first");
        s2.borrow().as_ref().unwrap().cancel();
    })
    .unwrap();
    let l = log.clone();
    *slot.borrow_mut() = Some(lp.call_soon(move || l.push("second")).unwrap());
    let s = lp.clone();
    lp.call_soon(move || s.stop()).unwrap();
    lp.run_forever().unwrap();
    assert_eq!(log.get(), ["first"]);
}

#[ringloop::test(virtual_clock)]
fn timer_handle_reports_its_deadline(lp: &EventLoop) {
    let t = lp.time() + Duration::from_secs(7);
    let h = lp.call_at(t, || {}).unwrap();
    assert_eq!(h.when(), t);
}

#[ringloop::test(virtual_clock)]
fn sleep_zero_interleaves_a0_b0_a1_b1(lp: &EventLoop) {
    let log = Log::new();
    let (la, lb) = (log.clone(), log.clone());
    lp.run_until_complete(async move {
        let a = ringloop::spawn(async move {
            for i in 0..3 {
                la.push(format!("a{i}"));
                sleep(Duration::ZERO).await;
            }
        });
        let b = ringloop::spawn(async move {
            for i in 0..3 {
                lb.push(format!("b{i}"));
                yield_now().await;
            }
        });
        a.await.unwrap();
        b.await.unwrap();
    })
    .unwrap();
    assert_eq!(log.get(), ["a0", "b0", "a1", "b1", "a2", "b2"]);
}

#[ringloop::test(virtual_clock)]
fn yield_now_lets_an_earlier_callback_run_first(lp: &EventLoop) {
    let log = Log::new();
    let l = log.clone();
    let lp2 = lp.clone();
    lp.run_until_complete(async move {
        let l2 = l.clone();
        lp2.call_soon(move || l2.push("callback")).unwrap();
        yield_now().await;
        l.push("after yield");
    })
    .unwrap();
    assert_eq!(log.get(), ["callback", "after yield"]);
}

#[ringloop::test(virtual_clock)]
fn stop_finishes_the_current_batch_but_not_new_callbacks(lp: &EventLoop) {
    let log = Log::new();
    let (l1, l2) = (log.clone(), log.clone());
    let lp2 = lp.clone();
    lp.call_soon(move || {
        l1.push("1");
        lp2.stop();
        let l3 = l1.clone();
        lp2.call_soon(move || l3.push("scheduled by a callback")).unwrap();
    })
    .unwrap();
    lp.call_soon(move || l2.push("2")).unwrap();
    lp.run_forever().unwrap();
    assert_eq!(log.get(), ["1", "2"]);
    // The callback scheduled during the stopped batch runs on the next run.
    lp.stop();
    lp.run_forever().unwrap();
    assert_eq!(log.get(), ["1", "2", "scheduled by a callback"]);
}

#[ringloop::test(virtual_clock)]
fn the_stopped_batch_includes_timers_due_in_that_iteration(lp: &EventLoop) {
    let log = Log::new();
    let l0 = log.clone();
    lp.call_later(Duration::ZERO, move || l0.push("timer0")).unwrap();
    let (l1, l2) = (log.clone(), log.clone());
    let lp2 = lp.clone();
    lp.call_soon(move || {
        l1.push("1");
        lp2.stop();
    })
    .unwrap();
    lp.call_soon(move || l2.push("2")).unwrap();
    lp.run_forever().unwrap();
    assert_eq!(log.get(), ["1", "2", "timer0"]);
}

#[ringloop::test(virtual_clock)]
fn stop_before_run_forever_runs_exactly_one_iteration(lp: &EventLoop) {
    let log = Log::new();
    let l = log.clone();
    let lp2 = lp.clone();
    lp.call_soon(move || {
        l.push("first");
        let l2 = l.clone();
        lp2.call_soon(move || l2.push("second")).unwrap();
    })
    .unwrap();
    // A far timer must not make the single iteration block.
    lp.call_later(Duration::from_secs(3600), || {}).unwrap();
    let before = lp.iterations();
    let t0 = lp.time();
    lp.stop();
    lp.run_forever().unwrap();
    assert_eq!(lp.iterations() - before, 1);
    assert_eq!(lp.time(), t0, "the stopped iteration polled without waiting");
    assert_eq!(log.get(), ["first"]);
    assert!(!lp.is_running());
}

#[ringloop::test(virtual_clock)]
fn run_until_complete_lets_the_rest_of_the_batch_run(lp: &EventLoop) {
    // asyncio p11: a task created by main gets its first step before
    // run_until_complete returns.
    let log = Log::new();
    let l = log.clone();
    lp.run_until_complete(async move {
        let l2 = l.clone();
        ringloop::spawn(async move { l2.push("child first step") }).detach();
        l.push("main done");
    })
    .unwrap();
    assert_eq!(log.get(), ["main done", "child first step"]);
}

#[ringloop::test(virtual_clock)]
fn is_running_is_true_only_inside_run(lp: &EventLoop) {
    assert!(!lp.is_running());
    let lp2 = lp.clone();
    let inside = lp.run_until_complete(async move { lp2.is_running() }).unwrap();
    assert!(inside);
    assert!(!lp.is_running());
}

#[ringloop::test(virtual_clock)]
fn a_sleep_whose_deadline_passed_still_yields_once_like_call_later(lp: &EventLoop) {
    let log = Log::new();
    let l = log.clone();
    let lp2 = lp.clone();
    lp.run_until_complete(async move {
        let past = lp2.time() - Duration::from_secs(1);
        let l2 = l.clone();
        lp2.call_soon(move || l2.push("callback queued first")).unwrap();
        ringloop::sleep_until(past).await;
        l.push("after sleep_until(past)");
    })
    .unwrap();
    assert_eq!(log.get(), ["callback queued first", "after sleep_until(past)"]);
}

#[ringloop::test(virtual_clock)]
fn virtual_clock_jumps_to_timers(lp: &EventLoop) {
    let t0 = lp.time();
    let wall = std::time::Instant::now();
    lp.run_until_complete(sleep(Duration::from_secs(3600))).unwrap();
    assert!(lp.time() - t0 >= Duration::from_secs(3600));
    assert!(wall.elapsed() < Duration::from_secs(60));
}

#[ringloop::test]
fn closed_loop_refuses_to_run_or_schedule(lp: &EventLoop) {
    lp.close().unwrap();
    lp.close().unwrap(); // idempotent
    assert!(lp.is_closed());
    assert_eq!(lp.run_forever(), Err(LoopError::Closed));
    assert_eq!(lp.run_until_complete(async {}).unwrap_err(), LoopError::Closed);
    assert_eq!(lp.call_soon(|| {}).unwrap_err(), LoopError::Closed);
    assert_eq!(
        lp.call_later(Duration::from_secs(1), || {}).unwrap_err(),
        LoopError::Closed
    );
    assert_eq!(lp.call_at(lp.time(), || {}).unwrap_err(), LoopError::Closed);
    assert_eq!(lp.create_task(async {}).unwrap_err(), LoopError::Closed);
    assert_eq!(lp.run_in_executor(|| 1).unwrap_err(), LoopError::Closed);
    assert_eq!(lp.handle().call_soon_threadsafe(|| {}).unwrap_err(), LoopError::Closed);
    assert_eq!(ringloop::try_spawn(async {}).unwrap_err(), LoopError::NoLoop);
    // The refused future (already moved into its allocation) is dropped.
    let probe = std::rc::Rc::new(());
    let p = probe.clone();
    assert_eq!(
        ringloop::try_spawn(async move { drop(p) }).unwrap_err(),
        LoopError::NoLoop
    );
    assert_eq!(std::rc::Rc::strong_count(&probe), 1);
}

#[ringloop::test]
fn close_discards_pending_callbacks_timers_and_tasks(lp: &EventLoop) {
    use std::rc::Rc;
    let probe = Rc::new(());
    let (p1, p2, p3) = (probe.clone(), probe.clone(), probe.clone());
    lp.call_soon(move || drop(p1)).unwrap();
    lp.call_later(Duration::from_secs(10), move || drop(p2)).unwrap();
    let t = lp
        .create_task(async move {
            let _p = p3;
            sleep(Duration::from_secs(10)).await;
        })
        .unwrap();
    assert_eq!(Rc::strong_count(&probe), 4);
    lp.close().unwrap();
    assert_eq!(
        Rc::strong_count(&probe),
        1,
        "close dropped every pending closure and future"
    );
    assert!(t.is_cancelled());
}

#[ringloop::test]
fn nested_run_and_close_while_running_are_errors(lp: &EventLoop) {
    let lp2 = lp.clone();
    let (nested, closing, forever) = lp
        .run_until_complete(async move {
            (
                lp2.run_until_complete(async {}).unwrap_err(),
                lp2.close().unwrap_err(),
                lp2.run_forever().unwrap_err(),
            )
        })
        .unwrap();
    assert_eq!(nested, LoopError::AlreadyRunning);
    assert_eq!(closing, LoopError::CloseWhileRunning);
    assert_eq!(forever, LoopError::AlreadyRunning);
    assert!(!lp.is_closed());
}

#[ringloop::test]
fn another_loop_running_on_the_thread_is_an_error(lp: &EventLoop) {
    let other = ringloop::EventLoop::builder()
        .driver(ringloop::DriverChoice::Fallback)
        .build()
        .unwrap();
    let err = lp
        .run_until_complete(async move { other.run_until_complete(async {}).unwrap_err() })
        .unwrap();
    assert_eq!(err, LoopError::AnotherLoopRunning);
}

#[ringloop::test]
fn stopped_before_complete_keeps_the_task_and_a_later_run_resumes_it(lp: &EventLoop) {
    let lp2 = lp.clone();
    lp.call_soon(move || lp2.stop()).unwrap();
    let err = lp
        .run_until_complete(async {
            sleep(Duration::from_millis(30)).await;
            7
        })
        .unwrap_err();
    assert_eq!(err, LoopError::StoppedBeforeComplete);
    assert_eq!(ringloop::all_tasks().len(), 1, "the task stays pending");
    // A later run resumes it; its result is simply not returned.
    lp.run_until_complete(sleep(Duration::from_millis(60))).unwrap();
    assert_eq!(ringloop::all_tasks().len(), 0);
}

#[ringloop::test]
fn run_until_complete_resumes_a_panic_of_the_main_future(lp: &EventLoop) {
    let r = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        lp.run_until_complete(async { panic!("boom in main") })
    }));
    let p = r.unwrap_err();
    assert_eq!(p.downcast_ref::<&str>(), Some(&"boom in main"));
    // The loop is usable afterwards.
    assert!(!lp.is_running());
    assert_eq!(lp.run_until_complete(async { 5 }).unwrap(), 5);
}

#[ringloop::test]
fn timers_never_fire_early(lp: &EventLoop) {
    let start = lp.time();
    let wall = std::time::Instant::now();
    let fired = std::rc::Rc::new(std::cell::Cell::new(None));
    let f = fired.clone();
    let lp2 = lp.clone();
    lp.call_later(Duration::from_millis(30), move || {
        f.set(Some(lp2.time()));
        lp2.stop();
    })
    .unwrap();
    lp.run_forever().unwrap();
    assert!(fired.get().unwrap() - start >= Duration::from_millis(30));
    assert!(wall.elapsed() >= Duration::from_millis(30));
    let t0 = lp.time();
    lp.run_until_complete(sleep(Duration::from_millis(20))).unwrap();
    assert!(lp.time() - t0 >= Duration::from_millis(20));
}

#[ringloop::test]
fn dropping_the_owning_loop_closes_it(lp: &EventLoop) {
    let _ = lp;
    let owned = ringloop::EventLoop::builder()
        .driver(ringloop::DriverChoice::Fallback)
        .build()
        .unwrap();
    let probe = std::rc::Rc::new(());
    let p = probe.clone();
    let clone = owned.clone();
    owned.call_soon(move || drop(p)).unwrap();
    drop(owned);
    assert!(clone.is_closed());
    assert_eq!(std::rc::Rc::strong_count(&probe), 1);
}
