//! TCP echo server using streams (asyncio docs: "TCP echo server using
//! streams").
//!
//! ```sh
//! cargo run --example streams_echo_server -- 127.0.0.1:8888
//! ```
//!
//! Prints `Serving on ADDR (backend)`, then for every connection reads up
//! to 100 bytes, echoes them back and closes the connection. Serves until
//! killed. The backend follows `RINGLOOP_DRIVER` (`uring` or `fallback`).

use ringloop::EventLoop;
use ringloop::protocols::ExtraInfo;
use ringloop::streams::{StreamReader, StreamWriter, start_server};

async fn handle_echo(mut reader: StreamReader, writer: StreamWriter) {
    let data = match reader.read(100).await {
        Ok(d) => d,
        Err(e) => {
            eprintln!("read failed: {e}");
            return;
        }
    };
    let message = String::from_utf8_lossy(&data);
    let addr = match writer.get_extra_info("peername") {
        Some(ExtraInfo::Address(a)) => a.as_inet().map_or_else(|| "?".into(), |a| a.to_string()),
        _ => "?".into(),
    };
    println!("Received {message:?} from {addr}");
    println!("Send: {message:?}");
    if writer.write(&data).is_ok() {
        let _ = writer.drain().await;
    }
    println!("Close the connection");
    writer.close();
    let _ = writer.wait_closed().await;
}

fn main() -> std::io::Result<()> {
    let addr = std::env::args().nth(1).unwrap_or_else(|| "127.0.0.1:8888".into());
    let addr: std::net::SocketAddr = addr
        .parse()
        .map_err(|e| std::io::Error::new(std::io::ErrorKind::InvalidInput, format!("bad address {addr:?}: {e}")))?;
    let lp = EventLoop::new()?;
    let kind = lp.driver_kind();
    lp.run_until_complete(async move {
        let server = start_server(handle_echo, addr).await?;
        println!("Serving on {} ({kind})", server.local_addr()?);
        let _ = server.serve_forever().await;
        Ok(())
    })?
}
