//! asyncio APIs of issue #8 (create_future, contextvars, as_completed, shield,
//! TaskGroup, Barrier, Queue.shutdown), on both backends. Tests assert
//! orders, results and errors, never timing.

mod common;

use common::Log;
use futures_util::StreamExt;
use ringloop::EventLoop;
use ringloop::combinators::ChildError;
use ringloop::context::ContextVar;
use ringloop::sync::{Barrier, BrokenBarrierError, Discipline, GenericQueue, LifoQueue, PriorityQueue, Queue};
use ringloop::{
    FutureError, LoopFuture, TaskError, TaskGroup, as_completed, create_future, shield, sleep, spawn, task_group,
    yield_now,
};
use std::time::Duration;

/// Python 3.13: after `shutdown()`, gets drain what is left, then raise.
async fn drain_after_shutdown<K: Discipline<i32>>(q: GenericQueue<i32, K>) -> Vec<i32> {
    for i in [1, 3, 2] {
        q.put(i).await.unwrap();
    }
    q.shutdown(false);
    assert!(q.is_shut_down());
    let err = q.put(9).await.unwrap_err();
    assert_eq!(err.into_inner(), 9, "the rejected item is handed back");
    assert!(q.put_nowait(9).unwrap_err().is_shut_down());
    let mut got = Vec::new();
    while let Ok(v) = q.get().await {
        got.push(v);
    }
    assert!(q.get_nowait().unwrap_err().is_shut_down());
    got
}

fn broken(r: Result<usize, BrokenBarrierError>) -> bool {
    matches!(r, Err(BrokenBarrierError { .. }))
}

/// A task that waits on `b` and logs `name=<index>` or `name=broken`.
fn barrier_waiter(b: &Barrier, log: &Log, name: &'static str) -> ringloop::Task<Result<usize, BrokenBarrierError>> {
    let (b, log) = (b.clone(), log.clone());
    spawn(async move {
        let r = b.wait().await;
        match r {
            Ok(i) => log.push(format!("{name}={i}")),
            Err(_) => log.push(format!("{name}=broken")),
        }
        r
    })
}

#[derive(Debug)]
struct Boom;
impl std::fmt::Display for Boom {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("boom")
    }
}
impl std::error::Error for Boom {}

static REQUEST: ContextVar<String> = ContextVar::new("request");
static DEPTH: ContextVar<u32> = ContextVar::new("depth");

// ------------------------------------------------------ contextvars

#[ringloop::test]
fn contextvar_spawned_task_starts_with_a_copy_of_the_spawners_context(lp: &EventLoop) {
    let log = Log::new();
    let l = log.clone();
    lp.run_until_complete(async move {
        assert_eq!(REQUEST.get(), None);
        REQUEST.set("parent".into());
        let l1 = l.clone();
        let child = spawn(async move {
            l1.push(format!("child sees {:?}", REQUEST.get()));
            REQUEST.set("child".into());
            yield_now().await;
            l1.push(format!("child after yield {:?}", REQUEST.get()));
            // A grandchild copies the child's context.
            let g = spawn(async { REQUEST.get() });
            l1.push(format!("grandchild sees {:?}", g.await.unwrap()));
        });
        let l2 = l.clone();
        let sibling = spawn(async move {
            yield_now().await;
            l2.push(format!("sibling sees {:?}", REQUEST.get()));
        });
        child.await.unwrap();
        sibling.await.unwrap();
        l.push(format!("parent sees {:?}", REQUEST.get()));
    })
    .unwrap();
    assert_eq!(
        log.get(),
        [
            "child sees Some(\"parent\")",
            "child after yield Some(\"child\")",
            "sibling sees Some(\"parent\")",
            "grandchild sees Some(\"child\")",
            "parent sees Some(\"parent\")",
        ]
    );
}

#[ringloop::test]
fn contextvar_interleaved_tasks_keep_their_own_values(lp: &EventLoop) {
    let out = lp
        .run_until_complete(async {
            let tasks: Vec<_> = (0..3u32)
                .map(|i| {
                    spawn(async move {
                        DEPTH.set(i);
                        let mut seen = Vec::new();
                        for _ in 0..3 {
                            yield_now().await;
                            seen.push(DEPTH.get().unwrap());
                        }
                        seen
                    })
                })
                .collect();
            let mut all = Vec::new();
            for t in tasks {
                all.push(t.await.unwrap());
            }
            (all, DEPTH.get())
        })
        .unwrap();
    assert_eq!(out, (vec![vec![0; 3], vec![1; 3], vec![2; 3]], None));
}

#[ringloop::test]
fn contextvar_run_in_executor_copies_the_callers_context(lp: &EventLoop) {
    let lp2 = lp.clone();
    lp.run_until_complete(async move {
        REQUEST.set("caller".into());
        let seen = ringloop::spawn_blocking(|| {
            let v = REQUEST.get();
            REQUEST.set("job".into());
            v
        })
        .await
        .unwrap();
        assert_eq!(seen.as_deref(), Some("caller"));
        let seen = lp2.run_in_executor(|| REQUEST.get()).unwrap().await.unwrap();
        assert_eq!(seen.as_deref(), Some("caller"));
        assert_eq!(
            REQUEST.get().as_deref(),
            Some("caller"),
            "the job's set stays in its copy"
        );
    })
    .unwrap();
}

#[ringloop::test]
fn contextvar_callbacks_run_in_the_context_they_were_scheduled_in(lp: &EventLoop) {
    let log = Log::new();
    let l = log.clone();
    let lp2 = lp.clone();
    lp.run_until_complete(async move {
        let fut = create_future::<()>();
        let (l1, l2, l3, f2) = (l.clone(), l.clone(), l.clone(), fut.clone());
        spawn(async move {
            REQUEST.set("scheduler".into());
            let lp = ringloop::current().unwrap();
            lp.call_soon(move || l1.push(format!("call_soon {:?}", REQUEST.get())))
                .unwrap();
            lp.call_later(Duration::from_millis(1), move || {
                l2.push(format!("call_later {:?}", REQUEST.get()))
            })
            .unwrap();
            f2.add_done_callback(move |_| l3.push(format!("done callback {:?}", REQUEST.get())));
            REQUEST.set("changed later".into());
        })
        .await
        .unwrap();
        // Scheduled from here (the main task, which never set it): unset.
        let l4 = l.clone();
        lp2.call_soon(move || l4.push(format!("main call_soon {:?}", REQUEST.get())))
            .unwrap();
        fut.set_result(()).unwrap();
        sleep(Duration::from_millis(20)).await;
    })
    .unwrap();
    let mut got = log.get();
    got.sort();
    assert_eq!(
        got,
        [
            "call_later Some(\"scheduler\")",
            "call_soon Some(\"scheduler\")",
            "done callback Some(\"scheduler\")",
            "main call_soon None",
        ]
    );
}

#[ringloop::test]
fn contextvar_reset_restores_the_previous_value(lp: &EventLoop) {
    lp.run_until_complete(async {
        let t1 = DEPTH.set(1);
        let t2 = DEPTH.set(2);
        assert_eq!(DEPTH.get(), Some(2));
        DEPTH.reset(t2).unwrap();
        assert_eq!(DEPTH.get(), Some(1));
        DEPTH.reset(t1).unwrap();
        assert_eq!(DEPTH.get(), None);
        static OTHER: ContextVar<u32> = ContextVar::new("other");
        let foreign = OTHER.set(5);
        assert!(DEPTH.reset(foreign).is_err(), "a token of another variable");
        assert_eq!(OTHER.get(), Some(5));
        // A Context snapshot runs code in isolation.
        let mut ctx = ringloop::context::Context::current();
        ctx.run(|| DEPTH.set(9));
        assert_eq!(ctx.get(&DEPTH), Some(9));
        assert_eq!(DEPTH.get(), None);
    })
    .unwrap();
}

// ------------------------------------------------------- as_completed

#[ringloop::test(virtual_clock)]
fn as_completed_yields_results_in_completion_order(lp: &EventLoop) {
    let out = lp
        .run_until_complete(async {
            let tasks = [30u64, 10, 20, 0].map(|ms| {
                spawn(async move {
                    sleep(Duration::from_millis(ms)).await;
                    if ms == 20 {
                        panic!("twenty");
                    }
                    ms
                })
            });
            let mut s = as_completed(tasks);
            assert_eq!(s.remaining(), 4);
            let mut order = Vec::new();
            while let Some(r) = s.next().await {
                order.push(r.map_err(|e| e.panic_message().unwrap().to_owned()));
            }
            assert_eq!(s.remaining(), 0);
            order
        })
        .unwrap();
    assert_eq!(out, [Ok(0), Ok(10), Err("twenty".to_owned()), Ok(30)]);
}

#[ringloop::test(virtual_clock)]
fn as_completed_accepts_futures_and_works_as_a_stream(lp: &EventLoop) {
    let out = lp
        .run_until_complete(async {
            let a = create_future::<&str>();
            let b = create_future::<&str>();
            let mut s = as_completed([a.clone(), b.clone()]);
            let (a2, b2) = (a.clone(), b.clone());
            spawn(async move {
                b2.set_result("b").unwrap();
                yield_now().await;
                a2.set_result("a").unwrap();
            });
            let mut got = Vec::new();
            while let Some(v) = s.next().await {
                got.push(v.unwrap());
            }
            got
        })
        .unwrap();
    assert_eq!(out, ["b", "a"]);
}

#[ringloop::test(virtual_clock)]
fn as_completed_timeout_raises_timeout_error_and_cancels_nothing(lp: &EventLoop) {
    lp.run_until_complete(async {
        let tasks = [10u64, 50, 20, 100].map(|ms| {
            spawn(async move {
                sleep(Duration::from_millis(ms)).await;
                ms
            })
        });
        let mut s = as_completed(tasks).timeout(Duration::from_millis(30));
        assert_eq!(s.next().await.unwrap().unwrap().unwrap(), 10);
        assert_eq!(s.next().await.unwrap().unwrap().unwrap(), 20);
        assert!(s.next().await.unwrap().is_err(), "then TimeoutError");
        assert!(s.next().await.is_none(), "and the end");
        let rest = s.into_remaining();
        assert_eq!(rest.len(), 2);
        // The unfinished tasks were not cancelled.
        let mut outs = Vec::new();
        for t in rest {
            outs.push(t.await.unwrap());
        }
        assert_eq!(outs, [50, 100]);
    })
    .unwrap();
}

// ------------------------------------------------------------ shield

#[ringloop::test(virtual_clock)]
fn shield_cancelling_the_outer_does_not_cancel_the_inner(lp: &EventLoop) {
    let log = Log::new();
    let l = log.clone();
    lp.run_until_complete(async move {
        let inner_body = |l: Log, name: &'static str| async move {
            sleep(Duration::from_millis(10)).await;
            l.push(format!("{name} finished"));
            name
        };
        // Without shield, cancel-on-drop propagates the outer's cancellation.
        let unshielded = spawn(inner_body(l.clone(), "unshielded")).cancel_on_drop();
        let watch_unshielded = unshielded.task().as_ref();
        let outer1 = spawn(unshielded);
        // With shield, it does not.
        let shielded = spawn(inner_body(l.clone(), "shielded")).cancel_on_drop();
        let watch_shielded = shielded.task().as_ref();
        let outer2 = spawn(shield(shielded));
        yield_now().await;
        assert!(outer1.cancel());
        assert!(outer2.cancel());
        assert!(outer1.await.unwrap_err().is_cancelled());
        assert!(outer2.await.unwrap_err().is_cancelled());
        watch_shielded.finished().await;
        watch_unshielded.finished().await;
        assert!(watch_unshielded.is_cancelled());
        assert!(!watch_shielded.is_cancelled());
    })
    .unwrap();
    assert_eq!(log.get(), ["shielded finished"]);
}

#[ringloop::test(virtual_clock)]
fn shield_inner_cancel_cancels_the_outer(lp: &EventLoop) {
    lp.run_until_complete(async {
        let inner = spawn(sleep(Duration::from_secs(1)));
        let s = shield(inner);
        assert!(s.task().cancel());
        assert!(s.await.unwrap_err().is_cancelled());
        let ok = shield(spawn(async { 5 })).await.unwrap();
        assert_eq!(ok, 5);
    })
    .unwrap();
}

// --------------------------------------------------- TaskGroup (3.11)

#[ringloop::test(virtual_clock)]
fn task_group_join_awaits_all_children(lp: &EventLoop) {
    let log = Log::new();
    let l = log.clone();
    lp.run_until_complete(async move {
        let tg = TaskGroup::new();
        let tasks: Vec<_> = [30u64, 10, 20]
            .into_iter()
            .map(|ms| {
                let l = l.clone();
                tg.spawn(async move {
                    sleep(Duration::from_millis(ms)).await;
                    l.push(format!("{ms}"));
                    ms
                })
            })
            .collect();
        // A child can add a sibling through a clone.
        let tg2 = tg.clone();
        let l2 = l.clone();
        tg.spawn(async move {
            sleep(Duration::from_millis(25)).await;
            tg2.spawn(async move {
                sleep(Duration::from_millis(20)).await;
                l2.push("grandchild");
            });
        });
        assert_eq!(tg.len(), 4);
        tg.join().await.unwrap();
        l.push("joined");
        assert!(tg.is_empty());
        let mut outs = Vec::new();
        for t in tasks {
            outs.push(t.await.unwrap());
        }
        assert_eq!(outs, [30, 10, 20]);
        assert!(tg.try_spawn(async {}).is_err(), "a joined group is finished");
    })
    .unwrap();
    assert_eq!(log.get(), ["10", "20", "30", "grandchild", "joined"]);
}

#[ringloop::test(virtual_clock)]
fn task_group_child_failure_cancels_the_others_and_reports_all_errors(lp: &EventLoop) {
    let log = Log::new();
    let l = log.clone();
    lp.run_until_complete(async move {
        let tg = TaskGroup::new();
        let l1 = l.clone();
        let slow = tg.spawn(async move {
            sleep(Duration::from_secs(10)).await;
            l1.push("slow finished");
        });
        tg.spawn_fallible(async {
            sleep(Duration::from_millis(10)).await;
            Err::<(), _>(Boom)
        });
        // Fails in the same iteration as the first failure: both are reported.
        let p = tg.spawn(async {
            sleep(Duration::from_millis(10)).await;
            panic!("second");
        });
        let err = tg.join().await.unwrap_err();
        let errors = err.errors();
        assert_eq!(errors.len(), 2, "{errors:?}");
        assert!(errors[0].error().unwrap().is::<Boom>());
        assert!(matches!(&errors[1], ChildError::Panicked(_)));
        assert_eq!(errors[1].panic_message(), Some("second"));
        assert!(slow.await.unwrap_err().is_cancelled());
        assert!(
            matches!(p.await, Err(TaskError::AlreadyRetrieved)),
            "the group took the panic"
        );
        assert!(tg.try_spawn(async {}).is_err());
    })
    .unwrap();
    assert!(log.get().is_empty(), "the slow child was cancelled");
}

#[ringloop::test(virtual_clock)]
fn task_group_cancelling_the_parent_cancels_the_children(lp: &EventLoop) {
    let log = Log::new();
    let l = log.clone();
    lp.run_until_complete(async move {
        let (l1, l2) = (l.clone(), l.clone());
        let parent = spawn(async move {
            let tg = TaskGroup::new();
            for i in 0..3 {
                let l = l1.clone();
                tg.spawn(async move {
                    sleep(Duration::from_millis(100)).await;
                    l.push(format!("child {i}"));
                });
            }
            tg.join().await.unwrap();
            l1.push("parent joined");
        });
        let parent2 = spawn(async move {
            task_group(|tg| async move {
                tg.spawn(async move {
                    sleep(Duration::from_millis(100)).await;
                    l2.push("closure child");
                });
                sleep(Duration::from_millis(200)).await;
            })
            .await
        });
        sleep(Duration::from_millis(10)).await;
        assert!(parent.cancel());
        assert!(parent2.cancel());
        assert!(parent.await.unwrap_err().is_cancelled());
        assert!(parent2.await.unwrap_err().is_cancelled());
        sleep(Duration::from_millis(500)).await;
    })
    .unwrap();
    assert!(log.get().is_empty(), "{:?}", log.get());
}

#[ringloop::test(virtual_clock)]
fn task_group_closure_body_is_cancelled_on_child_failure(lp: &EventLoop) {
    let log = Log::new();
    let l = log.clone();
    let r = lp
        .run_until_complete(async move {
            task_group(|tg| async move {
                tg.spawn(async {
                    sleep(Duration::from_millis(10)).await;
                    panic!("child failed");
                });
                sleep(Duration::from_secs(10)).await;
                l.push("body finished");
            })
            .await
        })
        .unwrap();
    let err = r.unwrap_err();
    assert_eq!(err.errors().len(), 1);
    assert_eq!(err.errors()[0].panic_message(), Some("child failed"));
    assert!(log.get().is_empty(), "the body was dropped");

    let ok = lp
        .run_until_complete(task_group(|tg| async move {
            let t = tg.spawn(async { 1 });
            t.await.unwrap() + 1
        }))
        .unwrap();
    assert_eq!(ok.unwrap(), 2);
}

// ------------------------------------------------- loop.create_future()

#[ringloop::test]
fn future_set_result_wakes_every_awaiter(lp: &EventLoop) {
    let log = Log::new();
    let l = log.clone();
    let fut: LoopFuture<String> = lp.create_future();
    let f = fut.clone();
    lp.run_until_complete(async move {
        let waiters: Vec<_> = (0..3)
            .map(|i| {
                let (f, l) = (f.clone(), l.clone());
                spawn(async move { l.push(format!("w{i}={}", f.await.unwrap())) })
            })
            .collect();
        yield_now().await;
        assert!(!f.is_done());
        f.set_result("v".to_string()).unwrap();
        l.push("set");
        for w in waiters {
            w.await.unwrap();
        }
        // Awaiting a done future does not yield: nothing else runs first.
        let (l2, f2) = (l.clone(), f.clone());
        let other = spawn(async move { l2.push("other") });
        l.push(format!("again={}", f2.await.unwrap()));
        other.await.unwrap();
    })
    .unwrap();
    assert_eq!(log.get(), ["set", "w0=v", "w1=v", "w2=v", "again=v", "other"]);
    assert_eq!(fut.result().unwrap(), "v");
}

#[ringloop::test]
fn future_result_raises_invalid_state_and_double_set_is_invalid(lp: &EventLoop) {
    let fut = lp.create_future::<i32>();
    assert!(matches!(fut.result(), Err(FutureError::InvalidState)));
    assert!(matches!(fut.error(), Err(FutureError::InvalidState)));
    assert!(!fut.is_done() && !fut.is_cancelled());
    fut.set_result(1).unwrap();
    assert_eq!(fut.set_result(2).unwrap_err().into_inner(), 2);
    assert!(fut.set_error(Boom).is_err());
    assert!(!fut.cancel(), "cancel of a done future returns false");
    assert_eq!(fut.result().unwrap(), 1);
    assert!(fut.error().unwrap().is_none());

    let c = lp.create_future::<i32>();
    assert!(c.cancel());
    assert!(c.is_done() && c.is_cancelled());
    assert!(c.set_result(3).is_err(), "set after cancel is InvalidStateError");
    assert!(c.result().unwrap_err().is_cancelled());
    assert!(c.error().unwrap_err().is_cancelled());
    let r = lp.run_until_complete(c.clone()).unwrap();
    assert!(r.unwrap_err().is_cancelled(), "awaiting a cancelled future");
}

#[ringloop::test]
fn future_set_error_is_raised_to_awaiters(lp: &EventLoop) {
    let fut = lp.create_future::<i32>();
    let f = fut.clone();
    let r = lp
        .run_until_complete(async move {
            let f2 = f.clone();
            let waiter = spawn(f2);
            yield_now().await;
            f.set_error(Boom).unwrap();
            waiter.await.unwrap()
        })
        .unwrap();
    let e = r.unwrap_err();
    assert!(e.error().unwrap().downcast_ref::<Boom>().is_some());
    assert!(fut.error().unwrap().unwrap().is::<Boom>());
    assert!(matches!(fut.result(), Err(FutureError::Failed(_))));
}

#[ringloop::test]
fn future_done_callbacks_are_scheduled_in_order_never_synchronously(lp: &EventLoop) {
    let log = Log::new();
    let l = log.clone();
    lp.run_until_complete(async move {
        let fut = create_future::<i32>();
        let (f, l1) = (fut.clone(), l.clone());
        let waiter = spawn(async move { l1.push(format!("task={}", f.await.unwrap())) });
        yield_now().await; // the task now awaits: it registered first
        let l2 = l.clone();
        fut.add_done_callback(move |f| l2.push(format!("cb1={}", f.result().unwrap())));
        let l3 = l.clone();
        fut.add_done_callback(move |_| l3.push("cb2"));
        fut.set_result(7).unwrap();
        l.push("after set_result");
        waiter.await.unwrap();
        yield_now().await;
        // Added to a done future: call_soon'ed, after what was queued before.
        let l4 = ringloop::current().unwrap();
        let l5 = l.clone();
        l4.call_soon(move || l5.push("earlier call_soon")).unwrap();
        let l6 = l.clone();
        fut.add_done_callback(move |_| l6.push("cb3"));
        l.push("added cb3");
        yield_now().await;
    })
    .unwrap();
    assert_eq!(
        log.get(),
        [
            "after set_result",
            "task=7",
            "cb1=7",
            "cb2",
            "added cb3",
            "earlier call_soon",
            "cb3"
        ]
    );
}

#[ringloop::test]
fn future_remove_done_callback_returns_count(lp: &EventLoop) {
    let log = Log::new();
    let l = log.clone();
    lp.run_until_complete(async move {
        let fut = create_future::<()>();
        let l1 = l.clone();
        let id = fut.add_done_callback(move |_| l1.push("removed"));
        let l2 = l.clone();
        fut.add_done_callback(move |_| l2.push("kept"));
        assert_eq!(fut.remove_done_callback(id), 1);
        assert_eq!(fut.remove_done_callback(id), 0);
        assert!(fut.cancel());
        yield_now().await;
    })
    .unwrap();
    assert_eq!(log.get(), ["kept"]);
}

// ------------------------------------------------------ Barrier (3.11)

#[ringloop::test]
fn barrier_wait_returns_arrival_index_and_last_party_does_not_block(lp: &EventLoop) {
    let log = Log::new();
    let l = log.clone();
    lp.run_until_complete(async move {
        let b = Barrier::new(3);
        assert_eq!((b.parties(), b.n_waiting(), b.broken()), (3, 0, false));
        let t0 = barrier_waiter(&b, &l, "a");
        let t1 = barrier_waiter(&b, &l, "b");
        yield_now().await;
        assert_eq!(b.n_waiting(), 2);
        // The last party is released at once (no yield), the others after.
        assert_eq!(b.wait().await, Ok(2));
        l.push("main=2");
        assert_eq!(b.n_waiting(), 0, "draining");
        assert_eq!(t0.await.unwrap(), Ok(0));
        assert_eq!(t1.await.unwrap(), Ok(1));
        // The barrier refilled: a second round works the same way.
        let t2 = barrier_waiter(&b, &l, "c");
        let t3 = barrier_waiter(&b, &l, "d");
        let t4 = barrier_waiter(&b, &l, "e");
        for t in [t2, t3, t4] {
            t.await.unwrap().unwrap();
        }
    })
    .unwrap();
    assert_eq!(log.get(), ["main=2", "a=0", "b=1", "e=2", "c=0", "d=1"]);
}

#[ringloop::test]
fn barrier_newcomer_waits_while_the_barrier_drains(lp: &EventLoop) {
    let log = Log::new();
    let l = log.clone();
    lp.run_until_complete(async move {
        let b = Barrier::new(2);
        let a = barrier_waiter(&b, &l, "a");
        yield_now().await;
        // Release; `a` has not run yet, so the barrier still drains.
        assert_eq!(b.wait().await, Ok(1));
        let c = barrier_waiter(&b, &l, "c");
        let d = barrier_waiter(&b, &l, "d");
        a.await.unwrap().unwrap();
        // `c` and `d` arrived while `a` was leaving: they form the next round.
        c.await.unwrap().unwrap();
        d.await.unwrap().unwrap();
    })
    .unwrap();
    assert_eq!(log.get(), ["a=0", "d=1", "c=0"]);
}

#[ringloop::test]
fn barrier_abort_raises_broken_barrier_error_until_reset(lp: &EventLoop) {
    let log = Log::new();
    let l = log.clone();
    lp.run_until_complete(async move {
        let b = Barrier::new(3);
        let a = barrier_waiter(&b, &l, "a");
        let c = barrier_waiter(&b, &l, "b");
        yield_now().await;
        b.abort();
        assert!(b.broken());
        assert_eq!(b.n_waiting(), 0);
        assert!(broken(a.await.unwrap()));
        assert!(broken(c.await.unwrap()));
        assert!(broken(b.wait().await), "stays broken");
        b.reset();
        assert!(!b.broken());
        let a = barrier_waiter(&b, &l, "x");
        let c = barrier_waiter(&b, &l, "y");
        yield_now().await;
        assert_eq!(b.wait().await, Ok(2), "usable again after reset");
        a.await.unwrap().unwrap();
        c.await.unwrap().unwrap();
    })
    .unwrap();
    assert_eq!(log.get(), ["a=broken", "b=broken", "x=0", "y=1"]);
}

#[ringloop::test]
fn barrier_reset_breaks_current_waiters_then_refills(lp: &EventLoop) {
    let log = Log::new();
    let l = log.clone();
    lp.run_until_complete(async move {
        let b = Barrier::new(3);
        let a = barrier_waiter(&b, &l, "a");
        let c = barrier_waiter(&b, &l, "b");
        yield_now().await;
        b.reset();
        assert!(!b.broken(), "reset is not abort");
        // A newcomer waits until the reset waiters have left.
        let n = barrier_waiter(&b, &l, "n");
        assert!(broken(a.await.unwrap()));
        assert!(broken(c.await.unwrap()));
        yield_now().await;
        assert_eq!(b.n_waiting(), 1, "the newcomer counts in the new round");
        let m = barrier_waiter(&b, &l, "m");
        yield_now().await;
        assert_eq!(b.wait().await, Ok(2));
        n.await.unwrap().unwrap();
        m.await.unwrap().unwrap();
    })
    .unwrap();
    assert_eq!(log.get(), ["a=broken", "b=broken", "n=0", "m=1"]);
}

#[ringloop::test]
fn barrier_cancelled_waiter_leaves_the_barrier(lp: &EventLoop) {
    let log = Log::new();
    let l = log.clone();
    lp.run_until_complete(async move {
        let b = Barrier::new(3);
        let a = barrier_waiter(&b, &l, "a");
        let c = barrier_waiter(&b, &l, "b");
        yield_now().await;
        assert_eq!(b.n_waiting(), 2);
        assert!(a.cancel());
        assert!(a.await.unwrap_err().is_cancelled());
        assert_eq!(b.n_waiting(), 1, "the cancelled waiter left");
        let d = barrier_waiter(&b, &l, "d");
        yield_now().await;
        assert_eq!(b.n_waiting(), 2);
        assert_eq!(b.wait().await, Ok(2));
        // As in asyncio, the index is the count at arrival, so after a
        // cancellation two tasks of one round can share an index.
        assert_eq!(c.await.unwrap(), Ok(1));
        assert_eq!(d.await.unwrap(), Ok(1));
    })
    .unwrap();
    assert_eq!(log.get(), ["b=1", "d=1"]);
}

// ------------------------------------------------- Queue.shutdown (3.13)

#[ringloop::test]
fn queue_shutdown_put_raises_and_get_raises_once_empty(lp: &EventLoop) {
    lp.run_until_complete(async {
        assert_eq!(drain_after_shutdown(Queue::new(0)).await, [1, 3, 2]);
        assert_eq!(drain_after_shutdown(LifoQueue::new(5)).await, [2, 3, 1]);
        assert_eq!(drain_after_shutdown(PriorityQueue::new(3)).await, [1, 2, 3]);
    })
    .unwrap();
}

#[ringloop::test]
fn queue_shutdown_wakes_blocked_getters_and_putters(lp: &EventLoop) {
    let log = Log::new();
    let l = log.clone();
    lp.run_until_complete(async move {
        // Getters blocked on an empty queue.
        let q: Queue<i32> = Queue::new(1);
        let getters: Vec<_> = (0..2)
            .map(|i| {
                let (q, l) = (q.clone(), l.clone());
                spawn(async move {
                    let r = q.get().await;
                    l.push(format!("get{i} {}", if r.is_err() { "shut down" } else { "item" }));
                })
            })
            .collect();
        // Putters blocked on a full queue.
        let full: Queue<i32> = Queue::new(1);
        full.put_nowait(0).unwrap();
        let putters: Vec<_> = (1..3)
            .map(|i| {
                let (q, l) = (full.clone(), l.clone());
                spawn(async move {
                    let r = q.put(i).await;
                    l.push(format!("put{i} {:?}", r.map_err(|e| e.into_inner())));
                })
            })
            .collect();
        yield_now().await;
        assert!(l.get().is_empty(), "everyone is blocked");
        q.shutdown(false);
        full.shutdown(false);
        for t in getters.into_iter().chain(putters) {
            t.await.unwrap();
        }
        // The item put before shutdown is still there for a get.
        assert_eq!(full.get().await.unwrap(), 0);
        assert!(full.get().await.is_err());
    })
    .unwrap();
    assert_eq!(
        log.get(),
        ["get0 shut down", "get1 shut down", "put1 Err(1)", "put2 Err(2)"]
    );
}

#[ringloop::test]
fn queue_shutdown_immediate_drains_and_releases_join(lp: &EventLoop) {
    let log = Log::new();
    let l = log.clone();
    lp.run_until_complete(async move {
        let q = Queue::new(0);
        for i in 0..3 {
            q.put_nowait(i).unwrap();
        }
        assert_eq!(q.get().await.unwrap(), 0, "one item taken, not yet done");
        let (q2, l2) = (q.clone(), l.clone());
        let joiner = spawn(async move {
            q2.join().await;
            l2.push("joined");
        });
        yield_now().await;
        q.shutdown(true);
        assert_eq!(q.qsize(), 0, "immediate shutdown empties the queue");
        assert!(q.get().await.is_err(), "nothing left to get");
        yield_now().await;
        assert!(l.get().is_empty(), "the taken item is still unfinished");
        l.push("task_done");
        q.task_done().unwrap();
        joiner.await.unwrap();
        assert!(q.task_done().is_err(), "drained items count as done");
    })
    .unwrap();
    assert_eq!(log.get(), ["task_done", "joined"]);
}

#[ringloop::test]
fn queue_shutdown_immediate_fails_a_woken_getter(lp: &EventLoop) {
    lp.run_until_complete(async {
        let q: Queue<&str> = Queue::new(0);
        let q2 = q.clone();
        let getter = spawn(async move { q2.get().await });
        yield_now().await;
        q.put_nowait("x").unwrap(); // reserved for the getter, which has not run yet
        q.shutdown(true);
        assert!(getter.await.unwrap().is_err(), "the reserved item was drained");
    })
    .unwrap();
}

#[ringloop::test]
fn queue_stream_ends_after_shutdown(lp: &EventLoop) {
    lp.run_until_complete(async {
        let q = Queue::new(0);
        let mut s = q.stream();
        q.put_nowait(1).unwrap();
        q.put_nowait(2).unwrap();
        let q2 = q.clone();
        spawn(async move {
            yield_now().await;
            q2.shutdown(false);
        });
        let mut got = Vec::new();
        while let Some(v) = s.next().await {
            got.push(v);
        }
        assert_eq!(got, [1, 2]);
        assert!(futures_core::stream::FusedStream::is_terminated(&s));
        assert_eq!(s.next().await, None);
    })
    .unwrap();
}
