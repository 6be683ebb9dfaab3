//! Pooled receives: [`RecvStream`], a stream of [`PooledBuf`]s.
//!
//! On io_uring one multishot `RECV` with buffer selection stays armed for
//! the connection: the kernel picks a buffer of the loop's pool when data
//! arrives and posts a CQE, so a request costs no SQE and no poll arm on the
//! receive side. The operation ends when the kernel ends it (end of stream,
//! an error, or `ENOBUFS` when every pool buffer is out); it is then re-armed
//! on the next poll. `ENOBUFS` consumed no data: that one receive runs as a
//! single-shot `RECV` into a heap buffer, and the next poll re-arms the
//! multishot one. Kernels without a buffer ring (before 5.19) or without
//! multishot receive (before 6.0, which rejects it with `EINVAL`) get
//! single-shot receives throughout. On the readiness backend each item is
//! one `recv` into a fresh heap buffer.
//!
//! Dropping the stream cancels the armed receive; buffers it picked but
//! never handed out go back to the pool (the driver recycles them from the
//! queued and the late completions).

use std::io;
use std::pin::Pin;
use std::task::{Context, Poll, ready};

use ringloop_fallback::WaitToken;

use crate::buf::PooledBuf;
use crate::driver::Driver;
#[cfg(target_os = "linux")]
use crate::driver::uring::{MultiOp, Op, pool::Pool};
use crate::io::SharedFd;

/// Receive size on the readiness backend and for single-shot fallbacks.
const HEAP_RECV: usize = 4096;

/// A `futures_core::Stream` of received chunks, from
/// [`TcpStream::recv_stream`](crate::net::TcpStream::recv_stream) (and the
/// Unix stream and read halves). Ends (`None`) at end of stream; errors are
/// items, after which the stream may be polled again.
pub struct RecvStream<'a> {
    drv: &'a Driver,
    fd: &'a SharedFd,
    eof: bool,
    #[cfg(target_os = "linux")]
    uring: UringRecv,
    /// Readiness backend: this stream's reactor waiter and read buffer.
    wait: Option<WaitToken>,
}

#[cfg(target_os = "linux")]
#[derive(Default)]
struct UringRecv {
    multi: Option<(MultiOp<SharedFd>, std::rc::Rc<Pool>)>,
    single: Option<Op<(SharedFd, Vec<u8>)>>,
    /// Multishot receive unavailable (no pool, or the kernel refused it).
    single_only: bool,
    /// A multishot receive produced at least one result (so an `EINVAL`
    /// is not the kernel refusing the multishot flag).
    multi_worked: bool,
}

impl std::fmt::Debug for RecvStream<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RecvStream")
            .field("fd", &self.fd.raw())
            .field("eof", &self.eof)
            .finish()
    }
}

impl<'a> RecvStream<'a> {
    pub(crate) fn new(drv: &'a Driver, fd: &'a SharedFd) -> RecvStream<'a> {
        RecvStream {
            drv,
            fd,
            eof: false,
            #[cfg(target_os = "linux")]
            uring: UringRecv::default(),
            wait: None,
        }
    }

    /// The next chunk: `None` at end of stream.
    pub async fn next_buf(&mut self) -> Option<io::Result<PooledBuf>> {
        std::future::poll_fn(|cx| self.poll_next_buf(cx)).await
    }

    fn poll_next_buf(&mut self, cx: &mut Context<'_>) -> Poll<Option<io::Result<PooledBuf>>> {
        if self.eof {
            return Poll::Ready(None);
        }
        let res = match self.drv {
            #[cfg(target_os = "linux")]
            Driver::Uring(d) => ready!(self.uring.poll(d, self.fd, cx)),
            Driver::Readiness(_) => {
                let mut buf = Vec::with_capacity(HEAP_RECV);
                let ptr = buf.as_mut_ptr();
                // SAFETY: `ptr` is the start of the Vec's HEAP_RECV bytes of
                // capacity, writable for the call.
                let n = ready!(unsafe {
                    super::compat::poll_recv_now(self.drv, self.fd, &mut self.wait, cx, ptr, HEAP_RECV)
                });
                n.map(|n| {
                    // SAFETY: `recv` initialised the first `n` bytes.
                    unsafe { buf.set_len(n) };
                    (n > 0).then(|| PooledBuf::from_vec(buf))
                })
            }
        };
        Poll::Ready(match res {
            Ok(Some(buf)) => Some(Ok(buf)),
            Ok(None) => {
                self.eof = true;
                None
            }
            Err(e) => Some(Err(e)),
        })
    }
}

impl futures_core::Stream for RecvStream<'_> {
    type Item = io::Result<PooledBuf>;

    fn poll_next(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        self.get_mut().poll_next_buf(cx)
    }
}

#[cfg(target_os = "linux")]
impl UringRecv {
    /// One received chunk (`None`: end of stream).
    fn poll(
        &mut self,
        d: &crate::driver::uring::UringDriver,
        fd: &SharedFd,
        cx: &mut Context<'_>,
    ) -> Poll<io::Result<Option<PooledBuf>>> {
        use io_uring::cqueue;
        loop {
            if let Some(op) = self.single.as_mut() {
                let (res, (_, mut buf)) = ready!(Pin::new(op).poll(cx));
                self.single = None;
                return Poll::Ready(res.map(|n| {
                    let n = (n as usize).min(buf.capacity());
                    // SAFETY: the kernel initialised the first `n` bytes.
                    unsafe { buf.set_len(n) };
                    (n > 0).then(|| PooledBuf::from_vec(buf))
                }));
            }
            if self.single_only {
                self.single = Some(submit_single(d, fd));
                continue;
            }
            if self.multi.is_none() {
                let Some(pool) = d.recv_pool() else {
                    self.single_only = true;
                    continue;
                };
                // SAFETY: the SQE references no memory of ours (the kernel
                // picks pool buffers, which outlive the ring's use of them),
                // and the fd is kept open by the op's `SharedFd`.
                let op = unsafe {
                    d.submit_multishot(fd.clone(), |fd| {
                        io_uring::opcode::RecvMulti::new(
                            io_uring::types::Fd(fd.raw()),
                            crate::driver::uring::pool::POOL_GROUP,
                        )
                        .build()
                    })
                };
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
                        Some(libc::ENOBUFS) => self.single = Some(submit_single(d, fd)),
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

#[cfg(target_os = "linux")]
fn submit_single(d: &crate::driver::uring::UringDriver, fd: &SharedFd) -> Op<(SharedFd, Vec<u8>)> {
    // SAFETY: the SQE points into the Vec's heap capacity and at `fd`, both
    // owned by the op's resources until completion.
    unsafe {
        d.submit((fd.clone(), Vec::with_capacity(HEAP_RECV)), |(fd, buf)| {
            io_uring::opcode::Recv::new(io_uring::types::Fd(fd.raw()), buf.as_mut_ptr(), HEAP_RECV as u32).build()
        })
    }
}
