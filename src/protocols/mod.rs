//! asyncio's transports and protocols: callback-style networking.
//!
//! A [`Protocol`] is an object whose methods the loop calls as things happen
//! on a connection (`connection_made`, `data_received`, `eof_received`,
//! `connection_lost`, `pause_writing` / `resume_writing`); a [`Transport`]
//! is the handle the protocol writes through (`write` never blocks: bytes
//! are buffered and sent by the loop) and controls the connection with
//! (`close`, `abort`, `write_eof`, `pause_reading` / `resume_reading`,
//! write-buffer limits, `get_extra_info`).
//!
//! * [`create_connection`] / [`create_unix_connection`]: connect, build the
//!   protocol, `connection_made`, return `(Transport, Rc<RefCell<P>>)`.
//! * [`create_server`] / [`create_unix_server`]: listen; every accepted
//!   connection gets a protocol from the factory. Returns a [`Server`]
//!   (`close`, `wait_closed`, `serve_forever`, `is_serving`).
//! * [`create_datagram_endpoint`]: a [`DatagramProtocol`] on a UDP socket.
//! * [`connect_read_pipe`] / [`connect_write_pipe`] (Unix): a protocol on
//!   one end of a pipe (an OS pipe, a FIFO, a child's stdout or stdin).
//!
//! Differences from asyncio (see ARCHITECTURE.md): the protocol is a
//! `RefCell`; a transport call made inside a protocol callback that would
//! call the protocol again (`write` crossing the high-water mark calls
//! `pause_writing`) is delivered right after the running callback returns.
//! `Transport::write` returns a typed error after `write_eof` or once the
//! connection is lost instead of raising / logging.
//!
//! ```
//! use std::cell::RefCell;
//! use std::rc::Rc;
//! use ringloop::protocols::{Protocol, Transport, create_connection, create_server};
//!
//! struct Echo(Option<Transport>);
//! impl Protocol for Echo {
//!     fn connection_made(&mut self, t: &Transport) { self.0 = Some(t.clone()); }
//!     fn data_received(&mut self, data: &[u8]) {
//!         let t = self.0.as_ref().unwrap();
//!         t.write(data).unwrap();
//!         t.close();
//!     }
//! }
//! #[derive(Default)]
//! struct Client { got: Vec<u8>, lost: bool }
//! impl Protocol for Client {
//!     fn connection_made(&mut self, t: &Transport) { t.write(b"hello").unwrap(); }
//!     fn data_received(&mut self, data: &[u8]) { self.got.extend_from_slice(data); }
//!     fn connection_lost(&mut self, err: Option<std::io::Error>) { assert!(err.is_none()); self.lost = true; }
//! }
//! ringloop::run(async {
//!     let server = create_server(|| Echo(None), "127.0.0.1:0").await.unwrap();
//!     let addr = server.local_addr().unwrap();
//!     let (transport, client) = create_connection(Client::default, addr).await.unwrap();
//!     transport.wait_closed().await;
//!     assert_eq!(client.borrow().got, b"hello");
//!     assert!(client.borrow().lost);
//!     server.close();
//!     server.wait_closed().await;
//! })
//! .unwrap();
//! ```

mod datagram;
#[cfg(unix)]
mod pipe;
mod server;
mod transport;

use std::cell::RefCell;
use std::fmt;
use std::io;
use std::net::{SocketAddr, ToSocketAddrs};
use std::os::fd::RawFd;
use std::rc::Rc;

pub use datagram::{DatagramProtocol, DatagramTransport, create_datagram_endpoint};
#[cfg(unix)]
pub use pipe::{connect_read_pipe, connect_write_pipe};
pub use server::Server;
#[cfg(unix)]
pub use server::create_unix_server;
pub use server::{ServeForeverError, create_server};
pub use transport::{DEFAULT_HIGH_WATER, StreamIo, Transport};

/// The callbacks of a stream connection (asyncio's `asyncio.Protocol`).
/// Every method has a default that does nothing.
///
/// Order: `connection_made`, then any number of `data_received`, then at
/// most one `eof_received`, then exactly one `connection_lost` (also when
/// the connection ends by `close`, `abort` or an error).
pub trait Protocol: 'static {
    /// The connection is up; keep a clone of `transport` to write later.
    fn connection_made(&mut self, transport: &Transport) {
        let _ = transport;
    }

    /// Bytes arrived (never empty). Not called while reading is paused.
    fn data_received(&mut self, data: &[u8]) {
        let _ = data;
    }

    /// The peer shut its write side down. Return `true` to keep the
    /// connection half-open (writing still works; call `close` later);
    /// `false` (the default) closes the transport.
    fn eof_received(&mut self) -> bool {
        false
    }

    /// The connection is closed: `None` after `close`/`abort`/EOF, the
    /// error when a read or write failed.
    fn connection_lost(&mut self, err: Option<io::Error>) {
        let _ = err;
    }

    /// The transport's write buffer went above its high-water mark.
    fn pause_writing(&mut self) {}

    /// The transport's write buffer drained to its low-water mark.
    fn resume_writing(&mut self) {}
}

/// Errors of transport calls (`#[non_exhaustive]`).
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum TransportError {
    /// `write` after `write_eof` (asyncio: `RuntimeError`).
    WriteAfterEof,
    /// The connection is lost (closed, aborted or failed).
    Closed,
    /// `write` / `write_eof` on a read-pipe transport (asyncio's
    /// `ReadTransport` has no `write`).
    NotWritable,
    /// `set_write_buffer_limits` with `low > high` (asyncio: `ValueError`).
    InvalidLimits {
        /// The requested high-water mark.
        high: usize,
        /// The requested low-water mark.
        low: usize,
    },
}

impl fmt::Display for TransportError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            TransportError::WriteAfterEof => f.write_str("cannot write after write_eof()"),
            TransportError::Closed => f.write_str("the transport is closed"),
            TransportError::NotWritable => f.write_str("a read-pipe transport cannot write"),
            TransportError::InvalidLimits { high, low } => {
                write!(f, "high ({high}) must be >= low ({low})")
            }
        }
    }
}

impl std::error::Error for TransportError {}

impl From<TransportError> for io::Error {
    fn from(e: TransportError) -> io::Error {
        let kind = match e {
            TransportError::WriteAfterEof | TransportError::Closed => io::ErrorKind::BrokenPipe,
            TransportError::InvalidLimits { .. } => io::ErrorKind::InvalidInput,
            TransportError::NotWritable => io::ErrorKind::Unsupported,
        };
        io::Error::new(kind, e)
    }
}

/// A socket address of either family (`get_extra_info("peername")`).
#[derive(Clone, Debug)]
#[non_exhaustive]
pub enum Address {
    /// An IP address and port.
    Inet(SocketAddr),
    /// A Unix socket address.
    #[cfg(unix)]
    Unix(crate::net::unix::SocketAddr),
}

impl Address {
    /// The IP address, if this is one.
    pub fn as_inet(&self) -> Option<SocketAddr> {
        match self {
            Address::Inet(a) => Some(*a),
            #[cfg(unix)]
            Address::Unix(_) => None,
        }
    }
}

/// A value of [`Transport::get_extra_info`] (asyncio's
/// `get_extra_info(name)`).
#[derive(Clone, Debug)]
#[non_exhaustive]
pub enum ExtraInfo {
    /// `"peername"` / `"sockname"`.
    Address(Address),
    /// `"socket"` (`"pipe"` for a pipe transport): the file descriptor
    /// (borrowed: the transport owns and closes it).
    Fd(RawFd),
}

/// Connects to `addr` (resolved on the blocking pool), makes a protocol
/// with `factory`, calls its `connection_made` and starts reading
/// (asyncio's `loop.create_connection(factory, host, port)`).
pub async fn create_connection<P, F, A>(factory: F, addr: A) -> io::Result<(Transport, Rc<RefCell<P>>)>
where
    P: Protocol,
    F: FnOnce() -> P,
    A: ToSocketAddrs + Send + 'static,
{
    let stream = crate::net::TcpStream::connect(addr).await?;
    let _ = stream.set_nodelay(true);
    let protocol = Rc::new(RefCell::new(factory()));
    let t = Transport::start(Rc::new(stream), protocol.clone())?;
    Ok((t, protocol))
}

/// [`create_connection`] for a Unix stream socket at `path`
/// (`loop.create_unix_connection`).
#[cfg(unix)]
pub async fn create_unix_connection<P, F>(
    factory: F,
    path: impl AsRef<std::path::Path>,
) -> io::Result<(Transport, Rc<RefCell<P>>)>
where
    P: Protocol,
    F: FnOnce() -> P,
{
    let stream = crate::net::UnixStream::connect(path).await?;
    let protocol = Rc::new(RefCell::new(factory()));
    let t = Transport::start(Rc::new(stream), protocol.clone())?;
    Ok((t, protocol))
}

/// Wraps an already connected stream (`loop.connect_accepted_socket`, and
/// `create_connection(sock=...)`): TCP or Unix.
pub fn connect_accepted_socket<P, F, S>(factory: F, stream: S) -> io::Result<(Transport, Rc<RefCell<P>>)>
where
    P: Protocol,
    F: FnOnce() -> P,
    S: transport::StreamIo,
{
    let protocol = Rc::new(RefCell::new(factory()));
    let t = Transport::start(Rc::new(stream), protocol.clone())?;
    Ok((t, protocol))
}
