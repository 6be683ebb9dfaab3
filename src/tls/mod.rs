//! TLS over ringloop streams with rustls (feature `tls`).
//!
//! [`TlsAcceptor::accept`] and [`TlsConnector::connect`] run the handshake
//! over any connected stream with `futures-io`'s `AsyncRead + AsyncWrite`
//! (a [`TcpStream`](crate::net::TcpStream), a
//! [`UnixStream`](crate::net::UnixStream)) and give a [`TlsStream`], which
//! is itself `AsyncRead + AsyncBufRead + AsyncWrite`: plaintext is read
//! straight out of rustls' buffer (`AsyncBufRead`), so the hyper adapter
//! copies it once, into hyper's buffer.
//!
//! Crypto is rustls' `ring` provider ([`crypto_provider`]); TLS 1.2 and 1.3
//! are enabled. [`server_config`] / [`client_config`] build configurations
//! from certificates and keys loaded with the PEM helpers ([`load_certs`],
//! [`load_private_key`], [`certs_from_pem`], [`private_key_from_pem`]), with
//! an ALPN list (`&[b"h2", b"http/1.1"]` for HTTP). For anything else
//! (client certificates, session resumption, protocol versions), build a
//! [`rustls::ServerConfig`] / [`rustls::ClientConfig`] directly (the crates
//! are re-exported) and wrap it in an `Arc`.
//!
//! Closing: `poll_close` sends `close_notify`, then closes the write side
//! of the stream. A peer that closes its TCP connection without
//! `close_notify` makes the next read fail with `UnexpectedEof` (rustls'
//! guard against truncation); a clean `close_notify` reads as end of file.

mod pem;

use std::fmt;
use std::future::poll_fn;
use std::io::{self, BufRead, Read, Write};
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll, ready};

use futures_io::{AsyncBufRead, AsyncRead, AsyncWrite};

pub use pem::{
    certs_from_pem, client_config, crypto_provider, load_certs, load_private_key, private_key_from_pem, server_config,
};
pub use rustls;
pub use rustls_pki_types as pki_types;

/// Accepts TLS connections with a server configuration.
#[derive(Clone)]
pub struct TlsAcceptor {
    config: Arc<rustls::ServerConfig>,
}

impl fmt::Debug for TlsAcceptor {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TlsAcceptor")
            .field("alpn_protocols", &self.config.alpn_protocols)
            .finish_non_exhaustive()
    }
}

impl From<Arc<rustls::ServerConfig>> for TlsAcceptor {
    fn from(config: Arc<rustls::ServerConfig>) -> Self {
        TlsAcceptor { config }
    }
}

impl TlsAcceptor {
    /// An acceptor for `config`.
    pub fn new(config: Arc<rustls::ServerConfig>) -> TlsAcceptor {
        TlsAcceptor { config }
    }

    /// The configuration.
    pub fn config(&self) -> &Arc<rustls::ServerConfig> {
        &self.config
    }

    /// Runs the server side of the handshake over `stream`. Handshake
    /// failures are `InvalidData` errors (the alert is sent to the peer);
    /// a peer closing mid-handshake is `UnexpectedEof`. Put a
    /// [`timeout`](crate::timeout) around it to bound slow clients.
    pub async fn accept<S>(&self, stream: S) -> io::Result<TlsStream<S>>
    where
        S: AsyncRead + AsyncWrite + Unpin,
    {
        let conn = rustls::ServerConnection::new(self.config.clone()).map_err(tls_error)?;
        TlsStream::handshake(stream, rustls::Connection::Server(conn)).await
    }
}

/// Opens TLS connections with a client configuration.
#[derive(Clone)]
pub struct TlsConnector {
    config: Arc<rustls::ClientConfig>,
}

impl fmt::Debug for TlsConnector {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TlsConnector")
            .field("alpn_protocols", &self.config.alpn_protocols)
            .finish_non_exhaustive()
    }
}

impl From<Arc<rustls::ClientConfig>> for TlsConnector {
    fn from(config: Arc<rustls::ClientConfig>) -> Self {
        TlsConnector { config }
    }
}

impl TlsConnector {
    /// A connector for `config`.
    pub fn new(config: Arc<rustls::ClientConfig>) -> TlsConnector {
        TlsConnector { config }
    }

    /// The configuration.
    pub fn config(&self) -> &Arc<rustls::ClientConfig> {
        &self.config
    }

    /// Runs the client side of the handshake over `stream`, verifying the
    /// server's certificate for `server_name` (a DNS name or an IP
    /// address). A malformed name is `InvalidInput`; handshake failures
    /// (including an untrusted certificate) are `InvalidData`.
    pub async fn connect<S>(&self, server_name: &str, stream: S) -> io::Result<TlsStream<S>>
    where
        S: AsyncRead + AsyncWrite + Unpin,
    {
        let name = rustls_pki_types::ServerName::try_from(server_name.to_owned())
            .map_err(|e| io::Error::new(io::ErrorKind::InvalidInput, e))?;
        let conn = rustls::ClientConnection::new(self.config.clone(), name).map_err(tls_error)?;
        TlsStream::handshake(stream, rustls::Connection::Client(conn)).await
    }
}

fn tls_error(e: rustls::Error) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, e)
}

/// A TLS connection over the stream `S` (client or server side).
pub struct TlsStream<S> {
    io: S,
    conn: rustls::Connection,
    /// `close_notify` was queued (by `poll_close`).
    close_sent: bool,
}

impl<S> fmt::Debug for TlsStream<S> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TlsStream")
            .field("server", &matches!(self.conn, rustls::Connection::Server(_)))
            .field("protocol_version", &self.conn.protocol_version())
            .field("alpn_protocol", &self.conn.alpn_protocol())
            .finish_non_exhaustive()
    }
}

/// `std::io` over a poll-based stream: `Pending` becomes `WouldBlock`
/// (the waker is registered), for rustls' `read_tls`/`write_tls`.
struct SyncIo<'a, 'b, S> {
    io: &'a mut S,
    cx: &'a mut Context<'b>,
}

impl<S: AsyncRead + Unpin> Read for SyncIo<'_, '_, S> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        match Pin::new(&mut *self.io).poll_read(self.cx, buf) {
            Poll::Ready(r) => r,
            Poll::Pending => Err(io::ErrorKind::WouldBlock.into()),
        }
    }
}

impl<S: AsyncWrite + Unpin> Write for SyncIo<'_, '_, S> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        match Pin::new(&mut *self.io).poll_write(self.cx, buf) {
            Poll::Ready(r) => r,
            Poll::Pending => Err(io::ErrorKind::WouldBlock.into()),
        }
    }
    fn write_vectored(&mut self, bufs: &[io::IoSlice<'_>]) -> io::Result<usize> {
        match Pin::new(&mut *self.io).poll_write_vectored(self.cx, bufs) {
            Poll::Ready(r) => r,
            Poll::Pending => Err(io::ErrorKind::WouldBlock.into()),
        }
    }
    fn flush(&mut self) -> io::Result<()> {
        match Pin::new(&mut *self.io).poll_flush(self.cx) {
            Poll::Ready(r) => r,
            Poll::Pending => Err(io::ErrorKind::WouldBlock.into()),
        }
    }
}

fn would_block<T>(r: io::Result<T>) -> Poll<io::Result<T>> {
    match r {
        Err(e) if e.kind() == io::ErrorKind::WouldBlock => Poll::Pending,
        r => Poll::Ready(r),
    }
}

impl<S> TlsStream<S> {
    /// The underlying stream.
    pub fn get_ref(&self) -> &S {
        &self.io
    }

    /// The underlying stream (writing to it directly breaks the session).
    pub fn get_mut(&mut self) -> &mut S {
        &mut self.io
    }

    /// The rustls connection (peer certificates, SNI name, export of
    /// keying material...).
    pub fn connection(&self) -> &rustls::Connection {
        &self.conn
    }

    /// The underlying stream and the rustls connection.
    pub fn into_parts(self) -> (S, rustls::Connection) {
        (self.io, self.conn)
    }

    /// The protocol the peers agreed on with ALPN.
    pub fn alpn_protocol(&self) -> Option<&[u8]> {
        self.conn.alpn_protocol()
    }

    /// The TLS version in use.
    pub fn protocol_version(&self) -> Option<rustls::ProtocolVersion> {
        self.conn.protocol_version()
    }

    /// The server name the client asked for with SNI (server side).
    pub fn server_name(&self) -> Option<&str> {
        match &self.conn {
            rustls::Connection::Server(s) => s.server_name(),
            rustls::Connection::Client(_) => None,
        }
    }
}

impl<S: AsyncRead + AsyncWrite + Unpin> TlsStream<S> {
    async fn handshake(io: S, conn: rustls::Connection) -> io::Result<TlsStream<S>> {
        let mut s = TlsStream {
            io,
            conn,
            close_sent: false,
        };
        let mut failed = None;
        poll_fn(|cx| s.poll_handshake(cx, &mut failed)).await?;
        Ok(s)
    }

    /// Drives the handshake. A protocol error is kept in `failed` until the
    /// alert rustls queued for it has been sent (so the peer learns why),
    /// then returned.
    fn poll_handshake(&mut self, cx: &mut Context<'_>, failed: &mut Option<io::Error>) -> Poll<io::Result<()>> {
        if failed.is_some() {
            // Sending the alert is best effort: the error is returned anyway.
            let sent = ready!(self.poll_send_tls(cx));
            if sent.is_ok() {
                let _ = ready!(Pin::new(&mut self.io).poll_flush(cx));
            }
            return Poll::Ready(Err(failed.take().expect("checked")));
        }
        loop {
            ready!(self.poll_send_tls(cx))?;
            ready!(Pin::new(&mut self.io).poll_flush(cx))?;
            if !self.conn.is_handshaking() {
                return Poll::Ready(Ok(()));
            }
            let n = match ready!(self.poll_recv_tls(cx)) {
                Ok(n) => n,
                Err(e) if e.kind() == io::ErrorKind::InvalidData => {
                    *failed = Some(e);
                    return self.poll_handshake(cx, failed);
                }
                Err(e) => return Poll::Ready(Err(e)),
            };
            if n == 0 {
                return Poll::Ready(Err(io::Error::new(
                    io::ErrorKind::UnexpectedEof,
                    "TLS handshake: connection closed by the peer",
                )));
            }
        }
    }

    /// Writes all queued TLS records to the stream.
    fn poll_send_tls(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        while self.conn.wants_write() {
            let mut io = SyncIo { io: &mut self.io, cx };
            match ready!(would_block(self.conn.write_tls(&mut io))) {
                Ok(0) => return Poll::Ready(Err(io::ErrorKind::WriteZero.into())),
                Ok(_) => {}
                Err(e) => return Poll::Ready(Err(e)),
            }
        }
        Poll::Ready(Ok(()))
    }

    /// Reads TLS records from the stream and processes them (0: end of
    /// file). A protocol error queues an alert for the peer (sent by the
    /// caller) and is returned.
    fn poll_recv_tls(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<usize>> {
        let mut io = SyncIo { io: &mut self.io, cx };
        let n = ready!(would_block(self.conn.read_tls(&mut io)))?;
        if let Err(e) = self.conn.process_new_packets() {
            return Poll::Ready(Err(tls_error(e)));
        }
        Poll::Ready(Ok(n))
    }
}

/// What the plaintext buffer holds.
enum Plain {
    Bytes,
    Eof,
    Empty,
}

impl<S: AsyncRead + AsyncWrite + Unpin> AsyncBufRead for TlsStream<S> {
    fn poll_fill_buf(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<&[u8]>> {
        let this = self.get_mut();
        loop {
            let state = match this.conn.reader().into_first_chunk() {
                Ok([]) => Plain::Eof,
                Ok(_) => Plain::Bytes,
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => Plain::Empty,
                Err(e) => return Poll::Ready(Err(e)),
            };
            match state {
                Plain::Bytes => break,
                Plain::Eof => return Poll::Ready(Ok(&[])),
                Plain::Empty => {
                    // Records rustls wants to send (a key update, an alert)
                    // go out first; a full stream does not stop reading.
                    if let Poll::Ready(Err(e)) = this.poll_send_tls(cx) {
                        return Poll::Ready(Err(e));
                    }
                    // 0 (end of file) is recorded by rustls: the next
                    // `into_first_chunk` reports it.
                    if let Err(e) = ready!(this.poll_recv_tls(cx)) {
                        // Best effort for the alert (the stream is dead).
                        let _ = this.poll_send_tls(cx);
                        return Poll::Ready(Err(e));
                    }
                }
            }
        }
        Poll::Ready(this.conn.reader().into_first_chunk())
    }

    fn consume(self: Pin<&mut Self>, amt: usize) {
        self.get_mut().conn.reader().consume(amt)
    }
}

impl<S: AsyncRead + AsyncWrite + Unpin> AsyncRead for TlsStream<S> {
    fn poll_read(mut self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &mut [u8]) -> Poll<io::Result<usize>> {
        if buf.is_empty() {
            return Poll::Ready(Ok(0));
        }
        let avail = ready!(self.as_mut().poll_fill_buf(cx))?;
        let n = avail.len().min(buf.len());
        buf[..n].copy_from_slice(&avail[..n]);
        self.consume(n);
        Poll::Ready(Ok(n))
    }
}

impl<S: AsyncRead + AsyncWrite + Unpin> AsyncWrite for TlsStream<S> {
    fn poll_write(self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &[u8]) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        if this.close_sent {
            return Poll::Ready(Err(io::Error::new(
                io::ErrorKind::BrokenPipe,
                "TLS stream closed for writing",
            )));
        }
        for _ in 0..2 {
            // Encrypts as much as rustls' buffer takes.
            let n = this.conn.writer().write(buf)?;
            match this.poll_send_tls(cx) {
                Poll::Ready(Err(e)) => return Poll::Ready(Err(e)),
                // Accepted bytes are sent by later writes / flush.
                Poll::Pending if n > 0 => return Poll::Ready(Ok(n)),
                Poll::Pending => return Poll::Pending,
                Poll::Ready(Ok(())) if n > 0 || buf.is_empty() => return Poll::Ready(Ok(n)),
                // Buffer was full and is now sent: take the bytes.
                Poll::Ready(Ok(())) => {}
            }
        }
        // An empty buffer that takes nothing: the session cannot send.
        Poll::Ready(Err(io::ErrorKind::WriteZero.into()))
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        this.conn.writer().flush()?;
        ready!(this.poll_send_tls(cx))?;
        Pin::new(&mut this.io).poll_flush(cx)
    }

    fn poll_close(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        if !this.close_sent {
            this.conn.send_close_notify();
            this.close_sent = true;
        }
        ready!(this.poll_send_tls(cx))?;
        Pin::new(&mut this.io).poll_close(cx)
    }
}
