//! TCP echo client using streams (asyncio docs: "TCP echo client using
//! streams").
//!
//! ```sh
//! cargo run --example streams_echo_client -- 127.0.0.1:8888 'Hello World!'
//! ```
//!
//! Connects to the address given first, sends the message (default
//! `Hello World!`), prints what comes back, closes.

use ringloop::EventLoop;
use ringloop::streams::open_connection;

fn main() -> std::io::Result<()> {
    let mut args = std::env::args().skip(1);
    let addr = args.next().unwrap_or_else(|| "127.0.0.1:8888".into());
    let message = args.next().unwrap_or_else(|| "Hello World!".into());
    let lp = EventLoop::new()?;
    lp.run_until_complete(async move {
        let (mut reader, writer) = open_connection(addr).await?;
        println!("Send: {message:?}");
        writer.write(message.as_bytes())?;
        writer.drain().await?;
        let data = reader.read(100).await?;
        println!("Received: {:?}", String::from_utf8_lossy(&data));
        println!("Close the connection");
        writer.close();
        writer.wait_closed().await
    })?
}
