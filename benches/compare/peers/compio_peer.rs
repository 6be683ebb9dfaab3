//! compio TCP echo, HTTP and UDP echo servers (io_uring driver).

use std::future::Future;
use std::io;

use compio::buf::{IntoInner, IoBuf};
use compio::io::{AsyncRead, AsyncWriteExt};

use super::{BUF, http};

/// Runs `conn` on every accepted connection (TCP_NODELAY on) until killed.
fn accept_loop<Fut: Future<Output = ()> + 'static>(
    l: std::net::TcpListener,
    ready: impl FnOnce() + 'static,
    conn: fn(compio::net::TcpStream) -> Fut,
) -> io::Result<()> {
    compio::runtime::Runtime::new()?.block_on(async move {
        let l = compio::net::TcpListener::from_std(l)?;
        ready();
        loop {
            let (s, _) = l.accept().await?;
            let _ = s.set_nodelay(true);
            compio::runtime::spawn(conn(s)).detach();
        }
    })
}

pub fn serve(l: std::net::TcpListener, ready: impl FnOnce() + 'static) -> io::Result<()> {
    accept_loop(l, ready, echo)
}

async fn echo(mut s: compio::net::TcpStream) {
    let mut buf = Vec::with_capacity(BUF);
    loop {
        buf.clear();
        let compio::BufResult(res, b) = s.read(buf).await;
        if !matches!(res, Ok(n) if n > 0) {
            return;
        }
        let compio::BufResult(res, b) = s.write_all(b).await;
        if res.is_err() {
            return;
        }
        buf = b;
    }
}

pub fn serve_http(l: std::net::TcpListener, ready: impl FnOnce() + 'static) -> io::Result<()> {
    accept_loop(l, ready, hello)
}

async fn hello(mut s: compio::net::TcpStream) {
    let mut input = Vec::with_capacity(http::INBUF);
    let mut out = Vec::with_capacity(http::RESPONSE.len());
    loop {
        if !http::make_room(&mut input) {
            return;
        }
        let at = input.len();
        let compio::BufResult(res, b) = s.read(input.slice(at..)).await;
        input = b.into_inner();
        if !matches!(res, Ok(n) if n > 0) {
            return;
        }
        let used = http::respond(&input, &mut out);
        input.drain(..used);
        if out.is_empty() {
            continue;
        }
        let compio::BufResult(res, o) = s.write_all(out).await;
        if res.is_err() {
            return;
        }
        out = o;
        out.clear();
    }
}

pub fn serve_udp(s: std::net::UdpSocket, ready: impl FnOnce() + 'static) -> io::Result<()> {
    let rt = compio::runtime::Runtime::new()?;
    rt.block_on(async move {
        let s = compio::net::UdpSocket::from_std(s)?;
        ready();
        let mut buf = Vec::with_capacity(BUF);
        loop {
            buf.clear();
            let compio::BufResult(res, b) = s.recv_from(buf).await;
            buf = b;
            let from = match res {
                Ok((_, from)) => from,
                Err(e) if super::transient_udp_error(&e) => continue,
                Err(e) => return Err(e),
            };
            // A failed send loses that one datagram, like any UDP drop.
            let compio::BufResult(_, b) = s.send_to(buf, from).await;
            buf = b;
        }
    })
}
