//! Multishot operations and the pooled receive built on them.
//!
//! [`PooledRecv`]: on io_uring one multishot `RECV` with buffer selection
//! stays armed for the connection: the kernel picks a buffer of the loop's
//! pool when data arrives and posts a CQE, so a request costs no SQE and no
//! poll arm on the receive side. The operation ends when the kernel ends it
//! (end of stream, an error, or `ENOBUFS` when every pool buffer is out); it
//! is then re-armed on the next poll. `ENOBUFS` consumed no data: the pool
//! grows by a step and the receive re-arms at once; a pool at its limit
//! makes that one receive a single-shot `RECV` into a heap buffer, and the
//! next poll re-arms the multishot one. Kernels without a buffer ring
//! (before 5.19) or without multishot receive (before 6.0, which rejects
//! it with `EINVAL`) get single-shot receives throughout, and so do AF_UNIX
//! streams (`SharedFd::set_multishot_recv`). On the fallback backend each
//! item is one `recv` into a fresh heap buffer ([`HeapSize`]).
//!
//! Dropping it cancels the armed receive; buffers it picked but never
//! handed out go back to the pool (the driver releases them from the queued
//! and the late completions). Where the kernel consumes the pool
//! incrementally (`pool.rs`), small receives share a buffer: each chunk is
//! the bytes at the offset the driver recorded when it reaped the CQE.

use std::io;
use std::pin::Pin;
use std::task::{Context, Poll, ready};

use super::{Recv, Submit};
use crate::buf::PooledBuf;
use crate::driver::Driver;
use crate::driver::fd::SharedFd;

#[cfg(target_os = "linux")]
use crate::driver::uring::{MultiOp, pool::Pool};

/// The size of a heap receive (the fallback backend, and single-shot
/// receives on io_uring): it starts at the smallest, doubles after a
/// receive that filled the buffer and halves after one that used less than
/// a quarter, so a bulk stream reads up to 64 KiB per call and a chatty one
/// allocates little.
#[derive(Clone, Copy, Debug)]
struct HeapSize(usize);

impl HeapSize {
    const MIN: usize = 4 << 10;
    const MAX: usize = 64 << 10;

    fn buf(self) -> Vec<u8> {
        Vec::with_capacity(self.0)
    }

    /// Adjusts the next size to a receive of `n` bytes.
    fn after(&mut self, n: usize) {
        if n >= self.0 {
            self.0 = (self.0 * 2).min(Self::MAX);
        } else if n < self.0 / 4 {
            self.0 = (self.0 / 2).max(Self::MIN);
        }
    }
}

impl Default for HeapSize {
    fn default() -> Self {
        HeapSize(Self::MIN)
    }
}

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
        fd_sqe!(&self.fd, t => io_uring::opcode::RecvMulti::new(
            t,
            crate::driver::uring::pool::STREAM_GROUP,
        )
        .build())
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
    /// Fallback backend: the receive in progress.
    heap: Option<Submit<Recv<Vec<u8>>>>,
    /// The size of the next heap receive (either backend).
    heap_size: HeapSize,
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
            Driver::Uring(_) => self.uring.poll(drv, fd, &mut self.heap_size, cx),
            Driver::Fallback(_) => {
                let size = self.heap_size;
                let op = self
                    .heap
                    .get_or_insert_with(|| super::submit(drv, Recv::new(fd, size.buf(), 0)));
                let (res, buf) = ready!(Pin::new(op).poll(cx));
                self.heap = None;
                Poll::Ready(heap_chunk(res, buf, &mut self.heap_size))
            }
        }
    }
}

/// The chunk a heap receive produced (`None`: end of stream).
fn heap_chunk(res: io::Result<usize>, buf: Vec<u8>, size: &mut HeapSize) -> io::Result<Option<PooledBuf>> {
    let n = res?;
    size.after(n);
    Ok((n > 0).then(|| PooledBuf::from_vec(buf)))
}

/// What one completion of a pooled multishot receive means to its owner.
#[cfg(target_os = "linux")]
pub(super) enum MultiStep {
    /// `n` bytes at offset `off` of pool buffer `bid`, given as
    /// `Some((bid, off))` and held until released (`None`: no buffer, which
    /// a result with data must have; a zero-length result never holds one).
    Data(std::rc::Rc<Pool>, Option<(u16, usize)>, usize),
    /// Every pool buffer is out, the pool is at its limit, and no data was
    /// consumed: receive once single-shot, then poll again.
    NoBuffers,
    /// The receive ended (or multishot turned out unsupported): poll again,
    /// which re-arms it or goes single-shot for good.
    Again,
}

/// The armed multishot receive of a [`PooledRecv`] or a datagram
/// `PooledRecvFrom` with its pool, and what was learnt about the kernel:
/// the re-arm / `ENOBUFS` / `EINVAL` handling both share.
#[cfg(target_os = "linux")]
pub(super) struct MultiRecv<Op: 'static> {
    armed: Option<(MultiOp<Op>, std::rc::Rc<Pool>)>,
    /// The pool's number of [buffers](Pool::buffers) when the receive was
    /// armed (it changes only when the pool grows).
    armed_at: u16,
    /// Multishot receive unavailable (no pool, or the kernel refused it).
    pub(super) single_only: bool,
    /// A multishot receive produced at least one result (so an `EINVAL`
    /// is not the kernel refusing the multishot flag).
    worked: bool,
}

#[cfg(target_os = "linux")]
impl<Op: 'static> Default for MultiRecv<Op> {
    fn default() -> Self {
        MultiRecv {
            armed: None,
            armed_at: 0,
            single_only: false,
            worked: false,
        }
    }
}

#[cfg(target_os = "linux")]
impl<Op: 'static> MultiRecv<Op> {
    /// The next completion. `arm` submits the receive when none is armed;
    /// `None` from it means multishot cannot be used here (single-shot from
    /// now on). Buffers of failed and zero-length completions go back to the
    /// pool here.
    pub(super) fn poll_step(
        &mut self,
        arm: impl FnOnce() -> Option<(MultiOp<Op>, std::rc::Rc<Pool>)>,
        cx: &mut Context<'_>,
    ) -> Poll<io::Result<MultiStep>> {
        use io_uring::cqueue;
        if self.armed.is_none() {
            match arm() {
                Some(armed) => {
                    self.armed_at = armed.1.buffers();
                    self.armed = Some(armed);
                }
                None => {
                    self.single_only = true;
                    return Poll::Ready(Ok(MultiStep::Again));
                }
            }
        }
        let (op, pool) = self.armed.as_mut().expect("multishot receive armed");
        let Some((res, flags, off)) = ready!(op.poll_next_cqe(cx)) else {
            // The kernel ended it and every result was taken: re-arm.
            self.armed = None;
            return Poll::Ready(Ok(MultiStep::Again));
        };
        let pool = pool.clone();
        let bid = cqueue::buffer_select(flags);
        if !cqueue::more(flags) {
            // Final completion: the next poll re-arms.
            self.armed = None;
        }
        match res {
            Ok(n) => {
                self.worked = true;
                let held = match bid {
                    Some(bid) if n > 0 && off == crate::driver::uring::pool::UNKNOWN_OFFSET => {
                        pool.release(bid);
                        return Poll::Ready(Err(io::Error::other(
                            "ringloop: the kernel dropped io_uring completions (out of memory); \
                             where this receive's bytes are in the shared buffer is unknown",
                        )));
                    }
                    Some(bid) if n > 0 => Some((bid, off as usize)),
                    Some(bid) => {
                        pool.release(bid);
                        None
                    }
                    None => None,
                };
                Poll::Ready(Ok(MultiStep::Data(pool, held, n as usize)))
            }
            Err(e) => {
                if let Some(bid) = bid {
                    pool.release(bid);
                }
                match e.raw_os_error() {
                    // Every pool buffer is out; no data was consumed. If
                    // the pool grew since this receive was armed, it may
                    // have run dry before that: re-arm. Otherwise grow it
                    // (and re-arm) unless it is at its limit.
                    Some(libc::ENOBUFS) if pool.buffers() != self.armed_at || pool.grow() => {
                        Poll::Ready(Ok(MultiStep::Again))
                    }
                    Some(libc::ENOBUFS) => Poll::Ready(Ok(MultiStep::NoBuffers)),
                    // Ended by a cancel that was not ours: re-arm.
                    Some(libc::ECANCELED) => Poll::Ready(Ok(MultiStep::Again)),
                    // A kernel without this multishot receive.
                    Some(libc::EINVAL) if !self.worked => {
                        self.armed = None;
                        self.single_only = true;
                        Poll::Ready(Ok(MultiStep::Again))
                    }
                    _ => Poll::Ready(Err(e)),
                }
            }
        }
    }
}

#[cfg(target_os = "linux")]
#[derive(Default)]
struct UringRecv {
    multi: MultiRecv<RecvMulti>,
    single: Option<Submit<Recv<Vec<u8>>>>,
}

#[cfg(target_os = "linux")]
impl UringRecv {
    /// One received chunk (`None`: end of stream).
    fn poll(
        &mut self,
        drv: &Driver,
        fd: &SharedFd,
        heap_size: &mut HeapSize,
        cx: &mut Context<'_>,
    ) -> Poll<io::Result<Option<PooledBuf>>> {
        let Driver::Uring(d) = drv else {
            return Poll::Ready(Err(io::Error::other("ringloop: io_uring receive on another backend")));
        };
        loop {
            if let Some(op) = self.single.as_mut() {
                let (res, buf) = ready!(Pin::new(op).poll(cx));
                self.single = None;
                return Poll::Ready(heap_chunk(res, buf, heap_size));
            }
            if self.multi.single_only || !fd.multishot_recv() {
                self.single = Some(submit_single(drv, fd, *heap_size));
                continue;
            }
            let arm = || {
                let pool = d
                    .uses(crate::driver::Feature::MultishotRecv)
                    .then(|| d.stream_pool())
                    .flatten()?;
                Some((d.submit_multi(RecvMulti { fd: fd.clone() }), pool))
            };
            match ready!(self.multi.poll_step(arm, cx))? {
                MultiStep::Data(pool, Some((bid, off)), n) => {
                    return Poll::Ready(Ok(Some(PooledBuf::from_ring_at(pool, bid, off, n))));
                }
                MultiStep::Data(_, None, n) if n > 0 => {
                    return Poll::Ready(Err(io::Error::other(
                        "ringloop: io_uring multishot receive without a buffer",
                    )));
                }
                // End of stream.
                MultiStep::Data(..) => return Poll::Ready(Ok(None)),
                MultiStep::NoBuffers => self.single = Some(submit_single(drv, fd, *heap_size)),
                MultiStep::Again => {}
            }
        }
    }
}

fn submit_single(drv: &Driver, fd: &SharedFd, size: HeapSize) -> Submit<Recv<Vec<u8>>> {
    super::submit(drv, Recv::new(fd, size.buf(), 0))
}

/// Multishot `ACCEPT` (5.19): one SQE accepts connections until the kernel
/// ends it (io_uring only). Its CQEs carry the new fds; the peer addresses
/// are not collected (a stream of connections does not report them).
#[cfg(target_os = "linux")]
pub(crate) struct AcceptMulti {
    fd: SharedFd,
}

// SAFETY: the SQE references no memory; `fd` keeps the listener open. Fds
// of completions nobody collects are closed by `ORPHAN`.
#[cfg(target_os = "linux")]
unsafe impl super::OpCode for AcceptMulti {
    type Output = ();
    const CODE: u8 = io_uring::opcode::AcceptMulti::CODE;
    const ORPHAN: Option<super::OrphanFn> = Some(super::net::close_orphan_fd);

    fn sqe(&mut self) -> io_uring::squeue::Entry {
        fd_sqe!(&self.fd, t => io_uring::opcode::AcceptMulti::new(t)
            .flags(libc::SOCK_CLOEXEC)
            .build())
    }

    fn readiness(&self) -> super::Readiness<'_> {
        super::Readiness::Unsupported
    }

    fn complete(self, _res: io::Result<usize>, _flags: u32) -> Self::Output {}
}

/// A listener's accept loop (behind `incoming()`): on io_uring one
/// multishot `ACCEPT` stays armed and each connection costs a CQE, no SQE;
/// it is re-armed when the kernel ends it (an error such as `EMFILE`, or the
/// driver's cancel when [`STREAM_QUEUE_LIMIT`](crate::driver::uring) results
/// wait untaken). A kernel that refuses the multishot flag (`EINVAL` before
/// any connection: before 5.19) and the fallback backend get one `accept4`
/// per connection. Dropping it cancels the armed accept; fds the kernel
/// accepted for it that were never taken are closed.
#[derive(Default)]
pub(crate) struct AcceptLoop {
    #[cfg(target_os = "linux")]
    multi: Option<MultiOp<AcceptMulti>>,
    single: Option<Submit<super::Accept>>,
    /// Multishot accept unavailable (fallback backend, or refused).
    single_only: bool,
    /// A multishot accept produced a connection (so `EINVAL` is not the
    /// kernel refusing the flag).
    multi_worked: bool,
}

impl AcceptLoop {
    /// The next accepted connection (errors are results; the loop goes on).
    pub(crate) fn poll_next(
        &mut self,
        drv: &Driver,
        fd: &SharedFd,
        cx: &mut Context<'_>,
    ) -> Poll<io::Result<std::os::fd::OwnedFd>> {
        loop {
            if let Some(op) = self.single.as_mut() {
                let res = ready!(Pin::new(op).poll(cx));
                self.single = None;
                return Poll::Ready(res.map(|(fd, _addr)| fd));
            }
            #[cfg(target_os = "linux")]
            if !self.single_only
                && let Driver::Uring(d) = drv
                && drv.uses(crate::driver::Feature::MultishotAccept)
            {
                let op = self
                    .multi
                    .get_or_insert_with(|| d.submit_multi(AcceptMulti { fd: fd.clone() }));
                let Some((res, flags, _)) = ready!(op.poll_next_cqe(cx)) else {
                    // Ended and every result taken: re-arm.
                    self.multi = None;
                    continue;
                };
                if !io_uring::cqueue::more(flags) {
                    self.multi = None;
                }
                match res {
                    Ok(newfd) => {
                        self.multi_worked = true;
                        // SAFETY: the kernel returned a fresh fd that we now own.
                        let owned =
                            unsafe { <std::os::fd::OwnedFd as std::os::fd::FromRawFd>::from_raw_fd(newfd as i32) };
                        return Poll::Ready(Ok(owned));
                    }
                    // Ended by a cancel (the driver's queue bound, or not
                    // ours): re-arm.
                    Err(e) if e.raw_os_error() == Some(libc::ECANCELED) => continue,
                    Err(e) if e.raw_os_error() == Some(libc::EINVAL) && !self.multi_worked => {
                        self.single_only = true;
                        continue;
                    }
                    Err(e) => return Poll::Ready(Err(e)),
                }
            }
            self.single_only = true;
            self.single = Some(super::submit(drv, super::Accept::new(fd)));
        }
    }
}
