//! Cross-thread wake-ups, the blocking executor and idle sleeping, on both backends.

mod common;

use ringloop::EventLoop;
use ringloop::{LoopError, TaskError, sleep};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Barrier};
use std::time::{Duration, Instant};

/// CPU time (user + system) consumed by the calling thread.
fn thread_cpu_time() -> Duration {
    // SAFETY: `getrusage` only writes into the zeroed struct we pass.
    let mut ru: libc::rusage = unsafe { std::mem::zeroed() };
    // SAFETY: valid pointer to a `rusage`; RUSAGE_THREAD is Linux's per-thread accounting.
    let rc = unsafe { libc::getrusage(libc::RUSAGE_THREAD, &mut ru) };
    assert_eq!(rc, 0);
    let tv = |t: libc::timeval| Duration::new(t.tv_sec as u64, t.tv_usec as u32 * 1000);
    tv(ru.ru_utime) + tv(ru.ru_stime)
}

#[ringloop::test]
fn the_loop_sleeps_without_spinning_on_a_pending_timer(lp: &EventLoop) {
    // Warm up (first iteration, lazy allocations).
    lp.run_until_complete(sleep(Duration::from_millis(1))).unwrap();
    let cpu0 = thread_cpu_time();
    let wall0 = Instant::now();
    let iters0 = lp.iterations();
    lp.run_until_complete(sleep(Duration::from_millis(200))).unwrap();
    let wall = wall0.elapsed();
    let cpu = thread_cpu_time() - cpu0;
    let iters = lp.iterations() - iters0;
    eprintln!("200 ms timer: cpu {cpu:?} over wall {wall:?}, {iters} iterations");
    assert!(wall >= Duration::from_millis(200));
    assert!(cpu * 10 < wall, "cpu {cpu:?} is not well under 10% of wall {wall:?}");
    assert!(iters < 20, "the loop spun: {iters} iterations for one timer");
}

#[ringloop::test]
fn call_soon_threadsafe_wakes_a_loop_blocked_on_a_long_timer(lp: &EventLoop) {
    let h = lp.handle();
    let lp2 = lp.clone();
    // The only thing pending is a 10 s timer.
    lp.call_later(Duration::from_secs(10), move || lp2.stop()).unwrap();
    let sent = Arc::new(std::sync::Mutex::new(None::<Instant>));
    let s = sent.clone();
    let t = std::thread::spawn(move || {
        std::thread::sleep(Duration::from_millis(100));
        *s.lock().unwrap() = Some(Instant::now());
        h.stop().unwrap();
    });
    let start = Instant::now();
    lp.run_forever().unwrap();
    let woke = Instant::now();
    t.join().unwrap();
    let latency = woke - sent.lock().unwrap().unwrap();
    eprintln!("cross-thread wake latency: {latency:?}");
    assert!(latency < Duration::from_millis(100), "woke after {latency:?}");
    assert!(start.elapsed() < Duration::from_secs(5));
}

#[ringloop::test]
fn call_soon_threadsafe_callbacks_run_on_the_loop_in_order(lp: &EventLoop) {
    let h = lp.handle();
    let log = Arc::new(std::sync::Mutex::new(Vec::new()));
    let l = log.clone();
    let t = std::thread::spawn(move || {
        for i in 0..100 {
            let l = l.clone();
            h.call_soon_threadsafe(move || l.lock().unwrap().push(i)).unwrap();
        }
        h.stop().unwrap();
    });
    lp.call_later(Duration::from_secs(10), || {}).unwrap();
    let mut runs = 0;
    while log.lock().unwrap().len() < 100 && runs < 1000 {
        lp.run_forever().unwrap();
        runs += 1;
    }
    t.join().unwrap();
    assert_eq!(*log.lock().unwrap(), (0..100).collect::<Vec<_>>());
}

#[ringloop::test]
fn loop_handle_spawns_send_futures_from_other_threads(lp: &EventLoop) {
    let h = lp.handle();
    let t = std::thread::spawn(move || {
        let task = h
            .spawn(async {
                sleep(Duration::from_millis(10)).await;
                6 * 7
            })
            .unwrap();
        let v = task.join();
        h.stop().unwrap();
        v
    });
    lp.call_later(Duration::from_secs(10), || {}).unwrap();
    lp.run_forever().unwrap();
    assert_eq!(t.join().unwrap().unwrap(), 42);
}

#[ringloop::test]
fn remote_tasks_report_cancellation_when_the_loop_closes(lp: &EventLoop) {
    let h = lp.handle();
    let task = h.spawn(async { 1 }).unwrap();
    lp.close().unwrap();
    assert!(matches!(task.join(), Err(TaskError::Cancelled)));
    assert_eq!(h.spawn(async { 2 }).unwrap_err(), LoopError::Closed);
}

#[ringloop::test]
fn run_in_executor_delivers_results_and_panics_back_to_the_loop(lp: &EventLoop) {
    let lp2 = lp.clone();
    let (v, p) = lp
        .run_until_complete(async move {
            let main = std::thread::current().id();
            let job = lp2
                .run_in_executor(move || (std::thread::current().id() != main, 5))
                .unwrap();
            let bad = ringloop::spawn_blocking(|| -> u8 { panic!("blocking boom") });
            (job.await.unwrap(), bad.await.unwrap_err())
        })
        .unwrap();
    assert_eq!(v, (true, 5), "ran on another thread");
    assert_eq!(p.panic_message(), Some("blocking boom"));
}

#[ringloop::test]
fn blocking_sleeps_in_the_pool_overlap(lp: &EventLoop) {
    // Ten blocking 50 ms sleeps on a pool of 10 take ~50 ms, not 500.
    let lp2 = lp.clone();
    let wall = Instant::now();
    lp.run_until_complete(async move {
        let jobs: Vec<_> = (0..10)
            .map(|_| {
                lp2.run_in_executor(|| std::thread::sleep(Duration::from_millis(50)))
                    .unwrap()
            })
            .collect();
        for j in jobs {
            j.await.unwrap();
        }
    })
    .unwrap();
    assert!(wall.elapsed() < Duration::from_millis(450), "{:?}", wall.elapsed());
}

fn bounded_pool_loop(choice: ringloop::DriverChoice) -> Option<ringloop::EventLoop> {
    match ringloop::EventLoop::builder()
        .driver(choice)
        .max_blocking_threads(2)
        .blocking_keep_alive(Duration::from_millis(50))
        .build()
    {
        Ok(lp) => Some(lp),
        Err(e) if !common::require_uring() => {
            eprintln!("SKIP: {e}");
            None
        }
        Err(e) => panic!("{e}"),
    }
}

fn pool_is_bounded_and_idle_threads_retire(choice: ringloop::DriverChoice) {
    let Some(lp) = bounded_pool_loop(choice) else { return };
    eprintln!("[{}] bounded pool", lp.driver_kind());
    let running = Arc::new(AtomicUsize::new(0));
    let peak = Arc::new(AtomicUsize::new(0));
    let lp2 = lp.clone();
    let (r, p) = (running.clone(), peak.clone());
    lp.run_until_complete(async move {
        let jobs: Vec<_> = (0..6)
            .map(|_| {
                let (r, p) = (r.clone(), p.clone());
                lp2.run_in_executor(move || {
                    let now = r.fetch_add(1, Ordering::SeqCst) + 1;
                    p.fetch_max(now, Ordering::SeqCst);
                    std::thread::sleep(Duration::from_millis(20));
                    r.fetch_sub(1, Ordering::SeqCst);
                })
                .unwrap()
            })
            .collect();
        for j in jobs {
            j.await.unwrap();
        }
    })
    .unwrap();
    assert_eq!(
        peak.load(Ordering::SeqCst),
        2,
        "never more than max_blocking_threads at once"
    );
    assert!(lp.blocking_threads() <= 2);
    let deadline = Instant::now() + Duration::from_secs(10);
    while lp.blocking_threads() > 0 && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(10));
    }
    assert_eq!(lp.blocking_threads(), 0, "idle threads retired");
    // The pool starts threads again on demand.
    let lp3 = lp.clone();
    assert_eq!(
        lp.run_until_complete(async move { lp3.run_in_executor(|| 3).unwrap().await.unwrap() })
            .unwrap(),
        3
    );
    // close() shuts it down.
    let barrier = Arc::new(Barrier::new(1));
    drop(barrier);
    lp.close().unwrap();
    assert_eq!(lp.run_in_executor(|| 1).unwrap_err(), LoopError::Closed);
    let deadline = Instant::now() + Duration::from_secs(10);
    while lp.blocking_threads() > 0 && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(10));
    }
    assert_eq!(lp.blocking_threads(), 0);
}

mod bounded_pool {
    #[test]
    fn uring() {
        super::pool_is_bounded_and_idle_threads_retire(ringloop::DriverChoice::Uring)
    }
    #[test]
    fn fallback() {
        super::pool_is_bounded_and_idle_threads_retire(ringloop::DriverChoice::Fallback)
    }
}
