//! Operations as types: each I/O operation is one type that owns its
//! resources (fd handle, buffers, addresses) and knows how to run on each
//! backend ([`OpCode`]); [`submit`] runs it on the loop's driver and
//! returns a future of its output. The driver owns submission, the
//! readiness retry and cancellation; callers never see a backend.
//!
//! | op | io_uring opcode (min. kernel) | fallback backend |
//! |---|---|---|
//! | [`Read`] / [`Write`] | `READ` / `WRITE` (5.6) | `read`/`pread`, `write`/`pwrite` after readiness |
//! | [`Recv`] / [`Send`] | `RECV` / `SEND` (5.6) | `recv` (`recvmsg` on Unix streams) / `send` |
//! | [`SendZc`] (sends from 16 KiB) | `SEND_ZC` (6.0) | — (`send`) |
//! | [`RecvMsg`] / [`SendMsg`] | `RECVMSG` / `SENDMSG` (5.3) | `recvmsg` / `sendmsg` |
//! | [`SendTo`] (UDP `send_to`) | `SEND` with a destination address (6.0; `SENDMSG` before) | `sendto` |
//! | [`Accept`] | `ACCEPT` (5.5) | `accept4` |
//! | [`Connect`] | `CONNECT` (5.5) | `connect`, then writability + `SO_ERROR` |
//! | [`PollReadable`] | `POLL_ADD` (5.1) | the reactor's read readiness |
//! | [`PollWritable`] | `POLL_ADD` (5.1) | the reactor's write readiness |
//! | [`Close`] | `CLOSE` (5.6) | `close` |
//! | [`RecvMulti`](multi::RecvMulti) | `RECV` + `RECV_MULTISHOT` + buffer ring (6.0) | — (single `recv`s) |
//! | [`RecvMsgMulti`](dgram::RecvMsgMulti) | `RECVMSG` + `RECV_MULTISHOT` + buffer ring (6.0) | — (single `recvmsg`s) |
//! | [`AcceptMulti`](multi::AcceptMulti) | `ACCEPT` + `ACCEPT_MULTISHOT` (5.19) | — (single `accept4`s) |
//! | [`OpenAt`], [`Fsync`], [`Statx`], [`UnlinkAt`], [`RenameAt`], [`MkdirAt`], [`Ftruncate`] | `OPENAT` (5.6), `FSYNC` (5.1), `STATX` (5.6), `UNLINKAT`/`RENAMEAT` (5.11), `MKDIRAT` (5.15), `FTRUNCATE` (6.9) | the blocking pool (files are always "ready") |
//! | [`WaitId`] | `WAITID` (6.7) | pidfd readability + `waitid` |
//!
//! Every opcode a caller may use is checked against the probe taken at
//! ring setup ([`Driver::supports`]); the file and process code fall back
//! to the blocking pool / pidfd polling for those the kernel lacks.

use std::future::Future;
use std::io;
use std::pin::Pin;
use std::task::{Context, Poll};

use ringloop_fallback::{Direction, WaitToken};

use super::Driver;
use super::fallback::FallbackDriver;
use super::fd::SharedFd;

/// Builds an io_uring SQE that names `$fd` (a `&SharedFd`) by its
/// fixed-file slot when it has one (`IOSQE_FIXED_FILE`), else by number:
/// `fd_sqe!(&self.fd, t => opcode::Recv::new(t, ptr, len).build())`.
#[cfg(target_os = "linux")]
macro_rules! fd_sqe {
    ($fd:expr, $t:ident => $build:expr) => {{
        let fd: &$crate::driver::fd::SharedFd = $fd;
        match fd.fixed_index() {
            Some(slot) => {
                let $t = io_uring::types::Fixed(slot);
                $build
            }
            None => {
                let $t = io_uring::types::Fd(fd.raw());
                $build
            }
        }
    }};
}

pub(crate) mod dgram;
#[cfg(target_os = "linux")]
mod fs;
mod msg;
pub(crate) mod multi;
mod net;
mod stream;

#[cfg(target_os = "linux")]
pub(crate) use fs::{Fsync, Ftruncate, MkdirAt, OpenAt, RenameAt, Statx, UnlinkAt, WaitId};
pub(crate) use msg::{InBufs, One, OutBufs, Received, RecvMsg, SendMsg, SendTo};
pub(crate) use net::{Accept, Close, Connect, PollReadable, PollWritable};
#[cfg(target_os = "linux")]
pub(crate) use stream::SendZc;
pub(crate) use stream::{Read, Recv, Send, Write, poll_recv_slice, poll_send_slice};

#[cfg(target_os = "linux")]
pub(crate) use super::uring::OrphanFn;

/// How the fallback backend runs an operation.
pub(crate) enum Readiness<'a> {
    /// Retry [`OpCode::attempt`] on `EAGAIN` after `dir` readiness of `fd`.
    Fd(&'a SharedFd, Direction),
    /// Only wait for `dir` readiness of `fd` (no syscall): ends at once,
    /// consuming it, if readiness was reported since the last wait; after
    /// the first wake-up otherwise.
    Wait(&'a SharedFd, Direction),
    /// [`OpCode::attempt`] once: it never says `EAGAIN` (e.g. `close`).
    Once,
    /// Not available there: the caller uses another path (the blocking
    /// pool for files). Submitting it anyway fails with `Unsupported`.
    Unsupported,
}

/// One I/O operation, defined once, with an implementation per backend.
///
/// # Safety
///
/// For implementors, on io_uring: every pointer that [`sqe`](Self::sqe)
/// puts in the entry points into memory owned by `self` through a heap
/// allocation (or into `'static` memory), so it stays valid and at the
/// same address while `self` moves (into the driver's slot if the future
/// is dropped early), and nothing touches that memory in a way that
/// conflicts with the kernel's access until [`complete`](Self::complete)
/// (or the drop of `self` after the final completion). Any fd in the SQE is
/// kept open by `self` (a [`SharedFd`]) or is otherwise the operation's.
pub(crate) unsafe trait OpCode: Sized + 'static {
    /// What the operation's future resolves to (the resources come back in
    /// it where the caller lent them).
    type Output;

    /// The io_uring opcode (checked against the probe by [`Driver::supports`]).
    #[cfg(target_os = "linux")]
    const CODE: u8;

    /// The io_uring submission entry (its user_data is overwritten).
    #[cfg(target_os = "linux")]
    fn sqe(&mut self) -> io_uring::squeue::Entry;

    /// Called for a completion nobody will collect (future dropped): e.g.
    /// closes an fd that an accept or open produced late.
    #[cfg(target_os = "linux")]
    const ORPHAN: Option<OrphanFn> = None;

    /// A result known without any syscall (e.g. a zero-length read answers
    /// `Ok(0)` at once on both backends).
    fn immediate(&mut self) -> Option<io::Result<usize>> {
        None
    }

    /// How the fallback backend runs it.
    fn readiness(&self) -> Readiness<'_>;

    /// One non-blocking attempt of the syscall (fallback backend).
    fn attempt(&mut self) -> io::Result<usize> {
        Err(io::Error::new(
            io::ErrorKind::Unsupported,
            "ringloop: this operation has no readiness implementation",
        ))
    }

    /// Whether a successful attempt that returned `n` proves the receive
    /// buffer empty (see [`ShortRead`](super::fd::ShortRead)).
    fn drained(&self, _n: usize) -> bool {
        false
    }

    /// Whether the readiness retry may wait before the next attempt when
    /// the direction's readiness was cleared (false until a `connect` was
    /// even made).
    fn may_wait_first(&self) -> bool {
        true
    }

    /// Turns the raw result (bytes, fd, ...) and, on io_uring, the CQE
    /// flags into the output, handing the resources back.
    fn complete(self, res: io::Result<usize>, flags: u32) -> Self::Output;
}

/// The future of a submitted operation: resolves to [`OpCode::Output`].
/// Dropping it cancels the operation; on io_uring the resources stay in
/// the driver until the kernel is done with them.
#[must_use = "dropping a Submit cancels the operation"]
pub(crate) struct Submit<O: OpCode> {
    state: State<O>,
}

enum State<O: OpCode> {
    #[cfg(target_os = "linux")]
    Uring(super::uring::Op<O>),
    Readiness {
        drv: std::rc::Rc<FallbackDriver>,
        op: Option<O>,
        token: Option<WaitToken>,
        /// `Readiness::Wait`: the wait was armed by an earlier poll.
        armed: bool,
    },
    Done(Option<O>, Option<io::Result<usize>>),
}

/// Submits `op` to `drv` (on io_uring the SQE is queued now and reaches the
/// kernel with the loop's next wait).
pub(crate) fn submit<O: OpCode>(drv: &Driver, op: O) -> Submit<O> {
    submit_for(drv, op, None).0
}

/// Submits `op` from a poll and polls it once, as `submit` followed by a
/// poll would, minus that poll's work on io_uring: the operation is queued
/// already waiting for `cx`'s task (it cannot have completed before the
/// loop's next wait), so the answer is `Pending` without looking.
pub(crate) fn submit_polled<O: OpCode>(drv: &Driver, op: O, cx: &mut Context<'_>) -> (Submit<O>, Poll<O::Output>) {
    let (mut sub, waiting) = submit_for(drv, op, Some(cx));
    if waiting {
        crate::debug::note_wait(std::any::type_name::<O>);
        return (sub, Poll::Pending);
    }
    let res = Pin::new(&mut sub).poll(cx);
    (sub, res)
}

/// [`submit`], on io_uring with the operation waiting for `waiter`'s task
/// from the start when one is given; the flag says it does (else the
/// future must be polled: an immediate result, a closed ring, or the
/// readiness backend, which tries the syscall when polled).
#[cfg_attr(not(target_os = "linux"), allow(unused_variables))]
fn submit_for<O: OpCode>(drv: &Driver, mut op: O, waiter: Option<&Context<'_>>) -> (Submit<O>, bool) {
    if let Some(res) = op.immediate() {
        let state = State::Done(Some(op), Some(res));
        return (Submit { state }, false);
    }
    let (state, waiting) = match drv {
        #[cfg(target_os = "linux")]
        Driver::Uring(d) => {
            let (op, queued) = d.submit_op(op, waiter);
            (State::Uring(op), queued && waiter.is_some())
        }
        Driver::Fallback(r) => {
            let state = State::Readiness {
                drv: r.clone(),
                op: Some(op),
                token: None,
                armed: false,
            };
            (state, false)
        }
    };
    (Submit { state }, waiting)
}

impl<O: OpCode> Unpin for Submit<O> {}

/// Submits `op` at the first poll, as an `async fn` wrapping [`submit`]
/// would, without the extra future layer (whose state kept its own copy of
/// the operation beside the `Submit`): a future dropped unpolled submits
/// nothing.
pub(crate) fn submit_on_poll<O: OpCode>(drv: &Driver, op: O) -> OnPoll<'_, O> {
    OnPoll {
        drv,
        state: OnPollState::Start(Some(op)),
    }
}

/// The future of [`submit_on_poll`].
#[must_use = "futures do nothing unless polled"]
pub(crate) struct OnPoll<'a, O: OpCode> {
    drv: &'a Driver,
    state: OnPollState<O>,
}

enum OnPollState<O: OpCode> {
    Start(Option<O>),
    Submitted(Submit<O>),
}

impl<O: OpCode> Unpin for OnPoll<'_, O> {}

impl<O: OpCode> Future for OnPoll<'_, O> {
    type Output = O::Output;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<O::Output> {
        let this = self.get_mut();
        if let OnPollState::Start(op) = &mut this.state {
            let op = op.take().expect("operation polled after completion");
            let (sub, res) = submit_polled(this.drv, op, cx);
            this.state = OnPollState::Submitted(sub);
            return res;
        }
        match &mut this.state {
            OnPollState::Submitted(op) => Pin::new(op).poll(cx),
            OnPollState::Start(_) => unreachable!("submitted just above"),
        }
    }
}

impl<O: OpCode> Submit<O> {
    /// The io_uring op, for the few driver-level features built on it
    /// (lingering sends).
    #[cfg(target_os = "linux")]
    pub(crate) fn into_uring(mut self) -> Option<super::uring::Op<O>> {
        match std::mem::replace(&mut self.state, State::Done(None, None)) {
            State::Uring(op) => Some(op),
            _ => None,
        }
    }
}

impl<O: OpCode> Future for Submit<O> {
    type Output = O::Output;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<O::Output> {
        let res = self.poll_op(cx);
        if res.is_pending() {
            // The task dump shows the operation's type name ("Recv", ...).
            crate::debug::note_wait(std::any::type_name::<O>);
        }
        res
    }
}

impl<O: OpCode> Submit<O> {
    fn poll_op(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<O::Output> {
        match &mut self.get_mut().state {
            #[cfg(target_os = "linux")]
            State::Uring(op) => op
                .poll_with_flags(cx)
                .map(|(res, flags, op)| op.complete(res.map(|n| n as usize), flags)),
            State::Readiness { drv, op, token, armed } => {
                let o = op.as_mut().expect("Submit polled after completion");
                let res = match o.readiness() {
                    Readiness::Fd(fd, dir) => {
                        let fd = fd.clone();
                        let wait_first = o.may_wait_first();
                        let attempt = || o.attempt().map(|n| (n, o.drained(n)));
                        std::task::ready!(drv.poll_retry(&fd, dir, token, cx, wait_first, attempt, |&(_, d)| d))
                            .map(|(n, _)| n)
                    }
                    Readiness::Wait(fd, dir) => {
                        if *armed {
                            Ok(0)
                        } else {
                            *armed = true;
                            std::task::ready!(drv.poll_wait(fd, dir, token, cx)).map(|()| 0)
                        }
                    }
                    Readiness::Once => loop {
                        match o.attempt() {
                            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                            res => break res,
                        }
                    },
                    Readiness::Unsupported => Err(io::Error::new(
                        io::ErrorKind::Unsupported,
                        "ringloop: operation not available on the fallback backend",
                    )),
                };
                let op = op.take().expect("checked above");
                Poll::Ready(op.complete(res, 0))
            }
            State::Done(op, res) => {
                let op = op.take().expect("Submit polled after completion");
                let res = res.take().expect("set with the op");
                Poll::Ready(op.complete(res, 0))
            }
        }
    }
}

impl<O: OpCode> Drop for Submit<O> {
    fn drop(&mut self) {
        if let State::Readiness {
            drv,
            op: Some(op),
            token: Some(token),
            ..
        } = &self.state
            && let Readiness::Fd(fd, dir) | Readiness::Wait(fd, dir) = op.readiness()
        {
            drv.cancel_wait(fd, dir, *token);
        }
    }
}

impl Driver {
    /// Whether the loop runs on io_uring and the kernel has `O`'s opcode.
    pub(crate) fn supports<O: OpCode>(&self) -> bool {
        match self {
            #[cfg(target_os = "linux")]
            Driver::Uring(d) => d.supports(O::CODE),
            Driver::Fallback(_) => false,
        }
    }
}
