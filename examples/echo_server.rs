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

use ringloop::net::{TcpListener, TcpStream};
use ringloop::{AsyncReadOwned, AsyncWriteOwned};
use ringloop::{EventLoop, spawn};

async fn serve(stream: TcpStream) {
    let _ = stream.set_nodelay(true);
    let mut buf = Vec::with_capacity(64 * 1024);
    loop {
        buf.clear();
        let (res, b) = stream.read(buf).await;
        match res {
            Ok(0) | Err(_) => return,
            Ok(_) => {}
        }
        let (res, b) = stream.write_all(b).await;
        if res.is_err() {
            return;
        }
        buf = b;
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
