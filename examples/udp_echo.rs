//! UDP echo: a server task echoes datagrams back to their sender; a client
//! sends three messages and prints each echo. Message boundaries are kept.
//!
//! ```sh
//! cargo run --example udp_echo
//! ```
//!
//! Prints `echo: ping 1`, `echo: ping 2`, `echo: ping 3`.

use ringloop::net::UdpSocket;
use ringloop::{EventLoop, spawn};

fn main() -> std::io::Result<()> {
    let lp = EventLoop::new()?;
    lp.run_until_complete(async {
        let server = UdpSocket::bind("127.0.0.1:0".parse().expect("literal address"))?;
        let server_addr = server.local_addr()?;
        let echo = spawn(async move {
            let mut buf = Vec::with_capacity(1500);
            loop {
                buf.clear();
                let (res, b) = server.recv_from(buf).await;
                let Ok((_, from)) = res else { return };
                let (res, b) = server.send_to(b, from).await;
                if res.is_err() {
                    return;
                }
                buf = b;
            }
        })
        .cancel_on_drop();

        let client = UdpSocket::bind("127.0.0.1:0".parse().expect("literal address"))?;
        client.connect(server_addr).await?;
        for i in 1..=3 {
            let (res, _) = client.send(format!("ping {i}").into_bytes()).await;
            res?;
            let (res, reply) = client.recv(Vec::with_capacity(1500)).await;
            res?;
            println!("echo: {}", String::from_utf8_lossy(&reply));
        }
        drop(echo);
        Ok(())
    })?
}
