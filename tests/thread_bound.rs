//! `ThreadBound`: `Send + Sync` on the type level, owner-thread-only at run
//! time (I/O errors, `get` errors, `Deref`/`poll` panics, leak on a foreign
//! drop). The I/O test runs on both backends.

mod common;

use ringloop::EventLoop;
use std::cell::Cell;
use std::future::poll_fn;
use std::io;
use std::pin::Pin;
use std::rc::Rc;

use futures_util::io::{AsyncReadExt, AsyncWriteExt};
use ringloop::net::{TcpListener, TcpStream};
use ringloop::{ThreadBound, WrongThread};

fn assert_send_sync<T: Send + Sync>(_: &T) {}

/// Runs `f` on another thread with the wrapper and gives it back.
fn on_other_thread<T, R: Send + 'static>(
    v: ThreadBound<T>,
    f: impl FnOnce(&mut ThreadBound<T>) -> R + Send + 'static,
) -> (ThreadBound<T>, R)
where
    T: 'static,
{
    std::thread::spawn(move || {
        let mut v = v;
        let r = f(&mut v);
        (v, r)
    })
    .join()
    .expect("other thread")
}

#[test]
fn owner_thread_access_and_foreign_errors() {
    let rc = Rc::new(Cell::new(1));
    let v = ThreadBound::new(rc.clone());
    assert_send_sync(&v);
    assert!(v.is_owner_thread());
    v.set(2);
    assert_eq!(v.get().unwrap().get(), 2);
    let (mut v, (owner, get_err, get_mut_err)) = on_other_thread(v, |v| {
        (
            v.is_owner_thread(),
            v.get().is_err(),
            v.get_mut().map(drop).unwrap_err(),
        )
    });
    assert!(!owner);
    assert!(get_err);
    let as_io: io::Error = get_mut_err.into();
    assert_eq!(as_io.kind(), io::ErrorKind::Other);
    assert!(get_mut_err.to_string().contains("off the thread"));
    // Back home it works again, and `into_inner` unwraps it.
    v.get_mut().unwrap().set(3);
    let inner = v.into_inner().expect("owner thread");
    assert_eq!(inner.get(), 3);
    assert_eq!(Rc::strong_count(&rc), 2);
}

#[test]
fn deref_off_thread_panics() {
    let v = ThreadBound::new(Rc::new(5));
    let (v, panicked) = on_other_thread(v, |v| {
        let v: &ThreadBound<Rc<i32>> = v;
        let v = std::panic::AssertUnwindSafe(v);
        std::panic::catch_unwind(move || ***v.0 + 1).is_err()
    });
    assert!(panicked);
    assert_eq!(**v, 5);
}

#[test]
fn into_inner_off_thread_gives_the_wrapper_back() {
    let v = ThreadBound::new(Rc::new(7));
    let (v, ()) = on_other_thread(v, |_| ());
    let back = std::thread::spawn(move || match v.into_inner() {
        Ok(_) => panic!("unwrapped on a foreign thread"),
        Err(v) => v,
    })
    .join()
    .unwrap();
    assert_eq!(*back.into_inner().unwrap(), 7);
}

#[test]
fn foreign_drop_leaks_instead_of_dropping() {
    let rc = Rc::new(());
    let v = ThreadBound::new(rc.clone());
    assert_eq!(Rc::strong_count(&rc), 2);
    std::thread::spawn(move || drop(v)).join().unwrap();
    // The clone was not dropped on the foreign thread (it would have
    // decremented a non-atomic count from there): it was leaked.
    assert_eq!(Rc::strong_count(&rc), 2);
    let v = ThreadBound::new(rc.clone());
    drop(v);
    assert_eq!(Rc::strong_count(&rc), 2);
}

#[test]
fn future_polls_on_owner_and_panics_elsewhere() {
    let lp = ringloop::EventLoop::new().unwrap();
    let rc = Rc::new(4);
    let fut = ThreadBound::new(async move { *rc * 2 });
    assert_send_sync(&fut);
    assert_eq!(lp.run_until_complete(fut).unwrap(), 8);

    let fut = Box::pin(ThreadBound::new(async { 1 }));
    let panicked = std::thread::spawn(move || {
        let mut fut = fut;
        let waker = std::task::Waker::noop();
        let mut cx = std::task::Context::from_waker(waker);
        let r = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            let _ = fut.as_mut().poll(&mut cx);
        }));
        r.is_err()
    })
    .join()
    .unwrap();
    assert!(panicked);
}

#[ringloop::test]
fn io_on_owner_thread_and_errors_elsewhere(lp: &EventLoop) {
    let l = TcpListener::bind("127.0.0.1:0".parse().unwrap()).unwrap();
    let addr = l.local_addr().unwrap();
    lp.run_until_complete(async move {
        let server = ringloop::spawn(async move {
            let (mut s, _) = l.accept().await.unwrap();
            let mut got = Vec::new();
            s.read_to_end(&mut got).await.unwrap();
            got
        });
        let tcp = TcpStream::connect_addr(addr).await.unwrap();
        let mut bound = ThreadBound::new(tcp);
        bound.write_all(b"from the owner").await.unwrap();
        bound.flush().await.unwrap();
        // Off the thread, every I/O method fails without touching the
        // stream.
        let (mut bound, errs) = std::thread::spawn(move || {
            let waker = std::task::Waker::noop();
            let mut cx = std::task::Context::from_waker(waker);
            let mut b = bound;
            let mut buf = [0u8; 4];
            let errs: Vec<io::Error> = [
                Pin::new(&mut b).poll_write(&mut cx, b"x"),
                Pin::new(&mut b).poll_read(&mut cx, &mut buf),
                Pin::new(&mut b).poll_flush(&mut cx).map_ok(|()| 0),
                Pin::new(&mut b).poll_close(&mut cx).map_ok(|()| 0),
            ]
            .into_iter()
            .map(|p| match p {
                std::task::Poll::Ready(Err(e)) => e,
                other => panic!("expected an error, got {other:?}"),
            })
            .collect();
            (b, errs)
        })
        .join()
        .unwrap();
        assert_eq!(errs.len(), 4);
        for e in &errs {
            assert_eq!(e.kind(), io::ErrorKind::Other);
            assert!(e.get_ref().is_some_and(|inner| inner.is::<WrongThread>()), "{e}");
        }
        bound.write_all(b", still working").await.unwrap();
        poll_fn(|cx| Pin::new(&mut bound).poll_close(cx)).await.unwrap();
        assert_eq!(server.await.unwrap(), b"from the owner, still working");
    })
    .unwrap();
}

use futures_util::io::{AsyncRead, AsyncWrite};
