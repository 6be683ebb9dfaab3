//! `#[ringloop::main]` and `#[ringloop::test]`, tested by using them.

use ringloop::{DriverChoice, DriverKind, EventLoop, sleep, spawn};
use std::cell::Cell;
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::rc::Rc;
use std::time::Duration;

/// The backend a test should be running on, from the generated test's name.
fn expected_kind() -> DriverKind {
    let name = std::thread::current().name().unwrap_or_default().to_owned();
    if name.ends_with("::uring") {
        DriverKind::Uring
    } else {
        assert!(name.ends_with("::fallback"), "unexpected test name {name:?}");
        DriverKind::Fallback
    }
}

#[ringloop::test]
async fn async_body_runs_on_the_named_backend() {
    let lp = ringloop::current().unwrap();
    assert!(lp.is_running());
    assert_eq!(lp.driver_kind(), expected_kind());
    assert_eq!(spawn(async { 6 * 7 }).await.unwrap(), 42);
}

#[ringloop::test]
fn sync_body_gets_the_loop(lp: &EventLoop) {
    assert_eq!(lp.driver_kind(), expected_kind());
    assert!(!lp.is_running());
    let out = lp.run_until_complete(async { spawn(async { "done" }).await.unwrap() });
    assert_eq!(out.unwrap(), "done");
}

#[ringloop::test]
async fn async_body_may_return_ok() -> Result<(), String> {
    sleep(Duration::from_millis(1)).await;
    Ok(())
}

#[ringloop::test(backend = "fallback")]
#[should_panic(expected = "the test returned an error: \"boom\"")]
async fn an_err_result_fails_the_test() -> Result<(), String> {
    Err("boom".to_owned())
}

#[ringloop::test(virtual_clock)]
fn virtual_clock_jumps(lp: &EventLoop) {
    let start = lp.time();
    lp.run_until_complete(sleep(Duration::from_secs(3600))).unwrap();
    // An hour of loop time passed without an hour of waiting (the test
    // would time out otherwise).
    assert!(lp.time() - start >= Duration::from_secs(3600));
}

#[ringloop::test(backend = "uring")]
fn only_uring(lp: &EventLoop) {
    assert_eq!(lp.driver_kind(), DriverKind::Uring);
}

#[ringloop::test(backend = "fallback", virtual_clock = false)]
fn only_fallback(lp: &EventLoop) {
    assert_eq!(lp.driver_kind(), DriverKind::Fallback);
}

#[ringloop::test(slow_callback_ms = 10_000)]
async fn quick_callbacks_pass_the_slow_callback_check() {
    let lp = ringloop::current().unwrap();
    assert!(lp.get_debug());
    for _ in 0..10 {
        spawn(async {}).await.unwrap();
    }
}

/// Blocks the loop for 100 ms in a callback, with a 10 ms threshold: must
/// fail. Run by `slow_callback_fails_the_test` below, which catches it.
#[ringloop::test(slow_callback_ms = 10)]
#[ignore = "run in-process by slow_callback_fails_the_test"]
fn blocking_callback(lp: &EventLoop) {
    let ran = Rc::new(Cell::new(false));
    let r = ran.clone();
    lp.call_soon(move || {
        std::thread::sleep(Duration::from_millis(100));
        r.set(true);
    })
    .unwrap();
    lp.run_until_complete(sleep(Duration::from_millis(1))).unwrap();
    assert!(ran.get());
}

/// The same, the task step blocking.
#[ringloop::test(slow_callback_ms = 10)]
#[ignore = "run in-process by slow_callback_fails_the_test"]
async fn blocking_task_step() {
    std::thread::sleep(Duration::from_millis(100));
}

/// Replacing the harness's exception handler would silence the check.
#[ringloop::test(slow_callback_ms = 10)]
#[ignore = "run in-process by slow_callback_fails_the_test"]
fn replaced_handler(lp: &EventLoop) {
    lp.set_exception_handler(Some(|_: &ringloop::ExceptionContext| {}));
}

fn panic_message(test: fn()) -> Option<String> {
    let err = catch_unwind(AssertUnwindSafe(test)).err()?;
    Some(match err.downcast::<String>() {
        Ok(s) => *s,
        Err(e) => e
            .downcast_ref::<&str>()
            .copied()
            .unwrap_or("<non-string panic>")
            .to_owned(),
    })
}

#[test]
fn slow_callback_fails_the_test() {
    let uring = EventLoop::builder().driver(DriverChoice::Uring).build().is_ok();
    // (the uring test, the fallback test, what the failure says)
    type Case = (fn(), fn(), &'static str);
    let cases: [Case; 3] = [
        (
            blocking_callback::uring,
            blocking_callback::fallback,
            "slow callbacks blocked the loop",
        ),
        (
            blocking_task_step::uring,
            blocking_task_step::fallback,
            "slow callbacks blocked the loop",
        ),
        (
            replaced_handler::uring,
            replaced_handler::fallback,
            "replaced the exception handler",
        ),
    ];
    for (on_uring, on_fallback, expected) in cases {
        let msg = panic_message(on_fallback).expect("the fallback test should have failed");
        assert!(msg.contains(expected), "{msg}");
        match panic_message(on_uring) {
            Some(msg) => assert!(msg.contains(expected), "{msg}"),
            None => assert!(!uring, "the uring test should have failed"),
        }
    }
}

#[ringloop::main]
async fn app() -> Result<u32, std::io::Error> {
    sleep(Duration::from_millis(1)).await;
    Ok(spawn(async { 7 }).await.unwrap())
}

#[ringloop::main]
async fn app_unit() {
    assert!(ringloop::current().unwrap().is_running());
}

#[test]
fn main_runs_the_future_to_completion() {
    assert_eq!(app().unwrap(), 7);
    app_unit();
    // The loop `main` created is closed: a later `main` makes a new one.
    assert_eq!(app().unwrap(), 7);
}

#[test]
fn generated_test_names() {
    let out = std::process::Command::new(std::env::current_exe().unwrap())
        .args(["--list", "--ignored"])
        .output()
        .unwrap();
    let list = String::from_utf8(out.stdout).unwrap();
    for name in [
        "blocking_callback::uring: test",
        "blocking_callback::fallback: test",
        "blocking_task_step::fallback: test",
    ] {
        assert!(list.contains(name), "{name} missing from:\n{list}");
    }
    let out = std::process::Command::new(std::env::current_exe().unwrap())
        .arg("--list")
        .output()
        .unwrap();
    let list = String::from_utf8(out.stdout).unwrap();
    for name in [
        "sync_body_gets_the_loop::uring: test",
        "sync_body_gets_the_loop::fallback: test",
        "only_uring::uring: test",
        "only_fallback::fallback: test",
    ] {
        assert!(list.contains(name), "{name} missing from:\n{list}");
    }
    assert!(!list.contains("only_uring::fallback"));
    assert!(!list.contains("only_fallback::uring"));
}
