//! `futures-io` compatibility: poll-based `AsyncRead` / `AsyncBufRead` /
//! `AsyncWrite` on top of the owned-buffer operations.
//!
//! The traits lend the caller's buffer only for the duration of one `poll`,
//! while an io_uring operation needs memory it owns until the completion.
//! So each direction keeps a small state machine:
//!
//! * **read (io_uring)**: an internal buffer (16 KiB) is lent to a `RECV`
//!   operation; `poll_read` copies from it, `poll_fill_buf` exposes it (the
//!   fallback backend's `poll_fill_buf` does the same).
//! * **write (io_uring)**: `poll_write` first finishes the write in flight
//!   (resubmitting the rest after a short send), then copies up to 64 KiB of
//!   the caller's bytes into the internal buffer, submits a `SEND` and
//!   returns `Ready(n)` at once (write-behind, like a `BufWriter` one
//!   operation deep). An error of that send is returned by the next
//!   `poll_write` / `poll_flush` / `poll_close`. `poll_flush` waits until
//!   the buffer has been sent, `poll_close` flushes and then shuts the write
//!   direction down.
//! * **fallback backend**: `poll_read`/`poll_write` call `recv`/`send`
//!   directly on the caller's buffer and wait for readiness on `EAGAIN`
//!   (with the cached edge-mode readiness of `io::retry_drain`); only
//!   `poll_fill_buf` uses the internal buffer. Nothing is buffered on the
//!   write side, so `poll_flush` is immediate.
//!
//! Dropping the object while an operation is in flight is fine: the driver
//! keeps the buffer until the kernel is done. Bytes that `poll_write`
//! accepted are never lost to a drop: a write-behind send still in flight
//! when the stream (or its write half) is dropped is handed to the driver
//! (`Send::linger`), which finishes it, short sends included, for up to
//! [`WRITE_LINGER`] while the loop runs (and when the loop is torn down), and
//! only then closes the socket. The stream's own `close()` flushes first.
//!
//! Mixing the owned-buffer methods (`read(buf)`) with the `futures-io`
//! traits on the same direction is allowed but bytes already buffered for
//! `poll_read` are not seen by `read(buf)`.

use std::io;
use std::pin::Pin;
use std::task::{Context, Poll, ready};

use ringloop_fallback::WaitToken;

use crate::buf::{IoBuf, Slice};
use crate::driver::Driver;
use crate::driver::ops::{self, Recv, Send, Submit, submit};
use crate::io::SharedFd;

const READ_CAP: usize = 16 * 1024;
const WRITE_CAP: usize = 64 * 1024;
/// How long bytes accepted by `poll_write` may keep a dropped stream's
/// socket open while the driver finishes sending them (like `SO_LINGER`,
/// but for the userspace write-behind buffer; the kernel's own send buffer
/// is flushed by the kernel after `close` as usual).
pub(crate) const WRITE_LINGER: std::time::Duration = std::time::Duration::from_secs(10);

/// Read-direction state.
#[derive(Default)]
pub(crate) struct ReadState {
    /// Buffered bytes are `buf[pos..]`.
    buf: Vec<u8>,
    pos: usize,
    op: Option<Submit<Recv<Vec<u8>>>>,
    /// Fallback backend: this direction's reactor waiter.
    wait: Option<WaitToken>,
}

/// Write-direction state.
#[derive(Default)]
pub(crate) struct WriteState {
    /// The buffer, when no send is in flight.
    spare: Vec<u8>,
    /// The write-behind send in flight (io_uring).
    op: Option<Submit<Send<Slice<Vec<u8>>>>>,
    /// `poll_close` already shut the write direction down.
    closed: bool,
    /// Fallback backend: this direction's reactor waiter.
    wait: Option<WaitToken>,
}

/// Both directions, allocated on first use (most streams never need it).
#[derive(Default)]
pub(crate) struct Compat {
    pub(crate) rd: ReadState,
    pub(crate) wr: WriteState,
}

/// Lazily boxed [`Compat`] state kept in a stream object.
#[derive(Default)]
pub(crate) struct CompatSlot(Option<Box<Compat>>);

impl CompatSlot {
    pub(crate) fn get(&mut self) -> &mut Compat {
        self.0.get_or_insert_with(Default::default)
    }
    /// Waits until bytes accepted by `poll_write` have been sent (for the
    /// streams' `close`); the error of a failed send is returned.
    pub(crate) async fn flush(&mut self, drv: &Driver, fd: &SharedFd) -> io::Result<()> {
        match &mut self.0 {
            Some(c) => std::future::poll_fn(|cx| c.wr.poll_flush(drv, fd, cx)).await,
            None => Ok(()),
        }
    }

    /// Takes the state out (for `into_split`).
    pub(crate) fn take(&mut self) -> Compat {
        self.0.take().map(|b| *b).unwrap_or_default()
    }
}

impl ReadState {
    fn buffered(&self) -> &[u8] {
        &self.buf[self.pos..]
    }

    /// `AsyncBufRead::poll_fill_buf`.
    pub(crate) fn poll_fill_buf(
        &mut self,
        drv: &Driver,
        fd: &SharedFd,
        cx: &mut Context<'_>,
    ) -> Poll<io::Result<&[u8]>> {
        if self.pos < self.buf.len() {
            return Poll::Ready(Ok(self.buffered()));
        }
        let op = self.op.get_or_insert_with(|| {
            let mut buf = std::mem::take(&mut self.buf);
            buf.clear();
            buf.reserve(READ_CAP);
            submit(drv, Recv::new(fd, buf, 0))
        });
        let (res, buf) = ready!(Pin::new(op).poll(cx));
        self.op = None;
        self.pos = 0;
        self.buf = buf;
        res?;
        Poll::Ready(Ok(self.buffered()))
    }

    /// `AsyncBufRead::consume`.
    pub(crate) fn consume(&mut self, amt: usize) {
        self.pos = (self.pos + amt).min(self.buf.len());
    }

    /// `AsyncRead::poll_read`.
    pub(crate) fn poll_read(
        &mut self,
        drv: &Driver,
        fd: &SharedFd,
        cx: &mut Context<'_>,
        out: &mut [u8],
    ) -> Poll<io::Result<usize>> {
        if out.is_empty() {
            return Poll::Ready(Ok(0));
        }
        if self.pos >= self.buf.len()
            && self.op.is_none()
            && let Some(res) = ops::poll_recv_slice(drv, fd, &mut self.wait, cx, out)
        {
            // Nothing buffered: read straight into the caller's slice.
            return res;
        }
        let avail = ready!(self.poll_fill_buf(drv, fd, cx))?;
        let n = avail.len().min(out.len());
        out[..n].copy_from_slice(&avail[..n]);
        self.consume(n);
        Poll::Ready(Ok(n))
    }
}

impl Drop for WriteState {
    fn drop(&mut self) {
        #[cfg(target_os = "linux")]
        if let Some(op) = self.op.take() {
            Send::linger(op, std::time::Instant::now() + WRITE_LINGER);
        }
    }
}

impl WriteState {
    /// Finishes the send in flight (resubmitting the rest after short sends).
    fn poll_drain(&mut self, drv: &Driver, fd: &SharedFd, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        while let Some(op) = self.op.as_mut() {
            let (res, slice) = ready!(Pin::new(op).poll(cx));
            self.op = None;
            let begin = slice.begin();
            let buf = slice.into_inner();
            let next = match res {
                Ok(0) => Err(io::Error::from(io::ErrorKind::WriteZero)),
                Ok(n) => Ok(begin + n),
                Err(e) if e.kind() == io::ErrorKind::Interrupted => Ok(begin),
                Err(e) => Err(e),
            };
            match next {
                Ok(off) if off < buf.len() => self.op = Some(submit(drv, Send::new(fd, buf.slice(off..), 0))),
                Ok(_) => self.spare = buf,
                Err(e) => {
                    // The unsent rest is dropped with the error.
                    self.spare = buf;
                    return Poll::Ready(Err(e));
                }
            }
        }
        Poll::Ready(Ok(()))
    }

    /// `AsyncWrite::poll_write`: straight from `data` where the backend can
    /// (readiness), else write-behind: copy up to 64 KiB into the internal
    /// buffer, submit a `SEND` and report the bytes as written.
    pub(crate) fn poll_write(
        &mut self,
        drv: &Driver,
        fd: &SharedFd,
        cx: &mut Context<'_>,
        data: &[u8],
    ) -> Poll<io::Result<usize>> {
        ready!(self.poll_drain(drv, fd, cx))?;
        if data.is_empty() {
            return Poll::Ready(Ok(0));
        }
        if let Some(res) = ops::poll_send_slice(drv, fd, &mut self.wait, cx, data) {
            return res;
        }
        let n = data.len().min(WRITE_CAP);
        let mut buf = std::mem::take(&mut self.spare);
        buf.clear();
        buf.extend_from_slice(&data[..n]);
        self.op = Some(submit(drv, Send::new(fd, buf.slice(..), 0)));
        Poll::Ready(Ok(n))
    }

    /// `AsyncWrite::poll_flush`.
    pub(crate) fn poll_flush(&mut self, drv: &Driver, fd: &SharedFd, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        self.poll_drain(drv, fd, cx)
    }

    /// `AsyncWrite::poll_close`: flush, then `shutdown(SHUT_WR)` once.
    pub(crate) fn poll_close(&mut self, drv: &Driver, fd: &SharedFd, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        ready!(self.poll_drain(drv, fd, cx))?;
        if !self.closed {
            self.closed = true;
            crate::io::ops::shutdown(fd, std::net::Shutdown::Write)?;
        }
        Poll::Ready(Ok(()))
    }
}
