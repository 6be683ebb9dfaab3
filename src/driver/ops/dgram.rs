//! Pooled datagram receives: [`PooledRecvFrom`], behind
//! `UdpSocket::recv_from_stream`.
//!
//! On io_uring one multishot `RECVMSG` (6.0) with buffer selection stays
//! armed for the socket: for each datagram the kernel picks a buffer of the
//! loop's pool and writes an `io_uring_recvmsg_out` header, the sender's
//! address and the payload into it, then posts a CQE. No SQE per datagram.
//! A datagram longer than the room left in a pool buffer is truncated and
//! reported so (`MSG_TRUNC`). `ENOBUFS` (every pool buffer out) consumed
//! nothing: that one receive runs as a single-shot `recvmsg` into a heap
//! buffer and the next poll re-arms. Without a buffer ring or multishot
//! `RECVMSG` (the kernel answers `EINVAL`) every receive is single-shot.
//! On the fallback backend each item is one `recvmsg` into a reused 64 KiB
//! buffer, copied out at its length (so nothing short of 64 KiB is
//! truncated there).

use std::io;
use std::mem;
use std::pin::Pin;
use std::task::{Context, Poll, ready};

use socket2::SockAddr;

use super::{One, RecvMsg, Submit};
use crate::buf::PooledBuf;
use crate::driver::Driver;
use crate::driver::fd::SharedFd;

#[cfg(target_os = "linux")]
use crate::driver::uring::pool::Pool;

/// Heap receive size: the largest UDP payload over IPv4 or IPv6 (without
/// jumbograms) fits.
const HEAP_DGRAM: usize = 64 * 1024;

/// One received datagram.
pub(crate) struct Datagram {
    pub(crate) buf: PooledBuf,
    /// The datagram was longer than `buf` (the rest is discarded).
    pub(crate) truncated: bool,
    pub(crate) addr: SockAddr,
}

/// Room reserved for the sender's address in a pool buffer: enough for
/// IPv4 and IPv6 socket addresses.
#[cfg(target_os = "linux")]
const NAME_LEN: usize = mem::size_of::<libc::sockaddr_in6>();

/// Multishot `RECVMSG` selecting buffers from the loop's pool (io_uring only).
#[cfg(target_os = "linux")]
pub(crate) struct RecvMsgMulti {
    fd: SharedFd,
    /// Only `msg_namelen` / `msg_controllen` matter: they fix the layout
    /// the kernel writes into each buffer. Boxed so the SQE's pointer stays
    /// valid while the op moves.
    hdr: Box<libc::msghdr>,
}

#[cfg(target_os = "linux")]
impl RecvMsgMulti {
    fn new(fd: &SharedFd) -> RecvMsgMulti {
        // SAFETY: an all-zero `msghdr` is valid (null pointers, zero lengths).
        let mut hdr: Box<libc::msghdr> = Box::new(unsafe { mem::zeroed() });
        hdr.msg_namelen = NAME_LEN as libc::socklen_t;
        RecvMsgMulti { fd: fd.clone(), hdr }
    }
}

// SAFETY: the SQE points at `hdr` (a heap allocation owned by the op until
// its final completion); the kernel picks pool buffers, which outlive the
// ring's use of them; `fd` keeps the socket open.
#[cfg(target_os = "linux")]
unsafe impl super::OpCode for RecvMsgMulti {
    type Output = ();
    const CODE: u8 = io_uring::opcode::RecvMsgMulti::CODE;

    fn sqe(&mut self) -> io_uring::squeue::Entry {
        let hdr: *const libc::msghdr = &*self.hdr;
        fd_sqe!(&self.fd, t => io_uring::opcode::RecvMsgMulti::new(
            t,
            hdr,
            crate::driver::uring::pool::DGRAM_GROUP,
        )
        .build())
    }

    fn readiness(&self) -> super::Readiness<'_> {
        super::Readiness::Unsupported
    }

    fn complete(self, _res: io::Result<usize>, _flags: u32) -> Self::Output {}
}

/// A socket's pooled datagram receives.
#[derive(Default)]
pub(crate) struct PooledRecvFrom {
    #[cfg(target_os = "linux")]
    multi: super::multi::MultiRecv<RecvMsgMulti>,
    /// A single-shot receive (fallback backend, or io_uring's fallback).
    single: Option<Submit<RecvMsg<One<Vec<u8>>>>>,
    /// The heap buffer single-shot receives reuse.
    scratch: Vec<u8>,
}

impl PooledRecvFrom {
    /// The next datagram.
    pub(crate) fn poll_next(
        &mut self,
        drv: &Driver,
        fd: &SharedFd,
        cx: &mut Context<'_>,
    ) -> Poll<io::Result<Datagram>> {
        loop {
            if let Some(op) = self.single.as_mut() {
                let (res, One(buf)) = ready!(Pin::new(op).poll(cx));
                self.single = None;
                let copied = res.as_ref().ok().map(|r| buf[..r.len].to_vec());
                self.scratch = buf;
                return Poll::Ready(res.and_then(|r| {
                    Ok(Datagram {
                        buf: PooledBuf::from_vec(copied.unwrap_or_default()),
                        truncated: r.truncated,
                        addr: r
                            .addr
                            .ok_or_else(|| io::Error::new(io::ErrorKind::InvalidData, "recvmsg returned no address"))?,
                    })
                }));
            }
            match drv {
                #[cfg(target_os = "linux")]
                Driver::Uring(d) if !self.multi.single_only => {
                    if let Some(dgram) = ready!(self.poll_multi(drv, d, fd, cx)) {
                        return Poll::Ready(dgram);
                    }
                }
                _ => self.submit_single(drv, fd),
            }
        }
    }

    fn submit_single(&mut self, drv: &Driver, fd: &SharedFd) {
        let mut buf = mem::take(&mut self.scratch);
        buf.clear();
        if buf.capacity() < HEAP_DGRAM {
            buf.reserve_exact(HEAP_DGRAM);
        }
        self.single = Some(super::submit(drv, RecvMsg::new(fd, One(buf), true, true)));
    }

    /// One step of the multishot receive: `Ready(None)` when the caller
    /// should loop (re-arm, or a single-shot receive was queued).
    #[cfg(target_os = "linux")]
    fn poll_multi(
        &mut self,
        drv: &Driver,
        d: &crate::driver::uring::UringDriver,
        fd: &SharedFd,
        cx: &mut Context<'_>,
    ) -> Poll<Option<io::Result<Datagram>>> {
        use super::multi::MultiStep;
        let arm = || {
            let usable =
                d.uses(crate::driver::Feature::MultishotRecv) && d.supports(<RecvMsgMulti as super::OpCode>::CODE);
            // A buffer must hold the header and the address at least.
            let pool = usable
                .then(|| d.dgram_pool())
                .flatten()
                .filter(|p| p.buf_size() as usize > HEADER + NAME_LEN)?;
            Some((d.submit_multi(RecvMsgMulti::new(fd)), pool))
        };
        match ready!(self.multi.poll_step(arm, cx)) {
            Err(e) => Poll::Ready(Some(Err(e))),
            Ok(MultiStep::Data(pool, Some((bid, off)), n)) => Poll::Ready(Some(parse(pool, bid, off, n))),
            Ok(MultiStep::Data(_, None, _)) => Poll::Ready(Some(Err(io::Error::other(
                "ringloop: io_uring multishot recvmsg without a buffer",
            )))),
            Ok(MultiStep::NoBuffers) => {
                self.submit_single(drv, fd);
                Poll::Ready(None)
            }
            Ok(MultiStep::Again) => Poll::Ready(None),
        }
    }
}

/// Size of `io_uring_recvmsg_out`, at the start of each buffer.
#[cfg(target_os = "linux")]
const HEADER: usize = 16;

/// Splits the `n` bytes the kernel wrote at `off` in pool buffer `bid`
/// into the sender's address and the payload (which stays in the buffer).
#[cfg(target_os = "linux")]
fn parse(pool: std::rc::Rc<Pool>, bid: u16, off: usize, n: usize) -> io::Result<Datagram> {
    let size = pool.buf_size() as usize;
    let start = pool.buf_ptr(bid);
    let off = off.min(size);
    // SAFETY: `off <= size`, so the pointer stays inside buffer `bid`.
    let base = unsafe { start.add(off) };
    // The kernel wrote `n` bytes (at most what is left of the buffer) at
    // `off` in buffer `bid`, which is ours until released (when `buf`
    // below drops).
    // SAFETY: those bytes are initialised and nothing writes them meanwhile.
    let written = unsafe { std::slice::from_raw_parts(base, n.min(size - off)) };
    let hdr = libc::msghdr {
        msg_namelen: NAME_LEN as libc::socklen_t,
        // SAFETY: zero is valid for the remaining plain fields.
        ..unsafe { mem::zeroed() }
    };
    let parsed = io_uring::types::RecvMsgOut::parse(written, &hdr);
    let (addr, off, len, truncated) = match parsed {
        Ok(out) => {
            let name = out.name_data();
            let mut storage: libc::sockaddr_storage =
                // SAFETY: an all-zero `sockaddr_storage` is valid.
                unsafe { mem::zeroed() };
            let name_len = name.len().min(mem::size_of::<libc::sockaddr_storage>());
            // SAFETY: `name` holds `name_len` bytes and `storage` is
            // `sockaddr_storage`-sized; they do not overlap.
            unsafe {
                std::ptr::copy_nonoverlapping(name.as_ptr(), (&raw mut storage).cast::<u8>(), name_len);
            }
            // SAFETY: `storage` holds a socket address of `name_len` bytes
            // as the kernel wrote it.
            let addr = unsafe { SockAddr::new(storage, name_len as libc::socklen_t) };
            let payload = out.payload_data();
            let off = payload.as_ptr() as usize - start as usize;
            (addr, off, payload.len(), out.is_payload_truncated())
        }
        Err(()) => {
            pool.release(bid);
            return Err(io::Error::new(
                io::ErrorKind::InvalidData,
                "ringloop: malformed io_uring multishot recvmsg buffer",
            ));
        }
    };
    Ok(Datagram {
        buf: PooledBuf::from_ring_at(pool, bid, off, len),
        truncated,
        addr,
    })
}
