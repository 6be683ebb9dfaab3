//! Loop edge cases: nested `run`, tasks of another loop, extreme durations,
//! loop identity; on both backends.

mod common;

use common::Log;
use futures_util::poll;
use ringloop::{DriverChoice, EventLoop, LoopError, MissedTicks, ReturnWhen, TaskError, WaitError};
use ringloop::{sleep, spawn, yield_now};
use std::time::Duration;

/// Another loop on this thread (fallback backend: it never runs here).
fn other_loop() -> EventLoop {
    EventLoop::builder().driver(DriverChoice::Fallback).build().unwrap()
}

fn loop_error(e: &std::io::Error) -> Option<LoopError> {
    e.get_ref().and_then(|e| e.downcast_ref::<LoopError>()).copied()
}

#[ringloop::test]
fn run_inside_a_running_loop_errors_and_leaves_the_running_loop_alone(lp: &EventLoop) {
    let (err, bg) = lp
        .run_until_complete(async {
            let bg = spawn(async {
                sleep(Duration::from_millis(20)).await;
                7
            });
            yield_now().await;
            let err = ringloop::run(async { 1 }).unwrap_err();
            // Still here: the main task was not cancelled either.
            yield_now().await;
            (err, bg.await)
        })
        .unwrap();
    assert_eq!(loop_error(&err), Some(LoopError::AnotherLoopRunning));
    assert_eq!(bg.unwrap(), 7);
    assert!(!lp.is_closed());
}

#[ringloop::test]
fn call_later_with_duration_max_does_not_panic_and_never_fires_early(lp: &EventLoop) {
    let log = Log::new();
    let l = log.clone();
    let h = lp.call_later(Duration::MAX, move || l.push("far")).unwrap();
    assert!(h.when() > lp.time() + Duration::from_secs(86400 * 365));
    // The far timer is the only one: the loop blocks on it until another
    // thread stops it.
    let stop = lp.handle();
    let th = std::thread::spawn(move || {
        std::thread::sleep(Duration::from_millis(20));
        stop.stop().unwrap();
    });
    lp.run_forever().unwrap();
    th.join().unwrap();
    assert!(log.get().is_empty());
    h.cancel();
}

#[ringloop::test(virtual_clock)]
fn running_a_task_of_another_loop_errors_at_once(lp: &EventLoop) {
    let other = other_loop();
    let foreign = other.create_task(async { 5 }).unwrap();
    // A watchdog: without the check this run would wait forever.
    let l = lp.clone();
    lp.call_later(Duration::from_secs(3600), move || l.stop()).unwrap();
    let r = lp.run_until_complete(foreign).unwrap();
    assert!(matches!(r, Err(TaskError::ForeignLoop)), "{r:?}");
    // The task itself is untouched and still runs on its own loop.
    let again = other.create_task(async { 6 }).unwrap();
    assert_eq!(other.run_until_complete(again).unwrap().unwrap(), 6);
}

#[ringloop::test(virtual_clock)]
fn awaiting_gathering_or_waiting_on_a_task_of_another_loop_errors(lp: &EventLoop) {
    let other = other_loop();
    let (a, b, c, d) = (
        other.create_task(async { 1 }).unwrap(),
        other.create_task(async { 2 }).unwrap(),
        other.create_task(async { 3 }).unwrap(),
        other.create_task(async { 4 }).unwrap(),
    );
    let l = lp.clone();
    lp.call_later(Duration::from_secs(3600), move || l.stop()).unwrap();
    let (ra, rb, rc) = lp
        .run_until_complete(async move {
            let ra = spawn(a).await.unwrap();
            let rb = ringloop::gather_tasks([b]).await;
            let rc = ringloop::wait([c, d], ReturnWhen::AllCompleted).await;
            (ra, rb, rc.map(|_| ()))
        })
        .unwrap();
    assert!(matches!(ra, Err(TaskError::ForeignLoop)), "{ra:?}");
    assert!(matches!(rb, Err(TaskError::ForeignLoop)), "{rb:?}");
    assert_eq!(rc.unwrap_err(), WaitError::ForeignLoop);
}

#[ringloop::test(virtual_clock)]
fn interval_with_duration_max_does_not_panic(lp: &EventLoop) {
    for missed in [MissedTicks::Burst, MissedTicks::Delay, MissedTicks::Skip] {
        let (first, second) = lp
            .run_until_complete(async move {
                let t0 = ringloop::current().unwrap().time();
                let mut iv = ringloop::interval(Duration::MAX);
                iv.set_missed_tick_behavior(missed);
                let first = iv.tick().await;
                let second = ringloop::timeout(Duration::from_secs(3600), iv.tick()).await;
                (first - t0, second.is_err())
            })
            .unwrap();
        assert_eq!(first, Duration::ZERO);
        assert!(second, "{missed:?}: a second tick of a Duration::MAX interval came");
    }
}

#[ringloop::test(virtual_clock)]
fn interval_skip_after_a_stall_of_more_than_u32_max_periods_stays_on_the_grid(lp: &EventLoop) {
    let (stalled_until, next) = lp
        .run_until_complete(async {
            let lp = ringloop::current().unwrap();
            let mut iv = ringloop::interval(Duration::from_nanos(1));
            iv.set_missed_tick_behavior(MissedTicks::Skip);
            iv.tick().await;
            // Stall for 5e9 periods (more than u32::MAX).
            sleep(Duration::from_secs(5)).await;
            let now = lp.time();
            iv.tick().await; // the missed tick fires at once
            (now, iv.tick().await)
        })
        .unwrap();
    assert!(
        next > stalled_until,
        "a tick scheduled before the stall ended fired after it"
    );
}

#[ringloop::test(virtual_clock)]
fn timeouts_and_sleeps_with_duration_max_do_not_panic(lp: &EventLoop) {
    let r = lp
        .run_until_complete(async {
            let a = ringloop::timeout(Duration::MAX, async { 1 }).await;
            let t = spawn(sleep(Duration::MAX));
            let w = ringloop::wait([t], ReturnWhen::AllCompleted).timeout(Duration::MAX);
            let b = ringloop::timeout(Duration::from_secs(60), w).await;
            (a, b.is_err())
        })
        .unwrap();
    assert_eq!(r, (Ok(1), true));
}

#[ringloop::test(virtual_clock)]
fn a_stale_sleep_of_a_closed_loop_cannot_touch_a_new_loops_timers(lp: &EventLoop) {
    let choice = common::choice_of(lp);
    // A new loop may reuse the memory of a dropped one; try several times
    // so an identity based on addresses would be caught.
    for attempt in 0..48 {
        let a = EventLoop::builder().driver(choice).build().unwrap();
        let stale = a
            .run_until_complete(async {
                let mut s = sleep(Duration::from_secs(3600));
                let _ = poll!(&mut s);
                Some(s)
            })
            .unwrap()
            .unwrap();
        drop(a);
        // Holding a few small blocks while the next loop is built changes
        // which of its allocations reuses the old loop's memory.
        let fillers: Vec<Vec<u8>> = (0..attempt % 8)
            .map(|_| Vec::with_capacity(40 + 16 * (attempt / 8)))
            .collect();
        let b = EventLoop::builder().driver(choice).virtual_clock(true).build().unwrap();
        drop(fillers);
        let log = Log::new();
        let l = log.clone();
        b.call_later(Duration::from_secs(60), move || l.push("fired")).unwrap();
        // Polled, then dropped, on the new loop.
        b.run_until_complete(async move {
            let mut stale = stale;
            let _ = poll!(&mut stale);
            drop(stale);
        })
        .unwrap();
        let s = b.clone();
        b.call_later(Duration::from_secs(120), move || s.stop()).unwrap();
        b.run_forever().unwrap();
        assert_eq!(
            log.get(),
            ["fired"],
            "attempt {attempt}: a stale Sleep affected a new loop's timer"
        );
    }
}

/// A task of this loop awaits a read on a stream of another io_uring loop
/// on the same thread: the other loop's driver keeps a waker for it (not
/// one of its own tasks), and completing the read there wakes the task
/// through this loop's cross-thread queue, so it resumes when this loop
/// runs again.
#[ringloop::test]
fn a_task_awaiting_another_loops_operation_is_woken_across_loops(lp: &EventLoop) {
    use ringloop::AsyncReadOwned;
    let Some(other) = common::build(DriverChoice::Uring, false) else {
        return;
    };
    let (mine, mut peer) = std::os::unix::net::UnixStream::pair().unwrap();
    let stream = other
        .run_until_complete(async move { ringloop::net::UnixStream::from_std(mine) })
        .unwrap()
        .unwrap();
    let t = lp
        .create_task(async move {
            let (res, buf) = stream.read(Vec::with_capacity(16)).await;
            (res.unwrap(), buf)
        })
        .unwrap();
    // Its first step queues the read on the other loop's ring.
    lp.run_until_complete(async {
        yield_now().await;
        yield_now().await;
    })
    .unwrap();
    assert!(!t.is_done());
    std::io::Write::write_all(&mut peer, b"hello").unwrap();
    // The other loop submits the read; its completion wakes our task.
    other
        .run_until_complete(async { sleep(Duration::from_millis(20)).await })
        .unwrap();
    let (n, buf) = lp.run_until_complete(t).unwrap().unwrap();
    assert_eq!(&buf[..n], b"hello");
}
