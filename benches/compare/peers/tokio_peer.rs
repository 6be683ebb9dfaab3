//! tokio current_thread TCP echo, HTTP and UDP echo servers.

use std::future::Future;
use std::io;

use tokio::io::{AsyncReadExt, AsyncWriteExt};

use super::{BUF, http};

fn runtime() -> io::Result<tokio::runtime::Runtime> {
    tokio::runtime::Builder::new_current_thread().enable_all().build()
}

/// Runs `conn` on every accepted connection (TCP_NODELAY on) until killed.
fn accept_loop<Fut: Future<Output = ()> + Send + 'static>(
    l: std::net::TcpListener,
    ready: impl FnOnce() + 'static,
    conn: fn(tokio::net::TcpStream) -> Fut,
) -> io::Result<()> {
    runtime()?.block_on(async move {
        l.set_nonblocking(true)?;
        let l = tokio::net::TcpListener::from_std(l)?;
        ready();
        loop {
            let (s, _) = l.accept().await?;
            let _ = s.set_nodelay(true);
            tokio::spawn(conn(s));
        }
    })
}

pub fn serve(l: std::net::TcpListener, ready: impl FnOnce() + 'static) -> io::Result<()> {
    accept_loop(l, ready, echo)
}

async fn echo(mut s: tokio::net::TcpStream) {
    let mut buf = vec![0u8; BUF];
    loop {
        let n = match s.read(&mut buf).await {
            Ok(0) | Err(_) => return,
            Ok(n) => n,
        };
        if s.write_all(&buf[..n]).await.is_err() {
            return;
        }
    }
}

pub fn serve_http(l: std::net::TcpListener, ready: impl FnOnce() + 'static) -> io::Result<()> {
    accept_loop(l, ready, hello)
}

async fn hello(mut s: tokio::net::TcpStream) {
    let mut input = http::Input::default();
    let mut out = Vec::with_capacity(http::RESPONSE.len());
    loop {
        let Some(spare) = input.spare() else { return };
        let n = match s.read(spare).await {
            Ok(0) | Err(_) => return,
            Ok(n) => n,
        };
        input.received(n, &mut out);
        if out.is_empty() {
            continue;
        }
        if s.write_all(&out).await.is_err() {
            return;
        }
        out.clear();
    }
}

pub fn serve_udp(s: std::net::UdpSocket, ready: impl FnOnce() + 'static) -> io::Result<()> {
    runtime()?.block_on(async move {
        s.set_nonblocking(true)?;
        let s = tokio::net::UdpSocket::from_std(s)?;
        ready();
        let mut buf = vec![0u8; BUF];
        loop {
            let (n, from) = match s.recv_from(&mut buf).await {
                Ok(r) => r,
                Err(e) if super::transient_udp_error(&e) => continue,
                Err(e) => return Err(e),
            };
            // A failed send loses that one datagram, like any UDP drop.
            let _ = s.send_to(&buf[..n], from).await;
        }
    })
}
