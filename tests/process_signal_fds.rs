//! Children (with pipes, waited for, killed or dropped) and signal streams
//! (including ones dropped while their wait is armed) leave no file
//! descriptor behind.
//!
//! This file holds only these tests, serialized by a lock taken before the
//! loop is built and released after it is dropped, so counting
//! `/proc/self/fd` is not disturbed by the other backend's loop (its ring or
//! epoll fd and eventfd) or by other tests of the same process.

mod common;

use common::open_fds;

use std::path::Path;
use std::sync::Mutex;
use std::time::Duration;

use ringloop::process::{Command, Stdio};
use ringloop::signal::{self, SignalKind};
use ringloop::{DriverChoice, EventLoop, sleep, timeout};

static SERIAL: Mutex<()> = Mutex::new(());

/// Runs `body` on `choice`'s loop with the lock held from before the loop
/// is built until after it is dropped.
fn serial(choice: DriverChoice, body: fn(&EventLoop)) {
    let _serial = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    common::run_on(choice, false, "children_and_signal_streams_leave_no_fds_behind", body);
}

mod children_and_signal_streams_leave_no_fds_behind {
    use super::*;

    #[test]
    fn uring() {
        serial(DriverChoice::Uring, body);
    }

    #[test]
    fn fallback() {
        serial(DriverChoice::Fallback, body);
    }

    fn body(lp: &EventLoop) {
        // Warm-up: the process-wide signal pipe and the first pool threads
        // are created once and kept for good.
        lp.run_until_complete(async {
            let s = signal::signal(SignalKind::user_defined1()).unwrap();
            drop(s);
            Command::new("true").status().await.unwrap();
        })
        .unwrap();
        let before = open_fds();
        lp.run_until_complete(async {
            let mut pids = Vec::new();
            for i in 0..20 {
                let mut child = Command::new("sh")
                    .args(["-c", "cat; echo err >&2"])
                    .stdin(Stdio::piped())
                    .stdout(Stdio::piped())
                    .stderr(Stdio::piped())
                    .spawn()
                    .unwrap();
                pids.push(child.id().unwrap());
                match i % 3 {
                    0 => {
                        let out = child.communicate(b"data".as_slice()).await.unwrap();
                        assert_eq!(out.stdout, b"data");
                    }
                    1 => {
                        child.kill().await.unwrap();
                    }
                    _ => drop(child), // stdin closes: it exits and is reaped
                }
            }
            for _ in 0..20 {
                let mut s = signal::signal(SignalKind::user_defined2()).unwrap();
                // Armed, then dropped in flight.
                assert!(timeout(Duration::from_millis(1), s.recv()).await.is_err());
            }
            timeout(Duration::from_secs(20), async {
                while pids.iter().any(|pid| Path::new(&format!("/proc/{pid}")).exists()) {
                    sleep(Duration::from_millis(10)).await;
                }
            })
            .await
            .expect("children not reaped");
            // Let cancelled io_uring operations deliver their final CQEs.
            for _ in 0..10 {
                sleep(Duration::from_millis(5)).await;
            }
        })
        .unwrap();
        assert_eq!(open_fds(), before, "fds leaked");
    }
}
