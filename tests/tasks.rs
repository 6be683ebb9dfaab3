//! Tasks (ASYNCIO-SEMANTICS §4–5), on both backends.

mod common;

use common::Log;
use ringloop::EventLoop;
use ringloop::{TaskError, sleep, spawn, yield_now};
use std::cell::Cell;
use std::rc::Rc;
use std::time::Duration;

#[ringloop::test(virtual_clock)]
fn a_task_body_does_not_start_synchronously(lp: &EventLoop) {
    let log = Log::new();
    let l = log.clone();
    lp.run_until_complete(async move {
        let l2 = l.clone();
        let t = spawn(async move { l2.push("body") });
        l.push("after spawn");
        t.await.unwrap();
    })
    .unwrap();
    assert_eq!(log.get(), ["after spawn", "body"]);
}

#[ringloop::test(virtual_clock)]
fn awaiting_a_task_gives_its_value(lp: &EventLoop) {
    let v = lp
        .run_until_complete(async {
            let t = spawn(async {
                sleep(Duration::from_secs(2)).await;
                "紅燒肉"
            });
            t.await
        })
        .unwrap();
    assert_eq!(v.unwrap(), "紅燒肉");
}

#[ringloop::test(virtual_clock)]
fn a_task_cancelled_before_its_first_step_never_runs(lp: &EventLoop) {
    let ran = Rc::new(Cell::new(false));
    let r = ran.clone();
    let (res, cancel_again) = lp
        .run_until_complete(async move {
            let t = spawn(async move { r.set(true) });
            assert!(t.cancel());
            let again = t.cancel(); // still pending: true again (3.11)
            (t.await, again)
        })
        .unwrap();
    assert!(matches!(res, Err(TaskError::Cancelled)));
    assert!(cancel_again);
    assert!(!ran.get());
}

#[ringloop::test(virtual_clock)]
fn cancel_drops_the_future_at_the_next_scheduling_point(lp: &EventLoop) {
    let log = Log::new();
    let l = log.clone();
    lp.run_until_complete(async move {
        struct Guard(Log);
        impl Drop for Guard {
            fn drop(&mut self) {
                self.0.push("future dropped");
            }
        }
        let l2 = l.clone();
        let t = spawn(async move {
            let _g = Guard(l2.clone());
            l2.push("started");
            sleep(Duration::from_secs(10)).await;
            l2.push("never");
        });
        yield_now().await;
        assert!(!t.is_done());
        assert!(t.cancel());
        l.push("cancel requested");
        assert!(!t.is_cancelled(), "cancelled() stays false until the future is dropped");
        let r = t.finished();
        r.await;
        assert!(t.is_cancelled());
        assert!(!t.cancel(), "cancel on a done task returns false");
        assert!(matches!(t.await, Err(TaskError::Cancelled)));
    })
    .unwrap();
    assert_eq!(log.get(), ["started", "cancel requested", "future dropped"]);
}

#[ringloop::test(virtual_clock)]
fn cancel_returns_false_once_done(lp: &EventLoop) {
    lp.run_until_complete(async {
        let t = spawn(async { 1 });
        t.finished().await;
        assert!(t.is_done());
        assert!(!t.cancel());
        assert!(!t.is_cancelled());
        assert_eq!(t.take_result().unwrap().unwrap(), 1);
        assert!(t.take_result().is_none());
    })
    .unwrap();
}

#[ringloop::test(virtual_clock)]
fn done_callbacks_are_never_synchronous_and_run_in_order(lp: &EventLoop) {
    let log = Log::new();
    let l = log.clone();
    lp.run_until_complete(async move {
        let t = spawn(async { 3 });
        let (a, b) = (l.clone(), l.clone());
        t.add_done_callback(move |r| a.push(format!("cb1 {}", r.is_done())));
        t.add_done_callback(move |_| b.push("cb2"));
        t.finished().await;
        l.push("task done seen");
        // Already done: still scheduled, not called synchronously.
        let c = l.clone();
        t.add_done_callback(move |_| c.push("cb3"));
        l.push("after add on done task");
        yield_now().await;
        yield_now().await;
    })
    .unwrap();
    let got = log.get();
    assert_eq!(got[2..], ["task done seen", "after add on done task", "cb3"]);
    assert_eq!(got[..2], ["cb1 true", "cb2"]);
}

#[ringloop::test(virtual_clock)]
fn done_callback_with_bound_arguments(lp: &EventLoop) {
    // The tutorial's `partial(callback, url)`.
    let log = Log::new();
    let l = log.clone();
    let t = lp.create_task(async { "紅燒肉" }).unwrap();
    let url = String::from("http://www.imooc.com");
    t.add_done_callback(move |_| l.push(format!("{url} send email")));
    let v = lp.run_until_complete(t).unwrap().unwrap();
    assert_eq!(v, "紅燒肉");
    assert_eq!(log.get(), ["http://www.imooc.com send email"]);
}

#[ringloop::test(virtual_clock)]
fn a_panicking_task_does_not_take_the_loop_down(lp: &EventLoop) {
    let reports = Rc::new(Cell::new(0));
    let r = reports.clone();
    lp.set_exception_handler(Some(move |_: &ringloop::ExceptionContext| r.set(r.get() + 1)));
    let res = lp
        .run_until_complete(async {
            let bad = spawn(async { panic!("task boom") });
            let good = spawn(async { 2 });
            let e = bad.await.unwrap_err();
            assert_eq!(e.panic_message(), Some("task boom"));
            good.await.unwrap()
        })
        .unwrap();
    assert_eq!(res, 2);
    assert_eq!(reports.get(), 0, "a retrieved panic is not reported");
}

#[ringloop::test(virtual_clock)]
fn names_ids_current_task_and_all_tasks(lp: &EventLoop) {
    lp.run_until_complete(async {
        let me = ringloop::current_task().expect("inside a task");
        assert!(me.name().starts_with("Task-"));
        let a = spawn(async { sleep(Duration::from_secs(1)).await });
        let b = spawn(async { sleep(Duration::from_secs(1)).await }).with_name("worker");
        assert!(b.id() > a.id());
        assert_eq!(a.name(), format!("Task-{}", a.id()));
        assert_eq!(b.name(), "worker");
        let all = ringloop::all_tasks();
        assert_eq!(all.len(), 3);
        assert!(all.contains(&me) && all.contains(&a.as_ref()) && all.contains(&b.as_ref()));
        let inner = spawn(async { ringloop::current_task().unwrap().name() }).with_name("inner");
        assert_eq!(inner.await.unwrap(), "inner");
        a.await.unwrap();
        b.await.unwrap();
        assert_eq!(ringloop::all_tasks(), vec![me]);
    })
    .unwrap();
    assert!(ringloop::current_task().is_none());
}

#[ringloop::test(virtual_clock)]
fn dropping_a_task_handle_detaches_the_task(lp: &EventLoop) {
    let done = Rc::new(Cell::new(false));
    let d = done.clone();
    lp.run_until_complete(async move {
        drop(spawn(async move {
            sleep(Duration::from_millis(5)).await;
            d.set(true);
        }));
        sleep(Duration::from_millis(10)).await;
    })
    .unwrap();
    assert!(done.get());
}

#[ringloop::test(virtual_clock)]
fn cancel_on_drop_cancels_the_task(lp: &EventLoop) {
    let done = Rc::new(Cell::new(false));
    let d = done.clone();
    lp.run_until_complete(async move {
        let t = spawn(async move {
            sleep(Duration::from_millis(5)).await;
            d.set(true);
        })
        .cancel_on_drop();
        let r = t.task().as_ref();
        drop(t);
        sleep(Duration::from_millis(10)).await;
        assert!(r.is_cancelled());
    })
    .unwrap();
    assert!(!done.get());
}

#[ringloop::test(virtual_clock)]
fn chained_coroutines_print_sum(lp: &EventLoop) {
    async fn compute(x: i32, y: i32) -> i32 {
        sleep(Duration::from_secs(1)).await;
        x + y
    }
    let t0 = lp.time();
    let s = lp.run_until_complete(async { compute(1, 2).await }).unwrap();
    assert_eq!(s, 3);
    assert!(lp.time() - t0 >= Duration::from_secs(1));
}

#[ringloop::test]
fn wakers_cloned_to_another_thread_wake_the_task(lp: &EventLoop) {
    use std::future::poll_fn;
    use std::task::Poll;
    let v = lp
        .run_until_complete(async {
            let flag = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
            let mut sent = false;
            poll_fn(|cx| {
                if flag.load(std::sync::atomic::Ordering::SeqCst) {
                    return Poll::Ready(42);
                }
                if !sent {
                    sent = true;
                    let w = cx.waker().clone();
                    let f = flag.clone();
                    std::thread::spawn(move || {
                        std::thread::sleep(Duration::from_millis(20));
                        f.store(true, std::sync::atomic::Ordering::SeqCst);
                        let w2 = w.clone();
                        w.wake();
                        w2.wake(); // duplicate wakes are harmless
                    });
                }
                Poll::Pending
            })
            .await
        })
        .unwrap();
    assert_eq!(v, 42);
}

#[allow(clippy::async_yields_async)]
#[ringloop::test]
fn an_unretrieved_task_panic_is_reported_when_the_handle_drops(lp: &EventLoop) {
    let reports: Rc<std::cell::RefCell<Vec<String>>> = Default::default();
    let r = reports.clone();
    lp.set_exception_handler(Some(move |ctx: &ringloop::ExceptionContext| {
        assert_eq!(ctx.kind, ringloop::ExceptionKind::TaskPanicNotRetrieved);
        r.borrow_mut().push(ctx.panic_message.clone().unwrap_or_default());
    }));
    let held = lp
        .run_until_complete(async {
            let t = spawn(async { panic!("held boom") });
            spawn(async { panic!("detached boom") }).detach();
            t.finished().await;
            yield_now().await;
            t
        })
        .unwrap();
    assert_eq!(*reports.borrow(), ["detached boom"]);
    drop(held);
    assert_eq!(*reports.borrow(), ["detached boom", "held boom"]);
}

#[ringloop::test]
fn a_panic_in_a_callback_goes_to_the_handler_and_the_loop_runs_on(lp: &EventLoop) {
    let seen = Rc::new(std::cell::RefCell::new(Vec::new()));
    let s = seen.clone();
    lp.set_exception_handler(Some(move |ctx: &ringloop::ExceptionContext| {
        s.borrow_mut().push((ctx.kind.clone(), ctx.panic_message.clone()));
    }));
    let log = Log::new();
    lp.call_soon(|| panic!("callback boom")).unwrap();
    let l = log.clone();
    lp.call_soon(move || l.push("next callback ran")).unwrap();
    let v = lp.run_until_complete(async { 9 }).unwrap();
    assert_eq!(v, 9);
    assert_eq!(log.get(), ["next callback ran"]);
    assert_eq!(
        *seen.borrow(),
        [(
            ringloop::ExceptionKind::CallbackPanicked,
            Some("callback boom".to_string())
        )]
    );
    // A handler that panics itself does not take the loop down either.
    lp.set_exception_handler(Some(|_: &ringloop::ExceptionContext| panic!("handler boom")));
    lp.call_soon(|| panic!("again")).unwrap();
    assert_eq!(lp.run_until_complete(async { 1 }).unwrap(), 1);
    lp.set_exception_handler(None::<fn(&ringloop::ExceptionContext)>);
}

#[ringloop::test]
fn debug_mode_reports_slow_callbacks(lp: &EventLoop) {
    let seen = Rc::new(std::cell::RefCell::new(Vec::new()));
    let s = seen.clone();
    lp.set_exception_handler(Some(move |ctx: &ringloop::ExceptionContext| {
        s.borrow_mut().push(ctx.kind.clone());
    }));
    lp.set_slow_callback_duration(Duration::from_millis(20));
    lp.call_soon(|| std::thread::sleep(Duration::from_millis(30))).unwrap();
    lp.run_until_complete(async {}).unwrap();
    assert!(seen.borrow().is_empty(), "no warning outside debug mode");
    lp.set_debug(true);
    assert!(lp.get_debug());
    lp.call_soon(|| std::thread::sleep(Duration::from_millis(30))).unwrap();
    lp.run_until_complete(async {}).unwrap();
    let kinds = seen.borrow();
    assert_eq!(kinds.len(), 1, "{kinds:?}");
    assert!(matches!(kinds[0], ringloop::ExceptionKind::SlowCallback(d) if d >= Duration::from_millis(20)));
}

/// A future that polls `inner` with its own waker (like `FuturesUnordered`
/// does): the task it awaits sees a foreign waker, not a ringloop task's.
struct Proxied<F>(std::pin::Pin<Box<F>>);

struct ProxyWaker(std::task::Waker);

impl std::task::Wake for ProxyWaker {
    fn wake(self: std::sync::Arc<Self>) {
        self.0.wake_by_ref();
    }
}

impl<F: std::future::Future> std::future::Future for Proxied<F> {
    type Output = F::Output;
    fn poll(mut self: std::pin::Pin<&mut Self>, cx: &mut std::task::Context<'_>) -> std::task::Poll<F::Output> {
        let w = std::task::Waker::from(std::sync::Arc::new(ProxyWaker(cx.waker().clone())));
        self.0.as_mut().poll(&mut std::task::Context::from_waker(&w))
    }
}

#[ringloop::test(virtual_clock)]
fn awaiters_of_a_task_wake_in_registration_order_whatever_their_waker(lp: &EventLoop) {
    // The first awaiter that is a task of the same loop is kept inline in
    // the task; others (foreign wakers, later awaiters) in a list. The wake
    // order must still be registration order, in both mixes.
    for foreign_first in [true, false] {
        let log = Log::new();
        let l = log.clone();
        lp.run_until_complete(async move {
            let t = spawn(sleep(Duration::from_millis(10)));
            let (fa, fb) = (t.finished(), t.finished());
            let (la, lb) = (l.clone(), l.clone());
            let foreign = async move {
                Proxied(Box::pin(fa)).await;
                la.push("foreign");
            };
            let local = async move {
                fb.await;
                lb.push("local");
            };
            let (a, b) = if foreign_first {
                (spawn(foreign), spawn(local))
            } else {
                let b = spawn(local);
                yield_now().await; // `local` registers first
                (spawn(foreign), b)
            };
            a.await.unwrap();
            b.await.unwrap();
        })
        .unwrap();
        let want = if foreign_first {
            ["foreign", "local"]
        } else {
            ["local", "foreign"]
        };
        assert_eq!(log.get(), want, "foreign_first = {foreign_first}");
    }
}

/// Records the current task's id when dropped.
struct NoteCurrentOnDrop(Rc<Cell<Option<Option<u64>>>>);

impl Drop for NoteCurrentOnDrop {
    fn drop(&mut self) {
        self.0.set(Some(ringloop::current_task().map(|t| t.id())));
    }
}

/// A finished task's future (with everything it captured) is dropped at the
/// end of the task's last step, before the output is handed to anyone, and
/// while the task is still the current one, as a coroutine's locals are
/// released when it returns inside its task's step in asyncio.
#[ringloop::test(virtual_clock)]
fn a_finished_tasks_future_is_dropped_in_its_last_step(lp: &EventLoop) {
    let seen = Rc::new(Cell::new(None));
    let s = seen.clone();
    lp.run_until_complete(async move {
        // A future that keeps the guard in itself (an `async` block would
        // drop its locals when its body returns, inside the poll anyway).
        let mut guard = Some(NoteCurrentOnDrop(s.clone()));
        let mut first = true;
        let t = spawn(std::future::poll_fn(move |cx| {
            let _keep = &mut guard;
            if std::mem::take(&mut first) {
                cx.waker().wake_by_ref();
                return std::task::Poll::Pending;
            }
            std::task::Poll::Ready(7)
        }));
        let id = t.id();
        // Not awaited yet: the handle keeps the output, not the future.
        while !t.is_done() {
            yield_now().await;
        }
        assert_eq!(s.get(), Some(Some(id)), "dropped during the task's own step");
        assert_eq!(t.await.unwrap(), 7);
    })
    .unwrap();
    assert!(seen.get().is_some());
}
