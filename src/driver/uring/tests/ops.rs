//! Operation lifecycle: completion, cancellation, multishot, teardown.

use super::*;

#[test]
fn nop_completes_with_zero_and_frees_its_slot() {
    let Some(d) = default_driver() else { return };
    let (res, ()) = block_on(&d, d.nop());
    assert_eq!(res.unwrap(), 0);
    assert_eq!(d.slots_in_use(), 0);
}

#[test]
fn timeout_op_completes_no_earlier_than_its_duration() {
    let Some(d) = default_driver() else { return };
    for ms in [1, 20, 50] {
        let duration = Duration::from_millis(ms);
        let start = Instant::now();
        block_on(&d, d.timeout(duration)).unwrap();
        let elapsed = start.elapsed();
        assert!(elapsed >= duration, "{duration:?} timeout completed after {elapsed:?}");
        assert!(elapsed < duration + Duration::from_secs(2), "took {elapsed:?}");
    }
    assert_eq!(d.slots_in_use(), 0);
}

#[test]
fn negative_results_map_to_io_errors() {
    let Some(d) = default_driver() else { return };
    // SAFETY: the SQE points into the Vec's heap buffer, stable while the Vec
    // moves with the op and untouched until the op returns it.
    let op = unsafe {
        d.submit(vec![0u8; 8], |buf| {
            opcode::Read::new(types::Fd(-1), buf.as_mut_ptr(), 8).build()
        })
    };
    let (res, buf) = block_on(&d, op);
    assert_eq!(res.unwrap_err().raw_os_error(), Some(libc::EBADF));
    assert_eq!(buf.len(), 8);
}

#[test]
fn dropped_in_flight_timeout_keeps_resources_until_its_cancel_completion() {
    let Some(d) = default_driver() else { return };
    let drops = Rc::new(Cell::new(0));
    let mut op = probed_timeout(&d, Duration::from_secs(10), &drops);
    assert!(poll_once(&mut op).is_pending());
    // Hand the SQE to the kernel, so the timeout is really in flight.
    d.wait(Some(Duration::ZERO)).unwrap();
    assert!(poll_once(&mut op).is_pending());

    let start = Instant::now();
    drop(op);
    assert_eq!(drops.get(), 0, "resources freed while the kernel may use them");
    assert_eq!(d.slots_in_use(), 1, "the orphaned slot waits for its final CQE");
    drain_slots(&d, Duration::from_secs(2));
    assert_eq!(drops.get(), 1, "resources dropped exactly once");
    assert!(
        start.elapsed() < Duration::from_secs(5),
        "the cancel did not cut the 10 s timeout short"
    );

    // Dropped before its SQE was even submitted: same guarantees.
    let op = probed_timeout(&d, Duration::from_secs(10), &drops);
    drop(op);
    assert_eq!(drops.get(), 1);
    drain_slots(&d, Duration::from_secs(2));
    assert_eq!(drops.get(), 2);
    // Nothing more arrives for those slots later.
    d.wait(Some(Duration::from_millis(20))).unwrap();
    assert_eq!(drops.get(), 2);
    assert_eq!(d.slots_in_use(), 0);
}

#[test]
fn completed_but_uncollected_op_frees_slot_and_resources_on_drop() {
    let Some(d) = default_driver() else { return };
    let drops = Rc::new(Cell::new(0));
    let op = probed_timeout(&d, Duration::from_millis(1), &drops);
    let start = Instant::now();
    while start.elapsed() < Duration::from_millis(200) {
        d.wait(Some(Duration::from_millis(10))).unwrap();
    }
    assert_eq!(drops.get(), 0);
    drop(op);
    assert_eq!(drops.get(), 1);
    assert_eq!(d.slots_in_use(), 0);
}

#[test]
fn dropping_the_driver_waits_for_cancelled_ops_and_frees_them_once() {
    let Some(d) = default_driver() else { return };
    let drops = Rc::new(Cell::new(0));
    let op = probed_timeout(&d, Duration::from_secs(10), &drops);
    d.wait(Some(Duration::ZERO)).unwrap();
    drop(op);
    let start = Instant::now();
    drop(d);
    assert_eq!(drops.get(), 1);
    assert!(start.elapsed() < Duration::from_secs(1));

    // The last handle gone while an op is alive: the op keeps the ring up;
    // dropping it tears the driver down.
    let Some(d) = default_driver() else { return };
    let op = probed_timeout(&d, Duration::from_secs(10), &drops);
    d.wait(Some(Duration::ZERO)).unwrap();
    drop(d);
    assert_eq!(drops.get(), 1);
    drop(op);
    assert_eq!(drops.get(), 2);
}

fn multishot_timeout(
    d: &UringDriver,
    interval: Duration,
    count: u32,
    drops: &Rc<Cell<u32>>,
) -> crate::driver::uring::MultiOp<(Box<types::Timespec>, DropProbe)> {
    let resources = (Box::new(timespec(interval)), DropProbe(drops.clone()));
    // SAFETY: the SQE points at the boxed timespec (stable heap address,
    // only read by the kernel).
    unsafe {
        d.submit_multishot(resources, |(ts, _)| {
            opcode::Timeout::new(&**ts as *const types::Timespec)
                .count(count)
                .flags(types::TimeoutFlags::MULTISHOT)
                .build()
        })
    }
}

#[test]
fn multishot_op_yields_each_completion_then_ends() {
    let Some(d) = default_driver() else { return };
    let drops = Rc::new(Cell::new(0));
    let mut op = multishot_timeout(&d, Duration::from_millis(5), 3, &drops);
    let mut seen = Vec::new();
    while let Some((res, flags)) = block_on(&d, poll_fn(|cx| op.poll_next_cqe(cx))) {
        if seen.is_empty() && res.as_ref().err().and_then(io::Error::raw_os_error) == Some(libc::EINVAL) {
            println!("skipped: multishot timeouts need kernel 6.4+");
            return;
        }
        seen.push((res.err().and_then(|e| e.raw_os_error()), io_uring::cqueue::more(flags)));
    }
    assert_eq!(
        seen,
        vec![
            (Some(libc::ETIME), true),
            (Some(libc::ETIME), true),
            (Some(libc::ETIME), false)
        ]
    );
    assert!(op.is_finished());
    assert_eq!(d.slots_in_use(), 0);
    assert_eq!(drops.get(), 0);
    assert!(op.take_resources().is_some());
    assert_eq!(drops.get(), 1);
}

#[test]
fn dropping_a_live_multishot_op_cancels_it_and_frees_resources_once() {
    let Some(d) = default_driver() else { return };
    let drops = Rc::new(Cell::new(0));
    let mut op = multishot_timeout(&d, Duration::from_millis(5), 0, &drops);
    for _ in 0..2 {
        let item = block_on(&d, poll_fn(|cx| op.poll_next_cqe(cx)));
        let (res, flags) = item.expect("an infinite multishot timeout keeps going");
        if res.as_ref().err().and_then(io::Error::raw_os_error) == Some(libc::EINVAL) {
            println!("skipped: multishot timeouts need kernel 6.4+");
            return;
        }
        assert!(io_uring::cqueue::more(flags));
    }
    drop(op);
    assert_eq!(drops.get(), 0);
    drain_slots(&d, Duration::from_secs(2));
    assert_eq!(drops.get(), 1);
    d.wait(Some(Duration::from_millis(30))).unwrap();
    assert_eq!(drops.get(), 1);
}

thread_local! {
    static REENTER: RefCell<Option<UringDriver>> = const { RefCell::new(None) };
}

/// A waker that submits an op and drops it (cancel path) when woken.
struct ReentrantWaker(AtomicBool);

impl Wake for ReentrantWaker {
    fn wake(self: Arc<Self>) {
        self.0.store(true, Ordering::SeqCst);
        REENTER.with(|d| {
            if let Some(d) = &*d.borrow() {
                let nop = d.nop();
                let timeout = d.timeout(Duration::from_secs(10));
                drop(nop);
                drop(timeout);
            }
        });
    }
}

#[test]
fn wakers_may_reenter_the_driver() {
    let Some(d) = default_driver() else { return };
    REENTER.with(|r| *r.borrow_mut() = Some(d.clone()));
    let flag = Arc::new(ReentrantWaker(AtomicBool::new(false)));
    let waker = Waker::from(flag.clone());
    let mut op = d.nop();
    assert!(Pin::new(&mut op).poll(&mut Context::from_waker(&waker)).is_pending());
    while !flag.0.load(Ordering::SeqCst) {
        d.wait(None).unwrap();
    }
    REENTER.with(|r| *r.borrow_mut() = None);
    let (res, ()) = block_on(&d, op);
    res.unwrap();
    drain_slots(&d, Duration::from_secs(2));
}

/// An op on a closed driver: its slot is `Completed(ECANCELED)` and no SQE
/// was queued, so the slot can be tampered with safely.
fn closed_driver_probed_nop(drops: &Rc<Cell<u32>>) -> Option<(UringDriver, Op<DropProbe>)> {
    let d = default_driver()?;
    d.close();
    // SAFETY: a NOP references no memory (and is not even queued: closed).
    let op = unsafe { d.submit(DropProbe(drops.clone()), |_| opcode::Nop::new().build()) };
    Some((d, op))
}

#[test]
fn dropping_an_op_whose_slot_is_gone_leaks_its_resources() {
    // The "impossible" branch of `RawOp::drop`: nothing proves the kernel is
    // done with the resources, so they must be leaked, never freed.
    let drops = Rc::new(Cell::new(0));
    let Some((d, op)) = closed_driver_probed_nop(&drops) else {
        return;
    };
    assert_eq!(d.slots_in_use(), 1);
    let gone: Vec<_> = d.inner.core.borrow_mut().slots.drain().collect();
    drop(gone);
    // Debug builds report the broken invariant with a panic: catch it.
    let res = std::panic::catch_unwind(std::panic::AssertUnwindSafe(move || drop(op)));
    assert_eq!(res.is_err(), cfg!(debug_assertions));
    assert_eq!(drops.get(), 0, "resources of an op without a slot were freed");
}

#[test]
fn dropping_an_op_while_the_driver_is_borrowed_leaks_its_resources() {
    let drops = Rc::new(Cell::new(0));
    let Some((d, op)) = closed_driver_probed_nop(&drops) else {
        return;
    };
    {
        let _busy = d.inner.core.borrow();
        drop(op);
    }
    assert_eq!(drops.get(), 0, "resources dropped under a driver borrow were freed");
    // The op left its (completed) slot behind; free it so teardown does not
    // wait for a completion that will never come.
    let left: Vec<_> = d.inner.core.borrow_mut().slots.drain().collect();
    assert_eq!(left.len(), 1);
}
