//! Multishot operations and the pooled receive built on them.
//!
//! [`PooledRecv`]: on io_uring one multishot `RECV` with buffer selection
//! stays armed for the connection: the kernel picks a buffer of the loop's
//! pool when data arrives and posts a CQE, so a request costs no SQE and no
//! poll arm on the receive side. The operation ends when the kernel ends it
//! (end of stream, an error, or `ENOBUFS` when every pool buffer is out); it
//! is then re-armed on the next poll. `ENOBUFS` consumed no data: that one
//! receive runs as a single-shot `RECV` into a heap buffer, and the next
//! poll re-arms the multishot one. Kernels without a buffer ring (before
//! 5.19) or without multishot receive (before 6.0, which rejects it with
//! `EINVAL`) get single-shot receives throughout. On the readiness backend
//! each item is one `recv` into a fresh heap buffer.
//!
//! Dropping it cancels the armed receive; buffers it picked but never
//! handed out go back to the pool (the driver recycles them from the queued
//! and the late completions).

use std::io;
use std::pin::Pin;
use std::task::{Context, Poll, ready};

use super::{Recv, Submit};
use crate::buf::PooledBuf;
use crate::driver::Driver;
use crate::driver::fd::SharedFd;

#[cfg(target_os = "linux")]
use crate::driver::uring::{MultiOp, pool::Pool};

/// Receive size on the readiness backend and for single-shot fallbacks.
const HEAP_RECV: usize = 4096;

/// Multishot `RECV` selecting buffers from the loop's pool (io_uring only).
#[cfg(target_os = "linux")]
pub(crate) struct RecvMulti {
    fd: SharedFd,
}

// SAFETY: the SQE references no memory of ours (the kernel picks pool
// buffers, which outlive the ring's use of them); `fd` keeps the fd open.
#[cfg(target_os = "linux")]
unsafe impl super::OpCode for RecvMulti {
    type Output = ();
    const CODE: u8 = io_uring::opcode::RecvMulti::CODE;

    fn sqe(&mut self) -> io_uring::squeue::Entry {
        io_uring::opcode::RecvMulti::new(
            io_uring::types::Fd(self.fd.raw()),
            crate::driver::uring::pool::POOL_GROUP,
        )
        .build()
    }

    fn readiness(&self) -> super::Readiness<'_> {
        super::Readiness::Unsupported
    }

    fn complete(self, _res: io::Result<usize>, _flags: u32) -> Self::Output {}
}

/// A connection's pooled receives: `poll_next` yields received chunks,
/// `None` at end of stream.
#[derive(Default)]
pub(crate) struct PooledRecv {
    #[cfg(target_os = "linux")]
    uring: UringRecv,
    /// Readiness backend: the receive in progress.
    heap: Option<Submit<Recv<Vec<u8>>>>,
}

impl PooledRecv {
    /// One received chunk (`Ok(None)`: end of stream).
    pub(crate) fn poll_next(
        &mut self,
        drv: &Driver,
        fd: &SharedFd,
        cx: &mut Context<'_>,
    ) -> Poll<io::Result<Option<PooledBuf>>> {
        match drv {
            #[cfg(target_os = "linux")]
            Driver::Uring(_) => self.uring.poll(drv, fd, cx),
            Driver::Readiness(_) => {
                let op = self
                    .heap
                    .get_or_insert_with(|| super::submit(drv, Recv::new(fd, Vec::with_capacity(HEAP_RECV), 0)));
                let (res, buf) = ready!(Pin::new(op).poll(cx));
                self.heap = None;
                Poll::Ready(res.map(|n| (n > 0).then(|| PooledBuf::from_vec(buf))))
            }
        }
    }
}

#[cfg(target_os = "linux")]
#[derive(Default)]
struct UringRecv {
    multi: Option<(MultiOp<RecvMulti>, std::rc::Rc<Pool>)>,
    single: Option<Submit<Recv<Vec<u8>>>>,
    /// Multishot receive unavailable (no pool, or the kernel refused it).
    single_only: bool,
    /// A multishot receive produced at least one result (so an `EINVAL`
    /// is not the kernel refusing the multishot flag).
    multi_worked: bool,
}

#[cfg(target_os = "linux")]
impl UringRecv {
    /// One received chunk (`None`: end of stream).
    fn poll(&mut self, drv: &Driver, fd: &SharedFd, cx: &mut Context<'_>) -> Poll<io::Result<Option<PooledBuf>>> {
        let Driver::Uring(d) = drv else {
            return Poll::Ready(Err(io::Error::other("ringloop: io_uring receive on another backend")));
        };
        use io_uring::cqueue;
        loop {
            if let Some(op) = self.single.as_mut() {
                let (res, buf) = ready!(Pin::new(op).poll(cx));
                self.single = None;
                return Poll::Ready(res.map(|n| (n > 0).then(|| PooledBuf::from_vec(buf))));
            }
            if self.single_only {
                self.single = Some(submit_single(drv, fd));
                continue;
            }
            if self.multi.is_none() {
                let Some(pool) = d.recv_pool() else {
                    self.single_only = true;
                    continue;
                };
                let op = d.submit_multi(RecvMulti { fd: fd.clone() });
                self.multi = Some((op, pool));
            }
            let (op, pool) = self.multi.as_mut().expect("multishot receive armed");
            let Some((res, flags)) = ready!(op.poll_next_cqe(cx)) else {
                // The kernel ended it and every result was taken: re-arm.
                self.multi = None;
                continue;
            };
            let buf = cqueue::buffer_select(flags).map(|bid| (pool.clone(), bid));
            if !cqueue::more(flags) {
                // Final completion: the next poll re-arms (after taking it,
                // `poll_next_cqe` reports the end).
                self.multi = None;
            }
            match res {
                Ok(n) if n > 0 => {
                    self.multi_worked = true;
                    let Some((pool, bid)) = buf else {
                        return Poll::Ready(Err(io::Error::other(
                            "ringloop: io_uring multishot receive without a buffer",
                        )));
                    };
                    return Poll::Ready(Ok(Some(PooledBuf::from_ring(pool, bid, n as usize))));
                }
                Ok(_) => {
                    if let Some((pool, bid)) = buf {
                        pool.recycle(bid);
                    }
                    return Poll::Ready(Ok(None));
                }
                Err(e) => {
                    if let Some((pool, bid)) = buf {
                        pool.recycle(bid);
                    }
                    match e.raw_os_error() {
                        // Every pool buffer is out; no data was consumed.
                        Some(libc::ENOBUFS) => self.single = Some(submit_single(drv, fd)),
                        // Ended by a cancel that was not ours: re-arm.
                        Some(libc::ECANCELED) => {}
                        // A kernel without multishot receive.
                        Some(libc::EINVAL) if !self.multi_worked => self.single_only = true,
                        _ => return Poll::Ready(Err(e)),
                    }
                }
            }
        }
    }
}

fn submit_single(drv: &Driver, fd: &SharedFd) -> Submit<Recv<Vec<u8>>> {
    super::submit(drv, Recv::new(fd, Vec::with_capacity(HEAP_RECV), 0))
}
