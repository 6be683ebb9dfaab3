//! tokio current_thread TCP echo, HTTP and UDP echo servers.

use std::io;

use tokio::io::{AsyncReadExt, AsyncWriteExt};

use super::{BUF, http};

pub fn serve(l: std::net::TcpListener, ready: impl FnOnce() + 'static) -> io::Result<()> {
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build()?;
    rt.block_on(async move {
        l.set_nonblocking(true)?;
        let l = tokio::net::TcpListener::from_std(l)?;
        ready();
        loop {
            let (mut s, _) = l.accept().await?;
            tokio::spawn(async move {
                let _ = s.set_nodelay(true);
                let mut buf = vec![0u8; BUF];
                loop {
                    let n = match s.read(&mut buf).await {
                        Ok(0) | Err(_) => return,
                        Ok(n) => n,
                    };
                    if s.write_all(&buf[..n]).await.is_err() {
                        return;
                    }
                }
            });
        }
    })
}

pub fn serve_http(l: std::net::TcpListener, ready: impl FnOnce() + 'static) -> io::Result<()> {
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build()?;
    rt.block_on(async move {
        l.set_nonblocking(true)?;
        let l = tokio::net::TcpListener::from_std(l)?;
        ready();
        loop {
            let (mut s, _) = l.accept().await?;
            tokio::spawn(async move {
                let _ = s.set_nodelay(true);
                let mut input = http::Input::default();
                let mut out = Vec::with_capacity(http::RESPONSE.len());
                loop {
                    let Some(spare) = input.spare() else { return };
                    let n = match s.read(spare).await {
                        Ok(0) | Err(_) => return,
                        Ok(n) => n,
                    };
                    input.received(n, &mut out);
                    if out.is_empty() {
                        continue;
                    }
                    if s.write_all(&out).await.is_err() {
                        return;
                    }
                    out.clear();
                }
            });
        }
    })
}

pub fn serve_udp(s: std::net::UdpSocket, ready: impl FnOnce() + 'static) -> io::Result<()> {
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build()?;
    rt.block_on(async move {
        s.set_nonblocking(true)?;
        let s = tokio::net::UdpSocket::from_std(s)?;
        ready();
        let mut buf = vec![0u8; BUF];
        loop {
            let (n, from) = match s.recv_from(&mut buf).await {
                Ok(r) => r,
                Err(e) if super::transient_udp_error(&e) => continue,
                Err(e) => return Err(e),
            };
            // A failed send loses that one datagram, like any UDP drop.
            let _ = s.send_to(&buf[..n], from).await;
        }
    })
}
