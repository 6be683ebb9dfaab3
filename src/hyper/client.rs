//! hyper client connections on the current loop.

use std::error::Error as StdError;

use ::hyper::body::Body;
use ::hyper::client::conn::{http1, http2};
use futures_io::{AsyncBufRead, AsyncWrite};

use super::{HyperIo, LocalExec, LoopTimer};
use crate::ThreadBound;

/// Starts an HTTP/1.1 client connection over `io` (a connected ringloop
/// stream, plain or TLS). The connection is driven by a detached task of
/// the current loop (with upgrades enabled; an upgraded connection
/// downcasts to [`LoopIo<I>`](super::LoopIo)); requests go through the
/// returned `SendRequest`. The task ends when the server closes the
/// connection or every `SendRequest` is dropped.
///
/// ```no_run
/// use http_body_util::{BodyExt, Empty};
/// use hyper::{Request, body::Bytes};
/// use ringloop::net::TcpStream;
///
/// ringloop::run(async {
///     let tcp = TcpStream::connect("127.0.0.1:8080").await?;
///     let mut send = ringloop::hyper::http1_handshake::<_, Empty<Bytes>>(tcp)
///         .await
///         .map_err(std::io::Error::other)?;
///     let req = Request::get("/").header("host", "localhost").body(Empty::new()).unwrap();
///     let resp = send.send_request(req).await.map_err(std::io::Error::other)?;
///     let body = resp.into_body().collect().await.map_err(std::io::Error::other)?.to_bytes();
///     println!("{}", String::from_utf8_lossy(&body));
///     Ok::<_, std::io::Error>(())
/// })
/// .unwrap()
/// .unwrap();
/// ```
pub async fn http1_handshake<I, B>(io: I) -> ::hyper::Result<http1::SendRequest<B>>
where
    I: AsyncBufRead + AsyncWrite + Unpin + 'static,
    B: Body + 'static,
    B::Data: Send,
    B::Error: Into<Box<dyn StdError + Send + Sync>>,
{
    let (send, conn) = http1::Builder::new()
        .handshake(HyperIo::new(ThreadBound::new(io)))
        .await?;
    crate::spawn(async move {
        // Its error also reaches the pending requests.
        let _ = conn.with_upgrades().await;
    })
    .detach();
    Ok(send)
}

/// Starts an HTTP/2 client connection over `io` (prior knowledge, or after
/// TLS with ALPN `h2`). The connection and its streams are driven by tasks
/// of the current loop ([`LocalExec`], [`LoopTimer`]). `SendRequest` is
/// `Clone`: clones send concurrent requests on streams of the connection.
pub async fn http2_handshake<I, B>(io: I) -> ::hyper::Result<http2::SendRequest<B>>
where
    I: AsyncBufRead + AsyncWrite + Unpin + 'static,
    B: Body + Unpin + 'static,
    B::Data: Send,
    B::Error: Into<Box<dyn StdError + Send + Sync>>,
{
    let (send, conn) = http2::Builder::new(LocalExec)
        .timer(LoopTimer)
        .handshake(HyperIo::new(ThreadBound::new(io)))
        .await?;
    crate::spawn(async move {
        let _ = conn.await;
    })
    .detach();
    Ok(send)
}
