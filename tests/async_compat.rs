//! tokio-only code inside ringloop through the async-compat crate, on both
//! backends: a future that uses tokio's timer and `tokio::net` (driven by
//! the tokio runtime async-compat keeps on a background thread) talking to
//! a ringloop listener, and a ringloop stream used through tokio's I/O
//! traits.

use std::io;
use std::time::Duration;

use async_compat::Compat;
use futures_util::io::{AsyncReadExt as _, AsyncWriteExt as _};
use ringloop::net::{TcpListener, TcpStream};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

#[ringloop::test]
async fn tokio_timer_and_tokio_net_run_inside_ringloop() {
    let listener = TcpListener::bind("127.0.0.1:0".parse().unwrap()).unwrap();
    let addr = listener.local_addr().unwrap();
    let server = ringloop::spawn(async move {
        let (mut s, _) = listener.accept().await.unwrap();
        let mut got = Vec::new();
        s.read_to_end(&mut got).await.unwrap();
        s.write_all(b"pong from ringloop").await.unwrap();
        s.close().await.unwrap();
        got
    });
    let client = Compat::new(async move {
        // Neither works outside a tokio runtime context.
        tokio::time::sleep(Duration::from_millis(5)).await;
        let mut s = tokio::net::TcpStream::connect(addr).await?;
        s.write_all(b"ping from tokio").await?;
        s.shutdown().await?;
        let mut buf = Vec::new();
        s.read_to_end(&mut buf).await?;
        Ok::<_, io::Error>(buf)
    });
    let got = client.await.unwrap();
    assert_eq!(got, b"pong from ringloop");
    assert_eq!(server.await.unwrap(), b"ping from tokio");
}

#[ringloop::test]
async fn a_ringloop_stream_through_tokio_io_traits() {
    let listener = TcpListener::bind("127.0.0.1:0".parse().unwrap()).unwrap();
    let addr = listener.local_addr().unwrap();
    let server = ringloop::spawn(async move {
        let (s, _) = listener.accept().await.unwrap();
        // tokio's traits over ringloop's futures-io stream.
        let mut s = Compat::new(s);
        let mut buf = [0u8; 5];
        s.read_exact(&mut buf).await.unwrap();
        s.write_all(&buf).await.unwrap();
        s.flush().await.unwrap();
        buf
    });
    let mut c = TcpStream::connect_addr(addr).await.unwrap();
    c.write_all(b"hello").await.unwrap();
    let mut back = [0u8; 5];
    c.read_exact(&mut back).await.unwrap();
    assert_eq!(&back, b"hello");
    assert_eq!(&server.await.unwrap(), b"hello");
}
