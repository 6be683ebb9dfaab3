//! TCP echo client: sends messages to an echo server and checks every byte.
//!
//! ```sh
//! cargo run --release --example echo_client -- 127.0.0.1:7000 [messages] [size]
//! ```
//!
//! Sends `messages` (default 1000) messages of `size` bytes (default 128)
//! one at a time, verifies each echo, and prints the count and the median
//! round-trip time.

use ringloop::EventLoop;
use ringloop::net::TcpStream;
use ringloop::{AsyncReadOwned, AsyncWriteOwned};
use std::time::Instant;

fn main() -> std::io::Result<()> {
    let mut args = std::env::args().skip(1);
    let addr = args.next().unwrap_or_else(|| "127.0.0.1:7000".into());
    let count: usize = args.next().and_then(|a| a.parse().ok()).unwrap_or(1000);
    let size: usize = args.next().and_then(|a| a.parse().ok()).unwrap_or(128);
    let lp = EventLoop::new()?;
    lp.run_until_complete(async move {
        let stream = TcpStream::connect(addr).await?;
        stream.set_nodelay(true)?;
        let mut rtts = Vec::with_capacity(count);
        let mut reply = Vec::with_capacity(size);
        for i in 0..count {
            let msg: Vec<u8> = (0..size).map(|j| (i * 31 + j) as u8).collect();
            let t = Instant::now();
            let (res, msg) = stream.write_all(msg).await;
            res?;
            reply.clear();
            let (res, r) = stream.read_exact(reply, size).await;
            res?;
            rtts.push(t.elapsed());
            if r != msg {
                return Err(std::io::Error::new(
                    std::io::ErrorKind::InvalidData,
                    format!("message {i} came back altered"),
                ));
            }
            reply = r;
        }
        rtts.sort();
        let median = rtts.get(rtts.len() / 2).copied().unwrap_or_default();
        println!("{count} messages of {size} B echoed intact; median round trip {median:?}");
        Ok(())
    })?
}
