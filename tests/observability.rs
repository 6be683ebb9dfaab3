//! Observability: loop metrics, the task dump and (with the `tracing`
//! feature) the diagnostics as `tracing` events.

use std::cell::Cell;
use std::net::SocketAddr;
use std::rc::Rc;
use std::time::Duration;

use ringloop::net::UdpSocket;
use ringloop::{EventLoop, LoopFuture, TaskState, sleep, spawn, yield_now};

/// Runs a few loop iterations (every ready task takes its next step).
fn settle(lp: &EventLoop) {
    lp.run_until_complete(async {
        for _ in 0..3 {
            yield_now().await;
        }
    })
    .unwrap();
}

#[ringloop::test]
fn metrics_iterations_and_ready_queue(lp: &EventLoop) {
    let m0 = lp.metrics();
    assert_eq!(m0.ready_len, 0);
    for _ in 0..3 {
        lp.call_soon(|| {}).unwrap();
    }
    assert_eq!(lp.metrics().ready_len, 3);
    settle(lp);
    let m1 = lp.metrics();
    assert_eq!(m1.ready_len, 0);
    assert!(m1.iterations > m0.iterations, "{m0:?} -> {m1:?}");
    assert_eq!(m1.iterations, lp.iterations());
}

#[ringloop::test(virtual_clock)]
fn metrics_live_tasks_and_timers(lp: &EventLoop) {
    assert_eq!(lp.metrics().live_tasks, 0);
    let gates: Vec<LoopFuture<()>> = (0..3).map(|_| lp.create_future()).collect();
    let tasks: Vec<_> = gates
        .iter()
        .map(|g| {
            let g = g.clone();
            lp.create_task(async move { g.await.unwrap() }).unwrap()
        })
        .collect();
    let sleeper = lp.create_task(sleep(Duration::from_secs(60))).unwrap();
    assert_eq!(lp.metrics().live_tasks, 4);
    settle(lp);
    let m = lp.metrics();
    assert_eq!(m.live_tasks, 4, "{m:?}");
    assert_eq!(m.timers, 1, "{m:?}");
    gates[0].set_result(()).unwrap();
    settle(lp);
    assert_eq!(lp.metrics().live_tasks, 3);
    assert!(tasks[0].is_done());
    for g in &gates[1..] {
        g.set_result(()).unwrap();
    }
    lp.run_until_complete(sleeper).unwrap().unwrap();
    settle(lp);
    let m = lp.metrics();
    assert_eq!((m.live_tasks, m.timers), (0, 0), "{m:?}");
    assert!(tasks.iter().all(|t| t.is_done()));
}

#[ringloop::test]
fn metrics_inflight_ops_follow_a_pending_recv(lp: &EventLoop) {
    let any: SocketAddr = "127.0.0.1:0".parse().unwrap();
    let (rx, tx) = lp
        .run_until_complete(async move { (UdpSocket::bind(any).unwrap(), UdpSocket::bind(any).unwrap()) })
        .unwrap();
    let to = rx.local_addr().unwrap();
    let base = lp.metrics().inflight_ops;
    let rx = Rc::new(rx);
    let r = rx.clone();
    let recv = lp
        .create_task(async move { r.recv(vec![0u8; 64]).await.0.unwrap() })
        .unwrap();
    settle(lp);
    let m = lp.metrics();
    assert_eq!(m.inflight_ops, base + 1, "a pending recv: {m:?}");
    let n = lp
        .run_until_complete(async move {
            tx.send_to(b"ping".to_vec(), to).await.0.unwrap();
            recv.await.unwrap()
        })
        .unwrap();
    assert_eq!(n, 4);
    settle(lp);
    let m = lp.metrics();
    assert_eq!(m.inflight_ops, base, "the recv completed: {m:?}");
}

#[ringloop::test]
fn metrics_blocking_pool(lp: &EventLoop) {
    assert_eq!(lp.metrics().blocking_threads, 0);
    let (go_tx, go_rx) = std::sync::mpsc::channel::<()>();
    let job = lp.run_in_executor(move || go_rx.recv().is_ok()).unwrap();
    let m = lp.metrics();
    assert_eq!(m.blocking_threads, 1, "{m:?}");
    assert_eq!(m.blocking_threads, lp.blocking_threads());
    go_tx.send(()).unwrap();
    assert!(lp.run_until_complete(job).unwrap().unwrap());
}

#[ringloop::test(virtual_clock)]
fn task_dump_lists_a_named_waiting_task(lp: &EventLoop) {
    let line = line!() + 1;
    let sleeper = lp.create_task(sleep(Duration::from_secs(3600))).unwrap();
    sleeper.set_name("sleeper");
    let gate: LoopFuture<()> = lp.create_future();
    let g = gate.clone();
    let waiter = lp.create_task(async move { g.await.unwrap() }).unwrap();
    waiter.set_name("waiter");

    // Before their first step: scheduled, nothing awaited yet.
    let dump = lp.task_dump();
    let info = dump.find("sleeper").expect("listed");
    assert_eq!(info.state, TaskState::Scheduled);
    assert_eq!(info.waiting_on, None);

    settle(lp);
    let dump = lp.task_dump();
    assert_eq!(dump.tasks.len(), 2, "{dump}");
    let info = dump.find("sleeper").expect("listed");
    assert_eq!(info.id, sleeper.id());
    assert_eq!(info.state, TaskState::Waiting);
    assert_eq!(info.waiting_on, Some("sleep"));
    assert_eq!(info.spawned_at.file(), file!());
    assert_eq!(info.spawned_at.line(), line);
    assert!(!info.cancelling);
    let w = dump.find("waiter").expect("listed");
    assert_eq!((w.state, w.waiting_on), (TaskState::Waiting, Some("future")));

    // One line per task, in id order.
    let text = dump.to_string();
    let lines: Vec<&str> = text.lines().collect();
    assert_eq!(lines.len(), 2, "{text}");
    assert_eq!(
        lines[0],
        format!(
            "task {} \"sleeper\": waiting on sleep, spawned at {}:{line}:{}",
            sleeper.id(),
            file!(),
            info.spawned_at.column()
        )
    );
    assert!(lines[1].contains("\"waiter\": waiting on future"), "{text}");

    // Seen from inside: the dumping task runs; the woken one is scheduled.
    let sleeper_ref = sleeper.as_ref();
    let seen = lp
        .run_until_complete(async move {
            gate.set_result(()).unwrap();
            sleeper_ref.cancel();
            ringloop::task_dump()
        })
        .unwrap();
    let me = seen.tasks.last().expect("the main task is listed");
    assert_eq!(me.state, TaskState::Running);
    assert_eq!(seen.find("waiter").unwrap().state, TaskState::Scheduled);
    assert!(seen.find("sleeper").unwrap().cancelling);
    settle(lp);
    assert!(lp.task_dump().tasks.is_empty(), "{}", lp.task_dump());
    assert!(ringloop::task_dump().tasks.is_empty());
}

#[ringloop::test]
fn task_dump_names_the_pending_io_operation(lp: &EventLoop) {
    let any: SocketAddr = "127.0.0.1:0".parse().unwrap();
    let sock = Rc::new(
        lp.run_until_complete(async move { UdpSocket::bind(any).unwrap() })
            .unwrap(),
    );
    let s = sock.clone();
    let t = lp.create_task(async move { s.recv(vec![0u8; 16]).await.0 }).unwrap();
    t.set_name("receiver");
    settle(lp);
    let dump = lp.task_dump();
    let info = dump.find("receiver").expect("listed");
    assert_eq!(info.state, TaskState::Waiting);
    assert_eq!(info.waiting_on, Some("RecvMsg"), "{dump}");
    t.cancel();
    settle(lp);
    assert!(t.is_cancelled());
}

#[ringloop::test]
fn task_spawn_location_through_spawn(lp: &EventLoop) {
    let at = Rc::new(Cell::new(None));
    let a = at.clone();
    lp.run_until_complete(async move {
        let line = line!() + 1;
        let t = spawn(async {});
        a.set(Some((t.as_ref().spawned_at().line(), line)));
        t.await.unwrap();
    })
    .unwrap();
    let (got, want) = at.get().unwrap();
    assert_eq!(got, want);
}

#[ringloop::test]
fn spawn_locations_of_gather_task_group_and_loop_handle(lp: &EventLoop) {
    let gate: LoopFuture<()> = lp.create_future();
    let (g1, g2, g3) = (gate.clone(), gate.clone(), gate.clone());
    // Outside a run, the spawn functions use this thread's loop (`lp`).
    let gather_line = line!() + 1;
    let gathered = ringloop::gather([g1, g2]);
    let group = ringloop::TaskGroup::new();
    let group_line = line!() + 1;
    let child = group.spawn(g3);
    child.set_name("child");
    let handle = lp.handle();
    let remote_line = std::thread::spawn(move || {
        let line = line!() + 1;
        let remote = handle.spawn(async { 5 }).unwrap();
        drop(remote);
        line
    })
    .join()
    .unwrap();
    let dump = lp.task_dump();
    let at = |line: u32| dump.tasks.iter().filter(|t| t.spawned_at.line() == line).count();
    // Two children and the gather itself; the group's child.
    assert_eq!(at(gather_line), 3, "{dump}");
    assert_eq!(at(group_line), 1, "{dump}");
    assert_eq!(dump.find("child").unwrap().spawned_at.line(), group_line);
    assert!(dump.tasks.iter().all(|t| t.spawned_at.file() == file!()), "{dump}");
    // The remote spawn reaches the loop through its cross-thread queue.
    settle(lp);
    let dump = lp.task_dump();
    assert!(
        dump.tasks.iter().all(|t| t.spawned_at.line() != remote_line),
        "done by now: {dump}"
    );
    let waits: Vec<_> = dump
        .tasks
        .iter()
        .filter(|t| t.spawned_at.line() == gather_line)
        .map(|t| t.waiting_on)
        .collect();
    assert_eq!(waits, [Some("future"), Some("future"), Some("gather")]);
    let seen = Rc::new(Cell::new(0));
    let s = seen.clone();
    let handle = lp.handle();
    let remote_line = std::thread::spawn(move || {
        let line = line!() + 1;
        drop(handle.spawn(std::future::pending::<()>()).unwrap());
        line
    })
    .join()
    .unwrap();
    lp.run_until_complete(async move {
        ringloop::yield_now().await;
        let dump = ringloop::task_dump();
        s.set(dump.tasks.iter().filter(|t| t.spawned_at.line() == remote_line).count());
    })
    .unwrap();
    assert_eq!(seen.get(), 1);
    gate.set_result(()).unwrap();
    lp.run_until_complete(gathered).unwrap().unwrap();
    lp.run_until_complete(async move { group.join().await })
        .unwrap()
        .unwrap();
}

#[cfg(feature = "tracing")]
mod traced {
    //! A tiny capturing `tracing` subscriber: every event with its level,
    //! target and fields (as text).

    use std::collections::HashMap;
    use std::fmt;
    use std::sync::{Arc, Mutex};
    use std::time::Duration;

    use ringloop::{DriverChoice, DriverKind, EventLoop};
    use tracing::field::{Field, Visit};
    use tracing::span::{Attributes, Id, Record};
    use tracing::{Event, Level, Metadata, Subscriber};

    #[derive(Debug, Clone)]
    pub struct Captured {
        pub level: Level,
        pub target: String,
        pub fields: HashMap<String, String>,
    }

    impl Captured {
        fn field(&self, name: &str) -> Option<&str> {
            self.fields.get(name).map(String::as_str)
        }
    }

    #[derive(Clone, Default)]
    struct Capture(Arc<Mutex<Vec<Captured>>>);

    struct Fields<'a>(&'a mut HashMap<String, String>);

    impl Visit for Fields<'_> {
        fn record_debug(&mut self, field: &Field, value: &dyn fmt::Debug) {
            self.0.insert(field.name().to_owned(), format!("{value:?}"));
        }
        fn record_str(&mut self, field: &Field, value: &str) {
            self.0.insert(field.name().to_owned(), value.to_owned());
        }
    }

    impl Subscriber for Capture {
        fn enabled(&self, _: &Metadata<'_>) -> bool {
            true
        }
        fn new_span(&self, _: &Attributes<'_>) -> Id {
            Id::from_u64(1)
        }
        fn record(&self, _: &Id, _: &Record<'_>) {}
        fn record_follows_from(&self, _: &Id, _: &Id) {}
        fn event(&self, event: &Event<'_>) {
            let mut fields = HashMap::new();
            event.record(&mut Fields(&mut fields));
            self.0.lock().unwrap().push(Captured {
                level: *event.metadata().level(),
                target: event.metadata().target().to_owned(),
                fields,
            });
        }
        fn enter(&self, _: &Id) {}
        fn exit(&self, _: &Id) {}
    }

    /// Runs `f` with a capturing subscriber as this thread's default and
    /// returns the events of target "ringloop".
    fn capture(f: impl FnOnce()) -> Vec<Captured> {
        let cap = Capture::default();
        tracing::subscriber::with_default(cap.clone(), f);
        let events = cap.0.lock().unwrap();
        events.iter().filter(|e| e.target == "ringloop").cloned().collect()
    }

    #[ringloop::test]
    fn slow_callback_is_a_warning_with_the_task_name(lp: &EventLoop) {
        lp.set_debug(true);
        lp.set_slow_callback_duration(Duration::from_millis(20));
        let mut id = 0;
        let events = capture(|| {
            let t = lp
                .create_task(async {
                    // Blocks the loop on purpose: this step is the slow one.
                    std::thread::sleep(Duration::from_millis(40));
                })
                .unwrap();
            t.set_name("sluggish");
            id = t.id();
            lp.run_until_complete(t).unwrap().unwrap();
        });
        // Only the named task's step is slow by construction (on a loaded
        // machine another step might cross the threshold too).
        let slow: Vec<&Captured> = events
            .iter()
            .filter(|e| e.field("kind") == Some("slow_callback") && e.field("task.name") == Some("sluggish"))
            .collect();
        assert_eq!(slow.len(), 1, "{events:#?}");
        let e = slow[0];
        assert_eq!(e.level, Level::WARN);
        assert_eq!(e.target, "ringloop");
        assert_eq!(e.field("task.name"), Some("sluggish"), "{e:#?}");
        assert_eq!(e.field("task.id"), Some(id.to_string().as_str()), "{e:#?}");
        let ms: f64 = e.field("duration_ms").unwrap().parse().unwrap();
        assert!(ms >= 20.0, "{e:#?}");
        assert!(e.field("message").unwrap().contains("task sluggish took"), "{e:#?}");
    }

    #[ringloop::test]
    fn slow_plain_callback_is_a_warning_without_a_task(lp: &EventLoop) {
        lp.set_debug(true);
        lp.set_slow_callback_duration(Duration::from_millis(20));
        let events = capture(|| {
            lp.call_soon(|| std::thread::sleep(Duration::from_millis(40))).unwrap();
            lp.run_until_complete(ringloop::yield_now()).unwrap();
        });
        let e = events
            .iter()
            .find(|e| e.field("kind") == Some("slow_callback") && e.field("task.name").is_none())
            .unwrap_or_else(|| panic!("no slow callback event in {events:#?}"));
        assert_eq!(e.level, Level::WARN);
        assert_eq!(e.field("task.id"), None);
        assert!(
            e.field("message").unwrap().starts_with("Executing callback took"),
            "{e:#?}"
        );
    }

    #[ringloop::test]
    fn unretrieved_task_panic_is_an_error_with_task_name_and_id(lp: &EventLoop) {
        let mut id = 0;
        let events = capture(|| {
            let t = lp.create_task(async { panic!("boom in a task") }).unwrap();
            t.set_name("doomed");
            id = t.id();
            lp.run_until_complete(async {
                for _ in 0..3 {
                    ringloop::yield_now().await;
                }
            })
            .unwrap();
            assert!(t.has_panicked());
            drop(t);
        });
        assert_eq!(events.len(), 1, "{events:#?}");
        let e = &events[0];
        assert_eq!(e.level, Level::ERROR);
        assert_eq!(e.field("kind"), Some("task_panic_not_retrieved"));
        assert_eq!(e.field("task.name"), Some("doomed"));
        assert_eq!(e.field("task.id"), Some(id.to_string().as_str()));
        assert_eq!(e.field("panic"), Some("boom in a task"));
        assert!(e.field("message").unwrap().contains("never retrieved"), "{e:#?}");
    }

    #[ringloop::test]
    fn callback_panic_is_an_error_without_a_task(lp: &EventLoop) {
        let events = capture(|| {
            lp.call_soon(|| panic!("boom in a callback")).unwrap();
            lp.run_until_complete(ringloop::yield_now()).unwrap();
        });
        assert_eq!(events.len(), 1, "{events:#?}");
        let e = &events[0];
        assert_eq!(e.level, Level::ERROR);
        assert_eq!(e.field("kind"), Some("callback_panicked"));
        assert_eq!(e.field("panic"), Some("boom in a callback"));
        assert_eq!(e.field("task.name"), None);
        assert_eq!(e.field("task.id"), None);
    }

    #[ringloop::test]
    fn debug_output_is_a_debug_event(lp: &EventLoop) {
        let choice = match lp.driver_kind() {
            DriverKind::Uring => DriverChoice::Uring,
            _ => DriverChoice::Fallback,
        };
        let events = capture(|| {
            let other = EventLoop::builder().driver(choice).build().unwrap();
            other.close().unwrap();
        });
        let want = format!("event loop on the {} backend", lp.driver_kind());
        let e = events
            .iter()
            .find(|e| e.field("message") == Some(want.as_str()))
            .unwrap_or_else(|| panic!("no {want:?} event in {events:#?}"));
        assert_eq!(e.level, Level::DEBUG);
    }
}
