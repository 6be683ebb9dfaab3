//! The hyper server helpers: [`Server`], [`serve`], [`serve_tls`].

use std::cell::RefCell;
use std::error::Error as StdError;
use std::fmt;
use std::future::{Future, poll_fn};
use std::io;
use std::pin::{Pin, pin};
use std::rc::Rc;
use std::task::{Context, Poll};
use std::time::Duration;

use ::hyper::body::{Body, Incoming};
use ::hyper::server::conn::{http1, http2};
use ::hyper::service::HttpService;
use futures_io::{AsyncBufRead, AsyncRead, AsyncWrite};
use slab::Slab;

use super::{HyperIo, LocalExec, LoopIo, LoopTimer};
use crate::ThreadBound;
use crate::net::{TcpListener, TcpStream};
use crate::sync::Event;
#[cfg(feature = "tls")]
use crate::tls::TlsAcceptor;

/// The HTTP/2 connection preface a client sends first (RFC 9113 §3.4).
const H2_PREFACE: &[u8] = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";

/// How long a new connection may take to show its protocol (and finish the
/// TLS handshake) when no header read timeout is configured.
const DEFAULT_HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(30);

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Protocols {
    Auto,
    Http1,
    Http2,
}

/// Which protocol a connection speaks.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Proto {
    H1,
    H2,
}

/// Accepts and serves HTTP/1.1 and HTTP/2 connections on the current loop.
///
/// Connections run as tasks of the loop with [`LocalExec`] and
/// [`LoopTimer`]: services need not be `Send`. Without TLS, HTTP/1.1 and
/// HTTP/2 with prior knowledge (h2c) are told apart by the HTTP/2 preface;
/// over TLS the ALPN protocol decides (`h2` or else HTTP/1.1).
/// HTTP/1.1 connections support upgrades; see
/// [`downcast_upgraded`](super::downcast_upgraded).
///
/// ```no_run
/// use ringloop::hyper::Server;
/// use ringloop::net::TcpListener;
/// use hyper::{Request, Response, body::Incoming, service::service_fn};
/// use std::convert::Infallible;
///
/// ringloop::run(async {
///     let listener = TcpListener::bind("127.0.0.1:8080".parse().unwrap())?;
///     let svc = service_fn(|_req: Request<Incoming>| async {
///         Ok::<_, Infallible>(Response::new(String::from("hello\n")))
///     });
///     let stop = ringloop::signal::ctrl_c();
///     Server::new().serve(&listener, svc, async { let _ = stop.await; }).await
/// })
/// .unwrap()
/// .unwrap();
/// ```
#[derive(Clone, Debug)]
pub struct Server {
    protocols: Protocols,
    header_read_timeout: Option<Duration>,
    graceful_timeout: Option<Duration>,
    keep_alive: bool,
    max_concurrent_streams: Option<u32>,
}

impl Default for Server {
    fn default() -> Self {
        Server::new()
    }
}

impl Server {
    /// HTTP/1.1 and HTTP/2, keep-alive on, hyper's default 30 s header read
    /// timeout, graceful shutdown waiting without limit.
    pub fn new() -> Server {
        Server {
            protocols: Protocols::Auto,
            header_read_timeout: None,
            graceful_timeout: None,
            keep_alive: true,
            max_concurrent_streams: None,
        }
    }

    /// Serve HTTP/1.x only.
    pub fn http1_only(mut self) -> Server {
        self.protocols = Protocols::Http1;
        self
    }

    /// Serve HTTP/2 only (prior knowledge, or ALPN `h2`).
    pub fn http2_only(mut self) -> Server {
        self.protocols = Protocols::Http2;
        self
    }

    /// How long a client may take to send a request's headers (HTTP/1.1), and
    /// to show its protocol or finish its TLS handshake (both). The default
    /// is 30 s. Measured on the loop clock.
    pub fn header_read_timeout(mut self, t: Duration) -> Server {
        self.header_read_timeout = Some(t);
        self
    }

    /// After the shutdown signal, how long open connections may take to
    /// finish their requests before they are cancelled. Default: no limit.
    pub fn graceful_timeout(mut self, t: Duration) -> Server {
        self.graceful_timeout = Some(t);
        self
    }

    /// HTTP/1.1 keep-alive (default on).
    pub fn keep_alive(mut self, on: bool) -> Server {
        self.keep_alive = on;
        self
    }

    /// HTTP/2's `SETTINGS_MAX_CONCURRENT_STREAMS` (hyper's default: 200).
    pub fn max_concurrent_streams(mut self, n: u32) -> Server {
        self.max_concurrent_streams = Some(n);
        self
    }

    fn handshake_timeout(&self) -> Duration {
        self.header_read_timeout.unwrap_or(DEFAULT_HANDSHAKE_TIMEOUT)
    }

    /// Prepares one connection over `io` (any ringloop stream): finds its
    /// protocol, then returns the [`Connection`] future that serves it.
    /// Fails if the client closes or times out before showing a protocol.
    pub async fn connection<I, S, B>(&self, io: I, service: S) -> io::Result<Connection<I, S>>
    where
        I: AsyncBufRead + AsyncWrite + Unpin + 'static,
        S: HttpService<Incoming, ResBody = B>,
        S::Future: 'static,
        S::Error: Into<Box<dyn StdError + Send + Sync>>,
        B: Body + 'static,
        B::Data: Send,
        B::Error: Into<Box<dyn StdError + Send + Sync>>,
    {
        self.connection_with(io, None, service).await
    }

    async fn connection_with<I, S, B>(&self, io: I, alpn: Option<Proto>, service: S) -> io::Result<Connection<I, S>>
    where
        I: AsyncBufRead + AsyncWrite + Unpin + 'static,
        S: HttpService<Incoming, ResBody = B>,
        S::Future: 'static,
        S::Error: Into<Box<dyn StdError + Send + Sync>>,
        B: Body + 'static,
        B::Data: Send,
        B::Error: Into<Box<dyn StdError + Send + Sync>>,
    {
        let (proto, io) = match (self.protocols, alpn) {
            (Protocols::Http1, _) => (Proto::H1, HyperIo::new(ThreadBound::new(io))),
            (Protocols::Http2, _) => (Proto::H2, HyperIo::new(ThreadBound::new(io))),
            (Protocols::Auto, Some(p)) => (p, HyperIo::new(ThreadBound::new(io))),
            (Protocols::Auto, None) => {
                let sniff = sniff_preface(io);
                match crate::timeout(self.handshake_timeout(), sniff).await {
                    Ok(r) => r?,
                    Err(_) => return Err(io::Error::new(io::ErrorKind::TimedOut, "no request before the timeout")),
                }
            }
        };
        let kind = match proto {
            Proto::H1 => {
                let mut b = http1::Builder::new();
                b.timer(LoopTimer).keep_alive(self.keep_alive);
                if let Some(t) = self.header_read_timeout {
                    b.header_read_timeout(t);
                }
                ConnKind::H1(Box::pin(b.serve_connection(io, service).with_upgrades()))
            }
            Proto::H2 => {
                let mut b = http2::Builder::new(LocalExec);
                b.timer(LoopTimer);
                if let Some(n) = self.max_concurrent_streams {
                    b.max_concurrent_streams(n);
                }
                ConnKind::H2(Box::pin(b.serve_connection(io, service)))
            }
        };
        Ok(Connection { kind })
    }

    /// Accepts connections on `listener` and serves each with a clone of
    /// `service`, until `shutdown` completes. Then it stops accepting,
    /// asks every open connection to finish (HTTP/1.1: after the request in
    /// progress; HTTP/2: GOAWAY, open streams finish), waits for them (up to
    /// the [`graceful_timeout`](Self::graceful_timeout), after which the
    /// rest are cancelled) and returns.
    ///
    /// Dropping the future (cancelling it) stops accepting and starts the
    /// graceful shutdown of the open connections without waiting for them.
    ///
    /// Errors of single connections end only those connections. Transient
    /// accept errors (a connection reset before it was accepted, out of
    /// file descriptors or memory) are retried after a short pause; any
    /// other accept error shuts the server down gracefully and is returned.
    pub async fn serve<S, B, F>(&self, listener: &TcpListener, service: S, shutdown: F) -> io::Result<()>
    where
        S: HttpService<Incoming, ResBody = B> + Clone + 'static,
        S::Future: 'static,
        S::Error: Into<Box<dyn StdError + Send + Sync>>,
        B: Body + 'static,
        B::Data: Send,
        B::Error: Into<Box<dyn StdError + Send + Sync>>,
        F: Future<Output = ()>,
    {
        let server = self.clone();
        self.accept_loop(listener, shutdown, move |tcp| {
            let server = server.clone();
            let service = service.clone();
            async move {
                if let Ok(conn) = server.connection_with(tcp, None, service).await {
                    Ok(conn)
                } else {
                    Err(())
                }
            }
        })
        .await
    }

    /// [`serve`](Self::serve) over TLS: each accepted connection does its
    /// TLS handshake (within the header read timeout) with `acceptor`; the
    /// ALPN protocol picks HTTP/2 (`h2`) or HTTP/1.1. Configure the
    /// acceptor's ALPN list (e.g. [`tls::server_config`](crate::tls::server_config)
    /// with `&[b"h2", b"http/1.1"]`) to offer HTTP/2.
    #[cfg(feature = "tls")]
    pub async fn serve_tls<S, B, F>(
        &self,
        listener: &TcpListener,
        acceptor: TlsAcceptor,
        service: S,
        shutdown: F,
    ) -> io::Result<()>
    where
        S: HttpService<Incoming, ResBody = B> + Clone + 'static,
        S::Future: 'static,
        S::Error: Into<Box<dyn StdError + Send + Sync>>,
        B: Body + 'static,
        B::Data: Send,
        B::Error: Into<Box<dyn StdError + Send + Sync>>,
        F: Future<Output = ()>,
    {
        let server = self.clone();
        self.accept_loop(listener, shutdown, move |tcp| {
            let server = server.clone();
            let service = service.clone();
            let acceptor = acceptor.clone();
            async move {
                let tls = match crate::timeout(server.handshake_timeout(), acceptor.accept(tcp)).await {
                    Ok(Ok(tls)) => tls,
                    _ => return Err(()),
                };
                let alpn = match tls.alpn_protocol() {
                    Some(b"h2") => Some(Proto::H2),
                    Some(_) => Some(Proto::H1),
                    None => None,
                };
                server.connection_with(tls, alpn, service).await.map_err(drop)
            }
        })
        .await
    }

    async fn accept_loop<F, M, MF, I, S, B>(&self, listener: &TcpListener, shutdown: F, make: M) -> io::Result<()>
    where
        F: Future<Output = ()>,
        M: Fn(TcpStream) -> MF,
        MF: Future<Output = Result<Connection<I, S>, ()>> + 'static,
        I: AsyncBufRead + AsyncWrite + Unpin + 'static,
        S: HttpService<Incoming, ResBody = B> + 'static,
        S::Future: 'static,
        S::Error: Into<Box<dyn StdError + Send + Sync>>,
        B: Body + 'static,
        B::Data: Send,
        B::Error: Into<Box<dyn StdError + Send + Sync>>,
    {
        let tracker = Rc::new(Tracker {
            shutdown: Event::new(),
            tasks: RefCell::new(Slab::new()),
            idle: Event::new(),
        });
        // Dropping the serve future (cancelling it) also shuts the open
        // connections down gracefully instead of leaving them unsupervised.
        let _on_drop = ShutdownOnDrop(tracker.clone());
        let mut shutdown = pin!(shutdown);
        let result = loop {
            let accepted = {
                let mut accept = pin!(listener.accept());
                poll_fn(|cx| {
                    if shutdown.as_mut().poll(cx).is_ready() {
                        return Poll::Ready(None);
                    }
                    accept.as_mut().poll(cx).map(Some)
                })
                .await
            };
            let tcp = match accepted {
                None => break Ok(()),
                Some(Ok((tcp, _peer))) => tcp,
                Some(Err(e)) if is_dropped_connection(&e) => continue,
                Some(Err(e)) if is_resource_exhaustion(&e) => {
                    // Out of fds/memory: give connections a moment to close.
                    let mut pause = pin!(crate::sleep(Duration::from_millis(50)));
                    let stop = poll_fn(|cx| {
                        if shutdown.as_mut().poll(cx).is_ready() {
                            return Poll::Ready(true);
                        }
                        pause.as_mut().poll(cx).map(|()| false)
                    })
                    .await;
                    if stop {
                        break Ok(());
                    }
                    continue;
                }
                Some(Err(e)) => break Err(e),
            };
            let _ = tcp.set_nodelay(true);
            let conn = make(tcp);
            let t = tracker.clone();
            let task = crate::spawn(async move {
                let Ok(conn) = conn.await else { return };
                run_connection(conn, &t.shutdown).await;
            });
            tracker.idle.clear();
            let key = tracker.tasks.borrow_mut().insert(task.as_ref());
            let t = tracker.clone();
            task.add_done_callback(move |_| {
                let mut tasks = t.tasks.borrow_mut();
                tasks.try_remove(key);
                if tasks.is_empty() {
                    t.idle.set();
                }
            });
            task.detach();
        };
        // Graceful shutdown: no new connections, open ones finish.
        tracker.shutdown.set();
        if !tracker.tasks.borrow().is_empty() {
            let drained = tracker.idle.wait();
            match self.graceful_timeout {
                Some(t) => {
                    if crate::timeout(t, drained).await.is_err() {
                        let left: Vec<_> = tracker.tasks.borrow().iter().map(|(_, t)| t.clone()).collect();
                        for t in &left {
                            t.cancel();
                        }
                        // Wait for the cancellations to be processed.
                        if !tracker.tasks.borrow().is_empty() {
                            tracker.idle.wait().await;
                        }
                    }
                }
                None => drained.await,
            }
        }
        result
    }
}

/// Sets the shutdown event when dropped.
struct ShutdownOnDrop(Rc<Tracker>);

impl Drop for ShutdownOnDrop {
    fn drop(&mut self) {
        self.0.shutdown.set();
    }
}

/// Shared by a server's accept loop and its connection tasks.
struct Tracker {
    /// Set when the server shuts down: connections finish gracefully.
    shutdown: Event,
    /// Live connection tasks.
    tasks: RefCell<Slab<crate::TaskRef>>,
    /// Set when the last connection task is done.
    idle: Event,
}

/// A connection that went away before it was accepted: try the next one.
fn is_dropped_connection(e: &io::Error) -> bool {
    matches!(
        e.kind(),
        io::ErrorKind::ConnectionAborted | io::ErrorKind::ConnectionReset | io::ErrorKind::Interrupted
    )
}

/// Out of descriptors or memory: retry after a pause.
fn is_resource_exhaustion(e: &io::Error) -> bool {
    matches!(
        e.raw_os_error(),
        Some(libc::EMFILE | libc::ENFILE | libc::ENOBUFS | libc::ENOMEM)
    )
}

/// Drives `conn`, starting its graceful shutdown when `shutdown` is set.
async fn run_connection<I, S, B>(conn: Connection<I, S>, shutdown: &Event)
where
    I: AsyncBufRead + AsyncWrite + Unpin + 'static,
    S: HttpService<Incoming, ResBody = B> + 'static,
    S::Future: 'static,
    S::Error: Into<Box<dyn StdError + Send + Sync>>,
    B: Body + 'static,
    B::Data: Send,
    B::Error: Into<Box<dyn StdError + Send + Sync>>,
{
    let mut conn = pin!(conn);
    let mut signal = pin!(shutdown.wait());
    let mut signalled = false;
    // A connection's own error ends only that connection.
    let _ = poll_fn(|cx| {
        if !signalled && signal.as_mut().poll(cx).is_ready() {
            signalled = true;
            conn.as_mut().graceful_shutdown();
        }
        conn.as_mut().poll(cx)
    })
    .await;
}

/// Reads until the bytes read either differ from the HTTP/2 preface
/// (HTTP/1) or are the whole preface (HTTP/2); hands them back in front
/// of the stream.
async fn sniff_preface<I>(mut io: I) -> io::Result<(Proto, LoopIo<I>)>
where
    I: AsyncRead + Unpin,
{
    let mut got = [0u8; 24];
    let mut len = 0;
    let proto = loop {
        let n = poll_fn(|cx| Pin::new(&mut io).poll_read(cx, &mut got[len..])).await?;
        if n == 0 {
            return Err(io::Error::new(
                io::ErrorKind::UnexpectedEof,
                "connection closed before a request",
            ));
        }
        len += n;
        if got[..len] != H2_PREFACE[..len] {
            break Proto::H1;
        }
        if len == H2_PREFACE.len() {
            break Proto::H2;
        }
    };
    Ok((proto, HyperIo::with_prefix(ThreadBound::new(io), got[..len].to_vec())))
}

type H1Conn<I, S> = http1::UpgradeableConnection<LoopIo<I>, S>;
type H2Conn<I, S> = http2::Connection<LoopIo<I>, S, LocalExec>;

enum ConnKind<I, S: HttpService<Incoming>> {
    H1(Pin<Box<H1Conn<I, S>>>),
    H2(Pin<Box<H2Conn<I, S>>>),
}

/// One served connection: a future that completes when the connection is
/// closed. Made by [`Server::connection`].
pub struct Connection<I, S: HttpService<Incoming>> {
    kind: ConnKind<I, S>,
}

impl<I, S: HttpService<Incoming>> fmt::Debug for Connection<I, S> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Connection")
            .field("http2", &self.is_http2())
            .finish_non_exhaustive()
    }
}

impl<I, S: HttpService<Incoming>> Connection<I, S> {
    /// Whether the connection speaks HTTP/2.
    pub fn is_http2(&self) -> bool {
        matches!(self.kind, ConnKind::H2(_))
    }
}

impl<I, S, B> Connection<I, S>
where
    I: AsyncBufRead + AsyncWrite + Unpin + 'static,
    S: HttpService<Incoming, ResBody = B>,
    S::Future: 'static,
    S::Error: Into<Box<dyn StdError + Send + Sync>>,
    B: Body + 'static,
    B::Data: Send,
    B::Error: Into<Box<dyn StdError + Send + Sync>>,
{
    /// Finishes the request in progress (HTTP/1.1) or the open streams
    /// (HTTP/2, after a GOAWAY), then closes. Keep polling the connection.
    pub fn graceful_shutdown(self: Pin<&mut Self>) {
        match &mut self.get_mut().kind {
            ConnKind::H1(c) => c.as_mut().graceful_shutdown(),
            ConnKind::H2(c) => c.as_mut().graceful_shutdown(),
        }
    }
}

impl<I, S, B> Future for Connection<I, S>
where
    I: AsyncBufRead + AsyncWrite + Unpin + 'static,
    S: HttpService<Incoming, ResBody = B>,
    S::Future: 'static,
    S::Error: Into<Box<dyn StdError + Send + Sync>>,
    B: Body + 'static,
    B::Data: Send,
    B::Error: Into<Box<dyn StdError + Send + Sync>>,
{
    type Output = ::hyper::Result<()>;
    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        match &mut self.get_mut().kind {
            ConnKind::H1(c) => c.as_mut().poll(cx),
            ConnKind::H2(c) => c.as_mut().poll(cx),
        }
    }
}

/// [`Server::new().serve(..)`](Server::serve).
pub async fn serve<S, B, F>(listener: &TcpListener, service: S, shutdown: F) -> io::Result<()>
where
    S: HttpService<Incoming, ResBody = B> + Clone + 'static,
    S::Future: 'static,
    S::Error: Into<Box<dyn StdError + Send + Sync>>,
    B: Body + 'static,
    B::Data: Send,
    B::Error: Into<Box<dyn StdError + Send + Sync>>,
    F: Future<Output = ()>,
{
    Server::new().serve(listener, service, shutdown).await
}

/// [`Server::new().serve_tls(..)`](Server::serve_tls).
#[cfg(feature = "tls")]
pub async fn serve_tls<S, B, F>(
    listener: &TcpListener,
    acceptor: TlsAcceptor,
    service: S,
    shutdown: F,
) -> io::Result<()>
where
    S: HttpService<Incoming, ResBody = B> + Clone + 'static,
    S::Future: 'static,
    S::Error: Into<Box<dyn StdError + Send + Sync>>,
    B: Body + 'static,
    B::Data: Send,
    B::Error: Into<Box<dyn StdError + Send + Sync>>,
    F: Future<Output = ()>,
{
    Server::new().serve_tls(listener, acceptor, service, shutdown).await
}
