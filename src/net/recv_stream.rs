//! Pooled receives: [`RecvStream`], a stream of [`PooledBuf`]s, on top of
//! the driver's pooled receive (`driver::ops::multi::PooledRecv`: one
//! multishot `RECV` with a provided-buffer ring on io_uring, a `recv` into
//! a heap buffer per item on the fallback backend).
//!
//! Dropping the stream cancels the armed receive; buffers it picked but
//! never handed out go back to the pool.

use std::io;
use std::pin::Pin;
use std::task::{Context, Poll, ready};

use crate::buf::PooledBuf;
use crate::driver::Driver;
use crate::driver::ops::multi::PooledRecv;
use crate::io::SharedFd;

/// A `futures_core::Stream` of received chunks, from
/// [`TcpStream::recv_stream`](crate::net::TcpStream::recv_stream) (and the
/// Unix stream and read halves). Ends (`None`) at end of stream; errors are
/// items, after which the stream may be polled again.
pub struct RecvStream<'a> {
    drv: &'a Driver,
    fd: &'a SharedFd,
    eof: bool,
    recv: PooledRecv,
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
            recv: PooledRecv::default(),
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
        let res = ready!(self.recv.poll_next(self.drv, self.fd, cx));
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

/// A `futures_core::Stream` of received datagrams with their senders, from
/// [`UdpSocket::recv_from_stream`](crate::net::UdpSocket::recv_from_stream).
/// It never ends; errors are items, after which it may be polled again.
pub struct RecvFromStream<'a> {
    drv: &'a Driver,
    fd: &'a SharedFd,
    recv: crate::driver::ops::dgram::PooledRecvFrom,
}

impl std::fmt::Debug for RecvFromStream<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RecvFromStream").field("fd", &self.fd.raw()).finish()
    }
}

impl<'a> RecvFromStream<'a> {
    pub(crate) fn new(drv: &'a Driver, fd: &'a SharedFd) -> RecvFromStream<'a> {
        RecvFromStream {
            drv,
            fd,
            recv: Default::default(),
        }
    }

    /// The next datagram: its bytes, and [`RecvMeta`](super::RecvMeta)
    /// with its length, sender and whether it was truncated.
    pub async fn next_datagram(&mut self) -> io::Result<(PooledBuf, super::RecvMeta<std::net::SocketAddr>)> {
        std::future::poll_fn(|cx| self.poll_datagram(cx)).await
    }

    fn poll_datagram(
        &mut self,
        cx: &mut Context<'_>,
    ) -> Poll<io::Result<(PooledBuf, super::RecvMeta<std::net::SocketAddr>)>> {
        let d = ready!(self.recv.poll_next(self.drv, self.fd, cx))?;
        let addr = d.addr.as_socket().ok_or_else(|| {
            io::Error::new(
                io::ErrorKind::InvalidData,
                "ringloop: datagram sender is not an IP address",
            )
        })?;
        let meta = super::RecvMeta {
            len: d.buf.len(),
            addr,
            truncated: d.truncated,
        };
        Poll::Ready(Ok((d.buf, meta)))
    }
}

impl futures_core::Stream for RecvFromStream<'_> {
    type Item = io::Result<(PooledBuf, super::RecvMeta<std::net::SocketAddr>)>;

    fn poll_next(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        self.get_mut().poll_datagram(cx).map(Some)
    }
}
