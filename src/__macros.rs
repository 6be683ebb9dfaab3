//! What `#[ringloop::main]` and `#[ringloop::test]` expand to call (not a
//! public API: names and signatures change with the macros).

use crate::runtime::{ExceptionContext, ExceptionHandler, ExceptionKind, default_exception_handler};
use crate::{DriverChoice, DriverKind, EventLoop};
use std::cell::RefCell;
use std::fmt::Debug;
use std::future::Future;
use std::rc::Rc;
use std::time::Duration;

/// `#[ringloop::main]`: runs `fut` with [`crate::run`].
pub fn main<F>(fut: F) -> F::Output
where
    F: Future + 'static,
    F::Output: 'static,
{
    crate::run(fut).unwrap_or_else(|e| panic!("#[ringloop::main]: the event loop failed: {e}"))
}

/// The options of one `#[ringloop::test]`.
pub struct Options {
    /// `Builder::virtual_clock`.
    pub virtual_clock: bool,
    /// Debug mode with this slow-callback threshold; any slow callback fails the test.
    pub slow_callback_ms: Option<u64>,
}

/// What a test function may return: `()` or `Result<(), E>` (an `Err` fails the test).
pub trait Outcome {
    /// Panics when the outcome is a failure.
    fn check(self);
}

impl Outcome for () {
    fn check(self) {}
}

impl<E: Debug> Outcome for Result<(), E> {
    fn check(self) {
        if let Err(e) = self {
            panic!("the test returned an error: {e:?}");
        }
    }
}

/// Whether `RINGLOOP_REQUIRE_URING=1`: an io_uring loop that cannot be built
/// fails the test instead of skipping it.
pub fn require_uring() -> bool {
    std::env::var("RINGLOOP_REQUIRE_URING").is_ok_and(|v| v == "1")
}

/// Async tests: runs the test's future as the loop's main future.
pub fn complete<F>(lp: &EventLoop, fut: F) -> F::Output
where
    F: Future + 'static,
    F::Output: 'static,
{
    lp.run_until_complete(fut)
        .unwrap_or_else(|e| panic!("the test's future did not complete: {e}"))
}

/// One generated test: builds a loop on `choice` (skipping an unavailable
/// io_uring unless [`require_uring`]), checks it really runs that backend,
/// runs `body` on it and, with `slow_callback_ms`, fails if any callback or
/// task step was slow.
pub fn run_test<R: Outcome>(choice: DriverChoice, opts: Options, name: &str, body: impl FnOnce(&EventLoop) -> R) {
    let Some(lp) = build_loop(choice, &opts) else { return };
    let expect = match choice {
        DriverChoice::Uring => DriverKind::Uring,
        _ => DriverKind::Fallback,
    };
    assert_eq!(lp.driver_kind(), expect);
    eprintln!("[{}] {name} on {}", lp.driver_kind(), lp.driver_description());
    let watch = opts.slow_callback_ms.map(|_| SlowWatch::install(&lp));
    body(&lp).check();
    if let Some(watch) = watch {
        watch.check(&lp);
    }
}

/// A loop of `choice` with `opts`; `None` (after printing `SKIP [uring]: ...`)
/// when io_uring cannot be set up and [`require_uring`] is off.
pub fn build_loop(choice: DriverChoice, opts: &Options) -> Option<EventLoop> {
    let mut builder = EventLoop::builder().driver(choice).virtual_clock(opts.virtual_clock);
    if let Some(ms) = opts.slow_callback_ms {
        builder = builder.debug(true).slow_callback_duration(Duration::from_millis(ms));
    }
    match builder.build() {
        Ok(lp) => Some(lp),
        Err(e) if choice == DriverChoice::Uring && !require_uring() => {
            eprintln!("SKIP [uring]: io_uring unavailable here: {e}");
            None
        }
        Err(e) => panic!("cannot build a {choice:?} loop: {e}"),
    }
}

/// Records the slow-callback reports of debug mode (other reports go to the
/// default handler, as without the watch).
struct SlowWatch {
    slow: Rc<RefCell<Vec<String>>>,
    handler: ExceptionHandler,
}

impl SlowWatch {
    fn install(lp: &EventLoop) -> SlowWatch {
        let slow = Rc::new(RefCell::new(Vec::new()));
        let seen = slow.clone();
        lp.set_exception_handler(Some(move |ctx: &ExceptionContext| match ctx.kind {
            ExceptionKind::SlowCallback(_) => seen.borrow_mut().push(ctx.message.clone()),
            _ => default_exception_handler(ctx),
        }));
        let handler = lp.get_exception_handler().expect("the handler was just set");
        SlowWatch { slow, handler }
    }

    fn check(self, lp: &EventLoop) {
        let kept = lp
            .get_exception_handler()
            .is_some_and(|h| Rc::ptr_eq(&h, &self.handler));
        assert!(
            kept,
            "slow_callback_ms: the test replaced the exception handler, so slow callbacks went unwatched"
        );
        let slow = self.slow.borrow();
        assert!(slow.is_empty(), "slow callbacks blocked the loop: {slow:?}");
    }
}
