//! Child processes (asyncio's `create_subprocess_exec`, tokio's
//! `tokio::process`).
//!
//! ```
//! use ringloop::EventLoop;
//! use ringloop::process::{Command, Stdio};
//!
//! let lp = EventLoop::new().unwrap();
//! lp.run_until_complete(async {
//!     // Capture everything (asyncio: `await proc.communicate()`).
//!     let out = Command::new("echo").arg("hello").output().await.unwrap();
//!     assert_eq!(out.stdout, b"hello\n");
//!
//!     // Talk to a child through its pipes.
//!     let mut child = Command::new("cat")
//!         .stdin(Stdio::piped())
//!         .stdout(Stdio::piped())
//!         .spawn()
//!         .unwrap();
//!     let stdin = child.stdin.take().unwrap();
//!     let (res, _) = stdin.write_all(b"ping".as_slice()).await;
//!     res.unwrap();
//!     drop(stdin); // EOF for cat
//!     let (res, echoed) = child.stdout.take().unwrap().read_to_end(Vec::new()).await;
//!     res.unwrap();
//!     assert_eq!(echoed, b"ping");
//!     assert!(child.wait().await.unwrap().success());
//! })
//! .unwrap();
//! ```
//!
//! [`Command`] wraps [`std::process::Command`] (which does the fork/exec,
//! reports exec failures such as a missing program as `NotFound`, and
//! closes inherited fds); ringloop adds the asynchronous parts: the pipes
//! are owned-buffer streams on the loop's driver, and the exit is awaited
//! without blocking the loop.
//!
//! # Reaping without SIGCHLD
//!
//! No SIGCHLD handler is installed (it would be process-wide and fight with
//! the program's own). On Linux 5.3+ every child gets a pidfd
//! (`pidfd_open`); on io_uring the exit is awaited with
//! `IORING_OP_WAITID` when the ring's probe reports it (Linux 6.5+), else
//! with a `POLL_ADD` on the pidfd followed by `waitid(P_PIDFD, WNOHANG)`; on
//! the fallback backend the pidfd is registered for readability, then
//! `waitid`. Without pidfds (ENOSYS, a seccomp filter, or not Linux) a
//! blocking `waitpid` runs on the loop's blocking pool, occupying one pool
//! thread per waited-for child.
//!
//! The wait is kept in the [`Child`], not in the future returned by
//! [`Child::wait`]: dropping that future (e.g. on a `timeout`) loses
//! nothing, a later `wait` or `try_wait` picks the result up.
//!
//! # Dropping a `Child`
//!
//! Like tokio (and unlike asyncio, which warns), dropping a `Child` does not
//! kill the process unless [`Command::kill_on_drop`] was set. It is still
//! reaped — never left a zombie — by a detached task named
//! `ringloop child reaper (pid N)` (it shows up in
//! [`all_tasks()`](crate::all_tasks)); if the loop is closed first, the child
//! goes to a process-wide orphan list that every later spawn (on any loop)
//! sweeps. A child that outlives every loop stays a zombie until the program
//! exits, as with tokio.
//!
//! A program that sets SIGCHLD to `SIG_IGN` (auto-reaping), or reaps with
//! `waitpid(-1, …)` elsewhere, takes the exit status away: `wait` then
//! fails with `ECHILD`.
//!
//! # Pipes
//!
//! [`ChildStdin`], [`ChildStdout`] and [`ChildStderr`] are owned-buffer
//! streams (`let (res, buf) = out.read(buf).await;`). Writing to a child
//! that closed its stdin fails with `BrokenPipe` (Rust programs ignore
//! SIGPIPE). What a dropped (cancelled) read or write may already have done
//! is as for sockets: on io_uring a read may still consume bytes, a write may
//! have written some.

pub use std::process::{ExitStatus, Output, Stdio};

mod child;
mod command;
mod pipe;
mod reap;
mod shell;
#[cfg(test)]
mod tests;

pub use child::Child;
pub use command::Command;
pub use pipe::{ChildStderr, ChildStdin, ChildStdout};
pub use shell::{create_subprocess_shell, shell};
