//! TCP echo client protocol (asyncio docs: "TCP Echo Client" with
//! `loop.create_connection`).
//!
//! ```sh
//! cargo run --example protocol_echo_client -- 127.0.0.1:8888 'Hello World!'
//! ```
//!
//! Sends the message in `connection_made`, prints what the server sends
//! back, and ends when the server closes the connection (asyncio's
//! `on_con_lost` future is the transport's `wait_closed`).

use ringloop::EventLoop;
use ringloop::protocols::{Protocol, Transport, create_connection};

struct EchoClientProtocol {
    message: String,
}

impl Protocol for EchoClientProtocol {
    fn connection_made(&mut self, transport: &Transport) {
        match transport.write(self.message.as_bytes()) {
            Ok(()) => println!("Data sent: {:?}", self.message),
            Err(e) => eprintln!("write failed: {e}"),
        }
    }

    fn data_received(&mut self, data: &[u8]) {
        println!("Data received: {:?}", String::from_utf8_lossy(data));
    }

    fn connection_lost(&mut self, err: Option<std::io::Error>) {
        match err {
            None => println!("The server closed the connection"),
            Some(e) => println!("The connection failed: {e}"),
        }
    }
}

fn main() -> std::io::Result<()> {
    let mut args = std::env::args().skip(1);
    let addr = args.next().unwrap_or_else(|| "127.0.0.1:8888".into());
    let message = args.next().unwrap_or_else(|| "Hello World!".into());
    let lp = EventLoop::new()?;
    lp.run_until_complete(async move {
        let (transport, _protocol) = create_connection(move || EchoClientProtocol { message }, addr).await?;
        transport.wait_closed().await;
        Ok(())
    })?
}
