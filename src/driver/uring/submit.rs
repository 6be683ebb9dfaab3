//! Queueing operations: [`UringDriver::submit_op`] (the one entry point for
//! `driver::ops` types), the multishot variant, and the test-only NOP and
//! TIMEOUT futures.

#[cfg(test)]
use std::future::Future;
#[cfg(test)]
use std::io;
#[cfg(test)]
use std::pin::Pin;
#[cfg(test)]
use std::task::{Context, Poll};
#[cfg(test)]
use std::time::Duration;

use io_uring::squeue;
#[cfg(test)]
use io_uring::{opcode, types};

use super::UringDriver;
use super::op::{MultiOp, Op, RawOp};
use crate::driver::ops::OpCode;

/// `IORING_OP_TIMEOUT` as a future: `Ok(())` when the time has passed.
#[must_use = "dropping a Timeout cancels it"]
#[cfg(test)]
pub(crate) struct Timeout {
    op: Op<Box<types::Timespec>>,
}

#[cfg(test)]
impl Future for Timeout {
    type Output = io::Result<()>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        Pin::new(&mut self.get_mut().op).poll(cx).map(|(res, _ts)| match res {
            Err(e) if e.raw_os_error() == Some(libc::ETIME) => Ok(()),
            Err(e) => Err(e),
            Ok(_) => Ok(()),
        })
    }
}

impl UringDriver {
    /// Submits `op` (the one safe entry point: [`OpCode`]'s contract is
    /// [`submit`](Self::submit)'s). With `waiter` (a poll submitting it),
    /// the operation starts out waiting for that task, as the poll that
    /// follows a submission would arrange (the SQE cannot complete before
    /// the loop's next wait). The flag is false when the ring is closed:
    /// the `Op` is complete already (with `ECANCELED`) and must be polled.
    pub(crate) fn submit_op<O: OpCode>(&self, op: O, waiter: Option<&std::task::Context<'_>>) -> (Op<O>, bool) {
        #[cfg(test)]
        self.count_op(O::CODE);
        // `OpCode` implementors promise that `sqe` only points into heap
        // memory the op owns (or 'static memory) and that the op keeps any
        // fd in the SQE open.
        // SAFETY: that promise is `submit`'s contract.
        let (mut op, queued) = unsafe { self.submit(op, O::sqe, waiter) };
        op.raw.orphan = O::ORPHAN;
        (op, queued)
    }

    /// Submits a multishot `op` (its completions are a stream); see
    /// [`submit_op`](Self::submit_op).
    pub(crate) fn submit_multi<O: OpCode>(&self, op: O) -> MultiOp<O> {
        #[cfg(test)]
        self.count_op(O::CODE);
        // SAFETY: as in `submit_op`, until the final completion.
        let mut op = unsafe { self.submit_multishot(op, O::sqe) };
        op.raw.orphan = O::ORPHAN;
        op
    }

    /// Counts submissions per opcode (tests only: it borrows the core,
    /// which the hot path need not pay).
    #[cfg(test)]
    fn count_op(&self, code: u8) {
        if let Some(n) = self
            .inner
            .core
            .borrow_mut()
            .stats
            .ops_by_opcode
            .get_mut(usize::from(code))
        {
            *n += 1;
        }
    }

    /// Submits an operation: `build` gets the resources and returns the SQE
    /// (its user_data is overwritten). The SQE is queued now and handed to
    /// the kernel by the next `wait` (or sooner, if the SQ fills up). With
    /// `waiter` (a poll submitting it) the slot waits for that task from the
    /// start; the flag is false when the ring is closed (the `Op` is
    /// complete already, with `ECANCELED`).
    ///
    /// # Safety
    ///
    /// Every pointer in the SQE must point into memory owned by `resources`
    /// through a heap allocation (or into `'static` memory), so that it stays
    /// valid and at the same address when `resources` is moved (into the
    /// returned `Op`, and into the driver if the `Op` is dropped early), and
    /// nothing may access that memory in a way that conflicts with the
    /// kernel's access until the operation completes (`resources` is only
    /// handed back then). Any fd in the SQE must stay open as long, or be
    /// owned by `resources`.
    pub(super) unsafe fn submit<T: 'static>(
        &self,
        mut resources: T,
        build: impl FnOnce(&mut T) -> squeue::Entry,
        waiter: Option<&std::task::Context<'_>>,
    ) -> (Op<T>, bool) {
        let entry = build(&mut resources);
        // SAFETY: the caller upholds `submit`'s contract, which is
        // `submit_entry`'s.
        let (key, queued) = unsafe { self.submit_entry(entry, waiter) };
        let op = Op {
            raw: RawOp {
                driver: self.inner.clone(),
                key,
                live: true,
                resources: Some(resources),
                orphan: None,
            },
        };
        (op, queued)
    }

    /// Like [`submit`](Self::submit), for operations that post several CQEs.
    ///
    /// # Safety
    ///
    /// As for [`submit`](Self::submit), until the final CQE.
    pub(super) unsafe fn submit_multishot<T: 'static>(
        &self,
        resources: T,
        build: impl FnOnce(&mut T) -> squeue::Entry,
    ) -> MultiOp<T> {
        // SAFETY: forwarded from this function's contract.
        let (op, _) = unsafe { self.submit(resources, build, None) };
        MultiOp { raw: op.raw }
    }

    #[cfg(test)]
    /// `IORING_OP_NOP`: completes with 0 as soon as the kernel sees it.
    pub(crate) fn nop(&self) -> Op<()> {
        // SAFETY: a NOP references no memory.
        unsafe { self.submit((), |_| opcode::Nop::new().build(), None) }.0
    }

    #[cfg(test)]
    /// `IORING_OP_TIMEOUT`: completes once `duration` has passed (counted
    /// from when the kernel receives the SQE, so never early).
    pub(crate) fn timeout(&self, duration: Duration) -> Timeout {
        let ts = Box::new(super::timespec(duration));
        // SAFETY: the SQE points at the boxed timespec, whose heap address
        // does not change when the Box moves, and which the kernel only reads.
        let (op, _) = unsafe {
            self.submit(
                ts,
                |ts| opcode::Timeout::new(&**ts as *const types::Timespec).build(),
                None,
            )
        };
        Timeout { op }
    }
}
