//! ringloop TCP echo, HTTP and UDP echo servers (either backend).

use ringloop::{AsyncReadOwned, AsyncWriteOwned};
use std::future::Future;
use std::io;

use ringloop::buf::IoBuf;

use super::http;

/// Runs `conn` on every accepted connection (TCP_NODELAY on) until killed.
fn accept_loop<Fut: Future<Output = ()> + 'static>(
    l: std::net::TcpListener,
    driver: ringloop::DriverChoice,
    ready: impl FnOnce() + 'static,
    conn: fn(ringloop::net::TcpStream) -> Fut,
) -> io::Result<()> {
    let lp = ringloop::EventLoop::builder().driver(driver).build()?;
    lp.run_until_complete(async move {
        let l = ringloop::net::TcpListener::from_std(l)?;
        ready();
        loop {
            let (s, _) = l.accept().await?;
            let _ = s.set_nodelay(true);
            ringloop::spawn(conn(s)).detach();
        }
    })?
}

pub fn serve(
    l: std::net::TcpListener,
    driver: ringloop::DriverChoice,
    ready: impl FnOnce() + 'static,
) -> io::Result<()> {
    accept_loop(l, driver, ready, echo)
}

async fn echo(s: ringloop::net::TcpStream) {
    // Pooled receives: on io_uring one multishot RECV per connection fills
    // buffers of the loop's ring, each written straight back.
    let mut rx = s.recv_stream();
    while let Some(Ok(buf)) = rx.next_buf().await {
        let (res, _) = s.write_all(buf).await;
        if res.is_err() {
            return;
        }
    }
}

pub fn serve_http(
    l: std::net::TcpListener,
    driver: ringloop::DriverChoice,
    ready: impl FnOnce() + 'static,
) -> io::Result<()> {
    accept_loop(l, driver, ready, hello)
}

async fn hello(s: ringloop::net::TcpStream) {
    let mut input = Vec::with_capacity(http::INBUF);
    let mut out = Vec::with_capacity(http::RESPONSE.len());
    loop {
        if !http::make_room(&mut input) {
            return;
        }
        let at = input.len();
        let (res, b) = s.read(input.slice(at..)).await;
        input = b.into_inner();
        if !matches!(res, Ok(n) if n > 0) {
            return;
        }
        let used = http::respond(&input, &mut out);
        input.drain(..used);
        if out.is_empty() {
            continue;
        }
        let (res, o) = s.write_all(out).await;
        if res.is_err() {
            return;
        }
        out = o;
        out.clear();
    }
}

pub fn serve_udp(
    s: std::net::UdpSocket,
    driver: ringloop::DriverChoice,
    ready: impl FnOnce() + 'static,
) -> io::Result<()> {
    let lp = ringloop::EventLoop::builder().driver(driver).build()?;
    lp.run_until_complete(async move {
        let s = ringloop::net::UdpSocket::from_std(s)?;
        ready();
        // Pooled receives: on io_uring one multishot recvmsg into the
        // loop's buffer ring; each datagram is echoed from its pool buffer.
        let mut rx = s.recv_from_stream();
        loop {
            let (buf, meta) = match rx.next_datagram().await {
                Ok(d) => d,
                Err(e) if super::transient_udp_error(&e) => continue,
                Err(e) => return Err(e),
            };
            // A failed send loses that one datagram, like any UDP drop.
            let _ = s.send_to(buf, meta.addr).await;
        }
    })?
}
