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

pub async fn echo(s: ringloop::net::TcpStream) {
    // Pooled receives: on io_uring one multishot RECV per connection fills
    // buffers of the loop's ring. A message that fits one buffer is written
    // straight back from it. A larger one arrives as several buffers at
    // once: what is already here goes back in one write (like the other
    // peers' one read of up to 64 KiB, then one write), since a write per
    // chunk costs a TCP segment each.
    //
    // Only a chunk that filled its buffer can have more behind it (a
    // receive that ended before its buffer did drained the socket), so
    // only then does the peer look: the look costs ~200 instructions, 10%
    // of a small request's user-space work.
    let mut rx = s.recv_stream();
    let mut out = Vec::new();
    while let Some(Ok(buf)) = rx.next_buf().await {
        let mut next = if buf.filled_its_buffer() {
            ready_now(&mut rx).await
        } else {
            None
        };
        if !matches!(next, Some(Some(Ok(_)))) {
            let (res, _) = s.write_all(buf).await;
            if res.is_err() || next.is_some() {
                return;
            }
            continue;
        }
        out.clear();
        out.extend_from_slice(&buf);
        drop(buf);
        while let Some(Some(Ok(b))) = next {
            out.extend_from_slice(&b);
            drop(b);
            next = ready_now(&mut rx).await;
        }
        let (res, o) = s.write_all(out).await;
        out = o;
        if res.is_err() || next.is_some() {
            return;
        }
    }
}

/// The stream's next item if it is already here (`None`: not yet). Polled
/// with the task's own waker, which the stream then keeps for the wait that
/// follows (a no-op waker, as `now_or_never` uses, would be swapped for the
/// task's at that wait).
async fn ready_now(rx: &mut ringloop::net::RecvStream<'_>) -> Option<Option<io::Result<ringloop::buf::PooledBuf>>> {
    use futures_util::StreamExt;
    std::future::poll_fn(|cx| {
        std::task::Poll::Ready(match rx.poll_next_unpin(cx) {
            std::task::Poll::Ready(item) => Some(item),
            std::task::Poll::Pending => None,
        })
    })
    .await
}

pub fn serve_http(
    l: std::net::TcpListener,
    driver: ringloop::DriverChoice,
    ready: impl FnOnce() + 'static,
) -> io::Result<()> {
    accept_loop(l, driver, ready, hello)
}

pub async fn hello(s: ringloop::net::TcpStream) {
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
