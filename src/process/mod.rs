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
//! the readiness backend the pidfd is registered for readability, then
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

use std::ffi::OsStr;
use std::fmt;
use std::future::{Future, poll_fn};
use std::io;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::path::Path;
use std::pin::{Pin, pin};
use std::rc::{Rc, Weak};
use std::task::{Context, Poll, Waker};

pub use std::process::{ExitStatus, Output, Stdio};

use crate::blocking::BlockingTask;
use crate::buf::{BufResult, IoBuf, IoBufMut};
use crate::driver::Driver;
use crate::io::{SharedFd, ShortRead, current_driver, ops};
use crate::runtime::LoopInner;

mod reap;
#[cfg(test)]
mod tests;

use reap::Strategy;

/// A process builder: [`std::process::Command`] with asynchronous
/// [`spawn`](Command::spawn), [`output`](Command::output) and
/// [`status`](Command::status).
///
/// Standard streams default to inherit for `spawn` and `status`; `output`
/// pipes stdout and stderr and gives the child a null stdin unless they were
/// set (as `std` does).
pub struct Command {
    std: std::process::Command,
    kill_on_drop: bool,
    stdin_set: bool,
    stdout_set: bool,
    stderr_set: bool,
}

impl fmt::Debug for Command {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.std.fmt(f)
    }
}

impl From<std::process::Command> for Command {
    fn from(std: std::process::Command) -> Command {
        Command {
            std,
            kill_on_drop: false,
            // The std command's stdio settings are unknown: keep them.
            stdin_set: true,
            stdout_set: true,
            stderr_set: true,
        }
    }
}

impl Command {
    /// A command for `program` (looked up in `PATH` if it has no `/`).
    pub fn new<S: AsRef<OsStr>>(program: S) -> Command {
        Command {
            std: std::process::Command::new(program),
            kill_on_drop: false,
            stdin_set: false,
            stdout_set: false,
            stderr_set: false,
        }
    }

    /// Adds an argument.
    pub fn arg<S: AsRef<OsStr>>(&mut self, arg: S) -> &mut Command {
        self.std.arg(arg);
        self
    }

    /// Adds arguments.
    pub fn args<I, S>(&mut self, args: I) -> &mut Command
    where
        I: IntoIterator<Item = S>,
        S: AsRef<OsStr>,
    {
        self.std.args(args);
        self
    }

    /// Sets an environment variable.
    pub fn env<K: AsRef<OsStr>, V: AsRef<OsStr>>(&mut self, key: K, val: V) -> &mut Command {
        self.std.env(key, val);
        self
    }

    /// Sets environment variables.
    pub fn envs<I, K, V>(&mut self, vars: I) -> &mut Command
    where
        I: IntoIterator<Item = (K, V)>,
        K: AsRef<OsStr>,
        V: AsRef<OsStr>,
    {
        self.std.envs(vars);
        self
    }

    /// Removes an environment variable.
    pub fn env_remove<K: AsRef<OsStr>>(&mut self, key: K) -> &mut Command {
        self.std.env_remove(key);
        self
    }

    /// Clears the environment (nothing is inherited).
    pub fn env_clear(&mut self) -> &mut Command {
        self.std.env_clear();
        self
    }

    /// Sets the working directory.
    pub fn current_dir<P: AsRef<Path>>(&mut self, dir: P) -> &mut Command {
        self.std.current_dir(dir);
        self
    }

    /// The child's stdin: [`Stdio::piped()`] gives [`Child::stdin`].
    pub fn stdin<T: Into<Stdio>>(&mut self, cfg: T) -> &mut Command {
        self.std.stdin(cfg);
        self.stdin_set = true;
        self
    }

    /// The child's stdout: [`Stdio::piped()`] gives [`Child::stdout`].
    pub fn stdout<T: Into<Stdio>>(&mut self, cfg: T) -> &mut Command {
        self.std.stdout(cfg);
        self.stdout_set = true;
        self
    }

    /// The child's stderr: [`Stdio::piped()`] gives [`Child::stderr`].
    pub fn stderr<T: Into<Stdio>>(&mut self, cfg: T) -> &mut Command {
        self.std.stderr(cfg);
        self.stderr_set = true;
        self
    }

    /// Whether dropping the [`Child`] sends it SIGKILL (default: no, it
    /// keeps running and is reaped when it exits).
    pub fn kill_on_drop(&mut self, on: bool) -> &mut Command {
        self.kill_on_drop = on;
        self
    }

    /// The wrapped std command (for options ringloop does not mirror, e.g.
    /// `std::os::unix::process::CommandExt`).
    pub fn as_std(&self) -> &std::process::Command {
        &self.std
    }

    /// Mutable access to the wrapped std command. Stdio set through it is
    /// not seen by [`output`](Command::output)'s defaults.
    pub fn as_std_mut(&mut self) -> &mut std::process::Command {
        &mut self.std
    }

    /// Starts the process. Needs an open loop on this thread (checked before
    /// anything starts). A program that cannot be found is `NotFound`, one
    /// that cannot be executed `PermissionDenied`.
    pub fn spawn(&mut self) -> io::Result<Child> {
        let drv = current_driver()?;
        let lp = crate::runtime::current_inner().map_or_else(Weak::new, |lp| Rc::downgrade(&lp));
        reap::reap_orphans();
        let child = self.std.spawn()?;
        Child::adopt(child, drv, lp, self.kill_on_drop)
    }

    /// Runs the process to completion, collecting stdout and stderr (piped
    /// unless set; stdin is null unless set).
    pub async fn output(&mut self) -> io::Result<Output> {
        let (stdin, stdout, stderr) = (!self.stdin_set, !self.stdout_set, !self.stderr_set);
        if stdin {
            self.std.stdin(Stdio::null());
        }
        if stdout {
            self.std.stdout(Stdio::piped());
        }
        if stderr {
            self.std.stderr(Stdio::piped());
        }
        let child = self.spawn();
        // Back to the spawn defaults (inherit).
        if stdin {
            self.std.stdin(Stdio::inherit());
        }
        if stdout {
            self.std.stdout(Stdio::inherit());
        }
        if stderr {
            self.std.stderr(Stdio::inherit());
        }
        child?.wait_with_output().await
    }

    /// Runs the process to completion (streams inherited unless set) and
    /// returns its exit status.
    pub async fn status(&mut self) -> io::Result<ExitStatus> {
        let mut child = self.spawn()?;
        // A piped stdin would only make a reading child wait: close it.
        drop(child.stdin.take());
        child.wait().await
    }
}

/// An in-flight wait for the child's exit, owned by the `Child` so that a
/// dropped `wait()` future loses nothing.
enum Exit {
    Driver(reap::ExitFuture),
    Blocking(BlockingTask<io::Result<ExitStatus>>),
}

/// A spawned child process. See the [module docs](self) for reaping and
/// what dropping it does.
pub struct Child {
    pid: u32,
    pidfd: Option<SharedFd>,
    drv: Driver,
    /// The loop the child was spawned on: its reaper task runs there.
    lp: Weak<LoopInner>,
    strategy: Strategy,
    exit: Option<Exit>,
    status: Option<ExitStatus>,
    kill_on_drop: bool,
    /// The child's stdin, if it was [`Stdio::piped()`].
    pub stdin: Option<ChildStdin>,
    /// The child's stdout, if it was [`Stdio::piped()`].
    pub stdout: Option<ChildStdout>,
    /// The child's stderr, if it was [`Stdio::piped()`].
    pub stderr: Option<ChildStderr>,
}

impl fmt::Debug for Child {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Child")
            .field("pid", &self.pid)
            .field("strategy", &self.strategy)
            .field("status", &self.status)
            .finish_non_exhaustive()
    }
}

impl Child {
    fn adopt(
        mut std_child: std::process::Child,
        drv: Driver,
        lp: Weak<LoopInner>,
        kill_on_drop: bool,
    ) -> io::Result<Child> {
        let pid = std_child.id();
        let stdin = std_child.stdin.take().map(OwnedFd::from);
        let stdout = std_child.stdout.take().map(OwnedFd::from);
        let stderr = std_child.stderr.take().map(OwnedFd::from);
        // From here on the `Child` owns the process: if setting it up fails,
        // its `Drop` kills and reaps it.
        let mut child = Child {
            pid,
            pidfd: None,
            drv: drv.clone(),
            lp,
            strategy: Strategy::Blocking,
            exit: None,
            status: None,
            kill_on_drop: true,
            stdin: None,
            stdout: None,
            stderr: None,
        };
        if let Some(fd) = reap::pidfd_open(pid) {
            child.pidfd = Some(SharedFd::new(fd, &drv)?);
        }
        child.strategy = reap::strategy(&drv, child.pidfd.is_some());
        child.stdin = stdin.map(|fd| Pipe::new(fd, &drv).map(ChildStdin)).transpose()?;
        child.stdout = stdout.map(|fd| Pipe::new(fd, &drv).map(ChildStdout)).transpose()?;
        child.stderr = stderr.map(|fd| Pipe::new(fd, &drv).map(ChildStderr)).transpose()?;
        child.kill_on_drop = kill_on_drop;
        Ok(child)
    }

    /// The process id, or `None` once the child has been reaped (its pid may
    /// then belong to another process).
    pub fn id(&self) -> Option<u32> {
        self.status.is_none().then_some(self.pid)
    }

    fn pidfd_raw(&self) -> Option<RawFd> {
        self.pidfd.as_ref().map(|fd| fd.raw())
    }

    /// Starts the wait for the exit (once per child, kept across `wait`s).
    fn start_exit(&self) -> io::Result<Exit> {
        match (self.strategy, &self.pidfd) {
            #[cfg(target_os = "linux")]
            (Strategy::WaitId | Strategy::PollPidfd, Some(fd)) => Ok(Exit::Driver(reap::exit_future(
                self.strategy,
                self.drv.clone(),
                self.pid,
                fd.clone(),
            ))),
            _ => {
                let pid = self.pid;
                let lp = crate::runtime::current()
                    .ok_or_else(|| io::Error::other("ringloop::process: no event loop on this thread"))?;
                let job = lp
                    .run_in_executor(move || reap::blocking_wait(pid))
                    .map_err(|e| io::Error::other(format!("ringloop::process: cannot wait for pid {pid}: {e}")))?;
                Ok(Exit::Blocking(job))
            }
        }
    }

    fn poll_exit(exit: &mut Exit, cx: &mut Context<'_>) -> Poll<io::Result<ExitStatus>> {
        match exit {
            Exit::Driver(f) => f.as_mut().poll(cx),
            Exit::Blocking(job) => Pin::new(job).poll(cx).map(|r| match r {
                Ok(res) => res,
                Err(e) => Err(io::Error::other(format!("ringloop::process: waitpid job failed: {e}"))),
            }),
        }
    }

    /// Polls for the exit status (the state behind [`Child::wait`]).
    pub fn poll_wait(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<ExitStatus>> {
        if let Some(status) = self.status {
            return Poll::Ready(Ok(status));
        }
        if self.exit.is_none() {
            self.exit = Some(self.start_exit()?);
        }
        let Some(exit) = &mut self.exit else {
            return Poll::Pending;
        };
        let res = Self::poll_exit(exit, cx);
        if let Poll::Ready(r) = &res {
            self.exit = None;
            if let Ok(status) = r {
                self.status = Some(*status);
                reap::reap_orphans();
            }
        }
        res
    }

    /// Waits for the child to exit and reaps it. Closes [`Child::stdin`]
    /// first (like `std` and tokio), so a child reading its input to the end
    /// can finish. Cancel-safe: dropping the future loses nothing.
    pub async fn wait(&mut self) -> io::Result<ExitStatus> {
        drop(self.stdin.take());
        poll_fn(|cx| self.poll_wait(cx)).await
    }

    /// The exit status if the child has exited (reaping it), else `None`.
    /// Does not block.
    pub fn try_wait(&mut self) -> io::Result<Option<ExitStatus>> {
        if let Some(status) = self.status {
            return Ok(Some(status));
        }
        // A wait in flight may already hold the result.
        if let Some(exit) = &mut self.exit {
            let mut cx = Context::from_waker(Waker::noop());
            if let Poll::Ready(r) = Self::poll_exit(exit, &mut cx) {
                self.exit = None;
                let status = r?;
                self.status = Some(status);
                return Ok(Some(status));
            }
        }
        match reap::try_reap(self.pid, self.pidfd_raw()) {
            Ok(Some(status)) => {
                self.status = Some(status);
                // The in-flight wait (if any) would now fail with ECHILD.
                self.exit = None;
                Ok(Some(status))
            }
            Ok(None) => Ok(None),
            // The in-flight wait reaped it a moment ago; its completion
            // (picked up by the next `wait`/`try_wait`) carries the status.
            Err(e) if e.raw_os_error() == Some(libc::ECHILD) && self.exit.is_some() => Ok(None),
            Err(e) => Err(e),
        }
    }

    /// Sends SIGKILL without waiting (tokio's `start_kill`). A child that
    /// has already exited is not an error.
    pub fn start_kill(&mut self) -> io::Result<()> {
        self.send_signal(libc::SIGKILL)
    }

    /// Sends SIGKILL and waits for the child to exit.
    pub async fn kill(&mut self) -> io::Result<()> {
        self.start_kill()?;
        self.wait().await.map(drop)
    }

    /// Sends any signal (`SignalKind::terminate()`, or a number such as
    /// `libc::SIGTERM`) to the child; through its pidfd where there is one,
    /// so it can never hit a recycled pid. A child that has already exited
    /// or been reaped is not an error.
    pub fn send_signal(&mut self, signal: impl Into<crate::signal::SignalKind>) -> io::Result<()> {
        if self.status.is_some() {
            return Ok(());
        }
        reap::send_signal(self.pid, self.pidfd_raw(), signal.into().as_raw_value())
    }

    /// asyncio's `communicate()` without input: closes stdin, reads stdout
    /// and stderr to the end concurrently while waiting for the exit.
    /// Streams that were not piped (or were taken) give empty vectors.
    pub async fn output(&mut self) -> io::Result<Output> {
        drop(self.stdin.take());
        self.collect_output::<&'static [u8]>(None).await
    }

    /// Like [`Child::output`], consuming the child (std's and tokio's name).
    pub async fn wait_with_output(mut self) -> io::Result<Output> {
        self.output().await
    }

    /// asyncio's `communicate(input)`: writes `input` to stdin and closes
    /// it, while reading stdout and stderr and waiting for the exit. A child
    /// that exits without reading all of its input is not an error
    /// (`BrokenPipe` is ignored, as asyncio does). Without a piped stdin the
    /// input is dropped.
    pub async fn communicate<B: IoBuf>(&mut self, input: B) -> io::Result<Output> {
        let stdin = self.stdin.take();
        self.collect_output(stdin.map(|s| (s, input))).await
    }

    async fn collect_output<B: IoBuf>(&mut self, input: Option<(ChildStdin, B)>) -> io::Result<Output> {
        let (stdout, stderr) = (self.stdout.take(), self.stderr.take());
        let feed = async move {
            if let Some((stdin, buf)) = input {
                match stdin.write_all(buf).await.0 {
                    Err(e) if e.kind() != io::ErrorKind::BrokenPipe => return Err(e),
                    _ => {}
                }
                // Dropping `stdin` here closes it: EOF for the child.
            }
            Ok(())
        };
        let out = async move {
            match stdout {
                Some(p) => {
                    let (res, all) = p.0.read_to_end(Vec::new()).await;
                    res.map(|()| all)
                }
                None => Ok(Vec::new()),
            }
        };
        let err = async move {
            match stderr {
                Some(p) => {
                    let (res, all) = p.0.read_to_end(Vec::new()).await;
                    res.map(|()| all)
                }
                None => Ok(Vec::new()),
            }
        };
        let ((fed, stdout), (stderr, status)) = join(join(feed, out), join(err, self.wait())).await;
        fed?;
        Ok(Output {
            status: status?,
            stdout: stdout?,
            stderr: stderr?,
        })
    }
}

impl Drop for Child {
    fn drop(&mut self) {
        if self.status.is_some() {
            return;
        }
        if self.kill_on_drop {
            let _ = self.start_kill();
        }
        match self.try_wait() {
            Ok(Some(_)) => return,
            Ok(None) => {}
            // Reaped elsewhere: nothing left to reap.
            Err(e) if e.raw_os_error() == Some(libc::ECHILD) => return,
            // The in-flight wait failed (e.g. its loop was closed: "the event
            // loop ... is closed"), which says nothing about the child: it
            // was dropped by `try_wait`, and a new one starts below (on a
            // closed loop the child goes to the orphan list).
            Err(_) => {}
        }
        let exit = match self.exit.take() {
            Some(exit) => Ok(exit),
            None => self.start_exit(),
        };
        let fut = match exit {
            // The pool job reaps the child whether or not anyone awaits it.
            Ok(Exit::Blocking(_)) => return,
            Ok(Exit::Driver(fut)) => fut,
            Err(_) => {
                reap::push_orphan(self.pid, self.pidfd.as_ref());
                return;
            }
        };
        let mut guard = reap::OrphanGuard {
            pid: self.pid,
            pidfd: self.pidfd.clone(),
            armed: true,
        };
        let reaper = async move {
            let res = fut.await;
            guard.armed = false;
            drop(guard);
            if res.is_ok() {
                reap::reap_orphans();
            }
            Ok::<(), crate::TaskError>(())
        };
        // The reaper runs on the child's own loop (its pidfd is registered
        // with that loop's driver). If that loop is closed (or closing), the
        // future is dropped unpolled and its guard moves the child to the
        // orphan list; likewise if the task is cancelled before the exit.
        match self.lp.upgrade() {
            Some(lp) if !lp.is_closed() => {
                let task = crate::runtime::spawn_raw(&lp, reaper);
                task.set_name(format!("ringloop child reaper (pid {})", self.pid));
            }
            _ => drop(reaper),
        }
    }
}

/// Polls two futures concurrently; resolves with both outputs.
async fn join<A: Future, B: Future>(a: A, b: B) -> (A::Output, B::Output) {
    let (mut a, mut b) = (pin!(a), pin!(b));
    let (mut ra, mut rb) = (None, None);
    poll_fn(|cx| {
        if ra.is_none()
            && let Poll::Ready(v) = a.as_mut().poll(cx)
        {
            ra = Some(v);
        }
        if rb.is_none()
            && let Poll::Ready(v) = b.as_mut().poll(cx)
        {
            rb = Some(v);
        }
        match (ra.take(), rb.take()) {
            (Some(x), Some(y)) => Poll::Ready((x, y)),
            (x, y) => {
                (ra, rb) = (x, y);
                Poll::Pending
            }
        }
    })
    .await
}

/// One end of a pipe to or from the child, on the loop's driver.
struct Pipe {
    fd: SharedFd,
    drv: Driver,
}

impl Pipe {
    fn new(fd: OwnedFd, drv: &Driver) -> io::Result<Pipe> {
        let fd = SharedFd::new(fd, drv)?;
        // A child's stdio pipe (`pipe2`, never packet mode): a short read
        // emptied it.
        fd.set_short_read(ShortRead::Drains);
        Ok(Pipe { fd, drv: drv.clone() })
    }

    async fn read<B: IoBufMut>(&self, buf: B) -> BufResult<usize, B> {
        ops::read(&self.drv, &self.fd, buf, None).await
    }

    async fn write<B: IoBuf>(&self, buf: B) -> BufResult<usize, B> {
        ops::write(&self.drv, &self.fd, buf, None).await
    }

    async fn write_all<B: IoBuf>(&self, buf: B) -> BufResult<(), B> {
        crate::io::write_all_with(buf, |s, _| self.write(s)).await
    }

    async fn read_to_end(&self, mut buf: Vec<u8>) -> BufResult<(), Vec<u8>> {
        loop {
            if buf.capacity() - buf.len() < 4096 {
                buf.reserve(8192);
            }
            let start = buf.len();
            let (res, s) = self.read(buf.slice(start..)).await;
            buf = s.into_inner();
            match res {
                Ok(0) => return (Ok(()), buf),
                Ok(_) => {}
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return (Err(e), buf),
            }
        }
    }

    /// A blocking fd for the same pipe (for another child's stdio).
    fn into_owned_fd(self) -> io::Result<OwnedFd> {
        // SAFETY: F_DUPFD_CLOEXEC on the fd our SharedFd keeps open; checked.
        let new = unsafe { libc::fcntl(self.fd.as_raw_fd(), libc::F_DUPFD_CLOEXEC, 0) };
        if new < 0 {
            return Err(io::Error::last_os_error());
        }
        // SAFETY: a fresh fd that nothing else owns.
        let owned = unsafe { OwnedFd::from_raw_fd(new) };
        // The pipe end is shared with the dup: a child expects it blocking.
        crate::io::set_nonblocking(owned.as_raw_fd(), false)?;
        Ok(owned)
    }
}

/// The write end of the child's stdin. Dropping it closes the pipe (the
/// child reads end of file).
pub struct ChildStdin(Pipe);

/// The read end of the child's stdout.
pub struct ChildStdout(Pipe);

/// The read end of the child's stderr.
pub struct ChildStderr(Pipe);

macro_rules! debug_pipe {
    ($($t:ident),*) => {$(
        impl fmt::Debug for $t {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.debug_tuple(stringify!($t)).field(&self.0.fd.raw()).finish()
            }
        }
        impl AsRawFd for $t {
            fn as_raw_fd(&self) -> RawFd {
                self.0.fd.raw()
            }
        }
        impl $t {
            /// A blocking fd for this pipe end, e.g. to connect it to another
            /// child (`Stdio::from(fd)`; `Stdio::try_from(pipe)` does the
            /// same). Reads or writes of this stream that were cancelled on
            /// io_uring may still complete on the pipe.
            pub fn into_owned_fd(self) -> io::Result<OwnedFd> {
                self.0.into_owned_fd()
            }
        }
        impl TryFrom<$t> for Stdio {
            type Error = io::Error;
            fn try_from(pipe: $t) -> io::Result<Stdio> {
                pipe.into_owned_fd().map(Stdio::from)
            }
        }
    )*};
}
debug_pipe!(ChildStdin, ChildStdout, ChildStderr);

impl ChildStdin {
    /// Writes some of `buf`'s bytes; returns how many. `BrokenPipe` once the
    /// child closed its end.
    pub async fn write<B: IoBuf>(&self, buf: B) -> BufResult<usize, B> {
        self.0.write(buf).await
    }

    /// Writes all of `buf`'s bytes.
    pub async fn write_all<B: IoBuf>(&self, buf: B) -> BufResult<(), B> {
        self.0.write_all(buf).await
    }
}

macro_rules! reader {
    ($($t:ident),*) => {$(
        impl $t {
            /// Reads into `buf`'s spare capacity; `Ok(0)` is end of file (the
            /// child closed its end, usually by exiting).
            pub async fn read<B: IoBufMut>(&self, buf: B) -> BufResult<usize, B> {
                self.0.read(buf).await
            }

            /// Reads until end of file, appending to `buf`; returns the
            /// whole buffer (on error: the error and what was read so far).
            pub async fn read_to_end(&self, buf: Vec<u8>) -> BufResult<(), Vec<u8>> {
                self.0.read_to_end(buf).await
            }
        }
    )*};
}
reader!(ChildStdout, ChildStderr);
