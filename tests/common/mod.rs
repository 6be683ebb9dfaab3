//! Helpers shared by the integration tests: the one test-support module
//! (`mod common;` in a test file).
//!
//! Behaviour tests run once per backend through `#[ringloop::test]`
//! (`<test>::uring` and `<test>::fallback`); [`run_on`] and
//! [`require_uring`] are the same harness for the few tests that need to do
//! something before the loop is built; [`run_child`] / [`child_loop`] run
//! one helper test in a child process. [`net`] holds the network
//! fault/stress helpers (PRNG, checksum, fd limits, echo server),
//! [`examples`] builds the examples.
#![allow(dead_code)]

pub mod examples;
pub mod net;

use ringloop::{DriverChoice, DriverKind, EventLoop};
use std::process::Command;

/// Whether `RINGLOOP_REQUIRE_URING=1` (then an unavailable io_uring fails
/// instead of skipping).
pub fn require_uring() -> bool {
    ringloop::__macros::require_uring()
}

/// Runs `body` on a loop of `choice`, exactly as a `#[ringloop::test]`
/// variant does (skip message, backend check, driver description).
pub fn run_on(choice: DriverChoice, virtual_clock: bool, name: &str, body: fn(&EventLoop)) {
    let opts = ringloop::__macros::Options {
        virtual_clock,
        slow_callback_ms: None,
    };
    ringloop::__macros::run_test(choice, opts, name, body);
}

/// Number of open file descriptors of this process.
pub fn open_fds() -> usize {
    // The directory handle itself is one entry; it is open at every count,
    // so comparisons are unaffected.
    std::fs::read_dir("/proc/self/fd").unwrap().count()
}

// ------------------------------------------------------------ child processes
//
// Process-wide state (fd limits, fd counts, signal dispositions) is tested
// in a re-run of this test binary that runs one `#[ignore]`d helper test.

/// The `DriverChoice` that builds a loop like `lp`.
pub fn choice_of(lp: &EventLoop) -> DriverChoice {
    match lp.driver_kind() {
        DriverKind::Uring => DriverChoice::Uring,
        _ => DriverChoice::Fallback,
    }
}

/// Environment variable telling a child which backend to use.
pub const CHILD_BACKEND: &str = "RINGLOOP_TEST_CHILD_BACKEND";

/// Re-runs this test binary with only the `#[ignore]`d helper test `name`,
/// asking it for `lp`'s backend; panics with the child's output unless it
/// succeeded. Returns the child's stdout.
pub fn run_child(lp: &EventLoop, name: &str, env: &[(&str, &str)]) -> String {
    let exe = std::env::current_exe().unwrap();
    let mut cmd = Command::new(exe);
    cmd.args(["--ignored", "--exact", name, "--nocapture", "--test-threads=1"]);
    cmd.env(CHILD_BACKEND, lp.driver_kind().to_string());
    for (k, v) in env {
        cmd.env(k, v);
    }
    let out = cmd.output().unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    let stderr = String::from_utf8_lossy(&out.stderr);
    eprintln!("--- child {name} [{}] stderr:\n{stderr}--- end", lp.driver_kind());
    assert!(
        out.status.success(),
        "child {name} failed ({:?}):\n{stdout}\n{stderr}",
        out.status
    );
    assert!(
        stdout.contains("1 passed"),
        "child {name} ran no test (name typo?):\n{stdout}"
    );
    stdout
}

/// In a child started by [`run_child`]: the loop for the requested backend
/// (`None` when the helper runs directly, e.g. `cargo test -- --ignored`).
pub fn child_loop(builder: ringloop::Builder) -> Option<EventLoop> {
    let choice = match std::env::var(CHILD_BACKEND).as_deref() {
        Ok("uring") => DriverChoice::Uring,
        Ok("fallback") => DriverChoice::Fallback,
        _ => {
            eprintln!("helper test: only meaningful when run by its parent test; skipping");
            return None;
        }
    };
    Some(builder.driver(choice).build().expect("child: cannot build the loop"))
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

/// A loop of `choice` (real or virtual clock); `None` after printing
/// `SKIP [uring]: ...` when io_uring cannot be set up here and
/// `RINGLOOP_REQUIRE_URING` is off.
pub fn build(choice: DriverChoice, virtual_clock: bool) -> Option<EventLoop> {
    ringloop::__macros::build_loop(
        choice,
        &ringloop::__macros::Options {
            virtual_clock,
            slow_callback_ms: None,
        },
    )
}

/// A local TCP port that refuses connections for as long as the returned
/// socket lives: bound, never listening, so a connect gets a reset
/// (`ConnectionRefused`) and no other socket of a parallel test can take
/// the port (binding a listener and dropping it would free the port for
/// the next `bind(":0")`, which then accepts the "refused" connection).
pub fn refusing_port() -> (socket2::Socket, std::net::SocketAddr) {
    use socket2::{Domain, SockAddr, Socket, Type};
    let s = Socket::new(Domain::IPV4, Type::STREAM, None).unwrap();
    s.bind(&SockAddr::from(std::net::SocketAddr::from(([127, 0, 0, 1], 0))))
        .unwrap();
    let addr = s.local_addr().unwrap().as_socket().unwrap();
    (s, addr)
}

/// The UDP counterpart of [`refusing_port`]: a socket that holds a local
/// port but takes datagrams only from `127.0.0.1:9` (it is connected
/// there), so a datagram from anywhere else finds no socket and draws an
/// ICMP port-unreachable, and no parallel test's `bind(":0")` gets the port.
pub fn refusing_udp_port() -> (std::net::UdpSocket, std::net::SocketAddr) {
    let s = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
    s.connect("127.0.0.1:9").unwrap();
    let addr = s.local_addr().unwrap();
    (s, addr)
}
