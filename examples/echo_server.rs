//! TCP echo server.
//!
//! ```sh
//! cargo run --release --example echo_server -- 127.0.0.1:7000
//! RINGLOOP_DRIVER=fallback cargo run --release --example echo_server -- 127.0.0.1:7000
//! ```
//!
//! Listens on the address given as the first argument (default
//! `127.0.0.1:7000`), echoes every byte back on every connection, one task
//! per connection. The backend follows `RINGLOOP_DRIVER` (`uring` or
//! `fallback`; default: io_uring when available). Prints the bound address
//! and backend on stdout, then serves until killed.

use ringloop::AsyncWriteOwned;
use ringloop::net::{TcpListener, TcpStream};
use ringloop::{EventLoop, spawn};

async fn serve(stream: TcpStream) {
    let _ = stream.set_nodelay(true);
    // Pooled receives: on io_uring one multishot receive stays armed and the
    // kernel fills buffers of the loop's pool; each chunk is written
    // straight back and its buffer returns to the pool when the write is done.
    let mut chunks = stream.recv_stream();
    while let Some(Ok(chunk)) = chunks.next_buf().await {
        let (res, _) = stream.write_all(chunk).await;
        if res.is_err() {
            return;
        }
    }
}

fn main() -> std::io::Result<()> {
    let addr = std::env::args().nth(1).unwrap_or_else(|| "127.0.0.1:7000".into());
    let addr: std::net::SocketAddr = addr
        .parse()
        .map_err(|e| std::io::Error::new(std::io::ErrorKind::InvalidInput, format!("bad address {addr:?}: {e}")))?;
    let lp = EventLoop::new()?;
    let kind = lp.driver_kind();
    lp.run_until_complete(async move {
        let listener = TcpListener::bind(addr)?;
        println!("echo server listening on {} ({kind})", listener.local_addr()?);
        loop {
            match listener.accept().await {
                Ok((stream, _peer)) => spawn(serve(stream)).detach(),
                // EMFILE and friends: report and keep serving.
                Err(e) => {
                    eprintln!("accept: {e}");
                    ringloop::sleep(std::time::Duration::from_millis(10)).await;
                }
            }
        }
    })?
}
