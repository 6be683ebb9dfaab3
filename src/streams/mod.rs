//! asyncio's streams: [`open_connection`] / [`start_server`] with a
//! [`StreamReader`] (`readline`, `readuntil`, `readexactly`, `read`) and a
//! [`StreamWriter`] (`write` + `drain`, `close` + `wait_closed`).
//!
//! Built like asyncio's: a stream protocol on a
//! [`Transport`] feeds the reader's buffer
//! and tracks the transport's flow control for `drain`. The reader pauses
//! the transport when more than `2 * limit` bytes are buffered and resumes
//! it at `limit` (default [`DEFAULT_LIMIT`], 64 KiB); `drain` waits while
//! the write buffer is above its high-water mark until it falls to the
//! low-water mark (64 KiB / 16 KiB).
//!
//! ```
//! use ringloop::streams::{open_connection, start_server};
//!
//! ringloop::run(async {
//!     let server = start_server(|mut reader, writer| async move {
//!         let line = reader.readline().await.unwrap();
//!         writer.write(&line).unwrap();
//!         writer.drain().await.unwrap();
//!         writer.close();
//!     }, "127.0.0.1:0").await.unwrap();
//!     let (mut reader, writer) = open_connection(server.local_addr().unwrap()).await.unwrap();
//!     writer.write(b"hello\n").unwrap();
//!     writer.drain().await.unwrap();
//!     assert_eq!(reader.read_to_end().await.unwrap(), b"hello\n");
//!     writer.close();
//!     writer.wait_closed().await.unwrap();
//!     server.close();
//!     server.wait_closed().await;
//! })
//! .unwrap();
//! ```

use std::cell::RefCell;
use std::fmt;
use std::future::{Future, poll_fn};
use std::io;
use std::net::ToSocketAddrs;
use std::pin::Pin;
use std::rc::Rc;
use std::task::{Poll, Waker};

use crate::protocols::{self, ExtraInfo, Protocol, Server, Transport, TransportError};

/// The reader's default buffer limit (asyncio's `_DEFAULT_LIMIT`, 64 KiB).
pub const DEFAULT_LIMIT: usize = 64 * 1024;

/// The stream ended before the expected bytes (asyncio's
/// `IncompleteReadError`): `partial` holds what was read.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IncompleteReadError {
    /// The bytes read before the end.
    pub partial: Vec<u8>,
    /// How many were expected (`None`: up to a separator).
    pub expected: Option<usize>,
}

/// The separator was not found within the limit (asyncio's
/// `LimitOverrunError`). For `readuntil` the bytes stay buffered.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LimitOverrunError {
    /// How many bytes must be consumed to get past the overrun.
    pub consumed: usize,
    /// Whether the separator was found (beyond the limit).
    pub separator_found: bool,
}

/// Errors of [`StreamReader`]'s methods (`#[non_exhaustive]`).
#[derive(Debug)]
#[non_exhaustive]
pub enum StreamError {
    /// End of stream before the expected bytes.
    IncompleteRead(IncompleteReadError),
    /// The separator is not within the buffer limit.
    LimitOverrun(LimitOverrunError),
    /// The connection failed (or the reader's exception was set).
    Io(io::Error),
    /// An empty separator (asyncio: `ValueError`).
    EmptySeparator,
}

impl fmt::Display for StreamError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            StreamError::IncompleteRead(e) => match e.expected {
                Some(n) => write!(f, "{} bytes read on a total of {n} expected bytes", e.partial.len()),
                None => write!(
                    f,
                    "{} bytes read on a total of undefined expected bytes",
                    e.partial.len()
                ),
            },
            StreamError::LimitOverrun(e) if e.separator_found => {
                write!(f, "separator is found, but chunk is longer than limit ({})", e.consumed)
            }
            StreamError::LimitOverrun(e) => {
                write!(f, "separator is not found, and chunk exceed the limit ({})", e.consumed)
            }
            StreamError::Io(e) => e.fmt(f),
            StreamError::EmptySeparator => f.write_str("separator should be at least one-byte string"),
        }
    }
}

impl std::error::Error for StreamError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            StreamError::Io(e) => Some(e),
            _ => None,
        }
    }
}

impl From<io::Error> for StreamError {
    fn from(e: io::Error) -> Self {
        StreamError::Io(e)
    }
}

impl From<StreamError> for io::Error {
    fn from(e: StreamError) -> io::Error {
        match e {
            StreamError::Io(e) => e,
            StreamError::IncompleteRead(_) => io::Error::new(io::ErrorKind::UnexpectedEof, e),
            StreamError::LimitOverrun(_) | StreamError::EmptySeparator => io::Error::new(io::ErrorKind::InvalidData, e),
        }
    }
}

mod reader;

pub use reader::StreamReader;
use reader::*;

#[derive(Default)]
struct FlowState {
    paused: bool,
    lost: bool,
    error: Option<StoredError>,
    wakers: Vec<Waker>,
}

impl FlowState {
    fn wake(&mut self) {
        for w in self.wakers.drain(..) {
            w.wake();
        }
    }
}

type ConnectedCb = Rc<dyn Fn(StreamReader, StreamWriter) -> Pin<Box<dyn Future<Output = ()>>>>;

/// The protocol between a transport and a reader/writer pair (asyncio's
/// `StreamReaderProtocol`).
struct StreamProtocol {
    reader: Rc<RefCell<ReaderState>>,
    flow: Rc<RefCell<FlowState>>,
    on_connected: Option<ConnectedCb>,
}

impl StreamProtocol {
    fn new(limit: usize, on_connected: Option<ConnectedCb>) -> StreamProtocol {
        StreamProtocol {
            reader: StreamReader::with_limit(limit).st,
            flow: Rc::default(),
            on_connected,
        }
    }

    fn pair(&self, t: &Transport) -> (StreamReader, StreamWriter) {
        (
            StreamReader {
                st: self.reader.clone(),
            },
            StreamWriter {
                transport: t.clone(),
                flow: self.flow.clone(),
                reader: self.reader.clone(),
            },
        )
    }
}

impl Protocol for StreamProtocol {
    fn connection_made(&mut self, transport: &Transport) {
        self.reader.borrow_mut().transport = Some(transport.clone());
        if let Some(cb) = self.on_connected.take() {
            let (r, w) = self.pair(transport);
            match crate::try_spawn(cb(r, w)) {
                Ok(t) => t.detach(),
                Err(_) => transport.abort(),
            }
        }
    }

    fn data_received(&mut self, data: &[u8]) {
        feed_data(&self.reader, data);
    }

    fn eof_received(&mut self) -> bool {
        let mut st = self.reader.borrow_mut();
        st.eof = true;
        st.wake();
        // Keep the transport open: the writer may still send.
        true
    }

    fn connection_lost(&mut self, err: Option<io::Error>) {
        {
            let mut st = self.reader.borrow_mut();
            match &err {
                None => st.eof = true,
                Some(e) => st.error = Some(StoredError::new(e)),
            }
            st.transport = None;
            st.wake();
        }
        let mut fl = self.flow.borrow_mut();
        fl.lost = true;
        fl.error = err.as_ref().map(StoredError::new);
        fl.wake();
    }

    fn pause_writing(&mut self) {
        self.flow.borrow_mut().paused = true;
    }

    fn resume_writing(&mut self) {
        let mut fl = self.flow.borrow_mut();
        fl.paused = false;
        fl.wake();
    }
}

/// The writing side of a stream connection (asyncio's `StreamWriter`).
/// Dropping it closes the transport (buffered bytes are still sent), as
/// Python 3.12's `StreamWriter.__del__` does.
pub struct StreamWriter {
    transport: Transport,
    flow: Rc<RefCell<FlowState>>,
    reader: Rc<RefCell<ReaderState>>,
}

impl fmt::Debug for StreamWriter {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("StreamWriter")
            .field("transport", &self.transport)
            .finish()
    }
}

impl Drop for StreamWriter {
    fn drop(&mut self) {
        self.transport.close();
    }
}

impl StreamWriter {
    /// Buffers `data` for sending (never blocks); follow with
    /// [`drain`](Self::drain) to apply flow control.
    pub fn write(&self, data: &[u8]) -> Result<(), TransportError> {
        self.transport.write(data)
    }

    /// Buffers each buffer in turn.
    pub fn writelines<'a>(&self, data: impl IntoIterator<Item = &'a [u8]>) -> Result<(), TransportError> {
        self.transport.writelines(data)
    }

    /// Shuts the write side down after the buffered bytes.
    pub fn write_eof(&self) -> Result<(), TransportError> {
        self.transport.write_eof()
    }

    /// Always `true` for stream sockets.
    pub fn can_write_eof(&self) -> bool {
        self.transport.can_write_eof()
    }

    /// Waits while the write buffer is above its high-water mark, until it
    /// drains to the low-water mark. Fails with the reader's error, or
    /// `ConnectionReset` ("Connection lost") once the connection is gone.
    pub async fn drain(&self) -> io::Result<()> {
        if let Some(e) = &self.reader.borrow().error {
            return Err(e.get());
        }
        if self.transport.is_closing() {
            // Let connection_lost run (asyncio: `await sleep(0)`).
            crate::time::yield_now().await;
        }
        poll_fn(|cx| {
            let mut fl = self.flow.borrow_mut();
            if fl.lost {
                return Poll::Ready(Err(match &fl.error {
                    Some(e) => e.get(),
                    None => io::Error::new(io::ErrorKind::ConnectionReset, "Connection lost"),
                }));
            }
            if !fl.paused {
                return Poll::Ready(Ok(()));
            }
            fl.wakers.push(cx.waker().clone());
            Poll::Pending
        })
        .await
    }

    /// Closes the transport (buffered bytes are sent first).
    pub fn close(&self) {
        self.transport.close()
    }

    /// Whether `close` was called or the connection is lost.
    pub fn is_closing(&self) -> bool {
        self.transport.is_closing()
    }

    /// Waits until the connection is lost; the error if it failed.
    pub async fn wait_closed(&self) -> io::Result<()> {
        self.transport.wait_closed().await;
        match &self.flow.borrow().error {
            Some(e) => Err(e.get()),
            None => Ok(()),
        }
    }

    /// See [`Transport::get_extra_info`].
    pub fn get_extra_info(&self, name: &str) -> Option<ExtraInfo> {
        self.transport.get_extra_info(name)
    }

    /// The underlying transport.
    pub fn transport(&self) -> &Transport {
        &self.transport
    }
}

fn wrap_cb<F, Fut>(cb: F) -> ConnectedCb
where
    F: Fn(StreamReader, StreamWriter) -> Fut + 'static,
    Fut: Future<Output = ()> + 'static,
{
    Rc::new(move |r, w| Box::pin(cb(r, w)))
}

/// Connects to `addr` and returns the reader and writer (asyncio's
/// `open_connection(host, port)`).
pub async fn open_connection<A: ToSocketAddrs + Send + 'static>(addr: A) -> io::Result<(StreamReader, StreamWriter)> {
    open_connection_with_limit(addr, DEFAULT_LIMIT).await
}

/// [`open_connection`] with a reader buffer limit (`limit=`).
pub async fn open_connection_with_limit<A: ToSocketAddrs + Send + 'static>(
    addr: A,
    limit: usize,
) -> io::Result<(StreamReader, StreamWriter)> {
    let (t, p) = protocols::create_connection(|| StreamProtocol::new(limit, None), addr).await?;
    let pair = p.borrow().pair(&t);
    Ok(pair)
}

/// Starts a server that runs `client_connected(reader, writer)` as a task
/// for every connection (asyncio's `start_server(cb, host, port)`).
pub async fn start_server<F, Fut, A>(client_connected: F, addr: A) -> io::Result<Server>
where
    F: Fn(StreamReader, StreamWriter) -> Fut + 'static,
    Fut: Future<Output = ()> + 'static,
    A: ToSocketAddrs + Send + 'static,
{
    let cb = wrap_cb(client_connected);
    protocols::create_server(move || StreamProtocol::new(DEFAULT_LIMIT, Some(cb.clone())), addr).await
}

/// [`open_connection`] to a Unix socket (`open_unix_connection`).
#[cfg(unix)]
pub async fn open_unix_connection(path: impl AsRef<std::path::Path>) -> io::Result<(StreamReader, StreamWriter)> {
    let (t, p) = protocols::create_unix_connection(|| StreamProtocol::new(DEFAULT_LIMIT, None), path).await?;
    let pair = p.borrow().pair(&t);
    Ok(pair)
}

/// [`start_server`] on a Unix socket path (`start_unix_server`).
#[cfg(unix)]
pub async fn start_unix_server<F, Fut>(client_connected: F, path: impl AsRef<std::path::Path>) -> io::Result<Server>
where
    F: Fn(StreamReader, StreamWriter) -> Fut + 'static,
    Fut: Future<Output = ()> + 'static,
{
    let cb = wrap_cb(client_connected);
    protocols::create_unix_server(move || StreamProtocol::new(DEFAULT_LIMIT, Some(cb.clone())), path).await
}
