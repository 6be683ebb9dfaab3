//! [`Child`]: a spawned process, its exit wait and what dropping it does.

use std::fmt;
use std::future::{Future, poll_fn};
use std::io;
use std::os::fd::{OwnedFd, RawFd};
use std::pin::{Pin, pin};
use std::rc::Weak;
use std::task::{Context, Poll, Waker};

use super::pipe::{ChildStderr, ChildStdin, ChildStdout, Pipe};
use super::reap::{self, Strategy};
use super::{ExitStatus, Output};
use crate::blocking::BlockingTask;
use crate::buf::IoBuf;
use crate::driver::Driver;
use crate::io::SharedFd;
use crate::runtime::LoopInner;

/// An in-flight wait for the child's exit, owned by the `Child` so that a
/// dropped `wait()` future loses nothing.
enum Exit {
    Driver(reap::ExitFuture),
    Blocking(BlockingTask<io::Result<ExitStatus>>),
}

/// A spawned child process. See the [module docs](crate::process) for reaping and
/// what dropping it does.
pub struct Child {
    pid: u32,
    pidfd: Option<SharedFd>,
    drv: Driver,
    /// The loop the child was spawned on: its reaper task runs there.
    lp: Weak<LoopInner>,
    pub(super) strategy: Strategy,
    exit: Option<Exit>,
    status: Option<ExitStatus>,
    kill_on_drop: bool,
    /// The child's stdin, if it was [`Stdio::piped()`](std::process::Stdio::piped).
    pub stdin: Option<ChildStdin>,
    /// The child's stdout, if it was [`Stdio::piped()`](std::process::Stdio::piped).
    pub stdout: Option<ChildStdout>,
    /// The child's stderr, if it was [`Stdio::piped()`](std::process::Stdio::piped).
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
    pub(super) fn adopt(
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
pub(super) async fn join<A: Future, B: Future>(a: A, b: B) -> (A::Output, B::Output) {
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
