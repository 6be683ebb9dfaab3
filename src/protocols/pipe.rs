//! Pipe transports: asyncio's `loop.connect_read_pipe(factory, pipe)` and
//! `loop.connect_write_pipe(factory, pipe)` for any pipe-like fd (an OS
//! pipe, a FIFO, a child's stdin/stdout, a socket or a character device).
//!
//! They are [`Transport`]s with one direction disabled: a read pipe calls
//! `data_received`, then `eof_received` and `connection_lost(None)` at end
//! of file (`write` gives [`TransportError::NotWritable`](super::TransportError));
//! a write pipe buffers `write`s with the usual water marks and
//! `pause_writing` / `resume_writing`, closes the pipe on `write_eof` or
//! `close` once the buffer is sent, and notices the reader end going away
//! (`connection_lost(None)`, or `BrokenPipe` if bytes were still buffered).
//! The transport owns the fd (put in non-blocking mode) and closes it.
//!
//! A write to a pipe whose reader is gone raises `SIGPIPE` in the kernel;
//! Rust programs ignore it by default (so the write fails with `EPIPE`,
//! reported through `connection_lost`); a process that restored the
//! default disposition is killed, as with `std`'s pipes.

use std::cell::RefCell;
use std::io;
use std::os::fd::{AsRawFd, OwnedFd, RawFd};
use std::rc::Rc;

use super::transport::{Kind, StreamIo, sealed};
use super::{Address, Protocol, Transport};
use crate::buf::BufResult;
use crate::driver::Driver;
use crate::io::{SharedFd, ShortRead, current_driver, ops, set_nonblocking};

type LocalBoxFuture<'a, T> = std::pin::Pin<Box<dyn std::future::Future<Output = T> + 'a>>;

/// One end of a pipe on the loop's driver.
pub(crate) struct PipeIo {
    fd: SharedFd,
    drv: Driver,
    write_end: bool,
}

impl PipeIo {
    fn new(fd: OwnedFd, write_end: bool) -> io::Result<PipeIo> {
        // asyncio accepts pipes, sockets and character devices only (a
        // regular file is always "ready" and cannot be watched).
        // SAFETY: an all-zero `stat` is a valid out-buffer.
        let mut st: libc::stat = unsafe { std::mem::zeroed() };
        // SAFETY: fstat on an fd we own, into a valid `stat`.
        if unsafe { libc::fstat(fd.as_raw_fd(), &mut st) } < 0 {
            return Err(io::Error::last_os_error());
        }
        let fmt = st.st_mode & libc::S_IFMT;
        if !matches!(fmt, libc::S_IFIFO | libc::S_IFSOCK | libc::S_IFCHR) {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                "pipe transports are for pipes, sockets and character devices only",
            ));
        }
        let drv = current_driver()?;
        set_nonblocking(fd.as_raw_fd(), true)?;
        let fd = SharedFd::new(fd, &drv)?;
        if fmt == libc::S_IFIFO {
            // A short read emptied the pipe.
            fd.set_short_read(ShortRead::Drains);
        }
        Ok(PipeIo { fd, drv, write_end })
    }

    /// Waits until the reader end of this write end is gone (or, for a
    /// socket, anything became readable: asyncio treats that as the peer
    /// closing too).
    async fn reader_end_gone(&self) -> io::Result<()> {
        loop {
            ops::poll_readable(&self.drv, &self.fd).await?;
            // A report may be stale (the fallback backend's initial state):
            // confirm with a zero-timeout poll(2).
            let mut p = libc::pollfd {
                fd: self.fd.raw(),
                events: libc::POLLIN,
                revents: 0,
            };
            // SAFETY: one valid pollfd, count 1, no wait.
            let n = unsafe { libc::poll(&mut p, 1, 0) };
            if n > 0 && p.revents != 0 {
                return Ok(());
            }
        }
    }
}

impl AsRawFd for PipeIo {
    fn as_raw_fd(&self) -> RawFd {
        self.fd.raw()
    }
}

impl sealed::Sealed for PipeIo {}

impl StreamIo for PipeIo {
    fn read_some(&self, buf: Vec<u8>) -> LocalBoxFuture<'_, BufResult<usize, Vec<u8>>> {
        if self.write_end {
            return Box::pin(async move { (self.reader_end_gone().await.map(|()| 0), buf) });
        }
        Box::pin(ops::read(&self.drv, &self.fd, buf, None))
    }
    fn write_everything(&self, buf: Vec<u8>) -> LocalBoxFuture<'_, BufResult<(), Vec<u8>>> {
        Box::pin(crate::buf::write_all_with(buf, |s, _| {
            ops::write(&self.drv, &self.fd, s, None)
        }))
    }
    fn shutdown_write(&self) -> io::Result<()> {
        // A pipe has no half-close: the transport closes it next.
        Ok(())
    }
    fn addresses(&self) -> (Option<Address>, Option<Address>) {
        (None, None)
    }
}

/// Reads the pipe `pipe` with a protocol (asyncio's
/// `loop.connect_read_pipe(protocol_factory, pipe)`): builds the protocol,
/// calls `connection_made` and starts reading. `data_received` follows for
/// every chunk, then `eof_received` and `connection_lost(None)` at end of
/// file. `pause_reading` / `resume_reading` / `close` work as on a socket
/// transport; the transport owns `pipe` and closes it.
///
/// `InvalidInput` if `pipe` is not a pipe, socket or character device.
pub fn connect_read_pipe<P, F>(factory: F, pipe: impl Into<OwnedFd>) -> io::Result<(Transport, Rc<RefCell<P>>)>
where
    P: Protocol,
    F: FnOnce() -> P,
{
    let io = PipeIo::new(pipe.into(), false)?;
    let protocol = Rc::new(RefCell::new(factory()));
    let t = Transport::start_kind(Rc::new(io), protocol.clone(), Kind::ReadPipe)?;
    Ok((t, protocol))
}

/// Writes to the pipe `pipe` through a protocol's transport (asyncio's
/// `loop.connect_write_pipe(protocol_factory, pipe)`): `write` buffers
/// (high/low water marks → `pause_writing` / `resume_writing`),
/// `write_eof` / `close` close the pipe once the buffer is sent, `abort`
/// at once; `connection_lost` follows, with `BrokenPipe` if the reader end
/// went away while bytes were buffered. The transport owns `pipe`.
///
/// `InvalidInput` if `pipe` is not a pipe, socket or character device.
pub fn connect_write_pipe<P, F>(factory: F, pipe: impl Into<OwnedFd>) -> io::Result<(Transport, Rc<RefCell<P>>)>
where
    P: Protocol,
    F: FnOnce() -> P,
{
    let io = PipeIo::new(pipe.into(), true)?;
    let protocol = Rc::new(RefCell::new(factory()));
    let t = Transport::start_kind(Rc::new(io), protocol.clone(), Kind::WritePipe)?;
    Ok((t, protocol))
}
