//! Socket helpers every stream type shares: `sendmsg`/`recvmsg` (vectored
//! stream I/O, datagrams with addresses), `close`, `write_all`,
//! `read_exact`, and the accept loop behind `incoming()`. The operations
//! themselves are `driver::ops` types.

use std::future::Future;
use std::io;
use std::os::fd::OwnedFd;
use std::pin::Pin;
use std::task::{Context, Poll, ready};

use socket2::SockAddr;

use crate::buf::{BufResult, IoBuf, IoBufMut, Slice, count_written};
use crate::driver::Driver;
use crate::driver::ops::{self as dops, submit};
use crate::io::{SharedFd, ops};

pub(crate) use crate::driver::ops::{InBufs, One, OutBufs, Received};

/// One datagram from `buf` to `addr`: a `SEND` with a destination address
/// where the driver has it (`Driver::send_to_supported`), else `sendmsg`.
pub(crate) async fn send_to<B: IoBuf>(drv: &Driver, fd: &SharedFd, buf: B, addr: SockAddr) -> BufResult<usize, B> {
    if drv.send_to_supported() {
        return submit(drv, dops::SendTo::new(fd, buf, addr)).await;
    }
    let (res, One(buf)) = send_msg(drv, fd, One(buf), Some(&addr)).await;
    (res, buf)
}

/// `sendmsg(2)` of `bufs` (gathered, in order), to `addr` if given, with
/// `MSG_NOSIGNAL`.
pub(crate) async fn send_msg<T: OutBufs>(
    drv: &Driver,
    fd: &SharedFd,
    bufs: T,
    addr: Option<&SockAddr>,
) -> BufResult<usize, T> {
    submit(drv, dops::SendMsg::new(fd, bufs, addr)).await
}

/// `recvmsg(2)` into `bufs` (scattered, in order). `want_addr` asks for the
/// sender's address; `datagram` makes truncation detectable (see
/// [`RecvMsg`](dops::RecvMsg)).
pub(crate) async fn recv_msg<T: InBufs>(
    drv: &Driver,
    fd: &SharedFd,
    bufs: T,
    want_addr: bool,
    datagram: bool,
) -> BufResult<Received, T> {
    submit(drv, dops::RecvMsg::new(fd, bufs, want_addr, datagram)).await
}

/// Closes `fd` and reports the result when this is its last handle
/// (io_uring `CLOSE` or `close(2)`); when an operation still holds it, it is
/// closed once that operation is gone and `Ok` is returned.
pub(crate) async fn close(drv: &Driver, fd: SharedFd) -> io::Result<()> {
    let Ok(owned) = fd.try_into_owned() else {
        return Ok(());
    };
    submit(drv, dops::Close::new(owned)).await
}

/// `write_all` for stream sockets: sends until every initialised byte of
/// `buf` went out (a zero-byte send is `WriteZero`, `EINTR` retries, as in
/// [`write_all_with`](crate::buf::write_all_with)).
pub(crate) fn send_all<'a, B: IoBuf>(drv: &'a Driver, fd: &'a SharedFd, buf: B) -> SendAll<'a, B> {
    let total = buf.bytes_init();
    let state = if total == 0 {
        AllState::Empty(Some(buf))
    } else {
        AllState::Sending(ops::send(drv, fd, buf.slice(..), 0))
    };
    SendAll { total, done: 0, state }
}

/// The future of [`send_all`], written by hand for its size (see
/// [`ops::SendOne`]): one send in flight and two counters.
pub(crate) struct SendAll<'a, B: IoBuf> {
    total: usize,
    done: usize,
    state: AllState<'a, B>,
}

// The buffer is never pinned: it only moves in and out by value.
impl<B: IoBuf> Unpin for SendAll<'_, B> {}

enum AllState<'a, B: IoBuf> {
    Sending(ops::SendOne<'a, Slice<B>>),
    /// Nothing to send: the buffer goes straight back.
    Empty(Option<B>),
}

impl<B: IoBuf> Future for SendAll<'_, B> {
    type Output = BufResult<(), B>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let this = self.get_mut();
        let send = match &mut this.state {
            AllState::Sending(send) => send,
            AllState::Empty(buf) => return Poll::Ready((Ok(()), buf.take().expect("SendAll polled after completion"))),
        };
        loop {
            let (res, s) = ready!(Pin::new(&mut *send).poll(cx));
            let buf = s.into_inner();
            if let Err(e) = count_written(res, &mut this.done) {
                return Poll::Ready((Err(e), buf));
            }
            if this.done >= this.total {
                return Poll::Ready((Ok(()), buf));
            }
            *send = send.next(buf.slice(this.done..));
        }
    }
}

/// `read_exact` for stream sockets: receives until `buf` holds `len`
/// initialised bytes; an early end of stream is `UnexpectedEof`. A `len`
/// whose buffer cannot be allocated is `OutOfMemory` (nothing is read),
/// never an abort.
pub(crate) async fn recv_exact(drv: &Driver, fd: &SharedFd, mut buf: Vec<u8>, len: usize) -> BufResult<(), Vec<u8>> {
    if let Err(e) = buf.try_reserve(len.saturating_sub(buf.len())) {
        let msg = format!("read_exact: cannot allocate a buffer of {len} bytes: {e}");
        return (Err(io::Error::new(io::ErrorKind::OutOfMemory, msg)), buf);
    }
    while buf.len() < len {
        let start = buf.len();
        let (res, s) = ops::recv(drv, fd, buf.slice(start..len), 0).await;
        buf = s.into_inner();
        match res {
            Ok(0) => return (Err(io::ErrorKind::UnexpectedEof.into()), buf),
            Ok(_) => {}
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return (Err(e), buf),
        }
    }
    (Ok(()), buf)
}

/// Vectored receive on a stream socket: fills `bufs` in order.
pub(crate) async fn recv_vectored<B: IoBufMut>(drv: &Driver, fd: &SharedFd, bufs: Vec<B>) -> BufResult<usize, Vec<B>> {
    let (res, bufs) = recv_msg(drv, fd, bufs, false, false).await;
    (res.map(|r| r.len), bufs)
}

/// Vectored send on a stream socket: gathers `bufs` in order.
pub(crate) async fn send_vectored<B: IoBuf>(drv: &Driver, fd: &SharedFd, bufs: Vec<B>) -> BufResult<usize, Vec<B>> {
    send_msg(drv, fd, bufs, None).await
}

/// The accept loop behind the listeners' `incoming()` streams (the
/// driver's [`AcceptLoop`](crate::driver::ops::multi::AcceptLoop)).
pub(crate) struct Acceptor {
    drv: Driver,
    fd: SharedFd,
    accept: crate::driver::ops::multi::AcceptLoop,
}

impl Acceptor {
    pub(crate) fn new(drv: &Driver, fd: &SharedFd) -> Acceptor {
        Acceptor {
            drv: drv.clone(),
            fd: fd.clone(),
            accept: Default::default(),
        }
    }

    pub(crate) fn poll_accept(&mut self, cx: &mut std::task::Context<'_>) -> std::task::Poll<io::Result<OwnedFd>> {
        let res = self.accept.poll_next(&self.drv, &self.fd, cx);
        if res.is_pending() {
            crate::debug::note_wait(|| "Accept");
        }
        res
    }

    pub(crate) fn driver(&self) -> &Driver {
        &self.drv
    }
}
