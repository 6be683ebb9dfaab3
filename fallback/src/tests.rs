//! The reactor's unit tests (edge and one-shot modes, Unix sockets).

use super::*;
use std::io::{self, Read, Write};
use std::os::fd::AsRawFd;
use std::os::unix::net::UnixStream;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::task::{Context, Poll, Wake, Waker};
use std::time::{Duration, Instant};

struct Count(AtomicUsize);
impl Wake for Count {
    fn wake(self: Arc<Self>) {
        self.0.fetch_add(1, Ordering::SeqCst);
    }
}

fn counter() -> (Arc<Count>, Waker) {
    let c = Arc::new(Count(AtomicUsize::new(0)));
    let w = Waker::from(c.clone());
    (c, w)
}

fn woken(c: &Count) -> usize {
    c.0.load(Ordering::SeqCst)
}

/// A non-blocking socket pair, `a` registered with `r`.
fn registered_pair(r: &Reactor) -> (UnixStream, UnixStream, usize) {
    let (a, b) = UnixStream::pair().unwrap();
    a.set_nonblocking(true).unwrap();
    // SAFETY: every test deregisters (or drops the reactor) before `a`.
    let key = unsafe { r.register(a.as_raw_fd()).unwrap() };
    (a, b, key)
}

/// Edge mode, where this build has it (not under the poll(2) backend).
fn edge_reactor() -> Option<Reactor> {
    let r = Reactor::new().unwrap();
    if r.is_edge_triggered() {
        Some(r)
    } else {
        eprintln!("SKIP: no edge-triggered mode on the {} backend", backend_name());
        None
    }
}

/// Fills `a`'s send buffer (the peer does not read) until `EAGAIN`.
fn fill(a: &mut UnixStream) -> usize {
    let chunk = [7u8; 4096];
    let mut total = 0;
    loop {
        match a.write(&chunk) {
            Ok(n) => total += n,
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => return total,
            Err(e) => panic!("write: {e}"),
        }
    }
}

#[test]
fn edge_mode_is_used_where_supported() {
    let r = Reactor::new().unwrap();
    if cfg!(target_os = "linux") {
        // Direct epoll is edge-triggered; `polling`'s poll(2) cannot be.
        assert_eq!(r.is_edge_triggered(), !cfg!(polling_test_poll_backend));
    }
    assert!(!Reactor::new_oneshot().unwrap().is_edge_triggered());
}

#[test]
fn notify_from_another_thread_wakes_a_blocked_wait() {
    let r = Reactor::new().unwrap();
    let n = r.notifier();
    let t = std::thread::spawn(move || {
        std::thread::sleep(Duration::from_millis(50));
        n.notify();
    });
    let start = Instant::now();
    r.wait(Some(Duration::from_secs(10))).unwrap();
    assert!(start.elapsed() < Duration::from_secs(5));
    t.join().unwrap();
}

#[test]
fn oneshot_readable_source_wakes_its_waiter_once_armed() {
    let r = Reactor::new_oneshot().unwrap();
    let (_a, mut b, key) = registered_pair(&r);
    let (count, waker) = counter();
    let mut cx = Context::from_waker(&waker);
    assert!(
        r.is_ready(key, Direction::Read),
        "one-shot mode always tries the syscall"
    );
    assert!(r.poll_ready(key, Direction::Read, &mut cx).is_pending());
    assert_eq!(r.wait(Some(Duration::ZERO)).unwrap(), 0);
    b.write_all(b"x").unwrap();
    assert_eq!(r.wait(Some(Duration::from_secs(5))).unwrap(), 1);
    assert_eq!(woken(&count), 1);
    // Already-readable data is reported as soon as interest is re-armed.
    assert!(r.poll_ready(key, Direction::Read, &mut cx).is_pending());
    assert_eq!(r.wait(Some(Duration::from_secs(5))).unwrap(), 1);
    r.deregister(key).unwrap();
    assert_eq!(r.registered(), 0);
}

#[test]
fn every_waiter_of_a_direction_is_woken_and_a_cancelled_one_is_not() {
    for r in [Some(Reactor::new_oneshot().unwrap()), edge_reactor()]
        .into_iter()
        .flatten()
    {
        let (_a, mut b, key) = registered_pair(&r);
        // Edge mode: consume the registration's report, then act as if a
        // read just said EAGAIN.
        r.wait(Some(Duration::ZERO)).unwrap();
        r.clear_ready(key, Direction::Read);
        let counts: Vec<(Arc<Count>, Waker)> = (0..3).map(|_| counter()).collect();
        let mut tokens = [None, None, None];
        for ((_, waker), t) in counts.iter().zip(&mut tokens) {
            let mut cx = Context::from_waker(waker);
            assert!(r.poll_ready_tracked(key, Direction::Read, t, &mut cx).is_pending());
            // Polling again with the same token refreshes, not duplicates.
            assert!(r.poll_ready_tracked(key, Direction::Read, t, &mut cx).is_pending());
        }
        // An untracked waiter too (deduplicated by `will_wake`).
        let (untracked, waker) = counter();
        let mut cx = Context::from_waker(&waker);
        assert!(r.poll_ready(key, Direction::Read, &mut cx).is_pending());
        assert!(r.poll_ready(key, Direction::Read, &mut cx).is_pending());
        r.cancel_wait(key, Direction::Read, tokens[1].unwrap());
        b.write_all(b"x").unwrap();
        assert_eq!(r.wait(Some(Duration::from_secs(5))).unwrap(), 3, "{r:?}");
        let counts: Vec<usize> = counts.iter().map(|(c, _)| woken(c)).collect();
        assert_eq!(counts, [1, 0, 1]);
        assert_eq!(woken(&untracked), 1);
        // Tokens of woken waiters are stale: cancelling them is a no-op.
        r.cancel_wait(key, Direction::Read, tokens[0].unwrap());
        r.deregister(key).unwrap();
    }
}

#[test]
fn deregister_wakes_the_waiters_of_both_directions() {
    for r in [Some(Reactor::new_oneshot().unwrap()), edge_reactor()]
        .into_iter()
        .flatten()
    {
        let (mut a, _b, key) = registered_pair(&r);
        fill(&mut a);
        r.wait(Some(Duration::ZERO)).unwrap();
        r.clear_ready(key, Direction::Read);
        r.clear_ready(key, Direction::Write);
        let (rc, rw) = counter();
        let (wc, ww) = counter();
        let (mut rt, mut wt) = (None, None);
        let mut cx = Context::from_waker(&rw);
        assert!(
            r.poll_ready_tracked(key, Direction::Read, &mut rt, &mut cx)
                .is_pending()
        );
        let mut cx = Context::from_waker(&ww);
        assert!(
            r.poll_ready_tracked(key, Direction::Write, &mut wt, &mut cx)
                .is_pending()
        );
        assert_eq!(r.wait(Some(Duration::ZERO)).unwrap(), 0);
        r.deregister(key).unwrap();
        assert_eq!((woken(&rc), woken(&wc)), (1, 1));
        // Unknown keys: waiting is an error, the flag query says "try".
        assert!(matches!(
            r.poll_ready(key, Direction::Read, &mut cx),
            Poll::Ready(Err(_))
        ));
        assert!(r.is_ready(key, Direction::Read));
    }
}

#[test]
fn edge_new_source_starts_ready_and_poll_consumes_the_flag() {
    let Some(r) = edge_reactor() else { return };
    let (_a, _b, key) = registered_pair(&r);
    assert!(r.is_ready(key, Direction::Read));
    assert!(r.is_ready(key, Direction::Write));
    let (count, waker) = counter();
    let mut cx = Context::from_waker(&waker);
    // Believed ready: answered at once, flag consumed.
    assert!(matches!(
        r.poll_ready(key, Direction::Read, &mut cx),
        Poll::Ready(Ok(()))
    ));
    assert!(!r.is_ready(key, Direction::Read));
    assert!(r.is_ready(key, Direction::Write), "directions are independent");
    assert!(r.poll_ready(key, Direction::Read, &mut cx).is_pending());
    assert_eq!(woken(&count), 0);
    r.deregister(key).unwrap();
}

#[test]
fn edge_event_with_nobody_waiting_is_remembered() {
    let Some(r) = edge_reactor() else { return };
    let (mut a, mut b, key) = registered_pair(&r);
    r.wait(Some(Duration::ZERO)).unwrap();
    // A read said EAGAIN; nobody waits yet.
    r.clear_ready(key, Direction::Read);
    assert!(!r.is_ready(key, Direction::Read));
    b.write_all(b"hello").unwrap();
    // The event is processed with no waiter: nothing to wake...
    assert_eq!(r.wait(Some(Duration::from_secs(5))).unwrap(), 0);
    // ...but the readiness is kept, so a later wait does not block.
    assert!(r.is_ready(key, Direction::Read));
    let (count, waker) = counter();
    let mut cx = Context::from_waker(&waker);
    let mut token = None;
    assert!(matches!(
        r.poll_ready_tracked(key, Direction::Read, &mut token, &mut cx),
        Poll::Ready(Ok(()))
    ));
    assert_eq!(token, None, "no waiter was registered");
    let mut buf = [0u8; 16];
    assert_eq!(a.read(&mut buf).unwrap(), 5);
    assert_eq!(woken(&count), 0);
    r.deregister(key).unwrap();
}

#[test]
fn edge_cleared_readiness_stays_pending_until_a_new_event() {
    let Some(r) = edge_reactor() else { return };
    let (mut a, mut b, key) = registered_pair(&r);
    b.write_all(b"abc").unwrap();
    assert_eq!(r.wait(Some(Duration::from_secs(5))).unwrap(), 0);
    assert!(r.is_ready(key, Direction::Read));
    let mut buf = [0u8; 2];
    assert_eq!(a.read(&mut buf).unwrap(), 2);
    // Pretend the (unread) rest is not there: cleared readiness with
    // data pending is not reported again, because the source is
    // edge-triggered and never re-armed. (This is why only `EAGAIN` and
    // draining short reads may clear it.)
    r.clear_ready(key, Direction::Read);
    let (count, waker) = counter();
    let mut cx = Context::from_waker(&waker);
    let mut token = None;
    assert!(
        r.poll_ready_tracked(key, Direction::Read, &mut token, &mut cx)
            .is_pending()
    );
    assert!(token.is_some());
    assert_eq!(r.wait(Some(Duration::from_millis(20))).unwrap(), 0);
    assert_eq!(woken(&count), 0);
    assert!(!r.is_ready(key, Direction::Read));
    // Re-polling refreshes the same waiter.
    let first = token;
    assert!(
        r.poll_ready_tracked(key, Direction::Read, &mut token, &mut cx)
            .is_pending()
    );
    assert_eq!(token, first);
    // A new edge (more data) wakes it and sets the flag.
    b.write_all(b"d").unwrap();
    assert_eq!(r.wait(Some(Duration::from_secs(5))).unwrap(), 1);
    assert_eq!(woken(&count), 1);
    assert!(r.is_ready(key, Direction::Read));
    let mut buf = [0u8; 8];
    assert_eq!(a.read(&mut buf).unwrap(), 2);
    assert_eq!(&buf[..2], b"cd");
    // The woken waiter's token is stale now.
    r.cancel_wait(key, Direction::Read, token.unwrap());
    r.deregister(key).unwrap();
}

#[test]
fn edge_wakes_each_direction_by_its_own_events() {
    let Some(r) = edge_reactor() else { return };
    let (mut a, mut b, key) = registered_pair(&r);
    let sent = fill(&mut a);
    r.wait(Some(Duration::ZERO)).unwrap();
    // Both directions said EAGAIN (nothing to read, send buffer full).
    r.clear_ready(key, Direction::Read);
    r.clear_ready(key, Direction::Write);
    let (rc, rw) = counter();
    let (wc, ww) = counter();
    let (mut rt, mut wt) = (None, None);
    assert!(
        r.poll_ready_tracked(key, Direction::Read, &mut rt, &mut Context::from_waker(&rw))
            .is_pending()
    );
    assert!(
        r.poll_ready_tracked(key, Direction::Write, &mut wt, &mut Context::from_waker(&ww))
            .is_pending()
    );
    // Data for `a`: the reader wakes; the writer keeps waiting (its send
    // buffer is still full, so the event does not report writability).
    b.write_all(b"ping").unwrap();
    assert_eq!(r.wait(Some(Duration::from_secs(5))).unwrap(), 1);
    assert_eq!((woken(&rc), woken(&wc)), (1, 0));
    assert!(r.is_ready(key, Direction::Read));
    assert!(!r.is_ready(key, Direction::Write));
    // The peer drains what `a` sent: send space frees up, the writer wakes.
    b.set_nonblocking(true).unwrap();
    let mut got = 0;
    let mut buf = vec![0u8; 64 * 1024];
    while got < sent {
        match b.read(&mut buf) {
            Ok(n) => got += n,
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                r.wait(Some(Duration::from_millis(10))).unwrap();
            }
            Err(e) => panic!("read: {e}"),
        }
    }
    let deadline = Instant::now() + Duration::from_secs(5);
    while woken(&wc) == 0 && Instant::now() < deadline {
        r.wait(Some(Duration::from_millis(50))).unwrap();
    }
    assert_eq!((woken(&rc), woken(&wc)), (1, 1));
    assert!(r.is_ready(key, Direction::Write));
    r.deregister(key).unwrap();
}

#[test]
fn edge_short_read_clears_until_a_hang_up_was_seen() {
    let Some(r) = edge_reactor() else { return };
    let (_a, mut b, key) = registered_pair(&r);
    b.write_all(b"x").unwrap();
    r.wait(Some(Duration::from_secs(5))).unwrap();
    assert!(r.is_ready(key, Direction::Read));
    r.note_short_read(key);
    assert!(!r.is_ready(key, Direction::Read), "a draining short read clears");
    // The peer hangs up: reported (RDHUP), and from then on short reads
    // prove nothing (the end of stream stays readable).
    drop(b);
    r.wait(Some(Duration::from_secs(5))).unwrap();
    assert!(r.is_ready(key, Direction::Read));
    r.note_short_read(key);
    assert!(r.is_ready(key, Direction::Read));
    // EAGAIN still clears.
    r.clear_ready(key, Direction::Read);
    assert!(!r.is_ready(key, Direction::Read));
    r.deregister(key).unwrap();
}

#[test]
fn oneshot_clearing_calls_change_nothing() {
    let r = Reactor::new_oneshot().unwrap();
    let (_a, _b, key) = registered_pair(&r);
    r.clear_ready(key, Direction::Read);
    r.note_short_read(key);
    assert!(r.is_ready(key, Direction::Read));
    let (_c, waker) = counter();
    assert!(
        r.poll_ready(key, Direction::Write, &mut Context::from_waker(&waker))
            .is_pending()
    );
    r.deregister(key).unwrap();
}

#[test]
fn poll_ready_on_unknown_key_is_an_error() {
    let r = Reactor::new().unwrap();
    let (_c, waker) = counter();
    let mut cx = Context::from_waker(&waker);
    match r.poll_ready(42, Direction::Write, &mut cx) {
        Poll::Ready(Err(e)) => assert_eq!(e.kind(), io::ErrorKind::InvalidInput),
        other => panic!("expected an error, got {other:?}"),
    }
}
