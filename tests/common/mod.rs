//! Test harness: every behaviour test runs once per backend.
//!
//! `both_backends! { fn name(lp) { ... } }` generates `name::uring` and
//! `name::fallback` tests; `both_backends_vt!` does the same with a virtual
//! clock (timers jump instead of sleeping). If io_uring cannot be set up
//! here (old kernel, seccomp, or the `fallback` feature), the uring variant
//! says so on stderr and returns, unless `RINGLOOP_REQUIRE_URING=1`, which
//! `.ci/run` sets for the default-feature run so it cannot pass silently.
#![allow(dead_code)]

use ringloop::{DriverChoice, DriverKind, EventLoop};

pub fn build(choice: DriverChoice, virtual_clock: bool) -> Option<EventLoop> {
    match EventLoop::builder().driver(choice).virtual_clock(virtual_clock).build() {
        Ok(lp) => Some(lp),
        Err(e) if choice == DriverChoice::Uring && !require_uring() => {
            eprintln!("SKIP [uring]: io_uring unavailable here: {e}");
            None
        }
        Err(e) => panic!("cannot build a {choice:?} loop: {e}"),
    }
}

pub fn require_uring() -> bool {
    std::env::var("RINGLOOP_REQUIRE_URING")
        .map(|v| v == "1")
        .unwrap_or(false)
}

pub fn run_on(choice: DriverChoice, virtual_clock: bool, name: &str, body: fn(&EventLoop)) {
    let Some(lp) = build(choice, virtual_clock) else { return };
    let expect = match choice {
        DriverChoice::Uring => DriverKind::Uring,
        _ => DriverKind::Readiness,
    };
    assert_eq!(lp.driver_kind(), expect);
    eprintln!("[{}] {name} on {}", lp.driver_kind(), lp.driver_description());
    body(&lp);
}

#[macro_export]
macro_rules! both_backends_impl {
    ($vt:expr; $( $(#[$m:meta])* fn $name:ident($lp:ident) $body:block )*) => {
        $(
            mod $name {
                #[allow(unused_imports)]
                use super::*;
                $(#[$m])*
                fn body($lp: &ringloop::EventLoop) $body
                #[test]
                fn uring() {
                    $crate::common::run_on(ringloop::DriverChoice::Uring, $vt, stringify!($name), body)
                }
                #[test]
                fn fallback() {
                    $crate::common::run_on(ringloop::DriverChoice::Fallback, $vt, stringify!($name), body)
                }
            }
        )*
    };
}

/// One test per backend, real clock.
#[macro_export]
macro_rules! both_backends {
    ($($t:tt)*) => { $crate::both_backends_impl!(false; $($t)*); };
}

/// One test per backend, virtual clock.
#[macro_export]
macro_rules! both_backends_vt {
    ($($t:tt)*) => { $crate::both_backends_impl!(true; $($t)*); };
}

/// A shared, ordered log for asserting orderings.
#[derive(Clone, Default)]
pub struct Log(std::rc::Rc<std::cell::RefCell<Vec<String>>>);

impl Log {
    pub fn new() -> Log {
        Log::default()
    }
    pub fn push(&self, s: impl Into<String>) {
        self.0.borrow_mut().push(s.into());
    }
    pub fn take(&self) -> Vec<String> {
        std::mem::take(&mut *self.0.borrow_mut())
    }
    pub fn get(&self) -> Vec<String> {
        self.0.borrow().clone()
    }
}
