//! hyper 1.x on ringloop (feature `hyper`).
//!
//! * [`HyperIo`] adapts any ringloop stream (anything with `futures-io`'s
//!   `AsyncBufRead + AsyncWrite`: [`TcpStream`](crate::net::TcpStream),
//!   [`UnixStream`](crate::net::UnixStream), a TLS stream) to
//!   `hyper::rt::Read`/`Write`. Reads copy straight out of the stream's own
//!   read buffer into hyper's uninitialised buffer (no zeroing, no extra
//!   buffer).
//! * [`LocalExec`] is a `hyper::rt::Executor` that spawns on the current
//!   loop: no `Send` bound, so HTTP/2 services may hold `Rc`s.
//! * [`LoopTimer`] is a `hyper::rt::Timer` on the loop clock, so hyper's
//!   timeouts follow a virtual clock in tests.
//! * [`Server`] / [`serve`] / [`serve_tls`] accept connections, speak
//!   HTTP/1.1 and HTTP/2 (h2c by prior knowledge, or ALPN over TLS), support
//!   upgrades, and shut down gracefully.
//! * [`http1_handshake`] / [`http2_handshake`] start a client connection.
//!
//! Connections are wrapped in [`ThreadBound`] so they satisfy
//! the `Send` bound of hyper's upgrades (`Upgraded` is `dyn Send`): an
//! upgraded connection can be taken back with [`downcast_upgraded`].

mod client;
mod server;

use std::fmt;
use std::future::Future;
use std::io;
use std::pin::Pin;
use std::task::{Context, Poll, ready};
use std::time::{Duration, Instant};

use futures_io::{AsyncBufRead, AsyncRead, AsyncWrite};

pub use client::{http1_handshake, http2_handshake};
#[cfg(feature = "tls")]
pub use server::serve_tls;
pub use server::{Connection, Server, serve};

use crate::ThreadBound;

/// A ringloop stream as a hyper transport (`hyper::rt::Read + Write`).
///
/// Also implements the `futures-io` traits itself (bytes given back by
/// [`downcast_upgraded`] are read first), so an upgraded connection can go
/// to `futures-io` users such as async-tungstenite.
pub struct HyperIo<T> {
    inner: T,
    /// Bytes to hand out before reading `inner`: `rewind[pos..]`.
    rewind: Vec<u8>,
    pos: usize,
}

impl<T> HyperIo<T> {
    /// Wraps a stream.
    pub fn new(inner: T) -> HyperIo<T> {
        HyperIo {
            inner,
            rewind: Vec::new(),
            pos: 0,
        }
    }

    /// Wraps a stream whose first bytes were already read: `prefix` is read
    /// before the stream.
    pub fn with_prefix(inner: T, prefix: Vec<u8>) -> HyperIo<T> {
        HyperIo {
            inner,
            rewind: prefix,
            pos: 0,
        }
    }

    /// The stream.
    pub fn get_ref(&self) -> &T {
        &self.inner
    }

    /// The stream.
    pub fn get_mut(&mut self) -> &mut T {
        &mut self.inner
    }

    /// Bytes read ahead of the stream that a reader has not taken yet.
    pub fn prefix(&self) -> &[u8] {
        &self.rewind[self.pos..]
    }

    /// The stream and the bytes read ahead of it ([`prefix`](Self::prefix)).
    pub fn into_parts(mut self) -> (T, Vec<u8>) {
        self.rewind.drain(..self.pos);
        (self.inner, self.rewind)
    }

    fn take_prefix(&mut self, max: usize) -> Option<&[u8]> {
        if self.pos >= self.rewind.len() {
            return None;
        }
        let n = max.min(self.rewind.len() - self.pos);
        let s = &self.rewind[self.pos..self.pos + n];
        self.pos += n;
        Some(s)
    }

    fn release_prefix(&mut self) {
        if self.pos >= self.rewind.len() && !self.rewind.is_empty() {
            self.rewind = Vec::new();
            self.pos = 0;
        }
    }
}

impl<T: fmt::Debug> fmt::Debug for HyperIo<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("HyperIo")
            .field("inner", &self.inner)
            .field("prefix_len", &(self.rewind.len() - self.pos))
            .finish()
    }
}

impl<T: AsyncBufRead + Unpin> ::hyper::rt::Read for HyperIo<T> {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        mut buf: ::hyper::rt::ReadBufCursor<'_>,
    ) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        let room = buf.remaining();
        if room == 0 {
            return Poll::Ready(Ok(()));
        }
        if let Some(p) = this.take_prefix(room) {
            buf.put_slice(p);
            this.release_prefix();
            return Poll::Ready(Ok(()));
        }
        // Copy out of the stream's own buffer: hyper's cursor is
        // uninitialised memory, and `put_slice` fills it without zeroing.
        let avail = ready!(Pin::new(&mut this.inner).poll_fill_buf(cx))?;
        let n = avail.len().min(room);
        buf.put_slice(&avail[..n]);
        Pin::new(&mut this.inner).consume(n);
        Poll::Ready(Ok(()))
    }
}

impl<T: AsyncWrite + Unpin> ::hyper::rt::Write for HyperIo<T> {
    fn poll_write(self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &[u8]) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.get_mut().inner).poll_write(cx, buf)
    }
    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().inner).poll_flush(cx)
    }
    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().inner).poll_close(cx)
    }
}

impl<T: AsyncRead + Unpin> AsyncRead for HyperIo<T> {
    fn poll_read(self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &mut [u8]) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        if let Some(p) = this.take_prefix(buf.len()) {
            let n = p.len();
            buf[..n].copy_from_slice(p);
            this.release_prefix();
            return Poll::Ready(Ok(n));
        }
        Pin::new(&mut this.inner).poll_read(cx, buf)
    }
}

impl<T: AsyncBufRead + Unpin> AsyncBufRead for HyperIo<T> {
    fn poll_fill_buf(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<&[u8]>> {
        let this = self.get_mut();
        if this.pos < this.rewind.len() {
            return Poll::Ready(Ok(&this.rewind[this.pos..]));
        }
        Pin::new(&mut this.inner).poll_fill_buf(cx)
    }
    fn consume(self: Pin<&mut Self>, amt: usize) {
        let this = self.get_mut();
        if this.pos < this.rewind.len() {
            this.pos = (this.pos + amt).min(this.rewind.len());
            this.release_prefix();
        } else {
            Pin::new(&mut this.inner).consume(amt)
        }
    }
}

impl<T: AsyncWrite + Unpin> AsyncWrite for HyperIo<T> {
    fn poll_write(self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &[u8]) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.get_mut().inner).poll_write(cx, buf)
    }
    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.get_mut().inner).poll_write_vectored(cx, bufs)
    }
    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().inner).poll_flush(cx)
    }
    fn poll_close(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().inner).poll_close(cx)
    }
}

/// The transport type the [`Server`] and the client handshakes give hyper:
/// what an [`Upgraded`](::hyper::upgrade::Upgraded) connection downcasts to.
pub type LoopIo<T> = HyperIo<ThreadBound<T>>;

/// Takes an upgraded connection (`hyper::upgrade::on(..).await`) back as
/// the ringloop stream `T` it was served on, with the bytes hyper had read
/// past the upgrade as the [`prefix`](HyperIo::prefix). `T` is the stream
/// given to the server or handshake: `TcpStream`, or
/// `tls::TlsStream<TcpStream>` under [`serve_tls`]. Gives the connection
/// back for another `T`.
///
/// The result still implements `futures-io` (and is `Send`, through its
/// [`ThreadBound`]), so it can go straight to a WebSocket library such as
/// async-tungstenite; [`HyperIo::into_parts`] and
/// [`ThreadBound::into_inner`] unwrap the plain stream on the loop thread.
pub fn downcast_upgraded<T>(up: ::hyper::upgrade::Upgraded) -> Result<LoopIo<T>, ::hyper::upgrade::Upgraded>
where
    T: AsyncBufRead + AsyncWrite + Unpin + 'static,
{
    let parts = up.downcast::<LoopIo<T>>()?;
    let (bound, prefix) = parts.io.into_parts();
    // hyper read `read_buf` out of this object (prefix first) before
    // `prefix`'s rest, which came before the stream's bytes.
    let mut all = parts.read_buf.to_vec();
    all.extend_from_slice(&prefix);
    Ok(HyperIo::with_prefix(bound, all))
}

/// A `hyper::rt::Executor` spawning onto the current loop with
/// [`spawn`](crate::spawn): no `Send` bound.
///
/// Executed futures are detached tasks; outside a loop they are dropped
/// (hyper then sees the stream fail instead of a panic).
#[derive(Clone, Copy, Debug, Default)]
pub struct LocalExec;

impl<F> ::hyper::rt::Executor<F> for LocalExec
where
    F: Future + 'static,
    F::Output: 'static,
{
    fn execute(&self, fut: F) {
        if let Ok(task) = crate::try_spawn(fut) {
            task.detach();
        }
    }
}

/// A `hyper::rt::Timer` on the loop clock ([`sleep`](crate::sleep)), so
/// hyper's timeouts (header read timeout, keep-alive pings) follow a
/// virtual clock.
#[derive(Clone, Copy, Debug, Default)]
pub struct LoopTimer;

/// The [`Sleep`](crate::Sleep) future as a `hyper::rt::Sleep`.
struct HyperSleep(crate::Sleep);

impl Future for HyperSleep {
    type Output = ();
    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<()> {
        Pin::new(&mut self.get_mut().0).poll(cx)
    }
}

impl ::hyper::rt::Sleep for HyperSleep {}

impl ::hyper::rt::Timer for LoopTimer {
    fn sleep(&self, duration: Duration) -> Pin<Box<dyn ::hyper::rt::Sleep>> {
        Box::pin(HyperSleep(crate::sleep(duration)))
    }
    fn sleep_until(&self, deadline: Instant) -> Pin<Box<dyn ::hyper::rt::Sleep>> {
        Box::pin(HyperSleep(crate::sleep_until(deadline)))
    }
    fn now(&self) -> Instant {
        crate::runtime::current_inner()
            .map(|lp| lp.clock.now())
            .unwrap_or_else(Instant::now)
    }
}
