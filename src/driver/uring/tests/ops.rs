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
    let (op, _) = unsafe {
        d.submit(
            vec![0u8; 8],
            |buf| opcode::Read::new(types::Fd(-1), buf.as_mut_ptr(), 8).build(),
            None,
        )
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
    while let Some((res, flags, _)) = block_on(&d, poll_fn(|cx| op.poll_next_cqe(cx))) {
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
        let (res, flags, _) = item.expect("an infinite multishot timeout keeps going");
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
    let (op, _) = unsafe { d.submit(DropProbe(drops.clone()), |_| opcode::Nop::new().build(), None) };
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

/// A driver whose stream pool is `n` buffers of 4 KiB, registered; `None`
/// (a skip, said on stdout) where the kernel cannot consume it
/// incrementally.
fn incremental_pool_driver(n: u16) -> Option<(UringDriver, Rc<crate::driver::uring::pool::Pool>)> {
    let d = try_driver(UringConfig {
        recv_pool: Some((n, 4096)),
        recv_pool_limit: 0,
        ..UringConfig::default()
    })?;
    match d.stream_pool() {
        Some(pool) if pool.is_incremental() => Some((d, pool)),
        _ => {
            println!("skipped: no incrementally consumed buffer ring (kernel before 6.12)");
            None
        }
    }
}

/// The next CQE of `op`: `(result, buffer id, offset, BUF_MORE)`.
fn next_pooled<T: 'static>(
    d: &UringDriver,
    op: &mut crate::driver::uring::MultiOp<T>,
) -> (io::Result<u32>, Option<u16>, u32, bool) {
    let (res, flags, off) = block_on(d, poll_fn(|cx| op.poll_next_cqe(cx))).expect("a completion");
    (
        res,
        io_uring::cqueue::buffer_select(flags),
        off,
        io_uring::cqueue::buffer_more(flags),
    )
}

/// A multishot receive on `fd` into the stream pool.
fn recv_multi(d: &UringDriver, fd: std::os::fd::RawFd) -> crate::driver::uring::MultiOp<()> {
    let group = crate::driver::uring::pool::STREAM_GROUP;
    // SAFETY: the SQE references no memory of ours (the kernel picks pool
    // buffers, which outlive the driver); the callers' sockets outlive it.
    unsafe { d.submit_multishot((), |_| opcode::RecvMulti::new(types::Fd(fd), group).build()) }
}

/// Writes `bytes` to `w` and returns the next CQE of `op` (as
/// [`next_pooled`]).
fn send_then_next<T: 'static>(
    d: &UringDriver,
    w: &mut std::os::unix::net::UnixStream,
    bytes: &[u8],
    op: &mut crate::driver::uring::MultiOp<T>,
) -> (io::Result<u32>, Option<u16>, u32, bool) {
    std::io::Write::write_all(w, bytes).unwrap();
    next_pooled(d, op)
}

/// Sends 20 bytes through `w` and checks `multi` received them at the start
/// of buffer 0 (it came back to the ring), then lets go of buffers 0 and 1
/// and of the receive.
fn expect_buffer_zero_back(
    d: &UringDriver,
    pool: &crate::driver::uring::pool::Pool,
    w: &mut std::os::unix::net::UnixStream,
    mut multi: crate::driver::uring::MultiOp<()>,
) {
    let (res, bid, off, _) = send_then_next(d, w, &[7; 20], &mut multi);
    assert_eq!((res.unwrap(), bid, off), (20, Some(0), 0), "buffer 0 did not come back");
    pool.release(1);
    pool.release(0);
    drop(multi);
    drain_slots(d, Duration::from_secs(2));
}

/// A pollable socket pair (the receive side non-blocking, as ringloop's are).
fn socket_pair() -> (std::os::unix::net::UnixStream, std::os::unix::net::UnixStream) {
    let (a, b) = std::os::unix::net::UnixStream::pair().unwrap();
    b.set_nonblocking(true).unwrap();
    (a, b)
}

#[test]
fn incremental_pool_offsets_follow_the_kernels_fill_order() {
    use std::os::fd::AsRawFd;
    let Some((d, pool)) = incremental_pool_driver(2) else {
        return;
    };
    // Two connections, each with a multishot receive into the pool.
    let ((mut a1, b1), (mut a2, b2)) = (socket_pair(), socket_pair());
    let (mut r1, mut r2) = (recv_multi(&d, b1.as_raw_fd()), recv_multi(&d, b2.as_raw_fd()));
    // Interleaved receives of both share buffer 0, each at the offset where
    // the previous one ended, in the order the kernel filled them.
    let mut expect = 0;
    for (i, len) in [100usize, 30, 7, 200].into_iter().enumerate() {
        let (w, r) = if i % 2 == 0 {
            (&mut a1, &mut r1)
        } else {
            (&mut a2, &mut r2)
        };
        let (res, bid, off, more) = send_then_next(&d, w, &vec![i as u8; len], r);
        assert_eq!((res.unwrap(), bid, off, more), (len as u32, Some(0), expect, true));
        // SAFETY: the kernel wrote `len` bytes at `off` in buffer 0, which
        // is held (not back in the ring) until released below.
        let got = unsafe { std::slice::from_raw_parts(pool.buf_ptr(0).add(off as usize), len) };
        assert!(got.iter().all(|&x| x == i as u8), "receive {i} at {off}");
        expect += len as u32;
    }
    for _ in 0..4 {
        pool.release(0);
    }
    drop((r1, r2));
    drain_slots(&d, Duration::from_secs(2));
}

/// A single-shot receive on `fd` selecting a stream-pool buffer, with
/// `flags` (e.g. `IOSQE_ASYNC`) added.
fn recv_selecting(
    d: &UringDriver,
    fd: std::os::fd::RawFd,
    flags: io_uring::squeue::Flags,
) -> crate::driver::uring::MultiOp<()> {
    let group = crate::driver::uring::pool::STREAM_GROUP;
    // SAFETY: no memory of ours in the SQE (the kernel picks a pool
    // buffer); the callers' sockets outlive the op.
    unsafe {
        d.submit_multishot((), |_| {
            opcode::Recv::new(types::Fd(fd), std::ptr::null_mut(), 0)
                .buf_group(group)
                .build()
                .flags(io_uring::squeue::Flags::BUFFER_SELECT | flags)
        })
    }
}

#[test]
fn incremental_pool_buffer_committed_whole_by_an_async_receive_comes_back() {
    use io_uring::squeue::Flags;
    use std::os::fd::AsRawFd;
    let Some((d, pool)) = incremental_pool_driver(2) else {
        return;
    };
    let ((mut a1, b1), (mut a2, b2)) = (socket_pair(), socket_pair());
    let mut multi = recv_multi(&d, b1.as_raw_fd());
    let (res, bid, off, more) = send_then_next(&d, &mut a1, &[1; 100], &mut multi);
    assert_eq!((res.unwrap(), bid, off, more), (100, Some(0), 0, true));
    // A receive forced to io-wq (IOSQE_ASYNC) commits the whole rest of the
    // buffer when it selects it: its CQE has data but no BUF_MORE, and the
    // buffer left the ring although it is not full.
    let (res, bid, off, more) = send_then_next(
        &d,
        &mut a2,
        &[2; 50],
        &mut recv_selecting(&d, b2.as_raw_fd(), Flags::ASYNC),
    );
    assert_eq!((res.unwrap(), bid, off, more), (50, Some(0), 100, false));
    // The next receive goes to buffer 1.
    let (res, bid, off, _) = send_then_next(&d, &mut a1, &[3; 10], &mut multi);
    assert_eq!((res.unwrap(), bid, off), (10, Some(1), 0));
    // Buffer 0 goes back once both of its holders let go; buffer 1 fills
    // up and retires, and the receive after that lands in buffer 0 again.
    pool.release(0);
    pool.release(0);
    pool.release(1);
    let (res, bid, off, more) = send_then_next(&d, &mut a1, &[4; 4086], &mut multi);
    assert_eq!((res.unwrap(), bid, off, more), (4086, Some(1), 10, false));
    expect_buffer_zero_back(&d, &pool, &mut a1, multi);
}

#[test]
fn incremental_pool_buffer_taken_by_an_async_receive_at_end_of_stream_comes_back() {
    use io_uring::squeue::Flags;
    use std::os::fd::AsRawFd;
    let Some((d, pool)) = incremental_pool_driver(2) else {
        return;
    };
    let (mut a1, b1) = socket_pair();
    let (closed, b2) = socket_pair();
    drop(closed);
    let mut multi = recv_multi(&d, b1.as_raw_fd());
    let (res, bid, off, _) = send_then_next(&d, &mut a1, &[1; 100], &mut multi);
    assert_eq!((res.unwrap(), bid, off), (100, Some(0), 0));
    // At end of stream an inline receive names no buffer (buffer 0 stays
    // at the ring's head) ...
    let (res, bid, _, _) = next_pooled(&d, &mut recv_selecting(&d, b2.as_raw_fd(), Flags::empty()));
    assert_eq!((res.unwrap(), bid), (0, None));
    // ... and one forced to io-wq names the buffer it took whole.
    let (res, bid, _, _) = next_pooled(&d, &mut recv_selecting(&d, b2.as_raw_fd(), Flags::ASYNC));
    assert_eq!((res.unwrap(), bid), (0, Some(0)));
    let (res, bid, off, more) = send_then_next(&d, &mut a1, &[2; 4096], &mut multi);
    assert_eq!((res.unwrap(), bid, off, more), (4096, Some(1), 0, false));
    // Both of buffer 0's holders let go: it is back, and is the next one.
    pool.release(0);
    pool.release(0);
    expect_buffer_zero_back(&d, &pool, &mut a1, multi);
}

#[test]
fn a_poisoned_incremental_pool_reports_unknown_offsets_and_keeps_its_buffers() {
    use crate::driver::uring::pool::UNKNOWN_OFFSET;
    use std::os::fd::AsRawFd;
    let Some((d, pool)) = incremental_pool_driver(2) else {
        return;
    };
    let (mut a, b) = socket_pair();
    let mut multi = recv_multi(&d, b.as_raw_fd());
    let (res, bid, off, _) = send_then_next(&d, &mut a, &[1; 100], &mut multi);
    assert_eq!((res.unwrap(), bid, off), (100, Some(0), 0));
    // What the driver does when the kernel reports dropped CQEs.
    pool.poison();
    let (res, bid, off, _) = send_then_next(&d, &mut a, &[2; 50], &mut multi);
    assert_eq!((res.unwrap(), bid, off), (50, Some(0), UNKNOWN_OFFSET));
    // Releasing does not put buffer 0 back (the kernel may still fill it):
    // once the kernel used up both buffers, the ring is empty.
    pool.release(0);
    pool.release(0);
    let (res, bid, off, more) = send_then_next(&d, &mut a, &[3; 4096 - 150], &mut multi);
    assert_eq!(
        (res.unwrap(), bid, off, more),
        (4096 - 150, Some(0), UNKNOWN_OFFSET, false)
    );
    pool.release(0);
    let (res, bid, _, _) = send_then_next(&d, &mut a, &[4; 4096], &mut multi);
    assert_eq!((res.unwrap(), bid), (4096, Some(1)));
    pool.release(1);
    let (res, _, _, _) = send_then_next(&d, &mut a, &[5; 10], &mut multi);
    assert_eq!(res.unwrap_err().raw_os_error(), Some(libc::ENOBUFS));
    drop(multi);
    drain_slots(&d, Duration::from_secs(2));
}

/// `submit_polled` (how sends and reads start from their first poll) queues
/// the operation already waiting for the polling task: `Pending` without a
/// look at the slot, the completion wakes that task, the next poll has the
/// result; on a closed driver the result (`ECANCELED`) is there at once.
#[test]
fn an_op_submitted_from_a_poll_waits_for_that_task() {
    use std::io::Read;

    use crate::driver::ops::{Send, submit_polled};
    use crate::driver::uring::op::Lifecycle;

    let Some(d) = default_driver() else {
        return;
    };
    let drv = crate::driver::Driver::Uring(d.clone());
    let (a, mut b) = std::os::unix::net::UnixStream::pair().unwrap();
    let fd = crate::driver::fd::SharedFd::new(a.into(), &drv).unwrap();
    let flag = Arc::new(FlagWaker(AtomicBool::new(false)));
    let waker = Waker::from(flag.clone());
    let mut cx = Context::from_waker(&waker);

    let (mut sent, first) = submit_polled(&drv, Send::new(&fd, b"ping".to_vec(), 0), &mut cx);
    assert!(first.is_pending());
    assert_eq!(d.slots_in_use(), 1);
    assert!(
        d.inner
            .core
            .borrow()
            .slots
            .iter()
            .all(|(_, s)| matches!(s, Lifecycle::Waiting(_))),
        "the new slot waits for the polling task"
    );
    let deadline = Instant::now() + Duration::from_secs(5);
    while !flag.0.load(Ordering::SeqCst) {
        assert!(Instant::now() < deadline, "the completion never woke the task");
        d.wait(Some(Duration::from_millis(100))).unwrap();
    }
    let Poll::Ready((res, buf)) = Pin::new(&mut sent).poll(&mut cx) else {
        panic!("woken but not complete");
    };
    assert_eq!(res.unwrap(), 4);
    assert_eq!(buf, b"ping");
    let mut got = [0u8; 4];
    b.read_exact(&mut got).unwrap();
    assert_eq!(&got, b"ping");
    assert_eq!(d.slots_in_use(), 0);

    d.close();
    let (_sent, first) = submit_polled(&drv, Send::new(&fd, b"late".to_vec(), 0), &mut cx);
    match first {
        Poll::Ready((Err(e), buf)) => {
            assert_eq!(e.raw_os_error(), Some(libc::ECANCELED));
            assert_eq!(buf, b"late");
        }
        other => panic!("a closed driver answers at once, got {:?}", other.map(|(r, _)| r)),
    }
    assert_eq!(d.slots_in_use(), 0);
}
