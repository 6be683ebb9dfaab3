//! TCP echo server protocol (asyncio docs: "TCP Echo Server" with
//! `loop.create_server`).
//!
//! ```sh
//! cargo run --example protocol_echo_server -- 127.0.0.1:8888
//! ```
//!
//! Prints `Serving on ADDR (backend)`; every connection gets an
//! `EchoServerProtocol` that echoes the first data it receives and closes
//! the connection. Serves until killed. The backend follows
//! `RINGLOOP_DRIVER` (`uring` or `fallback`).

use ringloop::EventLoop;
use ringloop::protocols::{Protocol, Transport, create_server};

#[derive(Default)]
struct EchoServerProtocol {
    transport: Option<Transport>,
}

impl Protocol for EchoServerProtocol {
    fn connection_made(&mut self, transport: &Transport) {
        match transport.peername().and_then(|a| a.as_inet()) {
            Some(peer) => println!("Connection from {peer}"),
            None => println!("Connection from an unknown peer"),
        }
        self.transport = Some(transport.clone());
    }

    fn data_received(&mut self, data: &[u8]) {
        let message = String::from_utf8_lossy(data);
        println!("Data received: {message:?}");
        println!("Send: {message:?}");
        let Some(t) = &self.transport else { return };
        if let Err(e) = t.write(data) {
            eprintln!("write failed: {e}");
        }
        println!("Close the client socket");
        t.close();
    }
}

fn main() -> std::io::Result<()> {
    let addr = std::env::args().nth(1).unwrap_or_else(|| "127.0.0.1:8888".into());
    let addr: std::net::SocketAddr = addr
        .parse()
        .map_err(|e| std::io::Error::new(std::io::ErrorKind::InvalidInput, format!("bad address {addr:?}: {e}")))?;
    let lp = EventLoop::new()?;
    let kind = lp.driver_kind();
    lp.run_until_complete(async move {
        let server = create_server(EchoServerProtocol::default, addr).await?;
        println!("Serving on {} ({kind})", server.local_addr()?);
        let _ = server.serve_forever().await;
        Ok(())
    })?
}
