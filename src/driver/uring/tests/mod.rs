//! Tests of the io_uring driver: op lifecycle, waits, wake-ups, SQ/CQ limits.
//!
//! A test that cannot build a ring (io_uring forbidden or missing here) or
//! needs a kernel feature this kernel lacks prints why and returns, unless
//! `RINGLOOP_REQUIRE_URING=1` (set by `.ci/run` for the default-feature
//! run), which turns an unusable ring into a failure so these tests cannot
//! pass vacuously.

use std::cell::{Cell, RefCell};
use std::future::{Future, poll_fn};
use std::io;
use std::pin::{Pin, pin};
use std::rc::Rc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll, Wake, Waker};
use std::thread;
use std::time::{Duration, Instant};

use io_uring::{opcode, types};

use super::{COOP_TASKRUN, DEFER_TASKRUN, Op, SUBMIT_ALL, TASKRUN_FLAG, UringDriver, WakeMode, timespec};
use crate::driver::UringConfig;

fn require_uring() -> bool {
    std::env::var("RINGLOOP_REQUIRE_URING").is_ok_and(|v| v == "1")
}

/// `Some` ring, or `None` (a skip, said on stdout) where io_uring is not
/// usable; panics instead when `RINGLOOP_REQUIRE_URING=1`.
fn usable<T>(built: io::Result<T>) -> Option<T> {
    match built {
        Ok(d) => Some(d),
        Err(e) if require_uring() => panic!("RINGLOOP_REQUIRE_URING=1 but io_uring is not usable: {e}"),
        Err(e) => {
            println!("skipped: io_uring is not usable here: {e}");
            None
        }
    }
}

fn try_driver(cfg: UringConfig) -> Option<UringDriver> {
    usable(UringDriver::new(&cfg))
}

fn default_driver() -> Option<UringDriver> {
    try_driver(UringConfig::default())
}

fn legacy_driver() -> Option<UringDriver> {
    try_driver(UringConfig {
        disable_ext_arg: true,
        ..UringConfig::default()
    })
}

struct FlagWaker(AtomicBool);

impl Wake for FlagWaker {
    fn wake(self: Arc<Self>) {
        self.0.store(true, Ordering::SeqCst);
    }
}

/// Polls `fut` whenever its waker fired, calling `driver.wait(None)` while it
/// is pending.
fn block_on<F: Future>(driver: &UringDriver, fut: F) -> F::Output {
    let flag = Arc::new(FlagWaker(AtomicBool::new(true)));
    let waker = Waker::from(flag.clone());
    let mut cx = Context::from_waker(&waker);
    let mut fut = pin!(fut);
    loop {
        if flag.0.swap(false, Ordering::SeqCst)
            && let Poll::Ready(out) = fut.as_mut().poll(&mut cx)
        {
            return out;
        }
        driver.wait(None).expect("wait");
    }
}

fn poll_once<F: Future + Unpin>(fut: &mut F) -> Poll<F::Output> {
    let waker = Waker::noop();
    Pin::new(fut).poll(&mut Context::from_waker(waker))
}

/// Awaits every op, returning their results in order.
async fn join_all<T: 'static>(ops: Vec<Op<T>>) -> Vec<io::Result<u32>> {
    let mut ops: Vec<Option<Op<T>>> = ops.into_iter().map(Some).collect();
    let mut results: Vec<Option<io::Result<u32>>> = (0..ops.len()).map(|_| None).collect();
    let mut left = ops.len();
    poll_fn(|cx| {
        for (op, result) in ops.iter_mut().zip(results.iter_mut()) {
            if let Some(inner) = op
                && let Poll::Ready((res, _)) = Pin::new(inner).poll(cx)
            {
                *result = Some(res);
                *op = None;
                left -= 1;
            }
        }
        if left == 0 { Poll::Ready(()) } else { Poll::Pending }
    })
    .await;
    results.into_iter().map(|r| r.expect("every op completed")).collect()
}

/// Counts drops of the resources it is part of.
struct DropProbe(Rc<Cell<u32>>);

impl Drop for DropProbe {
    fn drop(&mut self) {
        self.0.set(self.0.get() + 1);
    }
}

/// Submits a `duration` IORING_OP_TIMEOUT whose resources carry a probe.
fn probed_timeout(
    driver: &UringDriver,
    duration: Duration,
    drops: &Rc<Cell<u32>>,
) -> Op<(Box<types::Timespec>, DropProbe)> {
    let resources = (Box::new(timespec(duration)), DropProbe(drops.clone()));
    // SAFETY: the SQE points at the boxed timespec, whose heap address is
    // stable and which the kernel only reads.
    let (op, _) = unsafe {
        driver.submit(
            resources,
            |(ts, _)| opcode::Timeout::new(&**ts as *const types::Timespec).build(),
            None,
        )
    };
    op
}

/// Waits until no operation slot is in use, failing after `limit`.
fn drain_slots(driver: &UringDriver, limit: Duration) {
    let start = Instant::now();
    while driver.slots_in_use() > 0 {
        assert!(
            start.elapsed() < limit,
            "{} slot(s) still in use after {limit:?}",
            driver.slots_in_use()
        );
        driver.wait(Some(Duration::from_millis(50))).unwrap();
    }
}

mod ops;

#[test]
fn notify_from_another_thread_wakes_a_blocked_wait_promptly() {
    let Some(d) = default_driver() else { return };
    // Several rounds: the eventfd read must be re-armed after each wake.
    for round in 0..3 {
        let notifier = d.notifier();
        let notified_at = Arc::new(Mutex::new(None));
        let at = notified_at.clone();
        let thread = thread::spawn(move || {
            thread::sleep(Duration::from_millis(50));
            *at.lock().unwrap() = Some(Instant::now());
            notifier.notify();
        });
        let woke = loop {
            d.wait(None).unwrap();
            // A signal could end the wait early (EINTR): wait again then.
            if notified_at.lock().unwrap().is_some() {
                break Instant::now();
            }
        };
        thread.join().unwrap();
        let latency = woke - notified_at.lock().unwrap().unwrap();
        assert!(
            latency < Duration::from_millis(100),
            "round {round}: woke {latency:?} after notify"
        );
    }
}

#[test]
fn notify_before_wait_makes_the_next_wait_return() {
    let Some(d) = default_driver() else { return };
    d.wait(Some(Duration::ZERO)).unwrap();
    d.notifier().notify();
    let start = Instant::now();
    d.wait(Some(Duration::from_secs(5))).unwrap();
    assert!(start.elapsed() < Duration::from_secs(1));
}

#[test]
fn poll_mode_eventfd_wake_works() {
    // The path for kernels whose io_uring read of a non-blocking eventfd
    // completes with EAGAIN: POLL_ADD, then read(2).
    let Some(d) = default_driver() else { return };
    d.inner.core.borrow_mut().wake_mode = WakeMode::Poll;
    for _ in 0..3 {
        let notifier = d.notifier();
        let thread = thread::spawn(move || {
            thread::sleep(Duration::from_millis(20));
            notifier.notify();
        });
        let start = Instant::now();
        d.wait(Some(Duration::from_secs(5))).unwrap();
        thread.join().unwrap();
        assert!(start.elapsed() < Duration::from_secs(1));
    }
    assert_eq!(d.inner.core.borrow().wake_mode, WakeMode::Poll);
}

#[test]
fn zero_timeout_wait_does_not_block_or_enter_needlessly() {
    let Some(d) = default_driver() else { return };
    d.wait(Some(Duration::ZERO)).unwrap();
    let start = Instant::now();
    let enters = d.stats().enters;
    for _ in 0..100 {
        d.wait(Some(Duration::ZERO)).unwrap();
    }
    assert!(start.elapsed() < Duration::from_millis(500));
    if d.inner.core.borrow().taskrun_flag {
        assert_eq!(d.stats().enters, enters, "idle polls entered the kernel");
    } else {
        println!("note: no TASKRUN_FLAG, idle polls may enter");
    }
}

#[test]
fn a_wait_with_work_queued_makes_one_enter() {
    let Some(d) = default_driver() else { return };
    d.wait(Some(Duration::ZERO)).unwrap();
    for timeout in [None, Some(Duration::from_secs(1)), Some(Duration::ZERO)] {
        let op = d.nop();
        let enters = d.stats().enters;
        d.wait(timeout).unwrap();
        assert_eq!(d.stats().enters - enters, 1, "timeout {timeout:?}");
        let (res, ()) = block_on(&d, op);
        res.unwrap();
    }
}

#[test]
fn wait_with_timeout_and_nothing_pending_sleeps_the_timeout() {
    let Some(d) = default_driver() else { return };
    let duration = Duration::from_millis(30);
    let start = Instant::now();
    d.wait(Some(duration)).unwrap();
    let elapsed = start.elapsed();
    assert!(elapsed >= duration, "returned after {elapsed:?}");
    assert!(elapsed < duration + Duration::from_secs(1));
}

#[test]
fn without_ext_arg_wait_honours_timeouts() {
    let Some(d) = legacy_driver() else { return };
    assert!(
        d.setup_description().contains("Timeout-SQE"),
        "{}",
        d.setup_description()
    );
    for ms in [10, 30, 5] {
        let duration = Duration::from_millis(ms);
        let start = Instant::now();
        d.wait(Some(duration)).unwrap();
        let elapsed = start.elapsed();
        assert!(elapsed >= duration, "{duration:?} wait returned after {elapsed:?}");
        assert!(elapsed < duration + Duration::from_secs(1), "took {elapsed:?}");
    }
    // Ops and timeout ops work the same on that path.
    block_on(&d, d.timeout(Duration::from_millis(5))).unwrap();
    let (res, ()) = block_on(&d, d.nop());
    res.unwrap();
}

#[test]
fn without_ext_arg_timeout_sqes_do_not_accumulate() {
    let Some(d) = legacy_driver() else { return };
    let outstanding = |d: &UringDriver| d.inner.core.borrow().legacy.outstanding;
    let mut max = 0;
    for i in 0..1000u64 {
        // A nop ends each wait early; shrinking timeouts force the
        // replace path, growing ones the reuse path, alternating with
        // unbounded and zero waits.
        let op = d.nop();
        let timeout = match i % 4 {
            0 | 1 => Some(Duration::from_secs(10) - Duration::from_millis(i)),
            2 => Some(Duration::from_secs(20) + Duration::from_millis(i)),
            _ => None,
        };
        d.wait(timeout).unwrap();
        let (res, ()) = block_on(&d, op);
        res.unwrap();
        max = max.max(outstanding(&d));
        d.wait(Some(Duration::ZERO)).unwrap();
    }
    assert!(max <= 2, "up to {max} wait timeouts were outstanding");
    // The driver still honours a timeout afterwards.
    let start = Instant::now();
    d.wait(Some(Duration::from_millis(20))).unwrap();
    assert!(start.elapsed() >= Duration::from_millis(20));
    assert!(outstanding(&d) <= 1, "{} outstanding at the end", outstanding(&d));
}

#[test]
fn sq_full_ten_thousand_nops_on_an_eight_entry_ring_all_complete() {
    let Some(d) = try_driver(UringConfig {
        entries: 8,
        ..UringConfig::default()
    }) else {
        return;
    };
    let ops: Vec<Op<()>> = (0..10_000).map(|_| d.nop()).collect();
    let results = block_on(&d, join_all(ops));
    assert_eq!(results.len(), 10_000);
    for res in results {
        assert_eq!(res.unwrap(), 0);
    }
    assert_eq!(d.slots_in_use(), 0);
}

#[test]
fn cq_overflow_loses_no_completion() {
    let Some(d) = try_driver(UringConfig {
        entries: 4,
        ..UringConfig::default()
    }) else {
        return;
    };
    let cq_entries = d.inner.core.borrow().ring.params().cq_entries() as usize;
    let before = d.stats().op_cqes;
    let mut ops = Vec::new();
    // Submit 8x the CQ's capacity without reaping anything.
    for _ in 0..(cq_entries * 8 / 4) {
        for _ in 0..4 {
            ops.push(d.nop());
        }
        d.inner.core.borrow_mut().ring.submit().unwrap();
    }
    // The kernel must have kept completions on its overflow list (NODROP,
    // required at setup): otherwise this test would not test the flush.
    let overflowed = d.inner.core.borrow_mut().ring.submission().cq_overflow();
    assert!(
        overflowed,
        "{n} NOPs on a {cq_entries}-entry CQ did not set IORING_SQ_CQ_OVERFLOW",
        n = ops.len()
    );
    let n = ops.len();
    let results = block_on(&d, join_all(ops));
    assert_eq!(results.len(), n);
    assert!(results.iter().all(|r| matches!(r, Ok(0))));
    assert_eq!(d.stats().op_cqes - before, n as u64, "each op completed exactly once");
    assert_eq!(d.slots_in_use(), 0);
    assert!(d.stats().overflow_flushes > 0, "the overflow was never flushed");
    assert!(!d.inner.core.borrow_mut().ring.submission().cq_overflow());
}

#[test]
fn absurd_entries_are_an_error_not_a_panic() {
    for entries in [1 << 30, 0] {
        let err = match UringDriver::new(&UringConfig {
            entries,
            ..UringConfig::default()
        }) {
            Ok(_) => panic!("a ring of {entries} entries was built"),
            Err(e) => e,
        };
        assert!(err.to_string().contains("io_uring_setup"), "{err}");
        println!("entries = {entries}: {err}");
    }
}

#[test]
fn tuned_and_untuned_flag_sets_both_work() {
    for tuned in [true, false] {
        let Some(d) = try_driver(UringConfig {
            tuned_flags: tuned,
            ..UringConfig::default()
        }) else {
            return;
        };
        let desc = d.setup_description();
        println!("tuned_flags = {tuned}: {desc}");
        if !tuned {
            assert!(desc.contains("flags none"), "{desc}");
        }
        let (res, ()) = block_on(&d, d.nop());
        res.unwrap();
        let start = Instant::now();
        block_on(&d, d.timeout(Duration::from_millis(10))).unwrap();
        assert!(start.elapsed() >= Duration::from_millis(10));
        let results = block_on(&d, join_all((0..100).map(|_| d.nop()).collect()));
        assert!(results.iter().all(|r| r.is_ok()));
        let notifier = d.notifier();
        let thread = thread::spawn(move || {
            thread::sleep(Duration::from_millis(20));
            notifier.notify();
        });
        let start = Instant::now();
        d.wait(Some(Duration::from_secs(5))).unwrap();
        assert!(start.elapsed() < Duration::from_secs(1));
        thread.join().unwrap();
    }
}

/// Submits a multishot IORING_OP_TIMEOUT (kernel 6.4+) firing every
/// `interval`, `count` times (0 = until cancelled).
#[test]
fn refused_flag_sets_fall_through_to_the_next() {
    // DEFER_TASKRUN without SINGLE_ISSUER is refused with EINVAL by every
    // kernel, like an unknown flag on an older one.
    let attempts = [DEFER_TASKRUN, COOP_TASKRUN | TASKRUN_FLAG | SUBMIT_ALL, 0];
    let Some(d) = usable(UringDriver::with_attempts(&UringConfig::default(), &attempts)) else {
        return;
    };
    let desc = d.setup_description();
    assert!(desc.contains("refused: DEFER_TASKRUN"), "{desc}");
    let accepted = desc.contains("flags COOP_TASKRUN|TASKRUN_FLAG|SUBMIT_ALL");
    assert!(accepted || desc.contains("flags none"), "{desc}");
    let (res, ()) = block_on(&d, d.nop());
    res.unwrap();
}

#[test]
fn a_failed_msg_ring_wakes_every_target_by_eventfd() {
    // A MSG_RING that fails does not say which loop it was for; the
    // recovery wakes every io_uring loop that can receive them.
    let Some(d) = default_driver() else { return };
    if !d.inner.features.msg_ring || !d.supports(io_uring::opcode::MsgRingData::CODE) {
        return;
    }
    d.wait(Some(Duration::ZERO)).unwrap();
    let thread = thread::spawn(|| {
        thread::sleep(Duration::from_millis(50));
        super::msg_ring::sent_failed(-libc::EOVERFLOW);
    });
    let start = Instant::now();
    d.wait(Some(Duration::from_secs(10))).unwrap();
    thread.join().unwrap();
    assert!(start.elapsed() < Duration::from_secs(5), "the failed wake-up was lost");
}
