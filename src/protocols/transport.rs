//! The stream transport: a reader task feeding the protocol, a writer task
//! draining the write buffer, flow control between them. The pipe
//! transports (`pipe.rs`) are the same machinery with one direction
//! disabled ([`Kind`]).

use std::cell::{Cell, RefCell};
use std::fmt;
use std::future::{Future, poll_fn};
use std::io;
use std::os::fd::{AsRawFd, RawFd};
use std::pin::Pin;
use std::rc::Rc;
use std::task::{Poll, Waker};

use super::{Address, ExtraInfo, Protocol, TransportError};
use crate::buf::BufResult;
use crate::net::{Family, SocketStream};
use crate::{AsyncReadOwned, AsyncWriteOwned};

/// Default high-water mark of the write buffer (asyncio: 64 KiB).
pub const DEFAULT_HIGH_WATER: usize = 64 * 1024;
/// Bytes asked for per read.
const READ_SIZE: usize = 64 * 1024;

type LocalBoxFuture<'a, T> = Pin<Box<dyn Future<Output = T> + 'a>>;

mod tasks;
use tasks::{reader, wake_all, writer};

pub(super) mod sealed {
    pub trait Sealed {}
}

/// What a transport runs on; pipes are one-way.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum Kind {
    /// A connected socket: both directions, `write_eof` shuts writing down.
    Stream,
    /// The read end of a pipe (`connect_read_pipe`): no writes; end of file
    /// calls `eof_received` and closes, whatever it returns.
    ReadPipe,
    /// The write end of a pipe (`connect_write_pipe`): no `data_received`;
    /// `write_eof` closes once the buffer is sent; the reader end going
    /// away closes the transport (`connection_lost` with `BrokenPipe` if
    /// bytes were still buffered).
    WritePipe,
}

/// A connected byte stream a [`Transport`] can run on: `TcpStream` or
/// `UnixStream` (sealed).
pub trait StreamIo: sealed::Sealed + AsRawFd + 'static {
    #[doc(hidden)]
    fn read_some(&self, buf: Vec<u8>) -> LocalBoxFuture<'_, BufResult<usize, Vec<u8>>>;
    #[doc(hidden)]
    fn write_everything(&self, buf: Vec<u8>) -> LocalBoxFuture<'_, BufResult<(), Vec<u8>>>;
    #[doc(hidden)]
    fn shutdown_write(&self) -> io::Result<()>;
    #[doc(hidden)]
    fn addresses(&self) -> (Option<Address>, Option<Address>);
}

trait ToAddress {
    fn to_address(self) -> Address;
}

impl ToAddress for std::net::SocketAddr {
    fn to_address(self) -> Address {
        Address::Inet(self)
    }
}

#[cfg(unix)]
impl ToAddress for crate::net::unix::SocketAddr {
    fn to_address(self) -> Address {
        Address::Unix(self)
    }
}

impl<F: Family> sealed::Sealed for SocketStream<F> {}

impl<F: Family> StreamIo for SocketStream<F>
where
    F::Addr: ToAddress,
{
    fn read_some(&self, buf: Vec<u8>) -> LocalBoxFuture<'_, BufResult<usize, Vec<u8>>> {
        Box::pin(self.read(buf))
    }
    fn write_everything(&self, buf: Vec<u8>) -> LocalBoxFuture<'_, BufResult<(), Vec<u8>>> {
        Box::pin(self.write_all(buf))
    }
    fn shutdown_write(&self) -> io::Result<()> {
        self.shutdown(std::net::Shutdown::Write)
    }
    fn addresses(&self) -> (Option<Address>, Option<Address>) {
        (
            self.peer_addr().ok().map(ToAddress::to_address),
            self.local_addr().ok().map(ToAddress::to_address),
        )
    }
}

#[derive(Default)]
struct State {
    /// Bytes written but not yet handed to the kernel.
    buf: Vec<u8>,
    /// Bytes of the send in flight.
    in_flight: usize,
    high: usize,
    low: usize,
    /// `pause_writing` was delivered (or is pending) without a `resume_writing`.
    protocol_paused: bool,
    /// Flow-control calls waiting for the protocol to be free.
    pending: Vec<bool>,
    closing: bool,
    aborted: bool,
    eof_requested: bool,
    reading_paused: bool,
    conn_lost: bool,
    error: Option<io::Error>,
    reader_waker: Option<Waker>,
    writer_waker: Option<Waker>,
    closed_wakers: Vec<Waker>,
}

struct Shared {
    /// Taken after `connection_lost` (a protocol usually holds a clone of
    /// its transport: this breaks the cycle).
    protocol: RefCell<Option<Rc<RefCell<dyn Protocol>>>>,
    state: RefCell<State>,
    peer: Option<Address>,
    local: Option<Address>,
    fd: Cell<RawFd>,
    kind: Kind,
}

/// The handle a [`Protocol`] writes through and controls its connection
/// with (asyncio's `Transport`). Cheap to clone; all clones are the same
/// transport.
#[derive(Clone)]
pub struct Transport {
    shared: Rc<Shared>,
}

impl fmt::Debug for Transport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let st = self.shared.state.borrow();
        f.debug_struct("Transport")
            .field("peer", &self.shared.peer)
            .field("closing", &st.closing)
            .field("buffered", &(st.buf.len() + st.in_flight))
            .finish()
    }
}

impl Transport {
    /// Starts the reader and writer tasks and calls `connection_made`.
    pub(crate) fn start<S: StreamIo>(io: Rc<S>, protocol: Rc<RefCell<dyn Protocol>>) -> io::Result<Transport> {
        Self::start_kind(io, protocol, Kind::Stream)
    }

    /// [`start`](Self::start) for a transport of `kind`.
    pub(super) fn start_kind<S: StreamIo>(
        io: Rc<S>,
        protocol: Rc<RefCell<dyn Protocol>>,
        kind: Kind,
    ) -> io::Result<Transport> {
        let (peer, local) = io.addresses();
        let shared = Rc::new(Shared {
            protocol: RefCell::new(Some(protocol.clone())),
            state: RefCell::new(State {
                high: DEFAULT_HIGH_WATER,
                low: DEFAULT_HIGH_WATER / 4,
                ..State::default()
            }),
            peer,
            local,
            fd: Cell::new(io.as_raw_fd()),
            kind,
        });
        let t = Transport { shared };
        // connection_made first: no other callback can precede it.
        match protocol.try_borrow_mut() {
            Ok(mut p) => p.connection_made(&t),
            Err(_) => return Err(io::Error::other("the protocol is borrowed during connection_made")),
        }
        t.flush_pending();
        crate::try_spawn(reader(t.clone(), io.clone()))
            .map_err(io::Error::other)?
            .detach();
        crate::try_spawn(writer(t.clone(), io))
            .map_err(io::Error::other)?
            .detach();
        Ok(t)
    }

    /// Queues `data` for sending; never blocks. Crossing the high-water
    /// mark calls the protocol's `pause_writing`. Writing while closing is
    /// allowed (the bytes go out before the close, as in asyncio).
    /// `NotWritable` on a read-pipe transport.
    pub fn write(&self, data: &[u8]) -> Result<(), TransportError> {
        {
            if self.shared.kind == Kind::ReadPipe {
                return Err(TransportError::NotWritable);
            }
            let mut st = self.shared.state.borrow_mut();
            if st.eof_requested {
                return Err(TransportError::WriteAfterEof);
            }
            if st.conn_lost || st.aborted {
                return Err(TransportError::Closed);
            }
            if data.is_empty() {
                return Ok(());
            }
            st.buf.extend_from_slice(data);
            if let Some(w) = st.writer_waker.take() {
                w.wake();
            }
        }
        self.maybe_pause_protocol();
        Ok(())
    }

    /// Writes each buffer in turn (`writelines`).
    pub fn writelines<'a>(&self, data: impl IntoIterator<Item = &'a [u8]>) -> Result<(), TransportError> {
        for d in data {
            self.write(d)?;
        }
        Ok(())
    }

    /// Shuts the write side down once the buffered bytes are sent. On a
    /// write-pipe transport that closes the pipe (and the transport: a
    /// pipe has no half-close), as asyncio's; `NotWritable` on a read pipe.
    pub fn write_eof(&self) -> Result<(), TransportError> {
        if self.shared.kind == Kind::ReadPipe {
            return Err(TransportError::NotWritable);
        }
        let mut st = self.shared.state.borrow_mut();
        if st.conn_lost || st.aborted {
            return Err(TransportError::Closed);
        }
        st.eof_requested = true;
        if self.shared.kind == Kind::WritePipe {
            st.closing = true;
        }
        if let Some(w) = st.writer_waker.take() {
            w.wake();
        }
        Ok(())
    }

    /// Stream sockets can half-close and a write pipe can be closed after
    /// its buffer: `true`; a read pipe: `false`.
    pub fn can_write_eof(&self) -> bool {
        self.shared.kind != Kind::ReadPipe
    }

    /// Stops reading, sends what is buffered, then closes the socket and
    /// calls `connection_lost(None)`. Idempotent.
    pub fn close(&self) {
        let mut st = self.shared.state.borrow_mut();
        if st.closing {
            return;
        }
        st.closing = true;
        wake_all(&mut st);
    }

    /// Closes at once, discarding the buffer; `connection_lost(None)`
    /// follows (in the next loop iteration).
    pub fn abort(&self) {
        let mut st = self.shared.state.borrow_mut();
        st.closing = true;
        st.aborted = true;
        st.buf = Vec::new();
        wake_all(&mut st);
    }

    /// Whether `close`/`abort` was called or the connection is lost.
    pub fn is_closing(&self) -> bool {
        self.shared.state.borrow().closing
    }

    /// Waits until `connection_lost` has been called.
    pub async fn wait_closed(&self) {
        poll_fn(|cx| {
            let mut st = self.shared.state.borrow_mut();
            if st.conn_lost {
                Poll::Ready(())
            } else {
                st.closed_wakers.push(cx.waker().clone());
                Poll::Pending
            }
        })
        .await
    }

    /// Stops calling `data_received` until `resume_reading` (no-op when
    /// already paused or closing). Bytes of a receive already in flight are
    /// held back, not lost.
    pub fn pause_reading(&self) {
        self.shared.state.borrow_mut().reading_paused = true;
    }

    /// Resumes `data_received` calls.
    pub fn resume_reading(&self) {
        let mut st = self.shared.state.borrow_mut();
        st.reading_paused = false;
        if let Some(w) = st.reader_waker.take() {
            w.wake();
        }
    }

    /// Whether the transport is reading (not paused, not closing; never
    /// for a write pipe).
    pub fn is_reading(&self) -> bool {
        let st = self.shared.state.borrow();
        !st.reading_paused && !st.closing && self.shared.kind != Kind::WritePipe
    }

    /// Bytes buffered and not yet confirmed sent (includes the send in
    /// flight).
    pub fn get_write_buffer_size(&self) -> usize {
        let st = self.shared.state.borrow();
        st.buf.len() + st.in_flight
    }

    /// `(low, high)` water marks.
    pub fn get_write_buffer_limits(&self) -> (usize, usize) {
        let st = self.shared.state.borrow();
        (st.low, st.high)
    }

    /// Sets the water marks (asyncio's defaults: `high` 64 KiB, or
    /// `4 * low` when only `low` is given; `low` `high / 4`).
    pub fn set_write_buffer_limits(&self, high: Option<usize>, low: Option<usize>) -> Result<(), TransportError> {
        let high_v = high.unwrap_or(match low {
            Some(l) => l.saturating_mul(4),
            None => DEFAULT_HIGH_WATER,
        });
        let low_v = low.unwrap_or(high_v / 4);
        if low_v > high_v {
            return Err(TransportError::InvalidLimits {
                high: high_v,
                low: low_v,
            });
        }
        {
            let mut st = self.shared.state.borrow_mut();
            st.high = high_v;
            st.low = low_v;
        }
        self.maybe_pause_protocol();
        self.maybe_resume_protocol();
        Ok(())
    }

    /// The peer's address (`get_extra_info("peername")`).
    pub fn peername(&self) -> Option<Address> {
        self.shared.peer.clone()
    }

    /// The local address (`get_extra_info("sockname")`).
    pub fn sockname(&self) -> Option<Address> {
        self.shared.local.clone()
    }

    /// asyncio's `get_extra_info(name)`: `"peername"`, `"sockname"`,
    /// `"socket"` (the fd, `None` once closed); for pipe transports
    /// `"pipe"` (the fd) instead of `"socket"`; other names give `None`.
    pub fn get_extra_info(&self, name: &str) -> Option<ExtraInfo> {
        let fd_name = match self.shared.kind {
            Kind::Stream => "socket",
            Kind::ReadPipe | Kind::WritePipe => "pipe",
        };
        match name {
            "peername" => self.peername().map(ExtraInfo::Address),
            "sockname" => self.sockname().map(ExtraInfo::Address),
            _ if name == fd_name => {
                let fd = self.shared.fd.get();
                (fd >= 0).then_some(ExtraInfo::Fd(fd))
            }
            _ => None,
        }
    }

    fn maybe_pause_protocol(&self) {
        {
            let mut st = self.shared.state.borrow_mut();
            if st.protocol_paused || st.buf.len() + st.in_flight <= st.high {
                return;
            }
            st.protocol_paused = true;
            st.pending.push(true);
        }
        self.flush_pending();
    }

    fn maybe_resume_protocol(&self) {
        {
            let mut st = self.shared.state.borrow_mut();
            if !st.protocol_paused || st.buf.len() + st.in_flight > st.low {
                return;
            }
            st.protocol_paused = false;
            st.pending.push(false);
        }
        self.flush_pending();
    }

    /// Delivers pending `pause_writing`/`resume_writing` calls when the
    /// protocol is free; when it is borrowed (we are inside one of its
    /// callbacks) the caller of that callback flushes afterwards.
    fn flush_pending(&self) {
        let Some(protocol) = self.protocol() else {
            return;
        };
        loop {
            let Ok(mut p) = protocol.try_borrow_mut() else {
                return;
            };
            let next = {
                let mut st = self.shared.state.borrow_mut();
                if st.pending.is_empty() {
                    return;
                }
                st.pending.remove(0)
            };
            if next {
                p.pause_writing();
            } else {
                p.resume_writing();
            }
        }
    }

    /// Calls the protocol, waiting (yielding to the loop) while user code
    /// holds it borrowed, then delivers flow-control calls it caused.
    async fn call<R>(&self, f: impl FnOnce(&mut dyn Protocol) -> R) -> Option<R> {
        let protocol = self.protocol()?;
        let r = loop {
            if let Ok(mut p) = protocol.try_borrow_mut() {
                break f(&mut *p);
            }
            crate::time::yield_now().await;
        };
        self.flush_pending();
        Some(r)
    }

    fn protocol(&self) -> Option<Rc<RefCell<dyn Protocol>>> {
        self.shared.protocol.borrow().clone()
    }

    fn fatal(&self, err: io::Error) {
        let mut st = self.shared.state.borrow_mut();
        if st.error.is_none() && !st.conn_lost {
            st.error = Some(err);
        }
        st.closing = true;
        st.aborted = true;
        st.buf = Vec::new();
        wake_all(&mut st);
    }
}
