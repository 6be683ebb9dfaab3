//! Signal streams on both backends.
//!
//! The tests signal their own process (`kill(getpid(), …)`), never with
//! SIGINT (that stays the harness's). Both variants of a test run at the
//! same time in this process, so tests that must not see each other's
//! deliveries use a real-time signal of their own (per test and backend);
//! the others accept extra deliveries (a stream may coalesce them anyway).
//! Tests that count deliveries send them to their own thread (`raise(3)`),
//! so the handler has run before the next step.

mod common;

use futures_util::StreamExt;
use std::io::ErrorKind;
use std::sync::{Arc, Barrier};
use std::time::Duration;

use ringloop::signal::{self, SignalKind};
use ringloop::{DriverKind, EventLoop, sleep, spawn, timeout};

const PATIENCE: Duration = Duration::from_secs(20);

/// Sends `sig` to the process (`kill(getpid(), sig)`): the kernel picks the
/// thread that runs the handler, possibly a little later.
fn raise(sig: libc::c_int) {
    // SAFETY: kill(2) with our own pid; every signal used here has a
    // handler installed by the stream the test created first.
    assert_eq!(unsafe { libc::kill(libc::getpid(), sig) }, 0);
}

/// Sends `sig` to this thread (`raise(3)`): the handler has run when this
/// returns, so tests can reason about exactly which deliveries happened.
fn raise_here(sig: libc::c_int) {
    // SAFETY: raise(3) on this thread; the signal has our handler (see above).
    assert_eq!(unsafe { libc::raise(sig) }, 0);
}

/// A real-time signal used by exactly one test variant: `slot` numbers the
/// test, the backend picks one of two.
fn own_signal(lp: &EventLoop, slot: i32) -> libc::c_int {
    let sig = libc::SIGRTMIN() + 2 * slot + i32::from(lp.driver_kind() == DriverKind::Fallback);
    assert!(sig <= libc::SIGRTMAX(), "out of real-time signals");
    sig
}

#[ringloop::test]
fn a_stream_receives_sigusr1_sent_to_the_process(lp: &EventLoop) {
    lp.run_until_complete(async {
        let mut sigs = signal::signal(SignalKind::user_defined1()).unwrap();
        assert_eq!(sigs.kind(), SignalKind::user_defined1());
        raise(libc::SIGUSR1);
        assert_eq!(timeout(PATIENCE, sigs.recv()).await.expect("no SIGUSR1"), Some(()));
    })
    .unwrap();
}

#[ringloop::test]
fn a_signal_sent_from_another_thread_wakes_the_waiting_loop(lp: &EventLoop) {
    lp.run_until_complete(async {
        let mut sigs = signal::signal(SignalKind::user_defined2()).unwrap();
        let sender = std::thread::spawn(|| {
            std::thread::sleep(Duration::from_millis(50));
            raise(libc::SIGUSR2);
        });
        assert_eq!(timeout(PATIENCE, sigs.recv()).await.expect("no SIGUSR2"), Some(()));
        sender.join().unwrap();
    })
    .unwrap();
}

#[ringloop::test]
fn every_stream_of_a_signal_sees_each_delivery(lp: &EventLoop) {
    let sig = own_signal(lp, 0);
    lp.run_until_complete(async move {
        let mut a = signal::signal(SignalKind::from_raw(sig)).unwrap();
        let mut b = signal::signal(SignalKind::from_raw(sig)).unwrap();
        let waiter = spawn(async move { timeout(PATIENCE, b.recv()).await.expect("b missed it") });
        sleep(Duration::from_millis(10)).await;
        raise(sig);
        assert_eq!(timeout(PATIENCE, a.recv()).await.expect("a missed it"), Some(()));
        assert_eq!(waiter.await.unwrap(), Some(()));
    })
    .unwrap();
}

#[ringloop::test]
fn deliveries_before_a_stream_existed_are_not_reported(lp: &EventLoop) {
    let sig = own_signal(lp, 1);
    lp.run_until_complete(async move {
        let mut first = signal::signal(SignalKind::from_raw(sig)).unwrap();
        raise_here(sig);
        assert_eq!(timeout(PATIENCE, first.recv()).await.unwrap(), Some(()));
        // Created after that delivery: nothing to report yet.
        let mut late = signal::signal(SignalKind::from_raw(sig)).unwrap();
        assert!(timeout(Duration::from_millis(50), late.recv()).await.is_err());
        raise_here(sig);
        assert_eq!(timeout(PATIENCE, late.recv()).await.unwrap(), Some(()));
        assert_eq!(timeout(PATIENCE, first.recv()).await.unwrap(), Some(()));
    })
    .unwrap();
}

#[ringloop::test]
fn deliveries_between_polls_are_coalesced_and_later_ones_still_come(lp: &EventLoop) {
    let sig = own_signal(lp, 2);
    lp.run_until_complete(async move {
        let mut sigs = signal::signal(SignalKind::from_raw(sig)).unwrap();
        for _ in 0..3 {
            raise_here(sig);
        }
        assert_eq!(timeout(PATIENCE, sigs.recv()).await.unwrap(), Some(()));
        // The three (delivered before the first recv returned) are one item.
        assert!(timeout(Duration::from_millis(50), sigs.recv()).await.is_err());
        for _ in 0..3 {
            raise_here(sig);
            assert_eq!(timeout(PATIENCE, sigs.recv()).await.unwrap(), Some(()));
        }
    })
    .unwrap();
}

#[ringloop::test]
fn a_stream_is_a_futures_stream(lp: &EventLoop) {
    let sig = own_signal(lp, 3);
    lp.run_until_complete(async move {
        let mut sigs = signal::signal(SignalKind::from_raw(sig)).unwrap();
        raise(sig);
        let item = timeout(PATIENCE, sigs.next()).await.unwrap();
        assert_eq!(item, Some(()));
    })
    .unwrap();
}

#[ringloop::test]
fn streams_on_two_loops_in_two_threads_both_receive_one_signal(lp: &EventLoop) {
    let sig = own_signal(lp, 4);
    let choice = common::choice_of(lp);
    let ready = Arc::new(Barrier::new(2));
    let other = {
        let ready = ready.clone();
        std::thread::spawn(move || {
            let lp = EventLoop::builder().driver(choice).build().unwrap();
            lp.run_until_complete(async move {
                let mut sigs = signal::signal(SignalKind::from_raw(sig)).unwrap();
                ready.wait();
                timeout(PATIENCE, sigs.recv()).await
            })
            .unwrap()
        })
    };
    lp.run_until_complete(async move {
        let mut sigs = signal::signal(SignalKind::from_raw(sig)).unwrap();
        ready.wait();
        raise(sig);
        assert_eq!(
            timeout(PATIENCE, sigs.recv()).await.expect("this loop missed it"),
            Some(())
        );
    })
    .unwrap();
    assert_eq!(other.join().unwrap().expect("the other loop missed it"), Some(()));
}

#[ringloop::test]
fn a_dropped_stream_does_not_disturb_the_others(lp: &EventLoop) {
    let sig = own_signal(lp, 5);
    lp.run_until_complete(async move {
        let mut keep = signal::signal(SignalKind::from_raw(sig)).unwrap();
        let mut gone = signal::signal(SignalKind::from_raw(sig)).unwrap();
        // Arm `gone`'s wait on the pipe, then drop it mid-flight.
        assert!(timeout(Duration::from_millis(10), gone.recv()).await.is_err());
        drop(gone);
        raise(sig);
        assert_eq!(timeout(PATIENCE, keep.recv()).await.unwrap(), Some(()));
    })
    .unwrap();
}

#[ringloop::test]
fn unhandleable_and_invalid_signals_are_input_errors(lp: &EventLoop) {
    lp.run_until_complete(async {
        for sig in [
            libc::SIGKILL,
            libc::SIGSTOP,
            libc::SIGSEGV,
            libc::SIGILL,
            libc::SIGFPE,
            0,
            -1,
            1000,
        ] {
            let err = signal::signal(SignalKind::from_raw(sig)).unwrap_err();
            assert_eq!(err.kind(), ErrorKind::InvalidInput, "{sig}: {err}");
        }
    })
    .unwrap();
}

#[test]
fn a_signal_stream_needs_an_event_loop() {
    let err = signal::signal(SignalKind::user_defined1()).unwrap_err();
    assert!(err.to_string().contains("no event loop"), "{err}");
}

#[test]
fn signal_kinds_name_their_signals() {
    assert_eq!(SignalKind::interrupt().as_raw_value(), libc::SIGINT);
    assert_eq!(SignalKind::terminate().as_raw_value(), libc::SIGTERM);
    assert_eq!(SignalKind::hangup().as_raw_value(), libc::SIGHUP);
    assert_eq!(SignalKind::child().as_raw_value(), libc::SIGCHLD);
    assert_eq!(SignalKind::from(libc::SIGUSR2), SignalKind::user_defined2());
    assert_eq!(format!("{:?}", SignalKind::user_defined1()), "SIGUSR1");
    assert_eq!(format!("{:?}", SignalKind::from_raw(40)), "SignalKind(40)");
}
